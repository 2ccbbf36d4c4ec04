#!/bin/bash
# test_rouge_ref.sh BUILD_DIR [DATA_DIR]: conflux-rouge on the command line, and io/eval/rouge.c
# against the independent Python reference tests/ref/rouge_ref.py.
#   bash tests/integration/test_rouge_ref.sh build/release build/data
# Part 1 (always): the CLI contract: the SOURCES.md vectors in text/json/csv, the --help
#   example, stdin "-", CRLF lines, a last line without "\n", exit status 0/1/2 and the
#   "conflux-rouge: error: what (where)" messages (different line counts, missing file,
#   empty files, bad options).
# Part 2 (when /usr/bin/python3 exists, else SKIPPED): the case-folding and whitespace
#   tables of io/eval/rouge.c (printed by test_rouge --dump-fold / --dump-space) against Python's
#   str.lower()/str.isspace(); then per-example scores of random pairs (Cyrillic, Latin,
#   Greek in random case, punctuation, dots, NBSP, empty lines, invalid UTF-8) in both
#   modes, with and without --keep-case, and of long one-sentence pairs, which must equal
#   the reference's to every printed digit (x100, 6 decimals).
set -uo pipefail

build=${1:?usage: tests/integration/test_rouge_ref.sh BUILD_DIR [DATA_DIR]}
here=$(cd "$(dirname "$0")/.." && pwd)  # tests/
tool="$build/bin/conflux-rouge"
tooldir=$(cd "$build/bin" 2>/dev/null && pwd)
tbin="$build/tests/unit/test_rouge"
ref_py="$here/ref/rouge_ref.py"
py=/usr/bin/python3
source "$here/lib.sh"   # ok, bad, skip_check

for b in "$tool" "$tbin"; do
    [ -x "$b" ] || { echo "FAIL: $b not built (make tools tests)"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect RC CMD...: runs CMD (stdout -> $tmp/out, stderr -> $tmp/err), checks the status
expect() {
    local want=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -ne "$want" ]; then
        bad "exit $rc, expected $want: $*"; sed 's/^/    | /' "$tmp/err"; return 1
    fi
    return 0
}
# has FILE TEXT: FILE contains the fixed string TEXT
has() { grep -qF -- "$2" "$1"; }

# ---------------------------------------------------------------- part 1: CLI
printf '%s\n' "в канаде из нефтепровода в болото вытекли около 60 тысяч литров нефти" \
    "пожар в цеху на севере москвы локализован" >"$tmp/refs.txt"
printf '%s\n' "около 60 тысяч литров нефти вытекли из нефтепровода в канаде" \
    "пожар на севере москвы локализован , сообщили в мчс" >"$tmp/hyps.txt"

# per-example csv reproduces SOURCES.md (F x100 to 4 decimals = fractions to 6)
if expect 0 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --mode paper --format csv --per-example; then
    cut -d, -f1,2,5,8,11 "$tmp/out" >"$tmp/f"
    if has "$tmp/f" "1,1,95.238095,70.000000,47.404547" && has "$tmp/f" "2,1,75.000000,42.857142,60.634328" &&
        has "$tmp/f" "mean,2,"; then
        ok "paper mode vectors: 0.952381 0.7 0.474045 / 0.75 0.428571 0.606343"
    else bad "paper mode vectors"; cat "$tmp/out"; fi
fi
if expect 0 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --format csv --per-example; then
    cut -d, -f1,5,8,11 "$tmp/out" >"$tmp/f"
    if has "$tmp/f" "1,90.909091,70.000000,45.454545" && has "$tmp/f" "2,75.000000,42.857143,62.500000"; then
        ok "standard mode vectors: 0.909091 0.7 0.454545 / 0.75 0.428571 0.625"
    else bad "standard mode vectors"; cat "$tmp/out"; fi
fi
# text format: the macro averages and the count
if expect 0 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --mode paper; then
    if has "$tmp/out" "macro average over 2 examples" && grep -Eq '^R-1 +83\.33 +88\.31 +85\.12$' "$tmp/out" &&
        grep -Eq '^R-L +52\.78 +58\.44 +54\.02$' "$tmp/out"; then
        ok "text format"
    else bad "text format"; cat "$tmp/out"; fi
fi
# json (parsed by python when present)
if expect 0 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --mode paper --format json --per-example; then
    if [ -x "$py" ]; then
        if "$py" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mode"] == "paper" and d["count"] == 2 and d["scale"] == 100 and d["lowercase"] is True
assert abs(d["examples"][0]["rouge-l"]["f"] - 47.404547) < 1e-6
assert abs(d["examples"][1]["rouge-2"]["f"] - 42.857142) < 1e-6
assert abs(d["rouge-1"]["f"] - (95.238095 + 75.0) / 2) < 2e-6
' "$tmp/out"; then ok "json format"; else bad "json format"; cat "$tmp/out"; fi
    elif has "$tmp/out" '"rouge-l": {"p": 55.555556, "r": 71.428571, "f": 60.634328}'; then
        ok "json format (text check)"
    else bad "json format"; cat "$tmp/out"; fi
fi
# stdin for one side; CRLF and a last line without "\n" change nothing
printf 'в канаде из нефтепровода в болото вытекли около 60 тысяч литров нефти\r\nпожар в цеху на севере москвы локализован' >"$tmp/refs-crlf.txt"
expect 0 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --mode paper --format csv && cp "$tmp/out" "$tmp/base.csv"
if expect 0 "$tool" --ref - --hyp "$tmp/hyps.txt" --mode paper --format csv <"$tmp/refs-crlf.txt" &&
    cmp -s "$tmp/out" "$tmp/base.csv"; then
    ok "stdin reference, CRLF, unterminated last line"
else bad "stdin/CRLF"; cat "$tmp/out" "$tmp/base.csv"; fi
if expect 0 "$tool" --hyp - --ref "$tmp/refs.txt" --mode paper --format csv <"$tmp/hyps.txt" &&
    cmp -s "$tmp/out" "$tmp/base.csv"; then
    ok "stdin hypotheses"
else bad "stdin hypotheses"; fi
# the --help example, run as written
if expect 0 "$tool" --help && has "$tmp/out" "example:" && has "$tmp/out" "usage: conflux-rouge"; then
    grep -E "^  (printf|conflux-rouge) " "$tmp/out" | sed 's/^  //' >"$tmp/example.sh"
    mkdir -p "$tmp/example"
    if (cd "$tmp/example" && PATH="$tooldir:$PATH" bash "$tmp/example.sh") >"$tmp/ex.out" 2>&1 &&
        grep -Eq '^R-1 .* 75\.00$' "$tmp/ex.out" && grep -Eq '^R-2 .* 42\.86$' "$tmp/ex.out" &&
        grep -Eq '^R-L .* 60\.63$' "$tmp/ex.out" && grep -Eq '^R-1 +\+15\.00 ' "$tmp/ex.out" &&
        grep -Eq '^R-2 +-7\.14 ' "$tmp/ex.out" && grep -Eq '^R-L +\+13\.61 ' "$tmp/ex.out"; then
        ok "--help example gives the numbers it promises"
    else bad "--help example"; cat "$tmp/example.sh" "$tmp/ex.out"; fi
fi
# runtime failures: exit 1, "conflux-rouge: error: what (where)"
head -n 1 "$tmp/hyps.txt" >"$tmp/one.txt"
if expect 1 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/one.txt" &&
    has "$tmp/err" "conflux-rouge: error: the files have different numbers of lines: 2 references, 1 hypotheses (--ref $tmp/refs.txt, --hyp $tmp/one.txt)"; then
    ok "different line counts name both files and counts"
else bad "line count message"; cat "$tmp/err"; fi
if expect 1 "$tool" --ref "$tmp/nope.txt" --hyp "$tmp/hyps.txt" &&
    has "$tmp/err" "conflux-rouge: error: cannot open the reference file: No such file or directory ($tmp/nope.txt)"; then
    ok "missing file"
else bad "missing file message"; cat "$tmp/err"; fi
: >"$tmp/empty.txt"
if expect 1 "$tool" --ref "$tmp/empty.txt" --hyp "$tmp/empty.txt" && has "$tmp/err" "conflux-rouge: error: no examples"; then
    ok "empty files"
else bad "empty files"; fi
if expect 1 "$tool" --ref "$tmp" --hyp "$tmp/hyps.txt" && has "$tmp/err" "conflux-rouge: error: cannot read the reference file"; then
    ok "a directory is a read error"
else bad "directory as input"; cat "$tmp/err"; fi
# empty lines score 0 with a warning (stderr), exit 0
printf 'a b\n\n' >"$tmp/r2.txt"
printf 'a b\nx\n' >"$tmp/h2.txt"
if expect 0 "$tool" --ref "$tmp/r2.txt" --hyp "$tmp/h2.txt" --format csv && has "$tmp/err" "warning: 1 of 2 examples" &&
    has "$tmp/out" "mean,2,50.000000,50.000000,50.000000"; then
    ok "empty line: warning, scores 0"
else bad "empty line"; cat "$tmp/out" "$tmp/err"; fi
# usage errors: exit 2
usage_ok=1
for args in "--ref $tmp/refs.txt" "--hyp $tmp/hyps.txt" "--ref - --hyp -" \
    "--ref $tmp/refs.txt --hyp $tmp/hyps.txt --mode rouge" \
    "--ref $tmp/refs.txt --hyp $tmp/hyps.txt --format xml" \
    "--ref $tmp/refs.txt --hyp $tmp/hyps.txt --bogus" "--ref $tmp/refs.txt --hyp" \
    "--ref $tmp/refs.txt --hyp $tmp/hyps.txt extra"; do
    # shellcheck disable=SC2086
    if ! expect 2 "$tool" $args </dev/null || ! has "$tmp/err" "conflux-rouge: error: "; then usage_ok=0; echo "    args: $args"; fi
done
[ $usage_ok = 1 ] && ok "usage errors exit 2"

# --baseline: a second system compared by paired bootstrap (Koehn 2004)
if expect 0 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --baseline "$tmp/hyps.txt" --mode paper; then
    # the same system twice: no difference in any resample
    if has "$tmp/out" "baseline $tmp/hyps.txt" && has "$tmp/out" "paired bootstrap, 1000 resamples of the 2 lines (seed 1)" &&
        grep -Eq '^R-2 +\+0\.00 +\[ \+0\.00,  \+0\.00\] +0\.0% +100\.0%$' "$tmp/out"; then
        ok "--baseline: a system against itself ties in every resample"
    else bad "--baseline against itself"; cat "$tmp/out"; fi
fi
if expect 0 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --baseline "$tmp/refs.txt" --mode paper --bootstrap 200 --seed 5; then
    # the references as the baseline score 100 everywhere: the hypotheses are behind in every
    # resample, by their own means (paper F: 85.12 / 56.63 / 54.02 -> -14.88 / -43.37 / -45.98)
    if has "$tmp/out" "200 resamples of the 2 lines (seed 5)" &&
        grep -Eq '^R-1 +-14\.88 +\[-25\.00,  -4\.76\] +0\.0% +0\.0%$' "$tmp/out" &&
        grep -Eq '^R-L +-45\.98 ' "$tmp/out"; then
        ok "--baseline: the references as the baseline are ahead in every resample"
    else bad "--baseline = references"; cat "$tmp/out"; fi
fi
if expect 1 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --baseline "$tmp/one.txt"; then
    if has "$tmp/err" "conflux-rouge: error: the files have different numbers of lines: 2 references, 1 baseline lines (--ref $tmp/refs.txt, --baseline $tmp/one.txt)"; then
        ok "--baseline with another line count names it"
    else bad "--baseline line count message"; cat "$tmp/err"; fi
fi
usage_ok=1
for args in "--format csv" "--bootstrap 0" "--bootstrap 1000001" "--bootstrap x" "--seed -1"; do
    # shellcheck disable=SC2086
    if ! expect 2 "$tool" --ref "$tmp/refs.txt" --hyp "$tmp/hyps.txt" --baseline "$tmp/hyps.txt" $args </dev/null ||
        ! has "$tmp/err" "conflux-rouge: error: "; then usage_ok=0; echo "    args: $args"; fi
done
if ! expect 2 "$tool" --ref "$tmp/refs.txt" --hyp - --baseline - </dev/null || ! has "$tmp/err" "only one of --ref, --hyp and --baseline"; then
    usage_ok=0; echo "    args: --hyp - --baseline -"
fi
[ $usage_ok = 1 ] && ok "--baseline usage errors exit 2 (csv, --bootstrap 0/too many/x, --seed -1, two stdins)"

# ---------------------------------------------------------------- part 2: Python reference
if [ ! -x "$py" ]; then
    skip_check "$py missing: no cross-check against tests/ref/rouge_ref.py"
else
    if "$tbin" --dump-fold >"$tmp/fold.c" && "$py" "$ref_py" fold-table >"$tmp/fold.py" &&
        cmp -s "$tmp/fold.c" "$tmp/fold.py"; then
        ok "case folding = Python str.lower() on U+0000..017F, U+0370..052F ($(wc -l <"$tmp/fold.c") code points), nothing else folded"
    else bad "case-folding table differs from Python"; diff "$tmp/fold.c" "$tmp/fold.py" | head -20; fi
    if "$tbin" --dump-space >"$tmp/sp.c" && "$py" "$ref_py" space-table >"$tmp/sp.py" && cmp -s "$tmp/sp.c" "$tmp/sp.py"; then
        ok "whitespace = Python str.isspace() ($(wc -l <"$tmp/sp.c") code points)"
    else bad "whitespace table differs from Python"; diff "$tmp/sp.c" "$tmp/sp.py" | head; fi

    compare() {  # compare NAME REFS HYPS [conflux-rouge options...]
        local name=$1 r=$2 h=$3; shift 3
        local mode=standard keep=()
        for a in "$@"; do
            case $a in paper) mode=paper ;; --keep-case) keep=(--keep-case) ;; esac
        done
        "$py" "$ref_py" score --mode "$mode" "${keep[@]}" --ref "$r" --hyp "$h" >"$tmp/py.csv" ||
            { bad "$name: rouge_ref.py failed"; return; }
        "$tool" --ref "$r" --hyp "$h" --mode "$mode" "${keep[@]}" --format csv --per-example >"$tmp/c.csv" 2>/dev/null ||
            { bad "$name: conflux-rouge failed"; return; }
        if cmp -s "$tmp/py.csv" "$tmp/c.csv"; then
            ok "$name: $(($(wc -l <"$tmp/c.csv") - 2)) pairs equal the reference to every digit"
        else
            bad "$name differs from rouge_ref.py"; diff "$tmp/py.csv" "$tmp/c.csv" | head -10
        fi
    }
    for seed in 1 2 3; do
        "$py" "$ref_py" gen --seed $seed --n 300 --ref "$tmp/rr$seed.txt" --hyp "$tmp/rh$seed.txt"
        compare "random seed $seed standard" "$tmp/rr$seed.txt" "$tmp/rh$seed.txt" standard
        compare "random seed $seed paper" "$tmp/rr$seed.txt" "$tmp/rh$seed.txt" paper
    done
    compare "random seed 1 paper --keep-case" "$tmp/rr1.txt" "$tmp/rh1.txt" paper --keep-case
    compare "random seed 2 standard --keep-case" "$tmp/rr2.txt" "$tmp/rh2.txt" standard --keep-case
    "$py" "$ref_py" gen --seed 7 --n 20 --max-words 300 --no-dots --ref "$tmp/lr.txt" --hyp "$tmp/lh.txt"
    compare "long one-sentence pairs paper" "$tmp/lr.txt" "$tmp/lh.txt" paper
    compare "long one-sentence pairs standard" "$tmp/lr.txt" "$tmp/lh.txt" standard
    compare "SOURCES.md vectors paper" "$tmp/refs.txt" "$tmp/hyps.txt" paper

    # the paired bootstrap against rouge_ref.py's, to every printed digit: two systems that
    # share half their lines (each the other's random text on the other half), so that the
    # difference is small and the share of resamples ahead is neither 0 nor 1
    "$py" "$ref_py" gen --seed 8 --n 300 --ref "$tmp/br.txt" --hyp "$tmp/bh.txt"
    "$py" "$ref_py" gen --seed 9 --n 300 --ref "$tmp/bx.txt" --hyp "$tmp/by.txt"
    awk 'NR==FNR{o[FNR]=$0;next} {print (FNR%2==0 ? o[FNR] : $0)}' "$tmp/by.txt" "$tmp/bh.txt" >"$tmp/ba.txt"
    awk 'NR==FNR{o[FNR]=$0;next} {print (FNR%2==1 ? o[FNR] : $0)}' "$tmp/by.txt" "$tmp/bh.txt" >"$tmp/bb.txt"
    for mode in paper standard; do
        "$py" "$ref_py" bootstrap --mode $mode --ref "$tmp/br.txt" --hyp "$tmp/ba.txt" --baseline "$tmp/bb.txt" \
            --resamples 400 --seed 11 >"$tmp/bpy.txt" || { bad "rouge_ref.py bootstrap failed"; continue; }
        "$tool" --mode $mode --ref "$tmp/br.txt" --hyp "$tmp/ba.txt" --baseline "$tmp/bb.txt" --bootstrap 400 \
            --seed 11 --format json 2>/dev/null | "$py" -c '
import json, sys
b = json.load(sys.stdin)["bootstrap"]
for k in ("rouge-1", "rouge-2", "rouge-l"):
    print(k, " ".join("%.6f" % b[k][x] for x in ("diff", "lo", "hi", "ahead", "tied")))' >"$tmp/bc.txt"
        shares=$(awk '$5 > 0.05 && $5 < 0.95' "$tmp/bpy.txt" | wc -l)
        if cmp -s "$tmp/bpy.txt" "$tmp/bc.txt" && [ "$shares" -ge 2 ]; then
            ok "paired bootstrap $mode = rouge_ref.py's: $(tr '\n' ' ' <"$tmp/bc.txt")"
        else bad "paired bootstrap $mode differs from rouge_ref.py (or is one-sided: $shares)"; diff "$tmp/bpy.txt" "$tmp/bc.txt"; fi
    done
fi

echo
if [ $fails -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all rouge checks passed"
