// diloco.c: DiLoCo's outer step and the worker's Averager (see diloco.h).
#include "models/diloco.h"

#include <stdlib.h>
#include <string.h>

#include "models/codec.h"
#include "models/common.h"

void diloco_config_defaults(DilocoConfig *c) {
    *c = (DilocoConfig){.mode = AVG_SYNC, .inner_steps = 50, .outer_lr = 0.7f, .outer_momentum = 0.9f,
                        .nesterov = 1, .overlap = 1, .workers = 1, .down_codec = CODEC_INT8};
}

int diloco_config_check(const DilocoConfig *c, char *err) {
    if (c->mode != AVG_SYNC && c->mode != AVG_DILOCO) return cx_err(err, "averaging.mode must be sync or diloco");
    if (c->inner_steps < 1) return cx_err(err, "averaging.inner_steps must be >= 1");
    if (!(c->outer_lr > 0) || c->outer_lr > 10) return cx_err(err, "averaging.outer_lr must be in (0, 10]");
    if (!(c->outer_momentum >= 0 && c->outer_momentum < 1))
        return cx_err(err, "averaging.outer_momentum must be in [0, 1)");
    if (c->nesterov != 0 && c->nesterov != 1) return cx_err(err, "averaging.nesterov must be 0 or 1");
    if (c->overlap != 0 && c->overlap != 1) return cx_err(err, "averaging.overlap must be 0 or 1");
    if (c->workers < 1) return cx_err(err, "averaging.workers must be >= 1");
    if (c->workers > 1 && c->mode != AVG_DILOCO)
        return cx_err(err, "averaging.workers = %d needs averaging.mode = diloco", c->workers);
    if (!codec_find(c->down_codec)) return cx_err(err, "averaging.down_codec: unknown codec");
    return 0;
}

// ---- the math ----

void diloco_pseudo_grad(float *delta, const float *start, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) delta[i] = start[i] - x[i];
}

void diloco_accumulate(float *acc, const float *delta, size_t n, double weight) {
    const float w = (float)weight;
    for (size_t i = 0; i < n; i++) acc[i] += w * delta[i];
}

void diloco_finish_average(float *acc, size_t n, double total_weight) {
    const float s = (float)(1.0 / total_weight);
    for (size_t i = 0; i < n; i++) acc[i] *= s;
}

void diloco_outer_step(const DilocoConfig *c, float *theta, float *buf, const float *avg, size_t n) {
    const float lr = c->outer_lr, mu = c->outer_momentum;
    if (c->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float b = mu * buf[i] + avg[i];
            buf[i] = b;
            theta[i] -= lr * (avg[i] + mu * b);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float b = mu * buf[i] + avg[i];
            buf[i] = b;
            theta[i] -= lr * b;
        }
    }
}

// ---- the worker ----

void diloco_init(Diloco *d, const DilocoConfig *cfg, const float *params, size_t n, Averager inner) {
    memset(d, 0, sizeof *d);
    d->cfg = *cfg;
    d->n = n;
    d->theta = cx_calloc(n, sizeof(float));
    d->buf = cx_calloc(n, sizeof(float));
    d->start = cx_calloc(n, sizeof(float));
    d->delta = cx_calloc(n, sizeof(float));
    d->spare = cfg->overlap ? cx_calloc(n, sizeof(float)) : NULL;
    memcpy(d->theta, params, n * sizeof(float));
    memcpy(d->start, params, n * sizeof(float));
    d->inner = inner;
}

void diloco_free(Diloco *d) {
    free(d->theta);
    free(d->buf);
    free(d->start);
    free(d->delta);
    free(d->spare);
    memset(d, 0, sizeof *d);
}

void diloco_restore(Diloco *d, const int64_t meta[4]) {
    d->completed = d->round = (long)meta[0];
    d->applied = (long)meta[1];
    d->base = (uint64_t)meta[3];
    d->steps = d->done = 0;
}

void diloco_deliver(Diloco *d, long round, const float *avg, const double *stats) {
    CHECK(round == d->applied + 1, "DiLoCo: round %ld delivered after round %ld", round, d->applied);
    diloco_outer_step(&d->cfg, d->theta, d->buf, avg, d->n);
    d->applied = round;
    if (stats) memcpy(d->last_stats, stats, sizeof d->last_stats);
}

// Takes the next round's assignment from the link: the worker's range and inner steps.
static int next_round(Diloco *d, char *err) {
    uint64_t start = 0;
    long round = 0, steps = 0;
    if (d->link.assign(d->link.ctx, &round, &start, &steps, err) != 0) return -1;
    if (round <= d->completed || steps < 1)
        return cx_err(err, "DiLoCo: the coordinator assigned round %ld with %ld inner steps after "
                      "round %ld", round, steps, d->completed);
    d->round = round;
    d->steps = steps;
    d->done = 0;
    memset(d->stats, 0, sizeof d->stats);
    *d->cursor = start;
    *d->sched_step = (round - 1) * d->cfg.inner_steps;
    return 0;
}

static int dl_plan(void *ctx, long G, long *lo, long *hi, char *err) {
    Diloco *d = ctx;
    d->boundary = 0;
    if (d->done == d->steps && next_round(d, err) != 0) return -1;  // the first step
    long R = d->inner.n_ranks > 0 ? d->inner.n_ranks : 1;
    *lo = G * d->inner.rank / R;
    *hi = G * (d->inner.rank + 1) / R;
    if (d->inner.plan) return d->inner.plan(d->inner.plan_ctx, G, lo, hi, err);
    return 0;
}

static int dl_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    Diloco *d = ctx;
    if (d->link.progress) d->link.progress(d->link.ctx);
    if (d->inner.sum && d->inner.sum(d->inner.ctx, grads, n, stats, n_stats, err) != 0) return -1;
    for (int i = 0; i < n_stats && i < STAT_COUNT; i++) d->stats[i] += stats[i];
    return 0;
}

static void dl_begin(void *ctx) {
    Diloco *d = ctx;
    if (d->inner.begin) d->inner.begin(d->inner.ctx);
}

static void dl_ready(void *ctx, size_t off, size_t count) {
    Diloco *d = ctx;
    if (d->inner.ready) d->inner.ready(d->inner.ctx, off, count);
}

static void dl_progress(void *ctx) {
    Diloco *d = ctx;
    if (d->inner.progress) d->inner.progress(d->inner.ctx);
    if (d->link.progress) d->link.progress(d->link.ctx);
}

// The end of an inner step; after the round's last one, the outer exchange: post this
// round's pseudo-gradient, take the next round's range (the coordinator answers at once),
// wait for the average the next start needs (the last round's with overlap, this one's
// without) and restart from it.
static int dl_after_step(void *ctx, Trainer *t, const StepResult *r, char *err) {
    Diloco *d = ctx;
    if (d->inner.after_step && d->inner.after_step(d->inner.ctx, t, r, err) != 0) return -1;
    if (++d->done < d->steps) return 0;
    float *x = t->task.params;
    diloco_pseudo_grad(d->delta, d->start, x, d->n);
    if (d->link.post(d->link.ctx, d->round, d->delta, d->n, d->stats, err) != 0) return -1;
    d->completed = d->round;
    d->boundary = 1;
    if (d->last_step > 0 && t->optim.step >= d->last_step) {
        // the run's end: the last average, and the collaboration's model
        if (d->link.wait(d->link.ctx, d->round, err) != 0) return -1;
        memcpy(d->start, d->theta, d->n * sizeof(float));
        memcpy(x, d->theta, d->n * sizeof(float));
        return 0;
    }
    long prev = d->round;
    if (next_round(d, err) != 0) return -1;
    long need = d->cfg.overlap ? prev - 1 : prev;
    if (need > d->applied && d->link.wait(d->link.ctx, need, err) != 0) return -1;
    if (d->cfg.overlap && d->round == prev + 1 && d->applied < prev) {
        // the eager outer step: this worker's own pseudo-gradient stands in for the average
        // still in flight (on copies: theta and buf take the real average when it arrives)
        memcpy(d->start, d->theta, d->n * sizeof(float));
        memcpy(d->spare, d->buf, d->n * sizeof(float));
        diloco_outer_step(&d->cfg, d->start, d->spare, d->delta, d->n);
    } else {  // without overlap, or after rounds without a share: the outer parameters
        memcpy(d->start, d->theta, d->n * sizeof(float));
    }
    memcpy(x, d->start, d->n * sizeof(float));
    return 0;
}

static int dl_boundary(const void *ctx) { return ((const Diloco *)ctx)->boundary; }

static const float *dl_shared(const void *ctx) { return ((const Diloco *)ctx)->theta; }

static int dl_flush(void *ctx, char *err) {
    Diloco *d = ctx;
    if (d->completed > d->applied) return d->link.wait(d->link.ctx, d->completed, err);
    return 0;
}

static void dl_traffic(const void *ctx, double *sent, double *recv) {
    const Diloco *d = ctx;
    double s = 0, rv = 0;
    if (d->inner.traffic) d->inner.traffic(d->inner.ctx, &s, &rv);
    double ls = 0, lr = 0;
    if (d->link.traffic) d->link.traffic(d->link.ctx, &ls, &lr);
    *sent = s + ls;
    *recv = rv + lr;
}

Averager diloco_averager(Diloco *d) {
    return (Averager){.ctx = d, .sum = dl_sum, .begin = dl_begin, .plan = dl_plan, .plan_ctx = d,
                      .ready = d->inner.ready ? dl_ready : NULL,
                      .progress = (d->inner.progress || d->link.progress) ? dl_progress : NULL,
                      .after_step = dl_after_step, .traffic = dl_traffic, .boundary = dl_boundary,
                      .shared = dl_shared, .flush = dl_flush, .rank = d->inner.rank,
                      .n_ranks = d->inner.n_ranks};
}
