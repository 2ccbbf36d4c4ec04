// optim.c: AdamW / LAMB / LARS (see optim.h).
#include "models/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/par.h"

int optim_config_check(const OptimConfig *c, char *err) {
    if (!(c->lr > 0.0f)) return cx_err(err, "optim.lr must be > 0 (got %g)", (double)c->lr);
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f)) return cx_err(err, "optim.beta1 must be in [0, 1)");
    if (!(c->beta2 >= 0.0f && c->beta2 < 1.0f)) return cx_err(err, "optim.beta2 must be in [0, 1)");
    if (!(c->eps > 0.0f)) return cx_err(err, "optim.eps must be > 0");
    if (!(c->weight_decay >= 0.0f)) return cx_err(err, "optim.weight_decay must be >= 0");
    if (c->warmup_steps < 0) return cx_err(err, "optim.warmup_steps must be >= 0");
    if (c->total_steps < 1) return cx_err(err, "train.steps must be >= 1");
    if (!(c->end_lr >= 0.0f)) return cx_err(err, "optim.end_lr must be >= 0");
    if (c->schedule == SCHED_POLY && !(c->poly_power > 0.0f))
        return cx_err(err, "optim.poly_power must be > 0");
    if (c->kind == OPTIM_LARS && !(c->trust_coef > 0.0f))
        return cx_err(err, "optim.trust_coef must be > 0 for lars (got %g)", (double)c->trust_coef);
    return 0;
}

const char *optim_kind_name(OptimKind k) {
    return k == OPTIM_LAMB ? "lamb" : k == OPTIM_LARS ? "lars" : "adamw";
}

void optim_init(Optim *o, const OptimConfig *cfg, const TensorSpec *specs, int n_specs, size_t n) {
    o->cfg = *cfg;
    o->specs = specs;
    o->n_specs = n_specs;
    o->n = n;
    o->m = cx_calloc(n, sizeof(float));
    o->v = cx_calloc(n, sizeof(float));
    o->step = 0;
    o->moment_steps = -1;
    o->group_first = 0;
    memset(&o->group_cfg, 0, sizeof o->group_cfg);
    o->reduce_norms = NULL;
    o->reduce_ctx = NULL;
    o->norm_buf = NULL;
}

void optim_set_group(Optim *o, int first_spec, const OptimConfig *g) {
    CHECK(first_spec > 0 && first_spec < o->n_specs, "parameter group from spec %d of %d",
          first_spec, o->n_specs);
    o->group_first = first_spec;
    o->group_cfg = *g;
}

// The configuration whose schedule and weight decay spec i follows.
static const OptimConfig *spec_cfg(const Optim *o, int i) {
    return o->group_first > 0 && i >= o->group_first ? &o->group_cfg : &o->cfg;
}

float optim_spec_lr(const Optim *o, int spec, long step) { return optim_lr(spec_cfg(o, spec), step); }

void optim_free(Optim *o) {
    free(o->m);
    free(o->v);
    free(o->norm_buf);
    o->m = o->v = NULL;
    o->norm_buf = NULL;
    o->reduce_norms = NULL;
}

float optim_lr(const OptimConfig *c, long step) {
    double lr = c->lr;
    if (c->warmup_steps > 0 && step < c->warmup_steps)
        return (float)(lr * (double)(step + 1) / (double)c->warmup_steps);
    if (c->schedule == SCHED_CONSTANT) return (float)lr;
    if (c->schedule == SCHED_INVSQRT) {
        double w = c->warmup_steps > 0 ? (double)c->warmup_steps : 1.0;
        return (float)(lr * sqrt(w / (double)(step + 1)));
    }
    long decay_steps = c->total_steps - c->warmup_steps;
    if (decay_steps <= 0) return (float)lr;
    double frac = (double)(step - c->warmup_steps) / (double)decay_steps;
    if (frac > 1.0) frac = 1.0;
    if (c->schedule == SCHED_COSINE)
        return (float)(c->end_lr + (lr - c->end_lr) * 0.5 * (1.0 + cos(M_PI * frac)));
    double power = c->schedule == SCHED_POLY ? (double)c->poly_power : 1.0;
    return (float)((lr - c->end_lr) * pow(1.0 - frac, power) + c->end_lr);
}

// The squared norm is summed in double over fixed chunks of each tensor (NORM_CHUNK
// elements, or more so that there are at most NORM_MAX_CHUNKS), each chunk in 8 interleaved
// partial sums combined in order, then the chunks in order. The chunks run on the pool; the
// chunking depends only on the tensor sizes, so the norm is the same for any thread count.
#define NORM_CHUNK 16384
#define NORM_MAX_CHUNKS 4096

typedef struct {
    const float *grads;
    const TensorSpec *specs;
    int n_specs;
    size_t chunk;
    double *part;
} NormTask;

static double sumsq(const float *g, size_t n) {
    double acc[8] = {0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)g[j + k] * g[j + k];
    double s = 0.0;
    for (; j < n; j++) s += (double)g[j] * g[j];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

static void norm_chunks(void *ctx, int tid, size_t lo, size_t hi) {
    const NormTask *t = ctx;
    (void)tid;
    size_t first = 0;  // index of the spec's first chunk
    for (int i = 0; i < t->n_specs && first < hi; i++) {
        const size_t n = t->specs[i].n, nc = (n + t->chunk - 1) / t->chunk;
        for (size_t c = first > lo ? first : lo; c < first + nc && c < hi; c++) {
            const size_t a = (c - first) * t->chunk, b = a + t->chunk < n ? a + t->chunk : n;
            t->part[c] = sumsq(t->grads + t->specs[i].offset + a, b - a);
        }
        first += nc;
    }
}

double optim_grad_norm(const float *grads, const TensorSpec *specs, int n_specs) {
    double t0 = par_prof_begin();
    size_t total = 0, chunk = NORM_CHUNK, nc = 0;
    for (int i = 0; i < n_specs; i++) total += specs[i].n;
    if (total / chunk + (size_t)n_specs > NORM_MAX_CHUNKS)
        chunk = (total + NORM_MAX_CHUNKS / 2 - 1) / (NORM_MAX_CHUNKS / 2);
    for (int i = 0; i < n_specs; i++) nc += (specs[i].n + chunk - 1) / chunk;
    CHECK(nc <= NORM_MAX_CHUNKS, "optim_grad_norm: %zu chunks over %d tensors", nc, n_specs);
    double part[NORM_MAX_CHUNKS];
    NormTask t = {.grads = grads, .specs = specs, .n_specs = n_specs, .chunk = chunk, .part = part};
    par_run(nc, 1, norm_chunks, &t);
    double s = 0.0;
    for (size_t c = 0; c < nc; c++) s += part[c];
    par_prof_end(PAR_PROF_OPTIM, t0);
    return sqrt(s);
}

typedef struct {
    float *x;
    float s;
} ScaleTask;

static void scale_block(void *ctx, int tid, size_t lo, size_t hi) {
    const ScaleTask *t = ctx;
    (void)tid;
    for (size_t i = lo; i < hi; i++) t->x[i] *= t->s;
}

void optim_scale(float *x, size_t n, float s) {
    double t0 = par_prof_begin();
    ScaleTask t = {.x = x, .s = s};
    par_run(n, 4096, scale_block, &t);
    par_prof_end(PAR_PROF_OPTIM, t0);
}

void optim_set_reduce_norms(Optim *o, void (*reduce)(void *ctx, double *sq, int n_specs, int k),
                            void *ctx) {
    o->reduce_norms = reduce;
    o->reduce_ctx = ctx;
    free(o->norm_buf);
    o->norm_buf = reduce ? cx_calloc(2 * (size_t)o->n_specs + 1, sizeof(double)) : NULL;
}

double optim_global_grad_norm(const Optim *o, const float *grads) {
    if (!o->reduce_norms) return optim_grad_norm(grads, o->specs, o->n_specs);
    double t0 = par_prof_begin();
    for (int i = 0; i < o->n_specs; i++) o->norm_buf[i] = sumsq(grads + o->specs[i].offset, o->specs[i].n);
    o->reduce_norms(o->reduce_ctx, o->norm_buf, o->n_specs, 1);
    double s = 0.0;
    for (int i = 0; i < o->n_specs; i++) s += o->norm_buf[i];
    par_prof_end(PAR_PROF_OPTIM, t0);
    return sqrt(s);
}

double optim_step(Optim *o, float *params, float *grads) {
    double gnorm = optim_global_grad_norm(o, grads);
    optim_step_with_norm(o, params, grads, gnorm);
    return gnorm;
}

// One pass of AdamW over a tensor (it was four: clip, moments, update; memory-bound): the
// gradient scaled by gscale (written back when gscale != 1, as the clip did), the moments,
// the parameter. Blocks of VL with a fixed-length inner loop so that GCC vectorises it at
// -O2 (models/nn.c explains why; sqrtf needs -fno-math-errno, which the Makefile sets),
// then a scalar tail with the same formula: each element gets exactly the arithmetic of
// the scalar loops, so the results are bit-identical to them.
#define OPT_VL 16
static inline void adamw_elem(float *restrict w, float *restrict g, float *restrict m,
                              float *restrict v, size_t j, float gscale, float b1, float b2,
                              float bc1, float bc2, float eps, float lr, float wd) {
    float gj = gscale != 1.0f ? g[j] * gscale : g[j];
    float mj = b1 * m[j] + (1.0f - b1) * gj;
    float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
    float upd = (mj / bc1) / (sqrtf(vj / bc2) + eps);
    w[j] = w[j] * (1.0f - lr * wd) - lr * upd;
    m[j] = mj;
    v[j] = vj;
    g[j] = gj;
}

static void adamw_update(float *restrict w, float *restrict g, float *restrict m,
                         float *restrict v, size_t n, float gscale, float b1, float b2,
                         float bc1, float bc2, float eps, float lr, float wd) {
    size_t j = 0;
    if (gscale == 1.0f) {  // the common case: no clip, g is only read
        for (; j + OPT_VL <= n; j += OPT_VL)
            for (size_t k = j; k < j + OPT_VL; k++) {
                float mj = b1 * m[k] + (1.0f - b1) * g[k];
                float vj = b2 * v[k] + (1.0f - b2) * g[k] * g[k];
                float upd = (mj / bc1) / (sqrtf(vj / bc2) + eps);
                w[k] = w[k] * (1.0f - lr * wd) - lr * upd;
                m[k] = mj;
                v[k] = vj;
            }
    } else {
        for (; j + OPT_VL <= n; j += OPT_VL)
            for (size_t k = j; k < j + OPT_VL; k++) {
                float gj = g[k] * gscale;
                float mj = b1 * m[k] + (1.0f - b1) * gj;
                float vj = b2 * v[k] + (1.0f - b2) * gj * gj;
                float upd = (mj / bc1) / (sqrtf(vj / bc2) + eps);
                w[k] = w[k] * (1.0f - lr * wd) - lr * upd;
                m[k] = mj;
                v[k] = vj;
                g[k] = gj;
            }
    }
    for (; j < n; j++) adamw_elem(w, g, m, v, j, gscale, b1, b2, bc1, bc2, eps, lr, wd);
}

// element-wise, so any split of a tensor gives the same result
typedef struct {
    float *w, *g, *m, *v;
    float gscale, b1, b2, bc1, bc2, eps, lr, wd;
} AdamwTask;

static void adamw_block(void *ctx, int tid, size_t lo, size_t hi) {
    const AdamwTask *t = ctx;
    (void)tid;
    adamw_update(t->w + lo, t->g + lo, t->m + lo, t->v + lo, hi - lo, t->gscale, t->b1, t->b2,
                 t->bc1, t->bc2, t->eps, t->lr, t->wd);
}

// One tensor's LARS update (optim.h): the norms in double, the rest in float as apex's LARC
// and torch.optim.SGD compute it.
static void lars_update(float *w, float *g, float *buf, size_t n, float lr, float wd,
                        float momentum, float trust, float eps) {
    double ws = 0.0, gs = 0.0;
    for (size_t j = 0; j < n; j++) {
        ws += (double)w[j] * w[j];
        gs += (double)g[j] * g[j];
    }
    const float wn = (float)sqrt(ws), gn = (float)sqrt(gs);
    if (wn != 0.0f && gn != 0.0f) {
        const float alr = trust * wn / (gn + wn * wd + eps);
        for (size_t j = 0; j < n; j++) g[j] = (g[j] + wd * w[j]) * alr;
    }
    for (size_t j = 0; j < n; j++) {
        buf[j] = momentum * buf[j] + g[j];
        w[j] -= lr * buf[j];
    }
}

// LAMB over an arena of tensor parts (Optim.reduce_norms): the moments and each tensor's
// squared norms of w and of the update first, summed over the ranks that share the model,
// then the updates with the trust ratios of the whole tensors. Same formula as the loop in
// optim_step_with_norm.
static void lamb_split(Optim *o, float *params, float *grads, float gscale, float lr0, float lr1,
                       float bc1, float bc2) {
    const OptimConfig *c = &o->cfg;
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    double *sq = o->norm_buf;  // (w, update) per tensor
    for (int i = 0; i < o->n_specs; i++) {
        const TensorSpec *s = &o->specs[i];
        float *w = params + s->offset, *g = grads + s->offset, *m = o->m + s->offset, *v = o->v + s->offset;
        const float wd = s->no_decay ? 0.0f : spec_cfg(o, i)->weight_decay;
        double wn = 0.0, un = 0.0;
        for (size_t j = 0; j < s->n; j++) {
            if (gscale != 1.0f) g[j] *= gscale;
            m[j] = b1 * m[j] + (1.0f - b1) * g[j];
            v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
            float upd = (m[j] / bc1) / (sqrtf(v[j] / bc2) + eps) + wd * w[j];
            wn += (double)w[j] * w[j];
            un += (double)upd * upd;
        }
        sq[2 * i] = wn;
        sq[2 * i + 1] = un;
    }
    o->reduce_norms(o->reduce_ctx, sq, o->n_specs, 2);
    for (int i = 0; i < o->n_specs; i++) {
        const TensorSpec *s = &o->specs[i];
        float *w = params + s->offset, *m = o->m + s->offset, *v = o->v + s->offset;
        const float wd = s->no_decay ? 0.0f : spec_cfg(o, i)->weight_decay;
        const float lr = o->group_first > 0 && i >= o->group_first ? lr1 : lr0;
        float trust = 1.0f;
        if (!s->no_decay && sq[2 * i] > 0.0 && sq[2 * i + 1] > 0.0) trust = (float)(sqrt(sq[2 * i]) / sqrt(sq[2 * i + 1]));
        for (size_t j = 0; j < s->n; j++) {
            float upd = (m[j] / bc1) / (sqrtf(v[j] / bc2) + eps) + wd * w[j];
            w[j] -= lr * trust * upd;
        }
    }
}

void optim_step_with_norm(Optim *o, float *params, float *grads, double gnorm) {
    double t0 = par_prof_begin();
    const OptimConfig *c = &o->cfg;
    float gscale = 1.0f;
    if (c->clip_norm > 0.0f && gnorm > c->clip_norm) gscale = (float)(c->clip_norm / (gnorm + 1e-6));
    long t = (o->moment_steps >= 0 ? o->moment_steps : o->step) + 1;
    if (o->moment_steps >= 0) o->moment_steps++;
    const float lr0 = optim_lr(c, o->step);
    const float lr1 = o->group_first > 0 ? optim_lr(&o->group_cfg, o->step) : lr0;
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const float bc1 = (float)(1.0 - pow(b1, (double)t)), bc2 = (float)(1.0 - pow(b2, (double)t));
    CHECK(!o->reduce_norms || c->kind != OPTIM_LARS, "LARS under model parallelism");
    if (o->reduce_norms && c->kind == OPTIM_LAMB) {
        lamb_split(o, params, grads, gscale, lr0, lr1, bc1, bc2);
        o->step++;
        par_prof_end(PAR_PROF_OPTIM, t0);
        return;
    }
    for (int i = 0; i < o->n_specs; i++) {
        const TensorSpec *s = &o->specs[i];
        float *w = params + s->offset, *g = grads + s->offset;
        float *m = o->m + s->offset, *v = o->v + s->offset;
        const size_t n = s->n;
        const int grouped = o->group_first > 0 && i >= o->group_first;
        const float lr = grouped ? lr1 : lr0;
        const float wd = s->no_decay ? 0.0f : spec_cfg(o, i)->weight_decay;
        if (c->kind == OPTIM_ADAMW) {
            // decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW
            AdamwTask at = {.w = w, .g = g, .m = m, .v = v, .gscale = gscale, .b1 = b1,
                            .b2 = b2, .bc1 = bc1, .bc2 = bc2, .eps = eps, .lr = lr, .wd = wd};
            par_run(n, 4096, adamw_block, &at);
            continue;
        }
        if (gscale != 1.0f)
            for (size_t j = 0; j < n; j++) g[j] *= gscale;
        if (c->kind == OPTIM_LARS) {
            lars_update(w, g, m, n, lr, wd, b1, c->trust_coef, eps);
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            m[j] = b1 * m[j] + (1.0f - b1) * g[j];
            v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
        }
        // LAMB (You et al. 2020): per-tensor trust ratio ||w|| / ||update||
        double wn = 0.0, un = 0.0;
        for (size_t j = 0; j < n; j++) {
            float upd = (m[j] / bc1) / (sqrtf(v[j] / bc2) + eps) + wd * w[j];
            wn += (double)w[j] * w[j];
            un += (double)upd * upd;
        }
        float trust = 1.0f;
        if (!s->no_decay && wn > 0.0 && un > 0.0) trust = (float)(sqrt(wn) / sqrt(un));
        for (size_t j = 0; j < n; j++) {
            float upd = (m[j] / bc1) / (sqrtf(v[j] / bc2) + eps) + wd * w[j];
            w[j] -= lr * trust * upd;
        }
    }
    o->step++;
    par_prof_end(PAR_PROF_OPTIM, t0);
}
