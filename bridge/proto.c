// proto.c: the bridge's wire protocol (see proto.h for the frame layout and contracts).
//
// Every integer is serialized byte by byte in little-endian order; nothing here casts a
// byte pointer to a struct or a wider integer. Every length taken from the wire is compared
// against what remains with `remaining < need` (remaining = n - pos, and pos <= n always),
// never by adding to an offset that could wrap.
#include "bridge/proto.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/text/utf8.h"

// ---- little-endian byte access ----

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f64(uint8_t *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u64(p, bits);
}

static uint16_t get_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

// ---- CRC32C ----

// br_crc32c's table: entry i is i run through 8 rounds of the reflected polynomial
// 0x82F63B78 (test_proto checks it against the bitwise definition). A constant table
// needs no initialization, so there is nothing to race on between threads. One table
// lookup per byte runs at several hundred MB/s, far above any WAN link's rate.
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t br_crc32c(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc32c_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

// ---- UTF-8 ----

bool br_proto_utf8_valid(const uint8_t *s, size_t n) {
    return memchr(s, 0, n) == NULL && utf8_check((const char *)s, n) == n;
}

// ---- per-type facts ----

static const char *const type_names[] = {
    [BR_MSG_HELLO] = "HELLO",
    [BR_MSG_WELCOME] = "WELCOME",
    [BR_MSG_STATE_REQUEST] = "STATE_REQUEST",
    [BR_MSG_STATE_CHUNK] = "STATE_CHUNK",
    [BR_MSG_PROGRESS] = "PROGRESS",
    [BR_MSG_ROUND_OPEN] = "ROUND_OPEN",
    [BR_MSG_ROUND_CLOSE] = "ROUND_CLOSE",
    [BR_MSG_GRAD_CHUNK] = "GRAD_CHUNK",
    [BR_MSG_AVG_CHUNK] = "AVG_CHUNK",
    [BR_MSG_HEARTBEAT] = "HEARTBEAT",
    [BR_MSG_ERROR] = "ERROR",
    [BR_MSG_BYE] = "BYE",
    [BR_MSG_DATA_REQUEST] = "DATA_REQUEST",
    [BR_MSG_DATA_CHUNK] = "DATA_CHUNK",
    // -- the link check --
    [BR_MSG_PROBE] = "PROBE",
    [BR_MSG_PROBE_ACK] = "PROBE_ACK",
};

// Smallest payload of each type in its first version (1.0; 1.1 for the DATA_ types); for
// fixed-size types also the exact size (but see payload_fixed: WELCOME grew in 1.1).
static const uint16_t min_payload[] = {
    [BR_MSG_HELLO] = BR_HELLO_MIN_BYTES,
    [BR_MSG_WELCOME] = BR_WELCOME_BYTES_1_0,
    [BR_MSG_STATE_REQUEST] = BR_STATE_REQUEST_BYTES,
    [BR_MSG_STATE_CHUNK] = BR_STATE_CHUNK_FIXED_BYTES,
    [BR_MSG_PROGRESS] = BR_PROGRESS_BYTES,
    [BR_MSG_ROUND_OPEN] = BR_ROUND_OPEN_BYTES,
    [BR_MSG_ROUND_CLOSE] = BR_ROUND_CLOSE_BYTES,
    [BR_MSG_GRAD_CHUNK] = BR_GRAD_CHUNK_FIXED_BYTES,
    [BR_MSG_AVG_CHUNK] = BR_AVG_CHUNK_FIXED_BYTES,
    [BR_MSG_HEARTBEAT] = BR_HEARTBEAT_BYTES,
    [BR_MSG_ERROR] = BR_ERROR_FIXED_BYTES,
    [BR_MSG_BYE] = BR_BYE_BYTES,
    [BR_MSG_DATA_REQUEST] = BR_DATA_REQUEST_BYTES,
    [BR_MSG_DATA_CHUNK] = BR_DATA_CHUNK_FIXED_BYTES,
    // -- the link check --
    [BR_MSG_PROBE] = BR_PROBE_FIXED_BYTES,
    [BR_MSG_PROBE_ACK] = BR_PROBE_ACK_BYTES,
};

// The fixed part of a type's payload in a frame of minor version `minor` (the exact size of
// a fixed-size type): what min_payload says, but a WELCOME of 1.1 or newer holds the data
// fields.
static uint32_t payload_fixed(int type, uint8_t minor) {
    if (type == BR_MSG_WELCOME && minor >= 1) return BR_WELCOME_BYTES;
    return min_payload[type];
}

// The numbers in BR_MSG_FIRST..BR_MSG_LAST that BR_MSG_ALL names.
static bool type_known(int type) {
    return type >= BR_MSG_FIRST && type <= BR_MSG_LAST && (BR_MSG_ALL & BR_MSG_BIT(type));
}

static bool type_fixed_size(int type) {
    switch (type) {
    case BR_MSG_HELLO:
    case BR_MSG_STATE_CHUNK:
    case BR_MSG_GRAD_CHUNK:
    case BR_MSG_AVG_CHUNK:
    case BR_MSG_ERROR:
    case BR_MSG_DATA_CHUNK:
    case BR_MSG_PROBE:  // (the link check)
        return false;
    default:
        return true;
    }
}

static bool type_is_chunk(int type) {
    return type == BR_MSG_STATE_CHUNK || type == BR_MSG_GRAD_CHUNK || type == BR_MSG_AVG_CHUNK ||
           type == BR_MSG_DATA_CHUNK;
}

const char *br_proto_type_name(int type) {
    return type_known(type) ? type_names[type] : "unknown";
}

size_t br_proto_codec_elem_bytes(int codec) { return codec_elem_bytes(codec); }

// size_t holds every chunk size exactly: n_elems < 2^32, at most 4 bytes per element.
_Static_assert(SIZE_MAX / 4 >= UINT32_MAX, "size_t too small for chunk sizes");

uint64_t br_proto_codec_encoded_bytes(int codec, uint32_t n_elems) {
    return codec_encoded_bytes(codec, n_elems);
}

bool br_proto_codec_known(int codec) { return codec_find(codec) != NULL; }

static const char *codec_name(int codec) {
    const Codec *k = codec_find(codec);
    return k ? k->name : "unknown";
}

BrProtoLimits br_proto_limits_default(void) {
    BrProtoLimits lim = {.max_chunk_bytes = BR_PROTO_DEFAULT_CHUNK_BYTES,
                         .accept_types = BR_MSG_ALL};
    return lim;
}

int br_proto_limits_check(const BrProtoLimits *lim, char *err) {
    if (lim->max_chunk_bytes < BR_PROTO_MIN_CHUNK_BYTES ||
        lim->max_chunk_bytes > BR_PROTO_MAX_CHUNK_BYTES)
        return cx_err(err, "bridge protocol: max_chunk_bytes %" PRIu32 " outside %u..%u",
                      lim->max_chunk_bytes, BR_PROTO_MIN_CHUNK_BYTES, BR_PROTO_MAX_CHUNK_BYTES);
    if (lim->accept_types & ~(uint32_t)BR_MSG_ALL)
        return cx_err(err, "bridge protocol: accept_types 0x%" PRIx32 " names unknown types",
                      lim->accept_types);
    return 0;
}

size_t br_proto_max_payload(int type, const BrProtoLimits *lim) {
    BrProtoLimits def = br_proto_limits_default();
    if (!lim) lim = &def;
    if (!type_known(type)) return 0;
    if (type == BR_MSG_HELLO) return BR_PROTO_MAX_HELLO_BYTES;
    if (type == BR_MSG_ERROR) return BR_PROTO_MAX_ERROR_BYTES;
    if (type_is_chunk(type) || type == BR_MSG_PROBE)
        return (size_t)BR_PROTO_CHUNK_OVERHEAD + lim->max_chunk_bytes;
    return BR_PROTO_MAX_CONTROL_BYTES;
}

size_t br_proto_max_frame_bytes(const BrProtoLimits *lim) {
    size_t m = 0;
    for (int t = BR_MSG_FIRST; t <= BR_MSG_LAST; t++) {
        size_t p = br_proto_max_payload(t, lim);
        if (p > m) m = p;
    }
    return BR_PROTO_HEADER_BYTES + m;
}

static bool identity_zero(const BrIdentity *id) {
    for (size_t i = 0; i < sizeof id->bytes; i++)
        if (id->bytes[i]) return false;
    return true;
}

// ---- header checks (shared by both decoders) ----

typedef struct Header {
    uint8_t minor, type;
    uint32_t payload_bytes;
} Header;

// Checks the header bytes h[from..have) that can be judged alone (magic 0..3, major 4), so
// that a stream of something else is refused at its first wrong byte. base is the stream
// offset of h[0].
static int check_prefix(const uint8_t *h, size_t have, size_t from, uint64_t base, char *err) {
    static const uint8_t magic[4] = {'C', 'X', 'B', 'R'};
    for (size_t i = from; i < have && i < 5; i++) {
        if (i < 4 && h[i] != magic[i]) {
            char got[4 * 5 + 1] = "";
            size_t k = 0;
            for (size_t j = 0; j <= i; j++)
                k += (size_t)snprintf(got + k, sizeof got - k, "%s%02x", j ? " " : "", h[j]);
            return cx_err(err,
                          "bad frame magic at stream offset %" PRIu64
                          ": bytes %s, expected 43 58 42 52 (\"CXBR\"): not a conflux bridge "
                          "stream, or the stream lost its framing",
                          base + i, got);
        }
        if (i == 4 && h[4] != BR_PROTO_VERSION_MAJOR)
            return cx_err(err,
                          "unsupported protocol major version %u at stream offset %" PRIu64
                          " (this build speaks %d.%d); the peer needs a compatible conflux",
                          h[4], base + 4, BR_PROTO_VERSION_MAJOR, BR_PROTO_VERSION_MINOR);
    }
    return 0;
}

// Checks a complete header against lim (everything but the frame checksum, which needs
// the payload). Nothing has been allocated for the payload yet.
static int check_header(const uint8_t *h, const BrProtoLimits *lim, uint64_t base, Header *out,
                        char *err) {
    if (check_prefix(h, BR_PROTO_HEADER_BYTES, 0, base, err)) return -1;
    uint32_t want = get_u32(h + 12), got = br_crc32c(0, h, 12);
    if (want != got)
        return cx_err(err,
                      "header checksum mismatch at stream offset %" PRIu64
                      " (computed 0x%08" PRIx32 ", header says 0x%08" PRIx32
                      "): corrupted stream",
                      base + 12, got, want);
    uint8_t type = h[6];
    if (!type_known(type))
        return cx_err(err, "unknown message type %u at stream offset %" PRIu64, type, base + 6);
    const char *name = type_names[type];
    if (h[7] != 0)
        return cx_err(err, "%s frame has reserved flag bits 0x%02x set at stream offset %" PRIu64,
                      name, h[7], base + 7);
    if (!(lim->accept_types & BR_MSG_BIT(type)))
        return cx_err(err, "%s frame not accepted in this connection state at stream offset %" PRIu64,
                      name, base + 6);
    uint32_t len = get_u32(h + 8);
    size_t max = br_proto_max_payload(type, lim);
    if (len > max)
        return cx_err(err,
                      "%s payload of %" PRIu32 " bytes exceeds the limit of %zu at stream offset %" PRIu64,
                      name, len, max, base + 8);
    uint32_t fixed = payload_fixed(type, h[5]);
    if (len < fixed)
        return cx_err(err,
                      "%s payload of %" PRIu32 " bytes is shorter than the minimum of %" PRIu32
                      " at stream offset %" PRIu64,
                      name, len, fixed, base + 8);
    if (type_fixed_size(type) && h[5] <= BR_PROTO_VERSION_MINOR && len != fixed)
        return cx_err(err,
                      "%s payload of %" PRIu32 " bytes; version %d.%u defines exactly %" PRIu32
                      ", at stream offset %" PRIu64,
                      name, len, BR_PROTO_VERSION_MAJOR, h[5], fixed, base + 8);
    out->minor = h[5];
    out->type = type;
    out->payload_bytes = len;
    return 0;
}

static int check_frame_crc(const uint8_t *h, const uint8_t *payload, uint32_t n, uint64_t base,
                           char *err) {
    uint32_t want = get_u32(h + 16);
    uint32_t got = br_crc32c(br_crc32c(0, h, 16), payload, n);
    if (want != got)
        return cx_err(err,
                      "frame checksum mismatch in %s frame at stream offset %" PRIu64
                      " (%" PRIu32 " payload bytes; computed 0x%08" PRIx32 ", header says 0x%08" PRIx32
                      "): corrupted stream",
                      type_names[h[6]], base + 16, n, got, want);
    return 0;
}

// ---- payload decoding ----

typedef struct Reader {
    const uint8_t *p;
    size_t n, pos;       // pos <= n always
    uint64_t base;       // stream offset of p[0]
    const char *name;    // message type name
    char *err;
} Reader;

// Formats "TYPE: what (at stream offset N)" where N is the offset of the field at `at`.
__attribute__((format(printf, 3, 4))) static int rfail(const Reader *r, size_t at,
                                                       const char *fmt, ...) {
    char what[CX_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cx_err(r->err, "%s: %s at stream offset %" PRIu64, r->name, what, r->base + at);
}

static int need(Reader *r, size_t k, const char *field) {
    if (r->n - r->pos < k)
        return rfail(r, r->pos, "payload ends inside %s (%zu bytes left, %zu needed)", field,
                     r->n - r->pos, k);
    return 0;
}

static int rd_u8(Reader *r, const char *field, uint8_t *v) {
    if (need(r, 1, field)) return -1;
    *v = r->p[r->pos++];
    return 0;
}

static int rd_u16(Reader *r, const char *field, uint16_t *v) {
    if (need(r, 2, field)) return -1;
    *v = get_u16(r->p + r->pos);
    r->pos += 2;
    return 0;
}

static int rd_u32(Reader *r, const char *field, uint32_t *v) {
    if (need(r, 4, field)) return -1;
    *v = get_u32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_u64(Reader *r, const char *field, uint64_t *v) {
    if (need(r, 8, field)) return -1;
    *v = get_u64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

// A finite binary64 (the bits as a little-endian u64).
static int rd_f64(Reader *r, const char *field, double *v) {
    size_t at = r->pos;
    uint64_t bits;
    if (rd_u64(r, field, &bits)) return -1;
    memcpy(v, &bits, sizeof *v);
    if (!isfinite(*v)) return rfail(r, at, "%s is not finite", field);
    return 0;
}

static int rd_identity(Reader *r, BrIdentity *id) {
    if (need(r, sizeof id->bytes, "identity")) return -1;
    memcpy(id->bytes, r->p + r->pos, sizeof id->bytes);
    r->pos += sizeof id->bytes;
    return 0;
}

// A u32 length of raw bytes that follow (a chunk's, a probe's), at most max; *at is where it
// starts, for the messages of rd_bytes. noun names the frame in the messages.
static int rd_len(Reader *r, const char *noun, uint32_t max, uint32_t *n, size_t *at) {
    *at = r->pos;
    if (rd_u32(r, "length", n)) return -1;
    if (*n > max)
        return rfail(r, *at, "%s of %" PRIu32 " bytes exceeds the limit of %" PRIu32, noun, *n,
                     max);
    return 0;
}

// The n raw bytes rd_len announced at `at`: *data points into the payload.
static int rd_bytes(Reader *r, const char *noun, size_t at, uint32_t n, const uint8_t **data) {
    if (r->n - r->pos < n)
        return rfail(r, at, "%s declares %" PRIu32 " bytes but the payload holds %zu", noun, n,
                     r->n - r->pos);
    *data = r->p + r->pos;
    r->pos += n;
    return 0;
}

static int rd_reserved(Reader *r, size_t k) {
    if (need(r, k, "reserved bytes")) return -1;
    for (size_t i = 0; i < k; i++)
        if (r->p[r->pos + i] != 0)
            return rfail(r, r->pos + i, "reserved byte is 0x%02x, must be 0", r->p[r->pos + i]);
    r->pos += k;
    return 0;
}

// A u16 length and that many bytes of UTF-8 without NUL into dst (max + 1 bytes, NUL added).
static int rd_string(Reader *r, const char *field, size_t min, size_t max, char *dst) {
    size_t at = r->pos;
    uint16_t len;
    if (rd_u16(r, field, &len)) return -1;
    if (len < min || len > max)
        return rfail(r, at, "%s of %u bytes is outside %zu..%zu", field, len, min, max);
    if (r->n - r->pos < len)
        return rfail(r, at, "%s declares %u bytes but only %zu remain in the payload", field, len,
                     r->n - r->pos);
    if (!br_proto_utf8_valid(r->p + r->pos, len))
        return rfail(r, r->pos, "%s is not valid UTF-8 or contains NUL", field);
    memcpy(dst, r->p + r->pos, len);
    dst[len] = '\0';
    r->pos += len;
    return 0;
}

static int rd_codec(Reader *r, uint8_t *codec) {
    size_t at = r->pos;
    if (rd_u8(r, "codec", codec)) return -1;
    if (!br_proto_codec_known(*codec)) return rfail(r, at, "unknown codec %u", *codec);
    return 0;
}

// Element data of a GRAD/AVG chunk: n_elems of codec, within the chunk limit. offset_at and
// n_elems_at are the payload positions of those fields (for messages).
static int rd_elems(Reader *r, uint64_t offset, size_t offset_at, uint32_t n_elems,
                    size_t n_elems_at, uint8_t codec, const BrProtoLimits *lim,
                    const uint8_t **data) {
    if (n_elems == 0) return rfail(r, n_elems_at, "element count is 0");
    uint64_t bytes = br_proto_codec_encoded_bytes(codec, n_elems);  // < 2^35
    if (bytes > lim->max_chunk_bytes)
        return rfail(r, n_elems_at, "%" PRIu32 " %s elements (%" PRIu64
                     " bytes) exceed the chunk limit of %" PRIu32 " bytes",
                     n_elems, codec_name(codec), bytes, lim->max_chunk_bytes);
    if (offset > UINT64_MAX - n_elems)
        return rfail(r, offset_at, "element range %" PRIu64 " + %" PRIu32 " overflows", offset,
                     n_elems);
    if (r->n - r->pos < bytes)
        return rfail(r, n_elems_at, "%" PRIu32 " %s elements need %" PRIu64
                     " bytes but the payload holds %zu after the fields",
                     n_elems, codec_name(codec), bytes, r->n - r->pos);
    *data = r->p + r->pos;
    r->pos += (size_t)bytes;
    return 0;
}

// Decodes a payload whose header passed check_header and whose checksum matched. Chunk data
// pointers in out point into payload.
static int decode_payload(const Header *h, const uint8_t *payload, uint64_t base,
                          const BrProtoLimits *lim, BrFrame *out, char *err) {
    Reader rr = {.p = payload, .n = h->payload_bytes, .pos = 0, .base = base,
                 .name = type_names[h->type], .err = err};
    Reader *r = &rr;
    memset(out, 0, sizeof *out);
    out->type = (BrMsgType)h->type;
    out->version_major = BR_PROTO_VERSION_MAJOR;
    out->version_minor = h->minor;
    out->payload_bytes = h->payload_bytes;
    size_t at;
    switch (h->type) {
    case BR_MSG_HELLO: {
        BrHello *m = &out->m.hello;
        uint8_t flags;
        at = r->pos;
        if (rd_u8(r, "version", &m->version_major)) return -1;
        if (m->version_major != BR_PROTO_VERSION_MAJOR)
            return rfail(r, at, "client speaks protocol major version %u, frame header says %d",
                         m->version_major, BR_PROTO_VERSION_MAJOR);
        if (rd_u8(r, "version", &m->version_minor)) return -1;
        at = r->pos;
        if (rd_u8(r, "flags", &flags)) return -1;
        if (flags & ~1u) return rfail(r, at, "unknown flag bits 0x%02x", flags);
        m->resume = flags & 1u;
        if (rd_reserved(r, 1)) return -1;
        at = r->pos;
        if (rd_u32(r, "codecs", &m->codecs)) return -1;
        if (m->codecs == 0) return rfail(r, at, "codec mask is empty");
        at = r->pos;
        if (rd_identity(r, &m->identity)) return -1;
        if (m->resume && identity_zero(&m->identity))
            return rfail(r, at, "resume requested without an identity");
        if (rd_string(r, "join token", 1, BR_PROTO_MAX_TOKEN_BYTES, m->token)) return -1;
        if (rd_string(r, "client name", 0, BR_PROTO_MAX_NAME_BYTES, m->name)) return -1;
        break;
    }
    case BR_MSG_WELCOME: {
        BrWelcome *m = &out->m.welcome;
        if (rd_u64(r, "session id", &m->session_id)) return -1;
        at = r->pos;
        if (rd_identity(r, &m->identity)) return -1;
        if (identity_zero(&m->identity)) return rfail(r, at, "assigned identity is all zero");
        if (rd_u64(r, "step", &m->step) || rd_u64(r, "samples_seen", &m->samples_seen) ||
            rd_u64(r, "parameter count", &m->n_params) ||
            rd_u64(r, "state size", &m->state_bytes))
            return -1;
        at = r->pos;
        if (rd_u32(r, "round deadline", &m->round_deadline_ms)) return -1;
        if (m->round_deadline_ms == 0) return rfail(r, at, "round deadline is 0 ms");
        at = r->pos;
        if (rd_u32(r, "max chunk size", &m->max_chunk_bytes)) return -1;
        if (m->max_chunk_bytes < BR_PROTO_MIN_CHUNK_BYTES ||
            m->max_chunk_bytes > BR_PROTO_MAX_CHUNK_BYTES)
            return rfail(r, at, "max chunk size %" PRIu32 " outside %u..%u", m->max_chunk_bytes,
                         BR_PROTO_MIN_CHUNK_BYTES, BR_PROTO_MAX_CHUNK_BYTES);
        if (rd_codec(r, &m->codec) || rd_reserved(r, 3)) return -1;
        if (h->minor >= 1) {  // 1.1: the training data (a 1.0 WELCOME leaves them 0)
            if (rd_u64(r, "data size", &m->data_bytes)) return -1;
            if (need(r, BR_DATA_HASH_BYTES, "data hash")) return -1;
            memcpy(m->data_hash, r->p + r->pos, BR_DATA_HASH_BYTES);
            r->pos += BR_DATA_HASH_BYTES;
        }
        break;
    }
    case BR_MSG_DATA_REQUEST:
    case BR_MSG_STATE_REQUEST: {
        // the same layout (BrDataRequest mirrors BrStateRequest)
        BrStateRequest *m = &out->m.state_request;
        _Static_assert(sizeof(BrStateRequest) == sizeof(BrDataRequest), "request layouts");
        if (rd_u64(r, "offset", &m->offset)) return -1;
        at = r->pos;
        if (rd_u32(r, "length", &m->n_bytes)) return -1;
        if (m->n_bytes == 0 || m->n_bytes > lim->max_chunk_bytes)
            return rfail(r, at, "requested length %" PRIu32 " outside 1..%" PRIu32, m->n_bytes,
                         lim->max_chunk_bytes);
        break;
    }
    case BR_MSG_DATA_CHUNK:
    case BR_MSG_STATE_CHUNK: {
        // the same layout (BrDataChunk mirrors BrStateChunk)
        BrStateChunk *m = &out->m.state_chunk;
        _Static_assert(sizeof(BrStateChunk) == sizeof(BrDataChunk), "chunk layouts");
        const char *what = h->type == BR_MSG_DATA_CHUNK ? "training data" : "state";
        if (rd_u64(r, "offset", &m->offset) || rd_u64(r, "total size", &m->total_bytes))
            return -1;
        if (rd_len(r, "chunk", lim->max_chunk_bytes, &m->n_bytes, &at)) return -1;
        if (m->offset > m->total_bytes || m->n_bytes > m->total_bytes - m->offset)
            return rfail(r, at, "chunk [%" PRIu64 ", +%" PRIu32 ") lies outside the %" PRIu64
                         "-byte %s", m->offset, m->n_bytes, m->total_bytes, what);
        if (rd_bytes(r, "chunk", at, m->n_bytes, &m->data)) return -1;
        break;
    }
    case BR_MSG_PROGRESS: {
        BrProgress *m = &out->m.progress;
        if (rd_u64(r, "step", &m->step) || rd_u64(r, "samples", &m->samples)) return -1;
        break;
    }
    case BR_MSG_ROUND_OPEN: {
        BrRoundOpen *m = &out->m.round_open;
        if (rd_u64(r, "round id", &m->round_id) || rd_u64(r, "step", &m->step)) return -1;
        at = r->pos;
        if (rd_u64(r, "target samples", &m->target_samples)) return -1;
        if (m->target_samples == 0) return rfail(r, at, "target samples is 0");
        if (rd_u64(r, "sample start", &m->sample_start)) return -1;
        at = r->pos;
        if (rd_u64(r, "sample count", &m->n_samples)) return -1;
        if (m->n_samples > m->target_samples)
            return rfail(r, at, "sample count %llu exceeds the target %llu",
                         (unsigned long long)m->n_samples, (unsigned long long)m->target_samples);
        if (rd_u64(r, "parameter hash", &m->params_hash)) return -1;
        break;
    }
    case BR_MSG_ROUND_CLOSE: {
        BrRoundClose *m = &out->m.round_close;
        if (rd_u64(r, "round id", &m->round_id) ||
            rd_u64(r, "accepted samples", &m->accepted_samples) ||
            rd_u64(r, "round samples", &m->samples) || rd_u64(r, "round tokens", &m->tokens) ||
            rd_u32(r, "participants", &m->participants) || rd_reserved(r, 4) ||
            rd_f64(r, "loss sum", &m->loss_sum) || rd_f64(r, "auxiliary loss sum", &m->aux_sum))
            return -1;
        break;
    }
    case BR_MSG_GRAD_CHUNK: {
        BrGradChunk *m = &out->m.grad_chunk;
        if (rd_u64(r, "round id", &m->round_id) || rd_u64(r, "offset", &m->offset)) return -1;
        at = r->pos;
        if (rd_u64(r, "samples", &m->samples)) return -1;
        if (m->samples == 0) return rfail(r, at, "sample count is 0");
        if (rd_u64(r, "tokens", &m->tokens) || rd_f64(r, "loss sum", &m->loss_sum) ||
            rd_f64(r, "auxiliary loss sum", &m->aux_sum))
            return -1;
        at = r->pos;
        if (rd_u32(r, "element count", &m->n_elems) || rd_codec(r, &m->codec) ||
            rd_reserved(r, 3))
            return -1;
        if (rd_elems(r, m->offset, 8, m->n_elems, at, m->codec, lim, &m->data)) return -1;
        break;
    }
    case BR_MSG_AVG_CHUNK: {
        BrAvgChunk *m = &out->m.avg_chunk;
        if (rd_u64(r, "round id", &m->round_id) || rd_u64(r, "offset", &m->offset)) return -1;
        at = r->pos;
        if (rd_u32(r, "element count", &m->n_elems) || rd_codec(r, &m->codec) ||
            rd_reserved(r, 3))
            return -1;
        if (rd_elems(r, m->offset, 8, m->n_elems, at, m->codec, lim, &m->data)) return -1;
        break;
    }
    case BR_MSG_HEARTBEAT:
        if (rd_u64(r, "time", &out->m.heartbeat.time_us)) return -1;
        break;
    case BR_MSG_ERROR: {
        BrErrorMsg *m = &out->m.error;
        at = r->pos;
        if (rd_u32(r, "code", &m->code)) return -1;
        if (m->code == 0) return rfail(r, at, "error code is 0");
        if (rd_string(r, "message", 0, BR_PROTO_MAX_MESSAGE_BYTES, m->message)) return -1;
        break;
    }
    case BR_MSG_BYE:
        if (rd_u32(r, "reason", &out->m.bye.reason)) return -1;
        break;
    // ---- the link check (PROBE, PROBE_ACK) ----
    case BR_MSG_PROBE: {
        BrProbe *m = &out->m.probe;
        if (rd_u32(r, "sequence", &m->seq) ||
            rd_len(r, "probe", lim->max_chunk_bytes, &m->n_bytes, &at) ||
            rd_bytes(r, "probe", at, m->n_bytes, &m->data))
            return -1;
        break;
    }
    case BR_MSG_PROBE_ACK: {
        BrProbeAck *m = &out->m.probe_ack;
        if (rd_u32(r, "sequence", &m->seq) || rd_reserved(r, 4) || rd_u64(r, "bytes", &m->bytes) ||
            rd_u64(r, "elapsed", &m->elapsed_us))
            return -1;
        break;
    }
    // ---- end of the link check ----
    default:
        return rfail(r, 0, "unknown message type %u", h->type);  // check_header excludes it
    }
    // A newer minor version may append fields; from our own (or an older) minor, the payload
    // must be exactly what we read, so every accepted frame has one encoding.
    if (r->pos != r->n && h->minor <= BR_PROTO_VERSION_MINOR)
        return rfail(r, r->pos, "%zu unexpected bytes after the message (version %d.%u)",
                     r->n - r->pos, BR_PROTO_VERSION_MAJOR, h->minor);
    return 0;
}

// ---- encoding ----

static int enc_string(const char *type, const char *field, const char *s, size_t min,
                      size_t max, size_t *len, char *err) {
    *len = strnlen(s, max + 1);
    if (*len < min || *len > max)
        return cx_err(err, "encode %s: %s of %s%zu bytes is outside %zu..%zu", type, field,
                      *len > max ? "more than " : "", *len > max ? max : *len, min, max);
    if (!br_proto_utf8_valid((const uint8_t *)s, *len))
        return cx_err(err, "encode %s: %s is not valid UTF-8", type, field);
    return 0;
}

static int enc_elems(const char *type, uint64_t offset, uint32_t n_elems, uint8_t codec,
                     const void *data, const BrProtoLimits *lim, size_t *bytes, char *err) {
    if (!br_proto_codec_known(codec))
        return cx_err(err, "encode %s: unknown codec %u", type, codec);
    if (n_elems == 0) return cx_err(err, "encode %s: element count is 0", type);
    uint64_t b = br_proto_codec_encoded_bytes(codec, n_elems);
    if (b > lim->max_chunk_bytes)
        return cx_err(err, "encode %s: %" PRIu32 " %s elements (%" PRIu64
                      " bytes) exceed the chunk limit of %" PRIu32 " bytes",
                      type, n_elems, codec_name(codec), b, lim->max_chunk_bytes);
    if (offset > UINT64_MAX - n_elems)
        return cx_err(err, "encode %s: element range %" PRIu64 " + %" PRIu32 " overflows", type,
                      offset, n_elems);
    if (!data) return cx_err(err, "encode %s: data is NULL", type);
    *bytes = (size_t)b;
    return 0;
}

int br_proto_encode(uint8_t *buf, size_t cap, const BrFrame *f, const BrProtoLimits *lim,
                    char *err) {
    BrProtoLimits def = br_proto_limits_default();
    if (!lim) lim = &def;
    if (br_proto_limits_check(lim, err)) return -1;
    int type = (int)f->type;
    if (!type_known(type)) return cx_err(err, "encode: unknown message type %d", type);
    const char *name = type_names[type];

    // Pass 1: validate the message exactly as the decoder will, and size the payload.
    size_t plen = payload_fixed(type, BR_PROTO_VERSION_MINOR), len1 = 0, len2 = 0;
    switch (type) {
    case BR_MSG_HELLO: {
        const BrHello *m = &f->m.hello;
        if (m->version_major != BR_PROTO_VERSION_MAJOR)
            return cx_err(err, "encode HELLO: version major %u, this build speaks %d",
                          m->version_major, BR_PROTO_VERSION_MAJOR);
        if (m->codecs == 0) return cx_err(err, "encode HELLO: codec mask is empty");
        if (m->resume && identity_zero(&m->identity))
            return cx_err(err, "encode HELLO: resume requires an identity");
        if (enc_string(name, "join token", m->token, 1, BR_PROTO_MAX_TOKEN_BYTES, &len1, err) ||
            enc_string(name, "client name", m->name, 0, BR_PROTO_MAX_NAME_BYTES, &len2, err))
            return -1;
        plen += len1 + len2;
        break;
    }
    case BR_MSG_WELCOME: {
        const BrWelcome *m = &f->m.welcome;
        if (identity_zero(&m->identity))
            return cx_err(err, "encode WELCOME: assigned identity is all zero");
        if (m->round_deadline_ms == 0) return cx_err(err, "encode WELCOME: round deadline is 0");
        if (m->max_chunk_bytes < BR_PROTO_MIN_CHUNK_BYTES ||
            m->max_chunk_bytes > BR_PROTO_MAX_CHUNK_BYTES)
            return cx_err(err, "encode WELCOME: max chunk size %" PRIu32 " outside %u..%u",
                          m->max_chunk_bytes, BR_PROTO_MIN_CHUNK_BYTES, BR_PROTO_MAX_CHUNK_BYTES);
        if (!br_proto_codec_known(m->codec))
            return cx_err(err, "encode WELCOME: unknown codec %u", m->codec);
        break;
    }
    case BR_MSG_DATA_REQUEST:
    case BR_MSG_STATE_REQUEST: {
        const BrStateRequest *m = &f->m.state_request;  // (BrDataRequest: the same layout)
        if (m->n_bytes == 0 || m->n_bytes > lim->max_chunk_bytes)
            return cx_err(err, "encode %s: length %" PRIu32 " outside 1..%" PRIu32, name,
                          m->n_bytes, lim->max_chunk_bytes);
        break;
    }
    case BR_MSG_DATA_CHUNK:
    case BR_MSG_STATE_CHUNK: {
        const BrStateChunk *m = &f->m.state_chunk;  // (BrDataChunk: the same layout)
        if (m->n_bytes > lim->max_chunk_bytes)
            return cx_err(err, "encode %s: %" PRIu32 " bytes exceed the limit of %" PRIu32, name,
                          m->n_bytes, lim->max_chunk_bytes);
        if (m->offset > m->total_bytes || m->n_bytes > m->total_bytes - m->offset)
            return cx_err(err, "encode %s: [%" PRIu64 ", +%" PRIu32 ") lies outside the %" PRIu64
                          "-byte %s", name, m->offset, m->n_bytes, m->total_bytes,
                          type == BR_MSG_DATA_CHUNK ? "training data" : "state");
        if (m->n_bytes && !m->data) return cx_err(err, "encode %s: data is NULL", name);
        plen += m->n_bytes;
        break;
    }
    case BR_MSG_ROUND_OPEN:
        if (f->m.round_open.target_samples == 0)
            return cx_err(err, "encode ROUND_OPEN: target samples is 0");
        if (f->m.round_open.n_samples > f->m.round_open.target_samples)
            return cx_err(err, "encode ROUND_OPEN: sample count exceeds the target");
        break;
    case BR_MSG_ROUND_CLOSE:
        if (!isfinite(f->m.round_close.loss_sum) || !isfinite(f->m.round_close.aux_sum))
            return cx_err(err, "encode ROUND_CLOSE: loss sums must be finite");
        break;
    case BR_MSG_GRAD_CHUNK: {
        const BrGradChunk *m = &f->m.grad_chunk;
        if (m->samples == 0) return cx_err(err, "encode GRAD_CHUNK: sample count is 0");
        if (!isfinite(m->loss_sum) || !isfinite(m->aux_sum))
            return cx_err(err, "encode GRAD_CHUNK: loss sums must be finite");
        if (enc_elems(name, m->offset, m->n_elems, m->codec, m->data, lim, &len1, err)) return -1;
        plen += len1;
        break;
    }
    case BR_MSG_AVG_CHUNK: {
        const BrAvgChunk *m = &f->m.avg_chunk;
        if (enc_elems(name, m->offset, m->n_elems, m->codec, m->data, lim, &len1, err)) return -1;
        plen += len1;
        break;
    }
    case BR_MSG_ERROR: {
        const BrErrorMsg *m = &f->m.error;
        if (m->code == 0) return cx_err(err, "encode ERROR: error code is 0");
        if (enc_string(name, "message", m->message, 0, BR_PROTO_MAX_MESSAGE_BYTES, &len1, err))
            return -1;
        plen += len1;
        break;
    }
    // ---- the link check ----
    case BR_MSG_PROBE: {
        const BrProbe *m = &f->m.probe;
        if (m->n_bytes > lim->max_chunk_bytes)
            return cx_err(err, "encode PROBE: %" PRIu32 " bytes exceed the limit of %" PRIu32,
                          m->n_bytes, lim->max_chunk_bytes);
        if (m->n_bytes && !m->data) return cx_err(err, "encode PROBE: data is NULL");
        plen += m->n_bytes;
        break;
    }
    // ---- end of the link check ----
    default:  // PROGRESS, ROUND_CLOSE, HEARTBEAT, BYE, PROBE_ACK: any values
        break;
    }
    if (plen > br_proto_max_payload(type, lim))  // cannot happen with the checks above
        return cx_err(err, "encode %s: payload of %zu bytes exceeds the limit of %zu", name, plen,
                      br_proto_max_payload(type, lim));
    size_t total = BR_PROTO_HEADER_BYTES + plen;
    if (cap < total)
        return cx_err(err, "encode %s: buffer of %zu bytes is too small for the %zu-byte frame",
                      name, cap, total);

    // Pass 2: write.
    uint8_t *h = buf, *p = buf + BR_PROTO_HEADER_BYTES;
    memcpy(h, BR_PROTO_MAGIC, 4);
    h[4] = BR_PROTO_VERSION_MAJOR;
    h[5] = BR_PROTO_VERSION_MINOR;
    h[6] = (uint8_t)type;
    h[7] = 0;
    put_u32(h + 8, (uint32_t)plen);
    switch (type) {
    case BR_MSG_HELLO: {
        const BrHello *m = &f->m.hello;
        p[0] = m->version_major;
        p[1] = m->version_minor;
        p[2] = m->resume ? 1 : 0;
        p[3] = 0;
        put_u32(p + 4, m->codecs);
        memcpy(p + 8, m->identity.bytes, 16);
        put_u16(p + 24, (uint16_t)len1);
        memcpy(p + 26, m->token, len1);
        put_u16(p + 26 + len1, (uint16_t)len2);
        memcpy(p + 28 + len1, m->name, len2);
        break;
    }
    case BR_MSG_WELCOME: {
        const BrWelcome *m = &f->m.welcome;
        put_u64(p, m->session_id);
        memcpy(p + 8, m->identity.bytes, 16);
        put_u64(p + 24, m->step);
        put_u64(p + 32, m->samples_seen);
        put_u64(p + 40, m->n_params);
        put_u64(p + 48, m->state_bytes);
        put_u32(p + 56, m->round_deadline_ms);
        put_u32(p + 60, m->max_chunk_bytes);
        p[64] = m->codec;
        p[65] = p[66] = p[67] = 0;
        put_u64(p + 68, m->data_bytes);
        memcpy(p + 76, m->data_hash, BR_DATA_HASH_BYTES);
        break;
    }
    case BR_MSG_DATA_REQUEST:
    case BR_MSG_STATE_REQUEST:
        put_u64(p, f->m.state_request.offset);
        put_u32(p + 8, f->m.state_request.n_bytes);
        break;
    case BR_MSG_DATA_CHUNK:
    case BR_MSG_STATE_CHUNK: {
        const BrStateChunk *m = &f->m.state_chunk;
        put_u64(p, m->offset);
        put_u64(p + 8, m->total_bytes);
        put_u32(p + 16, m->n_bytes);
        if (m->n_bytes) memcpy(p + 20, m->data, m->n_bytes);
        break;
    }
    case BR_MSG_PROGRESS:
        put_u64(p, f->m.progress.step);
        put_u64(p + 8, f->m.progress.samples);
        break;
    case BR_MSG_ROUND_OPEN:
        put_u64(p, f->m.round_open.round_id);
        put_u64(p + 8, f->m.round_open.step);
        put_u64(p + 16, f->m.round_open.target_samples);
        put_u64(p + 24, f->m.round_open.sample_start);
        put_u64(p + 32, f->m.round_open.n_samples);
        put_u64(p + 40, f->m.round_open.params_hash);
        break;
    case BR_MSG_ROUND_CLOSE:
        put_u64(p, f->m.round_close.round_id);
        put_u64(p + 8, f->m.round_close.accepted_samples);
        put_u64(p + 16, f->m.round_close.samples);
        put_u64(p + 24, f->m.round_close.tokens);
        put_u32(p + 32, f->m.round_close.participants);
        put_u32(p + 36, 0);
        put_f64(p + 40, f->m.round_close.loss_sum);
        put_f64(p + 48, f->m.round_close.aux_sum);
        break;
    case BR_MSG_GRAD_CHUNK: {
        const BrGradChunk *m = &f->m.grad_chunk;
        put_u64(p, m->round_id);
        put_u64(p + 8, m->offset);
        put_u64(p + 16, m->samples);
        put_u64(p + 24, m->tokens);
        put_f64(p + 32, m->loss_sum);
        put_f64(p + 40, m->aux_sum);
        put_u32(p + 48, m->n_elems);
        p[52] = m->codec;
        p[53] = p[54] = p[55] = 0;
        memcpy(p + 56, m->data, len1);
        break;
    }
    case BR_MSG_AVG_CHUNK: {
        const BrAvgChunk *m = &f->m.avg_chunk;
        put_u64(p, m->round_id);
        put_u64(p + 8, m->offset);
        put_u32(p + 16, m->n_elems);
        p[20] = m->codec;
        p[21] = p[22] = p[23] = 0;
        memcpy(p + 24, m->data, len1);
        break;
    }
    case BR_MSG_HEARTBEAT:
        put_u64(p, f->m.heartbeat.time_us);
        break;
    case BR_MSG_ERROR:
        put_u32(p, f->m.error.code);
        put_u16(p + 4, (uint16_t)len1);
        memcpy(p + 6, f->m.error.message, len1);
        break;
    case BR_MSG_BYE:
        put_u32(p, f->m.bye.reason);
        break;
    // ---- the link check ----
    case BR_MSG_PROBE:
        put_u32(p, f->m.probe.seq);
        put_u32(p + 4, f->m.probe.n_bytes);
        if (f->m.probe.n_bytes) memcpy(p + 8, f->m.probe.data, f->m.probe.n_bytes);
        break;
    case BR_MSG_PROBE_ACK:
        put_u32(p, f->m.probe_ack.seq);
        put_u32(p + 4, 0);
        put_u64(p + 8, f->m.probe_ack.bytes);
        put_u64(p + 16, f->m.probe_ack.elapsed_us);
        break;
    // ---- end of the link check ----
    }
    put_u32(h + 12, br_crc32c(0, h, 12));
    put_u32(h + 16, br_crc32c(br_crc32c(0, h, 16), p, plen));
    return (int)total;
}

#define ENCODE_WRAPPER(fn, TYPE, member, Struct)                                     \
    int fn(uint8_t *buf, size_t cap, const Struct *m, char *err) {                   \
        BrFrame f;                                                                   \
        f.type = TYPE;                                                               \
        f.m.member = *m;                                                             \
        return br_proto_encode(buf, cap, &f, NULL, err);                             \
    }
#define ENCODE_WRAPPER_LIM(fn, TYPE, member, Struct)                                 \
    int fn(uint8_t *buf, size_t cap, const Struct *m, const BrProtoLimits *lim,      \
           char *err) {                                                              \
        BrFrame f;                                                                   \
        f.type = TYPE;                                                               \
        f.m.member = *m;                                                             \
        return br_proto_encode(buf, cap, &f, lim, err);                              \
    }

ENCODE_WRAPPER(br_proto_encode_hello, BR_MSG_HELLO, hello, BrHello)
ENCODE_WRAPPER(br_proto_encode_welcome, BR_MSG_WELCOME, welcome, BrWelcome)
ENCODE_WRAPPER_LIM(br_proto_encode_state_request, BR_MSG_STATE_REQUEST, state_request,
                   BrStateRequest)
ENCODE_WRAPPER_LIM(br_proto_encode_state_chunk, BR_MSG_STATE_CHUNK, state_chunk, BrStateChunk)
ENCODE_WRAPPER(br_proto_encode_progress, BR_MSG_PROGRESS, progress, BrProgress)
ENCODE_WRAPPER(br_proto_encode_round_open, BR_MSG_ROUND_OPEN, round_open, BrRoundOpen)
ENCODE_WRAPPER(br_proto_encode_round_close, BR_MSG_ROUND_CLOSE, round_close, BrRoundClose)
ENCODE_WRAPPER_LIM(br_proto_encode_grad_chunk, BR_MSG_GRAD_CHUNK, grad_chunk, BrGradChunk)
ENCODE_WRAPPER_LIM(br_proto_encode_avg_chunk, BR_MSG_AVG_CHUNK, avg_chunk, BrAvgChunk)
ENCODE_WRAPPER(br_proto_encode_heartbeat, BR_MSG_HEARTBEAT, heartbeat, BrHeartbeat)
ENCODE_WRAPPER(br_proto_encode_error, BR_MSG_ERROR, error, BrErrorMsg)
ENCODE_WRAPPER(br_proto_encode_bye, BR_MSG_BYE, bye, BrBye)
ENCODE_WRAPPER_LIM(br_proto_encode_data_request, BR_MSG_DATA_REQUEST, data_request,
                   BrDataRequest)
ENCODE_WRAPPER_LIM(br_proto_encode_data_chunk, BR_MSG_DATA_CHUNK, data_chunk, BrDataChunk)
// the link check
ENCODE_WRAPPER_LIM(br_proto_encode_probe, BR_MSG_PROBE, probe, BrProbe)
ENCODE_WRAPPER(br_proto_encode_probe_ack, BR_MSG_PROBE_ACK, probe_ack, BrProbeAck)

// ---- one-shot decoder ----

int br_proto_decode(const uint8_t *buf, size_t n, const BrProtoLimits *lim, BrFrame *out,
                    size_t *frame_bytes, char *err) {
    BrProtoLimits def = br_proto_limits_default();
    if (!lim) lim = &def;
    *frame_bytes = 0;
    if (br_proto_limits_check(lim, err)) return BR_PROTO_ERROR;
    if (n < BR_PROTO_HEADER_BYTES)
        return check_prefix(buf, n, 0, 0, err) ? BR_PROTO_ERROR : BR_PROTO_NEED_MORE;
    Header h;
    if (check_header(buf, lim, 0, &h, err)) return BR_PROTO_ERROR;
    if (n - BR_PROTO_HEADER_BYTES < h.payload_bytes) return BR_PROTO_NEED_MORE;
    const uint8_t *payload = buf + BR_PROTO_HEADER_BYTES;
    if (check_frame_crc(buf, payload, h.payload_bytes, 0, err) ||
        decode_payload(&h, payload, BR_PROTO_HEADER_BYTES, lim, out, err))
        return BR_PROTO_ERROR;
    out->stream_offset = 0;
    *frame_bytes = BR_PROTO_HEADER_BYTES + (size_t)h.payload_bytes;
    return BR_PROTO_FRAME;
}

// ---- incremental decoder ----

enum { DEC_HEADER = 0, DEC_PAYLOAD = 1, DEC_ERROR = 2 };

int br_proto_decoder_init(BrProtoDecoder *d, const BrProtoLimits *lim, char *err) {
    memset(d, 0, sizeof *d);
    d->lim = lim ? *lim : br_proto_limits_default();
    if (br_proto_limits_check(&d->lim, err)) {
        d->state = DEC_ERROR;
        snprintf(d->err, sizeof d->err, "decoder initialized with invalid limits");
        return -1;
    }
    return 0;
}

int br_proto_decoder_set_limits(BrProtoDecoder *d, const BrProtoLimits *lim, char *err) {
    if (br_proto_limits_check(lim, err)) return -1;
    d->lim = *lim;
    return 0;
}

static int dec_fail(BrProtoDecoder *d) {
    d->state = DEC_ERROR;
    return BR_PROTO_ERROR;
}

int br_proto_decoder_feed(BrProtoDecoder *d, const uint8_t *data, size_t n, size_t *consumed,
                          BrFrame *out) {
    size_t i = 0;
    *consumed = 0;
    if (d->state == DEC_ERROR) return BR_PROTO_ERROR;
    if (d->state == DEC_HEADER) {
        while (d->hdr_have < BR_PROTO_HEADER_BYTES && i < n) {
            if (d->hdr_have == 0) d->frame_start = d->offset;
            d->hdr[d->hdr_have++] = data[i++];
            d->offset++;
            if (d->hdr_have <= 5 &&
                check_prefix(d->hdr, d->hdr_have, d->hdr_have - 1, d->frame_start, d->err)) {
                *consumed = i;
                return dec_fail(d);
            }
        }
        if (d->hdr_have < BR_PROTO_HEADER_BYTES) {
            *consumed = i;
            return BR_PROTO_NEED_MORE;
        }
        Header h;
        if (check_header(d->hdr, &d->lim, d->frame_start, &h, d->err)) {
            *consumed = i;
            return dec_fail(d);
        }
        // The header passed every limit: only now is room made for the payload.
        if (h.payload_bytes > d->cap) {
            uint8_t *nb = realloc(d->buf, h.payload_bytes);
            if (!nb) {
                *consumed = i;
                snprintf(d->err, sizeof d->err,
                         "out of memory buffering the %" PRIu32 "-byte %s payload at stream "
                         "offset %" PRIu64,
                         h.payload_bytes, type_names[h.type], d->frame_start);
                return dec_fail(d);
            }
            d->buf = nb;
            d->cap = h.payload_bytes;
        }
        d->frame_lim = d->lim;
        d->type = h.type;
        d->minor = h.minor;
        d->payload_bytes = h.payload_bytes;
        d->have = 0;
        d->state = DEC_PAYLOAD;
    }
    // DEC_PAYLOAD
    size_t take = d->payload_bytes - d->have;
    if (take > n - i) take = n - i;
    if (take) memcpy(d->buf + d->have, data + i, take);
    d->have += take;
    d->offset += take;
    i += take;
    *consumed = i;
    if (d->have < d->payload_bytes) return BR_PROTO_NEED_MORE;
    Header h = {.minor = d->minor, .type = d->type, .payload_bytes = d->payload_bytes};
    uint64_t base = d->frame_start;
    if (check_frame_crc(d->hdr, d->buf, d->payload_bytes, base, d->err) ||
        decode_payload(&h, d->buf, base + BR_PROTO_HEADER_BYTES, &d->frame_lim, out, d->err))
        return dec_fail(d);
    out->stream_offset = base;
    d->state = DEC_HEADER;
    d->hdr_have = 0;
    d->have = 0;
    d->n_frames++;
    return BR_PROTO_FRAME;
}

const char *br_proto_decoder_error(const BrProtoDecoder *d) {
    return d->state == DEC_ERROR ? d->err : "";
}

int br_proto_decoder_peer_major(const BrProtoDecoder *d) {
    // check_prefix stops on the fifth header byte when the magic is right and the major is
    // not ours; those bytes are still in hdr
    if (d->state != DEC_ERROR || d->hdr_have < 5 || memcmp(d->hdr, BR_PROTO_MAGIC, 4) != 0 ||
        d->hdr[4] == BR_PROTO_VERSION_MAJOR)
        return 0;
    return d->hdr[4];
}

size_t br_proto_decoder_pending(const BrProtoDecoder *d) {
    if (d->state == DEC_PAYLOAD) return BR_PROTO_HEADER_BYTES + d->have;
    if (d->state == DEC_HEADER) return d->hdr_have;
    return 0;
}

size_t br_proto_decoder_capacity(const BrProtoDecoder *d) {
    return d->cap;
}

void br_proto_decoder_free(BrProtoDecoder *d) {
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
}
