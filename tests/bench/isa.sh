# isa.sh: sourced by the benchmark scripts. cpu_isa prints the widest vector instruction set
# this CPU has among the ones conflux's kernels use: avx512 (avx512f), avx2, or sse2.
cpu_isa() {
    if grep -qw avx512f /proc/cpuinfo; then echo avx512
    elif grep -qw avx2 /proc/cpuinfo; then echo avx2
    else echo sse2; fi
}
