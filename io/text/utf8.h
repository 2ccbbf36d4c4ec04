// utf8.h: UTF-8 decoding and encoding shared by the text code of io/ (tokenizer, corpus,
// news readers, ROUGE, headline pairs, fill-mask).
//
// Decoding is strict (RFC 3629, Unicode table 3-7): shortest forms only, no surrogates,
// nothing above U+10FFFF. The decoder only reports an ill-formed sequence; what to do with
// it (skip a byte, skip the maximal subpart, write U+FFFD, reject the text) is the caller's
// choice.
//
// utf8_decode is defined here and always inlined: it runs once per character in the hot
// loops of the news readers and the tokenizer, which a function call per character slows
// by a third or more (GCC does not inline it on its own where it has several callers).
#ifndef CONFLUX_IO_UTF8_H
#define CONFLUX_IO_UTF8_H

#include <stddef.h>
#include <stdint.h>

// The work of utf8_decode and utf8_invalid_len (call those): the length of the
// well-formed sequence at s[0..n_bytes) (n_bytes >= 1) with its value in *v, or minus the
// length of the maximal ill-formed subpart there.
__attribute__((always_inline))
static inline int utf8_scan(const unsigned char *s, size_t n_bytes, uint32_t *v) {
    unsigned b = s[0];
    if (b < 0x80) {
        *v = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        if (n_bytes < 2 || (s[1] & 0xC0) != 0x80) return -1;
        *v = (b & 0x1Fu) << 6 | (s[1] & 0x3Fu);
        return 2;
    }
    if (b >= 0xE0 && b <= 0xEF) {
        unsigned lo = b == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
        unsigned hi = b == 0xED ? 0x9F : 0xBF;  // no surrogates
        if (n_bytes < 2 || s[1] < lo || s[1] > hi) return -1;
        if (n_bytes < 3 || (s[2] & 0xC0) != 0x80) return -2;
        *v = (b & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu);
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        unsigned lo = b == 0xF0 ? 0x90 : 0x80;  // no overlong forms
        unsigned hi = b == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
        if (n_bytes < 2 || s[1] < lo || s[1] > hi) return -1;
        if (n_bytes < 3 || (s[2] & 0xC0) != 0x80) return -2;
        if (n_bytes < 4 || (s[3] & 0xC0) != 0x80) return -3;
        *v = (b & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 | (s[3] & 0x3Fu);
        return 4;
    }
    return -1;  // continuation byte, C0/C1 (overlong), F5..FF
}

// Decodes the sequence that starts at s[0] (n_bytes >= 1 bytes available). Returns its
// length 1..4 and sets *cp, or returns 0 and leaves *cp alone when s[0] does not start a
// well-formed sequence within n_bytes: a continuation byte (80..BF), C0, C1 or F5..FF, an
// overlong form (E0 80..9F, F0 80..8F), a surrogate (ED A0..BF), a value above U+10FFFF
// (F4 90..BF), a missing continuation byte, or a sequence cut off by n_bytes.
__attribute__((always_inline))
static inline size_t utf8_decode(const char *s, size_t n_bytes, uint32_t *cp) {
    uint32_t v;
    int r = utf8_scan((const unsigned char *)s, n_bytes, &v);
    if (r < 0) return 0;
    *cp = v;
    return (size_t)r;
}

// Length 1..3 of the maximal subpart of the ill-formed sequence at s[0] (n_bytes >= 1
// bytes available): the lead byte and the continuation bytes after it that could still
// have begun a well-formed sequence (Unicode's "maximal subpart", each replaced by one
// U+FFFD in its best practice); 1 for a byte that cannot start a sequence. Returns 0 when
// s[0] starts a well-formed sequence (utf8_decode would not return 0).
size_t utf8_invalid_len(const char *s, size_t n_bytes);

// Whether n_bytes of s are well-formed UTF-8 (as utf8_decode). Returns the offset of the
// first byte of the first ill-formed sequence, or n_bytes when all are well formed. ASCII
// runs go 8 bytes at a time.
size_t utf8_check(const char *s, size_t n_bytes);

// A byte-at-a-time recogniser of the same well-formed UTF-8 as utf8_decode, for text that
// arrives in pieces: the byte-level tokens a decoder emits one at a time
// (bpe_utf8_automaton). State 0 is a character boundary; the others are inside a character
// (how many continuation bytes are still due, and the range the next one must be in after
// E0, ED, F0 and F4). A text is well formed iff stepping through its bytes from 0 never
// gives -1 and ends in 0.
#define UTF8_FSM_STATES 8
// The state after byte b in state s (0 <= s < UTF8_FSM_STATES), or -1 where b cannot come
// next.
int utf8_fsm_step(int s, unsigned char b);

// Writes the UTF-8 encoding of code point cp (at most U+10FFFF; the caller checks) into
// out, which has room for 4 bytes. Returns the number of bytes written (1..4).
size_t utf8_encode(uint32_t cp, char *out);

#endif
