// vision_ref.c: see vision_ref.h. Loops follow the definitions; no blocking, no im2col.
#include "models/vision_ref.h"

#include <math.h>

// the input pixel (c, ih, iw) of image b, 0 in the padding
static double pixel(const double *inp, const ConvShape *s, int b, int c, int ih, int iw) {
    if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) return 0.0;
    return inp[(((size_t)b * s->C + c) * s->H + ih) * s->W + iw];
}

void nn_conv2d_forward_ref(double *out, const double *inp, const double *weight,
                           const double *bias, const ConvShape *s) {
    const int OH = conv_out_h(s), OW = conv_out_w(s);
    for (int b = 0; b < s->B; b++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = bias ? bias[oc] : 0.0;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++)
                                acc += weight[(((size_t)oc * s->C + c) * s->KH + kh) * s->KW + kw] *
                                       pixel(inp, s, b, c, oh * s->stride - s->pad + kh,
                                             ow * s->stride - s->pad + kw);
                    out[(((size_t)b * s->OC + oc) * OH + oh) * OW + ow] = acc;
                }
}

void nn_conv2d_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                            const double *inp, const double *weight, const ConvShape *s) {
    const int OH = conv_out_h(s), OW = conv_out_w(s);
    for (int b = 0; b < s->B; b++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const double g = dout[(((size_t)b * s->OC + oc) * OH + oh) * OW + ow];
                    if (dbias) dbias[oc] += g;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                const int ih = oh * s->stride - s->pad + kh;
                                const int iw = ow * s->stride - s->pad + kw;
                                const size_t wi = (((size_t)oc * s->C + c) * s->KH + kh) * s->KW + kw;
                                dweight[wi] += g * pixel(inp, s, b, c, ih, iw);
                                if (dinp && ih >= 0 && ih < s->H && iw >= 0 && iw < s->W)
                                    dinp[(((size_t)b * s->C + c) * s->H + ih) * s->W + iw] += g * weight[wi];
                            }
                }
}

void nn_batchnorm_forward_ref(double *out, double *mean, double *rstd, double *running_mean,
                              double *running_var, const double *inp, const double *weight,
                              const double *bias, int B, int C, int HW, double eps,
                              double momentum) {
    const double n = (double)B * HW;
    for (int c = 0; c < C; c++) {
        double m = 0.0, v = 0.0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) m += inp[((size_t)b * C + c) * HW + i];
        m /= n;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                const double d = inp[((size_t)b * C + c) * HW + i] - m;
                v += d * d;
            }
        const double rs = 1.0 / sqrt(v / n + eps);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                const size_t at = ((size_t)b * C + c) * HW + i;
                out[at] = (inp[at] - m) * rs * weight[c] + bias[c];
            }
        mean[c] = m;
        rstd[c] = rs;
        if (running_mean) {
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * m;
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * v / (n > 1 ? n - 1 : n);
        }
    }
}

void nn_batchnorm_eval_ref(double *out, const double *inp, const double *weight,
                           const double *bias, const double *running_mean,
                           const double *running_var, int B, int C, int HW, double eps) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                const size_t at = ((size_t)b * C + c) * HW + i;
                out[at] = (inp[at] - running_mean[c]) / sqrt(running_var[c] + eps) * weight[c] + bias[c];
            }
}

void nn_batchnorm_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                               const double *inp, const double *mean, const double *rstd,
                               const double *weight, int B, int C, int HW) {
    const double n = (double)B * HW;
    for (int c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                const size_t at = ((size_t)b * C + c) * HW + i;
                sdy += dout[at];
                sdyx += dout[at] * (inp[at] - mean[c]) * rstd[c];
            }
        dweight[c] += sdyx;
        dbias[c] += sdy;
        if (!dinp) continue;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                const size_t at = ((size_t)b * C + c) * HW + i;
                const double xh = (inp[at] - mean[c]) * rstd[c];
                dinp[at] += weight[c] * rstd[c] * (dout[at] - sdy / n - xh * sdyx / n);
            }
    }
}

void nn_relu_forward_ref(double *out, const double *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0 ? inp[i] : 0.0;
}

void nn_relu_backward_ref(double *dinp, const double *dout, const double *out, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (out[i] > 0.0) dinp[i] += dout[i];
}

void nn_avgpool_forward_ref(double *out, const double *inp, int B, int C, int HW) {
    for (size_t r = 0; r < (size_t)B * C; r++) {
        double s = 0.0;
        for (int i = 0; i < HW; i++) s += inp[r * HW + i];
        out[r] = s / HW;
    }
}

void nn_avgpool_backward_ref(double *dinp, const double *dout, int B, int C, int HW) {
    for (size_t r = 0; r < (size_t)B * C; r++)
        for (int i = 0; i < HW; i++) dinp[r * HW + i] += dout[r] / HW;
}
