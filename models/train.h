// train.h: the one training loop every participant runs.
//
// A step: zero the gradient arena; run micro-batches over this participant's share of the
// global batch (forward + backward ADD into the arena); hand the summed gradients and
// statistics to the averaging backend (none, MPI, or the bridge link); divide by the
// global number of loss tokens; clip; take the optimizer step. The data cursor advances
// by the whole global batch; samples a participant failed to deliver (a volunteer that
// left) are missing from that step's sums, never from the next step's data. Every participant applies
// the same step to the same averaged gradient, so replicas stay identical.
#ifndef CONFLUX_TRAIN_H
#define CONFLUX_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "models/optim.h"
#include "models/tensor.h"

// The model plus its data, seen by the loop as one task.
typedef struct {
    void *ctx;
    float *params, *grads;  // flat arenas
    size_t n_params;
    const TensorSpec *specs;
    int n_specs;
    int micro_batch;        // largest micro-batch the task's arenas hold
    // Forward (+ backward adding into grads when backward != 0) over B consecutive
    // samples of the data stream starting at global sample index s0. Returns the summed
    // loss; *n_tokens receives the number of loss tokens, *aux_sum the summed auxiliary
    // per-sequence loss (ALBERT's sentence-order prediction; 0 when there is none).
    // final: the last micro-batch of this participant's share of the step (the task may
    // report gradient ranges that are final to the averaging backend as they complete).
    double (*micro_step)(void *ctx, uint64_t s0, int B, int backward, int final, long *n_tokens,
                         double *aux_sum);
    // The loss tokens of n samples from s0: what micro_step would report in *n_tokens,
    // without the model (the bridge checks the count a volunteer claims for its share).
    // NULL: the task cannot count.
    long (*count_tokens)(void *ctx, uint64_t s0, long n);
    // Optional: called by trainer_step right after every optimizer step, on every
    // participant that takes the step (trainers, volunteers, the bridge's replica), with
    // this task's parameters: a projection the model keeps its parameters on (SwAV
    // normalises its prototypes), so the state between steps, which replicas compare,
    // checkpoint and hand to joining volunteers, is always the projected one. The recipe
    // projects the initial parameters too. prep_ctx is its own context (a replica without
    // data has a task without ctx).
    void (*prepare)(void *prep_ctx, float *params);
    void *prep_ctx;
} TrainTask;

// Statistics summed over every participant with the gradients. STAT_PARTICIPANTS counts
// the contributions in the sum (1 per participant that processed samples; the bridge adds
// one per volunteer upload it includes). STAT_COMPUTE_S sums the seconds each participant
// spent computing its share (the bridge uses it to size volunteers' shares).
enum { STAT_LOSS_SUM, STAT_TOKENS, STAT_SAMPLES, STAT_AUX_SUM, STAT_PARTICIPANTS, STAT_COMPUTE_S,
       STAT_COUNT };

struct Trainer;
typedef struct Trainer Trainer;
struct StepResult;
typedef struct StepResult StepResult;

// Averaging strategy: how a participant's gradients (and, for strategies that average
// rarely, its parameters) meet the other participants'. Every backend (none, MPI data
// parallelism in mpi/dp.h, the bridge in bridge/server.h, a volunteer's link in
// bridge/client.h) fills one of these; the run loop (io/run/run.h) wires it up, so no tool
// main knows which strategy it runs.
//
// Per optimizer step, trainer_step calls: plan (which samples of the global batch are
// this participant's), the micro-batches' forward and backward (the model reports
// finished gradient ranges to ready and calls progress between layers; the run loop
// wires them in with recipe_wire_averager), begin (before the last micro-batch's
// backward), sum (gradients and statistics summed over every participant, in place), the
// optimizer step, then after_step (which sees the whole trainer: parameters and
// optimizer state, for strategies with an outer step). Every callback is optional.
typedef struct {
    void *ctx;
    // Sums n floats of grads and n_stats doubles of stats over every participant, in
    // place. Returns 0, or -1 with err. NULL: one participant.
    int (*sum)(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err);
    void (*begin)(void *ctx);  // called before the last micro-batch's backward
    // Called first in every step; sets this participant's share [*lo, *hi) of the
    // global batch (offsets into it, 0 <= lo <= hi <= global_batch; lo == hi: no samples
    // this step). Returns 0, or -1 with err. Without it the share is the rank's contiguous
    // 1/n_ranks part.
    int (*plan)(void *plan_ctx, long global_batch, long *lo, long *hi, char *err);
    void *plan_ctx;
    // Overlap hooks, called by the model's backward on ctx: gradient elements [offset,
    // offset + count) of the arena are final for this step; drive communication between
    // layers. Both NULL: the backward runs without hooks.
    void (*ready)(void *ctx, size_t offset, size_t count);
    void (*progress)(void *ctx);
    // Called by trainer_step after the optimizer step with the trainer (params in
    // t->task.params, moments and step in t->optim) and the step's result. Returns 0, or
    // -1 with err, which trainer_step returns.
    int (*after_step)(void *ctx, Trainer *t, const StepResult *r, char *err);
    // Communication volume of the last step in bytes (estimates where the backend
    // cannot measure them; see the backend). NULL: 0.
    void (*traffic)(const void *ctx, double *bytes_sent, double *bytes_recv);
    // Strategies whose rounds span several steps (DiLoCo, models/diloco.h). NULL: every
    // step is a round of its own.
    //   boundary  1 when the last step ended a round: the run loop's collective points
    //             (stop vote, replica check, checkpoint) come only then
    //   shared    the parameters every participant's replica holds identically (DiLoCo:
    //             the outer parameters), for the replica check
    //   flush     before a checkpoint: completes the exchange in flight so the checkpoint
    //             holds what a resumed run continues from bit for bit
    //   step      takes the whole step instead of trainer_step's micro-batches and
    //             optimizer step (the bridge in diloco mode: one call is one outer round)
    int (*boundary)(const void *ctx);
    const float *(*shared)(const void *ctx);
    int (*flush)(void *ctx, char *err);
    int (*step)(void *ctx, Trainer *t, StepResult *r, char *err);
    int rank, n_ranks;     // this participant's share of the global batch
} Averager;

// Split gradients: how a model lets an overlapping averaging backend (mpi/dp.h) start
// more of the sum during the backward. `order` lists the arena's ranges in the order the
// backward finalises them (the backend starts their sums in that order). A tied embedding
// table gets the last of its gradient, from the input tokens, at the very end of the
// backward; with a split, the last micro-batch's input contributions go to a row buffer
// instead, so the table's dense part can be summed early. The backend sums the rows of
// every distinct id over all participants and adds them in afterwards.
typedef struct {
    size_t lo, hi;
} GradRange;

typedef struct {
    const GradRange *order;  // n_order ranges in the order the backward finalises them;
    int n_order;             // together they cover the arena [0, n_params) exactly once
    // rows: one row of row_len floats per token of the last micro-batch: rows[r * row_len
    // ...] belongs to table row row_ids[r], r < *n_rows (at most max_rows). The table is
    // grads[table_offset + k * row_len ...], k < table_rows. The model sets row_ids and
    // *n_rows before it reports the first range of the step and fills rows before it
    // reports the last; the backend exchanges the ids early, adds the summed rows into the
    // table and resets *n_rows to 0.
    float *rows;
    int32_t *row_ids;
    int *n_rows;
    int max_rows, row_len;
    size_t table_offset;
    long table_rows;
} GradSplit;

struct Trainer {
    TrainTask task;
    Optim optim;
    Averager avg;
    long global_batch;     // sequences per optimizer step, over all participants
    uint64_t samples_seen; // global sample cursor (the data stream position)
};

struct StepResult {
    long step;             // optimizer steps done after this one
    double loss;           // mean loss over the global batch (per loss token)
    double aux_loss;       // mean auxiliary loss per sequence (0 without one)
    double grad_norm;      // pre-clip
    float lr;
    long tokens;           // loss tokens in the global batch
    long samples;          // sequences in the global batch that contributed
    int participants;      // contributions summed (STAT_PARTICIPANTS)
    double compute_s, comm_s;
};

// Takes one optimizer step. Returns 0, or -1 with err (averaging failure, or a
// non-finite loss/gradient, which is reported rather than applied).
int trainer_step(Trainer *t, StepResult *r, char *err);

// Mean loss of a task over n_samples samples starting at sample index s0 (no dropout, no
// gradients), in micro-batches. *n_tokens receives the token count; aux (may be NULL)
// the mean auxiliary loss per sequence.
double task_eval(const TrainTask *k, uint64_t s0, long n_samples, long *n_tokens, double *aux);

double cx_now(void);  // monotonic seconds

#endif
