// swav.h: the SwAV training task: image shards -> multi-crop views (io/images/augment.h) ->
// one SwAV step (models/swav.h) per micro-batch. A sample is one image; its views depend on
// (view seed, sample index, view), so a sample gets new crops every epoch and the same ones
// on whichever participant computes it. Training samples visit the images in a new random
// order every epoch (a permutation drawn from (order seed, epoch)); validation samples in
// order.
//
// Batch norm and Sinkhorn work per micro-batch (ghost batch norm, per-replica statistics as
// DeDLOC's collaborative SwAV): a step's gradient is the sum over its micro-batches, so it
// is the same whichever ranks or volunteers compute them, for a fixed train.micro_batch.
#ifndef CONFLUX_IO_TASKS_SWAV_H
#define CONFLUX_IO_TASKS_SWAV_H

#include <stdint.h>

#include "io/images/augment.h"
#include "io/store/images.h"
#include "models/resnet.h"
#include "models/swav.h"
#include "models/train.h"

typedef struct {
    const Images *data;       // not owned
    CropConfig crops;
    SwavStep step;
    ResNet *g, *s;            // global-view model (not owned), small-view model (owned)
    float *views_g, *views_s;
    int MB, validation;
    uint64_t view_seed, order_seed;
    uint32_t *perm;           // the current epoch's order (training)
    long perm_epoch;
    long global_batch, freeze_steps;  // prototypes' gradient zeroed while step < freeze_steps
    size_t proto_off, proto_n;
} SwavTask;

// A task of micro-batches up to MB images over data, on model (sized for n_global * MB
// global views; the small views get a model sharing its arenas). validation: batch
// statistics without running-statistics updates, images in order, no backward.
// Returns 0, or -1 with err (images smaller than a crop, a channel count the model does
// not take).
int swav_task_init(SwavTask *t, TrainTask *out, ResNet *model, const Images *data, int MB,
                   const CropConfig *crops, const SwavParams *p, uint64_t view_seed,
                   uint64_t order_seed, int validation, long global_batch, long freeze_steps,
                   char *err);
void swav_task_free(SwavTask *t);
// The steps' prepare hook (models/train.h) of every SwAV replica, with the ResNet as its
// context: SwAV's prototype normalisation after each update (and, by the recipe, at the
// start).
void swav_prepare(void *model, float *params);

// ---- features for the linear probe (io/eval/conflux-probe.c) ----
// The pooled features (n, widths[last]) of images[0..n) of im, each whole image normalised as
// the run's views are ([augment] mean and std), through a swav replica r (built, with its
// parameters loaded). First, precise BN: the running statistics are re-estimated as the
// average over bn_batches batches of bn_batch training images (bn_data, evenly spaced), so
// they do not depend on which replica wrote the checkpoint. Returns 0, or -1 with err.
int swav_features(void *replica, const Images *im, size_t n, float *out, const Images *bn_data,
                  int bn_batches, int bn_batch, char *err);

// The supervised ceiling: trains replica r's ResNet trunk with a linear classifier on
// labelled images tr (cross-entropy, one global view per image with the run's augmentation,
// batch images per step, AdamW with a cosine rate), in place of its parameters. Progress
// lines on stderr. Returns 0, or -1 with err.
int swav_supervised(void *replica, const Images *tr, long steps, int batch, uint64_t seed,
                    char *err);

#endif
