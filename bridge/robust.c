// robust.c: robust aggregation kernels (see robust.h). Plain loops, double accumulators; the
// median selects (weighted quickselect) and CenteredClip iterates in one pass per iteration,
// with results bit for bit those of the plain O(k^2) code (tests/unit/test_robust.c keeps it).
#include "bridge/robust.h"

#include <math.h>
#include <stdint.h>
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

// Sorts idx[0..k) by val[idx[.]] ascending (insertion sort, O(k^2); stable, so equal
// values keep contribution order and the result does not depend on the sort). Used once per
// call, on the k distances of CenteredClip; the per-coordinate kernels sort keys (below).
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

// ---- per-coordinate sorting: unique integer keys ----
// A coordinate's k values are sorted as 64-bit keys (the value's order key << 32 | its
// contribution j). The keys are distinct and ordered by (value, j): exactly the order of a
// stable sort by value, so any sort or selection gives the order the kernels always used
// (equal values in contribution order), and the sums over it (cumulative weights, the
// trimmed mean) are the same bit for bit. The sort is an insertion sort on the keys (one
// integer compare per step, no indirection): a branch-free merge sort above 16 keys was
// measured slower on this data at k = 17 and 65 (its merge is one long dependency chain), so
// the trimmed mean, which needs every sorted prefix sum to stay bit for bit, keeps O(k^2)
// here; the median selects instead (wmedian_select).
// Values are finite (the bridge drops non-finite uploads, bridge/proto.c).

// Order key of a float: unsigned integers in the order of the values (IEEE 754 sign-magnitude
// to two's-complement-like order), -0 and +0 the same key as they compare equal.
static inline uint32_t float_key(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    if (!(b << 1)) return 0x80000000u;  // +-0
    return b & 0x80000000u ? ~b : b | 0x80000000u;
}

// Sorts a[0..k) ascending (insertion sort).
static void sort_keys(uint64_t *a, int k) {
    for (int i = 1; i < k; i++) {
        uint64_t t = a[i];
        int b = i - 1;
        while (b >= 0 && a[b] > t) {
            a[b + 1] = a[b];
            b--;
        }
        a[b + 1] = t;
    }
}

// Coordinate i of the k contributions as sorted keys (see above) into key (k), and the values
// as doubles into val (k, by contribution). Returns key.
static uint64_t *sorted_coordinate(uint64_t *key, double *val, const float *const *x, int k, size_t i) {
    for (int j = 0; j < k; j++) {
        float f = x[j][i];
        val[j] = f;
        key[j] = (uint64_t)float_key(f) << 32 | (uint32_t)j;
    }
    sort_keys(key, k);
    return key;
}

#define KEY_J(key) ((int)((key) & 0xffffffffu))

// The weighted median of one coordinate, as wmedian() (same scan, same sums, same result):
// sorted keys s (k), values val (by contribution), weights w, total W.
static double wmedian_sorted(const uint64_t *s, const double *val, const double *w, int k, double W) {
    double half = 0.5 * W, cum = 0, eps = 1e-12 * W;
    for (int a = 0; a < k; a++) {
        int j = KEY_J(s[a]);
        cum += w[j];
        if (cum > half + eps) return val[j];
        if (cum >= half - eps) return a + 1 < k ? 0.5 * (val[j] + val[KEY_J(s[a + 1])]) : val[j];
    }
    return val[KEY_J(s[k - 1])];
}

// Weighted quickselect for the median of one coordinate (expected O(k)): keys[0..k) (as
// sorted_coordinate() makes them, unsorted; overwritten) and tmp (k) as scratch. It finds the
// first sorted position a* whose cumulative weight reaches W / 2 - eps, as wmedian() does,
// by partitioning around a pivot (median of three) and summing the weight below it, and
// returns the same result (val at a*, or the mean with the next value). Its sums add the same
// weights in another order, so each differs from wmedian()'s by at most 2 k u W (u = 2^-53,
// positive terms, any order); every decision is taken only when the sum lies farther than that
// from the threshold, so it is wmedian()'s decision. Returns 0 (the caller sorts instead)
// when one does not, or when the selection degenerates (more than 2 log2 k + 8 rounds: at
// worst the cost of a sort, whatever values a hostile contribution chooses).
// Reference: Hoare's FIND (quickselect, CACM 1961); its weighted form as in Cormen et al.,
// Introduction to Algorithms, problem 9-2.
static int wmedian_select(double *res, uint64_t *keys, uint64_t *tmp, const double *val, const double *w,
                          int k, double W) {
    double half = 0.5 * W, eps = 1e-12 * W, T = half - eps, hi_t = half + eps;
    double margin = 2.0 * k * 0x1p-53 * W * 1.001;
    double base = 0;  // the weight of every key below the range
    uint64_t *cur = keys, *oth = tmp, upper = 0;  // upper: the smallest key above the range
    int lo = 0, m = k, has_upper = 0, rounds = 8;
    for (int t = k; t > 1; t >>= 1) rounds += 2;
    while (m > 0 && rounds-- > 0) {
        const uint64_t *r = cur + lo;
        uint64_t *o = oth + lo;
        uint64_t a = r[0], b = r[m / 2], c = r[m - 1];
        uint64_t p = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
        double w0 = 0, w1 = 0;  // two chains, for speed
        int nl = 0, ng = 0, t = 0;
        for (; t + 2 <= m; t += 2) {
            uint64_t u = r[t], v = r[t + 1];
            int lu = u < p, lv = v < p;
            o[nl] = u;
            o[m - 1 - ng] = u;
            nl += lu;
            ng += u > p;
            o[nl] = v;
            o[m - 1 - ng] = v;
            nl += lv;
            ng += v > p;
            w0 += (double)lu * w[KEY_J(u)];  // loads and adds 0 or w: no branch on the data
            w1 += (double)lv * w[KEY_J(v)];
        }
        if (t < m) {
            uint64_t u = r[t];
            int lu = u < p;
            o[nl] = u;
            o[m - 1 - ng] = u;
            nl += lu;
            ng += u > p;
            w0 += (double)lu * w[KEY_J(u)];
        }
        double wl = base + (w0 + w1);  // the weight below the pivot
        if (fabs(wl - T) <= margin) return 0;
        uint64_t *sw = cur;
        cur = oth;
        oth = sw;
        if (wl >= T) {  // a* below the pivot
            upper = p, has_upper = 1;
            m = nl;
            continue;
        }
        double cum = wl + w[KEY_J(p)];
        if (fabs(cum - T) <= margin) return 0;
        if (cum < T) {  // a* above the pivot
            base = cum;
            lo += m - ng;
            m = ng;
            continue;
        }
        // a* is the pivot: its cumulative weight is cum
        if (fabs(cum - hi_t) <= margin) return 0;
        int j = KEY_J(p);
        if (cum > hi_t) {
            *res = val[j];
            return 1;
        }
        uint64_t next = upper;  // the key after p: the least above it in the range, else upper
        int has_next = has_upper;
        const uint64_t *g = cur + lo + m - ng;
        for (int q = 0; q < ng; q++)
            if (!has_next || g[q] < next) next = g[q], has_next = 1;
        *res = has_next ? 0.5 * (val[j] + val[KEY_J(next)]) : val[j];
        return 1;
    }
    return 0;
}

// Per coordinate: the weighted quickselect above (expected O(k)), or where it declines, the
// sort and the cumulative-weight scan of wmedian(). Bit for bit the result of wmedian().
void robust_median(float *out, const float *const *x, const double *w, int k, size_t n) {
    double W = 0, val[ROBUST_MAX_K];
    uint64_t key[ROBUST_MAX_K], tmp[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) {
            float f = x[j][i];
            val[j] = f;
            key[j] = (uint64_t)float_key(f) << 32 | (uint32_t)j;
        }
        double m;
        if (!wmedian_select(&m, key, tmp, val, w, k, W)) {
            const uint64_t *s = sorted_coordinate(key, val, x, k, i);
            m = wmedian_sorted(s, val, w, k, W);
        }
        out[i] = (float)m;
    }
}

// Per coordinate: the sort as above, then one scan in sorted order keeping each
// value's part of [trim W, (1 - trim) W]: the same sums in the same order as always, so the
// result and the counters are those of the insertion-sort version bit for bit. The scan
// stops once the cumulative weight passes (1 - trim) W (what follows keeps nothing; its
// trimmed counters are still counted).
void robust_trimmed_mean(float *out, const float *const *x, const double *w, int k, size_t n,
                         double trim, long *trimmed) {
    double W = 0, val[ROBUST_MAX_K];
    uint64_t key[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    double lo = trim * W, hi = (1.0 - trim) * W;
    for (size_t i = 0; i < n; i++) {
        const uint64_t *srt = sorted_coordinate(key, val, x, k, i);
        double cum = 0, s = 0, kept_w = 0;
        int a = 0;
        for (; a < k; a++) {
            int j = KEY_J(srt[a]);
            double from = cum, to = cum + w[j];  // this value's span of the cumulative weight
            cum = to;
            double keep = (to < hi ? to : hi) - (from > lo ? from : lo);
            if (keep < 0) keep = 0;
            if (trimmed && keep < w[j] * (1 - 1e-12)) trimmed[j]++;
            s += keep * val[j];
            kept_w += keep;
            if (from >= hi) break;  // this one and all after keep nothing
        }
        if (trimmed)
            for (a++; a < k; a++) trimmed[KEY_J(srt[a])]++;
        out[i] = (float)(kept_w > 0 ? s / kept_w : wmedian_sorted(srt, val, w, k, W));
    }
}

// ---- CenteredClip ----
// Coordinates per block of the fused iteration below: the block's k slices (k x 256 floats)
// stay in L2 between the update and the distance pass.
#define CC_BLOCK 256

// c_j = min(1, tau / dist_j) for every contribution; returns 1 when all are 1.
static int clip_factors(double *c, const double *dist, int k, double tau) {
    int all = 1;
    for (int j = 0; j < k; j++) {
        c[j] = dist[j] > tau ? tau / dist[j] : 1.0;
        all &= c[j] == 1.0;
    }
    return all;
}

// dist[j] = ||x_j - v|| for all j in one pass over the k vectors, blocked like cc_step (each
// sum in coordinate order, as robust_dist: the same value bit for bit).
static void cc_dists(double *dist, const float *v, const float *const *x, int k, size_t n) {
    double acc[ROBUST_MAX_K] = {0};
    for (size_t i0 = 0; i0 < n; i0 += CC_BLOCK) {
        size_t nb = n - i0 < CC_BLOCK ? n - i0 : CC_BLOCK;
        for (int j = 0; j < k; j++) {
            const float *xj = x[j] + i0;
            double a = acc[j];
            for (size_t t = 0; t < nb; t++) {
                double d = (double)xj[t] - (double)v[i0 + t];
                a += d * d;
            }
            acc[j] = a;
        }
    }
    for (int j = 0; j < k; j++) dist[j] = sqrt(acc[j]);
}

// One CenteredClip iteration and the next one's distances in a single pass over the k
// vectors: v_i += sum_j wc_j (x_j,i - v_i) / W per coordinate (wc_j = w_j c_j; the sum over
// j in contribution order, as always: the coordinates of a block are updated side by side,
// which vectorises without reordering any sum), then dist[j] = ||x_j - v_new|| (each sum in
// coordinate order, as robust_dist; four contributions' sums interleaved, each its own
// chain). Results bit for bit those of an update pass followed by k robust_dist passes.
static void cc_step(float *v, double *dist, const float *const *x, const double *wc, int k, size_t n,
                    double W) {
    double acc[ROBUST_MAX_K] = {0}, s[CC_BLOCK], vd[CC_BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += CC_BLOCK) {
        size_t nb = n - i0 < CC_BLOCK ? n - i0 : CC_BLOCK;
        float *vb = v + i0;
        for (size_t t = 0; t < nb; t++) s[t] = 0, vd[t] = vb[t];
        for (int j = 0; j < k; j++) {
            const float *xj = x[j] + i0;
            double a = wc[j];
            for (size_t t = 0; t < nb; t++) s[t] += a * ((double)xj[t] - vd[t]);
        }
        for (size_t t = 0; t < nb; t++) {
            vb[t] = (float)(vd[t] + s[t] / W);
            vd[t] = vb[t];
        }
        int j = 0;
        for (; j + 4 <= k; j += 4) {
            const float *x0 = x[j] + i0, *x1 = x[j + 1] + i0, *x2 = x[j + 2] + i0, *x3 = x[j + 3] + i0;
            double a0 = acc[j], a1 = acc[j + 1], a2 = acc[j + 2], a3 = acc[j + 3];
            for (size_t t = 0; t < nb; t++) {
                double d0 = (double)x0[t] - vd[t], d1 = (double)x1[t] - vd[t];
                double d2 = (double)x2[t] - vd[t], d3 = (double)x3[t] - vd[t];
                a0 += d0 * d0;
                a1 += d1 * d1;
                a2 += d2 * d2;
                a3 += d3 * d3;
            }
            acc[j] = a0, acc[j + 1] = a1, acc[j + 2] = a2, acc[j + 3] = a3;
        }
        for (; j < k; j++) {
            const float *xj = x[j] + i0;
            double a = acc[j];
            for (size_t t = 0; t < nb; t++) {
                double d = (double)xj[t] - vd[t];
                a += d * d;
            }
            acc[j] = a;
        }
    }
    for (int j = 0; j < k; j++) dist[j] = sqrt(acc[j]);
}

// CenteredClip (robust.h). Passes over the k vectors: the median, one for the distances to
// it (they give tau and the first factors), then one per iteration (cc_step: the update and
// the distances the next factors need); the final factors come from the last pass's distances.
double robust_centered_clip(float *out, const float *const *x, const double *w, int k, size_t n,
                            double tau_ratio, int iters, double *factor) {
    double W = 0, dist[ROBUST_MAX_K] = {0}, c[ROBUST_MAX_K], wc[ROBUST_MAX_K];
    for (int j = 0; j < k; j++) W += w[j];
    robust_median(out, x, w, k, n);
    cc_dists(dist, out, x, k, n);
    double tau = tau_ratio * wmedian(dist, w, k, W);
    if (!(tau > 0)) {
        // a contribution holding half the weight or more is the median (two uploads of
        // unequal weight, say): its distance 0 would make tau 0 and weigh every other one
        // down to nothing, however close. The scale comes from the others: the weighted
        // median of the nonzero distances (none: every contribution is the median)
        double dz[ROBUST_MAX_K], wz[ROBUST_MAX_K], Wz = 0;
        int kz = 0;
        for (int j = 0; j < k; j++)
            if (dist[j] > 0) dz[kz] = dist[j], wz[kz] = w[j], Wz += w[j], kz++;
        if (kz > 0) tau = tau_ratio * wmedian(dz, wz, kz, Wz);
    }
    int prev_all = 0;
    for (int it = 0; it < iters; it++) {
        int all = clip_factors(c, dist, k, tau);
        if (all && prev_all) break;  // out is the weighted mean and everything lies within tau
        prev_all = all;
        for (int j = 0; j < k; j++) wc[j] = w[j] * c[j];
        cc_step(out, dist, x, wc, k, n, W);
    }
    if (factor) {
        clip_factors(c, dist, k, tau);
        memcpy(factor, c, (size_t)k * sizeof *c);
    }
    return tau;
}
