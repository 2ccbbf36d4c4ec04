// vision_ref.h: naive double-precision references for models/vision.h, written from the
// definitions (direct convolution loops, two-pass statistics), for the tests.
#ifndef CONFLUX_VISION_REF_H
#define CONFLUX_VISION_REF_H

#include <stddef.h>

#include "models/vision.h"

void nn_conv2d_forward_ref(double *out, const double *inp, const double *weight,
                           const double *bias, const ConvShape *s);
void nn_conv2d_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                            const double *inp, const double *weight, const ConvShape *s);
void nn_batchnorm_forward_ref(double *out, double *mean, double *rstd, double *running_mean,
                              double *running_var, const double *inp, const double *weight,
                              const double *bias, int B, int C, int HW, double eps,
                              double momentum);
void nn_batchnorm_eval_ref(double *out, const double *inp, const double *weight,
                           const double *bias, const double *running_mean,
                           const double *running_var, int B, int C, int HW, double eps);
void nn_batchnorm_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                               const double *inp, const double *mean, const double *rstd,
                               const double *weight, int B, int C, int HW);
void nn_relu_forward_ref(double *out, const double *inp, size_t n);
void nn_relu_backward_ref(double *dinp, const double *dout, const double *out, size_t n);
void nn_avgpool_forward_ref(double *out, const double *inp, int B, int C, int HW);
void nn_avgpool_backward_ref(double *dinp, const double *dout, int B, int C, int HW);

#endif
