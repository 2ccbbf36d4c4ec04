// server_internal.h: what the files of the bridge server share; not an API for the rest of
// conflux (that is bridge/server.h).
//   server.c  connections and the event loop: accept, frames, per-connection caps,
//             heartbeats, idle timeouts, deferred close; state downloads; volunteers.csv
//   rounds.c  the rounds: the Averager (bridge/rounds.h), bridge.csv
//   status.c  the status page (bridge/status.h)
// rounds.c has no socket code: it reaches the volunteers through the connection layer's
// functions below and bridge_pump. status.c serves HTTP with evhttp on the server's event
// base and only reads the server's state.
#ifndef CONFLUX_BRIDGE_SERVER_INTERNAL_H
#define CONFLUX_BRIDGE_SERVER_INTERNAL_H

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include <event2/listener.h>

#include "bridge/planner.h"
#include "bridge/proto.h"
#include "bridge/robust.h"
#include "bridge/round_core.h"
#include "bridge/rounds.h"
#include "bridge/server.h"
#include "bridge/status.h"
#include "bridge/tokens.h"

enum { C_PREAUTH, C_AUTHED, C_LIVE };  // Conn.state

typedef struct Vol Vol;

// A listener's accept errors: on EMFILE/ENFILE (and other errors) the listener is paused
// for a moment instead of spinning on a readable socket it cannot accept from; a log line at
// most every 10 s (and one when accepts succeed again).
typedef struct {
    BridgeServer *b;
    struct evconnlistener *lis;
    struct event *resume;  // re-enables lis
    const char *what;      // "volunteer", "status page"
    int paused, logged;    // paused now / an error line was logged since accepts last worked
    double t_logged;       // the last error line
    int held;              // the owner keeps lis disabled (a cap): resume leaves it so
    uint64_t episodes, errors;  // error lines logged, failed accepts
} BrAcceptGuard;
typedef struct BrOuter BrOuter;  // the diloco coordinator (bridge/outer.h)
typedef struct Snapshot Snapshot;  // a serialized state being downloaded (server.c)
typedef struct OutAcct OutAcct;    // a connection's queued bytes by kind (server.c)
typedef struct TokenUse TokenUse;  // what one join token holds (server.c)

// Bytes shared by reference between the server and the output queues of its connections
// (evbuffer_add_reference): a state snapshot, a history round's encoded frames. Each queued
// reference holds one count; the block is freed when the last holder lets go, so a block a
// slow peer still has queued is never overwritten or freed under it.
typedef struct BrBlob {
    int refs;
    size_t cap;  // bytes at data
    uint8_t *data;
} BrBlob;
BrBlob *br_blob_new(size_t cap);  // refs = 1; CHECKs allocation
void br_blob_unref(BrBlob *blob);  // NULL: nothing

// Bounds of a connection's output (bridge/server.c):
// copied bytes (control frames, state chunk headers) queued at most; a peer that lets more
// pile up is not reading
#define BR_OUT_COPY_BUDGET ((size_t)256 << 10)
// state bytes queued and not yet written to the socket at most: the volunteer's download
// pipelines 8 requests of at most 1 MiB (bridge/client.c DOWNLOAD_WINDOW); twice that
#define BR_STATE_WINDOW_BYTES ((size_t)16 << 20)
// training data bytes requested and not yet written at most: each request is read from the
// file into a block of its own (the state is one shared copy; the data is not held in
// memory), so this bounds what a connection makes the bridge hold: max_volunteers x 2 MiB in
// all. The volunteer pipelines 4 requests of at most 512 KiB (bridge/client.c DATA_WINDOW).
#define BR_DATA_WINDOW_BYTES ((size_t)2 << 20)

// One join token's use (by its name): its connections and identities now, and the
// records folded in when identities were retired (departed, over max_ids_per_token).
struct TokenUse {
    char name[BR_TOKEN_NAME_MAX + 1];
    int conns, ids;
    uint64_t event_rows, rows_suppressed;  // volunteers.csv lifecycle rows written / not
    uint64_t retired, fresh, stale, dropped, lost, uploads;  // retired identities' totals
    double bytes_in, bytes_out;
    // the link check (PROBE frames): filler bytes taken in the current minute
    double probe_t0;
    uint64_t probe_bytes;
};

// One volunteer identity; survives reconnects.
struct Vol {
    BrIdentity id;
    char id_hex[33];
    char name[BR_PROTO_MAX_NAME_BYTES + 1];
    char token_name[BR_TOKEN_NAME_MAX + 1];
    uint64_t fresh, stale, dropped, lost, uploads, connects;
    uint64_t round_accepted;  // samples of its uploads summed into the current round
    BrPlanSpeed speed;        // what the throughput plan knows of it (bridge/planner.h)
    double up_mbit;           // goodput of its last upload (0: none yet)
    double t_prev_first;      // diloco: its last upload's first chunk (its next round's compute
                              // started then at the earliest)
    double first_seen, last_seen;
    double bytes_in, bytes_out;
    TokenUse *tu;  // its token's use (b->token_use)
    Conn *conn;
    Vol *next;
};

struct Conn {
    BridgeServer *b;
    struct bufferevent *bev;
    BrProtoDecoder dec;
    int state, closing, eof, fin_sent;
    double close_t;
    Vol *vol;
    uint8_t token_hash[BR_TOKEN_HASH_BYTES];  // of the token it joined with (revocation)
    char peer[INET6_ADDRSTRLEN + 8];
    char host[INET6_ADDRSTRLEN];  // the peer's address without the port
    int codec, failing;
    double last_rx, last_tx;
    double t_accept;     // HELLO is due o.hello_timeout_s after this
    double dl_deadline;  // the state download must be over by then (0: not downloading)
    OutAcct *acct;       // queued bytes by kind; outlives the connection while references
                         // to shared blocks are still queued
    TokenUse *tu;        // counted in its token's connections (NULL: not authenticated)
    Snapshot *snap;
    uint64_t acked_step;
    int data_dl;          // it asked for training data: its download deadline includes it
    uint64_t data_first;  // the offset of its first DATA_REQUEST (a resumed download: > 0)
    uint64_t data_sent;   // training data bytes queued for it
    // rounds.c's part: its shares (bridge/round_core.h; assigned_round 0: none outstanding)
    BrSeat seat;
    uint64_t opened_round;  // the last round it was sent ROUND_OPEN for
    // upload in progress
    float *up;
    uint64_t up_round, up_next, up_samples, up_tokens;
    double up_loss, up_aux;
    double up_t_first, up_bytes;  // arrival of the first chunk; payload bytes after it
    // the link check (PROBE frames before going live; bridge/proto.h)
    uint64_t probe_bytes;   // filler bytes received
    uint32_t probe_frames;
    double probe_t_first;   // arrival of the first PROBE
    Conn *next;
};

// Filler bytes of PROBE frames one join token may send per minute over all its connections.
#define BR_PROBE_TOKEN_BYTES_PER_MIN ((uint64_t)96 << 20)

struct BridgeServer {
    BridgeOptions o;
    Trainer *tr;
    HybridComm *h;
    size_t n;  // parameters
    char *config_text;
    uint64_t data_windows;
    int data_fd;             // the training data served (-1: none), o.data_path
    uint64_t data_bytes;     // its size and SHA-256, as hashed at bridge_create
    uint8_t data_hash[BR_DATA_HASH_BYTES];
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *tick, *wake;
    BrTokens tokens;
    struct timespec tokens_mtime;  // the token file as last read (or tried)
    off_t tokens_size;
    ino_t tokens_ino;
    int tokens_broken;             // unreadable or malformed: joins refused (fails closed)
    char tokens_why[256];          // why, as logged (once)
    struct ssl_ctx_st *tls;        // TLS 1.3 server context (NULL: --plaintext)
    Conn *conns;  // newest first
    Vol *vols;
    int n_conns;
    Snapshot *snap;
    Rounds rounds;
    double bytes_in, bytes_out, last_bytes_in, last_bytes_out;
    double t_start;
    FILE *csv, *vcsv;  // RUN_DIR/bridge.csv, RUN_DIR/volunteers.csv (io/run/runcols.h)
    int shutting_down, cc_warned, restarting;
    StatusPage status;
    uint8_t *frame;  // one encoded frame
    size_t frame_cap;
    BrProtoLimits lim;
    BrOuter *outer;  // diloco mode: the outer rounds' coordinator (NULL: sync rounds)
    TokenUse *token_use;  // per token name (b->n_token_use of them)
    int n_token_use, cap_token_use;
    BrAcceptGuard guard;  // the volunteer listener's accept errors
    // the status page's connections (bridge/status.c): each one's bufferevent, held until
    // evhttp lets go of it, so that they can be counted against o.max_status_conns
    BrAcceptGuard status_guard;
    struct bufferevent **status_bevs;
    int status_n, status_bevs_cap, status_cap_logged;
};

// A complete upload waiting to be summed into a round.
struct Pending {
    Vol *vol;
    uint64_t round, start, samples, tokens;
    double loss, aux;
    double up_bytes, up_s;  // goodput sample: bytes after the first chunk, over seconds
    double t_first, t_done; // first chunk arrived, upload complete
    double t_open;          // diloco: the round it answers opened
    float *g;
    Pending *next;
};

// One finished round, kept to bring rejoining volunteers up to date. The summed gradient
// is kept as its encoded AVG_CHUNK frames: encoded once, sent as bytes to every
// volunteer that round and to every later replay.
struct HistRound {
    uint64_t round, hash_before, samples, tokens;
    uint32_t participants;
    double loss, aux;
    BrBlob *frames;   // AVG_CHUNK frames covering the whole gradient, back to back; shared
                      // by reference with the output queues (a new block when one is still
                      // queued somewhere as the ring wraps)
    size_t frames_bytes;
};

// The step a volunteer's replica is at: optimizer steps (sync), outer rounds applied (diloco).
uint64_t br_step(const BridgeServer *b);

// ---- shared by the rounds (rounds.c) and the diloco coordinator (outer.c) ----
void br_rounds_send_open(Conn *c, uint64_t round, uint64_t hash, uint64_t start, uint64_t n);
// ROUND_CLOSE with h's totals (and this volunteer's accepted samples), then h's AVG_CHUNKs.
void br_rounds_send_result(Conn *c, const HistRound *h, uint64_t accepted);
// Elements per chunk of codec under a chunk limit (whole blocks of a blockwise codec).
size_t br_chunk_elems(int codec, size_t max_chunk_bytes);
// The next history slot (the oldest is overwritten).
HistRound *br_rounds_hist_push(BridgeServer *b);
// Encodes v (b->n floats) as h's AVG_CHUNK frames in codec; residual (NULL: none) is the
// error feedback of a lossy codec; decoded (NULL: not needed) receives what a receiver decodes.
void br_rounds_hist_encode(BridgeServer *b, HistRound *h, const float *v, int codec, float *residual,
                           float *decoded);
// Fails the live volunteers more than the history allows behind step done.
void br_rounds_drop_laggards(BridgeServer *b, uint64_t done);
// The first round's bounded wait for o.wait_volunteers live volunteers at step done.
void br_rounds_wait_volunteers(BridgeServer *b, uint64_t done);
// The fates of round `round`'s uploads arr[0..n) (sorted by br_cmp_pending), decided by the
// round core (bridge/round_core.h; at most cap_k accepted, 0: no cap; cluster_norm: the
// norm of diloco's cluster pseudo-gradient, for the norm rule; unused in sync rounds).
// Writes fate[0..n). An accepted
// upload's statistics go into stats and its volunteer's counters (its vector is the caller's
// to add); each upload's event goes to volunteers.csv (accepted, accepted-stale,
// dropped-stale, rejected-tokens, rejected-norm); a rejected one fails its connection (the
// loss tokens are counted by the bridge, never taken on trust).
void br_rounds_judge(BridgeServer *b, Pending **arr, int n, uint64_t round, int cap_k,
                     double cluster_norm, double *stats, int *fate);
// Gives an upload's buffer back for reuse and frees p.
void br_rounds_release_upload(BridgeServer *b, Pending *p);
// A connection's seat (bridge/round_core.h) brought up to date with the connection.
void br_rounds_seat_refresh(Conn *c);
// The volunteers in the rounds, in joining order: conns[0..n), their seats (at most
// BR_PLAN_MAX_VOLUNTEERS), and room for an open's shares (share[0..n)).
typedef struct {
    Conn **conns;
    BrSeat **seats;
    BrShare *share;
    int n;
} BrSeats;
void br_rounds_seats(BridgeServer *b, BrSeats *s);
void br_rounds_seats_free(BrSeats *s);
// Orders Pending pointers by (round, first sample).
int br_cmp_pending(const void *a, const void *b);
// The round's row in RUN_DIR/bridge.csv, the status page's loss curve, the progress line.
void br_rounds_record(BridgeServer *b, const StepResult *r);

// ---- robust aggregation (aggregate.c) ----

// One contribution to a round's aggregate.
typedef struct {
    float *v;          // its vector (n floats; clipped in place)
    double w;          // its weight (loss tokens; samples in diloco mode)
    double max_norm;   // v is clipped to this L2 norm first (0: no limit)
    const Pending *p;  // its upload (NULL: the cluster's part, never clipped)
} BrContribution;
// Combines c[0..k) (1 <= k <= ROBUST_MAX_K) into out (b->n floats) as o.aggregate says:
// clipped (not in mean mode), then CenteredClip, trimmed mean or the weighted mean; logs
// and records ("clipped", "down-weighted" in volunteers.csv) what it limited. Returns how
// many contributions were clipped or down-weighted.
int br_aggregate(BridgeServer *b, float *out, BrContribution *c, int k, uint64_t round);

// ---- the connection layer (server.c) ----

// "conflux-bridge: ..." on stderr (nothing with o.quiet).
void br_log(BridgeServer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// "name (token name, identity, address)" of c, for log lines; a static buffer.
const char *br_conn_label(const Conn *c);
// Appends a row to RUN_DIR/volunteers.csv (nothing without a run directory or v).
void br_vol_event(BridgeServer *b, const Vol *v, const char *event, uint64_t step,
                  uint64_t samples, const char *detail);
// Queues one frame, or bytes of already encoded frames, on c's output (counted as sent).
// -1 when c is closing or the queue refuses.
// Copied bytes count against BR_OUT_COPY_BUDGET (checked here, when they are queued: over it,
// c is failed).
int br_conn_send(Conn *c, const BrFrame *f);
int br_conn_send_bytes(Conn *c, const uint8_t *data, size_t n);
// Queues blob->data[off, off+n) by reference (no copy; blob is held until it is written or c's
// queue is freed). The whole queue is bounded by br_out_max; over it, c is failed.
int br_conn_send_ref(Conn *c, BrBlob *blob, size_t off, size_t n);
// Watches lis's accept errors (g->what names the listener in the log line); the guard is
// found again from lis when libevent reports an error.
void br_accept_guard_init(BridgeServer *b, BrAcceptGuard *g, struct evconnlistener *lis,
                          const char *what);
// An accept succeeded: an episode of errors (if one was on) is over.
void br_accept_guard_ok(BridgeServer *b, BrAcceptGuard *g);
void br_accept_guard_free(BrAcceptGuard *g);
// The most a connection's output queue may hold (copied and referenced): 16 MiB plus
// history + 4 rounds of results.
size_t br_out_max(const BridgeServer *b);
// Sends ERROR (code, message) and BYE, logs why, closes c (freed later, never from inside
// its own callbacks). Nothing when c is already closing.
void br_conn_fail(Conn *c, uint32_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
