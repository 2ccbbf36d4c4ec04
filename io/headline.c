// headline.c: pair shards, text helpers, Debian (title, body) pairs, mBART denoising,
// the headline/denoise training tasks and the conflux-headline configuration (see
// headline.h). The pair shard is shard code: like io/shard.c it uses the HDF5 helpers of
// io/h5util_internal.h.
#include "io/headline.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/config.h"
#include "io/corpus.h"
#include "io/h5util_internal.h"
#include "io/rouge.h"
#include "io/utf8.h"
#include "models/common.h"
#include "models/rng.h"

#define PAIRS_FORMAT "conflux-pairs"
#define PAIRS_VERSION 1
#define PAIRS_CHUNK ((size_t)65536)  // tokens per chunk (256 KiB)
#define WHY_LEN H5U_WHY_LEN

// ---------------------------------------------------------------------------------------
// Pair shard writer: two appendable int32 datasets with one-chunk buffers (H5uColumn of
// io/h5util_internal.h, as the token shard's /tokens).

struct PairWriter {
    hid_t file;
    char *path, *tmp;
    int vocab_size;
    H5uColumn col[2];  // src, tgt
    int failed;
};

static void writer_free(PairWriter *w) {
    if (!w) return;
    for (int i = 0; i < 2; i++) h5u_column_free(&w->col[i]);
    h5u_close_id(&w->file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    free(w->path);
    free(w->tmp);
    free(w);
}

int pairs_writer_open(PairWriter **out, const char *path, int vocab_size,
                      const char *tokenizer_fingerprint, const char *source, int lowercase,
                      char *err) {
    char why[WHY_LEN] = "";
    PairWriter *w = NULL;
    *out = NULL;
    h5u_quiet();
    if (!path || !path[0]) return cx_err(err, "cannot write pair shard: empty path");
    if (vocab_size <= 0 || !tokenizer_fingerprint || strlen(tokenizer_fingerprint) >= 128 ||
        !source || strlen(source) >= 64)
        return cx_err(err, "cannot write pair shard %s: bad vocab_size, fingerprint or source",
                      path);
    w = calloc(1, sizeof *w);
    if (!w) return cx_err(err, "cannot write pair shard %s: out of memory", path);
    w->file = H5I_INVALID_HID;
    w->col[0].ds = w->col[1].ds = H5I_INVALID_HID;
    w->vocab_size = vocab_size;
    if (!(w->path = strdup(path)) ||
        h5u_column_init(&w->col[0], PAIRS_CHUNK, "/src_tokens", why) ||
        h5u_column_init(&w->col[1], PAIRS_CHUNK, "/tgt_tokens", why))
        goto oom;
    if ((w->file = h5u_tmp_create(path, &w->tmp, why)) < 0) goto fail;
    if (h5u_write_str_attr(w->file, "format", PAIRS_FORMAT, why) ||
        h5u_write_int_attr(w->file, "version", H5T_STD_I32LE, PAIRS_VERSION, why) ||
        h5u_write_int_attr(w->file, "vocab_size", H5T_STD_I32LE, vocab_size, why) ||
        h5u_write_str_attr(w->file, "tokenizer", tokenizer_fingerprint, why) ||
        h5u_write_str_attr(w->file, "source", source, why) ||
        h5u_write_int_attr(w->file, "lowercase", H5T_STD_I32LE, lowercase ? 1 : 0, why) ||
        h5u_column_create(&w->col[0], w->file, "src_tokens", 0, why) ||
        h5u_column_create(&w->col[1], w->file, "tgt_tokens", 0, why))
        goto fail;
    *out = w;
    return 0;
oom:
    snprintf(why, WHY_LEN, "out of memory");
fail:
    if (w->tmp) {
        for (int i = 0; i < 2; i++) h5u_close_id(&w->col[i].ds, H5Dclose);
        h5u_close_id(&w->file, H5Fclose);
        unlink(w->tmp);
    }
    writer_free(w);
    return cx_err(err, "cannot write pair shard %s: %s", path, why);
}

int pairs_writer_add(PairWriter *w, const int32_t *src, size_t n_src, const int32_t *tgt,
                     size_t n_tgt, char *err) {
    char why[WHY_LEN] = "";
    if (!w) return cx_err(err, "cannot write pair shard: no writer");
    h5u_quiet();
    if (w->failed) return cx_err(err, "cannot write pair shard %s: an earlier write failed", w->path);
    const int32_t *t[2] = {src, tgt};
    size_t n[2] = {n_src, n_tgt};
    for (int c = 0; c < 2; c++) {
        if (n[c] > 0 && !t[c])
            return cx_err(err, "cannot write pair shard %s: pair %zu: no tokens given", w->path,
                          w->col[0].n_off - 1);
        for (size_t i = 0; i < n[c]; i++)
            if (t[c][i] < 0 || t[c][i] >= w->vocab_size)
                return cx_err(err, "cannot write pair shard %s: pair %zu: %s token %zu is %d, "
                              "outside [0, %d)", w->path, w->col[0].n_off - 1,
                              c ? "headline" : "article", i, (int)t[c][i], w->vocab_size);
    }
    for (int c = 0; c < 2; c++) {
        if (h5u_column_reserve(&w->col[c], why) ||
            h5u_column_append(&w->col[c], t[c], n[c], why)) {
            w->failed = 1;
            return cx_err(err, "cannot write pair shard %s: %s", w->path, why);
        }
    }
    return 0;
}

size_t pairs_writer_count(const PairWriter *w) { return w ? w->col[0].n_off - 1 : 0; }

int pairs_writer_close(PairWriter *w, char *err) {
    char why[WHY_LEN] = "";
    if (!w) return cx_err(err, "cannot write pair shard: no writer");
    h5u_quiet();
    if (w->failed) {
        snprintf(why, WHY_LEN, "an earlier write failed");
        goto fail;
    }
    static const char *const names[2] = {"src_offsets", "tgt_offsets"};
    static const char *const labels[2] = {"/src_offsets", "/tgt_offsets"};
    for (int c = 0; c < 2; c++) {
        if (h5u_column_flush(&w->col[c], why)) goto fail;
        h5u_close_id(&w->col[c].ds, H5Dclose);
        hsize_t dims[1] = {w->col[c].n_off};
        if (h5u_write_array(w->file, names[c], labels[c], H5T_STD_I64LE, H5T_NATIVE_INT64,
                            sizeof(int64_t), 1, dims, w->col[c].off, why))
            goto fail;
    }
    if (h5u_tmp_commit(&w->file, w->tmp, w->path, why)) goto fail;
    writer_free(w);
    return 0;
fail:
    for (int c = 0; c < 2; c++) h5u_close_id(&w->col[c].ds, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    unlink(w->tmp);
    cx_err(err, "cannot write pair shard %s: %s", w->path, why);
    writer_free(w);
    return -1;
}

void pairs_writer_abort(PairWriter *w) {
    if (!w) return;
    h5u_quiet();
    for (int c = 0; c < 2; c++) h5u_close_id(&w->col[c].ds, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    if (w->tmp) unlink(w->tmp);
    writer_free(w);
}

// ---------------------------------------------------------------------------------------
// Pair shard reader.




int pairs_read(Pairs *p, const char *path, char *err) {
    char why[WHY_LEN] = "", fmt[64];
    const char *where = "";
    hid_t file = H5I_INVALID_HID;
    int64_t v = 0;
    memset(p, 0, sizeof *p);
    h5u_quiet();
    if (h5u_check_signature(path, "pair shard", err)) return -1;
    if ((file = h5u_open_format(path, "pair shard", fmt, sizeof fmt, why)) < 0) goto fail;
    if (strcmp(fmt, PAIRS_FORMAT) != 0) {
        snprintf(why, WHY_LEN, "not a conflux pair shard (format is \"%s\", expected \"%s\"%s)",
                 fmt, PAIRS_FORMAT,
                 strcmp(fmt, "conflux-shard") == 0
                     ? "; a token shard serves --objective denoise, pairs come from "
                       "conflux-headline prepare"
                     : "");
        goto fail;
    }
    if (h5u_read_int_attr_req(file, "version", &v, why)) goto fail;
    if (v != PAIRS_VERSION) {
        snprintf(why, WHY_LEN, "unsupported pair shard version %lld (this build reads %d)",
                 (long long)v, PAIRS_VERSION);
        goto fail;
    }
    if (h5u_read_vocab_size(file, &p->vocab_size, why)) goto fail;
    if (h5u_read_int_attr_req(file, "lowercase", &v, why)) goto fail;
    p->lowercase = v != 0;
    if (h5u_read_str_attr_into(file, "tokenizer", p->tokenizer, sizeof p->tokenizer, why) ||
        h5u_read_str_attr_into(file, "source", p->source, sizeof p->source, why))
        goto fail;
    static const char *const tok_names[2] = {"src_tokens", "tgt_tokens"};
    static const char *const off_names[2] = {"src_offsets", "tgt_offsets"};
    size_t n_off[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        void *buf = NULL;
        size_t n = 0;
        where = c ? "/tgt_tokens" : "/src_tokens";
        if (h5u_read_1d(file, tok_names[c], sizeof(int32_t), H5T_NATIVE_INT32, &buf, &n, why)) goto fail;
        int32_t *t = buf;
        if (c) p->tgt = t, p->n_tgt_tokens = n;
        else p->src = t, p->n_src_tokens = n;
        if (h5u_check_tokens(t, n, p->vocab_size, why)) goto fail;
        where = c ? "/tgt_offsets" : "/src_offsets";
        if (h5u_read_1d(file, off_names[c], sizeof(int64_t), H5T_NATIVE_INT64, &buf, &n_off[c], why))
            goto fail;
        if (c) p->tgt_off = buf;
        else p->src_off = buf;
        if (h5u_check_offsets(buf, n_off[c], n, "n_pairs", "the token count", why)) goto fail;
    }
    where = "";
    if (n_off[0] != n_off[1]) {
        snprintf(why, WHY_LEN, "/src_offsets has %zu entries but /tgt_offsets %zu", n_off[0],
                 n_off[1]);
        goto fail;
    }
    p->n_pairs = n_off[0] - 1;
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    return 0;
fail:
    h5u_close_id(&file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    pairs_free(p);
    if (where[0]) return cx_err(err, "pair shard %s: dataset %s: %s", path, where, why);
    return cx_err(err, "pair shard %s: %s", path, why);
}

void pairs_free(Pairs *p) {
    if (!p) return;
    free(p->src);
    free(p->tgt);
    free(p->src_off);
    free(p->tgt_off);
    memset(p, 0, sizeof *p);
}

// ---------------------------------------------------------------------------------------
// Text helpers.


size_t headline_lowercase(char *s, size_t n) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (len == 0) {  // an invalid byte stays as it is
            s[o++] = s[i++];
            continue;
        }
        uint32_t lc = rouge_fold_case(cp);
        char enc[4];
        size_t el = lc != cp ? utf8_encode(lc, enc) : 0;
        if (lc != cp && el <= len) {
            memcpy(s + o, enc, el);
            o += el;
        } else {
            memmove(s + o, s + i, len);
            o += len;
        }
        i += len;
    }
    return o;
}

static int is_space_byte(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// Length of a sentence terminator at s[i] ('.', '!', '?', '…'), or 0.
static size_t term_len(const char *s, size_t n, size_t i) {
    char c = s[i];
    if (c == '.' || c == '!' || c == '?') return 1;
    if (i + 2 < n && (unsigned char)c == 0xE2 && (unsigned char)s[i + 1] == 0x80 &&
        (unsigned char)s[i + 2] == 0xA6)
        return 3;
    return 0;
}

// Length of a closing quote or bracket at s[i], or 0.
static size_t closer_len(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\'' || c == ')' || c == ']') return 1;
    if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] == 0xBB) return 2;  // »
    if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
        ((unsigned char)s[i + 2] == 0x9C || (unsigned char)s[i + 2] == 0x9D))
        return 3;  // “ ”
    return 0;
}

// Whether the word ending right before position i (exclusive) is one letter long.
static int single_letter_before(const char *s, size_t i) {
    if (i == 0) return 0;
    size_t j = i;
    // step back over one UTF-8 character
    do j--;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80);
    uint32_t cp;
    size_t len = utf8_decode(s + j, i - j, &cp);
    if (len == 0) return 0;
    int letter = (cp < 0x80 && ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')) ||
                 (cp >= 0x400 && cp <= 0x4FF);
    return letter && (j == 0 || is_space_byte(s[j - 1]));
}

// End (exclusive) of the sentence starting at i, and where the next one may start.
static size_t sentence_end(const char *s, size_t n, size_t i, size_t *next) {
    while (i < n) {
        size_t tl = term_len(s, n, i);
        if (!tl) {
            i++;
            continue;
        }
        size_t j = i, start = i;
        while (j < n && (tl = term_len(s, n, j))) j += tl;
        size_t cl;
        while (j < n && (cl = closer_len(s, n, j))) j += cl;
        if (j >= n || is_space_byte(s[j])) {
            if (!(j - start == 1 && s[start] == '.' && single_letter_before(s, start))) {
                *next = j;
                return j;
            }
        }
        i = j;
    }
    *next = n;
    return n;
}

size_t headline_first_sentence(const char *text, size_t n, int skip_first, char *out) {
    size_t pos = 0, found = 0, b[2] = {0, 0}, e[2] = {0, 0};
    while (pos < n && found < 2) {
        while (pos < n && is_space_byte(text[pos])) pos++;
        if (pos >= n) break;
        size_t next, end = sentence_end(text, n, pos, &next);
        b[found] = pos;
        e[found] = end;
        found++;
        pos = next;
    }
    size_t k = skip_first && found == 2 ? 1 : 0, o = 0;
    if (found == 0) {
        out[0] = 0;
        return 0;
    }
    for (size_t i = b[k]; i < e[k]; i++) {
        char c = is_space_byte(text[i]) ? ' ' : text[i];
        if (c == ' ' && (o == 0 || out[o - 1] == ' ')) continue;
        out[o++] = c;
    }
    while (o > 0 && out[o - 1] == ' ') o--;
    out[o] = 0;
    return o;
}

// ---------------------------------------------------------------------------------------
// (title, body) pairs from Debian's Russian texts.

static const char *const PAIR_FORMATS[HP_COUNT] = {"debtrans", "man", "html"};

const char *headline_pair_format_name(HeadlinePairFormat f) {
    return (unsigned)f < HP_COUNT ? PAIR_FORMATS[f] : NULL;
}

int headline_pair_format_parse(const char *name, HeadlinePairFormat *out) {
    for (int i = 0; i < HP_COUNT; i++)
        if (!strcmp(name, PAIR_FORMATS[i])) {
            *out = (HeadlinePairFormat)i;
            return 0;
        }
    return -1;
}

// A growable string.
typedef struct {
    char *s;
    size_t n, cap;
} Str;

static void str_add(Str *b, const char *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap : 256);
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->s, cap);
        CHECK(q, "out of memory (%zu bytes)", cap);
        b->s = q;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}

static double cyr_share(const char *s, size_t n, size_t *n_chars) {
    size_t letters = 0, cyr = 0;
    corpus_count(s, n, n_chars, &letters, &cyr);
    return letters ? (double)cyr / (double)letters : 0.0;
}

static int count_words(const char *s) {
    int w = 0, in = 0;
    for (; *s; s++) {
        if (*s == ' ') in = 0;
        else if (!in) in = 1, w++;
    }
    return w;
}

// Whether a paragraph looks like a man-page section heading: 2+ letters, all capitals.
static int is_heading(const char *s, size_t n) {
    if (n == 0 || n > 64) return 0;
    size_t letters = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (!len) return 0;
        int letter = (cp < 0x80 && ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')) ||
                     (cp >= 0x400 && cp <= 0x4FF);
        if (letter) {
            if (rouge_fold_case(cp) == cp) return 0;  // a lowercase letter
            letters++;
        }
        i += len;
    }
    return letters >= 2;
}

// The paragraphs of one extracted document, normalised (empty ones dropped).
typedef struct {
    Str text;       // paragraphs back to back, each NUL-terminated
    size_t *off;
    size_t n, cap;
} Paras;

static void paras_split(Paras *p, const char *doc, size_t n) {
    p->text.n = 0;
    p->n = 0;
    char *tmp = malloc(n + 1);
    CHECK(tmp, "out of memory");
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && doc[j] != '\n') j++;
        size_t len = corpus_normalize(doc + i, j - i, tmp, NULL);
        if (len > 0) {
            if (p->n == p->cap) {
                p->cap = p->cap ? 2 * p->cap : 64;
                p->off = realloc(p->off, p->cap * sizeof *p->off);
                CHECK(p->off, "out of memory");
            }
            p->off[p->n++] = p->text.n;
            str_add(&p->text, tmp, len);
            str_add(&p->text, "", 1);  // keep the NUL inside
        }
        i = j + 1;
    }
    free(tmp);
}

static const char *para(const Paras *p, size_t i) { return p->text.s + p->off[i]; }

// Appends paragraph q to body when it is Cyrillic enough.
static void body_add(Str *body, const char *q) {
    size_t n = strlen(q), chars;
    if (cyr_share(q, n, &chars) < 0.3) return;
    if (body->n) str_add(body, " ", 1);
    str_add(body, q, n);
}

// Checks and emits one pair. Returns 1 emitted, 0 rejected, -1 emit stopped.
static int offer_pair(const char *title, Str *body, size_t min_body, HeadlinePairStats *st,
                      HeadlinePairFn emit, void *ctx) {
    size_t tchars = 0, bchars = 0;
    int words = title ? count_words(title) : 0;
    if (!title || words < 2 || words > 30) {
        st->no_title++;
        return 0;
    }
    if (!body->n || (cyr_share(body->s, body->n, &bchars), bchars < min_body)) {
        st->no_body++;
        return 0;
    }
    if (cyr_share(title, strlen(title), &tchars) < 0.5 || cyr_share(body->s, body->n, &bchars) < 0.5) {
        st->not_cyrillic++;
        return 0;
    }
    st->pairs++;
    return emit(ctx, title, body->s) != 0 ? -1 : 1;
}

// Case-insensitive search for an ASCII needle in n bytes.
static const char *find_ci(const char *s, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (!strncasecmp(s + i, needle, m)) return s + i;
    return NULL;
}

// <title> of an HTML page, entities decoded, normalised, section number dropped.
static char *html_title(const char *data, size_t n) {
    const char *t = find_ci(data, n, "<title");
    if (!t) return NULL;
    const char *gt = memchr(t, '>', n - (size_t)(t - data));
    if (!gt) return NULL;
    gt++;
    const char *end = find_ci(gt, n - (size_t)(gt - data), "</title");
    if (!end) return NULL;
    size_t len = (size_t)(end - gt);
    char *a = malloc(len + 1), *b = malloc(len + 1);
    CHECK(a && b, "out of memory");
    size_t la = news_html_to_text(gt, len, a, 0);
    size_t lb = corpus_normalize(a, la, b, NULL);
    b[lb] = 0;
    free(a);
    // drop a leading section number: "5.4. Лупа", "12 Title"
    size_t i = 0;
    while (i < lb && ((b[i] >= '0' && b[i] <= '9') || b[i] == '.')) i++;
    if (i > 0 && i < lb && b[i] == ' ') memmove(b, b + i + 1, lb - i);
    return b;
}

static int title_eq(const char *a, const char *b) { return strcmp(a, b) == 0; }

long headline_pairs_extract(HeadlinePairFormat fmt, const char *data, size_t n_bytes,
                            size_t min_body_chars, HeadlinePairStats *st, HeadlinePairFn emit,
                            void *ctx, char *err) {
    static const CorpusFormat cf[HP_COUNT] = {CORPUS_FMT_DEBTRANS, CORPUS_FMT_MAN, CORPUS_FMT_HTML};
    if ((unsigned)fmt >= HP_COUNT) return cx_err(err, "unknown pair format %d", (int)fmt);
    CorpusDocs docs;
    corpus_docs_init(&docs);
    if (corpus_extract(cf[fmt], data, n_bytes, &docs, err) != 0) {
        corpus_docs_free(&docs);
        return -1;
    }
    st->files++;
    Paras p = {0};
    Str body = {0};
    long emitted = 0;
    int stop = 0;
    char *html_t = fmt == HP_HTML ? html_title(data, n_bytes) : NULL;
    for (size_t d = 0; d < docs.n_docs && !stop; d++) {
        st->docs++;
        paras_split(&p, docs.text + docs.off[d], docs.len[d]);
        body.n = 0;
        if (body.s) body.s[0] = 0;
        const char *title = NULL;
        char *man_title = NULL;
        if (fmt == HP_DEBTRANS) {
            if (p.n >= 1) title = para(&p, 0);
            for (size_t i = 1; i < p.n; i++) body_add(&body, para(&p, i));
        } else if (fmt == HP_MAN) {
            size_t i = 0;
            for (; i + 1 < p.n; i++) {
                const char *h = para(&p, i);
                if (!strcmp(h, "ИМЯ") || !strcmp(h, "НАЗВАНИЕ") || !strcmp(h, "NAME") ||
                    !strcmp(h, "НАИМЕНОВАНИЕ"))
                    break;
            }
            if (i + 1 < p.n) {
                const char *line = para(&p, i + 1), *dash = NULL;
                static const char *const dashes[] = {" - ", " — ", " – ", " -- "};
                for (size_t k = 0; k < 4 && !dash; k++) {
                    const char *q = strstr(line, dashes[k]);
                    if (q) dash = q + strlen(dashes[k]);
                }
                if (dash) {
                    man_title = strdup(dash);
                    CHECK(man_title, "out of memory");
                    size_t tl = strlen(man_title);
                    while (tl > 0 && (man_title[tl - 1] == ' ' || man_title[tl - 1] == '.'))
                        man_title[--tl] = 0;
                    title = man_title;
                }
            }
            size_t j = 0;
            for (; j < p.n; j++) {
                const char *h = para(&p, j);
                if (!strcmp(h, "ОПИСАНИЕ") || !strcmp(h, "DESCRIPTION")) break;
            }
            for (j++; j < p.n; j++) {
                const char *q = para(&p, j);
                if (is_heading(q, strlen(q))) break;
                body_add(&body, q);
            }
        } else {
            title = html_t;
            for (size_t i = 0; i < p.n; i++) {
                const char *q = para(&p, i);
                if (title && title_eq(q, title)) continue;
                body_add(&body, q);
            }
        }
        int r = offer_pair(title, &body, min_body_chars, st, emit, ctx);
        free(man_title);
        if (r < 0) stop = 1;
        else emitted += r;
    }
    free(html_t);
    free(p.text.s);
    free(p.off);
    free(body.s);
    corpus_docs_free(&docs);
    if (stop) return cx_err(err, "stopped by the receiver of the pairs");
    return emitted;
}

// ---------------------------------------------------------------------------------------
// Denoising (mBART).

void headline_sentence_ends(const Bpe *bpe, uint8_t *out) {
    int V = bpe_vocab_size(bpe);
    char buf[256];
    for (int id = 0; id < V; id++) {
        int32_t x = id;
        out[id] = 0;
        if (id < BPE_N_SPECIAL) continue;
        size_t n = bpe_decode(bpe, &x, 1, buf, sizeof buf);
        if (n > sizeof buf) n = sizeof buf;
        if (memchr(buf, '\n', n)) {
            out[id] = 1;
            continue;
        }
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r')) n--;
        if (n == 0) continue;
        char c = buf[n - 1];
        if (c == '.' || c == '!' || c == '?') out[id] = 1;
        else if (n >= 3 && (unsigned char)buf[n - 3] == 0xE2 && (unsigned char)buf[n - 2] == 0x80 &&
                 (unsigned char)buf[n - 1] == 0xA6)
            out[id] = 1;
    }
}

int headline_poisson(float lambda, uint64_t seed, uint64_t counter) {
    double L = exp(-(double)lambda), p = 1.0;
    int k = 0;
    do {
        k++;
        p *= (double)cx_rng_uniform(seed, counter * 64 + (uint64_t)k) + 1e-12;
    } while (p > L && k < 64);
    return k - 1;
}

enum { TAG_PERM_SENT = 1, TAG_SPAN_LEN = 2, TAG_SPAN_POS = 3 };

size_t headline_denoise(const DenoiseConfig *c, const uint8_t *sent_end, const int32_t *in,
                        size_t n, uint64_t seed, uint64_t sample, int32_t *out,
                        int32_t *scratch, size_t *n_masked) {
    const uint64_t base = cx_rng_derive(seed, sample);
    int32_t *perm = scratch, *mark = scratch + n, *ins = scratch + 2 * n;
    if (n_masked) *n_masked = 0;
    if (n == 0) return 0;
    // 1. sentence permutation: sentences are [starts[k], starts[k+1]); mark[] holds starts
    size_t n_sent = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || (sent_end && sent_end[in[i - 1]])) mark[n_sent++] = (int32_t)i;
    if (c->permute_sentences && n_sent > 1) {
        // ins[] holds the sentence order (Fisher-Yates)
        uint64_t ps = cx_rng_derive(base, TAG_PERM_SENT);
        for (size_t k = 0; k < n_sent; k++) ins[k] = (int32_t)k;
        for (size_t k = n_sent - 1; k > 0; k--) {
            size_t j = (size_t)(cx_rng_u64(ps, k) % (k + 1));
            int32_t t = ins[k];
            ins[k] = ins[j];
            ins[j] = t;
        }
        size_t o = 0;
        for (size_t k = 0; k < n_sent; k++) {
            size_t s = (size_t)mark[ins[k]], e = (size_t)ins[k] + 1 < n_sent ? (size_t)mark[ins[k] + 1] : n;
            memcpy(perm + o, in + s, (e - s) * sizeof *in);
            o += e - s;
        }
    } else {
        memcpy(perm, in, n * sizeof *in);
    }
    // 2. span masking: mark[i] = 1 for masked tokens, ins[i] = 1 for a [MASK] inserted
    //    before position i (zero-length spans)
    memset(mark, 0, n * sizeof *mark);
    memset(ins, 0, (n + 1) * sizeof *ins);
    size_t target = (size_t)floor((double)c->mask_ratio * (double)n + 0.5), masked = 0;
    uint64_t ls = cx_rng_derive(base, TAG_SPAN_LEN), pos = cx_rng_derive(base, TAG_SPAN_POS);
    for (uint64_t draw = 0; masked < target && draw < 4 * (uint64_t)n + 16; draw++) {
        int L = headline_poisson(c->poisson_lambda, ls, draw);
        if (L == 0) {
            ins[cx_rng_u64(pos, draw) % (n + 1)] = 1;
            continue;
        }
        size_t start = (size_t)(cx_rng_u64(pos, draw) % n);
        for (size_t i = start; i < n && i < start + (size_t)L && masked < target; i++)
            if (!mark[i]) mark[i] = 1, masked++;
    }
    // 3. every run of masked tokens (and every insertion) becomes one [MASK]
    size_t o = 0;
    for (size_t i = 0; i <= n; i++) {
        if (ins[i] && (o == 0 || out[o - 1] != ED_MASK)) out[o++] = ED_MASK;
        if (i == n) break;
        if (mark[i]) {
            if (o == 0 || out[o - 1] != ED_MASK) out[o++] = ED_MASK;
        } else {
            out[o++] = perm[i];
        }
    }
    if (n_masked) *n_masked = masked;
    return o;
}

// ---------------------------------------------------------------------------------------
// Training tasks.

#define TAG_PERM 0x7E4Dull
enum { MIN_WINDOW = 8 };

static void make_perm(HeadlineTask *ht, uint64_t epoch) {
    uint64_t ps = cx_rng_derive(cx_rng_derive(ht->seed, TAG_PERM), epoch);
    for (size_t i = 0; i < ht->n; i++) ht->perm[i] = (uint32_t)i;
    for (size_t i = ht->n - 1; i > 0; i--) {
        size_t j = (size_t)(cx_rng_u64(ps, i) % (i + 1));
        uint32_t t = ht->perm[i];
        ht->perm[i] = ht->perm[j];
        ht->perm[j] = t;
    }
    ht->perm_epoch = epoch;
}

static size_t example_index(HeadlineTask *ht, uint64_t s) {
    uint64_t e = s / ht->n, r = s % ht->n;
    if (!ht->shuffle || ht->n < 2) return (size_t)r;
    if (ht->perm_epoch != e) make_perm(ht, e);
    return ht->perm[r];
}

void headline_task_example(HeadlineTask *ht, uint64_t s, int32_t *src, int *ns, int32_t *tgt,
                           int *nt) {
    size_t e = example_index(ht, s);
    const int32_t *a, *h;
    size_t na, nh;
    if (ht->kind == 0) {
        const Pairs *p = ht->pairs;
        a = p->src + p->src_off[e];
        na = (size_t)(p->src_off[e + 1] - p->src_off[e]);
        h = p->tgt + p->tgt_off[e];
        nh = (size_t)(p->tgt_off[e + 1] - p->tgt_off[e]);
    } else {
        h = ht->tokens + ht->win_off[e];
        nh = (size_t)(ht->win_off[e + 1] - ht->win_off[e]);
        // the work buffer holds 2 n + 1 output ids then 3 n + 1 scratch ids
        int32_t *outb = ht->work, *scr = ht->work + 2 * nh + 1;
        na = headline_denoise(&ht->dn, ht->sent_end, h, nh, ht->seed, s, outb, scr, NULL);
        a = outb;
    }
    size_t ms = (size_t)ht->Ts - 2, mt = (size_t)ht->Tt - 1;
    if (na > ms) na = ms;
    if (nh > mt) nh = mt;
    src[0] = ED_BOS;  // [CLS]
    memcpy(src + 1, a, na * sizeof *a);
    src[na + 1] = ED_EOS;  // [SEP]
    *ns = (int)na + 2;
    memcpy(tgt, h, nh * sizeof *h);
    tgt[nh] = ED_EOS;
    *nt = (int)nh + 1;
}

static double headline_micro_step(void *ctx, uint64_t s0, int B, int backward, int final,
                                  long *n_tokens, double *aux_sum) {
    HeadlineTask *ht = ctx;
    const int Ts = ht->Ts, Tt = ht->Tt;
    int *ls = ht->lens, *lt = ht->lens + ht->B, ms = 1, mt = 1;
    CHECK(B >= 1 && B <= ht->B, "micro-batch of %d (the task holds %d)", B, ht->B);
    long real = 0;
    // unpadded rows first (stride Ts / Tt), then packed to the batch's longest
    for (int b = 0; b < B; b++) {
        headline_task_example(ht, s0 + (uint64_t)b, ht->bsrc + (size_t)b * Ts, &ls[b],
                              ht->btgt + (size_t)b * Tt, &lt[b]);
        if (ls[b] > ms) ms = ls[b];
        if (lt[b] > mt) mt = lt[b];
        real += ls[b];
    }
    for (int b = 0; b < B; b++) {
        int32_t *s = ht->bsrc + (size_t)b * ms, *t = ht->btgt + (size_t)b * mt;
        memmove(s, ht->bsrc + (size_t)b * Ts, (size_t)ls[b] * sizeof *s);
        for (int i = ls[b]; i < ms; i++) s[i] = ED_PAD;
        memmove(t, ht->btgt + (size_t)b * Tt, (size_t)lt[b] * sizeof *t);
        for (int i = lt[b]; i < mt; i++) t[i] = ED_PAD;
    }
    if (backward) ht->src_tokens_seen += (uint64_t)real;
    EncDecBatch batch = {.B = B, .Ts = ms, .Tt = mt, .src = ht->bsrc, .tgt = ht->btgt,
                         .sample_index0 = s0, .final_micro = final};
    if (aux_sum) *aux_sum = 0.0;
    return encdec_step(ht->model, &batch, backward, backward, ht->dropout_seed, n_tokens);
}

static void task_common(HeadlineTask *ht, TrainTask *task, EncDec *model, int Ts, int Tt,
                        int micro_batch, uint64_t seed, int shuffle, uint64_t dropout_seed) {
    ht->model = model;
    ht->Ts = Ts;
    ht->Tt = Tt;
    ht->B = micro_batch;
    ht->seed = seed;
    ht->shuffle = shuffle;
    ht->dropout_seed = dropout_seed;
    ht->perm = cx_calloc(ht->n ? ht->n : 1, sizeof(uint32_t));
    ht->perm_epoch = UINT64_MAX;
    ht->bsrc = cx_calloc((size_t)micro_batch * Ts, sizeof(int32_t));
    ht->btgt = cx_calloc((size_t)micro_batch * Tt, sizeof(int32_t));
    ht->work = cx_calloc(5 * (size_t)Ts + 8, sizeof(int32_t));
    ht->lens = cx_calloc(2 * (size_t)micro_batch, sizeof(int));
    memset(task, 0, sizeof *task);
    task->ctx = ht;
    task->params = encdec_params(model);
    task->grads = encdec_grads(model);
    task->n_params = encdec_n_params(model);
    task->specs = encdec_specs(model);
    task->n_specs = encdec_n_specs(model);
    task->micro_batch = micro_batch;
    task->micro_step = headline_micro_step;
}

void headline_task_pairs(HeadlineTask *ht, TrainTask *task, EncDec *model, const Pairs *p,
                         int Ts, int Tt, int micro_batch, uint64_t seed, int shuffle,
                         uint64_t dropout_seed) {
    CHECK(p->n_pairs >= 1 && Ts >= 3 && Tt >= 2 && p->vocab_size <= encdec_config(model)->enc.vocab_size,
          "pair task: %zu pairs, Ts %d, Tt %d, vocabulary %d (model %d)", p->n_pairs, Ts, Tt,
          p->vocab_size, encdec_config(model)->enc.vocab_size);
    memset(ht, 0, sizeof *ht);
    ht->kind = 0;
    ht->pairs = p;
    ht->n = p->n_pairs;
    task_common(ht, task, model, Ts, Tt, micro_batch, seed, shuffle, dropout_seed);
}

int headline_task_denoise(HeadlineTask *ht, TrainTask *task, EncDec *model, const Shard *sh,
                          const DenoiseConfig *dn, const uint8_t *sent_end, int Ts, int Tt,
                          int micro_batch, uint64_t seed, int shuffle, uint64_t dropout_seed,
                          char *err) {
    memset(ht, 0, sizeof *ht);
    if (sh->vocab_size > encdec_config(model)->enc.vocab_size)
        return cx_err(err, "the shard's vocabulary (%d) exceeds the model's (%d)", sh->vocab_size,
                      encdec_config(model)->enc.vocab_size);
    if (Ts < MIN_WINDOW + 2 || Tt < 2)
        return cx_err(err, "data.src_len must be >= %d for denoising", MIN_WINDOW + 2);
    const size_t W = (size_t)Ts - 2;
    size_t n_win = 0, n_tok = 0;
    for (size_t d = 0; d < sh->n_docs; d++) {
        size_t len = (size_t)(sh->doc_offsets[d + 1] - sh->doc_offsets[d]);
        for (size_t o = 0; o < len; o += W) {
            size_t w = len - o < W ? len - o : W;
            if (w >= MIN_WINDOW) n_win++, n_tok += w;
        }
    }
    if (n_win == 0)
        return cx_err(err, "no document has %d tokens or more: nothing to denoise", MIN_WINDOW);
    ht->tokens = cx_calloc(n_tok ? n_tok : 1, sizeof(int32_t));
    ht->win_off = cx_calloc(n_win + 1, sizeof(int64_t));
    size_t k = 0, t = 0;
    for (size_t d = 0; d < sh->n_docs; d++) {
        size_t len = (size_t)(sh->doc_offsets[d + 1] - sh->doc_offsets[d]);
        const int32_t *doc = sh->tokens + sh->doc_offsets[d];
        for (size_t o = 0; o < len; o += W) {
            size_t w = len - o < W ? len - o : W;
            if (w < MIN_WINDOW) continue;
            memcpy(ht->tokens + t, doc + o, w * sizeof(int32_t));
            t += w;
            ht->win_off[++k] = (int64_t)t;
        }
    }
    ht->kind = 1;
    ht->dn = *dn;
    ht->sent_end = sent_end;
    ht->n = n_win;
    task_common(ht, task, model, Ts, Tt, micro_batch, seed, shuffle, dropout_seed);
    return 0;
}

void headline_task_free(HeadlineTask *ht) {
    free(ht->tokens);
    free(ht->win_off);
    free(ht->perm);
    free(ht->bsrc);
    free(ht->btgt);
    free(ht->work);
    free(ht->lens);
    memset(ht, 0, sizeof *ht);
}

// ---------------------------------------------------------------------------------------
// Configuration: table-driven INI on inih, as io/config.c.

static const char *const OBJECTIVE_NAMES[] = {"headline", "denoise", NULL};  // HeadlineObjective

#define F(sec, key, type, field) {sec, key, type, offsetof(HeadlineConfig, field), 0, NULL, NULL}
#define S(sec, key, field) {sec, key, CFG_STR, offsetof(HeadlineConfig, field), HL_PATH_LEN, NULL, NULL}
#define E(sec, key, field, names, what) {sec, key, CFG_ENUM, offsetof(HeadlineConfig, field), 0, names, what}
static const CfgKey KEYS[] = {
    F("model", "vocab_size", CFG_INT, model.enc.vocab_size),
    F("model", "embedding_size", CFG_INT, model.enc.embedding_size),
    F("model", "hidden_size", CFG_INT, model.enc.hidden_size),
    F("model", "num_heads", CFG_INT, model.enc.num_heads),
    F("model", "intermediate_size", CFG_INT, model.enc.intermediate_size),
    F("model", "num_layers", CFG_INT, model.enc.num_layers),
    F("model", "max_position", CFG_INT, model.enc.max_position),
    F("model", "dropout", CFG_FLOAT, model.enc.dropout),
    F("model", "layer_norm_eps", CFG_FLOAT, model.enc.ln_eps),
    F("model", "init_std", CFG_FLOAT, model.enc.init_std),
    F("decoder", "num_layers", CFG_INT, model.dec_layers),
    F("decoder", "num_heads", CFG_INT, model.dec_heads),
    F("decoder", "intermediate_size", CFG_INT, model.dec_intermediate),
    F("decoder", "max_position", CFG_INT, model.dec_max_position),
    F("decoder", "dropout", CFG_FLOAT, model.dec_dropout),
    F("decoder", "label_smoothing", CFG_FLOAT, model.label_smoothing),
    CFG_OPTIM_KEYS(HeadlineConfig, "optim", optim),
    F("optim", "separate_decoder", CFG_INT, separate_decoder),
    F("optim_decoder", "lr", CFG_FLOAT, optim_dec.lr),
    F("optim_decoder", "weight_decay", CFG_FLOAT, optim_dec.weight_decay),
    E("optim_decoder", "schedule", optim_dec.schedule, CFG_SCHED_NAMES, "a schedule"),
    F("optim_decoder", "warmup_steps", CFG_LONG, optim_dec.warmup_steps),
    F("optim_decoder", "end_lr", CFG_FLOAT, optim_dec.end_lr),
    F("optim_decoder", "poly_power", CFG_FLOAT, optim_dec.poly_power),
    E("data", "objective", data.objective, OBJECTIVE_NAMES, "an objective"),
    S("data", "train", data.train),
    S("data", "valid", data.valid),
    S("data", "tokenizer", data.tokenizer),
    F("data", "src_len", CFG_INT, data.src_len),
    F("data", "tgt_len", CFG_INT, data.tgt_len),
    F("data", "mask_ratio", CFG_FLOAT, data.mask_ratio),
    F("data", "poisson_lambda", CFG_FLOAT, data.poisson_lambda),
    F("data", "permute_sentences", CFG_INT, data.permute_sentences),
    F("data", "lowercase", CFG_INT, data.lowercase),
    CFG_TRAIN_KEYS(HeadlineConfig, train),
    S("init", "encoder", init.encoder),
    S("init", "from", init.from),
    F("init", "lm_head", CFG_INT, init.lm_head),
    S("run", "dir", run.dir),
    F("generate", "beam", CFG_INT, generate.beam),
    F("generate", "min_len", CFG_INT, generate.min_len),
    F("generate", "max_len", CFG_INT, generate.max_len),
    F("generate", "alpha", CFG_FLOAT, generate.alpha),
    F("generate", "block_trigrams", CFG_INT, generate.block_trigrams),
};
#undef F
#undef S
#undef E
const CfgSchema HEADLINE_CONFIG_SCHEMA = {KEYS, sizeof KEYS / sizeof KEYS[0]};

const char *headline_objective_name(int objective) {
    return objective == HL_OBJ_DENOISE ? "denoise" : "headline";
}


void headline_config_defaults(HeadlineConfig *c) {
    memset(c, 0, sizeof *c);
    // the encoder: conflux-train's default ALBERT (make demo), so --init-encoder fits
    c->model.enc = (AlbertConfig){.vocab_size = 8192, .embedding_size = 128, .hidden_size = 256,
                                  .num_heads = 4, .intermediate_size = 1024, .num_layers = 4,
                                  .max_position = 512, .dropout = 0.1f, .ln_eps = 1e-12f,
                                  .init_std = 0.02f};
    c->model.dec_layers = 2;
    c->model.dec_heads = 4;
    c->model.dec_intermediate = 1024;
    c->model.dec_max_position = 128;
    c->model.dec_dropout = 0.1f;
    c->model.label_smoothing = 0.1f;
    // BertSumAbs: a pretrained encoder with a small learning rate and a long warm-up, a fresh
    // decoder with a large one and a shorter warm-up (both inverse square root)
    // (peaks 2e-4 / 1.5e-3 suit this small model on 2 cores; BertSumAbs's BERT-base used
    // 2e-3 * 20000^-0.5 = 1.4e-5 and 0.2 * 10000^-0.5 = 2e-3)
    c->optim = (OptimConfig){.kind = OPTIM_ADAMW, .lr = 2e-4f, .beta1 = 0.9f, .beta2 = 0.999f,
                             .eps = 1e-8f, .weight_decay = 0.01f, .clip_norm = 1.0f,
                             .schedule = SCHED_INVSQRT, .warmup_steps = 150, .total_steps = 2500,
                             .end_lr = 0.0f, .poly_power = 1.0f};
    c->optim_dec = c->optim;
    c->optim_dec.lr = 1.5e-3f;
    c->optim_dec.warmup_steps = 100;
    c->separate_decoder = 1;
    c->data.objective = HL_OBJ_HEADLINE;
    snprintf(c->data.train, HL_PATH_LEN, "build/data/headline/train.h5");
    snprintf(c->data.valid, HL_PATH_LEN, "build/data/headline/valid.h5");
    snprintf(c->data.tokenizer, HL_PATH_LEN, "build/data/tokenizer");
    c->data.src_len = 128;
    c->data.tgt_len = 32;
    c->data.mask_ratio = 0.35f;
    c->data.poisson_lambda = 3.5f;
    c->data.permute_sentences = 1;
    c->data.lowercase = 0;
    c->train.global_batch = 16;
    c->train.micro_batch = 16;
    c->train.steps = 2500;
    c->train.seed = 1234;
    c->train.eval_every = 500;
    c->train.eval_samples = 512;
    c->train.checkpoint_every = 500;
    c->train.threads = 0;
    c->train.log_every = 50;
    c->train.replica_check_every = 0;  // the checkpoint steps, the last step and a stop
    c->init.lm_head = 1;
    snprintf(c->run.dir, HL_PATH_LEN, "runs/headline");
    c->generate.beam = 4;
    c->generate.min_len = 3;
    c->generate.max_len = 30;
    c->generate.alpha = 0.9f;
    c->generate.block_trigrams = 1;
}

int headline_config_load_file(HeadlineConfig *c, const char *path, char *err) {
    return cfg_load_file(&HEADLINE_CONFIG_SCHEMA, c, path, err);
}

int headline_config_load_string(HeadlineConfig *c, const char *text, const char *where,
                                char *err) {
    return cfg_load_string(&HEADLINE_CONFIG_SCHEMA, c, text, where, err);
}

int headline_config_set(HeadlineConfig *c, const char *assignment, char *err) {
    return cfg_set(&HEADLINE_CONFIG_SCHEMA, c, assignment, err);
}

OptimConfig headline_decoder_optim(const HeadlineConfig *c) {
    OptimConfig o = c->optim;  // shared settings, the decoder's schedule
    o.lr = c->optim_dec.lr;
    o.weight_decay = c->optim_dec.weight_decay;
    o.warmup_steps = c->optim_dec.warmup_steps;
    o.end_lr = c->optim_dec.end_lr;
    o.poly_power = c->optim_dec.poly_power;
    o.schedule = c->optim_dec.schedule;
    o.total_steps = c->train.steps;
    return o;
}

int headline_config_check(const HeadlineConfig *c, char *err) {
    if (encdec_config_check(&c->model, err) != 0) return -1;
    OptimConfig o = c->optim;
    o.total_steps = c->train.steps;
    if (optim_config_check(&o, err) != 0) return -1;
    if (c->separate_decoder) {
        o = headline_decoder_optim(c);
        char e2[CX_ERRLEN];
        if (optim_config_check(&o, e2) != 0) {
            const char *k = strncmp(e2, "optim.", 6) == 0 ? e2 + 6 : e2;
            return cx_err(err, "optim_decoder.%s", k);
        }
    }
    if (c->separate_decoder != 0 && c->separate_decoder != 1)
        return cx_err(err, "optim.separate_decoder must be 0 or 1");
    if (c->data.src_len < 3 || c->data.src_len > c->model.enc.max_position)
        return cx_err(err, "data.src_len (%d) must be in [3, model.max_position=%d]",
                      c->data.src_len, c->model.enc.max_position);
    if (c->data.tgt_len < 2 || c->data.tgt_len > c->model.dec_max_position)
        return cx_err(err, "data.tgt_len (%d) must be in [2, decoder.max_position=%d]",
                      c->data.tgt_len, c->model.dec_max_position);
    if (!(c->data.mask_ratio >= 0.0f && c->data.mask_ratio < 1.0f))
        return cx_err(err, "data.mask_ratio must be in [0, 1)");
    if (!(c->data.poisson_lambda > 0.0f && c->data.poisson_lambda <= 30.0f))
        return cx_err(err, "data.poisson_lambda must be in (0, 30]");
    if (train_settings_check(&c->train, err) != 0) return -1;
    if (c->init.encoder[0] && c->init.from[0])
        return cx_err(err, "init.encoder and init.from exclude each other");
    if (c->generate.beam < 1) return cx_err(err, "generate.beam must be >= 1");
    if (c->generate.max_len < 1 || c->generate.max_len > c->model.dec_max_position)
        return cx_err(err, "generate.max_len (%d) must be in [1, decoder.max_position=%d]",
                      c->generate.max_len, c->model.dec_max_position);
    if (c->generate.min_len < 0 || c->generate.min_len >= c->generate.max_len)
        return cx_err(err, "generate.min_len must be in [0, generate.max_len)");
    if (!(c->generate.alpha >= 0.0f)) return cx_err(err, "generate.alpha must be >= 0");
    if (!c->data.train[0]) return cx_err(err, "data.train must name a shard");
    if (!c->run.dir[0]) return cx_err(err, "run.dir must name a directory");
    return 0;
}

size_t headline_config_to_ini(const HeadlineConfig *c, char *buf, size_t cap) {
    return cfg_to_ini(&HEADLINE_CONFIG_SCHEMA, c, buf, cap);
}
