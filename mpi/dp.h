// dp.h: the MPI averaging backend: data-parallel gradient sums with bucketed,
// non-blocking all-reduce that can overlap the backward pass.
//
// The gradient arena [0, n) is cut into buckets of about bucket_bytes. Buckets are numbered
// from the END of the arena: bucket 0 holds the last elements, bucket n_buckets-1 starts at
// element 0. The backward pass produces gradients in roughly that order (last layers first),
// so the first buckets are ready first.
//
// Use per optimizer step (overlapped):
//     dp_begin_step(d);
//     ... backward of a layer finishes [off, off+cnt) ... dp_mark_ready(d, off, cnt);
//     ... between layers ...                              dp_progress(d);
//     dp_finish(d, stats, n_stats, err);     // grads now hold the sum over every rank
// or non-overlapped: dp_averager_sum (the Averager.sum of models/train.h).
//
// Start order (the rule that keeps ranks in step): MPI collectives on one communicator must
// be started in the same order on every rank. A bucket's MPI_Iallreduce is started only
// when its whole range has been marked ready AND every bucket with a lower index has been
// started; so every rank starts buckets 0, 1, 2, ... in index order, whatever order (and
// however split or repeated) its mark_ready calls come in. A ready bucket behind an unready
// lower-index one waits. Marking the same element twice is harmless (readiness is tracked
// per element), and ranks may mark in different orders.
//
// Split gradients (GradSplit, models/train.h; dp_create_split): the model gives the order
// in which its backward finalises arena ranges, and keeps the last micro-batch's
// embedding-table rows apart so that the table's dense part is final early. Buckets
// follow the order: each range of it is cut from its end into buckets, and bucket indices
// run through the ranges in order, so the start order is the order of the backward. The
// rows' ids are all-gathered from the first dp_mark_ready of a step; once the whole arena
// is ready (the rows are final then) and every rank's ids are in, each rank packs its rows
// into the sorted union of every rank's ids and all-reduces them, on a second duplicate
// communicator. No dp_mark_ready or dp_progress ever waits for other ranks (the bridge
// marks everything at once while the trainers compute; a trainer's backward must not
// stall on a slower rank): the rows' sum starts in whichever call sees the ids in, at the
// latest in dp_finish. When
// everything completed, dp_finish adds each summed row into its table row, in the same
// order on every rank (replicas stay identical), and sets the row count to 0.
//
// Traffic estimates (counters): a ring all-reduce of B bytes over P ranks sends and receives
// 2*(P-1)/P * B bytes per rank (reduce-scatter then all-gather). Open MPI may pick another
// algorithm; the figure is the bandwidth-optimal estimate, not a measurement. 0 for P = 1.
//
// Only this directory includes <mpi.h>. The communicator is always a parameter: dp_create
// duplicates it (conflux's traffic never mixes with the caller's) and sets
// MPI_ERRORS_RETURN on the duplicate, so MPI failures in a step come back as messages.
#ifndef CONFLUX_MPI_DP_H
#define CONFLUX_MPI_DP_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"
#include "models/train.h"

// Fatal MPI setup failure: prints "conflux: fatal: rank R host H FILE:LINE: CALL: reason"
// to stderr and calls MPI_Abort(comm, 1). Use for setup calls only (communicator creation,
// rank/size queries); errors during a step are returned (tier 2, docs/style.md). The call only
// returns an error code to check when the communicator it uses has MPI_ERRORS_RETURN;
// with the default handler MPI aborts on its own first.
#define MPI_CHECK(comm, call)                                                     \
    do {                                                                          \
        int mpi_check_rc_ = (call);                                               \
        if (mpi_check_rc_ != MPI_SUCCESS)                                         \
            dp_mpi_fatal((comm), mpi_check_rc_, #call, __FILE__, __LINE__);       \
    } while (0)

void dp_mpi_fatal(MPI_Comm comm, int rc, const char *call, const char *file, int line)
    __attribute__((noreturn));

// Bucket layout flags for dp_create_ex.
enum {
    DP_ALIGN_TENSORS = 1,  // cut buckets only at tensor boundaries (a tensor is never split
                           // unless it alone exceeds DP_MAX_BUCKET_ELEMS)
};

// Largest bucket, in elements (MPI counts are int).
#define DP_MAX_BUCKET_ELEMS ((size_t)1 << 30)

// Counters. "Last step" fields describe the most recent dp_finish; totals add them up.
typedef struct {
    long steps;               // dp_finish calls that succeeded
    int n_buckets;
    // last step
    double bytes_sent, bytes_recv;  // estimate: 2*(P-1)/P * (gradient + summed rows + stats
                              // bytes), plus the row ids' all-gather
    double wait_s;            // time inside dp_finish until the gradients were complete:
                              // every bucket (and the rows) waited for, the rows added in
    double allreduce_s;       // first bucket start to observed completion of the last bucket
                              // (completion is observed in dp_progress or dp_finish)
    double stats_s;           // the stats MPI_Allreduce in dp_finish
    // totals over every successful step
    double total_bytes_sent, total_bytes_recv;
    double total_wait_s, total_allreduce_s;
} DpCounters;

typedef struct DpComm DpComm;

// Creates the backend for the gradient arena grads[0, n) (n may be 0). Collective over comm.
// comm is duplicated (the caller keeps ownership of comm); grads is borrowed and must stay
// valid until dp_free. bucket_bytes is the target bucket size in bytes (values below one
// float mean one element); buckets do not align with tensors. specs (n_specs entries, may
// be NULL when n_specs is 0) describe the arena; each must lie inside [0, n). Aborts
// (MPI_CHECK / CHECK) on setup failures and inconsistent arguments, which are bugs.
// A small remainder at the start of the arena (under a quarter bucket) joins its neighbour.
// Every rank must pass the same n, specs and bucket_bytes (the layouts must agree).
DpComm *dp_create(MPI_Comm comm, float *grads, size_t n, const TensorSpec *specs,
                  int n_specs, size_t bucket_bytes);

// As dp_create, with flags (DP_ALIGN_TENSORS: a bucket boundary falls only where some
// tensor starts or ends; a bucket grows tensor by tensor, from the end of the arena, until
// it holds at least bucket_bytes).
DpComm *dp_create_ex(MPI_Comm comm, float *grads, size_t n, const TensorSpec *specs,
                     int n_specs, size_t bucket_bytes, unsigned flags);

// As dp_create_ex, with split gradients (see "Split gradients"; NULL: none). The split's
// buffers are borrowed like grads. Every rank must pass the same split layout (its
// max_rows may differ, the largest is used, but it must be non-zero on every rank or on
// none). Inconsistent splits are bugs and abort.
DpComm *dp_create_split(MPI_Comm comm, float *grads, size_t n, const TensorSpec *specs,
                        int n_specs, size_t bucket_bytes, unsigned flags,
                        const GradSplit *split);

// Frees the duplicated communicator and everything dp_create allocated. Collective (it
// frees a communicator); call before MPI_Finalize, never with a step in flight. NULL is a
// no-op.
void dp_free(DpComm *d);

// Starts a step: nothing is ready, no bucket started. A step still in flight (begun and not
// finished) is a bug and aborts.
void dp_begin_step(DpComm *d);

// Gradients of arena elements [offset, offset+count) are final for this step. Starts, in
// index order, every bucket that is now wholly ready (see "Start order"). Does not
// allocate. Requires dp_begin_step; a range outside [0, n) is a bug and aborts. An MPI
// error is remembered and returned by dp_finish.
void dp_mark_ready(DpComm *d, size_t offset, size_t count);

// dp_mark_ready of the whole arena: the step's whole sum starts now.
void dp_mark_all_ready(DpComm *d);

// Drives MPI progress on the started buckets (MPI_Testall); call between layers. Open MPI
// advances a non-blocking all-reduce only inside MPI calls, about one round of its schedule
// per call, so without these calls the buckets mostly run inside dp_finish. A no-op outside
// a step, once everything completed, or after an MPI error.
void dp_progress(DpComm *d);

// Marks everything ready, starts the remaining buckets, waits for all of them, then sums
// stats[0, n_stats) (doubles, in place; n_stats may be 0, stats then may be NULL) over every
// rank. Ends the step. Works without dp_begin_step (then the whole step happens here).
// Returns 0, or -1 with err (CX_ERRLEN bytes) naming the failing call, rank and host.
// After a failure the communicator is in an unknown state: the run should stop.
int dp_finish(DpComm *d, double *stats, int n_stats, char *err);

// Averager.sum (models/train.h) for ctx = a DpComm: no overlap, marks all ready and
// finishes. grads and n must be the arena given to dp_create (else -1 with err).
int dp_averager_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err);

// An Averager backed by d: sum = dp_averager_sum, begin = dp_begin_step, the overlap hooks
// ready = dp_mark_ready and progress = dp_progress, traffic = the last step's estimate
// (DpCounters), rank and n_ranks of d's communicator.
Averager dp_averager(DpComm *d);

// void*-typed forms of dp_mark_ready and dp_progress for a model's backward hooks
// (albert_set_backward_hooks(model, dp_hook_ready, dp_hook_progress, d)).
void dp_hook_ready(void *ctx, size_t offset, size_t count);
void dp_hook_progress(void *ctx);

// Layout and state queries.
int dp_rank(const DpComm *d);
int dp_size(const DpComm *d);
MPI_Comm dp_comm(const DpComm *d);  // the duplicate (MPI_ERRORS_RETURN); owned by d
int dp_n_buckets(const DpComm *d);
// Bucket k covers [*lo, *hi). Without a split, bucket 0 ends at n and bucket k+1 ends
// where bucket k starts.
void dp_bucket_range(const DpComm *d, int k, size_t *lo, size_t *hi);
// Buckets started so far in the current step (or in the last one, after dp_finish).
int dp_n_started(const DpComm *d);
// 1 when every bucket of the current step was started and observed complete (by
// dp_progress), or the step failed (dp_finish then returns the error); else 0.
int dp_done(const DpComm *d);
const DpCounters *dp_counters(const DpComm *d);

// 64-bit hash of the bytes of params[0, n) (FNV-style: any single changed 64-bit word
// changes the hash for certain). Same bytes, same hash, on every rank of one architecture.
uint64_t dp_checksum(const float *params, size_t n);

// Collective over comm: every rank hashes its params and the hashes are compared. Returns 0
// when all ranks hold identical bytes; -1 with err naming the step and the ranks whose
// parameters differ from the majority (or, without a majority, every group), or an MPI
// failure. Every rank gets the same result. MPI errors come back as messages only when
// comm has MPI_ERRORS_RETURN (pass dp_comm(d) for that).
int dp_check_replicas(MPI_Comm comm, const float *params, size_t n, long step, char *err);

#endif
