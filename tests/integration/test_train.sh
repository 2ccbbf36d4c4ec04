#!/usr/bin/env bash
# Integration tests of conflux-train and conflux-fill-mask on the real Russian corpus:
#  - resume: 20 steps straight == 10 steps, checkpoint, resume, 10 steps, bit for bit
#    (h5diff over /params and /optim: no tolerance), with dropout on;
#  - a short run lowers the validation loss by a margin;
#  - SIGTERM checkpoints at the step boundary and exits 0;
#  - damaged checkpoints and malformed configs give clear errors and the right exit codes.
# usage: tests/integration/test_train.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
BIN=$BUILD/bin
source tests/lib.sh
if [ ! -f "$DATA/shards/train.h5" ] || [ ! -f "$DATA/shards/valid.h5" ]; then
    skip "no token shards in $DATA/shards (run 'make shards' first)"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

TINY=("${TINY_MODEL[@]}" --set train.global_batch=8 --set train.micro_batch=4
      --set train.eval_samples=32 --set train.eval_every=10 -q)

# --- resume bit for bit
"$BIN/conflux-train" "${TINY[@]}" --set train.steps=20 --set run.dir="$WORK/straight" || bad "straight run failed"
"$BIN/conflux-train" "${TINY[@]}" --set train.steps=20 --set train.checkpoint_every=10 \
    --set run.dir="$WORK/first" >/dev/null 2>&1 || bad "first half failed"
# resume from step 10 (the first run also wrote step 20; we continue from 10 in a new dir)
"$BIN/conflux-train" --resume "$WORK/first/checkpoint-000010.h5" --set run.dir="$WORK/resumed" -q \
    || bad "resume failed"
if [ -f "$WORK/resumed/checkpoint-000020.h5" ]; then
    if h5diff -q "$WORK/straight/checkpoint-000020.h5" "$WORK/resumed/checkpoint-000020.h5" /params /params &&
       h5diff -q "$WORK/straight/checkpoint-000020.h5" "$WORK/resumed/checkpoint-000020.h5" /optim /optim &&
       h5diff -q "$WORK/straight/checkpoint-000020.h5" "$WORK/resumed/checkpoint-000020.h5" /data /data; then
        ok "resume at step 10 equals the straight run at step 20 bit for bit"
    else
        bad "resumed parameters differ from the straight run"
    fi
    # the metrics of steps 11..20 agree too (same loss to 6 decimals)
    if diff <(awk -F, 'NR>1 && $2>10 {print $2,$4}' "$WORK/straight/metrics.csv") \
            <(awk -F, 'NR>1 {print $2,$4}' "$WORK/resumed/metrics.csv") >/dev/null; then
        ok "losses of steps 11-20 match"
    else
        bad "losses of steps 11-20 differ after resume"
    fi
else
    bad "resumed run wrote no step-20 checkpoint"
fi

# --- run directory contract
head -1 "$WORK/straight/metrics.csv" | grep -q '^time_s,step,samples,loss,lr,samples_per_s,tokens_per_s,compute_s,comm_s,bytes_sent,bytes_recv,participants' \
    && ok "metrics.csv header" || bad "metrics.csv header"
[ "$(tail -n +2 "$WORK/straight/metrics.csv" | wc -l)" = 20 ] && ok "20 metrics rows" || bad "metrics rows"
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['ranks']==1 and 'config' in d" \
    "$WORK/straight/run.json" 2>/dev/null && ok "run.json parses" || bad "run.json"

# --- training lowers the validation loss (fixed seed; margin, not an exact value)
"$BIN/conflux-train" --set data.train="$DATA/shards/train.h5" --set data.valid="$DATA/shards/valid.h5" \
    --set model.hidden_size=128 --set model.num_heads=2 --set model.embedding_size=64 \
    --set model.intermediate_size=256 --set model.num_layers=2 --set data.seq_len=64 \
    --set train.global_batch=16 --set train.micro_batch=16 --set train.steps=150 \
    --set train.eval_every=10 --set train.eval_samples=128 --set optim.lr=2e-3 \
    --set optim.warmup_steps=10 --set run.dir="$WORK/learn" -q || bad "learning run failed"
read -r first last < <(awk -F, 'NR>1 && $13!="" {if (f=="") f=$13; l=$13} END {print f, l}' "$WORK/learn/metrics.csv")
echo "validation loss: step 10 $first -> step 150 $last"
awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < a - 1.0)}' \
    && ok "validation loss fell by more than 1.0 nat" || bad "validation loss did not fall enough ($first -> $last)"

# --- fill-mask on the trained checkpoint: JSON shape
out=$("$BIN/conflux-fill-mask" --checkpoint "$WORK/learn/latest.h5" --tokenizer "$DATA/tokenizer" \
      --json --top-k 3 "Он [MASK] домой, а потом [MASK].")
echo "$out" | /usr/bin/python3 -c '
import json, sys
lines = sys.stdin.read().strip().split("\n")
assert len(lines) == 2, lines
for l in lines:
    o = json.loads(l)
    assert o["input_ids"][o["position"]] == 4 and o["input_ids"][0] == 2
    assert len(o["top"]) == 3 and all(set(t) == {"token_id", "token", "prob"} for t in o["top"])
    p = [t["prob"] for t in o["top"]]
    assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1.0001
' && ok "fill-mask --json" || bad "fill-mask --json output: $out"
# the same checkpoint as a PyTorch state_dict (h5py + dict comprehension) gives the same top-k
if /usr/bin/python3 -c "import torch, h5py" 2>/dev/null; then
    echo "$out" | /usr/bin/python3 tests/ref/check_fill_mask.py "$WORK/learn/latest.h5" \
        && ok "checkpoint loads into PyTorch and predicts the same" || bad "PyTorch disagrees with conflux-fill-mask"
else
    skip_check "PyTorch cross-check (no torch/h5py in /usr/bin/python3)"
fi

# --- SIGTERM: checkpoint at the next step boundary, exit 0
"$BIN/conflux-train" "${TINY[@]}" --set train.steps=100000 --set run.dir="$WORK/sig" &
pid=$!
for _ in $(seq 100); do [ -s "$WORK/sig/metrics.csv" ] && [ "$(wc -l < "$WORK/sig/metrics.csv")" -gt 3 ] && break; sleep 0.1; done
kill -TERM $pid
wait $pid; rc=$?
[ $rc = 0 ] && [ -L "$WORK/sig/latest.h5" ] && ok "SIGTERM checkpoints and exits 0" || bad "SIGTERM: rc=$rc"
"$BIN/conflux-train" --resume "$WORK/sig/latest.h5" --set train.steps=$(( $(tail -1 "$WORK/sig/metrics.csv" | cut -d, -f2) + 2 )) -q \
    && ok "resume after SIGTERM" || bad "resume after SIGTERM"

# --- bad input: clear errors and exit codes
expect() {  # expect RC PATTERN CMD...
    local want=$1 pat=$2; shift 2
    local msg; msg=$("$@" 2>&1 >/dev/null); local rc=$?
    if [ $rc = "$want" ] && grep -q -- "$pat" <<<"$msg"; then ok "rc=$rc: $msg"; else bad "expected rc=$want /$pat/, got rc=$rc: $msg"; fi
}
ck=$WORK/straight/checkpoint-000020.h5
sz=$(stat -c %s "$ck")
head -c $((sz / 2)) "$ck" > "$WORK/trunc.h5"
expect 1 "trunc.h5" "$BIN/conflux-train" --resume "$WORK/trunc.h5"
expect 1 "trunc.h5" "$BIN/conflux-fill-mask" --checkpoint "$WORK/trunc.h5" --tokenizer "$DATA/tokenizer" "a [MASK]"
printf 'not hdf5 at all' > "$WORK/junk.h5"
expect 1 "junk.h5" "$BIN/conflux-train" --resume "$WORK/junk.h5"
printf '[model]\nhidden_size = 64\nnum_layers = two\n' > "$WORK/bad.ini"
expect 2 "bad.ini:3" "$BIN/conflux-train" --config "$WORK/bad.ini"
expect 2 "unknown key" "$BIN/conflux-train" --set model.colour=red
expect 2 "conflux-train: error: bad option .--bogus." "$BIN/conflux-train" --bogus
expect 1 "nowhere.h5" "$BIN/conflux-train" --set data.train="$WORK/nowhere.h5"
expect 2 "" "$BIN/conflux-fill-mask" --tokenizer "$DATA/tokenizer" "x"
expect 1 "no \[MASK\]" "$BIN/conflux-fill-mask" --checkpoint "$ck" --tokenizer "$DATA/tokenizer" "no mask here"
"$BIN/conflux-train" --help | grep -q "usage" && "$BIN/conflux-fill-mask" --help | grep -q usage \
    && ok "--help" || bad "--help"

[ $fails = 0 ] && echo "all train tests passed" || echo "$fails train test(s) failed"
[ $fails = 0 ]
