// tool_badpeer: a misbehaving volunteer for the bridge's tests. It connects to a running
// bridge and breaks the protocol in one chosen way, then reports whether the bridge answered
// with the expected ERROR frame and closed the connection (exit 0) or not (exit 1).
//
// usage: tool_badpeer [--expect CODE REGEX] HOST:PORT[#sha256:FINGERPRINT] MODE [TOKEN [IDENTITY]]
//   --expect: exit 0 only when the bridge's ERROR frame has code CODE (BrErrorCode) and a
//   message matching REGEX (POSIX extended, searched in the message), and the bridge then
//   closes; any other code or message is a failure. Without it any ERROR then close passes.
//   With a fingerprint it speaks TLS 1.3 pinned to it (as conflux-volunteer does; the TLS
//   lives in send_bytes/recv_frame), without one plaintext. BADPEER_DEBUG=1 in the
//   environment prints every frame received and how the connection ended.
// before HELLO
//   garbage     random bytes instead of a HELLO
//   http        an HTTP request
//   hugelen     a frame header that claims a 4 GiB payload
//   badcrc      a HELLO with a corrupted frame checksum
//   nohello     connects and sends nothing (the bridge's HELLO timeout must fire)
//   datapreauth a DATA_REQUEST for the training data's first byte instead of a HELLO
// HELLO
//   badtoken    a well-formed HELLO with a wrong token
//   nocodec     a HELLO offering only a codec the bridge does not know (bit 5)
//   steal       a HELLO resuming IDENTITY (32 hex digits, another volunteer's) with TOKEN
//   idle        a valid HELLO, then silence (the bridge's idle timeout must fire)
// authenticated, before going live
//   hello2      a second HELLO after the WELCOME
//   wrongtype   a ROUND_OPEN (a bridge-to-volunteer frame) after the WELCOME
//   staterange  a STATE_REQUEST for the byte just past the end of the state
//   future      PROGRESS claiming a step 1000 rounds ahead of the run
//   behind      reconnects until the run is past step 10, then PROGRESS for step 0 (older
//               than the bridge's history, --history 8)
//   early       sends a GRAD_CHUNK before going live
//   datarange   a DATA_REQUEST for the training data's last byte and the one past it
//   datawindow  three DATA_REQUESTs of 1 MiB at once (the window is 2 MiB), never reading
// live
//   statelive   goes live, then asks for state bytes
//   datalive    goes live, then asks for training data bytes
//   progress    goes live, then reports PROGRESS 1000 steps ahead of the run
//   lag         goes live two steps behind (reconnects until the run is past step 3), then
//               never acknowledges a round (the bridge drops laggards)
// live, with a share: the upload breaks one rule
//   nan         a gradient element is NaN
//   norm        gradient of norm ~6e12 (per token far over --max-grad-norm)
//   bigsum      finite elements of 3e38 (two of them summed to inf in the round): refused by
//               the absolute norm bound in every mode
//   hugeloss    a zero gradient claiming a loss sum of 1e308 (two such uploads summed
//               overflowed the round's statistics to inf)
//   tokens      a whole zero gradient claiming 1000 loss tokens per sample (a claimed count
//               became the round's divisor: the honest gradient shrank and the reported loss
//               read 0.000)
//   manytokens  a first chunk claiming more than 10^6 loss tokens per sample
//   wrongsize   the first chunk starts at an element past the start (n - k/2)
//   wrongsamples the first chunk claims one sample more than the share
//   wronground  an upload for a round it was not given
//   wrongcodec  chunks in fp16 when fp32 was negotiated
//   changetotals a second chunk with another loss sum than the first
//   pastend     every chunk in order, the last one element longer than the gradient
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
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
static int expect_code;         // 0: any ERROR passes
static regex_t expect_re;
static const char *expect_text;

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
        if (r <= 0 && getenv("BADPEER_DEBUG"))
            fprintf(stderr, "tool_badpeer: read %zd: %s %s\n", r, strerror(errno), tls ? br_tls_error(tls) : "");
        if (r <= 0) return 0;
        len = (size_t)r;
    }
}

// Reads until the bridge closes; returns 0 when an ERROR frame came first (with --expect:
// the first ERROR has the expected code and a matching message).
static int expect_error_and_close(double timeout_s) {
    BrFrame f;
    int saw_error = 0, matched = 0;
    for (;;) {
        int r = recv_frame(&f, timeout_s);
        if (r < 0) {
            fprintf(stderr, "tool_badpeer: the bridge neither answered nor closed within %.0f s\n", timeout_s);
            return 1;
        }
        if (r == 0) break;
        if (getenv("BADPEER_DEBUG")) fprintf(stderr, "tool_badpeer: got %s\n", br_proto_type_name(f.type));
        if (f.type == BR_MSG_ERROR) {
            printf("bridge error %u: %s\n", f.m.error.code, f.m.error.message);
            if (!saw_error)
                matched = !expect_code || (f.m.error.code == (uint32_t)expect_code &&
                                           regexec(&expect_re, f.m.error.message, 0, NULL, 0) == 0);
            saw_error = 1;
        }
    }
    printf("bridge closed the connection%s\n", saw_error ? "" : " without an ERROR frame");
    if (saw_error && !matched)
        printf("tool_badpeer: expected bridge error %d matching /%s/\n", expect_code, expect_text);
    return saw_error && matched ? 0 : 1;
}

static void hello(const char *token) {
    BrFrame f = {.type = BR_MSG_HELLO};
    f.m.hello.version_major = BR_PROTO_VERSION_MAJOR;
    f.m.hello.codecs = BR_CODEC_BIT(BR_CODEC_FP32);
    snprintf(f.m.hello.token, sizeof f.m.hello.token, "%s", token);
    snprintf(f.m.hello.name, sizeof f.m.hello.name, "badpeer");
    send_frame(&f);
}

static char g_host[256], g_port[16], g_pin[BR_TLS_FP_CHARS + 1];
static int g_tls;

// Connects (again): closes the connection before, resets the decoder.
static void conn_open(void) {
    char err[CX_ERRLEN];
    if (tls) br_tls_close(tls);
    tls = NULL;
    if (fd >= 0) close(fd);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(g_host, g_port, &hints, &ai) != 0) die("cannot resolve");
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) die(strerror(errno));
    freeaddrinfo(ai);
    if (g_tls && !(tls = br_tls_client_start(fd, g_pin, 30, NULL, err))) die(err);
    br_proto_decoder_free(&dec);
    br_proto_decoder_init(&dec, &lim, err);
}

// HELLO and its WELCOME; with min_step > 0, reconnects (every 0.5 s, 120 s at most) until
// the WELCOME's step is at least min_step.
static BrWelcome join(const char *token, uint64_t min_step, double patience) {
    double t0 = cx_now();
    for (;;) {
        hello(token);
        BrFrame f;
        if (recv_frame(&f, patience) != 1 || f.type != BR_MSG_WELCOME) die("no WELCOME");
        if (f.m.welcome.step >= min_step) return f.m.welcome;
        if (cx_now() - t0 > 120) die("the run did not reach the step this mode needs");
        BrFrame bye = {.type = BR_MSG_BYE};
        bye.m.bye.reason = BR_BYE_LEAVING;
        send_frame(&bye);
        usleep(500000);
        conn_open();
    }
}

static void send_progress(uint64_t step) {
    BrFrame p = {.type = BR_MSG_PROGRESS};
    p.m.progress.step = step;
    send_frame(&p);
}

// After going live: reads the catch-up replay and the rounds that follow until the link is
// quiet for 0.3 s (3 s at most), acknowledging each round as a volunteer does, so that a rule
// broken next is answered on its own and not queued behind megabytes of replay. Returns the
// last step acknowledged.
static uint64_t drain_replay(uint64_t step) {
    BrFrame f;
    double t0 = cx_now();
    while (cx_now() - t0 < 3.0 && recv_frame(&f, 0.3) == 1)
        if (f.type == BR_MSG_ROUND_CLOSE) {
            step = f.m.round_close.round_id;
            send_progress(step);
        }
    return step;
}

int main(int argc, char **argv) {
    int a = 1;
    if (argc > 3 && !strcmp(argv[1], "--expect")) {
        expect_code = atoi(argv[2]);
        expect_text = argv[3];
        if (expect_code <= 0 || regcomp(&expect_re, expect_text, REG_EXTENDED | REG_NOSUB) != 0)
            die("--expect CODE REGEX: a positive code and a valid extended regex");
        a = 4;
    }
    argc -= a - 1;
    argv += a - 1;
    if (argc < 3)
        die("usage: tool_badpeer [--expect CODE REGEX] HOST:PORT[#sha256:FINGERPRINT] MODE [TOKEN [IDENTITY]]");
    const char *mode = argv[2], *token = argc > 3 ? argv[3] : "0123456789abcdef0123456789abcdef";
    char err[CX_ERRLEN], addr[300];
    const char *hash = strchr(argv[1], '#');
    snprintf(addr, sizeof addr, "%.*s", hash ? (int)(hash - argv[1]) : (int)strlen(argv[1]), argv[1]);
    if (hash && br_tls_parse_pin(hash + 1, g_pin, err) != 0) die(err);
    g_tls = hash != NULL;
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof g_host || strlen(colon + 1) >= sizeof g_port)
        die("bad HOST:PORT");
    memcpy(g_host, addr, (size_t)(colon - addr));
    g_host[colon - addr] = 0;
    snprintf(g_port, sizeof g_port, "%s", colon + 1);
    signal(SIGPIPE, SIG_IGN);  // writes after the bridge closed fail instead
    lim = br_proto_limits_default();
    conn_open();
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
    if (!strcmp(mode, "nohello")) return expect_error_and_close(patience);
    if (!strcmp(mode, "datapreauth")) {
        BrFrame f = {.type = BR_MSG_DATA_REQUEST};
        f.m.data_request = (BrDataRequest){.offset = 0, .n_bytes = 1};
        send_frame(&f);
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
    if (!strcmp(mode, "nocodec")) {
        BrFrame f = {.type = BR_MSG_HELLO};
        f.m.hello.version_major = BR_PROTO_VERSION_MAJOR;
        f.m.hello.codecs = 1u << 5;  // a codec no build knows
        snprintf(f.m.hello.token, sizeof f.m.hello.token, "%s", token);
        send_frame(&f);
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
    // the modes that authenticate
    uint64_t min_step = !strcmp(mode, "behind") ? 10 : !strcmp(mode, "lag") ? 3 : 0;
    BrWelcome w = join(token, min_step, patience);
    uint64_t n = w.n_params, step = w.step;
    if (!strcmp(mode, "hello2")) {
        hello(token);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "wrongtype")) {
        BrFrame f = {.type = BR_MSG_ROUND_OPEN};
        f.m.round_open = (BrRoundOpen){.round_id = 1, .step = 1, .target_samples = 1};
        send_frame(&f);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "staterange") || !strcmp(mode, "statelive")) {
        if (!strcmp(mode, "statelive")) {
            send_progress(step);
            step = drain_replay(step);
        }
        BrFrame f = {.type = BR_MSG_STATE_REQUEST};
        f.m.state_request.offset = !strcmp(mode, "statelive") ? 0 : w.state_bytes;
        f.m.state_request.n_bytes = 1;
        send_frame(&f);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "datarange") || !strcmp(mode, "datalive")) {
        if (!strcmp(mode, "datalive")) {
            send_progress(step);
            step = drain_replay(step);
        }
        if (w.data_bytes < 2) die("the bridge serves no training data (WELCOME's data size < 2)");
        BrFrame f = {.type = BR_MSG_DATA_REQUEST};
        f.m.data_request = !strcmp(mode, "datalive") ? (BrDataRequest){.offset = 0, .n_bytes = 1}
                                                     : (BrDataRequest){.offset = w.data_bytes - 1, .n_bytes = 2};
        send_frame(&f);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "datawindow")) {  // one write: the bridge reads all three before sending
        if (w.data_bytes < (3u << 20)) die("the training data is smaller than 3 MiB");
        static uint8_t three[3 * 64];
        size_t len = 0;
        for (int i = 0; i < 3; i++) {
            BrFrame f = {.type = BR_MSG_DATA_REQUEST};
            f.m.data_request = (BrDataRequest){.offset = (uint64_t)i << 20, .n_bytes = 1u << 20};
            int k = br_proto_encode(three + len, sizeof three - len, &f, &lim, err);
            if (k < 0) die(err);
            len += (size_t)k;
        }
        send_bytes(three, len);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "future") || !strcmp(mode, "behind")) {
        send_progress(!strcmp(mode, "future") ? step + 1000 : 0);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "early")) {
        float g[4] = {0};
        uint8_t d[16];
        codec_fp32_encode(d, g, 4);
        BrFrame u = {.type = BR_MSG_GRAD_CHUNK};
        u.m.grad_chunk = (BrGradChunk){.round_id = 1, .samples = 1, .n_elems = 4, .codec = BR_CODEC_FP32, .data = d};
        send_frame(&u);
        return expect_error_and_close(patience);
    }
    if (!strcmp(mode, "lag")) {  // live two steps behind, then deaf to every round
        send_progress(step - 2);
        return expect_error_and_close(120);
    }
    // go live (it claims to hold that state; it never downloads it)
    send_progress(step);
    if (!strcmp(mode, "progress")) {
        step = drain_replay(step);
        send_progress(step + 1000);
        return expect_error_and_close(patience);
    }
    // the modes that take a share
    BrFrame f;
    for (;;) {
        int r = recv_frame(&f, 120);
        if (r <= 0) die("the bridge closed or went silent before giving a share");
        if (f.type == BR_MSG_ROUND_CLOSE) {  // acknowledge every step to stay eligible
            send_progress(f.m.round_close.round_id);
            continue;
        }
        if (f.type != BR_MSG_ROUND_OPEN || f.m.round_open.n_samples == 0) continue;
        break;
    }
    BrRoundOpen ro = f.m.round_open;
    // chunks of k elements (at least two chunks, so that a later chunk can break a rule)
    size_t k = n / 2 < 1024 ? (size_t)(n / 2) : 1024;
    if (k == 0) die("the model is too small");
    float *g = calloc(k + 1, sizeof(float));
    uint8_t *d = malloc(4 * (k + 1));
    BrFrame u = {.type = BR_MSG_GRAD_CHUNK};
    u.m.grad_chunk = (BrGradChunk){.round_id = ro.round_id, .offset = 0, .samples = ro.n_samples,
                                   .tokens = 10, .loss_sum = 1.0, .n_elems = (uint32_t)k,
                                   .codec = BR_CODEC_FP32, .data = d};
    int whole = 0;  // send every chunk (the rule is judged on the whole upload or a later chunk)
    if (!strcmp(mode, "nan")) {
        g[7] = NAN;
    } else if (!strcmp(mode, "norm")) {
        for (size_t i = 0; i < k; i++) g[i] = 1e10f;
        whole = 1;
    } else if (!strcmp(mode, "bigsum")) {
        for (size_t i = 0; i < k; i++) g[i] = 3e38f;
        whole = 1;
    } else if (!strcmp(mode, "hugeloss")) {
        u.m.grad_chunk.loss_sum = 1e308;
    } else if (!strcmp(mode, "tokens")) {
        u.m.grad_chunk.tokens = ro.n_samples * 1000;
        whole = 1;
    } else if (!strcmp(mode, "manytokens")) {
        u.m.grad_chunk.tokens = ro.n_samples * 1000000 + 1;
    } else if (!strcmp(mode, "wrongsize")) {
        u.m.grad_chunk.offset = n - k / 2;  // runs past the end
    } else if (!strcmp(mode, "wrongsamples")) {
        u.m.grad_chunk.samples = ro.n_samples + 1;
    } else if (!strcmp(mode, "wronground")) {
        u.m.grad_chunk.round_id = ro.round_id + 5;
    } else if (!strcmp(mode, "wrongcodec")) {
        u.m.grad_chunk.codec = BR_CODEC_FP16;  // k fp16 elements: within the buffer
    } else if (!strcmp(mode, "changetotals") || !strcmp(mode, "pastend")) {
        whole = 1;
    } else {
        die("unknown mode");
    }
    codec_fp32_encode(d, g, k + 1);
    send_frame(&u);
    for (uint64_t off = k; whole && off < n; off += k) {
        size_t m = n - off < k ? (size_t)(n - off) : k;
        u.m.grad_chunk.offset = off;
        u.m.grad_chunk.n_elems = (uint32_t)m;
        if (!strcmp(mode, "changetotals")) u.m.grad_chunk.loss_sum = 2.0;
        if (!strcmp(mode, "pastend") && off + m == n) u.m.grad_chunk.n_elems = (uint32_t)m + 1;
        send_frame(&u);
    }
    int rc = expect_error_and_close(patience);
    free(g);
    free(d);
    return rc;
}
