// headline.c: the encoder-decoder's training data and configuration: mBART denoising, the
// headline/denoise training tasks and the configuration (see headline.h).
#include "io/tasks/headline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/run/config.h"
#include "models/common.h"
#include "models/rng.h"

// ---------------------------------------------------------------------------------------
// Denoising (mBART).

void headline_sentence_ends(const Bpe *bpe, uint8_t *out) {
    int V = bpe_vocab_size(bpe);
    char buf[256];
    for (int id = 0; id < V; id++) {
        int32_t x = id;
        out[id] = 0;
        if (id < BPE_N_SPECIAL) continue;
        size_t n = bpe_decode(bpe, &x, 1, buf, sizeof buf);
        if (n > sizeof buf) n = sizeof buf;
        if (memchr(buf, '\n', n)) {
            out[id] = 1;
            continue;
        }
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r')) n--;
        if (n == 0) continue;
        char c = buf[n - 1];
        if (c == '.' || c == '!' || c == '?') out[id] = 1;
        else if (n >= 3 && (unsigned char)buf[n - 3] == 0xE2 && (unsigned char)buf[n - 2] == 0x80 &&
                 (unsigned char)buf[n - 1] == 0xA6)
            out[id] = 1;
    }
}

int headline_poisson(float lambda, uint64_t seed, uint64_t counter) {
    double L = exp(-(double)lambda), p = 1.0;
    int k = 0;
    do {
        k++;
        p *= (double)cx_rng_uniform(seed, counter * 64 + (uint64_t)k) + 1e-12;
    } while (p > L && k < 64);
    return k - 1;
}

enum { TAG_PERM_SENT = 1, TAG_SPAN_LEN = 2, TAG_SPAN_POS = 3 };

size_t headline_denoise(const DenoiseConfig *c, const uint8_t *sent_end, const int32_t *in,
                        size_t n, uint64_t seed, uint64_t sample, int32_t *out,
                        int32_t *scratch, size_t *n_masked) {
    const uint64_t base = cx_rng_derive(seed, sample);
    int32_t *perm = scratch, *mark = scratch + n, *ins = scratch + 2 * n;
    if (n_masked) *n_masked = 0;
    if (n == 0) return 0;
    // 1. sentence permutation: sentences are [starts[k], starts[k+1]); mark[] holds starts
    size_t n_sent = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || (sent_end && sent_end[in[i - 1]])) mark[n_sent++] = (int32_t)i;
    if (c->permute_sentences && n_sent > 1) {
        // ins[] holds the sentence order (Fisher-Yates)
        uint64_t ps = cx_rng_derive(base, TAG_PERM_SENT);
        for (size_t k = 0; k < n_sent; k++) ins[k] = (int32_t)k;
        for (size_t k = n_sent - 1; k > 0; k--) {
            size_t j = (size_t)(cx_rng_u64(ps, k) % (k + 1));
            int32_t t = ins[k];
            ins[k] = ins[j];
            ins[j] = t;
        }
        size_t o = 0;
        for (size_t k = 0; k < n_sent; k++) {
            size_t s = (size_t)mark[ins[k]], e = (size_t)ins[k] + 1 < n_sent ? (size_t)mark[ins[k] + 1] : n;
            memcpy(perm + o, in + s, (e - s) * sizeof *in);
            o += e - s;
        }
    } else {
        memcpy(perm, in, n * sizeof *in);
    }
    // 2. span masking: mark[i] = 1 for masked tokens, ins[i] = 1 for a [MASK] inserted
    //    before position i (zero-length spans)
    memset(mark, 0, n * sizeof *mark);
    memset(ins, 0, (n + 1) * sizeof *ins);
    size_t target = (size_t)floor((double)c->mask_ratio * (double)n + 0.5), masked = 0;
    uint64_t ls = cx_rng_derive(base, TAG_SPAN_LEN), pos = cx_rng_derive(base, TAG_SPAN_POS);
    for (uint64_t draw = 0; masked < target && draw < 4 * (uint64_t)n + 16; draw++) {
        int L = headline_poisson(c->poisson_lambda, ls, draw);
        if (L == 0) {
            ins[cx_rng_u64(pos, draw) % (n + 1)] = 1;
            continue;
        }
        size_t start = (size_t)(cx_rng_u64(pos, draw) % n);
        for (size_t i = start; i < n && i < start + (size_t)L && masked < target; i++)
            if (!mark[i]) mark[i] = 1, masked++;
    }
    // 3. every run of masked tokens (and every insertion) becomes one [MASK]
    size_t o = 0;
    for (size_t i = 0; i <= n; i++) {
        if (ins[i] && (o == 0 || out[o - 1] != ED_MASK)) out[o++] = ED_MASK;
        if (i == n) break;
        if (mark[i]) {
            if (o == 0 || out[o - 1] != ED_MASK) out[o++] = ED_MASK;
        } else {
            out[o++] = perm[i];
        }
    }
    if (n_masked) *n_masked = masked;
    return o;
}

// ---------------------------------------------------------------------------------------
// Training tasks.

#define TAG_PERM 0x7E4Dull
enum { MIN_WINDOW = 8 };

static void make_perm(HeadlineTask *ht, uint64_t epoch) {
    uint64_t ps = cx_rng_derive(cx_rng_derive(ht->seed, TAG_PERM), epoch);
    for (size_t i = 0; i < ht->n; i++) ht->perm[i] = (uint32_t)i;
    for (size_t i = ht->n - 1; i > 0; i--) {
        size_t j = (size_t)(cx_rng_u64(ps, i) % (i + 1));
        uint32_t t = ht->perm[i];
        ht->perm[i] = ht->perm[j];
        ht->perm[j] = t;
    }
    ht->perm_epoch = epoch;
}

static size_t example_index(HeadlineTask *ht, uint64_t s) {
    uint64_t e = s / ht->n, r = s % ht->n;
    if (!ht->shuffle || ht->n < 2) return (size_t)r;
    if (ht->perm_epoch != e) make_perm(ht, e);
    return ht->perm[r];
}

void headline_task_example(HeadlineTask *ht, uint64_t s, int32_t *src, int *ns, int32_t *tgt,
                           int *nt) {
    size_t e = example_index(ht, s);
    const int32_t *a, *h;
    size_t na, nh;
    if (ht->kind == 0) {
        const Pairs *p = ht->pairs;
        a = p->src + p->src_off[e];
        na = (size_t)(p->src_off[e + 1] - p->src_off[e]);
        h = p->tgt + p->tgt_off[e];
        nh = (size_t)(p->tgt_off[e + 1] - p->tgt_off[e]);
    } else {
        h = ht->tokens + ht->win_off[e];
        nh = (size_t)(ht->win_off[e + 1] - ht->win_off[e]);
        // the work buffer holds 2 n + 1 output ids then 3 n + 1 scratch ids
        int32_t *outb = ht->work, *scr = ht->work + 2 * nh + 1;
        na = headline_denoise(&ht->dn, ht->sent_end, h, nh, ht->seed, s, outb, scr, NULL);
        a = outb;
    }
    size_t ms = (size_t)ht->Ts - 2, mt = (size_t)ht->Tt - 1;
    if (na > ms) na = ms;
    if (nh > mt) nh = mt;
    src[0] = ED_BOS;  // [CLS]
    memcpy(src + 1, a, na * sizeof *a);
    src[na + 1] = ED_EOS;  // [SEP]
    *ns = (int)na + 2;
    memcpy(tgt, h, nh * sizeof *h);
    tgt[nh] = ED_EOS;
    *nt = (int)nh + 1;
}

static double headline_micro_step(void *ctx, uint64_t s0, int B, int backward, int final,
                                  long *n_tokens, double *aux_sum) {
    HeadlineTask *ht = ctx;
    const int Ts = ht->Ts, Tt = ht->Tt;
    int *ls = ht->lens, *lt = ht->lens + ht->B, ms = 1, mt = 1;
    CHECK(B >= 1 && B <= ht->B, "micro-batch of %d (the task holds %d)", B, ht->B);
    long real = 0;
    // unpadded rows first (stride Ts / Tt), then packed to the batch's longest
    for (int b = 0; b < B; b++) {
        headline_task_example(ht, s0 + (uint64_t)b, ht->bsrc + (size_t)b * Ts, &ls[b],
                              ht->btgt + (size_t)b * Tt, &lt[b]);
        if (ls[b] > ms) ms = ls[b];
        if (lt[b] > mt) mt = lt[b];
        real += ls[b];
    }
    for (int b = 0; b < B; b++) {
        int32_t *s = ht->bsrc + (size_t)b * ms, *t = ht->btgt + (size_t)b * mt;
        memmove(s, ht->bsrc + (size_t)b * Ts, (size_t)ls[b] * sizeof *s);
        for (int i = ls[b]; i < ms; i++) s[i] = ED_PAD;
        memmove(t, ht->btgt + (size_t)b * Tt, (size_t)lt[b] * sizeof *t);
        for (int i = lt[b]; i < mt; i++) t[i] = ED_PAD;
    }
    if (backward) ht->src_tokens_seen += (uint64_t)real;
    EncDecBatch batch = {.B = B, .Ts = ms, .Tt = mt, .src = ht->bsrc, .tgt = ht->btgt,
                         .sample_index0 = s0, .final_micro = final};
    if (aux_sum) *aux_sum = 0.0;
    return encdec_step(ht->model, &batch, backward, backward, ht->dropout_seed, n_tokens);
}

// The decoder's labels are the target tokens that are not padding (models/encdec.c).
static long headline_count_tokens(void *ctx, uint64_t s0, long n) {
    HeadlineTask *ht = ctx;
    long count = 0;
    int ns, nt;
    for (long i = 0; i < n; i++) {
        headline_task_example(ht, s0 + (uint64_t)i, ht->bsrc, &ns, ht->btgt, &nt);
        for (int t = 0; t < nt; t++) count += ht->btgt[t] != ED_PAD;
    }
    return count;
}

static void task_common(HeadlineTask *ht, TrainTask *task, EncDec *model, int Ts, int Tt,
                        int micro_batch, uint64_t seed, int shuffle, uint64_t dropout_seed) {
    ht->model = model;
    ht->Ts = Ts;
    ht->Tt = Tt;
    ht->B = micro_batch;
    ht->seed = seed;
    ht->shuffle = shuffle;
    ht->dropout_seed = dropout_seed;
    ht->perm = cx_calloc(ht->n ? ht->n : 1, sizeof(uint32_t));
    ht->perm_epoch = UINT64_MAX;
    ht->bsrc = cx_calloc((size_t)micro_batch * Ts, sizeof(int32_t));
    ht->btgt = cx_calloc((size_t)micro_batch * Tt, sizeof(int32_t));
    ht->work = cx_calloc(5 * (size_t)Ts + 8, sizeof(int32_t));
    ht->lens = cx_calloc(2 * (size_t)micro_batch, sizeof(int));
    memset(task, 0, sizeof *task);
    task->ctx = ht;
    task->params = encdec_params(model);
    task->grads = encdec_grads(model);
    task->n_params = encdec_n_params(model);
    task->specs = encdec_specs(model);
    task->n_specs = encdec_n_specs(model);
    task->micro_batch = micro_batch;
    task->micro_step = headline_micro_step;
    task->count_tokens = headline_count_tokens;
}

void headline_task_pairs(HeadlineTask *ht, TrainTask *task, EncDec *model, const Pairs *p,
                         int Ts, int Tt, int micro_batch, uint64_t seed, int shuffle,
                         uint64_t dropout_seed) {
    CHECK(p->n_pairs >= 1 && Ts >= 3 && Tt >= 2 && p->vocab_size <= encdec_config(model)->enc.vocab_size,
          "pair task: %zu pairs, Ts %d, Tt %d, vocabulary %d (model %d)", p->n_pairs, Ts, Tt,
          p->vocab_size, encdec_config(model)->enc.vocab_size);
    memset(ht, 0, sizeof *ht);
    ht->kind = 0;
    ht->pairs = p;
    ht->n = p->n_pairs;
    task_common(ht, task, model, Ts, Tt, micro_batch, seed, shuffle, dropout_seed);
}

int headline_task_denoise(HeadlineTask *ht, TrainTask *task, EncDec *model, const Shard *sh,
                          const DenoiseConfig *dn, const uint8_t *sent_end, int Ts, int Tt,
                          int micro_batch, uint64_t seed, int shuffle, uint64_t dropout_seed,
                          char *err) {
    memset(ht, 0, sizeof *ht);
    if (sh->vocab_size > encdec_config(model)->enc.vocab_size)
        return cx_err(err, "the shard's vocabulary (%d) exceeds the model's (%d)", sh->vocab_size,
                      encdec_config(model)->enc.vocab_size);
    if (Ts < MIN_WINDOW + 2 || Tt < 2)
        return cx_err(err, "data.src_len must be >= %d for denoising", MIN_WINDOW + 2);
    const size_t W = (size_t)Ts - 2;
    size_t n_win = 0, n_tok = 0;
    for (size_t d = 0; d < sh->n_docs; d++) {
        size_t len = (size_t)(sh->doc_offsets[d + 1] - sh->doc_offsets[d]);
        for (size_t o = 0; o < len; o += W) {
            size_t w = len - o < W ? len - o : W;
            if (w >= MIN_WINDOW) n_win++, n_tok += w;
        }
    }
    if (n_win == 0)
        return cx_err(err, "no document has %d tokens or more: nothing to denoise", MIN_WINDOW);
    ht->tokens = cx_calloc(n_tok ? n_tok : 1, sizeof(int32_t));
    ht->win_off = cx_calloc(n_win + 1, sizeof(int64_t));
    size_t k = 0, t = 0;
    for (size_t d = 0; d < sh->n_docs; d++) {
        size_t len = (size_t)(sh->doc_offsets[d + 1] - sh->doc_offsets[d]);
        const int32_t *doc = sh->tokens + sh->doc_offsets[d];
        for (size_t o = 0; o < len; o += W) {
            size_t w = len - o < W ? len - o : W;
            if (w < MIN_WINDOW) continue;
            memcpy(ht->tokens + t, doc + o, w * sizeof(int32_t));
            t += w;
            ht->win_off[++k] = (int64_t)t;
        }
    }
    ht->kind = 1;
    ht->dn = *dn;
    ht->sent_end = sent_end;
    ht->n = n_win;
    task_common(ht, task, model, Ts, Tt, micro_batch, seed, shuffle, dropout_seed);
    return 0;
}

void headline_task_free(HeadlineTask *ht) {
    free(ht->tokens);
    free(ht->win_off);
    free(ht->perm);
    free(ht->bsrc);
    free(ht->btgt);
    free(ht->work);
    free(ht->lens);
    memset(ht, 0, sizeof *ht);
}

// ---------------------------------------------------------------------------------------
// Configuration: table-driven INI on inih, as io/run/config.c.

static const char *const OBJECTIVE_NAMES[] = {"headline", "denoise", NULL};  // HeadlineObjective

#define F(sec, key, type, field) {sec, key, type, offsetof(HeadlineConfig, field), 0, NULL, NULL}
#define S(sec, key, field) {sec, key, CFG_STR, offsetof(HeadlineConfig, field), HL_PATH_LEN, NULL, NULL}
#define E(sec, key, field, names, what) {sec, key, CFG_ENUM, offsetof(HeadlineConfig, field), 0, names, what}
static const CfgKey KEYS[] = {
    F("model", "vocab_size", CFG_INT, model.enc.vocab_size),
    F("model", "embedding_size", CFG_INT, model.enc.embedding_size),
    F("model", "hidden_size", CFG_INT, model.enc.hidden_size),
    F("model", "num_heads", CFG_INT, model.enc.num_heads),
    F("model", "intermediate_size", CFG_INT, model.enc.intermediate_size),
    F("model", "num_layers", CFG_INT, model.enc.num_layers),
    F("model", "max_position", CFG_INT, model.enc.max_position),
    F("model", "dropout", CFG_FLOAT, model.enc.dropout),
    F("model", "layer_norm_eps", CFG_FLOAT, model.enc.ln_eps),
    F("model", "init_std", CFG_FLOAT, model.enc.init_std),
    F("decoder", "num_layers", CFG_INT, model.dec_layers),
    F("decoder", "num_heads", CFG_INT, model.dec_heads),
    F("decoder", "intermediate_size", CFG_INT, model.dec_intermediate),
    F("decoder", "max_position", CFG_INT, model.dec_max_position),
    F("decoder", "dropout", CFG_FLOAT, model.dec_dropout),
    F("decoder", "label_smoothing", CFG_FLOAT, model.label_smoothing),
    F("decoder", "copy", CFG_INT, model.copy),
    CFG_OPTIM_KEYS(HeadlineConfig, "optim", optim),
    F("optim", "separate_decoder", CFG_INT, separate_decoder),
    F("optim_decoder", "lr", CFG_FLOAT, optim_dec.lr),
    F("optim_decoder", "weight_decay", CFG_FLOAT, optim_dec.weight_decay),
    E("optim_decoder", "schedule", optim_dec.schedule, CFG_SCHED_NAMES, "a schedule"),
    F("optim_decoder", "warmup_steps", CFG_LONG, optim_dec.warmup_steps),
    F("optim_decoder", "end_lr", CFG_FLOAT, optim_dec.end_lr),
    F("optim_decoder", "poly_power", CFG_FLOAT, optim_dec.poly_power),
    E("data", "objective", data.objective, OBJECTIVE_NAMES, "an objective"),
    S("data", "train", data.train),
    S("data", "valid", data.valid),
    S("data", "tokenizer", data.tokenizer),
    F("data", "src_len", CFG_INT, data.src_len),
    F("data", "tgt_len", CFG_INT, data.tgt_len),
    F("data", "mask_ratio", CFG_FLOAT, data.mask_ratio),
    F("data", "poisson_lambda", CFG_FLOAT, data.poisson_lambda),
    F("data", "permute_sentences", CFG_INT, data.permute_sentences),
    F("data", "lowercase", CFG_INT, data.lowercase),
    CFG_TRAIN_KEYS(HeadlineConfig, train),
    S("init", "encoder", init.encoder),
    S("init", "from", init.from),
    F("init", "lm_head", CFG_INT, init.lm_head),
    S("run", "dir", run.dir),
    F("generate", "beam", CFG_INT, generate.beam),
    F("generate", "min_len", CFG_INT, generate.min_len),
    F("generate", "max_len", CFG_INT, generate.max_len),
    F("generate", "alpha", CFG_FLOAT, generate.alpha),
    F("generate", "block_trigrams", CFG_INT, generate.block_trigrams),
};
#undef F
#undef S
#undef E
const CfgSchema HEADLINE_CONFIG_SCHEMA = {KEYS, sizeof KEYS / sizeof KEYS[0]};

const char *headline_objective_name(int objective) {
    return objective == HL_OBJ_DENOISE ? "denoise" : "headline";
}


void headline_config_defaults(HeadlineConfig *c) {
    memset(c, 0, sizeof *c);
    // the encoder: conflux-train's default ALBERT (make demo), so --init-encoder fits
    c->model.enc = (AlbertConfig){.vocab_size = 8192, .embedding_size = 128, .hidden_size = 256,
                                  .num_heads = 4, .intermediate_size = 1024, .num_layers = 4,
                                  .max_position = 512, .dropout = 0.1f, .ln_eps = 1e-12f,
                                  .init_std = 0.02f};
    c->model.dec_layers = 2;
    c->model.dec_heads = 4;
    c->model.dec_intermediate = 1024;
    c->model.dec_max_position = 128;
    c->model.dec_dropout = 0.1f;
    c->model.label_smoothing = 0.1f;
    // BertSumAbs: a pretrained encoder with a small learning rate and a long warm-up, a fresh
    // decoder with a large one and a shorter warm-up (both inverse square root)
    // (peaks 2e-4 / 1.5e-3 suit this small model on 2 cores; BertSumAbs's BERT-base used
    // 2e-3 * 20000^-0.5 = 1.4e-5 and 0.2 * 10000^-0.5 = 2e-3)
    c->optim = (OptimConfig){.kind = OPTIM_ADAMW, .lr = 2e-4f, .beta1 = 0.9f, .beta2 = 0.999f,
                             .eps = 1e-8f, .weight_decay = 0.01f, .clip_norm = 1.0f,
                             .schedule = SCHED_INVSQRT, .warmup_steps = 150, .total_steps = 2500,
                             .end_lr = 0.0f, .poly_power = 1.0f, .trust_coef = 0.001f};
    c->optim_dec = c->optim;
    c->optim_dec.lr = 1.5e-3f;
    c->optim_dec.warmup_steps = 100;
    c->separate_decoder = 1;
    c->data.objective = HL_OBJ_HEADLINE;
    snprintf(c->data.train, HL_PATH_LEN, "build/data/headline/train.h5");
    snprintf(c->data.valid, HL_PATH_LEN, "build/data/headline/valid.h5");
    snprintf(c->data.tokenizer, HL_PATH_LEN, "build/data/tokenizer");
    c->data.src_len = 128;
    c->data.tgt_len = 32;
    c->data.mask_ratio = 0.35f;
    c->data.poisson_lambda = 3.5f;
    c->data.permute_sentences = 1;
    c->data.lowercase = 0;
    c->train.global_batch = 16;
    c->train.micro_batch = 16;
    c->train.steps = 2500;
    c->train.seed = 1234;
    c->train.eval_every = 500;
    c->train.eval_samples = 512;
    c->train.checkpoint_every = 500;
    c->train.threads = 0;
    c->train.log_every = 50;
    c->train.replica_check_every = 0;  // the checkpoint steps, the last step and a stop
    diloco_config_defaults(&c->train.avg);
    c->init.lm_head = 1;
    snprintf(c->run.dir, HL_PATH_LEN, "runs/headline");
    c->generate.beam = 4;
    c->generate.min_len = 3;
    c->generate.max_len = 30;
    c->generate.alpha = 0.9f;
    c->generate.block_trigrams = 1;
}

int headline_config_load_file(HeadlineConfig *c, const char *path, char *err) {
    return cfg_load_file(&HEADLINE_CONFIG_SCHEMA, c, path, err);
}

int headline_config_load_string(HeadlineConfig *c, const char *text, const char *where,
                                char *err) {
    return cfg_load_string(&HEADLINE_CONFIG_SCHEMA, c, text, where, err);
}

int headline_config_set(HeadlineConfig *c, const char *assignment, char *err) {
    return cfg_set(&HEADLINE_CONFIG_SCHEMA, c, assignment, err);
}

OptimConfig headline_decoder_optim(const HeadlineConfig *c) {
    OptimConfig o = c->optim;  // shared settings, the decoder's schedule
    o.lr = c->optim_dec.lr;
    o.weight_decay = c->optim_dec.weight_decay;
    o.warmup_steps = c->optim_dec.warmup_steps;
    o.end_lr = c->optim_dec.end_lr;
    o.poly_power = c->optim_dec.poly_power;
    o.schedule = c->optim_dec.schedule;
    o.total_steps = c->train.steps;
    return o;
}

int headline_config_check(const HeadlineConfig *c, char *err) {
    if (encdec_config_check(&c->model, err) != 0) return -1;
    OptimConfig o = c->optim;
    o.total_steps = c->train.steps;
    if (optim_config_check(&o, err) != 0) return -1;
    if (c->separate_decoder) {
        o = headline_decoder_optim(c);
        char e2[CX_ERRLEN];
        if (optim_config_check(&o, e2) != 0) {
            const char *k = strncmp(e2, "optim.", 6) == 0 ? e2 + 6 : e2;
            return cx_err(err, "optim_decoder.%s", k);
        }
    }
    if (c->separate_decoder != 0 && c->separate_decoder != 1)
        return cx_err(err, "optim.separate_decoder must be 0 or 1");
    if (c->data.src_len < 3 || c->data.src_len > c->model.enc.max_position)
        return cx_err(err, "data.src_len (%d) must be in [3, model.max_position=%d]",
                      c->data.src_len, c->model.enc.max_position);
    if (c->data.tgt_len < 2 || c->data.tgt_len > c->model.dec_max_position)
        return cx_err(err, "data.tgt_len (%d) must be in [2, decoder.max_position=%d]",
                      c->data.tgt_len, c->model.dec_max_position);
    if (!(c->data.mask_ratio >= 0.0f && c->data.mask_ratio < 1.0f))
        return cx_err(err, "data.mask_ratio must be in [0, 1)");
    if (!(c->data.poisson_lambda > 0.0f && c->data.poisson_lambda <= 30.0f))
        return cx_err(err, "data.poisson_lambda must be in (0, 30]");
    if (train_settings_check(&c->train, err) != 0) return -1;
    if (c->init.encoder[0] && c->init.from[0])
        return cx_err(err, "init.encoder and init.from exclude each other");
    if (c->generate.beam < 1) return cx_err(err, "generate.beam must be >= 1");
    if (c->generate.max_len < 1 || c->generate.max_len > c->model.dec_max_position)
        return cx_err(err, "generate.max_len (%d) must be in [1, decoder.max_position=%d]",
                      c->generate.max_len, c->model.dec_max_position);
    if (c->generate.min_len < 0 || c->generate.min_len >= c->generate.max_len)
        return cx_err(err, "generate.min_len must be in [0, generate.max_len)");
    if (!(c->generate.alpha >= 0.0f)) return cx_err(err, "generate.alpha must be >= 0");
    if (!c->data.train[0]) return cx_err(err, "data.train must name a shard");
    if (!c->run.dir[0]) return cx_err(err, "run.dir must name a directory");
    return 0;
}

size_t headline_config_to_ini(const HeadlineConfig *c, char *buf, size_t cap) {
    return cfg_to_ini(&HEADLINE_CONFIG_SCHEMA, c, buf, cap);
}

