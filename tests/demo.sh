#!/usr/bin/env bash
# make demo: a collaborative run on this machine. A "cluster" of 2 MPI trainer ranks plus
# the bridge rank pretrains ALBERT on the Russian corpus; two volunteers join through the
# bridge, one over loopback and one from a network namespace behind an emulated internet
# link (20 ms RTT, 0.1% loss, 50 Mbit/s up, 200 Mbit/s down; tests/wan.sh). At the end:
# who contributed what (conflux-report), the validation loss, and fill-mask predictions.
# Without root (no namespaces) the second volunteer also uses loopback, with a notice.
# usage: tests/demo.sh BUILD_DIR DATA_DIR
set -euo pipefail
BUILD=${1:?usage: demo.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: demo.sh BUILD_DIR DATA_DIR}
RUN=${DEMO_RUN_DIR:-build/runs/demo}
STEPS=${DEMO_STEPS:-150}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=$(cd "$BUILD/bin" && pwd)
BUILD=$(cd "$BUILD" && pwd)
DATA=$(cd "$DATA" && pwd)
source "$HERE/wan.sh"
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi OMPI_MCA_mpi_yield_when_idle=1
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
rm -rf "$RUN"
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
PORT=${DEMO_PORT:-17070}
SPORT=$((PORT + 1))
cleanup() {
    jobs -p | xargs -r kill 2>/dev/null || true
    wan_cleanup
}
trap cleanup EXIT
echo "== corpus: $(wc -l < "$DATA/corpus/train.txt") train / $(wc -l < "$DATA/corpus/valid.txt") validation documents"
TOKENS=$RUN/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" lan --out "$RUN/lan.token"
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" wan --out "$RUN/wan.token"
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # volunteers pin the bridge's certificate
echo "== join tokens issued: $("$BIN/conflux-bridge" token list --tokens "$TOKENS" | awk '{print $1}' | tr '\n' ' ')"
WAN_ID=201
WAN_HOST=127.0.0.1
if wan_available 2>/dev/null && WAN_QUIET=1 wan_link_up $WAN_ID 20 0 0.1 50 200; then
    WAN_HOST=10.77.$WAN_ID.1
    echo "== emulated internet link for the second volunteer: 20 ms RTT, 0.1% loss, 50 Mbit/s up, 200 Mbit/s down"
else
    echo "== NOTE: no network namespaces here (${WAN_SKIP_REASON:-needs root}); both volunteers use loopback"
    WAN_ID=
fi
export WAN_QUIET=1
echo "== pretraining ALBERT (L=4 H=256 E=128 V=8192 T=64; global batch 64) for $STEPS steps into $RUN:"
echo "   2 trainer ranks + bridge (status page: http://127.0.0.1:$SPORT/) + 2 volunteers"
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" \
    --set data.train="$DATA/shards/train.h5" --set data.valid="$DATA/shards/valid.h5" \
    --set data.tokenizer="$DATA/tokenizer" --set run.dir="$RUN" --set train.threads=1 \
    --set train.global_batch=64 --set train.micro_batch=8 --set optim.warmup_steps=20 \
    --set train.steps="$STEPS" --set train.eval_every=25 --set train.checkpoint_every=50 \
    --set train.log_every=10 \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 0.0.0.0:$PORT \
    --status 127.0.0.1:$SPORT --wait-volunteers 2 --wait-timeout 120 --deadline 20 \
    >"$RUN/bridge.log" 2>&1 &
MP=$!
"$BIN/conflux-volunteer" --join "127.0.0.1:$PORT#$FP" --token-file "$RUN/lan.token" --name lan-volunteer \
    --set train.threads=1 --set data.train="$DATA/shards/train.h5" >"$RUN/lan-volunteer.log" 2>&1 &
if [ -n "$WAN_ID" ]; then
    wan_exec $WAN_ID "$BIN/conflux-volunteer" --join "$WAN_HOST:$PORT#$FP" --token-file "$RUN/wan.token" \
        --name wan-volunteer --set train.threads=1 --set data.train="$DATA/shards/train.h5" \
        >"$RUN/wan-volunteer.log" 2>&1 &
else
    "$BIN/conflux-volunteer" --join "127.0.0.1:$PORT#$FP" --token-file "$RUN/wan.token" --name wan-volunteer \
        --set train.threads=1 --set data.train="$DATA/shards/train.h5" >"$RUN/wan-volunteer.log" 2>&1 &
fi
# trainer rank 0's progress lines come through mpirun's output (in the bridge log file here)
tail -n +1 -f "$RUN/bridge.log" --pid=$MP 2>/dev/null | grep --line-buffered -E "^(step [0-9]+/|valid |conflux-train)" || true
wait $MP
sleep 2
echo
echo "== who contributed what (conflux-report $RUN)"
"$BIN/conflux-report" --format text "$RUN" | sed -n '/^Participants/,/^Comparison/p' | grep -v '^Comparison'
awk -F, 'NR > 1 { t += $4; v += $7 + $8; l += $10 } END {
    printf "   samples over the run: trainers %d, volunteers %d (late but counted included), lost %d\n", t, v, l }' "$RUN/bridge.csv"
echo
echo "== validation loss over the run (step, loss):"
awk -F, 'NR > 1 && $13 != "" {printf "   step %5d  valid loss %.4f\n", $2, $13}' "$RUN/metrics.csv"
echo
echo "== fill-mask from $RUN/latest.h5"
for text in "Нажмите кнопку [MASK], чтобы сохранить документ." \
            "Эта программа позволяет [MASK] файлы."; do
    echo "\$ conflux-fill-mask \"$text\""
    "$BIN/conflux-fill-mask" --checkpoint "$RUN/latest.h5" --tokenizer "$DATA/tokenizer" --top-k 5 "$text"
done
