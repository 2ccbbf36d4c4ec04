// resnet.h: the small ResNet of conflux's SwAV (Fashion-MNIST, 1 x 28 x 28), with SwAV's
// projection head and prototypes, over flat arenas like ALBERT (models/albert.h).
//
//   stem      conv1 3x3 (in -> widths[0]), bn1, ReLU (no max-pool: the images are small)
//   layerS    blocks[S] BasicBlocks of widths[S] channels; the first block of every stage
//             after the first has stride 2 and a 1x1 conv + BN shortcut (downsample.0/.1)
//   pool      global average -> features (B, widths[last])
//   head      projection_head.0 linear -> .1 BatchNorm1d -> ReLU -> .3 linear (out_dim),
//             then L2 normalisation; prototypes.weight (n_prototypes, out_dim), no bias:
//             scores (B, n_prototypes) = z_normalised @ prototypes^T
//
// Parameter names and shapes are torchvision's ResNet and SwAV's resnet50 head (conv
// weights (OC, C, KH, KW); linear weights (out, in)), so a checkpoint loads into PyTorch by
// name. BatchNorm running statistics are buffers, not parameters: the model keeps them
// (resnet_buffers) under torch's names (bn1.running_mean, ...). Batch norm normalises each
// forward call's batch (training mode) and updates the running statistics; eval mode uses
// them. Backward ops add into the gradient arena (the trainer zeroes it per step).
#ifndef CONFLUX_RESNET_H
#define CONFLUX_RESNET_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"

#define RESNET_MAX_STAGES 4
#define RESNET_MAX_BLOCKS 4

typedef struct {
    int in_channels;
    int n_stages;
    int widths[RESNET_MAX_STAGES];
    int blocks[RESNET_MAX_STAGES];
    int head_hidden, out_dim, n_prototypes;
    float bn_eps, bn_momentum;
} ResNetConfig;

typedef struct ResNet ResNet;

// conflux's SwAV model for 28 x 28 images: widths 32/64/128, one block per stage, head
// 256 -> 64, 100 prototypes, BN eps 1e-5 and momentum 0.1 (torch's).
ResNetConfig resnet_default(void);
// 0, or -1 with err naming the key (model.*)
int resnet_config_check(const ResNetConfig *c, char *err);

// A model for batches of up to max_B images of at most max_H x max_W, initialised as
// torchvision does (conv: normal(0, sqrt(2 / fan_out)); BN: weight 1, bias 0; linear and
// prototypes: uniform(+-1/sqrt(fan_in))) from seed; running means 0, variances 1.
ResNet *resnet_create(const ResNetConfig *cfg, int max_B, int max_H, int max_W, uint64_t seed);
void resnet_free(ResNet *m);
// Another model over the same parameter and gradient arenas and buffers (e.g. one per crop
// resolution), with its own activations for batches up to max_B x max_H x max_W.
ResNet *resnet_share(ResNet *m, int max_B, int max_H, int max_W);

const ResNetConfig *resnet_config(const ResNet *m);
const TensorSpec *resnet_specs(const ResNet *m);
int resnet_n_specs(const ResNet *m);
size_t resnet_n_params(const ResNet *m);
float *resnet_params(ResNet *m);
float *resnet_grads(ResNet *m);
// The BatchNorm buffers: specs (running_mean, running_var of every BN, in torch's names) and
// their values; shared with resnet_share's models.
const TensorSpec *resnet_buffer_specs(const ResNet *m, int *n);
float *resnet_buffers(ResNet *m);

// Batch-norm modes of a forward: the running statistics (eval), the batch's statistics with
// the running ones updated (training), or the batch's without touching them (validation
// of a training run: every replica and a resumed run get the same figures).
enum { RESNET_EVAL = 0, RESNET_TRAIN = 1, RESNET_BATCH = 2 };

// images (B, in_channels, H, W); train: one of RESNET_EVAL, RESNET_TRAIN, RESNET_BATCH.
// Returns the pooled features (B, widths[last]).
const float *resnet_features(ResNet *m, const float *images, int B, int H, int W, int train);
// The features, then the head: returns scores (B, n_prototypes); *z, if given, points at the
// normalised projections (B, out_dim).
const float *resnet_forward(ResNet *m, const float *images, int B, int H, int W, int train,
                            const float **z);
// SwAV's prototype normalisation: every row of prototypes.weight to unit L2 norm, in place
// (SwAV's loop does it before each iteration; conflux after each update and once at the
// start, which is the same sequence of states, and keeps the state between steps
// normalised).
void resnet_normalize_prototypes(ResNet *m);

// Sets the running statistics' momentum (cfg.bn_momentum) of m and the models sharing its
// arenas go on with their own: precise BN passes 1 / (k + 1) for the k-th batch (0-based)
// after resnet_reset_bn, which makes the statistics the plain average over the batches.
void resnet_set_bn_momentum(ResNet *m, float momentum);
// Running means to 0 and variances to 1 (the buffers are shared).
void resnet_reset_bn(ResNet *m);

// The backward of the last resnet_forward (RESNET_TRAIN or RESNET_BATCH) from dscores
// (B, n_prototypes): gradients += into the gradient arena.
void resnet_backward(ResNet *m, const float *dscores);
// The backward of the last resnet_features (or resnet_forward) from dfeat (B, widths[last]),
// without the head: a classifier trained on the features (the supervised ceiling).
void resnet_backward_features(ResNet *m, const float *dfeat);

#endif
