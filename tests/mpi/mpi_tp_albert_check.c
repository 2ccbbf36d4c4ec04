// mpi_tp_albert_check: the tensor-parallel ALBERT encoder (mpi/tp_albert.h) on a P x Q
// grid against the one-rank encoder of models/albert.h (albert_encode and
// albert_encode_backward, run whole on every rank as the reference) with the same
// parameters, batch and dropout seed:
//  - the hidden states of the last layer, within 1e-5 of their scale;
//  - the gradient of every encoder tensor, by name, within 1e-5 of its scale, after two
//    micro-batches accumulated (padding, token types and dropout on), collected from the
//    grid after tp_albert_reduce_grads;
//  - the whole masked-LM model (tp_albert_create_mlm, tp_albert_step) against albert_step:
//    the loss and the selected count of each of three micro-batches (one sequence without
//    a selected position, so its rows are padding; one micro-batch without any), and the
//    gradient of every tensor, the MLM head and the tied word table included;
//  - training (models/train.h's trainer_step, two micro-batches per step, clipping on): the
//    parameters after 3 steps of AdamW and of LAMB (its trust ratios from norms summed over
//    the grid, Optim.reduce_norms) equal the one-rank trainer's within 1e-5 of scale;
//  - checkpoints in the one-rank layout (tp_albert_save_trainer / _load_trainer, AdamW): a
//    one-rank checkpoint of step 2 continued on the grid to step 4, and the grid's
//    checkpoint of step 2 continued on one rank, both equal the one-rank run straight to
//    step 4 within 1e-5; the grid's checkpoint resumed on the same grid equals the grid
//    straight on bit for bit (parameters and moments, every rank); a missing checkpoint
//    gives every rank rank 0's error naming the file;
//  - a grid row without a head is refused with a message naming the keys.
// Rank 0 prints one line per check and "N passed, N failed"; every rank prints "rank R of
// N ran" at the end.
// usage: mpirun -np P*Q mpi_tp_albert_check P Q [BLOCK_HEADS (0: the default)]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/common.h"
#include "models/rng.h"
#include "mpi/dp.h"
#include "io/store/ckpt.h"
#include "mpi/tp_albert.h"

static int g_rank, g_pass, g_fail;

static void verdict(MPI_Comm comm, const char *name, long bad, double e) {
    long tot;
    double emax;
    MPI_CHECK(comm, MPI_Allreduce(&bad, &tot, 1, MPI_LONG, MPI_SUM, comm));
    MPI_CHECK(comm, MPI_Allreduce(&e, &emax, 1, MPI_DOUBLE, MPI_MAX, comm));
    if (tot == 0) g_pass++;
    else g_fail++;
    if (g_rank == 0) printf("%s %s (largest relative error %.2e)\n", tot ? "FAIL:" : "ok:  ", name, emax);
}

// Largest |a - ref| over the scale of ref (its largest |value|, at least floor: the key
// bias's gradient is exactly 0, as softmax ignores a constant added to a row's scores, so
// the reference holds rounding noise there).
// ---- training: a deterministic data stream, the one-rank and the grid's trainers ----
typedef struct {
    Albert *ref;
    TpAlbert *tp;
    int T, V;
    int32_t ids[64], mask[64], tgt[64];
} Stream;

// Sample i of the stream: tokens, no padding, about 30% of the positions selected.
static void stream_batch(Stream *d, uint64_t s0, int B, AlbertBatch *b) {
    for (int k = 0; k < B * d->T; k++) {
        uint64_t at = (s0 + (uint64_t)(k / d->T)) * 1000 + (uint64_t)(k % d->T);
        d->ids[k] = (int32_t)(cx_rng_u64(500, at) % (uint64_t)d->V);
        d->mask[k] = 1;
        d->tgt[k] = cx_rng_uniform(501, at) < 0.3f ? (int32_t)(cx_rng_u64(502, at) % (uint64_t)d->V) : -1;
    }
    *b = (AlbertBatch){.B = B, .T = d->T, .input_ids = d->ids, .attention_mask = d->mask, .targets = d->tgt,
                       .sample_index0 = s0};
}

static double ref_micro(void *ctx, uint64_t s0, int B, int backward, int final, long *ntok, double *aux) {
    Stream *d = ctx;
    AlbertBatch b;
    (void)final, (void)aux;
    stream_batch(d, s0, B, &b);
    return albert_step(d->ref, &b, 1, backward, 31, ntok, NULL);
}

static double tp_micro(void *ctx, uint64_t s0, int B, int backward, int final, long *ntok, double *aux) {
    Stream *d = ctx;
    AlbertBatch b;
    (void)final, (void)aux;
    stream_batch(d, s0, B, &b);
    return tp_albert_step(d->tp, &b, 1, backward, 31, ntok);
}

static int tp_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    (void)grads, (void)n, (void)stats, (void)n_stats;  // the grid shares one replica's stats
    return tp_albert_reduce_grads(ctx, err);
}

// The one-rank trainer of d->ref and the grid's trainer of d->tp, with optimizer oc.
static Trainer ref_trainer(Stream *d, const OptimConfig *oc) {
    Trainer tr = {.task = {.ctx = d, .params = albert_params(d->ref), .grads = albert_grads(d->ref),
                           .n_params = albert_n_params(d->ref), .specs = albert_specs(d->ref),
                           .n_specs = albert_n_specs(d->ref), .micro_batch = 2, .micro_step = ref_micro},
                  .global_batch = 4};
    optim_init(&tr.optim, oc, albert_specs(d->ref), albert_n_specs(d->ref), albert_n_params(d->ref));
    return tr;
}

static Trainer tp_trainer(Stream *d, const OptimConfig *oc) {
    Trainer tt = {.task = {.ctx = d, .params = tp_albert_params(d->tp), .grads = tp_albert_grads(d->tp),
                           .n_params = tp_albert_n_local(d->tp), .specs = tp_albert_local_specs(d->tp),
                           .n_specs = tp_albert_n_specs(d->tp), .micro_batch = 2, .micro_step = tp_micro},
                  .avg = {.ctx = d->tp, .sum = tp_sum}, .global_batch = 4};
    optim_init(&tt.optim, oc, tp_albert_local_specs(d->tp), tp_albert_n_specs(d->tp), tp_albert_n_local(d->tp));
    optim_set_reduce_norms(&tt.optim, tp_albert_reduce_norms, d->tp);
    return tt;
}

static long run_steps(Trainer *t, int n, char *err) {
    long bad = 0;
    for (int i = 0; i < n; i++) {
        StepResult r;
        bad += trainer_step(t, &r, err) != 0;
    }
    return bad;
}

static double rel_err(const float *a, const float *ref, size_t n, double floor) {
    double scale = floor, e = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - ref[i]));
    return e / scale;
}

// Whole-model parameters of a grid's trainer, on rank 0 (every rank calls).
static float *grid_params(Stream *d, size_t n_full) {
    float *pf = cx_calloc(n_full, sizeof(float));
    tp_albert_collect(d->tp, tp_albert_params(d->tp), pf);
    return pf;
}

// Checkpoints across layouts, AdamW: the one-rank run's step-2 checkpoint continued on the
// grid, the grid's step-2 checkpoint continued on one rank, both against the one-rank run
// straight to step 4 (1e-5); the grid's checkpoint resumed on the same grid against the
// grid straight to step 4, bit for bit on every rank.
static void check_checkpoints(MPI_Comm world, TpGrid *g, const AlbertConfig *cfg, int bh) {
    char err[CX_ERRLEN], dir[256] = "";
    if (g_rank == 0) {
        snprintf(dir, sizeof dir, "/tmp/tpck.XXXXXX");
        CHECK(mkdtemp(dir), "mkdtemp");
    }
    MPI_CHECK(world, MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, world));
    char ref_dir[300], tp_dir[300], path[320];
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", dir);
    snprintf(tp_dir, sizeof tp_dir, "%s/tp", dir);
    if (g_rank == 0) CHECK(mkdir(ref_dir, 0755) == 0 && mkdir(tp_dir, 0755) == 0, "mkdir %s", dir);
    OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-3f,
                      .weight_decay = 0.01f, .clip_norm = 0.5f, .schedule = SCHED_LINEAR, .warmup_steps = 1,
                      .total_steps = 4};
    const int T = 8;
    long bad = 0;
    // the one-rank run: checkpoint at step 2 (rank 0 writes), straight on to step 4
    Stream r = {.ref = albert_create(cfg, 2, T, 8), .T = T, .V = cfg->vocab_size};
    size_t n_full = albert_n_params(r.ref);
    float *init = cx_calloc(n_full, sizeof(float));
    memcpy(init, albert_params(r.ref), n_full * sizeof(float));
    Trainer tr = ref_trainer(&r, &oc);
    bad += run_steps(&tr, 2, err);
    int n_alias;
    const TensorAlias *al = albert_aliases(&n_alias);
    if (g_rank == 0) bad += ckpt_save_trainer(ref_dir, "albert", "mpi_tp_albert_check", "", &tr, al, n_alias, 1, NULL, err) != 0;
    MPI_CHECK(world, MPI_Barrier(world));
    bad += run_steps(&tr, 2, err);
    const float *r4 = albert_params(r.ref);
    // 1. the one-rank checkpoint continued on the grid
    Stream a = {.T = T, .V = cfg->vocab_size, .tp = tp_albert_create_mlm(cfg, g, 2, T, bh)};
    Trainer ta = tp_trainer(&a, &oc);
    snprintf(path, sizeof path, "%s/latest.h5", ref_dir);
    long b1 = tp_albert_load_trainer(a.tp, &ta, path, err) != 0 || ta.optim.step != 2 || ta.samples_seen != 8;
    if (b1 && g_rank == 0) printf("  (load: %s; step %ld, cursor %llu)\n", err, ta.optim.step, (unsigned long long)ta.samples_seen);
    b1 += run_steps(&ta, 2, err);
    float *pa = grid_params(&a, n_full);
    double e1 = g_rank == 0 ? rel_err(pa, r4, n_full, 1e-2) : 0;
    char name[200];
    snprintf(name, sizeof name, "%dx%d: a one-rank checkpoint (step 2) continued on the grid to step 4 = one rank straight",
             g->P, g->Q);
    verdict(world, name, bad + b1 + (e1 > 1e-5), e1);
    // 2. the grid's checkpoint: written at step 2, the grid goes on to step 4
    Stream b = {.T = T, .V = cfg->vocab_size, .tp = tp_albert_create_mlm(cfg, g, 2, T, bh)};
    tp_albert_load(b.tp, init);
    Trainer tb = tp_trainer(&b, &oc);
    long b2 = run_steps(&tb, 2, err);
    b2 += tp_albert_save_trainer(b.tp, &tb, tp_dir, "mpi_tp_albert_check", "", 1, err) != 0;
    b2 += run_steps(&tb, 2, err);
    // ... continued on one rank
    Stream c = {.ref = albert_create(cfg, 2, T, 9), .T = T, .V = cfg->vocab_size};
    Trainer tc = ref_trainer(&c, &oc);
    Ckpt *ck = NULL;
    snprintf(path, sizeof path, "%s/latest.h5", tp_dir);
    b2 += ckpt_open(&ck, path, err) != 0 || ckpt_load_trainer(ck, "albert", &tc, err) != 0 || tc.optim.step != 2;
    if (ck) ckpt_close(ck);
    b2 += run_steps(&tc, 2, err);
    double e2 = rel_err(albert_params(c.ref), r4, n_full, 1e-2);
    snprintf(name, sizeof name, "%dx%d: the grid's checkpoint (step 2) continued on one rank to step 4 = one rank straight",
             g->P, g->Q);
    verdict(world, name, b2 + (e2 > 1e-5), e2);
    // ... and resumed on the same grid: bit for bit with the grid straight on
    Stream e = {.T = T, .V = cfg->vocab_size, .tp = tp_albert_create_mlm(cfg, g, 2, T, bh)};
    Trainer te = tp_trainer(&e, &oc);
    long b3 = tp_albert_load_trainer(e.tp, &te, path, err) != 0;
    b3 += run_steps(&te, 2, err);
    b3 += memcmp(tp_albert_params(e.tp), tp_albert_params(b.tp), tp_albert_n_local(b.tp) * sizeof(float)) != 0;
    b3 += memcmp(te.optim.m, tb.optim.m, tp_albert_n_local(b.tp) * sizeof(float)) != 0;
    snprintf(name, sizeof name, "%dx%d: the grid's checkpoint resumed on the grid = the grid straight on, bit for bit",
             g->P, g->Q);
    verdict(world, name, b3, 0);
    // a damaged path: every rank gets rank 0's error
    snprintf(path, sizeof path, "%s/missing.h5", dir);
    long b4 = !(tp_albert_load_trainer(e.tp, &te, path, err) == -1 && strstr(err, "missing.h5"));
    if (g_rank == 0) printf("  (%s)\n", err);
    verdict(world, "a checkpoint that is not there: every rank gets rank 0's error naming it", b4, 0);
    free(pa), free(init);
    optim_free(&tr.optim), optim_free(&ta.optim), optim_free(&tb.optim), optim_free(&tc.optim), optim_free(&te.optim);
    tp_albert_free(a.tp), tp_albert_free(b.tp), tp_albert_free(e.tp);
    albert_free(r.ref), albert_free(c.ref);
    MPI_CHECK(world, MPI_Barrier(world));
    if (g_rank == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm world = MPI_COMM_WORLD;  // a test program's choice
    int size;
    MPI_CHECK(world, MPI_Comm_rank(world, &g_rank));
    MPI_CHECK(world, MPI_Comm_size(world, &size));
    if (argc != 3 && argc != 4) {
        if (g_rank == 0) fprintf(stderr, "usage: mpirun -np P*Q mpi_tp_albert_check P Q [BLOCK_HEADS]\n");
        MPI_Finalize();
        return 2;
    }
    const int Pg = atoi(argv[1]), Qg = atoi(argv[2]), bh = argc == 4 ? atoi(argv[3]) : 0;
    char err[CX_ERRLEN];
    TpGrid g;
    if (tp_grid_create(&g, world, Pg, Qg, err) != 0) {
        if (g_rank == 0) fprintf(stderr, "mpi_tp_albert_check: %s\n", err);
        MPI_Finalize();
        return 2;
    }
    AlbertConfig cfg = {.vocab_size = 40, .embedding_size = 12, .hidden_size = 16, .num_heads = 4,
                        .intermediate_size = 40, .num_layers = 2, .max_position = 16, .dropout = 0.1f,
                        .ln_eps = 1e-12f, .init_std = 0.2f};
    {
        AlbertConfig two = cfg;
        two.num_heads = 1;
        long bad = Pg > 1 ? !(tp_albert_check(&two, &g, err) == -1 && strstr(err, "exceeds model.num_heads")) : 0;
        if (g_rank == 0 && Pg > 1) printf("  (%s)\n", err);
        verdict(world, "a grid row without a head is refused", bad, 0);
    }
    const int B = 3, T = 8, N = B * T, H = cfg.hidden_size;
    const uint64_t seed = 77;
    Albert *ref = albert_create_encoder(&cfg, B, T, 5);
    TpAlbert *m = tp_albert_create(&cfg, &g, B, T, bh);
    tp_albert_load(m, albert_params(ref));
    int32_t ids[2][24], mask[2][24], types[2][24];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N; i++) {
            ids[k][i] = (int32_t)(cx_rng_u64(100 + k, (uint64_t)i) % (uint64_t)cfg.vocab_size);
            mask[k][i] = !(i / T == 1 && i % T >= T - 3 + k);  // sequence 1 is padded at the end
            types[k][i] = i % T >= T / 2;
        }
    float *dout = cx_calloc((size_t)N * H, sizeof(float)), *outg = cx_calloc((size_t)N * H, sizeof(float));
    TpMat dl;
    tp_albert_out_layout(m, B, T, &dl, NULL);
    float *dloc = cx_calloc((size_t)dl.lrows * dl.lcols + 1, sizeof(float));
    tp_albert_out_layout(m, B, T, &dl, dloc);
    for (int k = 0; k < 2; k++) {
        AlbertBatch b = {.B = B, .T = T, .input_ids = ids[k], .attention_mask = mask[k],
                         .token_type_ids = types[k], .sample_index0 = 3 * (uint64_t)k + 1};
        for (size_t i = 0; i < (size_t)N * H; i++) dout[i] = cx_rng_normal(200 + k, i);
        const float *r = albert_encode(ref, &b, 1, seed);
        const TpMat *o = tp_albert_encode(m, &b, 1, seed);
        tp_gather(o, &g, outg, 0);
        double e = g_rank == 0 ? rel_err(outg, r, (size_t)N * H, 1e-6) : 0;
        char name[128];
        snprintf(name, sizeof name, "%dx%d, blocks of %d heads, micro-batch %d: last hidden states", Pg, Qg,
                 bh ? bh : cfg.num_heads / Pg, k + 1);
        verdict(world, name, e > 1e-5, e);
        albert_encode_backward(ref, &b, 1, seed, dout);
        tp_scatter(&dl, &g, dout, 0);
        tp_albert_encode_backward(m, &b, 1, seed, &dl);
    }
    long bad = tp_albert_reduce_grads(m, err) != 0;
    size_t n_full = albert_n_params(ref);
    float *gfull = cx_calloc(n_full, sizeof(float));
    tp_albert_collect(m, tp_albert_grads(m), gfull);
    const TensorSpec *sp = albert_specs(ref);
    double gmax = 0;  // 1e-2 of the largest gradient is the floor of every tensor's scale
    for (size_t i = 0; i < n_full; i++) gmax = fmax(gmax, fabs(albert_grads(ref)[i]));
    for (int i = 0; i < albert_n_specs(ref); i++) {
        double e = g_rank == 0 ? rel_err(gfull + sp[i].offset, albert_grads(ref) + sp[i].offset, sp[i].n, 1e-2 * gmax) : 0;
        char name[200];
        snprintf(name, sizeof name, "%dx%d: gradient of %s (%s)", Pg, Qg, sp[i].name,
                 tp_albert_holding(m, i) == TP_DEALT ? "dealt" : tp_albert_holding(m, i) == TP_ROWVEC ? "grid-row vector" : "whole");
        verdict(world, name, bad + (e > 1e-5), e);
    }
    // the parameters come back as they went out
    float *pfull = cx_calloc(n_full, sizeof(float));
    tp_albert_collect(m, tp_albert_params(m), pfull);
    verdict(world, "parameters dealt out and collected back unchanged",
            g_rank == 0 && memcmp(pfull, albert_params(ref), n_full * sizeof(float)) != 0, 0);
    free(pfull), free(gfull), free(dout), free(outg), free(dloc);
    tp_albert_free(m);
    albert_free(ref);

    // the masked-LM model
    Albert *full = albert_create(&cfg, B, T, 6);
    TpAlbert *mm = tp_albert_create_mlm(&cfg, &g, B, T, bh);
    tp_albert_load(mm, albert_params(full));
    int32_t tg[3][24];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < N; i++) {
            int sel = k < 2 && cx_rng_uniform(300 + k, (uint64_t)i) < 0.35f && !(k == 1 && i / T == 2);
            tg[k][i] = sel ? (int32_t)(cx_rng_u64(400 + k, (uint64_t)i) % (uint64_t)cfg.vocab_size) : -1;
        }
    for (int k = 0; k < 3; k++) {
        AlbertBatch b = {.B = B, .T = T, .input_ids = ids[k % 2], .attention_mask = mask[k % 2],
                         .token_type_ids = types[k % 2], .targets = tg[k], .sample_index0 = 5 * (uint64_t)k};
        long n_ref = 0, n_tp = 0;
        double l_ref = albert_step(full, &b, 1, 1, seed, &n_ref, NULL);
        double l_tp = tp_albert_step(mm, &b, 1, 1, seed, &n_tp);
        double e = fabs(l_tp - l_ref) / fmax(1e-6, fabs(l_ref));
        char name[160];
        snprintf(name, sizeof name, "%dx%d MLM, micro-batch %d: loss %.6f, %ld selected", Pg, Qg, k + 1, l_ref, n_ref);
        verdict(world, name, (e > 1e-5) + (n_tp != n_ref), e);
    }
    bad = tp_albert_reduce_grads(mm, err) != 0;
    n_full = albert_n_params(full);
    gfull = cx_calloc(n_full, sizeof(float));
    tp_albert_collect(mm, tp_albert_grads(mm), gfull);
    sp = albert_specs(full);
    gmax = 0;
    for (size_t i = 0; i < n_full; i++) gmax = fmax(gmax, fabs(albert_grads(full)[i]));
    for (int i = 0; i < albert_n_specs(full); i++) {
        double e = g_rank == 0 ? rel_err(gfull + sp[i].offset, albert_grads(full) + sp[i].offset, sp[i].n, 1e-2 * gmax) : 0;
        char name[200];
        snprintf(name, sizeof name, "%dx%d MLM: gradient of %s", Pg, Qg, sp[i].name);
        verdict(world, name, bad + (e > 1e-5), e);
    }
    free(gfull);
    tp_albert_free(mm);
    albert_free(full);

    // training: 3 steps of AdamW, then of LAMB, against the one-rank trainer. Adam's eps is
    // 1e-3 here: the key bias's gradient is 0 in exact arithmetic, rounding noise in either
    // implementation, and eps 1e-6 would turn that noise into steps of +-lr
    for (int kind = 0; kind < 2; kind++) {
        OptimConfig oc = {.kind = kind ? OPTIM_LAMB : OPTIM_ADAMW, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f,
                          .eps = 1e-3f, .weight_decay = 0.01f, .clip_norm = 0.5f, .schedule = SCHED_CONSTANT,
                          .total_steps = 3};
        Stream d = {.ref = albert_create(&cfg, 2, T, 7), .T = T, .V = cfg.vocab_size};
        d.tp = tp_albert_create_mlm(&cfg, &g, 2, T, bh);
        tp_albert_load(d.tp, albert_params(d.ref));
        Trainer tr = ref_trainer(&d, &oc), tt = tp_trainer(&d, &oc);
        long bad_steps = 0;
        double worst_loss = 0, worst_norm = 0;
        for (int st = 0; st < 3; st++) {
            StepResult r1, r2;
            bad_steps += trainer_step(&tr, &r1, err) != 0;
            bad_steps += trainer_step(&tt, &r2, err) != 0;
            worst_loss = fmax(worst_loss, fabs(r1.loss - r2.loss) / fabs(r1.loss));
            worst_norm = fmax(worst_norm, fabs(r1.grad_norm - r2.grad_norm) / r1.grad_norm);
        }
        char name[200];
        snprintf(name, sizeof name, "%dx%d %s: the loss and the gradient norm (clipped at 0.5) of 3 steps", Pg, Qg,
                 kind ? "LAMB" : "AdamW");
        verdict(world, name, bad_steps + (worst_loss > 1e-5) + (worst_norm > 1e-5), fmax(worst_loss, worst_norm));
        size_t nf = albert_n_params(d.ref);
        float *pf = cx_calloc(nf, sizeof(float));
        tp_albert_collect(d.tp, tp_albert_params(d.tp), pf);
        double pmax = 0;
        for (size_t i = 0; i < nf; i++) pmax = fmax(pmax, fabs(albert_params(d.ref)[i]));
        const TensorSpec *ps = albert_specs(d.ref);
        long badp = 0;
        double worst = 0;
        for (int i = 0; i < albert_n_specs(d.ref); i++) {
            double e = g_rank == 0 ? rel_err(pf + ps[i].offset, albert_params(d.ref) + ps[i].offset, ps[i].n, 1e-2 * pmax) : 0;
            badp += e > 1e-5;
            worst = fmax(worst, e);
        }
        snprintf(name, sizeof name, "%dx%d %s: every parameter after 3 steps", Pg, Qg, kind ? "LAMB" : "AdamW");
        verdict(world, name, badp, worst);
        free(pf);
        optim_free(&tr.optim);
        optim_free(&tt.optim);
        tp_albert_free(d.tp);
        albert_free(d.ref);
    }
    check_checkpoints(world, &g, &cfg, bh);
    tp_grid_free(&g);
    if (g_rank == 0) printf("%d passed, %d failed\n", g_pass, g_fail);
    fflush(stdout);
    MPI_Barrier(world);
    printf("rank %d of %d ran\n", g_rank, size);
    MPI_Finalize();
    return g_fail ? 1 : 0;
}
