#!/usr/bin/env bash
# Starts and stops a private single-node Slurm cluster (munged, slurmctld, slurmd) on
# this machine, as root and without systemd, for tests and for trying conflux on one
# machine. Everything it writes (munge key and socket, slurm.conf, state and spool
# directories, pid and log files) lives under one directory, and the daemons listen on
# private ports, so it does not touch /etc/slurm, /etc/munge or a system cluster.
#
#   slurm/local-cluster.sh start  [DIR]   start (or finish starting) the cluster
#   slurm/local-cluster.sh stop   [DIR]   cancel its jobs, stop the daemons, free the ports
#   slurm/local-cluster.sh status [DIR]   show the daemons and the node
#   slurm/local-cluster.sh env    [DIR]   print `export SLURM_CONF=...` for eval
#
# DIR defaults to build/slurm under the repository root. Run `--help` for the settings
# that environment variables override. Exit status: 0 success, 1 failure, 2 usage error.
set -u
set -o pipefail

PROG=local-cluster
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEFAULT_DIR=$REPO_ROOT/build/slurm

CTLD_PORT=${CONFLUX_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${CONFLUX_SLURMD_PORT:-16818}
START_TIMEOUT=${CONFLUX_SLURM_START_TIMEOUT:-30}   # seconds, per daemon
STOP_TIMEOUT=${CONFLUX_SLURM_STOP_TIMEOUT:-45}     # seconds; a job ignoring SIGTERM takes KillWait (30 s)
CLUSTER_NAME=${CONFLUX_SLURM_CLUSTER:-conflux}
# job credential lifetime; a requeued job also waits this long before it may start again
# (Slurm's default, 120 s, makes requeue tests crawl; Slurm's minimum is 5)
CRED_EXPIRE=${CONFLUX_SLURM_CRED_EXPIRE:-10}

usage() {
    cat <<EOF
usage: slurm/local-cluster.sh start|stop|status|env [DIR]
       slurm/local-cluster.sh --help

Runs a private single-node Slurm cluster (munged, slurmctld, slurmd) as root, without
systemd. Everything lives under DIR (default: build/slurm under the repository root).

  start [DIR]    write DIR/slurm.conf and a munge key, start munged, slurmctld and
                 slurmd, and wait until the node is idle. Succeeds if already running.
  stop [DIR]     cancel the cluster's jobs, stop the daemons (via their pid files),
                 wait until they have exited and the ports are free.
  status [DIR]   show each daemon and the node; exit 0 only if all are up.
  env [DIR]      print 'export SLURM_CONF=DIR/slurm.conf'. Then use sbatch, srun,
                 squeue, scontrol as usual:  eval "\$(slurm/local-cluster.sh env)"

Environment (read by start; stop/status/env read the ports from DIR/slurm.conf):
  CONFLUX_SLURMCTLD_PORT       slurmctld port        (default 16817)
  CONFLUX_SLURMD_PORT          slurmd port           (default 16818)
  CONFLUX_SLURM_START_TIMEOUT  seconds to wait for each daemon   (default 30)
  CONFLUX_SLURM_STOP_TIMEOUT   seconds to wait for cancelled jobs (default 45;
                               a job that ignores SIGTERM is killed after 30 s)
  CONFLUX_SLURM_CLUSTER        ClusterName           (default conflux)
  CONFLUX_SLURM_CRED_EXPIRE    job credential lifetime, also how long a requeued job
                               waits before it runs again (default 10; Slurm's is 120)

Needs (Debian): slurm-wlm slurmctld slurmd slurm-client munge libpmix-dev
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    printf 'usage: slurm/local-cluster.sh start|stop|status|env [DIR]  (--help for more)\n' >&2
    exit 2
}
say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }

# set_paths DIR: every path the cluster uses.
set_paths() {
    DIR=$1
    CONF=$DIR/slurm.conf
    MUNGE_DIR=$DIR/munge
    MUNGE_KEY=$MUNGE_DIR/munge.key
    MUNGE_SOCK=$MUNGE_DIR/munge.socket.2
    RUN_DIR=$DIR/run
    LOG_DIR=$DIR/log
    STATE_DIR=$DIR/state
    SPOOL_DIR=$DIR/spool
    TMP_DIR=$DIR/tmp
}
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
out_file() { printf '%s/%s.out' "$LOG_DIR" "$1"; }   # a daemon's stdout/stderr

# is_ours PID NAME: PID is a live (not zombie) NAME whose command line names this DIR.
# Pid files can be stale (daemon killed, machine rebooted, pid reused), so the pid
# alone proves nothing. Zombies count as gone: orphaned daemons are not always reaped.
is_ours() {
    local pid=$1 name=$2 stat comm cmdline
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$DIR/"* ]]
}

# daemon_pid NAME: prints the pid of this cluster's NAME if it runs; 1 otherwise.
# Reads the pid file; without a valid one, looks for a NAME process whose command line
# names DIR (pid files deleted under a running daemon, or a daemon still starting up).
daemon_pid() {
    local f pid p
    f=$(pid_file "$1")
    if [[ -r $f ]] && read -r pid <"$f" 2>/dev/null && is_ours "$pid" "$1"; then
        printf '%s\n' "$pid"
        return 0
    fi
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        if [[ $(cat "$p/comm" 2>/dev/null) == "$1" ]] && is_ours "$pid" "$1"; then
            printf '%s\n' "$pid"
            return 0
        fi
    done
    return 1
}

# clear_stale NAME: removes NAME's pid file when it does not name a live daemon.
clear_stale() {
    local f
    f=$(pid_file "$1")
    if [[ -e $f ]] && ! daemon_pid "$1" >/dev/null; then
        rm -f "$f"
    fi
}

# port_listening PORT: some process listens on TCP PORT (IPv4 or IPv6).
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p="$hex" 'FNR > 1 { n = split($2, a, ":"); if (a[n] == p && $4 == "0A") f = 1 }
                     END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# port_clash PORT VAR: the error for a port someone else listens on.
port_clash() {
    local who=""
    command -v ss >/dev/null 2>&1 &&
        who=$(ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1)
    die "port $1 is in use${who:+ by $who} (another cluster? stop it, or set $2)"
}

# poll SECONDS CMD...: runs CMD every 0.2 s until it succeeds; 1 on timeout.
poll() {
    local deadline=$((SECONDS + $1)); shift
    while :; do
        "$@" && return 0
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
}

# log_hint NAME...: the files to look at when NAME failed.
log_hint() {
    local n s=""
    for n in "$@"; do s+="$(log_file "$n") $(out_file "$n") "; done
    printf 'see %s' "${s% }"
}

# show_tail NAME: the last lines of NAME's log and captured output, on stderr.
show_tail() {
    local f
    for f in "$(log_file "$1")" "$(out_file "$1")"; do
        [[ -s $f ]] || continue
        printf -- '--- last lines of %s ---\n' "$f" >&2
        tail -n 15 "$f" >&2
    done
}

conf_value() {   # conf_value KEY: KEY's value in DIR/slurm.conf
    sed -n "s/^$1=//p" "$CONF" 2>/dev/null | head -n 1
}

need_tools() {
    local t missing=()
    for t in munged mungekey munge unmunge slurmctld slurmd sinfo scontrol squeue scancel; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ((${#missing[@]} == 0)) ||
        die "missing ${missing[*]} (apt-get install slurm-wlm slurmctld slurmd slurm-client munge libpmix-dev)"
}

# check_searchable DIR: munged refuses a socket below a directory that is not
# executable by all ("Socket is inaccessible"); say so before it does.
check_searchable() {
    local d=$1 mode
    while [[ $d != / && -n $d ]]; do
        mode=$(stat -c '%A' "$d") || die "cannot stat $d"
        [[ ${mode:9:1} == [xt] ]] ||
            die "munged needs every directory above its socket to be searchable by all; $d is $mode (chmod o+x $d, or pick another DIR)"
        d=$(dirname "$d")
    done
}

write_conf() {
    local node=$1 cpus mem tmp
    cpus=$(nproc) || die "nproc failed"
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
    [[ $mem =~ ^[0-9]+$ ]] || die "cannot read RealMemory from 'slurmd -C'"
    mem=$((mem > 2048 ? mem - 1024 : mem / 2))
    tmp=$CONF.tmp.$$
    cat >"$tmp" <<EOF
# Written by slurm/local-cluster.sh: a private single-node cluster for tests and demos.
# Everything lives under $DIR. Use it with: eval "\$(slurm/local-cluster.sh env $DIR)"
ClusterName=$CLUSTER_NAME
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=$CRED_EXPIRE
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$(log_file slurmctld)
SlurmdLogFile=$(log_file slurmd)
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$TMP_DIR
# no cgroups here (no systemd, container): track processes by parent pid, bind nothing
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# schedule at once: sweep the queue every second (default 60 s: a requeued job, eligible
# again cred_expire+1 s later, waits for that sweep) and do not batch job starts (3 s)
SchedulerParameters=sched_interval=1,batch_sched_delay=0
# Debian's Open MPI speaks PMIx only (srun --mpi=pmi2 fails)
MpiDefault=pmix
ReturnToService=2
MailProg=/bin/true
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    mv -f "$tmp" "$CONF" || die "cannot write $CONF"
}

munge_works() {
    munge -n -S "$MUNGE_SOCK" 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1
}
ctld_responds() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { timeout 5 sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1; }
node_idle() {
    local s
    s=$(node_state "$1")
    [[ $s == idle || $s == mixed || $s == allocated ]]
}

start_munged() {
    if daemon_pid munged >/dev/null; then return 0; fi
    clear_stale munged
    if [[ ! -s $MUNGE_KEY ]]; then
        mungekey -c -b 1024 -k "$MUNGE_KEY" >/dev/null 2>"$(out_file munged)" ||
            { show_tail munged; die "mungekey failed ($MUNGE_KEY)"; }
    fi
    chmod 400 "$MUNGE_KEY"
    munged --socket="$MUNGE_SOCK" --key-file="$MUNGE_KEY" --pid-file="$(pid_file munged)" \
        --seed-file="$MUNGE_DIR/munged.seed" --log-file="$(log_file munged)" \
        </dev/null >"$(out_file munged)" 2>&1 ||
        { show_tail munged; die "munged did not start ($(log_hint munged))"; }
    poll "$START_TIMEOUT" munge_works ||
        { show_tail munged; die "munged does not answer on $MUNGE_SOCK ($(log_hint munged))"; }
}

start_slurmctld() {
    if daemon_pid slurmctld >/dev/null; then return 0; fi
    clear_stale slurmctld
    port_listening "$CTLD_PORT" &&
        port_clash "$CTLD_PORT" CONFLUX_SLURMCTLD_PORT
    # -i: recover what it can from DIR/state and ignore the rest
    slurmctld -i -f "$CONF" </dev/null >"$(out_file slurmctld)" 2>&1 ||
        { show_tail slurmctld; die "slurmctld did not start ($(log_hint slurmctld))"; }
    poll "$START_TIMEOUT" ctld_responds ||
        { show_tail slurmctld; die "slurmctld does not answer on port $CTLD_PORT ($(log_hint slurmctld))"; }
}

start_slurmd() {
    local node=$1
    if daemon_pid slurmd >/dev/null; then return 0; fi
    clear_stale slurmd
    port_listening "$SLURMD_PORT" &&
        port_clash "$SLURMD_PORT" CONFLUX_SLURMD_PORT
    slurmd -f "$CONF" -N "$node" </dev/null >"$(out_file slurmd)" 2>&1 ||
        { show_tail slurmd; die "slurmd did not start ($(log_hint slurmd))"; }
}

cmd_start() {
    local node up=0 n state
    need_tools
    [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root; daemons run as root)"
    [[ $CTLD_PORT =~ ^[0-9]+$ && $SLURMD_PORT =~ ^[0-9]+$ && $CTLD_PORT != "$SLURMD_PORT" ]] ||
        die "bad ports: CONFLUX_SLURMCTLD_PORT=$CTLD_PORT CONFLUX_SLURMD_PORT=$SLURMD_PORT"
    # a UNIX socket path holds at most 107 bytes; slurmd's PMIx sockets sit in the spool
    ((${#MUNGE_SOCK} < 90)) || die "directory path too long for UNIX sockets ($DIR)"
    mkdir -p "$DIR" "$MUNGE_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR" "$TMP_DIR" ||
        die "cannot create directories ($DIR)"
    chmod 755 "$DIR" "$MUNGE_DIR" "$RUN_DIR" "$LOG_DIR" || die "cannot chmod ($DIR)"
    chmod 700 "$STATE_DIR" "$SPOOL_DIR"
    chmod 1777 "$TMP_DIR"
    check_searchable "$MUNGE_DIR"

    for n in munged slurmctld slurmd; do
        daemon_pid "$n" >/dev/null && up=$((up + 1))
    done
    if daemon_pid slurmctld >/dev/null || daemon_pid slurmd >/dev/null; then
        # keep the configuration the running daemons read
        [[ -s $CONF ]] || die "daemons run but $CONF is missing; stop them first ($DIR)"
        CTLD_PORT=$(conf_value SlurmctldPort)
        SLURMD_PORT=$(conf_value SlurmdPort)
        node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$CONF" | head -n 1)
    else
        node=$(hostname -s) || die "hostname -s failed"
        # check before anything starts, so that a clash leaves nothing half-started
        port_listening "$CTLD_PORT" &&
            port_clash "$CTLD_PORT" CONFLUX_SLURMCTLD_PORT
        port_listening "$SLURMD_PORT" &&
            port_clash "$SLURMD_PORT" CONFLUX_SLURMD_PORT
        write_conf "$node"
    fi
    export SLURM_CONF=$CONF
    if ((up == 3)) && node_idle "$node"; then
        say "already running ($DIR; node $node $(node_state "$node"), ports $CTLD_PORT/$SLURMD_PORT)"
        return 0
    fi

    start_munged
    start_slurmctld
    start_slurmd "$node"
    if ! poll "$START_TIMEOUT" node_idle "$node"; then
        state=$(node_state "$node")
        show_tail slurmd
        show_tail slurmctld
        daemon_pid slurmd >/dev/null || state="${state:-unknown}, slurmd exited"
        die "node $node is not idle after ${START_TIMEOUT}s (state: ${state:-unknown}; $(log_hint slurmd slurmctld))"
    fi
    say "running ($DIR; node $node, $(nproc) CPUs, ports $CTLD_PORT/$SLURMD_PORT)"
    say "use it with: eval \"\$($0 env $DIR)\""
}

# stop_daemon NAME: TERM, wait, then KILL; fails if it will not go.
stop_daemon() {
    local name=$1 pid
    pid=$(daemon_pid "$name") || { clear_stale "$name"; return 0; }
    kill -TERM "$pid" 2>/dev/null
    if ! poll 15 eval "! is_ours $pid $name"; then
        warn "$name (pid $pid) ignored SIGTERM for 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null
        poll 5 eval "! is_ours $pid $name" || { warn "$name (pid $pid) does not die"; return 1; }
    fi
    rm -f "$(pid_file "$name")"
}

no_jobs_left() { [[ -z $(timeout 5 squeue -h -o %A 2>/dev/null) ]]; }

# our_stepds: slurmstepd processes started by this cluster's slurmd (they inherit its
# SLURM_CONF). They outlive slurmd if their jobs were not cancelled.
our_stepds() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] || continue
        { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$CONF" || continue
        printf '%s\n' "${p#/proc/}"
    done
}

cmd_stop() {
    local jobs pids failed=0 n port
    if ! [[ -d $DIR ]]; then
        say "not running (no $DIR)"
        return 0
    fi
    export SLURM_CONF=$CONF
    if daemon_pid slurmctld >/dev/null && ctld_responds; then
        jobs=$(timeout 5 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            say "cancelling jobs: $jobs"
            # Slurm sends SIGTERM, then SIGKILL KillWait (30 s) later to jobs that ignore it
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null
            poll "$STOP_TIMEOUT" no_jobs_left ||
                warn "jobs still listed after ${STOP_TIMEOUT}s: $(timeout 5 squeue -h -o %A | tr '\n' ' ')"
        fi
    fi
    for n in slurmd slurmctld munged; do
        stop_daemon "$n" || failed=1
    done
    pids=$(our_stepds)
    if [[ -n $pids ]]; then
        warn "killing leftover slurmstepd processes: ${pids//$'\n'/ }"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
    fi
    for port in $(conf_value SlurmctldPort) $(conf_value SlurmdPort); do
        poll 10 eval "! port_listening $port" || { warn "port $port is still in use"; failed=1; }
    done
    ((failed == 0)) || die "some daemons or ports did not stop ($(log_hint slurmd slurmctld munged))"
    say "stopped ($DIR)"
}

cmd_status() {
    local n pid all=1 node
    for n in munged slurmctld slurmd; do
        if pid=$(daemon_pid "$n"); then
            printf '%-10s running (pid %s)\n' "$n" "$pid"
        else
            printf '%-10s stopped%s\n' "$n" "$([[ -e $(pid_file "$n") ]] && echo ' (stale pid file)')"
            all=0
        fi
    done
    if [[ -s $CONF ]] && daemon_pid slurmctld >/dev/null; then
        export SLURM_CONF=$CONF
        node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$CONF" | head -n 1)
        printf 'node       %s %s\n' "$node" "$(node_state "$node")"
        printf 'ports      %s/%s\n' "$(conf_value SlurmctldPort)" "$(conf_value SlurmdPort)"
        printf 'SLURM_CONF %s\n' "$CONF"
        node_idle "$node" || all=0
    fi
    ((all == 1))
}

cmd_env() {
    [[ -s $CONF ]] || die "no cluster configured in $DIR (run: slurm/local-cluster.sh start${1:+ $DIR})"
    printf 'export SLURM_CONF=%q\n' "$CONF"
}

main() {
    local cmd dir
    (($# >= 1)) || usage_die "missing command"
    cmd=$1; shift
    case $cmd in
        -h|--help|help) usage; exit 0 ;;
        start|stop|status|env) ;;
        *) usage_die "unknown command '$cmd'" ;;
    esac
    (($# <= 1)) || usage_die "too many arguments"
    [[ ${1:-} != -* ]] || usage_die "unknown option '$1'"
    dir=${1:-$DEFAULT_DIR}
    [[ -n $dir ]] || usage_die "empty DIR"
    dir=$(realpath -m -- "$dir") || die "bad directory ($1)"
    [[ $dir != / ]] || usage_die "DIR must not be /"
    set_paths "$dir"
    "cmd_$cmd" "$@"
}

main "$@"
