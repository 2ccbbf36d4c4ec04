#!/bin/bash
# test_bridge.sh: volunteers average with MPI ranks through conflux-bridge (loopback; the
# WAN scenarios are in test_wan.sh).
#  1. Equivalence: 2 trainer ranks + bridge + 2 volunteers == 4 MPI ranks on the same data
#     and global batch, fp32 uploads (summation-order tolerance) and fp16 uploads (a bound).
#  2. Faults: hostile peers of every kind, a volunteer joining mid-run, one leaving, one
#     killed, a revoked token. Training finishes, replicas agree, every sample is accounted.
# usage: tests/integration/test_bridge.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_bridge.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_bridge.sh BUILD_DIR DATA_DIR}
source tests/lib.sh
BIN=$BUILD/bin
WORK=$(mktemp -d /tmp/conflux-bridge-test.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
TOK=$("$BIN/conflux-bridge" token issue --tokens "$TOKENS" alice) || { echo "FAIL: token issue"; exit 1; }
[ "$(stat -c %a "$TOKENS")" = 600 ] && ok "token file is mode 0600" || bad "token file mode $(stat -c %a "$TOKENS")"

RUN=("${TINY_MODEL[@]}" --set train.micro_batch=2
     --set train.replica_check_every=1 -q)

# ---- 1. equivalence -------------------------------------------------------------------
"${MPIRUN[@]}" -np 4 "$BIN/conflux-train" "${RUN[@]}" --set train.global_batch=8 --set train.steps=20 --set run.dir="$WORK/mpi4" \
    && [ -f "$WORK/mpi4/finished" ] && ok "4 MPI ranks: 20 steps" || bad "4-rank reference run"

hybrid_run() {  # DIR CODEC: 2 trainers + bridge + 2 volunteers, 20 steps
    local dir=$1 codec=$2 port=$((PORT + ${3:-0}))
    "${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${RUN[@]}" --set train.global_batch=8 --set train.steps=20 --set run.dir="$dir" \
        : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$port --aggregate mean \
        --codecs "$codec" --plan equal --wait-volunteers 2 --wait-timeout 60 >"$dir.bridge.log" 2>&1 &
    local mp=$!
    for v in 1 2; do
        "$BIN/conflux-volunteer" --join 127.0.0.1:$port --token "$TOK" --name "v$v" \
            --set train.threads=1 --retries 30 >"$dir.v$v.log" 2>&1 &
    done
    wait $mp
    local rc=$?
    wait
    return $rc
}
for codec in fp32 fp16; do
    if hybrid_run "$WORK/hy-$codec" $codec $([ $codec = fp32 ] && echo 0 || echo 1); then
        rows=$(grep -c ',4,' "$WORK/hy-$codec/metrics.csv" || true)
        ended=$(grep -l "the run ended; contributed to 20 step" "$WORK"/hy-$codec.v*.log | wc -l)
        [ "$rows" -ge 20 ] && [ "$ended" = 2 ] \
            && ok "$codec: 2 trainers + bridge + 2 volunteers ran 20 steps with 4 participants each" \
            || bad "$codec hybrid run: $rows rows with 4 participants, $ended volunteers to the end"
    else
        bad "$codec hybrid run failed"; tail -5 "$WORK/hy-$codec.bridge.log"
    fi
done
# fp32: the same per-sample gradients summed in another order (trainers' micro-batches, the
# bridge's sum of two uploads, then the all-reduce): float32 summation-order differences of a
# few ulps per step; 1e-5 is the tolerance test_mpi_train.sh uses for 1 vs 2 vs 4 ranks.
compare "$WORK/mpi4/checkpoint-000020.h5" "$WORK/hy-fp32/checkpoint-000020.h5" 1e-5 \
    && ok "fp32 uploads: hybrid == 4 MPI ranks" || bad "fp32 uploads differ from 4 MPI ranks"
# fp16: half of each step's gradient crosses the wire rounded to fp16 (relative error <= 2^-11,
# error feedback carries the rest to the next round). Adam normalises gradient scale, so the
# parameter perturbation per step stays a small fraction of lr; over 20 steps (sum of lr
# 0.011 here) 1e-4 bounds it with margin (observed ~1e-5). The run must differ from fp32 (the
# codec really was fp16) and stay within the bound.
compare "$WORK/mpi4/checkpoint-000020.h5" "$WORK/hy-fp16/checkpoint-000020.h5" 1e-4 \
    && ok "fp16 uploads: hybrid within 1e-4 of 4 MPI ranks" || bad "fp16 uploads beyond the bound"
compare "$WORK/mpi4/checkpoint-000020.h5" "$WORK/hy-fp16/checkpoint-000020.h5" 0 >/dev/null \
    && bad "fp16 run is bit-identical to fp32: the codec was not used" || ok "fp16 run differs from fp32 (the codec is in use)"
grep -q "codec fp16" "$WORK/hy-fp16.bridge.log" && ok "bridge negotiated fp16" || bad "no fp16 negotiation in the bridge log"

# ---- 2. faults ------------------------------------------------------------------------
BOB=$("$BIN/conflux-bridge" token issue --tokens "$TOKENS" bob)
F=$WORK/faults
P2=$((PORT + 2))
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${RUN[@]}" --set train.global_batch=24 --set train.steps=150 --set run.dir="$F" \
    --set optim.warmup_steps=20 \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$P2 --deadline 5 --plan equal \
    --idle-timeout 3 --heartbeat 1 --history 8 --wait-volunteers 1 --wait-timeout 60 \
    >"$F.bridge.log" 2>&1 &
MP=$!
"$BIN/conflux-volunteer" --join 127.0.0.1:$P2 --token "$TOK" --name steady --identity-file "$WORK/steady.id" \
    --set train.threads=1 >"$F.steady.log" 2>&1 &
STEADY=$!
sleep 2
# hostile peers, all at once while the run goes on
MODES="garbage http hugelen badtoken badcrc early idle nan norm hugeloss wrongsize wronground"
for m in $MODES; do
    timeout 120 "$BUILD/tests/tools/tool_badpeer" 127.0.0.1:$P2 $m "$TOK" >"$F.bad-$m.log" 2>&1 &
    eval "BAD_$m=\$!"
done
# a volunteer that contributes 5 steps and leaves; one killed while training; bob, revoked
"$BIN/conflux-volunteer" --join 127.0.0.1:$P2 --token "$TOK" --name leaver --steps 5 \
    --set train.threads=1 >"$F.leaver.log" 2>&1 &
LEAVER=$!
"$BIN/conflux-volunteer" --join 127.0.0.1:$P2 --token "$TOK" --name victim \
    --set train.threads=1 >"$F.victim.log" 2>&1 &
VICTIM=$!
"$BIN/conflux-volunteer" --join 127.0.0.1:$P2 --token "$BOB" --name bob \
    --set train.threads=1 >"$F.bob.log" 2>&1 &
BOBPID=$!
sleep 4
kill -9 $VICTIM
"$BIN/conflux-bridge" token revoke --tokens "$TOKENS" bob >/dev/null && ok "bob's token revoked" || bad "revoke"
# a volunteer joining mid-run (downloads the state, catches up by replay)
sleep 1
"$BIN/conflux-volunteer" --join 127.0.0.1:$P2 --token "$TOK" --name latecomer \
    --set train.threads=1 >"$F.late.log" 2>&1 &
LATE=$!
wait $MP && [ -f "$F/finished" ] && ok "training finished despite the faults" \
    || { bad "training did not finish"; tail -20 "$F.bridge.log"; }
for m in $MODES; do
    eval "pid=\$BAD_$m"
    wait $pid && ok "hostile peer '$m': $(grep -m1 'bridge error' "$F.bad-$m.log" | cut -c1-90)" \
        || { bad "hostile peer '$m' was not rejected cleanly"; cat "$F.bad-$m.log"; }
done
# a claimed loss of 1e308 is refused for its value (two of them summed to inf and ended the
# bridge in a CHECK), not by an idle timeout
grep -q "bridge error 4: upload claims loss sum 1e+308 over 10 tokens" "$F.bad-hugeloss.log" \
    && ok "hostile 'hugeloss' refused for its loss: $(grep -m1 -o 'upload claims loss sum.*' "$F.bad-hugeloss.log" | cut -c1-80)" \
    || bad "hugeloss: $(cat "$F.bad-hugeloss.log")"
wait $LEAVER && grep -q "leaving after 5 contributed" "$F.leaver.log" && ok "a volunteer left after 5 steps" \
    || bad "leaver: $(tail -1 "$F.leaver.log")"
wait $BOBPID; rc=$?
[ $rc = 1 ] && grep -q "revoked" "$F.bob.log" && ok "bob was dropped when his token was revoked" \
    || bad "bob: rc=$rc $(tail -1 "$F.bob.log")"
wait $STEADY && grep -q "the run ended" "$F.steady.log" && ! grep -q "reconnecting\|differs" "$F.steady.log" \
    && ok "the steady volunteer matched the bridge's parameter hash at every round to the end" \
    || bad "steady volunteer: $(tail -2 "$F.steady.log")"
wait $LATE && grep -q "the run ended" "$F.late.log" && ! grep -q "differs" "$F.late.log" \
    && ok "the latecomer downloaded the state, caught up and trained to the end" \
    || bad "latecomer: $(tail -2 "$F.late.log")"
grep -q "victim.*disconnected" "$F.bridge.log" && ok "the killed volunteer was noticed" \
    || bad "no disconnect of the killed volunteer in the bridge log"
# accounting: each round's samples = trainers' + volunteers' accepted; every assigned share
# ends as accepted, accepted late, dropped, lost or unfinished
/usr/bin/python3 - "$F" <<'EOF' && ok "every sample accounted for (bridge.csv, volunteers.csv, metrics.csv)" || bad "sample accounting"
import csv, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f"{d}/bridge.csv")))
met = list(csv.DictReader(open(f"{d}/metrics.csv")))
ev = list(csv.DictReader(open(f"{d}/volunteers.csv")))
assert len(rows) == 150 and len(met) == 150, (len(rows), len(met))
for r in rows:
    assert int(r["samples"]) == int(r["trainer_samples"]) + int(r["fresh_samples"]) + int(r["stale_samples"]), r
assigned = sum(int(r["volunteer_samples_assigned"]) for r in rows)
by = {}
for e in ev:
    by[e["event"]] = by.get(e["event"], 0) + int(e["samples"])
ended = sum(by.get(k, 0) for k in ("accepted", "accepted-stale", "dropped-stale", "lost", "unfinished"))
late = by.get("late", 0)
fresh = sum(int(r["fresh_samples"]) for r in rows); stale = sum(int(r["stale_samples"]) for r in rows)
print(f"assigned {assigned}, accepted {by.get('accepted',0)} (+{by.get('accepted-stale',0)} late), "
      f"dropped {by.get('dropped-stale',0)}, lost {by.get('lost',0)}, unfinished {by.get('unfinished',0)}")
assert fresh == by.get("accepted", 0) and stale == by.get("accepted-stale", 0), (fresh, stale, by)
assert assigned == ended, (assigned, ended, by)
assert fresh > 0
EOF
echo "bridge test: $fails failure(s)"
exit $fails
