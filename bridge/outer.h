// outer.h: the bridge in diloco mode (averaging.mode = diloco, models/diloco.h): the
// coordinator of the outer rounds, and the bridge rank's Averager.
//
// One call of the Averager's step is one outer round r of the cluster (H inner steps):
//   open   round r+1 opens as soon as the cluster's pseudo-gradient of round r arrives,
//          whatever the volunteers do: the cluster's range [cursor, +H B) goes to the
//          trainers (hybrid_outer_plan, answered at once, so a slow link never stalls the
//          cluster), then every eligible volunteer gets H_v inner steps (H with --plan equal;
//          otherwise what its measured compute speed does in 0.9 of the cluster's round
//          time, at least 1; one not measured yet is taken to be as fast as one trainer
//          rank), as ROUND_OPEN with the hash of the outer parameters;
//   collect the cluster's pseudo-gradient (MPI) and the volunteers' uploads (GRAD_CHUNK: the
//          checks of rounds.c: its share, the codec, finite values, sizes);
//   close  when every assigned upload is in, or at the deadline, which adapts to the
//          measured speeds: with overlap, 0.9 of the cluster's round time after its
//          contribution (the average reaches the trainers before they need it); without,
//          twice the slowest assigned volunteer's measured upload time plus a second, at
//          most --deadline; at the latest when the cluster's next contribution arrives
//          (--plan equal, for reproducible runs: at --deadline, and the cluster waits). A
//          late upload counts in the next round (at most max_staleness rounds old) or is
//          dropped with the reason; a pseudo-gradient whose norm exceeds max_delta_ratio
//          times the cluster's is rejected with the reason. The average
//          sum n_w delta_w / sum n_w (cluster first, then uploads by round and first sample)
//          is encoded in averaging.down_codec with error feedback; the bridge, the trainers
//          (MPI broadcast of the decoded values) and the volunteers (ROUND_CLOSE + AVG_CHUNKs,
//          kept in the history for rejoining volunteers) apply the same decoded values.
// The bridge's replica holds the outer state: its parameters are theta, its optimizer's
// first moment the outer momentum (what volunteers download); its step counts the
// cluster's inner steps, and a volunteer's "step" on the wire is the outer rounds applied.
#ifndef CONFLUX_BRIDGE_OUTER_H
#define CONFLUX_BRIDGE_OUTER_H

#include "bridge/server.h"
#include "models/diloco.h"

typedef struct BrOuter BrOuter;

// Switches b to diloco rounds. d is the bridge's outer state (theta and buf alias the
// bridge trainer's parameters and first moment; its counters restored from the trainers'
// checkpoint); cursor the first sample of the next round.
BrOuter *br_outer_create(BridgeServer *b, Diloco *d, uint64_t cursor);
void br_outer_free(BrOuter *o);
// The bridge rank's Averager in diloco mode (its step is the outer round above).
Averager br_outer_averager(BrOuter *o);
long br_outer_applied(const BrOuter *o);
long br_outer_inner_steps(const BrOuter *o);

#endif
