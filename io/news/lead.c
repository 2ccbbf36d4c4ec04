// lead.c: the first-sentence baseline and lowercasing (see lead.h).
#include "io/news/lead.h"

#include <stdint.h>
#include <string.h>

#include "io/eval/rouge.h"
#include "io/text/utf8.h"

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

// The Russian months' stems (lowercase UTF-8): "дек", "декабря", "мая", "май" all match.
static const char *const MONTHS[] = {"янв", "фев", "мар", "апр", "ма", "июн",
                                     "июл", "авг", "сен", "окт", "ноя", "дек"};

// A dash at p: '-', U+2013 or U+2014 (UTF-8). Returns its length, 0 if none.
static size_t dash_len(const char *p) {
    if (*p == '-') return 1;
    if ((unsigned char)p[0] == 0xE2 && (unsigned char)p[1] == 0x80 &&
        ((unsigned char)p[2] == 0x93 || (unsigned char)p[2] == 0x94))
        return 3;
    return 0;
}

static const char *skip_spaces(const char *p) {
    while (*p == ' ') p++;
    return p;
}

size_t headline_dateline_len(const char *text, size_t n) {
    char buf[HEADLINE_DATELINE_MAX + 1];
    size_t m = n < HEADLINE_DATELINE_MAX ? n : HEADLINE_DATELINE_MAX;
    memcpy(buf, text, m);
    for (size_t i = 0; i < m; i++)
        if (buf[i] == '\n' || buf[i] == '\t' || buf[i] == '\r') buf[i] = ' ';
    if (headline_lowercase(buf, m) != m) return 0;  // (only U+0130 shrinks: no dateline has it)
    buf[m] = 0;
    // PLACE: 1 to 60 bytes without digits or '.', then ", " or ". "
    size_t i = 0;
    while (i < m && i <= 60 && buf[i] != ',' && buf[i] != '.') {
        if (buf[i] >= '0' && buf[i] <= '9') return 0;
        i++;
    }
    if (i == 0 || i > 60 || i + 1 >= m || buf[i + 1] != ' ') return 0;
    const char sep = buf[i];
    const char *p = buf + i + 2;
    // DAY MONTH
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (digits < 1 || digits > 2 || *p != ' ') return 0;
    p++;
    size_t k = 0;
    while (k < sizeof MONTHS / sizeof MONTHS[0] && strncmp(p, MONTHS[k], strlen(MONTHS[k]))) k++;
    if (k == sizeof MONTHS / sizeof MONTHS[0]) return 0;
    for (;;) {  // the rest of the month's letters (Cyrillic or ASCII)
        const unsigned char c0 = (unsigned char)p[0], c1 = (unsigned char)p[1];
        if ((c0 == 0xD0 || c0 == 0xD1) && (c1 & 0xC0) == 0x80) p += 2;
        else if (c0 >= 'a' && c0 <= 'z') p++;
        else break;
    }
    const char *q = skip_spaces(p);
    size_t d = dash_len(q);
    if (sep == ',' && d) {  // RIA: "москва, 1 дек — риа новости[, автор]."
        const char *a = skip_spaces(q + d);
        const char *dot = strchr(a, '.');
        if (!dot || dot == a || dot - a > 80 || (dot[1] != ' ' && dot[1] != 0)) return 0;
        p = dot + 1;
    } else if (*p == '.' && sep == ',') {  // TASS: "москва, 1 декабря."
        p++;
    } else if (*p == '.' && sep == '.' && p[1] == ' ') {  // Interfax: "москва. 30 апреля. interfax.ru - "
        const char *a = p + 2, *sp = strchr(a, ' ');
        if (!sp || sp == a || sp - a > 30 || !dash_len(sp + 1)) return 0;
        p = sp + 1 + dash_len(sp + 1);
    } else {
        return 0;
    }
    p = skip_spaces(p);
    return (size_t)(p - buf) < n ? (size_t)(p - buf) : 0;  // something must follow
}

size_t headline_lead_rest(const char *text, size_t n) {
    size_t pos = headline_dateline_len(text, n);
    while (pos < n && is_space_byte(text[pos])) pos++;
    if (pos >= n) return n;
    size_t next;
    sentence_end(text, n, pos, &next);
    while (next < n && is_space_byte(text[next])) next++;
    return next;
}

size_t headline_first_sentence(const char *text, size_t n, int skip, char *out, int *skipped) {
    if (skip == HEADLINE_LEAD_AUTO) {
        size_t d = headline_dateline_len(text, n);
        if (skipped) *skipped = d > 0;
        return headline_first_sentence(text + d, n - d, HEADLINE_LEAD_KEEP, out, NULL);
    }
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
    int k = found == 2 && skip == HEADLINE_LEAD_SKIP;
    if (skipped) *skipped = k;
    size_t o = 0;
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
