#!/usr/bin/env bash
# make bench: ALBERT training throughput, conflux against PyTorch, in the same run.
# Config (both sides): L=4 H=256 E=128 NH=4 FFN=1024 V=8192 T=256 B=4 fp32 AdamW, dropout 0,
# 15% masked tokens, 2 threads; PyTorch with OMP_WAIT_POLICY=PASSIVE. The two sides run
# interleaved (REPS repetitions, each after its own warm-up); the figures are medians.
# MFU = model matmul FLOP/s over the OpenBLAS sgemm rate measured here (1024^3, 2 threads).
# usage: tests/bench/bench-albert.sh BUILD_DIR [DATA_DIR]
set -euo pipefail
BUILD=${1:?usage: bench-albert.sh BUILD_DIR}
REPS=${REPS:-3}
STEPS=${STEPS:-10}
THREADS=${THREADS:-2}
PY=/usr/bin/python3
BENCH=$BUILD/tests/bench/bench_albert
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
c_tok=(); py_tok=(); py_full=(); sg=()
for r in $(seq "$REPS"); do
    out=$("$BENCH" --threads "$THREADS" --warmup 3 --steps "$STEPS")
    c_tok+=("$(field conflux_tok_s <<<"$out")"); gflop=$(field model_gflop_per_step <<<"$out")
    echo "rep $r conflux: $out"
    out=$(OMP_WAIT_POLICY=PASSIVE "$PY" tests/ref/albert_bench.py --threads "$THREADS" --warmup 3 --steps "$STEPS" --gather-masked 1 2>/dev/null)
    py_tok+=("$(field pytorch_tok_s <<<"$out")")
    echo "rep $r pytorch (MLM head on masked rows, as conflux): $out"
    out=$(OMP_WAIT_POLICY=PASSIVE "$PY" tests/ref/albert_bench.py --threads "$THREADS" --warmup 3 --steps "$STEPS" --gather-masked 0 2>/dev/null)
    py_full+=("$(field pytorch_tok_s <<<"$out")")
    echo "rep $r pytorch (MLM head on every token, HF default): $out"
    sg+=("$("$BENCH" --threads "$THREADS" --sgemm | field sgemm_gflops)")
done
C=$(printf '%s\n' "${c_tok[@]}" | median)
P=$(printf '%s\n' "${py_tok[@]}" | median)
PF=$(printf '%s\n' "${py_full[@]}" | median)
G=$(printf '%s\n' "${sg[@]}" | median)
ratio=$(awk -v a="$C" -v b="$P" 'BEGIN {printf "%.2f", a / b}')
ratio_full=$(awk -v a="$C" -v b="$PF" 'BEGIN {printf "%.2f", a / b}')
mfu=$(awk -v t="$C" -v f="$gflop" -v g="$G" 'BEGIN {printf "%.2f", t / 1024 * f / g}')
echo "against PyTorch with the MLM head on every token (HF AlbertForMaskedLM default): pytorch_tok_s=$PF ratio=$ratio_full"
echo "albert-bench: conflux_tok_s=$C pytorch_tok_s=$P ratio=$ratio mfu=$mfu sgemm_gflops=$G openblas_coretype=${OPENBLAS_CORETYPE:-unset}"
