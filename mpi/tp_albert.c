// tp_albert.c: the tensor-parallel ALBERT encoder (see tp_albert.h). Each step mirrors
// models/albert.c's encoder_forward / encoder_backward op for op.
#include "mpi/tp_albert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/nn.h"
#include "io/store/ckpt.h"
#include "models/rng.h"
#include "mpi/dp.h"

// Per-application activations of the shared layer, local parts.
typedef struct {
    float *q, *k, *v;        // (N,H)
    float *att;              // local tiles (sequence, head), T x T each
    float *ctx, *res1, *a;   // (N,H)
    float *mean1, *rstd1;    // (N)
    float *f1, *g;           // (N,I)
    float *res2, *out;       // (N,H)
    float *mean2, *rstd2;    // (N)
} TpLayerActs;

struct TpAlbert {
    AlbertConfig cfg;
    TpGrid *g;
    int max_B, max_T, D;       // D: head_dim
    int cb;                    // the feature block: a whole number of heads
    int wrb;                   // the weights' row block (rows over the grid's columns)
    int eb;                    // the embedding's column block: E / P (rounded up)
    int colb[AP_COUNT];        // each tensor's column (feature) block: cb, or eb over E
    int rowb[AP_COUNT];        // a dealt tensor's row block
    int mlm;                   // with the MLM head (tp_albert_create_mlm)
    int n_specs;               // AP_N_ENCODER or AP_N_MLM
    size_t n_full;             // the whole model's arena (albert's layout)
    int vb, vl;                // the vocabulary's column block in the logits, its local count
    // MLM head (local parts; rows: B sequences x Kmax selected positions each)
    float *z_in, *z1, *z2, *z3, *zmean, *zrstd, *logits, *dz_in, *dz1, *dz2, *dz3, *dout;
    int32_t *sel_tgt, *sel_pos;
    float *rowmax;             // (rows) the logits' row maxima
    double *rowstat;           // (rows, 2) sum of exp, the target's logit
    TensorSpec gspec[AP_COUNT];  // global table (albert_spec_table)
    TensorSpec spec[AP_COUNT];   // local table
    int hold[AP_COUNT];
    size_t n_local;
    float *params, *grads;
    float *p[AP_COUNT], *gr[AP_COUNT];
    TpMat W[AP_COUNT], dW[AP_COUNT];  // TP_DEALT tensors' views (params, grads)
    // activations (local parts), sized for max_B x max_T
    float *act_arena;
    size_t nl_max;             // local rows
    int hl, il, el;            // local feature counts for H, I, E
    float *emb, *emb_ln, *emb_mean, *emb_rstd, *emb_drop, *h0;
    TpLayerActs *layers;
    float *dh, *dx, *dres, *dctx, *dproj, *dq, *dk, *dv, *dg, *df1, *demb, *demb2;
    float *tq, *tk, *tv, *tc, *tdq, *tdk, *tdv, *tdc, *att_scratch;  // one tile each
    float *rows;               // (max_B*max_T, el): word-table rows of the batch's tokens
    TpMat out_view;
    // backward hooks (tp_albert_set_backward_hooks) and the order they report in
    void (*ready)(void *ctx, size_t offset, size_t count);
    void (*progress)(void *ctx);
    void *hook_ctx;
    GradRange order[AP_COUNT];
    GradSplit split;
};

// When a tensor's local gradient is final in the backward of a final micro-batch: 0 the
// MLM head's dense layer, 1 the shared layer's matrices (after the last layer), 2 the
// embedding projection, 3 the word table (after the lookup's rows), 4 the vectors and
// replicated tables (after tp_albert_reduce_grads, once the backward is over).
static int final_rank(const TpAlbert *m, int i) {
    if (m->hold[i] != TP_DEALT) return 4;
    switch (i) {
    case AP_PRED_DENSE_W: return 0;
    case AP_MAP_W: return 2;
    case AP_WORD: return 3;
    default: return 1;
    }
}

// The split layout: each non-empty tensor's range (up to the next tensor's start, the first
// from 0, so the ranges cover the arena exactly once) in final_rank order.
static void make_split(TpAlbert *m) {
    size_t first = m->n_local;
    for (int i = 0; i < m->n_specs; i++)
        if (m->spec[i].n > 0 && m->spec[i].offset < first) first = m->spec[i].offset;
    int n = 0;
    for (int r = 0; r <= 4; r++)
        for (int i = 0; i < m->n_specs; i++) {
            if (final_rank(m, i) != r || m->spec[i].n == 0) continue;
            size_t lo = m->spec[i].offset == first ? 0 : m->spec[i].offset, hi = m->n_local;
            for (int j = 0; j < m->n_specs; j++)
                if (m->spec[j].n > 0 && m->spec[j].offset > m->spec[i].offset && m->spec[j].offset < hi)
                    hi = m->spec[j].offset;
            m->order[n++] = (GradRange){lo, hi};
        }
    m->split = (GradSplit){.order = m->order, .n_order = n};
}

// Backward hooks of a final micro-batch: tensor i's local gradient is final (dealt tensors;
// the others are completed after the backward, by tp_albert_reduce_grads).
static void hook_ready(const TpAlbert *m, const AlbertBatch *b, int i) {
    if (m->ready && b->final_micro && m->hold[i] == TP_DEALT)
        m->ready(m->hook_ctx, m->spec[i].offset, m->spec[i].n);
}

static void hook_progress(const TpAlbert *m, const AlbertBatch *b) {
    if (m->progress && b->final_micro) m->progress(m->hook_ctx);
}

void tp_albert_set_backward_hooks(TpAlbert *m, void (*ready)(void *ctx, size_t offset, size_t count),
                                  void (*progress)(void *ctx), void *ctx) {
    m->ready = ready;
    m->progress = progress;
    m->hook_ctx = ctx;
}

const GradSplit *tp_albert_split(const TpAlbert *m) { return &m->split; }

static int ceil_div(int a, int b) { return (a + b - 1) / b; }


int tp_albert_check(const AlbertConfig *cfg, const TpGrid *g, char *err) {
    if (g->P > cfg->num_heads)
        return cx_err(err, "tp.rows (%d) exceeds model.num_heads (%d): a grid row would hold no head",
                      g->P, cfg->num_heads);
    return 0;
}

static void carve(TpAlbert *m, TensorCarver *cv) {
    const AlbertConfig *c = &m->cfg;
    size_t N = m->nl_max, Hn = N * m->hl, In = N * m->il, En = N * m->el;
    size_t tiles = (size_t)ceil_div(m->max_B, m->g->Q) * (size_t)(m->hl / m->D);
    size_t TT = (size_t)m->max_T * m->max_T, TD = (size_t)m->max_T * m->D;
    tensor_carve_each(cv, En, &m->emb, &m->emb_ln, &m->emb_drop, &m->demb, &m->demb2, NULL);
    tensor_carve_each(cv, N, &m->emb_mean, &m->emb_rstd, NULL);
    m->h0 = tensor_carve(cv, Hn);
    for (int l = 0; l < c->num_layers; l++) {
        TpLayerActs *la = &m->layers[l];
        tensor_carve_each(cv, Hn, &la->q, &la->k, &la->v, &la->ctx, &la->res1, &la->a, &la->res2,
                          &la->out, NULL);
        la->att = tensor_carve(cv, tiles * TT);
        tensor_carve_each(cv, In, &la->f1, &la->g, NULL);
        tensor_carve_each(cv, N, &la->mean1, &la->rstd1, &la->mean2, &la->rstd2, NULL);
    }
    tensor_carve_each(cv, Hn, &m->dh, &m->dx, &m->dres, &m->dctx, &m->dproj, &m->dq, &m->dk, &m->dv,
                      NULL);
    tensor_carve_each(cv, In, &m->dg, &m->df1, NULL);
    tensor_carve_each(cv, TD, &m->tq, &m->tk, &m->tv, &m->tc, &m->tdq, &m->tdk, &m->tdv, &m->tdc, NULL);
    m->att_scratch = tensor_carve(cv, TT);
    m->rows = tensor_carve(cv, (size_t)m->max_B * m->max_T * m->el);
    if (m->mlm) {
        tensor_carve_each(cv, Hn, &m->z_in, &m->dz_in, &m->dout, NULL);
        tensor_carve_each(cv, En, &m->z1, &m->z2, &m->z3, &m->dz1, &m->dz2, &m->dz3, NULL);
        tensor_carve_each(cv, N, &m->zmean, &m->zrstd, NULL);
        m->logits = tensor_carve(cv, N * (size_t)m->vl);
        m->sel_tgt = (int32_t *)tensor_carve(cv, N);
        m->sel_pos = (int32_t *)tensor_carve(cv, N);
        m->rowmax = tensor_carve(cv, N);
        m->rowstat = (double *)tensor_carve(cv, 4 * N);  // 2N doubles
    }
}

static TpAlbert *create(const AlbertConfig *cfg, TpGrid *g, int max_B, int max_T, int block_heads, int mlm) {
    char err[CX_ERRLEN];
    CHECK(albert_config_check(cfg, err) == 0, "%s", err);
    CHECK(tp_albert_check(cfg, g, err) == 0, "%s", err);
    CHECK(max_B >= 1 && max_T >= 2 && max_T <= cfg->max_position, "micro-batch %d x %d", max_B, max_T);
    TpAlbert *m = cx_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->g = g;
    m->max_B = max_B;
    m->max_T = max_T;
    m->mlm = mlm;
    CHECK(!mlm || !cfg->sop, "the tensor-parallel ALBERT has no sentence-order head (model.sop = 0)");
    m->D = cfg->hidden_size / cfg->num_heads;
    if (block_heads <= 0) block_heads = cfg->num_heads % g->P == 0 ? cfg->num_heads / g->P : 1;
    CHECK(block_heads <= cfg->num_heads, "tp_albert_create: blocks of %d heads, the model has %d", block_heads,
          cfg->num_heads);
    m->cb = m->D * block_heads;
    // a weight's rows (its outputs) are dealt over the grid's Q columns: in blocks of cb / Q
    // so that each grid column holds an equal share even when one block of cb would be
    // the whole matrix
    m->wrb = m->cb % g->Q == 0 ? m->cb / g->Q : m->cb;
    m->n_full = albert_spec_table(cfg, !mlm, m->gspec, &m->n_specs);
    const int D = m->cb, H = cfg->hidden_size, I = cfg->intermediate_size, E = cfg->embedding_size;
    // the embedding dimension is small (128 where H is 4096): dealt in E / P columns so that
    // every grid row holds a share of the word table
    m->eb = ceil_div(E, g->P);
    // the logits' vocabulary columns: one contiguous share per grid row
    m->vb = ceil_div(cfg->vocab_size, g->P);
    m->vl = tp_numroc(cfg->vocab_size, m->vb, g->myrow, g->P);
    // how each tensor is held, and its local shape
    for (int i = 0; i < m->n_specs; i++) {
        const TensorSpec *gs = &m->gspec[i];
        TensorSpec *s = &m->spec[i];
        *s = *gs;
        int dealt = i == AP_WORD || i == AP_MAP_W || i == AP_Q_W || i == AP_K_W || i == AP_V_W ||
                    i == AP_O_W || i == AP_FFN_W || i == AP_FFNO_W || i == AP_PRED_DENSE_W;
        int whole = i == AP_POS || i == AP_TYPE;
        m->hold[i] = dealt ? TP_DEALT : whole ? TP_WHOLE : TP_ROWVEC;
        m->colb[i] = i == AP_WORD || i == AP_MAP_W || i == AP_EMB_LN_W || i == AP_EMB_LN_B ||
                             i == AP_PRED_DENSE_B || i == AP_PRED_LN_W || i == AP_PRED_LN_B ? m->eb
                     : i == AP_PRED_BIAS ? m->vb : D;
        m->rowb[i] = i == AP_PRED_DENSE_W ? ceil_div(E, g->Q) : m->wrb;
        if (dealt) {
            s->shape[0] = tp_numroc((int)gs->shape[0], m->rowb[i], g->mycol, g->Q);
            s->shape[1] = tp_numroc((int)gs->shape[1], m->colb[i], g->myrow, g->P);
        } else if (!whole) {
            s->shape[0] = tp_numroc((int)gs->shape[0], m->colb[i], g->myrow, g->P);
        }
        s->n = (size_t)s->shape[0] * (gs->ndim == 2 ? (size_t)s->shape[1] : 1);
    }
    m->n_local = tensor_layout(m->spec, m->n_specs, 0);
    m->params = cx_calloc(m->n_local + 1, sizeof(float));
    m->grads = cx_calloc(m->n_local + 1, sizeof(float));
    tensor_views(m->spec, m->n_specs, m->params, m->p);
    tensor_views(m->spec, m->n_specs, m->grads, m->gr);
    for (int i = 0; i < m->n_specs; i++)
        if (m->hold[i] == TP_DEALT) {
            int r = (int)m->gspec[i].shape[0], c = (int)m->gspec[i].shape[1];
            tp_mat_init(&m->W[i], g, r, c, m->rowb[i], m->colb[i], m->p[i]);
            tp_mat_init(&m->dW[i], g, r, c, m->rowb[i], m->colb[i], m->gr[i]);
        }
    m->nl_max = (size_t)ceil_div(max_B, g->Q) * max_T;
    m->hl = tp_numroc(H, D, g->myrow, g->P);
    m->il = tp_numroc(I, D, g->myrow, g->P);
    m->el = tp_numroc(E, m->eb, g->myrow, g->P);
    m->layers = cx_calloc((size_t)cfg->num_layers, sizeof(TpLayerActs));
    TensorCarver cv = {0};
    carve(m, &cv);
    m->act_arena = tensor_carver_alloc(&cv);
    carve(m, &cv);
    tp_grid_reserve(g, (int)m->nl_max);
    make_split(m);
    return m;
}

TpAlbert *tp_albert_create(const AlbertConfig *cfg, TpGrid *g, int max_B, int max_T, int block_heads) {
    return create(cfg, g, max_B, max_T, block_heads, 0);
}

TpAlbert *tp_albert_create_mlm(const AlbertConfig *cfg, TpGrid *g, int max_B, int max_T, int block_heads) {
    return create(cfg, g, max_B, max_T, block_heads, 1);
}

int tp_albert_n_specs(const TpAlbert *m) { return m->n_specs; }

void tp_albert_free(TpAlbert *m) {
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->act_arena);
    free(m->layers);
    free(m);
}

size_t tp_albert_n_local(const TpAlbert *m) { return m->n_local; }
float *tp_albert_params(TpAlbert *m) { return m->params; }
float *tp_albert_grads(TpAlbert *m) { return m->grads; }
const TensorSpec *tp_albert_local_specs(const TpAlbert *m) { return m->spec; }
int tp_albert_holding(const TpAlbert *m, int tensor) { return m->hold[tensor]; }
int tp_albert_block(const TpAlbert *m) { return m->cb; }

// A (1, n) tensor with feature blocks D: the layout of a TP_ROWVEC vector.
static TpMat vec_like(const TpAlbert *m, int tensor) {
    TpMat v;
    tp_mat_init(&v, m->g, 1, (int)m->gspec[tensor].shape[0], 1, m->colb[tensor], NULL);
    return v;
}

size_t tp_albert_n_full(const TpAlbert *m) { return m->n_full; }
const TensorSpec *tp_albert_full_specs(const TpAlbert *m) { return m->gspec; }

static int is_root(const TpAlbert *m) { return m->g->myrow == 0 && m->g->mycol == 0; }

void tp_albert_load(TpAlbert *m, const float *full) { tp_albert_deal(m, full, m->params); }

void tp_albert_deal(const TpAlbert *m, const float *full, float *local) {
    for (int i = 0; i < m->n_specs; i++) {
        const float *src = is_root(m) ? full + m->gspec[i].offset : NULL;
        float *dst = local + m->spec[i].offset;
        if (m->hold[i] == TP_DEALT) {
            TpMat A = m->W[i];
            A.a = dst;
            tp_scatter(&A, m->g, src, 0);
        } else if (m->hold[i] == TP_ROWVEC) {
            TpMat v = vec_like(m, i);
            tp_vec_scatter(dst, &v, m->g, src, 0);
        } else {
            if (is_root(m)) memcpy(dst, src, m->gspec[i].n * sizeof(float));
            MPI_CHECK(m->g->comm, MPI_Bcast(dst, (int)m->gspec[i].n, MPI_FLOAT, 0, m->g->comm));
        }
    }
}

void tp_albert_collect(const TpAlbert *m, const float *src, float *full) {
    for (int i = 0; i < m->n_specs; i++) {
        float *dst = is_root(m) ? full + m->gspec[i].offset : NULL;
        const float *loc = src + m->spec[i].offset;
        if (m->hold[i] == TP_DEALT) {
            TpMat A = m->W[i];
            A.a = (float *)loc;
            tp_gather(&A, m->g, dst, 0);
        } else if (m->hold[i] == TP_ROWVEC) {
            TpMat v = vec_like(m, i);
            tp_vec_gather(loc, &v, m->g, dst, 0);
        } else if (dst) {
            memcpy(dst, loc, m->gspec[i].n * sizeof(float));
        }
    }
}

int tp_albert_reduce_grads(TpAlbert *m, char *err) {
    for (int i = 0; i < m->n_specs; i++) {
        float *gi = m->grads + m->spec[i].offset;
        if (m->hold[i] == TP_ROWVEC) {
            if (tp_sum_grid_row(m->g, gi, m->spec[i].n, err) != 0) return -1;
        } else if (m->hold[i] == TP_WHOLE && m->g->P * m->g->Q > 1) {
            int rc = MPI_Allreduce(MPI_IN_PLACE, gi, (int)m->spec[i].n, MPI_FLOAT, MPI_SUM, m->g->comm);
            if (rc != MPI_SUCCESS) return cx_err(err, "sum of %s over the tensor-parallel grid failed", m->spec[i].name);
        }
    }
    return 0;
}

// ---- checkpoints: the whole model's layout, written and read by the grid's rank 0 ----

// A view of tr with whole-model arenas (rank 0's), for io/store/ckpt.h.
static Trainer whole_view(const TpAlbert *m, const Trainer *tr, float *params, float *mom1, float *mom2) {
    Trainer w = *tr;
    w.task.params = params;
    w.task.grads = NULL;
    w.task.specs = m->gspec;
    w.task.n_specs = m->n_specs;
    w.task.n_params = m->n_full;
    w.optim.m = mom1;
    w.optim.v = mom2;
    w.optim.specs = m->gspec;
    w.optim.n_specs = m->n_specs;
    w.optim.n = m->n_full;
    return w;
}

void tp_albert_collect_state(const TpAlbert *m, const Trainer *tr, float *full[3]) {
    const float *local[3] = {tr->task.params, tr->optim.m, tr->optim.v};
    for (int k = 0; k < 3; k++) {
        full[k] = is_root(m) ? cx_calloc(m->n_full, sizeof(float)) : NULL;
        tp_albert_collect(m, local[k], full[k]);
    }
}

int tp_albert_save_trainer(const TpAlbert *m, const Trainer *tr, const char *run_dir, const char *writer,
                           const char *config_text, long seed, char *err) {
    float *full[3];
    tp_albert_collect_state(m, tr, full);
    int rc = 0;
    if (is_root(m)) {
        Trainer w = whole_view(m, tr, full[0], full[1], full[2]);
        int n_alias;
        const TensorAlias *al = albert_aliases(&n_alias);
        rc = ckpt_save_trainer(run_dir, "albert", writer, config_text, &w, al, n_alias, seed, NULL, err);
    }
    for (int k = 0; k < 3; k++) free(full[k]);
    return tp_grid_agree(m->g, rc, err);
}

int tp_albert_load_trainer(TpAlbert *m, Trainer *tr, const char *path, char *err) {
    float *full[3] = {NULL, NULL, NULL};
    int64_t state[2] = {0, 0};  // optimizer step, data cursor
    int rc = 0;
    if (is_root(m)) {
        Ckpt *ck = NULL;
        for (int k = 0; k < 3; k++) full[k] = cx_calloc(m->n_full, sizeof(float));
        Trainer w = whole_view(m, tr, full[0], full[1], full[2]);
        rc = ckpt_open(&ck, path, err);
        if (rc == 0) rc = ckpt_load_trainer(ck, "albert", &w, err);
        if (ck) ckpt_close(ck);
        state[0] = w.optim.step;
        state[1] = (int64_t)w.samples_seen;
    }
    rc = tp_grid_agree(m->g, rc, err);
    if (rc == 0) {
        float *local[3] = {tr->task.params, tr->optim.m, tr->optim.v};
        for (int k = 0; k < 3; k++) tp_albert_deal(m, full[k], local[k]);
        MPI_CHECK(m->g->comm, MPI_Bcast(state, 2, MPI_INT64_T, 0, m->g->comm));
        tr->optim.step = state[0];
        tr->samples_seen = (uint64_t)state[1];
    }
    for (int k = 0; k < 3; k++) free(full[k]);
    return rc;
}

void tp_albert_reduce_norms(void *ctx, double *sq, int n_specs, int k) {
    TpAlbert *m = ctx;
    CHECK(n_specs == m->n_specs, "tp_albert_reduce_norms: %d tensors, the model has %d", n_specs, m->n_specs);
    // a grid row's ranks hold the same vectors (counted on grid column 0), every rank the
    // same whole tensors (counted on the grid's rank 0)
    for (int i = 0; i < n_specs; i++)
        if ((m->hold[i] == TP_ROWVEC && m->g->mycol != 0) || (m->hold[i] == TP_WHOLE && !is_root(m)))
            for (int j = 0; j < k; j++) sq[i * k + j] = 0.0;
    if (m->g->P * m->g->Q > 1)
        MPI_CHECK(m->g->comm, MPI_Allreduce(MPI_IN_PLACE, sq, n_specs * k, MPI_DOUBLE, MPI_SUM, m->g->comm));
}

// ---- layouts of a batch's activations ----

static void act(const TpAlbert *m, TpMat *A, int B, int T, int cols, int blk, float *a) {
    tp_mat_init(A, m->g, B * T, cols, T, blk, a);
}

void tp_albert_out_layout(const TpAlbert *m, int B, int T, TpMat *out, float *a) {
    act(m, out, B, T, m->cfg.hidden_size, m->cb, a);
}

// Dropout of a dealt activation with albert's counters: element (row, col) of the
// micro-batch's (B*T, C) tensor draws (seed, base + row * C + col). Runs on each local
// row's contiguous column blocks. backward: out += dropout'(inp).
static void dropout(const TpAlbert *m, const TpMat *A, float *out, const float *inp, float p,
                    uint64_t seed, uint64_t base, int backward) {
    const int C = A->cols, D = A->cb;
    for (int i = 0; i < A->lrows; i++) {
        uint64_t row = base + (uint64_t)tp_row_global(A, m->g, i) * (uint64_t)C;
        for (int j0 = 0; j0 < A->lcols; j0 += D) {
            int len = A->lcols - j0 < D ? A->lcols - j0 : D;
            size_t o = (size_t)i * A->lcols + j0;
            uint64_t ctr = row + (uint64_t)tp_col_global(A, m->g, j0);
            if (backward) nn_dropout_backward(out + o, inp + o, (size_t)len, p, seed, ctr);
            else nn_dropout_forward(out + o, inp + o, (size_t)len, p, seed, ctr);
        }
    }
}

// Copies tile (local sequence s, local head h) of a (N,H) local part to/from a (T,D) buffer.
static void tile_copy(const TpAlbert *m, float *loc, float *tile, int s, int h, int T, int to_tile) {
    const int D = m->D, hl = m->hl;
    for (int t = 0; t < T; t++) {
        float *row = loc + ((size_t)s * T + t) * hl + (size_t)h * D;
        if (to_tile) memcpy(tile + (size_t)t * D, row, (size_t)D * sizeof(float));
        else memcpy(row, tile + (size_t)t * D, (size_t)D * sizeof(float));
    }
}

// The word table is dealt like any weight: its rows over the grid's columns, its columns
// (the embedding's) over the grid's rows. forward: m->rows (every token of the batch, the
// rank's embedding columns) receives the tokens' table rows: each rank of a grid row
// copies the rows it holds, zeros elsewhere, summed over the grid row. backward: the
// rank's tokens' gradient rows (m->demb) go to their places in m->rows, summed over the
// grid row, and each rank adds the rows of the ids it holds into its part of the table,
// in token order (as nn_embedding_backward).
static void word_rows(TpAlbert *m, const AlbertBatch *b, int backward) {
    const TpGrid *g = m->g;
    const TpMat *W = &m->W[AP_WORD];
    const int N = b->B * b->T, el = m->el, wrb = W->rb;
    memset(m->rows, 0, (size_t)N * el * sizeof(float));
    if (backward) {
        TpMat xe;
        act(m, &xe, b->B, b->T, m->cfg.embedding_size, m->eb, NULL);
        for (int i = 0; i < xe.lrows; i++)
            memcpy(m->rows + (size_t)tp_row_global(&xe, g, i) * el, m->demb + (size_t)i * el, (size_t)el * sizeof(float));
    } else {
        for (int n = 0; n < N; n++) {
            int id = b->input_ids[n];
            if ((id / wrb) % g->Q != g->mycol) continue;
            size_t li = (size_t)(id / (wrb * g->Q)) * wrb + id % wrb;
            memcpy(m->rows + (size_t)n * el, m->p[AP_WORD] + li * el, (size_t)el * sizeof(float));
        }
    }
    if (g->Q > 1 && N * el > 0)
        MPI_CHECK(g->comm, MPI_Allreduce(MPI_IN_PLACE, m->rows, N * el, MPI_FLOAT, MPI_SUM, g->row_comm));
    if (backward)
        for (int n = 0; n < N; n++) {
            int id = b->input_ids[n];
            if ((id / wrb) % g->Q != g->mycol) continue;
            size_t li = (size_t)(id / (wrb * g->Q)) * wrb + id % wrb;
            float *dst = m->gr[AP_WORD] + li * el;
            const float *src = m->rows + (size_t)n * el;
            for (int j = 0; j < el; j++) dst[j] += src[j];
        }
}

// Tile (local sequence s, local head h) of application l: q, k, v into m->tq/tk/tv, and
// the arguments albert.c's attention draws its dropout with: the sequence's mask, the
// counter offset of the (global sequence, global head) slice of att, the saved
// probabilities.
typedef struct {
    const int32_t *mask;
    uint64_t offset, seed;
    float *att;
} Tile;

static Tile tile_load(TpAlbert *m, const AlbertBatch *b, const TpLayerActs *la, const TpMat *xh, int s, int h,
                      int l, uint64_t seed) {
    const TpGrid *g = m->g;
    const int T = b->T, D = m->D, NH = m->cfg.num_heads, nhl = m->hl / D;
    const int bg = s * g->Q + g->mycol, hg = tp_col_global(xh, g, h * D) / D;
    tile_copy(m, la->q, m->tq, s, h, T, 1);
    tile_copy(m, la->k, m->tk, s, h, T, 1);
    tile_copy(m, la->v, m->tv, s, h, T, 1);
    return (Tile){.mask = b->attention_mask ? b->attention_mask + (size_t)bg * T : NULL,
                  .offset = b->sample_index0 * (uint64_t)NH * T * T + ((uint64_t)bg * NH + hg) * T * T,
                  .seed = cx_rng_derive(seed, ALBERT_SITE_ATT + (uint64_t)l),
                  .att = la->att + ((size_t)s * nhl + h) * T * T};
}

// ---- forward ----

const TpMat *tp_albert_encode(TpAlbert *m, const AlbertBatch *b, int train, uint64_t seed) {
    const AlbertConfig *c = &m->cfg;
    const TpGrid *g = m->g;
    const int B = b->B, T = b->T, E = c->embedding_size, H = c->hidden_size, I = c->intermediate_size;
    const int D = m->D;
    CHECK(B >= 1 && B <= m->max_B && T >= 1 && T <= m->max_T, "micro-batch %d x %d exceeds %d x %d", B, T,
          m->max_B, m->max_T);
    const float p = train ? c->dropout : 0.0f;
    float **P = m->p;
    TpMat xe, xh, xi;
    act(m, &xe, B, T, E, m->eb, m->emb);
    act(m, &xh, B, T, H, m->cb, NULL);
    act(m, &xi, B, T, I, m->cb, NULL);
    const int nl = xh.lrows;

    // embeddings: word + (position + token type), the rank's tokens and embedding columns;
    // the word rows of every token of the batch come from the grid column that holds them
    word_rows(m, b, 0);
    for (int i = 0; i < xe.lrows; i++) {
        int gr = tp_row_global(&xe, g, i), t = gr % T;
        const float *w = m->rows + (size_t)gr * m->el;
        const float *typ = P[AP_TYPE] + (b->token_type_ids && b->token_type_ids[gr] ? E : 0);
        for (int j = 0; j < xe.lcols; j++) {
            int gc = tp_col_global(&xe, g, j);
            m->emb[(size_t)i * xe.lcols + j] = w[j] + (P[AP_POS][(size_t)t * E + gc] + typ[gc]);
        }
    }
    TpMat eln = xe, edr = xe, h0 = xh;
    eln.a = m->emb_ln;
    edr.a = m->emb_drop;
    h0.a = m->h0;
    tp_layernorm_forward(&eln, m->emb_mean, m->emb_rstd, &xe, P[AP_EMB_LN_W], P[AP_EMB_LN_B], c->ln_eps, g);
    dropout(m, &xe, m->emb_drop, m->emb_ln, p, cx_rng_derive(seed, ALBERT_SITE_EMB),
            b->sample_index0 * (uint64_t)T * E, 0);
    tp_linear_forward(&h0, &edr, &m->W[AP_MAP_W], P[AP_MAP_B], g);

    const float *x = m->h0;
    const int ns = (B - g->mycol + g->Q - 1) / g->Q;  // local sequences (0 when mycol >= B)
    const int nhl = m->hl / D;                                                      // local heads
    for (int l = 0; l < c->num_layers; l++) {
        TpLayerActs *la = &m->layers[l];
        TpMat X = xh, Qm = xh, Km = xh, Vm = xh, Cm = xh, Pj = xh, R1 = xh, Am = xh, F1 = xi, Gm = xi, R2 = xh, O = xh;
        X.a = (float *)x, Qm.a = la->q, Km.a = la->k, Vm.a = la->v, Cm.a = la->ctx, Pj.a = m->dproj;
        R1.a = la->res1, Am.a = la->a, F1.a = la->f1, Gm.a = la->g, R2.a = la->res2, O.a = la->out;
        tp_linear_forward(&Qm, &X, &m->W[AP_Q_W], P[AP_Q_B], g);
        tp_linear_forward(&Km, &X, &m->W[AP_K_W], P[AP_K_B], g);
        tp_linear_forward(&Vm, &X, &m->W[AP_V_W], P[AP_V_B], g);
        // attention on the rank's (sequence, head) tiles
        for (int s = 0; s < ns; s++)
            for (int h = 0; h < nhl; h++) {
                Tile t = tile_load(m, b, la, &xh, s, h, l, seed);
                nn_attention_forward(m->tc, t.att, m->tq, m->tk, m->tv, t.mask, 1, T, D, 1, p, t.seed, t.offset,
                                     m->att_scratch);
                tile_copy(m, la->ctx, m->tc, s, h, T, 0);
            }
        // res1 = x + dropout(dense(ctx)); a = LN(res1)
        tp_linear_forward(&Pj, &Cm, &m->W[AP_O_W], P[AP_O_B], g);
        dropout(m, &xh, m->dproj, m->dproj, p, cx_rng_derive(seed, ALBERT_SITE_OUT + (uint64_t)l),
                b->sample_index0 * (uint64_t)T * H, 0);
        nn_add_forward(la->res1, m->dproj, x, (size_t)nl * m->hl);
        tp_layernorm_forward(&Am, la->mean1, la->rstd1, &R1, P[AP_ATT_LN_W], P[AP_ATT_LN_B], c->ln_eps, g);
        // res2 = ffn_output(gelu(ffn(a))) + a; out = LN(res2)
        tp_linear_forward(&F1, &Am, &m->W[AP_FFN_W], P[AP_FFN_B], g);
        nn_gelu_forward(la->g, la->f1, (size_t)nl * m->il);
        tp_linear_forward(&R2, &Gm, &m->W[AP_FFNO_W], P[AP_FFNO_B], g);
        nn_add_forward(la->res2, la->res2, la->a, (size_t)nl * m->hl);
        tp_layernorm_forward(&O, la->mean2, la->rstd2, &R2, P[AP_FULL_LN_W], P[AP_FULL_LN_B], c->ln_eps, g);
        x = la->out;
    }
    m->out_view = xh;
    m->out_view.a = (float *)x;
    return &m->out_view;
}

// ---- backward ----

void tp_albert_encode_backward(TpAlbert *m, const AlbertBatch *b, int train, uint64_t seed,
                               const TpMat *dout) {
    const AlbertConfig *c = &m->cfg;
    const TpGrid *g = m->g;
    const int B = b->B, T = b->T, E = c->embedding_size, H = c->hidden_size, I = c->intermediate_size;
    const int D = m->D;
    const float p = train ? c->dropout : 0.0f;
    float **P = m->p, **G = m->gr;
    TpMat xe, xh, xi;
    act(m, &xe, B, T, E, m->eb, NULL);
    act(m, &xh, B, T, H, m->cb, NULL);
    act(m, &xi, B, T, I, m->cb, NULL);
    const size_t nH = (size_t)xh.lrows * m->hl, nI = (size_t)xh.lrows * m->il, nE = (size_t)xe.lrows * m->el;
    const int ns = (B - g->mycol + g->Q - 1) / g->Q, nhl = m->hl / D;
    memcpy(m->dh, dout->a, nH * sizeof(float));
#define V_(name, base, ptr) TpMat name = base; name.a = (ptr)
    for (int l = c->num_layers - 1; l >= 0; l--) {
        TpLayerActs *la = &m->layers[l];
        const float *x = l > 0 ? m->layers[l - 1].out : m->h0;
        V_(dH, xh, m->dh); V_(dR, xh, m->dres); V_(dX, xh, m->dx); V_(R2, xh, la->res2);
        V_(Gm, xi, la->g); V_(dG, xi, m->dg); V_(dF1, xi, m->df1); V_(Am, xh, la->a);
        V_(R1, xh, la->res1); V_(dC, xh, m->dctx); V_(dPj, xh, m->dproj); V_(Cm, xh, la->ctx);
        V_(dQ, xh, m->dq); V_(dK, xh, m->dk); V_(dV, xh, m->dv); V_(X, xh, (float *)x);
        // out = LN2(res2)
        memset(m->dres, 0, nH * sizeof(float));
        tp_layernorm_backward(&dR, G[AP_FULL_LN_W], G[AP_FULL_LN_B], &dH, &R2, la->mean2, la->rstd2,
                              P[AP_FULL_LN_W], g);
        // res2 = ffn_output(g) + a
        memcpy(m->dx, m->dres, nH * sizeof(float));  // d(a) so far
        memset(m->dg, 0, nI * sizeof(float));
        tp_linear_backward(&dG, &m->dW[AP_FFNO_W], G[AP_FFNO_B], &dR, &Gm, &m->W[AP_FFNO_W], g);
        memset(m->df1, 0, nI * sizeof(float));
        nn_gelu_backward(m->df1, m->dg, la->f1, nI);
        tp_linear_backward(&dX, &m->dW[AP_FFN_W], G[AP_FFN_B], &dF1, &Am, &m->W[AP_FFN_W], g);
        // a = LN1(res1)
        memset(m->dres, 0, nH * sizeof(float));
        tp_layernorm_backward(&dR, G[AP_ATT_LN_W], G[AP_ATT_LN_B], &dX, &R1, la->mean1, la->rstd1,
                              P[AP_ATT_LN_W], g);
        // res1 = x + dropout(dense(ctx))
        memcpy(m->dh, m->dres, nH * sizeof(float));  // d(x)
        memset(m->dproj, 0, nH * sizeof(float));
        dropout(m, &xh, m->dproj, m->dres, p, cx_rng_derive(seed, ALBERT_SITE_OUT + (uint64_t)l),
                b->sample_index0 * (uint64_t)T * H, 1);
        memset(m->dctx, 0, nH * sizeof(float));
        tp_linear_backward(&dC, &m->dW[AP_O_W], G[AP_O_B], &dPj, &Cm, &m->W[AP_O_W], g);
        // attention, tile by tile
        for (int s = 0; s < ns; s++)
            for (int h = 0; h < nhl; h++) {
                Tile t = tile_load(m, b, la, &xh, s, h, l, seed);
                tile_copy(m, m->dctx, m->tdc, s, h, T, 1);
                memset(m->tdq, 0, (size_t)T * D * sizeof(float));
                memset(m->tdk, 0, (size_t)T * D * sizeof(float));
                memset(m->tdv, 0, (size_t)T * D * sizeof(float));
                nn_attention_backward(m->tdq, m->tdk, m->tdv, m->tdc, m->tq, m->tk, m->tv, t.att, t.mask, 1, T, D, 1,
                                      p, t.seed, t.offset, m->att_scratch);
                tile_copy(m, m->dq, m->tdq, s, h, T, 0);
                tile_copy(m, m->dk, m->tdk, s, h, T, 0);
                tile_copy(m, m->dv, m->tdv, s, h, T, 0);
            }
        tp_linear_backward(&dH, &m->dW[AP_Q_W], G[AP_Q_B], &dQ, &X, &m->W[AP_Q_W], g);
        tp_linear_backward(&dH, &m->dW[AP_K_W], G[AP_K_B], &dK, &X, &m->W[AP_K_W], g);
        tp_linear_backward(&dH, &m->dW[AP_V_W], G[AP_V_B], &dV, &X, &m->W[AP_V_W], g);
        hook_progress(m, b);
    }
    // the shared layer's matrices are final after its first application's backward
    const int shared[] = {AP_Q_W, AP_K_W, AP_V_W, AP_O_W, AP_FFN_W, AP_FFNO_W};
    for (size_t k = 0; k < sizeof shared / sizeof shared[0]; k++) hook_ready(m, b, shared[k]);
    // h0 = map_in(dropout(LN(emb)))
    V_(dH, xh, m->dh); V_(dE, xe, m->demb); V_(dE2, xe, m->demb2); V_(Edr, xe, m->emb_drop);
    V_(Em, xe, m->emb);
#undef V_
    memset(m->demb, 0, nE * sizeof(float));
    tp_linear_backward(&dE, &m->dW[AP_MAP_W], G[AP_MAP_B], &dH, &Edr, &m->W[AP_MAP_W], g);
    hook_ready(m, b, AP_MAP_W);
    memset(m->demb2, 0, nE * sizeof(float));
    dropout(m, &xe, m->demb2, m->demb, p, cx_rng_derive(seed, ALBERT_SITE_EMB), b->sample_index0 * (uint64_t)T * E, 1);
    memset(m->demb, 0, nE * sizeof(float));
    tp_layernorm_backward(&dE, G[AP_EMB_LN_W], G[AP_EMB_LN_B], &dE2, &Em, m->emb_mean, m->emb_rstd,
                          P[AP_EMB_LN_W], g);
    // the position and type tables: the rank's tokens and embedding columns (summed over
    // the grid later); the word table's rows from every token of the grid row
    for (int i = 0; i < xe.lrows; i++) {
        int gr = tp_row_global(&xe, g, i), t = gr % T;
        float *typ = G[AP_TYPE] + (b->token_type_ids && b->token_type_ids[gr] ? E : 0);
        for (int j = 0; j < xe.lcols; j++) {
            int gc = tp_col_global(&xe, g, j);
            float d = m->demb[(size_t)i * xe.lcols + j];
            G[AP_POS][(size_t)t * E + gc] += d;
            typ[gc] += d;
        }
    }
    word_rows(m, b, 1);
    hook_ready(m, b, AP_WORD);
}

// ---- the MLM head ----
//
// The selected positions of each sequence are gathered into rows of their own: Kmax rows
// per sequence (the batch's largest count of selected positions; a shorter sequence's
// spare rows are padding), in row blocks of Kmax, so a sequence's rows stay on the grid
// column that holds its tokens and the gather is a local copy. Then, as albert.c's head:
// dense H -> E, GELU, LayerNorm, the decoder tied to the word table (a dealt linear layer
// of V outputs, whose vocabulary columns go in one contiguous share per grid row) plus
// predictions.bias, and the cross-entropy, whose row max and sums run over the grid column.

double tp_albert_step(TpAlbert *m, const AlbertBatch *b, int train, int backward, uint64_t seed,
                      long *n_selected) {
    CHECK(m->mlm, "tp_albert_step on an encoder-only model");
    const AlbertConfig *c = &m->cfg;
    const TpGrid *g = m->g;
    const int B = b->B, T = b->T, E = c->embedding_size, H = c->hidden_size, V = c->vocab_size;
    const TpMat *out = tp_albert_encode(m, b, train, seed);
    // selected positions: their count and the largest per sequence
    int kmax = 0;
    long total = 0;
    for (int bi = 0; bi < B; bi++) {
        int k = 0;
        for (int t = 0; t < T; t++) k += b->targets[bi * T + t] >= 0;
        kmax = k > kmax ? k : kmax;
        total += k;
    }
    *n_selected = total;
    if (kmax == 0) return 0.0;
    const int M = B * kmax, ns = (B - g->mycol + g->Q - 1) / g->Q, hl = m->hl, el = m->el;
    TpMat Z, Z1, Z2, Z3, L;
    tp_mat_init(&Z, g, M, H, kmax, m->cb, m->z_in);
    tp_mat_init(&Z1, g, M, E, kmax, m->eb, m->z1);
    Z2 = Z1, Z3 = Z1;
    Z2.a = m->z2, Z3.a = m->z3;
    tp_mat_init(&L, g, M, V, kmax, m->vb, m->logits);
    for (int s = 0; s < ns; s++) {
        int bg = s * g->Q + g->mycol, k = 0;
        for (int t = 0; t < T; t++) {
            int32_t tgt = b->targets[bg * T + t];
            if (tgt < 0) continue;
            int r = s * kmax + k++;
            memcpy(m->z_in + (size_t)r * hl, out->a + ((size_t)s * T + t) * hl, (size_t)hl * sizeof(float));
            m->sel_tgt[r] = tgt;
            m->sel_pos[r] = s * T + t;
        }
        for (; k < kmax; k++) {
            int r = s * kmax + k;
            memset(m->z_in + (size_t)r * hl, 0, (size_t)hl * sizeof(float));
            m->sel_tgt[r] = -1;
            m->sel_pos[r] = -1;
        }
    }
    float **P = m->p, **G = m->gr;
    tp_linear_forward(&Z1, &Z, &m->W[AP_PRED_DENSE_W], P[AP_PRED_DENSE_B], g);
    nn_gelu_forward(m->z2, m->z1, (size_t)Z1.lrows * el);
    tp_layernorm_forward(&Z3, m->zmean, m->zrstd, &Z2, P[AP_PRED_LN_W], P[AP_PRED_LN_B], c->ln_eps, g);
    tp_linear_forward(&L, &Z3, &m->W[AP_WORD], P[AP_PRED_BIAS], g);
    // softmax cross-entropy over the vocabulary, dealt over the grid column
    const int R = L.lrows, vl = L.lcols;
    const int v0 = vl ? tp_col_global(&L, g, 0) : 0;  // the rank's vocabulary share is contiguous
    float *mx = m->rowmax;
    for (int r = 0; r < R; r++) {
        const float *x = m->logits + (size_t)r * vl;
        float v = -INFINITY;
        for (int j = 0; j < vl; j++) v = x[j] > v ? x[j] : v;
        mx[r] = v;
    }
    if (g->P > 1) MPI_CHECK(g->comm, MPI_Allreduce(MPI_IN_PLACE, mx, R, MPI_FLOAT, MPI_MAX, g->col_comm));
    double *sums = m->rowstat;
    for (int r = 0; r < R; r++) {
        const float *x = m->logits + (size_t)r * vl;
        double sum = 0;
        for (int j = 0; j < vl; j++) sum += exp((double)x[j] - mx[r]);
        int tg = m->sel_tgt[r];
        sums[2 * r] = sum;
        sums[2 * r + 1] = tg >= v0 && tg < v0 + vl ? x[tg - v0] : 0.0;
    }
    if (g->P > 1) MPI_CHECK(g->comm, MPI_Allreduce(MPI_IN_PLACE, sums, 2 * R, MPI_DOUBLE, MPI_SUM, g->col_comm));
    double loss = 0;
    for (int r = 0; r < R; r++) {
        double lse = mx[r] + log(sums[2 * r]);
        if (m->sel_tgt[r] >= 0) loss += lse - sums[2 * r + 1];
        float *x = m->logits + (size_t)r * vl;  // probabilities in place
        for (int j = 0; j < vl; j++) x[j] = (float)exp((double)x[j] - lse);
    }
    if (g->myrow != 0) loss = 0;  // a grid column's P ranks hold the same rows
    MPI_CHECK(g->comm, MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, g->comm));
    if (!backward) return loss;
    // dlogits = probs - onehot(target) on the selected rows (in place), 0 on padding
    for (int r = 0; r < R; r++) {
        float *x = m->logits + (size_t)r * vl;
        int tg = m->sel_tgt[r];
        if (tg < 0) memset(x, 0, (size_t)vl * sizeof(float));
        else if (tg >= v0 && tg < v0 + vl) x[tg - v0] -= 1.0f;
    }
    TpMat dZ, dZ1, dZ2, dZ3;
    tp_mat_init(&dZ, g, M, H, kmax, m->cb, m->dz_in);
    tp_mat_init(&dZ1, g, M, E, kmax, m->eb, m->dz1);
    dZ2 = dZ1, dZ3 = dZ1;
    dZ2.a = m->dz2, dZ3.a = m->dz3;
    const size_t nE = (size_t)Z1.lrows * el;
    memset(m->dz3, 0, nE * sizeof(float));
    tp_linear_backward(&dZ3, &m->dW[AP_WORD], G[AP_PRED_BIAS], &L, &Z3, &m->W[AP_WORD], g);
    memset(m->dz2, 0, nE * sizeof(float));
    tp_layernorm_backward(&dZ2, G[AP_PRED_LN_W], G[AP_PRED_LN_B], &dZ3, &Z2, m->zmean, m->zrstd,
                          P[AP_PRED_LN_W], g);
    memset(m->dz1, 0, nE * sizeof(float));
    nn_gelu_backward(m->dz1, m->dz2, m->z1, nE);
    memset(m->dz_in, 0, (size_t)Z.lrows * hl * sizeof(float));
    tp_linear_backward(&dZ, &m->dW[AP_PRED_DENSE_W], G[AP_PRED_DENSE_B], &dZ1, &Z, &m->W[AP_PRED_DENSE_W], g);
    hook_ready(m, b, AP_PRED_DENSE_W);
    // back to the positions they came from
    TpMat dout;
    tp_albert_out_layout(m, B, T, &dout, m->dout);
    memset(m->dout, 0, (size_t)dout.lrows * hl * sizeof(float));
    for (int r = 0; r < R; r++)
        if (m->sel_pos[r] >= 0)
            memcpy(m->dout + (size_t)m->sel_pos[r] * hl, m->dz_in + (size_t)r * hl, (size_t)hl * sizeof(float));
    tp_albert_encode_backward(m, b, train, seed, &dout);
    return loss;
}
