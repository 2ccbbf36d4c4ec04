// swav.c: SwAV's head and objective (see swav.h).
#include "models/swav.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/resnet.h"


#define L2_EPS 1e-12f

void nn_l2norm_forward(float *y, float *norm, const float *x, int N, int D) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        double ss = 0.0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float nr = (float)sqrt(ss);
        nr = nr > L2_EPS ? nr : L2_EPS;
        float *yr = y + (size_t)n * D;
        for (int i = 0; i < D; i++) yr[i] = xr[i] / nr;
        norm[n] = nr;
    }
}

void nn_l2norm_backward(float *dx, const float *dy, const float *y, const float *norm, int N,
                        int D) {
    for (int n = 0; n < N; n++) {
        const float *yr = y + (size_t)n * D, *g = dy + (size_t)n * D;
        float *d = dx + (size_t)n * D;
        const float nr = norm[n];
        if (!(nr > L2_EPS)) {  // the clamp's region: y = x / eps, a plain scaling
            for (int i = 0; i < D; i++) d[i] += g[i] / nr;
            continue;
        }
        double dot = 0.0;
        for (int i = 0; i < D; i++) dot += (double)yr[i] * g[i];
        const float fd = (float)dot;
        for (int i = 0; i < D; i++) d[i] += (g[i] - yr[i] * fd) / nr;
    }
}

int swav_sinkhorn(float *q, const float *scores, int B, int K, int iters, float eps,
                  SwavReduce reduce, void *ctx, double *scratch) {
    double *Q = scratch, *rows = scratch + (size_t)B * K, *one = rows + K;
    const size_t n = (size_t)B * K;
    // the largest score of the whole batch (cancels in the first normalisation)
    double mx = -INFINITY;
    for (size_t i = 0; i < n; i++) mx = scores[i] > mx ? scores[i] : mx;
    if (reduce) reduce(ctx, &mx, 1, SWAV_MAX);
    if (!isfinite(mx)) return -1;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        Q[i] = exp(((double)scores[i] - mx) / eps);
        total += Q[i];
    }
    one[0] = total;
    if (reduce) reduce(ctx, one, 1, SWAV_SUM);
    total = one[0];
    if (!(total > 0.0) || !isfinite(total)) return -1;
    for (size_t i = 0; i < n; i++) Q[i] /= total;
    for (int it = 0; it < iters; it++) {
        // each prototype (a column of Q here, a row of SwAV's Q) to the same total over the
        // batch (SwAV's 1/K)
        for (int k = 0; k < K; k++) rows[k] = 0.0;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) rows[k] += Q[(size_t)b * K + k];
        if (reduce) reduce(ctx, rows, K, SWAV_SUM);
        for (int k = 0; k < K; k++)
            if (!(rows[k] > 0.0)) return -1;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) Q[(size_t)b * K + k] /= rows[k];
        // each sample sums to 1 (SwAV's 1/Btot, then times Btot at the end: every step is
        // followed by a normalisation, so scale factors between them cancel)
        for (int b = 0; b < B; b++) {
            double s = 0.0;
            double *r = Q + (size_t)b * K;
            for (int k = 0; k < K; k++) s += r[k];
            if (!(s > 0.0)) return -1;
            for (int k = 0; k < K; k++) r[k] /= s;
        }
    }
    for (size_t i = 0; i < n; i++) q[i] = (float)Q[i];
    return 0;
}

// row (K): probs = softmax(x / temp); returns log of the partition of x / temp, in double
static double softmax_row(float *probs, const float *x, int K, float temp) {
    double mx = -INFINITY;
    for (int k = 0; k < K; k++) mx = x[k] / temp > mx ? x[k] / temp : mx;
    double s = 0.0;
    for (int k = 0; k < K; k++) s += exp((double)(x[k] / temp) - mx);
    const double lse = mx + log(s);
    for (int k = 0; k < K; k++) probs[k] = (float)exp((double)(x[k] / temp) - lse);
    return lse;
}

double swav_loss_forward(float *probs, const float *scores, const float *q, int V, int A, int B,
                         int K, float temp) {
    double loss = 0.0;
    for (int v = 0; v < V; v++)
        for (int b = 0; b < B; b++) {
            const size_t row = ((size_t)v * B + b) * K;
            const double lse = softmax_row(probs + row, scores + row, K, temp);
            for (int a = 0; a < A; a++) {
                if (a == v) continue;
                const float *qa = q + ((size_t)a * B + b) * K;
                double t = 0.0;
                for (int k = 0; k < K; k++) t -= qa[k] * ((double)(scores[row + k] / temp) - lse);
                loss += t;
            }
        }
    return loss / ((double)A * (V - 1) * B);
}

void swav_loss_backward(float *dscores, const float *probs, const float *q, int V, int A, int B,
                        int K, float temp, float scale) {
    const float c = (float)(scale / ((double)A * (V - 1) * B * temp));
    for (int v = 0; v < V; v++)
        for (int b = 0; b < B; b++) {
            const size_t row = ((size_t)v * B + b) * K;
            for (int a = 0; a < A; a++) {
                if (a == v) continue;
                const float *qa = q + ((size_t)a * B + b) * K;
                double sq = 0.0;
                for (int k = 0; k < K; k++) sq += qa[k];
                const float fs = (float)sq;
                for (int k = 0; k < K; k++) dscores[row + k] += c * (probs[row + k] * fs - qa[k]);
            }
        }
}

// ---------------------------------------------------------------------------------------
// one step over prepared views

void swav_step_init(SwavStep *st, const SwavParams *p, int max_B, int K) {
    memset(st, 0, sizeof *st);
    st->p = *p;
    st->max_B = max_B;
    st->K = K;
    const size_t V = (size_t)p->n_global + p->n_small, n = V * max_B * K;
    st->scores = cx_calloc(n, sizeof(float));
    st->probs = cx_calloc(n, sizeof(float));
    st->dscores = cx_calloc(n, sizeof(float));
    st->q = cx_calloc((size_t)p->n_global * max_B * K, sizeof(float));
    st->sk = cx_calloc((size_t)max_B * K + K + 1, sizeof(double));
}

void swav_step_free(SwavStep *st) {
    free(st->scores);
    free(st->probs);
    free(st->dscores);
    free(st->q);
    free(st->sk);
    memset(st, 0, sizeof *st);
}

double swav_step_run(SwavStep *st, ResNet *g, const float *views_g, int hg, int wg, ResNet *s,
                     const float *views_s, int hs, int ws, int B, int train, int backward,
                     float grad_scale) {
    const int A = st->p.n_global, NS = st->p.n_small, V = A + NS, K = st->K;
    CHECK(B >= 1 && B <= st->max_B, "swav step: %d images, sized for %d", B, st->max_B);
    CHECK(!backward || train != RESNET_EVAL, "swav step: a backward needs batch statistics");
    const size_t gk = (size_t)A * B * K;
    memcpy(st->scores, resnet_forward(g, views_g, A * B, hg, wg, train, NULL), gk * sizeof(float));
    if (NS > 0)
        memcpy(st->scores + gk, resnet_forward(s, views_s, NS * B, hs, ws, train, NULL),
               (size_t)NS * B * K * sizeof(float));
    for (int a = 0; a < A; a++)
        if (swav_sinkhorn(st->q + (size_t)a * B * K, st->scores + (size_t)a * B * K, B, K,
                          st->p.sinkhorn_iters, st->p.sinkhorn_eps, NULL, NULL, st->sk) != 0)
            return NAN;
    const double loss = swav_loss_forward(st->probs, st->scores, st->q, V, A, B, K, st->p.temperature);
    if (!backward) return loss;
    memset(st->dscores, 0, (size_t)V * B * K * sizeof(float));
    swav_loss_backward(st->dscores, st->probs, st->q, V, A, B, K, st->p.temperature, grad_scale);
    resnet_backward(g, st->dscores);
    if (NS > 0) resnet_backward(s, st->dscores + gk);
    return loss;
}
