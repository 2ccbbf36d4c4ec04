// tp_run.c: a tensor-parallel run of conflux-train (see tp_run.h).
#include "mpi/tp_run.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "mpi/dp.h"
#include "mpi/hybrid_internal.h"
#include "mpi/tp_albert.h"

struct TpRun {
    HybridComm *h;
    int D, d;                  // replicas, this rank's
    MPI_Comm grid_comm, dp_comm;
    TpGrid g;
    TpAlbert *m;               // the model (tp_run_engine's create)
    DpComm *dp;                // the sum over dp_comm (D > 1)
    int bridged;               // a bridge rank in the job: replica 0 exchanges with it
    float *full;               // trainer 0 with a bridge: the whole gradient arena
    AlbertEngine engine;
};

static int grid_root(const TpRun *t) { return t->g.myrow == 0 && t->g.mycol == 0; }

TpRun *tp_run_create(HybridComm *h, const TpSettings *tp, char *err) {
    if (tp_grid_check(h->n_trainers, tp->rows, tp->cols, err) != 0) return NULL;
    TpRun *t = cx_calloc(1, sizeof *t);
    t->h = h;
    t->bridged = h->bridge_rank >= 0;
    if (tp_layout(h->trainers, tp->rows, tp->cols, &t->grid_comm, &t->dp_comm, err) != 0 ||
        tp_grid_create(&t->g, t->grid_comm, tp->rows, tp->cols, err) != 0) {
        free(t);  // tp_grid_check passed: neither fails (they abort on MPI failures)
        return NULL;
    }
    MPI_CHECK(h->trainers, MPI_Comm_size(t->dp_comm, &t->D));
    MPI_CHECK(h->trainers, MPI_Comm_rank(t->dp_comm, &t->d));
    MPI_CHECK(t->dp_comm, MPI_Comm_set_errhandler(t->dp_comm, MPI_ERRORS_RETURN));
    return t;
}

void tp_run_free(TpRun *t) {
    if (!t) return;
    if (t->dp) dp_free(t->dp);
    tp_grid_free(&t->g);
    MPI_Comm_free(&t->grid_comm);
    MPI_Comm_free(&t->dp_comm);
    free(t->full);
    free(t);
}

int tp_run_replicas(const TpRun *t) { return t->D; }
int tp_run_replica(const TpRun *t) { return t->d; }
size_t tp_run_n_whole(const TpRun *t) { return tp_albert_n_full(t->m); }

// ---- the engine (io/tasks/mlm.h) ----

static void *engine_create(void *ctx, const AlbertConfig *cfg, int max_B, int T, uint64_t init_seed,
                           char *err) {
    TpRun *t = ctx;
    CHECK(!t->m, "tp_run: one model per run");
    if (tp_albert_check(cfg, &t->g, err) != 0) return NULL;
    t->m = tp_albert_create_mlm(cfg, &t->g, max_B, T, 0);
    // the initial parameters are albert_create's: grid rank 0 builds the whole model once
    // (activations for one sequence) and deals it out
    Albert *whole = grid_root(t) ? albert_create(cfg, 1, T, init_seed) : NULL;
    tp_albert_load(t->m, whole ? albert_params(whole) : NULL);
    if (whole) albert_free(whole);
    return t->m;
}

static void engine_free(void *ctx, void *model) {
    TpRun *t = ctx;
    tp_albert_free(model);
    t->m = NULL;
}

static void engine_arena(void *model, float **params, float **grads, size_t *n_params,
                         const TensorSpec **specs, int *n_specs) {
    TpAlbert *m = model;
    *params = tp_albert_params(m);
    *grads = tp_albert_grads(m);
    *n_params = tp_albert_n_local(m);
    *specs = tp_albert_local_specs(m);
    *n_specs = tp_albert_n_specs(m);
}

static void engine_hooks(void *model, void (*ready)(void *ctx, size_t offset, size_t count),
                         void (*progress)(void *ctx), void *ctx) {
    tp_albert_set_backward_hooks(model, ready, progress, ctx);
}

static double engine_step(void *model, const AlbertBatch *b, int train, int backward, uint64_t seed,
                          long *n_tokens) {
    return tp_albert_step(model, b, train, backward, seed, n_tokens);
}

const AlbertEngine *tp_run_engine(TpRun *t) {
    t->engine = (AlbertEngine){.ctx = t, .create = engine_create, .free = engine_free,
                               .arena = engine_arena, .step = engine_step, .set_hooks = engine_hooks};
    return &t->engine;
}

// ---- the averager ----

// MPI failure on a run's communicator -> -1 with the call and the rank in err.
static int mpi_fail(const TpRun *t, int rc, const char *what, char *err) {
    return hybrid_mpi_fail(t->h, rc, what, err);
}

// MPI counts are int: large arrays go in pieces.
static int bcast_floats(const TpRun *t, MPI_Comm comm, float *x, size_t n, char *err) {
    const size_t piece = (size_t)1 << 28;
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        int rc = MPI_Bcast(x + off, (int)k, MPI_FLOAT, 0, comm);
        if (rc != MPI_SUCCESS) return mpi_fail(t, rc, "MPI_Bcast of the summed gradients", err);
    }
    return 0;
}

// Averager.sum: the grid completes its gradients, the replicas sum them (and the stats) over
// dp_comm; with a bridge, replica 0's grid gathers the sum to trainer 0, which sums it with
// the bridge's, deals it back, and replica 0 hands the result to the other replicas.
static int tp_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    TpRun *t = ctx;
    CHECK(grads == tp_albert_grads(t->m) && n == tp_albert_n_local(t->m), "tp_sum: not the model's arena");
    if (tp_albert_reduce_grads(t->m, err) != 0) return -1;
    // the dealt matrices' sums started during the backward (the hooks); the rest starts now
    if (t->dp && dp_finish(t->dp, stats, n_stats, err) != 0) return -1;
    if (!t->bridged) return 0;
    if (t->d == 0) {
        tp_albert_collect(t->m, grads, t->full);
        int rc = grid_root(t) ? hybrid_tp_pair_sum(t->h, t->full, tp_albert_n_full(t->m), stats, n_stats, err) : 0;
        // every rank of the grid learns trainer 0's outcome before the deal (a collective)
        if (tp_grid_agree(&t->g, rc, err) != 0) return -1;
        tp_albert_deal(t->m, t->full, grads);
        MPI_CHECK(t->g.comm, MPI_Bcast(stats, n_stats, MPI_DOUBLE, 0, t->g.comm));
    }
    if (t->D > 1) {
        if (bcast_floats(t, t->dp_comm, grads, n, err) != 0) return -1;
        int rc = MPI_Bcast(stats, n_stats, MPI_DOUBLE, 0, t->dp_comm);
        if (rc != MPI_SUCCESS) return mpi_fail(t, rc, "MPI_Bcast of the step's statistics", err);
    }
    return 0;
}

// The overlap hooks: the data-parallel sum of each dealt matrix starts once the backward
// has finished it (tp_albert_set_backward_hooks).
static void tp_begin(void *ctx) { dp_begin_step(((TpRun *)ctx)->dp); }
static void tp_ready(void *ctx, size_t offset, size_t count) { dp_mark_ready(((TpRun *)ctx)->dp, offset, count); }
static void tp_progress(void *ctx) { dp_progress(((TpRun *)ctx)->dp); }

static void tp_traffic(const void *ctx, double *sent, double *recv) {
    const TpRun *t = ctx;
    *sent = *recv = 0;
    if (t->dp) {
        const DpCounters *c = dp_counters(t->dp);
        *sent = c->bytes_sent;
        *recv = c->bytes_recv;
    }
}

Averager tp_run_averager(TpRun *t, Replica *rep) {
    CHECK(t->m, "tp_run_averager before the model");
    Trainer *tr = &rep->tr;
    optim_set_reduce_norms(&tr->optim, tp_albert_reduce_norms, t->m);
    if (t->D > 1)  // buckets in the order the backward finishes the local tensors
        t->dp = dp_create_split(t->dp_comm, tr->task.grads, tr->task.n_params, tr->task.specs,
                                tr->task.n_specs, (size_t)4 << 20, 0, tp_albert_split(t->m));
    const int leader = t->d == 0 && grid_root(t);
    if (t->bridged && leader) t->full = cx_calloc(tp_albert_n_full(t->m), sizeof(float));
    hybrid_create_tp_pair(t->h, leader ? t->full : NULL, leader ? tp_albert_n_full(t->m) : 0,
                          leader ? tp_albert_full_specs(t->m) : NULL, leader ? tp_albert_n_specs(t->m) : 0,
                          t->D, t->d);
    Averager a = {.ctx = t, .sum = tp_sum, .traffic = tp_traffic, .rank = t->d, .n_ranks = t->D};
    if (t->dp) {
        a.begin = tp_begin;
        a.ready = tp_ready;
        a.progress = tp_progress;
    }
    hybrid_plan_share(t->h, &a, &tr->optim.step);
    return a;
}

void tp_run_send_state(TpRun *t, Replica *rep) {
    if (!t->bridged || t->d != 0) return;
    const Trainer *tr = &rep->tr;
    float *whole[3];
    tp_albert_collect_state(t->m, tr, whole);
    if (grid_root(t)) {
        int64_t meta[3] = {tr->optim.step, (int64_t)tr->samples_seen, (int64_t)rep->n_examples};
        hybrid_tp_send_state(t->h, whole[0], whole[1], whole[2], tp_albert_n_full(t->m), meta);
    }
    for (int k = 0; k < 3; k++) free(whole[k]);
}

// ---- checkpoints ----

int tp_run_save(void *save_ctx, const Trainer *tr, const char *run_dir, const char *writer,
                const char *cfg_text, long seed, char *err) {
    TpRun *t = save_ctx;
    if (t->d != 0) return 0;  // replica 0 writes; the replicas are identical (replica checks)
    return tp_albert_save_trainer(t->m, tr, run_dir, writer, cfg_text, seed, err);
}

int tp_run_load(TpRun *t, Replica *rep, const char *path, char *err) {
    return tp_albert_load_trainer(t->m, &rep->tr, path, err);
}

// ---- the run loop's collectives ----

static int run_sum(void *ctx, double *v, int n, char *err) {
    TpRun *t = ctx;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, t->dp_comm);
    if (rc != MPI_SUCCESS) return mpi_fail(t, rc, "MPI_Allreduce over the replicas", err);
    return 0;
}

static int run_stop_vote(void *ctx, int stop, char *err) {
    TpRun *t = ctx;
    return hybrid_stop_vote(t->h, stop, err);
}

// The replicas' blocks at each grid position agree; with a bridge, replica 0's gathered
// model agrees with the bridge's.
static int run_check(void *ctx, const float *params, size_t n, long step, char *err) {
    TpRun *t = ctx;
    if (t->D > 1 && dp_check_replicas(t->dp_comm, params, n, step, err) != 0) return -1;
    if (!t->bridged || t->d != 0) return 0;
    // the gradient sum's whole arena is free between steps: trainer 0 gathers into it
    tp_albert_collect(t->m, params, t->full);
    return grid_root(t) ? hybrid_check_replicas(t->h, t->full, tp_albert_n_full(t->m), step, err) : 0;
}

RunComm tp_run_comm(TpRun *t) {
    RunComm c = {.ctx = t, .rank = t->d, .size = t->D, .stop_vote = run_stop_vote,
                 .check_replicas = run_check};
    if (t->D > 1) c.sum = run_sum;
    return c;
}
