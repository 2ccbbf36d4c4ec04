// recipe_albert.c: ALBERT masked-LM pretraining on token shards (conflux-train), as every
// participant builds it (io/tasks/recipe.h). Configuration: io/run/config.h (RunConfig); data
// and task: io/tasks/mlm.h; model: models/albert.h.
//
// Seeds, derived from train.seed: 1 the training data order and masking, 2 the model's
// initialisation, 3 dropout; validation windows come in order with masking seed 777.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/run/config.h"
#include "io/tasks/mlm.h"
#include "io/store/shard.h"
#include "io/tasks/recipe.h"
#include "models/albert.h"
#include "models/common.h"
#include "models/rng.h"

typedef struct {
    MlmData data, valid_data;
    MlmTask task, valid_task;
    int have_data, have_valid_data, have_task, have_valid_task;
} AlbertRun;

static void albert_recipe_config_defaults(Replica *r) {
    RunConfig *c = r->cfg;
    config_defaults(c);
    r->train = &c->train;
    r->tp = &c->tp;
    r->run_dir = c->run.dir;
    r->data_train = c->data.train;
}
static int albert_recipe_config_check(const void *cfg, char *err) { return config_check(cfg, err); }
// An ALBERT configuration has sections every recipe has; it is the one without [decoder].
static int albert_recipe_config_is(const char *text) { return !cfg_text_has_section(text, "decoder"); }

// The windows of one token shard (the shard itself is freed once they are cut).
static int albert_recipe_read_windows(MlmData *d, const RunConfig *c, const char *path, uint64_t seed,
                               int shuffle, char *err) {
    Shard sh;
    if (shard_read(&sh, path, err) != 0) return -1;
    char e2[CX_ERRLEN];
    int rc = mlm_data_init(d, &sh, c->data.seq_len, c->model.vocab_size, seed, shuffle,
                           c->data.mask_prob, c->model.sop, e2);
    shard_free(&sh);
    if (rc != 0) return cx_err(err, "%s (%s)", e2, path);
    return 0;
}

static int albert_recipe_build(Replica *r, ReplicaKind kind, char *err) {
    RunConfig *c = r->cfg;
    AlbertRun *a = cx_calloc(1, sizeof *a);
    r->impl = a;
    c->optim.total_steps = c->train.steps;
    const uint64_t seed = (uint64_t)c->train.seed;
    const int MB = kind == REPLICA_BARE || kind == REPLICA_BRIDGE ? 1 : c->train.micro_batch;
    if (kind != REPLICA_BARE) {
        if (albert_recipe_read_windows(&a->data, c, c->data.train, cx_rng_derive(seed, 1), 1, err) != 0)
            return -1;
        a->have_data = 1;
        r->n_examples = a->data.n_windows;
    }
    if (kind == REPLICA_TRAINER && c->data.valid[0] && c->train.eval_samples > 0) {
        // validation: fixed windows in order with fixed masking, the same on every run
        if (albert_recipe_read_windows(&a->valid_data, c, c->data.valid, 777, 0, err) != 0) return -1;
        a->have_valid_data = 1;
        r->n_valid = (long)a->valid_data.n_windows;
    }
    const AlbertEngine *e = r->albert_engine;
    if (e) {
        // the model on the trainer's engine (tensor-parallel), the same tasks around it
        CHECK(kind == REPLICA_TRAINER && a->have_data, "an ALBERT engine is for trainers");
        if (!(r->model = e->create(e->ctx, &c->model, MB, c->data.seq_len, cx_rng_derive(seed, 2), err)))
            return -1;
        mlm_task_init_engine(&a->task, &r->tr.task, e, r->model, &a->data, MB, cx_rng_derive(seed, 3));
        a->have_task = 1;
        if (a->have_valid_data) {
            mlm_task_init_engine(&a->valid_task, &r->valid, e, r->model, &a->valid_data, MB, 0);
            a->have_valid_task = 1;
        }
    } else {
        Albert *m = albert_create(&c->model, MB, c->data.seq_len, cx_rng_derive(seed, 2));
        r->model = m;
        if (a->have_data) {
            mlm_task_init(&a->task, &r->tr.task, m, &a->data, MB, cx_rng_derive(seed, 3));
            a->have_task = 1;
        } else {
            // a replica without data: the parameters and gradients the averaging needs
            r->tr.task = (TrainTask){.params = albert_params(m), .grads = albert_grads(m),
                                     .n_params = albert_n_params(m), .specs = albert_specs(m),
                                     .n_specs = albert_n_specs(m), .micro_batch = 1};
        }
        if (a->have_valid_data) {
            mlm_task_init(&a->valid_task, &r->valid, m, &a->valid_data, MB, 0);
            a->have_valid_task = 1;
        }
    }
    const TrainTask *k = &r->tr.task;
    optim_init(&r->tr.optim, &c->optim, k->specs, k->n_specs, k->n_params);
    r->tr.global_batch = c->train.global_batch;
    r->example_unit = "windows";
    r->valid_unit = "masked";
    r->aux_name = c->model.sop ? "sop" : NULL;
    return 0;
}

static void albert_recipe_free_replica(Replica *r) {
    AlbertRun *a = r->impl;
    if (a) {
        if (a->have_valid_task) mlm_task_free(&a->valid_task);
        if (a->have_task) mlm_task_free(&a->task);
        if (a->have_valid_data) mlm_data_free(&a->valid_data);
        if (a->have_data) mlm_data_free(&a->data);
        free(a);
        r->impl = NULL;
    }
    if (r->tr.optim.m) optim_free(&r->tr.optim);
    if (r->model && r->albert_engine) r->albert_engine->free(r->albert_engine->ctx, r->model);
    else if (r->model) albert_free(r->model);
    r->model = NULL;
    memset(&r->tr, 0, sizeof r->tr);
    memset(&r->valid, 0, sizeof r->valid);
}

static const GradSplit *albert_recipe_split(void *model) { return albert_enable_grad_split(model); }

static void albert_recipe_hooks(void *model, void (*ready)(void *ctx, size_t offset, size_t count),
                         void (*progress)(void *ctx), void *ctx) {
    albert_set_backward_hooks(model, ready, progress, ctx);
}

static double albert_recipe_step_tokens(Replica *r, const StepResult *s, int n_ranks) {
    (void)n_ranks;
    return (double)s->samples * ((RunConfig *)r->cfg)->data.seq_len;
}

static void albert_recipe_describe(const Replica *r, char *buf, size_t cap) {
    const RunConfig *c = r->cfg;
    snprintf(buf, cap, "ALBERT masked-LM%s, %llu windows of %d tokens", c->model.sop ? " + SOP" : "",
             (unsigned long long)r->n_examples, c->data.seq_len);
}

const Recipe recipe_albert = {
    .name = "albert",
    .what = "ALBERT masked-LM",
    .cfg_size = sizeof(RunConfig),
    .config_defaults = albert_recipe_config_defaults,
    .schema = &CONFIG_SCHEMA,
    .config_check = albert_recipe_config_check,
    .config_is = albert_recipe_config_is,
    .config_resolve = NULL,
    .build = albert_recipe_build,
    .free = albert_recipe_free_replica,
    .enable_split = albert_recipe_split,
    .set_hooks = albert_recipe_hooks,
    .aliases = albert_aliases,
    .step_tokens = albert_recipe_step_tokens,
    .describe = albert_recipe_describe,
};
