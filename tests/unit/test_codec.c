// test_codec.c: the gradient wire codecs (models/codec.h): pure functions, no sockets.
//
// - Every one of the 65536 binary16 patterns decodes and re-encodes to itself (NaNs stay
//   NaNs with the quiet bit set and the sign kept); decoding agrees with a reference computed
//   in double (ldexp of the fields).
// - fp32 -> fp16 against conv_ref(), written differently (double arithmetic, frexp and an
//   explicit round-half-even), for every 2^9-th binary32 pattern (both as is and with random
//   low 9 bits), for all patterns within 2^12 of the range and subnormal boundaries, and for
//   every halfway point between adjacent binary16 values and the patterns either side.
// - Ties to even, overflow to +-inf, underflow to signed zero, NaN quieting, named cases.
// - The array functions (all lengths 0..600, odd offsets) match the scalar ones; fp32 and
//   fp16 bytes are little-endian.
// - Error feedback: over 20000 rounds the decoded sum tracks the input sum within one fp16
//   ulp at rounds 10, 100, 1000, 20000 (the error does not grow), while plain encoding of the
//   same inputs drifts by thousands of ulps.
// - codec_check_finite finds the first NaN/inf; codec_l2norm against a double sum.
// - int8 (blockwise absmax, 128 per block): byte for byte against tests/ref/int8_golden.h,
//   written by an independent numpy/torch reference (tests/ref/int8_ref.py): a short last
//   block, a zero block, exact halfway cases, huge, tiny, subnormal-scale and underflowing
//   blocks. Sizes and the codec table. Per-element error <= scale / 2 (+ 2^-22 absmax) on
//   random data of magnitudes 1e-30..1e30, q never -128, each block's absmax encoded as
//   +-127. Error feedback over 1000 rounds: every round the decoded value plus the new
//   residual is exactly in + old residual (as rounded in float), the decoded sum equals the
//   input sum plus the first minus the last residual within the (computed) rounding of those
//   additions, |residual| stays within the largest half-scale; without feedback a constant
//   small input accumulates a bias of hundreds of scales. Chunked encoding at multiples of
//   128 equals whole-vector encoding. NaN/inf never decode to a finite value.
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/codec.h"
#include "tests/ref/int8_golden.h"
#include "tests/unit/testutil.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void) {  // splitmix64
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float f_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t u_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

// ---- references, written without the bit tricks of codec.c ----

// binary16 bits -> value, in double, from the fields.
static double h_value_ref(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp(1024.0 + m, e - 25);
    return sign ? -v : v;
}

// Round q >= 0 to the nearest integer, ties to even, explicitly.
static double round_half_even(double q) {
    double fl = floor(q), frac = q - fl;  // exact: q has at most 53 significant bits
    if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2.0) != 0.0)) fl += 1.0;
    return fl;
}

// binary32 -> binary16 bits via double arithmetic.
static uint16_t conv_ref(float f) {
    uint32_t u = u_of(f);
    uint16_t sign = (uint16_t)((u >> 31) << 15);
    if (isnan(f)) return (uint16_t)(sign | 0x7e00 | ((u >> 13) & 0x3ff));
    double a = fabs((double)f);
    if (isinf(a)) return (uint16_t)(sign | 0x7c00);
    if (a < ldexp(1.0, -14)) {  // subnormal range: a multiple of 2^-24
        double q = round_half_even(a * ldexp(1.0, 24));
        return (uint16_t)(sign | (uint16_t)q);  // q == 1024 is the smallest normal's bits
    }
    int ex;
    frexp(a, &ex);  // a = mant * 2^ex, mant in [0.5, 1)
    int E = ex - 1;  // a in [2^E, 2^(E+1))
    double q = round_half_even(ldexp(a, 10 - E));  // in [1024, 2048]
    if (q == 2048.0) {
        q = 1024.0;
        E++;
    }
    if (E + 15 >= 31) return (uint16_t)(sign | 0x7c00);  // too large, or inf
    return (uint16_t)(sign | (uint16_t)((E + 15) << 10) | (uint16_t)(q - 1024.0));
}

// ---- all binary16 patterns ----

static void test_fp16_all_patterns(void) {
    int bad_rt = 0, bad_val = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = codec_fp16_to_fp32((uint16_t)h);
        double want = h_value_ref((uint16_t)h);
        uint16_t back = codec_fp16_from_fp32(f);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan) {
            if (!isnan(f) || (u_of(f) >> 31) != (h >> 15)) bad_val++;
            // quiet bit set, sign and payload kept
            if (back != (uint16_t)(h | 0x200)) bad_rt++;
        } else {
            if ((double)f != want || !signbit(f) != !signbit(want)) bad_val++;
            if (back != h) bad_rt++;
        }
    }
    CU_ASSERT_EQUAL(bad_rt, 0);
    CU_ASSERT_EQUAL(bad_val, 0);

    // The array functions agree, on all patterns at once.
    uint8_t *bytes = malloc(2 * 65536), *back = malloc(2 * 65536);
    float *f = malloc(65536 * sizeof *f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes && back && f);
    for (uint32_t h = 0; h < 65536; h++) {
        bytes[2 * h] = (uint8_t)h;
        bytes[2 * h + 1] = (uint8_t)(h >> 8);
    }
    codec_fp16_decode(f, bytes, 65536);
    codec_fp16_encode(back, f, 65536);
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t got = (uint16_t)(back[2 * h] | back[2 * h + 1] << 8);
        uint16_t want = ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) ? (uint16_t)(h | 0x200)
                                                                : (uint16_t)h;
        if (got != want || u_of(f[h]) != u_of(codec_fp16_to_fp32((uint16_t)h))) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(bytes);
    free(back);
    free(f);
}

// ---- binary32 -> binary16 against the reference ----

static int g_mismatch_reports;

static int check_one(uint32_t u) {
    float f = f_of(u);
    uint16_t got = codec_fp16_from_fp32(f), want = conv_ref(f);
    if (got == want) return 0;
    if (g_mismatch_reports++ < 5)
        fprintf(stderr, "  fp32 0x%08x (%a): got 0x%04x, want 0x%04x\n", u, (double)f, got,
                want);
    return 1;
}

static void test_sweep(void) {
    int bad = 0;
    long n = 0;
    // every 2^9-th pattern, and the same with random low bits (sticky bits below bit 9)
    for (uint64_t u = 0; u < (1ull << 32); u += 1u << 9) {
        bad += check_one((uint32_t)u);
        bad += check_one((uint32_t)u | (uint32_t)(rnd() & 0x1ff));
        n += 2;
    }
    // every pattern near the boundaries, both signs
    static const uint32_t edges[] = {
        0x00000000u,  // zero / fp32 subnormals
        0x33000000u,  // 2^-25: half the smallest fp16 subnormal
        0x33800000u,  // 2^-24: smallest fp16 subnormal
        0x33c00000u,  // 1.5 * 2^-24
        0x38000000u,  // 2^-15
        0x387fc000u,  // largest fp16 subnormal
        0x38800000u,  // 2^-14: smallest fp16 normal
        0x3f800000u,  // 1
        0x477fe000u,  // 65504: largest fp16
        0x477ff000u,  // 65520: halfway to 65536, rounds to inf
        0x47800000u,  // 65536
        0x7f800000u,  // inf / NaN
    };
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
        for (int64_t d = -(1 << 12); d <= (1 << 12); d++) {
            int64_t u = (int64_t)edges[k] + d;
            if (u < 0 || u > 0x7fffffff) continue;
            bad += check_one((uint32_t)u);
            bad += check_one((uint32_t)u | 0x80000000u);
            n += 2;
        }
    }
    // every halfway point between adjacent finite fp16 values (and the 65504..65536 one),
    // with the binary32 patterns either side
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double mid = (h_value_ref((uint16_t)h) + ldexp(1.0, (h >> 10) ? (int)(h >> 10) - 25
                                                                     : -24) / 2.0);
        float fm = (float)mid;
        CU_ASSERT((double)fm == mid);  // every fp16 midpoint is exact in binary32
        for (int d = -2; d <= 2; d++) {
            uint32_t u = u_of(fm) + (uint32_t)d;
            bad += check_one(u);
            bad += check_one(u | 0x80000000u);
            n += 2;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    if (bad) fprintf(stderr, "  %d of %ld patterns differ\n", bad, n);
}

static void test_named_cases(void) {
    // ties to even
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(1.0f + 0x1p-11f), 0x3c00);  // 1 + half ulp -> 1
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(1.0f + 3 * 0x1p-11f), 0x3c02);  // -> 1 + 2 ulp
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(1.0f + 0x1p-11f + 0x1p-23f), 0x3c01);  // above half
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(2049.0f), 0x6800);   // 2048 (even), not 2050
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(2051.0f), 0x6802);   // 2052 (even)
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(0x1p-25f), 0x0000);  // tie between 0 and 2^-24
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(0x1.8p-24f), 0x0002);  // tie 1 and 2 -> 2
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(0x1.4p-23f), 0x0002);  // 2.5 -> 2
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(0x1.ffcp-15f), 0x0400);  // 1023.5 * 2^-24 -> 2^-14
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(2047.5f * 0x1p-10f), 0x4000);  // carry into exponent
    // overflow, underflow, signed zero, inf, NaN
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(65519.996f), 0x7bff);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(65520.0f), 0x7c00);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(-1e30f), 0xfc00);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(INFINITY), 0x7c00);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(-INFINITY), 0xfc00);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(0x1.000002p-25f), 0x0001);  // just above the tie
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(1e-30f), 0x0000);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(-1e-30f), 0x8000);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(0.0f), 0x0000);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(-0.0f), 0x8000);
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(f_of(0x00000001u)), 0x0000);  // fp32 subnormal
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(f_of(0x7f800001u)), 0x7e00);  // sNaN, low payload
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(f_of(0xffc00000u)), 0xfe00);  // -qNaN
    CU_ASSERT_EQUAL(codec_fp16_from_fp32(f_of(0x7fa02000u)), 0x7f01);  // payload kept, quieted
    CU_ASSERT(signbit(codec_fp16_to_fp32(0x8000)) && codec_fp16_to_fp32(0x8000) == 0.0f);
    CU_ASSERT_EQUAL(codec_fp16_to_fp32(0x0001), 0x1p-24f);
    CU_ASSERT_EQUAL(codec_fp16_to_fp32(0x7bff), 65504.0f);
    CU_ASSERT(isnan(codec_fp16_to_fp32(0x7c01)));
    CU_ASSERT_EQUAL(codec_elem_bytes(CODEC_FP32), 4);
    CU_ASSERT_EQUAL(codec_elem_bytes(CODEC_FP16), 2);
    CU_ASSERT_EQUAL(codec_elem_bytes(0), 0);
    CU_ASSERT_EQUAL(codec_elem_bytes(4), 0);
    // the table any averaging strategy uses: ids, names, sizes and the same functions
    const Codec *h = codec_find(CODEC_FP16), *f = codec_find(CODEC_FP32);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NULL(codec_find(0));
    CU_ASSERT_PTR_EQUAL(codec_by_name("fp16"), h);
    CU_ASSERT_PTR_EQUAL(codec_by_name("fp32"), f);
    CU_ASSERT_PTR_NULL(codec_by_name("int4"));
    CU_ASSERT_STRING_EQUAL(h->name, "fp16");
    CU_ASSERT_EQUAL(h->elem_bytes, 2);
    CU_ASSERT_EQUAL(f->elem_bytes, 4);
    CU_ASSERT(h->encode == codec_fp16_encode && h->encode_ef == codec_fp16_encode_ef &&
              h->decode == codec_fp16_decode);
    CU_ASSERT(f->encode == codec_fp32_encode && f->encode_ef == NULL && f->decode == codec_fp32_decode);
}

// ---- arrays: lengths, tails, byte order ----

static void test_arrays(void) {
    enum { N = 600 };
    float in[N + 1], out[N + 1];
    uint8_t b16[2 * N + 3], b32[4 * N + 5];
    for (int i = 0; i <= N; i++) in[i] = f_of((uint32_t)rnd());
    int bad = 0;
    for (size_t n = 0; n <= N; n += (n < 20 ? 1 : 37)) {
        for (size_t off = 0; off <= 1; off++) {  // odd byte offsets: no alignment assumed
            memset(b16, 0xaa, sizeof b16);
            codec_fp16_encode(b16 + off, in + off, n);
            for (size_t i = 0; i < n; i++) {
                uint16_t h = codec_fp16_from_fp32(in[off + i]);
                if (b16[off + 2 * i] != (uint8_t)h || b16[off + 2 * i + 1] != (uint8_t)(h >> 8))
                    bad++;
            }
            if (b16[off + 2 * n] != 0xaa) bad++;  // nothing written past the end
            out[n] = 7.0f;
            codec_fp16_decode(out, b16 + off, n);
            for (size_t i = 0; i < n; i++) {
                uint16_t h = (uint16_t)(b16[off + 2 * i] | b16[off + 2 * i + 1] << 8);
                if (u_of(out[i]) != u_of(codec_fp16_to_fp32(h))) bad++;
            }
            if (out[n] != 7.0f) bad++;
            // with error feedback: each element is the encoding of in + residual, and the
            // residual becomes what that encoding lost (element by element, every block)
            float res[N + 1], res0[N + 1];
            for (size_t i = 0; i <= N; i++) res[i] = res0[i] = (float)((int)(i % 9) - 4) * 1e-4f;
            memset(b16, 0xaa, sizeof b16);
            codec_fp16_encode_ef(b16 + off, in + off, res, n);
            for (size_t i = 0; i < n; i++) {
                float v = in[off + i] + res0[i];
                uint16_t h = codec_fp16_from_fp32(v);
                if (b16[off + 2 * i] != (uint8_t)h || b16[off + 2 * i + 1] != (uint8_t)(h >> 8))
                    bad++;
                float lost = (h & 0x7c00u) == 0x7c00u ? 0.0f : v - codec_fp16_to_fp32(h);
                if (u_of(res[i]) != u_of(lost)) bad++;
            }
            if (b16[off + 2 * n] != 0xaa || res[n] != res0[n]) bad++;
            memset(b32, 0xaa, sizeof b32);
            codec_fp32_encode(b32 + off, in + off, n);
            for (size_t i = 0; i < n; i++) {
                uint32_t u = u_of(in[off + i]);
                for (int k = 0; k < 4; k++)
                    if (b32[off + 4 * i + (size_t)k] != (uint8_t)(u >> (8 * k))) bad++;
            }
            if (b32[off + 4 * n] != 0xaa) bad++;
            codec_fp32_decode(out, b32 + off, n);
            for (size_t i = 0; i < n; i++)
                if (u_of(out[i]) != u_of(in[off + i])) bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    // golden bytes
    float g[2] = {1.0f, -2.5f};
    uint8_t gb[8];
    codec_fp16_encode(gb, g, 2);
    CU_ASSERT(gb[0] == 0x00 && gb[1] == 0x3c && gb[2] == 0x00 && gb[3] == 0xc1);
    codec_fp32_encode(gb, g, 2);
    CU_ASSERT(gb[0] == 0 && gb[1] == 0 && gb[2] == 0x80 && gb[3] == 0x3f);
    CU_ASSERT(gb[4] == 0 && gb[5] == 0 && gb[6] == 0x20 && gb[7] == 0xc0);
}

// ---- error feedback ----

// fp16 ulp at |v| (spacing of binary16 values around v; 2^-24 in the subnormal range).
static double ulp16(double v) {
    double a = fabs(v);
    if (a < ldexp(1.0, -14)) return ldexp(1.0, -24);
    int ex;
    frexp(a, &ex);
    return ldexp(1.0, ex - 1 - 10);
}

static void test_error_feedback(void) {
    enum { N = 256, ROUNDS = 20000 };
    static float g[N], res[N], dec[N];
    static double sum_in[N], sum_ef[N], sum_plain[N], last_v[N];
    static uint8_t wire[2 * N];
    static const int checkpoints[] = {10, 100, 1000, ROUNDS};
    double worst_ef[4] = {0}, worst_plain[4] = {0};
    memset(res, 0, sizeof res);
    // Per element a fixed bias (worst case for plain rounding: the same error every round)
    // plus noise; magnitudes from 2^-20 (fp16 subnormal) to 2^4.
    float base[N];
    for (int i = 0; i < N; i++) {
        double mag = ldexp(1.0, -20 + (int)(rnd() % 25));
        base[i] = (float)(mag * (1.0 + (double)(rnd() % 1000) / 1000.0) * (rnd() & 1 ? 1 : -1));
    }
    int c = 0, bad_res = 0;
    for (int r = 1; r <= ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            double noise = ((double)(rnd() % 2001) - 1000.0) / 1000.0 * 1e-3;
            g[i] = (float)(base[i] * (1.0 + noise));
            last_v[i] = (double)g[i] + (double)res[i];
        }
        codec_fp16_encode_ef(wire, g, res, N);
        codec_fp16_decode(dec, wire, N);
        for (int i = 0; i < N; i++) {
            sum_in[i] += g[i];
            sum_ef[i] += dec[i];
            sum_plain[i] += codec_fp16_to_fp32(codec_fp16_from_fp32(g[i]));
            if ((double)res[i] != last_v[i] - (double)dec[i] &&
                (float)last_v[i] - dec[i] != res[i])
                bad_res++;
        }
        if (r == checkpoints[c]) {
            for (int i = 0; i < N; i++) {
                double u = ulp16(last_v[i]);
                double e_ef = fabs(sum_ef[i] - sum_in[i]) / u;
                double e_pl = fabs(sum_plain[i] - sum_in[i]) / u;
                if (e_ef > worst_ef[c]) worst_ef[c] = e_ef;
                if (e_pl > worst_plain[c]) worst_plain[c] = e_pl;
            }
            c++;
        }
    }
    for (int k = 0; k < 4; k++) {
        printf("\n  ef: round %5d: worst |sum decoded - sum input| = %.3f fp16 ulp with "
               "feedback, %.1f without",
               checkpoints[k], worst_ef[k], worst_plain[k]);
        CU_ASSERT(worst_ef[k] <= 1.0);  // within one ulp at every checkpoint: no growth
    }
    printf("\n  ");
    CU_ASSERT_EQUAL(bad_res, 0);  // the residual is exactly what was not sent
    CU_ASSERT(worst_ef[3] <= worst_ef[0] + 0.5);
    CU_ASSERT(worst_plain[3] > 1000.0);               // plain rounding drifts ...
    CU_ASSERT(worst_plain[3] > 100.0 * worst_plain[0]);  // ... and keeps growing

    // Overflow: the value goes to inf and the residual stays finite (zero).
    float big[2] = {1e6f, -1.0f}, r2[2] = {0.0f, 0.25f};
    uint8_t w2[4];
    codec_fp16_encode_ef(w2, big, r2, 2);
    CU_ASSERT(w2[0] == 0x00 && w2[1] == 0x7c);
    CU_ASSERT(r2[0] == 0.0f);
    CU_ASSERT(w2[2] == 0x00 && w2[3] == 0xba && r2[1] == 0.0f);  // -0.75 is exact
}

// ---- finite check and norm ----

static void test_finite_norm(void) {
    enum { N = 1000 };
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i % 7) - 3.0f;
    size_t bad = 12345;
    CU_ASSERT_EQUAL(codec_check_finite(x, N, &bad), 1);
    CU_ASSERT_EQUAL(bad, 12345);
    CU_ASSERT_EQUAL(codec_check_finite(x, 0, &bad), 1);
    static const size_t pos[] = {0, 1, 255, 256, 257, 511, 700, N - 1};
    float specials[3] = {NAN, INFINITY, -INFINITY};
    for (size_t p = 0; p < sizeof pos / sizeof pos[0]; p++) {
        for (int s = 0; s < 3; s++) {
            float saved = x[pos[p]];
            x[pos[p]] = specials[s];
            if (pos[p] + 3 < N) x[pos[p] + 3] = NAN;  // a later bad one is not reported
            CU_ASSERT_EQUAL(codec_check_finite(x, N, &bad), 0);
            CU_ASSERT_EQUAL(bad, pos[p]);
            CU_ASSERT_EQUAL(codec_check_finite(x, N, NULL), 0);
            CU_ASSERT_EQUAL(codec_check_finite(x, pos[p], NULL), 1);  // stops before it
            x[pos[p]] = saved;
            if (pos[p] + 3 < N) x[pos[p] + 3] = (float)((pos[p] + 3) % 7) - 3.0f;
        }
    }
    CU_ASSERT_EQUAL(codec_check_finite(x, N, NULL), 1);
    // alone (no later bad value to flag its block): the first and last of a block too
    for (size_t p = 0; p < sizeof pos / sizeof pos[0]; p++) {
        float saved = x[pos[p]];
        x[pos[p]] = NAN;
        bad = 12345;
        CU_ASSERT_EQUAL(codec_check_finite(x, N, &bad), 0);
        CU_ASSERT_EQUAL(bad, pos[p]);
        x[pos[p]] = saved;
    }

    double want = 0.0;
    for (int i = 0; i < N; i++) want += (double)x[i] * x[i];
    CU_ASSERT(fabs(codec_l2norm(x, N) - sqrt(want)) <= 1e-12 * sqrt(want));
    CU_ASSERT_EQUAL(codec_l2norm(x, 0), 0.0);
    float three_four[2] = {3.0f, -4.0f};
    CU_ASSERT_EQUAL(codec_l2norm(three_four, 2), 5.0);
    float huge[2] = {3e38f, 3e38f};  // squares overflow float, not double
    CU_ASSERT(fabs(codec_l2norm(huge, 2) / (sqrt(2.0) * (double)huge[0]) - 1.0) < 1e-15);
    x[17] = NAN;
    CU_ASSERT(!isfinite(codec_l2norm(x, N)));
    x[17] = INFINITY;
    CU_ASSERT(isinf(codec_l2norm(x, N)));
}

// ---- int8 ----

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static float int8_scale_at(const uint8_t *enc, size_t b) {
    const uint8_t *p = enc + 4 * b;
    return f_of((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static size_t int8_blocks(size_t n) { return (n + CODEC_INT8_BLOCK - 1) / CODEC_INT8_BLOCK; }

// Uniform in [-1, 1).
static double unif(void) { return (double)(rnd() >> 11) * 0x1p-52 - 1.0; }

// Against tests/ref/int8_golden.h: encoding byte for byte, decoding bit for bit, and error
// feedback from a zero residual sends the same bytes and keeps exactly in - decoded. The C
// code and the reference use the same IEEE float32 operations (one division for the scale,
// one per element, one multiply to decode; no FMA contraction under -std=c11), so no
// rounding may differ.
static void test_int8_golden(void) {
    int n_bad_enc = 0, n_bad_dec = 0, n_bad_res = 0;
    for (size_t c = 0; c < NELEM(golden_int8); c++) {
        const Int8Golden *g = &golden_int8[c];
        size_t nbytes = codec_encoded_bytes(CODEC_INT8, g->n);
        CU_ASSERT_EQUAL(nbytes, 4 * int8_blocks(g->n) + g->n);
        uint8_t *enc = malloc(nbytes + 1), *enc2 = malloc(nbytes);
        float *dec = malloc((g->n + 1) * sizeof *dec), *res = calloc(g->n, sizeof *res);
        CU_ASSERT_PTR_NOT_NULL_FATAL(enc && enc2 && dec && res);
        enc[nbytes] = 0xa5;
        codec_int8_encode(enc, g->in, g->n);
        for (size_t i = 0; i < nbytes; i++)
            if (enc[i] != g->enc[i] && n_bad_enc++ < 5)
                printf("\n  int8 golden %s: byte %zu is 0x%02x, reference 0x%02x", g->name, i,
                       enc[i], g->enc[i]);
        CU_ASSERT_EQUAL(enc[nbytes], 0xa5);  // nothing written past the end
        dec[g->n] = 7.0f;
        codec_int8_decode(dec, g->enc, g->n);
        for (size_t i = 0; i < g->n; i++)
            if (u_of(dec[i]) != u_of(g->dec[i]) && n_bad_dec++ < 5)
                printf("\n  int8 golden %s: decoded[%zu] = %a, reference %a", g->name, i,
                       (double)dec[i], (double)g->dec[i]);
        CU_ASSERT_EQUAL(dec[g->n], 7.0f);
        codec_int8_encode_ef(enc2, g->in, res, g->n);
        CU_ASSERT(memcmp(enc2, g->enc, nbytes) == 0);
        for (size_t i = 0; i < g->n; i++)
            if ((double)res[i] != (double)g->in[i] - (double)g->dec[i]) n_bad_res++;
        free(enc);
        free(enc2);
        free(dec);
        free(res);
    }
    CU_ASSERT_EQUAL(n_bad_enc, 0);
    CU_ASSERT_EQUAL(n_bad_dec, 0);
    CU_ASSERT_EQUAL(n_bad_res, 0);
    CU_ASSERT_EQUAL(NELEM(golden_int8), 7);
    // what the golden cases hold: the halfway block has scale 1 and rounds away from zero
    const Int8Golden *t = &golden_int8[2];
    CU_ASSERT_STRING_EQUAL(t->name, "ties");
    CU_ASSERT_EQUAL(int8_scale_at(t->enc, 0), 1.0f);
    CU_ASSERT(t->in[1] == 0.5f && (int8_t)t->enc[4 + 1] == 1);
    CU_ASSERT(t->in[6] == -2.5f && (int8_t)t->enc[4 + 6] == -3);
}

// Sizes, alignment, chunk lengths, the table; no byte written past the encoded size.
static void test_int8_sizes(void) {
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_INT8, 0), 0);
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_INT8, 1), 5);
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_INT8, 127), 131);
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_INT8, 128), 132);
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_INT8, 129), 137);
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_INT8, 1000), 1032);
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_FP16, 1000), 2000);
    CU_ASSERT_EQUAL(codec_encoded_bytes(CODEC_FP32, 1000), 4000);
    CU_ASSERT_EQUAL(codec_encoded_bytes(0, 1000), 0);
    CU_ASSERT_EQUAL(codec_encoded_bytes(4, 1000), 0);
    CU_ASSERT_EQUAL(codec_elem_bytes(CODEC_INT8), 0);  // no fixed size per element
    CU_ASSERT_EQUAL(codec_chunk_align(CODEC_FP32), 1);
    CU_ASSERT_EQUAL(codec_chunk_align(CODEC_FP16), 1);
    CU_ASSERT_EQUAL(codec_chunk_align(CODEC_INT8), 128);
    CU_ASSERT_EQUAL(codec_chunk_align(0), 0);
    CU_ASSERT_EQUAL(codec_chunk_elems(CODEC_INT8, 131), 0);  // not one block
    CU_ASSERT_EQUAL(codec_chunk_elems(CODEC_INT8, 132), 128);
    CU_ASSERT_EQUAL(codec_chunk_elems(CODEC_INT8, 263), 128);
    CU_ASSERT_EQUAL(codec_chunk_elems(CODEC_INT8, 264), 256);
    CU_ASSERT_EQUAL(codec_chunk_elems(CODEC_INT8, 1u << 20), 7943 * 128);
    CU_ASSERT_EQUAL(codec_chunk_elems(CODEC_FP16, 1001), 500);
    CU_ASSERT_EQUAL(codec_chunk_elems(CODEC_FP32, 1003), 250);
    CU_ASSERT_EQUAL(codec_chunk_elems(0, 1000), 0);
    const Codec *k = codec_find(CODEC_INT8);
    CU_ASSERT_PTR_NOT_NULL_FATAL(k);
    CU_ASSERT_PTR_EQUAL(codec_by_name("int8"), k);
    CU_ASSERT_STRING_EQUAL(k->name, "int8");
    CU_ASSERT_EQUAL(k->id, CODEC_INT8);
    CU_ASSERT_EQUAL(k->elem_bytes, 0);
    CU_ASSERT_EQUAL(k->block, CODEC_INT8_BLOCK);
    CU_ASSERT(k->encode == codec_int8_encode && k->encode_ef == codec_int8_encode_ef &&
              k->decode == codec_int8_decode);
    CU_ASSERT(codec_find(CODEC_FP16)->block == 1 && codec_find(CODEC_FP32)->block == 1);
    // Every length 0..600 (and odd byte offsets): the writes end at the encoded size, the
    // decoded values at n, and the table's functions are the same ones.
    enum { N = 600 };
    static float x[N + 1], y[N + 1], r[N + 1];
    static uint8_t b[4 * 5 + N + 8], b2[4 * 5 + N + 8];
    for (int i = 0; i <= N; i++) x[i] = (float)unif();
    int bad = 0;
    for (size_t n = 0; n <= N; n += (n < 260 ? 1 : 37)) {
        for (size_t off = 0; off <= 1; off++) {
            size_t nb = codec_encoded_bytes(CODEC_INT8, n);
            memset(b, 0xa5, sizeof b);
            codec_int8_encode(b + off, x + off, n);
            if (b[off + nb] != 0xa5) bad++;
            memset(b2, 0xa5, sizeof b2);
            k->encode(b2 + off, x + off, n);
            if (memcmp(b, b2, sizeof b)) bad++;
            memset(r, 0, sizeof r);
            r[n] = 3.0f;
            memset(b2, 0xa5, sizeof b2);
            codec_int8_encode_ef(b2 + off, x + off, r, n);
            if (memcmp(b, b2, sizeof b) || r[n] != 3.0f) bad++;
            y[n] = 7.0f;
            k->decode(y, b + off, n);
            if (y[n] != 7.0f) bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

// |x - decode(encode(x))| <= scale / 2 + 2^-22 absmax per block (the half step, plus the
// roundings of v / scale and q * scale, each below 2^-24 of 127 * scale), on data of
// magnitudes 1e-30..1e30 with three shapes; each block's scale is absmax / 127 computed
// here from the input, its absmax element is +-127, and no q is -128.
static void test_int8_error_bound(void) {
    enum { N = 128 * 40 + 37 };
    static float x[N], y[N];
    static uint8_t enc[4 * 41 + N];
    const double mags[] = {1e-30, 1e-6, 1.0, 1e6, 1e30};
    int bad_err = 0, bad_scale = 0, bad_q = 0, bad_max = 0;
    double worst = 0.0;  // largest error / (scale / 2)
    for (size_t m = 0; m < NELEM(mags); m++) {
        for (int shape = 0; shape < 3; shape++) {
            for (int i = 0; i < N; i++) {
                double u = shape == 0 ? unif()
                         : shape == 1 ? (unif() + unif() + unif()) / 3.0
                                      : unif() * (i % 97 == 0 ? 1000.0 : 1.0);  // outliers
                x[i] = (float)(mags[m] * u);
            }
            codec_int8_encode(enc, x, N);
            codec_int8_decode(y, enc, N);
            const int8_t *q = (const int8_t *)(enc + 4 * int8_blocks(N));
            for (size_t b = 0; b < int8_blocks(N); b++) {
                size_t i0 = b * 128, i1 = i0 + 128 < N ? i0 + 128 : N, imax = i0;
                double amax = 0.0;
                for (size_t i = i0; i < i1; i++)
                    if (fabs((double)x[i]) > amax) amax = fabs((double)x[i]), imax = i;
                float s = int8_scale_at(enc, b);
                if (u_of(s) != u_of((float)amax / 127.0f)) bad_scale++;
                if (q[imax] != (x[imax] < 0 ? -127 : 127)) bad_max++;
                for (size_t i = i0; i < i1; i++) {
                    double e = fabs((double)x[i] - (double)y[i]);
                    if (e > s / 2.0 + amax * 0x1p-22) bad_err++;
                    if (e / (s / 2.0) > worst) worst = e / (s / 2.0);
                    if (q[i] == -128) bad_q++;
                }
            }
        }
    }
    printf("\n  int8: worst error %.6f half-scales over 1e-30..1e30\n  ", worst);
    CU_ASSERT_EQUAL(bad_err, 0);
    CU_ASSERT_EQUAL(bad_scale, 0);
    CU_ASSERT_EQUAL(bad_max, 0);
    CU_ASSERT_EQUAL(bad_q, 0);
    CU_ASSERT(worst > 0.9);  // the step really is absmax / 127 (a finer one would pass above)
}

// Error feedback over 1000 rounds on 4 blocks: block 0 biased values around 1, block 1 one
// element of 1 and 127 constant elements of 0.003 (below half the scale 1/127: plain
// rounding sends 0 for them every round), block 2 values around 1e-3 with a bias, and a
// short block 3 around 1e-20.
static void test_int8_error_feedback(void) {
    enum { N = 3 * 128 + 50, ROUNDS = 1000 };
    static float base[N], g[N], res[N], dec[N], plain[N], vf[N];
    static double sum_in[N], sum_dec[N], sum_plain[N], tol[N], sum_abs[N], half_max[N],
        res_max[N];
    static uint8_t wire[4 * 4 + N], wire_plain[4 * 4 + N];
    for (int i = 0; i < N; i++) {
        int b = i / 128;
        base[i] = b == 0   ? (float)(0.5 + 0.5 * unif())
                : b == 1   ? (i == 128 ? 1.0f : 0.003f)
                : b == 2   ? (float)(1e-3 * (0.3 + unif()))
                           : (float)(1e-20 * unif());
    }
    memset(res, 0, sizeof res);
    int bad_exact = 0;
    for (int r = 1; r <= ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            int b = i / 128;
            g[i] = b == 1 ? base[i] : (float)((double)base[i] * (1.0 + 0.05 * unif()));
            vf[i] = g[i] + res[i];  // what the encoder computes, in float
            tol[i] += fabs((double)vf[i] - ((double)g[i] + (double)res[i]));
        }
        codec_int8_encode_ef(wire, g, res, N);
        codec_int8_decode(dec, wire, N);
        codec_int8_encode(wire_plain, g, N);
        codec_int8_decode(plain, wire_plain, N);
        for (int i = 0; i < N; i++) {
            // the residual is exactly what was not sent
            if ((double)dec[i] + (double)res[i] != (double)vf[i]) bad_exact++;
            sum_in[i] += g[i];
            sum_abs[i] += fabs((double)g[i]);
            sum_dec[i] += dec[i];
            sum_plain[i] += plain[i];
            double h = int8_scale_at(wire, (size_t)i / 128) / 2.0;
            if (h > half_max[i]) half_max[i] = h;
            if (fabs((double)res[i]) > res_max[i]) res_max[i] = fabs((double)res[i]);
        }
    }
    int bad_sum = 0, bad_res = 0;
    double worst_ef = 0.0, worst_plain = 0.0;  // |sum decoded - sum input| / largest half-scale
    for (int i = 0; i < N; i++) {
        // sum decoded = sum in + first residual (0) - last residual, up to the roundings
        double d = fabs(sum_dec[i] - (sum_in[i] - (double)res[i]));
        if (d > tol[i] + 1e-12 * sum_abs[i]) bad_sum++;
        if (res_max[i] > half_max[i] * (1.0 + 0x1p-12)) bad_res++;
        double e = fabs(sum_dec[i] - sum_in[i]) / half_max[i];
        double p = fabs(sum_plain[i] - sum_in[i]) / half_max[i];
        if (e > worst_ef) worst_ef = e;
        if (p > worst_plain) worst_plain = p;
    }
    printf("\n  int8 ef: after %d rounds worst |sum decoded - sum input| = %.4f half-scales "
           "with feedback, %.1f without\n  ",
           ROUNDS, worst_ef, worst_plain);
    CU_ASSERT_EQUAL(bad_exact, 0);
    CU_ASSERT_EQUAL(bad_sum, 0);
    CU_ASSERT_EQUAL(bad_res, 0);       // |residual| never beyond the largest half-scale
    CU_ASSERT(worst_ef <= 1.0 + 1e-3);  // so the decoded sum stays within it too
    CU_ASSERT(worst_plain > 500.0);     // 1000 x 0.003 lost = 3.0 = 762 half-scales of 1/254
    CU_ASSERT(fabs(sum_plain[200]) == 0.0 && fabs(sum_dec[200] - 3.0) < 0.01);
}

// Chunks starting at multiples of 128, encoded one by one, give the whole vector's scales,
// values, decoded values and residuals; a chunk starting elsewhere does not.
static void test_int8_chunks(void) {
    enum { N = 128 * 37 + 55 };
    static float x[N], r0[N], dw[N], dc[N], rw[N], rc[N];
    static uint8_t ew[4 * 38 + N], ewef[4 * 38 + N], ec[4 * 38 + N];
    for (int i = 0; i < N; i++) {
        x[i] = (float)(unif() * ldexp(1.0, (i / 128) % 9 - 4));
        r0[i] = (float)(1e-3 * unif());
    }
    codec_int8_encode(ew, x, N);
    codec_int8_decode(dw, ew, N);
    memcpy(rw, r0, sizeof rw);
    codec_int8_encode_ef(ewef, x, rw, N);
    const size_t nbw = int8_blocks(N);
    static const size_t lens[] = {128, 384, 1280, 896, 256};
    int bad = 0, n_chunks = 0;
    for (int pass = 0; pass < 2; pass++) {
        memcpy(rc, r0, sizeof rc);
        memset(dc, 0xff, sizeof dc);
        for (size_t off = 0, c = 0; off < N; c++) {
            // pass 0: mixed lengths; pass 1: codec_chunk_elems for 1000 bytes (7 blocks)
            size_t per = pass == 0 ? lens[c % NELEM(lens)] : codec_chunk_elems(CODEC_INT8, 1000);
            size_t k = N - off < per ? N - off : per, nb = int8_blocks(k);
            if (pass == 1 && codec_encoded_bytes(CODEC_INT8, k) > 1000) bad++;
            codec_int8_encode(ec, x + off, k);
            if (memcmp(ec, ew + 4 * (off / 128), 4 * nb) ||  // scales
                memcmp(ec + 4 * nb, ew + 4 * nbw + off, k))  // values
                bad++;
            codec_int8_decode(dc + off, ec, k);
            codec_int8_encode_ef(ec, x + off, rc + off, k);
            if (memcmp(ec, ewef + 4 * (off / 128), 4 * nb) ||
                memcmp(ec + 4 * nb, ewef + 4 * nbw + off, k))
                bad++;
            off += k;
            n_chunks++;
        }
        if (memcmp(dc, dw, sizeof dw) || memcmp(rc, rw, sizeof rw)) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(n_chunks, 9 + 6);  // both passes really chunked
    // an unaligned start (100) groups other elements into blocks: other values
    codec_int8_encode(ec, x + 100, N - 100);
    codec_int8_decode(dc, ec, N - 100);
    CU_ASSERT(memcmp(dc, dw + 100, (N - 100) * sizeof *dc) != 0);
}

// A NaN or inf anywhere makes its whole block decode to NaN (never to a finite value), the
// scale NaN or +inf; other blocks are unaffected. With error feedback every residual stays
// finite (the block's become 0), also when in + residual overflows, and when a finite block
// near FLT_MAX decodes to inf. Decoding any bytes computes q * scale.
static void test_int8_nonfinite(void) {
    enum { N = 3 * 128 + 40 };
    static float x[N], y[N], clean[N], d[N], r[N];
    static uint8_t e[4 * 4 + N];
    for (int i = 0; i < N; i++) x[i] = (float)unif();
    codec_int8_encode(e, x, N);
    codec_int8_decode(clean, e, N);
    static const size_t pos[] = {0, 64, 127, 128, 255, 300, 384, 423};
    const float specials[] = {NAN, -NAN, INFINITY, -INFINITY};
    int bad_block = 0, bad_other = 0, bad_scale = 0, bad_check = 0, bad_res = 0;
    for (size_t p = 0; p < NELEM(pos); p++) {
        for (size_t s = 0; s < NELEM(specials); s++) {
            size_t b = pos[p] / 128, i0 = b * 128, i1 = i0 + 128 < N ? i0 + 128 : N;
            memcpy(y, x, sizeof y);
            y[pos[p]] = specials[s];
            codec_int8_encode(e, y, N);
            codec_int8_decode(d, e, N);
            for (size_t i = 0; i < N; i++) {
                if (i >= i0 && i < i1) bad_block += !isnan(d[i]);
                else bad_other += u_of(d[i]) != u_of(clean[i]);
            }
            float sc = int8_scale_at(e, b);
            bad_scale += isnan(specials[s]) ? !isnan(sc) : !(isinf(sc) && sc > 0);
            size_t at = 99999;
            bad_check += codec_check_finite(d, N, &at) != 0 || at != i0;
            // error feedback: the same bytes (residual 0), every residual finite, the
            // block's 0
            for (size_t i = 0; i < N; i++) r[i] = (float)(1e-3 * unif());
            codec_int8_encode_ef(e, y, r, N);
            codec_int8_decode(d, e, N);
            for (size_t i = 0; i < N; i++) {
                if (!isfinite(r[i])) bad_res++;
                if (i >= i0 && i < i1) bad_res += r[i] != 0.0f || !isnan(d[i]);
            }
        }
    }
    CU_ASSERT_EQUAL(bad_block, 0);
    CU_ASSERT_EQUAL(bad_other, 0);
    CU_ASSERT_EQUAL(bad_scale, 0);
    CU_ASSERT_EQUAL(bad_check, 0);
    CU_ASSERT_EQUAL(bad_res, 0);
    // in + residual overflows to inf: the block is sent as NaNs, nothing carried
    float big[3] = {3e38f, -1.0f, 2.0f}, rb[3] = {3e38f, 0.5f, 0.0f}, db[3];
    uint8_t eb[4 + 3];
    codec_int8_encode_ef(eb, big, rb, 3);
    codec_int8_decode(db, eb, 3);
    CU_ASSERT(isinf(int8_scale_at(eb, 0)));
    CU_ASSERT(isnan(db[0]) && isnan(db[1]) && isnan(db[2]));
    CU_ASSERT(rb[0] == 0.0f && rb[1] == 0.0f && rb[2] == 0.0f);
    // absmax FLT_MAX: finite, but 127 * (FLT_MAX / 127) rounds to inf (a loud failure);
    // the residual stays finite (0) there, and exact elsewhere
    float top[2] = {FLT_MAX, 1e30f}, rt[2] = {0.0f, 0.0f}, dt[2];
    uint8_t et[4 + 2];
    codec_int8_encode_ef(et, top, rt, 2);
    codec_int8_decode(dt, et, 2);
    CU_ASSERT(isinf(dt[0]) && rt[0] == 0.0f);
    CU_ASSERT(dt[1] == 0.0f && rt[1] == 1e30f);
    // decoding takes any bytes: q = -128, a negative scale, a NaN scale with q = 0
    uint8_t any[4 * 3 + 3 * 128] = {0};
    const float sc[3] = {1.0f, -2.0f, NAN};
    for (int b = 0; b < 3; b++) memcpy(any + 4 * b, &sc[b], 4);  // little-endian host
    any[12] = 0x80;        // block 0, q = -128
    any[12 + 128] = 0x03;  // block 1, q = 3
    static float da[3 * 128];
    codec_int8_decode(da, any, 3 * 128);
    CU_ASSERT(da[0] == -128.0f && da[128] == -6.0f && isnan(da[256]) && da[1] == 0.0f);
}

// ---- quick throughput loop (--speed; not a benchmark: one run, no warm-up statistics) ----

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// int8 on 16M floats (64 MiB: out of cache, the size of a real pseudo-gradient): GB/s of
// fp32 data (4 bytes per element) for encode, decode and encode with error feedback; the
// best of REPS passes.
static int speed_int8(void) {
    enum { REPS = 5 };
    const size_t N = (size_t)16 << 20;
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *r = calloc(N, sizeof *r);
    uint8_t *w = malloc(codec_encoded_bytes(CODEC_INT8, N));
    if (!x || !y || !r || !w) return 1;
    for (size_t i = 0; i < N; i++) x[i] = (float)(unif() * 1e-3);
    double best[3] = {1e30, 1e30, 1e30};
    for (int k = 0; k < REPS; k++) {
        double t = now_s();
        codec_int8_encode(w, x, N);
        double t1 = now_s();
        codec_int8_decode(y, w, N);
        double t2 = now_s();
        codec_int8_encode_ef(w, x, r, N);
        double t3 = now_s();
        if (t1 - t < best[0]) best[0] = t1 - t;
        if (t2 - t1 < best[1]) best[1] = t2 - t1;
        if (t3 - t2 < best[2]) best[2] = t3 - t2;
    }
    double gb = (double)N * sizeof(float) / 1e9;
    printf("  int8 (16M floats, best of %d) encode %.2f GB/s  decode %.2f GB/s  encode_ef %.2f "
           "GB/s (%.1f%% of the fp32 bytes on the wire)\n",
           REPS, gb / best[0], gb / best[1], gb / best[2],
           100.0 * (double)codec_encoded_bytes(CODEC_INT8, N) / (4.0 * (double)N));
    free(x);
    free(y);
    free(r);
    free(w);
    return 0;
}

static int speed(void) {
    enum { N = 1 << 20, REPS = 200 };  // 4 MiB of floats
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *r = calloc(N, sizeof *r);
    uint8_t *w = malloc(2 * (size_t)N);
    if (!x || !y || !r || !w) return 1;
    for (int i = 0; i < N; i++) x[i] = (float)((double)(rnd() % 100000) * 1e-5 - 0.5);
    codec_fp16_encode(w, x, N);  // warm
    double t = now_s();
    for (int k = 0; k < REPS; k++) codec_fp16_encode(w, x, N);
    double t_enc = now_s() - t;
    t = now_s();
    for (int k = 0; k < REPS; k++) codec_fp16_decode(y, w, N);
    double t_dec = now_s() - t;
    t = now_s();
    for (int k = 0; k < REPS; k++) codec_fp16_encode_ef(w, x, r, N);
    double t_ef = now_s() - t;
    t = now_s();
    int ok = 1;
    for (int k = 0; k < REPS; k++) ok &= codec_check_finite(y, N, NULL);
    double t_fin = now_s() - t;
    double mb = (double)N * sizeof(float) * REPS / 1e6;
    printf("codec speed (quick loop, not a benchmark; MB/s of fp32 data, one core):\n"
           "  fp16 encode %.0f  decode %.0f  encode_ef %.0f  check_finite %.0f (%d)\n",
           mb / t_enc, mb / t_dec, mb / t_ef, mb / t_fin, ok);
    free(x);
    free(y);
    free(r);
    free(w);
    return speed_int8();
}

// ---- main ----

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--speed")) return speed();
    if (argc > 1) {
        fprintf(stderr, "usage: test_codec [--speed]\n");
        return 2;
    }
    static const TuTest tests[] = {
        {"fp16 all patterns", test_fp16_all_patterns},
        {"fp32->fp16 sweep against reference", test_sweep},
        {"named cases", test_named_cases},
        {"arrays and byte order", test_arrays},
        {"error feedback", test_error_feedback},
        {"finite check and norm", test_finite_norm},
        {"int8 against the numpy/torch reference", test_int8_golden},
        {"int8 sizes and table", test_int8_sizes},
        {"int8 error bound", test_int8_error_bound},
        {"int8 error feedback", test_int8_error_feedback},
        {"int8 chunks", test_int8_chunks},
        {"int8 non-finite values", test_int8_nonfinite},
    };
    return tu_run_suite("codec", tests, sizeof tests / sizeof tests[0]);
}
