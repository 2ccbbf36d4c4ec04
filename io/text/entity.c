// entity.c: see entity.h.
#include "io/text/entity.h"

#include <string.h>

#include "io/text/entity_internal.h"

#define CORPUS ENTITY_CORPUS
#define NEWS ENTITY_NEWS
#define BOTH (ENTITY_CORPUS | ENTITY_NEWS)

const EntityDef entity_defs[] = {
    {"AElig", 0xC6, CORPUS},    {"AMP", 0x26, NEWS},        {"Aacute", 0xC1, CORPUS},
    {"Agrave", 0xC0, CORPUS},   {"Aring", 0xC5, CORPUS},    {"Auml", 0xC4, CORPUS},
    {"Ccedil", 0xC7, CORPUS},   {"Dagger", 0x2021, CORPUS}, {"Eacute", 0xC9, CORPUS},
    {"GT", 0x3E, NEWS},         {"LT", 0x3C, NEWS},         {"Omega", 0x3A9, CORPUS},
    {"Ouml", 0xD6, CORPUS},     {"Prime", 0x2033, CORPUS},  {"QUOT", 0x22, NEWS},
    {"Uuml", 0xDC, CORPUS},     {"aacute", 0xE1, CORPUS},   {"acirc", 0xE2, CORPUS},
    {"acute", 0xB4, CORPUS},    {"aelig", 0xE6, CORPUS},    {"agrave", 0xE0, CORPUS},
    {"alpha", 0x3B1, CORPUS},   {"amp", 0x26, BOTH},        {"apos", 0x27, BOTH},
    {"aring", 0xE5, CORPUS},    {"asymp", 0x2248, CORPUS},  {"auml", 0xE4, CORPUS},
    {"bdquo", 0x201E, BOTH},    {"beta", 0x3B2, CORPUS},    {"brvbar", 0xA6, CORPUS},
    {"bull", 0x2022, BOTH},     {"ccedil", 0xE7, CORPUS},   {"cedil", 0xB8, CORPUS},
    {"cent", 0xA2, CORPUS},     {"copy", 0xA9, BOTH},       {"crarr", 0x21B5, CORPUS},
    {"curren", 0xA4, CORPUS},   {"dArr", 0x21D3, CORPUS},   {"dagger", 0x2020, CORPUS},
    {"darr", 0x2193, CORPUS},   {"deg", 0xB0, BOTH},        {"delta", 0x3B4, CORPUS},
    {"divide", 0xF7, CORPUS},   {"eacute", 0xE9, CORPUS},   {"ecirc", 0xEA, CORPUS},
    {"egrave", 0xE8, CORPUS},   {"emsp", 0x2003, BOTH},     {"ensp", 0x2002, BOTH},
    {"epsilon", 0x3B5, CORPUS}, {"euml", 0xEB, CORPUS},     {"euro", 0x20AC, BOTH},
    {"frac12", 0xBD, CORPUS},   {"frac14", 0xBC, CORPUS},   {"frac34", 0xBE, CORPUS},
    {"frasl", 0x2044, CORPUS},  {"gamma", 0x3B3, CORPUS},   {"ge", 0x2265, CORPUS},
    {"gt", 0x3E, BOTH},         {"hArr", 0x21D4, CORPUS},   {"harr", 0x2194, CORPUS},
    {"hellip", 0x2026, BOTH},   {"iacute", 0xED, CORPUS},   {"icirc", 0xEE, CORPUS},
    {"iexcl", 0xA1, CORPUS},    {"infin", 0x221E, CORPUS},  {"iquest", 0xBF, CORPUS},
    {"iuml", 0xEF, CORPUS},     {"lArr", 0x21D0, CORPUS},   {"lambda", 0x3BB, CORPUS},
    {"laquo", 0xAB, BOTH},      {"larr", 0x2190, CORPUS},   {"ldquo", 0x201C, BOTH},
    {"le", 0x2264, CORPUS},     {"loz", 0x25CA, CORPUS},    {"lrm", 0x200E, CORPUS},
    {"lsaquo", 0x2039, CORPUS}, {"lsquo", 0x2018, BOTH},    {"lt", 0x3C, BOTH},
    {"macr", 0xAF, CORPUS},     {"mdash", 0x2014, BOTH},    {"micro", 0xB5, CORPUS},
    {"middot", 0xB7, BOTH},     {"minus", 0x2212, BOTH},    {"mu", 0x3BC, CORPUS},
    {"nbsp", 0xA0, BOTH},       {"ndash", 0x2013, BOTH},    {"ne", 0x2260, CORPUS},
    {"not", 0xAC, CORPUS},      {"ntilde", 0xF1, CORPUS},   {"numero", 0x2116, NEWS},
    {"oacute", 0xF3, CORPUS},   {"ocirc", 0xF4, CORPUS},    {"ograve", 0xF2, CORPUS},
    {"oline", 0x203E, CORPUS},  {"omega", 0x3C9, CORPUS},   {"ordf", 0xAA, CORPUS},
    {"ordm", 0xBA, CORPUS},     {"oslash", 0xF8, CORPUS},   {"ouml", 0xF6, CORPUS},
    {"para", 0xB6, CORPUS},     {"permil", 0x2030, CORPUS}, {"pi", 0x3C0, CORPUS},
    {"plusmn", 0xB1, CORPUS},   {"pound", 0xA3, CORPUS},    {"prime", 0x2032, CORPUS},
    {"quot", 0x22, BOTH},       {"rArr", 0x21D2, CORPUS},   {"raquo", 0xBB, BOTH},
    {"rarr", 0x2192, CORPUS},   {"rdquo", 0x201D, BOTH},    {"reg", 0xAE, BOTH},
    {"rlm", 0x200F, CORPUS},    {"rsaquo", 0x203A, CORPUS}, {"rsquo", 0x2019, BOTH},
    {"sbquo", 0x201A, BOTH},    {"sect", 0xA7, CORPUS},     {"shy", 0xAD, BOTH},
    {"sigma", 0x3C3, CORPUS},   {"sup1", 0xB9, CORPUS},     {"sup2", 0xB2, CORPUS},
    {"sup3", 0xB3, CORPUS},     {"szlig", 0xDF, CORPUS},    {"thinsp", 0x2009, BOTH},
    {"times", 0xD7, BOTH},      {"trade", 0x2122, BOTH},    {"uArr", 0x21D1, CORPUS},
    {"uacute", 0xFA, CORPUS},   {"uarr", 0x2191, CORPUS},   {"ucirc", 0xFB, CORPUS},
    {"ugrave", 0xF9, CORPUS},   {"uml", 0xA8, CORPUS},      {"uuml", 0xFC, CORPUS},
    {"yen", 0xA5, CORPUS},      {"zwj", 0x200D, CORPUS},    {"zwnj", 0x200C, CORPUS},
};
const size_t entity_n_defs = sizeof entity_defs / sizeof entity_defs[0];

// Compares name[0..n_bytes) with the NUL-terminated def, in strcmp order.
static int name_cmp(const char *name, size_t n_bytes, const char *def) {
    size_t def_bytes = strlen(def);
    int c = memcmp(name, def, n_bytes < def_bytes ? n_bytes : def_bytes);
    if (c != 0) return c;
    return (n_bytes > def_bytes) - (n_bytes < def_bytes);
}

uint32_t entity_lookup(const char *name, size_t n_bytes, unsigned sets) {
    size_t lo = 0, hi = entity_n_defs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(name, n_bytes, entity_defs[mid].name);
        if (c == 0) return (entity_defs[mid].sets & sets) ? entity_defs[mid].cp : 0;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return 0;
}

size_t entity_read_number(const char *s, size_t n_bytes, int hex, size_t max_digits,
                          uint32_t *cp) {
    uint32_t v = 0;  // stops growing once above U+10FFFF: at most 0x10FFFFF
    size_t i = 0;
    for (; i < n_bytes && i < max_digits; i++) {
        unsigned c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (hex && (c | 32) >= 'a' && (c | 32) <= 'f')
            d = (c | 32) - 'a' + 10;
        else
            break;
        if (v <= 0x10FFFF) v = v * (hex ? 16 : 10) + d;
    }
    *cp = v > 0x10FFFF ? 0x110000 : v;
    return i;
}
