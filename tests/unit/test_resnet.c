// test_resnet.c: the SwAV ResNet (models/resnet.h) against PyTorch (tests/ref/resnet_golden.h,
// from tests/ref/resnet_ref.py): torchvision's parameter names and order, features, scores,
// every parameter's gradient and the running statistics after a training step, and an
// eval-mode forward; the same bits on 1, 2 and 3 threads; two models sharing the arenas
// (two crop resolutions) accumulate both gradients; the initialisation; configuration errors.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/par.h"
#include "models/resnet.h"
#include "models/swav.h"
#include "tests/ref/resnet_golden.h"
#include "tests/unit/testutil.h"

static ResNetConfig tiny(void) {
    ResNetConfig c = resnet_default();
    const int widths[] = GOLDEN_RN_WIDTHS, blocks[] = GOLDEN_RN_BLOCKS;
    c.n_stages = (int)TU_NELEM(widths);
    for (int s = 0; s < c.n_stages; s++) {
        c.widths[s] = widths[s];
        c.blocks[s] = blocks[s];
    }
    c.head_hidden = GOLDEN_RN_HH;
    c.out_dim = GOLDEN_RN_D;
    c.n_prototypes = GOLDEN_RN_K;
    return c;
}

// worst |got - want| / (|want| + scale of the tensor) over a tensor. A tensor torch finds
// zero up to rounding (below 1e-12: the bias of a linear layer followed by batch norm has an
// analytically zero gradient) is compared absolutely: within 1e-5 (float rounding of sums
// that cancel, of terms up to about 10).
#define TOL 2e-5  // float against float64 through ~10 layers with batch norm: worst seen 2e-7
static double worst_rel(const float *got, const double *want, int n) {
    double scale = 0.0, w = 0.0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    if (scale < 1e-12) {
        for (int i = 0; i < n; i++) w = fmax(w, fabs(got[i]) / 1e-5 * TOL);
        return w;
    }
    for (int i = 0; i < n; i++) w = fmax(w, fabs(got[i] - want[i]) / (fabs(want[i]) + scale));
    return w;
}

// a model with the golden parameters and running statistics
static ResNet *golden_model(void) {
    ResNetConfig c = tiny();
    ResNet *m = resnet_create(&c, GOLDEN_RN_B, GOLDEN_RN_H, GOLDEN_RN_W, 1);
    const TensorSpec *s = resnet_specs(m);
    CU_ASSERT_EQUAL_FATAL(resnet_n_specs(m), GOLDEN_RN_N_PARAMS);
    for (int i = 0; i < resnet_n_specs(m); i++) {
        // torch's names, in torch's order
        CU_ASSERT_STRING_EQUAL(s[i].name, golden_rn_params[i].name);
        CU_ASSERT_EQUAL_FATAL((int)s[i].n, golden_rn_params[i].n);
        for (size_t j = 0; j < s[i].n; j++)
            resnet_params(m)[s[i].offset + j] = (float)golden_rn_p0[golden_rn_params[i].offset + j];
    }
    int nb;
    const TensorSpec *bs = resnet_buffer_specs(m, &nb);
    CU_ASSERT_EQUAL_FATAL(nb, GOLDEN_RN_N_BUFS);
    for (int i = 0; i < nb; i++) {
        CU_ASSERT_STRING_EQUAL(bs[i].name, golden_rn_bufs[i].name);
        for (size_t j = 0; j < bs[i].n; j++)
            resnet_buffers(m)[bs[i].offset + j] = (float)golden_rn_b0[golden_rn_bufs[i].offset + j];
    }
    return m;
}

static float *golden_images(void) {
    const size_t n = (size_t)GOLDEN_RN_B * GOLDEN_RN_H * GOLDEN_RN_W;
    float *x = cx_calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)golden_rn_x[i];
    return x;
}

static float *golden_dscores(void) {
    const size_t n = (size_t)GOLDEN_RN_B * GOLDEN_RN_K;
    float *d = cx_calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) d[i] = (float)golden_rn_dscores[i];
    return d;
}

static void test_golden(void) {
    par_set_threads(2);
    ResNet *m = golden_model();
    float *x = golden_images(), *ds = golden_dscores();
    const int B = GOLDEN_RN_B, K = GOLDEN_RN_K, Cf = tiny().widths[tiny().n_stages - 1];
    const float *sc = resnet_forward(m, x, B, GOLDEN_RN_H, GOLDEN_RN_W, 1, NULL);
    double wf = worst_rel(resnet_features(m, x, B, GOLDEN_RN_H, GOLDEN_RN_W, 1), golden_rn_feat, B * Cf);
    // (the second call ran the features again: the running statistics moved twice for the
    // trunk; reset them before comparing, and redo the whole step)
    resnet_free(m);
    m = golden_model();
    sc = resnet_forward(m, x, B, GOLDEN_RN_H, GOLDEN_RN_W, 1, NULL);
    double wsc = worst_rel(sc, golden_rn_scores, B * K);
    resnet_backward(m, ds);
    double wg = 0.0;
    const TensorSpec *s = resnet_specs(m);
    for (int i = 0; i < resnet_n_specs(m); i++) {
        double w = worst_rel(resnet_grads(m) + s[i].offset, golden_rn_grads + golden_rn_params[i].offset,
                             (int)s[i].n);
        if (w > TOL) printf("\n  %s: gradient worst %.3g", s[i].name, w);
        wg = fmax(wg, w);
    }
    int nb;
    const TensorSpec *bs = resnet_buffer_specs(m, &nb);
    double wb = 0.0;
    for (int i = 0; i < nb; i++)
        wb = fmax(wb, worst_rel(resnet_buffers(m) + bs[i].offset, golden_rn_b1 + golden_rn_bufs[i].offset,
                                (int)bs[i].n));
    const float *se = resnet_forward(m, x, B, GOLDEN_RN_H, GOLDEN_RN_W, 0, NULL);
    double we = worst_rel(se, golden_rn_scores_eval, B * K);
    printf("\n  worst relative differences from torch: features %.2g, scores %.2g, gradients "
           "%.2g, running statistics %.2g, eval scores %.2g (tolerance %.0e)", wf, wsc, wg, wb, we, TOL);
    CU_ASSERT(wf <= TOL && wsc <= TOL && wg <= TOL && wb <= TOL && we <= TOL);
    resnet_free(m);
    free(x);
    free(ds);
    par_set_threads(1);
}

// one SwAV step over prepared views (swav_step_run): 2 global and 2 small views of 3 images
// through two models sharing the arenas, Sinkhorn codes, the swapped-prediction loss and its
// gradient, against the same step in PyTorch
static void test_swav_step(void) {
    par_set_threads(2);
    ResNet *g = golden_model();
    ResNet *sm = resnet_share(g, 2 * GOLDEN_RN_B, 5, 4);
    ResNet *gg = resnet_share(g, 2 * GOLDEN_RN_B, GOLDEN_RN_H, GOLDEN_RN_W);
    const size_t ng = (size_t)2 * GOLDEN_RN_B * GOLDEN_RN_H * GOLDEN_RN_W, ns = (size_t)2 * GOLDEN_RN_B * 20;
    float *vg = cx_calloc(ng, sizeof(float)), *vs = cx_calloc(ns, sizeof(float));
    for (size_t i = 0; i < ng; i++) vg[i] = (float)golden_sw_views_g[i];
    for (size_t i = 0; i < ns; i++) vs[i] = (float)golden_sw_views_s[i];
    SwavStep st;
    SwavParams sp = {.n_global = 2, .n_small = 2, .sinkhorn_iters = 3, .sinkhorn_eps = 0.05f,
                     .temperature = 0.1f};
    swav_step_init(&st, &sp, GOLDEN_RN_B, GOLDEN_RN_K);
    const double loss = swav_step_run(&st, gg, vg, GOLDEN_RN_H, GOLDEN_RN_W, sm, vs, 5, 4,
                                      GOLDEN_RN_B, 1, 1, 1.0f);
    const double wl = fabs(loss - golden_sw_loss[0]) / fabs(golden_sw_loss[0]);
    double wg = 0.0, wb = 0.0;
    const TensorSpec *s = resnet_specs(g);
    for (int i = 0; i < resnet_n_specs(g); i++)
        wg = fmax(wg, worst_rel(resnet_grads(g) + s[i].offset,
                                golden_sw_grads + golden_rn_params[i].offset, (int)s[i].n));
    int nb;
    const TensorSpec *bs = resnet_buffer_specs(g, &nb);
    for (int i = 0; i < nb; i++)
        wb = fmax(wb, worst_rel(resnet_buffers(g) + bs[i].offset, golden_sw_b1 + golden_rn_bufs[i].offset,
                                (int)bs[i].n));
    printf("\n  loss %.9g (torch %.9g): relative %.2g; gradients %.2g, running statistics %.2g",
           loss, golden_sw_loss[0], wl, wg, wb);
    CU_ASSERT(wl <= 1e-5 && wg <= TOL && wb <= TOL);
    // eval: no gradient, the running statistics unchanged
    float *before = cx_calloc(resnet_n_params(g), sizeof(float));
    memcpy(before, resnet_grads(g), resnet_n_params(g) * sizeof(float));
    const double le = swav_step_run(&st, gg, vg, GOLDEN_RN_H, GOLDEN_RN_W, sm, vs, 5, 4,
                                    GOLDEN_RN_B, 0, 0, 1.0f);
    CU_ASSERT(isfinite(le) && !memcmp(before, resnet_grads(g), resnet_n_params(g) * sizeof(float)));
    swav_step_free(&st);
    free(before);
    free(vg);
    free(vs);
    resnet_free(gg);
    resnet_free(sm);
    resnet_free(g);
    par_set_threads(1);
}

// forward + backward on 1, 2, 3 threads: the same gradients and buffers, bit for bit
static void test_threads(void) {
    float *x = golden_images(), *ds = golden_dscores();
    float *ref_g = NULL, *ref_b = NULL;
    for (int th = 1; th <= 3; th++) {
        par_set_threads(th);
        ResNet *m = golden_model();
        resnet_forward(m, x, GOLDEN_RN_B, GOLDEN_RN_H, GOLDEN_RN_W, 1, NULL);
        resnet_backward(m, ds);
        int nb;
        const TensorSpec *bs = resnet_buffer_specs(m, &nb);
        const size_t ng = resnet_n_params(m), nbuf = bs[nb - 1].offset + bs[nb - 1].n;
        if (th == 1) {
            ref_g = cx_calloc(ng, sizeof(float));
            ref_b = cx_calloc(nbuf, sizeof(float));
            memcpy(ref_g, resnet_grads(m), ng * sizeof(float));
            memcpy(ref_b, resnet_buffers(m), nbuf * sizeof(float));
        } else {
            CU_ASSERT(!memcmp(ref_g, resnet_grads(m), ng * sizeof(float)));
            CU_ASSERT(!memcmp(ref_b, resnet_buffers(m), nbuf * sizeof(float)));
        }
        resnet_free(m);
    }
    par_set_threads(1);
    free(ref_g);
    free(ref_b);
    free(x);
    free(ds);
}

// a model for 9 x 8 images and one sharing its arenas for 5 x 4: the gradient of running
// both is the sum of each one's alone
static void test_shared(void) {
    float *x = golden_images(), *ds = golden_dscores();
    float xs[GOLDEN_RN_B * 5 * 4];
    for (int b = 0; b < GOLDEN_RN_B; b++)
        for (int i = 0; i < 20; i++) xs[b * 20 + i] = x[b * GOLDEN_RN_H * GOLDEN_RN_W + i];
    ResNet *m = golden_model();
    ResNet *s = resnet_share(m, GOLDEN_RN_B, 5, 4);
    CU_ASSERT(resnet_params(s) == resnet_params(m) && resnet_grads(s) == resnet_grads(m));
    const size_t n = resnet_n_params(m);
    float *ga = cx_calloc(n, sizeof(float)), *gb = cx_calloc(n, sizeof(float));
    resnet_forward(m, x, GOLDEN_RN_B, GOLDEN_RN_H, GOLDEN_RN_W, 1, NULL);
    resnet_backward(m, ds);
    memcpy(ga, resnet_grads(m), n * sizeof(float));
    memset(resnet_grads(m), 0, n * sizeof(float));
    resnet_forward(s, xs, GOLDEN_RN_B, 5, 4, 1, NULL);
    resnet_backward(s, ds);
    memcpy(gb, resnet_grads(m), n * sizeof(float));
    memset(resnet_grads(m), 0, n * sizeof(float));
    resnet_forward(m, x, GOLDEN_RN_B, GOLDEN_RN_H, GOLDEN_RN_W, 1, NULL);
    resnet_forward(s, xs, GOLDEN_RN_B, 5, 4, 1, NULL);
    resnet_backward(m, ds);  // each model backs through its own activations
    resnet_backward(s, ds);
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ga[i] + gb[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(resnet_grads(m)[i] - (ga[i] + gb[i])));
    CU_ASSERT(worst <= 1e-6 * scale);
    int differ = 0;
    for (size_t i = 0; i < n; i++) differ += ga[i] != gb[i];
    CU_ASSERT(differ > (int)n / 2);  // the two resolutions give different gradients
    resnet_free(s);
    resnet_free(m);
    free(ga);
    free(gb);
    free(x);
    free(ds);
}

// torchvision's initialisation: conv weights normal with std sqrt(2 / fan_out), BN weight
// 1 bias 0, linear uniform in +-1/sqrt(fan_in), running mean 0 and variance 1
static void test_init(void) {
    ResNetConfig c = resnet_default();
    ResNet *m = resnet_create(&c, 2, 28, 28, 42);
    const TensorSpec *s = resnet_specs(m);
    const float *p = resnet_params(m);
    int ok = 1;
    for (int i = 0; i < resnet_n_specs(m); i++) {
        const float *w = p + s[i].offset;
        if (s[i].ndim == 4) {
            double ss = 0.0;
            for (size_t j = 0; j < s[i].n; j++) ss += (double)w[j] * w[j];
            const double want = sqrt(2.0 / (double)(s[i].shape[0] * s[i].shape[2] * s[i].shape[3]));
            const double got = sqrt(ss / (double)s[i].n);
            if (fabs(got / want - 1.0) > 0.1) {
                printf("\n  %s: std %.4g, expected %.4g", s[i].name, got, want);
                ok = 0;
            }
        } else if (strstr(s[i].name, "prototypes") || strstr(s[i].name, "projection_head.0") ||
                   strstr(s[i].name, "projection_head.3")) {
            const long fan_in = s[i].ndim == 2 ? s[i].shape[1] : s[i - 1].shape[1];
            for (size_t j = 0; j < s[i].n; j++) ok &= fabsf(w[j]) <= 1.0f / sqrtf((float)fan_in);
        } else {  // batch norm
            const float want = strstr(s[i].name, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < s[i].n; j++) ok &= w[j] == want;
        }
    }
    CU_ASSERT(ok);
    int nb;
    const TensorSpec *bs = resnet_buffer_specs(m, &nb);
    for (int i = 0; i < nb; i++) {
        const float want = strstr(bs[i].name, "running_var") ? 1.0f : 0.0f;
        for (size_t j = 0; j < bs[i].n; j++) ok &= resnet_buffers(m)[bs[i].offset + j] == want;
    }
    CU_ASSERT(ok);
    CU_ASSERT(!strcmp(s[resnet_n_specs(m) - 1].name, "prototypes.weight"));
    // SwAV's prototype normalisation: every row to unit norm, and nothing else touched
    const TensorSpec *pr = &s[resnet_n_specs(m) - 1];
    float *before = cx_calloc(resnet_n_params(m), sizeof(float));
    memcpy(before, p, resnet_n_params(m) * sizeof(float));
    resnet_normalize_prototypes(m);
    int unit = 1;
    for (long k = 0; k < pr->shape[0]; k++) {
        double ss = 0.0;
        for (long j = 0; j < pr->shape[1]; j++) ss += (double)p[pr->offset + k * pr->shape[1] + j] * p[pr->offset + k * pr->shape[1] + j];
        unit &= fabs(sqrt(ss) - 1.0) < 1e-6;
    }
    CU_ASSERT(unit);
    CU_ASSERT(!memcmp(before, p, pr->offset * sizeof(float)));
    CU_ASSERT(memcmp(before + pr->offset, p + pr->offset, pr->n * sizeof(float)) != 0);
    free(before);
    resnet_free(m);
}

static void test_config_errors(void) {
    char err[CX_ERRLEN];
    ResNetConfig c = resnet_default();
    CU_ASSERT_EQUAL(resnet_config_check(&c, err), 0);
    c.n_stages = 5;
    CU_ASSERT_EQUAL(resnet_config_check(&c, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "model.stages must be 1 to 4 (got 5)");
    c = resnet_default();
    c.blocks[1] = 0;
    CU_ASSERT_EQUAL(resnet_config_check(&c, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "model.blocks: stage 2 has 0 blocks (1 to 4)");
    c = resnet_default();
    c.n_prototypes = 0;
    CU_ASSERT_EQUAL(resnet_config_check(&c, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "model.prototypes must be in [1, 65536] (got 0)");
}

int main(void) {
    const TuTest tests[] = {{"a training step and an eval forward against PyTorch", test_golden},
                            {"a SwAV step over two resolutions against PyTorch", test_swav_step},
                            {"1, 2 and 3 threads bit for bit", test_threads},
                            {"two resolutions sharing the arenas", test_shared},
                            {"torchvision's initialisation", test_init},
                            {"configuration errors", test_config_errors}};
    return tu_run_suite("resnet", tests, TU_NELEM(tests));
}
