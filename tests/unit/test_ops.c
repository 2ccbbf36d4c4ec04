// test_ops.c: CUnit tests of the transformer ops in models/nn.h.
//
// Three independent references, for every op:
//  1. the double-precision twins (models/nn_ref.h): their backward is checked against
//     central finite differences of loss = sum(out * w) (random w);
//  2. the fast float ops are checked against the double twins on random inputs (odd sizes,
//     padding masks, dropout p > 0, ignored cross-entropy rows), with gradient buffers
//     pre-filled with random values so that "+=" is checked at the same time;
//  3. both are checked against golden values from PyTorch (tests/ref/ops_golden.h,
//     produced by tests/ref/ops_ref.py).
// Plus: dropout masks are reproducible and independent of how an array is split,
// backward ops accumulate, NULL gradients are skipped, in-place calls are allowed where
// nn.c says so, fully padded rows give zeros.
//
// Exit status: 0 when every assertion passed, 1 otherwise (CU_basic_run_tests returns 0
// even when tests fail). OPS_TEST_VERBOSE=1 prints the worst error of every comparison.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/nn.h"
#include "models/nn_ref.h"
#include "models/rng.h"
#include "tests/ref/ops_golden.h"
#include "tests/unit/opcheck.h"
#include "tests/unit/testutil.h"

// ---------------------------------------------------------------------------------------
// Tolerances. A comparison passes when |got - want| <= atol + rtol * |want| per element.
//
// Float op vs double ref / torch. Inputs are O(1) and exact in float, so the only error is
// float rounding (u = 6e-8), growing with the length K of each sum:
//  - element-wise ops (gelu, dropout, add, embedding scatter, the "+=" checks): a few
//    roundings per element, nn_expf < 1 ulp: 1e-6 absolute + 2e-6 relative;
//  - reductions (linear, layernorm, attention, softmax, cross-entropy), K up to 384:
//    2e-5 absolute + 1e-4 relative. The absolute part matters most: a sum that cancels to
//    a small value keeps the rounding error of its O(sqrt(K)) terms. Probabilities and
//    dlogits (all <= 1 in size) keep the 1e-6 absolute part with the 1e-4 relative one.
// Worst seen, with OpenBLAS's Haswell and its AVX-512 kernels: 0.27 of the tolerance
// (linear dweight: sums of 160 O(1) terms, error 9e-6); element-wise 0.16. Bugs tried on
// purpose (a GELU constant off by 3e-4 relative, overwrite instead of +=, a wrong mask or
// dropout counter) fail by 8x to 1e5x.
#define EW_ATOL 1e-6
#define EW_RTOL 2e-6
#define RED_ATOL 2e-5
#define RED_RTOL 1e-4
// Double ref vs torch float64: same math, different summation order: 1e-12.
#define REF_TOL 1e-12
// Float cross-entropy loss (a sum of N double terms computed from float logits): 1e-5 rel.
#define LOSS_RTOL 1e-5


// ---------------------------------------------------------------------------------------
// contexts: the forward of each op as loss = sum(out * w)

typedef struct {
    const int32_t *ids;
    double *wte, *out, *w;
    int N, C;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *c = p;
    nn_embedding_forward_ref(c->out, c->ids, c->wte, c->N, c->C);
    return dot(c->out, c->w, (size_t)c->N * c->C);
}

typedef struct {
    double *inp, *weight, *bias, *out, *w;
    int N, C, OC;
} LinCtx;

static double lin_loss(void *p) {
    LinCtx *c = p;
    nn_linear_forward_ref(c->out, c->inp, c->weight, c->bias, c->N, c->C, c->OC);
    return dot(c->out, c->w, (size_t)c->N * c->OC);
}

typedef struct {
    double *inp, *weight, *bias, *out, *mean, *rstd, *w;
    int N, C;
    double eps;
} LnCtx;

static double ln_loss(void *p) {
    LnCtx *c = p;
    nn_layernorm_forward_ref(c->out, c->mean, c->rstd, c->inp, c->weight, c->bias, c->N, c->C,
                             c->eps);
    return dot(c->out, c->w, (size_t)c->N * c->C);
}

typedef struct {
    double *inp, *out, *w;
    size_t n;
    float p;
    uint64_t seed, offset;
} EwCtx;

static double gelu_loss(void *p) {
    EwCtx *c = p;
    nn_gelu_forward_ref(c->out, c->inp, c->n);
    return dot(c->out, c->w, c->n);
}

static double drop_loss(void *p) {
    EwCtx *c = p;
    nn_dropout_forward_ref(c->out, c->inp, c->n, c->p, c->seed, c->offset);
    return dot(c->out, c->w, c->n);
}

typedef struct {
    double *q, *k, *v, *out, *att, *scratch, *w;
    const int32_t *mask;
    int B, T, C, NH;
    float p;
    uint64_t seed, offset;
} AttCtx;

static double att_loss(void *p) {
    AttCtx *c = p;
    nn_attention_forward_ref(c->out, c->att, c->q, c->k, c->v, c->mask, c->B, c->T, c->C,
                             c->NH, c->p, c->seed, c->offset, c->scratch);
    return dot(c->out, c->w, (size_t)c->B * c->T * c->C);
}

typedef struct {
    double *logits, *probs;
    const int32_t *targets;
    int N, V;
} XentCtx;

static double xent_loss(void *p) {
    XentCtx *c = p;
    return nn_softmax_xent_forward_ref(c->probs, c->logits, c->targets, c->N, c->V);
}

// ---------------------------------------------------------------------------------------
// suite 1: double reference backward vs finite differences

static void test_fd_embedding(void) {
    EmbCtx c = {.N = 7, .C = 5};
    int V = 6;
    int32_t *ids = ibuf((size_t)c.N);
    for (int n = 0; n < c.N; n++) ids[n] = (int32_t)((n * 4) % V);  // 0 4 2 0 4 2 0: repeats
    ids[3] = 1;                                                       // rows 3, 5 unused
    c.ids = ids;
    c.wte = drandn((size_t)V * c.C, 1, 0);
    c.out = dbuf((size_t)c.N * c.C);
    c.w = drandn((size_t)c.N * c.C, 1, 0);
    double *dwte = dbuf((size_t)V * c.C);
    nn_embedding_backward_ref(dwte, c.w, c.ids, c.N, c.C);
    EXPECT_FD("embedding dwte", emb_loss, &c, c.wte, dwte, (size_t)V * c.C);
}

static void fd_linear(int with_bias) {
    LinCtx c = {.N = 3, .C = 7, .OC = 5};
    c.inp = drandn((size_t)c.N * c.C, 1, 0);
    c.weight = drandn((size_t)c.OC * c.C, 0.5, 0);
    c.bias = with_bias ? drandn((size_t)c.OC, 1, 0) : NULL;
    c.out = dbuf((size_t)c.N * c.OC);
    c.w = drandn((size_t)c.N * c.OC, 1, 0);
    double *dinp = dbuf((size_t)c.N * c.C), *dweight = dbuf((size_t)c.OC * c.C);
    double *dbias = dbuf((size_t)c.OC);
    nn_linear_backward_ref(dinp, dweight, with_bias ? dbias : NULL, c.w, c.inp, c.weight, c.N,
                           c.C, c.OC);
    EXPECT_FD("linear dinp", lin_loss, &c, c.inp, dinp, (size_t)c.N * c.C);
    EXPECT_FD("linear dweight", lin_loss, &c, c.weight, dweight, (size_t)c.OC * c.C);
    if (with_bias) EXPECT_FD("linear dbias", lin_loss, &c, c.bias, dbias, (size_t)c.OC);
}

static void test_fd_linear(void) {
    fd_linear(1);
    fd_linear(0);
}

static void test_fd_layernorm(void) {
    LnCtx c = {.N = 4, .C = 9, .eps = 1e-5};
    c.inp = drandn((size_t)c.N * c.C, 2, 0.3);
    c.weight = drandn((size_t)c.C, 0.2, 1);
    c.bias = drandn((size_t)c.C, 0.2, 0);
    c.out = dbuf((size_t)c.N * c.C);
    c.mean = dbuf((size_t)c.N);
    c.rstd = dbuf((size_t)c.N);
    c.w = drandn((size_t)c.N * c.C, 1, 0);
    ln_loss(&c);
    double *dinp = dbuf((size_t)c.N * c.C), *dw = dbuf((size_t)c.C), *db = dbuf((size_t)c.C);
    nn_layernorm_backward_ref(dinp, dw, db, c.w, c.inp, c.mean, c.rstd, c.weight, c.N, c.C);
    EXPECT_FD("layernorm dinp", ln_loss, &c, c.inp, dinp, (size_t)c.N * c.C);
    EXPECT_FD("layernorm dweight", ln_loss, &c, c.weight, dw, (size_t)c.C);
    EXPECT_FD("layernorm dbias", ln_loss, &c, c.bias, db, (size_t)c.C);
}

static void test_fd_gelu(void) {
    EwCtx c = {.n = 40};
    c.inp = drandn(c.n, 2.5, 0);
    c.out = dbuf(c.n);
    c.w = drandn(c.n, 1, 0);
    double *dinp = dbuf(c.n);
    nn_gelu_backward_ref(dinp, c.w, c.inp, c.n);
    EXPECT_FD("gelu dinp", gelu_loss, &c, c.inp, dinp, c.n);
}

static void test_fd_dropout(void) {
    EwCtx c = {.n = 50, .p = 0.3f, .seed = 99, .offset = 1000};
    c.inp = drandn(c.n, 1, 0);
    c.out = dbuf(c.n);
    c.w = drandn(c.n, 1, 0);
    double *dinp = dbuf(c.n);
    nn_dropout_backward_ref(dinp, c.w, c.n, c.p, c.seed, c.offset);
    EXPECT_FD("dropout dinp", drop_loss, &c, c.inp, dinp, c.n);
}

static void fd_attention(const char *name, int use_mask, float p) {
    char what[96];
    AttCtx c = {.B = 2, .T = 5, .C = 6, .NH = 2, .p = p, .seed = 7, .offset = 3};
    size_t nx = (size_t)c.B * c.T * c.C, na = (size_t)c.B * c.NH * c.T * c.T;
    c.q = drandn(nx, 1, 0);
    c.k = drandn(nx, 1, 0);
    c.v = drandn(nx, 1, 0);
    c.out = dbuf(nx);
    c.att = dbuf(na);
    c.scratch = dbuf(na);
    c.w = drandn(nx, 1, 0);
    static const int32_t mask[10] = {1, 1, 1, 1, 1, 1, 1, 0, 1, 0};
    c.mask = use_mask ? mask : NULL;
    att_loss(&c);
    double *dq = dbuf(nx), *dk = dbuf(nx), *dv = dbuf(nx);
    nn_attention_backward_ref(dq, dk, dv, c.w, c.q, c.k, c.v, c.att, c.mask, c.B, c.T, c.C, c.NH,
                              c.p, c.seed, c.offset, c.scratch);
    snprintf(what, sizeof what, "attention %s dq", name);
    EXPECT_FD(what, att_loss, &c, c.q, dq, nx);
    snprintf(what, sizeof what, "attention %s dk", name);
    EXPECT_FD(what, att_loss, &c, c.k, dk, nx);
    snprintf(what, sizeof what, "attention %s dv", name);
    EXPECT_FD(what, att_loss, &c, c.v, dv, nx);
}

static void test_fd_attention(void) {
    fd_attention("no mask", 0, 0.0f);
    fd_attention("mask", 1, 0.0f);
    fd_attention("mask+dropout", 1, 0.25f);
}

static void test_fd_xent(void) {
    XentCtx c = {.N = 5, .V = 7};
    c.logits = drandn((size_t)c.N * c.V, 2, 0);
    c.probs = dbuf((size_t)c.N * c.V);
    static const int32_t targets[5] = {2, -1, 6, 0, -100};
    c.targets = targets;
    xent_loss(&c);
    double *dl = dbuf((size_t)c.N * c.V);
    nn_softmax_xent_backward_ref(dl, c.probs, c.targets, c.N, c.V, 1.0);
    EXPECT_FD("xent dlogits", xent_loss, &c, c.logits, dl, (size_t)c.N * c.V);
}

// ---------------------------------------------------------------------------------------
// suite 2: float ops vs double references (gradients start from random values: checks +=)

static void test_cmp_embedding(void) {
    int V = 11, N = 19, C = 37;
    int32_t *ids = ibuf((size_t)N);
    for (int n = 0; n < N; n++) ids[n] = urand_int(0, V);
    double *wte = drandn((size_t)V * C, 1, 0), *dout = drandn((size_t)N * C, 1, 0);
    double *dwte0 = drandn((size_t)V * C, 1, 0);
    double *out = dbuf((size_t)N * C), *dwte = dcopy(dwte0, (size_t)V * C);
    float *outf = fbuf((size_t)N * C), *dwtef = to_f(dwte0, (size_t)V * C);
    nn_embedding_forward_ref(out, ids, wte, N, C);
    nn_embedding_forward(outf, ids, to_f(wte, (size_t)V * C), N, C);
    EXPECT_CLOSE_F("embedding out (exact copy)", outf, out, (size_t)N * C, 0, 0);
    nn_embedding_backward_ref(dwte, dout, ids, N, C);
    nn_embedding_backward(dwtef, to_f(dout, (size_t)N * C), ids, N, C);
    EXPECT_CLOSE_F("embedding dwte", dwtef, dwte, (size_t)V * C, EW_ATOL, EW_RTOL);
}

static void cmp_linear(int N, int C, int OC, int with_bias) {
    char what[96];
    size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    double *inp = drandn(ni, 1, 0), *weight = drandn(nw, 1.0 / sqrt(C), 0);
    double *bias = with_bias ? drandn((size_t)OC, 1, 0) : NULL;
    double *dout = drandn(no, 1, 0);
    double *dinp0 = drandn(ni, 1, 0), *dw0 = drandn(nw, 1, 0), *db0 = drandn((size_t)OC, 1, 0);
    double *out = dbuf(no), *dinp = dcopy(dinp0, ni), *dw = dcopy(dw0, nw);
    double *db = dcopy(db0, (size_t)OC);
    float *outf = fbuf(no), *dinpf = to_f(dinp0, ni), *dwf = to_f(dw0, nw);
    float *dbf = to_f(db0, (size_t)OC);
    float *inpf = to_f(inp, ni), *weightf = to_f(weight, nw);
    nn_linear_forward_ref(out, inp, weight, bias, N, C, OC);
    nn_linear_forward(outf, inpf, weightf, bias ? to_f(bias, (size_t)OC) : NULL, N, C, OC);
    snprintf(what, sizeof what, "linear N=%d C=%d OC=%d bias=%d out", N, C, OC, with_bias);
    EXPECT_CLOSE_F(what, outf, out, no, RED_ATOL, RED_RTOL);
    nn_linear_backward_ref(dinp, dw, with_bias ? db : NULL, dout, inp, weight, N, C, OC);
    nn_linear_backward(dinpf, dwf, with_bias ? dbf : NULL, to_f(dout, no), inpf, weightf, N, C,
                       OC);
    snprintf(what, sizeof what, "linear N=%d C=%d OC=%d bias=%d dinp", N, C, OC, with_bias);
    EXPECT_CLOSE_F(what, dinpf, dinp, ni, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "linear N=%d C=%d OC=%d bias=%d dweight", N, C, OC, with_bias);
    EXPECT_CLOSE_F(what, dwf, dw, nw, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "linear N=%d C=%d OC=%d bias=%d dbias", N, C, OC, with_bias);
    EXPECT_CLOSE_F(what, dbf, db, (size_t)OC, RED_ATOL, RED_RTOL);
}

static void test_cmp_linear(void) {
    cmp_linear(5, 3, 7, 1);
    cmp_linear(13, 37, 29, 1);
    cmp_linear(13, 37, 29, 0);
    cmp_linear(67, 203, 129, 1);
    cmp_linear(160, 384, 250, 1);  // big enough for OpenBLAS to use its threads
}

static void cmp_layernorm(int N, int C, float eps) {
    char what[96];
    size_t n = (size_t)N * C;
    double *inp = drandn(n, 3, 0.7), *w = drandn((size_t)C, 0.3, 1), *b = drandn((size_t)C, 0.3, 0);
    double *dout = drandn(n, 1, 0);
    double *dinp0 = drandn(n, 1, 0), *dw0 = drandn((size_t)C, 1, 0), *db0 = drandn((size_t)C, 1, 0);
    double *out = dbuf(n), *mean = dbuf((size_t)N), *rstd = dbuf((size_t)N);
    double *dinp = dcopy(dinp0, n), *dw = dcopy(dw0, (size_t)C), *db = dcopy(db0, (size_t)C);
    float *outf = fbuf(n), *meanf = fbuf((size_t)N), *rstdf = fbuf((size_t)N);
    float *dinpf = to_f(dinp0, n), *dwf = to_f(dw0, (size_t)C), *dbf = to_f(db0, (size_t)C);
    float *inpf = to_f(inp, n), *wf = to_f(w, (size_t)C);
    nn_layernorm_forward_ref(out, mean, rstd, inp, w, b, N, C, eps);
    nn_layernorm_forward(outf, meanf, rstdf, inpf, wf, to_f(b, (size_t)C), N, C, eps);
    snprintf(what, sizeof what, "layernorm N=%d C=%d out", N, C);
    EXPECT_CLOSE_F(what, outf, out, n, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "layernorm N=%d C=%d mean", N, C);
    EXPECT_CLOSE_F(what, meanf, mean, (size_t)N, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "layernorm N=%d C=%d rstd", N, C);
    EXPECT_CLOSE_F(what, rstdf, rstd, (size_t)N, RED_ATOL, RED_RTOL);
    nn_layernorm_backward_ref(dinp, dw, db, dout, inp, mean, rstd, w, N, C);
    nn_layernorm_backward(dinpf, dwf, dbf, to_f(dout, n), inpf, meanf, rstdf, wf, N, C);
    snprintf(what, sizeof what, "layernorm N=%d C=%d dinp", N, C);
    EXPECT_CLOSE_F(what, dinpf, dinp, n, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "layernorm N=%d C=%d dweight", N, C);
    EXPECT_CLOSE_F(what, dwf, dw, (size_t)C, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "layernorm N=%d C=%d dbias", N, C);
    EXPECT_CLOSE_F(what, dbf, db, (size_t)C, RED_ATOL, RED_RTOL);
}

static void test_cmp_layernorm(void) {
    cmp_layernorm(3, 5, 1e-5f);
    cmp_layernorm(7, 45, 1e-5f);
    cmp_layernorm(9, 128, 1e-12f);  // ALBERT's eps
    cmp_layernorm(5, 301, 1e-12f);
}

static void test_cmp_gelu(void) {
    // random values plus a dense sweep of [-20, 20] (covers the exp approximation's range)
    size_t nr = 203, ns = 4001, n = nr + ns;
    double *inp = dbuf(n), *r = drandn(nr, 3, 0);
    memcpy(inp, r, nr * sizeof(double));
    for (size_t i = 0; i < ns; i++)
        inp[nr + i] = (double)(float)(-20.0 + 40.0 * (double)i / (double)(ns - 1));
    double *dout = drandn(n, 1, 0), *dinp0 = drandn(n, 1, 0);
    double *out = dbuf(n), *dinp = dcopy(dinp0, n);
    float *outf = fbuf(n), *dinpf = to_f(dinp0, n), *inpf = to_f(inp, n);
    nn_gelu_forward_ref(out, inp, n);
    nn_gelu_forward(outf, inpf, n);
    EXPECT_CLOSE_F("gelu out", outf, out, n, EW_ATOL, EW_RTOL);
    nn_gelu_backward_ref(dinp, dout, inp, n);
    nn_gelu_backward(dinpf, to_f(dout, n), inpf, n);
    EXPECT_CLOSE_F("gelu dinp", dinpf, dinp, n, EW_ATOL, EW_RTOL);
}

static void test_cmp_dropout(void) {
    size_t n = 1001;
    const float ps[3] = {0.0f, 0.1f, 0.5f};
    for (int t = 0; t < 3; t++) {
        char what[64];
        double *inp = drandn(n, 1, 0), *dout = drandn(n, 1, 0), *dinp0 = drandn(n, 1, 0);
        double *out = dbuf(n), *dinp = dcopy(dinp0, n);
        float *outf = fbuf(n), *dinpf = to_f(dinp0, n);
        nn_dropout_forward_ref(out, inp, n, ps[t], 1234, 17);
        nn_dropout_forward(outf, to_f(inp, n), n, ps[t], 1234, 17);
        snprintf(what, sizeof what, "dropout p=%.1f out", (double)ps[t]);
        EXPECT_CLOSE_F(what, outf, out, n, EW_ATOL, EW_RTOL);
        nn_dropout_backward_ref(dinp, dout, n, ps[t], 1234, 17);
        nn_dropout_backward(dinpf, to_f(dout, n), n, ps[t], 1234, 17);
        snprintf(what, sizeof what, "dropout p=%.1f dinp", (double)ps[t]);
        EXPECT_CLOSE_F(what, dinpf, dinp, n, EW_ATOL, EW_RTOL);
    }
}

// mask: 0 none, 1 random padding at the end of each sequence, 2 like 1 but batch 0 all padding
static void cmp_attention(int B, int T, int C, int NH, int mask_kind, float p) {
    char what[128], tag[80];
    snprintf(tag, sizeof tag, "attention B=%d T=%d C=%d NH=%d mask=%d p=%.2f", B, T, C, NH,
             mask_kind, (double)p);
    size_t nx = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    int32_t *mask = NULL;
    if (mask_kind) {
        mask = ibuf((size_t)B * T);
        for (int b = 0; b < B; b++) {
            int len = b == B - 1 ? T : 1 + urand_int(0, T);  // the last sequence is full
            if (mask_kind == 2 && b == 0) len = 0;
            for (int t = 0; t < T; t++) mask[b * T + t] = t < len;
        }
    }
    uint64_t seed = 555, offset = 123456789;
    double *q = drandn(nx, 1, 0), *k = drandn(nx, 1, 0), *v = drandn(nx, 1, 0);
    double *dout = drandn(nx, 1, 0);
    double *dq0 = drandn(nx, 1, 0), *dk0 = drandn(nx, 1, 0), *dv0 = drandn(nx, 1, 0);
    double *out = dbuf(nx), *att = dbuf(na), *scr = dbuf(na);
    double *dq = dcopy(dq0, nx), *dk = dcopy(dk0, nx), *dv = dcopy(dv0, nx);
    float *qf = to_f(q, nx), *kf = to_f(k, nx), *vf = to_f(v, nx);
    float *outf = fbuf(nx), *attf = fbuf(na), *scrf = fbuf(na);
    float *dqf = to_f(dq0, nx), *dkf = to_f(dk0, nx), *dvf = to_f(dv0, nx);
    nn_attention_forward_ref(out, att, q, k, v, mask, B, T, C, NH, p, seed, offset, scr);
    nn_attention_forward(outf, attf, qf, kf, vf, mask, B, T, C, NH, p, seed, offset, scrf);
    snprintf(what, sizeof what, "%s out", tag);
    EXPECT_CLOSE_F(what, outf, out, nx, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "%s att", tag);
    EXPECT_CLOSE_F(what, attf, att, na, EW_ATOL, RED_RTOL);
    nn_attention_backward_ref(dq, dk, dv, dout, q, k, v, att, mask, B, T, C, NH, p, seed, offset,
                              scr);
    nn_attention_backward(dqf, dkf, dvf, to_f(dout, nx), qf, kf, vf, attf, mask, B, T, C, NH, p,
                          seed, offset, scrf);
    snprintf(what, sizeof what, "%s dq", tag);
    EXPECT_CLOSE_F(what, dqf, dq, nx, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "%s dk", tag);
    EXPECT_CLOSE_F(what, dkf, dk, nx, RED_ATOL, RED_RTOL);
    snprintf(what, sizeof what, "%s dv", tag);
    EXPECT_CLOSE_F(what, dvf, dv, nx, RED_ATOL, RED_RTOL);
    if (mask) {  // padding keys: probability exactly 0
        int ok = 1;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < T; j++)
                        if (!mask[b * T + j] && attf[(((size_t)b * NH + h) * T + t) * T + j])
                            ok = 0;
        snprintf(what, sizeof what, "%s padding keys", tag);
        report(what, ok, __LINE__, ok ? "probability exactly 0" : "nonzero probability");
    }
    // the fused layout (rows q | k | v, as the models' one QKV projection writes them): the
    // same numbers bit for bit, and its backward overwrites (dqkv starts as garbage)
    float *qkv = fbuf(3 * nx), *dqkv = fbuf(3 * nx), *out2 = fbuf(nx), *att2 = fbuf(na);
    for (size_t r = 0; r < (size_t)B * T; r++)
        for (int c = 0; c < C; c++) {
            qkv[r * 3 * C + c] = qf[r * C + c];
            qkv[r * 3 * C + C + c] = kf[r * C + c];
            qkv[r * 3 * C + 2 * C + c] = vf[r * C + c];
        }
    for (size_t i = 0; i < 3 * nx; i++) dqkv[i] = 1e3f + (float)i;
    nn_attention_qkv_forward(out2, att2, qkv, mask, B, T, C, NH, p, seed, offset, scrf);
    snprintf(what, sizeof what, "%s fused qkv: out, att bit for bit", tag);
    int same = !memcmp(out2, outf, nx * sizeof(float)) && !memcmp(att2, attf, na * sizeof(float));
    report(what, same, __LINE__, same ? "identical" : "differ");
    float *dq1 = fbuf(nx), *dk1 = fbuf(nx), *dv1 = fbuf(nx);  // zeroed: += gives the gradient
    nn_attention_backward(dq1, dk1, dv1, to_f(dout, nx), qf, kf, vf, attf, mask, B, T, C, NH, p,
                          seed, offset, scrf);
    nn_attention_qkv_backward(dqkv, to_f(dout, nx), qkv, att2, B, T, C, NH, p, seed, offset, scrf);
    same = 1;
    for (size_t r = 0; r < (size_t)B * T; r++)
        for (int c = 0; c < C; c++)
            same &= dqkv[r * 3 * C + c] == dq1[r * C + c] &&
                    dqkv[r * 3 * C + C + c] == dk1[r * C + c] &&
                    dqkv[r * 3 * C + 2 * C + c] == dv1[r * C + c];
    snprintf(what, sizeof what, "%s fused qkv: dq, dk, dv bit for bit", tag);
    report(what, same, __LINE__, same ? "identical" : "differ");
}

static void test_cmp_attention(void) {
    cmp_attention(1, 4, 4, 1, 0, 0.0f);
    cmp_attention(2, 19, 36, 3, 0, 0.0f);   // T, C not multiples of 8; D = 12
    cmp_attention(2, 19, 36, 3, 1, 0.0f);
    cmp_attention(3, 19, 36, 3, 1, 0.1f);
    cmp_attention(2, 64, 128, 4, 1, 0.2f);  // D = 32, several vector blocks per row
    cmp_attention(2, 33, 20, 4, 2, 0.1f);   // D = 5; batch 0 entirely padding
}

static void cmp_xent(int N, int V, double logit_scale) {
    char what[96];
    size_t n = (size_t)N * V;
    int32_t *targets = ibuf((size_t)N);
    for (int i = 0; i < N; i++) targets[i] = i % 3 == 1 ? -1 : urand_int(0, V);
    targets[N - 1] = -100;
    double *logits = drandn(n, logit_scale, 0), *dl0 = drandn(n, 1, 0);
    double *probs = dbuf(n), *dl = dcopy(dl0, n);
    float *probsf = fbuf(n), *dlf = to_f(dl0, n);
    double loss = nn_softmax_xent_forward_ref(probs, logits, targets, N, V);
    double lossf = nn_softmax_xent_forward(probsf, to_f(logits, n), targets, N, V);
    snprintf(what, sizeof what, "xent N=%d V=%d scale=%g loss", N, V, logit_scale);
    EXPECT_CLOSE(what, &lossf, &loss, 1, 0, LOSS_RTOL);
    snprintf(what, sizeof what, "xent N=%d V=%d scale=%g probs", N, V, logit_scale);
    EXPECT_CLOSE_F(what, probsf, probs, n, EW_ATOL, RED_RTOL);
    nn_softmax_xent_backward_ref(dl, probs, targets, N, V, 1.0 / 7.0);
    nn_softmax_xent_backward(dlf, probsf, targets, N, V, 1.0f / 7.0f);
    snprintf(what, sizeof what, "xent N=%d V=%d scale=%g dlogits", N, V, logit_scale);
    EXPECT_CLOSE_F(what, dlf, dl, n, EW_ATOL, RED_RTOL);
    // unselected rows are untouched, bit for bit
    float *dl0f = to_f(dl0, n);
    int ok = 1;
    for (int i = 0; i < N; i++)
        if (targets[i] < 0 && memcmp(dlf + (size_t)i * V, dl0f + (size_t)i * V, (size_t)V * 4))
            ok = 0;
    snprintf(what, sizeof what, "xent N=%d V=%d unselected rows", N, V);
    report(what, ok, __LINE__, ok ? "untouched" : "modified");
}

static void test_cmp_xent(void) {
    cmp_xent(9, 53, 2.0);
    cmp_xent(12, 1000, 3.0);
    cmp_xent(6, 301, 30.0);  // wide logits: exp over most of its range, tiny probabilities
}

static void test_cmp_add(void) {
    size_t n = 77;
    double *a = drandn(n, 1, 0), *b = drandn(n, 1, 0), *out = dbuf(n);
    float *outf = fbuf(n);
    nn_add_forward_ref(out, a, b, n);
    nn_add_forward(outf, to_f(a, n), to_f(b, n), n);
    EXPECT_CLOSE_F("add out", outf, out, n, 0, EW_RTOL);
}

// ---------------------------------------------------------------------------------------
// suite 3: golden values from PyTorch

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
// float op vs golden; double ref vs golden
#define GOLD_F(what, got, gold, atol, rtol) \
    EXPECT_CLOSE_F("torch: " what, got, gold, NELEM(gold), atol, rtol)
#define GOLD_D(what, got, gold) \
    EXPECT_CLOSE("torch: " what, got, gold, NELEM(gold), REF_TOL, REF_TOL)

static void test_golden_embedding(void) {
    const int V = GOLDEN_EMB_V, C = GOLDEN_EMB_C, N = GOLDEN_EMB_N;
    float *out = fbuf((size_t)N * C), *dwte = fbuf((size_t)V * C);
    nn_embedding_forward(out, golden_emb_ids, to_f(golden_emb_wte, (size_t)V * C), N, C);
    nn_embedding_backward(dwte, to_f(golden_emb_dout, (size_t)N * C), golden_emb_ids, N, C);
    GOLD_F("embedding out", out, golden_emb_out, 0, 0);
    GOLD_F("embedding dwte", dwte, golden_emb_dwte, EW_ATOL, EW_RTOL);
    double *outd = dbuf((size_t)N * C), *dwted = dbuf((size_t)V * C);
    nn_embedding_forward_ref(outd, golden_emb_ids, golden_emb_wte, N, C);
    nn_embedding_backward_ref(dwted, golden_emb_dout, golden_emb_ids, N, C);
    GOLD_D("embedding ref out", outd, golden_emb_out);
    GOLD_D("embedding ref dwte", dwted, golden_emb_dwte);
}

static void test_golden_linear(void) {
    const int N = GOLDEN_LIN_N, C = GOLDEN_LIN_C, OC = GOLDEN_LIN_OC;
    float *x = to_f(golden_lin_inp, (size_t)N * C), *w = to_f(golden_lin_weight, (size_t)OC * C);
    float *b = to_f(golden_lin_bias, (size_t)OC), *dout = to_f(golden_lin_dout, (size_t)N * OC);
    for (int with_bias = 1; with_bias >= 0; with_bias--) {
        float *out = fbuf((size_t)N * OC), *dx = fbuf((size_t)N * C);
        float *dw = fbuf((size_t)OC * C), *db = fbuf((size_t)OC);
        nn_linear_forward(out, x, w, with_bias ? b : NULL, N, C, OC);
        nn_linear_backward(dx, dw, with_bias ? db : NULL, dout, x, w, N, C, OC);
        double *outd = dbuf((size_t)N * OC), *dxd = dbuf((size_t)N * C);
        double *dwd = dbuf((size_t)OC * C), *dbd = dbuf((size_t)OC);
        nn_linear_forward_ref(outd, golden_lin_inp, golden_lin_weight,
                              with_bias ? golden_lin_bias : NULL, N, C, OC);
        nn_linear_backward_ref(dxd, dwd, with_bias ? dbd : NULL, golden_lin_dout, golden_lin_inp,
                               golden_lin_weight, N, C, OC);
        if (with_bias) {
            GOLD_F("linear out", out, golden_lin_out, RED_ATOL, RED_RTOL);
            GOLD_F("linear dinp", dx, golden_lin_dinp, RED_ATOL, RED_RTOL);
            GOLD_F("linear dweight", dw, golden_lin_dweight, RED_ATOL, RED_RTOL);
            GOLD_F("linear dbias", db, golden_lin_dbias, RED_ATOL, RED_RTOL);
            GOLD_D("linear ref out", outd, golden_lin_out);
            GOLD_D("linear ref dinp", dxd, golden_lin_dinp);
            GOLD_D("linear ref dweight", dwd, golden_lin_dweight);
            GOLD_D("linear ref dbias", dbd, golden_lin_dbias);
        } else {
            GOLD_F("linear no-bias out", out, golden_lin_nb_out, RED_ATOL, RED_RTOL);
            GOLD_F("linear no-bias dinp", dx, golden_lin_nb_dinp, RED_ATOL, RED_RTOL);
            GOLD_F("linear no-bias dweight", dw, golden_lin_nb_dweight, RED_ATOL, RED_RTOL);
            GOLD_D("linear ref no-bias out", outd, golden_lin_nb_out);
            GOLD_D("linear ref no-bias dinp", dxd, golden_lin_nb_dinp);
            GOLD_D("linear ref no-bias dweight", dwd, golden_lin_nb_dweight);
        }
    }
}

static void test_golden_layernorm(void) {
    const int N = GOLDEN_LN_N, C = GOLDEN_LN_C;
    size_t n = (size_t)N * C;
    float *x = to_f(golden_ln_inp, n), *w = to_f(golden_ln_weight, (size_t)C);
    float *out = fbuf(n), *mean = fbuf((size_t)N), *rstd = fbuf((size_t)N);
    float *dx = fbuf(n), *dw = fbuf((size_t)C), *db = fbuf((size_t)C);
    nn_layernorm_forward(out, mean, rstd, x, w, to_f(golden_ln_bias, (size_t)C), N, C,
                         (float)GOLDEN_LN_EPS);
    nn_layernorm_backward(dx, dw, db, to_f(golden_ln_dout, n), x, mean, rstd, w, N, C);
    GOLD_F("layernorm out", out, golden_ln_out, RED_ATOL, RED_RTOL);
    GOLD_F("layernorm mean", mean, golden_ln_mean, RED_ATOL, RED_RTOL);
    GOLD_F("layernorm rstd", rstd, golden_ln_rstd, RED_ATOL, RED_RTOL);
    GOLD_F("layernorm dinp", dx, golden_ln_dinp, RED_ATOL, RED_RTOL);
    GOLD_F("layernorm dweight", dw, golden_ln_dweight, RED_ATOL, RED_RTOL);
    GOLD_F("layernorm dbias", db, golden_ln_dbias, RED_ATOL, RED_RTOL);
    double *outd = dbuf(n), *meand = dbuf((size_t)N), *rstdd = dbuf((size_t)N);
    double *dxd = dbuf(n), *dwd = dbuf((size_t)C), *dbd = dbuf((size_t)C);
    nn_layernorm_forward_ref(outd, meand, rstdd, golden_ln_inp, golden_ln_weight, golden_ln_bias,
                             N, C, GOLDEN_LN_EPS);
    nn_layernorm_backward_ref(dxd, dwd, dbd, golden_ln_dout, golden_ln_inp, meand, rstdd,
                              golden_ln_weight, N, C);
    GOLD_D("layernorm ref out", outd, golden_ln_out);
    GOLD_D("layernorm ref mean", meand, golden_ln_mean);
    GOLD_D("layernorm ref rstd", rstdd, golden_ln_rstd);
    GOLD_D("layernorm ref dinp", dxd, golden_ln_dinp);
    GOLD_D("layernorm ref dweight", dwd, golden_ln_dweight);
    GOLD_D("layernorm ref dbias", dbd, golden_ln_dbias);
}

static void test_golden_gelu(void) {
    const size_t n = GOLDEN_GELU_N;
    float *x = to_f(golden_gelu_inp, n), *out = fbuf(n), *dx = fbuf(n);
    nn_gelu_forward(out, x, n);
    nn_gelu_backward(dx, to_f(golden_gelu_dout, n), x, n);
    GOLD_F("gelu out", out, golden_gelu_out, EW_ATOL, EW_RTOL);
    GOLD_F("gelu dinp", dx, golden_gelu_dinp, EW_ATOL, EW_RTOL);
    double *outd = dbuf(n), *dxd = dbuf(n);
    nn_gelu_forward_ref(outd, golden_gelu_inp, n);
    nn_gelu_backward_ref(dxd, golden_gelu_dout, golden_gelu_inp, n);
    GOLD_D("gelu ref out", outd, golden_gelu_out);
    GOLD_D("gelu ref dinp", dxd, golden_gelu_dinp);
}

static void test_golden_dropout_p0(void) {
    const size_t n = GOLDEN_DROP_N;
    float *out = fbuf(n), *dx = fbuf(n);
    nn_dropout_forward(out, to_f(golden_drop_inp, n), n, 0.0f, 1, 0);
    nn_dropout_backward(dx, to_f(golden_drop_dout, n), n, 0.0f, 1, 0);
    GOLD_F("dropout p=0 out", out, golden_drop_out, 0, 0);
    GOLD_F("dropout p=0 dinp", dx, golden_drop_dinp, 0, 0);
    double *outd = dbuf(n), *dxd = dbuf(n);
    nn_dropout_forward_ref(outd, golden_drop_inp, n, 0.0f, 1, 0);
    nn_dropout_backward_ref(dxd, golden_drop_dout, n, 0.0f, 1, 0);
    GOLD_D("dropout ref p=0 out", outd, golden_drop_out);
    GOLD_D("dropout ref p=0 dinp", dxd, golden_drop_dinp);
}

static void test_golden_attention(void) {
    const int B = GOLDEN_ATT_B, T = GOLDEN_ATT_T, C = GOLDEN_ATT_C, NH = GOLDEN_ATT_NH;
    size_t nx = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    float *q = to_f(golden_att_q, nx), *k = to_f(golden_att_k, nx), *v = to_f(golden_att_v, nx);
    float *out = fbuf(nx), *att = fbuf(na), *scr = fbuf(na);
    float *dq = fbuf(nx), *dk = fbuf(nx), *dv = fbuf(nx);
    nn_attention_forward(out, att, q, k, v, golden_att_mask, B, T, C, NH, 0.0f, 0, 0, scr);
    nn_attention_backward(dq, dk, dv, to_f(golden_att_dout, nx), q, k, v, att, golden_att_mask,
                          B, T, C, NH, 0.0f, 0, 0, scr);
    GOLD_F("attention out", out, golden_att_out, RED_ATOL, RED_RTOL);
    GOLD_F("attention att", att, golden_att_att, EW_ATOL, RED_RTOL);
    GOLD_F("attention dq", dq, golden_att_dq, RED_ATOL, RED_RTOL);
    GOLD_F("attention dk", dk, golden_att_dk, RED_ATOL, RED_RTOL);
    GOLD_F("attention dv", dv, golden_att_dv, RED_ATOL, RED_RTOL);
    double *outd = dbuf(nx), *attd = dbuf(na), *scrd = dbuf(na);
    double *dqd = dbuf(nx), *dkd = dbuf(nx), *dvd = dbuf(nx);
    nn_attention_forward_ref(outd, attd, golden_att_q, golden_att_k, golden_att_v,
                             golden_att_mask, B, T, C, NH, 0.0f, 0, 0, scrd);
    nn_attention_backward_ref(dqd, dkd, dvd, golden_att_dout, golden_att_q, golden_att_k,
                              golden_att_v, attd, golden_att_mask, B, T, C, NH, 0.0f, 0, 0, scrd);
    GOLD_D("attention ref out", outd, golden_att_out);
    GOLD_D("attention ref att", attd, golden_att_att);
    GOLD_D("attention ref dq", dqd, golden_att_dq);
    GOLD_D("attention ref dk", dkd, golden_att_dk);
    GOLD_D("attention ref dv", dvd, golden_att_dv);
}

static void test_golden_xent(void) {
    const int N = GOLDEN_XENT_N, V = GOLDEN_XENT_V;
    size_t n = (size_t)N * V;
    float *probs = fbuf(n), *dl = fbuf(n);
    double loss = nn_softmax_xent_forward(probs, to_f(golden_xent_logits, n), golden_xent_targets,
                                          N, V);
    nn_softmax_xent_backward(dl, probs, golden_xent_targets, N, V, (float)GOLDEN_XENT_SCALE);
    EXPECT_CLOSE("torch: xent loss", &loss, &golden_xent_loss, 1, 0, LOSS_RTOL);
    GOLD_F("xent probs", probs, golden_xent_probs, EW_ATOL, RED_RTOL);
    GOLD_F("xent dlogits", dl, golden_xent_dlogits, EW_ATOL, RED_RTOL);
    double *probsd = dbuf(n), *dld = dbuf(n);
    double lossd = nn_softmax_xent_forward_ref(probsd, golden_xent_logits, golden_xent_targets, N,
                                               V);
    nn_softmax_xent_backward_ref(dld, probsd, golden_xent_targets, N, V, GOLDEN_XENT_SCALE);
    EXPECT_CLOSE("torch: xent ref loss", &lossd, &golden_xent_loss, 1, REF_TOL, REF_TOL);
    GOLD_D("xent ref probs", probsd, golden_xent_probs);
    GOLD_D("xent ref dlogits", dld, golden_xent_dlogits);
}

static void test_golden_add(void) {
    const size_t n = GOLDEN_ADD_N;
    float *out = fbuf(n);
    nn_add_forward(out, to_f(golden_add_a, n), to_f(golden_add_b, n), n);
    GOLD_F("add out", out, golden_add_out, 0, EW_RTOL);
    double *outd = dbuf(n);
    nn_add_forward_ref(outd, golden_add_a, golden_add_b, n);
    GOLD_D("add ref out", outd, golden_add_out);
}

// ---------------------------------------------------------------------------------------
// suite 4: dropout masks, accumulation, NULL gradients, in-place calls, padding

static void test_dropout_split(void) {
    // the mask depends only on (seed, offset + i): two calls on the halves of an array,
    // the second with offset + split, equal one call on the whole; calls repeat exactly
    const size_t n = 1000, split = 333;  // neither a multiple of the vector block
    const float p = 0.3f;
    const uint64_t seed = 42, off = 77;
    float *x = to_f(drandn(n, 1, 0), n), *g = to_f(drandn(n, 1, 0), n);
    float *whole = fbuf(n), *again = fbuf(n), *parts = fbuf(n);
    nn_dropout_forward(whole, x, n, p, seed, off);
    nn_dropout_forward(again, x, n, p, seed, off);
    nn_dropout_forward(parts, x, split, p, seed, off);
    nn_dropout_forward(parts + split, x + split, n - split, p, seed, off + split);
    EXPECT_SAME_F("dropout forward repeats", whole, again, n);
    EXPECT_SAME_F("dropout forward split", whole, parts, n);
    float *dwhole = fbuf(n), *dparts = fbuf(n);
    nn_dropout_backward(dwhole, g, n, p, seed, off);
    nn_dropout_backward(dparts, g, split, p, seed, off);
    nn_dropout_backward(dparts + split, g + split, n - split, p, seed, off + split);
    EXPECT_SAME_F("dropout backward split", dwhole, dparts, n);
    // another seed or offset gives another mask
    nn_dropout_forward(again, x, n, p, seed + 1, off);
    CU_ASSERT(memcmp(whole, again, n * sizeof(float)) != 0);
    nn_dropout_forward(again, x, n, p, seed, off + 1);
    CU_ASSERT(memcmp(whole, again, n * sizeof(float)) != 0);
}

static void test_dropout_mask(void) {
    // rate, scaling, and the backward uses the forward's mask
    const size_t n = 200000;
    const float p = 0.1f, scale = 1.0f / (1.0f - p);
    float *x = fbuf(n), *out = fbuf(n), *ones = fbuf(n), *dx = fbuf(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = 1.0f + (float)(i % 97);
        ones[i] = 1.0f;
    }
    nn_dropout_forward(out, x, n, p, 2024, 5);
    nn_dropout_backward(dx, ones, n, p, 2024, 5);
    size_t dropped = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        int drop = cx_rng_uniform(2024, 5 + i) < p;
        dropped += (size_t)drop;
        if (drop ? (out[i] != 0.0f || dx[i] != 0.0f)
                 : (out[i] != x[i] * scale || dx[i] != scale))
            bad++;
    }
    double frac = (double)dropped / (double)n;  // std = sqrt(p(1-p)/n) = 6.7e-4
    printf("\n    dropout p=0.1 dropped fraction %.4f", frac);
    CU_ASSERT(fabs(frac - 0.1) < 0.004);
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_attention_split(void) {
    // attention dropout counter = offset + index into att: running batch b alone with
    // offset + b*NH*T*T gives exactly the rows of the full call
    const int B = 3, T = 17, C = 24, NH = 2;
    const float p = 0.2f;
    const uint64_t seed = 9, off = 1000;
    size_t nx = (size_t)B * T * C, na = (size_t)B * NH * T * T, sx = (size_t)T * C;
    size_t sa = (size_t)NH * T * T;
    int32_t *mask = ibuf((size_t)B * T);
    for (int i = 0; i < B * T; i++) mask[i] = (i % T) < T - (i / T) * 4;
    float *q = to_f(drandn(nx, 1, 0), nx), *k = to_f(drandn(nx, 1, 0), nx);
    float *v = to_f(drandn(nx, 1, 0), nx), *dout = to_f(drandn(nx, 1, 0), nx);
    float *out = fbuf(nx), *att = fbuf(na), *scr = fbuf(na), *out1 = fbuf(nx), *att1 = fbuf(na);
    float *dq = fbuf(nx), *dk = fbuf(nx), *dv = fbuf(nx);
    float *dq1 = fbuf(nx), *dk1 = fbuf(nx), *dv1 = fbuf(nx);
    nn_attention_forward(out, att, q, k, v, mask, B, T, C, NH, p, seed, off, scr);
    nn_attention_backward(dq, dk, dv, dout, q, k, v, att, mask, B, T, C, NH, p, seed, off, scr);
    for (int b = 0; b < B; b++) {
        nn_attention_forward(out1 + b * sx, att1 + b * sa, q + b * sx, k + b * sx, v + b * sx,
                             mask + b * T, 1, T, C, NH, p, seed, off + b * sa, scr);
        nn_attention_backward(dq1 + b * sx, dk1 + b * sx, dv1 + b * sx, dout + b * sx,
                              q + b * sx, k + b * sx, v + b * sx, att1 + b * sa, mask + b * T, 1,
                              T, C, NH, p, seed, off + b * sa, scr);
    }
    EXPECT_SAME_F("attention split att", att, att1, na);
    EXPECT_SAME_F("attention split out", out, out1, nx);
    EXPECT_SAME_F("attention split dq", dq, dq1, nx);
    EXPECT_SAME_F("attention split dk", dk, dk1, nx);
    EXPECT_SAME_F("attention split dv", dv, dv1, nx);
    // the dropout really is applied: p > 0 differs from p = 0
    nn_attention_forward(out1, att1, q, k, v, mask, B, T, C, NH, 0.0f, seed, off, scr);
    CU_ASSERT(memcmp(out, out1, nx * sizeof(float)) != 0);
    EXPECT_SAME_F("attention att independent of p", att, att1, na);
}

// g = g0 + fresh, where fresh is what the op adds to zeros
static void expect_accumulated(const char *what, const float *g, const float *g0,
                               const float *fresh, size_t n, int line) {
    double *want = dbuf(n);
    for (size_t i = 0; i < n; i++) want[i] = (double)g0[i] + (double)fresh[i];
    closef_impl(what, g, want, n, EW_ATOL, EW_RTOL, line);
}
#define EXPECT_ACC(what, g, g0, fresh, n) expect_accumulated(what, g, g0, fresh, n, __LINE__)

static float *frandn(size_t n) { return to_f(drandn(n, 1, 0), n); }

static float *fcopy(const float *x, size_t n) {
    float *y = fbuf(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static void test_accumulate(void) {
    const int N = 6, C = 21, OC = 10, V = 9;
    size_t nc = (size_t)N * C, no = (size_t)N * OC;
    // embedding
    {
        int32_t ids[6] = {1, 8, 1, 0, 3, 1};
        float *dout = frandn(nc), *g0 = frandn((size_t)V * C), *g = fcopy(g0, (size_t)V * C);
        float *z = fbuf((size_t)V * C);
        nn_embedding_backward(g, dout, ids, N, C);
        nn_embedding_backward(z, dout, ids, N, C);
        EXPECT_ACC("embedding dwte +=", g, g0, z, (size_t)V * C);
    }
    // linear
    {
        float *x = frandn(nc), *w = frandn((size_t)OC * C), *dout = frandn(no);
        float *gx0 = frandn(nc), *gw0 = frandn((size_t)OC * C), *gb0 = frandn((size_t)OC);
        float *gx = fcopy(gx0, nc), *gw = fcopy(gw0, (size_t)OC * C), *gb = fcopy(gb0, (size_t)OC);
        float *zx = fbuf(nc), *zw = fbuf((size_t)OC * C), *zb = fbuf((size_t)OC);
        nn_linear_backward(gx, gw, gb, dout, x, w, N, C, OC);
        nn_linear_backward(zx, zw, zb, dout, x, w, N, C, OC);
        EXPECT_ACC("linear dinp +=", gx, gx0, zx, nc);
        EXPECT_ACC("linear dweight +=", gw, gw0, zw, (size_t)OC * C);
        EXPECT_ACC("linear dbias +=", gb, gb0, zb, (size_t)OC);
        // NULL gradients are skipped and do not change the others
        float *nx = fcopy(gx0, nc);
        nn_linear_backward(nx, NULL, NULL, dout, x, w, N, C, OC);
        EXPECT_SAME_F("linear dinp with NULL dweight, dbias", nx, gx, nc);
        float *nw = fcopy(gw0, (size_t)OC * C);
        nn_linear_backward(NULL, nw, NULL, dout, x, w, N, C, OC);
        EXPECT_SAME_F("linear dweight with NULL dinp, dbias", nw, gw, (size_t)OC * C);
    }
    // layernorm
    {
        float *x = frandn(nc), *w = frandn((size_t)C), *b = frandn((size_t)C), *dout = frandn(nc);
        float *out = fbuf(nc), *mean = fbuf((size_t)N), *rstd = fbuf((size_t)N);
        nn_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f);
        float *gx0 = frandn(nc), *gw0 = frandn((size_t)C), *gb0 = frandn((size_t)C);
        float *gx = fcopy(gx0, nc), *gw = fcopy(gw0, (size_t)C), *gb = fcopy(gb0, (size_t)C);
        float *zx = fbuf(nc), *zw = fbuf((size_t)C), *zb = fbuf((size_t)C);
        nn_layernorm_backward(gx, gw, gb, dout, x, mean, rstd, w, N, C);
        nn_layernorm_backward(zx, zw, zb, dout, x, mean, rstd, w, N, C);
        EXPECT_ACC("layernorm dinp +=", gx, gx0, zx, nc);
        EXPECT_ACC("layernorm dweight +=", gw, gw0, zw, (size_t)C);
        EXPECT_ACC("layernorm dbias +=", gb, gb0, zb, (size_t)C);
        float *nx = fcopy(gx0, nc);
        nn_layernorm_backward(nx, NULL, NULL, dout, x, mean, rstd, w, N, C);
        EXPECT_SAME_F("layernorm dinp with NULL dweight, dbias", nx, gx, nc);
        float *nw = fcopy(gw0, (size_t)C);
        nn_layernorm_backward(NULL, nw, NULL, dout, x, mean, rstd, w, N, C);
        EXPECT_SAME_F("layernorm dweight with NULL dinp, dbias", nw, gw, (size_t)C);
    }
    // gelu, dropout
    {
        float *x = frandn(nc), *dout = frandn(nc), *g0 = frandn(nc);
        float *g = fcopy(g0, nc), *z = fbuf(nc);
        nn_gelu_backward(g, dout, x, nc);
        nn_gelu_backward(z, dout, x, nc);
        EXPECT_ACC("gelu dinp +=", g, g0, z, nc);
        for (int k = 0; k < 2; k++) {
            float p = k ? 0.25f : 0.0f;
            g = fcopy(g0, nc);
            z = fbuf(nc);
            nn_dropout_backward(g, dout, nc, p, 3, 4);
            nn_dropout_backward(z, dout, nc, p, 3, 4);
            EXPECT_ACC(k ? "dropout p=0.25 dinp +=" : "dropout p=0 dinp +=", g, g0, z, nc);
        }
    }
    // attention
    {
        const int B = 2, T = 7, AC = 12, NH = 3;
        size_t nx = (size_t)B * T * AC, na = (size_t)B * NH * T * T;
        int32_t mask[14] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1};
        float *q = frandn(nx), *k = frandn(nx), *v = frandn(nx), *dout = frandn(nx);
        float *out = fbuf(nx), *att = fbuf(na), *scr = fbuf(na);
        nn_attention_forward(out, att, q, k, v, mask, B, T, AC, NH, 0.1f, 8, 9, scr);
        float *q0 = frandn(nx), *k0 = frandn(nx), *v0 = frandn(nx);
        float *gq = fcopy(q0, nx), *gk = fcopy(k0, nx), *gv = fcopy(v0, nx);
        float *zq = fbuf(nx), *zk = fbuf(nx), *zv = fbuf(nx);
        nn_attention_backward(gq, gk, gv, dout, q, k, v, att, mask, B, T, AC, NH, 0.1f, 8, 9, scr);
        nn_attention_backward(zq, zk, zv, dout, q, k, v, att, mask, B, T, AC, NH, 0.1f, 8, 9, scr);
        EXPECT_ACC("attention dq +=", gq, q0, zq, nx);
        EXPECT_ACC("attention dk +=", gk, k0, zk, nx);
        EXPECT_ACC("attention dv +=", gv, v0, zv, nx);
        float *nq = fcopy(q0, nx), *nv = fcopy(v0, nx);
        nn_attention_backward(nq, NULL, NULL, dout, q, k, v, att, mask, B, T, AC, NH, 0.1f, 8, 9,
                              scr);
        nn_attention_backward(NULL, NULL, nv, dout, q, k, v, att, mask, B, T, AC, NH, 0.1f, 8, 9,
                              scr);
        EXPECT_SAME_F("attention dq with NULL dk, dv", nq, gq, nx);
        EXPECT_SAME_F("attention dv with NULL dq, dk", nv, gv, nx);
    }
    // cross-entropy
    {
        int32_t tg[6] = {2, -1, 8, 0, -1, 5};
        size_t nv = (size_t)N * V;
        float *logits = frandn(nv), *probs = fbuf(nv), *g0 = frandn(nv);
        nn_softmax_xent_forward(probs, logits, tg, N, V);
        float *g = fcopy(g0, nv), *z = fbuf(nv);
        nn_softmax_xent_backward(g, probs, tg, N, V, 0.5f);
        nn_softmax_xent_backward(z, probs, tg, N, V, 0.5f);
        EXPECT_ACC("xent dlogits +=", g, g0, z, nv);
    }
}

static void test_inplace(void) {
    // ops documented (nn.c) to allow out == inp give the same bits in place
    size_t n = 203;
    float *x = frandn(n), *y = frandn(n), *ref = fbuf(n), *io = fbuf(n);
    nn_gelu_forward(ref, x, n);
    memcpy(io, x, n * sizeof(float));
    nn_gelu_forward(io, io, n);
    EXPECT_SAME_F("gelu in place", io, ref, n);
    nn_dropout_forward(ref, x, n, 0.3f, 5, 6);
    memcpy(io, x, n * sizeof(float));
    nn_dropout_forward(io, io, n, 0.3f, 5, 6);
    EXPECT_SAME_F("dropout in place", io, ref, n);
    nn_add_forward(ref, x, y, n);
    memcpy(io, x, n * sizeof(float));
    nn_add_forward(io, io, y, n);
    EXPECT_SAME_F("add in place (out == a)", io, ref, n);
    memcpy(io, y, n * sizeof(float));
    nn_add_forward(io, x, io, n);
    EXPECT_SAME_F("add in place (out == b)", io, ref, n);
    // softmax cross-entropy: probs may alias logits
    const int N = 5, V = 41;
    int32_t tg[5] = {0, 40, -1, 7, 3};
    float *logits = frandn((size_t)N * V), *probs = fbuf((size_t)N * V);
    double l1 = nn_softmax_xent_forward(probs, logits, tg, N, V);
    double l2 = nn_softmax_xent_forward(logits, logits, tg, N, V);
    CU_ASSERT_EQUAL(l1, l2);
    EXPECT_SAME_F("xent probs in place", logits, probs, (size_t)N * V);
}

static void test_all_padding(void) {
    // a sequence with no real token: probabilities, output and gradients all 0, no NaN
    const int B = 2, T = 6, C = 8, NH = 2;
    size_t nx = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    int32_t mask[12] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0};
    float *q = frandn(nx), *k = frandn(nx), *v = frandn(nx), *dout = frandn(nx);
    float *out = fbuf(nx), *att = fbuf(na), *scr = fbuf(na);
    float *dq = fbuf(nx), *dk = fbuf(nx), *dv = fbuf(nx);
    nn_attention_forward(out, att, q, k, v, mask, B, T, C, NH, 0.1f, 1, 2, scr);
    nn_attention_backward(dq, dk, dv, dout, q, k, v, att, mask, B, T, C, NH, 0.1f, 1, 2, scr);
    int ok = 1;
    for (size_t i = 0; i < (size_t)T * C; i++)  // batch 0
        if (out[i] != 0.0f || dq[i] != 0.0f || dk[i] != 0.0f || dv[i] != 0.0f) ok = 0;
    for (size_t i = 0; i < (size_t)NH * T * T; i++)
        if (att[i] != 0.0f) ok = 0;
    for (size_t i = 0; i < nx; i++)
        if (!isfinite(out[i]) || !isfinite(dq[i]) || !isfinite(dk[i]) || !isfinite(dv[i])) ok = 0;
    report("attention fully padded sequence", ok, __LINE__, ok ? "zeros" : "nonzero or NaN");
}

static void test_exp_accuracy(void) {
    // logits (0, -y) with y >= 17: 1 + exp(-y) rounds to 1 in float, so probs[1] is exactly
    // nn.c's exp(-y); sweep it over the rest of its range, [-87, -17] (the other part of the
    // range is covered through gelu and softmax above). Tolerance 2e-7 relative: nn_expf
    // is within 1 ulp (8.2e-8, checked exhaustively when written) plus exp(-y) <= 4e-8 of
    // difference between the float and the double probability.
    const int N = 7001, V = 2;
    float *logits = fbuf((size_t)N * V), *probs = fbuf((size_t)N * V);
    double *want = dbuf((size_t)N);
    float *got = fbuf((size_t)N);
    int32_t *tg = ibuf((size_t)N);
    for (int n = 0; n < N; n++) {
        float y = 17.0f + 0.01f * (float)n;
        logits[2 * n + 1] = -y;
        double e = exp(-(double)y);
        want[n] = e / (1.0 + e);
    }
    nn_softmax_xent_forward(probs, logits, tg, N, V);
    for (int n = 0; n < N; n++) got[n] = probs[2 * n + 1];
    EXPECT_CLOSE_F("exp through softmax, [-87, -17]", got, want, (size_t)N, 0, 2e-7);
}

static void test_xent_extreme(void) {
    // huge logit gaps: probabilities underflow to 0 without NaN; loss stays finite
    const int V = 20;
    float logits[20];
    for (int i = 0; i < V; i++) logits[i] = (float)(i * 50 - 500);
    float probs[20];
    int32_t tg[1] = {0};
    double loss = nn_softmax_xent_forward(probs, logits, tg, 1, V);
    double want = 950.0 + log1p(exp(-50.0) + exp(-100.0));  // lse - logits[0]
    CU_ASSERT(fabs(loss - want) < 1e-4);
    CU_ASSERT(probs[V - 1] > 0.99f && probs[0] == 0.0f);
}

// ---------------------------------------------------------------------------------------

typedef TuTest TestDef;

int main(void) {
    const char *verbose = getenv("OPS_TEST_VERBOSE");
    g_verbose = verbose && *verbose && strcmp(verbose, "0") != 0;

    static const TestDef fd[] = {
        {"embedding", test_fd_embedding}, {"linear", test_fd_linear},
        {"layernorm", test_fd_layernorm}, {"gelu", test_fd_gelu},
        {"dropout", test_fd_dropout},     {"attention", test_fd_attention},
        {"softmax_xent", test_fd_xent},
    };
    static const TestDef cmp[] = {
        {"embedding", test_cmp_embedding}, {"linear", test_cmp_linear},
        {"layernorm", test_cmp_layernorm}, {"gelu", test_cmp_gelu},
        {"dropout", test_cmp_dropout},     {"attention", test_cmp_attention},
        {"softmax_xent", test_cmp_xent},   {"add", test_cmp_add},
    };
    static const TestDef gold[] = {
        {"embedding", test_golden_embedding}, {"linear", test_golden_linear},
        {"layernorm", test_golden_layernorm}, {"gelu", test_golden_gelu},
        {"dropout_p0", test_golden_dropout_p0}, {"attention", test_golden_attention},
        {"softmax_xent", test_golden_xent},   {"add", test_golden_add},
    };
    static const TestDef props[] = {
        {"dropout_split", test_dropout_split},
        {"dropout_mask", test_dropout_mask},
        {"attention_dropout_split", test_attention_split},
        {"backward_accumulates", test_accumulate},
        {"in_place", test_inplace},
        {"attention_all_padding", test_all_padding},
        {"exp_accuracy", test_exp_accuracy},
        {"xent_extreme_logits", test_xent_extreme},
    };

    // each test's tensors are freed after it (tfree_all), pass or fail
    const TuSuite suites[] = {
        {.name = "ref_vs_finite_differences", .teardown = tfree_all, .tests = fd, .n_tests = NELEM(fd)},
        {.name = "float_vs_ref", .teardown = tfree_all, .tests = cmp, .n_tests = NELEM(cmp)},
        {.name = "golden_pytorch", .teardown = tfree_all, .tests = gold, .n_tests = NELEM(gold)},
        {.name = "properties", .teardown = tfree_all, .tests = props, .n_tests = NELEM(props)},
    };
    return tu_run(suites, NELEM(suites), NULL, CU_BRM_VERBOSE);
}
