// planner.h: how the bridge shares a round's global batch between the trainers and the
// volunteers in step (the "plan" of bridge/server.h). Pure: numbers in, numbers out; no
// sockets, no MPI, no clocks, no allocation.
//
// Participants take consecutive sample ranges: the trainers first, then the volunteers in
// joining order. Two plans:
//   equal       (--plan equal) every volunteer takes a trainer-sized share: with NT trainers,
//               nv volunteers and P = NT + nv, participant k (0-based) takes
//               G*(k+1)/P - G*k/P samples (integer division), so volunteer j takes
//               G*(NT+j+1)/P - G*(NT+j)/P; the trainers the rest.
//   throughput  (default; DeDLOC-style load balancing) the round should take tau seconds for
//               everyone. A trainer computes at trainer_rate samples/s; volunteer v needs its
//               upload time u_v on top of computing n_v samples at rate r_v. tau solves
//                 G - (probes of unmeasured volunteers) = NT*r_t*tau + sum_v r_v*(tau - u_v)
//               over the measured volunteers with tau > u_v (re-solved, at most 8 times, as
//               volunteers with u_v >= tau drop out); then n_v = (long)(0.9*r_v*(tau - u_v))
//               (a margin for noise). A share below the probe becomes the probe, unless the
//               volunteer's upload alone takes more than twice tau0 = G / (NT*r_t) (the round
//               without volunteers): then it gets 0. A volunteer not measured yet (or every
//               volunteer, while trainer_rate is 0) gets the probe. One that got 0 for 8
//               rounds in a row gets the probe again (its speed may have changed). Finally,
//               while the volunteers' total exceeds G - NT, shares are cut from the last
//               volunteer backwards: the trainers keep at least one sample each.
// Both plans then cap every share at max_share samples (the trainers take the rest): one
// volunteer's weight in a round stays bounded however fast it claims to be (an upload sent
// at once measures an arbitrary speed; robust aggregation needs no participant to dominate).
// Downloads: only live volunteers are planned. One still downloading the state or the run's
// training data (bridge/server.c: a connection goes live with the PROGRESS it sends once it
// holds both) is not in step and gets no share, so a download's time is never charged to a
// round; the data comes whole before the first round (DATA_REQUEST, bridge/proto.h), so once
// live a volunteer's data costs it nothing per round and its measured rate is compute alone.
// Both plans leave volunteers out when the batch is too small for every participant to get
// a sample (G < NT + nv): one at a time from the start of the list (the longest in it), as
// the bridge always did.
#ifndef CONFLUX_BRIDGE_PLANNER_H
#define CONFLUX_BRIDGE_PLANNER_H

#include <stdint.h>

enum { BR_PLAN_MAX_VOLUNTEERS = 1024 };  // volunteers one plan takes at most

// One volunteer's speed as the throughput plan sees it; kept by the bridge per identity and
// updated by br_plan_note_upload after each of its on-time uploads.
typedef struct {
    double rate;      // samples per second from ROUND_OPEN to its first upload chunk (0: not measured)
    double up_s;      // seconds its upload takes
    int idle_rounds;  // rounds in a row the throughput plan gave it no share
} BrPlanSpeed;

typedef struct {
    long global_batch;    // G: samples in the round (at least n_trainers)
    int n_trainers;       // NT >= 1
    double trainer_rate;  // samples per second of one trainer (0: not measured yet)
    int probe_samples;    // share of a volunteer not measured yet (below 1: 1)
    int equal;            // 1: the equal plan; 0: the throughput plan
    long max_share;       // samples one volunteer may take (0: no cap)
} BrPlanParams;

// Plans a round. v[0..n_vols): the volunteers in step, in joining order (n_vols at most
// BR_PLAN_MAX_VOLUNTEERS; more is a bug: CHECK). Writes share[0..n_vols) (samples; 0 for a
// volunteer left out or given nothing this round) and *trainer_samples = G - the sum of the
// shares. Returns nv, the volunteers in the plan: v[n_vols - nv .. n_vols); the ones before
// them were left out (G < NT + n_vols). The throughput plan updates v[].idle_rounds of the
// volunteers in the plan; nothing else in v changes.
int br_plan_round(const BrPlanParams *p, BrPlanSpeed *v, int n_vols, long *share,
                  long *trainer_samples);

// Folds one on-time upload into v: samples computed in compute_s seconds (ROUND_OPEN to its
// first chunk), uploaded in upload_s seconds. Each of rate and up_s becomes the mean of its
// old value and the new measurement, or the new measurement while the old one is 0; a
// compute time of 1 ms or less measures a rate of 0.
void br_plan_note_upload(BrPlanSpeed *v, uint64_t samples, double compute_s, double upload_s);

// The trainers' speed after a round in which n_trainers computed trainer_samples in
// compute_s_sum seconds of compute (summed over them): returns the new samples per second
// of one trainer, the mean of rate and the new measurement (the measurement alone while rate
// is 0). rate is returned unchanged when the round measured nothing (no trainer samples, or
// 0.1 ms of compute per trainer or less).
double br_plan_note_trainers(double rate, long trainer_samples, int n_trainers,
                             double compute_s_sum);

#endif
