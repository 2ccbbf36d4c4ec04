// fuzz_proto.c: libFuzzer target for the bridge's frame decoder (bridge/proto.h).
//
// Not part of the normal build (the Makefile compiles tests/test_*.c only); the build and
// run commands are in tests/tools/fuzz/README.md. Each input is treated as a byte stream from a
// peer and decoded twice, as sent and with every frame's checksums repaired (so that the
// fuzzer's mutations reach the payload decoders instead of dying at the CRC check), each
// time:
//   - all at once and in pseudo-random slices (1..97 bytes, seeded from the input): both
//     must give the same frames and the same error message;
//   - with the one-shot br_proto_decode walking the buffer: same frames, same outcome;
// and every decoded frame must re-encode: to exactly its input bytes when it is of our
// minor version, to its known-field prefix when newer, to its own payload and the fields it
// lacks when older (a 1.0 WELCOME). The decoder's buffer must stay
// within the limits. The same bytes are also read as the fields of a message to encode
// (into a buffer of an input-chosen capacity): whatever the encoder accepts must decode
// back to the same bytes. Any violation aborts (a crash for libFuzzer).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz_proto: %s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                                    \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static uint8_t g_reenc[BR_PROTO_HEADER_BYTES + BR_PROTO_CHUNK_OVERHEAD + BR_PROTO_DEFAULT_CHUNK_BYTES];

typedef struct Outcome {
    int status;        // BR_PROTO_ERROR or BR_PROTO_NEED_MORE (all consumed)
    int n_frames;
    uint64_t consumed;
    uint32_t frames_crc;  // CRC32C over the re-encoded frames
    char err[CX_ERRLEN];
} Outcome;

static uint64_t g_seed;

static size_t next_slice(void) {
    g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull;
    return 1 + (size_t)((g_seed >> 33) % 97);
}

// Checks a decoded frame that began at data[off] (its bytes are data[off..off+HDR+payload)).
static void check_frame(const BrFrame *f, const uint8_t *data, size_t size, uint64_t off,
                        const BrProtoLimits *lim, Outcome *o) {
    size_t fb = BR_PROTO_HEADER_BYTES + (size_t)f->payload_bytes;
    FZ_ASSERT(off <= size && fb <= size - off);
    FZ_ASSERT(f->payload_bytes <= br_proto_max_payload(f->type, lim));
    char err[CX_ERRLEN];
    int n = br_proto_encode(g_reenc, sizeof g_reenc, f, lim, err);
    if (n < 0) fprintf(stderr, "fuzz_proto: decoded frame does not re-encode: %s\n", err);
    FZ_ASSERT(n >= BR_PROTO_HEADER_BYTES);
    const uint8_t *orig = data + off;
    if (f->version_minor == BR_PROTO_VERSION_MINOR) {
        FZ_ASSERT((size_t)n == fb && memcmp(g_reenc, orig, fb) == 0);
    } else if (f->version_minor < BR_PROTO_VERSION_MINOR) {
        // an older frame: its payload, then the fields it lacks (WELCOME's 1.1 data fields)
        FZ_ASSERT((size_t)n >= fb && g_reenc[6] == orig[6]);
        FZ_ASSERT(memcmp(g_reenc + BR_PROTO_HEADER_BYTES, orig + BR_PROTO_HEADER_BYTES,
                         fb - BR_PROTO_HEADER_BYTES) == 0);
    } else {
        FZ_ASSERT((size_t)n <= fb && g_reenc[6] == orig[6]);
        FZ_ASSERT(memcmp(g_reenc + BR_PROTO_HEADER_BYTES, orig + BR_PROTO_HEADER_BYTES,
                         (size_t)n - BR_PROTO_HEADER_BYTES) == 0);
    }
    o->n_frames++;
    o->frames_crc = br_crc32c(o->frames_crc, g_reenc, (size_t)n);
}

static Outcome run_decoder(const uint8_t *data, size_t size, const BrProtoLimits *lim,
                           bool sliced) {
    Outcome o = {.status = BR_PROTO_NEED_MORE};
    BrProtoDecoder d;
    char err[CX_ERRLEN];
    FZ_ASSERT(br_proto_decoder_init(&d, lim, err) == 0);
    BrFrame f;
    size_t pos = 0;
    while (pos < size) {
        size_t give = sliced ? next_slice() : size - pos;
        if (give > size - pos) give = size - pos;
        size_t used = 0;
        int r = br_proto_decoder_feed(&d, data + pos, give, &used, &f);
        FZ_ASSERT(used <= give);
        pos += used;
        FZ_ASSERT(d.offset == pos);
        FZ_ASSERT(br_proto_decoder_capacity(&d) + BR_PROTO_HEADER_BYTES <=
                  br_proto_max_frame_bytes(lim));
        if (r == BR_PROTO_ERROR) {
            o.status = BR_PROTO_ERROR;
            snprintf(o.err, sizeof o.err, "%s", br_proto_decoder_error(&d));
            FZ_ASSERT(strstr(o.err, "stream offset") != NULL);
            size_t again = 1;
            FZ_ASSERT(br_proto_decoder_feed(&d, data, size, &again, &f) == BR_PROTO_ERROR);
            FZ_ASSERT(again == 0);
            break;
        }
        if (r == BR_PROTO_FRAME) {
            FZ_ASSERT(f.stream_offset + BR_PROTO_HEADER_BYTES + f.payload_bytes == pos);
            check_frame(&f, data, size, f.stream_offset, lim, &o);
        } else {
            FZ_ASSERT(r == BR_PROTO_NEED_MORE && used == give);
        }
    }
    if (o.status == BR_PROTO_NEED_MORE) {
        FZ_ASSERT(pos == size);
        FZ_ASSERT(br_proto_decoder_pending(&d) <= br_proto_max_frame_bytes(lim));
    }
    o.consumed = d.offset;
    br_proto_decoder_free(&d);
    return o;
}

static Outcome run_oneshot(const uint8_t *data, size_t size, const BrProtoLimits *lim) {
    Outcome o = {.status = BR_PROTO_NEED_MORE};
    size_t pos = 0;
    BrFrame f;
    for (;;) {
        size_t used = 7;
        int r = br_proto_decode(data + pos, size - pos, lim, &f, &used, o.err);
        if (r == BR_PROTO_FRAME) {
            FZ_ASSERT(used >= BR_PROTO_HEADER_BYTES && used <= size - pos);
            check_frame(&f, data, size, pos, lim, &o);
            pos += used;
            continue;
        }
        FZ_ASSERT(used == 0);
        o.status = r;
        break;
    }
    o.consumed = pos;
    return o;
}

static void check_all(const uint8_t *data, size_t size, const BrProtoLimits *lim) {
    Outcome a = run_decoder(data, size, lim, false);
    Outcome b = run_decoder(data, size, lim, true);
    FZ_ASSERT(a.status == b.status && a.n_frames == b.n_frames && a.frames_crc == b.frames_crc);
    FZ_ASSERT(a.consumed == b.consumed && strcmp(a.err, b.err) == 0);
    Outcome c = run_oneshot(data, size, lim);
    FZ_ASSERT(a.status == c.status && a.n_frames == c.n_frames && a.frames_crc == c.frames_crc);
}

// Repairs both checksums of every frame whose header lies in buf, walking by the length
// fields (a frame cut off by the end gets its header checksum only).
static void repair_crcs(uint8_t *buf, size_t n) {
    size_t pos = 0;
    while (n - pos >= BR_PROTO_HEADER_BYTES) {
        uint8_t *h = buf + pos;
        uint32_t c = br_crc32c(0, h, 12);
        for (int i = 0; i < 4; i++) h[12 + i] = (uint8_t)(c >> (8 * i));
        uint32_t len = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 |
                       (uint32_t)h[11] << 24;
        if (n - pos - BR_PROTO_HEADER_BYTES < len) break;
        c = br_crc32c(br_crc32c(0, h, 16), h + BR_PROTO_HEADER_BYTES, len);
        for (int i = 0; i < 4; i++) h[16 + i] = (uint8_t)(c >> (8 * i));
        pos += BR_PROTO_HEADER_BYTES + len;
    }
}

// ---- the encoder: a message built from the input's bytes ----

typedef struct Bytes {
    const uint8_t *p;
    size_t n, pos;
} Bytes;

static uint64_t take(Bytes *b, int k) {  // k bytes little-endian, zeros past the end
    uint64_t v = 0;
    for (int i = 0; i < k; i++, b->pos++)
        if (b->pos < b->n) v |= (uint64_t)b->p[b->pos] << (8 * i);
    return v;
}

static void take_string(Bytes *b, char *dst, size_t cap) {  // cap includes the NUL
    size_t len = (size_t)take(b, 2) % (cap + 8);
    size_t k = 0;
    for (; k < len && k + 1 < cap && b->pos < b->n; k++) dst[k] = (char)b->p[b->pos++];
    dst[k] = '\0';
}

// Chunk data: any length the encoder may read (it reads at most the chunk limit).
static uint8_t g_chunk_src[BR_PROTO_MAX_CHUNK_BYTES / 16];

// Whatever the encoder accepts, the decoder must accept and give back byte for byte; the
// encoder never writes at or past cap (the buffer is exactly cap bytes, ASan checks).
static void check_encoder(const uint8_t *data, size_t size, const BrProtoLimits *lim) {
    Bytes b = {.p = data, .n = size};
    static BrFrame f;
    memset(&f, 0, sizeof f);
    f.type = (BrMsgType)(take(&b, 1) % 16);
    size_t cap = (size_t)take(&b, 2) % 4200;
    if (take(&b, 1) & 1) cap = sizeof g_reenc;
    switch (f.type) {
    case BR_MSG_HELLO:
        f.m.hello.version_major = (uint8_t)(take(&b, 1) % 3);
        f.m.hello.version_minor = (uint8_t)take(&b, 1);
        f.m.hello.resume = take(&b, 1) & 1;
        f.m.hello.codecs = (uint32_t)take(&b, 4);
        for (int i = 0; i < 16; i++) f.m.hello.identity.bytes[i] = (uint8_t)(take(&b, 1) % 2);
        take_string(&b, f.m.hello.token, sizeof f.m.hello.token);
        take_string(&b, f.m.hello.name, sizeof f.m.hello.name);
        break;
    case BR_MSG_WELCOME:
        f.m.welcome.session_id = take(&b, 8);
        for (int i = 0; i < 16; i++) f.m.welcome.identity.bytes[i] = (uint8_t)(take(&b, 1) % 2);
        f.m.welcome.step = take(&b, 8);
        f.m.welcome.samples_seen = take(&b, 8);
        f.m.welcome.n_params = take(&b, 8);
        f.m.welcome.state_bytes = take(&b, 8);
        f.m.welcome.round_deadline_ms = (uint32_t)take(&b, 4);
        f.m.welcome.max_chunk_bytes = (uint32_t)take(&b, 4);
        f.m.welcome.codec = (uint8_t)(take(&b, 1) % 4);
        f.m.welcome.data_bytes = take(&b, 8);
        for (int i = 0; i < BR_DATA_HASH_BYTES; i++) f.m.welcome.data_hash[i] = (uint8_t)take(&b, 1);
        break;
    case BR_MSG_DATA_REQUEST:
        f.m.data_request.offset = take(&b, 8);
        f.m.data_request.n_bytes = (uint32_t)take(&b, 4);
        break;
    case BR_MSG_DATA_CHUNK:
        f.m.data_chunk.offset = take(&b, 8);
        f.m.data_chunk.total_bytes = take(&b, 8);
        f.m.data_chunk.n_bytes = (uint32_t)take(&b, 3) % (sizeof g_chunk_src + 1);
        f.m.data_chunk.data = (take(&b, 1) % 8) ? g_chunk_src : NULL;
        break;
    case BR_MSG_STATE_REQUEST:
        f.m.state_request.offset = take(&b, 8);
        f.m.state_request.n_bytes = (uint32_t)take(&b, 4);
        break;
    case BR_MSG_STATE_CHUNK:
        f.m.state_chunk.offset = take(&b, 8);
        f.m.state_chunk.total_bytes = take(&b, 8);
        f.m.state_chunk.n_bytes = (uint32_t)take(&b, 3) % (sizeof g_chunk_src + 1);
        f.m.state_chunk.data = (take(&b, 1) % 8) ? g_chunk_src : NULL;
        break;
    case BR_MSG_PROGRESS:
        f.m.progress.step = take(&b, 8);
        f.m.progress.samples = take(&b, 8);
        break;
    case BR_MSG_ROUND_OPEN:
        f.m.round_open.round_id = take(&b, 8);
        f.m.round_open.step = take(&b, 8);
        f.m.round_open.target_samples = take(&b, 8);
        f.m.round_open.sample_start = take(&b, 8);
        f.m.round_open.n_samples = take(&b, 8);
        f.m.round_open.params_hash = take(&b, 8);
        break;
    case BR_MSG_ROUND_CLOSE:
        f.m.round_close.round_id = take(&b, 8);
        f.m.round_close.accepted_samples = take(&b, 8);
        f.m.round_close.samples = take(&b, 8);
        f.m.round_close.tokens = take(&b, 8);
        f.m.round_close.participants = (uint32_t)take(&b, 4);
        f.m.round_close.loss_sum = (double)(int64_t)take(&b, 8) / 1024.0;
        f.m.round_close.aux_sum = (double)(take(&b, 2));
        break;
    case BR_MSG_GRAD_CHUNK:
    case BR_MSG_AVG_CHUNK: {
        uint64_t round = take(&b, 8), offset = take(&b, 8), samples = take(&b, 8);
        uint8_t codec = (uint8_t)(take(&b, 1) % 4);
        uint32_t n = (uint32_t)take(&b, 3);
        // the encoder reads the data: keep it within g_chunk_src (n = 0 stays invalid)
        if (br_proto_codec_encoded_bytes(codec, n) > sizeof g_chunk_src)
            n = (uint32_t)codec_chunk_elems(codec, sizeof g_chunk_src);
        const uint8_t *d = (take(&b, 1) % 8) ? g_chunk_src : NULL;
        if (f.type == BR_MSG_GRAD_CHUNK) {
            uint64_t tokens = take(&b, 8);
            double loss = (double)(int64_t)take(&b, 8) / 1024.0, aux = (double)take(&b, 2);
            f.m.grad_chunk = (BrGradChunk){.round_id = round, .offset = offset, .samples = samples,
                                           .tokens = tokens, .loss_sum = loss, .aux_sum = aux,
                                           .n_elems = n, .codec = codec, .data = d};
        } else {
            f.m.avg_chunk = (BrAvgChunk){.round_id = round, .offset = offset, .n_elems = n,
                                         .codec = codec, .data = d};
        }
        break;
    }
    case BR_MSG_HEARTBEAT:
        f.m.heartbeat.time_us = take(&b, 8);
        break;
    case BR_MSG_ERROR:
        f.m.error.code = (uint32_t)take(&b, 4) % 3;
        take_string(&b, f.m.error.message, sizeof f.m.error.message);
        break;
    case BR_MSG_BYE:
        f.m.bye.reason = (uint32_t)take(&b, 4);
        break;
    default:
        break;
    }
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return;
    char err[CX_ERRLEN];
    int n = br_proto_encode(buf, cap, &f, lim, err);
    if (n < 0) {
        FZ_ASSERT(n == -1 && err[0] != '\0');
    } else {
        FZ_ASSERT((size_t)n <= cap && (size_t)n <= br_proto_max_frame_bytes(lim));
        BrFrame out;
        size_t used = 0;
        int r = br_proto_decode(buf, (size_t)n, lim, &out, &used, err);
        if (r != BR_PROTO_FRAME) fprintf(stderr, "fuzz_proto: encoded frame rejected: %s\n", err);
        FZ_ASSERT(r == BR_PROTO_FRAME && used == (size_t)n && out.type == f.type);
        Outcome o = {0};
        check_frame(&out, buf, (size_t)n, 0, lim, &o);  // decodes back to the same bytes
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // The input is the stream itself (so the stored corpus files are plain streams); the
    // limits and the slicing are derived from a hash of it.
    uint32_t h = br_crc32c(0, data, size);
    BrProtoLimits lim = br_proto_limits_default();
    switch (h & 3) {
    case 1: lim.max_chunk_bytes = BR_PROTO_MIN_CHUNK_BYTES; break;
    case 2: lim.accept_types = BR_PROTO_PREAUTH_TYPES; break;
    case 3: lim.max_chunk_bytes = 4096; break;
    default: break;
    }
    g_seed = h;
    check_all(data, size, &lim);

    uint8_t *fixed = malloc(size ? size : 1);
    if (!fixed) return 0;
    if (size) memcpy(fixed, data, size);
    repair_crcs(fixed, size);
    check_all(fixed, size, &lim);
    free(fixed);

    // The STATE_REQUEST limit is the receiver's chunk limit: encode under the same limits.
    if (lim.accept_types == BR_MSG_ALL) check_encoder(data, size, &lim);
    return 0;
}
