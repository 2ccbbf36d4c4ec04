#!/usr/bin/env bash
# Runs tests/mpi_tp_check (tensor parallelism on a 2D BLACS grid, mpi/tp.h) on every grid
# shape of 1, 2 and 4 ranks (4 oversubscribed on small machines): 1x1, 2x1, 1x2, 2x2, and
# 2 data-parallel replicas of a 2x1 and of a 1x2 grid. Each run compares the layout, the
# PSGEMM linear layer and the distributed LayerNorm with double-precision references
# (within 1e-5 of scale) and checks that grids which do not fit are refused. Then
# tests/mpi_tp_albert_check on 1x1, 2x1, 1x2 and 2x2 with the default feature blocks (a
# grid row's heads together), and with blocks of one head and of three (uneven): the
# tensor-parallel ALBERT encoder and masked-LM model (mpi/tp_albert.h) against the one-rank
# models, on the encoder's output, the MLM loss, every gradient, training steps and
# checkpoints read back across layouts (one rank <-> grid) and on the same grid. As root, a
# refused mpirun exits 0 having run nothing, so every run must show "rank R of N ran" for
# every R, as well as exit 0 and "N passed, 0 failed". Compiles nothing: expects
# BUILD_DIR/tests/mpi/mpi_tp_check.
# usage: tests/mpi/test_mpi_tp.sh BUILD_DIR [DATA_DIR (unused)]
set -u
BUILD=${1:?usage: test_mpi_tp.sh BUILD_DIR}
source "$(dirname "$0")/../lib.sh"
command -v mpirun >/dev/null 2>&1 || skip "mpirun not found (install openmpi-bin)"
for b in mpi_tp_check mpi_tp_albert_check; do
    [ -x "$BUILD/tests/mpi/$b" ] || { echo "FAIL: $BUILD/tests/mpi/$b not built (make tests)"; exit 1; }
done
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi
export OMPI_MCA_mpi_yield_when_idle=1
export LSAN_OPTIONS="suppressions=$HERE/lsan-mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# PROGRAM MIN NP P Q: NP ranks, D = NP / (P*Q) replicas of a P x Q grid; at least MIN ok lines
for run in "mpi_tp_check 38 1 1 1" "mpi_tp_check 38 2 2 1" "mpi_tp_check 38 2 1 2" "mpi_tp_check 38 4 2 2" \
           "mpi_tp_check 38 4 2 1" "mpi_tp_check 38 4 1 2" "mpi_tp_albert_check 66 1 1 1" \
           "mpi_tp_albert_check 66 2 2 1" "mpi_tp_albert_check 66 2 1 2" "mpi_tp_albert_check 66 4 2 2" \
           "mpi_tp_albert_check 66 2 2 1 1" "mpi_tp_albert_check 66 4 2 2 1" "mpi_tp_albert_check 66 2 2 1 3"; do
    set -- $run
    BIN=$BUILD/tests/mpi/$1 MIN=$2 N=$3 P=$4 Q=$5 BH=${6:-}
    name="$1, $N ranks, $((N / (P * Q))) x a ${P}x${Q} grid${BH:+, blocks of $BH heads}"
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np "$N" "$BIN" "$P" "$Q" $BH >"$LOG" 2>&1
    rc=$?
    grep -v '^ok:' "$LOG" | sed "s/^/  [$name] /"
    if [ "$rc" = 124 ]; then bad "$name: timed out after 60 s (a hang?)"; continue; fi
    [ "$rc" = 0 ] || bad "$name: exit status $rc"
    ranks_ran "$LOG" "$N" "$name"
    if grep -qE '^[0-9]+ passed, 0 failed$' "$LOG" && ! grep -q '^FAIL' "$LOG" &&
        [ "$(grep -c '^ok:' "$LOG")" -ge "$MIN" ]; then
        ok "$name: $(grep -E '^[0-9]+ passed, 0 failed$' "$LOG")"
    else
        bad "$name: checks failed"
    fi
done
[ "$fails" = 0 ] && echo "0 failure(s)" || echo "$fails failure(s)"
[ "$fails" = 0 ]
