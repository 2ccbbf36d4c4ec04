// tls.c: TLS 1.3 for the volunteer port: the bridge's certificate, the server context and
// bufferevent, the pinned client (see tls.h).
#include "bridge/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "models/common.h"
#include "models/train.h"

// The reason of the oldest queued OpenSSL error ("unknown" when none), and clears the queue.
static const char *ssl_reason(void) {
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown";
}

void br_tls_default_paths(const char *tokens_path, char *cert, char *key, size_t size) {
    snprintf(cert, size, "%s.cert.pem", tokens_path);
    snprintf(key, size, "%s.key.pem", tokens_path);
}

static void fingerprint_hex(X509 *x, char *fp) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509_digest(x, EVP_sha256(), md, &n);
    for (unsigned i = 0; i < n && i < BR_TLS_FP_CHARS / 2; i++) sprintf(fp + 2 * i, "%02x", md[i]);
    fp[BR_TLS_FP_CHARS] = 0;
}

// Writes a PEM file atomically (temporary file, fsync, rename) with mode.
static int write_pem(const char *path, int mode, EVP_PKEY *key, X509 *x, char *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return cx_err(err, "cannot write %s: %s", tmp, strerror(errno));
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_X509(f, x);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return cx_err(err, "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

// A self-signed EC P-256 certificate (CN conflux-bridge, 10 years) and its key.
static int make_cert(const char *cert, const char *key, char *err) {
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    int rc = -1;
    if (!pkey || !x || !serial || !BN_rand(serial, 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) || !X509_set_version(x, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) || !X509_set_pubkey(x, pkey)) {
        cx_err(err, "cannot generate a TLS certificate: %s", ssl_reason());
        goto done;
    }
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"conflux-bridge",
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_sign(x, pkey, EVP_sha256())) {
        cx_err(err, "cannot sign a TLS certificate: %s", ssl_reason());
        goto done;
    }
    // the key first: a certificate without its key is never left behind
    if (write_pem(key, 0600, pkey, NULL, err) != 0) goto done;
    if (write_pem(cert, 0644, NULL, x, err) != 0) {
        unlink(key);
        goto done;
    }
    rc = 0;
done:
    BN_free(serial);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

int br_tls_load_or_make(const char *cert, const char *key, int make, char *fp, char *err) {
    int have_cert = access(cert, F_OK) == 0, have_key = access(key, F_OK) == 0;
    if (make && !have_cert && !have_key && make_cert(cert, key, err) != 0) return -1;
    if (!make && (!have_cert || !have_key))
        return cx_err(err, "no TLS certificate %s and key %s", cert, key);
    if (have_cert != have_key && (have_cert || have_key))
        return cx_err(err, "TLS %s exists but %s does not (remove it to generate a new pair; "
                      "volunteers then need the new fingerprint)", have_cert ? cert : key,
                      have_cert ? key : cert);
    FILE *f = fopen(cert, "r");
    if (!f) return cx_err(err, "cannot open TLS certificate %s: %s", cert, strerror(errno));
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) return cx_err(err, "%s is not a PEM certificate: %s", cert, ssl_reason());
    fingerprint_hex(x, fp);
    X509_free(x);
    struct stat st;
    if (strcmp(cert, key) != 0 && stat(key, &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "conflux: warning: TLS key %s is readable by others (mode %03o); chmod 600 it\n",
                key, (unsigned)(st.st_mode & 0777));
    return 0;
}

struct ssl_ctx_st *br_tls_server_ctx(const char *cert, const char *key, char *err) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        cx_err(err, "cannot create a TLS context: %s", ssl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(ctx, 0);  // no resumption: every join is a full handshake
    if (SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1) {
        cx_err(err, "TLS certificate %s: %s", cert, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        cx_err(err, "TLS key %s (for %s): %s", key, cert, ssl_reason());
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void br_tls_ctx_free(struct ssl_ctx_st *ctx) { SSL_CTX_free(ctx); }

struct bufferevent *br_tls_bufferevent(struct event_base *base, struct ssl_ctx_st *ctx, int fd) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    // a peer that closes its socket without close_notify has left, not attacked
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void br_tls_bufferevent_shutdown(struct bufferevent *bev) {
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl && SSL_is_init_finished(ssl)) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
}

void br_tls_bufferevent_error(struct bufferevent *bev, char *buf, size_t size) {
    buf[0] = 0;
    if (!bufferevent_openssl_get_ssl(bev)) return;
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, size, "%s", r ? r : "unknown TLS error");
    }
    while (bufferevent_get_openssl_error(bev)) {}
}

int br_tls_parse_pin(const char *s, char *fp, char *err) {
    if (strncmp(s, "sha256:", 7) != 0)
        return cx_err(err, "certificate pin '%.80s' must read sha256:HEX", s);
    s += 7;
    size_t n = strlen(s);
    if (n != BR_TLS_FP_CHARS)
        return cx_err(err, "certificate pin has %zu hex digits, a SHA-256 fingerprint %d", n, BR_TLS_FP_CHARS);
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'F') ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return cx_err(err, "certificate pin: '%c' is not a hex digit", s[i]);
        fp[i] = ch;
    }
    fp[n] = 0;
    return 0;
}

// ---- client ----

struct BrTls {
    SSL_CTX *ctx;
    SSL *ssl;
    char err[256];
};

// Waits for fd to become readable (want_read) or writable until t_end. 0, or -1 on timeout.
static int wait_fd(int fd, int want_read, double t_end) {
    double left = t_end - cx_now();
    if (left <= 0) return -1;
    struct pollfd p = {.fd = fd, .events = want_read ? POLLIN : POLLOUT};
    poll(&p, 1, (int)(left * 1000) + 1);
    return 0;
}

BrTls *br_tls_client_start(int fd, const char *pin, double timeout_s, int *pin_mismatch,
                           char *err) {
    if (pin_mismatch) *pin_mismatch = 0;
    BrTls *t = cx_calloc(1, sizeof *t);
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx) {
        cx_err(err, "cannot create a TLS context: %s", ssl_reason());
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION);
    // no certificate authority vouches for a bridge: its fingerprint is checked below
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    t->ssl = SSL_new(t->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        cx_err(err, "cannot set up TLS: %s", ssl_reason());
        goto fail;
    }
    SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    double t_end = cx_now() + timeout_s;
    int rc = -1;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(t->ssl);
        if (r == 1) {
            rc = 0;
            break;
        }
        int e = SSL_get_error(t->ssl, r);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
            wait_fd(fd, e == SSL_ERROR_WANT_READ, t_end) == 0)
            continue;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            cx_err(err, "TLS handshake: no answer from the bridge for %.0f s", timeout_s);
        else if (e == SSL_ERROR_SSL) {
            unsigned long code = ERR_peek_error();
            const char *why = ssl_reason();
            int plain = ERR_GET_REASON(code) == SSL_R_WRONG_VERSION_NUMBER ||
                        ERR_GET_REASON(code) == SSL_R_PACKET_LENGTH_TOO_LONG;
            cx_err(err, "TLS handshake failed: %s%s", why,
                   plain ? " (the bridge does not speak TLS: a --plaintext bridge?)" : "");
        } else
            cx_err(err, "TLS handshake failed: the bridge closed the connection%s%s",
                   e == SSL_ERROR_SYSCALL && errno ? ": " : "", e == SSL_ERROR_SYSCALL && errno ? strerror(errno) : "");
        break;
    }
    fcntl(fd, F_SETFL, flags);
    if (rc != 0) goto fail;
    X509 *x = SSL_get1_peer_certificate(t->ssl);
    if (!x) {
        cx_err(err, "the bridge presented no TLS certificate");
        goto fail;
    }
    char fp[BR_TLS_FP_CHARS + 1];
    fingerprint_hex(x, fp);
    X509_free(x);
    if (strcmp(fp, pin) != 0) {
        if (pin_mismatch) *pin_mismatch = 1;
        cx_err(err, "TLS certificate fingerprint mismatch: the bridge presented sha256:%s but the "
               "join string pins sha256:%s (a different bridge, a new certificate, or someone in "
               "between); nothing was sent", fp, pin);
        SSL_shutdown(t->ssl);  // a clean close: the bridge sees a peer leave, not a failure
        ERR_clear_error();
        goto fail;
    }
    return t;
fail:
    if (t->ssl) SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    free(t);
    return NULL;
}

// Maps an SSL_read/SSL_write result r to the return convention of tls.h.
static ssize_t io_result(BrTls *t, int r) {
    if (r > 0) return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (errno == 0) return 0;
        snprintf(t->err, sizeof t->err, "%s", strerror(errno));
        return -1;
    }
    snprintf(t->err, sizeof t->err, "TLS: %s", ssl_reason());
    errno = EIO;
    return -1;
}

ssize_t br_tls_read(BrTls *t, void *buf, size_t n) {
    ERR_clear_error();
    errno = 0;
    return io_result(t, SSL_read(t->ssl, buf, n > INT_MAX ? INT_MAX : (int)n));
}

ssize_t br_tls_write(BrTls *t, const void *buf, size_t n) {
    ERR_clear_error();
    errno = 0;
    return io_result(t, SSL_write(t->ssl, buf, n > INT_MAX ? INT_MAX : (int)n));
}

size_t br_tls_pending(const BrTls *t) { return (size_t)SSL_pending(t->ssl); }

const char *br_tls_error(const BrTls *t) { return t->err[0] ? t->err : strerror(errno); }

void br_tls_close(BrTls *t) {
    if (!t) return;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    free(t);
}
