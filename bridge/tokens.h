// tokens.h: join tokens of a collaboration, kept in a text file the host manages.
//
// One token per line: `TOKEN NAME ISSUED_UNIX_TIME [revoked]`; '#' starts a comment line.
// TOKEN is 32 lowercase hex digits from /dev/urandom; NAME is the volunteer's label (no
// spaces). The file is created with mode 0600: it holds secrets. The bridge re-reads it
// when it changes, so a revocation takes effect on a running bridge (connected volunteers
// holding that token are dropped).
#ifndef CONFLUX_BRIDGE_TOKENS_H
#define CONFLUX_BRIDGE_TOKENS_H

#include <stddef.h>
#include <time.h>

#define BR_TOKEN_CHARS 32
#define BR_TOKEN_NAME_MAX 64

typedef struct {
    char token[BR_TOKEN_CHARS + 1];
    char name[BR_TOKEN_NAME_MAX + 1];
    long issued;
    int revoked;
} BrToken;

typedef struct {
    BrToken *items;
    int n;
} BrTokens;

// Reads the file (a missing file is an error). Returns 0, or -1 with err naming the file
// and line of the first malformed entry.
int br_tokens_load(const char *path, BrTokens *t, char *err);
void br_tokens_free(BrTokens *t);

// Index of the valid (not revoked) entry whose token equals tok, else -1. The comparison
// takes the same time wherever the first difference is.
int br_tokens_find(const BrTokens *t, const char *tok);

// Appends a new token for name (created with mode 0600 when absent). Writes it into out
// (BR_TOKEN_CHARS + 1 bytes). Returns 0, or -1 with err.
int br_tokens_issue(const char *path, const char *name, char *out, char *err);

// Marks every entry whose token or name equals what as revoked (atomic rewrite). Returns
// the number revoked (0: none matched), or -1 with err.
int br_tokens_revoke(const char *path, const char *what, char *err);

#endif
