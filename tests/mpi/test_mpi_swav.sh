#!/usr/bin/env bash
# conflux-swav under real mpirun ranks, on Debian's Fashion-MNIST (make fashion-mnist):
#  - equivalence: 1, 2 and 4 ranks with the same global batch (8 images, micro-batch 2)
#    reach the same parameters after 6 steps; a different global batch is told apart;
#  - resume: 3 steps, then a resume to step 6, equal to 6 steps straight bit for bit (the
#    views are a function of the sample index, LARS's momentum is in the checkpoint, and
#    batch norm uses each micro-batch's statistics, never the running ones);
#  - DiLoCo (rounds of 3 steps): 2 workers run and differ from synchronous training; one
#    worker's round plus a resume equals two rounds bit for bit;
#  - configuration errors: a bad model.stages is a usage error naming the key.
# Tolerance: ranks sum their micro-batches' gradients in another order than one process, so
# float32 rounding differs (~1e-7 relative); LARS turns that into parameter changes far
# below 1e-5 in 6 steps at these rates, while another batch moves parameters by far more.
# One tensor is left out: projection_head.0.bias feeds a batch norm, so its gradient is
# analytically zero and what the backward computes is rounding noise, which LARS scales up
# to a full-size step (trust * lr * ||w||) in a direction that depends on the summation order
# (as it would in PyTorch); its difference after one step was 2.7e-5, every other tensor's
# at most 6e-8.
# usage: tests/mpi/test_mpi_swav.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
BIN=$BUILD/bin
source tests/lib.sh
command -v mpirun >/dev/null || skip "no mpirun"
[ -f "$DATA/fashion/train.h5" ] || skip "no image shards in $DATA/fashion (make fashion-mnist)"
export OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TINY=(--set data.train="$DATA/fashion/train.h5" --set data.valid="$DATA/fashion/test.h5"
      --set model.stages=2 --set model.width1=8 --set model.width2=16 --set model.head_hidden=32
      --set model.out_dim=16 --set model.prototypes=20 --set augment.n_small=2
      --set train.global_batch=8 --set train.micro_batch=2 --set train.steps=6
      --set train.eval_every=3 --set train.eval_samples=8 --set train.replica_check_every=1
      --set swav.freeze_prototypes_steps=2 --set optim.warmup_steps=2 --set optim.lr=2.0
      --set train.threads=1 -q)

# cmp_params A B TOL: all of /params but projection_head.0.bias (see above)
cmp_params() { compare_except "$1" "$2" "$3" projection_head.0.bias; }
ranks_ran() {  # DIR N: run.json says N ranks
    /usr/bin/python3 -c "import json,sys; sys.exit(json.load(open(sys.argv[1]))['ranks'] != int(sys.argv[2]))" \
        "$1/run.json" "$2" 2>/dev/null
}
for n in 1 2 4; do
    "${MPIRUN[@]}" -np $n "$BIN/conflux-swav" "${TINY[@]}" --set run.dir="$WORK/np$n" \
        && ranks_ran "$WORK/np$n" $n && [ -f "$WORK/np$n/finished" ] && ok "$n rank(s) ran 6 steps" || bad "$n-rank run"
done
for n in 2 4; do
    cmp_params "$WORK/np1/checkpoint-000006.h5" "$WORK/np$n/checkpoint-000006.h5" 1e-5 \
        && ok "1 rank == $n ranks" || bad "1 rank != $n ranks"
done
"${MPIRUN[@]}" -np 2 "$BIN/conflux-swav" "${TINY[@]}" --set train.global_batch=6 --set run.dir="$WORK/other" >/dev/null 2>&1
cmp_params "$WORK/np1/checkpoint-000006.h5" "$WORK/other/checkpoint-000006.h5" 1e-5 >/dev/null \
    && bad "a different global batch went unnoticed" || ok "a different global batch is told apart"
# the prototypes moved only after the frozen steps, and every tensor moved by the end
/usr/bin/python3 - "$WORK/np1/checkpoint-000006.h5" <<'PY' && ok "the checkpoint holds torchvision's names and unit prototypes" || bad "checkpoint names or prototypes"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as f:
    names = set(f["params"].keys())
    need = {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.bias", "projection_head.0.weight", "projection_head.3.bias",
            "prototypes.weight"}
    missing = need - names
    print("missing:", sorted(missing)) if missing else None
    # SwAV's prototype normalisation after every update: unit rows in every checkpoint
    norms = np.linalg.norm(f["params"]["prototypes.weight"][()], axis=1)
    print("prototype row norms: %.7f .. %.7f" % (norms.min(), norms.max()))
    sys.exit(1 if missing or f.attrs["model"] not in (b"swav", "swav") or abs(norms - 1).max() > 1e-5 else 0)
PY

# --- resume: 3 steps, then 3 more, == 6 straight, bit for bit
"$BIN/conflux-swav" "${TINY[@]}" --set train.steps=3 --set run.dir="$WORK/half" || bad "first half"
"$BIN/conflux-swav" --resume "$WORK/half/checkpoint-000003.h5" --set train.steps=6 \
    --set data.train="$DATA/fashion/train.h5" --set data.valid="$DATA/fashion/test.h5" \
    --set run.dir="$WORK/half" -q || bad "resume"
compare "$WORK/np1/checkpoint-000006.h5" "$WORK/half/checkpoint-000006.h5" 0 \
    && ok "3 steps + resume to 6 == 6 steps, bit for bit" || bad "resume is not bit for bit"

# --- DiLoCo: outer rounds of 3 inner steps. 2 workers of one rank each run two rounds; a
# cluster that is one worker (2 ranks) resumes bit for bit after a round (a run of several MPI
# workers cannot resume: its checkpoint holds worker 0's inner state only, mpi/outer.c)
DL=(--set averaging.mode=diloco --set averaging.inner_steps=3 --set train.checkpoint_every=3)
"${MPIRUN[@]}" -np 2 "$BIN/conflux-swav" "${TINY[@]}" "${DL[@]}" --set averaging.workers=2 --set run.dir="$WORK/dl2" \
    && [ -f "$WORK/dl2/finished" ] && ok "DiLoCo: 2 workers ran 2 outer rounds" || bad "DiLoCo 2-worker run"
cmp_params "$WORK/np1/checkpoint-000006.h5" "$WORK/dl2/checkpoint-000006.h5" 1e-5 >/dev/null \
    && bad "DiLoCo equals synchronous training (it should not)" || ok "DiLoCo's parameters differ from synchronous training's"
# (as test_diloco.sh: the same run's step-3 checkpoint, resumed into a fresh directory)
"${MPIRUN[@]}" -np 2 "$BIN/conflux-swav" "${TINY[@]}" "${DL[@]}" --set run.dir="$WORK/dl" || bad "DiLoCo 1-worker run"
"${MPIRUN[@]}" -np 2 "$BIN/conflux-swav" --resume "$WORK/dl/checkpoint-000003.h5" \
    --set data.train="$DATA/fashion/train.h5" --set data.valid="$DATA/fashion/test.h5" \
    --set run.dir="$WORK/dlh" -q || bad "DiLoCo resume"
compare "$WORK/dl/checkpoint-000006.h5" "$WORK/dlh/checkpoint-000006.h5" 0 \
    && ok "DiLoCo: a round + resume == two rounds, bit for bit" || bad "DiLoCo resume is not bit for bit"

# --- configuration errors
"$BIN/conflux-swav" "${TINY[@]}" --set model.stages=5 > "$WORK/err.txt" 2>&1; rc=$?
if [ $rc = 2 ] && grep -q "model.stages must be 1 to 4 (got 5)" "$WORK/err.txt"; then
    ok "a bad model.stages: exit 2, $(head -1 "$WORK/err.txt")"
else
    bad "bad model.stages: rc=$rc $(cat "$WORK/err.txt")"
fi

[ $fails = 0 ] && echo "all MPI SwAV tests passed" || echo "$fails MPI SwAV test(s) failed"
[ $fails = 0 ]
