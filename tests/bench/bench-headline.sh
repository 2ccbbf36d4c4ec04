#!/usr/bin/env bash
# bench-headline.sh: the headline benchmark (make bench-headline).
#  1. RIA reader throughput: tests/bench_news generates a RIA-format file (JSON lines with
#     HTML bodies, entities, escapes; SIZE_MB, default 200) and reads it with io/news/news.h, one
#     thread, page cache warm; the median of 3 runs (MB/s of uncompressed input).
#  2. Generation speed of the benchmark model: conflux-headline's default model (ALBERT
#     encoder L=4 shared layers, H=256, E=128, 4 heads, FFN 1024, V=8192; decoder 2 layers,
#     4 heads, FFN 1024; articles cut to 128 tokens), weights from one training step (the
#     speed does not depend on them), beam 4, every headline exactly 20 tokens
#     (--min-len 19 --max-len 20: EOS counts and may only come 20th, so the work per
#     headline is fixed), trigram blocking on,
#     over N_ARTICLES (default 100) Debian pair bodies; headlines per second, 1 and 2
#     pool threads (the last line reports the better one); then the same with minimum Bayes
#     risk decoding over 16 samples (--mbr 16), and its ratio to beam 4.
#  3. Training speed of the same model: conflux-headline train, 2 threads, the median of the
#     tokens/s it logs from step 6 to 30.
# Prints the instruction set and OPENBLAS_CORETYPE in effect; the last line is
#   headline-bench: reader_mb_s=X beam4_headlines_s=Y mbr16_headlines_s=M mbr16_vs_beam4=R
#   train_tok_s=Z isa=... openblas_coretype=...
# usage: tests/bench/bench-headline.sh BUILD_DIR DATA_DIR
set -euo pipefail
BUILD=${1:?usage: bench-headline.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: bench-headline.sh BUILD_DIR DATA_DIR}
B=$BUILD/bin/conflux-headline
SIZE_MB=${SIZE_MB:-200}
N_ARTICLES=${N_ARTICLES:-100}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/isa.sh"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); isa=$(cpu_isa) OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"

# --- 1. reader
"$BUILD/tests/bench/bench_news" "$SIZE_MB" 0 | tee "$W/news.txt" | grep -v '^news-bench'
reader=$(sed -n 's/^news-bench: ria_mb_s=\([0-9.]*\).*/\1/p' "$W/news.txt")

# --- 2. beam-4 generation on the benchmark model
if [ ! -f "$DATA/headline/train.h5" ]; then
    bash io/corpus/build-headline-pairs.sh "$DATA" "$BUILD/bin" >/dev/null
fi
"$B" train --train "$DATA/headline/train.h5" --valid '' --set data.tokenizer="$DATA/tokenizer" \
    --steps 1 --set train.global_batch=2 --set train.micro_batch=2 --run-dir "$W/model" -q
head -n "$N_ARTICLES" "$DATA/headline/valid.tsv" >"$W/articles.tsv"
best=0
for threads in 1 2; do
    "$B" generate --checkpoint "$W/model/latest.h5" --format tsv --beam 4 --min-len 19 --max-len 20 \
        --block-trigrams --threads "$threads" --stats "$W/articles.tsv" 2>"$W/gen.txt" >/dev/null
    rate=$(sed -n 's/.*: \([0-9.]*\) headlines\/s.*/\1/p' "$W/gen.txt")
    echo "beam 4, $threads thread(s): $(cat "$W/gen.txt")"
    best=$(awk -v a="$best" -v b="$rate" 'BEGIN { print (b > a ? b : a) }')
done
# minimum Bayes risk decoding: beam 4 plus 16 samples, each 20 tokens too, and 17 x 16 ROUGE
# pairs per headline; with the better thread count, as a ratio to beam 4 alone in the same run
bt=$(awk -v a="$best" 'BEGIN { print a }')
for threads in 1 2; do
    "$B" generate --checkpoint "$W/model/latest.h5" --format tsv --beam 4 --min-len 19 --max-len 20 \
        --block-trigrams --threads "$threads" --mbr 16 --stats "$W/articles.tsv" 2>"$W/mbr.txt" >/dev/null
    r=$(sed -n 's/.*: \([0-9.]*\) headlines\/s.*/\1/p' "$W/mbr.txt")
    echo "beam 4 + MBR over 16 samples, $threads thread(s): $(head -1 "$W/mbr.txt")"
    mbr=$(awk -v a="${mbr:-0}" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
done
mbr_ratio=$(awk -v a="$mbr" -v b="$bt" 'BEGIN { printf "%.2f", a / b }')
echo "MBR 16 / beam 4 headlines per second: $mbr_ratio"
# --- 3. training throughput of the same model (conflux-headline train, 2 threads): the
# median of the tokens/s logged every 2 steps from step 6 to 30
"$B" train --train "$DATA/headline/train.h5" --valid '' --set data.tokenizer="$DATA/tokenizer" \
    --steps 30 --set train.log_every=2 --set train.threads=2 --set train.checkpoint_every=1000 \
    --run-dir "$W/speed" 2>&1 | awk '/^step/ {split($2, a, "/"); if (a[1] + 0 >= 6) print $(NF - 4)}' \
    | sort -g >"$W/train_tok.txt"
train_tok=$(awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}' "$W/train_tok.txt")
echo "training, 2 threads: median $train_tok tokens/s (steps 6-30)"
echo "headline-bench: reader_mb_s=$reader beam4_headlines_s=$best mbr16_headlines_s=$mbr mbr16_vs_beam4=$mbr_ratio train_tok_s=$train_tok isa=$(cpu_isa) openblas_coretype=${OPENBLAS_CORETYPE:-unset}"
