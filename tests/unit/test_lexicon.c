// test_lexicon.c: io/headline/lexicon.h, the rule of known words for decoding headlines:
// the lexicon's words (case folding, separators, an article's words for one article only),
// and the beam mask against a naive reference that splits each candidate text into words
// and checks them against a word list, for every token of a small byte-level BPE.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/eval/rouge.h"
#include "io/headline/lexicon.h"
#include "io/text/utf8.h"
#include "io/tokenizer/bpe.h"
#include "models/common.h"

enum { ED_EOS_TOKEN = BPE_SEP };  // the end token of the headline decoder

static const char CORPUS[] =
    "Москва приняла решение о выборах в Латвии.\n"
    "В Москве открылся форум, и Латвия ответила на заявление.\n"
    "Решение суда о выборах вызвало критику в России и Латвии.\n"
    "Сборная России по гандболу выиграла матч в Москве.\n"
    "Эль-Фаллудже и Ракке: 2017 год, RT France.\n";

static void test_words(void) {
    Lexicon *l = lexicon_new();
    lexicon_add_text(l, CORPUS, strlen(CORPUS));
    const char *yes[] = {"москва", "МОСКВА", "Латвии", "в", "эль", "фаллудже", "rt", "France", "год"};
    const char *no[] = {"моск", "москвах", "2017", "эль-фаллудже", "", "ракк", "франция"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        CU_ASSERT(lexicon_has_word(l, yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        CU_ASSERT(!lexicon_has_word(l, no[i], strlen(no[i])));
    // the 30 distinct words: москва приняла решение о выборах в латвии москве открылся форум
    // и латвия ответила на заявление суда вызвало критику россии сборная по гандболу выиграла
    // матч эль фаллудже ракке год rt france
    CU_ASSERT_EQUAL(lexicon_n_words(l), 30);
    lexicon_free(l);
}

// ---- the mask against a naive reference

static Bpe *g_bpe;
static char g_dir[64];

static int suite_init(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/test_lexicon.XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    char path[128];
    snprintf(path, sizeof path, "%s/corpus.txt", g_dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    for (int i = 0; i < 20; i++) fputs(CORPUS, f);
    fputs("Шрамеку Оливье обратилась группа деятелей.\n", f);  // tokens for the article's words
    fclose(f);
    const char *paths[] = {path};
    char err[CX_ERRLEN];
    if (bpe_train(&g_bpe, paths, 1, 420, 0, err) != 0) return 1;
    unlink(path);
    rmdir(g_dir);
    return 0;
}

static int suite_clean(void) {
    bpe_free(g_bpe);
    return 0;
}

// The reference's word list: case-folded words, one per entry.
typedef struct {
    char w[64][64];
    int n;
} Words;

static void fold_word(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t k = utf8_decode(s + i, n - i, &cp);
        o += utf8_encode(rouge_fold_case(cp), out + o);
        i += k;
    }
    out[o] = 0;
}

static int in_list(const Words *ws, const char *w, int prefix) {
    for (int i = 0; i < ws->n; i++)
        if (prefix ? strncmp(ws->w[i], w, strlen(w)) == 0 : strcmp(ws->w[i], w) == 0) return 1;
    return 0;
}

// Whether b[0, n) is a proper prefix of a well-formed UTF-8 character (Unicode table 3-7).
static int pending_char(const unsigned char *b, size_t n) {
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (b[0] >= 0xC2 && b[0] <= 0xDF) need = 2;
    else if (b[0] >= 0xE0 && b[0] <= 0xEF) need = 3;
    else if (b[0] >= 0xF0 && b[0] <= 0xF4) need = 4;
    else return 0;
    if (b[0] == 0xE0) lo = 0xA0;
    if (b[0] == 0xED) hi = 0x9F;
    if (b[0] == 0xF0) lo = 0x90;
    if (b[0] == 0xF4) hi = 0x8F;
    if (n >= need) return 0;
    for (size_t j = 1; j < n; j++)
        if (b[j] < (j == 1 ? lo : 0x80) || b[j] > (j == 1 ? hi : 0xBF)) return 0;
    return 1;
}

// Whether text (n bytes) keeps the rule: each word ended by a separator is in ws, the word at
// the end is a prefix of one (a whole one when at_end), no word of >= rep letters twice; an
// incomplete character at the end waits.
static int ref_ok(const Words *ws, const char *text, size_t n, int at_end, int rep) {
    char seen[32][64], w[256];
    int n_seen = 0, letters = 0;
    size_t i = 0, start = 0;
    for (;;) {
        uint32_t cp = 0;
        size_t k = i < n ? utf8_decode(text + i, n - i, &cp) : 0;
        if (k == 0 && i < n) {
            // the start of a character still to come waits; other ill-formed bytes separate
            // words
            if (pending_char((const unsigned char *)text + i, n - i)) k = 0;
            else k = utf8_invalid_len(text + i, n - i);
        }
        if (k > 0 && lexicon_is_letter(cp)) {
            if (letters++ == 0) start = i;
            i += k;
            continue;
        }
        const int sep = k > 0;  // else: the end, or an incomplete character there
        if (letters > 0) {
            fold_word(text + start, i - start, w);
            if (sep || at_end) {
                if (!in_list(ws, w, 0)) return 0;
                if (rep && letters >= rep) {
                    for (int j = 0; j < n_seen; j++)
                        if (!strcmp(seen[j], w)) return 0;
                    snprintf(seen[n_seen++], sizeof seen[0], "%s", w);
                }
            } else if (!in_list(ws, w, 1)) {
                return 0;
            }
        }
        letters = 0;
        if (!sep) return 1;
        i += k;
    }
}

// rep: no_repeat_min. article: 1, the corpus is the lexicon and an article's words are
// added; 0, the corpus's words alone (no article set); -1, an empty lexicon and the corpus
// given as the article (what the rule knows comes from the article alone).
static void mask_vs_reference(int rep, int article) {
    Lexicon *l = lexicon_new();
    if (article >= 0) lexicon_add_text(l, CORPUS, strlen(CORPUS));
    const int V = bpe_vocab_size(g_bpe);
    LexRule *r = lex_rule_create(l, g_bpe, V, rep);
    // an earlier article's words are forgotten; this one's are known
    if (article < 0) lex_rule_set_article(r, CORPUS, strlen(CORPUS));
    if (article > 0) {
        const char *old = "Маршалловы острова";
        lex_rule_set_article(r, old, strlen(old));
        const char *text = "Группа деятелей обратилась к Оливье Шрамеку.";
        lex_rule_set_article(r, text, strlen(text));
    }
    const char *all = "москва приняла решение о выборах в латвии москве открылся форум и латвия "
                      "ответила на заявление суда вызвало критику россии сборная по гандболу "
                      "выиграла матч эль фаллудже ракке год rt france группа деятелей обратилась "
                      "к оливье шрамеку";
    Words ws = {.n = 0};
    // without an article the list ends at "france"
    for (const char *p = all; *p && (article > 0 || ws.n == 0 || strcmp(ws.w[ws.n - 1], "france"));) {
        const char *e = strchr(p, ' ');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        memcpy(ws.w[ws.n], p, k);
        ws.w[ws.n++][k] = 0;
        p += k + (e != NULL);
    }
    // prefixes of headlines as hypotheses (the article's words included, a repeat, a
    // cut-off word, a word the lexicon does not know)
    const char *hyps[] = {"", "В Москве", "Москва при", "Решение суда о", "Латвия ответила Шрамеку",
                          "Оливье Шрамеку и группа", "Эль-Фаллудже", "RT France и", "2017 год: ",
                          "Москва, Москва", "Сборная России по гандбол", "Маршалловы",
                          // more words of 4+ letters than the rule's first list holds
                          "Москва приняла решение: выборах Латвии, Москве открылся форум, Латвия "
                          "ответила, заявление суда вызвало критику России; сборная гандболу "
                          "выиграла матч группа деятелей обратилась Оливье Шрамеку"};
    int32_t ids[256];
    char text[2048];
    double lp[1024];
    CU_ASSERT_FATAL(V < 1024);
    long n_checked = 0, n_forbidden = 0, n_mismatch = 0;
    // the byte token D0, the first half of most Cyrillic letters
    int32_t d0 = -1;
    for (int v = 0; v < V && d0 < 0; v++)
        if (bpe_decode(g_bpe, &(int32_t){v}, 1, text, sizeof text) == 1 && (unsigned char)text[0] == 0xD0)
            d0 = v;
    CU_ASSERT_FATAL(d0 >= 0);
    const size_t n_hyps = sizeof hyps / sizeof *hyps;
    // twice: the second pass finds the rule's verdicts of the first in its memo
    for (size_t hh = 0; hh <= 2 * n_hyps + 1; hh++) {
        const size_t h = hh % (n_hyps + 1);
        // the last hypothesis is "Москва при" and D0: it ends inside a character
        size_t nt = 0;
        const char *hs = h < n_hyps ? hyps[h] : "Москва при";
        CU_ASSERT_FATAL(bpe_encode(g_bpe, hs, strlen(hs), ids, 256, &nt) == 0);
        if (h == n_hyps) ids[nt++] = d0;
        const int t = (int)nt;
        const size_t n = bpe_decode(g_bpe, ids, (size_t)t, text, sizeof text);
        const int prefix_ok = ref_ok(&ws, text, n, 0, rep);
        for (int last = 0; last < 2; last++) {
            for (int v = 0; v < V; v++) lp[v] = -1.0;
            lp[7] = -INFINITY;  // a token already forbidden stays forbidden
            lp[V] = 12345.0;    // past the vocabulary: never touched
            // three threads' scratch by hypothesis (the same in both passes): the verdicts
            // may not depend on it
            lex_rule_mask(r, (int)(h % 3), ids, t, last, ED_EOS_TOKEN, lp);
            CU_ASSERT(lp[7] == -INFINITY);
            CU_ASSERT(lp[V] == 12345.0);
            for (int v = 0; v < V; v++) {  // special tokens too: "[PAD]" is text to the rule
                if (v == 7 || v == ED_EOS_TOKEN) continue;
                const size_t k = bpe_decode(g_bpe, &(int32_t){v}, 1, text + n, sizeof text - n);
                const int ok = prefix_ok && ref_ok(&ws, text, n + k, last, rep);
                n_mismatch += ok != (lp[v] != -INFINITY);
                if (ok != (lp[v] != -INFINITY) && n_mismatch < 5)
                    printf("\n  '%s' + token %d '%.*s' (last %d): mask %s, reference %s", hs, v,
                           (int)k, text + n, last, lp[v] == -INFINITY ? "forbids" : "allows",
                           ok ? "allows" : "forbids");
                n_checked++;
                n_forbidden += !ok;
            }
            // EOS: the text so far must end in a whole word
            CU_ASSERT_EQUAL(lp[ED_EOS_TOKEN] == -INFINITY, !(prefix_ok && ref_ok(&ws, text, n, 1, rep)));
        }
    }
    CU_ASSERT_EQUAL(n_mismatch, 0);
    // the rule really forbids (and allows) something
    CU_ASSERT(n_forbidden > 0 && n_forbidden < n_checked);
    printf("\n  %ld token continuations checked, %ld forbidden (no-repeat %d, %s)\n", n_checked,
           n_forbidden, rep,
           article > 0 ? "an article's words" : article ? "the corpus as the article" : "no article");
    lex_rule_free(r);
    lexicon_free(l);
}

static void test_mask(void) { mask_vs_reference(0, 1); }
static void test_mask_no_repeat(void) { mask_vs_reference(4, 1); }
static void test_mask_no_article(void) {
    mask_vs_reference(0, 0);
    mask_vs_reference(0, -1);
}

// The rule's verdicts follow the article. T is a token of two Cyrillic letters xy; the
// lexicon holds the word "жx", so "ж" is a word in progress and T's first letter continues
// it, but its second only while the article says "жxy" (the verdicts of the first article
// must not outlive it), at every call for the same hypothesis.
static void test_mask_next_article(void) {
    const int V = bpe_vocab_size(g_bpe);
    int32_t tok = -1;
    char b[8];
    for (int v = 0; v < V && tok < 0; v++) {
        const size_t k = bpe_decode(g_bpe, &(int32_t){v}, 1, b, sizeof b);
        uint32_t c1, c2;
        if (k == 4 && utf8_decode(b, 2, &c1) == 2 && utf8_decode(b + 2, 2, &c2) == 2 &&
            c1 >= 0x430 && c1 <= 0x44F && c2 >= 0x430 && c2 <= 0x44F)
            tok = v;
    }
    CU_ASSERT_FATAL(tok >= 0);
    char word[16], art[16];
    snprintf(word, sizeof word, "ж%.2s", b);  // "жx"
    snprintf(art, sizeof art, "ж%.4s", b);    // "жxy"
    Lexicon *l = lexicon_new();
    lexicon_add_text(l, word, strlen(word));
    LexRule *r = lex_rule_create(l, g_bpe, V, 0);
    int32_t ids[16];
    size_t nt = 0;
    CU_ASSERT_FATAL(bpe_encode(g_bpe, "Ж", strlen("Ж"), ids, 16, &nt) == 0 && nt > 0);
    double lp[1024];
    CU_ASSERT_FATAL(V < 1024);
    const char *articles[] = {art, "другое", art};
    for (int a = 0; a < 3; a++) {
        lex_rule_set_article(r, articles[a], strlen(articles[a]));
        for (int rep = 0; rep < 2; rep++) {  // the second call finds the first's verdicts
            for (int v = 0; v < V; v++) lp[v] = -1.0;
            lex_rule_mask(r, 0, ids, (int)nt, 0, ED_EOS_TOKEN, lp);
            CU_ASSERT_EQUAL(lp[tok] != -INFINITY, a != 1);
        }
    }
    lex_rule_free(r);
    lexicon_free(l);
}

// Enough words to grow the trie's hash table several times: every one is found after, and
// their prefixes and one-letter extensions are not words.
static void test_many_words(void) {
    static const char *const L[] = {"а", "б", "в", "г", "д", "е", "ж", "з", "и", "к", "л", "м",
                                    "н", "о", "п", "р", "с", "т", "у", "ф", "х", "ц", "ч", "ш"};
    enum { NL = 24, NW = 24 * 24 * 24 * 6 };  // 82,944 words of 4 letters
    Lexicon *l = lexicon_new();
    char w[64], buf[64 * 1024];
    size_t n = 0;
    for (int i = 0; i < NW; i++) {
        int k = snprintf(w, sizeof w, "%s%s%s%s ", L[i % NL], L[i / NL % NL], L[i / NL / NL % NL],
                         L[i / NL / NL / NL]);
        if (n + (size_t)k > sizeof buf) {
            lexicon_add_text(l, buf, n);
            n = 0;
        }
        memcpy(buf + n, w, (size_t)k);
        n += (size_t)k;
    }
    lexicon_add_text(l, buf, n);
    CU_ASSERT_EQUAL(lexicon_n_words(l), NW);
    int missing = 0, extra = 0;
    for (int i = 0; i < NW; i++) {
        int k = snprintf(w, sizeof w, "%s%s%s%s", L[i % NL], L[i / NL % NL], L[i / NL / NL % NL],
                         L[i / NL / NL / NL]);
        missing += !lexicon_has_word(l, w, (size_t)k);
        extra += lexicon_has_word(l, w, (size_t)k - 2);  // its first three letters
        snprintf(w + k, sizeof w - (size_t)k, "я");
        extra += lexicon_has_word(l, w, strlen(w));
    }
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(extra, 0);
    lexicon_free(l);
}

static void test_load(void) {
    char err[CX_ERRLEN];
    Lexicon *l = NULL;
    CU_ASSERT(lexicon_load(&l, "/nonexistent/words.txt", err) == -1 && l == NULL);
    CU_ASSERT(strstr(err, "cannot read lexicon /nonexistent/words.txt") != NULL);
    char path[] = "/tmp/test_lexicon_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, "2017, 42 -- !\n", 14) == 14);
    close(fd);
    CU_ASSERT(lexicon_load(&l, path, err) == -1 && strstr(err, "holds no word") != NULL);
    FILE *f = fopen(path, "w");
    fputs(CORPUS, f);
    fclose(f);
    CU_ASSERT_FATAL(lexicon_load(&l, path, err) == 0);
    CU_ASSERT_EQUAL(lexicon_n_words(l), 30);
    CU_ASSERT(lexicon_has_word(l, "Фаллудже", strlen("Фаллудже")));
    lexicon_free(l);
    unlink(path);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("lexicon", suite_init, suite_clean);
    CU_add_test(s, "words: case folding, separators, count", test_words);
    CU_add_test(s, "loading a word file; its errors", test_load);
    CU_add_test(s, "82,944 words: the hash table grows, every word found, no other", test_many_words);
    CU_add_test(s, "mask equals a naive word-list reference on every token", test_mask);
    CU_add_test(s, "mask follows the article, also where it remembers verdicts",
                test_mask_next_article);
    CU_add_test(s, "mask with no-repeat equals the reference", test_mask_no_repeat);
    CU_add_test(s, "mask with the corpus's words alone, as the lexicon or as the article",
                test_mask_no_article);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return fails ? 1 : 0;
}
