# conflux: one build for everything. Objects go under build/<mode>/.
#   make            release build of every tool (build/release/bin/)
#   make MODE=debug | MODE=asan
#   make check      install missing packages, build, run every test
#   make demo       install missing packages, build corpus + tokenizer, pretrain, fill-mask
#   make bench      ALBERT throughput against PyTorch
#   make bench-dp   data-parallel step time, all-reduce overlap and traffic on 1, 2, 4 ranks
#   make bench-tp   tensor-parallel ALBERT on 1 rank and 2x1, 1x2, 2x2 grids: step, memory per
#                   rank, PSGEMM's rate against sgemm's
#   make mutate     mutation score: single-token mutants of the core against its tests
#   make headline-news BUDGET=MIN  news headline model: MLM pretraining + fine-tuning with a
#                   copy mechanism on ../shared/data/news/train, resumable (build/news/)
#   make volunteer  conflux-volunteer alone, without MPI, on serial HDF5 (build/volunteer/bin/)
#   make deb        its Debian package, build/volunteer/conflux-volunteer_VERSION_ARCH.deb
MODE ?= release
BUILD := build/$(MODE)
DATA ?= build/data

# Debian packages the project needs (build, tests, reference scripts, corpus builder).
DEB_PKGS := build-essential pkg-config openmpi-bin libopenmpi-dev libopenblas-dev \
	libscalapack-openmpi-dev libhdf5-openmpi-dev hdf5-tools libcunit1-dev libjson-c-dev \
	libinih-dev lz4 python3-torch python3-h5py python3-numpy python3-regex \
	slurm-wlm slurmctld slurmd slurm-client munge libpmix-dev \
	libevent-dev libssl-dev zlib1g-dev iproute2 iperf3 ethtool iputils-ping gnuplot-nox chromium \
	libhdf5-dev dataset-fashion-mnist libsimgrid-dev
# ... and those of the volunteer alone (make volunteer, make deb): no MPI, the serial HDF5
# (libhdf5-dev; it installs beside libhdf5-openmpi-dev, so DEB_PKGS has it too for the tests
# of the volunteer build). dpkg-dev (dpkg-shlibdeps) comes with build-essential.
VOLUNTEER_DEB_PKGS := build-essential pkg-config libopenblas-dev libhdf5-dev libjson-c-dev \
	libinih-dev libevent-dev libssl-dev

CC := gcc
PKGS := hdf5-openmpi openblas json-c inih libevent libevent_openssl openssl zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
MPI_CFLAGS = $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS = $(shell mpicc --showme:link 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
ifeq ($(CI),true)
WARN += -Werror
endif
ifdef WERROR
WARN += -Werror
endif

ifeq ($(MODE),release)
OPT := -O2 -g -march=x86-64-v2 -mtune=generic
else ifeq ($(MODE),debug)
OPT := -O0 -g
else ifeq ($(MODE),asan)
OPT := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
$(error MODE must be release, debug or asan)
endif

# -fno-math-errno: math functions need not set errno (conflux never reads it after them),
# so sqrtf vectorises; results are unchanged (unlike -ffast-math, which we do not use).
CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -fno-math-errno $(WARN) -I. $(PKG_CFLAGS) $(MPI_CFLAGS) -MMD -MP
LDFLAGS := $(OPT)
LDLIBS := -lscalapack-openmpi $(PKG_LIBS) $(MPI_LIBS) -lm -lpthread

# Library sources: everything in models/ io/ mpi/ bridge/ (and their subfolders) except tool
# mains (conflux-*.c).
ALL_SRCS := $(sort $(shell find models io mpi bridge -name '*.c'))
TOOL_SRCS := $(foreach s,$(ALL_SRCS),$(if $(findstring /conflux-,$(s)),$(s)))
# the simulator's model (bridge/sim/) links SimGrid, which only conflux-sim needs
SIM_SRCS := $(filter-out $(TOOL_SRCS),$(filter bridge/sim/%,$(ALL_SRCS)))
SIM_OBJS := $(SIM_SRCS:%.c=$(BUILD)/%.o)
LIB_SRCS := $(filter-out $(TOOL_SRCS) $(SIM_SRCS),$(ALL_SRCS))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TOOLS := $(foreach s,$(TOOL_SRCS),$(BUILD)/bin/$(basename $(notdir $(s))))
# Test programs, by kind (tests/README.md): CUnit suites run by tests/run-tests.sh; benchmarks;
# MPI programs that tests/mpi/*.sh and the benchmarks start under mpirun; helper programs
# of the integration scripts (the WAN link emulator, a hostile peer, the fuzzer).
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TESTS := $(TEST_SRCS:%.c=$(BUILD)/%)
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCHES := $(BENCH_SRCS:%.c=$(BUILD)/%)
MPI_TEST_SRCS := $(wildcard tests/mpi/*.c)
MPI_TESTS := $(MPI_TEST_SRCS:%.c=$(BUILD)/%)
TEST_TOOL_SRCS := $(wildcard tests/tools/tool_*.c)
TEST_TOOLS := $(TEST_TOOL_SRCS:%.c=$(BUILD)/%)

.PHONY: headline-news headline-news-run
.PHONY: all tools tests check check-run deps fashion-mnist demo demo-run bench bench-run bench-dp bench-dp-run bench-tp bench-tp-run bench-wan bench-wan-run bench-headline bench-headline-run bench-swav bench-swav-run swav-probe swav-probe-run mutate mutate-run volunteer volunteer-deps volunteer-build deb deb-build experiment experiment-run sim sim-run bench-sim bench-sim-run corpus tokenizer shards clean clean-data
all: tools

tools: $(TOOLS)
tests: $(TESTS) $(BENCHES) $(MPI_TESTS) $(TEST_TOOLS)

$(BUILD)/lib/libconflux.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

define tool_rule
$(BUILD)/bin/$(basename $(notdir $(1))): $(BUILD)/$(1:.c=.o) $(BUILD)/lib/libconflux.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) $$^ $$(LDLIBS) -o $$@
endef
$(foreach s,$(TOOL_SRCS),$(eval $(call tool_rule,$(s))))

SIMGRID_CFLAGS = $(shell pkg-config --cflags simgrid 2>/dev/null)
SIMGRID_LIBS = $(shell pkg-config --libs simgrid 2>/dev/null)
$(SIM_OBJS) $(BUILD)/bridge/sim/conflux-sim.o: CFLAGS += $(SIMGRID_CFLAGS)
$(BUILD)/bin/conflux-sim: $(SIM_OBJS)
# (the library again after the model's objects, which use it)
$(BUILD)/bin/conflux-sim: LDLIBS := $(BUILD)/lib/libconflux.a $(LDLIBS) $(SIMGRID_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/lib/libconflux.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcunit -o $@

# ---- the volunteer alone (make volunteer, make deb) ----
# conflux-volunteer built without MPI and on the serial HDF5, in its own object directory
# (build/volunteer/), so a volunteer installs neither Open MPI nor HDF5's MPI flavour. Its
# library holds every library source except mpi/ and the bridge process's sources (they
# include mpi/hybrid.h through bridge/server.h); the linker takes only the objects the tool
# needs, and --as-needed keeps unused libraries out of its NEEDED list (and so out of the
# package's Depends). No -march=native: the binary goes into a package for other machines.
VBUILD := build/volunteer
VERSION := $(shell sed -n 's/^\#define CONFLUX_VERSION "\(.*\)"/\1/p' models/common.h)
VOL_PKGS := hdf5-serial openblas json-c inih libevent_openssl openssl
VOL_BRIDGE_ONLY := bridge/server.c bridge/rounds.c bridge/status.c bridge/outer.c
VOL_LIB_SRCS := $(filter-out mpi/% $(VOL_BRIDGE_ONLY),$(LIB_SRCS))
VOL_LIB_OBJS := $(VOL_LIB_SRCS:%.c=$(VBUILD)/%.o)
VOL_OPT := -O2 -g
# pkg-config runs once, when first needed (after volunteer-deps installed the packages)
VOL_PKG_CFLAGS = $(eval VOL_PKG_CFLAGS := $(shell pkg-config --cflags $(VOL_PKGS)))$(VOL_PKG_CFLAGS)
# (libevent_openssl's .pc adds -levent, of which the volunteer uses nothing: libevent_openssl
# itself needs only libevent_core; without it the package needs no libevent-2.1-7)
VOL_PKG_LIBS = $(eval VOL_PKG_LIBS := $(filter-out -levent,$(shell pkg-config --libs $(VOL_PKGS))))$(VOL_PKG_LIBS)
VOL_CFLAGS = -std=c11 -D_GNU_SOURCE $(VOL_OPT) -fno-math-errno $(WARN) -I. $(VOL_PKG_CFLAGS) -MMD -MP
VOL_LIBS = $(VOL_PKG_LIBS) -lm -lpthread
VOL_DEB := $(VBUILD)/conflux-volunteer_$(VERSION)_$(shell dpkg --print-architecture).deb

volunteer: volunteer-deps
	@$(MAKE) --no-print-directory volunteer-build

volunteer-build: $(VBUILD)/bin/conflux-volunteer

deb: volunteer-deps
	@$(MAKE) --no-print-directory deb-build

deb-build: $(VBUILD)/bin/conflux-volunteer $(VOL_DEB)

$(VBUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(VOL_CFLAGS) -c $< -o $@

$(VBUILD)/lib/libconflux-volunteer.a: $(VOL_LIB_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(VBUILD)/bin/conflux-volunteer: $(VBUILD)/bridge/conflux-volunteer.o $(VBUILD)/lib/libconflux-volunteer.a
	@mkdir -p $(dir $@)
	$(CC) $(VOL_OPT) -Wl,--as-needed $^ $(VOL_LIBS) -o $@

# the package: bridge/debian/ holds the control template, copyright and README;
# mkdeb.sh computes Depends from the binary's libraries (dpkg-shlibdeps)
$(VOL_DEB): $(VBUILD)/bin/conflux-volunteer $(wildcard bridge/debian/*)
	bash bridge/debian/mkdeb.sh $< $(VERSION) $@

# install_debs PACKAGES: installs the missing ones of PACKAGES as root; otherwise prints the
# exact apt-get line and fails. A temporary policy-rc.d keeps the slurm and munge packages
# from starting system daemons (slurm/local-cluster.sh runs private ones). Used as a recipe
# line: deps (everything) and volunteer-deps (the volunteer alone).
define install_debs
@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "conflux: installing:$$missing"; \
	    rcd=/usr/sbin/policy-rc.d; made_rcd=; \
	    if [ ! -e $$rcd ]; then printf '#!/bin/sh\nexit 101\n' > $$rcd && chmod 755 $$rcd && made_rcd=1; fi; \
	    apt-get -o DPkg::Lock::Timeout=600 update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $$missing; \
	    rc=$$?; [ -n "$$made_rcd" ] && rm -f $$rcd; [ $$rc = 0 ] || exit $$rc; \
	  else \
	    echo "conflux: missing packages; run as root:"; \
	    echo "  apt-get install -y --no-install-recommends$$missing"; exit 1; \
	  fi; \
	fi
endef
deps:
	$(call install_debs,$(DEB_PKGS))

volunteer-deps:
	$(call install_debs,$(VOLUNTEER_DEB_PKGS))

# ---- data: corpus -> tokenizer -> shards (built once, reused; `make clean-data` redoes them) ----
VOCAB ?= 8192
corpus: $(DATA)/corpus/train.txt
$(DATA)/corpus/train.txt: io/corpus/build-corpus.sh | $(BUILD)/bin/conflux-corpus
	bash io/corpus/build-corpus.sh $(DATA) $(BUILD)/bin/conflux-corpus

tokenizer: $(DATA)/tokenizer/vocab.json
$(DATA)/tokenizer/vocab.json: $(DATA)/corpus/train.txt | $(BUILD)/bin/conflux-tokenizer
	$(BUILD)/bin/conflux-tokenizer train --vocab-size $(VOCAB) --out $(DATA)/tokenizer $(DATA)/corpus/train.txt

shards: $(DATA)/shards/train.h5
$(DATA)/shards/train.h5: $(DATA)/tokenizer/vocab.json | $(BUILD)/bin/conflux-tokenizer
	@mkdir -p $(DATA)/shards
	$(BUILD)/bin/conflux-tokenizer shard --tokenizer $(DATA)/tokenizer --out $(DATA)/shards/valid.h5 $(DATA)/corpus/valid.txt
	$(BUILD)/bin/conflux-tokenizer shard --tokenizer $(DATA)/tokenizer --out $(DATA)/shards/train.h5 $(DATA)/corpus/train.txt

# Fashion-MNIST (Debian's dataset-fashion-mnist, IDX files) as image shards for SwAV
FASHION_IDX ?= /usr/share/datasets/fashion-mnist
fashion-mnist: $(DATA)/fashion/train.h5
$(DATA)/fashion/train.h5: | $(BUILD)/bin/conflux-images
	@mkdir -p $(DATA)/fashion
	$(BUILD)/bin/conflux-images shard --images $(FASHION_IDX)/t10k-images-idx3-ubyte.gz --labels $(FASHION_IDX)/t10k-labels-idx1-ubyte.gz --out $(DATA)/fashion/test.h5 --source 'fashion-mnist test'
	$(BUILD)/bin/conflux-images shard --images $(FASHION_IDX)/train-images-idx3-ubyte.gz --labels $(FASHION_IDX)/train-labels-idx1-ubyte.gz --out $(DATA)/fashion/train.h5 --source 'fashion-mnist train'

# ---- the two set-up commands ----
check: deps
	@$(MAKE) --no-print-directory check-run

check-run: tools tests shards fashion-mnist volunteer-build deb-build
	bash tests/run-tests.sh $(BUILD) $(DATA)

demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: tools shards
	bash tests/demo.sh $(BUILD) $(DATA)

bench: deps
	@$(MAKE) --no-print-directory MODE=release bench-run

bench-run: tools tests
	bash tests/bench/bench-albert.sh $(BUILD)

bench-dp: deps
	@$(MAKE) --no-print-directory MODE=release bench-dp-run

bench-dp-run: tests
	bash tests/bench/bench-dp.sh $(BUILD)

bench-tp: deps
	@$(MAKE) --no-print-directory MODE=release bench-tp-run

bench-tp-run: tests
	bash tests/bench/bench-tp.sh $(BUILD)

bench-wan: deps
	@$(MAKE) --no-print-directory MODE=release bench-wan-run

bench-wan-run: tools tests shards
	bash tests/bench/bench-wan.sh $(BUILD) $(DATA)

experiment: deps
	@$(MAKE) --no-print-directory MODE=release experiment-run

experiment-run: tools tests shards
	bash tests/bench/experiment.sh $(BUILD) $(DATA) build/experiment

# The simulator (conflux-sim, tests/sim/): the validation against make experiment's real runs
# (build/experiment when a run of make experiment is there, else the measured runs kept in
# tests/data/sim/experiment), then the scenarios; tables in build/sim/. The last line:
# sim-validate: time_to_target_err=E samples_err=F
SIM_EXP = $(if $(wildcard build/experiment/churn/metrics.csv),build/experiment,tests/data/sim/experiment)
sim: deps
	@$(MAKE) --no-print-directory MODE=release sim-run

sim-run: tools
	@mkdir -p build/sim
	/usr/bin/python3 tests/sim/scenarios.py $(BUILD)/bin build/sim/scenarios --markdown build/sim/scenarios.md
	@echo "sim: validation against the real runs in $(SIM_EXP)"
	/usr/bin/python3 tests/sim/validate.py $(SIM_EXP) $(BUILD)/bin build/sim/validate 7.6 --markdown build/sim/validate.md

# The simulator's speed on one core: 1,000 volunteers x 1,000 sync rounds, the home-1000
# scenario (every volunteer uploading each round) and tests/sim/bench-lagging-1000.ini
# (volunteers dropped and rejoining all the time); one line each:
# bench-sim: case=C volunteers=1000 rounds=1000 seconds=S max_rss_kb=M
bench-sim: deps
	@$(MAKE) --no-print-directory MODE=release bench-sim-run

bench-sim-run: tools
	@mkdir -p build/sim
	@echo "bench-sim: $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ISA $$(grep -o -m1 -w avx512f /proc/cpuinfo || echo avx2), OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-unset} (no BLAS in the simulator), $$(pkg-config --modversion simgrid) SimGrid"
	@/usr/bin/time -f "bench-sim: case=home-1000 volunteers=1000 rounds=1000 seconds=%e max_rss_kb=%M" taskset -c 0 \
	    $(BUILD)/bin/conflux-sim --config tests/sim/scenarios/home-1000.ini --set run.steps=1000 \
	    --set run.loss_curve= --out build/sim/bench-home-1000 -q
	@/usr/bin/time -f "bench-sim: case=lagging-1000 volunteers=1000 rounds=1000 seconds=%e max_rss_kb=%M" taskset -c 0 \
	    $(BUILD)/bin/conflux-sim --config tests/sim/bench-lagging-1000.ini --out build/sim/bench-lagging-1000 -q

bench-swav: deps
	@$(MAKE) --no-print-directory MODE=release bench-swav-run

bench-swav-run: tests
	bash tests/bench/bench-swav.sh $(BUILD)

# SwAV pretraining within a CPU budget, then the linear probe, ceiling and floor (about 35
# minutes on 2 cores; tests/bench/swav-probe.sh)
swav-probe: deps
	@$(MAKE) --no-print-directory MODE=release swav-probe-run

swav-probe-run: tools fashion-mnist
	bash tests/bench/swav-probe.sh $(BUILD) $(DATA)

bench-headline: deps
	@$(MAKE) --no-print-directory MODE=release bench-headline-run

# mutation score of the core's tests (tests/mutate.py; about an hour on 2 cores; not in check)
mutate: deps
	@$(MAKE) --no-print-directory MODE=release mutate-run

mutate-run: tools tests shards
	python3 tests/mutate.py --build $(BUILD) --data $(DATA)

bench-headline-run: tools tests shards
	bash tests/bench/bench-headline.sh $(BUILD) $(DATA)

# a headline model for real news within BUDGET minutes; run again to resume where it stopped
# (io/headline/news/recipe.sh: NEWS_TRAIN, NEWS_VALID, FT_SET, ... for other data and scale)
BUDGET ?= 60
NEWS_WORK ?= build/news
headline-news: deps
	@$(MAKE) --no-print-directory MODE=release headline-news-run

headline-news-run: tools
	bash io/headline/news/recipe.sh $(BUILD) $(NEWS_WORK) $(BUDGET)

clean:
	rm -rf build/release build/debug build/asan build/volunteer

clean-data:
	rm -rf $(DATA)/corpus $(DATA)/tokenizer $(DATA)/shards

-include $(LIB_OBJS:.o=.d) $(TOOL_SRCS:%.c=$(BUILD)/%.d) $(TEST_SRCS:%.c=$(BUILD)/%.d) $(BENCH_SRCS:%.c=$(BUILD)/%.d) $(MPI_TEST_SRCS:%.c=$(BUILD)/%.d) $(TEST_TOOL_SRCS:%.c=$(BUILD)/%.d) \
	$(VOL_LIB_OBJS:.o=.d) $(VBUILD)/bridge/conflux-volunteer.d
.SECONDARY:
