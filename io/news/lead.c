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

