#!/usr/bin/env bash
# make bench-dp: ms per optimizer step, share of the all-reduce hidden behind backward,
# and bytes communicated per step, for 1, 2 and 4 ranks (tests/mpi_bench_dp.c). Each rank
# runs the same micro-batch (2 x 128 tokens, 1 OpenBLAS thread) of the `make bench`
# ALBERT; 4 ranks oversubscribe this 2-core machine. Figures are medians after warm-up.
# usage: tests/bench-dp.sh BUILD_DIR
set -euo pipefail
BUILD=${1:?usage: bench-dp.sh BUILD_DIR}
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi OMPI_MCA_mpi_yield_when_idle=1
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
ranks=(); ms=(); ov=(); by=()
cores=$(nproc)
for n in 1 2 4; do
    out=$(mpirun --allow-run-as-root --oversubscribe -np $n "$BUILD/tests/mpi_bench_dp" --steps "${STEPS:-10}")
    note=""; [ $n -gt "$cores" ] && note=" (oversubscribed: $n ranks on $cores cores)"
    echo "$out$note"
    ranks+=($n); ms+=("$(field step_ms <<<"$out")"); ov+=("$(field overlap <<<"$out")"); by+=("$(field bytes_per_step <<<"$out")")
done
join() { local IFS=,; echo "$*"; }
echo "step time at 2 ranks / 1 rank: $(awk -v a="${ms[1]}" -v b="${ms[0]}" 'BEGIN {printf "%.2f", a / b}') (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
echo "dp-bench: ranks=$(join "${ranks[@]}") step_ms=$(join "${ms[@]}") overlap=$(join "${ov[@]}") bytes_per_step=$(join "${by[@]}")"
