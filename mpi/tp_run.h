// tp_run.h: a tensor-parallel run of conflux-train: the trainers form D data-parallel
// replicas of a tp.rows x tp.cols grid (mpi/tp.h's tp_layout) and each replica trains
// ALBERT's masked-LM model dealt over its grid (mpi/tp_albert.h). mpi/trainer.c builds the
// replica through the recipe as always, with this file's AlbertEngine (io/tasks/mlm.h),
// and takes from here what differs from a data-parallel run:
//
//   the averager   the D ranks that hold the same blocks (dp_comm) sum them, the
//                  statistics too (once per replica): each dealt matrix's bucketed
//                  all-reduce starts in the backward as soon as the matrix is final
//                  (tp_albert_set_backward_hooks, mpi/dp.h's overlap), the vectors and
//                  replicated tables after the grid completed them (tp_albert_reduce_grads:
//                  over the grid row, over the grid); a replica's ranks process the same
//                  samples, replica d the d-th of D contiguous shares of the global batch
//   the optimizer  its global gradient norm and LAMB's per-tensor norms are summed over
//                  the grid (Optim.reduce_norms = tp_albert_reduce_norms)
//   checkpoints    replica 0's grid gathers parameters and moments into the one-rank layout
//                  (tp_albert_save_trainer), so the file is the same whatever the grid; a
//                  resume deals a file of any layout out (tp_albert_load_trainer)
//   the loop's collectives  validation split over the replicas and summed over dp_comm; the
//                  stop vote over every rank; the replica check over dp_comm (local blocks)
//
// A job with a bridge: see tp_run_create (the bridge keeps a whole replica, volunteers the
// whole model; the grid of replica 0 exchanges gathered sums with it).
#ifndef CONFLUX_MPI_TP_RUN_H
#define CONFLUX_MPI_TP_RUN_H

#include "io/run/run.h"
#include "io/tasks/mlm.h"
#include "io/tasks/recipe.h"
#include "mpi/hybrid.h"

typedef struct TpRun TpRun;

// Lays the trainers of h out as replicas of a tp->rows x tp->cols grid (collective over the
// trainers). NULL with err (a usage error: the grid does not divide the trainers) when it
// does not fit.
TpRun *tp_run_create(HybridComm *h, const TpSettings *tp, char *err);
// Frees the grid and the communicators (collective; after the replica's model is freed).
void tp_run_free(TpRun *t);

int tp_run_replicas(const TpRun *t);  // D
int tp_run_replica(const TpRun *t);   // this rank's replica, 0 <= d < D
size_t tp_run_n_whole(const TpRun *t); // the whole model's parameters (after the model)

// The engine recipe_albert builds the model with (Replica.albert_engine): the masked-LM
// model on this rank's grid, initialised as albert_create would (grid rank 0 builds the
// whole model once and deals it out).
const AlbertEngine *tp_run_engine(TpRun *t);
// After recipe_build: the optimizer's norm reduction over the grid, and the averager
// (models/train.h) described above. Collective over the trainers.
Averager tp_run_averager(TpRun *t, Replica *rep);
// With a bridge: replica 0's grid gathers the state (parameters, moments, step, cursor) and
// trainer 0 sends it to the bridge (hybrid_tp_send_state), where trainer.c would call
// hybrid_bcast_state. Collective over replica 0's grid.
void tp_run_send_state(TpRun *t, Replica *rep);
// The run loop's collectives.
RunComm tp_run_comm(TpRun *t);
// RunLoop.save (save_ctx: the TpRun): replica 0's grid writes the checkpoint.
int tp_run_save(void *save_ctx, const Trainer *tr, const char *run_dir, const char *writer,
                const char *cfg_text, long seed, char *err);
// Resumes every replica from the checkpoint at path (any layout). 0, or -1 with err (the
// same on every rank of a grid).
int tp_run_load(TpRun *t, Replica *rep, const char *path, char *err);

#endif
