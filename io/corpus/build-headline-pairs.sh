#!/usr/bin/env bash
# build-headline-pairs.sh: Russian (title, body) training pairs for headline generation,
# from what Debian packages provide on these machines (there is no news training set here).
#
#   bash io/corpus/build-headline-pairs.sh DATA_DIR BIN_DIR
#
# Sources (all fetched and unpacked by io/corpus/build-corpus.sh, which runs first when
# DATA_DIR/extract or DATA_DIR/debtrans/Translation-ru is missing):
#   Translation-ru            short package description = title, long description = body
#   manpages-ru(-dev) + misc  the NAME line (after " - ") = title, DESCRIPTION = body
#   libreoffice-help-ru       <title> = title, Cyrillic paragraphs = body
#   gimp-help-ru              the same
# `conflux-headline pairs` writes DATA_DIR/headline/{train,valid}.tsv (5% validation, split
# by a hash of the body; repeated bodies dropped) and stats.txt; `conflux-headline prepare`
# tokenizes them with DATA_DIR/tokenizer into DATA_DIR/headline/{train,valid}.h5,
# lowercased (LOWERCASE=0 keeps the case) like the RIA dump. The output depends only on
# the packages: running it again gives the same TSV files byte for byte and pair shards
# with the same contents (h5diff; HDF5 stores creation times).
# Exit status: 0 success, 1 failure, 2 usage error.
set -euo pipefail

PROG=build-headline-pairs
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

if [ $# -ne 2 ] || [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    echo "usage: bash io/corpus/build-headline-pairs.sh DATA_DIR BIN_DIR   (e.g. build/data build/release/bin)" >&2
    [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ] && exit 0
    exit 2
fi
DATA=$1
BIN=$2
TOOL=$BIN/conflux-headline
[ -x "$TOOL" ] || die "conflux-headline is not an executable file ($TOOL; run make tools)"
X=$DATA/extract
TR=$DATA/debtrans/Translation-ru
if [ ! -d "$X" ] || [ ! -s "$TR" ]; then
    note "no unpacked packages in $X: running io/corpus/build-corpus.sh first"
    bash "$(dirname "$0")/build-corpus.sh" "$DATA" "$BIN/conflux-corpus" ||
        die "io/corpus/build-corpus.sh failed"
fi
[ -f "$DATA/tokenizer/vocab.json" ] ||
    die "no tokenizer in $DATA/tokenizer (run make tokenizer)"

sources=("debtrans:$TR")
for pkg in manpages-ru manpages-ru-dev passwd login man-db psmisc debconf-doc aptitude-common mc-data; do
    d=$X/$pkg/usr/share/man/ru
    [ -d "$d" ] && sources+=("man:$d")
done
for d in "$X/libreoffice-help-ru/usr/share/libreoffice/help/ru" "$X/gimp-help-ru/usr/share/gimp/2.0/help/ru"; do
    [ -d "$d" ] || die "missing $d (has io/corpus/build-corpus.sh changed?)"
    sources+=("html:$d")
done

OUT=$DATA/headline
mkdir -p "$OUT"
"$TOOL" pairs --out "$OUT" "${sources[@]}" || die "conflux-headline pairs failed"
lc=(--lowercase)
[ "${LOWERCASE:-1}" = 0 ] && lc=()
for split in train valid; do
    "$TOOL" prepare --quiet --tokenizer "$DATA/tokenizer" "${lc[@]}" --max-src 512 --max-tgt 64 \
        --source debian-pairs --out "$OUT/$split.h5" "$OUT/$split.tsv" ||
        die "conflux-headline prepare failed on $OUT/$split.tsv"
done
note "$(wc -l <"$OUT/train.tsv") training and $(wc -l <"$OUT/valid.tsv") validation pairs in $OUT/{train,valid}.{tsv,h5}"
