#!/bin/bash
# test_wan.sh: a collaborative run with volunteers in network namespaces behind emulated
# WAN links (tests/wan.sh: delay, jitter, loss, asymmetric rates), and the faults of real
# internet volunteers:
#   - steady: 50 ms RTT, 5 ms jitter, 1% loss, 20 Mbit/s up, 100 Mbit/s down, all the run;
#   - victim: a slow 2 Mbit/s uplink (100 Mbit/s down, so it keeps up with the rounds'
#     results and always reaches an upload), killed (SIGKILL) while its upload is on the wire;
#   - flaky: its link is cut for 7 s (longer than both idle timeouts) and restored; it
#     reconnects with the same identity and catches up;
#   - latecomer: joins mid-run over a 10 Mbit/s link (state download through the emulator);
#   - leaver: contributes 3 steps and says BYE.
# Training must finish, every volunteer still attached at the end must hold the bridge's
# parameters at every round (the parameter hash in ROUND_OPEN; the trainers and the bridge
# check theirs by MPI every step), and every sample is accounted for. The scenario runs
# twice: synchronous rounds (--plan equal), then DiLoCo (averaging.mode = diloco, H = 20,
# int8 both ways, shares sized to measured speeds, adaptive deadlines).
# usage: tests/integration/test_wan.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_wan.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_wan.sh BUILD_DIR DATA_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # tests/
source "$HERE/lib.sh"
source "$HERE/wan.sh"
wan_available || skip "WAN scenarios: $WAN_SKIP_REASON"
BIN=$(cd "$BUILD/bin" && pwd)
DATA=$(cd "$DATA" && pwd)
WORK=$(mktemp -d /tmp/conflux-wan-test.XXXXXX)
chmod 755 "$WORK"
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    wait 2>/dev/null
    wan_cleanup
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export WAN_QUIET=1
PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" wan --out "$WORK/wan.token"; TOK=$WORK/wan.token
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # the join string pins it
# links 231..235: steady, victim, flaky, latecomer, leaver
S=231 V=232 L=233 J=234 Q=235
for spec in "$S 50 5 1 20 100" "$V 50 0 0 2 100" "$L 50 0 0.5 20 100" "$J 80 0 0 10 50" "$Q 20 0 0 50 100"; do
    # shellcheck disable=SC2086
    wan_link_up $spec || { bad "wan_link_up $spec"; exit 1; }
done
ok "5 emulated links up"

volunteer() {  # ID NAME [ARGS...]: a volunteer inside namespace cxvID
    local id=$1 name=$2; shift 2
    wan_exec "$id" "$BIN/conflux-volunteer" --join "10.77.$id.1:$PORT#$FP" --token-file "$TOK" \
        --name "$name" --set train.threads=1 --timeout 4 --retries 30 "$@" >"$WORK/$name.log" 2>&1
}

scenario() {  # MODE: sync or diloco
MODE=$1
R=$WORK/run-$MODE
mkdir -p "$WORK/$MODE"
if [ "$MODE" = sync ]; then
    H=1 STEPS=60 TRAIN_ARGS=() BRIDGE_ARGS=(--plan equal)
else  # the cluster never waits for the links: more steps, so the faults happen mid-run
    H=20 STEPS=1000 TRAIN_ARGS=(--set averaging.mode=diloco --set averaging.inner_steps=20) BRIDGE_ARGS=()
fi
mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/conflux-train" "${TINY_MODEL[@]}" \
    --set train.global_batch=16 --set train.micro_batch=2 --set train.steps=$STEPS \
    --set train.replica_check_every=$H --set train.eval_every=0 --set run.dir="$R" -q "${TRAIN_ARGS[@]}" \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 0.0.0.0:$PORT --deadline 4 "${BRIDGE_ARGS[@]}" \
    --idle-timeout 4 --heartbeat 1 --history 32 --wait-volunteers 3 --wait-timeout 60 \
    >"$WORK/bridge.log" 2>&1 &
MP=$!
volunteer $S steady & STEADY=$!
volunteer $V victim & VICTIM=$!
volunteer $L flaky & FLAKY=$!
volunteer $Q leaver --steps 3 & LEAVER=$!

# kill the victim while its gradient upload is on the wire: its socket's send queue holds
# the rest of the upload (hundreds of kB at 2 Mbit/s)
killed=0
for _ in $(seq 600); do
    q=$(ip netns exec cxv$V ss -tnH state established "dport = :$PORT" 2>/dev/null | awk '{print $2; exit}')
    if [ -n "$q" ] && [ "$q" -gt 100000 ]; then
        pkill -9 -f -- "--name victim" && killed=1
        break
    fi
    sleep 0.05
done
[ $killed = 1 ] && ok "$MODE: victim killed with $q bytes of its upload still queued" || bad "the victim never started an upload"
sleep 1
wan_cut $L && ok "flaky's link cut" || bad "wan_cut"
sleep 7
wan_restore $L && ok "flaky's link restored" || bad "wan_restore"
volunteer $J latecomer & LATE=$!

wait $MP && [ -f "$R/finished" ] && ok "$MODE: training finished ($STEPS steps)" \
    || { bad "training did not finish"; tail -20 "$WORK/bridge.log"; }
for v in STEADY FLAKY LATE; do
    eval "pid=\$$v"
    name=$(echo $v | tr A-Z a-z); [ $name = late ] && name=latecomer
    if wait $pid && grep -q "the run ended" "$WORK/$name.log" && ! grep -q "differs" "$WORK/$name.log"; then
        ok "$MODE: $name stayed in step with the bridge to the end ($(grep -c '^step' "$WORK/$name.log") progress lines)"
    else
        bad "$name: $(grep -v '^step' "$WORK/$name.log" | tail -8)"
        echo "the bridge about $name:"; grep " $name (" "$WORK/bridge.log" | grep -v "accepted\|missed the deadline" | tail -8
    fi
done
wait $LEAVER && grep -q "leaving after 3 contributed" "$WORK/leaver.log" && ok "the leaver left after 3 steps" \
    || bad "leaver: $(tail -2 "$WORK/leaver.log")"
grep -q "reconnecting" "$WORK/flaky.log" && grep -q "joined" <(grep -A3 reconnecting "$WORK/flaky.log") \
    && ok "flaky noticed the cut and reconnected: $(grep -m1 reconnecting "$WORK/flaky.log" | cut -c1-100)" \
    || bad "flaky did not reconnect: $(tail -3 "$WORK/flaky.log")"
grep -q "flaky.*is live at step.*replayed\|flaky.*joined (resuming" "$WORK/bridge.log" \
    && ok "the bridge took flaky back under the same identity" || bad "no resume of flaky in the bridge log"
grep -q "latecomer.*joined" "$WORK/bridge.log" && grep -q "state .* MB" "$WORK/latecomer.log" \
    && ok "the latecomer downloaded the state over its link and joined" || bad "latecomer join"
/usr/bin/python3 - "$R" $((STEPS / H)) <<'EOF' && ok "$MODE: every sample accounted for" || bad "$MODE: sample accounting"
import csv, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f"{d}/bridge.csv")))
ev = list(csv.DictReader(open(f"{d}/volunteers.csv")))
assert len(rows) == int(sys.argv[2]), (len(rows), sys.argv[2])
for r in rows:
    assert int(r["samples"]) == int(r["trainer_samples"]) + int(r["fresh_samples"]) + int(r["stale_samples"]), r
by = {}
for e in ev:
    by[e["event"]] = by.get(e["event"], 0) + int(e["samples"])
assigned = sum(int(r["volunteer_samples_assigned"]) for r in rows)
ended = sum(by.get(k, 0) for k in ("accepted", "accepted-stale", "dropped-stale", "rejected-norm", "lost",
                                    "unfinished"))
print(f"volunteer samples assigned {assigned}: accepted {by.get('accepted',0)}, late but accepted "
      f"{by.get('accepted-stale',0)}, dropped {by.get('dropped-stale',0)}, lost {by.get('lost',0)}, "
      f"unfinished {by.get('unfinished',0)}")
assert assigned == ended, (assigned, ended, by)
lost_victim = sum(int(e["samples"]) for e in ev if e["event"] == "lost" and e["name"] == "victim")
assert lost_victim > 0, "the victim's share was not deducted"
EOF
cp "$WORK"/*.log "$WORK/$MODE/" 2>/dev/null
}
for mode in ${WAN_MODES:-sync diloco}; do
    scenario $mode
    PORT=$((PORT + 1))
done
echo "wan test: $fails failure(s)"
[ "$fails" = 0 ]   # not "exit $fails": 77 means skipped
