#!/usr/bin/env bash
# Integration test of slurm/local-cluster.sh and of the Slurm features conflux relies on.
# Starts a private single-node cluster in a temporary directory (stopped again on exit),
# then checks: a batch job runs (sbatch --wait); `srun -n 2 -O` runs both tasks; a job
# submitted with --requeue --signal=B:USR1@N gets USR1 in its batch shell, is requeued
# by `scontrol requeue` and runs again with SLURM_RESTART_COUNT=1 (the preemption path
# of the trainer); the timed --signal=B:USR1@N arrives; an MPI hello runs under
# `srun --mpi=pmix -n 2 -O` (if mpicc exists); stop frees the ports.
# Prints ok:/FAIL:/SKIPPED: lines; exits non-zero on any failure; about 30-45 s.
# usage: tests/integration/test_slurm.sh [BUILD_DIR DATA_DIR]   (both unused)
set -u
set -o pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LC=$REPO_ROOT/slurm/local-cluster.sh
source "$REPO_ROOT/tests/lib.sh"   # skip, skip_check, free_ports

for t in munged mungekey slurmctld slurmd sbatch srun squeue scontrol scancel sinfo; do
    command -v "$t" >/dev/null 2>&1 ||
        skip "$t not installed (apt-get install slurm-wlm slurmctld slurmd slurm-client munge libpmix-dev)"
done
[[ $(id -u) == 0 ]] || skip "needs root (the local cluster runs munged, slurmctld and slurmd as root)"

T0=$SECONDS
fails=0
ok() { printf 'ok: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; fails=$((fails + 1)); }

# wait_for SECONDS CMD...: polls CMD every 0.1 s; 1 on timeout.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.1
    done
}

port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="$hex" 'FNR > 1 { n = split($2, a, ":"); if (a[n] == p && $4 == "0A") f = 1 }
                     END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# a free port pair (tests/lib.sh), never the default 16817/16818 of a developer's cluster
CTLD_PORT=$(free_ports)
SLURMD_PORT=$((CTLD_PORT + 1))

DIR=$(mktemp -d /tmp/conflux-slurm.XXXXXX) || { echo "FAIL: mktemp -d"; exit 1; }
WORK=$DIR/work
mkdir -p "$WORK" && chmod 755 "$WORK"

show_logs() {
    local f
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log "$DIR"/log/*.out; do
        [[ -s $f ]] || continue
        echo "--- last lines of $f ---"
        tail -n 20 "$f"
    done
}

cleanup() {
    local rc=$?
    trap - EXIT
    ((rc != 0)) && show_logs
    if timeout 90 "$LC" stop "$DIR" >"$WORK/stop-trap.log" 2>&1; then
        rm -rf "$DIR"
    else
        echo "FAIL: stopping the cluster on exit; left $DIR"
        cat "$WORK/stop-trap.log"
        rc=1
    fi
    echo "time: $((SECONDS - T0)) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- start -------------------------------------------------------------------------
if out=$(CONFLUX_SLURMCTLD_PORT=$CTLD_PORT CONFLUX_SLURMD_PORT=$SLURMD_PORT \
         timeout 120 "$LC" start "$DIR" 2>&1); then
    ok "cluster starts in $DIR (ports $CTLD_PORT/$SLURMD_PORT)"
else
    echo "$out"
    fail "local-cluster.sh start"
    exit 1
fi
if out=$(timeout 60 "$LC" start "$DIR" 2>&1) && [[ $out == *"already running"* ]]; then
    ok "start again: $out"
else
    fail "second start should say 'already running' and succeed: $out"
fi
if timeout 20 "$LC" status "$DIR" >"$WORK/status.txt" 2>&1 && grep -q 'idle' "$WORK/status.txt"; then
    ok "status: node idle"
else
    fail "status: $(cat "$WORK/status.txt")"
fi
eval "$(timeout 10 "$LC" env "$DIR")"
if [[ ${SLURM_CONF:-} == "$DIR/slurm.conf" ]]; then
    ok "env sets SLURM_CONF"
else
    fail "env: SLURM_CONF=${SLURM_CONF:-unset}"
    exit 1
fi
HOST=$(hostname -s)

# --- timed signal: --signal=B:USR1@N arrives in the batch shell --------------------
# slurmctld checks time limits every ~30 s, so this runs alongside the other checks
cat >"$WORK/timed.sh" <<EOF
#!/bin/bash
trap 'echo "got USR1 after \$SECONDS s" >>"$WORK/timed.log"; exit 0' USR1
echo started >>"$WORK/timed.log"
while [ \$SECONDS -lt 55 ]; do sleep 0.2 & wait \$!; done
echo "no USR1 within 55 s" >>"$WORK/timed.log"
EOF
TIMED_JOB=$(timeout 20 sbatch --parsable -J timed-signal --time=1 --signal=B:USR1@58 \
            -o "$WORK/timed.out" "$WORK/timed.sh" 2>&1)
if [[ $TIMED_JOB =~ ^[0-9]+$ ]]; then
    ok "sbatch --time=1 --signal=B:USR1@58 accepted (job $TIMED_JOB)"
else
    fail "sbatch --signal=B:USR1@58: $TIMED_JOB"
    TIMED_JOB=
fi

# --- srun -n 2 -O: more tasks than free CPUs, both must run --------------------------
# shellcheck disable=SC2016  # expanded by the task's shell
out=$(timeout 30 srun -J conflux-srun -n 2 -O --time=1 \
      bash -c 'echo "task $SLURM_PROCID of $SLURM_NTASKS on $(hostname -s)"' 2>"$WORK/srun.err" | sort)
if [[ $out == "task 0 of 2 on $HOST"$'\n'"task 1 of 2 on $HOST" ]]; then
    ok "srun -n 2 -O ran both tasks"
else
    fail "srun -n 2 -O: '$out' $(cat "$WORK/srun.err")"
fi

# --- a batch job ---------------------------------------------------------------------
# (sbatch --wait looks after 2 s, then 8 s later: a job that misses the first look takes 10 s)
cat >"$WORK/batch.sh" <<EOF
#!/bin/bash
#SBATCH -J conflux-batch
#SBATCH --time=1
echo "job \$SLURM_JOB_ID on \$(hostname -s)" >"$WORK/batch.txt"
EOF
t=$SECONDS
if job=$(timeout 30 sbatch --wait --parsable -o "$WORK/batch.out" "$WORK/batch.sh" 2>&1) &&
   [[ $(cat "$WORK/batch.txt" 2>/dev/null) == "job $job on $HOST" ]]; then
    ok "sbatch --wait: job $job wrote 'job $job on $HOST' ($((SECONDS - t)) s)"
else
    fail "sbatch --wait batch job: '$job', file: '$(cat "$WORK/batch.txt" 2>/dev/null)'"
fi

# --- requeue: USR1 to the batch shell, scontrol requeue, second run --------------------
cat >"$WORK/requeue.sh" <<EOF
#!/bin/bash
LOG=$WORK/requeue.log
n=\${SLURM_RESTART_COUNT:-0}
echo "run \$n job \$SLURM_JOB_ID" >>"\$LOG"
if [ "\$n" -ge 1 ]; then
    echo "restart \$n" >>"\$LOG"
    exit 0
fi
trap 'echo "got USR1" >>"\$LOG"' USR1
trap 'echo "got TERM" >>"\$LOG"; exit 143' TERM
echo ready >>"\$LOG"
while [ \$SECONDS -lt 60 ]; do sleep 0.2 & wait \$!; done
echo "first run was not requeued within 60 s" >>"\$LOG"
EOF
RQ_LOG=$WORK/requeue.log
log_has() { grep -qx "$1" "$RQ_LOG" 2>/dev/null; }
job_field() { timeout 10 scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -n 1; }
job_completed() { [[ $(job_field "$1" JobState) == JobState=COMPLETED ]]; }
t=$SECONDS
RQ_JOB=$(timeout 20 sbatch --parsable -J conflux-requeue --requeue --signal=B:USR1@30 --time=2 \
         --open-mode=append -o "$WORK/requeue.out" "$WORK/requeue.sh" 2>&1)
if ! [[ $RQ_JOB =~ ^[0-9]+$ ]]; then
    fail "sbatch --requeue --signal=B:USR1@30: $RQ_JOB"
elif [[ $(job_field "$RQ_JOB" Requeue) != Requeue=1 ]]; then
    fail "job $RQ_JOB: $(job_field "$RQ_JOB" Requeue), want Requeue=1"
elif ! wait_for 30 log_has ready; then
    fail "requeue job $RQ_JOB did not start within 30 s ($(job_field "$RQ_JOB" JobState))"
else
    ok "sbatch --requeue --signal=B:USR1@30 accepted; job $RQ_JOB running"
    if timeout 10 scancel --batch --signal=USR1 "$RQ_JOB" && wait_for 10 log_has "got USR1"; then
        ok "batch shell of job $RQ_JOB trapped USR1 (scancel --batch --signal=USR1)"
    else
        fail "batch shell of job $RQ_JOB did not get USR1"
    fi
    if ! timeout 10 scontrol requeue "$RQ_JOB"; then
        fail "scontrol requeue $RQ_JOB"
    elif wait_for 40 log_has "restart 1" &&
         wait_for 10 job_completed "$RQ_JOB"; then
        want=$(printf '%s\n' "run 0 job $RQ_JOB" ready "got USR1" "got TERM" "run 1 job $RQ_JOB" "restart 1")
        if [[ $(cat "$RQ_LOG") == "$want" ]] && [[ $(job_field "$RQ_JOB" Restarts) == Restarts=1 ]]; then
            ok "scontrol requeue: first run got TERM, second run saw SLURM_RESTART_COUNT=1 ($((SECONDS - t)) s)"
        else
            fail "requeue log of job $RQ_JOB: $(tr '\n' '|' <"$RQ_LOG") $(job_field "$RQ_JOB" Restarts)"
        fi
    else
        fail "job $RQ_JOB did not run again after requeue: $(job_field "$RQ_JOB" JobState) $(job_field "$RQ_JOB" Reason); log: $(tr '\n' '|' <"$RQ_LOG")"
    fi
fi

# --- MPI hello under srun --mpi=pmix, inside a batch allocation ----------------------
if ! command -v mpicc >/dev/null 2>&1; then
    skip_check "MPI hello under srun --mpi=pmix (no mpicc; apt-get install openmpi-bin libopenmpi-dev)"
else
    cat >"$WORK/mpi_hello.c" <<'EOF'
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int rank, size, sum = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int mine = rank + 1;
    MPI_Allreduce(&mine, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("hello rank %d of %d sum %d\n", rank, size, sum);
    MPI_Finalize();
    return 0;
}
EOF
    if ! mpicc -o "$WORK/mpi_hello" "$WORK/mpi_hello.c" >"$WORK/mpicc.log" 2>&1; then
        fail "mpicc: $(cat "$WORK/mpicc.log")"
    else
        cat >"$WORK/mpi.sh" <<EOF
#!/bin/bash
#SBATCH -J conflux-mpi
#SBATCH -n 2
#SBATCH -O
#SBATCH --time=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi OMPI_MCA_mpi_yield_when_idle=1
srun --mpi=pmix -n 2 -O "$WORK/mpi_hello"
EOF
        t=$SECONDS
        timeout 40 sbatch --wait -o "$WORK/mpi.out" "$WORK/mpi.sh" >/dev/null 2>&1
        rc=$?
        out=$(grep '^hello' "$WORK/mpi.out" 2>/dev/null | sort)
        if [[ $out == "hello rank 0 of 2 sum 3"$'\n'"hello rank 1 of 2 sum 3" ]]; then
            ok "MPI hello: 2 ranks under srun --mpi=pmix -n 2 -O, allreduce sum 3 ($((SECONDS - t)) s)"
        else
            fail "MPI hello (sbatch rc $rc): $(cat "$WORK/mpi.out" 2>/dev/null)"
        fi
    fi
fi

# --- the timed signal ------------------------------------------------------------------
if [[ -n $TIMED_JOB ]]; then
    if wait_for 45 grep -q '^got USR1' "$WORK/timed.log"; then
        ok "--signal=B:USR1@58 arrived in the batch shell: $(grep '^got' "$WORK/timed.log")"
    else
        fail "--signal=B:USR1@58 did not arrive: $(tr '\n' '|' <"$WORK/timed.log" 2>/dev/null)"
    fi
fi

# --- stop --------------------------------------------------------------------------
if timeout 90 "$LC" stop "$DIR" >"$WORK/stop.log" 2>&1 &&
   ! timeout 20 "$LC" status "$DIR" >/dev/null 2>&1 &&
   ! port_listening "$CTLD_PORT" && ! port_listening "$SLURMD_PORT"; then
    ok "stop: daemons gone, ports $CTLD_PORT/$SLURMD_PORT free"
else
    fail "stop: $(cat "$WORK/stop.log")"
fi

if ((fails > 0)); then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all Slurm checks passed"
