// nn.c: fast float implementations of the ops declared in nn.h.
//
// Every op runs on the pool of models/par.h: matrix products on OpenBLAS cblas_sgemm, split
// into one block of output rows (or columns) per pool thread with OpenBLAS itself on one
// thread; attention one head per task; element-wise ops by rows or elements; sums over rows
// (bias, LayerNorm and embedding gradients) by columns, so that every output element is
// computed with the same arithmetic in the same order whatever the thread count.
// The element-wise code is allocation-free and written so that GCC vectorises it at -O2:
//
//  * Blocks of VL elements with a fixed-length inner loop. GCC 12 at -O2 uses the
//    "very cheap" vectoriser cost model, which refuses loops whose trip count is not known
//    to be a multiple of the vector length; a fixed VL-iteration inner loop is vectorised
//    (SSE to AVX-512). Each loop ends with a scalar tail over the remaining n % VL
//    elements that uses the same scalar formula, so an element's result never depends on
//    where the block boundaries fall.
//  * Reductions keep VL partial sums (no reassociation is needed; we build without
//    -ffast-math), combined at the end.
//  * Element-wise ops whose output may alias their input (gelu_forward, dropout_forward,
//    add_forward, and softmax_xent_forward, whose probs may alias logits) load each block
//    into a local array before computing, so out == inp is well defined. Other pointers
//    are declared restrict: their buffers must not overlap.
//  * exp: glibc's expf is an out-of-line call per element and is never vectorised without
//    -ffast-math, so the softmax and GELU loops use nn_expf below, an inline Cephes-style
//    polynomial: error below 1 ulp (8.2e-8 relative) for every float in [-87, 80], checked
//    exhaustively against double exp; 0 below -87 (and for -INFINITY); clamped above 80,
//    which only GELU's 1 / (1 + exp(-2u)) reaches, where the result is ~0 either way.
//    tanh goes through exp without cancellation: 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)).
//
// Attention masking: keys with mask == 0 get the score -INFINITY (the limit of "adds a
// large negative"), so their probability is exactly 0. A row whose keys are all padding
// gets probabilities all 0 (output 0, no NaN). Queries at padding positions attend normally.
#include "nn.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"
#include "rng.h"

#define VL 16

// ---------------------------------------------------------------------------------------
// scalar kernels (inlined into the vector blocks and the scalar tails)

#define NN_EXP_LO (-87.0f)  // below: result 0 (true value < 1.7e-38); -INFINITY gives 0
#define NN_EXP_HI 80.0f     // above: clamped to exp(80) = 5.5e34, so 1/(1+e) stays normal

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2)/2; branch-free so it vectorises.
static inline float nn_expf(float x) {
    float keep = x < NN_EXP_LO ? 0.0f : 1.0f;
    x = x < NN_EXP_LO ? NN_EXP_LO : x;
    x = x > NN_EXP_HI ? NN_EXP_HI : x;
    // Adding 1.5*2^23 rounds x*log2(e) to an integer that lands in t's low mantissa bits.
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    // Cody-Waite: ln 2 = 0.693359375 - 2.12194440e-4 (first part exact in 9 bits)
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    float er = q * (r * r) + r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23;  // 2^n, n in [-126, 115]; NaN x gives NaN
    float s;
    memcpy(&s, &sb, sizeof s);
    return er * s * keep;
}

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)
#define GELU_A 0.044715f

// gelu(x) = 0.5 x (1 + tanh(u)) = x * sig,  sig = 1/(1 + exp(-2u)),  u = K (x + A x^3)
static inline float gelu_f(float x) {
    float u = GELU_K * (x + GELU_A * x * x * x);
    return x / (1.0f + nn_expf(-2.0f * u));
}

// d gelu / dx = sig + x * 2 sig (1 - sig) u',  1 - sig = e * sig,  u' = K (1 + 3 A x^2)
static inline float gelu_grad_f(float x) {
    float u = GELU_K * (x + GELU_A * x * x * x);
    float e = nn_expf(-2.0f * u);
    float sig = 1.0f / (1.0f + e);
    float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
    return sig + 2.0f * x * sig * (e * sig) * du;
}

// ---------------------------------------------------------------------------------------
// Kernels and dispatch: the exp-based kernels in explicit vectors for AVX-512, AVX2 and the
// build's SSE2 baseline (models/nn_simd.h), chosen once at start-up from the CPU (and
// capped by CONFLUX_ISA=avx512|avx2|sse2, for tests and comparisons). All three give
// bit-identical results, so the choice never changes a number.

#define NN_W 16
#define NN_SUF avx512
#define NN_TGT __attribute__((target("avx512f")))
#include "nn_simd.h"
#define NN_W 8
#define NN_SUF avx2
#define NN_TGT __attribute__((target("avx2")))
#include "nn_simd.h"
#define NN_W 4
#define NN_SUF sse2
#define NN_TGT
#include "nn_simd.h"

typedef struct {
    const char *name;
    void (*gelu_fwd)(float *out, const float *in, size_t n);
    void (*gelu_bwd)(float *restrict dinp, const float *restrict dout, const float *restrict inp,
                     size_t n);
    float (*exp_sum)(float *out, const float *in, int n, float mx);
    float (*vmax)(const float *x, int n);
    void (*vacc)(float *restrict y, const float *restrict x, int n);
    void (*vscale)(float *x, int n, float s);
    void (*vadd)(float *r, const float *a, const float *b, int n);
    void (*ln_row)(float *restrict o, float *restrict mean, float *restrict rstd,
                   const float *restrict x, const float *restrict weight,
                   const float *restrict bias, int C, float eps);
    void (*ln_bwd_row)(float *restrict dx, const float *restrict x, const float *restrict dy,
                       const float *restrict weight, float m, float rs, int C);
    void (*ln_bwd_col)(float *restrict dw, float *restrict db, const float *restrict x,
                       const float *restrict dy, float m, float rs, int w);
    void (*softmax_bwd_row)(float *restrict ds, const float *restrict pr, int T);
} NnKernels;

static const NnKernels KERNELS[] = {
#define NN_KERNELS(isa)                                                                        \
    {#isa, gelu_fwd_##isa, gelu_bwd_##isa, exp_sum_##isa, vmax_##isa, vacc_##isa,             \
     vscale_##isa, vadd_##isa, ln_row_##isa, ln_bwd_row_##isa, ln_bwd_col_##isa,               \
     softmax_bwd_row_##isa}
    NN_KERNELS(avx512),
    NN_KERNELS(avx2),
    NN_KERNELS(sse2),
#undef NN_KERNELS
};
static const NnKernels *kern = &KERNELS[2];

static int isa_best(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 0 : __builtin_cpu_supports("avx2") ? 1 : 2;
}

__attribute__((constructor)) static void nn_pick_kernels(void) {
    int best = isa_best();
    const char *cap = getenv("CONFLUX_ISA");
    if (cap && *cap) {
        int want = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(cap, KERNELS[i].name)) want = i;
        if (want < 0)
            fprintf(stderr, "conflux: warning: CONFLUX_ISA=%s is not avx512, avx2 or sse2; "
                            "ignored\n", cap);
        else if (want > best) best = want;
    }
    kern = &KERNELS[best];
}

const char *nn_isa(void) { return kern->name; }

int nn_set_isa(const char *name) {
    for (int i = isa_best(); i < 3; i++)
        if (!strcmp(name, KERNELS[i].name)) {
            kern = &KERNELS[i];
            return 0;
        }
    return -1;
}

// ---------------------------------------------------------------------------------------
// vector helpers

// out = inp * keep/(1-p) with the mask of (seed, offset + i); out may equal inp.
static void dropout_apply(float *out, const float *inp, size_t n, float p, uint64_t seed,
                          uint64_t offset) {
    const float scale = 1.0f / (1.0f - p);
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
        float x[VL], y[VL];
        memcpy(x, inp + i, sizeof x);
        for (int j = 0; j < VL; j++) {
            float m = cx_rng_uniform(seed, offset + i + (size_t)j) < p ? 0.0f : scale;
            y[j] = x[j] * m;
        }
        memcpy(out + i, y, sizeof y);
    }
    for (; i < n; i++) {
        float m = cx_rng_uniform(seed, offset + i) < p ? 0.0f : scale;
        out[i] = inp[i] * m;
    }
}

// ---------------------------------------------------------------------------------------
// splitting work over the pool (models/par.h)

#define GRAIN_ELEMS 4096            // element-wise chunks (a multiple of VL)
#define GRAIN_COPY 16384            // zeroing and copying chunks
#define GRAIN_ROWS 8                // row-wise chunks
#define GRAIN_COLS 16               // column-wise chunks (a multiple of VL)
#define GEMM_SPLIT_MIN_FLOP 4.0e6   // smaller products run whole on the caller

// C (M,N) = alpha op(A) op(B) + beta C, row-major, as GEMM_BLOCKS blocks of rows of C when
// M >= N, else of columns, each a cblas_sgemm of its own, shared out over the pool.
// OpenBLAS's result for an element depends on how the product around it is cut (a block of
// rows computed alone can differ in the last bit from the same rows inside a larger call),
// so the blocks depend on the shape only: every thread count makes the same calls.
// bias (N) or NULL: copied into C's rows first (then beta must be 1).
// An epilogue runs on each block as soon as it is computed, while it is in cache: with
// EPI_GELU, out (ldc like C) = gelu(C); with EPI_GELU_BWD, out += C * gelu'(aux).
#define GEMM_BLOCKS 4
enum { EPI_NONE, EPI_GELU, EPI_GELU_BWD };
typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc, split_m, epi;
    size_t block;
    float alpha, beta;
    const float *A, *B, *bias, *aux;
    float *C, *out;
} GemmTask;

static void epilogue_run(const GemmTask *g, size_t at, size_t len) {
    if (g->epi == EPI_GELU) kern->gelu_fwd(g->out + at, g->C + at, len);
    else kern->gelu_bwd(g->out + at, g->C + at, g->aux + at, len);
}

// the block of rows [r0, r0 + m) and columns [c0, c0 + n) of C
static void gemm_epilogue(const GemmTask *g, size_t r0, int m, size_t c0, int n) {
    if (n == g->ldc) {  // whole rows: one stretch
        epilogue_run(g, r0 * (size_t)g->ldc, (size_t)m * n);
        return;
    }
    for (int r = 0; r < m; r++) epilogue_run(g, (r0 + (size_t)r) * g->ldc + c0, (size_t)n);
}

static void gemm_block(void *ctx, int tid, size_t lo, size_t hi) {
    const GemmTask *g = ctx;
    (void)tid;
    for (size_t b0 = lo; b0 < hi; b0 += g->block) {
        const size_t b1 = b0 + g->block < hi ? b0 + g->block : hi;
        const int nb = (int)(b1 - b0);
        const float *A = g->A, *B = g->B;
        float *C = g->C;
        int m = g->M, n = g->N, c0 = 0;
        if (g->split_m) {
            A += g->ta == CblasNoTrans ? b0 * (size_t)g->lda : b0;
            C += b0 * (size_t)g->ldc;
            m = nb;
        } else {
            B += g->tb == CblasNoTrans ? b0 : b0 * (size_t)g->ldb;
            C += b0;
            n = nb;
            c0 = (int)b0;
        }
        if (g->bias)
            for (int r = 0; r < m; r++)
                memcpy(C + (size_t)r * g->ldc, g->bias + c0, (size_t)n * sizeof(float));
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, m, n, g->K, g->alpha, A, g->lda, B, g->ldb,
                    g->beta, C, g->ldc);
        if (g->epi != EPI_NONE)
            gemm_epilogue(g, g->split_m ? b0 : 0, m, g->split_m ? 0 : b0, n);
    }
}

static void gemm_epi(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc, const float *bias, int epi, float *out, const float *aux) {
    GemmTask g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb,
                  .ldc = ldc, .split_m = M >= N, .epi = epi, .alpha = alpha, .beta = beta,
                  .A = A, .B = B, .bias = bias, .aux = aux, .C = C, .out = out};
    const size_t dim = (size_t)(g.split_m ? M : N);
    if (2.0 * M * N * K < GEMM_SPLIT_MIN_FLOP) {
        g.block = dim;  // one call
    } else {
        g.block = (dim + GEMM_BLOCKS - 1) / GEMM_BLOCKS;
        g.block = (g.block + 15) / 16 * 16;
    }
    par_run(dim, g.block, gemm_block, &g);
}

static void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
                 const float *bias) {
    gemm_epi(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, EPI_NONE, NULL, NULL);
}

// ---------------------------------------------------------------------------------------
// embedding

typedef struct {
    float *out;
    const float *in;
    const int32_t *ids;
    int C;
} EmbTask;

static void emb_fwd_rows(void *ctx, int tid, size_t lo, size_t hi) {
    const EmbTask *e = ctx;
    (void)tid;
    for (size_t n = lo; n < hi; n++) {
        assert(e->ids[n] >= 0);
        memcpy(e->out + n * e->C, e->in + (size_t)e->ids[n] * e->C, (size_t)e->C * sizeof(float));
    }
}

void nn_embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C) {
    double t0 = par_prof_begin();
    EmbTask e = {.out = out, .in = wte, .ids = ids, .C = C};
    par_run((size_t)N, 64, emb_fwd_rows, &e);
    par_prof_end(PAR_PROF_EMBEDDING, t0);
}

// Sums over rows, split by columns: for every row n in order, columns [lo, hi) of dst's row
// ids[n] (row 0 when ids is NULL) += src's row n. Each element gets the same sum in the
// same order as one serial pass. Embedding gradients (ids) and bias gradients (no ids).
typedef struct {
    float *dst;
    const float *src;
    const int32_t *ids;
    int N, C;
} ColSumTask;

static void col_sum_block(void *ctx, int tid, size_t lo, size_t hi) {
    const ColSumTask *t = ctx;
    (void)tid;
    for (int n = 0; n < t->N; n++) {
        const size_t row = t->ids ? (size_t)t->ids[n] : 0;
        assert(!t->ids || t->ids[n] >= 0);
        kern->vacc(t->dst + row * t->C + lo, t->src + (size_t)n * t->C + lo, (int)(hi - lo));
    }
}

void nn_embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C) {
    if (!dwte) return;
    double t0 = par_prof_begin();
    ColSumTask t = {.dst = dwte, .src = dout, .ids = ids, .N = N, .C = C};
    par_run((size_t)C, GRAIN_COLS, col_sum_block, &t);
    par_prof_end(PAR_PROF_EMBEDDING, t0);
}

// ---------------------------------------------------------------------------------------
// linear

void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (C <= 0) {  // empty product (BLAS rejects lda = 0)
        for (int n = 0; n < N; n++) {
            if (bias) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
            else memset(out + (size_t)n * OC, 0, (size_t)OC * sizeof(float));
        }
        return;
    }
    double t0 = par_prof_begin();
    // out (N,OC) = bias + inp (N,C) @ weight (OC,C)^T
    gemm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, bias ? 1.0f : 0.0f, out,
         OC, bias);
    par_prof_end(PAR_PROF_GEMM, t0);
}

void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC) {
    if (N <= 0 || OC <= 0 || C <= 0) return;
    double t0 = par_prof_begin();
    // dinp (N,C) += dout (N,OC) @ weight (OC,C)
    if (dinp)
        gemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C, NULL);
    // dweight (OC,C) += dout^T (OC,N) @ inp (N,C)
    if (dweight)
        gemm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C, NULL);
    par_prof_end(PAR_PROF_GEMM, t0);
    if (dbias) {
        t0 = par_prof_begin();
        ColSumTask t = {.dst = dbias, .src = dout, .N = N, .C = OC};
        par_run((size_t)OC, GRAIN_COLS, col_sum_block, &t);
        par_prof_end(PAR_PROF_BIAS, t0);
    }
}

void nn_linear_gelu_forward(float *pre, float *out, const float *inp, const float *weight,
                            const float *bias, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (C <= 0) {
        nn_linear_forward(pre, inp, weight, bias, N, C, OC);
        nn_gelu_forward(out, pre, (size_t)N * OC);
        return;
    }
    double t0 = par_prof_begin();
    gemm_epi(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, bias ? 1.0f : 0.0f, pre,
             OC, bias, EPI_GELU, out, NULL);
    par_prof_end(PAR_PROF_GEMM, t0);
}

void nn_gelu_linear_backward(float *dpre, float *dg, float *dweight, float *dbias,
                             const float *dout, const float *g, const float *pre,
                             const float *weight, int N, int C, int OC) {
    if (N <= 0 || OC <= 0 || C <= 0) return;
    double t0 = par_prof_begin();
    // dg (N,C) = dout (N,OC) @ weight (OC,C), then dpre += dg * gelu'(pre), block by block
    gemm_epi(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dg, C, NULL,
             EPI_GELU_BWD, dpre, pre);
    par_prof_end(PAR_PROF_GEMM, t0);
    nn_linear_backward(NULL, dweight, dbias, dout, g, weight, N, C, OC);
}

// ---------------------------------------------------------------------------------------
// layernorm (biased variance, like torch)

// rows [lo, hi): out = LN(inp); with add (fused residual), inp = a + b is written first
typedef struct {
    float *out, *mean, *rstd, *res;
    const float *inp, *a, *b, *weight, *bias;
    int C;
    float eps;
} LnTask;

static void ln_fwd_rows(void *ctx, int tid, size_t lo, size_t hi) {
    const LnTask *t = ctx;
    (void)tid;
    const size_t C = (size_t)t->C;
    for (size_t n = lo; n < hi; n++) {
        const float *x = t->inp + n * C;
        if (t->res) {  // res = a + b (res may be a or b)
            kern->vadd(t->res + n * C, t->a + n * C, t->b + n * C, t->C);
            x = t->res + n * C;
        }
        kern->ln_row(t->out + n * C, t->mean + n, t->rstd + n, x, t->weight, t->bias, t->C,
                     t->eps);
    }
}

void nn_layernorm_forward(float *restrict out, float *restrict mean, float *restrict rstd,
                          const float *restrict inp, const float *restrict weight,
                          const float *restrict bias, int N, int C, float eps) {
    double t0 = par_prof_begin();
    LnTask t = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight,
                .bias = bias, .C = C, .eps = eps};
    par_run((size_t)N, GRAIN_ROWS, ln_fwd_rows, &t);
    par_prof_end(PAR_PROF_LAYERNORM, t0);
}

void nn_residual_layernorm_forward(float *res, float *restrict out, float *restrict mean,
                                   float *restrict rstd, const float *a, const float *b,
                                   const float *restrict weight, const float *restrict bias,
                                   int N, int C, float eps) {
    double t0 = par_prof_begin();
    LnTask t = {.out = out, .mean = mean, .rstd = rstd, .res = res, .a = a, .b = b,
                .inp = res, .weight = weight, .bias = bias, .C = C, .eps = eps};
    par_run((size_t)N, GRAIN_ROWS, ln_fwd_rows, &t);
    par_prof_end(PAR_PROF_LAYERNORM, t0);
}

typedef struct {
    float *dinp, *dweight, *dbias;
    const float *dout, *inp, *mean, *rstd, *weight;
    int N, C;
} LnBwdTask;

static void ln_bwd_rows(void *ctx, int tid, size_t lo, size_t hi) {
    const LnBwdTask *t = ctx;
    (void)tid;
    const size_t C = (size_t)t->C;
    for (size_t n = lo; n < hi; n++)
        kern->ln_bwd_row(t->dinp + n * C, t->inp + n * C, t->dout + n * C, t->weight, t->mean[n],
                         t->rstd[n], t->C);
}

// dweight, dbias columns [lo, hi), rows in order
static void ln_bwd_cols(void *ctx, int tid, size_t lo, size_t hi) {
    const LnBwdTask *t = ctx;
    (void)tid;
    for (int n = 0; n < t->N; n++)
        kern->ln_bwd_col(t->dweight ? t->dweight + lo : NULL, t->dbias ? t->dbias + lo : NULL,
                         t->inp + (size_t)n * t->C + lo, t->dout + (size_t)n * t->C + lo,
                         t->mean[n], t->rstd[n], (int)(hi - lo));
}

void nn_layernorm_backward(float *restrict dinp, float *restrict dweight, float *restrict dbias,
                           const float *restrict dout, const float *restrict inp,
                           const float *restrict mean, const float *restrict rstd,
                           const float *restrict weight, int N, int C) {
    double t0 = par_prof_begin();
    LnBwdTask t = {.dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout, .inp = inp,
                   .mean = mean, .rstd = rstd, .weight = weight, .N = N, .C = C};
    if (dinp) par_run((size_t)N, GRAIN_ROWS, ln_bwd_rows, &t);
    if (dweight || dbias) par_run((size_t)C, GRAIN_COLS, ln_bwd_cols, &t);
    par_prof_end(PAR_PROF_LAYERNORM, t0);
}

// ---------------------------------------------------------------------------------------
// element-wise ops: GELU (tanh approximation), dropout, residual add

typedef struct {
    float *out;
    const float *a, *b;
    float p;
    uint64_t seed, offset;
} EwTask;

static void gelu_fwd_block(void *ctx, int tid, size_t lo, size_t hi) {
    const EwTask *e = ctx;
    (void)tid;
    kern->gelu_fwd(e->out + lo, e->a + lo, hi - lo);
}

void nn_gelu_forward(float *out, const float *inp, size_t n) {
    double t0 = par_prof_begin();
    EwTask e = {.out = out, .a = inp};
    par_run(n, GRAIN_ELEMS, gelu_fwd_block, &e);
    par_prof_end(PAR_PROF_GELU, t0);
}

// dinp += dout * gelu'(inp)
static void gelu_bwd_block(void *ctx, int tid, size_t lo, size_t hi) {
    const EwTask *e = ctx;
    (void)tid;
    kern->gelu_bwd(e->out + lo, e->a + lo, e->b + lo, hi - lo);
}

void nn_gelu_backward(float *restrict dinp, const float *restrict dout, const float *restrict inp,
                      size_t n) {
    if (!dinp) return;
    double t0 = par_prof_begin();
    EwTask e = {.out = dinp, .a = dout, .b = inp};
    par_run(n, GRAIN_ELEMS, gelu_bwd_block, &e);
    par_prof_end(PAR_PROF_GELU, t0);
}

static void zero_block(void *ctx, int tid, size_t lo, size_t hi) {
    const EwTask *e = ctx;
    (void)tid;
    memset(e->out + lo, 0, (hi - lo) * sizeof(float));
}

static void copy_block(void *ctx, int tid, size_t lo, size_t hi) {
    const EwTask *e = ctx;
    (void)tid;
    memmove(e->out + lo, e->a + lo, (hi - lo) * sizeof(float));
}

void nn_zero(float *out, size_t n) {
    double t0 = par_prof_begin();
    EwTask e = {.out = out};
    par_run(n, GRAIN_COPY, zero_block, &e);
    par_prof_end(PAR_PROF_COPY, t0);
}

void nn_copy(float *out, const float *in, size_t n) {
    double t0 = par_prof_begin();
    EwTask e = {.out = out, .a = in};
    par_run(n, GRAIN_COPY, copy_block, &e);
    par_prof_end(PAR_PROF_COPY, t0);
}

static void dropout_fwd_block(void *ctx, int tid, size_t lo, size_t hi) {
    const EwTask *e = ctx;
    (void)tid;
    dropout_apply(e->out + lo, e->a + lo, hi - lo, e->p, e->seed, e->offset + lo);
}

void nn_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed,
                        uint64_t offset) {
    assert(p >= 0.0f && p < 1.0f);
    if (p == 0.0f && out == inp) return;
    double t0 = par_prof_begin();
    EwTask e = {.out = out, .a = inp, .p = p, .seed = seed, .offset = offset};
    par_run(n, GRAIN_ELEMS, p == 0.0f ? copy_block : dropout_fwd_block, &e);
    par_prof_end(PAR_PROF_DROPOUT, t0);
}

// dinp += dout * mask / (1 - p)
static void dropout_bwd_block(void *ctx, int tid, size_t lo, size_t hi) {
    const EwTask *e = ctx;
    (void)tid;
    float *restrict dinp = e->out;
    const float *restrict dout = e->a;
    size_t i = lo;
    if (e->p == 0.0f) {
        for (; i + VL <= hi; i += VL)
            for (int j = 0; j < VL; j++) dinp[i + j] += dout[i + j];
        for (; i < hi; i++) dinp[i] += dout[i];
        return;
    }
    const float p = e->p, scale = 1.0f / (1.0f - p);
    for (; i + VL <= hi; i += VL)
        for (int j = 0; j < VL; j++) {
            float m = cx_rng_uniform(e->seed, e->offset + i + (size_t)j) < p ? 0.0f : scale;
            dinp[i + j] += dout[i + j] * m;
        }
    for (; i < hi; i++) {
        float m = cx_rng_uniform(e->seed, e->offset + i) < p ? 0.0f : scale;
        dinp[i] += dout[i] * m;
    }
}

void nn_dropout_backward(float *restrict dinp, const float *restrict dout, size_t n, float p,
                         uint64_t seed, uint64_t offset) {
    assert(p >= 0.0f && p < 1.0f);
    if (!dinp) return;
    double t0 = par_prof_begin();
    EwTask e = {.out = dinp, .a = dout, .p = p, .seed = seed, .offset = offset};
    par_run(n, GRAIN_ELEMS, dropout_bwd_block, &e);
    par_prof_end(PAR_PROF_DROPOUT, t0);
}

static void add_block(void *ctx, int tid, size_t lo, size_t hi) {
    const EwTask *e = ctx;
    (void)tid;
    size_t i = lo;
    for (; i + VL <= hi; i += VL) {
        float x[VL], y[VL], z[VL];
        memcpy(x, e->a + i, sizeof x);
        memcpy(y, e->b + i, sizeof y);
        for (int j = 0; j < VL; j++) z[j] = x[j] + y[j];
        memcpy(e->out + i, z, sizeof z);
    }
    for (; i < hi; i++) e->out[i] = e->a[i] + e->b[i];
}

void nn_add_forward(float *out, const float *a, const float *b, size_t n) {
    double t0 = par_prof_begin();
    EwTask e = {.out = out, .a = a, .b = b};
    par_run(n, GRAIN_ELEMS, add_block, &e);
    par_prof_end(PAR_PROF_ADD, t0);
}
// out (n) = exp(in - mx) / sum, returning the sum (the softmax of a row whose maximum is
// mx). out may equal in: blocks are copied in before they are written out.
static float exp_normalize(float *out, const float *in, int n, float mx) {
    const float s = kern->exp_sum(out, in, n, mx);
    kern->vscale(out, n, 1.0f / s);
    return s;
}

float nn_softmax_lse(float *probs, const float *logits, int n) {
    const float mx = kern->vmax(logits, n);
    if (mx == -INFINITY) {  // every entry -inf: no distribution
        for (int i = 0; i < n; i++) probs[i] = 0.0f;
        return -INFINITY;
    }
    return mx + logf(exp_normalize(probs, logits, n, mx));
}

// ---------------------------------------------------------------------------------------
// attention

// In place: row (T) of scaled scores -> softmax probabilities; mrow (T) or NULL.
static void softmax_row_masked(float *restrict row, const int32_t *restrict mrow, int T) {
    if (mrow) {
        int i = 0;
        for (; i + VL <= T; i += VL)
            for (int j = 0; j < VL; j++) row[i + j] = mrow[i + j] ? row[i + j] : -INFINITY;
        for (; i < T; i++) row[i] = mrow[i] ? row[i] : -INFINITY;
    }
    const float mx = kern->vmax(row, T);
    if (mx == -INFINITY) {  // every key is padding
        memset(row, 0, (size_t)T * sizeof(float));
        return;
    }
    exp_normalize(row, row, T, mx);
}

// ---------------------------------------------------------------------------------------
// attention: one task per (batch row, head), on the pool; each head's products are
// single-threaded sgemm calls (OpenBLAS runs on one thread while the pool has several).

typedef struct {
    float *out, *dq, *dk, *dv;
    const float *att_in, *dout, *datt;
    float *att;
    const float *q, *k, *v;
    const int32_t *kmask;
    int NH, Tq, Tk, C, causal;
    int ldq, ldkv;  // row strides of q (and dq), of k, v (and dk, dv); out, dout use C
    float beta;     // backward: 1 accumulates into dq, dk, dv; 0 overwrites them
    float p;
    uint64_t seed, offset;
    float *scratch;
} AttTask;

static void att_fwd_heads(void *ctx, int tid, size_t lo, size_t hi) {
    const AttTask *a = ctx;
    (void)tid;
    const int NH = a->NH, Tq = a->Tq, Tk = a->Tk, C = a->C, D = C / NH;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t QK = (size_t)Tq * Tk;
    float *scratch = a->scratch + lo * QK;  // the chunk's own slice: its first head's
    for (size_t bh = lo; bh < hi; bh++) {
        const int b = (int)(bh / (size_t)NH), h = (int)(bh % (size_t)NH);
        const int32_t *mrow = a->kmask ? a->kmask + (size_t)b * Tk : NULL;
        const size_t colo = (size_t)b * Tq * C + (size_t)h * D;
        const size_t colq = (size_t)b * Tq * a->ldq + (size_t)h * D;
        const size_t colk = (size_t)b * Tk * a->ldkv + (size_t)h * D;
        float *A = a->att + bh * QK;
        // A (Tq,Tk) = scale * q_h (Tq,D) @ k_h (Tk,D)^T, reading the head's columns in place
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, scale, a->q + colq,
                    a->ldq, a->k + colk, a->ldkv, 0.0f, A, Tk);
        for (int t = 0; t < Tq; t++) {
            float *row = A + (size_t)t * Tk;
            // keys [0, n) are visible to this query; the rest (causal) get probability 0
            int n = a->causal ? t + 1 + (Tk - Tq) : Tk;
            n = n < 0 ? 0 : (n > Tk ? Tk : n);
            if (n > 0) softmax_row_masked(row, mrow, n);
            if (n < Tk) memset(row + n, 0, (size_t)(Tk - n) * sizeof(float));
        }
        const float *P = A;
        if (a->p > 0.0f) {
            dropout_apply(scratch, A, QK, a->p, a->seed, a->offset + bh * QK);
            P = scratch;
        }
        // out_h (Tq,D) = P (Tq,Tk) @ v_h (Tk,D)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, 1.0f, P, Tk,
                    a->v + colk, a->ldkv, 0.0f, a->out + colo, C);
    }
}

void nn_attention_ex_forward(float *out, float *att, const float *q, const float *k,
                             const float *v, const int32_t *kmask, int B, int Tq, int Tk, int C,
                             int NH, int causal, float p, uint64_t seed, uint64_t offset,
                             float *scratch) {
    assert(NH > 0 && C % NH == 0);
    assert(p >= 0.0f && p < 1.0f);
    if (B <= 0 || Tq <= 0 || Tk <= 0) return;
    double t0 = par_prof_begin();
    AttTask a = {.out = out, .att = att, .q = q, .k = k, .v = v, .kmask = kmask, .NH = NH,
                 .Tq = Tq, .Tk = Tk, .C = C, .causal = causal, .ldq = C, .ldkv = C, .p = p,
                 .seed = seed, .offset = offset, .scratch = scratch};
    par_run((size_t)B * NH, 1, att_fwd_heads, &a);
    par_prof_end(PAR_PROF_ATTENTION, t0);
}

static void att_bwd_heads(void *ctx, int tid, size_t lo, size_t hi) {
    const AttTask *a = ctx;
    (void)tid;
    const int NH = a->NH, Tq = a->Tq, Tk = a->Tk, C = a->C, D = C / NH;
    const float scale = 1.0f / sqrtf((float)D), p = a->p;
    const size_t QK = (size_t)Tq * Tk;
    float *S = a->scratch + lo * QK;  // Tq*Tk floats, reused for the chunk's heads
    for (size_t bh = lo; bh < hi; bh++) {
        const int b = (int)(bh / (size_t)NH), h = (int)(bh % (size_t)NH);
        const size_t colo = (size_t)b * Tq * C + (size_t)h * D;
        const size_t colq = (size_t)b * Tq * a->ldq + (size_t)h * D;
        const size_t colk = (size_t)b * Tk * a->ldkv + (size_t)h * D;
        const int ldq = a->ldq, ldkv = a->ldkv;
        const float *P = a->att_in + bh * QK;
        if (a->dv) {
            // dv_h (Tk,D) += dropout(P)^T (Tk,Tq) @ dout_h (Tq,D)
            const float *Pd = P;
            if (p > 0.0f) {
                dropout_apply(S, P, QK, p, a->seed, a->offset + bh * QK);
                Pd = S;
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, 1.0f, Pd, Tk,
                        a->dout + colo, C, a->beta, a->dv + colk, ldkv);
        }
        if (!a->dq && !a->dk) continue;
        // S (Tq,Tk) = dout_h @ v_h^T: gradient w.r.t. the dropped probabilities
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, 1.0f, a->dout + colo, C,
                    a->v + colk, ldkv, 0.0f, S, Tk);
        if (p > 0.0f) dropout_apply(S, S, QK, p, a->seed, a->offset + bh * QK);
        if (a->datt) {  // a gradient on the probabilities themselves (a copy distribution)
            const float *dP = a->datt + bh * QK;
            for (size_t i = 0; i < QK; i++) S[i] += dP[i];
        }
        // softmax backward, row by row: dS = P * (dP - sum(P * dP))
        for (int t = 0; t < Tq; t++) kern->softmax_bwd_row(S + (size_t)t * Tk, P + (size_t)t * Tk, Tk);
        // dq_h (Tq,D) += scale * dS @ k_h ; dk_h (Tk,D) += scale * dS^T @ q_h
        if (a->dq)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, scale, S, Tk,
                        a->k + colk, ldkv, a->beta, a->dq + colq, ldq);
        if (a->dk)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, scale, S, Tk,
                        a->q + colq, ldq, a->beta, a->dk + colk, ldkv);
    }
}

void nn_attention_ex_backward_datt(float *dq, float *dk, float *dv, const float *dout,
                                   const float *datt, const float *q, const float *k,
                                   const float *v, const float *att, int B, int Tq, int Tk, int C,
                                   int NH, float p, uint64_t seed, uint64_t offset,
                                   float *scratch) {
    // masked keys have P == 0, hence zero gradient: att carries the masks
    assert(NH > 0 && C % NH == 0);
    assert(p >= 0.0f && p < 1.0f);
    if (B <= 0 || Tq <= 0 || Tk <= 0) return;
    double t0 = par_prof_begin();
    AttTask a = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .datt = datt, .att_in = att,
                 .q = q, .k = k, .v = v, .NH = NH, .Tq = Tq, .Tk = Tk, .C = C, .ldq = C,
                 .ldkv = C, .beta = 1.0f, .p = p, .seed = seed, .offset = offset,
                 .scratch = scratch};
    par_run((size_t)B * NH, 1, att_bwd_heads, &a);
    par_prof_end(PAR_PROF_ATTENTION, t0);
}

void nn_attention_ex_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v, const float *att,
                              int B, int Tq, int Tk, int C, int NH, float p, uint64_t seed,
                              uint64_t offset, float *scratch) {
    nn_attention_ex_backward_datt(dq, dk, dv, dout, NULL, q, k, v, att, B, Tq, Tk, C, NH, p, seed,
                                  offset, scratch);
}

void nn_attention_qkv_forward(float *out, float *att, const float *qkv, const int32_t *mask,
                              int B, int T, int C, int NH, float p, uint64_t seed,
                              uint64_t offset, float *scratch) {
    assert(NH > 0 && C % NH == 0);
    assert(p >= 0.0f && p < 1.0f);
    if (B <= 0 || T <= 0) return;
    double t0 = par_prof_begin();
    AttTask a = {.out = out, .att = att, .q = qkv, .k = qkv + C, .v = qkv + 2 * (size_t)C,
                 .kmask = mask, .NH = NH, .Tq = T, .Tk = T, .C = C, .ldq = 3 * C,
                 .ldkv = 3 * C, .p = p, .seed = seed, .offset = offset, .scratch = scratch};
    par_run((size_t)B * NH, 1, att_fwd_heads, &a);
    par_prof_end(PAR_PROF_ATTENTION, t0);
}

void nn_attention_qkv_backward(float *dqkv, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH, float p,
                               uint64_t seed, uint64_t offset, float *scratch) {
    assert(NH > 0 && C % NH == 0);
    assert(p >= 0.0f && p < 1.0f);
    if (B <= 0 || T <= 0) return;
    double t0 = par_prof_begin();
    AttTask a = {.dq = dqkv, .dk = dqkv + C, .dv = dqkv + 2 * (size_t)C, .dout = dout,
                 .att_in = att, .q = qkv, .k = qkv + C, .v = qkv + 2 * (size_t)C, .NH = NH,
                 .Tq = T, .Tk = T, .C = C, .ldq = 3 * C, .ldkv = 3 * C, .beta = 0.0f, .p = p,
                 .seed = seed, .offset = offset, .scratch = scratch};
    par_run((size_t)B * NH, 1, att_bwd_heads, &a);
    par_prof_end(PAR_PROF_ATTENTION, t0);
}

void nn_attention_forward(float *out, float *att, const float *q, const float *k,
                          const float *v, const int32_t *mask, int B, int T, int C, int NH,
                          float p, uint64_t seed, uint64_t offset, float *scratch) {
    nn_attention_ex_forward(out, att, q, k, v, mask, B, T, T, C, NH, 0, p, seed, offset, scratch);
}

void nn_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *att,
                           const int32_t *mask, int B, int T, int C, int NH, float p,
                           uint64_t seed, uint64_t offset, float *scratch) {
    (void)mask;  // padding keys have P == 0, hence zero gradient: att carries the mask
    nn_attention_ex_backward(dq, dk, dv, dout, q, k, v, att, B, T, T, C, NH, p, seed, offset,
                             scratch);
}

// ---------------------------------------------------------------------------------------
// softmax cross-entropy
//
// Rows run in parallel. The loss is summed in double over fixed blocks of XENT_BLOCK rows
// (or more, so that there are at most XENT_MAX_BLOCKS), each block's rows in order, then
// the blocks in order: the same sum for any thread count.

#define XENT_BLOCK 16  // rows
#define XENT_MAX_BLOCKS 1024

typedef struct {
    float *probs, *dlogits;
    const float *logits;  // the backward's probabilities
    const int32_t *targets;
    int N, V, rows_per_block;
    float eps, scale;
    double *block_loss;
} XentTask;

static void xent_fwd_blocks(void *ctx, int tid, size_t lo, size_t hi) {
    const XentTask *x = ctx;
    (void)tid;
    const int V = x->V;
    for (size_t blk = lo; blk < hi; blk++) {
        double loss = 0.0;
        const size_t n0 = blk * (size_t)x->rows_per_block;
        for (size_t n = n0; n < n0 + (size_t)x->rows_per_block && n < (size_t)x->N; n++) {
            const int32_t tg = x->targets[n];
            const float *in = x->logits + n * V;
            float *pr = x->probs + n * V;  // may equal in
            assert(tg < V);
            double xt = 0.0, xsum = 0.0;  // read before pr overwrites them
            if (tg >= 0) {
                xt = in[tg];
                if (x->eps != 0.0f)
                    for (int i = 0; i < V; i++) xsum += in[i];
            }
            const float mx = kern->vmax(in, V);
            const float s = exp_normalize(pr, in, V, mx);
            if (tg >= 0) {
                // -log p[v] = lse - x[v];  mean over v of -log p[v] = lse - mean(x)
                const double lse = (double)mx + log((double)s);
                if (x->eps == 0.0f) loss += lse - xt;
                else loss += (1.0 - (double)x->eps) * (lse - xt) + (double)x->eps * (lse - xsum / V);
            }
        }
        x->block_loss[blk] = loss;
    }
}

static double xent_forward(float *probs, const float *logits, const int32_t *targets, int N,
                           int V, float eps) {
    if (N <= 0) return 0.0;
    double t0 = par_prof_begin();
    int rpb = XENT_BLOCK;
    if ((N + rpb - 1) / rpb > XENT_MAX_BLOCKS) rpb = (N + XENT_MAX_BLOCKS - 1) / XENT_MAX_BLOCKS;
    const int nblk = (N + rpb - 1) / rpb;
    double block_loss[XENT_MAX_BLOCKS];
    XentTask x = {.probs = probs, .logits = logits, .targets = targets, .N = N, .V = V,
                  .rows_per_block = rpb, .eps = eps, .block_loss = block_loss};
    par_run((size_t)nblk, 1, xent_fwd_blocks, &x);
    double loss = 0.0;
    for (int b = 0; b < nblk; b++) loss += block_loss[b];
    par_prof_end(PAR_PROF_XENT, t0);
    return loss;
}

double nn_softmax_xent_forward(float *probs, const float *logits, const int32_t *targets,
                               int N, int V) {
    return xent_forward(probs, logits, targets, N, V, 0.0f);
}

double nn_softmax_xent_smooth_forward(float *probs, const float *logits, const int32_t *targets,
                                      int N, int V, float eps) {
    return xent_forward(probs, logits, targets, N, V, eps);
}

// dlogits += scale * (probs - (1-eps) onehot(target) - eps/V) for selected rows
static void xent_bwd_rows(void *ctx, int tid, size_t lo, size_t hi) {
    const XentTask *x = ctx;
    (void)tid;
    const int V = x->V;
    const float scale = x->scale, eps = x->eps;
    const float u = scale * eps / (float)V;  // the uniform part of the smoothed target
    for (size_t n = lo; n < hi; n++) {
        const int32_t tg = x->targets[n];
        if (tg < 0) continue;
        assert(tg < V);
        float *restrict d = x->dlogits + n * V;
        const float *restrict pr = x->logits + n * V;  // the probabilities
        int i = 0;
        if (eps == 0.0f) {
            for (; i + VL <= V; i += VL)
                for (int j = 0; j < VL; j++) d[i + j] += scale * pr[i + j];
            for (; i < V; i++) d[i] += scale * pr[i];
            d[tg] -= scale;
        } else {
            for (; i + VL <= V; i += VL)
                for (int j = 0; j < VL; j++) d[i + j] += scale * pr[i + j] - u;
            for (; i < V; i++) d[i] += scale * pr[i] - u;
            d[tg] -= scale * (1.0f - eps);
        }
    }
}

void nn_softmax_xent_backward(float *restrict dlogits, const float *restrict probs,
                              const int32_t *restrict targets, int N, int V, float scale) {
    nn_softmax_xent_smooth_backward(dlogits, probs, targets, N, V, 0.0f, scale);
}

void nn_softmax_xent_smooth_backward(float *restrict dlogits, const float *restrict probs,
                                     const int32_t *restrict targets, int N, int V, float eps,
                                     float scale) {
    if (!dlogits || N <= 0) return;
    double t0 = par_prof_begin();
    XentTask x = {.dlogits = dlogits, .logits = probs, .targets = targets, .N = N, .V = V,
                  .eps = eps, .scale = scale};
    par_run((size_t)N, GRAIN_ROWS, xent_bwd_rows, &x);
    par_prof_end(PAR_PROF_XENT, t0);
}
