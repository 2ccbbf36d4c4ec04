// robust.c: robust aggregation kernels (see robust.h). Plain loops, double accumulators.
#include "bridge/robust.h"

#include <math.h>
#include <string.h>

static const char *const KIND_NAMES[] = {"mean", "centered-clip", "trimmed-mean"};

int robust_kind_by_name(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, KIND_NAMES[i])) return i;
    return -1;
}

const char *robust_kind_name(int kind) {
    return kind >= 0 && kind < 3 ? KIND_NAMES[kind] : "?";
}

double robust_norm(const float *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)v[i] * (double)v[i];
    return sqrt(s);
}

double robust_dist(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return sqrt(s);
}

double robust_clip(float *v, size_t n, double max_norm) {
    if (!(max_norm > 0)) return 1.0;
    double norm = robust_norm(v, n);
    if (!(norm > max_norm)) return 1.0;
    double f = max_norm / norm;
    for (size_t i = 0; i < n; i++) v[i] = (float)((double)v[i] * f);
    return f;
}

void robust_mean(float *out, const float *const *x, const double *w, int k, size_t n) {
    double W = 0;
    for (int j = 0; j < k; j++) W += w[j];
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < k; j++) s += w[j] * (double)x[j][i];
        out[i] = (float)(s / W);
    }
}

// Sorts idx[0..k) by val[idx[.]] ascending (insertion sort: k is small; stable, so equal
// values keep contribution order and the result does not depend on the sort).
static void sort_idx(int *idx, const double *val, int k) {
    for (int j = 0; j < k; j++) idx[j] = j;
    for (int a = 1; a < k; a++) {
        int t = idx[a], b = a - 1;
        while (b >= 0 && val[idx[b]] > val[t]) {
            idx[b + 1] = idx[b];
            b--;
        }
        idx[b + 1] = t;
    }
}

// The weighted median of val[0..k) (weights w, total W): the value where the cumulative
// weight passes W / 2; the mean of two neighbours when it falls between them (within 1e-12 W).
static double wmedian(const double *val, const double *w, int k, double W) {
    int idx[ROBUST_MAX_K];
    sort_idx(idx, val, k);
    double half = 0.5 * W, cum = 0, eps = 1e-12 * W;
    for (int a = 0; a < k; a++) {
        cum += w[idx[a]];
        if (cum > half + eps) return val[idx[a]];
        if (cum >= half - eps) return a + 1 < k ? 0.5 * (val[idx[a]] + val[idx[a + 1]]) : val[idx[a]];
    }
    return val[idx[k - 1]];
}

void robust_median(float *out, const float *const *x, const double *w, int k, size_t n) {
    double W = 0, val[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) val[j] = x[j][i];
        out[i] = (float)wmedian(val, w, k, W);
    }
}

void robust_trimmed_mean(float *out, const float *const *x, const double *w, int k, size_t n,
                         double trim, long *trimmed) {
    double W = 0, val[ROBUST_MAX_K];
    int idx[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    double lo = trim * W, hi = (1.0 - trim) * W;
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) val[j] = x[j][i];
        sort_idx(idx, val, k);
        double cum = 0, s = 0, kept_w = 0;
        for (int a = 0; a < k; a++) {
            int j = idx[a];
            double from = cum, to = cum + w[j];  // this value's span of the cumulative weight
            cum = to;
            double keep = (to < hi ? to : hi) - (from > lo ? from : lo);
            if (keep < 0) keep = 0;
            if (trimmed && keep < w[j] * (1 - 1e-12)) trimmed[j]++;
            s += keep * val[j];
            kept_w += keep;
        }
        out[i] = (float)(kept_w > 0 ? s / kept_w : wmedian(val, w, k, W));
    }
}

// c_j = min(1, tau / ||x_j - v||) for every contribution; returns 1 when all are 1.
static int clip_factors(double *c, const float *v, const float *const *x, int k, size_t n, double tau) {
    int all = 1;
    for (int j = 0; j < k; j++) {
        double d = robust_dist(x[j], v, n);
        c[j] = d > tau ? tau / d : 1.0;
        all &= c[j] == 1.0;
    }
    return all;
}

double robust_centered_clip(float *out, const float *const *x, const double *w, int k, size_t n,
                            double tau_ratio, int iters, double *factor) {
    double W = 0, dist[ROBUST_MAX_K], c[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    robust_median(out, x, w, k, n);
    for (int j = 0; j < k; j++) dist[j] = robust_dist(x[j], out, n);
    double tau = tau_ratio * wmedian(dist, w, k, W);
    int prev_all = 0;
    for (int it = 0; it < iters; it++) {
        int all = clip_factors(c, out, x, k, n, tau);
        if (all && prev_all) break;  // out is the weighted mean and everything lies within tau
        prev_all = all;
        for (size_t i = 0; i < n; i++) {
            double v = out[i], s = 0;
            for (int j = 0; j < k; j++) s += w[j] * c[j] * ((double)x[j][i] - v);
            out[i] = (float)(v + s / W);
        }
    }
    if (factor) {
        clip_factors(c, out, x, k, n, tau);
        memcpy(factor, c, (size_t)k * sizeof *c);
    }
    return tau;
}
