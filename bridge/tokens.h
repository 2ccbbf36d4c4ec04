// tokens.h: join tokens of a collaboration, kept in a text file the host manages.
//
// One token per line: `sha256:HASH NAME ISSUED_UNIX_TIME [revoked]`; '#' starts a comment
// line. A token is 32 lowercase hex digits from /dev/urandom, handed to its volunteer once
// (`conflux-bridge token issue`); the file keeps only HASH, the SHA-256 of the token's 32
// characters (64 hex digits), so a copy of the file lets nobody join. NAME is the
// volunteer's label (no spaces). The file is mode 0600. The bridge re-reads it when it
// changes, so a revocation takes effect on a running bridge (connected volunteers holding
// that token are dropped); a token file that becomes unreadable or malformed fails closed.
//
// Older files hold the token itself (`TOKEN NAME ISSUED [revoked]`): still accepted (the
// bridge warns), and rewritten hashed by any `token issue|revoke|migrate`.
//
// Identities are bound to tokens: a volunteer identity is an 8-byte nonce followed by the
// first 8 bytes of HMAC-SHA256(token, nonce). Only the holder of the token can make or
// present a valid one, so an identity seen elsewhere (volunteers.csv, the log) cannot be
// resumed under another token, on this bridge run or a later one.
#ifndef CONFLUX_BRIDGE_TOKENS_H
#define CONFLUX_BRIDGE_TOKENS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "bridge/proto.h"

#define BR_TOKEN_CHARS 32
#define BR_TOKEN_NAME_MAX 64
#define BR_TOKEN_HASH_BYTES 32

typedef struct {
    uint8_t hash[BR_TOKEN_HASH_BYTES];  // SHA-256 of the token
    char name[BR_TOKEN_NAME_MAX + 1];
    long issued;
    int revoked;
} BrToken;

typedef struct {
    BrToken *items;
    int n;
    int n_plain;  // entries in the old plaintext form
} BrTokens;

// SHA-256 of a token string (its characters, no terminator).
void br_token_hash(const char *tok, uint8_t hash[BR_TOKEN_HASH_BYTES]);

// Reads the file (a missing file is an error). Returns 0, or -1 with err naming the file
// and line of the first malformed entry.
int br_tokens_load(const char *path, BrTokens *t, char *err);
void br_tokens_free(BrTokens *t);

// Index of the valid (not revoked) entry whose token equals tok, else -1 (by hash;
// br_tokens_find_hash for a hash). The comparison takes the same time wherever the first
// difference is.
int br_tokens_find(const BrTokens *t, const char *tok);
int br_tokens_find_hash(const BrTokens *t, const uint8_t hash[BR_TOKEN_HASH_BYTES]);

// Adds a new token for name (the file is created mode 0600 when absent, and rewritten
// hashed). Writes the token into out (BR_TOKEN_CHARS + 1 bytes): the only copy. Returns 0,
// or -1 with err.
int br_tokens_issue(const char *path, const char *name, char *out, char *err);

// Marks every entry whose token or name equals what as revoked (atomic rewrite). Returns
// the number revoked (0: none matched), or -1 with err.
int br_tokens_revoke(const char *path, const char *what, char *err);

// Rewrites the file with every entry hashed (atomic). Returns the number of plaintext
// entries converted, or -1 with err.
int br_tokens_migrate(const char *path, char *err);

// Reads a volunteer's token file: the token on its first line (32 hex digits; blank lines
// and '#' comments skipped). 0, or -1 with err naming the file.
int br_token_read_file(const char *path, char *out, char *err);
// Writes tok to path, mode 0600 (replacing it). 0, or -1 with err.
int br_token_write_file(const char *path, const char *tok, char *err);

// A new identity bound to tok (a fresh random nonce). 0, or -1 with err.
int br_identity_new(const char *tok, BrIdentity *id, char *err);
// 1 when id was made by br_identity_new with the same tok, else 0 (constant time).
int br_identity_check(const char *tok, const BrIdentity *id);

#endif
