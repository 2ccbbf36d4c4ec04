// bpe.c: byte-level BPE tokenizer (GPT-2 / RoBERTa scheme); the contract is in bpe.h.
//
// Ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then byte b has id 5 + b (byte order,
// not the order of the bytes_to_unicode characters), then one id per new merged token in
// merge order. A merge whose result string already exists (e.g. "ab"+"c" after "a"+"bc")
// reuses that id, as Hugging Face's trainer does, so merges.txt may have more lines than
// vocab_size - 261.
//
// Pre-tokenization is GPT-2's regex without a regex engine: Unicode letters (\p{L}) and
// numbers (\p{N}) from a table generated with Python's `regex` module (see uranges),
// whitespace is the White_Space property (what `regex` matches with \s). A byte that
// does not start a valid UTF-8 sequence is a one-byte symbol (neither letter, number nor
// space), so any byte string is split into pre-tokens that concatenate back to it. The
// special-token strings are cut out of the text before pre-tokenization (as Hugging Face
// does with added tokens). No prefix space is added (ByteLevel add_prefix_space=false).
//
// Training (bpe_train): each input line is one document, pre-tokenized without its '\n'
// (the same way conflux-tokenizer shard encodes documents). Distinct pre-tokens are
// counted in a hash table; then the most frequent adjacent pair is merged, repeatedly,
// with incremental updates: every pair keeps its count and the list of words it occurs
// in, so a merge touches only the words that contain it; a max-heap with lazy deletion
// (stale entries are skipped or re-pushed when popped) finds the next pair. Ties: the
// higher count wins, then the smaller (left id, right id). Pairs seen fewer than
// BPE_MIN_FREQUENCY times are never merged, so a small corpus may give a smaller vocab.
//
// Encoding: after pre-tokenization each word applies merges by rank (lowest first,
// leftmost first among equal ranks, the Hugging Face order) through a hash table
// (left id, right id) -> merge index; words up to CACHE_MAX_WORD bytes are remembered in
// a bounded cache (cleared whole when full). The cache serves one caller at a time: a
// concurrent bpe_encode on the same Bpe encodes without it, so encoding is thread-safe.
// Decoding renders ids out of range as U+FFFD.
//
// Loading requires: vocab.json a JSON object of byte-level token strings -> integer ids
// 0..n-1, each id once; [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0..4; all 256 byte tokens
// present (any ids). merges.txt: a first line starting "#version", then "left right" lines
// whose tokens and concatenation are in vocab.json, no special tokens, no duplicates
// (blank lines and CRLF are tolerated). The fingerprint is FNV-1a 64 (hex) over the token
// strings in id order and the merge lines, so a saved and reloaded tokenizer keeps it.
#include "bpe.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/text/utf8.h"
#include "models/common.h"

#define BPE_N_BYTES 256
#define BPE_FIRST_MERGED (BPE_N_SPECIAL + BPE_N_BYTES)
#define BPE_MIN_FREQUENCY 2
#define BPE_MAX_VOCAB (1 << 24)
#define BPE_MAX_FILE_BYTES \
    ((size_t)1 << 30)  // vocab.json / merges.txt larger than this are refused

#define CACHE_SLOTS (1u << 18)  // open-addressing slots (power of two), at most half used
#define CACHE_ARENA (1u << 22)  // uint32 words of cached entries (16 MiB)
#define CACHE_MAX_WORD 64       // longer words are not cached
#define SHORT_WORD 48           // longer words merge with a heap instead of rescanning

static const char *const special_str[BPE_N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                       "[MASK]"};

// ---------------------------------------------------------------------------------------
// Small helpers

// realloc that CHECKs (allocation failure is fatal, as with cx_calloc).
static void *xrealloc(void *p, size_t n, size_t size) {
    CHECK(size == 0 || n <= SIZE_MAX / size, "allocation overflow (%zu x %zu)", n, size);
    size_t bytes = n * size;
    if (bytes == 0) bytes = 1;
    void *q = realloc(p, bytes);
    CHECK(q != NULL, "out of memory allocating %zu bytes", bytes);
    return q;
}

// Makes room for `need` elements in ptr (capacity cap, in elements).
#define GROW(ptr, cap, need)                            \
    do {                                                \
        if ((size_t)(need) > (cap)) {                   \
            size_t c_ = (cap) ? (cap) : 16;             \
            while (c_ < (size_t)(need)) c_ *= 2;        \
            (ptr) = xrealloc((ptr), c_, sizeof *(ptr)); \
            (cap) = c_;                                 \
        }                                               \
    } while (0)

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

// Fast non-cryptographic hash of a byte string (tables only; not stable across versions).
static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    if (n) memcpy(&v, p, n);
    return mix64(h ^ v);
}

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Writes a printable, shortened rendering of n bytes of s into buf (for error messages).
static const char *show(char *buf, size_t buf_bytes, const char *s, size_t n) {
    size_t j = 0, limit = buf_bytes > 12 ? buf_bytes - 12 : 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (j >= limit) {
            while (j > 0 && ((unsigned char)buf[j - 1] & 0xC0) == 0x80) j--;  // whole chars
            if (j > 0 && (unsigned char)buf[j - 1] >= 0xC0) j--;
            memcpy(buf + j, "...", 4);
            return buf;
        }
        if (c < 0x20 || c == 0x7F || c == '"' || c == '\\') {
            j += (size_t)snprintf(buf + j, buf_bytes - j,
                                  c == '"' || c == '\\' ? "\\%c" : "\\x%02X", c);
        } else {
            buf[j++] = (char)c;
        }
    }
    buf[j] = '\0';
    return buf;
}

// ---------------------------------------------------------------------------------------
// uint64 -> uint32 open-addressing map (keys are id pairs; UINT64_MAX marks an empty slot)

typedef struct {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap, n;  // cap is a power of two (or 0)
} U64Map;

static void u64map_free(U64Map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static inline uint32_t *u64map_find(const U64Map *m, uint64_t key) {
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
    for (;;) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}

static void u64map_put_new(U64Map *m, uint64_t key, uint32_t val);

static void u64map_grow(U64Map *m) {
    U64Map old = *m;
    m->cap = old.cap ? old.cap * 2 : 1024;
    m->n = 0;
    m->keys = xrealloc(NULL, m->cap, sizeof *m->keys);
    m->vals = xrealloc(NULL, m->cap, sizeof *m->vals);
    memset(m->keys, 0xFF, m->cap * sizeof *m->keys);
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i] != UINT64_MAX) u64map_put_new(m, old.keys[i], old.vals[i]);
    u64map_free(&old);
}

// Inserts a key known to be absent.
static void u64map_put_new(U64Map *m, uint64_t key, uint32_t val) {
    if (2 * (m->n + 1) > m->cap) u64map_grow(m);
    size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
    while (m->keys[i] != UINT64_MAX) i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
}

// ---------------------------------------------------------------------------------------
// Character classes and pre-tokenization

enum { C_OTHER = 0, C_LETTER = 1, C_NUMBER = 2, C_SPACE = 3 };
enum { U_L = C_LETTER, U_N = C_NUMBER };

typedef struct {
    uint32_t lo, hi;
    uint8_t cls;
} URange;

// Letters (\p{L}) and numbers (\p{N}) from U+0080 up, sorted and disjoint: maximal runs
// of code points matching regex.match(r'\p{L}', chr(cp)) (U_L) or r'\p{N}' (U_N), made
// with the Python `regex` module 2026.5.9, the module GPT-2's encoder.py uses (its Unicode
// data is newer than Python 3.11's unicodedata 14.0).
// clang-format off
static const URange uranges[] = {
    {0xAA, 0xAA, U_L}, {0xB2, 0xB3, U_N}, {0xB5, 0xB5, U_L}, {0xB9, 0xB9, U_N}, {0xBA, 0xBA, U_L},
    {0xBC, 0xBE, U_N}, {0xC0, 0xD6, U_L}, {0xD8, 0xF6, U_L}, {0xF8, 0x2C1, U_L},
    {0x2C6, 0x2D1, U_L}, {0x2E0, 0x2E4, U_L}, {0x2EC, 0x2EC, U_L}, {0x2EE, 0x2EE, U_L},
    {0x370, 0x374, U_L}, {0x376, 0x377, U_L}, {0x37A, 0x37D, U_L}, {0x37F, 0x37F, U_L},
    {0x386, 0x386, U_L}, {0x388, 0x38A, U_L}, {0x38C, 0x38C, U_L}, {0x38E, 0x3A1, U_L},
    {0x3A3, 0x3F5, U_L}, {0x3F7, 0x481, U_L}, {0x48A, 0x52F, U_L}, {0x531, 0x556, U_L},
    {0x559, 0x559, U_L}, {0x560, 0x588, U_L}, {0x5D0, 0x5EA, U_L}, {0x5EF, 0x5F2, U_L},
    {0x620, 0x64A, U_L}, {0x660, 0x669, U_N}, {0x66E, 0x66F, U_L}, {0x671, 0x6D3, U_L},
    {0x6D5, 0x6D5, U_L}, {0x6E5, 0x6E6, U_L}, {0x6EE, 0x6EF, U_L}, {0x6F0, 0x6F9, U_N},
    {0x6FA, 0x6FC, U_L}, {0x6FF, 0x6FF, U_L}, {0x710, 0x710, U_L}, {0x712, 0x72F, U_L},
    {0x74D, 0x7A5, U_L}, {0x7B1, 0x7B1, U_L}, {0x7C0, 0x7C9, U_N}, {0x7CA, 0x7EA, U_L},
    {0x7F4, 0x7F5, U_L}, {0x7FA, 0x7FA, U_L}, {0x800, 0x815, U_L}, {0x81A, 0x81A, U_L},
    {0x824, 0x824, U_L}, {0x828, 0x828, U_L}, {0x840, 0x858, U_L}, {0x860, 0x86A, U_L},
    {0x870, 0x887, U_L}, {0x889, 0x88F, U_L}, {0x8A0, 0x8C9, U_L}, {0x904, 0x939, U_L},
    {0x93D, 0x93D, U_L}, {0x950, 0x950, U_L}, {0x958, 0x961, U_L}, {0x966, 0x96F, U_N},
    {0x971, 0x980, U_L}, {0x985, 0x98C, U_L}, {0x98F, 0x990, U_L}, {0x993, 0x9A8, U_L},
    {0x9AA, 0x9B0, U_L}, {0x9B2, 0x9B2, U_L}, {0x9B6, 0x9B9, U_L}, {0x9BD, 0x9BD, U_L},
    {0x9CE, 0x9CE, U_L}, {0x9DC, 0x9DD, U_L}, {0x9DF, 0x9E1, U_L}, {0x9E6, 0x9EF, U_N},
    {0x9F0, 0x9F1, U_L}, {0x9F4, 0x9F9, U_N}, {0x9FC, 0x9FC, U_L}, {0xA05, 0xA0A, U_L},
    {0xA0F, 0xA10, U_L}, {0xA13, 0xA28, U_L}, {0xA2A, 0xA30, U_L}, {0xA32, 0xA33, U_L},
    {0xA35, 0xA36, U_L}, {0xA38, 0xA39, U_L}, {0xA59, 0xA5C, U_L}, {0xA5E, 0xA5E, U_L},
    {0xA66, 0xA6F, U_N}, {0xA72, 0xA74, U_L}, {0xA85, 0xA8D, U_L}, {0xA8F, 0xA91, U_L},
    {0xA93, 0xAA8, U_L}, {0xAAA, 0xAB0, U_L}, {0xAB2, 0xAB3, U_L}, {0xAB5, 0xAB9, U_L},
    {0xABD, 0xABD, U_L}, {0xAD0, 0xAD0, U_L}, {0xAE0, 0xAE1, U_L}, {0xAE6, 0xAEF, U_N},
    {0xAF9, 0xAF9, U_L}, {0xB05, 0xB0C, U_L}, {0xB0F, 0xB10, U_L}, {0xB13, 0xB28, U_L},
    {0xB2A, 0xB30, U_L}, {0xB32, 0xB33, U_L}, {0xB35, 0xB39, U_L}, {0xB3D, 0xB3D, U_L},
    {0xB5C, 0xB5D, U_L}, {0xB5F, 0xB61, U_L}, {0xB66, 0xB6F, U_N}, {0xB71, 0xB71, U_L},
    {0xB72, 0xB77, U_N}, {0xB83, 0xB83, U_L}, {0xB85, 0xB8A, U_L}, {0xB8E, 0xB90, U_L},
    {0xB92, 0xB95, U_L}, {0xB99, 0xB9A, U_L}, {0xB9C, 0xB9C, U_L}, {0xB9E, 0xB9F, U_L},
    {0xBA3, 0xBA4, U_L}, {0xBA8, 0xBAA, U_L}, {0xBAE, 0xBB9, U_L}, {0xBD0, 0xBD0, U_L},
    {0xBE6, 0xBF2, U_N}, {0xC05, 0xC0C, U_L}, {0xC0E, 0xC10, U_L}, {0xC12, 0xC28, U_L},
    {0xC2A, 0xC39, U_L}, {0xC3D, 0xC3D, U_L}, {0xC58, 0xC5A, U_L}, {0xC5C, 0xC5D, U_L},
    {0xC60, 0xC61, U_L}, {0xC66, 0xC6F, U_N}, {0xC78, 0xC7E, U_N}, {0xC80, 0xC80, U_L},
    {0xC85, 0xC8C, U_L}, {0xC8E, 0xC90, U_L}, {0xC92, 0xCA8, U_L}, {0xCAA, 0xCB3, U_L},
    {0xCB5, 0xCB9, U_L}, {0xCBD, 0xCBD, U_L}, {0xCDC, 0xCDE, U_L}, {0xCE0, 0xCE1, U_L},
    {0xCE6, 0xCEF, U_N}, {0xCF1, 0xCF2, U_L}, {0xD04, 0xD0C, U_L}, {0xD0E, 0xD10, U_L},
    {0xD12, 0xD3A, U_L}, {0xD3D, 0xD3D, U_L}, {0xD4E, 0xD4E, U_L}, {0xD54, 0xD56, U_L},
    {0xD58, 0xD5E, U_N}, {0xD5F, 0xD61, U_L}, {0xD66, 0xD78, U_N}, {0xD7A, 0xD7F, U_L},
    {0xD85, 0xD96, U_L}, {0xD9A, 0xDB1, U_L}, {0xDB3, 0xDBB, U_L}, {0xDBD, 0xDBD, U_L},
    {0xDC0, 0xDC6, U_L}, {0xDE6, 0xDEF, U_N}, {0xE01, 0xE30, U_L}, {0xE32, 0xE33, U_L},
    {0xE40, 0xE46, U_L}, {0xE50, 0xE59, U_N}, {0xE81, 0xE82, U_L}, {0xE84, 0xE84, U_L},
    {0xE86, 0xE8A, U_L}, {0xE8C, 0xEA3, U_L}, {0xEA5, 0xEA5, U_L}, {0xEA7, 0xEB0, U_L},
    {0xEB2, 0xEB3, U_L}, {0xEBD, 0xEBD, U_L}, {0xEC0, 0xEC4, U_L}, {0xEC6, 0xEC6, U_L},
    {0xED0, 0xED9, U_N}, {0xEDC, 0xEDF, U_L}, {0xF00, 0xF00, U_L}, {0xF20, 0xF33, U_N},
    {0xF40, 0xF47, U_L}, {0xF49, 0xF6C, U_L}, {0xF88, 0xF8C, U_L}, {0x1000, 0x102A, U_L},
    {0x103F, 0x103F, U_L}, {0x1040, 0x1049, U_N}, {0x1050, 0x1055, U_L}, {0x105A, 0x105D, U_L},
    {0x1061, 0x1061, U_L}, {0x1065, 0x1066, U_L}, {0x106E, 0x1070, U_L}, {0x1075, 0x1081, U_L},
    {0x108E, 0x108E, U_L}, {0x1090, 0x1099, U_N}, {0x10A0, 0x10C5, U_L}, {0x10C7, 0x10C7, U_L},
    {0x10CD, 0x10CD, U_L}, {0x10D0, 0x10FA, U_L}, {0x10FC, 0x1248, U_L}, {0x124A, 0x124D, U_L},
    {0x1250, 0x1256, U_L}, {0x1258, 0x1258, U_L}, {0x125A, 0x125D, U_L}, {0x1260, 0x1288, U_L},
    {0x128A, 0x128D, U_L}, {0x1290, 0x12B0, U_L}, {0x12B2, 0x12B5, U_L}, {0x12B8, 0x12BE, U_L},
    {0x12C0, 0x12C0, U_L}, {0x12C2, 0x12C5, U_L}, {0x12C8, 0x12D6, U_L}, {0x12D8, 0x1310, U_L},
    {0x1312, 0x1315, U_L}, {0x1318, 0x135A, U_L}, {0x1369, 0x137C, U_N}, {0x1380, 0x138F, U_L},
    {0x13A0, 0x13F5, U_L}, {0x13F8, 0x13FD, U_L}, {0x1401, 0x166C, U_L}, {0x166F, 0x167F, U_L},
    {0x1681, 0x169A, U_L}, {0x16A0, 0x16EA, U_L}, {0x16EE, 0x16F0, U_N}, {0x16F1, 0x16F8, U_L},
    {0x1700, 0x1711, U_L}, {0x171F, 0x1731, U_L}, {0x1740, 0x1751, U_L}, {0x1760, 0x176C, U_L},
    {0x176E, 0x1770, U_L}, {0x1780, 0x17B3, U_L}, {0x17D7, 0x17D7, U_L}, {0x17DC, 0x17DC, U_L},
    {0x17E0, 0x17E9, U_N}, {0x17F0, 0x17F9, U_N}, {0x1810, 0x1819, U_N}, {0x1820, 0x1878, U_L},
    {0x1880, 0x1884, U_L}, {0x1887, 0x18A8, U_L}, {0x18AA, 0x18AA, U_L}, {0x18B0, 0x18F5, U_L},
    {0x1900, 0x191E, U_L}, {0x1946, 0x194F, U_N}, {0x1950, 0x196D, U_L}, {0x1970, 0x1974, U_L},
    {0x1980, 0x19AB, U_L}, {0x19B0, 0x19C9, U_L}, {0x19D0, 0x19DA, U_N}, {0x1A00, 0x1A16, U_L},
    {0x1A20, 0x1A54, U_L}, {0x1A80, 0x1A89, U_N}, {0x1A90, 0x1A99, U_N}, {0x1AA7, 0x1AA7, U_L},
    {0x1B05, 0x1B33, U_L}, {0x1B45, 0x1B4C, U_L}, {0x1B50, 0x1B59, U_N}, {0x1B83, 0x1BA0, U_L},
    {0x1BAE, 0x1BAF, U_L}, {0x1BB0, 0x1BB9, U_N}, {0x1BBA, 0x1BE5, U_L}, {0x1C00, 0x1C23, U_L},
    {0x1C40, 0x1C49, U_N}, {0x1C4D, 0x1C4F, U_L}, {0x1C50, 0x1C59, U_N}, {0x1C5A, 0x1C7D, U_L},
    {0x1C80, 0x1C8A, U_L}, {0x1C90, 0x1CBA, U_L}, {0x1CBD, 0x1CBF, U_L}, {0x1CE9, 0x1CEC, U_L},
    {0x1CEE, 0x1CF3, U_L}, {0x1CF5, 0x1CF6, U_L}, {0x1CFA, 0x1CFA, U_L}, {0x1D00, 0x1DBF, U_L},
    {0x1E00, 0x1F15, U_L}, {0x1F18, 0x1F1D, U_L}, {0x1F20, 0x1F45, U_L}, {0x1F48, 0x1F4D, U_L},
    {0x1F50, 0x1F57, U_L}, {0x1F59, 0x1F59, U_L}, {0x1F5B, 0x1F5B, U_L}, {0x1F5D, 0x1F5D, U_L},
    {0x1F5F, 0x1F7D, U_L}, {0x1F80, 0x1FB4, U_L}, {0x1FB6, 0x1FBC, U_L}, {0x1FBE, 0x1FBE, U_L},
    {0x1FC2, 0x1FC4, U_L}, {0x1FC6, 0x1FCC, U_L}, {0x1FD0, 0x1FD3, U_L}, {0x1FD6, 0x1FDB, U_L},
    {0x1FE0, 0x1FEC, U_L}, {0x1FF2, 0x1FF4, U_L}, {0x1FF6, 0x1FFC, U_L}, {0x2070, 0x2070, U_N},
    {0x2071, 0x2071, U_L}, {0x2074, 0x2079, U_N}, {0x207F, 0x207F, U_L}, {0x2080, 0x2089, U_N},
    {0x2090, 0x209C, U_L}, {0x2102, 0x2102, U_L}, {0x2107, 0x2107, U_L}, {0x210A, 0x2113, U_L},
    {0x2115, 0x2115, U_L}, {0x2119, 0x211D, U_L}, {0x2124, 0x2124, U_L}, {0x2126, 0x2126, U_L},
    {0x2128, 0x2128, U_L}, {0x212A, 0x212D, U_L}, {0x212F, 0x2139, U_L}, {0x213C, 0x213F, U_L},
    {0x2145, 0x2149, U_L}, {0x214E, 0x214E, U_L}, {0x2150, 0x2182, U_N}, {0x2183, 0x2184, U_L},
    {0x2185, 0x2189, U_N}, {0x2460, 0x249B, U_N}, {0x24EA, 0x24FF, U_N}, {0x2776, 0x2793, U_N},
    {0x2C00, 0x2CE4, U_L}, {0x2CEB, 0x2CEE, U_L}, {0x2CF2, 0x2CF3, U_L}, {0x2CFD, 0x2CFD, U_N},
    {0x2D00, 0x2D25, U_L}, {0x2D27, 0x2D27, U_L}, {0x2D2D, 0x2D2D, U_L}, {0x2D30, 0x2D67, U_L},
    {0x2D6F, 0x2D6F, U_L}, {0x2D80, 0x2D96, U_L}, {0x2DA0, 0x2DA6, U_L}, {0x2DA8, 0x2DAE, U_L},
    {0x2DB0, 0x2DB6, U_L}, {0x2DB8, 0x2DBE, U_L}, {0x2DC0, 0x2DC6, U_L}, {0x2DC8, 0x2DCE, U_L},
    {0x2DD0, 0x2DD6, U_L}, {0x2DD8, 0x2DDE, U_L}, {0x2E2F, 0x2E2F, U_L}, {0x3005, 0x3006, U_L},
    {0x3007, 0x3007, U_N}, {0x3021, 0x3029, U_N}, {0x3031, 0x3035, U_L}, {0x3038, 0x303A, U_N},
    {0x303B, 0x303C, U_L}, {0x3041, 0x3096, U_L}, {0x309D, 0x309F, U_L}, {0x30A1, 0x30FA, U_L},
    {0x30FC, 0x30FF, U_L}, {0x3105, 0x312F, U_L}, {0x3131, 0x318E, U_L}, {0x3192, 0x3195, U_N},
    {0x31A0, 0x31BF, U_L}, {0x31F0, 0x31FF, U_L}, {0x3220, 0x3229, U_N}, {0x3248, 0x324F, U_N},
    {0x3251, 0x325F, U_N}, {0x3280, 0x3289, U_N}, {0x32B1, 0x32BF, U_N}, {0x3400, 0x4DBF, U_L},
    {0x4E00, 0xA48C, U_L}, {0xA4D0, 0xA4FD, U_L}, {0xA500, 0xA60C, U_L}, {0xA610, 0xA61F, U_L},
    {0xA620, 0xA629, U_N}, {0xA62A, 0xA62B, U_L}, {0xA640, 0xA66E, U_L}, {0xA67F, 0xA69D, U_L},
    {0xA6A0, 0xA6E5, U_L}, {0xA6E6, 0xA6EF, U_N}, {0xA717, 0xA71F, U_L}, {0xA722, 0xA788, U_L},
    {0xA78B, 0xA7DC, U_L}, {0xA7F1, 0xA801, U_L}, {0xA803, 0xA805, U_L}, {0xA807, 0xA80A, U_L},
    {0xA80C, 0xA822, U_L}, {0xA830, 0xA835, U_N}, {0xA840, 0xA873, U_L}, {0xA882, 0xA8B3, U_L},
    {0xA8D0, 0xA8D9, U_N}, {0xA8F2, 0xA8F7, U_L}, {0xA8FB, 0xA8FB, U_L}, {0xA8FD, 0xA8FE, U_L},
    {0xA900, 0xA909, U_N}, {0xA90A, 0xA925, U_L}, {0xA930, 0xA946, U_L}, {0xA960, 0xA97C, U_L},
    {0xA984, 0xA9B2, U_L}, {0xA9CF, 0xA9CF, U_L}, {0xA9D0, 0xA9D9, U_N}, {0xA9E0, 0xA9E4, U_L},
    {0xA9E6, 0xA9EF, U_L}, {0xA9F0, 0xA9F9, U_N}, {0xA9FA, 0xA9FE, U_L}, {0xAA00, 0xAA28, U_L},
    {0xAA40, 0xAA42, U_L}, {0xAA44, 0xAA4B, U_L}, {0xAA50, 0xAA59, U_N}, {0xAA60, 0xAA76, U_L},
    {0xAA7A, 0xAA7A, U_L}, {0xAA7E, 0xAAAF, U_L}, {0xAAB1, 0xAAB1, U_L}, {0xAAB5, 0xAAB6, U_L},
    {0xAAB9, 0xAABD, U_L}, {0xAAC0, 0xAAC0, U_L}, {0xAAC2, 0xAAC2, U_L}, {0xAADB, 0xAADD, U_L},
    {0xAAE0, 0xAAEA, U_L}, {0xAAF2, 0xAAF4, U_L}, {0xAB01, 0xAB06, U_L}, {0xAB09, 0xAB0E, U_L},
    {0xAB11, 0xAB16, U_L}, {0xAB20, 0xAB26, U_L}, {0xAB28, 0xAB2E, U_L}, {0xAB30, 0xAB5A, U_L},
    {0xAB5C, 0xAB69, U_L}, {0xAB70, 0xABE2, U_L}, {0xABF0, 0xABF9, U_N}, {0xAC00, 0xD7A3, U_L},
    {0xD7B0, 0xD7C6, U_L}, {0xD7CB, 0xD7FB, U_L}, {0xF900, 0xFA6D, U_L}, {0xFA70, 0xFAD9, U_L},
    {0xFB00, 0xFB06, U_L}, {0xFB13, 0xFB17, U_L}, {0xFB1D, 0xFB1D, U_L}, {0xFB1F, 0xFB28, U_L},
    {0xFB2A, 0xFB36, U_L}, {0xFB38, 0xFB3C, U_L}, {0xFB3E, 0xFB3E, U_L}, {0xFB40, 0xFB41, U_L},
    {0xFB43, 0xFB44, U_L}, {0xFB46, 0xFBB1, U_L}, {0xFBD3, 0xFD3D, U_L}, {0xFD50, 0xFD8F, U_L},
    {0xFD92, 0xFDC7, U_L}, {0xFDF0, 0xFDFB, U_L}, {0xFE70, 0xFE74, U_L}, {0xFE76, 0xFEFC, U_L},
    {0xFF10, 0xFF19, U_N}, {0xFF21, 0xFF3A, U_L}, {0xFF41, 0xFF5A, U_L}, {0xFF66, 0xFFBE, U_L},
    {0xFFC2, 0xFFC7, U_L}, {0xFFCA, 0xFFCF, U_L}, {0xFFD2, 0xFFD7, U_L}, {0xFFDA, 0xFFDC, U_L},
    {0x10000, 0x1000B, U_L}, {0x1000D, 0x10026, U_L}, {0x10028, 0x1003A, U_L},
    {0x1003C, 0x1003D, U_L}, {0x1003F, 0x1004D, U_L}, {0x10050, 0x1005D, U_L},
    {0x10080, 0x100FA, U_L}, {0x10107, 0x10133, U_N}, {0x10140, 0x10178, U_N},
    {0x1018A, 0x1018B, U_N}, {0x10280, 0x1029C, U_L}, {0x102A0, 0x102D0, U_L},
    {0x102E1, 0x102FB, U_N}, {0x10300, 0x1031F, U_L}, {0x10320, 0x10323, U_N},
    {0x1032D, 0x10340, U_L}, {0x10341, 0x10341, U_N}, {0x10342, 0x10349, U_L},
    {0x1034A, 0x1034A, U_N}, {0x10350, 0x10375, U_L}, {0x10380, 0x1039D, U_L},
    {0x103A0, 0x103C3, U_L}, {0x103C8, 0x103CF, U_L}, {0x103D1, 0x103D5, U_N},
    {0x10400, 0x1049D, U_L}, {0x104A0, 0x104A9, U_N}, {0x104B0, 0x104D3, U_L},
    {0x104D8, 0x104FB, U_L}, {0x10500, 0x10527, U_L}, {0x10530, 0x10563, U_L},
    {0x10570, 0x1057A, U_L}, {0x1057C, 0x1058A, U_L}, {0x1058C, 0x10592, U_L},
    {0x10594, 0x10595, U_L}, {0x10597, 0x105A1, U_L}, {0x105A3, 0x105B1, U_L},
    {0x105B3, 0x105B9, U_L}, {0x105BB, 0x105BC, U_L}, {0x105C0, 0x105F3, U_L},
    {0x10600, 0x10736, U_L}, {0x10740, 0x10755, U_L}, {0x10760, 0x10767, U_L},
    {0x10780, 0x10785, U_L}, {0x10787, 0x107B0, U_L}, {0x107B2, 0x107BA, U_L},
    {0x10800, 0x10805, U_L}, {0x10808, 0x10808, U_L}, {0x1080A, 0x10835, U_L},
    {0x10837, 0x10838, U_L}, {0x1083C, 0x1083C, U_L}, {0x1083F, 0x10855, U_L},
    {0x10858, 0x1085F, U_N}, {0x10860, 0x10876, U_L}, {0x10879, 0x1087F, U_N},
    {0x10880, 0x1089E, U_L}, {0x108A7, 0x108AF, U_N}, {0x108E0, 0x108F2, U_L},
    {0x108F4, 0x108F5, U_L}, {0x108FB, 0x108FF, U_N}, {0x10900, 0x10915, U_L},
    {0x10916, 0x1091B, U_N}, {0x10920, 0x10939, U_L}, {0x10940, 0x10959, U_L},
    {0x10980, 0x109B7, U_L}, {0x109BC, 0x109BD, U_N}, {0x109BE, 0x109BF, U_L},
    {0x109C0, 0x109CF, U_N}, {0x109D2, 0x109FF, U_N}, {0x10A00, 0x10A00, U_L},
    {0x10A10, 0x10A13, U_L}, {0x10A15, 0x10A17, U_L}, {0x10A19, 0x10A35, U_L},
    {0x10A40, 0x10A48, U_N}, {0x10A60, 0x10A7C, U_L}, {0x10A7D, 0x10A7E, U_N},
    {0x10A80, 0x10A9C, U_L}, {0x10A9D, 0x10A9F, U_N}, {0x10AC0, 0x10AC7, U_L},
    {0x10AC9, 0x10AE4, U_L}, {0x10AEB, 0x10AEF, U_N}, {0x10B00, 0x10B35, U_L},
    {0x10B40, 0x10B55, U_L}, {0x10B58, 0x10B5F, U_N}, {0x10B60, 0x10B72, U_L},
    {0x10B78, 0x10B7F, U_N}, {0x10B80, 0x10B91, U_L}, {0x10BA9, 0x10BAF, U_N},
    {0x10C00, 0x10C48, U_L}, {0x10C80, 0x10CB2, U_L}, {0x10CC0, 0x10CF2, U_L},
    {0x10CFA, 0x10CFF, U_N}, {0x10D00, 0x10D23, U_L}, {0x10D30, 0x10D39, U_N},
    {0x10D40, 0x10D49, U_N}, {0x10D4A, 0x10D65, U_L}, {0x10D6F, 0x10D85, U_L},
    {0x10E60, 0x10E7E, U_N}, {0x10E80, 0x10EA9, U_L}, {0x10EB0, 0x10EB1, U_L},
    {0x10EC2, 0x10EC7, U_L}, {0x10F00, 0x10F1C, U_L}, {0x10F1D, 0x10F26, U_N},
    {0x10F27, 0x10F27, U_L}, {0x10F30, 0x10F45, U_L}, {0x10F51, 0x10F54, U_N},
    {0x10F70, 0x10F81, U_L}, {0x10FB0, 0x10FC4, U_L}, {0x10FC5, 0x10FCB, U_N},
    {0x10FE0, 0x10FF6, U_L}, {0x11003, 0x11037, U_L}, {0x11052, 0x1106F, U_N},
    {0x11071, 0x11072, U_L}, {0x11075, 0x11075, U_L}, {0x11083, 0x110AF, U_L},
    {0x110D0, 0x110E8, U_L}, {0x110F0, 0x110F9, U_N}, {0x11103, 0x11126, U_L},
    {0x11136, 0x1113F, U_N}, {0x11144, 0x11144, U_L}, {0x11147, 0x11147, U_L},
    {0x11150, 0x11172, U_L}, {0x11176, 0x11176, U_L}, {0x11183, 0x111B2, U_L},
    {0x111C1, 0x111C4, U_L}, {0x111D0, 0x111D9, U_N}, {0x111DA, 0x111DA, U_L},
    {0x111DC, 0x111DC, U_L}, {0x111E1, 0x111F4, U_N}, {0x11200, 0x11211, U_L},
    {0x11213, 0x1122B, U_L}, {0x1123F, 0x11240, U_L}, {0x11280, 0x11286, U_L},
    {0x11288, 0x11288, U_L}, {0x1128A, 0x1128D, U_L}, {0x1128F, 0x1129D, U_L},
    {0x1129F, 0x112A8, U_L}, {0x112B0, 0x112DE, U_L}, {0x112F0, 0x112F9, U_N},
    {0x11305, 0x1130C, U_L}, {0x1130F, 0x11310, U_L}, {0x11313, 0x11328, U_L},
    {0x1132A, 0x11330, U_L}, {0x11332, 0x11333, U_L}, {0x11335, 0x11339, U_L},
    {0x1133D, 0x1133D, U_L}, {0x11350, 0x11350, U_L}, {0x1135D, 0x11361, U_L},
    {0x11380, 0x11389, U_L}, {0x1138B, 0x1138B, U_L}, {0x1138E, 0x1138E, U_L},
    {0x11390, 0x113B5, U_L}, {0x113B7, 0x113B7, U_L}, {0x113D1, 0x113D1, U_L},
    {0x113D3, 0x113D3, U_L}, {0x11400, 0x11434, U_L}, {0x11447, 0x1144A, U_L},
    {0x11450, 0x11459, U_N}, {0x1145F, 0x11461, U_L}, {0x11480, 0x114AF, U_L},
    {0x114C4, 0x114C5, U_L}, {0x114C7, 0x114C7, U_L}, {0x114D0, 0x114D9, U_N},
    {0x11580, 0x115AE, U_L}, {0x115D8, 0x115DB, U_L}, {0x11600, 0x1162F, U_L},
    {0x11644, 0x11644, U_L}, {0x11650, 0x11659, U_N}, {0x11680, 0x116AA, U_L},
    {0x116B8, 0x116B8, U_L}, {0x116C0, 0x116C9, U_N}, {0x116D0, 0x116E3, U_N},
    {0x11700, 0x1171A, U_L}, {0x11730, 0x1173B, U_N}, {0x11740, 0x11746, U_L},
    {0x11800, 0x1182B, U_L}, {0x118A0, 0x118DF, U_L}, {0x118E0, 0x118F2, U_N},
    {0x118FF, 0x11906, U_L}, {0x11909, 0x11909, U_L}, {0x1190C, 0x11913, U_L},
    {0x11915, 0x11916, U_L}, {0x11918, 0x1192F, U_L}, {0x1193F, 0x1193F, U_L},
    {0x11941, 0x11941, U_L}, {0x11950, 0x11959, U_N}, {0x119A0, 0x119A7, U_L},
    {0x119AA, 0x119D0, U_L}, {0x119E1, 0x119E1, U_L}, {0x119E3, 0x119E3, U_L},
    {0x11A00, 0x11A00, U_L}, {0x11A0B, 0x11A32, U_L}, {0x11A3A, 0x11A3A, U_L},
    {0x11A50, 0x11A50, U_L}, {0x11A5C, 0x11A89, U_L}, {0x11A9D, 0x11A9D, U_L},
    {0x11AB0, 0x11AF8, U_L}, {0x11BC0, 0x11BE0, U_L}, {0x11BF0, 0x11BF9, U_N},
    {0x11C00, 0x11C08, U_L}, {0x11C0A, 0x11C2E, U_L}, {0x11C40, 0x11C40, U_L},
    {0x11C50, 0x11C6C, U_N}, {0x11C72, 0x11C8F, U_L}, {0x11D00, 0x11D06, U_L},
    {0x11D08, 0x11D09, U_L}, {0x11D0B, 0x11D30, U_L}, {0x11D46, 0x11D46, U_L},
    {0x11D50, 0x11D59, U_N}, {0x11D60, 0x11D65, U_L}, {0x11D67, 0x11D68, U_L},
    {0x11D6A, 0x11D89, U_L}, {0x11D98, 0x11D98, U_L}, {0x11DA0, 0x11DA9, U_N},
    {0x11DB0, 0x11DDB, U_L}, {0x11DE0, 0x11DE9, U_N}, {0x11EE0, 0x11EF2, U_L},
    {0x11F02, 0x11F02, U_L}, {0x11F04, 0x11F10, U_L}, {0x11F12, 0x11F33, U_L},
    {0x11F50, 0x11F59, U_N}, {0x11FB0, 0x11FB0, U_L}, {0x11FC0, 0x11FD4, U_N},
    {0x12000, 0x12399, U_L}, {0x12400, 0x1246E, U_N}, {0x12480, 0x12543, U_L},
    {0x12F90, 0x12FF0, U_L}, {0x13000, 0x1342F, U_L}, {0x13441, 0x13446, U_L},
    {0x13460, 0x143FA, U_L}, {0x14400, 0x14646, U_L}, {0x16100, 0x1611D, U_L},
    {0x16130, 0x16139, U_N}, {0x16800, 0x16A38, U_L}, {0x16A40, 0x16A5E, U_L},
    {0x16A60, 0x16A69, U_N}, {0x16A70, 0x16ABE, U_L}, {0x16AC0, 0x16AC9, U_N},
    {0x16AD0, 0x16AED, U_L}, {0x16B00, 0x16B2F, U_L}, {0x16B40, 0x16B43, U_L},
    {0x16B50, 0x16B59, U_N}, {0x16B5B, 0x16B61, U_N}, {0x16B63, 0x16B77, U_L},
    {0x16B7D, 0x16B8F, U_L}, {0x16D40, 0x16D6C, U_L}, {0x16D70, 0x16D79, U_N},
    {0x16E40, 0x16E7F, U_L}, {0x16E80, 0x16E96, U_N}, {0x16EA0, 0x16EB8, U_L},
    {0x16EBB, 0x16ED3, U_L}, {0x16F00, 0x16F4A, U_L}, {0x16F50, 0x16F50, U_L},
    {0x16F93, 0x16F9F, U_L}, {0x16FE0, 0x16FE1, U_L}, {0x16FE3, 0x16FE3, U_L},
    {0x16FF2, 0x16FF3, U_L}, {0x16FF4, 0x16FF6, U_N}, {0x17000, 0x18CD5, U_L},
    {0x18CFF, 0x18D1E, U_L}, {0x18D80, 0x18DF2, U_L}, {0x1AFF0, 0x1AFF3, U_L},
    {0x1AFF5, 0x1AFFB, U_L}, {0x1AFFD, 0x1AFFE, U_L}, {0x1B000, 0x1B122, U_L},
    {0x1B132, 0x1B132, U_L}, {0x1B150, 0x1B152, U_L}, {0x1B155, 0x1B155, U_L},
    {0x1B164, 0x1B167, U_L}, {0x1B170, 0x1B2FB, U_L}, {0x1BC00, 0x1BC6A, U_L},
    {0x1BC70, 0x1BC7C, U_L}, {0x1BC80, 0x1BC88, U_L}, {0x1BC90, 0x1BC99, U_L},
    {0x1CCF0, 0x1CCF9, U_N}, {0x1D2C0, 0x1D2D3, U_N}, {0x1D2E0, 0x1D2F3, U_N},
    {0x1D360, 0x1D378, U_N}, {0x1D400, 0x1D454, U_L}, {0x1D456, 0x1D49C, U_L},
    {0x1D49E, 0x1D49F, U_L}, {0x1D4A2, 0x1D4A2, U_L}, {0x1D4A5, 0x1D4A6, U_L},
    {0x1D4A9, 0x1D4AC, U_L}, {0x1D4AE, 0x1D4B9, U_L}, {0x1D4BB, 0x1D4BB, U_L},
    {0x1D4BD, 0x1D4C3, U_L}, {0x1D4C5, 0x1D505, U_L}, {0x1D507, 0x1D50A, U_L},
    {0x1D50D, 0x1D514, U_L}, {0x1D516, 0x1D51C, U_L}, {0x1D51E, 0x1D539, U_L},
    {0x1D53B, 0x1D53E, U_L}, {0x1D540, 0x1D544, U_L}, {0x1D546, 0x1D546, U_L},
    {0x1D54A, 0x1D550, U_L}, {0x1D552, 0x1D6A5, U_L}, {0x1D6A8, 0x1D6C0, U_L},
    {0x1D6C2, 0x1D6DA, U_L}, {0x1D6DC, 0x1D6FA, U_L}, {0x1D6FC, 0x1D714, U_L},
    {0x1D716, 0x1D734, U_L}, {0x1D736, 0x1D74E, U_L}, {0x1D750, 0x1D76E, U_L},
    {0x1D770, 0x1D788, U_L}, {0x1D78A, 0x1D7A8, U_L}, {0x1D7AA, 0x1D7C2, U_L},
    {0x1D7C4, 0x1D7CB, U_L}, {0x1D7CE, 0x1D7FF, U_N}, {0x1DF00, 0x1DF1E, U_L},
    {0x1DF25, 0x1DF2A, U_L}, {0x1E030, 0x1E06D, U_L}, {0x1E100, 0x1E12C, U_L},
    {0x1E137, 0x1E13D, U_L}, {0x1E140, 0x1E149, U_N}, {0x1E14E, 0x1E14E, U_L},
    {0x1E290, 0x1E2AD, U_L}, {0x1E2C0, 0x1E2EB, U_L}, {0x1E2F0, 0x1E2F9, U_N},
    {0x1E4D0, 0x1E4EB, U_L}, {0x1E4F0, 0x1E4F9, U_N}, {0x1E5D0, 0x1E5ED, U_L},
    {0x1E5F0, 0x1E5F0, U_L}, {0x1E5F1, 0x1E5FA, U_N}, {0x1E6C0, 0x1E6DE, U_L},
    {0x1E6E0, 0x1E6E2, U_L}, {0x1E6E4, 0x1E6E5, U_L}, {0x1E6E7, 0x1E6ED, U_L},
    {0x1E6F0, 0x1E6F4, U_L}, {0x1E6FE, 0x1E6FF, U_L}, {0x1E7E0, 0x1E7E6, U_L},
    {0x1E7E8, 0x1E7EB, U_L}, {0x1E7ED, 0x1E7EE, U_L}, {0x1E7F0, 0x1E7FE, U_L},
    {0x1E800, 0x1E8C4, U_L}, {0x1E8C7, 0x1E8CF, U_N}, {0x1E900, 0x1E943, U_L},
    {0x1E94B, 0x1E94B, U_L}, {0x1E950, 0x1E959, U_N}, {0x1EC71, 0x1ECAB, U_N},
    {0x1ECAD, 0x1ECAF, U_N}, {0x1ECB1, 0x1ECB4, U_N}, {0x1ED01, 0x1ED2D, U_N},
    {0x1ED2F, 0x1ED3D, U_N}, {0x1EE00, 0x1EE03, U_L}, {0x1EE05, 0x1EE1F, U_L},
    {0x1EE21, 0x1EE22, U_L}, {0x1EE24, 0x1EE24, U_L}, {0x1EE27, 0x1EE27, U_L},
    {0x1EE29, 0x1EE32, U_L}, {0x1EE34, 0x1EE37, U_L}, {0x1EE39, 0x1EE39, U_L},
    {0x1EE3B, 0x1EE3B, U_L}, {0x1EE42, 0x1EE42, U_L}, {0x1EE47, 0x1EE47, U_L},
    {0x1EE49, 0x1EE49, U_L}, {0x1EE4B, 0x1EE4B, U_L}, {0x1EE4D, 0x1EE4F, U_L},
    {0x1EE51, 0x1EE52, U_L}, {0x1EE54, 0x1EE54, U_L}, {0x1EE57, 0x1EE57, U_L},
    {0x1EE59, 0x1EE59, U_L}, {0x1EE5B, 0x1EE5B, U_L}, {0x1EE5D, 0x1EE5D, U_L},
    {0x1EE5F, 0x1EE5F, U_L}, {0x1EE61, 0x1EE62, U_L}, {0x1EE64, 0x1EE64, U_L},
    {0x1EE67, 0x1EE6A, U_L}, {0x1EE6C, 0x1EE72, U_L}, {0x1EE74, 0x1EE77, U_L},
    {0x1EE79, 0x1EE7C, U_L}, {0x1EE7E, 0x1EE7E, U_L}, {0x1EE80, 0x1EE89, U_L},
    {0x1EE8B, 0x1EE9B, U_L}, {0x1EEA1, 0x1EEA3, U_L}, {0x1EEA5, 0x1EEA9, U_L},
    {0x1EEAB, 0x1EEBB, U_L}, {0x1F100, 0x1F10C, U_N}, {0x1FBF0, 0x1FBF9, U_N},
    {0x20000, 0x2A6DF, U_L}, {0x2A700, 0x2B81D, U_L}, {0x2B820, 0x2CEAD, U_L},
    {0x2CEB0, 0x2EBE0, U_L}, {0x2EBF0, 0x2EE5D, U_L}, {0x2F800, 0x2FA1D, U_L},
    {0x30000, 0x3134A, U_L}, {0x31350, 0x33479, U_L},
};
// clang-format on

static int class_cp(uint32_t cp) {  // cp >= 0x80
    if (cp >= 0x400 && cp <= 0x52F) return cp >= 0x482 && cp <= 0x489 ? C_OTHER : C_LETTER;
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
        cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return C_SPACE;
    size_t lo = 0, hi = sizeof uranges / sizeof uranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < uranges[mid].lo)
            hi = mid;
        else if (cp > uranges[mid].hi)
            lo = mid + 1;
        else
            return uranges[mid].cls;
    }
    return C_OTHER;
}

static inline int class_ascii(uint8_t c) {
    if ((uint8_t)((c | 0x20) - 'a') < 26) return C_LETTER;
    if ((uint8_t)(c - '0') < 10) return C_NUMBER;
    if (c == ' ' || (c >= 9 && c <= 13)) return C_SPACE;
    return C_OTHER;
}

// Class of the character at s[i]; *len receives its length in bytes.
static inline int char_class(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return class_ascii(c);
    }
    if ((c == 0xD0 || c == 0xD1) && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
        *len = 2;  // U+0400..U+047F: all Cyrillic letters
        return C_LETTER;
    }
    uint32_t cp;
    *len = utf8_decode((const char *)s + i, n - i, &cp);
    if (*len == 0) {  // an invalid byte: a character of its own
        *len = 1;
        return C_OTHER;
    }
    return class_cp(cp);
}

// End (exclusive) of the pre-token that starts at s[i], i < n. GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// evaluated at i: the first alternative that matches wins; runs are greedy.
static size_t pretok_end(const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t c1 = s[i + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t c2 = s[i + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return i + 3;
        }
    }
    size_t len, j = i;
    int cls = char_class(s, n, i, &len);
    if (s[i] == ' ' && i + 1 < n) {  // " ?X+": a space joins the run that follows it
        size_t len1;
        int cls1 = char_class(s, n, i + 1, &len1);
        if (cls1 != C_SPACE) {
            cls = cls1;
            j = i + 1;
            len = len1;
        }
    }
    if (cls != C_SPACE) {
        j += len;
        while (j < n) {
            size_t l;
            if (char_class(s, n, j, &l) != cls) break;
            j += l;
        }
        return j;
    }
    size_t last = i;  // start of the last whitespace character of the run
    j = i + len;
    while (j < n) {
        size_t l;
        if (char_class(s, n, j, &l) != C_SPACE) break;
        last = j;
        j += l;
    }
    // \s+(?!\S): a run that reaches the end is taken whole; otherwise its last character
    // is left to start the next pre-token, unless the run is one character (\s+).
    if (j == n || last == i) return j;
    return last;
}

// If a special-token string starts at s (n bytes available), returns its length and sets
// *id; else 0.
static inline size_t special_at(const uint8_t *s, size_t n, int *id) {
    if (n < 5 || s[0] != '[') return 0;
    for (int k = 0; k < BPE_N_SPECIAL; k++) {
        size_t l = strlen(special_str[k]);
        if (l <= n && memcmp(s, special_str[k], l) == 0) {
            *id = k;
            return l;
        }
    }
    return 0;
}

// Finds the first special-token string in s[from, n): its start goes to *pos, its
// length is returned (0 and *pos = n when there is none).
static size_t next_special(const uint8_t *s, size_t n, size_t from, size_t *pos, int *id) {
    while (from < n) {
        const uint8_t *p = memchr(s + from, '[', n - from);
        if (!p) break;
        size_t at = (size_t)(p - s), l = special_at(p, n - at, id);
        if (l) {
            *pos = at;
            return l;
        }
        from = at + 1;
    }
    *pos = n;
    return 0;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100.. in byte order.
static uint32_t byte_to_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100u + 33 + (b - 0x7Fu);
    return 0x100u + 67;  // 0xAD
}

// Inverse of byte_to_cp, or -1 for a code point that is not a byte-level character.
static int cp_to_byte(int32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return cp;
    if (cp >= 0x100 && cp <= 0x120) return cp - 0x100;
    if (cp >= 0x121 && cp <= 0x142) return 0x7F + (cp - 0x121);
    if (cp == 0x143) return 0xAD;
    return -1;
}

// ---------------------------------------------------------------------------------------
// The tokenizer

typedef struct {
    atomic_flag busy;  // held by the bpe_encode call that uses the cache
    uint32_t *slots;   // CACHE_SLOTS entries: 0 = empty, else arena offset + 1
    uint32_t *arena;   // entries: hash, n_bytes, n_ids, bytes (padded to 4), ids
    uint32_t n_used, arena_used;
} EncodeCache;

struct Bpe {
    int n_vocab;
    size_t cap_vocab;
    size_t *str_off, *str_len;    // token string (NUL-terminated) in strs
    size_t *byte_off, *byte_len;  // token bytes in bytes
    uint64_t *str_hash;
    char *strs;
    size_t strs_used, strs_cap;
    uint8_t *bytes;
    size_t bytes_used, bytes_cap;
    int32_t *slots;  // string -> id open addressing, -1 = empty
    size_t n_slots;
    int n_merges;
    size_t cap_merges;
    int32_t *merges;  // (left, right, result) per merge, in priority order
    U64Map ranks;     // pair_key(left, right) -> merge index
    char fingerprint[17];
    EncodeCache *cache;
};

static int bpe_find(const Bpe *b, const char *s, size_t n, uint64_t h) {
    if (b->n_slots == 0) return -1;
    size_t mask = b->n_slots - 1, i = (size_t)h & mask;
    for (;;) {
        int32_t id = b->slots[i];
        if (id < 0) return -1;
        if (b->str_hash[id] == h && b->str_len[id] == n &&
            memcmp(b->strs + b->str_off[id], s, n) == 0)
            return id;
        i = (i + 1) & mask;
    }
}

static void bpe_slot_insert(Bpe *b, int id) {
    size_t mask = b->n_slots - 1, i = (size_t)b->str_hash[id] & mask;
    while (b->slots[i] >= 0) i = (i + 1) & mask;
    b->slots[i] = id;
}

// Appends a token (string s of n bytes, raw bytes by of nb bytes) known to be new;
// returns its id.
static int bpe_add_token(Bpe *b, const char *s, size_t n, const uint8_t *by, size_t nb,
                         uint64_t h) {
    CHECK(b->n_vocab < INT32_MAX, "bpe: too many tokens");
    int id = b->n_vocab++;
    if ((size_t)b->n_vocab > b->cap_vocab) {
        size_t cap = b->cap_vocab ? 2 * b->cap_vocab : 512;
        b->str_off = xrealloc(b->str_off, cap, sizeof *b->str_off);
        b->str_len = xrealloc(b->str_len, cap, sizeof *b->str_len);
        b->byte_off = xrealloc(b->byte_off, cap, sizeof *b->byte_off);
        b->byte_len = xrealloc(b->byte_len, cap, sizeof *b->byte_len);
        b->str_hash = xrealloc(b->str_hash, cap, sizeof *b->str_hash);
        b->cap_vocab = cap;
    }
    GROW(b->strs, b->strs_cap, b->strs_used + n + 1);
    memcpy(b->strs + b->strs_used, s, n);
    b->strs[b->strs_used + n] = '\0';
    b->str_off[id] = b->strs_used;
    b->str_len[id] = n;
    b->strs_used += n + 1;
    GROW(b->bytes, b->bytes_cap, b->bytes_used + nb);
    if (nb) memcpy(b->bytes + b->bytes_used, by, nb);
    b->byte_off[id] = b->bytes_used;
    b->byte_len[id] = nb;
    b->bytes_used += nb;
    b->str_hash[id] = h;
    if (2 * (size_t)b->n_vocab > b->n_slots) {
        b->n_slots = b->n_slots ? 2 * b->n_slots : 1024;
        free(b->slots);
        b->slots = xrealloc(NULL, b->n_slots, sizeof *b->slots);
        memset(b->slots, 0xFF, b->n_slots * sizeof *b->slots);
        for (int k = 0; k < b->n_vocab; k++) bpe_slot_insert(b, k);
    } else {
        bpe_slot_insert(b, id);
    }
    return id;
}

// The byte-level string of byte c: 1 or 2 UTF-8 bytes into out (NUL-terminated).
static size_t byte_str(uint8_t c, char out[3]) {
    uint32_t cp = byte_to_cp(c);
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    out[2] = '\0';
    return 2;
}

static Bpe *bpe_new(void) {
    Bpe *b = xrealloc(NULL, 1, sizeof *b);
    memset(b, 0, sizeof *b);
    return b;
}

// Special tokens and the 256 byte tokens (trained tokenizers only; bpe_load takes them
// from vocab.json).
static void bpe_add_base(Bpe *b) {
    for (int k = 0; k < BPE_N_SPECIAL; k++) {
        size_t n = strlen(special_str[k]);
        bpe_add_token(b, special_str[k], n, (const uint8_t *)special_str[k], n,
                      hash_bytes((const uint8_t *)special_str[k], n));
    }
    for (int c = 0; c < BPE_N_BYTES; c++) {
        char s[3];
        uint8_t by = (uint8_t)c;
        size_t n = byte_str(by, s);
        bpe_add_token(b, s, n, &by, 1, hash_bytes((const uint8_t *)s, n));
    }
}

static void bpe_add_merge(Bpe *b, int32_t left, int32_t right, int32_t result) {
    GROW(b->merges, b->cap_merges, 3 * ((size_t)b->n_merges + 1));
    b->merges[3 * b->n_merges + 0] = left;
    b->merges[3 * b->n_merges + 1] = right;
    b->merges[3 * b->n_merges + 2] = result;
    b->n_merges++;
}

static void fnv1a(uint64_t *h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= s[i];
        *h *= 0x100000001B3ull;
    }
}

// Builds the rank table (the first of duplicate merges wins), the fingerprint and the
// cache once the vocabulary and merges are complete.
static void bpe_finish(Bpe *b) {
    u64map_free(&b->ranks);
    for (int m = 0; m < b->n_merges; m++) {
        uint64_t key = pair_key(b->merges[3 * m], b->merges[3 * m + 1]);
        if (!u64map_find(&b->ranks, key)) u64map_put_new(&b->ranks, key, (uint32_t)m);
    }
    // FNV-1a 64 over the text of vocab.json's tokens in id order and of merges.txt.
    uint64_t h = 0xCBF29CE484222325ull;
    fnv1a(&h, "vocab\n", 6);
    for (int id = 0; id < b->n_vocab; id++) {
        fnv1a(&h, b->strs + b->str_off[id], b->str_len[id]);
        fnv1a(&h, "\n", 1);
    }
    fnv1a(&h, "merges\n", 7);
    for (int m = 0; m < b->n_merges; m++) {
        int32_t l = b->merges[3 * m], r = b->merges[3 * m + 1];
        fnv1a(&h, b->strs + b->str_off[l], b->str_len[l]);
        fnv1a(&h, " ", 1);
        fnv1a(&h, b->strs + b->str_off[r], b->str_len[r]);
        fnv1a(&h, "\n", 1);
    }
    snprintf(b->fingerprint, sizeof b->fingerprint, "%016llx", (unsigned long long)h);
    if (!b->cache) {
        b->cache = xrealloc(NULL, 1, sizeof *b->cache);
        memset(b->cache, 0, sizeof *b->cache);
        atomic_flag_clear(&b->cache->busy);
    }
}

void bpe_free(Bpe *b) {
    if (!b) return;
    free(b->str_off);
    free(b->str_len);
    free(b->byte_off);
    free(b->byte_len);
    free(b->str_hash);
    free(b->strs);
    free(b->bytes);
    free(b->slots);
    free(b->merges);
    u64map_free(&b->ranks);
    if (b->cache) {
        free(b->cache->slots);
        free(b->cache->arena);
        free(b->cache);
    }
    free(b);
}

int bpe_vocab_size(const Bpe *b) { return b->n_vocab; }

const char *bpe_token_str(const Bpe *b, int id) {
    if (id < 0 || id >= b->n_vocab) return NULL;
    return b->strs + b->str_off[id];
}

int bpe_token_id(const Bpe *b, const char *tok) {
    size_t n = strlen(tok);
    return bpe_find(b, tok, n, hash_bytes((const uint8_t *)tok, n));
}

const char *bpe_fingerprint(const Bpe *b) { return b->fingerprint; }

// ---------------------------------------------------------------------------------------
// Training

// Distinct pre-tokens and their counts.
typedef struct {
    uint8_t *bytes;
    size_t bytes_used, bytes_cap;
    size_t *off, *len;
    int64_t *count;
    uint64_t *hash;
    size_t n, cap;
    uint32_t *slots;  // 0 = empty, else word index + 1
    size_t n_slots;
    uint64_t n_total;  // pre-tokens counted, repeats included
} WordCount;

static void wc_rehash(WordCount *wc) {
    wc->n_slots = wc->n_slots ? 2 * wc->n_slots : (1u << 16);
    free(wc->slots);
    wc->slots = xrealloc(NULL, wc->n_slots, sizeof *wc->slots);
    memset(wc->slots, 0, wc->n_slots * sizeof *wc->slots);
    size_t mask = wc->n_slots - 1;
    for (size_t w = 0; w < wc->n; w++) {
        size_t i = (size_t)wc->hash[w] & mask;
        while (wc->slots[i]) i = (i + 1) & mask;
        wc->slots[i] = (uint32_t)(w + 1);
    }
}

static void wc_add(WordCount *wc, const uint8_t *s, size_t n) {
    wc->n_total++;
    uint64_t h = hash_bytes(s, n);
    size_t mask = wc->n_slots - 1, i = (size_t)h & mask;
    for (;;) {
        uint32_t v = wc->slots[i];
        if (!v) break;
        size_t w = v - 1;
        if (wc->hash[w] == h && wc->len[w] == n && memcmp(wc->bytes + wc->off[w], s, n) == 0) {
            wc->count[w]++;
            return;
        }
        i = (i + 1) & mask;
    }
    CHECK(wc->n < UINT32_MAX - 1, "bpe: more than 2^32 distinct words");
    size_t w = wc->n++;
    if (wc->n > wc->cap) {
        GROW(wc->off, wc->cap, wc->n);
        wc->len = xrealloc(wc->len, wc->cap, sizeof *wc->len);
        wc->count = xrealloc(wc->count, wc->cap, sizeof *wc->count);
        wc->hash = xrealloc(wc->hash, wc->cap, sizeof *wc->hash);
    }
    GROW(wc->bytes, wc->bytes_cap, wc->bytes_used + n);
    memcpy(wc->bytes + wc->bytes_used, s, n);
    wc->off[w] = wc->bytes_used;
    wc->len[w] = n;
    wc->count[w] = 1;
    wc->hash[w] = h;
    wc->bytes_used += n;
    wc->slots[i] = (uint32_t)(w + 1);
    if (2 * wc->n > wc->n_slots) wc_rehash(wc);
}

static void wc_free(WordCount *wc) {
    free(wc->bytes);
    free(wc->off);
    free(wc->len);
    free(wc->count);
    free(wc->hash);
    free(wc->slots);
}

// Counts the pre-tokens of one document (special-token strings are cut out, not counted).
static void wc_add_text(WordCount *wc, const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t at;
        int id;
        size_t l = next_special(s, n, i, &at, &id);
        while (i < at) {
            size_t e = pretok_end(s, at, i);
            wc_add(wc, s + i, e - i);
            i = e;
        }
        i = at + l;
    }
}

typedef struct {
    int32_t a, b;
    int64_t count;
    uint32_t *pos;  // words that contain (or contained) the pair; may repeat
    uint32_t n_pos, cap_pos;
    uint32_t stamp;  // merge step that last raised the count
} Pair;

typedef struct {
    int64_t count;
    int32_t a, b;
    uint32_t pair;
} HeapEnt;

typedef struct {
    Pair *pairs;
    size_t n_pairs, cap_pairs;
    U64Map index;  // pair_key -> pairs index
    HeapEnt *heap;
    size_t n_heap, cap_heap;
    uint32_t *touched;  // pairs raised during the current merge step
    size_t n_touched, cap_touched;
    uint32_t stamp;
} Trainer;

// Max-heap order: higher count first, then smaller (a, b).
static inline int heap_before(const HeapEnt *x, const HeapEnt *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void heap_sift_down(HeapEnt *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_before(&h[l], &h[m])) m = l;
        if (r < n && heap_before(&h[r], &h[m])) m = r;
        if (m == i) return;
        HeapEnt t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_push(Trainer *T, uint32_t pi) {
    const Pair *p = &T->pairs[pi];
    GROW(T->heap, T->cap_heap, T->n_heap + 1);
    size_t i = T->n_heap++;
    HeapEnt e = {p->count, p->a, p->b, pi};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(&e, &T->heap[parent])) break;
        T->heap[i] = T->heap[parent];
        i = parent;
    }
    T->heap[i] = e;
}

static int heap_pop(Trainer *T, HeapEnt *out) {
    if (T->n_heap == 0) return 0;
    *out = T->heap[0];
    T->heap[0] = T->heap[--T->n_heap];
    heap_sift_down(T->heap, T->n_heap, 0);
    return 1;
}

// Adds delta (occurrences x word count) to pair (a, b) of word w.
static void pair_add(Trainer *T, int32_t a, int32_t b, int64_t delta, uint32_t w) {
    uint64_t key = pair_key(a, b);
    uint32_t *v = u64map_find(&T->index, key);
    uint32_t pi;
    if (v) {
        pi = *v;
    } else {
        CHECK(delta > 0, "bpe: internal error: count of an unknown pair decreased");
        CHECK(T->n_pairs < UINT32_MAX, "bpe: too many pairs");
        pi = (uint32_t)T->n_pairs++;
        GROW(T->pairs, T->cap_pairs, T->n_pairs);
        Pair np = {a, b, 0, NULL, 0, 0, 0};
        T->pairs[pi] = np;
        u64map_put_new(&T->index, key, pi);
    }
    Pair *p = &T->pairs[pi];
    p->count += delta;
    if (delta > 0) {
        if (p->n_pos == 0 || p->pos[p->n_pos - 1] != w) {
            if (p->n_pos == p->cap_pos) {
                CHECK(p->cap_pos < UINT32_MAX / 2, "bpe: pair occurs in too many words");
                p->cap_pos = p->cap_pos ? 2 * p->cap_pos : 4;
                p->pos = xrealloc(p->pos, p->cap_pos, sizeof *p->pos);
            }
            p->pos[p->n_pos++] = w;
        }
        if (p->stamp != T->stamp) {
            p->stamp = T->stamp;
            GROW(T->touched, T->cap_touched, T->n_touched + 1);
            T->touched[T->n_touched++] = pi;
        }
    }
}

// Replaces every (a, b) in word s (length *len, count cnt) by x, left to right, and
// updates the pair counts of the neighbours.
static void merge_word(Trainer *T, int32_t *s, size_t *len, int32_t a, int32_t b, int32_t x,
                       int64_t cnt, uint32_t w) {
    size_t n = *len, i = 0, j = 0;
    while (i < n) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (j > 0) {
                pair_add(T, s[j - 1], a, -cnt, w);
                pair_add(T, s[j - 1], x, cnt, w);
            }
            if (i + 2 < n) {
                pair_add(T, b, s[i + 2], -cnt, w);
                pair_add(T, x, s[i + 2], cnt, w);
            }
            pair_add(T, a, b, -cnt, w);
            s[j++] = x;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    *len = j;
}

static void trainer_free(Trainer *T) {
    for (size_t i = 0; i < T->n_pairs; i++) free(T->pairs[i].pos);
    free(T->pairs);
    u64map_free(&T->index);
    free(T->heap);
    free(T->touched);
}

// Reads the documents of every file into wc. -1 with err on an I/O error.
static int count_words(WordCount *wc, const char *const *paths, int n_paths, int progress,
                       double t0, char *err) {
    char *line = NULL;
    size_t line_cap = 0;
    uint64_t total_bytes = 0, next_report = 64u << 20;
    for (int f = 0; f < n_paths; f++) {
        FILE *fp = fopen(paths[f], "rb");
        if (!fp) {
            free(line);
            return cx_err(err, "cannot open training file: %s (%s)", strerror(errno), paths[f]);
        }
        ssize_t got;
        errno = 0;
        while ((got = getline(&line, &line_cap, fp)) > 0) {
            size_t n = (size_t)got;
            total_bytes += n;
            if (line[n - 1] == '\n') n--;
            wc_add_text(wc, (const uint8_t *)line, n);
            if (progress && total_bytes >= next_report) {
                fprintf(stderr, "bpe: read %.0f MB, %llu words, %zu distinct, %.1f s\n",
                        (double)total_bytes / 1e6, (unsigned long long)wc->n_total, wc->n,
                        now_s() - t0);
                next_report += 64u << 20;
            }
        }
        int bad = ferror(fp);
        int saved = errno;
        fclose(fp);
        if (bad) {
            free(line);
            return cx_err(err, "cannot read training file: %s (%s)", strerror(saved ? saved : EIO),
                          paths[f]);
        }
    }
    free(line);
    if (progress)
        fprintf(stderr, "bpe: read %.1f MB from %d file%s: %llu words, %zu distinct, %.1f s\n",
                (double)total_bytes / 1e6, n_paths, n_paths == 1 ? "" : "s",
                (unsigned long long)wc->n_total, wc->n, now_s() - t0);
    return 0;
}

int bpe_train(Bpe **out, const char *const *paths, int n_paths, int vocab_size, int progress,
              char *err) {
    *out = NULL;
    if (vocab_size < BPE_FIRST_MERGED || vocab_size > BPE_MAX_VOCAB)
        return cx_err(err,
                      "vocab size %d out of range (%d..%d, the 5 special and 256 byte tokens "
                      "included)",
                      vocab_size, BPE_FIRST_MERGED, BPE_MAX_VOCAB);
    if (n_paths < 1) return cx_err(err, "no training files given");
    double t0 = now_s();
    WordCount wc;
    memset(&wc, 0, sizeof wc);
    wc_rehash(&wc);
    if (count_words(&wc, paths, n_paths, progress, t0, err) != 0) {
        wc_free(&wc);
        return -1;
    }

    // Words as id sequences; they shrink in place as merges apply.
    int32_t *sym = xrealloc(NULL, wc.bytes_used, sizeof *sym);
    for (size_t i = 0; i < wc.bytes_used; i++) sym[i] = BPE_N_SPECIAL + wc.bytes[i];
    uint32_t *wstamp = xrealloc(NULL, wc.n, sizeof *wstamp);
    memset(wstamp, 0, wc.n * sizeof *wstamp);

    Trainer T;
    memset(&T, 0, sizeof T);
    for (size_t w = 0; w < wc.n; w++) {
        const int32_t *s = sym + wc.off[w];
        for (size_t i = 0; i + 1 < wc.len[w]; i++)
            pair_add(&T, s[i], s[i + 1], wc.count[w], (uint32_t)w);
    }
    T.n_touched = 0;
    T.heap = xrealloc(NULL, T.n_pairs ? T.n_pairs : 1, sizeof *T.heap);
    T.cap_heap = T.n_pairs ? T.n_pairs : 1;
    for (size_t i = 0; i < T.n_pairs; i++) {
        const Pair *p = &T.pairs[i];
        HeapEnt e = {p->count, p->a, p->b, (uint32_t)i};
        T.heap[T.n_heap++] = e;
    }
    for (size_t i = T.n_heap / 2; i-- > 0;) heap_sift_down(T.heap, T.n_heap, i);

    Bpe *b = bpe_new();
    bpe_add_base(b);
    char *tok = NULL;
    size_t tok_cap = 0;
    uint8_t *tb = NULL;
    size_t tb_cap = 0;
    int report_every = (vocab_size - BPE_FIRST_MERGED) / 20 + 1;
    int64_t last_count = 0;
    HeapEnt e;
    while (b->n_vocab < vocab_size && heap_pop(&T, &e)) {
        Pair *p = &T.pairs[e.pair];
        if (p->count != e.count) {  // stale: a fresher entry exists, or re-queue the lower count
            if (p->count > 0 && p->count < e.count) heap_push(&T, e.pair);
            continue;
        }
        if (e.count < BPE_MIN_FREQUENCY) break;
        last_count = e.count;
        int32_t a = e.a, bb = e.b;
        size_t la = b->str_len[a], lb = b->str_len[bb];
        GROW(tok, tok_cap, la + lb);
        memcpy(tok, b->strs + b->str_off[a], la);
        memcpy(tok + la, b->strs + b->str_off[bb], lb);
        uint64_t h = hash_bytes((const uint8_t *)tok, la + lb);
        int x = bpe_find(b, tok, la + lb, h);
        if (x < 0) {
            size_t na = b->byte_len[a], nb = b->byte_len[bb];
            GROW(tb, tb_cap, na + nb);
            memcpy(tb, b->bytes + b->byte_off[a], na);
            memcpy(tb + na, b->bytes + b->byte_off[bb], nb);
            x = bpe_add_token(b, tok, la + lb, tb, na + nb, h);
        }
        bpe_add_merge(b, a, bb, x);

        // Merge in every word that contains (a, b). The pair's own word list is not
        // appended to meanwhile (x differs from a and b), but T.pairs may move.
        uint32_t *pos = p->pos, n_pos = p->n_pos;
        p->pos = NULL;
        p->n_pos = p->cap_pos = 0;
        uint32_t pi = e.pair;
        T.stamp++;
        T.n_touched = 0;
        for (uint32_t k = 0; k < n_pos; k++) {
            uint32_t w = pos[k];
            if (wstamp[w] == T.stamp) continue;
            wstamp[w] = T.stamp;
            merge_word(&T, sym + wc.off[w], &wc.len[w], a, bb, x, wc.count[w], w);
        }
        free(pos);
        CHECK(T.pairs[pi].count == 0, "bpe: internal error: pair count %lld after its merge",
              (long long)T.pairs[pi].count);
        for (size_t k = 0; k < T.n_touched; k++)
            if (T.pairs[T.touched[k]].count > 0) heap_push(&T, T.touched[k]);
        if (progress && (b->n_merges % report_every == 0 || b->n_vocab == vocab_size))
            fprintf(stderr, "bpe: vocab %d/%d, %d merges, pair count %lld, %.1f s\n", b->n_vocab,
                    vocab_size, b->n_merges, (long long)last_count, now_s() - t0);
    }
    if (progress && b->n_vocab < vocab_size)
        fprintf(stderr, "bpe: stopped at vocab %d/%d: no pair occurs %d times or more\n",
                b->n_vocab, vocab_size, BPE_MIN_FREQUENCY);
    free(tok);
    free(tb);
    free(sym);
    free(wstamp);
    trainer_free(&T);
    wc_free(&wc);
    bpe_finish(b);
    *out = b;
    return 0;
}

// ---------------------------------------------------------------------------------------
// Encoding

typedef struct {
    int32_t *ids;
    size_t cap, n;
} Out;

static inline void emit(Out *o, int32_t id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

// Rank of merging (a, b) and the resulting id, or UINT32_MAX.
static inline uint32_t merge_rank(const Bpe *b, int32_t a, int32_t c, int32_t *result) {
    const uint32_t *m = u64map_find(&b->ranks, pair_key(a, c));
    if (!m) return UINT32_MAX;
    *result = b->merges[3 * *m + 2];
    return *m;
}

typedef struct {
    uint32_t rank, pos;
} WordHeapEnt;

static inline int wh_before(WordHeapEnt x, WordHeapEnt y) {
    return x.rank != y.rank ? x.rank < y.rank : x.pos < y.pos;
}

static void wh_push(WordHeapEnt *h, size_t *n, WordHeapEnt e) {
    size_t i = (*n)++;
    while (i > 0 && wh_before(e, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static WordHeapEnt wh_pop(WordHeapEnt *h, size_t *n) {
    WordHeapEnt top = h[0], e = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        WordHeapEnt best = e;
        if (l < *n && wh_before(h[l], best)) {
            m = l;
            best = h[l];
        }
        if (r < *n && wh_before(h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0) h[i] = e;
    return top;
}

// Byte-pair-encodes one pre-token w (n >= 1 bytes) into out (room for n ids); returns
// the number of ids. Merges apply lowest rank first, leftmost first within a rank.
static size_t bpe_word(const Bpe *b, const uint8_t *w, size_t n, int32_t *out) {
    if (n <= SHORT_WORD) {  // rescan the pairs' ranks after each merge: O(n^2), small n
        uint32_t rank[SHORT_WORD];
        int32_t res[SHORT_WORD];
        for (size_t i = 0; i < n; i++) out[i] = BPE_N_SPECIAL + w[i];
        for (size_t i = 0; i + 1 < n; i++) rank[i] = merge_rank(b, out[i], out[i + 1], &res[i]);
        while (n > 1) {
            size_t best = 0;
            for (size_t i = 1; i + 1 < n; i++)
                if (rank[i] < rank[best]) best = i;
            if (rank[best] == UINT32_MAX) break;
            out[best] = res[best];
            n--;
            memmove(out + best + 1, out + best + 2, (n - best - 1) * sizeof *out);
            memmove(rank + best + 1, rank + best + 2,
                    (n > best + 2 ? n - best - 2 : 0) * sizeof *rank);
            memmove(res + best + 1, res + best + 2,
                    (n > best + 2 ? n - best - 2 : 0) * sizeof *res);
            if (best > 0) rank[best - 1] = merge_rank(b, out[best - 1], out[best], &res[best - 1]);
            if (best + 1 < n) rank[best] = merge_rank(b, out[best], out[best + 1], &res[best]);
        }
        return n;
    }
    // Long words: symbols in a linked list, candidate pairs in a min-heap of (rank, left
    // position); an entry is stale when the pair at that position no longer has its rank.
    CHECK(n < INT32_MAX, "bpe: pre-token of %zu bytes is too long", n);
    int32_t *id = out;
    int32_t *next = xrealloc(NULL, n, sizeof *next), *prev = xrealloc(NULL, n, sizeof *prev);
    WordHeapEnt *heap = xrealloc(NULL, 3 * n, sizeof *heap);
    size_t n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        id[i] = BPE_N_SPECIAL + w[i];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    int32_t res = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r = merge_rank(b, id[i], id[i + 1], &res);
        if (r != UINT32_MAX) wh_push(heap, &n_heap, (WordHeapEnt){r, (uint32_t)i});
    }
    while (n_heap > 0) {
        WordHeapEnt e = wh_pop(heap, &n_heap);
        int32_t l = (int32_t)e.pos, r = next[l];
        if (id[l] < 0 || r < 0 || merge_rank(b, id[l], id[r], &res) != e.rank) continue;
        id[l] = res;
        id[r] = -1;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        uint32_t k;
        if (prev[l] >= 0 && (k = merge_rank(b, id[prev[l]], id[l], &res)) != UINT32_MAX)
            wh_push(heap, &n_heap, (WordHeapEnt){k, (uint32_t)prev[l]});
        if (next[l] >= 0 && (k = merge_rank(b, id[l], id[next[l]], &res)) != UINT32_MAX)
            wh_push(heap, &n_heap, (WordHeapEnt){k, (uint32_t)l});
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) id[m++] = id[i];
    free(next);
    free(prev);
    free(heap);
    return m;
}

static void cache_reset(EncodeCache *c) {
    memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
    c->n_used = 0;
    c->arena_used = 0;
}

// Encodes one pre-token, through the cache when c is not NULL.
static void encode_word(const Bpe *b, EncodeCache *c, const uint8_t *w, size_t n, Out *o) {
    if (n == 1) {
        emit(o, BPE_N_SPECIAL + w[0]);
        return;
    }
    uint32_t h = 0, *slot = NULL;
    if (c && n <= CACHE_MAX_WORD) {
        h = (uint32_t)hash_bytes(w, n);
        uint32_t mask = CACHE_SLOTS - 1, i = h & mask;
        for (;; i = (i + 1) & mask) {
            if (c->slots[i] == 0) break;
            const uint32_t *ent = c->arena + c->slots[i] - 1;
            if (ent[0] == h && ent[1] == n && memcmp(ent + 3, w, n) == 0) {
                const int32_t *ids = (const int32_t *)(ent + 3 + (n + 3) / 4);
                for (uint32_t k = 0; k < ent[2]; k++) emit(o, ids[k]);
                return;
            }
        }
        slot = &c->slots[i];
    }
    int32_t stack_ids[256];
    int32_t *ids = n <= 256 ? stack_ids : xrealloc(NULL, n, sizeof *ids);
    size_t m = bpe_word(b, w, n, ids);
    for (size_t k = 0; k < m; k++) emit(o, ids[k]);
    if (slot) {
        uint32_t need = 3 + (uint32_t)(n + 3) / 4 + (uint32_t)m;
        if (2 * (c->n_used + 1) > CACHE_SLOTS || c->arena_used + need > CACHE_ARENA) {
            cache_reset(c);  // bounded memory: start over
            uint32_t mask = CACHE_SLOTS - 1;
            slot = &c->slots[h & mask];
        }
        uint32_t *ent = c->arena + c->arena_used;
        ent[0] = h;
        ent[1] = (uint32_t)n;
        ent[2] = (uint32_t)m;
        ent[2 + (n + 3) / 4] = 0;  // padding after the bytes
        memcpy(ent + 3, w, n);
        memcpy(ent + 3 + (n + 3) / 4, ids, m * sizeof *ids);
        *slot = c->arena_used + 1;
        c->arena_used += need;
        c->n_used++;
    }
    if (ids != stack_ids) free(ids);
}

int bpe_encode(const Bpe *b, const char *text, size_t len, int32_t *ids, size_t cap,
               size_t *n_out) {
    Out o = {ids, cap, 0};
    EncodeCache *c = b->cache;
    if (c && atomic_flag_test_and_set_explicit(&c->busy, memory_order_acquire)) c = NULL;
    if (c && !c->slots) {
        c->slots = xrealloc(NULL, CACHE_SLOTS, sizeof *c->slots);
        c->arena = xrealloc(NULL, CACHE_ARENA, sizeof *c->arena);
        cache_reset(c);
    }
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        size_t at;
        int sid;
        size_t l = next_special(s, len, i, &at, &sid);
        while (i < at) {
            size_t e = pretok_end(s, at, i);
            encode_word(b, c, s + i, e - i, &o);
            i = e;
        }
        if (l) emit(&o, sid);
        i = at + l;
    }
    if (c) atomic_flag_clear_explicit(&c->busy, memory_order_release);
    if (n_out) *n_out = o.n;
    return o.n > cap ? 1 : 0;
}

size_t bpe_decode(const Bpe *b, const int32_t *ids, size_t n, char *out, size_t cap) {
    static const char replacement[] = "\xEF\xBF\xBD";  // U+FFFD for ids out of range
    size_t used = 0;
    for (size_t k = 0; k < n; k++) {
        const void *src;
        size_t nb;
        if (ids[k] >= 0 && ids[k] < b->n_vocab) {
            src = b->bytes + b->byte_off[ids[k]];
            nb = b->byte_len[ids[k]];
        } else {
            src = replacement;
            nb = 3;
        }
        if (used < cap) memcpy(out + used, src, nb < cap - used ? nb : cap - used);
        used += nb;
    }
    return used;
}

void bpe_utf8_automaton(const Bpe *b, int V, uint8_t *fsm) {
    for (int s = 0; s < UTF8_FSM_STATES; s++)
        for (int id = 0; id < V; id++) {
            int st = -1;  // ids past the tokenizer's: never
            if (id < b->n_vocab) {
                const uint8_t *by = b->bytes + b->byte_off[id];
                st = s;
                for (size_t i = 0; i < b->byte_len[id] && st >= 0; i++) st = utf8_fsm_step(st, by[i]);
            }
            fsm[(size_t)s * V + id] = st < 0 ? 255 : (uint8_t)st;
        }
}

// ---------------------------------------------------------------------------------------
// Saving

// Creates dir and its parents (like mkdir -p).
static int make_dirs(const char *dir, char *err) {
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return cx_err(err, "bad output directory name (%s)", dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return cx_err(err, "cannot create directory: %s (%s)", strerror(errno), path);
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cx_err(err, "not a directory (%s)", dir);
    return 0;
}

// Writes data to dir/name through a temporary file, fsync and rename.
static int write_atomic(const char *dir, const char *name, const char *data, size_t n, char *err) {
    char path[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid()) >= (int)sizeof tmp)
        return cx_err(err, "path too long (%s/%s)", dir, name);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return cx_err(err, "cannot create file: %s (%s)", strerror(errno), tmp);
    int ok = fwrite(data, 1, n, fp) == n;
    ok = fflush(fp) == 0 && ok;
    ok = ok && fsync(fileno(fp)) == 0;
    int saved = errno;
    ok = fclose(fp) == 0 && ok;
    if (!ok) {
        unlink(tmp);
        return cx_err(err, "cannot write file: %s (%s)", strerror(saved ? saved : EIO), tmp);
    }
    if (rename(tmp, path) != 0) {
        saved = errno;
        unlink(tmp);
        return cx_err(err, "cannot rename %s: %s (%s)", tmp, strerror(saved), path);
    }
    return 0;
}

int bpe_save(const Bpe *b, const char *dir, char *err) {
    if (make_dirs(dir, err) != 0) return -1;
    json_object *obj = json_object_new_object();
    CHECK(obj != NULL, "out of memory");
    for (int id = 0; id < b->n_vocab; id++) {
        json_object *v = json_object_new_int(id);
        CHECK(v != NULL, "out of memory");
        CHECK(json_object_object_add_ex(obj, b->strs + b->str_off[id], v,
                                        JSON_C_OBJECT_ADD_KEY_IS_NEW) == 0,
              "out of memory");
    }
    size_t n_json;
    const char *js = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n_json);
    CHECK(js != NULL, "out of memory");
    int rc = write_atomic(dir, "vocab.json", js, n_json, err);
    json_object_put(obj);
    if (rc != 0) return -1;

    static const char header[] = "#version: 0.2\n";
    size_t n = sizeof header - 1;
    for (int m = 0; m < b->n_merges; m++)
        n += b->str_len[b->merges[3 * m]] + b->str_len[b->merges[3 * m + 1]] + 2;
    char *text = xrealloc(NULL, n, 1), *p = text;
    memcpy(p, header, sizeof header - 1);
    p += sizeof header - 1;
    for (int m = 0; m < b->n_merges; m++) {
        int32_t l = b->merges[3 * m], r = b->merges[3 * m + 1];
        memcpy(p, b->strs + b->str_off[l], b->str_len[l]);
        p += b->str_len[l];
        *p++ = ' ';
        memcpy(p, b->strs + b->str_off[r], b->str_len[r]);
        p += b->str_len[r];
        *p++ = '\n';
    }
    rc = write_atomic(dir, "merges.txt", text, n, err);
    free(text);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Loading

// Reads a whole file (NUL appended, not counted). -1 with err naming the file.
static int read_file(const char *path, char **out, size_t *n_out, char *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return cx_err(err, "cannot open: %s (%s)", strerror(errno), path);
    size_t n = 0, cap = 0;
    char *buf = NULL;
    for (;;) {
        GROW(buf, cap, n + 65536 + 1);
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0) break;
        if (n > BPE_MAX_FILE_BYTES) {
            fclose(fp);
            free(buf);
            return cx_err(err, "file larger than %zu bytes (%s)", BPE_MAX_FILE_BYTES, path);
        }
    }
    int bad = ferror(fp);
    int saved = errno;
    fclose(fp);
    if (bad) {
        free(buf);
        return cx_err(err, "cannot read: %s (%s)", strerror(saved ? saved : EIO), path);
    }
    buf[n] = '\0';
    *out = buf;
    *n_out = n;
    return 0;
}

static void line_col(const char *s, size_t off, size_t *line, size_t *col) {
    *line = 1;
    size_t start = 0;
    for (size_t i = 0; i < off; i++)
        if (s[i] == '\n') {
            (*line)++;
            start = i + 1;
        }
    *col = off - start + 1;
}

// Parses vocab.json into b (tokens in id order). -1 with err naming the file.
static int load_vocab(Bpe *b, const char *path, char *err) {
    char *buf;
    size_t n;
    if (read_file(path, &buf, &n, err) != 0) return -1;
    int rc = -1;
    json_object *root = NULL;
    const char **keys = NULL;
    uint8_t *by = NULL;
    char shown[128], shown2[128];
    size_t line, col;
    struct json_tokener *tok = json_tokener_new();
    CHECK(tok != NULL, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    size_t ws = 0;
    while (ws < n && (buf[ws] == ' ' || buf[ws] == '\t' || buf[ws] == '\n' || buf[ws] == '\r'))
        ws++;
    if (ws == n) {
        cx_err(err, "empty file, expected a JSON object of token -> id (%s)", path);
        goto done;
    }
    root = json_tokener_parse_ex(tok, buf, (int)n);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!root && jerr == json_tokener_continue) {
        // a bare number at the very end needs a terminator to complete
        root = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        if (!root) {
            cx_err(err, "JSON ends too early (%s, byte %zu)", path, n);
            goto done;
        }
        end = n;
    }
    if (!root) {
        line_col(buf, end, &line, &col);
        cx_err(err, "JSON syntax error: %s (%s, byte %zu, line %zu, column %zu)",
               json_tokener_error_desc(jerr), path, end, line, col);
        goto done;
    }
    while (end < n && (buf[end] == ' ' || buf[end] == '\t' || buf[end] == '\n' || buf[end] == '\r'))
        end++;
    if (end < n) {
        line_col(buf, end, &line, &col);
        cx_err(err, "unexpected data after the JSON value (%s, byte %zu, line %zu, column %zu)",
               path, end, line, col);
        goto done;
    }
    if (!json_object_is_type(root, json_type_object)) {
        cx_err(err, "expected a JSON object mapping token strings to ids, found %s (%s)",
               json_type_to_name(json_object_get_type(root)), path);
        goto done;
    }
    int n_tok = json_object_object_length(root);
    if (n_tok < BPE_FIRST_MERGED) {
        cx_err(err, "%d tokens, expected at least %d (5 special + 256 byte tokens) (%s)", n_tok,
               BPE_FIRST_MERGED, path);
        goto done;
    }
    if (n_tok > BPE_MAX_VOCAB) {
        cx_err(err, "%d tokens, more than %d (%s)", n_tok, BPE_MAX_VOCAB, path);
        goto done;
    }
    keys = xrealloc(NULL, (size_t)n_tok, sizeof *keys);
    for (int i = 0; i < n_tok; i++) keys[i] = NULL;
    struct json_object_iterator it = json_object_iter_begin(root),
                                it_end = json_object_iter_end(root);
    for (; !json_object_iter_equal(&it, &it_end); json_object_iter_next(&it)) {
        const char *key = json_object_iter_peek_name(&it);
        json_object *val = json_object_iter_peek_value(&it);
        if (!json_object_is_type(val, json_type_int)) {
            cx_err(err, "id of token \"%s\" is %s, expected an integer (%s)",
                   show(shown, sizeof shown, key, strlen(key)),
                   json_type_to_name(json_object_get_type(val)), path);
            goto done;
        }
        int64_t id = json_object_get_int64(val);
        if (id == INT64_MAX || id == INT64_MIN) {  // json-c saturates larger numbers
            cx_err(err, "id of token \"%s\" is too large (%s)",
                   show(shown, sizeof shown, key, strlen(key)), path);
            goto done;
        }
        if (id < 0 || id >= n_tok) {
            cx_err(err, "id %lld of token \"%s\" out of range 0..%d (%s)", (long long)id,
                   show(shown, sizeof shown, key, strlen(key)), n_tok - 1, path);
            goto done;
        }
        if (keys[id]) {
            cx_err(err, "id %lld used by both \"%s\" and \"%s\" (%s)", (long long)id,
                   show(shown, sizeof shown, keys[id], strlen(keys[id])),
                   show(shown2, sizeof shown2, key, strlen(key)), path);
            goto done;
        }
        keys[id] = key;
    }
    for (int id = 0; id < n_tok; id++) {
        if (!keys[id]) {  // only possible when duplicate keys collapsed
            cx_err(err, "no token has id %d (duplicate token strings?) (%s)", id, path);
            goto done;
        }
        const uint8_t *s = (const uint8_t *)keys[id];
        size_t len = strlen(keys[id]), nb = 0;
        if (len == 0) {
            cx_err(err, "token %d is the empty string (%s)", id, path);
            goto done;
        }
        by = xrealloc(by, len, 1);
        for (size_t i = 0; i < len;) {
            uint32_t cp = 0;
            size_t l = utf8_decode(keys[id] + i, len - i, &cp);
            int c = l == 0 ? -1 : cp_to_byte((int32_t)cp);
            if (c < 0) {
                cx_err(err,
                       "token \"%s\" (id %d) is not a byte-level string: it contains %s%04X "
                       "(%s)",
                       show(shown, sizeof shown, keys[id], len), id,
                       l == 0 ? "invalid UTF-8 byte 0x" : "U+", l == 0 ? s[i] : (unsigned)cp, path);
                goto done;
            }
            by[nb++] = (uint8_t)c;
            i += l;
        }
        if (id < BPE_N_SPECIAL && strcmp(keys[id], special_str[id]) != 0) {
            cx_err(err, "id %d is \"%s\", expected the special token \"%s\" (%s)", id,
                   show(shown, sizeof shown, keys[id], len), special_str[id], path);
            goto done;
        }
        bpe_add_token(b, keys[id], len, by, nb, hash_bytes(s, len));
    }
    for (int c = 0; c < BPE_N_BYTES; c++) {
        char str[3];
        size_t l = byte_str((uint8_t)c, str);
        if (bpe_find(b, str, l, hash_bytes((const uint8_t *)str, l)) < 0) {
            cx_err(err, "byte token \"%s\" (byte 0x%02X) missing (%s)", str, c, path);
            goto done;
        }
    }
    rc = 0;
done:
    free(by);
    free(keys);
    if (root) json_object_put(root);
    json_tokener_free(tok);
    free(buf);
    return rc;
}

// Parses merges.txt into b (vocab loaded). -1 with err naming the file and line.
static int load_merges(Bpe *b, const char *path, char *err) {
    char *buf;
    size_t n;
    if (read_file(path, &buf, &n, err) != 0) return -1;
    int rc = -1;
    char *cat = NULL;
    size_t cat_cap = 0;
    size_t *first_line = NULL, cap_first = 0;
    char s1[128], s2[128];
    const char *nul = memchr(buf, '\0', n);
    if (nul) {
        size_t line, col;
        line_col(buf, (size_t)(nul - buf), &line, &col);
        cx_err(err, "NUL byte in merges file (%s:%zu)", path, line);
        goto done;
    }
    if (n == 0) {
        cx_err(err, "empty file, expected the \"#version: 0.2\" header (%s:1)", path);
        goto done;
    }
    if (strncmp(buf, "#version", 8) != 0) {
        cx_err(err, "missing \"#version: 0.2\" header line (%s:1)", path);
        goto done;
    }
    size_t line_no = 1;
    char *p = strchr(buf, '\n');
    p = p ? p + 1 : buf + n;
    while (p < buf + n) {
        line_no++;
        char *eol = memchr(p, '\n', (size_t)(buf + n - p));
        if (!eol) eol = buf + n;
        char *next = eol < buf + n ? eol + 1 : eol;
        if (eol > p && eol[-1] == '\r') eol--;
        size_t len = (size_t)(eol - p);
        if (len == 0) {
            p = next;
            continue;
        }
        char *sp = memchr(p, ' ', len);
        if (!sp || sp == p || sp == eol - 1 || memchr(sp + 1, ' ', (size_t)(eol - sp - 1))) {
            cx_err(err, "expected two tokens separated by one space, found \"%s\" (%s:%zu)",
                   show(s1, sizeof s1, p, len), path, line_no);
            goto done;
        }
        size_t la = (size_t)(sp - p), lb = (size_t)(eol - sp - 1);
        int a = bpe_find(b, p, la, hash_bytes((const uint8_t *)p, la));
        int c = bpe_find(b, sp + 1, lb, hash_bytes((const uint8_t *)sp + 1, lb));
        if (a < 0 || c < 0) {
            cx_err(err, "unknown token \"%s\" (not in vocab.json) (%s:%zu)",
                   a < 0 ? show(s1, sizeof s1, p, la) : show(s1, sizeof s1, sp + 1, lb), path,
                   line_no);
            goto done;
        }
        GROW(cat, cat_cap, la + lb);
        memcpy(cat, p, la);
        memcpy(cat + la, sp + 1, lb);
        int r = bpe_find(b, cat, la + lb, hash_bytes((const uint8_t *)cat, la + lb));
        if (r < 0) {
            cx_err(err, "merged token \"%s\" is not in vocab.json (%s:%zu)",
                   show(s1, sizeof s1, cat, la + lb), path, line_no);
            goto done;
        }
        if (a < BPE_N_SPECIAL || c < BPE_N_SPECIAL || r < BPE_N_SPECIAL) {
            cx_err(err, "merge \"%s\" + \"%s\" involves a special token (%s:%zu)",
                   show(s1, sizeof s1, p, la), show(s2, sizeof s2, sp + 1, lb), path, line_no);
            goto done;
        }
        const uint32_t *dup = u64map_find(&b->ranks, pair_key(a, c));
        if (dup) {
            cx_err(err, "duplicate merge \"%s %s\", first at line %zu (%s:%zu)",
                   show(s1, sizeof s1, p, la), show(s2, sizeof s2, sp + 1, lb), first_line[*dup],
                   path, line_no);
            goto done;
        }
        CHECK(b->n_merges < INT32_MAX, "too many merges");
        u64map_put_new(&b->ranks, pair_key(a, c), (uint32_t)b->n_merges);
        GROW(first_line, cap_first, (size_t)b->n_merges + 1);
        first_line[b->n_merges] = line_no;
        bpe_add_merge(b, a, c, r);
        p = next;
    }
    rc = 0;
done:
    free(cat);
    free(first_line);
    free(buf);
    return rc;
}

int bpe_load(Bpe **out, const char *dir, char *err) {
    *out = NULL;
    char path[PATH_MAX];
    struct stat st;
    if (stat(dir, &st) != 0)
        return cx_err(err, "cannot open tokenizer directory: %s (%s)", strerror(errno), dir);
    if (!S_ISDIR(st.st_mode)) return cx_err(err, "tokenizer path is not a directory (%s)", dir);
    Bpe *b = bpe_new();
    if (snprintf(path, sizeof path, "%s/vocab.json", dir) >= (int)sizeof path) {
        bpe_free(b);
        return cx_err(err, "path too long (%s)", dir);
    }
    if (load_vocab(b, path, err) != 0) {
        bpe_free(b);
        return -1;
    }
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    if (load_merges(b, path, err) != 0) {
        bpe_free(b);
        return -1;
    }
    bpe_finish(b);
    *out = b;
    return 0;
}
