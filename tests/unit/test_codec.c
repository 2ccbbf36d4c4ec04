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
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/codec.h"
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
    CU_ASSERT_EQUAL(codec_elem_bytes(3), 0);
    // the table any averaging strategy uses: ids, names, sizes and the same functions
    const Codec *h = codec_find(CODEC_FP16), *f = codec_find(CODEC_FP32);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NULL(codec_find(0));
    CU_ASSERT_PTR_EQUAL(codec_by_name("fp16"), h);
    CU_ASSERT_PTR_EQUAL(codec_by_name("fp32"), f);
    CU_ASSERT_PTR_NULL(codec_by_name("int8"));
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

// ---- quick throughput loop (--speed; not a benchmark: one run, no warm-up statistics) ----

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    return 0;
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
    };
    return tu_run_suite("codec", tests, sizeof tests / sizeof tests[0]);
}
