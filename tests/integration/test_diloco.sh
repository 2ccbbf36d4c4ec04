#!/bin/bash
# test_diloco.sh: DiLoCo (averaging.mode = diloco) on the real corpus, with real MPI ranks,
# a real bridge and real volunteers on loopback (the WAN faults are in test_wan.sh).
#  1. H = 1, outer SGD at lr 1 and momentum 0 is synchronous training (1 and 2 ranks, with
#     and without overlap): within 1e-5.
#  2. Resume: 16 steps straight == 8 steps, checkpoint, resume, 8 steps, bit for bit
#     (parameters, inner moments, the outer state, the data cursor), with overlap.
#  3. 2 trainer ranks + bridge + 2 volunteers == the same DiLoCo run with 4 MPI ranks in 3
#     workers (2 + 1 + 1), fp32 both ways; and the default int8 both ways really is int8.
#  4. At equal samples and compute, 2 DiLoCo workers reach the synchronous run's
#     validation loss within a stated margin.
#  5. Hostile volunteers in diloco mode (NaN, an absurd pseudo-gradient norm, wrong size,
#     wrong round) are rejected with their reason; the run goes on.
#  6. Bad configurations get clear errors and the usage exit code.
# usage: tests/integration/test_diloco.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_diloco.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_diloco.sh BUILD_DIR DATA_DIR}
BIN=$BUILD/bin
source tests/lib.sh
if [ ! -f "$DATA/shards/train.h5" ] || [ ! -f "$DATA/shards/valid.h5" ]; then
    skip "no token shards in $DATA/shards (run 'make shards' first)"
fi
WORK=$(mktemp -d /tmp/conflux-diloco-test.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
T=("${TINY_MODEL[@]}" --set train.global_batch=8 --set train.micro_batch=4 --set train.eval_every=0 -q)
DL=(--set averaging.mode=diloco)
SYNC1=(--set averaging.inner_steps=1 --set averaging.outer_lr=1 --set averaging.outer_momentum=0)

# ---- 1. H = 1, lr 1, momentum 0 == synchronous ------------------------------------------
"$BIN/conflux-train" "${T[@]}" --set train.steps=12 --set run.dir="$WORK/sync1" || bad "sync run (1 rank)"
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${T[@]}" --set train.steps=12 --set run.dir="$WORK/sync2" \
    || bad "sync run (2 ranks)"
for ov in 0 1; do
    "$BIN/conflux-train" "${T[@]}" "${DL[@]}" "${SYNC1[@]}" --set averaging.overlap=$ov --set train.steps=12 \
        --set run.dir="$WORK/dl1-$ov" || bad "diloco run (1 rank, overlap $ov)"
    compare "$WORK/sync1/checkpoint-000012.h5" "$WORK/dl1-$ov/checkpoint-000012.h5" 1e-5 \
        && ok "1 rank, overlap $ov: DiLoCo H=1 lr 1 momentum 0 == synchronous" \
        || bad "1 rank, overlap $ov: DiLoCo H=1 differs from synchronous training"
    "${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${T[@]}" "${DL[@]}" "${SYNC1[@]}" --set averaging.overlap=$ov \
        --set train.steps=12 --set run.dir="$WORK/dl2-$ov" || bad "diloco run (2 ranks, overlap $ov)"
    compare "$WORK/sync2/checkpoint-000012.h5" "$WORK/dl2-$ov/checkpoint-000012.h5" 1e-5 \
        && ok "2 ranks (one worker), overlap $ov: DiLoCo H=1 == synchronous" \
        || bad "2 ranks, overlap $ov: DiLoCo H=1 differs from synchronous training"
done
# the outer step really runs: with DiLoCo's defaults (lr 0.7, Nesterov 0.9) the run differs
"$BIN/conflux-train" "${T[@]}" "${DL[@]}" --set averaging.inner_steps=1 --set train.steps=12 \
    --set run.dir="$WORK/dl1-nesterov" || bad "diloco run with the default outer optimizer"
compare "$WORK/sync1/checkpoint-000012.h5" "$WORK/dl1-nesterov/checkpoint-000012.h5" 1e-4 >/dev/null \
    && bad "outer Nesterov (lr 0.7, momentum 0.9) left the run unchanged" \
    || ok "outer Nesterov at DiLoCo's defaults changes the run (the outer step is applied)"

# ---- 2. resume bit for bit -------------------------------------------------------------
R=("${T[@]}" "${DL[@]}" --set averaging.inner_steps=4 --set train.steps=16)
"$BIN/conflux-train" "${R[@]}" --set train.checkpoint_every=16 --set run.dir="$WORK/straight" || bad "straight diloco run"
"$BIN/conflux-train" "${R[@]}" --set train.checkpoint_every=8 --set run.dir="$WORK/first" || bad "first half"
# (paths never come from a checkpoint: the data is named again)
"$BIN/conflux-train" --resume "$WORK/first/checkpoint-000008.h5" "${TINY_MODEL[@]:0:4}" --set run.dir="$WORK/resumed" -q || bad "resume"
a=$WORK/straight/checkpoint-000016.h5 b=$WORK/resumed/checkpoint-000016.h5
if [ -f "$b" ] && h5diff -q "$a" "$b" /params /params && h5diff -q "$a" "$b" /optim /optim &&
   h5diff -q "$a" "$b" /data /data && h5diff -q "$a" "$b" /outer /outer; then
    ok "diloco resume at step 8 == the straight run at step 16, bit for bit (params, moments, outer state, cursor)"
else
    bad "diloco resume differs from the straight run"
fi
h5ls -r "$WORK/first/checkpoint-000008.h5" | grep -q "outer_momentum" \
    && ok "the checkpoint carries the outer state (/optim/*/outer_params, outer_momentum, outer_start, /outer/state)" \
    || bad "no outer state in the checkpoint"

# ---- 3. volunteers are workers: bridge == MPI ------------------------------------------
PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" alice --out "$WORK/alice.token"; TOK=$WORK/alice.token
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # the join string pins it
H=("${TINY_MODEL[@]}" --set train.micro_batch=2 --set train.replica_check_every=4 -q --set train.global_batch=8
   --set train.steps=20 "${DL[@]}" --set averaging.inner_steps=4)
"${MPIRUN[@]}" -np 4 "$BIN/conflux-train" "${H[@]}" --set averaging.down_codec=fp32 --set averaging.workers=3 \
    --set run.dir="$WORK/mpi3w" || bad "4 MPI ranks in 3 DiLoCo workers"
hybrid() {  # DIR PORT_OFFSET [BRIDGE ARGS] -- [VOLUNTEER ARGS] -- [TRAINER ARGS]
    local dir=$1 port=$((PORT + $2)); shift 2
    local bargs=() vargs=() targs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do bargs+=("$1"); shift; done; shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do vargs+=("$1"); shift; done; shift
    targs=("$@")
    "${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${H[@]}" "${targs[@]}" --set run.dir="$dir" \
        : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$port --aggregate mean \
        --wait-volunteers 2 --wait-timeout 60 "${bargs[@]}" >"$dir.bridge.log" 2>&1 &
    local mp=$!
    for v in 1 2; do
        timeout 300 "$BIN/conflux-volunteer" --join "127.0.0.1:$port#$FP" --token-file "$TOK" --name "v$v" \
            --set train.threads=1 --retries 30 "${vargs[@]}" >"$dir.v$v.log" 2>&1 &
        sleep 0.5  # joining order fixes the volunteers' sample ranges
    done
    wait $mp
    local rc=$?
    wait
    return $rc
}
hybrid "$WORK/hy32" 0 --codecs fp32 --plan equal --deadline 60 -- --codec fp32 -- --set averaging.down_codec=fp32 \
    && ok "2 trainers + bridge + 2 volunteers: a DiLoCo run of 20 steps" || bad "hybrid fp32 DiLoCo run failed"
compare "$WORK/mpi3w/checkpoint-000020.h5" "$WORK/hy32/checkpoint-000020.h5" 1e-5 \
    && ok "fp32: 2 trainers + bridge + 2 volunteers == 4 MPI ranks in 3 workers" \
    || bad "fp32 hybrid DiLoCo differs from the MPI workers"
fresh=$(awk -F, 'NR>1 {s+=$7} END {print s+0}' "$WORK/hy32/bridge.csv")
[ "$fresh" = 320 ] && ok "every volunteer share arrived in its round (320 samples fresh)" \
    || bad "volunteer samples fresh: $fresh, expected 320"
# defaults: int8 both ways, shares sized to measured speed, adaptive deadlines
hybrid "$WORK/hy8" 1 -- -- && ok "int8 DiLoCo run with throughput plan" || bad "int8 hybrid DiLoCo run failed"
grep -q "codec int8" "$WORK/hy8.bridge.log" && ok "the bridge negotiated int8 uploads" || bad "no int8 negotiation"
n=$(grep -o '[0-9]* parameters' "$WORK/hy8.bridge.log" | head -1 | cut -d' ' -f1)
# bytes the bridge sent per round (after the first, which carries the state downloads): the
# int8 average to each of 2 volunteers is n bytes + n/32 of scales; fp32 would be 4 n
per=$(awk -F, 'NR>2 {s+=$16; k++} END {printf "%.0f", s/k}' "$WORK/hy8/bridge.csv")
awk -v p="$per" -v n="$n" 'BEGIN {exit !(p > 0 && p < 2 * 1.10 * n)}' \
    && ok "int8 downloads: $per bytes per round to 2 volunteers for $n parameters (fp32 would be $((8 * n)))" \
    || bad "bytes per round $per for $n parameters: not int8"
acc=$(awk -F, 'NR>1 {s+=$7+$8} END {print s+0}' "$WORK/hy8/bridge.csv")
[ "$acc" -gt 0 ] && ok "int8 volunteers contributed $acc samples" || bad "no volunteer samples accepted"
compare "$WORK/hy32/checkpoint-000020.h5" "$WORK/hy8/checkpoint-000020.h5" 0 >/dev/null \
    && bad "the int8 run equals the fp32 run bit for bit: the codec was not used" || ok "int8 run differs from fp32"

# ---- 4. DiLoCo vs synchronous on the real corpus, equal samples and compute ------------
Q=(--set data.train="$DATA/shards/train.h5" --set data.valid="$DATA/shards/valid.h5"
   --set model.hidden_size=128 --set model.num_heads=2 --set model.embedding_size=64
   --set model.intermediate_size=256 --set model.num_layers=2 --set data.seq_len=64
   --set train.threads=1 --set train.micro_batch=16 --set train.steps=160 --set train.eval_every=160
   --set train.eval_samples=256 --set optim.lr=2e-3 --set optim.warmup_steps=10 -q)
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${Q[@]}" --set train.global_batch=32 --set run.dir="$WORK/qsync" \
    || bad "synchronous reference run"
# 2 workers of 1 rank, 16 samples per inner step each: the same 32 samples per step
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${Q[@]}" --set train.global_batch=16 "${DL[@]}" \
    --set averaging.workers=2 --set averaging.inner_steps=10 --set run.dir="$WORK/qdl" || bad "2-worker DiLoCo run"
vs=$(awk -F, 'NR>1 && $13!="" {v=$13} END {print v}' "$WORK/qsync/metrics.csv")
vd=$(awk -F, 'NR>1 && $13!="" {v=$13} END {print v}' "$WORK/qdl/metrics.csv")
echo "validation loss after 5,120 samples: synchronous $vs, DiLoCo (2 workers, H=10) $vd"
# margin: DiLoCo (its default outer step, lr 0.7 and Nesterov 0.9, with overlap) at most
# 0.3 nat above synchronous training (the loss falls by ~1.6 nats
# over these steps; see the closing note of issue 12 for the observed gap)
awk -v s="$vs" -v d="$vd" 'BEGIN {exit !(s != "" && d != "" && d <= s + 0.3)}' \
    && ok "2 DiLoCo workers reach the synchronous validation loss within 0.3 nat ($vd vs $vs)" \
    || bad "DiLoCo validation loss $vd is more than 0.3 nat above synchronous $vs"

# ---- 5. hostile volunteers in diloco mode ----------------------------------------------
P5=$((PORT + 5))
"${MPIRUN[@]}" -np 1 "$BIN/conflux-train" "${TINY_MODEL[@]}" --set train.global_batch=8 --set train.micro_batch=4 \
    --set train.steps=400 "${DL[@]}" --set averaging.inner_steps=20 --set run.dir="$WORK/hostile" -q \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$P5 --wait-volunteers 1 \
    --wait-timeout 60 --deadline 5 >"$WORK/hostile.bridge.log" 2>&1 &
HMP=$!
timeout 200 "$BIN/conflux-volunteer" --join "127.0.0.1:$P5#$FP" --token-file "$TOK" --name honest --set train.threads=1 \
    >"$WORK/hostile.honest.log" 2>&1 &
for _ in $(seq 600); do grep -q "honest.*is live" "$WORK/hostile.bridge.log" 2>/dev/null && break; sleep 0.1; done
declare -A WHY=([nan]="gradient element 7 is nan" [norm]="rejected: norm .* exceeds 4 x the cluster's"
                [wrongsize]="upload starts at element" [wronground]="upload for round")
# the exact code and reason each peer must get (tool_badpeer --expect CODE REGEX)
N='[0-9]+' G='[0-9.]+(e[+-][0-9]+)?'
declare -A WANT=([nan]='4 ^gradient element 7 is nan$'
                 [norm]="4 ^pseudo-gradient of round $N rejected: norm $G exceeds 4 x the cluster's $G\$"
                 [wrongsize]="4 ^upload starts at element [1-9][0-9]* with $N samples; expected element 0 and $N samples\$"
                 [wronground]="1 ^upload for round $N, but the share it holds is for round $N\$")
for m in nan norm wrongsize wronground; do
    timeout 120 "$BUILD/tests/tools/tool_badpeer" --expect "${WANT[$m]%% *}" "${WANT[$m]#* }" \
        "127.0.0.1:$P5#$FP" $m "$(cat "$TOK")" >"$WORK/hostile.$m.log" 2>&1 &
    eval "HB_$m=\$!"
done
for m in nan norm wrongsize wronground; do
    eval "pid=\$HB_$m"
    if wait $pid && grep -q -- "${WHY[$m]}" "$WORK/hostile.bridge.log"; then
        ok "diloco, hostile '$m': ERROR and close; the bridge says: $(grep -m1 -o -- "${WHY[$m]}[^;]*" "$WORK/hostile.bridge.log" | cut -c1-90)"
    else
        bad "diloco, hostile '$m': $(tail -2 "$WORK/hostile.$m.log")"
    fi
done
wait $HMP && [ -f "$WORK/hostile/finished" ] && ok "the diloco run with hostile peers finished" \
    || bad "the diloco run with hostile peers failed: $(tail -3 "$WORK/hostile.bridge.log")"
wait
hacc=$(grep -c ',"honest","alice",accepted' "$WORK/hostile/volunteers.csv")
[ "$hacc" -gt 0 ] && ok "the honest volunteer's pseudo-gradients were accepted in $hacc rounds" \
    || bad "the honest volunteer contributed nothing"

# ---- 6. bad configurations -------------------------------------------------------------
expect() {  # expect RC PATTERN CMD...
    local want=$1 pat=$2; shift 2
    local msg; msg=$("$@" 2>&1 >/dev/null); local rc=$?
    if [ $rc = "$want" ] && grep -q -- "$pat" <<<"$msg"; then ok "rc=$rc: $(grep -m1 -- "$pat" <<<"$msg")"
    else bad "expected rc=$want /$pat/, got rc=$rc: $msg"; fi
}
expect 2 "train.steps (10) and train.checkpoint_every (0) must be multiples of averaging.inner_steps (4)" \
    "$BIN/conflux-train" "${T[@]}" "${DL[@]}" --set averaging.inner_steps=4 --set train.steps=10
expect 2 "averaging.workers = 2 needs averaging.mode = diloco" "$BIN/conflux-train" "${T[@]}" --set averaging.workers=2
expect 2 "averaging.outer_momentum must be in \[0, 1)" "$BIN/conflux-train" "${T[@]}" "${DL[@]}" --set averaging.outer_momentum=1
expect 2 "'sgd' is not an averaging mode" "$BIN/conflux-train" "${T[@]}" --set averaging.mode=sgd
expect 2 "averaging.workers = 3 but the job has 2 trainer rank(s)" \
    "${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${T[@]}" "${DL[@]}" --set averaging.workers=3
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${T[@]}" "${DL[@]}" --set averaging.workers=2 --set averaging.inner_steps=4 \
    --set train.steps=8 --set train.checkpoint_every=4 --set run.dir="$WORK/w2" || bad "2-worker run"
expect 2 "cannot resume a run of 2 DiLoCo workers" \
    "${MPIRUN[@]}" -np 2 "$BIN/conflux-train" --resume "$WORK/w2/checkpoint-000004.h5" --set run.dir="$WORK/w2r" -q

[ $fails = 0 ] && echo "all diloco tests passed" || echo "$fails diloco test(s) failed"
[ $fails = 0 ]
