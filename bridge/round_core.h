// round_core.h: the bridge's round logic without I/O: who gets a share of a round, how long
// a round waits, which uploads count (fresh, stale) and which are dropped, what the planner
// learns from each upload, and the round's accounting (bridge.csv). Both drivers call it at
// the same points with the same inputs, so the same code decides in both:
//   the libevent server (bridge/rounds.c sync rounds, bridge/outer.c diloco outer rounds),
//   the simulator (bridge/sim.c, conflux-sim), on SimGrid's clock.
// Pure: no sockets, no MPI, no clocks (every time is an argument, in seconds of the driver's
// clock), no allocation. The driver owns the seats and the uploads and carries out what the
// core decides: it sends the ROUND_OPENs of the shares the core wrote, sums the uploads the
// core accepted, logs the ones it dropped.
//
// Sync rounds (one optimizer step each), in the driver's order:
//   br_core_sync_open    plan the round: eligible seats (live, in step: acked_step + 1 >= the
//                        steps done, nothing outstanding) in joining order share the global
//                        batch (bridge/planner.h); the round's deadline is t_open + deadline_s
//   br_core_sync_wait    0 while uploads are outstanding and the deadline is ahead (wait until
//                        the returned time at most), 1: close now
//   br_core_close        each upload's fate (below); the planner learns each fresh upload's speed
//   br_core_note_trainers   the trainers' measured speed, for the next plan
// DiLoCo outer rounds (H inner steps of the cluster each; models/diloco.h):
//   br_core_outer_open   the cluster's range first (it never waits for the plan), then every
//                        seat not too far behind (acked_step + max_lag >= rounds applied) and
//                        without a queued round gets H_v inner steps (H with plan_equal; else
//                        what its measured speed does in 0.9 of the cluster's round time, in
//                        [1, H]; unmeasured: as fast as one trainer); a seat still uploading
//                        takes it as its next round
//   br_core_outer_deadline  when the round closes at the latest (from the cluster's part):
//                        plan_equal: + deadline_s; overlap with a measured round time: + 0.9 of
//                        it; else twice the slowest assigned upload + 1 s, at most deadline_s
//   br_core_close        fates, as in sync rounds; every upload that arrived teaches the planner
//   br_core_note_cluster    the cluster's round time (moving mean of its arrival intervals)
// Upload fates, decided in the order the driver sums them (round, then first sample):
//   REJECTED_NORM     diloco: norm > max_delta_ratio x the cluster's (however late it is)
//   REJECTED_TOKENS   the driver's token check failed (the data it claims to be from)
//   DROPPED_STALE     older than max_staleness rounds, or beyond the aggregator's capacity
//   FRESH / STALE     summed: this round's, or a late one of an earlier round
// Seats more than max_lag = max(history / 2, 2) rounds behind are laggards: the driver drops
// them (br_core_laggard).
#ifndef CONFLUX_BRIDGE_ROUND_CORE_H
#define CONFLUX_BRIDGE_ROUND_CORE_H

#include <stdint.h>

#include "bridge/planner.h"

typedef struct {
    double deadline_s;       // sync: longest wait for uploads after the plan; diloco: the cap
    int max_staleness;       // rounds a late upload may still count (0: drop late ones)
    int history;             // rounds kept for catching up: sets max_lag
    int plan_equal;          // the equal plan (bridge/planner.h); diloco: H for everyone
    int probe_samples;       // share of a volunteer not yet measured
    double max_share;        // sync: one volunteer's share of G at most (fraction; 0: no cap)
    double max_delta_ratio;  // diloco: norm rejection (0: off)
    int diloco;              // outer rounds instead of sync rounds
    long inner_steps;        // diloco: H
    long batch;              // diloco: samples per inner step (B)
    int overlap;             // diloco: the average is applied one round late
} BrCoreOptions;

// One volunteer connection's part in the rounds. The driver sets in_rounds, acked_step,
// uploading and speed before each open; the core writes the shares.
typedef struct {
    int in_rounds;        // live and not closing: it gets ROUND_OPEN and the results
    uint64_t acked_step;  // rounds (sync: steps) it has applied
    int uploading;        // an upload's chunks are arriving
    BrPlanSpeed *speed;   // its identity's speed (survives reconnects)
    double *t_prev_first; // diloco: its identity's last upload's first chunk (s)
    // the share it holds (round 0: none outstanding)
    uint64_t assigned_round, assigned_start, assigned_samples;
    double assigned_t_open;
    // diloco: the round it was given while the assigned one is still to be uploaded
    uint64_t next_round, next_start, next_samples;
    double next_t_open;
} BrSeat;

// A share handed out by an open: samples [start, start + n) of round `round` (n 0: the seat
// only applies the round's result).
typedef struct {
    uint64_t start, n;
    int planned;  // 1: the open decided about this seat (0: not eligible, sent ROUND_OPEN
                  // without a share to keep it in step)
} BrShare;

enum BrFate {
    BR_FATE_FRESH,
    BR_FATE_STALE,
    BR_FATE_DROPPED_STALE,
    BR_FATE_REJECTED_TOKENS,
    BR_FATE_REJECTED_NORM,
};

// A complete upload as the core sees it.
typedef struct {
    uint64_t round, samples;
    double t_open;          // when its round opened (its compute started then at the earliest)
    double t_first, t_done; // its first chunk's and last chunk's arrival
    double up_bytes, up_s;  // bytes after its first chunk and the seconds they took
    double norm;            // diloco: its L2 norm
    int tokens_ok;          // the driver's token check passed
    BrPlanSpeed *speed;     // its identity's, updated by br_core_close
    double *t_prev_first;   // diloco: its identity's, updated by br_core_close
} BrUpload;

// The rounds' state. The driver reads the round's fields and the accounting; it changes none.
typedef struct {
    BrCoreOptions o;
    // the round in progress (sync), or the round last opened (diloco)
    uint64_t round;
    int open;
    double t_open, t_deadline;
    long trainer_samples;       // the trainers' share (diloco: the cluster's samples)
    int assigned;               // volunteers in the plan
    uint64_t assigned_samples;
    double max_up_s;            // diloco: the slowest assigned volunteer's measured upload
    // the last closed round's accounting (bridge.csv)
    uint64_t fresh, stale, dropped, lost;
    double up_bytes, up_s;      // summed uploads: bytes after their first chunk, seconds
    // what the core has measured
    double trainer_rate;        // samples per second of one trainer (0: not measured)
    double round_s;             // diloco: the cluster's round time (0: not measured)
    double t_last_cluster;      // diloco: the cluster's last contribution arrived
    uint64_t cursor;            // diloco: the first sample of the next round
} BrRoundCore;

void br_core_init(BrRoundCore *k, const BrCoreOptions *o);
// max(history / 2, 2): rounds a seat may fall behind before it is dropped.
uint64_t br_core_max_lag(const BrRoundCore *k);
// 1 when an idle seat (no share, no upload) has applied more than max_lag rounds less than `done`.
int br_core_laggard(const BrRoundCore *k, const BrSeat *s, uint64_t done);

// Opens sync round done + 1 at time now: seats[0..n) in joining order (n at most
// BR_PLAN_MAX_VOLUNTEERS); the global batch G, nt trainer shares, the samples seen before
// the round (the share starts are offsets in the run's sample stream). Writes share[0..n)
// and the seats' assigned_*; the trainers take [first, first + trainer_samples) of the
// round, then the volunteers in order.
void br_core_sync_open(BrRoundCore *k, BrSeat **seats, int n, long G, int nt, uint64_t done,
                       uint64_t samples_seen, double now, BrShare *share);
// n_outstanding: shares of this round not yet uploaded. Returns 1 when the round closes now;
// else 0 and *until the deadline (the driver waits at most until then, or an upload).
int br_core_sync_wait(const BrRoundCore *k, int n_outstanding, double now, double *until);

// DiLoCo: opens outer round r at time now: the cluster (nt trainers) takes H x batch samples
// from the cursor, then the seats. Writes share[0..n) and the seats' assigned_* or next_*.
void br_core_outer_open(BrRoundCore *k, BrSeat **seats, int n, long r, uint64_t applied, int nt,
                        double now, BrShare *share);
// The latest close of a round whose cluster part arrived at t_cluster, given the slowest
// assigned upload max_up_s (0: none measured).
double br_core_outer_deadline(const BrRoundCore *k, double t_cluster, double max_up_s);
// The cluster's contribution arrived at `now`: updates the round time.
void br_core_note_cluster(BrRoundCore *k, double now);

// Closes round `round`: decides the fate of each upload ups[0..n) (sorted by round, then
// first sample), with at most cap_k accepted (0: no cap) and, in diloco rounds, the
// cluster's norm. Writes fate[0..n); updates the accounting and the uploads' speeds.
// t_open is the round's opening (sync: the speed of a fresh upload is measured from it).
void br_core_close(BrRoundCore *k, uint64_t round, BrUpload *ups, int n, int cap_k,
                   double cluster_norm, int *fate);
// A seat's share will not arrive (its volunteer left): the samples it held in the round in
// progress count as lost. Clears the seat's shares; returns the samples it held in all.
uint64_t br_core_seat_lost(BrRoundCore *k, BrSeat *s);
// Sync: after the round's all-reduce, the trainers' speed for the next plan.
void br_core_note_trainers(BrRoundCore *k, int nt, double compute_s_sum);
// A seat's upload is complete: its next round (diloco) becomes the one it holds.
void br_core_upload_done(BrSeat *s);

const char *br_fate_name(int fate);

#endif
