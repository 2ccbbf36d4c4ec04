// round_core.c: the bridge's round logic without I/O (see round_core.h).
#include "bridge/round_core.h"

#include <string.h>

#include "models/common.h"

void br_core_init(BrRoundCore *k, const BrCoreOptions *o) {
    memset(k, 0, sizeof *k);
    k->o = *o;
}

uint64_t br_core_max_lag(const BrRoundCore *k) {
    return (uint64_t)(k->o.history / 2 > 2 ? k->o.history / 2 : 2);
}

int br_core_laggard(const BrRoundCore *k, const BrSeat *s, uint64_t done) {
    return s->in_rounds && s->assigned_round == 0 && !s->uploading && s->next_round == 0 &&
           s->acked_step + br_core_max_lag(k) < done;
}

// ---- sync rounds ----

void br_core_sync_open(BrRoundCore *k, BrSeat **seats, int n, long G, int nt, uint64_t done,
                       uint64_t samples_seen, double now, BrShare *share) {
    CHECK(n >= 0 && n <= BR_PLAN_MAX_VOLUNTEERS, "br_core_sync_open: %d seats", n);
    k->round = done + 1;
    // eligible: in step (it has applied, or is about to apply, the last round: that round's
    // result precedes this ROUND_OPEN on its connection) and nothing outstanding
    int idx[BR_PLAN_MAX_VOLUNTEERS], n_elig = 0;
    BrPlanSpeed speed[BR_PLAN_MAX_VOLUNTEERS];
    for (int j = 0; j < n; j++) {
        share[j] = (BrShare){0};
        const BrSeat *s = seats[j];
        if (s->in_rounds && s->acked_step + 1 >= done && s->assigned_round == 0 && !s->uploading) {
            speed[n_elig] = *s->speed;
            idx[n_elig++] = j;
        }
    }
    BrPlanParams pp = {.global_batch = G, .n_trainers = nt, .trainer_rate = k->trainer_rate,
                       .probe_samples = k->o.probe_samples, .equal = k->o.plan_equal,
                       .max_share = k->o.max_share > 0 ? (long)(k->o.max_share * (double)G) : 0};
    if (k->o.max_share > 0 && pp.max_share < 1) pp.max_share = 1;
    long sh[BR_PLAN_MAX_VOLUNTEERS];
    int nv = br_plan_round(&pp, speed, n_elig, sh, &k->trainer_samples);
    for (int e = 0; e < n_elig; e++) seats[idx[e]]->speed->idle_rounds = speed[e].idle_rounds;
    k->assigned = nv;
    k->assigned_samples = 0;
    k->fresh = k->stale = k->dropped = k->lost = 0;
    k->up_bytes = k->up_s = 0;
    k->t_open = now;
    k->t_deadline = now + k->o.deadline_s;
    k->open = 1;
    uint64_t pos = samples_seen + (uint64_t)k->trainer_samples;
    for (int e = n_elig - nv; e < n_elig; e++) {
        BrSeat *s = seats[idx[e]];
        BrShare *out = &share[idx[e]];
        out->planned = 1;
        if (sh[e] == 0) continue;  // no share this round: it just applies the step
        out->start = pos;
        out->n = (uint64_t)sh[e];
        pos += out->n;
        s->assigned_round = k->round;
        s->assigned_start = out->start;
        s->assigned_samples = out->n;
        s->assigned_t_open = now;
        k->assigned_samples += out->n;
    }
}

int br_core_sync_wait(const BrRoundCore *k, int n_outstanding, double now, double *until) {
    *until = k->t_deadline;
    return n_outstanding == 0 || now >= k->t_deadline;
}

void br_core_note_trainers(BrRoundCore *k, int nt, double compute_s_sum) {
    k->trainer_rate = br_plan_note_trainers(k->trainer_rate, k->trainer_samples, nt, compute_s_sum);
    k->open = 0;
}

// ---- diloco outer rounds ----

// Inner steps for a seat: H (plan_equal); else what its measured compute speed does in 0.9
// of the cluster's round time, in [1, H]; one not measured yet is taken to be as fast as one
// trainer rank (H / trainers steps: a slower one is late once, counts in the next round, and
// is measured).
static long outer_steps(const BrRoundCore *k, const BrPlanSpeed *v, int nt) {
    long H = k->o.inner_steps;
    if (k->o.plan_equal) return H;
    long h;
    if (!(v->rate > 0) || !(k->round_s > 0)) h = (H + nt - 1) / nt;
    else h = (long)(0.9 * v->rate * k->round_s / (double)k->o.batch);
    return h < 1 ? 1 : h > H ? H : h;
}

void br_core_outer_open(BrRoundCore *k, BrSeat **seats, int n, long r, uint64_t applied, int nt,
                        double now, BrShare *share) {
    k->round = (uint64_t)r;
    k->open = 1;
    k->t_open = now;
    k->trainer_samples = k->o.inner_steps * k->o.batch;
    k->cursor += (uint64_t)k->trainer_samples;  // the cluster first: it never waits
    k->assigned = 0;
    k->assigned_samples = 0;
    k->max_up_s = 0;
    const uint64_t max_lag = br_core_max_lag(k);
    for (int j = 0; j < n; j++) {
        BrSeat *s = seats[j];
        share[j] = (BrShare){0};
        if (!s->in_rounds || s->next_round != 0 || s->acked_step + max_lag < applied) continue;
        uint64_t ns = (uint64_t)(outer_steps(k, s->speed, nt) * k->o.batch), s0 = k->cursor;
        k->cursor += ns;
        if (s->assigned_round == 0 && !s->uploading) {
            s->assigned_round = (uint64_t)r;
            s->assigned_start = s0;
            s->assigned_samples = ns;
            s->assigned_t_open = now;
        } else {
            s->next_round = (uint64_t)r;
            s->next_start = s0;
            s->next_samples = ns;
            s->next_t_open = now;
        }
        share[j] = (BrShare){.start = s0, .n = ns, .planned = 1};
        k->assigned++;
        k->assigned_samples += ns;
        if (s->speed->up_s > k->max_up_s) k->max_up_s = s->speed->up_s;
    }
}

double br_core_outer_deadline(const BrRoundCore *k, double t_cluster, double max_up_s) {
    if (k->o.plan_equal) return t_cluster + k->o.deadline_s;  // reproducible runs
    if (k->o.overlap && k->round_s > 0) return t_cluster + 0.9 * k->round_s;
    double d = 2.0 * max_up_s + 1.0;
    if (max_up_s <= 0 || d > k->o.deadline_s) d = k->o.deadline_s;
    return t_cluster + d;
}

void br_core_note_cluster(BrRoundCore *k, double now) {
    if (k->t_last_cluster > 0) {
        double dt = now - k->t_last_cluster;
        k->round_s = k->round_s > 0 ? 0.5 * (k->round_s + dt) : dt;
    }
    k->t_last_cluster = now;
}

// ---- closing ----

void br_core_close(BrRoundCore *k, uint64_t round, BrUpload *ups, int n, int cap_k,
                   double cluster_norm, int *fate) {
    if (k->o.diloco) {
        k->fresh = k->stale = k->dropped = k->lost = 0;
        k->up_bytes = k->up_s = 0;
    }
    int accepted = 0;
    for (int i = 0; i < n; i++) {
        BrUpload *u = &ups[i];
        uint64_t age = round - u->round;
        double ratio = k->o.max_delta_ratio;
        if (k->o.diloco && ratio > 0 && !(u->norm <= ratio * cluster_norm)) fate[i] = BR_FATE_REJECTED_NORM;
        else if (!u->tokens_ok) fate[i] = BR_FATE_REJECTED_TOKENS;
        else if (age > (uint64_t)k->o.max_staleness || (cap_k > 0 && accepted == cap_k)) fate[i] = BR_FATE_DROPPED_STALE;
        else fate[i] = age == 0 ? BR_FATE_FRESH : BR_FATE_STALE;
        if (fate[i] == BR_FATE_FRESH || fate[i] == BR_FATE_STALE) {
            accepted++;
            k->up_bytes += u->up_bytes;
            k->up_s += u->up_s;
            if (age == 0) k->fresh += u->samples;
            else k->stale += u->samples;
        } else {
            k->dropped += u->samples;
        }
        if (k->o.diloco) {
            // every upload that arrived: it computed from when it had both the round's plan
            // and its last round done (that upload's first chunk) until this upload's first
            // chunk; its uploads overlap its next round
            double from = u->t_open > *u->t_prev_first ? u->t_open : *u->t_prev_first;
            br_plan_note_upload(u->speed, u->samples, u->t_first - from, u->t_done - u->t_first);
            *u->t_prev_first = u->t_first;
        } else if (age == 0 && (fate[i] == BR_FATE_FRESH)) {
            // compute (with the wait for the last result) until the first chunk, then the
            // upload; the first chunk's own transfer (about 256 KiB) is scaled in
            double dt = u->t_first - k->t_open, up = u->t_done - u->t_first;
            if (u->up_bytes > 0 && u->up_s > 0) up += u->up_s / u->up_bytes * 262144.0;
            br_plan_note_upload(u->speed, u->samples, dt, up);
        }
    }
}

uint64_t br_core_seat_lost(BrRoundCore *k, BrSeat *s) {
    uint64_t held = 0;
    if (s->assigned_round) {
        held += s->assigned_samples;
        if (s->assigned_round == k->round) k->lost += s->assigned_samples;
    }
    if (s->next_round) held += s->next_samples;
    s->assigned_round = s->assigned_samples = s->next_round = s->next_samples = 0;
    return held;
}

void br_core_upload_done(BrSeat *s) {
    s->assigned_round = s->assigned_samples = 0;
    if (s->next_round) {
        s->assigned_round = s->next_round;
        s->assigned_start = s->next_start;
        s->assigned_t_open = s->next_t_open;
        s->assigned_samples = s->next_samples;
        s->next_round = s->next_start = s->next_samples = 0;
    }
}

const char *br_fate_name(int fate) {
    switch (fate) {
    case BR_FATE_FRESH: return "accepted";
    case BR_FATE_STALE: return "accepted-stale";
    case BR_FATE_DROPPED_STALE: return "dropped-stale";
    case BR_FATE_REJECTED_TOKENS: return "rejected-tokens";
    case BR_FATE_REJECTED_NORM: return "rejected-norm";
    }
    return "?";
}
