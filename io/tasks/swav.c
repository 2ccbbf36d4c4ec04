// swav.c: the SwAV training task (see swav.h).
#include "io/tasks/swav.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/rng.h"

// the image of sample index s
static size_t image_of(SwavTask *t, uint64_t s) {
    const uint64_t n = t->data->n, epoch = s / n, pos = s % n;
    if (t->validation) return (size_t)pos;
    if ((long)epoch != t->perm_epoch) {  // Fisher-Yates from (order seed, epoch)
        const uint64_t es = cx_rng_derive(t->order_seed, epoch);
        for (uint64_t i = 0; i < n; i++) t->perm[i] = (uint32_t)i;
        for (uint64_t i = n - 1; i > 0; i--) {
            const uint64_t j = cx_rng_u64(es, i) % (i + 1);
            const uint32_t tmp = t->perm[i];
            t->perm[i] = t->perm[j];
            t->perm[j] = tmp;
        }
        t->perm_epoch = (long)epoch;
    }
    return t->perm[pos];
}

static double swav_micro_step(void *ctx, uint64_t s0, int B, int backward, int final,
                              long *n_tokens, double *aux_sum) {
    SwavTask *t = ctx;
    (void)final;
    const CropConfig *c = &t->crops;
    const int H = t->data->h, W = t->data->w, V = c->n_global + c->n_small;
    const size_t gs2 = (size_t)c->global_size * c->global_size, ss2 = (size_t)c->small_size * c->small_size;
    for (int b = 0; b < B; b++) {
        const uint64_t sample = s0 + (uint64_t)b;
        const uint8_t *img = t->data->pixels + image_of(t, sample) * (size_t)H * W;
        for (int v = 0; v < V; v++) {
            const ViewDraw d = augment_draw(c, H, W, v, t->view_seed, sample);
            if (v < c->n_global)
                augment_apply(t->views_g + ((size_t)v * B + b) * gs2, c->global_size, img, H, W, &d, c);
            else
                augment_apply(t->views_s + ((size_t)(v - c->n_global) * B + b) * ss2, c->small_size,
                              img, H, W, &d, c);
        }
    }
    const int mode = backward ? RESNET_TRAIN : RESNET_BATCH;
    const double loss = swav_step_run(&t->step, t->g, t->views_g, c->global_size, c->global_size,
                                      t->s, t->views_s, c->small_size, c->small_size, B, mode,
                                      backward, (float)B);
    if (backward && t->global_batch > 0 && (long)(s0 / (uint64_t)t->global_batch) < t->freeze_steps)
        memset(resnet_grads(t->g) + t->proto_off, 0, t->proto_n * sizeof(float));
    *n_tokens = B;
    *aux_sum = 0.0;
    return loss * B;
}

static long swav_count_tokens(void *ctx, uint64_t s0, long n) {
    (void)ctx;
    (void)s0;
    return n;  // one per image
}

void swav_prepare(void *model, float *params) {
    (void)params;  // the model's own arena
    resnet_normalize_prototypes(model);
}

int swav_task_init(SwavTask *t, TrainTask *out, ResNet *model, const Images *data, int MB,
                   const CropConfig *crops, const SwavParams *p, uint64_t view_seed,
                   uint64_t order_seed, int validation, long global_batch, long freeze_steps,
                   char *err) {
    memset(t, 0, sizeof *t);
    const ResNetConfig *rc = resnet_config(model);
    if (rc->in_channels != 1)
        return cx_err(err, "model.in_channels is %d, but image shards hold one channel",
                      rc->in_channels);
    if (data->h < 3 || data->w < 3 || crops->global_size < 3 || crops->small_size < 3)
        return cx_err(err, "images of %dx%d and crops of %d and %d pixels: every side must be "
                      ">= 3", data->h, data->w, crops->global_size, crops->small_size);
    t->data = data;
    t->crops = *crops;
    t->g = model;
    t->MB = MB;
    t->validation = validation;
    t->view_seed = view_seed;
    t->order_seed = order_seed;
    t->perm_epoch = -1;
    t->global_batch = global_batch;
    t->freeze_steps = freeze_steps;
    const TensorSpec *sp = resnet_specs(model);
    const TensorSpec *pr = &sp[resnet_n_specs(model) - 1];
    CHECK(!strcmp(pr->name, "prototypes.weight"), "swav task: the last tensor is %s", pr->name);
    t->proto_off = pr->offset;
    t->proto_n = pr->n;
    if (crops->n_small > 0) t->s = resnet_share(model, crops->n_small * MB, crops->small_size, crops->small_size);
    swav_step_init(&t->step, p, MB, rc->n_prototypes);
    t->views_g = cx_calloc((size_t)crops->n_global * MB * crops->global_size * crops->global_size, sizeof(float));
    t->views_s = cx_calloc((size_t)(crops->n_small > 0 ? crops->n_small : 1) * MB * crops->small_size *
                               crops->small_size, sizeof(float));
    if (!validation) t->perm = cx_calloc(data->n, sizeof(uint32_t));
    *out = (TrainTask){.ctx = t, .params = resnet_params(model), .grads = resnet_grads(model),
                       .n_params = resnet_n_params(model), .specs = resnet_specs(model),
                       .n_specs = resnet_n_specs(model), .micro_batch = MB,
                       .micro_step = swav_micro_step, .count_tokens = swav_count_tokens,
                       .prepare = swav_prepare, .prep_ctx = model};
    return 0;
}

void swav_task_free(SwavTask *t) {
    if (!t) return;
    swav_step_free(&t->step);
    resnet_free(t->s);
    free(t->views_g);
    free(t->views_s);
    free(t->perm);
    memset(t, 0, sizeof *t);
}
