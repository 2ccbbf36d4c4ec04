// test_utf8.c: strict UTF-8 decoding and encoding (io/utf8.h).
//
// References kept in this file, independent of io/utf8.c:
//  - hand-written sequences with their exact code points and lengths: every sequence
//    length and its bounds, overlong 2/3/4-byte forms, surrogates, values above U+10FFFF,
//    truncated sequences, bad and lone continuation bytes;
//  - a naive UTF-8 encoder: utf8_decode must accept exactly the canonical encodings of
//    scalar values (exhaustive over 1-3 byte inputs, sampled for 4 bytes);
//  - the set of all prefixes of canonical encodings, built from that encoder:
//    utf8_invalid_len must return the longest one (the maximal subpart) of every ill-formed
//    input (exhaustive over 1-3 byte inputs, sampled for 4 bytes).
#include <CUnit/Basic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/utf8.h"

#define UNTOUCHED 0xDEADu  // *cp before a call that must fail

// Decodes the first n bytes of s; checks the length and code point it returns.
#define ASSERT_DECODE(s, n, want_len, want_cp)                                                   \
    do {                                                                                         \
        uint32_t cp_ = UNTOUCHED;                                                                \
        CU_ASSERT_EQUAL(utf8_decode((s), (n), &cp_), (want_len));                                \
        CU_ASSERT_EQUAL(cp_, (want_cp));                                                         \
        CU_ASSERT_EQUAL(utf8_invalid_len((s), (n)), 0);                                          \
    } while (0)

// The first n bytes of s are ill-formed with a maximal subpart of want_bad bytes.
#define ASSERT_INVALID(s, n, want_bad)                                                           \
    do {                                                                                         \
        uint32_t cp_ = UNTOUCHED;                                                                \
        CU_ASSERT_EQUAL(utf8_decode((s), (n), &cp_), 0);                                         \
        CU_ASSERT_EQUAL(cp_, UNTOUCHED);                                                         \
        CU_ASSERT_EQUAL(utf8_invalid_len((s), (n)), (want_bad));                                 \
    } while (0)

static void test_lengths(void) {
    ASSERT_DECODE("\x00", 1, 1, 0x00u);
    ASSERT_DECODE("A", 1, 1, 0x41u);
    ASSERT_DECODE("\x7F", 1, 1, 0x7Fu);
    ASSERT_DECODE("Az", 2, 1, 0x41u);  // only the first character
    ASSERT_DECODE("\xC2\x80", 2, 2, 0x80u);
    ASSERT_DECODE("\xD0\xB9", 2, 2, 0x439u);  // й
    ASSERT_DECODE("\xDF\xBF", 2, 2, 0x7FFu);
    ASSERT_DECODE("\xE0\xA0\x80", 3, 3, 0x800u);
    ASSERT_DECODE("\xE2\x80\x94", 3, 3, 0x2014u);  // —
    ASSERT_DECODE("\xED\x9F\xBF", 3, 3, 0xD7FFu);  // just below the surrogates
    ASSERT_DECODE("\xEE\x80\x80", 3, 3, 0xE000u);  // just above them
    ASSERT_DECODE("\xEF\xBF\xBD", 3, 3, 0xFFFDu);
    ASSERT_DECODE("\xEF\xBF\xBF", 3, 3, 0xFFFFu);
    ASSERT_DECODE("\xF0\x90\x80\x80", 4, 4, 0x10000u);
    ASSERT_DECODE("\xF0\x9F\x98\x80", 4, 4, 0x1F600u);  // 😀
    ASSERT_DECODE("\xF3\xBF\xBF\xBF", 4, 4, 0xFFFFFu);
    ASSERT_DECODE("\xF4\x80\x80\x80", 4, 4, 0x100000u);
    ASSERT_DECODE("\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFFu);
    ASSERT_DECODE("\xF4\x8F\xBF\xBF" "A", 5, 4, 0x10FFFFu);
}

static void test_overlong(void) {
    ASSERT_INVALID("\xC0\x80", 2, 1);  // U+0000 in two bytes
    ASSERT_INVALID("\xC0\xAF", 2, 1);  // '/'
    ASSERT_INVALID("\xC1\xBF", 2, 1);  // U+007F
    ASSERT_INVALID("\xE0\x80\x80", 3, 1);
    ASSERT_INVALID("\xE0\x9F\xBF", 3, 1);  // U+07FF in three bytes
    ASSERT_INVALID("\xF0\x80\x80\x80", 4, 1);
    ASSERT_INVALID("\xF0\x8F\xBF\xBF", 4, 1);  // U+FFFF in four bytes
}

static void test_surrogates(void) {
    ASSERT_INVALID("\xED\xA0\x80", 3, 1);  // U+D800
    ASSERT_INVALID("\xED\xAD\xBF", 3, 1);  // U+DB7F
    ASSERT_INVALID("\xED\xB0\x80", 3, 1);  // U+DC00
    ASSERT_INVALID("\xED\xBF\xBF", 3, 1);  // U+DFFF
    ASSERT_INVALID("\xED\xA0\xBD\xED\xB8\x80", 6, 1);  // CESU-8 pair for U+1F600
}

static void test_above_max(void) {
    ASSERT_INVALID("\xF4\x90\x80\x80", 4, 1);  // U+110000
    ASSERT_INVALID("\xF4\xBF\xBF\xBF", 4, 1);
    ASSERT_INVALID("\xF5\x80\x80\x80", 4, 1);
    ASSERT_INVALID("\xF7\xBF\xBF\xBF", 4, 1);  // U+1FFFFF
    ASSERT_INVALID("\xF8\x88\x80\x80\x80", 5, 1);  // old 5-byte form
    ASSERT_INVALID("\xFC\x84\x80\x80\x80\x80", 6, 1);  // old 6-byte form
    ASSERT_INVALID("\xFE", 1, 1);
    ASSERT_INVALID("\xFF", 1, 1);
}

static void test_truncated(void) {
    ASSERT_INVALID("\xC3", 1, 1);
    ASSERT_INVALID("\xE2\x82", 2, 2);
    ASSERT_INVALID("\xE2", 1, 1);
    ASSERT_INVALID("\xF0\x9F\x98", 3, 3);
    ASSERT_INVALID("\xF0\x9F", 2, 2);
    ASSERT_INVALID("\xF0", 1, 1);
    // n_bytes cuts a whole sequence short: nothing past it is read
    ASSERT_INVALID("\xE2\x82\xAC", 2, 2);
    ASSERT_INVALID("\xF0\x9F\x98\x80", 3, 3);
    // a byte that is not a continuation ends the sequence early
    ASSERT_INVALID("\xC3" "A", 2, 1);
    ASSERT_INVALID("\xE2\x82" "A", 3, 2);
    ASSERT_INVALID("\xE2" "A", 2, 1);
    ASSERT_INVALID("\xF0\x9F\x98" "A", 4, 3);
    ASSERT_INVALID("\xF0\x9F\x98\xC3\xA9", 5, 3);  // a new lead byte
    ASSERT_INVALID("\xE2\x82\xE2\x82\xAC", 5, 2);
}

static void test_continuation(void) {
    ASSERT_INVALID("\x80", 1, 1);
    ASSERT_INVALID("\xBF", 1, 1);
    ASSERT_INVALID("\x80\x80\x80\x80", 4, 1);
    ASSERT_INVALID("\xA9" "A", 2, 1);  // the tail of "é" alone
}

static void test_encode(void) {
    static const struct {
        uint32_t cp;
        const char *utf8;
    } v[] = {
        {0x00, ""},  // written as one NUL byte
        {0x41, "A"},
        {0x7F, "\x7F"},
        {0x80, "\xC2\x80"},
        {0x439, "\xD0\xB9"},
        {0x7FF, "\xDF\xBF"},
        {0x800, "\xE0\xA0\x80"},
        {0xFFFF, "\xEF\xBF\xBF"},
        {0x10000, "\xF0\x90\x80\x80"},
        {0x1F600, "\xF0\x9F\x98\x80"},
        {0x10FFFF, "\xF4\x8F\xBF\xBF"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[5] = "zzzz";
        size_t want = v[i].cp == 0 ? 1 : strlen(v[i].utf8);
        CU_ASSERT_EQUAL(utf8_encode(v[i].cp, out), want);
        CU_ASSERT(memcmp(out, v[i].utf8, want) == 0);
        CU_ASSERT(want == 4 || out[want] == 'z');  // nothing written past the encoding
    }
}

// ---------------------------------------------------------------- exhaustive

static uint64_t g_rng = 88172645463325252ULL;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

// Canonical encoding of a scalar value.
static int enc(uint32_t cp, unsigned char *o) {
    if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
    if (cp < 0x800) return o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
    o[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

// Checks decode(b, n): valid exactly when a prefix of b is the canonical encoding of a
// scalar value (not a surrogate, <= U+10FFFF).
static int check_decode(const unsigned char *b, size_t n) {
    uint32_t cp = 0;
    size_t len = utf8_decode((const char *)b, n, &cp);
    if (len == 0) {
        // no scalar value may encode to a prefix of b
        // (lead byte determines the length; try that length's value range)
        size_t want = b[0] < 0x80 ? 1 : b[0] >= 0xC0 && b[0] < 0xE0 ? 2 : b[0] >= 0xE0 && b[0] < 0xF0 ? 3 : b[0] >= 0xF0 && b[0] < 0xF8 ? 4 : 0;
        if (want == 0 || want > n) return 1;
        uint32_t v = want == 1 ? b[0] : want == 2 ? b[0] & 0x1F : want == 3 ? b[0] & 0x0F : b[0] & 0x07;
        for (size_t i = 1; i < want; i++) v = (v << 6) | (b[i] & 63);
        unsigned char o[4];
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
        int k = enc(v, o);
        return !((size_t)k == want && memcmp(o, b, want) == 0);
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    unsigned char o[4];
    int k = enc(cp, o);
    return (size_t)k == len && memcmp(o, b, len) == 0;
}

static void test_decode_exhaustive(void) {
    int bad = 0;
    unsigned char b[4];
    for (uint32_t v = 0; v < 0x10000; v++) {  // all 1- and 2-byte inputs
        b[0] = (unsigned char)(v >> 8);
        b[1] = (unsigned char)v;
        bad += !check_decode(b, 2);
        bad += !check_decode(b + 1, 1);
    }
    for (uint32_t v = 0xE00000; v < 0xF00000; v++) {  // all 3-byte inputs with an E* lead
        b[0] = (unsigned char)(v >> 16);
        b[1] = (unsigned char)(v >> 8);
        b[2] = (unsigned char)v;
        bad += !check_decode(b, 3);
    }
    for (int it = 0; it < 2000000; it++) {  // 4-byte inputs, sampled
        b[0] = (unsigned char)(0xF0 + rnd(16));
        b[1] = (unsigned char)rnd(256);
        b[2] = (unsigned char)(0x80 + rnd(it % 2 ? 64 : 256));
        b[3] = (unsigned char)(0x80 + rnd(it % 3 ? 64 : 256));
        bad += !check_decode(b, 4);
    }
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {  // every scalar value round-trips
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        int k = enc(cp, b);
        uint32_t got = 0;
        bad += utf8_decode((const char *)b, (size_t)k, &got) != (size_t)k || got != cp;
        if (k > 1) bad += utf8_decode((const char *)b, (size_t)k - 1, &got) != 0;
        char out[4];
        bad += utf8_encode(cp, out) != (size_t)k || memcmp(out, b, (size_t)k) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

// Prefixes of canonical encodings: bit p of g_prefix[k - 1] is set when the k bytes whose
// big-endian value is p begin the encoding of some scalar value (k = 1..3).
static uint8_t *g_prefix[3];

static int is_prefix(const unsigned char *b, size_t k) {
    uint32_t p = 0;
    for (size_t i = 0; i < k; i++) p = p << 8 | b[i];
    return g_prefix[k - 1][p >> 3] >> (p & 7) & 1;
}

// Maximal subpart of the ill-formed b[0..n): the longest prefix of at most 3 bytes that
// begins some canonical encoding, and at least 1 byte.
static size_t invalid_len_ref(const unsigned char *b, size_t n) {
    for (size_t k = n < 3 ? n : 3; k > 1; k--)
        if (is_prefix(b, k)) return k;
    return 1;
}

static void test_invalid_len_exhaustive(void) {
    for (int k = 0; k < 3; k++) {
        g_prefix[k] = calloc((size_t)1 << (8 * (k + 1) - 3), 1);
        CU_ASSERT_FATAL(g_prefix[k] != NULL);
    }
    unsigned char b[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        int len = enc(cp, b);
        uint32_t p = 0;
        for (int k = 1; k <= len && k <= 3; k++) {
            p = p << 8 | b[k - 1];
            g_prefix[k - 1][p >> 3] |= (uint8_t)(1u << (p & 7));
        }
    }
    int bad = 0, n_invalid = 0;
    uint32_t cp;
    for (uint32_t v = 0; v < 0x1000000; v++) {  // all 1-, 2- and 3-byte inputs
        b[0] = (unsigned char)(v >> 16);
        b[1] = (unsigned char)(v >> 8);
        b[2] = (unsigned char)v;
        for (size_t n = 1; n <= 3; n++) {
            if (n < 3 && (v & ((1u << (8 * (3 - n))) - 1))) continue;  // each shorter one once
            if (utf8_decode((const char *)b, n, &cp)) {
                bad += utf8_invalid_len((const char *)b, n) != 0;
                continue;
            }
            n_invalid++;
            bad += utf8_invalid_len((const char *)b, n) != invalid_len_ref(b, n);
        }
    }
    for (int it = 0; it < 2000000; it++) {  // 4-byte inputs, sampled
        b[0] = (unsigned char)(0xF0 + rnd(16));
        b[1] = (unsigned char)(it % 4 ? 0x80 + rnd(64) : rnd(256));
        b[2] = (unsigned char)(it % 2 ? 0x80 + rnd(64) : rnd(256));
        b[3] = (unsigned char)(it % 3 ? 0x80 + rnd(64) : rnd(256));
        if (utf8_decode((const char *)b, 4, &cp)) {
            bad += utf8_invalid_len((const char *)b, 4) != 0;
            continue;
        }
        n_invalid++;
        bad += utf8_invalid_len((const char *)b, 4) != invalid_len_ref(b, 4);
    }
    CU_ASSERT(n_invalid > 9000000);  // 9.6 million: the loops above did run
    CU_ASSERT_EQUAL(bad, 0);
    for (int k = 0; k < 3; k++) free(g_prefix[k]);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("utf8", NULL, NULL);
    CU_add_test(s, "every sequence length and its bounds", test_lengths);
    CU_add_test(s, "overlong 2-, 3- and 4-byte forms rejected", test_overlong);
    CU_add_test(s, "surrogates rejected", test_surrogates);
    CU_add_test(s, "values above U+10FFFF rejected", test_above_max);
    CU_add_test(s, "truncated sequences", test_truncated);
    CU_add_test(s, "lone continuation bytes", test_continuation);
    CU_add_test(s, "encoding", test_encode);
    CU_add_test(s, "decoding matches a naive encoder", test_decode_exhaustive);
    CU_add_test(s, "maximal subparts of ill-formed input", test_invalid_len_exhaustive);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    int failed = (int)CU_get_number_of_failures() > 0 || CU_get_number_of_suites_failed() > 0;
    CU_cleanup_registry();
    return failed;
}
