// mpi_dp_check: checks of the MPI averaging backend (mpi/dp.h) on the ranks it is started
// with (any number, 1 included):
//  - bucket layouts tile the arena from its end; tensor-aligned layouts cut only at tensor
//    boundaries;
//  - gradient sums equal the exact expected sums BIT FOR BIT (rank r contributes r+1, or
//    (r+1)*(i%7+1): small integers, so every float sum is exact in any order), for bucket
//    sizes that do and do not align with an odd-sized fake tensor table, with ranges marked
//    all at once, in reverse and in forward tensor order, in a random tensor order and in
//    random overlapping chunks (each rank in its own order), with dp_progress between, over
//    two steps per backend (reuse), for an arena smaller than one bucket and an empty one;
//  - step statistics are summed; the counters follow the ring estimate;
//  - split gradients (dp_create_split): for an order that lists an odd arena's ranges out
//    of address order, buckets in index order walk the ranges in order, each cut from its
//    end (small remainders joined), and tile the arena once, for bucket sizes that do and
//    do not cut the ranges, tensor-aligned too; buckets start as the order's ranges are
//    marked. Sums with split rows are exact BIT FOR BIT: dense sums plus every rank's rows
//    (ids repeated within a rank, shared across ranks, a rank with none, max_rows
//    different on every rank) added into an embedding table that straddles two ranges;
//    ranges marked in the split's order (rows filled only after the first range), in
//    reverse, in random halves per rank, all at once, or not at all (dp_finish alone, with
//    and without dp_begin_step); three steps per backend with other ids (the last with no
//    rows anywhere); *n_rows is 0 after dp_finish; the counters add the summed rows and
//    the ids' all-gather to the ring estimate;
//  - dp_check_replicas passes on equal parameters and names the rank with a flipped bit.
// Ranks agree on pass/fail by all-reducing their error counts. Rank 0 prints one line per
// check and "N passed, N failed"; every rank prints "rank R of P ran" at the end. Exit
// status 1 when a check failed.
//
// usage: mpirun -np P mpi_dp_check [-v | --mismatch | --mpi-fatal | --huge]
//   -v          also prints all-reduce timings of a 2M-float buffer (NOT a benchmark: no
//               pinning, few repetitions, ranks may share cores)
//   --mismatch  every rank passes a different arena size to dp_create, which must abort
//               the job with "conflux: fatal: rank R host H ...: ranks disagree ..."
//   --mpi-fatal  an MPI_Send to a rank that does not exist under MPI_CHECK: must abort the
//               job with "conflux: fatal: rank R host H FILE:LINE: MPI_Send(...): ..."
//   --huge      dp_create with an arena of SIZE_MAX / 8 + 1 elements (whose byte size and
//               the bucket copy's twice that would overflow): must abort with "arena of N
//               elements too large" before touching it
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/common.h"
#include "mpi/dp.h"

static MPI_Comm g_comm;
static int g_rank, g_P, g_pass, g_fail, g_checks;

// Collective: every rank reports its local error count; all agree on the verdict.
static int verdict(const char *name, long local_errors) {
    long in[2] = {local_errors, local_errors > 0}, out[2];
    MPI_CHECK(g_comm, MPI_Allreduce(in, out, 2, MPI_LONG, MPI_SUM, g_comm));
    g_checks++;
    if (out[0] == 0) {
        g_pass++;
        if (g_rank == 0) printf("ok:   %s\n", name);
    } else {
        g_fail++;
        if (g_rank == 0)
            printf("FAIL: %s (%ld errors on %ld of %d ranks)\n", name, out[0], out[1], g_P);
    }
    fflush(stdout);
    return out[0] == 0;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// ---- the fake model: odd tensor sizes ----
static const size_t k_sizes[] = {7, 1000, 3, 65537, 129, 5};
enum { N_SPECS = sizeof k_sizes / sizeof k_sizes[0] };

static size_t make_specs(TensorSpec *specs) {
    size_t off = 0;
    for (int i = 0; i < N_SPECS; i++) {
        memset(&specs[i], 0, sizeof specs[i]);
        snprintf(specs[i].name, sizeof specs[i].name, "fake.layer%d.weight", i);
        specs[i].ndim = 1;
        specs[i].shape[0] = (long)k_sizes[i];
        specs[i].offset = off;
        specs[i].n = k_sizes[i];
        off += k_sizes[i];
    }
    return off;
}

// ---- data with exactly known sums ----
static float contrib(int pattern, int r, size_t i) {
    return pattern == 0 ? (float)(r + 1) : (float)((r + 1) * (int)(i % 7 + 1));
}
static float expected(int pattern, int P, size_t i) {
    int S = P * (P + 1) / 2;
    return pattern == 0 ? (float)S : (float)(S * (int)(i % 7 + 1));
}

// Bitwise comparison; prints the first mismatch of this rank to stderr.
static long compare_grads(const char *name, const float *g, size_t n, int pattern) {
    long bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = expected(pattern, g_P, i);
        if (memcmp(&g[i], &want, sizeof want) != 0) {
            if (bad == 0)
                fprintf(stderr, "rank %d: %s: element %zu is %.9g, want %.9g\n", g_rank, name,
                        i, (double)g[i], (double)want);
            bad++;
        }
    }
    return bad;
}

enum { N_STATS = 4 };
static void fill_stats(double *s) {
    s[0] = g_rank + 1;
    s[1] = 0.5 * (g_rank + 1);
    s[2] = 1;
    s[3] = 1024.0 * g_rank;
}
static long compare_stats(const char *name, const double *s) {
    double S = g_P * (g_P + 1) / 2.0;
    double want[N_STATS] = {S, 0.5 * S, g_P, 1024.0 * g_P * (g_P - 1) / 2.0};
    long bad = 0;
    for (int k = 0; k < N_STATS; k++)
        if (memcmp(&s[k], &want[k], sizeof want[k]) != 0) {
            fprintf(stderr, "rank %d: %s: stats[%d] = %.17g, want %.17g\n", g_rank, name, k,
                    s[k], want[k]);
            bad++;
        }
    return bad;
}

// ---- layout checks (local) ----
static int is_cut(const TensorSpec *specs, int ns, size_t x) {
    for (int i = 0; i < ns; i++)
        if (specs[i].offset == x || specs[i].offset + specs[i].n == x) return 1;
    return 0;
}

static long check_layout(const DpComm *d, size_t n, size_t bucket_bytes, int aligned,
                         const TensorSpec *specs, int ns) {
    long bad = 0;
    int nb = dp_n_buckets(d);
    size_t be = bucket_bytes / sizeof(float);
    if (be == 0) be = 1;
    if (n == 0) return nb == 0 ? 0 : 1;
    size_t prev_lo = n;
    for (int k = 0; k < nb; k++) {
        size_t lo, hi;
        dp_bucket_range(d, k, &lo, &hi);
        size_t len = hi - lo;
        if (hi != prev_lo || lo >= hi) bad++;                     // tiles from the end
        if (aligned && lo > 0 && !is_cut(specs, ns, lo)) bad++;   // cuts at tensors only
        if (!aligned && k < nb - 1 && len != be) bad++;           // exact size but the last
        if (!aligned && k == nb - 1 && len > be + be / 4) bad++;  // remainder merged at most
        if (aligned && k < nb - 1 && len < be) bad++;             // at least a bucket
        prev_lo = lo;
    }
    if (prev_lo != 0) bad++;
    if (bad)
        fprintf(stderr, "rank %d: layout of %zu elements in %zu-byte buckets (%s): %d buckets, "
                        "%ld problems\n",
                g_rank, n, bucket_bytes, aligned ? "aligned" : "unaligned", nb, bad);
    return bad;
}

// ---- marking orders ----
typedef enum {
    MARK_NONE,            // dp_averager_sum: all at once inside
    MARK_REVERSE,         // tensors from the last to the first, dp_progress between
    MARK_FORWARD,         // tensors from the first to the last: nothing may start early
    MARK_RANDOM_TENSORS,  // tensors in a random order of each rank's own
    MARK_RANDOM_CHUNKS,   // random chunks ignoring tensors, with overlaps, in random order
    N_ORDERS
} MarkOrder;
static const char *const k_order_names[N_ORDERS] = {
    "all at once (dp_averager_sum)", "reverse tensor order + dp_progress",
    "forward tensor order + dp_progress", "random tensor order per rank",
    "random overlapping chunks per rank"};

// Marks the arena in the given order; returns local errors of the start-order rule.
static long mark_all(DpComm *d, size_t n, const TensorSpec *specs, int ns, MarkOrder order,
                     uint64_t *rng) {
    long bad = 0;
    int idx[64];
    for (int i = 0; i < ns; i++) idx[i] = i;
    switch (order) {
    case MARK_NONE:
        break;
    case MARK_REVERSE:
        for (int i = ns - 1; i >= 0; i--) {
            dp_mark_ready(d, specs[i].offset, specs[i].n);
            dp_progress(d);
        }
        // everything is marked: every bucket must already be started
        if (dp_n_started(d) != dp_n_buckets(d)) bad++;
        break;
    case MARK_FORWARD:
        for (int i = 0; i < ns; i++) {
            // bucket 0 holds the end of the arena: until the last tensor is marked,
            // nothing may start (buckets start in index order only)
            if (dp_n_started(d) != 0) bad++;
            dp_mark_ready(d, specs[i].offset, specs[i].n);
            dp_progress(d);
        }
        if (dp_n_started(d) != dp_n_buckets(d)) bad++;
        break;
    case MARK_RANDOM_TENSORS:
        for (int i = ns - 1; i > 0; i--) {
            int j = (int)(splitmix(rng) % (uint64_t)(i + 1)), t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        for (int i = 0; i < ns; i++) {
            dp_mark_ready(d, specs[idx[i]].offset, specs[idx[i]].n);
            dp_progress(d);
        }
        if (dp_n_started(d) != dp_n_buckets(d)) bad++;
        break;
    case MARK_RANDOM_CHUNKS: {
        // cut [0, n) at random points into chunks, shuffle them, and mark each chunk
        // together with a random overlap into its neighbours (marks repeat elements)
        enum { MAXC = 48 };
        size_t cut[MAXC + 1];
        int nc = 1 + (int)(splitmix(rng) % (MAXC - 1));
        for (int i = 0; i < nc; i++) cut[i] = (size_t)(splitmix(rng) % (n + 1));
        cut[nc] = n;
        cut[0] = 0;
        for (int i = 1; i <= nc; i++)  // insertion sort
            for (int j = i; j > 0 && cut[j - 1] > cut[j]; j--) {
                size_t t = cut[j];
                cut[j] = cut[j - 1];
                cut[j - 1] = t;
            }
        int perm[MAXC];
        for (int i = 0; i < nc; i++) perm[i] = i;
        for (int i = nc - 1; i > 0; i--) {
            int j = (int)(splitmix(rng) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int i = 0; i < nc; i++) {
            size_t lo = cut[perm[i]], hi = cut[perm[i] + 1];
            size_t ext = (size_t)(splitmix(rng) % 50);
            lo = lo > ext ? lo - ext : 0;
            hi = hi + ext < n ? hi + ext : n;
            dp_mark_ready(d, lo, hi - lo);
            dp_mark_ready(d, lo, 0);  // empty range: a no-op
            dp_progress(d);
        }
        if (dp_n_started(d) != dp_n_buckets(d)) bad++;
        break;
    }
    case N_ORDERS:
        break;
    }
    if (bad)
        fprintf(stderr, "rank %d: start-order rule broken marking in %s (%d of %d started)\n",
                g_rank, k_order_names[order], dp_n_started(d), dp_n_buckets(d));
    return bad;
}

// Two steps (patterns 0 then 1) on a fresh backend; returns local errors.
static long run_case(const char *name, size_t n, const TensorSpec *specs, int ns,
                     size_t bucket_bytes, unsigned flags, MarkOrder order, uint64_t seed) {
    float *g = n ? cx_calloc(n, sizeof *g) : NULL;
    DpComm *d = dp_create_ex(g_comm, g, n, specs, ns, bucket_bytes, flags);
    long bad = check_layout(d, n, bucket_bytes, (flags & DP_ALIGN_TENSORS) != 0, specs, ns);
    uint64_t rng = seed * 1000003u + (uint64_t)g_rank;  // each rank its own order
    for (int step = 0; step < 2; step++) {
        int pattern = step % 2;
        for (size_t i = 0; i < n; i++) g[i] = contrib(pattern, g_rank, i);
        double stats[N_STATS];
        fill_stats(stats);
        char err[CX_ERRLEN] = "";
        int rc;
        if (order == MARK_NONE) {
            Averager avg = dp_averager(d);
            if (avg.rank != g_rank || avg.n_ranks != g_P) bad++;
            rc = avg.sum(avg.ctx, g, n, stats, N_STATS, err);
        } else {
            dp_begin_step(d);
            dp_progress(d);  // nothing started yet: a no-op
            bad += mark_all(d, n, specs, ns, order, &rng);
            rc = dp_finish(d, stats, N_STATS, err);
        }
        if (rc != 0) {
            fprintf(stderr, "rank %d: %s: %s\n", g_rank, name, err);
            bad++;
            break;
        }
        bad += compare_grads(name, g, n, pattern);
        bad += compare_stats(name, stats);
        const DpCounters *c = dp_counters(d);
        double payload = (double)n * 4 + N_STATS * 8;
        double want = g_P > 1 ? 2.0 * (g_P - 1) / g_P * payload : 0;
        if (c->steps != step + 1 || fabs(c->bytes_sent - want) > 1e-9 * payload ||
            c->bytes_recv != c->bytes_sent ||
            fabs(c->total_bytes_sent - (step + 1) * want) > 1e-9 * payload ||
            !(c->wait_s >= 0) || !(c->allreduce_s >= 0) || !(c->stats_s >= 0) ||
            c->n_buckets != dp_n_buckets(d)) {
            fprintf(stderr, "rank %d: %s: counters wrong (steps %ld, sent %.1f want %.1f)\n",
                    g_rank, name, c->steps, c->bytes_sent, want);
            bad++;
        }
    }
    dp_free(d);
    free(g);
    return bad;
}

// ---- split gradients (GradSplit, dp_create_split) ----
// The fake model of the split checks: an odd arena whose order lists ranges out of address
// order (and a 5-element one), with an embedding table of SP_TROWS rows of SP_E floats at
// SP_TOFF, across the boundary of two ranges.
enum { SP_N = 10007, SP_E = 5, SP_TROWS = 50, SP_TOFF = 6900, SP_STEPS = 3 };
static const GradRange k_sp_order[] = {
    {7000, 10007}, {0, 3000}, {5000, 7000}, {3000, 4995}, {4995, 5000}};
enum { SP_NORDER = sizeof k_sp_order / sizeof k_sp_order[0] };
static const size_t k_sp_sizes[] = {1500, 1500, 1995, 5, 1900, 250, 2857};  // 250: the table
enum { SP_NSPECS = sizeof k_sp_sizes / sizeof k_sp_sizes[0] };

static void sp_make_specs(TensorSpec *specs) {
    size_t off = 0;
    for (int i = 0; i < SP_NSPECS; i++) {
        memset(&specs[i], 0, sizeof specs[i]);
        snprintf(specs[i].name, sizeof specs[i].name, "split.t%d", i);
        specs[i].ndim = 1;
        specs[i].shape[0] = (long)k_sp_sizes[i];
        specs[i].offset = off;
        specs[i].n = k_sp_sizes[i];
        off += k_sp_sizes[i];
    }
}

// Rank r's declared max_rows: different on every rank (dp_create_split agrees on the MAX).
static int sp_max_rows(int r) { return 6 + 3 * r; }
static int sp_max_rows_all(int P) { return sp_max_rows(P - 1); }

// Rank r's rows in step s: rank 2 has none in step 0, rank 1 none in step 1, and the last
// step has none anywhere. Ids repeat within a rank (j and j+3) and overlap across ranks
// (multiples of 5, then shifted by 13 in step 1).
static int sp_n_rows(int r, int s) {
    if (s == SP_STEPS - 1 || (s == 0 && r == 2) || (s == 1 && r == 1)) return 0;
    return 5 + r;
}
static int32_t sp_row_id(int r, int s, int j) {
    if (j == 0 && r == 0) return s == 0 ? SP_TROWS - 1 : 0;  // the table's edges
    return (int32_t)((5 * (j % 3) + 5 * r + 13 * s) % SP_TROWS);
}
static float sp_row_val(int r, int j, int e) { return (float)(r + 1 + j + e); }

// Expected arena after step s (pattern of contrib/expected): dense sums plus every rank's
// rows added into their table rows; *n_union: distinct ids over every rank.
static void sp_expected(float *want, int pattern, int s, int with_rows, int *n_union) {
    for (size_t i = 0; i < SP_N; i++) want[i] = expected(pattern, g_P, i);
    int seen[SP_TROWS] = {0};
    *n_union = 0;
    for (int q = 0; q < g_P && with_rows; q++)
        for (int j = 0; j < sp_n_rows(q, s); j++) {
            int32_t id = sp_row_id(q, s, j);
            if (!seen[id]++) (*n_union)++;
            for (int e = 0; e < SP_E; e++)
                want[SP_TOFF + (size_t)id * SP_E + (size_t)e] += sp_row_val(q, j, e);
        }
}

// The buckets a split layout must have without tensor alignment (dp.h, layout_group):
// each range of the order cut from its end into be-element pieces, a remainder at its
// start under be/4 joining the piece after it. Returns how many (at most cap).
static int sp_ref_layout(size_t be, size_t *lo_out, size_t *hi_out, int cap) {
    int nb = 0;
    for (int g = 0; g < SP_NORDER; g++) {
        size_t glo = k_sp_order[g].lo, hi = k_sp_order[g].hi;
        while (hi > glo && nb < cap) {
            size_t lo = hi - glo > be ? hi - be : glo;
            if (lo - glo < be / 4) lo = glo;
            lo_out[nb] = lo;
            hi_out[nb++] = hi;
            hi = lo;
        }
    }
    return nb;
}

// Buckets in index order walk the order's ranges in order, each from its end, and tile the
// arena exactly once; without alignment they are the reference pieces, with alignment every
// cut is a range start or a tensor boundary. Local errors.
static long sp_check_layout(const DpComm *d, size_t bucket_bytes, int aligned,
                            const TensorSpec *specs) {
    long bad = 0;
    int nb = dp_n_buckets(d), g = 0, first_of_range = 1;
    size_t be = bucket_bytes / sizeof(float), prev_lo = 0;
    unsigned char *cover = cx_calloc(SP_N, 1);
    enum { CAP = 20000 };
    size_t *rlo = cx_calloc(CAP, sizeof *rlo), *rhi = cx_calloc(CAP, sizeof *rhi);
    int rnb = sp_ref_layout(be, rlo, rhi, CAP);
    if (!aligned && nb != rnb) bad++;
    for (int k = 0; k < nb; k++) {
        size_t lo, hi;
        dp_bucket_range(d, k, &lo, &hi);
        if (g >= SP_NORDER || lo >= hi || hi > SP_N) {
            bad++;
            break;
        }
        // the bucket lies in range g and continues it from its end
        if (lo < k_sp_order[g].lo || hi != (first_of_range ? k_sp_order[g].hi : prev_lo))
            bad++;
        if (aligned && lo != k_sp_order[g].lo && !is_cut(specs, SP_NSPECS, lo)) bad++;
        if (!aligned && (k >= rnb || lo != rlo[k] || hi != rhi[k])) bad++;
        for (size_t i = lo; i < hi; i++) cover[i]++;
        prev_lo = lo;
        first_of_range = lo == k_sp_order[g].lo;
        if (first_of_range) g++;
    }
    if (g != SP_NORDER) bad++;
    for (size_t i = 0; i < SP_N; i++) bad += cover[i] != 1;
    if (bad)
        fprintf(stderr, "rank %d: split layout in %zu-byte buckets (%s): %d buckets (reference "
                        "%d), %ld problems\n",
                g_rank, bucket_bytes, aligned ? "aligned" : "unaligned", nb, rnb, bad);
    free(cover);
    free(rlo);
    free(rhi);
    return bad;
}

typedef enum {
    SP_MARK_ORDER,     // the split's ranges in its order, dp_progress between; rows filled
                       // after the first range (the contract: before the last)
    SP_MARK_REVERSE,   // the ranges last to first: nothing may start before range 0
    SP_MARK_RANDOM,    // halves of the ranges in a random order of each rank's own
    SP_MARK_ALL,       // dp_mark_all_ready
    SP_MARK_NONE,      // dp_finish alone (odd steps without dp_begin_step either)
    SP_N_MARKS
} SpMark;
static const char *const k_sp_mark_names[SP_N_MARKS] = {
    "split order + dp_progress, rows filled late", "reverse split order",
    "random half-ranges per rank", "dp_mark_all_ready", "dp_finish without dp_mark_ready"};

// Buckets of ranges 0..g of the order (all of them started once those are marked).
static int sp_buckets_through(const DpComm *d, int g) {
    int k = 0;
    for (; k < dp_n_buckets(d); k++) {
        size_t lo, hi;
        dp_bucket_range(d, k, &lo, &hi);
        int in = 0;
        for (int h = 0; h <= g; h++) in |= lo >= k_sp_order[h].lo && hi <= k_sp_order[h].hi;
        if (!in) break;
    }
    return k;
}

// SP_STEPS steps on one backend with split rows (with_rows 0: a split without rows,
// max_rows 0 on every rank); local errors.
static long run_split_case(const char *name, size_t bucket_bytes, unsigned flags, SpMark mark,
                           int with_rows, uint64_t seed) {
    TensorSpec specs[SP_NSPECS];
    sp_make_specs(specs);
    float *g = cx_calloc(SP_N, sizeof *g), *want = cx_calloc(SP_N, sizeof *want);
    int max_rows = with_rows ? sp_max_rows(g_rank) : 0, n_rows = 0;
    float *rows = cx_calloc((size_t)max_rows * SP_E, sizeof *rows);
    int32_t *ids = cx_calloc((size_t)max_rows, sizeof *ids);
    GradSplit split = {.order = k_sp_order, .n_order = SP_NORDER};
    if (with_rows)
        split = (GradSplit){.order = k_sp_order, .n_order = SP_NORDER, .rows = rows,
                            .row_ids = ids, .n_rows = &n_rows, .max_rows = max_rows,
                            .row_len = SP_E, .table_offset = SP_TOFF, .table_rows = SP_TROWS};
    DpComm *d = dp_create_split(g_comm, g, SP_N, specs, SP_NSPECS, bucket_bytes, flags, &split);
    long bad = sp_check_layout(d, bucket_bytes, (flags & DP_ALIGN_TENSORS) != 0, specs);
    uint64_t rng = seed * 1000003u + (uint64_t)g_rank;
    double total = 0;
    for (int s = 0; s < SP_STEPS; s++) {
        int pattern = (s + 1) % 2;
        for (size_t i = 0; i < SP_N; i++) g[i] = contrib(pattern, g_rank, i);
        // ids before the first dp_mark_ready; rows garbage until filled
        n_rows = with_rows ? sp_n_rows(g_rank, s) : 0;
        for (int j = 0; j < n_rows; j++) ids[j] = sp_row_id(g_rank, s, j);
        for (int i = 0; i < max_rows * SP_E; i++) rows[i] = 1e6f;
        if (mark != SP_MARK_ORDER)
            for (int j = 0; j < n_rows; j++)
                for (int e = 0; e < SP_E; e++) rows[j * SP_E + e] = sp_row_val(g_rank, j, e);
        double stats[N_STATS];
        fill_stats(stats);
        char err[CX_ERRLEN] = "";
        if (!(mark == SP_MARK_NONE && s % 2 == 1)) dp_begin_step(d);
        switch (mark) {
        case SP_MARK_ORDER:
            for (int r = 0; r < SP_NORDER; r++) {
                dp_mark_ready(d, k_sp_order[r].lo, k_sp_order[r].hi - k_sp_order[r].lo);
                if (r == 0)  // the rows are final only now (before the last range)
                    for (int j = 0; j < n_rows; j++)
                        for (int e = 0; e < SP_E; e++)
                            rows[j * SP_E + e] = sp_row_val(g_rank, j, e);
                // buckets start in index order as the ranges come
                if (dp_n_started(d) != sp_buckets_through(d, r)) bad++;
                dp_progress(d);
            }
            break;
        case SP_MARK_REVERSE:
            for (int r = SP_NORDER - 1; r >= 0; r--) {
                if (dp_n_started(d) != 0) bad++;  // bucket 0 is in range 0
                dp_mark_ready(d, k_sp_order[r].lo, k_sp_order[r].hi - k_sp_order[r].lo);
                dp_progress(d);
            }
            if (dp_n_started(d) != dp_n_buckets(d)) bad++;
            break;
        case SP_MARK_RANDOM: {
            GradRange piece[2 * SP_NORDER];
            for (int r = 0; r < SP_NORDER; r++) {
                size_t lo = k_sp_order[r].lo, hi = k_sp_order[r].hi, mid = lo + (hi - lo) / 2;
                piece[2 * r] = (GradRange){lo, mid};
                piece[2 * r + 1] = (GradRange){mid, hi};
            }
            for (int i = 2 * SP_NORDER - 1; i > 0; i--) {
                int j = (int)(splitmix(&rng) % (uint64_t)(i + 1));
                GradRange t = piece[i];
                piece[i] = piece[j];
                piece[j] = t;
            }
            for (int i = 0; i < 2 * SP_NORDER; i++) {
                dp_mark_ready(d, piece[i].lo, piece[i].hi - piece[i].lo);
                dp_progress(d);
            }
            if (dp_n_started(d) != dp_n_buckets(d)) bad++;
            break;
        }
        case SP_MARK_ALL:
            dp_mark_all_ready(d);
            dp_progress(d);
            if (dp_n_started(d) != dp_n_buckets(d)) bad++;
            break;
        case SP_MARK_NONE:
        case SP_N_MARKS:
            break;
        }
        if (dp_finish(d, stats, N_STATS, err) != 0) {
            fprintf(stderr, "rank %d: %s: %s\n", g_rank, name, err);
            bad++;
            break;
        }
        int n_union;
        sp_expected(want, pattern, s, with_rows, &n_union);
        long wrong = 0;
        for (size_t i = 0; i < SP_N; i++)
            if (memcmp(&g[i], &want[i], sizeof want[i]) != 0) {
                if (wrong == 0)
                    fprintf(stderr, "rank %d: %s: step %d: element %zu is %.9g, want %.9g\n",
                            g_rank, name, s, i, (double)g[i], (double)want[i]);
                wrong++;
            }
        bad += wrong;
        if (n_rows != 0) {
            fprintf(stderr, "rank %d: %s: step %d: *n_rows is %d after dp_finish\n", g_rank,
                    name, s, n_rows);
            bad++;
        }
        bad += compare_stats(name, stats);
        // ring estimate over arena + summed rows + stats, plus the ids' all-gather
        const DpCounters *c = dp_counters(d);
        double payload = SP_N * 4.0 + N_STATS * 8.0 + (double)n_union * SP_E * 4.0;
        double gather = with_rows ? (g_P - 1) * (double)sp_max_rows_all(g_P) * 4.0 : 0;
        double wantb = g_P > 1 ? 2.0 * (g_P - 1) / g_P * payload + gather : 0;
        total += wantb;
        if (c->steps != s + 1 || fabs(c->bytes_sent - wantb) > 1e-9 * payload ||
            c->bytes_recv != c->bytes_sent || fabs(c->total_bytes_sent - total) > 1e-9 * payload ||
            c->n_buckets != dp_n_buckets(d)) {
            fprintf(stderr, "rank %d: %s: step %d: counters wrong (steps %ld, sent %.1f want "
                            "%.1f, %d ids in the union)\n",
                    g_rank, name, s, c->steps, c->bytes_sent, wantb, n_union);
            bad++;
        }
    }
    dp_free(d);
    free(g);
    free(want);
    free(rows);
    free(ids);
    return bad;
}

static void check_split(void) {
    TensorSpec specs[SP_NSPECS];
    sp_make_specs(specs);
    float *g = cx_calloc(SP_N, sizeof *g);
    GradSplit split = {.order = k_sp_order, .n_order = SP_NORDER};  // no rows
    // 1000-float buckets, by hand: 3007 -> 1000 + 1000 + 1007 (7 < 250 joins), 3000 -> 3 x
    // 1000, 2000 -> 2 x 1000, 1995 -> 1000 + 995, 5 -> 5
    static const size_t hand[][2] = {{9007, 10007}, {8007, 9007}, {7000, 8007}, {2000, 3000},
                                     {1000, 2000},  {0, 1000},    {6000, 7000}, {5000, 6000},
                                     {3995, 4995},  {3000, 3995}, {4995, 5000}};
    DpComm *d = dp_create_split(g_comm, g, SP_N, specs, SP_NSPECS, 4000, 0, &split);
    long bad = dp_n_buckets(d) != 11;
    for (int k = 0; k < 11 && k < dp_n_buckets(d); k++) {
        size_t lo, hi;
        dp_bucket_range(d, k, &lo, &hi);
        bad += lo != hand[k][0] || hi != hand[k][1];
    }
    dp_free(d);
    verdict("split layout, 1000-float buckets: 11 buckets as computed by hand", bad);

    struct {
        size_t bucket_bytes;
        unsigned flags;
        const char *what;
    } cfgs[] = {
        {4000, 0, "1000-float buckets cut the ranges"},
        {4100, 0, "1025-float buckets, remainders merged"},
        {11200, 0, "2800-float buckets: a 3007 range stays whole"},
        {12000, 0, "3000-float buckets = a range"},
        {1 << 20, 0, "1 MiB buckets: one per range"},
        {4, 0, "1-float buckets"},
        {4000, DP_ALIGN_TENSORS, "1000-float buckets, tensor-aligned"},
    };
    int n_cfgs = (int)(sizeof cfgs / sizeof cfgs[0]);
    for (int c = 0; c < n_cfgs; c++) {
        char name[200];
        snprintf(name, sizeof name, "split layout, %s: ranges in order, each from its end, tile "
                                    "once", cfgs[c].what);
        d = dp_create_split(g_comm, g, SP_N, specs, SP_NSPECS, cfgs[c].bucket_bytes,
                            cfgs[c].flags, &split);
        verdict(name, sp_check_layout(d, cfgs[c].bucket_bytes,
                                      (cfgs[c].flags & DP_ALIGN_TENSORS) != 0, specs));
        dp_free(d);
    }
    free(g);

    for (int c = 0; c < n_cfgs; c++) {
        if (cfgs[c].bucket_bytes < 64) continue;  // 10007 buckets: layout only
        for (int m = 0; m < SP_N_MARKS; m++) {
            char name[240];
            snprintf(name, sizeof name, "split sum + rows bit-exact, %s, %s", cfgs[c].what,
                     k_sp_mark_names[m]);
            verdict(name, run_split_case(name, cfgs[c].bucket_bytes, cfgs[c].flags, (SpMark)m,
                                         1, (uint64_t)(100 + c * SP_N_MARKS + m)));
        }
    }
    // a split without rows (max_rows 0 everywhere): the order alone
    for (int m = 0; m < SP_N_MARKS; m += 2) {
        char name[240];
        snprintf(name, sizeof name, "split sum without rows bit-exact, %s, %s", cfgs[0].what,
                 k_sp_mark_names[m]);
        verdict(name, run_split_case(name, cfgs[0].bucket_bytes, cfgs[0].flags, (SpMark)m, 0,
                                     (uint64_t)(200 + m)));
    }
}

// dp_mark_ready must never wait for other ranks: the bridge marks everything at once while
// the trainers are still computing and must keep serving its sockets, and a trainer's
// backward must not stall on a slower rank. Rank 0 marks everything and only then lets the
// other ranks begin marking; if a mark waited (for the row ids, say), this would deadlock,
// which test_mpi_dp.sh's timeout reports. The sums (with rows) must still be exact.
static void check_split_never_waits(void) {
    enum { N = 1000, E = 4, TABLE_ROWS = 100 };
    if (g_P < 2) {
        verdict("split: dp_mark_ready never waits for other ranks (needs 2 ranks: trivial)", 0);
        return;
    }
    float *g = cx_calloc(N, sizeof *g);
    float rows[2 * E];
    int32_t ids[2];
    int n_rows = 0;
    static const GradRange order[] = {{500, N}, {0, 500}};
    GradSplit split = {.order = order, .n_order = 2, .rows = rows, .row_ids = ids,
                       .n_rows = &n_rows, .max_rows = 2, .row_len = E, .table_offset = 0,
                       .table_rows = TABLE_ROWS};
    DpComm *d = dp_create_split(g_comm, g, N, NULL, 0, 1024, 0, &split);
    long bad = 0;
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < N; i++) g[i] = 1.0f;
        dp_begin_step(d);
        int token = 0;
        if (g_rank == 0) {  // the bridge: no rows, everything at once, then the others go
            dp_mark_all_ready(d);
            for (int r = 1; r < g_P; r++) MPI_CHECK(g_comm, MPI_Send(&token, 1, MPI_INT, r, 77, g_comm));
        } else {            // a trainer: rows for ids 3 and 7, its backward starts late
            ids[0] = 3;
            ids[1] = 7 + step;
            n_rows = 2;
            for (int i = 0; i < 2 * E; i++) rows[i] = 1.0f;
            MPI_CHECK(g_comm, MPI_Recv(&token, 1, MPI_INT, 0, 77, g_comm, MPI_STATUS_IGNORE));
            dp_mark_ready(d, order[0].lo, order[0].hi - order[0].lo);
            dp_progress(d);
            dp_mark_ready(d, order[1].lo, order[1].hi - order[1].lo);
        }
        char err[CX_ERRLEN];
        if (dp_finish(d, NULL, 0, err) != 0) {
            printf("rank %d: %s\n", g_rank, err);
            bad++;
        }
        for (int i = 0; i < N; i++) {
            int row = i / E;
            float want = (float)g_P + ((row == 3 || row == 7 + step) ? (float)(g_P - 1) : 0.0f);
            bad += g[i] != want;
        }
        bad += n_rows != 0;
    }
    dp_free(d);
    free(g);
    verdict("split: dp_mark_ready never waits for other ranks (rank 0 marks all first)", bad);
}

// ---- replica checks ----
static void check_replicas(void) {
    enum { NP = 100001 };  // odd: the hash's tail path
    float *p = cx_calloc(NP, sizeof *p);
    for (size_t i = 0; i < NP; i++) p[i] = 0.001f * (float)(i % 1013) - 0.5f;
    char err[CX_ERRLEN] = "";

    long bad = dp_check_replicas(g_comm, p, NP, 41, err) != 0;
    if (bad) fprintf(stderr, "rank %d: equal replicas reported: %s\n", g_rank, err);
    verdict("dp_check_replicas passes on identical parameters", bad);

    // dp_checksum: any single flipped bit changes the hash (first, middle, tail)
    uint64_t h0 = dp_checksum(p, NP);
    bad = dp_checksum(p, NP) != h0;
    size_t where[] = {0, 4242, NP - 1};
    for (int w = 0; w < 3; w++)
        for (int bit = 0; bit < 32; bit += 7) {
            uint32_t u;
            memcpy(&u, &p[where[w]], 4);
            u ^= 1u << bit;
            memcpy(&p[where[w]], &u, 4);
            bad += dp_checksum(p, NP) == h0;
            u ^= 1u << bit;
            memcpy(&p[where[w]], &u, 4);
        }
    bad += dp_checksum(p, NP) != h0 || dp_checksum(p, NP - 1) == h0;
    verdict("dp_checksum changes with any flipped bit and with the length", bad);

    // a flipped bit on one rank is detected and that rank is named, on every rank
    int victims[2] = {g_P - 1, 0};
    for (int v = 0; v < (g_P >= 3 ? 2 : 1); v++) {
        char name[128];
        int victim = victims[v];
        snprintf(name, sizeof name, "dp_check_replicas names rank %d with one flipped bit",
                 victim);
        if (g_P == 1) {
            verdict("dp_check_replicas on 1 rank passes (nothing to compare)",
                    dp_check_replicas(g_comm, p, NP, 42, err) != 0);
            break;
        }
        uint32_t u;
        memcpy(&u, &p[777], 4);
        if (g_rank == victim) {
            u ^= 1u << 3;
            memcpy(&p[777], &u, 4);
        }
        err[0] = '\0';
        int rc = dp_check_replicas(g_comm, p, NP, 42, err);
        char want[64];
        snprintf(want, sizeof want, "rank(s) %d differ", victim);
        bad = rc != -1 || !strstr(err, "step 42") || !strstr(err, want);
        if (g_rank == 0 && rc == -1) printf("      (message: %s)\n", err);
        if (bad) fprintf(stderr, "rank %d: rc %d, message: %s\n", g_rank, rc, err);
        verdict(name, bad);
        if (g_rank == victim) {
            u ^= 1u << 3;
            memcpy(&p[777], &u, 4);
        }
    }
    free(p);
}

// ---- timings (-v): not a benchmark ----
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Stands in for one layer's backward. A sleep, not a busy loop: on a machine with fewer
// free cores than ranks, spinning ranks are descheduled for whole time slices and the
// skew between ranks, not the all-reduce, dominates the exposed wait.
static void fake_layer(double seconds) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(seconds * 1e9)};
    nanosleep(&ts, NULL);
}

// One timed repetition in the given mode; returns (max over ranks) all-reduce span and wait.
enum { T_N = 2 * 1024 * 1024, T_LAYERS = 16 };
enum { MODE_MPI, MODE_DP, MODE_DP_OVERLAP };
static void timed_rep(DpComm *d, float *g, const TensorSpec *specs, int mode, double out[2]) {
    for (size_t i = 0; i < T_N; i++) g[i] = contrib(1, g_rank, i);
    MPI_CHECK(g_comm, MPI_Barrier(g_comm));
    char err[CX_ERRLEN];
    double mine[2];
    if (mode == MODE_MPI) {  // reference: one plain blocking MPI_Allreduce
        double t0 = MPI_Wtime();
        MPI_CHECK(g_comm, MPI_Allreduce(MPI_IN_PLACE, g, T_N, MPI_FLOAT, MPI_SUM, dp_comm(d)));
        mine[0] = mine[1] = MPI_Wtime() - t0;
    } else {
        if (mode == MODE_DP) {
            if (dp_averager_sum(d, g, T_N, NULL, 0, err) != 0) {
                fprintf(stderr, "rank %d: %s\n", g_rank, err);
                MPI_Abort(g_comm, 1);
            }
        } else {
            // a fake backward of T_LAYERS layers, 1 ms each, last layer first
            dp_begin_step(d);
            for (int l = T_LAYERS - 1; l >= 0; l--) {
                fake_layer(1e-3);
                dp_mark_ready(d, specs[l].offset, specs[l].n);
                dp_progress(d);
            }
            if (dp_finish(d, NULL, 0, err) != 0) {
                fprintf(stderr, "rank %d: %s\n", g_rank, err);
                MPI_Abort(g_comm, 1);
            }
        }
        mine[0] = dp_counters(d)->allreduce_s;
        mine[1] = dp_counters(d)->wait_s;
    }
    MPI_CHECK(g_comm, MPI_Allreduce(mine, out, 2, MPI_DOUBLE, MPI_MAX, g_comm));
}

static void timings(void) {
    enum { REPS = 20, WARM = 3 };
    float *g = cx_calloc(T_N, sizeof *g);
    size_t buckets[] = {(size_t)1 << 20, (size_t)4 << 20};
    TensorSpec specs[T_LAYERS];
    for (int l = 0; l < T_LAYERS; l++) {
        memset(&specs[l], 0, sizeof specs[l]);
        specs[l].offset = (size_t)l * (T_N / T_LAYERS);
        specs[l].n = T_N / T_LAYERS;
    }
    if (g_rank == 0)
        printf("timing (NOT a benchmark: %d rank(s), %d reps after %d warm-up, max over ranks "
               "per rep, ranks may share cores, min/median/max): %d floats (%.0f MiB)\n",
               g_P, REPS, WARM, T_N, T_N * 4.0 / (1 << 20));
    for (int bi = 0; bi < 2; bi++) {
        DpComm *d = dp_create(g_comm, g, T_N, specs, T_LAYERS, buckets[bi]);
        double t[3][2][REPS];
        for (int mode = 0; mode < 3; mode++) {
            if (mode == MODE_MPI && bi > 0) continue;
            for (int rep = -WARM; rep < REPS; rep++) {
                double o[2];
                timed_rep(d, g, specs, mode, o);
                if (rep < 0) continue;
                t[mode][0][rep] = o[0];
                t[mode][1][rep] = o[1];
            }
            qsort(t[mode][0], REPS, sizeof t[mode][0][0], cmp_double);
            qsort(t[mode][1], REPS, sizeof t[mode][1][0], cmp_double);
        }
        if (g_rank == 0) {
            const double *ar = t[MODE_DP][0], *ov = t[MODE_DP_OVERLAP][0],
                         *ow = t[MODE_DP_OVERLAP][1];
            if (bi == 0)
                printf("timing: P=%d plain MPI_Allreduce (one call)        %7.2f/%7.2f/%7.2f ms\n",
                       g_P, t[MODE_MPI][0][0] * 1e3, t[MODE_MPI][0][REPS / 2] * 1e3,
                       t[MODE_MPI][0][REPS - 1] * 1e3);
            printf("timing: P=%d %zu MiB buckets (%d): all-reduce      %7.2f/%7.2f/%7.2f ms",
                   g_P, buckets[bi] >> 20, dp_n_buckets(d), ar[0] * 1e3, ar[REPS / 2] * 1e3,
                   ar[REPS - 1] * 1e3);
            if (g_P > 1) printf("  (algbw %.2f GB/s at the median)", T_N * 4.0 / ar[REPS / 2] / 1e9);
            printf("\n");
            printf("timing: P=%d %zu MiB buckets, overlapped with 16 x 1 ms sleeps as backward: first "
                   "start to completion %.2f ms, exposed wait in dp_finish %.2f/%.2f/%.2f ms",
                   g_P, buckets[bi] >> 20, ov[REPS / 2] * 1e3, ow[0] * 1e3, ow[REPS / 2] * 1e3,
                   ow[REPS - 1] * 1e3);
            if (g_P > 1)
                printf(" (%.0f%% of the non-overlapped median hidden)",
                       100.0 * fmax(0, 1 - ow[REPS / 2] / ar[REPS / 2]));
            printf("\n");
        }
        dp_free(d);
    }
    fflush(stdout);
    free(g);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    g_comm = MPI_COMM_WORLD;  // a test program's choice; the library takes it as a parameter
    MPI_CHECK(g_comm, MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN));
    MPI_CHECK(g_comm, MPI_Comm_rank(g_comm, &g_rank));
    MPI_CHECK(g_comm, MPI_Comm_size(g_comm, &g_P));
    int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    if (argc > 1 && strcmp(argv[1], "--mpi-fatal") == 0) {
        // a failing MPI call under MPI_CHECK must abort the job with a message
        int x = 0;
        MPI_CHECK(g_comm, MPI_Send(&x, 1, MPI_INT, g_P, 0, g_comm));  // no rank g_P
        printf("rank %d: MPI_CHECK let an invalid MPI_Send pass\n", g_rank);
        MPI_Finalize();
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--huge") == 0) {
        float dummy[1] = {0};
        size_t n = SIZE_MAX / sizeof(float) / 2 + 1;
        DpComm *d = dp_create(g_comm, dummy, n, NULL, 0, 64);
        printf("rank %d: dp_create accepted an arena of %zu elements\n", g_rank, n);
        dp_free(d);
        MPI_Finalize();
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--mismatch") == 0) {
        // ranks pass different arenas: dp_create must abort the job with a message
        size_t n = 100 + (size_t)g_rank;
        float *g = cx_calloc(n, sizeof *g);
        DpComm *d = dp_create(g_comm, g, n, NULL, 0, 64);
        printf("rank %d: dp_create accepted a mismatched layout\n", g_rank);
        dp_free(d);
        free(g);
        MPI_Finalize();
        return 1;
    }
    if (g_rank == 0) printf("mpi_dp_check on %d rank(s)\n", g_P);

    TensorSpec specs[N_SPECS];
    size_t n = make_specs(specs);

    struct {
        size_t bucket_bytes;
        unsigned flags;
        const char *what;
    } cfgs[] = {
        {4000, 0, "1000-float buckets, not tensor-aligned"},
        {4100, 0, "1025-float buckets, not aligned, remainder merged"},
        {65536, 0, "64 KiB buckets, not aligned"},
        {4000, DP_ALIGN_TENSORS, "1000-float buckets, tensor-aligned"},
        {256, DP_ALIGN_TENSORS, "64-float buckets, tensor-aligned"},
        {1 << 20, 0, "1 MiB bucket > arena (one bucket)"},
    };
    int n_cfgs = (int)(sizeof cfgs / sizeof cfgs[0]);
    for (int c = 0; c < n_cfgs; c++)
        for (int o = 0; o < N_ORDERS; o++) {
            char name[200];
            snprintf(name, sizeof name, "sum bit-exact, %s, %s", cfgs[c].what, k_order_names[o]);
            verdict(name, run_case(name, n, specs, N_SPECS, cfgs[c].bucket_bytes, cfgs[c].flags,
                                   (MarkOrder)o, (uint64_t)(c * N_ORDERS + o + 1)));
        }

    // arenas smaller than one bucket, and empty
    TensorSpec tiny = {.name = "tiny", .ndim = 1, .shape = {5}, .offset = 0, .n = 5};
    verdict("sum bit-exact, 5-element arena in a 1 MiB bucket, reverse order",
            run_case("tiny", 5, &tiny, 1, 1 << 20, 0, MARK_REVERSE, 7));
    verdict("sum bit-exact, 5-element arena, tensor-aligned, random chunks",
            run_case("tiny-aligned", 5, &tiny, 1, 1 << 20, DP_ALIGN_TENSORS, MARK_RANDOM_CHUNKS, 8));
    verdict("empty arena: no buckets, statistics still summed",
            run_case("empty", 0, NULL, 0, 1 << 20, 0, MARK_NONE, 9));

    // tensor-aligned layout counts for the fake table (computed by hand)
    {
        float *g = cx_calloc(n, sizeof *g);
        long bad = 0;
        DpComm *d = dp_create_ex(g_comm, g, n, specs, N_SPECS, 4000, DP_ALIGN_TENSORS);
        size_t lo, hi;
        dp_bucket_range(d, 0, &lo, &hi);
        bad += dp_n_buckets(d) != 2 || lo != 1010 || hi != n;
        dp_free(d);
        d = dp_create(g_comm, g, n, specs, N_SPECS, 4000);
        bad += dp_n_buckets(d) != 67;
        // the duplicate communicator: congruent with the caller's, not the same
        int cmp;
        MPI_CHECK(g_comm, MPI_Comm_compare(dp_comm(d), g_comm, &cmp));
        bad += cmp != MPI_CONGRUENT;
        // argument errors come back as messages
        char err[CX_ERRLEN] = "";
        bad += dp_averager_sum(d, g, n - 1, NULL, 0, err) != -1 || !strstr(err, "dp_create");
        bad += dp_finish(d, NULL, 2, err) != -1;
        // a valid step still works after those
        bad += dp_finish(d, NULL, 0, err) != 0;
        dp_free(d);
        free(g);
        verdict("layout counts, duplicated communicator, argument errors", bad);
    }

    check_split();
    check_split_never_waits();

    check_replicas();

    if (verbose) timings();

    if (g_rank == 0) printf("%d passed, %d failed\n", g_pass, g_fail);
    fflush(stdout);
    MPI_CHECK(g_comm, MPI_Barrier(g_comm));
    printf("rank %d of %d ran (%d checks)\n", g_rank, g_P, g_checks);
    fflush(stdout);
    MPI_Finalize();
    return g_fail ? 1 : 0;
}
