// codec.c: fp32/fp16 codecs, finiteness check and norm (see codec.h).
//
// The element conversions compute every case (normal, subnormal, overflow, NaN) without
// branches and select the result with conditional expressions, which GCC and Clang turn into
// vector blends. Arrays are processed in fixed blocks of BLOCK elements through a uint16_t
// or uint32_t buffer, so the inner loops have a constant trip count and no aliasing between
// the float input and the byte output (uint8_t may alias anything).
#include "models/codec.h"

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
    {CODEC_FP32, "fp32", 4, codec_fp32_encode, NULL, codec_fp32_decode},
    {CODEC_FP16, "fp16", 2, codec_fp16_encode, codec_fp16_encode_ef, codec_fp16_decode},
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
