#!/usr/bin/env bash
# A real `sbatch slurm/baseline.sbatch` on a local Slurm cluster (slurm/local-cluster.sh):
# the job trains on 2 ranks (srun --mpi=pmix), receives the warning signal Slurm sends
# before a time limit (SIGUSR1, delivered here with scancel --signal), checkpoints at the
# step boundary, requeues itself, resumes from its run directory and finishes. Its final
# parameters must equal, bit for bit, those of an uninterrupted 2-rank mpirun run of the
# same configuration (same ranks, same data split, same arithmetic; resume is exact).
# usage: tests/integration/test_slurm_baseline.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
BIN=$(cd "$BUILD/bin" && pwd)
source tests/lib.sh
for cmd in slurmctld slurmd sbatch munged mpirun h5diff; do
    command -v $cmd >/dev/null || skip "$cmd not installed"
done
[ "$(id -u)" = 0 ] || skip "needs root (the local cluster runs munged, slurmctld and slurmd as root)"
[ -f "$DATA/shards/train.h5" ] || skip "no token shards in $DATA/shards"
DATA=$(cd "$DATA" && pwd)
WORK=$(mktemp -d)
chmod 755 "$WORK"  # munged needs every directory above its socket searchable
CL=$WORK/cluster
# free ports of our own, so this test never meets another local cluster or test
SP=$(free_ports)
export CONFLUX_SLURMCTLD_PORT=$SP CONFLUX_SLURMD_PORT=$((SP + 1))
trap 'slurm/local-cluster.sh stop "$CL" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

slurm/local-cluster.sh start "$CL" || { echo "FAIL: cannot start the local Slurm cluster"; exit 1; }
eval "$(slurm/local-cluster.sh env "$CL")"

ARGS=("${TINY_MODEL[@]}" --set train.global_batch=8 --set train.micro_batch=2
      --set train.eval_every=0 --set train.steps=300 --set train.log_every=50)

# the uninterrupted reference
mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/conflux-train" "${ARGS[@]}" -q \
    --set run.dir="$WORK/ref" || bad "reference run failed"

# the batch job
jid=$(CONFLUX_BIN="$BIN/conflux-train" CONFLUX_RUN_DIR="$WORK/job" \
      sbatch --parsable --ntasks=2 --output="$WORK/job.out" slurm/baseline.sbatch "${ARGS[@]}")
[ -n "$jid" ] && ok "submitted job $jid" || { bad "sbatch failed"; exit 1; }
rows() { [ -f "$WORK/job/metrics.csv" ] && [ "$(wc -l < "$WORK/job/metrics.csv")" -gt "$1" ]; }
if waitfor 90 rows 30; then
    scancel --signal=USR1 "$jid" && ok "sent SIGUSR1 (the time-limit warning) at step $(tail -1 "$WORK/job/metrics.csv" | cut -d, -f2)"
else
    bad "the job did not start training: $(tail -5 "$WORK/job.out" 2>/dev/null)"
fi
finished() { [ -f "$WORK/job/finished" ] && ! squeue -h -j "$jid" 2>/dev/null | grep -q .; }
waitfor 180 finished && ok "the job finished" || bad "the job did not finish: $(squeue -j "$jid"; tail -5 "$WORK/job.out")"
grep -q "requeueing job $jid" "$WORK/job.out" && ok "it checkpointed and requeued itself" \
    || bad "no requeue in the job log"
grep -q "resumes from checkpoint-" "$WORK/job.out" && ok "the requeued job resumed: $(grep 'resumes from' "$WORK/job.out" | head -1)" \
    || bad "the requeued job did not resume"
grep -q '"launcher": *"srun"' "$WORK/job/run.json" && ok "run.json records srun" || bad "run.json launcher"
if h5diff -q "$WORK/ref/checkpoint-000300.h5" "$WORK/job/checkpoint-000300.h5" /params /params; then
    ok "signalled + requeued + resumed job == uninterrupted run, bit for bit"
else
    bad "final parameters differ from the uninterrupted run"
fi
[ $fails = 0 ] || { echo "--- job log"; cat "$WORK/job.out"; }
[ $fails = 0 ] && echo "all Slurm baseline tests passed" || echo "$fails Slurm baseline test(s) failed"
[ $fails = 0 ]
