// recipe_encdec.c: the encoder-decoder (models/encdec.h) for headline fine-tuning on pair
// shards and mBART-style denoising on token shards (conflux-headline train), as every
// participant builds it (io/tasks/recipe.h). Configuration, data and tasks: io/tasks/headline.h.
//
// Seeds, derived from train.seed: 1 the training data order (and the denoising draws),
// 2 the model's initialisation, 3 dropout; validation examples come in order with seed 777.
// A trainer that starts a run may take the model's shape and weights from a conflux-train
// ALBERT checkpoint (init.encoder: the encoder, and with init.lm_head its MLM head) or from
// an encoder-decoder checkpoint (init.from: every weight).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/bpe.h"
#include "io/store/ckpt.h"
#include "io/run/config.h"
#include "io/tasks/headline.h"
#include "io/store/shard.h"
#include "io/tasks/recipe.h"
#include "models/common.h"
#include "models/encdec.h"
#include "models/rng.h"

typedef struct {
    Pairs pairs, valid_pairs;
    Shard shard, valid_shard;
    Bpe *bpe;
    uint8_t *sent_end;
    HeadlineTask task, valid_task;
    int have_task, have_valid_task;
    uint64_t src_mark;  // the task's source tokens counted by step_tokens so far
} EncDecRun;

static void encdec_recipe_config_defaults(Replica *r) {
    HeadlineConfig *c = r->cfg;
    headline_config_defaults(c);
    r->train = &c->train;
    r->run_dir = c->run.dir;
    r->data_train = c->data.train;
}
static int encdec_recipe_config_check(const void *cfg, char *err) { return headline_config_check(cfg, err); }
// Every encoder-decoder configuration text has a [decoder] section (the decoder's shape is
// always written) and an ALBERT one never does, including the texts in older checkpoints.
static int encdec_recipe_config_is(const char *text) { return cfg_text_has_section(text, "decoder"); }

// Copies the architecture of src into dst: not dropout, label smoothing or the copy
// mechanism (a fine-tune may add a pointer-generator to a model trained without one).
static void take_architecture(EncDecConfig *dst, const EncDecConfig *src) {
    float ed = dst->enc.dropout, dd = dst->dec_dropout, ls = dst->label_smoothing;
    int copy = dst->copy;
    *dst = *src;
    dst->enc.dropout = ed;
    dst->dec_dropout = dd;
    dst->label_smoothing = ls;
    dst->copy = copy;
    dst->enc.sop = 0;
}

// The tensors of m that an init.from checkpoint provides: all, or all but the copy gate
// (the last two) when the checkpoint's model has none (the gate keeps its fresh weights).
static int init_from_specs(Ckpt *ck, const EncDec *m) {
    HeadlineConfig ec;
    headline_config_defaults(&ec);
    char e2[CX_ERRLEN];
    int n = encdec_n_specs(m);
    if (encdec_config(m)->copy &&
        headline_config_load_string(&ec, ckpt_config_text(ck), "", e2) == 0 && !ec.model.copy)
        n -= 2;
    return n;
}

// The shape of the model comes from the checkpoint the run starts from (init.*).
static int encdec_recipe_config_resolve(void *cfg, int *usage, char *err) {
    HeadlineConfig *c = cfg;
    *usage = 0;
    if (c->init.encoder[0] && c->init.from[0]) {
        *usage = 1;
        return cx_err(err, "init.encoder and init.from exclude each other");
    }
    if (!c->init.encoder[0] && !c->init.from[0]) return 0;
    const char *p = c->init.encoder[0] ? c->init.encoder : c->init.from;
    Ckpt *ck;
    if (ckpt_open(&ck, p, err) != 0) return -1;
    const char *model = ckpt_model(ck);
    char e2[CX_ERRLEN];
    int rc = 0;
    if (c->init.encoder[0]) {
        RunConfig ac;
        config_defaults(&ac);
        if (strcmp(model, "albert") != 0) {
            rc = cx_err(err, "init.encoder %s holds a '%s' model, not an ALBERT checkpoint%s", p,
                        model, !strcmp(model, "encdec") ? " (use --init for encdec checkpoints)" : "");
        } else if (config_load_string(&ac, ckpt_config_text(ck), p, e2) != 0) {
            rc = cx_err(err, "configuration of %s: %s", p, e2);
        } else {
            float d = c->model.enc.dropout;
            c->model.enc = ac.model;
            c->model.enc.dropout = d;
            c->model.enc.sop = 0;
        }
    } else {
        HeadlineConfig ec;
        headline_config_defaults(&ec);
        if (strcmp(model, "encdec") != 0) {
            rc = cx_err(err, "init.from %s holds a '%s' model, not encdec%s", p, model,
                        !strcmp(model, "albert") ? " (use --init-encoder for ALBERT checkpoints)" : "");
        } else if (headline_config_load_string(&ec, ckpt_config_text(ck), p, e2) != 0) {
            rc = cx_err(err, "configuration of %s: %s", p, e2);
        } else {
            take_architecture(&c->model, &ec.model);
        }
    }
    ckpt_close(ck);
    return rc;
}

static int spec_index(const EncDec *m, const char *name) {
    for (int i = 0; i < encdec_n_specs(m); i++)
        if (!strcmp(encdec_specs(m)[i].name, name)) return i;
    return -1;
}

// The encoder (and, with lm_head, the MLM head as lm_head.*) from an ALBERT checkpoint.
static int load_albert_encoder(Ckpt *ck, const char *path, EncDec *m, int lm_head, char *err) {
    if (strcmp(ckpt_model(ck), "albert") != 0)
        return cx_err(err, "%s holds a '%s' model, not an ALBERT checkpoint (conflux-train)", path,
                      ckpt_model(ck));
    if (ckpt_read_params(ck, encdec_specs(m), AP_N_ENCODER, encdec_params(m), err) != 0) return -1;
    if (!lm_head) return 0;
    static const char *const map[][2] = {
        {"lm_head.dense.weight", "predictions.dense.weight"},
        {"lm_head.dense.bias", "predictions.dense.bias"},
        {"lm_head.LayerNorm.weight", "predictions.LayerNorm.weight"},
        {"lm_head.LayerNorm.bias", "predictions.LayerNorm.bias"},
        {"lm_head.bias", "predictions.bias"},
    };
    TensorSpec specs[5];
    for (int i = 0; i < 5; i++) {
        int k = spec_index(m, map[i][0]);
        CHECK(k >= 0, "no tensor %s", map[i][0]);
        specs[i] = encdec_specs(m)[k];
        snprintf(specs[i].name, sizeof specs[i].name, "%s", map[i][1]);
    }
    return ckpt_read_params(ck, specs, 5, encdec_params(m), err);
}

// The weights of init.encoder / init.from into a fresh model.
static int encdec_recipe_load_init(const HeadlineConfig *c, EncDec *m, char *err) {
    const char *p = c->init.encoder[0] ? c->init.encoder : c->init.from;
    Ckpt *ck;
    char e2[CX_ERRLEN];
    if (ckpt_open(&ck, p, err) != 0) return -1;
    int bad = c->init.encoder[0]
                  ? load_albert_encoder(ck, p, m, c->init.lm_head, e2)
                  : ckpt_read_params(ck, encdec_specs(m), init_from_specs(ck, m), encdec_params(m),
                                     e2);
    ckpt_close(ck);
    if (bad) return cx_err(err, "cannot initialise from %s: %s", p, e2);
    return 0;
}

// The data: the training shard (pairs, or tokens for denoising) and, with have_valid, the
// validation one. The tokenizer is loaded where it is needed: by a trainer, which checks the
// shards and the model's vocabulary against it, and for denoising (its sentence ends). A
// trainer's data.lowercase follows the pair shards (generation repeats what training saw).
static int encdec_recipe_read_data(HeadlineConfig *c, EncDecRun *e, int trainer, int have_valid,
                                   char *err) {
    const int denoise = c->data.objective == HL_OBJ_DENOISE;
    char e2[CX_ERRLEN];
    if ((trainer || denoise) && bpe_load(&e->bpe, c->data.tokenizer, e2) != 0)
        return cx_err(err, "data.tokenizer: %s", e2);
    const char *fp = e->bpe ? bpe_fingerprint(e->bpe) : NULL;
    if (!denoise) {
        if (pairs_read(&e->pairs, c->data.train, err) != 0 ||
            (have_valid && pairs_read(&e->valid_pairs, c->data.valid, err) != 0))
            return -1;
        if (!trainer) return 0;
        if (strcmp(e->pairs.tokenizer, fp) != 0 || (have_valid && strcmp(e->valid_pairs.tokenizer, fp) != 0))
            return cx_err(err, "the pair shards were tokenized with another tokenizer than %s "
                          "(fingerprints %s / %s, tokenizer %s)", c->data.tokenizer, e->pairs.tokenizer,
                          have_valid ? e->valid_pairs.tokenizer : "-", fp);
        if (have_valid && e->valid_pairs.lowercase != e->pairs.lowercase)
            return cx_err(err, "%s is lowercased but %s is not (prepare both with or without --lowercase)",
                          e->pairs.lowercase ? c->data.train : c->data.valid,
                          e->pairs.lowercase ? c->data.valid : c->data.train);
        c->data.lowercase = e->pairs.lowercase;
    } else {
        if (shard_read(&e->shard, c->data.train, e2) != 0 ||
            (have_valid && shard_read(&e->valid_shard, c->data.valid, e2) != 0))
            return cx_err(err, "%s%s", e2, strstr(e2, "conflux-pairs") ? " (--objective denoise takes a token shard)" : "");
        if (strcmp(e->shard.tokenizer, fp) != 0)
            return cx_err(err, "%s was tokenized with another tokenizer than %s", c->data.train,
                          c->data.tokenizer);
        e->sent_end = cx_calloc((size_t)bpe_vocab_size(e->bpe), 1);
        headline_sentence_ends(e->bpe, e->sent_end);
        if (!trainer) return 0;
    }
    int data_vocab = denoise ? e->shard.vocab_size : e->pairs.vocab_size;
    if (data_vocab > c->model.enc.vocab_size || bpe_vocab_size(e->bpe) > c->model.enc.vocab_size)
        return cx_err(err, "the data's vocabulary (%d tokens) exceeds model.vocab_size (%d)",
                      data_vocab, c->model.enc.vocab_size);
    return 0;
}

// The training task (seeded, shuffled order; dropout) or the validation one (in order,
// seed 777, no dropout) of the data.objective, into ht and task.
static int encdec_recipe_task(const HeadlineConfig *c, EncDecRun *e, EncDec *m, int valid, int MB,
                              HeadlineTask *ht, TrainTask *task, char *err) {
    const uint64_t seed = (uint64_t)c->train.seed;
    const uint64_t order_seed = valid ? 777 : cx_rng_derive(seed, 1);
    const uint64_t dropout_seed = valid ? 0 : cx_rng_derive(seed, 3);
    const int shuffle = !valid, Ts = c->data.src_len, Tt = c->data.tgt_len;
    char e2[CX_ERRLEN];
    int bad = 0;
    if (c->data.objective == HL_OBJ_DENOISE) {
        DenoiseConfig dn = {.mask_ratio = c->data.mask_ratio, .poisson_lambda = c->data.poisson_lambda,
                            .permute_sentences = c->data.permute_sentences};
        bad = headline_task_denoise(ht, task, m, valid ? &e->valid_shard : &e->shard, &dn, e->sent_end,
                                    Ts, Tt, MB, order_seed, shuffle, dropout_seed, e2);
    } else {
        const Pairs *p = valid ? &e->valid_pairs : &e->pairs;
        if (p->vocab_size > c->model.enc.vocab_size)
            bad = cx_err(e2, "the pair shard's vocabulary (%d) exceeds the model's (%d)", p->vocab_size,
                         c->model.enc.vocab_size);
        else
            headline_task_pairs(ht, task, m, p, Ts, Tt, MB, order_seed, shuffle, dropout_seed);
    }
    if (bad) return cx_err(err, "%s (%s)", e2, valid ? c->data.valid : c->data.train);
    return 0;
}

// The run's optimizer: [optim] for every tensor, and with optim.separate_decoder=1 a second
// group ([optim_decoder]) from the first decoder tensor (AP_N_ENCODER) on.
static void encdec_recipe_optim_init(Optim *o, const HeadlineConfig *c, EncDec *m) {
    optim_init(o, &c->optim, encdec_specs(m), encdec_n_specs(m), encdec_n_params(m));
    if (c->separate_decoder) {
        OptimConfig g = headline_decoder_optim(c);
        optim_set_group(o, AP_N_ENCODER, &g);
    }
}

static int encdec_recipe_build(Replica *r, ReplicaKind kind, char *err) {
    HeadlineConfig *c = r->cfg;
    EncDecRun *e = cx_calloc(1, sizeof *e);
    r->impl = e;
    c->optim.total_steps = c->train.steps;
    const uint64_t seed = (uint64_t)c->train.seed;
    const int denoise = c->data.objective == HL_OBJ_DENOISE;
    const int have_valid = kind == REPLICA_TRAINER && c->data.valid[0] && c->train.eval_samples > 0;
    const int Ts = c->data.src_len, Tt = c->data.tgt_len;
    const int MB = kind == REPLICA_BARE || kind == REPLICA_BRIDGE ? 1 : c->train.micro_batch;
    if (kind != REPLICA_BARE && encdec_recipe_read_data(c, e, kind == REPLICA_TRAINER, have_valid, err) != 0)
        return -1;
    EncDec *m = encdec_create(&c->model, MB, Ts, Tt, cx_rng_derive(seed, 2));
    r->model = m;
    if (kind == REPLICA_TRAINER && !r->resume_path && (c->init.encoder[0] || c->init.from[0]) &&
        encdec_recipe_load_init(c, m, err) != 0)
        return -1;
    if (kind == REPLICA_BARE) {
        // a replica without data: the parameters and gradients the averaging needs
        r->tr.task = (TrainTask){.params = encdec_params(m), .grads = encdec_grads(m),
                                 .n_params = encdec_n_params(m), .specs = encdec_specs(m),
                                 .n_specs = encdec_n_specs(m), .micro_batch = 1};
    } else {
        if (encdec_recipe_task(c, e, m, 0, MB, &e->task, &r->tr.task, err) != 0) return -1;
        e->have_task = 1;
        r->n_examples = e->task.n;
    }
    if (have_valid) {
        if (encdec_recipe_task(c, e, m, 1, MB, &e->valid_task, &r->valid, err) != 0) return -1;
        e->have_valid_task = 1;
        r->n_valid = (long)e->valid_task.n;
    }
    encdec_recipe_optim_init(&r->tr.optim, c, m);
    r->tr.global_batch = c->train.global_batch;
    r->example_unit = denoise ? "windows" : "pairs";
    r->valid_unit = "target";
    r->aux_name = NULL;
    return 0;
}

static void encdec_recipe_free_replica(Replica *r) {
    EncDecRun *e = r->impl;
    if (e) {
        if (e->have_valid_task) headline_task_free(&e->valid_task);
        if (e->have_task) headline_task_free(&e->task);
        pairs_free(&e->pairs);
        pairs_free(&e->valid_pairs);
        shard_free(&e->shard);
        shard_free(&e->valid_shard);
        if (e->bpe) bpe_free(e->bpe);
        free(e->sent_end);
        free(e);
        r->impl = NULL;
    }
    if (r->tr.optim.m) optim_free(&r->tr.optim);
    if (r->model) encdec_free(r->model);
    r->model = NULL;
    memset(&r->tr, 0, sizeof r->tr);
    memset(&r->valid, 0, sizeof r->valid);
}

static const GradSplit *encdec_recipe_split(void *model) { return encdec_enable_grad_split(model); }

static void encdec_recipe_hooks(void *model, void (*ready)(void *ctx, size_t offset, size_t count),
                         void (*progress)(void *ctx), void *ctx) {
    encdec_set_backward_hooks(model, ready, progress, ctx);
}

// The step's target tokens (every participant's) plus the source tokens this replica
// encoded, times the ranks (they share the batch equally).
static double encdec_recipe_step_tokens(Replica *r, const StepResult *s, int n_ranks) {
    EncDecRun *e = r->impl;
    uint64_t seen = e && e->have_task ? e->task.src_tokens_seen : 0;
    long src = (long)(seen - e->src_mark) * n_ranks;
    e->src_mark = seen;
    return (double)(src + s->tokens);
}

static void encdec_recipe_describe(const Replica *r, char *buf, size_t cap) {
    const HeadlineConfig *c = r->cfg;
    const char *init = c->init.encoder[0] ? c->init.encoder : c->init.from;
    snprintf(buf, cap, "%s, encoder %zu parameters, %s%s, %llu %s, src %d / tgt %d tokens",
             headline_objective_name(c->data.objective),
             albert_n_params(encdec_encoder(r->model)),
             r->resume_path ? "resumed from " : init[0] ? "initialised from " : "random init",
             r->resume_path ? r->resume_path : init, (unsigned long long)r->n_examples,
             r->example_unit, c->data.src_len, c->data.tgt_len);
}

const Recipe recipe_encdec = {
    .name = "encdec",
    .what = "encoder-decoder",
    .cfg_size = sizeof(HeadlineConfig),
    .config_defaults = encdec_recipe_config_defaults,
    .schema = &HEADLINE_CONFIG_SCHEMA,
    .config_check = encdec_recipe_config_check,
    .config_is = encdec_recipe_config_is,
    .config_resolve = encdec_recipe_config_resolve,
    .build = encdec_recipe_build,
    .free = encdec_recipe_free_replica,
    .enable_split = encdec_recipe_split,
    .set_hooks = encdec_recipe_hooks,
    .aliases = encdec_aliases,
    .step_tokens = encdec_recipe_step_tokens,
    .describe = encdec_recipe_describe,
};
