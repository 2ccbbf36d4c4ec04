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
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "bridge/outer.h"
#include "bridge/proto.h"
#include "bridge/rounds.h"
#include "bridge/server_internal.h"
#include "bridge/state.h"
#include "bridge/status.h"
#include "bridge/tokens.h"
#include "io/run/runcols.h"
#include "models/common.h"

// A serialized state shared by the connections downloading it.
struct Snapshot {
    uint8_t *blob;
    size_t n;
    uint64_t step;
    int refs;
};

// ---- logging ----

void br_log(BridgeServer *b, const char *fmt, ...) {
    if (b->o.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "conflux-bridge: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
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
static void csv_field(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void br_vol_event(BridgeServer *b, const Vol *v, const char *event, uint64_t step,
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

int br_conn_send_bytes(Conn *c, const uint8_t *data, size_t n) {
    if (c->closing) return -1;
    if (bufferevent_write(c->bev, data, n) != 0) return -1;
    c->last_tx = cx_now();
    c->b->bytes_out += (double)n;
    if (c->vol) c->vol->bytes_out += (double)n;
    return 0;
}

int br_conn_send(Conn *c, const BrFrame *f) {
    BridgeServer *b = c->b;
    if (c->closing) return -1;
    char err[CX_ERRLEN];
    int len = br_proto_encode(b->frame, b->frame_cap, f, &b->lim, err);
    CHECK(len > 0, "encoding a %s frame: %s", br_proto_type_name(f->type), err);
    return br_conn_send_bytes(c, b->frame, (size_t)len);
}

static void conn_close(Conn *c, const char *why);

void br_conn_fail(Conn *c, uint32_t code, const char *fmt, ...) {
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
    br_log(c->b, "dropping %s: %s", br_conn_label(c), f.m.error.message);
    if (c->vol) br_vol_event(c->b, c->vol, "kicked", c->b->rounds.round, 0, f.m.error.message);
    br_conn_send(c, &f);
    BrFrame bye = {.type = BR_MSG_BYE};
    bye.m.bye.reason = BR_BYE_KICKED;
    br_conn_send(c, &bye);
    conn_close(c, f.m.error.message);
}

// ---- snapshots ----

static void snap_unref(Snapshot *s) {
    if (s && --s->refs == 0) {
        free(s->blob);
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
    s->blob = malloc(s->n);
    CHECK(s->blob, "out of memory for a %zu-byte state snapshot", s->n);
    br_state_write(s->blob, &st);
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
    if (c->snap) {
        snap_unref(c->snap);
        c->snap = NULL;
    }
    br_log(b, "%s is live at step %llu (replayed %llu rounds)", br_conn_label(c),
           (unsigned long long)k, (unsigned long long)(done - k));
    br_vol_event(b, c->vol, "live", k, 0, NULL);
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
        br_conn_fail(c, BR_ERR_AUTH, "unknown or revoked join token");
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
    Vol *v = m->resume ? vol_find(b, &m->identity) : NULL;
    if (!v && live_count(b) >= b->o.max_volunteers) {
        br_conn_fail(c, BR_ERR_BUSY, "the bridge has its maximum of %d volunteers", b->o.max_volunteers);
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
    if (v->conn && v->conn != c)
        br_conn_fail(v->conn, BR_ERR_STATE, "replaced by a new connection of the same volunteer");
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
    br_conn_send(c, &f);
    br_log(b, "%s joined (%s, codec %s, state %zu bytes at step %llu)", br_conn_label(c),
           m->resume ? "resuming" : "new", codec_find(codec)->name, s->n,
           (unsigned long long)s->step);
    br_vol_event(b, v, "joined", br_step(b), 0, c->peer);
}

static void on_frame(Conn *c, const BrFrame *f) {
    BridgeServer *b = c->b;
    c->last_rx = cx_now();
    if (c->vol) c->vol->last_seen = c->last_rx - b->t_start;
    switch (f->type) {
    case BR_MSG_HELLO:
        if (c->state != C_PREAUTH) br_conn_fail(c, BR_ERR_PROTOCOL, "second HELLO");
        else on_hello(c, &f->m.hello);
        break;
    case BR_MSG_STATE_REQUEST: {
        if (!c->snap) {
            br_conn_fail(c, BR_ERR_STATE, "STATE_REQUEST after the connection went live");
            break;
        }
        const BrStateRequest *r = &f->m.state_request;
        if (r->offset >= c->snap->n || r->n_bytes > c->snap->n - r->offset) {
            br_conn_fail(c, BR_ERR_STATE, "state bytes [%llu, +%u) outside the %zu-byte state",
                         (unsigned long long)r->offset, r->n_bytes, c->snap->n);
            break;
        }
        BrFrame o = {.type = BR_MSG_STATE_CHUNK};
        o.m.state_chunk = (BrStateChunk){.offset = r->offset, .total_bytes = c->snap->n,
                                         .n_bytes = r->n_bytes, .data = c->snap->blob + r->offset};
        br_conn_send(c, &o);
        break;
    }
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
                br_conn_fail(c, BR_ERR_PROTOCOL, "%s", br_proto_decoder_error(&c->dec));
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
        if (!c->closing) br_log(c->b, "%s disconnected: %s", br_conn_label(c), why);
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
        br_rounds_conn_closed(c, why);
        if (!b->shutting_down)
            br_vol_event(b, c->vol, "disconnected", br_step(b), 0, why);
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
        br_conn_fail(c, BR_ERR_BUSY, "too many connections");
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
        br_log(b, "keeping the old tokens: %s", err);
        return;
    }
    br_tokens_free(&b->tokens);
    b->tokens = t;
    b->tokens_mtime = st.st_mtim;
    b->tokens_size = st.st_size;
    b->tokens_ino = st.st_ino;
    for (Conn *c = b->conns; c; c = c->next)
        if (!c->closing && c->vol && br_tokens_find(&b->tokens, c->token) < 0)
            br_conn_fail(c, BR_ERR_AUTH, "join token revoked");
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
            br_conn_fail(c, BR_ERR_TIMEOUT, "silent for %.0f s (idle timeout)", now - c->last_rx);
            continue;
        }
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > out_max) {
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
                         .max_grad_norm = 1e4, .max_delta_ratio = 4,
                         .aggregate = ROBUST_CENTERED_CLIP, .clip_ratio = 4, .trim = 0.2};
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
    // connection, and the BYE with it
    double t_end = cx_now() + 3.0;
    while (b->base && cx_now() < t_end) {
        int open = 0;
        for (Conn *c = b->conns; c; c = c->next) {
            if (c->closing || c->eof) continue;
            open = 1;
            if (!c->fin_sent && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
                shutdown(bufferevent_getfd(c->bev), SHUT_WR);
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
    if (b->lis) evconnlistener_free(b->lis);
    if (b->base) event_base_free(b->base);
    br_tokens_free(&b->tokens);
    free(b->frame);
    free(b->config_text);
    free(b);
}
