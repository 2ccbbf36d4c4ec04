// vision.h: the ops of a small ResNet (SwAV's encoder): 2-D convolution, batch norm, ReLU,
// global average pooling. Tensors are NCHW float32, as torch; weights as torch.nn.Conv2d
// (OC, C, KH, KW) and torch.nn.BatchNorm2d (C). Forward/backward pairs in llm.c's order;
// backward ops ADD into their gradients (dinp, dweight, dbias +=). Every op runs on the
// pool of models/par.h and gives the same bits for any thread count. Double-precision
// references: models/vision_ref.h.
#ifndef CONFLUX_VISION_H
#define CONFLUX_VISION_H

#include <stddef.h>

// A convolution's shape: input (B,C,H,W), weight (OC,C,KH,KW), zero padding pad on every
// side, stride; no dilation, no groups. Output (B,OC,OH,OW), OH = (H + 2 pad - KH) / stride + 1.
typedef struct {
    int B, C, H, W;
    int OC, KH, KW;
    int stride, pad;
} ConvShape;

int conv_out_h(const ConvShape *s);
int conv_out_w(const ConvShape *s);
// 0, or -1 with err (CX_ERRLEN) naming the bad dimension: positive sizes, stride >= 1,
// 0 <= pad < kernel, a kernel that fits the padded input
int conv_shape_check(const ConvShape *s, char *err);

// Scratch the convolution ops need (floats) when the pool has `threads` threads: one image's
// im2col matrix per thread, and the per-group partial weight gradients of the backward.
size_t nn_conv2d_scratch_floats(const ConvShape *s, int threads);

// out (B,OC,OH,OW) = conv(inp (B,C,H,W), weight) + bias (OC, or NULL). One image per task:
// im2col, then one single-threaded sgemm (OC, C*KH*KW) x (C*KH*KW, OH*OW); a 1x1 convolution
// with stride 1 and no padding multiplies the image in place.
// scratch: nn_conv2d_scratch_floats(s, par_threads()) floats.
void nn_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                       const ConvShape *s, float *scratch);
// dinp (B,C,H,W) (or NULL), dweight (OC,C,KH,KW), dbias (OC) (or NULL) +=. The weight and
// bias gradients sum the images in fixed groups of CONV_GROUP (each group's images in
// order, then the groups in order), whatever the thread count.
void nn_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const ConvShape *s,
                        float *scratch);
#define CONV_GROUP 8

// Batch norm over (B, HW) per channel, training mode: out = (x - mean) * rstd * weight + bias
// with the batch's mean and biased variance (rstd = 1/sqrt(var + eps)), saved in mean, rstd
// (C); running_mean, running_var (C) (or NULL) move by momentum towards the batch's mean and
// unbiased variance, as torch.nn.BatchNorm2d. inp, out (B,C,HW); out may equal inp.
void nn_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                          float *running_var, const float *inp, const float *weight,
                          const float *bias, int B, int C, int HW, float eps, float momentum);
// Inference: the running statistics instead of the batch's. out may equal inp.
void nn_batchnorm_eval(float *out, const float *inp, const float *weight, const float *bias,
                       const float *running_mean, const float *running_var, int B, int C,
                       int HW, float eps);
// dinp (B,C,HW), dweight, dbias (C) += (dinp may be NULL); the backward of the training mode
void nn_batchnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int B, int C, int HW);

// out (n) = max(inp, 0) (out may equal inp); dinp (n) += dout where out > 0
void nn_relu_forward(float *out, const float *inp, size_t n);
void nn_relu_backward(float *dinp, const float *dout, const float *out, size_t n);

// Global average pooling: out (B,C) = the mean of inp (B,C,HW) over HW; dinp += dout / HW
void nn_avgpool_forward(float *out, const float *inp, int B, int C, int HW);
void nn_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW);

#endif
