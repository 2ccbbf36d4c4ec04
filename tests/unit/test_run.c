// test_run.c: the run layer: the replica-check rule, the recipe table and configuration
// texts, the Averager's after-step call in trainer_step, and the run loop's schedule (stop
// votes, replica checks, hooks, checkpoints and the finished mark) against a scripted
// averaging strategy and scripted collectives. The replica is a real ALBERT one without
// data (REPLICA_BARE, as the bridge builds it); the strategy supplies the summed gradient
// and statistics, as the bridge's does.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/run/run.h"
#include "io/tasks/recipe.h"
#include "models/albert.h"
#include "models/common.h"
#include "models/encdec.h"
#include "tests/unit/testutil.h"

// ---- the replica-check rule ----

static void test_check_step_rule(void) {
    TrainSettings t = {.steps = 100, .checkpoint_every = 30, .replica_check_every = 25};
    static const long yes[] = {25, 30, 50, 60, 75, 90, 100};
    static const long no[] = {1, 24, 26, 31, 59, 99};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) CU_ASSERT_EQUAL(run_check_step(&t, yes[i], 0), 1);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) CU_ASSERT_EQUAL(run_check_step(&t, no[i], 0), 0);
    CU_ASSERT_EQUAL(run_check_step(&t, 7, 1), 1);  // a stop
    TrainSettings end_only = {.steps = 10};
    for (long s = 1; s < 10; s++) CU_ASSERT_EQUAL(run_check_step(&end_only, s, 0), 0);
    CU_ASSERT_EQUAL(run_check_step(&end_only, 10, 0), 1);
}

// ---- the recipe table ----

static char *default_text(const char *name) {
    Replica r;
    recipe_config_init(&r, recipe_find(name));
    char *text = recipe_config_text(&r);
    recipe_free(&r);
    return text;
}

static void test_recipe_table(void) {
    const Recipe *albert = recipe_find("albert"), *encdec = recipe_find("encdec");
    const Recipe *swav = recipe_find("swav");
    CU_ASSERT_PTR_NOT_NULL_FATAL(albert);
    CU_ASSERT_PTR_NOT_NULL_FATAL(encdec);
    CU_ASSERT_PTR_NOT_NULL_FATAL(swav);
    CU_ASSERT_PTR_NULL(recipe_find("resnet"));
    CU_ASSERT_STRING_EQUAL(albert->name, "albert");
    CU_ASSERT_STRING_EQUAL(encdec->name, "encdec");
    CU_ASSERT_STRING_EQUAL(swav->name, "swav");
    char *at = default_text("albert"), *et = default_text("encdec"), *st = default_text("swav");
    CU_ASSERT_PTR_EQUAL(recipe_for_config(at), albert);
    CU_ASSERT_PTR_EQUAL(recipe_for_config(et), encdec);
    CU_ASSERT_PTR_EQUAL(recipe_for_config(st), swav);  // exactly one recipe claims each text
    CU_ASSERT_PTR_EQUAL(recipe_for_config("[swav]\nepsilon = 0.05\n"), swav);
    CU_ASSERT_PTR_NOT_NULL(strstr(st, "replica_check_every = 0\n"));
    free(st);
    CU_ASSERT_PTR_EQUAL(recipe_for_config("  [decoder]\nnum_layers = 2\n"), encdec);
    CU_ASSERT_PTR_EQUAL(recipe_for_config("[decoderx]\n"), albert);
    CU_ASSERT_PTR_EQUAL(recipe_for_config("[model]\n; [decoder] in a comment\n"), albert);
    // both configurations carry the same [train] keys (one definition)
    CU_ASSERT_PTR_NOT_NULL(strstr(at, "replica_check_every = 50\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(et, "replica_check_every = 0\n"));
    free(at);
    free(et);
}

// A configuration text read back the way the bridge and volunteers read it gives the same
// text; overrides pass through the caller's filter.
static int allow_data_only(const char *set, char *err) {
    if (strncmp(set, "data.", 5) != 0) return cx_err(err, "%s: not a data key", set);
    return 0;
}

static void test_config_from_text(void) {
    static const char *const names[] = {"albert", "encdec"};
    char err[CX_ERRLEN];
    for (int i = 0; i < 2; i++) {
        Replica a, b;
        recipe_config_init(&a, recipe_find(names[i]));
        CU_ASSERT_EQUAL(recipe_config_set(&a, "train.steps=77", err), 0);
        char *text = recipe_config_text(&a);
        recipe_config_init(&b, recipe_for_config(text));
        CU_ASSERT_PTR_EQUAL(b.recipe, a.recipe);
        CU_ASSERT_EQUAL(recipe_config_from_text(&b, text, "test", NULL, 0, NULL, err), 0);
        CU_ASSERT_EQUAL(b.train->steps, 77);
        char *back = recipe_config_text(&b);
        CU_ASSERT_STRING_EQUAL(back, text);
        free(back);
        recipe_free(&b);
        const char *ok[] = {"data.train=/elsewhere/train.h5"};
        recipe_config_init(&b, a.recipe);
        CU_ASSERT_EQUAL(recipe_config_from_text(&b, text, "test", ok, 1, allow_data_only, err), 0);
        CU_ASSERT_STRING_EQUAL(b.data_train, "/elsewhere/train.h5");
        recipe_free(&b);
        const char *refused[] = {"train.steps=5"};
        recipe_config_init(&b, a.recipe);
        CU_ASSERT_EQUAL(recipe_config_from_text(&b, text, "test", refused, 1, allow_data_only, err), -1);
        CU_ASSERT_STRING_EQUAL(err, "train.steps=5: not a data key");
        recipe_free(&b);
        recipe_config_init(&b, a.recipe);
        CU_ASSERT_EQUAL(recipe_config_from_text(&b, "[train]\nsteps = 0\n", "test", NULL, 0, NULL, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "train.steps must be >= 1"));
        recipe_free(&b);
        free(text);
        recipe_free(&a);
    }
}

// ---- a scripted averaging strategy ----

typedef struct {
    float *snapshot;      // the parameters as sum saw them (before the optimizer step)
    size_t n;
    int after_calls, fail_after;
    int params_changed;   // after_step saw parameters that differ from the snapshot
    long seen_step;       // t->optim.step in after_step
    double seen_loss;
} Script;

static int script_plan(void *ctx, long global_batch, long *lo, long *hi, char *err) {
    (void)ctx, (void)global_batch, (void)err;
    *lo = *hi = 0;  // no samples here: the strategy brings the whole batch
    return 0;
}

static int script_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    (void)ctx, (void)err;
    CU_ASSERT_EQUAL(n_stats, STAT_COUNT);
    for (size_t i = 0; i < n; i++) grads[i] = 0.01f * (float)((i % 7) + 1);
    stats[STAT_LOSS_SUM] = 25.0;
    stats[STAT_TOKENS] = 10.0;
    stats[STAT_SAMPLES] = 2.0;
    stats[STAT_PARTICIPANTS] = 1.0;
    return 0;
}

static int script_after(void *ctx, Trainer *t, const StepResult *r, char *err) {
    Script *s = ctx;
    s->after_calls++;
    s->params_changed = memcmp(s->snapshot, t->task.params, s->n * sizeof(float)) != 0;
    s->seen_step = t->optim.step;
    s->seen_loss = r->loss;
    if (s->fail_after) return cx_err(err, "outer step failed at step %ld", r->step);
    memcpy(s->snapshot, t->task.params, s->n * sizeof(float));
    return 0;
}

// A small ALBERT replica without data, steps and checks as given.
static void bare_replica(Replica *r, const char *steps, const char *ckpt_every, const char *check_every,
                         const char *run_dir) {
    char err[CX_ERRLEN];
    recipe_config_init(r, recipe_find("albert"));
    const char *sets[] = {"model.vocab_size=64", "model.embedding_size=16", "model.hidden_size=32",
                          "model.num_heads=2", "model.intermediate_size=64", "model.num_layers=1",
                          "data.seq_len=16", "train.global_batch=2", steps, ckpt_every, check_every};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        CU_ASSERT_EQUAL_FATAL(recipe_config_set(r, sets[i], err), 0);
    snprintf(r->run_dir, CFG_PATH_LEN, "%s", run_dir);
    CU_ASSERT_EQUAL_FATAL(r->recipe->config_check(r->cfg, err), 0);
    CU_ASSERT_EQUAL_FATAL(recipe_build(r, REPLICA_BARE, err), 0);
    CU_ASSERT_EQUAL(r->tr.task.micro_batch, 1);
    CU_ASSERT_PTR_NULL(r->tr.task.micro_step);  // no data
}

static Averager script_averager(Script *s, Replica *r) {
    s->n = r->tr.task.n_params;
    s->snapshot = cx_calloc(s->n, sizeof(float));
    memcpy(s->snapshot, r->tr.task.params, s->n * sizeof(float));
    return (Averager){.ctx = s, .sum = script_sum, .plan = script_plan, .plan_ctx = s,
                      .after_step = script_after, .rank = 0, .n_ranks = 1};
}

static void test_after_step(void) {
    Replica r;
    bare_replica(&r, "train.steps=5", "train.checkpoint_every=0", "train.replica_check_every=0", "unused");
    Script s = {0};
    Averager a = script_averager(&s, &r);
    recipe_wire_averager(&r, &a);
    StepResult res;
    char err[CX_ERRLEN];
    CU_ASSERT_EQUAL(trainer_step(&r.tr, &res, err), 0);
    CU_ASSERT_EQUAL(s.after_calls, 1);
    CU_ASSERT_EQUAL(s.params_changed, 1);  // called after the optimizer step
    CU_ASSERT_EQUAL(s.seen_step, 1);
    CU_ASSERT_DOUBLE_EQUAL(s.seen_loss, 2.5, 1e-12);  // 25 over 10 tokens
    CU_ASSERT_EQUAL(r.tr.samples_seen, 2);
    // ALBERT's throughput counts every sequence's data.seq_len tokens
    CU_ASSERT_DOUBLE_EQUAL(r.recipe->step_tokens(&r, &res, 1), 2.0 * 16, 0);
    s.fail_after = 1;
    CU_ASSERT_EQUAL(trainer_step(&r.tr, &res, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "outer step failed at step 2");
    free(s.snapshot);
    recipe_free(&r);
}

// ---- the strategy's overlap hooks in the model's backward ----

typedef struct {
    size_t n, covered;  // the arena's size; elements reported final
    int n_ready, n_progress, bad;
} HookCount;

static void count_ready(void *ctx, size_t offset, size_t count) {
    HookCount *h = ctx;
    if (offset + count > h->n) h->bad++;
    h->covered += count;
    h->n_ready++;
}

static void count_progress(void *ctx) { ((HookCount *)ctx)->n_progress++; }

// A small replica of each recipe without data (micro-batches of one).
static void small_bare_replica(Replica *r, const char *name) {
    static const char *const common[] = {"model.vocab_size=64", "model.embedding_size=16",
                                         "model.hidden_size=32", "model.num_heads=2",
                                         "model.intermediate_size=64", "model.num_layers=1"};
    static const char *const encdec[] = {"decoder.num_layers=1", "decoder.num_heads=2",
                                         "decoder.intermediate_size=64", "decoder.max_position=16",
                                         "data.src_len=12", "data.tgt_len=8", "generate.max_len=8"};
    char err[CX_ERRLEN];
    recipe_config_init(r, recipe_find(name));
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
        CU_ASSERT_EQUAL_FATAL(recipe_config_set(r, common[i], err), 0);
    if (!strcmp(name, "encdec")) {
        for (size_t i = 0; i < sizeof encdec / sizeof encdec[0]; i++)
            CU_ASSERT_EQUAL_FATAL(recipe_config_set(r, encdec[i], err), 0);
    } else {
        CU_ASSERT_EQUAL_FATAL(recipe_config_set(r, "data.seq_len=12", err), 0);
    }
    CU_ASSERT_EQUAL_FATAL(r->recipe->config_check(r->cfg, err), 0);
    CU_ASSERT_EQUAL_FATAL(recipe_build(r, REPLICA_BARE, err), 0);
}

// One final micro-batch (B=1) forward and backward through the replica's model.
static void backward_once(Replica *r) {
    int32_t src[12], mask[12], tgt[12];
    for (int t = 0; t < 12; t++) {
        src[t] = 5 + (int32_t)((t * 7) % 59);
        mask[t] = 1;
        tgt[t] = t % 3 == 1 ? src[t] : -1;  // ALBERT: masked positions; unused by encdec
    }
    if (!strcmp(r->recipe->name, "albert")) {
        AlbertBatch b = {.B = 1, .T = 12, .input_ids = src, .attention_mask = mask, .targets = tgt,
                         .final_micro = 1};
        long n_sel = 0;
        double sop = 0;
        albert_step(r->model, &b, 1, 1, 7, &n_sel, &sop);
    } else {
        int32_t y[8] = {9, 10, 11, 12, ED_EOS, ED_PAD, ED_PAD, ED_PAD};
        EncDecBatch b = {.B = 1, .Ts = 12, .Tt = 8, .src = src, .tgt = y, .final_micro = 1};
        long n_tok = 0;
        encdec_step(r->model, &b, 1, 1, 7, &n_tok);
    }
}

// recipe_wire_averager hands the strategy's ready/progress to the model's backward, which
// reports every gradient element final once; a strategy without hooks leaves the backward
// without any, whatever was wired before.
static void test_wire_hooks(void) {
    static const char *const names[] = {"albert", "encdec"};
    for (int i = 0; i < 2; i++) {
        Replica r;
        small_bare_replica(&r, names[i]);
        HookCount h = {.n = r.tr.task.n_params};
        Averager a = {.ctx = &h, .ready = count_ready, .progress = count_progress, .rank = 0, .n_ranks = 1};
        recipe_wire_averager(&r, &a);
        CU_ASSERT_PTR_EQUAL(r.tr.avg.ctx, &h);
        CU_ASSERT(r.tr.avg.ready == count_ready && r.tr.avg.progress == count_progress);
        backward_once(&r);
        CU_ASSERT_EQUAL(h.bad, 0);
        CU_ASSERT(h.n_ready > 1);
        CU_ASSERT_EQUAL(h.covered, r.tr.task.n_params);
        CU_ASSERT(h.n_progress > 0);
        HookCount before = h;
        Averager none = {.rank = 0, .n_ranks = 1};
        recipe_wire_averager(&r, &none);
        backward_once(&r);
        CU_ASSERT_EQUAL(h.n_ready, before.n_ready);
        CU_ASSERT_EQUAL(h.n_progress, before.n_progress);
        recipe_free(&r);
    }
}

// ---- the run loop's schedule ----

typedef struct {
    int votes, stop_at;       // stop_vote calls; vote 1 from this step on (0: never)
    long checks[16];
    int n_checks, fail_check_at;
    int hook_calls, hook_stop_at;
    long *step;               // the trainer's step count
} Comm;

static int comm_vote(void *ctx, int stop, char *err) {
    (void)err;
    Comm *c = ctx;
    c->votes++;
    return stop || (c->stop_at > 0 && *c->step >= c->stop_at);
}

static int comm_check(void *ctx, const float *params, size_t n, long step, char *err) {
    (void)params, (void)n;
    Comm *c = ctx;
    if (c->n_checks < 16) c->checks[c->n_checks++] = step;
    if (c->fail_check_at == step) return cx_err(err, "replicas differ at step %ld", step);
    return 0;
}

static int loop_hook(void *ctx, const StepResult *r, char *err) {
    (void)err;
    Comm *c = ctx;
    c->hook_calls++;
    return c->hook_stop_at > 0 && r->step >= c->hook_stop_at;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int loop(Replica *r, Comm *c, int writer, volatile sig_atomic_t *flag, char *err) {
    Script s = {0};
    c->step = &r->tr.optim.step;
    RunLoop L = {.tool = "test_run", .rep = r, .avg = script_averager(&s, r), .writer = writer, .quiet = 1, .cfg_text = "[model]\n",
                 .stop_flag = flag, .after_step = loop_hook, .ctx = c,
                 .comm = {.ctx = c, .rank = 0, .size = 1, .stop_vote = comm_vote, .check_replicas = comm_check}};
    int rc = run_loop(&L, err);
    CU_ASSERT_EQUAL(s.after_calls, (int)r->tr.optim.step);
    free(s.snapshot);
    return rc;
}

static void test_loop_to_the_end(void) {
    char dir[256], err[CX_ERRLEN];
    CU_ASSERT_EQUAL_FATAL(tu_make_tmpdir(dir, sizeof dir, "test_run"), 0);
    Replica r;
    bare_replica(&r, "train.steps=7", "train.checkpoint_every=5", "train.replica_check_every=3", dir);
    Comm c = {0};
    CU_ASSERT_EQUAL(loop(&r, &c, 1, NULL, err), RUN_FINISHED);
    CU_ASSERT_EQUAL(r.tr.optim.step, 7);
    CU_ASSERT_EQUAL(c.votes, 7);
    CU_ASSERT_EQUAL(c.hook_calls, 7);
    CU_ASSERT_EQUAL_FATAL(c.n_checks, 4);  // every 3rd step, the checkpoint step, the last
    CU_ASSERT_EQUAL(c.checks[0], 3);
    CU_ASSERT_EQUAL(c.checks[1], 5);
    CU_ASSERT_EQUAL(c.checks[2], 6);
    CU_ASSERT_EQUAL(c.checks[3], 7);
    CU_ASSERT(file_exists(tu_path(dir, "checkpoint-000005.h5")));
    CU_ASSERT(file_exists(tu_path(dir, "checkpoint-000007.h5")));
    CU_ASSERT(!file_exists(tu_path(dir, "checkpoint-000006.h5")));
    CU_ASSERT(file_exists(tu_path(dir, "finished")));
    recipe_free(&r);
    tu_rm_tree(dir);
}

static void test_loop_stops(void) {
    char dir[256], err[CX_ERRLEN];
    CU_ASSERT_EQUAL_FATAL(tu_make_tmpdir(dir, sizeof dir, "test_run"), 0);
    // a stop vote at step 4: checkpoint and replica check there, no finished mark
    Replica r;
    bare_replica(&r, "train.steps=9", "train.checkpoint_every=0", "train.replica_check_every=0", dir);
    Comm c = {.stop_at = 4};
    CU_ASSERT_EQUAL(loop(&r, &c, 1, NULL, err), RUN_STOPPED);
    CU_ASSERT_EQUAL(r.tr.optim.step, 4);
    CU_ASSERT_EQUAL_FATAL(c.n_checks, 1);
    CU_ASSERT_EQUAL(c.checks[0], 4);
    CU_ASSERT(file_exists(tu_path(dir, "checkpoint-000004.h5")));
    CU_ASSERT(!file_exists(tu_path(dir, "finished")));
    recipe_free(&r);
    // a signal's flag: the vote carries it, the loop stops after that step
    static volatile sig_atomic_t flag = 15;
    bare_replica(&r, "train.steps=9", "train.checkpoint_every=0", "train.replica_check_every=0", dir);
    c = (Comm){0};
    CU_ASSERT_EQUAL(loop(&r, &c, 0, &flag, err), RUN_STOPPED);
    CU_ASSERT_EQUAL(r.tr.optim.step, 1);
    recipe_free(&r);
    // the participant's hook asks to stop at step 2: no further step
    bare_replica(&r, "train.steps=9", "train.checkpoint_every=0", "train.replica_check_every=0", dir);
    c = (Comm){.hook_stop_at = 2};
    CU_ASSERT_EQUAL(loop(&r, &c, 0, NULL, err), RUN_STOPPED);
    CU_ASSERT_EQUAL(r.tr.optim.step, 2);
    CU_ASSERT_EQUAL(c.hook_calls, 2);
    recipe_free(&r);
    // a failed replica check ends the run with its message, before the step's hook
    bare_replica(&r, "train.steps=9", "train.checkpoint_every=0", "train.replica_check_every=2", dir);
    c = (Comm){.fail_check_at = 4};
    CU_ASSERT_EQUAL(loop(&r, &c, 0, NULL, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "replicas differ at step 4");
    CU_ASSERT_EQUAL(c.hook_calls, 3);
    recipe_free(&r);
    tu_rm_tree(dir);
}

int main(void) {
    static const TuTest tests[] = {
        {"replica-check rule", test_check_step_rule},
        {"recipe table", test_recipe_table},
        {"configuration texts", test_config_from_text},
        {"Averager after_step", test_after_step},
        {"overlap hooks in the backward", test_wire_hooks},
        {"run loop to the end", test_loop_to_the_end},
        {"run loop stops", test_loop_stops},
    };
    return tu_run_suite("run", tests, sizeof tests / sizeof tests[0]);
}
