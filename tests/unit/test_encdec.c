// test_encdec.c: the encoder-decoder against PyTorch, its new ops, incremental decoding,
// greedy/beam search against exhaustive enumeration, pruning beam search against a Python
// reference (tests/ref/beam_golden.h), and the training task.
//
// tests/ref/encdec_tiny.h5 is written by tests/ref/encdec_golden.py: a tiny model's weights
// (V=300 E=16 H=32, encoder 2 heads x 2 applications, decoder 2 layers x 4 heads), one
// padded batch (B=2, Ts=12, Tt=7, label smoothing 0.1), and PyTorch's float64 loss, logits
// and gradient of every parameter. float32 through this depth agrees with float64 to ~1e-6
// relative; we allow 2e-4 of each tensor's max |gradient| (as test_albert does).
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/store/ckpt.h"
#include "models/beam.h"
#include "models/common.h"
#include "models/encdec.h"
#include "models/nn.h"
#include "models/optim.h"
#include "models/rng.h"
#include "models/train.h"
#include "tests/ref/beam_golden.h"
#include "tests/unit/testutil.h"

#define GOLDEN "tests/ref/encdec_tiny.h5"
// the same tiny model with the copy mechanism (encdec_golden.py --copy); /golden/logits
// holds log P of the mixture
#define GOLDEN_COPY "tests/ref/encdec_copy_tiny.h5"
enum { GB = 2, GTS = 12, GTT = 7 };

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

static int spec_index(const EncDec *m, const char *name) {
    for (int i = 0; i < encdec_n_specs(m); i++)
        if (strcmp(encdec_specs(m)[i].name, name) == 0) return i;
    return -1;
}

typedef struct {
    Ckpt *ck;
    EncDec *m;
    int32_t src[GB * GTS], mask[GB * GTS], tgt[GB * GTT];
} Golden;

// A golden model, with arenas for up to 3 sequences (the incremental test uses 3).
static int load_golden_file(Golden *g, const char *path, int copy) {
    char err[CX_ERRLEN];
    memset(g, 0, sizeof *g);
    if (ckpt_open(&g->ck, path, err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    int32_t d[11];
    float eps;
    if (ckpt_read_int32(g->ck, "/golden/dims", d, 11, err) != 0 ||
        ckpt_read_float(g->ck, "/golden/label_smoothing", &eps, 1, err) != 0 ||
        ckpt_read_int32(g->ck, "/golden/src", g->src, GB * GTS, err) != 0 ||
        ckpt_read_int32(g->ck, "/golden/src_mask", g->mask, GB * GTS, err) != 0 ||
        ckpt_read_int32(g->ck, "/golden/tgt", g->tgt, GB * GTT, err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    int32_t file_copy = 0;
    if (copy && ckpt_read_int32(g->ck, "/golden/copy", &file_copy, 1, err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (file_copy != copy) {
        fprintf(stderr, "%s: /golden/copy is %d, the test wants %d\n", path, file_copy, copy);
        return -1;
    }
    EncDecConfig c = {.enc = {.vocab_size = d[0],
                              .embedding_size = d[1],
                              .hidden_size = d[2],
                              .num_heads = d[3],
                              .intermediate_size = d[4],
                              .num_layers = d[5],
                              .max_position = d[6],
                              .dropout = 0.0f,
                              .ln_eps = 1e-12f,
                              .init_std = 0.02f},
                      .dec_layers = d[7],
                      .dec_heads = d[8],
                      .dec_intermediate = d[9],
                      .dec_max_position = d[10],
                      .dec_dropout = 0.0f,
                      .label_smoothing = eps,
                      .copy = copy};
    g->m = encdec_create(&c, 3, GTS, GTT, 1);
    if (ckpt_read_params(g->ck, encdec_specs(g->m), encdec_n_specs(g->m), encdec_params(g->m),
                         err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int load_golden(Golden *g) { return load_golden_file(g, GOLDEN, 0); }

static void free_golden(Golden *g) {
    encdec_free(g->m);
    ckpt_close(g->ck);
}

// ---------------------------------------------------------------------------------------
// golden: loss, every gradient, logits

static void golden_check(const char *path, int copy) {
    Golden gd;
    CU_ASSERT_FATAL(load_golden_file(&gd, path, copy) == 0);
    EncDec *m = gd.m;
    char err[CX_ERRLEN];
    float loss_ref;
    int32_t ntok_ref;
    CU_ASSERT_FATAL(ckpt_read_float(gd.ck, "/golden/loss_sum", &loss_ref, 1, err) == 0);
    CU_ASSERT_FATAL(ckpt_read_int32(gd.ck, "/golden/n_tokens", &ntok_ref, 1, err) == 0);
    EncDecBatch b = {
        .B = GB, .Ts = GTS, .Tt = GTT, .src = gd.src, .src_mask = gd.mask, .tgt = gd.tgt};
    memset(encdec_grads(m), 0, encdec_n_params(m) * sizeof(float));
    long ntok = 0;
    double loss = encdec_step(m, &b, 0, 1, 0, &ntok);
    CU_ASSERT_EQUAL(ntok, ntok_ref);
    CU_ASSERT_DOUBLE_EQUAL(loss, loss_ref, 1e-5 * fabs(loss_ref));
    printf("\n  loss_sum conflux %.7f pytorch %.7f (rel %.1e) over %ld tokens\n", loss,
           (double)loss_ref, fabs(loss - loss_ref) / fabs(loss_ref), ntok);

    const TensorSpec *specs = encdec_specs(m);
    float *ref = malloc(encdec_n_params(m) * sizeof(float));
    int bad = 0;
    double worst_rel = 0, worst_zero = 0;
    const char *worst_name = "";
    for (int i = 0; i < encdec_n_specs(m); i++) {
        char dset[256];
        snprintf(dset, sizeof dset, "/golden/grads/%s", specs[i].name);
        CU_ASSERT_FATAL(ckpt_read_float(gd.ck, dset, ref, specs[i].n, err) == 0);
        const float *g = encdec_grads(m) + specs[i].offset;
        // key biases have analytically zero gradients (rounding noise in the golden)
        int zero_grad = strstr(specs[i].name, "key.bias") || strstr(specs[i].name, "k_proj.bias");
        if (!zero_grad) CU_ASSERT(max_abs(ref, specs[i].n) > 1e-2);
        double scale = fmax(max_abs(ref, specs[i].n), 5e-3), worst = 0;
        for (size_t j = 0; j < specs[i].n; j++) worst = fmax(worst, fabs((double)g[j] - ref[j]));
        if (zero_grad) worst_zero = fmax(worst_zero, worst);
        if (!zero_grad && worst / scale > worst_rel) {
            worst_rel = worst / scale;
            worst_name = specs[i].name;
        }
        if (worst > 2e-4 * scale) {
            printf("  %s: max |diff| %.3g vs scale %.3g\n", specs[i].name, worst, scale);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    printf("  %d gradient tensors: worst max|diff| / max|grad| = %.2e (%s); analytically zero"
           " key-bias gradients: max |value| %.1e\n",
           encdec_n_specs(m), worst_rel, worst_name, worst_zero);
    free(ref);

    // teacher-forced logits at every position
    const int V = encdec_config(m)->enc.vocab_size;
    size_t nl = (size_t)GB * GTT * V;
    float *lg = malloc(nl * sizeof(float)), *lref = malloc(nl * sizeof(float));
    CU_ASSERT_FATAL(ckpt_read_float(gd.ck, "/golden/logits", lref, nl, err) == 0);
    encdec_logits(m, &b, lg);
    double w = 0;
    for (size_t i = 0; i < nl; i++) w = fmax(w, fabs((double)lg[i] - lref[i]));
    printf("  logits: max |diff| %.2e (max |logit| %.2f)\n", w, max_abs(lref, nl));
    CU_ASSERT(w < 1e-5 * max_abs(lref, nl));
    // src_mask NULL derives the same mask from PAD
    EncDecBatch b2 = b;
    b2.src_mask = NULL;
    float *lg2 = malloc(nl * sizeof(float));
    encdec_logits(m, &b2, lg2);
    CU_ASSERT(memcmp(lg, lg2, nl * sizeof(float)) == 0);
    free(lg);
    free(lg2);
    free(lref);
    free_golden(&gd);
}

static void test_golden(void) { golden_check(GOLDEN, 0); }

// The pointer-generator: loss, every gradient (the gate's too) and log P equal PyTorch;
// the golden batch has a repeated source token and targets found in the source.
static void test_golden_copy(void) { golden_check(GOLDEN_COPY, 1); }

// Central differences on the float path for a few parameter entries of the golden model.
static void finite_differences(int copy) {
    Golden gd;
    CU_ASSERT_FATAL(load_golden_file(&gd, copy ? GOLDEN_COPY : GOLDEN, copy) == 0);
    EncDec *m = gd.m;
    EncDecBatch b = {
        .B = GB, .Ts = GTS, .Tt = GTT, .src = gd.src, .src_mask = gd.mask, .tgt = gd.tgt};
    long nt;
    memset(encdec_grads(m), 0, encdec_n_params(m) * sizeof(float));
    encdec_step(m, &b, 0, 1, 0, &nt);
    struct {
        const char *name;
        size_t j;
    } probes[] = {
        {"albert.embeddings.word_embeddings.weight", 0},  // row of a target token, set below
        {"albert.embeddings.word_embeddings.weight", 0},  // row of a source token, set below
        {"albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight", 37},
        {"albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight", 101},
        {"decoder.embed_positions.weight", 2 * 16 + 5},
        {"decoder.layers.0.self_attn.k_proj.weight", 77},
        {"decoder.layers.1.encoder_attn.v_proj.weight", 300},
        {"decoder.layers.1.encoder_attn.k_proj.weight", 12},
        {"decoder.layers.0.fc2.weight", 55},
        {"lm_head.dense.weight", 9},
        {"lm_head.bias", 0},
        {"lm_head.bias", 0},  // with copy: the gate's weights on h, c and x, and its bias
        {"lm_head.bias", 0},
        {"lm_head.bias", 0},
        {"lm_head.bias", 0},
    };
    size_t n_probes = sizeof probes / sizeof probes[0] - 4;
    if (copy) {
        const int H = encdec_config(m)->enc.hidden_size;
        probes[11].name = probes[12].name = probes[13].name = "pointer.gate.weight";
        probes[11].j = 3;
        probes[12].j = (size_t)H + 5;
        probes[13].j = 2 * (size_t)H + 2;
        probes[14].name = "pointer.gate.bias";
        n_probes += 4;
    }
    const int E = encdec_config(m)->enc.embedding_size;
    probes[0].j = (size_t)gd.tgt[1] * E + 3;
    probes[1].j = (size_t)gd.src[GTS + 2] * E + 7;
    probes[10].j = (size_t)gd.tgt[0];
    const float h = 1e-2f;
    double worst = 0;
    for (size_t i = 0; i < n_probes; i++) {
        int s = spec_index(m, probes[i].name);
        CU_ASSERT_FATAL(s >= 0);
        size_t at = encdec_specs(m)[s].offset + probes[i].j;
        float *w = encdec_params(m) + at, w0 = *w;
        double g = encdec_grads(m)[at];
        *w = w0 + h;
        double lp = encdec_step(m, &b, 0, 0, 0, &nt);
        *w = w0 - h;
        double lm = encdec_step(m, &b, 0, 0, 0, &nt);
        *w = w0;
        double fd = (lp - lm) / (2.0 * ((double)(w0 + h) - (double)w0));
        double err = fabs(fd - g) / fmax(fabs(g), 0.05);
        worst = fmax(worst, err);
        if (err > 2e-2)
            printf("  fd %s[%zu]: analytic %.6f fd %.6f\n", probes[i].name, probes[i].j, g, fd);
        CU_ASSERT(err <= 2e-2);
    }
    printf("\n  finite differences (h = %.0e, float path%s): worst relative error %.2e\n",
           (double)h, copy ? ", copy" : "", worst);
    free_golden(&gd);
}

static void test_finite_differences(void) { finite_differences(0); }
static void test_finite_differences_copy(void) { finite_differences(1); }

// ---------------------------------------------------------------------------------------
// the new nn ops against naive double loops

// naive attention (double) with the same dropout draws as nn.c
static void attn_ref(double *out, double *att, const double *q, const double *k, const double *v,
                     const int32_t *km, int B, int Tq, int Tk, int C, int NH, int causal, float p,
                     uint64_t seed, uint64_t off) {
    int D = C / NH;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < Tq; i++) {
                double *a = att + (((size_t)b * NH + h) * Tq + i) * Tk, mx = -INFINITY, s = 0;
                for (int j = 0; j < Tk; j++) {
                    int ok = (!km || km[b * Tk + j]) && (!causal || j <= i + Tk - Tq);
                    double d = 0;
                    for (int e = 0; e < D; e++)
                        d += q[((size_t)b * Tq + i) * C + h * D + e] *
                             k[((size_t)b * Tk + j) * C + h * D + e];
                    a[j] = ok ? d / sqrt((double)D) : -INFINITY;
                    mx = fmax(mx, a[j]);
                }
                for (int j = 0; j < Tk; j++) s += a[j] == -INFINITY ? 0 : exp(a[j] - mx);
                for (int j = 0; j < Tk; j++) a[j] = a[j] == -INFINITY ? 0 : exp(a[j] - mx) / s;
                for (int e = 0; e < D; e++) {
                    double o = 0;
                    for (int j = 0; j < Tk; j++) {
                        size_t idx = (size_t)(a - att) + j;
                        double keep =
                            p > 0 && cx_rng_uniform(seed, off + idx) < p ? 0 : 1 / (1 - (double)p);
                        o += a[j] * keep * v[((size_t)b * Tk + j) * C + h * D + e];
                    }
                    out[((size_t)b * Tq + i) * C + h * D + e] = o;
                }
            }
}

static void attn_ref_backward(double *dq, double *dk, double *dv, const double *dout,
                              const double *q, const double *k, const double *v, const double *att,
                              int B, int Tq, int Tk, int C, int NH, float p, uint64_t seed,
                              uint64_t off) {
    int D = C / NH;
    double sc = 1 / sqrt((double)D);
    double *dP = malloc((size_t)Tk * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < Tq; i++) {
                size_t row = (((size_t)b * NH + h) * Tq + i) * Tk;
                const double *P = att + row, *go = dout + ((size_t)b * Tq + i) * C + h * D;
                double dot = 0;
                for (int j = 0; j < Tk; j++) {
                    double keep =
                        p > 0 && cx_rng_uniform(seed, off + row + j) < p ? 0 : 1 / (1 - (double)p);
                    const double *vj = v + ((size_t)b * Tk + j) * C + h * D;
                    double d = 0;
                    for (int e = 0; e < D; e++) {
                        d += go[e] * vj[e];
                        dv[((size_t)b * Tk + j) * C + h * D + e] += P[j] * keep * go[e];
                    }
                    dP[j] = d * keep;
                    dot += P[j] * dP[j];
                }
                for (int j = 0; j < Tk; j++) {
                    double ds = P[j] * (dP[j] - dot) * sc;
                    for (int e = 0; e < D; e++) {
                        dq[((size_t)b * Tq + i) * C + h * D + e] +=
                            ds * k[((size_t)b * Tk + j) * C + h * D + e];
                        dk[((size_t)b * Tk + j) * C + h * D + e] +=
                            ds * q[((size_t)b * Tq + i) * C + h * D + e];
                    }
                }
            }
    free(dP);
}

static double cmp_fd(const float *a, const double *b, size_t n) {
    double w = 0, s = 1e-3;
    for (size_t i = 0; i < n; i++) {
        w = fmax(w, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return w / s;
}

static double check_attention_ex(int B, int Tq, int Tk, int C, int NH, int causal, int use_mask,
                                 float p) {
    size_t nq = (size_t)B * Tq * C, nk = (size_t)B * Tk * C, na = (size_t)B * NH * Tq * Tk;
    double *q = calloc(nq, 8), *k = calloc(nk, 8), *v = calloc(nk, 8), *out = calloc(nq, 8),
           *att = calloc(na, 8), *dout = calloc(nq, 8), *dq = calloc(nq, 8), *dk = calloc(nk, 8),
           *dv = calloc(nk, 8);
    float *qf = calloc(nq, 4), *kf = calloc(nk, 4), *vf = calloc(nk, 4), *outf = calloc(nq, 4),
          *attf = calloc(na, 4), *doutf = calloc(nq, 4), *dqf = calloc(nq, 4), *dkf = calloc(nk, 4),
          *dvf = calloc(nk, 4), *scr = calloc((size_t)Tq * Tk, 4);
    int32_t *km = calloc((size_t)B * Tk, 4);
    for (size_t i = 0; i < nq; i++) {
        qf[i] = cx_rng_normal(11, i);
        doutf[i] = cx_rng_normal(12, i);
        q[i] = qf[i];
        dout[i] = doutf[i];
    }
    for (size_t i = 0; i < nk; i++) {
        kf[i] = cx_rng_normal(13, i);
        vf[i] = cx_rng_normal(14, i);
        k[i] = kf[i];
        v[i] = vf[i];
    }
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Tk; j++) km[b * Tk + j] = j < Tk - b;  // row b: b padded keys
    const int32_t *mk = use_mask ? km : NULL;
    attn_ref(out, att, q, k, v, mk, B, Tq, Tk, C, NH, causal, p, 5, 1000);
    nn_attention_ex_forward(outf, attf, qf, kf, vf, mk, B, Tq, Tk, C, NH, causal, p, 5, 1000, scr);
    attn_ref_backward(dq, dk, dv, dout, q, k, v, att, B, Tq, Tk, C, NH, p, 5, 1000);
    nn_attention_ex_backward(dqf, dkf, dvf, doutf, qf, kf, vf, attf, B, Tq, Tk, C, NH, p, 5, 1000,
                             scr);
    double e = fmax(fmax(cmp_fd(outf, out, nq), cmp_fd(attf, att, na)),
                    fmax(cmp_fd(dqf, dq, nq), fmax(cmp_fd(dkf, dk, nk), cmp_fd(dvf, dv, nk))));
    // causally hidden keys have probability exactly 0
    if (causal)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < Tq; i++)
                    for (int j = i + Tk - Tq + 1; j < Tk; j++)
                        if (j >= 0)
                            CU_ASSERT(attf[(((size_t)b * NH + h) * Tq + i) * Tk + j] == 0.0f);
    free(q), free(k), free(v), free(out), free(att), free(dout), free(dq), free(dk), free(dv);
    free(qf), free(kf), free(vf), free(outf), free(attf), free(doutf), free(dqf), free(dkf),
        free(dvf);
    free(scr), free(km);
    return e;
}

static void test_ops(void) {
    double w = 0;
    w = fmax(w, check_attention_ex(2, 5, 5, 8, 2, 1, 0, 0.0f));   // causal self-attention
    w = fmax(w, check_attention_ex(2, 3, 7, 12, 3, 0, 1, 0.0f));  // cross-attention, key mask
    w = fmax(w, check_attention_ex(2, 3, 7, 12, 3, 0, 1, 0.3f));  // ... with dropout
    w = fmax(w, check_attention_ex(1, 1, 6, 8, 2, 1, 0, 0.0f));   // one query over a cache
    w = fmax(w, check_attention_ex(2, 4, 3, 8, 2, 1, 1, 0.25f));  // Tq > Tk: first row sees nothing
    w = fmax(w, check_attention_ex(3, 17, 17, 32, 4, 1, 1, 0.1f));  // vector blocks + tails
    printf("\n  attention_ex vs double: worst relative error %.2e\n", w);
    CU_ASSERT(w < 1e-5);

    // label-smoothed cross-entropy: forward and backward against the definition
    enum { N = 5, V = 37 };
    float lg[N * V], pr[N * V], d[N * V];
    int32_t tg[N] = {3, -1, 0, 36, 17};
    for (int i = 0; i < N * V; i++) lg[i] = 3.0f * cx_rng_normal(21, (uint64_t)i);
    for (int e = 0; e < 2; e++) {
        float eps = e ? 0.15f : 0.0f;
        double loss = nn_softmax_xent_smooth_forward(pr, lg, tg, N, V, eps), ref = 0, dw = 0;
        memset(d, 0, sizeof d);
        nn_softmax_xent_smooth_backward(d, pr, tg, N, V, eps, 0.5f);
        for (int n = 0; n < N; n++) {
            const float *x = lg + n * V;
            double mx = -INFINITY, s = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, x[v]);
            for (int v = 0; v < V; v++) s += exp(x[v] - mx);
            double lse = mx + log(s), mean_nll = 0;
            for (int v = 0; v < V; v++) mean_nll += (lse - x[v]) / V;
            for (int v = 0; v < V; v++) {
                double ref_d = 0;
                if (tg[n] >= 0)
                    ref_d = 0.5 *
                            (exp(x[v] - lse) - (v == tg[n]) * (1 - (double)eps) - eps / (double)V);
                dw = fmax(dw, fabs(d[n * V + v] - ref_d));
            }
            if (tg[n] >= 0) ref += (1 - (double)eps) * (lse - x[tg[n]]) + eps * mean_nll;
        }
        CU_ASSERT_DOUBLE_EQUAL(loss, ref, 1e-5 * fabs(ref));
        CU_ASSERT(dw < 1e-6);
        if (!e) {
            float pr2[N * V];
            CU_ASSERT_DOUBLE_EQUAL(nn_softmax_xent_forward(pr2, lg, tg, N, V), loss,
                                   1e-9 * fabs(loss));
        }
    }
}

// ---------------------------------------------------------------------------------------
// dropout keyed by sample: split invariance

static EncDecConfig small_config(int V, float dropout, float init_std) {
    EncDecConfig c = {.enc = {.vocab_size = V,
                              .embedding_size = 8,
                              .hidden_size = 16,
                              .num_heads = 2,
                              .intermediate_size = 24,
                              .num_layers = 2,
                              .max_position = 12,
                              .dropout = dropout,
                              .ln_eps = 1e-12f,
                              .init_std = init_std},
                      .dec_layers = 2,
                      .dec_heads = 4,
                      .dec_intermediate = 20,
                      .dec_max_position = 8,
                      .dec_dropout = dropout,
                      .label_smoothing = 0.1f};
    return c;
}

static int32_t rand_token(uint64_t seed, uint64_t i, int V) {
    return 5 + (int32_t)(cx_rng_u64(seed, i) % (uint64_t)(V - 5));
}

// n pairs: sources [CLS] ids [SEP] PAD.. (3 to Ts tokens), targets ids EOS PAD.. (1 to Tt)
static void fill_pairs(int32_t *src, int32_t *tgt, int n, int Ts, int Tt, int V, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        int ls = 3 + (int)(cx_rng_u64(seed, (uint64_t)i) % (uint64_t)(Ts - 2));
        int lt = 1 + (int)(cx_rng_u64(seed + 1, (uint64_t)i) % (uint64_t)Tt);
        for (int t = 0; t < Ts; t++) {
            int32_t w = ED_PAD;
            if (t == 0) w = ED_BOS;
            else if (t == ls - 1) w = ED_EOS;
            else if (t < ls) w = rand_token(seed + 2, (uint64_t)(i * Ts + t), V);
            src[i * Ts + t] = w;
        }
        for (int t = 0; t < Tt; t++) {
            int32_t w = ED_PAD;
            if (t == lt - 1) w = ED_EOS;
            else if (t < lt) w = rand_token(seed + 3, (uint64_t)(i * Tt + t), V);
            tgt[i * Tt + t] = w;
        }
    }
}

static void test_split_invariance(void) {
    EncDecConfig c = small_config(40, 0.2f, 0.1f);
    enum { B = 4, TS = 10, TT = 6 };
    EncDec *m = encdec_create(&c, B, TS, TT, 3);
    int32_t src[B * TS], tgt[B * TT];
    fill_pairs(src, tgt, B, TS, TT, 40, 9);
    size_t n = encdec_n_params(m);
    float *g1 = malloc(n * sizeof(float));
    long k1, k2, k3;
    memset(encdec_grads(m), 0, n * sizeof(float));
    EncDecBatch whole = {.B = B, .Ts = TS, .Tt = TT, .src = src, .tgt = tgt, .sample_index0 = 50};
    double l1 = encdec_step(m, &whole, 1, 1, 77, &k1);
    memcpy(g1, encdec_grads(m), n * sizeof(float));
    memset(encdec_grads(m), 0, n * sizeof(float));
    EncDecBatch h1 = {.B = 1, .Ts = TS, .Tt = TT, .src = src, .tgt = tgt, .sample_index0 = 50};
    EncDecBatch h2 = {
        .B = 3, .Ts = TS, .Tt = TT, .src = src + TS, .tgt = tgt + TT, .sample_index0 = 51};
    double l2 = encdec_step(m, &h1, 1, 1, 77, &k2) + encdec_step(m, &h2, 1, 1, 77, &k3);
    CU_ASSERT_EQUAL(k1, k2 + k3);
    CU_ASSERT_DOUBLE_EQUAL(l1, l2, 1e-5 * fabs(l1));
    double worst = 0, scale = max_abs(g1, n);
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)g1[i] - encdec_grads(m)[i]));
    CU_ASSERT(worst <= 1e-5 * scale);
    // dropout is really on: another seed changes the loss; no dropout differs too
    double l3 = encdec_step(m, &whole, 1, 0, 78, &k1), l4 = encdec_step(m, &whole, 0, 0, 77, &k1);
    CU_ASSERT(fabs(l3 - l1) > 1e-6 && fabs(l4 - l1) > 1e-6);
    // a gradient arena laid out as specs say: the encoder prefix is ALBERT's
    const TensorSpec *s = encdec_specs(m);
    CU_ASSERT_STRING_EQUAL(s[0].name, "albert.embeddings.word_embeddings.weight");
    CU_ASSERT_STRING_EQUAL(s[AP_N_ENCODER].name, "decoder.embed_positions.weight");
    CU_ASSERT_EQUAL(s[AP_N_ENCODER].offset, albert_n_params(encdec_encoder(m)));
    CU_ASSERT_STRING_EQUAL(s[encdec_n_specs(m) - 1].name, "lm_head.bias");
    for (int i = 0; i < AP_N_ENCODER; i++) {
        CU_ASSERT_STRING_EQUAL(s[i].name, albert_specs(encdec_encoder(m))[i].name);
        CU_ASSERT_EQUAL(s[i].offset, albert_specs(encdec_encoder(m))[i].offset);
    }
    free(g1);
    encdec_free(m);
}

// ---------------------------------------------------------------------------------------
// incremental decoding == teacher forcing

static void incremental_logits(int copy) {
    Golden gd;
    CU_ASSERT_FATAL(load_golden_file(&gd, copy ? GOLDEN_COPY : GOLDEN, copy) == 0);
    EncDec *m = gd.m;
    const int V = encdec_config(m)->enc.vocab_size;
    // three continuations of one source: seq 2 shares seq 0's first two tokens (decoder
    // inputs 0..2), so at step 3 its hypothesis is forked from seq 0's cache
    enum { NS = 3, T = GTT };
    int32_t seqs[NS * T], src[NS * GTS];
    for (int s = 0; s < NS; s++) {
        memcpy(src + s * GTS, gd.src + GTS, GTS * sizeof(int32_t));  // row 1: padded source
        for (int t = 0; t < T; t++)
            seqs[s * T + t] = 5 + (int)(cx_rng_u64(31 + s, (uint64_t)t) % (uint64_t)(V - 5));
    }
    seqs[2 * T + 0] = seqs[0];
    seqs[2 * T + 1] = seqs[1];
    float *full = malloc((size_t)NS * T * V * sizeof(float)),
          *inc = malloc((size_t)NS * V * sizeof(float));
    EncDecBatch b = {.B = NS, .Ts = GTS, .Tt = T, .src = src, .tgt = seqs};
    encdec_logits(m, &b, full);
    EncDecGen *g = encdec_gen_create(m, 4, T);
    encdec_gen_start(g, gd.src + GTS, NULL, GTS);
    // slot contents per step (sequence ids); steps 0..2 carry seqs 0 and 1 (swapping
    // slots), step 3 adds seq 2 forked from seq 0
    int slots[T][NS] = {{0}, {1, 0}, {0, 1}, {1, 2, 0}, {2, 0, 1}, {0, 1, 2}, {1, 2, 0}};
    int nslots[T] = {1, 2, 2, 3, 3, 3, 3};
    int prev[NS] = {0};
    double worst = 0, scale = 0;
    for (int t = 0; t < T; t++) {
        int32_t parents[NS], toks[NS];
        for (int k = 0; k < nslots[t]; k++) {
            int s = slots[t][k];
            toks[k] = t == 0 ? ED_BOS : seqs[s * T + t - 1];
            parents[k] = 0;
            for (int kk = 0; t > 0 && kk < nslots[t - 1]; kk++) {
                int sp = prev[kk];
                // a parent whose decoder inputs 0..t-1 equal this sequence's
                if (memcmp(seqs + sp * T, seqs + s * T,
                           (size_t)(t > 1 ? t - 1 : 0) * sizeof(int32_t)) == 0) {
                    parents[k] = kk;
                    break;
                }
            }
        }
        if (t == 3) CU_ASSERT(parents[1] == parents[2]);  // seq 2 forks seq 0's cache
        encdec_gen_step(g, nslots[t], parents, toks, t, inc);
        for (int k = 0; k < nslots[t]; k++) {
            const float *a = inc + (size_t)k * V, *r = full + ((size_t)slots[t][k] * T + t) * V;
            for (int v = 0; v < V; v++) {
                worst = fmax(worst, fabs((double)a[v] - r[v]));
                scale = fmax(scale, fabs((double)r[v]));
            }
        }
        for (int k = 0; k < nslots[t]; k++) prev[k] = slots[t][k];
    }
    printf("\n  cached decoding vs teacher forcing%s: max |diff| %.2e (max |logit| %.2f)\n",
           copy ? " (copy: log P)" : "", worst, scale);
    CU_ASSERT(worst <= 1e-5 * scale);
    encdec_gen_free(g);
    free(full);
    free(inc);
    free_golden(&gd);
}

static void test_incremental_logits(void) { incremental_logits(0); }
static void test_incremental_logits_copy(void) { incremental_logits(1); }

// ---------------------------------------------------------------------------------------
// greedy and beam search against exhaustive enumeration on a tiny vocabulary

enum { XV = 8, XTS = 6, XMAXLEN = 6 };
static const int32_t BANNED[] = {ED_PAD, ED_UNK, ED_BOS, ED_MASK};

typedef struct {
    EncDec *m;
    const int32_t *src;
    int Ts;              // src's tokens (0: XTS)
    EncDec *m2;          // an ensemble's second model (NULL: one model): scores use the mean
    const int32_t *src2; // of the two distributions; m2 reads src2 (Ts2 tokens)
    int Ts2;
    double best, second;
    int32_t best_seq[XMAXLEN];
    int best_len, n_seqs;
    int toy_fsm;    // 1: only the sequences toy_fsm_valid accepts
    float *logits;  // (XMAXLEN, XV)
} Exhaust;

// A toy token automaton, as a rule: token TOY_OPEN opens a unit that TOY_CLOSE must close
// next; TOY_ALONE stands alone; EOS and the end (max_len) only between units (as a UTF-8
// lead byte, its continuation, and ASCII). toy_fsm_table is the same rule as beam.h's table
// of 2 states, where EOS within a unit is left to beam.h's "end only in state 0".
enum { TOY_OPEN = 7, TOY_CLOSE = 6, TOY_ALONE = 5 };
static int toy_fsm_valid(const int32_t *s, int n) {
    int open = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] == TOY_CLOSE ? !open : open) return 0;  // CLOSE only closes
        open = s[i] == TOY_OPEN;
    }
    return !open;
}

static void toy_fsm_table(uint8_t *fsm) {
    memset(fsm, BEAM_FSM_REJECT, 2 * XV);
    fsm[0 * XV + TOY_OPEN] = 1;
    fsm[1 * XV + TOY_CLOSE] = 0;
    fsm[0 * XV + TOY_ALONE] = 0;
    fsm[0 * XV + ED_EOS] = 0;
    fsm[1 * XV + ED_EOS] = 1;  // allowed by the table, but not accepting: beam.h's rule ends it
}

static int has_repeated_trigram(const int32_t *s, int n) {
    for (int i = 0; i + 2 < n; i++)
        for (int j = i + 1; j + 2 < n; j++)
            if (s[i] == s[j] && s[i + 1] == s[j + 1] && s[i + 2] == s[j + 2]) return 1;
    return 0;
}

// the score of one complete hypothesis by teacher forcing (no cache), as beam.h defines scores
static double teacher_score(Exhaust *x, const BeamConfig *c, const int32_t *seq, int len) {
    double lp[2][XMAXLEN];  // log-probability of each token under each model
    for (int i = 0; i < (x->m2 ? 2 : 1); i++) {
        EncDecBatch b = {.B = 1, .Ts = i ? x->Ts2 : x->Ts ? x->Ts : XTS, .Tt = len, .src = i ? x->src2 : x->src,
                         .tgt = seq};
        encdec_logits(i ? x->m2 : x->m, &b, x->logits);
        for (int t = 0; t < len; t++) {
            const float *r = x->logits + (size_t)t * XV;
            double mx = -INFINITY, s = 0;
            for (int v = 0; v < XV; v++) mx = fmax(mx, r[v]);
            for (int v = 0; v < XV; v++) s += exp((double)r[v] - mx);
            lp[i][t] = (double)r[seq[t]] - (mx + log(s));
        }
    }
    double sum = 0;
    for (int t = 0; t < len; t++)
        sum += x->m2 ? log(0.5 * (exp(lp[0][t]) + exp(lp[1][t]))) : lp[0][t];
    return sum / beam_length_penalty(len, c->alpha);
}

// scores one complete hypothesis into x's best and runner-up
static void exhaust_score(Exhaust *x, const BeamConfig *c, const int32_t *seq, int len) {
    if (c->block_trigrams && has_repeated_trigram(seq, len)) return;
    if (x->toy_fsm && !toy_fsm_valid(seq, len)) return;
    double sc = teacher_score(x, c, seq, len);
    x->n_seqs++;
    if (sc > x->best) {
        x->second = x->best;
        x->best = sc;
        memcpy(x->best_seq, seq, (size_t)len * sizeof(int32_t));
        x->best_len = len;
    } else if (sc > x->second) {
        x->second = sc;
    }
}

// every sequence of allowed tokens: EOS-terminated ones of length > min_len, and the
// max_len-long ones without EOS
static void exhaust_rec(Exhaust *x, const BeamConfig *c, int32_t *seq, int t) {
    if (t >= c->min_len) {
        seq[t] = ED_EOS;
        exhaust_score(x, c, seq, t + 1);
    }
    for (int32_t w = 5; w < XV; w++) {
        seq[t] = w;
        if (t + 1 == c->max_len)
            exhaust_score(x, c, seq, t + 1);
        else
            exhaust_rec(x, c, seq, t + 1);
    }
}

// Enumerates every allowed sequence afresh: x->best / best_seq / second / n_seqs
static void exhaust_all(Exhaust *x, const BeamConfig *c) {
    int32_t seq[XMAXLEN];
    x->best = x->second = -INFINITY;
    x->n_seqs = 0;
    exhaust_rec(x, c, seq, 0);
}

// a BeamConfig mask that bans a set of tokens, counting the calls for a final token
typedef struct {
    int ban[XV];
    int n_last;
} MaskBan;

static void mask_ban(void *ctx, int tid, const int32_t *hist, int t, int last, int32_t eos,
                     double *lp) {
    MaskBan *mb = ctx;
    (void)tid, (void)hist, (void)t, (void)eos;
    mb->n_last += last;
    for (int v = 0; v < XV; v++)
        if (mb->ban[v]) lp[v] = -INFINITY;
}

// copy: the pointer-generator's mixture (log P as the step's logits); the source repeats
// token 5, so its copy weights add up
static void beam_exhaustive(int copy) {
    EncDecConfig cfg = small_config(XV, 0.0f, 0.5f);  // large init: peaked, non-uniform outputs
    cfg.copy = copy;
    EncDec *m = encdec_create(&cfg, 1, XTS, XMAXLEN, 2024);
    const int32_t src[XTS] = {ED_BOS, 5, 7, 6, 5, ED_EOS};
    Exhaust x = {.m = m, .src = src, .logits = malloc((size_t)XMAXLEN * XV * sizeof(float))};
    EncDecGen *g = encdec_gen_create(m, 1100, XMAXLEN);
    struct {
        int max_len, min_len, block, fsm;
        float alpha;
    } cases[] = {{4, 0, 0, 0, 0.7f}, {4, 1, 0, 0, 0.7f}, {4, 2, 0, 0, 0.0f}, {5, 1, 0, 0, 2.0f},
                 {6, 2, 1, 0, 1.0f}, {5, 3, 1, 0, 0.0f}, {4, 0, 0, 1, 0.7f}, {5, 1, 0, 1, 2.0f},
                 {6, 2, 1, 1, 1.0f}, {5, 2, 0, 1, 0.0f}};
    char err[CX_ERRLEN];
    uint8_t fsm[2 * XV];
    toy_fsm_table(fsm);
    int fsm_changed = 0;  // cases where the unconstrained optimum breaks the automaton
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        BeamConfig c = {.beam_size = 1,
                        .min_len = cases[ci].min_len,
                        .max_len = cases[ci].max_len,
                        .alpha = cases[ci].alpha,
                        .block_trigrams = cases[ci].block,
                        .bos = ED_BOS,
                        .eos = ED_EOS,
                        .banned = BANNED,
                        .n_banned = 4};
        if (cases[ci].fsm) {
            x.toy_fsm = 0;
            exhaust_all(&x, &c);
            fsm_changed += !toy_fsm_valid(x.best_seq, x.best_len);
            c.fsm = fsm;
            c.fsm_states = 2;
        }
        x.toy_fsm = cases[ci].fsm;
        exhaust_all(&x, &c);
        CU_ASSERT_FATAL(x.best_len > 0);
        // a clear winner, so that float rounding cannot swap the top two
        CU_ASSERT(x.best - x.second > 1e-4);
        // beam wide enough for every hypothesis = exhaustive search
        c.beam_size = x.n_seqs + 4;
        int32_t out[XMAXLEN], out1[XMAXLEN], outg[XMAXLEN];
        int len = 0, len1 = 0, leng = 0;
        double sc = 0, sc1 = 0, scg = 0;
        CU_ASSERT_FATAL(encdec_generate(g, &c, src, NULL, XTS, out, &len, &sc, err) == 0);
        CU_ASSERT_EQUAL(len, x.best_len);
        CU_ASSERT(len == x.best_len && memcmp(out, x.best_seq, (size_t)len * sizeof(int32_t)) == 0);
        CU_ASSERT_DOUBLE_EQUAL(sc, x.best, 1e-5 * fabs(x.best));
        // the constraints hold in the result
        for (int t = 0; t < len; t++)
            CU_ASSERT(out[t] != ED_EOS || (t == len - 1 && t >= c.min_len));
        if (c.block_trigrams) CU_ASSERT(!has_repeated_trigram(out, len));
        // greedy (beam_size 1 path) == beam_search with K = 1
        c.beam_size = 1;
        CU_ASSERT_FATAL(encdec_generate(g, &c, src, NULL, XTS, outg, &leng, &scg, err) == 0);
        encdec_gen_start(g, src, NULL, XTS);
        BeamWork *w = beam_work_create(1, XMAXLEN, XV);
        CU_ASSERT_FATAL(beam_search(w, &c, encdec_gen_step, g, out1, &len1, &sc1) == 0);
        beam_work_free(w);
        CU_ASSERT(leng == len1 && memcmp(outg, out1, (size_t)leng * sizeof(int32_t)) == 0);
        CU_ASSERT_EQUAL(scg, sc1);
        for (int t = 0; t < leng; t++)
            CU_ASSERT(outg[t] != ED_EOS || (t == leng - 1 && t >= c.min_len));
        if (c.block_trigrams) CU_ASSERT(!has_repeated_trigram(outg, leng));
        if (c.fsm) CU_ASSERT(toy_fsm_valid(out, len) && toy_fsm_valid(outg, leng));
        printf(
            "\n  max_len %d min_len %d trigram %d automaton %d alpha %.1f: %d hypotheses, best %.5f "
            "(beam %.5f, len %d), greedy %.5f (len %d)",
            c.max_len, c.min_len, c.block_trigrams, cases[ci].fsm, (double)c.alpha, x.n_seqs, x.best,
            sc, len, scg, leng);
    }
    // the automaton changed the answer somewhere: without it the optimum breaks the rule
    CU_ASSERT(fsm_changed >= 1);
    printf("\n  automaton: %d of 4 unconstrained optima break it\n", fsm_changed);
    // without trigram blocking, greedy repeats on this model; with it, it must not
    if (!copy) {
        BeamConfig c = {.beam_size = 1,
                        .min_len = 5,
                        .max_len = 6,
                        .alpha = 0.0f,
                        .bos = ED_BOS,
                        .eos = ED_EOS,
                        .banned = BANNED,
                        .n_banned = 4};
        int32_t o[XMAXLEN];
        int n;
        double s;
        CU_ASSERT_FATAL(encdec_generate(g, &c, src, NULL, XTS, o, &n, &s, err) == 0);
        int rep = has_repeated_trigram(o, n);
        c.block_trigrams = 1;
        CU_ASSERT_FATAL(encdec_generate(g, &c, src, NULL, XTS, o, &n, &s, err) == 0);
        CU_ASSERT(!has_repeated_trigram(o, n));
        CU_ASSERT(n == 6);  // min_len 5: at least 5 tokens before EOS
        printf("  greedy, 6 tokens: repeated trigram without blocking: %s\n", rep ? "yes" : "no");
    }
    // a caller's mask: banning the tokens of the unconstrained answer changes it, and the
    // new one holds none of them; the mask sees every step's last flag once per hypothesis
    {
        BeamConfig c = {.beam_size = 4, .min_len = 4, .max_len = 5, .alpha = 1.0f, .bos = ED_BOS,
                        .eos = ED_EOS, .banned = BANNED, .n_banned = 4};
        int32_t o[XMAXLEN], o2[XMAXLEN];
        int n, n2;
        double s;
        CU_ASSERT_FATAL(encdec_generate(g, &c, src, NULL, XTS, o, &n, &s, err) == 0);
        MaskBan mb = {.n_last = 0};
        for (int i = 0; i < n; i++)
            if (o[i] != ED_EOS) mb.ban[o[i]] = 1;
        c.mask = mask_ban;
        c.mask_ctx = &mb;
        CU_ASSERT_FATAL(encdec_generate(g, &c, src, NULL, XTS, o2, &n2, &s, err) == 0);
        CU_ASSERT(n2 != n || memcmp(o, o2, (size_t)n * sizeof(int32_t)) != 0);
        for (int i = 0; i < n2; i++) CU_ASSERT(o2[i] == ED_EOS || !mb.ban[o2[i]]);
        CU_ASSERT(mb.n_last >= 1);  // min_len 4: every hypothesis reaches the final step
    }
    // configuration errors are reported, not fatal
    BeamConfig bad = {.beam_size = 0, .max_len = 4, .bos = ED_BOS, .eos = ED_EOS};
    int32_t o[XMAXLEN];
    int n;
    double s;
    CU_ASSERT(encdec_generate(g, &bad, src, NULL, XTS, o, &n, &s, err) == -1 &&
              strstr(err, "beam_size"));
    bad.beam_size = 2;
    bad.max_len = XMAXLEN + 1;
    CU_ASSERT(encdec_generate(g, &bad, src, NULL, XTS, o, &n, &s, err) == -1 &&
              strstr(err, "max_len"));
    bad.max_len = 4;
    bad.min_len = 4;
    CU_ASSERT(encdec_generate(g, &bad, src, NULL, XTS, o, &n, &s, err) == -1 &&
              strstr(err, "min_len"));
    encdec_gen_free(g);
    free(x.logits);
    encdec_free(m);
}

static void test_beam_exhaustive(void) { beam_exhaustive(0); }
static void test_beam_exhaustive_copy(void) { beam_exhaustive(1); }

// The ensemble tests' fixture: model 0 with the copy mixture, model 1 without, each reading
// its own source (srcs[0], XTS tokens; srcs[1], XTS - 1), their generators for K hypotheses,
// the ensemble of the two (e2) and of model 0 alone (e1).
typedef struct {
    EncDec *m[2];
    EncDecGen *g[2];
    EncDecEnsemble *e1, *e2;
    const int32_t *srcs[2];
    int Ts[2];
} EnsFixture;
static const int32_t ENS_SRC0[XTS] = {ED_BOS, 5, 7, 6, 5, ED_EOS};
static const int32_t ENS_SRC1[XTS - 1] = {ED_BOS, 6, 6, 7, ED_EOS};

static EnsFixture ens_fixture(int K) {
    EnsFixture f = {.srcs = {ENS_SRC0, ENS_SRC1}, .Ts = {XTS, XTS - 1}};
    for (int i = 0; i < 2; i++) {
        EncDecConfig c = small_config(XV, 0.0f, 0.5f);
        c.copy = i == 0;
        f.m[i] = encdec_create(&c, 1, XTS, XMAXLEN, i == 0 ? 2024 : 77);
        f.g[i] = encdec_gen_create(f.m[i], K, XMAXLEN);
    }
    f.e2 = encdec_ensemble_create(f.g, 2, K, XMAXLEN);
    f.e1 = encdec_ensemble_create(f.g, 1, K, XMAXLEN);
    return f;
}

static void ens_fixture_free(EnsFixture *f) {
    encdec_ensemble_free(f->e1);
    encdec_ensemble_free(f->e2);
    for (int i = 0; i < 2; i++) {
        encdec_gen_free(f->g[i]);
        encdec_free(f->m[i]);
    }
}

// Ensembles: beam search over the mean of two models' distributions (one with the copy
// mixture, one without; each with its own source) equals exhaustive search scored by teacher
// forcing each model; an ensemble of one model decodes exactly as the model alone.
static void test_ensemble(void) {
    EnsFixture f = ens_fixture(1100);
    EncDecGen *g0 = f.g[0], *g1 = f.g[1];
    EncDecEnsemble *e1 = f.e1, *e2 = f.e2;
    const int32_t *s0 = ENS_SRC0, *s1 = ENS_SRC1, *const *srcs = f.srcs;
    const int *Ts = f.Ts;
    Exhaust x = {.m = f.m[0], .src = s0, .m2 = f.m[1], .src2 = s1, .Ts2 = XTS - 1,
                 .logits = malloc((size_t)XMAXLEN * XV * sizeof(float))};
    struct {
        int max_len, min_len, block;
        float alpha;
    } cases[] = {{4, 0, 0, 0.7f}, {5, 1, 0, 2.0f}, {6, 2, 1, 1.0f}, {5, 3, 1, 0.0f}};
    char err[CX_ERRLEN];
    int disagree = 0;  // cases where the two models' own answers differ
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        BeamConfig c = {.beam_size = 1, .min_len = cases[ci].min_len, .max_len = cases[ci].max_len,
                        .alpha = cases[ci].alpha, .block_trigrams = cases[ci].block,
                        .bos = ED_BOS, .eos = ED_EOS, .banned = BANNED, .n_banned = 4};
        int32_t out[XMAXLEN], o0[XMAXLEN], o1[XMAXLEN];
        int len = 0, l0 = 0, l1 = 0;
        double sc = 0, sc0 = 0, sc1 = 0;
        exhaust_all(&x, &c);
        CU_ASSERT_FATAL(x.best_len > 0);
        CU_ASSERT(x.best - x.second > 1e-4);
        c.beam_size = x.n_seqs + 4;
        CU_ASSERT_FATAL(encdec_ensemble_generate(e2, &c, srcs, Ts, out, &len, &sc, err) == 0);
        CU_ASSERT(len == x.best_len && memcmp(out, x.best_seq, (size_t)len * sizeof(int32_t)) == 0);
        CU_ASSERT_DOUBLE_EQUAL(sc, x.best, 1e-5 * fabs(x.best));
        // one model: exactly encdec_generate (beam 4 here, and greedy)
        for (int k = 4; k >= 1; k -= 3) {
            c.beam_size = k;
            CU_ASSERT_FATAL(encdec_ensemble_generate(e1, &c, srcs, Ts, o0, &l0, &sc0, err) == 0);
            CU_ASSERT_FATAL(encdec_generate(g0, &c, s0, NULL, XTS, o1, &l1, &sc1, err) == 0);
            CU_ASSERT(l0 == l1 && memcmp(o0, o1, (size_t)l0 * sizeof(int32_t)) == 0);
            CU_ASSERT_EQUAL(sc0, sc1);
        }
        c.beam_size = x.n_seqs + 4;
        CU_ASSERT_FATAL(encdec_generate(g0, &c, s0, NULL, XTS, o0, &l0, &sc0, err) == 0);
        CU_ASSERT_FATAL(encdec_generate(g1, &c, s1, NULL, XTS - 1, o1, &l1, &sc1, err) == 0);
        disagree += l0 != l1 || memcmp(o0, o1, (size_t)l0 * sizeof(int32_t)) != 0;
        printf("\n  max_len %d min_len %d trigram %d alpha %.1f: %d hypotheses, ensemble best %.5f "
               "(len %d), beam %.5f",
               c.max_len, c.min_len, c.block_trigrams, (double)c.alpha, x.n_seqs, x.best,
               x.best_len, sc);
    }
    // the members disagree somewhere, so the ensemble has something to decide
    CU_ASSERT(disagree >= 1);
    printf("\n  the two models' own answers differ in %d of 4 cases\n", disagree);
    // a source longer than a member takes is an error, not a crash
    const int bad_Ts[2] = {XTS, XTS + 1};
    BeamConfig c = {.beam_size = 2, .max_len = 4, .bos = ED_BOS, .eos = ED_EOS,
                    .banned = BANNED, .n_banned = 4};
    int32_t o[XMAXLEN];
    int n;
    double s;
    CU_ASSERT(encdec_ensemble_generate(e2, &c, srcs, bad_Ts, o, &n, &s, err) == -1 &&
              strstr(err, "model 2"));
    free(x.logits);
    ens_fixture_free(&f);
}

// Sampling through the model's key/value caches (encdec_sample, encdec_ensemble_sample):
// every complete sample's score equals its teacher-forced score (no cache; the ensemble's
// from the mean of the two distributions), which fails if a sample's rows are fed another
// hypothesis' cache (parents); samples obey the rules (banned tokens, min_len, trigrams); an
// ensemble of one model samples exactly as the model alone; the samples are not all equal.
static void test_sample_scores(void) {
    enum { N = 24 };
    EnsFixture f = ens_fixture(N);
    EncDec *m0 = f.m[0], *m1 = f.m[1];
    EncDecGen *g0 = f.g[0], *const *gens = f.g;
    EncDecEnsemble *e1 = f.e1, *e2 = f.e2;
    const int32_t *s0 = ENS_SRC0, *s1 = ENS_SRC1, *const *srcs = f.srcs;
    const int *Ts = f.Ts;
    float *lg = malloc((size_t)XMAXLEN * XV * sizeof(float));
    char err[CX_ERRLEN];
    const struct {
        int max_len, min_len, block;
        float alpha, temperature, epsilon;
    } cases[] = {{6, 1, 1, 0.7f, 1.0f, 0.0f}, {5, 2, 0, 1.5f, 0.8f, 0.05f}, {6, 0, 1, 0.0f, 1.5f, 0.02f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        BeamConfig c = {.beam_size = 1, .min_len = cases[ci].min_len, .max_len = cases[ci].max_len,
                        .alpha = cases[ci].alpha, .block_trigrams = cases[ci].block,
                        .bos = ED_BOS, .eos = ED_EOS, .banned = BANNED, .n_banned = 4};
        BeamSampling sp = {.n = N, .temperature = cases[ci].temperature,
                           .epsilon = cases[ci].epsilon, .seed = 40 + ci};
        for (int kind = 0; kind < 3; kind++) {  // model 0 alone, model 1 alone, the ensemble
            int32_t out[N * XMAXLEN];
            int lens[N];
            double scores[N];
            int got = kind == 2 ? encdec_ensemble_sample(e2, &c, &sp, srcs, Ts, out, lens, scores, err)
                                : encdec_sample(gens[kind], &c, &sp, srcs[kind], NULL, Ts[kind], out,
                                                lens, scores, err);
            CU_ASSERT_EQUAL_FATAL(got, N);  // nothing here can dead-end
            Exhaust x = {.m = kind == 1 ? m1 : m0, .src = kind == 1 ? s1 : s0, .Ts = Ts[kind == 1],
                         .m2 = kind == 2 ? m1 : NULL, .src2 = s1, .Ts2 = XTS - 1, .logits = lg};
            double worst = 0;
            int rules_ok = 1, distinct = 0;
            for (int j = 0; j < N; j++) {
                const int32_t *q = out + (size_t)j * c.max_len;
                const int len = lens[j];
                worst = fmax(worst, fabs(scores[j] - teacher_score(&x, &c, q, len)) /
                                        (1 + fabs(scores[j])));
                for (int t = 0; t < len; t++) {
                    for (int b = 0; b < 4; b++) rules_ok &= q[t] != BANNED[b];
                    if (q[t] == ED_EOS) rules_ok &= t == len - 1 && t >= c.min_len;
                }
                if (len < c.max_len) rules_ok &= q[len - 1] == ED_EOS;
                if (c.block_trigrams) rules_ok &= !has_repeated_trigram(q, len);
                int seen = 0;
                for (int i = 0; i < j && !seen; i++)
                    seen = lens[i] == len && !memcmp(out + (size_t)i * c.max_len, q, (size_t)len * sizeof *q);
                distinct += !seen;
            }
            printf("\n  case %zu %s: %d distinct of %d samples, score vs teacher forcing %.1e", ci,
                   kind == 2 ? "ensemble" : kind ? "model 1 " : "model 0 ", distinct, N, worst);
            CU_ASSERT(worst < 1e-5);
            CU_ASSERT(rules_ok);
            CU_ASSERT(distinct >= 3);
        }
        // one model's ensemble: the same draws
        int32_t o0[N * XMAXLEN], o1[N * XMAXLEN];
        int l0[N], l1[N];
        double sc0[N], sc1[N];
        CU_ASSERT_FATAL(encdec_ensemble_sample(e1, &c, &sp, srcs, Ts, o0, l0, sc0, err) == N);
        CU_ASSERT_FATAL(encdec_sample(g0, &c, &sp, s0, NULL, XTS, o1, l1, sc1, err) == N);
        CU_ASSERT(!memcmp(l0, l1, sizeof l0) && !memcmp(sc0, sc1, sizeof sc0));
        for (int j = 0; j < N; j++)
            CU_ASSERT(!memcmp(o0 + (size_t)j * c.max_len, o1 + (size_t)j * c.max_len,
                              (size_t)l0[j] * sizeof(int32_t)));
    }
    printf("\n");
    // more samples than the generator has rows, or a source too long: errors, not crashes
    BeamConfig c = {.beam_size = 1, .max_len = 4, .bos = ED_BOS, .eos = ED_EOS, .banned = BANNED,
                    .n_banned = 4};
    BeamSampling sp = {.n = N + 1, .temperature = 1.0f};
    int32_t o[(N + 1) * XMAXLEN];
    int l[N + 1];
    double sc[N + 1];
    CU_ASSERT(encdec_sample(g0, &c, &sp, s0, NULL, XTS, o, l, sc, err) == -1 && strstr(err, "samples"));
    sp.n = 2;
    const int bad_Ts[2] = {XTS, XTS + 1};
    CU_ASSERT(encdec_ensemble_sample(e2, &c, &sp, srcs, bad_Ts, o, l, sc, err) == -1 &&
              strstr(err, "model 2"));
    free(lg);
    ens_fixture_free(&f);
}

// ---------------------------------------------------------------------------------------
// beam search that prunes, against an independent reference
//
// tests/ref/beam_golden.h is written by tests/ref/beam_ref.py: beam.h's search written again
// in Python over the golden model in float64 (PyTorch, teacher-forced forwards, no cache).
// K = 2 or 3 is below the number of allowed continuations at nearly every step, so the beam
// drops hypotheses; in 7 of the 9 cases it drops the exhaustive optimum (the file holds that
// too). Most cases ban all tokens but EOS and 1-4 others (the survivors keep their 300-way
// log-probabilities), one searches all 300, one can complete nothing (-1). Asserted: the
// return value, the exact sequence, the number of hypotheses advanced at every step (the
// live-beam bookkeeping and the step at which the stop rule ends the search), and the score
// within 1e-5 relative. The generator keeps every decision at least 1e-3 from a tie; float
// logits against float64 move a score by 6e-8 relative here (1.6e-7 under other OpenBLAS
// core types), and a wrong convention (length penalty, renormalising) by far more than 1e-5.

// encdec_gen_step, recording the number of hypotheses advanced at each step
typedef struct {
    EncDecGen *g;
    int n_steps, bad;
    int widths[GOLDEN_BEAM_MAX_LEN];
} StepLog;

static void logged_step(void *ctx, int K, const int32_t *parents, const int32_t *tokens, int t,
                        float *logits) {
    StepLog *l = ctx;
    if (t != l->n_steps || t >= GOLDEN_BEAM_MAX_LEN) l->bad++;
    else l->widths[t] = K;
    l->n_steps++;
    encdec_gen_step(l->g, K, parents, tokens, t, logits);
}

static void test_beam_pruned(void) {
    Golden gd;
    CU_ASSERT_FATAL(load_golden(&gd) == 0);
    const int V = encdec_config(gd.m)->enc.vocab_size;
    // room for one hypothesis more than any case asks for: a search that used the
    // workspace's capacity, or kept K + 1, must give a wrong answer rather than overflow
    EncDecGen *g = encdec_gen_create(gd.m, GOLDEN_BEAM_MAX_K + 1, GOLDEN_BEAM_MAX_LEN);
    BeamWork *w = beam_work_create(GOLDEN_BEAM_MAX_K + 1, GOLDEN_BEAM_MAX_LEN, V);
    int32_t *banned = malloc((size_t)V * sizeof(int32_t));
    char err[CX_ERRLEN];
    int n_pruned = 0;
    double worst = 0;
    printf("\n");
    for (int ci = 0; ci < GOLDEN_BEAM_N_CASES; ci++) {
        const GoldenBeamCase *gc = &golden_beam_cases[ci];
        int nb = 0;
        if (gc->n_allowed == 0) {
            banned[nb++] = ED_PAD, banned[nb++] = ED_UNK, banned[nb++] = ED_BOS;
            banned[nb++] = ED_MASK;
        } else {
            for (int32_t v = 0; v < V; v++) {
                int keep = v == ED_EOS;
                for (int j = 0; j < gc->n_allowed; j++) keep |= v == gc->allowed[j];
                if (!keep) banned[nb++] = v;
            }
        }
        BeamConfig c = {.beam_size = gc->beam_size,
                        .min_len = gc->min_len,
                        .max_len = gc->max_len,
                        .alpha = gc->alpha,
                        .block_trigrams = gc->block_trigrams,
                        .bos = ED_BOS,
                        .eos = ED_EOS,
                        .banned = banned,
                        .n_banned = nb};
        CU_ASSERT_FATAL(beam_config_check(&c, w, err) == 0);
        int32_t out[GOLDEN_BEAM_MAX_LEN];
        int len = -1;
        double sc = 0;
        StepLog log = {.g = g};
        encdec_gen_start(g, gc->src, NULL, gc->n_src);
        int rc = beam_search(w, &c, logged_step, &log, out, &len, &sc);
        // the live beam at every step: K best kept, the ended ones leave it, and the stop
        // rule ends the search at the same step
        CU_ASSERT_EQUAL(log.bad, 0);
        CU_ASSERT_EQUAL(log.n_steps, gc->n_steps);
        int same_steps = log.bad == 0 && log.n_steps == gc->n_steps &&
                         memcmp(log.widths, gc->widths, (size_t)gc->n_steps * sizeof(int)) == 0;
        CU_ASSERT(same_steps);
        CU_ASSERT_EQUAL(rc, gc->result);
        CU_ASSERT_EQUAL(len, gc->len);
        int same = rc == gc->result && len == gc->len &&
                   memcmp(out, gc->seq, (size_t)gc->len * sizeof(int32_t)) == 0;
        CU_ASSERT(same);
        double rel = gc->result == 0 ? fabs(sc - gc->score) / fabs(gc->score) : 0;
        if (gc->result == 0) CU_ASSERT(rel <= 1e-5);
        worst = fmax(worst, rel);
        int pruned = gc->n_hypotheses > 0 && gc->result == 0 &&
                     (gc->ex_len != gc->len ||
                      memcmp(gc->ex_seq, gc->seq, (size_t)gc->len * sizeof(int32_t)) != 0);
        n_pruned += pruned;
        printf("  K %d alpha %.1f min_len %d max_len %d trigram %d, ", c.beam_size,
               (double)c.alpha, c.min_len, c.max_len, c.block_trigrams);
        if (gc->n_allowed) printf("EOS + %d tokens: ", gc->n_allowed);
        else printf("all tokens: ");
        if (rc != 0) {
            printf("nothing to complete after %d steps%s\n", log.n_steps,
                   rc == gc->result ? ", as the reference" : ": FAILED");
            continue;
        }
        printf("len %d score %.6f (reference %.6f, rel %.1e, margin %.1e), %d steps%s%s", len,
               sc, gc->score, rel, gc->margin, log.n_steps, same ? "" : " SEQUENCE DIFFERS",
               same_steps ? "" : " STEPS DIFFER");
        if (pruned) printf("; exhaustive %.6f (len %d)", gc->ex_score, gc->ex_len);
        printf("\n");
    }
    // the beam really prunes: some K-beam answers are not the exhaustive optimum
    CU_ASSERT(n_pruned >= 1);
    printf("  %d cases, %d pruned away from the exhaustive optimum; worst score rel %.1e\n",
           GOLDEN_BEAM_N_CASES, n_pruned, worst);
    free(banned);
    beam_work_free(w);
    encdec_gen_free(g);
    free_golden(&gd);
}

// ---------------------------------------------------------------------------------------
// the training task: a few optimizer steps learn a toy copy task

static void test_train_task(void) {
    enum { NP = 8, TS = 8, TT = 5, MB = 3 };
    EncDecConfig c = small_config(20, 0.0f, 0.05f);
    EncDec *m = encdec_create(&c, MB, TS, TT, 5);
    int32_t src[NP * TS], tgt[NP * TT];
    fill_pairs(src, tgt, NP, TS, TT, 20, 17);
    for (int i = 0; i < NP; i++)  // target = the first source tokens, then EOS
        for (int t = 0; t < TT; t++)
            tgt[i * TT + t] =
                t < TT - 1 ? (src[i * TS + 1 + t] > ED_MASK ? src[i * TS + 1 + t] : 5) : ED_EOS;
    EncDecTask et;
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    encdec_task_init(&et, &tr.task, m, src, tgt, NP, TS, TT, MB, 1);
    CU_ASSERT(tr.task.n_params == encdec_n_params(m) && tr.task.n_specs == encdec_n_specs(m));
    OptimConfig oc = {.kind = OPTIM_ADAMW,
                      .lr = 3e-3f,
                      .beta1 = 0.9f,
                      .beta2 = 0.999f,
                      .eps = 1e-8f,
                      .weight_decay = 0.0f,
                      .clip_norm = 1.0f,
                      .schedule = SCHED_CONSTANT,
                      .total_steps = 100};
    optim_init(&tr.optim, &oc, tr.task.specs, tr.task.n_specs, tr.task.n_params);
    tr.global_batch = NP;
    char err[CX_ERRLEN];
    StepResult r0, r;
    long ntok = 0;
    double before = task_eval(&tr.task, 0, NP, &ntok, NULL);
    CU_ASSERT_EQUAL(ntok, NP * TT);
    for (int s = 0; s < 60; s++) {
        CU_ASSERT_FATAL(trainer_step(&tr, &r, err) == 0);
        if (s == 0) r0 = r;
    }
    double after = task_eval(&tr.task, 0, NP, &ntok, NULL);
    printf("\n  copy task: eval loss %.3f -> %.3f (train %.3f -> %.3f, %ld tokens/step)\n", before,
           after, r0.loss, r.loss, r.tokens);
    CU_ASSERT(r.tokens == NP * TT);
    CU_ASSERT(after < 0.5 * before);
    optim_free(&tr.optim);
    encdec_task_free(&et);
    encdec_free(m);
}


// ---------------------------------------------------------------------------------------
// backward hooks: what they report is final, covers the arena once, in descending address
// order (dp's bucket order), only for the final micro-batch, and changes no arithmetic

enum { EH_MAX = 64 };
typedef struct {
    const float *grads;
    size_t n;
    int n_calls, n_progress, bad;
    size_t lo[EH_MAX], hi[EH_MAX];
    float *snap[EH_MAX];
} EdHookLog;

static void ed_hook_ready(void *ctx, size_t offset, size_t count) {
    EdHookLog *h = ctx;
    if (h->n_calls == EH_MAX || count == 0 || offset + count > h->n) {
        h->bad++;
        return;
    }
    int k = h->n_calls++;
    h->lo[k] = offset;
    h->hi[k] = offset + count;
    h->snap[k] = malloc(count * sizeof(float));
    memcpy(h->snap[k], h->grads + offset, count * sizeof(float));
}

static void ed_hook_progress(void *ctx) { ((EdHookLog *)ctx)->n_progress++; }

static void test_backward_hooks(void) {
    EncDecConfig c = small_config(40, 0.2f, 0.1f);
    enum { B = 2, TS = 10, TT = 6 };
    EncDec *ref = encdec_create(&c, B, TS, TT, 3), *m = encdec_create(&c, B, TS, TT, 3);
    const size_t n = encdec_n_params(m);
    int32_t src[2 * B * TS], tgt[2 * B * TT];
    fill_pairs(src, tgt, 2 * B, TS, TT, 40, 19);
    EdHookLog h = {.grads = encdec_grads(m), .n = n};
    encdec_set_backward_hooks(m, ed_hook_ready, ed_hook_progress, &h);
    memset(encdec_grads(ref), 0, n * sizeof(float));
    memset(encdec_grads(m), 0, n * sizeof(float));
    for (int k = 0; k < 2; k++) {  // a step of two micro-batches, the second final
        EncDecBatch b = {.B = B, .Ts = TS, .Tt = TT, .src = src + k * B * TS,
                         .tgt = tgt + k * B * TT, .sample_index0 = (uint64_t)(k * B),
                         .final_micro = k == 1};
        long t1, t2;
        double l1 = encdec_step(ref, &b, 1, 1, 77, &t1), l2 = encdec_step(m, &b, 1, 1, 77, &t2);
        CU_ASSERT(l1 == l2 && t1 == t2 && t1 > 0);
        if (k == 0) CU_ASSERT_EQUAL(h.n_calls + h.n_progress + h.bad, 0);
    }
    // the hooks change no arithmetic
    CU_ASSERT(memcmp(encdec_grads(ref), encdec_grads(m), n * sizeof(float)) == 0);
    CU_ASSERT_EQUAL(h.bad, 0);
    CU_ASSERT(h.n_progress > 0);
    // head, each decoder layer, the decoder's embeddings, the encoder's shared layer, the
    // encoder's embeddings: descending addresses, tiling [0, n)
    CU_ASSERT_EQUAL(h.n_calls, 1 + c.dec_layers + 1 + 2);
    CU_ASSERT(h.n_calls > 0 && h.hi[0] == n);
    for (int k = 1; k < h.n_calls; k++) CU_ASSERT(h.hi[k] == h.lo[k - 1]);
    CU_ASSERT(h.n_calls > 0 && h.lo[h.n_calls - 1] == 0);
    // nothing is written into a range after it was reported final
    for (int k = 0; k < h.n_calls; k++) {
        if (memcmp(h.snap[k], encdec_grads(m) + h.lo[k], (h.hi[k] - h.lo[k]) * sizeof(float))) {
            printf("  range [%zu, %zu) changed after it was reported final\n", h.lo[k], h.hi[k]);
            CU_FAIL("range changed after it was reported");
        }
        free(h.snap[k]);
    }
    encdec_free(ref);
    encdec_free(m);
}


// split gradients: the hooks report exactly gs->order (which tiles the arena), nothing
// changes after it is reported, and the arena with the rows added back equals the unsplit
// gradient: bit for bit except the word embeddings (summation order only: 1e-5 of the
// table's max |value|, plus 1e-7)
static void test_grad_split(void) {
    EncDecConfig c = small_config(40, 0.2f, 0.1f);
    enum { B = 2, TS = 10, TT = 6 };
    EncDec *ref = encdec_create(&c, B, TS, TT, 3), *m = encdec_create(&c, B, TS, TT, 3);
    const size_t n = encdec_n_params(m);
    const GradSplit *gs = encdec_enable_grad_split(m);
    CU_ASSERT(encdec_enable_grad_split(m) == gs);
    CU_ASSERT_FATAL(gs->n_order > 0 && gs->n_order <= EH_MAX);
    CU_ASSERT(gs->row_len == c.enc.embedding_size && gs->table_rows == c.enc.vocab_size &&
              gs->table_offset == 0 && gs->max_rows >= B * (TS + TT));
    // the order tiles [0, n) once: a chain of ranges from 0 to n whose lengths add up to n
    int tiles = 1;
    for (size_t at = 0; at < n && tiles;) {
        int next = -1;
        for (int k = 0; k < gs->n_order && next < 0; k++)
            if (gs->order[k].lo == at && gs->order[k].hi > at) next = k;
        if (next < 0) tiles = 0;
        else at = gs->order[next].hi;
    }
    size_t total = 0;
    for (int k = 0; k < gs->n_order; k++) total += gs->order[k].hi - gs->order[k].lo;
    CU_ASSERT(tiles && total == n);

    int32_t src[2 * B * TS], tgt[2 * B * TT];
    fill_pairs(src, tgt, 2 * B, TS, TT, 40, 23);
    src[B * TS + 1] = src[B * TS + 2];  // a repeated id in the final micro-batch's source
    EdHookLog h = {.grads = encdec_grads(m), .n = n};
    encdec_set_backward_hooks(m, ed_hook_ready, ed_hook_progress, &h);
    memset(encdec_grads(ref), 0, n * sizeof(float));
    memset(encdec_grads(m), 0, n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        EncDecBatch b = {.B = B, .Ts = TS, .Tt = TT, .src = src + k * B * TS,
                         .tgt = tgt + k * B * TT, .sample_index0 = (uint64_t)(k * B),
                         .final_micro = k == 1};
        long t1, t2;
        double l1 = encdec_step(ref, &b, 1, 1, 77, &t1), l2 = encdec_step(m, &b, 1, 1, 77, &t2);
        CU_ASSERT(l1 == l2 && t1 == t2 && t1 > 0);
        if (k == 0) {  // untouched by the split
            CU_ASSERT_EQUAL(h.n_calls + h.n_progress + h.bad, 0);
            CU_ASSERT(memcmp(encdec_grads(ref), encdec_grads(m), n * sizeof(float)) == 0);
            CU_ASSERT(*gs->n_rows == 0);
        }
    }
    CU_ASSERT_EQUAL(h.bad, 0);
    CU_ASSERT_EQUAL(h.n_calls, gs->n_order);
    for (int k = 0; k < h.n_calls && k < gs->n_order; k++)
        CU_ASSERT(h.lo[k] == gs->order[k].lo && h.hi[k] == gs->order[k].hi);
    for (int k = 0; k < h.n_calls; k++) {
        CU_ASSERT(memcmp(h.snap[k], encdec_grads(m) + h.lo[k], (h.hi[k] - h.lo[k]) * sizeof(float)) == 0);
        free(h.snap[k]);
    }
    // rows: the final micro-batch's source ids, then the decoder inputs (BOS + target)
    CU_ASSERT_FATAL(*gs->n_rows == B * (TS + TT));
    CU_ASSERT(memcmp(gs->row_ids, src + B * TS, B * TS * sizeof(int32_t)) == 0);
    for (int bi = 0; bi < B; bi++) CU_ASSERT(gs->row_ids[B * TS + bi * TT] == ED_BOS);
    float *folded = malloc(n * sizeof(float));
    memcpy(folded, encdec_grads(m), n * sizeof(float));
    for (int r = 0; r < *gs->n_rows; r++)
        for (int e = 0; e < gs->row_len; e++)
            folded[gs->table_offset + (size_t)gs->row_ids[r] * gs->row_len + e] +=
                gs->rows[(size_t)r * gs->row_len + e];
    const TensorSpec *sp = encdec_specs(m);
    const float *g = encdec_grads(ref);
    size_t wn = sp[AP_WORD].n;
    double scale = max_abs(g, wn), worst = 0;
    for (size_t i = 0; i < wn; i++) worst = fmax(worst, fabs((double)folded[i] - g[i]));
    CU_ASSERT(worst <= 1e-5 * scale + 1e-7);
    CU_ASSERT(memcmp(folded + sp[AP_POS].offset, g + sp[AP_POS].offset,
                     (n - sp[AP_POS].offset) * sizeof(float)) == 0);
    free(folded);
    encdec_free(ref);
    encdec_free(m);
}

int main(void) {
    static const TuTest s_tests[] = {
        {"loss, gradients and logits equal PyTorch", test_golden},
        {"finite differences on the float path", test_finite_differences},
        {"attention_ex and label-smoothed xent ops", test_ops},
        {"micro-batch split invariance with dropout", test_split_invariance},
        {"backward hooks report final ranges in bucket order", test_backward_hooks},
        {"split gradients: order, final ranges, rows fold back", test_grad_split},
        {"cached decoding equals teacher forcing", test_incremental_logits},
        {"copy: loss, gradients and log P equal PyTorch", test_golden_copy},
        {"copy: finite differences on the float path", test_finite_differences_copy},
        {"copy: cached decoding equals teacher forcing", test_incremental_logits_copy},
        {"beam search equals exhaustive search; greedy == beam 1", test_beam_exhaustive},
        {"copy: beam search over the mixture equals exhaustive search", test_beam_exhaustive_copy},
        {"ensemble: the mean of two models' distributions equals exhaustive search", test_ensemble},
        {"sampling through the caches: teacher-forced scores, the rules, ensembles", test_sample_scores},
        {"pruning beam search (K = 2, 3) equals the Python reference", test_beam_pruned},
        {"training task learns a copy task", test_train_task},
    };
    const TuSuite suites[] = {
        {.name = "encdec", .init = NULL, .clean = NULL, .tests = s_tests, .n_tests = TU_NELEM(s_tests)},
    };
    return tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
}
