#!/usr/bin/env bash
# conflux-train tensor-parallel ([tp] rows x cols; mpi/tp_run.h) under real mpirun ranks, on
# the real corpus (the tiny training model: H=64, 2 heads, dropout 0.1; 8 sequences a step
# in micro-batches of 2; 20 steps):
#  - equivalence: 1 rank against a 2x1, a 1x2 and a 2x2 grid (oversubscribed), and 2
#    data-parallel replicas of a 2x1 grid: the training loss of every step (metrics.csv),
#    the validation loss, and every parameter after 20 steps within 1e-5 (the grid sums
#    the same products in another order: float32 rounding, as 1 vs 4 ranks in
#    test_mpi_train.sh; a grid that dropped a block, a sum or the dropout's draws is off by
#    ~lr = 1e-3 a step, and the check that a different global batch is told apart shows the
#    comparison can fail);
#  - run.json shows the layout (replicas x grid), conflux-report reads it;
#  - checkpoints: the 2x2 grid's checkpoint is the one-rank layout (conflux-fill-mask, a
#    one-process tool, reads it); the 2x2 run's checkpoint of step 10 resumed on the 2x2
#    grid equals the straight 2x2 run bit for bit; it continued on 1 rank, and the 1-rank
#    checkpoint of step 10 continued on the 2x2 grid, equal 1 rank straight (1e-5); a
#    resumed run's grid is its command line's, not the checkpoint's;
#  - a job with a bridge: a 2x1 grid + the bridge + 2 volunteers (whole models) == 4 MPI
#    ranks (1e-5), every step with 3 participants (the grid counts once);
#  - wrong layouts are refused with exit 2 and the message that names them: a grid that
#    does not divide the ranks, more grid rows than heads, SOP, DiLoCo, tp.rows = 0.
# Every run checks that its ranks really ran (run.json's rank count; as root, a refused
# mpirun exits 0 having run nothing).
# usage: tests/mpi/test_mpi_tp_train.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
BIN=$BUILD/bin
source tests/lib.sh
command -v mpirun >/dev/null || skip "no mpirun"
[ -f "$DATA/shards/train.h5" ] || skip "no token shards in $DATA/shards"
export OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(timeout 300 mpirun --allow-run-as-root --oversubscribe)
WORK=$(mktemp -d)
cleanup() { jobs -p | xargs -r kill -9 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
TINY=("${TINY_MODEL[@]}" --set train.global_batch=8 --set train.micro_batch=2 --set train.eval_every=10
      --set train.eval_samples=16 --set train.steps=20 --set train.replica_check_every=5
      --set train.checkpoint_every=10 -q)
grid() { echo --set tp.rows=$1 --set tp.cols=$2; }

layout_is() {  # DIR RANKS REPLICAS ROWS COLS: run.json's ranks and layout
    /usr/bin/python3 - "$@" <<'EOF' 2>/dev/null
import json, sys
d, n, D, P, Q = sys.argv[1], *map(int, sys.argv[2:])
j = json.load(open(d + "/run.json"))
l = j["layout"]
sys.exit(not (j["ranks"] == n and l["replicas"] == D and l["tp_rows"] == P and l["tp_cols"] == Q
              and j["config"]["tp"]["rows"] == str(P) and j["config"]["tp"]["cols"] == str(Q)))
EOF
}
losses_match() {  # DIR_A DIR_B TOL: every step's loss and every validation loss
    /usr/bin/python3 - "$@" <<'EOF'
import csv, math, sys
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
ra = list(csv.DictReader(open(a + "/metrics.csv")))
rb = list(csv.DictReader(open(b + "/metrics.csv")))
assert len(ra) == len(rb) == 20, (len(ra), len(rb))
d = max(abs(float(x["loss"]) - float(y["loss"])) for x, y in zip(ra, rb))
v = [(float(x["valid_loss"]), float(y["valid_loss"])) for x, y in zip(ra, rb) if x["valid_loss"] not in ("", "nan")]
assert len(v) == 2, v
dv = max(abs(x - y) for x, y in v)
print(f"loss max |diff| {d:.3g} over 20 steps, validation {dv:.3g} (tolerance {tol:g})")
sys.exit(not (d <= tol and dv <= tol))
EOF
}

# --- equivalence: 1 rank against grids
"${MPIRUN[@]}" -np 1 "$BIN/conflux-train" "${TINY[@]}" --set run.dir="$WORK/np1" \
    && layout_is "$WORK/np1" 1 1 1 1 && ok "1 rank: 20 steps" || bad "1-rank run"
for run in "2 2 1" "2 1 2" "4 2 2" "4 2 1"; do
    set -- $run
    n=$1 P=$2 Q=$3 D=$(($1 / ($2 * $3)))
    name="$D x a ${P}x${Q} grid ($n ranks)"
    "${MPIRUN[@]}" -np "$n" "$BIN/conflux-train" "${TINY[@]}" $(grid "$P" "$Q") --set run.dir="$WORK/g$n$P$Q" \
        >"$WORK/g$n$P$Q.log" 2>&1 || { bad "$name: exit $?: $(tail -3 "$WORK/g$n$P$Q.log")"; continue; }
    layout_is "$WORK/g$n$P$Q" "$n" "$D" "$P" "$Q" && ok "$name: run.json shows ranks $n, $D replica(s) of ${P}x${Q}" \
        || bad "$name: run.json layout"
    losses_match "$WORK/np1" "$WORK/g$n$P$Q" 1e-5 && ok "$name: loss == 1 rank's" || bad "$name: loss differs"
    compare "$WORK/np1/checkpoint-000020.h5" "$WORK/g$n$P$Q/checkpoint-000020.h5" 1e-5 \
        && ok "$name: parameters after 20 steps == 1 rank's" || bad "$name: parameters differ from 1 rank's"
done
"${MPIRUN[@]}" -np 4 "$BIN/conflux-train" "${TINY[@]}" $(grid 2 2) --set train.global_batch=6 \
    --set run.dir="$WORK/other" >/dev/null 2>&1
compare "$WORK/np1/checkpoint-000020.h5" "$WORK/other/checkpoint-000020.h5" 1e-5 >/dev/null \
    && bad "a different global batch went unnoticed" || ok "a different global batch is told apart"
"$BIN/conflux-fill-mask" --checkpoint "$WORK/g422/checkpoint-000020.h5" --tokenizer "$DATA/tokenizer" \
    "Он [MASK] домой." >/dev/null && ok "the 2x2 grid's checkpoint loads in a one-process tool" \
    || bad "conflux-fill-mask cannot read the 2x2 checkpoint"

# conflux-report reads the layout (and refuses one that does not fit the ranks)
"$BIN/conflux-report" "$WORK/g422" 2>&1 | grep -q "^Tensor-parallel: 1 replica of a 2 x 2 grid." \
    && ok "conflux-report shows the 2x2 layout" || bad "conflux-report: no layout line"
mkdir -p "$WORK/badlayout" && cp "$WORK/g422/metrics.csv" "$WORK/badlayout/" &&
    sed 's/"tp_rows": *2/"tp_rows": 3/' "$WORK/g422/run.json" >"$WORK/badlayout/run.json"
"$BIN/conflux-report" "$WORK/badlayout" >"$WORK/badlayout.log" 2>&1; rc=$?
[ $rc = 1 ] && grep -q "layout must be an object whose tp_rows x tp_cols grid divides the 4 ranks" "$WORK/badlayout.log" \
    && ok "conflux-report refuses a layout that does not divide the ranks (exit 1)" \
    || bad "bad layout: rc=$rc $(cat "$WORK/badlayout.log")"

# --- checkpoints across layouts (step 10 of the runs above), and resume on the same grid bit
# for bit
"${MPIRUN[@]}" -np 4 "$BIN/conflux-train" --resume "$WORK/g422/checkpoint-000010.h5" $(grid 2 2) \
    --set run.dir="$WORK/res22" -q && layout_is "$WORK/res22" 4 1 2 2 || bad "2x2 resume on 2x2"
compare "$WORK/g422/checkpoint-000020.h5" "$WORK/res22/checkpoint-000020.h5" 0 \
    && ok "2x2 to step 10 + 2x2 to step 20 == 2x2 straight, bit for bit" || bad "2x2 resume is not bit for bit"
"${MPIRUN[@]}" -np 1 "$BIN/conflux-train" --resume "$WORK/g422/checkpoint-000010.h5" \
    --set run.dir="$WORK/res1" -q 2>"$WORK/res1.log" && layout_is "$WORK/res1" 1 1 1 1 || bad "2x2 checkpoint resumed on 1 rank"
grep -qF "note: resuming on a 1 x 1 grid; the checkpoint was trained on 2 x 2 (the grid is the launch's: --set tp.rows=2 --set tp.cols=2 to continue on it)" \
    "$WORK/res1.log" && ok "a resume on another grid says so" || bad "no note of the checkpoint's grid: $(cat "$WORK/res1.log")"
compare "$WORK/np1/checkpoint-000020.h5" "$WORK/res1/checkpoint-000020.h5" 1e-5 \
    && ok "2x2 to step 10 + 1 rank to step 20 == 1 rank straight" || bad "2x2 -> 1 rank differs"
"${MPIRUN[@]}" -np 4 "$BIN/conflux-train" --resume "$WORK/np1/checkpoint-000010.h5" $(grid 2 2) \
    --set run.dir="$WORK/res1to22" -q || bad "1-rank checkpoint resumed on 2x2"
compare "$WORK/np1/checkpoint-000020.h5" "$WORK/res1to22/checkpoint-000020.h5" 1e-5 \
    && ok "1 rank to step 10 + 2x2 to step 20 == 1 rank straight" || bad "1 rank -> 2x2 differs"
# the resumed runs take the grid from the command line, not from the checkpoint (which says
# 2 x 2 for g422's): res1 ran on 1 x 1 (layout_is above), and a 2 x 2 checkpoint resumed on
# 3 ranks is not refused for a grid it does not ask for
"${MPIRUN[@]}" -np 3 "$BIN/conflux-train" --resume "$WORK/g422/checkpoint-000010.h5" --set train.steps=11 \
    --set run.dir="$WORK/res3" -q && layout_is "$WORK/res3" 3 3 1 1 \
    && ok "a 2x2 checkpoint resumes on 3 ranks of plain data parallelism" || bad "2x2 checkpoint on 3 ranks"

# --- a bridge and volunteers with a tensor-parallel cluster
"${MPIRUN[@]}" -np 4 "$BIN/conflux-train" "${TINY[@]}" --set run.dir="$WORK/mpi4" \
    && layout_is "$WORK/mpi4" 4 4 1 1 || bad "4-rank reference"
PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" vol --out "$WORK/vol.token" >/dev/null || bad "token issue"
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")
"${MPIRUN[@]}" -np 2 "$BIN/conflux-train" "${TINY[@]}" $(grid 2 1) --set run.dir="$WORK/hy" \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$PORT --aggregate mean \
    --codecs fp32 --plan equal --wait-volunteers 2 --wait-timeout 60 >"$WORK/hy.bridge.log" 2>&1 &
mp=$!
for v in 1 2; do
    "$BIN/conflux-volunteer" --join "127.0.0.1:$PORT#$FP" --token-file "$WORK/vol.token" --name "v$v" \
        --identity-file "$WORK/v$v.id" --set train.threads=1 --retries 30 >"$WORK/hy.v$v.log" 2>&1 &
done
wait $mp; rc=$?
wait
if [ $rc = 0 ] && layout_is "$WORK/hy" 2 1 2 1; then
    rows=$(awk -F, 'NR > 1 && $12 == 3' "$WORK/hy/metrics.csv" | wc -l)
    ended=$(grep -l "the run ended; contributed to 20 step" "$WORK"/hy.v*.log | wc -l)
    [ "$rows" = 20 ] && [ "$ended" = 2 ] && ok "a 2x1 grid + bridge + 2 volunteers: 20 steps of 3 participants" \
        || bad "hybrid: $rows rows with 3 participants, $ended volunteers to the end"
    compare "$WORK/mpi4/checkpoint-000020.h5" "$WORK/hy/checkpoint-000020.h5" 1e-5 \
        && ok "2x1 grid + bridge + 2 volunteers == 4 MPI ranks" || bad "the hybrid tensor-parallel run differs"
else
    bad "hybrid tensor-parallel run: exit $rc"; tail -5 "$WORK/hy.bridge.log"
fi

# --- wrong layouts
refused() {  # NAME NP EXPECTED ARGS...: exit 2 and the message
    local name=$1 n=$2 want=$3
    shift 3
    "${MPIRUN[@]}" -np "$n" "$BIN/conflux-train" "${TINY[@]}" --set run.dir="$WORK/bad" "$@" >"$WORK/bad.log" 2>&1
    local rc=$?
    grep -qF -- "$want" "$WORK/bad.log" && [ $rc = 2 ] && ok "$name: exit 2, '$want'" \
        || bad "$name: rc=$rc, $(grep -m1 error "$WORK/bad.log")"
}
refused "a 2x1 grid on 3 ranks" 3 "a tp.rows x tp.cols = 2 x 1 grid (2 ranks) does not divide the job's 3 ranks" $(grid 2 1)
refused "3 grid rows for 2 heads" 3 "tp.rows (3) must be <= model.num_heads (2)" $(grid 3 1)
refused "SOP on a grid" 2 "model.sop = 1 cannot run tensor-parallel" $(grid 2 1) --set model.sop=1
refused "DiLoCo on a grid" 2 "averaging.mode = diloco cannot run tensor-parallel" $(grid 2 1) \
    --set averaging.mode=diloco --set averaging.inner_steps=5
refused "tp.rows = 0" 1 "tp.rows and tp.cols must be in [1, 4096] (got 0 x 1)" --set tp.rows=0

[ $fails = 0 ] && echo "all tensor-parallel train tests passed" || echo "$fails tensor-parallel train test(s) failed"
[ $fails = 0 ]
