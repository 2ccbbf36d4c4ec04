// test_rouge.c: ROUGE-1/2/L (io/eval/rouge.h), standard and rouge-0.3.2 ("paper") modes.
//
// References kept in this file, independent of io/eval/rouge.c:
//  - the test vectors of shared/data/news/SOURCES.md (published-score semantics), to 6
//    decimals in both modes;
//  - hand-computed expectations (clipping vs sets, the package's union-LCS docstring
//    example, sentence splitting quirks, empty inputs, case folding);
//  - a naive LCS with the full table and the package's backtrack (_recon_lcs), compared
//    with rouge_lcs_length / rouge_lcs_mark on random sequences of both orientations;
// tests/integration/test_rouge_ref.sh adds the cross-check against tests/ref/rouge_ref.py (Python) on
// random pairs through conflux-rouge, and the case-folding and whitespace tables against
// Python's str.lower()/str.isspace(); for the latter this program prints its tables:
//   test_rouge --dump-fold    "XXXX YYYY" for every code point rouge_fold_case changes
//   test_rouge --dump-space   "XXXX" for every code point rouge_is_space accepts
#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/eval/rouge.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

static RougeScorer *g_std, *g_paper;

static int suite_init(void) {
    char err[CX_ERRLEN];
    RougeOptions o = {ROUGE_STANDARD, 0};
    if (rouge_scorer_new(&g_std, &o, err) != 0) return 1;
    o.mode = ROUGE_PAPER;
    if (rouge_scorer_new(&g_paper, &o, err) != 0) return 1;
    return 0;
}

static int suite_clean(void) {
    rouge_scorer_free(g_std);
    rouge_scorer_free(g_paper);
    return 0;
}

static RougeScores score(RougeScorer *s, const char *hyp, const char *ref, RougeCounts *c) {
    char err[CX_ERRLEN] = "";
    RougeScores sc;
    memset(&sc, 0xff, sizeof sc);
    int rc = rouge_score(s, hyp, strlen(hyp), ref, strlen(ref), &sc, c, err);
    CU_ASSERT(rc == 0);
    if (rc != 0) fprintf(stderr, "rouge_score: %s\n", err);
    return sc;
}

#define NEAR(x, y, tol) CU_ASSERT(fabs((x) - (y)) <= (tol))
// to 6 decimals, as SOURCES.md quotes them
#define D6(x, y) NEAR(x, y, 5e-7)

static void assert_zero(const RougeScores *sc) {
    const RougePRF *m[3] = {&sc->r1, &sc->r2, &sc->rl};
    for (int k = 0; k < 3; k++) CU_ASSERT(m[k]->p == 0.0 && m[k]->r == 0.0 && m[k]->f == 0.0);
}

// ---------------------------------------------------------------- published vectors

static const char *const V1_REF =
    "в канаде из нефтепровода в болото вытекли около 60 тысяч литров нефти";
static const char *const V1_HYP = "около 60 тысяч литров нефти вытекли из нефтепровода в канаде";
static const char *const V2_REF = "пожар в цеху на севере москвы локализован";
static const char *const V2_HYP = "пожар на севере москвы локализован , сообщили в мчс";

static void test_vectors_paper(void) {
    RougeCounts c;
    RougeScores a = score(g_paper, V1_HYP, V1_REF, &c);
    D6(a.r1.f, 0.952381);
    D6(a.r2.f, 0.7);
    D6(a.rl.f, 0.474045);
    // sets: 10 hyp words, 11 distinct ref words ("в" twice); llcs = "около 60 тысяч литров нефти"
    CU_ASSERT(c.r1.overlap == 10 && c.r1.n_hyp == 10 && c.r1.n_ref == 11);
    CU_ASSERT(c.r2.overlap == 7 && c.r2.n_hyp == 9 && c.r2.n_ref == 11);
    CU_ASSERT(c.rl.overlap == 5 && c.rl.n_hyp == 10 && c.rl.n_ref == 11);
    RougeScores b = score(g_paper, V2_HYP, V2_REF, &c);
    D6(b.r1.f, 0.75);
    D6(b.r2.f, 0.428571);
    D6(b.rl.f, 0.606343);
    CU_ASSERT(c.rl.overlap == 5 && c.rl.n_hyp == 9 && c.rl.n_ref == 7);
    // P and R of ROUGE-L are plain ratios; F is the beta = P/R form, not F1
    NEAR(b.rl.p, 5.0 / 9.0, 1e-15);
    NEAR(b.rl.r, 5.0 / 7.0, 1e-15);
    CU_ASSERT(fabs(b.rl.f - 2 * b.rl.p * b.rl.r / (b.rl.p + b.rl.r)) > 0.01);
    // the macro average of the two
    RougeMean m = {0};
    rouge_mean_add(&m, &a);
    rouge_mean_add(&m, &b);
    RougeScores avg = rouge_mean_get(&m);
    CU_ASSERT(m.n_examples == 2);
    NEAR(avg.r1.f, (a.r1.f + b.r1.f) / 2, 1e-15);
    NEAR(avg.rl.p, (a.rl.p + b.rl.p) / 2, 1e-15);
}

static void test_vectors_standard(void) {
    RougeCounts c;
    RougeScores a = score(g_std, V1_HYP, V1_REF, &c);
    D6(a.r1.f, 0.909091);
    D6(a.r2.f, 0.7);
    D6(a.rl.f, 0.454545);
    CU_ASSERT(c.r1.overlap == 10 && c.r1.n_hyp == 10 && c.r1.n_ref == 12);
    CU_ASSERT(c.rl.overlap == 5 && c.rl.n_hyp == 10 && c.rl.n_ref == 12);
    RougeScores b = score(g_std, V2_HYP, V2_REF, &c);
    D6(b.r1.f, 0.75);
    D6(b.r2.f, 0.428571);
    D6(b.rl.f, 0.625);
    // the lone "," is a token: 9 hyp tokens
    CU_ASSERT(c.n_hyp_tokens == 9 && c.n_ref_tokens == 7);
    NEAR(b.r1.p, 6.0 / 9.0, 1e-15);
    NEAR(b.r1.r, 6.0 / 7.0, 1e-15);
    NEAR(b.rl.f, 0.625, 1e-15);
}

// Upper case, extra spaces, tabs and no-break spaces change nothing once lowercased.
static void test_vectors_case_and_spaces(void) {
    const char *hyp = "ОКОЛО 60\tТЫСЯЧ\xc2\xa0литров   Нефти вытекли из НЕФТЕПРОВОДА в Канаде ";
    const char *ref = " В Канаде из нефтепровода в болото вытекли около 60 тысяч литров нефти";
    RougeScores a = score(g_paper, hyp, ref, NULL);
    D6(a.r1.f, 0.952381);
    D6(a.r2.f, 0.7);
    D6(a.rl.f, 0.474045);
    a = score(g_std, hyp, ref, NULL);
    D6(a.r1.f, 0.909091);
    D6(a.r2.f, 0.7);
    D6(a.rl.f, 0.454545);
}

// ---------------------------------------------------------------- edge cases

static void test_identical(void) {
    const char *t = "Пожар в цеху на севере Москвы локализован, сообщили в МЧС";
    RougeScores a = score(g_std, t, t, NULL);
    CU_ASSERT(a.r1.p == 1.0 && a.r1.r == 1.0 && a.r1.f == 1.0);
    CU_ASSERT(a.r2.f == 1.0 && a.rl.f == 1.0);
    RougeScores b = score(g_paper, t, t, NULL);
    CU_ASSERT(b.r1.p == 1.0 && b.r1.r == 1.0 && b.rl.p == 1.0 && b.rl.r == 1.0);
    NEAR(b.r1.f, 1.0, 1e-7);  // 2 / (2 + 1e-8)
    NEAR(b.r2.f, 1.0, 1e-7);
    NEAR(b.rl.f, 1.0, 1e-11);
    // multi-sentence identical text
    const char *u = "Первое предложение. Второе, и третье. 60.5 тысяч";
    b = score(g_paper, u, u, NULL);
    NEAR(b.r1.f, 1.0, 1e-7);
    NEAR(b.rl.f, 1.0, 1e-11);
}

static void test_empty(void) {
    RougeCounts c;
    const char *empties[] = {"", "   ", "\t\n", "\xc2\xa0"};
    for (int i = 0; i < 4; i++) {
        RougeScores a = score(g_std, empties[i], V2_REF, &c);
        assert_zero(&a);
        CU_ASSERT(c.n_hyp_tokens == 0 && c.n_ref_tokens == 7);
        a = score(g_std, V2_HYP, empties[i], &c);
        assert_zero(&a);
        a = score(g_std, empties[i], empties[i], &c);
        assert_zero(&a);
    }
    // paper: no sentence at all ("", ".", "...") scores 0 (the package raises ValueError)
    const char *nothing[] = {"", ".", "..."};
    for (int i = 0; i < 3; i++) {
        RougeScores a = score(g_paper, nothing[i], V2_REF, &c);
        assert_zero(&a);
        CU_ASSERT(c.n_hyp_sentences == 0 && c.n_hyp_tokens == 0);
        a = score(g_paper, V2_HYP, nothing[i], &c);
        assert_zero(&a);
        a = score(g_paper, nothing[i], nothing[i], &c);
        assert_zero(&a);
    }
    // paper: a whitespace-only piece is the sentence "" whose one word is "", exactly as the
    // package does (" ".join(" ".split()) == "", "".split(" ") == [""]): two blanks match
    RougeScores a = score(g_paper, " ", "\t", &c);
    CU_ASSERT(c.n_hyp_sentences == 1 && c.n_hyp_tokens == 1 && c.r1.overlap == 1);
    NEAR(a.r1.f, 1.0, 1e-7);
    CU_ASSERT(a.r2.f == 0.0);  // one word: no bigram
    NEAR(a.rl.f, 1.0, 1e-11);
    a = score(g_paper, " ", V2_REF, &c);
    assert_zero(&a);
    // a single token: no bigram, P = R = 0 for ROUGE-2, without dividing by zero
    a = score(g_std, "пожар", "пожар", NULL);
    CU_ASSERT(a.r1.f == 1.0 && a.r2.p == 0.0 && a.r2.r == 0.0 && a.r2.f == 0.0);
    // NULL with length 0 is allowed
    char err[CX_ERRLEN];
    CU_ASSERT(rouge_score(g_std, NULL, 0, NULL, 0, &a, NULL, err) == 0);
    assert_zero(&a);
}

static void test_case_folding(void) {
    RougeScores a = score(g_std, "ПОЖАР", "пожар", NULL);
    CU_ASSERT(a.r1.f == 1.0);
    a = score(g_std, "ЁЛКА ЁЖ Ё", "ёлка ёж ё", NULL);
    CU_ASSERT(a.r1.f == 1.0 && a.r2.f == 1.0 && a.rl.f == 1.0);
    // the other capitals of U+0400..U+042F, the U+0460.. pairs, Ӏ, Latin-1, Latin Extended-A,
    // Greek
    a = score(g_std, "ЀЂЃЄЅІЇЈЉЊЋЌЍЎЏ АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ ѢѲѴҐҒҚӀӁӐԐԮ",
              "ѐђѓєѕіїјљњћќѝўџ абвгдежзийклмнопрстуфхцчшщъыьэюя ѣѳѵґғқӏӂӑԑԯ", NULL);
    CU_ASSERT(a.r1.f == 1.0);
    a = score(g_std, "ÀÉÎÕÜ ŁŒŠŽŸ ΑΘΗΝΑ ΆΈΏ Straße İ", "àéîõü łœšžÿ αθηνα άέώ straße i", NULL);
    CU_ASSERT(a.r1.f == 1.0);
    // keep_case compares as written
    char err[CX_ERRLEN];
    RougeScorer *k;
    RougeOptions o = {ROUGE_STANDARD, 1};
    CU_ASSERT_FATAL(rouge_scorer_new(&k, &o, err) == 0);
    a = score(k, "ПОЖАР в москве", "пожар в москве", NULL);
    NEAR(a.r1.f, 2.0 / 3.0, 1e-15);
    rouge_scorer_free(k);
    // spot checks of the mapping
    CU_ASSERT(rouge_fold_case(0x401) == 0x451);  // Ё
    CU_ASSERT(rouge_fold_case(0x410) == 0x430);  // А
    CU_ASSERT(rouge_fold_case(0x42F) == 0x44F);  // Я
    CU_ASSERT(rouge_fold_case(0x451) == 0x451);
    CU_ASSERT(rouge_fold_case(0x4C0) == 0x4CF);  // Ӏ palochka
    CU_ASSERT(rouge_fold_case(0x3A3) == 0x3C3);  // Σ (no final-sigma rule)
    CU_ASSERT(rouge_fold_case(0x130) == 'i');
    CU_ASSERT(rouge_fold_case(0x178) == 0xFF);
    CU_ASSERT(rouge_fold_case(0xD7) == 0xD7);    // ×
    CU_ASSERT(rouge_fold_case(0x212A) == 0x212A);  // Kelvin sign: out of the folded blocks
    CU_ASSERT(rouge_fold_case('.') == '.');
    // folding never lengthens a character (the scorer's text buffer relies on it)
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        uint32_t lo = rouge_fold_case(cp);
        int len_cp = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        int len_lo = lo < 0x80 ? 1 : lo < 0x800 ? 2 : lo < 0x10000 ? 3 : 4;
        if (len_lo > len_cp || rouge_is_space(lo) != rouge_is_space(cp) || (lo == '.') != (cp == '.')) {
            CU_FAIL("fold changes length, space or dot");
            break;
        }
    }
}

static void test_tokens_and_spaces(void) {
    RougeCounts c;
    // a lone "," is a token; "москвы," is one token; no-break/thin/ideographic spaces split
    score(g_std, "пожар , москвы,", "a", &c);
    CU_ASSERT(c.n_hyp_tokens == 3);
    score(g_std, "a\xc2\xa0" "b\xe2\x80\x89" "c\xe3\x80\x80" "d\x1c" "e\xe2\x80\xa8" "f", "a", &c);
    CU_ASSERT(c.n_hyp_tokens == 6);
    // zero-width space (U+200B) and soft hyphen are not whitespace in Python either
    score(g_std, "a\xe2\x80\x8b" "b c\xc2\xad" "d", "a", &c);
    CU_ASSERT(c.n_hyp_tokens == 2);
    // standard mode keeps dots inside tokens; paper mode splits sentences there
    score(g_std, "60.5 тысяч.", "a", &c);
    CU_ASSERT(c.n_hyp_tokens == 2 && c.n_hyp_sentences == 1);
    score(g_paper, "60.5 тысяч.", "a", &c);
    CU_ASSERT(c.n_hyp_tokens == 3 && c.n_hyp_sentences == 2);
    // "a. . b": the whitespace-only piece " " is the sentence "" (word ""); "a.. b": the
    // empty piece is dropped
    score(g_paper, "a. . b", "a", &c);
    CU_ASSERT(c.n_hyp_sentences == 3 && c.n_hyp_tokens == 3);
    score(g_paper, "a.. b", "a", &c);
    CU_ASSERT(c.n_hyp_sentences == 2 && c.n_hyp_tokens == 2);
    score(g_paper, ". a .", "a", &c);  // pieces "", " a ", "" -> one sentence
    CU_ASSERT(c.n_hyp_sentences == 1 && c.n_hyp_tokens == 1);
}

static void test_invalid_utf8(void) {
    RougeCounts c;
    RougeScores a;
    // invalid bytes are opaque characters: equal bytes match, no folding, no crash
    a = score(g_std, "\xff\xfe abc \xd0", "\xff\xfe ABC \xd0", &c);
    CU_ASSERT(a.r1.f == 1.0 && c.n_hyp_tokens == 3);
    // a lead byte followed by a space: the byte is a token, the space still splits
    score(g_std, "\xd0 x", "x", &c);
    CU_ASSERT(c.n_hyp_tokens == 2);
    // a truncated "П" (D0 9F) does not equal "П" or "п"
    a = score(g_std, "\xd0", "\xd0\x9f", NULL);
    CU_ASSERT(a.r1.f == 0.0);
    // overlong encodings of space and dot are not whitespace / sentence ends
    score(g_paper, "a\xc0\xa0" "b\xc0\xae" "c", "a", &c);
    CU_ASSERT(c.n_hyp_tokens == 1 && c.n_hyp_sentences == 1);
    // an encoded surrogate (ED A0 80) is three opaque bytes, not a letter
    score(g_std, "\xed\xa0\x80", "x", &c);
    CU_ASSERT(c.n_hyp_tokens == 1);
    // random bytes: scores in [0, 1], standard F symmetric, never an error
    uint64_t st = 12345;
    char h[64], r[64];
    for (int it = 0; it < 3000; it++) {
        size_t nh = 0, nr = 0;
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        nh = (st >> 33) % 64;
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        nr = (st >> 33) % 64;
        static const char pool[] = " .\xd0\x9f\xd0\xbf\xc2\xa0\xe2\x80\x89\xff\xc0\xed\xa0 ab\t";
        for (size_t i = 0; i < nh + nr; i++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned v = (unsigned)(st >> 40);
            char ch = (v & 1) ? pool[(v >> 1) % (sizeof pool - 1)] : (char)(v >> 8);
            if (i < nh) h[i] = ch;
            else r[i - nh] = ch;
        }
        char err[CX_ERRLEN];
        RougeScores x, y;
        for (int m = 0; m < 2; m++) {
            RougeScorer *s = m ? g_paper : g_std;
            CU_ASSERT_FATAL(rouge_score(s, h, nh, r, nr, &x, NULL, err) == 0);
            CU_ASSERT_FATAL(rouge_score(s, r, nr, h, nh, &y, NULL, err) == 0);
            const RougePRF *px[3] = {&x.r1, &x.r2, &x.rl}, *py[3] = {&y.r1, &y.r2, &y.rl};
            for (int k = 0; k < 3; k++) {
                CU_ASSERT(px[k]->p >= 0 && px[k]->p <= 1 && px[k]->r >= 0 && px[k]->r <= 1);
                CU_ASSERT(px[k]->f >= 0 && px[k]->f <= 1 + 1e-12);
                CU_ASSERT(px[k]->p == py[k]->r && px[k]->r == py[k]->p);  // P and R swap
                if (!m) CU_ASSERT(px[k]->f == py[k]->f);
            }
        }
    }
}

// ---------------------------------------------------------------- clipping vs sets

static void test_clipping_vs_sets(void) {
    RougeCounts c;
    // "a a a a" against "a": clipped 1 of 4, the set {a} matches fully
    RougeScores s = score(g_std, "a a a a", "a", &c);
    CU_ASSERT(c.r1.overlap == 1 && c.r1.n_hyp == 4 && c.r1.n_ref == 1);
    NEAR(s.r1.p, 0.25, 1e-15);
    CU_ASSERT(s.r1.r == 1.0);
    NEAR(s.r1.f, 0.4, 1e-15);
    RougeScores p = score(g_paper, "a a a a", "a", &c);
    CU_ASSERT(c.r1.overlap == 1 && c.r1.n_hyp == 1 && c.r1.n_ref == 1);
    CU_ASSERT(p.r1.p == 1.0 && p.r1.r == 1.0);
    // bigrams: "a b a b a b" has 5 bigrams, 2 distinct (ab, ba); "a b" has ab
    s = score(g_std, "a b a b a b", "a b", &c);
    CU_ASSERT(c.r2.overlap == 1 && c.r2.n_hyp == 5 && c.r2.n_ref == 1);
    NEAR(s.r2.p, 0.2, 1e-15);
    p = score(g_paper, "a b a b a b", "a b", &c);
    CU_ASSERT(c.r2.overlap == 1 && c.r2.n_hyp == 2 && c.r2.n_ref == 1);
    NEAR(p.r2.p, 0.5, 1e-15);
    NEAR(p.r2.f, 2.0 * ((0.5 * 1.0) / (0.5 + 1.0 + 1e-8)), 1e-16);
    // clipping: hyp has "в" 3 times, ref twice -> 2, plus "москве"
    score(g_std, "в в в москве", "в москве в", &c);
    CU_ASSERT(c.r1.overlap == 3 && c.r1.n_hyp == 4 && c.r1.n_ref == 3);
    CU_ASSERT(c.r2.overlap == 1);  // "в москве" (hyp: в в, в в, в москве; ref: в москве, москве в)
    CU_ASSERT(c.rl.overlap == 2);
    // paper ROUGE-L: m, n are distinct words, and the package's backtrack reconstructs
    // "в в" here (not "в москве"), so the LCS word set is {в}: llcs = 1
    score(g_paper, "в в в москве", "в москве в", &c);
    CU_ASSERT(c.rl.n_hyp == 2 && c.rl.n_ref == 2 && c.rl.overlap == 1);
}

// ---------------------------------------------------------------- multi-sentence paper mode

static double f_beta(double llcs, double n, double m) {
    double r = llcs / m, p = llcs / n, b = p / (r + 1e-12);
    return (1 + b * b) * r * p / ((r + b * b * p) + 1e-12);
}

static void test_paper_multi_sentence(void) {
    RougeCounts c;
    // the package's _union_lcs docstring: r = w1 w2 w3 w4 w5, c1 = w1 w2 w6 w7 w8,
    // c2 = w1 w3 w8 w9 w5: union LCS {w1 w2 w3 w5} = 4 words
    RougeScores a = score(g_paper, "w1 w2 w6 w7 w8. w1 w3 w8 w9 w5", "w1 w2 w3 w4 w5", &c);
    CU_ASSERT(c.n_hyp_sentences == 2 && c.n_ref_sentences == 1);
    CU_ASSERT(c.rl.overlap == 4 && c.rl.n_hyp == 8 && c.rl.n_ref == 5);
    NEAR(a.rl.p, 0.5, 1e-15);
    NEAR(a.rl.r, 0.8, 1e-15);
    NEAR(a.rl.f, f_beta(4, 8, 5), 1e-15);
    // bigrams run across the sentence end: "w8 w1" is a hypothesis bigram
    CU_ASSERT(c.r2.n_hyp == 9);
    a = score(g_paper, "a. b", "a b", &c);
    CU_ASSERT(c.r2.overlap == 1 && c.r2.n_hyp == 1);
    NEAR(a.r2.f, 1.0, 1e-7);
    // ROUGE-L does not cross sentences: "a b" vs "a. b" still unions {a, b}
    CU_ASSERT(c.rl.overlap == 2);
    // the union over several reference sentences: words counted once
    score(g_paper, "x y z", "x y. y z. z x", &c);
    CU_ASSERT(c.rl.overlap == 3 && c.rl.n_ref == 3 && c.n_ref_sentences == 3);
    // the backtrack picks one LCS; words of the other do not count: ref "a b", hyp "b a":
    // at (2, 2) T[1][2] = T[2][1] = 1, the tie steps back in the hypothesis, and the LCS is
    // "b" (ref word 2 = hyp word 1)
    score(g_paper, "b a", "a b", &c);
    CU_ASSERT(c.rl.overlap == 1);
    char err[CX_ERRLEN];
    int32_t ref_ab[] = {0, 1}, hyp_ba[] = {1, 0};
    uint8_t mk[2] = {0, 0};
    CU_ASSERT(rouge_lcs_mark(g_paper, ref_ab, 2, hyp_ba, 2, mk, err) == 1);
    CU_ASSERT(mk[0] == 0 && mk[1] == 1);
}

// ---------------------------------------------------------------- LCS kernels

// The package's _lcs + _recon_lcs with the full table (x = reference, y = hypothesis).
static int naive_lcs_mark(const int32_t *x, int nx, const int32_t *y, int ny, uint8_t *mark) {
    int32_t *t = calloc((size_t)(nx + 1) * (ny + 1), sizeof *t);
    CU_ASSERT_FATAL(t != NULL);
#define T(i, j) t[(size_t)(i) * (ny + 1) + (j)]
    for (int i = 1; i <= nx; i++)
        for (int j = 1; j <= ny; j++)
            T(i, j) = x[i - 1] == y[j - 1] ? T(i - 1, j - 1) + 1
                                           : (T(i - 1, j) > T(i, j - 1) ? T(i - 1, j) : T(i, j - 1));
    int len = T(nx, ny);
    int i = nx, j = ny;
    while (i > 0 && j > 0) {
        if (x[i - 1] == y[j - 1]) {
            mark[x[i - 1]] = 1;
            i--;
            j--;
        } else if (T(i - 1, j) > T(i, j - 1)) {
            i--;
        } else {
            j--;
        }
    }
#undef T
    free(t);
    return len;
}

static uint64_t g_rng = 88172645463325252ULL;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

static void test_lcs_matches_naive(void) {
    char err[CX_ERRLEN];
    enum { MAXN = 300, V = 40 };
    int32_t *x = malloc(MAXN * sizeof *x), *y = malloc(MAXN * sizeof *y);
    uint8_t m1[V], m2[V];
    int bad = 0;
    for (int it = 0; it < 1500; it++) {
        int big = it % 10 == 0;
        int nx = (int)rnd(big ? MAXN : 25), ny = (int)rnd(big ? MAXN : 25);
        int v = 1 + (int)rnd(it % 3 == 0 ? 3 : V);  // small alphabets: many ties
        for (int i = 0; i < nx; i++) x[i] = (int32_t)rnd((uint32_t)v);
        for (int i = 0; i < ny; i++) y[i] = (int32_t)rnd((uint32_t)v);
        memset(m1, 0, V);
        memset(m2, 0, V);
        int l1 = naive_lcs_mark(x, nx, y, ny, m1);
        int64_t l2 = rouge_lcs_mark(g_paper, x, nx, y, ny, m2, err);
        int64_t l3 = rouge_lcs_length(g_std, x, nx, y, ny, err);
        int64_t l4 = rouge_lcs_length(g_std, y, ny, x, nx, err);
        if (l1 != l2 || l1 != l3 || l1 != l4 || memcmp(m1, m2, V) != 0) bad++;
    }
    CU_ASSERT(bad == 0);
    // marks already set stay set
    int32_t a[] = {1, 2}, b[] = {3};
    uint8_t m[4] = {0, 0, 0, 1};
    CU_ASSERT(rouge_lcs_mark(g_paper, a, 2, b, 1, m, err) == 0 && m[3] == 1);
    CU_ASSERT(rouge_lcs_length(g_std, a, -1, b, 1, err) == -1 && strstr(err, "negative"));
    free(x);
    free(y);
}

// ---------------------------------------------------------------- long inputs

// n tokens "w<i % vocab>" separated by sep into buf (big enough).
static size_t make_text(char *buf, int n, int vocab, int reverse, const char *sep) {
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        int w = reverse ? n - 1 - i : i;
        pos += (size_t)sprintf(buf + pos, "%sw%d", i ? sep : "", w % vocab);
    }
    return pos;
}

static void test_long_inputs(void) {
    enum { N = 10000 };
    char err[CX_ERRLEN];
    char *h = malloc((size_t)N * 12), *r = malloc((size_t)N * 12);
    CU_ASSERT_FATAL(h && r);
    RougeScores sc;
    RougeCounts c;
    clock_t t0 = clock();
    // standard: identical long texts, then reversed order (LCS 1)
    size_t nh = make_text(h, N, N, 0, " "), nr = make_text(r, N, N, 1, " ");
    CU_ASSERT_FATAL(rouge_score(g_std, h, nh, h, nh, &sc, &c, err) == 0);
    CU_ASSERT(c.rl.overlap == N && sc.rl.f == 1.0);
    CU_ASSERT_FATAL(rouge_score(g_std, h, nh, r, nr, &sc, &c, err) == 0);
    CU_ASSERT(c.rl.overlap == 1 && c.r1.overlap == N && c.r2.overlap == 0);
    // every other token dropped: LCS = N / 2
    size_t pos = 0;
    for (int i = 0; i < N; i += 2) pos += (size_t)sprintf(r + pos, "%sw%d", i ? " " : "", i);
    CU_ASSERT_FATAL(rouge_score(g_std, r, pos, h, nh, &sc, &c, err) == 0);
    CU_ASSERT(c.rl.overlap == N / 2);
    // the standard LCS holds one row: the buffers stay O(N), far below an N x N table
    CU_ASSERT(rouge_scorer_bytes(g_std) < (size_t)64 * N * 16);
    // paper: one sentence of N words each side, repeated vocabulary (many ties):
    // checkpointed reconstruction must agree with the naive one on the words it marks
    nh = make_text(h, N, 50, 0, " ");
    nr = make_text(r, N / 2, 37, 1, " ");
    CU_ASSERT_FATAL(rouge_score(g_paper, h, nh, r, nr, &sc, &c, err) == 0);
    CU_ASSERT(c.n_hyp_sentences == 1 && c.rl.n_hyp == 50 && c.rl.n_ref == 37);
    CU_ASSERT(c.rl.overlap >= 1 && c.rl.overlap <= 37);
    // full table would be N * N / 2 int32 = 200 MB; checkpoints are O(sqrt(N) * N / 2)
    CU_ASSERT(rouge_scorer_bytes(g_paper) < (size_t)16 << 20);
    // long multi-sentence text: N words in sentences of 10
    nh = make_text(h, N, 300, 0, " ");
    for (size_t i = 0, k = 0; i < nh; i++)
        if (h[i] == ' ' && ++k % 10 == 0) h[i] = '.';
    CU_ASSERT_FATAL(rouge_score(g_paper, h, nh, h, nh, &sc, &c, err) == 0);
    CU_ASSERT(c.n_hyp_sentences == N / 10 && c.rl.overlap == 300);
    NEAR(sc.rl.f, 1.0, 1e-11);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("\n  long inputs: %.2f s CPU, scorer buffers %zu + %zu bytes\n", secs,
           rouge_scorer_bytes(g_std), rouge_scorer_bytes(g_paper));
    free(h);
    free(r);
}

// A scorer that has seen a long pair gives the same scores on short pairs as a new one.
static void test_reuse(void) {
    char err[CX_ERRLEN];
    RougeScorer *fresh;
    RougeOptions o = {ROUGE_PAPER, 0};
    CU_ASSERT_FATAL(rouge_scorer_new(&fresh, &o, err) == 0);
    RougeScores a, b;
    RougeCounts ca, cb;
    CU_ASSERT(rouge_score(fresh, V1_HYP, strlen(V1_HYP), V1_REF, strlen(V1_REF), &a, &ca, err) == 0);
    CU_ASSERT(rouge_score(g_paper, V1_HYP, strlen(V1_HYP), V1_REF, strlen(V1_REF), &b, &cb, err) == 0);
    CU_ASSERT(memcmp(&a, &b, sizeof a) == 0 && memcmp(&ca, &cb, sizeof ca) == 0);
    rouge_scorer_free(fresh);
    rouge_scorer_free(NULL);
}

// ---------------------------------------------------------------- API and errors

static void test_api_errors(void) {
    char err[CX_ERRLEN] = "";
    RougeScorer *s = (RougeScorer *)1;
    RougeOptions o = {(RougeMode)7, 0};
    CU_ASSERT(rouge_scorer_new(&s, &o, err) == -1 && s == NULL && strstr(err, "mode"));
    CU_ASSERT(rouge_scorer_new(&s, NULL, err) == 0 && s != NULL);  // NULL: standard
    RougeScores sc, before;
    memset(&before, 0x5a, sizeof before);
    sc = before;
    // texts over the limit are refused before they are read
    CU_ASSERT(rouge_score(s, "x", ROUGE_MAX_TEXT_BYTES + 1, "x", 1, &sc, NULL, err) == -1);
    CU_ASSERT(strstr(err, "hypothesis") != NULL && memcmp(&sc, &before, sizeof sc) == 0);
    CU_ASSERT(rouge_score(s, "x", 1, "x", ROUGE_MAX_TEXT_BYTES + 1, &sc, NULL, err) == -1);
    CU_ASSERT(strstr(err, "reference") != NULL);
    rouge_scorer_free(s);
    RougeMode m = ROUGE_STANDARD;
    CU_ASSERT(rouge_mode_parse("paper", &m) == 0 && m == ROUGE_PAPER);
    CU_ASSERT(rouge_mode_parse("standard", &m) == 0 && m == ROUGE_STANDARD);
    CU_ASSERT(rouge_mode_parse("Paper", &m) == -1 && m == ROUGE_STANDARD);
    CU_ASSERT(strcmp(rouge_mode_name(ROUGE_PAPER), "paper") == 0);
    CU_ASSERT(rouge_mode_name((RougeMode)9) == NULL);
    RougeMean mean = {0};
    RougeScores z = rouge_mean_get(&mean);
    assert_zero(&z);
}

// ---------------------------------------------------------------- paired bootstrap
// Cases whose outcome is known without the implementation: a constant difference, no
// difference, two examples (+1, -1: a resample is ahead exactly when both draws take the
// first, p = 1/4, and tied when they differ, p = 1/2), and n differences of known spread
// (the interval of a mean is mean +- 1.96 sd / sqrt(n) by the central limit theorem).
// tests/integration/test_rouge_ref.sh checks every figure against tests/ref/rouge_ref.py.

static void test_bootstrap_known(void) {
    char err[CX_ERRLEN] = "";
    RougeBootstrap b[3];
    // constant difference: every resample has the same mean
    double d[3 * 50];
    for (int i = 0; i < 50; i++) d[3 * i] = 0.25, d[3 * i + 1] = -0.125, d[3 * i + 2] = 0;
    CU_ASSERT_FATAL(rouge_paired_bootstrap(d, 50, 3, 200, 7, b, err) == 0);
    NEAR(b[0].diff, 0.25, 1e-12);
    NEAR(b[0].lo, 0.25, 1e-12);
    NEAR(b[0].hi, 0.25, 1e-12);
    CU_ASSERT(b[0].ahead == 1.0 && b[0].tied == 0.0);
    NEAR(b[1].lo, -0.125, 1e-12);
    CU_ASSERT(b[1].ahead == 0.0 && b[1].tied == 0.0);
    CU_ASSERT(b[2].diff == 0.0 && b[2].lo == 0.0 && b[2].hi == 0.0);
    CU_ASSERT(b[2].ahead == 0.0 && b[2].tied == 1.0);
    // two examples, +1 and -1: ahead 1/4, tied 1/2 (binomial sd of a share over 100,000
    // resamples: 0.0014 and 0.0016; the draws are fixed by the seed)
    double pm[2] = {1.0, -1.0};
    CU_ASSERT_FATAL(rouge_paired_bootstrap(pm, 2, 1, 100000, 1, b, err) == 0);
    NEAR(b[0].ahead, 0.25, 0.006);
    NEAR(b[0].tied, 0.5, 0.007);
    CU_ASSERT(b[0].diff == 0.0 && b[0].lo == -1.0 && b[0].hi == 1.0);
    // 400 differences with mean 0.01 and sd 0.1 (a fixed +-0.1 pattern): interval
    // 0.01 +- 1.96 * 0.1 / 20 = [0.0002, 0.0198], to 10% of its half-width
    double *v = cx_calloc(400, sizeof *v);
    for (int i = 0; i < 400; i++) v[i] = 0.01 + ((i * 7919) % 2 ? 0.1 : -0.1);
    CU_ASSERT_FATAL(rouge_paired_bootstrap(v, 400, 1, 4000, 3, b, err) == 0);
    NEAR(b[0].diff, 0.01, 1e-12);
    NEAR(b[0].lo, 0.01 - 0.0098, 0.001);
    NEAR(b[0].hi, 0.01 + 0.0098, 0.001);
    // P(mean > 0) = P(Z > -0.01 / 0.005) = P(Z > -2) = 0.977
    NEAR(b[0].ahead, 0.977, 0.01);
    // the same seed draws the same resamples; another seed others
    RougeBootstrap b2, b3;
    CU_ASSERT(rouge_paired_bootstrap(v, 400, 1, 4000, 3, &b2, err) == 0);
    CU_ASSERT(memcmp(&b[0], &b2, sizeof b2) == 0);
    CU_ASSERT(rouge_paired_bootstrap(v, 400, 1, 4000, 4, &b3, err) == 0);
    CU_ASSERT(b3.lo != b2.lo || b3.hi != b2.hi);
    free(v);
}

static void test_bootstrap_errors(void) {
    char err[CX_ERRLEN] = "";
    double d[2] = {0.5, 0.25};
    RougeBootstrap b, before;
    memset(&before, 0x5a, sizeof before);
    b = before;
    CU_ASSERT(rouge_paired_bootstrap(d, 0, 1, 10, 1, &b, err) == -1 && strstr(err, "no examples"));
    CU_ASSERT(rouge_paired_bootstrap(d, 2, 0, 10, 1, &b, err) == -1 && strstr(err, "no scores"));
    CU_ASSERT(rouge_paired_bootstrap(d, (int64_t)UINT32_MAX + 1, 1, 10, 1, &b, err) == -1 &&
              strstr(err, "at most 4294967295"));
    CU_ASSERT(rouge_paired_bootstrap(d, 2, 1, 0, 1, &b, err) == -1 && strstr(err, "(got 0)"));
    CU_ASSERT(rouge_paired_bootstrap(d, 2, 1, ROUGE_MAX_RESAMPLES + 1, 1, &b, err) == -1 &&
              strstr(err, "1 to 1000000"));
    CU_ASSERT(memcmp(&b, &before, sizeof b) == 0);
    // one resample: both ends of the interval are its mean
    CU_ASSERT(rouge_paired_bootstrap(d, 2, 1, 1, 1, &b, err) == 0 && b.lo == b.hi);
}

// Minimum Bayes risk choice, expected utilities worked out by hand (standard mode, F):
//  * a fixed candidate ("a b e") against the samples "a b" and "c d": E = (0.8 + 0) / 2; each
//    sample is scored against the other sample only (0): the fixed one wins. Counting a
//    sample against itself would give "a b" (1 + 0) / 2 = 0.5 and change the choice.
//  * "a b c", "a b d", "c b a", "c b a", all samples: ROUGE-1 ties three at 8/9 (the lowest
//    index wins), ROUGE-2 prefers "c b a" (1/3: its copy shares both bigrams); a prior on
//    "a b d" lifts it over the tie when it is larger than the gap (8/9 - 2/3).
static void test_mbr(void) {
    char err[CX_ERRLEN] = "";
    const double r1[3] = {1, 0, 0}, r2[3] = {0, 1, 0};
    double e[4];
    const char *a[] = {"a b e", "a b", "c d"};
    const size_t an[] = {5, 3, 3};
    CU_ASSERT_EQUAL(rouge_mbr_pick(g_std, a, an, 3, 1, r1, NULL, e, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(e[0], 0.4, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[1], 0.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[2], 0.0, 1e-12);
    const char *b[] = {"a b c", "a b d", "c b a", "c b a"};
    const size_t bn[] = {5, 5, 5, 5};
    CU_ASSERT_EQUAL(rouge_mbr_pick(g_std, b, bn, 4, 0, r1, NULL, e, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(e[0], 8.0 / 9, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[1], 2.0 / 3, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[2], 8.0 / 9, 1e-12);
    CU_ASSERT_EQUAL(rouge_mbr_pick(g_std, b, bn, 4, 0, r2, NULL, e, err), 2);
    CU_ASSERT_DOUBLE_EQUAL(e[0], 1.0 / 6, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[1], 1.0 / 6, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[2], 1.0 / 3, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[3], 1.0 / 3, 1e-12);
    // a prior adds to the expected utility: "a b d" (ROUGE-1 2/3) passes the 8/9 of "a b c"
    // with 0.25 more (0.9167), not with 0.2 (0.8667)
    const double up[4] = {0, 0.25, 0, 0}, low[4] = {0, 0.2, 0, 0};
    CU_ASSERT_EQUAL(rouge_mbr_pick(g_std, b, bn, 4, 0, r1, up, e, err), 1);
    CU_ASSERT_DOUBLE_EQUAL(e[1], 2.0 / 3 + 0.25, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e[0], 8.0 / 9, 1e-12);
    CU_ASSERT_EQUAL(rouge_mbr_pick(g_std, b, bn, 4, 0, r1, low, e, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(e[1], 2.0 / 3 + 0.2, 1e-12);
    // one reference: it has no other to be scored against (0); without expected[]
    CU_ASSERT_EQUAL(rouge_mbr_pick(g_std, a, an, 2, 1, r1, NULL, NULL, err), 0);
    CU_ASSERT(rouge_mbr_pick(g_std, a, an, 0, 0, r1, NULL, e, err) == -1 && strstr(err, "0 texts"));
    CU_ASSERT(rouge_mbr_pick(g_std, a, an, 3, 3, r1, NULL, e, err) == -1 && strstr(err, "3 fixed"));
}

static int dump_tables(const char *what) {
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (strcmp(what, "--dump-fold") == 0) {
            uint32_t lo = rouge_fold_case(cp);
            if (lo != cp) printf("%04X %04X\n", (unsigned)cp, (unsigned)lo);
        } else if (rouge_is_space(cp)) {
            printf("%04X\n", (unsigned)cp);
        }
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "--dump-fold") == 0 || strcmp(argv[1], "--dump-space") == 0))
        return dump_tables(argv[1]);
    static const TuTest s_tests[] = {
        {"SOURCES.md vectors, paper mode", test_vectors_paper},
        {"SOURCES.md vectors, standard mode", test_vectors_standard},
        {"vectors with case and spacing changes", test_vectors_case_and_spaces},
        {"identical texts score 1", test_identical},
        {"empty hypothesis/reference", test_empty},
        {"Cyrillic/Latin/Greek case folding", test_case_folding},
        {"tokens, whitespace set, sentence splitting", test_tokens_and_spaces},
        {"invalid UTF-8 and random bytes", test_invalid_utf8},
        {"clipped counts vs n-gram sets", test_clipping_vs_sets},
        {"paper mode: multi-sentence union LCS", test_paper_multi_sentence},
        {"LCS kernels match the naive backtrack", test_lcs_matches_naive},
        {"long inputs: bounded memory", test_long_inputs},
        {"scorer reuse", test_reuse},
        {"API errors", test_api_errors},
        {"paired bootstrap: known outcomes", test_bootstrap_known},
        {"paired bootstrap: errors", test_bootstrap_errors},
        {"minimum Bayes risk: worked examples", test_mbr},
    };
    const TuSuite suites[] = {
        {.name = "rouge", .init = suite_init, .clean = suite_clean, .tests = s_tests, .n_tests = TU_NELEM(s_tests)},
    };
    return tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
}
