// tls.h: TLS 1.3 for the volunteer port (OpenSSL, Debian's libssl-dev), in one place.
//
// The bridge holds a self-signed certificate (EC P-256), generated once and kept next to
// the token file (TOKENS.cert.pem, TOKENS.key.pem mode 0600) so that it survives restarts
// and requeues, or given with --tls-cert/--tls-key. Volunteers do not use certificate
// authorities: they pin the SHA-256 fingerprint of the certificate (DER), which travels in
// the join string, HOST:PORT#sha256:HEX. Both sides speak TLS 1.3 only.
//
//   bridge    br_tls_load_or_make (certificate + fingerprint), br_tls_server_ctx,
//             br_tls_bufferevent (a libevent bufferevent that accepts a TLS connection)
//   volunteer br_tls_client_start on a connected socket (handshake, pin check), then
//             br_tls_read / br_tls_write (non-blocking or blocking sockets alike),
//             br_tls_close. Test tools use the same calls on a blocking socket.
#ifndef CONFLUX_BRIDGE_TLS_H
#define CONFLUX_BRIDGE_TLS_H

#include <stddef.h>
#include <sys/types.h>

#define BR_TLS_FP_CHARS 64  // hex digits of a SHA-256 fingerprint

struct ssl_ctx_st;
struct bufferevent;
struct event_base;

// The default certificate and key paths for a token file: TOKENS.cert.pem, TOKENS.key.pem.
void br_tls_default_paths(const char *tokens_path, char *cert, char *key, size_t size);

// Loads the certificate and key, or (make = 1 and neither file exists) generates a
// self-signed EC P-256 pair first (key written mode 0600, both atomically). fp receives
// the certificate's fingerprint (BR_TLS_FP_CHARS + 1 bytes, lowercase hex). 0, or -1 with
// err naming the file.
int br_tls_load_or_make(const char *cert, const char *key, int make, char *fp, char *err);

// A TLS 1.3-only server context with the certificate and key. NULL with err.
struct ssl_ctx_st *br_tls_server_ctx(const char *cert, const char *key, char *err);
void br_tls_ctx_free(struct ssl_ctx_st *ctx);

// A bufferevent that runs the server side of a TLS handshake on the accepted socket fd and
// then carries the connection (closes fd and frees its SSL when freed). NULL on failure.
struct bufferevent *br_tls_bufferevent(struct event_base *base, struct ssl_ctx_st *ctx, int fd);
// Sends close_notify on a TLS bufferevent (nothing for a plain one); before shutdown(SHUT_WR).
void br_tls_bufferevent_shutdown(struct bufferevent *bev);
// The OpenSSL error behind a TLS bufferevent's error event, as text into buf ("" if none).
void br_tls_bufferevent_error(struct bufferevent *bev, char *buf, size_t size);

// Parses "sha256:HEX" (64 hex digits, either case) into lowercase hex fp. 0, or -1 with err.
int br_tls_parse_pin(const char *s, char *fp, char *err);

// ---- the client side ----
typedef struct BrTls BrTls;

// The client side of the handshake on the connected socket fd (blocking or not; waits at
// most timeout_s), then checks the certificate's fingerprint against pin (lowercase hex).
// NULL with err: a mismatch names both fingerprints; a plaintext bridge is named as such.
// *pin_mismatch (may be NULL) is set to 1 when the handshake worked but the certificate is
// not the pinned one, else 0.
BrTls *br_tls_client_start(int fd, const char *pin, double timeout_s, int *pin_mismatch,
                           char *err);
// >0 bytes moved; 0: the peer closed; -1: errno EAGAIN (would block: poll and retry with
// the same arguments, or more) or another error (errno EIO, the message in br_tls_error).
ssize_t br_tls_read(BrTls *t, void *buf, size_t n);
ssize_t br_tls_write(BrTls *t, const void *buf, size_t n);
// Bytes already decrypted and waiting (poll on the socket does not see them).
size_t br_tls_pending(const BrTls *t);
const char *br_tls_error(const BrTls *t);
// Sends close_notify (best effort) and frees t; the socket stays open (the caller's).
void br_tls_close(BrTls *t);

#endif
