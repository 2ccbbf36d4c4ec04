#!/usr/bin/env bash
# Runs tests/mpi_dp_check (the MPI averaging backend, mpi/dp.h) on 1, 2 and 4 ranks (4
# oversubscribed on small machines). Compiles nothing: expects BUILD_DIR/tests/mpi/mpi_dp_check.
# As root, a refused mpirun exits 0 having run nothing, so every run must show
# "rank R of P ran" for every R, as well as exit 0 and "N passed, 0 failed".
# In a sanitizer build, Open MPI's own leaks are suppressed with tests/lsan-mpi.supp
# (conflux's allocations stay checked). Also checks that ranks passing different arenas
# to dp_create abort the job with a message naming rank and host, that MPI_CHECK does, and
# that an arena too large to address is refused with its size.
# usage: tests/mpi/test_mpi_dp.sh BUILD_DIR [DATA_DIR (unused)]
set -u
BUILD=${1:?usage: test_mpi_dp.sh BUILD_DIR}
BIN=$BUILD/tests/mpi/mpi_dp_check
source "$(dirname "$0")/../lib.sh"   # skip
command -v mpirun >/dev/null 2>&1 || skip "mpirun not found (install openmpi-bin)"
if [ ! -x "$BIN" ]; then
    echo "FAIL: $BIN not built (make tests builds tests/mpi_*.c into BUILD/tests/)"
    exit 1
fi
HERE=$(cd "$(dirname "$0")/.." && pwd)  # tests/
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi
export OMPI_MCA_mpi_yield_when_idle=1   # more ranks than cores: yield instead of spinning
export LSAN_OPTIONS="suppressions=$HERE/lsan-mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

for P in 1 2 4; do
    timeout 25 mpirun --allow-run-as-root --oversubscribe -np "$P" "$BIN" >"$LOG" 2>&1
    rc=$?
    sed "s/^/  [P=$P] /" "$LOG"
    if [ "$rc" = 124 ]; then bad "$P ranks: timed out after 25 s (a hang?)"; continue; fi
    [ "$rc" = 0 ] || bad "$P ranks: exit status $rc"
    ranks_ran "$LOG" "$P" "$P ranks"
    if grep -qE '^[0-9]+ passed, 0 failed$' "$LOG" && ! grep -q '^FAIL' "$LOG"; then
        ok "$P ranks: $(grep -E '^[0-9]+ passed, 0 failed$' "$LOG")"
    else
        bad "$P ranks: checks failed"
    fi
done
# expect_abort NAME NP MODE PATTERN WHAT: `mpi_dp_check MODE` on NP ranks must abort the job
# (non-zero, not the timeout) with a line matching PATTERN
expect_abort() {
    local name=$1 np=$2 mode=$3 pattern=$4 what=$5 rc
    timeout 25 mpirun --allow-run-as-root --oversubscribe -np "$np" "$BIN" "$mode" >"$LOG" 2>&1
    rc=$?
    sed "s/^/  [$name] /" "$LOG" | head -20
    if [ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "$pattern" "$LOG"; then
        ok "$what"
    else
        bad "$name: exit status $rc, expected an abort matching '$pattern'"
    fi
}
# ranks that disagree on the gradient layout: the job aborts with a message naming rank and host
expect_abort mismatch 2 --mismatch '^conflux: fatal: rank [01] host .*ranks disagree on the gradient layout' \
    "mismatched layouts abort the job with rank, host and reason"
# MPI_CHECK: a failing MPI call aborts the job with rank, host, file:line and the call
expect_abort mpi-fatal 2 --mpi-fatal '^conflux: fatal: rank [01] host .* tests/mpi/mpi_dp_check.c:[0-9]*: MPI_Send(.*): ' \
    "MPI_CHECK aborts the job with rank, host, file:line and the failing call"
# an arena whose size in bytes would overflow: refused by name before anything is allocated
expect_abort huge 1 --huge '^conflux: fatal: rank 0 host .*dp_create: arena of 2305843009213693952 elements too large' \
    "an arena too large to address aborts with its size"
echo "mpi_dp: $fails failure(s)"
[ "$fails" -eq 0 ]
