// vision.c: convolution, batch norm, ReLU and pooling (see vision.h).
//
// Parallel layout on the pool (models/par.h): the convolution runs one image per task, each
// image's product a single-threaded sgemm over its im2col matrix (one per thread, in the
// scratch slot of the thread that runs it); the weight gradient, a sum over images, is
// summed per fixed group of images and the groups in order, so its bits do not depend on the
// thread count. Batch norm runs one channel per task; its sums over a channel add each
// image's plane (VL partial sums in float) into a double, in image order.
#include "models/vision.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "models/common.h"
#include "models/par.h"

#define VL 16

int conv_out_h(const ConvShape *s) { return (s->H + 2 * s->pad - s->KH) / s->stride + 1; }
int conv_out_w(const ConvShape *s) { return (s->W + 2 * s->pad - s->KW) / s->stride + 1; }

int conv_shape_check(const ConvShape *s, char *err) {
    const struct { const char *name; int v; } pos[] = {
        {"batch", s->B}, {"channels", s->C}, {"height", s->H}, {"width", s->W},
        {"output channels", s->OC}, {"kernel height", s->KH}, {"kernel width", s->KW},
        {"stride", s->stride}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v < 1) return cx_err(err, "convolution %s must be >= 1 (got %d)", pos[i].name, pos[i].v);
    if (s->pad < 0 || s->pad >= s->KH || s->pad >= s->KW)
        return cx_err(err, "convolution padding must be in [0, kernel size) (got %d for %dx%d)",
                      s->pad, s->KH, s->KW);
    if (s->H + 2 * s->pad < s->KH || s->W + 2 * s->pad < s->KW)
        return cx_err(err, "convolution kernel %dx%d is larger than the padded input %dx%d", s->KH,
                      s->KW, s->H + 2 * s->pad, s->W + 2 * s->pad);
    return 0;
}

// a 1x1 convolution with stride 1 and no padding: the image is its own im2col matrix
static int conv_is_pointwise(const ConvShape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

static size_t conv_cols(const ConvShape *s) {
    return (size_t)s->C * s->KH * s->KW * conv_out_h(s) * conv_out_w(s);
}

static int conv_groups(const ConvShape *s) { return (s->B + CONV_GROUP - 1) / CONV_GROUP; }

size_t nn_conv2d_scratch_floats(const ConvShape *s, int threads) {
    const size_t wsz = (size_t)s->OC * s->C * s->KH * s->KW + (size_t)s->OC;
    return (size_t)threads * 2 * conv_cols(s) + (size_t)conv_groups(s) * wsz;
}

// cols (C*KH*KW, OH*OW): row (c, kh, kw), column (oh, ow) = img (C,H,W) at
// (c, oh*stride - pad + kh, ow*stride - pad + kw), 0 outside the image
static void im2col(float *restrict cols, const float *restrict img, const ConvShape *s, int OH,
                   int OW) {
    const int H = s->H, W = s->W;
    float *row = cols;
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++, row += (size_t)OH * OW)
                for (int oh = 0; oh < OH; oh++) {
                    float *o = row + (size_t)oh * OW;
                    const int ih = oh * s->stride - s->pad + kh;
                    if (ih < 0 || ih >= H) {
                        memset(o, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *in = img + ((size_t)c * H + ih) * W;
                    for (int ow = 0; ow < OW; ow++) {
                        const int iw = ow * s->stride - s->pad + kw;
                        o[ow] = iw >= 0 && iw < W ? in[iw] : 0.0f;
                    }
                }
}

// the adjoint of im2col: img (C,H,W) += every cols entry at the pixel it was read from
static void col2im_add(float *restrict img, const float *restrict cols, const ConvShape *s,
                       int OH, int OW) {
    const int H = s->H, W = s->W;
    const float *row = cols;
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++, row += (size_t)OH * OW)
                for (int oh = 0; oh < OH; oh++) {
                    const int ih = oh * s->stride - s->pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *o = row + (size_t)oh * OW;
                    float *in = img + ((size_t)c * H + ih) * W;
                    for (int ow = 0; ow < OW; ow++) {
                        const int iw = ow * s->stride - s->pad + kw;
                        if (iw >= 0 && iw < W) in[iw] += o[ow];
                    }
                }
}

typedef struct {
    const ConvShape *s;
    float *out, *dinp, *dweight, *dbias, *scratch;
    const float *inp, *weight, *bias, *dout;
    int OH, OW;
} ConvTask;

static void conv_fwd_images(void *ctx, int tid, size_t lo, size_t hi) {
    const ConvTask *t = ctx;
    const ConvShape *s = t->s;
    const int OHW = t->OH * t->OW, CKK = s->C * s->KH * s->KW;
    float *cols = t->scratch + (size_t)tid * 2 * conv_cols(s);
    for (size_t b = lo; b < hi; b++) {
        const float *img = t->inp + b * (size_t)s->C * s->H * s->W;
        float *o = t->out + b * (size_t)s->OC * OHW;
        const float *A = img;
        if (!conv_is_pointwise(s)) {
            im2col(cols, img, s, t->OH, t->OW);
            A = cols;
        }
        if (t->bias)
            for (int oc = 0; oc < s->OC; oc++)
                for (int i = 0; i < OHW; i++) o[(size_t)oc * OHW + i] = t->bias[oc];
        // o (OC, OHW) = weight (OC, CKK) @ cols (CKK, OHW) (+ bias)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, OHW, CKK, 1.0f, t->weight,
                    CKK, A, OHW, t->bias ? 1.0f : 0.0f, o, OHW);
    }
}

void nn_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                       const ConvShape *s, float *scratch) {
    double t0 = par_prof_begin();
    ConvTask t = {.s = s, .out = out, .inp = inp, .weight = weight, .bias = bias,
                  .scratch = scratch, .OH = conv_out_h(s), .OW = conv_out_w(s)};
    par_run((size_t)s->B, 1, conv_fwd_images, &t);
    par_prof_end(PAR_PROF_GEMM, t0);
}

// groups [lo, hi) of CONV_GROUP images: each group's weight and bias gradients into its own
// slot (its images in order); the input gradient of each image
static void conv_bwd_groups(void *ctx, int tid, size_t lo, size_t hi) {
    const ConvTask *t = ctx;
    const ConvShape *s = t->s;
    const int OHW = t->OH * t->OW, CKK = s->C * s->KH * s->KW;
    const size_t ncols = conv_cols(s), wn = (size_t)s->OC * CKK;
    float *cols = t->scratch + (size_t)tid * 2 * ncols, *dcols = cols + ncols;
    float *slots = t->scratch + (size_t)par_threads() * 2 * ncols;
    const int pw = conv_is_pointwise(s);
    for (size_t g = lo; g < hi; g++) {
        float *pdw = slots + g * (wn + (size_t)s->OC), *pdb = pdw + wn;
        memset(pdw, 0, (wn + (size_t)s->OC) * sizeof(float));
        const int b0 = (int)g * CONV_GROUP, b1 = b0 + CONV_GROUP < s->B ? b0 + CONV_GROUP : s->B;
        for (int b = b0; b < b1; b++) {
            const float *img = t->inp + (size_t)b * s->C * s->H * s->W;
            const float *dy = t->dout + (size_t)b * s->OC * OHW;
            const float *A = img;
            if (!pw) {
                im2col(cols, img, s, t->OH, t->OW);
                A = cols;
            }
            // dweight (OC, CKK) += dy (OC, OHW) @ cols^T (OHW, CKK)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->OC, CKK, OHW, 1.0f, dy, OHW,
                        A, OHW, 1.0f, pdw, CKK);
            for (int oc = 0; oc < s->OC; oc++) {
                const float *r = dy + (size_t)oc * OHW;
                float acc[VL] = {0}, sum = 0.0f;
                int i = 0;
                for (; i + VL <= OHW; i += VL)
                    for (int j = 0; j < VL; j++) acc[j] += r[i + j];
                for (; i < OHW; i++) sum += r[i];
                for (int j = 0; j < VL; j++) sum += acc[j];
                pdb[oc] += sum;
            }
            if (!t->dinp) continue;
            float *dimg = t->dinp + (size_t)b * s->C * s->H * s->W;
            // dcols (CKK, OHW) = weight^T (CKK, OC) @ dy (OC, OHW), back onto the pixels
            if (pw) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, OHW, s->OC, 1.0f,
                            t->weight, CKK, dy, OHW, 1.0f, dimg, OHW);
            } else {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, OHW, s->OC, 1.0f,
                            t->weight, CKK, dy, OHW, 0.0f, dcols, OHW);
                col2im_add(dimg, dcols, s, t->OH, t->OW);
            }
        }
    }
}

// dweight, dbias elements [lo, hi) += the groups' slots, in group order
static void conv_bwd_reduce(void *ctx, int tid, size_t lo, size_t hi) {
    const ConvTask *t = ctx;
    const ConvShape *s = t->s;
    (void)tid;
    const size_t wn = (size_t)s->OC * s->C * s->KH * s->KW, stride = wn + (size_t)s->OC;
    const float *slots = t->scratch + (size_t)par_threads() * 2 * conv_cols(s);
    const int G = conv_groups(s);
    for (size_t i = lo; i < hi; i++) {
        float *dst = i < wn ? t->dweight + i : t->dbias ? t->dbias + (i - wn) : NULL;
        if (!dst) continue;
        float acc = *dst;
        for (int g = 0; g < G; g++) acc += slots[(size_t)g * stride + i];
        *dst = acc;
    }
}

void nn_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const ConvShape *s,
                        float *scratch) {
    double t0 = par_prof_begin();
    ConvTask t = {.s = s, .dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout,
                  .inp = inp, .weight = weight, .scratch = scratch, .OH = conv_out_h(s),
                  .OW = conv_out_w(s)};
    par_run((size_t)conv_groups(s), 1, conv_bwd_groups, &t);
    const size_t wn = (size_t)s->OC * s->C * s->KH * s->KW;
    par_run(wn + (size_t)s->OC, 1024, conv_bwd_reduce, &t);
    par_prof_end(PAR_PROF_GEMM, t0);
}

// ---------------------------------------------------------------------------------------
// batch norm

// sum of x (n) in VL partial sums
static float plane_sum(const float *restrict x, int n) {
    float acc[VL] = {0}, s = 0.0f;
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) acc[j] += x[i + j];
    for (; i < n; i++) s += x[i];
    for (int j = 0; j < VL; j++) s += acc[j];
    return s;
}

// sum of (x - m)^2 over x (n) in VL partial sums
static float plane_sqdev(const float *restrict x, int n, float m) {
    float acc[VL] = {0}, s = 0.0f;
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) {
            float d = x[i + j] - m;
            acc[j] += d * d;
        }
    for (; i < n; i++) s += (x[i] - m) * (x[i] - m);
    for (int j = 0; j < VL; j++) s += acc[j];
    return s;
}

typedef struct {
    float *out, *mean, *rstd, *rmean, *rvar, *dinp, *dweight, *dbias;
    const float *inp, *weight, *bias, *dout, *cmean, *crstd, *cvar;
    int B, C, HW;
    float eps, momentum;
} BnTask;

static void bn_fwd_channels(void *ctx, int tid, size_t lo, size_t hi) {
    const BnTask *t = ctx;
    (void)tid;
    const int HW = t->HW;
    const double n = (double)t->B * HW;
    for (size_t c = lo; c < hi; c++) {
        double s = 0.0;
        for (int b = 0; b < t->B; b++) s += plane_sum(t->inp + ((size_t)b * t->C + c) * HW, HW);
        const float m = (float)(s / n);
        double v = 0.0;
        for (int b = 0; b < t->B; b++) v += plane_sqdev(t->inp + ((size_t)b * t->C + c) * HW, HW, m);
        const float rs = (float)(1.0 / sqrt(v / n + t->eps));
        const float w = t->weight[c], bias = t->bias[c];
        for (int b = 0; b < t->B; b++) {
            const float *x = t->inp + ((size_t)b * t->C + c) * HW;
            float *o = t->out + ((size_t)b * t->C + c) * HW;
            for (int i = 0; i < HW; i++) o[i] = (x[i] - m) * rs * w + bias;
        }
        t->mean[c] = m;
        t->rstd[c] = rs;
        if (t->rmean) {
            const float mo = t->momentum;
            t->rmean[c] = (1.0f - mo) * t->rmean[c] + mo * m;
            const double unbiased = n > 1.0 ? v / (n - 1.0) : v / n;
            t->rvar[c] = (1.0f - mo) * t->rvar[c] + mo * (float)unbiased;
        }
    }
}

void nn_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                          float *running_var, const float *inp, const float *weight,
                          const float *bias, int B, int C, int HW, float eps, float momentum) {
    assert((running_mean == NULL) == (running_var == NULL));
    double t0 = par_prof_begin();
    BnTask t = {.out = out, .mean = mean, .rstd = rstd, .rmean = running_mean,
                .rvar = running_var, .inp = inp, .weight = weight, .bias = bias, .B = B, .C = C,
                .HW = HW, .eps = eps, .momentum = momentum};
    par_run((size_t)C, 1, bn_fwd_channels, &t);
    par_prof_end(PAR_PROF_LAYERNORM, t0);
}

static void bn_eval_channels(void *ctx, int tid, size_t lo, size_t hi) {
    const BnTask *t = ctx;
    (void)tid;
    for (size_t c = lo; c < hi; c++) {
        const float m = t->cmean[c], rs = (float)(1.0 / sqrt((double)t->cvar[c] + t->eps));
        const float w = t->weight[c], bias = t->bias[c];
        for (int b = 0; b < t->B; b++) {
            const float *x = t->inp + ((size_t)b * t->C + c) * t->HW;
            float *o = t->out + ((size_t)b * t->C + c) * t->HW;
            for (int i = 0; i < t->HW; i++) o[i] = (x[i] - m) * rs * w + bias;
        }
    }
}

void nn_batchnorm_eval(float *out, const float *inp, const float *weight, const float *bias,
                       const float *running_mean, const float *running_var, int B, int C,
                       int HW, float eps) {
    double t0 = par_prof_begin();
    BnTask t = {.out = out, .inp = inp, .weight = weight, .bias = bias, .cmean = running_mean,
                .cvar = running_var, .B = B, .C = C, .HW = HW, .eps = eps};
    par_run((size_t)C, 1, bn_eval_channels, &t);
    par_prof_end(PAR_PROF_LAYERNORM, t0);
}

static void bn_bwd_channels(void *ctx, int tid, size_t lo, size_t hi) {
    const BnTask *t = ctx;
    (void)tid;
    const int HW = t->HW;
    const double n = (double)t->B * HW;
    for (size_t c = lo; c < hi; c++) {
        const float m = t->cmean[c], rs = t->crstd[c];
        // sums over the channel: dy and dy * xhat
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < t->B; b++) {
            const size_t at = ((size_t)b * t->C + c) * HW;
            const float *x = t->inp + at, *dy = t->dout + at;
            float a1[VL] = {0}, a2[VL] = {0}, s1 = 0.0f, s2 = 0.0f;
            int i = 0;
            for (; i + VL <= HW; i += VL)
                for (int j = 0; j < VL; j++) {
                    a1[j] += dy[i + j];
                    a2[j] += dy[i + j] * ((x[i + j] - m) * rs);
                }
            for (; i < HW; i++) {
                s1 += dy[i];
                s2 += dy[i] * ((x[i] - m) * rs);
            }
            for (int j = 0; j < VL; j++) {
                s1 += a1[j];
                s2 += a2[j];
            }
            sdy += s1;
            sdyx += s2;
        }
        t->dweight[c] += (float)sdyx;
        t->dbias[c] += (float)sdy;
        if (!t->dinp) continue;
        // dx = w * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
        const float k = t->weight[c] * rs, mdy = (float)(sdy / n), mdyx = (float)(sdyx / n);
        for (int b = 0; b < t->B; b++) {
            const size_t at = ((size_t)b * t->C + c) * HW;
            const float *x = t->inp + at, *dy = t->dout + at;
            float *dx = t->dinp + at;
            for (int i = 0; i < HW; i++) dx[i] += k * (dy[i] - mdy - (x[i] - m) * rs * mdyx);
        }
    }
}

void nn_batchnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int B, int C, int HW) {
    double t0 = par_prof_begin();
    BnTask t = {.dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout, .inp = inp,
                .cmean = mean, .crstd = rstd, .weight = weight, .B = B, .C = C, .HW = HW};
    par_run((size_t)C, 1, bn_bwd_channels, &t);
    par_prof_end(PAR_PROF_LAYERNORM, t0);
}

// ---------------------------------------------------------------------------------------
// ReLU, pooling

typedef struct {
    float *out;
    const float *a, *b;
    int HW;
} VisEwTask;

static void relu_fwd_block(void *ctx, int tid, size_t lo, size_t hi) {
    const VisEwTask *e = ctx;
    (void)tid;
    for (size_t i = lo; i < hi; i++) e->out[i] = e->a[i] > 0.0f ? e->a[i] : 0.0f;
}

void nn_relu_forward(float *out, const float *inp, size_t n) {
    double t0 = par_prof_begin();
    VisEwTask e = {.out = out, .a = inp};
    par_run(n, 4096, relu_fwd_block, &e);
    par_prof_end(PAR_PROF_GELU, t0);
}

static void relu_bwd_block(void *ctx, int tid, size_t lo, size_t hi) {
    const VisEwTask *e = ctx;
    (void)tid;
    for (size_t i = lo; i < hi; i++) e->out[i] += e->b[i] > 0.0f ? e->a[i] : 0.0f;
}

void nn_relu_backward(float *dinp, const float *dout, const float *out, size_t n) {
    double t0 = par_prof_begin();
    VisEwTask e = {.out = dinp, .a = dout, .b = out};
    par_run(n, 4096, relu_bwd_block, &e);
    par_prof_end(PAR_PROF_GELU, t0);
}

static void pool_fwd_rows(void *ctx, int tid, size_t lo, size_t hi) {
    const VisEwTask *e = ctx;
    (void)tid;
    for (size_t r = lo; r < hi; r++)
        e->out[r] = plane_sum(e->a + r * (size_t)e->HW, e->HW) / (float)e->HW;
}

void nn_avgpool_forward(float *out, const float *inp, int B, int C, int HW) {
    VisEwTask e = {.out = out, .a = inp, .HW = HW};
    par_run((size_t)B * C, 16, pool_fwd_rows, &e);
}

static void pool_bwd_rows(void *ctx, int tid, size_t lo, size_t hi) {
    const VisEwTask *e = ctx;
    (void)tid;
    for (size_t r = lo; r < hi; r++) {
        const float g = e->a[r] / (float)e->HW;
        float *d = e->out + r * (size_t)e->HW;
        for (int i = 0; i < e->HW; i++) d[i] += g;
    }
}

void nn_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW) {
    VisEwTask e = {.out = dinp, .a = dout, .HW = HW};
    par_run((size_t)B * C, 16, pool_bwd_rows, &e);
}
