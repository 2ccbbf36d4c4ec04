// rouge.c: ROUGE-1/2/L, standard and rouge-0.3.2 ("paper") semantics. See rouge.h.
#include "io/eval/rouge.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/text/utf8.h"
#include "models/common.h"
#include "models/rng.h"

// One token: a byte span of the scorer's lowercased text buffer.
typedef struct {
    size_t off;
    uint32_t len;  // < ROUGE_MAX_TEXT_BYTES
} Tok;

struct RougeScorer {
    RougeOptions opt;
    char *text;  // lowercased hyp then ref (folding never lengthens a character)
    size_t text_cap;
    Tok *tok;  // hyp tokens then ref tokens
    size_t tok_cap;
    int32_t *ids;  // token id per token (interned strings)
    size_t ids_cap;
    int32_t *sent_end;  // per side: token index one past each sentence (paper)
    size_t sent_end_cap;
    int32_t *slots;  // open-addressing hash table: id + 1, 0 = empty
    size_t slots_cap;
    int32_t *first;  // per id: index of its first token (the interned string)
    size_t first_cap;
    int32_t *cnt;  // per id: count in hyp (cnt[2*id]) and in ref (cnt[2*id + 1])
    size_t cnt_cap;
    uint8_t *mark;  // per id: on some reconstructed LCS (paper ROUGE-L)
    size_t mark_cap;
    uint64_t *keys;  // bigram keys: hyp then ref
    size_t keys_cap;
    int32_t *lcs;  // LCS rows (checkpoints + one block)
    size_t lcs_cap;
};

// Makes the buffer whose pointer is stored at field (any object pointer type) hold at
// least n elements of elem bytes, contents kept. 0, or -1 with err (the buffer unchanged).
// The pointer is read and written with memcpy, so no object is accessed as a void *.
static int grow(void *field, size_t *cap, size_t n, size_t elem, const char *what, char *err) {
    if (n <= *cap) return 0;
    size_t want = *cap ? *cap : 64;
    while (want < n) want = want > SIZE_MAX / 2 ? n : want * 2;
    if (want > SIZE_MAX / elem) return cx_err(err, "rouge: %s buffer too large (%zu items)", what, n);
    void *old;
    memcpy(&old, field, sizeof old);
    void *p = realloc(old, want * elem);
    if (!p) return cx_err(err, "rouge: out of memory for the %s buffer (%zu bytes)", what, want * elem);
    memcpy(field, &p, sizeof p);
    *cap = want;
    return 0;
}
#define GROW(s, field, n, err) \
    grow(&(s)->field, &(s)->field##_cap, (n), sizeof *(s)->field, #field, (err))

int rouge_scorer_new(RougeScorer **out, const RougeOptions *opt, char *err) {
    *out = NULL;
    RougeOptions o = {ROUGE_STANDARD, 0};
    if (opt) o = *opt;
    if (o.mode != ROUGE_STANDARD && o.mode != ROUGE_PAPER)
        return cx_err(err, "rouge: unknown mode %d (standard or paper)", (int)o.mode);
    RougeScorer *s = calloc(1, sizeof *s);
    if (!s) return cx_err(err, "rouge: out of memory");
    s->opt = o;
    *out = s;
    return 0;
}

void rouge_scorer_free(RougeScorer *s) {
    if (!s) return;
    free(s->text);
    free(s->tok);
    free(s->ids);
    free(s->sent_end);
    free(s->slots);
    free(s->first);
    free(s->cnt);
    free(s->mark);
    free(s->keys);
    free(s->lcs);
    free(s);
}

size_t rouge_scorer_bytes(const RougeScorer *s) {
    return s->text_cap * sizeof *s->text + s->tok_cap * sizeof *s->tok +
           s->ids_cap * sizeof *s->ids + s->sent_end_cap * sizeof *s->sent_end +
           s->slots_cap * sizeof *s->slots + s->first_cap * sizeof *s->first +
           s->cnt_cap * sizeof *s->cnt + s->mark_cap * sizeof *s->mark +
           s->keys_cap * sizeof *s->keys + s->lcs_cap * sizeof *s->lcs;
}

const char *rouge_mode_name(RougeMode mode) {
    switch (mode) {
    case ROUGE_STANDARD: return "standard";
    case ROUGE_PAPER: return "paper";
    }
    return NULL;
}

int rouge_mode_parse(const char *name, RougeMode *mode) {
    if (strcmp(name, "standard") == 0) *mode = ROUGE_STANDARD;
    else if (strcmp(name, "paper") == 0) *mode = ROUGE_PAPER;
    else return -1;
    return 0;
}

// ---------------------------------------------------------------- characters

int rouge_is_space(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    if (c < 0x85) return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Simple lowercase mapping of U+0000..U+017F and U+0370..U+052F (checked exhaustively
// against Python's str.lower() by tests/integration/test_rouge_ref.sh).
uint32_t rouge_fold_case(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 0x20 : c;
    if (c < 0x100) return (c >= 0xC0 && c <= 0xDE && c != 0xD7) ? c + 0x20 : c;
    if (c < 0x180) {  // Latin Extended-A
        if (c == 0x130) return 'i';
        if (c == 0x178) return 0xFF;
        if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
        if (c <= 0x137 || (c >= 0x14A && c <= 0x177)) return c | 1;  // even upper, odd lower
        return (c & 1) ? c + 1 : c;  // 0x139..0x148, 0x179..0x17E: odd upper, even lower
    }
    if (c < 0x370 || c > 0x52F) return c;
    if (c < 0x400) {  // Greek and Coptic
        if (c == 0x370 || c == 0x372 || c == 0x376) return c + 1;
        if (c == 0x37F) return 0x3F3;
        if (c == 0x386) return 0x3AC;
        if (c >= 0x388 && c <= 0x38A) return c + 0x25;
        if (c == 0x38C) return 0x3CC;
        if (c == 0x38E || c == 0x38F) return c + 0x3F;
        if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 0x20;
        if (c == 0x3CF) return 0x3D7;
        if (c >= 0x3D8 && c <= 0x3EF) return c | 1;
        if (c == 0x3F4) return 0x3B8;
        if (c == 0x3F7 || c == 0x3FA) return c + 1;
        if (c == 0x3F9) return 0x3F2;
        if (c >= 0x3FD) return c - 0x82;  // Ͻ Ͼ Ͽ -> ͻ ͼ ͽ
        return c;
    }
    // Cyrillic and Cyrillic Supplement
    if (c <= 0x40F) return c + 0x50;  // Ѐ..Џ (Ё, Є, І, Ї, Ј, Љ, Њ, Ђ, Ћ, ...)
    if (c <= 0x42F) return c + 0x20;  // А..Я
    if (c < 0x460) return c;
    if (c <= 0x481) return c | 1;
    if (c < 0x48A) return c;
    if (c <= 0x4BF) return c | 1;
    if (c == 0x4C0) return 0x4CF;
    if (c <= 0x4CE) return (c & 1) ? c + 1 : c;  // 0x4C1..0x4CE: odd upper
    if (c == 0x4CF) return c;
    return c | 1;  // 0x4D0..0x52F
}


// ---------------------------------------------------------------- tokenizing

// Per side: tokens [tok0, tok0 + n_tok) of s->tok, sentences [sent0, sent0 + n_sent) of
// s->sent_end (token indices relative to tok0).
typedef struct {
    size_t tok0, n_tok, sent0, n_sent;
} Side;

// Tokenizes n bytes of in, appending the folded text at s->text + *text_len, the tokens at
// s->tok + side->tok0 and (paper) the sentence ends. Buffers were sized by the caller:
// text n bytes, tokens n + 1 (paper: one "" word per sentence at most; a sentence needs
// at least one byte), sentences n + 1.
static void tokenize(RougeScorer *s, const char *in, size_t n, size_t *text_len, Side *side) {
    const int paper = s->opt.mode == ROUGE_PAPER, fold = !s->opt.keep_case;
    char *out = s->text;
    size_t pos = *text_len;
    size_t n_tok = 0, n_sent = 0;
    size_t piece_bytes = 0, piece_tok = 0;  // paper: the piece since the last '.'
    int in_tok = 0;
    size_t tok_start = 0;
    Tok *tok = s->tok + side->tok0;
    int32_t *sent = s->sent_end + side->sent0;
    for (size_t i = 0; i <= n; i++) {
        // i == n: end of text, a boundary of tokens and (paper) of the last piece
        int is_dot = 0, is_space = 1;
        uint32_t cp = 0;
        size_t len = 1;
        if (i < n) {
            len = utf8_decode(in + i, n - i, &cp);
            if (len == 0) {  // an invalid byte: an opaque character of its own
                len = 1;
                is_space = 0;
                cp = UINT32_MAX;
            } else {
                is_dot = paper && cp == '.';
                is_space = is_dot || rouge_is_space(cp);
            }
        }
        if (is_space && in_tok) {
            tok[n_tok].off = tok_start;
            tok[n_tok].len = (uint32_t)(pos - tok_start);
            n_tok++;
            piece_tok++;
            in_tok = 0;
        }
        if (paper && (is_dot || i == n)) {
            if (piece_bytes > 0) {
                if (piece_tok == 0) {  // whitespace only: the sentence "" with one word ""
                    tok[n_tok].off = pos;
                    tok[n_tok].len = 0;
                    n_tok++;
                }
                sent[n_sent++] = (int32_t)n_tok;
            }
            piece_bytes = piece_tok = 0;
            if (i == n) break;
            i += len - 1;
            continue;
        }
        if (i == n) break;
        piece_bytes += len;
        if (!is_space) {
            if (!in_tok) {
                in_tok = 1;
                tok_start = pos;
            }
            if (cp == UINT32_MAX) {
                out[pos++] = in[i];
            } else if (fold && cp >= 'A') {
                pos += utf8_encode(rouge_fold_case(cp), out + pos);
            } else {
                memcpy(out + pos, in + i, len);
                pos += len;
            }
        }
        i += len - 1;
    }
    if (!paper && n_tok > 0) sent[n_sent++] = (int32_t)n_tok;
    *text_len = pos;
    side->n_tok = n_tok;
    side->n_sent = n_sent;
}

// ---------------------------------------------------------------- interning

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001B3ULL;
    return h ^ (h >> 29);
}

// Gives every token an id (equal strings, equal ids) in s->ids; returns the number of ids.
// The slot table was sized by the caller (power of two > 2 * n_tok).
static int32_t intern(RougeScorer *s, size_t n_tok, size_t n_slots) {
    memset(s->slots, 0, n_slots * sizeof *s->slots);
    int32_t n_ids = 0;
    for (size_t t = 0; t < n_tok; t++) {
        const char *p = s->text + s->tok[t].off;
        uint32_t len = s->tok[t].len;
        size_t k = (size_t)hash_bytes(p, len) & (n_slots - 1);
        for (;;) {
            int32_t v = s->slots[k];
            if (v == 0) {
                s->slots[k] = n_ids + 1;
                s->first[n_ids] = (int32_t)t;
                s->ids[t] = n_ids++;
                break;
            }
            const Tok *o = &s->tok[s->first[v - 1]];
            if (o->len == len && memcmp(s->text + o->off, p, len) == 0) {
                s->ids[t] = v - 1;
                break;
            }
            k = (k + 1) & (n_slots - 1);
        }
    }
    return n_ids;
}

// ---------------------------------------------------------------- LCS

int64_t rouge_lcs_length(RougeScorer *s, const int32_t *x, int nx, const int32_t *y, int ny,
                         char *err) {
    if (nx < 0 || ny < 0) return cx_err(err, "rouge: negative sequence length");
    if (nx < ny) {  // the row runs along the shorter sequence
        const int32_t *t = x;
        x = y;
        y = t;
        int tn = nx;
        nx = ny;
        ny = tn;
    }
    if (ny == 0) return 0;
    if (GROW(s, lcs, (size_t)ny + 1, err)) return -1;
    int32_t *row = s->lcs;
    memset(row, 0, ((size_t)ny + 1) * sizeof *row);
    for (int i = 1; i <= nx; i++) {
        int32_t diag = 0, xi = x[i - 1];  // diag = T[i-1][j-1]
        for (int j = 1; j <= ny; j++) {
            int32_t up = row[j];
            row[j] = xi == y[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    return row[ny];
}

// Row p of the LCS table of a (rows) and b (columns) from row p - 1 (w = nb + 1 entries).
static void lcs_row(int32_t *cur, const int32_t *prev, int32_t ap, const int32_t *b, int nb) {
    cur[0] = 0;
    for (int q = 1; q <= nb; q++)
        cur[q] = ap == b[q - 1] ? prev[q - 1] + 1 : (prev[q] > cur[q - 1] ? prev[q] : cur[q - 1]);
}

// The backtrack of rouge_lcs_mark on the table T of a (na rows) and b (nb columns),
// na >= nb >= 1. At a mismatch it steps up (p - 1) when T[p-1][q] > T[p][q-1], or when
// tie_up and they are equal; else left (q - 1). Rows 0, K, 2K, ... are kept from a forward
// pass; the backtrack recomputes one block of K + 1 rows at a time from its checkpoint.
static int64_t lcs_mark_rows(RougeScorer *s, const int32_t *a, int na, const int32_t *b,
                             int nb, int tie_up, uint8_t *mark, char *err) {
    size_t w = (size_t)nb + 1;
    size_t K = (size_t)ceil(sqrt((double)na));
    if (K < 1) K = 1;
    size_t n_ck = (size_t)na / K + 1;
    if (n_ck + K + 1 > SIZE_MAX / w) return cx_err(err, "rouge: LCS table too large");
    if (GROW(s, lcs, (n_ck + K + 1) * w, err)) return -1;
    int32_t *ck = s->lcs, *blk = s->lcs + n_ck * w;
    // forward pass over rolling rows blk[0], blk[1]
    int32_t *prev = blk, *cur = blk + w;
    memset(prev, 0, w * sizeof *prev);
    memcpy(ck, prev, w * sizeof *prev);
    for (size_t p = 1; p <= (size_t)na; p++) {
        lcs_row(cur, prev, a[p - 1], b, nb);
        if (p % K == 0) memcpy(ck + (p / K) * w, cur, w * sizeof *cur);
        int32_t *t = prev;
        prev = cur;
        cur = t;
    }
    int64_t len = prev[nb];
    // backtrack
    size_t p = (size_t)na, q = (size_t)nb, loaded = SIZE_MAX;
    while (p > 0 && q > 0) {
        if (a[p - 1] == b[q - 1]) {
            mark[a[p - 1]] = 1;
            p--;
            q--;
            continue;
        }
        size_t bi = (p - 1) / K;  // the block of rows bi*K .. bi*K + K holds p - 1 and p
        if (bi != loaded) {
            size_t r0 = bi * K, last = r0 + K < (size_t)na ? r0 + K : (size_t)na;
            memcpy(blk, ck + bi * w, w * sizeof *blk);
            for (size_t r = r0 + 1; r <= last; r++)
                lcs_row(blk + (r - r0) * w, blk + (r - r0 - 1) * w, a[r - 1], b, nb);
            loaded = bi;
        }
        const int32_t *row = blk + (p - bi * K) * w;
        int32_t up = (row - w)[q], left = row[q - 1];
        if (up > left || (tie_up && up == left)) p--;
        else q--;
    }
    return len;
}

int64_t rouge_lcs_mark(RougeScorer *s, const int32_t *x, int nx, const int32_t *y, int ny,
                       uint8_t *mark, char *err) {
    if (nx < 0 || ny < 0) return cx_err(err, "rouge: negative sequence length");
    if (nx == 0 || ny == 0) return 0;
    // Rows run along the longer sequence so that a row is the shorter one. For x (rows) the
    // package steps in x only when T[i-1][j] > T[i][j-1]; transposed (y as rows), "up" is a
    // step in y, which it takes on ties.
    if (nx >= ny) return lcs_mark_rows(s, x, nx, y, ny, 0, mark, err);
    return lcs_mark_rows(s, y, ny, x, nx, 1, mark, err);
}

// ---------------------------------------------------------------- scoring

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static RougePRF prf_standard(int64_t overlap, int64_t n_hyp, int64_t n_ref) {
    RougePRF o;
    o.p = n_hyp > 0 ? (double)overlap / (double)n_hyp : 0.0;
    o.r = n_ref > 0 ? (double)overlap / (double)n_ref : 0.0;
    o.f = o.p + o.r > 0 ? 2.0 * o.p * o.r / (o.p + o.r) : 0.0;
    return o;
}

// rouge 0.3.2 f_r_p_rouge_n
static RougePRF prf_paper_n(int64_t overlap, int64_t n_hyp, int64_t n_ref) {
    RougePRF o;
    o.p = n_hyp > 0 ? (double)overlap / (double)n_hyp : 0.0;
    o.r = n_ref > 0 ? (double)overlap / (double)n_ref : 0.0;
    o.f = 2.0 * ((o.p * o.r) / (o.p + o.r + 1e-8));
    return o;
}

// rouge 0.3.2 rouge_l_summary_level; n_hyp, n_ref > 0
static RougePRF prf_paper_l(int64_t llcs, int64_t n_hyp, int64_t n_ref) {
    RougePRF o;
    o.r = (double)llcs / (double)n_ref;
    o.p = (double)llcs / (double)n_hyp;
    double beta = o.p / (o.r + 1e-12);
    double beta2 = beta * beta;  // Python's beta**2: pow(beta, 2), the same rounded product
    double num = (1.0 + beta2) * o.r * o.p;
    double denom = o.r + (beta2 * o.p);
    o.f = num / (denom + 1e-12);
    return o;
}

// Sorted bigram keys of ids[0..n): returns the count (n - 1, or 0).
static size_t bigrams(const int32_t *ids, size_t n, uint64_t *keys) {
    if (n < 2) return 0;
    for (size_t i = 0; i + 1 < n; i++) keys[i] = ((uint64_t)(uint32_t)ids[i] << 32) | (uint32_t)ids[i + 1];
    qsort(keys, n - 1, sizeof *keys, cmp_u64);
    return n - 1;
}

// Clipped (standard) or distinct (paper) bigram statistics of two sorted key arrays.
static RougeCount bigram_count(const uint64_t *h, size_t nh, const uint64_t *r, size_t nr, int sets) {
    RougeCount c = {0, 0, 0};
    size_t i = 0, j = 0;
    while (i < nh || j < nr) {
        uint64_t k = i < nh && (j >= nr || h[i] <= r[j]) ? h[i] : r[j];
        int64_t a = 0, b = 0;
        while (i < nh && h[i] == k) i++, a++;
        while (j < nr && r[j] == k) j++, b++;
        if (sets) {
            c.n_hyp += a > 0;
            c.n_ref += b > 0;
            c.overlap += a > 0 && b > 0;
        } else {
            c.n_hyp += a;
            c.n_ref += b;
            c.overlap += a < b ? a : b;
        }
    }
    return c;
}

int rouge_score(RougeScorer *s, const char *hyp, size_t hyp_bytes, const char *ref,
                size_t ref_bytes, RougeScores *out, RougeCounts *counts, char *err) {
    if (hyp_bytes > ROUGE_MAX_TEXT_BYTES)
        return cx_err(err, "rouge: hypothesis of %zu bytes is longer than the limit %zu", hyp_bytes,
                      ROUGE_MAX_TEXT_BYTES);
    if (ref_bytes > ROUGE_MAX_TEXT_BYTES)
        return cx_err(err, "rouge: reference of %zu bytes is longer than the limit %zu", ref_bytes,
                      ROUGE_MAX_TEXT_BYTES);
    const int paper = s->opt.mode == ROUGE_PAPER;
    size_t total = hyp_bytes + ref_bytes, max_tok = total + 2;
    if (GROW(s, text, total + 1, err) || GROW(s, tok, max_tok, err) ||
        GROW(s, sent_end, max_tok, err))
        return -1;

    Side hs = {0, 0, 0, 0}, rs = {0, 0, 0, 0};
    size_t text_len = 0;
    tokenize(s, hyp, hyp_bytes, &text_len, &hs);
    rs.tok0 = hs.n_tok;
    rs.sent0 = hs.n_sent;
    tokenize(s, ref, ref_bytes, &text_len, &rs);
    size_t n_tok = hs.n_tok + rs.n_tok;

    size_t n_slots = 16;
    while (n_slots <= 2 * n_tok) n_slots *= 2;
    if (GROW(s, ids, n_tok + 1, err) || GROW(s, slots, n_slots, err) ||
        GROW(s, first, n_tok + 1, err))
        return -1;
    int32_t n_ids = intern(s, n_tok, n_slots);
    if (GROW(s, cnt, 2 * (size_t)n_ids + 2, err) || GROW(s, mark, (size_t)n_ids + 1, err) ||
        GROW(s, keys, n_tok + 2, err))
        return -1;
    const int32_t *hid = s->ids, *rid = s->ids + hs.n_tok;

    RougeCounts c;
    memset(&c, 0, sizeof c);
    c.n_hyp_tokens = (int64_t)hs.n_tok;
    c.n_ref_tokens = (int64_t)rs.n_tok;
    c.n_hyp_sentences = (int64_t)hs.n_sent;
    c.n_ref_sentences = (int64_t)rs.n_sent;

    // ROUGE-1: per-id counts
    memset(s->cnt, 0, 2 * (size_t)n_ids * sizeof *s->cnt);
    for (size_t t = 0; t < hs.n_tok; t++) s->cnt[2 * hid[t]]++;
    for (size_t t = 0; t < rs.n_tok; t++) s->cnt[2 * rid[t] + 1]++;
    int64_t distinct_h = 0, distinct_r = 0;
    for (int32_t v = 0; v < n_ids; v++) {
        int32_t a = s->cnt[2 * v], b = s->cnt[2 * v + 1];
        distinct_h += a > 0;
        distinct_r += b > 0;
        if (paper) c.r1.overlap += a > 0 && b > 0;
        else c.r1.overlap += a < b ? a : b;
    }
    c.r1.n_hyp = paper ? distinct_h : (int64_t)hs.n_tok;
    c.r1.n_ref = paper ? distinct_r : (int64_t)rs.n_tok;

    // ROUGE-2: sorted bigram keys (over all words; paper n-grams cross sentence ends too)
    size_t nkh = bigrams(hid, hs.n_tok, s->keys);
    size_t nkr = bigrams(rid, rs.n_tok, s->keys + nkh);
    c.r2 = bigram_count(s->keys, nkh, s->keys + nkh, nkr, paper);

    // ROUGE-L
    if (!paper) {
        int64_t l = rouge_lcs_length(s, hid, (int)hs.n_tok, rid, (int)rs.n_tok, err);
        if (l < 0) return -1;
        c.rl.overlap = l;
        c.rl.n_hyp = (int64_t)hs.n_tok;
        c.rl.n_ref = (int64_t)rs.n_tok;
    } else {
        memset(s->mark, 0, (size_t)n_ids);
        const int32_t *hend = s->sent_end + hs.sent0, *rend = s->sent_end + rs.sent0;
        for (size_t i = 0; i < rs.n_sent; i++) {
            int32_t r0 = i ? rend[i - 1] : 0;
            for (size_t j = 0; j < hs.n_sent; j++) {
                int32_t h0 = j ? hend[j - 1] : 0;
                if (rouge_lcs_mark(s, rid + r0, rend[i] - r0, hid + h0, hend[j] - h0, s->mark,
                                   err) < 0)
                    return -1;
            }
        }
        for (int32_t v = 0; v < n_ids; v++) c.rl.overlap += s->mark[v];
        c.rl.n_hyp = distinct_h;
        c.rl.n_ref = distinct_r;
    }

    RougeScores sc;
    if (paper) {
        sc.r1 = prf_paper_n(c.r1.overlap, c.r1.n_hyp, c.r1.n_ref);
        sc.r2 = prf_paper_n(c.r2.overlap, c.r2.n_hyp, c.r2.n_ref);
        if (hs.n_sent == 0 || rs.n_sent == 0) {  // the package raises ValueError here
            RougePRF zero = {0.0, 0.0, 0.0};
            sc.r1 = sc.r2 = sc.rl = zero;
        } else {
            sc.rl = prf_paper_l(c.rl.overlap, c.rl.n_hyp, c.rl.n_ref);
        }
    } else {
        sc.r1 = prf_standard(c.r1.overlap, c.r1.n_hyp, c.r1.n_ref);
        sc.r2 = prf_standard(c.r2.overlap, c.r2.n_hyp, c.r2.n_ref);
        sc.rl = prf_standard(c.rl.overlap, c.rl.n_hyp, c.rl.n_ref);
    }
    *out = sc;
    if (counts) *counts = c;
    return 0;
}

void rouge_mean_add(RougeMean *m, const RougeScores *sc) {
    RougePRF *d[3] = {&m->sum.r1, &m->sum.r2, &m->sum.rl};
    const RougePRF *a[3] = {&sc->r1, &sc->r2, &sc->rl};
    for (int k = 0; k < 3; k++) {
        d[k]->p += a[k]->p;
        d[k]->r += a[k]->r;
        d[k]->f += a[k]->f;
    }
    m->n_examples++;
}

RougeScores rouge_mean_get(const RougeMean *m) {
    RougeScores o;
    memset(&o, 0, sizeof o);
    if (m->n_examples <= 0) return o;
    double n = (double)m->n_examples;
    RougePRF *d[3] = {&o.r1, &o.r2, &o.rl};
    const RougePRF *a[3] = {&m->sum.r1, &m->sum.r2, &m->sum.rl};
    for (int k = 0; k < 3; k++) {
        d[k]->p = a[k]->p / n;
        d[k]->r = a[k]->r / n;
        d[k]->f = a[k]->f / n;
    }
    return o;
}

// ---------------------------------------------------------------- paired bootstrap

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int rouge_paired_bootstrap(const double *d, int64_t n, int k, int n_resamples, uint64_t seed,
                           RougeBootstrap *out, char *err) {
    if (n < 1) return cx_err(err, "rouge: bootstrap of no examples");
    if (n > (int64_t)UINT32_MAX)
        return cx_err(err, "rouge: bootstrap of %lld examples (at most %lu)", (long long)n,
                      (unsigned long)UINT32_MAX);
    if (k < 1) return cx_err(err, "rouge: bootstrap of no scores");
    if (n_resamples < 1 || n_resamples > ROUGE_MAX_RESAMPLES)
        return cx_err(err, "rouge: bootstrap resamples must be 1 to %d (got %d)", ROUGE_MAX_RESAMPLES,
                      n_resamples);
    const int R = n_resamples;
    double *sums = malloc((size_t)R * (size_t)k * sizeof *sums);  // (R, k)
    if (!sums) return cx_err(err, "rouge: out of memory for %d bootstrap resamples", R);
    memset(sums, 0, (size_t)R * (size_t)k * sizeof *sums);
    for (int r = 0; r < R; r++) {
        double *s_r = sums + (size_t)r * k;
        for (int64_t j = 0; j < n; j++) {
            uint64_t u = cx_rng_u64(seed, (uint64_t)r * (uint64_t)n + (uint64_t)j);
            int64_t idx = (int64_t)(((u >> 32) * (uint64_t)n) >> 32);
            const double *d_i = d + (size_t)idx * k;
            for (int m = 0; m < k; m++) s_r[m] += d_i[m];
        }
    }
    double *col = malloc((size_t)R * sizeof *col);
    if (!col) {
        free(sums);
        return cx_err(err, "rouge: out of memory for %d bootstrap resamples", R);
    }
    const int c = (int)floor(0.025 * R);
    for (int m = 0; m < k; m++) {
        double total = 0;
        for (int64_t i = 0; i < n; i++) total += d[(size_t)i * k + m];
        int64_t n_ahead = 0, n_tied = 0;
        for (int r = 0; r < R; r++) {
            double s = sums[(size_t)r * k + m];
            n_ahead += s > 0;
            n_tied += s == 0;
            col[r] = s / (double)n;
        }
        qsort(col, (size_t)R, sizeof *col, cmp_double);
        out[m] = (RougeBootstrap){.diff = total / (double)n,
                                  .lo = col[c],
                                  .hi = col[R - 1 - c],
                                  .ahead = (double)n_ahead / R,
                                  .tied = (double)n_tied / R};
    }
    free(col);
    free(sums);
    return 0;
}

int rouge_mbr_pick(RougeScorer *s, const char *const *texts, const size_t *bytes, int n,
                   int n_fixed, const double w[3], const double *prior, double *expected,
                   char *err) {
    if (n < 1 || n_fixed < 0 || n_fixed >= n)
        return cx_err(err, "minimum Bayes risk over %d texts with %d fixed (need n >= 1, "
                           "0 <= n_fixed < n)", n, n_fixed);
    int best = -1;
    double best_e = 0.0;
    for (int i = 0; i < n; i++) {
        double sum = 0.0;
        int m = 0;
        for (int j = n_fixed; j < n; j++) {
            if (j == i) continue;
            RougeScores sc;
            if (rouge_score(s, texts[i], bytes[i], texts[j], bytes[j], &sc, NULL, err) != 0)
                return -1;
            sum += w[0] * sc.r1.f + w[1] * sc.r2.f + w[2] * sc.rl.f;
            m++;
        }
        double e = (m ? sum / m : 0.0) + (prior ? prior[i] : 0.0);
        if (expected) expected[i] = e;
        if (best < 0 || e > best_e) {
            best = i;
            best_e = e;
        }
    }
    return best;
}
