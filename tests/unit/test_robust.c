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
//     fast_against_ref   the median, the trimmed mean (with its counters) and CenteredClip
//                        (result, tau, factors) equal, bit for bit, the plain O(k^2) code
//                        kept here (stable insertion sort per coordinate, one pass per
//                        distance), for k = 1..70, weights 1 / small integers / uniform,
//                        values with 0%, 50% and 95% ties (+-0 among them), trim 0, 0.1, 0.25
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
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
    // one iteration, far from converged: the iteration cap is exact
    check_cc(golden_rb_xc, golden_rb_wc, 6, GOLDEN_RB_CC_C0_RATIO, GOLDEN_RB_CC_C0_ITERS,
             GOLDEN_RB_CC_C0_TAU, golden_rb_cc_c0, golden_rb_cc_c0_factor);
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

// Two honest uploads of unequal weight (3 and 2, the bridge's 12- and 8-sample shares): the
// heavier one is the weighted median in every coordinate, so its distance is 0 and the median
// distance too; tau must come from the other one's distance, which keeps both in full: the
// result is their weighted mean. (tau 0 weighed the lighter one down to nothing: a real
// make-experiment sync run dropped its medium volunteer's gradient from every round.)
static void test_cc_two_unequal(void) {
    float a[NP], b[NP];
    for (int i = 0; i < NP; i++) a[i] = (float)(0.01 * (i % 7) - 0.02), b[i] = (float)(0.015 * (i % 5) - 0.01);
    const float *x[2] = {a, b};
    const double w[2] = {3, 2};
    float out[NP], mean[NP];
    double factor[2];
    double tau = robust_centered_clip(out, x, w, 2, NP, 1.0, 10, factor);
    robust_mean(mean, x, w, 2, NP);
    CU_ASSERT_DOUBLE_EQUAL(tau, robust_dist(a, b, NP), 1e-9 * tau);
    CU_ASSERT_EQUAL(factor[0], 1.0);
    CU_ASSERT_EQUAL(factor[1], 1.0);
    int ok = 1;
    for (int i = 0; i < NP; i++) ok &= fabsf(out[i] - mean[i]) <= 1e-6f;
    CU_ASSERT(ok);
    // identical contributions: every distance 0, nothing down-weighted
    const float *y[2] = {a, a};
    tau = robust_centered_clip(out, y, w, 2, NP, 1.0, 10, factor);
    CU_ASSERT(tau == 0.0 && factor[0] == 1.0 && factor[1] == 1.0);
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

// ---- the fast kernels against the plain O(k^2) ones they replaced ----
// robust.c sorts each coordinate's keys (merge sort) or selects its median (weighted
// quickselect, with a sort where a sum lies within rounding of a threshold), and runs
// CenteredClip's update and distances in one pass; the definitions below are the code they
// replaced (stable insertion sort, a pass per distance). Results must agree bit for bit.

// idx[0..k) sorted by val (stable insertion sort)
static void ref_sort_idx(int *idx, const double *val, int k) {
    for (int j = 0; j < k; j++) idx[j] = j;
    for (int a = 1; a < k; a++) {
        int t = idx[a], b = a - 1;
        while (b >= 0 && val[idx[b]] > val[t]) idx[b + 1] = idx[b], b--;
        idx[b + 1] = t;
    }
}

static double ref_wmedian(const double *val, const double *w, int k, double W) {
    int idx[ROBUST_MAX_K];
    ref_sort_idx(idx, val, k);
    double half = 0.5 * W, cum = 0, eps = 1e-12 * W;
    for (int a = 0; a < k; a++) {
        cum += w[idx[a]];
        if (cum > half + eps) return val[idx[a]];
        if (cum >= half - eps) return a + 1 < k ? 0.5 * (val[idx[a]] + val[idx[a + 1]]) : val[idx[a]];
    }
    return val[idx[k - 1]];
}

static void ref_median(float *out, const float *const *x, const double *w, int k, size_t n) {
    double W = 0, val[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) val[j] = x[j][i];
        out[i] = (float)ref_wmedian(val, w, k, W);
    }
}

static void ref_trimmed_mean(float *out, const float *const *x, const double *w, int k, size_t n,
                             double trim, long *trimmed) {
    double W = 0, val[ROBUST_MAX_K];
    int idx[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    double lo = trim * W, hi = (1.0 - trim) * W;
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) val[j] = x[j][i];
        ref_sort_idx(idx, val, k);
        double cum = 0, s = 0, kept_w = 0;
        for (int a = 0; a < k; a++) {
            int j = idx[a];
            double from = cum, to = cum + w[j];
            cum = to;
            double keep = (to < hi ? to : hi) - (from > lo ? from : lo);
            if (keep < 0) keep = 0;
            if (trimmed && keep < w[j] * (1 - 1e-12)) trimmed[j]++;
            s += keep * val[j];
            kept_w += keep;
        }
        out[i] = (float)(kept_w > 0 ? s / kept_w : ref_wmedian(val, w, k, W));
    }
}

static double ref_centered_clip(float *out, const float *const *x, const double *w, int k, size_t n,
                                double tau_ratio, int iters, double *factor) {
    double W = 0, dist[ROBUST_MAX_K], c[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    ref_median(out, x, w, k, n);
    for (int j = 0; j < k; j++) dist[j] = robust_dist(x[j], out, n);
    double tau = tau_ratio * ref_wmedian(dist, w, k, W);
    if (!(tau > 0)) {  // the scale of the nonzero distances (robust.h)
        double dz[ROBUST_MAX_K], wz[ROBUST_MAX_K], Wz = 0;
        int kz = 0;
        for (int j = 0; j < k; j++)
            if (dist[j] > 0) dz[kz] = dist[j], wz[kz] = w[j], Wz += w[j], kz++;
        if (kz > 0) tau = tau_ratio * ref_wmedian(dz, wz, kz, Wz);
    }
    int prev_all = 0;
    for (int it = 0; it <= iters; it++) {
        int all = 1;
        for (int j = 0; j < k; j++) {
            double d = robust_dist(x[j], out, n);
            c[j] = d > tau ? tau / d : 1.0;
            all &= c[j] == 1.0;
        }
        if (it == iters || (all && prev_all)) break;
        prev_all = all;
        for (size_t i = 0; i < n; i++) {
            double v = out[i], s = 0;
            for (int j = 0; j < k; j++) s += w[j] * c[j] * ((double)x[j][i] - v);
            out[i] = (float)(v + s / W);
        }
    }
    memcpy(factor, c, (size_t)k * sizeof *c);
    return tau;
}

enum { KMAX = 70, NF = 301 };  // NF: not a multiple of CenteredClip's block of coordinates

static float g_f[KMAX][NF];

// a uniform double in [0, 1) (xorshift64*: the same sequence on every platform)
static double rnd(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

// Random inputs with ties: per contribution, values from a small set (multiples of 0.25 in
// [-1, 1], +-0 among them) in a share `tied` of the coordinates, else uniform; weights 1
// (unweighted), small integers (cumulative weights land exactly on W / 2 and the trim cuts),
// or uniform in [0.5, 2].
static void make_fast_case(uint64_t *s, int k, int wkind, double tied, double *w) {
    for (int j = 0; j < k; j++) {
        w[j] = wkind == 0 ? 1.0 : wkind == 1 ? (double)(1 + (int)(3 * rnd(s))) : 0.5 + 1.5 * rnd(s);
        for (int i = 0; i < NF; i++) {
            if (rnd(s) < tied) {
                int q = (int)(9 * rnd(s)) - 4;
                g_f[j][i] = q ? 0.25f * (float)q : (rnd(s) < 0.5 ? -0.0f : 0.0f);
            } else {
                g_f[j][i] = (float)(2 * rnd(s) - 1);
            }
        }
    }
}

static void test_fast_against_ref(void) {
    uint64_t seed = 0x243F6A8885A308D3ull;
    const float *x[KMAX];
    for (int j = 0; j < KMAX; j++) x[j] = g_f[j];
    int bad_med = 0, bad_trim = 0, bad_cc = 0, cases = 0;
    for (int k = 1; k <= KMAX; k++)
        for (int wkind = 0; wkind < 3; wkind++)
            for (int ti = 0; ti < 3; ti++) {
                double w[KMAX], trim = ti == 0 ? 0.0 : ti == 1 ? 0.1 : 0.25;
                make_fast_case(&seed, k, wkind, ti == 0 ? 0.0 : ti == 1 ? 0.5 : 0.95, w);
                float got[NF], want[NF];
                robust_median(got, x, w, k, NF);
                ref_median(want, x, w, k, NF);
                bad_med += memcmp(got, want, sizeof got) != 0;
                long tg[KMAX] = {0}, tw[KMAX] = {0};
                robust_trimmed_mean(got, x, w, k, NF, trim, tg);
                ref_trimmed_mean(want, x, w, k, NF, trim, tw);
                bad_trim += memcmp(got, want, sizeof got) != 0 || memcmp(tg, tw, sizeof tg) != 0;
                if (k % 3 == 0 || k < 8) {
                    double fg[KMAX], fw[KMAX];
                    double tau_g = robust_centered_clip(got, x, w, k, NF, 1.0, 4, fg);
                    double tau_w = ref_centered_clip(want, x, w, k, NF, 1.0, 4, fw);
                    bad_cc += tau_g != tau_w || memcmp(got, want, sizeof got) != 0 ||
                              memcmp(fg, fw, (size_t)k * sizeof *fg) != 0;
                }
                cases++;
            }
    if (bad_med || bad_trim || bad_cc)
        fprintf(stderr, "fast kernels: %d median, %d trimmed-mean, %d centered-clip of %d cases differ\n",
                bad_med, bad_trim, bad_cc, cases);
    CU_ASSERT_EQUAL(bad_med, 0);
    CU_ASSERT_EQUAL(bad_trim, 0);
    CU_ASSERT_EQUAL(bad_cc, 0);
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

// robust.h: the median is the mean of two neighbours when the cumulative weight falls
// exactly between them, "exactly" within 1e-12 W. Weights 0.7 + 1000.1 = 1000.8 = W / 2 in
// decimal; in binary the sum of the first two exceeds W / 2 by 1.1e-13 (a tolerance of
// 1e-12 / W instead, 5e-16, would miss the tie and give 2). Both code paths: one coordinate
// (wmedian) and many (the per-coordinate selection).
static void test_median_tie_tolerance(void) {
    const double w[3] = {0.7, 1000.1, 1000.8};
    enum { M = 40 };
    float a[M], b[M], c[M], out[M];
    for (int i = 0; i < M; i++) a[i] = 1.0f, b[i] = 2.0f, c[i] = 3.0f;
    const float *x[3] = {a, b, c};
    robust_median(out, x, w, 3, 1);
    CU_ASSERT_EQUAL(out[0], 2.5f);
    robust_median(out, x, w, 3, M);
    for (int i = 0; i < M; i++) CU_ASSERT_EQUAL(out[i], 2.5f);
    const float *y[3] = {c, a, b};  // the same values in another contribution order
    const double wy[3] = {1000.8, 0.7, 1000.1};
    robust_median(out, y, wy, 3, M);
    for (int i = 0; i < M; i++) CU_ASSERT_EQUAL(out[i], 2.5f);
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
        {"CenteredClip: two uploads of unequal weight both count", test_cc_two_unequal},
        {"trimmed mean: bounds and trim 0", test_trimmed_bounds},
        {"fast median, trimmed mean, CenteredClip = the O(k^2) code, bit for bit", test_fast_against_ref},
        {"clip", test_clip},
        {"median: a tie within 1e-12 W is a tie", test_median_tie_tolerance},
        {"names", test_names},
    };
    return tu_run_suite("robust", tests, sizeof tests / sizeof tests[0]);
}
