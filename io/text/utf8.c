// utf8.c: see utf8.h.
#include "io/text/utf8.h"

#include <string.h>

size_t utf8_invalid_len(const char *s, size_t n_bytes) {
    uint32_t v;
    int r = utf8_scan((const unsigned char *)s, n_bytes, &v);
    return r < 0 ? (size_t)-r : 0;
}

size_t utf8_encode(uint32_t cp, char *out) {
    unsigned char *u = (unsigned char *)out;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_check(const char *s, size_t n_bytes) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n_bytes) {
        // ASCII fast path, 8 bytes at a time
        while (i + 8 <= n_bytes) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n_bytes) break;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = utf8_decode(s + i, n_bytes - i, &cp);
        if (!k) return i;
        i += k;
    }
    return n_bytes;
}
