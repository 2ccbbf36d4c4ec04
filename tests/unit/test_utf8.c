// test_utf8.c: strict UTF-8 decoding and encoding (io/text/utf8.h), and the HTML character
// references of io/text/entity.h with the syntax each of its two callers accepts around them.
//
// References kept in this file, independent of io/text/utf8.c:
//  - hand-written sequences with their exact code points and lengths: every sequence
//    length and its bounds, overlong 2/3/4-byte forms, surrogates, values above U+10FFFF,
//    truncated sequences, bad and lone continuation bytes;
//  - a naive UTF-8 encoder: utf8_decode must accept exactly the canonical encodings of
//    scalar values (exhaustive over 1-3 byte inputs, sampled for 4 bytes);
//  - the set of all prefixes of canonical encodings, built from that encoder:
//    utf8_invalid_len must return the longest one (the maximal subpart) of every ill-formed
//    input (exhaustive over 1-3 byte inputs, sampled for 4 bytes);
//  - entities: hand-written names, numbers and the text the news readers and the corpus
//    extractor make of them (named, decimal, hex, unknown, without ';', out of range).
#include <CUnit/Basic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/corpus/corpus.h"
#include "io/text/entity.h"
#include "io/text/entity_internal.h"
#include "io/news/news.h"
#include "io/text/utf8.h"
#include "models/common.h"
#include "models/rng.h"
#include "tests/unit/testutil.h"

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

// Uniform in [0, n), a fixed sequence.
static uint32_t rnd(uint32_t n) {
    static uint64_t counter;
    return (uint32_t)(cx_rng_u64(0x757466, counter++) % n);
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

// utf8_fsm_step against concatenations of canonical encodings (the naive encoder): every
// text of 1 to 3 bytes, and sampled 4- to 8-byte texts against utf8_check.
static int fsm_accepts(const unsigned char *b, size_t n) {
    int s = 0;
    for (size_t i = 0; i < n && s >= 0; i++) s = utf8_fsm_step(s, b[i]);
    return s == 0;
}

static void mark_wf(uint8_t *wf, const unsigned char *b, size_t k) {
    uint32_t p = 0;
    for (size_t i = 0; i < k; i++) p = p << 8 | b[i];
    wf[p >> 3] |= (uint8_t)(1u << (p & 7));
}

static void test_fsm_exhaustive(void) {
    // wf[k - 1]: the k-byte texts that are well formed, as sequences of characters
    uint8_t *wf[3];
    for (int k = 0; k < 3; k++) {
        wf[k] = calloc((size_t)1 << (8 * (k + 1) - 3), 1);
        CU_ASSERT_FATAL(wf[k] != NULL);
    }
    unsigned char b[8], c[4];
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        int len = enc(cp, b);
        if (len > 3) continue;
        mark_wf(wf[len - 1], b, (size_t)len);
        if (len == 3) continue;
        for (uint32_t cq = 0; cq < 0x800; cq++) {  // a second character, total <= 3 bytes
            int l2 = enc(cq, c);
            if (len + l2 > 3) continue;
            memcpy(b + len, c, (size_t)l2);
            mark_wf(wf[len + l2 - 1], b, (size_t)(len + l2));
            if (len + l2 == 2)
                for (uint32_t cr = 0; cr < 0x80; cr++) {  // three ASCII-range characters
                    b[2] = (unsigned char)cr;
                    mark_wf(wf[2], b, 3);
                }
        }
    }
    int bad = 0, n_wf = 0;
    for (uint32_t v = 0; v < 0x1000000; v++) {
        b[0] = (unsigned char)(v >> 16);
        b[1] = (unsigned char)(v >> 8);
        b[2] = (unsigned char)v;
        for (size_t n = 1; n <= 3; n++) {
            if (n < 3 && (v & ((1u << (8 * (3 - n))) - 1))) continue;  // each shorter one once
            uint32_t p = 0;
            for (size_t i = 0; i < n; i++) p = p << 8 | b[i];
            int ref = wf[n - 1][p >> 3] >> (p & 7) & 1;
            n_wf += ref;
            bad += fsm_accepts(b, n) != ref;
        }
    }
    // 128 + 128^2 + 1920 + 128^3 + 2 * 128 * 1920 + 61440 (U+0800..U+FFFF less surrogates)
    CU_ASSERT_EQUAL(n_wf, 128 + 16384 + 1920 + 2097152 + 491520 + 61440);
    for (int it = 0; it < 1000000; it++) {  // longer texts, mostly near-valid, sampled
        size_t n = 4 + (size_t)rnd(5), i = 0;
        while (i < n) {
            uint32_t cp = (uint32_t)rnd(it % 2 ? 0x110000 : 0x800);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'a';
            int l = enc(cp, c);
            for (int j = 0; j < l && i < n; j++) b[i++] = c[j];
        }
        if (it % 3 == 0) b[rnd((uint32_t)n)] = (unsigned char)rnd(256);
        bad += fsm_accepts(b, n) != (utf8_check((const char *)b, n) == n);
    }
    CU_ASSERT_EQUAL(bad, 0);
    for (int k = 0; k < 3; k++) free(wf[k]);
}

// ---------------------------------------------------------------- entities

static void test_entity_table(void) {
    size_t n_corpus = 0, n_news = 0;
    for (size_t i = 0; i < entity_n_defs; i++) {
        const EntityDef *e = &entity_defs[i];
        size_t len = strlen(e->name);
        if (i > 0) CU_ASSERT(strcmp(entity_defs[i - 1].name, e->name) < 0);  // sorted, unique
        CU_ASSERT(e->cp != 0 && e->cp <= 0x10FFFF);
        CU_ASSERT(e->sets != 0 && (e->sets & ~(unsigned)(ENTITY_CORPUS | ENTITY_NEWS)) == 0);
        CU_ASSERT_EQUAL(entity_lookup(e->name, len, e->sets), e->cp);
        CU_ASSERT_EQUAL(entity_lookup(e->name, len, ENTITY_CORPUS),
                        e->sets & ENTITY_CORPUS ? e->cp : 0);
        CU_ASSERT_EQUAL(entity_lookup(e->name, len, ENTITY_NEWS), e->sets & ENTITY_NEWS ? e->cp : 0);
        n_corpus += (e->sets & ENTITY_CORPUS) != 0;
        n_news += (e->sets & ENTITY_NEWS) != 0;
    }
    CU_ASSERT_EQUAL(entity_n_defs, 135);
    CU_ASSERT_EQUAL(n_corpus, 130);
    CU_ASSERT_EQUAL(n_news, 35);
}

static void test_entity_lookup(void) {
    const unsigned both = ENTITY_CORPUS | ENTITY_NEWS;
    CU_ASSERT_EQUAL(entity_lookup("mdash", 5, ENTITY_CORPUS), 0x2014);
    CU_ASSERT_EQUAL(entity_lookup("mdash", 5, ENTITY_NEWS), 0x2014);
    CU_ASSERT_EQUAL(entity_lookup("nbsp", 4, ENTITY_NEWS), 0xA0);
    CU_ASSERT_EQUAL(entity_lookup("shy", 3, ENTITY_NEWS), 0xAD);
    CU_ASSERT_EQUAL(entity_lookup("AElig", 5, ENTITY_CORPUS), 0xC6);  // first
    CU_ASSERT_EQUAL(entity_lookup("zwnj", 4, ENTITY_CORPUS), 0x200C);  // last
    CU_ASSERT_EQUAL(entity_lookup("epsilon", 7, ENTITY_CORPUS), 0x3B5);  // longest
    // in one set only
    CU_ASSERT_EQUAL(entity_lookup("eacute", 6, ENTITY_CORPUS), 0xE9);
    CU_ASSERT_EQUAL(entity_lookup("eacute", 6, ENTITY_NEWS), 0);
    CU_ASSERT_EQUAL(entity_lookup("numero", 6, ENTITY_NEWS), 0x2116);
    CU_ASSERT_EQUAL(entity_lookup("numero", 6, ENTITY_CORPUS), 0);
    CU_ASSERT_EQUAL(entity_lookup("AMP", 3, ENTITY_NEWS), 0x26);
    CU_ASSERT_EQUAL(entity_lookup("AMP", 3, ENTITY_CORPUS), 0);
    CU_ASSERT_EQUAL(entity_lookup("QUOT", 4, both), 0x22);
    CU_ASSERT_EQUAL(entity_lookup("numero", 6, 0), 0);
    // case-sensitive, whole names, not NUL-terminated
    CU_ASSERT_EQUAL(entity_lookup("Amp", 3, both), 0);
    CU_ASSERT_EQUAL(entity_lookup("MDASH", 5, both), 0);
    CU_ASSERT_EQUAL(entity_lookup("mdas", 4, both), 0);
    CU_ASSERT_EQUAL(entity_lookup("mdashes", 7, both), 0);
    CU_ASSERT_EQUAL(entity_lookup("ampersand", 3, both), 0x26);
    CU_ASSERT_EQUAL(entity_lookup("foo", 3, both), 0);
    CU_ASSERT_EQUAL(entity_lookup("", 0, both), 0);
}

// entity_read_number(s, strlen(s) or n, hex, max) returns want_digits and sets want_cp.
#define ASSERT_NUMBER(s, n, hex, max, want_digits, want_cp)                                       \
    do {                                                                                         \
        uint32_t cp_ = UNTOUCHED;                                                                \
        CU_ASSERT_EQUAL(entity_read_number((s), (n), (hex), (max), &cp_), (want_digits));        \
        CU_ASSERT_EQUAL(cp_, (want_cp));                                                         \
    } while (0)

static void test_entity_number(void) {
    ASSERT_NUMBER("1103;", 5, 0, SIZE_MAX, 4, 1103u);
    ASSERT_NUMBER("0;", 2, 0, SIZE_MAX, 1, 0u);
    ASSERT_NUMBER("000065", 6, 0, SIZE_MAX, 6, 65u);
    ASSERT_NUMBER("44F;", 4, 1, SIZE_MAX, 3, 0x44Fu);
    ASSERT_NUMBER("44f", 3, 1, SIZE_MAX, 3, 0x44Fu);
    ASSERT_NUMBER("aBcDe", 5, 1, SIZE_MAX, 5, 0xABCDEu);
    ASSERT_NUMBER("12a;", 4, 0, SIZE_MAX, 2, 12u);  // a hex digit ends a decimal number
    ASSERT_NUMBER("12g;", 4, 1, SIZE_MAX, 2, 0x12u);
    ASSERT_NUMBER(";", 1, 0, SIZE_MAX, 0, 0u);  // no digits
    ASSERT_NUMBER("x1", 2, 1, SIZE_MAX, 0, 0u);
    ASSERT_NUMBER("", 0, 0, SIZE_MAX, 0, 0u);
    ASSERT_NUMBER("123", 2, 0, SIZE_MAX, 2, 12u);  // n_bytes ends it
    ASSERT_NUMBER("1234567", 7, 0, 6, 6, 123456u);  // max_digits ends it
    ASSERT_NUMBER("10FFFF1", 7, 1, 6, 6, 0x10FFFFu);
    // above U+10FFFF: 0x110000, however far above
    ASSERT_NUMBER("1114111", 7, 0, SIZE_MAX, 7, 0x10FFFFu);
    ASSERT_NUMBER("1114112", 7, 0, SIZE_MAX, 7, 0x110000u);
    ASSERT_NUMBER("110000", 6, 1, SIZE_MAX, 6, 0x110000u);
    ASSERT_NUMBER("99999999999", 11, 0, SIZE_MAX, 11, 0x110000u);
    ASSERT_NUMBER("FFFFFFFFFFFFFFFFFFFF;", 21, 1, SIZE_MAX, 20, 0x110000u);
    ASSERT_NUMBER("99999999", 8, 0, 8, 8, 0x110000u);
}

// What the news readers make of in (news_html_to_text, tags kept as text).
static const char *news_text(const char *in) {
    static char out[256];
    size_t n = strlen(in);
    CHECK(n < sizeof out, "test input too long");
    news_html_to_text(in, n, out, 0);
    return out;
}

// What the corpus extractor makes of the HTML paragraph in: its one document, without the
// '\n' that ends the paragraph.
static const char *corpus_text(const char *in) {
    static char out[256];
    char err[CX_ERRLEN], html[256];
    snprintf(html, sizeof html, "<p>%s</p>", in);
    CorpusDocs d;
    corpus_docs_init(&d);
    CU_ASSERT_EQUAL_FATAL(corpus_extract(CORPUS_FMT_HTML, html, strlen(html), &d, err), 0);
    out[0] = '\0';
    CU_ASSERT_EQUAL(d.n_docs, 1);
    if (d.n_docs == 1 && d.len[0] < sizeof out) {
        size_t len = d.len[0];
        CU_ASSERT(len > 0 && d.text[d.off[0] + len - 1] == '\n');
        if (len > 0 && d.text[d.off[0] + len - 1] == '\n') len--;
        memcpy(out, d.text + d.off[0], len);
        out[len] = '\0';
    }
    corpus_docs_free(&d);
    return out;
}

static void test_entity_news(void) {
    CU_ASSERT_STRING_EQUAL(news_text("a&mdash;b &lt;&gt;&amp;&quot;&apos;"), "a\xe2\x80\x94" "b <>&\"'");
    CU_ASSERT_STRING_EQUAL(news_text("&numero;1 &AMP;&LT;&GT;&QUOT;"), "\xe2\x84\x96" "1 &<>\"");
    CU_ASSERT_STRING_EQUAL(news_text("a&nbsp;b&ensp;c&emsp;d&thinsp;e"), "a b c d e");
    CU_ASSERT_STRING_EQUAL(news_text("пере&shy;нос"), "перенос");
    // decimal and hex; &#128;..&#159; as Windows-1252
    CU_ASSERT_STRING_EQUAL(news_text("&#1103;&#x44F;&#X44f;&#00065;"), "\xd1\x8f\xd1\x8f\xd1\x8f" "A");
    CU_ASSERT_STRING_EQUAL(news_text("&#151;&#x97;&#128512;"), "\xe2\x80\x94\xe2\x80\x94\xf0\x9f\x98\x80");
    CU_ASSERT_STRING_EQUAL(news_text("&#9;x&#160;y"), "x y");
    // not decoded: the text stays as it is
    CU_ASSERT_STRING_EQUAL(news_text("&eacute; &unknown; &Amp;"), "&eacute; &unknown; &Amp;");
    CU_ASSERT_STRING_EQUAL(news_text("&mdash &#1103 &#x44F AT&T &; &#; &#x;"),
                           "&mdash &#1103 &#x44F AT&T &; &#; &#x;");  // no ';'
    CU_ASSERT_STRING_EQUAL(news_text("&#0; &#1; &#127; &#129; &#xD800; &#x110000;"),
                           "&#0; &#1; &#127; &#129; &#xD800; &#x110000;");
    CU_ASSERT_STRING_EQUAL(news_text("&#123456789; &#x1234567; &#x12345678;"),
                           "&#123456789; &#x1234567; &#x12345678;");  // too many digits
    CU_ASSERT_STRING_EQUAL(news_text("&abcdefghi;"), "&abcdefghi;");
}

static void test_entity_corpus(void) {
    CU_ASSERT_STRING_EQUAL(corpus_text("a&mdash;b &lt;&gt;&amp;&quot;&apos;"), "a\xe2\x80\x94" "b <>&\"'");
    CU_ASSERT_STRING_EQUAL(corpus_text("&eacute;t&eacute; &Omega;"), "\xc3\xa9t\xc3\xa9 \xce\xa9");
    CU_ASSERT_STRING_EQUAL(corpus_text("&#1103;&#x44F;&#X44f;&#00065;"), "\xd1\x8f\xd1\x8f\xd1\x8f" "A");
    // without ';': a known name and numbers still count, an unknown name is text
    CU_ASSERT_STRING_EQUAL(corpus_text("&copy 2023 &#1103 &#x44Fz AT&T"), "\xc2\xa9 2023 \xd1\x8f \xd1\x8fz AT&T");
    // unknown with ';' and invalid numbers are dropped
    CU_ASSERT_STRING_EQUAL(corpus_text("a&unknown;b &numero;c&AMP;d"), "ab cd");
    CU_ASSERT_STRING_EQUAL(corpus_text("a&#xD800;b&#x110000;c&#99999999999;d&#0;e"), "abcde");
    // not entities: '&' is text
    CU_ASSERT_STRING_EQUAL(corpus_text("a & b &; &# &#x;"), "a & b &; &# &#x;");
}

int main(void) {
    static const TuTest s_tests[] = {
        {"every sequence length and its bounds", test_lengths},
        {"overlong 2-, 3- and 4-byte forms rejected", test_overlong},
        {"surrogates rejected", test_surrogates},
        {"values above U+10FFFF rejected", test_above_max},
        {"truncated sequences", test_truncated},
        {"lone continuation bytes", test_continuation},
        {"encoding", test_encode},
        {"decoding matches a naive encoder", test_decode_exhaustive},
        {"maximal subparts of ill-formed input", test_invalid_len_exhaustive},
        {"the byte-at-a-time recogniser on every text of 1-3 bytes", test_fsm_exhaustive},
    };
    static const TuTest e_tests[] = {
        {"the table: sorted, every name found in its sets", test_entity_table},
        {"named entities", test_entity_lookup},
        {"decimal and hex digits", test_entity_number},
        {"what the news readers decode", test_entity_news},
        {"what the corpus extractor decodes", test_entity_corpus},
    };
    const TuSuite suites[] = {
        {.name = "utf8", .init = NULL, .clean = NULL, .tests = s_tests, .n_tests = TU_NELEM(s_tests)},
        {.name = "entity", .init = NULL, .clean = NULL, .tests = e_tests, .n_tests = TU_NELEM(e_tests)},
    };
    return tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
}
