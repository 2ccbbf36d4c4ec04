// test_albert.c: the whole ALBERT masked-LM against PyTorch, and the training-loop invariants.
//
// tests/ref/albert_tiny.h5 is written by tests/ref/albert_golden.py: a tiny ALBERT's weights
// (a conflux checkpoint), one batch with padding, and PyTorch's float64 loss and gradient of
// every parameter. Tolerances: float32 forward/backward through 2 layers of a 12-wide model
// agree with float64 to ~1e-5 relative; we allow 2e-4 relative to the tensor's max |value|.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt.h"
#include "io/config.h"
#include "io/mlm.h"
#include "io/bpe.h"
#include "models/albert.h"
#include "models/common.h"
#include "models/optim.h"
#include "models/rng.h"

#define GOLDEN "tests/ref/albert_tiny.h5"
#define GOLDEN_SOP "tests/ref/albert_tiny_sop.h5"

static Albert *load_golden_model(const char *path, Ckpt **ckp, int *B, int *T) {
    char err[CX_ERRLEN];
    Ckpt *ck = NULL;
    if (ckpt_open(&ck, path, err) != 0) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    RunConfig cfg;
    config_defaults(&cfg);
    CU_ASSERT_FATAL(config_load_string(&cfg, ckpt_config_text(ck), path, err) == 0);
    *B = 3;
    *T = 10;
    Albert *m = albert_create(&cfg.model, *B, *T, 1);
    if (ckpt_read_params(ck, albert_specs(m), albert_n_specs(m), albert_params(m), err) != 0) {
        fprintf(stderr, "%s\n", err);
        albert_free(m);
        ckpt_close(ck);
        return NULL;
    }
    *ckp = ck;
    return m;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

// Loss (+ SOP loss), every parameter gradient and the MLM distribution against PyTorch.
static void check_golden(const char *path, int sop) {
    Ckpt *ck = NULL;
    int B, T;
    Albert *m = load_golden_model(path, &ck, &B, &T);
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_EQUAL(albert_config(m)->sop, sop);
    CU_ASSERT_EQUAL(albert_n_specs(m), sop ? AP_COUNT : AP_N_MLM);
    char err[CX_ERRLEN];
    int32_t ids[30], mask[30], labels[30], nsel_ref;
    float loss_ref;
    CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/input_ids", ids, 30, err) == 0);
    CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/attention_mask", mask, 30, err) == 0);
    CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/labels", labels, 30, err) == 0);
    CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/n_selected", &nsel_ref, 1, err) == 0);
    CU_ASSERT_FATAL(ckpt_read_float(ck, "/golden/loss_sum", &loss_ref, 1, err) == 0);
    for (int i = 0; i < 30; i++)
        if (labels[i] < 0) labels[i] = -1;
    AlbertBatch b = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask, .targets = labels};
    int32_t types[30], sop_labels[3];
    float sop_scale = 0, sop_ref = 0;
    if (sop) {
        CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/token_type_ids", types, 30, err) == 0);
        CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/sop_labels", sop_labels, 3, err) == 0);
        CU_ASSERT_FATAL(ckpt_read_float(ck, "/golden/sop_scale", &sop_scale, 1, err) == 0);
        CU_ASSERT_FATAL(ckpt_read_float(ck, "/golden/sop_sum", &sop_ref, 1, err) == 0);
        b.token_type_ids = types;
        b.sop_labels = sop_labels;
        b.sop_scale = sop_scale;
    }
    long nsel = 0;
    double sop_sum = 0;
    memset(albert_grads(m), 0, albert_n_params(m) * sizeof(float));
    double loss = albert_step(m, &b, 0, 1, 0, &nsel, &sop_sum);
    CU_ASSERT_EQUAL(nsel, nsel_ref);
    CU_ASSERT_DOUBLE_EQUAL(loss, loss_ref, 1e-5 * fabs(loss_ref));
    printf("\n  loss_sum conflux %.7f pytorch %.7f over %ld tokens\n", loss, (double)loss_ref, nsel);
    if (sop) {
        CU_ASSERT_DOUBLE_EQUAL(sop_sum, sop_ref, 1e-5 * fabs(sop_ref));
        printf("  sop_sum conflux %.7f pytorch %.7f\n", sop_sum, (double)sop_ref);
    }

    const TensorSpec *specs = albert_specs(m);
    float *ref = malloc(albert_n_params(m) * sizeof(float));
    int bad = 0;
    for (int i = 0; i < albert_n_specs(m); i++) {
        char dset[256];
        snprintf(dset, sizeof dset, "/golden/grads/%s", specs[i].name);
        CU_ASSERT_FATAL(ckpt_read_float(ck, dset, ref, specs[i].n, err) == 0);
        const float *g = albert_grads(m) + specs[i].offset;
        // d/d(attention.key.bias) is analytically zero (a per-query constant added to every
        // score cancels in the softmax), so every tensor is also given an absolute floor of
        // 1e-6 (the largest gradients are O(10)); all others are non-trivial.
        double scale = fmax(max_abs(ref, specs[i].n), 5e-3), worst = 0;
        if (!strstr(specs[i].name, "key.bias")) CU_ASSERT(max_abs(ref, specs[i].n) > 1e-3);
        for (size_t j = 0; j < specs[i].n; j++) worst = fmax(worst, fabs((double)g[j] - ref[j]));
        if (worst > 2e-4 * scale) {
            printf("  %s: max |diff| %.3g vs scale %.3g\n", specs[i].name, worst, scale);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(ref);

    // predicted distribution at selected positions equals softmax of PyTorch's logits
    int V = albert_config(m)->vocab_size;
    float *logits = malloc((size_t)B * T * V * sizeof(float));
    float *probs = malloc((size_t)B * T * V * sizeof(float));
    CU_ASSERT_FATAL(ckpt_read_float(ck, "/golden/logits", logits, (size_t)B * T * V, err) == 0);
    int M = albert_predict(m, &b, probs);
    CU_ASSERT_EQUAL(M, nsel_ref);
    double worst = 0;
    for (int i = 0, r = 0; i < B * T; i++) {
        if (labels[i] < 0) continue;
        const float *lg = logits + (size_t)i * V;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, lg[v]);
        for (int v = 0; v < V; v++) s += exp(lg[v] - mx);
        for (int v = 0; v < V; v++)
            worst = fmax(worst, fabs(exp(lg[v] - mx) / s - probs[(size_t)r * V + v]));
        r++;
    }
    CU_ASSERT(worst < 1e-5);
    free(logits);
    free(probs);
    albert_free(m);
    ckpt_close(ck);
}

static void test_golden_loss_and_grads(void) { check_golden(GOLDEN, 0); }
static void test_golden_sop(void) { check_golden(GOLDEN_SOP, 1); }

// A global batch split into micro-batches gives the same gradient sum (dropout on: the
// dropout draws are keyed by sample index, not by micro-batch).
static void test_microbatch_split_invariance(void) {
    AlbertConfig c = {.vocab_size = 50, .embedding_size = 8, .hidden_size = 16, .num_heads = 4,
                      .intermediate_size = 24, .num_layers = 3, .max_position = 12,
                      .dropout = 0.2f, .ln_eps = 1e-12f, .init_std = 0.1f};
    const int B = 4, T = 9;
    Albert *m = albert_create(&c, B, T, 7);
    int32_t ids[36], mask[36], tg[36];
    for (int i = 0; i < B * T; i++) {
        ids[i] = 5 + (int)(cx_rng_u64(3, (uint64_t)i) % 45);
        mask[i] = (i % T) < T - (i / T);  // some padding
        tg[i] = (mask[i] && cx_rng_uniform(4, (uint64_t)i) < 0.4f) ? ids[i] : -1;
    }
    size_t n = albert_n_params(m);
    float *g1 = malloc(n * sizeof(float));
    long k1 = 0, k2 = 0, k3 = 0;
    memset(albert_grads(m), 0, n * sizeof(float));
    AlbertBatch whole = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask, .targets = tg,
                         .sample_index0 = 100};
    double l1 = albert_step(m, &whole, 1, 1, 99, &k1, NULL);
    memcpy(g1, albert_grads(m), n * sizeof(float));
    memset(albert_grads(m), 0, n * sizeof(float));
    AlbertBatch h1 = {.B = 2, .T = T, .input_ids = ids, .attention_mask = mask, .targets = tg,
                      .sample_index0 = 100};
    AlbertBatch h2 = {.B = 2, .T = T, .input_ids = ids + 2 * T, .attention_mask = mask + 2 * T,
                      .targets = tg + 2 * T, .sample_index0 = 102};
    double l2 = albert_step(m, &h1, 1, 1, 99, &k2, NULL) + albert_step(m, &h2, 1, 1, 99, &k3, NULL);
    CU_ASSERT_EQUAL(k1, k2 + k3);
    CU_ASSERT_DOUBLE_EQUAL(l1, l2, 1e-5 * fabs(l1));
    double worst = 0, scale = max_abs(g1, n);
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)g1[i] - albert_grads(m)[i]));
    CU_ASSERT(worst <= 1e-5 * scale);
    // and a different dropout seed really changes the result (dropout is on)
    memset(albert_grads(m), 0, n * sizeof(float));
    double l3 = albert_step(m, &whole, 1, 1, 98, &k1, NULL);
    CU_ASSERT(fabs(l3 - l1) > 1e-6);
    free(g1);
    albert_free(m);
}

// AdamW against torch.optim.AdamW semantics, computed here in double for 3 steps; LAMB's
// trust ratio on a single tensor.
static void test_optimizers(void) {
    TensorSpec specs[2] = {{.name = "w", .ndim = 1, .shape = {5}, .offset = 0, .n = 5, .no_decay = 0},
                           {.name = "b", .ndim = 1, .shape = {3}, .offset = 16, .n = 3, .no_decay = 1}};
    OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f,
                      .weight_decay = 0.1f, .clip_norm = 0.0f, .schedule = SCHED_CONSTANT,
                      .warmup_steps = 0, .total_steps = 10};
    for (int kind = 0; kind < 2; kind++) {
        oc.kind = kind ? OPTIM_LAMB : OPTIM_ADAMW;
        Optim o;
        optim_init(&o, &oc, specs, 2, 19);
        float p[19] = {0}, g[19] = {0};
        double pd[19] = {0}, md[19] = {0}, vd[19] = {0};
        for (int i = 0; i < 19; i++) pd[i] = p[i] = (float)(0.5 - 0.1 * i);
        for (int t = 1; t <= 3; t++) {
            for (int i = 0; i < 19; i++) g[i] = (float)(0.3 * sin(i + 2.0 * t));
            double gd[19];
            for (int i = 0; i < 19; i++) gd[i] = g[i];
            optim_step(&o, p, g);
            for (int s = 0; s < 2; s++) {
                double wd = specs[s].no_decay ? 0 : 0.1, un = 0, wn = 0, upd[8];
                for (size_t j = 0; j < specs[s].n; j++) {
                    size_t i = specs[s].offset + j;
                    md[i] = 0.9 * md[i] + 0.1 * gd[i];
                    vd[i] = 0.99 * vd[i] + 0.01 * gd[i] * gd[i];
                    double mh = md[i] / (1 - pow(0.9, t)), vh = vd[i] / (1 - pow(0.99, t));
                    upd[j] = mh / (sqrt(vh) + 1e-8);
                    if (kind) upd[j] += wd * pd[i];
                    un += upd[j] * upd[j];
                    wn += pd[i] * pd[i];
                }
                double trust = (kind && !specs[s].no_decay && wn > 0 && un > 0) ? sqrt(wn) / sqrt(un) : 1;
                for (size_t j = 0; j < specs[s].n; j++) {
                    size_t i = specs[s].offset + j;
                    if (kind) pd[i] -= 0.1 * trust * upd[j];
                    else pd[i] = pd[i] * (1 - 0.1 * wd) - 0.1 * upd[j];
                }
            }
        }
        for (int s = 0; s < 2; s++)
            for (size_t j = 0; j < specs[s].n; j++)
                CU_ASSERT_DOUBLE_EQUAL(p[specs[s].offset + j], pd[specs[s].offset + j], 1e-5);
        optim_free(&o);
    }
    // schedule: warm-up then linear decay to end_lr
    OptimConfig sc = oc;
    sc.schedule = SCHED_LINEAR;
    sc.warmup_steps = 4;
    sc.total_steps = 14;
    sc.end_lr = 0.0f;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 0), 0.025, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 3), 0.1, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 9), 0.05, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 14), 0.0, 1e-7);
    sc.schedule = SCHED_POLY;
    sc.poly_power = 2.0f;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 9), 0.025, 1e-7);
}

static void test_config_errors(void) {
    char err[CX_ERRLEN];
    RunConfig c;
    config_defaults(&c);
    CU_ASSERT(config_load_string(&c, "[model]\nhidden_size = 64\nnum_heads = 4\n", "t.ini", err) == 0);
    CU_ASSERT_EQUAL(c.model.hidden_size, 64);
    CU_ASSERT(config_load_string(&c, "[model]\n\nbogus = 3\n", "t.ini", err) == -1);
    CU_ASSERT(strstr(err, "t.ini:3") && strstr(err, "bogus"));
    CU_ASSERT(config_load_string(&c, "[train]\nsteps = ten\n", "t.ini", err) == -1);
    CU_ASSERT(strstr(err, "t.ini:2") && strstr(err, "train.steps"));
    CU_ASSERT(config_load_string(&c, "[optim]\nname = sgd\n", "t.ini", err) == -1);
    CU_ASSERT(strstr(err, "sgd") != NULL);
    CU_ASSERT(config_load_string(&c, "[model\nx=1\n", "t.ini", err) == -1);
    CU_ASSERT(strstr(err, "t.ini:1") != NULL);
    CU_ASSERT(config_load_file(&c, "/nonexistent/x.ini", err) == -1);
    CU_ASSERT(strstr(err, "/nonexistent/x.ini") != NULL);
    CU_ASSERT(config_set(&c, "train.steps=50", err) == 0 && c.train.steps == 50);
    CU_ASSERT(config_set(&c, "steps=50", err) == -1);
    CU_ASSERT(config_set(&c, "train.nope=1", err) == -1 && strstr(err, "train.nope"));
    CU_ASSERT(config_set(&c, "model.dropout=nan", err) == -1);
    config_defaults(&c);
    CU_ASSERT(config_set(&c, "model.num_heads=3", err) == 0);
    CU_ASSERT(config_check(&c, err) == -1 && strstr(err, "num_heads"));
    config_defaults(&c);
    CU_ASSERT(config_set(&c, "data.seq_len=1000", err) == 0);
    CU_ASSERT(config_check(&c, err) == -1 && strstr(err, "seq_len"));
    // the written configuration parses back to the same values
    config_defaults(&c);
    config_set(&c, "optim.name=lamb", err);
    config_set(&c, "optim.schedule=poly", err);
    config_set(&c, "optim.lr=0.00176", err);
    char buf[8192];
    config_to_ini(&c, buf, sizeof buf);
    RunConfig d;
    config_defaults(&d);
    CU_ASSERT(config_load_string(&d, buf, "roundtrip", err) == 0);
    CU_ASSERT(memcmp(&c, &d, sizeof c) == 0);
}

// MLM data: an epoch visits every window once; masking statistics; determinism; SOP
// segments reassemble the window and both orders occur.
static void test_mlm_data(void) {
    enum { NDOC = 40, DOCLEN = 23, T = 16 };
    int32_t tokens[NDOC * DOCLEN];
    int64_t offs[NDOC + 1];
    for (int i = 0; i < NDOC * DOCLEN; i++) tokens[i] = 5 + i;  // unique: windows are distinguishable
    for (int i = 0; i <= NDOC; i++) offs[i] = (int64_t)i * DOCLEN;
    Shard sh = {.tokens = tokens, .n_tokens = NDOC * DOCLEN, .doc_offsets = offs, .n_docs = NDOC,
                .vocab_size = 1000};
    char err[CX_ERRLEN];
    for (int sop = 0; sop <= 1; sop++) {
        MlmData d;
        CU_ASSERT_FATAL(mlm_data_init(&d, &sh, T, 1000, 42, 1, 0.15f, sop, err) == 0);
        size_t W = d.n_windows, w = (size_t)(T - 2 - sop);
        CU_ASSERT_EQUAL(W, (NDOC * DOCLEN + NDOC - 1 + w - 1) / w);
        char *seen = calloc(W, 1);
        int32_t ids[T], mask[T], tg[T], ty[T], ids2[T], mask2[T], tg2[T], ty2[T], lab, lab2;
        long n_sel = 0, n_real = 0, n_maskid = 0, n_swapped = 0, n_labelled = 0;
        for (uint64_t s = 0; s < 2 * W; s++) {
            mlm_data_fill(&d, s, ids, mask, tg, sop ? ty : NULL, sop ? &lab : NULL);
            // the original tokens: targets where selected, ids elsewhere
            int32_t orig[T];
            int used = 0;
            for (int t = 0; t < T; t++) {
                orig[t] = tg[t] >= 0 ? tg[t] : ids[t];
                used += mask[t];
                if (tg[t] >= 0) {
                    n_sel++;
                    n_maskid += ids[t] == BPE_MASK;
                }
                if (mask[t] && orig[t] >= BPE_N_SPECIAL) n_real++;
            }
            CU_ASSERT(orig[0] == BPE_CLS && orig[used - 1] == BPE_SEP);
            // reassemble the window's tokens in stream order
            int32_t win[T];
            int nw = 0;
            if (sop && lab >= 0) {
                int sep = 1;
                while (orig[sep] != BPE_SEP || ty[sep] != 0 || (sep + 1 < used && ty[sep + 1] != 1)) sep++;
                CU_ASSERT(ty[0] == 0 && ty[used - 1] == 1 && (used == T || ty[used] == 0));
                const int32_t *a = orig + 1, *b = orig + sep + 1;
                int na = sep - 1, nb = used - sep - 2;
                if (lab) { const int32_t *tmp = a; a = b; b = tmp; int tn = na; na = nb; nb = tn; }
                memcpy(win, a, (size_t)na * 4);
                memcpy(win + na, b, (size_t)nb * 4);
                nw = na + nb;
                n_swapped += lab;
                n_labelled++;
            } else {
                memcpy(win, orig + 1, (size_t)(used - 2) * 4);
                nw = used - 2;
            }
            // find which window this is and check it is the stream's content
            size_t found = W;
            for (size_t k = 0; k < W && found == W; k++)
                if ((size_t)nw == (d.n_stream - k * w < w ? d.n_stream - k * w : w) &&
                    memcmp(win, d.stream + k * w, (size_t)nw * 4) == 0)
                    found = k;
            CU_ASSERT_FATAL(found < W);
            if (s < W) {
                CU_ASSERT(!seen[found]);  // each window exactly once per epoch
                seen[found] = 1;
            }
            // deterministic
            mlm_data_fill(&d, s, ids2, mask2, tg2, sop ? ty2 : NULL, sop ? &lab2 : NULL);
            CU_ASSERT(memcmp(ids, ids2, sizeof ids) == 0 && memcmp(tg, tg2, sizeof tg) == 0);
        }
        double rate = (double)n_sel / n_real, mrate = (double)n_maskid / n_sel;
        CU_ASSERT(rate > 0.11 && rate < 0.19);
        CU_ASSERT(mrate > 0.7 && mrate < 0.9);
        if (sop) CU_ASSERT(n_swapped > n_labelled / 4 && n_swapped < 3 * n_labelled / 4);
        free(seen);
        mlm_data_free(&d);
    }
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("albert", NULL, NULL);
    CU_add_test(s, "loss and gradients equal PyTorch", test_golden_loss_and_grads);
    CU_add_test(s, "with sentence-order prediction too", test_golden_sop);
    CU_add_test(s, "micro-batch split invariance with dropout", test_microbatch_split_invariance);
    CU_add_test(s, "AdamW and LAMB against a double reference", test_optimizers);
    CU_add_test(s, "configuration parsing and errors", test_config_errors);
    CU_add_test(s, "MLM/SOP data: coverage, masking, determinism", test_mlm_data);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned fails = CU_get_number_of_failures();
    CU_cleanup_registry();
    return fails ? 1 : 0;
}
