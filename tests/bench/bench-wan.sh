#!/bin/bash
# make bench-wan: a volunteer behind an emulated internet link (50 ms RTT, 1% loss each way,
# 20 Mbit/s up, 100 Mbit/s down; tests/wan.sh) trains with 2 cluster ranks + the bridge.
# Measures, per TCP congestion control (bbr, the default of conflux's sockets, and cubic,
# what most internet hosts run, for reference):
#   up_goodput     gradient upload payload rate at the bridge (bytes after the first 256 KiB
#                  chunk over the time from that chunk's arrival to the last) / 20 Mbit/s
#   down_goodput   summed-gradient download rate at the volunteer, timed the same way
#                  (after the first chunk) / 100 Mbit/s; the end-to-end rate from
#                  ROUND_CLOSE on is printed too
#   round_overhead_ms  median over rounds with the volunteer: the time trainer rank 0 spends
#                  per round beyond its own compute (plan broadcast, all-reduce with the
#                  bridge, waiting for the volunteer's upload), metrics.csv comm_s
#   cluster_util   trainer rank 0's compute_s / (compute_s + comm_s) over the steps the
#                  volunteer took part in (metrics.csv)
# The link's rate counts Ethernet frames: TCP payload tops out at 1448/1514 = 0.956 of it.
# One TCP stream per direction, chunks pipelined back to back (no request/response per
# chunk), TLS 1.3 (the default). What TLS costs: the bbr run again with --plaintext on both
# sides, on the same link, and the ratio of the goodputs (TLS / plaintext).
# Last line: wan-bench: up_goodput=... down_goodput=... round_overhead_ms=...
# cluster_util=... (the bbr run, TLS).
# usage: tests/bench/bench-wan.sh BUILD_DIR DATA_DIR [STEPS]
set -u
BUILD=${1:?usage: bench-wan.sh BUILD_DIR DATA_DIR [STEPS]}
DATA=${2:?usage: bench-wan.sh BUILD_DIR DATA_DIR [STEPS]}
STEPS=${3:-10}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # tests/
source "$HERE/lib.sh"
source "$HERE/wan.sh"
wan_available || { echo "wan-bench: cannot emulate links here: $WAN_SKIP_REASON"; exit 1; }
BIN=$(cd "$BUILD/bin" && pwd)
DATA=$(cd "$DATA" && pwd)
WORK=$(mktemp -d /tmp/conflux-bench-wan.XXXXXX)
chmod 755 "$WORK"
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    wait 2>/dev/null
    wan_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export WAN_QUIET=1
ID=221
wan_link_up $ID 50 0 1 20 100 || exit 1
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" bench --out "$WORK/bench.token"
TOK=$WORK/bench.token
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # the join string pins it
# the benchmark model: ALBERT H=256, 4 heads, E=128, FFN 1024, 4 layers, T=128 (about 1.9M
# parameters: a 3.8 MB fp16 upload, a 7.6 MB fp32 download per round); a global batch of
# 384 sequences makes a step of about 10 s on these 2 shared cores, so a round's transfers
# (about 2.5 s at the link's rates) can hide behind the trainers' compute
MODEL=(--set data.train="$DATA/shards/train.h5" --set data.valid= --set model.hidden_size=256
       --set model.num_heads=4 --set model.embedding_size=128 --set model.intermediate_size=1024
       --set model.num_layers=4 --set data.seq_len=128 --set model.dropout=0
       --set train.threads=1 --set train.global_batch=384 --set train.micro_batch=8
       --set train.eval_every=0 --set train.replica_check_every=0 --set optim.warmup_steps=2)
echo "wan-bench: link 50 ms RTT, 1% loss each way, 20 Mbit/s up, 100 Mbit/s down; 2 trainer ranks"
echo "wan-bench: + bridge + 1 volunteer, 1 OpenBLAS thread each (2 cores shared), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"

launch() {  # NAME CC STEPS [TRAIN_ARGS...]: one run into $WORK/run-NAME, waits for its end
    local name=$1 cc=$2 steps=$3            # (PLAIN=1: bridge and volunteer with --plaintext)
    shift 3
    local port=$(free_ports) r=$WORK/run-$name
    local join="10.77.$ID.1:$port#$FP" plain=()
    [ "${PLAIN:-0}" = 1 ] && join=10.77.$ID.1:$port plain=(--plaintext)
    mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/conflux-train" "${MODEL[@]}" \
        --set train.steps="$steps" --set run.dir="$r" -q "$@" \
        : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 0.0.0.0:$port --tcp-cc "$cc" "${plain[@]}" \
        --deadline 30 --wait-volunteers 1 --wait-timeout 120 -q >"$r.bridge.log" 2>&1 &
    local mp=$!
    wan_exec $ID "$BIN/conflux-volunteer" --join "$join" --token-file "$TOK" --name bench "${plain[@]}" \
        --set train.threads=1 --tcp-cc "$cc" --stats "$r.vol.csv" -q >"$r.vol.log" 2>&1 &
    local vp=$!
    wait $mp || { echo "wan-bench: the $name run failed"; tail -5 "$r.bridge.log" "$r.vol.log"; exit 1; }
    # the volunteer ends with the run (or, dropped by then, is still retrying: stop it)
    for _ in $(seq 100); do kill -0 $vp 2>/dev/null || break; sleep 0.1; done
    kill $vp 2>/dev/null
    wait $vp 2>/dev/null
}

run() {  # CC STEPS [NAME]: one synchronous run, prints the figures, sets RESULT
    local cc=$1 name=${3:-$1} r=$WORK/run-${3:-$1}
    launch "$name" "$cc" "$2"
    RESULT=$(/usr/bin/python3 - "$r" "$name" <<'EOF'
import csv, sys, statistics as st
d, cc = sys.argv[1], sys.argv[2]
br = list(csv.DictReader(open(f"{d}/bridge.csv")))
me = list(csv.DictReader(open(f"{d}/metrics.csv")))
vo = list(csv.DictReader(open(f"{d}.vol.csv")))
skip = 1 if len(br) > 4 else 0  # the first round: a probe-sized share, TCP slow start
ub = sum(float(r["upload_bytes_timed"]) for r in br[skip:])
us = sum(float(r["upload_s_timed"]) for r in br[skip:])
up_bps = ub / us if us > 0 else 0.0
shares = [v for v in vo[skip:] if int(v["share_samples"]) > 0]
db = sum(float(v["download_steady_bytes"]) for v in vo[skip:])
ds = sum(float(v["download_steady_s"]) for v in vo[skip:])
down_bps = db / ds if ds > 0 else 0.0
db2 = sum(float(v["download_bytes"]) for v in vo[skip:])
ds2 = sum(float(v["download_s"]) for v in vo[skip:])
down_e2e = db2 / ds2 if ds2 > 0 else 0.0
vol_steps = {int(r["step"]) for r in br if int(r["fresh_samples"]) + int(r["stale_samples"]) > 0}
rows = [m for m in me[skip:] if int(m["step"]) in vol_steps]
comp = sum(float(m["compute_s"]) for m in rows); comm = sum(float(m["comm_s"]) for m in rows)
util = comp / (comp + comm) if comp + comm > 0 else 0.0
over = [1000 * float(m["comm_s"]) for m in rows]
idle = [float(v["round_s"]) - float(v["compute_s"]) - float(v["upload_bytes"]) / up_bps - float(v["download_s"])
        for v in shares] if up_bps > 0 else []
vs = [int(r["fresh_samples"]) for r in br[skip:]] or [0]
print(f"  {cc}: {len(br)} rounds ({skip} warm-up left out); volunteer share {min(vs)}..{max(vs)} of 384 "
      f"samples; upload {up_bps*8/1e6:.1f} Mbit/s, download {down_bps*8/1e6:.1f} Mbit/s "
      f"(end to end, with the first chunk: {down_e2e*8/1e6:.1f}); step "
      f"{st.median(float(m['compute_s'])+float(m['comm_s']) for m in me[skip:]):.2f} s; volunteer idle "
      f"per round (waiting for the cluster) {st.median(idle) if idle else float('nan'):.2f} s", file=sys.stderr)
print(f"up_goodput={up_bps*8/20e6:.3f} down_goodput={down_bps*8/100e6:.3f} "
      f"round_overhead_ms={st.median(over) if over else float('nan'):.0f} cluster_util={util:.3f}")
EOF
)
    echo "wan-bench[$cc]: $RESULT"
}
run cubic 4
CUBIC=$RESULT
run bbr "$STEPS"
TLS_RESULT=$RESULT
# what TLS costs: the same run in plaintext on the same link
PLAIN=1 run bbr "$STEPS" plaintext
TLS_COST=$(/usr/bin/python3 - "$TLS_RESULT" "$RESULT" <<'EOF'
import sys
f = [dict(kv.split("=") for kv in a.split()) for a in sys.argv[1:3]]
r = {k: float(f[0][k]) / float(f[1][k]) if float(f[1][k]) > 0 else float("nan") for k in ("up_goodput", "down_goodput")}
print(f"tls_over_plaintext up_goodput={r['up_goodput']:.3f} down_goodput={r['down_goodput']:.3f} "
      f"(plaintext: up {f[1]['up_goodput']} down {f[1]['down_goodput']})")
EOF
)
RESULT=$TLS_RESULT
SYNC_BPS=$(/usr/bin/python3 - "$WORK/run-bbr" <<'EOF'
import csv, sys
br = list(csv.DictReader(open(f"{sys.argv[1]}/bridge.csv")))[1:]  # after the first round (state download)
b = sum(float(r["bytes_sent"]) + float(r["bytes_recv"]) for r in br)
n = sum(int(r["trainer_samples"]) + int(r["fresh_samples"]) + int(r["stale_samples"]) for r in br)
print(f"{b / n:.0f}" if n else "nan")
EOF
)

# DiLoCo in the same setting (bbr): the cluster and the volunteer are 2 workers of half the
# global batch each (192 samples per inner step), DL_H inner steps per outer round, int8
# both ways, the exchange overlapped with the next round
DL_H=${DL_H:-4}
DL_ROUNDS=${DL_ROUNDS:-4}
launch diloco bbr $((DL_H * DL_ROUNDS)) --set averaging.mode=diloco --set averaging.inner_steps="$DL_H" \
    --set train.global_batch=192
DILOCO=$(/usr/bin/python3 - "$WORK/run-diloco" "$DL_H" "$SYNC_BPS" <<'EOF'
import csv, sys, statistics as st
d, H, sync_bps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
br = list(csv.DictReader(open(f"{d}/bridge.csv")))
me = list(csv.DictReader(open(f"{d}/metrics.csv")))
steady = br[1:]  # round 1 carries the volunteer's state download
b = sum(float(r["bytes_sent"]) + float(r["bytes_recv"]) for r in steady)
n = sum(int(r["trainer_samples"]) + int(r["fresh_samples"]) + int(r["stale_samples"]) for r in steady)
vs = [int(r["fresh_samples"]) + int(r["stale_samples"]) for r in steady]
# per round after the first: trainer rank 0's time beyond its own compute, summed over the
# round's inner steps (the outer exchange, any wait), and its compute share
rounds = {}
for m in me:
    rnd = (int(m["step"]) - 1) // H + 1
    if rnd > 1:
        c, w = rounds.get(rnd, (0.0, 0.0))
        rounds[rnd] = (c + float(m["compute_s"]), w + float(m["comm_s"]))
over = [1000 * w for c, w in rounds.values()]
comp = sum(c for c, w in rounds.values()); comm = sum(w for c, w in rounds.values())
bps = b / n if n else float("nan")
print(f"  diloco: {len(br)} outer rounds of H={H} (the first left out: state download); volunteer "
      f"samples per round {min(vs or [0])}..{max(vs or [0])} (the cluster's: {H * 192}); "
      f"{b / max(len(steady), 1) / 1e6:.2f} MB per round on the link", file=sys.stderr)
print(f"H={H} bytes_per_sample={bps:.0f} bytes_per_round={b / max(len(steady), 1):.0f} "
      f"round_overhead_ms={st.median(over) if over else float('nan'):.0f} "
      f"cluster_util={comp / (comp + comm) if comp + comm > 0 else float('nan'):.3f} "
      f"sync_bytes_per_sample={sync_bps:.0f} reduction={sync_bps / bps:.0f}x")
EOF
)
echo "wan-bench: figures below are bbr (conflux's default on its sockets); cubic gave: $CUBIC"
echo "wan-bench-diloco: $DILOCO"
echo "wan-bench-tls: $TLS_COST"
echo "wan-bench: $RESULT"
