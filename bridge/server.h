// server.h: the bridge server. It runs inside conflux-bridge, the extra rank of a cluster
// job, and exposes the cluster's averaging to volunteers over TCP.
//
// The bridge runs the same training loop as every participant (models/train.h) with an
// empty share of each global batch; its Averager (bridge_averager) is where the WAN meets
// the cluster:
//   plan  decides the round: every live volunteer in step gets a share, sized (by default)
//         so that its compute and upload end when the trainers' compute does (DeDLOC-style
//         load balancing from measured speeds: the cluster does not wait for slow links),
//         or (--plan equal) the size of a trainer's share; the trainers take the rest. The
//         plan goes to the trainers (MPI broadcast), ROUND_OPEN to every live volunteer.
//   sum   waits until every assigned upload is complete or the round deadline passed
//         (serving sockets all the while), adds the complete uploads of this round and the
//         late ones of earlier rounds (staleness <= max_staleness; older ones are dropped and
//         counted) into its gradient and statistics, joins the cluster's all-reduce while
//         still serving sockets, then sends ROUND_CLOSE and the summed gradient (fp32, so
//         every replica applies bit-identical updates) to every live volunteer.
//   after_step  records the round: its row in RUN_DIR/bridge.csv, the status page's loss
//         curve, a progress line every log_every steps.
// The optimizer step runs on the bridge too (between sum and after_step): it keeps a replica, which is what
// volunteers download and what the cluster's replica checks compare.
//
// Event loop: libevent 2.1 (Debian's libevent-dev). It is a well-kept library that gives
// buffered non-blocking sockets with read watermarks (bounded input per connection), timers
// and a listener; and its evhttp serves the status page later. The bridge drives it one
// turn at a time (bridge_pump) so MPI progress and socket I/O interleave in one thread.
//
// Every peer failure is contained: a malformed frame, a wrong size, a NaN/Inf or an absurd
// gradient norm, a bad token, an idle or too slow connection gets an ERROR frame, a log line
// naming the peer and reason, and a close; the round goes on without that upload.
#ifndef CONFLUX_BRIDGE_SERVER_H
#define CONFLUX_BRIDGE_SERVER_H

#include <stdint.h>

#include "models/train.h"
#include "mpi/hybrid.h"

typedef struct {
    const char *listen;        // "HOST:PORT" to listen on (default "0.0.0.0:7070")
    const char *tokens_path;   // join-token file (bridge/tokens.h), required
    const char *tls_cert;      // TLS certificate and key (PEM); NULL: TOKENS.cert.pem and
    const char *tls_key;       // TOKENS.key.pem, generated when absent (bridge/tls.h)
    int plaintext;             // 1: no TLS on the volunteer port (an explicit choice, warned)
    const char *run_dir;       // bridge.csv and volunteers.csv go here (NULL: none)
    double deadline_s;         // longest a round waits for volunteer uploads after its plan
    int max_staleness;         // rounds a late upload may still count (0: drop late ones)
    int max_volunteers;        // connected volunteers at most
    unsigned codecs;           // BR_CODEC_BIT mask the bridge accepts for uploads
    double idle_timeout_s;     // a peer silent this long is dropped
    double heartbeat_s;        // heartbeat interval
    int history;               // rounds kept for catching up (replayed to rejoining peers)
    double max_grad_norm;      // an upload's L2 norm per loss token above this is rejected
    double max_delta_ratio;    // diloco: a pseudo-gradient whose norm exceeds this many times
                               // the cluster's of the same round is rejected (0: no limit)
    int aggregate;             // RobustKind (bridge/robust.h) of the volunteers' uploads:
                               // ROBUST_CENTERED_CLIP (default), ROBUST_TRIMMED_MEAN, or
                               // ROBUST_MEAN (the exact sum: trusted volunteers, the
                               // equivalence tests)
    double clip_ratio;         // robust modes: an upload's per-token mean gradient (diloco:
                               // its pseudo-gradient) is clipped to this many times the
                               // trainers' own (0: no clipping)
    double trim;               // trimmed-mean: weight share cut from each end, [0, 0.5)
    const char *tcp_cc;        // TCP congestion control for volunteer sockets ("" = the
                               // system's default); bbr where the kernel has it
    int plan_equal;            // 1: every volunteer in step gets a trainer-sized share
                               // (reproducible; the equivalence tests); 0: shares sized
                               // to each volunteer's measured speed and link (default)
    int probe_samples;         // share of a volunteer not yet measured (throughput plan)
    double max_share;          // one volunteer's share of a round's global batch at most
                               // (a fraction; 0: no cap)
    const char *status_listen; // "HOST:PORT" of the read-only status page and /status.json
                               // (NULL: none)
    long total_steps;          // for the status page
    long log_every;            // a progress line every this many steps (and the first and
                               // last); joins, drops and misses are always logged
    int wait_volunteers;       // the first round waits for this many live volunteers ...
    double wait_timeout_s;     // ... at most this long
    // before authentication (a separate pool, not counted in max_volunteers)
    double hello_timeout_s;    // HELLO is due this long after the connection (default 5)
    int max_preauth;           // connections waiting for HELLO at most (default 32)
    int max_preauth_per_addr;  // ... of them from one address (default 8)
    // per join token
    int max_conns_per_token;   // connections authenticated with one token (default 16)
    int max_ids_per_token;     // identities kept per token (default 64): a new one beyond
                               // retires the token's longest-departed one (its totals are kept
                               // in the token's summary row)
    // state downloads: each must end within slack + state bytes / min rate (a connection
    // that also downloads the training data: + its size / min rate)
    double download_slack_s;   // default 30
    double download_min_rate;  // bytes per second (default 128 KiB/s, 1 Mbit/s)
    const char *data_path;     // the training data file volunteers may download (DATA_REQUEST;
                               // its SHA-256 goes in WELCOME); NULL: none is served
    int max_status_conns;      // status page connections at most (default 32)
    int quiet;
} BridgeOptions;

void bridge_options_default(BridgeOptions *o);

typedef struct BridgeServer BridgeServer;

// Starts listening. tr is the bridge's trainer (its params/grads/optimizer arenas are the
// replica; tr->global_batch the round target), config_text the run configuration sent to
// volunteers, data_windows the size of the run's training data (volunteers check their
// copy). With o->data_path, the file is opened and hashed (SHA-256, bridge/datafile.h) here,
// and served from this open descriptor: a file replaced later (renamed over) is not what
// volunteers get. Returns NULL with err on failure (bad address, port in use, token file,
// unreadable data file).
BridgeServer *bridge_create(const BridgeOptions *o, Trainer *tr, HybridComm *h,
                            const char *config_text, uint64_t data_windows, char *err);

// The Averager the bridge's trainer_step uses (plan, sum and after_step as above; the
// code is bridge/rounds.c).
Averager bridge_averager(BridgeServer *b);

// Serves sockets for up to max_wait_s seconds (returns earlier after some activity).
void bridge_pump(BridgeServer *b, double max_wait_s);


// Number of volunteers connected and synced.
int bridge_live_volunteers(const BridgeServer *b);

// Sends BYE to every volunteer (reason BR_BYE_SHUTDOWN: the run is over; set
// bridge_set_restarting first when the job stops to be requeued: BR_BYE_RESTART tells
// volunteers to reconnect later), flushes for at most a second, writes the per-volunteer
// summary, frees everything. NULL is a no-op.
void bridge_free(BridgeServer *b);
void bridge_set_restarting(BridgeServer *b);

#endif
