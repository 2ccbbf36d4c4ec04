// diloco.h: DiLoCo, the averaging strategy with an outer step (Douillard et al. 2023,
// "DiLoCo: Distributed Low-Communication Training of Language Models").
//
// A run's participants form workers: the MPI cluster is one worker (its ranks keep the
// overlapped all-reduce every inner step), each volunteer is another, and a plain MPI job
// may split its ranks into several (averaging.workers). Every worker starts an outer round
// from the shared outer parameters theta, takes its inner optimizer steps (AdamW, each on a
// batch of train.global_batch samples of its own, disjoint range of the sample stream),
// and contributes its pseudo-gradient delta = start - x (where it started minus where it
// ended) weighted by the samples it trained. The averaged pseudo-gradient
//   avg = sum_w n_w * delta_w / sum_w n_w
// drives the outer optimizer, SGD with Nesterov momentum as in torch.optim.SGD:
//   buf = mu * buf + avg;  g = nesterov ? avg + mu * buf : buf;  theta -= lr * g
// (DiLoCo's lr 0.7, mu 0.9). Every participant applies the same outer steps to the same
// decoded bytes, in round order, so theta and buf stay bit-identical everywhere.
//
// Overlap (averaging.overlap = 1, Streaming DiLoCo's one-round delay with an eager local
// step): at the end of round r a worker posts delta_r and starts round r+1 at once, from
//   start_{r+1} = the outer step applied to copies of (theta, buf) with delta_r
// (the outer parameters it has, with rounds up to r-1 applied, moved by its own
// pseudo-gradient standing in for round r's average); round r's average arrives while it
// computes and is applied to theta at the end of round r+1. Without overlap a worker waits
// for round r's average and restarts from theta. With one worker, H = 1, lr 1 and mu 0,
// both are synchronous training (up to the float rounding of theta - (theta - x)).
//
// The worker's side is an Averager (models/train.h) wrapped around the worker's inner
// one (the cluster's all-reduce, or none): the transport to the other workers is an
// OuterLink (mpi/ gives the MPI ones, bridge/ the volunteer's). No I/O here.
#ifndef CONFLUX_MODELS_DILOCO_H
#define CONFLUX_MODELS_DILOCO_H

#include <stddef.h>
#include <stdint.h>

#include "models/train.h"

typedef enum { AVG_SYNC = 0, AVG_DILOCO = 1 } AvgMode;

// [averaging] of every configuration (io/run/config.h CFG_TRAIN_KEYS).
typedef struct {
    int mode;              // AvgMode
    long inner_steps;      // H: inner steps per outer round (diloco)
    float outer_lr;        // 0.7
    float outer_momentum;  // 0.9
    int nesterov;          // 1
    int overlap;           // 1: the outer exchange overlaps the next round (one-round delay)
    int workers;           // a plain MPI job: ranks split into this many workers (contiguous,
                           // the first ones one rank larger when they do not divide)
    int down_codec;        // CODEC_* of the averaged update sent to volunteers (int8)
} DilocoConfig;

void diloco_config_defaults(DilocoConfig *c);
// Range checks; -1 with err naming the key ("averaging.inner_steps must be >= 1").
int diloco_config_check(const DilocoConfig *c, char *err);

// ---- the math (pure, elementwise, in float) ----
// delta = start - x
void diloco_pseudo_grad(float *delta, const float *start, const float *x, size_t n);
// acc += (float)weight * delta  (the weighted sum of contributions, in a fixed order)
void diloco_accumulate(float *acc, const float *delta, size_t n, double weight);
// acc *= (float)(1 / total_weight)
void diloco_finish_average(float *acc, size_t n, double total_weight);
// The outer step (see above) on theta and buf.
void diloco_outer_step(const DilocoConfig *c, float *theta, float *buf, const float *avg, size_t n);

// ---- the transport between workers ----
// Indices: outer rounds count from 1; round r holds inner steps ((r-1)H, rH] of the cluster.
typedef struct {
    void *ctx;
    // This worker's next round with a share: sets *round, the first sample of its range
    // *start and its inner steps *steps (>= 1; each takes global_batch samples). Blocks
    // until the coordinator has planned it; results of earlier rounds arriving meanwhile
    // are delivered. 0, or -1 with err.
    int (*assign)(void *ctx, long *round, uint64_t *start, long *steps, char *err);
    // Posts this worker's contribution to round: delta (n floats), the samples it trained
    // and the round's statistics (STAT_*, summed over its inner steps). Returns once delta
    // may be overwritten (the transport copies or encodes it); 0, or -1 with err.
    int (*post)(void *ctx, long round, const float *delta, size_t n, const double *stats, char *err);
    // Blocks until round's average has been delivered (every round <= round). 0, or -1.
    int (*wait)(void *ctx, long round, char *err);
    // Drives transfers in flight (called between layers and inner steps). May be NULL.
    void (*progress)(void *ctx);
    // Bytes this worker's outer exchanges sent and received since the last call. May be NULL.
    void (*traffic)(void *ctx, double *sent, double *recv);
} OuterLink;

// The worker's outer state. theta/buf are the replicated outer state; start, delta and x
// (the trainer's parameters) are the worker's own.
typedef struct {
    DilocoConfig cfg;
    size_t n;
    float *theta, *buf;   // outer parameters and outer momentum (identical everywhere)
    float *start;         // where the current round's inner steps started
    float *delta;         // the pseudo-gradient being posted
    float *spare;         // overlap: the outer momentum's copy for the eager step
    long applied;         // outer rounds applied to theta
    long round;           // the worker's current round (0: none assigned yet)
    long steps, done;     // inner steps in the current round, and taken
    long completed;       // the last round this worker finished and posted
    int boundary;         // the last step ended a round
    long last_step;       // the run's last inner step (train.steps; 0: unbounded): there
                          // the worker waits for the last average and keeps theta
    double stats[STAT_COUNT];  // summed over the current round's inner steps
    double last_stats[STAT_COUNT];  // the last round delivered (totals over every worker)
    Averager inner;       // the worker's own averaging (cluster all-reduce, or none)
    OuterLink link;
    uint64_t *cursor;     // the trainer's samples_seen (set to each round's range)
    long *sched_step;     // the trainer's optimizer step: set to (round - 1) H at a round's
                          // start, so every worker's learning-rate schedule follows the run
    uint64_t base;        // the sample index of round 1's first sample (plain MPI workers)
    double sent, recv;    // traffic of the inner averager and the link, last step
} Diloco;

// Initializes d for a worker whose parameters params (n floats) are the outer parameters
// now (theta = start = params, buf = 0, no round applied); inner is the worker's inner
// averager. Then set link, cursor, sched_step and last_step.
void diloco_init(Diloco *d, const DilocoConfig *cfg, const float *params, size_t n, Averager inner);
void diloco_free(Diloco *d);

// The transport hands round's averaged pseudo-gradient (n floats) and the round's totals
// to the worker (rounds in order, each once): the outer step is applied to theta at once
// (theta is read only at round ends).
void diloco_deliver(Diloco *d, long round, const float *avg, const double *stats);

// The worker's Averager: plan fetches the next round's range at a round's first inner
// step and otherwise defers to inner; sum/begin/ready/progress go to inner (and drive the
// link); after_step ends a round after its last inner step (post, wait, restart from the
// new start point, see above).
Averager diloco_averager(Diloco *d);

// Restores a checkpoint's counters (ckpt_load_outer's meta: the last round completed,
// rounds applied, data base); theta, buf and start must hold the checkpoint's arenas.
// The next round is assigned afresh at the next step.
void diloco_restore(Diloco *d, const int64_t meta[4]);

#endif
