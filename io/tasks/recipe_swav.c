// recipe_swav.c: SwAV self-supervised pretraining of the small ResNet on image shards
// (conflux-swav), as every participant builds it (io/tasks/recipe.h). Model:
// models/resnet.h; objective: models/swav.h; task: io/tasks/swav.h; data: io/store/images.h
// (make fashion-mnist).
//
// Seeds, derived from train.seed: 1 the training order, 2 the model's initialisation, 3 the
// views; validation uses view seed 777 and the images in order.
//
// Batch norm: per micro-batch statistics on every participant (see io/tasks/swav.h); the
// running statistics are each replica's own and are not checkpointed: the linear probe
// re-estimates them from training images with the trained weights (precise BN).
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/run/config.h"
#include "io/store/images.h"
#include "io/tasks/recipe.h"
#include "io/tasks/swav.h"
#include "models/common.h"
#include "models/nn.h"
#include "models/optim.h"
#include "models/rng.h"

extern const Recipe recipe_swav;

typedef struct {
    ResNetConfig model;
    OptimConfig optim;
    struct {
        char train[CFG_PATH_LEN], valid[CFG_PATH_LEN];
    } data;
    CropConfig augment;
    struct {
        int sinkhorn_iters;
        float epsilon, temperature;
        long freeze_prototypes_steps;
    } swav;
    TrainSettings train;
    struct {
        char dir[CFG_PATH_LEN];
    } run;
} SwavConfig;

#define F(sec, key, type, field) {sec, key, type, offsetof(SwavConfig, field), 0, NULL, NULL}
#define S(sec, key, field, len) {sec, key, CFG_STR, offsetof(SwavConfig, field), len, NULL, NULL}
static const CfgKey KEYS[] = {
    F("model", "in_channels", CFG_INT, model.in_channels),
    F("model", "stages", CFG_INT, model.n_stages),
    F("model", "width1", CFG_INT, model.widths[0]),
    F("model", "width2", CFG_INT, model.widths[1]),
    F("model", "width3", CFG_INT, model.widths[2]),
    F("model", "width4", CFG_INT, model.widths[3]),
    F("model", "blocks1", CFG_INT, model.blocks[0]),
    F("model", "blocks2", CFG_INT, model.blocks[1]),
    F("model", "blocks3", CFG_INT, model.blocks[2]),
    F("model", "blocks4", CFG_INT, model.blocks[3]),
    F("model", "head_hidden", CFG_INT, model.head_hidden),
    F("model", "out_dim", CFG_INT, model.out_dim),
    F("model", "prototypes", CFG_INT, model.n_prototypes),
    F("model", "bn_eps", CFG_FLOAT, model.bn_eps),
    F("model", "bn_momentum", CFG_FLOAT, model.bn_momentum),
    CFG_OPTIM_KEYS(SwavConfig, "optim", optim),
    S("data", "train", data.train, CFG_PATH_LEN),
    S("data", "valid", data.valid, CFG_PATH_LEN),
    F("augment", "n_global", CFG_INT, augment.n_global),
    F("augment", "global_size", CFG_INT, augment.global_size),
    F("augment", "global_min_scale", CFG_FLOAT, augment.global_min_scale),
    F("augment", "global_max_scale", CFG_FLOAT, augment.global_max_scale),
    F("augment", "n_small", CFG_INT, augment.n_small),
    F("augment", "small_size", CFG_INT, augment.small_size),
    F("augment", "small_min_scale", CFG_FLOAT, augment.small_min_scale),
    F("augment", "small_max_scale", CFG_FLOAT, augment.small_max_scale),
    F("augment", "flip_p", CFG_FLOAT, augment.flip_p),
    F("augment", "jitter_p", CFG_FLOAT, augment.jitter_p),
    F("augment", "brightness", CFG_FLOAT, augment.brightness),
    F("augment", "contrast", CFG_FLOAT, augment.contrast),
    F("augment", "mean", CFG_FLOAT, augment.mean),
    F("augment", "std", CFG_FLOAT, augment.std),
    F("swav", "sinkhorn_iters", CFG_INT, swav.sinkhorn_iters),
    F("swav", "epsilon", CFG_FLOAT, swav.epsilon),
    F("swav", "temperature", CFG_FLOAT, swav.temperature),
    F("swav", "freeze_prototypes_steps", CFG_LONG, swav.freeze_prototypes_steps),
    CFG_TRAIN_KEYS(SwavConfig, train),
    S("run", "dir", run.dir, CFG_PATH_LEN),
};
#undef F
#undef S
static const CfgSchema SWAV_SCHEMA = {KEYS, sizeof KEYS / sizeof KEYS[0]};

static void swav_config_defaults(Replica *r) {
    SwavConfig *c = r->cfg;
    memset(c, 0, sizeof *c);
    c->model = resnet_default();  // stages beyond n_stages: 256 channels, 1 block
    c->model.widths[3] = 256;
    c->model.blocks[3] = 1;
    // SwAV's LARS at batch 256 (base lr 0.6, final 0.0006, weight decay 1e-6), cosine
    c->optim = (OptimConfig){.kind = OPTIM_LARS, .lr = 0.6f, .beta1 = 0.9f, .beta2 = 0.999f,
                             .eps = 1e-8f, .weight_decay = 1e-6f, .clip_norm = 0.0f,
                             .schedule = SCHED_COSINE, .warmup_steps = 100, .total_steps = 2000,
                             .end_lr = 0.0006f, .poly_power = 1.0f, .trust_coef = 0.001f};
    snprintf(c->data.train, CFG_PATH_LEN, "build/data/fashion/train.h5");
    snprintf(c->data.valid, CFG_PATH_LEN, "build/data/fashion/test.h5");
    c->augment = augment_default();
    c->swav.sinkhorn_iters = 3;
    c->swav.epsilon = 0.05f;
    c->swav.temperature = 0.1f;
    c->swav.freeze_prototypes_steps = 100;
    c->train.global_batch = 256;
    c->train.micro_batch = 64;
    c->train.steps = 2000;
    c->train.seed = 1234;
    c->train.eval_every = 200;
    c->train.eval_samples = 1024;
    c->train.checkpoint_every = 200;
    c->train.threads = 0;
    c->train.log_every = 10;
    c->train.replica_check_every = 0;
    diloco_config_defaults(&c->train.avg);
    snprintf(c->run.dir, CFG_PATH_LEN, "runs/swav");
    r->train = &c->train;
    r->run_dir = c->run.dir;
    r->data_train = c->data.train;
}

static int swav_config_check(const void *cfg, char *err) {
    const SwavConfig c = *(const SwavConfig *)cfg;
    if (resnet_config_check(&c.model, err) ||
        optim_config_check(&c.optim, err) || augment_check(&c.augment, err) ||
        train_settings_check(&c.train, err))
        return -1;
    if (c.swav.sinkhorn_iters < 1 || c.swav.sinkhorn_iters > 100)
        return cx_err(err, "swav.sinkhorn_iters must be in [1, 100] (got %d)", c.swav.sinkhorn_iters);
    if (!(c.swav.epsilon > 0.0f)) return cx_err(err, "swav.epsilon must be > 0");
    if (!(c.swav.temperature > 0.0f)) return cx_err(err, "swav.temperature must be > 0");
    if (c.swav.freeze_prototypes_steps < 0) return cx_err(err, "swav.freeze_prototypes_steps must be >= 0");
    if (c.augment.n_global < 2)
        return cx_err(err, "augment.n_global must be >= 2: SwAV predicts each global view's codes "
                      "from the other views");
    if (!c.data.train[0]) return cx_err(err, "data.train is empty");
    return 0;
}

static int swav_config_is(const char *text) { return cfg_text_has_section(text, "swav"); }

typedef struct {
    Images data, valid_data;
    SwavTask task, valid_task;
    int have_data, have_valid, have_task, have_valid_task;
} SwavRun;

static int swav_build(Replica *r, ReplicaKind kind, char *err) {
    SwavConfig *c = r->cfg;
    SwavRun *a = cx_calloc(1, sizeof *a);
    r->impl = a;
    c->optim.total_steps = c->train.steps;
    const uint64_t seed = (uint64_t)c->train.seed;
    const int MB = kind == REPLICA_BARE || kind == REPLICA_BRIDGE ? 1 : c->train.micro_batch;
    if (kind != REPLICA_BARE) {
        if (images_read(&a->data, c->data.train, err) != 0) return -1;
        a->have_data = 1;
        r->n_examples = a->data.n;
    }
    if (kind == REPLICA_TRAINER && c->data.valid[0] && c->train.eval_samples > 0) {
        if (images_read(&a->valid_data, c->data.valid, err) != 0) return -1;
        a->have_valid = 1;
        r->n_valid = (long)a->valid_data.n;
    }
    ResNet *m = resnet_create(&c->model, c->augment.n_global * MB, c->augment.global_size,
                              c->augment.global_size, cx_rng_derive(seed, 2));
    r->model = m;
    swav_prepare(m, resnet_params(m));  // the initial prototypes normalised, as every later state
    const SwavParams sp = {.n_global = c->augment.n_global, .n_small = c->augment.n_small,
                           .sinkhorn_iters = c->swav.sinkhorn_iters,
                           .sinkhorn_eps = c->swav.epsilon, .temperature = c->swav.temperature};
    if (a->have_data) {
        if (swav_task_init(&a->task, &r->tr.task, m, &a->data, MB, &c->augment, &sp,
                           cx_rng_derive(seed, 3), cx_rng_derive(seed, 1), 0, c->train.global_batch,
                           c->swav.freeze_prototypes_steps, err) != 0)
            return -1;
        a->have_task = 1;
    } else {
        r->tr.task = (TrainTask){.params = resnet_params(m), .grads = resnet_grads(m),
                                 .n_params = resnet_n_params(m), .specs = resnet_specs(m),
                                 .n_specs = resnet_n_specs(m), .micro_batch = 1,
                                 .prepare = swav_prepare, .prep_ctx = m};
    }
    if (a->have_valid) {
        if (swav_task_init(&a->valid_task, &r->valid, m, &a->valid_data, MB, &c->augment, &sp, 777,
                           0, 1, 0, 0, err) != 0)
            return -1;
        a->have_valid_task = 1;
    }
    optim_init(&r->tr.optim, &c->optim, resnet_specs(m), resnet_n_specs(m), resnet_n_params(m));
    r->tr.global_batch = c->train.global_batch;
    r->example_unit = "images";
    r->valid_unit = "image";
    r->aux_name = NULL;
    return 0;
}

static void swav_free_replica(Replica *r) {
    SwavRun *a = r->impl;
    if (a) {
        if (a->have_valid_task) swav_task_free(&a->valid_task);
        if (a->have_task) swav_task_free(&a->task);
        if (a->have_valid) images_free(&a->valid_data);
        if (a->have_data) images_free(&a->data);
        free(a);
        r->impl = NULL;
    }
    if (r->tr.optim.m) optim_free(&r->tr.optim);
    if (r->model) resnet_free(r->model);
    r->model = NULL;
    memset(&r->tr, 0, sizeof r->tr);
    memset(&r->valid, 0, sizeof r->valid);
}

static const GradSplit *swav_split(void *model) {
    (void)model;
    return NULL;  // no split gradients: the averaging sums the arena after the backward
}

static void swav_hooks(void *model, void (*ready)(void *ctx, size_t offset, size_t count),
                       void (*progress)(void *ctx), void *ctx) {
    (void)model;
    (void)ready;
    (void)progress;
    (void)ctx;
}

static const TensorAlias *swav_aliases(int *n) {
    *n = 0;
    return NULL;
}

static double swav_step_tokens(Replica *r, const StepResult *s, int n_ranks) {
    (void)r;
    (void)n_ranks;
    return (double)s->samples;  // images
}

static void swav_describe(const Replica *r, char *buf, size_t cap) {
    const SwavConfig *c = r->cfg;
    snprintf(buf, cap, "SwAV ResNet (%d stages, %d to %d channels), %llu images, %d+%d views of "
             "%d and %d pixels", c->model.n_stages, c->model.widths[0],
             c->model.widths[c->model.n_stages - 1], (unsigned long long)r->n_examples, c->augment.n_global, c->augment.n_small,
             c->augment.global_size, c->augment.small_size);
}

// one batch of whole images [i0, i0 + B) (every step images apart) of im, normalised, into x
static void whole_images(float *x, const Images *im, size_t i0, size_t stepi, int B,
                         const CropConfig *c) {
    const size_t hw = (size_t)im->h * im->w;
    for (int b = 0; b < B; b++) {
        const uint8_t *px = im->pixels + ((i0 + (size_t)b * stepi) % im->n) * hw;
        for (size_t i = 0; i < hw; i++) x[(size_t)b * hw + i] = (px[i] / 255.0f - c->mean) / c->std;
    }
}

int swav_features(void *replica, const Images *im, size_t n, float *out, const Images *bn_data,
                  int bn_batches, int bn_batch, char *err) {
    Replica *r = replica;
    const SwavConfig *c = r->cfg;
    if (r->recipe != &recipe_swav) return cx_err(err, "not a SwAV replica");
    if (im->h < 3 || im->w < 3 || bn_data->h != im->h || bn_data->w != im->w)
        return cx_err(err, "images of %dx%d and %dx%d: the probe needs one size of at least 3x3",
                      im->h, im->w, bn_data->h, bn_data->w);
    const int FB = bn_batch > 0 ? bn_batch : 256;
    ResNet *m = resnet_share(r->model, FB, im->h, im->w);
    float *x = cx_calloc((size_t)FB * im->h * im->w, sizeof(float));
    const int Cf = c->model.widths[c->model.n_stages - 1];
    // precise BN over evenly spaced training images
    resnet_reset_bn(m);
    const size_t total = (size_t)bn_batches * FB, stepi = total < bn_data->n ? bn_data->n / total : 1;
    for (int k = 0; k < bn_batches; k++) {
        resnet_set_bn_momentum(m, 1.0f / (float)(k + 1));
        whole_images(x, bn_data, (size_t)k * FB * stepi, stepi, FB, &c->augment);
        resnet_features(m, x, FB, im->h, im->w, RESNET_TRAIN);
    }
    for (size_t i0 = 0; i0 < n; i0 += (size_t)FB) {
        const int B = (int)(n - i0 < (size_t)FB ? n - i0 : (size_t)FB);
        whole_images(x, im, i0, 1, B, &c->augment);
        memcpy(out + i0 * Cf, resnet_features(m, x, B, im->h, im->w, RESNET_EVAL),
               (size_t)B * Cf * sizeof(float));
    }
    free(x);
    resnet_free(m);
    return 0;
}

int swav_supervised(void *replica, const Images *tr, long steps, int batch, uint64_t seed,
                    char *err) {
    Replica *r = replica;
    const SwavConfig *c = r->cfg;
    if (r->recipe != &recipe_swav) return cx_err(err, "not a SwAV replica");
    if (steps < 1 || batch < 1) return cx_err(err, "supervised training needs steps and a batch >= 1");
    const int gs = c->augment.global_size, K = tr->classes;
    const int Cf = c->model.widths[c->model.n_stages - 1];
    ResNet *m = resnet_share(r->model, batch, gs, gs);
    // the classifier: its own two tensors and optimizer
    TensorSpec cs[2];
    memset(cs, 0, sizeof cs);
    snprintf(cs[0].name, sizeof cs[0].name, "classifier.weight");
    cs[0].ndim = 2, cs[0].shape[0] = K, cs[0].shape[1] = Cf, cs[0].n = (size_t)K * Cf;
    snprintf(cs[1].name, sizeof cs[1].name, "classifier.bias");
    cs[1].ndim = 1, cs[1].shape[0] = K, cs[1].n = (size_t)K, cs[1].no_decay = 1;
    const size_t nc = tensor_layout(cs, 2, 0);
    float *cw = cx_calloc(nc, sizeof(float)), *cg = cx_calloc(nc, sizeof(float));
    const OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 2e-3f, .beta1 = 0.9f, .beta2 = 0.999f,
                            .eps = 1e-8f, .weight_decay = 5e-4f, .schedule = SCHED_COSINE,
                            .warmup_steps = steps / 20, .total_steps = steps, .end_lr = 0.0f,
                            .poly_power = 1.0f, .trust_coef = 0.001f};
    Optim om, ocl;
    optim_init(&om, &oc, resnet_specs(r->model), resnet_n_specs(r->model), resnet_n_params(r->model));
    optim_init(&ocl, &oc, cs, 2, nc);
    float *x = cx_calloc((size_t)batch * gs * gs, sizeof(float));
    float *logits = cx_calloc((size_t)batch * K, sizeof(float)), *dlog = cx_calloc((size_t)batch * K, sizeof(float));
    float *dfeat = cx_calloc((size_t)batch * Cf, sizeof(float));
    int32_t *tg = cx_calloc((size_t)batch, sizeof(int32_t));
    const uint64_t vs = cx_rng_derive(seed, 3), os_ = cx_rng_derive(seed, 1);
    double run_loss = 0.0;
    for (long step = 0; step < steps; step++) {
        memset(resnet_grads(r->model), 0, resnet_n_params(r->model) * sizeof(float));
        memset(cg, 0, nc * sizeof(float));
        for (int b = 0; b < batch; b++) {
            const uint64_t sample = (uint64_t)step * batch + (uint64_t)b;
            const size_t img = (size_t)(cx_rng_u64(os_, sample) % tr->n);
            const ViewDraw d = augment_draw(&c->augment, tr->h, tr->w, 0, vs, sample);
            augment_apply(x + (size_t)b * gs * gs, gs, tr->pixels + img * (size_t)tr->h * tr->w,
                          tr->h, tr->w, &d, &c->augment);
            tg[b] = tr->labels[img];
        }
        const float *f = resnet_features(m, x, batch, gs, gs, RESNET_TRAIN);
        nn_linear_forward(logits, f, cw, cw + cs[1].offset, batch, Cf, K);
        const double loss = nn_softmax_xent_forward(logits, logits, tg, batch, K) / batch;
        memset(dlog, 0, (size_t)batch * K * sizeof(float));
        nn_softmax_xent_backward(dlog, logits, tg, batch, K, 1.0f / (float)batch);
        memset(dfeat, 0, (size_t)batch * Cf * sizeof(float));
        nn_linear_backward(dfeat, cg, cg + cs[1].offset, dlog, f, cw, batch, Cf, K);
        resnet_backward_features(m, dfeat);
        optim_step(&om, resnet_params(r->model), resnet_grads(r->model));
        optim_step(&ocl, cw, cg);
        run_loss = step == 0 ? loss : 0.98 * run_loss + 0.02 * loss;
        if ((step + 1) % 50 == 0 || step + 1 == steps)
            fprintf(stderr, "supervised step %ld/%ld | loss %.4f\n", step + 1, steps, run_loss);
    }
    optim_free(&om);
    optim_free(&ocl);
    free(cw);
    free(cg);
    free(x);
    free(logits);
    free(dlog);
    free(dfeat);
    free(tg);
    resnet_free(m);
    return 0;
}

const Recipe recipe_swav = {
    .name = "swav",
    .what = "SwAV ResNet",
    .cfg_size = sizeof(SwavConfig),
    .config_defaults = swav_config_defaults,
    .schema = &SWAV_SCHEMA,
    .config_check = swav_config_check,
    .config_is = swav_config_is,
    .config_resolve = NULL,
    .build = swav_build,
    .free = swav_free_replica,
    .enable_split = swav_split,
    .set_hooks = swav_hooks,
    .aliases = swav_aliases,
    .step_tokens = swav_step_tokens,
    .describe = swav_describe,
};
