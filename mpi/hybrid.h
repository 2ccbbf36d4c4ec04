// hybrid.h: one MPI job of trainer ranks plus (optionally) one bridge rank, as seen by the
// bridge. This header does not include <mpi.h> (only mpi/ does): the bridge process joins
// the cluster's averaging through these functions.
//
// Launch (MPMD):  mpirun -np N conflux-train ARGS : -np 1 conflux-bridge ARGS
// Every process calls hybrid_init with its role. Trainers and the bridge then issue the
// same collectives on the world communicator in the same order:
//
//   setup   hybrid_init (role exchange, trainer communicator split)
//           hybrid_bcast_config   trainer 0 -> everyone: the run configuration (INI text)
//           hybrid_create_averager  (duplicates the world communicator, per DpComm rules)
//           hybrid_bcast_state    trainer 0 -> everyone: parameters, optimizer moments,
//                                 optimizer step, data cursor
//           hybrid_barrier
//   step    hybrid_bcast_plan     bridge -> everyone: the round's plan
//           gradient + statistics sum over every rank (trainers: bucketed dp; the bridge:
//           hybrid_sum_start / hybrid_sum_poll / hybrid_sum_finish)
//           hybrid_stop_vote      any rank asks to stop -> all stop
//           hybrid_check_replicas (when the step is a check step: same rule on every rank)
//
// Without a bridge (plain mpirun -np N conflux-train) none of the hybrid collectives run,
// so the MPI baseline is unchanged.
//
// Errors: setup failures are fatal (MPI_Abort with rank and host); failures during a step
// return -1 with a message in err (CX_ERRLEN bytes).
#ifndef CONFLUX_MPI_HYBRID_H
#define CONFLUX_MPI_HYBRID_H

#include <stddef.h>
#include <stdint.h>

#include "io/run/run.h"
#include "models/diloco.h"
#include "io/tasks/recipe.h"
#include "models/tensor.h"
#include "models/train.h"

enum { HYBRID_TRAINER = 0, HYBRID_BRIDGE = 1 };

// The plan of one round, decided by the bridge and broadcast to the trainers. Trainers
// share [0, trainer_samples) of the global batch in equal contiguous parts by trainer rank;
// volunteers hold [trainer_samples, global batch).
typedef struct {
    int64_t step;             // the optimizer step this round produces (steps done + 1)
    int64_t trainer_samples;  // 0 <= trainer_samples <= global batch
    int64_t volunteers;       // volunteers given a share (for logs)
    int64_t reserved;
} HybridPlan;

typedef struct HybridComm HybridComm;

// Initializes MPI (MPI_THREAD_FUNNELED), exchanges roles and splits the trainer ranks off.
// Aborts the job when there is more than one bridge or no trainer. argc/argv as for
// MPI_Init (may be NULL).
HybridComm *hybrid_init(int *argc, char ***argv, int role);

int hybrid_size(const HybridComm *h);        // world size (trainers + bridge)
int hybrid_n_trainers(const HybridComm *h);
int hybrid_trainer_rank(const HybridComm *h);  // -1 on the bridge
int hybrid_bridge_rank(const HybridComm *h);   // world rank of the bridge, -1 without one
int hybrid_nodes(const HybridComm *h);         // distinct host names in the world (collective)
const char *hybrid_mpi_version(void);          // "Open MPI v4.1.4"
const char *hybrid_launcher_name(void);        // "srun", "mpirun" or "none"

// Trainer rank 0 sends *text (NUL-terminated); every other rank receives a malloc'ed copy
// in *text (caller frees), replacing (and freeing) what *text held there (NULL or a
// malloc'ed string). Collective over the world.
void hybrid_bcast_config(HybridComm *h, char **text);

// Creates the averaging backend over the world for the replica's gradient arena, with the
// trainers' bucket layout (4 MiB buckets) and the recipe's split layout (dp_create_split).
// Collective; every rank passes a replica of the same run (io/tasks/recipe.h), built from
// the same configuration, so arenas and layouts agree.
void hybrid_create_averager(HybridComm *h, Replica *rep);

// Trainer rank 0 sends, every other rank receives the replica's state: parameters, optimizer
// moments and step, the data cursor, and the number of training examples (n_examples,
// which volunteers check theirs against). Collective.
void hybrid_bcast_state(HybridComm *h, Replica *rep);

void hybrid_barrier(HybridComm *h);

// The round plan, from the bridge to everyone. Returns 0, or -1 with err.
int hybrid_bcast_plan(HybridComm *h, HybridPlan *plan, char *err);

// The Averager of a trainer rank: the MPI data-parallel one (dp_averager of the
// hybrid_create_averager backend), and in a job with a bridge, the bridge's plan: each
// step receives the round plan and gives this trainer its equal, contiguous part of the
// trainers' samples [0, trainer_samples); the plan's step must be *steps_done + 1
// (steps_done: the trainer's optimizer step count, alive while the averager is used).
// Call after hybrid_create_averager.
Averager hybrid_trainer_averager(HybridComm *h, const long *steps_done);

// The run loop's collectives (io/run/run.h) for this rank: validation sums over the
// trainers, the stop vote and the replica check over the world. A world of one rank
// has none (NULL functions).
RunComm hybrid_run_comm(HybridComm *h);

// The bridge's side of the gradient sum: starts the non-blocking all-reduce of grads (the
// arena given to hybrid_create_averager) ...
void hybrid_sum_start(HybridComm *h);
// ... drives it (call often, e.g. once per event-loop turn); returns 1 once every bucket
// completed, else 0 ...
int hybrid_sum_poll(HybridComm *h);
// ... and finishes it: waits for the rest, sums stats[0, n_stats) over the world in place.
// grads then hold the world sum. Returns 0, or -1 with err.
int hybrid_sum_finish(HybridComm *h, double *stats, int n_stats, char *err);

// Every rank votes (0 or 1); returns 1 on every rank when any voted 1, 0 otherwise, -1
// with err on an MPI failure.
int hybrid_stop_vote(HybridComm *h, int stop, char *err);

// Collective replica check over the world (see dp_check_replicas).
int hybrid_check_replicas(HybridComm *h, const float *params, size_t n, long step, char *err);

// ---- DiLoCo (averaging.mode = diloco; mpi/outer.c) ----
// hybrid_create_averager splits the trainers into worker groups (averaging.workers; in a
// job with a bridge the trainers are one worker): each group's all-reduce runs every inner
// step over the group only. Between rounds:
//   without a bridge  the group leaders all-reduce their weighted pseudo-gradients (n_w *
//                     delta_w) and sample counts (non-blocking: with overlap the sum runs
//                     during the next round) and broadcast the average in their group;
//                     worker w's range of round r is base + ((r-1) W + w) H B, H B samples.
//   with a bridge     trainer 0 sends the cluster's pseudo-gradient and statistics to the
//                     bridge (non-blocking), the bridge broadcasts the next round's plan
//                     (the cluster's range; the bridge answers at once, whatever the
//                     volunteers do) and, when the round closes, the average (non-blocking
//                     on every trainer, waited for where the worker needs it).
// The outer exchange uses its own communicator, so it never interleaves with the run
// loop's collectives on the world.

// The worker's transport (models/diloco.h); d receives every round's average. base: the
// first sample of round 1 (without a bridge). Call after hybrid_create_averager.
OuterLink hybrid_outer_link(HybridComm *h, Diloco *d, long global_batch, uint64_t base);
// The outer state from trainer 0 to every rank (after hybrid_bcast_state): theta, the outer
// momentum and the start point, and meta[0..3] (the round counters; see mpi/trainer.c).
void hybrid_bcast_outer(HybridComm *h, Diloco *d, int64_t meta[4]);
// The bridge's side. Set-up for n parameters (after hybrid_create_averager):
void hybrid_outer_bridge_init(HybridComm *h, size_t n);
// The plan of the next round (the cluster's range), bridge -> trainers:
int hybrid_outer_plan(HybridComm *h, long round, uint64_t start, long steps, char *err);
// Receives the cluster's next pseudo-gradient (n floats) and statistics (STAT_COUNT
// doubles) into the given buffers (they must stay valid until it completed) ...
int hybrid_outer_recv_start(HybridComm *h, float *delta, double *stats, char *err);
// ... *done = 1 once it arrived.
int hybrid_outer_recv_test(HybridComm *h, int *done, char *err);
// Broadcasts a round's average (n floats) and totals to the trainers (non-blocking; the
// buffers stay valid until hybrid_outer_result_test says every broadcast completed).
int hybrid_outer_result_start(HybridComm *h, float *avg, double *stats, char *err);
int hybrid_outer_result_test(HybridComm *h, int *done, char *err);

// ---- tensor parallelism (tp.rows x tp.cols > 1; mpi/tp_run.h) ----
// The trainers' replicas are grids holding their model dealt; the bridge keeps a whole
// replica, and volunteers the whole model. Trainer 0 (grid rank 0 of replica 0) stands for
// the cluster: it and the bridge exchange whole arenas (the step's sum, the state at
// set-up, the replica check) on a communicator of their own, the "pair"; trainer 0 gathers
// them from its grid and deals them back (mpi/tp_run.c). On the bridge,
// hybrid_create_averager, hybrid_bcast_state and hybrid_check_replicas do their part of
// this on their own (the configuration says tp); the trainers call these instead:

// The trainers' samples of a round go to `replicas` equal shares, this rank's is `replica`
// (hybrid_plan_share); with a bridge, the pair's averager over trainer 0's whole gradient
// arena grads[0, n) (NULL, 0 on the other trainers). Collective over the world; in place of
// hybrid_create_averager.
void hybrid_create_tp_pair(HybridComm *h, float *grads, size_t n, const TensorSpec *specs,
                           int n_specs, int replicas, int replica);
// Trainer 0: the whole state (n floats each; meta: optimizer step, data cursor, training
// examples) to the bridge, whose hybrid_bcast_state receives it. No-op without a bridge.
void hybrid_tp_send_state(HybridComm *h, float *params, float *m, float *v, size_t n, int64_t meta[3]);
// Trainer 0: grads (the whole arena) and stats summed with the bridge's, in place. 0 or -1.
int hybrid_tp_pair_sum(HybridComm *h, float *grads, size_t n, double *stats, int n_stats, char *err);
// Sets a trainer's Averager.plan in a job with a bridge (this rank's share of the trainers'
// samples; rank and n_ranks its share and the shares). No-op without a bridge.
void hybrid_plan_share(HybridComm *h, Averager *a, const long *steps_done);
// The trainers' shares of a round: n_trainers, or the replicas of a tensor-parallel run.
int hybrid_trainer_shares(const HybridComm *h);

// Ends MPI (collective; frees the averager). h is freed.
void hybrid_finalize(HybridComm *h);
// Aborts the whole job with this exit code.
void hybrid_abort(HybridComm *h, int code) __attribute__((noreturn));

#endif
