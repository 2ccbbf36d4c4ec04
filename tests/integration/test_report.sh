#!/bin/bash
# test_report.sh: conflux-report on recorded run directories (tests/data/report/).
#  1. Numbers: every figure of --format json checked against an independent computation in
#     Python from the same files (baseline: 2 MPI ranks; collab: 2 ranks + bridge + 3
#     volunteers, one leaving; churn: volunteers killed and one rejoining with its identity;
#     resumed: a run continued from its checkpoint, two clock segments; diloco: 2 ranks +
#     bridge + 2 volunteers in averaging.mode=diloco, H=10), and the mode and traffic columns
#     against exact values.
#  2. Formats: json parses, csv has one row per run with the header's column count, text and
#     markdown show the expected tables.
#  3. Plots: four PNGs (signature, size, dimensions); a missing or failing gnuplot is a clear
#     error.
#  4. Bad input: malformed, truncated and missing files give "conflux-report: error: what
#     (file:line)" and exit 1; usage errors exit 2.
# The fixtures are real runs of conflux-train/-bridge/-volunteer (tests/data/report/README.md).
# usage: tests/integration/test_report.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_report.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_report.sh BUILD_DIR DATA_DIR}
source tests/lib.sh
REPORT=$(cd "$BUILD/bin" && pwd)/conflux-report  # absolute: the --help example runs elsewhere
FIX=tests/data/report
WORK=$(mktemp -d /tmp/conflux-report-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PY=/usr/bin/python3
RUNS=("$FIX/baseline" "$FIX/collab" "$FIX/churn" "$FIX/resumed" "$FIX/diloco")
TARGET=7.6

cat >"$WORK/prices.ini" <<'EOF'
; test prices: baseline on "gpu" nodes, the others on the default "node"
[prices]
node = 2.50
gpu = 4.00
volunteer = 0.02
[runs]
baseline = gpu
[volunteers]
ann = 0.05
07311303 = 0.10   ; dave, by identity prefix
EOF

# ---- 1. numbers against an independent computation -----------------------------------
if "$REPORT" --target-loss $TARGET --prices "$WORK/prices.ini" --format json "${RUNS[@]}" >"$WORK/r.json" 2>"$WORK/err"; then
    ok "json report of ${#RUNS[@]} runs"
else
    bad "json report failed: $(cat "$WORK/err")"
fi
$PY - "$WORK/r.json" $TARGET "${RUNS[@]}" <<'EOF' && ok "every number matches the independent computation" || bad "numbers differ"
import csv, json, math, sys
rep = json.load(open(sys.argv[1])); target = float(sys.argv[2]); dirs = sys.argv[3:]
node_price = {"baseline": 4.00}; default_node = 2.50
vol_price = {"ann": 0.05}; vol_id_price = {"07311303": 0.10}; vol_default = 0.02
fails = 0
def close(a, b, what, run):
    global fails
    if a is None and b is None: return
    if a is None or b is None or not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
        print(f"  {run}: {what}: report {a} != expected {b}"); fails += 1

def analyze(d):
    name = d.rstrip("/").split("/")[-1]
    info = json.load(open(f"{d}/run.json"))
    ranks, nodes = info["ranks"], info["nodes"]
    rows = list(csv.DictReader(open(f"{d}/metrics.csv")))
    # continued clock: a row earlier than the previous one starts a resumed segment
    base, t, seg_of, prev = 0.0, [], [], None
    seg = 0
    for r in rows:
        ts = float(r["time_s"])
        if prev is not None and ts < float(prev["time_s"]):
            base = t[-1]; seg += 1
        t.append(base + ts); seg_of.append(seg); prev = r
    step_samples = []
    for i, r in enumerate(rows):
        s = int(r["samples"])
        if i > 0 and (seg_of[i] == seg_of[i-1] or int(rows[i-1]["step"]) == int(r["step"]) - 1):
            step_samples.append(s - int(rows[i-1]["samples"]))
        else:
            step_samples.append(s)  # step 1 (the fixtures' segments start at step 1 or continue)
    wall = t[-1]
    processed = sum(step_samples)
    comp = sum(float(r["compute_s"]) for r in rows); comm = sum(float(r["comm_s"]) for r in rows)
    valid = [(t[i], int(r["samples"]), int(r["step"]), float(r["valid_loss"]))
             for i, r in enumerate(rows) if r["valid_loss"]]
    ttt = stt = step_t = None
    for k, (tv, sv, st, v) in enumerate(valid):
        if v <= target:
            step_t = st
            if k > 0 and valid[k-1][3] > target:
                t0, s0, _, v0 = valid[k-1]
                a = (v0 - target) / (v0 - v)
                ttt, stt = t0 + a * (tv - t0), s0 + a * (sv - s0)
            else:
                ttt, stt = tv, sv
            break
    out = dict(name=name, ranks=ranks, wall=wall, sps=processed / wall, util=comp / (comp + comm),
               final_loss=float(rows[-1]["loss"]), best=min(v for *_, v in valid), ttt=ttt, stt=stt,
               step_t=step_t, participants=[r["participants"] for r in rows], bs=sum(int(r["bytes_sent"]) for r in rows),
               br=sum(int(r["bytes_recv"]) for r in rows), trainer_samples=processed)
    vols = {}
    try:
        brows = list(csv.DictReader(open(f"{d}/bridge.csv")))
    except FileNotFoundError:
        brows = None
    if brows is not None:
        out["trainer_samples"] = sum(int(b["trainer_samples"]) for b in brows)
        out["wan_sent"] = sum(float(b["bytes_sent"]) for b in brows)
        out["wan_recv"] = sum(float(b["bytes_recv"]) for b in brows)
        # the bridge's clock against the trainer's: the first step both record (one process here)
        step_t0 = {int(r["step"]): t[i] for i, r in enumerate(rows)}
        off = step_t0[int(brows[0]["step"])] - float(brows[0]["time_s"])
        # sessions: joined .. left/kicked/lost/unfinished, else the last event before the next
        # joined or the end of the log
        with open(f"{d}/volunteers.csv") as f:
            next(f)
            for line in f:
                ts, step, ident, rest = line.rstrip("\n").split(",", 3)
                namef, tok, ev, n, detail = rest.split(",", 4)
                if len(namef) >= 2 and namef[0] == namef[-1] == '"':  # newer bridges quote names
                    namef = namef[1:-1].replace('""', '"')
                at = float(ts) + off
                v = vols.setdefault(ident, dict(name=namef, sess=[], open=None, last=None, acc=0, sent=None, recv=None))
                if ev == "joined":
                    if v["open"] is not None: v["sess"].append((v["open"], v["last"]))
                    v["open"] = v["last"] = at
                elif ev in ("left", "kicked", "lost", "unfinished"):
                    if v["open"] is not None: v["sess"].append((v["open"], at)); v["open"] = None
                elif ev in ("accepted", "accepted-stale", "dropped-stale", "late", "live"):
                    if ev.startswith("accepted"): v["acc"] += int(n)
                    if v["open"] is not None: v["last"] = max(v["last"], at)
                elif ev == "summary":
                    kv = dict(p.split("=") for p in detail.strip('"').split())
                    v["sent"], v["recv"] = float(kv["bytes_in"]), float(kv["bytes_out"])
        for v in vols.values():
            if v["open"] is not None: v["sess"].append((v["open"], v["last"]))
            v["conn"] = sum(b - a for a, b in v["sess"])
    out["vols"] = vols
    av = info["config"].get("averaging", {})
    out["mode"] = av.get("mode", "sync")
    out["inner_steps"] = int(av["inner_steps"]) if out["mode"] == "diloco" else None
    out["trained"] = out["trainer_samples"] + sum(v["acc"] for v in vols.values())
    # mean over trainer ranks (each as rank 0) and volunteers of bytes sent + received
    tb = ranks * (out["bs"] + out["br"]) + sum(v["sent"] + v["recv"] for v in vols.values())
    out["bpp"] = tb / (ranks + len(vols))
    out["wan_bps"] = (out["wan_sent"] + out["wan_recv"]) / out["trained"] if brows is not None else None
    vol_h = sum(v["conn"] for v in vols.values()) / 3600
    out["vol_h"] = vol_h
    out["ph"] = ranks * wall / 3600 + vol_h
    npr = node_price.get(name, default_node)
    def vprice(ident, v):
        if v["name"] in vol_price: return vol_price[v["name"]]
        for p, x in vol_id_price.items():
            if ident.startswith(p): return x
        return vol_default
    out["cost"] = nodes * wall / 3600 * npr + sum(v["conn"] / 3600 * vprice(i, v) for i, v in vols.items())
    if ttt is not None:
        out["ctt"] = nodes * ttt / 3600 * npr + sum(
            sum(max(0, min(b, ttt) - max(a, 0)) for a, b in v["sess"]) / 3600 * vprice(i, v) for i, v in vols.items())
    else:
        out["ctt"] = None
    return out

exp = [analyze(d) for d in dirs]
assert len(rep["runs"]) == len(exp), "run count"
b = exp[0]
for got, e in zip(rep["runs"], exp):
    n = e["name"]
    if got["name"] != n: print(f"  name {got['name']} != {n}"); fails += 1
    close(got["wall_s"], e["wall"], "wall_s", n)
    close(got["samples_per_s"], e["sps"], "samples_per_s", n)
    close(got["compute_utilization"], e["util"], "compute_utilization", n)
    pp = [int(r) for r in e["participants"]]
    close(got["participants_per_step"]["min"], min(pp), "participants min", n)
    close(got["participants_per_step"]["mean"], sum(pp) / len(pp), "participants mean", n)
    close(got["participants_per_step"]["max"], max(pp), "participants max", n)
    close(got["final_loss"], e["final_loss"], "final_loss", n)
    close(got["best_valid_loss"], e["best"], "best_valid_loss", n)
    close(got["target"]["time_s"], e["ttt"], "time to target", n)
    close(got["target"]["samples"], e["stt"], "samples to target", n)
    close(got["target"]["step"], e["step_t"], "step at target", n)
    close(got["traffic"]["trainer_bytes_sent_per_rank"], e["bs"], "trainer bytes sent", n)
    close(got["traffic"]["trainer_bytes_recv_per_rank"], e["br"], "trainer bytes recv", n)
    close(got["traffic"]["bridge_wan_bytes_sent"], e.get("wan_sent"), "bridge WAN sent", n)
    close(got["traffic"]["bridge_wan_bytes_recv"], e.get("wan_recv"), "bridge WAN recv", n)
    close(got["trainer_samples"], e["trainer_samples"], "trainer samples", n)
    close(got["volunteer_hours"], e["vol_h"], "volunteer hours", n)
    close(got["participant_hours"], e["ph"], "participant-hours", n)
    close(got["cost"], e["cost"], "cost", n)
    close(got["cost_to_target"], e["ctt"], "cost to target", n)
    if got["mode"] != e["mode"]: print(f"  {n}: mode {got['mode']} != {e['mode']}"); fails += 1
    close(got["inner_steps"], e["inner_steps"], "inner steps", n)
    close(got["trained_samples"], e["trained"], "trained samples", n)
    close(got["traffic"]["bytes_per_participant"], e["bpp"], "bytes per participant", n)
    close(got["wan_bytes_per_sample"], e["wan_bps"], "WAN bytes per sample", n)
    vols = [p for p in got["participants"] if p["kind"] == "volunteer"]
    if len(vols) != len(e["vols"]): print(f"  {n}: {len(vols)} volunteers, expected {len(e['vols'])}"); fails += 1
    for p in vols:
        v = e["vols"][p["identity"]]
        close(p["hours"], v["conn"] / 3600, f"{p['name']} hours", n)
        close(p["samples"], v["acc"], f"{p['name']} samples", n)
        close(p["bytes_sent"], v["sent"], f"{p['name']} bytes sent", n)
        close(p["bytes_recv"], v["recv"], f"{p['name']} bytes recv", n)
    tr = [p for p in got["participants"] if p["kind"] == "trainer"]
    if len(tr) != e["ranks"]: print(f"  {n}: {len(tr)} trainer rows"); fails += 1
    for p in tr: close(p["samples"], e["trainer_samples"] / e["ranks"], "rank samples", n)
    c = got["comparison"]
    close(c["time_to_target_ratio"], e["ttt"] / b["ttt"] if e["ttt"] is not None else None, "time-to-target ratio", n)
    close(c["throughput_ratio"], e["sps"] / b["sps"], "throughput ratio", n)
    close(c["cost_ratio"], e["cost"] / b["cost"], "cost ratio", n)
    close(c["cost_to_target_ratio"], e["ctt"] / b["ctt"] if e["ctt"] is not None else None, "cost-to-target ratio", n)
# the fixtures must exercise what they are for
ch = exp[2]["vols"]
if not any(len(v["sess"]) == 2 for v in ch.values()): print("  churn: no volunteer with two sessions"); fails += 1
if exp[3]["wall"] <= max(float(r["time_s"]) for r in csv.DictReader(open(dirs[3] + "/metrics.csv"))):
    print("  resumed: the clock was not continued"); fails += 1
sys.exit(1 if fails else 0)
EOF
# the new columns against exact values of the fixtures (recorded once, checked by hand:
# diloco's WAN bytes are bridge.csv's 15,831,868 in + out over 480 trainer + 96 volunteer samples)
"$REPORT" --target-loss $TARGET --format csv "${RUNS[@]}" 2>"$WORK/err" |
    $PY -c 'import csv, sys
for r in csv.DictReader(sys.stdin):
    print(r["run"], r["mode"], r["inner_steps"], r["trained_samples"], r["bytes_per_participant"], r["wan_bytes_per_sample"])' >"$WORK/cols.txt"
cat >"$WORK/cols.want" <<'WANT'
baseline sync 0 960 311604480 
collab sync 0 958 268651449.4 534772.619
churn sync 0 1200 325652405.6 491317.2625
resumed sync 0 960 311604480 
diloco diloco 10 576 90945073 27484.54514
WANT
diff "$WORK/cols.want" "$WORK/cols.txt" >"$WORK/cols.diff" && ok "mode, inner steps, trained samples, bytes per participant and WAN bytes per sample: exact" \
    || bad "new columns differ: $(cat "$WORK/cols.diff" "$WORK/err")"
"$REPORT" --target-loss $TARGET --format markdown "${RUNS[@]}" | grep -qxF \
    '| diloco | diloco, H=10 | not reached | n/a | 309.9 | 0.59x | 37.4 % | 90.9 MB | 27.5 kB | 0.001596 |' \
    && ok "markdown comparison row of the diloco run: mode, traffic per participant and per sample" || bad "diloco comparison row"
"$REPORT" "$FIX/diloco" | grep -q 'collaborative: 2 trainer ranks + bridge, 2 volunteers; diloco, H=10' \
    && "$REPORT" "$FIX/baseline" | grep -q 'MPI only: 2 trainer ranks; sync' \
    && ok "the run's kind names its averaging mode" || bad "mode in the run's table"
$PY -m json.tool "$WORK/r.json" >/dev/null && ok "json parses (python3 -m json.tool)" || bad "json does not parse"
grep -q '"reached":false' <("$REPORT" --target-loss 7.0 --format json "$FIX/baseline" | tr -d ' \n') \
    && ok "a target below the best validation loss is not reached" || bad "target 7.0 reported as reached"

# ---- 2. formats ---------------------------------------------------------------------------
"$REPORT" --target-loss $TARGET --prices "$WORK/prices.ini" --format csv "${RUNS[@]}" >"$WORK/r.csv"
$PY - "$WORK/r.csv" "$WORK/r.json" <<'EOF' && ok "csv: a header and one row per run, equal column counts, same numbers as json" || bad "csv"
import csv, json, math, sys
rows = list(csv.reader(open(sys.argv[1])))
rep = json.load(open(sys.argv[2]))
assert len(rows) == 1 + len(rep["runs"]), f"{len(rows)} rows"
assert len({len(r) for r in rows}) == 1, f"column counts {[len(r) for r in rows]}"
h = rows[0]
for r, j in zip(rows[1:], rep["runs"]):
    d = dict(zip(h, r))
    assert d["run"] == j["name"]
    assert math.isclose(float(d["wall_s"]), j["wall_s"], rel_tol=1e-9)
    assert math.isclose(float(d["cost"]), j["cost"], rel_tol=1e-9)
    if j["target"]["reached"]:
        assert math.isclose(float(d["time_to_target_s"]), j["target"]["time_s"], rel_tol=1e-9)
    else:
        assert d["time_to_target_s"] == "", "time to target of a run that did not reach it"
    assert d["mode"] == j["mode"], "mode"
    w = j["wan_bytes_per_sample"]
    assert d["wan_bytes_per_sample"] == "" if w is None else math.isclose(float(d["wan_bytes_per_sample"]), w, rel_tol=1e-9)
EOF
"$REPORT" --target-loss $TARGET --prices "$WORK/prices.ini" --format markdown "${RUNS[@]}" >"$WORK/r.md"
"$REPORT" --target-loss $TARGET --prices "$WORK/prices.ini" "${RUNS[@]}" >"$WORK/r.txt"
md_ok=1
for pat in '^# conflux run report' '^## Run collab' '^### Participants of churn' '^| dave | volunteer |' \
           '^| bridge (WAN) | bridge |' '^## Comparison (baseline: baseline)' '^| collab | sync | [0-9.]* s | [0-9.]*x |' \
           '^|---|---|---:|' '(2 segments: resumed'; do
    grep -q -- "$pat" "$WORK/r.md" || { md_ok=0; echo "  markdown lacks: $pat"; }
done
[ $md_ok = 1 ] && ok "markdown: headings, participants and comparison tables" || bad "markdown output"
grep -q '^  rank 0  *trainer' "$WORK/r.txt" && grep -q '^Comparison (baseline: baseline)' "$WORK/r.txt" \
    && ! grep -q '|' "$WORK/r.txt" && ok "text: aligned tables" || bad "text output"
# the baseline named explicitly: a run not among the arguments is added in front
"$REPORT" --baseline "$FIX/resumed" --format csv "$FIX/baseline" >"$WORK/b.csv" \
    && [ "$(sed -n 2p "$WORK/b.csv" | cut -d, -f1)" = resumed ] \
    && [ "$(sed -n 2p "$WORK/b.csv" | awk -F, '{print $(NF-2)}')" = 1 ] \
    && ok "--baseline adds a run in front and is the reference (ratio 1)" || bad "--baseline"
"$REPORT" --baseline "$FIX/collab/" --format json "$FIX/baseline" "$FIX/collab" | tr -d ' \n' | grep -q '"baseline":"collab"' \
    && ok "--baseline picks one of the runs (trailing slash ignored)" || bad "--baseline among the runs"

# ---- 3. plots -----------------------------------------------------------------------------
if "$REPORT" --target-loss $TARGET --plots "$WORK/plots" "${RUNS[@]}" >/dev/null 2>"$WORK/err"; then
    $PY - "$WORK/plots" <<'EOF' && ok "plots: four PNGs with the PNG signature, 1100x650, > 5 kB" || bad "plots"
import os, struct, sys
for n in ("loss_vs_time", "loss_vs_samples", "throughput", "contribution"):
    p = f"{sys.argv[1]}/{n}.png"
    b = open(p, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", f"{p}: not a PNG"
    assert b[12:16] == b"IHDR" and struct.unpack(">II", b[16:24]) == (1100, 650), f"{p}: size"
    assert len(b) > 5000, f"{p}: only {len(b)} bytes"
EOF
    grep -c '"' "$WORK/plots/contribution.dat" | grep -qx $((2 + (2 + 3) + (2 + 3) + 2 + (2 + 2))) \
        && ok "contribution chart: one bar per trainer rank and volunteer of every run" || bad "contribution bars"
else
    bad "--plots failed: $(cat "$WORK/err")"
fi
# a diverged run (loss nan, no validation) in one step at time 0: nothing to draw, still plots
mkdir -p "$WORK/diverged" && cp "$FIX/baseline/run.json" "$WORK/diverged/"
{ head -n 1 "$FIX/baseline/metrics.csv"; echo "0.000,1,8,nan,0.0002,0.00,0.0,0.0000,0.0000,0,0,2,"; } >"$WORK/diverged/metrics.csv"
"$REPORT" --target-loss $TARGET --plots "$WORK/p5" "$WORK/diverged" >"$WORK/out" 2>"$WORK/err" \
    && grep -q 'not reached (no validation rows)' "$WORK/out" && [ -s "$WORK/p5/loss_vs_time.png" ] && [ -s "$WORK/p5/throughput.png" ] \
    && ok "a diverged one-step run: reported (not reached) and plotted ('no data' frames)" || bad "diverged run: $(cat "$WORK/err")"
expect_fail() {  # RC MESSAGE_REGEX DESCRIPTION -- command...
    local rc=$1 re=$2 what=$3; shift 4
    "$@" >"$WORK/out" 2>"$WORK/err"
    local got=$?
    if [ $got = "$rc" ] && grep -Eq -- "$re" "$WORK/err"; then
        ok "$what: $(head -1 "$WORK/err" | cut -c1-150)"
    else
        bad "$what: exit $got (expected $rc), stderr: $(head -2 "$WORK/err")"
    fi
}
expect_fail 1 "^conflux-report: error: gnuplot not found \(looked for '/nonexistent/gnuplot'\).*gnuplot-nox" \
    "gnuplot missing" -- env GNUPLOT=/nonexistent/gnuplot "$REPORT" --plots "$WORK/p2" "$FIX/baseline"
expect_fail 1 "^conflux-report: error: gnuplot not found \(looked for 'gnuplot' in PATH\)" \
    "gnuplot not in PATH" -- env PATH=/nonexistent "$REPORT" --plots "$WORK/p3" "$FIX/baseline"
expect_fail 1 "^conflux-report: error: gnuplot failed \(exit status 1\) \(.*/gnuplot.log\)$" \
    "gnuplot failing" -- env GNUPLOT=/bin/false "$REPORT" --plots "$WORK/p4" "$FIX/baseline"

# ---- 4. bad input ---------------------------------------------------------------------------
B=$FIX/bad
# recorded variants
expect_fail 1 "^conflux-report: error: truncated: the last line has no end of line \($B/truncated/metrics.csv:$(($(wc -l <"$B/truncated/metrics.csv") + 1))\)$" \
    "truncated metrics.csv" -- "$REPORT" "$B/truncated"
expect_fail 1 "^conflux-report: error: bad loss value '8.98x3454' \($B/bad-number/metrics.csv:6\)$" \
    "bad number" -- "$REPORT" "$B/bad-number"
expect_fail 1 "^conflux-report: error: unexpected header: column 6 is 'samples_per_sec', expected 'samples_per_s' \($B/wrong-header/metrics.csv:1\)$" \
    "wrong header" -- "$REPORT" "$B/wrong-header"
expect_fail 1 "^conflux-report: error: truncated JSON: the document ends early \($B/run-json-truncated/run.json:[0-9]+\)$" \
    "truncated run.json" -- "$REPORT" "$B/run-json-truncated"
# variants made here from the recorded runs: NAME FILE EDIT(sed script or a command) MESSAGE
variant() {  # NAME SOURCE_RUN -> $WORK/v/NAME, a copy of the run's four files
    rm -rf "$WORK/v/$1"; mkdir -p "$WORK/v/$1"
    cp "$FIX/$2"/*.csv "$FIX/$2/run.json" "$WORK/v/$1/"
    echo "$WORK/v/$1"
}
V=$(variant short baseline); sed -i '9s/,[^,]*,[^,]*$//' "$V/metrics.csv"
expect_fail 1 "^conflux-report: error: 11 fields, expected 13 \($V/metrics.csv:9\)$" "row with missing fields" -- "$REPORT" "$V"
V=$(variant cut baseline); head -n 40 "$FIX/baseline/metrics.csv" >"$V/metrics.csv"; printf '0.5,41,32' >>"$V/metrics.csv"
expect_fail 1 "^conflux-report: error: truncated: the last line has no end of line \($V/metrics.csv:41\)$" "metrics.csv cut mid-row" -- "$REPORT" "$V"
V=$(variant empty baseline); : >"$V/metrics.csv"
expect_fail 1 "^conflux-report: error: empty file: no header \($V/metrics.csv:1\)$" "empty metrics.csv" -- "$REPORT" "$V"
V=$(variant headonly baseline); head -n 1 "$FIX/baseline/metrics.csv" >"$V/metrics.csv"
expect_fail 1 "^conflux-report: error: no step rows after the header \($V/metrics.csv:2\)$" "header only" -- "$REPORT" "$V"
V=$(variant nometrics baseline); rm "$V/metrics.csv"
expect_fail 1 "^conflux-report: error: cannot open $V/metrics.csv: No such file or directory$" "missing metrics.csv" -- "$REPORT" "$V"
V=$(variant norunjson baseline); rm "$V/run.json"
expect_fail 1 "^conflux-report: error: cannot open $V/run.json: No such file or directory$" "missing run.json" -- "$REPORT" "$V"
expect_fail 1 "^conflux-report: error: cannot open run directory $WORK/nothere: No such file or directory$" "missing run directory" -- "$REPORT" "$WORK/nothere"
V=$(variant negative baseline); sed -i '12s/^\(\([^,]*,\)\{7\}\)[^,]*/\1-0.5/' "$V/metrics.csv"
expect_fail 1 "^conflux-report: error: bad compute_s value '-0.5' \($V/metrics.csv:12\)$" "negative compute time" -- "$REPORT" "$V"
V=$(variant inf baseline); sed -i '3s/^\([^,]*\),/inf,/' "$V/metrics.csv"
expect_fail 1 "^conflux-report: error: bad time_s value 'inf' \($V/metrics.csv:3\)$" "infinite time" -- "$REPORT" "$V"
V=$(variant badvalid baseline); sed -i '11s/,[^,]*$/,7.5e/' "$V/metrics.csv"
expect_fail 1 "^conflux-report: error: bad valid_loss value '7.5e' \($V/metrics.csv:11\)$" "bad valid_loss" -- "$REPORT" "$V"
V=$(variant backwards baseline); sed -i '21s/^\([^,]*\),20,/\1,3,/' "$V/metrics.csv"
expect_fail 1 "^conflux-report: error: step 3 after step 19 at a later time: steps must increase \($V/metrics.csv:21\)$" "step going back" -- "$REPORT" "$V"
V=$(variant crlf baseline); sed -i 's/$/\r/' "$V/metrics.csv"
"$REPORT" --format csv "$V" >/dev/null 2>"$WORK/err" && ok "CRLF line ends are read" || bad "CRLF: $(cat "$WORK/err")"
V=$(variant badjson baseline); sed -i '5s/"ranks":2,/"ranks":2,,/' "$V/run.json"
expect_fail 1 "^conflux-report: error: malformed JSON: .* \($V/run.json:5\)$" "malformed run.json" -- "$REPORT" "$V"
V=$(variant noranks baseline); sed -i '5s/"ranks":2,/"ranks":"two",/' "$V/run.json"
expect_fail 1 "^conflux-report: error: \"ranks\" is not a positive integer \($V/run.json\)$" "ranks not a number" -- "$REPORT" "$V"
V=$(variant bridgebad collab); sed -i '7s/^\(\([^,]*,\)\{3\}\)[^,]*/\1four/' "$V/bridge.csv"
expect_fail 1 "^conflux-report: error: bad trainer_samples value 'four' \($V/bridge.csv:7\)$" "bad bridge.csv number" -- "$REPORT" "$V"
V=$(variant bridgehdr collab); sed -i '1s/,wait_s,/,wait,/' "$V/bridge.csv"
expect_fail 1 "^conflux-report: error: unexpected header: column 14 is 'wait', expected 'wait_s' \($V/bridge.csv:1\)$" "wrong bridge.csv header" -- "$REPORT" "$V"
V=$(variant voltrunc collab); head -c 3000 "$FIX/collab/volunteers.csv" >"$V/volunteers.csv"
expect_fail 1 "^conflux-report: error: truncated: the last line has no end of line \($V/volunteers.csv:$(($(wc -l <"$V/volunteers.csv") + 1))\)$" "truncated volunteers.csv" -- "$REPORT" "$V"
V=$(variant volrow collab); sed -i '4s/,"[^"]*"$//' "$V/volunteers.csv"
expect_fail 1 "^conflux-report: error: malformed row: expected time_s,step,identity,name,token_name,event,samples,\"detail\" \($V/volunteers.csv:4\)$" "volunteers.csv row without detail" -- "$REPORT" "$V"
V=$(variant volid collab); sed -i '6s/^\([^,]*,[^,]*,\)[0-9a-f]*/\1xyz/' "$V/volunteers.csv"
expect_fail 1 "^conflux-report: error: bad identity \(32 hex digits\) 'xyz' \($V/volunteers.csv:6\)$" "bad volunteer identity" -- "$REPORT" "$V"
V=$(variant volsum collab); sed -i '$s/bytes_out=[0-9]*/bytes_out=lots/' "$V/volunteers.csv"
expect_fail 1 "^conflux-report: error: bad summary detail \(no bytes_in=N bytes_out=N\) 'fresh=224 .*' \($V/volunteers.csv:$(wc -l <"$V/volunteers.csv")\)$" "bad summary row" -- "$REPORT" "$V"
V=$(variant volevent collab); sed -i '4s/,live,/,alive,/' "$V/volunteers.csv"
expect_fail 1 "^conflux-report: error: bad event 'alive' \($V/volunteers.csv:4\)$" "unknown volunteer event" -- "$REPORT" "$V"
V=$(variant volmerged collab); sed -i '20{N;s/\n/x/}' "$V/volunteers.csv"
expect_fail 1 "^conflux-report: error: malformed row: .* \($V/volunteers.csv:20\)$" "two volunteers.csv rows run together" -- "$REPORT" "$V"
# DiLoCo's bridge rejects a pseudo-gradient whose norm is out of range: "rejected-norm", dropped
V=$(variant volnorm diloco); sed -i '0,/"bob","alice",accepted,8,/s//"bob","alice",rejected-norm,8,/' "$V/volunteers.csv"
"$REPORT" --format json "$V" 2>"$WORK/err" | tr -d ' \n' | grep -q '"name":"bob".*"accepted_fresh":40,"accepted_stale":0,"dropped_stale":8' \
    && ok "a rejected-norm event counts as dropped" || bad "rejected-norm: $(cat "$WORK/err")"
# a volunteer name with commas (the bridge writes names unquoted) is still read
V=$(variant volcomma collab); sed -i 's/,ann,alice,/,ann\, the great,alice,/' "$V/volunteers.csv"
"$REPORT" --format json "$V" 2>"$WORK/err" | grep -q '"name":"ann, the great"' && ok "a volunteer name with a comma is read" \
    || bad "name with a comma: $(cat "$WORK/err")"
V=$(variant volquoted collab); sed -i 's/,ann,alice,/,"ann ""the great"", and co",alice,/' "$V/volunteers.csv"
"$REPORT" --format json "$V" 2>"$WORK/err" | grep -qF '"name":"ann \"the great\", and co"' \
    && ok "a volunteer name quoted the RFC 4180 way is unquoted" || bad "quoted name: $(cat "$WORK/err")"
# prices
printf '[prices]\nnode = cheap\n' >"$WORK/p1.ini"
expect_fail 1 "^conflux-report: error: bad price 'cheap' for node .* \($WORK/p1.ini:2\)$" "bad price" -- "$REPORT" --prices "$WORK/p1.ini" "$FIX/baseline"
printf '[prices]\nnode = 1\n[gpus]\nx = 1\n' >"$WORK/p2.ini"
expect_fail 1 "^conflux-report: error: unknown section \[gpus\] .* \($WORK/p2.ini:4\)$" "unknown prices section" -- "$REPORT" --prices "$WORK/p2.ini" "$FIX/baseline"
printf '[prices]\ngpu = 4\n' >"$WORK/p3.ini"
expect_fail 1 "^conflux-report: error: no price for node type 'node' of run 'baseline' \($WORK/p3.ini\)$" "run without a node price" -- "$REPORT" --prices "$WORK/p3.ini" "$FIX/baseline"
printf '[prices]\nnode = 1\n[runs]\nbaseline = tpu\n' >"$WORK/p4.ini"
expect_fail 1 "^conflux-report: error: run 'baseline' has node type 'tpu', which \[prices\] does not price \($WORK/p4.ini\)$" "unpriced node type" -- "$REPORT" --prices "$WORK/p4.ini" "$FIX/baseline"
expect_fail 1 "^conflux-report: error: cannot open prices file $WORK/none.ini: No such file or directory$" "missing prices file" -- "$REPORT" --prices "$WORK/none.ini" "$FIX/baseline"
# usage
expect_fail 2 "^conflux-report: error: no RUN_DIR given" "no run" -- "$REPORT"
expect_fail 2 "^conflux-report: error: --format must be text, markdown, csv or json, not 'xml'" "bad format" -- "$REPORT" --format xml "$FIX/baseline"
expect_fail 2 "^conflux-report: error: --target-loss needs a number, not 'low'" "bad target" -- "$REPORT" --target-loss low "$FIX/baseline"
expect_fail 2 "^Try 'conflux-report --help'" "unknown option" -- "$REPORT" --frobnicate "$FIX/baseline"
"$REPORT" --help | grep -q '^  conflux-report --target-loss 7.6 --prices prices.ini' && ok "--help has the example" || bad "--help"
# the --help example itself works as written (from the repository root)
( cd "$WORK" && printf '[prices]\nnode = 2.50\n[volunteers]\nann = 0.05\n' >prices.ini &&
  ln -s "$OLDPWD/tests" tests &&
  "$REPORT" --target-loss 7.6 --prices prices.ini --format markdown --plots plots \
      tests/data/report/baseline tests/data/report/collab >ex.md 2>/dev/null && [ -s plots/contribution.png ] ) \
    && ok "the --help example runs" || bad "the --help example fails"

echo "$fails failure(s)"
[ $fails = 0 ]
