// corpus.c: extractors and filters of the corpus builder (see corpus.h).
#include "io/corpus/corpus.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/text/entity.h"
#include "io/text/utf8.h"
#include "models/common.h"

// ---------------------------------------------------------------------------------
// Formats

static const char *const FORMAT_NAMES[CORPUS_FMT_COUNT] = {
    "text", "fortune", "man", "html", "xml", "xhp", "debtrans", "mo", "news",
};

const char *corpus_format_name(CorpusFormat fmt) {
    if ((int)fmt < 0 || fmt >= CORPUS_FMT_COUNT) return NULL;
    return FORMAT_NAMES[fmt];
}

int corpus_format_parse(const char *name, CorpusFormat *out) {
    for (int i = 0; i < CORPUS_FMT_COUNT; i++) {
        if (strcmp(name, FORMAT_NAMES[i]) == 0) {
            *out = (CorpusFormat)i;
            return 0;
        }
    }
    return -1;
}

// Whether name (length n) ends with suffix, ignoring ASCII case.
static int ends_with(const char *name, size_t n, const char *suffix) {
    size_t m = strlen(suffix);
    return n >= m && strncasecmp(name + n - m, suffix, m) == 0;
}

int corpus_format_accepts(CorpusFormat fmt, const char *filename) {
    const char *base = strrchr(filename, '/');
    base = base ? base + 1 : filename;
    size_t n = strlen(base);
    if (ends_with(base, n, ".gz")) n -= 3;
    switch (fmt) {
    case CORPUS_FMT_HTML:
        return ends_with(base, n, ".html") || ends_with(base, n, ".htm") ||
               ends_with(base, n, ".xhtml");
    case CORPUS_FMT_XML:
        return ends_with(base, n, ".xml") || ends_with(base, n, ".page") ||
               ends_with(base, n, ".docbook");
    case CORPUS_FMT_XHP: return ends_with(base, n, ".xhp");
    case CORPUS_FMT_MO: return ends_with(base, n, ".mo");
    case CORPUS_FMT_FORTUNE: return !ends_with(base, n, ".dat");
    default: return (int)fmt >= 0 && fmt < CORPUS_FMT_COUNT;
    }
}

// ---------------------------------------------------------------------------------
// Document lists

void corpus_docs_init(CorpusDocs *d) { memset(d, 0, sizeof *d); }

void corpus_docs_clear(CorpusDocs *d) {
    d->text_bytes = 0;
    d->n_docs = 0;
}

void corpus_docs_free(CorpusDocs *d) {
    free(d->text);
    free(d->off);
    free(d->len);
    memset(d, 0, sizeof *d);
}

static void docs_reserve(CorpusDocs *d, size_t extra) {
    CHECK(extra <= SIZE_MAX / 2 - d->text_bytes, "corpus text too large");
    if (d->text_bytes + extra <= d->text_cap) return;
    size_t cap = d->text_cap ? d->text_cap : 4096;
    while (cap < d->text_bytes + extra) cap *= 2;
    char *p = realloc(d->text, cap);
    CHECK(p != NULL, "out of memory (%zu bytes of corpus text)", cap);
    d->text = p;
    d->text_cap = cap;
}

static void docs_put(CorpusDocs *d, const char *s, size_t n) {
    if (n == 0) return;
    docs_reserve(d, n);
    memcpy(d->text + d->text_bytes, s, n);
    d->text_bytes += n;
}

static void docs_putc(CorpusDocs *d, char c) {
    docs_reserve(d, 1);
    d->text[d->text_bytes++] = c;
}

// Appends text in which line breaks are plain whitespace (not paragraph breaks).
static void docs_put_inline(CorpusDocs *d, const char *s, size_t n) {
    docs_reserve(d, n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        d->text[d->text_bytes++] = (c == '\n' || c == '\r') ? ' ' : c;
    }
}

// Appends a code point as UTF-8 (invalid ones are dropped).
static void docs_put_cp(CorpusDocs *d, uint32_t cp) {
    char b[4];
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return;
    docs_put(d, b, utf8_encode(cp, b));
}

// Ends the current paragraph of the document that starts at text offset start.
static void docs_para_break(CorpusDocs *d, size_t start) {
    if (d->text_bytes > start && d->text[d->text_bytes - 1] != '\n') docs_putc(d, '\n');
}

// Closes the document that starts at text offset start: kept when it holds anything
// but whitespace, otherwise its text is rolled back.
static void docs_end(CorpusDocs *d, size_t start) {
    int blank = 1;
    for (size_t i = start; i < d->text_bytes && blank; i++) {
        unsigned char c = (unsigned char)d->text[i];
        if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r')) blank = 0;
    }
    if (blank) {
        d->text_bytes = start;
        return;
    }
    if (d->n_docs == d->docs_cap) {
        size_t cap = d->docs_cap ? d->docs_cap * 2 : 64;
        size_t *o = realloc(d->off, cap * sizeof *o);
        CHECK(o != NULL, "out of memory (%zu documents)", cap);
        d->off = o;
        size_t *l = realloc(d->len, cap * sizeof *l);
        CHECK(l != NULL, "out of memory (%zu documents)", cap);
        d->len = l;
        d->docs_cap = cap;
    }
    d->off[d->n_docs] = start;
    d->len[d->n_docs] = d->text_bytes - start;
    d->n_docs++;
}

// Line iteration: returns the length of the line at data[*pos] (without "\n" or
// "\r\n") and advances *pos past it. Call while *pos < n.
static size_t next_line(const char *data, size_t n, size_t *pos, const char **line) {
    size_t i = *pos;
    const char *nl = memchr(data + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - data) : n;
    *line = data + i;
    *pos = nl ? end + 1 : n;
    size_t len = end - i;
    if (len > 0 && data[i + len - 1] == '\r') len--;
    return len;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v'))
            return 0;
    return 1;
}

// ---------------------------------------------------------------------------------
// Plain text and fortune files

static void extract_text(const char *data, size_t n, CorpusDocs *out) {
    size_t start = out->text_bytes, pos = 0;
    while (pos < n) {
        const char *line;
        size_t len = next_line(data, n, &pos, &line);
        if (is_blank(line, len)) {
            docs_para_break(out, start);
        } else {
            docs_put_inline(out, line, len);
            docs_putc(out, ' ');
        }
    }
    docs_end(out, start);
}

// One article: paragraphs separated by '\n' (the title the first).
static void extract_news(const char *data, size_t n, CorpusDocs *out) {
    size_t start = out->text_bytes, pos = 0;
    while (pos < n) {
        const char *line;
        size_t len = next_line(data, n, &pos, &line);
        if (is_blank(line, len)) continue;
        docs_put_inline(out, line, len);
        docs_para_break(out, start);
    }
    docs_end(out, start);
}

static void extract_fortune(const char *data, size_t n, CorpusDocs *out) {
    size_t start = out->text_bytes, pos = 0;
    while (pos < n) {
        const char *line;
        size_t len = next_line(data, n, &pos, &line);
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
        if ((len == 1 && line[0] == '%') || (len == 2 && line[0] == '%' && line[1] == '%')) {
            docs_end(out, start);
            start = out->text_bytes;
        } else {
            docs_put_inline(out, line, len);
            docs_putc(out, ' ');
        }
    }
    docs_end(out, start);
}

// ---------------------------------------------------------------------------------
// Debian Translation-xx indices

static void extract_debtrans(const char *data, size_t n, CorpusDocs *out) {
    size_t start = out->text_bytes, pos = 0;
    int in_desc = 0;
    while (pos < n) {
        const char *line;
        size_t len = next_line(data, n, &pos, &line);
        if (len == 0 || is_blank(line, len)) {  // end of record
            if (in_desc) docs_end(out, start);
            in_desc = 0;
            continue;
        }
        if (line[0] == ' ' || line[0] == '\t') {  // continuation line
            if (!in_desc) continue;
            const char *s = line + 1;
            size_t m = len - 1;
            if (m == 1 && s[0] == '.') {
                docs_para_break(out, start);
                continue;
            }
            // list items ("* item", "  - item", "o item") become paragraphs
            size_t k = 0;
            while (k < m && (s[k] == ' ' || s[k] == '\t')) k++;
            size_t bullet = 0;
            if (k + 1 < m && s[k + 1] == ' ' &&
                (s[k] == '*' || s[k] == '-' || s[k] == '+' || s[k] == 'o'))
                bullet = 2;
            else if (k + 3 < m && memcmp(s + k, "\xe2\x80\xa2 ", 4) == 0)
                bullet = 4;
            if (bullet) {
                docs_para_break(out, start);
                s += k + bullet;
                m -= k + bullet;
            }
            docs_put_inline(out, s, m);
            docs_putc(out, ' ');
            continue;
        }
        // a field "Name: value"
        if (in_desc) docs_end(out, start);
        in_desc = 0;
        const char *colon = memchr(line, ':', len);
        if (!colon) continue;
        size_t name_len = (size_t)(colon - line);
        int is_desc = (name_len == 11 && strncasecmp(line, "Description", 11) == 0) ||
                      (name_len > 12 && strncasecmp(line, "Description-", 12) == 0 &&
                       !(name_len == 15 && strncasecmp(line + 12, "md5", 3) == 0));
        if (!is_desc) continue;
        start = out->text_bytes;
        in_desc = 1;
        docs_put_inline(out, colon + 1, len - name_len - 1);
        docs_para_break(out, start);
    }
    if (in_desc) docs_end(out, start);
}

// ---------------------------------------------------------------------------------
// GNU gettext .mo catalogues

static uint32_t mo_u32(const unsigned char *p, int big_endian) {
    if (big_endian)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

// Whether a message holds a placeholder (printf "%s" "%2$d" "%.1f", Qt "%1", "%NAME",
// "$(ARG)", "${name}"): such text is not complete, so the message is skipped.
static int has_placeholder(const char *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] == '$' && (s[i + 1] == '(' || s[i + 1] == '{')) return 1;
        if (s[i] != '%') continue;
        size_t j = i + 1;
        if (s[j] == '%') {
            i = j;
            continue;
        }
        if (isupper((unsigned char)s[j])) return 1;  // %PRODUCTNAME
        size_t k = j;
        while (k < n && isdigit((unsigned char)s[k])) k++;
        if (k > j && (k == n || s[k] != '$')) return 1;  // Qt-style %1
        if (k < n && s[k] == '$') k++;
        while (k < n && strchr("#0 +-'*.", s[k]) && s[k] != '\0') k++;
        while (k < n && isdigit((unsigned char)s[k])) k++;
        if (k < n && s[k] == '.') {
            k++;
            while (k < n && (isdigit((unsigned char)s[k]) || s[k] == '*')) k++;
        }
        while (k < n && strchr("hlLqjzt", s[k]) && s[k] != '\0') k++;
        if (k < n && strchr("diouxXeEfFgGaAcspn", s[k]) && s[k] != '\0') return 1;
    }
    return 0;
}

static int extract_mo(const char *data, size_t n, CorpusDocs *out, char *err) {
    const unsigned char *u = (const unsigned char *)data;
    if (n < 20) return cx_err(err, "not a .mo file: %zu bytes, shorter than the header", n);
    int be;
    if (mo_u32(u, 0) == 0x950412deu)
        be = 0;
    else if (mo_u32(u, 1) == 0x950412deu)
        be = 1;
    else
        return cx_err(err, "not a .mo file: bad magic number");
    uint32_t revision = mo_u32(u + 4, be);
    if ((revision >> 16) > 1)
        return cx_err(err, ".mo revision %u.%u is not supported", revision >> 16,
                      revision & 0xFFFF);
    uint64_t n_str = mo_u32(u + 8, be), o_tab = mo_u32(u + 12, be), t_tab = mo_u32(u + 16, be);
    if (o_tab + n_str * 8 > n || t_tab + n_str * 8 > n)
        return cx_err(err, ".mo string tables (%llu entries at %llu and %llu) exceed the "
                           "file (%zu bytes)",
                      (unsigned long long)n_str, (unsigned long long)o_tab,
                      (unsigned long long)t_tab, n);
    // validate everything first, so that a corrupt file appends nothing
    for (uint64_t i = 0; i < n_str; i++) {
        for (int t = 0; t < 2; t++) {
            const unsigned char *e = u + (t ? t_tab : o_tab) + i * 8;
            uint64_t len = mo_u32(e, be), off = mo_u32(e + 4, be);
            if (off + len > n)
                return cx_err(err, ".mo %s %llu (offset %llu, %llu bytes) exceeds the file",
                              t ? "translation" : "original", (unsigned long long)i,
                              (unsigned long long)off, (unsigned long long)len);
        }
    }
    for (uint64_t i = 0; i < n_str; i++) {
        const unsigned char *eo = u + o_tab + i * 8, *et = u + t_tab + i * 8;
        if (mo_u32(eo, be) == 0) continue;  // the header entry (empty msgid)
        uint64_t len = mo_u32(et, be), off = mo_u32(et + 4, be);
        const char *s = data + off;
        const char *nul = memchr(s, '\0', len);
        if (nul) len = (uint64_t)(nul - s);  // first plural form only
        if (has_placeholder(s, len)) continue;
        size_t start = out->text_bytes;
        docs_put(out, s, len);  // '\n' in a message is a paragraph break
        docs_end(out, start);
    }
    return 0;
}

// ---------------------------------------------------------------------------------
// HTML, XML, XHP

static int name_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, *(const char *const *)elem);
}

static int in_sorted(const char *name, const char *const *list, size_t n) {
    return bsearch(name, list, n, sizeof *list, name_cmp) != NULL;
}

// Decodes the entity at s[0] == '&' (n bytes available): "&name;" with a name of
// ENTITY_CORPUS (up to 15 letters and digits), "&#digits;" or "&#xhex;" (any number of
// digits), the ';' optional. Returns the bytes consumed (0 when this is not an entity: then
// '&' is literal text) and sets *cp (0: an unknown or invalid entity, to be dropped).
static size_t decode_entity(const char *s, size_t n, uint32_t *cp) {
    size_t i = 1;
    *cp = 0;
    if (i < n && s[i] == '#') {
        i++;
        int hex = i < n && (s[i] == 'x' || s[i] == 'X');
        if (hex) i++;
        uint32_t v;
        size_t digits = entity_read_number(s + i, n - i, hex, SIZE_MAX, &v);
        if (digits == 0) return 0;
        i += digits;
        if (i < n && s[i] == ';') i++;
        if (v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF)) *cp = v;
        return i;
    }
    size_t k = 0;
    while (i + k < n && k < 15 && isalnum((unsigned char)s[i + k])) k++;
    if (k == 0) return 0;
    uint32_t e = entity_lookup(s + i, k, ENTITY_CORPUS);
    i += k;
    if (i < n && s[i] == ';') {
        *cp = e;
        return i + 1;  // unknown but well-formed: dropped
    }
    // without ';' a known name still counts (HTML's leniency: "&copy 2023"); an unknown
    // one is literal text ("AT&T")
    if (e) {
        *cp = e;
        return i;
    }
    return 0;
}

typedef enum { MK_HTML, MK_XML, MK_XHP } Markup;

// Elements that do not end a paragraph (all flavours). Sorted.
static const char *const INLINE_TAGS[] = {
    "a", "abbr", "abbrev", "accel", "acronym", "ahelp", "app", "application", "b", "bdi",
    "bdo", "big", "caseinline", "cite", "citetitle", "classname", "cmd", "code", "command",
    "computeroutput", "constant", "data", "defaultinline", "del", "dfn", "em", "email",
    "embedvar", "emph", "emphasis", "envar", "file", "filename", "firstterm", "font",
    "foreignphrase", "function", "gui", "guibutton", "guiicon", "guilabel", "guimenu",
    "guimenuitem", "guiseq", "guisubmenu", "i", "img", "input", "ins", "item", "kbd", "key",
    "keycap", "keycode", "keycombo", "keyseq", "keysym", "label", "link", "literal", "mark",
    "menuchoice", "option", "output", "package", "parameter", "phrase", "productname", "q",
    "quote", "replaceable", "s", "samp", "shortcut", "small", "span", "strike", "strong",
    "structname", "sub", "subscript", "sup", "superscript", "switchinline", "sys",
    "systemitem", "time", "trademark", "tt", "type", "u", "ulink", "uri", "userinput",
    "var", "variable", "varname", "wbr", "xref",
};

// Elements whose content is dropped, per flavour. Sorted.
static const char *const SKIP_ALL[] = {"script", "style"};
static const char *const SKIP_HTML[] = {
    "aside", "button", "canvas", "footer", "form",     "head",   "header", "iframe",
    "math",  "nav",    "noscript", "object", "pre",    "select", "svg",    "template",
    "textarea", "title",
};
static const char *const SKIP_XML[] = {
    "cmdsynopsis", "comment", "credit", "funcsynopsis", "indexterm", "info",
    "media",       "programlisting", "remark", "screen", "synopsis",
};
static const char *const SKIP_XHP[] = {
    "bookmark", "case", "caseinline", "comment", "history", "image", "meta", "sort",
};
// class or id values that mark navigation, page furniture or code. Sorted.
static const char *const SKIP_CLASSES[] = {
    "breadcrumbs", "browse-guide", "bug",         "cmdsynopsis",  "code",        "debug",
    "docnav",      "donationframe", "footer",     "funcsynopsis", "header",
    "headerlink",  "literallayout", "lot",        "nav",         "navback",
    "navfooter",   "navheader",   "programlisting", "related",   "screen",
    "searchframe", "sphinxsidebar", "sphinxsidebarwrapper", "synopsis", "toc",
    "topleftheader",
};
static const char *const HTML_VOID[] = {
    "area", "base", "br",   "col",   "embed",  "hr",    "img",
    "input", "link", "meta", "param", "source", "track", "wbr",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int skip_class_value(const char *v, size_t n) {
    size_t i = 0;
    while (i < n) {
        while (i < n && isspace((unsigned char)v[i])) i++;
        size_t j = i;
        while (j < n && !isspace((unsigned char)v[j])) j++;
        if (j > i && j - i < 32) {
            char w[32];
            for (size_t k = i; k < j; k++) w[k - i] = (char)tolower((unsigned char)v[k]);
            w[j - i] = '\0';
            if (in_sorted(w, SKIP_CLASSES, NELEM(SKIP_CLASSES))) return 1;
        }
        i = j;
    }
    return 0;
}

static int markup_skips(Markup mk, const char *name) {
    if (in_sorted(name, SKIP_ALL, NELEM(SKIP_ALL))) return 1;
    switch (mk) {
    case MK_HTML: return in_sorted(name, SKIP_HTML, NELEM(SKIP_HTML));
    case MK_XML: return in_sorted(name, SKIP_XML, NELEM(SKIP_XML));
    case MK_XHP:
        return in_sorted(name, SKIP_XHP, NELEM(SKIP_XHP)) ||
               in_sorted(name, SKIP_XML, NELEM(SKIP_XML));
    }
    return 0;
}

// Finds needle (ASCII, compared case-insensitively) in s[from..n); returns its offset
// or n.
static size_t find_ci(const char *s, size_t n, size_t from, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = from; i + m <= n; i++)
        if (strncasecmp(s + i, needle, m) == 0) return i;
    return n;
}

static void extract_markup(Markup mk, const char *s, size_t n, CorpusDocs *out) {
    size_t start = out->text_bytes;
    char skip_name[32] = "";
    int skip_depth = 0;  // > 0 while inside a dropped element named skip_name
    int keyseq = 0, keys = 0;  // inside <keyseq>/<keycombo>: keys get "+" between them
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '<') {
            if (i + 4 <= n && memcmp(s + i, "<!--", 4) == 0) {
                size_t j = find_ci(s, n, i + 4, "-->");
                i = j < n ? j + 3 : n;
                continue;
            }
            if (i + 9 <= n && memcmp(s + i, "<![CDATA[", 9) == 0) {
                size_t j = find_ci(s, n, i + 9, "]]>");
                if (skip_depth == 0) docs_put_inline(out, s + i + 9, j - (i + 9));
                i = j < n ? j + 3 : n;
                continue;
            }
            if (i + 1 < n && (s[i + 1] == '!' || s[i + 1] == '?')) {
                const char *gt = memchr(s + i, '>', n - i);
                i = gt ? (size_t)(gt - s) + 1 : n;
                continue;
            }
            size_t k = i + 1;
            int closing = k < n && s[k] == '/';
            if (closing) k++;
            char name[32];
            size_t nl = 0;
            size_t name_start = k;
            while (k < n && (isalnum((unsigned char)s[k]) || s[k] == ':' || s[k] == '_' ||
                             s[k] == '-' || s[k] == '.')) {
                if (s[k] == ':') {
                    nl = 0;  // drop a namespace prefix
                } else if (nl < sizeof name - 1) {
                    name[nl++] = (char)tolower((unsigned char)s[k]);
                }
                k++;
            }
            name[nl] = '\0';
            if (k == name_start || !isalpha((unsigned char)s[name_start])) {
                if (skip_depth == 0) docs_putc(out, '<');  // a literal '<'
                i++;
                continue;
            }
            // attributes, up to the closing '>' (quotes may hold '>')
            int self_closing = 0, skip_attr = 0;
            while (k < n && s[k] != '>') {
                if (isspace((unsigned char)s[k])) {
                    k++;
                    continue;
                }
                if (s[k] == '/') {
                    self_closing = k + 1 < n && s[k + 1] == '>';
                    k++;
                    continue;
                }
                size_t an = k;
                while (k < n && !isspace((unsigned char)s[k]) && s[k] != '=' && s[k] != '>' &&
                       s[k] != '/')
                    k++;
                size_t an_len = k - an;
                while (k < n && isspace((unsigned char)s[k])) k++;
                if (k < n && s[k] == '=') {
                    k++;
                    while (k < n && isspace((unsigned char)s[k])) k++;
                    size_t vs, ve;
                    if (k < n && (s[k] == '"' || s[k] == '\'')) {
                        char q = s[k++];
                        vs = k;
                        const char *qe = memchr(s + k, q, n - k);
                        ve = qe ? (size_t)(qe - s) : n;
                        k = qe ? ve + 1 : n;
                    } else {
                        vs = k;
                        while (k < n && !isspace((unsigned char)s[k]) && s[k] != '>') k++;
                        ve = k;
                    }
                    if ((an_len == 5 && strncasecmp(s + an, "class", 5) == 0) ||
                        (an_len == 2 && strncasecmp(s + an, "id", 2) == 0))
                        if (skip_class_value(s + vs, ve - vs)) skip_attr = 1;
                } else if (an_len == 0) {
                    k++;  // stray character
                }
            }
            i = k < n ? k + 1 : n;
            int is_void = mk == MK_HTML && in_sorted(name, HTML_VOID, NELEM(HTML_VOID));
            int has_content = !closing && !self_closing && !is_void;
            if (skip_depth > 0) {
                if (strcmp(name, skip_name) == 0) {
                    if (closing)
                        skip_depth--;
                    else if (has_content)
                        skip_depth++;
                }
                continue;
            }
            int block = !in_sorted(name, INLINE_TAGS, NELEM(INLINE_TAGS));
            if (strcmp(name, "keyseq") == 0 || strcmp(name, "keycombo") == 0) {
                if (closing && keyseq > 0) keyseq--;
                if (has_content) keyseq++;
                keys = 0;
            } else if (!closing && keyseq > 0 &&
                       (strcmp(name, "key") == 0 || strcmp(name, "keycap") == 0)) {
                if (keys++ > 0) docs_putc(out, '+');
            }
            if (closing) {
                if (block) docs_para_break(out, start);
                continue;
            }
            if (skip_attr && (strcmp(name, "body") == 0 || strcmp(name, "html") == 0))
                skip_attr = 0;  // page-wide classes ("toc2 toc-left") describe layout
            if (markup_skips(mk, name) || skip_attr) {
                if (block) docs_para_break(out, start);
                if (!has_content) continue;
                if (mk == MK_HTML && (strcmp(name, "script") == 0 || strcmp(name, "style") == 0)) {
                    // raw text: runs to "</script" whatever it holds
                    size_t j = find_ci(s, n, i, name[1] == 'c' ? "</script" : "</style");
                    const char *gt = j < n ? memchr(s + j, '>', n - j) : NULL;
                    i = gt ? (size_t)(gt - s) + 1 : n;
                    continue;
                }
                snprintf(skip_name, sizeof skip_name, "%s", name);
                skip_depth = 1;
                continue;
            }
            if (block) docs_para_break(out, start);
            continue;
        }
        if (skip_depth > 0) {
            i++;
            continue;
        }
        if (c == '&') {
            uint32_t cp;
            size_t used = decode_entity(s + i, n - i, &cp);
            if (used > 0) {
                if (cp == '\n' || cp == '\r')
                    docs_putc(out, ' ');
                else
                    docs_put_cp(out, cp);
                i += used;
                continue;
            }
        }
        // a run of plain text
        size_t j = i + 1;
        while (j < n && s[j] != '<' && s[j] != '&') j++;
        docs_put_inline(out, s + i, j - i);
        i = j;
    }
    docs_end(out, start);
}

// ---------------------------------------------------------------------------------
// roff man pages

typedef struct {
    const char *name;
    const char *utf8;
} RoffChar;

// \(xx and \[xx] special characters; sorted by name (strcmp).
static const RoffChar ROFF_CHARS[] = {
    {"!=", "\xe2\x89\xa0"}, {"**", "\xe2\x88\x97"}, {"*A", "\xce\x91"}, {"*B", "\xce\x92"},
    {"*D", "\xce\x94"}, {"*G", "\xce\x93"}, {"*L", "\xce\x9b"}, {"*P", "\xce\xa0"},
    {"*S", "\xce\xa3"}, {"*W", "\xce\xa9"}, {"*a", "\xce\xb1"}, {"*b", "\xce\xb2"},
    {"*d", "\xce\xb4"}, {"*e", "\xce\xb5"}, {"*g", "\xce\xb3"}, {"*l", "\xce\xbb"},
    {"*m", "\xce\xbc"}, {"*p", "\xcf\x80"}, {"*r", "\xcf\x81"}, {"*s", "\xcf\x83"},
    {"*t", "\xcf\x84"}, {"*w", "\xcf\x89"}, {"+-", "\xc2\xb1"}, {",c", "\xc3\xa7"},
    {"->", "\xe2\x86\x92"}, {"12", "\xc2\xbd"}, {"14", "\xc2\xbc"}, {"34", "\xc2\xbe"},
    {":A", "\xc3\x84"}, {":O", "\xc3\x96"}, {":U", "\xc3\x9c"}, {":a", "\xc3\xa4"},
    {":o", "\xc3\xb6"}, {":u", "\xc3\xbc"}, {"<-", "\xe2\x86\x90"}, {"<=", "\xe2\x89\xa4"},
    {"==", "\xe2\x89\xa1"}, {">=", "\xe2\x89\xa5"}, {"Bq", "\xe2\x80\x9e"},
    {"Eu", "\xe2\x82\xac"}, {"Fc", "\xc2\xbb"}, {"Fo", "\xc2\xab"}, {"Po", "\xc2\xa3"},
    {"Ye", "\xc2\xa5"}, {"aa", "\xc2\xb4"}, {"an", "-"}, {"aq", "'"}, {"ba", "|"},
    {"bq", "\xe2\x80\x9a"}, {"br", "|"}, {"bu", "\xe2\x80\xa2"}, {"co", "\xc2\xa9"},
    {"cq", "\xe2\x80\x99"}, {"ct", "\xc2\xa2"}, {"da", "\xe2\x86\x93"},
    {"dd", "\xe2\x80\xa1"}, {"de", "\xc2\xb0"}, {"dg", "\xe2\x80\xa0"}, {"di", "\xc3\xb7"},
    {"dq", "\""}, {"em", "\xe2\x80\x94"}, {"en", "\xe2\x80\x93"}, {"eq", "="},
    {"es", "\xe2\x88\x85"}, {"eu", "\xe2\x82\xac"}, {"fc", "\xe2\x80\xba"},
    {"fo", "\xe2\x80\xb9"}, {"ga", "`"}, {"ha", "^"}, {"hy", "-"}, {"if", "\xe2\x88\x9e"},
    {"lB", "["}, {"lC", "{"}, {"la", "\xe2\x9f\xa8"}, {"lq", "\xe2\x80\x9c"},
    {"mc", "\xc2\xb5"}, {"mi", "\xe2\x88\x92"}, {"mu", "\xc3\x97"}, {"no", "\xc2\xac"},
    {"oq", "\xe2\x80\x98"}, {"or", "|"}, {"pc", "\xc2\xb7"}, {"pl", "+"},
    {"ps", "\xc2\xb6"}, {"rB", "]"}, {"rC", "}"}, {"ra", "\xe2\x9f\xa9"},
    {"rg", "\xc2\xae"}, {"rq", "\xe2\x80\x9d"}, {"rs", "\\"}, {"ru", "_"},
    {"sc", "\xc2\xa7"}, {"sh", "#"}, {"shc", ""}, {"sl", "/"}, {"sq", "\xe2\x96\xa1"},
    {"ss", "\xc3\x9f"}, {"ti", "~"}, {"tm", "\xe2\x84\xa2"}, {"ua", "\xe2\x86\x91"},
    {"ul", "_"}, {"~=", "\xe2\x89\x88"},
};

static int roffchar_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const RoffChar *)elem)->name);
}

static void roff_put_special(CorpusDocs *out, const char *name, size_t n) {
    char key[32];
    if (n == 0 || n >= sizeof key) return;
    memcpy(key, name, n);
    key[n] = '\0';
    if (key[0] == 'u' && n >= 5) {  // \[u0410] or \[u0438_0306]
        uint32_t cp = 0;
        size_t k = 1;
        while (k < n && isxdigit((unsigned char)key[k]) && k < 7) {
            int dv = isdigit((unsigned char)key[k]) ? key[k] - '0'
                                                     : tolower((unsigned char)key[k]) - 'a' + 10;
            cp = cp * 16 + (uint32_t)dv;
            k++;
        }
        if (k == n || key[k] == '_') {
            docs_put_cp(out, cp);
            if (k < n) {  // a combining sequence: the rest, one by one
                uint32_t c2 = 0;
                for (k = k + 1; k <= n; k++) {
                    if (k == n || key[k] == '_') {
                        docs_put_cp(out, c2);
                        c2 = 0;
                    } else if (isxdigit((unsigned char)key[k])) {
                        int dv = isdigit((unsigned char)key[k])
                                     ? key[k] - '0'
                                     : tolower((unsigned char)key[k]) - 'a' + 10;
                        c2 = c2 * 16 + (uint32_t)dv;
                    }
                }
            }
            return;
        }
    }
    const RoffChar *rc = bsearch(key, ROFF_CHARS, NELEM(ROFF_CHARS), sizeof *ROFF_CHARS,
                                 roffchar_cmp);
    if (rc) docs_put(out, rc->utf8, strlen(rc->utf8));
}

// Strings (\*x, \*(xx, \*[xx]) the man macros define.
static void roff_put_string(CorpusDocs *out, const char *name, size_t n) {
    if ((n == 2 && (memcmp(name, "lq", 2) == 0 || memcmp(name, "Lq", 2) == 0)))
        docs_put(out, "\xe2\x80\x9c", 3);
    else if (n == 2 && (memcmp(name, "rq", 2) == 0 || memcmp(name, "Rq", 2) == 0))
        docs_put(out, "\xe2\x80\x9d", 3);
    else if (n == 1 && name[0] == 'R')
        docs_put(out, "\xc2\xae", 2);
    else if (n == 2 && memcmp(name, "Tm", 2) == 0)
        docs_put(out, "\xe2\x84\xa2", 3);
}

// Parses the name of an escape argument at s[*i]: "(xx", "[name]" or one character.
// Sets *name/*len and advances *i past it.
static void roff_escape_name(const char *s, size_t n, size_t *i, const char **name,
                             size_t *len) {
    size_t k = *i;
    *name = s + k;
    *len = 0;
    if (k >= n) return;
    if (s[k] == '(') {
        *name = s + k + 1;
        *len = k + 3 <= n ? 2 : n - k - 1;
        *i = k + 1 + *len;
    } else if (s[k] == '[') {
        const char *e = memchr(s + k + 1, ']', n - k - 1);
        size_t end = e ? (size_t)(e - s) : n;
        *name = s + k + 1;
        *len = end - k - 1;
        *i = e ? end + 1 : n;
    } else {
        *len = 1;
        *i = k + 1;
    }
}

// Skips a delimited escape argument ('...' or any delimiter) at s[*i].
static void roff_skip_delimited(const char *s, size_t n, size_t *i) {
    size_t k = *i;
    if (k >= n) return;
    char delim = s[k];
    const char *e = memchr(s + k + 1, delim, n - k - 1);
    *i = e ? (size_t)(e - s) + 1 : n;
}

// Appends the text of a roff line (or macro argument) with escapes interpreted. Returns
// 1 when the line ends in \c or a bare backslash (the next line continues this word).
static int roff_text(CorpusDocs *out, const char *s, size_t n) {
    size_t i = 0;
    int cont = 0;
    while (i < n) {
        const char *bs = memchr(s + i, '\\', n - i);
        size_t j = bs ? (size_t)(bs - s) : n;
        docs_put_inline(out, s + i, j - i);
        cont = 0;
        if (j >= n) break;
        i = j + 1;
        if (i >= n) {
            cont = 1;  // backslash-newline
            break;
        }
        char e = s[i++];
        const char *name;
        size_t len;
        switch (e) {
        case '"':
        case '#': return 0;  // comment to the end of the line
        case '\\':
        case 'e':
        case 'E': docs_putc(out, '\\'); break;
        case '-': docs_putc(out, '-'); break;
        case ' ':
        case '~':
        case '0':
        case 't': docs_putc(out, ' '); break;
        case '.': docs_putc(out, '.'); break;
        case '\'': docs_putc(out, '\''); break;
        case '`': docs_putc(out, '`'); break;
        case 'c':
            if (i >= n) cont = 1;
            break;
        case '|':
        case '^':
        case '&':
        case ')':
        case '%':
        case ':':
        case '/':
        case ',':
        case 'd':
        case 'u':
        case 'r':
        case 'p':
        case 'a':
        case 'z':
        case '{':
        case '}':
        case '!':
        case '?': break;
        case 'f':
        case 'F':
        case 'g':
        case 'k':
        case 'V':
        case 'Y':
        case 'm':
        case 'M':
        case '$': roff_escape_name(s, n, &i, &name, &len); break;
        case 'n':
            if (i < n && (s[i] == '+' || s[i] == '-')) i++;
            roff_escape_name(s, n, &i, &name, &len);
            break;
        case 's':
            if (i < n && (s[i] == '+' || s[i] == '-')) i++;
            if (i < n && (s[i] == '(' || s[i] == '[')) {
                roff_escape_name(s, n, &i, &name, &len);
            } else if (i < n && s[i] == '\'') {
                roff_skip_delimited(s, n, &i);
            } else if (i < n && isdigit((unsigned char)s[i])) {
                i++;
            }
            break;
        case '*':
            roff_escape_name(s, n, &i, &name, &len);
            roff_put_string(out, name, len);
            break;
        case '(':
        case '[':
            i--;
            roff_escape_name(s, n, &i, &name, &len);
            roff_put_special(out, name, len);
            break;
        case 'C':
            if (i < n) {
                size_t k = i;
                roff_skip_delimited(s, n, &i);
                if (i >= k + 2) roff_put_special(out, s + k + 1, i - k - 2);
            }
            break;
        case 'h':
        case 'v':
        case 'w':
        case 'l':
        case 'L':
        case 'D':
        case 'o':
        case 'X':
        case 'x':
        case 'b':
        case 'R':
        case 'Z':
        case 'H':
        case 'S':
        case 'A':
        case 'B':
        case 'N': roff_skip_delimited(s, n, &i); break;
        default: docs_putc(out, e); break;  // \X is X (e.g. a letter written \Б)
        }
    }
    return cont;
}

// Splits macro arguments (space separated, "double quoted" with "" for a quote; a
// backslash protects the next character). Returns the count (at most max).
static int roff_args(const char *s, size_t n, const char **arg, size_t *arg_len, int max) {
    int na = 0;
    size_t i = 0;
    while (i < n && na < max) {
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i >= n) break;
        if (s[i] == '"') {
            size_t b = ++i;
            while (i < n) {
                if (s[i] == '"') {
                    if (i + 1 < n && s[i + 1] == '"') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                if (s[i] == '\\' && i + 1 < n) i++;
                i++;
            }
            arg[na] = s + b;
            arg_len[na] = (i < n ? i : n) - b;
            na++;
            if (i < n) i++;
        } else {
            size_t b = i;
            while (i < n && s[i] != ' ' && s[i] != '\t') {
                if (s[i] == '\\' && i + 1 < n) i++;
                i++;
            }
            if (i > n) i = n;
            arg[na] = s + b;
            arg_len[na] = i - b;
            na++;
        }
    }
    return na;
}

// Appends a quoted argument with "" turned into ".
static void roff_arg_text(CorpusDocs *out, const char *a, size_t n) {
    size_t i = 0;
    while (i < n) {
        const char *q = NULL;
        for (size_t k = i; k + 1 < n; k++)
            if (a[k] == '"' && a[k + 1] == '"') {
                q = a + k;
                break;
            }
        size_t j = q ? (size_t)(q - a) : n;
        roff_text(out, a + i, j - i);
        if (!q) break;
        docs_putc(out, '"');
        i = j + 2;
    }
}

static int roff_is(const char *name, size_t n, const char *want) {
    return strlen(want) == n && memcmp(name, want, n) == 0;
}

static void extract_man(const char *data, size_t n, CorpusDocs *out) {
    size_t start = out->text_bytes, pos = 0;
    int nofill = 0, in_example = 0, skip_macro = 0, brace_depth = 0;
    int table = 0;  // 0 none, 1 options and format lines, 2 data
    char tab = '\t';
    int pending_break = 0;  // after the next text line (tags and headings)
    while (pos < n) {
        const char *line;
        size_t len = next_line(data, n, &pos, &line);
        if (brace_depth > 0) {  // inside a conditional's \{ ... \}
            for (size_t k = 0; k + 1 < len; k++) {
                if (line[k] == '\\' && line[k + 1] == '{') brace_depth++;
                if (line[k] == '\\' && line[k + 1] == '}') brace_depth--;
            }
            continue;
        }
        int is_request = len > 0 && (line[0] == '.' || line[0] == '\'');
        const char *name = NULL, *rest = NULL;
        size_t name_len = 0, rest_len = 0;
        if (is_request) {
            size_t k = 1;
            while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
            size_t b = k;
            while (k < len && line[k] != ' ' && line[k] != '\t') {
                if (line[k] == '\\') {  // ".\"" comments and escapes in names
                    break;
                }
                k++;
            }
            name = line + b;
            name_len = k - b;
            if (k < len && line[k] == '\\' && k == b) {
                name_len = 0;  // ".\" comment" or ".\}" and the like
            }
            rest = line + k;
            rest_len = len - k;
        }
        if (skip_macro) {  // .de/.ig bodies end at ".."
            if (is_request && len >= 2 && line[1] == '.') skip_macro = 0;
            continue;
        }
        if (in_example) {
            if (is_request && roff_is(name, name_len, "EE")) in_example = 0;
            continue;
        }
        if (table == 1) {  // options line (";") and format lines (the last ends in ".")
            size_t m = len;
            while (m > 0 && (line[m - 1] == ' ' || line[m - 1] == '\t')) m--;
            if (is_request && roff_is(name, name_len, "TE")) {
                table = 0;
                docs_para_break(out, start);
                continue;
            }
            if (m > 0 && line[m - 1] == ';') {
                for (size_t k = 0; k + 5 < m; k++)
                    if (strncasecmp(line + k, "tab(", 4) == 0) tab = line[k + 4];
            } else if (m > 0 && line[m - 1] == '.') {
                table = 2;
            }
            continue;
        }
        if (is_request) {
            if (name_len == 0) {  // comments, ".\}" lines, a lone "."
                continue;
            }
            const char *arg[16];
            size_t alen[16];
            int na;
            if (roff_is(name, name_len, "SH") || roff_is(name, name_len, "SS")) {
                docs_para_break(out, start);
                na = roff_args(rest, rest_len, arg, alen, 16);
                if (na == 0) {
                    pending_break = 1;
                    continue;
                }
                for (int a = 0; a < na; a++) {
                    if (a) docs_putc(out, ' ');
                    roff_arg_text(out, arg[a], alen[a]);
                }
                docs_para_break(out, start);
            } else if (roff_is(name, name_len, "PP") || roff_is(name, name_len, "LP") ||
                       roff_is(name, name_len, "P") || roff_is(name, name_len, "sp") ||
                       roff_is(name, name_len, "HP") || roff_is(name, name_len, "bp")) {
                docs_para_break(out, start);
            } else if (roff_is(name, name_len, "TP") || roff_is(name, name_len, "TQ")) {
                docs_para_break(out, start);
                pending_break = 1;
            } else if (roff_is(name, name_len, "IP")) {
                docs_para_break(out, start);
                na = roff_args(rest, rest_len, arg, alen, 16);
                if (na > 0) {
                    roff_arg_text(out, arg[0], alen[0]);
                    docs_para_break(out, start);
                }
            } else if (roff_is(name, name_len, "B") || roff_is(name, name_len, "I") ||
                       roff_is(name, name_len, "SM") || roff_is(name, name_len, "SB")) {
                na = roff_args(rest, rest_len, arg, alen, 16);
                for (int a = 0; a < na; a++) {
                    roff_arg_text(out, arg[a], alen[a]);
                    docs_putc(out, ' ');
                }
                if (na > 0 && (nofill || pending_break)) {
                    docs_para_break(out, start);
                    pending_break = 0;
                }
            } else if (name_len == 2 && strchr("BIR", name[0]) && strchr("BIR", name[1]) &&
                       name[0] != name[1]) {  // BR BI IB IR RB RI: alternating fonts
                na = roff_args(rest, rest_len, arg, alen, 16);
                for (int a = 0; a < na; a++) roff_arg_text(out, arg[a], alen[a]);
                docs_putc(out, ' ');
                if (na > 0 && (nofill || pending_break)) {
                    docs_para_break(out, start);
                    pending_break = 0;
                }
            } else if (roff_is(name, name_len, "br")) {
                if (nofill)
                    docs_para_break(out, start);
                else
                    docs_putc(out, ' ');
            } else if (roff_is(name, name_len, "nf")) {
                nofill = 1;
                docs_para_break(out, start);
            } else if (roff_is(name, name_len, "fi")) {
                nofill = 0;
                docs_para_break(out, start);
            } else if (roff_is(name, name_len, "EX")) {
                in_example = 1;
                docs_para_break(out, start);
            } else if (roff_is(name, name_len, "TS")) {
                table = 1;
                tab = '\t';
                docs_para_break(out, start);
            } else if (roff_is(name, name_len, "T&")) {
                table = 1;
            } else if (roff_is(name, name_len, "TE")) {
                table = 0;
                docs_para_break(out, start);
            } else if (roff_is(name, name_len, "UE") || roff_is(name, name_len, "ME")) {
                // trailing punctuation after a link
                while (out->text_bytes > start && out->text[out->text_bytes - 1] == ' ')
                    out->text_bytes--;
                na = roff_args(rest, rest_len, arg, alen, 16);
                for (int a = 0; a < na; a++) roff_arg_text(out, arg[a], alen[a]);
                docs_putc(out, ' ');
            } else if (roff_is(name, name_len, "de") || roff_is(name, name_len, "de1") ||
                       roff_is(name, name_len, "am") || roff_is(name, name_len, "ig") ||
                       roff_is(name, name_len, "dei") || roff_is(name, name_len, "ami")) {
                skip_macro = 1;
            } else if (roff_is(name, name_len, "if") || roff_is(name, name_len, "ie") ||
                       roff_is(name, name_len, "el") || roff_is(name, name_len, "while")) {
                for (size_t k = 0; k + 1 < rest_len; k++) {
                    if (rest[k] == '\\' && rest[k + 1] == '{') brace_depth++;
                    if (rest[k] == '\\' && rest[k + 1] == '}') brace_depth--;
                }
                if (brace_depth < 0) brace_depth = 0;
            }
            // every other request (TH, UR, MT, RS, RE, in, ad, PD, ft, ds, ...) is dropped
            continue;
        }
        // a text line
        if (table == 2) {
            docs_para_break(out, start);
            size_t k = 0;
            while (k < len) {
                if (k + 1 < len && line[k] == 'T' && (line[k + 1] == '{' || line[k + 1] == '}') &&
                    (k == 0 || line[k - 1] == tab)) {
                    k += 2;
                    continue;
                }
                size_t j = k;
                while (j < len && line[j] != tab &&
                       !(j + 1 < len && line[j] == 'T' && (line[j + 1] == '{' || line[j + 1] == '}') &&
                         (j == 0 || line[j - 1] == tab)))
                    j++;
                roff_text(out, line + k, j - k);
                docs_putc(out, ' ');
                k = j < len && line[j] == tab ? j + 1 : j;
            }
            docs_para_break(out, start);
            continue;
        }
        if (is_blank(line, len)) {
            docs_para_break(out, start);
            continue;
        }
        int cont = roff_text(out, line, len);
        if (!cont) docs_putc(out, ' ');
        if (nofill || pending_break) {
            docs_para_break(out, start);
            pending_break = 0;
        }
    }
    docs_end(out, start);
}

// ---------------------------------------------------------------------------------

int corpus_extract(CorpusFormat fmt, const char *data, size_t n_bytes, CorpusDocs *out,
                   char *err) {
    switch (fmt) {
    case CORPUS_FMT_TEXT: extract_text(data, n_bytes, out); return 0;
    case CORPUS_FMT_FORTUNE: extract_fortune(data, n_bytes, out); return 0;
    case CORPUS_FMT_MAN: extract_man(data, n_bytes, out); return 0;
    case CORPUS_FMT_HTML: extract_markup(MK_HTML, data, n_bytes, out); return 0;
    case CORPUS_FMT_XML: extract_markup(MK_XML, data, n_bytes, out); return 0;
    case CORPUS_FMT_XHP: extract_markup(MK_XHP, data, n_bytes, out); return 0;
    case CORPUS_FMT_DEBTRANS: extract_debtrans(data, n_bytes, out); return 0;
    case CORPUS_FMT_MO: return extract_mo(data, n_bytes, out, err);
    case CORPUS_FMT_NEWS: extract_news(data, n_bytes, out); return 0;
    default: return cx_err(err, "unknown corpus format %d", (int)fmt);
    }
}

// ---------------------------------------------------------------------------------
// Normalisation

static int is_space_cp(uint32_t cp) {
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
           cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0x85;
}

static int is_dropped_cp(uint32_t cp) {
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0xAD ||
           (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x206F) || cp == 0xFEFF || cp == 0xFFFD || cp == 0xFFFE ||
           cp == 0xFFFF || (cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000;
}

size_t corpus_normalize(const char *in, size_t n_bytes, char *out, uint64_t *n_invalid) {
    size_t i = 0, o = 0;
    size_t last_pos = 0;   // where the last emitted code point starts in out
    uint32_t last_cp = 0;  // 0: none since the last space
    int pending_space = 0;
    uint64_t bad = 0;
    while (i < n_bytes) {
        uint32_t cp;
        size_t r = utf8_decode(in + i, n_bytes - i, &cp);
        if (r == 0) {  // one invalid sequence: its maximal subpart is dropped
            bad++;
            i += utf8_invalid_len(in + i, n_bytes - i);
            continue;
        }
        i += r;
        if (is_space_cp(cp)) {
            if (o > 0) pending_space = 1;
            last_cp = 0;
            continue;
        }
        if (is_dropped_cp(cp)) continue;
        // compose и/И + breve -> й/Й, е/Е + diaeresis -> ё/Ё
        if (cp == 0x306 && (last_cp == 0x438 || last_cp == 0x418)) {
            o = last_pos + utf8_encode(last_cp == 0x438 ? 0x439 : 0x419, out + last_pos);
            last_cp = 0;
            continue;
        }
        if (cp == 0x308 && (last_cp == 0x435 || last_cp == 0x415)) {
            o = last_pos + utf8_encode(last_cp == 0x435 ? 0x451 : 0x401, out + last_pos);
            last_cp = 0;
            continue;
        }
        if (pending_space) {
            out[o++] = ' ';
            pending_space = 0;
        }
        last_pos = o;
        last_cp = cp;
        o += utf8_encode(cp, out + o);
    }
    if (n_invalid) *n_invalid = bad;
    return o;
}

static int is_cyrillic_letter(uint32_t cp) {
    return cp >= 0x400 && cp <= 0x52F && !(cp >= 0x482 && cp <= 0x489);
}

static int is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (cp >= 0xC0 && cp <= 0x24F) return cp != 0xD7 && cp != 0xF7;
    if (cp >= 0x370 && cp <= 0x3FF) return cp >= 0x386 && cp != 0x387;
    if (cp >= 0x400 && cp <= 0x52F) return is_cyrillic_letter(cp);
    return (cp >= 0x531 && cp <= 0x58F) || (cp >= 0x5D0 && cp <= 0x5EA) ||
           (cp >= 0x620 && cp <= 0x64A) || (cp >= 0x900 && cp <= 0xEFF) ||
           (cp >= 0x10A0 && cp <= 0x10FF) || (cp >= 0x1E00 && cp <= 0x1FFF) ||
           (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7AF);
}

void corpus_count(const char *s, size_t n_bytes, size_t *n_chars, size_t *n_letters,
                  size_t *n_cyrillic) {
    size_t i = 0, chars = 0, letters = 0, cyr = 0;
    while (i < n_bytes) {
        uint32_t cp;
        size_t r = utf8_decode(s + i, n_bytes - i, &cp);
        if (r == 0) {
            i += utf8_invalid_len(s + i, n_bytes - i);
            continue;
        }
        i += r;
        chars++;
        if (is_letter(cp)) {
            letters++;
            if (is_cyrillic_letter(cp)) cyr++;
        }
    }
    if (n_chars) *n_chars = chars;
    if (n_letters) *n_letters = letters;
    if (n_cyrillic) *n_cyrillic = cyr;
}

// ---------------------------------------------------------------------------------
// Hashing, split, dedup

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv_feed(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

uint64_t corpus_hash64(const char *s, size_t n_bytes) {
    uint64_t h = fnv_feed(FNV_OFFSET, s, n_bytes);
    return h ? h : 1;
}

int corpus_split_is_valid(uint64_t doc_hash, double valid_percent) {
    // splitmix64 finalizer: FNV's low bits are weak on their own
    uint64_t z = doc_hash + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    if (!(valid_percent > 0)) return 0;
    if (valid_percent >= 100) return 1;
    uint64_t threshold = (uint64_t)(valid_percent * 10000.0 + 0.5);  // per million
    return z % 1000000u < threshold;
}

typedef struct {
    uint64_t *slot;  // 0 = empty
    size_t cap, n;
} HashSet;

static void hset_free(HashSet *s) {
    free(s->slot);
    memset(s, 0, sizeof *s);
}

static int hset_contains(const HashSet *s, uint64_t h) {
    if (s->cap == 0) return 0;
    size_t mask = s->cap - 1;
    for (size_t i = (size_t)(h ^ (h >> 29)) & mask;; i = (i + 1) & mask) {
        if (s->slot[i] == h) return 1;
        if (s->slot[i] == 0) return 0;
    }
}

// Inserts h (non-zero). Returns 1 when it was new, 0 when already present.
static int hset_insert(HashSet *s, uint64_t h) {
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *slot = calloc(cap, sizeof *slot);
        CHECK(slot != NULL, "out of memory (hash set of %zu entries)", cap);
        for (size_t i = 0; i < s->cap; i++) {
            uint64_t v = s->slot[i];
            if (!v) continue;
            size_t j = (size_t)(v ^ (v >> 29)) & (cap - 1);
            while (slot[j]) j = (j + 1) & (cap - 1);
            slot[j] = v;
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    size_t mask = s->cap - 1;
    size_t i = (size_t)(h ^ (h >> 29)) & mask;
    while (s->slot[i]) {
        if (s->slot[i] == h) return 0;
        i = (i + 1) & mask;
    }
    s->slot[i] = h;
    s->n++;
    return 1;
}

static void hset_clear(HashSet *s) {
    if (s->n) memset(s->slot, 0, s->cap * sizeof *s->slot);
    s->n = 0;
}

typedef struct {
    size_t off, len, chars, letters, cyr;
    uint64_t hash;
    int keep;
} Para;

struct CorpusFilter {
    CorpusOptions opt;
    HashSet docs, paras, doc_paras;
    char *norm;  // normalised paragraphs of the current document
    size_t norm_cap;
    Para *para;
    size_t para_cap;
    char *line;
    size_t line_cap;
};

void corpus_options_default(CorpusOptions *opt) {
    opt->min_chars = 20;
    opt->max_chars = 20000;
    opt->min_cyrillic_doc = 0.5;
    opt->min_cyrillic_para = 0.3;
    opt->valid_percent = 3.0;
    opt->para_dedup = 1;
}

void corpus_stats_add(CorpusStats *dst, const CorpusStats *src) {
    dst->files += src->files;
    dst->input_bytes += src->input_bytes;
    dst->docs_in += src->docs_in;
    dst->docs_dup += src->docs_dup;
    dst->docs_short += src->docs_short;
    dst->docs_noncyr += src->docs_noncyr;
    dst->docs_kept += src->docs_kept;
    dst->paras_in += src->paras_in;
    dst->paras_noncyr += src->paras_noncyr;
    dst->paras_dup += src->paras_dup;
    dst->invalid_utf8 += src->invalid_utf8;
    for (int k = 0; k < 2; k++) {
        dst->lines[k] += src->lines[k];
        dst->bytes[k] += src->bytes[k];
        dst->chars[k] += src->chars[k];
        dst->cyrillic[k] += src->cyrillic[k];
    }
}

void corpus_filter_set_options(CorpusFilter *f, const CorpusOptions *opt) {
    f->opt = *opt;
    if (f->opt.max_chars == 0) f->opt.max_chars = SIZE_MAX;
}

CorpusFilter *corpus_filter_new(const CorpusOptions *opt) {
    CorpusFilter *f = calloc(1, sizeof *f);
    CHECK(f != NULL, "out of memory");
    corpus_filter_set_options(f, opt);
    return f;
}

void corpus_filter_free(CorpusFilter *f) {
    if (!f) return;
    hset_free(&f->docs);
    hset_free(&f->paras);
    hset_free(&f->doc_paras);
    free(f->norm);
    free(f->para);
    free(f->line);
    free(f);
}

// Returns p grown (realloc) to hold at least need elements of elem bytes.
static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    CHECK(c <= SIZE_MAX / elem, "allocation overflow (%zu x %zu bytes)", c, elem);
    void *q = realloc(p, c * elem);
    CHECK(q != NULL, "out of memory (%zu x %zu bytes)", c, elem);
    *cap = c;
    return q;
}

static int emit_line(CorpusFilter *f, size_t n, size_t chars, size_t cyr, int valid,
                     CorpusStats *st, CorpusEmitFn emit, void *ctx) {
    st->lines[valid]++;
    st->bytes[valid] += n;
    st->chars[valid] += chars;
    st->cyrillic[valid] += cyr;
    return emit(ctx, f->line, n, valid) ? -1 : 0;
}

int corpus_filter_add(CorpusFilter *f, const char *doc, size_t n_bytes, CorpusStats *st,
                      CorpusEmitFn emit, void *ctx) {
    const CorpusOptions *o = &f->opt;
    st->docs_in++;
    f->norm = grow(f->norm, &f->norm_cap, n_bytes + 1, 1);
    size_t norm_bytes = 0, n_para = 0, noncyr = 0;
    // a. normalise, b. per-paragraph Cyrillic filter
    size_t i = 0;
    while (i < n_bytes) {
        const char *nl = memchr(doc + i, '\n', n_bytes - i);
        size_t end = nl ? (size_t)(nl - doc) : n_bytes;
        uint64_t bad = 0;
        size_t m = corpus_normalize(doc + i, end - i, f->norm + norm_bytes, &bad);
        st->invalid_utf8 += bad;
        i = end + 1;
        if (m == 0) continue;
        st->paras_in++;
        Para p = {.off = norm_bytes, .len = m, .keep = 1};
        corpus_count(f->norm + norm_bytes, m, &p.chars, &p.letters, &p.cyr);
        if (p.letters == 0 || (double)p.cyr < o->min_cyrillic_para * (double)p.letters) {
            st->paras_noncyr++;
            noncyr++;
            continue;
        }
        f->para = grow(f->para, &f->para_cap, n_para + 1, sizeof *f->para);
        f->para[n_para++] = p;
        norm_bytes += m;
    }
    if (n_para == 0) {
        if (noncyr)
            st->docs_noncyr++;
        else
            st->docs_short++;
        return 0;
    }
    // c. document dedup; the hash also decides the split
    uint64_t h = FNV_OFFSET;
    for (size_t k = 0; k < n_para; k++) {
        if (k) h = fnv_feed(h, " ", 1);
        h = fnv_feed(h, f->norm + f->para[k].off, f->para[k].len);
    }
    if (h == 0) h = 1;
    if (hset_contains(&f->docs, h)) {
        st->docs_dup++;
        return 0;
    }
    // d. paragraph dedup (against earlier documents and earlier in this one)
    size_t chars = 0, letters = 0, cyr = 0, kept = 0;
    hset_clear(&f->doc_paras);
    for (size_t k = 0; k < n_para; k++) {
        Para *p = &f->para[k];
        p->hash = corpus_hash64(f->norm + p->off, p->len);
        if (o->para_dedup &&
            (hset_contains(&f->paras, p->hash) || !hset_insert(&f->doc_paras, p->hash))) {
            p->keep = 0;
            continue;
        }
        if (!o->para_dedup) hset_insert(&f->doc_paras, p->hash);
        chars += p->chars + (kept ? 1 : 0);
        letters += p->letters;
        cyr += p->cyr;
        kept++;
    }
    // e. length and Cyrillic share of what is left
    if (kept == 0 || chars < o->min_chars) {
        st->docs_short++;
        return 0;
    }
    if ((double)cyr < o->min_cyrillic_doc * (double)letters) {
        st->docs_noncyr++;
        return 0;
    }
    hset_insert(&f->docs, h);
    for (size_t k = 0; k < n_para; k++) {
        if (f->para[k].keep)
            hset_insert(&f->paras, f->para[k].hash);
        else
            st->paras_dup++;
    }
    st->docs_kept++;
    int valid = corpus_split_is_valid(h, o->valid_percent);
    // f. emit, cut at paragraph boundaries
    f->line = grow(f->line, &f->line_cap, norm_bytes + n_para + 1, 1);
    size_t line_bytes = 0, line_chars = 0, line_cyr = 0;
    for (size_t k = 0; k < n_para; k++) {
        const Para *p = &f->para[k];
        if (!p->keep) continue;
        if (line_bytes > 0 && line_chars + 1 + p->chars > o->max_chars) {
            if (emit_line(f, line_bytes, line_chars, line_cyr, valid, st, emit, ctx)) return -1;
            line_bytes = line_chars = line_cyr = 0;
        }
        if (line_bytes > 0) {
            f->line[line_bytes++] = ' ';
            line_chars++;
        }
        memcpy(f->line + line_bytes, f->norm + p->off, p->len);
        line_bytes += p->len;
        line_chars += p->chars;
        line_cyr += p->cyr;
    }
    if (line_bytes > 0 && emit_line(f, line_bytes, line_chars, line_cyr, valid, st, emit, ctx))
        return -1;
    return 0;
}
