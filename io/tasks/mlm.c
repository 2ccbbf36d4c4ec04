// mlm.c: masked-LM data and the ALBERT training task (see mlm.h).
#include "io/tasks/mlm.h"

#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/bpe.h"
#include "models/common.h"
#include "models/rng.h"

enum { TAG_PERM = 11, TAG_SELECT = 12, TAG_ACTION = 13, TAG_RANDOM = 14, TAG_SPLIT = 15, TAG_SWAP = 16 };

int mlm_data_init(MlmData *d, const Shard *shard, int T, int vocab_size, uint64_t seed,
                  int shuffle, float mask_prob, int sop, char *err) {
    memset(d, 0, sizeof *d);
    if (T < 3 + sop * 2)
        return cx_err(err, "sequence length %d is too short (need >= %d)", T, 3 + sop * 2);
    if (shard->vocab_size > vocab_size)
        return cx_err(err, "shard vocabulary (%d) is larger than the model's (%d)",
                      shard->vocab_size, vocab_size);
    size_t n = shard->n_tokens + shard->n_docs;
    d->stream = cx_calloc(n ? n : 1, sizeof(int32_t));
    size_t k = 0;
    for (size_t i = 0; i < shard->n_docs; i++) {
        int64_t a = shard->doc_offsets[i], b = shard->doc_offsets[i + 1];
        if (b == a) continue;
        if (k > 0) d->stream[k++] = BPE_SEP;
        memcpy(d->stream + k, shard->tokens + a, (size_t)(b - a) * sizeof(int32_t));
        k += (size_t)(b - a);
    }
    d->n_stream = k;
    size_t w = (size_t)(T - 2 - sop);
    d->n_windows = (k + w - 1) / w;
    if (d->n_windows == 0) {
        free(d->stream);
        d->stream = NULL;
        return cx_err(err, "the shard holds no tokens");
    }
    d->T = T;
    d->vocab_size = vocab_size;
    d->seed = seed;
    d->shuffle = shuffle;
    d->sop = sop;
    d->mask_prob = mask_prob;
    if (shuffle) {
        d->perm = cx_calloc(d->n_windows, sizeof(uint32_t));
        d->perm_epoch = UINT64_MAX;
    }
    return 0;
}

void mlm_data_free(MlmData *d) {
    free(d->stream);
    free(d->perm);
    memset(d, 0, sizeof *d);
}

static void make_perm(MlmData *d, uint64_t epoch) {
    uint64_t ps = cx_rng_derive(cx_rng_derive(d->seed, TAG_PERM), epoch);
    for (size_t i = 0; i < d->n_windows; i++) d->perm[i] = (uint32_t)i;
    for (size_t i = d->n_windows - 1; i > 0; i--) {  // Fisher-Yates
        size_t j = (size_t)(cx_rng_u64(ps, i) % (i + 1));
        uint32_t tmp = d->perm[i];
        d->perm[i] = d->perm[j];
        d->perm[j] = tmp;
    }
    d->perm_epoch = epoch;
}

void mlm_data_fill(MlmData *d, uint64_t s, int32_t *ids, int32_t *mask, int32_t *targets,
                   int32_t *types, int32_t *sop_label) {
    const int T = d->T;
    uint64_t epoch = s / d->n_windows;
    size_t win = (size_t)(s % d->n_windows);
    if (d->shuffle) {
        if (epoch != d->perm_epoch) make_perm(d, epoch);
        win = d->perm[win];
    }
    size_t w = (size_t)(T - 2 - d->sop), start = win * w;
    size_t len = d->n_stream - start < w ? d->n_stream - start : w;
    const int32_t *src = d->stream + start;
    int used;  // positions holding [CLS] ... [SEP]
    if (d->sop && len >= 2) {
        // cut into A = src[0, p) and B = src[p, len); swap half of the sequences
        size_t p = 1 + (size_t)(cx_rng_u64(cx_rng_derive(d->seed, TAG_SPLIT), s) % (len - 1));
        int swap = cx_rng_uniform(cx_rng_derive(d->seed, TAG_SWAP), s) < 0.5f;
        const int32_t *first = swap ? src + p : src, *second = swap ? src : src + p;
        size_t n1 = swap ? len - p : p, n2 = len - n1;
        ids[0] = BPE_CLS;
        memcpy(ids + 1, first, n1 * sizeof(int32_t));
        ids[n1 + 1] = BPE_SEP;
        memcpy(ids + n1 + 2, second, n2 * sizeof(int32_t));
        ids[len + 2] = BPE_SEP;
        used = (int)len + 3;
        for (int t = 0; t < T; t++) types[t] = t >= (int)n1 + 2 && t < used;
        *sop_label = swap;
    } else {
        ids[0] = BPE_CLS;
        memcpy(ids + 1, src, len * sizeof(int32_t));
        ids[len + 1] = BPE_SEP;
        used = (int)len + 2;
        if (types) memset(types, 0, (size_t)T * sizeof(int32_t));
        if (sop_label) *sop_label = -1;
    }
    for (int t = 0; t < T; t++) {
        mask[t] = t < used;
        targets[t] = -1;
    }
    for (int t = used; t < T; t++) ids[t] = BPE_PAD;
    uint64_t ss = cx_rng_derive(d->seed, TAG_SELECT), sa = cx_rng_derive(d->seed, TAG_ACTION);
    uint64_t sr = cx_rng_derive(d->seed, TAG_RANDOM);
    int n_ordinary = d->vocab_size - BPE_N_SPECIAL;
    for (int t = 1; t < used; t++) {
        if (ids[t] < BPE_N_SPECIAL) continue;  // never mask [CLS]/[SEP]
        uint64_t c = s * (uint64_t)T + (uint64_t)t;
        if (cx_rng_uniform(ss, c) >= d->mask_prob) continue;
        targets[t] = ids[t];
        float a = cx_rng_uniform(sa, c);
        if (a < 0.8f)
            ids[t] = BPE_MASK;
        else if (a < 0.9f)
            ids[t] = BPE_N_SPECIAL + (int32_t)(cx_rng_u64(sr, c) % (uint64_t)n_ordinary);
    }
}

static double mlm_micro_step(void *ctx, uint64_t s0, int B, int backward, int final,
                             long *n_tokens, double *aux_sum) {
    MlmTask *mt = ctx;
    const int T = mt->T, sop = mt->data->sop;
    for (int b = 0; b < B; b++)
        mlm_data_fill(mt->data, s0 + (uint64_t)b, mt->ids + (size_t)b * T, mt->mask + (size_t)b * T,
                      mt->targets + (size_t)b * T, sop ? mt->types + (size_t)b * T : NULL,
                      sop ? mt->sop_labels + b : NULL);
    // SOP enters with the expected number of masked tokens per sequence as its weight, so
    // after the division by the global token count it weighs like a per-sequence mean.
    AlbertBatch batch = {.B = B, .T = T, .input_ids = mt->ids, .attention_mask = mt->mask,
                         .targets = mt->targets, .sample_index0 = s0,
                         .token_type_ids = sop ? mt->types : NULL,
                         .sop_labels = sop ? mt->sop_labels : NULL,
                         .sop_scale = mt->data->mask_prob * (float)(T - 3),
                         .final_micro = final};
    if (mt->engine) {
        *aux_sum = 0.0;
        return mt->engine->step(mt->emodel, &batch, backward, backward, mt->dropout_seed, n_tokens);
    }
    return albert_step(mt->model, &batch, backward, backward, mt->dropout_seed, n_tokens, aux_sum);
}

static long mlm_count_tokens(void *ctx, uint64_t s0, long n) {
    MlmTask *mt = ctx;
    const int T = mt->T, sop = mt->data->sop;
    long count = 0;
    for (long i = 0; i < n; i++) {
        mlm_data_fill(mt->data, s0 + (uint64_t)i, mt->ids, mt->mask, mt->targets,
                      sop ? mt->types : NULL, sop ? mt->sop_labels : NULL);
        for (int t = 0; t < T; t++) count += mt->targets[t] >= 0;
    }
    return count;
}

void mlm_task_init(MlmTask *mt, TrainTask *task, Albert *model, MlmData *data, int micro_batch,
                   uint64_t dropout_seed) {
    memset(mt, 0, sizeof *mt);
    mt->model = model;
    mt->data = data;
    mt->dropout_seed = dropout_seed;
    mt->B = micro_batch;
    mt->T = data->T;
    size_t n = (size_t)micro_batch * data->T;
    mt->ids = cx_calloc(n, sizeof(int32_t));
    mt->mask = cx_calloc(n, sizeof(int32_t));
    mt->targets = cx_calloc(n, sizeof(int32_t));
    mt->types = cx_calloc(n, sizeof(int32_t));
    mt->sop_labels = cx_calloc((size_t)micro_batch, sizeof(int32_t));
    memset(task, 0, sizeof *task);
    task->ctx = mt;
    if (model) {  // NULL: mlm_task_init_engine sets the arena
        task->params = albert_params(model);
        task->grads = albert_grads(model);
        task->n_params = albert_n_params(model);
        task->specs = albert_specs(model);
        task->n_specs = albert_n_specs(model);
    }
    task->micro_batch = micro_batch;
    task->micro_step = mlm_micro_step;
    task->count_tokens = mlm_count_tokens;
}

void mlm_task_init_engine(MlmTask *mt, TrainTask *task, const AlbertEngine *engine, void *emodel,
                          MlmData *data, int micro_batch, uint64_t dropout_seed) {
    CHECK(!data->sop, "mlm_task_init_engine: an engine's model has no SOP head");
    mlm_task_init(mt, task, NULL, data, micro_batch, dropout_seed);
    mt->engine = engine;
    mt->emodel = emodel;
    engine->arena(emodel, &task->params, &task->grads, &task->n_params, &task->specs, &task->n_specs);
}

void mlm_task_free(MlmTask *mt) {
    free(mt->ids);
    free(mt->mask);
    free(mt->targets);
    free(mt->types);
    free(mt->sop_labels);
}
