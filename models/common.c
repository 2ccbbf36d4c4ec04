#include "common.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cx_err(char *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, CX_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *cx_escape_controls(char *dst, size_t cap, const char *src) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0) return dst;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        int ctl = *p < 0x20 || *p == 0x7f;
        if (o + (ctl ? 4 : 1) >= cap) break;
        if (ctl) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*p >> 4];
            dst[o++] = hex[*p & 15];
        } else {
            dst[o++] = (char)*p;
        }
    }
    dst[o] = 0;
    return dst;
}

void cx_fatal(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "conflux: fatal: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void *cx_calloc(size_t n, size_t size) {
    CHECK(size == 0 || n <= SIZE_MAX / size, "allocation overflow (%zu x %zu)", n, size);
    size_t bytes = n * size;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    void *p = aligned_alloc(64, bytes);
    CHECK(p != NULL, "out of memory allocating %zu bytes", bytes);
    memset(p, 0, bytes);
    return p;
}

#include <math.h>
#include "rng.h"

float cx_rng_normal(uint64_t seed, uint64_t counter) {
    uint64_t r = cx_rng_u64(seed, counter);
    double u1 = ((double)(r >> 40) + 1.0) / 16777217.0;  // (0, 1]
    double u2 = (double)(r & 0xFFFFFF) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint64_t checksum_mix(uint64_t w) {
    w *= 0x9E3779B97F4A7C15ULL;  // odd: a bijection
    w ^= w >> 29;                // xorshift: a bijection
    return w;
}

uint64_t cx_checksum(const float *params, size_t n) {
    const unsigned char *p = (const unsigned char *)params;
    size_t bytes = n * sizeof(float), words = bytes / 8;
    uint64_t h = 0xcbf29ce484222325ULL ^ checksum_mix((uint64_t)bytes);
    // h -> (h ^ f(w)) * odd is a bijection in h and in w, so one changed word always
    // changes the result.
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        h = (h ^ checksum_mix(w)) * 0x100000001B3ULL;
    }
    size_t rest = bytes - 8 * words;
    if (rest) {
        uint64_t w = 0;
        memcpy(&w, p + 8 * words, rest);
        h = (h ^ checksum_mix(w ^ ((uint64_t)rest << 56))) * 0x100000001B3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}


void cx_tool_fail(const char *tool, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", tool);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (status == 2) fprintf(stderr, "Try '%s --help'.\n", tool);
    exit(status);
}

void cx_catch_stop_signals(void (*handler)(int), int usr1, int nopipe) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (usr1) sigaction(SIGUSR1, &sa, NULL);
    if (nopipe) signal(SIGPIPE, SIG_IGN);
}
