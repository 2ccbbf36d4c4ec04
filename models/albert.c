// albert.c: ALBERT masked-LM forward/backward over flat arenas (see albert.h).
#include "models/albert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/hooks_internal.h"
#include "models/nn.h"
#include "models/rng.h"

#define LAYER "albert.encoder.albert_layer_groups.0.albert_layers.0."

// Per-application activations of the shared layer (saved for backward).
typedef struct {
    float *qkv;              // (N,3H) rows q | k | v
    float *att;              // (B,NH,T,T) softmax probabilities
    float *ctx;              // (N,H)
    float *a;                // (N,H) attention LayerNorm output
    float *res1;             // (N,H) x + dropout(dense(ctx))
    float *mean1, *rstd1;    // (N)
    float *f1, *g;           // (N,I) ffn pre-activation, GELU output
    float *res2;             // (N,H) ffn_output + a
    float *mean2, *rstd2;    // (N)
    float *out;              // (N,H) layer output
} LayerActs;

struct Albert {
    AlbertConfig cfg;
    int max_B, max_T;
    int encoder_only;                  // albert_create_encoder: no heads, no head activations
    int owns_arenas;                   // params/grads are ours (not albert_use_arenas')
    TensorSpec specs[AP_COUNT];
    int n_specs;                       // AP_N_MLM, AP_COUNT with the SOP head, or AP_N_ENCODER
    size_t n_params;
    float *params, *grads;
    float *p[AP_COUNT], *g[AP_COUNT];  // views into the arenas

    // activations (one arena)
    float *act_arena;
    float *emb, *emb_ln, *emb_mean, *emb_rstd, *emb_drop, *h0;  // (N,E) x4, (N) x2, (N,H)
    LayerActs *layers;                                           // L entries
    int32_t *sel_idx, *sel_tgt;                                  // (N)
    float *z_in, *z1, *z2, *z3, *zmean, *zrstd, *logits;         // (N,H) (N,E)x3 (N)x2 (N,V)
    float *cls, *pooled, *sop_probs;                             // (B,H) (B,H) (B,2)
    // backward scratch
    float *dh, *dx, *dres, *dctx, *dproj;                        // (N,H)
    float *dqkv;                                                 // (N,3H)
    // the Q, K, V projections run as one linear layer of 3H outputs, on stacked copies of
    // their weights and biases (qkv_gather; the arenas keep them apart, under HF names)
    float *wqkv, *bqkv, *gwqkv, *gbqkv;                          // (3H,H) (3H) (3H,H) (3H)
    float *dg, *df1;                                             // (N,I)
    float *dz_in, *dz1, *dz2, *dz3, *dlogits;                   // (N,H) (N,E)x3 (N,V)
    float *demb, *demb2;                                         // (N,E)
    float *dcls, *dpooled, *dsop;                                // (B,H) (B,H) (B,2)
    float *att_scratch;                                          // (B,NH,T,T)
    BackwardHooks hooks;               // albert_set_backward_hooks
    // split gradients (albert_enable_grad_split): the final micro-batch's input-embedding
    // rows go to rows/row_ids, and layer 0 reports the shared layer tensor by tensor
    int split;
    float *rows;                       // (max_B*max_T, E); albert_encoder_split: the owner's
    int rows_owned;
    int32_t *row_ids;                  // (max_B*max_T)
    int n_rows;
    GradRange order[AP_COUNT];         // at most one range per tensor
    int ord_pos_unused;                // index in order of the unused position rows, or -1
    int ord_shared;                    // index of the shared layer's first range
    int ord_tail;                      // index of the first of the two ranges final last
    GradSplit gs;
};

int albert_config_check(const AlbertConfig *c, char *err) {
    if (c->vocab_size < 6) return cx_err(err, "model.vocab_size must be >= 6 (got %d)", c->vocab_size);
    if (c->embedding_size < 1) return cx_err(err, "model.embedding_size must be >= 1 (got %d)", c->embedding_size);
    if (c->hidden_size < 1) return cx_err(err, "model.hidden_size must be >= 1 (got %d)", c->hidden_size);
    if (c->num_heads < 1 || c->hidden_size % c->num_heads != 0)
        return cx_err(err, "model.num_heads (%d) must divide model.hidden_size (%d)", c->num_heads,
                      c->hidden_size);
    if (c->intermediate_size < 1)
        return cx_err(err, "model.intermediate_size must be >= 1 (got %d)", c->intermediate_size);
    if (c->num_layers < 1) return cx_err(err, "model.num_layers must be >= 1 (got %d)", c->num_layers);
    if (c->max_position < 2) return cx_err(err, "model.max_position must be >= 2 (got %d)", c->max_position);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return cx_err(err, "model.dropout must be in [0, 1) (got %g)", (double)c->dropout);
    if (!(c->ln_eps > 0.0f)) return cx_err(err, "model.layer_norm_eps must be > 0");
    if (!(c->init_std > 0.0f)) return cx_err(err, "model.init_std must be > 0");
    if (c->sop != 0 && c->sop != 1) return cx_err(err, "model.sop must be 0 or 1 (got %d)", c->sop);
    // size bounds: a configuration comes from files and peers (a checkpoint, the bridge), and
    // must not make a participant allocate without limit; the bounds are far above
    // ALBERT-xxlarge (V 30000, H 4096, I 16384, 12 layers)
    static const struct { const char *key; long max; } bound[] = {
        {"model.vocab_size", 1L << 20}, {"model.embedding_size", 1L << 14},
        {"model.hidden_size", 1L << 15}, {"model.intermediate_size", 1L << 17},
        {"model.num_layers", 1024}, {"model.max_position", 1L << 16}, {"model.num_heads", 1024}};
    const long got[] = {c->vocab_size, c->embedding_size, c->hidden_size, c->intermediate_size,
                        c->num_layers, c->max_position, c->num_heads};
    for (size_t i = 0; i < sizeof bound / sizeof bound[0]; i++)
        if (got[i] > bound[i].max)
            return cx_err(err, "%s must be <= %ld (got %ld)", bound[i].key, bound[i].max, got[i]);
    if ((double)c->vocab_size * c->embedding_size > (double)(1L << 31))
        return cx_err(err, "model.vocab_size x model.embedding_size (%ld) must be <= 2^31",
                      (long)c->vocab_size * c->embedding_size);
    return 0;
}

size_t albert_spec_table(const AlbertConfig *c, int encoder_only, TensorSpec *s, int *n_specs) {
    long V = c->vocab_size, E = c->embedding_size, H = c->hidden_size, I = c->intermediate_size;
    tensor_spec_set(&s[AP_WORD], 0, 2, V, E, "albert.embeddings.word_embeddings.weight");
    tensor_spec_set(&s[AP_POS], 0, 2, c->max_position, E,
                    "albert.embeddings.position_embeddings.weight");
    tensor_spec_set(&s[AP_TYPE], 0, 2, 2, E, "albert.embeddings.token_type_embeddings.weight");
    tensor_spec_set(&s[AP_EMB_LN_W], 1, 1, E, 0, "albert.embeddings.LayerNorm.weight");
    tensor_spec_set(&s[AP_EMB_LN_B], 1, 1, E, 0, "albert.embeddings.LayerNorm.bias");
    tensor_spec_set(&s[AP_MAP_W], 0, 2, H, E, "albert.encoder.embedding_hidden_mapping_in.weight");
    tensor_spec_set(&s[AP_MAP_B], 1, 1, H, 0, "albert.encoder.embedding_hidden_mapping_in.bias");
    tensor_spec_set(&s[AP_Q_W], 0, 2, H, H, LAYER "attention.query.weight");
    tensor_spec_set(&s[AP_Q_B], 1, 1, H, 0, LAYER "attention.query.bias");
    tensor_spec_set(&s[AP_K_W], 0, 2, H, H, LAYER "attention.key.weight");
    tensor_spec_set(&s[AP_K_B], 1, 1, H, 0, LAYER "attention.key.bias");
    tensor_spec_set(&s[AP_V_W], 0, 2, H, H, LAYER "attention.value.weight");
    tensor_spec_set(&s[AP_V_B], 1, 1, H, 0, LAYER "attention.value.bias");
    tensor_spec_set(&s[AP_O_W], 0, 2, H, H, LAYER "attention.dense.weight");
    tensor_spec_set(&s[AP_O_B], 1, 1, H, 0, LAYER "attention.dense.bias");
    tensor_spec_set(&s[AP_ATT_LN_W], 1, 1, H, 0, LAYER "attention.LayerNorm.weight");
    tensor_spec_set(&s[AP_ATT_LN_B], 1, 1, H, 0, LAYER "attention.LayerNorm.bias");
    tensor_spec_set(&s[AP_FFN_W], 0, 2, I, H, LAYER "ffn.weight");
    tensor_spec_set(&s[AP_FFN_B], 1, 1, I, 0, LAYER "ffn.bias");
    tensor_spec_set(&s[AP_FFNO_W], 0, 2, H, I, LAYER "ffn_output.weight");
    tensor_spec_set(&s[AP_FFNO_B], 1, 1, H, 0, LAYER "ffn_output.bias");
    tensor_spec_set(&s[AP_FULL_LN_W], 1, 1, H, 0, LAYER "full_layer_layer_norm.weight");
    tensor_spec_set(&s[AP_FULL_LN_B], 1, 1, H, 0, LAYER "full_layer_layer_norm.bias");
    tensor_spec_set(&s[AP_PRED_BIAS], 1, 1, V, 0, "predictions.bias");
    tensor_spec_set(&s[AP_PRED_DENSE_W], 0, 2, E, H, "predictions.dense.weight");
    tensor_spec_set(&s[AP_PRED_DENSE_B], 1, 1, E, 0, "predictions.dense.bias");
    tensor_spec_set(&s[AP_PRED_LN_W], 1, 1, E, 0, "predictions.LayerNorm.weight");
    tensor_spec_set(&s[AP_PRED_LN_B], 1, 1, E, 0, "predictions.LayerNorm.bias");
    tensor_spec_set(&s[AP_POOL_W], 0, 2, H, H, "albert.pooler.weight");
    tensor_spec_set(&s[AP_POOL_B], 1, 1, H, 0, "albert.pooler.bias");
    tensor_spec_set(&s[AP_SOP_W], 0, 2, 2, H, "sop_classifier.classifier.weight");
    tensor_spec_set(&s[AP_SOP_B], 1, 1, 2, 0, "sop_classifier.classifier.bias");
    *n_specs = encoder_only ? AP_N_ENCODER : c->sop ? AP_COUNT : AP_N_MLM;
    return tensor_layout(s, *n_specs, 0);
}

static void build_specs(Albert *m) {
    m->n_params = albert_spec_table(&m->cfg, m->encoder_only, m->specs, &m->n_specs);
}

static const TensorAlias ALIASES[] = {
    {"predictions.decoder.weight", "albert.embeddings.word_embeddings.weight"},
    {"predictions.decoder.bias", "predictions.bias"},
};

const TensorAlias *albert_aliases(int *n) {
    *n = (int)(sizeof ALIASES / sizeof ALIASES[0]);
    return ALIASES;
}

static void carve_acts(Albert *m, TensorCarver *cv) {
    const AlbertConfig *c = &m->cfg;
    size_t N = (size_t)m->max_B * m->max_T, E = c->embedding_size, H = c->hidden_size;
    size_t I = c->intermediate_size, V = c->vocab_size;
    size_t A = (size_t)m->max_B * c->num_heads * m->max_T * m->max_T;
    tensor_carve_each(cv, N * E, &m->emb, &m->emb_ln, NULL);
    tensor_carve_each(cv, N, &m->emb_mean, &m->emb_rstd, NULL);
    m->emb_drop = tensor_carve(cv, N * E);
    m->h0 = tensor_carve(cv, N * H);
    for (int l = 0; l < c->num_layers; l++) {
        LayerActs *la = &m->layers[l];
        la->qkv = tensor_carve(cv, N * 3 * H);
        la->att = tensor_carve(cv, A);
        tensor_carve_each(cv, N * H, &la->ctx, &la->res1, &la->a, NULL);
        tensor_carve_each(cv, N, &la->mean1, &la->rstd1, NULL);
        tensor_carve_each(cv, N * I, &la->f1, &la->g, NULL);
        la->res2 = tensor_carve(cv, N * H);
        tensor_carve_each(cv, N, &la->mean2, &la->rstd2, NULL);
        la->out = tensor_carve(cv, N * H);
    }
    if (!m->encoder_only) {
        m->sel_idx = (int32_t *)tensor_carve(cv, N);
        m->sel_tgt = (int32_t *)tensor_carve(cv, N);
        m->z_in = tensor_carve(cv, N * H);
        tensor_carve_each(cv, N * E, &m->z1, &m->z2, &m->z3, NULL);
        tensor_carve_each(cv, N, &m->zmean, &m->zrstd, NULL);
        m->logits = tensor_carve(cv, N * V);
        tensor_carve_each(cv, (size_t)m->max_B * H, &m->cls, &m->pooled, NULL);
        m->sop_probs = tensor_carve(cv, (size_t)m->max_B * 2);
        tensor_carve_each(cv, (size_t)m->max_B * H, &m->dcls, &m->dpooled, NULL);
        m->dsop = tensor_carve(cv, (size_t)m->max_B * 2);
    }
    tensor_carve_each(cv, N * H, &m->dh, &m->dx, &m->dres, &m->dctx, &m->dproj, NULL);
    m->dqkv = tensor_carve(cv, N * 3 * H);
    tensor_carve_each(cv, 3 * H * H, &m->wqkv, &m->gwqkv, NULL);
    tensor_carve_each(cv, 3 * H, &m->bqkv, &m->gbqkv, NULL);
    tensor_carve_each(cv, N * I, &m->dg, &m->df1, NULL);
    if (!m->encoder_only) {
        m->dz_in = tensor_carve(cv, N * H);
        tensor_carve_each(cv, N * E, &m->dz1, &m->dz2, &m->dz3, NULL);
        m->dlogits = tensor_carve(cv, N * V);
    }
    tensor_carve_each(cv, N * E, &m->demb, &m->demb2, NULL);
    m->att_scratch = tensor_carve(cv, A);
}

static Albert *create(const AlbertConfig *cfg, int max_B, int max_T, uint64_t seed,
                      int encoder_only) {
    char err[CX_ERRLEN];
    CHECK(albert_config_check(cfg, err) == 0, "%s", err);
    CHECK(max_B >= 1 && max_T >= 2 && max_T <= cfg->max_position,
          "micro-batch %d x %d does not fit max_position %d", max_B, max_T, cfg->max_position);
    Albert *m = cx_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->max_B = max_B;
    m->max_T = max_T;
    m->encoder_only = encoder_only;
    m->owns_arenas = 1;
    build_specs(m);
    m->params = cx_calloc(m->n_params, sizeof(float));
    m->grads = cx_calloc(m->n_params, sizeof(float));
    tensor_views(m->specs, m->n_specs, m->params, m->p);
    tensor_views(m->specs, m->n_specs, m->grads, m->g);
    m->layers = cx_calloc((size_t)cfg->num_layers, sizeof(LayerActs));
    TensorCarver cv = {0};
    carve_acts(m, &cv);
    m->act_arena = tensor_carver_alloc(&cv);
    carve_acts(m, &cv);

    // HF initialisation: normal(0, init_std) for matrices and embeddings, zero biases,
    // unit LayerNorm weights. Element j of tensor i draws from (derive(seed, i), j).
    tensor_init_hf(m->specs, m->params, 0, m->n_specs, seed, cfg->init_std);
    return m;
}

Albert *albert_create(const AlbertConfig *cfg, int max_B, int max_T, uint64_t seed) {
    return create(cfg, max_B, max_T, seed, 0);
}

Albert *albert_create_encoder(const AlbertConfig *cfg, int max_B, int max_T, uint64_t seed) {
    return create(cfg, max_B, max_T, seed, 1);
}

void albert_use_arenas(Albert *m, float *params, float *grads) {
    memcpy(params, m->params, m->n_params * sizeof(float));
    memcpy(grads, m->grads, m->n_params * sizeof(float));
    if (m->owns_arenas) {
        free(m->params);
        free(m->grads);
    }
    m->owns_arenas = 0;
    m->params = params;
    m->grads = grads;
    tensor_views(m->specs, m->n_specs, m->params, m->p);
    tensor_views(m->specs, m->n_specs, m->grads, m->g);
}

void albert_free(Albert *m) {
    if (!m) return;
    if (m->owns_arenas) {
        free(m->params);
        free(m->grads);
    }
    free(m->act_arena);
    free(m->layers);
    if (m->rows_owned) free(m->rows);
    free(m->row_ids);
    free(m);
}

void albert_set_backward_hooks(Albert *m, void (*ready)(void *ctx, size_t offset, size_t count),
                               void (*progress)(void *ctx), void *ctx) {
    m->hooks = (BackwardHooks){ready, progress, ctx};
}

// The arena range of tensors [first, last]: up to the next tensor's offset (padding included).
static GradRange spec_range(const Albert *m, int first, int last) {
    return hooks_spec_range(m->specs, m->n_specs, m->n_params, first, last);
}

// (every range albert.c reports is non-empty)
static void hook_range(Albert *m, const AlbertBatch *b, GradRange r) {
    hooks_ready(&m->hooks, b->final_micro, r);
}

// Reports tensors [first, last] final: their arena range up to the next tensor's offset.
static void hook_ready(Albert *m, const AlbertBatch *b, int first, int last) {
    hook_range(m, b, spec_range(m, first, last));
}

// Turns the split on and fills m->order with the ranges in the order the backward
// finalises them (albert_step; an encoder-only model has no heads and leaves the word
// embeddings to its owner). Returns how many.
static int split_setup(Albert *m) {
    const AlbertConfig *c = &m->cfg;
    m->split = 1;
    GradRange *o = m->order;
    int k = 0;
    if (!m->encoder_only) {
        o[k++] = spec_range(m, AP_PRED_BIAS, m->n_specs - 1);     // MLM (and SOP) heads
        o[k++] = spec_range(m, AP_WORD, AP_WORD);                 // word embeddings (dense part)
    }
    // position rows from max_T on never get a gradient from this model's micro-batches
    GradRange pos = spec_range(m, AP_POS, AP_POS);
    size_t pos_used = m->specs[AP_POS].offset + (size_t)m->max_T * c->embedding_size;
    m->ord_pos_unused = -1;
    if (pos_used < pos.hi) {
        m->ord_pos_unused = k;
        o[k++] = (GradRange){pos_used, pos.hi};
    }
    // the shared layer, tensor by tensor as the backward of its last application (layer 0)
    // finishes each
    m->ord_shared = k;
    o[k++] = spec_range(m, AP_FFNO_W, AP_FULL_LN_B);
    o[k++] = spec_range(m, AP_FFN_W, AP_FFN_B);
    o[k++] = spec_range(m, AP_ATT_LN_W, AP_ATT_LN_B);
    o[k++] = spec_range(m, AP_O_W, AP_O_B);
    o[k++] = spec_range(m, AP_Q_W, AP_Q_B);
    o[k++] = spec_range(m, AP_K_W, AP_K_B);
    o[k++] = spec_range(m, AP_V_W, AP_V_B);
    // positions (the rows in use), types, LayerNorm, mapping: final at the very end
    m->ord_tail = k;
    o[k++] = (GradRange){pos.lo, pos_used < pos.hi ? pos_used : pos.hi};
    o[k++] = spec_range(m, AP_TYPE, AP_MAP_B);
    return k;
}

const GradSplit *albert_enable_grad_split(Albert *m) {
    CHECK(!m->encoder_only, "albert_enable_grad_split on an encoder-only model");
    if (m->split) return &m->gs;
    const AlbertConfig *c = &m->cfg;
    size_t n_rows = (size_t)m->max_B * m->max_T;
    m->rows = cx_calloc(n_rows * (size_t)c->embedding_size, sizeof(float));
    m->rows_owned = 1;
    m->row_ids = cx_calloc(n_rows, sizeof(int32_t));
    int k = split_setup(m);
    m->gs = (GradSplit){.order = m->order, .n_order = k, .rows = m->rows, .row_ids = m->row_ids,
                        .n_rows = &m->n_rows, .max_rows = (int)n_rows,
                        .row_len = c->embedding_size, .table_offset = m->specs[AP_WORD].offset,
                        .table_rows = c->vocab_size};
    return &m->gs;
}

const GradRange *albert_encoder_split(Albert *m, float *rows, int *n, GradRange *unused_pos) {
    CHECK(m->encoder_only && !m->split, "albert_encoder_split: not a fresh encoder-only model");
    m->rows = rows;
    int k = split_setup(m);
    *unused_pos = m->ord_pos_unused >= 0 ? m->order[m->ord_pos_unused] : (GradRange){0, 0};
    *n = k - m->ord_shared;
    return m->order + m->ord_shared;
}

static void hook_progress(Albert *m, const AlbertBatch *b) {
    hooks_progress(&m->hooks, b->final_micro);
}

const AlbertConfig *albert_config(const Albert *m) { return &m->cfg; }
const TensorSpec *albert_specs(const Albert *m) { return m->specs; }
int albert_n_specs(const Albert *m) { return m->n_specs; }
size_t albert_n_params(const Albert *m) { return m->n_params; }
float *albert_params(Albert *m) { return m->params; }
float *albert_grads(Albert *m) { return m->grads; }

// ---------------------------------------------------------------------------------------
// forward

enum { SITE_EMB = ALBERT_SITE_EMB, SITE_ATT = ALBERT_SITE_ATT, SITE_OUT = ALBERT_SITE_OUT };

// w (3H,H) = the Q, K, V weights of t (parameters or gradients) stacked, bias (3H) theirs
static void qkv_gather(float *w, float *bias, float *const *t, int H) {
    const size_t HH = (size_t)H * H;
    for (int i = 0; i < 3; i++) {
        memcpy(w + i * HH, t[AP_Q_W + 2 * i], HH * sizeof(float));
        memcpy(bias + (size_t)i * H, t[AP_Q_B + 2 * i], (size_t)H * sizeof(float));
    }
}

// the inverse: the stacked gradients back into the gradient tensors
static void qkv_scatter(float **t, const float *w, const float *bias, int H) {
    const size_t HH = (size_t)H * H;
    for (int i = 0; i < 3; i++) {
        memcpy(t[AP_Q_W + 2 * i], w + i * HH, HH * sizeof(float));
        memcpy(t[AP_Q_B + 2 * i], bias + (size_t)i * H, (size_t)H * sizeof(float));
    }
}

static void encoder_forward(Albert *m, const AlbertBatch *b, int train, uint64_t seed) {
    const AlbertConfig *c = &m->cfg;
    const int B = b->B, T = b->T, N = B * T, E = c->embedding_size, H = c->hidden_size;
    const int I = c->intermediate_size, NH = c->num_heads;
    const float p = train ? c->dropout : 0.0f;
    float **P = m->p;

    // embeddings: word + position + token type 0
    nn_embedding_forward(m->emb, b->input_ids, P[AP_WORD], N, E);
    for (int bi = 0; bi < B; bi++) {
        for (int t = 0; t < T; t++) {
            float *row = m->emb + ((size_t)bi * T + t) * E;
            const float *pos = P[AP_POS] + (size_t)t * E;
            const float *typ = P[AP_TYPE] + (b->token_type_ids && b->token_type_ids[bi * T + t] ? E : 0);
            for (int e = 0; e < E; e++) row[e] += pos[e] + typ[e];
        }
    }
    nn_layernorm_forward(m->emb_ln, m->emb_mean, m->emb_rstd, m->emb, P[AP_EMB_LN_W],
                         P[AP_EMB_LN_B], N, E, c->ln_eps);
    nn_dropout_forward(m->emb_drop, m->emb_ln, (size_t)N * E, p, cx_rng_derive(seed, SITE_EMB),
                       b->sample_index0 * (uint64_t)T * E);
    nn_linear_forward(m->h0, m->emb_drop, P[AP_MAP_W], P[AP_MAP_B], N, E, H);

    const float *x = m->h0;
    qkv_gather(m->wqkv, m->bqkv, P, H);
    for (int l = 0; l < c->num_layers; l++) {
        LayerActs *la = &m->layers[l];
        nn_linear_forward(la->qkv, x, m->wqkv, m->bqkv, N, H, 3 * H);
        nn_attention_qkv_forward(la->ctx, la->att, la->qkv, b->attention_mask, B, T, H, NH, p,
                                 cx_rng_derive(seed, SITE_ATT + (uint64_t)l),
                                 b->sample_index0 * (uint64_t)NH * T * T, m->att_scratch);
        // res1 = x + dropout(dense(ctx)); dproj is free scratch during forward
        nn_linear_forward(m->dproj, la->ctx, P[AP_O_W], P[AP_O_B], N, H, H);
        nn_dropout_forward(m->dproj, m->dproj, (size_t)N * H, p,
                           cx_rng_derive(seed, SITE_OUT + (uint64_t)l),
                           b->sample_index0 * (uint64_t)T * H);
        nn_residual_layernorm_forward(la->res1, la->a, la->mean1, la->rstd1, m->dproj, x,
                                      P[AP_ATT_LN_W], P[AP_ATT_LN_B], N, H, c->ln_eps);
        nn_linear_gelu_forward(la->f1, la->g, la->a, P[AP_FFN_W], P[AP_FFN_B], N, H, I);
        nn_linear_forward(la->res2, la->g, P[AP_FFNO_W], P[AP_FFNO_B], N, I, H);
        nn_residual_layernorm_forward(la->res2, la->out, la->mean2, la->rstd2, la->res2, la->a,
                                      P[AP_FULL_LN_W], P[AP_FULL_LN_B], N, H, c->ln_eps);
        x = la->out;
    }
}

// Gathers the selected positions and runs the MLM head up to logits. Returns M.
static int head_forward(Albert *m, const AlbertBatch *b) {
    const AlbertConfig *c = &m->cfg;
    const int N = b->B * b->T, E = c->embedding_size, H = c->hidden_size, V = c->vocab_size;
    const float *hL = m->layers[c->num_layers - 1].out;
    int M = 0;
    for (int i = 0; i < N; i++) {
        if (b->targets[i] >= 0) {
            m->sel_idx[M] = i;
            m->sel_tgt[M] = b->targets[i];
            memcpy(m->z_in + (size_t)M * H, hL + (size_t)i * H, (size_t)H * sizeof(float));
            M++;
        }
    }
    if (M == 0) return 0;
    float **P = m->p;
    nn_linear_gelu_forward(m->z1, m->z2, m->z_in, P[AP_PRED_DENSE_W], P[AP_PRED_DENSE_B], M, H, E);
    nn_layernorm_forward(m->z3, m->zmean, m->zrstd, m->z2, P[AP_PRED_LN_W], P[AP_PRED_LN_B], M, E,
                         c->ln_eps);
    nn_linear_forward(m->logits, m->z3, P[AP_WORD], P[AP_PRED_BIAS], M, E, V);
    return M;
}

static void check_batch(const Albert *m, const AlbertBatch *b) {
    CHECK(b->B >= 1 && b->B <= m->max_B && b->T >= 1 && b->T <= m->max_T,
          "micro-batch %d x %d exceeds the model's arenas (%d x %d)", b->B, b->T, m->max_B,
          m->max_T);
    CHECK(!b->sop_labels || m->cfg.sop, "SOP labels given to a model without an SOP head");
}

// ---------------------------------------------------------------------------------------
// backward


static void head_backward(Albert *m, const AlbertBatch *b, int M) {
    const AlbertConfig *c = &m->cfg;
    const int N = b->B * b->T, E = c->embedding_size, H = c->hidden_size, V = c->vocab_size;
    float **P = m->p, **G = m->g;
    // logits now hold probabilities (softmax done in place by the forward)
    nn_zero(m->dlogits, (size_t)M * V);
    nn_softmax_xent_backward(m->dlogits, m->logits, m->sel_tgt, M, V, 1.0f);
    nn_zero(m->dz3, (size_t)M * E);
    nn_linear_backward(m->dz3, G[AP_WORD], G[AP_PRED_BIAS], m->dlogits, m->z3, P[AP_WORD], M, E, V);
    nn_zero(m->dz2, (size_t)M * E);
    nn_layernorm_backward(m->dz2, G[AP_PRED_LN_W], G[AP_PRED_LN_B], m->dz3, m->z2, m->zmean,
                          m->zrstd, P[AP_PRED_LN_W], M, E);
    nn_zero(m->dz1, (size_t)M * E);
    nn_gelu_backward(m->dz1, m->dz2, m->z1, (size_t)M * E);
    nn_zero(m->dz_in, (size_t)M * H);
    nn_linear_backward(m->dz_in, G[AP_PRED_DENSE_W], G[AP_PRED_DENSE_B], m->dz1, m->z_in,
                       P[AP_PRED_DENSE_W], M, H, E);
    // scatter into d(last layer output) (zeroed by the caller)
    (void)N;
    for (int r = 0; r < M; r++)
        memcpy(m->dh + (size_t)m->sel_idx[r] * H, m->dz_in + (size_t)r * H, (size_t)H * sizeof(float));
}

// split: the final micro-batch of a model with split gradients (albert_enable_grad_split):
// layer 0 reports each shared-layer tensor final as soon as its backward is done, and the
// word-embedding rows go to rows (the order of m->order).
static void encoder_backward(Albert *m, const AlbertBatch *b, int train, uint64_t seed,
                             int split) {
    const AlbertConfig *c = &m->cfg;
    const int B = b->B, T = b->T, N = B * T, E = c->embedding_size, H = c->hidden_size;
    const int I = c->intermediate_size, NH = c->num_heads;
    const float p = train ? c->dropout : 0.0f;
    const size_t NHs = (size_t)N * H;
    float **P = m->p, **G = m->g;
#define SPLIT_READY(first, last) \
    do { if (split && l == 0) hook_ready(m, b, first, last); } while (0)

    // the Q, K, V gradients accumulate on their stacked copy, weights as the forward's
    qkv_gather(m->gwqkv, m->gbqkv, G, H);
    for (int l = c->num_layers - 1; l >= 0; l--) {
        LayerActs *la = &m->layers[l];
        const float *x = l > 0 ? m->layers[l - 1].out : m->h0;
        // out = LN2(res2)
        nn_zero(m->dres, NHs);
        nn_layernorm_backward(m->dres, G[AP_FULL_LN_W], G[AP_FULL_LN_B], m->dh, la->res2, la->mean2,
                              la->rstd2, P[AP_FULL_LN_W], N, H);
        // res2 = ffn_output(g) + a
        nn_copy(m->dx, m->dres, NHs);  // dx holds d(a) for now
        nn_zero(m->df1, (size_t)N * I);
        nn_gelu_linear_backward(m->df1, m->dg, G[AP_FFNO_W], G[AP_FFNO_B], m->dres, la->g, la->f1,
                                P[AP_FFNO_W], N, I, H);
        SPLIT_READY(AP_FFNO_W, AP_FULL_LN_B);
        hook_progress(m, b);
        nn_linear_backward(m->dx, G[AP_FFN_W], G[AP_FFN_B], m->df1, la->a, P[AP_FFN_W], N, H, I);
        SPLIT_READY(AP_FFN_W, AP_FFN_B);
        hook_progress(m, b);
        // a = LN1(res1)
        nn_zero(m->dres, NHs);
        nn_layernorm_backward(m->dres, G[AP_ATT_LN_W], G[AP_ATT_LN_B], m->dx, la->res1, la->mean1,
                              la->rstd1, P[AP_ATT_LN_W], N, H);
        SPLIT_READY(AP_ATT_LN_W, AP_ATT_LN_B);
        // res1 = x + dropout(dense(ctx))
        nn_copy(m->dh, m->dres, NHs);  // dh becomes d(x)
        nn_zero(m->dproj, NHs);
        nn_dropout_backward(m->dproj, m->dres, NHs, p, cx_rng_derive(seed, SITE_OUT + (uint64_t)l),
                            b->sample_index0 * (uint64_t)T * H);
        nn_zero(m->dctx, NHs);
        nn_linear_backward(m->dctx, G[AP_O_W], G[AP_O_B], m->dproj, la->ctx, P[AP_O_W], N, H, H);
        SPLIT_READY(AP_O_W, AP_O_B);
        hook_progress(m, b);
        nn_attention_qkv_backward(m->dqkv, m->dctx, la->qkv, la->att, B, T, H, NH, p,
                                  cx_rng_derive(seed, SITE_ATT + (uint64_t)l),
                                  b->sample_index0 * (uint64_t)NH * T * T, m->att_scratch);
        hook_progress(m, b);
        nn_linear_backward(m->dh, m->gwqkv, m->gbqkv, m->dqkv, x, m->wqkv, N, H, 3 * H);
        if (l == 0) qkv_scatter(G, m->gwqkv, m->gbqkv, H);  // the last application's done
        SPLIT_READY(AP_Q_W, AP_Q_B);
        SPLIT_READY(AP_K_W, AP_K_B);
        SPLIT_READY(AP_V_W, AP_V_B);
        hook_progress(m, b);
    }
#undef SPLIT_READY
    if (!split) hook_ready(m, b, AP_Q_W, AP_FULL_LN_B);  // the shared layer: all L applications done
    // h0 = map_in(dropout(LN(emb)))
    nn_zero(m->demb, (size_t)N * E);
    nn_linear_backward(m->demb, G[AP_MAP_W], G[AP_MAP_B], m->dh, m->emb_drop, P[AP_MAP_W], N, E, H);
    nn_zero(m->demb2, (size_t)N * E);
    nn_dropout_backward(m->demb2, m->demb, (size_t)N * E, p, cx_rng_derive(seed, SITE_EMB),
                        b->sample_index0 * (uint64_t)T * E);
    nn_zero(m->demb, (size_t)N * E);
    nn_layernorm_backward(m->demb, G[AP_EMB_LN_W], G[AP_EMB_LN_B], m->demb2, m->emb, m->emb_mean,
                          m->emb_rstd, P[AP_EMB_LN_W], N, E);
    if (split)  // the rows go to the backend (their ids were set by albert_step)
        memcpy(m->rows, m->demb, (size_t)N * E * sizeof(float));
    else
        nn_embedding_backward(G[AP_WORD], m->demb, b->input_ids, N, E);
    float *gpos = G[AP_POS], *gtyp = G[AP_TYPE];
    for (int bi = 0; bi < B; bi++) {
        for (int t = 0; t < T; t++) {
            const float *row = m->demb + ((size_t)bi * T + t) * E;
            float *gp = gpos + (size_t)t * E;
            float *gt = gtyp + (b->token_type_ids && b->token_type_ids[bi * T + t] ? E : 0);
            for (int e = 0; e < E; e++) {
                gp[e] += row[e];
                gt[e] += row[e];
            }
        }
    }
}

// SOP head: pooled = tanh(pooler([CLS] state)); probs = softmax(classifier(pooled)).
// Returns the summed cross-entropy over sequences with a label >= 0.
static double sop_forward(Albert *m, const AlbertBatch *b) {
    const int B = b->B, T = b->T, H = m->cfg.hidden_size;
    const float *hL = m->layers[m->cfg.num_layers - 1].out;
    for (int bi = 0; bi < B; bi++)
        memcpy(m->cls + (size_t)bi * H, hL + (size_t)bi * T * H, (size_t)H * sizeof(float));
    nn_linear_forward(m->pooled, m->cls, m->p[AP_POOL_W], m->p[AP_POOL_B], B, H, H);
    for (size_t i = 0; i < (size_t)B * H; i++) m->pooled[i] = tanhf(m->pooled[i]);
    nn_linear_forward(m->sop_probs, m->pooled, m->p[AP_SOP_W], m->p[AP_SOP_B], B, H, 2);
    return nn_softmax_xent_forward(m->sop_probs, m->sop_probs, b->sop_labels, B, 2);
}

static void sop_backward(Albert *m, const AlbertBatch *b) {
    const int B = b->B, T = b->T, H = m->cfg.hidden_size;
    nn_zero(m->dsop, (size_t)B * 2);
    nn_softmax_xent_backward(m->dsop, m->sop_probs, b->sop_labels, B, 2, b->sop_scale);
    nn_zero(m->dpooled, (size_t)B * H);
    nn_linear_backward(m->dpooled, m->g[AP_SOP_W], m->g[AP_SOP_B], m->dsop, m->pooled,
                       m->p[AP_SOP_W], B, H, 2);
    for (size_t i = 0; i < (size_t)B * H; i++)
        m->dpooled[i] *= 1.0f - m->pooled[i] * m->pooled[i];  // tanh'
    nn_zero(m->dcls, (size_t)B * H);
    nn_linear_backward(m->dcls, m->g[AP_POOL_W], m->g[AP_POOL_B], m->dpooled, m->cls,
                       m->p[AP_POOL_W], B, H, H);
    for (int bi = 0; bi < B; bi++) {
        float *d = m->dh + (size_t)bi * T * H;
        const float *s = m->dcls + (size_t)bi * H;
        for (int j = 0; j < H; j++) d[j] += s[j];
    }
}

double albert_step(Albert *m, const AlbertBatch *b, int train, int backward, uint64_t seed,
                   long *n_selected, double *sop_sum) {
    check_batch(m, b);
    CHECK(!m->encoder_only, "albert_step on an encoder-only model");
    encoder_forward(m, b, train, seed);
    int M = head_forward(m, b);
    *n_selected = M;
    double loss = 0.0, sop = 0.0;
    if (M > 0) loss = nn_softmax_xent_forward(m->logits, m->logits, m->sel_tgt, M, m->cfg.vocab_size);
    int has_sop = b->sop_labels != NULL;
    if (has_sop) sop = sop_forward(m, b);
    if (sop_sum) *sop_sum = sop;
    if (backward && (M > 0 || has_sop)) {
        const int split = m->split && b->final_micro;
        if (split) {  // the backend starts exchanging these ids with the first range
            memcpy(m->row_ids, b->input_ids, (size_t)b->B * b->T * sizeof(int32_t));
            m->n_rows = b->B * b->T;
        }
        nn_zero(m->dh, (size_t)b->B * b->T * m->cfg.hidden_size);
        if (M > 0) head_backward(m, b, M);
        if (has_sop) sop_backward(m, b);
        // predictions.* (not the tied word embeddings) and the SOP head are final now
        hook_ready(m, b, AP_PRED_BIAS, m->n_specs - 1);
        if (split) {  // the word embeddings (the rest of them goes to rows), unused positions
            hook_ready(m, b, AP_WORD, AP_WORD);
            if (m->ord_pos_unused >= 0) hook_range(m, b, m->order[m->ord_pos_unused]);
        }
        hook_progress(m, b);
        encoder_backward(m, b, train, seed, split);
        if (split) {  // the position rows in use, then types, LayerNorm, mapping
            hook_range(m, b, m->order[m->ord_tail]);
            hook_range(m, b, m->order[m->ord_tail + 1]);
        }
        else hook_ready(m, b, AP_WORD, AP_MAP_B);  // embeddings, mapping, word (tied) last
    }
    return loss;
}

int albert_predict(Albert *m, const AlbertBatch *b, float *probs) {
    check_batch(m, b);
    CHECK(!m->encoder_only, "albert_predict on an encoder-only model");
    encoder_forward(m, b, 0, 0);
    int M = head_forward(m, b);
    if (M == 0) return 0;
    nn_softmax_xent_forward(probs, m->logits, m->sel_tgt, M, m->cfg.vocab_size);
    return M;
}

const float *albert_encode(Albert *m, const AlbertBatch *b, int train, uint64_t seed) {
    check_batch(m, b);
    encoder_forward(m, b, train, seed);
    return m->layers[m->cfg.num_layers - 1].out;
}

void albert_encode_backward(Albert *m, const AlbertBatch *b, int train, uint64_t seed,
                            const float *dout) {
    check_batch(m, b);
    memcpy(m->dh, dout, (size_t)b->B * b->T * m->cfg.hidden_size * sizeof(float));
    const int split = m->split && b->final_micro;
    encoder_backward(m, b, train, seed, split);
    if (split) {  // the position rows in use, then types, LayerNorm, mapping
        hook_range(m, b, m->order[m->ord_tail]);
        hook_range(m, b, m->order[m->ord_tail + 1]);
    } else {
        hook_ready(m, b, AP_WORD, AP_MAP_B);
    }
}
