// tokens.c: join-token file (see tokens.h).
#include "bridge/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/common.h"

static int valid_token(const char *s) {
    if (strlen(s) != BR_TOKEN_CHARS) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
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
        if (n < 3 || !valid_token(tok) || !valid_name(name) || (n == 4 && strcmp(flag, "revoked"))) {
            fclose(f);
            br_tokens_free(t);
            return cx_err(err, "%s:%d: expected 'TOKEN(32 hex) NAME ISSUED [revoked]'", path, lineno);
        }
        // lengths checked above (valid_token, valid_name); the precision says so to the compiler
        snprintf(e.token, sizeof e.token, "%.*s", BR_TOKEN_CHARS, tok);
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

int br_tokens_find(const BrTokens *t, const char *tok) {
    size_t n = strlen(tok);
    int found = -1;
    for (int i = 0; i < t->n; i++) {
        unsigned diff = n != BR_TOKEN_CHARS;
        for (size_t k = 0; k < BR_TOKEN_CHARS; k++)
            diff |= (unsigned char)t->items[i].token[k] ^ (unsigned char)(k < n ? tok[k] : 0);
        if (!diff && !t->items[i].revoked) found = i;
    }
    return found;
}

int br_tokens_issue(const char *path, const char *name, char *out, char *err) {
    if (!valid_name(name))
        return cx_err(err, "token name '%s' must be 1..%d characters without spaces", name,
                      BR_TOKEN_NAME_MAX);
    unsigned char raw[BR_TOKEN_CHARS / 2];
    int r = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (r < 0 || read(r, raw, sizeof raw) != (ssize_t)sizeof raw) {
        if (r >= 0) close(r);
        return cx_err(err, "cannot read /dev/urandom: %s", strerror(errno));
    }
    close(r);
    for (size_t i = 0; i < sizeof raw; i++) sprintf(out + 2 * i, "%02x", raw[i]);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return cx_err(err, "cannot open token file %s: %s", path, strerror(errno));
    char line[256];
    int len = snprintf(line, sizeof line, "%s %s %ld\n", out, name, (long)time(NULL));
    int ok = write(fd, line, (size_t)len) == len;
    if (close(fd) != 0) ok = 0;
    if (!ok) return cx_err(err, "cannot write token file %s: %s", path, strerror(errno));
    return 0;
}

int br_tokens_revoke(const char *path, const char *what, char *err) {
    BrTokens t;
    if (br_tokens_load(path, &t, err) != 0) return -1;
    int hits = 0;
    for (int i = 0; i < t.n; i++)
        if (!t.items[i].revoked && (!strcmp(t.items[i].token, what) || !strcmp(t.items[i].name, what))) {
            t.items[i].revoked = 1;
            hits++;
        }
    if (hits == 0) {
        br_tokens_free(&t);
        return 0;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        br_tokens_free(&t);
        return cx_err(err, "cannot write %s: %s", tmp, strerror(errno));
    }
    fprintf(f, "# conflux join tokens: TOKEN NAME ISSUED [revoked]\n");
    for (int i = 0; i < t.n; i++)
        fprintf(f, "%s %s %ld%s\n", t.items[i].token, t.items[i].name, t.items[i].issued,
                t.items[i].revoked ? " revoked" : "");
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = 0;
    br_tokens_free(&t);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return cx_err(err, "cannot replace %s: %s", path, strerror(errno));
    }
    return hits;
}
