// datafile.c: SHA-256 of the training data (see datafile.h).
#include "bridge/datafile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "models/common.h"

struct BrSha256 {
    EVP_MD_CTX *ctx;
};

BrSha256 *br_sha256_new(void) {
    BrSha256 *h = cx_calloc(1, sizeof *h);
    h->ctx = EVP_MD_CTX_new();
    CHECK(h->ctx && EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) == 1, "cannot start a SHA-256");
    return h;
}

void br_sha256_update(BrSha256 *h, const void *data, size_t n) {
    CHECK(EVP_DigestUpdate(h->ctx, data, n) == 1, "SHA-256 update failed");
}

void br_sha256_final(BrSha256 *h, uint8_t out[BR_SHA256_BYTES]) {
    unsigned n = 0;
    CHECK(EVP_DigestFinal_ex(h->ctx, out, &n) == 1 && n == BR_SHA256_BYTES, "SHA-256 final failed");
    CHECK(EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) == 1, "cannot restart a SHA-256");
}

void br_sha256_free(BrSha256 *h) {
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int br_sha256_file(const char *path, uint64_t limit, BrSha256 *h, uint64_t *n_bytes, char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cx_err(err, "cannot read %s: %s", path, strerror(errno));
    enum { PIECE = 1 << 20 };
    uint8_t *buf = malloc(PIECE);
    CHECK(buf, "out of memory");
    uint64_t n = 0;
    int rc = 0;
    while (n < limit) {
        size_t want = limit - n < PIECE ? (size_t)(limit - n) : PIECE;
        size_t got = fread(buf, 1, want, f);
        if (got > 0) br_sha256_update(h, buf, got);
        n += got;
        if (got < want) {
            if (ferror(f)) rc = cx_err(err, "cannot read %s at byte %llu: %s", path,
                                       (unsigned long long)n, strerror(errno));
            break;
        }
    }
    free(buf);
    fclose(f);
    *n_bytes = n;
    return rc;
}

char *br_sha256_hex(const uint8_t hash[BR_SHA256_BYTES], char *out) {
    for (int i = 0; i < BR_SHA256_BYTES; i++) sprintf(out + 2 * i, "%02x", hash[i]);
    out[BR_SHA256_HEX] = 0;
    return out;
}
