// bench_robust.c: time of the robust aggregation kernels (bridge/robust.h) at the bridge's
// size, one thread.
//
// n floats per contribution (default 1,980,000: README's default ALBERT), k contributions
// for each k given (default 5 17 65): uniform random values in [-1, 1) (a fixed xorshift
// seed, so every build sees the same data), weights uniform in [0.5, 2]. Each kernel runs
// REPS times (default 1) after one untimed warm-up run of the mean (pages touched); the
// minimum is printed. Kernels as the bridge calls them (bridge/aggregate.c): the weighted
// mean, the weighted median, the trimmed mean with trim 0.2 and trimmed counters,
// CenteredClip with tau ratio 1 and 10 iterations.
//
// usage: bench_robust [--n N] [--reps R] [K ...]
// One line per k on stdout:
//   robust-bench: k=K n=N mean_s=... median_s=... trimmed_s=... centered_clip_s=... isa=avx2 openblas_coretype=unset
// and on stderr a 64-bit FNV-1a hash of each kernel's output bits (with the trimmed mean's
// counters and CenteredClip's factors), to compare two builds bit for bit.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/robust.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

// xorshift64*: a uniform double in [0, 1)
static double rand_u(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

// FNV-1a over n_bytes bytes at p, continuing from h (start: 0xcbf29ce484222325)
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n_bytes) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n_bytes; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static const char *isa_name(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "sse2";
}

enum { KIND_MEAN, KIND_MEDIAN, KIND_TRIMMED, KIND_CC, N_KINDS };

static long g_trimmed[ROBUST_MAX_K];  // the trimmed mean's counters, CenteredClip's factors
static double g_factor[ROBUST_MAX_K];

static void run_kernel(int kind, float *out, const float *const *x, const double *w, int k, size_t n) {
    switch (kind) {
    case KIND_MEAN: robust_mean(out, x, w, k, n); break;
    case KIND_MEDIAN: robust_median(out, x, w, k, n); break;
    case KIND_TRIMMED:
        memset(g_trimmed, 0, sizeof g_trimmed);
        robust_trimmed_mean(out, x, w, k, n, 0.2, g_trimmed);
        break;
    default: robust_centered_clip(out, x, w, k, n, 1.0, 10, g_factor); break;
    }
}

int main(int argc, char **argv) {
    size_t n = 1980000;
    int reps = 1, ks[64], n_ks = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--n") && a + 1 < argc) n = (size_t)strtoull(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (n_ks < 64 && atoi(argv[a]) >= 1 && atoi(argv[a]) <= ROBUST_MAX_K) ks[n_ks++] = atoi(argv[a]);
        else {
            fprintf(stderr, "usage: bench_robust [--n N] [--reps R] [K ...] (1 <= K <= %d)\n", ROBUST_MAX_K);
            return 2;
        }
    }
    if (!n_ks) ks[0] = 5, ks[1] = 17, ks[2] = 65, n_ks = 3;
    if (n < 1 || reps < 1) return 2;
    int kmax = 0;
    for (int i = 0; i < n_ks; i++) kmax = ks[i] > kmax ? ks[i] : kmax;
    float *data = malloc((size_t)kmax * n * sizeof *data), *out = malloc(n * sizeof *out);
    if (!data || !out) {
        fprintf(stderr, "bench_robust: out of memory for %d x %zu floats\n", kmax, n);
        return 1;
    }
    for (size_t i = 0; i < (size_t)kmax * n; i++) data[i] = (float)(2 * rand_u() - 1);
    static const float *x[ROBUST_MAX_K];
    static double w[ROBUST_MAX_K];
    for (int j = 0; j < kmax; j++) x[j] = data + (size_t)j * n, w[j] = 0.5 + 1.5 * rand_u();
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    for (int i = 0; i < n_ks; i++) {
        int k = ks[i];
        double best[N_KINDS];
        uint64_t h[N_KINDS];
        run_kernel(KIND_MEAN, out, x, w, k, n);  // warm-up
        for (int kind = 0; kind < N_KINDS; kind++) {
            best[kind] = 1e300;
            for (int r = 0; r < reps; r++) {
                double t0 = now_s();
                run_kernel(kind, out, x, w, k, n);
                double t = now_s() - t0;
                best[kind] = t < best[kind] ? t : best[kind];
            }
            h[kind] = hash_bytes(0xcbf29ce484222325ull, out, n * sizeof *out);
            if (kind == KIND_TRIMMED) h[kind] = hash_bytes(h[kind], g_trimmed, (size_t)k * sizeof *g_trimmed);
            if (kind == KIND_CC) h[kind] = hash_bytes(h[kind], g_factor, (size_t)k * sizeof *g_factor);
        }
        printf("robust-bench: k=%d n=%zu mean_s=%.4f median_s=%.4f trimmed_s=%.4f centered_clip_s=%.4f "
               "isa=%s openblas_coretype=%s\n", k, n, best[KIND_MEAN], best[KIND_MEDIAN],
               best[KIND_TRIMMED], best[KIND_CC], isa_name(), coretype && *coretype ? coretype : "unset");
        fprintf(stderr, "robust-bench-hash: k=%d mean=%016llx median=%016llx trimmed=%016llx centered_clip=%016llx\n",
                k, (unsigned long long)h[0], (unsigned long long)h[1], (unsigned long long)h[2],
                (unsigned long long)h[3]);
        fflush(stdout);
    }
    free(data);
    free(out);
    return 0;
}
