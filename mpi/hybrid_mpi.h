// hybrid_mpi.h: the MPI-typed part of hybrid.h, for code in mpi/ (conflux-train).
#ifndef CONFLUX_MPI_HYBRID_MPI_H
#define CONFLUX_MPI_HYBRID_MPI_H

#include <mpi.h>

#include "mpi/dp.h"
#include "mpi/hybrid.h"

MPI_Comm hybrid_trainers(const HybridComm *h);  // trainer ranks only; MPI_COMM_NULL on the bridge
DpComm *hybrid_dp(const HybridComm *h);         // after hybrid_create_averager, else NULL

#endif
