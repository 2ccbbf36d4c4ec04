// nn_ref.h: naive double-precision twins of the ops in nn.h, for tests only.
//
// Each *_ref function has the same argument order and semantics as its nn.h namesake, with
// double buffers instead of float ones: backward functions ADD (+=) into gradients, a NULL
// gradient pointer means "not needed", nothing allocates. Dropout (p, seed, offset) keeps
// float p and draws exactly the same cx_rng_uniform numbers as the float op, so the two
// agree element by element when p > 0 (kept values are scaled by 1/(1-(double)p)).
// Attention masking matches nn.c: padding keys get probability exactly 0, and a row whose
// keys are all padding gets probabilities 0.
// These are plain loops written to be obviously correct, not fast: use them in tests.
#ifndef CONFLUX_NN_REF_H
#define CONFLUX_NN_REF_H

#include <stddef.h>
#include <stdint.h>

// out (N,C) = wte[ids[n]] ; wte (V,C)
void nn_embedding_forward_ref(double *out, const int32_t *ids, const double *wte, int N, int C);
// dwte (V,C) += scatter of dout (N,C)
void nn_embedding_backward_ref(double *dwte, const double *dout, const int32_t *ids, int N,
                               int C);

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC, or NULL)
void nn_linear_forward_ref(double *out, const double *inp, const double *weight,
                           const double *bias, int N, int C, int OC);
void nn_linear_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                            const double *inp, const double *weight, int N, int C, int OC);

// out (N,C); mean, rstd (N); biased variance
void nn_layernorm_forward_ref(double *out, double *mean, double *rstd, const double *inp,
                              const double *weight, const double *bias, int N, int C,
                              double eps);
void nn_layernorm_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout,
                               const double *inp, const double *mean, const double *rstd,
                               const double *weight, int N, int C);

// GELU, tanh approximation
void nn_gelu_forward_ref(double *out, const double *inp, size_t n);
void nn_gelu_backward_ref(double *dinp, const double *dout, const double *inp, size_t n);

// element i dropped when cx_rng_uniform(seed, offset + i) < p; kept scaled by 1/(1-p)
void nn_dropout_forward_ref(double *out, const double *inp, size_t n, float p, uint64_t seed,
                            uint64_t offset);
void nn_dropout_backward_ref(double *dinp, const double *dout, size_t n, float p,
                             uint64_t seed, uint64_t offset);

// q, k, v, out (B,T,C); att (B,NH,T,T); mask (B,T) or NULL; scratch >= B*NH*T*T doubles
void nn_attention_forward_ref(double *out, double *att, const double *q, const double *k,
                              const double *v, const int32_t *mask, int B, int T, int C,
                              int NH, float p, uint64_t seed, uint64_t offset,
                              double *scratch);
void nn_attention_backward_ref(double *dq, double *dk, double *dv, const double *dout,
                               const double *q, const double *k, const double *v,
                               const double *att, const int32_t *mask, int B, int T, int C,
                               int NH, float p, uint64_t seed, uint64_t offset,
                               double *scratch);

// returns the sum of -log p[target] over rows with target >= 0; probs may alias logits
double nn_softmax_xent_forward_ref(double *probs, const double *logits, const int32_t *targets,
                                   int N, int V);
void nn_softmax_xent_backward_ref(double *dlogits, const double *probs, const int32_t *targets,
                                  int N, int V, double scale);

void nn_add_forward_ref(double *out, const double *a, const double *b, size_t n);

#endif
