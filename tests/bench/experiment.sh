#!/usr/bin/env bash
# The collaborative-vs-HPC comparison on one machine, in the shape of DeDLOC's: the same
# model, data and target validation loss, at equal total compute (the same samples per
# step of the whole run, 64, on the same 2 cores):
#   (a) hpc        the HPC baseline: 2 MPI trainer ranks, global batch 64;
#   (b) sync       1 trainer rank + bridge + 3 volunteers behind emulated links of
#                  different profiles: 1 Gbit/s 1 ms; 200 Mbit/s 20 ms; 50 Mbit/s down /
#                  10 Mbit/s up, 80 ms, 0.5% loss (tests/wan.sh); synchronous averaging of
#                  every step's gradient (the global batch of 64 split among them);
#   (c) diloco     the same participants and links, averaging.mode=diloco: each of the 4
#                  workers (the cluster, each volunteer) takes inner steps of 64/4 = 16
#                  samples of its own, H of them per outer round for the cluster (the bridge
#                  plans each volunteer's from its measured speed), then the pseudo-gradients
#                  are averaged (int8 up with error feedback, int8 down) for the outer
#                  Nesterov step, overlapped with the next round;
#   (d) churn      as (c), but the volunteers come and go: the fast one leaves after 2
#                  rounds, the medium one joins 15 s late, the slow one is killed 25 s in
#                  and rejoins 5 s later.
# Then conflux-report compares them (markdown table and PNG plots in OUT_DIR) and the last
# line sums it up:
#   experiment: hpc_s=T sync_ratio=R1 diloco_ratio=R2 bytes_per_sample_sync=B1
#               bytes_per_sample_diloco=B2 slow_share=S
# T: the hpc run's time to the target validation loss; R1, R2: the sync and diloco runs'
# times to target over T; B1, B2: the bridge's WAN bytes (in + out) per trained sample
# (the trainers' samples plus the volunteers' accepted ones); S: the slow volunteer's
# accepted samples in (c) over what its own measured compute speed (its --stats CSV: share
# samples over compute seconds) would have trained in the time it was connected.
# Knobs: EXPERIMENT_STEPS (480), EXPERIMENT_TARGET (7.6), EXPERIMENT_H (inner steps, 60),
# EXPERIMENT_OUTER_MOMENTUM (the outer Nesterov momentum, DiLoCo's 0.9),
# EXPERIMENT_RUNS (which of "hpc sync diloco churn" to run; the last line needs the first three).
# usage: tests/bench/experiment.sh BUILD_DIR DATA_DIR [OUT_DIR]       (root: network namespaces)
set -u
BUILD=${1:?usage: experiment.sh BUILD_DIR DATA_DIR [OUT_DIR]}
DATA=${2:?usage: experiment.sh BUILD_DIR DATA_DIR [OUT_DIR]}
OUT=${3:-build/experiment}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # tests/
source "$HERE/lib.sh"
source "$HERE/wan.sh"
wan_available || { echo "experiment: needs network namespaces: $WAN_SKIP_REASON"; exit 1; }
BIN=$(cd "$BUILD/bin" && pwd)
DATA=$(cd "$DATA" && pwd)
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cleanup() {
    [ -n "${TOK:-}" ] && pkill -9 -f -- "--token-file $TOK" 2>/dev/null
    wan_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export WAN_QUIET=1
STEPS=${EXPERIMENT_STEPS:-480}
TARGET=${EXPERIMENT_TARGET:-7.6}
H=${EXPERIMENT_H:-60}
MOM=${EXPERIMENT_OUTER_MOMENTUM:-0.9}
RUNS=${EXPERIMENT_RUNS:-hpc sync diloco churn}
GB=64       # samples per step of the whole run
WORKERS=4   # diloco: the cluster and 3 volunteers
[ $((STEPS % H)) = 0 ] || { echo "experiment: EXPERIMENT_STEPS ($STEPS) must be a multiple of EXPERIMENT_H ($H)"; exit 2; }
MODEL=(--set data.train="$DATA/shards/train.h5" --set data.valid="$DATA/shards/valid.h5"
       --set model.hidden_size=128 --set model.num_heads=4 --set model.embedding_size=64
       --set model.intermediate_size=512 --set model.num_layers=2 --set data.seq_len=64
       --set train.threads=1 --set train.micro_batch=8
       --set train.steps="$STEPS" --set train.eval_every=20 --set train.eval_samples=256
       --set optim.warmup_steps=20 --set train.checkpoint_every=0 --set train.log_every=20 -q)
SYNC=(--set train.global_batch=$GB)
DILOCO=(--set train.global_batch=$((GB / WORKERS)) --set averaging.mode=diloco --set averaging.inner_steps="$H"
        --set averaging.outer_momentum="$MOM")
TOKENS=$OUT/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" experiment --out "$OUT/experiment.token" && TOK=$OUT/experiment.token
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # the join string pins it
[ -n "$TOK" ] || { echo "experiment: cannot issue a token"; exit 1; }
# link profiles: ID RTT_MS JITTER LOSS UP DOWN
wan_link_up 211 1 0 0 1000 1000 || exit 1
wan_link_up 212 20 0 0 200 200 || exit 1
wan_link_up 213 80 0 0.5 10 50 || exit 1
ISA=$(grep -o -m1 -w avx512f /proc/cpuinfo | head -1)
[ -n "$ISA" ] || ISA=$(grep -o -m1 -w avx2 /proc/cpuinfo | head -1)
echo "experiment: model ALBERT H=128 E=64 L=2 T=64; $GB samples per step of the run; $STEPS steps; target valid loss $TARGET"
echo "experiment: diloco: $WORKERS workers of $((GB / WORKERS)) samples per inner step, H=$H inner steps per outer round (the cluster's), int8 both ways, overlap"
echo "experiment: links fast=1 Gbit/s 1 ms, medium=200 Mbit/s 20 ms, slow=10 up/50 down Mbit/s 80 ms 0.5% loss"
echo "experiment: CPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores, ISA ${ISA:-neither avx2 nor avx512f}, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "experiment: load before the start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on these cores skew the figures)"

volunteer() {  # RUN ID NAME PORT [ARGS...]
    local run=$1 id=$2 name=$3 port=$4; shift 4
    wan_exec "$id" "$BIN/conflux-volunteer" --join "10.77.$id.1:$port#$FP" --token-file "$TOK" --name "$name" \
        --set train.threads=1 --timeout 20 --retries 40 --stats "$OUT/$run.$name.stats.csv" -q "$@" \
        >>"$OUT/$run.$name.log" 2>&1
}

if [[ " $RUNS " == *" hpc "* ]]; then
    echo "== (a) hpc: 2 MPI trainer ranks"
    mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/conflux-train" "${MODEL[@]}" "${SYNC[@]}" \
        --set run.dir="$OUT/hpc" || { echo "experiment: the HPC run failed"; exit 1; }
fi

collab() {  # NAME CHURN TRAIN_ARGS...
    local name=$1 churn=$2 port=$(free_ports)
    shift 2
    mpirun --allow-run-as-root --oversubscribe -np 1 "$BIN/conflux-train" "${MODEL[@]}" "$@" --set run.dir="$OUT/$name" \
        : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 0.0.0.0:$port --deadline 20 \
        --wait-volunteers $([ "$churn" = 1 ] && echo 2 || echo 3) --wait-timeout 120 -q \
        >"$OUT/$name.bridge.log" 2>&1 &
    local mp=$!
    local pids=()
    if [ "$churn" = 0 ]; then
        volunteer $name 211 fast $port & pids+=($!)
        volunteer $name 212 medium $port & pids+=($!)
        volunteer $name 213 slow $port & pids+=($!)
    else
        volunteer $name 211 fast $port --steps 2 & pids+=($!)
        volunteer $name 213 slow $port & local slow=$!
        sleep 15
        volunteer $name 212 medium $port & pids+=($!)
        sleep 10
        pkill -9 -f -- "--name slow"
        wait $slow 2>/dev/null
        sleep 5
        volunteer $name 213 slow $port & pids+=($!)
    fi
    wait $mp || { echo "experiment: the $name run failed"; tail -5 "$OUT/$name.bridge.log"; exit 1; }
    sleep 3
    pkill -f -- "--token-file $TOK" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
}
if [[ " $RUNS " == *" sync "* ]]; then
    echo "== (b) sync: 1 trainer rank + bridge + 3 volunteers (fast, medium, slow links), every step averaged"
    collab sync 0 "${SYNC[@]}"
fi
if [[ " $RUNS " == *" diloco "* ]]; then
    echo "== (c) diloco: the same, DiLoCo with H=$H and int8"
    collab diloco 0 "${DILOCO[@]}"
fi
if [[ " $RUNS " == *" churn "* ]]; then
    echo "== (d) churn: as (c), volunteers leaving, joining late, killed and rejoining"
    collab churn 1 "${DILOCO[@]}"
fi

echo "== comparison (conflux-report)"
DIRS=()
for r in hpc sync diloco churn; do [ -f "$OUT/$r/metrics.csv" ] && DIRS+=("$OUT/$r"); done
"$BIN/conflux-report" --target-loss "$TARGET" --format markdown --plots "$OUT/plots" "${DIRS[@]}" \
    | tee "$OUT/report.md"
"$BIN/conflux-report" --target-loss "$TARGET" --format json "${DIRS[@]}" >"$OUT/report.json" \
    || { echo "experiment: conflux-report failed"; exit 1; }
echo "experiment: table in $OUT/report.md, plots in $OUT/plots/"
# the summary line, from the report and the slow volunteer's own --stats CSV
/usr/bin/python3 - "$OUT" <<'PY'
import csv, json, math, sys
out = sys.argv[1]
runs = {r["name"]: r for r in json.load(open(f"{out}/report.json"))["runs"]}
def num(x): return float("nan") if x is None else float(x)
def fmt(x, d): return "nan" if math.isnan(x) else f"{x:.{d}f}"
T = num(runs["hpc"]["target"]["time_s"]) if "hpc" in runs else math.nan
ratio = {k: num(runs[k]["target"]["time_s"]) / T if k in runs else math.nan for k in ("sync", "diloco")}
bps = {k: num(runs[k]["wan_bytes_per_sample"]) if k in runs else math.nan for k in ("sync", "diloco")}
S = math.nan
if "diloco" in runs:
    slow = [p for p in runs["diloco"]["participants"] if p["kind"] == "volunteer" and p["name"] == "slow"]
    rows = list(csv.DictReader(open(f"{out}/diloco.slow.stats.csv")))
    n = sum(int(r["share_samples"]) for r in rows)
    c = sum(float(r["compute_s"]) for r in rows if int(r["share_samples"]) > 0)
    if slow and n > 0 and c > 0:
        speed = n / c  # samples per second of compute, measured on the volunteer
        could = speed * slow[0]["hours"] * 3600
        S = slow[0]["samples"] / could
        print(f"experiment: slow volunteer (diloco): {slow[0]['samples']:.0f} samples accepted; it computed {n} "
              f"in {c:.1f} s ({speed:.1f} samples/s) and was connected {slow[0]['hours'] * 3600:.1f} s "
              f"(could have trained {could:.0f})")
# the same without the first round, whose bytes are mostly the volunteers' state download
for k in ("sync", "diloco"):
    try:
        br = list(csv.DictReader(open(f"{out}/{k}/bridge.csv")))[1:]
    except FileNotFoundError:
        continue
    b = sum(float(r["bytes_sent"]) + float(r["bytes_recv"]) for r in br)
    n = sum(int(r["trainer_samples"]) + int(r["fresh_samples"]) + int(r["stale_samples"]) for r in br)
    if n: print(f"experiment: {k}: {b / n:.0f} WAN bytes per trained sample after the first round "
                f"(the first holds the volunteers' state downloads)")
print(f"experiment: hpc_s={fmt(T, 2)} sync_ratio={fmt(ratio['sync'], 2)} diloco_ratio={fmt(ratio['diloco'], 2)} "
      f"bytes_per_sample_sync={fmt(bps['sync'], 0)} bytes_per_sample_diloco={fmt(bps['diloco'], 0)} slow_share={fmt(S, 2)}")
PY
