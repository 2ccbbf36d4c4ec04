// rounds.h: the bridge's rounds, i.e. its Averager (bridge_averager in bridge/server.h).
//   plan     sizes the shares (bridge/planner.h), broadcasts the plan to the trainers and
//            sends ROUND_OPEN to every live volunteer;
//   uploads  each GRAD_CHUNK is checked against the share it answers and the upload in
//            progress; a complete upload waits for the sum;
//   sum      waits for this round's uploads until the deadline, adds them and the late ones
//            of earlier rounds (at most max_staleness old; older ones are dropped), joins the
//            cluster's all-reduce, sends ROUND_CLOSE and the summed gradient, and keeps the
//            round in the history that catches rejoining volunteers up.
// Internal to the bridge server: these functions work on its connections
// (bridge/server_internal.h) and reach the sockets only through the connection layer
// (br_conn_send, br_conn_send_bytes, br_conn_fail) and bridge_pump.
#ifndef CONFLUX_BRIDGE_ROUNDS_H
#define CONFLUX_BRIDGE_ROUNDS_H

#include <stdint.h>

#include "bridge/proto.h"
#include "bridge/round_core.h"
#include "bridge/server.h"

typedef struct Conn Conn;
typedef struct Pending Pending;      // a complete upload waiting for the sum
typedef struct HistRound HistRound;  // a finished round kept for replay

enum { SPARE_UPLOADS = 8 };  // upload buffers kept for reuse

// The rounds' state (BridgeServer.rounds). rounds.c and outer.c own it; the rest of the
// server only reads core.round and core.open.
typedef struct {
    BrRoundCore core;        // the round logic (bridge/round_core.h): the round in progress,
                             // the last round's accounting, the measured speeds
    uint64_t hash_before;    // checksum of the parameters the round starts from
    int waited;              // the first round's wait for volunteers is over
    // the last closed round's record (bridge.csv), written by the driver that closed it
    long trainer_samples;    // the trainers' share
    int assigned;            // volunteers in the plan
    uint64_t assigned_samples;
    double wait_s, allreduce_s;
    Pending *pending;
    // robust aggregation (sync): the trainers' per-token gradient norm of the last round
    // (0: none yet), the volunteers' part of the sum, the robust aggregate
    double trainer_norm;
    float *vpart, *robust;
    HistRound *hist;         // ring of the last o.history rounds
    int hist_n, hist_head;
    uint8_t *chunk;          // one AVG chunk's fp32 payload, for encoding the history
    // upload buffers (n floats) given back by the sum, reused by the next uploads: no
    // fresh allocation, page faults and unmapping per upload in the event loop
    float *spare[SPARE_UPLOADS];
    int n_spare;
} Rounds;

// Allocates the history (o.history rounds; o.history >= 1).
void br_rounds_init(BridgeServer *b);
// Frees the uploads not summed, the spare buffers and the history.
void br_rounds_free(BridgeServer *b);

// c, authenticated, holds the state after step k (at most the run's step): replays rounds
// k+1 .. from the history, then sends ROUND_OPEN of the round in progress, if one is open.
// Returns 0, or -1 after failing c (a round it needs is no longer in the history).
int br_rounds_catch_up(Conn *c, uint64_t k);

// One GRAD_CHUNK from c: checked against its share and the upload in progress, then
// decoded; a complete upload (its norm checked) waits for the sum. A bad chunk fails c.
void br_rounds_on_grad_chunk(Conn *c, const BrGradChunk *m);

// c (with a volunteer) is closing: a share it still holds is counted lost.
void br_rounds_conn_closed(Conn *c, const char *why);

// The run ends: logs the shares still out and the uploads not summed as "unfinished".
void br_rounds_report_unfinished(BridgeServer *b);

#endif
