// codec.h: gradient codecs as pure functions, for any averaging strategy: the bridge's
// uploads and results today (bridge/proto.h carries the ids on the wire), and any strategy
// that compresses what it exchanges (models/train.h's Averager).
//
// FP32: IEEE binary32, 4 little-endian bytes per element (a byte copy on little-endian hosts).
// FP16: IEEE binary16, 2 little-endian bytes per element. fp32 -> fp16 rounds to nearest,
// ties to even; values whose magnitude rounds past 65504 become +-inf; values below half the
// smallest subnormal (2^-25) become +-0 (ties to even: exactly 2^-25 also goes to 0); the
// sign of zero is kept; a NaN stays a NaN with the quiet bit set and the top 9 payload bits
// kept. fp16 -> fp32 is exact.
//
// The conversions are bit manipulation on uint32_t/uint16_t (loaded with memcpy) with no
// branches in the element loops, so the compiler vectorises them; no _Float16 and no
// dependence on the FPU rounding mode. Byte order is little-endian on any host.
//
// No function here allocates, fails or keeps state; n is always an element count and a
// buffer of n elements occupies n * codec_elem_bytes(id) bytes. Input and output
// buffers must not overlap.
#ifndef CONFLUX_MODELS_CODEC_H
#define CONFLUX_MODELS_CODEC_H

#include <stddef.h>
#include <stdint.h>

// Codec ids; they are the values on the bridge's wire (bridge/proto.h), never reused.
enum { CODEC_FP32 = 1, CODEC_FP16 = 2, CODEC_INT8 = 3 };

typedef struct {
    int id;
    const char *name;       // "fp32", "fp16"
    size_t elem_bytes;
    // out (n * elem_bytes bytes) <- in (n floats)
    void (*encode)(uint8_t *out, const float *in, size_t n);
    // The same with error feedback (see codec_fp16_encode_ef); NULL for a lossless codec.
    void (*encode_ef)(uint8_t *out, const float *in, float *residual, size_t n);
    // out (n floats) <- in (n * elem_bytes bytes)
    void (*decode)(float *out, const uint8_t *in, size_t n);
} Codec;

// The codec with this id, or NULL.
const Codec *codec_find(int id);
// The codec named name ("fp16", "fp32"), or NULL.
const Codec *codec_by_name(const char *name);

// Bytes per element of a codec: 4 (FP32), 2 (FP16), 0 for an unknown id.
size_t codec_elem_bytes(int id);

// One value: binary32 -> binary16 bits (round to nearest even) and binary16 bits -> binary32
// (exact). The array functions below give the same results element by element.
uint16_t codec_fp16_from_fp32(float f);
float codec_fp16_to_fp32(uint16_t h);

// out (2n bytes, little-endian binary16) <- in (n floats).
void codec_fp16_encode(uint8_t *out, const float *in, size_t n);
// out (n floats) <- in (2n bytes, little-endian binary16). Exact.
void codec_fp16_decode(float *out, const uint8_t *in, size_t n);

// Encoding with error feedback: for each i, v = in[i] + residual[i] (in fp32) is encoded to
// out, and residual[i] becomes v - decode(out[i]) (exact), so the quantisation error is sent
// in a later round instead of being lost: over R rounds the decoded values sum to the inputs'
// sum plus the first residual minus the last, which stays within half an fp16 ulp. residual
// (n floats) is read and written; start it at zero. Where v is not finite or overflows to
// +-inf in fp16, the residual is set to 0 (an infinite error cannot be carried; the bridge
// rejects the non-finite value anyway).
void codec_fp16_encode_ef(uint8_t *out, const float *in, float *residual, size_t n);

// out (4n bytes, little-endian binary32) <- in (n floats), and back. Bit-exact, NaNs included.
void codec_fp32_encode(uint8_t *out, const float *in, size_t n);
void codec_fp32_decode(float *out, const uint8_t *in, size_t n);

// Returns 1 when every x[i] is finite; otherwise 0 and, when bad_index is not NULL, the
// index of the first NaN or +-inf in *bad_index (untouched when all are finite).
int codec_check_finite(const float *x, size_t n, size_t *bad_index);

// Euclidean norm of x (n floats), accumulated in double. Not finite when an element is not
// (or when the sum of squares overflows double, which finite floats cannot reach: n < 2^50).
double codec_l2norm(const float *x, size_t n);

#endif
