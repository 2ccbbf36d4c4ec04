// par.h: the one set of threads a training step runs on.
//
// Every op of a step, GEMMs included, runs on one pool of N threads: the calling thread
// and N - 1 workers. While the pool has more than one thread, OpenBLAS is set to one
// thread and nn.c splits each GEMM into N blocks of its output, one per pool thread; the
// element-wise ops are split by rows or by elements. So no second pool of threads spins
// against this one (OpenBLAS's own threads spin with sched_yield between GEMMs, which is
// what made element-wise work single-core before).
//
// Waiting: a worker spins for CX_PAR_SPIN_US after its last job (the next op of a step
// follows within microseconds), then sleeps on a futex, so an idle pool costs nothing.
// The caller waits for the workers the same way.
//
// Load balance: par_run cuts [0, n) into up to CX_PAR_CHUNKS_PER_THREAD chunks per thread,
// which the threads take in turn, so a thread the machine slows down takes fewer.
//
// Determinism: par_run splits [0, n) into contiguous chunks; every op that uses it
// computes each output element with the same arithmetic in the same order whatever the
// chunk, so results are bit-identical for any thread count (tests/unit/test_par.c checks
// this for a whole ALBERT and encoder-decoder step). Reductions that cross chunks use a
// fixed chunking that does not depend on the thread count (see the op's comment).
//
// A child of fork() starts with a pool of one (its parent's workers are not its own).
//
// One thread drives the pool at a time: a par_run from a worker, or from a second thread
// while the pool is busy, runs inline on the caller (serially), never deadlocks.
#ifndef CONFLUX_PAR_H
#define CONFLUX_PAR_H

#include <stddef.h>

#define CX_PAR_MAX_THREADS 64
#define CX_PAR_SPIN_US 300
#define CX_PAR_CHUNKS_PER_THREAD 4

// Sets the pool to n threads (caller included; 1 = everything on the caller). Workers are
// created or joined as needed, and OpenBLAS is set to 1 thread (nn.c splits GEMMs over the
// pool). n <= 0 means par_default_threads(); n is capped at CX_PAR_MAX_THREADS.
// Until it is first called the pool has one thread and OpenBLAS keeps its own setting.
// Not to be called while a par_run is in flight.
void par_set_threads(int n);
// The CPUs this process may run on (its affinity mask: a rank that mpirun or Slurm binds
// to one core gets 1), divided by the ranks on its node (OMPI_COMM_WORLD_LOCAL_SIZE or
// MPI_LOCALNRANKS) when the mask is the whole machine. At least 1.
int par_default_threads(void);
// The pool's thread count (1 until par_set_threads is called).
int par_threads(void);

// fn(ctx, tid, lo, hi) is called once per chunk [lo, hi) of [0, n), on whichever pool thread
// takes it (tid: 0 = the caller). Chunk boundaries are multiples of grain (>= 1), except n;
// they depend on n, grain and the thread count only, never on timing.
// Fewer than two grains of work, or a pool of one, runs fn(ctx, 0, 0, n) on the caller.
// Returns when every chunk is done; writes made by fn are visible to the caller.
typedef void (*ParFn)(void *ctx, int tid, size_t lo, size_t hi);
void par_run(size_t n, size_t grain, ParFn fn, void *ctx);

// Per-op timing for benchmarks (make bench's breakdown). Off by default; when on, nn.c
// and optim.c add the wall time of each op to its slot, and par_run adds the time the
// caller waited for workers after finishing its own chunk to PAR_PROF_IDLE.
enum {
    PAR_PROF_GEMM,        // linear layers' GEMMs (forward and backward)
    PAR_PROF_ATTENTION,   // attention core: per-head GEMMs, softmax, probability dropout
    PAR_PROF_GELU,
    PAR_PROF_LAYERNORM,
    PAR_PROF_DROPOUT,
    PAR_PROF_ADD,         // residual adds
    PAR_PROF_BIAS,        // bias gradients (column sums)
    PAR_PROF_EMBEDDING,
    PAR_PROF_XENT,        // softmax cross-entropy (forward and backward)
    PAR_PROF_OPTIM,       // gradient norm and the optimizer update
    PAR_PROF_COPY,        // zeroing and copying a step's buffers (nn_zero, nn_copy)
    PAR_PROF_IDLE,        // caller waiting for workers inside par_run
    PAR_PROF_N
};
extern const char *const par_prof_names[PAR_PROF_N];
void par_prof_enable(int on);
void par_prof_reset(void);
// Accumulated seconds per slot since the last reset.
void par_prof_get(double out[PAR_PROF_N]);
// For ops: returns a start time (0 when profiling is off), then adds now - t0 to slot.
double par_prof_begin(void);
void par_prof_end(int slot, double t0);

#endif
