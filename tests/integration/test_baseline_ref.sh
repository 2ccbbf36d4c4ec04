#!/bin/bash
# test_baseline_ref.sh BUILD_DIR DATA_DIR: the first-sentence baseline figures of
# docs/headline.md against tests/ref/first_sentence_ref.py, a reference written from the
# documented rules (io/news/news.h, io/news/lead.h) and scored with tests/ref/rouge_ref.py,
# and `conflux-headline evaluate` (which produced the figures) against the reference.
#   bash tests/integration/test_baseline_ref.sh build/release build/data
# 1. The "first sentence" rows of the table in docs/headline.md, parsed from the doc (so the
#    doc cannot drift): for each set the reference must give the row's article count and
#    both modes' R-1/R-2/R-L to the 2 decimals shown, and the tool the same figures and,
#    article by article, the same title and first sentence (its --hyps-out). The sets: RIA
#    (../shared/data/news/ria_20.json), Lenta (lenta-ru-news.csv.gz), ODS (ods/*.csv.gz),
#    "dateline skipped" rows with --dateline skip, the others with keep; Debian validation:
#    DATA_DIR/headline-style pairs rebuilt into a temporary directory by
#    io/corpus/build-headline-pairs.sh from DATA_DIR's unpacked packages (as the doc's were).
# 2. The 400 real articles of ../shared/data/news/train/rt_ng_valid.json.gz (plain-text
#    bodies, first sentence kept): reference and tool agree, and both give the figures of
#    ../shared/data/news/SOURCES.md.
#    2b. --dateline auto (a leading news agency dateline detected article by article): the
#    tool equals the reference on the RIA, Lenta and ODS samples and on rt_ng_valid; RIA's
#    20 datelines are all detected (the published skipped figures), RT/NG has none.
# 3. Generated articles (first_sentence_ref.py gen: 1500 RIA with HTML of every kind, 1500
#    Lenta CSV records; invented words; 40% open with dateline-like text, real forms and
#    near misses): reference and tool give the same first sentence of every article, and
#    dozens of datelines are detected. The real samples do not exercise every rule (one-letter initials, tag
#    and entity corner cases); this does.
# The real samples are read from ../shared/data/news (NEWS_DIR overrides); without them, or
# without DATA_DIR's unpacked packages (make shards), those parts are SKIPPED; nothing of
# the news text is written outside the temporary directory. Without /usr/bin/python3 the
# whole test is SKIPPED. About 10 s.
set -uo pipefail

build=${1:?usage: tests/integration/test_baseline_ref.sh BUILD_DIR DATA_DIR}
data=${2:?usage: tests/integration/test_baseline_ref.sh BUILD_DIR DATA_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)  # tests/
root=$(cd "$here/.." && pwd)
news=${NEWS_DIR:-$root/../shared/data/news}
doc="$root/docs/headline.md"
ref_py="$here/ref/first_sentence_ref.py"
tool="$build/bin/conflux-headline"
py=/usr/bin/python3
source "$here/lib.sh"   # ok, bad, skip, skip_check

[ -x "$py" ] || skip "$py missing: the first-sentence figures cannot be checked against tests/ref/first_sentence_ref.py"
[ -x "$tool" ] || { echo "FAIL: $tool not built (make tools)"; exit 1; }
[ -f "$doc" ] || { echo "FAIL: $doc missing"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if "$py" "$ref_py" selftest >"$tmp/self" 2>&1; then ok "first_sentence_ref.py selftest"
else bad "first_sentence_ref.py selftest"; sed 's/^/    | /' "$tmp/self"; fi

# figures LINE: "n=N paper=A/B/C standard=D/E/F" from a last line of either program
figures() { sed -E 's/.*(n=[0-9]+) lead_paper=([^ ]+) lead_standard=([^ ]+).*/\1 paper=\2 standard=\3/' <<<"$1"; }

# compare NAME DATELINE FILE...: runs the reference and the tool on FILEs and checks that
# they agree; sets ref_figs to the reference's figures ("" when it failed)
compare() {
    local name=$1 dl=$2; shift 2
    local r c
    ref_figs=
    if ! r=$("$py" "$ref_py" --dateline "$dl" --hyps-out "$tmp/ref.tsv" "$@" 2>"$tmp/ref.err" | tail -n 1) ||
        [ -z "$r" ]; then
        bad "$name: first_sentence_ref.py failed"; sed 's/^/    | /' "$tmp/ref.err"; return 1
    fi
    ref_figs=$(figures "$r")
    if ! c=$("$tool" evaluate --dateline "$dl" --hyps-out "$tmp/tool.tsv" "$@" 2>"$tmp/tool.err" | tail -n 1) ||
        [ -z "$c" ]; then
        bad "$name: conflux-headline evaluate failed"; sed 's/^/    | /' "$tmp/tool.err"; return 1
    fi
    if [ "$(figures "$r")" != "$(figures "$c")" ]; then
        bad "$name: conflux-headline evaluate and the reference differ:"
        echo "    tool:      $c"; echo "    reference: $r"
    elif ! cmp -s "$tmp/ref.tsv" "$tmp/tool.tsv"; then
        bad "$name: same figures, but the first sentences differ (reference < > tool):"
        diff "$tmp/ref.tsv" "$tmp/tool.tsv" | head -n 6 | sed 's/^/    | /'
    else
        ok "$name: conflux-headline evaluate = reference ($ref_figs; the titles and first sentences identical)"
    fi
}

# ---------------------------------------------------------------- 1. the doc's table
# rows "| SET (N) | first sentence[, dateline skipped] | P1 / P2 / PL | S1 / S2 / SL |"
grep -E '^\| [^|]+ \| first sentence[^|]* \|' "$doc" >"$tmp/rows"
[ "$(wc -l <"$tmp/rows")" -ge 4 ] ||
    bad "fewer than 4 first-sentence rows found in the table of $doc (its layout changed?)"
while IFS='|' read -r _ set system paper standard _; do
    set=$(xargs <<<"$set"); system=$(xargs <<<"$system")
    want="n=$(sed -E 's/.*\(([0-9]+)\)$/\1/' <<<"$set") paper=$(tr -d ' ' <<<"$paper") standard=$(tr -d ' ' <<<"$standard")"
    dl=keep
    [[ $system == *"dateline skipped"* ]] && dl=skip
    files=()
    case ${set% (*} in
    RIA) files=("$news/ria_20.json") ;;
    Lenta) files=("$news/lenta-ru-news.csv.gz") ;;
    ODS) files=("$news"/ods/*.csv.gz) ;;
    "Debian validation")
        if [ ! -d "$data/extract" ] || [ ! -s "$data/debtrans/Translation-ru" ] || [ ! -f "$data/tokenizer/vocab.json" ]; then
            skip_check "$set row of docs/headline.md: no unpacked packages or tokenizer in $data (make shards)"
            continue
        fi
        mkdir -p "$tmp/data"
        for d in extract debtrans tokenizer; do ln -sfn "$(cd "$data/$d" && pwd)" "$tmp/data/$d"; done
        if ! bash "$root/io/corpus/build-headline-pairs.sh" "$tmp/data" "$build/bin" >"$tmp/pairs.log" 2>&1; then
            bad "$set: io/corpus/build-headline-pairs.sh failed"; tail -n 5 "$tmp/pairs.log" | sed 's/^/    | /'
            continue
        fi
        files=("$tmp/data/headline/valid.tsv") ;;
    *) bad "docs/headline.md has a first-sentence row for '$set', which this test does not know: add its files here"
       continue ;;
    esac
    if [ ! -f "${files[0]}" ]; then
        skip_check "$set row of docs/headline.md: ${files[0]} absent (NEWS_DIR overrides $news)"
        continue
    fi
    compare "$set" "$dl" "${files[@]}"
    got=$ref_figs
    if [ "$got" = "$want" ]; then
        ok "$set ($system, --dateline $dl): the reference gives the figures of docs/headline.md: $want"
    else
        bad "$set ($system): docs/headline.md says '$want', the reference computes '$got'"
    fi
done <"$tmp/rows"

# ---------------------------------------------------------------- 2. rt_ng_valid
valid="$news/train/rt_ng_valid.json.gz"
if [ -f "$valid" ]; then
    compare "rt_ng_valid (first sentence kept)" keep "$valid"
    got=$ref_figs
    # SOURCES.md: "... first sentence kept): paper mode 12.07/3.70/9.63, standard 11.27/3.26/10.13."
    src=$(grep -E 'First-sentence baseline on train/rt_ng_valid' "$news/SOURCES.md" 2>/dev/null |
        sed -nE 's/.*paper mode ([0-9.\/]+), standard ([0-9.\/]+)\..*/paper=\1 standard=\2/p')
    if [ -z "$src" ]; then
        echo "note: no rt_ng_valid figures in $news/SOURCES.md; only the agreement is checked"
    elif [ "${got#n=400 }" = "$src" ]; then
        ok "rt_ng_valid: the reference gives the figures of SOURCES.md: $got"
    else
        bad "rt_ng_valid: SOURCES.md says 'n=400 $src', the reference computes '$got'"
    fi
else
    skip_check "$valid absent: no check on the 400 plain-text articles (NEWS_DIR overrides $news)"
fi

# ------------------------------------------- 2b. datelines detected article by article
# --dateline auto (the default) skips a leading news agency dateline wherever it is: on RIA
# it gives the published "dateline skipped" figures, on the plain-text RT/NG set (no
# datelines) the first sentence kept; reference and tool agree article by article
if [ -f "$news/ria_20.json" ]; then
    compare "RIA, Lenta and ODS samples, --dateline auto" auto "$news/ria_20.json" \
        "$news/lenta-ru-news.csv.gz" "$news"/ods/*.csv.gz
    compare "RIA sample, --dateline auto" auto "$news/ria_20.json"
    [ "$ref_figs" = "n=20 paper=33.85/16.74/21.87 standard=32.40/15.44/26.19" ] &&
        ok "RIA: datelines detected give the dateline-skipped figures ($ref_figs)" ||
        bad "RIA with --dateline auto: '$ref_figs', not the dateline-skipped figures"
    "$tool" evaluate "$news/ria_20.json" | grep -q '^first sentence (20 datelines skipped)' &&
        ok "RIA: all 20 datelines detected" || bad "RIA: the 20 datelines were not all detected"
fi
if [ -f "$valid" ]; then
    compare "rt_ng_valid, --dateline auto" auto "$valid"
    [ "${ref_figs#n=400 }" = "$src" ] && ok "rt_ng_valid: no dateline detected, the first sentence kept ($ref_figs)" ||
        bad "rt_ng_valid with --dateline auto: '$ref_figs', not the kept figures '$src'"
fi

# ---------------------------------------------------------------- 3. generated articles
# bodies open with dateline-like text 40% of the time (real forms and near misses)
if "$py" "$ref_py" gen --seed 1 --n 1500 --ria "$tmp/gen.json" --csv "$tmp/gen.csv"; then
    for f in gen.json gen.csv; do
        compare "generated $f" auto "$tmp/$f"
        n_dl=$("$tool" evaluate "$tmp/$f" 2>/dev/null | sed -n 's/^first sentence (\([0-9]*\) datelines skipped).*/\1/p' | head -1)
        [ "${n_dl:-0}" -ge 20 ] && ok "generated $f: $n_dl datelines detected among the near misses" ||
            bad "generated $f: only '${n_dl:-0}' datelines detected (the generator makes dozens)"
    done
else
    bad "first_sentence_ref.py gen failed"
fi

echo
if [ $fails -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all first-sentence baseline checks passed"
