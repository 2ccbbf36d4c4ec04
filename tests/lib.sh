# tests/lib.sh: shared helpers of the test scripts (source it after setting DATA, if the
# script has one). ok/bad count results into $fails; TINY_MODEL is the small ALBERT of the
# training tests (H=64, 2 heads, E=32, FFN 128, 2 layers, T=64, dropout 0.1) on the real
# corpus shards.
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Skips: the one convention of every test (tests/run-tests.sh counts them).
#   skip REASON         the whole test cannot run here: prints "SKIPPED: REASON" and exits 77,
#                       which run-tests.sh counts as skipped (never as passed).
#   skip_check REASON   one part cannot run here: prints "SKIPPED: REASON" and returns; the
#                       test goes on, and run-tests.sh shows the line under the test's PASS
#                       line and adds it to the skipped total.
# With CONFLUX_NO_SKIP=1 (set by .ci/run, and by run-tests.sh when CI=true) a skip is a
# failure: CI installs every package and has root, network namespaces, Slurm and the shared
# data, so a test that would skip there is broken. skip then prints "FAIL: REASON (...)" and
# exits 1; skip_check prints it and counts a failure in $fails.
no_skip() { [ "${CONFLUX_NO_SKIP:-}" = 1 ]; }
skip() {
    if no_skip; then echo "FAIL: $* (would skip, but CONFLUX_NO_SKIP=1)"; exit 1; fi
    echo "SKIPPED: $*"; exit 77
}
skip_check() {
    if no_skip; then echo "FAIL: $* (would skip, but CONFLUX_NO_SKIP=1)"; fails=$((fails + 1)); return 0; fi
    echo "SKIPPED: $*"
}
TINY_MODEL=(--set data.train="${DATA:-}/shards/train.h5" --set data.valid="${DATA:-}/shards/valid.h5"
            --set model.hidden_size=64 --set model.num_heads=2 --set model.embedding_size=32
            --set model.intermediate_size=128 --set model.num_layers=2 --set data.seq_len=64
            --set model.dropout=0.1 --set optim.warmup_steps=5 --set train.threads=1)
# the quiet, portable Open MPI settings of MACHINE-NOTES (ranks may outnumber cores)
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi OMPI_MCA_mpi_yield_when_idle=1
# free_ports: prints a base port P such that P..P+9 are not in use (listening or connected), chosen at random below
# the kernel's ephemeral range (a random pick inside it can collide with the port of some
# outgoing connection: "Address already in use").
free_ports() {
    local lo hi p i busy try
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
    [ "$lo" -gt 11000 ] 2>/dev/null || lo=32768
    for ((try = 0; try < 50; try++)); do
        p=$((10000 + RANDOM % (lo - 10010)))
        busy=0
        for ((i = 0; i < 10; i++)); do
            ss -Htan "( sport = :$((p + i)) )" 2>/dev/null | grep -q . && busy=1
        done
        [ $busy = 0 ] && break
    done
    echo "$p"
}
# waitfor SECONDS COMMAND...: polls (every 0.1 s) until COMMAND succeeds; status 1 after SECONDS
waitfor() {  # SECONDS COMMAND...: poll until the command succeeds
    local t=$1; shift
    for _ in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done
    return 1
}
# wait_log FILE PATTERN [SECONDS]: waits until PATTERN (grep) appears in FILE; status 1 after
# SECONDS (default 60)
wait_log() {
    for _ in $(seq $((${3:-60} * 5))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
    return 1
}
# compare A.h5 B.h5 TOL: max |a - b| over /params of two checkpoints of the same step
# (prints it; status 0 when within TOL)
compare() {
    /usr/bin/python3 - "$@" <<'EOF'
import sys, h5py, numpy as np
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
with h5py.File(a) as fa, h5py.File(b) as fb:
    d = max(float(np.abs(fa["params"][k][()] - fb["params"][k][()]).max()) for k in fa["params"])
    steps = (int(fa.attrs["step"]), int(fb.attrs["step"]))
print(f"max |diff| {d:.3g} (tolerance {tol:g}), steps {steps}")
sys.exit(0 if d <= tol and steps[0] == steps[1] else 1)
EOF
}
# compare_except A.h5 B.h5 TOL NAME: as compare, over every /params tensor but NAME (a
# tensor whose gradient is rounding noise, e.g. SwAV's projection_head.0.bias, which feeds a
# batch norm: LARS scales that noise up to full-size steps whose direction depends on the
# summation order); the steps are not compared
compare_except() {
    /usr/bin/python3 - "$@" <<'EOF'
import sys, h5py, numpy as np
a, b, tol, skip = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
with h5py.File(a) as fa, h5py.File(b) as fb:
    d = max(float(np.abs(fa["params"][k][()] - fb["params"][k][()]).max()) for k in fa["params"] if k != skip)
print(f"max |diff| {d:.3g} (tolerance {tol:g}; {skip} left out)")
sys.exit(0 if d <= tol else 1)
EOF
}

# ranks_ran LOG N NAME: every rank of an N-rank mpirun printed "rank R of N ran" exactly once
# in LOG, and no other such line is there (as root a refused mpirun exits 0 having run
# nothing); ok or bad with NAME.
ranks_ran() {
    local log=$1 n=$2 name=$3 r missing=""
    for ((r = 0; r < n; r++)); do
        [ "$(grep -c "^rank $r of $n ran" "$log")" = 1 ] || missing="$missing $r"
    done
    if [ -n "$missing" ]; then
        bad "$name: no 'rank R of $n ran' line from rank(s)$missing (did mpirun run at all?)"
    elif [ "$(grep -c '^rank [0-9]* of [0-9]* ran' "$log")" != "$n" ]; then
        bad "$name: unexpected number of 'ran' lines"
    else
        ok "$name: all ranks ran"
    fi
}
