// test_par.c: the pool of models/par.h and the promise that goes with it: the numbers of a
// training step do not depend on the thread count, nor on the instruction set of the
// element-wise kernels.
//
//  * par_run: every index of [0, n) is visited exactly once, chunk boundaries are multiples
//    of the grain, for pools of 1 to 4 threads; a par_run from inside a task runs inline.
//  * Whole steps, bit for bit (memcmp of the loss and of every gradient and parameter):
//    ALBERT (dropout 0.1, padding, MLM + SOP) and the encoder-decoder (dropout 0.1,
//    label smoothing 0.1, causal and cross attention) on 1, 2 and 3 threads, followed by an
//    AdamW and a LAMB update with clipping and the global gradient norm. The sizes are
//    chosen so that the GEMMs are split (more than GEMM_SPLIT_MIN_FLOP) and every
//    row/column/element op has several chunks.
//  * Instruction sets: every kernel variant this CPU runs (nn_set_isa: sse2, avx2, avx512)
//    gives the same step bit for bit, and the same GELU, GELU gradient and softmax on
//    inputs that cover exp's clamps (below -87, above 80), NaN, infinities and zeros, at
//    lengths that leave scalar tails. The variants this CPU cannot run are named in the
//    output (they are not run here; CI machines without AVX-512 compare sse2 and avx2).
//  * The fused ops (linear + GELU, its backward, residual + LayerNorm) give the numbers of
//    the ops they fuse, bit for bit, on shapes split by rows, by columns, and not at all.
//  * What every thread count would get wrong alike: split products (by rows, by columns,
//    a short last block) against nn_ref's double products within 1e-5 of the largest value,
//    and the chunked gradient norm against a plain double sum within 1e-12.
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/albert.h"
#include "models/common.h"
#include "models/encdec.h"
#include "models/nn.h"
#include "models/nn_ref.h"
#include "models/optim.h"
#include "models/par.h"
#include "models/rng.h"
#include "models/tensor.h"
#include "tests/unit/testutil.h"

// ---------------------------------------------------------------------------------------
// par_run

static unsigned char visits[10000];
static size_t bad_chunks;

static void mark(void *ctx, int tid, size_t lo, size_t hi) {
    const size_t grain = *(const size_t *)ctx;
    (void)tid;
    if (lo % grain != 0 || lo >= hi) __atomic_add_fetch(&bad_chunks, 1, __ATOMIC_RELAXED);
    for (size_t i = lo; i < hi; i++) __atomic_add_fetch(&visits[i], 1, __ATOMIC_RELAXED);
}

static void test_cover(void) {
    const size_t ns[] = {0, 1, 7, 16, 17, 100, 4096, 9999};
    const size_t grains[] = {1, 3, 16, 1000};
    for (int nt = 1; nt <= 4; nt++) {
        par_set_threads(nt);
        CU_ASSERT_EQUAL(par_threads(), nt);
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
                memset(visits, 0, sizeof visits);
                bad_chunks = 0;
                size_t grain = grains[g];
                par_run(ns[a], grain, mark, &grain);
                size_t wrong = 0;
                for (size_t i = 0; i < sizeof visits; i++) wrong += visits[i] != (i < ns[a]);
                CU_ASSERT_EQUAL(wrong, 0);
                CU_ASSERT_EQUAL(bad_chunks, 0);
            }
    }
}

static int inner_ran;
static void inner(void *ctx, int tid, size_t lo, size_t hi) {
    (void)ctx;
    (void)tid;
    __atomic_add_fetch(&inner_ran, (int)(hi - lo), __ATOMIC_RELAXED);
}
static void outer(void *ctx, int tid, size_t lo, size_t hi) {
    (void)ctx;
    (void)tid;
    for (size_t i = lo; i < hi; i++) par_run(100, 1, inner, NULL);
}

static void test_nested(void) {
    par_set_threads(2);
    inner_ran = 0;
    par_run(8, 1, outer, NULL);  // must not deadlock
    CU_ASSERT_EQUAL(inner_ran, 800);
}

// a child of fork() has a pool of one and still computes (its parent's workers are gone)
static void test_fork(void) {
    par_set_threads(3);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);  // a child that waits for workers it does not have dies, failing the test
        inner_ran = 0;
        par_run(1000, 1, inner, NULL);
        _exit(par_threads() == 1 && inner_ran == 1000 ? 0 : 1);
    }
    CU_ASSERT_FATAL(pid > 0);
    int status = -1;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(par_threads(), 3);  // the parent's pool is untouched
    inner_ran = 0;
    par_run(1000, 1, inner, NULL);
    CU_ASSERT_EQUAL(inner_ran, 1000);
    par_set_threads(1);
}

// ---------------------------------------------------------------------------------------
// whole steps

enum { AB = 4, AT = 64, EB = 4, ETS = 48, ETT = 40 };

typedef struct {
    double loss, gnorm;
    size_t n;
    float *grads, *params_adamw, *params_lamb;
} StepOut;

static void free_out(StepOut *o) {
    free(o->grads);
    free(o->params_adamw);
    free(o->params_lamb);
}

// The grads, then an AdamW and a LAMB update (clipping at half the norm) from the same
// parameters, each from its own copy.
static void optimizers(StepOut *o, const float *params, float *grads, const TensorSpec *specs,
                       int n_specs) {
    o->grads = malloc(o->n * sizeof(float));
    memcpy(o->grads, grads, o->n * sizeof(float));
    o->gnorm = optim_grad_norm(grads, specs, n_specs);
    for (int kind = 0; kind < 2; kind++) {
        OptimConfig oc = {.kind = kind ? OPTIM_LAMB : OPTIM_ADAMW, .lr = 1e-3f, .beta1 = 0.9f,
                          .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.01f,
                          .clip_norm = (float)(o->gnorm / 2), .schedule = SCHED_CONSTANT,
                          .total_steps = 10};
        Optim opt;
        optim_init(&opt, &oc, specs, n_specs, o->n);
        float *p = malloc(o->n * sizeof(float)), *g = malloc(o->n * sizeof(float));
        memcpy(p, params, o->n * sizeof(float));
        memcpy(g, grads, o->n * sizeof(float));
        optim_scale(g, o->n, 0.5f);
        optim_step(&opt, p, g);
        optim_step(&opt, p, g);
        *(kind ? &o->params_lamb : &o->params_adamw) = p;
        free(g);
        optim_free(&opt);
    }
}

static AlbertConfig albert_cfg(void) {
    AlbertConfig c = {.vocab_size = 300, .embedding_size = 48, .hidden_size = 128,
                      .num_heads = 4, .intermediate_size = 256, .num_layers = 2,
                      .max_position = AT, .dropout = 0.1f, .ln_eps = 1e-12f, .init_std = 0.02f,
                      .sop = 1};
    return c;
}

static StepOut albert_run(void) {
    AlbertConfig c = albert_cfg();
    Albert *m = albert_create(&c, AB, AT, 7);
    int32_t ids[AB * AT], mask[AB * AT], tg[AB * AT], tt[AB * AT], sop[AB];
    for (int i = 0; i < AB * AT; i++) {
        int pos = i % AT, len = AT - 9 * (i / AT);  // rows of 64, 55, 46, 37 real tokens
        ids[i] = pos < len ? 5 + (int)(cx_rng_u64(3, (uint64_t)i) % 290) : 0;
        mask[i] = pos < len;
        tt[i] = pos >= len / 2;
        tg[i] = pos < len && cx_rng_uniform(4, (uint64_t)i) < 0.2f ? ids[i] : -1;
    }
    for (int b = 0; b < AB; b++) sop[b] = b & 1;
    AlbertBatch b = {.B = AB, .T = AT, .input_ids = ids, .attention_mask = mask,
                     .token_type_ids = tt, .targets = tg, .sop_labels = sop, .sop_scale = 0.25f};
    StepOut o = {.n = albert_n_params(m)};
    memset(albert_grads(m), 0, o.n * sizeof(float));
    long nt = 0;
    o.loss = albert_step(m, &b, 1, 1, 99, &nt, NULL);
    optimizers(&o, albert_params(m), albert_grads(m), albert_specs(m), albert_n_specs(m));
    albert_free(m);
    return o;
}

static StepOut encdec_run(void) {
    EncDecConfig c = {.enc = {.vocab_size = 300, .embedding_size = 48, .hidden_size = 128,
                              .num_heads = 4, .intermediate_size = 256, .num_layers = 2,
                              .max_position = ETS, .dropout = 0.1f, .ln_eps = 1e-12f,
                              .init_std = 0.02f},
                      .dec_layers = 2, .dec_heads = 4, .dec_intermediate = 256,
                      .dec_max_position = ETT, .dec_dropout = 0.1f, .label_smoothing = 0.1f};
    EncDec *m = encdec_create(&c, EB, ETS, ETT, 5);
    int32_t src[EB * ETS], tgt[EB * ETT];
    for (int b = 0; b < EB; b++) {
        int ls = ETS - 7 * b, lt = ETT - 5 * b;
        for (int t = 0; t < ETS; t++)
            src[b * ETS + t] = t == 0 ? 2 : t == ls - 1 ? 3 : t < ls ?
                5 + (int)(cx_rng_u64(6, (uint64_t)(b * ETS + t)) % 290) : ED_PAD;
        for (int t = 0; t < ETT; t++)
            tgt[b * ETT + t] = t == lt - 1 ? ED_EOS : t < lt ?
                5 + (int)(cx_rng_u64(8, (uint64_t)(b * ETT + t)) % 290) : ED_PAD;
    }
    EncDecBatch b = {.B = EB, .Ts = ETS, .Tt = ETT, .src = src, .tgt = tgt, .sample_index0 = 3};
    StepOut o = {.n = encdec_n_params(m)};
    memset(encdec_grads(m), 0, o.n * sizeof(float));
    long nt = 0;
    o.loss = encdec_step(m, &b, 1, 1, 41, &nt);
    optimizers(&o, encdec_params(m), encdec_grads(m), encdec_specs(m), encdec_n_specs(m));
    encdec_free(m);
    return o;
}

static int same(const StepOut *a, const StepOut *b, const char *what) {
    int ok = memcmp(&a->loss, &b->loss, sizeof a->loss) == 0 &&
             memcmp(&a->gnorm, &b->gnorm, sizeof a->gnorm) == 0 && a->n == b->n &&
             !memcmp(a->grads, b->grads, a->n * sizeof(float)) &&
             !memcmp(a->params_adamw, b->params_adamw, a->n * sizeof(float)) &&
             !memcmp(a->params_lamb, b->params_lamb, a->n * sizeof(float));
    if (!ok) {
        size_t diff = 0;
        for (size_t i = 0; i < a->n && i < b->n; i++) diff += a->grads[i] != b->grads[i];
        printf("\n  %s: loss %.17g vs %.17g, gnorm %.17g vs %.17g, %zu gradients differ\n", what,
               a->loss, b->loss, a->gnorm, b->gnorm, diff);
    }
    return ok;
}

static void check_threads(StepOut (*run)(void), const char *name) {
    par_set_threads(1);
    StepOut ref = run();
    CU_ASSERT(isfinite(ref.loss) && ref.loss > 0 && ref.gnorm > 0);
    for (int nt = 2; nt <= 3; nt++) {
        par_set_threads(nt);
        StepOut o = run();
        char what[64];
        snprintf(what, sizeof what, "%s on %d threads against 1", name, nt);
        CU_ASSERT(same(&ref, &o, what));
        free_out(&o);
    }
    free_out(&ref);
    par_set_threads(1);
}

static void test_albert_threads(void) { check_threads(albert_run, "ALBERT step"); }
static void test_encdec_threads(void) { check_threads(encdec_run, "encoder-decoder step"); }

// ---------------------------------------------------------------------------------------
// fused ops: the same numbers as the ops they fuse

static float *rnd(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * cx_rng_uniform(seed, i) - 1.0f;
    return x;
}

// shapes split by rows (N >= OC) and by columns (N < OC: the epilogue's strided blocks),
// and one below the split threshold
static void test_fused(void) {
    const int shapes[][3] = {{256, 96, 384}, {64, 128, 512}, {8, 16, 24}};
    par_set_threads(2);
    for (int si = 0; si < 3; si++) {
        const int N = shapes[si][0], C = shapes[si][1], OC = shapes[si][2];
        const size_t nc = (size_t)N * C, no = (size_t)N * OC;
        float *x = rnd(nc, 1), *w = rnd((size_t)OC * C, 2), *b = rnd((size_t)OC, 3);
        // linear + GELU forward
        float *pre1 = rnd(no, 4), *g1 = rnd(no, 5), *pre2 = rnd(no, 6), *g2 = rnd(no, 7);
        nn_linear_forward(pre1, x, w, b, N, C, OC);
        nn_gelu_forward(g1, pre1, no);
        nn_linear_gelu_forward(pre2, g2, x, w, b, N, C, OC);
        CU_ASSERT(!memcmp(pre1, pre2, no * sizeof(float)) && !memcmp(g1, g2, no * sizeof(float)));
        // its backward: a layer g = gelu(pre) (N,OC) -> linear (C outputs), so here the
        // linear maps OC -> C with a weight (C,OC)
        float *w2 = rnd((size_t)C * OC, 8), *dout = rnd(nc, 9);
        float *dpre1 = rnd(no, 10), *dpre2 = malloc(no * sizeof(float));
        memcpy(dpre2, dpre1, no * sizeof(float));
        float *dg1 = calloc(no, sizeof(float)), *dg2 = rnd(no, 11);  // dg2: garbage, overwritten
        float *dw1 = rnd((size_t)C * OC, 12), *dw2 = malloc((size_t)C * OC * sizeof(float));
        float *db1 = rnd((size_t)C, 13), *db2 = malloc((size_t)C * sizeof(float));
        memcpy(dw2, dw1, (size_t)C * OC * sizeof(float));
        memcpy(db2, db1, (size_t)C * sizeof(float));
        nn_linear_backward(dg1, dw1, db1, dout, g1, w2, N, OC, C);
        nn_gelu_backward(dpre1, dg1, pre1, no);
        nn_gelu_linear_backward(dpre2, dg2, dw2, db2, dout, g1, pre1, w2, N, OC, C);
        CU_ASSERT(!memcmp(dpre1, dpre2, no * sizeof(float)));
        CU_ASSERT(!memcmp(dg1, dg2, no * sizeof(float)));
        CU_ASSERT(!memcmp(dw1, dw2, (size_t)C * OC * sizeof(float)));
        CU_ASSERT(!memcmp(db1, db2, (size_t)C * sizeof(float)));
        // residual + LayerNorm, in place on the first operand as the models call it
        float *ra = rnd(nc, 14), *rb = rnd(nc, 15), *lw = rnd((size_t)C, 16), *lb = rnd((size_t)C, 17);
        float *res1 = malloc(nc * sizeof(float)), *o1 = malloc(nc * sizeof(float));
        float *o2 = malloc(nc * sizeof(float)), *m1 = malloc((size_t)N * 4), *r1 = malloc((size_t)N * 4);
        float *m2 = malloc((size_t)N * 4), *r2 = malloc((size_t)N * 4);
        nn_add_forward(res1, ra, rb, nc);
        nn_layernorm_forward(o1, m1, r1, res1, lw, lb, N, C, 1e-12f);
        nn_residual_layernorm_forward(ra, o2, m2, r2, ra, rb, lw, lb, N, C, 1e-12f);
        CU_ASSERT(!memcmp(res1, ra, nc * sizeof(float)) && !memcmp(o1, o2, nc * sizeof(float)));
        CU_ASSERT(!memcmp(m1, m2, (size_t)N * 4) && !memcmp(r1, r2, (size_t)N * 4));
        float *ptrs[] = {x, w, b, pre1, g1, pre2, g2, w2, dout, dpre1, dpre2, dg1, dg2, dw1, dw2,
                         db1, db2, ra, rb, lw, lb, res1, o1, o2, m1, r1, m2, r2};
        for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) free(ptrs[i]);
    }
    par_set_threads(1);
}

// ---------------------------------------------------------------------------------------
// split work against references: bugs that every thread count would share

static double max_rel(const float *x, const double *ref, size_t n) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)x[i] - ref[i]) / scale);
    return worst;
}

static double *widen(const float *x, size_t n) {
    double *d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// Products above GEMM_SPLIT_MIN_FLOP, cut into blocks of rows (N >= OC) and of columns
// (N < OC), with sizes that leave a short last block, against nn_ref's double products:
// forward with bias, input, weight and bias gradients (accumulated onto non-zero values).
static void check_split_gemm(int N, int C, int OC) {
    const size_t nc = (size_t)N * C, no = (size_t)N * OC, wc = (size_t)OC * C;
    float *x = rnd(nc, 21), *w = rnd(wc, 22), *b = rnd((size_t)OC, 23), *y = rnd(no, 24);
    float *dy = rnd(no, 25), *dx = rnd(nc, 26), *dw = rnd(wc, 27), *db = rnd((size_t)OC, 28);
    double *xd = widen(x, nc), *wd = widen(w, wc), *bd = widen(b, (size_t)OC);
    double *dyd = widen(dy, no), *dxd = widen(dx, nc), *dwd = widen(dw, wc);
    double *dbd = widen(db, (size_t)OC), *yd = malloc(no * sizeof(double));
    nn_linear_forward(y, x, w, b, N, C, OC);
    nn_linear_forward_ref(yd, xd, wd, bd, N, C, OC);
    nn_linear_backward(dx, dw, db, dy, x, w, N, C, OC);
    nn_linear_backward_ref(dxd, dwd, dbd, dyd, xd, wd, N, C, OC);
    CU_ASSERT(max_rel(y, yd, no) < 1e-5);
    CU_ASSERT(max_rel(dx, dxd, nc) < 1e-5);
    CU_ASSERT(max_rel(dw, dwd, wc) < 1e-5);
    CU_ASSERT(max_rel(db, dbd, (size_t)OC) < 1e-5);
    void *ptrs[] = {x, w, b, y, dy, dx, dw, db, xd, wd, bd, dyd, dxd, dwd, dbd, yd};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) free(ptrs[i]);
}

// 1 thread runs all the blocks in one task; 2 and 3 share them out
static void test_split_gemm(void) {
    for (int nt = 1; nt <= 3; nt++) {
        par_set_threads(nt);
        check_split_gemm(250, 96, 130);  // by rows: 64, 64, 64, 58
        check_split_gemm(70, 112, 333);  // by columns: 96, 96, 96, 45
    }
    par_set_threads(1);
}

// The gradient norm over tensors of several chunks each (and a tail, and a tensor shorter
// than a chunk) against a plain double sum, on 1 and 3 threads.
static void test_norm_chunks(void) {
    TensorSpec sp[3];
    tensor_spec_set(&sp[0], 0, 1, 40000, 0, "a");
    tensor_spec_set(&sp[1], 1, 1, 17, 0, "b");
    tensor_spec_set(&sp[2], 0, 2, 300, 111, "c");
    const size_t n = tensor_layout(sp, 3, 0);
    float *g = rnd(n, 31);
    double ref = 0;
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < sp[i].n; j++) ref += (double)g[sp[i].offset + j] * g[sp[i].offset + j];
    ref = sqrt(ref);
    for (int nt = 1; nt <= 3; nt += 2) {
        par_set_threads(nt);
        CU_ASSERT(fabs(optim_grad_norm(g, sp, 3) - ref) <= 1e-12 * ref);
    }
    // a tensor left out of the specs does not count
    CU_ASSERT(fabs(optim_grad_norm(g, sp, 2) - ref) > 1e-3 * ref);
    free(g);
    par_set_threads(1);
}

// ---------------------------------------------------------------------------------------
// instruction sets

static const char *const ISAS[] = {"sse2", "avx2", "avx512"};

static void test_isa_steps(void) {
    const char *start = nn_isa();
    par_set_threads(2);
    CU_ASSERT_EQUAL(nn_set_isa("sse2"), 0);
    StepOut ra = albert_run(), re = encdec_run();
    int compared = 0;
    for (int i = 1; i < 3; i++) {
        if (nn_set_isa(ISAS[i]) != 0) {
            printf("\n  (%s: this CPU does not run it; not compared here)", ISAS[i]);
            continue;
        }
        StepOut a = albert_run(), e = encdec_run();
        char what[64];
        snprintf(what, sizeof what, "ALBERT step, %s against sse2", ISAS[i]);
        CU_ASSERT(same(&ra, &a, what));
        snprintf(what, sizeof what, "encoder-decoder step, %s against sse2", ISAS[i]);
        CU_ASSERT(same(&re, &e, what));
        free_out(&a);
        free_out(&e);
        compared++;
    }
    printf("\n  compared sse2 with %d other instruction set(s)", compared);
    CU_ASSERT(compared >= (strcmp(start, "sse2") != 0));
    CU_ASSERT(nn_set_isa("none") == -1);
    CU_ASSERT(nn_set_isa(start) == 0);
    free_out(&ra);
    free_out(&re);
    par_set_threads(1);
}

// inputs for the exp-based kernels: a sweep over [-120, 120] (GELU's exp argument is
// -2u, which passes exp's clamps at |x| of about 9) and the special values
static void special_inputs(float *x, size_t n) {
    const float sp[] = {0.0f, -0.0f, NAN, INFINITY, -INFINITY, -87.0f, -87.00001f, 80.0f,
                        80.00001f, 1e-30f, -1e-30f, 3.4e38f, -3.4e38f, 9.0f, -9.0f, 1.0f};
    for (size_t i = 0; i < n; i++)
        x[i] = i % 7 == 0 ? sp[(i / 7) % 16] : -120.0f + 240.0f * cx_rng_uniform(12, i);
}

static void test_isa_kernels(void) {
    const char *start = nn_isa();
    const size_t lens[] = {1, 5, 15, 16, 17, 31, 1003};
    enum { MAXN = 1003 };
    static float x[MAXN], dy[MAXN], ref_y[3][MAXN], ref_dx[3][MAXN], ref_p[3][MAXN];
    int ran[3] = {0};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const size_t n = lens[li];
        special_inputs(x, n);
        for (size_t i = 0; i < n; i++) dy[i] = cx_rng_uniform(13, i) - 0.5f;
        for (int v = 0; v < 3; v++) {
            if (nn_set_isa(ISAS[v]) != 0) continue;
            ran[v] = 1;
            nn_gelu_forward(ref_y[v], x, n);
            memset(ref_dx[v], 0, sizeof ref_dx[v]);
            nn_gelu_backward(ref_dx[v], dy, x, n);
            // softmax of one row of finite scores (the row's exp arguments are all <= 0)
            float row[MAXN];
            for (size_t i = 0; i < n; i++) row[i] = isfinite(x[i]) ? x[i] / 2 : -50.0f;
            int32_t tg = 0;
            nn_softmax_xent_forward(ref_p[v], row, &tg, 1, (int)n);
        }
        for (int v = 1; v < 3; v++) {
            if (!ran[v]) continue;
            CU_ASSERT(!memcmp(ref_y[0], ref_y[v], n * sizeof(float)));
            CU_ASSERT(!memcmp(ref_dx[0], ref_dx[v], n * sizeof(float)));
            CU_ASSERT(!memcmp(ref_p[0], ref_p[v], n * sizeof(float)));
        }
    }
    // LayerNorm (residual add, forward, input and parameter gradients) and a column sum
    // (bias gradients), 3 rows of each length: every instruction set gives the same bits
    enum { R = 3 };
    static float lx[3 * MAXN], lw[MAXN], lb[MAXN], lo[4][R * MAXN], ldx[4][R * MAXN];
    static float ldw[4][MAXN], ldb[4][MAXN], lbias[4][MAXN], lmean[R], lrstd[R];
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int C = (int)lens[li];
        for (int i = 0; i < R * C; i++) lx[i] = 3.0f * (cx_rng_uniform(21, i) - 0.5f);
        for (int i = 0; i < C; i++) {
            lw[i] = 1.0f + cx_rng_uniform(22, i);
            lb[i] = cx_rng_uniform(23, i) - 0.5f;
        }
        int ok = 1, nv = 0;
        for (int v = 0; v < 3; v++) {
            if (nn_set_isa(ISAS[v]) != 0) continue;
            float res[R * MAXN];
            nn_residual_layernorm_forward(res, lo[v], lmean, lrstd, lx, lx, lw, lb, R, C, 1e-5f);
            for (int i = 0; i < R * C; i++) ldx[v][i] = 0.25f;
            for (int i = 0; i < C; i++) ldw[v][i] = ldb[v][i] = lbias[v][i] = 0.5f;
            nn_layernorm_backward(ldx[v], ldw[v], ldb[v], lx, res, lmean, lrstd, lw, R, C);
            nn_linear_backward(NULL, NULL, lbias[v], lx, lx, lw, R, 1, C);  // dbias only
            if (v > 0) {
                ok &= !memcmp(lo[0], lo[v], (size_t)R * C * sizeof(float));
                ok &= !memcmp(ldx[0], ldx[v], (size_t)R * C * sizeof(float));
                ok &= !memcmp(ldw[0], ldw[v], (size_t)C * sizeof(float));
                ok &= !memcmp(ldb[0], ldb[v], (size_t)C * sizeof(float));
                ok &= !memcmp(lbias[0], lbias[v], (size_t)C * sizeof(float));
            }
            nv++;
        }
        CU_ASSERT(nv >= 1);
        if (!ok) printf("\n  LayerNorm / column sums differ between instruction sets at C=%d", C);
        CU_ASSERT(ok);
    }
    // sse2 always runs, and so does the set the kernels were started on (the CPU's best)
    CU_ASSERT(ran[0]);
    for (int v = 0; v < 3; v++)
        if (!strcmp(start, ISAS[v])) CU_ASSERT(ran[v]);
    // spot values against their definitions: gelu(0) = 0, gelu(NaN) = NaN, gelu(+large) = x
    float s[3] = {0.0f, NAN, 1000.0f}, y[3];
    nn_gelu_forward(y, s, 3);
    CU_ASSERT(y[0] == 0.0f && isnan(y[1]) && y[2] == 1000.0f);
    CU_ASSERT(nn_set_isa(start) == 0);
}

int main(int argc, char **argv) {
    const TuTest pool[] = {{"par_run covers [0, n) once, chunks on grain boundaries", test_cover},
                           {"a par_run inside a task runs inline", test_nested},
                           {"a child of fork() runs with a pool of one", test_fork}};
    const TuTest steps[] = {
        {"ALBERT step + AdamW + LAMB: 1, 2, 3 threads bit for bit", test_albert_threads},
        {"encoder-decoder step + optimizers: 1, 2, 3 threads bit for bit", test_encdec_threads},
        {"every instruction set this CPU runs: same steps bit for bit", test_isa_steps},
        {"every instruction set: GELU, GELU grad, softmax, LayerNorm, column sums bit for bit", test_isa_kernels},
        {"fused linear+GELU (and backward), residual+LayerNorm = unfused, bit for bit", test_fused},
        {"split products (rows, columns, short last block) against double references",
         test_split_gemm},
        {"gradient norm over many chunks against a plain double sum", test_norm_chunks}};
    const TuSuite suites[] = {{"pool", NULL, NULL, NULL, NULL, pool, TU_NELEM(pool)},
                              {"determinism", NULL, NULL, NULL, NULL, steps, TU_NELEM(steps)}};
    return tu_run(suites, TU_NELEM(suites), argc > 1 ? argv[1] : NULL, CU_BRM_VERBOSE);
}
