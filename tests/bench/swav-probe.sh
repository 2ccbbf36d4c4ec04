#!/usr/bin/env bash
# make swav-probe: SwAV pretraining on Fashion-MNIST within a CPU budget, then the linear
# probe, beside the same network trained with labels (the ceiling) and at its random
# initialisation (the floor). The last line reads
#   swav-probe: top1=T supervised_top1=S random_top1=R pretrain_steps=N pretrain_minutes=M
# Knobs: SWAV_STEPS (default 400: global batch 256, about 18 minutes on 2 cores), SUP_STEPS
# (default 400), WORK (default build/swav). The pretraining resumes where it stopped when run
# again (its run directory is WORK/pretrain).
# usage: tests/bench/swav-probe.sh BUILD_DIR DATA_DIR
set -euo pipefail
BUILD=${1:?usage: swav-probe.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: swav-probe.sh BUILD_DIR DATA_DIR}
SWAV_STEPS=${SWAV_STEPS:-400}
SUP_STEPS=${SUP_STEPS:-400}
WORK=${WORK:-build/swav}
. "$(dirname "$0")/isa.sh"
TR=$DATA/fashion/train.h5
TE=$DATA/fashion/test.h5
RUN=$WORK/pretrain
mkdir -p "$WORK"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); isa=$(cpu_isa) OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
t0=$(date +%s)
SET=(--set train.steps="$SWAV_STEPS" --set optim.warmup_steps=$((SWAV_STEPS / 10))
     --set swav.freeze_prototypes_steps=$((SWAV_STEPS / 10)) --set train.eval_every=0
     --set train.checkpoint_every=50 --set train.log_every=20
     --set data.train="$TR" --set data.valid="$TE" --set run.dir="$RUN")
if [ -f "$RUN/finished" ]; then
    echo "pretraining: $RUN is finished ($SWAV_STEPS steps)"
elif [ -e "$RUN/latest.h5" ]; then
    "$BUILD/bin/conflux-swav" --resume "$RUN/latest.h5" "${SET[@]}"
else
    "$BUILD/bin/conflux-swav" "${SET[@]}"
fi
minutes=$(awk -v s="$(( $(date +%s) - t0 ))" 'BEGIN {printf "%.1f", s / 60}')
# (the probe's line goes to stderr too; not through tee /dev/stderr, which truncates a log
# file that stderr is redirected to)
probe() {
    local out
    out=$("$BUILD/bin/conflux-probe" "$@" --train "$TR" --test "$TE")
    echo "$out" >&2
    sed -n 's/^probe: top1=\([0-9.]*\).*/\1/p' <<<"$out"
}
T=$(probe --checkpoint "$RUN/latest.h5")
R=$(probe --random)
S=$(probe --supervised "$SUP_STEPS")
echo "swav-probe: top1=$T supervised_top1=$S random_top1=$R pretrain_steps=$SWAV_STEPS pretrain_minutes=$minutes isa=$(cpu_isa) openblas_coretype=${OPENBLAS_CORETYPE:-unset}"
