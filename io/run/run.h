// run.h: the run loop, the one outer training loop of every participant: trainer ranks
// (conflux-train, conflux-headline train), the bridge rank and volunteers.
//
// Per optimizer step: trainer_step (models/train.h: plan, micro-batches, the averaging
// strategy's sum, the optimizer step, the strategy's after-step); the stop vote (a signal
// on any participant stops every one at this same step boundary); the replica check on
// check steps (run_check_step: the same rule on every participant, so the collective
// matches); validation; the metrics row, the progress line and the checkpoint (the writer
// only); then the participant's own after-step hook. When every step is done the writer
// marks RUN_DIR/finished.
//
// The loop does no MPI and opens no socket: what it needs from the other participants
// comes through RunComm (mpi/hybrid.h gives the MPI one; a volunteer has none), and the
// averaging through the Averager the loop wires into the replica (recipe_wire_averager).
#ifndef CONFLUX_IO_RUN_RUN_H
#define CONFLUX_IO_RUN_RUN_H

#include <signal.h>
#include <stdio.h>

#include "io/run/config.h"
#include "io/tasks/recipe.h"

// The collectives the loop needs. NULL functions: this participant is alone in them.
typedef struct {
    void *ctx;
    int rank, size;  // among the participants holding data (validation is split over them)
    // Sums n doubles over the data-holding participants, in place. 0, or -1 with err.
    int (*sum)(void *ctx, double *v, int n, char *err);
    // Every participant votes; 1 on every one when any voted 1, 0 when none, -1 with err.
    int (*stop_vote)(void *ctx, int stop, char *err);
    // Compares the parameters of every participant's replica. 0, or -1 with err naming the
    // participants that differ.
    int (*check_replicas)(void *ctx, const float *params, size_t n, long step, char *err);
} RunComm;

// Whether step is a checkpoint step: every train.checkpoint_every steps (when > 0), the
// last step, and a stop.
int run_checkpoint_step(const TrainSettings *t, long step, int stop);
// Whether step is a replica-check step: every train.replica_check_every steps (when > 0)
// and every checkpoint step.
int run_check_step(const TrainSettings *t, long step, int stop);

// Applies train.threads (> 0) to OpenBLAS.
void run_set_threads(const TrainSettings *t);

typedef struct {
    const char *tool;        // "conflux-train": prefixes the start, stop and error lines
    Replica *rep;            // built, state loaded
    Averager avg;            // the averaging strategy; the loop wires it into the replica and
                             // the model's backward (recipe_wire_averager). Zero: alone.
    RunComm comm;
    int writer;              // writes metrics rows, checkpoints and RUN_DIR/finished
    int validate;            // runs validation passes (trainers; needs rep->valid)
    int quiet;               // no progress or validation lines
    const char *cfg_text;    // the configuration stored in checkpoints
    FILE *metrics;           // the writer's RUN_DIR/metrics.csv (runlog_open_metrics)
    const Diloco *outer;     // diloco: the outer state the writer's checkpoints carry (NULL: sync)
    volatile sig_atomic_t *stop_flag;  // set by a signal handler (NULL: none)
    int unbounded;           // 1: no end at train.steps; the averaging or the hook ends it
    // How checkpoints are written (NULL: the writer writes rep's trainer with
    // ckpt_save_trainer). Set, it is called on every participant at each checkpoint step (a
    // collective save: a tensor-parallel grid gathers its model; mpi/tp_run.h), writer
    // being "TOOL VERSION"; 0, or -1 with err.
    int (*save)(void *save_ctx, const Trainer *tr, const char *run_dir, const char *writer,
                const char *cfg_text, long seed, char *err);
    void *save_ctx;
    // The participant's own after-step work (may be NULL): returns 0 to go on, 1 to stop
    // after this step (not a failure), -1 with err.
    int (*after_step)(void *ctx, const StepResult *r, char *err);
    void *ctx;
} RunLoop;

enum { RUN_FINISHED = 0, RUN_STOPPED = 1 };

// Runs steps until train.steps (or, unbounded, until a step fails or the hook stops).
// Returns RUN_FINISHED (every step done; the writer wrote
// RUN_DIR/finished), RUN_STOPPED (a stop vote or the after-step hook ended it at a step
// boundary, after the checkpoint), or -1 with err (a failed step, collective, write or
// checkpoint).
int run_loop(RunLoop *L, char *err);

#endif
