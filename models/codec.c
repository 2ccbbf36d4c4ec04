// codec.c: fp32/fp16/int8 codecs, finiteness check and norm (see codec.h).
//
// The element conversions compute every case (normal, subnormal, overflow, NaN) without
// branches and select the result with conditional expressions, which GCC and Clang turn into
// vector blends. Arrays are processed in fixed blocks of BLOCK elements through a uint16_t
// or uint32_t buffer, so the inner loops have a constant trip count and no aliasing between
// the float input and the byte output (uint8_t may alias anything).
//
// int8 works block by block (CODEC_INT8_BLOCK elements, copied into local buffers, a short
// last block padded with zeros, which changes neither its absmax nor its first values): the
// absmax is an integer max over the sign-cleared bit patterns (the order of non-negative
// floats, with NaNs above +inf), the per-element loops have no branches, and the only branch
// is per block (is the scale finite and positive?). The results must be the documented IEEE
// operations one by one (the golden test compares bytes with numpy): -std=c11 makes GCC keep
// q * scale and v - q * scale as separate roundings (-ffp-contract=off, no FMA).
#include "models/codec.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#define BLOCK 256

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1
#else
#define HOST_LE 0
#endif


// cond ? a : b as a bitwise blend: compilers keep this branch-free (a conditional
// expression over computed values sometimes stays a branch and stops vectorisation).
static inline uint32_t select(int cond, uint32_t a, uint32_t b) {
    uint32_t mask = 0u - (uint32_t)(cond != 0);
    return (a & mask) | (b & ~mask);
}

// binary32 bits -> binary16 bits, round to nearest even.
static inline uint16_t f32_to_f16_bits(uint32_t x) {
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t a = x & 0x7fffffffu;  // |x|
    // Normal fp16 range, |x| in [2^-14, 65520): rebias the exponent (127 -> 15) and round
    // the 13 dropped mantissa bits; a carry out of the mantissa correctly bumps the exponent.
    uint32_t normal = (a - 0x38000000u + 0x0fffu + ((a >> 13) & 1u)) >> 13;
    // Subnormal fp16, |x| < 2^-14: value / 2^-24 = M * 2^(e - 126) with M the mantissa with
    // its implicit bit; shift right by s = 126 - e (>= 14) and round. For s >= 25 the result
    // is 0 (M < 2^24 is at most half of 2^s, the tie going to the even 0). s is forced into
    // [14, 31] so every shift is defined: s > 31 gives the same 0 as 31, and s < 14 (a
    // normal |x|, whose result here is discarded) would make s - 1 wrap for e = 126.
    // Rounding up from 0x3ff gives 0x400, the smallest normal, as it should.
    uint32_t e = a >> 23;
    uint32_t s = 126u - e;  // wraps for e > 126
    s = select(s - 14u > 17u, 31u, s);
    uint32_t m = (a & 0x007fffffu) | 0x00800000u;
    uint32_t q = m >> s;
    uint32_t rem = m & ((1u << s) - 1u);
    uint32_t sub = q + ((rem + (1u << (s - 1u)) - 1u + (q & 1u)) >> s);
    // NaN: quiet bit set, top payload bits kept.
    uint32_t nan = 0x7e00u | ((a >> 13) & 0x03ffu);
    uint32_t h = select(a < 0x38800000u, sub, normal);
    h = select(a >= 0x477ff000u, 0x7c00u, h);  // rounds to 65536 or more, or is inf
    h = select(a > 0x7f800000u, nan, h);
    return (uint16_t)(sign | h);
}

// binary16 bits -> binary32 bits, exact.
static inline uint32_t f16_to_f32_bits(uint32_t h) {
    uint32_t sign = (h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t normal = ((e + 112u) << 23) | (m << 13);
    uint32_t special = 0x7f800000u | (m << 13);  // inf, NaN (payload kept)
    // Subnormal (or zero): m * 2^-24 is exact in binary32 (m < 2^10); integer-to-float
    // conversion and scaling by a power of two do no rounding, whatever the rounding mode.
    float fs = (float)m * 0x1p-24f;
    uint32_t sub;
    memcpy(&sub, &fs, sizeof sub);
    return sign | select(e == 0, sub, select(e == 31u, special, normal));
}

uint16_t codec_fp16_from_fp32(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return f32_to_f16_bits(x);
}

float codec_fp16_to_fp32(uint16_t h) {
    uint32_t x = f16_to_f32_bits(h);
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

// Writes n (<= BLOCK) binary16 values as little-endian bytes.
static void put_u16s(uint8_t *restrict out, const uint16_t *restrict h, size_t n) {
    if (HOST_LE) {
        memcpy(out, h, n * sizeof *h);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = (uint8_t)h[i];
        out[2 * i + 1] = (uint8_t)(h[i] >> 8);
    }
}

static void get_u16s(uint16_t *restrict h, const uint8_t *restrict in, size_t n) {
    if (HOST_LE) {
        memcpy(h, in, n * sizeof *h);
        return;
    }
    for (size_t i = 0; i < n; i++) h[i] = (uint16_t)(in[2 * i] | in[2 * i + 1] << 8);
}

void codec_fp16_encode(uint8_t *out, const float *in, size_t n) {
    uint32_t x[BLOCK];
    uint16_t h[BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t nb = n - i0 < BLOCK ? n - i0 : BLOCK;
        memcpy(x, in + i0, nb * sizeof *x);
        if (nb < BLOCK) memset(x + nb, 0, (BLOCK - nb) * sizeof *x);
        for (size_t i = 0; i < BLOCK; i++) h[i] = f32_to_f16_bits(x[i]);
        put_u16s(out + 2 * i0, h, nb);
    }
}

void codec_fp16_decode(float *out, const uint8_t *in, size_t n) {
    uint16_t h[BLOCK];
    uint32_t x[BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t nb = n - i0 < BLOCK ? n - i0 : BLOCK;
        get_u16s(h, in + 2 * i0, nb);
        if (nb < BLOCK) memset(h + nb, 0, (BLOCK - nb) * sizeof *h);
        for (size_t i = 0; i < BLOCK; i++) x[i] = f16_to_f32_bits(h[i]);
        memcpy(out + i0, x, nb * sizeof *x);
    }
}

void codec_fp16_encode_ef(uint8_t *out, const float *in, float *residual, size_t n) {
    float v[BLOCK], r[BLOCK];
    uint16_t h[BLOCK];
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t nb = n - i0 < BLOCK ? n - i0 : BLOCK;
        memcpy(v, in + i0, nb * sizeof *v);
        memcpy(r, residual + i0, nb * sizeof *r);
        if (nb < BLOCK) {
            memset(v + nb, 0, (BLOCK - nb) * sizeof *v);
            memset(r + nb, 0, (BLOCK - nb) * sizeof *r);
        }
        for (size_t i = 0; i < BLOCK; i++) {
            float vi = v[i] + r[i];
            uint32_t xi;
            memcpy(&xi, &vi, sizeof xi);
            uint16_t hi = f32_to_f16_bits(xi);
            uint32_t di = f16_to_f32_bits(hi);
            float df;
            memcpy(&df, &di, sizeof df);
            h[i] = hi;
            // (hi & 0x7c00) == 0x7c00: decoded value is inf or NaN; carry nothing.
            float ri = vi - df;
            uint32_t rb;
            memcpy(&rb, &ri, sizeof rb);
            rb = select((hi & 0x7c00u) == 0x7c00u, 0u, rb);
            memcpy(&r[i], &rb, sizeof rb);
        }
        put_u16s(out + 2 * i0, h, nb);
        memcpy(residual + i0, r, nb * sizeof *r);
    }
}

void codec_fp32_encode(uint8_t *out, const float *in, size_t n) {
    if (HOST_LE) {
        memcpy(out, in, n * sizeof *in);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, &in[i], sizeof x);
        for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = (uint8_t)(x >> (8 * b));
    }
}

void codec_fp32_decode(float *out, const uint8_t *in, size_t n) {
    if (HOST_LE) {
        memcpy(out, in, n * sizeof *out);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = in + 4 * i;
        uint32_t x = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
        memcpy(&out[i], &x, sizeof x);
    }
}

// ---- int8 ----

#define QB CODEC_INT8_BLOCK

static void put_f32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    for (int b = 0; b < 4; b++) p[b] = (uint8_t)(u >> (8 * b));
}

static float get_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// absmax(v) / 127 of one block (QB floats). The max of the bit patterns with the sign
// cleared is the bit pattern of the max |v| (non-negative floats order like their bits),
// and a NaN (above 0x7f800000) beats +inf, so the scale is NaN when the block holds a NaN,
// +inf when it holds an inf (and no NaN).
static float int8_scale(const float *restrict v) {
    uint32_t amax = 0;
    for (size_t i = 0; i < QB; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        u &= 0x7fffffffu;
        amax = u > amax ? u : amax;
    }
    float a;
    memcpy(&a, &amax, sizeof a);
    return a / 127.0f;
}

// True when the scale is usable for quantisation: finite and > 0 (false for NaN too).
static inline int scale_ok(float s) { return s > 0.0f && s <= FLT_MAX; }

// q[i] = round_half_away(clamp(v[i] / s, -127, 127)) for one block; s finite and > 0. The
// clamp is done after rounding, in integers, which gives the same result (both are monotone
// and +-127 are integers) and lets GCC vectorise the loop (a float clamp before the
// conversion keeps it scalar). v / s is finite and |v / s| < 256 (s >= absmax / 127 up to
// rounding; a subnormal s can be at most 2x too small), so the conversion is defined.
static void int8_quantise(int8_t *restrict q, const float *restrict v, float s) {
    for (size_t i = 0; i < QB; i++) {
        float r = v[i] / s;
        int32_t t = (int32_t)r;     // truncates toward zero
        float frac = r - (float)t;  // exact, in (-1, 1)
        t += (int32_t)(frac >= 0.5f) - (int32_t)(frac <= -0.5f);
        t = t < -127 ? -127 : t;
        t = t > 127 ? 127 : t;
        q[i] = (int8_t)t;
    }
}

// Copies m (<= QB) floats into a block buffer, padding with zeros.
static void load_block(float *restrict dst, const float *restrict src, size_t m) {
    memcpy(dst, src, m * sizeof *dst);
    if (m < QB) memset(dst + m, 0, (QB - m) * sizeof *dst);
}

void codec_int8_encode(uint8_t *out, const float *in, size_t n) {
    size_t nb = (n + QB - 1) / QB;
    uint8_t *qout = out + 4 * nb;
    float v[QB];
    int8_t q[QB];
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * QB, m = n - i0 < QB ? n - i0 : QB;
        load_block(v, in + i0, m);
        float s = int8_scale(v);
        if (scale_ok(s)) int8_quantise(q, v, s);
        else memset(q, 0, sizeof q);  // zeros, underflow, or a NaN/inf in the block
        put_f32(out + 4 * b, s);
        memcpy(qout + i0, q, m);
    }
}

void codec_int8_decode(float *out, const uint8_t *in, size_t n) {
    size_t nb = (n + QB - 1) / QB;
    const uint8_t *qin = in + 4 * nb;
    int8_t q[QB];
    float v[QB];
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * QB, m = n - i0 < QB ? n - i0 : QB;
        float s = get_f32(in + 4 * b);
        memcpy(q, qin + i0, m);
        if (m < QB) memset(q + m, 0, QB - m);
        for (size_t i = 0; i < QB; i++) v[i] = (float)q[i] * s;
        memcpy(out + i0, v, m * sizeof *v);
    }
}

void codec_int8_encode_ef(uint8_t *out, const float *in, float *residual, size_t n) {
    size_t nb = (n + QB - 1) / QB;
    uint8_t *qout = out + 4 * nb;
    float v[QB], r[QB];
    int8_t q[QB];
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * QB, m = n - i0 < QB ? n - i0 : QB;
        load_block(v, in + i0, m);
        load_block(r, residual + i0, m);
        for (size_t i = 0; i < QB; i++) v[i] += r[i];
        float s = int8_scale(v);
        if (scale_ok(s)) {
            int8_quantise(q, v, s);
            for (size_t i = 0; i < QB; i++) {
                float d = (float)q[i] * s;
                float e = v[i] - d;
                // d overflows to +-inf only for absmax within ~2^-24 of FLT_MAX: carry 0
                uint32_t eb, db;
                memcpy(&eb, &e, sizeof eb);
                memcpy(&db, &d, sizeof db);
                eb = select((db & 0x7f800000u) == 0x7f800000u, 0u, eb);
                memcpy(&r[i], &eb, sizeof eb);
            }
        } else if (s == 0.0f) {
            // all zeros, or so small that absmax / 127 underflows: nothing is sent, all kept
            memset(q, 0, sizeof q);
            memcpy(r, v, sizeof r);
        } else {
            // a NaN or inf in the block: it decodes to NaNs; nothing can be carried
            memset(q, 0, sizeof q);
            memset(r, 0, sizeof r);
        }
        put_f32(out + 4 * b, s);
        memcpy(qout + i0, q, m);
        memcpy(residual + i0, r, m * sizeof *r);
    }
}

int codec_check_finite(const float *x, size_t n, size_t *bad_index) {
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t nb = n - i0 < BLOCK ? n - i0 : BLOCK;
        // Vectorisable scan of a block (exponent all ones = inf or NaN), then the exact index.
        uint32_t any = 0;
        for (size_t i = 0; i < nb; i++) {
            uint32_t u;
            memcpy(&u, &x[i0 + i], sizeof u);
            any |= (u & 0x7f800000u) + 0x00800000u;  // bit 31 set iff the exponent is all ones
        }
        if (!(any >> 31)) continue;
        for (size_t i = 0; i < nb; i++) {
            uint32_t u;
            memcpy(&u, &x[i0 + i], sizeof u);
            if ((u & 0x7f800000u) == 0x7f800000u) {
                if (bad_index) *bad_index = i0 + i;
                return 0;
            }
        }
    }
    return 1;
}

double codec_l2norm(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

// ---- the table ----

static const Codec CODECS[] = {
    {CODEC_FP32, "fp32", 4, 1, codec_fp32_encode, NULL, codec_fp32_decode},
    {CODEC_FP16, "fp16", 2, 1, codec_fp16_encode, codec_fp16_encode_ef, codec_fp16_decode},
    {CODEC_INT8, "int8", 0, CODEC_INT8_BLOCK, codec_int8_encode, codec_int8_encode_ef,
     codec_int8_decode},
};

const Codec *codec_find(int id) {
    for (size_t i = 0; i < sizeof CODECS / sizeof CODECS[0]; i++)
        if (CODECS[i].id == id) return &CODECS[i];
    return NULL;
}

const Codec *codec_by_name(const char *name) {
    for (size_t i = 0; i < sizeof CODECS / sizeof CODECS[0]; i++)
        if (!strcmp(CODECS[i].name, name)) return &CODECS[i];
    return NULL;
}

size_t codec_elem_bytes(int id) {
    const Codec *k = codec_find(id);
    return k ? k->elem_bytes : 0;
}

size_t codec_encoded_bytes(int id, size_t n) {
    switch (id) {
    case CODEC_FP32: return 4 * n;
    case CODEC_FP16: return 2 * n;
    case CODEC_INT8: return 4 * ((n + QB - 1) / QB) + n;
    default: return 0;
    }
}

size_t codec_chunk_align(int id) {
    const Codec *k = codec_find(id);
    return k ? k->block : 0;
}

size_t codec_chunk_elems(int id, size_t max_bytes) {
    size_t b = codec_chunk_align(id);
    if (!b) return 0;
    return max_bytes / codec_encoded_bytes(id, b) * b;  // whole blocks that fit
}
