// rounds.c: the bridge's rounds, its Averager (see rounds.h).
#include "bridge/rounds.h"

#include <stdlib.h>
#include <string.h>

#include "models/codec.h"
#include "bridge/outer.h"
#include "bridge/planner.h"
#include "bridge/server_internal.h"
#include "io/run/runlog.h"
#include "models/common.h"
#include "models/nn.h"

// ---- round messages and history ----

static HistRound *hist_find(BridgeServer *b, uint64_t round) {
    for (int i = 0; i < b->rounds.hist_n; i++) {
        HistRound *r = &b->rounds.hist[i];
        if (r->frames && r->round == round) return r;
    }
    return NULL;
}

// A round's target samples: the global batch, or in diloco mode a worker's whole round
// (H global batches).
static uint64_t br_round_target(const BridgeServer *b) {
    return (uint64_t)b->tr->global_batch * (b->outer ? (uint64_t)br_outer_inner_steps(b->outer) : 1);
}

void br_rounds_send_open(Conn *c, uint64_t round, uint64_t hash, uint64_t start, uint64_t n) {
    c->opened_round = round;
    BrFrame f = {.type = BR_MSG_ROUND_OPEN};
    f.m.round_open = (BrRoundOpen){.round_id = round, .step = round,
                                   .target_samples = br_round_target(c->b),
                                   .sample_start = start, .n_samples = n, .params_hash = hash};
    br_conn_send(c, &f);
}

// ROUND_CLOSE with the round's totals (and this volunteer's accepted samples), then the
// round's AVG_CHUNK frames as they were encoded.
void br_rounds_send_result(Conn *c, const HistRound *h, uint64_t accepted) {
    BrFrame f = {.type = BR_MSG_ROUND_CLOSE};
    f.m.round_close = (BrRoundClose){.round_id = h->round, .accepted_samples = accepted,
                                     .samples = h->samples, .tokens = h->tokens,
                                     .participants = h->participants, .loss_sum = h->loss,
                                     .aux_sum = h->aux};
    if (br_conn_send(c, &f) == 0) br_conn_send_ref(c, h->frames, 0, h->frames_bytes);
}

// Elements per AVG/GRAD chunk in codec: about 256 KiB of payload (fine-grained pipelining at
// 0.03% framing cost), within the chunk limit, whole blocks of a blockwise codec.
size_t br_chunk_elems(int codec, size_t max_chunk_bytes) {
    size_t cap = max_chunk_bytes < (1u << 18) ? max_chunk_bytes : (1u << 18);
    size_t per = codec_chunk_elems(codec, cap);
    return per > 0 ? per : codec_chunk_align(codec);
}

void br_rounds_hist_encode(BridgeServer *b, HistRound *h, const float *sum, int codec, float *residual,
                           float *decoded) {
    const Codec *k_codec = codec_find(codec);
    size_t per = br_chunk_elems(codec, b->lim.max_chunk_bytes);
    size_t n_chunks = (b->n + per - 1) / per;
    size_t need = codec_encoded_bytes(codec, b->n) + n_chunks * (BR_PROTO_HEADER_BYTES + BR_AVG_CHUNK_FIXED_BYTES + 64);
    // the slot's block is reused only when no output queue still holds it
    if (!h->frames || h->frames->refs > 1 || h->frames->cap < need) {
        br_blob_unref(h->frames);
        h->frames = br_blob_new(need);
    }
    uint8_t *frames = h->frames->data;
    if (!b->rounds.chunk) {
        b->rounds.chunk = malloc(codec_encoded_bytes(CODEC_FP32, per > (1u << 16) ? per : (1u << 16)));
        CHECK(b->rounds.chunk, "out of memory");
    }
    size_t pos = 0;
    char err[CX_ERRLEN];
    for (size_t off = 0; off < b->n; off += per) {
        size_t k = b->n - off < per ? b->n - off : per;
        if (residual && k_codec->encode_ef) k_codec->encode_ef(b->rounds.chunk, sum + off, residual + off, k);
        else k_codec->encode(b->rounds.chunk, sum + off, k);
        if (decoded) k_codec->decode(decoded + off, b->rounds.chunk, k);
        BrFrame a = {.type = BR_MSG_AVG_CHUNK};
        a.m.avg_chunk = (BrAvgChunk){.round_id = h->round, .offset = off, .n_elems = (uint32_t)k,
                                     .codec = (uint8_t)codec, .data = b->rounds.chunk};
        int len = br_proto_encode(frames + pos, h->frames->cap - pos, &a, &b->lim, err);
        CHECK(len > 0, "encoding an AVG_CHUNK frame: %s", err);
        pos += (size_t)len;
    }
    h->frames_bytes = pos;
}

HistRound *br_rounds_hist_push(BridgeServer *b) {
    HistRound *h = &b->rounds.hist[b->rounds.hist_head];
    b->rounds.hist_head = (b->rounds.hist_head + 1) % b->o.history;
    if (b->rounds.hist_n < b->o.history) b->rounds.hist_n++;
    return h;
}

int br_rounds_catch_up(Conn *c, uint64_t k) {
    BridgeServer *b = c->b;
    uint64_t done = br_step(b);
    for (uint64_t r = k + 1; r <= done; r++) {
        HistRound *h = hist_find(b, r);
        if (!h) {
            br_conn_fail(c, BR_ERR_STATE, "at step %llu, %llu steps behind the run: more than the "
                         "%d rounds kept; download the state again",
                         (unsigned long long)k, (unsigned long long)(done - k), b->o.history);
            return -1;
        }
        br_rounds_send_open(c, r, h->hash_before, 0, 0);
        br_rounds_send_result(c, h, 0);
    }
    if (b->outer) return 0;  // diloco: the next ROUND_OPEN comes with the next round
    if (b->rounds.core.open) br_rounds_send_open(c, b->rounds.core.round, b->rounds.hash_before, 0, 0);
    return 0;
}

// ---- uploads ----

#define BR_MAX_LOSS 1e3  // nats per loss token (or per sequence, auxiliary) an upload may claim
#define BR_MAX_UPLOAD_NORM 1e30  // an upload's L2 norm at most, in every mode

static void upload_reset(Conn *c) {
    c->up_round = c->up_next = c->up_samples = c->up_tokens = 0;
    c->up_loss = c->up_aux = 0.0;
}

void br_rounds_on_grad_chunk(Conn *c, const BrGradChunk *m) {
    BridgeServer *b = c->b;
    if (c->state != C_LIVE) {
        br_conn_fail(c, BR_ERR_PROTOCOL, "GRAD_CHUNK before the connection is live");
        return;
    }
    if (m->codec != c->codec) {
        br_conn_fail(c, BR_ERR_BAD_DATA, "GRAD_CHUNK in codec %d, negotiated %d", m->codec, c->codec);
        return;
    }
    if (c->up_next == 0) {  // first chunk of an upload
        c->up_t_first = cx_now();
        c->up_bytes = 0;
        if (m->round_id != c->seat.assigned_round || c->seat.assigned_round == 0) {
            br_conn_fail(c, BR_ERR_PROTOCOL, "upload for round %llu, but the share it holds is for "
                         "round %llu", (unsigned long long)m->round_id,
                         (unsigned long long)c->seat.assigned_round);
            return;
        }
        if (m->offset != 0 || m->samples != c->seat.assigned_samples) {
            br_conn_fail(c, BR_ERR_BAD_DATA, "upload starts at element %llu with %llu samples; "
                         "expected element 0 and %llu samples", (unsigned long long)m->offset,
                         (unsigned long long)m->samples, (unsigned long long)c->seat.assigned_samples);
            return;
        }
        if (!c->up) {
            Rounds *rd = &b->rounds;
            c->up = rd->n_spare > 0 ? rd->spare[--rd->n_spare] : malloc(b->n * sizeof(float));
            CHECK(c->up, "out of memory for an upload buffer");
        }
        // the statistics summed into the round: bounded, so no sum of peers' values can
        // overflow (a cross-entropy is >= 0; BR_MAX_LOSS nats per token or sequence is far
        // above any real one)
        if (m->tokens > m->samples * 1000000ull) {
            br_conn_fail(c, BR_ERR_BAD_DATA, "upload claims %llu loss tokens for %llu samples",
                         (unsigned long long)m->tokens, (unsigned long long)m->samples);
            return;
        }
        if (!(m->loss_sum >= 0 && m->loss_sum <= BR_MAX_LOSS * (double)(m->tokens > 0 ? m->tokens : 1)) ||
            !(m->aux_sum >= 0 && m->aux_sum <= BR_MAX_LOSS * (double)m->samples)) {
            br_conn_fail(c, BR_ERR_BAD_DATA, "upload claims loss sum %g over %llu tokens and auxiliary "
                         "loss sum %g over %llu samples: outside [0, %g] per token or sample",
                         m->loss_sum, (unsigned long long)m->tokens, m->aux_sum,
                         (unsigned long long)m->samples, BR_MAX_LOSS);
            return;
        }
        c->up_round = m->round_id;
        c->up_samples = m->samples;
        c->up_tokens = m->tokens;
        c->up_loss = m->loss_sum;
        c->up_aux = m->aux_sum;
    } else if (m->round_id != c->up_round || m->samples != c->up_samples ||
               m->tokens != c->up_tokens || m->loss_sum != c->up_loss || m->aux_sum != c->up_aux) {
        br_conn_fail(c, BR_ERR_BAD_DATA, "GRAD_CHUNK at element %llu changes the round or totals "
                     "of the upload in progress", (unsigned long long)m->offset);
        return;
    }
    if (m->offset != c->up_next || m->offset + m->n_elems > b->n) {
        br_conn_fail(c, BR_ERR_BAD_DATA, "GRAD_CHUNK covers elements [%llu, %llu) but the next "
                     "expected element is %llu of %zu", (unsigned long long)m->offset,
                     (unsigned long long)(m->offset + m->n_elems), (unsigned long long)c->up_next, b->n);
        return;
    }
    float *dst = c->up + m->offset;
    codec_find(m->codec)->decode(dst, m->data, m->n_elems);  // the decoder checked the id
    size_t bad;
    if (!codec_check_finite(dst, m->n_elems, &bad)) {
        br_conn_fail(c, BR_ERR_BAD_DATA, "gradient element %llu is %g",
                     (unsigned long long)(m->offset + bad), (double)dst[bad]);
        return;
    }
    c->up_next += m->n_elems;
    if (m->offset > 0) c->up_bytes += (double)codec_encoded_bytes(m->codec, m->n_elems) + BR_PROTO_HEADER_BYTES + BR_GRAD_CHUNK_FIXED_BYTES;
    if (c->up_next < b->n) return;
    // complete: check the norm, then hand it to the rounds
    double norm = codec_l2norm(c->up, b->n);
    // whatever the limits are set to: finite elements can still sum to infinity in the
    // round (two of 3e38); no real gradient or pseudo-gradient comes near this norm
    if (!(norm <= BR_MAX_UPLOAD_NORM)) {
        br_conn_fail(c, BR_ERR_BAD_DATA, "upload norm %.3g is beyond any real one (%.0e)", norm,
                     BR_MAX_UPLOAD_NORM);
        return;
    }
    double per_tok = c->up_tokens > 0 ? norm / (double)c->up_tokens : norm;
    if (!b->outer && b->o.max_grad_norm > 0 && !(per_tok <= b->o.max_grad_norm)) {
        br_conn_fail(c, BR_ERR_BAD_DATA, "gradient norm %.3g per loss token exceeds the limit %.3g",
                     per_tok, b->o.max_grad_norm);
        return;
    }
    Pending *p = cx_calloc(1, sizeof *p);
    *p = (Pending){.vol = c->vol, .round = c->up_round, .start = c->seat.assigned_start, .samples = c->up_samples,
                   .tokens = c->up_tokens, .loss = c->up_loss, .aux = c->up_aux, .g = c->up,
                   .up_bytes = c->up_bytes, .up_s = cx_now() - c->up_t_first,
                   .t_first = c->up_t_first, .t_done = cx_now(), .t_open = c->seat.assigned_t_open};
    c->up = NULL;
    p->next = b->rounds.pending;
    b->rounds.pending = p;
    c->vol->uploads++;
    br_core_upload_done(&c->seat);  // diloco: the round it was given while uploading this one
    upload_reset(c);
}

void br_rounds_conn_closed(Conn *c, const char *why) {
    BridgeServer *b = c->b;
    // its shares will not arrive: lost, or unfinished when the run is over
    BrSeat held = c->seat;
    if (b->shutting_down) c->seat.assigned_round = c->seat.next_round = 0;
    else if (c->vol) c->vol->lost += br_core_seat_lost(&b->rounds.core, &c->seat);
    const char *ev = b->shutting_down ? "unfinished" : "lost";
    if (c->vol && held.assigned_round) br_vol_event(b, c->vol, ev, held.assigned_round, held.assigned_samples, why);
    if (c->vol && held.next_round) br_vol_event(b, c->vol, ev, held.next_round, held.next_samples, why);
    c->seat.assigned_round = c->seat.next_round = 0;
}

// ---- the Averager ----

// A live volunteer more than max_lag rounds behind cannot follow the run at its pace (its
// downlink or CPU is too slow for the rounds' results): it is dropped with the reason and
// may rejoin with a fresh state, instead of piling up results in its output queue.
void br_rounds_drop_laggards(BridgeServer *b, uint64_t done) {
    for (Conn *c = b->conns; c; c = c->next) {
        if (c->closing || c->state != C_LIVE) continue;
        br_rounds_seat_refresh(c);
        if (br_core_laggard(&b->rounds.core, &c->seat, done))
            br_conn_fail(c, BR_ERR_STATE, "%llu rounds behind the run (at most %llu): too slow to "
                         "follow it; rejoin to download a fresh state",
                         (unsigned long long)(done - c->acked_step),
                         (unsigned long long)br_core_max_lag(&b->rounds.core));
    }
}

void br_rounds_seat_refresh(Conn *c) {
    c->seat.in_rounds = !c->closing && c->state == C_LIVE && c->vol;
    c->seat.acked_step = c->acked_step;
    c->seat.uploading = c->up_next != 0;
    if (c->vol) {
        c->seat.speed = &c->vol->speed;
        c->seat.t_prev_first = &c->vol->t_prev_first;
    }
}

void br_rounds_seats(BridgeServer *b, BrSeats *s) {
    int n = 0;
    for (Conn *c = b->conns; c; c = c->next) {
        br_rounds_seat_refresh(c);
        n += c->seat.in_rounds;
    }
    s->conns = cx_calloc((size_t)n + 1, sizeof *s->conns);
    s->seats = cx_calloc((size_t)n + 1, sizeof *s->seats);
    s->share = cx_calloc((size_t)n + 1, sizeof *s->share);
    // joining order: the newest connections are the first in the list
    int j = n;
    for (Conn *c = b->conns; c; c = c->next)
        if (c->seat.in_rounds) s->conns[--j] = c;
    if (n > BR_PLAN_MAX_VOLUNTEERS) n = BR_PLAN_MAX_VOLUNTEERS;  // the rest: ROUND_OPEN only
    for (j = 0; j < n; j++) s->seats[j] = &s->conns[j]->seat;
    s->n = n;
}

void br_rounds_seats_free(BrSeats *s) {
    free(s->conns);
    free(s->seats);
    free(s->share);
}

void br_rounds_wait_volunteers(BridgeServer *b, uint64_t done) {
    double t0 = cx_now();
    if (b->o.wait_volunteers > 0 && !b->rounds.waited) {
        // the first round waits (bounded) for the volunteers the host expects
        br_log(b, "waiting up to %.0f s for %d volunteer(s)", b->o.wait_timeout_s, b->o.wait_volunteers);
        while (cx_now() - t0 < b->o.wait_timeout_s) {
            int ready = 0;
            for (Conn *c = b->conns; c; c = c->next)
                ready += !c->closing && c->state == C_LIVE && c->acked_step == done;
            if (ready >= b->o.wait_volunteers) break;
            bridge_pump(b, 0.05);
        }
        b->rounds.waited = 1;
    }
}

static int bridge_plan(void *ctx, long G, long *lo, long *hi, char *err) {
    BridgeServer *b = ctx;
    bridge_pump(b, 0);
    uint64_t done = (uint64_t)b->tr->optim.step;
    br_rounds_drop_laggards(b, done);
    br_rounds_wait_volunteers(b, done);
    for (Vol *v = b->vols; v; v = v->next) v->round_accepted = 0;
    b->rounds.hash_before = cx_checksum(b->tr->task.params, b->n);
    BrSeats st;
    br_rounds_seats(b, &st);
    Rounds *rs = &b->rounds;
    BrRoundCore *k = &rs->core;
    br_core_sync_open(k, st.seats, st.n, G, hybrid_trainer_shares(b->h), done, (uint64_t)b->tr->samples_seen,
                      cx_now(), st.share);
    rs->trainer_samples = k->trainer_samples;
    rs->assigned = k->assigned;
    rs->assigned_samples = k->assigned_samples;
    HybridPlan plan = {.step = (int64_t)k->round, .trainer_samples = k->trainer_samples,
                       .volunteers = k->assigned};
    int rc = hybrid_bcast_plan(b->h, &plan, err);
    for (int j = 0; rc == 0 && j < st.n; j++)
        br_rounds_send_open(st.conns[j], k->round, rs->hash_before, st.share[j].start, st.share[j].n);
    for (Conn *c = b->conns; rc == 0 && c; c = c->next)
        if (!c->closing && c->state == C_LIVE && c->opened_round != k->round)
            br_rounds_send_open(c, k->round, rs->hash_before, 0, 0);
    br_rounds_seats_free(&st);
    if (rc != 0) return -1;
    *lo = *hi = 0;
    return 0;
}

static int outstanding(BridgeServer *b) {
    int n = 0;
    for (Conn *c = b->conns; c; c = c->next) n += !c->closing && c->seat.assigned_round == b->rounds.core.round;
    return n;
}

int br_cmp_pending(const void *a, const void *b) {
    const Pending *x = *(Pending *const *)a, *y = *(Pending *const *)b;
    if (x->round != y->round) return x->round < y->round ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

// 1 when p's loss tokens are those of the samples it claims (or the task counts none); else
// 0 with the reason in why.
static int tokens_ok(BridgeServer *b, const Pending *p, char *why, size_t why_len) {
    const TrainTask *k = &b->tr->task;
    if (!k->count_tokens) return 1;
    uint64_t want = (uint64_t)k->count_tokens(k->ctx, p->start, (long)p->samples);
    if (p->tokens == want) return 1;
    snprintf(why, why_len, "upload claims %llu loss tokens for samples [%llu, +%llu); they hold %llu",
             (unsigned long long)p->tokens, (unsigned long long)p->start,
             (unsigned long long)p->samples, (unsigned long long)want);
    return 0;
}

void br_rounds_judge(BridgeServer *b, Pending **arr, int n, uint64_t round, int cap_k,
                     double cluster_norm, double *stats, int *fate) {
    BrUpload *ups = cx_calloc((size_t)n + 1, sizeof *ups);
    char (*why)[200] = cx_calloc((size_t)n + 1, sizeof *why);
    // an upload's norm only where the core's norm rule looks at it (diloco, a ratio set)
    const int norms = b->outer && b->o.max_delta_ratio > 0;
    for (int i = 0; i < n; i++) {
        Pending *p = arr[i];
        ups[i] = (BrUpload){.round = p->round, .samples = p->samples, .t_open = p->t_open,
                            .t_first = p->t_first, .t_done = p->t_done, .up_bytes = p->up_bytes,
                            .up_s = p->up_s, .norm = norms ? codec_l2norm(p->g, b->n) : 0,
                            .tokens_ok = tokens_ok(b, p, why[i], sizeof why[i]),
                            .speed = &p->vol->speed, .t_prev_first = &p->vol->t_prev_first};
    }
    br_core_close(&b->rounds.core, round, ups, n, cap_k, cluster_norm, fate);
    for (int i = 0; i < n; i++) {
        Pending *p = arr[i];
        Vol *v = p->vol;
        const char *ev = br_fate_name(fate[i]);
        if (fate[i] == BR_FATE_FRESH || fate[i] == BR_FATE_STALE) {
            stats[STAT_LOSS_SUM] += p->loss;
            stats[STAT_TOKENS] += (double)p->tokens;
            stats[STAT_SAMPLES] += (double)p->samples;
            stats[STAT_AUX_SUM] += p->aux;
            stats[STAT_PARTICIPANTS] += 1;
            v->round_accepted += p->samples;
            if (p->up_s > 0 && p->up_bytes > 0) v->up_mbit = p->up_bytes * 8 / p->up_s / 1e6;
            if (fate[i] == BR_FATE_FRESH) v->fresh += p->samples;
            else v->stale += p->samples;
            br_vol_event(b, v, ev, round, p->samples, NULL);
            continue;
        }
        v->dropped += p->samples;
        if (fate[i] == BR_FATE_REJECTED_NORM)
            snprintf(why[i], sizeof why[i], "pseudo-gradient of round %llu rejected: norm %.3g exceeds "
                     "%.3g x the cluster's %.3g", (unsigned long long)p->round, ups[i].norm,
                     b->o.max_delta_ratio, cluster_norm);
        if (fate[i] == BR_FATE_DROPPED_STALE) {
            br_vol_event(b, v, ev, round, p->samples, NULL);
            continue;
        }
        br_vol_event(b, v, ev, round, p->samples, why[i]);
        // a rejected upload fails its peer
        if (v->conn && !v->conn->closing) br_conn_fail(v->conn, BR_ERR_BAD_DATA, "%s", why[i]);
        else br_log(b, "%s: %s", v->name, why[i]);
    }
    free(why);
    free(ups);
}

void br_rounds_release_upload(BridgeServer *b, Pending *p) {
    Rounds *rs = &b->rounds;
    if (rs->n_spare < SPARE_UPLOADS) rs->spare[rs->n_spare++] = p->g;
    else free(p->g);
    free(p);
}

// A round's accepted uploads aggregated robustly (bridge/aggregate.c): each as its mean
// gradient per loss token, clipped to clip_ratio times the trainers' per-token norm of the
// last round (the first round: only --max-grad-norm), combined with the uploads' tokens as
// weights, and added to grads scaled back by their tokens (the trainers divide the global
// sum by the global tokens). The uploads' vectors are overwritten.
static void robust_sum(BridgeServer *b, float *grads, BrContribution *acc, int k) {
    Rounds *rs = &b->rounds;
    size_t n = b->n;
    double tokens = 0;
    for (int j = 0; j < k; j++) {
        acc[j].w = acc[j].p->tokens > 0 ? (double)acc[j].p->tokens : 1.0;
        for (size_t i = 0; i < n; i++) acc[j].v[i] = (float)((double)acc[j].v[i] / acc[j].w);
        acc[j].max_norm = rs->trainer_norm > 0 ? b->o.clip_ratio * rs->trainer_norm : 0;
        tokens += acc[j].w;
    }
    if (!rs->robust) rs->robust = cx_calloc(n, sizeof(float));
    br_aggregate(b, rs->robust, acc, k, rs->core.round);
    for (size_t i = 0; i < n; i++) grads[i] += (float)((double)rs->robust[i] * tokens);
}

static int bridge_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    BridgeServer *b = ctx;
    CHECK(n == b->n && n_stats == STAT_COUNT, "bridge_sum: unexpected arena");
    // wait for the uploads of this round, at most until the deadline
    Rounds *rs = &b->rounds;
    double until;
    while (!br_core_sync_wait(&rs->core, outstanding(b), cx_now(), &until)) {
        double left = until - cx_now();
        bridge_pump(b, left < 0.05 ? left : 0.05);
    }
    rs->wait_s = cx_now() - rs->core.t_open;
    // late shares of this round: they may still count next round
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->seat.assigned_round == rs->core.round && c->vol) {
            br_log(b, "%s missed the deadline of round %llu (%.1f s)", br_conn_label(c),
                   (unsigned long long)rs->core.round, b->o.deadline_s);
            br_vol_event(b, c->vol, "late", rs->core.round, c->seat.assigned_samples, NULL);
        }
    // this round's uploads and the late ones of recent rounds, summed in a fixed order
    // (round, then first sample) so that a run does not depend on upload arrival order
    int n_p = 0;
    for (Pending *p = b->rounds.pending; p; p = p->next) n_p++;
    Pending **arr = cx_calloc((size_t)n_p + 1, sizeof *arr);
    n_p = 0;
    for (Pending *p = b->rounds.pending; p; p = p->next) arr[n_p++] = p;
    qsort(arr, (size_t)n_p, sizeof *arr, br_cmp_pending);
    b->rounds.pending = NULL;
    // robust modes: the accepted uploads are aggregated after the loop (mean: summed in it)
    BrContribution *acc = b->o.aggregate != ROBUST_MEAN ? cx_calloc((size_t)n_p + 1, sizeof *acc) : NULL;
    int *fate = cx_calloc((size_t)n_p + 1, sizeof *fate);
    br_rounds_judge(b, arr, n_p, rs->core.round, acc ? ROBUST_MAX_K : 0, 0, stats, fate);
    int k = 0;
    for (int i = 0; i < n_p; i++) {
        Pending *p = arr[i];
        if (fate[i] == BR_FATE_FRESH || fate[i] == BR_FATE_STALE) {
            if (acc) acc[k++] = (BrContribution){.v = p->g, .p = p};
            else nn_add_forward(grads, grads, p->g, n);
        }
        if (!acc) br_rounds_release_upload(b, p);
    }
    free(fate);
    if (acc) {
        if (k > 0) robust_sum(b, grads, acc, k);
        for (int i = 0; i < n_p; i++) br_rounds_release_upload(b, arr[i]);
        if (!b->rounds.vpart) b->rounds.vpart = cx_calloc(n, sizeof(float));
        memcpy(b->rounds.vpart, grads, n * sizeof(float));
    }
    free(acc);
    free(arr);
    double v_tokens = stats[STAT_TOKENS];
    // late shares stay assigned (their upload may still arrive and count next round)...
    // but their connection becomes eligible again only after it lands
    hybrid_sum_start(b->h);
    double t_ar = cx_now();
    while (!hybrid_sum_poll(b->h)) bridge_pump(b, 0.001);
    if (hybrid_sum_finish(b->h, stats, n_stats, err) != 0) return -1;
    b->rounds.allreduce_s = cx_now() - t_ar;
    // robust modes: the trainers' own per-token gradient norm, the next round's clipping scale
    if (b->o.aggregate != ROBUST_MEAN && stats[STAT_TOKENS] - v_tokens > 0)
        b->rounds.trainer_norm = robust_dist(grads, b->rounds.vpart, n) / (stats[STAT_TOKENS] - v_tokens);
    // the trainers' speed (samples per second per trainer) for the next plan
    br_core_note_trainers(&rs->core, hybrid_trainer_shares(b->h), stats[STAT_COMPUTE_S]);
    // results to every live volunteer; keep them for late joiners
    HistRound *h = br_rounds_hist_push(b);
    h->round = rs->core.round;
    h->hash_before = b->rounds.hash_before;
    h->samples = (uint64_t)stats[STAT_SAMPLES];
    h->tokens = (uint64_t)stats[STAT_TOKENS];
    h->participants = (uint32_t)stats[STAT_PARTICIPANTS];
    h->loss = stats[STAT_LOSS_SUM];
    h->aux = stats[STAT_AUX_SUM];
    br_rounds_hist_encode(b, h, grads, CODEC_FP32, NULL, NULL);
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->state == C_LIVE)
            br_rounds_send_result(c, h, c->vol ? c->vol->round_accepted : 0);
    return 0;
}


// The Averager's after-step: the round's record once its step is applied.
static int bridge_round_after_step(void *ctx, Trainer *t, const StepResult *r, char *err) {
    (void)t;
    (void)err;
    br_rounds_record(ctx, r);
    return 0;
}

Averager bridge_averager(BridgeServer *b) {
    return (Averager){.ctx = b, .sum = bridge_sum, .plan = bridge_plan, .plan_ctx = b,
                      .after_step = bridge_round_after_step, .rank = 0, .n_ranks = 1};
}

// Writes the round's row to RUN_DIR/bridge.csv, keeps the status page's loss curve, and
// prints a progress line.
void br_rounds_record(BridgeServer *b, const StepResult *r) {
    const Rounds *rd = &b->rounds;
    const BrRoundCore *k = &rd->core;
    double now = cx_now() - b->t_start;
    int live = bridge_live_volunteers(b);
    if (b->csv)
        runlog_write_bridge_row(b->csv, &(BridgeRow){
            .time_s = now, .step = r->step, .samples = r->samples, .trainer_samples = rd->trainer_samples,
            .volunteers_assigned = rd->assigned, .volunteer_samples_assigned = rd->assigned_samples,
            .fresh = k->fresh, .stale = k->stale, .dropped = k->dropped, .lost = k->lost,
            .participants = r->participants, .live_volunteers = live, .loss = r->loss, .wait_s = rd->wait_s,
            .allreduce_s = rd->allreduce_s, .bytes_sent = b->bytes_out - b->last_bytes_out,
            .bytes_recv = b->bytes_in - b->last_bytes_in, .upload_bytes = k->up_bytes, .upload_s = k->up_s});
    b->last_bytes_in = b->bytes_in;
    b->last_bytes_out = b->bytes_out;
    br_status_note_step(b, r);
    if (b->o.log_every > 1 && r->step % b->o.log_every != 0 && r->step != 1 && r->step != b->o.total_steps)
        return;
    br_log(b, "step %ld | loss %.4f | samples %ld (trainers %ld, volunteers %llu fresh + %llu stale) "
              "| %d live volunteer(s) | wait %.2f s",
           r->step, r->loss, r->samples, rd->trainer_samples, (unsigned long long)k->fresh,
           (unsigned long long)k->stale, live, rd->wait_s);
}

// ---- set-up and the end of the run ----

void br_rounds_init(BridgeServer *b) {
    BrCoreOptions co = {.deadline_s = b->o.deadline_s, .max_staleness = b->o.max_staleness,
                        .history = b->o.history, .plan_equal = b->o.plan_equal,
                        .probe_samples = b->o.probe_samples, .max_share = b->o.max_share,
                        .max_delta_ratio = b->o.max_delta_ratio};
    br_core_init(&b->rounds.core, &co);
    b->rounds.hist = cx_calloc((size_t)b->o.history, sizeof *b->rounds.hist);
}

void br_rounds_free(BridgeServer *b) {
    while (b->rounds.pending) {
        Pending *p = b->rounds.pending;
        b->rounds.pending = p->next;
        free(p->g);
        free(p);
    }
    for (int i = 0; i < b->rounds.n_spare; i++) free(b->rounds.spare[i]);
    for (int i = 0; b->rounds.hist && i < b->o.history; i++) br_blob_unref(b->rounds.hist[i].frames);
    free(b->rounds.chunk);
    free(b->rounds.hist);
    free(b->rounds.vpart);
    free(b->rounds.robust);
}

void br_rounds_report_unfinished(BridgeServer *b) {
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->seat.assigned_round && c->vol)
            br_vol_event(b, c->vol, "unfinished", c->seat.assigned_round, c->seat.assigned_samples, "run ended");
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->seat.next_round && c->vol)
            br_vol_event(b, c->vol, "unfinished", c->seat.next_round, c->seat.next_samples, "run ended");
    for (Pending *p = b->rounds.pending; p; p = p->next)
        br_vol_event(b, p->vol, "unfinished", p->round, p->samples, "run ended");
}
