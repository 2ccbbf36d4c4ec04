// optim.h: AdamW, LAMB and LARS over flat arenas, learning-rate schedules, global-norm
// clipping.
//
// The parameter, gradient and moment arenas share one TensorSpec layout. Weight decay and
// (for LAMB) the trust ratio skip tensors marked no_decay (biases, LayerNorm weights), as
// in BERT/ALBERT's reference optimizers.
//
// Parameter groups (optional): optim_set_group gives the specs from a given index on their
// own learning-rate schedule (lr, schedule, warmup_steps, end_lr, poly_power) and weight
// decay, as BertSumAbs trains a pretrained encoder and a fresh decoder with separate
// learning rates and warm-ups. Moments, betas, eps, clipping (one global norm) and the
// optimizer kind stay shared. Without a group every spec follows cfg, as before.
#ifndef CONFLUX_OPTIM_H
#define CONFLUX_OPTIM_H

#include <stddef.h>

#include "models/tensor.h"

// OPTIM_LARS: SGD with momentum beta1 under layer-wise adaptive rates (You et al. 2017), as
// SwAV trains with apex's LARC (clip off): per tensor, when ||w|| and ||g|| are non-zero,
// g = (g + wd * w) * trust_coef * ||w|| / (||g|| + wd * ||w|| + eps), then buf = beta1 * buf + g
// (buf in m; v unused), w -= lr * buf. Every tensor is adapted; no_decay ones get wd = 0.
typedef enum { OPTIM_ADAMW = 0, OPTIM_LAMB = 1, OPTIM_LARS = 2 } OptimKind;
// SCHED_INVSQRT: linear warm-up to lr, then lr * sqrt(warmup_steps / (step + 1)) (the
// Transformer/"Noam" schedule that BertSumAbs uses, scaled so that lr is its peak; with no
// warm-up, lr / sqrt(step + 1)). It ignores total_steps and end_lr.
// SCHED_COSINE: linear warm-up, then end_lr + (lr - end_lr) * (1 + cos(pi * frac)) / 2 with
// frac the share of the steps after warm-up done (SwAV's schedule).
typedef enum {
    SCHED_LINEAR = 0,
    SCHED_POLY = 1,
    SCHED_CONSTANT = 2,
    SCHED_INVSQRT = 3,
    SCHED_COSINE = 4
} SchedKind;

typedef struct {
    OptimKind kind;
    float lr;            // peak learning rate
    float beta1, beta2, eps;
    float weight_decay;
    float clip_norm;     // global-norm clipping; <= 0 disables
    SchedKind schedule;
    long warmup_steps;   // linear warm-up from 0 to lr
    long total_steps;    // decay reaches end_lr at total_steps
    float end_lr;
    float poly_power;    // SCHED_POLY exponent (1 = linear)
    float trust_coef;    // OPTIM_LARS's trust coefficient (SwAV: 0.001)
} OptimConfig;

typedef struct {
    OptimConfig cfg;
    const TensorSpec *specs;
    int n_specs;
    size_t n;             // arena length (floats)
    float *m, *v;         // first and second moments (arena layout)
    long step;            // optimizer steps taken (the learning-rate schedule's position)
    long moment_steps;    // steps since the moments were zeroed, for Adam's bias correction;
                          // -1 (optim_init): as many as step. A DiLoCo volunteer starts its
                          // moments at zero mid-run and sets 0 (its schedule step jumps with
                          // the rounds; the correction counts the updates its moments saw)
    int group_first;      // > 0: specs [group_first, n_specs) follow group_cfg (optim_set_group)
    OptimConfig group_cfg;
    // Model parallelism (tensor parallelism, mpi/tp_albert.h): the arena holds this rank's
    // parts of the tensors, and the norms the optimizer takes (the global gradient norm,
    // LAMB's per-tensor norms) are sums over the ranks that share the model. reduce_norms
    // sums k values per tensor (sq[i * k + j], each this rank's share of tensor i's squared
    // norm) over those ranks in place, counting parts that several ranks hold once. NULL:
    // the arena holds whole tensors. LARS is not supported with it (optim_step CHECKs).
    void (*reduce_norms)(void *ctx, double *sq, int n_specs, int k);
    void *reduce_ctx;
    double *norm_buf;     // (2 * n_specs) for reduce_norms (optim_set_reduce_norms)
} Optim;

// Validates; -1 with err naming the key (optim.lr, ...).
int optim_config_check(const OptimConfig *c, char *err);
const char *optim_kind_name(OptimKind k);

// Allocates zeroed moments for an arena of n floats laid out by specs.
void optim_init(Optim *o, const OptimConfig *cfg, const TensorSpec *specs, int n_specs, size_t n);
void optim_free(Optim *o);
// Second parameter group: specs [first_spec, n_specs) take their learning-rate schedule
// (lr, schedule, warmup_steps, total_steps, end_lr, poly_power) and weight_decay from g;
// specs before first_spec keep o->cfg. 0 < first_spec < n_specs (CHECKed). The caller has
// validated g (optim_config_check).
void optim_set_group(Optim *o, int first_spec, const OptimConfig *g);
// Sets the model-parallel norm reduction (see Optim.reduce_norms).
void optim_set_reduce_norms(Optim *o, void (*reduce)(void *ctx, double *sq, int n_specs, int k),
                            void *ctx);
// The global gradient norm of o's arena: optim_grad_norm, or with reduce_norms the per-tensor
// squared norms summed over the ranks that share the model.
double optim_global_grad_norm(const Optim *o, const float *grads);
// Learning rate that spec i gets at optimizer step `step` (its group's schedule).
float optim_spec_lr(const Optim *o, int spec, long step);

// Learning rate for optimizer step `step` (0-based: the step about to be taken).
float optim_lr(const OptimConfig *c, long step);

// L2 norm of the gradient arena over the specs (double accumulation in a fixed order that
// does not depend on the thread count; see optim.c). Runs on the pool of models/par.h.
double optim_grad_norm(const float *grads, const TensorSpec *specs, int n_specs);
// x (n) *= s, on the pool (the trainer's 1/tokens scaling of the gradient arena).
void optim_scale(float *x, size_t n, float s);

// One update of params with grads (already averaged over the global batch). Applies
// clipping (grads are scaled in place when their norm exceeds clip_norm) and returns the
// pre-clip gradient norm. Increments o->step.
double optim_step(Optim *o, float *params, float *grads);
// The same with the pre-clip norm already computed (optim_grad_norm of grads), for a
// caller that needed it first; saves a pass over the gradients.
void optim_step_with_norm(Optim *o, float *params, float *grads, double gnorm);

#endif
