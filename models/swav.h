// swav.h: SwAV's head and objective (Caron et al. 2020): L2-normalised projections, codes
// from Sinkhorn-Knopp over the prototype scores, and the swapped-prediction loss. Float
// ops with double internals where the sums are long; references: models/swav_ref.h.
#ifndef CONFLUX_SWAV_H
#define CONFLUX_SWAV_H

#include <stddef.h>

// Rows of x (N,D): y = x / max(||x||, 1e-12) (torch.nn.functional.normalize), norm (N) =
// max(||x||, 1e-12) saved for the backward. y may equal x.
void nn_l2norm_forward(float *y, float *norm, const float *x, int N, int D);
// dx (N,D) += (dy - y * (y . dy)) / norm, row by row (the clamp's region gets dy / 1e-12
// without the projection, as torch: there ||x|| < 1e-12 and y = x / 1e-12)
void nn_l2norm_backward(float *dx, const float *dy, const float *y, const float *norm, int N,
                        int D);

// Reduces a vector across the replicas whose samples form the batch, in place (n doubles):
// op SWAV_SUM sums, SWAV_MAX takes the maximum. NULL when this process holds the whole batch.
enum { SWAV_SUM, SWAV_MAX };
typedef void (*SwavReduce)(void *ctx, double *x, int n, int op);

// Sinkhorn-Knopp as SwAV's distributed_sinkhorn: Q (K,Btot) = exp(scores / eps)^T scaled to
// sum 1, then `iters` times: each prototype's row to 1/K, each sample's column to 1/Btot;
// codes q (B,K) = Q^T * Btot, so each sample's codes sum to 1. scores (B,K) are this
// replica's B samples of the batch's Btot; reduce sums the total and the prototypes' row sums
// over the replicas (in double). Each step ends in a normalisation, so the constant factors
// (1/K, 1/Btot, Btot) cancel and are not applied: only the row sums need the other replicas.
// exp(scores / eps) is taken relative to the largest score of all replicas, which cancels in
// the first normalisation. scratch: B*K + K + 1 doubles. Returns 0, or -1 when a sum is not
// a positive finite number (scores NaN or infinite; q is then left unwritten).
int swav_sinkhorn(float *q, const float *scores, int B, int K, int iters, float eps,
                  SwavReduce reduce, void *ctx, double *scratch);

// Swapped prediction over V crops of the same B images: scores (V,B,K) are the prototype
// scores of every crop, q (A,B,K) the codes of the first A crops (the global ones). The
// loss is  1/A sum_a 1/(V-1) sum_{v != a} 1/B sum_b -sum_k q[a,b,k] log softmax(scores[v,b] / temp)_k.
// probs (V,B,K) = softmax(scores / temp), saved for the backward. Returns the loss (double).
double swav_loss_forward(float *probs, const float *scores, const float *q, int V, int A, int B,
                         int K, float temp);
// dscores (V,B,K) += scale * dloss/dscores
void swav_loss_backward(float *dscores, const float *probs, const float *q, int V, int A, int B,
                        int K, float temp, float scale);

#endif

// ---- one SwAV step over prepared views ----
struct ResNet;

typedef struct {
    int n_global, n_small;  // views per image (the first n_global are the global crops, whose
                            // codes are the targets: A = n_global)
    int sinkhorn_iters;     // 3
    float sinkhorn_eps;     // 0.05
    float temperature;      // 0.1
} SwavParams;

// Work buffers for micro-batches of up to max_B images and K prototypes.
typedef struct {
    SwavParams p;
    int max_B, K;
    float *scores, *q, *probs, *dscores;  // (V, B, K), (A, B, K), (V, B, K), (V, B, K)
    double *sk;                           // Sinkhorn's scratch
} SwavStep;

void swav_step_init(SwavStep *st, const SwavParams *p, int max_B, int K);
void swav_step_free(SwavStep *st);
// The loss of B images' views and, when backward, its gradient added into the models'
// gradient arena: views_g (n_global * B images of hg x wg, view-major: view v of image b at
// v * B + b) through g, views_s (n_small * B of hs x ws) through s (NULL when n_small is 0);
// codes per this micro-batch (Sinkhorn over its B images of each global view); the loss
// averaged over the images (swav_loss_forward), the gradient that of the loss times
// grad_scale. train: the batch-norm mode (RESNET_TRAIN, RESNET_BATCH, RESNET_EVAL of
// models/resnet.h; a backward needs one of the first two). Returns the loss, or NAN when
// Sinkhorn fails (non-finite scores).
double swav_step_run(SwavStep *st, struct ResNet *g, const float *views_g, int hg, int wg,
                     struct ResNet *s, const float *views_s, int hs, int ws, int B, int train,
                     int backward, float grad_scale);
