// test_proto.c: the bridge wire protocol (bridge/proto.h): pure encode/decode, no sockets.
//
// - CRC32C against published vectors (RFC 3720 B.4 and "123456789") and a bitwise reference.
// - Golden bytes for one frame of every type, written field by field from the layout in
//   bridge/proto.h (struct.pack in Python, CRC32C by a bitwise loop), not by the encoder.
// - Every message type round-trips with edge values (zeros, all-ones, longest strings,
//   multi-byte UTF-8, largest chunks), through the one-shot and the incremental decoder,
//   and re-encodes to the same bytes.
// - The incremental decoder gives the same frames for any slicing of a stream.
// - Every truncation of a valid frame is NEED_MORE (never an error, never a frame).
// - Every single-bit flip is rejected; with the checksums repaired after the flip, the
//   frame is rejected or decodes to a frame that re-encodes to exactly the flipped bytes.
// - Oversized and undersized lengths are rejected on the header, before any allocation.
// - Random garbage never crashes and errors are permanent.
// - The stored corpus tests/tools/fuzz/proto/ (CONFLUX_PROTO_CORPUS overrides the path; relative
//   to the repo root, where the tests run) is replayed: ok-*.bin must decode to whole frames
//   without error, need-*.bin must end inside a frame without error, err-*.bin must end in an
//   error; any other name fails the test.
//
// `test_proto --write-corpus DIR` writes the seed files of that corpus; `--repair-crcs IN
// OUT` and `--classify FILE...` prepare fuzzer findings for it (see tests/tools/fuzz/README.md).
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bridge/proto.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define HDR BR_PROTO_HEADER_BYTES

// ---- helpers ----

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void) {  // splitmix64
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Recomputes the header checksum of the frame at buf[0..n) (n >= HDR), and its frame
// checksum when the whole payload is present.
static void fix_crcs(uint8_t *buf, size_t n) {
    put32(buf + 12, br_crc32c(0, buf, 12));
    uint32_t len = get32(buf + 8);
    if (n - HDR >= len) put32(buf + 16, br_crc32c(br_crc32c(0, buf, 16), buf + HDR, len));
}

// A frame with any header fields and payload, checksums correct. Returns its size.
static size_t raw_frame(uint8_t *buf, uint8_t major, uint8_t minor, uint8_t type, uint8_t flags,
                        const uint8_t *payload, uint32_t len) {
    memcpy(buf, "CXBR", 4);
    buf[4] = major;
    buf[5] = minor;
    buf[6] = type;
    buf[7] = flags;
    put32(buf + 8, len);
    if (len) memcpy(buf + HDR, payload, len);
    fix_crcs(buf, HDR + len);
    return HDR + len;
}

static bool strs_have(const char *s, const char *needle) {
    return strstr(s, needle) != NULL;
}

// Compares two frames field by field (data by content). Prints the first difference.
static bool frame_eq(const BrFrame *a, const BrFrame *b) {
#define FIELD(x)                                                                   \
    do {                                                                           \
        if (a->x != b->x) {                                                        \
            fprintf(stderr, "\n  %s differs: %" PRIu64 " vs %" PRIu64 "\n", #x,    \
                    (uint64_t)a->x, (uint64_t)b->x);                               \
            return false;                                                          \
        }                                                                          \
    } while (0)
#define BYTES(x, n)                                                                \
    do {                                                                           \
        if ((n) != 0 && memcmp(a->x, b->x, (n)) != 0) {                            \
            fprintf(stderr, "\n  %s differs\n", #x);                               \
            return false;                                                          \
        }                                                                          \
    } while (0)
    FIELD(type);
    switch (a->type) {
    case BR_MSG_HELLO:
        FIELD(m.hello.version_major);
        FIELD(m.hello.version_minor);
        FIELD(m.hello.resume);
        FIELD(m.hello.codecs);
        BYTES(m.hello.identity.bytes, 16);
        if (strcmp(a->m.hello.token, b->m.hello.token) || strcmp(a->m.hello.name, b->m.hello.name)) {
            fprintf(stderr, "\n  HELLO strings differ\n");
            return false;
        }
        break;
    case BR_MSG_WELCOME:
        FIELD(m.welcome.session_id);
        BYTES(m.welcome.identity.bytes, 16);
        FIELD(m.welcome.step);
        FIELD(m.welcome.samples_seen);
        FIELD(m.welcome.n_params);
        FIELD(m.welcome.state_bytes);
        FIELD(m.welcome.round_deadline_ms);
        FIELD(m.welcome.max_chunk_bytes);
        FIELD(m.welcome.codec);
        FIELD(m.welcome.data_bytes);
        BYTES(m.welcome.data_hash, BR_DATA_HASH_BYTES);
        break;
    case BR_MSG_DATA_REQUEST:
        FIELD(m.data_request.offset);
        FIELD(m.data_request.n_bytes);
        break;
    case BR_MSG_DATA_CHUNK:
        FIELD(m.data_chunk.offset);
        FIELD(m.data_chunk.total_bytes);
        FIELD(m.data_chunk.n_bytes);
        BYTES(m.data_chunk.data, a->m.data_chunk.n_bytes);
        break;
    case BR_MSG_STATE_REQUEST:
        FIELD(m.state_request.offset);
        FIELD(m.state_request.n_bytes);
        break;
    case BR_MSG_STATE_CHUNK:
        FIELD(m.state_chunk.offset);
        FIELD(m.state_chunk.total_bytes);
        FIELD(m.state_chunk.n_bytes);
        BYTES(m.state_chunk.data, a->m.state_chunk.n_bytes);
        break;
    case BR_MSG_PROGRESS:
        FIELD(m.progress.step);
        FIELD(m.progress.samples);
        break;
    case BR_MSG_ROUND_OPEN:
        FIELD(m.round_open.round_id);
        FIELD(m.round_open.step);
        FIELD(m.round_open.target_samples);
        FIELD(m.round_open.sample_start);
        FIELD(m.round_open.n_samples);
        FIELD(m.round_open.params_hash);
        break;
    case BR_MSG_ROUND_CLOSE:
        FIELD(m.round_close.round_id);
        FIELD(m.round_close.accepted_samples);
        FIELD(m.round_close.samples);
        FIELD(m.round_close.tokens);
        FIELD(m.round_close.participants);
        FIELD(m.round_close.loss_sum);
        FIELD(m.round_close.aux_sum);
        break;
    case BR_MSG_GRAD_CHUNK:
        FIELD(m.grad_chunk.round_id);
        FIELD(m.grad_chunk.offset);
        FIELD(m.grad_chunk.samples);
        FIELD(m.grad_chunk.tokens);
        FIELD(m.grad_chunk.loss_sum);
        FIELD(m.grad_chunk.aux_sum);
        FIELD(m.grad_chunk.n_elems);
        FIELD(m.grad_chunk.codec);
        BYTES(m.grad_chunk.data,
              br_proto_codec_encoded_bytes(a->m.grad_chunk.codec, a->m.grad_chunk.n_elems));
        break;
    case BR_MSG_AVG_CHUNK:
        FIELD(m.avg_chunk.round_id);
        FIELD(m.avg_chunk.offset);
        FIELD(m.avg_chunk.n_elems);
        FIELD(m.avg_chunk.codec);
        BYTES(m.avg_chunk.data,
              br_proto_codec_encoded_bytes(a->m.avg_chunk.codec, a->m.avg_chunk.n_elems));
        break;
    case BR_MSG_HEARTBEAT:
        FIELD(m.heartbeat.time_us);
        break;
    case BR_MSG_ERROR:
        FIELD(m.error.code);
        if (strcmp(a->m.error.message, b->m.error.message)) {
            fprintf(stderr, "\n  ERROR message differs\n");
            return false;
        }
        break;
    case BR_MSG_BYE:
        FIELD(m.bye.reason);
        break;
    // the link check
    case BR_MSG_PROBE:
        FIELD(m.probe.seq);
        FIELD(m.probe.n_bytes);
        BYTES(m.probe.data, a->m.probe.n_bytes);
        break;
    case BR_MSG_PROBE_ACK:
        FIELD(m.probe_ack.seq);
        FIELD(m.probe_ack.bytes);
        FIELD(m.probe_ack.elapsed_us);
        break;
    }
    return true;
#undef FIELD
#undef BYTES
}

// ---- sample messages with edge values ----

#define MAX_SAMPLES 64
static BrFrame g_samples[MAX_SAMPLES];
static bool g_big[MAX_SAMPLES];  // too large for per-byte and per-bit loops
static int g_n_samples;
static uint8_t g_data[BR_PROTO_DEFAULT_CHUNK_BYTES];  // chunk payloads (random bytes)
// An int8 chunk of INT8_SAMPLE_N elements (codec_int8_encode of random floats): 3 scales
// and 300 values, 312 bytes. The 129-element AVG_CHUNK sample sends its first 4 * 2 + 129
// bytes: not an encoding of anything, but the protocol checks sizes only (any bytes are
// int8 chunk data; the receiver checks the decoded values).
#define INT8_SAMPLE_N 300
static uint8_t g_int8[4 * 3 + INT8_SAMPLE_N];
// The int8 element count whose encoding is exactly the default chunk limit: 7944 blocks
// (the last of 96 elements), 4 * 7944 + 1016800 = 1048576 bytes.
#define INT8_LIMIT_N 1016800u

static BrFrame *add_sample(BrMsgType type, bool big) {
    CHECK(g_n_samples < MAX_SAMPLES, "too many samples");
    g_big[g_n_samples] = big;
    BrFrame *f = &g_samples[g_n_samples++];
    memset(f, 0, sizeof *f);
    f->type = type;
    return f;
}

static void fill_repeat(char *dst, const char *unit, size_t total) {
    size_t u = strlen(unit), k = 0;
    while (k + u <= total) {
        memcpy(dst + k, unit, u);
        k += u;
    }
    dst[k] = '\0';
}

static void make_samples(void) {
    if (g_n_samples) return;
    for (size_t i = 0; i < sizeof g_data; i++) g_data[i] = (uint8_t)rnd();
    {
        float x[INT8_SAMPLE_N];
        for (int i = 0; i < INT8_SAMPLE_N; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-4f;
        codec_int8_encode(g_int8, x, INT8_SAMPLE_N);
    }
    const uint32_t MC = BR_PROTO_DEFAULT_CHUNK_BYTES;

    BrFrame *f = add_sample(BR_MSG_HELLO, false);  // smallest HELLO
    f->m.hello.version_major = BR_PROTO_VERSION_MAJOR;
    f->m.hello.codecs = BR_CODEC_BIT(BR_CODEC_FP16);
    strcpy(f->m.hello.token, "t");
    f = add_sample(BR_MSG_HELLO, false);  // largest HELLO, multi-byte UTF-8 everywhere
    f->m.hello.version_major = BR_PROTO_VERSION_MAJOR;
    f->m.hello.version_minor = 255;
    f->m.hello.resume = true;
    f->m.hello.codecs = 0xffffffffu;
    memset(f->m.hello.identity.bytes, 0xff, 16);
    fill_repeat(f->m.hello.token, "\xd0\xb9", BR_PROTO_MAX_TOKEN_BYTES);           // "й"
    fill_repeat(f->m.hello.name, "\xf0\x9f\x9a\x80", BR_PROTO_MAX_NAME_BYTES);     // U+1F680
    f = add_sample(BR_MSG_HELLO, false);  // typical
    f->m.hello.version_major = BR_PROTO_VERSION_MAJOR;
    f->m.hello.resume = true;
    f->m.hello.codecs = BR_CODEC_BIT(BR_CODEC_FP32) | BR_CODEC_BIT(BR_CODEC_FP16);
    for (int i = 0; i < 16; i++) f->m.hello.identity.bytes[i] = (uint8_t)(i * 17 + 1);
    strcpy(f->m.hello.token, "cx1-3f9a2b7c");
    strcpy(f->m.hello.name, "volunteer-\xe2\x82\xac-laptop");
    f = add_sample(BR_MSG_HELLO, false);  // offers int8 too
    f->m.hello.version_major = BR_PROTO_VERSION_MAJOR;
    f->m.hello.codecs = BR_CODEC_BIT(BR_CODEC_INT8) | BR_CODEC_BIT(BR_CODEC_FP16);
    strcpy(f->m.hello.token, "cx1-int8");

    f = add_sample(BR_MSG_WELCOME, false);
    f->m.welcome.identity.bytes[15] = 1;
    f->m.welcome.round_deadline_ms = 1;
    f->m.welcome.max_chunk_bytes = BR_PROTO_MIN_CHUNK_BYTES;
    f->m.welcome.codec = BR_CODEC_FP32;
    f = add_sample(BR_MSG_WELCOME, false);
    f->m.welcome.session_id = UINT64_MAX;
    memset(f->m.welcome.identity.bytes, 0xff, 16);
    f->m.welcome.step = UINT64_MAX;
    f->m.welcome.samples_seen = UINT64_MAX;
    f->m.welcome.n_params = UINT64_MAX;
    f->m.welcome.state_bytes = UINT64_MAX;
    f->m.welcome.round_deadline_ms = UINT32_MAX;
    f->m.welcome.max_chunk_bytes = BR_PROTO_MAX_CHUNK_BYTES;
    f->m.welcome.codec = BR_CODEC_FP16;
    f = add_sample(BR_MSG_WELCOME, false);
    f->m.welcome.identity.bytes[0] = 7;
    f->m.welcome.n_params = 1000;
    f->m.welcome.round_deadline_ms = 60000;
    f->m.welcome.max_chunk_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES;
    f->m.welcome.codec = BR_CODEC_INT8;

    f = add_sample(BR_MSG_STATE_REQUEST, false);
    f->m.state_request.n_bytes = 1;
    f = add_sample(BR_MSG_STATE_REQUEST, false);
    f->m.state_request.offset = UINT64_MAX;
    f->m.state_request.n_bytes = MC;

    f = add_sample(BR_MSG_STATE_CHUNK, false);  // empty state
    f = add_sample(BR_MSG_STATE_CHUNK, false);  // last bytes of a huge state
    f->m.state_chunk.offset = UINT64_MAX - 13;
    f->m.state_chunk.total_bytes = UINT64_MAX;
    f->m.state_chunk.n_bytes = 13;
    f->m.state_chunk.data = g_data;
    f = add_sample(BR_MSG_STATE_CHUNK, true);  // largest chunk
    f->m.state_chunk.offset = 5;
    f->m.state_chunk.total_bytes = 5 + (uint64_t)MC;
    f->m.state_chunk.n_bytes = MC;
    f->m.state_chunk.data = g_data;

    f = add_sample(BR_MSG_WELCOME, false);  // 1.1: the training data's size and hash
    f->m.welcome.identity.bytes[3] = 9;
    f->m.welcome.round_deadline_ms = 5000;
    f->m.welcome.max_chunk_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES;
    f->m.welcome.codec = BR_CODEC_FP16;
    f->m.welcome.data_bytes = UINT64_MAX;
    memset(f->m.welcome.data_hash, 0xee, BR_DATA_HASH_BYTES);

    f = add_sample(BR_MSG_DATA_REQUEST, false);
    f->m.data_request.n_bytes = 1;
    f = add_sample(BR_MSG_DATA_REQUEST, false);
    f->m.data_request.offset = UINT64_MAX;
    f->m.data_request.n_bytes = MC;

    f = add_sample(BR_MSG_DATA_CHUNK, false);  // empty data
    f = add_sample(BR_MSG_DATA_CHUNK, false);  // the last bytes of a huge file
    f->m.data_chunk.offset = UINT64_MAX - 11;
    f->m.data_chunk.total_bytes = UINT64_MAX;
    f->m.data_chunk.n_bytes = 11;
    f->m.data_chunk.data = g_data + 3;
    f = add_sample(BR_MSG_DATA_CHUNK, true);  // largest chunk
    f->m.data_chunk.total_bytes = (uint64_t)MC;
    f->m.data_chunk.n_bytes = MC;
    f->m.data_chunk.data = g_data;

    f = add_sample(BR_MSG_PROGRESS, false);
    f = add_sample(BR_MSG_PROGRESS, false);
    f->m.progress.step = UINT64_MAX;
    f->m.progress.samples = UINT64_MAX;

    f = add_sample(BR_MSG_ROUND_OPEN, false);
    f->m.round_open.target_samples = 1;
    f = add_sample(BR_MSG_ROUND_OPEN, false);
    f->m.round_open.round_id = UINT64_MAX;
    f->m.round_open.step = UINT64_MAX;
    f->m.round_open.target_samples = UINT64_MAX;
    f->m.round_open.sample_start = UINT64_MAX;
    f->m.round_open.n_samples = UINT64_MAX;
    f->m.round_open.params_hash = UINT64_MAX;

    f = add_sample(BR_MSG_ROUND_CLOSE, false);
    f = add_sample(BR_MSG_ROUND_CLOSE, false);
    f->m.round_close.round_id = UINT64_MAX;
    f->m.round_close.accepted_samples = UINT64_MAX;
    f->m.round_close.samples = UINT64_MAX;
    f->m.round_close.tokens = UINT64_MAX;
    f->m.round_close.participants = UINT32_MAX;
    f->m.round_close.loss_sum = -1.5e300;
    f->m.round_close.aux_sum = 0.25;

    f = add_sample(BR_MSG_GRAD_CHUNK, false);  // one fp16 element
    f->m.grad_chunk.samples = 1;
    f->m.grad_chunk.n_elems = 1;
    f->m.grad_chunk.codec = BR_CODEC_FP16;
    f->m.grad_chunk.data = g_data;
    f = add_sample(BR_MSG_GRAD_CHUNK, false);  // range ending at UINT64_MAX, fp32
    f->m.grad_chunk.round_id = UINT64_MAX;
    f->m.grad_chunk.offset = UINT64_MAX - 7;
    f->m.grad_chunk.samples = UINT64_MAX;
    f->m.grad_chunk.tokens = UINT64_MAX;
    f->m.grad_chunk.loss_sum = 1e308;
    f->m.grad_chunk.aux_sum = -0.0;
    f->m.grad_chunk.n_elems = 7;
    f->m.grad_chunk.codec = BR_CODEC_FP32;
    f->m.grad_chunk.data = g_data + 100;
    f = add_sample(BR_MSG_GRAD_CHUNK, true);  // exactly the chunk limit in fp16
    f->m.grad_chunk.round_id = 3;
    f->m.grad_chunk.offset = 1000;
    f->m.grad_chunk.samples = 4096;
    f->m.grad_chunk.n_elems = MC / 2;
    f->m.grad_chunk.codec = BR_CODEC_FP16;
    f->m.grad_chunk.data = g_data;
    f = add_sample(BR_MSG_GRAD_CHUNK, false);  // int8: 300 elements, 3 blocks (the last 44)
    f->m.grad_chunk.round_id = 5;
    f->m.grad_chunk.offset = 256;
    f->m.grad_chunk.samples = 8;
    f->m.grad_chunk.tokens = 1024;
    f->m.grad_chunk.loss_sum = 12.5;
    f->m.grad_chunk.n_elems = INT8_SAMPLE_N;
    f->m.grad_chunk.codec = BR_CODEC_INT8;
    f->m.grad_chunk.data = g_int8;
    f = add_sample(BR_MSG_GRAD_CHUNK, true);  // exactly the chunk limit in int8
    f->m.grad_chunk.samples = 1;
    f->m.grad_chunk.n_elems = INT8_LIMIT_N;
    f->m.grad_chunk.codec = BR_CODEC_INT8;
    f->m.grad_chunk.data = g_data;

    f = add_sample(BR_MSG_AVG_CHUNK, false);
    f->m.avg_chunk.n_elems = 3;
    f->m.avg_chunk.codec = BR_CODEC_FP32;
    f->m.avg_chunk.data = g_data + 7;
    f = add_sample(BR_MSG_AVG_CHUNK, false);
    f->m.avg_chunk.round_id = UINT64_MAX;
    f->m.avg_chunk.offset = UINT64_MAX - 5;
    f->m.avg_chunk.n_elems = 5;
    f->m.avg_chunk.codec = BR_CODEC_FP16;
    f->m.avg_chunk.data = g_data + 9;
    f = add_sample(BR_MSG_AVG_CHUNK, true);  // exactly the chunk limit in fp32
    f->m.avg_chunk.round_id = 3;
    f->m.avg_chunk.n_elems = MC / 4;
    f->m.avg_chunk.codec = BR_CODEC_FP32;
    f->m.avg_chunk.data = g_data;
    f = add_sample(BR_MSG_AVG_CHUNK, false);  // int8: 129 elements (a block and one)
    f->m.avg_chunk.round_id = UINT64_MAX;
    f->m.avg_chunk.offset = UINT64_MAX - 129;
    f->m.avg_chunk.n_elems = 129;
    f->m.avg_chunk.codec = BR_CODEC_INT8;
    f->m.avg_chunk.data = g_int8;

    f = add_sample(BR_MSG_HEARTBEAT, false);
    f = add_sample(BR_MSG_HEARTBEAT, false);
    f->m.heartbeat.time_us = UINT64_MAX;

    f = add_sample(BR_MSG_ERROR, false);
    f->m.error.code = 1;
    f = add_sample(BR_MSG_ERROR, false);
    f->m.error.code = UINT32_MAX;
    fill_repeat(f->m.error.message, "\xe2\x80\x94x", BR_PROTO_MAX_MESSAGE_BYTES);  // "—x"

    f = add_sample(BR_MSG_BYE, false);
    f = add_sample(BR_MSG_BYE, false);
    f->m.bye.reason = UINT32_MAX;

    // the link check
    f = add_sample(BR_MSG_PROBE, false);  // empty: a round-trip probe
    f = add_sample(BR_MSG_PROBE, false);
    f->m.probe.seq = UINT32_MAX;
    f->m.probe.n_bytes = 100;
    f->m.probe.data = g_data;
    f = add_sample(BR_MSG_PROBE_ACK, false);
    f = add_sample(BR_MSG_PROBE_ACK, false);
    f->m.probe_ack = (BrProbeAck){.seq = UINT32_MAX, .bytes = UINT64_MAX, .elapsed_us = UINT64_MAX};
}

// Index of the k-th sample of a type.
static int S(BrMsgType type, int k) {
    make_samples();
    for (int i = 0; i < g_n_samples; i++)
        if (g_samples[i].type == type && k-- == 0) return i;
    CHECK(0, "no sample %d of type %d", k, type);
}

// Encodes sample i into a new buffer; returns its size.
static uint8_t *encode_sample(int i, size_t *n) {
    size_t cap = br_proto_max_frame_bytes(NULL);
    uint8_t *buf = malloc(cap);
    CHECK(buf, "out of memory");
    char err[CX_ERRLEN];
    int r = br_proto_encode(buf, cap, &g_samples[i], NULL, err);
    if (r < 0) {
        fprintf(stderr, "\n  sample %d (%s): %s\n", i, br_proto_type_name(g_samples[i].type), err);
        CU_FAIL_FATAL("encoding a valid sample failed");
    }
    *n = (size_t)r;
    return buf;
}

// Feeds buf[0..n) to d in slices of slice() bytes, collecting up to max frames.
// Returns the final status (BR_PROTO_ERROR, or NEED_MORE once all bytes are consumed) and
// the frames. Chunk data in frames[] would dangle after the next feed, so frames are
// checked by re-encoding them right away: reenc[k] (cap each) holds frame k's encoding.
typedef size_t (*SliceFn)(size_t pos, size_t left);

static size_t slice_all(size_t pos, size_t left) {
    (void)pos;
    return left;
}

static size_t slice_one(size_t pos, size_t left) {
    (void)pos;
    (void)left;
    return 1;
}

static size_t slice_random(size_t pos, size_t left) {
    (void)pos;
    (void)left;
    uint64_t r = rnd();
    return (r & 3) == 0 ? 1 + (r >> 8) % 3 : 1 + (r >> 8) % 97;
}

typedef struct FeedResult {
    int status;          // BR_PROTO_ERROR, or BR_PROTO_NEED_MORE when everything was consumed
    int n_frames;
    size_t consumed;     // bytes consumed in total
    size_t pending;      // br_proto_decoder_pending at the end
    size_t reenc_bytes;  // sum of the frames' re-encoded sizes
    uint32_t reenc_crc;  // CRC32C of the frames' re-encodings, in order
    int peer_major;      // br_proto_decoder_peer_major at the error
    bool reenc_failed;   // a decoded frame could not be re-encoded
    uint64_t offsets;    // hash of the frames' stream offsets
    char err[CX_ERRLEN];
} FeedResult;

static uint8_t g_reenc[HDR + BR_PROTO_CHUNK_OVERHEAD + BR_PROTO_DEFAULT_CHUNK_BYTES];

static FeedResult feed_stream(const uint8_t *buf, size_t n, SliceFn slice,
                              const BrProtoLimits *lim) {
    FeedResult res = {.status = BR_PROTO_NEED_MORE};
    BrProtoDecoder d;
    char err[CX_ERRLEN];
    CHECK(br_proto_decoder_init(&d, lim, err) == 0, "%s", err);
    static BrFrame fr;
    size_t pos = 0;
    while (pos < n) {
        size_t want = slice(pos, n - pos);
        if (want > n - pos) want = n - pos;
        size_t off = 0;
        while (off < want) {
            size_t used = 12345, given = want - off;
            int r = br_proto_decoder_feed(&d, buf + pos + off, given, &used, &fr);
            CU_ASSERT(used <= given);
            off += used;
            if (r == BR_PROTO_ERROR) {
                res.status = BR_PROTO_ERROR;
                snprintf(res.err, sizeof res.err, "%s", br_proto_decoder_error(&d));
                res.peer_major = br_proto_decoder_peer_major(&d);
                // Permanent: more input is refused without consuming anything.
                used = 12345;
                CU_ASSERT(br_proto_decoder_feed(&d, buf, n, &used, &fr) == BR_PROTO_ERROR);
                CU_ASSERT(used == 0);
                goto done;
            }
            if (r == BR_PROTO_FRAME) {
                res.n_frames++;
                res.offsets = res.offsets * 1000003u + fr.stream_offset + 1;
                CU_ASSERT(fr.stream_offset + HDR + fr.payload_bytes == d.offset);
                CU_ASSERT(br_proto_decoder_capacity(&d) <= br_proto_max_frame_bytes(lim) - HDR);
                int e = br_proto_encode(g_reenc, sizeof g_reenc, &fr, lim, err);
                if (e < 0) {
                    res.reenc_failed = true;
                } else {
                    res.reenc_bytes += (size_t)e;
                    res.reenc_crc = br_crc32c(res.reenc_crc, g_reenc, (size_t)e);
                }
            } else {
                CU_ASSERT(r == BR_PROTO_NEED_MORE);
                CU_ASSERT(used == given);  // NEED_MORE consumes everything given
            }
        }
        pos += want;
    }
done:
    res.consumed = (size_t)d.offset;
    res.pending = br_proto_decoder_pending(&d);
    br_proto_decoder_free(&d);
    return res;
}

// ---- tests: checksum, UTF-8, golden bytes ----

static uint32_t crc32c_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
    }
    return ~c;
}

static void test_crc32c_vectors(void) {
    CU_ASSERT_EQUAL(br_crc32c(0, "123456789", 9), 0xe3069283u);
    CU_ASSERT_EQUAL(br_crc32c(0, "", 0), 0u);
    // RFC 3720 appendix B.4
    uint8_t b[48];
    memset(b, 0, 32);
    CU_ASSERT_EQUAL(br_crc32c(0, b, 32), 0x8a9136aau);
    memset(b, 0xff, 32);
    CU_ASSERT_EQUAL(br_crc32c(0, b, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    CU_ASSERT_EQUAL(br_crc32c(0, b, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    CU_ASSERT_EQUAL(br_crc32c(0, b, 32), 0x113fdb5cu);
    static const uint8_t pdu[48] = {
        0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0x04, 0,
        0, 0, 0, 0x14, 0, 0, 0, 0x18, 0x28, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0};
    CU_ASSERT_EQUAL(br_crc32c(0, pdu, sizeof pdu), 0xd9963a56u);
}

static void test_crc32c_reference(void) {
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rnd();
    // The table against the bitwise definition: every single byte value, and random data.
    for (int v = 0; v < 256; v++) {
        uint8_t c = (uint8_t)v;
        CU_ASSERT_EQUAL(br_crc32c(0, &c, 1), crc32c_bitwise(&c, 1));
    }
    CU_ASSERT_EQUAL(br_crc32c(0, buf, sizeof buf), crc32c_bitwise(buf, sizeof buf));
    // Chaining at every split point gives the one-shot value.
    uint32_t whole = br_crc32c(0, buf, 300);
    for (size_t k = 0; k <= 300; k++)
        CU_ASSERT_EQUAL(br_crc32c(br_crc32c(0, buf, k), buf + k, 300 - k), whole);
}

static void test_utf8(void) {
    static const struct {
        const char *s;
        size_t n;
        bool ok;
    } v[] = {
        {"", 0, true},
        {"plain ascii", 11, true},
        {"\xd0\x9f\xd1\x80\xd0\xb8", 6, true},       // "При"
        {"\xe2\x82\xac", 3, true},                   // U+20AC
        {"\xef\xbf\xbf", 3, true},                   // U+FFFF
        {"\xf0\x90\x80\x80", 4, true},               // U+10000
        {"\xf4\x8f\xbf\xbf", 4, true},               // U+10FFFF
        {"a\0b", 3, false},                          // NUL
        {"\x80", 1, false},                          // lone continuation
        {"\xc0\xaf", 2, false},                      // overlong '/'
        {"\xc1\xbf", 2, false},                      // overlong
        {"\xe0\x80\xaf", 3, false},                  // overlong 3-byte
        {"\xe0\x9f\xbf", 3, false},                  // overlong 3-byte
        {"\xed\xa0\x80", 3, false},                  // surrogate U+D800
        {"\xed\xbf\xbf", 3, false},                  // surrogate U+DFFF
        {"\xf0\x8f\xbf\xbf", 4, false},              // overlong 4-byte
        {"\xf4\x90\x80\x80", 4, false},              // above U+10FFFF
        {"\xf5\x80\x80\x80", 4, false},
        {"\xff", 1, false},
        {"\xd0", 1, false},                          // truncated
        {"\xe2\x82", 2, false},                      // truncated
        {"\xe2\x28\xa1", 3, false},                  // bad continuation
        {"\xf0\x9f\x9a", 3, false},                  // truncated 4-byte
    };
    for (size_t i = 0; i < NELEM(v); i++) {
        bool got = br_proto_utf8_valid((const uint8_t *)v[i].s, v[i].n);
        if (got != v[i].ok) fprintf(stderr, "\n  utf8 vector %zu: got %d\n", i, got);
        CU_ASSERT_EQUAL(got, v[i].ok);
    }
}

// One frame of every type (and each chunk codec), written byte by byte from the layout in
// bridge/proto.h, not from the encoder: struct.pack('<...') field by field in Python, the
// CRC32C by a bitwise Python loop (the values are noted next to each checksum, and
// crc32c_bitwise checks them again here). Each field's bytes are on their own line.
static const uint8_t g_hello[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x01, 0x00,  // major 1, minor 1, type 1, flags 0
    0x21, 0x00, 0x00, 0x00,  // payload_bytes 33
    0x6e, 0x32, 0x2d, 0xbd,  // header CRC32C 0xbd2d326e (Python, bitwise)
    0x84, 0x59, 0xf8, 0x1e,  // frame CRC32C 0x1ef85984 (Python, bitwise)
    0x01,  // u8 major 1
    0x00,  // u8 minor 0
    0x01,  // u8 flags: bit 0 resume
    0x00,  // u8 reserved
    0x0e, 0x00, 0x00, 0x00,  // u32 codecs: bits 1 fp32, 2 fp16, 3 int8
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,  // identity 0x10..0x1f
    0x03, 0x00,  // u16 token length 3
    0x74, 0x6f, 0x6b,  // token "tok"
    0x02, 0x00,  // u16 name length 2
    0xc3, 0xa9,  // name "é" (U+00E9)
};
static const uint8_t g_welcome_1_0[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x00, 0x02, 0x00,  // major 1, minor 0, type 2, flags 0
    0x44, 0x00, 0x00, 0x00,  // payload_bytes 68
    0x5b, 0x05, 0x76, 0x3b,  // header CRC32C 0x3b76055b (Python, bitwise)
    0x40, 0xe0, 0x3b, 0xc4,  // frame CRC32C 0xc43be040 (Python, bitwise)
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // u64 session id
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,  // identity 0xa0..0xaf
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 step 7
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 samples_seen 256
    0x45, 0x23, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 n_params 0x12345
    0x01, 0xef, 0xcd, 0xab, 0x00, 0x00, 0x00, 0x00,  // u64 state_bytes 0xabcdef01
    0x30, 0x75, 0x00, 0x00,  // u32 round_deadline_ms 30000
    0x00, 0x00, 0x10, 0x00,  // u32 max_chunk_bytes 1 MiB
    0x02,  // u8 codec 2 (fp16)
    0x00, 0x00, 0x00,  // 3 reserved
};
static const uint8_t g_welcome[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x02, 0x00,  // major 1, minor 1, type 2, flags 0
    0x6c, 0x00, 0x00, 0x00,  // payload_bytes 108
    0xfe, 0x5e, 0x14, 0x72,  // header CRC32C 0x72145efe (Python, bitwise)
    0x48, 0x7b, 0xcf, 0x91,  // frame CRC32C 0x91cf7b48 (Python, bitwise)
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // u64 session id
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,  // identity 0xa0..0xaf
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 step 7
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 samples_seen 256
    0x45, 0x23, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 n_params 0x12345
    0x01, 0xef, 0xcd, 0xab, 0x00, 0x00, 0x00, 0x00,  // u64 state_bytes 0xabcdef01
    0x30, 0x75, 0x00, 0x00,  // u32 round_deadline_ms 30000
    0x00, 0x00, 0x10, 0x00,  // u32 max_chunk_bytes 1 MiB
    0x02,  // u8 codec 2 (fp16)
    0x00, 0x00, 0x00,  // 3 reserved
    0x5c, 0x17, 0xbc, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 data_bytes 12326748 (1.1)
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,  // data hash 0x20..0x2f
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,  // ... 0x30..0x3f
};
static const uint8_t g_state_request[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x03, 0x00,  // major 1, minor 1, type 3, flags 0
    0x0c, 0x00, 0x00, 0x00,  // payload_bytes 12
    0x8b, 0x7e, 0xa7, 0xe1,  // header CRC32C 0xe1a77e8b (Python, bitwise)
    0xb7, 0xeb, 0x71, 0xf7,  // frame CRC32C 0xf771ebb7 (Python, bitwise)
    0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // u64 offset 0x100000002
    0x00, 0x04, 0x00, 0x00,  // u32 n_bytes 1024
};
static const uint8_t g_state_chunk[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x04, 0x00,  // major 1, minor 1, type 4, flags 0
    0x17, 0x00, 0x00, 0x00,  // payload_bytes 23
    0xc4, 0xd9, 0xec, 0x1a,  // header CRC32C 0x1aecd9c4 (Python, bitwise)
    0x29, 0x59, 0xf5, 0x32,  // frame CRC32C 0x32f55929 (Python, bitwise)
    0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 offset 8
    0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 total_bytes 11
    0x03, 0x00, 0x00, 0x00,  // u32 n_bytes 3
    0x61, 0x62, 0x63,  // state bytes "abc"
};
static const uint8_t g_progress[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x05, 0x00,  // major 1, minor 1, type 5, flags 0
    0x10, 0x00, 0x00, 0x00,  // payload_bytes 16
    0x17, 0x0a, 0xdc, 0xec,  // header CRC32C 0xecdc0a17 (Python, bitwise)
    0xec, 0x93, 0xe3, 0x02,  // frame CRC32C 0x02e393ec (Python, bitwise)
    0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 step 42
    0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 samples 258
};
static const uint8_t g_round_open[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x06, 0x00,  // major 1, minor 1, type 6, flags 0
    0x30, 0x00, 0x00, 0x00,  // payload_bytes 48
    0x46, 0xd5, 0x45, 0x0f,  // header CRC32C 0x0f45d546 (Python, bitwise)
    0xba, 0x7c, 0x52, 0xb9,  // frame CRC32C 0xb9527cba (Python, bitwise)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 round id 5
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 step 4
    0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 target samples 24
    0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 sample start 100
    0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 sample count 6
    0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,  // u64 parameter hash
};
static const uint8_t g_round_close[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x07, 0x00,  // major 1, minor 1, type 7, flags 0
    0x38, 0x00, 0x00, 0x00,  // payload_bytes 56
    0xb9, 0xdd, 0x31, 0x16,  // header CRC32C 0x1631ddb9 (Python, bitwise)
    0xfb, 0x9e, 0x55, 0xae,  // frame CRC32C 0xae559efb (Python, bitwise)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 round id 5
    0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 accepted samples 6
    0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 round samples 24
    0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 round tokens 1000
    0x03, 0x00, 0x00, 0x00,  // u32 participants 3
    0x00, 0x00, 0x00, 0x00,  // 4 reserved
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f,  // f64 loss sum 1.5 (binary64 0x3ff8000000000000)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd0, 0xbf,  // f64 aux sum -0.25 (0xbfd0000000000000)
};
static const uint8_t g_grad_chunk[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x08, 0x00,  // major 1, minor 1, type 8, flags 0
    0x40, 0x00, 0x00, 0x00,  // payload_bytes 64
    0xbc, 0xa0, 0xdd, 0x93,  // header CRC32C 0x93dda0bc (Python, bitwise)
    0x0a, 0x7d, 0x76, 0xf0,  // frame CRC32C 0xf0767d0a (Python, bitwise)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 round id 5
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 offset 256 elements
    0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 samples 6
    0xfa, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 tokens 250
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40,  // f64 loss sum 2.0
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f,  // f64 aux sum 0.5
    0x02, 0x00, 0x00, 0x00,  // u32 n_elems 2
    0x01,  // u8 codec 1 (fp32)
    0x00, 0x00, 0x00,  // 3 reserved
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0,  // fp32 1.0, -2.5
};
static const uint8_t g_avg_chunk_fp16[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x09, 0x00,  // major 1, minor 1, type 9, flags 0
    0x1e, 0x00, 0x00, 0x00,  // payload_bytes 30
    0xeb, 0x54, 0x2e, 0x0c,  // header CRC32C 0x0c2e54eb (Python, bitwise)
    0xaa, 0x05, 0xf5, 0xb2,  // frame CRC32C 0xb2f505aa (Python, bitwise)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 round id 5
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 offset 0
    0x03, 0x00, 0x00, 0x00,  // u32 n_elems 3
    0x02,  // u8 codec 2 (fp16)
    0x00, 0x00, 0x00,  // 3 reserved
    0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38,  // fp16 1.0, -2.0, 0.5
};
static const uint8_t g_avg_chunk_int8[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x09, 0x00,  // major 1, minor 1, type 9, flags 0
    0x1e, 0x00, 0x00, 0x00,  // payload_bytes 30
    0xeb, 0x54, 0x2e, 0x0c,  // header CRC32C 0x0c2e54eb (Python, bitwise)
    0xae, 0xd0, 0x30, 0x25,  // frame CRC32C 0x2530d0ae (Python, bitwise)
    0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 round id 6
    0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 offset 128
    0x02, 0x00, 0x00, 0x00,  // u32 n_elems 2
    0x03,  // u8 codec 3 (int8)
    0x00, 0x00, 0x00,  // 3 reserved
    0x00, 0x00, 0x00, 0x3f,  // int8: 1 block, f32 scale 0.5
    0x7f, 0x81,  // int8 values 127, -127
};
static const uint8_t g_heartbeat[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x0a, 0x00,  // major 1, minor 1, type 10, flags 0
    0x08, 0x00, 0x00, 0x00,  // payload_bytes 8
    0x7e, 0x3c, 0xb3, 0x15,  // header CRC32C 0x15b33c7e (Python, bitwise)
    0xcb, 0x05, 0xb1, 0x81,  // frame CRC32C 0x81b105cb (Python, bitwise)
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // u64 time_us
};
static const uint8_t g_error[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x0b, 0x00,  // major 1, minor 1, type 11, flags 0
    0x09, 0x00, 0x00, 0x00,  // payload_bytes 9
    0xdf, 0xfd, 0xc6, 0x27,  // header CRC32C 0x27c6fddf (Python, bitwise)
    0xef, 0x47, 0x8b, 0x76,  // frame CRC32C 0x768b47ef (Python, bitwise)
    0x04, 0x00, 0x00, 0x00,  // u32 code 4 (BAD_DATA)
    0x03, 0x00,  // u16 message length 3
    0x62, 0x61, 0x64,  // message "bad"
};
static const uint8_t g_bye[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x0c, 0x00,  // major 1, minor 1, type 12, flags 0
    0x04, 0x00, 0x00, 0x00,  // payload_bytes 4
    0xdf, 0xf9, 0xac, 0xf1,  // header CRC32C 0xf1acf9df (Python, bitwise)
    0x9e, 0xaf, 0xb1, 0x85,  // frame CRC32C 0x85b1af9e (Python, bitwise)
    0xef, 0xbe, 0xad, 0xde,  // u32 reason 0xdeadbeef
};
// the link check (tests/ref/proto_ref.py's frame())
static const uint8_t g_probe[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x0f, 0x00,  // major 1, minor 1, type 15, flags 0
    0x0b, 0x00, 0x00, 0x00,  // payload_bytes 11
    0x29, 0xe9, 0x54, 0x2a,  // header CRC32C 0x2a54e929 (Python, bitwise)
    0x3b, 0x52, 0x80, 0x17,  // frame CRC32C 0x1780523b (Python, bitwise)
    0x04, 0x03, 0x02, 0x01,  // u32 sequence 0x01020304
    0x03, 0x00, 0x00, 0x00,  // u32 n_bytes 3
    0x61, 0x62, 0x63,        // filler "abc"
};
static const uint8_t g_probe_ack[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x10, 0x00,  // major 1, minor 1, type 16, flags 0
    0x18, 0x00, 0x00, 0x00,  // payload_bytes 24
    0xa1, 0x05, 0x51, 0x87,  // header CRC32C 0x875105a1 (Python, bitwise)
    0x87, 0x08, 0xb0, 0x5a,  // frame CRC32C 0x5ab00887 (Python, bitwise)
    0x04, 0x03, 0x02, 0x01,  // u32 sequence 0x01020304
    0x00, 0x00, 0x00, 0x00,  // res
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // u64 bytes
    0x78, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00,  // u64 elapsed_us
};

static const uint8_t g_data_request[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x0d, 0x00,  // major 1, minor 1, type 13, flags 0
    0x0c, 0x00, 0x00, 0x00,  // payload_bytes 12
    0x20, 0xf1, 0xd8, 0xe8,  // header CRC32C 0xe8d8f120 (Python, bitwise)
    0xe3, 0x2c, 0xdb, 0xf2,  // frame CRC32C 0xf2db2ce3 (Python, bitwise)
    0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,  // u64 offset 0x200000001
    0x00, 0x00, 0x01, 0x00,  // u32 n_bytes 65536
};
static const uint8_t g_data_chunk[] = {
    0x43, 0x58, 0x42, 0x52,  // magic "CXBR"
    0x01, 0x01, 0x0e, 0x00,  // major 1, minor 1, type 14, flags 0
    0x19, 0x00, 0x00, 0x00,  // payload_bytes 25
    0x8c, 0x10, 0x67, 0x93,  // header CRC32C 0x9367108c (Python, bitwise)
    0xbc, 0x50, 0x7e, 0xed,  // frame CRC32C 0xed7e50bc (Python, bitwise)
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 offset 4
    0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 total_bytes 9
    0x05, 0x00, 0x00, 0x00,  // u32 n_bytes 5
    0x48, 0x44, 0x46, 0x0d, 0x0a,  // data bytes "HDF\r\n"
};

typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t n;
    BrFrame f;  // the message those bytes hold
} Golden;

static void test_golden_bytes(void) {
    static const uint8_t abc[] = {'a', 'b', 'c'};
    static const uint8_t grad[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0};  // 1.0f, -2.5f
    static const uint8_t avg16[] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38};  // 1.0, -2.0, 0.5 (fp16)
    static const uint8_t avg8[] = {0x00, 0x00, 0x00, 0x3f, 0x7f, 0x81};   // scale 0.5f, 127, -127
    Golden g[] = {
        {"HELLO", g_hello, sizeof g_hello, {.type = BR_MSG_HELLO}},
        {"WELCOME", g_welcome, sizeof g_welcome, {.type = BR_MSG_WELCOME}},
        {"STATE_REQUEST", g_state_request, sizeof g_state_request, {.type = BR_MSG_STATE_REQUEST}},
        {"STATE_CHUNK", g_state_chunk, sizeof g_state_chunk, {.type = BR_MSG_STATE_CHUNK}},
        {"PROGRESS", g_progress, sizeof g_progress, {.type = BR_MSG_PROGRESS}},
        {"ROUND_OPEN", g_round_open, sizeof g_round_open, {.type = BR_MSG_ROUND_OPEN}},
        {"ROUND_CLOSE", g_round_close, sizeof g_round_close, {.type = BR_MSG_ROUND_CLOSE}},
        {"GRAD_CHUNK", g_grad_chunk, sizeof g_grad_chunk, {.type = BR_MSG_GRAD_CHUNK}},
        {"AVG_CHUNK fp16", g_avg_chunk_fp16, sizeof g_avg_chunk_fp16, {.type = BR_MSG_AVG_CHUNK}},
        {"AVG_CHUNK int8", g_avg_chunk_int8, sizeof g_avg_chunk_int8, {.type = BR_MSG_AVG_CHUNK}},
        {"HEARTBEAT", g_heartbeat, sizeof g_heartbeat, {.type = BR_MSG_HEARTBEAT}},
        {"ERROR", g_error, sizeof g_error, {.type = BR_MSG_ERROR}},
        {"BYE", g_bye, sizeof g_bye, {.type = BR_MSG_BYE}},
        {"DATA_REQUEST", g_data_request, sizeof g_data_request, {.type = BR_MSG_DATA_REQUEST}},
        {"DATA_CHUNK", g_data_chunk, sizeof g_data_chunk, {.type = BR_MSG_DATA_CHUNK}},
        {"PROBE", g_probe, sizeof g_probe, {.type = BR_MSG_PROBE}},
        {"PROBE_ACK", g_probe_ack, sizeof g_probe_ack, {.type = BR_MSG_PROBE_ACK}},
    };
    BrHello *h = &g[0].f.m.hello;
    *h = (BrHello){.version_major = 1, .version_minor = 0, .resume = true, .codecs = 0x0e};
    for (int i = 0; i < 16; i++) h->identity.bytes[i] = (uint8_t)(0x10 + i);
    snprintf(h->token, sizeof h->token, "tok");
    snprintf(h->name, sizeof h->name, "\xc3\xa9");
    BrWelcome *w = &g[1].f.m.welcome;
    *w = (BrWelcome){.session_id = 0x1122334455667788ull, .step = 7, .samples_seen = 256,
                     .n_params = 0x12345, .state_bytes = 0xabcdef01u, .round_deadline_ms = 30000,
                     .max_chunk_bytes = 1u << 20, .codec = BR_CODEC_FP16};
    for (int i = 0; i < 16; i++) w->identity.bytes[i] = (uint8_t)(0xa0 + i);
    w->data_bytes = 12326748;
    for (int i = 0; i < BR_DATA_HASH_BYTES; i++) w->data_hash[i] = (uint8_t)(0x20 + i);
    g[2].f.m.state_request = (BrStateRequest){.offset = 0x100000002ull, .n_bytes = 1024};
    g[3].f.m.state_chunk = (BrStateChunk){.offset = 8, .total_bytes = 11, .n_bytes = 3, .data = abc};
    g[4].f.m.progress = (BrProgress){.step = 42, .samples = 258};
    g[5].f.m.round_open = (BrRoundOpen){.round_id = 5, .step = 4, .target_samples = 24,
                                        .sample_start = 100, .n_samples = 6,
                                        .params_hash = 0xfedcba9876543210ull};
    g[6].f.m.round_close = (BrRoundClose){.round_id = 5, .accepted_samples = 6, .samples = 24,
                                          .tokens = 1000, .participants = 3, .loss_sum = 1.5,
                                          .aux_sum = -0.25};
    g[7].f.m.grad_chunk = (BrGradChunk){.round_id = 5, .offset = 256, .samples = 6, .tokens = 250,
                                        .loss_sum = 2.0, .aux_sum = 0.5, .n_elems = 2,
                                        .codec = BR_CODEC_FP32, .data = grad};
    g[8].f.m.avg_chunk = (BrAvgChunk){.round_id = 5, .offset = 0, .n_elems = 3,
                                      .codec = BR_CODEC_FP16, .data = avg16};
    g[9].f.m.avg_chunk = (BrAvgChunk){.round_id = 6, .offset = 128, .n_elems = 2,
                                      .codec = BR_CODEC_INT8, .data = avg8};
    g[10].f.m.heartbeat = (BrHeartbeat){.time_us = 0x0102030405060708ull};
    g[11].f.m.error.code = BR_ERR_BAD_DATA;
    snprintf(g[11].f.m.error.message, sizeof g[11].f.m.error.message, "bad");
    g[12].f.m.bye = (BrBye){.reason = 0xdeadbeefu};
    static const uint8_t hdf[] = {'H', 'D', 'F', '\r', '\n'};
    g[13].f.m.data_request = (BrDataRequest){.offset = 0x200000001ull, .n_bytes = 65536};
    g[14].f.m.data_chunk = (BrDataChunk){.offset = 4, .total_bytes = 9, .n_bytes = 5, .data = hdf};
    g[15].f.m.probe = (BrProbe){.seq = 0x01020304u, .n_bytes = 3, .data = abc};
    g[16].f.m.probe_ack = (BrProbeAck){.seq = 0x01020304u, .bytes = 0x1122334455667788ull,
                                       .elapsed_us = 0x12345678u};
    unsigned types = 0;
    for (size_t i = 0; i < NELEM(g); i++) {
        const Golden *x = &g[i];
        char err[CX_ERRLEN] = "";
        uint8_t buf[256];
        types |= BR_MSG_BIT(x->f.type);
        // the noted checksums, again by the bitwise definition
        CU_ASSERT_EQUAL(get32(x->bytes + 12), crc32c_bitwise(x->bytes, 12));
        uint8_t tmp[256];
        memcpy(tmp, x->bytes, x->n);
        memmove(tmp + 16, tmp + 20, x->n - 20);  // bytes 0..15 followed by the payload
        CU_ASSERT_EQUAL(get32(x->bytes + 16), crc32c_bitwise(tmp, x->n - 4));
        // the encoder writes exactly these bytes
        int len = br_proto_encode(buf, sizeof buf, &x->f, NULL, err);
        if (len != (int)x->n || memcmp(buf, x->bytes, x->n) != 0) {
            fprintf(stderr, "\n  golden %s: encoder wrote %d bytes (%s):", x->name, len, err);
            for (int k = 0; k < len; k++) fprintf(stderr, "%s%02x", k % 16 ? " " : "\n    ", buf[k]);
            fprintf(stderr, "\n");
        }
        CU_ASSERT(len == (int)x->n && memcmp(buf, x->bytes, x->n) == 0);
        // and both decoders read them back to the same message
        BrFrame f;
        size_t used = 0;
        int r = br_proto_decode(x->bytes, x->n, NULL, &f, &used, err);
        if (r != BR_PROTO_FRAME) fprintf(stderr, "\n  golden %s: %s\n", x->name, err);
        CU_ASSERT_EQUAL(r, BR_PROTO_FRAME);
        CU_ASSERT_EQUAL(used, x->n);
        CU_ASSERT(r == BR_PROTO_FRAME && frame_eq(&x->f, &f));
        CU_ASSERT_EQUAL(f.payload_bytes, x->n - HDR);
        BrProtoDecoder d;
        CU_ASSERT_FATAL(br_proto_decoder_init(&d, NULL, err) == 0);
        r = br_proto_decoder_feed(&d, x->bytes, x->n, &used, &f);
        CU_ASSERT(r == BR_PROTO_FRAME && used == x->n && frame_eq(&x->f, &f));
        br_proto_decoder_free(&d);
    }
    CU_ASSERT_EQUAL(types, BR_MSG_ALL);  // every frame type has its golden bytes
    // A 1.0 WELCOME (68 bytes, minor 0: a 1.0 bridge) still decodes, with no training data;
    // this build encodes the same message as 1.1 (its 68 bytes, then 40 zero bytes).
    BrFrame want = g[1].f, f;
    want.m.welcome.data_bytes = 0;
    memset(want.m.welcome.data_hash, 0, BR_DATA_HASH_BYTES);
    char err[CX_ERRLEN] = "";
    size_t used = 0;
    CU_ASSERT_EQUAL(get32(g_welcome_1_0 + 12), crc32c_bitwise(g_welcome_1_0, 12));
    int r = br_proto_decode(g_welcome_1_0, sizeof g_welcome_1_0, NULL, &f, &used, err);
    CU_ASSERT(r == BR_PROTO_FRAME && used == sizeof g_welcome_1_0 && f.version_minor == 0 &&
              frame_eq(&want, &f));
    uint8_t buf[256];
    int len = br_proto_encode(buf, sizeof buf, &want, NULL, err);
    CU_ASSERT_EQUAL(len, HDR + BR_WELCOME_BYTES);
    CU_ASSERT(memcmp(buf + HDR, g_welcome_1_0 + HDR, BR_WELCOME_BYTES_1_0) == 0);
    for (int i = HDR + BR_WELCOME_BYTES_1_0; i < len; i++) CU_ASSERT_EQUAL(buf[i], 0);
}

// ---- tests: round trips ----

static void test_roundtrip(void) {
    make_samples();
    char err[CX_ERRLEN];
    for (int i = 0; i < g_n_samples; i++) {
        size_t n;
        uint8_t *buf = encode_sample(i, &n);
        // one-shot
        BrFrame out;
        size_t used = 0;
        int r = br_proto_decode(buf, n, NULL, &out, &used, err);
        if (r != BR_PROTO_FRAME) fprintf(stderr, "\n  sample %d: %s\n", i, err);
        CU_ASSERT_EQUAL_FATAL(r, BR_PROTO_FRAME);
        CU_ASSERT_EQUAL(used, n);
        CU_ASSERT_EQUAL(out.payload_bytes, n - HDR);
        CU_ASSERT_EQUAL(out.version_major, BR_PROTO_VERSION_MAJOR);
        CU_ASSERT(frame_eq(&g_samples[i], &out));
        // re-encodes to the same bytes
        int e = br_proto_encode(g_reenc, sizeof g_reenc, &out, NULL, err);
        CU_ASSERT(e == (int)n && memcmp(g_reenc, buf, n) == 0);
        // incremental, all at once, plus trailing bytes of the next frame
        BrProtoDecoder d;
        CU_ASSERT_FATAL(br_proto_decoder_init(&d, NULL, err) == 0);
        uint8_t *more = malloc(n + 7);
        memcpy(more, buf, n);
        memcpy(more + n, "CXBR\x01\x00\x0a", 7);
        r = br_proto_decoder_feed(&d, more, n + 7, &used, &out);
        CU_ASSERT_EQUAL(r, BR_PROTO_FRAME);
        CU_ASSERT_EQUAL(used, n);  // stops at the end of the frame
        CU_ASSERT(r == BR_PROTO_FRAME && frame_eq(&g_samples[i], &out));
        CU_ASSERT_EQUAL(br_proto_decoder_pending(&d), 0);
        CU_ASSERT_EQUAL(br_proto_decoder_capacity(&d), n - HDR);  // exactly one payload
        CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, more + n, 7, &used, &out), BR_PROTO_NEED_MORE);
        CU_ASSERT_EQUAL(br_proto_decoder_pending(&d), 7);
        free(more);
        br_proto_decoder_free(&d);
        free(buf);
    }
    // The typed wrappers write the same bytes as br_proto_encode.
    uint8_t a[2048], b[2048];
    for (int i = 0; i < g_n_samples; i++) {
        const BrFrame *f = &g_samples[i];
        if (g_big[i]) continue;
        int ra = br_proto_encode(a, sizeof a, f, NULL, err), rb = -2;
        switch (f->type) {
        case BR_MSG_HELLO: rb = br_proto_encode_hello(b, sizeof b, &f->m.hello, err); break;
        case BR_MSG_WELCOME: rb = br_proto_encode_welcome(b, sizeof b, &f->m.welcome, err); break;
        case BR_MSG_STATE_REQUEST:
            rb = br_proto_encode_state_request(b, sizeof b, &f->m.state_request, NULL, err);
            break;
        case BR_MSG_STATE_CHUNK:
            rb = br_proto_encode_state_chunk(b, sizeof b, &f->m.state_chunk, NULL, err);
            break;
        case BR_MSG_PROGRESS: rb = br_proto_encode_progress(b, sizeof b, &f->m.progress, err); break;
        case BR_MSG_ROUND_OPEN:
            rb = br_proto_encode_round_open(b, sizeof b, &f->m.round_open, err);
            break;
        case BR_MSG_ROUND_CLOSE:
            rb = br_proto_encode_round_close(b, sizeof b, &f->m.round_close, err);
            break;
        case BR_MSG_GRAD_CHUNK:
            rb = br_proto_encode_grad_chunk(b, sizeof b, &f->m.grad_chunk, NULL, err);
            break;
        case BR_MSG_AVG_CHUNK:
            rb = br_proto_encode_avg_chunk(b, sizeof b, &f->m.avg_chunk, NULL, err);
            break;
        case BR_MSG_HEARTBEAT:
            rb = br_proto_encode_heartbeat(b, sizeof b, &f->m.heartbeat, err);
            break;
        case BR_MSG_ERROR: rb = br_proto_encode_error(b, sizeof b, &f->m.error, err); break;
        case BR_MSG_BYE: rb = br_proto_encode_bye(b, sizeof b, &f->m.bye, err); break;
        case BR_MSG_DATA_REQUEST:
            rb = br_proto_encode_data_request(b, sizeof b, &f->m.data_request, NULL, err);
            break;
        case BR_MSG_DATA_CHUNK:
            rb = br_proto_encode_data_chunk(b, sizeof b, &f->m.data_chunk, NULL, err);
            break;
        case BR_MSG_PROBE: rb = br_proto_encode_probe(b, sizeof b, &f->m.probe, NULL, err); break;
        case BR_MSG_PROBE_ACK:
            rb = br_proto_encode_probe_ack(b, sizeof b, &f->m.probe_ack, err);
            break;
        }
        CU_ASSERT(ra > 0 && ra == rb && memcmp(a, b, (size_t)ra) == 0);
    }
}

// Encoding into every too-small capacity fails and writes nothing at or past cap.
static void test_encode_capacity(void) {
    make_samples();
    char err[CX_ERRLEN];
    uint8_t *buf = malloc(2000);
    for (int i = 0; i < g_n_samples; i++) {
        if (g_big[i]) continue;
        size_t n;
        uint8_t *ref = encode_sample(i, &n);
        for (size_t cap = 0; cap < n; cap++) {
            memset(buf, 0xa5, 2000);
            err[0] = '\0';
            CU_ASSERT_EQUAL(br_proto_encode(buf, cap, &g_samples[i], NULL, err), -1);
            CU_ASSERT(strs_have(err, "too small"));
            for (size_t k = cap; k < 2000; k++)
                if (buf[k] != 0xa5) {
                    CU_FAIL("encoder wrote past its capacity");
                    break;
                }
        }
        memset(buf, 0xa5, 2000);
        CU_ASSERT_EQUAL(br_proto_encode(buf, n, &g_samples[i], NULL, err), (int)n);
        CU_ASSERT(memcmp(buf, ref, n) == 0 && buf[n] == 0xa5);
        free(ref);
    }
    free(buf);
    // br_proto_max_frame_bytes holds the largest frame of each type.
    make_samples();
    for (int i = 0; i < g_n_samples; i++) {
        size_t n;
        uint8_t *ref = encode_sample(i, &n);
        CU_ASSERT(n <= br_proto_max_frame_bytes(NULL));
        CU_ASSERT(n - HDR <= br_proto_max_payload(g_samples[i].type, NULL));
        free(ref);
    }
}

// The encoder refuses what the decoder would refuse.
static void test_encode_rejects(void) {
    make_samples();
    char err[CX_ERRLEN];
    static uint8_t buf[HDR + BR_PROTO_CHUNK_OVERHEAD + 2 * BR_PROTO_DEFAULT_CHUNK_BYTES];
    BrFrame f;
    int k = 0;
#define REJECT(setup, needle)                                                           \
    do {                                                                                \
        setup;                                                                          \
        err[0] = '\0';                                                                  \
        int r_ = br_proto_encode(buf, sizeof buf, &f, NULL, err);                       \
        if (r_ != -1 || !strs_have(err, needle))                                        \
            fprintf(stderr, "\n  reject case %d: r=%d err='%s'\n", k, r_, err);         \
        CU_ASSERT(r_ == -1 && strs_have(err, needle));                                  \
        k++;                                                                            \
    } while (0)
    const BrFrame hello = g_samples[S(BR_MSG_HELLO, 2)];
    const BrFrame welcome = g_samples[S(BR_MSG_WELCOME, 0)];
    const BrFrame grad = g_samples[S(BR_MSG_GRAD_CHUNK, 1)];  // 7 fp32 ending at UINT64_MAX
    const BrFrame avg = g_samples[S(BR_MSG_AVG_CHUNK, 0)];
    const BrFrame sc = g_samples[S(BR_MSG_STATE_CHUNK, 1)];
    REJECT((f = hello, f.type = (BrMsgType)0), "unknown message type");
    REJECT((f = hello, f.type = (BrMsgType)(BR_MSG_LAST + 1)), "unknown message type");
    REJECT((f = hello, f.m.hello.version_major = 2), "version major");
    REJECT((f = hello, f.m.hello.codecs = 0), "codec mask");
    REJECT((f = hello, memset(f.m.hello.identity.bytes, 0, 16)), "resume requires");
    REJECT((f = hello, f.m.hello.token[0] = '\0'), "join token of 0 bytes");
    REJECT((f = hello, memset(f.m.hello.token, 'a', sizeof f.m.hello.token)), "more than 256");
    REJECT((f = hello, memset(f.m.hello.name, 'a', sizeof f.m.hello.name)), "more than 128");
    REJECT((f = hello, strcpy(f.m.hello.name, "bad\xff")), "not valid UTF-8");
    REJECT((f = hello, strcpy(f.m.hello.token, "\xed\xa0\x80")), "not valid UTF-8");
    REJECT((f = welcome, memset(f.m.welcome.identity.bytes, 0, 16)), "identity is all zero");
    REJECT((f = welcome, f.m.welcome.round_deadline_ms = 0), "deadline");
    REJECT((f = welcome, f.m.welcome.max_chunk_bytes = BR_PROTO_MIN_CHUNK_BYTES - 1), "max chunk");
    REJECT((f = welcome, f.m.welcome.max_chunk_bytes = BR_PROTO_MAX_CHUNK_BYTES + 1), "max chunk");
    REJECT((f = welcome, f.m.welcome.codec = 0), "unknown codec");
    REJECT((f = welcome, f.m.welcome.codec = 4), "encode WELCOME: unknown codec 4");
    // DATA_REQUEST and DATA_CHUNK: the limits of their STATE_ twins, named as data
    REJECT((f = (BrFrame){.type = BR_MSG_DATA_REQUEST}, f.m.data_request.n_bytes = 0),
           "encode DATA_REQUEST: length 0 outside 1..1048576");
    REJECT((f = (BrFrame){.type = BR_MSG_DATA_REQUEST},
            f.m.data_request.n_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES + 1),
           "encode DATA_REQUEST: length 1048577 outside 1..1048576");
    REJECT((f = (BrFrame){.type = BR_MSG_DATA_CHUNK},
            f.m.data_chunk = (BrDataChunk){.offset = 5, .total_bytes = 7, .n_bytes = 3, .data = buf}),
           "encode DATA_CHUNK: [5, +3) lies outside the 7-byte training data");
    REJECT((f = (BrFrame){.type = BR_MSG_DATA_CHUNK},
            f.m.data_chunk = (BrDataChunk){.total_bytes = UINT64_MAX,
                                           .n_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES + 1, .data = buf}),
           "encode DATA_CHUNK: 1048577 bytes exceed the limit of 1048576");
    REJECT((f = (BrFrame){.type = BR_MSG_DATA_CHUNK},
            f.m.data_chunk = (BrDataChunk){.total_bytes = 4, .n_bytes = 2}),
           "encode DATA_CHUNK: data is NULL");
    REJECT((f.type = BR_MSG_STATE_REQUEST, f.m.state_request.offset = 0,
            f.m.state_request.n_bytes = 0), "length 0");
    REJECT((f.type = BR_MSG_STATE_REQUEST, f.m.state_request.n_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES + 1),
           "outside 1..");
    REJECT((f = sc, f.m.state_chunk.n_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES + 1), "exceed the limit");
    REJECT((f = sc, f.m.state_chunk.total_bytes = 10), "lies outside");
    REJECT((f = sc, f.m.state_chunk.offset = UINT64_MAX), "lies outside");
    REJECT((f = sc, f.m.state_chunk.data = NULL), "data is NULL");
    REJECT((f = (BrFrame){.type = BR_MSG_PROBE}, f.m.probe.n_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES + 1,
            f.m.probe.data = buf),
           "encode PROBE: 1048577 bytes exceed the limit of 1048576");
    REJECT((f = (BrFrame){.type = BR_MSG_PROBE}, f.m.probe.n_bytes = 4), "encode PROBE: data is NULL");
    REJECT((f.type = BR_MSG_ROUND_OPEN, f.m.round_open.target_samples = 0), "target samples");
    REJECT((f = grad, f.m.grad_chunk.samples = 0), "sample count");
    REJECT((f = grad, f.m.grad_chunk.n_elems = 0), "element count is 0");
    REJECT((f = grad, f.m.grad_chunk.codec = 7), "unknown codec");
    REJECT((f = grad, f.m.grad_chunk.offset = UINT64_MAX - 6), "overflows");
    REJECT((f = grad, f.m.grad_chunk.data = NULL), "data is NULL");
    REJECT((f = grad, f.m.grad_chunk.codec = BR_CODEC_FP32,
            f.m.grad_chunk.n_elems = BR_PROTO_DEFAULT_CHUNK_BYTES / 4 + 1), "exceed the chunk limit");
    REJECT((f = avg, f.m.avg_chunk.n_elems = BR_PROTO_DEFAULT_CHUNK_BYTES / 2 + 1),
           "exceed the chunk limit");
    REJECT((f = avg, f.m.avg_chunk.offset = UINT64_MAX), "overflows");
    // int8: the limit applies to the encoded bytes, 4 per started block of 128 plus 1 each
    const BrFrame grad8 = g_samples[S(BR_MSG_GRAD_CHUNK, 4)];   // 1016800 int8: 1048576 bytes
    const BrFrame avg8 = g_samples[S(BR_MSG_AVG_CHUNK, 3)];     // 129 int8
    REJECT((f = grad8, f.m.grad_chunk.n_elems = INT8_LIMIT_N + 1),
           "encode GRAD_CHUNK: 1016801 int8 elements (1048577 bytes) exceed the chunk limit of "
           "1048576 bytes");
    REJECT((f = grad8, f.m.grad_chunk.n_elems = 7944 * 128 + 1),  // a new block: +4 bytes
           "encode GRAD_CHUNK: 1016833 int8 elements (1048613 bytes) exceed the chunk limit of "
           "1048576 bytes");
    REJECT((f = avg8, f.m.avg_chunk.n_elems = INT8_LIMIT_N + 1),
           "encode AVG_CHUNK: 1016801 int8 elements (1048577 bytes) exceed the chunk limit of "
           "1048576 bytes");
    REJECT((f = avg8, f.m.avg_chunk.codec = 4), "encode AVG_CHUNK: unknown codec 4");
    REJECT((f = avg8, f.m.avg_chunk.data = NULL), "data is NULL");
    REJECT((f.type = BR_MSG_ERROR, f.m.error.code = 0, f.m.error.message[0] = '\0'), "code is 0");
    REJECT((f.type = BR_MSG_ERROR, f.m.error.code = 1,
            memset(f.m.error.message, 'x', sizeof f.m.error.message)), "more than 1024");
    REJECT((f.type = BR_MSG_ERROR, f.m.error.code = 1, strcpy(f.m.error.message, "\xc0\x80")),
           "not valid UTF-8");
#undef REJECT
    // Invalid limits.
    BrProtoLimits lim = br_proto_limits_default();
    lim.max_chunk_bytes = 1;
    f = g_samples[0];
    CU_ASSERT_EQUAL(br_proto_encode(buf, sizeof buf, &f, &lim, err), -1);
    CU_ASSERT(strs_have(err, "max_chunk_bytes"));
    // A larger configured limit allows larger chunks, on both sides.
    lim.max_chunk_bytes = 2 * BR_PROTO_DEFAULT_CHUNK_BYTES;
    lim.accept_types = BR_MSG_ALL;
    static uint8_t big[2 * BR_PROTO_DEFAULT_CHUNK_BYTES];
    f = grad;
    f.m.grad_chunk.codec = BR_CODEC_FP32;
    f.m.grad_chunk.offset = 0;
    f.m.grad_chunk.n_elems = (uint32_t)(sizeof big / 4);
    f.m.grad_chunk.data = big;
    CU_ASSERT_EQUAL(br_proto_encode(buf, sizeof buf, &f, NULL, err), -1);
    int n = br_proto_encode(buf, sizeof buf, &f, &lim, err);
    CU_ASSERT_EQUAL(n, HDR + BR_GRAD_CHUNK_FIXED_BYTES + (int)sizeof big);
    BrFrame out;
    size_t used;
    CU_ASSERT_EQUAL(br_proto_decode(buf, (size_t)n, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "exceeds the limit"));
    CU_ASSERT_EQUAL(br_proto_decode(buf, (size_t)n, &lim, &out, &used, err), BR_PROTO_FRAME);
    CU_ASSERT(frame_eq(&f, &out));
}

// A gradient sent as int8 GRAD_CHUNKs and AVG_CHUNKs under a small chunk limit, chunked by
// codec_chunk_elems: the frames decode (incrementally, from one stream) to chunks whose
// int8 decoding, put together, is bit for bit the decoding of the whole vector encoded at
// once; the largest chunk that fits the limit is accepted and one element more is refused
// with the exact message, on both sides.
static void test_int8_chunks(void) {
    enum { N = 1300, LIMIT = 600 };
    char err[CX_ERRLEN];
    BrProtoLimits lim = br_proto_limits_default();
    lim.max_chunk_bytes = LIMIT;
    static float x[N], whole[N], got[N];
    static uint8_t enc_whole[4 * 11 + N], enc[LIMIT], stream[8 * (HDR + 64 + LIMIT)];
    for (int i = 0; i < N; i++) x[i] = (float)((int)(rnd() % 20001) - 10000) * 1e-5f * (float)(1 + i / 128);
    codec_int8_encode(enc_whole, x, N);
    codec_int8_decode(whole, enc_whole, N);
    size_t per = codec_chunk_elems(CODEC_INT8, LIMIT);
    CU_ASSERT_EQUAL_FATAL(per, 512);  // 4 blocks: 528 bytes; 5 would be 660
    for (int type = BR_MSG_GRAD_CHUNK; type <= BR_MSG_AVG_CHUNK; type++) {
        size_t pos = 0;
        int n_frames = 0;
        for (size_t off = 0; off < N; off += per) {
            size_t k = N - off < per ? N - off : per;
            codec_int8_encode(enc, x + off, k);
            BrFrame f = {.type = (BrMsgType)type};
            if (type == BR_MSG_GRAD_CHUNK)
                f.m.grad_chunk = (BrGradChunk){.round_id = 9, .offset = off, .samples = 2,
                                               .n_elems = (uint32_t)k, .codec = BR_CODEC_INT8,
                                               .data = enc};
            else
                f.m.avg_chunk = (BrAvgChunk){.round_id = 9, .offset = off, .n_elems = (uint32_t)k,
                                             .codec = BR_CODEC_INT8, .data = enc};
            int r = br_proto_encode(stream + pos, sizeof stream - pos, &f, &lim, err);
            CU_ASSERT_FATAL(r > 0);
            CU_ASSERT_EQUAL(r, (int)(HDR + (type == BR_MSG_GRAD_CHUNK ? BR_GRAD_CHUNK_FIXED_BYTES
                                                                       : BR_AVG_CHUNK_FIXED_BYTES) +
                                     codec_encoded_bytes(CODEC_INT8, k)));
            pos += (size_t)r;
            n_frames++;
        }
        CU_ASSERT_EQUAL(n_frames, 3);  // 512 + 512 + 276
        BrProtoDecoder d;
        CU_ASSERT_EQUAL_FATAL(br_proto_decoder_init(&d, &lim, err), 0);
        memset(got, 0xff, sizeof got);
        size_t at = 0, used, filled = 0;
        BrFrame out;
        int st, frames = 0;
        while ((st = br_proto_decoder_feed(&d, stream + at, pos - at, &used, &out)) == BR_PROTO_FRAME) {
            at += used;
            frames++;
            CU_ASSERT_FATAL(out.type == (BrMsgType)type);
            uint64_t off = type == BR_MSG_GRAD_CHUNK ? out.m.grad_chunk.offset : out.m.avg_chunk.offset;
            uint32_t k = type == BR_MSG_GRAD_CHUNK ? out.m.grad_chunk.n_elems : out.m.avg_chunk.n_elems;
            const uint8_t *data = type == BR_MSG_GRAD_CHUNK ? out.m.grad_chunk.data : out.m.avg_chunk.data;
            CU_ASSERT_FATAL(off == filled && off + k <= N);
            codec_int8_decode(got + off, data, k);
            filled += k;
        }
        CU_ASSERT_EQUAL(st, BR_PROTO_NEED_MORE);
        CU_ASSERT_EQUAL(frames, 3);
        CU_ASSERT_EQUAL(filled, N);
        CU_ASSERT(memcmp(got, whole, sizeof got) == 0);  // bit for bit
        br_proto_decoder_free(&d);
    }
    // 580 int8 elements take 5 * 4 + 580 = 600 bytes: exactly the limit; 581 take 601.
    static uint8_t data[LIMIT + 1];
    BrFrame f = {.type = BR_MSG_AVG_CHUNK};
    f.m.avg_chunk = (BrAvgChunk){.round_id = 1, .offset = 0, .n_elems = 580,
                                 .codec = BR_CODEC_INT8, .data = data};
    int r = br_proto_encode(stream, sizeof stream, &f, &lim, err);
    CU_ASSERT_EQUAL(r, HDR + BR_AVG_CHUNK_FIXED_BYTES + LIMIT);
    BrFrame out;
    size_t used;
    CU_ASSERT_EQUAL(br_proto_decode(stream, (size_t)r, &lim, &out, &used, err), BR_PROTO_FRAME);
    CU_ASSERT(frame_eq(&f, &out));
    f.m.avg_chunk.n_elems = 581;
    err[0] = '\0';
    CU_ASSERT_EQUAL(br_proto_encode(stream, sizeof stream, &f, &lim, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "encode AVG_CHUNK: 581 int8 elements (601 bytes) exceed the "
                                "chunk limit of 600 bytes");
    // The same frame built by hand (the decoder's side): refused on the element count.
    static uint8_t pl[BR_AVG_CHUNK_FIXED_BYTES + LIMIT + 1];
    memset(pl, 0, sizeof pl);
    put32(pl + 16, 581);
    pl[20] = BR_CODEC_INT8;
    size_t fl = raw_frame(stream, 1, 0, BR_MSG_AVG_CHUNK, 0, pl, BR_AVG_CHUNK_FIXED_BYTES + 601);
    // 625 payload bytes pass the header check (64 + 600 allowed) ...
    CU_ASSERT_EQUAL(br_proto_decode(stream, fl, &lim, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT_STRING_EQUAL(err, "AVG_CHUNK: 581 int8 elements (601 bytes) "
                                "exceed the chunk limit of 600 bytes at stream offset 36");
}

// ---- tests: streams ----

static uint8_t *sample_stream(size_t *n, bool include_big) {
    make_samples();
    size_t cap = 0;
    for (int i = 0; i < g_n_samples; i++) cap += br_proto_max_frame_bytes(NULL);
    uint8_t *s = malloc(cap);
    size_t pos = 0;
    char err[CX_ERRLEN];
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < g_n_samples; i++) {
            if (g_big[i] && (!include_big || rep)) continue;
            int r = br_proto_encode(s + pos, cap - pos, &g_samples[i], NULL, err);
            CHECK(r > 0, "%s", err);
            pos += (size_t)r;
        }
    *n = pos;
    return s;
}

static void test_slicing(void) {
    size_t n;
    uint8_t *s = sample_stream(&n, true);
    FeedResult all = feed_stream(s, n, slice_all, NULL);
    CU_ASSERT_EQUAL(all.status, BR_PROTO_NEED_MORE);
    int n_big = 0;  // big samples are in the stream once
    for (int i = 0; i < g_n_samples; i++) n_big += g_big[i];
    CU_ASSERT_EQUAL(n_big, 5);
    CU_ASSERT_EQUAL(all.n_frames, 2 * g_n_samples - n_big);
    CU_ASSERT_EQUAL(all.consumed, n);
    CU_ASSERT_EQUAL(all.pending, 0);
    CU_ASSERT(!all.reenc_failed);
    CU_ASSERT_EQUAL(all.reenc_bytes, n);               // re-encoding gives the stream back
    CU_ASSERT_EQUAL(all.reenc_crc, br_crc32c(0, s, n));
    for (int rep = 0; rep < 3; rep++) {
        FeedResult r = feed_stream(s, n, rep == 0 ? slice_one : slice_random, NULL);
        CU_ASSERT(r.status == all.status && r.n_frames == all.n_frames &&
                  r.reenc_crc == all.reenc_crc && r.offsets == all.offsets && r.pending == 0);
    }
    free(s);
}

static void test_truncation(void) {
    make_samples();
    char err[CX_ERRLEN];
    for (int i = 0; i < g_n_samples; i++) {
        size_t n;
        uint8_t *buf = encode_sample(i, &n);
        // Big frames: every header prefix and a spread of payload prefixes.
        size_t step = g_big[i] ? 65521 : 1;
        for (size_t k = 0; k < n; k += (k < HDR + 40 ? 1 : step)) {
            BrFrame out;
            size_t used = 99;
            err[0] = '\0';
            int r = br_proto_decode(buf, k, NULL, &out, &used, err);
            if (r != BR_PROTO_NEED_MORE) fprintf(stderr, "\n  sample %d prefix %zu: %s\n", i, k, err);
            CU_ASSERT(r == BR_PROTO_NEED_MORE && used == 0);
            BrProtoDecoder d;
            br_proto_decoder_init(&d, NULL, err);
            r = br_proto_decoder_feed(&d, buf, k, &used, &out);
            CU_ASSERT(r == BR_PROTO_NEED_MORE && used == k);
            CU_ASSERT_EQUAL(br_proto_decoder_pending(&d), k);
            // and the rest completes it
            r = br_proto_decoder_feed(&d, buf + k, n - k, &used, &out);
            CU_ASSERT(r == BR_PROTO_FRAME && used == n - k);
            CU_ASSERT(r == BR_PROTO_FRAME && frame_eq(&g_samples[i], &out));
            br_proto_decoder_free(&d);
        }
        free(buf);
    }
}

// Decodes buf[0..n) as one frame with a fresh decoder fed all at once; returns the status.
static int decode_once(const uint8_t *buf, size_t n, const BrProtoLimits *lim, BrFrame *out,
                       char *err) {
    BrProtoDecoder d;
    br_proto_decoder_init(&d, lim, err);
    size_t used;
    int r = br_proto_decoder_feed(&d, buf, n, &used, out);
    if (r == BR_PROTO_ERROR) snprintf(err, CX_ERRLEN, "%s", br_proto_decoder_error(&d));
    // Decoded data pointers must outlive d for the caller: check them here instead.
    // A frame of our minor version re-encodes to exactly its bytes; one of a newer minor
    // re-encodes to its header type and a prefix of its payload (the fields we know); one of
    // an older minor to its type and a payload that starts with its own (fields it lacks
    // appended, as zeros).
    if (r == BR_PROTO_FRAME) {
        char e2[CX_ERRLEN];
        int en = br_proto_encode(g_reenc, sizeof g_reenc, out, lim, e2);
        if (out->version_minor == BR_PROTO_VERSION_MINOR) {
            if (en != (int)n || memcmp(g_reenc, buf, n) != 0) r = 99;
        } else if (out->version_minor > BR_PROTO_VERSION_MINOR) {
            if (en < HDR || (size_t)en > n || g_reenc[6] != buf[6] ||
                memcmp(g_reenc + HDR, buf + HDR, (size_t)en - HDR) != 0)
                r = 99;
        } else if (en < (int)n || g_reenc[6] != buf[6] || memcmp(g_reenc + HDR, buf + HDR, n - HDR) != 0 ||
                   (en > (int)n && (g_reenc[6] != BR_MSG_WELCOME || en - (int)n != BR_WELCOME_BYTES -
                                                                                  BR_WELCOME_BYTES_1_0))) {
            r = 99;
        }
    }
    br_proto_decoder_free(&d);
    return r;
}

static void test_bit_flips(void) {
    make_samples();
    char err[CX_ERRLEN];
    long rejected = 0, repaired_ok = 0, repaired_rej = 0;
    for (int i = 0; i < g_n_samples; i++) {
        if (g_big[i]) continue;
        size_t n;
        uint8_t *buf = encode_sample(i, &n);
        uint8_t *flip = malloc(n);
        for (size_t bit = 0; bit < 8 * n; bit++) {
            memcpy(flip, buf, n);
            flip[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            BrFrame out;
            size_t used;
            // As received: every flip is caught (magic, version, or a checksum).
            int r = br_proto_decode(flip, n, NULL, &out, &used, err);
            int r2 = decode_once(flip, n, NULL, &out, err);
            CU_ASSERT(r == BR_PROTO_ERROR && r2 == BR_PROTO_ERROR);
            if (r == BR_PROTO_ERROR) rejected++;
            // With checksums repaired (a flip that survives the CRC, or a buggy peer): rejected
            // with a message, or a different valid frame that encodes to exactly these bytes.
            if (bit / 8 >= 12 && bit / 8 < HDR) continue;  // the checksums themselves
            if (get32(flip + 8) != n - HDR) continue;      // length flips: see test_oversized
            fix_crcs(flip, n);
            r = decode_once(flip, n, NULL, &out, err);
            CU_ASSERT(r == BR_PROTO_ERROR || r == BR_PROTO_FRAME);
            if (r == BR_PROTO_FRAME) repaired_ok++;
            else if (r == BR_PROTO_ERROR) {
                repaired_rej++;
                CU_ASSERT(strs_have(err, "stream offset"));
            }
        }
        free(flip);
        free(buf);
    }
    printf(" [%ld flips rejected; with checksums repaired: %ld valid, %ld rejected] ", rejected,
           repaired_ok, repaired_rej);
}

// Oversized, undersized and unaccepted headers fail on the header, before any allocation.
static void test_oversized(void) {
    char err[CX_ERRLEN];
    uint8_t h[HDR];
    BrProtoLimits def = br_proto_limits_default();
    for (int t = BR_MSG_FIRST; t <= BR_MSG_LAST; t++) {
        if (!(BR_MSG_ALL & BR_MSG_BIT(t))) continue;  // a number no type has
        size_t max = br_proto_max_payload(t, NULL);
        CU_ASSERT(max > 0);
        uint32_t lens[] = {(uint32_t)max + 1, (uint32_t)max + 4096, UINT32_MAX, 0};
        for (size_t k = 0; k < NELEM(lens); k++) {
            raw_frame(h, 1, 0, (uint8_t)t, 0, NULL, 0);
            put32(h + 8, lens[k]);
            fix_crcs(h, HDR);
            BrProtoDecoder d;
            br_proto_decoder_init(&d, NULL, err);
            BrFrame out;
            size_t used;
            CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, h, HDR, &used, &out), BR_PROTO_ERROR);
            CU_ASSERT_EQUAL(used, HDR);
            CU_ASSERT_EQUAL(br_proto_decoder_capacity(&d), 0);  // nothing allocated
            const char *msg = br_proto_decoder_error(&d);
            CU_ASSERT(strs_have(msg, lens[k] ? "exceeds the limit" : "shorter than the minimum"));
            CU_ASSERT(strs_have(msg, "stream offset 8"));
            CU_ASSERT(strs_have(msg, br_proto_type_name(t)));
            CU_ASSERT_EQUAL(br_proto_decode(h, HDR, NULL, &out, &used, err), BR_PROTO_ERROR);
            br_proto_decoder_free(&d);
        }
    }
    // At the limit for a chunk: accepted; the buffer is the payload, no more.
    raw_frame(h, 1, 0, BR_MSG_GRAD_CHUNK, 0, NULL, 0);
    uint32_t max = (uint32_t)br_proto_max_payload(BR_MSG_GRAD_CHUNK, &def);
    put32(h + 8, max);
    fix_crcs(h, HDR);
    BrProtoDecoder d;
    br_proto_decoder_init(&d, NULL, err);
    BrFrame out;
    size_t used;
    CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, h, HDR, &used, &out), BR_PROTO_NEED_MORE);
    CU_ASSERT_EQUAL(br_proto_decoder_capacity(&d), max);
    br_proto_decoder_free(&d);
    // Before authentication, a chunk header is refused without allocating.
    BrProtoLimits pre = def;
    pre.accept_types = BR_PROTO_PREAUTH_TYPES;
    br_proto_decoder_init(&d, &pre, err);
    CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, h, HDR, &used, &out), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(br_proto_decoder_error(&d), "not accepted"));
    CU_ASSERT_EQUAL(br_proto_decoder_capacity(&d), 0);
    br_proto_decoder_free(&d);
    // ... and HELLO is accepted; then set_limits opens the rest.
    make_samples();
    size_t n;
    uint8_t *hello = encode_sample(0, &n);
    br_proto_decoder_init(&d, &pre, err);
    CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, hello, n, &used, &out), BR_PROTO_FRAME);
    CU_ASSERT_EQUAL(br_proto_decoder_set_limits(&d, &def, err), 0);
    CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, h, HDR, &used, &out), BR_PROTO_NEED_MORE);
    BrProtoLimits bad = def;
    bad.max_chunk_bytes = 0;
    CU_ASSERT_EQUAL(br_proto_decoder_set_limits(&d, &bad, err), -1);
    bad = def;
    bad.accept_types = 1;  // type 0 does not exist
    CU_ASSERT_EQUAL(br_proto_decoder_set_limits(&d, &bad, err), -1);
    br_proto_decoder_free(&d);
    CU_ASSERT_EQUAL(br_proto_decoder_init(&d, &bad, err), -1);
    CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, hello, n, &used, &out), BR_PROTO_ERROR);
    br_proto_decoder_free(&d);
    free(hello);
    // Limits changed in the middle of a frame apply from the next header on.
    {
        static uint8_t pl[BR_GRAD_CHUNK_FIXED_BYTES + 2000];
        static uint8_t fb[2 * (HDR + sizeof pl)];
        memset(pl, 0, sizeof pl);
        pl[16] = 1;                      // samples
        put32(pl + 48, 1000);            // n_elems
        pl[52] = BR_CODEC_FP16;
        size_t fl = raw_frame(fb, 1, 0, BR_MSG_GRAD_CHUNK, 0, pl, sizeof pl);
        memcpy(fb + fl, fb, fl);
        BrProtoLimits tiny = def;
        tiny.max_chunk_bytes = BR_PROTO_MIN_CHUNK_BYTES;
        br_proto_decoder_init(&d, NULL, err);
        CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, fb, 100, &used, &out), BR_PROTO_NEED_MORE);
        CU_ASSERT_EQUAL(br_proto_decoder_set_limits(&d, &tiny, err), 0);
        CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, fb + 100, 2 * fl - 100, &used, &out),
                        BR_PROTO_FRAME);
        CU_ASSERT(out.type == BR_MSG_GRAD_CHUNK && out.m.grad_chunk.n_elems == 1000);
        CU_ASSERT_EQUAL(br_proto_decoder_feed(&d, fb + fl, fl, &used, &out), BR_PROTO_ERROR);
        CU_ASSERT(strs_have(br_proto_decoder_error(&d), "exceeds the limit of 128"));
        br_proto_decoder_free(&d);
    }
    // A smaller configured chunk limit is enforced on the header.
    BrProtoLimits small = def;
    small.max_chunk_bytes = 1024;
    uint8_t payload[BR_GRAD_CHUNK_FIXED_BYTES + 1100] = {0};
    uint8_t fr[HDR + sizeof payload];
    raw_frame(fr, 1, 0, BR_MSG_GRAD_CHUNK, 0, payload, sizeof payload);
    CU_ASSERT_EQUAL(br_proto_decode(fr, sizeof fr, &small, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "exceeds the limit of 1088"));
}

// Payload-level rejections with correct checksums, each with its message and offset.
static void test_malformed_payloads(void) {
    char err[CX_ERRLEN];
    make_samples();
    static uint8_t fr[8192];
    uint8_t p[2048];
    BrFrame out;
    int k = 0;
    // Takes sample `s`'s payload, applies `edit` to p (len plen), re-frames, expects `needle`.
#define BAD(s, edit, needle)                                                                 \
    do {                                                                                     \
        size_t n_;                                                                           \
        uint8_t *b_ = encode_sample(s, &n_);                                                 \
        uint32_t plen = (uint32_t)(n_ - HDR);                                                \
        memcpy(p, b_ + HDR, plen);                                                           \
        free(b_);                                                                            \
        edit;                                                                                \
        size_t fn_ = raw_frame(fr, 1, BR_PROTO_VERSION_MINOR, (uint8_t)g_samples[s].type, 0, p, plen); \
        int r_ = decode_once(fr, fn_, NULL, &out, err);                                      \
        if (r_ != BR_PROTO_ERROR || !strs_have(err, needle))                                 \
            fprintf(stderr, "\n  malformed case %d: r=%d err='%s'\n", k, r_, err);           \
        CU_ASSERT(r_ == BR_PROTO_ERROR && strs_have(err, needle) &&                          \
                  strs_have(err, "stream offset"));                                          \
        k++;                                                                                 \
    } while (0)
    // HELLO (token 12 bytes at 26, name length at 38)
    BAD(S(BR_MSG_HELLO, 2), p[0] = 2, "client speaks protocol major version 2");
    BAD(S(BR_MSG_HELLO, 2), p[2] = 0x03, "unknown flag bits 0x03 at stream offset 22");
    BAD(S(BR_MSG_HELLO, 2), p[3] = 1, "reserved byte is 0x01");
    BAD(S(BR_MSG_HELLO, 2), memset(p + 4, 0, 4), "codec mask is empty at stream offset 24");
    BAD(S(BR_MSG_HELLO, 2), memset(p + 8, 0, 16), "resume requested without an identity");
    BAD(S(BR_MSG_HELLO, 2), (p[24] = 0, p[25] = 0), "join token of 0 bytes");
    BAD(S(BR_MSG_HELLO, 2), (p[24] = 0x01, p[25] = 0x01), "join token of 257 bytes");
    BAD(S(BR_MSG_HELLO, 2), p[26 + 3] = 0, "join token is not valid UTF-8 or contains NUL");
    BAD(S(BR_MSG_HELLO, 2), p[26 + 3] = 0xc3, "join token is not valid UTF-8");
    BAD(S(BR_MSG_HELLO, 2), p[24] = 40, "declares 40 bytes but only");
    BAD(S(BR_MSG_HELLO, 2), (p[38] = 0xff, p[39] = 0), "client name of 255 bytes");
    BAD(S(BR_MSG_HELLO, 2), plen -= 1, "declares");
    BAD(S(BR_MSG_HELLO, 2), (p[plen] = 'x', plen += 1), "1 unexpected bytes after the message");
    BAD(S(BR_MSG_HELLO, 0), plen = BR_HELLO_MIN_BYTES - 2, "shorter than the minimum");
    // WELCOME
    BAD(S(BR_MSG_WELCOME, 0), memset(p + 8, 0, 16), "assigned identity is all zero at stream offset 28");
    BAD(S(BR_MSG_WELCOME, 0), memset(p + 56, 0, 4), "round deadline is 0 ms");
    BAD(S(BR_MSG_WELCOME, 0), put32(p + 60, 63), "max chunk size 63");
    BAD(S(BR_MSG_WELCOME, 0), p[64] = 9, "unknown codec 9 at stream offset 84");
    BAD(S(BR_MSG_WELCOME, 0), p[64] = 4, "unknown codec 4 at stream offset 84");
    BAD(S(BR_MSG_WELCOME, 0), p[67] = 1, "reserved byte is 0x01, must be 0 at stream offset 87");
    BAD(S(BR_MSG_WELCOME, 0), (p[plen] = 0, plen += 1), "version 1.1 defines exactly 108");
    // STATE_REQUEST
    BAD(S(BR_MSG_STATE_REQUEST, 0), put32(p + 8, 0), "requested length 0");
    BAD(S(BR_MSG_STATE_REQUEST, 0), put32(p + 8, BR_PROTO_DEFAULT_CHUNK_BYTES + 1), "requested length 1048577");
    // STATE_CHUNK (offset UINT64_MAX-13, total UINT64_MAX, 13 bytes)
    BAD(S(BR_MSG_STATE_CHUNK, 1), p[8] = 0, "lies outside");
    BAD(S(BR_MSG_STATE_CHUNK, 1), put32(p + 16, 14), "lies outside");
    BAD(S(BR_MSG_STATE_CHUNK, 1), plen -= 1, "chunk declares 13 bytes but the payload holds 12");
    BAD(S(BR_MSG_STATE_CHUNK, 1), (p[plen] = 0, plen += 1), "1 unexpected bytes");
    BAD(S(BR_MSG_STATE_CHUNK, 1), put32(p + 16, BR_PROTO_DEFAULT_CHUNK_BYTES + 1), "exceeds the limit");
    // PROBE (sequence, length, bytes): the limit is the chunk size; a length at the limit is
    // within it (then the short payload is the error)
    BAD(S(BR_MSG_PROBE, 1), put32(p + 4, BR_PROTO_DEFAULT_CHUNK_BYTES + 1),
        "probe of 1048577 bytes exceeds the limit of 1048576 at stream offset 24");
    BAD(S(BR_MSG_PROBE, 1), put32(p + 4, BR_PROTO_DEFAULT_CHUNK_BYTES),
        "probe declares 1048576 bytes but the payload holds");
    BAD(S(BR_MSG_PROBE, 1), plen -= 1, "probe declares");
    // ROUND_OPEN target 1
    BAD(S(BR_MSG_ROUND_OPEN, 0), p[16] = 0, "target samples is 0");
    BAD(S(BR_MSG_ROUND_OPEN, 0), p[32] = 2, "sample count 2 exceeds the target 1 at stream offset 52");
    // ROUND_CLOSE
    BAD(S(BR_MSG_ROUND_CLOSE, 0), p[36] = 1, "reserved byte is 0x01");
    BAD(S(BR_MSG_ROUND_CLOSE, 0), (p[54] = 0xf8, p[55] = 0x7f), "auxiliary loss sum is not finite");
    // GRAD_CHUNK one fp16 element
    BAD(S(BR_MSG_GRAD_CHUNK, 0), memset(p + 16, 0, 8), "sample count is 0 at stream offset 36");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), put32(p + 48, 0), "element count is 0 at stream offset 68");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), put32(p + 48, 2), "2 fp16 elements need 4 bytes but the payload holds 2");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), p[52] = BR_CODEC_FP32, "1 fp32 elements need 4 bytes but the payload holds 2");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), p[52] = 0, "unknown codec 0 at stream offset 72");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), p[55] = 0x80, "reserved byte is 0x80, must be 0 at stream offset 75");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), memset(p + 32, 0xff, 8), "loss sum is not finite at stream offset 52");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), (memset(p + 40, 0, 8), p[46] = 0xf0, p[47] = 0x7f), "auxiliary loss sum is not finite at stream offset 60");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), put32(p + 48, BR_PROTO_DEFAULT_CHUNK_BYTES / 2 + 1), "exceed the chunk limit");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), memset(p + 8, 0xff, 8), "element range 18446744073709551615 + 1 overflows at stream offset 28");
    BAD(S(BR_MSG_GRAD_CHUNK, 0), (p[plen] = 0, p[plen + 1] = 0, plen += 2), "2 unexpected bytes");
    // AVG_CHUNK 3 fp32 elements
    BAD(S(BR_MSG_AVG_CHUNK, 0), put32(p + 16, 4), "4 fp32 elements need 16 bytes but the payload holds 12");
    BAD(S(BR_MSG_AVG_CHUNK, 0), memset(p + 8, 0xff, 8), "overflows at stream offset 28");
    BAD(S(BR_MSG_AVG_CHUNK, 0), p[20] = 200, "unknown codec 200");
    // int8 chunks: 4 bytes per started block of 128 elements plus 1 per element
    BAD(S(BR_MSG_GRAD_CHUNK, 0), p[52] = BR_CODEC_INT8,
        "1 int8 elements need 5 bytes but the payload holds 2 after the fields at stream offset 68");
    BAD(S(BR_MSG_GRAD_CHUNK, 3), put32(p + 48, 301),  // 300 int8 in 312 bytes
        "301 int8 elements need 313 bytes but the payload holds 312 after the fields at stream "
        "offset 68");
    BAD(S(BR_MSG_GRAD_CHUNK, 3), put32(p + 48, 385),  // a fourth block
        "385 int8 elements need 401 bytes but the payload holds 312 after the fields");
    BAD(S(BR_MSG_GRAD_CHUNK, 3), plen -= 1,
        "300 int8 elements need 312 bytes but the payload holds 311 after the fields");
    BAD(S(BR_MSG_GRAD_CHUNK, 3), put32(p + 48, 299),  // 3 blocks, one byte left over
        "1 unexpected bytes after the message (version 1.1) at stream offset 387");
    BAD(S(BR_MSG_GRAD_CHUNK, 3), put32(p + 48, 256),  // 2 blocks: 4 + 44 bytes left over
        "48 unexpected bytes after the message");
    BAD(S(BR_MSG_GRAD_CHUNK, 3), put32(p + 48, INT8_LIMIT_N + 1),
        "1016801 int8 elements (1048577 bytes) exceed the chunk limit of 1048576 bytes at "
        "stream offset 68");
    BAD(S(BR_MSG_GRAD_CHUNK, 3), p[52] = 4, "unknown codec 4 at stream offset 72");
    BAD(S(BR_MSG_AVG_CHUNK, 3), (memset(p + 8, 0, 8), put32(p + 16, 130)),  // 129 int8: 137 bytes
        "130 int8 elements need 138 bytes but the payload holds 137 after the fields at stream "
        "offset 36");
    BAD(S(BR_MSG_AVG_CHUNK, 3), put32(p + 16, 128),
        "5 unexpected bytes after the message");
    BAD(S(BR_MSG_AVG_CHUNK, 3), put32(p + 16, INT8_LIMIT_N + 1),
        "1016801 int8 elements (1048577 bytes) exceed the chunk limit of 1048576 bytes at "
        "stream offset 36");
    BAD(S(BR_MSG_AVG_CHUNK, 0), p[20] = BR_CODEC_INT8,  // 3 fp32 = 12 bytes as int8: 7 left
        "5 unexpected bytes after the message");
    // ERROR code 1, empty message
    BAD(S(BR_MSG_ERROR, 0), put32(p, 0), "error code is 0");
    BAD(S(BR_MSG_ERROR, 0), (p[4] = 1, p[plen] = 0, plen += 1), "message is not valid UTF-8 or contains NUL");
    BAD(S(BR_MSG_ERROR, 0), (p[4] = 0x01, p[5] = 0x04), "message of 1025 bytes");
#undef BAD
}

static void test_header_errors(void) {
    char err[CX_ERRLEN];
    make_samples();
    size_t n;
    uint8_t *hb = encode_sample(S(BR_MSG_HEARTBEAT, 0), &n);
    // Two good frames, then a stream of something else: the error names the byte.
    uint8_t s[256];
    memcpy(s, hb, n);
    memcpy(s + n, hb, n);
    memcpy(s + 2 * n, "GET / HTTP/1.1\r\n", 16);
    FeedResult r = feed_stream(s, 2 * n + 16, slice_one, NULL);
    CU_ASSERT_EQUAL(r.status, BR_PROTO_ERROR);
    CU_ASSERT_EQUAL(r.n_frames, 2);
    CU_ASSERT_EQUAL(r.consumed, 2 * n + 1);  // refused at the first wrong byte
    CU_ASSERT(strs_have(r.err, "bad frame magic at stream offset 56"));
    CU_ASSERT(strs_have(r.err, "bytes 47,"));
    CU_ASSERT_EQUAL(r.peer_major, 0);  // not another version: garbage
    // Magic wrong in its last byte.
    memcpy(s + 2 * n, "CXBQ", 4);
    r = feed_stream(s, 2 * n + 4, slice_random, NULL);
    CU_ASSERT(r.status == BR_PROTO_ERROR && strs_have(r.err, "stream offset 59") &&
              strs_have(r.err, "bytes 43 58 42 51,"));
    // Another major version: refused on byte 4, with both versions named.
    memcpy(s, hb, n);
    s[4] = 2;
    r = feed_stream(s, 5, slice_all, NULL);
    CU_ASSERT(r.status == BR_PROTO_ERROR &&
              strs_have(r.err, "unsupported protocol major version 2 at stream offset 4") &&
              strs_have(r.err, "this build speaks 1.1"));
    CU_ASSERT_EQUAL(r.peer_major, 2);  // what the bridge answers with ERROR VERSION
    s[4] = 255;
    r = feed_stream(s, n, slice_random, NULL);
    CU_ASSERT_EQUAL(r.peer_major, 255);
    memcpy(s, hb, n);
    s[4] = 2;
    BrFrame out;
    size_t used;
    CU_ASSERT_EQUAL(br_proto_decode(s, 5, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT_EQUAL(br_proto_decode(s, 4, NULL, &out, &used, err), BR_PROTO_NEED_MORE);
    // Header checksum, type, flags, frame checksum.
    memcpy(s, hb, n);
    s[13] ^= 1;
    r = feed_stream(s, n, slice_all, NULL);
    CU_ASSERT(strs_have(r.err, "header checksum mismatch at stream offset 12"));
    CU_ASSERT_EQUAL(r.peer_major, 0);  // our major, a broken header
    raw_frame(s, 1, 0, 17, 0, NULL, 0);
    r = feed_stream(s, HDR, slice_all, NULL);
    CU_ASSERT(strs_have(r.err, "unknown message type 17 at stream offset 6"));
    raw_frame(s, 1, 0, 0, 0, NULL, 0);
    r = feed_stream(s, HDR, slice_all, NULL);
    CU_ASSERT(strs_have(r.err, "unknown message type 0"));
    raw_frame(s, 1, 0, BR_MSG_HEARTBEAT, 0x10, hb + HDR, 8);
    r = feed_stream(s, HDR + 8, slice_all, NULL);
    CU_ASSERT(strs_have(r.err, "HEARTBEAT frame has reserved flag bits 0x10 set at stream offset 7"));
    memcpy(s, hb, n);
    s[HDR + 3] ^= 0x40;
    r = feed_stream(s, n, slice_all, NULL);
    CU_ASSERT(strs_have(r.err, "frame checksum mismatch in HEARTBEAT frame at stream offset 16"));
    // Minor versions: a newer minor may append fields (ignored); ours and older ones may not.
    uint8_t p[128] = {1, 2, 3, 4, 5, 6, 7, 8, 0xaa, 0xbb, 0xcc, 0xdd};
    size_t fn = raw_frame(s, 1, BR_PROTO_VERSION_MINOR + 1, BR_MSG_HEARTBEAT, 0, p, 12);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_FRAME);
    CU_ASSERT(out.version_minor == BR_PROTO_VERSION_MINOR + 1 &&
              out.m.heartbeat.time_us == 0x0807060504030201ull);
    fn = raw_frame(s, 1, 0, BR_MSG_HEARTBEAT, 0, p, 12);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "version 1.0 defines exactly 8"));
    fn = raw_frame(s, 1, 1, BR_MSG_HEARTBEAT, 0, p, 12);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "version 1.1 defines exactly 8"));
    // WELCOME's size is its minor's: 68 bytes in 1.0, 108 from 1.1 (a 1.1 WELCOME of 68
    // bytes lacks the data fields; a 1.0 one of 108 has 40 bytes too many)
    size_t wn;
    uint8_t *wel = encode_sample(S(BR_MSG_WELCOME, 3), &wn);
    CU_ASSERT_EQUAL(wn, HDR + BR_WELCOME_BYTES);
    fn = raw_frame(s, 1, 0, BR_MSG_WELCOME, 0, wel + HDR, BR_WELCOME_BYTES_1_0);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_FRAME);
    CU_ASSERT(out.version_minor == 0 && out.m.welcome.data_bytes == 0 && out.m.welcome.data_hash[0] == 0 &&
              out.m.welcome.codec == BR_CODEC_FP16);
    fn = raw_frame(s, 1, 0, BR_MSG_WELCOME, 0, wel + HDR, BR_WELCOME_BYTES);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "WELCOME payload of 108 bytes; version 1.0 defines exactly 68, at stream offset 8"));
    fn = raw_frame(s, 1, 1, BR_MSG_WELCOME, 0, wel + HDR, BR_WELCOME_BYTES_1_0);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "WELCOME payload of 68 bytes is shorter than the minimum of 108 at stream offset 8"));
    fn = raw_frame(s, 1, 2, BR_MSG_WELCOME, 0, wel + HDR, BR_WELCOME_BYTES_1_0 + 39);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "shorter than the minimum of 108"));
    free(wel);
    // the DATA_ types before authentication: refused on the header, like any chunk type
    BrProtoLimits pre = br_proto_limits_default();
    pre.accept_types = BR_PROTO_PREAUTH_TYPES;
    size_t dn;
    uint8_t *dreq = encode_sample(S(BR_MSG_DATA_REQUEST, 0), &dn);
    CU_ASSERT_EQUAL(br_proto_decode(dreq, dn, &pre, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "DATA_REQUEST frame not accepted in this connection state at stream offset 6"));
    free(dreq);
    // a DATA_CHUNK outside its file is a payload error; a request over the chunk limit too
    uint8_t dc[BR_DATA_CHUNK_FIXED_BYTES + 4];
    put64(dc, 6);
    put64(dc + 8, 8);
    put32(dc + 16, 4);
    fn = raw_frame(s, 1, 1, BR_MSG_DATA_CHUNK, 0, dc, sizeof dc);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "DATA_CHUNK: chunk [6, +4) lies outside the 8-byte training data at stream offset 36"));
    uint8_t dq[BR_DATA_REQUEST_BYTES];
    put64(dq, 0);
    put32(dq + 8, BR_PROTO_DEFAULT_CHUNK_BYTES + 1);
    fn = raw_frame(s, 1, 1, BR_MSG_DATA_REQUEST, 0, dq, sizeof dq);
    CU_ASSERT_EQUAL(br_proto_decode(s, fn, NULL, &out, &used, err), BR_PROTO_ERROR);
    CU_ASSERT(strs_have(err, "DATA_REQUEST: requested length 1048577 outside 1..1048576 at stream offset 28"));
    CU_ASSERT_EQUAL(br_proto_max_payload(BR_MSG_DATA_CHUNK, NULL), BR_PROTO_CHUNK_OVERHEAD + BR_PROTO_DEFAULT_CHUNK_BYTES);
    CU_ASSERT_EQUAL(br_proto_max_payload(BR_MSG_DATA_REQUEST, NULL), BR_PROTO_MAX_CONTROL_BYTES);
    size_t hn;
    uint8_t *hello = encode_sample(S(BR_MSG_HELLO, 2), &hn);
    memcpy(s, hello, hn);
    s[hn] = 0x42;
    s[5] = 3;
    put32(s + 8, (uint32_t)(hn - HDR + 1));
    fix_crcs(s, hn + 1);
    CU_ASSERT_EQUAL(br_proto_decode(s, hn + 1, NULL, &out, &used, err), BR_PROTO_FRAME);
    CU_ASSERT(frame_eq(&g_samples[S(BR_MSG_HELLO, 2)], &out));
    free(hello);
    free(hb);
    CU_ASSERT_STRING_EQUAL(br_proto_type_name(BR_MSG_AVG_CHUNK), "AVG_CHUNK");
    CU_ASSERT_STRING_EQUAL(br_proto_type_name(99), "unknown");
    CU_ASSERT_EQUAL(br_proto_codec_elem_bytes(BR_CODEC_FP16), 2);
    CU_ASSERT_EQUAL(br_proto_codec_elem_bytes(BR_CODEC_FP32), 4);
    CU_ASSERT_EQUAL(br_proto_codec_elem_bytes(0), 0);
    CU_ASSERT_EQUAL(br_proto_codec_elem_bytes(BR_CODEC_INT8), 0);  // no fixed size
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_FP32, 7), 28);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_FP16, 7), 14);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_INT8, 1), 5);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_INT8, 128), 132);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_INT8, 129), 137);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_INT8, INT8_LIMIT_N), 1048576);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_INT8, UINT32_MAX),
                    4ull * 33554432 + UINT32_MAX);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(BR_CODEC_FP32, UINT32_MAX), 4ull * UINT32_MAX);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(0, 7), 0);
    CU_ASSERT_EQUAL(br_proto_codec_encoded_bytes(4, 7), 0);
    CU_ASSERT(br_proto_codec_known(BR_CODEC_INT8) && br_proto_codec_known(BR_CODEC_FP16) &&
              br_proto_codec_known(BR_CODEC_FP32));
    CU_ASSERT(!br_proto_codec_known(0) && !br_proto_codec_known(4) && !br_proto_codec_known(-1));
}

// Random bytes, and random bytes behind a valid-looking header, never crash; whatever
// decodes re-encodes to the same bytes; errors are permanent.
static void test_garbage(void) {
    static uint8_t buf[4096];
    int errors = 0, frames = 0;
    for (int it = 0; it < 3000; it++) {
        size_t n = 1 + rnd() % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        int mode = it % 3;
        if (mode >= 1 && n >= HDR) {  // a plausible header with fixed checksums
            memcpy(buf, "CXBR\x01", 5);
            buf[5] = (uint8_t)(rnd() % 2);
            buf[6] = (uint8_t)(1 + rnd() % 12);
            buf[7] = 0;
            uint32_t len = (uint32_t)(rnd() % (n - HDR + 1));
            if (mode == 2 && buf[6] != BR_MSG_HELLO) len = len % 80;
            put32(buf + 8, len);
            if (mode == 2) {  // plausible small fields too: short strings, small counts
                for (size_t i = HDR; i + 1 < n && i < HDR + 64; i++)
                    if (rnd() % 2) buf[i] = (uint8_t)(rnd() % 4);
            }
            fix_crcs(buf, n);
        }
        FeedResult a = feed_stream(buf, n, slice_all, NULL);
        FeedResult b = feed_stream(buf, n, slice_random, NULL);
        CU_ASSERT(a.status == b.status && a.n_frames == b.n_frames &&
                  a.reenc_crc == b.reenc_crc && strcmp(a.err, b.err) == 0);
        CU_ASSERT(!a.reenc_failed);
        if (a.status == BR_PROTO_ERROR) {
            errors++;
            CU_ASSERT(strs_have(a.err, "stream offset"));
        }
        frames += a.n_frames;
    }
    printf(" [3000 buffers: %d errors, %d frames] ", errors, frames);
}

// ---- corpus: generation and replay ----

static const char *corpus_dir(void) {
    const char *e = getenv("CONFLUX_PROTO_CORPUS");
    return e && *e ? e : "tests/tools/fuzz/proto";
}

static int write_file(const char *dir, const char *name, const uint8_t *b, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "test_proto: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_corpus(const char *dir) {
    make_samples();
    static uint8_t s[1 << 16];
    char name[128];
    int rc = 0;
    // One valid frame of every sample that is small, named by type.
    int per_type[BR_MSG_LAST + 1] = {0};
    for (int i = 0; i < g_n_samples; i++) {
        if (g_big[i]) continue;
        size_t n;
        uint8_t *b = encode_sample(i, &n);
        snprintf(name, sizeof name, "ok-%s-%d.bin", br_proto_type_name(g_samples[i].type),
                 per_type[g_samples[i].type]++);
        for (char *c = name; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        rc |= write_file(dir, name, b, n);
        if (g_samples[i].type == BR_MSG_GRAD_CHUNK && per_type[BR_MSG_GRAD_CHUNK] == 2) {
            // Truncations of a chunk frame: inside the header, inside the payload.
            rc |= write_file(dir, "need-grad-header.bin", b, 11);
            rc |= write_file(dir, "need-grad-payload.bin", b, n - 3);
        }
        if (g_samples[i].type == BR_MSG_HELLO && per_type[BR_MSG_HELLO] == 2)
            rc |= write_file(dir, "need-hello-half.bin", b, n / 2);
        free(b);
    }
    // A session-like stream of small frames.
    size_t pos = 0;
    for (int i = 0; i < g_n_samples && pos + 2048 < sizeof s; i++) {
        if (g_big[i]) continue;
        size_t n;
        uint8_t *b = encode_sample(i, &n);
        if (pos + n <= sizeof s) {
            memcpy(s + pos, b, n);
            pos += n;
        }
        free(b);
    }
    rc |= write_file(dir, "ok-stream.bin", s, pos);
    rc |= write_file(dir, "need-stream-cut.bin", s, pos - 1);

    // Newer minor with an appended field.
    uint8_t p[512] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    rc |= write_file(dir, "ok-heartbeat-minor2-extra.bin", s,
                     raw_frame(s, 1, BR_PROTO_VERSION_MINOR + 1, BR_MSG_HEARTBEAT, 0, p, 10));
    rc |= write_file(dir, "need-empty.bin", s, 0);

    // Errors.
    size_t hn;
    uint8_t *hb = encode_sample(S(BR_MSG_HEARTBEAT, 0), &hn);
    memcpy(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    rc |= write_file(dir, "err-http.bin", s, 27);
    static const uint8_t tls[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};
    rc |= write_file(dir, "err-tls.bin", tls, sizeof tls);
    memcpy(s, hb, hn);
    s[4] = 2;
    rc |= write_file(dir, "err-major2.bin", s, hn);
    memcpy(s, hb, hn);
    s[4] = 0;
    rc |= write_file(dir, "err-major0.bin", s, 5);
    memcpy(s, hb, hn);
    s[9] = 1;  // length changed, header CRC stale
    rc |= write_file(dir, "err-header-crc.bin", s, hn);
    memcpy(s, hb, hn);
    s[hn - 1] ^= 0x80;
    rc |= write_file(dir, "err-frame-crc.bin", s, hn);
    memcpy(s, hb, hn);
    memcpy(s + hn, hb, hn);
    s[2 * hn - 1] ^= 1;
    rc |= write_file(dir, "err-second-frame-crc.bin", s, 2 * hn);
    rc |= write_file(dir, "err-type0.bin", s, raw_frame(s, 1, 0, 0, 0, p, 8));
    rc |= write_file(dir, "err-type200.bin", s, raw_frame(s, 1, 0, 200, 0, p, 8));
    rc |= write_file(dir, "err-flags.bin", s, raw_frame(s, 1, 0, BR_MSG_HEARTBEAT, 1, p, 8));
    raw_frame(s, 1, 0, BR_MSG_GRAD_CHUNK, 0, NULL, 0);
    put32(s + 8, 0xffffffffu);
    fix_crcs(s, HDR);
    rc |= write_file(dir, "err-grad-len-4g.bin", s, HDR);
    raw_frame(s, 1, 0, BR_MSG_HELLO, 0, NULL, 0);
    put32(s + 8, BR_PROTO_MAX_HELLO_BYTES + 1);
    fix_crcs(s, HDR);
    rc |= write_file(dir, "err-hello-too-long.bin", s, HDR);
    rc |= write_file(dir, "err-bye-short.bin", s, raw_frame(s, 1, 0, BR_MSG_BYE, 0, p, 3));
    rc |= write_file(dir, "err-welcome-long.bin", s, raw_frame(s, 1, 0, BR_MSG_WELCOME, 0, p, 69));
    rc |= write_file(dir, "err-heartbeat-trailing.bin", s, raw_frame(s, 1, 0, BR_MSG_HEARTBEAT, 0, p, 9));
    // HELLO payload errors (from the typical HELLO, sample 2).
    size_t n;
    uint8_t *h = encode_sample(S(BR_MSG_HELLO, 2), &n);
    uint32_t pl = (uint32_t)(n - HDR);
    struct { const char *name; size_t at; uint8_t val; } hel[] = {
        {"err-hello-empty-token.bin", 24, 0},   // token length 0 (length lo byte)
        {"err-hello-token-nul.bin", 28, 0},     // NUL inside the token
        {"err-hello-token-utf8.bin", 28, 0xc0}, // invalid UTF-8
        {"err-hello-name-len.bin", 38, 200},    // name length past the end
        {"err-hello-flags.bin", 2, 0x80},
        {"err-hello-codecs.bin", 4, 0},         // with bytes 5..7 zero: empty mask
        {"err-hello-major.bin", 0, 9},
    };
    for (size_t i = 0; i < NELEM(hel); i++) {
        memcpy(p, h + HDR, pl);
        p[hel[i].at] = hel[i].val;
        rc |= write_file(dir, hel[i].name, s, raw_frame(s, 1, 0, BR_MSG_HELLO, 0, p, pl));
    }
    memcpy(p, h + HDR, pl);
    memset(p + 8, 0, 16);
    rc |= write_file(dir, "err-hello-resume-noid.bin", s, raw_frame(s, 1, 0, BR_MSG_HELLO, 0, p, pl));
    free(h);
    // Chunk payload errors.
    uint8_t *g = encode_sample(S(BR_MSG_GRAD_CHUNK, 1), &n);  // GRAD_CHUNK, 7 fp32 elements ending at UINT64_MAX
    pl = (uint32_t)(n - HDR);
    memcpy(p, g + HDR, pl);
    put32(p + 48, 8);
    rc |= write_file(dir, "err-grad-count-mismatch.bin", s, raw_frame(s, 1, 0, BR_MSG_GRAD_CHUNK, 0, p, pl));
    memcpy(p, g + HDR, pl);
    p[8] = 0xff;  // offset + n_elems overflows
    rc |= write_file(dir, "err-grad-offset-overflow.bin", s, raw_frame(s, 1, 0, BR_MSG_GRAD_CHUNK, 0, p, pl));
    memcpy(p, g + HDR, pl);
    p[52] = 4;  // no such codec (3 is int8)
    rc |= write_file(dir, "err-grad-codec.bin", s, raw_frame(s, 1, 0, BR_MSG_GRAD_CHUNK, 0, p, pl));
    memcpy(p, g + HDR, pl);
    put32(p + 48, 0x80000000u);
    rc |= write_file(dir, "err-grad-count-huge.bin", s, raw_frame(s, 1, 0, BR_MSG_GRAD_CHUNK, 0, p, pl));
    memcpy(p, g + HDR, pl);
    memset(p + 32, 0xff, 8);  // loss sum NaN
    rc |= write_file(dir, "err-grad-loss-nan.bin", s, raw_frame(s, 1, 0, BR_MSG_GRAD_CHUNK, 0, p, pl));
    free(g);
    uint8_t *sc = encode_sample(S(BR_MSG_STATE_CHUNK, 1), &n);  // STATE_CHUNK at the end of a huge state
    pl = (uint32_t)(n - HDR);
    memcpy(p, sc + HDR, pl);
    p[16] = 14;
    rc |= write_file(dir, "err-state-outside.bin", s, raw_frame(s, 1, 0, BR_MSG_STATE_CHUNK, 0, p, pl));
    free(sc);
    memset(p, 0, 16);  // error code 0, empty message
    rc |= write_file(dir, "err-error-code0.bin", s, raw_frame(s, 1, 0, BR_MSG_ERROR, 0, p, 6));
    free(hb);
    return rc;
}

static bool has_prefix(const char *s, const char *pre) {
    return strncmp(s, pre, strlen(pre)) == 0;
}

static void test_corpus_replay(void) {
    const char *dir = corpus_dir();
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "\n  cannot open corpus %s: %s (run from the repo root)\n", dir,
                strerror(errno));
        CU_FAIL_FATAL("corpus directory missing");
    }
    int n_ok = 0, n_err = 0, n_need = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        if (!strcmp(e->d_name, "README.md")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        static uint8_t buf[HDR + BR_PROTO_CHUNK_OVERHEAD + BR_PROTO_DEFAULT_CHUNK_BYTES + 4096];
        size_t n = fread(buf, 1, sizeof buf, f);
        bool too_big = !feof(f) && fgetc(f) != EOF;
        fclose(f);
        CU_ASSERT(!too_big);
        FeedResult a = feed_stream(buf, n, slice_all, NULL);
        FeedResult b = feed_stream(buf, n, slice_one, NULL);
        bool same = a.status == b.status && a.n_frames == b.n_frames &&
                    a.reenc_crc == b.reenc_crc && strcmp(a.err, b.err) == 0;
        bool ok;
        if (has_prefix(e->d_name, "ok-")) {
            n_ok++;
            ok = a.status == BR_PROTO_NEED_MORE && a.pending == 0 && a.n_frames > 0 &&
                 !a.reenc_failed;
        } else if (has_prefix(e->d_name, "need-")) {
            n_need++;
            ok = a.status == BR_PROTO_NEED_MORE && (n == 0 || a.pending > 0);
        } else if (has_prefix(e->d_name, "err-")) {
            n_err++;
            ok = a.status == BR_PROTO_ERROR && strs_have(a.err, "stream offset");
        } else {
            ok = false;
            fprintf(stderr, "\n  %s: corpus files are named ok-*, need-* or err-*\n", path);
        }
        if (!ok || !same)
            fprintf(stderr, "\n  %s: status %d, %d frames, pending %zu, error '%s'%s\n", path,
                    a.status, a.n_frames, a.pending, a.err, same ? "" : " (slicings disagree)");
        CU_ASSERT(ok && same);
    }
    closedir(dp);
    printf(" [%d ok, %d need, %d err] ", n_ok, n_need, n_err);
    CU_ASSERT(n_ok >= 10 && n_err >= 10 && n_need >= 3);
}

// `--classify FILE...`: prints the corpus prefix each file earns (ok, need or err) and, for
// err, the decoder's message; for naming fuzzer findings before adding them to the corpus.
// Runs as a CUnit test because feed_stream asserts.
static int g_classify_argc;
static char **g_classify_argv;

static void classify_files(void) {
    static uint8_t buf[HDR + BR_PROTO_CHUNK_OVERHEAD + BR_PROTO_DEFAULT_CHUNK_BYTES + 4096];
    for (int i = 0; i < g_classify_argc; i++) {
        const char *path = g_classify_argv[i];
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "test_proto: cannot open %s: %s\n", path, strerror(errno));
            CU_FAIL("cannot open a file to classify");
            continue;
        }
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        FeedResult r = feed_stream(buf, n, slice_all, NULL);
        if (r.status == BR_PROTO_ERROR) printf("err\t%s\t%s\n", path, r.err);
        else if (r.pending > 0 || r.n_frames == 0) printf("need\t%s\n", path);
        else printf("ok\t%s\n", path);
    }
}

// `--repair-crcs IN OUT`: copies IN to OUT with the checksums of every frame repaired,
// walking by the length fields (as fuzz_proto.c does before its second pass), so that a
// fuzzer finding reaches the payload checks when replayed.
static int repair_file(const char *in, const char *out) {
    static uint8_t buf[HDR + BR_PROTO_CHUNK_OVERHEAD + BR_PROTO_DEFAULT_CHUNK_BYTES + 4096];
    FILE *f = fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "test_proto: cannot open %s: %s\n", in, strerror(errno));
        return 1;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t pos = 0;
    while (n - pos >= HDR) {
        fix_crcs(buf + pos, n - pos);
        uint32_t len = get32(buf + pos + 8);
        if (n - pos - HDR < len) break;
        pos += HDR + len;
    }
    f = fopen(out, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "test_proto: cannot write %s: %s\n", out, strerror(errno));
        return 1;
    }
    return 0;
}

// ---- main ----

typedef TuTest TestDef;

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-corpus")) {
        if (mkdir(argv[2], 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "test_proto: cannot create %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        return write_corpus(argv[2]) ? 1 : 0;
    }
    if (argc == 4 && !strcmp(argv[1], "--repair-crcs")) return repair_file(argv[2], argv[3]);
    bool classify = argc >= 2 && !strcmp(argv[1], "--classify");
    if (classify) {
        g_classify_argc = argc - 2;
        g_classify_argv = argv + 2;
    } else if (argc != 1) {
        fprintf(stderr, "usage: test_proto [--write-corpus DIR | --classify FILE... | "
                        "--repair-crcs IN OUT]\n");
        return 2;
    }
    static const TestDef tests[] = {
        {"crc32c_vectors", test_crc32c_vectors},
        {"crc32c_reference", test_crc32c_reference},
        {"utf8", test_utf8},
        {"golden_bytes", test_golden_bytes},
        {"roundtrip_every_type", test_roundtrip},
        {"encode_capacity", test_encode_capacity},
        {"encode_rejects", test_encode_rejects},
        {"slicing", test_slicing},
        {"truncation", test_truncation},
        {"bit_flips", test_bit_flips},
        {"oversized", test_oversized},
        {"malformed_payloads", test_malformed_payloads},
        {"int8_chunks", test_int8_chunks},
        {"header_errors", test_header_errors},
        {"garbage", test_garbage},
        {"corpus_replay", test_corpus_replay},
    };
    static const TestDef classify_test[] = {{"classify", classify_files}};
    const TuSuite suite = {.name = "proto",
                           .tests = classify ? classify_test : tests,
                           .n_tests = classify ? NELEM(classify_test) : NELEM(tests)};
    return tu_run(&suite, 1, NULL, classify ? CU_BRM_SILENT : CU_BRM_VERBOSE);
}
