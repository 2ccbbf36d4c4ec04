// bench_albert.c: conflux side of the ALBERT throughput benchmark (tests/bench/bench-albert.sh
// runs it interleaved with the PyTorch side, tests/ref/albert_bench.py).
//
// Config (issue 2): L=4 H=256 E=128 NH=4 FFN=1024 V=8192 T=256 B=4 fp32 AdamW, dropout 0
// (the PyTorch side also runs dropout 0), random ids, 15% of positions masked. Prints
//   conflux_tok_s=X step_ms=Y model_gflop_per_step=F
// after warm-up (median step), and with --sgemm the OpenBLAS sgemm rate in GFLOP/s.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/albert.h"
#include "models/common.h"
#include "models/nn.h"
#include "models/optim.h"
#include "models/par.h"
#include "models/rng.h"
#include "models/train.h"

extern void openblas_set_num_threads(int);

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// sgemm rate on a square product the size of the model's largest matmuls
static double sgemm_gflops(void) {
    const int n = 1024;
    float *a = cx_calloc((size_t)n * n, 4), *b = cx_calloc((size_t)n * n, 4), *c = cx_calloc((size_t)n * n, 4);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = cx_rng_uniform(1, i) - 0.5f;
        b[i] = cx_rng_uniform(2, i) - 0.5f;
    }
    double best = 0;
    for (int r = 0; r < 12; r++) {
        double t0 = cx_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = cx_now() - t0;
        double g = 2.0 * n * n * n / dt / 1e9;
        if (r >= 2 && g > best) best = g;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv) {
    int warmup = 3, steps = 10, threads = 2, do_sgemm = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sgemm")) do_sgemm = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_albert [--warmup K] [--steps S] [--threads N] [--sgemm]\n");
            return 0;
        } else {
            fprintf(stderr, "bench_albert: error: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (do_sgemm) {  // the reference: OpenBLAS's own threads on one large product
        openblas_set_num_threads(threads);
        printf("sgemm_gflops=%.1f\n", sgemm_gflops());
        return 0;
    }
    par_set_threads(threads);
    const int B = 4, T = 256;
    AlbertConfig c = {.vocab_size = 8192, .embedding_size = 128, .hidden_size = 256,
                      .num_heads = 4, .intermediate_size = 1024, .num_layers = 4,
                      .max_position = 512, .dropout = 0.0f, .ln_eps = 1e-12f, .init_std = 0.02f};
    Albert *m = albert_create(&c, B, T, 1);
    OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                      .weight_decay = 0.01f, .clip_norm = 0.0f, .schedule = SCHED_CONSTANT,
                      .total_steps = 1000000};
    Optim o;
    optim_init(&o, &oc, albert_specs(m), albert_n_specs(m), albert_n_params(m));
    int32_t *ids = cx_calloc((size_t)B * T, 4), *mask = cx_calloc((size_t)B * T, 4);
    int32_t *tg = cx_calloc((size_t)B * T, 4);
    long n_masked = 0;
    for (int i = 0; i < B * T; i++) {
        ids[i] = 5 + (int)(cx_rng_u64(11, (uint64_t)i) % (uint64_t)(c.vocab_size - 5));
        mask[i] = 1;
        tg[i] = cx_rng_uniform(12, (uint64_t)i) < 0.15f ? ids[i] : -1;
        n_masked += tg[i] >= 0;
    }
    AlbertBatch b = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask, .targets = tg};
    size_t n = albert_n_params(m);
    double *times = cx_calloc((size_t)steps, sizeof(double));
    par_prof_enable(1);
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) par_prof_reset();
        double t0 = cx_now();
        memset(albert_grads(m), 0, n * sizeof(float));
        long nt = 0;
        albert_step(m, &b, 1, 1, 5, &nt, NULL);
        float inv = 1.0f / (float)nt;
        float *g = albert_grads(m);
        optim_scale(g, n, inv);
        optim_step(&o, albert_params(m), g);
        double dt = cx_now() - t0;
        if (s >= warmup) times[s - warmup] = dt;
    }
    par_prof_enable(0);
    double prof[PAR_PROF_N], total = 0.0, other;
    par_prof_get(prof);
    for (int s = 0; s < steps; s++) total += times[s];
    other = total;
    // wall time of each kind of op, the caller's view
    printf("breakdown_ms_per_step: step=%.2f", total * 1e3 / steps);
    for (int i = 0; i < PAR_PROF_N; i++) {
        printf(" %s=%.2f", par_prof_names[i], prof[i] * 1e3 / steps);
        if (i != PAR_PROF_IDLE) other -= prof[i];
    }
    printf(" other=%.2f (idle is part of the ops' times)\n", other * 1e3 / steps);
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    double med = times[steps / 2];
    // matmul FLOPs actually computed per step (forward x3 for forward + backward)
    double N = (double)B * T, H = c.hidden_size, E = c.embedding_size, FF = c.intermediate_size;
    double V = c.vocab_size, M = (double)n_masked;
    double layer = 4 * 2 * N * H * H + 2 * 2 * N * H * FF + 2 * 2 * (double)B * T * T * H;
    double fwd = 2 * N * E * H + c.num_layers * layer + 2 * M * H * E + 2 * M * E * V;
    printf("conflux_tok_s=%.1f step_ms=%.2f model_gflop_per_step=%.3f masked=%ld isa=%s "
           "threads=%d\n", (double)B * T / med, med * 1e3, 3 * fwd / 1e9, n_masked, nn_isa(),
           par_threads());
    free(times);
    free(ids);
    free(mask);
    free(tg);
    optim_free(&o);
    albert_free(m);
    return 0;
}
