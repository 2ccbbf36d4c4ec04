// news.c: streaming readers for the RIA, Lenta.ru and ODS news datasets (see news.h).
//
// Layout: a byte source (plain read(2) or zlib inflate, chosen by the magic bytes) fills
// one window buffer; the RIA reader cuts it into lines and parses each line with a
// single-pass JSON scanner (strings unescaped and UTF-8-checked into an arena), then
// converts the body from HTML to text; the CSV reader parses one RFC 4180 record at a
// time from the window (again into the arena), re-parsing a record that crosses the
// window's end after the next fill. Every buffer is bounded by max_record_bytes.
#include "io/news/news.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include "io/text/entity.h"
#include "io/text/utf8.h"
#include "models/common.h"

#define NEWS_CHUNK      ((size_t)1 << 20) // bytes per read into the window
#define NEWS_ZIN_BYTES  ((size_t)1 << 18) // compressed input buffer
#define NEWS_REPORT_MAX 20                // skipped records printed per file by default
#define NEWS_MAX_COLS   4096              // CSV header columns

// ---------------------------------------------------------------------------------
// Names

static const char *const FORMAT_NAMES[NEWS_FMT_COUNT] = {"auto", "ria", "lenta", "ods"};
static const char *const BAD_NAMES[NEWS_BAD_COUNT] = {"syntax", "utf8", "too_long", "missing"};

const char *news_format_name(NewsFormat fmt) {
    if ((int)fmt < 0 || fmt >= NEWS_FMT_COUNT) return NULL;
    return FORMAT_NAMES[fmt];
}

int news_format_parse(const char *name, NewsFormat *out) {
    for (int i = 0; i < NEWS_FMT_COUNT; i++) {
        if (strcmp(name, FORMAT_NAMES[i]) == 0) {
            *out = (NewsFormat)i;
            return 0;
        }
    }
    return -1;
}

const char *news_bad_name(NewsBad reason) {
    if ((int)reason < 0 || reason >= NEWS_BAD_COUNT) return NULL;
    return BAD_NAMES[reason];
}

// ---------------------------------------------------------------------------------
// HTML to text

// What an entity stands for besides UTF-8 text: one of two markers.
static const char ENT_SPACE[] = " "; // whitespace (collapses)
static const char ENT_DROP[] = "";   // nothing (soft hyphen)

// Windows-1252 meaning of &#128;..&#159; (browsers decode them so); 0 where undefined.
static const uint16_t CP1252_80[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,
};

enum { TAG_INLINE = 0, TAG_BLOCK, TAG_SPACE, TAG_SKIP };

// Block elements of three letters or more (the one- and two-letter ones are in tag_kind).
static const char *const BLOCK_TAGS[] = {
    "div",     "pre",    "nav",     "table",      "blockquote", "section", "article", "header",
    "footer",  "aside",  "figure",  "figcaption", "address",    "center",  "form",    "main",
    "caption", "option", "details", "summary",    "tbody",      "thead",   "tfoot",   "iframe",
};

// Kind of the tag named by name[0..n) (any ASCII case).
static int tag_kind(const char *name, size_t n) {
    char low[12];
    if (n == 0 || n >= sizeof low) return TAG_INLINE;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    low[n] = '\0';
    if (n == 1) return low[0] == 'p' ? TAG_BLOCK : TAG_INLINE;
    if (n == 2) {
        char a = low[0], b = low[1];
        if (a == 'h' && b >= '1' && b <= '6') return TAG_BLOCK;
        if (a == 't' && (b == 'd' || b == 'h')) return TAG_SPACE;
        static const char two[] = "brlitrulolhrdldtdd";
        for (size_t k = 0; k + 1 < sizeof two; k += 2)
            if (two[k] == a && two[k + 1] == b) return TAG_BLOCK;
        return TAG_INLINE;
    }
    // the frequent inline ones first
    if ((n == 6 && !memcmp(low, "strong", 6)) || (n == 3 && !memcmp(low, "img", 3)) ||
        (n == 4 && !memcmp(low, "span", 4)))
        return TAG_INLINE;
    for (size_t i = 0; i < sizeof BLOCK_TAGS / sizeof BLOCK_TAGS[0]; i++)
        if (strcmp(low, BLOCK_TAGS[i]) == 0) return TAG_BLOCK;
    if (strcmp(low, "script") == 0 || strcmp(low, "style") == 0) return TAG_SKIP;
    return TAG_INLINE;
}

static inline int is_alpha(unsigned c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static inline int is_alnum(unsigned c) { return is_alpha(c) || (c >= '0' && c <= '9'); }

// Case-insensitive search for the ASCII string pat (lowercase) in s[0..n). Returns the
// offset or n when absent.
static size_t find_ci(const char *s, size_t n, const char *pat) {
    size_t m = strlen(pat);
    for (size_t i = 0; i + m <= n; i++) {
        const char *p = memchr(s + i, '<', n - i);
        if (!p) return n;
        i = (size_t)(p - s);
        if (i + m > n) return n;
        if (strncasecmp(s + i, pat, m) == 0) return i;
    }
    return n;
}

// Parses the markup that starts with '<' at s[0] (n bytes available). Returns the bytes
// it spans (0 when it is not markup: the '<' is then text) and its kind in *kind.
static size_t html_tag(const char *s, size_t n, int *kind) {
    *kind = TAG_INLINE;
    if (n < 2) return 0;
    unsigned c = (unsigned char)s[1];
    if (c == '!') {
        if (n >= 4 && s[2] == '-' && s[3] == '-') { // comment: to "-->" or the end
            const char *e = memmem(s + 4, n - 4, "-->", 3);
            return e ? (size_t)(e - s) + 3 : n;
        }
        const char *e = memchr(s, '>', n); // <!DOCTYPE ...>, <![CDATA[...]]> (dropped)
        return e ? (size_t)(e - s) + 1 : 0;
    }
    if (c == '?') {
        const char *e = memchr(s, '>', n);
        return e ? (size_t)(e - s) + 1 : 0;
    }
    size_t i = 1;
    int closing = 0;
    if (c == '/') {
        closing = 1;
        i = 2;
    }
    if (i >= n || !is_alpha((unsigned char)s[i])) return 0;
    size_t name = i;
    while (i < n && is_alnum((unsigned char)s[i])) i++;
    size_t name_len = i - name;
    // the end '>', skipping quoted attribute values; an unmatched quote is ignored
    size_t j = i;
    while (j < n && s[j] != '>') {
        if (s[j] == '"' || s[j] == '\'') {
            const char *q = memchr(s + j + 1, s[j], n - j - 1);
            if (!q) {
                const char *e = memchr(s + j, '>', n - j);
                if (!e) return 0;
                j = (size_t)(e - s);
                break;
            }
            j = (size_t)(q - s) + 1;
        } else {
            j++;
        }
    }
    if (j >= n) return 0;
    *kind = tag_kind(s + name, name_len);
    if (*kind == TAG_SKIP) {
        if (closing) {
            *kind = TAG_INLINE;
            return j + 1;
        }
        // drop everything up to the matching end tag (or the end)
        char pat[16];
        snprintf(pat, sizeof pat, "</%.*s", (int)name_len, s + name);
        size_t e = j + 1 + find_ci(s + j + 1, n - j - 1, pat);
        if (e >= n) return n;
        const char *gt = memchr(s + e, '>', n - e);
        return gt ? (size_t)(gt - s) + 1 : n;
    }
    return j + 1;
}

// Decodes the entity that starts with '&' at s[0] (n bytes available): "&name;" with a
// name of ENTITY_NEWS, "&#digits;" (at most 8) or "&#xhex;" (at most 7), the ';' required.
// Returns the bytes it spans (0 when it is not one we decode: the '&' is then text) and
// what it stands for in *utf8: ENT_SPACE, ENT_DROP, or its UTF-8 text (NUL-terminated) in
// cp_buf (room for 5 bytes).
static size_t html_entity(const char *s, size_t n, const char **utf8, char *cp_buf) {
    if (n < 3) return 0;
    uint32_t cp;
    size_t i;  // the ';'
    if (s[1] == '#') {
        int hex = s[2] == 'x' || s[2] == 'X';
        size_t start = hex ? 3 : 2;
        size_t digits = entity_read_number(s + start, n - start, hex, hex ? 7 : 8, &cp);
        i = start + digits;
        if (digits == 0 || i >= n || s[i] != ';') return 0;
        if (cp >= 0x80 && cp < 0xA0) {
            cp = CP1252_80[cp - 0x80];
            if (!cp) return 0;
        }
    } else {
        i = 1;
        while (i < n && i <= 8 && is_alnum((unsigned char)s[i])) i++;
        if (i >= n || s[i] != ';' || i == 1) return 0;
        cp = entity_lookup(s + 1, i - 1, ENTITY_NEWS);
        if (!cp) return 0;
    }
    if (cp == 0x09 || cp == 0x0A || cp == 0x0C || cp == 0x0D || cp == 0x20 || cp == 0xA0 ||
        cp == 0x2002 || cp == 0x2003 || cp == 0x2009) {
        *utf8 = ENT_SPACE;
    } else if (cp == 0xAD) {
        *utf8 = ENT_DROP;
    } else {
        if (cp < 0x20 || cp == 0x7F || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        cp_buf[utf8_encode(cp, cp_buf)] = '\0';
        *utf8 = cp_buf;
    }
    return i + 1;
}

// Byte classes of the HTML pass.
enum { HC_TEXT = 0, HC_SPACE, HC_LT, HC_AMP, HC_CTRL, HC_C2 };

// (0-31 and 127 controls, except \t \n \v \f \r which are spaces like ' '; 0xC2 leads
// U+00A0 and U+00AD.)
static const unsigned char HTML_CLASS[256] = {
    4, 4, 4, 4, 4, 4, 4, 4, 4, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

size_t news_html_to_text(const char *html, size_t n_bytes, char *out, int strip_tags) {
    const unsigned char *in = (const unsigned char *)html;
    size_t i = 0, o = 0;
    int pend = 0; // separator owed before the next visible byte: 0, 1 space, 2 newline
    char cp_buf[8];
#define EMIT_PENDING()                                                                             \
    do {                                                                                           \
        if (pend) {                                                                                \
            if (o) out[o++] = pend == 2 ? '\n' : ' ';                                              \
            pend = 0;                                                                              \
        }                                                                                          \
    } while (0)
    while (i < n_bytes) {
        unsigned c = in[i];
        switch (HTML_CLASS[c]) {
        case HC_TEXT:
            EMIT_PENDING();
            do out[o++] = (char)in[i++];
            while (i < n_bytes && HTML_CLASS[in[i]] == HC_TEXT);
            break;
        case HC_SPACE:
            if (!pend) pend = 1;
            i++;
            break;
        case HC_CTRL: i++; break;
        case HC_C2:
            if (i + 1 < n_bytes && in[i + 1] == 0xA0) { // U+00A0 no-break space
                if (!pend) pend = 1;
                i += 2;
            } else if (i + 1 < n_bytes && in[i + 1] == 0xAD) { // U+00AD soft hyphen
                i += 2;
            } else {
                EMIT_PENDING();
                out[o++] = (char)in[i++];
            }
            break;
        case HC_AMP: {
            const char *u = NULL;
            size_t k = html_entity(html + i, n_bytes - i, &u, cp_buf);
            if (!k) {
                EMIT_PENDING();
                out[o++] = '&';
                i++;
            } else if (u == ENT_SPACE) {
                if (!pend) pend = 1;
                i += k;
            } else {
                if (u != ENT_DROP) {
                    EMIT_PENDING();
                    for (; *u; u++) out[o++] = *u;
                }
                i += k;
            }
            break;
        }
        case HC_LT: {
            int kind;
            size_t k = strip_tags ? html_tag(html + i, n_bytes - i, &kind) : 0;
            if (!k) {
                EMIT_PENDING();
                out[o++] = '<';
                i++;
            } else {
                if (kind == TAG_BLOCK)
                    pend = 2;
                else if (kind == TAG_SPACE && !pend)
                    pend = 1;
                i += k;
            }
            break;
        }
        }
    }
#undef EMIT_PENDING
    out[o] = '\0';
    return o;
}

// ---------------------------------------------------------------------------------
// The reader

typedef struct CsvParse CsvParse;

struct NewsReader {
    char *path;
    NewsFormat fmt;
    NewsLimits lim;
    int fd;
    // source
    int gz, z_ready, z_member_done, file_eof;
    z_stream zs;
    unsigned char *zin;
    // window: unconsumed data is buf[beg..end)
    char *buf;
    size_t cap, cap_max, beg, end;
    int eof;   // the source has nothing more
    int state; // 0 reading, 1 finished, -1 failed
    char fatal[CX_ERRLEN];
    uint64_t line;  // line number of buf[beg]
    size_t scanned; // ria: bytes after beg already known to hold no '\n'
    // per-record output
    char *arena, *out;
    size_t arena_cap, out_cap;
    // csv
    int ncols, n_store;
    int col_title, col_text, col_url, col_date, col_topic;
    size_t *f_off, *f_len;
    // a region being skipped: a too-long record, or a syntax error being resynchronised
    int skip;         // SKIP_NONE, SKIP_LINE, SKIP_CSV
    int skip_quoted;  // SKIP_CSV: inside a quoted field
    int mid_line;     // skipping has consumed bytes after the last '\n'
    int rs_active;    // a syntax error is pending: its report waits for resync
    uint64_t rs_line; // line of the first bad record of the region
    NewsBad rs_reason;
    char rs_msg[256];
    NewsStats st;
    unsigned n_reported;
};

enum { SKIP_NONE = 0, SKIP_LINE, SKIP_CSV };

static void report(NewsReader *r, uint64_t line, NewsBad reason, const char *msg) {
    r->st.bad_rows++;
    r->st.bad[reason]++;
    if (r->lim.on_bad) {
        r->lim.on_bad(r->lim.on_bad_ctx, line, reason, msg);
        return;
    }
    if (r->n_reported < NEWS_REPORT_MAX)
        fprintf(stderr, "news: %s:%llu: skipped (%s): %s\n", r->path, (unsigned long long)line,
                BAD_NAMES[reason], msg);
    else if (r->n_reported == NEWS_REPORT_MAX)
        fprintf(stderr, "news: %s: further skipped records are only counted (news_stats)\n",
                r->path);
    r->n_reported++;
}

// Marks r failed with the message already in r->fatal; copies it to err. Returns -1.
static int fail_fatal(NewsReader *r, char *err) {
    r->state = -1;
    return cx_err(err, "%s", r->fatal);
}

// Reads up to want bytes of the file into dst. Returns the count (0 at end of file), or
// -1 with r->fatal set.
static ssize_t file_read(NewsReader *r, void *dst, size_t want) {
    for (;;) {
        ssize_t n = read(r->fd, dst, want);
        if (n >= 0) {
            r->st.file_bytes += (uint64_t)n;
            return n;
        }
        if (errno == EINTR) continue;
        snprintf(r->fatal, sizeof r->fatal, "%s: read error after %llu bytes: %s", r->path,
                 (unsigned long long)r->st.file_bytes, strerror(errno));
        return -1;
    }
}

// Puts up to room decompressed bytes at dst. Returns the count (0 at the end of the
// data), or -1 with r->fatal set.
static ssize_t src_read(NewsReader *r, char *dst, size_t room) {
    if (!r->gz) {
        ssize_t n = file_read(r, dst, room);
        if (n > 0) r->st.data_bytes += (uint64_t)n;
        return n;
    }
    z_stream *z = &r->zs;
    for (;;) {
        if (z->avail_in == 0 && !r->file_eof) {
            ssize_t n = file_read(r, r->zin, NEWS_ZIN_BYTES);
            if (n < 0) return -1;
            if (n == 0) r->file_eof = 1;
            z->next_in = r->zin;
            z->avail_in = (uInt)n;
        }
        if (r->z_member_done) {
            if (z->avail_in == 0 && r->file_eof) return 0;
            if (z->avail_in == 0) continue;
            if (z->next_in[0] != 0x1f) {
                snprintf(r->fatal, sizeof r->fatal,
                         "%s: data that is not gzip after the end of the compressed stream "
                         "(at compressed byte %llu)",
                         r->path, (unsigned long long)(r->st.file_bytes - z->avail_in));
                return -1;
            }
            inflateReset(z); // another gzip member follows (concatenated .gz files)
            r->z_member_done = 0;
        }
        if (z->avail_in == 0 && r->file_eof) {
            snprintf(r->fatal, sizeof r->fatal,
                     "%s: truncated gzip stream: the file ends after %llu compressed bytes, "
                     "before the end of the compressed data (%llu bytes decompressed)",
                     r->path, (unsigned long long)r->st.file_bytes,
                     (unsigned long long)r->st.data_bytes);
            return -1;
        }
        z->next_out = (unsigned char *)dst;
        z->avail_out = (uInt)room;
        int zr = inflate(z, Z_NO_FLUSH);
        size_t got = room - z->avail_out;
        r->st.data_bytes += got;
        if (zr == Z_STREAM_END)
            r->z_member_done = 1;
        else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            snprintf(r->fatal, sizeof r->fatal,
                     "%s: corrupt gzip data near compressed byte %llu: %s", r->path,
                     (unsigned long long)(r->st.file_bytes - z->avail_in),
                     z->msg ? z->msg : zError(zr));
            return -1;
        }
        if (got) return (ssize_t)got;
    }
}

// Appends more data to the window. Returns 1 when some was added, 0 at the end of the
// data (r->eof set), -1 with r->fatal set. The caller keeps end - beg <= max_record_bytes,
// so there is always room for NEWS_CHUNK bytes after compaction at cap_max.
static int fill(NewsReader *r) {
    if (r->eof) return 0;
    if (r->cap - r->end < NEWS_CHUNK) {
        if (r->beg > 0) {
            memmove(r->buf, r->buf + r->beg, r->end - r->beg);
            r->end -= r->beg;
            r->beg = 0;
        }
        if (r->cap - r->end < NEWS_CHUNK && r->cap < r->cap_max) {
            size_t cap = r->cap * 2;
            if (cap < r->end + NEWS_CHUNK) cap = r->end + NEWS_CHUNK;
            if (cap > r->cap_max) cap = r->cap_max;
            char *nb = realloc(r->buf, cap + 1);
            CHECK(nb != NULL, "out of memory (%zu bytes of news reader buffer)", cap);
            r->buf = nb;
            r->cap = cap;
        }
    }
    size_t room = r->cap - r->end;
    CHECK(room > 0, "news reader window full (end %zu, cap %zu)", r->end, r->cap);
    if (room > NEWS_CHUNK) room = NEWS_CHUNK;
    ssize_t n = src_read(r, r->buf + r->end, room);
    if (n < 0) return -1;
    if (n == 0) {
        r->eof = 1;
        return 0;
    }
    r->end += (size_t)n;
    return 1;
}

// Makes *buf (of *cap bytes) hold at least n + 16 bytes: doubles from 4096, but never
// past top when that is enough. The old contents are not kept. what names it in the error.
static void buf_reserve(char **buf, size_t *cap, size_t n, size_t top, const char *what) {
    if (n + 16 <= *cap) return;
    size_t c = *cap ? *cap : 4096;
    while (c < n + 16) c *= 2;
    if (c > top && n + 16 <= top) c = top;
    free(*buf);
    *buf = malloc(c);
    CHECK(*buf != NULL, "out of memory (%zu bytes of news reader %s)", c, what);
    *cap = c;
}

// Makes the per-record arena (and, with_out, the output buffer) hold at least n bytes.
// Grows by doubling, but never past what the largest window needs.
static void arenas_reserve(NewsReader *r, size_t n, int with_out) {
    size_t top = r->cap_max + NEWS_MAX_COLS + 16;
    buf_reserve(&r->arena, &r->arena_cap, n, top, "arena");
    if (with_out) buf_reserve(&r->out, &r->out_cap, n, top, "output");
}

static uint64_t count_newlines(const char *s, size_t n) {
    uint64_t k = 0;
    for (const char *p = s; (p = memchr(p, '\n', (size_t)(s + n - p))); p++) k++;
    return k;
}

// ---------------------------------------------------------------------------------
// RIA: JSON lines

// JSON string bytes: 0 ordinary ASCII, 1 '"', 2 '\\', 3 control, 4 non-ASCII
static const unsigned char JSON_CLASS[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static int hex4(const unsigned char *s, uint32_t *v) {
    uint32_t x = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = s[k], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 32) >= 'a' && (c | 32) <= 'f')
            d = (c | 32) - 'a' + 10;
        else
            return -1;
        x = x * 16 + d;
    }
    *v = x;
    return 0;
}

// A record-level problem: reason and message (column = byte offset in the line + 1).
typedef struct Problem {
    NewsBad reason;
    char msg[256];
} Problem;

static int problem(Problem *pb, NewsBad reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int problem(Problem *pb, NewsBad reason, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pb->msg, sizeof pb->msg, fmt, ap);
    va_end(ap);
    pb->reason = reason;
    return -1;
}

// Unescapes the JSON string whose opening quote is at s[*pi - 1] into out (room for the
// string's raw length), checking UTF-8. Advances *pi past the closing quote. Returns the
// decoded length, or (size_t)-1 with pb filled.
static size_t json_string(const unsigned char *s, size_t n, size_t *pi, char *out, Problem *pb) {
    size_t i = *pi, o = 0;
    for (;;) {
        // ordinary ASCII and the common 2-byte sequences (Cyrillic) in a tight loop
        while (i < n) {
            unsigned c = s[i];
            if (JSON_CLASS[c] == 0) {
                out[o++] = (char)c;
                i++;
            } else if (c >= 0xC2 && c < 0xE0 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
                out[o] = (char)c;
                out[o + 1] = (char)s[i + 1];
                o += 2;
                i += 2;
            } else {
                break;
            }
        }
        if (i >= n) {
            problem(pb, NEWS_BAD_SYNTAX, "broken JSON: unterminated string");
            return (size_t)-1;
        }
        unsigned c = s[i];
        switch (JSON_CLASS[c]) {
        case 1: *pi = i + 1; return o;
        case 3:
            problem(pb, NEWS_BAD_SYNTAX,
                    "broken JSON at column %zu: raw control character 0x%02x in a string", i + 1,
                    c);
            return (size_t)-1;
        case 4: {
            uint32_t cp;
            size_t k = utf8_decode((const char *)s + i, n - i, &cp);
            if (!k) {
                problem(pb, NEWS_BAD_UTF8, "invalid UTF-8 at column %zu (byte 0x%02x)", i + 1, c);
                return (size_t)-1;
            }
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
            break;
        }
        default: { // backslash
            if (i + 1 >= n) {
                problem(pb, NEWS_BAD_SYNTAX, "broken JSON: unterminated string");
                return (size_t)-1;
            }
            unsigned e = s[i + 1];
            const char *simple = NULL;
            switch (e) {
            case '"': simple = "\""; break;
            case '\\': simple = "\\"; break;
            case '/': simple = "/"; break;
            case 'b': simple = "\b"; break;
            case 'f': simple = "\f"; break;
            case 'n': simple = "\n"; break;
            case 'r': simple = "\r"; break;
            case 't': simple = "\t"; break;
            default: break;
            }
            if (simple) {
                out[o++] = simple[0];
                i += 2;
                break;
            }
            uint32_t cp, lo;
            if (e != 'u' || i + 6 > n || hex4(s + i + 2, &cp)) {
                problem(pb, NEWS_BAD_SYNTAX, "broken JSON at column %zu: bad escape \\%c", i + 1,
                        e >= 0x20 && e < 0x7F ? (int)e : '?');
                return (size_t)-1;
            }
            size_t at = i + 1;
            i += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u' && !hex4(s + i + 2, &lo) &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                } else {
                    problem(pb, NEWS_BAD_UTF8,
                            "lone surrogate \\u%04X at column %zu (no low surrogate follows)",
                            (unsigned)cp, at);
                    return (size_t)-1;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                problem(pb, NEWS_BAD_UTF8, "lone surrogate \\u%04X at column %zu", (unsigned)cp,
                        at);
                return (size_t)-1;
            }
            o += utf8_encode(cp, out + o);
            break;
        }
        }
    }
}

static size_t skip_ws(const unsigned char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    return i;
}

// Skips the JSON value at s[i] (not decoding strings). Returns the index after it, or
// (size_t)-1 with pb filled.
static size_t json_skip_value(const unsigned char *s, size_t n, size_t i, Problem *pb) {
    unsigned char stack[64]; // open brackets
    int depth = 0;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n) goto truncated;
        unsigned c = s[i];
        if (c == '"') {
            i++;
            while (i < n && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
            if (i >= n) goto truncated;
            i++;
        } else if (c == '{' || c == '[') {
            if (depth == (int)sizeof stack) {
                problem(pb, NEWS_BAD_SYNTAX, "broken JSON: nested deeper than 64 levels");
                return (size_t)-1;
            }
            stack[depth++] = (unsigned char)(c == '{' ? '}' : ']');
            i++;
            continue; // a value or the closer follows
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[depth - 1] != c) goto bad;
            depth--;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            i++;
            while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == 'e' ||
                             s[i] == 'E' || s[i] == '+' || s[i] == '-'))
                i++;
        } else if (n - i >= 4 && (!memcmp(s + i, "true", 4) || !memcmp(s + i, "null", 4))) {
            i += 4;
        } else if (n - i >= 5 && !memcmp(s + i, "false", 5)) {
            i += 5;
        } else {
            goto bad;
        }
        if (depth == 0) return i;
        // inside a container: separators
        i = skip_ws(s, n, i);
        if (i >= n) goto truncated;
        if (s[i] == ',' || s[i] == ':')
            i++;
        else if (s[i] != '}' && s[i] != ']')
            goto bad;
    }
truncated:
    problem(pb, NEWS_BAD_SYNTAX, "broken JSON: the line ends inside a value");
    return (size_t)-1;
bad:
    problem(pb, NEWS_BAD_SYNTAX, "broken JSON at column %zu: unexpected '%c'", i + 1,
            s[i] >= 0x20 && s[i] < 0x7F ? s[i] : '?');
    return (size_t)-1;
}

// Parses one RIA line (n bytes, no '\n'). Returns 1 with the item's title and text in
// r->out, 0 for a blank line, -1 with pb filled.
static int ria_parse(NewsReader *r, const char *line, size_t n, NewsItem *it, Problem *pb) {
    const unsigned char *s = (const unsigned char *)line;
    size_t i = skip_ws(s, n, 0);
    if (i >= n) return 0;
    if (s[i] != '{')
        return problem(pb, NEWS_BAD_SYNTAX, "broken JSON: the line does not start with '{'");
    i++;
    char *arena = r->arena;
    size_t ao = 0;
    size_t t_off = 0, t_len = 0, h_off = 0, h_len = 0;
    int have_text = 0, have_title = 0;
    i = skip_ws(s, n, i);
    if (i < n && s[i] == '}') {
        i++;
        goto closed;
    }
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n)
            return problem(pb, NEWS_BAD_SYNTAX, "broken JSON: the line ends inside the object");
        if (s[i] != '"')
            return problem(pb, NEWS_BAD_SYNTAX, "broken JSON at column %zu: expected a key", i + 1);
        i++;
        // key: decoded into the arena's free space (then forgotten)
        size_t klen = json_string(s, n, &i, arena + ao, pb);
        if (klen == (size_t)-1) return -1;
        int which = 0; // 1 text, 2 title
        if (klen == 4 && !memcmp(arena + ao, "text", 4))
            which = 1;
        else if (klen == 5 && !memcmp(arena + ao, "title", 5))
            which = 2;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ':')
            return problem(pb, NEWS_BAD_SYNTAX,
                           "broken JSON at column %zu: expected ':' after a key", i + 1);
        i = skip_ws(s, n, i + 1);
        if (i >= n)
            return problem(pb, NEWS_BAD_SYNTAX, "broken JSON: the line ends inside the object");
        if (which && s[i] == '"') {
            i++;
            size_t len = json_string(s, n, &i, arena + ao, pb);
            if (len == (size_t)-1) return -1;
            if (which == 1) {
                t_off = ao;
                t_len = len;
                have_text = 1;
            } else {
                h_off = ao;
                h_len = len;
                have_title = 1;
            }
            ao += len;
        } else if (which && n - i >= 4 && !memcmp(s + i, "null", 4)) {
            i += 4;
            if (which == 1)
                have_text = 0;
            else
                have_title = 0;
        } else if (which) {
            return problem(pb, NEWS_BAD_SYNTAX, "\"%s\" is not a string (column %zu)",
                           which == 1 ? "text" : "title", i + 1);
        } else {
            i = json_skip_value(s, n, i, pb);
            if (i == (size_t)-1) return -1;
        }
        i = skip_ws(s, n, i);
        if (i >= n)
            return problem(pb, NEWS_BAD_SYNTAX, "broken JSON: the line ends inside the object");
        if (s[i] == ',') {
            i++;
            continue;
        }
        if (s[i] == '}') {
            i++;
            break;
        }
        return problem(pb, NEWS_BAD_SYNTAX,
                       "broken JSON at column %zu: expected ',' or '}' after a value", i + 1);
    }
closed:
    i = skip_ws(s, n, i);
    if (i < n)
        return problem(pb, NEWS_BAD_SYNTAX,
                       "broken JSON at column %zu: text after the end of the object", i + 1);
    if (!have_title) return problem(pb, NEWS_BAD_MISSING, "no \"title\"");
    if (!have_text) return problem(pb, NEWS_BAD_MISSING, "no \"text\"");
    char *o = r->out;
    size_t hl = news_html_to_text(arena + h_off, h_len, o, 0);
    if (hl == 0) return problem(pb, NEWS_BAD_MISSING, "empty title");
    char *txt = o + hl + 1;
    size_t tl = news_html_to_text(arena + t_off, t_len, txt, 1);
    if (tl == 0)
        return problem(pb, NEWS_BAD_MISSING,
                       t_len ? "the text is empty once markup is removed" : "empty text");
    it->title = o;
    it->title_bytes = hl;
    it->text = txt;
    it->text_bytes = tl;
    return 1;
}

static int ria_next(NewsReader *r, NewsItem *out, char *err) {
    size_t max = r->lim.max_record_bytes;
    for (;;) {
        if (r->skip == SKIP_LINE) { // the rest of a too-long line
            const char *nl = memchr(r->buf + r->beg, '\n', r->end - r->beg);
            if (nl) {
                r->beg = (size_t)(nl - r->buf) + 1;
                r->line++;
                r->skip = SKIP_NONE;
                continue;
            }
            r->beg = r->end;
            int rc = fill(r);
            if (rc < 0) return fail_fatal(r, err);
            if (rc == 0) {
                r->skip = SKIP_NONE;
                r->line++; // the too-long last line had no '\n'
            }
            continue;
        }
        char *s = r->buf + r->beg;
        size_t avail = r->end - r->beg, len, used;
        const char *nl =
            avail > r->scanned ? memchr(s + r->scanned, '\n', avail - r->scanned) : NULL;
        if (!nl) {
            if (avail > max) {
                char msg[128];
                snprintf(msg, sizeof msg, "line longer than %zu bytes (max_record_bytes)", max);
                report(r, r->line, NEWS_BAD_TOO_LONG, msg);
                r->skip = SKIP_LINE;
                r->beg = r->end;
                r->scanned = 0;
                continue;
            }
            if (!r->eof) {
                r->scanned = avail;
                int rc = fill(r);
                if (rc < 0) return fail_fatal(r, err);
                continue;
            }
            if (avail == 0) {
                r->state = 1;
                return 0;
            }
            len = used = avail; // the last line has no '\n'
        } else {
            len = (size_t)(nl - s);
            used = len + 1;
        }
        uint64_t line = r->line;
        r->beg += used;
        r->line++;
        r->scanned = 0;
        if (len > max) {
            char msg[128];
            snprintf(msg, sizeof msg, "line longer than %zu bytes (max_record_bytes)", max);
            report(r, line, NEWS_BAD_TOO_LONG, msg);
            continue;
        }
        arenas_reserve(r, len, 1);
        Problem pb;
        memset(out, 0, sizeof *out);
        int rc = ria_parse(r, s, len, out, &pb);
        if (rc == 0) continue;
        if (rc < 0) {
            report(r, line, pb.reason, pb.msg);
            continue;
        }
        out->url = out->date = out->topic = "";
        out->line = line;
        return 1;
    }
}

// ---------------------------------------------------------------------------------
// CSV (RFC 4180)

enum { CSV_OK = 0, CSV_BLANK, CSV_MORE, CSV_SYNTAX, CSV_OPEN_AT_EOF };

struct CsvParse {
    int status;
    size_t used; // OK, BLANK: bytes of the record with its line end
    uint64_t nl; // OK, BLANK: line ends inside and after the record
    size_t n_fields;
    // SYNTAX: where; OPEN_AT_EOF: the line the open quote is on (relative)
    uint64_t err_nl;     // line ends between the record's start and the error
    size_t err_line_off; // offset of the start of the error's line
    char msg[160];
};

// Parses one record at s[0..n) into r->arena (fields NUL-terminated; the first n_store
// of them recorded in f_off/f_len). at_eof: no more bytes will follow.
static void csv_parse(NewsReader *r, const char *s, size_t n, int at_eof, int n_store,
                      CsvParse *cp) {
    char *a = r->arena;
    size_t i = 0, ao = 0, line_off = 0, nf = 0;
    uint64_t nl = 0;
    memset(cp, 0, offsetof(CsvParse, msg));
    if (n == 0 || (n == 1 && s[0] == '\r')) {
        cp->status = at_eof ? CSV_BLANK : CSV_MORE;
        cp->used = n;
        return;
    }
    if (s[0] == '\n' || (s[0] == '\r' && s[1] == '\n')) {
        cp->status = CSV_BLANK;
        cp->used = s[0] == '\n' ? 1 : 2;
        cp->nl = 1;
        return;
    }
    for (;;) { // one field per turn
        int store = (int)nf < n_store;
        size_t f0 = ao;
        int end_record = 0;
        if (i < n && s[i] == '"') {
            uint64_t q_nl = nl;
            size_t q_col = i - line_off;
            i++;
            for (;;) {
                if (i >= n) {
                    if (!at_eof) goto more;
                    cp->status = CSV_OPEN_AT_EOF;
                    cp->err_nl = q_nl;
                    snprintf(cp->msg, sizeof cp->msg,
                             "quoted field %zu (opened at column %zu) is not closed at the "
                             "end of the file",
                             nf + 1, q_col + 1);
                    return;
                }
                char c = s[i];
                if (c == '"') {
                    if (i + 1 >= n && !at_eof) goto more;
                    if (i + 1 < n && s[i + 1] == '"') {
                        if (store) a[ao++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (c == '\r') {
                    if (i + 1 >= n && !at_eof) goto more;
                    if (i + 1 < n && s[i + 1] == '\n') {
                        i++;
                        continue; // CRLF inside a field becomes LF
                    }
                } else if (c == '\n') {
                    nl++;
                    line_off = i + 1;
                }
                if (store) a[ao++] = c;
                i++;
            }
            // after the closing quote: a separator, a line end or the end of the file
            if (i >= n) {
                if (!at_eof) goto more;
                end_record = 1;
            } else if (s[i] == ',') {
                i++;
            } else if (s[i] == '\n') {
                i++;
                nl++;
                end_record = 1;
            } else if (s[i] == '\r' && (i + 1 < n || at_eof)) {
                if (i + 1 < n && s[i + 1] == '\n') {
                    i += 2;
                    nl++;
                } else {
                    i++;
                }
                end_record = 1;
            } else if (s[i] == '\r') {
                goto more;
            } else {
                cp->status = CSV_SYNTAX;
                cp->err_nl = nl;
                cp->err_line_off = line_off;
                snprintf(cp->msg, sizeof cp->msg,
                         "broken CSV: text after the closing quote of field %zu "
                         "(column %zu of line +%llu)",
                         nf + 1, i - line_off + 1, (unsigned long long)nl);
                return;
            }
        } else {
            for (;;) {
                if (i >= n) {
                    if (!at_eof) goto more;
                    end_record = 1;
                    break;
                }
                char c = s[i];
                if (c == ',') {
                    i++;
                    break;
                }
                if (c == '\n') {
                    i++;
                    nl++;
                    end_record = 1;
                    break;
                }
                if (c == '\r') {
                    if (i + 1 >= n && !at_eof) goto more;
                    if (i + 1 >= n || s[i + 1] == '\n') {
                        i += i + 1 < n ? 2 : 1;
                        nl++;
                        end_record = 1;
                        break;
                    }
                }
                if (c == '"') {
                    cp->status = CSV_SYNTAX;
                    cp->err_nl = nl;
                    cp->err_line_off = line_off;
                    snprintf(cp->msg, sizeof cp->msg,
                             "broken CSV: a quote inside unquoted field %zu (column %zu)", nf + 1,
                             i - line_off + 1);
                    return;
                }
                if (store) a[ao++] = c;
                i++;
            }
        }
        if (store) {
            a[ao] = '\0';
            r->f_off[nf] = f0;
            r->f_len[nf] = ao - f0;
            ao++;
        }
        nf++;
        if (end_record) {
            cp->status = CSV_OK;
            cp->used = i;
            cp->nl = nl;
            cp->n_fields = nf;
            return;
        }
    }
more:
    cp->status = CSV_MORE;
}

static int csv_col(const NewsReader *r, int col, const char **s, size_t *n) {
    if (col < 0) {
        *s = "";
        *n = 0;
        return 0;
    }
    *s = r->arena + r->f_off[col];
    *n = r->f_len[col];
    return 1;
}

// Whether s[0..n) is empty or only whitespace as news.h defines it for "missing": ASCII
// whitespace (space, \t, \n, \v, \f, \r) and U+00A0, the raw whitespace of the HTML text
// rule (so a CSV text of no-break spaces is as missing as a RIA body of &nbsp;).
static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || (c >= '\t' && c <= '\r')) continue;
        if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] == 0xA0) {
            i++;
            continue;
        }
        return 0;
    }
    return 1;
}

// Turns a parsed record into an item. Returns 1, or -1 with pb filled.
static int csv_item(NewsReader *r, NewsItem *it, Problem *pb) {
    static const char *const names[5] = {"title", "text", "url", "date", "topic"};
    const int cols[5] = {r->col_title, r->col_text, r->col_url, r->col_date, r->col_topic};
    const char *v[5];
    size_t len[5];
    for (int k = 0; k < 5; k++) {
        csv_col(r, cols[k], &v[k], &len[k]);
        size_t bad = utf8_check(v[k], len[k]);
        if (bad < len[k])
            return problem(pb, NEWS_BAD_UTF8, "invalid UTF-8 in %s at byte %zu (0x%02x)", names[k],
                           bad, (unsigned char)v[k][bad]);
    }
    if (blank(v[0], len[0])) return problem(pb, NEWS_BAD_MISSING, "empty title");
    if (blank(v[1], len[1])) return problem(pb, NEWS_BAD_MISSING, "empty text");
    it->title = v[0];
    it->title_bytes = len[0];
    it->text = v[1];
    it->text_bytes = len[1];
    it->url = v[2];
    it->url_bytes = len[2];
    it->date = v[3];
    it->date_bytes = len[3];
    it->topic = v[4];
    it->topic_bytes = len[4];
    return 1;
}

// Whether a record found while resynchronising after a syntax error plausibly starts a
// real record (not a piece of some text): it has as many fields as the header, and its
// url, when there is one, starts with http.
static int csv_plausible(const NewsReader *r, size_t n_fields) {
    if (n_fields != (size_t)r->ncols) return 0;
    if (r->col_url < 0) return 1;
    const char *u = r->arena + r->f_off[r->col_url];
    return r->f_len[r->col_url] >= 4 && strncasecmp(u, "http", 4) == 0;
}

// Ends a resynchronisation: reports the region from rs_line to the line before `line`.
static void resync_done(NewsReader *r, uint64_t line) {
    if (!r->rs_active) return;
    char msg[CX_ERRLEN];
    snprintf(msg, sizeof msg, "%s; skipped lines %llu-%llu", r->rs_msg,
             (unsigned long long)r->rs_line, (unsigned long long)(line - 1));
    report(r, r->rs_line, r->rs_reason, msg);
    r->rs_active = 0;
}

static void resync_start(NewsReader *r, uint64_t line, NewsBad reason, const char *msg) {
    if (r->rs_active) return; // the region goes on
    r->rs_active = 1;
    r->rs_line = line;
    r->rs_reason = reason;
    snprintf(r->rs_msg, sizeof r->rs_msg, "%s", msg);
}

static int csv_next(NewsReader *r, NewsItem *out, char *err) {
    size_t max = r->lim.max_record_bytes;
    for (;;) {
        if (r->skip != SKIP_NONE) {
            // SKIP_LINE: to the next '\n'; SKIP_CSV: to the next '\n' outside quotes
            char *s = r->buf + r->beg;
            size_t n = r->end - r->beg, i = 0;
            int done = 0;
            for (; i < n; i++) {
                char c = s[i];
                if (c == '"' && r->skip == SKIP_CSV)
                    r->skip_quoted = !r->skip_quoted;
                else if (c == '\n') {
                    r->line++;
                    if (r->skip == SKIP_LINE || !r->skip_quoted) {
                        i++;
                        done = 1;
                        break;
                    }
                }
            }
            r->beg += i;
            if (i > 0) r->mid_line = s[i - 1] != '\n';
            if (done) {
                r->skip = SKIP_NONE;
                continue;
            }
            int rc = fill(r);
            if (rc < 0) return fail_fatal(r, err);
            if (rc == 0) { // the skipped region reaches the end of the file
                r->skip = SKIP_NONE;
                if (r->mid_line) r->line++;
                r->mid_line = 0;
                resync_done(r, r->line);
            }
            continue;
        }
        size_t avail = r->end - r->beg;
        arenas_reserve(r, avail + (size_t)r->n_store + 1, 0);
        CsvParse cp;
        csv_parse(r, r->buf + r->beg, avail, r->eof, r->n_store, &cp);
        uint64_t line = r->line;
        if (cp.status == CSV_MORE) {
            if (avail > max) {
                char msg[160];
                snprintf(msg, sizeof msg, "record longer than %zu bytes (max_record_bytes)", max);
                if (r->rs_active) {
                    // a piece of a damaged region: skip it with the region
                    r->skip = SKIP_CSV;
                    r->skip_quoted = 0;
                    continue;
                }
                report(r, line, NEWS_BAD_TOO_LONG, msg);
                r->skip = SKIP_CSV;
                r->skip_quoted = 0;
                continue;
            }
            int rc = fill(r);
            if (rc < 0) return fail_fatal(r, err);
            continue;
        }
        if (cp.status == CSV_BLANK) {
            if (cp.used == 0 && r->eof) {
                resync_done(r, r->line);
                r->state = 1;
                return 0;
            }
            r->beg += cp.used;
            r->line += cp.nl;
            continue;
        }
        if (cp.status == CSV_OPEN_AT_EOF) {
            // the rest of the file belongs to the open field: one bad record
            char msg[256];
            snprintf(msg, sizeof msg, "%s (the quote is on line %llu)", cp.msg,
                     (unsigned long long)(line + cp.err_nl));
            resync_start(r, line, NEWS_BAD_SYNTAX, msg);
            r->line += count_newlines(r->buf + r->beg, avail);
            if (r->buf[r->end - 1] != '\n') r->line++; // a last line without '\n'
            r->beg = r->end;
            resync_done(r, r->line);
            continue;
        }
        if (cp.status == CSV_SYNTAX) {
            resync_start(r, line, NEWS_BAD_SYNTAX, cp.msg);
            if (cp.err_nl > 0) { // resume at the start of the line with the error
                r->beg += cp.err_line_off;
                r->line += cp.err_nl;
            } else { // resume at the next line
                r->skip = SKIP_LINE;
            }
            continue;
        }
        // CSV_OK
        if (r->rs_active && !csv_plausible(r, cp.n_fields)) {
            r->skip = SKIP_LINE; // not a record start: go on line by line
            continue;
        }
        resync_done(r, line);
        r->beg += cp.used;
        r->line += cp.nl;
        if (r->eof && r->beg == r->end && r->buf[r->beg - 1] != '\n') r->line++;
        if (cp.used > max) { // complete in the window, but over the limit all the same
            char msg[160];
            snprintf(msg, sizeof msg, "record longer than %zu bytes (max_record_bytes)", max);
            report(r, line, NEWS_BAD_TOO_LONG, msg);
            continue;
        }
        if (cp.n_fields != (size_t)r->ncols) {
            char msg[128];
            snprintf(msg, sizeof msg, "broken CSV: %zu fields, the header has %d", cp.n_fields,
                     r->ncols);
            report(r, line, NEWS_BAD_SYNTAX, msg);
            continue;
        }
        Problem pb;
        memset(out, 0, sizeof *out);
        if (csv_item(r, out, &pb) < 0) {
            report(r, line, pb.reason, pb.msg);
            continue;
        }
        out->line = line;
        return 1;
    }
}

// Reads the CSV header; finds the columns. Returns 0, or -1 with err.
static int csv_header(NewsReader *r, NewsFormat want, char *err) {
    CsvParse cp;
    for (;;) {
        size_t avail = r->end - r->beg;
        arenas_reserve(r, avail + NEWS_MAX_COLS + 1, 0);
        csv_parse(r, r->buf + r->beg, avail, r->eof, NEWS_MAX_COLS, &cp);
        if (cp.status != CSV_MORE) break;
        if (avail > r->lim.max_record_bytes)
            return cx_err(err, "%s: the CSV header is longer than %zu bytes", r->path,
                          r->lim.max_record_bytes);
        if (fill(r) < 0) return cx_err(err, "%s", r->fatal);
    }
    if (cp.status == CSV_BLANK)
        return cx_err(err, "%s: %s: no CSV header line", r->path,
                      r->end == r->beg ? "the file is empty" : "the first line is empty");
    if (cp.status != CSV_OK) return cx_err(err, "%s: line 1: CSV header: %s", r->path, cp.msg);
    if (cp.used > r->lim.max_record_bytes)
        return cx_err(err, "%s: the CSV header is longer than %zu bytes", r->path,
                      r->lim.max_record_bytes);
    if (cp.n_fields > NEWS_MAX_COLS)
        return cx_err(err, "%s: the CSV header has %zu columns (at most %d)", r->path, cp.n_fields,
                      NEWS_MAX_COLS);
    r->ncols = (int)cp.n_fields;
    r->col_title = r->col_text = r->col_url = r->col_date = r->col_topic = -1;
    int has_edition = 0;
    for (int k = 0; k < r->ncols; k++) {
        char *name = r->arena + r->f_off[k];
        size_t len = r->f_len[k];
        while (len && (name[len - 1] == ' ' || name[len - 1] == '\t')) name[--len] = '\0';
        while (*name == ' ' || *name == '\t') name++;
        int *slot = NULL;
        if (!strcasecmp(name, "title"))
            slot = &r->col_title;
        else if (!strcasecmp(name, "text"))
            slot = &r->col_text;
        else if (!strcasecmp(name, "url"))
            slot = &r->col_url;
        else if (!strcasecmp(name, "date"))
            slot = &r->col_date;
        else if (!strcasecmp(name, "topic") || !strcasecmp(name, "topics"))
            slot = &r->col_topic;
        else if (!strcasecmp(name, "edition"))
            has_edition = 1;
        if (slot && *slot < 0) *slot = k;
    }
    if (r->col_title < 0 || r->col_text < 0) {
        char first[96];
        size_t m = cp.used < sizeof first - 1 ? cp.used : sizeof first - 1;
        memcpy(first, r->buf + r->beg, m);
        first[m] = '\0';
        for (size_t k = 0; k < m; k++)
            if ((unsigned char)first[k] < 0x20) first[k] = ' ';
        return cx_err(err,
                      "%s: %s: the first line has no \"title\" and \"text\" columns "
                      "(it reads \"%s\")",
                      r->path,
                      want == NEWS_FMT_AUTO ? "not a recognised news format" : "not a news CSV",
                      first);
    }
    if (want == NEWS_FMT_AUTO) r->fmt = has_edition ? NEWS_FMT_ODS : NEWS_FMT_LENTA;
    int hi = r->col_title;
    const int cols[4] = {r->col_text, r->col_url, r->col_date, r->col_topic};
    for (int k = 0; k < 4; k++)
        if (cols[k] > hi) hi = cols[k];
    r->n_store = hi + 1;
    r->beg += cp.used;
    r->line += cp.nl;
    return 0;
}

// ---------------------------------------------------------------------------------
// Open, next, close

NewsFormat news_format(const NewsReader *r) { return r->fmt; }

void news_stats(const NewsReader *r, NewsStats *out) {
    *out = r->st;
    out->lines = r->line - 1;
}

void news_close(NewsReader *r) {
    if (!r) return;
    if (r->z_ready) inflateEnd(&r->zs);
    if (r->fd >= 0) close(r->fd);
    free(r->path);
    free(r->zin);
    free(r->buf);
    free(r->arena);
    free(r->out);
    free(r->f_off);
    free(r->f_len);
    free(r);
}

NewsReader *news_open(const char *path, NewsFormat fmt, const NewsLimits *lim, char *err) {
    if ((int)fmt < 0 || fmt >= NEWS_FMT_COUNT) {
        cx_err(err, "%s: unknown news format %d", path, (int)fmt);
        return NULL;
    }
    NewsReader *r = calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    r->fd = -1;
    r->line = 1;
    r->fmt = fmt;
    if (lim) r->lim = *lim;
    if (r->lim.max_record_bytes == 0) r->lim.max_record_bytes = NEWS_DEFAULT_MAX_RECORD_BYTES;
    r->path = strdup(path);
    CHECK(r->path != NULL, "out of memory");
    CHECK(r->lim.max_record_bytes <= SIZE_MAX / 4 - NEWS_CHUNK, "max_record_bytes too large");
    r->cap_max = r->lim.max_record_bytes + NEWS_CHUNK;
    r->cap = r->cap_max < 2 * NEWS_CHUNK ? r->cap_max : 2 * NEWS_CHUNK;
    r->buf = malloc(r->cap + 1);
    r->zin = malloc(NEWS_ZIN_BYTES);
    r->f_off = malloc(NEWS_MAX_COLS * sizeof *r->f_off);
    r->f_len = malloc(NEWS_MAX_COLS * sizeof *r->f_len);
    CHECK(r->buf && r->zin && r->f_off && r->f_len, "out of memory");

    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        cx_err(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    // the first bytes decide between gzip and plain
    size_t got = 0;
    while (got < 2) {
        ssize_t n = file_read(r, r->zin + got, NEWS_ZIN_BYTES - got);
        if (n < 0) {
            cx_err(err, "%s", r->fatal);
            goto fail;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    if (got >= 2 && r->zin[0] == 0x1f && r->zin[1] == 0x8b) {
        r->gz = 1;
        if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK) {
            cx_err(err, "%s: cannot start zlib inflate", path);
            goto fail;
        }
        r->z_ready = 1;
        r->zs.next_in = r->zin;
        r->zs.avail_in = (uInt)got;
        if (fill(r) < 0) {
            cx_err(err, "%s", r->fatal);
            goto fail;
        }
    } else {
        memcpy(r->buf, r->zin, got);
        r->end = got;
        r->st.data_bytes = got;
        if (got == 0) r->eof = 1;
    }
    // a UTF-8 byte order mark is skipped
    while (r->end - r->beg < 3 && !r->eof)
        if (fill(r) < 0) {
            cx_err(err, "%s", r->fatal);
            goto fail;
        }
    if (r->end - r->beg >= 3 && !memcmp(r->buf + r->beg, "\xef\xbb\xbf", 3)) r->beg += 3;

    if (fmt == NEWS_FMT_AUTO) {
        // the first byte that is not whitespace: '{' means ria
        for (;;) {
            size_t k = r->beg;
            while (k < r->end && (r->buf[k] == ' ' || r->buf[k] == '\t' || r->buf[k] == '\r' ||
                                  r->buf[k] == '\n'))
                k++;
            if (k < r->end) {
                if (r->buf[k] == '{') r->fmt = NEWS_FMT_RIA;
                break;
            }
            if (r->eof) {
                cx_err(err, "%s: the file is empty%s: cannot detect its format", path,
                       r->end > r->beg ? " (whitespace only)" : "");
                goto fail;
            }
            if (r->end - r->beg > r->lim.max_record_bytes) {
                cx_err(err, "%s: no data in the first %zu bytes", path, r->end - r->beg);
                goto fail;
            }
            if (fill(r) < 0) {
                cx_err(err, "%s", r->fatal);
                goto fail;
            }
        }
    }
    if (r->fmt != NEWS_FMT_RIA && csv_header(r, fmt, err) < 0) goto fail;
    return r;
fail:
    news_close(r);
    return NULL;
}

int news_next(NewsReader *r, NewsItem *out, char *err) {
    if (r->state == 1) return 0;
    if (r->state < 0) return cx_err(err, "%s", r->fatal);
    int rc = r->fmt == NEWS_FMT_RIA ? ria_next(r, out, err) : csv_next(r, out, err);
    if (rc == 1) {
        out->index = r->st.items++;
    }
    return rc;
}
