// test_train_step.c: whole optimizer steps of the training loop (trainer_step, models/train.h)
// against PyTorch.
//
// tests/ref/optim_step_golden.h is written by tests/ref/optim_step_ref.py: a synthetic task
// of 7 tensors (3 decayed matrices; biases and LayerNorm tensors no_decay) whose samples
// each contribute a fixed float32 gradient and a number of loss tokens. The Trainer here
// runs that task with global_batch 7 in micro-batches of 3, 3 and 1 for 4 steps of
// conflux's linear schedule (warm-up 2 steps, then linear decay; the learning rates are
// lr/2, lr, lr, mid-decay), clipping at global norm 1 (active in steps 1 and 3, where
// the averaged gradient's norm is 3 and 2.5, inactive in 2 and 4: 0.4 and 0.6), weight
// decay 0.1. After every step it compares the parameters and both moments with:
//   adamw  torch.nn.utils.clip_grad_norm_ + torch.optim.AdamW with two parameter groups
//          (decay / no decay), the group lr set per step
//   lamb   the LAMB paper's formula written out in the reference (bias-corrected Adam
//          direction + weight decay, per-tensor trust ratio ||w|| / ||u||; no_decay
//          tensors: no decay and trust 1)
// and the step's pre-clip gradient norm and learning rate (StepResult).
//
// Tolerance: the reference and the C code do the same float32 operations in a different
// grouping (torch fuses some multiply-adds, divides by the token count where the C code
// multiplies by its reciprocal, ...), so they differ by a few float32 roundings per step.
// Every element must agree within REL_TOL * (|ref| + max |ref| of the tensor), REL_TOL = 1e-6:
// relative 1e-6 for the tensor's large elements, and an absolute floor of 1e-6 of the
// tensor's largest value for small ones (a first moment m = b1 m + (1 - b1) g that nearly
// cancels keeps the rounding error of its terms: seen up to 4.5e-6 of itself, 2e-8 of
// the tensor's scale). The mutations the test is for move elements by 1e-4 and more.
// Measured (printed by the test): 1.5e-7 of (|ref| + scale), AdamW and LAMB.
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/common.h"
#include "models/optim.h"
#include "models/tensor.h"
#include "models/train.h"
#include "tests/ref/optim_step_golden.h"
#include "tests/unit/testutil.h"

#define REL_TOL 1e-6
#define NT GOLDEN_OS_NT
#define NP GOLDEN_OS_NP

// The synthetic task: the arenas (laid out by tensor_layout, so with gaps) and where each
// tensor starts in the header's packed vectors.
typedef struct {
    TensorSpec specs[NT];
    size_t packed[NT];
    float *params, *grads;
    size_t n;
    int calls;          // micro_step calls
    int backward_calls; // of them with backward
    int final_calls;    // of them marked final
    uint64_t lo, hi;    // the samples the micro-batches covered (since the last reset)
    int no_tokens;      // 1: every sample reports 0 loss tokens
    int nan_loss;       // 1: the loss sum is NaN
} SynTask;

// Adds the contributions of samples [s0, s0 + B) to the gradient arena (in sample order,
// as backward ops add into gradients), and reports their tokens; the loss is 0.5 per token.
static double syn_micro_step(void *ctx, uint64_t s0, int B, int backward, int final, long *n_tokens,
                             double *aux_sum) {
    SynTask *t = ctx;
    CU_ASSERT_FATAL(s0 + (uint64_t)B <= (uint64_t)GOLDEN_OS_STEPS * GOLDEN_OS_G);
    CU_ASSERT(B >= 1 && B <= GOLDEN_OS_MICRO);
    long tok = 0;
    for (int b = 0; b < B; b++) {
        const uint64_t s = s0 + (uint64_t)b;
        tok += golden_os_tokens[s];
        if (!backward) continue;
        const float *c = golden_os_contrib + s * NP;
        for (int i = 0; i < NT; i++)
            for (size_t j = 0; j < t->specs[i].n; j++)
                t->grads[t->specs[i].offset + j] += c[t->packed[i] + j];
    }
    t->calls++;
    t->backward_calls += backward != 0;
    t->final_calls += final != 0;
    if (s0 < t->lo) t->lo = s0;
    if (s0 + (uint64_t)B > t->hi) t->hi = s0 + (uint64_t)B;
    if (t->no_tokens) tok = 0;
    *n_tokens = tok;
    *aux_sum = 0.25 * B;  // an auxiliary loss of 0.25 per sample (as SOP reports per sample)
    return t->nan_loss ? NAN : 0.5 * (double)tok;
}

static void syn_init(SynTask *t) {
    memset(t, 0, sizeof *t);
    size_t p = 0;
    for (int i = 0; i < NT; i++) {
        tensor_spec_set(&t->specs[i], golden_os_tensors[i].no_decay, golden_os_tensors[i].ndim,
                        golden_os_tensors[i].d0, golden_os_tensors[i].d1, "%s",
                        golden_os_tensors[i].name);
        t->packed[i] = p;
        p += t->specs[i].n;
    }
    CU_ASSERT_FATAL(p == NP);
    t->n = tensor_layout(t->specs, NT, 0);
    t->params = cx_calloc(t->n, sizeof(float));
    t->grads = cx_calloc(t->n, sizeof(float));
    for (int i = 0; i < NT; i++)
        memcpy(t->params + t->specs[i].offset, golden_os_w0 + t->packed[i],
               t->specs[i].n * sizeof(float));
}

static void syn_free(SynTask *t) {
    free(t->params);
    free(t->grads);
}

static double worst_rel;  // largest |c - ref| / (|ref| + max |ref| of the tensor) seen

// Compares arena a (spec layout) with the packed reference; returns the mismatches and
// prints the first few.
static int compare(const SynTask *t, const float *a, const float *ref, const char *what, int step) {
    int bad = 0;
    for (int i = 0; i < NT; i++) {
        const TensorSpec *s = &t->specs[i];
        const float *r = ref + t->packed[i];
        double scale = 0.0;
        for (size_t j = 0; j < s->n; j++) scale = fmax(scale, fabs((double)r[j]));
        for (size_t j = 0; j < s->n; j++) {
            double c = a[s->offset + j], e = r[j], d = fabs(c - e);
            if (d / (fabs(e) + scale) > worst_rel) worst_rel = d / (fabs(e) + scale);
            if (d <= REL_TOL * (fabs(e) + scale)) continue;
            if (bad++ < 4)
                fprintf(stderr, "step %d %s %s[%zu]: C %.9g torch %.9g (rel %.3g)\n", step + 1,
                        what, s->name, j, c, e, d / fmax(fabs(e), 1e-30));
        }
    }
    return bad;
}

static void run_steps(OptimKind kind, const float *ref_p, const float *ref_m, const float *ref_v,
                      const double *ref_gn, const float *ref_lr) {
    SynTask st;
    syn_init(&st);
    OptimConfig oc = {.kind = kind, .lr = GOLDEN_OS_LR, .beta1 = GOLDEN_OS_BETA1,
                      .beta2 = GOLDEN_OS_BETA2, .eps = GOLDEN_OS_EPS, .weight_decay = GOLDEN_OS_WD,
                      .clip_norm = GOLDEN_OS_CLIP, .schedule = SCHED_LINEAR,
                      .warmup_steps = GOLDEN_OS_WARMUP, .total_steps = GOLDEN_OS_TOTAL,
                      .end_lr = GOLDEN_OS_END_LR, .poly_power = 1.0f,
                      .trust_coef = GOLDEN_OS_TRUST};
    char err[CX_ERRLEN];
    CU_ASSERT_FATAL(optim_config_check(&oc, err) == 0);
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.task = (TrainTask){.ctx = &st, .params = st.params, .grads = st.grads, .n_params = st.n,
                          .specs = st.specs, .n_specs = NT, .micro_batch = GOLDEN_OS_MICRO,
                          .micro_step = syn_micro_step};
    tr.global_batch = GOLDEN_OS_G;
    optim_init(&tr.optim, &oc, st.specs, NT, st.n);
    int clipped = 0, unclipped = 0;
    for (int k = 0; k < GOLDEN_OS_STEPS; k++) {
        StepResult r;
        memset(&r, 0, sizeof r);
        int calls0 = st.calls;
        CU_ASSERT_FATAL(trainer_step(&tr, &r, err) == 0);
        CU_ASSERT_EQUAL(st.calls - calls0, 3);  // micro-batches of 3, 3, 1
        CU_ASSERT_EQUAL(r.step, k + 1);
        long tok = 0;
        for (int s = k * GOLDEN_OS_G; s < (k + 1) * GOLDEN_OS_G; s++) tok += golden_os_tokens[s];
        CU_ASSERT_EQUAL(r.tokens, tok);
        CU_ASSERT(fabs(r.loss - 0.5) < 1e-12);
        CU_ASSERT(fabs(r.aux_loss - 0.25) < 1e-12);
        CU_ASSERT_EQUAL(r.samples, GOLDEN_OS_G);
        CU_ASSERT_EQUAL(r.participants, 1);
        CU_ASSERT_EQUAL(r.lr, ref_lr[k]);
        CU_ASSERT(fabs(r.grad_norm - ref_gn[k]) <= 1e-6 * ref_gn[k]);
        if (r.grad_norm > GOLDEN_OS_CLIP) clipped++;
        else unclipped++;
        int bad = compare(&st, st.params, ref_p + (size_t)k * NP, "param", k);
        bad += compare(&st, tr.optim.m, ref_m + (size_t)k * NP, "m", k);
        bad += compare(&st, tr.optim.v, ref_v + (size_t)k * NP, "v", k);
        CU_ASSERT_EQUAL(bad, 0);
    }
    CU_ASSERT(clipped >= 1 && unclipped >= 1);
    CU_ASSERT_EQUAL(tr.samples_seen, (uint64_t)GOLDEN_OS_STEPS * GOLDEN_OS_G);
    fprintf(stderr, "  %s: worst relative difference from torch %.2g (tolerance %.0e)\n",
            optim_kind_name(kind), worst_rel, REL_TOL);
    optim_free(&tr.optim);
    syn_free(&st);
}

static void test_adamw_torch(void) {
    worst_rel = 0.0;
    run_steps(OPTIM_ADAMW, golden_os_adamw_params, golden_os_adamw_m, golden_os_adamw_v,
              golden_os_adamw_gnorm, golden_os_adamw_lr);
}

static void test_lamb_paper(void) {
    worst_rel = 0.0;
    run_steps(OPTIM_LAMB, golden_os_lamb_params, golden_os_lamb_m, golden_os_lamb_v,
              golden_os_lamb_gnorm, golden_os_lamb_lr);
}

static void test_lars_torch(void) {
    worst_rel = 0.0;
    run_steps(OPTIM_LARS, golden_os_lars_params, golden_os_lars_m, golden_os_lars_v,
              golden_os_lars_gnorm, golden_os_lars_lr);
}

// SCHED_COSINE against the formula evaluated in Python (warm-up, the half cosine, the floor
// after total_steps); LARS without a trust coefficient is refused by name
static void test_cosine_schedule(void) {
    OptimConfig c = {.kind = OPTIM_LARS, .lr = GOLDEN_OS_COS_LR, .beta1 = 0.9f, .beta2 = 0.999f,
                     .eps = 1e-8f, .schedule = SCHED_COSINE, .warmup_steps = GOLDEN_OS_COS_WARMUP,
                     .total_steps = GOLDEN_OS_COS_TOTAL, .end_lr = GOLDEN_OS_COS_END,
                     .trust_coef = 0.001f};
    char err[CX_ERRLEN];
    CU_ASSERT_EQUAL(optim_config_check(&c, err), 0);
    for (int k = 0; k < (int)TU_NELEM(golden_os_cosine_lr); k++) {
        const float got = optim_lr(&c, k), want = golden_os_cosine_lr[k];
        if (fabsf(got - want) > 1e-7f * want) {
            fprintf(stderr, "cosine lr step %d: %.9g, Python %.9g\n", k, got, want);
            CU_FAIL("cosine schedule");
        }
    }
    c.trust_coef = 0.0f;
    CU_ASSERT_EQUAL(optim_config_check(&c, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "optim.trust_coef must be > 0 for lars (got 0)");
}

// task_eval: the loss per token over a range in micro-batches, forward only (no gradient
// is touched, no micro-batch is a step's final one); an empty range is 0, not 0/0.
static void test_task_eval(void) {
    SynTask st;
    syn_init(&st);
    TrainTask k = {.ctx = &st, .params = st.params, .grads = st.grads, .n_params = st.n,
                   .specs = st.specs, .n_specs = NT, .micro_batch = GOLDEN_OS_MICRO,
                   .micro_step = syn_micro_step};
    long nt = -1, want = 0;
    double aux = -1.0;
    for (int s = 2; s < 2 + 7; s++) want += golden_os_tokens[s];
    double loss = task_eval(&k, 2, 7, &nt, &aux);
    CU_ASSERT_EQUAL(st.calls, 3);  // 3, 3, 1
    CU_ASSERT_EQUAL(nt, want);
    CU_ASSERT(fabs(loss - 0.5) < 1e-12);
    CU_ASSERT(fabs(aux - 0.25) < 1e-12);  // per sample
    CU_ASSERT_EQUAL(st.backward_calls, 0);
    CU_ASSERT_EQUAL(st.final_calls, 0);
    for (size_t i = 0; i < st.n; i++)
        if (st.grads[i] != 0.0f) {
            CU_FAIL("task_eval changed a gradient");
            break;
        }
    nt = -1;
    aux = -1.0;
    loss = task_eval(&k, 0, 0, &nt, &aux);
    CU_ASSERT_EQUAL(loss, 0.0);
    CU_ASSERT_EQUAL(nt, 0);
    CU_ASSERT_EQUAL(aux, 0.0);
    CU_ASSERT_EQUAL(st.calls, 3);
    syn_free(&st);
}

// ---- the averager's hooks around a step, and the steps trainer_step refuses ----

typedef struct {
    long lo, hi;         // the share plan hands out
    int plan_rc, sum_rc, after_rc;
    double plan_sleep;   // seconds plan waits (communication, not compute)
    double extra_tokens; // sum adds these to the tokens (another participant's)
    int plans, sums, afters;
} Hooks;

static int hk_plan(void *ctx, long G, long *lo, long *hi, char *err) {
    Hooks *h = ctx;
    h->plans++;
    CU_ASSERT_EQUAL(G, GOLDEN_OS_G);
    if (h->plan_sleep > 0) usleep((useconds_t)(h->plan_sleep * 1e6));
    if (h->plan_rc) return cx_err(err, "plan refused");
    *lo = h->lo;
    *hi = h->hi;
    return 0;
}

static int hk_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    (void)grads;
    (void)n;
    Hooks *h = ctx;
    h->sums++;
    CU_ASSERT_EQUAL(n_stats, STAT_COUNT);
    stats[STAT_TOKENS] += h->extra_tokens;
    stats[STAT_PARTICIPANTS] += 1;
    if (h->sum_rc) return cx_err(err, "sum refused");
    return 0;
}

static int hk_after(void *ctx, Trainer *t, const StepResult *r, char *err) {
    (void)t;
    (void)r;
    Hooks *h = ctx;
    h->afters++;
    if (h->after_rc) return cx_err(err, "after_step refused");
    return 0;
}

// One step of the synthetic task with hooks h (and the task's flags); returns
// trainer_step's status, the result in *r and the error in err.
static int hooked_step(SynTask *st, Hooks *h, StepResult *r, char *err) {
    OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f,
                      .eps = 1e-6f, .schedule = SCHED_CONSTANT};
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.task = (TrainTask){.ctx = st, .params = st->params, .grads = st->grads, .n_params = st->n,
                          .specs = st->specs, .n_specs = NT, .micro_batch = GOLDEN_OS_MICRO,
                          .micro_step = syn_micro_step};
    tr.global_batch = GOLDEN_OS_G;
    tr.avg = (Averager){.ctx = h, .plan_ctx = h, .plan = hk_plan, .sum = hk_sum,
                        .after_step = hk_after};
    optim_init(&tr.optim, &oc, st->specs, NT, st->n);
    memset(r, 0, sizeof *r);
    st->lo = UINT64_MAX;
    st->hi = 0;
    err[0] = 0;
    int rc = trainer_step(&tr, r, err);
    // a step refused before the optimizer changes nothing (after_step runs after it)
    CU_ASSERT_EQUAL(tr.optim.step, rc == 0 || h->after_rc ? 1 : 0);
    optim_free(&tr.optim);
    return rc;
}

static void test_step_hooks(void) {
    SynTask st;
    syn_init(&st);
    char err[CX_ERRLEN];
    StepResult r;
    // the plan's share is what runs; its wait is communication; sum's statistics count
    Hooks h = {.lo = 2, .hi = 5, .plan_sleep = 0.2, .extra_tokens = 1000};
    CU_ASSERT_EQUAL_FATAL(hooked_step(&st, &h, &r, err), 0);
    CU_ASSERT(st.lo == 2 && st.hi == 5);
    CU_ASSERT_EQUAL(r.samples, 3);
    long tok = 1000;
    for (int s = 2; s < 5; s++) tok += golden_os_tokens[s];
    CU_ASSERT_EQUAL(r.tokens, tok);
    CU_ASSERT_EQUAL(r.participants, 2);
    CU_ASSERT(h.plans == 1 && h.sums == 1 && h.afters == 1);
    CU_ASSERT(r.comm_s >= 0.2);
    CU_ASSERT(r.compute_s < 0.2);  // microseconds of work; the plan's 0.2 s is not in it
    // an empty share: no samples, no participant of its own
    memset(st.grads, 0, st.n * sizeof(float));
    h = (Hooks){.lo = 4, .hi = 4, .extra_tokens = 10};
    CU_ASSERT_EQUAL_FATAL(hooked_step(&st, &h, &r, err), 0);
    CU_ASSERT(r.samples == 0 && r.tokens == 10 && r.participants == 1);
    // refusals: each hook's error comes back; a share outside the batch; no tokens; NaN
    h = (Hooks){.lo = 0, .hi = 7, .plan_rc = 1};
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "plan refused");
    CU_ASSERT_EQUAL(h.sums, 0);
    h = (Hooks){.lo = 3, .hi = 8};
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "step 1: planned share [3, 8) lies outside the global batch of 7");
    h = (Hooks){.lo = 3, .hi = 2};
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "step 1: planned share [3, 2) lies outside the global batch of 7");
    h = (Hooks){.lo = -1, .hi = 2};
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "step 1: planned share [-1, 2) lies outside the global batch of 7");
    h = (Hooks){.lo = 0, .hi = 7, .sum_rc = 1};
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "sum refused");
    h = (Hooks){.lo = 0, .hi = 7, .after_rc = 1};
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "after_step refused");
    st.no_tokens = 1;
    h = (Hooks){.lo = 0, .hi = 7};
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "step 1: the global batch has no loss tokens");
    st.no_tokens = 0;
    st.nan_loss = 1;
    CU_ASSERT_EQUAL(hooked_step(&st, &h, &r, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "step 1: non-finite loss"));
    syn_free(&st);
}

// moment_steps (a volunteer's inner optimizer after its moments are zeroed): Adam's bias
// correction counts from the zeroing, not from the run's step. Two steps of an optimizer at
// run step 5 with moment_steps = 0 equal two steps of a fresh one (constant lr).
static void test_moment_steps(void) {
    SynTask st;
    syn_init(&st);
    OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f,
                      .eps = 1e-8f, .schedule = SCHED_CONSTANT};
    Optim fresh, later;
    optim_init(&fresh, &oc, st.specs, NT, st.n);
    optim_init(&later, &oc, st.specs, NT, st.n);
    later.step = 5;
    later.moment_steps = 0;
    float *pa = cx_calloc(st.n, sizeof(float)), *pb = cx_calloc(st.n, sizeof(float));
    float *g = cx_calloc(st.n, sizeof(float));
    memcpy(pa, st.params, st.n * sizeof(float));
    memcpy(pb, st.params, st.n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < st.n; i++) g[i] = (float)((i % 7) - 3) * 0.01f * (float)(k + 1);
        optim_step_with_norm(&fresh, pa, g, 0.0);
        for (size_t i = 0; i < st.n; i++) g[i] = (float)((i % 7) - 3) * 0.01f * (float)(k + 1);
        optim_step_with_norm(&later, pb, g, 0.0);
    }
    CU_ASSERT_EQUAL(later.moment_steps, 2);
    CU_ASSERT_EQUAL(later.step, 7);
    CU_ASSERT_EQUAL(memcmp(pa, pb, st.n * sizeof(float)), 0);
    free(pa);
    free(pb);
    free(g);
    optim_free(&fresh);
    optim_free(&later);
    syn_free(&st);
}

int main(void) {
    static const TuTest tests[] = {
        {"moment_steps_bias_correction", test_moment_steps},
        {"step_hooks_and_refusals", test_step_hooks},
        {"adamw_step_torch", test_adamw_torch},
        {"lamb_step_paper", test_lamb_paper},
        {"lars_step_apex_larc_torch_sgd", test_lars_torch},
        {"cosine_schedule", test_cosine_schedule},
        {"task_eval", test_task_eval},
    };
    return tu_run_suite("train_step", tests, sizeof tests / sizeof tests[0]);
}
