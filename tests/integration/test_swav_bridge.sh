#!/bin/bash
# test_swav_bridge.sh: SwAV (conflux-swav) trains with volunteers through conflux-bridge, as
# conflux-train and conflux-headline do (test_bridge.sh, test_headline_bridge.sh):
# 2 trainer ranks + bridge + 2 volunteers (--plan equal, fp32 uploads) == 4 MPI ranks on the
# same image shard and global batch, 6 steps: the final /params agree within 1e-5 (except
# projection_head.0.bias, whose gradient is rounding noise that LARS scales up: see
# tests/mpi/test_mpi_swav.sh).
# usage: tests/integration/test_swav_bridge.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_swav_bridge.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_swav_bridge.sh BUILD_DIR DATA_DIR}
BIN=$BUILD/bin
source tests/lib.sh
[ -f "$DATA/fashion/train.h5" ] || skip "no image shards in $DATA/fashion (make fashion-mnist)"
command -v mpirun >/dev/null || skip "no mpirun"
WORK=$(mktemp -d /tmp/conflux-swav-bridge-test.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" alice --out "$WORK/alice.token" || { echo "FAIL: token issue"; exit 1; }
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")
RUN=(--set data.train="$DATA/fashion/train.h5" --set data.valid=''
     --set model.stages=2 --set model.width1=8 --set model.width2=16 --set model.head_hidden=32
     --set model.out_dim=16 --set model.prototypes=20 --set augment.n_small=2
     --set train.global_batch=8 --set train.micro_batch=2 --set train.steps=6
     --set train.checkpoint_every=3 --set swav.freeze_prototypes_steps=2
     --set optim.warmup_steps=2 --set optim.lr=2.0 --set train.threads=1 -q)
# cmp_params A B TOL: all of /params but projection_head.0.bias (see above)
cmp_params() { compare_except "$1" "$2" "$3" projection_head.0.bias; }

"${MPIRUN[@]}" -np 4 "$BIN/conflux-swav" "${RUN[@]}" --set run.dir="$WORK/mpi4" >"$WORK/mpi4.log" 2>&1 \
    && [ -f "$WORK/mpi4/finished" ] && ok "4 MPI ranks: 6 steps" || { bad "4-rank reference run"; tail -5 "$WORK/mpi4.log"; }
D=$WORK/hybrid
"${MPIRUN[@]}" -np 2 "$BIN/conflux-swav" "${RUN[@]}" --set run.dir="$D" \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$PORT --aggregate mean \
    --codecs fp32 --plan equal --wait-volunteers 2 --wait-timeout 60 >"$D.bridge.log" 2>&1 &
MP=$!
for v in 1 2; do
    "$BIN/conflux-volunteer" --join "127.0.0.1:$PORT#$FP" --token-file "$WORK/alice.token" --name "v$v" \
        --set train.threads=1 --set data.train="$DATA/fashion/train.h5" --retries 30 >"$D.v$v.log" 2>&1 &
done
if wait $MP; then
    rows=$(grep -c ',4,' "$D/metrics.csv" || true)
    ended=$(grep -l "the run ended; contributed to 6 step" "$D".v*.log | wc -l)
    [ "$rows" -ge 6 ] && [ "$ended" = 2 ] && [ -f "$D/finished" ] \
        && ok "2 trainers + bridge + 2 volunteers ran 6 steps with 4 participants each" \
        || bad "$rows rows with 4 participants, $ended volunteers to the end"
else
    bad "hybrid run failed"; tail -5 "$D.bridge.log"; tail -3 "$D".v*.log
fi
wait
cmp_params "$WORK/mpi4/checkpoint-000006.h5" "$D/checkpoint-000006.h5" 1e-5 \
    && ok "fp32 uploads: SwAV hybrid == 4 MPI ranks (step 6)" || bad "SwAV hybrid differs from 4 MPI ranks"
h5dump -a /model "$D/checkpoint-000006.h5" 2>/dev/null | grep -q '"swav"' && ok "the hybrid checkpoint is a swav one" \
    || bad "hybrid checkpoint has no model=swav"

echo
if [ $fails -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all SwAV bridge checks passed"
