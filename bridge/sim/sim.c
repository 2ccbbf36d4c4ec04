// sim.c: conflux-sim's model on SimGrid (see sim.h).
//
// Actors (SimGrid runs them one at a time on the simulated clock; they share these structs):
//   bridge     the round loop: opens rounds through the round core, waits for uploads (a
//              semaphore released by each arrival, with a timeout at the deadline or the next
//              departure), closes them through the core, models the cluster's compute and
//              all-reduce as time, queues results, writes the rows;
//   volunteer  one per volunteer, on its own host: joins (state download, catch-up), takes
//              messages from its inbox (ROUND_OPEN: compute its share, then upload it;
//              a result: download it), leaves at the end of each stint and comes back;
//   uploader   one per upload, so a diloco volunteer's upload overlaps its next round.
// Transfers are sg_host_sendto between the bridge host and a volunteer host: each crosses
// the bridge's shared link and the volunteer's own link in that direction.
#include "bridge/sim/sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <simgrid/actor.h>
#include <simgrid/engine.h>
#include <simgrid/host.h>
#include <simgrid/semaphore.h>
#include <simgrid/version.h>

#include "bridge/proto.h"
#include "bridge/round_core.h"
#include "io/run/runcols.h"
#include "io/run/runlog.h"
#include "models/codec.h"
#include "models/common.h"

// ---- configuration ----

#define F(sec, key, type, field) {sec, key, type, offsetof(SimConfig, field), 0, NULL, NULL}
#define S(sec, key, field) {sec, key, CFG_STR, offsetof(SimConfig, field), CFG_PATH_LEN, NULL, NULL}
#define E(sec, key, field, names, what) {sec, key, CFG_ENUM, offsetof(SimConfig, field), 0, names, what}
static const char *const TCP_NAMES[] = {"bbr", "cubic|reno", NULL};
static const char *const LEAVE_NAMES[] = {"kill", "graceful", NULL};
#define P(i, key, type, field) \
    {"profile." #i, key, type, offsetof(SimConfig, prof) + (i - 1) * sizeof(SimProfile) + offsetof(SimProfile, field), 0, NULL, NULL}
#define PROFILE(i)                                                                                 \
    {"profile." #i, "name", CFG_STR, offsetof(SimConfig, prof) + (i - 1) * sizeof(SimProfile), 64, \
     NULL, NULL},                                                                                  \
    P(i, "count", CFG_INT, count), P(i, "samples_per_s", CFG_FLOAT, samples_per_s),               \
    P(i, "speed_sigma", CFG_FLOAT, speed_sigma), P(i, "up_mbps", CFG_FLOAT, up_mbps),             \
    P(i, "down_mbps", CFG_FLOAT, down_mbps), P(i, "latency_ms", CFG_FLOAT, latency_ms),           \
    P(i, "loss", CFG_FLOAT, loss), P(i, "join_s", CFG_FLOAT, join_s),                             \
    P(i, "join_spread_s", CFG_FLOAT, join_spread_s), P(i, "stay_s", CFG_FLOAT, stay_s),           \
    P(i, "stay_max_s", CFG_FLOAT, stay_max_s), P(i, "away_s", CFG_FLOAT, away_s),                 \
    {"profile." #i, "trace", CFG_STR, offsetof(SimConfig, prof) + (i - 1) * sizeof(SimProfile) +   \
     offsetof(SimProfile, trace), sizeof(((SimProfile *)0)->trace), NULL, NULL},                  \
    {"profile." #i, "leave", CFG_ENUM,                                                             \
     offsetof(SimConfig, prof) + (i - 1) * sizeof(SimProfile) + offsetof(SimProfile, leave), 0,   \
     LEAVE_NAMES, "a way to leave"}

static const CfgKey KEYS[] = {
    E("run", "mode", mode, CFG_AVG_MODE_NAMES, "an averaging mode"),
    F("run", "steps", CFG_LONG, steps),
    F("run", "global_batch", CFG_INT, global_batch),
    F("run", "inner_steps", CFG_INT, inner_steps),
    F("run", "params", CFG_LONG, params),
    E("run", "up_codec", up_codec, CFG_CODEC_NAMES, "a codec"),
    E("run", "down_codec", down_codec, CFG_CODEC_NAMES, "a codec"),
    F("run", "seq_len", CFG_INT, seq_len),
    F("run", "eval_every", CFG_INT, eval_every),
    F("run", "eval_s", CFG_FLOAT, eval_s),
    F("run", "step_s", CFG_FLOAT, step_s),
    S("run", "loss_curve", loss_curve),
    F("run", "loss_curve_scale", CFG_FLOAT, loss_curve_scale),
    F("run", "seed", CFG_LONG, seed),
    F("run", "precision_s", CFG_FLOAT, precision_s),
    E("run", "tcp", tcp, TCP_NAMES, "a TCP congestion control"),
    S("run", "dir", dir),
    F("bridge", "deadline_s", CFG_FLOAT, deadline_s),
    F("bridge", "max_staleness", CFG_INT, max_staleness),
    F("bridge", "history", CFG_INT, history),
    F("bridge", "plan_equal", CFG_INT, plan_equal),
    F("bridge", "probe_samples", CFG_INT, probe_samples),
    F("bridge", "max_share", CFG_FLOAT, max_share),
    F("bridge", "wait_volunteers", CFG_INT, wait_volunteers),
    F("bridge", "wait_timeout_s", CFG_FLOAT, wait_timeout_s),
    F("bridge", "overlap", CFG_INT, overlap),
    F("bridge", "process_s", CFG_FLOAT, process_s),
    F("bridge", "process_s_per_upload", CFG_FLOAT, process_s_per_upload),
    F("bridge", "up_mbps", CFG_FLOAT, up_mbps),
    F("bridge", "down_mbps", CFG_FLOAT, down_mbps),
    F("bridge", "latency_ms", CFG_FLOAT, latency_ms),
    F("cluster", "trainers", CFG_INT, trainers),
    F("cluster", "samples_per_s", CFG_FLOAT, trainer_samples_per_s),
    F("cluster", "interconnect_gbps", CFG_FLOAT, interconnect_gbps),
    F("cluster", "interconnect_latency_us", CFG_FLOAT, interconnect_latency_us),
    PROFILE(1), PROFILE(2), PROFILE(3), PROFILE(4), PROFILE(5), PROFILE(6), PROFILE(7), PROFILE(8),
};
const CfgSchema SIM_SCHEMA = {KEYS, sizeof KEYS / sizeof KEYS[0]};

void sim_defaults(SimConfig *c) {
    memset(c, 0, sizeof *c);
    *c = (SimConfig){.mode = AVG_SYNC, .steps = 100, .global_batch = 64, .inner_steps = 50,
                     .params = 1000000, .seq_len = 128, .eval_every = 20, .seed = 1,
                     .deadline_s = 30, .max_staleness = 1, .history = 16, .probe_samples = 8,
                     .max_share = 0.5f, .wait_timeout_s = 120, .loss_curve_scale = 1, .precision_s = 1e-9f, .overlap = 1, .up_mbps = 1000,
                     .down_mbps = 1000, .latency_ms = 1, .trainers = 1, .trainer_samples_per_s = 100,
                     .interconnect_gbps = 100, .interconnect_latency_us = 2};
    snprintf(c->dir, sizeof c->dir, "sim-run");
    for (int i = 0; i < SIM_MAX_PROFILES; i++) {
        SimProfile *p = &c->prof[i];
        snprintf(p->name, sizeof p->name, "profile%d", i + 1);
        p->samples_per_s = 50;
        p->up_mbps = p->down_mbps = 100;
        p->latency_ms = 20;
    }
}

int sim_check(const SimConfig *c, char *err) {
    if (c->steps < 1 || c->steps > 100000000) return cx_err(err, "run.steps must be in [1, 1e8] (got %ld)", c->steps);
    if (c->global_batch < 1) return cx_err(err, "run.global_batch must be >= 1 (got %d)", c->global_batch);
    if (c->params < 1) return cx_err(err, "run.params must be >= 1 (got %ld)", c->params);
    if (c->mode == AVG_DILOCO && (c->inner_steps < 1 || c->steps % c->inner_steps != 0))
        return cx_err(err, "run.steps (%ld) must be a multiple of run.inner_steps (%d) in diloco mode",
                      c->steps, c->inner_steps);
    if (c->trainers < 1) return cx_err(err, "cluster.trainers must be >= 1 (got %d)", c->trainers);
    if (c->mode == AVG_SYNC && c->global_batch < c->trainers)
        return cx_err(err, "run.global_batch (%d) must be >= cluster.trainers (%d)", c->global_batch, c->trainers);
    if (!(c->trainer_samples_per_s > 0)) return cx_err(err, "cluster.samples_per_s must be > 0");
    if (!(c->interconnect_gbps > 0)) return cx_err(err, "cluster.interconnect_gbps must be > 0");
    if (!(c->up_mbps > 0) || !(c->down_mbps > 0)) return cx_err(err, "bridge.up_mbps and bridge.down_mbps must be > 0");
    if (!(c->deadline_s > 0)) return cx_err(err, "bridge.deadline_s must be > 0");
    if (c->history < 1) return cx_err(err, "bridge.history must be >= 1");
    if (!(c->loss_curve_scale > 0)) return cx_err(err, "run.loss_curve_scale must be > 0");
    if (!(c->precision_s > 0 && c->precision_s <= 1)) return cx_err(err, "run.precision_s must be in (0, 1]");
    if (c->eval_every < 0 || c->eval_s < 0 || c->step_s < 0) return cx_err(err, "run.eval_every, run.eval_s and run.step_s must be >= 0");
    int total = 0;
    for (int i = 0; i < SIM_MAX_PROFILES; i++) {
        const SimProfile *p = &c->prof[i];
        if (p->count == 0) continue;
        if (p->count < 0 || p->count > 100000)
            return cx_err(err, "profile.%d.count must be in [0, 100000] (got %d)", i + 1, p->count);
        if (!(p->samples_per_s > 0) || !(p->up_mbps > 0) || !(p->down_mbps > 0))
            return cx_err(err, "profile.%d: samples_per_s, up_mbps and down_mbps must be > 0", i + 1);
        if (!(p->loss >= 0 && p->loss < 0.5)) return cx_err(err, "profile.%d.loss must be in [0, 0.5)", i + 1);
        // the name goes into volunteers.csv's quoted fields and SimGrid's actor names
        if (!p->name[0] || p->name[strspn(p->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")])
            return cx_err(err, "profile.%d.name '%.64s': letters, digits, '.', '_' and '-' only", i + 1, p->name);
        if (p->speed_sigma < 0 || p->latency_ms < 0 || p->join_s < 0 || p->join_spread_s < 0 ||
            p->stay_s < 0 || p->stay_max_s < 0 || p->away_s < 0)
            return cx_err(err, "profile.%d: times, latency and speed_sigma must be >= 0", i + 1);
        SimTrace tr;
        if (p->trace[0] && sim_trace_parse(p->trace, &tr, err) != 0) {
            char why[CX_ERRLEN];
            snprintf(why, sizeof why, "%s", err);
            return cx_err(err, "profile.%d.trace: %s", i + 1, why);
        }
        total += p->count;
    }
    if (total > BR_PLAN_MAX_VOLUNTEERS * 16)
        return cx_err(err, "%d volunteers: at most %d", total, BR_PLAN_MAX_VOLUNTEERS * 16);
    return 0;
}

int sim_trace_parse(const char *text, SimTrace *tr, char *err) {
    memset(tr, 0, sizeof *tr);
    const char *p = text;
    double last = -1;
    while (*p) {
        char *end;
        double t = strtod(p, &end);
        if (end == p || *end != ':' || !(t >= 0) || !isfinite(t))
            return cx_err(err, "expected TIME:EVENT at '%.20s'", p);
        if (t < last) return cx_err(err, "times must not decrease (%.3f after %.3f)", t, last);
        last = t;
        p = end + 1;
        size_t len = strcspn(p, ",");
        int ev = len == 4 && !strncmp(p, "join", 4) ? SIM_JOIN : len == 5 && !strncmp(p, "leave", 5) ? SIM_LEAVE
               : len == 4 && !strncmp(p, "kill", 4) ? SIM_KILL : -1;
        if (ev < 0) return cx_err(err, "unknown event '%.*s' (join, leave or kill)", (int)(len < 20 ? len : 20), p);
        if (tr->n == SIM_MAX_TRACE) return cx_err(err, "more than %d events", SIM_MAX_TRACE);
        int joined = tr->n > 0 && tr->ev[tr->n - 1] == SIM_JOIN;
        if ((ev == SIM_JOIN) == joined)
            return cx_err(err, "%s at %.3f s: %s", ev == SIM_JOIN ? "join" : "leave or kill", t,
                          ev == SIM_JOIN ? "already joined" : "not joined");
        tr->t[tr->n] = t;
        tr->ev[tr->n++] = ev;
        p += len;
        if (*p == ',') p++;
    }
    if (tr->n == 0) return cx_err(err, "no events");
    return 0;
}

// ---- the loss curve ----

typedef struct {
    int n, nv;
    double *samples, *loss;      // train loss against cumulative samples
    double *vsamples, *vloss;    // valid loss against cumulative samples
} Curve;

static int curve_load(Curve *cv, const char *path, double scale, char *err) {
    memset(cv, 0, sizeof *cv);
    if (!path[0]) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return cx_err(err, "cannot open the loss curve: %s (%s)", strerror(errno), path);
    char line[1024];
    if (!fgets(line, sizeof line, f) || strncmp(line, "time_s,step,samples,loss,", 25) != 0) {
        fclose(f);
        return cx_err(err, "not a conflux metrics.csv: the first line is not its header (%s)", path);
    }
    int cap = 1024, lineno = 1;
    cv->samples = malloc(cap * sizeof(double));
    cv->loss = malloc(cap * sizeof(double));
    cv->vsamples = malloc(cap * sizeof(double));
    cv->vloss = malloc(cap * sizeof(double));
    double last = -1;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        double t, samples, loss;
        long step;
        if (sscanf(line, "%lf,%ld,%lf,%lf", &t, &step, &samples, &loss) != 4) {
            fclose(f);
            return cx_err(err, "malformed row (%s:%d)", path, lineno);
        }
        if (samples < last) continue;  // a resumed segment: keep the curve monotone
        last = samples;
        if (cv->n == cap || cv->nv == cap) {
            cap *= 2;
            cv->samples = realloc(cv->samples, cap * sizeof(double));
            cv->loss = realloc(cv->loss, cap * sizeof(double));
            cv->vsamples = realloc(cv->vsamples, cap * sizeof(double));
            cv->vloss = realloc(cv->vloss, cap * sizeof(double));
            CHECK(cv->samples && cv->loss && cv->vsamples && cv->vloss, "out of memory");
        }
        samples *= scale;
        cv->samples[cv->n] = samples;
        cv->loss[cv->n++] = loss;
        // valid_loss: the 13th column, when not empty
        const char *p = line;
        for (int k = 0; k < 12 && p; k++) {
            p = strchr(p, ',');
            if (p) p++;
        }
        if (p && *p && *p != '\n' && *p != '\r') {
            cv->vsamples[cv->nv] = samples;
            cv->vloss[cv->nv++] = atof(p);
        }
    }
    fclose(f);
    if (cv->n < 2) return cx_err(err, "the loss curve has %d rows, needs 2 (%s)", cv->n, path);
    return 0;
}

static double interp(const double *x, const double *y, int n, double at) {
    if (n == 0) return NAN;
    if (at <= x[0]) return y[0];
    if (at >= x[n - 1]) return y[n - 1];
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x[mid] <= at) lo = mid;
        else hi = mid;
    }
    double w = x[hi] > x[lo] ? (at - x[lo]) / (x[hi] - x[lo]) : 0;
    return y[lo] + w * (y[hi] - y[lo]);
}

static void curve_free(Curve *cv) {
    free(cv->samples);
    free(cv->loss);
    free(cv->vsamples);
    free(cv->vloss);
}

// ---- the model's state ----

enum { MSG_OPEN, MSG_RESULT, MSG_KICK };

typedef struct {
    int kind;
    uint64_t round, start, n;
    double bytes;
    double t_post;  // when the bridge queued it
} Msg;

typedef struct SimVol SimVol;
struct SimVol {
    int id;
    char name[80], ident[33];
    const SimProfile *p;
    double speed;              // samples per second (its host's speed)
    sg_host_t host;
    // the connection
    int connected, live, epoch, order;  // order: joining order of the connection
    int kicked;                // dropped by the bridge as a laggard: rejoins at once
    int leaving;               // this stint ends between rounds (graceful), not killed
    double t_leave;            // the current stint ends (kill: at once; graceful: between rounds)
    double t_next_join;        // 0: does not come back
    BrSeat seat;
    BrPlanSpeed speed_est;
    double t_prev_first;
    int uploading;
    // inbox (the bridge queues, the volunteer takes)
    Msg *inbox;
    int in_head, in_n, in_cap;
    sg_sem_t sem;
    // the bridge's records
    uint64_t fresh, stale, dropped, lost, round_accepted;
    double bytes_in, bytes_out;  // the bridge's view: from it, to it
    uint64_t rng;
};

typedef struct Up Up;
struct Up {
    SimVol *v;
    int epoch;
    uint64_t round, start, samples;
    double t_open, t_start, t_first, t_done, bytes;
    Up *next;
};

typedef struct {
    const SimConfig *c;
    Curve curve;
    int n_vols;
    SimVol *vols;
    sg_host_t bridge;
    sg_sem_t bridge_sem;
    BrRoundCore core;
    uint64_t done;             // sync: steps done; diloco: outer rounds applied
    Up *pending;
    int n_out[2];              // shares of a round still to arrive (by round % 2; sync: [0])
    double next_leave;         // earliest stint end of a connected volunteer (kill)
    int next_order;
    double up_bytes, down_bytes, result_bytes, open_bytes, state_bytes;
    double allreduce_s;        // one gradient all-reduce in the cluster (ring)
    FILE *metrics, *bcsv, *vcsv;
    double wan_in, wan_out, last_in, last_out;
    uint64_t cum_samples;
    int quiet, finished;
    int cluster_only;          // no volunteers: no bridge in the run
    double t_report, t_wall0;  // the next progress line; the computing's start
    char *err;
    int failed;
} Sim;

static Sim S;  // SimGrid's actors take argc/argv; the model is one per process

// xorshift64*: a volunteer's own stream, so a run does not depend on actor scheduling
static double rnd01(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
static double rnd_exp(uint64_t *s, double mean) { return -mean * log(1.0 - rnd01(s)); }
static double rnd_normal(uint64_t *s) {
    double u = rnd01(s), w = rnd01(s);
    return sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(2 * M_PI * w);
}

static void vevent(SimVol *v, uint64_t step, const char *ev, uint64_t samples, const char *detail) {
    runlog_write_volunteer_row(S.vcsv, simgrid_get_clock(), step, v->ident, v->name, "sim", ev, samples, detail);
}

// Takes sem, waiting timeout seconds at most (infinite: until released). 0, or 1 on timeout.
static int sem_wait(sg_sem_t sem, double timeout) {
    if (isfinite(timeout)) return sg_sem_acquire_timeout(sem, timeout) != 0;
    sg_sem_acquire(sem);
    return 0;
}

static void post(SimVol *v, Msg m) {
    if (v->in_n == v->in_cap) {
        int cap = v->in_cap ? 2 * v->in_cap : 8;
        Msg *q = cx_calloc((size_t)cap, sizeof *q);
        for (int i = 0; i < v->in_n; i++) q[i] = v->inbox[(v->in_head + i) % v->in_cap];
        free(v->inbox);
        v->inbox = q;
        v->in_head = 0;
        v->in_cap = cap;
    }
    m.t_post = simgrid_get_clock();
    v->inbox[(v->in_head + v->in_n++) % v->in_cap] = m;
    S.wan_out += m.bytes;
    v->bytes_out += m.bytes;
    sg_sem_release(v->sem);
}

// ---- departures ----

static void update_next_leave(void) {
    S.next_leave = INFINITY;
    for (int i = 0; i < S.n_vols; i++)
        if (S.vols[i].connected && !S.vols[i].leaving && S.vols[i].t_leave < S.next_leave)
            S.next_leave = S.vols[i].t_leave;
}

// v's connection ends now (killed, left, or kicked): its shares are lost.
static void disconnect(SimVol *v, const char *event, const char *why) {
    if (!v->connected) return;
    BrSeat held = v->seat;
    uint64_t held_n = br_core_seat_lost(&S.core, &v->seat);
    v->lost += held_n;
    if (held.assigned_round) {
        if (S.c->mode == AVG_SYNC ? held.assigned_round == S.core.round && S.core.open
                                  : held.assigned_round > S.done)
            S.n_out[S.c->mode == AVG_SYNC ? 0 : held.assigned_round % 2]--;
        vevent(v, held.assigned_round, "lost", held.assigned_samples, why);
    }
    if (held.next_round) {
        S.n_out[held.next_round % 2]--;
        vevent(v, held.next_round, "lost", held.next_samples, why);
    }
    vevent(v, S.done, event, 0, why);
    if (strcmp(event, "disconnected") != 0) vevent(v, S.done, "disconnected", 0, why);
    v->connected = v->live = 0;
    v->seat.in_rounds = 0;
    v->epoch++;
}

static void process_departures(double now) {
    if (now < S.next_leave) return;
    for (int i = 0; i < S.n_vols; i++) {
        SimVol *v = &S.vols[i];
        if (v->connected && !v->leaving && v->t_leave <= now) disconnect(v, "disconnected", "killed");
    }
    update_next_leave();
}

// ---- the volunteer ----

// An upload arrives at the bridge (or dies with its connection).
static void upload_run(Up *u) {
    SimVol *v = u->v;
    u->t_start = simgrid_get_clock();
    sg_host_sendto(v->host, S.bridge, u->bytes);
    u->t_done = simgrid_get_clock();
    // the first chunk (256 KiB) arrived in its share of the transfer
    double first = u->bytes > 262144 ? 262144 / u->bytes : 1;
    u->t_first = u->t_start + (u->t_done - u->t_start) * first;
    if (--v->uploading == 0) v->seat.uploading = 0;
    S.wan_in += u->bytes;
    if (u->epoch != v->epoch || !v->live || (!v->leaving && u->t_done > v->t_leave)) {
        free(u);  // its connection died under it
        return;
    }
    v->bytes_in += u->bytes;
    br_core_upload_done(&v->seat);
    int open = S.c->mode == AVG_SYNC ? u->round == S.core.round && S.core.open : u->round > S.done;
    if (open) S.n_out[S.c->mode == AVG_SYNC ? 0 : u->round % 2]--;
    u->next = S.pending;
    S.pending = u;
    sg_sem_release(S.bridge_sem);
}

static void upload_main(int argc, char **argv) {
    (void)argc;
    Up *u = NULL;
    sscanf(argv[1], "%p", (void **)&u);
    upload_run(u);
}

static void vol_main(int argc, char **argv) {
    (void)argc;
    SimVol *v = &S.vols[atoi(argv[1])];
    const SimConfig *c = S.c;
    SimTrace tr = {0};
    int ti = 0;  // the trace's next join
    if (v->p->trace[0]) sim_trace_parse(v->p->trace, &tr, NULL);  // checked by sim_check
    double t = tr.n ? tr.t[0] : v->p->join_s + v->p->join_spread_s * rnd01(&v->rng);
    int resume = 0;  // kicked: it rejoins at once for the rest of its stint
    for (;;) {
        if (t > simgrid_get_clock()) sg_actor_sleep_until(t);
        if (S.finished) return;
        // a stint: connect, download the state, catch up, go live
        if (!resume && tr.n) {
            // the trace: this join's end is its next event (leave: between rounds; kill)
            v->t_leave = ti + 1 < tr.n ? tr.t[ti + 1] : INFINITY;
            v->leaving = ti + 1 < tr.n && tr.ev[ti + 1] == SIM_LEAVE;
            ti += 2;
        } else if (!resume) {
            double stay = v->p->stay_s > 0 ? rnd_exp(&v->rng, v->p->stay_s) : INFINITY;
            if (v->p->stay_max_s > 0 && stay > v->p->stay_max_s) stay = v->p->stay_max_s;
            v->t_leave = simgrid_get_clock() + stay;
            v->leaving = v->p->leave;
        }
        resume = 0;
        v->connected = 1;
        v->order = S.next_order++;
        v->seat = (BrSeat){.speed = &v->speed_est, .t_prev_first = &v->t_prev_first};
        v->in_n = 0;
        int epoch = v->epoch;
        if (!v->leaving && v->t_leave < S.next_leave) S.next_leave = v->t_leave;
        vevent(v, S.done, "joined", 0, "sim");
        // the handshake: TCP, TLS 1.3, HELLO/WELCOME, the state request (a round trip each)
        sg_actor_sleep_for(4 * 2e-3 * (v->p->latency_ms + c->latency_ms));
        sg_host_sendto(S.bridge, v->host, S.state_bytes);
        S.wan_out += S.state_bytes;
        v->bytes_out += S.state_bytes;
        uint64_t acked = S.done;
        while (v->epoch == epoch && S.done > acked) {  // catch up from the history
            uint64_t k = S.done - acked;
            sg_host_sendto(S.bridge, v->host, (double)k * S.result_bytes);
            S.wan_out += (double)k * S.result_bytes;
            v->bytes_out += (double)k * S.result_bytes;
            acked += k;
        }
        if (v->epoch == epoch && simgrid_get_clock() < v->t_leave) {
            v->live = 1;
            v->seat.in_rounds = 1;
            v->seat.acked_step = acked;
            vevent(v, S.done, "live", 0, NULL);
            sg_sem_release(S.bridge_sem);
        }
        // the rounds
        double t_down_done = 0;  // the last download arrived
        while (((v->epoch == epoch && v->live) || v->kicked) && !S.finished) {
            double left = v->t_leave - simgrid_get_clock();
            if (left <= 0 && !v->kicked && (!v->leaving || (v->seat.assigned_round == 0 && v->seat.next_round == 0 &&
                                               !v->uploading)))
                break;  // killed, or leaving with nothing in hand
            if (sem_wait(v->sem, left > 0 ? left : 1.0) != 0 || v->in_n == 0) continue;
            Msg m = v->inbox[v->in_head];
            v->in_head = (v->in_head + 1) % v->in_cap;
            v->in_n--;
            if (m.kind == MSG_KICK) break;
            if (m.kind == MSG_OPEN) {
                // ROUND_OPEN's 64 bytes: queued behind a download still arriving, they come
                // with it; on an idle connection they take the one-way latency
                if (m.t_post > t_down_done) sg_actor_sleep_for(1e-3 * (v->p->latency_ms + c->latency_ms));
            } else {
                sg_host_sendto(S.bridge, v->host, m.bytes);
                t_down_done = simgrid_get_clock();
            }
            if (v->kicked) continue;  // the bridge flushes what it queued before the error
            if (v->epoch != epoch) break;
            if (m.kind == MSG_RESULT) {
                v->seat.acked_step = m.round;
                continue;
            }
            if (m.n == 0) continue;
            // its share: compute, then upload (sync: before it reads on; diloco: while it
            // computes its next round)
            sg_actor_execute((double)m.n);
            if (v->epoch != epoch) break;
            Up *u = cx_calloc(1, sizeof *u);
            *u = (Up){.v = v, .epoch = epoch, .round = m.round, .start = m.start, .samples = m.n,
                      .t_open = v->seat.assigned_round == m.round ? v->seat.assigned_t_open : v->seat.next_t_open,
                      .bytes = S.up_bytes};
            v->uploading++;
            v->seat.uploading = 1;
            if (c->mode == AVG_SYNC) {
                upload_run(u);
            } else {
                char arg[32];
                snprintf(arg, sizeof arg, "%p", (void *)u);
                const char *av[] = {"upload", arg};
                sg_actor_create("upload", v->host, upload_main, 2, (char **)av);
            }
        }
        if (S.finished) return;
        if (v->kicked) {
            // conflux-volunteer's reconnect: 1 s after a first failure (bridge/volunteer.c)
            v->kicked = 0;
            resume = 1;
            t = simgrid_get_clock() + 1.0;
            continue;
        }
        // gone: back after a gap, with a fresh state (a new connection and identity)
        if (v->epoch == epoch) disconnect(v, v->leaving ? "left" : "disconnected", v->leaving ? "bye" : "killed");
        if (tr.n) {
            if (ti >= tr.n) return;
            t = tr.t[ti];
        } else {
            if (!(v->p->away_s > 0)) return;
            t = simgrid_get_clock() + rnd_exp(&v->rng, v->p->away_s);
        }
        snprintf(v->ident, sizeof v->ident, "%08x%08x%016llx", (unsigned)v->id, (unsigned)v->epoch,
                 (unsigned long long)v->rng);
    }
}

// ---- the bridge ----

// Waits until `until` or a wake-up (an upload, a volunteer going live), then processes
// departures.
static void bridge_wait(double until) {
    double now = simgrid_get_clock();
    double t = until < S.next_leave ? until : S.next_leave;
    if (t > now) sem_wait(S.bridge_sem, t - now);
    else sg_actor_yield();
    process_departures(simgrid_get_clock());
}

static int cmp_up(const void *a, const void *b) {
    const Up *x = *(Up *const *)a, *y = *(Up *const *)b;
    if (x->round != y->round) return x->round < y->round ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

// The seats of the live volunteers, in joining order.
static int gather_seats(SimVol **vs, BrSeat **seats) {
    int n = 0;
    for (int i = 0; i < S.n_vols; i++)
        if (S.vols[i].live) vs[n++] = &S.vols[i];
    // joining order (insertion sort: nearly sorted already)
    for (int i = 1; i < n; i++) {
        SimVol *x = vs[i];
        int j = i - 1;
        while (j >= 0 && vs[j]->order > x->order) vs[j + 1] = vs[j], j--;
        vs[j + 1] = x;
    }
    if (n > BR_PLAN_MAX_VOLUNTEERS) n = BR_PLAN_MAX_VOLUNTEERS;
    for (int i = 0; i < n; i++) {
        vs[i]->seat.in_rounds = 1;
        vs[i]->seat.uploading = vs[i]->uploading > 0;
        seats[i] = &vs[i]->seat;
    }
    return n;
}

// Closes round r: the fates of the uploads of rounds <= r. Returns the accepted samples and
// adds the accepted uploads to *participants.
static uint64_t close_uploads(uint64_t r, int *participants) {
    int n = 0;
    for (Up *u = S.pending; u; u = u->next) n += u->round <= r;
    Up **arr = cx_calloc((size_t)n + 1, sizeof *arr);
    BrUpload *bu = cx_calloc((size_t)n + 1, sizeof *bu);
    int *fate = cx_calloc((size_t)n + 1, sizeof *fate);
    n = 0;
    Up **keep = &S.pending;
    for (Up *u = S.pending; u;) {
        Up *next = u->next;
        if (u->round <= r) {
            arr[n++] = u;
            *keep = next;
        } else {
            keep = &u->next;
        }
        u = next;
    }
    qsort(arr, (size_t)n, sizeof *arr, cmp_up);
    for (int i = 0; i < n; i++) {
        Up *u = arr[i];
        bu[i] = (BrUpload){.round = u->round, .samples = u->samples, .t_open = u->t_open,
                           .t_first = u->t_first, .t_done = u->t_done,
                           .up_bytes = u->bytes > 262144 ? u->bytes - 262144 : 0,
                           .up_s = u->t_done - u->t_first, .tokens_ok = 1,
                           .speed = &u->v->speed_est, .t_prev_first = &u->v->t_prev_first};
    }
    for (SimVol *v = S.vols; v < S.vols + S.n_vols; v++) v->round_accepted = 0;
    br_core_close(&S.core, r, bu, n, 0, 1.0, fate);
    uint64_t acc = 0;
    for (int i = 0; i < n; i++) {
        SimVol *v = arr[i]->v;
        uint64_t s = arr[i]->samples;
        if (fate[i] == BR_FATE_FRESH || fate[i] == BR_FATE_STALE) {
            acc += s;
            (*participants)++;
            v->round_accepted += s;
            if (fate[i] == BR_FATE_FRESH) v->fresh += s;
            else v->stale += s;
        } else {
            v->dropped += s;
        }
        vevent(v, r, br_fate_name(fate[i]), s, NULL);
        free(arr[i]);
    }
    free(arr);
    free(bu);
    free(fate);
    return acc;
}

static void bridge_row(uint64_t step, uint64_t samples, int participants, double wait_s, double loss) {
    const BrRoundCore *k = &S.core;
    int live = 0;
    for (int i = 0; i < S.n_vols; i++) live += S.vols[i].live;
    runlog_write_bridge_row(S.bcsv, &(BridgeRow){
        .time_s = simgrid_get_clock(), .step = (long)step, .samples = (long)samples,
        .trainer_samples = k->trainer_samples, .volunteers_assigned = k->assigned,
        .volunteer_samples_assigned = k->assigned_samples, .fresh = k->fresh, .stale = k->stale,
        .dropped = k->dropped, .lost = k->lost, .participants = participants, .live_volunteers = live,
        .loss = loss, .wait_s = wait_s, .allreduce_s = S.allreduce_s, .bytes_sent = S.wan_out - S.last_out,
        .bytes_recv = S.wan_in - S.last_in, .upload_bytes = k->up_bytes, .upload_s = k->up_s});
    S.last_out = S.wan_out;
    S.last_in = S.wan_in;
}

// A progress line every 2 s of computing and at the last step: the step, the simulated
// clock, samples, loss, steps simulated per second and the time left.
static void progress(long step, double sim_now, double loss) {
    if (S.quiet) return;
    double w = cx_now();
    if (w < S.t_report && step != S.c->steps) return;
    double rate = step / (w - S.t_wall0 > 1e-9 ? w - S.t_wall0 : 1e-9);
    fprintf(stderr, "conflux-sim: step %ld/%ld | simulated %.1f s | samples %llu | loss %.4f | %.0f steps/s | ETA %.0fs\n",
            step, S.c->steps, sim_now, (unsigned long long)S.cum_samples, loss, rate,
            (double)(S.c->steps - step) / (rate > 0 ? rate : 1));
    S.t_report = w + 2;
}

// The curve's loss at `samples` (0 without a curve).
static double curve_loss(uint64_t samples) {
    return S.curve.n ? interp(S.curve.samples, S.curve.loss, S.curve.n, (double)samples) : 0;
}

// metrics.csv's row of `step`, ending at time t after dt seconds: the step's samples (added
// to the running total), compute_s of computing, grad_bytes each way, the participants;
// the loss columns from the curve (valid_loss on the eval_every-th steps).
static void metrics_row(long step, double t, double dt, uint64_t step_samples, double compute_s,
                        double grad_bytes, int participants) {
    const SimConfig *c = S.c;
    S.cum_samples += step_samples;
    int eval = S.curve.nv && c->eval_every > 0 && step % c->eval_every == 0;
    MetricsRow row = {.time_s = t, .step = step, .samples = (long)S.cum_samples, .loss = curve_loss(S.cum_samples),
                      .samples_per_s = dt > 0 ? (double)step_samples / dt : 0,
                      .tokens_per_s = dt > 0 ? (double)step_samples * c->seq_len / dt : 0,
                      .compute_s = compute_s, .comm_s = dt - compute_s > 0 ? dt - compute_s : 0,
                      .bytes_sent = llround(grad_bytes), .bytes_recv = llround(grad_bytes),
                      .participants = participants,
                      .valid_loss = eval ? interp(S.curve.vsamples, S.curve.vloss, S.curve.nv, (double)S.cum_samples) : NAN};
    runlog_write_row(S.metrics, &row);
}

static void wait_for_volunteers(void) {
    const SimConfig *c = S.c;
    if (c->wait_volunteers <= 0 || S.cluster_only) return;
    double t_end = simgrid_get_clock() + c->wait_timeout_s;
    for (;;) {
        int ready = 0;
        for (int i = 0; i < S.n_vols; i++) ready += S.vols[i].live && S.vols[i].seat.acked_step == S.done;
        if (ready >= c->wait_volunteers || simgrid_get_clock() >= t_end) return;
        bridge_wait(t_end);
    }
}

static void drop_laggards(uint64_t done) {
    for (int i = 0; i < S.n_vols; i++) {
        SimVol *v = &S.vols[i];
        v->seat.uploading = v->uploading > 0;
        if (v->live && br_core_laggard(&S.core, &v->seat, done)) {
            char why[96];
            snprintf(why, sizeof why, "%llu rounds behind the run: too slow to follow it",
                     (unsigned long long)(done - v->seat.acked_step));
            disconnect(v, "kicked", why);
            v->kicked = 1;  // it rejoins at once, for the rest of its stint
            post(v, (Msg){.kind = MSG_KICK});
        }
    }
}

static void sync_rounds(void) {
    const SimConfig *c = S.c;
    SimVol **vs = cx_calloc((size_t)S.n_vols + 1, sizeof *vs);
    BrSeat **seats = cx_calloc((size_t)S.n_vols + 1, sizeof *seats);
    BrShare *share = cx_calloc((size_t)S.n_vols + 1, sizeof *share);
    wait_for_volunteers();
    double eval_due = 0;
    for (long step = 1; step <= c->steps; step++) {
        double t0 = simgrid_get_clock();
        process_departures(t0);
        drop_laggards(S.done);
        int n = gather_seats(vs, seats);
        br_core_sync_open(&S.core, seats, n, c->global_batch, c->trainers, S.done, S.cum_samples, t0, share);
        S.n_out[0] = 0;
        for (int j = 0; j < n; j++) {
            post(vs[j], (Msg){.kind = MSG_OPEN, .round = S.core.round, .start = share[j].start,
                              .n = share[j].n, .bytes = S.open_bytes});
            S.n_out[0] += share[j].n > 0;
        }
        double compute = (double)S.core.trainer_samples / c->trainers / c->trainer_samples_per_s;
        // the trainers validate after a step while the volunteers already compute the next
        double t_trainers = t0 + eval_due + compute;
        eval_due = 0;
        double until;
        while (!br_core_sync_wait(&S.core, S.n_out[0], simgrid_get_clock(), &until)) bridge_wait(until);
        double wait_s = simgrid_get_clock() - t0;
        for (int j = 0; j < n; j++)
            if (vs[j]->connected && vs[j]->seat.assigned_round == S.core.round)
                vevent(vs[j], S.core.round, "late", vs[j]->seat.assigned_samples, NULL);
        int participants = 1;
        uint64_t vol_samples = close_uploads(S.core.round, &participants);
        // the bridge's own work on them (decoding, aggregation) before the all-reduce
        if (!S.cluster_only) sg_actor_sleep_for(c->process_s + c->process_s_per_upload * (participants - 1));
        if (simgrid_get_clock() < t_trainers) sg_actor_sleep_until(t_trainers);
        sg_actor_sleep_for(S.allreduce_s);
        br_core_note_trainers(&S.core, c->trainers, compute * c->trainers);
        S.done = S.core.round;
        for (int i = 0; i < S.n_vols; i++)
            if (S.vols[i].live) post(&S.vols[i], (Msg){.kind = MSG_RESULT, .round = S.done, .bytes = S.result_bytes});
        sg_actor_sleep_for(c->step_s);
        if (c->eval_every > 0 && step % c->eval_every == 0) eval_due = c->eval_s;
        uint64_t samples = (uint64_t)S.core.trainer_samples + vol_samples;
        // the ring all-reduce: 2 (P - 1) / P of the gradient, P the trainers and the bridge
        int P = c->trainers + !S.cluster_only;
        double now = simgrid_get_clock();
        metrics_row(step, now, now - t0, samples, compute, 4.0 * (double)c->params * 2.0 * (P - 1) / (P > 1 ? P : 1),
                    participants);
        const double loss = curve_loss(S.cum_samples);
        progress(step, now, loss);
        bridge_row((uint64_t)step, samples, participants, wait_s, loss);
    }
    free(vs);
    free(seats);
    free(share);
}

// DiLoCo: the outer rounds' state at the bridge, by round (1-based).
typedef struct {
    double *t_cluster, *max_up;
    long *assigned;
    uint64_t *assigned_samples, *vol_acc;
    int *parts;
} Outer;

static void open_outer(Outer *o, long r, SimVol **vs, BrSeat **seats, BrShare *share) {
    process_departures(simgrid_get_clock());
    drop_laggards(S.done);
    int n = gather_seats(vs, seats);
    br_core_outer_open(&S.core, seats, n, r, S.done, S.c->trainers, simgrid_get_clock(), share);
    S.n_out[r % 2] = 0;
    for (int j = 0; j < n; j++) {
        post(vs[j], (Msg){.kind = MSG_OPEN, .round = (uint64_t)r, .start = share[j].start,
                          .n = share[j].n, .bytes = S.open_bytes});
        S.n_out[r % 2] += share[j].n > 0;
    }
    o->assigned[r] = S.core.assigned;
    o->assigned_samples[r] = S.core.assigned_samples;
    o->max_up[r] = S.core.max_up_s;
}

// Closes round q: its uploads' fates, its average to every live volunteer, its row.
static void close_outer(Outer *o, long q, double wait_s) {
    const SimConfig *c = S.c;
    int p = 1;
    o->vol_acc[q] = close_uploads((uint64_t)q, &p);
    sg_actor_sleep_for(c->process_s + c->process_s_per_upload * (p - 1));
    o->parts[q] = p;
    S.done = (uint64_t)q;
    for (int i = 0; i < S.n_vols; i++)
        if (S.vols[i].live) post(&S.vols[i], (Msg){.kind = MSG_RESULT, .round = S.done, .bytes = S.result_bytes});
    S.core.trainer_samples = (long)c->inner_steps * c->global_batch;
    S.core.assigned = (int)o->assigned[q];
    S.core.assigned_samples = o->assigned_samples[q];
    uint64_t cum = (uint64_t)(q * c->inner_steps * c->global_batch);
    for (long i = 1; i <= q; i++) cum += o->vol_acc[i];
    double loss = curve_loss(cum);
    bridge_row((uint64_t)(q * c->inner_steps), (uint64_t)S.core.trainer_samples + o->vol_acc[q], p, wait_s, loss);
    S.cum_samples = cum;  // (the metrics rows are written after the run, from the start)
    progress(q * c->inner_steps, simgrid_get_clock(), loss);
}

// One inner step of the cluster: its samples on its trainers, its all-reduce, the update;
// plus a validation pass on every eval_every-th step.
static double inner_step_s(long s) {
    const SimConfig *c = S.c;
    double t = (double)c->global_batch / c->trainers / c->trainer_samples_per_s +
               (c->trainers > 1 ? S.allreduce_s : 0) + c->step_s;
    return (c->eval_every > 0 && s % c->eval_every == 0) ? t + c->eval_s : t;
}

static void diloco_rounds(void) {
    const SimConfig *c = S.c;
    const long H = c->inner_steps, R = c->steps / H;
    SimVol **vs = cx_calloc((size_t)S.n_vols + 1, sizeof *vs);
    BrSeat **seats = cx_calloc((size_t)S.n_vols + 1, sizeof *seats);
    BrShare *share = cx_calloc((size_t)S.n_vols + 1, sizeof *share);
    Outer o = {.t_cluster = cx_calloc((size_t)R + 2, sizeof(double)),
               .max_up = cx_calloc((size_t)R + 2, sizeof(double)),
               .assigned = cx_calloc((size_t)R + 2, sizeof(long)),
               .assigned_samples = cx_calloc((size_t)R + 2, sizeof(uint64_t)),
               .vol_acc = cx_calloc((size_t)R + 2, sizeof(uint64_t)),
               .parts = cx_calloc((size_t)R + 2, sizeof(int))};
    wait_for_volunteers();
    // the cluster never waits for the volunteers (overlap): round r's part arrives after its
    // H inner steps; the bridge closes round r - 1 when it is complete or due, and at the
    // latest when round r's part arrives
    double t_start = simgrid_get_clock(), tc = t_start;
    open_outer(&o, 1, vs, seats, share);
    long closed = 0;
    for (long r = 1; r <= R; r++) {
        for (long s = (r - 1) * H + 1; s <= r * H; s++) tc += inner_step_s(s);
        for (;;) {
            double now = simgrid_get_clock(), dl = INFINITY;
            long q = closed + 1;
            if (q < r) {
                dl = br_core_outer_deadline(&S.core, o.t_cluster[q], o.max_up[q]);
                if (S.n_out[q % 2] <= 0 || now >= dl) {
                    close_outer(&o, q, now - o.t_cluster[q]);
                    closed = q;
                    continue;
                }
            }
            if (now >= tc) break;
            bridge_wait(tc < dl ? tc : dl);
        }
        o.t_cluster[r] = simgrid_get_clock();
        br_core_note_cluster(&S.core, o.t_cluster[r]);
        if (closed < r - 1) {
            close_outer(&o, r - 1, simgrid_get_clock() - o.t_cluster[r - 1]);
            closed = r - 1;
        }
        if (r < R) open_outer(&o, r + 1, vs, seats, share);
    }
    // the last round: until it is complete or due
    for (;;) {
        double now = simgrid_get_clock(), dl = br_core_outer_deadline(&S.core, o.t_cluster[R], o.max_up[R]);
        if (S.n_out[R % 2] <= 0 || now >= dl) break;
        bridge_wait(dl);
    }
    close_outer(&o, R, simgrid_get_clock() - o.t_cluster[R]);
    // metrics.csv: one row per inner step of the cluster, on its clock; a round's volunteer
    // samples count at its last step (as conflux-train's rows do)
    S.cum_samples = 0;
    double t = t_start;
    const double compute = (double)c->global_batch / c->trainers / c->trainer_samples_per_s;
    for (long s = 1; s <= c->steps; s++) {
        double dt = inner_step_s(s);
        t += dt;
        long r = (s + H - 1) / H;
        int last = s % H == 0;  // the round's outer step: its volunteers' samples, the exchange
        metrics_row(s, t, dt, (uint64_t)c->global_batch + (last ? o.vol_acc[r] : 0), compute,
                    last ? 4.0 * (double)c->params : 0, last ? o.parts[r] : 1);
    }
    free(o.t_cluster);
    free(o.max_up);
    free(o.assigned);
    free(o.assigned_samples);
    free(o.vol_acc);
    free(o.parts);
    free(vs);
    free(seats);
    free(share);
}

static void bridge_main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    if (S.c->mode == AVG_SYNC) sync_rounds();
    else diloco_rounds();
    S.finished = 1;
    // the volunteers' totals, as the bridge's summary rows
    for (int i = 0; i < S.n_vols; i++) {
        SimVol *v = &S.vols[i];
        if (v->connected) vevent(v, S.done, "unfinished", 0, "run ended");
        char d[200];
        snprintf(d, sizeof d, "fresh=%llu stale=%llu dropped=%llu lost=%llu bytes_in=%.0f bytes_out=%.0f",
                 (unsigned long long)v->fresh, (unsigned long long)v->stale,
                 (unsigned long long)v->dropped, (unsigned long long)v->lost, v->bytes_in, v->bytes_out);
        vevent(v, S.done, "summary", v->fresh + v->stale, d);
        sg_sem_release(v->sem);
    }
}

// ---- the platform ----

// A TCP flow's rate on a link of `mbps` with random loss p and round trip rtt_s: bbr keeps
// the rate and loses the lost share; cubic (and Reno) follow Mathis et al.:
// MSS / (RTT sqrt(2p/3)).
static double tcp_mbps(const SimConfig *c, double mbps, double p, double rtt_s) {
    if (p <= 0) return mbps;
    if (c->tcp == 0) return mbps * (1 - p);
    double mathis = 1460.0 * 8 / (rtt_s * sqrt(2 * p / 3)) / 1e6;
    return mathis < mbps ? mathis : mbps;
}

static int write_platform(const char *path, char *err) {
    const SimConfig *c = S.c;
    FILE *f = fopen(path, "w");
    if (!f) return cx_err(err, "cannot write %s: %s", path, strerror(errno));
    fprintf(f, "<?xml version='1.0'?>\n<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">\n"
               "<platform version=\"4.1\">\n<zone id=\"world\" routing=\"Full\">\n"
               "<host id=\"bridge\" speed=\"1f\"/>\n");
    for (int i = 0; i < S.n_vols; i++)
        fprintf(f, "<host id=\"v%d\" speed=\"%.6ff\"/>\n", i, S.vols[i].speed);
    fprintf(f, "<link id=\"bridge_in\" bandwidth=\"%.6fMbps\" latency=\"%.6fms\"/>\n"
               "<link id=\"bridge_out\" bandwidth=\"%.6fMbps\" latency=\"%.6fms\"/>\n",
            (double)c->down_mbps, (double)c->latency_ms, (double)c->up_mbps, (double)c->latency_ms);
    for (int i = 0; i < S.n_vols; i++) {
        const SimProfile *p = S.vols[i].p;
        double rtt = 2e-3 * (p->latency_ms + c->latency_ms);
        fprintf(f, "<link id=\"v%d_up\" bandwidth=\"%.6fMbps\" latency=\"%.6fms\"/>\n"
                   "<link id=\"v%d_down\" bandwidth=\"%.6fMbps\" latency=\"%.6fms\"/>\n",
                i, tcp_mbps(c, p->up_mbps, p->loss, rtt), (double)p->latency_ms, i,
                tcp_mbps(c, p->down_mbps, p->loss, rtt), (double)p->latency_ms);
    }
    for (int i = 0; i < S.n_vols; i++)
        fprintf(f, "<route src=\"v%d\" dst=\"bridge\" symmetrical=\"NO\"><link_ctn id=\"v%d_up\"/>"
                   "<link_ctn id=\"bridge_in\"/></route>\n"
                   "<route src=\"bridge\" dst=\"v%d\" symmetrical=\"NO\"><link_ctn id=\"bridge_out\"/>"
                   "<link_ctn id=\"v%d_down\"/></route>\n", i, i, i, i);
    fprintf(f, "</zone>\n</platform>\n");
    if (fclose(f) != 0) return cx_err(err, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

// Bytes of n parameters in codec with the protocol's chunk framing (per chunk: a frame
// header and the chunk's fixed fields; chunks of about 256 KiB, as bridge/rounds.c cuts them).
static double wire_bytes(int codec, long n, int fixed) {
    size_t per = codec_chunk_elems(codec, 1u << 18);
    if (per == 0) per = 1;
    size_t chunks = ((size_t)n + per - 1) / per;
    return (double)codec_encoded_bytes(codec, (size_t)n) + (double)chunks * (BR_PROTO_HEADER_BYTES + fixed);
}

// ---- the run ----

static FILE *open_csv(const char *dir, const char *name, const char *header, char *err) {
    char path[CFG_PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        cx_err(err, "cannot write %s: %s", path, strerror(errno));
        return NULL;
    }
    fprintf(f, "%s\n", header);
    return f;
}

static int write_run_json(const SimConfig *c, char *err) {
    char path[CFG_PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/run.json", c->dir);
    FILE *f = fopen(path, "w");
    if (!f) return cx_err(err, "cannot write %s: %s", path, strerror(errno));
    char ini[1 << 16];
    cfg_to_ini(&SIM_SCHEMA, c, ini, sizeof ini);
    char started[32];
    runlog_iso_time(started, sizeof started);
    fprintf(f, "{\n \"tool\": \"conflux-sim\",\n \"simulated\": true,\n \"started\": \"%s\",\n"
               " \"host\": \"simulated\",\n \"ranks\": %d,\n \"nodes\": %d,\n \"launcher\": \"simgrid\",\n"
               " \"resumed_from\": null,\n \"versions\": {\"conflux\": \"%s\", \"simgrid\": \"%d.%d\"},\n"
               " \"loss_source\": \"%s\",\n \"config_ini\": \"",
            started, c->trainers, c->trainers, CONFLUX_VERSION, SIMGRID_VERSION_MAJOR, SIMGRID_VERSION_MINOR,
            c->loss_curve[0] ? "measured: loss against samples from the real run in config run.loss_curve" : "none");
    for (const char *p = ini; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fprintf(f, "\\n");
        else fputc(*p, f);
    }
    fprintf(f, "\",\n \"config\": {\"train\": {\"global_batch\": \"%d\"}, \"averaging\": {\"mode\": \"%s\", "
               "\"inner_steps\": \"%d\"}}\n}\n",
            c->global_batch, c->mode == AVG_DILOCO ? "diloco" : "sync", c->inner_steps);
    if (fclose(f) != 0) return cx_err(err, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

int sim_run(const SimConfig *c, int quiet, char *err) {
    memset(&S, 0, sizeof S);
    S.c = c;
    S.quiet = quiet;
    S.err = err;
    if (runlog_mkdirs(c->dir, err) != 0) return -1;
    if (curve_load(&S.curve, c->loss_curve, c->loss_curve_scale, err) != 0) return -1;
    // sizes
    int up = c->up_codec ? c->up_codec : c->mode == AVG_DILOCO ? CODEC_INT8 : CODEC_FP16;
    int down = c->down_codec ? c->down_codec : c->mode == AVG_DILOCO ? CODEC_INT8 : CODEC_FP32;
    S.up_bytes = wire_bytes(up, c->params, BR_GRAD_CHUNK_FIXED_BYTES);
    S.result_bytes = wire_bytes(down, c->params, BR_AVG_CHUNK_FIXED_BYTES) + 64;  // + ROUND_CLOSE
    S.open_bytes = 64;
    // a state download: sync, the parameters and both AdamW moments; diloco, the outer
    // parameters and the outer momentum (fp32)
    S.state_bytes = (c->mode == AVG_DILOCO ? 2.0 : 3.0) * 4.0 * (double)c->params;
    // the bridge joins the cluster's all-reduce; without volunteers the run is the cluster
    // alone (no bridge, no bridge.csv or volunteers.csv: conflux-report's "MPI only")
    for (int i = 0; i < SIM_MAX_PROFILES; i++) S.n_vols += c->prof[i].count;
    S.cluster_only = S.n_vols == 0;
    int P = c->trainers + !S.cluster_only;
    double gb = 4.0 * (double)c->params;
    S.allreduce_s = 2.0 * (P - 1) / P * gb * 8 / (c->interconnect_gbps * 1e9) +
                    2.0 * (P - 1) * c->interconnect_latency_us * 1e-6;
    // volunteers
    S.vols = cx_calloc((size_t)S.n_vols + 1, sizeof *S.vols);
    int id = 0;
    for (int i = 0; i < SIM_MAX_PROFILES; i++) {
        const SimProfile *p = &c->prof[i];
        for (int j = 0; j < p->count; j++, id++) {
            SimVol *v = &S.vols[id];
            v->id = id;
            v->p = p;
            v->rng = (uint64_t)c->seed * 0x9E3779B97F4A7C15ull + (uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ull;
            if (!v->rng) v->rng = 1;
            for (int w = 0; w < 4; w++) rnd01(&v->rng);
            v->speed = p->samples_per_s * (p->speed_sigma > 0 ? exp(p->speed_sigma * rnd_normal(&v->rng)) : 1.0);
            if (p->count == 1) snprintf(v->name, sizeof v->name, "%s", p->name);
            else snprintf(v->name, sizeof v->name, "%s-%d", p->name, j + 1);
            snprintf(v->ident, sizeof v->ident, "%08x%08x%016llx", (unsigned)id, 0u,
                     (unsigned long long)v->rng);
            v->seat.speed = &v->speed_est;
            v->seat.t_prev_first = &v->t_prev_first;
        }
    }
    BrCoreOptions co = {.deadline_s = c->deadline_s, .max_staleness = c->max_staleness, .history = c->history,
                        .plan_equal = c->plan_equal, .probe_samples = c->probe_samples,
                        .max_share = c->max_share, .max_delta_ratio = 0, .diloco = c->mode == AVG_DILOCO,
                        .inner_steps = c->inner_steps, .batch = c->global_batch, .overlap = c->overlap};
    br_core_init(&S.core, &co);
    S.next_leave = INFINITY;
    S.t_wall0 = cx_now();
    // SimGrid
    char platform[CFG_PATH_LEN + 64];
    snprintf(platform, sizeof platform, "%s/platform.xml", c->dir);
    if (write_platform(platform, err) != 0) return -1;
    static char precision[64];
    snprintf(precision, sizeof precision, "--cfg=surf/precision:%g", (double)c->precision_s);
    static char *args[] = {"conflux-sim", "--cfg=network/model:CM02", "--cfg=network/crosstraffic:0", "--cfg=network/optim:Full",
                           "--cfg=contexts/stack-size:64", precision, "--log=root.thresh:critical", NULL};
    int ac = 7;
    simgrid_init(&ac, args);
    simgrid_load_platform(platform);
    S.bridge = sg_host_by_name("bridge");
    S.bridge_sem = sg_sem_init(0);
    char mpath[CFG_PATH_LEN + 64];
    snprintf(mpath, sizeof mpath, "%s/metrics.csv", c->dir);
    remove(mpath);  // a simulation writes a run of its own, never appends to one
    S.metrics = runlog_open_metrics(c->dir, err);
    if (!S.metrics) return -1;
    if (!S.cluster_only) {
        S.bcsv = open_csv(c->dir, "bridge.csv", RUNCOLS_BRIDGE, err);
        S.vcsv = S.bcsv ? open_csv(c->dir, "volunteers.csv", RUNCOLS_VOLUNTEERS, err) : NULL;
        if (!S.vcsv) return -1;
    } else {
        S.bcsv = fopen("/dev/null", "w");
        S.vcsv = fopen("/dev/null", "w");
        CHECK(S.bcsv && S.vcsv, "cannot open /dev/null");
    }
    if (write_run_json(c, err) != 0) return -1;
    for (int i = 0; i < S.n_vols; i++) {
        char host[32], arg[16];
        snprintf(host, sizeof host, "v%d", i);
        snprintf(arg, sizeof arg, "%d", i);
        S.vols[i].host = sg_host_by_name(host);
        S.vols[i].sem = sg_sem_init(0);
        const char *av[] = {"volunteer", arg};
        sg_actor_create(S.vols[i].name, S.vols[i].host, vol_main, 2, (char **)av);
    }
    const char *bv[] = {"bridge"};
    sg_actor_create("bridge", S.bridge, bridge_main, 1, (char **)bv);
    simgrid_run();
    int rc = 0;
    if (fclose(S.metrics) != 0 || fclose(S.bcsv) != 0 || fclose(S.vcsv) != 0)
        rc = cx_err(err, "cannot write the run's CSV files in %s", c->dir);
    if (rc == 0) rc = runlog_write_finished(c->dir, c->steps, err);
    remove(platform);
    curve_free(&S.curve);
    return rc;
}
