// swav_ref.c: see swav_ref.h; written from the definitions (SwAV's sinkhorn as published,
// log-softmax by its formula, the normalisation's Jacobian by the quotient rule).
#include "models/swav_ref.h"

#include <math.h>
#include <stddef.h>

void nn_l2norm_forward_ref(double *y, double *norm, const double *x, int N, int D) {
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int i = 0; i < D; i++) ss += x[n * D + i] * x[n * D + i];
        double nr = fmax(sqrt(ss), 1e-12);
        for (int i = 0; i < D; i++) y[n * D + i] = x[n * D + i] / nr;
        norm[n] = nr;
    }
}

// d(x_i / |x|)/dx_j = delta_ij / |x| - x_i x_j / |x|^3
void nn_l2norm_backward_ref(double *dx, const double *dy, const double *x, int N, int D) {
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * D, *g = dy + (size_t)n * D;
        double ss = 0.0;
        for (int i = 0; i < D; i++) ss += xr[i] * xr[i];
        const double nr = sqrt(ss);
        for (int j = 0; j < D; j++) {
            double s = 0.0;
            for (int i = 0; i < D; i++) s += g[i] * ((i == j) / nr - xr[i] * xr[j] / (nr * nr * nr));
            dx[(size_t)n * D + j] += s;
        }
    }
}

void swav_sinkhorn_ref(double *q, const double *scores, int B, int K, int iters, double eps) {
    // q holds Q^T: q[b*K + k] = Q[k][b]
    double total = 0.0;
    for (int i = 0; i < B * K; i++) total += q[i] = exp(scores[i] / eps);
    for (int i = 0; i < B * K; i++) q[i] /= total;
    for (int it = 0; it < iters; it++) {
        for (int k = 0; k < K; k++) {
            double r = 0.0;
            for (int b = 0; b < B; b++) r += q[b * K + k];
            for (int b = 0; b < B; b++) q[b * K + k] /= r * K;
        }
        for (int b = 0; b < B; b++) {
            double c = 0.0;
            for (int k = 0; k < K; k++) c += q[b * K + k];
            for (int k = 0; k < K; k++) q[b * K + k] /= c * B;
        }
    }
    for (int i = 0; i < B * K; i++) q[i] *= B;
}

// log softmax(x / temp)_k of row x (K)
static double log_softmax_at(const double *x, int K, double temp, int k) {
    double s = 0.0;
    for (int j = 0; j < K; j++) s += exp(x[j] / temp - x[k] / temp);
    return -log(s);
}

double swav_loss_forward_ref(const double *scores, const double *q, int V, int A, int B, int K,
                             double temp) {
    double loss = 0.0;
    for (int a = 0; a < A; a++)
        for (int v = 0; v < V; v++) {
            if (v == a) continue;
            for (int b = 0; b < B; b++)
                for (int k = 0; k < K; k++)
                    loss -= q[(a * B + b) * K + k] *
                            log_softmax_at(scores + (v * B + b) * K, K, temp, k);
        }
    return loss / ((double)A * (V - 1) * B);
}

void swav_loss_backward_ref(double *dscores, const double *scores, const double *q, int V, int A,
                            int B, int K, double temp, double scale) {
    for (int v = 0; v < V; v++)
        for (int b = 0; b < B; b++) {
            const double *x = scores + (v * B + b) * K;
            for (int k = 0; k < K; k++) {
                const double p = exp(log_softmax_at(x, K, temp, k));
                double g = 0.0;
                for (int a = 0; a < A; a++) {
                    if (a == v) continue;
                    double sq = 0.0;
                    for (int j = 0; j < K; j++) sq += q[(a * B + b) * K + j];
                    g += p * sq - q[(a * B + b) * K + k];
                }
                dscores[(v * B + b) * K + k] += scale * g / ((double)A * (V - 1) * B * temp);
            }
        }
}
