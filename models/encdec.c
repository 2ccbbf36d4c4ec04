// encdec.c: encoder-decoder forward/backward, incremental decoding, training task (see
// encdec.h). The encoder is an encoder-only ALBERT living in the prefix of our arenas.
#include "models/encdec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/hooks_internal.h"
#include "models/nn.h"
#include "models/par.h"
#include "models/rng.h"

// decoder tensors: globals, then DL_COUNT per layer, then the head
enum { DG_POS, DG_LN_W, DG_LN_B, DG_PROJ_W, DG_PROJ_B, DG_COUNT };
enum {
    DL_SQ_W,
    DL_SQ_B,
    DL_SK_W,
    DL_SK_B,
    DL_SV_W,
    DL_SV_B,
    DL_SO_W,
    DL_SO_B,
    DL_SLN_W,
    DL_SLN_B,
    DL_CQ_W,
    DL_CQ_B,
    DL_CK_W,
    DL_CK_B,
    DL_CV_W,
    DL_CV_B,
    DL_CO_W,
    DL_CO_B,
    DL_CLN_W,
    DL_CLN_B,
    DL_FC1_W,
    DL_FC1_B,
    DL_FC2_W,
    DL_FC2_B,
    DL_FLN_W,
    DL_FLN_B,
    DL_COUNT
};
enum { DH_DENSE_W, DH_DENSE_B, DH_LN_W, DH_LN_B, DH_BIAS, DH_COUNT };
enum { DH_GATE_W = DH_COUNT, DH_GATE_B, DH_COUNT_COPY };  // with cfg.copy

// dropout streams of the decoder (the encoder uses albert.c's sites under the step seed)
#define DEC_SEED_TAG 0xDEC0DEull
enum { SITE_EMB = 1, SITE_LAYER = 100 };  // layer l: SITE_LAYER + 8 l + {0..4}
enum { SUB_SA_ATT, SUB_SA_OUT, SUB_CA_ATT, SUB_CA_OUT, SUB_FFN_OUT };

// Per-layer activations saved for backward. N = B*Tt rows, S = B*Ts encoder rows.
typedef struct {
    float *q, *k, *v;         // (N,H)
    float *att;               // (B,NH,Tt,Tt)
    float *ctx, *res1, *a1;   // (N,H)
    float *mean1, *rstd1;     // (N)
    float *cq;                // (N,H)
    float *ck, *cv;           // (S,H)
    float *catt;              // (B,NH,Tt,Ts)
    float *cctx, *res2, *a2;  // (N,H)
    float *mean2, *rstd2;     // (N)
    float *f1, *g;            // (N,I)
    float *res3, *out;        // (N,H)
    float *mean3, *rstd3;     // (N)
} DecActs;

struct EncDec {
    EncDecConfig cfg;
    int max_B, max_Ts, max_Tt;
    BackwardHooks hooks;  // encdec_set_backward_hooks
    // split gradients (encdec_enable_grad_split): the final micro-batch's input-embedding
    // rows, the encoder's (B*Ts) then the decoder's (B*Tt), go to rows instead of the table
    int split;
    float *rows;                       // (max_B*(max_Ts+max_Tt), E)
    int32_t *row_ids;
    int n_rows;
    GradRange *order, enc_pos_unused;
    GradSplit gs;
    Albert *enc;
    TensorSpec *specs;
    int n_specs;
    size_t n_params;
    float *params, *grads;
    float **p, **g;  // per-spec views

    float *act_arena;
    int32_t *dec_in, *labels, *smask;                           // (N) (N) (S)
    const float *enc_out;                                       // (S,H) in the encoder
    float *emb, *emb_ln, *emb_mean, *emb_rstd, *emb_drop, *h0;  // (N,E)x2 (N)x2 (N,E) (N,H)
    DecActs *layers;
    int32_t *sel_idx, *sel_tgt;                               // (N)
    float *z_in, *z1, *z2, *z3, *zmean, *zrstd, *logits;      // (N,H) (N,E)x3 (N)x2 (N,V)
    float *dh, *dx, *dres, *dq, *dk, *dv, *dctx, *dproj;      // (N,H)
    float *dg, *df1;                                          // (N,I)
    float *dck, *dcv, *denc;                                  // (S,H)
    float *dz_in, *dz1, *dz2, *dz3, *dlogits, *demb, *demb2;  // (N,H) (N,E)x3 (N,V) (N,E)x2
    float *att_scratch;                                       // B * NH * Tt * max(Tt, Ts)
    // copy mechanism (cfg.copy): each batch row's distinct source tokens, and per loss row
    // (selected target position) the copy weight of each of them, the gate, Pv
    int32_t *utok, *upos, *nu, *vslot;  // (S) (S) (B) (V, all -1 between uses)
    float *cw, *gate, *probs;           // (N,Ts) (N) (N,V)
    float *dcw, *dgate, *dcatt;         // (N,Ts) (N) (B,NH,Tt,Ts): the last layer's
    float *dcopy_ctx, *dcopy_x;         // (N,H) (N,E)
    double *row_loss;                   // (N)
};

static const char *const DL_NAMES[DL_COUNT] = {
    "self_attn.q_proj.weight",
    "self_attn.q_proj.bias",
    "self_attn.k_proj.weight",
    "self_attn.k_proj.bias",
    "self_attn.v_proj.weight",
    "self_attn.v_proj.bias",
    "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",
    "self_attn_layer_norm.weight",
    "self_attn_layer_norm.bias",
    "encoder_attn.q_proj.weight",
    "encoder_attn.q_proj.bias",
    "encoder_attn.k_proj.weight",
    "encoder_attn.k_proj.bias",
    "encoder_attn.v_proj.weight",
    "encoder_attn.v_proj.bias",
    "encoder_attn.out_proj.weight",
    "encoder_attn.out_proj.bias",
    "encoder_attn_layer_norm.weight",
    "encoder_attn_layer_norm.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
    "final_layer_norm.weight",
    "final_layer_norm.bias",
};

static int gidx(int j) { return AP_N_ENCODER + j; }
static int lidx(int l, int j) { return AP_N_ENCODER + DG_COUNT + l * DL_COUNT + j; }
static int hidx(const EncDec *m, int j) {
    return AP_N_ENCODER + DG_COUNT + m->cfg.dec_layers * DL_COUNT + j;
}

int encdec_config_check(const EncDecConfig *c, char *err) {
    if (albert_config_check(&c->enc, err) != 0) return -1;
    if (c->dec_layers < 1 || c->dec_layers > 1024)
        return cx_err(err, "decoder.num_layers must be in [1, 1024] (got %d)", c->dec_layers);
    if (c->dec_intermediate > (1 << 17) || c->dec_max_position > (1 << 16))
        return cx_err(err, "decoder.intermediate_size (%d) must be <= %d and decoder.max_position "
                      "(%d) <= %d", c->dec_intermediate, 1 << 17, c->dec_max_position, 1 << 16);
    if (c->dec_heads < 1 || c->enc.hidden_size % c->dec_heads != 0)
        return cx_err(err, "decoder.num_heads (%d) must divide model.hidden_size (%d)",
                      c->dec_heads, c->enc.hidden_size);
    if (c->dec_intermediate < 1)
        return cx_err(err, "decoder.intermediate_size must be >= 1 (got %d)", c->dec_intermediate);
    if (c->dec_max_position < 2)
        return cx_err(err, "decoder.max_position must be >= 2 (got %d)", c->dec_max_position);
    if (!(c->dec_dropout >= 0.0f && c->dec_dropout < 1.0f))
        return cx_err(err, "decoder.dropout must be in [0, 1) (got %g)", (double)c->dec_dropout);
    if (c->copy != 0 && c->copy != 1)
        return cx_err(err, "decoder.copy must be 0 (none) or 1 (pointer-generator) (got %d)",
                      c->copy);
    if (!(c->label_smoothing >= 0.0f && c->label_smoothing < 1.0f))
        return cx_err(err, "decoder.label_smoothing must be in [0, 1) (got %g)",
                      (double)c->label_smoothing);
    return 0;
}

static void build_specs(EncDec *m) {
    const EncDecConfig *c = &m->cfg;
    const long V = c->enc.vocab_size, E = c->enc.embedding_size, H = c->enc.hidden_size;
    const long I = c->dec_intermediate;
    m->n_specs = AP_N_ENCODER + DG_COUNT + c->dec_layers * DL_COUNT +
                 (c->copy ? DH_COUNT_COPY : DH_COUNT);
    m->specs = cx_calloc((size_t)m->n_specs, sizeof(TensorSpec));
    TensorSpec *s = m->specs;
    memcpy(s, albert_specs(m->enc), AP_N_ENCODER * sizeof(TensorSpec));
    tensor_spec_set(&s[gidx(DG_POS)], 0, 2, c->dec_max_position, E,
                    "decoder.embed_positions.weight");
    tensor_spec_set(&s[gidx(DG_LN_W)], 1, 1, E, 0, "decoder.layernorm_embedding.weight");
    tensor_spec_set(&s[gidx(DG_LN_B)], 1, 1, E, 0, "decoder.layernorm_embedding.bias");
    tensor_spec_set(&s[gidx(DG_PROJ_W)], 0, 2, H, E, "decoder.project_in.weight");
    tensor_spec_set(&s[gidx(DG_PROJ_B)], 1, 1, H, 0, "decoder.project_in.bias");
    for (int l = 0; l < c->dec_layers; l++) {
        for (int j = 0; j < DL_COUNT; j++) {
            long d0 = H, d1 = H;
            if (j == DL_FC1_W || j == DL_FC1_B) d0 = I;
            if (j == DL_FC2_W) d1 = I;
            int is_w = j % 2 == 0;  // weights at even slots, biases at odd ones
            int is_ln = j == DL_SLN_W || j == DL_CLN_W || j == DL_FLN_W;
            int ndim = is_w && !is_ln ? 2 : 1;
            tensor_spec_set(&s[lidx(l, j)], ndim == 1, ndim, d0, d1, "decoder.layers.%d.%s", l,
                            DL_NAMES[j]);
        }
    }
    tensor_spec_set(&s[hidx(m, DH_DENSE_W)], 0, 2, E, H, "lm_head.dense.weight");
    tensor_spec_set(&s[hidx(m, DH_DENSE_B)], 1, 1, E, 0, "lm_head.dense.bias");
    tensor_spec_set(&s[hidx(m, DH_LN_W)], 1, 1, E, 0, "lm_head.LayerNorm.weight");
    tensor_spec_set(&s[hidx(m, DH_LN_B)], 1, 1, E, 0, "lm_head.LayerNorm.bias");
    tensor_spec_set(&s[hidx(m, DH_BIAS)], 1, 1, V, 0, "lm_head.bias");
    if (c->copy) {
        tensor_spec_set(&s[hidx(m, DH_GATE_W)], 0, 2, 1, 2 * H + E, "pointer.gate.weight");
        tensor_spec_set(&s[hidx(m, DH_GATE_B)], 1, 1, 1, 0, "pointer.gate.bias");
    }
    // after the encoder prefix, which is already 16-float aligned
    m->n_params = tensor_layout(s + AP_N_ENCODER, m->n_specs - AP_N_ENCODER, albert_n_params(m->enc));
}

static const TensorAlias ALIASES[] = {
    {"decoder.embed_tokens.weight", "albert.embeddings.word_embeddings.weight"},
    {"lm_head.decoder.weight", "albert.embeddings.word_embeddings.weight"},
};

const TensorAlias *encdec_aliases(int *n) {
    *n = (int)(sizeof ALIASES / sizeof ALIASES[0]);
    return ALIASES;
}

static void carve_acts(EncDec *m, TensorCarver *cv) {
    const EncDecConfig *c = &m->cfg;
    const size_t B = (size_t)m->max_B, Tt = (size_t)m->max_Tt, Ts = (size_t)m->max_Ts;
    const size_t N = B * Tt, S = B * Ts, NH = (size_t)c->dec_heads;
    const size_t E = c->enc.embedding_size, H = c->enc.hidden_size, I = c->dec_intermediate;
    const size_t V = c->enc.vocab_size;
    m->dec_in = (int32_t *)tensor_carve(cv, N);
    m->labels = (int32_t *)tensor_carve(cv, N);
    m->smask = (int32_t *)tensor_carve(cv, S);
    tensor_carve_each(cv, N * E, &m->emb, &m->emb_ln, NULL);
    tensor_carve_each(cv, N, &m->emb_mean, &m->emb_rstd, NULL);
    m->emb_drop = tensor_carve(cv, N * E);
    m->h0 = tensor_carve(cv, N * H);
    for (int l = 0; l < c->dec_layers; l++) {
        DecActs *la = &m->layers[l];
        tensor_carve_each(cv, N * H, &la->q, &la->k, &la->v, NULL);
        la->att = tensor_carve(cv, B * NH * Tt * Tt);
        tensor_carve_each(cv, N * H, &la->ctx, &la->res1, &la->a1, NULL);
        tensor_carve_each(cv, N, &la->mean1, &la->rstd1, NULL);
        la->cq = tensor_carve(cv, N * H);
        tensor_carve_each(cv, S * H, &la->ck, &la->cv, NULL);
        la->catt = tensor_carve(cv, B * NH * Tt * Ts);
        tensor_carve_each(cv, N * H, &la->cctx, &la->res2, &la->a2, NULL);
        tensor_carve_each(cv, N, &la->mean2, &la->rstd2, NULL);
        tensor_carve_each(cv, N * I, &la->f1, &la->g, NULL);
        tensor_carve_each(cv, N * H, &la->res3, &la->out, NULL);
        tensor_carve_each(cv, N, &la->mean3, &la->rstd3, NULL);
    }
    m->sel_idx = (int32_t *)tensor_carve(cv, N);
    m->sel_tgt = (int32_t *)tensor_carve(cv, N);
    m->z_in = tensor_carve(cv, N * H);
    tensor_carve_each(cv, N * E, &m->z1, &m->z2, &m->z3, NULL);
    tensor_carve_each(cv, N, &m->zmean, &m->zrstd, NULL);
    m->logits = tensor_carve(cv, N * V);
    tensor_carve_each(cv, N * H, &m->dh, &m->dx, &m->dres, &m->dq, &m->dk, &m->dv, &m->dctx,
                      &m->dproj, NULL);
    tensor_carve_each(cv, N * I, &m->dg, &m->df1, NULL);
    tensor_carve_each(cv, S * H, &m->dck, &m->dcv, &m->denc, NULL);
    m->dz_in = tensor_carve(cv, N * H);
    tensor_carve_each(cv, N * E, &m->dz1, &m->dz2, &m->dz3, NULL);
    m->dlogits = tensor_carve(cv, N * V);
    tensor_carve_each(cv, N * E, &m->demb, &m->demb2, NULL);
    m->att_scratch = tensor_carve(cv, B * NH * Tt * (Tt > Ts ? Tt : Ts));
    if (c->copy) {
        m->utok = (int32_t *)tensor_carve(cv, S);
        m->upos = (int32_t *)tensor_carve(cv, S);
        m->nu = (int32_t *)tensor_carve(cv, B);
        m->vslot = (int32_t *)tensor_carve(cv, V);
        tensor_carve_each(cv, N * Ts, &m->cw, &m->dcw, NULL);
        tensor_carve_each(cv, N, &m->gate, &m->dgate, NULL);
        m->probs = tensor_carve(cv, N * V);
        m->dcatt = tensor_carve(cv, B * NH * Tt * Ts);
        m->dcopy_ctx = tensor_carve(cv, N * H);
        m->dcopy_x = tensor_carve(cv, N * E);
        m->row_loss = (double *)tensor_carve(cv, 2 * N);
    }
}

EncDec *encdec_create(const EncDecConfig *cfg, int max_B, int max_Ts, int max_Tt, uint64_t seed) {
    char err[CX_ERRLEN];
    CHECK(encdec_config_check(cfg, err) == 0, "%s", err);
    CHECK(max_B >= 1 && max_Ts >= 2 && max_Ts <= cfg->enc.max_position && max_Tt >= 1 &&
              max_Tt <= cfg->dec_max_position,
          "micro-batch %d x (%d, %d) does not fit the positions (%d, %d)", max_B, max_Ts, max_Tt,
          cfg->enc.max_position, cfg->dec_max_position);
    EncDec *m = cx_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->max_B = max_B;
    m->max_Ts = max_Ts;
    m->max_Tt = max_Tt;
    m->enc = albert_create_encoder(&cfg->enc, max_B, max_Ts, seed);
    build_specs(m);
    m->params = cx_calloc(m->n_params, sizeof(float));
    m->grads = cx_calloc(m->n_params, sizeof(float));
    albert_use_arenas(m->enc, m->params, m->grads);  // copies the encoder's initial weights
    m->p = cx_calloc((size_t)m->n_specs, sizeof(float *));
    m->g = cx_calloc((size_t)m->n_specs, sizeof(float *));
    tensor_views(m->specs, m->n_specs, m->params, m->p);
    tensor_views(m->specs, m->n_specs, m->grads, m->g);
    m->layers = cx_calloc((size_t)cfg->dec_layers, sizeof(DecActs));
    TensorCarver cv = {0};
    carve_acts(m, &cv);
    m->act_arena = tensor_carver_alloc(&cv);
    carve_acts(m, &cv);
    if (cfg->copy)
        for (int v = 0; v < cfg->enc.vocab_size; v++) m->vslot[v] = -1;

    // decoder: normal(0, init_std) matrices and positions, zero biases, unit LayerNorm;
    // element j of tensor i draws from (derive(derive(seed, DEC_SEED_TAG), i), j)
    tensor_init_hf(m->specs, m->params, AP_N_ENCODER, m->n_specs,
                   cx_rng_derive(seed, DEC_SEED_TAG), cfg->enc.init_std);
    return m;
}

void encdec_free(EncDec *m) {
    if (!m) return;
    albert_free(m->enc);
    free(m->specs);
    free(m->params);
    free(m->grads);
    free(m->p);
    free(m->g);
    free(m->layers);
    free(m->act_arena);
    free(m->rows);
    free(m->row_ids);
    free(m->order);
    free(m);
}

const EncDecConfig *encdec_config(const EncDec *m) { return &m->cfg; }
const TensorSpec *encdec_specs(const EncDec *m) { return m->specs; }
int encdec_n_specs(const EncDec *m) { return m->n_specs; }
size_t encdec_n_params(const EncDec *m) { return m->n_params; }
float *encdec_params(EncDec *m) { return m->params; }
float *encdec_grads(EncDec *m) { return m->grads; }
Albert *encdec_encoder(EncDec *m) { return m->enc; }

// ---------------------------------------------------------------------------------------
// forward


static uint64_t site(uint64_t dseed, int l, int sub) {
    return cx_rng_derive(dseed, (uint64_t)(SITE_LAYER + 8 * l + sub));
}

static void check_batch(const EncDec *m, const EncDecBatch *b) {
    CHECK(b->B >= 1 && b->B <= m->max_B && b->Ts >= 1 && b->Ts <= m->max_Ts && b->Tt >= 1 &&
              b->Tt <= m->max_Tt,
          "micro-batch %d x (%d, %d) exceeds the model's arenas (%d x (%d, %d))", b->B, b->Ts,
          b->Tt, m->max_B, m->max_Ts, m->max_Tt);
}

static AlbertBatch enc_batch(const EncDec *m, const EncDecBatch *b) {
    AlbertBatch ab = {.B = b->B,
                      .T = b->Ts,
                      .input_ids = b->src,
                      .attention_mask = m->smask,
                      .sample_index0 = b->sample_index0,
                      .final_micro = b->final_micro};
    return ab;
}

void encdec_set_backward_hooks(EncDec *m, void (*ready)(void *ctx, size_t offset, size_t count),
                               void (*progress)(void *ctx), void *ctx) {
    m->hooks = (BackwardHooks){ready, progress, ctx};
    albert_set_backward_hooks(m->enc, ready, progress, ctx);
}

// The arena range of specs [first, last]: up to the next spec's offset (padding included).
static GradRange spec_range(const EncDec *m, int first, int last) {
    return hooks_spec_range(m->specs, m->n_specs, m->n_params, first, last);
}

static void hook_range(EncDec *m, const EncDecBatch *b, GradRange r) {
    hooks_ready(&m->hooks, b->final_micro, r);
}

// Reports specs [first, last] final.
static void hook_ready(EncDec *m, const EncDecBatch *b, int first, int last) {
    hook_range(m, b, spec_range(m, first, last));
}

const GradSplit *encdec_enable_grad_split(EncDec *m) {
    if (m->split) return &m->gs;
    const EncDecConfig *c = &m->cfg;
    const size_t E = (size_t)c->enc.embedding_size;
    const size_t max_rows = (size_t)m->max_B * (size_t)(m->max_Ts + m->max_Tt);
    m->rows = cx_calloc(max_rows * E, sizeof(float));
    m->row_ids = cx_calloc(max_rows, sizeof(int32_t));
    int ne = 0;
    const GradRange *enc = albert_encoder_split(m->enc, m->rows, &ne, &m->enc_pos_unused);
    m->order = cx_calloc((size_t)(4 + c->dec_layers + ne), sizeof *m->order);
    // the order encdec_step finalises them in
    int k = 0;
    m->order[k++] = spec_range(m, hidx(m, 0), m->n_specs - 1);  // the head
    m->order[k++] = spec_range(m, AP_WORD, AP_WORD);  // word embeddings: the output projection
    if (m->enc_pos_unused.hi > m->enc_pos_unused.lo) m->order[k++] = m->enc_pos_unused;
    for (int l = c->dec_layers - 1; l >= 0; l--)
        m->order[k++] = spec_range(m, lidx(l, 0), lidx(l, DL_COUNT - 1));
    m->order[k++] = spec_range(m, gidx(0), gidx(DG_COUNT - 1));  // the decoder's embeddings
    for (int i = 0; i < ne; i++) m->order[k++] = enc[i];  // the encoder's shared layer, its tail
    m->split = 1;
    m->gs = (GradSplit){.order = m->order, .n_order = k, .rows = m->rows, .row_ids = m->row_ids,
                        .n_rows = &m->n_rows, .max_rows = (int)max_rows, .row_len = (int)E,
                        .table_offset = m->specs[AP_WORD].offset,
                        .table_rows = c->enc.vocab_size};
    return &m->gs;
}

static void hook_progress(EncDec *m, const EncDecBatch *b) {
    hooks_progress(&m->hooks, b->final_micro);
}

static int copy_source(int32_t *ut, int32_t *upos, int32_t *vslot, const int32_t *src,
                       const int32_t *mask, int Ts, int V);

// Source mask, decoder inputs (BOS + target shifted right), labels (PAD -> -1) and, with
// the copy mechanism, each source's distinct tokens.
static void prepare(EncDec *m, const EncDecBatch *b) {
    const int S = b->B * b->Ts, Tt = b->Tt;
    for (int i = 0; i < S; i++)
        m->smask[i] = b->src_mask ? b->src_mask[i] != 0 : b->src[i] != ED_PAD;
    for (int bi = 0; bi < b->B; bi++) {
        const int32_t *y = b->tgt + (size_t)bi * Tt;
        int32_t *in = m->dec_in + (size_t)bi * Tt, *lab = m->labels + (size_t)bi * Tt;
        for (int t = 0; t < Tt; t++) {
            CHECK(y[t] >= 0 && y[t] < m->cfg.enc.vocab_size, "target id %d outside [0, %d)", y[t],
                  m->cfg.enc.vocab_size);
            in[t] = t == 0 ? ED_BOS : y[t - 1];
            lab[t] = y[t] == ED_PAD ? -1 : y[t];
        }
    }
    if (m->cfg.copy)
        for (int bi = 0; bi < b->B; bi++) {
            const size_t o = (size_t)bi * b->Ts;
            m->nu[bi] = copy_source(m->utok + o, m->upos + o, m->vslot, b->src + o, m->smask + o,
                                    b->Ts, m->cfg.enc.vocab_size);
        }
}

static void decoder_forward(EncDec *m, const EncDecBatch *b, float p, uint64_t dseed) {
    const EncDecConfig *c = &m->cfg;
    const int B = b->B, Tt = b->Tt, Ts = b->Ts, N = B * Tt, S = B * Ts;
    const int E = c->enc.embedding_size, H = c->enc.hidden_size, I = c->dec_intermediate;
    const int NH = c->dec_heads;
    const float eps = c->enc.ln_eps;
    const uint64_t s0 = b->sample_index0;
    float **P = m->p;

    // embeddings: tied word embeddings + own positions, LayerNorm, dropout, E -> H
    nn_embedding_forward(m->emb, m->dec_in, P[AP_WORD], N, E);
    for (int bi = 0; bi < B; bi++)
        for (int t = 0; t < Tt; t++) {
            float *row = m->emb + ((size_t)bi * Tt + t) * E;
            const float *pos = P[gidx(DG_POS)] + (size_t)t * E;
            for (int e = 0; e < E; e++) row[e] += pos[e];
        }
    nn_layernorm_forward(m->emb_ln, m->emb_mean, m->emb_rstd, m->emb, P[gidx(DG_LN_W)],
                         P[gidx(DG_LN_B)], N, E, eps);
    nn_dropout_forward(m->emb_drop, m->emb_ln, (size_t)N * E, p, cx_rng_derive(dseed, SITE_EMB),
                       s0 * (uint64_t)Tt * E);
    nn_linear_forward(m->h0, m->emb_drop, P[gidx(DG_PROJ_W)], P[gidx(DG_PROJ_B)], N, E, H);

    const size_t NHs = (size_t)N * H;
    const uint64_t off_h = s0 * (uint64_t)Tt * H;
    const float *x = m->h0;
    for (int l = 0; l < c->dec_layers; l++) {
        DecActs *la = &m->layers[l];
        float **W = P + lidx(l, 0);
        // causal self-attention
        nn_linear_forward(la->q, x, W[DL_SQ_W], W[DL_SQ_B], N, H, H);
        nn_linear_forward(la->k, x, W[DL_SK_W], W[DL_SK_B], N, H, H);
        nn_linear_forward(la->v, x, W[DL_SV_W], W[DL_SV_B], N, H, H);
        nn_attention_ex_forward(la->ctx, la->att, la->q, la->k, la->v, NULL, B, Tt, Tt, H, NH, 1, p,
                                site(dseed, l, SUB_SA_ATT), s0 * (uint64_t)NH * Tt * Tt,
                                m->att_scratch);
        nn_linear_forward(m->dproj, la->ctx, W[DL_SO_W], W[DL_SO_B], N, H, H);
        nn_dropout_forward(m->dproj, m->dproj, NHs, p, site(dseed, l, SUB_SA_OUT), off_h);
        nn_residual_layernorm_forward(la->res1, la->a1, la->mean1, la->rstd1, m->dproj,
                                      x, W[DL_SLN_W], W[DL_SLN_B], N, H, eps);
        // cross-attention over the encoder output (source padding masked)
        nn_linear_forward(la->cq, la->a1, W[DL_CQ_W], W[DL_CQ_B], N, H, H);
        nn_linear_forward(la->ck, m->enc_out, W[DL_CK_W], W[DL_CK_B], S, H, H);
        nn_linear_forward(la->cv, m->enc_out, W[DL_CV_W], W[DL_CV_B], S, H, H);
        nn_attention_ex_forward(la->cctx, la->catt, la->cq, la->ck, la->cv, m->smask, B, Tt, Ts, H,
                                NH, 0, p, site(dseed, l, SUB_CA_ATT), s0 * (uint64_t)NH * Tt * Ts,
                                m->att_scratch);
        nn_linear_forward(m->dproj, la->cctx, W[DL_CO_W], W[DL_CO_B], N, H, H);
        nn_dropout_forward(m->dproj, m->dproj, NHs, p, site(dseed, l, SUB_CA_OUT), off_h);
        nn_residual_layernorm_forward(la->res2, la->a2, la->mean2, la->rstd2, m->dproj,
                                      la->a1, W[DL_CLN_W], W[DL_CLN_B], N, H, eps);
        // feed-forward
        nn_linear_gelu_forward(la->f1, la->g, la->a2, W[DL_FC1_W], W[DL_FC1_B], N, H, I);
        nn_linear_forward(m->dproj, la->g, W[DL_FC2_W], W[DL_FC2_B], N, I, H);
        nn_dropout_forward(m->dproj, m->dproj, NHs, p, site(dseed, l, SUB_FFN_OUT), off_h);
        nn_residual_layernorm_forward(la->res3, la->out, la->mean3, la->rstd3, m->dproj,
                                      la->a2, W[DL_FLN_W], W[DL_FLN_B], N, H, eps);
        x = la->out;
    }
}

// lm_head on M rows of z_in (M,H) up to logits (M,V) in out.
static void head_forward(EncDec *m, int M, float *out) {
    const EncDecConfig *c = &m->cfg;
    const int E = c->enc.embedding_size, H = c->enc.hidden_size, V = c->enc.vocab_size;
    float **P = m->p;
    nn_linear_gelu_forward(m->z1, m->z2, m->z_in, P[hidx(m, DH_DENSE_W)], P[hidx(m, DH_DENSE_B)],
                           M, H, E);
    nn_layernorm_forward(m->z3, m->zmean, m->zrstd, m->z2, P[hidx(m, DH_LN_W)], P[hidx(m, DH_LN_B)],
                         M, E, c->enc.ln_eps);
    nn_linear_forward(out, m->z3, P[AP_WORD], P[hidx(m, DH_BIAS)], M, E, V);
}

// ---------------------------------------------------------------------------------------
// copy mechanism (pointer-generator; encdec.h)

// The distinct tokens of one source (its unmasked positions) in order of first appearance:
// ut (returned count), upos (Ts) each position's slot in ut, -1 for padding. vslot (V) is
// all -1 on entry and on return.
static int copy_source(int32_t *ut, int32_t *upos, int32_t *vslot, const int32_t *src,
                       const int32_t *mask, int Ts, int V) {
    int n = 0;
    for (int s = 0; s < Ts; s++) {
        if (!mask[s]) {
            upos[s] = -1;
            continue;
        }
        const int32_t v = src[s];
        CHECK(v >= 0 && v < V, "source id %d outside [0, %d)", v, V);
        if (vslot[v] < 0) {
            vslot[v] = n;
            ut[n++] = v;
        }
        upos[s] = vslot[v];
    }
    for (int k = 0; k < n; k++) vslot[ut[k]] = -1;
    return n;
}

// cw (nu): each distinct source token's copy weight, from NH rows of cross-attention
// probabilities over Ts positions (head h at att + h * head_stride), averaged over heads.
static void copy_weights(float *cw, int nu, const float *att, size_t head_stride, int NH,
                         const int32_t *upos, int Ts) {
    for (int k = 0; k < nu; k++) cw[k] = 0.0f;
    for (int s = 0; s < Ts; s++) {
        if (upos[s] < 0) continue;
        float a = 0.0f;
        for (int h = 0; h < NH; h++) a += att[(size_t)h * head_stride + s];
        cw[upos[s]] += a / (float)NH;
    }
}

// g = sigmoid(w . [h; c; x] + bias)
static float copy_gate(const float *w, float bias, const float *h, const float *c,
                       const float *x, int H, int E) {
    float z = bias;
    for (int j = 0; j < H; j++) z += w[j] * h[j];
    for (int j = 0; j < H; j++) z += w[H + j] * c[j];
    for (int e = 0; e < E; e++) z += w[2 * H + e] * x[e];
    return 1.0f / (1.0f + expf(-z));
}

// In place: logits lg (V) of the vocabulary -> log P of the mixed distribution; pv (V)
// receives the vocabulary softmax.
static void copy_log_probs(float *lg, float *pv, float g, const int32_t *ut, const float *cw,
                           int nu, int V) {
    const float lse = nn_softmax_lse(pv, lg, V);
    const float base = logf(g) - lse;
    for (int v = 0; v < V; v++) lg[v] += base;
    for (int k = 0; k < nu; k++) lg[ut[k]] = logf(g * pv[ut[k]] + (1.0f - g) * cw[k]);
}

// Gates and copy weights of the M rows whose target positions are sel_idx[0, M).
static void copy_rows_prepare(EncDec *m, const EncDecBatch *b, int M) {
    const EncDecConfig *c = &m->cfg;
    const int Tt = b->Tt, Ts = b->Ts, H = c->enc.hidden_size, E = c->enc.embedding_size;
    const int NH = c->dec_heads;
    const DecActs *la = &m->layers[c->dec_layers - 1];
    const float *w = m->p[hidx(m, DH_GATE_W)], bias = m->p[hidx(m, DH_GATE_B)][0];
    for (int r = 0; r < M; r++) {
        const int i = m->sel_idx[r], bi = i / Tt, t = i % Tt;
        m->gate[r] = copy_gate(w, bias, la->out + (size_t)i * H, la->cctx + (size_t)i * H,
                               m->emb_ln + (size_t)i * E, H, E);
        copy_weights(m->cw + (size_t)r * Ts, m->nu[bi],
                     la->catt + ((size_t)bi * NH * Tt + t) * Ts, (size_t)Tt * Ts, NH,
                     m->upos + (size_t)bi * Ts, Ts);
    }
}

typedef struct {
    EncDec *m;
    int Tt, Ts;
} CopyTask;

// Loss rows [lo, hi): Pv into probs and each row's loss (encdec.h) into row_loss.
//   sum_v log P[v] = (V - nu) log g + sum_{v not in the source} log Pv[v] + sum_k log P[u_k]
// with sum_{v not in the source} log Pv[v] = sum_v logit[v] - V lse - sum_k log Pv[u_k].
static void copy_rows_forward(void *ctx, int tid, size_t lo, size_t hi) {
    const CopyTask *ct = ctx;
    EncDec *m = ct->m;
    (void)tid;
    const int V = m->cfg.enc.vocab_size, Ts = ct->Ts;
    const double eps = m->cfg.label_smoothing;
    for (size_t r = lo; r < hi; r++) {
        const int bi = m->sel_idx[r] / ct->Tt, y = m->sel_tgt[r], nu = m->nu[bi];
        const int32_t *ut = m->utok + (size_t)bi * Ts;
        const float *lg = m->logits + r * V, *cw = m->cw + r * Ts;
        float *pv = m->probs + r * V;
        double sum_logit = 0.0;
        for (int v = 0; v < V; v++) sum_logit += lg[v];
        const double lse = nn_softmax_lse(pv, lg, V), g = m->gate[r], log_g = log(g);
        double set_logP = 0.0, set_logpv = 0.0, logP_y = NAN;
        for (int k = 0; k < nu; k++) {
            const double lp = log(g * pv[ut[k]] + (1.0 - g) * cw[k]);
            set_logP += lp;
            set_logpv += lg[ut[k]] - lse;
            if (ut[k] == y) logP_y = lp;
        }
        if (isnan(logP_y)) logP_y = log_g + (lg[y] - lse);
        const double sum_logP = (V - nu) * log_g + (sum_logit - V * lse - set_logpv) + set_logP;
        m->row_loss[r] = -(1.0 - eps) * logP_y - eps / V * sum_logP;
    }
}

// dL/dP[v] of a row's loss at the mixture's P[v]: -(eps/V)/P, and -(1-eps)/P more at the target
static inline double copy_dL_dP(double P, int is_target, double e, double eps) {
    return -e / P - (is_target ? (1.0 - eps) / P : 0.0);
}

// Rows [lo, hi) of the backward, loss scale 1: dlogits (written), dcw = dL/d(copy weight),
// dgate = dL/d(gate pre-activation). With gP[v] = dL/dP[v] = -(1-eps)[v=y]/P[v] - (eps/V)/P[v]
// and u[v] = Pv[v] g gP[v] (= -eps/V for tokens neither in the source nor y):
//   dlogit[v] = u[v] - Pv[v] sum(u);  dL/dg = sum_v gP[v] (Pv[v] - C[v]);  dL/dC_k = (1-g) gP[u_k]
static void copy_rows_backward(void *ctx, int tid, size_t lo, size_t hi) {
    const CopyTask *ct = ctx;
    EncDec *m = ct->m;
    (void)tid;
    const int V = m->cfg.enc.vocab_size, Ts = ct->Ts;
    const double eps = m->cfg.label_smoothing, e = eps / V;
    for (size_t r = lo; r < hi; r++) {
        const int bi = m->sel_idx[r] / ct->Tt, y = m->sel_tgt[r], nu = m->nu[bi];
        const int32_t *ut = m->utok + (size_t)bi * Ts;
        const float *pv = m->probs + r * V, *cw = m->cw + r * Ts;
        float *dl = m->dlogits + r * V, *dcw = m->dcw + r * Ts;
        const double g = m->gate[r];
        double sum_u = 0.0, dg = 0.0;
        int y_in = 0, n_rest = V - nu;
        for (int k = 0; k < nu; k++) {
            const double gP = copy_dL_dP(g * pv[ut[k]] + (1.0 - g) * cw[k], ut[k] == y, e, eps);
            y_in |= ut[k] == y;
            dcw[k] = (float)((1.0 - g) * gP);
            sum_u += pv[ut[k]] * g * gP;
            dg += gP * (pv[ut[k]] - cw[k]);
        }
        const double u_y = -(1.0 - eps) - e;  // y outside the source: P[y] = g Pv[y]
        if (!y_in) {
            n_rest--;
            sum_u += u_y;
            dg += u_y / g;
        }
        sum_u += -e * n_rest;
        dg += -e / g * n_rest;
        const float fe = (float)e, fs = (float)sum_u;
        for (int v = 0; v < V; v++) dl[v] = -fe - pv[v] * fs;
        for (int k = 0; k < nu; k++) {
            const double gP = copy_dL_dP(g * pv[ut[k]] + (1.0 - g) * cw[k], ut[k] == y, e, eps);
            dl[ut[k]] = (float)(pv[ut[k]] * g * gP - pv[ut[k]] * sum_u);
        }
        if (!y_in) dl[y] = (float)(u_y - pv[y] * sum_u);
        m->dgate[r] = (float)(dg * g * (1.0 - g));
    }
}

static double copy_loss(EncDec *m, const EncDecBatch *b, int M) {
    copy_rows_prepare(m, b, M);
    CopyTask ct = {m, b->Tt, b->Ts};
    par_run((size_t)M, 1, copy_rows_forward, &ct);
    double loss = 0.0;
    for (int r = 0; r < M; r++) loss += m->row_loss[r];
    return loss;
}

// After the head's backward: the gate's gradients (its weights; into d(last layer output)
// in dh, dcopy_ctx and dcopy_x) and the copy weights' into dcatt (the last layer's
// cross-attention probabilities).
static void copy_backward_rest(EncDec *m, const EncDecBatch *b, int M) {
    const EncDecConfig *c = &m->cfg;
    const int Tt = b->Tt, Ts = b->Ts, N = b->B * Tt, H = c->enc.hidden_size;
    const int E = c->enc.embedding_size, NH = c->dec_heads;
    const DecActs *la = &m->layers[c->dec_layers - 1];
    const float *w = m->p[hidx(m, DH_GATE_W)];
    float *gw = m->g[hidx(m, DH_GATE_W)], *gb = m->g[hidx(m, DH_GATE_B)];
    nn_zero(m->dcopy_ctx, (size_t)N * H);
    nn_zero(m->dcopy_x, (size_t)N * E);
    nn_zero(m->dcatt, (size_t)b->B * NH * Tt * Ts);
    for (int r = 0; r < M; r++) {
        const int i = m->sel_idx[r], bi = i / Tt, t = i % Tt;
        const float dz = m->dgate[r];
        const float *h = la->out + (size_t)i * H, *cc = la->cctx + (size_t)i * H;
        const float *x = m->emb_ln + (size_t)i * E;
        float *dh = m->dh + (size_t)i * H, *dc = m->dcopy_ctx + (size_t)i * H;
        float *dx = m->dcopy_x + (size_t)i * E;
        for (int j = 0; j < H; j++) {
            gw[j] += dz * h[j];
            dh[j] += dz * w[j];
        }
        for (int j = 0; j < H; j++) {
            gw[H + j] += dz * cc[j];
            dc[j] += dz * w[H + j];
        }
        for (int e = 0; e < E; e++) {
            gw[2 * H + e] += dz * x[e];
            dx[e] += dz * w[2 * H + e];
        }
        gb[0] += dz;
        const int32_t *upos = m->upos + (size_t)bi * Ts;
        const float *dcw = m->dcw + (size_t)r * Ts;
        for (int s = 0; s < Ts; s++) {
            if (upos[s] < 0) continue;
            const float d = dcw[upos[s]] / (float)NH;
            for (int hh = 0; hh < NH; hh++)
                m->dcatt[(((size_t)bi * NH + hh) * Tt + t) * Ts + s] = d;
        }
    }
}

static void forward_all(EncDec *m, const EncDecBatch *b, int train, uint64_t seed) {
    check_batch(m, b);
    prepare(m, b);
    AlbertBatch ab = enc_batch(m, b);
    m->enc_out = albert_encode(m->enc, &ab, train, seed);
    decoder_forward(m, b, train ? m->cfg.dec_dropout : 0.0f, cx_rng_derive(seed, DEC_SEED_TAG));
}

// ---------------------------------------------------------------------------------------
// backward

static void head_backward(EncDec *m, const EncDecBatch *b, int M, int N) {
    const EncDecConfig *c = &m->cfg;
    const int E = c->enc.embedding_size, H = c->enc.hidden_size, V = c->enc.vocab_size;
    float **P = m->p, **G = m->g;
    if (c->copy) {  // every row of dlogits written
        CopyTask ct = {m, b->Tt, b->Ts};
        par_run((size_t)M, 1, copy_rows_backward, &ct);
    } else {  // logits now hold the softmax probabilities
        nn_zero(m->dlogits, (size_t)M * V);
        nn_softmax_xent_smooth_backward(m->dlogits, m->logits, m->sel_tgt, M, V,
                                        c->label_smoothing, 1.0f);
    }
    nn_zero(m->dz3, (size_t)M * E);
    nn_linear_backward(m->dz3, G[AP_WORD], G[hidx(m, DH_BIAS)], m->dlogits, m->z3, P[AP_WORD], M, E,
                       V);
    nn_zero(m->dz2, (size_t)M * E);
    nn_layernorm_backward(m->dz2, G[hidx(m, DH_LN_W)], G[hidx(m, DH_LN_B)], m->dz3, m->z2, m->zmean,
                          m->zrstd, P[hidx(m, DH_LN_W)], M, E);
    nn_zero(m->dz1, (size_t)M * E);
    nn_gelu_backward(m->dz1, m->dz2, m->z1, (size_t)M * E);
    nn_zero(m->dz_in, (size_t)M * H);
    nn_linear_backward(m->dz_in, G[hidx(m, DH_DENSE_W)], G[hidx(m, DH_DENSE_B)], m->dz1, m->z_in,
                       P[hidx(m, DH_DENSE_W)], M, H, E);
    nn_zero(m->dh, (size_t)N * H);
    for (int r = 0; r < M; r++)
        memcpy(m->dh + (size_t)m->sel_idx[r] * H, m->dz_in + (size_t)r * H,
               (size_t)H * sizeof(float));
    if (c->copy) copy_backward_rest(m, b, M);
}

// From d(last layer output) in dh to parameter gradients and d(encoder output) in denc.
// split: the input-embedding rows go to m->rows after the encoder's B*Ts rows.
static void decoder_backward(EncDec *m, const EncDecBatch *b, float p, uint64_t dseed,
                             int split) {
    const EncDecConfig *c = &m->cfg;
    const int B = b->B, Tt = b->Tt, Ts = b->Ts, N = B * Tt, S = B * Ts;
    const int E = c->enc.embedding_size, H = c->enc.hidden_size, I = c->dec_intermediate;
    const int NH = c->dec_heads;
    const uint64_t s0 = b->sample_index0, off_h = s0 * (uint64_t)Tt * H;
    const size_t NHs = (size_t)N * H;
    float **P = m->p, **G = m->g;

    nn_zero(m->denc, (size_t)S * H);
    const int lc = c->copy ? c->dec_layers - 1 : -1;  // the layer the copy distribution reads
    for (int l = c->dec_layers - 1; l >= 0; l--) {
        DecActs *la = &m->layers[l];
        float **W = P + lidx(l, 0), **GW = G + lidx(l, 0);
        const float *x = l > 0 ? m->layers[l - 1].out : m->h0;
        // out = LN3(a2 + dropout(fc2(gelu(fc1(a2)))))
        nn_zero(m->dres, NHs);
        nn_layernorm_backward(m->dres, GW[DL_FLN_W], GW[DL_FLN_B], m->dh, la->res3, la->mean3,
                              la->rstd3, W[DL_FLN_W], N, H);
        nn_copy(m->dx, m->dres, NHs);  // dx = d(a2)
        nn_zero(m->dproj, NHs);
        nn_dropout_backward(m->dproj, m->dres, NHs, p, site(dseed, l, SUB_FFN_OUT), off_h);
        nn_zero(m->df1, (size_t)N * I);
        nn_gelu_linear_backward(m->df1, m->dg, GW[DL_FC2_W], GW[DL_FC2_B], m->dproj, la->g, la->f1,
                                W[DL_FC2_W], N, I, H);
        hook_progress(m, b);
        nn_linear_backward(m->dx, GW[DL_FC1_W], GW[DL_FC1_B], m->df1, la->a2, W[DL_FC1_W], N, H, I);
        hook_progress(m, b);
        // a2 = LN2(a1 + dropout(out_proj(cross_attention(cq(a1), ck(enc), cv(enc)))))
        nn_zero(m->dres, NHs);
        nn_layernorm_backward(m->dres, GW[DL_CLN_W], GW[DL_CLN_B], m->dx, la->res2, la->mean2,
                              la->rstd2, W[DL_CLN_W], N, H);
        nn_copy(m->dh, m->dres, NHs);  // dh = d(a1)
        nn_zero(m->dproj, NHs);
        nn_dropout_backward(m->dproj, m->dres, NHs, p, site(dseed, l, SUB_CA_OUT), off_h);
        nn_zero(m->dctx, NHs);
        nn_linear_backward(m->dctx, GW[DL_CO_W], GW[DL_CO_B], m->dproj, la->cctx, W[DL_CO_W], N, H,
                           H);
        if (l == lc) nn_add_forward(m->dctx, m->dctx, m->dcopy_ctx, NHs);  // the gate's input
        nn_zero(m->dq, NHs);
        nn_zero(m->dck, (size_t)S * H);
        nn_zero(m->dcv, (size_t)S * H);
        nn_attention_ex_backward_datt(m->dq, m->dck, m->dcv, m->dctx, l == lc ? m->dcatt : NULL,
                                      la->cq, la->ck, la->cv, la->catt, B, Tt, Ts, H, NH, p,
                                      site(dseed, l, SUB_CA_ATT), s0 * (uint64_t)NH * Tt * Ts,
                                      m->att_scratch);
        hook_progress(m, b);
        nn_linear_backward(m->dh, GW[DL_CQ_W], GW[DL_CQ_B], m->dq, la->a1, W[DL_CQ_W], N, H, H);
        nn_linear_backward(m->denc, GW[DL_CK_W], GW[DL_CK_B], m->dck, m->enc_out, W[DL_CK_W], S, H,
                           H);
        nn_linear_backward(m->denc, GW[DL_CV_W], GW[DL_CV_B], m->dcv, m->enc_out, W[DL_CV_W], S, H,
                           H);
        // a1 = LN1(x + dropout(out_proj(causal_self_attention(q(x), k(x), v(x)))))
        nn_zero(m->dres, NHs);
        nn_layernorm_backward(m->dres, GW[DL_SLN_W], GW[DL_SLN_B], m->dh, la->res1, la->mean1,
                              la->rstd1, W[DL_SLN_W], N, H);
        nn_copy(m->dh, m->dres, NHs);  // dh = d(x)
        nn_zero(m->dproj, NHs);
        nn_dropout_backward(m->dproj, m->dres, NHs, p, site(dseed, l, SUB_SA_OUT), off_h);
        nn_zero(m->dctx, NHs);
        nn_linear_backward(m->dctx, GW[DL_SO_W], GW[DL_SO_B], m->dproj, la->ctx, W[DL_SO_W], N, H,
                           H);
        nn_zero(m->dq, NHs);
        nn_zero(m->dk, NHs);
        nn_zero(m->dv, NHs);
        nn_attention_ex_backward(m->dq, m->dk, m->dv, m->dctx, la->q, la->k, la->v, la->att, B, Tt,
                                 Tt, H, NH, p, site(dseed, l, SUB_SA_ATT),
                                 s0 * (uint64_t)NH * Tt * Tt, m->att_scratch);
        hook_progress(m, b);
        nn_linear_backward(m->dh, GW[DL_SQ_W], GW[DL_SQ_B], m->dq, x, W[DL_SQ_W], N, H, H);
        nn_linear_backward(m->dh, GW[DL_SK_W], GW[DL_SK_B], m->dk, x, W[DL_SK_W], N, H, H);
        nn_linear_backward(m->dh, GW[DL_SV_W], GW[DL_SV_B], m->dv, x, W[DL_SV_W], N, H, H);
        hook_ready(m, b, lidx(l, 0), lidx(l, DL_COUNT - 1));  // this layer's tensors
        hook_progress(m, b);
    }
    // h0 = project_in(dropout(LN(word[dec_in] + pos)))
    nn_zero(m->demb, (size_t)N * E);
    nn_linear_backward(m->demb, G[gidx(DG_PROJ_W)], G[gidx(DG_PROJ_B)], m->dh, m->emb_drop,
                       P[gidx(DG_PROJ_W)], N, E, H);
    nn_zero(m->demb2, (size_t)N * E);
    nn_dropout_backward(m->demb2, m->demb, (size_t)N * E, p, cx_rng_derive(dseed, SITE_EMB),
                        s0 * (uint64_t)Tt * E);
    if (c->copy) nn_add_forward(m->demb2, m->demb2, m->dcopy_x, (size_t)N * E);  // gate input
    nn_zero(m->demb, (size_t)N * E);
    nn_layernorm_backward(m->demb, G[gidx(DG_LN_W)], G[gidx(DG_LN_B)], m->demb2, m->emb,
                          m->emb_mean, m->emb_rstd, P[gidx(DG_LN_W)], N, E);
    if (split)
        memcpy(m->rows + (size_t)S * E, m->demb, (size_t)N * E * sizeof(float));
    else
        nn_embedding_backward(G[AP_WORD], m->demb, m->dec_in, N, E);
    float *gpos = G[gidx(DG_POS)];
    for (int bi = 0; bi < B; bi++)
        for (int t = 0; t < Tt; t++) {
            const float *row = m->demb + ((size_t)bi * Tt + t) * E;
            float *gp = gpos + (size_t)t * E;
            for (int e = 0; e < E; e++) gp[e] += row[e];
        }
    hook_ready(m, b, gidx(0), gidx(DG_COUNT - 1));  // the decoder's embeddings
}

double encdec_step(EncDec *m, const EncDecBatch *b, int train, int backward, uint64_t seed,
                   long *n_tokens) {
    const EncDecConfig *c = &m->cfg;
    const int N = b->B * b->Tt, H = c->enc.hidden_size;
    forward_all(m, b, train, seed);
    const float *hL = m->layers[c->dec_layers - 1].out;
    int M = 0;
    for (int i = 0; i < N; i++) {
        if (m->labels[i] < 0) continue;
        m->sel_idx[M] = i;
        m->sel_tgt[M] = m->labels[i];
        memcpy(m->z_in + (size_t)M * H, hL + (size_t)i * H, (size_t)H * sizeof(float));
        M++;
    }
    *n_tokens = M;
    if (M == 0) return 0.0;
    head_forward(m, M, m->logits);
    double loss = c->copy ? copy_loss(m, b, M)
                          : nn_softmax_xent_smooth_forward(m->logits, m->logits, m->sel_tgt, M,
                                                           c->enc.vocab_size, c->label_smoothing);
    if (backward) {
        const float p = train ? c->dec_dropout : 0.0f;
        const int split = m->split && b->final_micro;
        if (split) {  // the encoder's input rows, then the decoder's (before the first report)
            const size_t S = (size_t)b->B * b->Ts;
            memcpy(m->row_ids, b->src, S * sizeof(int32_t));
            memcpy(m->row_ids + S, m->dec_in, (size_t)N * sizeof(int32_t));
            m->n_rows = (int)S + N;
        }
        head_backward(m, b, M, N);
        hook_ready(m, b, hidx(m, 0), m->n_specs - 1);  // the head (not the tied word embeddings)
        if (split) {  // the word embeddings' input parts go to rows; unused encoder positions
            hook_ready(m, b, AP_WORD, AP_WORD);
            hook_range(m, b, m->enc_pos_unused);
        }
        hook_progress(m, b);
        decoder_backward(m, b, p, cx_rng_derive(seed, DEC_SEED_TAG), split);
        AlbertBatch ab = enc_batch(m, b);
        albert_encode_backward(m->enc, &ab, train, seed, m->denc);
    }
    return loss;
}

void encdec_logits(EncDec *m, const EncDecBatch *b, float *logits) {
    const int N = b->B * b->Tt, H = m->cfg.enc.hidden_size;
    forward_all(m, b, 0, 0);
    memcpy(m->z_in, m->layers[m->cfg.dec_layers - 1].out, (size_t)N * H * sizeof(float));
    head_forward(m, N, logits);
    if (!m->cfg.copy) return;
    const int V = m->cfg.enc.vocab_size;
    for (int i = 0; i < N; i++) m->sel_idx[i] = i;
    copy_rows_prepare(m, b, N);
    for (int i = 0; i < N; i++) {
        const int bi = i / b->Tt;
        copy_log_probs(logits + (size_t)i * V, m->probs + (size_t)i * V, m->gate[i],
                       m->utok + (size_t)bi * b->Ts, m->cw + (size_t)i * b->Ts, m->nu[bi], V);
    }
}

// ---------------------------------------------------------------------------------------
// incremental decoding

struct EncDecGen {
    EncDec *m;
    int max_beam, max_len, Ts, cur;
    BeamWork *work;
    float *arena;
    float *kc[2], *vc[2];  // (L, max_beam, max_len, H) self-attention caches, double-buffered
    float *ck, *cv;        // (L, max_Ts, H) cross-attention keys/values of the current source
    int32_t *smask;        // (max_Ts)
    float *emb, *emb_ln, *z1, *z2, *z3;                            // (K,E)
    float *mean, *rstd;                                            // (K)
    float *x, *q, *k, *v, *ctx, *tmp, *res, *a1, *cq, *cctx, *a2;  // (K,H)
    float *f1, *g;                                                 // (K,I)
    float *att, *scratch;                                          // NH * max(max_len, max_Ts)
    int32_t *utok, *upos, *vslot;  // copy: the source's distinct tokens (max_Ts) (max_Ts) (V)
    int nu;
    float *cw, *pv;  // (max_beam, max_Ts) copy weights; (V) vocabulary softmax
};

static void carve_gen(EncDecGen *g, TensorCarver *cv) {
    const EncDecConfig *c = &g->m->cfg;
    const size_t K = (size_t)g->max_beam, L = (size_t)c->dec_layers, T = (size_t)g->max_len;
    const size_t Ts = (size_t)g->m->max_Ts, E = c->enc.embedding_size, H = c->enc.hidden_size;
    const size_t I = c->dec_intermediate, NH = c->dec_heads, A = NH * (T > Ts ? T : Ts);
    for (int i = 0; i < 2; i++) {
        g->kc[i] = tensor_carve(cv, L * K * T * H);
        g->vc[i] = tensor_carve(cv, L * K * T * H);
    }
    g->ck = tensor_carve(cv, L * Ts * H);
    g->cv = tensor_carve(cv, L * Ts * H);
    g->smask = (int32_t *)tensor_carve(cv, Ts);
    float **kE[] = {&g->emb, &g->emb_ln, &g->z1, &g->z2, &g->z3};
    for (size_t i = 0; i < sizeof kE / sizeof kE[0]; i++) *kE[i] = tensor_carve(cv, K * E);
    g->mean = tensor_carve(cv, K);
    g->rstd = tensor_carve(cv, K);
    float **kH[] = {&g->x,   &g->q,  &g->k,  &g->v,    &g->ctx, &g->tmp,
                    &g->res, &g->a1, &g->cq, &g->cctx, &g->a2};
    for (size_t i = 0; i < sizeof kH / sizeof kH[0]; i++) *kH[i] = tensor_carve(cv, K * H);
    g->f1 = tensor_carve(cv, K * I);
    g->g = tensor_carve(cv, K * I);
    g->att = tensor_carve(cv, A);
    g->scratch = tensor_carve(cv, A);
    if (c->copy) {
        g->utok = (int32_t *)tensor_carve(cv, Ts);
        g->upos = (int32_t *)tensor_carve(cv, Ts);
        g->vslot = (int32_t *)tensor_carve(cv, (size_t)c->enc.vocab_size);
        g->cw = tensor_carve(cv, K * Ts);
        g->pv = tensor_carve(cv, (size_t)c->enc.vocab_size);
    }
}

EncDecGen *encdec_gen_create(EncDec *m, int max_beam, int max_len) {
    CHECK(max_beam >= 1 && max_len >= 1 && max_len <= m->cfg.dec_max_position,
          "decoding state for %d hypotheses of %d tokens (decoder positions %d)", max_beam, max_len,
          m->cfg.dec_max_position);
    EncDecGen *g = cx_calloc(1, sizeof *g);
    g->m = m;
    g->max_beam = max_beam;
    g->max_len = max_len;
    TensorCarver cv = {0};
    carve_gen(g, &cv);
    g->arena = tensor_carver_alloc(&cv);
    carve_gen(g, &cv);
    if (m->cfg.copy)
        for (int v = 0; v < m->cfg.enc.vocab_size; v++) g->vslot[v] = -1;
    g->work = beam_work_create(max_beam, max_len, m->cfg.enc.vocab_size);
    return g;
}

void encdec_gen_free(EncDecGen *g) {
    if (!g) return;
    beam_work_free(g->work);
    free(g->arena);
    free(g);
}

void encdec_gen_start(EncDecGen *g, const int32_t *src, const int32_t *src_mask, int Ts) {
    EncDec *m = g->m;
    const int H = m->cfg.enc.hidden_size;
    CHECK(Ts >= 1 && Ts <= m->max_Ts, "source of %d tokens (at most %d)", Ts, m->max_Ts);
    for (int i = 0; i < Ts; i++) g->smask[i] = src_mask ? src_mask[i] != 0 : src[i] != ED_PAD;
    AlbertBatch ab = {.B = 1, .T = Ts, .input_ids = src, .attention_mask = g->smask};
    const float *enc = albert_encode(m->enc, &ab, 0, 0);
    for (int l = 0; l < m->cfg.dec_layers; l++) {
        float **W = m->p + lidx(l, 0);
        nn_linear_forward(g->ck + (size_t)l * m->max_Ts * H, enc, W[DL_CK_W], W[DL_CK_B], Ts, H, H);
        nn_linear_forward(g->cv + (size_t)l * m->max_Ts * H, enc, W[DL_CV_W], W[DL_CV_B], Ts, H, H);
    }
    g->Ts = Ts;
    g->cur = 0;
    if (m->cfg.copy)
        g->nu = copy_source(g->utok, g->upos, g->vslot, src, g->smask, Ts, m->cfg.enc.vocab_size);
}

void encdec_gen_step(void *ctx, int K, const int32_t *parents, const int32_t *tokens, int t,
                     float *logits) {
    EncDecGen *g = ctx;
    EncDec *m = g->m;
    const EncDecConfig *c = &m->cfg;
    const int E = c->enc.embedding_size, H = c->enc.hidden_size, I = c->dec_intermediate;
    const int NH = c->dec_heads, V = c->enc.vocab_size, T = g->max_len;
    const float eps = c->enc.ln_eps;
    CHECK(K >= 1 && K <= g->max_beam && t >= 0 && t < T && g->Ts > 0,
          "decoding step %d with %d hypotheses (at most %d x %d; source encoded?)", t, K,
          g->max_beam, T);
    float **P = m->p;
    const size_t slot = (size_t)T * H, layer = (size_t)g->max_beam * slot;
    // reorder the self-attention caches: hypothesis k continues old hypothesis parents[k]
    if (t > 0) {
        int same = 1;
        for (int k = 0; k < K; k++) same &= parents[k] == k;
        if (!same) {
            int nxt = 1 - g->cur;
            for (int l = 0; l < c->dec_layers; l++)
                for (int k = 0; k < K; k++) {
                    CHECK(parents[k] >= 0 && parents[k] < g->max_beam, "parent %d", parents[k]);
                    size_t to = l * layer + k * slot, from = l * layer + (size_t)parents[k] * slot;
                    memcpy(g->kc[nxt] + to, g->kc[g->cur] + from, (size_t)t * H * sizeof(float));
                    memcpy(g->vc[nxt] + to, g->vc[g->cur] + from, (size_t)t * H * sizeof(float));
                }
            g->cur = nxt;
        }
    }
    float *kc = g->kc[g->cur], *vc = g->vc[g->cur];
    // embeddings of the K new tokens at position t
    nn_embedding_forward(g->emb, tokens, P[AP_WORD], K, E);
    const float *pos = P[gidx(DG_POS)] + (size_t)t * E;
    for (int k = 0; k < K; k++)
        for (int e = 0; e < E; e++) g->emb[(size_t)k * E + e] += pos[e];
    nn_layernorm_forward(g->emb_ln, g->mean, g->rstd, g->emb, P[gidx(DG_LN_W)], P[gidx(DG_LN_B)], K,
                         E, eps);
    nn_linear_forward(g->x, g->emb_ln, P[gidx(DG_PROJ_W)], P[gidx(DG_PROJ_B)], K, E, H);
    for (int l = 0; l < c->dec_layers; l++) {
        float **W = P + lidx(l, 0);
        nn_linear_forward(g->q, g->x, W[DL_SQ_W], W[DL_SQ_B], K, H, H);
        nn_linear_forward(g->k, g->x, W[DL_SK_W], W[DL_SK_B], K, H, H);
        nn_linear_forward(g->v, g->x, W[DL_SV_W], W[DL_SV_B], K, H, H);
        for (int k = 0; k < K; k++) {
            float *kk = kc + l * layer + k * slot, *vv = vc + l * layer + k * slot;
            memcpy(kk + (size_t)t * H, g->k + (size_t)k * H, (size_t)H * sizeof(float));
            memcpy(vv + (size_t)t * H, g->v + (size_t)k * H, (size_t)H * sizeof(float));
            // the newest position sees every cached one
            nn_attention_ex_forward(g->ctx + (size_t)k * H, g->att, g->q + (size_t)k * H, kk, vv,
                                    NULL, 1, 1, t + 1, H, NH, 0, 0.0f, 0, 0, g->scratch);
        }
        nn_linear_forward(g->tmp, g->ctx, W[DL_SO_W], W[DL_SO_B], K, H, H);
        nn_residual_layernorm_forward(g->res, g->a1, g->mean, g->rstd, g->tmp, g->x,
                                      W[DL_SLN_W], W[DL_SLN_B], K, H, eps);
        nn_linear_forward(g->cq, g->a1, W[DL_CQ_W], W[DL_CQ_B], K, H, H);
        const float *ck = g->ck + (size_t)l * m->max_Ts * H,
                    *cv = g->cv + (size_t)l * m->max_Ts * H;
        for (int k = 0; k < K; k++) {
            nn_attention_ex_forward(g->cctx + (size_t)k * H, g->att, g->cq + (size_t)k * H, ck, cv,
                                    g->smask, 1, 1, g->Ts, H, NH, 0, 0.0f, 0, 0, g->scratch);
            if (c->copy && l == c->dec_layers - 1)  // att: (NH, 1, Ts)
                copy_weights(g->cw + (size_t)k * m->max_Ts, g->nu, g->att, (size_t)g->Ts, NH,
                             g->upos, g->Ts);
        }
        nn_linear_forward(g->tmp, g->cctx, W[DL_CO_W], W[DL_CO_B], K, H, H);
        nn_residual_layernorm_forward(g->res, g->a2, g->mean, g->rstd, g->tmp, g->a1,
                                      W[DL_CLN_W], W[DL_CLN_B], K, H, eps);
        nn_linear_gelu_forward(g->f1, g->g, g->a2, W[DL_FC1_W], W[DL_FC1_B], K, H, I);
        nn_linear_forward(g->tmp, g->g, W[DL_FC2_W], W[DL_FC2_B], K, I, H);
        nn_residual_layernorm_forward(g->res, g->x, g->mean, g->rstd, g->tmp, g->a2,
                                      W[DL_FLN_W], W[DL_FLN_B], K, H, eps);
    }
    nn_linear_gelu_forward(g->z1, g->z2, g->x, P[hidx(m, DH_DENSE_W)], P[hidx(m, DH_DENSE_B)], K,
                           H, E);
    nn_layernorm_forward(g->z3, g->mean, g->rstd, g->z2, P[hidx(m, DH_LN_W)], P[hidx(m, DH_LN_B)],
                         K, E, eps);
    nn_linear_forward(logits, g->z3, P[AP_WORD], P[hidx(m, DH_BIAS)], K, E, V);
    if (!c->copy) return;
    for (int k = 0; k < K; k++) {  // g->x, g->cctx: the last layer's output and context
        const float gate = copy_gate(P[hidx(m, DH_GATE_W)], P[hidx(m, DH_GATE_B)][0],
                                     g->x + (size_t)k * H, g->cctx + (size_t)k * H,
                                     g->emb_ln + (size_t)k * E, H, E);
        copy_log_probs(logits + (size_t)k * V, g->pv, gate, g->utok,
                       g->cw + (size_t)k * m->max_Ts, g->nu, V);
    }
}

// Greedy search when c->beam_size == 1, beam search otherwise; -1 with err when nothing
// can be completed.
static int search(BeamWork *w, const BeamConfig *c, BeamStepFn step, void *ctx, int32_t *out,
                  int *out_len, double *score, char *err) {
    int rc = c->beam_size == 1 ? beam_greedy(w, c, step, ctx, out, out_len, score)
                               : beam_search(w, c, step, ctx, out, out_len, score);
    if (rc != 0) return cx_err(err, "decoding: every continuation is forbidden");
    return 0;
}

// Checks c and the source against g and encodes the source; -1 with err.
static int gen_begin(EncDecGen *g, const BeamConfig *c, const int32_t *src, const int32_t *src_mask,
                     int Ts, char *err) {
    if (beam_config_check(c, g->work, err) != 0) return -1;
    if (Ts < 1 || Ts > g->m->max_Ts)
        return cx_err(err, "source of %d tokens (the model takes 1 to %d)", Ts, g->m->max_Ts);
    encdec_gen_start(g, src, src_mask, Ts);
    return 0;
}

int encdec_generate(EncDecGen *g, const BeamConfig *c, const int32_t *src, const int32_t *src_mask,
                    int Ts, int32_t *out, int *out_len, double *score, char *err) {
    *out_len = 0;
    if (gen_begin(g, c, src, src_mask, Ts, err) != 0) return -1;
    return search(g->work, c, encdec_gen_step, g, out, out_len, score, err);
}

int encdec_sample(EncDecGen *g, const BeamConfig *c, const BeamSampling *sp, const int32_t *src,
                  const int32_t *src_mask, int Ts, int32_t *out, int *lens, double *scores,
                  char *err) {
    if (beam_sampling_check(sp, g->work, err) != 0) return -1;
    if (gen_begin(g, c, src, src_mask, Ts, err) != 0) return -1;
    return beam_sample(g->work, c, sp, encdec_gen_step, g, out, lens, scores);
}

// ---------------------------------------------------------------------------------------
// ensembles

struct EncDecEnsemble {
    EncDecGen **gens;
    int n, max_beam, V;
    BeamWork *work;
    float *lg;  // (n, max_beam, V) each model's step logits
};

EncDecEnsemble *encdec_ensemble_create(EncDecGen *const *gens, int n, int max_beam, int max_len) {
    CHECK(n >= 1 && n <= 64 && max_beam >= 1 && max_len >= 1,
          "ensemble of %d models (1 to 64), %d x %d", n, max_beam, max_len);
    const int V = gens[0]->m->cfg.enc.vocab_size;
    for (int i = 0; i < n; i++)
        CHECK(gens[i]->m->cfg.enc.vocab_size == V && gens[i]->max_beam >= max_beam &&
                  gens[i]->max_len >= max_len,
              "ensemble member %d: vocabulary %d (first %d), %d x %d hypotheses", i,
              gens[i]->m->cfg.enc.vocab_size, V, gens[i]->max_beam, gens[i]->max_len);
    EncDecEnsemble *e = cx_calloc(1, sizeof *e);
    e->gens = cx_calloc((size_t)n, sizeof *e->gens);
    memcpy(e->gens, gens, (size_t)n * sizeof *gens);
    e->n = n;
    e->max_beam = max_beam;
    e->V = V;
    e->work = beam_work_create(max_beam, max_len, V);
    e->lg = cx_calloc((size_t)n * max_beam * V, sizeof(float));
    return e;
}

void encdec_ensemble_free(EncDecEnsemble *e) {
    if (!e) return;
    beam_work_free(e->work);
    free(e->lg);
    free(e->gens);
    free(e);
}

void encdec_ensemble_step(void *ctx, int K, const int32_t *parents, const int32_t *tokens, int t,
                          float *logits) {
    EncDecEnsemble *e = ctx;
    const int V = e->V, n = e->n;
    CHECK(K >= 1 && K <= e->max_beam, "ensemble step with %d hypotheses (at most %d)", K,
          e->max_beam);
    const size_t KV = (size_t)K * V;
    for (int i = 0; i < n; i++) encdec_gen_step(e->gens[i], K, parents, tokens, t, e->lg + i * KV);
    if (n == 1) {
        memcpy(logits, e->lg, KV * sizeof(float));
        return;
    }
    const double log_n = log((double)n);
    double lse[64];
    for (int k = 0; k < K; k++) {
        // log P_i = lg_i - lse_i; log P = log sum_i exp(log P_i) - log n, stably per token
        for (int i = 0; i < n; i++) {
            const float *row = e->lg + i * KV + (size_t)k * V;
            double mx = -INFINITY, s = 0.0;
            for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
            lse[i] = mx + log(s);
        }
        float *out = logits + (size_t)k * V;
        for (int v = 0; v < V; v++) {
            double mx = -INFINITY, s = 0.0;
            for (int i = 0; i < n; i++) {
                const double a = e->lg[i * KV + (size_t)k * V + v] - lse[i];
                mx = a > mx ? a : mx;
            }
            if (mx == -INFINITY) {
                out[v] = -INFINITY;
                continue;
            }
            for (int i = 0; i < n; i++) s += exp(e->lg[i * KV + (size_t)k * V + v] - lse[i] - mx);
            out[v] = (float)(mx + log(s) - log_n);
        }
    }
}

// Checks c and the sources against e and encodes them; -1 with err.
static int ensemble_begin(EncDecEnsemble *e, const BeamConfig *c, const int32_t *const *srcs,
                          const int *Ts, char *err) {
    if (beam_config_check(c, e->work, err) != 0) return -1;
    for (int i = 0; i < e->n; i++) {
        if (Ts[i] < 1 || Ts[i] > e->gens[i]->m->max_Ts)
            return cx_err(err, "source of %d tokens for model %d (it takes 1 to %d)", Ts[i], i + 1,
                          e->gens[i]->m->max_Ts);
        encdec_gen_start(e->gens[i], srcs[i], NULL, Ts[i]);
    }
    return 0;
}

int encdec_ensemble_generate(EncDecEnsemble *e, const BeamConfig *c, const int32_t *const *srcs,
                             const int *Ts, int32_t *out, int *out_len, double *score, char *err) {
    *out_len = 0;
    if (ensemble_begin(e, c, srcs, Ts, err) != 0) return -1;
    return search(e->work, c, encdec_ensemble_step, e, out, out_len, score, err);
}

int encdec_ensemble_sample(EncDecEnsemble *e, const BeamConfig *c, const BeamSampling *sp,
                           const int32_t *const *srcs, const int *Ts, int32_t *out, int *lens,
                           double *scores, char *err) {
    if (beam_sampling_check(sp, e->work, err) != 0) return -1;
    if (ensemble_begin(e, c, srcs, Ts, err) != 0) return -1;
    return beam_sample(e->work, c, sp, encdec_ensemble_step, e, out, lens, scores);
}

// ---------------------------------------------------------------------------------------
// training task

static double encdec_micro_step(void *ctx, uint64_t s0, int B, int backward, int final,
                                long *n_tokens, double *aux_sum) {
    EncDecTask *et = ctx;
    for (int b = 0; b < B; b++) {
        size_t row = (size_t)((s0 + (uint64_t)b) % et->n_pairs);
        memcpy(et->bsrc + (size_t)b * et->Ts, et->src + row * et->Ts,
               (size_t)et->Ts * sizeof(int32_t));
        memcpy(et->btgt + (size_t)b * et->Tt, et->tgt + row * et->Tt,
               (size_t)et->Tt * sizeof(int32_t));
    }
    EncDecBatch batch = {
        .B = B, .Ts = et->Ts, .Tt = et->Tt, .src = et->bsrc, .tgt = et->btgt, .sample_index0 = s0,
        .final_micro = final};
    if (aux_sum) *aux_sum = 0.0;
    return encdec_step(et->model, &batch, backward, backward, et->dropout_seed, n_tokens);
}

void encdec_task_init(EncDecTask *et, TrainTask *task, EncDec *model, const int32_t *src,
                      const int32_t *tgt, size_t n_pairs, int Ts, int Tt, int micro_batch,
                      uint64_t dropout_seed) {
    CHECK(n_pairs >= 1 && micro_batch >= 1 && micro_batch <= model->max_B && Ts >= 1 &&
              Ts <= model->max_Ts && Tt >= 1 && Tt <= model->max_Tt,
          "task of %zu pairs, micro-batch %d x (%d, %d) does not fit the model", n_pairs,
          micro_batch, Ts, Tt);
    memset(et, 0, sizeof *et);
    et->model = model;
    et->src = src;
    et->tgt = tgt;
    et->n_pairs = n_pairs;
    et->Ts = Ts;
    et->Tt = Tt;
    et->B = micro_batch;
    et->dropout_seed = dropout_seed;
    et->bsrc = cx_calloc((size_t)micro_batch * Ts, sizeof(int32_t));
    et->btgt = cx_calloc((size_t)micro_batch * Tt, sizeof(int32_t));
    memset(task, 0, sizeof *task);
    task->ctx = et;
    task->params = model->params;
    task->grads = model->grads;
    task->n_params = model->n_params;
    task->specs = model->specs;
    task->n_specs = model->n_specs;
    task->micro_batch = micro_batch;
    task->micro_step = encdec_micro_step;
}

void encdec_task_free(EncDecTask *et) {
    free(et->bsrc);
    free(et->btgt);
    et->bsrc = et->btgt = NULL;
}
