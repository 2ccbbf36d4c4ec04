// mpi_bench_dp.c: data-parallel step benchmark (make bench-dp runs it on 1, 2, 4 ranks).
//
// Each rank trains the ALBERT of `make bench` (L=4 H=256 E=128 NH=4 FFN=1024 V=8192) on
// one micro-batch of B x T random tokens per step (same per-rank micro-batch at every rank
// count), with the MPI averaging backend and the backward hooks that start each bucket's
// all-reduce as soon as its gradients are final, with ALBERT's split gradients (as
// conflux-train runs it) or, with --no-split, without them. After warm-up it reports,
// from rank 0:
//   ranks=P step_ms=MEDIAN allreduce_ms=... exposed_ms=... overlap=F bytes_per_step=N
// allreduce_ms: the median time of the same communication alone (every bucket, the rows
// and the folding of the split, started at once with no compute to hide behind, after a
// barrier); exposed_ms: the median time a training step spent in dp_finish after its
// backward (waiting for buckets and rows, adding the split in), on the rank whose backward
// finished last (the others also wait for its compute); overlap = 1 - exposed /
// allreduce, the share of the all-reduce hidden behind the backward pass. compute_ms: the
// median forward + backward time of that last rank (progress calls included).
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/albert.h"
#include "models/common.h"
#include "models/encdec.h"
#include "models/optim.h"
#include "models/par.h"
#include "models/rng.h"
#include "models/train.h"
#include "mpi/dp.h"


static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int warmup = 3, steps = 10, B = 2, T = 128, threads = 1;
    size_t bucket_mb = 4;
    int split = 1, headline = 0, Tt = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--micro") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bucket-mb") && i + 1 < argc) bucket_mb = (size_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-split")) split = 0;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc && !strcmp(argv[i + 1], "albert")) i++;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc && !strcmp(argv[i + 1], "headline")) {
            headline = 1;
            i++;
        }
        else if (!strcmp(argv[i], "--tgt") && i + 1 < argc) Tt = atoi(argv[++i]);
        else {
            if (rank == 0)
                fprintf(stderr, "usage: mpi_bench_dp [--warmup K] [--steps S] [--micro B] [--seq T] "
                                "[--threads N] [--bucket-mb M] [--no-split] [--model albert|headline] [--tgt TT]\n");
            MPI_Finalize();
            return 2;
        }
    }
    par_set_threads(threads);
    AlbertConfig c = {.vocab_size = 8192, .embedding_size = 128, .hidden_size = 256,
                      .num_heads = 4, .intermediate_size = 1024, .num_layers = 4,
                      .max_position = 512, .dropout = 0.0f, .ln_eps = 1e-12f, .init_std = 0.02f};
    // the headline model: conflux-headline's default encoder-decoder (this ALBERT as the
    // encoder, 2 decoder layers), sources of T tokens, targets of Tt
    EncDecConfig hc = {.enc = c, .dec_layers = 2, .dec_heads = 4, .dec_intermediate = 1024,
                       .dec_max_position = 128, .dec_dropout = 0.0f, .label_smoothing = 0.1f};
    Albert *m = headline ? NULL : albert_create(&c, B, T, 1);
    EncDec *ed = headline ? encdec_create(&hc, B, T, Tt, 1) : NULL;
    size_t n = headline ? encdec_n_params(ed) : albert_n_params(m);
    float *params = headline ? encdec_params(ed) : albert_params(m);
    float *grads = headline ? encdec_grads(ed) : albert_grads(m);
    const TensorSpec *specs = headline ? encdec_specs(ed) : albert_specs(m);
    int n_specs = headline ? encdec_n_specs(ed) : albert_n_specs(m);
    OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                      .weight_decay = 0.01f, .schedule = SCHED_CONSTANT, .total_steps = 1000000};
    Optim o;
    optim_init(&o, &oc, specs, n_specs, n);
    const GradSplit *gs = !split ? NULL
                          : headline ? encdec_enable_grad_split(ed) : albert_enable_grad_split(m);
    DpComm *dp = dp_create_split(comm, grads, n, specs, n_specs, bucket_mb << 20, 0, gs);
    if (headline) encdec_set_backward_hooks(ed, dp_hook_ready, dp_hook_progress, dp);
    else albert_set_backward_hooks(m, dp_hook_ready, dp_hook_progress, dp);
    int32_t *ids = cx_calloc((size_t)B * T, 4), *mask = cx_calloc((size_t)B * T, 4);
    int32_t *tg = cx_calloc((size_t)B * (T > Tt ? T : Tt), 4);
    double *times = cx_calloc((size_t)steps, sizeof(double));
    double *exposed = cx_calloc((size_t)steps, sizeof(double));
    double *alone = cx_calloc((size_t)steps, sizeof(double));
    double *every = cx_calloc(2 * (size_t)size, sizeof(double));
    double *computes = cx_calloc((size_t)steps, sizeof(double));
    double bytes = 0;
    char err[CX_ERRLEN];
    for (int s = 0; s < warmup + steps; s++) {
        for (int i = 0; i < B * T; i++) {  // each rank its own random batch
            uint64_t k = ((uint64_t)s * size + rank) * B * T + i;
            ids[i] = 5 + (int)(cx_rng_u64(11, k) % (uint64_t)(c.vocab_size - 5));
            mask[i] = 1;
            if (!headline) tg[i] = cx_rng_uniform(12, k) < 0.15f ? ids[i] : -1;
        }
        if (headline)  // full-length targets ending in EOS
            for (int i = 0; i < B * Tt; i++)
                tg[i] = i % Tt == Tt - 1 ? ED_EOS : 5 + (int)(cx_rng_u64(13, (uint64_t)(s * size + rank) * B * Tt + i) %
                                                              (uint64_t)(c.vocab_size - 5));
        MPI_Barrier(comm);
        double t0 = cx_now();
        memset(grads, 0, n * sizeof(float));
        dp_begin_step(dp);
        long nt = 0;
        double loss;
        if (headline) {
            EncDecBatch eb = {.B = B, .Ts = T, .Tt = Tt, .src = ids, .tgt = tg, .final_micro = 1};
            loss = encdec_step(ed, &eb, 1, 1, 5, &nt);
        } else {
            AlbertBatch b = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask,
                             .targets = tg, .final_micro = 1};
            loss = albert_step(m, &b, 1, 1, 5, &nt, NULL);
        }
        double stats[STAT_COUNT] = {loss, (double)nt, B, 0};
        double compute = cx_now() - t0;
        if (dp_averager_sum(dp, grads, n, stats, STAT_COUNT, err) != 0) {
            fprintf(stderr, "mpi_bench_dp: rank %d: %s\n", rank, err);
            MPI_Abort(comm, 1);
        }
        float inv = (float)(1.0 / stats[STAT_TOKENS]);
        optim_scale(grads, n, inv);
        optim_step(&o, params, grads);
        double dt = cx_now() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, comm);
        // exposed: what the rank that finished its backward last waited (a rank done
        // earlier also waits for the others' compute, which is imbalance, not communication)
        double mine[2] = {compute, dp_counters(dp)->wait_s};
        MPI_Allgather(mine, 2, MPI_DOUBLE, every, 2, MPI_DOUBLE, comm);
        int last = 0;
        for (int r = 1; r < size; r++)
            if (every[2 * r] > every[2 * last]) last = r;
        double w = every[2 * last + 1];
        if (s >= warmup) {
            times[s - warmup] = dt;
            computes[s - warmup] = every[2 * last];
            exposed[s - warmup] = w;
            bytes = dp_counters(dp)->bytes_sent + dp_counters(dp)->bytes_recv;
        }
    }
    // the same communication alone: every range final at once, nothing to hide behind
    for (int s = 0; s < warmup + steps; s++) {
        if (gs) {  // the rows of a micro-batch, as in a step (the headline model: then targets)
            memcpy(gs->row_ids, ids, (size_t)B * T * sizeof(int32_t));
            if (headline) memcpy(gs->row_ids + (size_t)B * T, tg, (size_t)B * Tt * sizeof(int32_t));
            *gs->n_rows = B * T + (headline ? B * Tt : 0);
        }
        double stats[STAT_COUNT] = {0};
        MPI_Barrier(comm);
        double t0 = cx_now();
        dp_begin_step(dp);
        dp_mark_all_ready(dp);
        if (dp_finish(dp, stats, STAT_COUNT, err) != 0) {
            fprintf(stderr, "mpi_bench_dp: rank %d: %s\n", rank, err);
            MPI_Abort(comm, 1);
        }
        double dt = cx_now() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, comm);
        if (s >= warmup) alone[s - warmup] = dt;
    }
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    qsort(exposed, (size_t)steps, sizeof(double), cmp_double);
    qsort(alone, (size_t)steps, sizeof(double), cmp_double);
    qsort(computes, (size_t)steps, sizeof(double), cmp_double);
    if (rank == 0) {
        double ar = alone[steps / 2], ex = exposed[steps / 2];
        double overlap = size > 1 && ar > 0 ? 1.0 - ex / ar : 0.0;
        if (overlap < 0) overlap = 0;
        printf("ranks=%d step_ms=%.2f allreduce_ms=%.2f exposed_ms=%.2f overlap=%.2f "
               "bytes_per_step=%.0f compute_ms=%.2f params=%zu micro_batch=%dx%d split=%s model=%s\n",
               size, times[steps / 2] * 1e3, ar * 1e3, ex * 1e3, overlap, bytes,
               computes[steps / 2] * 1e3, n, B, T, gs ? "yes" : "no",
               headline ? "headline" : "albert");
    }
    dp_free(dp);
    optim_free(&o);
    albert_free(m);
    encdec_free(ed);
    free(ids);
    free(mask);
    free(tg);
    free(times);
    free(exposed);
    free(alone);
    free(every);
    free(computes);
    MPI_Finalize();
    return 0;
}
