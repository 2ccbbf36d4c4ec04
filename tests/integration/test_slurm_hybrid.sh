#!/usr/bin/env bash
# A real `sbatch slurm/hybrid.sbatch` on a local Slurm cluster (slurm/local-cluster.sh): the
# job starts 2 trainer ranks and the bridge rank with srun --multi-prog (--mpi=pmix), a
# volunteer joins it over TCP, the job is signalled (the time-limit warning), checkpoints,
# requeues itself and resumes, the volunteer reconnects to the requeued job's bridge, and
# the run finishes with the volunteer's samples in it. SLURM_HYBRID_MODE=diloco runs the same
# job in DiLoCo mode (H = 4): the requeued job resumes the outer state from its checkpoint.
# usage: tests/integration/test_slurm_hybrid.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
BIN=$(cd "$BUILD/bin" && pwd)
source tests/lib.sh
for cmd in slurmctld slurmd sbatch munged mpirun; do
    command -v $cmd >/dev/null || skip "$cmd not installed"
done
[ "$(id -u)" = 0 ] || skip "needs root (the local cluster runs munged, slurmctld and slurmd as root)"
[ -f "$DATA/shards/train.h5" ] || skip "no token shards in $DATA/shards"
DATA=$(cd "$DATA" && pwd)
WORK=$(mktemp -d)
chmod 755 "$WORK"
CL=$WORK/cluster
# one free range: the bridge listens on PORT, the private cluster on PORT+8 and PORT+9
PORT=$(free_ports)
export CONFLUX_SLURMCTLD_PORT=$((PORT + 8)) CONFLUX_SLURMD_PORT=$((PORT + 9))
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    slurm/local-cluster.sh stop "$CL" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
slurm/local-cluster.sh start "$CL" || { echo "FAIL: cannot start the local Slurm cluster"; exit 1; }
eval "$(slurm/local-cluster.sh env "$CL")"
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" vol --out "$WORK/vol.token"; TOK=$WORK/vol.token
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # the join string pins it
MODE=${SLURM_HYBRID_MODE:-sync}
ARGS=("${TINY_MODEL[@]}" --set train.global_batch=8 --set train.micro_batch=2
      --set train.eval_every=0 --set train.steps=200 --set train.log_every=50)
[ "$MODE" = diloco ] && ARGS+=(--set averaging.mode=diloco --set averaging.inner_steps=4)
jid=$(CONFLUX_BIN_DIR="$BIN" CONFLUX_RUN_DIR="$WORK/job" CONFLUX_TOKENS="$TOKENS" \
      CONFLUX_LISTEN=127.0.0.1:$PORT CONFLUX_BRIDGE_ARGS="--plan equal --wait-volunteers 1 --wait-timeout 60" \
      sbatch --parsable --overcommit --ntasks=3 --output="$WORK/job.out" slurm/hybrid.sbatch "${ARGS[@]}")
[ -n "$jid" ] && ok "submitted hybrid job $jid (2 trainers + bridge)" || { bad "sbatch failed"; exit 1; }
"$BIN/conflux-volunteer" --join "127.0.0.1:$PORT#$FP" --token-file "$TOK" --name slurmvol --set train.threads=1 \
    --timeout 10 --retries 60 >"$WORK/vol.log" 2>&1 &
VOL=$!
rows() { [ -f "$WORK/job/metrics.csv" ] && [ "$(wc -l < "$WORK/job/metrics.csv")" -gt "$1" ]; }
if waitfor 120 rows 40; then
    scancel --signal=USR1 "$jid" && ok "sent SIGUSR1 at step $(tail -1 "$WORK/job/metrics.csv" | cut -d, -f2)"
else
    bad "the job did not start training: $(tail -5 "$WORK/job.out" 2>/dev/null)"
fi
finished() { [ -f "$WORK/job/finished" ] && ! squeue -h -j "$jid" 2>/dev/null | grep -q .; }
waitfor 240 finished && ok "the job finished" || bad "the job did not finish: $(squeue -j "$jid"; tail -5 "$WORK/job.out")"
grep -q "requeueing job $jid" "$WORK/job.out" && ok "it checkpointed and requeued itself" || bad "no requeue"
grep -q "resumes from checkpoint-" "$WORK/job.out" && ok "the requeued job resumed" || bad "no resume"
grep -q "bridge on .* listening" "$WORK/job.out" && ok "the job log names the bridge's node" || bad "no bridge line in the job log"
wait $VOL
if [ "$MODE" = diloco ]; then  # bridge.csv: one row per outer round; the cluster + the volunteer
    vol_rows=$(awk -F, 'NR > 1 && $11 > 1' "$WORK/job/bridge.csv" | wc -l)
    min_rows=5
else
    vol_rows=$(awk -F, 'NR > 1 && $12 > 2' "$WORK/job/metrics.csv" | wc -l)
    min_rows=20
fi
[ "$vol_rows" -gt $min_rows ] && ok "$MODE: the volunteer took part in $vol_rows rounds, across the requeue" \
    || bad "$MODE: volunteer took part in $vol_rows rounds: $(tail -3 "$WORK/vol.log")"
grep -q "the run ended" "$WORK/vol.log" && ok "the volunteer ended with the run" || bad "volunteer: $(tail -2 "$WORK/vol.log")"
[ $fails = 0 ] || { echo "--- job log"; tail -30 "$WORK/job.out"; }
echo "slurm hybrid: $fails failure(s)"
[ $fails = 0 ]
