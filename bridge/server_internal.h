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

#include "bridge/planner.h"
#include "bridge/proto.h"
#include "bridge/rounds.h"
#include "bridge/server.h"
#include "bridge/status.h"
#include "bridge/tokens.h"

enum { C_PREAUTH, C_AUTHED, C_LIVE };  // Conn.state

typedef struct Vol Vol;
typedef struct Snapshot Snapshot;  // a serialized state being downloaded (server.c)

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
    double first_seen, last_seen;
    double bytes_in, bytes_out;
    Conn *conn;
    Vol *next;
};

struct Conn {
    BridgeServer *b;
    struct bufferevent *bev;
    BrProtoDecoder dec;
    int state, closing, eof;
    double close_t;
    Vol *vol;
    char token[BR_TOKEN_CHARS + 1];
    char peer[INET6_ADDRSTRLEN + 8];
    int codec;
    double last_rx, last_tx;
    Snapshot *snap;
    uint64_t acked_step;
    // rounds.c's part:
    // the round this connection was given a share of (0: none outstanding)
    uint64_t assigned_round, assigned_start, assigned_samples;
    uint64_t opened_round;  // the last round it was sent ROUND_OPEN for
    // upload in progress
    float *up;
    uint64_t up_round, up_next, up_samples, up_tokens;
    double up_loss, up_aux;
    double up_t_first, up_bytes;  // arrival of the first chunk; payload bytes after it
    Conn *next;
};

struct BridgeServer {
    BridgeOptions o;
    Trainer *tr;
    HybridComm *h;
    size_t n;  // parameters
    char *config_text;
    uint64_t data_windows;
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *tick, *wake;
    BrTokens tokens;
    struct timespec tokens_mtime;
    off_t tokens_size;
    ino_t tokens_ino;
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
};

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
int br_conn_send(Conn *c, const BrFrame *f);
int br_conn_send_bytes(Conn *c, const uint8_t *data, size_t n);
// Sends ERROR (code, message) and BYE, logs why, closes c (freed later, never from inside
// its own callbacks). Nothing when c is already closing.
void br_conn_fail(Conn *c, uint32_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
