// outer.c: the bridge's diloco rounds (see outer.h).
#include "bridge/outer.h"

#include <stdlib.h>
#include <string.h>

#include "bridge/server_internal.h"
#include "models/codec.h"
#include "models/common.h"
#include "mpi/hybrid.h"

// One outer round at the bridge.
typedef struct {
    long round;                // 0: none
    int open;                  // collecting contributions
    double t_open, t_cluster, t_deadline;  // t_cluster: the cluster's contribution arrived (0: not yet)
    uint64_t cluster_samples;
    int assigned;              // volunteers given a share
    uint64_t assigned_samples;
    double max_up_s;           // the slowest assigned volunteer's measured upload (s)
} ORound;

struct BrOuter {
    BridgeServer *b;
    Diloco *d;                 // theta, buf, applied (the rounds closed)
    long H, B, last_round;
    ORound rd[2];              // by round % 2: the round collecting and the next one
    long opened;               // the last round opened
    long received;             // the cluster's contributions received
    float *cluster[2];         // the cluster's pseudo-gradients by round % 2 (MPI receive
    double cluster_stats[2][STAT_COUNT];  // buffers: round r's is reused by round r + 2, which
                               // opens after round r closed)
    float *acc, *res_down;     // the weighted sum; the download codec's error feedback
    float *out[2];             // decoded averages in flight to the trainers (by round % 2)
    double out_stats[2][STAT_COUNT];
    StepResult last;           // the last closed round, for the step's result
};

static ORound *rd_of(BrOuter *o, long round) { return &o->rd[round % 2]; }

long br_outer_applied(const BrOuter *o) { return o->d->applied; }
long br_outer_inner_steps(const BrOuter *o) { return o->H; }

// ---- opening a round ----

static int open_round(BrOuter *o, long r, char *err) {
    BridgeServer *b = o->b;
    ORound *R = rd_of(o, r);
    CHECK(!R->open, "outer round %ld opened while round %ld is open", r, R->round);
    *R = (ORound){.round = r, .open = 1, .t_open = cx_now()};
    // the cluster first: it never waits for the volunteers' plan
    BrRoundCore *k = &b->rounds.core;
    uint64_t start = k->cursor;
    if (hybrid_outer_plan(b->h, r, start, o->H, err) != 0) return -1;
    if (hybrid_outer_recv_start(b->h, o->cluster[r % 2], o->cluster_stats[r % 2], err) != 0) return -1;
    // then the volunteers, in joining order
    uint64_t hash = cx_checksum(b->tr->task.params, b->n);
    br_rounds_drop_laggards(b, (uint64_t)o->d->applied);
    BrSeats st;
    br_rounds_seats(b, &st);
    br_core_outer_open(k, st.seats, st.n, r, (uint64_t)o->d->applied, hybrid_n_trainers(b->h), R->t_open, st.share);
    R->cluster_samples = (uint64_t)k->trainer_samples;
    R->assigned = k->assigned;
    R->assigned_samples = k->assigned_samples;
    R->max_up_s = k->max_up_s;
    for (int j = 0; j < st.n; j++) br_rounds_send_open(st.conns[j], (uint64_t)r, hash, st.share[j].start, st.share[j].n);
    br_rounds_seats_free(&st);
    o->opened = r;
    return 0;
}

// ---- closing a round ----

static int outstanding(const BrOuter *o, long r) {
    int k = 0;
    for (Conn *c = o->b->conns; c; c = c->next)
        k += !c->closing && c->seat.assigned_round == (uint64_t)r;
    return k;
}

static double deadline_of(const BrOuter *o, const ORound *R) {
    return br_core_outer_deadline(&o->b->rounds.core, R->t_cluster, R->max_up_s);
}

// Sums round r's contributions and sends its average everywhere.
static int close_round(BrOuter *o, long r, char *err) {
    BridgeServer *b = o->b;
    Rounds *rs = &b->rounds;
    ORound *R = rd_of(o, r);
    CHECK(R->open && R->round == r && R->t_cluster > 0, "closing outer round %ld before its cluster part", r);
    if (r != o->d->applied + 1) return cx_err(err, "outer round %ld closes after round %ld", r, o->d->applied);
    // shares of this round still out: they may count next round
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->seat.assigned_round == (uint64_t)r && c->vol) {
            br_log(b, "%s missed the deadline of outer round %ld (%.1f s after the cluster's part)",
                   br_conn_label(c), r, cx_now() - R->t_cluster);
            br_vol_event(b, c->vol, "late", (uint64_t)r, c->seat.assigned_samples, NULL);
        }
    for (Vol *v = b->vols; v; v = v->next) v->round_accepted = 0;
    // the cluster first, then the uploads in (round, first sample) order
    size_t n = b->n;
    double stats[STAT_COUNT];
    const float *cluster = o->cluster[r % 2];
    memcpy(stats, o->cluster_stats[r % 2], sizeof stats);
    stats[STAT_PARTICIPANTS] = 1;
    memset(o->acc, 0, n * sizeof(float));
    diloco_accumulate(o->acc, cluster, n, (double)R->cluster_samples);
    double weight = (double)R->cluster_samples;
    double cluster_norm = codec_l2norm(cluster, n);
    int n_p = 0;
    for (Pending *p = rs->pending; p; p = p->next) n_p++;
    Pending **arr = cx_calloc((size_t)n_p + 1, sizeof *arr);
    n_p = 0;
    Pending **keep = &rs->pending;
    for (Pending *p = rs->pending; p;) {  // uploads for later rounds wait
        Pending *next = p->next;
        if (p->round <= (uint64_t)r) {
            arr[n_p++] = p;
            *keep = next;
        } else {
            keep = &p->next;
        }
        p = next;
    }
    qsort(arr, (size_t)n_p, sizeof *arr, br_cmp_pending);
    // robust modes (bridge/aggregate.c): the cluster is one weighted contribution, each upload
    // another, clipped to clip_ratio x the cluster's norm; aggregated after the loop
    BrContribution *acc = b->o.aggregate != ROBUST_MEAN ? cx_calloc((size_t)n_p + 1, sizeof *acc) : NULL;
    int k = 0;
    if (acc) acc[k++] = (BrContribution){.v = o->cluster[r % 2], .w = (double)R->cluster_samples};
    int *fate = cx_calloc((size_t)n_p + 1, sizeof *fate);
    br_rounds_judge(b, arr, n_p, (uint64_t)r, acc ? ROBUST_MAX_K - 1 : 0, cluster_norm, stats, fate);
    for (int i = 0; i < n_p; i++) {
        Pending *p = arr[i];
        if (fate[i] == BR_FATE_FRESH || fate[i] == BR_FATE_STALE) {
            if (acc) {
                acc[k++] = (BrContribution){.v = p->g, .w = (double)p->samples,
                                            .max_norm = b->o.clip_ratio * cluster_norm, .p = p};
            } else {
                diloco_accumulate(o->acc, p->g, n, (double)p->samples);
                weight += (double)p->samples;
            }
        }
        if (!acc) br_rounds_release_upload(b, p);
    }
    free(fate);
    if (acc) {
        br_aggregate(b, o->acc, acc, k, (uint64_t)r);
        for (int i = 0; i < n_p; i++) br_rounds_release_upload(b, arr[i]);
    } else {
        diloco_finish_average(o->acc, n, weight);
    }
    free(acc);
    free(arr);
    // the average in the download codec; every replica applies the decoded values
    int slot = (int)(r % 2);
    int done = 0;
    while (!done) {  // the broadcast that used this buffer two rounds ago
        if (hybrid_outer_result_test(b->h, &done, err) != 0) return -1;
        if (!done) bridge_pump(b, 0.001);
    }
    HistRound *h = br_rounds_hist_push(b);
    h->round = (uint64_t)r;
    h->hash_before = cx_checksum(b->tr->task.params, n);
    h->samples = (uint64_t)stats[STAT_SAMPLES];
    h->tokens = (uint64_t)stats[STAT_TOKENS];
    h->participants = (uint32_t)stats[STAT_PARTICIPANTS];
    h->loss = stats[STAT_LOSS_SUM];
    h->aux = stats[STAT_AUX_SUM];
    br_rounds_hist_encode(b, h, o->acc, o->d->cfg.down_codec, o->res_down, o->out[slot]);
    size_t bad;
    if (!codec_check_finite(o->out[slot], n, &bad))
        return cx_err(err, "outer round %ld: averaged pseudo-gradient element %zu is %g", r, bad,
                      (double)o->out[slot][bad]);
    memcpy(o->out_stats[slot], stats, sizeof stats);
    if (hybrid_outer_result_start(b->h, o->out[slot], o->out_stats[slot], err) != 0) return -1;
    diloco_deliver(o->d, r, o->out[slot], stats);  // theta: the bridge replica's parameters
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->state == C_LIVE)
            br_rounds_send_result(c, h, c->vol ? c->vol->round_accepted : 0);
    // the round's record (bridge.csv, status page, progress line)
    rs->trainer_samples = (long)R->cluster_samples;
    rs->assigned = R->assigned;
    rs->assigned_samples = R->assigned_samples;
    rs->wait_s = cx_now() - R->t_cluster;
    rs->allreduce_s = 0;
    R->open = 0;
    StepResult res = {.step = r * o->H, .tokens = (long)stats[STAT_TOKENS],
                      .samples = (long)stats[STAT_SAMPLES], .participants = (int)stats[STAT_PARTICIPANTS],
                      .loss = stats[STAT_TOKENS] > 0 ? stats[STAT_LOSS_SUM] / stats[STAT_TOKENS] : 0,
                      .aux_loss = stats[STAT_SAMPLES] > 0 ? stats[STAT_AUX_SUM] / stats[STAT_SAMPLES] : 0};
    o->last = res;
    br_rounds_record(b, &res);
    return 0;
}

// Closes the open rounds before `before` that are complete or past their deadline.
static int close_due(BrOuter *o, long before, char *err) {
    long r = o->d->applied + 1;
    if (r >= before || r > o->opened) return 0;
    ORound *R = rd_of(o, r);
    if (!R->open || R->t_cluster <= 0) return 0;
    if (outstanding(o, r) == 0 || cx_now() >= deadline_of(o, R)) return close_round(o, r, err);
    return 0;
}

// Serves sockets and MPI until the cluster's contribution to round r arrived.
static int await_cluster(BrOuter *o, long r, char *err) {
    BridgeServer *b = o->b;
    for (;;) {
        int done = 0;
        if (hybrid_outer_recv_test(b->h, &done, err) != 0) return -1;
        if (done) break;
        if (close_due(o, r, err) != 0) return -1;
        int sent;
        if (hybrid_outer_result_test(b->h, &sent, err) != 0) return -1;
        bridge_pump(b, 0.001);
    }
    double now = cx_now();
    ORound *R = rd_of(o, r);
    R->t_cluster = now;
    br_core_note_cluster(&b->rounds.core, now);
    o->received = r;
    return 0;
}

// Serves until round r closed (complete or its deadline).
static int await_close(BrOuter *o, long r, char *err) {
    while (o->d->applied < r) {
        if (close_due(o, r + 1, err) != 0) return -1;
        int sent;
        if (hybrid_outer_result_test(o->b->h, &sent, err) != 0) return -1;
        if (o->d->applied < r) bridge_pump(o->b, 0.002);
    }
    return 0;
}

// ---- the Averager ----

static int outer_step(void *ctx, Trainer *t, StepResult *res, char *err) {
    BrOuter *o = ctx;
    BridgeServer *b = o->b;
    long r = o->received + 1;
    if (o->opened < r) {  // the run's (or the resumed run's) first round
        br_rounds_wait_volunteers(b, (uint64_t)o->d->applied);
        if (open_round(o, r, err) != 0) return -1;
    }
    if (await_cluster(o, r, err) != 0) return -1;
    // the last round closes now at the latest: the cluster's next average is due (with
    // --plan equal, a reproducible run, it keeps its deadline and the cluster waits)
    if (o->d->applied < r - 1) {
        if (b->o.plan_equal ? await_close(o, r - 1, err) : close_round(o, r - 1, err)) return -1;
    }
    if (r < o->last_round && open_round(o, r + 1, err) != 0) return -1;
    if ((!o->d->cfg.overlap || r >= o->last_round) && await_close(o, r, err) != 0) return -1;
    t->optim.step = r * o->H;
    *res = o->last;
    res->step = t->optim.step;
    return 0;
}

// Before a checkpoint: the trainers wait for this round's average; close it (at its
// deadline, as without a checkpoint).
static int outer_flush(void *ctx, char *err) {
    BrOuter *o = ctx;
    return await_close(o, o->received, err);
}

static void outer_traffic(const void *ctx, double *sent, double *recv) {
    const BrOuter *o = ctx;
    *sent = o->b->bytes_out;
    *recv = o->b->bytes_in;
}

Averager br_outer_averager(BrOuter *o) {
    return (Averager){.ctx = o, .step = outer_step, .flush = outer_flush, .traffic = outer_traffic,
                      .rank = 0, .n_ranks = 1};
}

// ---- set-up ----

BrOuter *br_outer_create(BridgeServer *b, Diloco *d, uint64_t cursor) {
    BrOuter *o = cx_calloc(1, sizeof *o);
    o->b = b;
    o->d = d;
    o->H = d->cfg.inner_steps;
    o->B = b->tr->global_batch;
    o->last_round = b->o.total_steps / o->H;
    o->received = o->opened = d->completed;
    BrRoundCore *k = &b->rounds.core;
    k->o.diloco = 1;
    k->o.inner_steps = o->H;
    k->o.batch = o->B;
    k->o.overlap = d->cfg.overlap;
    k->cursor = cursor;
    size_t n = b->n;
    o->cluster[0] = cx_calloc(n, sizeof(float));
    o->cluster[1] = cx_calloc(n, sizeof(float));
    o->acc = cx_calloc(n, sizeof(float));
    o->res_down = cx_calloc(n, sizeof(float));
    o->out[0] = cx_calloc(n, sizeof(float));
    o->out[1] = cx_calloc(n, sizeof(float));
    hybrid_outer_bridge_init(b->h, n);
    b->outer = o;
    return o;
}

void br_outer_free(BrOuter *o) {
    if (!o) return;
    free(o->cluster[0]);
    free(o->cluster[1]);
    free(o->acc);
    free(o->res_down);
    free(o->out[0]);
    free(o->out[1]);
    free(o);
}
