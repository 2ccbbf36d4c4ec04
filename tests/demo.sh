#!/usr/bin/env bash
# make demo: pretrain a small ALBERT on the Russian corpus for a few minutes with the
# built-in default configuration, then show fill-mask predictions from its checkpoint.
# usage: tests/demo.sh BUILD_DIR DATA_DIR
set -euo pipefail
BUILD=${1:?usage: demo.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: demo.sh BUILD_DIR DATA_DIR}
RUN=${DEMO_RUN_DIR:-build/runs/demo}
STEPS=${DEMO_STEPS:-600}
rm -rf "$RUN"
echo "== corpus: $(wc -l < "$DATA/corpus/train.txt") train / $(wc -l < "$DATA/corpus/valid.txt") validation documents"
echo "== pretraining ALBERT (built-in defaults: L=4 H=256 E=128 V=8192 T=64, batch 32, AdamW) for $STEPS steps into $RUN"
"$BUILD/bin/conflux-train" \
    --set data.train="$DATA/shards/train.h5" --set data.valid="$DATA/shards/valid.h5" \
    --set data.tokenizer="$DATA/tokenizer" --set run.dir="$RUN" \
    --set train.steps="$STEPS" --set train.eval_every=50 --set train.checkpoint_every=200
echo
echo "== validation loss over the run (step, loss):"
awk -F, 'NR > 1 && $13 != "" {printf "   step %5d  valid loss %.4f\n", $2, $13}' "$RUN/metrics.csv"
echo
echo "== fill-mask from $RUN/latest.h5"
for text in "Нажмите кнопку [MASK], чтобы сохранить документ." \
            "Эта программа позволяет [MASK] файлы." \
            "Москва — столица [MASK]."; do
    echo "\$ conflux-fill-mask \"$text\""
    "$BUILD/bin/conflux-fill-mask" --checkpoint "$RUN/latest.h5" --tokenizer "$DATA/tokenizer" --top-k 5 "$text"
done
