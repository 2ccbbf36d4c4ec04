# tests/wan.sh: emulated WAN links for the integration tests (source it; needs bash >= 4.3).
# shellcheck shell=bash
#
# A link ID (1..254) is a network namespace cxv$ID (the "volunteer") joined to the root
# namespace by tests/tool_linkemu, which relays Ethernet frames between TAP cxa$ID (root
# namespace, 10.77.$ID.1/24) and TAP cxb$ID (in cxv$ID, 10.77.$ID.2/24, default route via
# 10.77.$ID.1), applying delay, jitter, loss and rate limits per direction. The kernel here
# has no netem (see shared/MACHINE-NOTES.md, "WAN emulation"), hence the user-space relay.
#
#   wan_available                 0 when root, /dev/net/tun and `ip netns` work; otherwise 1
#                                 and WAN_SKIP_REASON says why (the caller prints SKIPPED)
#   wan_link_up ID DELAY_MS JITTER_MS LOSS_PCT UP_MBIT DOWN_MBIT
#                                 DELAY_MS is the round-trip time added, split evenly: each
#                                 direction is delayed DELAY_MS/2. JITTER_MS likewise: each
#                                 direction varies uniformly within +-JITTER_MS/2, so the RTT
#                                 stays within DELAY_MS +- JITTER_MS (frames are never
#                                 reordered). LOSS_PCT is the loss of EACH direction (a ping
#                                 round trip is lost with 1-(1-p)^2). UP = volunteer upload
#                                 (namespace -> root), DOWN = root -> namespace; Mbit/s of
#                                 Ethernet frames, 0 = unlimited. Decimals are accepted.
#                                 Returns once a ping crosses (not waited for at 100% loss);
#                                 1 with a message on failure, nothing left behind.
#   wan_exec ID CMD...            runs CMD in namespace cxv$ID
#   wan_cut ID / wan_restore ID   cut the link (everything dropped both ways) / restore it;
#                                 return once the emulator has acknowledged the signal
#   wan_link_down ID              stops the emulator (its counters go to stderr, prefixed
#                                 "[wan ID]", unless WAN_QUIET=1), deletes the namespace
#   wan_cleanup                   wan_link_down for every link this shell brought up: call it
#                                 from `trap ... EXIT`
#   wan_log ID                    path of the emulator's log (config lines, signal
#                                 acknowledgements, and after wan_link_down the counters)
#
# The functions work under `set -euo pipefail` in the caller and return non-zero only on
# failure (with a "wan: error: ..." line on stderr).
#
# Callers set BUILD (the emulator is $BUILD/tests/tools/tool_linkemu). Optional: WAN_SEED (seed of
# the loss/jitter generators; default the ID), WAN_EMU_ARGS (more emulator options, e.g.
# "--queue-ms 50"), WAN_UP_TIMEOUT (seconds to wait for the first ping; default 10),
# WAN_STATE_DIR (pid files and logs; default /run/conflux-wan), WAN_QUIET.
#
# Call wan_link_up in the shell that will call wan_cleanup, not in a pipeline or $(...): the
# emulator runs with --die-with-parent (it exits if that shell dies, even by SIGKILL) and
# the shell keeps the list of its links. A namespace or TAP of the same name left over by
# a dead run is removed first; a link whose emulator is still running is refused.

declare -gA WAN_PIDS=()
WAN_SKIP_REASON=

_wan_err() { echo "wan: error: $*" >&2; }
_wan_dir() { echo "${WAN_STATE_DIR:-/run/conflux-wan}"; }

# _wan_alive PID: the process exists and is a tool_linkemu (not a recycled pid)
_wan_alive() {
    [[ -n $1 ]] && kill -0 "$1" 2>/dev/null &&
        [[ $(cat "/proc/$1/comm" 2>/dev/null) == tool_linkemu ]]
}

# _wan_pid ID: the emulator pid of link ID (this shell's, else the pid file's)
_wan_pid() {
    local pid=${WAN_PIDS[$1]:-}
    [[ -z $pid && -f $(_wan_dir)/$1.pid ]] && pid=$(<"$(_wan_dir)/$1.pid")
    echo "$pid"
}

_wan_check_id() {
    [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 254)) && return 0
    _wan_err "link ID must be an integer in 1..254, got '$1'"
    return 1
}

wan_available() {
    WAN_SKIP_REASON=
    if [[ $(id -u) != 0 ]]; then
        WAN_SKIP_REASON="needs root (network namespaces and TAP devices)"
    elif [[ ! -c /dev/net/tun ]]; then
        WAN_SKIP_REASON="no /dev/net/tun (TUN/TAP driver missing)"
    elif ! command -v ip >/dev/null 2>&1; then
        WAN_SKIP_REASON="no 'ip' command (apt-get install iproute2)"
    else
        local probe=cxprobe$$
        if ! ip netns add "$probe" 2>/dev/null; then
            WAN_SKIP_REASON="'ip netns add' does not work here"
        else
            ip netns del "$probe" 2>/dev/null
        fi
    fi
    [[ -z $WAN_SKIP_REASON ]]
}

wan_log() { echo "$(_wan_dir)/$1.log"; }

wan_exec() {
    local id=$1
    shift
    ip netns exec "cxv$id" "$@"
}

wan_link_up() {
    if (($# != 6)); then
        _wan_err "usage: wan_link_up ID DELAY_MS JITTER_MS LOSS_PCT UP_MBIT DOWN_MBIT"
        return 1
    fi
    local id=$1 delay=$2 jitter=$3 loss=$4 up=$5 down=$6 v
    _wan_check_id "$id" || return 1
    for v in "$delay" "$jitter" "$loss" "$up" "$down"; do
        [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] && continue
        _wan_err "link $id: '$v' is not a non-negative number"
        return 1
    done
    local bin=${BUILD:-}/tests/tools/tool_linkemu
    if [[ -z ${BUILD:-} || ! -x $bin ]]; then
        _wan_err "link $id: emulator '$bin' not built (set BUILD; make tests)"
        return 1
    fi
    local dir ns=cxv$id ta=cxa$id tb=cxb$id net=10.77.$id pid
    dir=$(_wan_dir)
    mkdir -p "$dir" || return 1
    pid=$(_wan_pid "$id")
    if _wan_alive "$pid"; then
        _wan_err "link $id is in use (emulator pid $pid): pick another ID or wan_link_down $id"
        return 1
    fi
    # leftovers of a dead run: namespace (its TAP went with the emulator), a stray device
    if [[ -e /var/run/netns/$ns ]]; then ip netns del "$ns" 2>/dev/null || true; fi
    if ip link show "$ta" >/dev/null 2>&1; then ip link del "$ta" 2>/dev/null || true; fi
    rm -f "$dir/$id.pid" "$dir/$id.ready" "$dir/$id.log"
    if ! ip netns add "$ns"; then
        _wan_err "link $id: ip netns add $ns failed"
        return 1
    fi
    ip -n "$ns" link set lo up

    local args=(--tap-a "$ta" --tap-b "$tb" --ns-b "$ns" --ready-file "$dir/$id.ready"
                --seed "${WAN_SEED:-$id}" --die-with-parent)
    local half_d half_j
    half_d=$(awk -v x="$delay" 'BEGIN { printf "%.6g", x / 2 }')
    half_j=$(awk -v x="$jitter" 'BEGIN { printf "%.6g", x / 2 }')
    args+=(--delay-ab "$half_d" --delay-ba "$half_d" --jitter-ab "$half_j" --jitter-ba "$half_j"
           --loss-ab "$loss" --loss-ba "$loss")
    # a->b is root -> namespace (down), b->a is namespace -> root (up)
    awk -v x="$down" 'BEGIN { exit !(x > 0) }' && args+=(--rate-ab "$down")
    awk -v x="$up" 'BEGIN { exit !(x > 0) }' && args+=(--rate-ba "$up")
    # shellcheck disable=SC2206  # WAN_EMU_ARGS is a word list on purpose
    [[ -n ${WAN_EMU_ARGS:-} ]] && args+=(${WAN_EMU_ARGS})
    # nice -10: the link's timing should not depend on how busy the test's CPUs are
    nice -n -10 "$bin" "${args[@]}" >"$dir/$id.log" 2>&1 </dev/null &
    pid=$!
    WAN_PIDS[$id]=$pid
    echo "$pid" >"$dir/$id.pid"

    local deadline=$((SECONDS + 5))
    until [[ -e $dir/$id.ready ]]; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            _wan_err "link $id: the emulator did not start; its log:"
            sed 's/^/  /' "$dir/$id.log" >&2
            WAN_QUIET=1 wan_link_down "$id"
            return 1
        fi
        sleep 0.02
    done
    # quiet links: no IPv6 autoconfiguration chatter drawing on the loss generator
    sysctl -qw "net.ipv6.conf.$ta.disable_ipv6=1" >/dev/null 2>&1 || true
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$tb.disable_ipv6=1" >/dev/null 2>&1 || true
    if ! { ip addr add "$net.1/24" dev "$ta" && ip link set "$ta" up &&
           ip -n "$ns" addr add "$net.2/24" dev "$tb" && ip -n "$ns" link set "$tb" up &&
           ip -n "$ns" route add default via "$net.1"; }; then
        _wan_err "link $id: configuring addresses failed"
        WAN_QUIET=1 wan_link_down "$id"
        return 1
    fi
    # the emulator paces frames itself: no 64 KB super-frames (ignored where unsupported)
    ethtool -K "$ta" gso off tso off gro off >/dev/null 2>&1 || true
    ip netns exec "$ns" ethtool -K "$tb" gso off tso off gro off >/dev/null 2>&1 || true

    if awk -v x="$loss" 'BEGIN { exit !(x >= 100) }'; then
        return 0   # nothing can cross
    fi
    deadline=$((SECONDS + ${WAN_UP_TIMEOUT:-10}))
    until ip netns exec "$ns" ping -q -c 1 -W 1 "$net.1" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then
            _wan_err "link $id: no ping across within ${WAN_UP_TIMEOUT:-10} s; emulator log:"
            sed 's/^/  /' "$dir/$id.log" >&2
            WAN_QUIET=1 wan_link_down "$id"
            return 1
        fi
    done
    return 0
}

# _wan_signal ID SIGNAL ACK: sends SIGNAL and waits (2 s at most) for one more ACK line
_wan_signal() {
    local id=$1 sig=$2 ack=$3 pid log n
    _wan_check_id "$id" || return 1
    pid=$(_wan_pid "$id")
    if ! _wan_alive "$pid"; then
        _wan_err "link $id: no emulator running"
        return 1
    fi
    log=$(wan_log "$id")
    n=$(grep -c "$ack" "$log" 2>/dev/null || true)
    kill "-$sig" "$pid" || return 1
    local deadline=$((SECONDS + 2))
    while (($(grep -c "$ack" "$log" 2>/dev/null || true) <= n)); do
        if ((SECONDS >= deadline)); then
            _wan_err "link $id: the emulator did not acknowledge SIG$sig"
            return 1
        fi
        sleep 0.01
    done
}

wan_cut() { _wan_signal "$1" USR1 'SIGUSR1: link cut'; }
wan_restore() { _wan_signal "$1" USR2 'SIGUSR2: link restored'; }

wan_link_down() {
    local id=$1 pid dir stopped=0
    _wan_check_id "$id" || return 1
    dir=$(_wan_dir)
    pid=$(_wan_pid "$id")
    [[ -n ${WAN_PIDS[$id]:-} ]] && stopped=1
    if _wan_alive "$pid"; then
        stopped=1
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            _wan_alive "$pid" || break
            sleep 0.01
        done
        if _wan_alive "$pid"; then
            _wan_err "link $id: emulator $pid ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # reap our own child (no "Terminated" notice later)
    [[ -n ${WAN_PIDS[$id]:-} ]] && { wait "${WAN_PIDS[$id]}" 2>/dev/null || true; }
    unset "WAN_PIDS[$id]"
    if ((stopped)) && [[ ${WAN_QUIET:-0} != 1 && -f $dir/$id.log ]]; then
        grep -E 'tool_linkemu: (a->b|b->a) .*forwarded|exiting|error' "$dir/$id.log" |
            sed "s/^/[wan $id] /" >&2 || true
    fi
    if [[ -e /var/run/netns/cxv$id ]]; then ip netns del "cxv$id" 2>/dev/null || true; fi
    rm -f "$dir/$id.pid" "$dir/$id.ready"
    return 0
}

wan_cleanup() {
    local id
    for id in "${!WAN_PIDS[@]}"; do
        wan_link_down "$id"
    done
}
