// headline_pairs.c: (title, body) pairs from Debian's Russian texts (see headline_pairs.h).
#include "io/corpus/headline_pairs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/corpus/corpus.h"
#include "io/eval/rouge.h"
#include "io/news/news.h"
#include "io/text/utf8.h"
#include "models/common.h"

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

