// tool_flood: many-connection attacks on a running bridge, for tests/integration/
// test_bridge_limits.sh. It opens the connections, plays one attack for HOLD seconds, and
// prints what the bridge answered: connections welcomed, closed, and each distinct ERROR
// message with its count. Exit 0 when the attack was carried out (the test judges the
// answers), 2 on a usage or connection failure.
//
// usage: tool_flood HOST:PORT[#sha256:HEX] MODE N HOLD_S [TOKENS]
//   (TOKENS: a comma list, used in turn; with the bridge's fingerprint every connection
//   speaks pinned TLS first, as volunteers do; without, plaintext: a --plaintext bridge or
//   the status page)
//   statereq  N connections say HELLO, then send 160 STATE_REQUESTs of 1 MiB each and never
//             read (the bridge must not queue 160 MiB per connection)
//   park      N connections say HELLO, request 64 KiB of the state, read it, then only send
//             heartbeats (parked downloads: each pins a snapshot until its deadline)
//   tokencap  N connections say HELLO with the same token and stay (heartbeats)
//   hellobye  N connections one after another: HELLO, WELCOME, BYE, close
//   preauth   N connections send HEARTBEATs and never HELLO
//   idle      N connections open and send nothing (the status page port)
// All socket I/O is in conn_open, conn_write, conn_read and conn_close.
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge/proto.h"
#include "bridge/tls.h"
#include "models/common.h"
#include "models/train.h"

#define MAX_CONNS 4096
#define MAX_MSGS 16

typedef struct {
    int fd, welcomed, closed;
    BrTls *tls;  // NULL: plaintext
    BrProtoDecoder dec;
    uint64_t state_bytes;
} FConn;

static FConn conns[MAX_CONNS];
static char host[256], port[16], pin[BR_TLS_FP_CHARS + 1];  // pin "": plaintext
static BrProtoLimits lim;
static uint8_t frame[(1u << 20) + 256];
// distinct ERROR messages and their counts
static char msgs[MAX_MSGS][BR_PROTO_MAX_MESSAGE_BYTES + 1];
static int msg_count[MAX_MSGS], n_msgs;

static void die(const char *msg) {
    fprintf(stderr, "tool_flood: %s\n", msg);
    exit(2);
}

// ---- the three socket helpers ----

// Connects to host:port (from the address in FLOOD_SRC when set, e.g. 127.0.0.2) within
// 2 s; the socket is non-blocking afterwards; with a pin, the TLS handshake (5 s at most).
// 0, or -1 on failure (nothing left open).
static int conn_open(FConn *c) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = fd >= 0;
    const char *src = getenv("FLOOD_SRC");
    if (ok && src) {
        struct sockaddr_in sin = {.sin_family = AF_INET};
        ok = inet_pton(AF_INET, src, &sin.sin_addr) == 1 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
    }
    if (ok) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            struct pollfd q = {.fd = fd, .events = POLLOUT};
            int e = 0;
            socklen_t len = sizeof e;
            ok = errno == EINPROGRESS && poll(&q, 1, 2000) == 1 &&
                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0;
        }
    }
    freeaddrinfo(ai);
    char err[CX_ERRLEN];
    if (ok && pin[0] && !(c->tls = br_tls_client_start(fd, pin, 5, NULL, err))) ok = 0;
    if (!ok && fd >= 0) close(fd);
    c->fd = ok ? fd : -1;
    return ok ? 0 : -1;
}

static void conn_close(FConn *c) {
    if (c->tls) br_tls_close(c->tls);
    c->tls = NULL;
    close(c->fd);
}


// Writes all n bytes (waiting up to 5 s for room). 0, or -1 when the bridge closed.
static int conn_write(FConn *c, const void *p, size_t n) {
    const uint8_t *b = p;
    double t0 = cx_now();
    while (n > 0) {
        ssize_t w = c->tls ? br_tls_write(c->tls, b, n) : send(c->fd, b, n, MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && cx_now() - t0 < 5) {
            struct pollfd q = {.fd = c->fd, .events = POLLOUT};
            poll(&q, 1, 100);
            continue;
        }
        return -1;
    }
    return 0;
}

// Reads what is there: bytes read, 0 at the bridge's close, -1 when nothing is waiting.
static ssize_t conn_read(FConn *c, uint8_t *buf, size_t cap) {
    ssize_t r = c->tls ? br_tls_read(c->tls, buf, cap) : recv(c->fd, buf, cap, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
    return r < 0 ? 0 : r;
}

// ---- frames ----

static int send_frame(FConn *c, const BrFrame *f) {
    char err[CX_ERRLEN];
    int len = br_proto_encode(frame, sizeof frame, f, &lim, err);
    if (len < 0) die(err);
    return conn_write(c, frame, (size_t)len);
}

static void note_error(const char *m) {
    for (int i = 0; i < n_msgs; i++)
        if (!strcmp(msgs[i], m)) {
            msg_count[i]++;
            return;
        }
    if (n_msgs < MAX_MSGS) {
        snprintf(msgs[n_msgs], sizeof msgs[n_msgs], "%s", m);
        msg_count[n_msgs++] = 1;
    }
}

// Reads and decodes what c has waiting; WELCOME and ERROR are noted. Returns the number of
// STATE_CHUNK bytes received.
static size_t drain(FConn *c) {
    static uint8_t buf[1 << 16];
    size_t state = 0;
    while (!c->closed) {
        ssize_t r = conn_read(c, buf, sizeof buf);
        if (r < 0) break;
        if (r == 0) {
            c->closed = 1;
            conn_close(c);
            break;
        }
        size_t pos = 0;
        while (pos < (size_t)r) {
            size_t used;
            BrFrame f;
            int st = br_proto_decoder_feed(&c->dec, buf + pos, (size_t)r - pos, &used, &f);
            pos += used;
            if (st == BR_PROTO_ERROR) die(br_proto_decoder_error(&c->dec));
            if (st != BR_PROTO_FRAME) continue;
            if (f.type == BR_MSG_WELCOME) {
                c->welcomed = 1;
                c->state_bytes = f.m.welcome.state_bytes;
            } else if (f.type == BR_MSG_ERROR) {
                note_error(f.m.error.message);
            } else if (f.type == BR_MSG_STATE_CHUNK) {
                state += f.m.state_chunk.n_bytes;
            }
        }
    }
    return state;
}

static void hello(FConn *c, const char *token) {
    BrFrame f = {.type = BR_MSG_HELLO};
    f.m.hello.version_major = BR_PROTO_VERSION_MAJOR;
    f.m.hello.codecs = BR_CODEC_BIT(BR_CODEC_FP32);
    snprintf(f.m.hello.token, sizeof f.m.hello.token, "%s", token);
    snprintf(f.m.hello.name, sizeof f.m.hello.name, "flood");
    send_frame(c, &f);
}

static void heartbeat(FConn *c) {
    BrFrame f = {.type = BR_MSG_HEARTBEAT};
    f.m.heartbeat.time_us = (uint64_t)(cx_now() * 1e6);
    send_frame(c, &f);
}

// Waits up to timeout_s for c's WELCOME (or its close). 1 welcomed, 0 not.
static int await_welcome(FConn *c, double timeout_s) {
    double t0 = cx_now();
    while (!c->welcomed && !c->closed && cx_now() - t0 < timeout_s) {
        struct pollfd q = {.fd = c->fd, .events = POLLIN};
        poll(&q, 1, 50);
        drain(c);
    }
    return c->welcomed;
}

static FConn *open_one(int i) {
    FConn *c = &conns[i];
    if (conn_open(c) != 0) return NULL;
    char err[CX_ERRLEN];
    if (br_proto_decoder_init(&c->dec, &lim, err) != 0) die(err);
    return c;
}

// The token for connection i: TOKENS is a comma list used in turn.
static const char *token_for(const char *tokens, int i, char *out, size_t cap) {
    int n = 1;
    for (const char *p = tokens; *p; p++) n += *p == ',';
    const char *p = tokens;
    for (int k = i % n; k > 0; k--) p = strchr(p, ',') + 1;
    size_t len = strcspn(p, ",");
    snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), p);
    return out;
}

// Holds the open connections for hold_s seconds: reads (read=1) and sends heartbeats
// (beat=1) once a second; stops early when every connection is closed.
static void hold(int n, double hold_s, int read, int beat) {
    double t0 = cx_now(), t_beat = 0;
    while (cx_now() - t0 < hold_s) {
        int open = 0;
        for (int i = 0; i < n; i++) {
            FConn *c = &conns[i];
            if (c->fd < 0 || c->closed) continue;
            open++;
            if (read) drain(c);
            if (beat && cx_now() - t_beat > 1 && !c->closed) heartbeat(c);
        }
        if (beat && cx_now() - t_beat > 1) t_beat = cx_now();
        if (!open) break;
        usleep(20000);
    }
}

static void report(const char *mode, int n) {
    int opened = 0, welcomed = 0, closed = 0;
    for (int i = 0; i < n; i++) {
        opened += conns[i].fd >= 0 || conns[i].closed;
        welcomed += conns[i].welcomed;
        closed += conns[i].closed;
    }
    printf("%s: %d connections opened of %d; welcomed %d; closed by the bridge %d\n", mode, opened,
           n, welcomed, closed);
    for (int i = 0; i < n_msgs; i++) printf("error x%d: %s\n", msg_count[i], msgs[i]);
}

int main(int argc, char **argv) {
    if (argc < 5) die("usage: tool_flood HOST:PORT MODE N HOLD_S [TOKENS]");
    char addr[300];
    const char *hash = strchr(argv[1], '#');
    snprintf(addr, sizeof addr, "%.*s", (int)(hash ? hash - argv[1] : (long)strlen(argv[1])), argv[1]);
    char err[CX_ERRLEN];
    if (hash && br_tls_parse_pin(hash + 1, pin, err) != 0) die(err);
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) die("bad HOST:PORT");
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    snprintf(port, sizeof port, "%s", colon + 1);
    const char *mode = argv[2], *tokens = argc > 5 ? argv[5] : "";
    int n = atoi(argv[3]);
    double hold_s = atof(argv[4]);
    if (n < 1 || n > MAX_CONNS) die("N must be 1..4096");
    lim = br_proto_limits_default();
    for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;
    char tok[BR_PROTO_MAX_TOKEN_BYTES + 1];

    if (!strcmp(mode, "hellobye")) {  // one after another
        int welcomed = 0;
        for (int i = 0; i < n; i++) {
            FConn *c = open_one(0);
            if (!c) die("cannot connect");
            hello(c, token_for(tokens, i, tok, sizeof tok));
            if (await_welcome(c, 10)) {
                welcomed++;
                BrFrame f = {.type = BR_MSG_BYE};
                send_frame(c, &f);
            }
            if (!c->closed) conn_close(c);
            br_proto_decoder_free(&c->dec);
            *c = (FConn){.fd = -1};
        }
        printf("hellobye: %d cycles; welcomed %d\n", n, welcomed);
        for (int i = 0; i < n_msgs; i++) printf("error x%d: %s\n", msg_count[i], msgs[i]);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        FConn *c = open_one(i);
        if (!c) continue;  // (counted in the report: not opened)
        if (!strcmp(mode, "idle")) continue;
        if (!strcmp(mode, "preauth")) {
            heartbeat(c);
            continue;
        }
        hello(c, token_for(tokens, i, tok, sizeof tok));
        if (!await_welcome(c, 10)) continue;
        if (!strcmp(mode, "statereq")) {
            uint64_t k = c->state_bytes < (1u << 20) ? c->state_bytes : (1u << 20);
            for (int r = 0; r < 160 && !c->closed; r++) {
                BrFrame f = {.type = BR_MSG_STATE_REQUEST};
                uint64_t off = (uint64_t)r * k % (c->state_bytes - k + 1);
                f.m.state_request = (BrStateRequest){.offset = off, .n_bytes = (uint32_t)k};
                if (send_frame(c, &f) != 0) break;
            }
        } else if (!strcmp(mode, "park")) {
            BrFrame f = {.type = BR_MSG_STATE_REQUEST};
            uint64_t k = c->state_bytes < 65536 ? c->state_bytes : 65536;
            f.m.state_request = (BrStateRequest){.offset = 0, .n_bytes = (uint32_t)k};
            send_frame(c, &f);
        }
    }
    if (!strcmp(mode, "statereq") || !strcmp(mode, "idle")) hold(n, hold_s, 0, 0);
    else if (!strcmp(mode, "preauth")) hold(n, hold_s, 1, 1);
    else if (!strcmp(mode, "park") || !strcmp(mode, "tokencap")) hold(n, hold_s, 1, 1);
    else die("unknown mode");
    if (!strcmp(mode, "statereq"))  // now read what the bridge said before it closed
        for (int i = 0; i < n; i++)
            if (conns[i].fd >= 0 && !conns[i].closed) drain(&conns[i]);
    report(mode, n);
    return 0;
}
