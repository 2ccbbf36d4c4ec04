// client.c: the volunteer's link to the bridge (see client.h).
#include "bridge/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge/tls.h"
#include "models/codec.h"
#include "models/common.h"

#define IN_CAP ((size_t)8 << 20)  // bytes read ahead at most
#define HEARTBEAT_S 5.0
#define DOWNLOAD_WINDOW 8         // STATE_REQUESTs in flight
#define DATA_WINDOW 4             // DATA_REQUESTs in flight, of at most DATA_CHUNK bytes each:
#define DATA_CHUNK ((size_t)512 << 10)  // the bridge's BR_DATA_WINDOW_BYTES (2 MiB) in all
#define PACE_BURST_S 0.02          // --max-upload-rate: the bucket holds this many seconds ...
#define PACE_BURST_MIN 16384.0     // ... of the rate, and at least this many bytes

struct BrClient {
    int fd;
    BrTls *tls;            // NULL: plaintext
    BrClientOptions o;
    char host[256];
    BrWelcome welcome;
    uint8_t bridge_minor;  // the protocol minor of the bridge's WELCOME
    BrProtoDecoder dec;
    BrProtoLimits lim;
    uint8_t *in;           // read-ahead buffer [in_pos, in_len)
    size_t in_pos, in_len;
    uint8_t *frame;        // one encoded frame
    size_t frame_cap;
    double last_tx, last_rx;
    int error_code, bye_reason;
    char error_msg[4 * (BR_PROTO_MAX_MESSAGE_BYTES + 1)];  // the last ERROR's, escaped
    volatile int *interrupt;
    volatile int *soft_interrupt;  // not while a share is in flight (in_share)
    int in_share;                  // sync rounds: from a share's ROUND_OPEN to its result
    // --max-upload-rate: a token bucket on the bytes sent (bytes; refilled at
    // o.max_upload_rate per second up to PACE_BURST)
    double bucket, t_bucket;
    size_t tls_retry;              // a TLS write that would block is retried with >= this
    double connect_s;              // TCP connect time of this connection
    uint32_t probe_seq;            // the link check: the last PROBE's sequence number
    // replica
    uint64_t step, acked;
    const float *params;
    size_t n;
    const uint64_t *samples_seen;
    float *residual;       // error feedback of a lossy upload codec
    // output queue: frames are appended and sent as the socket takes them, so a DiLoCo
    // upload goes out while the next round computes (frames never interleave)
    uint8_t *out;
    size_t out_pos, out_len, out_cap;
    double t_up_start, up_bytes0;  // the upload being drained
    // diloco (br_client_outer_link)
    Diloco *dl;
    long dl_batch;
    float *dl_avg;         // a round's average being received
    BrRoundOpen opens[4];  // ROUND_OPENs read while waiting for a result
    int n_opens;
    double dl_sent0, dl_recv0;  // traffic counted so far
    // the round in progress
    uint64_t round, share_start, share_n;
    double t_plan;
    BrClientStats st;
};

static int failf(BrClient *c, char *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(BrClient *c, char *err, const char *fmt, ...) {
    char msg[CX_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cx_err(err, "bridge %s:%d: %s", c->host, c->o.port, msg);
}

// ---- raw I/O ----

// A wait is to stop: the interrupt flag, or the soft one while no share is in flight.
static int interrupted(const BrClient *c) {
    if (c->interrupt && *c->interrupt) return 1;
    return c->soft_interrupt && *c->soft_interrupt && !c->in_share;
}

// --max-upload-rate: bytes the bucket allows now (refilled since the last call). The bucket
// starts full; a send takes what it sent from it.
static double pace_allowance(BrClient *c) {
    double now = cx_now(), rate = c->o.max_upload_rate;
    double cap = rate * PACE_BURST_S > PACE_BURST_MIN ? rate * PACE_BURST_S : PACE_BURST_MIN;
    if (c->t_bucket == 0) c->bucket = cap;
    else c->bucket += (now - c->t_bucket) * rate;
    if (c->bucket > cap) c->bucket = cap;
    c->t_bucket = now;
    return c->bucket;
}

// The transport: TLS or the plain socket, never blocking. >0 bytes, 0 closed, -1 errno.
static ssize_t net_recv(BrClient *c, void *buf, size_t n) {
    return c->tls ? br_tls_read(c->tls, buf, n) : recv(c->fd, buf, n, MSG_DONTWAIT);
}
static ssize_t net_send(BrClient *c, const void *buf, size_t n) {
    return c->tls ? br_tls_write(c->tls, buf, n) : send(c->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}
static const char *net_error(BrClient *c) { return c->tls ? br_tls_error(c->tls) : strerror(errno); }
// Decrypted bytes waiting in TLS (poll on the socket does not see them).
static int net_pending(BrClient *c) { return c->tls && br_tls_pending(c->tls) > 0; }

// Reads what the socket has into the read-ahead buffer. Returns bytes read, 0 when nothing
// was available (or no space), -1 on EOF/error (err set).
static int read_some(BrClient *c, char *err) {
    if (c->in_pos > 0 && c->in_pos == c->in_len) c->in_pos = c->in_len = 0;
    if (c->in_len == IN_CAP && c->in_pos > 0) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    if (c->in_len == IN_CAP) return 0;
    ssize_t r = net_recv(c, c->in + c->in_len, IN_CAP - c->in_len);
    if (r > 0) {
        c->in_len += (size_t)r;
        c->st.bytes_recv += (double)r;
        c->last_rx = cx_now();
        // TLS hands over one record per call: take what is already decrypted too
        while (net_pending(c) && c->in_len < IN_CAP) {
            ssize_t more = net_recv(c, c->in + c->in_len, IN_CAP - c->in_len);
            if (more <= 0) break;
            c->in_len += (size_t)more;
            c->st.bytes_recv += (double)more;
            r += more;
        }
        return (int)r;
    }
    if (r == 0) return failf(c, err, "connection closed by the bridge");
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    return failf(c, err, "receive failed: %s", net_error(c));
}

// Sends queued output: until the queue is empty (block), or what the socket takes now.
// Reads ahead meanwhile (so neither side can deadlock on full buffers). 0, or -1 with err.
static int out_flush(BrClient *c, int block, char *err) {
    double t_last = cx_now();
    while (c->out_pos < c->out_len) {
        size_t want = c->out_len - c->out_pos;
        int paced = 0;  // the bucket, not the socket, holds the bytes back
        if (c->o.max_upload_rate > 0) {
            double allow = pace_allowance(c);
            if (allow < 0) allow = 0;  // (a TLS retry may have overdrawn it)
            size_t k = allow >= (double)want ? want : (size_t)allow;
            if (k < c->tls_retry) k = c->tls_retry < want ? c->tls_retry : want;  // TLS: same length again
            paced = k < want && k < 1024;  // wait for a useful amount
            want = k;
        }
        if (!paced) {
            ssize_t w = net_send(c, c->out + c->out_pos, want);
            c->tls_retry = 0;
            if (w > 0) {
                c->out_pos += (size_t)w;
                c->st.bytes_sent += (double)w;
                c->bucket -= (double)w;
                c->last_tx = t_last = cx_now();
                continue;
            }
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return failf(c, err, "send failed: %s", net_error(c));
            if (w < 0 && c->tls) c->tls_retry = want;
        } else {
            t_last = cx_now();  // held back on purpose: not a stalled link
        }
        if (!block) return 0;
        if (interrupted(c)) return cx_err(err, "interrupted");
        if (cx_now() - t_last > c->o.timeout_s)
            return failf(c, err, "no progress sending for %.0f s", c->o.timeout_s);
        int wait_ms = 200;
        if (paced) {  // until the bucket holds 1 KiB (or what is left)
            double need = (want < 1024 ? 1024.0 : (double)want) - c->bucket;
            wait_ms = (int)(need / c->o.max_upload_rate * 1000) + 1;
            if (wait_ms > 200) wait_ms = 200;
        }
        struct pollfd p = {.fd = c->fd, .events = (paced ? 0 : POLLOUT) | (c->in_len < IN_CAP ? POLLIN : 0)};
        int pr = poll(&p, 1, net_pending(c) ? 0 : wait_ms);
        if (net_pending(c) && c->in_len < IN_CAP) {
            pr = 1;
            p.revents |= POLLIN;
        }
        if (pr > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) && read_some(c, err) < 0) return -1;
    }
    if (c->out_len > 0) {  // drained: the last upload's time
        if (c->t_up_start > 0) {
            c->st.up_s = cx_now() - c->t_up_start;
            c->st.up_bytes = c->st.bytes_sent - c->up_bytes0;
            c->t_up_start = 0;
        }
        c->out_pos = c->out_len = 0;
    }
    return 0;
}

// Appends one encoded frame to the output queue.
static int out_frame(BrClient *c, const BrFrame *f, char *err) {
    size_t need = BR_PROTO_HEADER_BYTES + BR_PROTO_MAX_HELLO_BYTES + BR_PROTO_CHUNK_OVERHEAD;
    if (f->type == BR_MSG_GRAD_CHUNK) need += codec_encoded_bytes(f->m.grad_chunk.codec, f->m.grad_chunk.n_elems);
    if (f->type == BR_MSG_PROBE) need += f->m.probe.n_bytes;  // the link check
    if (c->out_cap - c->out_len < need) {
        if (c->out_pos > 0) {
            memmove(c->out, c->out + c->out_pos, c->out_len - c->out_pos);
            c->out_len -= c->out_pos;
            c->out_pos = 0;
        }
        if (c->out_cap - c->out_len < need) {
            size_t cap = c->out_cap ? c->out_cap : need;
            while (cap - c->out_len < need) cap *= 2;
            uint8_t *o = realloc(c->out, cap);
            if (!o) return failf(c, err, "out of memory for the output queue (%zu bytes)", cap);
            c->out = o;
            c->out_cap = cap;
        }
    }
    int len = br_proto_encode(c->out + c->out_len, c->out_cap - c->out_len, f, &c->lim, err);
    if (len < 0) return -1;
    c->out_len += (size_t)len;
    return 0;
}

// Sends one frame, after everything queued before it; returns once it is sent.
static int send_frame(BrClient *c, const BrFrame *f, char *err) {
    if (out_frame(c, f, err) != 0) return -1;
    return out_flush(c, 1, err);
}

static void maybe_heartbeat(BrClient *c) {
    if (cx_now() - c->last_tx < HEARTBEAT_S) return;
    BrFrame f = {.type = BR_MSG_HEARTBEAT};
    f.m.heartbeat.time_us = (uint64_t)(cx_now() * 1e6);
    char err[CX_ERRLEN];
    send_frame(c, &f, err);  // a failure shows up at the next read
}

// The next frame other than HEARTBEAT from the bytes already read: 1 (*f filled), 0 when
// they hold no whole frame, -1 with err (malformed; ERROR and BYE end the session).
static int buffered_frame(BrClient *c, BrFrame *f, char *err) {
    while (c->in_pos < c->in_len) {
        size_t used = 0;
        int st = br_proto_decoder_feed(&c->dec, c->in + c->in_pos, c->in_len - c->in_pos, &used, f);
        c->in_pos += used;
        if (st == BR_PROTO_ERROR)
            return failf(c, err, "malformed data: %s", br_proto_decoder_error(&c->dec));
        if (st == BR_PROTO_FRAME) {
            if (f->type == BR_MSG_HEARTBEAT) continue;
            if (f->type == BR_MSG_ERROR) {
                c->error_code = (int)f->m.error.code;
                cx_escape_controls(c->error_msg, sizeof c->error_msg, f->m.error.message);
                return failf(c, err, "error %u: %s", f->m.error.code, c->error_msg);
            }
            if (f->type == BR_MSG_BYE) {
                c->bye_reason = (int)f->m.bye.reason;
                return failf(c, err, "%s", f->m.bye.reason == BR_BYE_SHUTDOWN ? "the run ended (BYE)"
                                           : f->m.bye.reason == BR_BYE_RESTART
                                               ? "the bridge stops for a restart (BYE); reconnect later"
                                               : "the bridge said BYE");
            }
            return 1;
        }
    }
    c->in_pos = c->in_len = 0;
    return 0;
}

// Next frame other than HEARTBEAT. ERROR and BYE end the session (-1 with err).
static int next_frame(BrClient *c, BrFrame *f, char *err) {
    double t_wait = cx_now();
    for (;;) {
        int got = buffered_frame(c, f, err);
        if (got != 0) return got < 0 ? -1 : 0;
        if (interrupted(c)) return cx_err(err, "interrupted");
        if (cx_now() - t_wait > c->o.timeout_s)
            return failf(c, err, "nothing received for %.0f s", c->o.timeout_s);
        maybe_heartbeat(c);
        if (out_flush(c, 0, err) != 0) return -1;
        struct pollfd p = {.fd = c->fd, .events = POLLIN | (c->out_pos < c->out_len ? POLLOUT : 0)};
        int pr = poll(&p, 1, net_pending(c) ? 0 : 200);
        if (net_pending(c)) {
            pr = 1;
            p.revents |= POLLIN;
        }
        if (pr > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            int r = read_some(c, err);
            if (r < 0) return -1;
            if (r > 0) t_wait = cx_now();
        }
        if (c->out_pos < c->out_len) t_wait = cx_now();  // still sending: not silence
    }
}

// ---- connect ----

// TCP connect within timeout_s seconds. 0, or an errno value (ETIMEDOUT when no answer came).
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, double timeout_s) {
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int e = 0;
    if (connect(fd, sa, len) != 0) {
        e = errno;
        if (e == EINPROGRESS) {
            double t_end = cx_now() + timeout_s;
            for (;;) {
                double left = t_end - cx_now();
                if (left <= 0) {
                    e = ETIMEDOUT;
                    break;
                }
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                int pr = poll(&p, 1, (int)(left * 1000) + 1);
                if (pr < 0 && errno == EINTR) continue;
                if (pr <= 0) continue;
                socklen_t el = sizeof e;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
                break;
            }
        }
    }
    fcntl(fd, F_SETFL, flags);
    return e;
}

// The message and class of a failed HELLO: the bridge's ERROR (by its code), a frame of
// another protocol version, or the link.
static int hello_failure(BrClient *c, const char *why_in, char *err) {
    char why[CX_ERRLEN], msg[CX_ERRLEN];
    snprintf(why, sizeof why, "%s", why_in);  // (may be err itself)
    snprintf(msg, sizeof msg, "%.500s", c->error_msg);
    switch (c->error_code) {
    case BR_ERR_AUTH:
        cx_err(err, "the bridge refused the join token: %.600s (bridge %s:%d, error %d; ask the "
               "collaboration host for a valid token)", msg, c->host, c->o.port, c->error_code);
        return BR_CONNECT_AUTH;
    case BR_ERR_VERSION:
        cx_err(err, "the bridge refused this volunteer's protocol version: %.600s (bridge %s:%d, "
               "error %d; this conflux-volunteer speaks protocol %d.%d: install the version the "
               "collaboration host names)", msg, c->host, c->o.port, c->error_code,
               BR_PROTO_VERSION_MAJOR, BR_PROTO_VERSION_MINOR);
        return BR_CONNECT_VERSION;
    case BR_ERR_BUSY:
        cx_err(err, "the bridge is busy: %.600s (bridge %s:%d, error %d; retry later)", msg, c->host,
               c->o.port, c->error_code);
        return BR_CONNECT_BUSY;
    default:
        break;
    }
    const int major = br_proto_decoder_peer_major(&c->dec);
    if (major && !c->error_code) {
        cx_err(err, "the bridge speaks protocol version %d.x and this conflux-volunteer %d.%d "
               "(bridge %s:%d): install the conflux-volunteer version the collaboration host names",
               major, BR_PROTO_VERSION_MAJOR, BR_PROTO_VERSION_MINOR, c->host, c->o.port);
        return BR_CONNECT_VERSION;
    }
    // a TLS bridge drops a plaintext HELLO without a word it could send in plaintext
    if (!c->tls && c->error_code == 0 && c->bye_reason == 0 &&
        (strstr(why, "closed") || strstr(why, "malformed") || strstr(why, "receive failed"))) {
        cx_err(err, "%.300s (no WELCOME: the bridge probably requires TLS; join with "
               "HOST:PORT#sha256:FINGERPRINT, without --plaintext)", why);
        return BR_CONNECT_TLS;
    }
    snprintf(err, CX_ERRLEN, "%s", why);
    return BR_CONNECT_OTHER;
}

int br_client_connect(BrClient **out, const BrClientOptions *o, int *failure, char *err) {
    *out = NULL;
    int fail_class = BR_CONNECT_OTHER;
    BrClient *c = cx_calloc(1, sizeof *c);
    c->fd = -1;
    c->o = *o;
    if (c->o.timeout_s <= 0) c->o.timeout_s = 60;
    snprintf(c->host, sizeof c->host, "%s", o->host);
    c->lim = br_proto_limits_default();
    c->lim.max_chunk_bytes = BR_PROTO_MAX_CHUNK_BYTES;
    c->lim.accept_types = BR_MSG_BIT(BR_MSG_WELCOME) | BR_MSG_BIT(BR_MSG_STATE_CHUNK) |
                          BR_MSG_BIT(BR_MSG_DATA_CHUNK) |
                          BR_MSG_BIT(BR_MSG_ROUND_OPEN) | BR_MSG_BIT(BR_MSG_ROUND_CLOSE) |
                          BR_MSG_BIT(BR_MSG_AVG_CHUNK) | BR_MSG_BIT(BR_MSG_HEARTBEAT) |
                          BR_MSG_BIT(BR_MSG_ERROR) | BR_MSG_BIT(BR_MSG_BYE);
    c->lim.accept_types |= BR_MSG_BIT(BR_MSG_PROBE_ACK);  // the link check
    c->frame_cap = br_proto_max_frame_bytes(&c->lim);
    c->frame = malloc(c->frame_cap);
    c->in = malloc(IN_CAP);
    CHECK(c->frame && c->in, "out of memory");
    if (br_proto_decoder_init(&c->dec, &c->lim, err) != 0) goto fail;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gr = getaddrinfo(o->host, port, &hints, &ai);
    if (gr != 0) {
        cx_err(err, "cannot reach the bridge at %s:%d: cannot resolve %s: %s", c->host, o->port,
               c->host, gai_strerror(gr));
        fail_class = BR_CONNECT_UNREACHABLE;
        goto fail;
    }
    c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    // the volunteer sends the uploads: BBR keeps a lossy long-RTT uplink near its rate
    if (c->fd >= 0 && o->tcp_cc && o->tcp_cc[0] &&
        setsockopt(c->fd, IPPROTO_TCP, TCP_CONGESTION, o->tcp_cc, (socklen_t)strlen(o->tcp_cc)) != 0)
        fprintf(stderr, "conflux: TCP congestion control '%s' unavailable (%s); using the system "
                        "default\n", o->tcp_cc, strerror(errno));
    double t_conn = cx_now();
    double conn_timeout = o->connect_timeout_s > 0 ? o->connect_timeout_s : c->o.timeout_s;
    int ce = c->fd < 0 ? errno : connect_within(c->fd, ai->ai_addr, ai->ai_addrlen, conn_timeout);
    freeaddrinfo(ai);
    if (ce != 0) {
        fail_class = BR_CONNECT_UNREACHABLE;
        if (ce == ETIMEDOUT)
            cx_err(err, "cannot reach the bridge at %s:%d: no answer within %.0f s (connection timed "
                   "out: a wrong address, or a firewall dropping the connection)", c->host, o->port,
                   conn_timeout);
        else if (ce == ECONNREFUSED)
            cx_err(err, "cannot reach the bridge at %s:%d: connection refused (is the bridge running, "
                   "and are this its address and port?)", c->host, o->port);
        else
            cx_err(err, "cannot reach the bridge at %s:%d: %s", c->host, o->port, strerror(ce));
        goto fail;
    }
    c->connect_s = cx_now() - t_conn;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o->pin) {  // TLS 1.3 pinned to the bridge's certificate, before any secret is sent
        char tls_err[CX_ERRLEN];
        int pin_mismatch;
        c->tls = br_tls_client_start(c->fd, o->pin, c->o.timeout_s, &pin_mismatch, tls_err);
        if (!c->tls) {
            failf(c, err, "%s", tls_err);
            fail_class = pin_mismatch ? BR_CONNECT_PIN : BR_CONNECT_TLS;
            goto fail;
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    }
    c->last_rx = c->last_tx = cx_now();
    BrFrame f = {.type = BR_MSG_HELLO};
    BrHello *h = &f.m.hello;
    h->version_major = BR_PROTO_VERSION_MAJOR;
    h->version_minor = BR_PROTO_VERSION_MINOR;
    h->codecs = o->codecs ? o->codecs
                          : BR_CODEC_BIT(BR_CODEC_FP16) | BR_CODEC_BIT(BR_CODEC_FP32) | BR_CODEC_BIT(BR_CODEC_INT8);
    h->identity = o->identity;
    for (int i = 0; i < 16; i++) h->resume |= o->identity.bytes[i] != 0;
    snprintf(h->token, sizeof h->token, "%s", o->token ? o->token : "");
    snprintf(h->name, sizeof h->name, "%s", o->name ? o->name : "");
    if (send_frame(c, &f, err) != 0) goto fail;
    if (next_frame(c, &f, err) != 0) {
        fail_class = hello_failure(c, err, err);
        goto fail;
    }
    if (f.type != BR_MSG_WELCOME) {
        failf(c, err, "expected WELCOME, got %s", br_proto_type_name(f.type));
        goto fail;
    }
    c->welcome = f.m.welcome;
    c->bridge_minor = f.version_minor;
    c->n = (size_t)c->welcome.n_params;
    *out = c;
    if (failure) *failure = BR_CONNECT_OK;
    return 0;
fail:
    if (failure) *failure = fail_class;
    br_client_close(c);
    return -1;
}


const BrWelcome *br_client_welcome(const BrClient *c) { return &c->welcome; }
int br_client_bridge_minor(const BrClient *c) { return c->bridge_minor; }
int br_client_error_code(const BrClient *c) { return c->error_code; }
int br_client_bye_reason(const BrClient *c) { return c->bye_reason; }
const BrClientStats *br_client_stats(const BrClient *c) { return &c->st; }
void br_client_set_interrupt(BrClient *c, volatile int *flag) { c->interrupt = flag; }
void br_client_set_soft_interrupt(BrClient *c, volatile int *flag) { c->soft_interrupt = flag; }
double br_client_connect_seconds(const BrClient *c) { return c->connect_s; }

// ---- the link check ----

#define PROBE_CHUNK ((size_t)256 << 10)   // filler bytes per upload PROBE (at most)
#define PROBE_WINDOW ((size_t)4 << 20)    // filler bytes in flight at most

// Waits for the PROBE_ACK of seq; STATE_CHUNKs of a download probe are not expected here.
static int wait_probe_ack(BrClient *c, uint32_t seq, BrProbeAck *ack, char *err) {
    BrFrame f;
    for (;;) {
        if (next_frame(c, &f, err) != 0) return -1;
        if (f.type != BR_MSG_PROBE_ACK)
            return failf(c, err, "expected PROBE_ACK, got %s (a bridge without the link check?)",
                         br_proto_type_name(f.type));
        if (f.m.probe_ack.seq == seq) {
            *ack = f.m.probe_ack;
            return 0;
        }
        if (f.m.probe_ack.seq > seq)
            return failf(c, err, "PROBE_ACK %u while waiting for %u", f.m.probe_ack.seq, seq);
    }
}

int br_client_probe_rtt(BrClient *c, double *rtt_s, char *err) {
    BrFrame f = {.type = BR_MSG_PROBE};
    f.m.probe = (BrProbe){.seq = ++c->probe_seq, .n_bytes = 0};
    double t0 = cx_now();
    if (send_frame(c, &f, err) != 0) return -1;
    BrProbeAck ack;
    if (wait_probe_ack(c, f.m.probe.seq, &ack, err) != 0) return -1;
    *rtt_s = cx_now() - t0;
    return 0;
}

int br_client_probe_up(BrClient *c, double seconds, size_t max_bytes, double *bytes_per_s,
                       double *sent, char *err) {
    size_t chunk = c->welcome.max_chunk_bytes < PROBE_CHUNK ? c->welcome.max_chunk_bytes : PROBE_CHUNK;
    uint8_t *filler = cx_calloc(chunk, 1);
    for (size_t i = 0; i < chunk; i++) filler[i] = (uint8_t)(i * 2654435761u >> 24);  // not all zero
    uint32_t first = c->probe_seq + 1, next = first, acked = first - 1;
    size_t queued = 0, inflight = 0;
    BrProbeAck a0 = {0}, a1 = {0};
    double t0 = cx_now();
    int rc = 0;
    while (rc == 0) {
        int more = queued < max_bytes && (cx_now() - t0 < seconds || next - first < 3);
        if (more && inflight + chunk <= PROBE_WINDOW) {
            BrFrame f = {.type = BR_MSG_PROBE};
            f.m.probe = (BrProbe){.seq = next++, .n_bytes = (uint32_t)chunk, .data = filler};
            rc = out_frame(c, &f, err);
            if (rc == 0) rc = out_flush(c, 0, err);
            queued += chunk;
            inflight += chunk;
            continue;
        }
        if (acked + 1 == next) break;  // everything sent was acknowledged
        if (out_flush(c, 1, err) != 0) {
            rc = -1;
            break;
        }
        BrProbeAck ack;
        if (wait_probe_ack(c, acked + 1, &ack, err) != 0) {
            rc = -1;
            break;
        }
        acked++;
        inflight -= chunk;
        if (acked == first) a0 = ack;
        a1 = ack;
    }
    free(filler);
    c->probe_seq = next - 1;
    if (rc != 0) return -1;
    double dt = (double)(a1.elapsed_us - a0.elapsed_us) / 1e6;
    if (a1.bytes <= a0.bytes || dt <= 0) return failf(c, err, "the upload probe took no measurable time");
    *bytes_per_s = (double)(a1.bytes - a0.bytes) / dt;
    *sent = (double)queued;
    return 0;
}

int br_client_probe_down(BrClient *c, double seconds, size_t max_bytes, double *bytes_per_s,
                         double *received, uint8_t *head, size_t head_cap, size_t *head_have,
                         char *err) {
    size_t total = (size_t)c->welcome.state_bytes;
    size_t chunk = c->welcome.max_chunk_bytes < PROBE_CHUNK ? c->welcome.max_chunk_bytes : PROBE_CHUNK;
    if (total == 0) return failf(c, err, "the bridge offers an empty state");
    size_t next = 0, requested = 0, got = 0, inflight = 0;
    double t0 = cx_now(), t_first = 0, b_first = 0, t_last = 0;
    *head_have = 0;
    for (;;) {
        int more = requested < max_bytes && (cx_now() - t0 < seconds || requested < 3 * chunk);
        if (more && inflight < (size_t)DOWNLOAD_WINDOW * chunk) {
            size_t k = total - next < chunk ? total - next : chunk;
            BrFrame f = {.type = BR_MSG_STATE_REQUEST};
            f.m.state_request = (BrStateRequest){.offset = next, .n_bytes = (uint32_t)k};
            if (send_frame(c, &f, err) != 0) return -1;
            next = next + k == total ? 0 : next + k;
            requested += k;
            inflight += k;
            continue;
        }
        if (inflight == 0) break;
        BrFrame f;
        if (next_frame(c, &f, err) != 0) return -1;
        if (f.type != BR_MSG_STATE_CHUNK)
            return failf(c, err, "%s during the download probe", br_proto_type_name(f.type));
        const BrStateChunk *sc = &f.m.state_chunk;
        if (sc->n_bytes == 0 || sc->n_bytes > inflight)
            return failf(c, err, "state chunk of %u bytes, %zu requested", sc->n_bytes, inflight);
        if (head && sc->offset < head_cap && sc->offset == *head_have) {
            size_t k = head_cap - sc->offset < sc->n_bytes ? head_cap - sc->offset : sc->n_bytes;
            memcpy(head + sc->offset, sc->data, k);
            *head_have += k;
        }
        inflight -= sc->n_bytes;
        got += sc->n_bytes;
        t_last = cx_now();
        if (t_first == 0) {
            t_first = t_last;
            b_first = (double)got;
        }
    }
    *received = (double)got;
    if (t_last <= t_first || (double)got <= b_first)
        return failf(c, err, "the download probe took no measurable time (state of %zu bytes)", total);
    *bytes_per_s = ((double)got - b_first) / (t_last - t_first);
    return 0;
}

// ---- end of the link check ----

// ---- state download ----

int br_client_download(BrClient *c, uint8_t *buf, size_t *have,
                       void (*progress)(void *ctx, size_t have, size_t total), void *ctx,
                       char *err) {
    size_t total = (size_t)c->welcome.state_bytes, next = *have;
    size_t chunk = c->welcome.max_chunk_bytes < (1u << 20) ? c->welcome.max_chunk_bytes : (1u << 20);
    int inflight = 0;
    while (*have < total) {
        while (inflight < DOWNLOAD_WINDOW && next < total) {
            BrFrame f = {.type = BR_MSG_STATE_REQUEST};
            size_t k = total - next < chunk ? total - next : chunk;
            f.m.state_request = (BrStateRequest){.offset = next, .n_bytes = (uint32_t)k};
            if (send_frame(c, &f, err) != 0) return -1;
            next += k;
            inflight++;
        }
        BrFrame f;
        if (next_frame(c, &f, err) != 0) return -1;
        if (f.type == BR_MSG_ROUND_OPEN || f.type == BR_MSG_ROUND_CLOSE || f.type == BR_MSG_AVG_CHUNK)
            return failf(c, err, "%s during the state download", br_proto_type_name(f.type));
        if (f.type != BR_MSG_STATE_CHUNK) continue;
        const BrStateChunk *s = &f.m.state_chunk;
        if (s->offset != *have || s->total_bytes != total || s->n_bytes == 0)
            return failf(c, err, "state chunk at %llu (+%u of %llu), expected offset %zu of %zu",
                         (unsigned long long)s->offset, s->n_bytes,
                         (unsigned long long)s->total_bytes, *have, total);
        memcpy(buf + *have, s->data, s->n_bytes);
        *have += s->n_bytes;
        inflight--;
        if (progress) progress(ctx, *have, total);
    }
    return 0;
}

// ---- training data download ----

int br_client_download_data(BrClient *c, uint64_t *have, double rate_limit,
                            int (*sink)(void *ctx, const uint8_t *data, size_t n, char *err),
                            void *sink_ctx,
                            void (*progress)(void *ctx, uint64_t have, uint64_t total), void *ctx,
                            char *err) {
    if (c->bridge_minor < 1 || c->welcome.data_bytes == 0)
        return failf(c, err, "the bridge (protocol %d.%d) does not serve the training data; give a "
                     "local copy of the run's shard with --set data.train=PATH", BR_PROTO_VERSION_MAJOR,
                     c->bridge_minor);
    uint64_t total = c->welcome.data_bytes, next = *have;
    if (next > total) return failf(c, err, "%llu bytes of data held, the run's data has %llu",
                                   (unsigned long long)next, (unsigned long long)total);
    size_t chunk = c->welcome.max_chunk_bytes < DATA_CHUNK ? c->welcome.max_chunk_bytes : DATA_CHUNK;
    // a rate limit paces the requests: chunks of a quarter second's worth at most
    if (rate_limit > 0 && (double)chunk > rate_limit / 4)
        chunk = rate_limit / 4 > BR_PROTO_MIN_CHUNK_BYTES ? (size_t)(rate_limit / 4) : BR_PROTO_MIN_CHUNK_BYTES;
    double t0 = cx_now();
    uint64_t have0 = *have;
    int inflight = 0;
    while (*have < total) {
        while (inflight < DATA_WINDOW && next < total) {
            if (rate_limit > 0) {  // not more than rate_limit bytes per second requested
                double due = t0 + (double)(next - have0) / rate_limit;
                if (inflight > 0 && cx_now() < due) break;  // read what is in flight meanwhile
                while (cx_now() < due) {
                    if (c->interrupt && *c->interrupt) return cx_err(err, "interrupted");
                    usleep(20000);
                    maybe_heartbeat(c);
                }
            }
            BrFrame f = {.type = BR_MSG_DATA_REQUEST};
            size_t k = total - next < chunk ? (size_t)(total - next) : chunk;
            f.m.data_request = (BrDataRequest){.offset = next, .n_bytes = (uint32_t)k};
            if (send_frame(c, &f, err) != 0) return -1;
            next += k;
            inflight++;
        }
        BrFrame f;
        if (next_frame(c, &f, err) != 0) return -1;
        if (f.type != BR_MSG_DATA_CHUNK)
            return failf(c, err, "%s during the training data download", br_proto_type_name(f.type));
        const BrDataChunk *s = &f.m.data_chunk;
        if (s->offset != *have || s->total_bytes != total || s->n_bytes == 0)
            return failf(c, err, "data chunk at %llu (+%u of %llu), expected offset %llu of %llu",
                         (unsigned long long)s->offset, s->n_bytes,
                         (unsigned long long)s->total_bytes, (unsigned long long)*have,
                         (unsigned long long)total);
        if (sink(sink_ctx, s->data, s->n_bytes, err) != 0) return -1;
        *have += s->n_bytes;
        inflight--;
        if (progress) progress(ctx, *have, total);
    }
    return 0;
}

int br_client_start(BrClient *c, uint64_t step, const float *params, size_t n,
                    const uint64_t *samples_seen, char *err) {
    if (n != c->n) return failf(c, err, "the model has %zu parameters, the run %zu", n, c->n);
    c->params = params;
    c->samples_seen = samples_seen;
    c->step = step;
    if (!c->residual) c->residual = cx_calloc(n, sizeof(float));
    BrFrame f = {.type = BR_MSG_PROGRESS};
    f.m.progress = (BrProgress){.step = step, .samples = 0};
    if (send_frame(c, &f, err) != 0) return -1;
    c->acked = step;
    return 0;
}

// ---- the Averager ----

static int client_plan(void *ctx, long G, long *lo, long *hi, char *err) {
    BrClient *c = ctx;
    if (c->acked != c->step) {  // "I applied the last step": the bridge may give me a share
        BrFrame p = {.type = BR_MSG_PROGRESS};
        p.m.progress = (BrProgress){.step = c->step, .samples = 0};
        if (send_frame(c, &p, err) != 0) return -1;
        c->acked = c->step;
    }
    BrFrame f;
    for (;;) {
        if (next_frame(c, &f, err) != 0) return -1;
        if (f.type == BR_MSG_ROUND_OPEN) break;
        return failf(c, err, "expected ROUND_OPEN for step %llu, got %s",
                     (unsigned long long)(c->step + 1), br_proto_type_name(f.type));
    }
    const BrRoundOpen *r = &f.m.round_open;
    if (r->round_id != c->step + 1) {
        c->error_code = BR_ERR_STATE;
        return failf(c, err, "round %llu opened but this replica is at step %llu",
                     (unsigned long long)r->round_id, (unsigned long long)c->step);
    }
    uint64_t h = cx_checksum(c->params, c->n);
    if (h != r->params_hash) {
        c->error_code = BR_ERR_STATE;
        return failf(c, err, "replica differs from the bridge's at step %llu (hash %016llx, "
                     "bridge %016llx)", (unsigned long long)c->step, (unsigned long long)h,
                     (unsigned long long)r->params_hash);
    }
    if ((long)r->target_samples != G)
        return failf(c, err, "round of %llu samples, but the configured global batch is %ld",
                     (unsigned long long)r->target_samples, G);
    c->round = r->round_id;
    c->share_n = r->n_samples;
    c->share_start = r->sample_start;
    c->in_share = r->n_samples > 0;  // a soft interrupt lets this round end first
    *lo = *hi = 0;
    if (r->n_samples > 0) {
        uint64_t s0 = *c->samples_seen;
        if (r->sample_start < s0 || r->sample_start - s0 + r->n_samples > (uint64_t)G)
            return failf(c, err, "share [%llu, +%llu) lies outside this step's samples [%llu, +%ld)",
                         (unsigned long long)r->sample_start, (unsigned long long)r->n_samples,
                         (unsigned long long)s0, G);
        *lo = (long)(r->sample_start - s0);
        *hi = *lo + (long)r->n_samples;
    }
    c->t_plan = cx_now();
    return 0;
}

// Elements per upload chunk: about 256 KiB of payload (small enough to pipeline, large
// enough that the 76 bytes of framing per chunk cost 0.03%), a multiple of 1024 elements.
static size_t client_chunk_elems(const BrClient *c, int codec) {
    size_t cap = c->welcome.max_chunk_bytes < (1u << 18) ? c->welcome.max_chunk_bytes : (1u << 18);
    size_t per = codec_chunk_elems(codec, cap);
    return per > 0 ? per : codec_chunk_align(codec);  // tiny limits: one block (proto rejects it)
}

static int upload(BrClient *c, const float *grads, const double *stats, char *err) {
    int codec = c->welcome.codec;
    const Codec *k_codec = codec_find(codec);  // the negotiated codec (checked in WELCOME)
    size_t per = client_chunk_elems(c, codec);
    uint8_t *tmp = malloc(codec_encoded_bytes(codec, per));
    CHECK(tmp, "out of memory");
    double t0 = cx_now();
    double b0 = c->st.bytes_sent;
    int rc = 0;
    for (size_t off = 0; off < c->n && rc == 0; off += per) {
        size_t k = c->n - off < per ? c->n - off : per;
        if (k_codec->encode_ef) k_codec->encode_ef(tmp, grads + off, c->residual + off, k);
        else k_codec->encode(tmp, grads + off, k);
        BrFrame f = {.type = BR_MSG_GRAD_CHUNK};
        f.m.grad_chunk = (BrGradChunk){.round_id = c->round, .offset = off, .samples = c->share_n,
                                       .tokens = (uint64_t)stats[STAT_TOKENS],
                                       .loss_sum = stats[STAT_LOSS_SUM],
                                       .aux_sum = stats[STAT_AUX_SUM], .n_elems = (uint32_t)k,
                                       .codec = (uint8_t)codec, .data = tmp};
        rc = send_frame(c, &f, err);
    }
    free(tmp);
    c->st.up_s = cx_now() - t0;
    c->st.up_bytes = c->st.bytes_sent - b0;
    return rc;
}

static int client_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    BrClient *c = ctx;
    if (n != c->n || n_stats != STAT_COUNT) return failf(c, err, "gradient arena mismatch");
    if (c->share_n > 0) {
        c->st.compute_s = cx_now() - c->t_plan;
        if (upload(c, grads, stats, err) != 0) return -1;
        c->st.shares++;
        c->st.samples += c->share_n;
    }
    BrFrame f;
    if (next_frame(c, &f, err) != 0) return -1;
    double t0 = cx_now(), b0 = c->st.bytes_recv, t_first = t0, b_first = b0;
    if (f.type != BR_MSG_ROUND_CLOSE || f.m.round_close.round_id != c->round)
        return failf(c, err, "expected ROUND_CLOSE for round %llu, got %s",
                     (unsigned long long)c->round, br_proto_type_name(f.type));
    const BrRoundClose rc = f.m.round_close;
    c->st.accepted += rc.accepted_samples;
    size_t got = 0;
    while (got < n) {
        if (next_frame(c, &f, err) != 0) return -1;
        if (f.type != BR_MSG_AVG_CHUNK)
            return failf(c, err, "expected AVG_CHUNK, got %s", br_proto_type_name(f.type));
        const BrAvgChunk *a = &f.m.avg_chunk;
        if (a->round_id != c->round || a->offset != got || a->offset + a->n_elems > n ||
            a->codec != BR_CODEC_FP32)
            return failf(c, err, "AVG_CHUNK round %llu [%llu, +%u) codec %d; expected round %llu "
                         "at %zu in fp32", (unsigned long long)a->round_id,
                         (unsigned long long)a->offset, a->n_elems, a->codec,
                         (unsigned long long)c->round, got);
        codec_fp32_decode(grads + got, a->data, a->n_elems);
        if (got == 0) {
            t_first = cx_now();
            b_first = c->st.bytes_recv - (double)(c->in_len - c->in_pos);
        }
        got += a->n_elems;
    }
    c->st.down_s = cx_now() - t0;
    c->st.down_steady_s = cx_now() - t_first;
    c->st.down_steady_bytes = c->st.bytes_recv - (double)(c->in_len - c->in_pos) - b_first;
    c->st.down_bytes = c->st.bytes_recv - b0;
    stats[STAT_LOSS_SUM] = rc.loss_sum;
    stats[STAT_TOKENS] = (double)rc.tokens;
    stats[STAT_SAMPLES] = (double)rc.samples;
    stats[STAT_AUX_SUM] = rc.aux_sum;
    stats[STAT_PARTICIPANTS] = (double)rc.participants;
    c->step++;
    c->st.rounds++;
    c->st.round_s = cx_now() - c->t_plan;
    c->in_share = 0;
    return 0;
}

Averager br_client_averager(BrClient *c) {
    return (Averager){.ctx = c, .sum = client_sum, .plan = client_plan, .plan_ctx = c,
                      .progress = br_client_pump, .rank = 0, .n_ranks = 1};
}

void br_client_pump(void *ctx) {
    BrClient *c = ctx;
    char err[CX_ERRLEN];
    read_some(c, err);
    out_flush(c, 0, err);  // a failure shows up at the next blocking call
    maybe_heartbeat(c);
}

// ---- diloco: the volunteer as one worker (models/diloco.h) ----

// Reads round r's result after its ROUND_CLOSE: the AVG_CHUNKs, decoded, then delivered.
static int dl_read_result(BrClient *c, const BrRoundClose *rc, char *err) {
    Diloco *d = c->dl;
    if ((long)rc->round_id != d->applied + 1)
        return failf(c, err, "ROUND_CLOSE for outer round %llu, but this replica applied %ld",
                     (unsigned long long)rc->round_id, d->applied);
    double t0 = cx_now(), b0 = c->st.bytes_recv;
    size_t got = 0;
    BrFrame f;
    while (got < c->n) {
        if (next_frame(c, &f, err) != 0) return -1;
        if (f.type != BR_MSG_AVG_CHUNK)
            return failf(c, err, "expected AVG_CHUNK, got %s", br_proto_type_name(f.type));
        const BrAvgChunk *a = &f.m.avg_chunk;
        if (a->round_id != rc->round_id || a->offset != got || a->offset + a->n_elems > c->n ||
            a->codec != (uint8_t)d->cfg.down_codec)
            return failf(c, err, "AVG_CHUNK round %llu [%llu, +%u) codec %d; expected round %llu at %zu "
                         "in codec %d", (unsigned long long)a->round_id, (unsigned long long)a->offset,
                         a->n_elems, a->codec, (unsigned long long)rc->round_id, got, d->cfg.down_codec);
        codec_find(a->codec)->decode(c->dl_avg + got, a->data, a->n_elems);
        got += a->n_elems;
    }
    size_t bad;
    if (!codec_check_finite(c->dl_avg, c->n, &bad))
        return failf(c, err, "outer round %llu: average element %zu is not finite",
                     (unsigned long long)rc->round_id, bad);
    double stats[STAT_COUNT] = {0};
    stats[STAT_LOSS_SUM] = rc->loss_sum;
    stats[STAT_TOKENS] = (double)rc->tokens;
    stats[STAT_SAMPLES] = (double)rc->samples;
    stats[STAT_AUX_SUM] = rc->aux_sum;
    stats[STAT_PARTICIPANTS] = (double)rc->participants;
    diloco_deliver(d, (long)rc->round_id, c->dl_avg, stats);
    c->st.accepted += rc->accepted_samples;
    c->st.rounds++;
    c->st.down_s = cx_now() - t0;
    c->st.down_bytes = c->st.bytes_recv - b0;
    c->step = (uint64_t)d->applied;
    return 0;
}

// Reads the next frame of the round stream: a result is applied at once (rounds in
// order), a ROUND_OPEN checked against the outer parameters and queued.
static int dl_read(BrClient *c, char *err) {
    BrFrame f;
    if (next_frame(c, &f, err) != 0) return -1;
    if (f.type == BR_MSG_ROUND_CLOSE) return dl_read_result(c, &f.m.round_close, err);
    if (f.type != BR_MSG_ROUND_OPEN)
        return failf(c, err, "expected ROUND_OPEN or ROUND_CLOSE, got %s", br_proto_type_name(f.type));
    const BrRoundOpen *r = &f.m.round_open;
    uint64_t h = cx_checksum(c->dl->theta, c->n);
    if (h != r->params_hash) {
        c->error_code = BR_ERR_STATE;
        return failf(c, err, "outer parameters differ from the bridge's after round %ld (hash %016llx, "
                     "bridge %016llx)", c->dl->applied, (unsigned long long)h,
                     (unsigned long long)r->params_hash);
    }
    if (r->n_samples == 0) return 0;
    if (r->n_samples % (uint64_t)c->dl_batch)
        return failf(c, err, "outer round %llu: a share of %llu samples is not whole inner steps of %ld",
                     (unsigned long long)r->round_id, (unsigned long long)r->n_samples, c->dl_batch);
    if (c->n_opens == 4) return failf(c, err, "more than 4 rounds opened ahead of this volunteer");
    c->opens[c->n_opens++] = *r;
    return 0;
}

static int dl_assign(void *ctx, long *round, uint64_t *start, long *steps, char *err) {
    BrClient *c = ctx;
    while (c->n_opens == 0)
        if (dl_read(c, err) != 0) return -1;
    BrRoundOpen r = c->opens[0];
    memmove(c->opens, c->opens + 1, (size_t)(--c->n_opens) * sizeof *c->opens);
    *round = (long)r.round_id;
    *start = r.sample_start;
    *steps = (long)(r.n_samples / (uint64_t)c->dl_batch);
    c->round = r.round_id;
    c->share_n = r.n_samples;
    c->t_plan = cx_now();
    return 0;
}

static int dl_post(void *ctx, long round, const float *delta, size_t n, const double *stats, char *err) {
    BrClient *c = ctx;
    if (n != c->n) return failf(c, err, "pseudo-gradient of %zu elements, the run has %zu", n, c->n);
    int codec = c->welcome.codec;
    const Codec *k_codec = codec_find(codec);
    size_t per = client_chunk_elems(c, codec);
    uint8_t *tmp = malloc(codec_encoded_bytes(codec, per));
    CHECK(tmp, "out of memory");
    c->st.compute_s = cx_now() - c->t_plan;
    if (c->out_pos == c->out_len) {
        c->t_up_start = cx_now();
        c->up_bytes0 = c->st.bytes_sent;
    }
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += per) {
        size_t k = n - off < per ? n - off : per;
        if (k_codec->encode_ef) k_codec->encode_ef(tmp, delta + off, c->residual + off, k);
        else k_codec->encode(tmp, delta + off, k);
        BrFrame f = {.type = BR_MSG_GRAD_CHUNK};
        f.m.grad_chunk = (BrGradChunk){.round_id = (uint64_t)round, .offset = off, .samples = c->share_n,
                                       .tokens = (uint64_t)stats[STAT_TOKENS],
                                       .loss_sum = stats[STAT_LOSS_SUM], .aux_sum = stats[STAT_AUX_SUM],
                                       .n_elems = (uint32_t)k, .codec = (uint8_t)codec, .data = tmp};
        rc = out_frame(c, &f, err);
    }
    free(tmp);
    if (rc != 0) return -1;
    BrFrame p = {.type = BR_MSG_PROGRESS};
    p.m.progress = (BrProgress){.step = (uint64_t)c->dl->applied, .samples = c->share_n};
    if (out_frame(c, &p, err) != 0) return -1;
    c->st.shares++;
    c->st.samples += c->share_n;
    return out_flush(c, 0, err);  // the rest goes out while the next round computes
}

static int dl_wait(void *ctx, long round, char *err) {
    BrClient *c = ctx;
    while (c->dl->applied < round)
        if (dl_read(c, err) != 0) return -1;
    c->st.round_s = cx_now() - c->t_plan;
    return 0;
}

static void dl_traffic(void *ctx, double *sent, double *recv) {
    BrClient *c = ctx;
    *sent = c->st.bytes_sent - c->dl_sent0;
    *recv = c->st.bytes_recv - c->dl_recv0;
    c->dl_sent0 = c->st.bytes_sent;
    c->dl_recv0 = c->st.bytes_recv;
}

OuterLink br_client_outer_link(BrClient *c, Diloco *d, long global_batch) {
    c->dl = d;
    c->dl_batch = global_batch;
    if (!c->dl_avg) c->dl_avg = cx_calloc(c->n, sizeof(float));
    return (OuterLink){.ctx = c, .assign = dl_assign, .post = dl_post, .wait = dl_wait,
                       .progress = br_client_pump, .traffic = dl_traffic};
}

void br_client_close(BrClient *c) {
    if (!c) return;
    br_tls_close(c->tls);
    if (c->fd >= 0) close(c->fd);
    br_proto_decoder_free(&c->dec);
    free(c->in);
    free(c->frame);
    free(c->residual);
    free(c->out);
    free(c->dl_avg);
    free(c);
}

void br_client_leave(BrClient *c) {
    if (!c) return;
    BrFrame f = {.type = BR_MSG_BYE};
    f.m.bye.reason = BR_BYE_LEAVING;
    char err[CX_ERRLEN];
    c->o.timeout_s = 2;
    send_frame(c, &f, err);
    br_client_close(c);
}
