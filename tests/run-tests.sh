#!/usr/bin/env bash
# Runs every test, by kind: the CUnit suites (BUILD/tests/unit/test_*, from
# tests/unit/test_*.c), then the scripts tests/mpi/test_*.sh (MPI programs under mpirun)
# and tests/integration/test_*.sh (tools, Slurm, WAN emulation); each script gets BUILD and
# DATA. A test is named KIND/NAME (unit/test_headline and integration/test_headline are
# two tests) and logs to BUILD/test-logs/KIND/NAME.log. Prints one line per test (PASS,
# FAIL or SKIP) and a summary "N passed, N failed, N skipped"; exits non-zero when any test
# failed. A test that exits 77 is skipped whole (tests/lib.sh's skip: its SKIPPED: line
# says why) and is not counted as passed; each "SKIPPED: ..." line of a passing test (a
# part skipped: skip_check in tests/lib.sh, tu_skip in tests/unit/testutil.h) is shown
# under its PASS line and counted in the skipped total. CONFLUX_NO_SKIP=1 (set by .ci/run;
# CI=true sets it too) makes every skip a failure. NAME_FILTER keeps the tests whose
# KIND/NAME contains it.
# usage: tests/run-tests.sh BUILD_DIR DATA_DIR [NAME_FILTER]
set -u
BUILD=${1:?usage: run-tests.sh BUILD_DIR DATA_DIR [FILTER]}
DATA=${2:?usage: run-tests.sh BUILD_DIR DATA_DIR [FILTER]}
FILTER=${3:-}
LOGDIR=$BUILD/test-logs
# sanitizer builds: Open MPI's own allocations in MPI_Init are never freed; suppress only
# those (needs full stacks), everything of conflux's stays checked
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan-mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
if [ "${CI:-}" = true ] && [ -z "${CONFLUX_NO_SKIP:-}" ]; then export CONFLUX_NO_SKIP=1; fi
[ "${CONFLUX_NO_SKIP:-}" = 1 ] && echo "CONFLUX_NO_SKIP=1: a test that would skip fails"
mkdir -p "$LOGDIR"
pass=0; fail=0; skipped=0; failed=()
run_one() {
    local name=$1; shift
    local log=$LOGDIR/$name.log t0=$SECONDS rc=0 n
    mkdir -p "$(dirname "$log")"
    "$@" >"$log" 2>&1 || rc=$?
    if [ $rc = 0 ]; then
        pass=$((pass + 1)); printf 'PASS  %-36s %4ds\n' "$name" $((SECONDS - t0))
        n=$(grep -c '^SKIPPED' "$log")
        skipped=$((skipped + n))
        grep -h '^SKIPPED' "$log" | sed 's/^/      /'
    elif [ $rc = 77 ]; then
        skipped=$((skipped + 1)); printf 'SKIP  %-36s %4ds\n' "$name" $((SECONDS - t0))
        grep -h '^SKIPPED' "$log" | sed 's/^/      /'
    else
        fail=$((fail + 1)); failed+=("$name")
        printf 'FAIL  %-36s %4ds  (log: %s)\n' "$name" $((SECONDS - t0)) "$log"
        tail -n 30 "$log" | sed 's/^/      | /'
    fi
}
for t in "$BUILD"/tests/unit/test_*; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    case $t in *.o|*.d) continue;; esac
    name=unit/$(basename "$t")
    [ -n "$FILTER" ] && [[ $name != *$FILTER* ]] && continue
    run_one "$name" "$t"
done
for s in tests/mpi/test_*.sh tests/integration/test_*.sh; do
    [ -f "$s" ] || continue
    name=$(basename "$(dirname "$s")")/$(basename "$s" .sh)
    [ -n "$FILTER" ] && [[ $name != *$FILTER* ]] && continue
    run_one "$name" bash "$s" "$BUILD" "$DATA"
done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
