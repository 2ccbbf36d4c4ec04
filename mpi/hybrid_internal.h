// hybrid_internal.h: the HybridComm that mpi/hybrid.c (the job, the synchronous rounds)
// and mpi/outer.c (DiLoCo's worker groups and outer exchange) share. Not an API.
#ifndef CONFLUX_MPI_HYBRID_INTERNAL_H
#define CONFLUX_MPI_HYBRID_INTERNAL_H

#include <mpi.h>

#include "models/diloco.h"
#include "mpi/dp.h"
#include "mpi/hybrid.h"

typedef struct OuterMpi OuterMpi;

struct HybridComm {
    MPI_Comm world, trainers;
    int rank, size, n_trainers, trainer_rank, bridge_rank, root;  // root: trainer 0's world rank
    DpComm *dp;
    const long *steps_done;  // a trainer's optimizer step count (hybrid_trainer_averager)
    // diloco (mpi/outer.c): worker groups of trainers, their leaders, the outer exchange
    int diloco;
    MPI_Comm worker, leaders, outer;  // MPI_COMM_NULL where this rank is not in one
    int n_workers, worker_index, worker_rank, worker_size;
    OuterMpi *om;
    // tensor parallelism with a bridge (mpi/tp_run.h): the bridge and trainer 0 exchange
    // whole arenas over `pair` (its dp is the pair's averager there); the trainers' samples
    // are split into `shares` equal parts, this rank's `share` (without tp: n_trainers and
    // trainer_rank)
    int tp;
    MPI_Comm pair;
    int shares, share;
};

// MPI failure -> -1 with "what failed on rank R (host): MPI's message" in err.
int hybrid_mpi_fail(HybridComm *h, int rc, const char *what, char *err);

// DiLoCo set-up (collective over the world): splits the trainers into worker groups (all of
// them one worker in a job with a bridge), their leaders' communicator and the outer
// exchange's communicator. Aborts the job on a bad grouping.
void hybrid_outer_split(HybridComm *h, const DilocoConfig *c);
void hybrid_outer_free(HybridComm *h);

#endif
