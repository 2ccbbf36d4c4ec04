// resnet.c: the SwAV ResNet over flat arenas (see resnet.h).
#include "models/resnet.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/nn.h"
#include "models/par.h"
#include "models/rng.h"
#include "models/swav.h"
#include "models/vision.h"

#define MAX_SPECS (16 + RESNET_MAX_STAGES * RESNET_MAX_BLOCKS * 9)
#define MAX_BUFS (4 + RESNET_MAX_STAGES * RESNET_MAX_BLOCKS * 6)

// a convolution followed by batch norm: spec indices of the weight, BN weight and bias,
// buffer indices of the running mean and variance, and the shape at the largest input
typedef struct {
    ConvShape s;
    int w, bn_w, bn_b, rm, rv;
} ConvBn;

typedef struct {
    ConvBn c1, c2, ds;
    int has_ds;
    // activations of the last forward: conv outputs (c1, c2, d), relu(bn1(c1)) (r1), the
    // block's output (out), the BN statistics
    float *c1o, *r1, *c2o, *dso, *out;
    float *m1, *s1, *m2, *s2, *m3, *s3;
} Block;

struct ResNet {
    ResNetConfig cfg;
    int max_B, max_H, max_W;
    ResNet *owner;  // NULL: this model owns the arenas
    TensorSpec specs[MAX_SPECS], bspecs[MAX_BUFS];
    int n_specs, n_bspecs;
    size_t n_params, n_buf;
    float *params, *grads, *bufs;
    float *p[MAX_SPECS], *g[MAX_SPECS], *b[MAX_BUFS];
    ConvBn stem;
    Block blk[RESNET_MAX_STAGES * RESNET_MAX_BLOCKS];
    int n_blk;
    int h0_w, h0_b, hbn_w, hbn_b, hbn_rm, hbn_rv, h3_w, h3_b, proto;
    // activations
    float *act;
    float *x0c, *x0r, *m0, *s0;                  // stem conv output, relu(bn), stats
    float *feat, *h1, *hm, *hs, *hr, *z, *zn, *znorm, *scores;
    float *t1, *t2, *ga, *gb;                    // scratch of the largest activation
    float *dfeat, *dh1, *dhb, *dhr, *dz, *dzn;   // head gradients
    float *conv_scratch;
    int conv_threads;
    // the last forward
    int B, H, W, train, has_head;
    const float *images;
};

ResNetConfig resnet_default(void) {
    return (ResNetConfig){.in_channels = 1, .n_stages = 3, .widths = {32, 64, 128},
                          .blocks = {1, 1, 1}, .head_hidden = 256, .out_dim = 64,
                          .n_prototypes = 100, .bn_eps = 1e-5f, .bn_momentum = 0.1f};
}

int resnet_config_check(const ResNetConfig *c, char *err) {
    if (c->in_channels < 1 || c->in_channels > 16)
        return cx_err(err, "model.in_channels must be in [1, 16] (got %d)", c->in_channels);
    if (c->n_stages < 1 || c->n_stages > RESNET_MAX_STAGES)
        return cx_err(err, "model.stages must be 1 to %d (got %d)", RESNET_MAX_STAGES, c->n_stages);
    for (int s = 0; s < c->n_stages; s++) {
        if (c->widths[s] < 1 || c->widths[s] > 4096)
            return cx_err(err, "model.widths: stage %d has %d channels (1 to 4096)", s + 1, c->widths[s]);
        if (c->blocks[s] < 1 || c->blocks[s] > RESNET_MAX_BLOCKS)
            return cx_err(err, "model.blocks: stage %d has %d blocks (1 to %d)", s + 1, c->blocks[s],
                          RESNET_MAX_BLOCKS);
    }
    if (c->head_hidden < 1 || c->head_hidden > 65536)
        return cx_err(err, "model.head_hidden must be in [1, 65536] (got %d)", c->head_hidden);
    if (c->out_dim < 1 || c->out_dim > 65536)
        return cx_err(err, "model.out_dim must be in [1, 65536] (got %d)", c->out_dim);
    if (c->n_prototypes < 1 || c->n_prototypes > 65536)
        return cx_err(err, "model.prototypes must be in [1, 65536] (got %d)", c->n_prototypes);
    if (!(c->bn_eps > 0.0f)) return cx_err(err, "model.bn_eps must be > 0");
    if (!(c->bn_momentum > 0.0f && c->bn_momentum <= 1.0f))
        return cx_err(err, "model.bn_momentum must be in (0, 1]");
    return 0;
}

// ---------------------------------------------------------------------------------------
// parameter and buffer tables

static int add_spec(TensorSpec *t, int *n, int no_decay, int ndim, const long *shape,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int add_spec(TensorSpec *t, int *n, int no_decay, int ndim, const long *shape,
                    const char *fmt, ...) {
    TensorSpec *s = &t[*n];
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->ndim = ndim;
    s->n = 1;
    for (int d = 0; d < ndim; d++) {
        s->shape[d] = shape[d];
        s->n *= (size_t)shape[d];
    }
    s->no_decay = no_decay;
    return (*n)++;
}

// conv weight (OC, C, k, k) named PREFIX.conv (or the full name given), BN PREFIX.bn
static void add_conv_bn(ResNet *m, ConvBn *cb, const char *conv_name, const char *bn_name,
                        int C, int OC, int k, int stride, int pad, int H, int W) {
    cb->s = (ConvShape){m->max_B, C, H, W, OC, k, k, stride, pad};
    cb->w = add_spec(m->specs, &m->n_specs, 0, 4, (long[]){OC, C, k, k}, "%s.weight", conv_name);
    cb->bn_w = add_spec(m->specs, &m->n_specs, 1, 1, (long[]){OC}, "%s.weight", bn_name);
    cb->bn_b = add_spec(m->specs, &m->n_specs, 1, 1, (long[]){OC}, "%s.bias", bn_name);
    cb->rm = add_spec(m->bspecs, &m->n_bspecs, 1, 1, (long[]){OC}, "%s.running_mean", bn_name);
    cb->rv = add_spec(m->bspecs, &m->n_bspecs, 1, 1, (long[]){OC}, "%s.running_var", bn_name);
}

static void build(ResNet *m) {
    const ResNetConfig *c = &m->cfg;
    int H = m->max_H, W = m->max_W, C = c->in_channels;
    add_conv_bn(m, &m->stem, "conv1", "bn1", C, c->widths[0], 3, 1, 1, H, W);
    C = c->widths[0];
    for (int s = 0; s < c->n_stages; s++)
        for (int k = 0; k < c->blocks[s]; k++) {
            Block *b = &m->blk[m->n_blk++];
            const int OC = c->widths[s], stride = s > 0 && k == 0 ? 2 : 1;
            char n1[64], n2[64], n3[64], n4[64];
            snprintf(n1, sizeof n1, "layer%d.%d.conv1", s + 1, k);
            snprintf(n2, sizeof n2, "layer%d.%d.bn1", s + 1, k);
            add_conv_bn(m, &b->c1, n1, n2, C, OC, 3, stride, 1, H, W);
            const int OH = conv_out_h(&b->c1.s), OW = conv_out_w(&b->c1.s);
            snprintf(n1, sizeof n1, "layer%d.%d.conv2", s + 1, k);
            snprintf(n2, sizeof n2, "layer%d.%d.bn2", s + 1, k);
            add_conv_bn(m, &b->c2, n1, n2, OC, OC, 3, 1, 1, OH, OW);
            b->has_ds = stride != 1 || C != OC;
            if (b->has_ds) {
                snprintf(n3, sizeof n3, "layer%d.%d.downsample.0", s + 1, k);
                snprintf(n4, sizeof n4, "layer%d.%d.downsample.1", s + 1, k);
                add_conv_bn(m, &b->ds, n3, n4, C, OC, 1, stride, 0, H, W);
            }
            C = OC;
            H = OH;
            W = OW;
        }
    const int Hh = c->head_hidden, D = c->out_dim;
    m->h0_w = add_spec(m->specs, &m->n_specs, 0, 2, (long[]){Hh, C}, "projection_head.0.weight");
    m->h0_b = add_spec(m->specs, &m->n_specs, 1, 1, (long[]){Hh}, "projection_head.0.bias");
    m->hbn_w = add_spec(m->specs, &m->n_specs, 1, 1, (long[]){Hh}, "projection_head.1.weight");
    m->hbn_b = add_spec(m->specs, &m->n_specs, 1, 1, (long[]){Hh}, "projection_head.1.bias");
    m->hbn_rm = add_spec(m->bspecs, &m->n_bspecs, 1, 1, (long[]){Hh}, "projection_head.1.running_mean");
    m->hbn_rv = add_spec(m->bspecs, &m->n_bspecs, 1, 1, (long[]){Hh}, "projection_head.1.running_var");
    m->h3_w = add_spec(m->specs, &m->n_specs, 0, 2, (long[]){D, Hh}, "projection_head.3.weight");
    m->h3_b = add_spec(m->specs, &m->n_specs, 1, 1, (long[]){D}, "projection_head.3.bias");
    m->proto = add_spec(m->specs, &m->n_specs, 0, 2, (long[]){c->n_prototypes, D}, "prototypes.weight");
    m->n_params = tensor_layout(m->specs, m->n_specs, 0);
    m->n_buf = tensor_layout(m->bspecs, m->n_bspecs, 0);
}

// torchvision's initialisation, from (cx_rng_derive(seed, spec index), element)
static void init_params(ResNet *m, uint64_t seed) {
    for (int i = 0; i < m->n_specs; i++) {
        const TensorSpec *s = &m->specs[i];
        float *w = m->params + s->offset;
        const uint64_t ts = cx_rng_derive(seed, (uint64_t)i);
        const int is_bn = strstr(s->name, ".bn") || !strncmp(s->name, "bn", 2) ||
                          strstr(s->name, "downsample.1") || strstr(s->name, "projection_head.1");
        if (s->ndim == 4) {  // kaiming normal, fan_out, ReLU gain
            const float std = sqrtf(2.0f / (float)(s->shape[0] * s->shape[2] * s->shape[3]));
            for (size_t j = 0; j < s->n; j++) w[j] = std * cx_rng_normal(ts, j);
        } else if (is_bn) {
            const float v = strstr(s->name, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < s->n; j++) w[j] = v;
        } else {  // linear weight (out, in) or bias: uniform +-1/sqrt(fan_in), torch's default
            long fan_in = s->ndim == 2 ? s->shape[1] : m->specs[i - 1].shape[1];
            const float bound = 1.0f / sqrtf((float)fan_in);
            for (size_t j = 0; j < s->n; j++) w[j] = bound * (2.0f * cx_rng_uniform(ts, j) - 1.0f);
        }
    }
    for (int i = 0; i < m->n_bspecs; i++) {
        const TensorSpec *s = &m->bspecs[i];
        const float v = strstr(s->name, "running_var") ? 1.0f : 0.0f;
        for (size_t j = 0; j < s->n; j++) m->bufs[s->offset + j] = v;
    }
}

// ---------------------------------------------------------------------------------------
// activations

static size_t conv_out_n(const ConvShape *s) {
    return (size_t)s->B * s->OC * conv_out_h(s) * conv_out_w(s);
}

static void carve(ResNet *m, TensorCarver *cv) {
    const ResNetConfig *c = &m->cfg;
    const size_t B = (size_t)m->max_B;
    size_t big = (size_t)m->max_B * c->in_channels * m->max_H * m->max_W, scr = 0;
    const ConvShape *all[1 + 3 * RESNET_MAX_STAGES * RESNET_MAX_BLOCKS];
    int n_all = 0;
    all[n_all++] = &m->stem.s;
    const size_t n0 = conv_out_n(&m->stem.s);
    tensor_carve_each(cv, n0, &m->x0c, &m->x0r, NULL);
    tensor_carve_each(cv, (size_t)m->stem.s.OC, &m->m0, &m->s0, NULL);
    for (int i = 0; i < m->n_blk; i++) {
        Block *b = &m->blk[i];
        const size_t n = conv_out_n(&b->c1.s), oc = (size_t)b->c1.s.OC;
        tensor_carve_each(cv, n, &b->c1o, &b->r1, &b->c2o, &b->out, NULL);
        tensor_carve_each(cv, oc, &b->m1, &b->s1, &b->m2, &b->s2, NULL);
        all[n_all++] = &b->c1.s;
        all[n_all++] = &b->c2.s;
        if (b->has_ds) {
            b->dso = tensor_carve(cv, n);
            tensor_carve_each(cv, oc, &b->m3, &b->s3, NULL);
            all[n_all++] = &b->ds.s;
        }
    }
    for (int i = 0; i < n_all; i++) {
        const size_t n = conv_out_n(all[i]), s = nn_conv2d_scratch_floats(all[i], m->conv_threads);
        big = n > big ? n : big;
        scr = s > scr ? s : scr;
    }
    const int Cf = c->widths[c->n_stages - 1], Hh = c->head_hidden, D = c->out_dim;
    tensor_carve_each(cv, B * Cf, &m->feat, &m->dfeat, NULL);
    tensor_carve_each(cv, B * Hh, &m->h1, &m->hr, &m->dh1, &m->dhb, &m->dhr, NULL);
    tensor_carve_each(cv, (size_t)Hh, &m->hm, &m->hs, NULL);
    tensor_carve_each(cv, B * D, &m->z, &m->zn, &m->dz, &m->dzn, NULL);
    m->znorm = tensor_carve(cv, B);
    m->scores = tensor_carve(cv, B * c->n_prototypes);
    tensor_carve_each(cv, big, &m->t1, &m->t2, &m->ga, &m->gb, NULL);
    m->conv_scratch = tensor_carve(cv, scr);
}

static ResNet *alloc_model(const ResNetConfig *cfg, int max_B, int max_H, int max_W) {
    char err[CX_ERRLEN];
    CHECK(resnet_config_check(cfg, err) == 0, "%s", err);
    CHECK(max_B >= 1 && max_H >= 3 && max_W >= 3 && max_H <= 4096 && max_W <= 4096,
          "resnet: batches of %d images of %dx%d", max_B, max_H, max_W);
    ResNet *m = cx_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->max_B = max_B;
    m->max_H = max_H;
    m->max_W = max_W;
    const int pt = par_threads(), dt = par_default_threads();
    m->conv_threads = pt > dt ? pt : dt;
    build(m);
    return m;
}

static void alloc_acts(ResNet *m) {
    TensorCarver cv = {0};
    carve(m, &cv);
    m->act = tensor_carver_alloc(&cv);
    carve(m, &cv);
}

ResNet *resnet_create(const ResNetConfig *cfg, int max_B, int max_H, int max_W, uint64_t seed) {
    ResNet *m = alloc_model(cfg, max_B, max_H, max_W);
    m->params = cx_calloc(m->n_params, sizeof(float));
    m->grads = cx_calloc(m->n_params, sizeof(float));
    m->bufs = cx_calloc(m->n_buf, sizeof(float));
    tensor_views(m->specs, m->n_specs, m->params, m->p);
    tensor_views(m->specs, m->n_specs, m->grads, m->g);
    tensor_views(m->bspecs, m->n_bspecs, m->bufs, m->b);
    init_params(m, seed);
    alloc_acts(m);
    return m;
}

ResNet *resnet_share(ResNet *o, int max_B, int max_H, int max_W) {
    ResNet *m = alloc_model(&o->cfg, max_B, max_H, max_W);
    CHECK(m->n_params == o->n_params && m->n_buf == o->n_buf, "resnet_share: layouts differ");
    m->owner = o->owner ? o->owner : o;
    m->params = o->params;
    m->grads = o->grads;
    m->bufs = o->bufs;
    tensor_views(m->specs, m->n_specs, m->params, m->p);
    tensor_views(m->specs, m->n_specs, m->grads, m->g);
    tensor_views(m->bspecs, m->n_bspecs, m->bufs, m->b);
    alloc_acts(m);
    return m;
}

void resnet_free(ResNet *m) {
    if (!m) return;
    if (!m->owner) {
        free(m->params);
        free(m->grads);
        free(m->bufs);
    }
    free(m->act);
    free(m);
}

const ResNetConfig *resnet_config(const ResNet *m) { return &m->cfg; }
const TensorSpec *resnet_specs(const ResNet *m) { return m->specs; }
int resnet_n_specs(const ResNet *m) { return m->n_specs; }
size_t resnet_n_params(const ResNet *m) { return m->n_params; }
float *resnet_params(ResNet *m) { return m->params; }
float *resnet_grads(ResNet *m) { return m->grads; }
const TensorSpec *resnet_buffer_specs(const ResNet *m, int *n) {
    *n = m->n_bspecs;
    return m->bspecs;
}
float *resnet_buffers(ResNet *m) { return m->bufs; }

void resnet_normalize_prototypes(ResNet *m) {
    const int K = m->cfg.n_prototypes, D = m->cfg.out_dim;
    float *w = m->p[m->proto];
    for (int k = 0; k < K; k++) {
        float *r = w + (size_t)k * D;
        double ss = 0.0;
        for (int j = 0; j < D; j++) ss += (double)r[j] * r[j];
        const float n = (float)sqrt(ss);
        const float inv = 1.0f / (n > 1e-12f ? n : 1e-12f);
        for (int j = 0; j < D; j++) r[j] *= inv;
    }
}

void resnet_set_bn_momentum(ResNet *m, float momentum) {
    CHECK(momentum > 0.0f && momentum <= 1.0f, "resnet: batch-norm momentum %g", (double)momentum);
    m->cfg.bn_momentum = momentum;
}

void resnet_reset_bn(ResNet *m) {
    for (int i = 0; i < m->n_bspecs; i++) {
        const float v = strstr(m->bspecs[i].name, "running_var") ? 1.0f : 0.0f;
        for (size_t j = 0; j < m->bspecs[i].n; j++) m->bufs[m->bspecs[i].offset + j] = v;
    }
}

// ---------------------------------------------------------------------------------------
// forward

// the layer's shape for this call's batch and input size
static ConvShape at(const ConvBn *cb, int B, int H, int W) {
    ConvShape s = cb->s;
    s.B = B;
    s.H = H;
    s.W = W;
    return s;
}

// conv (no bias) then batch norm: conv output into co, normalised into bo; stats into mean,
// rstd (training) or the running statistics (eval)
static void conv_bn_forward(ResNet *m, const ConvBn *cb, const ConvShape *s, const float *x,
                            float *co, float *bo, float *mean, float *rstd) {
    nn_conv2d_forward(co, x, m->p[cb->w], NULL, s, m->conv_scratch);
    const int HW = conv_out_h(s) * conv_out_w(s);
    const int upd = m->train == RESNET_TRAIN;
    if (m->train != RESNET_EVAL)
        nn_batchnorm_forward(bo, mean, rstd, upd ? m->b[cb->rm] : NULL, upd ? m->b[cb->rv] : NULL,
                             co, m->p[cb->bn_w], m->p[cb->bn_b], s->B, s->OC, HW, m->cfg.bn_eps,
                             m->cfg.bn_momentum);
    else
        nn_batchnorm_eval(bo, co, m->p[cb->bn_w], m->p[cb->bn_b], m->b[cb->rm], m->b[cb->rv],
                          s->B, s->OC, HW, m->cfg.bn_eps);
}

const float *resnet_features(ResNet *m, const float *images, int B, int H, int W, int train) {
    CHECK(B >= 1 && B <= m->max_B && H >= 3 && H <= m->max_H && W >= 3 && W <= m->max_W,
          "resnet: a batch of %d images of %dx%d exceeds the model's %d of %dx%d", B, H, W,
          m->max_B, m->max_H, m->max_W);
    CHECK(par_threads() <= m->conv_threads, "resnet: %d pool threads, sized for %d",
          par_threads(), m->conv_threads);
    m->B = B;
    m->H = H;
    m->W = W;
    CHECK(train == RESNET_EVAL || train == RESNET_TRAIN || train == RESNET_BATCH,
          "resnet: batch-norm mode %d", train);
    m->train = train;
    m->has_head = 0;
    m->images = images;
    ConvShape s = at(&m->stem, B, H, W);
    conv_bn_forward(m, &m->stem, &s, images, m->x0c, m->x0r, m->m0, m->s0);
    size_t n = conv_out_n(&s);
    nn_relu_forward(m->x0r, m->x0r, n);
    const float *x = m->x0r;
    int h = conv_out_h(&s), w = conv_out_w(&s);
    for (int i = 0; i < m->n_blk; i++) {
        Block *b = &m->blk[i];
        ConvShape s1 = at(&b->c1, B, h, w);
        conv_bn_forward(m, &b->c1, &s1, x, b->c1o, b->r1, b->m1, b->s1);
        n = conv_out_n(&s1);
        nn_relu_forward(b->r1, b->r1, n);
        const int oh = conv_out_h(&s1), ow = conv_out_w(&s1);
        ConvShape s2 = at(&b->c2, B, oh, ow);
        conv_bn_forward(m, &b->c2, &s2, b->r1, b->c2o, m->t1, b->m2, b->s2);
        const float *sc = x;
        if (b->has_ds) {
            ConvShape s3 = at(&b->ds, B, h, w);
            conv_bn_forward(m, &b->ds, &s3, x, b->dso, m->t2, b->m3, b->s3);
            sc = m->t2;
        }
        nn_add_forward(b->out, m->t1, sc, n);
        nn_relu_forward(b->out, b->out, n);
        x = b->out;
        h = oh;
        w = ow;
    }
    const int Cf = m->cfg.widths[m->cfg.n_stages - 1];
    nn_avgpool_forward(m->feat, x, B, Cf, h * w);
    return m->feat;
}

const float *resnet_forward(ResNet *m, const float *images, int B, int H, int W, int train,
                            const float **z) {
    resnet_features(m, images, B, H, W, train);
    const ResNetConfig *c = &m->cfg;
    const int Cf = c->widths[c->n_stages - 1], Hh = c->head_hidden, D = c->out_dim;
    nn_linear_forward(m->h1, m->feat, m->p[m->h0_w], m->p[m->h0_b], B, Cf, Hh);
    const int upd = train == RESNET_TRAIN;
    if (train != RESNET_EVAL)
        nn_batchnorm_forward(m->hr, m->hm, m->hs, upd ? m->b[m->hbn_rm] : NULL,
                             upd ? m->b[m->hbn_rv] : NULL, m->h1, m->p[m->hbn_w], m->p[m->hbn_b],
                             B, Hh, 1, c->bn_eps, c->bn_momentum);
    else
        nn_batchnorm_eval(m->hr, m->h1, m->p[m->hbn_w], m->p[m->hbn_b], m->b[m->hbn_rm],
                          m->b[m->hbn_rv], B, Hh, 1, c->bn_eps);
    nn_relu_forward(m->hr, m->hr, (size_t)B * Hh);
    nn_linear_forward(m->z, m->hr, m->p[m->h3_w], m->p[m->h3_b], B, Hh, D);
    nn_l2norm_forward(m->zn, m->znorm, m->z, B, D);
    nn_linear_forward(m->scores, m->zn, m->p[m->proto], NULL, B, D, c->n_prototypes);
    m->has_head = 1;
    if (z) *z = m->zn;
    return m->scores;
}

// ---------------------------------------------------------------------------------------
// backward

// dx (+=) from the gradient dbo of the BN output: BN backward into dc (zeroed here), then the
// convolution's
static void conv_bn_backward(ResNet *m, const ConvBn *cb, const ConvShape *s, float *dx,
                             const float *dbo, const float *x, const float *co,
                             const float *mean, const float *rstd, float *dc) {
    const size_t n = conv_out_n(s);
    const int HW = conv_out_h(s) * conv_out_w(s);
    nn_zero(dc, n);
    nn_batchnorm_backward(dc, m->g[cb->bn_w], m->g[cb->bn_b], dbo, co, mean, rstd,
                          m->p[cb->bn_w], s->B, s->OC, HW);
    nn_conv2d_backward(dx, m->g[cb->w], NULL, dc, x, m->p[cb->w], s, m->conv_scratch);
}

static void trunk_backward(ResNet *m);

void resnet_backward_features(ResNet *m, const float *dfeat) {
    CHECK(m->train != RESNET_EVAL && m->B > 0, "resnet_backward_features after an eval forward");
    const ResNetConfig *c = &m->cfg;
    memcpy(m->dfeat, dfeat, (size_t)m->B * c->widths[c->n_stages - 1] * sizeof(float));
    trunk_backward(m);
}

void resnet_backward(ResNet *m, const float *dscores) {
    CHECK(m->has_head && m->train != RESNET_EVAL, "resnet_backward after an eval resnet_forward");
    const ResNetConfig *c = &m->cfg;
    const int B = m->B, Cf = c->widths[c->n_stages - 1], Hh = c->head_hidden, D = c->out_dim;
    const int K = c->n_prototypes;
    // head
    nn_zero(m->dzn, (size_t)B * D);
    nn_linear_backward(m->dzn, m->g[m->proto], NULL, dscores, m->zn, m->p[m->proto], B, D, K);
    nn_zero(m->dz, (size_t)B * D);
    nn_l2norm_backward(m->dz, m->dzn, m->zn, m->znorm, B, D);
    nn_zero(m->dhr, (size_t)B * Hh);
    nn_linear_backward(m->dhr, m->g[m->h3_w], m->g[m->h3_b], m->dz, m->hr, m->p[m->h3_w], B, Hh, D);
    nn_zero(m->dhb, (size_t)B * Hh);
    nn_relu_backward(m->dhb, m->dhr, m->hr, (size_t)B * Hh);
    nn_zero(m->dh1, (size_t)B * Hh);
    nn_batchnorm_backward(m->dh1, m->g[m->hbn_w], m->g[m->hbn_b], m->dhb, m->h1, m->hm, m->hs,
                          m->p[m->hbn_w], B, Hh, 1);
    nn_zero(m->dfeat, (size_t)B * Cf);
    nn_linear_backward(m->dfeat, m->g[m->h0_w], m->g[m->h0_b], m->dh1, m->feat, m->p[m->h0_w], B,
                       Cf, Hh);
    trunk_backward(m);
}

// from m->dfeat down to the stem
static void trunk_backward(ResNet *m) {
    const ResNetConfig *c = &m->cfg;
    const int B = m->B, Cf = c->widths[c->n_stages - 1];
    // spatial sizes of every block's input
    int hs[RESNET_MAX_STAGES * RESNET_MAX_BLOCKS + 1], ws[RESNET_MAX_STAGES * RESNET_MAX_BLOCKS + 1];
    ConvShape s0 = at(&m->stem, B, m->H, m->W);
    hs[0] = conv_out_h(&s0);
    ws[0] = conv_out_w(&s0);
    for (int i = 0; i < m->n_blk; i++) {
        ConvShape s1 = at(&m->blk[i].c1, B, hs[i], ws[i]);
        hs[i + 1] = conv_out_h(&s1);
        ws[i + 1] = conv_out_w(&s1);
    }
    // pool: gout (ga) = dfeat / HW over the last block's output
    float *gout = m->ga, *gin = m->gb;
    nn_zero(gout, (size_t)B * Cf * hs[m->n_blk] * ws[m->n_blk]);
    nn_avgpool_backward(gout, m->dfeat, B, Cf, hs[m->n_blk] * ws[m->n_blk]);
    for (int i = m->n_blk - 1; i >= 0; i--) {
        Block *b = &m->blk[i];
        const float *x = i > 0 ? m->blk[i - 1].out : m->x0r;
        ConvShape s1 = at(&b->c1, B, hs[i], ws[i]);
        ConvShape s2 = at(&b->c2, B, hs[i + 1], ws[i + 1]);
        const size_t n = conv_out_n(&s1), nin = (size_t)B * s1.C * hs[i] * ws[i];
        // out = relu(bn2(c2) + shortcut): the gradient of the sum, t1
        nn_zero(m->t1, n);
        nn_relu_backward(m->t1, gout, b->out, n);
        nn_zero(gin, nin);
        // main path: bn2, conv2 (dr1 into gout, free now), relu, bn1, conv1 into gin
        nn_zero(gout, n);
        conv_bn_backward(m, &b->c2, &s2, gout, m->t1, b->r1, b->c2o, b->m2, b->s2, m->t2);
        nn_zero(m->t2, n);
        nn_relu_backward(m->t2, gout, b->r1, n);
        conv_bn_backward(m, &b->c1, &s1, gin, m->t2, x, b->c1o, b->m1, b->s1, gout);
        // shortcut
        if (b->has_ds) {
            ConvShape s3 = at(&b->ds, B, hs[i], ws[i]);
            conv_bn_backward(m, &b->ds, &s3, gin, m->t1, x, b->dso, b->m3, b->s3, m->t2);
        } else {
            nn_add_forward(gin, gin, m->t1, n);
        }
        float *t = gout;
        gout = gin;
        gin = t;
    }
    // stem: relu, bn, conv (no input gradient)
    const size_t n0 = conv_out_n(&s0);
    nn_zero(m->t1, n0);
    nn_relu_backward(m->t1, gout, m->x0r, n0);
    conv_bn_backward(m, &m->stem, &s0, NULL, m->t1, m->images, m->x0c, m->m0, m->s0, m->t2);
}
