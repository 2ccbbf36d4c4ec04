// test_vision.c: CUnit tests of the vision ops in models/vision.h (convolution, batch norm,
// ReLU, global average pooling), with the three references of test_ops:
//  1. the double twins (models/vision_ref.h) against central finite differences of
//     loss = sum(out * w);
//  2. the float ops against the double twins on random shapes (padding, strides, 1x1, more
//     images than one weight-gradient group), gradients pre-filled so "+=" is checked too;
//  3. both against PyTorch (tests/ref/vision_golden.h, from tests/ref/vision_ref.py).
// Plus: the same bits on 1, 2 and 3 pool threads; shape errors name the dimension.
// Exit status: 0 when every assertion passed. OPS_TEST_VERBOSE=1 prints every comparison.
#include <CUnit/Basic.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/nn.h"
#include "models/par.h"
#include "models/probe.h"
#include "models/swav.h"
#include "models/swav_ref.h"
#include "models/vision.h"
#include "models/vision_ref.h"
#include "tests/ref/vision_golden.h"
#include "tests/unit/opcheck.h"
#include "tests/unit/testutil.h"

// Float op vs double ref / torch: inputs O(1) and exact in float; the error is float
// rounding over sums of up to a few hundred terms (a convolution's C*KH*KW products, a
// weight gradient's B*OH*OW, batch norm's B*HW): 2e-5 absolute + 1e-4 relative, as
// test_ops's reductions; element-wise ReLU: exact. Double ref vs torch float64: 1e-12.
#define V_ATOL 2e-5
#define V_RTOL 1e-4
#define REF_TOL 1e-12

static size_t conv_in_n(const ConvShape *s) { return (size_t)s->B * s->C * s->H * s->W; }
static size_t conv_out_n(const ConvShape *s) {
    return (size_t)s->B * s->OC * conv_out_h(s) * conv_out_w(s);
}
static size_t conv_w_n(const ConvShape *s) { return (size_t)s->OC * s->C * s->KH * s->KW; }

// ---------------------------------------------------------------------------------------
// 1. double references against finite differences

typedef struct {
    const ConvShape *s;
    double *inp, *weight, *bias, *out, *w;
} ConvCtx;

static double conv_loss(void *p) {
    ConvCtx *c = p;
    nn_conv2d_forward_ref(c->out, c->inp, c->weight, c->bias, c->s);
    return dot(c->out, c->w, conv_out_n(c->s));
}

static void fd_conv(const ConvShape *s, int with_bias) {
    char what[64];
    snprintf(what, sizeof what, "conv %dx%d stride %d pad %d", s->KH, s->KW, s->stride, s->pad);
    ConvCtx c = {.s = s, .inp = drandn(conv_in_n(s), 1, 0), .weight = drandn(conv_w_n(s), 0.5, 0),
                 .bias = with_bias ? drandn((size_t)s->OC, 1, 0) : NULL,
                 .out = dbuf(conv_out_n(s)), .w = drandn(conv_out_n(s), 1, 0)};
    double *dinp = dbuf(conv_in_n(s)), *dw = dbuf(conv_w_n(s)), *db = dbuf((size_t)s->OC);
    nn_conv2d_backward_ref(dinp, dw, with_bias ? db : NULL, c.w, c.inp, c.weight, s);
    char name[120];
    snprintf(name, sizeof name, "%s dinp", what);
    EXPECT_FD(name, conv_loss, &c, c.inp, dinp, conv_in_n(s));
    snprintf(name, sizeof name, "%s dweight", what);
    EXPECT_FD(name, conv_loss, &c, c.weight, dw, conv_w_n(s));
    if (with_bias) {
        snprintf(name, sizeof name, "%s dbias", what);
        EXPECT_FD(name, conv_loss, &c, c.bias, db, (size_t)s->OC);
    }
}

static void test_fd_conv(void) {
    fd_conv(&(ConvShape){2, 2, 5, 4, 3, 3, 3, 1, 1}, 1);
    fd_conv(&(ConvShape){2, 3, 6, 5, 2, 3, 2, 2, 1}, 1);
    fd_conv(&(ConvShape){3, 3, 3, 3, 4, 1, 1, 1, 0}, 0);
    fd_conv(&(ConvShape){1, 2, 7, 7, 2, 5, 5, 2, 2}, 1);
}

typedef struct {
    double *inp, *weight, *bias, *out, *w, *mean, *rstd;
    int B, C, HW;
} BnCtx;

static double bn_loss(void *p) {
    BnCtx *c = p;
    nn_batchnorm_forward_ref(c->out, c->mean, c->rstd, NULL, NULL, c->inp, c->weight, c->bias,
                             c->B, c->C, c->HW, 1e-5, 0.1);
    return dot(c->out, c->w, (size_t)c->B * c->C * c->HW);
}

static void test_fd_batchnorm(void) {
    const int B = 3, C = 2, HW = 5;
    const size_t n = (size_t)B * C * HW;
    BnCtx c = {.inp = drandn(n, 2, 0.3), .weight = drandn(C, 0.5, 1), .bias = drandn(C, 1, 0),
               .out = dbuf(n), .w = drandn(n, 1, 0), .mean = dbuf(C), .rstd = dbuf(C),
               .B = B, .C = C, .HW = HW};
    bn_loss(&c);
    double *dinp = dbuf(n), *dw = dbuf(C), *db = dbuf(C);
    nn_batchnorm_backward_ref(dinp, dw, db, c.w, c.inp, c.mean, c.rstd, c.weight, B, C, HW);
    EXPECT_FD("batchnorm dinp", bn_loss, &c, c.inp, dinp, n);
    EXPECT_FD("batchnorm dweight", bn_loss, &c, c.weight, dw, C);
    EXPECT_FD("batchnorm dbias", bn_loss, &c, c.bias, db, C);
}

typedef struct {
    double *inp, *out, *pool, *w;
    int B, C, HW;
} RpCtx;

static double rp_loss(void *p) {  // sum(avgpool(relu(inp)) * w)
    RpCtx *c = p;
    nn_relu_forward_ref(c->out, c->inp, (size_t)c->B * c->C * c->HW);
    nn_avgpool_forward_ref(c->pool, c->out, c->B, c->C, c->HW);
    return dot(c->pool, c->w, (size_t)c->B * c->C);
}

static void test_fd_relu_pool(void) {
    const int B = 2, C = 3, HW = 6;
    const size_t n = (size_t)B * C * HW;
    RpCtx c = {.inp = drandn(n, 1, 0), .out = dbuf(n), .pool = dbuf((size_t)B * C),
               .w = drandn((size_t)B * C, 1, 0), .B = B, .C = C, .HW = HW};
    for (size_t i = 0; i < n; i++)  // keep inputs off ReLU's kink, where FD is meaningless
        if (fabs(c.inp[i]) < 1e-3) c.inp[i] = 0.5;
    rp_loss(&c);
    double *dout = dbuf(n), *dinp = dbuf(n);
    nn_avgpool_backward_ref(dout, c.w, B, C, HW);
    nn_relu_backward_ref(dinp, dout, c.out, n);
    EXPECT_FD("relu + avgpool dinp", rp_loss, &c, c.inp, dinp, n);
}

typedef struct {
    double *x, *y, *norm, *w;
    int N, D;
} L2Ctx;

static double l2_loss(void *p) {
    L2Ctx *c = p;
    nn_l2norm_forward_ref(c->y, c->norm, c->x, c->N, c->D);
    return dot(c->y, c->w, (size_t)c->N * c->D);
}

static void test_fd_l2norm(void) {
    const int N = 4, D = 5;
    L2Ctx c = {.x = drandn((size_t)N * D, 1, 0), .y = dbuf((size_t)N * D), .norm = dbuf(N),
               .w = drandn((size_t)N * D, 1, 0), .N = N, .D = D};
    double *dx = dbuf((size_t)N * D);
    nn_l2norm_backward_ref(dx, c.w, c.x, N, D);
    EXPECT_FD("l2norm dinp", l2_loss, &c, c.x, dx, (size_t)N * D);
}

typedef struct {
    double *scores, *q;
    int V, A, B, K;
} SwCtx;

static double sw_loss(void *p) {
    SwCtx *c = p;
    return swav_loss_forward_ref(c->scores, c->q, c->V, c->A, c->B, c->K, 0.1);
}

static void test_fd_swav_loss(void) {
    const int V = 4, A = 2, B = 3, K = 5;
    SwCtx c = {.scores = drandn((size_t)V * B * K, 0.5, 0), .q = dbuf((size_t)A * B * K), .V = V,
               .A = A, .B = B, .K = K};
    for (int a = 0; a < A; a++) swav_sinkhorn_ref(c.q + (size_t)a * B * K, c.scores + (size_t)a * B * K, B, K, 3, 0.05);
    double *ds = dbuf((size_t)V * B * K);
    swav_loss_backward_ref(ds, c.scores, c.q, V, A, B, K, 0.1, 1.0);
    EXPECT_FD("swav loss dscores (codes held fixed)", sw_loss, &c, c.scores, ds, (size_t)V * B * K);
}

// ---------------------------------------------------------------------------------------
// 2. float ops against the double references

static float *conv_scratch(const ConvShape *s) {
    return fbuf(nn_conv2d_scratch_floats(s, CX_PAR_MAX_THREADS));
}

static void cmp_conv(const ConvShape *s, int with_bias, int with_dinp) {
    char what[160], tag[128];
    snprintf(tag, sizeof tag, "conv B=%d C=%d %dx%d OC=%d k=%dx%d stride %d pad %d", s->B, s->C,
             s->H, s->W, s->OC, s->KH, s->KW, s->stride, s->pad);
    const size_t ni = conv_in_n(s), no = conv_out_n(s), nw = conv_w_n(s);
    double *x = drandn(ni, 1, 0), *w = drandn(nw, 0.5, 0), *b = drandn((size_t)s->OC, 1, 0);
    double *dout = drandn(no, 1, 0);
    double *dx = drandn(ni, 1, 0), *dw = drandn(nw, 1, 0), *db = drandn((size_t)s->OC, 1, 0);
    float *dxf = to_f(dx, ni), *dwf = to_f(dw, nw), *dbf = to_f(db, (size_t)s->OC);
    double *out = dbuf(no);
    float *outf = fbuf(no), *scr = conv_scratch(s);
    nn_conv2d_forward_ref(out, x, w, with_bias ? b : NULL, s);
    nn_conv2d_forward(outf, to_f(x, ni), to_f(w, nw), with_bias ? to_f(b, (size_t)s->OC) : NULL, s,
                      scr);
    snprintf(what, sizeof what, "%s out", tag);
    EXPECT_CLOSE_F(what, outf, out, no, V_ATOL, V_RTOL);
    nn_conv2d_backward_ref(with_dinp ? dx : NULL, dw, with_bias ? db : NULL, dout, x, w, s);
    nn_conv2d_backward(with_dinp ? dxf : NULL, dwf, with_bias ? dbf : NULL, to_f(dout, no),
                       to_f(x, ni), to_f(w, nw), s, scr);
    snprintf(what, sizeof what, "%s dinp +=", tag);
    EXPECT_CLOSE_F(what, dxf, dx, ni, V_ATOL, V_RTOL);  // unchanged when NULL was passed
    snprintf(what, sizeof what, "%s dweight +=", tag);
    EXPECT_CLOSE_F(what, dwf, dw, nw, V_ATOL, V_RTOL);
    snprintf(what, sizeof what, "%s dbias +=", tag);
    EXPECT_CLOSE_F(what, dbf, db, (size_t)s->OC, V_ATOL, V_RTOL);
}

static void test_cmp_conv(void) {
    par_set_threads(2);
    cmp_conv(&(ConvShape){2, 3, 7, 6, 4, 3, 3, 1, 1}, 1, 1);
    cmp_conv(&(ConvShape){11, 2, 9, 8, 5, 3, 3, 2, 1}, 1, 1);  // 2 groups, the last short
    cmp_conv(&(ConvShape){17, 4, 5, 5, 3, 1, 1, 1, 0}, 0, 1);  // pointwise, 3 groups
    cmp_conv(&(ConvShape){3, 3, 10, 7, 2, 4, 3, 3, 2}, 1, 0);  // no dinp
    cmp_conv(&(ConvShape){2, 1, 28, 28, 8, 3, 3, 1, 1}, 1, 1); // a Fashion-MNIST stem
    par_set_threads(1);
}

static void cmp_bn(int B, int C, int HW) {
    char what[128], tag[64];
    snprintf(tag, sizeof tag, "batchnorm B=%d C=%d HW=%d", B, C, HW);
    const size_t n = (size_t)B * C * HW;
    double *x = drandn(n, 2, 0.7), *w = drandn(C, 0.5, 1), *b = drandn(C, 1, 0);
    double *rm = drandn(C, 1, 0), *rv = drandn(C, 0.1, 1.5), *dout = drandn(n, 1, 0);
    float *rmf = to_f(rm, C), *rvf = to_f(rv, C);
    double *out = dbuf(n), *mean = dbuf(C), *rstd = dbuf(C);
    float *outf = fbuf(n), *meanf = fbuf(C), *rstdf = fbuf(C);
    float *xf = to_f(x, n), *wf = to_f(w, C), *bf = to_f(b, C);
    nn_batchnorm_forward_ref(out, mean, rstd, rm, rv, x, w, b, B, C, HW, 1e-5, 0.1);
    nn_batchnorm_forward(outf, meanf, rstdf, rmf, rvf, xf, wf, bf, B, C, HW, 1e-5f, 0.1f);
    snprintf(what, sizeof what, "%s out", tag);
    EXPECT_CLOSE_F(what, outf, out, n, V_ATOL, V_RTOL);
    snprintf(what, sizeof what, "%s running mean", tag);
    EXPECT_CLOSE_F(what, rmf, rm, C, V_ATOL, V_RTOL);
    snprintf(what, sizeof what, "%s running var", tag);
    EXPECT_CLOSE_F(what, rvf, rv, C, V_ATOL, V_RTOL);
    double *dx = drandn(n, 1, 0), *dw = drandn(C, 1, 0), *db = drandn(C, 1, 0);
    float *dxf = to_f(dx, n), *dwf = to_f(dw, C), *dbf = to_f(db, C);
    nn_batchnorm_backward_ref(dx, dw, db, dout, x, mean, rstd, w, B, C, HW);
    nn_batchnorm_backward(dxf, dwf, dbf, to_f(dout, n), xf, meanf, rstdf, wf, B, C, HW);
    snprintf(what, sizeof what, "%s dinp +=", tag);
    EXPECT_CLOSE_F(what, dxf, dx, n, V_ATOL, V_RTOL);
    snprintf(what, sizeof what, "%s dweight +=", tag);
    EXPECT_CLOSE_F(what, dwf, dw, C, V_ATOL, V_RTOL);
    snprintf(what, sizeof what, "%s dbias +=", tag);
    EXPECT_CLOSE_F(what, dbf, db, C, V_ATOL, V_RTOL);
    // inference with the updated running statistics, in place
    nn_batchnorm_eval_ref(out, x, w, b, rm, rv, B, C, HW, 1e-5);
    nn_batchnorm_eval(xf, xf, wf, bf, rmf, rvf, B, C, HW, 1e-5f);
    snprintf(what, sizeof what, "%s eval, in place", tag);
    EXPECT_CLOSE_F(what, xf, out, n, V_ATOL, V_RTOL);
}

static void test_cmp_batchnorm(void) {
    par_set_threads(2);
    cmp_bn(4, 3, 49);
    cmp_bn(5, 7, 17);   // HW not a multiple of the vector blocks
    cmp_bn(2, 2, 1);    // 1x1 planes
    par_set_threads(1);
}

static void test_cmp_relu_pool(void) {
    par_set_threads(2);
    const int B = 3, C = 5, HW = 4099;  // more than one element-wise chunk
    const size_t n = (size_t)B * C * HW;
    double *x = drandn(n, 1, 0), *r = dbuf(n), *p = dbuf((size_t)B * C);
    double *dp = drandn((size_t)B * C, 1, 0), *dr = drandn(n, 1, 0), *dx = drandn(n, 1, 0);
    float *rf = fbuf(n), *pf = fbuf((size_t)B * C), *drf = to_f(dr, n), *dxf = to_f(dx, n);
    nn_relu_forward_ref(r, x, n);
    nn_relu_forward(rf, to_f(x, n), n);
    EXPECT_CLOSE_F("relu out", rf, r, n, 0, 0);
    nn_avgpool_forward_ref(p, r, B, C, HW);
    nn_avgpool_forward(pf, rf, B, C, HW);
    EXPECT_CLOSE_F("avgpool out", pf, p, (size_t)B * C, V_ATOL, V_RTOL);
    nn_avgpool_backward_ref(dr, dp, B, C, HW);
    nn_avgpool_backward(drf, to_f(dp, (size_t)B * C), B, C, HW);
    EXPECT_CLOSE_F("avgpool dinp +=", drf, dr, n, V_ATOL, V_RTOL);
    nn_relu_backward_ref(dx, dr, r, n);
    nn_relu_backward(dxf, drf, rf, n);
    EXPECT_CLOSE_F("relu dinp +=", dxf, dx, n, V_ATOL, V_RTOL);
    par_set_threads(1);
}

static void test_cmp_swav(void) {
    const int V = 5, A = 2, B = 6, D = 9, K = 11;
    const size_t nz = (size_t)V * B * D, ns = (size_t)V * B * K, nq = (size_t)A * B * K;
    double *z = drandn(nz, 1, 0), *y = dbuf(nz), *norm = dbuf((size_t)V * B);
    for (int i = 0; i < D; i++) z[2 * D + i] = 0.0;  // a zero row: the clamp
    float *yf = fbuf(nz), *normf = fbuf((size_t)V * B);
    nn_l2norm_forward_ref(y, norm, z, V * B, D);
    nn_l2norm_forward(yf, normf, to_f(z, nz), V * B, D);
    EXPECT_CLOSE_F("l2norm out", yf, y, nz, V_ATOL, V_RTOL);
    double *dy = drandn(nz, 1, 0), *dz = drandn(nz, 1, 0);
    float *dzf = to_f(dz, nz);
    // the zero row (the reference divides by its norm, 0): torch's clamp gives dy / 1e-12
    for (int i = 0; i < D; i++) z[2 * D + i] = 1.0;
    nn_l2norm_backward_ref(dz, dy, z, V * B, D);
    for (int i = 0; i < D; i++) dz[2 * D + i] = (double)dzf[2 * D + i] + dy[2 * D + i] / 1e-12;
    nn_l2norm_backward(dzf, to_f(dy, nz), yf, normf, V * B, D);
    EXPECT_CLOSE_F("l2norm dinp += (and the clamp's dy / 1e-12)", dzf, dz, nz, V_ATOL, V_RTOL);
    double *sc = drandn(ns, 0.4, 0), *q = dbuf(nq);
    float *scf = to_f(sc, ns), *qf = fbuf(nq), *probs = fbuf(ns);
    double *scr = dbuf((size_t)B * K + K + 1);
    for (int a = 0; a < A; a++) {
        swav_sinkhorn_ref(q + (size_t)a * B * K, sc + (size_t)a * B * K, B, K, 3, 0.05);
        CU_ASSERT_EQUAL(swav_sinkhorn(qf + (size_t)a * B * K, scf + (size_t)a * B * K, B, K, 3,
                                      0.05f, NULL, NULL, scr), 0);
    }
    EXPECT_CLOSE_F("sinkhorn codes", qf, q, nq, V_ATOL, V_RTOL);
    double loss = swav_loss_forward_ref(sc, q, V, A, B, K, 0.1);
    double lossf = swav_loss_forward(probs, scf, qf, V, A, B, K, 0.1f);
    EXPECT_CLOSE("swav loss", &lossf, &loss, 1, 0, 1e-5);
    double *ds = drandn(ns, 1, 0);
    float *dsf = to_f(ds, ns);
    swav_loss_backward_ref(ds, sc, q, V, A, B, K, 0.1, 0.5);
    swav_loss_backward(dsf, probs, qf, V, A, B, K, 0.1f, 0.5f);
    EXPECT_CLOSE_F("swav loss dscores +=", dsf, ds, ns, V_ATOL, V_RTOL);
    // bad scores: a clear failure, codes untouched
    scf[3] = NAN;
    for (size_t i = 0; i < (size_t)B * K; i++) qf[i] = -1.0f;
    CU_ASSERT_EQUAL(swav_sinkhorn(qf, scf, B, K, 3, 0.05f, NULL, NULL, scr), -1);
    CU_ASSERT(qf[0] == -1.0f && qf[B * K - 1] == -1.0f);
}

// Sinkhorn over a batch split between two replicas (threads whose reduce adds or maxes their
// vectors) gives each replica the codes of its half of the single-replica run on the whole
// batch: the batch-wide normalisation is what makes data-parallel SwAV equal one big batch.
typedef struct {
    pthread_barrier_t *bar;
    double *slot[2];
    int rank;
} Rep;

static void rep_reduce(void *ctx, double *x, int n, int op) {
    Rep *r = ctx;
    memcpy(r->slot[r->rank], x, (size_t)n * sizeof(double));
    pthread_barrier_wait(r->bar);
    for (int i = 0; i < n; i++) {
        const double a = r->slot[0][i], b = r->slot[1][i];
        x[i] = op == SWAV_SUM ? a + b : (a > b ? a : b);
    }
    pthread_barrier_wait(r->bar);  // both read before the next call overwrites
}

typedef struct {
    Rep rep;
    float *q;
    const float *scores;
    int B, K, rc;
    double *scratch;
} RepJob;

static void *rep_main(void *p) {
    RepJob *j = p;
    j->rc = swav_sinkhorn(j->q, j->scores, j->B, j->K, 3, 0.05f, rep_reduce, &j->rep, j->scratch);
    return NULL;
}

static void test_sinkhorn_replicas(void) {
    const int B = 10, K = 6, B0 = 4;  // replicas of 4 and 6 samples
    float *sc = to_f(drandn((size_t)B * K, 0.5, 0), (size_t)B * K), *whole = fbuf((size_t)B * K);
    float *split = fbuf((size_t)B * K);
    CU_ASSERT_EQUAL(swav_sinkhorn(whole, sc, B, K, 3, 0.05f, NULL, NULL,
                                  dbuf((size_t)B * K + K + 1)), 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    double *slots[2] = {dbuf(K + 1), dbuf(K + 1)};
    RepJob jobs[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        const int off = r ? B0 : 0, n = r ? B - B0 : B0;
        jobs[r] = (RepJob){.rep = {.bar = &bar, .slot = {slots[0], slots[1]}, .rank = r},
                           .q = split + (size_t)off * K, .scores = sc + (size_t)off * K, .B = n,
                           .K = K, .scratch = dbuf((size_t)n * K + K + 1)};
        pthread_create(&th[r], NULL, rep_main, &jobs[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&bar);
    CU_ASSERT(jobs[0].rc == 0 && jobs[1].rc == 0);
    EXPECT_CLOSE_F("sinkhorn on 2 replicas = on the whole batch", split, to_d(whole, (size_t)B * K),
                   (size_t)B * K, 1e-6, 1e-5);
    // each replica's codes alone do not equal those (the check can fail)
    float *alone = fbuf((size_t)B0 * K);
    swav_sinkhorn(alone, sc, B0, K, 3, 0.05f, NULL, NULL, dbuf((size_t)B0 * K + K + 1));
    double worst = 0.0;
    for (int i = 0; i < B0 * K; i++) worst = fmax(worst, fabs(alone[i] - whole[i]));
    CU_ASSERT(worst > 1e-3);
}

// the same bits on 1, 2 and 3 threads: convolution (forward, all three gradients) and
// batch norm
static void test_threads_bitwise(void) {
    const ConvShape s = {19, 3, 9, 7, 4, 3, 3, 2, 1};
    const size_t ni = conv_in_n(&s), no = conv_out_n(&s), nw = conv_w_n(&s);
    float *x = to_f(drandn(ni, 1, 0), ni), *w = to_f(drandn(nw, 0.5, 0), nw);
    float *b = to_f(drandn((size_t)s.OC, 1, 0), (size_t)s.OC), *dout = to_f(drandn(no, 1, 0), no);
    float *scr = conv_scratch(&s);
    float *ref[5] = {0};
    for (int th = 1; th <= 3; th++) {
        par_set_threads(th);
        float *out = fbuf(no), *dx = fbuf(ni), *dw = fbuf(nw), *db = fbuf((size_t)s.OC);
        float *bn = fbuf(no), *m = fbuf((size_t)s.OC), *rs = fbuf((size_t)s.OC);
        nn_conv2d_forward(out, x, w, b, &s, scr);
        nn_conv2d_backward(dx, dw, db, dout, x, w, &s, scr);
        nn_batchnorm_forward(bn, m, rs, NULL, NULL, out, b, b, s.B, s.OC,
                             conv_out_h(&s) * conv_out_w(&s), 1e-5f, 0.1f);
        float *got[5] = {out, dx, dw, db, bn};
        const size_t len[5] = {no, ni, nw, (size_t)s.OC, no};
        static const char *const names[5] = {"conv out", "conv dinp", "conv dweight",
                                              "conv dbias", "batchnorm out"};
        for (int k = 0; k < 5; k++) {
            if (th == 1) {
                ref[k] = got[k];
                continue;
            }
            char what[96];
            snprintf(what, sizeof what, "%s, %d threads against 1", names[k], th);
            EXPECT_SAME_F(what, got[k], ref[k], len[k]);
        }
    }
    par_set_threads(1);
}

static void test_shape_errors(void) {
    char err[CX_ERRLEN];
    CU_ASSERT_EQUAL(conv_shape_check(&(ConvShape){2, 3, 28, 28, 8, 3, 3, 1, 1}, err), 0);
    CU_ASSERT_EQUAL(conv_shape_check(&(ConvShape){2, 0, 28, 28, 8, 3, 3, 1, 1}, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "convolution channels must be >= 1 (got 0)");
    CU_ASSERT_EQUAL(conv_shape_check(&(ConvShape){2, 3, 28, 28, 8, 3, 3, 0, 1}, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "convolution stride must be >= 1 (got 0)");
    CU_ASSERT_EQUAL(conv_shape_check(&(ConvShape){2, 3, 28, 28, 8, 3, 3, 1, 3}, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "convolution padding must be in [0, kernel size) (got 3 for 3x3)");
    CU_ASSERT_EQUAL(conv_shape_check(&(ConvShape){2, 3, 2, 28, 8, 5, 3, 1, 1}, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "convolution kernel 5x3 is larger than the padded input 4x30");
}

// ---------------------------------------------------------------------------------------
// 3. PyTorch golden values

#define GOLD_F(what, got, want, n) closef_impl(what, got, want, n, V_ATOL, V_RTOL, __LINE__)
#define GOLD_D(what, got, want, n) close_impl(what, got, want, n, REF_TOL, REF_TOL, __LINE__)

static void gold_conv(const char *tag, const ConvShape *s, int has_bias, const double *inp,
                      const double *weight, const double *bias, const double *dout,
                      const double *out, const double *dinp, const double *dweight,
                      const double *dbias, int oh, int ow) {
    char what[96];
    CU_ASSERT(conv_out_h(s) == oh && conv_out_w(s) == ow);
    const size_t ni = conv_in_n(s), no = conv_out_n(s), nw = conv_w_n(s), nb = (size_t)s->OC;
    float *outf = fbuf(no), *dxf = fbuf(ni), *dwf = fbuf(nw), *dbf = fbuf(nb);
    float *scr = conv_scratch(s);
    par_set_threads(2);
    nn_conv2d_forward(outf, to_f(inp, ni), to_f(weight, nw), has_bias ? to_f(bias, nb) : NULL, s,
                      scr);
    nn_conv2d_backward(dxf, dwf, has_bias ? dbf : NULL, to_f(dout, no), to_f(inp, ni),
                       to_f(weight, nw), s, scr);
    par_set_threads(1);
    snprintf(what, sizeof what, "%s out", tag);
    GOLD_F(what, outf, out, no);
    snprintf(what, sizeof what, "%s dinp", tag);
    GOLD_F(what, dxf, dinp, ni);
    snprintf(what, sizeof what, "%s dweight", tag);
    GOLD_F(what, dwf, dweight, nw);
    double *outd = dbuf(no), *dxd = dbuf(ni), *dwd = dbuf(nw), *dbd = dbuf(nb);
    nn_conv2d_forward_ref(outd, inp, weight, has_bias ? bias : NULL, s);
    nn_conv2d_backward_ref(dxd, dwd, has_bias ? dbd : NULL, dout, inp, weight, s);
    snprintf(what, sizeof what, "%s ref out", tag);
    GOLD_D(what, outd, out, no);
    snprintf(what, sizeof what, "%s ref dinp", tag);
    GOLD_D(what, dxd, dinp, ni);
    snprintf(what, sizeof what, "%s ref dweight", tag);
    GOLD_D(what, dwd, dweight, nw);
    if (has_bias) {
        snprintf(what, sizeof what, "%s dbias", tag);
        GOLD_F(what, dbf, dbias, nb);
        snprintf(what, sizeof what, "%s ref dbias", tag);
        GOLD_D(what, dbd, dbias, nb);
    }
}

#define GOLD_CONV(T, t, bias, dbias)                                                          \
    gold_conv(#T, &(ConvShape){GOLDEN_##T##_B, GOLDEN_##T##_C, GOLDEN_##T##_H, GOLDEN_##T##_W, \
                               GOLDEN_##T##_OC, GOLDEN_##T##_KH, GOLDEN_##T##_KW,             \
                               GOLDEN_##T##_STRIDE, GOLDEN_##T##_PAD},                        \
              GOLDEN_##T##_BIAS, golden_##t##_inp, golden_##t##_weight, bias,                 \
              golden_##t##_dout, golden_##t##_out, golden_##t##_dinp, golden_##t##_dweight,   \
              dbias, GOLDEN_##T##_OH, GOLDEN_##T##_OW)

static void test_golden_conv(void) {
    GOLD_CONV(CV1, cv1, golden_cv1_bias, golden_cv1_dbias);
    GOLD_CONV(CV2, cv2, golden_cv2_bias, golden_cv2_dbias);
    GOLD_CONV(CV3, cv3, NULL, NULL);
}

static void test_golden_batchnorm(void) {
    const int B = GOLDEN_BN_B, C = GOLDEN_BN_C, HW = GOLDEN_BN_HW;
    const size_t n = (size_t)B * C * HW;
    const float eps = (float)GOLDEN_BN_EPS, mo = (float)GOLDEN_BN_MOMENTUM;
    float *x = to_f(golden_bn_inp, n), *w = to_f(golden_bn_weight, C), *b = to_f(golden_bn_bias, C);
    float *rm = to_f(golden_bn_rmean0, C), *rv = to_f(golden_bn_rvar0, C);
    float *out = fbuf(n), *mean = fbuf(C), *rstd = fbuf(C);
    float *dx = fbuf(n), *dw = fbuf(C), *db = fbuf(C), *ev = fbuf(n);
    nn_batchnorm_forward(out, mean, rstd, rm, rv, x, w, b, B, C, HW, eps, mo);
    nn_batchnorm_backward(dx, dw, db, to_f(golden_bn_dout, n), x, mean, rstd, w, B, C, HW);
    nn_batchnorm_eval(ev, to_f(golden_bn_eval_inp, n), w, b, rm, rv, B, C, HW, eps);
    GOLD_F("batchnorm out", out, golden_bn_out, n);
    GOLD_F("batchnorm running mean", rm, golden_bn_rmean, C);
    GOLD_F("batchnorm running var", rv, golden_bn_rvar, C);
    GOLD_F("batchnorm dinp", dx, golden_bn_dinp, n);
    GOLD_F("batchnorm dweight", dw, golden_bn_dweight, C);
    GOLD_F("batchnorm dbias", db, golden_bn_dbias, C);
    GOLD_F("batchnorm eval out", ev, golden_bn_eval_out, n);
    double *outd = dbuf(n), *md = dbuf(C), *rsd = dbuf(C), *rmd = dcopy(golden_bn_rmean0, C);
    double *rvd = dcopy(golden_bn_rvar0, C), *dxd = dbuf(n), *dwd = dbuf(C), *dbd = dbuf(C);
    double *evd = dbuf(n);
    nn_batchnorm_forward_ref(outd, md, rsd, rmd, rvd, golden_bn_inp, golden_bn_weight,
                             golden_bn_bias, B, C, HW, GOLDEN_BN_EPS, GOLDEN_BN_MOMENTUM);
    nn_batchnorm_backward_ref(dxd, dwd, dbd, golden_bn_dout, golden_bn_inp, md, rsd,
                              golden_bn_weight, B, C, HW);
    nn_batchnorm_eval_ref(evd, golden_bn_eval_inp, golden_bn_weight, golden_bn_bias, rmd, rvd, B,
                          C, HW, GOLDEN_BN_EPS);
    GOLD_D("batchnorm ref out", outd, golden_bn_out, n);
    GOLD_D("batchnorm ref running mean", rmd, golden_bn_rmean, C);
    GOLD_D("batchnorm ref running var", rvd, golden_bn_rvar, C);
    GOLD_D("batchnorm ref dinp", dxd, golden_bn_dinp, n);
    GOLD_D("batchnorm ref dweight", dwd, golden_bn_dweight, C);
    GOLD_D("batchnorm ref dbias", dbd, golden_bn_dbias, C);
    GOLD_D("batchnorm ref eval out", evd, golden_bn_eval_out, n);
}

static void test_golden_relu_pool(void) {
    const int B = GOLDEN_RP_B, C = GOLDEN_RP_C, HW = GOLDEN_RP_HW;
    const size_t n = (size_t)B * C * HW, np = (size_t)B * C;
    float *r = fbuf(n), *p = fbuf(np), *dr = fbuf(n), *dx = fbuf(n);
    nn_relu_forward(r, to_f(golden_rp_inp, n), n);
    nn_avgpool_forward(p, r, B, C, HW);
    nn_avgpool_backward(dr, to_f(golden_rp_dout, np), B, C, HW);
    nn_relu_backward(dx, dr, r, n);
    GOLD_F("relu out", r, golden_rp_relu, n);
    GOLD_F("avgpool out", p, golden_rp_pool, np);
    GOLD_F("relu + avgpool dinp", dx, golden_rp_dinp, n);
    double *rd = dbuf(n), *pd = dbuf(np), *drd = dbuf(n), *dxd = dbuf(n);
    nn_relu_forward_ref(rd, golden_rp_inp, n);
    nn_avgpool_forward_ref(pd, rd, B, C, HW);
    nn_avgpool_backward_ref(drd, golden_rp_dout, B, C, HW);
    nn_relu_backward_ref(dxd, drd, rd, n);
    GOLD_D("relu ref out", rd, golden_rp_relu, n);
    GOLD_D("avgpool ref out", pd, golden_rp_pool, np);
    GOLD_D("relu + avgpool ref dinp", dxd, golden_rp_dinp, n);
}

static void test_golden_swav(void) {
    const int V = GOLDEN_SW_V, A = GOLDEN_SW_A, B = GOLDEN_SW_B, D = GOLDEN_SW_D, K = GOLDEN_SW_K;
    const int N = V * B;
    const size_t nz = (size_t)N * D, ns = (size_t)N * K, nq = (size_t)A * B * K, nw = (size_t)K * D;
    const float temp = (float)GOLDEN_SW_TEMP, eps = (float)GOLDEN_SW_EPS;
    float *z = to_f(golden_sw_z, nz), *w = to_f(golden_sw_w, nw);
    float *zn = fbuf(nz), *norm = fbuf(N), *sc = fbuf(ns), *q = fbuf(nq), *probs = fbuf(ns);
    float *dsc = fbuf(ns), *dzn = fbuf(nz), *dz = fbuf(nz), *dw = fbuf(nw);
    double *scr = dbuf((size_t)B * K + K + 1);
    nn_l2norm_forward(zn, norm, z, N, D);
    nn_linear_forward(sc, zn, w, NULL, N, D, K);
    for (int a = 0; a < A; a++)
        CU_ASSERT_EQUAL(swav_sinkhorn(q + (size_t)a * B * K, sc + (size_t)a * B * K, B, K,
                                      GOLDEN_SW_ITERS, eps, NULL, NULL, scr), 0);
    double loss = swav_loss_forward(probs, sc, q, V, A, B, K, temp);
    swav_loss_backward(dsc, probs, q, V, A, B, K, temp, 1.0f);
    nn_linear_backward(dzn, dw, NULL, dsc, zn, w, N, D, K);
    nn_l2norm_backward(dz, dzn, zn, norm, N, D);
    GOLD_F("swav normalised z", zn, golden_sw_zn, nz);
    GOLD_F("swav scores", sc, golden_sw_scores, ns);
    GOLD_F("swav sinkhorn codes", q, golden_sw_q, nq);
    EXPECT_CLOSE("swav loss", &loss, golden_sw_loss, 1, 0, 1e-5);
    GOLD_F("swav dz", dz, golden_sw_dz, nz);
    GOLD_F("swav dprototypes", dw, golden_sw_dw, nw);
    // the double references, end to end
    double *znd = dbuf(nz), *nd = dbuf(N), *scd = dbuf(ns), *qd = dbuf(nq), *dscd = dbuf(ns);
    double *dznd = dbuf(nz), *dzd = dbuf(nz);
    nn_l2norm_forward_ref(znd, nd, golden_sw_z, N, D);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = 0.0;
            for (int i = 0; i < D; i++) s += znd[n * D + i] * golden_sw_w[k * D + i];
            scd[n * K + k] = s;
        }
    for (int a = 0; a < A; a++)
        swav_sinkhorn_ref(qd + (size_t)a * B * K, scd + (size_t)a * B * K, B, K, GOLDEN_SW_ITERS,
                          GOLDEN_SW_EPS);
    double lossd = swav_loss_forward_ref(scd, qd, V, A, B, K, GOLDEN_SW_TEMP);
    swav_loss_backward_ref(dscd, scd, qd, V, A, B, K, GOLDEN_SW_TEMP, 1.0);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < D; i++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) s += dscd[n * K + k] * golden_sw_w[k * D + i];
            dznd[n * D + i] = s;
        }
    nn_l2norm_backward_ref(dzd, dznd, golden_sw_z, N, D);
    GOLD_D("swav ref sinkhorn codes", qd, golden_sw_q, nq);
    GOLD_D("swav ref loss", &lossd, golden_sw_loss, 1);
    GOLD_D("swav ref dz", dzd, golden_sw_dz, nz);
}

// the linear probe: three Gaussian clusters in 6 dimensions (one of them uninformative and
// on a scale of 1000, which standardisation must handle, or SGD diverges) are learnt to
// their Bayes accuracy (unit noise, centres 2 apart on orthogonal axes: P(correct) = 0.87);
// a broken probe stays near 1/3. The same seed gives the same weights.
static void test_probe(void) {
    const int d = 6, K = 3;
    const size_t n = 3000;
    float *x = fbuf(n * d), *xt = fbuf(n * d);
    uint8_t *y = (uint8_t *)ibuf(n), *yt = (uint8_t *)ibuf(n);
    for (size_t i = 0; i < n; i++) {
        y[i] = (uint8_t)(i % K);
        yt[i] = (uint8_t)((i * 7) % K);
        for (int j = 0; j < d; j++) {
            const float c = j < K && j == y[i] ? 2.0f : 0.0f, ct = j < K && j == yt[i] ? 2.0f : 0.0f;
            const float scale = j == d - 1 ? 1000.0f : 1.0f;
            x[i * d + j] = scale * (c + cx_rng_normal(92, i * d + j));
            xt[i * d + j] = scale * (ct + cx_rng_normal(93, i * d + j));
        }
    }
    ProbeConfig c = probe_default();
    c.epochs = 10;
    Probe p, q;
    probe_train(&p, x, y, n, d, K, &c);
    const double tr = probe_accuracy(&p, x, y, n), te = probe_accuracy(&p, xt, yt, n);
    printf("\n  probe on 3 clusters: train %.3f test %.3f (Bayes 0.87)", tr, te);
    CU_ASSERT(tr > 0.85 && te > 0.85);
    probe_train(&q, x, y, n, d, K, &c);
    CU_ASSERT(!memcmp(p.W, q.W, (size_t)K * d * sizeof(float)));
    probe_free(&p);
    probe_free(&q);
}

int main(int argc, char **argv) {
    const char *verbose = getenv("OPS_TEST_VERBOSE");
    g_verbose = verbose && *verbose && strcmp(verbose, "0") != 0;
    const TuTest fd[] = {{"convolution (padding, strides, 1x1, 5x5)", test_fd_conv},
                         {"batch norm (training statistics)", test_fd_batchnorm},
                         {"ReLU and global average pooling", test_fd_relu_pool},
                         {"L2 normalisation", test_fd_l2norm},
                         {"SwAV swapped-prediction loss", test_fd_swav_loss}};
    const TuTest cmp[] = {{"convolution, gradients accumulate, groups of images", test_cmp_conv},
                          {"batch norm: training, running statistics, eval", test_cmp_batchnorm},
                          {"ReLU and global average pooling", test_cmp_relu_pool},
                          {"SwAV: L2 norm, Sinkhorn, loss; bad scores", test_cmp_swav},
                          {"Sinkhorn on 2 replicas = on the whole batch", test_sinkhorn_replicas},
                          {"1, 2 and 3 threads bit for bit", test_threads_bitwise},
                          {"shape errors name the dimension", test_shape_errors},
                          {"linear probe: clusters learnt to Bayes accuracy, deterministic", test_probe}};
    const TuTest gold[] = {{"convolution (3x3 pad 1, 3x2 stride 2, 1x1)", test_golden_conv},
                           {"batch norm (training, running statistics, eval)", test_golden_batchnorm},
                           {"ReLU and global average pooling", test_golden_relu_pool},
                           {"SwAV head and loss, end to end", test_golden_swav}};
    const TuSuite suites[] = {
        {.name = "ref_vs_finite_differences", .teardown = tfree_all, .tests = fd, .n_tests = TU_NELEM(fd)},
        {.name = "float_vs_ref", .teardown = tfree_all, .tests = cmp, .n_tests = TU_NELEM(cmp)},
        {.name = "golden_pytorch", .teardown = tfree_all, .tests = gold, .n_tests = TU_NELEM(gold)},
    };
    return tu_run(suites, TU_NELEM(suites), argc > 1 ? argv[1] : NULL, CU_BRM_VERBOSE);
}
