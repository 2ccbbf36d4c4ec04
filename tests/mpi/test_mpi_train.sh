#!/usr/bin/env bash
# conflux-train under real mpirun ranks, on the real corpus:
#  - equivalence: 1, 2 and 4 ranks with the same global batch (8 sequences, micro-batch 2,
#    dropout 0.1) reach the same parameters after 20 steps;
#  - resume across rank counts: 4 ranks write step 10, 2 ranks resume to step 20, equal to
#    4 ranks straight;
#  - a rank killed with SIGKILL ends the job with an error and leaves the last checkpoint
#    intact (it still loads).
# Tolerance: ranks sum their micro-batch gradients in a different order than one process
# does, so float32 rounding differs (~1e-7 relative per gradient). Adam turns a relative
# gradient perturbation e into an update change of about lr*e, so after 20 steps at
# lr <= 1e-3 parameters differ by far less than 1e-5 (observed: ~2e-7). A rank that
# averaged wrongly (or used only its own data) moves parameters by ~lr = 1e-3 per step,
# so the bound 1e-5 tells the two apart.
# Every run checks that mpirun really started its ranks: rank 0 records the world size in
# run.json (as root, a refused mpirun exits 0 having run nothing).
# usage: tests/mpi/test_mpi_train.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
BIN=$BUILD/bin
source tests/lib.sh
command -v mpirun >/dev/null || skip "no mpirun"
[ -f "$DATA/shards/train.h5" ] || skip "no token shards in $DATA/shards"
export OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TINY=("${TINY_MODEL[@]}" --set train.global_batch=8 --set train.micro_batch=2
      --set train.eval_every=0 --set train.steps=20 --set train.replica_check_every=5 -q)

ranks_ran() {  # DIR N: run.json says N ranks and metrics has 20 rows
    /usr/bin/python3 -c "import json,sys; sys.exit(json.load(open(sys.argv[1]))['ranks'] != int(sys.argv[2]))" \
        "$1/run.json" "$2" 2>/dev/null
}
# --- equivalence over 1, 2, 4 ranks
for n in 1 2 4; do
    "${MPIRUN[@]}" -np $n "$BIN/conflux-train" "${TINY[@]}" --set run.dir="$WORK/np$n" \
        && ranks_ran "$WORK/np$n" $n && ok "$n rank(s) ran 20 steps" || bad "$n-rank run"
done
for n in 2 4; do
    compare "$WORK/np1/checkpoint-000020.h5" "$WORK/np$n/checkpoint-000020.h5" 1e-5 \
        && ok "1 rank == $n ranks" || bad "1 rank != $n ranks"
done
# the comparison can fail: a different global batch gives clearly different parameters
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${TINY[@]}" --set train.global_batch=6 --set run.dir="$WORK/other" >/dev/null 2>&1
compare "$WORK/np1/checkpoint-000020.h5" "$WORK/other/checkpoint-000020.h5" 1e-5 >/dev/null \
    && bad "a different global batch went unnoticed" || ok "a different global batch is told apart"

# --- resume across rank counts: 4 ranks write step 10, 2 ranks continue
"${MPIRUN[@]}" -np 4 "$BIN/conflux-train" "${TINY[@]}" --set train.checkpoint_every=10 \
    --set run.dir="$WORK/w4" || bad "4-rank writer"
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" --resume "$WORK/w4/checkpoint-000010.h5" \
    --set run.dir="$WORK/r2" -q && ranks_ran "$WORK/r2" 2 || bad "2-rank resume"
compare "$WORK/np4/checkpoint-000020.h5" "$WORK/r2/checkpoint-000020.h5" 1e-5 \
    && ok "4 ranks to step 10 + 2 ranks to step 20 == 4 ranks straight" || bad "resume across rank counts"

# --- a rank killed with SIGKILL: the job ends with an error, the last checkpoint loads
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${TINY[@]}" --set train.steps=100000 \
    --set train.checkpoint_every=5 --set run.dir="$WORK/kill" > "$WORK/kill.log" 2>&1 &
mpid=$!
for _ in $(seq 200); do [ -L "$WORK/kill/latest.h5" ] && break; sleep 0.1; done
victim=$(pgrep -f "run.dir=$WORK/kill" | while read -r p; do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = conflux-train ] && echo "$p"; done | tail -1)
if [ -n "$victim" ]; then
    kill -9 "$victim"
    timeout 60 tail --pid=$mpid -f /dev/null; wait $mpid; rc=$?
    if [ $rc != 0 ] && grep -qiE "killed|signal 9|exited on signal" "$WORK/kill.log"; then
        ok "SIGKILL of a rank ends the job (rc=$rc): $(grep -iE 'killed|signal' "$WORK/kill.log" | head -1)"
    else
        bad "after SIGKILL: rc=$rc, log: $(tail -3 "$WORK/kill.log")"
    fi
    "$BIN/conflux-fill-mask" --checkpoint "$WORK/kill/latest.h5" --tokenizer "$DATA/tokenizer" \
        "Он [MASK] домой." >/dev/null && ok "the last checkpoint is intact" || bad "last checkpoint damaged"
else
    bad "no conflux-train rank to kill"; kill $mpid 2>/dev/null; wait $mpid
fi

[ $fails = 0 ] && echo "all MPI train tests passed" || echo "$fails MPI train test(s) failed"
[ $fails = 0 ]
