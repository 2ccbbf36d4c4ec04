// test_albert.c: the whole ALBERT masked-LM against PyTorch, and the training-loop invariants.
//
// tests/ref/albert_tiny.h5 is written by tests/ref/albert_golden.py: a tiny ALBERT's weights
// (a conflux checkpoint), one batch with padding, and PyTorch's float64 loss and gradient of
// every parameter. Tolerances: float32 forward/backward through 2 layers of a 12-wide model
// agree with float64 to ~1e-5 relative; we allow 2e-4 relative to the tensor's max |value|.
// tests/ref/albert_tiny_dropout.h5 (albert_golden.py --dropout 0.1) is the same model and
// batch with dropout 0.1 on: PyTorch multiplied in the masks that conflux's counter-based
// RNG draws (tests/ref/cx_rng.py reimplements models/rng.h), so loss and gradients of a
// training step (albert_step with train = 1) are compared with the same tolerance.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/store/ckpt.h"
#include "io/run/config.h"
#include "io/tasks/mlm.h"
#include "io/tasks/recipe.h"
#include "io/tokenizer/bpe.h"
#include "models/albert.h"
#include "models/common.h"
#include "models/optim.h"
#include "models/rng.h"
#include "tests/unit/testutil.h"

#define GOLDEN "tests/ref/albert_tiny.h5"
#define GOLDEN_SOP "tests/ref/albert_tiny_sop.h5"
#define GOLDEN_DROPOUT "tests/ref/albert_tiny_dropout.h5"

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
// dropout: the file is albert_tiny_dropout.h5 (model.dropout > 0 in its /config): the step
// trains (dropout on) with the seed and first sample index of /golden/dropout_seed and
// /golden/sample_index0, and PyTorch applied the masks conflux's counter-based RNG draws
// for them (tests/ref/cx_rng.py); its logits are without dropout, as albert_predict.
static void check_golden(const char *path, int sop, int dropout) {
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
    int32_t dseed = 0, s0 = 0;
    if (dropout) {
        CU_ASSERT_FATAL(albert_config(m)->dropout > 0.0f);
        CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/dropout_seed", &dseed, 1, err) == 0);
        CU_ASSERT_FATAL(ckpt_read_int32(ck, "/golden/sample_index0", &s0, 1, err) == 0);
        b.sample_index0 = (uint64_t)s0;
    } else {
        CU_ASSERT_FATAL(albert_config(m)->dropout == 0.0f);
    }
    long nsel = 0;
    double sop_sum = 0;
    memset(albert_grads(m), 0, albert_n_params(m) * sizeof(float));
    double loss = albert_step(m, &b, dropout, 1, (uint64_t)dseed, &nsel, &sop_sum);
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
    double worst_all = 0;  // largest max |diff| / scale over the tensors, printed
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
        worst_all = fmax(worst_all, worst / scale);
        if (worst > 2e-4 * scale) {
            printf("  %s: max |diff| %.3g vs scale %.3g\n", specs[i].name, worst, scale);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    printf("  gradients: max |diff| %.2g of the tensor's scale (tolerance 2e-4)\n", worst_all);
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

static void test_golden_loss_and_grads(void) { check_golden(GOLDEN, 0, 0); }
static void test_golden_sop(void) { check_golden(GOLDEN_SOP, 1, 0); }
static void test_golden_dropout(void) { check_golden(GOLDEN_DROPOUT, 0, 1); }

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
// AdamW on tensors longer than the optimizer's vector block (16), with and without
// clipping: the blocked loop and its scalar tail give every element exactly the scalar
// formula (restated here in float, bit for bit), the clipped gradient is written back, and
// the result stays within 1e-5 of a double reference.
static void test_adamw_blocks(void) {
    enum { NT = 3, N = 16 + 37 + 100 + 2 * 16 };
    TensorSpec specs[NT] = {{.name = "a", .ndim = 1, .shape = {16}, .offset = 0, .n = 16},
                            {.name = "b", .ndim = 1, .shape = {37}, .offset = 16, .n = 37, .no_decay = 1},
                            {.name = "c", .ndim = 1, .shape = {100}, .offset = 64, .n = 100}};
    for (int clip = 0; clip < 2; clip++) {
        OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 0.05f, .beta1 = 0.9f, .beta2 = 0.99f,
                          .eps = 1e-8f, .weight_decay = 0.1f, .clip_norm = clip ? 0.5f : 0.0f,
                          .schedule = SCHED_CONSTANT, .total_steps = 10};
        Optim o;
        optim_init(&o, &oc, specs, NT, N);
        float p[N] = {0}, g[N] = {0}, pf[N], mf[N] = {0}, vf[N] = {0};
        double pd[N], md[N] = {0}, vd[N] = {0};
        for (int i = 0; i < N; i++) pd[i] = pf[i] = p[i] = (float)(0.5 - 0.01 * i);
        int exact = 1;
        double worst = 0;
        for (int t = 1; t <= 4; t++) {
            for (int i = 0; i < N; i++) g[i] = (float)(0.3 * sin(0.7 * i + 2.0 * t));
            double gn = optim_grad_norm(g, specs, NT);
            float gs = clip && gn > 0.5 ? (float)(0.5 / (gn + 1e-6)) : 1.0f;
            float gsc[N];
            for (int i = 0; i < N; i++) gsc[i] = gs != 1.0f ? g[i] * gs : g[i];
            const float bc1 = (float)(1.0 - pow(0.9f, (double)t)), bc2 = (float)(1.0 - pow(0.99f, (double)t));
            for (int s = 0; s < NT; s++)
                for (size_t j = 0; j < specs[s].n; j++) {
                    size_t i = specs[s].offset + j;
                    float wd = specs[s].no_decay ? 0.0f : 0.1f, b1 = 0.9f, b2 = 0.99f, lr = 0.05f;
                    mf[i] = b1 * mf[i] + (1.0f - b1) * gsc[i];
                    vf[i] = b2 * vf[i] + (1.0f - b2) * gsc[i] * gsc[i];
                    float upd = (mf[i] / bc1) / (sqrtf(vf[i] / bc2) + 1e-8f);
                    pf[i] = pf[i] * (1.0f - lr * wd) - lr * upd;
                    double wdd = specs[s].no_decay ? 0 : 0.1, gd = (double)gsc[i];
                    md[i] = 0.9 * md[i] + 0.1 * gd;
                    vd[i] = 0.99 * vd[i] + 0.01 * gd * gd;
                    double u = (md[i] / (1 - pow(0.9, t))) / (sqrt(vd[i] / (1 - pow(0.99, t))) + 1e-8);
                    pd[i] = pd[i] * (1 - 0.05 * wdd) - 0.05 * u;
                }
            optim_step_with_norm(&o, p, g, gn);
            for (int s = 0; s < NT; s++)
                for (size_t j = 0; j < specs[s].n; j++) {
                    size_t i = specs[s].offset + j;
                    exact &= p[i] == pf[i] && o.m[i] == mf[i] && o.v[i] == vf[i] && g[i] == gsc[i];
                    worst = fmax(worst, fabs(p[i] - pd[i]));
                }
        }
        CU_ASSERT(exact);
        CU_ASSERT(worst < 1e-5);
        optim_free(&o);
    }
}

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
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 20), 0.0, 1e-7);  // past total_steps: end_lr
    sc.end_lr = 0.01f;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 9), 0.055, 1e-7);  // (0.1 - 0.01) / 2 + 0.01
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 30), 0.01, 1e-7);
    sc.end_lr = 0.0f;
    sc.schedule = SCHED_POLY;
    sc.poly_power = 2.0f;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 9), 0.025, 1e-7);
    // invsqrt (docs/tools.md): linear warm-up, then lr * sqrt(warmup / (step + 1)); without
    // warm-up lr / sqrt(step + 1)
    sc.schedule = SCHED_INVSQRT;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 1), 0.05, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 4), 0.1 * sqrt(4.0 / 5.0), 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 15), 0.05, 1e-7);
    sc.warmup_steps = 0;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 0), 0.1, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 3), 0.05, 1e-7);
    // constant: warm-up, then lr whatever total_steps says
    sc.schedule = SCHED_CONSTANT;
    sc.warmup_steps = 4;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 2), 0.075, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 100), 0.1, 1e-7);
    // linear with no decay steps left after warm-up: lr
    sc.schedule = SCHED_LINEAR;
    sc.total_steps = 4;
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&sc, 10), 0.1, 1e-7);
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
    // an overlong line is refused, not split into a second key (run.dir below must not be set)
    {
        char text[600];
        int n = snprintf(text, sizeof text, "[run]\ndir = /");
        while (n < 300) text[n++] = 'd';
        snprintf(text + n, sizeof text - (size_t)n, "dir = /tmp/INJECTED\n");
        config_defaults(&c);
        CU_ASSERT(config_load_string(&c, text, "t.ini", err) == -1);
        CU_ASSERT_STRING_EQUAL(err, "t.ini:2: line longer than 198 bytes");
        CU_ASSERT(strstr(c.run.dir, "INJECTED") == NULL);
        // a line that fills the buffer exactly, then its newline, still parses
        n = snprintf(text, sizeof text, "[run]\ndir = /");
        while (n < 6 + 199) text[n++] = 'e';
        snprintf(text + n, sizeof text - (size_t)n, "\n[train]\nsteps = 7\n");
        config_defaults(&c);
        CU_ASSERT(config_load_string(&c, text, "t.ini", err) == 0);
        CU_ASSERT_EQUAL(c.train.steps, 7);
        CU_ASSERT_EQUAL(strlen(c.run.dir), 193);
    }
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

// What the bridge does with an upload's claims: count_tokens gives the forward's count of
// loss tokens for any sample range, without the model (both with and without SOP).
static void test_count_tokens(void) {
    enum { NDOC = 30, DOCLEN = 37, T = 16, B = 4 };
    int32_t tokens[NDOC * DOCLEN];
    int64_t offs[NDOC + 1];
    for (int i = 0; i < NDOC * DOCLEN; i++) tokens[i] = 5 + i % 40;
    for (int i = 0; i <= NDOC; i++) offs[i] = (int64_t)i * DOCLEN;
    Shard sh = {.tokens = tokens, .n_tokens = NDOC * DOCLEN, .doc_offsets = offs, .n_docs = NDOC,
                .vocab_size = 50};
    char err[CX_ERRLEN];
    for (int sop = 0; sop <= 1; sop++) {
        AlbertConfig c = {.vocab_size = 50, .embedding_size = 8, .hidden_size = 16, .num_heads = 4,
                          .intermediate_size = 24, .num_layers = 1, .max_position = T,
                          .dropout = 0.0f, .ln_eps = 1e-12f, .init_std = 0.1f, .sop = sop};
        MlmData d;
        CU_ASSERT_FATAL(mlm_data_init(&d, &sh, T, 50, 9, 1, 0.15f, sop, err) == 0);
        Albert *m = albert_create(&c, B, T, 3);
        MlmTask mt;
        TrainTask task;
        mlm_task_init(&mt, &task, m, &d, B, 5);
        long total = 0;
        for (uint64_t s0 = 1000; s0 < 1000 + 5 * B; s0 += B) {  // past an epoch: reshuffled windows
            long k = 0;
            double aux = 0;
            task.micro_step(task.ctx, s0, B, 0, 0, &k, &aux);
            CU_ASSERT(k > 0);
            CU_ASSERT_EQUAL(task.count_tokens(task.ctx, s0, B), k);
            total += k;
        }
        CU_ASSERT_EQUAL(task.count_tokens(task.ctx, 1000, 5 * B), total);
        CU_ASSERT_EQUAL(task.count_tokens(task.ctx, 1000, 0), 0);
        mlm_task_free(&mt);
        albert_free(m);
        mlm_data_free(&d);
    }
}

// A configuration from a file a user is handed: a checkpoint's paths are never taken (a
// resumed run would write to its run.dir), the model's sizes are bounded.
static void test_config_from_files(void) {
    char err[CX_ERRLEN];
    RunConfig c;
    config_defaults(&c);
    RunConfig d = c;
    const char *ck = "[model]\nhidden_size = 32\nnum_heads = 4\n[data]\ntrain = /etc/shadow\n"
                     "valid = /x\ntokenizer = /y\n[run]\ndir = /tmp/ELSEWHERE\n";
    CU_ASSERT_FATAL(cfg_load_string_no_paths(&CONFIG_SCHEMA, &c, ck, "ck.h5", err) == 0);
    CU_ASSERT_EQUAL(c.model.hidden_size, 32);
    CU_ASSERT_STRING_EQUAL(c.data.train, d.data.train);
    CU_ASSERT_STRING_EQUAL(c.data.valid, d.data.valid);
    CU_ASSERT_STRING_EQUAL(c.data.tokenizer, d.data.tokenizer);
    CU_ASSERT_STRING_EQUAL(c.run.dir, d.run.dir);
    // the same text read as the user's own configuration does take them
    CU_ASSERT_FATAL(config_load_string(&c, ck, "own.ini", err) == 0);
    CU_ASSERT_STRING_EQUAL(c.run.dir, "/tmp/ELSEWHERE");
    // the recipe's checkpoint loader: run.dir is the checkpoint's directory
    Replica r;
    recipe_config_init(&r, recipe_for_config(ck));  // no [decoder] section: ALBERT
    CU_ASSERT_FATAL(recipe_config_load_checkpoint(&r, ck, "runs/a/checkpoint-000010.h5", err) == 0);
    CU_ASSERT_STRING_EQUAL(r.run_dir, "runs/a");
    CU_ASSERT_STRING_EQUAL(r.data_train, d.data.train);
    CU_ASSERT_FATAL(recipe_config_load_checkpoint(&r, ck, "latest.h5", err) == 0);
    CU_ASSERT_STRING_EQUAL(r.run_dir, ".");
    recipe_free(&r);
    // size bounds, with the key and the bound in the message
    config_defaults(&c);
    CU_ASSERT(config_set(&c, "model.hidden_size=65536", err) == 0);
    CU_ASSERT(config_set(&c, "model.num_heads=4", err) == 0);
    CU_ASSERT(config_check(&c, err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "model.hidden_size must be <= 32768 (got 65536)");
    config_defaults(&c);
    CU_ASSERT(config_set(&c, "model.vocab_size=1000000", err) == 0);
    CU_ASSERT(config_set(&c, "model.embedding_size=4096", err) == 0);
    CU_ASSERT(config_check(&c, err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "model.vocab_size x model.embedding_size (4096000000) must be <= 2^31");
    config_defaults(&c);
    CU_ASSERT(config_set(&c, "train.micro_batch=100000", err) == 0);
    CU_ASSERT(config_check(&c, err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "train.micro_batch must be in [1, 65536] (got 100000)");
    // control characters from peers are escaped for logs
    char out[64];
    CU_ASSERT_STRING_EQUAL(cx_escape_controls(out, sizeof out, "a\nb\x1b[2Jc\x7f\xd0\xb0"),
                           "a\\x0ab\\x1b[2Jc\\x7f\xd0\xb0");
    CU_ASSERT_STRING_EQUAL(cx_escape_controls(out, 6, "ab\ncd"), "ab");  // never a cut escape
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

// ---- split gradients (albert_enable_grad_split) -------------------------------------------

enum { SPLIT_B = 3, SPLIT_T = 12, SPLIT_N = SPLIT_B * SPLIT_T, HOOK_MAX = 32 };

// Records every backward-hook call: the reported range of the gradient arena and a copy of
// its contents at that moment (and, with split, the row buffer's state).
typedef struct {
    const float *grads;          // arena (n_params floats)
    size_t n_params;
    const GradSplit *gs;         // NULL without split
    const int32_t *expect_ids;   // split: the final micro-batch's input ids (SPLIT_N)
    size_t rows_len;             // split: SPLIT_N * row_len
    int n_calls, n_progress, bad;
    GradRange calls[HOOK_MAX];
    float *snap[HOOK_MAX];       // contents of calls[k] when it was reported
    float *rows_snap[HOOK_MAX];  // split: the row buffer when calls[k] was reported
    int n_rows_at[HOOK_MAX];     // split: *gs->n_rows then
    int ids_ok[HOOK_MAX];        // split: row_ids held expect_ids then
} HookLog;

static void hook_log_ready(void *ctx, size_t offset, size_t count) {
    HookLog *h = ctx;
    if (h->n_calls == HOOK_MAX || count == 0 || offset + count > h->n_params) {
        h->bad++;  // out of the arena (or far too many calls): fails the test
        return;
    }
    int k = h->n_calls++;
    h->calls[k] = (GradRange){offset, offset + count};
    h->snap[k] = malloc(count * sizeof(float));
    memcpy(h->snap[k], h->grads + offset, count * sizeof(float));
    if (h->gs) {
        h->rows_snap[k] = malloc(h->rows_len * sizeof(float));
        memcpy(h->rows_snap[k], h->gs->rows, h->rows_len * sizeof(float));
        h->n_rows_at[k] = *h->gs->n_rows;
        h->ids_ok[k] = memcmp(h->gs->row_ids, h->expect_ids, SPLIT_N * sizeof(int32_t)) == 0;
    }
}

static void hook_log_progress(void *ctx) { ((HookLog *)ctx)->n_progress++; }

static void hook_log_reset(HookLog *h) {
    for (int k = 0; k < h->n_calls; k++) {
        free(h->snap[k]);
        free(h->rows_snap[k]);
        h->snap[k] = h->rows_snap[k] = NULL;
    }
    h->n_calls = h->n_progress = h->bad = 0;
}

// Calls whose snapshot differs from the range's final contents: something was written
// into the range after it was reported final.
static int hook_log_stale(const HookLog *h) {
    int stale = 0;
    for (int k = 0; k < h->n_calls; k++) {
        size_t lo = h->calls[k].lo, hi = h->calls[k].hi;
        if (memcmp(h->grads + lo, h->snap[k], (hi - lo) * sizeof(float)) != 0) {
            printf("  range %d [%zu, %zu) changed after it was reported final\n", k, lo, hi);
            stale++;
        }
    }
    return stale;
}

// The order's ranges, sorted, tile [0, total) exactly once.
static int order_tiles(const GradRange *order, int n, size_t total) {
    GradRange r[HOOK_MAX];
    if (n < 1 || n > HOOK_MAX) return 0;
    memcpy(r, order, (size_t)n * sizeof *r);
    for (int i = 1; i < n; i++)  // insertion sort by lo
        for (int j = i; j > 0 && r[j].lo < r[j - 1].lo; j--) {
            GradRange t = r[j];
            r[j] = r[j - 1];
            r[j - 1] = t;
        }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].lo != at || r[i].hi <= r[i].lo) return 0;
        at = r[i].hi;
    }
    return at == total;
}

// Split gradients against the same model without split, over a step of two micro-batches
// (the second final), run twice: the hooks report exactly gs->order, nothing changes after
// it is reported, the non-final micro-batch is untouched by the split, and arena + rows
// fold back into the unsplit gradient. Also the unsplit model's three ranges.
static void check_grad_split(float dropout, int sop) {
    AlbertConfig c = {.vocab_size = 64, .embedding_size = 16, .hidden_size = 32, .num_heads = 4,
                      .intermediate_size = 64, .num_layers = 3, .max_position = 16,
                      .dropout = dropout, .ln_eps = 1e-12f, .init_std = 0.1f, .sop = sop};
    const int B = SPLIT_B, T = SPLIT_T, N = SPLIT_N, V = c.vocab_size, E = c.embedding_size;
    const uint64_t seed = 11, dseed = 5;
    Albert *ref = albert_create(&c, B, T, seed), *sp = albert_create(&c, B, T, seed);
    const size_t n = albert_n_params(ref);
    CU_ASSERT_FATAL(n == albert_n_params(sp));
    CU_ASSERT_FATAL(memcmp(albert_params(ref), albert_params(sp), n * sizeof(float)) == 0);
    const TensorSpec *specs = albert_specs(ref);
    const int n_specs = albert_n_specs(ref);

    // two micro-batches of one step with different data (padding, repeated ids)
    int32_t ids[2][SPLIT_N], mask[2][SPLIT_N], tg[2][SPLIT_N], ty[2][SPLIT_N], lab[2][SPLIT_B];
    AlbertBatch mb[2];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < N; i++) {
            int bi = i / T, t = i % T, used = T - 2 * bi - k;
            uint64_t key = (uint64_t)k * N + (uint64_t)i;
            ids[k][i] = 5 + (int32_t)(cx_rng_u64(21, key) % (uint64_t)(V - 5));
            mask[k][i] = t < used;
            tg[k][i] = (mask[k][i] && (t == 1 || cx_rng_uniform(22, key) < 0.3f)) ? ids[k][i] : -1;
            ty[k][i] = mask[k][i] && t >= used / 2;
        }
        ids[k][N - 1] = ids[k][0];  // a table row that gets two token rows
        for (int bi = 0; bi < B; bi++) lab[k][bi] = (bi + k) % 2;
        mb[k] = (AlbertBatch){.B = B, .T = T, .input_ids = ids[k], .attention_mask = mask[k],
                              .targets = tg[k], .sample_index0 = (uint64_t)k * B,
                              .final_micro = k == 1};
        if (sop) {
            mb[k].token_type_ids = ty[k];
            mb[k].sop_labels = lab[k];
            mb[k].sop_scale = 1.5f;
        }
    }

    const GradSplit *gs = albert_enable_grad_split(sp);
    CU_ASSERT_FATAL(gs != NULL);
    CU_ASSERT(albert_enable_grad_split(sp) == gs);
    // the rows belong to the word-embedding table
    CU_ASSERT_FATAL(gs->row_len == E && gs->max_rows >= N && gs->table_rows == V);
    CU_ASSERT_FATAL(gs->table_offset == specs[AP_WORD].offset);
    CU_ASSERT_FATAL(gs->n_order >= 1 && gs->n_order <= HOOK_MAX);
    CU_ASSERT(*gs->n_rows == 0);
    const size_t total = n, rows_len = (size_t)N * E;
    // (a) the order covers the arena exactly once; the shared layer is reported tensor by
    // tensor (at least its 7 weight/bias groups), the word embeddings before the shared layer
    int n_shared = 0, word_at = -1, first_shared = -1;
    for (int k = 0; k < gs->n_order; k++) {
        if (gs->order[k].lo >= specs[AP_Q_W].offset && gs->order[k].hi <= specs[AP_PRED_BIAS].offset) {
            n_shared++;
            if (first_shared < 0) first_shared = k;
        }
        if (gs->order[k].lo == specs[AP_WORD].offset) word_at = k;
    }
    CU_ASSERT(n_shared >= 7);
    CU_ASSERT(word_at >= 0 && word_at < first_shared);
    CU_ASSERT(order_tiles(gs->order, gs->n_order, total));

    HookLog hr = {.grads = albert_grads(ref), .n_params = n};
    HookLog hs = {.grads = albert_grads(sp), .n_params = n, .gs = gs, .expect_ids = ids[1],
                  .rows_len = rows_len};
    albert_set_backward_hooks(ref, hook_log_ready, hook_log_progress, &hr);
    albert_set_backward_hooks(sp, hook_log_ready, hook_log_progress, &hs);

    float *folded = malloc(n * sizeof(float));
    float *first = malloc((total + rows_len) * sizeof(float));  // step 0: arena, rows
    double worst_tol = 0;  // largest |diff| as a fraction of its tolerance
    for (int step = 0; step < 2; step++) {
        // what the trainer and the backend do between steps
        memset(albert_grads(ref), 0, n * sizeof(float));
        memset(albert_grads(sp), 0, n * sizeof(float));
        *gs->n_rows = 0;
        hook_log_reset(&hr);
        hook_log_reset(&hs);
        for (int k = 0; k < 2; k++) {
            long nr = 0, nsp = 0;
            double sr = 0, ss = 0;
            double lr = albert_step(ref, &mb[k], 1, 1, dseed, &nr, &sr);
            double ls = albert_step(sp, &mb[k], 1, 1, dseed, &nsp, &ss);
            // the same forward on the same parameters: the same arithmetic
            CU_ASSERT(lr == ls && sr == ss);
            CU_ASSERT(nr == nsp && nr > 0);
            if (k == 0) {
                // (e) a non-final micro-batch reports nothing, and the split leaves it alone:
                // all of it goes into the arena exactly as without split
                CU_ASSERT_EQUAL(hr.n_calls + hs.n_calls + hr.n_progress + hs.n_progress, 0);
                CU_ASSERT_EQUAL(hr.bad + hs.bad, 0);
                CU_ASSERT(memcmp(albert_grads(ref), albert_grads(sp), n * sizeof(float)) == 0);
                CU_ASSERT(*gs->n_rows == 0);
            }
        }

        // without split: the old three ranges (heads, shared layer, embeddings), nothing
        // written after it is reported
        CU_ASSERT_EQUAL(hr.bad, 0);
        CU_ASSERT_FATAL(hr.n_calls == 3);
        CU_ASSERT(hr.calls[0].lo == specs[AP_PRED_BIAS].offset && hr.calls[0].hi == n);
        CU_ASSERT(hr.calls[1].lo == specs[AP_Q_W].offset &&
                  hr.calls[1].hi == specs[AP_PRED_BIAS].offset);
        CU_ASSERT(hr.calls[2].lo == 0 && hr.calls[2].hi == specs[AP_Q_W].offset);
        CU_ASSERT_EQUAL(hook_log_stale(&hr), 0);
        CU_ASSERT(hr.n_progress > 0);

        // (a) with split: exactly gs->order, in that order
        CU_ASSERT_EQUAL(hs.bad, 0);
        CU_ASSERT_EQUAL(hs.n_calls, gs->n_order);
        for (int k = 0; k < hs.n_calls && k < gs->n_order; k++) {
            if (hs.calls[k].lo != gs->order[k].lo || hs.calls[k].hi != gs->order[k].hi) {
                printf("  call %d reported [%zu, %zu), order says [%zu, %zu)\n", k, hs.calls[k].lo,
                       hs.calls[k].hi, gs->order[k].lo, gs->order[k].hi);
                CU_FAIL("hook call differs from gs->order");
            }
        }
        CU_ASSERT(hs.n_progress > 0);
        // (b) nothing is written into a range after it is reported final
        CU_ASSERT_EQUAL(hook_log_stale(&hs), 0);
        // (c) one row per token of the final micro-batch, set before the first report and
        // filled before the last
        CU_ASSERT_EQUAL(*gs->n_rows, N);
        CU_ASSERT(memcmp(gs->row_ids, ids[1], (size_t)N * sizeof(int32_t)) == 0);
        for (int k = 0; k < hs.n_calls; k++) CU_ASSERT(hs.n_rows_at[k] == N && hs.ids_ok[k]);
        if (hs.n_calls > 0)
            CU_ASSERT(memcmp(hs.rows_snap[hs.n_calls - 1], gs->rows,
                             rows_len * sizeof(float)) == 0);
        CU_ASSERT(max_abs(gs->rows, rows_len) > 0);

        // (d) arena + rows into the table == the unsplit arena. Tolerance: the two sums hold
        // the same float terms and differ only in the order of the additions (the input-
        // embedding rows are summed on their own, then added in), so each element differs
        // by a few roundings of the tensor's largest partial sums: 1e-5 of the tensor's
        // max |value| (~80 float ulps), plus 1e-7 for tensors whose gradient is ~0
        // (attention.key.bias is analytically zero). Every tensor but the word embeddings
        // must be bit-identical (the same additions in the same order).
        memcpy(folded, albert_grads(sp), n * sizeof(float));
        int ids_in_table = 1;
        for (int r = 0; r < *gs->n_rows && r < gs->max_rows; r++) {
            int32_t id = gs->row_ids[r];
            if (id < 0 || id >= gs->table_rows) {
                ids_in_table = 0;
                continue;
            }
            float *dst = folded + gs->table_offset + (size_t)id * (size_t)gs->row_len;
            const float *src = gs->rows + (size_t)r * (size_t)gs->row_len;
            for (int e = 0; e < gs->row_len; e++) dst[e] += src[e];
        }
        CU_ASSERT(ids_in_table);
        const float *g_ref = albert_grads(ref);
        CU_ASSERT(max_abs(g_ref, n) > 0);
        int bad = 0;
        for (int i = 0; i < n_specs; i++) {
            const float *a = folded + specs[i].offset, *b = g_ref + specs[i].offset;
            double scale = max_abs(b, specs[i].n), worst = 0;
            for (size_t j = 0; j < specs[i].n; j++) worst = fmax(worst, fabs((double)a[j] - b[j]));
            double tol = i == AP_WORD ? 1e-5 * scale + 1e-7 : 0.0;
            if (tol > 0) worst_tol = fmax(worst_tol, worst / tol);
            if (worst > tol) {
                printf("  %s: folded max |diff| %.3g vs scale %.3g\n", specs[i].name, worst, scale);
                bad++;
            }
        }
        CU_ASSERT_EQUAL(bad, 0);

        // the second step (after the resets) repeats the first bit for bit
        float *now = malloc((total + rows_len) * sizeof(float));
        memcpy(now, albert_grads(sp), total * sizeof(float));
        memcpy(now + total, gs->rows, rows_len * sizeof(float));
        if (step == 0) memcpy(first, now, (total + rows_len) * sizeof(float));
        else CU_ASSERT(memcmp(first, now, (total + rows_len) * sizeof(float)) == 0);
        free(now);
    }
    printf("\n  split: %d ranges over %zu floats; folded vs unsplit: worst |diff| %.2g of "
           "the tolerance\n", hs.n_calls, n, worst_tol);
    hook_log_reset(&hr);
    hook_log_reset(&hs);
    free(folded);
    free(first);
    albert_free(ref);
    albert_free(sp);
}

static void test_grad_split_sop(void) { check_grad_split(0.1f, 1); }
static void test_grad_split_mlm(void) { check_grad_split(0.0f, 0); }

int main(void) {
    static const TuTest s_tests[] = {
        {"loss and gradients equal PyTorch", test_golden_loss_and_grads},
        {"with sentence-order prediction too", test_golden_sop},
        {"with dropout 0.1 (conflux's masks in PyTorch)", test_golden_dropout},
        {"micro-batch split invariance with dropout", test_microbatch_split_invariance},
        {"AdamW and LAMB against a double reference", test_optimizers},
        {"AdamW's vector blocks and tails: the scalar formula bit for bit", test_adamw_blocks},
        {"configuration parsing and errors", test_config_errors},
        {"MLM/SOP data: coverage, masking, determinism", test_mlm_data},
        {"count_tokens equals the forward's loss tokens", test_count_tokens},
        {"configurations from files: no paths from a checkpoint, size bounds", test_config_from_files},
        {"split gradients: hooks, order, fold (dropout, SOP)", test_grad_split_sop},
        {"split gradients: hooks, order, fold (no dropout, MLM)", test_grad_split_mlm},
    };
    const TuSuite suites[] = {
        {.name = "albert", .init = NULL, .clean = NULL, .tests = s_tests, .n_tests = TU_NELEM(s_tests)},
    };
    return tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
}
