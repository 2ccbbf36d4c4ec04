// test_tokens.c: join tokens stored hashed and identities bound to tokens (bridge/tokens.h),
// the bridge's TLS certificate and pins (bridge/tls.h). Reference values come from Python's
// hashlib and hmac (sha256(token), hmac(token, nonce, sha256)); the certificate's
// fingerprint is recomputed from its DER bytes here.
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bridge/tls.h"
#include "bridge/tokens.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

static char g_dir[256];
static const char TOK[] = "0123456789abcdef0123456789abcdef";
// python3: hashlib.sha256(b"0123456789abcdef0123456789abcdef").hexdigest()
static const char TOK_SHA256[] = "3eb1bd439947eb762998e566ccc2e099c791118b2f40579cc4f7da2b5061b7f9";

static void hex(const uint8_t *b, int n, char *out) {
    for (int i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *s = calloc(1, 1 << 16);
    fread(s, 1, (1 << 16) - 1, f);
    fclose(f);
    return s;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static void test_hash_reference(void) {
    uint8_t h[BR_TOKEN_HASH_BYTES];
    char got[2 * BR_TOKEN_HASH_BYTES + 1];
    br_token_hash(TOK, h);
    hex(h, BR_TOKEN_HASH_BYTES, got);
    CU_ASSERT_STRING_EQUAL(got, TOK_SHA256);
}

// An issued token is findable, and the file holds its hash only (mode 0600).
static void test_issue_stores_hash_only(void) {
    const char *path = tu_path(g_dir, "issue.txt");
    char tok[BR_TOKEN_CHARS + 1], tok2[BR_TOKEN_CHARS + 1], err[CX_ERRLEN];
    CU_ASSERT_EQUAL_FATAL(br_tokens_issue(path, "alice", tok, err), 0);
    CU_ASSERT_EQUAL_FATAL(br_tokens_issue(path, "bob", tok2, err), 0);
    CU_ASSERT_EQUAL(strlen(tok), BR_TOKEN_CHARS);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    char *text = slurp(path);
    CU_ASSERT_PTR_NULL(strstr(text, tok));
    CU_ASSERT_PTR_NULL(strstr(text, tok2));
    uint8_t h[BR_TOKEN_HASH_BYTES];
    char want[80] = "sha256:";
    br_token_hash(tok, h);
    hex(h, BR_TOKEN_HASH_BYTES, want + 7);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
    free(text);
    BrTokens t;
    CU_ASSERT_EQUAL_FATAL(br_tokens_load(path, &t, err), 0);
    CU_ASSERT_EQUAL(t.n, 2);
    CU_ASSERT_EQUAL(t.n_plain, 0);
    CU_ASSERT_EQUAL(br_tokens_find(&t, tok), 0);
    CU_ASSERT_EQUAL(br_tokens_find(&t, tok2), 1);
    CU_ASSERT_EQUAL(br_tokens_find(&t, TOK), -1);
    CU_ASSERT_EQUAL(br_tokens_find(&t, ""), -1);
    br_tokens_free(&t);
    // revocation by token and by name
    CU_ASSERT_EQUAL(br_tokens_revoke(path, tok, err), 1);
    CU_ASSERT_EQUAL(br_tokens_revoke(path, "bob", err), 1);
    CU_ASSERT_EQUAL(br_tokens_revoke(path, "bob", err), 0);
    CU_ASSERT_EQUAL_FATAL(br_tokens_load(path, &t, err), 0);
    CU_ASSERT_EQUAL(br_tokens_find(&t, tok), -1);
    CU_ASSERT_EQUAL(br_tokens_find(&t, tok2), -1);
    br_tokens_free(&t);
}

// An older file with the token itself: accepted and counted, then migrated to hashes.
static void test_plaintext_file_migrates(void) {
    const char *path = tu_path(g_dir, "old.txt");
    char line[200], err[CX_ERRLEN];
    snprintf(line, sizeof line, "# old format\n%s carol 1700000000\n", TOK);
    put(path, line);
    BrTokens t;
    CU_ASSERT_EQUAL_FATAL(br_tokens_load(path, &t, err), 0);
    CU_ASSERT_EQUAL(t.n_plain, 1);
    CU_ASSERT_EQUAL(br_tokens_find(&t, TOK), 0);
    br_tokens_free(&t);
    CU_ASSERT_EQUAL(br_tokens_migrate(path, err), 1);
    char *text = slurp(path);
    CU_ASSERT_PTR_NULL(strstr(text, TOK));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, TOK_SHA256));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, " carol 1700000000"));
    free(text);
    CU_ASSERT_EQUAL_FATAL(br_tokens_load(path, &t, err), 0);
    CU_ASSERT_EQUAL(t.n_plain, 0);
    CU_ASSERT_EQUAL(br_tokens_find(&t, TOK), 0);
    br_tokens_free(&t);
}

static void test_malformed_file(void) {
    const char *path = tu_path(g_dir, "bad.txt");
    char err[CX_ERRLEN];
    BrTokens t;
    put(path, "sha256:1234 dave 1\n");
    CU_ASSERT_EQUAL(br_tokens_load(path, &t, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad.txt:1: expected 'sha256:HASH(64 hex) NAME ISSUED [revoked]'"));
    CU_ASSERT_EQUAL(br_tokens_load(tu_path(g_dir, "missing.txt"), &t, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot open token file"));
}

static void test_volunteer_token_file(void) {
    const char *path = tu_path(g_dir, "alice.token");
    char tok[BR_TOKEN_CHARS + 1], err[CX_ERRLEN];
    CU_ASSERT_EQUAL_FATAL(br_token_write_file(path, TOK, err), 0);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(br_token_read_file(path, tok, err), 0);
    CU_ASSERT_STRING_EQUAL(tok, TOK);
    put(path, "# comment\n\n  0123456789abcdef0123456789abcdef  \n");
    CU_ASSERT_EQUAL(br_token_read_file(path, tok, err), 0);
    CU_ASSERT_STRING_EQUAL(tok, TOK);
    put(path, "not-a-token\n");
    CU_ASSERT_EQUAL(br_token_read_file(path, tok, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not hold a join token (32 lowercase hex digits)"));
    put(path, "");
    CU_ASSERT_EQUAL(br_token_read_file(path, tok, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "is empty"));
}

// identity = nonce || HMAC-SHA256(token, nonce)[:8]
static void test_identity_binding(void) {
    // python3: hmac.new(TOK, bytes(range(1, 9)), hashlib.sha256).hexdigest()[:16]
    BrIdentity ref = {{1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0x90, 0xab, 0x80, 0x19, 0xaa, 0xcc, 0x70}};
    CU_ASSERT_TRUE(br_identity_check(TOK, &ref));
    const char *other = "ffffffffffffffffffffffffffffffff";
    CU_ASSERT_FALSE(br_identity_check(other, &ref));
    for (int bit = 0; bit < 128; bit += 9) {  // any flipped bit, nonce or tag, is refused
        BrIdentity x = ref;
        x.bytes[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CU_ASSERT_FALSE(br_identity_check(TOK, &x));
    }
    BrIdentity zero = {{0}};
    CU_ASSERT_FALSE(br_identity_check(TOK, &zero));
    char err[CX_ERRLEN];
    BrIdentity a, b;
    CU_ASSERT_EQUAL_FATAL(br_identity_new(TOK, &a, err), 0);
    CU_ASSERT_EQUAL_FATAL(br_identity_new(TOK, &b, err), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a.bytes, b.bytes, 16), 0);  // fresh nonces
    CU_ASSERT_TRUE(br_identity_check(TOK, &a));
    CU_ASSERT_TRUE(br_identity_check(TOK, &b));
    CU_ASSERT_FALSE(br_identity_check(other, &a));
}

// The certificate is made once and kept (same fingerprint on reload; key mode 0600); its
// fingerprint is the SHA-256 of its DER form; pins parse in either case.
static void test_certificate_and_pin(void) {
    char cert[512], key[512], fp[BR_TLS_FP_CHARS + 1], fp2[BR_TLS_FP_CHARS + 1], err[CX_ERRLEN];
    br_tls_default_paths(tu_path(g_dir, "tokens.txt"), cert, key, sizeof cert);
    CU_ASSERT_STRING_EQUAL(cert + strlen(cert) - 19, "tokens.txt.cert.pem");
    CU_ASSERT_EQUAL(br_tls_load_or_make(cert, key, 0, fp, err), -1);  // absent, not made
    CU_ASSERT_EQUAL_FATAL(br_tls_load_or_make(cert, key, 1, fp, err), 0);
    CU_ASSERT_EQUAL(strlen(fp), BR_TLS_FP_CHARS);
    struct stat st;
    CU_ASSERT_EQUAL(stat(key, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL_FATAL(br_tls_load_or_make(cert, key, 1, fp2, err), 0);
    CU_ASSERT_STRING_EQUAL(fp, fp2);  // kept, not regenerated
    char cmd[1200], line[128] = "";
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s -outform DER 2>/dev/null | sha256sum", cert);
    FILE *p = popen(cmd, "r");
    if (p && fgets(line, sizeof line, p)) {
        line[BR_TLS_FP_CHARS] = 0;
        CU_ASSERT_STRING_EQUAL(line, fp);
    } else {
        CU_FAIL("openssl x509 | sha256sum gave nothing");
    }
    if (p) pclose(p);
    struct ssl_ctx_st *ctx = br_tls_server_ctx(cert, key, err);
    CU_ASSERT_PTR_NOT_NULL(ctx);
    br_tls_ctx_free(ctx);
    char pin[BR_TLS_FP_CHARS + 1], upper[80] = "sha256:";
    for (int i = 0; i < BR_TLS_FP_CHARS; i++)
        upper[7 + i] = (char)(fp[i] >= 'a' ? fp[i] - 'a' + 'A' : fp[i]);
    upper[7 + BR_TLS_FP_CHARS] = 0;
    CU_ASSERT_EQUAL(br_tls_parse_pin(upper, pin, err), 0);
    CU_ASSERT_STRING_EQUAL(pin, fp);
    CU_ASSERT_EQUAL(br_tls_parse_pin(fp, pin, err), -1);  // no "sha256:"
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "must read sha256:HEX"));
    CU_ASSERT_EQUAL(br_tls_parse_pin("sha256:abcd", pin, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "has 4 hex digits, a SHA-256 fingerprint 64"));
    // a lone certificate (its key removed) is an error, not a silent new pair
    CU_ASSERT_EQUAL(unlink(key), 0);
    CU_ASSERT_EQUAL(br_tls_load_or_make(cert, key, 1, fp2, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "exists but"));
}

int main(void) {
    if (tu_make_tmpdir(g_dir, sizeof g_dir, "conflux-tokens-") != 0) return 1;
    static const TuTest tests[] = {
        {"SHA-256 of a token (hashlib reference)", test_hash_reference},
        {"issue stores hashes only; find, revoke", test_issue_stores_hash_only},
        {"plaintext file accepted, then migrated", test_plaintext_file_migrates},
        {"malformed and missing files", test_malformed_file},
        {"volunteer token file", test_volunteer_token_file},
        {"identity bound by HMAC (hmac reference)", test_identity_binding},
        {"certificate kept, fingerprint, pins", test_certificate_and_pin},
    };
    int rc = tu_run_suite("tokens", tests, sizeof tests / sizeof tests[0]);
    tu_rm_tree(g_dir);
    return rc;
}
