// tool_badpeer: a misbehaving volunteer for the bridge's tests. It connects to a running
// bridge and breaks the protocol in one chosen way, then reports whether the bridge answered
// with an ERROR frame and closed the connection (exit 0) or not (exit 1).
//
// usage: tool_badpeer HOST:PORT[#sha256:FINGERPRINT] MODE [TOKEN [IDENTITY]]
//   with a fingerprint it speaks TLS 1.3 pinned to it (as conflux-volunteer does; the TLS
//   lives in send_bytes/recv_frame), without one plaintext
//   garbage     random bytes instead of a HELLO
//   http        an HTTP request
//   hugelen     a frame header that claims a 4 GiB payload
//   badtoken    a well-formed HELLO with a wrong token
//   badcrc      a HELLO with a corrupted frame checksum
//   idle        a valid HELLO, then silence (the bridge's idle timeout must fire)
//   nan         goes live, takes a share, uploads a gradient with a NaN
//   norm        goes live, takes a share, uploads a gradient of norm ~6e12 (per token far over
//               --max-grad-norm)
//   bigsum      goes live, takes a share, uploads finite elements of 3e38 (two of them summed
//               to inf in the round): refused by the absolute norm bound in every mode
//   hugeloss    goes live, takes a share, uploads a zero gradient claiming a loss sum of 1e308
//               (two such uploads summed overflowed the round's statistics to inf)
//   tokens      goes live, takes a share, uploads a whole zero gradient claiming 1000 loss
//               tokens per sample (a claimed count became the round's divisor: the honest
//               gradient shrank and the reported loss read 0.000)
//   wrongsize   goes live, takes a share, uploads a chunk past the end of the gradient
//   wronground  goes live, uploads for a round it was not given
//   early       sends a GRAD_CHUNK before going live
//   steal       a HELLO resuming IDENTITY (32 hex digits, another volunteer's) with TOKEN
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "models/codec.h"
#include "bridge/proto.h"
#include "bridge/tls.h"
#include "models/common.h"
#include "models/train.h"

static int fd = -1;
static BrTls *tls;  // NULL: plaintext
static BrProtoDecoder dec;
static uint8_t frame[(1u << 20) + 256];
static BrProtoLimits lim;

static void die(const char *msg) {
    fprintf(stderr, "tool_badpeer: %s\n", msg);
    exit(2);
}

static void send_bytes(const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = tls ? br_tls_write(tls, b, n) : send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) return;  // the bridge may already have closed: that is the point
        b += w;
        n -= (size_t)w;
    }
}

static void send_frame(const BrFrame *f) {
    char err[CX_ERRLEN];
    int len = br_proto_encode(frame, sizeof frame, f, &lim, err);
    if (len < 0) die(err);
    send_bytes(frame, (size_t)len);
}

// Next frame (heartbeats skipped) within timeout_s: 1 frame, 0 closed, -1 timeout.
static int recv_frame(BrFrame *f, double timeout_s) {
    static uint8_t buf[1 << 16];
    static size_t pos = 0, len = 0;
    double t0 = cx_now();
    for (;;) {
        while (pos < len) {
            size_t used;
            int st = br_proto_decoder_feed(&dec, buf + pos, len - pos, &used, f);
            pos += used;
            if (st == BR_PROTO_ERROR) die(br_proto_decoder_error(&dec));
            if (st == BR_PROTO_FRAME && f->type != BR_MSG_HEARTBEAT) return 1;
        }
        pos = len = 0;
        double left = timeout_s - (cx_now() - t0);
        if (left <= 0) return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (!(tls && br_tls_pending(tls)) && poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t r = tls ? br_tls_read(tls, buf, sizeof buf) : recv(fd, buf, sizeof buf, 0);
        if (r <= 0) return 0;
        len = (size_t)r;
    }
}

// Reads until the bridge closes; returns 0 when an ERROR frame came first.
static int expect_error_and_close(double timeout_s) {
    BrFrame f;
    int saw_error = 0;
    for (;;) {
        int r = recv_frame(&f, timeout_s);
        if (r < 0) {
            fprintf(stderr, "tool_badpeer: the bridge neither answered nor closed within %.0f s\n", timeout_s);
            return 1;
        }
        if (r == 0) break;
        if (f.type == BR_MSG_ERROR) {
            printf("bridge error %u: %s\n", f.m.error.code, f.m.error.message);
            saw_error = 1;
        }
    }
    printf("bridge closed the connection%s\n", saw_error ? "" : " without an ERROR frame");
    return saw_error ? 0 : 1;
}

static void hello(const char *token) {
    BrFrame f = {.type = BR_MSG_HELLO};
    f.m.hello.version_major = BR_PROTO_VERSION_MAJOR;
    f.m.hello.codecs = BR_CODEC_BIT(BR_CODEC_FP32);
    snprintf(f.m.hello.token, sizeof f.m.hello.token, "%s", token);
    snprintf(f.m.hello.name, sizeof f.m.hello.name, "badpeer");
    send_frame(&f);
}

int main(int argc, char **argv) {
    if (argc < 3) die("usage: tool_badpeer HOST:PORT[#sha256:FINGERPRINT] MODE [TOKEN [IDENTITY]]");
    const char *mode = argv[2], *token = argc > 3 ? argv[3] : "0123456789abcdef0123456789abcdef";
    char err[CX_ERRLEN], addr[300], pin[BR_TLS_FP_CHARS + 1], host[256];
    const char *hash = strchr(argv[1], '#');
    snprintf(addr, sizeof addr, "%.*s", hash ? (int)(hash - argv[1]) : (int)strlen(argv[1]), argv[1]);
    if (hash && br_tls_parse_pin(hash + 1, pin, err) != 0) die(err);
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) die("bad HOST:PORT");
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) die("cannot resolve");
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) die(strerror(errno));
    freeaddrinfo(ai);
    if (hash && !(tls = br_tls_client_start(fd, pin, 30, err))) die(err);
    lim = br_proto_limits_default();
    br_proto_decoder_init(&dec, &lim, err);
    double patience = 30;

    if (!strcmp(mode, "garbage")) {
        uint64_t s = 12345;
        uint8_t junk[4096];
        for (size_t i = 0; i < sizeof junk; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            junk[i] = (uint8_t)(s >> 56);
        }
        send_bytes(junk, sizeof junk);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "http")) {
        const char *req = "GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n";
        send_bytes(req, strlen(req));
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "hugelen")) {
        BrFrame f = {.type = BR_MSG_HEARTBEAT};
        int len = br_proto_encode(frame, sizeof frame, &f, &lim, err);
        frame[8] = frame[9] = frame[10] = frame[11] = 0xff;  // payload length 4 GiB - 1
        uint32_t crc = br_crc32c(0, frame, 12);              // with a valid header CRC
        for (int i = 0; i < 4; i++) frame[12 + i] = (uint8_t)(crc >> (8 * i));
        send_bytes(frame, (size_t)len);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "badtoken")) {
        hello("ffffffffffffffffffffffffffffffff");
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "badcrc")) {
        BrFrame f = {.type = BR_MSG_HELLO};
        f.m.hello.version_major = 1;
        f.m.hello.codecs = 2;
        snprintf(f.m.hello.token, sizeof f.m.hello.token, "%s", token);
        int len = br_proto_encode(frame, sizeof frame, &f, &lim, err);
        frame[len - 1] ^= 0x40;
        send_bytes(frame, (size_t)len);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "steal")) {
        BrFrame f = {.type = BR_MSG_HELLO};
        f.m.hello.version_major = BR_PROTO_VERSION_MAJOR;
        f.m.hello.codecs = BR_CODEC_BIT(BR_CODEC_FP32);
        f.m.hello.resume = 1;
        const char *id = argc > 4 ? argv[4] : "";
        if (strlen(id) < 32) die("steal needs TOKEN and the victim's IDENTITY (32 hex digits)");
        for (int i = 0; i < 16; i++) {
            unsigned v;
            if (sscanf(id + 2 * i, "%2x", &v) != 1) die("IDENTITY is not hex");
            f.m.hello.identity.bytes[i] = (uint8_t)v;
        }
        snprintf(f.m.hello.token, sizeof f.m.hello.token, "%s", token);
        snprintf(f.m.hello.name, sizeof f.m.hello.name, "thief");
        send_frame(&f);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "idle")) {
        hello(token);
        return expect_error_and_close(120);
    }
    if (!strcmp(mode, "early")) {
        hello(token);
        BrFrame f;
        if (recv_frame(&f, patience) != 1 || f.type != BR_MSG_WELCOME) die("no WELCOME");
        float g[4] = {0};
        uint8_t d[16];
        codec_fp32_encode(d, g, 4);
        BrFrame u = {.type = BR_MSG_GRAD_CHUNK};
        u.m.grad_chunk = (BrGradChunk){.round_id = 1, .samples = 1, .n_elems = 4, .codec = BR_CODEC_FP32, .data = d};
        send_frame(&u);
        return expect_error_and_close(patience);
    }
    // the modes that go live and take a share
    hello(token);
    BrFrame f;
    if (recv_frame(&f, patience) != 1 || f.type != BR_MSG_WELCOME) die("no WELCOME");
    uint64_t n = f.m.welcome.n_params, step = f.m.welcome.step;
    BrFrame p = {.type = BR_MSG_PROGRESS};
    p.m.progress.step = step;  // claims to hold that state (it never downloads it)
    send_frame(&p);
    for (;;) {
        int r = recv_frame(&f, 120);
        if (r <= 0) die("the bridge closed or went silent before giving a share");
        if (f.type == BR_MSG_ROUND_CLOSE) {  // acknowledge every step to stay eligible
            p.m.progress.step = f.m.round_close.round_id;
            send_frame(&p);
            continue;
        }
        if (f.type != BR_MSG_ROUND_OPEN || f.m.round_open.n_samples == 0) continue;
        break;
    }
    BrRoundOpen ro = f.m.round_open;
    size_t k = n < 1024 ? (size_t)n : 1024;
    float *g = calloc(k, sizeof(float));
    uint8_t *d = malloc(4 * k);
    BrFrame u = {.type = BR_MSG_GRAD_CHUNK};
    u.m.grad_chunk = (BrGradChunk){.round_id = ro.round_id, .offset = 0, .samples = ro.n_samples,
                                   .tokens = 10, .loss_sum = 1.0, .n_elems = (uint32_t)k,
                                   .codec = BR_CODEC_FP32, .data = d};
    if (!strcmp(mode, "nan")) {
        g[7] = NAN;
    } else if (!strcmp(mode, "norm")) {
        for (size_t i = 0; i < k; i++) g[i] = 1e10f;
    } else if (!strcmp(mode, "bigsum")) {
        for (size_t i = 0; i < k; i++) g[i] = 3e38f;
    } else if (!strcmp(mode, "hugeloss")) {
        u.m.grad_chunk.loss_sum = 1e308;
    } else if (!strcmp(mode, "tokens")) {
        u.m.grad_chunk.tokens = ro.n_samples * 1000;
    } else if (!strcmp(mode, "wrongsize")) {
        u.m.grad_chunk.offset = n - k / 2;  // runs past the end
    } else if (!strcmp(mode, "wronground")) {
        u.m.grad_chunk.round_id = ro.round_id + 5;
    } else {
        die("unknown mode");
    }
    codec_fp32_encode(d, g, k);
    send_frame(&u);
    if (!strcmp(mode, "norm") || !strcmp(mode, "tokens") || !strcmp(mode, "bigsum")) {  // judged whole
        for (uint64_t off = k; off < n; off += k) {
            size_t m = n - off < k ? (size_t)(n - off) : k;
            u.m.grad_chunk.offset = off;
            u.m.grad_chunk.n_elems = (uint32_t)m;
            send_frame(&u);
        }
    }
    int rc = expect_error_and_close(patience);
    free(g);
    free(d);
    return rc;
}
