// client.h: the volunteer side of the bridge, a communicator-like C API.
//
//   BrClient *c;  br_client_connect(&c, &o, NULL, err)   outbound TCP only (works behind NAT),
//                                                        TLS 1.3 pinned to the bridge's
//                                                        certificate, HELLO with the join
//                                                        token -> WELCOME
//   br_client_download_data(c, &have, ...)               the run's training data file
//                                                        (protocol 1.1), resumable, to a sink
//   br_client_download(c, buf, &have, err)               the state blob (bridge/state.h), in
//                                                        pipelined, resumable chunks
//   br_client_start(c, step, params, n, &samples_seen)   "I hold the state after step": the
//                                                        bridge replays the rounds since, then
//                                                        the link is live
//   tr.avg = br_client_averager(c)                       the Averager of models/train.h:
//       plan  waits for the round's ROUND_OPEN (checks the parameter hash; its share of the
//             global batch, possibly empty)
//       sum   uploads the share's gradient sum (fp16 with error feedback, or fp32, as
//             negotiated) and receives the round totals and the summed gradient (fp32)
//       -> "all-reduce with a deadline": the bridge decides what made it into the round
//       progress = br_client_pump (heartbeats and read-ahead during the backward)
//   br_client_leave(c)                                   BYE, then close
//
// One thread; blocking I/O with poll(). While it sends, it keeps reading (so neither side
// can deadlock on full buffers); br_client_pump (hook it into the backward pass) sends
// heartbeats and reads ahead while the volunteer computes. Every failure returns -1 with a
// message; br_client_error_code tells whether the bridge asked for a fresh state download
// (BR_ERR_STATE) or rejected the token (BR_ERR_AUTH), and br_client_bye_reason whether it
// ended the run (BR_BYE_SHUTDOWN).
#ifndef CONFLUX_BRIDGE_CLIENT_H
#define CONFLUX_BRIDGE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/proto.h"
#include "models/diloco.h"
#include "models/train.h"

typedef struct {
    const char *host;      // IPv4 address or host name of the bridge
    int port;
    const char *pin;       // the bridge's certificate fingerprint, 64 lowercase hex digits
                           // (bridge/tls.h): TLS 1.3 pinned to it; NULL: plaintext
    const char *token;     // join token
    const char *name;      // shown to the host (may be "")
    BrIdentity identity;   // nonzero: resume as this volunteer
    unsigned codecs;       // BR_CODEC_BIT mask offered (fp16 preferred by the bridge)
    double timeout_s;      // the bridge silent this long (while we wait for it) is a failure
    const char *tcp_cc;    // TCP congestion control for the upload (NULL/"": system default)
    double connect_timeout_s;  // TCP connect at most this long (0: timeout_s)
    double max_upload_rate;    // bytes per second sent at most (a token bucket over everything
                               // sent, i.e. the GRAD_CHUNK uploads; 0: no limit)
} BrClientOptions;

// Why br_client_connect failed (conflux-volunteer --check exits with a code per class).
typedef enum {
    BR_CONNECT_OK = 0,
    BR_CONNECT_OTHER,        // anything else (a broken stream, out of memory, ...)
    BR_CONNECT_UNREACHABLE,  // cannot resolve, connection refused, no answer
    BR_CONNECT_TLS,          // TLS handshake failed (e.g. a --plaintext bridge), or the
                             // bridge needs TLS and this client spoke plaintext
    BR_CONNECT_PIN,          // the bridge's certificate is not the pinned one
    BR_CONNECT_AUTH,         // ERROR BR_ERR_AUTH: the join token was refused
    BR_CONNECT_VERSION,      // another protocol version (the bridge's ERROR or its frames)
    BR_CONNECT_BUSY,         // ERROR BR_ERR_BUSY: full, shutting down, tokens unavailable
} BrConnectFailure;

typedef struct {
    double bytes_sent, bytes_recv;   // on the wire, whole session
    long rounds, shares;             // rounds applied; rounds with a share of samples
    uint64_t samples, accepted;      // samples computed; samples the bridge accepted on time
    double up_s, up_bytes;           // last upload: seconds from first byte to last, bytes
    double down_s, down_bytes;       // last result download (ROUND_CLOSE to last AVG_CHUNK)
    double down_steady_s, down_steady_bytes;  // the same after its first AVG_CHUNK arrived
                                     // (steady-state rate, as the bridge times uploads)
    double compute_s;                // last share: plan to upload start
    double round_s;                  // last round: ROUND_OPEN received to the result applied
} BrClientStats;

typedef struct BrClient BrClient;

// Connects and authenticates. Returns 0, or -1 with err (connection refused, bad token,
// version mismatch, ...); *failure (may be NULL) receives a BrConnectFailure (BR_CONNECT_OK
// on success).
// The messages: "cannot reach the bridge at HOST:PORT: connection refused (...)" / ": no
// answer within N s (...)", "the bridge refused the join token: MESSAGE (...)", "TLS
// certificate fingerprint mismatch: ...", "the bridge speaks protocol version N.x and this
// conflux-volunteer 1.0 (...)" or "the bridge refused this volunteer's protocol version:
// MESSAGE (...)", "the bridge is busy: MESSAGE (...)".
int br_client_connect(BrClient **out, const BrClientOptions *o, int *failure, char *err);

const BrWelcome *br_client_welcome(const BrClient *c);
// The protocol minor version of the bridge (of its WELCOME frame): 0 means a 1.0 bridge,
// which neither states the training data's hash nor serves it.
int br_client_bridge_minor(const BrClient *c);

// Downloads the run's training data file (br_client_welcome(c)->data_bytes bytes) from byte
// *have on: pipelined DATA_REQUESTs, each chunk handed to sink (in order, exactly once) and
// *have advanced, so a failed call resumes after reconnecting from where it stopped.
// rate_limit: bytes per second at most (0: none). progress (may be NULL) is called after
// each chunk. The caller checks the whole file's SHA-256 (WELCOME's data_hash). Returns 0,
// or -1 with err (a 1.0 bridge, or one that serves no data: an error that says so; sink's
// own failures).
int br_client_download_data(BrClient *c, uint64_t *have, double rate_limit,
                            int (*sink)(void *ctx, const uint8_t *data, size_t n, char *err),
                            void *sink_ctx,
                            void (*progress)(void *ctx, uint64_t have, uint64_t total), void *ctx,
                            char *err);

// Downloads the state into buf (br_client_welcome(c)->state_bytes bytes), continuing from
// *have bytes already present (a resumed download of the same state). *have advances as
// chunks arrive, so a failed call can be resumed after reconnecting. progress (may be NULL)
// is called after each chunk. Returns 0, or -1 with err.
int br_client_download(BrClient *c, uint8_t *buf, size_t *have,
                       void (*progress)(void *ctx, size_t have, size_t total), void *ctx,
                       char *err);

// Declares the replica: params[0, n) after `step` steps; *samples_seen is the trainer's data
// cursor (read at every plan to place the share). Returns 0, or -1 with err.
int br_client_start(BrClient *c, uint64_t step, const float *params, size_t n,
                    const uint64_t *samples_seen, char *err);

Averager br_client_averager(BrClient *c);

// diloco mode (averaging.mode = diloco): the volunteer is one worker, and this is its
// transport (models/diloco.h; bridge/outer.h is the other side). assign reads the round
// stream (ROUND_CLOSE + AVG_CHUNKs: the average, decoded and delivered to d in round order;
// ROUND_OPEN: checked against the hash of d's outer parameters) until a round with a share;
// post queues the pseudo-gradient's GRAD_CHUNKs (the negotiated codec with error feedback)
// and a PROGRESS, and returns: the upload drains while the next round computes (the
// model's backward calls br_client_pump); wait reads until the round's average is applied.
// Call after br_client_start.
OuterLink br_client_outer_link(BrClient *c, Diloco *d, long global_batch);

// Heartbeats and read-ahead; for albert_set_backward_hooks(model, NULL, br_client_pump, c).
void br_client_pump(void *c);

// Sends BYE (leaving) and closes. Frees c. NULL is a no-op.
void br_client_leave(BrClient *c);
// Closes without BYE. Frees c. NULL is a no-op.
void br_client_close(BrClient *c);

int br_client_error_code(const BrClient *c);   // last ERROR code from the bridge (0: none)
int br_client_bye_reason(const BrClient *c);   // BYE reason from the bridge (0: none)
const BrClientStats *br_client_stats(const BrClient *c);

// Stops waits early: when *flag becomes nonzero (e.g. set by a signal handler) a blocking
// wait returns -1 with "interrupted".
void br_client_set_interrupt(BrClient *c, volatile int *flag);
// The same, except while a share of this volunteer is in flight (sync rounds: from its
// ROUND_OPEN to its round's result): that round ends first, so the samples it carries are
// counted on both sides (diloco: as br_client_set_interrupt).
void br_client_set_soft_interrupt(BrClient *c, volatile int *flag);

// ---- the link check (conflux-volunteer --check): after br_client_connect, before
// br_client_download/br_client_start ----

// TCP connect time of this connection (seconds).
double br_client_connect_seconds(const BrClient *c);
// One empty PROBE and its PROBE_ACK: *rtt_s the round trip. 0, or -1 with err.
int br_client_probe_rtt(BrClient *c, double *rtt_s, char *err);
// Upload rate: PROBEs of filler for about seconds (at most max_bytes), a window of them in
// flight; *bytes_per_s = filler bytes between the first and the last PROBE_ACK over the time
// the bridge measured between them; *sent the filler bytes. 0, or -1 with err.
int br_client_probe_up(BrClient *c, double seconds, size_t max_bytes, double *bytes_per_s,
                       double *sent, char *err);
// Download rate: the state, requested from its start (again from the start after its end)
// for about seconds (at most max_bytes); *bytes_per_s = bytes after the first chunk over
// the time from its arrival to the last one's. The state's first head_cap bytes are copied
// to head (*head_have of them arrived). 0, or -1 with err.
int br_client_probe_down(BrClient *c, double seconds, size_t max_bytes, double *bytes_per_s,
                         double *received, uint8_t *head, size_t head_cap, size_t *head_have,
                         char *err);

#endif
