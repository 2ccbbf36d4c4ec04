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
    uint64_t cursor;           // first sample of the next round
    float *cluster[2];         // the cluster's pseudo-gradients by round % 2 (MPI receive
    double cluster_stats[2][STAT_COUNT];  // buffers: round r's is reused by round r + 2, which
                               // opens after round r closed)
    float *acc, *res_down;     // the weighted sum; the download codec's error feedback
    float *out[2];             // decoded averages in flight to the trainers (by round % 2)
    double out_stats[2][STAT_COUNT];
    double round_s;            // the cluster's round time (moving mean; 0: not measured)
    double t_last_cluster;
    StepResult last;           // the last closed round, for the step's result
};

static ORound *rd_of(BrOuter *o, long round) { return &o->rd[round % 2]; }

long br_outer_applied(const BrOuter *o) { return o->d->applied; }
long br_outer_inner_steps(const BrOuter *o) { return o->H; }

// ---- opening a round ----

// Inner steps for a volunteer: H (--plan equal); else what its measured compute speed does
// in 0.9 of the cluster's round time, in [1, H]; one not measured yet is taken to be as
// fast as one trainer rank (H / trainers steps: a slower one is late once, counts in the
// next round, and is measured).
static long volunteer_steps(BrOuter *o, const Vol *v) {
    BridgeServer *b = o->b;
    if (b->o.plan_equal) return o->H;
    long h;
    if (!(v->speed.rate > 0) || !(o->round_s > 0)) {
        int nt = hybrid_n_trainers(b->h);
        h = (o->H + nt - 1) / nt;
    } else {
        h = (long)(0.9 * v->speed.rate * o->round_s / (double)o->B);
    }
    return h < 1 ? 1 : h > o->H ? o->H : h;
}

static int open_round(BrOuter *o, long r, char *err) {
    BridgeServer *b = o->b;
    ORound *R = rd_of(o, r);
    CHECK(!R->open, "outer round %ld opened while round %ld is open", r, R->round);
    *R = (ORound){.round = r, .open = 1, .t_open = cx_now()};
    // the cluster first: it never waits for the volunteers' plan
    uint64_t start = o->cursor;
    if (hybrid_outer_plan(b->h, r, start, o->H, err) != 0) return -1;
    R->cluster_samples = (uint64_t)(o->H * o->B);
    o->cursor += R->cluster_samples;
    if (hybrid_outer_recv_start(b->h, o->cluster[r % 2], o->cluster_stats[r % 2], err) != 0) return -1;
    // then the volunteers, in joining order (the list is newest first)
    uint64_t hash = cx_checksum(b->tr->task.params, b->n);
    br_rounds_drop_laggards(b, (uint64_t)o->d->applied);
    const uint64_t max_lag = (uint64_t)(b->o.history / 2 > 2 ? b->o.history / 2 : 2);
    int n = 0;
    for (Conn *c = b->conns; c; c = c->next) n++;
    Conn **list = cx_calloc((size_t)n + 1, sizeof *list);
    n = 0;
    for (Conn *c = b->conns; c; c = c->next) list[n++] = c;
    for (int j = n - 1; j >= 0; j--) {
        Conn *c = list[j];
        if (c->closing || c->state != C_LIVE || !c->vol) continue;
        int eligible = c->next_round == 0 && c->acked_step + max_lag >= (uint64_t)o->d->applied;
        if (!eligible) {
            br_rounds_send_open(c, (uint64_t)r, hash, 0, 0);
            continue;
        }
        long steps = volunteer_steps(o, c->vol);
        uint64_t ns = (uint64_t)(steps * o->B), s0 = o->cursor;
        o->cursor += ns;
        if (c->assigned_round == 0 && c->up_next == 0) {
            c->assigned_round = (uint64_t)r;
            c->assigned_start = s0;
            c->assigned_samples = ns;
            c->assigned_t_open = R->t_open;
        } else {
            c->next_round = (uint64_t)r;
            c->next_start = s0;
            c->next_samples = ns;
            c->next_t_open = R->t_open;
        }
        R->assigned++;
        R->assigned_samples += ns;
        if (c->vol->speed.up_s > R->max_up_s) R->max_up_s = c->vol->speed.up_s;
        br_rounds_send_open(c, (uint64_t)r, hash, s0, ns);
    }
    free(list);
    o->opened = r;
    return 0;
}

// ---- closing a round ----

static int outstanding(const BrOuter *o, long r) {
    int k = 0;
    for (Conn *c = o->b->conns; c; c = c->next)
        k += !c->closing && c->assigned_round == (uint64_t)r;
    return k;
}

static double deadline_of(const BrOuter *o, const ORound *R) {
    const BridgeServer *b = o->b;
    if (b->o.plan_equal) return R->t_cluster + b->o.deadline_s;  // reproducible runs
    if (o->d->cfg.overlap && o->round_s > 0) return R->t_cluster + 0.9 * o->round_s;
    double d = 2.0 * R->max_up_s + 1.0;
    if (R->max_up_s <= 0 || d > b->o.deadline_s) d = b->o.deadline_s;
    return R->t_cluster + d;
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
        if (!c->closing && c->assigned_round == (uint64_t)r && c->vol) {
            br_log(b, "%s missed the deadline of outer round %ld (%.1f s after the cluster's part)",
                   br_conn_label(c), r, cx_now() - R->t_cluster);
            br_vol_event(b, c->vol, "late", (uint64_t)r, c->assigned_samples, NULL);
        }
    for (Vol *v = b->vols; v; v = v->next) v->round_accepted = 0;
    rs->fresh = rs->stale = rs->dropped = rs->lost = 0;
    rs->up_bytes = rs->up_s = 0;
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
    for (int i = 0; i < n_p; i++) {
        Pending *p = arr[i];
        uint64_t age = (uint64_t)r - p->round;
        double norm = codec_l2norm(p->g, n);
        double ratio = b->o.max_delta_ratio;
        // an absurd norm is rejected however late the upload is; then the staleness rule
        if (ratio > 0 && !(norm <= ratio * cluster_norm)) {
            char why[160];
            snprintf(why, sizeof why, "pseudo-gradient of round %llu rejected: norm %.3g exceeds "
                     "%.3g x the cluster's %.3g", (unsigned long long)p->round, norm, ratio, cluster_norm);
            br_rounds_drop_upload(b, p, (uint64_t)r, "rejected-norm", why);
            if (p->vol->conn && !p->vol->conn->closing) br_conn_fail(p->vol->conn, BR_ERR_BAD_DATA, "%s", why);
            else br_log(b, "%s: %s", p->vol->name, why);
        } else if (!br_rounds_tokens_ok(b, p, (uint64_t)r)) {
            // dropped, its peer failed
        } else if (age > (uint64_t)b->o.max_staleness || (acc && k == ROBUST_MAX_K)) {
            br_rounds_drop_upload(b, p, (uint64_t)r, "dropped-stale", NULL);
        } else {
            if (acc) {
                acc[k++] = (BrContribution){.v = p->g, .w = (double)p->samples,
                                            .max_norm = b->o.clip_ratio * cluster_norm, .p = p};
            } else {
                diloco_accumulate(o->acc, p->g, n, (double)p->samples);
                weight += (double)p->samples;
            }
            br_rounds_count_upload(b, p, (uint64_t)r, stats);
        }
        // its speed, from every upload that arrived (late ones too): it computed the round
        // from when it had both the round's plan and its last round done (the first chunk
        // of that upload) until this upload's first chunk; its uploads overlap its next round
        double from = p->t_open > p->vol->t_prev_first ? p->t_open : p->vol->t_prev_first;
        br_plan_note_upload(&p->vol->speed, p->samples, p->t_first - from, p->t_done - p->t_first);
        p->vol->t_prev_first = p->t_first;
        if (!acc) br_rounds_release_upload(b, p);
    }
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
    rs->round = (uint64_t)r;
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
    if (o->t_last_cluster > 0) {
        double dt = now - o->t_last_cluster;
        o->round_s = o->round_s > 0 ? 0.5 * (o->round_s + dt) : dt;
    }
    o->t_last_cluster = now;
    o->received = r;
    // the volunteers' speed: the cluster's stats say how long it computed
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
    o->cursor = cursor;
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
