#!/usr/bin/env bash
# make bench-swav: SwAV training throughput, conflux against PyTorch, in the same run: the
# default conflux-swav model and step (tests/bench/bench_swav.c, tests/ref/swav_bench.py: 256
# images in micro-batches of 64, 2 + 4 views, forward, Sinkhorn, loss, backward, LARS), 2
# threads, PyTorch with OMP_WAIT_POLICY=PASSIVE; REPS (default 3) interleaved repetitions of
# STEPS (default 4) steps after 2 warm-up steps; the medians. The last line reads
#   swav-bench: conflux_img_s=... pytorch_img_s=... ratio=... isa=... openblas_coretype=...
# usage: tests/bench/bench-swav.sh BUILD_DIR
set -euo pipefail
BUILD=${1:?usage: bench-swav.sh BUILD_DIR}
REPS=${REPS:-3}
STEPS=${STEPS:-4}
. "$(dirname "$0")/isa.sh"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/\(^\|.*[ :]\)$1=\([0-9.]*\).*/\2/p"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); isa=$(cpu_isa) OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
c=(); p=()
for r in $(seq "$REPS"); do
    out=$("$BUILD/tests/bench/bench_swav" --threads 2 --warmup 2 --steps "$STEPS")
    echo "rep $r conflux: $out"
    c+=("$(field conflux_img_s <<<"$out")")
    out=$(OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tests/ref/swav_bench.py --threads 2 --warmup 2 --steps "$STEPS")
    echo "rep $r pytorch: $out"
    p+=("$(field pytorch_img_s <<<"$out")")
done
C=$(printf '%s\n' "${c[@]}" | median)
P=$(printf '%s\n' "${p[@]}" | median)
echo "swav-bench: conflux_img_s=$C pytorch_img_s=$P ratio=$(awk -v a="$C" -v b="$P" 'BEGIN {printf "%.2f", a / b}') isa=$(cpu_isa) openblas_coretype=${OPENBLAS_CORETYPE:-unset}"
