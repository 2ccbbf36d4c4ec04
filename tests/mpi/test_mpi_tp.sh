#!/usr/bin/env bash
# Runs tests/mpi_tp_check (tensor parallelism on a 2D BLACS grid, mpi/tp.h) on every grid
# shape of 1, 2 and 4 ranks (4 oversubscribed on small machines): 1x1, 2x1, 1x2, 2x2, and
# 2 data-parallel replicas of a 2x1 and of a 1x2 grid. Each run compares the layout, the
# PSGEMM linear layer and the distributed LayerNorm with double-precision references
# (within 1e-5 of scale) and checks that grids which do not fit are refused. As root, a
# refused mpirun exits 0 having run nothing, so every run must show "rank R of N ran" for
# every R, as well as exit 0 and "N passed, 0 failed". Compiles nothing: expects
# BUILD_DIR/tests/mpi/mpi_tp_check.
# usage: tests/mpi/test_mpi_tp.sh BUILD_DIR [DATA_DIR (unused)]
set -u
BUILD=${1:?usage: test_mpi_tp.sh BUILD_DIR}
BIN=$BUILD/tests/mpi/mpi_tp_check
source "$(dirname "$0")/../lib.sh"
command -v mpirun >/dev/null 2>&1 || skip "mpirun not found (install openmpi-bin)"
[ -x "$BIN" ] || { echo "FAIL: $BIN not built (make tests)"; exit 1; }
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi
export OMPI_MCA_mpi_yield_when_idle=1
export LSAN_OPTIONS="suppressions=$HERE/lsan-mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# NP P Q: NP ranks, D = NP / (P*Q) replicas of a P x Q grid
for run in "1 1 1" "2 2 1" "2 1 2" "4 2 2" "4 2 1" "4 1 2"; do
    set -- $run
    N=$1 P=$2 Q=$3
    name="$N ranks, $((N / (P * Q))) x a ${P}x${Q} grid"
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np "$N" "$BIN" "$P" "$Q" >"$LOG" 2>&1
    rc=$?
    grep -v '^ok:' "$LOG" | sed "s/^/  [$name] /"
    if [ "$rc" = 124 ]; then bad "$name: timed out after 60 s (a hang?)"; continue; fi
    [ "$rc" = 0 ] || bad "$name: exit status $rc"
    missing=""
    for ((r = 0; r < N; r++)); do
        [ "$(grep -c "^rank $r of $N ran" "$LOG")" = 1 ] || missing="$missing $r"
    done
    [ -z "$missing" ] && ok "$name: all ranks ran" ||
        bad "$name: no 'rank R of $N ran' line from rank(s)$missing (did mpirun run at all?)"
    if grep -qE '^[0-9]+ passed, 0 failed$' "$LOG" && ! grep -q '^FAIL' "$LOG" &&
        [ "$(grep -c '^ok:' "$LOG")" -ge 38 ]; then
        ok "$name: $(grep -E '^[0-9]+ passed, 0 failed$' "$LOG")"
    else
        bad "$name: checks failed"
    fi
done
[ "$fails" = 0 ] && echo "0 failure(s)" || echo "$fails failure(s)"
[ "$fails" = 0 ]
