#!/usr/bin/env bash
# Integration test of the WAN link emulator (tests/tools/tool_linkemu.c) through tests/wan.sh.
# Brings up emulated links between the root namespace and namespaces cxv241..cxv245 and
# measures, printing each figure:
#   - RTT of a 50 ms link (ping from the root namespace): min and max within [48, 70] ms;
#   - jitter: a 40 ms +- 20 ms link keeps every RTT within [19, 72] ms (20..60 plus room
#     for scheduling delays on a busy 2-core machine) and spreads them over >= 10 ms;
#   - loss: 5% each way loses a ping round trip with p = 1-0.95^2 = 9.75%; the share of
#     ~1000 pings lost must lie inside the exact binomial acceptance interval with 1e-5 in
#     each tail (a correct emulator fails this 2 times in 10^5);
#   - rate: on a 20 Mbit/s up / 100 Mbit/s down link (20 ms RTT) iperf3 TCP (cubic) from
#     the namespace to the root namespace, then reversed (-R), measures [0.8, 1.02] x the
#     rate each way (TCP goodput over 1514-byte frames is 0.956 x the frame rate);
#   - capacity: an unlimited link (2 ms RTT) carries at least 200 Mbit/s of iperf3 TCP
#     (the emulator must not be the bottleneck of a 100 Mbit/s link);
#   - cut: after wan_cut no ping crosses; after wan_restore pings cross again; the
#     emulator counts the frames it dropped while cut.
# Every namespace, emulator and iperf3 server goes on exit (trap), whatever the exit path.
# Prints ok:/FAIL:/SKIPPED: lines; exit status 0 (all passed), 1 (a failure) or 77 (skipped). About 25 s.
# usage: tests/integration/test_linkemu.sh BUILD_DIR [DATA_DIR (unused)]
set -u
BUILD=${1:?usage: test_linkemu.sh BUILD_DIR [DATA_DIR]}
DATA=${2:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # tests/
# shellcheck source=tests/lib.sh
source "$HERE/lib.sh"
# shellcheck source=tests/wan.sh
source "$HERE/wan.sh"

wan_available || skip "WAN link emulation: $WAN_SKIP_REASON"
command -v ping >/dev/null 2>&1 || skip "WAN link emulation: no ping (apt-get install iputils-ping)"
if [[ ! -x $BUILD/tests/tools/tool_linkemu ]]; then
    echo "FAIL: $BUILD/tests/tools/tool_linkemu not built (make tests)"
    exit 1
fi

IPERF_PID=
# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
    if [[ -n $IPERF_PID ]]; then
        kill "$IPERF_PID" 2>/dev/null
        wait "$IPERF_PID" 2>/dev/null
    fi
    wan_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM
T0=$SECONDS

# ping_stats OUTPUT: "TX RX MIN AVG MAX MDEV" from ping's summary (RTTs "- - - -" if none)
ping_stats() {
    awk '/packets transmitted/ { tx = $1; rx = $4 }
         /^rtt / { split($4, r, "/") }
         END { if (!(1 in r)) r[1] = r[2] = r[3] = r[4] = "-"
               print tx + 0, rx + 0, r[1], r[2], r[3], r[4] }' <<<"$1"
}
# in_range X LO HI: LO <= X <= HI (decimals)
in_range() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x != "-" && x >= lo && x <= hi) }'; }

L_RTT=241 L_LOSS=242 L_RATE=243 L_JIT=244 L_FAST=245
up_ok=1
for spec in "$L_RTT 50 0 0 0 0" "$L_JIT 40 20 0 0 0" "$L_LOSS 2 0 5 0 0" "$L_RATE 20 0 0 20 100" \
            "$L_FAST 2 0 0 0 0"; do
    # shellcheck disable=SC2086  # spec is a word list
    if wan_link_up $spec; then
        ok "link up: wan_link_up $spec"
    else
        bad "link up: wan_link_up $spec failed"
        up_ok=0
    fi
done
((up_ok)) || { echo "linkemu: $fails failure(s)"; exit "$fails"; }

# ---- RTT: 50 ms configured (25 ms each way)
out=$(ping -n -c 20 -i 0.05 -W 2 "10.77.$L_RTT.2" 2>&1)
read -r tx rx mn avg mx md < <(ping_stats "$out")
msg="RTT with 50 ms configured: $rx/$tx replies, min/avg/max/mdev $mn/$avg/$mx/$md ms"
if ((rx == tx && tx == 20)) && in_range "$mn" 48 70 && in_range "$mx" 48 70; then
    ok "$msg (within [48, 70])"
else
    bad "$msg (want 20/20, all within [48, 70])"
    echo "$out" | tail -3
fi

# ---- jitter: 40 ms +- 20 ms RTT (20 +- 10 ms each way); pings 25 ms apart never queue
# behind each other, so the no-reordering rule leaves their delays alone
out=$(ping -n -c 40 -i 0.025 -W 2 "10.77.$L_JIT.2" 2>&1)
read -r tx rx mn avg mx md < <(ping_stats "$out")
spread=$(awk -v a="$mn" -v b="$mx" 'BEGIN { printf "%.1f", b - a }')
msg="RTT with 40 +- 20 ms configured: $rx/$tx replies, min/avg/max/mdev $mn/$avg/$mx/$md ms"
msg+=", spread $spread ms"
if ((rx == tx && tx == 40)) && in_range "$mn" 19 72 && in_range "$mx" 19 72 &&
   in_range "$spread" 10 100; then
    ok "$msg (within [19, 72], spread >= 10)"
else
    bad "$msg (want 40/40, all within [19, 72], spread >= 10)"
fi

# ---- loss: 5% each way
N_PING=1000
out=$(ping -n -q -c "$N_PING" -i 0.005 -W 1 "10.77.$L_LOSS.2" 2>&1)
read -r tx rx _ _ _ _ < <(ping_stats "$out")
lost=$((tx - rx))
# exact binomial acceptance interval [lo, hi] for n = tx, p = 1 - 0.95^2: P(X < lo) <= 1e-5
# and P(X > hi) <= 1e-5 (pmf by the recurrence p(k+1) = p(k) (n-k)/(k+1) p/q)
read -r lo hi < <(awk -v n="$tx" -v p=0.0975 -v a=1e-5 'BEGIN {
    q = 1 - p; pmf = q ^ n; cdf = 0; lo = -1; hi = n
    for (k = 0; k <= n; k++) {
        if (lo < 0 && cdf + pmf > a) lo = k      # P(X < k) = cdf <= a
        cdf += pmf
        if (1 - cdf <= a) { hi = k; break }      # P(X > k) <= a
        pmf *= (n - k) / (k + 1) * p / q
    }
    print lo, hi }')
rate=$(awk -v l="$lost" -v n="$tx" 'BEGIN { printf "%.2f", n ? 100 * l / n : 0 }')
msg="loss 5% each way: $lost of $tx pings lost ($rate%; expected 9.75%"
if ((tx >= N_PING * 9 / 10)) && ((lost >= lo && lost <= hi)); then
    ok "$msg, binomial 1e-5 tails give $lo..$hi)"
else
    bad "$msg; want $lo..$hi of about $N_PING pings)"
fi

# ---- rate: 20 Mbit/s up, 100 Mbit/s down, 20 ms RTT; iperf3 TCP with cubic
# iperf3_server ID: (re)starts the iperf3 server on 10.77.ID.1 (root namespace)
iperf3_server() {
    local port=$((15000 + $1)) i
    if [[ -n $IPERF_PID ]]; then
        kill "$IPERF_PID" 2>/dev/null
        wait "$IPERF_PID" 2>/dev/null
    fi
    # setpriv --pdeathsig: the server goes even if this shell is killed with SIGKILL
    local pd=()
    command -v setpriv >/dev/null 2>&1 && pd=(setpriv --pdeathsig TERM)
    "${pd[@]}" iperf3 -s -B "10.77.$1.1" -p "$port" >/dev/null 2>&1 &
    IPERF_PID=$!
    for ((i = 0; i < 100; i++)); do
        [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]] && return 0
        sleep 0.02
    done
}
# iperf3_mbit ID SECONDS [-R]: receiver's Mbit/s after 1 s omitted (slow start), client in
# the namespace; "-" when iperf3 failed
iperf3_mbit() {
    local id=$1 t=$2
    shift 2
    wan_exec "$id" timeout 20 iperf3 -c "10.77.$id.1" -p $((15000 + id)) -t "$t" -O 1 -f m \
        -C cubic "$@" 2>&1 |
        awk '/receiver$/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) }
             END { print (v == "" ? "-" : v) }'
}
if ! command -v iperf3 >/dev/null 2>&1; then
    skip_check "throughput checks: no iperf3 (apt-get install iperf3)"
else
    iperf3_server "$L_RATE"
    for dir in up down; do
        if [[ $dir == up ]]; then
            want=20 mb=$(iperf3_mbit "$L_RATE" 3)       # namespace -> root
        else
            want=100 mb=$(iperf3_mbit "$L_RATE" 3 -R)   # root -> namespace
        fi
        lo=$(awk -v w="$want" 'BEGIN { print 0.8 * w }')
        hi=$(awk -v w="$want" 'BEGIN { print 1.02 * w }')
        if in_range "$mb" "$lo" "$hi"; then
            ok "rate $dir $want Mbit/s: iperf3 TCP (cubic) $mb Mbit/s (within [$lo, $hi])"
        else
            bad "rate $dir $want Mbit/s: iperf3 TCP (cubic) $mb Mbit/s (want [$lo, $hi])"
        fi
    done
    # capacity: an unlimited link with 2 ms RTT, namespace -> root
    iperf3_server "$L_FAST"
    mb=$(iperf3_mbit "$L_FAST" 2)
    if in_range "$mb" 200 1e9; then
        ok "capacity: unlimited link carries $mb Mbit/s (iperf3 TCP cubic; want >= 200)"
    else
        bad "capacity: unlimited link carries $mb Mbit/s (want >= 200: the emulator is a bottleneck)"
    fi
    kill "$IPERF_PID" 2>/dev/null
    wait "$IPERF_PID" 2>/dev/null
    IPERF_PID=
fi

# ---- cut and restore on the RTT link
if wan_cut "$L_RTT"; then
    out=$(ping -n -c 3 -i 0.1 -W 1 "10.77.$L_RTT.2" 2>&1)
    read -r tx rx _ _ _ _ < <(ping_stats "$out")
    if ((tx == 3 && rx == 0)); then
        ok "cut: $rx of $tx pings answered"
    else
        bad "cut: $rx of $tx pings answered (want 0 of 3)"
    fi
else
    bad "cut: wan_cut failed"
fi
if wan_restore "$L_RTT"; then
    out=$(ping -n -c 3 -i 0.1 -W 2 "10.77.$L_RTT.2" 2>&1)
    read -r tx rx _ _ _ _ < <(ping_stats "$out")
    if ((tx == 3 && rx == 3)); then
        ok "restore: $rx of $tx pings answered"
    else
        bad "restore: $rx of $tx pings answered (want 3 of 3)"
    fi
else
    bad "restore: wan_restore failed"
fi
WAN_QUIET=1 wan_link_down "$L_RTT"
# the two counter lines: "...; dropped loss N queue N cut N write-error N"
cuts=$(sed -n 's/.*; dropped loss .* cut \([0-9]*\) write-error .*/\1/p' "$(wan_log "$L_RTT")" |
       awk '{ s += $1 } END { print s + 0 }')
if ((cuts >= 3)); then
    ok "cut: the emulator counted $cuts frame(s) dropped while cut"
else
    bad "cut: the emulator counted $cuts frame(s) dropped while cut (want >= 3)"
    sed 's/^/  /' "$(wan_log "$L_RTT")"
fi

echo "linkemu: $fails failure(s) in $((SECONDS - T0)) s"
[ "$fails" = 0 ]   # not "exit $fails": 77 means skipped
