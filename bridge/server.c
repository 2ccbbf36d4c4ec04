// server.c: the bridge server (see server.h).
#include "bridge/server.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "bridge/codec.h"
#include "bridge/planner.h"
#include "bridge/proto.h"
#include "bridge/state.h"
#include "bridge/status_page.h"
#include "bridge/tokens.h"
#include "io/runcols.h"
#include "models/common.h"
#include "models/nn.h"

enum { C_PREAUTH, C_AUTHED, C_LIVE };
enum { LOSS_HISTORY = 2000 };  // loss points the status page keeps (thinned when full)

typedef struct Vol Vol;
typedef struct Conn Conn;

// One volunteer identity; survives reconnects.
struct Vol {
    BrIdentity id;
    char id_hex[33];
    char name[BR_PROTO_MAX_NAME_BYTES + 1];
    char token_name[BR_TOKEN_NAME_MAX + 1];
    uint64_t fresh, stale, dropped, lost, uploads, connects;
    uint64_t round_accepted;  // samples of its uploads summed into the current round
    BrPlanSpeed speed;        // what the throughput plan knows of it (bridge/planner.h)
    double up_mbit;           // goodput of its last upload (0: none yet)
    double first_seen, last_seen;
    double bytes_in, bytes_out;
    Conn *conn;
    Vol *next;
};

// A serialized state shared by the connections downloading it.
typedef struct {
    uint8_t *blob;
    size_t n;
    uint64_t step;
    int refs;
} Snapshot;

// A complete upload waiting to be summed into a round.
typedef struct Pending {
    Vol *vol;
    uint64_t round, start, samples, tokens;
    double loss, aux;
    double up_bytes, up_s;  // goodput sample: bytes after the first chunk, over seconds
    double t_first, t_done; // first chunk arrived, upload complete
    float *g;
    struct Pending *next;
} Pending;

struct Conn {
    BridgeServer *b;
    struct bufferevent *bev;
    BrProtoDecoder dec;
    int state, closing, eof;
    double close_t;
    Vol *vol;
    char token[BR_TOKEN_CHARS + 1];
    char peer[INET6_ADDRSTRLEN + 8];
    int codec;
    double last_rx, last_tx;
    Snapshot *snap;
    uint64_t acked_step;
    // the round this connection was given a share of (0: none outstanding)
    uint64_t assigned_round, assigned_start, assigned_samples;
    uint64_t opened_round;  // the last round it was sent ROUND_OPEN for
    // upload in progress
    float *up;
    uint64_t up_round, up_next, up_samples, up_tokens;
    double up_loss, up_aux;
    double up_t_first, up_bytes;  // arrival of the first chunk; payload bytes after it
    Conn *next;
};

// One finished round, kept to bring rejoining volunteers up to date. The summed gradient
// is kept as its encoded AVG_CHUNK frames: encoded once, sent as bytes to every
// volunteer that round and to every later replay.
enum { SPARE_UPLOADS = 8 };

typedef struct {
    uint64_t round, hash_before, samples, tokens;
    uint32_t participants;
    double loss, aux;
    uint8_t *frames;  // AVG_CHUNK frames covering the whole gradient, back to back
    size_t frames_bytes, frames_cap;
} HistRound;

struct BridgeServer {
    BridgeOptions o;
    Trainer *tr;
    HybridComm *h;
    size_t n;  // parameters
    char *config_text;
    uint64_t data_windows;
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *tick, *wake;
    BrTokens tokens;
    struct timespec tokens_mtime;
    off_t tokens_size;
    ino_t tokens_ino;
    Conn *conns;
    Vol *vols;
    int n_conns;
    Snapshot *snap;
    Pending *pending;
    HistRound *hist;
    int hist_n, hist_head;  // ring
    // the round in progress
    uint64_t round;          // step being produced (0: none open)
    int round_open;
    uint64_t hash_before;
    double t_open, t_deadline;
    long trainer_samples;
    int assigned;
    uint64_t assigned_samples;
    // last round's accounting
    uint64_t r_fresh, r_stale, r_dropped, r_lost;
    double r_wait_s, r_allreduce_s;
    double r_up_bytes, r_up_s;  // uploads summed this round: bytes after their first chunk, seconds
    double bytes_in, bytes_out, last_bytes_in, last_bytes_out;
    double t_start;
    FILE *csv, *vcsv;
    int waited, shutting_down, cc_warned, restarting;
    double trainer_rate;  // samples per second of one trainer (0: not measured)
    // status page
    struct evhttp *http;
    float loss_hist[LOSS_HISTORY][2];
    int loss_n;
    double last_loss, samples_per_s, t_last_step;
    uint8_t *frame;  // one encoded frame
    size_t frame_cap;
    uint8_t *chunk;  // one AVG chunk's fp32 payload, for hist_encode
    // upload buffers (n floats) given back by bridge_sum, reused by the next uploads: no
    // fresh allocation, page faults and unmapping per upload in the event loop
    float *spare[SPARE_UPLOADS];
    int n_spare;
    BrProtoLimits lim;
};

// ---- logging ----

__attribute__((format(printf, 2, 3))) static void blog(BridgeServer *b, const char *fmt, ...) {
    if (b->o.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "conflux-bridge: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *conn_label(const Conn *c) {
    static char buf[384];
    if (c->vol) snprintf(buf, sizeof buf, "%s (%s, %.8s, %s)", c->vol->name[0] ? c->vol->name : "?",
                         c->vol->token_name, c->vol->id_hex, c->peer);
    else snprintf(buf, sizeof buf, "%s", c->peer);
    return buf;
}

// Writes s as one CSV field: quoted, with quotes doubled (names come from peers and may
// hold commas, quotes or newlines).
static void csv_field(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void vol_event(BridgeServer *b, const Vol *v, const char *event, uint64_t step,
                      uint64_t samples, const char *detail) {
    if (!b->vcsv || !v) return;
    fprintf(b->vcsv, "%.3f,%llu,%s,", cx_now() - b->t_start, (unsigned long long)step, v->id_hex);
    csv_field(b->vcsv, v->name);
    fputc(',', b->vcsv);
    csv_field(b->vcsv, v->token_name);
    fprintf(b->vcsv, ",%s,%llu,", event, (unsigned long long)samples);
    csv_field(b->vcsv, detail ? detail : "");
    fputc('\n', b->vcsv);
    fflush(b->vcsv);
}

// ---- sending ----

// Queues already encoded frames on c's output (counted as sent).
static int conn_send_bytes(Conn *c, const uint8_t *data, size_t n) {
    if (c->closing) return -1;
    if (bufferevent_write(c->bev, data, n) != 0) return -1;
    c->last_tx = cx_now();
    c->b->bytes_out += (double)n;
    if (c->vol) c->vol->bytes_out += (double)n;
    return 0;
}

static int conn_send(Conn *c, const BrFrame *f) {
    BridgeServer *b = c->b;
    if (c->closing) return -1;
    char err[CX_ERRLEN];
    int len = br_proto_encode(b->frame, b->frame_cap, f, &b->lim, err);
    CHECK(len > 0, "encoding a %s frame: %s", br_proto_type_name(f->type), err);
    return conn_send_bytes(c, b->frame, (size_t)len);
}

static void conn_close(Conn *c, const char *why);

static void conn_fail(Conn *c, uint32_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void conn_fail(Conn *c, uint32_t code, const char *fmt, ...) {
    if (c->closing) return;
    BrFrame f = {.type = BR_MSG_ERROR};
    f.m.error.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f.m.error.message, sizeof f.m.error.message, fmt, ap);
    va_end(ap);
    // keep the message valid UTF-8 (it may quote peer bytes): cut at the first bad byte
    size_t len = strlen(f.m.error.message);
    while (len > 0 && !br_proto_utf8_valid((const uint8_t *)f.m.error.message, len)) len--;
    f.m.error.message[len] = 0;
    blog(c->b, "dropping %s: %s", conn_label(c), f.m.error.message);
    if (c->vol) vol_event(c->b, c->vol, "kicked", c->b->round, 0, f.m.error.message);
    conn_send(c, &f);
    BrFrame bye = {.type = BR_MSG_BYE};
    bye.m.bye.reason = BR_BYE_KICKED;
    conn_send(c, &bye);
    conn_close(c, f.m.error.message);
}

// ---- snapshots and history ----

static void snap_unref(Snapshot *s) {
    if (s && --s->refs == 0) {
        free(s->blob);
        free(s);
    }
}

static Snapshot *current_snapshot(BridgeServer *b) {
    uint64_t step = (uint64_t)b->tr->optim.step;
    // an older snapshot is still good while the rounds since it are in the history
    if (b->snap && step - b->snap->step <= (uint64_t)(b->o.history / 2)) return b->snap;
    if (b->snap) snap_unref(b->snap);
    Snapshot *s = cx_calloc(1, sizeof *s);
    BrState st = {.step = step, .samples_seen = b->tr->samples_seen, .n_params = b->n,
                  .data_windows = b->data_windows, .config = b->config_text,
                  .config_bytes = strlen(b->config_text), .params = b->tr->task.params,
                  .m = b->tr->optim.m, .v = b->tr->optim.v};
    s->n = br_state_bytes(b->n, st.config_bytes);
    s->blob = malloc(s->n);
    CHECK(s->blob, "out of memory for a %zu-byte state snapshot", s->n);
    br_state_write(s->blob, &st);
    s->step = step;
    s->refs = 1;  // the server's reference
    b->snap = s;
    return s;
}

static HistRound *hist_find(BridgeServer *b, uint64_t round) {
    for (int i = 0; i < b->hist_n; i++) {
        HistRound *r = &b->hist[i];
        if (r->frames && r->round == round) return r;
    }
    return NULL;
}

// ---- round messages ----

static void send_round_open(Conn *c, uint64_t round, uint64_t hash, uint64_t start, uint64_t n) {
    c->opened_round = round;
    BrFrame f = {.type = BR_MSG_ROUND_OPEN};
    f.m.round_open = (BrRoundOpen){.round_id = round, .step = round,
                                   .target_samples = (uint64_t)c->b->tr->global_batch,
                                   .sample_start = start, .n_samples = n, .params_hash = hash};
    conn_send(c, &f);
}

// ROUND_CLOSE with the round's totals, then the summed gradient in fp32 chunks.
// ROUND_CLOSE with the round's totals (and this volunteer's accepted samples), then the
// round's AVG_CHUNK frames as they were encoded.
static void send_round_result(Conn *c, const HistRound *h, uint64_t accepted) {
    BrFrame f = {.type = BR_MSG_ROUND_CLOSE};
    f.m.round_close = (BrRoundClose){.round_id = h->round, .accepted_samples = accepted,
                                     .samples = h->samples, .tokens = h->tokens,
                                     .participants = h->participants, .loss_sum = h->loss,
                                     .aux_sum = h->aux};
    if (conn_send(c, &f) == 0) conn_send_bytes(c, h->frames, h->frames_bytes);
}

// Encodes sum (the summed gradient, n floats) into h's AVG_CHUNK frames, in 256 KiB chunks
// like the uploads: fine-grained pipelining at 0.03% framing cost.
static void hist_encode(BridgeServer *b, HistRound *h, const float *sum) {
    size_t per = (b->lim.max_chunk_bytes < (1u << 18) ? b->lim.max_chunk_bytes : (1u << 18)) / sizeof(float);
    size_t n_chunks = (b->n + per - 1) / per;
    size_t need = b->n * sizeof(float) + n_chunks * (BR_PROTO_HEADER_BYTES + BR_AVG_CHUNK_FIXED_BYTES);
    if (h->frames_cap < need) {
        free(h->frames);
        h->frames = malloc(need);
        CHECK(h->frames, "out of memory for the round history (%zu bytes)", need);
        h->frames_cap = need;
    }
    if (!b->chunk) {
        b->chunk = malloc(per * sizeof(float));
        CHECK(b->chunk, "out of memory");
    }
    size_t pos = 0;
    char err[CX_ERRLEN];
    for (size_t off = 0; off < b->n; off += per) {
        size_t k = b->n - off < per ? b->n - off : per;
        br_fp32_encode(b->chunk, sum + off, k);
        BrFrame a = {.type = BR_MSG_AVG_CHUNK};
        a.m.avg_chunk = (BrAvgChunk){.round_id = h->round, .offset = off, .n_elems = (uint32_t)k,
                                     .codec = BR_CODEC_FP32, .data = b->chunk};
        int len = br_proto_encode(h->frames + pos, h->frames_cap - pos, &a, &b->lim, err);
        CHECK(len > 0, "encoding an AVG_CHUNK frame: %s", err);
        pos += (size_t)len;
    }
    h->frames_bytes = pos;
}

// A connection reports it holds the state after step k: bring it up to date and make it live.
static void conn_go_live(Conn *c, uint64_t k) {
    BridgeServer *b = c->b;
    uint64_t done = (uint64_t)b->tr->optim.step;
    if (k > done) {
        conn_fail(c, BR_ERR_STATE, "reports step %llu but the run is at step %llu",
                  (unsigned long long)k, (unsigned long long)done);
        return;
    }
    for (uint64_t r = k + 1; r <= done; r++) {
        HistRound *h = hist_find(b, r);
        if (!h) {
            conn_fail(c, BR_ERR_STATE, "at step %llu, %llu steps behind the run: more than the "
                      "%d rounds kept; download the state again",
                      (unsigned long long)k, (unsigned long long)(done - k), b->o.history);
            return;
        }
        send_round_open(c, r, h->hash_before, 0, 0);
        send_round_result(c, h, 0);
    }
    c->state = C_LIVE;
    c->acked_step = k;
    if (b->round_open) send_round_open(c, b->round, b->hash_before, 0, 0);
    if (c->snap) {
        snap_unref(c->snap);
        c->snap = NULL;
    }
    blog(b, "%s is live at step %llu (replayed %llu rounds)", conn_label(c),
         (unsigned long long)k, (unsigned long long)(done - k));
    vol_event(b, c->vol, "live", k, 0, NULL);
}

// ---- uploads ----

static void upload_reset(Conn *c) {
    c->up_round = c->up_next = c->up_samples = c->up_tokens = 0;
    c->up_loss = c->up_aux = 0.0;
}

static void on_grad_chunk(Conn *c, const BrGradChunk *m) {
    BridgeServer *b = c->b;
    if (c->state != C_LIVE) {
        conn_fail(c, BR_ERR_PROTOCOL, "GRAD_CHUNK before the connection is live");
        return;
    }
    if (m->codec != c->codec) {
        conn_fail(c, BR_ERR_BAD_DATA, "GRAD_CHUNK in codec %d, negotiated %d", m->codec, c->codec);
        return;
    }
    if (c->up_next == 0) {  // first chunk of an upload
        c->up_t_first = cx_now();
        c->up_bytes = 0;
        if (m->round_id != c->assigned_round || c->assigned_round == 0) {
            conn_fail(c, BR_ERR_PROTOCOL, "upload for round %llu, but the share it holds is for "
                      "round %llu", (unsigned long long)m->round_id,
                      (unsigned long long)c->assigned_round);
            return;
        }
        if (m->offset != 0 || m->samples != c->assigned_samples) {
            conn_fail(c, BR_ERR_BAD_DATA, "upload starts at element %llu with %llu samples; "
                      "expected element 0 and %llu samples", (unsigned long long)m->offset,
                      (unsigned long long)m->samples, (unsigned long long)c->assigned_samples);
            return;
        }
        if (!c->up) {
            c->up = b->n_spare > 0 ? b->spare[--b->n_spare] : malloc(b->n * sizeof(float));
            CHECK(c->up, "out of memory for an upload buffer");
        }
        c->up_round = m->round_id;
        c->up_samples = m->samples;
        c->up_tokens = m->tokens;
        c->up_loss = m->loss_sum;
        c->up_aux = m->aux_sum;
    } else if (m->round_id != c->up_round || m->samples != c->up_samples ||
               m->tokens != c->up_tokens || m->loss_sum != c->up_loss || m->aux_sum != c->up_aux) {
        conn_fail(c, BR_ERR_BAD_DATA, "GRAD_CHUNK at element %llu changes the round or totals "
                  "of the upload in progress", (unsigned long long)m->offset);
        return;
    }
    if (m->offset != c->up_next || m->offset + m->n_elems > b->n) {
        conn_fail(c, BR_ERR_BAD_DATA, "GRAD_CHUNK covers elements [%llu, %llu) but the next "
                  "expected element is %llu of %zu", (unsigned long long)m->offset,
                  (unsigned long long)(m->offset + m->n_elems), (unsigned long long)c->up_next, b->n);
        return;
    }
    float *dst = c->up + m->offset;
    if (m->codec == BR_CODEC_FP16) br_fp16_decode(dst, m->data, m->n_elems);
    else br_fp32_decode(dst, m->data, m->n_elems);
    size_t bad;
    if (!br_check_finite(dst, m->n_elems, &bad)) {
        conn_fail(c, BR_ERR_BAD_DATA, "gradient element %llu is %g",
                  (unsigned long long)(m->offset + bad), (double)dst[bad]);
        return;
    }
    c->up_next += m->n_elems;
    if (m->offset > 0) c->up_bytes += (double)m->n_elems * (double)br_codec_elem_bytes(m->codec) + BR_PROTO_HEADER_BYTES + BR_GRAD_CHUNK_FIXED_BYTES;
    if (c->up_next < b->n) return;
    // complete: check the norm, then hand it to the rounds
    double norm = br_l2norm(c->up, b->n);
    double per_tok = c->up_tokens > 0 ? norm / (double)c->up_tokens : norm;
    if (b->o.max_grad_norm > 0 && !(per_tok <= b->o.max_grad_norm)) {
        conn_fail(c, BR_ERR_BAD_DATA, "gradient norm %.3g per loss token exceeds the limit %.3g",
                  per_tok, b->o.max_grad_norm);
        return;
    }
    if (c->up_tokens > (uint64_t)c->up_samples * 1000000ull) {
        conn_fail(c, BR_ERR_BAD_DATA, "upload claims %llu loss tokens for %llu samples",
                  (unsigned long long)c->up_tokens, (unsigned long long)c->up_samples);
        return;
    }
    Pending *p = cx_calloc(1, sizeof *p);
    *p = (Pending){.vol = c->vol, .round = c->up_round, .start = c->assigned_start, .samples = c->up_samples,
                   .tokens = c->up_tokens, .loss = c->up_loss, .aux = c->up_aux, .g = c->up,
                   .up_bytes = c->up_bytes, .up_s = cx_now() - c->up_t_first,
                   .t_first = c->up_t_first, .t_done = cx_now()};
    c->up = NULL;
    p->next = b->pending;
    b->pending = p;
    c->vol->uploads++;
    c->assigned_round = 0;
    c->assigned_samples = 0;
    upload_reset(c);
}

// ---- frames from a volunteer ----

static int id_zero(const BrIdentity *id) {
    for (int i = 0; i < 16; i++)
        if (id->bytes[i]) return 0;
    return 1;
}

static Vol *vol_find(BridgeServer *b, const BrIdentity *id) {
    for (Vol *v = b->vols; v; v = v->next)
        if (!memcmp(v->id.bytes, id->bytes, 16)) return v;
    return NULL;
}

static int live_count(const BridgeServer *b) {
    int n = 0;
    for (Conn *c = b->conns; c; c = c->next) n += !c->closing && c->vol;
    return n;
}

static void on_hello(Conn *c, const BrHello *m) {
    BridgeServer *b = c->b;
    int ti = br_tokens_find(&b->tokens, m->token);
    if (ti < 0) {
        conn_fail(c, BR_ERR_AUTH, "unknown or revoked join token");
        return;
    }
    unsigned common = m->codecs & b->o.codecs;
    int codec = common & BR_CODEC_BIT(BR_CODEC_FP16) ? BR_CODEC_FP16
                : common & BR_CODEC_BIT(BR_CODEC_FP32) ? BR_CODEC_FP32 : 0;
    if (!codec) {
        conn_fail(c, BR_ERR_PROTOCOL, "no gradient codec in common (peer offers 0x%x, bridge "
                  "accepts 0x%x)", m->codecs, b->o.codecs);
        return;
    }
    Vol *v = m->resume ? vol_find(b, &m->identity) : NULL;
    if (!v && live_count(b) >= b->o.max_volunteers) {
        conn_fail(c, BR_ERR_BUSY, "the bridge has its maximum of %d volunteers", b->o.max_volunteers);
        return;
    }
    if (!v) {
        v = cx_calloc(1, sizeof *v);
        if (m->resume && !id_zero(&m->identity)) {
            v->id = m->identity;  // an identity from an earlier bridge run: keep it
        } else {
            int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
            CHECK(fd >= 0 && read(fd, v->id.bytes, 16) == 16, "cannot read /dev/urandom");
            close(fd);
        }
        for (int i = 0; i < 16; i++) sprintf(v->id_hex + 2 * i, "%02x", v->id.bytes[i]);
        v->first_seen = cx_now() - b->t_start;
        v->next = b->vols;
        b->vols = v;
    }
    if (v->conn && v->conn != c) conn_fail(v->conn, BR_ERR_STATE, "replaced by a new connection of the same volunteer");
    snprintf(v->name, sizeof v->name, "%s", m->name);
    snprintf(v->token_name, sizeof v->token_name, "%s", b->tokens.items[ti].name);
    v->connects++;
    v->conn = c;
    c->vol = v;
    memcpy(c->token, b->tokens.items[ti].token, sizeof c->token);
    c->codec = codec;
    c->state = C_AUTHED;
    char err[CX_ERRLEN];
    BrProtoLimits lim = b->lim;
    lim.accept_types = BR_MSG_BIT(BR_MSG_STATE_REQUEST) | BR_MSG_BIT(BR_MSG_PROGRESS) |
                       BR_MSG_BIT(BR_MSG_GRAD_CHUNK) | BR_MSG_BIT(BR_MSG_HEARTBEAT) |
                       BR_MSG_BIT(BR_MSG_ERROR) | BR_MSG_BIT(BR_MSG_BYE);
    CHECK(br_proto_decoder_set_limits(&c->dec, &lim, err) == 0, "%s", err);
    Snapshot *s = current_snapshot(b);
    s->refs++;
    c->snap = s;
    BrFrame f = {.type = BR_MSG_WELCOME};
    f.m.welcome = (BrWelcome){.session_id = (uint64_t)b->t_start, .identity = v->id,
                              .step = s->step, .samples_seen = 0, .n_params = b->n,
                              .state_bytes = s->n,
                              .round_deadline_ms = (uint32_t)(b->o.deadline_s * 1000 + 0.5),
                              .max_chunk_bytes = b->lim.max_chunk_bytes, .codec = (uint8_t)codec};
    conn_send(c, &f);
    blog(b, "%s joined (%s, codec %s, state %zu bytes at step %llu)", conn_label(c),
         m->resume ? "resuming" : "new", codec == BR_CODEC_FP16 ? "fp16" : "fp32", s->n,
         (unsigned long long)s->step);
    vol_event(b, v, "joined", (uint64_t)b->tr->optim.step, 0, c->peer);
}

static void on_frame(Conn *c, const BrFrame *f) {
    BridgeServer *b = c->b;
    c->last_rx = cx_now();
    if (c->vol) c->vol->last_seen = c->last_rx - b->t_start;
    switch (f->type) {
    case BR_MSG_HELLO:
        if (c->state != C_PREAUTH) conn_fail(c, BR_ERR_PROTOCOL, "second HELLO");
        else on_hello(c, &f->m.hello);
        break;
    case BR_MSG_STATE_REQUEST: {
        if (!c->snap) {
            conn_fail(c, BR_ERR_STATE, "STATE_REQUEST after the connection went live");
            break;
        }
        const BrStateRequest *r = &f->m.state_request;
        if (r->offset >= c->snap->n || r->n_bytes > c->snap->n - r->offset) {
            conn_fail(c, BR_ERR_STATE, "state bytes [%llu, +%u) outside the %zu-byte state",
                      (unsigned long long)r->offset, r->n_bytes, c->snap->n);
            break;
        }
        BrFrame o = {.type = BR_MSG_STATE_CHUNK};
        o.m.state_chunk = (BrStateChunk){.offset = r->offset, .total_bytes = c->snap->n,
                                         .n_bytes = r->n_bytes, .data = c->snap->blob + r->offset};
        conn_send(c, &o);
        break;
    }
    case BR_MSG_PROGRESS: {
        uint64_t k = f->m.progress.step;
        if (c->state == C_AUTHED) conn_go_live(c, k);
        else if (c->state == C_LIVE) {
            if (k < c->acked_step || k > (uint64_t)b->tr->optim.step)
                conn_fail(c, BR_ERR_STATE, "PROGRESS for step %llu after step %llu (run at %ld)",
                          (unsigned long long)k, (unsigned long long)c->acked_step, b->tr->optim.step);
            else c->acked_step = k;
        }
        break;
    }
    case BR_MSG_GRAD_CHUNK: on_grad_chunk(c, &f->m.grad_chunk); break;
    case BR_MSG_HEARTBEAT: break;
    case BR_MSG_ERROR:
        blog(b, "%s reports error %u: %s", conn_label(c), f->m.error.code, f->m.error.message);
        conn_close(c, "peer error");
        break;
    case BR_MSG_BYE:
        blog(b, "%s leaves (reason %u)", conn_label(c), f->m.bye.reason);
        if (c->vol) vol_event(b, c->vol, "left", (uint64_t)b->tr->optim.step, 0, NULL);
        conn_close(c, "bye");
        break;
    default:
        conn_fail(c, BR_ERR_PROTOCOL, "unexpected %s frame from a volunteer", br_proto_type_name(f->type));
    }
}

// ---- libevent callbacks ----

static void on_read(struct bufferevent *bev, void *arg) {
    Conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->closing) {  // lingering close: read and discard until the peer's EOF
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    uint8_t buf[65536];
    while (!c->closing) {
        int got = evbuffer_remove(in, buf, sizeof buf);
        if (got <= 0) break;
        c->b->bytes_in += got;
        if (c->vol) c->vol->bytes_in += got;
        size_t pos = 0;
        while (pos < (size_t)got && !c->closing) {
            size_t used = 0;
            BrFrame f;
            int st = br_proto_decoder_feed(&c->dec, buf + pos, (size_t)got - pos, &used, &f);
            pos += used;
            if (st == BR_PROTO_ERROR) {
                conn_fail(c, BR_ERR_PROTOCOL, "%s", br_proto_decoder_error(&c->dec));
                break;
            }
            if (st == BR_PROTO_FRAME) on_frame(c, &f);
        }
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    (void)bev;
    Conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        c->eof = 1;
        const char *why = what & BEV_EVENT_EOF ? "connection closed by peer" : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
        if (!c->closing) blog(c->b, "%s disconnected: %s", conn_label(c), why);
        conn_close(c, why);
    }
}

// Output drained: a closing connection now sends its FIN (after its ERROR/BYE frames).
static void on_write_drained(struct bufferevent *bev, void *arg) {
    Conn *c = arg;
    if (c->closing && !c->eof) shutdown(bufferevent_getfd(bev), SHUT_WR);
}

// Unlinks and frees closing connections (never from inside their own callbacks).
static void reap(BridgeServer *b) {
    Conn **pp = &b->conns;
    while (*pp) {
        Conn *c = *pp;
        // a closing connection lingers (reading and discarding) until the peer closes too
        // or 2 s passed: closing a socket with unread input sends a reset, which would
        // destroy the ERROR frame before the peer reads it
        if (c->closing && (c->eof || b->shutting_down || cx_now() - c->close_t > 2.0)) {
            *pp = c->next;
            bufferevent_free(c->bev);
            br_proto_decoder_free(&c->dec);
            free(c->up);
            snap_unref(c->snap);
            free(c);
            b->n_conns--;
        } else {
            pp = &c->next;
        }
    }
}

static void conn_close(Conn *c, const char *why) {
    if (c->closing) return;
    BridgeServer *b = c->b;
    c->closing = 1;
    if (c->vol) {
        if (c->assigned_round) {  // its share of a round will not arrive
            c->vol->lost += c->assigned_samples;
            if (c->assigned_round == b->round) b->r_lost += c->assigned_samples;
            vol_event(b, c->vol, "lost", c->assigned_round, c->assigned_samples, why);
        }
        if (!b->shutting_down)
            vol_event(b, c->vol, "disconnected", (uint64_t)b->tr->optim.step, 0, why);
        if (c->vol->conn == c) c->vol->conn = NULL;
    }
    // flush what is queued (an ERROR/BYE), then FIN (on_write_drained); freed by reap()
    c->close_t = cx_now();
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !c->eof)
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg) {
    (void)l;
    (void)len;
    BridgeServer *b = arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // the bridge sends the summed gradients: a loss-tolerant congestion control (BBR)
    // keeps a lossy long-RTT downlink near its rate where cubic collapses
    if (b->o.tcp_cc && b->o.tcp_cc[0] &&
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, b->o.tcp_cc, (socklen_t)strlen(b->o.tcp_cc)) != 0 &&
        !b->cc_warned) {
        blog(b, "TCP congestion control '%s' unavailable (%s); using the system default",
             b->o.tcp_cc, strerror(errno));
        b->cc_warned = 1;
    }
    Conn *c = cx_calloc(1, sizeof *c);
    c->b = b;
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof host);
    int port = sa->sa_family == AF_INET ? ntohs(((struct sockaddr_in *)sa)->sin_port) : 0;
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    c->bev = bufferevent_socket_new(b->base, fd, BEV_OPT_CLOSE_ON_FREE);
    CHECK(c->bev, "bufferevent_socket_new failed");
    BrProtoLimits pre = b->lim;
    pre.accept_types = BR_PROTO_PREAUTH_TYPES;
    char err[CX_ERRLEN];
    CHECK(br_proto_decoder_init(&c->dec, &pre, err) == 0, "%s", err);
    c->last_rx = c->last_tx = cx_now();
    c->next = b->conns;
    b->conns = c;
    b->n_conns++;
    // bounded input: libevent stops reading from the socket above 4 MiB unprocessed
    bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)4 << 20);
    bufferevent_setcb(c->bev, on_read, on_write_drained, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (b->n_conns > b->o.max_volunteers + 16)
        conn_fail(c, BR_ERR_BUSY, "too many connections");
}

static void reload_tokens(BridgeServer *b) {
    struct stat st;
    if (stat(b->o.tokens_path, &st) != 0 ||
        (st.st_mtim.tv_sec == b->tokens_mtime.tv_sec && st.st_mtim.tv_nsec == b->tokens_mtime.tv_nsec &&
         st.st_size == b->tokens_size && st.st_ino == b->tokens_ino))
        return;
    BrTokens t;
    char err[CX_ERRLEN];
    if (br_tokens_load(b->o.tokens_path, &t, err) != 0) {
        blog(b, "keeping the old tokens: %s", err);
        return;
    }
    br_tokens_free(&b->tokens);
    b->tokens = t;
    b->tokens_mtime = st.st_mtim;
    b->tokens_size = st.st_size;
    b->tokens_ino = st.st_ino;
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->vol && br_tokens_find(&b->tokens, c->token) < 0)
            conn_fail(c, BR_ERR_AUTH, "join token revoked");
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    BridgeServer *b = arg;
    double now = cx_now();
    reload_tokens(b);
    size_t out_max = ((size_t)16 << 20) + (size_t)(b->o.history + 4) * b->n * sizeof(float);
    for (Conn *c = b->conns; c; c = c->next) {
        if (c->closing) continue;
        if (now - c->last_rx > b->o.idle_timeout_s) {
            conn_fail(c, BR_ERR_TIMEOUT, "silent for %.0f s (idle timeout)", now - c->last_rx);
            continue;
        }
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > out_max) {
            conn_fail(c, BR_ERR_TIMEOUT, "output queue over %zu bytes: the link is too slow "
                      "to keep up; rejoin to catch up", out_max);
            continue;
        }
        if (now - c->last_tx > b->o.heartbeat_s) {
            BrFrame f = {.type = BR_MSG_HEARTBEAT};
            f.m.heartbeat.time_us = (uint64_t)(now * 1e6);
            conn_send(c, &f);
        }
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
}

void bridge_pump(BridgeServer *b, double max_wait_s) {
    if (max_wait_s < 0) max_wait_s = 0;
    struct timeval tv = {(time_t)max_wait_s, (suseconds_t)((max_wait_s - (double)(time_t)max_wait_s) * 1e6)};
    evtimer_add(b->wake, &tv);
    event_base_loop(b->base, EVLOOP_ONCE);
    evtimer_del(b->wake);
    reap(b);
}

// ---- the Averager ----

// A live volunteer more than max_lag rounds behind cannot follow the run at its pace (its
// downlink or CPU is too slow for the rounds' results): it is dropped with the reason and
// may rejoin with a fresh state, instead of piling up results in its output queue.
static void drop_laggards(BridgeServer *b, uint64_t done) {
    const uint64_t max_lag = (uint64_t)(b->o.history / 2 > 2 ? b->o.history / 2 : 2);
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->state == C_LIVE && c->assigned_round == 0 && c->up_next == 0 &&
            c->acked_step + max_lag < done)
            conn_fail(c, BR_ERR_STATE, "%llu rounds behind the run (at most %llu): too slow to "
                      "follow it; rejoin to download a fresh state",
                      (unsigned long long)(done - c->acked_step), (unsigned long long)max_lag);
}

static int bridge_plan(void *ctx, long G, long *lo, long *hi, char *err) {
    BridgeServer *b = ctx;
    bridge_pump(b, 0);
    uint64_t done = (uint64_t)b->tr->optim.step;
    drop_laggards(b, done);
    double t0 = cx_now();
    if (b->o.wait_volunteers > 0 && !b->waited) {
        // the first round waits (bounded) for the volunteers the host expects
        blog(b, "waiting up to %.0f s for %d volunteer(s)", b->o.wait_timeout_s, b->o.wait_volunteers);
        while (cx_now() - t0 < b->o.wait_timeout_s) {
            int ready = 0;
            for (Conn *c = b->conns; c; c = c->next)
                ready += !c->closing && c->state == C_LIVE && c->acked_step == done;
            if (ready >= b->o.wait_volunteers) break;
            bridge_pump(b, 0.05);
        }
        b->waited = 1;
    }
    for (Vol *v = b->vols; v; v = v->next) v->round_accepted = 0;
    b->round = done + 1;
    b->hash_before = cx_checksum(b->tr->task.params, b->n);
    // eligible: live, in step (it has applied, or is about to apply, the last round: the
    // last round's result precedes this ROUND_OPEN on its connection, so it computes its
    // share on the right parameters without the bridge waiting for its confirmation), and
    // no upload outstanding
    int n_elig = 0;
    Conn *elig[BR_PLAN_MAX_VOLUNTEERS];
    for (Conn *c = b->conns; c && n_elig < BR_PLAN_MAX_VOLUNTEERS; c = c->next)
        if (!c->closing && c->state == C_LIVE && c->acked_step + 1 >= done &&
            c->assigned_round == 0 && c->up_next == 0)
            elig[n_elig++] = c;
    // the plan takes them in joining order: the newest connections are the first in the
    // list, so walk it backwards (live connections always have a volunteer)
    Conn *joined[BR_PLAN_MAX_VOLUNTEERS];
    BrPlanSpeed speed[BR_PLAN_MAX_VOLUNTEERS];
    for (int j = 0; j < n_elig; j++) {
        joined[j] = elig[n_elig - 1 - j];
        speed[j] = joined[j]->vol->speed;
    }
    BrPlanParams pp = {.global_batch = G, .n_trainers = hybrid_n_trainers(b->h),
                       .trainer_rate = b->trainer_rate, .probe_samples = b->o.probe_samples,
                       .equal = b->o.plan_equal};
    long share[BR_PLAN_MAX_VOLUNTEERS];
    int nv = br_plan_round(&pp, speed, n_elig, share, &b->trainer_samples);
    for (int j = 0; j < n_elig; j++) joined[j]->vol->speed.idle_rounds = speed[j].idle_rounds;
    int first = n_elig - nv;  // joined[first..n_elig) are in the plan
    b->assigned = nv;
    b->assigned_samples = 0;
    b->r_fresh = b->r_stale = b->r_dropped = b->r_lost = 0;
    b->r_up_bytes = b->r_up_s = 0;
    HybridPlan plan = {.step = (int64_t)b->round, .trainer_samples = b->trainer_samples,
                       .volunteers = nv};
    if (hybrid_bcast_plan(b->h, &plan, err) != 0) return -1;
    b->t_open = cx_now();
    b->t_deadline = b->t_open + b->o.deadline_s;
    b->round_open = 1;
    uint64_t pos = (uint64_t)b->trainer_samples;
    for (int j = first; j < n_elig; j++) {
        Conn *c = joined[j];
        uint64_t s_lo = pos, s_hi = pos + (uint64_t)share[j];
        pos = s_hi;
        if (s_hi == s_lo) {  // no share this round: it just applies the step
            send_round_open(c, b->round, b->hash_before, 0, 0);
            continue;
        }
        c->assigned_round = b->round;
        c->assigned_start = b->tr->samples_seen + s_lo;
        c->assigned_samples = s_hi - s_lo;
        b->assigned_samples += s_hi - s_lo;
        send_round_open(c, b->round, b->hash_before, b->tr->samples_seen + s_lo, s_hi - s_lo);
    }
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->state == C_LIVE && c->opened_round != b->round)
            send_round_open(c, b->round, b->hash_before, 0, 0);
    *lo = *hi = 0;
    return 0;
}

static int outstanding(BridgeServer *b) {
    int n = 0;
    for (Conn *c = b->conns; c; c = c->next) n += !c->closing && c->assigned_round == b->round;
    return n;
}

static int cmp_pending(const void *a, const void *b) {
    const Pending *x = *(Pending *const *)a, *y = *(Pending *const *)b;
    if (x->round != y->round) return x->round < y->round ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int bridge_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    BridgeServer *b = ctx;
    CHECK(n == b->n && n_stats == STAT_COUNT, "bridge_sum: unexpected arena");
    // wait for the uploads of this round, at most until the deadline
    while (outstanding(b) > 0) {
        double left = b->t_deadline - cx_now();
        if (left <= 0) break;
        bridge_pump(b, left < 0.05 ? left : 0.05);
    }
    double t_wait = cx_now();
    b->r_wait_s = t_wait - b->t_open;
    // late shares of this round: they may still count next round
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->assigned_round == b->round && c->vol) {
            blog(b, "%s missed the deadline of round %llu (%.1f s)", conn_label(c),
                 (unsigned long long)b->round, b->o.deadline_s);
            vol_event(b, c->vol, "late", b->round, c->assigned_samples, NULL);
        }
    // this round's uploads and the late ones of recent rounds, summed in a fixed order
    // (round, then first sample) so that a run does not depend on upload arrival order
    int n_p = 0;
    for (Pending *p = b->pending; p; p = p->next) n_p++;
    Pending **arr = cx_calloc((size_t)n_p + 1, sizeof *arr);
    n_p = 0;
    for (Pending *p = b->pending; p; p = p->next) arr[n_p++] = p;
    qsort(arr, (size_t)n_p, sizeof *arr, cmp_pending);
    b->pending = NULL;
    for (int i = 0; i < n_p; i++) {
        Pending *p = arr[i];
        uint64_t age = b->round - p->round;
        if (age <= (uint64_t)b->o.max_staleness) {
            nn_add_forward(grads, grads, p->g, n);
            stats[STAT_LOSS_SUM] += p->loss;
            stats[STAT_TOKENS] += (double)p->tokens;
            stats[STAT_SAMPLES] += (double)p->samples;
            stats[STAT_AUX_SUM] += p->aux;
            stats[STAT_PARTICIPANTS] += 1;
            p->vol->round_accepted += p->samples;
            if (p->up_s > 0 && p->up_bytes > 0) p->vol->up_mbit = p->up_bytes * 8 / p->up_s / 1e6;
            b->r_up_bytes += p->up_bytes;
            b->r_up_s += p->up_s;
            if (age == 0) {
                // speed: compute (with the wait for the last result) until the first chunk,
                // then the upload; the first chunk's own transfer is scaled in
                double dt = p->t_first - b->t_open, up = p->t_done - p->t_first;
                if (p->up_bytes > 0 && p->up_s > 0) up += p->up_s / p->up_bytes * 262144.0;
                br_plan_note_upload(&p->vol->speed, p->samples, dt, up);
                b->r_fresh += p->samples;
                p->vol->fresh += p->samples;
                vol_event(b, p->vol, "accepted", b->round, p->samples, NULL);
            } else {
                b->r_stale += p->samples;
                p->vol->stale += p->samples;
                vol_event(b, p->vol, "accepted-stale", b->round, p->samples, NULL);
            }
        } else {
            b->r_dropped += p->samples;
            p->vol->dropped += p->samples;
            vol_event(b, p->vol, "dropped-stale", b->round, p->samples, NULL);
        }
        if (b->n_spare < SPARE_UPLOADS) b->spare[b->n_spare++] = p->g;
        else free(p->g);
        free(p);
    }
    free(arr);
    // late shares stay assigned (their upload may still arrive and count next round)...
    // but their connection becomes eligible again only after it lands
    hybrid_sum_start(b->h);
    double t_ar = cx_now();
    while (!hybrid_sum_poll(b->h)) bridge_pump(b, 0.001);
    if (hybrid_sum_finish(b->h, stats, n_stats, err) != 0) return -1;
    b->r_allreduce_s = cx_now() - t_ar;
    // the trainers' speed (samples per second per trainer) for the next plan
    b->trainer_rate = br_plan_note_trainers(b->trainer_rate, b->trainer_samples,
                                            hybrid_n_trainers(b->h), stats[STAT_COMPUTE_S]);
    b->round_open = 0;
    // results to every live volunteer; keep them for late joiners
    HistRound *h = &b->hist[b->hist_head];
    b->hist_head = (b->hist_head + 1) % b->o.history;
    if (b->hist_n < b->o.history) b->hist_n++;
    h->round = b->round;
    h->hash_before = b->hash_before;
    h->samples = (uint64_t)stats[STAT_SAMPLES];
    h->tokens = (uint64_t)stats[STAT_TOKENS];
    h->participants = (uint32_t)stats[STAT_PARTICIPANTS];
    h->loss = stats[STAT_LOSS_SUM];
    h->aux = stats[STAT_AUX_SUM];
    hist_encode(b, h, grads);
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->state == C_LIVE)
            send_round_result(c, h, c->vol ? c->vol->round_accepted : 0);
    return 0;
}

Averager bridge_averager(BridgeServer *b) {
    return (Averager){.ctx = b, .sum = bridge_sum, .plan = bridge_plan, .plan_ctx = b,
                      .rank = 0, .n_ranks = 1};
}

int bridge_live_volunteers(const BridgeServer *b) {
    int n = 0;
    for (Conn *c = b->conns; c; c = c->next) n += !c->closing && c->state == C_LIVE;
    return n;
}

void bridge_after_step(BridgeServer *b, const StepResult *r) {
    double now = cx_now() - b->t_start;
    int live = bridge_live_volunteers(b);
    if (b->csv) {  // the columns of RUNCOLS_BRIDGE
        fprintf(b->csv, "%.3f,%ld,%ld,%ld,%d,%llu,%llu,%llu,%llu,%llu,%d,%d,%.6f,%.4f,%.4f,%.0f,%.0f,%.0f,%.4f\n",
                now, r->step, r->samples, b->trainer_samples, b->assigned,
                (unsigned long long)b->assigned_samples, (unsigned long long)b->r_fresh,
                (unsigned long long)b->r_stale, (unsigned long long)b->r_dropped,
                (unsigned long long)b->r_lost, r->participants, live, r->loss, b->r_wait_s,
                b->r_allreduce_s, b->bytes_out - b->last_bytes_out, b->bytes_in - b->last_bytes_in, b->r_up_bytes,
                b->r_up_s);
        fflush(b->csv);
    }
    b->last_bytes_in = b->bytes_in;
    b->last_bytes_out = b->bytes_out;
    double t = cx_now();
    if (b->t_last_step > 0 && t > b->t_last_step) b->samples_per_s = (double)r->samples / (t - b->t_last_step);
    b->t_last_step = t;
    b->last_loss = r->loss;
    if (b->loss_n == LOSS_HISTORY) {  // keep every other point: the curve stays whole
        for (int i = 0; i < LOSS_HISTORY / 2; i++) {
            b->loss_hist[i][0] = b->loss_hist[2 * i][0];
            b->loss_hist[i][1] = b->loss_hist[2 * i][1];
        }
        b->loss_n = LOSS_HISTORY / 2;
    }
    b->loss_hist[b->loss_n][0] = (float)r->step;
    b->loss_hist[b->loss_n][1] = (float)r->loss;
    b->loss_n++;
    if (b->o.log_every > 1 && r->step % b->o.log_every != 0 && r->step != 1 && r->step != b->o.total_steps)
        return;
    blog(b, "step %ld | loss %.4f | samples %ld (trainers %ld, volunteers %llu fresh + %llu stale) "
            "| %d live volunteer(s) | wait %.2f s",
         r->step, r->loss, r->samples, b->trainer_samples, (unsigned long long)b->r_fresh,
         (unsigned long long)b->r_stale, live, b->r_wait_s);
}

// ---- status page (read-only; no tokens or addresses in it) ----

static void json_add(json_object *o, const char *k, json_object *v) { json_object_object_add(o, k, v); }

static void on_status_json(struct evhttp_request *req, void *arg) {
    BridgeServer *b = arg;
    double now = cx_now();
    json_object *o = json_object_new_object();
    json_add(o, "step", json_object_new_int64(b->tr->optim.step));
    json_add(o, "total_steps", json_object_new_int64(b->o.total_steps));
    json_add(o, "loss", b->loss_n > 0 ? json_object_new_double(b->last_loss) : NULL);
    json_add(o, "samples_per_s", json_object_new_double(b->samples_per_s));
    json_add(o, "rounds", json_object_new_int64(b->tr->optim.step));
    json_add(o, "round_open", json_object_new_boolean(b->round_open));
    json_add(o, "global_batch", json_object_new_int64(b->tr->global_batch));
    json_add(o, "trainers", json_object_new_int(hybrid_n_trainers(b->h)));
    json_add(o, "live_volunteers", json_object_new_int(bridge_live_volunteers(b)));
    json_add(o, "uptime_s", json_object_new_double(now - b->t_start));
    json_object *vs = json_object_new_array();
    for (Vol *v = b->vols; v; v = v->next) {
        json_object *j = json_object_new_object();
        char id[9];
        memcpy(id, v->id_hex, 8);
        id[8] = 0;
        const Conn *c = v->conn;
        const char *state = !c || c->closing ? "gone" : c->state == C_LIVE ? "live"
                            : c->snap ? "downloading" : "connected";
        json_add(j, "name", json_object_new_string(v->name));
        json_add(j, "identity", json_object_new_string(id));
        json_add(j, "state", json_object_new_string(state));
        json_add(j, "connected", json_object_new_boolean(c && !c->closing));
        json_add(j, "samples_accepted", json_object_new_int64((int64_t)v->fresh));
        json_add(j, "samples_late", json_object_new_int64((int64_t)v->stale));
        json_add(j, "samples_dropped", json_object_new_int64((int64_t)v->dropped));
        json_add(j, "samples_lost", json_object_new_int64((int64_t)v->lost));
        json_add(j, "uploads", json_object_new_int64((int64_t)v->uploads));
        json_add(j, "connects", json_object_new_int64((int64_t)v->connects));
        json_add(j, "upload_mbit_s", v->up_mbit > 0 ? json_object_new_double(v->up_mbit) : NULL);
        json_add(j, "bytes_sent", json_object_new_double(v->bytes_in));
        json_add(j, "bytes_received", json_object_new_double(v->bytes_out));
        json_add(j, "first_seen_s", json_object_new_double(v->first_seen));
        json_add(j, "last_seen_s_ago", json_object_new_double(now - b->t_start - v->last_seen));
        json_object_array_add(vs, j);
    }
    json_add(o, "volunteers", vs);
    json_object *hist = json_object_new_array();
    for (int i = 0; i < b->loss_n; i++) {
        json_object *pt = json_object_new_array();
        json_object_array_add(pt, json_object_new_int64((int64_t)b->loss_hist[i][0]));
        json_object_array_add(pt, json_object_new_double(b->loss_hist[i][1]));
        json_object_array_add(hist, pt);
    }
    json_add(o, "loss_history", hist);
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, text, strlen(text));
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "Access-Control-Allow-Origin", "*");
    evhttp_send_reply(req, HTTP_OK, "OK", buf);
    evbuffer_free(buf);
    json_object_put(o);
}

static void on_status_page(struct evhttp_request *req, void *arg) {
    (void)arg;
    const char *uri = evhttp_request_get_uri(req);
    if (strcmp(uri, "/") != 0 && strcmp(uri, "/index.html") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, "not found: the bridge serves / and /status.json");
        return;
    }
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, BR_STATUS_PAGE, sizeof BR_STATUS_PAGE - 1);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, HTTP_OK, "OK", buf);
    evbuffer_free(buf);
}

static int start_status(BridgeServer *b, char *err) {
    char host[256];
    const char *colon = strrchr(b->o.status_listen, ':');
    if (!colon || colon == b->o.status_listen || (size_t)(colon - b->o.status_listen) >= sizeof host)
        return cx_err(err, "status address '%s' is not HOST:PORT", b->o.status_listen);
    memcpy(host, b->o.status_listen, (size_t)(colon - b->o.status_listen));
    host[colon - b->o.status_listen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return cx_err(err, "status port '%s' is not 1..65535", colon + 1);
    b->http = evhttp_new(b->base);
    CHECK(b->http, "evhttp_new failed");
    evhttp_set_allowed_methods(b->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(b->http, 8192);
    evhttp_set_max_body_size(b->http, 0);
    evhttp_set_timeout(b->http, 10);
    evhttp_set_cb(b->http, "/status.json", on_status_json, b);
    evhttp_set_gencb(b->http, on_status_page, b);
    if (!evhttp_bind_socket_with_handle(b->http, host, (uint16_t)port))
        return cx_err(err, "cannot serve the status page on %s: %s", b->o.status_listen, strerror(errno));
    blog(b, "status page on http://%s/ (and /status.json)", b->o.status_listen);
    return 0;
}

// ---- create / free ----

void bridge_options_default(BridgeOptions *o) {
    *o = (BridgeOptions){.listen = "0.0.0.0:7070", .deadline_s = 30.0, .max_staleness = 1,
                         .max_volunteers = 64,
                         .codecs = BR_CODEC_BIT(BR_CODEC_FP16) | BR_CODEC_BIT(BR_CODEC_FP32),
                         .idle_timeout_s = 60.0, .heartbeat_s = 5.0, .history = 16, .tcp_cc = "bbr",
                         .max_grad_norm = 1e4};
}

BridgeServer *bridge_create(const BridgeOptions *o, Trainer *tr, HybridComm *h,
                            const char *config_text, uint64_t data_windows, char *err) {
    BridgeServer *b = cx_calloc(1, sizeof *b);
    b->o = *o;
    if (b->o.history < 1) b->o.history = 1;
    b->tr = tr;
    b->h = h;
    b->n = tr->task.n_params;
    b->config_text = strdup(config_text);
    b->data_windows = data_windows;
    b->t_start = cx_now();
    b->lim = br_proto_limits_default();
    b->frame_cap = br_proto_max_frame_bytes(&b->lim);
    b->frame = malloc(b->frame_cap);
    b->hist = cx_calloc((size_t)b->o.history, sizeof *b->hist);
    CHECK(b->frame && b->config_text, "out of memory");
    if (!o->tokens_path || br_tokens_load(o->tokens_path, &b->tokens, err) != 0) {
        if (!o->tokens_path) cx_err(err, "no join-token file (--tokens)");
        goto fail;
    }
    struct stat st;
    if (stat(o->tokens_path, &st) == 0) {
        b->tokens_mtime = st.st_mtim;
        b->tokens_size = st.st_size;
        b->tokens_ino = st.st_ino;
    }
    // address
    char host[256];
    const char *colon = strrchr(o->listen, ':');
    if (!colon || colon == o->listen || (size_t)(colon - o->listen) >= sizeof host) {
        cx_err(err, "listen address '%s' is not HOST:PORT", o->listen);
        goto fail;
    }
    memcpy(host, o->listen, (size_t)(colon - o->listen));
    host[colon - o->listen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        cx_err(err, "listen port '%s' is not 0..65535", colon + 1);
        goto fail;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        cx_err(err, "listen host '%s' is not an IPv4 address", host);
        goto fail;
    }
    b->base = event_base_new();
    CHECK(b->base, "event_base_new failed");
    b->lis = evconnlistener_new_bind(b->base, on_accept, b, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     64, (struct sockaddr *)&sin, sizeof sin);
    if (!b->lis) {
        cx_err(err, "cannot listen on %s: %s", o->listen, strerror(errno));
        goto fail;
    }
    b->tick = event_new(b->base, -1, EV_PERSIST, on_tick, b);
    struct timeval one = {0, 250000};
    evtimer_add(b->tick, &one);
    b->wake = evtimer_new(b->base, on_wake, b);
    if (o->status_listen && start_status(b, err) != 0) goto fail;
    if (o->run_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bridge.csv", o->run_dir);
        b->csv = fopen(path, "a");
        if (b->csv && ftell(b->csv) == 0)
            fputs(RUNCOLS_BRIDGE "\n", b->csv);
        snprintf(path, sizeof path, "%s/volunteers.csv", o->run_dir);
        b->vcsv = fopen(path, "a");
        if (b->vcsv && ftell(b->vcsv) == 0)
            fputs(RUNCOLS_VOLUNTEERS "\n", b->vcsv);
        if (!b->csv || !b->vcsv) {
            cx_err(err, "cannot write %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    return b;
fail:
    bridge_free(b);
    return NULL;
}

void bridge_set_restarting(BridgeServer *b) { b->restarting = 1; }

void bridge_free(BridgeServer *b) {
    if (!b) return;
    for (Conn *c = b->conns; c; c = c->next) {
        if (c->closing) continue;
        BrFrame f = {.type = BR_MSG_BYE};
        f.m.bye.reason = b->restarting ? BR_BYE_RESTART : BR_BYE_SHUTDOWN;
        conn_send(c, &f);
    }
    // flush for at most a second
    double t_end = cx_now() + 1.0;
    while (b->base && cx_now() < t_end) {
        size_t left = 0;
        for (Conn *c = b->conns; c; c = c->next)
            if (!c->closing) left += evbuffer_get_length(bufferevent_get_output(c->bev));
        if (left == 0) break;
        bridge_pump(b, 0.05);
    }
    // shares still out and uploads not yet summed when the run ends
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->assigned_round && c->vol)
            vol_event(b, c->vol, "unfinished", c->assigned_round, c->assigned_samples, "run ended");
    for (Pending *p = b->pending; p; p = p->next)
        vol_event(b, p->vol, "unfinished", p->round, p->samples, "run ended");
    for (Conn *c = b->conns; c; c = c->next) c->closing = 1;
    b->shutting_down = 1;
    reap(b);
    if (b->vcsv) {
        for (Vol *v = b->vols; v; v = v->next) {
            char d[160];
            snprintf(d, sizeof d, "fresh=%llu stale=%llu dropped=%llu lost=%llu bytes_in=%.0f bytes_out=%.0f",
                     (unsigned long long)v->fresh, (unsigned long long)v->stale,
                     (unsigned long long)v->dropped, (unsigned long long)v->lost, v->bytes_in,
                     v->bytes_out);
            vol_event(b, v, "summary", (uint64_t)b->tr->optim.step, v->fresh + v->stale, d);
        }
        fclose(b->vcsv);
    }
    if (b->csv) fclose(b->csv);
    while (b->vols) {
        Vol *v = b->vols;
        b->vols = v->next;
        free(v);
    }
    while (b->pending) {
        Pending *p = b->pending;
        b->pending = p->next;
        free(p->g);
        free(p);
    }
    for (int i = 0; i < b->n_spare; i++) free(b->spare[i]);
    for (int i = 0; b->hist && i < b->o.history; i++) free(b->hist[i].frames);
    free(b->chunk);
    free(b->hist);
    if (b->snap) snap_unref(b->snap);
    if (b->http) evhttp_free(b->http);
    if (b->tick) event_free(b->tick);
    if (b->wake) event_free(b->wake);
    if (b->lis) evconnlistener_free(b->lis);
    if (b->base) event_base_free(b->base);
    br_tokens_free(&b->tokens);
    free(b->frame);
    free(b->config_text);
    free(b);
}
