#!/usr/bin/env bash
# The collaborative-vs-HPC comparison on one machine, in the shape of DeDLOC's: the same
# model, data, global batch and target validation loss, on the same 2 cores:
#   (a) hpc        the HPC baseline: 2 MPI trainer ranks;
#   (b) collab     1 trainer rank + bridge + 3 volunteers behind emulated links of
#                  different profiles: 1 Gbit/s 1 ms; 200 Mbit/s 20 ms; 50 Mbit/s down /
#                  10 Mbit/s up, 80 ms, 0.5% loss (tests/wan.sh);
#   (c) churn      as (b), but the volunteers come and go: the fast one leaves after 40
#                  steps, the medium one joins 30 s late, the slow one is killed and rejoins.
# Then conflux-report compares them (markdown table and PNG plots in OUT_DIR).
# usage: tests/bench/experiment.sh BUILD_DIR DATA_DIR [OUT_DIR]       (root: network namespaces)
set -u
BUILD=${1:?usage: experiment.sh BUILD_DIR DATA_DIR [OUT_DIR]}
DATA=${2:?usage: experiment.sh BUILD_DIR DATA_DIR [OUT_DIR]}
OUT=${3:-build/experiment}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # tests/
source "$HERE/lib.sh"
source "$HERE/wan.sh"
wan_available || { echo "experiment: needs network namespaces: $WAN_SKIP_REASON"; exit 1; }
BIN=$(cd "$BUILD/bin" && pwd)
DATA=$(cd "$DATA" && pwd)
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cleanup() {
    pkill -9 -f -- "--token $TOK" 2>/dev/null
    wan_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export WAN_QUIET=1
STEPS=${EXPERIMENT_STEPS:-240}
TARGET=${EXPERIMENT_TARGET:-7.6}
MODEL=(--set data.train="$DATA/shards/train.h5" --set data.valid="$DATA/shards/valid.h5"
       --set model.hidden_size=128 --set model.num_heads=4 --set model.embedding_size=64
       --set model.intermediate_size=512 --set model.num_layers=2 --set data.seq_len=64
       --set train.threads=1 --set train.global_batch=64 --set train.micro_batch=8
       --set train.steps="$STEPS" --set train.eval_every=20 --set train.eval_samples=256
       --set optim.warmup_steps=20 --set train.checkpoint_every=0 --set train.log_every=20 -q)
TOKENS=$OUT/tokens.txt
TOK=$("$BIN/conflux-bridge" token issue --tokens "$TOKENS" experiment)
[ -n "$TOK" ] || { echo "experiment: cannot issue a token"; exit 1; }
# link profiles: ID RTT_MS JITTER LOSS UP DOWN
wan_link_up 211 1 0 0 1000 1000 || exit 1
wan_link_up 212 20 0 0 200 200 || exit 1
wan_link_up 213 80 0 0.5 10 50 || exit 1
echo "experiment: model ALBERT H=128 E=64 L=2 T=64, global batch 64, $STEPS steps, target valid loss $TARGET"
echo "experiment: links fast=1 Gbit/s 1 ms, medium=200 Mbit/s 20 ms, slow=10 up/50 down Mbit/s 80 ms 0.5% loss"

volunteer() {  # ID NAME PORT [ARGS...]
    local id=$1 name=$2 port=$3; shift 3
    wan_exec "$id" "$BIN/conflux-volunteer" --join "10.77.$id.1:$port" --token "$TOK" --name "$name" \
        --set train.threads=1 --timeout 20 --retries 40 -q "$@" >>"$OUT/$name.log" 2>&1
}

echo "== (a) hpc: 2 MPI trainer ranks"
mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/conflux-train" "${MODEL[@]}" --set run.dir="$OUT/hpc" \
    || { echo "experiment: the HPC run failed"; exit 1; }

collab() {  # NAME CHURN
    local name=$1 churn=$2 port=$(free_ports)
    mpirun --allow-run-as-root --oversubscribe -np 1 "$BIN/conflux-train" "${MODEL[@]}" --set run.dir="$OUT/$name" \
        : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 0.0.0.0:$port --deadline 20 \
        --wait-volunteers $([ "$churn" = 1 ] && echo 2 || echo 3) --wait-timeout 120 -q \
        >"$OUT/$name.bridge.log" 2>&1 &
    local mp=$!
    local pids=()
    if [ "$churn" = 0 ]; then
        volunteer 211 fast $port & pids+=($!)
        volunteer 212 medium $port & pids+=($!)
        volunteer 213 slow $port & pids+=($!)
    else
        volunteer 211 fast $port --steps 40 & pids+=($!)
        volunteer 213 slow $port & local slow=$!
        sleep 30
        volunteer 212 medium $port & pids+=($!)
        sleep 20
        pkill -9 -f -- "--name slow"
        wait $slow 2>/dev/null
        sleep 5
        volunteer 213 slow $port & pids+=($!)
    fi
    wait $mp || { echo "experiment: the $name run failed"; tail -5 "$OUT/$name.bridge.log"; exit 1; }
    sleep 3
    pkill -f -- "--token $TOK" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
}
echo "== (b) collab: 1 trainer rank + bridge + 3 volunteers (fast, medium, slow links)"
collab collab 0
echo "== (c) churn: as (b), volunteers leaving, joining late, killed and rejoining"
collab churn 1

echo "== comparison (conflux-report)"
"$BIN/conflux-report" --target-loss "$TARGET" --baseline "$OUT/hpc" --format markdown \
    --plots "$OUT/plots" "$OUT/hpc" "$OUT/collab" "$OUT/churn" | tee "$OUT/report.md"
echo "experiment: table in $OUT/report.md, plots in $OUT/plots/"
