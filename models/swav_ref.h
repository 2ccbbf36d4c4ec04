// swav_ref.h: naive double-precision references for models/swav.h, for the tests.
#ifndef CONFLUX_SWAV_REF_H
#define CONFLUX_SWAV_REF_H

void nn_l2norm_forward_ref(double *y, double *norm, const double *x, int N, int D);
void nn_l2norm_backward_ref(double *dx, const double *dy, const double *x, int N, int D);
// one replica holding the whole batch; scratch: none (allocates nothing: Q is q itself)
void swav_sinkhorn_ref(double *q, const double *scores, int B, int K, int iters, double eps);
double swav_loss_forward_ref(const double *scores, const double *q, int V, int A, int B, int K,
                             double temp);
void swav_loss_backward_ref(double *dscores, const double *scores, const double *q, int V, int A,
                            int B, int K, double temp, double scale);

#endif
