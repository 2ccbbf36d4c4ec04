#!/usr/bin/env bash
# make bench: ALBERT training throughput, conflux against PyTorch, in the same run.
# Config (both sides): L=4 H=256 E=128 NH=4 FFN=1024 V=8192 T=256 B=4 fp32 AdamW, dropout 0,
# 15% masked tokens, 2 threads; PyTorch with OMP_WAIT_POLICY=PASSIVE. The two sides run
# interleaved (REPS repetitions, default 5, each after its own warm-up); the figures are
# medians, with min/median/max shown, and conflux's step broken down by op (models/par.h).
# MFU = model matmul FLOP/s over the OpenBLAS sgemm rate measured here (1024^3, 2 threads).
# usage: tests/bench/bench-albert.sh BUILD_DIR [DATA_DIR]
set -euo pipefail
BUILD=${1:?usage: bench-albert.sh BUILD_DIR}
REPS=${REPS:-5}
STEPS=${STEPS:-10}
THREADS=${THREADS:-2}
PY=/usr/bin/python3
BENCH=$BUILD/tests/bench/bench_albert
. "$(dirname "$0")/isa.sh"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/\(^\|.*[ :]\)$1=\([0-9.]*\).*/\2/p"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); isa=$(cpu_isa) OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
c_tok=(); py_tok=(); py_full=(); sg=(); W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
for r in $(seq "$REPS"); do
    out=$("$BENCH" --threads "$THREADS" --warmup 3 --steps "$STEPS")
    line=$(grep '^conflux_tok_s' <<<"$out")
    c_tok+=("$(field conflux_tok_s <<<"$line")"); gflop=$(field model_gflop_per_step <<<"$line")
    kisa=$(sed -n 's/.* isa=\([a-z0-9]*\).*/\1/p' <<<"$line")
    grep '^breakdown' <<<"$out" >>"$W/breakdown"
    echo "rep $r conflux: $line"
    out=$(OMP_WAIT_POLICY=PASSIVE "$PY" tests/ref/albert_bench.py --threads "$THREADS" --warmup 3 --steps "$STEPS" --gather-masked 1 2>/dev/null)
    py_tok+=("$(field pytorch_tok_s <<<"$out")")
    echo "rep $r pytorch (MLM head on masked rows, as conflux): $out"
    out=$(OMP_WAIT_POLICY=PASSIVE "$PY" tests/ref/albert_bench.py --threads "$THREADS" --warmup 3 --steps "$STEPS" --gather-masked 0 2>/dev/null)
    py_full+=("$(field pytorch_tok_s <<<"$out")")
    echo "rep $r pytorch (MLM head on every token, HF default): $out"
    sg+=("$("$BENCH" --threads "$THREADS" --sgemm | field sgemm_gflops)")
done
stats() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "min=%s median=%s max=%s", a[1], m, a[NR]}'; }
echo "over $REPS repetitions (each the median of $STEPS steps after 3 warm-up steps):"
echo "  conflux tokens/s:        $(stats "${c_tok[@]}")"
echo "  pytorch tokens/s:        $(stats "${py_tok[@]}")"
echo "  pytorch, HF head, tok/s: $(stats "${py_full[@]}")"
echo "  sgemm GFLOP/s (1024^3):  $(stats "${sg[@]}")"
# per-op breakdown of conflux's step, ms per step, median over the repetitions
echo "conflux step breakdown, ms per step (median over repetitions; idle = waiting for the other threads, inside the ops' times):"
for key in $(head -1 "$W/breakdown" | tr ' ' '\n' | sed -n 's/=.*//p'); do
    printf '  %-10s %8s\n' "$key" "$(field "$key" <"$W/breakdown" | median)"
done
C=$(printf '%s\n' "${c_tok[@]}" | median)
P=$(printf '%s\n' "${py_tok[@]}" | median)
PF=$(printf '%s\n' "${py_full[@]}" | median)
G=$(printf '%s\n' "${sg[@]}" | median)
ratio=$(awk -v a="$C" -v b="$P" 'BEGIN {printf "%.2f", a / b}')
ratio_full=$(awk -v a="$C" -v b="$PF" 'BEGIN {printf "%.2f", a / b}')
mfu=$(awk -v t="$C" -v f="$gflop" -v g="$G" 'BEGIN {printf "%.2f", t / 1024 * f / g}')
echo "against PyTorch with the MLM head on every token (HF AlbertForMaskedLM default): pytorch_tok_s=$PF ratio=$ratio_full"
echo "albert-bench: conflux_tok_s=$C pytorch_tok_s=$P ratio=$ratio mfu=$mfu sgemm_gflops=$G isa=$(cpu_isa) kernels=$kisa openblas_coretype=${OPENBLAS_CORETYPE:-unset}"
