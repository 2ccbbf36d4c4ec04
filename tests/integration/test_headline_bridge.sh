#!/bin/bash
# test_headline_bridge.sh: the encoder-decoder (conflux-headline train) trains with volunteers
# through conflux-bridge, as conflux-train does (test_bridge.sh).
#  1. Equivalence: 2 trainer ranks + bridge + 2 volunteers (--plan equal, fp32 uploads) ==
#     4 MPI ranks, on the same pair shard and global batch, 10 steps, separate decoder
#     learning rate, dropout on: the final /params agree within 1e-5; and the same in DiLoCo
#     mode (H=5, fp32 both ways) against 4 MPI ranks in 3 workers.
#     The same for the denoising objective (token shard) over 4 steps.
#  2. A volunteer whose pair shard is not the run's is refused (pair count check).
# usage: tests/integration/test_headline_bridge.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_headline_bridge.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_headline_bridge.sh BUILD_DIR DATA_DIR}
BIN=$BUILD/bin
TOK=$DATA/tokenizer
source tests/lib.sh
for f in "$TOK/vocab.json" "$DATA/debtrans/Translation-ru"; do
    [ -e "$f" ] || skip "$f is missing (run 'make shards' first)"
done
command -v mpirun >/dev/null || skip "no mpirun"
WORK=$(mktemp -d /tmp/conflux-hl-bridge-test.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" alice --out "$WORK/alice.token" || { echo "FAIL: token issue"; exit 1; }
VTOK=$WORK/alice.token
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # the join string pins it

# --- a small pair shard (package descriptions), as test_headline.sh makes it
"$BIN/conflux-headline" pairs --out "$WORK/pairs" "debtrans:$DATA/debtrans/Translation-ru" 2>/dev/null &&
    "$BIN/conflux-headline" prepare -q --tokenizer "$TOK" --lowercase --max-src 62 --max-tgt 24 \
        --limit 256 --out "$WORK/train.h5" "$WORK/pairs/train.tsv" &&
    "$BIN/conflux-headline" prepare -q --tokenizer "$TOK" --lowercase --max-src 62 --max-tgt 24 \
        --limit 100 --out "$WORK/other.h5" "$WORK/pairs/train.tsv" ||
    { echo "FAIL: cannot make the pair shards"; exit 1; }

# the tiny encoder-decoder of test_headline.sh, random init, dropout on (keyed by sample,
# so the split does not matter)
TINY=(--valid '' --set data.tokenizer="$TOK"
      --set model.hidden_size=64 --set model.num_heads=2 --set model.embedding_size=32
      --set model.intermediate_size=128 --set model.num_layers=2
      --set decoder.num_layers=1 --set decoder.num_heads=2 --set decoder.intermediate_size=128
      --set generate.max_len=20 --set optim.lr=1e-3 --set optim.warmup_steps=5
      --set optim_decoder.lr=3e-3 --set optim_decoder.warmup_steps=5 --set train.threads=1 -q)
# headline objective: each of the 4 participants takes one micro-batch of 4 of the global
# batch of 16; a checkpoint (and replica check) every 5 steps
RUN=("${TINY[@]}" --train "$WORK/train.h5" --set data.src_len=64 --set data.tgt_len=24
     --set decoder.max_position=32 --set train.global_batch=16 --set train.micro_batch=4
     --set train.checkpoint_every=5 --steps 10)

hybrid_run() {  # DIR PORT STEPS ARGS...: 2 trainers + bridge + 2 volunteers
    local dir=$1 port=$2 steps=$3; shift 3
    "${MPIRUN[@]}" -np 2 "$BIN/conflux-headline" train "$@" --run-dir "$dir" \
        : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$port --aggregate mean \
        --codecs fp32 --plan equal --wait-volunteers 2 --wait-timeout 60 >"$dir.bridge.log" 2>&1 &
    local mp=$!
    for v in 1 2; do
        "$BIN/conflux-volunteer" --join "127.0.0.1:$port#$FP" --token-file "$VTOK" --name "v$v" \
            --set train.threads=1 --retries 30 >"$dir.v$v.log" 2>&1 &
    done
    if wait $mp; then
        local rows ended
        rows=$(grep -c ',4,' "$dir/metrics.csv" || true)
        ended=$(grep -l "the run ended; contributed to $steps step" "$dir".v*.log | wc -l)
        [ "$rows" -ge "$steps" ] && [ "$ended" = 2 ] && [ -f "$dir/finished" ] \
            && ok "$(basename "$dir"): 2 trainers + bridge + 2 volunteers ran $steps steps with 4 participants each" \
            || bad "$(basename "$dir"): $rows rows with 4 participants, $ended volunteers to the end"
    else
        bad "$(basename "$dir") hybrid run failed"; tail -5 "$dir.bridge.log"; tail -3 "$dir".v*.log
    fi
    wait
}

# ---- 1. equivalence -------------------------------------------------------------------
"${MPIRUN[@]}" -np 4 "$BIN/conflux-headline" train "${RUN[@]}" --run-dir "$WORK/mpi4" >"$WORK/mpi4.log" 2>&1 \
    && [ -f "$WORK/mpi4/finished" ] && ok "4 MPI ranks: 10 steps" || { bad "4-rank reference run"; tail -5 "$WORK/mpi4.log"; }
D=$WORK/hybrid
hybrid_run "$D" $PORT 10 "${RUN[@]}"
# fp32: the same per-sample gradients summed in another order (the bridge's sum of two
# uploads, then the all-reduce): float32 summation-order differences of a few ulps per
# step at most; 1e-5 is the tolerance test_bridge.sh and test_mpi_train.sh use.
compare "$WORK/mpi4/checkpoint-000010.h5" "$D/checkpoint-000010.h5" 1e-5 \
    && ok "fp32 uploads: headline hybrid == 4 MPI ranks (step 10)" || bad "headline hybrid differs from 4 MPI ranks"
compare "$WORK/mpi4/checkpoint-000005.h5" "$D/checkpoint-000005.h5" 1e-5 >/dev/null \
    && ok "... and at the step-5 checkpoint" || bad "headline hybrid differs from 4 MPI ranks at step 5"
h5dump -a /model "$D/checkpoint-000010.h5" 2>/dev/null | grep -q '"encdec"' && ok "the hybrid checkpoint is an encdec one" \
    || bad "hybrid checkpoint has no model=encdec"

# ---- 1b. DiLoCo: the encoder-decoder's recipe under the outer rounds (fp32 both ways):
# 2 trainers + bridge + 2 volunteers == 4 MPI ranks in 3 workers (2 + 1 + 1)
DLR=("${TINY[@]}" --train "$WORK/train.h5" --set data.src_len=64 --set data.tgt_len=24
     --set decoder.max_position=32 --set train.global_batch=8 --set train.micro_batch=4 --steps 10
     --set averaging.mode=diloco --set averaging.inner_steps=5 --set averaging.down_codec=fp32)
"${MPIRUN[@]}" -np 4 "$BIN/conflux-headline" train "${DLR[@]}" --set averaging.workers=3 --run-dir "$WORK/dl-mpi" \
    >"$WORK/dl-mpi.log" 2>&1 || { bad "DiLoCo 4-rank reference run"; tail -5 "$WORK/dl-mpi.log"; }
DPORT=$((PORT + 3))
"${MPIRUN[@]}" -np 2 "$BIN/conflux-headline" train "${DLR[@]}" --run-dir "$WORK/dl-hy" \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$DPORT --codecs fp32 --plan equal --aggregate mean \
    --deadline 60 --wait-volunteers 2 --wait-timeout 60 >"$WORK/dl-hy.bridge.log" 2>&1 &
DMP=$!
for v in 1 2; do
    "$BIN/conflux-volunteer" --join "127.0.0.1:$DPORT#$FP" --token-file "$VTOK" --name "dv$v" --codec fp32 \
        --set train.threads=1 --retries 30 >"$WORK/dl-hy.v$v.log" 2>&1 &
    sleep 0.5  # joining order fixes the volunteers' sample ranges
done
wait $DMP && [ -f "$WORK/dl-hy/finished" ] && ok "DiLoCo: 2 headline trainers + bridge + 2 volunteers ran 2 outer rounds" \
    || { bad "DiLoCo headline hybrid run failed"; tail -5 "$WORK/dl-hy.bridge.log"; }
wait
compare "$WORK/dl-mpi/checkpoint-000010.h5" "$WORK/dl-hy/checkpoint-000010.h5" 1e-5 \
    && ok "DiLoCo, fp32: headline hybrid == 4 MPI ranks in 3 workers" || bad "DiLoCo headline hybrid differs from the MPI workers"

# denoising on a token shard (volunteers need the tokenizer for the sentence ends)
if [ -f "$DATA/shards/valid.h5" ]; then
    DN=("${TINY[@]}" --objective denoise --train "$DATA/shards/valid.h5" --set data.src_len=48
        --set data.tgt_len=48 --set decoder.max_position=64 --set train.global_batch=8
        --set train.micro_batch=2 --set train.checkpoint_every=0 --steps 4)
    "${MPIRUN[@]}" -np 4 "$BIN/conflux-headline" train "${DN[@]}" --run-dir "$WORK/dn-mpi4" >"$WORK/dn-mpi4.log" 2>&1 \
        && [ -f "$WORK/dn-mpi4/finished" ] && ok "denoise, 4 MPI ranks: 4 steps" || { bad "denoise 4-rank run"; tail -5 "$WORK/dn-mpi4.log"; }
    hybrid_run "$WORK/dn-hybrid" $((PORT + 2)) 4 "${DN[@]}"
    compare "$WORK/dn-mpi4/checkpoint-000004.h5" "$WORK/dn-hybrid/checkpoint-000004.h5" 1e-5 \
        && ok "denoise: hybrid == 4 MPI ranks" || bad "denoise: hybrid differs from 4 MPI ranks"
else
    skip_check "denoising part ($DATA/shards/valid.h5 is missing)"
fi

# ---- 2. a volunteer with another pair shard is refused ----------------------------------
P2=$((PORT + 1))
"${MPIRUN[@]}" -np 1 "$BIN/conflux-headline" train "${RUN[@]}" --steps 3 --run-dir "$WORK/solo" \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$P2 \
    --codecs fp32 --plan equal --wait-volunteers 1 --wait-timeout 5 >"$WORK/solo.bridge.log" 2>&1 &
MP=$!
"$BIN/conflux-volunteer" --join "127.0.0.1:$P2#$FP" --token-file "$VTOK" --name wrong --retries 10 \
    --set data.train="$WORK/other.h5" --set train.threads=1 >"$WORK/wrong.log" 2>&1
rc=$?
# (refused by the data's SHA-256, stated by the bridge, before the pair count is compared)
[ $rc = 1 ] && grep -q "error: the training data $WORK/other.h5 ([0-9]* bytes) has sha256:[0-9a-f]\{64\}, the run's ([0-9]* bytes) has sha256:[0-9a-f]\{64\}" "$WORK/wrong.log" \
    && ok "a volunteer with another pair shard is refused: $(grep -m1 'error' "$WORK/wrong.log" | cut -c1-120)" \
    || bad "wrong-shard volunteer: rc=$rc $(tail -2 "$WORK/wrong.log")"
wait $MP && [ -f "$WORK/solo/finished" ] && ok "the run finished without it (1 trainer + bridge)" \
    || { bad "1 trainer + bridge run failed"; tail -5 "$WORK/solo.bridge.log"; }

echo "headline bridge test: $fails failure(s)"
[ "$fails" = 0 ]   # not "exit $fails": 77 means skipped
