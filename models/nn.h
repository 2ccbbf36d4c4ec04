// nn.h: transformer ops as forward/backward pairs (llm.c style).
//
// Argument order: forward (out, saved..., inp, weights..., dims);
//                 backward (dinp, dweights..., dout, inp, saved..., weights, dims).
// Backward functions ADD (+=) into every gradient they write; the trainer zeroes the
// gradient arena once per optimizer step. A NULL gradient pointer means "not needed".
// Nothing here allocates, does I/O, or keeps state between calls. Every op runs on the pool
// of models/par.h (GEMMs split over it, OpenBLAS on one thread); results are bit-identical
// for any thread count. Element-wise loops are vectorisable.
// Every op has a naive double-precision twin in nn_ref.h that the tests compare against.
#ifndef CONFLUX_NN_H
#define CONFLUX_NN_H

#include <stddef.h>
#include <stdint.h>

// The instruction set of the element-wise kernels in use: "avx512", "avx2" or "sse2"
// (chosen from the CPU at start-up; CONFLUX_ISA=avx2 etc. caps it). Results never depend on it.
const char *nn_isa(void);
// Switches the kernels to name ("avx512", "avx2", "sse2") if this CPU runs it: 0, else -1
// (tests compare the variants; not to be called while ops run).
int nn_set_isa(const char *name);

// out (N,C) = wte[ids[n]] ; ids (N) in [0,V), wte (V,C)
void nn_embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C);
// dwte (V,C) += scatter of dout (N,C) by ids
void nn_embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C);

// out (N,OC) = inp (N,C) @ weight^T + bias ; weight (OC,C) (PyTorch/HF layout), bias (OC) or NULL
void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, int OC);
// dinp (N,C) += dout @ weight ; dweight (OC,C) += dout^T @ inp ; dbias (OC) += sum_n dout
void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC);

// Linear + GELU in one pass over memory: pre (N,OC) = inp @ weight^T + bias (saved for the
// backward), out (N,OC) = gelu(pre), each block of rows activated as soon as the GEMM has
// computed it. Same numbers as nn_linear_forward then nn_gelu_forward.
void nn_linear_gelu_forward(float *pre, float *out, const float *inp, const float *weight,
                            const float *bias, int N, int C, int OC);
// The backward of linear(gelu(pre)) up to pre: dg (N,C) = dout @ weight is OVERWRITTEN
// (scratch, no zeroing needed), dpre (N,C) += dg * gelu'(pre) block by block as the GEMM
// produces it; dweight (OC,C), dbias (OC) += as nn_linear_backward with g = gelu(pre) as its
// input. Same numbers as zeroing dg, nn_linear_backward, then nn_gelu_backward.
void nn_gelu_linear_backward(float *dpre, float *dg, float *dweight, float *dbias,
                             const float *dout, const float *g, const float *pre,
                             const float *weight, int N, int C, int OC);

// out (N,C) = (inp - mean) * rstd * weight + bias ; saves mean (N), rstd (N)
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int N, int C, float eps);
// Residual + layernorm in one pass: res (N,C) = a + b (res may be a or b), then
// out = layernorm(res) as nn_layernorm_forward.
void nn_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                   const float *a, const float *b, const float *weight,
                                   const float *bias, int N, int C, float eps);
void nn_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int N, int C);

// out (n) = 0, out (n) = in (not overlapping), split over the pool: a step's gradient
// buffers and copies, which a single thread would do while the others wait
void nn_zero(float *out, size_t n);
void nn_copy(float *out, const float *in, size_t n);

// GELU, tanh approximation (HF "gelu_new", torch approximate="tanh"); n elements
void nn_gelu_forward(float *out, const float *inp, size_t n);
void nn_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

// Inverted dropout with a counter-based RNG: element i is dropped when
// cx_rng_uniform(seed, offset + i) < p, kept ones are scaled by 1/(1-p). p == 0 copies.
// The backward recomputes the same mask from (seed, offset), so nothing is stored.
void nn_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed,
                        uint64_t offset);
void nn_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed,
                         uint64_t offset);

// Multi-head self-attention core (projections are separate linear ops).
// q, k, v (B,T,C): head h uses columns [h*D, (h+1)*D), D = C/NH.
// mask (B,T): 1 = real token, 0 = padding (keys that are padding get probability 0); NULL = none.
// att (B,NH,T,T): saved softmax probabilities (before dropout).
// Attention-probability dropout (rate p, RNG (seed, offset + index into att)) is applied
// to the probabilities that multiply v; p == 0 disables it.
// out (B,T,C) = dropout(softmax(q k^T / sqrt(D) + maskbias)) v
// scratch: at least B*NH*T*T floats, used by forward and backward (heads run in parallel,
// each chunk of heads in the slice of its first head).
void nn_attention_forward(float *out, float *att, const float *q, const float *k,
                          const float *v, const int32_t *mask, int B, int T, int C, int NH,
                          float p, uint64_t seed, uint64_t offset, float *scratch);
// dq, dk, dv (B,T,C) +=
void nn_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *att,
                           const int32_t *mask, int B, int T, int C, int NH, float p,
                           uint64_t seed, uint64_t offset, float *scratch);

// Self-attention on fused projections: qkv (B,T,3C), each row q | k | v (C columns each: one
// linear layer with the three weight matrices stacked); otherwise as nn_attention_forward,
// with the same results.
void nn_attention_qkv_forward(float *out, float *att, const float *qkv, const int32_t *mask,
                              int B, int T, int C, int NH, float p, uint64_t seed,
                              uint64_t offset, float *scratch);
// dqkv (B,T,3C) = the gradients of q | k | v (overwritten, not accumulated: every element
// is written)
void nn_attention_qkv_backward(float *dqkv, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH, float p,
                               uint64_t seed, uint64_t offset, float *scratch);

// General attention core: Tq queries over Tk keys (cross-attention, causal self-attention,
// and one-query-at-a-time decoding against a key/value cache).
// q (B,Tq,C); k, v (B,Tk,C); head h uses columns [h*D, (h+1)*D), D = C/NH.
// kmask (B,Tk): 1 = real key, 0 = padding (probability 0); NULL = none.
// causal != 0: query i sees only keys j <= i + (Tk - Tq) (the queries are the last Tq
// positions of the key sequence); keys it may not see get probability exactly 0, and a
// query that sees no real key gets all-zero probabilities (output 0).
// att (B,NH,Tq,Tk): saved softmax probabilities (before dropout); probability dropout as in
// nn_attention_forward (rate p, RNG (seed, offset + index into att)).
// scratch: at least B*NH*Tq*Tk floats (as nn_attention_forward's).
// nn_attention_forward is this op with Tq = Tk = T, causal 0.
void nn_attention_ex_forward(float *out, float *att, const float *q, const float *k,
                             const float *v, const int32_t *kmask, int B, int Tq, int Tk, int C,
                             int NH, int causal, float p, uint64_t seed, uint64_t offset,
                             float *scratch);
// dq (B,Tq,C), dk, dv (B,Tk,C) += (any may be NULL); att carries the masks
void nn_attention_ex_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v, const float *att,
                              int B, int Tq, int Tk, int C, int NH, float p, uint64_t seed,
                              uint64_t offset, float *scratch);

// As nn_attention_ex_backward, plus datt (B,NH,Tq,Tk) or NULL: a gradient with respect to
// the attention probabilities att themselves (before dropout), e.g. from a copy
// distribution built on them, added to what flows back from out.
void nn_attention_ex_backward_datt(float *dq, float *dk, float *dv, const float *dout,
                                   const float *datt, const float *q, const float *k,
                                   const float *v, const float *att, int B, int Tq, int Tk, int C,
                                   int NH, float p, uint64_t seed, uint64_t offset,
                                   float *scratch);

// One row: probs (n) = softmax(logits) (probs may equal logits); returns the log-partition
// log(sum exp(logits)) (so log p[i] = logits[i] - lse). Single-threaded (a row is a task).
float nn_softmax_lse(float *probs, const float *logits, int n);

// Softmax cross-entropy over selected rows. logits (N,V); targets (N), a target < 0 means
// "not selected" (ignored). probs (N,V) receives the softmax (may alias logits).
// Returns the SUM of -log p[target] over selected rows (the caller divides by the count).
double nn_softmax_xent_forward(float *probs, const float *logits, const int32_t *targets,
                               int N, int V);
// dlogits (N,V) += scale * (probs - onehot(target)) for selected rows (unselected rows untouched)
void nn_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *targets,
                              int N, int V, float scale);

// Label-smoothed softmax cross-entropy, PyTorch's CrossEntropyLoss(label_smoothing=eps):
// a selected row contributes (1-eps) * -log p[target] + (eps/V) * sum_v -log p[v].
// logits (N,V); targets (N), < 0 = not selected; probs (N,V) receives the softmax (may alias
// logits). Returns the SUM over selected rows. eps == 0 is nn_softmax_xent_forward.
double nn_softmax_xent_smooth_forward(float *probs, const float *logits, const int32_t *targets,
                                      int N, int V, float eps);
// dlogits (N,V) += scale * (probs - (1-eps) onehot(target) - eps/V) for selected rows
void nn_softmax_xent_smooth_backward(float *dlogits, const float *probs, const int32_t *targets,
                                     int N, int V, float eps, float scale);

// out (n) = a + b  (residual connections)
void nn_add_forward(float *out, const float *a, const float *b, size_t n);

#endif
