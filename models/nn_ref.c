// nn_ref.c: naive double-precision reference ops (see nn_ref.h). Clarity over speed.
#include "nn_ref.h"

#include <math.h>

#include "rng.h"

void nn_embedding_forward_ref(double *out, const int32_t *ids, const double *wte, int N,
                              int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) out[n * C + c] = wte[(size_t)ids[n] * C + c];
}

void nn_embedding_backward_ref(double *dwte, const double *dout, const int32_t *ids, int N,
                               int C) {
    if (!dwte) return;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) dwte[(size_t)ids[n] * C + c] += dout[n * C + c];
}

void nn_linear_forward_ref(double *out, const double *inp, const double *weight,
                           const double *bias, int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) s += inp[n * C + c] * weight[o * C + c];
            out[n * OC + o] = s;
        }
}

void nn_linear_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                            const double *inp, const double *weight, int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double d = dout[n * OC + o];
            for (int c = 0; c < C; c++) {
                if (dinp) dinp[n * C + c] += d * weight[o * C + c];
                if (dweight) dweight[o * C + c] += d * inp[n * C + c];
            }
            if (dbias) dbias[o] += d;
        }
}

void nn_layernorm_forward_ref(double *out, double *mean, double *rstd, const double *inp,
                              const double *weight, const double *bias, int N, int C,
                              double eps) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + n * C;
        double m = 0.0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        double var = 0.0;
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        var /= C;
        double rs = 1.0 / sqrt(var + eps);
        for (int c = 0; c < C; c++) out[n * C + c] = (x[c] - m) * rs * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = rs;
    }
}

void nn_layernorm_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                               const double *inp, const double *mean, const double *rstd,
                               const double *weight, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + n * C;
        const double *dy = dout + n * C;
        // xhat = (x - mean) * rstd ; dxhat = dy * w
        // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
        double s1 = 0.0, s2 = 0.0;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - mean[n]) * rstd[n];
            s1 += dy[c] * weight[c];
            s2 += dy[c] * weight[c] * xhat;
        }
        s1 /= C;
        s2 /= C;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - mean[n]) * rstd[n];
            if (dinp) dinp[n * C + c] += rstd[n] * (dy[c] * weight[c] - s1 - xhat * s2);
            if (dweight) dweight[c] += dy[c] * xhat;
            if (dbias) dbias[c] += dy[c];
        }
    }
}

#define REF_GELU_K 0.79788456080286535588  // sqrt(2/pi)
#define REF_GELU_A 0.044715

void nn_gelu_forward_ref(double *out, const double *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = 0.5 * x * (1.0 + tanh(REF_GELU_K * (x + REF_GELU_A * x * x * x)));
    }
}

void nn_gelu_backward_ref(double *dinp, const double *dout, const double *inp, size_t n) {
    if (!dinp) return;
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double t = tanh(REF_GELU_K * (x + REF_GELU_A * x * x * x));
        double du = REF_GELU_K * (1.0 + 3.0 * REF_GELU_A * x * x);
        dinp[i] += dout[i] * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
    }
}

// the multiplier dropout applies to element `counter`: 0 or 1/(1-p)
static double ref_dropout_mult(float p, uint64_t seed, uint64_t counter) {
    if (p == 0.0f) return 1.0;
    return cx_rng_uniform(seed, counter) < p ? 0.0 : 1.0 / (1.0 - (double)p);
}

void nn_dropout_forward_ref(double *out, const double *inp, size_t n, float p, uint64_t seed,
                            uint64_t offset) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * ref_dropout_mult(p, seed, offset + i);
}

void nn_dropout_backward_ref(double *dinp, const double *dout, size_t n, float p,
                             uint64_t seed, uint64_t offset) {
    if (!dinp) return;
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * ref_dropout_mult(p, seed, offset + i);
}

// index of element (b,t,h*D+d) in a (B,T,C) array
#define BTC(b, t, c) (((size_t)(b) * T + (t)) * C + (c))
// index of element (b,h,t,j) in a (B,NH,T,T) array
#define BHTT(b, h, t, j) ((((size_t)(b) * NH + (h)) * T + (t)) * T + (j))

void nn_attention_forward_ref(double *out, double *att, const double *q, const double *k,
                              const double *v, const int32_t *mask, int B, int T, int C,
                              int NH, float p, uint64_t seed, uint64_t offset,
                              double *scratch) {
    const int D = C / NH;
    const double scale = 1.0 / sqrt((double)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double *a = att + BHTT(b, h, t, 0);
                double mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    double s = 0.0;
                    for (int d = 0; d < D; d++)
                        s += q[BTC(b, t, h * D + d)] * k[BTC(b, j, h * D + d)];
                    a[j] = s * scale;
                    if ((!mask || mask[b * T + j]) && a[j] > mx) mx = a[j];
                }
                double sum = 0.0;
                for (int j = 0; j < T; j++) {
                    a[j] = (!mask || mask[b * T + j]) ? exp(a[j] - mx) : 0.0;
                    sum += a[j];
                }
                for (int j = 0; j < T; j++) a[j] = sum > 0.0 ? a[j] / sum : 0.0;
                // probabilities after dropout, then out = pd @ v
                double *pd = scratch + BHTT(b, h, t, 0);
                for (int j = 0; j < T; j++)
                    pd[j] = a[j] * ref_dropout_mult(p, seed, offset + BHTT(b, h, t, j));
                for (int d = 0; d < D; d++) {
                    double s = 0.0;
                    for (int j = 0; j < T; j++) s += pd[j] * v[BTC(b, j, h * D + d)];
                    out[BTC(b, t, h * D + d)] = s;
                }
            }
}

void nn_attention_backward_ref(double *dq, double *dk, double *dv, const double *dout,
                               const double *q, const double *k, const double *v,
                               const double *att, const int32_t *mask, int B, int T, int C,
                               int NH, float p, uint64_t seed, uint64_t offset,
                               double *scratch) {
    (void)mask;  // padding keys have probability 0 in att, hence zero gradient
    const int D = C / NH;
    const double scale = 1.0 / sqrt((double)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *a = att + BHTT(b, h, t, 0);
                double *ds = scratch + BHTT(b, h, t, 0);
                // out[t] = sum_j a[j] m[j] v[j]  =>  dv[j] += a[j] m[j] dout[t],
                // dL/da[j] = m[j] (dout[t] . v[j])
                for (int j = 0; j < T; j++) {
                    double m = ref_dropout_mult(p, seed, offset + BHTT(b, h, t, j));
                    double da = 0.0;
                    for (int d = 0; d < D; d++) {
                        da += dout[BTC(b, t, h * D + d)] * v[BTC(b, j, h * D + d)];
                        if (dv)
                            dv[BTC(b, j, h * D + d)] += a[j] * m * dout[BTC(b, t, h * D + d)];
                    }
                    ds[j] = da * m;
                }
                // softmax: dL/dscore[j] = a[j] (da[j] - sum_i a[i] da[i])
                double dot = 0.0;
                for (int j = 0; j < T; j++) dot += a[j] * ds[j];
                for (int j = 0; j < T; j++) ds[j] = a[j] * (ds[j] - dot);
                // score[j] = scale * q[t] . k[j]
                for (int j = 0; j < T; j++)
                    for (int d = 0; d < D; d++) {
                        size_t it = BTC(b, t, h * D + d), ij = BTC(b, j, h * D + d);
                        if (dq) dq[it] += scale * ds[j] * k[ij];
                        if (dk) dk[ij] += scale * ds[j] * q[it];
                    }
            }
}

double nn_softmax_xent_forward_ref(double *probs, const double *logits, const int32_t *targets,
                                   int N, int V) {
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        const double *x = logits + (size_t)n * V;
        double *pr = probs + (size_t)n * V;
        double mx = -INFINITY;
        for (int i = 0; i < V; i++)
            if (x[i] > mx) mx = x[i];
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += exp(x[i] - mx);
        double lse = mx + log(sum);
        if (targets[n] >= 0) loss += lse - x[targets[n]];
        for (int i = 0; i < V; i++) pr[i] = exp(x[i] - lse);
    }
    return loss;
}

void nn_softmax_xent_backward_ref(double *dlogits, const double *probs, const int32_t *targets,
                                  int N, int V, double scale) {
    if (!dlogits) return;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        for (int i = 0; i < V; i++)
            dlogits[(size_t)n * V + i] +=
                scale * (probs[(size_t)n * V + i] - (i == targets[n] ? 1.0 : 0.0));
    }
}

void nn_add_forward_ref(double *out, const double *a, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
