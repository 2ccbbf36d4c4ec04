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
// INT8: blockwise absmax int8 (see "int8" below): n elements take codec_encoded_bytes(INT8,
// n) = 4 * ceil(n / 128) + n bytes, about 1.03 bytes per element.
//
// The conversions are bit manipulation on uint32_t/uint16_t (loaded with memcpy) with no
// branches in the element loops, so the compiler vectorises them; no _Float16 and no
// dependence on the FPU rounding mode for the conversions (int8's divisions and products are
// IEEE float arithmetic in the default round-to-nearest mode). Byte order is little-endian
// on any host.
//
// Sizes: n is always an element count; n elements of a codec occupy codec_encoded_bytes(id, n)
// bytes (n * codec_elem_bytes(id) for the fixed-size codecs fp32 and fp16; int8 has no fixed
// size per element and its codec_elem_bytes is 0). A codec with a block > 1 (int8) encodes
// each block of `block` consecutive elements on its own: a longer vector may be encoded in
// chunks, each encoded independently, and gives the same values as when encoded whole
// provided every chunk starts at an element offset that is a multiple of the block (all but
// the last chunk then hold a multiple of the block). codec_chunk_elems() gives such a chunk
// length for a byte budget.
//
// No function here allocates, fails or keeps state. Input and output buffers must not
// overlap. n must not exceed SIZE_MAX / 4 (true of any float array in memory), so that the
// byte counts cannot overflow.
#ifndef CONFLUX_MODELS_CODEC_H
#define CONFLUX_MODELS_CODEC_H

#include <stddef.h>
#include <stdint.h>

// Codec ids; they are the values on the bridge's wire (bridge/proto.h), never reused.
enum { CODEC_FP32 = 1, CODEC_FP16 = 2, CODEC_INT8 = 3 };

// Elements per int8 block (one scale each).
#define CODEC_INT8_BLOCK 128

typedef struct {
    int id;
    const char *name;       // "fp32", "fp16", "int8"
    // Bytes per element when that is fixed: 4 (fp32), 2 (fp16); 0 for int8, whose size is
    // codec_encoded_bytes() (a per-block scale plus a byte per element).
    size_t elem_bytes;
    // Elements per independently encoded block: 1 (fp32, fp16), CODEC_INT8_BLOCK (int8).
    // Chunks of a longer vector start at multiples of it (see the top of this file).
    size_t block;
    // out (codec_encoded_bytes(id, n) bytes) <- in (n floats)
    void (*encode)(uint8_t *out, const float *in, size_t n);
    // The same with error feedback (see codec_fp16_encode_ef, codec_int8_encode_ef); NULL
    // for a lossless codec.
    void (*encode_ef)(uint8_t *out, const float *in, float *residual, size_t n);
    // out (n floats) <- in (codec_encoded_bytes(id, n) bytes)
    void (*decode)(float *out, const uint8_t *in, size_t n);
} Codec;

// The codec with this id, or NULL.
const Codec *codec_find(int id);
// The codec named name ("fp16", "fp32", "int8"), or NULL.
const Codec *codec_by_name(const char *name);

// Bytes per element of a fixed-size codec: 4 (FP32), 2 (FP16); 0 for INT8 (not a fixed
// size: use codec_encoded_bytes) and for an unknown id. A caller that sizes buffers with it
// must treat 0 as "not a fixed-size codec", never divide by it.
size_t codec_elem_bytes(int id);

// Bytes that n elements occupy encoded: 4n (FP32), 2n (FP16), 4 * ceil(n / 128) + n (INT8);
// 0 for an unknown id (and for n = 0).
size_t codec_encoded_bytes(int id, size_t n);

// Elements per block of a codec (Codec.block): 1 (FP32, FP16), 128 (INT8); 0 for an unknown
// id. A chunk of a longer vector must start at a multiple of it.
size_t codec_chunk_align(int id);

// The largest element count k that is a multiple of codec_chunk_align(id) and whose encoding
// fits in max_bytes (codec_encoded_bytes(id, k) <= max_bytes): the length of every chunk but
// the last when a vector is sent in chunks of at most max_bytes. 0 when not even one block
// fits (INT8 needs 4 + 128 = 132 bytes per block) or the id is unknown.
size_t codec_chunk_elems(int id, size_t max_bytes);

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

// ---- int8 ----
// n floats are cut into nb = ceil(n / 128) blocks of 128 consecutive elements (the last one
// holds n - 128 * (nb - 1)). The encoding is nb little-endian binary32 scales (block 0 first)
// followed by n int8 values (two's complement, element order):
//     [scale_0 .. scale_{nb-1}][q_0 .. q_{n-1}]         4 * nb + n bytes
// For a block b with elements v:
//   absmax  = max |v| (exact), with a NaN counting as larger than +inf;
//   scale_b = absmax / 127.0f (one IEEE float division, round to nearest even);
//   if scale_b is finite and > 0: q = clamp(fl(v / scale_b), -127, 127) (float division),
//      rounded to the nearest integer, halfway cases away from zero (computed as truncation
//      plus a comparison of the exact fraction with +-0.5, independent of the rounding mode);
//   otherwise (all zeros, absmax / 127 underflowing to 0 for absmax <= 63 * 2^-149, or a
//      block holding a NaN or +-inf) every q of the block is 0.
// Decoding is v' = (float)q * scale_b, one float multiply (exact conversion of q).
// Accuracy: |v - v'| <= scale_b / 2 (plus a few float ulps of absmax) when scale_b is a normal
// float (absmax >= 127 * 2^-126, about 1.5e-36); for smaller blocks the error can reach absmax.
// Non-finite values: a block holding a NaN gets a NaN scale, one holding +-inf (and no NaN)
// gets +inf; with all q 0 every element of that block decodes to NaN (0 * inf = NaN), so a
// NaN or inf is never turned into a finite value and codec_check_finite on the decoded values
// catches it. (The reverse can happen at the very top of the range: a block whose absmax is
// within about 2^-24 of FLT_MAX may decode to +-inf, a loud rejection rather than silent loss.)
// Decode accepts any bytes (q = -128, negative or non-finite scales); it computes q * scale.

// out (codec_encoded_bytes(CODEC_INT8, n) bytes) <- in (n floats).
void codec_int8_encode(uint8_t *out, const float *in, size_t n);
// out (n floats) <- in (codec_encoded_bytes(CODEC_INT8, n) bytes).
void codec_int8_decode(float *out, const uint8_t *in, size_t n);
// Encoding with error feedback: v = in[i] + residual[i] (in fp32) is encoded blockwise as by
// codec_int8_encode, and residual[i] becomes fl(v - decode(out)[i]), which is exact (the
// decoded value is 0 or within a factor 2 of v, Sterbenz) except in rare borderline q = +-1
// cases where it is correctly rounded. So over R rounds the decoded values sum to the
// inputs' sum plus the first residual minus the last, up to the rounding of the additions
// in + residual, and |residual| stays within half the block's scale when that is a normal
// float (plus float slack).
// residual (n floats) is read and written; start it at zero. In a block whose absmax / 127
// underflows to 0 nothing is sent and the residual is v (carried to a later round). In a
// block holding a non-finite v the residuals of the whole block become 0 (the block
// decodes to NaNs, which the receiver rejects; an infinite error cannot be carried), and
// where a decoded value overflows to +-inf (absmax near FLT_MAX) the residual is 0:
// residuals are always finite.
void codec_int8_encode_ef(uint8_t *out, const float *in, float *residual, size_t n);

// Euclidean norm of x (n floats), accumulated in double. Not finite when an element is not
// (or when the sum of squares overflows double, which finite floats cannot reach: n < 2^50).
double codec_l2norm(const float *x, size_t n);

#endif
