// test_robust.c: the robust aggregation kernels (bridge/robust.h).
//
// - golden: median, trimmed mean, CenteredClip (result, tau and every clipping factor) and
//   norm clipping against tests/ref/robust_golden.h (tests/ref/robust_ref.py, numpy in
//   float64): weighted and equal weights (a median tie), trimming that cuts through a
//   value's weight, CenteredClip with and without clipping of honest points. Results within
//   2e-6 (absolute + relative to the value: the C and numpy sums differ only in order).
// - Properties:
//     cc_outlier_bound   one outlier of weight w_a among honest points of weight W_h moves
//                        CenteredClip's result at most tau w_a / W_h from the honest mean,
//                        whatever its size (1e2 .. 1e12); the results for 1e6 and 1e12 agree;
//                        the plain mean moves by 1e4 times that bound already at 1e6
//     cc_honest_is_mean  an honest cloud (tau_ratio 2): no contribution clipped, result = the
//                        weighted mean within 1e-6 of its largest value
//     trimmed_bounds     trim 0.2 of 5 equal weights: each coordinate stays within the honest
//                        values' range with an outlier of 1e9; trim 0 is the mean
//     clip               norm clipped to the limit (1e-6 relative), factor returned; a vector
//                        within the limit is left bit for bit
//     names              robust_kind_by_name / robust_kind_name
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/robust.h"
#include "tests/ref/robust_golden.h"
#include "tests/unit/testutil.h"

enum { N = GOLDEN_RB_N };

static int close_to(const float *got, const float *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - (double)want[i]) <= tol * (1 + fabs((double)want[i])))) {
            fprintf(stderr, "element %zu: %.9g, expected %.9g\n", i, (double)got[i], (double)want[i]);
            return 0;
        }
    return 1;
}

// rows of a (k, N) array as k pointers
static void rows(const float **x, const float *a, int k) {
    for (int j = 0; j < k; j++) x[j] = a + (size_t)j * N;
}

static void test_golden_median_trim(void) {
    const float *xa[5], *xb[4], *xc[6];
    rows(xa, golden_rb_xa, 5);
    rows(xb, golden_rb_xb, 4);
    rows(xc, golden_rb_xc, 6);
    float out[N];
    robust_median(out, xa, golden_rb_wa, 5, N);
    CU_ASSERT(close_to(out, golden_rb_median_a, N, 0));
    robust_median(out, xb, golden_rb_wb, 4, N);
    CU_ASSERT(close_to(out, golden_rb_median_b, N, 2e-7));
    robust_trimmed_mean(out, xa, golden_rb_wa, 5, N, 0.2, NULL);
    CU_ASSERT(close_to(out, golden_rb_trim20_a, N, 2e-6));
    long trimmed[4] = {0};
    robust_trimmed_mean(out, xb, golden_rb_wb, 4, N, 0.25, trimmed);
    CU_ASSERT(close_to(out, golden_rb_trim25_b, N, 2e-6));
    // equal weights, trim 1/4 of 4: per coordinate exactly the smallest and the largest lose
    // their weight: 2 N trimmings in all
    CU_ASSERT_EQUAL(trimmed[0] + trimmed[1] + trimmed[2] + trimmed[3], 2 * N);
    robust_trimmed_mean(out, xc, golden_rb_wc, 6, N, 0.1, NULL);
    CU_ASSERT(close_to(out, golden_rb_trim10_c, N, 2e-6));
}

static void check_cc(const float *x_flat, const double *w, int k, double ratio, int iters, double tau,
                     const float *want, const double *want_factor) {
    const float *x[8];
    rows(x, x_flat, k);
    float out[N];
    double factor[8];
    double got_tau = robust_centered_clip(out, x, w, k, N, ratio, iters, factor);
    CU_ASSERT(fabs(got_tau - tau) <= 1e-6 * tau);
    CU_ASSERT(close_to(out, want, N, 2e-6));
    for (int j = 0; j < k; j++) CU_ASSERT(fabs(factor[j] - want_factor[j]) <= 1e-5);
}

static void test_golden_centered_clip(void) {
    check_cc(golden_rb_xa, golden_rb_wa, 5, GOLDEN_RB_CC_A_RATIO, GOLDEN_RB_CC_A_ITERS, GOLDEN_RB_CC_A_TAU,
             golden_rb_cc_a, golden_rb_cc_a_factor);
    check_cc(golden_rb_xc, golden_rb_wc, 6, GOLDEN_RB_CC_C_RATIO, GOLDEN_RB_CC_C_ITERS, GOLDEN_RB_CC_C_TAU,
             golden_rb_cc_c, golden_rb_cc_c_factor);
    check_cc(golden_rb_xc, golden_rb_wc, 6, GOLDEN_RB_CC_C1_RATIO, GOLDEN_RB_CC_C1_ITERS,
             GOLDEN_RB_CC_C1_TAU, golden_rb_cc_c1, golden_rb_cc_c1_factor);
    float v[N];
    memcpy(v, golden_rb_xa, sizeof v);
    double f = robust_clip(v, N, 2.0);
    CU_ASSERT(f < 1);
    CU_ASSERT(close_to(v, golden_rb_clip_a0, N, 2e-7));
}

// ---- properties ----

enum { K = 8, NP = 500 };

static float g_x[K][NP];

// K - 1 honest points mu + 0.05 noise, and point K-1 an outlier scale * u (a fixed direction)
static void make_cloud(double scale) {
    srand(7);
    for (int j = 0; j < K; j++)
        for (int i = 0; i < NP; i++) {
            double mu = 0.01 * (i % 17) - 0.05;
            double noise = ((double)rand() / RAND_MAX - 0.5) * 0.1;
            g_x[j][i] = (float)(j < K - 1 ? mu + noise : scale * ((i % 3) - 1.0) / sqrt(NP * 2.0 / 3));
        }
}

static double dist_d(const float *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s);
}

static void test_cc_outlier_bound(void) {
    const double w[K] = {1, 2, 1.5, 1, 1, 0.5, 2, 1.5};  // the outlier: weight 1.5
    double W_h = 0;
    for (int j = 0; j < K - 1; j++) W_h += w[j];
    static float r6[NP], r12[NP];
    for (int e = 2; e <= 12; e += 2) {
        make_cloud(pow(10, e));
        const float *x[K];
        for (int j = 0; j < K; j++) x[j] = g_x[j];
        double hm[NP];  // the honest weighted mean
        for (int i = 0; i < NP; i++) {
            double s = 0;
            for (int j = 0; j < K - 1; j++) s += w[j] * g_x[j][i];
            hm[i] = s / W_h;
        }
        float out[NP];
        double factor[K];
        double tau = robust_centered_clip(out, x, w, K, NP, 2.0, 20, factor);
        double bound = tau * w[K - 1] / W_h;
        double moved = dist_d(out, hm, NP);
        CU_ASSERT(moved <= bound * (1 + 1e-4));
        CU_ASSERT(factor[K - 1] < 1);
        for (int j = 0; j < K - 1; j++) CU_ASSERT_EQUAL(factor[j], 1.0);
        if (e == 6) {
            memcpy(r6, out, sizeof r6);
            robust_mean(out, x, w, K, NP);
            CU_ASSERT(dist_d(out, hm, NP) > 1e4 * bound);
        }
        if (e == 12) memcpy(r12, out, sizeof r12);
    }
    for (int i = 0; i < NP; i++) CU_ASSERT(fabsf(r6[i] - r12[i]) <= 1e-5f);
}

static void test_cc_honest_is_mean(void) {
    make_cloud(0);
    const double w[K - 1] = {1, 2, 1.5, 1, 1, 0.5, 2};
    const float *x[K - 1];
    for (int j = 0; j < K - 1; j++) x[j] = g_x[j];
    float out[NP], mean[NP];
    double factor[K - 1];
    robust_centered_clip(out, x, w, K - 1, NP, 2.0, 5, factor);
    robust_mean(mean, x, w, K - 1, NP);
    float mx = 0;
    for (int i = 0; i < NP; i++) mx = fmaxf(mx, fabsf(mean[i]));
    for (int j = 0; j < K - 1; j++) CU_ASSERT_EQUAL(factor[j], 1.0);
    int ok = 1;
    for (int i = 0; i < NP; i++) ok &= fabsf(out[i] - mean[i]) <= 1e-6f * mx;
    CU_ASSERT(ok);
}

static void test_trimmed_bounds(void) {
    make_cloud(1e9);
    const double w[5] = {1, 1, 1, 1, 1};
    const float *x[5] = {g_x[0], g_x[1], g_x[2], g_x[3], g_x[K - 1]};
    float out[NP], mean[NP];
    robust_trimmed_mean(out, x, w, 5, NP, 0.2, NULL);
    int ok = 1;
    for (int i = 0; i < NP; i++) {
        float lo = g_x[0][i], hi = g_x[0][i];
        for (int j = 1; j < 4; j++) lo = fminf(lo, g_x[j][i]), hi = fmaxf(hi, g_x[j][i]);
        ok &= out[i] >= lo && out[i] <= hi;
    }
    CU_ASSERT(ok);
    robust_trimmed_mean(out, x, w, 5, NP, 0.0, NULL);
    robust_mean(mean, x, w, 5, NP);
    ok = 1;
    for (int i = 0; i < NP; i++) ok &= fabsf(out[i] - mean[i]) <= 1e-6f * (1 + fabsf(mean[i]));
    CU_ASSERT(ok);
}

static void test_clip(void) {
    float v[4] = {3, 4, 0, 0}, u[4] = {0.3f, 0.4f, 0, 0};
    double f = robust_clip(v, 4, 2.5);
    CU_ASSERT(fabs(f - 0.5) < 1e-12);
    CU_ASSERT(fabs(robust_norm(v, 4) - 2.5) <= 2.5e-6);
    CU_ASSERT_EQUAL(robust_clip(u, 4, 2.5), 1.0);
    CU_ASSERT(u[0] == 0.3f && u[1] == 0.4f);
    CU_ASSERT_EQUAL(robust_clip(v, 4, 0), 1.0);  // no limit
}

static void test_names(void) {
    CU_ASSERT_EQUAL(robust_kind_by_name("mean"), ROBUST_MEAN);
    CU_ASSERT_EQUAL(robust_kind_by_name("centered-clip"), ROBUST_CENTERED_CLIP);
    CU_ASSERT_EQUAL(robust_kind_by_name("trimmed-mean"), ROBUST_TRIMMED_MEAN);
    CU_ASSERT_EQUAL(robust_kind_by_name("median"), -1);
    CU_ASSERT_STRING_EQUAL(robust_kind_name(ROBUST_CENTERED_CLIP), "centered-clip");
}

int main(void) {
    static const TuTest tests[] = {
        {"golden: median and trimmed mean", test_golden_median_trim},
        {"golden: CenteredClip and clip", test_golden_centered_clip},
        {"CenteredClip: an outlier's influence is bounded", test_cc_outlier_bound},
        {"CenteredClip: honest contributions give the mean", test_cc_honest_is_mean},
        {"trimmed mean: bounds and trim 0", test_trimmed_bounds},
        {"clip", test_clip},
        {"names", test_names},
    };
    return tu_run_suite("robust", tests, sizeof tests / sizeof tests[0]);
}
