// utf8.c: see utf8.h.
#include "io/text/utf8.h"

#include <string.h>

size_t utf8_invalid_len(const char *s, size_t n_bytes) {
    uint32_t v;
    int r = utf8_scan((const unsigned char *)s, n_bytes, &v);
    return r < 0 ? (size_t)-r : 0;
}

// states: 0 boundary; 1 one continuation byte due; 2 two due; 3 two due, the next in A0..BF
// (after E0: no overlong form); 4 two due, the next in 80..9F (after ED: no surrogate);
// 5 three due; 6 three due, the next in 90..BF (after F0); 7 three due, the next in 80..8F
// (after F4: nothing above U+10FFFF)
int utf8_fsm_step(int s, unsigned char b) {
    switch (s) {
    case 0:
        if (b < 0x80) return 0;
        if (b >= 0xC2 && b <= 0xDF) return 1;
        if (b == 0xE0) return 3;
        if (b == 0xED) return 4;
        if (b >= 0xE1 && b <= 0xEF) return 2;
        if (b == 0xF0) return 6;
        if (b >= 0xF1 && b <= 0xF3) return 5;
        if (b == 0xF4) return 7;
        return -1;
    case 1: return b >= 0x80 && b <= 0xBF ? 0 : -1;
    case 2: return b >= 0x80 && b <= 0xBF ? 1 : -1;
    case 3: return b >= 0xA0 && b <= 0xBF ? 1 : -1;
    case 4: return b >= 0x80 && b <= 0x9F ? 1 : -1;
    case 5: return b >= 0x80 && b <= 0xBF ? 2 : -1;
    case 6: return b >= 0x90 && b <= 0xBF ? 2 : -1;
    case 7: return b >= 0x80 && b <= 0x8F ? 2 : -1;
    default: return -1;
    }
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
