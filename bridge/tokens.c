// tokens.c: join-token file, hashed tokens, and identities bound to tokens (see tokens.h).
#include "bridge/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "models/common.h"

#define HASH_PREFIX "sha256:"

static int valid_token(const char *s) {
    if (strlen(s) != BR_TOKEN_CHARS) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

// "sha256:" + 64 lowercase hex digits into hash.
static int parse_hash(const char *s, uint8_t *hash) {
    if (strncmp(s, HASH_PREFIX, 7) != 0 || strlen(s + 7) != 2 * BR_TOKEN_HASH_BYTES) return 0;
    for (int i = 0; i < BR_TOKEN_HASH_BYTES; i++) {
        unsigned v;
        const char *h = s + 7 + 2 * i;
        for (int k = 0; k < 2; k++)
            if (!((h[k] >= '0' && h[k] <= '9') || (h[k] >= 'a' && h[k] <= 'f'))) return 0;
        if (sscanf(h, "%2x", &v) != 1) return 0;
        hash[i] = (uint8_t)v;
    }
    return 1;
}

void br_token_hash(const char *tok, uint8_t hash[BR_TOKEN_HASH_BYTES]) {
    unsigned int n = 0;
    CHECK(EVP_Digest(tok, strlen(tok), hash, &n, EVP_sha256(), NULL) == 1 && n == BR_TOKEN_HASH_BYTES,
          "SHA-256 failed");
}

static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > BR_TOKEN_NAME_MAX) return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return 0;
    return 1;
}

int br_tokens_load(const char *path, BrTokens *t, char *err) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) return cx_err(err, "cannot open token file %s: %s", path, strerror(errno));
    char line[512];
    int lineno = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            fclose(f);
            br_tokens_free(t);
            return cx_err(err, "%s:%d: line too long", path, lineno);
        }
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == 0) continue;
        BrToken e = {0};
        char tok[128] = "", name[128] = "", flag[32] = "";
        int n = sscanf(p, "%127s %127s %ld %31s", tok, name, &e.issued, flag);
        int hashed = parse_hash(tok, e.hash), plain = !hashed && valid_token(tok);
        if (n < 3 || (!hashed && !plain) || !valid_name(name) || (n == 4 && strcmp(flag, "revoked"))) {
            fclose(f);
            br_tokens_free(t);
            return cx_err(err, "%s:%d: expected 'sha256:HASH(64 hex) NAME ISSUED [revoked]'", path, lineno);
        }
        if (plain) {  // an older file: the token itself
            br_token_hash(tok, e.hash);
            t->n_plain++;
        }
        // length checked above (valid_name); the precision says so to the compiler
        snprintf(e.name, sizeof e.name, "%.*s", BR_TOKEN_NAME_MAX, name);
        e.revoked = n == 4;
        if (t->n == cap) {
            cap = cap ? 2 * cap : 16;
            BrToken *grown = realloc(t->items, (size_t)cap * sizeof *grown);
            if (!grown) {
                fclose(f);
                br_tokens_free(t);
                return cx_err(err, "out of memory reading %s", path);
            }
            t->items = grown;
        }
        t->items[t->n++] = e;
    }
    fclose(f);
    return 0;
}

void br_tokens_free(BrTokens *t) {
    free(t->items);
    t->items = NULL;
    t->n = 0;
}

int br_tokens_find_hash(const BrTokens *t, const uint8_t hash[BR_TOKEN_HASH_BYTES]) {
    int found = -1;
    for (int i = 0; i < t->n; i++)
        if (!CRYPTO_memcmp(t->items[i].hash, hash, BR_TOKEN_HASH_BYTES) && !t->items[i].revoked) found = i;
    return found;
}

int br_tokens_find(const BrTokens *t, const char *tok) {
    uint8_t hash[BR_TOKEN_HASH_BYTES];
    br_token_hash(tok, hash);
    return br_tokens_find_hash(t, hash);
}

// Replaces path with t's entries, hashed (temporary file, fsync, rename; mode 0600).
static int tokens_write(const char *path, const BrTokens *t, char *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return cx_err(err, "cannot write %s: %s", tmp, strerror(errno));
    }
    fprintf(f, "# conflux join tokens: sha256:HASH NAME ISSUED [revoked] (hashes only; tokens "
               "are handed out once by 'conflux-bridge token issue')\n");
    for (int i = 0; i < t->n; i++) {
        fputs(HASH_PREFIX, f);
        for (int k = 0; k < BR_TOKEN_HASH_BYTES; k++) fprintf(f, "%02x", t->items[i].hash[k]);
        fprintf(f, " %s %ld%s\n", t->items[i].name, t->items[i].issued, t->items[i].revoked ? " revoked" : "");
    }
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return cx_err(err, "cannot replace %s: %s", path, strerror(errno));
    }
    return 0;
}

// getrandom needs no descriptor: a bridge out of them still takes volunteers
static int random_bytes(uint8_t *out, size_t n, char *err) {
    if (getrandom(out, n, 0) != (ssize_t)n) return cx_err(err, "getrandom failed: %s", strerror(errno));
    return 0;
}

int br_tokens_issue(const char *path, const char *name, char *out, char *err) {
    if (!valid_name(name))
        return cx_err(err, "token name '%s' must be 1..%d characters without spaces", name,
                      BR_TOKEN_NAME_MAX);
    unsigned char raw[BR_TOKEN_CHARS / 2];
    if (random_bytes(raw, sizeof raw, err) != 0) return -1;
    for (size_t i = 0; i < sizeof raw; i++) sprintf(out + 2 * i, "%02x", raw[i]);
    BrTokens t = {0};
    if (access(path, F_OK) == 0 && br_tokens_load(path, &t, err) != 0) return -1;
    BrToken *grown = realloc(t.items, (size_t)(t.n + 1) * sizeof *grown);
    if (!grown) {
        br_tokens_free(&t);
        return cx_err(err, "out of memory");
    }
    t.items = grown;
    BrToken *e = &t.items[t.n++];
    memset(e, 0, sizeof *e);
    br_token_hash(out, e->hash);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->issued = (long)time(NULL);
    int rc = tokens_write(path, &t, err);
    br_tokens_free(&t);
    return rc;
}

int br_tokens_revoke(const char *path, const char *what, char *err) {
    BrTokens t;
    if (br_tokens_load(path, &t, err) != 0) return -1;
    uint8_t hash[BR_TOKEN_HASH_BYTES];
    br_token_hash(what, hash);
    int hits = 0;
    for (int i = 0; i < t.n; i++)
        if (!t.items[i].revoked &&
            (!memcmp(t.items[i].hash, hash, BR_TOKEN_HASH_BYTES) || !strcmp(t.items[i].name, what))) {
            t.items[i].revoked = 1;
            hits++;
        }
    int rc = hits > 0 ? tokens_write(path, &t, err) : 0;
    br_tokens_free(&t);
    return rc < 0 ? -1 : hits;
}

int br_tokens_migrate(const char *path, char *err) {
    BrTokens t;
    if (br_tokens_load(path, &t, err) != 0) return -1;
    int n = t.n_plain, rc = tokens_write(path, &t, err);
    br_tokens_free(&t);
    return rc < 0 ? -1 : n;
}

int br_token_read_file(const char *path, char *out, char *err) {
    FILE *f = fopen(path, "r");
    if (!f) return cx_err(err, "cannot open token file %s: %s", path, strerror(errno));
    char line[256];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == 0) continue;
        size_t n = strcspn(p, " \t\r\n");
        p[n] = 0;
        if (!valid_token(p)) {
            fclose(f);
            return cx_err(err, "%s does not hold a join token (32 lowercase hex digits)", path);
        }
        memcpy(out, p, BR_TOKEN_CHARS + 1);
        found = 1;
    }
    fclose(f);
    return found ? 0 : cx_err(err, "%s is empty: it should hold a join token", path);
}

int br_token_write_file(const char *path, const char *tok, char *err) {
    unlink(path);  // a new file, so the mode below applies
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return cx_err(err, "cannot create %s: %s", path, strerror(errno));
    char line[BR_TOKEN_CHARS + 2];
    int len = snprintf(line, sizeof line, "%s\n", tok);
    int ok = write(fd, line, (size_t)len) == len;
    if (close(fd) != 0) ok = 0;
    return ok ? 0 : cx_err(err, "cannot write %s: %s", path, strerror(errno));
}

// The identity's tag: HMAC-SHA256(token, nonce), first 8 bytes, into id->bytes[8..16).
static void identity_tag(const char *tok, const uint8_t nonce[8], uint8_t tag[8]) {
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    CHECK(HMAC(EVP_sha256(), tok, (int)strlen(tok), nonce, 8, mac, &n) != NULL && n >= 8, "HMAC failed");
    memcpy(tag, mac, 8);
}

int br_identity_new(const char *tok, BrIdentity *id, char *err) {
    if (random_bytes(id->bytes, 8, err) != 0) return -1;
    identity_tag(tok, id->bytes, id->bytes + 8);
    return 0;
}

int br_identity_check(const char *tok, const BrIdentity *id) {
    uint8_t tag[8];
    identity_tag(tok, id->bytes, tag);
    return CRYPTO_memcmp(tag, id->bytes + 8, 8) == 0;
}
