// sim.h: conflux-sim, a collaboration simulated on SimGrid (flow-level network, simulated
// clock). The bridge's decisions are the real ones: the simulator drives the round core
// (bridge/round_core.h) at the points where the bridge server does, with the same inputs
// measured on the simulated clock. What is modelled, not run:
//   the cluster    NT trainer ranks computing at samples_per_s each, a ring all-reduce of the
//                  gradient (trainers and the bridge) on the interconnect, a fixed optimizer
//                  step and a validation pass every eval_every steps;
//   the bridge     one host whose uplink and downlink every volunteer's transfers share;
//   volunteers     hosts computing at their speed (samples/s, drawn per volunteer from a
//                  profile), each behind its own up and down links (rate, one-way latency;
//                  random loss lowers a TCP flow's rate: cubic by Mathis et al.'s formula,
//                  bbr by the lost share only), joining at a time, staying for exponential
//                  stints, gone for exponential gaps, killed (a share in hand is lost) or
//                  leaving between rounds;
//   messages       their real sizes: state downloads (parameters and both moments, fp32),
//                  uploads in the upload codec and results in the download codec with the
//                  protocol's chunk framing, ROUND_OPEN;
//   the loss       read from a real run's metrics.csv against samples trained (loss and
//                  valid_loss), so only the time axis is simulated.
// Output: a run directory (run.json with "simulated": true, metrics.csv, bridge.csv,
// volunteers.csv in io/run/runcols.h's columns) that conflux-report reads as any other run.
// The same configuration and seed give the same files.
#ifndef CONFLUX_BRIDGE_SIM_H
#define CONFLUX_BRIDGE_SIM_H

#include "io/run/config.h"

enum { SIM_MAX_PROFILES = 8 };

typedef struct {
    char name[64];
    int count;             // volunteers of this profile (0: profile unused)
    float samples_per_s;   // median compute speed
    float speed_sigma;     // log-normal spread of the speed (0: all equal)
    float up_mbps, down_mbps;
    float latency_ms;      // one-way
    float loss;            // random packet loss (fraction)
    float join_s;          // first join
    float join_spread_s;   // joins spread uniformly over [join_s, join_s + spread]
    float stay_s;          // mean stint (exponential; 0: stays to the end)
    float stay_max_s;      // stints capped at this (0: no cap)
    float away_s;          // mean gap before rejoining (exponential; 0: never returns)
    int leave;             // 0: killed (a share in hand is lost), 1: leaves between rounds
    char trace[512];       // availability trace "T:join,T:leave,T:kill,..." (seconds; replaces
                           // join_s, stay_s and away_s; leave: between rounds, kill: at once)
} SimProfile;

enum { SIM_JOIN, SIM_LEAVE, SIM_KILL, SIM_MAX_TRACE = 64 };
typedef struct {
    int n;
    double t[SIM_MAX_TRACE];
    int ev[SIM_MAX_TRACE];
} SimTrace;
// Parses a profile's trace: joins alternate with leaves or kills, times in order. 0, or
// -1 with err (err may be NULL for a text already checked).
int sim_trace_parse(const char *text, SimTrace *tr, char *err);

typedef struct {
    // [run]
    int mode;              // AVG_SYNC or AVG_DILOCO (CFG_AVG_MODE_NAMES)
    long steps;            // optimizer steps (diloco: the cluster's inner steps)
    int global_batch;      // sync: samples per step; diloco: per inner step of each worker
    int inner_steps;       // diloco: H
    long params;           // model parameters
    int up_codec, down_codec;  // CODEC_* (0: the mode's default: sync fp16 up, fp32 down;
                               // diloco int8 both ways)
    int seq_len;           // tokens per sample (tokens_per_s)
    int eval_every;        // validation every this many steps (valid_loss; eval_s of time)
    float eval_s;          // seconds of one validation pass
    float step_s;          // seconds of one optimizer step (and per-step overhead) at a trainer
    char loss_curve[CFG_PATH_LEN];  // a real run's metrics.csv ("": no loss columns)
    float loss_curve_scale;         // its samples axis multiplied by this (a larger model's
                                    // run: the same curve shape over more samples)
    long seed;
    float precision_s;     // SimGrid's time precision (surf/precision; 1e-9 by default): 1e-3
                           // is 1.4x faster with 1,000 flows, for rounds of seconds
    int tcp;               // 0 bbr, 1 cubic
    char dir[CFG_PATH_LEN];
    // [bridge]
    float deadline_s;
    int max_staleness, history, plan_equal, probe_samples;
    float max_share, max_delta_ratio;
    int wait_volunteers;
    float wait_timeout_s;
    int overlap;           // diloco
    float process_s;       // the bridge's work on a round's uploads before its all-reduce
    float process_s_per_upload;  // ... and per upload summed (decoding, aggregation)
    float up_mbps, down_mbps, latency_ms;
    // [cluster]
    int trainers;
    float trainer_samples_per_s;
    float interconnect_gbps, interconnect_latency_us;
    SimProfile prof[SIM_MAX_PROFILES];
} SimConfig;

extern const CfgSchema SIM_SCHEMA;

void sim_defaults(SimConfig *c);
// Checks values and their combinations; names the key. 0 or -1 with err.
int sim_check(const SimConfig *c, char *err);
// Runs the simulation and writes the run directory c->dir. argv0: for SimGrid's own
// option parsing (none are passed). quiet: no progress lines. 0, or -1 with err (the loss
// curve unreadable, the directory not writable).
int sim_run(const SimConfig *c, int quiet, char *err);

#endif
