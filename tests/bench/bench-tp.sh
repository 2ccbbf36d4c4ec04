#!/usr/bin/env bash
# make bench-tp: the tensor-parallel ALBERT encoder (mpi/tp_albert.h) of a wide model (H =
# 1024, 16 heads, FFN 4096, E 128, one layer; a micro-batch of 4 x 128 tokens) on 1 rank
# and on 2x1, 1x2 and 2x2 grids (4 ranks oversubscribe a 2-core machine), each line from
# tests/bench/mpi_bench_tp.c: step time, parameter MB per rank, PSGEMM's aggregate rate on
# the FFN's product against OpenBLAS sgemm's on the same cores in the same run, and the
# plain-MPI reference (gather + one sgemm). Each grid runs REPS times (default 3),
# interleaved, each run reporting medians of 5 repetitions after a warm-up; the line
# printed per grid holds the medians over the runs. Ranks are not bound to cores (one rank
# runs sgemm on every core). Prints the CPU's instruction set and OPENBLAS_CORETYPE.
# usage: tests/bench/bench-tp.sh BUILD_DIR
set -euo pipefail
. "$(dirname "$0")/isa.sh"
BUILD=${1:?usage: bench-tp.sh BUILD_DIR}
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi OMPI_MCA_mpi_yield_when_idle=1
REPS=${REPS:-3}
grids=(1x1 2x1 1x2 2x2)
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
declare -A out
for ((rep = 1; rep <= REPS; rep++)); do
    for gr in "${grids[@]}"; do
        n=$(( ${gr%x*} * ${gr#*x} ))
        line=$(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$n" \
               "$BUILD/tests/bench/mpi_bench_tp" --grid "$gr" --reps 5 ${TP_ARGS:-})
        echo "  run $rep: $line"
        out[$gr]+="$line"$'\n'
    done
done
echo "isa=$(cpu_isa) openblas_coretype=${OPENBLAS_CORETYPE:-unset} cores=$(nproc)"
for gr in "${grids[@]}"; do
    v=()
    for f in step_ms param_mb_per_rank pgemm_gflops sgemm_gflops gather_sgemm_ms pgemm_ratio block pblas_nb; do
        v+=("$f=$(printf '%s' "${out[$gr]}" | field "$f" | median)")
    done
    echo "tp-bench: grid=$gr ${v[*]}"
done
