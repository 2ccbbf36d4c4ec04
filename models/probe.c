// probe.c: linear probe (see probe.h).
#include "models/probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/rng.h"

ProbeConfig probe_default(void) {
    return (ProbeConfig){.epochs = 30, .batch = 256, .lr = 0.5f, .momentum = 0.9f,
                         .weight_decay = 1e-4f, .seed = 5};
}

// logits (classes) of one standardised row z (d)
static void row_logits(const Probe *p, const float *z, float *out) {
    for (int k = 0; k < p->classes; k++) {
        const float *w = p->W + (size_t)k * p->d;
        double s = p->b[k];
        for (int j = 0; j < p->d; j++) s += (double)w[j] * z[j];
        out[k] = (float)s;
    }
}

static void standardise(const Probe *p, const float *x, float *z) {
    for (int j = 0; j < p->d; j++) z[j] = (x[j] - p->mean[j]) * p->inv_std[j];
}

double probe_train(Probe *p, const float *x, const uint8_t *y, size_t n, int d, int classes,
                   const ProbeConfig *c) {
    memset(p, 0, sizeof *p);
    p->d = d;
    p->classes = classes;
    p->mean = cx_calloc((size_t)d, sizeof(float));
    p->inv_std = cx_calloc((size_t)d, sizeof(float));
    p->W = cx_calloc((size_t)classes * d, sizeof(float));
    p->b = cx_calloc((size_t)classes, sizeof(float));
    for (int j = 0; j < d; j++) {
        double s = 0.0, ss = 0.0;
        for (size_t i = 0; i < n; i++) s += x[i * d + j];
        const double m = s / (double)n;
        for (size_t i = 0; i < n; i++) ss += (x[i * d + j] - m) * (x[i * d + j] - m);
        const double sd = sqrt(ss / (double)n);
        p->mean[j] = (float)m;
        p->inv_std[j] = sd > 1e-8 ? (float)(1.0 / sd) : 0.0f;
    }
    const size_t nw = (size_t)classes * d;
    float *gW = cx_calloc(nw, sizeof(float)), *gb = cx_calloc((size_t)classes, sizeof(float));
    float *vW = cx_calloc(nw, sizeof(float)), *vb = cx_calloc((size_t)classes, sizeof(float));
    float *z = cx_calloc((size_t)d, sizeof(float)), *lg = cx_calloc((size_t)classes, sizeof(float));
    size_t *order = cx_calloc(n, sizeof(size_t));
    const long steps_per_epoch = (long)((n + (size_t)c->batch - 1) / (size_t)c->batch);
    const long total = steps_per_epoch * c->epochs;
    long step = 0;
    double epoch_loss = 0.0;
    for (int e = 0; e < c->epochs; e++) {
        const uint64_t es = cx_rng_derive(c->seed, (uint64_t)e);
        for (size_t i = 0; i < n; i++) order[i] = i;
        for (size_t i = n - 1; i > 0; i--) {
            const size_t j = (size_t)(cx_rng_u64(es, i) % (i + 1));
            const size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        epoch_loss = 0.0;
        for (size_t lo = 0; lo < n; lo += (size_t)c->batch, step++) {
            const size_t hi = lo + (size_t)c->batch < n ? lo + (size_t)c->batch : n;
            memset(gW, 0, nw * sizeof(float));
            memset(gb, 0, (size_t)classes * sizeof(float));
            for (size_t r = lo; r < hi; r++) {
                const size_t i = order[r];
                standardise(p, x + i * d, z);
                row_logits(p, z, lg);
                float mx = lg[0];
                for (int k = 1; k < classes; k++) mx = lg[k] > mx ? lg[k] : mx;
                double s = 0.0;
                for (int k = 0; k < classes; k++) s += exp((double)lg[k] - mx);
                epoch_loss += (mx + log(s)) - lg[y[i]];
                for (int k = 0; k < classes; k++) {
                    const float g = (float)(exp((double)lg[k] - mx) / s) - (k == y[i] ? 1.0f : 0.0f);
                    float *gw = gW + (size_t)k * d;
                    for (int j = 0; j < d; j++) gw[j] += g * z[j];
                    gb[k] += g;
                }
            }
            const float inv = 1.0f / (float)(hi - lo);
            const float lr = (float)(0.5 * c->lr * (1.0 + cos(M_PI * (double)step / (double)total)));
            for (size_t k = 0; k < nw; k++) {
                vW[k] = c->momentum * vW[k] + gW[k] * inv + c->weight_decay * p->W[k];
                p->W[k] -= lr * vW[k];
            }
            for (int k = 0; k < classes; k++) {
                vb[k] = c->momentum * vb[k] + gb[k] * inv;
                p->b[k] -= lr * vb[k];
            }
        }
    }
    free(gW);
    free(gb);
    free(vW);
    free(vb);
    free(z);
    free(lg);
    free(order);
    return epoch_loss / (double)n;
}

double probe_accuracy(const Probe *p, const float *x, const uint8_t *y, size_t n) {
    float *z = cx_calloc((size_t)p->d, sizeof(float)), *lg = cx_calloc((size_t)p->classes, sizeof(float));
    size_t right = 0;
    for (size_t i = 0; i < n; i++) {
        standardise(p, x + i * p->d, z);
        row_logits(p, z, lg);
        int best = 0;
        for (int k = 1; k < p->classes; k++) best = lg[k] > lg[best] ? k : best;
        right += best == y[i];
    }
    free(z);
    free(lg);
    return n ? (double)right / (double)n : 0.0;
}

void probe_free(Probe *p) {
    if (!p) return;
    free(p->mean);
    free(p->inv_std);
    free(p->W);
    free(p->b);
    memset(p, 0, sizeof *p);
}
