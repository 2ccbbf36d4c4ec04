// outer.c: DiLoCo's worker groups and outer exchange over MPI (see hybrid.h).
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "mpi/hybrid_internal.h"

enum { TAG_STATS = 101, TAG_DELTA = 102, N_SLOTS = 2 };

// MPI counts are int: vectors go in pieces of at most 2^28 floats (one request each).
#define PIECE ((size_t)1 << 28)
#define MAX_PIECES 16

// One round's exchange in flight (a worker's side).
typedef struct {
    long round;                 // 0: free
    float *avg;                 // n floats: the weighted sum, then the average
    double stats[STAT_COUNT];
    MPI_Request req[MAX_PIECES + 1];
    int n_req;
} Slot;

struct OuterMpi {
    HybridComm *h;
    Diloco *d;
    size_t n;
    long H, B;
    uint64_t base;
    long assigned;              // the last round assigned
    Slot slot[N_SLOTS];
    float *send;                // trainer 0's copy of delta, in flight to the bridge
    double send_stats[STAT_COUNT];
    MPI_Request send_req[MAX_PIECES + 1];
    int n_send;
    double sent, recv;          // bytes since the last traffic call
    // the bridge's side
    MPI_Request rreq[MAX_PIECES + 1], breq[2 * (MAX_PIECES + 1)];
    int n_rreq, n_breq;
};

void hybrid_outer_split(HybridComm *h, const DilocoConfig *c) {
    h->diloco = 1;
    int W = h->bridge_rank >= 0 ? 1 : c->workers;
    if (W > h->n_trainers) {  // rank 0 says why and ends the job; the others wait for that
        if (h->rank == 0) {
            fprintf(stderr, "conflux: error: averaging.workers = %d but the job has %d trainer rank(s)\n",
                    W, h->n_trainers);
            fflush(stderr);
            MPI_Abort(h->world, 2);
        }
        MPI_Barrier(h->world);
        exit(2);
    }
    h->n_workers = W;
    // contiguous groups; the first N % W are one rank larger
    int color = MPI_UNDEFINED;
    if (h->trainer_rank >= 0) {
        int N = h->n_trainers, base = N / W, extra = N % W, lo = 0;
        for (int w = 0; w < W; w++) {
            int size = base + (w < extra);
            if (h->trainer_rank < lo + size) {
                color = w;
                break;
            }
            lo += size;
        }
    }
    h->worker_index = color == MPI_UNDEFINED ? -1 : color;
    MPI_CHECK(h->world, MPI_Comm_split(h->world, color, h->rank, &h->worker));
    h->worker_rank = -1;
    h->worker_size = 0;
    if (h->worker != MPI_COMM_NULL) {
        MPI_CHECK(h->world, MPI_Comm_rank(h->worker, &h->worker_rank));
        MPI_CHECK(h->world, MPI_Comm_size(h->worker, &h->worker_size));
    }
    int leader = h->worker_rank == 0;
    MPI_CHECK(h->world, MPI_Comm_split(h->world, leader ? 0 : MPI_UNDEFINED, h->rank, &h->leaders));
    MPI_CHECK(h->world, MPI_Comm_dup(h->world, &h->outer));
    MPI_Comm_set_errhandler(h->outer, MPI_ERRORS_RETURN);
}

void hybrid_outer_free(HybridComm *h) {
    if (h->om) {
        for (int i = 0; i < N_SLOTS; i++) free(h->om->slot[i].avg);
        free(h->om->send);
        free(h->om);
        h->om = NULL;
    }
    if (h->worker != MPI_COMM_NULL) MPI_Comm_free(&h->worker);
    if (h->leaders != MPI_COMM_NULL) MPI_Comm_free(&h->leaders);
    if (h->outer != MPI_COMM_NULL) MPI_Comm_free(&h->outer);
}

static OuterMpi *om_get(HybridComm *h, size_t n) {
    if (!h->om) {
        OuterMpi *o = cx_calloc(1, sizeof *o);
        o->h = h;
        o->n = n;
        for (int i = 0; i < N_SLOTS; i++) o->slot[i].avg = cx_calloc(n, sizeof(float));
        h->om = o;
    }
    CHECK(h->om->n == n, "outer exchange: %zu parameters, set up for %zu", n, h->om->n);
    return h->om;
}

static int wait_all(HybridComm *h, MPI_Request *req, int *n_req, const char *what, char *err) {
    if (*n_req == 0) return 0;
    int rc = MPI_Waitall(*n_req, req, MPI_STATUSES_IGNORE);
    *n_req = 0;
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, what, err);
    return 0;
}

static int test_all(HybridComm *h, MPI_Request *req, int *n_req, int *done, const char *what, char *err) {
    *done = 1;
    if (*n_req == 0) return 0;
    int rc = MPI_Testall(*n_req, req, done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, what, err);
    if (*done) *n_req = 0;
    return 0;
}

// Posts a float vector's pieces (op: 0 Ibcast from root, 1 Iallreduce SUM, 2 Isend to
// root, 3 Irecv from root) on comm.
static int post_vec(HybridComm *h, int op, float *x, size_t n, int root, MPI_Comm comm, MPI_Request *req,
                    int *n_req, char *err) {
    for (size_t off = 0; off < n; off += PIECE) {
        int k = (int)(n - off < PIECE ? n - off : PIECE);
        int rc;
        if (op == 0) rc = MPI_Ibcast(x + off, k, MPI_FLOAT, root, comm, &req[*n_req]);
        else if (op == 1) rc = MPI_Iallreduce(MPI_IN_PLACE, x + off, k, MPI_FLOAT, MPI_SUM, comm, &req[*n_req]);
        else if (op == 2) rc = MPI_Isend(x + off, k, MPI_FLOAT, root, TAG_DELTA, comm, &req[*n_req]);
        else rc = MPI_Irecv(x + off, k, MPI_FLOAT, root, TAG_DELTA, comm, &req[*n_req]);
        if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "posting the outer exchange", err);
        (*n_req)++;
    }
    return 0;
}

// ---- the worker's link ----

static int om_assign(void *ctx, long *round, uint64_t *start, long *steps, char *err) {
    OuterMpi *o = ctx;
    HybridComm *h = o->h;
    if (h->bridge_rank < 0) {
        long r = ++o->assigned;
        *round = r;
        *start = o->base + (uint64_t)(((r - 1) * h->n_workers + h->worker_index) * o->H * o->B);
        *steps = o->H;
        return 0;
    }
    int64_t plan[4] = {0};
    int rc = MPI_Bcast(plan, 4, MPI_INT64_T, h->bridge_rank, h->world);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "MPI_Bcast of the outer round's plan", err);
    if (plan[0] <= o->assigned || plan[1] < 0 || plan[2] < 1)
        return cx_err(err, "bad outer plan from the bridge: round %lld (after %ld), start %lld, "
                      "%lld inner steps", (long long)plan[0], o->assigned, (long long)plan[1],
                      (long long)plan[2]);
    o->assigned = (long)plan[0];
    *round = (long)plan[0];
    *start = (uint64_t)plan[1];
    *steps = (long)plan[2];
    return 0;
}

static Slot *slot_for(OuterMpi *o, long round) { return &o->slot[round % N_SLOTS]; }

static int om_post(void *ctx, long round, const float *delta, size_t n, const double *stats, char *err) {
    OuterMpi *o = ctx;
    HybridComm *h = o->h;
    Slot *s = slot_for(o, round);
    CHECK(s->round == 0, "outer exchange: round %ld posted while round %ld is in flight", round, s->round);
    s->round = round;
    s->n_req = 0;
    if (h->bridge_rank < 0) {
        // leaders: sum of n_w * delta_w and of the statistics over the workers
        if (h->worker_rank == 0) {
            memset(s->avg, 0, n * sizeof(float));
            diloco_accumulate(s->avg, delta, n, stats[STAT_SAMPLES]);
            memcpy(s->stats, stats, sizeof s->stats);
            if (h->n_workers > 1) {
                if (post_vec(h, 1, s->avg, n, 0, h->leaders, s->req, &s->n_req, err) != 0) return -1;
                int rc = MPI_Iallreduce(MPI_IN_PLACE, s->stats, STAT_COUNT, MPI_DOUBLE, MPI_SUM, h->leaders,
                                        &s->req[s->n_req]);
                if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "posting the outer sum", err);
                s->n_req++;
                double bytes = 2.0 * (double)(h->n_workers - 1) / h->n_workers * (double)n * sizeof(float);
                o->sent += bytes;
                o->recv += bytes;
            }
        }
        return 0;
    }
    // with a bridge: trainer 0 sends delta and the statistics; everyone awaits the average
    if (h->trainer_rank == 0) {
        if (wait_all(h, o->send_req, &o->n_send, "sending the pseudo-gradient to the bridge", err) != 0) return -1;
        if (!o->send) o->send = cx_calloc(n, sizeof(float));
        memcpy(o->send, delta, n * sizeof(float));
        memcpy(o->send_stats, stats, sizeof o->send_stats);
        int rc = MPI_Isend(o->send_stats, STAT_COUNT, MPI_DOUBLE, h->bridge_rank, TAG_STATS, h->outer,
                           &o->send_req[o->n_send]);
        if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "sending the round's statistics to the bridge", err);
        o->n_send++;
        if (post_vec(h, 2, o->send, n, h->bridge_rank, h->outer, o->send_req, &o->n_send, err) != 0) return -1;
        o->sent += (double)n * sizeof(float);
    }
    if (post_vec(h, 0, s->avg, n, h->bridge_rank, h->outer, s->req, &s->n_req, err) != 0) return -1;
    int rc = MPI_Ibcast(s->stats, STAT_COUNT, MPI_DOUBLE, h->bridge_rank, h->outer, &s->req[s->n_req]);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "posting the outer result's broadcast", err);
    s->n_req++;
    o->recv += (double)n * sizeof(float);
    return 0;
}

// Completes slot s (its round's average in s->avg, totals in s->stats) and delivers it.
static int finish_slot(OuterMpi *o, Slot *s, char *err) {
    HybridComm *h = o->h;
    if (wait_all(h, s->req, &s->n_req, "the outer exchange", err) != 0) return -1;
    if (h->bridge_rank < 0) {
        if (h->worker_rank == 0) {
            if (!(s->stats[STAT_SAMPLES] > 0))
                return cx_err(err, "outer round %ld: no samples from any worker", s->round);
            diloco_finish_average(s->avg, o->n, s->stats[STAT_SAMPLES]);
        }
        if (h->worker_size > 1) {  // the leader's result to its group
            int rc = MPI_Bcast(s->stats, STAT_COUNT, MPI_DOUBLE, 0, h->worker);
            for (size_t off = 0; rc == MPI_SUCCESS && off < o->n; off += PIECE)
                rc = MPI_Bcast(s->avg + off, (int)(o->n - off < PIECE ? o->n - off : PIECE), MPI_FLOAT, 0, h->worker);
            if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "MPI_Bcast of the outer average", err);
        }
    }
    diloco_deliver(o->d, s->round, s->avg, s->stats);
    s->round = 0;
    return 0;
}

static int om_wait(void *ctx, long round, char *err) {
    OuterMpi *o = ctx;
    while (o->d->applied < round) {
        Slot *s = slot_for(o, o->d->applied + 1);
        if (s->round != o->d->applied + 1)
            return cx_err(err, "outer exchange: round %ld awaited but never posted", o->d->applied + 1);
        if (finish_slot(o, s, err) != 0) return -1;
    }
    return 0;
}

static void om_progress(void *ctx) {
    OuterMpi *o = ctx;
    int flag;
    for (int i = 0; i < N_SLOTS; i++)
        if (o->slot[i].n_req > 0) MPI_Testall(o->slot[i].n_req, o->slot[i].req, &flag, MPI_STATUSES_IGNORE);
    if (o->n_send > 0) MPI_Testall(o->n_send, o->send_req, &flag, MPI_STATUSES_IGNORE);
}

static void om_traffic(void *ctx, double *sent, double *recv) {
    OuterMpi *o = ctx;
    *sent = o->sent;
    *recv = o->recv;
    o->sent = o->recv = 0;
}

OuterLink hybrid_outer_link(HybridComm *h, Diloco *d, long global_batch, uint64_t base) {
    CHECK(h->diloco, "hybrid_outer_link without diloco");
    OuterMpi *o = om_get(h, d->n);
    o->d = d;
    o->H = d->cfg.inner_steps;
    o->B = global_batch;
    o->base = base;
    o->assigned = d->round;
    return (OuterLink){.ctx = o, .assign = om_assign, .post = om_post, .wait = om_wait,
                       .progress = om_progress, .traffic = om_traffic};
}

static void bcast_vec(HybridComm *h, float *x, size_t n) {
    for (size_t off = 0; off < n; off += PIECE)
        MPI_CHECK(h->world, MPI_Bcast(x + off, (int)(n - off < PIECE ? n - off : PIECE), MPI_FLOAT, h->root, h->world));
}

void hybrid_bcast_outer(HybridComm *h, Diloco *d, int64_t meta[4]) {
    bcast_vec(h, d->theta, d->n);
    bcast_vec(h, d->buf, d->n);
    bcast_vec(h, d->start, d->n);
    MPI_CHECK(h->world, MPI_Bcast(meta, 4, MPI_INT64_T, h->root, h->world));
}

// ---- the bridge's side ----

int hybrid_outer_plan(HybridComm *h, long round, uint64_t start, long steps, char *err) {
    int64_t plan[4] = {round, (int64_t)start, steps, 0};
    int rc = MPI_Bcast(plan, 4, MPI_INT64_T, h->bridge_rank, h->world);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "MPI_Bcast of the outer round's plan", err);
    return 0;
}

int hybrid_outer_recv_start(HybridComm *h, float *delta, double *stats, char *err) {
    OuterMpi *o = h->om;
    CHECK(o && o->n_rreq == 0, "hybrid_outer_recv_start: a receive is in flight");
    int rc = MPI_Irecv(stats, STAT_COUNT, MPI_DOUBLE, h->root, TAG_STATS, h->outer, &o->rreq[0]);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "receiving the cluster's statistics", err);
    o->n_rreq = 1;
    return post_vec(h, 3, delta, o->n, h->root, h->outer, o->rreq, &o->n_rreq, err);
}

int hybrid_outer_recv_test(HybridComm *h, int *done, char *err) {
    return test_all(h, h->om->rreq, &h->om->n_rreq, done, "receiving the cluster's pseudo-gradient", err);
}

int hybrid_outer_result_start(HybridComm *h, float *avg, double *stats, char *err) {
    OuterMpi *o = h->om;
    CHECK(o->n_breq + MAX_PIECES + 1 <= 2 * (MAX_PIECES + 1), "hybrid_outer_result_start: too many in flight");
    if (post_vec(h, 0, avg, o->n, h->bridge_rank, h->outer, o->breq, &o->n_breq, err) != 0) return -1;
    int rc = MPI_Ibcast(stats, STAT_COUNT, MPI_DOUBLE, h->bridge_rank, h->outer, &o->breq[o->n_breq]);
    if (rc != MPI_SUCCESS) return hybrid_mpi_fail(h, rc, "broadcasting the outer result", err);
    o->n_breq++;
    return 0;
}

int hybrid_outer_result_test(HybridComm *h, int *done, char *err) {
    return test_all(h, h->om->breq, &h->om->n_breq, done, "broadcasting the outer result", err);
}

void hybrid_outer_bridge_init(HybridComm *h, size_t n) { om_get(h, n); }
