#!/usr/bin/env bash
# SwAV under Slurm: `sbatch slurm/baseline.sbatch` with CONFLUX_BIN=conflux-swav on a local
# Slurm cluster (slurm/local-cluster.sh): the job trains a tiny SwAV model on 2 ranks (srun
# --mpi=pmix), receives the time-limit warning (SIGUSR1 via scancel --signal), checkpoints,
# requeues, resumes and finishes; its final parameters equal, bit for bit, those of an
# uninterrupted 2-rank mpirun run of the same configuration.
# usage: tests/integration/test_slurm_swav.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
BIN=$(cd "$BUILD/bin" && pwd)
source tests/lib.sh
for cmd in slurmctld slurmd sbatch munged mpirun h5diff; do
    command -v $cmd >/dev/null || skip "$cmd not installed"
done
[ "$(id -u)" = 0 ] || skip "needs root (the local cluster runs munged, slurmctld and slurmd as root)"
[ -f "$DATA/fashion/train.h5" ] || skip "no image shards in $DATA/fashion (make fashion-mnist)"
DATA=$(cd "$DATA" && pwd)
WORK=$(mktemp -d)
chmod 755 "$WORK"
CL=$WORK/cluster
SP=$(free_ports)
export CONFLUX_SLURMCTLD_PORT=$SP CONFLUX_SLURMD_PORT=$((SP + 1))
trap 'slurm/local-cluster.sh stop "$CL" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

slurm/local-cluster.sh start "$CL" || { echo "FAIL: cannot start the local Slurm cluster"; exit 1; }
eval "$(slurm/local-cluster.sh env "$CL")"

ARGS=(--set data.train="$DATA/fashion/train.h5" --set data.valid=''
      --set model.stages=2 --set model.width1=8 --set model.width2=16 --set model.head_hidden=32
      --set model.out_dim=16 --set model.prototypes=20 --set augment.n_small=2
      --set train.global_batch=8 --set train.micro_batch=2 --set train.steps=150
      --set train.log_every=50 --set train.threads=1 --set swav.freeze_prototypes_steps=10)

mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/conflux-swav" "${ARGS[@]}" -q \
    --set run.dir="$WORK/ref" || bad "reference run failed"

jid=$(CONFLUX_BIN="$BIN/conflux-swav" CONFLUX_RUN_DIR="$WORK/job" \
      sbatch --parsable --ntasks=2 --output="$WORK/job.out" slurm/baseline.sbatch "${ARGS[@]}")
[ -n "$jid" ] && ok "submitted job $jid" || { bad "sbatch failed"; exit 1; }
rows() { [ -f "$WORK/job/metrics.csv" ] && [ "$(wc -l < "$WORK/job/metrics.csv")" -gt "$1" ]; }
if waitfor 90 rows 20; then
    scancel --signal=USR1 "$jid" && ok "sent SIGUSR1 (the time-limit warning) at step $(tail -1 "$WORK/job/metrics.csv" | cut -d, -f2)"
else
    bad "the job did not start training: $(tail -5 "$WORK/job.out" 2>/dev/null)"
fi
finished() { [ -f "$WORK/job/finished" ] && ! squeue -h -j "$jid" 2>/dev/null | grep -q .; }
waitfor 180 finished && ok "the job finished" || bad "the job did not finish: $(squeue -j "$jid"; tail -5 "$WORK/job.out")"
grep -q "requeueing job $jid" "$WORK/job.out" && ok "it checkpointed and requeued itself" || bad "no requeue in the job log"
grep -q "resumes from checkpoint-" "$WORK/job.out" && ok "the requeued job resumed" || bad "the requeued job did not resume"
if h5diff -q "$WORK/ref/checkpoint-000150.h5" "$WORK/job/checkpoint-000150.h5" /params /params; then
    ok "SwAV: signalled + requeued + resumed Slurm job == uninterrupted mpirun run, bit for bit"
else
    bad "final parameters differ from the uninterrupted run"
fi
[ $fails = 0 ] || { echo "--- job log"; cat "$WORK/job.out"; }
[ $fails = 0 ] && echo "all Slurm SwAV tests passed" || echo "$fails Slurm SwAV test(s) failed"
[ $fails = 0 ]
