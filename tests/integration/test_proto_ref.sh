#!/bin/bash
# test_proto_ref.sh BUILD_DIR [DATA_DIR]: the labels of the stored fuzz corpus
# tests/tools/fuzz/proto/ (ok-, need-, err-: the outcome test_proto asserts on replay) against
# tests/ref/proto_ref.py, a decoder written from the specification in bridge/proto.h, not from
# bridge/proto.c. The labels were first produced by the C decoder (test_proto --classify), so
# without this check a decoder bug would have been stored as the expected outcome.
#   bash tests/integration/test_proto_ref.sh build/release build/data
# 1. proto_ref.py selftest (the CRC32C check value, built frames).
# 2. every corpus file: the reference's outcome equals its prefix (the count is printed).
# 3. the check itself: a copy of the corpus with one ok- file renamed err- and one err- file
#    renamed need- must fail and name both (and nothing else that 2. did not name).
# 4. beyond the corpus: 3000 streams derived from it (bytes changed, cut, inserted; CRCs and
#    lengths mostly repaired, so the payload rules are reached) get the same outcome from the
#    reference and from the C decoder (test_proto --classify).
# DATA_DIR is not used. Without /usr/bin/python3 the test is SKIPPED.
set -uo pipefail

build=${1:?usage: tests/integration/test_proto_ref.sh BUILD_DIR [DATA_DIR]}
here=$(cd "$(dirname "$0")/.." && pwd)  # tests/
corpus="$here/tools/fuzz/proto"
ref_py="$here/ref/proto_ref.py"
tbin="$(cd "$build" 2>/dev/null && pwd)/tests/unit/test_proto"   # absolute: used after cd
py=/usr/bin/python3
source "$here/lib.sh"   # ok, bad, skip

[ -x "$py" ] || skip "$py missing: the fuzz corpus labels cannot be checked against tests/ref/proto_ref.py"
[ -x "$tbin" ] || { echo "FAIL: $tbin not built (make tests)"; exit 1; }
[ -d "$corpus" ] || { echo "FAIL: no corpus directory $corpus"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. the reference's own checks
if "$py" "$ref_py" selftest >"$tmp/self" 2>&1; then ok "proto_ref.py selftest"
else bad "proto_ref.py selftest"; sed 's/^/    | /' "$tmp/self"; fi

# 2. the corpus labels
n_files=$(find "$corpus" -maxdepth 1 -type f ! -name README.md ! -name '.*' | wc -l)
if "$py" "$ref_py" check "$corpus" >"$tmp/check" 2>&1; then
    ok "$n_files corpus files: the specification gives each the outcome its name says ($(tail -n 1 "$tmp/check" | sed 's/.*(\(.*\))/\1/'))"
else
    bad "corpus labels differ from the specification ($corpus)"; sed 's/^/    | /' "$tmp/check"
fi
[ "$n_files" -ge 100 ] || bad "only $n_files corpus files in $corpus (115 expected)"

# 3. a wrong label must be caught
mkdir "$tmp/corpus"
cp "$corpus"/*.bin "$tmp/corpus/"
okf=$(cd "$tmp/corpus" && ls ok-*.bin | head -n 1)
errf=$(cd "$tmp/corpus" && ls err-*.bin | head -n 1)
mv "$tmp/corpus/$okf" "$tmp/corpus/err-${okf#ok-}"
mv "$tmp/corpus/$errf" "$tmp/corpus/need-${errf#err-}"
"$py" "$ref_py" check "$tmp/corpus" >"$tmp/mut" 2>&1
rc=$?
if [ $rc = 1 ] && grep -q "FAIL: .*/err-${okf#ok-}: the specification says ok" "$tmp/mut" &&
    grep -q "FAIL: .*/need-${errf#err-}: the specification says err" "$tmp/mut" &&
    [ "$(grep -c '^FAIL' "$tmp/mut")" = $((2 + $(grep -c '^FAIL' "$tmp/check"))) ]; then
    ok "relabelled copies ($okf as err-, $errf as need-) are caught, and only they"
else bad "relabelled corpus files not caught (exit $rc)"; sed 's/^/    | /' "$tmp/mut"; fi

# 4. reference and C decoder on derived streams
"$py" "$ref_py" mutate 1 3000 "$corpus" "$tmp/m" || bad "proto_ref.py mutate failed"
(cd "$tmp/m" && "$py" "$ref_py" classify m-*.bin) | cut -f1,2 | sort -k2 >"$tmp/py.txt"
(cd "$tmp/m" && "$tbin" --classify m-*.bin 2>/dev/null) | grep -E '^(ok|need|err)	' | cut -f1,2 |
    sort -k2 >"$tmp/c.txt"
n_m=$(wc -l <"$tmp/py.txt")
if [ "$n_m" = 3000 ] && cmp -s "$tmp/py.txt" "$tmp/c.txt"; then
    ok "3000 derived streams: the C decoder gives the reference's outcome for each ($(grep -c '^ok' "$tmp/py.txt") ok, $(grep -c '^need' "$tmp/py.txt") need, $(grep -c '^err' "$tmp/py.txt") err)"
else
    bad "the C decoder and proto_ref.py disagree on derived streams ($n_m classified; first differences, reference < > C):"
    diff "$tmp/py.txt" "$tmp/c.txt" | head -n 10 | sed 's/^/    | /'
    echo "    (rerun: $py $ref_py mutate 1 3000 $corpus DIR; then classify the files named above)"
fi

echo
if [ $fails -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all proto reference checks passed"
