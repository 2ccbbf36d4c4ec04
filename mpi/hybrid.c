// hybrid.c: trainer ranks plus one bridge rank in one MPI job (see hybrid.h).
#include "mpi/hybrid.h"

#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "mpi/dp.h"
#include "mpi/hybrid_internal.h"

HybridComm *hybrid_init(int *argc, char ***argv, int role) {
    int provided, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "conflux: fatal: MPI_Init failed\n");
        exit(1);
    }
    HybridComm *h = cx_calloc(1, sizeof *h);
    h->world = MPI_COMM_WORLD;
    h->worker = h->leaders = h->outer = h->pair = MPI_COMM_NULL;
    MPI_CHECK(h->world, MPI_Comm_rank(h->world, &h->rank));
    MPI_CHECK(h->world, MPI_Comm_size(h->world, &h->size));
    int *roles = cx_calloc((size_t)h->size, sizeof *roles);
    MPI_CHECK(h->world, MPI_Allgather(&role, 1, MPI_INT, roles, 1, MPI_INT, h->world));
    int n_bridges = 0;
    h->bridge_rank = -1;
    h->root = -1;
    for (int i = 0; i < h->size; i++) {
        if (roles[i] == HYBRID_BRIDGE) {
            n_bridges++;
            h->bridge_rank = i;
        } else if (h->root < 0) {
            h->root = i;
        }
    }
    free(roles);
    h->n_trainers = h->size - n_bridges;
    if (n_bridges > 1 || h->n_trainers == 0) {
        if (h->rank == 0)
            fprintf(stderr, "conflux: error: the job has %d bridge rank(s) and %d trainer rank(s); "
                            "it needs one or more trainers and at most one bridge\n",
                    n_bridges, h->n_trainers);
        MPI_Abort(h->world, 2);
    }
    if (n_bridges == 0) {
        h->trainers = h->world;  // no split: the MPI baseline runs exactly as before
        h->trainer_rank = h->rank;
    } else {
        MPI_CHECK(h->world, MPI_Comm_split(h->world, role == HYBRID_TRAINER ? 0 : MPI_UNDEFINED,
                                           h->rank, &h->trainers));
        h->trainer_rank = -1;
        if (role == HYBRID_TRAINER) MPI_CHECK(h->world, MPI_Comm_rank(h->trainers, &h->trainer_rank));
    }
    h->shares = h->n_trainers;
    h->share = h->trainer_rank;
    return h;
}

int hybrid_size(const HybridComm *h) { return h->size; }
int hybrid_n_trainers(const HybridComm *h) { return h->n_trainers; }
int hybrid_trainer_rank(const HybridComm *h) { return h->trainer_rank; }
int hybrid_bridge_rank(const HybridComm *h) { return h->bridge_rank; }
int hybrid_trainer_shares(const HybridComm *h) { return h->shares; }

const char *hybrid_mpi_version(void) {
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(v, &len);
    char *comma = strchr(v, ',');  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
    if (comma) *comma = 0;
    return v;
}

const char *hybrid_launcher_name(void) {
    if (getenv("SLURM_STEP_ID") && getenv("SLURM_PROCID")) return "srun";
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK")) return "mpirun";
    return "none";
}

int hybrid_nodes(const HybridComm *h) {
    if (h->size == 1) return 1;
    char name[MPI_MAX_PROCESSOR_NAME] = "";
    int len;
    MPI_Get_processor_name(name, &len);
    char *all = cx_calloc((size_t)h->size, MPI_MAX_PROCESSOR_NAME);
    MPI_CHECK(h->world, MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all,
                                      MPI_MAX_PROCESSOR_NAME, MPI_CHAR, h->world));
    int nodes = 0;
    for (int i = 0; i < h->size; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = !strcmp(all + (size_t)i * MPI_MAX_PROCESSOR_NAME,
                           all + (size_t)j * MPI_MAX_PROCESSOR_NAME);
        nodes += !seen;
    }
    free(all);
    return nodes;
}

void hybrid_bcast_config(HybridComm *h, char **text) {
    long long len = h->rank == h->root ? (long long)strlen(*text) : 0;
    MPI_CHECK(h->world, MPI_Bcast(&len, 1, MPI_LONG_LONG, h->root, h->world));
    if (len < 0 || len > (1LL << 30)) dp_mpi_fatal(h->world, MPI_ERR_COUNT, "config length", __FILE__, __LINE__);
    if (h->rank != h->root) {
        free(*text);  // a trainer's own copy: the root's text replaces it
        *text = cx_calloc((size_t)len + 1, 1);
    }
    MPI_CHECK(h->world, MPI_Bcast(*text, (int)len, MPI_CHAR, h->root, h->world));
}

// {trainer 0, the bridge} with trainer 0 first, and its averager over the whole arena
// grads[0, n) (both sides: no split layout). Collective over the world.
static void tp_pair_create(HybridComm *h, float *grads, size_t n, const TensorSpec *specs, int n_specs) {
    const int in = h->rank == h->root || h->rank == h->bridge_rank;
    MPI_CHECK(h->world, MPI_Comm_split(h->world, in ? 0 : MPI_UNDEFINED, h->rank == h->root ? 0 : 1,
                                       &h->pair));
    h->tp = 1;
    if (in) h->dp = dp_create(h->pair, grads, n, specs, n_specs, (size_t)4 << 20);
}

void hybrid_create_tp_pair(HybridComm *h, float *grads, size_t n, const TensorSpec *specs, int n_specs,
                           int replicas, int replica) {
    CHECK(h->trainer_rank >= 0 && !h->dp, "hybrid_create_tp_pair: a trainer's, once");
    h->shares = replicas;
    h->share = replica;
    if (h->bridge_rank >= 0) tp_pair_create(h, grads, n, specs, n_specs);
}

void hybrid_create_averager(HybridComm *h, Replica *rep) {
    CHECK(!h->dp, "hybrid_create_averager called twice");
    const TrainTask *k = &rep->tr.task;
    if (h->trainer_rank < 0 && tp_settings_on(rep->tp)) {
        // the bridge of a tensor-parallel run: trainer 0 stands for the cluster
        h->shares = h->n_trainers / (rep->tp->rows * rep->tp->cols);
        tp_pair_create(h, k->grads, k->n_params, k->specs, k->n_specs);
        return;
    }
    if (rep->train->avg.mode == AVG_DILOCO) {
        hybrid_outer_split(h, &rep->train->avg);  // mpi/outer.c
        if (h->worker_size > 1)  // the worker's own all-reduce, every inner step
            h->dp = dp_create_split(h->worker, k->grads, k->n_params, k->specs, k->n_specs,
                                    (size_t)4 << 20, 0, rep->recipe->enable_split(rep->model));
        return;
    }
    h->dp = dp_create_split(h->world, k->grads, k->n_params, k->specs, k->n_specs, (size_t)4 << 20,
                            0, rep->recipe->enable_split(rep->model));
}

// MPI counts are int: large arrays go in pieces.
static void bcast_floats(MPI_Comm comm, int root, float *x, size_t n) {
    const size_t piece = (size_t)1 << 28;
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        MPI_CHECK(comm, MPI_Bcast(x + off, (int)k, MPI_FLOAT, root, comm));
    }
}

// The state (n floats each, and meta) from root to every rank of comm.
static void bcast_state(MPI_Comm comm, int root, float *params, float *m, float *v, size_t n, int64_t meta[3]) {
    bcast_floats(comm, root, params, n);
    bcast_floats(comm, root, m, n);
    bcast_floats(comm, root, v, n);
    MPI_CHECK(comm, MPI_Bcast(meta, 3, MPI_INT64_T, root, comm));
}

void hybrid_tp_send_state(HybridComm *h, float *params, float *m, float *v, size_t n, int64_t meta[3]) {
    CHECK(h->tp && h->rank == h->root, "hybrid_tp_send_state: trainer 0's, in a tensor-parallel run");
    if (h->pair != MPI_COMM_NULL) bcast_state(h->pair, 0, params, m, v, n, meta);
}

void hybrid_bcast_state(HybridComm *h, Replica *rep) {
    Trainer *tr = &rep->tr;
    const size_t n = tr->task.n_params;
    int64_t meta[3] = {tr->optim.step, (int64_t)tr->samples_seen, (int64_t)rep->n_examples};
    if (h->tp) {
        CHECK(h->trainer_rank < 0, "hybrid_bcast_state: trainers of a tensor-parallel run send with "
              "hybrid_tp_send_state");
        bcast_state(h->pair, 0, tr->task.params, tr->optim.m, tr->optim.v, n, meta);
    } else {
        bcast_state(h->world, h->root, tr->task.params, tr->optim.m, tr->optim.v, n, meta);
    }
    tr->optim.step = (long)meta[0];
    tr->samples_seen = (uint64_t)meta[1];
    rep->n_examples = (uint64_t)meta[2];
}

void hybrid_barrier(HybridComm *h) { MPI_CHECK(h->world, MPI_Barrier(h->world)); }

int hybrid_mpi_fail(HybridComm *h, int rc, const char *what, char *err) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    char host[MPI_MAX_PROCESSOR_NAME] = "";
    MPI_Get_processor_name(host, &len);
    return cx_err(err, "%s failed on rank %d (%s): %s", what, h->rank, host, msg);
}

int hybrid_bcast_plan(HybridComm *h, HybridPlan *plan, char *err) {
    int64_t buf[4] = {plan->step, plan->trainer_samples, plan->volunteers, plan->reserved};
    // MPI_ERRORS_RETURN (the world's own duplicate; not the tensor-parallel pair's)
    MPI_Comm c = h->dp && !h->tp ? dp_comm(h->dp) : h->world;
    int rc = MPI_Bcast(buf, 4, MPI_INT64_T, h->bridge_rank, c);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "MPI_Bcast of the round plan", err);
    plan->step = buf[0];
    plan->trainer_samples = buf[1];
    plan->volunteers = buf[2];
    plan->reserved = buf[3];
    return 0;
}

// Averager.plan of a trainer in a job with a bridge (see hybrid_trainer_averager).
static int trainer_plan(void *plan_ctx, long global_batch, long *lo, long *hi, char *err) {
    HybridComm *h = plan_ctx;
    HybridPlan plan = {0};
    if (hybrid_bcast_plan(h, &plan, err) != 0) return -1;
    long step = *h->steps_done;
    if (plan.step != step + 1 || plan.trainer_samples < 0 || plan.trainer_samples > global_batch)
        return cx_err(err, "bad round plan from the bridge: step %lld (expected %ld), trainer "
                      "samples %lld of %ld", (long long)plan.step, step + 1,
                      (long long)plan.trainer_samples, global_batch);
    long T = (long)plan.trainer_samples, NT = h->shares, r = h->share;
    *lo = T * r / NT;
    *hi = T * (r + 1) / NT;
    return 0;
}

void hybrid_sum_start(HybridComm *h) {
    CHECK(h->dp, "hybrid_sum_start before hybrid_create_averager");
    dp_begin_step(h->dp);
    dp_mark_all_ready(h->dp);
}

int hybrid_sum_poll(HybridComm *h) {
    dp_progress(h->dp);
    return dp_done(h->dp);
}

int hybrid_sum_finish(HybridComm *h, double *stats, int n_stats, char *err) {
    return dp_finish(h->dp, stats, n_stats, err);
}

int hybrid_stop_vote(HybridComm *h, int stop, char *err) {
    int rc = MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, h->world);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "MPI_Allreduce of the stop vote", err);
    return stop != 0;
}

int hybrid_check_replicas(HybridComm *h, const float *params, size_t n, long step, char *err) {
    if (h->tp) {  // the bridge's whole replica against trainer 0's gathered one
        if (h->pair == MPI_COMM_NULL) return 0;
        return dp_check_replicas(dp_comm(h->dp), params, n, step, err);
    }
    return dp_check_replicas(h->world, params, n, step, err);
}

int hybrid_tp_pair_sum(HybridComm *h, float *grads, size_t n, double *stats, int n_stats, char *err) {
    CHECK(h->tp && h->dp, "hybrid_tp_pair_sum: trainer 0's, after hybrid_create_tp_pair");
    return dp_averager_sum(h->dp, grads, n, stats, n_stats, err);
}

void hybrid_plan_share(HybridComm *h, Averager *a, const long *steps_done) {
    if (h->bridge_rank < 0 || h->diloco) return;
    h->steps_done = steps_done;
    a->plan = trainer_plan;
    a->plan_ctx = h;
    a->rank = h->share;
    a->n_ranks = h->shares;
}

Averager hybrid_trainer_averager(HybridComm *h, const long *steps_done) {
    if (h->diloco && !h->dp) return (Averager){.rank = 0, .n_ranks = 1};  // a one-rank worker
    CHECK(h->dp, "hybrid_trainer_averager before hybrid_create_averager");
    Averager a = dp_averager(h->dp);
    hybrid_plan_share(h, &a, steps_done);
    return a;
}

static int run_sum(void *ctx, double *v, int n, char *err) {
    HybridComm *h = ctx;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, h->diloco ? h->worker : h->trainers);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "MPI_Allreduce over the trainers", err);
    return 0;
}

static int run_stop_vote(void *ctx, int stop, char *err) { return hybrid_stop_vote(ctx, stop, err); }

static int run_check(void *ctx, const float *params, size_t n, long step, char *err) {
    return hybrid_check_replicas(ctx, params, n, step, err);
}

RunComm hybrid_run_comm(HybridComm *h) {
    RunComm c = {.ctx = h, .rank = h->trainer_rank, .size = h->n_trainers};
    if (h->diloco) {  // validation: the writer's worker's model, over that worker's ranks
        c.rank = h->worker_rank;
        c.size = h->worker_size;
    }
    if (h->size > 1) {
        c.sum = c.size > 1 ? run_sum : NULL;
        c.stop_vote = run_stop_vote;
        c.check_replicas = run_check;
    }
    return c;
}

void hybrid_finalize(HybridComm *h) {
    if (h->dp) dp_free(h->dp);
    hybrid_outer_free(h);
    if (h->pair != MPI_COMM_NULL) MPI_Comm_free(&h->pair);
    if (h->trainers != MPI_COMM_NULL && h->trainers != h->world) MPI_Comm_free(&h->trainers);
    free(h);
    MPI_Finalize();
}

void hybrid_abort(HybridComm *h, int code) {
    MPI_Abort(h ? h->world : MPI_COMM_WORLD, code);
    exit(code);
}
