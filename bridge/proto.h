// proto.h: the bridge's wire protocol as pure encode/decode functions (no sockets, no I/O).
//
// A stream is a sequence of frames. Every frame is a 20-byte header followed by a payload;
// all integers are little-endian and are read and written byte by byte (never by casting
// a pointer to a struct or a wider integer). An f64 is an IEEE 754 binary64 sent as the
// little-endian u64 of its bits (an f32, the u32 of its bits). Fields follow each other
// with no padding, at the offsets their sizes give.
//
//   offset size field
//   0      4    magic "CXBR" (0x43 0x58 0x42 0x52)
//   4      1    protocol major version (BR_PROTO_VERSION_MAJOR). Fixed at this offset in
//               every version, so a peer speaking another major gets a clear error.
//   5      1    protocol minor version of the sender
//   6      1    message type (BrMsgType)
//   7      1    flags: none defined in 1.x, must be 0
//   8      4    payload_bytes: length of the payload that follows the header
//   12     4    header CRC32C of bytes 0..11: a corrupted length is caught before the
//               decoder waits for (or buffers) a payload that will never come
//   16     4    frame CRC32C of bytes 0..15 followed by the payload
//
// CRC32C is the Castagnoli CRC (iSCSI, RFC 3720): reflected polynomial 0x82F63B78, initial
// value 0xFFFFFFFF, final XOR 0xFFFFFFFF (of "123456789": 0xE3069283), stored as a u32.
//
// Versioning: the major version changes when the layout changes incompatibly; a frame with
// another major is rejected ("unsupported protocol major version"). A minor version may
// append fields at the end of a payload: a decoder accepts trailing payload bytes when the
// frame's minor is newer than its own (and ignores them), and insists on the exact size of
// the frame's own minor otherwise, so every accepted frame of this version re-encodes to the
// same bytes. A minor version may also add message types; a peer sends such a type only to a
// peer that announced that minor (the bridge learns the volunteer's from HELLO's minor field,
// the volunteer the bridge's from the WELCOME frame's header), so an older peer never
// receives a type it does not know.
//   1.0  the first version.
//   1.1  WELCOME appends the training data's size and SHA-256; DATA_REQUEST and DATA_CHUNK
//        (types 13 and 14) carry the training data to a volunteer that has no copy. A 1.1
//        volunteer joining a 1.0 bridge (a WELCOME of 68 bytes, minor 0) needs a local copy
//        of the data and says so; a 1.0 volunteer ignores the appended WELCOME fields.
//        PROBE and PROBE_ACK (types 15 and 16) are the link check (conflux-volunteer
//        --check): sent after WELCOME, before the volunteer goes live.
//
// Payloads (sizes in bytes; strings are UTF-8 without NUL, length-prefixed by a u16; "res"
// bytes are reserved and must be 0; an identity is 16 opaque bytes, sent as they are; a
// codec is a u8: 1 fp32, 2 fp16, 3 int8 (BrCodec)):
//   HELLO         u8 major, u8 minor, u8 flags (bit 0 resume; the others must be 0), u8 res,
//                 u32 codecs bitmask (bit 1 << codec for each codec offered: 0x0e = all
//                 three; nonzero), 16 identity (nonzero when resuming),
//                 u16 n + token (1..256), u16 n + client name (0..128)           (28+)
//   WELCOME       u64 session id, 16 identity, u64 step, u64 samples_seen, u64 n_params,
//                 u64 state_bytes, u32 round_deadline_ms, u32 max_chunk_bytes, u8 codec,
//                 3 res                                                       (1.0: 68)
//                 then (1.1) u64 data_bytes (size of the run's training data file; 0: the
//                 bridge serves no data), 32 data hash (SHA-256 of those data_bytes bytes;
//                 any value when data_bytes is 0, all zero as the bridge sends it) (108)
//   STATE_REQUEST u64 offset, u32 n_bytes                                          (12)
//   STATE_CHUNK   u64 offset, u64 total_bytes, u32 n_bytes, n_bytes of state       (20+n)
//   PROGRESS      u64 step, u64 samples accumulated since the last report          (16)
//   ROUND_OPEN    u64 round id, u64 step, u64 target samples (global batch), u64 sample
//                 start, u64 sample count (this volunteer's share; 0 = none; <= target),
//                 u64 parameter hash (of the replica this round starts from)       (48)
//   ROUND_CLOSE   u64 round id, u64 accepted samples (this volunteer's, this round),
//                 u64 round samples, u64 round tokens, u32 participants, 4 res,
//                 f64 loss sum, f64 auxiliary loss sum (finite)                    (56)
//   GRAD_CHUNK    u64 round id, u64 offset (elements), u64 samples, u64 tokens,
//                 f64 loss sum, f64 auxiliary loss sum (finite), u32 n_elems,
//                 u8 codec, 3 res, codec_encoded_bytes(codec, n_elems) of data     (56+)
//   AVG_CHUNK     u64 round id, u64 offset (elements), u32 n_elems, u8 codec, 3 res,
//                 codec_encoded_bytes(codec, n_elems) of data                      (24+)
//
// Chunk data (models/codec.h): fp32 4 bytes per element, fp16 2 (IEEE binary16, the
// little-endian u16 of its bits); int8 is blockwise: for nb = ceil(n_elems / 128) blocks,
// nb f32 scales then n_elems int8 values (4 * nb + n_elems bytes). Each chunk is encoded on its own; a sender that splits a vector into int8 chunks
// starting at offsets that are multiples of 128 (codec_chunk_elems) sends the same values as
// if it had encoded the whole vector (the decoder does not require it). The chunk limit
// applies to these encoded bytes.
//   HEARTBEAT     u64 sender time (microseconds)                                   (8)
//   DATA_REQUEST  u64 offset, u32 n_bytes (1..max_chunk_bytes): bytes [offset,
//                 offset + n_bytes) of the training data file                      (12)
//   DATA_CHUNK    u64 offset, u64 total_bytes, u32 n_bytes, n_bytes of the training data
//                 file (offset + n_bytes <= total_bytes)                        (20+n)
// The training data is the bridge's data.train file as bytes (an HDF5 shard), served only
// on an authenticated connection before it goes live (bridge/server.c: a window of requested
// bytes per connection, the download deadline); the volunteer checks the SHA-256 of the whole
// file against WELCOME's before it uses it (bridge/datafile.h).
//   ERROR         u32 code (BrErrorCode, nonzero), u16 n + message (0..1024)       (6+n)
//   BYE           u32 reason (BrByeReason)                                         (4)
//   -- 15, 16: the link check (conflux-volunteer --check) --
//   PROBE         u32 sequence, u32 n_bytes, n_bytes of filler (0..max_chunk_bytes;
//                 opaque, discarded by the bridge)                                 (8+n)
//   PROBE_ACK     u32 sequence (the PROBE's), 4 res, u64 filler bytes of every PROBE
//                 received on this connection so far, u64 microseconds from the
//                 arrival of the connection's first PROBE to this one's (the bridge's
//                 clock)                                                           (24)
//   A volunteer sends PROBEs after WELCOME and before its first PROGRESS (the bridge
//   answers each with a PROBE_ACK; later, or beyond BR_PROBE_MAX_BYTES of filler or
//   BR_PROBE_MAX_FRAMES frames per connection, they are refused): empty ones time round
//   trips, full ones the upload rate (filler bytes between two ACKs over the time between
//   them, as the bridge timed their arrival).
//
// Limits are checked on the header, before any payload byte is buffered or allocated:
// HELLO <= 4096 payload bytes, ERROR <= 2048, other control messages <= 256, chunk
// messages (STATE_CHUNK, GRAD_CHUNK, AVG_CHUNK, DATA_CHUNK, and PROBE) <= 64 + max_chunk_bytes
// (BrProtoLimits, default 1 MiB of chunk data).
//
// When the header is judged: bytes 0..4 (magic, major) each as soon as it arrives, so a
// stream of something else fails at its first wrong byte; everything else only once all 20
// header bytes are there (a shorter prefix with a bad type, flags or length is still "need
// more"): the header CRC, the type (1..16 and accepted by the connection), the flags, and
// payload_bytes against the type's limit above and its size in the table: at least the
// fixed part (HELLO 28, STATE_CHUNK 20, GRAD_CHUNK 56, AVG_CHUNK 24, ERROR 6, DATA_CHUNK 20,
// PROBE 8; WELCOME 68 in 1.0 frames, 108 from 1.1), and for a fixed-size type exactly its size
// in the frame's minor unless the frame's minor is newer than the decoder's.
// So a header whose length no payload of its type could have (a 1.0 HEARTBEAT of 9 bytes,
// a BYE of 3) is an error as soon as the header is whole, without waiting for the payload.
// The frame CRC and the payload rules are checked once the whole payload is there.
//
// Error values: every function that can fail returns -1 (or BR_PROTO_ERROR) and, when err
// is not NULL, writes a message of at most CX_ERRLEN bytes naming what was wrong and at
// which byte offset of the stream (or buffer) it was found.
#ifndef CONFLUX_BRIDGE_PROTO_H
#define CONFLUX_BRIDGE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/codec.h"
#include "models/common.h"

#define BR_PROTO_MAGIC "CXBR"
#define BR_PROTO_VERSION_MAJOR 1
#define BR_PROTO_VERSION_MINOR 1
#define BR_PROTO_HEADER_BYTES 20

// Strings (bytes, without a terminating NUL).
#define BR_PROTO_MAX_TOKEN_BYTES 256
#define BR_PROTO_MAX_NAME_BYTES 128
#define BR_PROTO_MAX_MESSAGE_BYTES 1024

// Per-type payload limits (bytes). Chunk messages: BR_PROTO_CHUNK_OVERHEAD + max_chunk_bytes.
#define BR_PROTO_MAX_HELLO_BYTES 4096
#define BR_PROTO_MAX_ERROR_BYTES 2048
#define BR_PROTO_MAX_CONTROL_BYTES 256
#define BR_PROTO_CHUNK_OVERHEAD 64

// Range of BrProtoLimits.max_chunk_bytes (bytes of chunk data per STATE/GRAD/AVG frame).
#define BR_PROTO_DEFAULT_CHUNK_BYTES (1u << 20)
#define BR_PROTO_MIN_CHUNK_BYTES 64u
#define BR_PROTO_MAX_CHUNK_BYTES (64u << 20)

// Exact payload sizes of the fixed-size messages and fixed parts of the others (1.0).
#define BR_HELLO_MIN_BYTES 28 // fixed fields + two u16 string lengths, empty strings
#define BR_WELCOME_BYTES_1_0 68  // a 1.0 WELCOME (no data fields)
#define BR_WELCOME_BYTES 108     // 1.1
#define BR_DATA_HASH_BYTES 32    // SHA-256
#define BR_STATE_REQUEST_BYTES 12
#define BR_STATE_CHUNK_FIXED_BYTES 20
#define BR_PROGRESS_BYTES 16
#define BR_ROUND_OPEN_BYTES 48
#define BR_ROUND_CLOSE_BYTES 56
#define BR_GRAD_CHUNK_FIXED_BYTES 56
#define BR_AVG_CHUNK_FIXED_BYTES 24
#define BR_HEARTBEAT_BYTES 8
#define BR_ERROR_FIXED_BYTES 6
#define BR_BYE_BYTES 4
#define BR_DATA_REQUEST_BYTES 12
#define BR_DATA_CHUNK_FIXED_BYTES 20
// -- the link check (15, 16) --
#define BR_PROBE_FIXED_BYTES 8
#define BR_PROBE_ACK_BYTES 24
// What a bridge answers on one connection at most (then ERROR BR_ERR_BUSY).
#define BR_PROBE_MAX_BYTES ((uint64_t)32 << 20)  // filler bytes
#define BR_PROBE_MAX_FRAMES 1024u

typedef enum BrMsgType {
    BR_MSG_HELLO = 1,          // volunteer -> bridge, first frame of a connection
    BR_MSG_WELCOME = 2,        // bridge -> volunteer, answer to HELLO
    BR_MSG_STATE_REQUEST = 3,  // volunteer -> bridge: send state bytes [offset, offset+n)
    BR_MSG_STATE_CHUNK = 4,    // bridge -> volunteer: a piece of the serialized state
    BR_MSG_PROGRESS = 5,       // volunteer -> bridge: samples accumulated since last report
    BR_MSG_ROUND_OPEN = 6,     // bridge -> volunteer: a round starts; your share of it
    BR_MSG_ROUND_CLOSE = 7,    // bridge -> volunteer: the round's totals; AVG_CHUNKs follow
    BR_MSG_GRAD_CHUNK = 8,     // volunteer -> bridge: a slice of the accumulated gradient
    BR_MSG_AVG_CHUNK = 9,      // bridge -> volunteer: a slice of the averaged gradient
    BR_MSG_HEARTBEAT = 10,     // either direction
    BR_MSG_ERROR = 11,         // either direction, usually followed by closing
    BR_MSG_BYE = 12,           // either direction: orderly leave
    BR_MSG_DATA_REQUEST = 13,  // (1.1) volunteer -> bridge: send training data bytes
    BR_MSG_DATA_CHUNK = 14,    // (1.1) bridge -> volunteer: a piece of the training data
    // -- the link check (conflux-volunteer --check), 1.1 --
    BR_MSG_PROBE = 15,         // volunteer -> bridge: filler to discard; answer with PROBE_ACK
    BR_MSG_PROBE_ACK = 16,     // bridge -> volunteer: what the probes so far took
} BrMsgType;
#define BR_MSG_FIRST BR_MSG_HELLO
#define BR_MSG_LAST BR_MSG_PROBE_ACK
#define BR_MSG_BIT(t) (1u << (t))
#define BR_MSG_ALL 0x1fffeu  // every type 1..16

// Gradient codecs (models/codec.h): the value on the wire, and the bit in HELLO's codecs mask.
typedef enum BrCodec {
    BR_CODEC_FP32 = CODEC_FP32,  // IEEE binary32, 4 bytes per element, little-endian
    BR_CODEC_FP16 = CODEC_FP16,  // IEEE binary16, 2 bytes per element, little-endian
    BR_CODEC_INT8 = CODEC_INT8,  // blockwise absmax int8: 4 * ceil(n / 128) + n bytes
} BrCodec;
#define BR_CODEC_BIT(c) (1u << (c))

// Error codes carried by ERROR frames (peers may send codes this build does not know;
// decoders accept any nonzero code).
typedef enum BrErrorCode {
    BR_ERR_PROTOCOL = 1,  // malformed frame or message out of order
    BR_ERR_VERSION = 2,   // unsupported protocol version
    BR_ERR_AUTH = 3,      // bad or revoked join token
    BR_ERR_BAD_DATA = 4,  // wrong sizes, NaN/Inf, absurd norm
    BR_ERR_TIMEOUT = 5,   // idle or deadline exceeded
    BR_ERR_STATE = 6,     // state download out of range / stale
    BR_ERR_BUSY = 7,      // bridge full or shutting down
    BR_ERR_INTERNAL = 8,
    BR_ERR_DATA = 9,      // training data download out of range, out of order or not served
} BrErrorCode;

typedef enum BrByeReason {
    BR_BYE_LEAVING = 1,    // the volunteer leaves on purpose
    BR_BYE_SHUTDOWN = 2,   // the bridge (or training run) ends
    BR_BYE_KICKED = 3,     // dropped by the bridge (see the ERROR frame before it)
    BR_BYE_RESTART = 4,    // reconnect later with the same identity
} BrByeReason;

// Volunteer identity: 16 opaque bytes (uuid-like). All zero means "none yet".
typedef struct BrIdentity {
    uint8_t bytes[16];
} BrIdentity;

typedef struct BrHello {
    uint8_t version_major, version_minor;  // protocol the client speaks (major == frame's)
    bool resume;                           // reconnecting: identity must be nonzero
    uint32_t codecs;                       // BR_CODEC_BIT mask, nonzero (unknown bits kept)
    BrIdentity identity;
    char token[BR_PROTO_MAX_TOKEN_BYTES + 1];  // NUL-terminated, 1..256 bytes of UTF-8
    char name[BR_PROTO_MAX_NAME_BYTES + 1];    // NUL-terminated, 0..128 bytes of UTF-8
} BrHello;

typedef struct BrWelcome {
    uint64_t session_id;
    BrIdentity identity;        // assigned (or confirmed on resume), nonzero
    uint64_t step;              // optimizer steps taken so far
    uint64_t samples_seen;      // samples in all steps so far
    uint64_t n_params;          // parameter count (elements of the flat gradient)
    uint64_t state_bytes;       // size of the serialized state to download
    uint32_t round_deadline_ms; // > 0
    uint32_t max_chunk_bytes;   // the bridge's chunk limit, BR_PROTO_MIN/MAX_CHUNK_BYTES
    uint8_t codec;              // chosen gradient codec (BrCodec)
    // 1.1 (zero when decoded from a 1.0 WELCOME)
    uint64_t data_bytes;        // size of the run's training data file (0: not served)
    uint8_t data_hash[BR_DATA_HASH_BYTES];  // its SHA-256
} BrWelcome;

typedef struct BrStateRequest {
    uint64_t offset;   // bytes into the serialized state
    uint32_t n_bytes;  // 1..max_chunk_bytes
} BrStateRequest;

typedef struct BrStateChunk {
    uint64_t offset;       // bytes into the serialized state
    uint64_t total_bytes;  // offset + n_bytes <= total_bytes
    uint32_t n_bytes;      // 0..max_chunk_bytes
    const uint8_t *data;   // n_bytes; not owned (see the decoders for its lifetime)
} BrStateChunk;

typedef struct BrDataRequest {
    uint64_t offset;   // bytes into the training data file
    uint32_t n_bytes;  // 1..max_chunk_bytes
} BrDataRequest;

typedef struct BrDataChunk {
    uint64_t offset;       // bytes into the training data file
    uint64_t total_bytes;  // offset + n_bytes <= total_bytes
    uint32_t n_bytes;      // 0..max_chunk_bytes
    const uint8_t *data;   // n_bytes; not owned (see the decoders for its lifetime)
} BrDataChunk;

typedef struct BrProgress {
    uint64_t step;
    uint64_t samples;  // accumulated since the last PROGRESS
} BrProgress;

typedef struct BrRoundOpen {
    uint64_t round_id;
    uint64_t step;
    uint64_t target_samples;  // > 0: the global batch of the round
    uint64_t sample_start;    // first global sample index of this volunteer's share
    uint64_t n_samples;       // samples in the share (0: none this round), <= target
    uint64_t params_hash;     // hash of the parameters the round starts from
} BrRoundOpen;

typedef struct BrRoundClose {
    uint64_t round_id;
    uint64_t accepted_samples;  // of the receiving volunteer's upload, this round
    uint64_t samples, tokens;   // over every participant of the round
    uint32_t participants;      // contributions summed (trainer ranks + uploads)
    double loss_sum, aux_sum;   // finite
} BrRoundClose;

typedef struct BrGradChunk {
    uint64_t round_id;
    uint64_t offset;      // elements into the flat gradient; offset + n_elems fits in u64
    uint64_t samples;     // samples accumulated into this gradient, > 0
    uint64_t tokens;      // loss tokens of those samples
    double loss_sum, aux_sum;  // summed losses of those samples (finite)
    uint32_t n_elems;     // > 0; encoded bytes (below) <= max_chunk_bytes
    uint8_t codec;        // BrCodec
    const uint8_t *data;  // br_proto_codec_encoded_bytes(codec, n_elems) bytes; not owned
} BrGradChunk;

typedef struct BrAvgChunk {
    uint64_t round_id;
    uint64_t offset;      // elements into the flat gradient
    uint32_t n_elems;     // > 0; as in BrGradChunk
    uint8_t codec;        // BrCodec
    const uint8_t *data;  // br_proto_codec_encoded_bytes(codec, n_elems) bytes; not owned
} BrAvgChunk;

typedef struct BrHeartbeat {
    uint64_t time_us;  // sender's clock, microseconds
} BrHeartbeat;

typedef struct BrErrorMsg {
    uint32_t code;                                // BrErrorCode (any nonzero value)
    char message[BR_PROTO_MAX_MESSAGE_BYTES + 1]; // NUL-terminated UTF-8, 0..1024 bytes
} BrErrorMsg;

typedef struct BrBye {
    uint32_t reason;  // BrByeReason (any value)
} BrBye;

// -- the link check (15, 16) --
typedef struct BrProbe {
    uint32_t seq;
    uint32_t n_bytes;     // 0..max_chunk_bytes
    const uint8_t *data;  // n_bytes of filler; not owned (as a chunk's data)
} BrProbe;

typedef struct BrProbeAck {
    uint32_t seq;          // of the PROBE answered
    uint64_t bytes;        // filler bytes of this connection's PROBEs received so far
    uint64_t elapsed_us;   // since the connection's first PROBE arrived (bridge clock)
} BrProbeAck;

// One decoded frame, or one frame to encode (type selects the union member).
typedef struct BrFrame {
    BrMsgType type;
    uint8_t version_major, version_minor;  // decoded from the header; ignored by encoders
    uint32_t payload_bytes;                // decoded from the header; ignored by encoders
    uint64_t stream_offset;                // offset of the frame's first byte (decoders)
    union {
        BrHello hello;
        BrWelcome welcome;
        BrStateRequest state_request;
        BrStateChunk state_chunk;
        BrProgress progress;
        BrRoundOpen round_open;
        BrRoundClose round_close;
        BrGradChunk grad_chunk;
        BrAvgChunk avg_chunk;
        BrHeartbeat heartbeat;
        BrErrorMsg error;
        BrBye bye;
        BrDataRequest data_request;
        BrDataChunk data_chunk;
        BrProbe probe;          // (the link check)
        BrProbeAck probe_ack;
    } m;
} BrFrame;

// What a connection accepts. Before authentication a bridge accepts only small frames
// (accept_types = BR_PROTO_PREAUTH_TYPES), so an unauthenticated peer cannot make it
// buffer a chunk-sized payload.
typedef struct BrProtoLimits {
    uint32_t max_chunk_bytes;  // chunk data per frame, BR_PROTO_MIN..MAX_CHUNK_BYTES
    uint32_t accept_types;     // BR_MSG_BIT mask of the types this side accepts
} BrProtoLimits;
#define BR_PROTO_PREAUTH_TYPES                                                     \
    (BR_MSG_BIT(BR_MSG_HELLO) | BR_MSG_BIT(BR_MSG_HEARTBEAT) | BR_MSG_BIT(BR_MSG_ERROR) | \
     BR_MSG_BIT(BR_MSG_BYE))

// Decoder results.
typedef enum BrProtoStatus {
    BR_PROTO_ERROR = -1,     // malformed input; the message says what and where
    BR_PROTO_NEED_MORE = 0,  // every byte given was consumed; no complete frame yet
    BR_PROTO_FRAME = 1,      // one frame decoded into *out
} BrProtoStatus;

// ---- small helpers ----

// Default limits: max_chunk_bytes = 1 MiB, every message type accepted.
BrProtoLimits br_proto_limits_default(void);

// Checks a limits struct. Returns 0, or -1 and a message in err.
int br_proto_limits_check(const BrProtoLimits *lim, char *err);

// "HELLO", ..., "BYE"; "unknown" for anything else. Static string.
const char *br_proto_type_name(int type);

// Bytes per element of a fixed-size codec: 4 (FP32), 2 (FP16); 0 for INT8 (not a fixed size)
// and for an unknown codec. Kept for callers that size fp32/fp16 buffers; chunk sizes are
// br_proto_codec_encoded_bytes.
size_t br_proto_codec_elem_bytes(int codec);

// Bytes of chunk data that n_elems elements of a codec occupy (codec_encoded_bytes): 4n
// (FP32), 2n (FP16), 4 * ceil(n / 128) + n (INT8); 0 for an unknown codec. Below 2^35.
uint64_t br_proto_codec_encoded_bytes(int codec, uint32_t n_elems);

// True when codec is one this build can encode and decode (a BrCodec).
bool br_proto_codec_known(int codec);

// Largest payload a frame of this type may carry under lim (0 for an unknown type).
size_t br_proto_max_payload(int type, const BrProtoLimits *lim);

// Buffer size that holds any single encoded frame under lim (header included).
size_t br_proto_max_frame_bytes(const BrProtoLimits *lim);

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. Start with crc = 0;
// feed pieces in order: br_crc32c(br_crc32c(0, a, na), b, nb) == br_crc32c(0, ab, na+nb).
// br_crc32c(0, "123456789", 9) == 0xE3069283.
uint32_t br_crc32c(uint32_t crc, const void *data, size_t n);

// True when s[0..n) is well-formed UTF-8 (utf8_check of io/text/utf8.h: no overlong
// forms, surrogates or code points above U+10FFFF) and contains no NUL byte.
bool br_proto_utf8_valid(const uint8_t *s, size_t n);

// ---- encoders ----
// Each writes one complete frame (header, payload, checksums) into buf[0..cap) and returns
// the number of bytes written, or -1 when the message is invalid (a value the decoder would
// reject: bad UTF-8, string too long, unknown codec, chunk over the limit, ...) or cap is
// too small; err then says which. On error the contents of buf are unspecified, but nothing
// at or beyond buf + cap is touched. The message is only read; data pointers in it must
// point to the stated number of bytes. lim may be NULL (defaults); it bounds chunk sizes
// and STATE_REQUEST / DATA_REQUEST lengths. A frame never exceeds br_proto_max_frame_bytes(lim) bytes.
int br_proto_encode(uint8_t *buf, size_t cap, const BrFrame *f, const BrProtoLimits *lim,
                    char *err);
int br_proto_encode_hello(uint8_t *buf, size_t cap, const BrHello *m, char *err);
int br_proto_encode_welcome(uint8_t *buf, size_t cap, const BrWelcome *m, char *err);
int br_proto_encode_state_request(uint8_t *buf, size_t cap, const BrStateRequest *m,
                                  const BrProtoLimits *lim, char *err);
int br_proto_encode_state_chunk(uint8_t *buf, size_t cap, const BrStateChunk *m,
                                const BrProtoLimits *lim, char *err);
int br_proto_encode_progress(uint8_t *buf, size_t cap, const BrProgress *m, char *err);
int br_proto_encode_round_open(uint8_t *buf, size_t cap, const BrRoundOpen *m, char *err);
int br_proto_encode_round_close(uint8_t *buf, size_t cap, const BrRoundClose *m, char *err);
int br_proto_encode_grad_chunk(uint8_t *buf, size_t cap, const BrGradChunk *m,
                               const BrProtoLimits *lim, char *err);
int br_proto_encode_avg_chunk(uint8_t *buf, size_t cap, const BrAvgChunk *m,
                              const BrProtoLimits *lim, char *err);
int br_proto_encode_heartbeat(uint8_t *buf, size_t cap, const BrHeartbeat *m, char *err);
int br_proto_encode_error(uint8_t *buf, size_t cap, const BrErrorMsg *m, char *err);
int br_proto_encode_bye(uint8_t *buf, size_t cap, const BrBye *m, char *err);
int br_proto_encode_data_request(uint8_t *buf, size_t cap, const BrDataRequest *m,
                                 const BrProtoLimits *lim, char *err);
int br_proto_encode_data_chunk(uint8_t *buf, size_t cap, const BrDataChunk *m,
                               const BrProtoLimits *lim, char *err);
int br_proto_encode_probe(uint8_t *buf, size_t cap, const BrProbe *m, const BrProtoLimits *lim,
                          char *err);
int br_proto_encode_probe_ack(uint8_t *buf, size_t cap, const BrProbeAck *m, char *err);

// ---- one-shot decoder ----
// Decodes the first frame of buf[0..n). lim may be NULL (defaults).
// Returns BR_PROTO_FRAME (*out filled, *frame_bytes = bytes the frame occupies),
// BR_PROTO_NEED_MORE (buf holds a valid prefix of a frame; *frame_bytes = 0), or
// BR_PROTO_ERROR (err says what and at which offset of buf). The header is judged as the
// top of this file says: a bad magic or major is an error even in a short buffer, the rest
// of the header once its 20 bytes are present.
// Pointers in *out (chunk data) point into buf and live as long as buf.
int br_proto_decode(const uint8_t *buf, size_t n, const BrProtoLimits *lim, BrFrame *out,
                    size_t *frame_bytes, char *err);

// ---- incremental decoder ----
// Holds the parser state of one connection. Fields are private; the struct is public so a
// connection can embed it. It buffers at most one frame: the header, then the payload once
// the header has passed every check (so never more than BR_PROTO_HEADER_BYTES +
// br_proto_max_payload(type, lim) bytes).
typedef struct BrProtoDecoder {
    BrProtoLimits lim;                     // for the next header
    BrProtoLimits frame_lim;               // those the current frame's header passed
    int state;                             // 0 header, 1 payload, 2 error
    uint8_t hdr[BR_PROTO_HEADER_BYTES];
    size_t hdr_have;
    uint8_t type, minor;
    uint32_t payload_bytes;
    uint8_t *buf;                          // payload buffer, owned
    size_t cap, have;
    uint64_t offset;                       // stream bytes consumed so far
    uint64_t frame_start;                  // stream offset of the current frame
    uint64_t n_frames;                     // frames decoded so far
    char err[CX_ERRLEN];
} BrProtoDecoder;

// Initializes d with a copy of lim (NULL: defaults). Allocates nothing. Returns 0, or -1
// when lim is invalid (err says why; d is then unusable but safe to free).
int br_proto_decoder_init(BrProtoDecoder *d, const BrProtoLimits *lim, char *err);

// Replaces the limits (e.g. after authentication). Takes effect from the next frame header;
// a payload already being received keeps the limits it was checked against. Returns 0, or
// -1 when lim is invalid (the decoder is unchanged).
int br_proto_decoder_set_limits(BrProtoDecoder *d, const BrProtoLimits *lim, char *err);

// Feeds data[0..n) (any slicing of the stream: one byte, many frames). Consumes bytes up to
// the end of at most one frame and stores how many in *consumed; the caller feeds the rest
// again. Returns:
//   BR_PROTO_FRAME      *out holds the frame; its data pointers point into the decoder's
//                       buffer and stay valid until the next call on d (copy to keep).
//   BR_PROTO_NEED_MORE  all n bytes consumed, no complete frame yet.
//   BR_PROTO_ERROR      the stream is malformed; br_proto_decoder_error() says what and at
//                       which stream byte offset. The error is permanent: every later call
//                       returns BR_PROTO_ERROR and consumes nothing (drop the connection).
// Memory: the payload buffer grows to the largest payload received, never beyond
// br_proto_max_payload(type, limits) for an accepted header; an allocation failure is a
// BR_PROTO_ERROR ("out of memory"), not an exit.
int br_proto_decoder_feed(BrProtoDecoder *d, const uint8_t *data, size_t n, size_t *consumed,
                          BrFrame *out);

// The message of the last BR_PROTO_ERROR ("" when none). Owned by d.
const char *br_proto_decoder_error(const BrProtoDecoder *d);
// When that error is a frame of another protocol major version: that major (1-255); else 0.
// (A peer of another version gets ERROR BR_ERR_VERSION; a client names the version.)
int br_proto_decoder_peer_major(const BrProtoDecoder *d);

// Bytes of an unfinished frame held by d (0 at a frame boundary: an EOF there is clean).
size_t br_proto_decoder_pending(const BrProtoDecoder *d);

// Bytes of payload buffer currently allocated by d.
size_t br_proto_decoder_capacity(const BrProtoDecoder *d);

// Frees the payload buffer. d may be re-initialized afterwards. Safe on a zeroed struct.
void br_proto_decoder_free(BrProtoDecoder *d);

#endif
