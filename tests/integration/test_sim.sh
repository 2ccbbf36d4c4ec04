#!/bin/bash
# test_sim.sh: conflux-sim (bridge/sim/), a collaboration on SimGrid driven by the bridge's
# round core.
#  1. Validation: tests/sim/validate.py simulates the four runs of a real `make experiment`
#     (tests/data/sim/experiment: hpc, sync, diloco, churn, measured on 2 AVX-512 EPYC cores)
#     from their own measurements; the time to the target loss and every participant's
#     samples (those with at least 5% of their run's) must be within 15% of the real runs'.
#     The inputs are fixed files and the simulation is deterministic, so the margin cannot
#     flake; the errors themselves are printed.
#  2. The loss column: a simulated sync run trains the same samples per step as the real one,
#     so its loss at each step is the real run's (read against samples): equal row by row.
#  3. Determinism: the same configuration and seed give the same metrics.csv, bridge.csv and
#     volunteers.csv; another seed gives other volunteers (speeds, joins).
#  4. The round core's rules through the simulator: a deadline too short for the volunteers
#     makes "late" uploads that count as stale in the next round; with max_staleness = 0 they
#     are dropped; a killed volunteer's share is lost; volunteers.csv's accepted samples add
#     up to bridge.csv's fresh + stale.
#  5. Marked simulated: run.json "simulated": true; conflux-report names the run
#     "NAME (simulated)" and its kind; without volunteers the run is "MPI only" (no bridge.csv).
#  6. Bad input: unknown keys, values out of range, a malformed trace (exit 2), a missing or
#     malformed loss curve (exit 1), each with a message naming it.
#  7. --help, and its example runs.
# usage: tests/integration/test_sim.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_sim.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_sim.sh BUILD_DIR DATA_DIR}
source tests/lib.sh
BIN=$(cd "$BUILD/bin" && pwd)
SIM=$BIN/conflux-sim
PY=/usr/bin/python3
FIX=tests/data/sim/experiment
WORK=$(mktemp -d /tmp/conflux-sim-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
[ -x "$SIM" ] || { echo "FAIL: $SIM not built"; exit 1; }

# ---- 1. validation against the real experiment ----
$PY tests/sim/validate.py "$FIX" "$BIN" "$WORK/val" 7.6 >"$WORK/val.log" 2>&1
cat "$WORK/val.log"
line=$(grep '^sim-validate: ' "$WORK/val.log")
E=$(sed -n 's/.*time_to_target_err=\([0-9.]*\).*/\1/p' <<<"$line")
F=$(sed -n 's/.*samples_err=\([0-9.]*\).*/\1/p' <<<"$line")
if [ -n "$E" ] && [ -n "$F" ] && $PY -c "import sys; sys.exit(not ($E <= 0.15 and $F <= 0.15))"; then
    ok "simulated experiment within 15% of the real runs (time to target $E, samples $F)"
else
    bad "validation: '$line' (needs both <= 0.15)"
fi
[ "$(grep -c 'time to target: real' "$WORK/val.log")" = 4 ] && ok "all four runs compared" || bad "not every run compared"

# ---- 2. the loss column is the real run's against samples ----
$PY - "$FIX/sync/metrics.csv" "$WORK/val/sync/metrics.csv" <<'EOF' && ok "sync: simulated loss = real loss at every step (by samples)" || bad "the loss column does not follow the curve"
import csv, sys
real = list(csv.DictReader(open(sys.argv[1])))
sim = list(csv.DictReader(open(sys.argv[2])))
assert len(real) == len(sim) == 480, (len(real), len(sim))
for a, b in zip(real, sim):
    assert a["samples"] == b["samples"], (a["step"], a["samples"], b["samples"])
    assert abs(float(a["loss"]) - float(b["loss"])) < 1e-6, (a["step"], a["loss"], b["loss"])
    assert (a["valid_loss"] == "") == (b["valid_loss"] == ""), a["step"]
    if a["valid_loss"]:
        assert abs(float(a["valid_loss"]) - float(b["valid_loss"])) < 1e-6, a["step"]
EOF

# ---- 3. determinism ----
SH=(--config tests/sim/scenarios/sahajbert.ini --set run.steps=6 --set run.loss_curve= -q)
"$SIM" "${SH[@]}" --out "$WORK/d1" && "$SIM" "${SH[@]}" --out "$WORK/d2" && "$SIM" "${SH[@]}" --set run.seed=2 --out "$WORK/d3" \
    || bad "the sahajBERT scenario does not run"
same=1
for f in metrics.csv bridge.csv volunteers.csv; do cmp -s "$WORK/d1/$f" "$WORK/d2/$f" || same=0; done
[ $same = 1 ] && ok "same seed, same files" || bad "same seed gave different files"
cmp -s "$WORK/d1/volunteers.csv" "$WORK/d3/volunteers.csv" && bad "seed 2 gave the same volunteers" || ok "another seed, other volunteers"

# ---- 4. the round core's rules through the simulator ----
WS=(--config tests/sim/scenarios/dedloc-workstation.ini --set run.steps=12 --set run.loss_curve= -q)
"$SIM" "${WS[@]}" --set bridge.deadline_s=2 --out "$WORK/late" || bad "short deadline run failed"
"$SIM" "${WS[@]}" --set bridge.deadline_s=2 --set bridge.max_staleness=0 --out "$WORK/drop" || bad "staleness 0 run failed"
$PY - "$WORK/late" "$WORK/drop" <<'EOF' && ok "late uploads count stale (max_staleness 1) or are dropped (0); accounting adds up" || bad "fates or accounting"
import csv, sys
def load(d):
    b = list(csv.DictReader(open(d + "/bridge.csv")))
    v = list(csv.DictReader(open(d + "/volunteers.csv")))
    return b, v
b, v = load(sys.argv[1])
ev = lambda v, e: sum(int(x["samples"]) for x in v if x["event"] == e)
late = sum(1 for x in v if x["event"] == "late")
stale = sum(int(x["stale_samples"]) for x in b)
assert late > 0 and stale > 0, (late, stale)
assert ev(v, "accepted") == sum(int(x["fresh_samples"]) for x in b), "fresh"
assert ev(v, "accepted-stale") == stale, "stale"
assert sum(int(x["dropped_samples"]) for x in b) == 0
b, v = load(sys.argv[2])
assert sum(int(x["stale_samples"]) for x in b) == 0
dropped = sum(int(x["dropped_samples"]) for x in b)
assert dropped > 0 and ev(v, "dropped-stale") == dropped, dropped
EOF
"$SIM" "${WS[@]}" --set profile.1.count=1 --set "profile.1.trace=0:join,30:kill" --out "$WORK/kill" || bad "kill run failed"
$PY - "$WORK/kill" <<'EOF' && ok "a volunteer killed with a share in hand: lost, disconnected, its upload never counted" || bad "kill"
import csv, sys
v = list(csv.DictReader(open(sys.argv[1] + "/volunteers.csv")))
b = list(csv.DictReader(open(sys.argv[1] + "/bridge.csv")))
lost = [x for x in v if x["event"] == "lost"]
disc = [x for x in v if x["event"] == "disconnected"]
assert len(lost) == 1 and int(lost[0]["samples"]) > 0 and abs(float(lost[0]["time_s"]) - 30) < 1e-6, lost
assert len(disc) == 1 and float(disc[0]["time_s"]) == float(lost[0]["time_s"]), disc
assert sum(int(x["lost_samples"]) for x in b) == int(lost[0]["samples"])
after = [x for x in v if x["event"].startswith("accepted") and float(x["time_s"]) > 30]
assert not after, after
assert all(int(x["live_volunteers"]) == 0 for x in b if float(x["time_s"]) > 31)
EOF

# ---- 5. marked simulated ----
grep -q '"simulated": true' "$WORK/val/sync/run.json" && ok "run.json says simulated" || bad "run.json not marked"
"$BIN/conflux-report" --target-loss 7.6 "$FIX/sync" "$WORK/val/sync" >"$WORK/rep.txt" 2>&1
grep -q "Run sync (simulated)" "$WORK/rep.txt" && grep -q "simulated (conflux-sim), collaborative" "$WORK/rep.txt" \
    && grep -q "^Run sync$" "$WORK/rep.txt" && ok "conflux-report marks the simulated run and not the real one" \
    || bad "conflux-report does not mark the simulated run"
"$BIN/conflux-report" --format json "$WORK/val/hpc" 2>/dev/null | $PY -c "
import json, sys; r = json.load(sys.stdin)['runs'][0]
assert r['simulated'] is True and r['kind'] == 'mpi' and r['name'] == 'hpc (simulated)', r['kind']" \
    && [ ! -e "$WORK/val/hpc/bridge.csv" ] && ok "cluster alone: MPI only, no bridge.csv, simulated in JSON" || bad "cluster-only run"

# ---- 6. bad input ----
expect() {  # RC PATTERN ARGS...
    local rc=$1 pat=$2; shift 2
    local out; out=$("$SIM" "$@" --out "$WORK/bad" -q 2>&1); local got=$?
    if [ $got = "$rc" ] && grep -q -- "$pat" <<<"$out"; then ok "exit $rc: $pat"; else bad "expected exit $rc and '$pat', got $got: $out"; fi
}
expect 2 "unknown key run.stepz" --set run.stepz=3
expect 2 "run.steps must be in \[1, 1e8\] (got 0)" --set run.steps=0
expect 2 "profile.2.loss must be in \[0, 0.5)" --set profile.2.count=1 --set profile.2.loss=0.7
expect 2 "run.steps (100) must be a multiple of run.inner_steps (30)" --set run.mode=diloco --set run.inner_steps=30
expect 2 "profile.1.trace: leave or kill at 5.000 s: not joined" --set profile.1.count=1 --set profile.1.trace=0:join,4:kill,5:leave
expect 2 "profile.1.name 'a\"b': letters, digits" --set profile.1.count=1 --set 'profile.1.name=a"b'
expect 2 "profile.1.trace: unknown event 'jump'" --set profile.1.count=1 --set profile.1.trace=0:jump
expect 2 "profile.1.trace: times must not decrease" --set profile.1.count=1 --set profile.1.trace=5:join,4:kill
expect 1 "cannot open the loss curve" --set run.loss_curve="$WORK/none.csv"
printf 'a,b\n1,2\n' >"$WORK/bad.csv"
expect 1 "not a conflux metrics.csv: the first line is not its header ($WORK/bad.csv)" --set run.loss_curve="$WORK/bad.csv"
printf 'time_s,step,samples,loss,lr\n1,1,64,9.0,0\n2,x\n' >"$WORK/bad2.csv"
expect 1 "malformed row ($WORK/bad2.csv:3)" --set run.loss_curve="$WORK/bad2.csv"

# ---- 7. --help ----
"$SIM" --help | grep -q "\[profile.1\] .. \[profile.8\]" && ok "--help documents the configuration" || bad "--help"
ex=$("$SIM" --help | sed -n 's/^  conflux-sim \(--config .*\)$/\1/p' | head -1)
(cd "$WORK" && ln -s "$OLDPWD/tests" tests && "$SIM" ${ex/\/tmp\/sim-hybrid/$WORK/ex} -q && [ -s "$WORK/ex/metrics.csv" ]) \
    && ok "the --help example runs" || bad "the --help example fails ($ex)"

echo "$fails failure(s)"
[ $fails = 0 ]
