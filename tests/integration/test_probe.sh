#!/bin/bash
# test_probe.sh BUILD_DIR DATA_DIR: conflux-probe on the command line: the CLI contract
# (--help, exit 2 for a usage error, exit 1 naming a checkpoint of another model kind), and
# end to end on Fashion-MNIST with a tiny SwAV model: a 3-step conflux-swav checkpoint and
# the random initialisation are probed (the line's format; the same figure twice: the probe
# is deterministic), and the checkpoint's features differ from the random ones.
set -uo pipefail
build=${1:?usage: tests/integration/test_probe.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: tests/integration/test_probe.sh BUILD_DIR DATA_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/lib.sh"
B=$build/bin
[ -f "$DATA/fashion/train.h5" ] || skip "no image shards in $DATA/fashion (make fashion-mnist)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
TR=$DATA/fashion/train.h5
TE=$DATA/fashion/test.h5
"$B/conflux-probe" --help | grep -q '^usage: conflux-probe' && ok "--help" || bad "--help"
"$B/conflux-probe" --random --train "$TR" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q 'conflux-probe: error: --train and --test are required' "$tmp/err" && ok "usage error: exit 2" || bad "usage: rc=$rc $(cat "$tmp/err")"
"$B/conflux-probe" --random --supervised 5 --train "$TR" --test "$TE" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q 'give one of --checkpoint, --random and --supervised' "$tmp/err" && ok "two modes: exit 2" || bad "two modes: rc=$rc"
TINY=(--set model.stages=2 --set model.width1=8 --set model.width2=16 --set model.head_hidden=32
      --set model.out_dim=16 --set model.prototypes=20)
"$B/conflux-swav" "${TINY[@]}" --set data.train="$TR" --set data.valid='' --set train.global_batch=16 \
    --set train.micro_batch=8 --set train.steps=3 --set run.dir="$tmp/run" -q || bad "tiny conflux-swav run"
P=(--train "$TR" --test "$TE" --limit 2000 --epochs 3 --bn-batches 2 --threads 2)
"$B/conflux-probe" --checkpoint "$tmp/run/latest.h5" "${P[@]}" >"$tmp/a.txt" 2>/dev/null &&
    grep -Eq '^probe: top1=0\.[0-9]{4} train_top1=0\.[0-9]{4} features=16 train_images=2000 test_images=10000 seconds=' "$tmp/a.txt" &&
    ok "checkpoint: $(cat "$tmp/a.txt")" || bad "probe of the checkpoint: $(cat "$tmp/a.txt")"
"$B/conflux-probe" --random "${TINY[@]}" "${P[@]}" >"$tmp/r1.txt" 2>/dev/null
"$B/conflux-probe" --random "${TINY[@]}" "${P[@]}" >"$tmp/r2.txt" 2>/dev/null
r1=$(sed 's/ seconds=.*//' "$tmp/r1.txt"); r2=$(sed 's/ seconds=.*//' "$tmp/r2.txt")
[ -n "$r1" ] && [ "$r1" = "$r2" ] && ok "random floor, twice the same: $r1" || bad "random probes: '$r1' vs '$r2'"
a=$(sed 's/ train_images.*//' "$tmp/a.txt")
[ "$a" != "$r1" ] && ok "the checkpoint's probe differs from the random one" || bad "checkpoint probe equals the random one"
# a checkpoint of another kind
"$B/conflux-train" --set data.train="$DATA/shards/valid.h5" --set data.valid='' --set model.hidden_size=32 \
    --set model.num_heads=2 --set model.embedding_size=16 --set model.intermediate_size=64 --set model.num_layers=1 \
    --set data.seq_len=32 --set train.global_batch=4 --set train.micro_batch=4 --set train.steps=1 \
    --set run.dir="$tmp/albert" -q 2>/dev/null
if [ -f "$tmp/albert/latest.h5" ]; then
    "$B/conflux-probe" --checkpoint "$tmp/albert/latest.h5" "${P[@]}" >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc = 1 ] && grep -q "holds a 'albert' model, not SwAV's (conflux-swav writes those)" "$tmp/err" && ok "an ALBERT checkpoint: exit 1, $(head -1 "$tmp/err")" || bad "albert checkpoint: rc=$rc $(cat "$tmp/err")"
else
    skip_check "no token shards for an ALBERT checkpoint ($DATA/shards)"
fi
echo
if [ $fails -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all probe checks passed"
