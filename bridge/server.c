// server.c: the bridge server's connections and event loop (see server.h); the rounds are
// in rounds.c, the status page in status.c (server_internal.h).
#include "bridge/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "bridge/datafile.h"
#include "bridge/outer.h"
#include "bridge/proto.h"
#include "bridge/rounds.h"
#include "bridge/server_internal.h"
#include "bridge/state.h"
#include "bridge/status.h"
#include "bridge/tls.h"
#include "bridge/tokens.h"
#include "io/run/runcols.h"
#include "io/run/runlog.h"
#include "models/common.h"

// A serialized state shared by the connections downloading it.
struct Snapshot {
    BrBlob *blob;  // the serialized state; queued STATE_CHUNKs hold it by reference
    size_t n;
    uint64_t step;
    int refs;
};

// ---- logging ----

// One line on stderr; names and ERROR texts come from peers, so control characters (a
// newline would forge a log line, an escape sequence rewrite the terminal) are written as
// \xHH.
void br_log(BridgeServer *b, const char *fmt, ...) {
    if (b->o.quiet) return;
    char line[2048], out[4 * sizeof line + 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cx_escape_controls(out, sizeof out, line);
    fprintf(stderr, "conflux-bridge: %s\n", out);
}

const char *br_conn_label(const Conn *c) {
    static char buf[384];
    if (c->vol) snprintf(buf, sizeof buf, "%s (%s, %.8s, %s)", c->vol->name[0] ? c->vol->name : "?",
                         c->vol->token_name, c->vol->id_hex, c->peer);
    else snprintf(buf, sizeof buf, "%s", c->peer);
    return buf;
}

// Writes s as one CSV field: quoted, with quotes doubled (names come from peers and may
// hold commas, quotes or newlines).
// Lifecycle rows (no samples in them) a token may write to volunteers.csv; past it they
// are counted in the token's summary row instead, so joining and leaving in a loop cannot
// grow the file. Rows with samples (the accounting) are always written.
#define BR_TOKEN_EVENT_ROWS 1000

static int lifecycle_event(const char *event) {
    static const char *const names[] = {"joined", "live", "left", "disconnected", "kicked"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(event, names[i])) return 1;
    return 0;
}

void br_vol_event(BridgeServer *b, const Vol *v, const char *event, uint64_t step,
                  uint64_t samples, const char *detail) {
    if (!b->vcsv || !v) return;
    if (v->tu && samples == 0 && lifecycle_event(event)) {
        if (v->tu->event_rows >= BR_TOKEN_EVENT_ROWS) {
            v->tu->rows_suppressed++;
            return;
        }
        v->tu->event_rows++;
    }
    runlog_write_volunteer_row(b->vcsv, cx_now() - b->t_start, step, v->id_hex, v->name, v->token_name,
                               event, samples, detail);
}

static void conn_close(Conn *c, const char *why);

// ---- sending: copied bytes within a budget, shared blocks by reference ----

BrBlob *br_blob_new(size_t cap) {
    BrBlob *blob = cx_calloc(1, sizeof *blob);
    blob->data = malloc(cap ? cap : 1);
    CHECK(blob->data, "out of memory for a %zu-byte shared block", cap);
    blob->cap = cap;
    blob->refs = 1;
    return blob;
}

void br_blob_unref(BrBlob *blob) {
    if (blob && --blob->refs == 0) {
        free(blob->data);
        free(blob);
    }
}

// A connection's queued bytes by kind. The connection holds one count and every queued
// reference one: libevent may free a connection's output queue (and run the references'
// cleanups) after the connection itself is gone.
struct OutAcct {
    int refs;
    size_t ref_bytes;    // referenced bytes queued (shared blocks)
    size_t state_bytes;  // of them, state bytes (the download window)
    size_t data_bytes;   // of them, training data bytes (the data download window)
};

enum { REF_OTHER, REF_STATE, REF_DATA };  // what a queued reference holds

static void acct_unref(OutAcct *a) {
    if (a && --a->refs == 0) free(a);
}

// One reference queued on a connection's output.
typedef struct {
    BrBlob *blob;
    OutAcct *acct;
    size_t n;
    int kind;  // REF_*
} OutRef;

// libevent: the referenced bytes were written (or the queue was freed).
static void outref_done(const void *data, size_t n, void *arg) {
    (void)data;
    (void)n;
    OutRef *r = arg;
    r->acct->ref_bytes -= r->n;
    if (r->kind == REF_STATE) r->acct->state_bytes -= r->n;
    if (r->kind == REF_DATA) r->acct->data_bytes -= r->n;
    acct_unref(r->acct);
    br_blob_unref(r->blob);
    free(r);
}

size_t br_out_max(const BridgeServer *b) {
    return ((size_t)16 << 20) + (size_t)(b->o.history + 4) * b->n * sizeof(float);
}

static size_t out_queued(const Conn *c) { return evbuffer_get_length(bufferevent_get_output(c->bev)); }

static void count_sent(Conn *c, size_t n) {
    c->last_tx = cx_now();
    c->b->bytes_out += (double)n;
    if (c->vol) c->vol->bytes_out += (double)n;
}

int br_conn_send_bytes(Conn *c, const uint8_t *data, size_t n) {
    if (c->closing) return -1;
    size_t queued = out_queued(c), ref = c->acct->ref_bytes;
    size_t copied = queued > ref ? queued - ref : 0;
    if (!c->failing && copied + n > BR_OUT_COPY_BUDGET) {  // (the ERROR itself may go over)
        br_conn_fail(c, BR_ERR_TIMEOUT, "output queue holds over %zu copied bytes: the peer is not "
                     "reading", BR_OUT_COPY_BUDGET);
        return -1;
    }
    if (bufferevent_write(c->bev, data, n) != 0) return -1;
    count_sent(c, n);
    return 0;
}

static int send_ref(Conn *c, BrBlob *blob, size_t off, size_t n, int kind) {
    if (c->closing) return -1;
    size_t out_max = br_out_max(c->b);
    if (out_queued(c) + n > out_max) {
        br_conn_fail(c, BR_ERR_TIMEOUT, "output queue over %zu bytes: the link is too slow to keep "
                     "up; rejoin to catch up", out_max);
        return -1;
    }
    OutRef *r = cx_calloc(1, sizeof *r);
    *r = (OutRef){.blob = blob, .acct = c->acct, .n = n, .kind = kind};
    blob->refs++;
    c->acct->refs++;
    c->acct->ref_bytes += n;
    if (kind == REF_STATE) c->acct->state_bytes += n;
    if (kind == REF_DATA) c->acct->data_bytes += n;
    if (evbuffer_add_reference(bufferevent_get_output(c->bev), blob->data + off, n, outref_done, r) != 0) {
        outref_done(NULL, 0, r);
        return -1;
    }
    count_sent(c, n);
    return 0;
}

int br_conn_send_ref(Conn *c, BrBlob *blob, size_t off, size_t n) {
    return send_ref(c, blob, off, n, REF_OTHER);
}

int br_conn_send(Conn *c, const BrFrame *f) {
    BridgeServer *b = c->b;
    if (c->closing) return -1;
    char err[CX_ERRLEN];
    int len = br_proto_encode(b->frame, b->frame_cap, f, &b->lim, err);
    if (len <= 0) {  // a value the protocol refuses (e.g. a non-finite statistic): this peer
                     // cannot follow the run any more, the run goes on
        br_log(b, "dropping %s: cannot encode a %s frame: %s", br_conn_label(c),
               br_proto_type_name(f->type), err);
        if (c->vol) br_vol_event(b, c->vol, "kicked", b->rounds.core.round, 0, err);
        conn_close(c, "encode failure");
        return -1;
    }
    return br_conn_send_bytes(c, b->frame, (size_t)len);
}

// Ends c's sending side: TLS close_notify (after everything queued), then FIN.
static void conn_send_fin(Conn *c) {
    br_tls_bufferevent_shutdown(c->bev);
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
}

void br_conn_fail(Conn *c, uint32_t code, const char *fmt, ...) {
    if (c->closing) return;
    BrFrame f = {.type = BR_MSG_ERROR};
    f.m.error.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f.m.error.message, sizeof f.m.error.message, fmt, ap);
    va_end(ap);
    c->failing = 1;  // its ERROR and BYE go out even over the output budget
    // keep the message valid UTF-8 (it may quote peer bytes): cut at the first bad byte
    size_t len = strlen(f.m.error.message);
    while (len > 0 && !br_proto_utf8_valid((const uint8_t *)f.m.error.message, len)) len--;
    f.m.error.message[len] = 0;
    br_log(c->b, "dropping %s: %s", br_conn_label(c), f.m.error.message);
    if (c->vol) br_vol_event(c->b, c->vol, "kicked", c->b->rounds.core.round, 0, f.m.error.message);
    br_conn_send(c, &f);
    BrFrame bye = {.type = BR_MSG_BYE};
    bye.m.bye.reason = BR_BYE_KICKED;
    br_conn_send(c, &bye);
    conn_close(c, f.m.error.message);
}

// ---- snapshots ----

static void snap_unref(Snapshot *s) {
    if (s && --s->refs == 0) {
        br_blob_unref(s->blob);
        free(s);
    }
}

uint64_t br_step(const BridgeServer *b) {
    return b->outer ? (uint64_t)br_outer_applied(b->outer) : (uint64_t)b->tr->optim.step;
}

static Snapshot *current_snapshot(BridgeServer *b) {
    uint64_t step = br_step(b);
    // an older snapshot is still good while the rounds since it are in the history
    if (b->snap && step - b->snap->step <= (uint64_t)(b->o.history / 2)) return b->snap;
    if (b->snap) snap_unref(b->snap);
    Snapshot *s = cx_calloc(1, sizeof *s);
    BrState st = {.step = step, .samples_seen = b->tr->samples_seen, .n_params = b->n,
                  .data_windows = b->data_windows, .config = b->config_text,
                  .config_bytes = strlen(b->config_text), .params = b->tr->task.params,
                  .m = b->tr->optim.m, .v = b->outer ? NULL : b->tr->optim.v};
    s->n = br_state_bytes(b->n, st.config_bytes, st.v ? 3 : 2);
    s->blob = br_blob_new(s->n);
    br_state_write(s->blob->data, &st);
    s->step = step;
    s->refs = 1;  // the server's reference
    b->snap = s;
    return s;
}

// A connection reports it holds the state after step k: bring it up to date and make it live.
static void conn_go_live(Conn *c, uint64_t k) {
    BridgeServer *b = c->b;
    uint64_t done = br_step(b);
    if (k > done) {
        br_conn_fail(c, BR_ERR_STATE, "reports step %llu but the run is at step %llu",
                     (unsigned long long)k, (unsigned long long)done);
        return;
    }
    if (br_rounds_catch_up(c, k) != 0) return;
    c->state = C_LIVE;
    c->acked_step = k;
    c->dl_deadline = 0;
    if (c->snap) {
        snap_unref(c->snap);
        c->snap = NULL;
    }
    br_log(b, "%s is live at step %llu (replayed %llu rounds)", br_conn_label(c),
           (unsigned long long)k, (unsigned long long)(done - k));
    br_vol_event(b, c->vol, "live", k, 0, NULL);
}

// Seconds a download of n state bytes may take: the slack plus n at the minimum rate.
static double download_allowance(const BridgeServer *b, size_t n) {
    double rate = b->o.download_min_rate > 0 ? b->o.download_min_rate : 1;
    return b->o.download_slack_s + (double)n / rate;
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

// ---- per token: connections, identities, retired records ----

static TokenUse *token_use(BridgeServer *b, const char *name) {
    for (int i = 0; i < b->n_token_use; i++)
        if (!strcmp(b->token_use[i].name, name)) return &b->token_use[i];
    if (b->n_token_use == b->cap_token_use) {
        // grow by moving: Vols and Conns point into the table, so fix them up after
        int cap = b->cap_token_use ? 2 * b->cap_token_use : 8;
        TokenUse *t = cx_calloc((size_t)cap, sizeof *t);
        if (b->n_token_use) memcpy(t, b->token_use, (size_t)b->n_token_use * sizeof *t);
        for (Vol *v = b->vols; v; v = v->next)
            if (v->tu) v->tu = t + (v->tu - b->token_use);
        for (Conn *c = b->conns; c; c = c->next)
            if (c->tu) c->tu = t + (c->tu - b->token_use);
        free(b->token_use);
        b->token_use = t;
        b->cap_token_use = cap;
    }
    TokenUse *u = &b->token_use[b->n_token_use++];
    snprintf(u->name, sizeof u->name, "%s", name);
    return u;
}

// Vol v is referenced by nothing but the list: no connection and no upload waiting.
static int vol_unreferenced(const BridgeServer *b, const Vol *v) {
    for (const Conn *c = b->conns; c; c = c->next)
        if (c->vol == v) return 0;
    for (const Pending *p = b->rounds.pending; p; p = p->next)
        if (p->vol == v) return 0;
    return 1;
}

static void vol_unlink(BridgeServer *b, Vol *v) {
    for (Vol **pp = &b->vols; *pp; pp = &(*pp)->next)
        if (*pp == v) {
            *pp = v->next;
            break;
        }
    if (v->tu) v->tu->ids--;
    free(v);
}

// Folds a departed identity's totals into its token's summary and frees its record.
static void vol_retire(BridgeServer *b, Vol *v) {
    TokenUse *u = v->tu;
    u->retired++;
    u->fresh += v->fresh;
    u->stale += v->stale;
    u->dropped += v->dropped;
    u->lost += v->lost;
    u->uploads += v->uploads;
    u->bytes_in += v->bytes_in;
    u->bytes_out += v->bytes_out;
    vol_unlink(b, v);
}

// Room for one more identity on u: retires the longest-departed one when u is at its cap.
// Returns 0, or -1 when every identity of u is still in use.
static int token_make_room(BridgeServer *b, TokenUse *u) {
    if (u->ids < b->o.max_ids_per_token) return 0;
    Vol *oldest = NULL;
    for (Vol *v = b->vols; v; v = v->next)
        if (v->tu == u && !v->conn && vol_unreferenced(b, v) &&
            (!oldest || v->last_seen <= oldest->last_seen))
            oldest = v;
    if (!oldest) return -1;
    vol_retire(b, oldest);
    return 0;
}

// A connection is gone: its volunteer's record is freed when it never contributed (a
// drive-by connection leaves no record, so joins and leaves cannot grow memory).
static void vol_forget_driveby(BridgeServer *b, Vol *v) {
    if (v && !v->conn && v->uploads == 0 && v->fresh + v->stale + v->dropped + v->lost == 0 &&
        vol_unreferenced(b, v))
        vol_unlink(b, v);
}

static void on_hello(Conn *c, const BrHello *m) {
    BridgeServer *b = c->b;
    if (b->tokens_broken) {  // revocation fails closed; volunteers retry (BUSY) until fixed
        br_conn_fail(c, BR_ERR_BUSY, "join tokens unavailable: the bridge's token file is "
                     "unreadable or malformed; joins are refused until the host fixes it");
        return;
    }
    int ti = br_tokens_find(&b->tokens, m->token);
    if (ti < 0) {
        br_conn_fail(c, BR_ERR_AUTH, "unknown or revoked join token");
        return;
    }
    // an identity is bound to its token (bridge/tokens.h): resuming one made for another
    // token is refused before anything else happens, so its holder is neither kicked nor
    // renamed
    if (m->resume && !id_zero(&m->identity) && !br_identity_check(m->token, &m->identity)) {
        char hex[17];
        for (int i = 0; i < 8; i++) sprintf(hex + 2 * i, "%02x", m->identity.bytes[i]);
        br_conn_fail(c, BR_ERR_AUTH, "identity %.8s... is not bound to this join token (an "
                     "identity can be resumed only with the token it was issued for)", hex);
        return;
    }
    // the smallest codec both sides take: a DiLoCo pseudo-gradient goes in int8 (with error
    // feedback), a per-step gradient in fp16 (int8 only when the peer offers nothing else)
    unsigned common = m->codecs & b->o.codecs;
    static const int pref_sync[] = {BR_CODEC_FP16, BR_CODEC_INT8, BR_CODEC_FP32};
    static const int pref_diloco[] = {BR_CODEC_INT8, BR_CODEC_FP16, BR_CODEC_FP32};
    const int *pref = b->outer ? pref_diloco : pref_sync;
    int codec = 0;
    for (int i = 0; i < 3 && !codec; i++)
        if (common & BR_CODEC_BIT(pref[i])) codec = pref[i];
    if (!codec) {
        br_conn_fail(c, BR_ERR_PROTOCOL, "no gradient codec in common (peer offers 0x%x, bridge "
                     "accepts 0x%x)", m->codecs, b->o.codecs);
        return;
    }
    const char *tname = b->tokens.items[ti].name;
    TokenUse *u = token_use(b, tname);
    if (u->conns >= b->o.max_conns_per_token) {
        br_conn_fail(c, BR_ERR_BUSY, "join token '%s' has its maximum of %d connections",
                     tname, b->o.max_conns_per_token);
        return;
    }
    Vol *v = m->resume ? vol_find(b, &m->identity) : NULL;
    if (v && v->tu != u) v = NULL;  // an identity is not taken over with another token
    if (!v && live_count(b) >= b->o.max_volunteers) {
        br_conn_fail(c, BR_ERR_BUSY, "the bridge has its maximum of %d volunteers", b->o.max_volunteers);
        return;
    }
    if (!v && token_make_room(b, u) != 0) {
        br_conn_fail(c, BR_ERR_BUSY, "join token '%s' has its maximum of %d identities in use",
                     tname, b->o.max_ids_per_token);
        return;
    }
    if (!v) {
        v = cx_calloc(1, sizeof *v);
        if (m->resume && !id_zero(&m->identity) && !vol_find(b, &m->identity)) {
            v->id = m->identity;  // an identity from an earlier bridge run (checked above): keep it
        } else {
            char err[CX_ERRLEN];
            CHECK(br_identity_new(m->token, &v->id, err) == 0, "%s", err);
        }
        for (int i = 0; i < 16; i++) sprintf(v->id_hex + 2 * i, "%02x", v->id.bytes[i]);
        v->first_seen = cx_now() - b->t_start;
        v->tu = u;
        u->ids++;
        v->next = b->vols;
        b->vols = v;
    }
    if (v->conn && v->conn != c)
        br_conn_fail(v->conn, BR_ERR_STATE, "replaced by a new connection of the same volunteer");
    u->conns++;
    c->tu = u;
    snprintf(v->name, sizeof v->name, "%s", m->name);
    snprintf(v->token_name, sizeof v->token_name, "%s", b->tokens.items[ti].name);
    v->connects++;
    v->conn = c;
    c->vol = v;
    memcpy(c->token_hash, b->tokens.items[ti].hash, sizeof c->token_hash);
    c->codec = codec;
    c->state = C_AUTHED;
    char err[CX_ERRLEN];
    BrProtoLimits lim = b->lim;
    lim.accept_types = BR_MSG_BIT(BR_MSG_STATE_REQUEST) | BR_MSG_BIT(BR_MSG_DATA_REQUEST) |
                       BR_MSG_BIT(BR_MSG_PROGRESS) |
                       BR_MSG_BIT(BR_MSG_GRAD_CHUNK) | BR_MSG_BIT(BR_MSG_HEARTBEAT) |
                       BR_MSG_BIT(BR_MSG_ERROR) | BR_MSG_BIT(BR_MSG_BYE);
    lim.accept_types |= BR_MSG_BIT(BR_MSG_PROBE);  // the link check
    CHECK(br_proto_decoder_set_limits(&c->dec, &lim, err) == 0, "%s", err);
    Snapshot *s = current_snapshot(b);
    s->refs++;
    c->snap = s;
    c->dl_deadline = cx_now() + download_allowance(b, s->n);
    BrFrame f = {.type = BR_MSG_WELCOME};
    f.m.welcome = (BrWelcome){.session_id = (uint64_t)b->t_start, .identity = v->id,
                              .step = s->step, .samples_seen = 0, .n_params = b->n,
                              .state_bytes = s->n,
                              .round_deadline_ms = (uint32_t)(b->o.deadline_s * 1000 + 0.5),
                              .max_chunk_bytes = b->lim.max_chunk_bytes, .codec = (uint8_t)codec,
                              .data_bytes = b->data_fd >= 0 ? b->data_bytes : 0};
    if (b->data_fd >= 0) memcpy(f.m.welcome.data_hash, b->data_hash, BR_DATA_HASH_BYTES);
    br_conn_send(c, &f);
    br_log(b, "%s joined (%s, codec %s, state %zu bytes at step %llu)", br_conn_label(c),
           m->resume ? "resuming" : "new", codec_find(codec)->name, s->n,
           (unsigned long long)s->step);
    br_vol_event(b, v, "joined", br_step(b), 0, c->peer);
}

// A piece of the state: the frame's head is copied, its bytes are queued by reference to
// the snapshot. At most BR_STATE_WINDOW_BYTES may wait unwritten: a peer that requests
// more (without reading) is dropped.
static void on_state_request(Conn *c, const BrStateRequest *r) {
    BridgeServer *b = c->b;
    if (!c->snap) {
        br_conn_fail(c, BR_ERR_STATE, "STATE_REQUEST after the connection went live");
        return;
    }
    Snapshot *s = c->snap;
    if (r->offset >= s->n || r->n_bytes > s->n - r->offset) {
        br_conn_fail(c, BR_ERR_STATE, "state bytes [%llu, +%u) outside the %zu-byte state",
                     (unsigned long long)r->offset, r->n_bytes, s->n);
        return;
    }
    if (c->acct->state_bytes + r->n_bytes > BR_STATE_WINDOW_BYTES) {
        br_conn_fail(c, BR_ERR_STATE, "state requests beyond the download window: %zu bytes "
                     "requested and not yet sent, at most %zu", c->acct->state_bytes + r->n_bytes,
                     BR_STATE_WINDOW_BYTES);
        return;
    }
    BrFrame o = {.type = BR_MSG_STATE_CHUNK};
    o.m.state_chunk = (BrStateChunk){.offset = r->offset, .total_bytes = s->n,
                                     .n_bytes = r->n_bytes, .data = s->blob->data + r->offset};
    char err[CX_ERRLEN];
    int len = br_proto_encode(b->frame, b->frame_cap, &o, &b->lim, err);
    CHECK(len > 0, "encoding a STATE_CHUNK frame: %s", err);
    size_t head = (size_t)len - r->n_bytes;  // the data is the payload's tail
    if (br_conn_send_bytes(c, b->frame, head) == 0)
        send_ref(c, s->blob, (size_t)r->offset, r->n_bytes, REF_STATE);
}

// A piece of the training data file: read into a block of its own (the file is not held in
// memory), queued by reference behind a copied frame head. Only before the connection goes
// live (a live volunteer holds its data), only inside the file, and at most
// BR_DATA_WINDOW_BYTES requested and not yet written: a peer that asks for more is dropped.
static void on_data_request(Conn *c, const BrDataRequest *r) {
    BridgeServer *b = c->b;
    if (b->data_fd < 0) {
        br_conn_fail(c, BR_ERR_DATA, "this bridge serves no training data (use a local copy)");
        return;
    }
    if (c->state != C_AUTHED) {
        br_conn_fail(c, BR_ERR_DATA, "DATA_REQUEST after the connection went live");
        return;
    }
    if (r->offset >= b->data_bytes || r->n_bytes > b->data_bytes - r->offset) {
        br_conn_fail(c, BR_ERR_DATA, "data bytes [%llu, +%u) outside the %llu-byte training data",
                     (unsigned long long)r->offset, r->n_bytes, (unsigned long long)b->data_bytes);
        return;
    }
    if (c->acct->data_bytes + r->n_bytes > BR_DATA_WINDOW_BYTES) {
        br_conn_fail(c, BR_ERR_DATA, "data requests beyond the download window: %zu bytes "
                     "requested and not yet sent, at most %zu", c->acct->data_bytes + r->n_bytes,
                     BR_DATA_WINDOW_BYTES);
        return;
    }
    if (!c->data_dl) {  // the download deadline grows by the data once per connection
        c->data_dl = 1;
        c->data_first = r->offset;
        double rate = b->o.download_min_rate > 0 ? b->o.download_min_rate : 1;
        if (c->dl_deadline > 0) c->dl_deadline += (double)b->data_bytes / rate;
        br_log(b, "%s downloads the training data from byte %llu of %llu", br_conn_label(c),
               (unsigned long long)r->offset, (unsigned long long)b->data_bytes);
    }
    BrBlob *blob = br_blob_new(r->n_bytes);
    size_t got = 0;
    while (got < r->n_bytes) {
        ssize_t k = pread(b->data_fd, blob->data + got, r->n_bytes - got, (off_t)(r->offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            br_log(b, "cannot read the training data %s at byte %llu: %s", b->o.data_path,
                   (unsigned long long)(r->offset + got), k < 0 ? strerror(errno) : "the file is shorter now");
            br_blob_unref(blob);
            br_conn_fail(c, BR_ERR_INTERNAL, "the bridge cannot read its training data");
            return;
        }
        got += (size_t)k;
    }
    BrFrame o = {.type = BR_MSG_DATA_CHUNK};
    o.m.data_chunk = (BrDataChunk){.offset = r->offset, .total_bytes = b->data_bytes,
                                   .n_bytes = r->n_bytes, .data = blob->data};
    char err[CX_ERRLEN];
    int len = br_proto_encode(b->frame, b->frame_cap, &o, &b->lim, err);
    CHECK(len > 0, "encoding a DATA_CHUNK frame: %s", err);
    size_t head = (size_t)len - r->n_bytes;  // the data is the payload's tail
    if (br_conn_send_bytes(c, b->frame, head) == 0 && send_ref(c, blob, 0, r->n_bytes, REF_DATA) == 0) {
        c->data_sent += r->n_bytes;
        if (r->offset + r->n_bytes == b->data_bytes)
            br_log(b, "%s was sent the training data's last byte (%llu bytes on this connection, "
                   "from byte %llu)", br_conn_label(c), (unsigned long long)c->data_sent,
                   (unsigned long long)c->data_first);
    }
    br_blob_unref(blob);  // the queue holds it now (or nothing does)
}

// ---- the link check: PROBE frames, answered and discarded ----

// A PROBE (conflux-volunteer --check): allowed between WELCOME and going live, bounded per
// connection (BR_PROBE_MAX_BYTES of filler, BR_PROBE_MAX_FRAMES frames) and per token
// (BR_PROBE_TOKEN_BYTES_PER_MIN); the connection's state download deadline bounds its time.
// Answered with a PROBE_ACK saying what arrived when (the volunteer times its upload with
// the bridge's clock, as the bridge times uploads).
static void on_probe(Conn *c, const BrProbe *m) {
    double now = cx_now();
    if (c->state != C_AUTHED) {
        br_conn_fail(c, BR_ERR_PROTOCOL, "PROBE after the connection went live");
        return;
    }
    if (c->probe_frames >= BR_PROBE_MAX_FRAMES ||
        c->probe_bytes + m->n_bytes > BR_PROBE_MAX_BYTES) {
        br_conn_fail(c, BR_ERR_BUSY, "link check beyond %u probes or %llu MiB per connection",
                     BR_PROBE_MAX_FRAMES, (unsigned long long)(BR_PROBE_MAX_BYTES >> 20));
        return;
    }
    TokenUse *u = c->tu;
    if (u) {
        if (now - u->probe_t0 > 60) {
            u->probe_t0 = now;
            u->probe_bytes = 0;
        }
        if (u->probe_bytes + m->n_bytes > BR_PROBE_TOKEN_BYTES_PER_MIN) {
            br_conn_fail(c, BR_ERR_BUSY, "join token '%s' sent over %llu MiB of link checks in a "
                         "minute; try again later", u->name,
                         (unsigned long long)(BR_PROBE_TOKEN_BYTES_PER_MIN >> 20));
            return;
        }
        u->probe_bytes += m->n_bytes;
    }
    if (c->probe_frames++ == 0) c->probe_t_first = now;
    c->probe_bytes += m->n_bytes;
    BrFrame a = {.type = BR_MSG_PROBE_ACK};
    a.m.probe_ack = (BrProbeAck){.seq = m->seq, .bytes = c->probe_bytes,
                                 .elapsed_us = (uint64_t)((now - c->probe_t_first) * 1e6)};
    br_conn_send(c, &a);
}

// ---- end of the link check ----

static void on_frame(Conn *c, const BrFrame *f) {
    BridgeServer *b = c->b;
    // no credit before authentication: a HEARTBEAT does not hold a slot open
    if (c->state != C_PREAUTH || f->type == BR_MSG_HELLO) c->last_rx = cx_now();
    if (c->vol) c->vol->last_seen = c->last_rx - b->t_start;
    switch (f->type) {
    case BR_MSG_HELLO:
        if (c->state != C_PREAUTH) br_conn_fail(c, BR_ERR_PROTOCOL, "second HELLO");
        else on_hello(c, &f->m.hello);
        break;
    case BR_MSG_STATE_REQUEST: on_state_request(c, &f->m.state_request); break;
    case BR_MSG_DATA_REQUEST: on_data_request(c, &f->m.data_request); break;
    case BR_MSG_PROGRESS: {
        uint64_t k = f->m.progress.step;
        if (c->state == C_AUTHED) conn_go_live(c, k);
        else if (c->state == C_LIVE) {
            if (k < c->acked_step || k > br_step(b))
                br_conn_fail(c, BR_ERR_STATE, "PROGRESS for step %llu after step %llu (run at %llu)",
                             (unsigned long long)k, (unsigned long long)c->acked_step,
                             (unsigned long long)br_step(b));
            else c->acked_step = k;
        }
        break;
    }
    case BR_MSG_GRAD_CHUNK: br_rounds_on_grad_chunk(c, &f->m.grad_chunk); break;
    case BR_MSG_PROBE: on_probe(c, &f->m.probe); break;  // the link check
    case BR_MSG_HEARTBEAT: break;
    case BR_MSG_ERROR:
        br_log(b, "%s reports error %u: %s", br_conn_label(c), f->m.error.code, f->m.error.message);
        conn_close(c, "peer error");
        break;
    case BR_MSG_BYE:
        br_log(b, "%s leaves (reason %u)", br_conn_label(c), f->m.bye.reason);
        if (c->vol) br_vol_event(b, c->vol, "left", br_step(b), 0, NULL);
        conn_close(c, "bye");
        break;
    default:
        br_conn_fail(c, BR_ERR_PROTOCOL, "unexpected %s frame from a volunteer", br_proto_type_name(f->type));
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
                // a peer of another protocol version is told so by its code (VERSION)
                br_conn_fail(c, br_proto_decoder_peer_major(&c->dec) ? BR_ERR_VERSION : BR_ERR_PROTOCOL,
                             "%s", br_proto_decoder_error(&c->dec));
                break;
            }
            if (st == BR_PROTO_FRAME) on_frame(c, &f);
        }
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    Conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        c->eof = 1;
        char tls_err[160];
        br_tls_bufferevent_error(bev, tls_err, sizeof tls_err);
        const char *why = what & BEV_EVENT_EOF ? "connection closed by peer" : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
        if (tls_err[0] && c->state == C_PREAUTH) {  // nothing can be sent: the peer speaks no TLS
            if (!c->closing)
                br_log(c->b, "dropping %s: TLS handshake failed: %s (%s)", br_conn_label(c), tls_err,
                       strstr(tls_err, "eof") ? "the peer left during the handshake"
                                              : "a plaintext client?");
            why = "TLS handshake failed";
        } else if (tls_err[0]) {
            if (!c->closing) br_log(c->b, "%s disconnected: TLS error: %s", br_conn_label(c), tls_err);
            why = "TLS error";
        } else if (!c->closing) br_log(c->b, "%s disconnected: %s", br_conn_label(c), why);
        conn_close(c, why);
    }
}

// Output drained: a closing connection now sends its FIN (after its ERROR/BYE frames).
// The callback may be stale: libevent's TLS bufferevent defers it (do_write triggers
// EV_WRITE with BEV_OPT_DEFER_CALLBACKS), so a drain of earlier frames can call it after
// br_conn_fail queued the ERROR behind a full socket buffer; a close_notify and FIN sent
// then would end the stream before the ERROR. So the output must be empty now.
static void on_write_drained(struct bufferevent *bev, void *arg) {
    (void)bev;
    Conn *c = arg;
    if (c->closing && !c->eof && out_queued(c) == 0) conn_send_fin(c);
}

// Unlinks and frees closing connections (never from inside their own callbacks).
static void reap(BridgeServer *b) {
    Conn **pp = &b->conns;
    while (*pp) {
        Conn *c = *pp;
        // a closing connection lingers (reading and discarding) until the peer closes too
        // or 2 s passed: closing a socket with unread input sends a reset, which would
        // destroy the ERROR frame before the peer reads it. Output still queued (an ERROR
        // behind a replay's AVG_CHUNKs to a slow reader) gets up to 10 s to drain: freeing
        // it would close the connection without the ERROR that says why.
        double age = cx_now() - c->close_t;
        int drained = evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
        if (c->closing && (c->eof || b->shutting_down || (age > 2.0 && drained) || age > 10.0)) {
            *pp = c->next;
            bufferevent_free(c->bev);
            br_proto_decoder_free(&c->dec);
            free(c->up);
            snap_unref(c->snap);
            acct_unref(c->acct);
            Vol *v = c->vol;
            free(c);
            b->n_conns--;
            vol_forget_driveby(b, v);
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
        br_rounds_conn_closed(c, why);
        if (!b->shutting_down)
            br_vol_event(b, c->vol, "disconnected", br_step(b), 0, why);
        if (c->vol->conn == c) c->vol->conn = NULL;
    }
    if (c->tu) c->tu->conns--;
    c->tu = NULL;
    // a download's snapshot is released now (its queued bytes when the queue is freed)
    snap_unref(c->snap);
    c->snap = NULL;
    c->dl_deadline = 0;
    // flush what is queued (an ERROR/BYE), then FIN (on_write_drained); freed by reap()
    c->close_t = cx_now();
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !c->eof) conn_send_fin(c);
}

// ---- accept errors ----

// The guards by listener: libevent's error callback gets the listener's own argument (for
// the status page, evhttp's), so the guard is looked up by the listener.
static BrAcceptGuard *guards[4];

static void guard_resume(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    BrAcceptGuard *g = arg;
    g->paused = 0;
    if (!g->held) evconnlistener_enable(g->lis);
}

static void on_accept_error(struct evconnlistener *lis, void *arg) {
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    BrAcceptGuard *g = NULL;
    for (size_t i = 0; i < sizeof guards / sizeof *guards; i++)
        if (guards[i] && guards[i]->lis == lis) g = guards[i];
    if (!g) return;
    g->errors++;
    double now = cx_now();
    if (now - g->t_logged >= 10) {  // at most a line per 10 s, however long it lasts
        g->t_logged = now;
        g->logged = 1;
        g->episodes++;
        br_log(g->b, "cannot accept %s connections: %s (%llu failed accepts so far); pausing the "
               "listener for 0.5 s at a time (logged at most every 10 s)", g->what,
               evutil_socket_error_to_string(e), (unsigned long long)g->errors);
    }
    // the listening socket stays readable: pause instead of spinning on it
    if (!g->paused) {
        g->paused = 1;
        evconnlistener_disable(lis);
        struct timeval tv = {0, 500000};
        evtimer_add(g->resume, &tv);
    }
}

void br_accept_guard_init(BridgeServer *b, BrAcceptGuard *g, struct evconnlistener *lis,
                          const char *what) {
    g->b = b;
    g->lis = lis;
    g->what = what;
    g->resume = evtimer_new(b->base, guard_resume, g);
    CHECK(g->resume, "evtimer_new failed");
    for (size_t i = 0; i < sizeof guards / sizeof *guards; i++)
        if (!guards[i]) {
            guards[i] = g;
            break;
        }
    evconnlistener_set_error_cb(lis, on_accept_error);
}

void br_accept_guard_ok(BridgeServer *b, BrAcceptGuard *g) {
    if (!g->logged) return;
    g->logged = 0;
    br_log(b, "accepting %s connections again (%llu failed accepts so far)", g->what,
           (unsigned long long)g->errors);
}

void br_accept_guard_free(BrAcceptGuard *g) {
    for (size_t i = 0; i < sizeof guards / sizeof *guards; i++)
        if (guards[i] == g) guards[i] = NULL;
    if (g->resume) event_free(g->resume);
    g->resume = NULL;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg) {
    (void)l;
    (void)len;
    BridgeServer *b = arg;
    br_accept_guard_ok(b, &b->guard);
    // connections still closing linger (at most 2 s each); past a hard cap even they are
    // not accepted, so a connect flood cannot run the bridge out of descriptors
    if (b->n_conns >= b->o.max_volunteers + b->o.max_preauth + 64) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // the bridge sends the summed gradients: a loss-tolerant congestion control (BBR)
    // keeps a lossy long-RTT downlink near its rate where cubic collapses
    if (b->o.tcp_cc && b->o.tcp_cc[0] &&
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, b->o.tcp_cc, (socklen_t)strlen(b->o.tcp_cc)) != 0 &&
        !b->cc_warned) {
        br_log(b, "TCP congestion control '%s' unavailable (%s); using the system default",
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
    snprintf(c->host, sizeof c->host, "%s", host);
    c->bev = b->tls ? br_tls_bufferevent(b->base, b->tls, fd)
                    : bufferevent_socket_new(b->base, fd, BEV_OPT_CLOSE_ON_FREE);
    CHECK(c->bev, "cannot set up a bufferevent for %s", c->peer);
    c->acct = cx_calloc(1, sizeof *c->acct);
    c->acct->refs = 1;
    BrProtoLimits pre = b->lim;
    pre.accept_types = BR_PROTO_PREAUTH_TYPES;
    char err[CX_ERRLEN];
    CHECK(br_proto_decoder_init(&c->dec, &pre, err) == 0, "%s", err);
    c->last_rx = c->last_tx = c->t_accept = cx_now();
    // counted before this one joins the list
    int preauth = 0, from_addr = 0;
    for (Conn *o = b->conns; o; o = o->next)
        if (!o->closing && o->state == C_PREAUTH) {
            preauth++;
            from_addr += !strcmp(o->host, c->host);
        }
    c->next = b->conns;
    b->conns = c;
    b->n_conns++;
    // bounded input: libevent stops reading from the socket above 4 MiB unprocessed
    bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)4 << 20);
    bufferevent_setcb(c->bev, on_read, on_write_drained, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    // the unauthenticated have their own small pool (authenticated volunteers are counted
    // against max_volunteers at HELLO)
    if (preauth >= b->o.max_preauth)
        br_conn_fail(c, BR_ERR_BUSY, "too many connections waiting for HELLO (%d)", b->o.max_preauth);
    else if (from_addr >= b->o.max_preauth_per_addr)
        br_conn_fail(c, BR_ERR_BUSY, "too many connections from %s waiting for HELLO (%d)", c->host,
                     b->o.max_preauth_per_addr);
}

// The token file is unusable (why): revocation fails closed. No token is valid, connected
// volunteers are dropped (BUSY: they retry and rejoin once the file is fixed), joins are
// refused; logged once per reason.
static void tokens_fail(BridgeServer *b, const char *why) {
    br_tokens_free(&b->tokens);
    if (!b->tokens_broken || strcmp(b->tokens_why, why) != 0)
        br_log(b, "join tokens unusable, refusing joins and dropping volunteers until fixed: %s", why);
    b->tokens_broken = 1;
    snprintf(b->tokens_why, sizeof b->tokens_why, "%s", why);
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->vol)
            br_conn_fail(c, BR_ERR_BUSY, "join tokens unavailable: the bridge's token file is "
                         "unreadable or malformed; rejoin when the host has fixed it");
}

// Re-reads the token file when it changed (a revocation drops its holders at once).
static void reload_tokens(BridgeServer *b) {
    struct stat st;
    if (stat(b->o.tokens_path, &st) != 0) {
        char why[256];
        snprintf(why, sizeof why, "cannot read token file %s: %s", b->o.tokens_path, strerror(errno));
        b->tokens_ino = 0;  // any file that appears is read
        tokens_fail(b, why);
        return;
    }
    if (st.st_mtim.tv_sec == b->tokens_mtime.tv_sec && st.st_mtim.tv_nsec == b->tokens_mtime.tv_nsec &&
        st.st_size == b->tokens_size && st.st_ino == b->tokens_ino)
        return;
    b->tokens_mtime = st.st_mtim;
    b->tokens_size = st.st_size;
    b->tokens_ino = st.st_ino;
    BrTokens t;
    char err[CX_ERRLEN];
    if (br_tokens_load(b->o.tokens_path, &t, err) != 0) {
        tokens_fail(b, err);
        return;
    }
    br_tokens_free(&b->tokens);
    b->tokens = t;
    if (b->tokens_broken)
        br_log(b, "join tokens readable again (%d entries in %s): accepting joins", t.n, b->o.tokens_path);
    b->tokens_broken = 0;
    b->tokens_why[0] = 0;
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->vol && br_tokens_find_hash(&b->tokens, c->token_hash) < 0)
            br_conn_fail(c, BR_ERR_AUTH, "join token revoked");
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    BridgeServer *b = arg;
    double now = cx_now();
    reload_tokens(b);
    br_status_tick(b);
    size_t out_max = br_out_max(b);
    for (Conn *c = b->conns; c; c = c->next) {
        if (c->closing) continue;
        if (c->state == C_PREAUTH && now - c->t_accept > b->o.hello_timeout_s) {
            br_conn_fail(c, BR_ERR_TIMEOUT, "no HELLO within %.0f s of connecting", b->o.hello_timeout_s);
            continue;
        }
        if (now - c->last_rx > b->o.idle_timeout_s) {
            br_conn_fail(c, BR_ERR_TIMEOUT, "silent for %.0f s (idle timeout)", now - c->last_rx);
            continue;
        }
        if (c->dl_deadline > 0 && now > c->dl_deadline) {
            size_t n_state = c->snap ? c->snap->n : 0;
            if (c->data_dl)
                br_conn_fail(c, BR_ERR_TIMEOUT, "state and training data download not finished within "
                             "%.0f s (%zu + %llu bytes at %.0f KiB/s at least, plus %.0f s)",
                             download_allowance(b, n_state) + (double)b->data_bytes /
                             (b->o.download_min_rate > 0 ? b->o.download_min_rate : 1),
                             n_state, (unsigned long long)b->data_bytes,
                             b->o.download_min_rate / 1024, b->o.download_slack_s);
            else
                br_conn_fail(c, BR_ERR_TIMEOUT, "state download not finished within %.0f s (%zu bytes at "
                             "%.0f KiB/s at least, plus %.0f s)", download_allowance(b, n_state),
                             n_state, b->o.download_min_rate / 1024, b->o.download_slack_s);
            continue;
        }
        if (out_queued(c) > out_max) {
            br_conn_fail(c, BR_ERR_TIMEOUT, "output queue over %zu bytes: the link is too slow "
                         "to keep up; rejoin to catch up", out_max);
            continue;
        }
        if (now - c->last_tx > b->o.heartbeat_s) {
            BrFrame f = {.type = BR_MSG_HEARTBEAT};
            f.m.heartbeat.time_us = (uint64_t)(now * 1e6);
            br_conn_send(c, &f);
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

int bridge_live_volunteers(const BridgeServer *b) {
    int n = 0;
    for (Conn *c = b->conns; c; c = c->next) n += !c->closing && c->state == C_LIVE;
    return n;
}

// ---- create / free ----

void bridge_options_default(BridgeOptions *o) {
    *o = (BridgeOptions){.listen = "0.0.0.0:7070", .deadline_s = 30.0, .max_staleness = 1,
                         .max_volunteers = 64,
                         .codecs = BR_CODEC_BIT(BR_CODEC_FP16) | BR_CODEC_BIT(BR_CODEC_FP32) |
                                   BR_CODEC_BIT(BR_CODEC_INT8),
                         .idle_timeout_s = 60.0, .heartbeat_s = 5.0, .history = 16, .tcp_cc = "bbr",
                         .max_grad_norm = 1e4, .max_delta_ratio = 4, .max_share = 0.5,
                         .aggregate = ROBUST_CENTERED_CLIP, .clip_ratio = 4, .trim = 0.2,
                         .hello_timeout_s = 5, .max_preauth = 32, .max_preauth_per_addr = 8,
                         .max_conns_per_token = 16, .max_ids_per_token = 64,
                         .download_slack_s = 30, .download_min_rate = 128 * 1024,
                         .max_status_conns = 32};
}

// TLS on the volunteer port: the certificate (generated next to the token file when not
// given), the context, the fingerprint volunteers pin; or --plaintext, warned.
static int bridge_tls_setup(BridgeServer *b, char *err) {
    const BridgeOptions *o = &b->o;
    if (o->plaintext) {
        fprintf(stderr, "conflux-bridge: warning: --plaintext: no TLS on %s; join tokens, "
                "identities and gradients cross the network readable and forgeable\n", o->listen);
        return 0;
    }
    char cert[4096], key[4096], fp[BR_TLS_FP_CHARS + 1];
    br_tls_default_paths(o->tokens_path, cert, key, sizeof cert);
    if (o->tls_cert) snprintf(cert, sizeof cert, "%s", o->tls_cert);
    if (o->tls_key) snprintf(key, sizeof key, "%s", o->tls_key);
    if (br_tls_load_or_make(cert, key, !o->tls_cert && !o->tls_key, fp, err) != 0) return -1;
    b->tls = br_tls_server_ctx(cert, key, err);
    if (!b->tls) return -1;
    fprintf(stderr, "conflux-bridge: TLS 1.3, certificate %s, fingerprint sha256:%s; volunteers "
            "join with --join HOST:PORT#sha256:%s\n", cert, fp, fp);
    return 0;
}

// Opens the training data volunteers may download and hashes it (from the descriptor it is
// served from, so the hash is of those bytes).
static int bridge_data_open(BridgeServer *b, const char *path, char *err) {
    b->data_fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (b->data_fd < 0 || fstat(b->data_fd, &st) != 0)
        return cx_err(err, "cannot read the training data %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cx_err(err, "the training data %s is not a regular file", path);
    double t0 = cx_now();
    BrSha256 *h = br_sha256_new();
    enum { PIECE = 1 << 20 };
    uint8_t *buf = malloc(PIECE);
    CHECK(buf, "out of memory");
    uint64_t n = 0;
    for (;;) {
        ssize_t k = pread(b->data_fd, buf, PIECE, (off_t)n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            free(buf);
            br_sha256_free(h);
            return cx_err(err, "cannot read the training data %s at byte %llu: %s", path,
                          (unsigned long long)n, strerror(errno));
        }
        if (k == 0) break;
        br_sha256_update(h, buf, (size_t)k);
        n += (uint64_t)k;
    }
    free(buf);
    br_sha256_final(h, b->data_hash);
    br_sha256_free(h);
    b->data_bytes = n;
    if (n == 0) return cx_err(err, "the training data %s is empty", path);
    char hex[BR_SHA256_HEX + 1];
    if (!b->o.quiet)
        fprintf(stderr, "conflux-bridge: serving the training data %s to volunteers: %llu bytes, "
                "sha256:%s (hashed in %.2f s)\n", path, (unsigned long long)n,
                br_sha256_hex(b->data_hash, hex), cx_now() - t0);
    return 0;
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
    b->data_fd = -1;
    b->t_start = cx_now();
    b->lim = br_proto_limits_default();
    b->frame_cap = br_proto_max_frame_bytes(&b->lim);
    b->frame = malloc(b->frame_cap);
    CHECK(b->frame && b->config_text, "out of memory");
    br_rounds_init(b);
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
    if (b->tokens.n_plain > 0)
        fprintf(stderr, "conflux-bridge: warning: %s holds %d token(s) in plaintext (an older "
                "format): accepted; 'conflux-bridge token migrate --tokens %s' stores them hashed\n",
                o->tokens_path, b->tokens.n_plain, o->tokens_path);
    if (bridge_tls_setup(b, err) != 0) goto fail;
    if (o->data_path && bridge_data_open(b, o->data_path, err) != 0) goto fail;
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
    br_accept_guard_init(b, &b->guard, b->lis, "volunteer");
    b->tick = event_new(b->base, -1, EV_PERSIST, on_tick, b);
    struct timeval one = {0, 250000};
    evtimer_add(b->tick, &one);
    b->wake = evtimer_new(b->base, on_wake, b);
    if (o->status_listen && br_status_start(b, err) != 0) goto fail;
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

// A token's summary row in volunteers.csv, when it retired identities or suppressed rows:
// the retired identities' totals (so the summary rows still account for every sample).
static void token_summary(BridgeServer *b, TokenUse *u) {
    if (!u->retired && !u->rows_suppressed) return;
    Vol t = {.tu = NULL};
    snprintf(t.id_hex, sizeof t.id_hex, "retired");
    snprintf(t.name, sizeof t.name, "(%llu retired identities)", (unsigned long long)u->retired);
    snprintf(t.token_name, sizeof t.token_name, "%s", u->name);
    char d[200];
    snprintf(d, sizeof d, "fresh=%llu stale=%llu dropped=%llu lost=%llu bytes_in=%.0f bytes_out=%.0f "
             "rows_suppressed=%llu", (unsigned long long)u->fresh, (unsigned long long)u->stale,
             (unsigned long long)u->dropped, (unsigned long long)u->lost, u->bytes_in, u->bytes_out,
             (unsigned long long)u->rows_suppressed);
    br_vol_event(b, &t, "summary-token", br_step(b), u->fresh + u->stale, d);
}

void bridge_free(BridgeServer *b) {
    if (!b) return;
    for (Conn *c = b->conns; c; c = c->next) {
        if (c->closing) continue;
        BrFrame f = {.type = BR_MSG_BYE};
        f.m.bye.reason = b->restarting ? BR_BYE_RESTART : BR_BYE_SHUTDOWN;
        br_conn_send(c, &f);
    }
    b->shutting_down = 1;  // from here on a closing connection's shares are "unfinished"
    // flush each BYE, then send FIN and wait for the peer to read its BYE and close (3 s at
    // most in all): closing a socket while its peer still uploads would reset the
    // connection, and the BYE with it. A connection already closing with output queued (an
    // ERROR behind a catch-up replay to a slow reader) gets the same time to drain: freeing
    // it now would close it without the ERROR that says why.
    double t_end = cx_now() + 3.0;
    while (b->base && cx_now() < t_end) {
        int open = 0;
        for (Conn *c = b->conns; c; c = c->next) {
            if (c->eof) continue;
            if (c->closing) {
                open |= out_queued(c) > 0;
                continue;
            }
            open = 1;
            if (!c->fin_sent && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
                conn_send_fin(c);
                c->fin_sent = 1;
            }
        }
        if (!open) break;
        bridge_pump(b, 0.05);
    }
    // shares still out and uploads not yet summed when the run ends
    br_rounds_report_unfinished(b);
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
            br_vol_event(b, v, "summary", br_step(b), v->fresh + v->stale, d);
        }
        for (int i = 0; i < b->n_token_use; i++) token_summary(b, &b->token_use[i]);
        fclose(b->vcsv);
    }
    if (b->csv) fclose(b->csv);
    while (b->vols) {
        Vol *v = b->vols;
        b->vols = v->next;
        free(v);
    }
    br_rounds_free(b);
    if (b->snap) snap_unref(b->snap);
    br_status_free(b);
    if (b->tick) event_free(b->tick);
    if (b->wake) event_free(b->wake);
    br_accept_guard_free(&b->guard);
    if (b->lis) evconnlistener_free(b->lis);
    free(b->token_use);
    if (b->base) event_base_free(b->base);
    br_tokens_free(&b->tokens);
    br_tls_ctx_free(b->tls);
    free(b->frame);
    free(b->config_text);
    if (b->data_fd >= 0) close(b->data_fd);
    free(b);
}
