#!/usr/bin/env bash
# make bench-dp: ms per optimizer step, share of the all-reduce hidden behind backward,
# and bytes communicated per step, for 1, 2 and 4 ranks (tests/bench/mpi_bench_dp.c). Each rank
# runs the same micro-batch (2 x 128 tokens, 1 OpenBLAS thread) of the `make bench`
# ALBERT; 4 ranks oversubscribe this 2-core machine. Each configuration runs REPS times
# (default 5), interleaved, each run reporting medians over STEPS (default 20) steps after warm-up;
# the figures are the medians of the runs. A 2-rank run without split gradients
# (--no-split: the buckets start only when the shared layer's last application and the
# embeddings are done) is the reference for what the split schedule hides. The same pair
# of 2-rank runs is made with conflux-headline's encoder-decoder (--model headline).
# usage: tests/bench/bench-dp.sh BUILD_DIR
set -euo pipefail
. "$(dirname "$0")/isa.sh"
BUILD=${1:?usage: bench-dp.sh BUILD_DIR}
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi OMPI_MCA_mpi_yield_when_idle=1
REPS=${REPS:-5}
cores=$(nproc)
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
configs=("1" "2" "4" "2 --no-split" "2 --model headline" "2 --model headline --no-split")
declare -A out
for ((rep = 1; rep <= REPS; rep++)); do
    for c in "${configs[@]}"; do
        set -- $c
        line=$(mpirun --allow-run-as-root --oversubscribe -np "$1" "$BUILD/tests/bench/mpi_bench_dp" \
               --steps "${STEPS:-20}" "${@:2}")
        echo "  run $rep: $line"
        out[$c]+="$line"$'\n'
    done
done
summary() {  # config -> "step_ms allreduce_ms exposed_ms overlap bytes"
    local c=$1 f v=()
    for f in step_ms allreduce_ms exposed_ms overlap bytes_per_step; do
        v+=("$(printf '%s' "${out[$c]}" | field $f | median)")
    done
    echo "${v[*]}"
}
ranks=(); ms=(); ov=(); by=()
for c in "${configs[@]}"; do
    read -r s a e o b <<<"$(summary "$c")"
    set -- $c
    note=""
    [ "$1" -gt "$cores" ] && note=" (oversubscribed: $1 ranks on $cores cores)"
    case "$c" in
        "2 --no-split") note=" (reference: without split gradients)"; ref=($s $a $e $o $b) ;;
        "2 --model headline") note=" (conflux-headline's default encoder-decoder, 128/32 tokens)" ;;
        "2 --model headline --no-split") note=" (the same, without split gradients)" ;;
        *) ranks+=("$1"); ms+=("$s"); ov+=("$o"); by+=("$b") ;;
    esac
    echo "ranks=$1 step_ms=$s allreduce_ms=$a exposed_ms=$e overlap=$o bytes_per_step=$b$note"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "step time at 2 ranks / 1 rank: $(ratio "${ms[1]}" "${ms[0]}"); without split: $(ratio "${ref[0]}" "${ms[0]}")"
echo "exposed all-reduce at 2 ranks: ${ref[2]} ms without split -> $(summary 2 | cut -d' ' -f3) ms with (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, $REPS runs x ${STEPS:-20} steps)"
join() { local IFS=,; echo "$*"; }
echo "dp-bench: ranks=$(join "${ranks[@]}") step_ms=$(join "${ms[@]}") overlap=$(join "${ov[@]}") bytes_per_step=$(join "${by[@]}") isa=$(cpu_isa) openblas_coretype=${OPENBLAS_CORETYPE:-unset}"
