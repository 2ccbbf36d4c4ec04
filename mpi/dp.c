// dp.c: bucketed non-blocking gradient all-reduce (see dp.h for the contract).
#include "mpi/dp.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"

typedef struct {
    size_t lo, hi;    // arena range [lo, hi)
    size_t ready;     // elements of the range marked ready this step
} DpBucket;

// Split rows (GradSplit.rows): ids are exchanged with an all-gather as the step's backward
// begins; once everything is ready, each rank packs its rows into the union of every
// rank's ids (sorted, so the same layout everywhere) and the packed rows are all-reduced.
// Both on their own communicator, so they never interleave with the bucket collectives
// (whose start points differ between ranks relative to these).
typedef struct {
    MPI_Comm comm;
    int max_rows;        // common to every rank (the largest any rank declared)
    int32_t *ids_send;   // max_rows, padded with -1
    int32_t *ids_all;    // P * max_rows, then (sorted, unique) the union
    int n_union;
    float *packed;       // n_union * row_len
    MPI_Request req;     // the ids all-gather, then the rows all-reduce
    int phase;           // 0 idle, 1 ids in flight, 2 rows in flight, 3 done
} DpRows;

struct DpComm {
    MPI_Comm comm;    // duplicate of the caller's communicator, MPI_ERRORS_RETURN
    int rank, size;
    char host[MPI_MAX_PROCESSOR_NAME];
    float *grads;     // borrowed arena [0, n)
    size_t n;
    GradSplit split;  // has_split: the split's rows (borrowed); else zeroed
    int has_split;
    size_t n_ready;   // elements marked ready this step
    DpRows rows;      // has_split with rows
    int n_buckets;
    DpBucket *b;      // index order = start order (see dp.h)
    int *by_addr;     // bucket indices sorted by lo
    MPI_Request *req; // one per bucket; MPI_REQUEST_NULL when not started or done
    MPI_Status *st;   // one per bucket (Testall/Waitall error details)
    uint64_t *bits;   // per-element readiness, 1 bit each
    size_t n_words;
    // step state
    int active;       // between dp_begin_step and the end of dp_finish
    int next;         // buckets started in this step (always 0..next-1)
    int complete;     // every bucket started and observed complete
    double t_first, t_complete;
    int failed;       // an MPI call of this step failed: err holds the first message
    char err[CX_ERRLEN];
    DpCounters c;
};

// ---- fatal paths ----

static void get_host(char *host) {
    int len = 0;
    if (MPI_Get_processor_name(host, &len) != MPI_SUCCESS) len = 0;
    host[len] = '\0';
    if (len == 0) snprintf(host, MPI_MAX_PROCESSOR_NAME, "?");
}

static void abort_on(MPI_Comm comm) __attribute__((noreturn));
static void abort_on(MPI_Comm comm) {
    MPI_Abort(comm == MPI_COMM_NULL ? MPI_COMM_SELF : comm, 1);
    exit(1);  // MPI_Abort does not return in practice
}

// Prints "conflux: fatal: rank R host H FILE:LINE: <msg>" in one write (ranks share stderr),
// then aborts the job.
static void fatal_print_abort(MPI_Comm comm, const char *file, int line, const char *msg)
    __attribute__((noreturn));
static void fatal_print_abort(MPI_Comm comm, const char *file, int line, const char *msg) {
    char host[MPI_MAX_PROCESSOR_NAME], buf[1024];
    int rank = -1;
    if (comm == MPI_COMM_NULL || MPI_Comm_rank(comm, &rank) != MPI_SUCCESS) rank = -1;
    get_host(host);
    snprintf(buf, sizeof buf, "conflux: fatal: rank %d host %.64s %.200s:%d: %.700s\n", rank,
             host, file, line, msg);
    fputs(buf, stderr);
    fflush(stderr);
    abort_on(comm);
}

void dp_mpi_fatal(MPI_Comm comm, int rc, const char *call, const char *file, int line) {
    char s[MPI_MAX_ERROR_STRING], msg[700];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) len = 0;
    s[len] = '\0';
    snprintf(msg, sizeof msg, "%.300s: %.300s", call, len ? s : "unknown MPI error");
    fatal_print_abort(comm, file, line, msg);
}

// A bug in the caller (inconsistent arguments, calls out of order): print and abort the job.
static void bug_fatal(MPI_Comm comm, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
static void bug_fatal(MPI_Comm comm, const char *file, int line, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fatal_print_abort(comm, file, line, msg);
}
#define DP_BUG(comm, cond, ...)                                                   \
    do {                                                                          \
        if (!(cond)) bug_fatal((comm), __FILE__, __LINE__, __VA_ARGS__);         \
    } while (0)

// ---- step errors (tier 2) ----

static void mpi_msg(int rc, char *out, size_t cap) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) len = 0;
    s[len] = '\0';
    snprintf(out, cap, "%s", len ? s : "unknown MPI error");
}

// Remembers the first MPI failure of the step.
static void step_fail(DpComm *d, int rc, const char *what) {
    if (d->failed) return;
    char s[MPI_MAX_ERROR_STRING];
    mpi_msg(rc, s, sizeof s);
    snprintf(d->err, sizeof d->err, "%.96s: %.200s (rank %d of %d, host %.64s)", what, s, d->rank,
             d->size, d->host);
    d->failed = 1;
}

// For MPI_ERR_IN_STATUS: the first request's own error code.
static int first_status_error(int rc, const MPI_Status *st, int count) {
    if (rc != MPI_ERR_IN_STATUS) return rc;
    for (int i = 0; i < count; i++)
        if (st[i].MPI_ERROR != MPI_SUCCESS && st[i].MPI_ERROR != MPI_ERR_PENDING)
            return st[i].MPI_ERROR;
    return rc;
}

// ---- bucket layout ----

static uint64_t mix_word(uint64_t w) {
    w *= 0x9E3779B97F4A7C15ULL;  // odd: a bijection
    w ^= w >> 29;                // xorshift: a bijection
    return w;
}


static int cmp_size_desc(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

// Appends (when out is not NULL) the buckets of the group [glo, ghi), cut from its end;
// returns how many. cuts: candidate boundaries, descending, unique (NULL: any element).
static int layout_group(size_t glo, size_t ghi, size_t be, const size_t *cuts, size_t n_cuts,
                        DpBucket *out) {
    int nb = 0;
    size_t hi = ghi, j = 0;
    while (hi > glo) {
        size_t lo;
        if (!cuts) {
            lo = hi - glo > be ? hi - be : glo;
        } else {
            while (j < n_cuts && cuts[j] >= hi) j++;
            size_t k = j;
            while (k < n_cuts && cuts[k] > glo && hi - cuts[k] < be) k++;
            lo = k < n_cuts && cuts[k] > glo ? cuts[k] : glo;
        }
        if (hi - lo > DP_MAX_BUCKET_ELEMS) lo = hi - DP_MAX_BUCKET_ELEMS;
        // a small remainder at the start of the group joins this bucket
        if (lo > glo && lo - glo < be / 4 && hi - glo <= DP_MAX_BUCKET_ELEMS) lo = glo;
        if (out) out[nb] = (DpBucket){.lo = lo, .hi = hi, .ready = 0};
        nb++;
        hi = lo;
    }
    return nb;
}

// All buckets, group by group in the given order; returns how many.
static int layout(const GradRange *order, int n_order, size_t be, const size_t *cuts,
                  size_t n_cuts, DpBucket *out) {
    int nb = 0;
    for (int g = 0; g < n_order; g++)
        nb += layout_group(order[g].lo, order[g].hi, be, cuts, n_cuts, out ? out + nb : NULL);
    return nb;
}

static int cmp_range(const void *a, const void *b) {
    const GradRange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static const DpBucket *g_sort_b;  // for cmp_bucket_addr (qsort has no context argument)
static int cmp_bucket_addr(const void *a, const void *b) {
    size_t x = g_sort_b[*(const int *)a].lo, y = g_sort_b[*(const int *)b].lo;
    return x < y ? -1 : x > y;
}

// A GradSplit that does not describe the arena is a bug in the model.
static void check_split(MPI_Comm comm, const GradSplit *s, size_t n) {
    DP_BUG(comm, s->n_order >= 1 && s->order, "dp_create: split without an order");
    GradRange *o = cx_calloc((size_t)s->n_order, sizeof *o);
    memcpy(o, s->order, (size_t)s->n_order * sizeof *o);
    qsort(o, (size_t)s->n_order, sizeof *o, cmp_range);
    size_t at = 0;
    for (int i = 0; i < s->n_order; i++) {
        DP_BUG(comm, o[i].lo == at && o[i].hi > o[i].lo && o[i].hi <= n,
               "dp_create: split order does not tile [0, %zu) once (range [%zu, %zu) at %zu)",
               n, o[i].lo, o[i].hi, at);
        at = o[i].hi;
    }
    free(o);
    DP_BUG(comm, at == n, "dp_create: split order covers [0, %zu) of [0, %zu)", at, n);
    if (s->max_rows > 0) {
        DP_BUG(comm, s->rows && s->row_ids && s->n_rows && s->row_len > 0 && s->table_rows > 0,
               "dp_create: split rows without buffers or table");
        DP_BUG(comm, s->table_offset <= n &&
                   (size_t)s->table_rows <= (n - s->table_offset) / (size_t)s->row_len,
               "dp_create: row table (%ld x %d at %zu) outside the arena of %zu", s->table_rows,
               s->row_len, s->table_offset, n);
    }
}

DpComm *dp_create(MPI_Comm comm, float *grads, size_t n, const TensorSpec *specs,
                  int n_specs, size_t bucket_bytes) {
    return dp_create_split(comm, grads, n, specs, n_specs, bucket_bytes, 0, NULL);
}

DpComm *dp_create_ex(MPI_Comm comm, float *grads, size_t n, const TensorSpec *specs,
                     int n_specs, size_t bucket_bytes, unsigned flags) {
    return dp_create_split(comm, grads, n, specs, n_specs, bucket_bytes, flags, NULL);
}

DpComm *dp_create_split(MPI_Comm comm, float *grads, size_t n, const TensorSpec *specs,
                        int n_specs, size_t bucket_bytes, unsigned flags,
                        const GradSplit *split) {
    DP_BUG(comm, comm != MPI_COMM_NULL, "dp_create: null communicator");
    DP_BUG(comm, grads != NULL || n == 0, "dp_create: NULL gradient arena of %zu elements", n);
    DP_BUG(comm, n_specs >= 0 && (specs != NULL || n_specs == 0),
           "dp_create: bad spec table (%d entries)", n_specs);
    DP_BUG(comm, (flags & ~(unsigned)DP_ALIGN_TENSORS) == 0, "dp_create: unknown flags 0x%x",
           flags);
    DP_BUG(comm, n <= SIZE_MAX / sizeof(float) / 2, "dp_create: arena of %zu elements too large",
           n);
    for (int i = 0; i < n_specs; i++)
        DP_BUG(comm, specs[i].n <= n && specs[i].offset <= n - specs[i].n,
               "dp_create: tensor %s [%zu, +%zu) outside the arena of %zu elements",
               specs[i].name, specs[i].offset, specs[i].n, n);
    if (split) check_split(comm, split, n);

    DpComm *d = cx_calloc(1, sizeof *d);
    MPI_CHECK(comm, MPI_Comm_dup(comm, &d->comm));
    MPI_CHECK(d->comm, MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN));
    MPI_CHECK(d->comm, MPI_Comm_rank(d->comm, &d->rank));
    MPI_CHECK(d->comm, MPI_Comm_size(d->comm, &d->size));
    get_host(d->host);
    d->grads = grads;
    d->n = n;
    d->rows.comm = MPI_COMM_NULL;
    d->rows.req = MPI_REQUEST_NULL;
    GradRange whole = {0, n};
    const GradRange *order = &whole;
    int n_order = n > 0 ? 1 : 0;
    if (split) {
        d->split = *split;
        d->has_split = 1;
        order = split->order;
        n_order = split->n_order;
    }

    size_t be = bucket_bytes / sizeof(float);
    if (be == 0) be = 1;
    if (be > DP_MAX_BUCKET_ELEMS) be = DP_MAX_BUCKET_ELEMS;
    size_t *cuts = NULL, n_cuts = 0;
    if (flags & DP_ALIGN_TENSORS) {
        cuts = cx_calloc(2 * (size_t)n_specs + 1, sizeof *cuts);
        for (int i = 0; i < n_specs; i++) {
            size_t a = specs[i].offset, z = specs[i].offset + specs[i].n;
            if (a > 0 && a < n) cuts[n_cuts++] = a;
            if (z > 0 && z < n) cuts[n_cuts++] = z;
        }
        if (n_cuts > 1) qsort(cuts, n_cuts, sizeof *cuts, cmp_size_desc);
        size_t u = 0;
        for (size_t i = 0; i < n_cuts; i++)
            if (u == 0 || cuts[u - 1] != cuts[i]) cuts[u++] = cuts[i];
        n_cuts = u;
    }
    d->n_buckets = layout(order, n_order, be, cuts, n_cuts, NULL);
    d->b = cx_calloc((size_t)d->n_buckets + 1, sizeof *d->b);
    layout(order, n_order, be, cuts, n_cuts, d->b);
    free(cuts);
    d->by_addr = cx_calloc((size_t)d->n_buckets + 1, sizeof *d->by_addr);
    for (int k = 0; k < d->n_buckets; k++) d->by_addr[k] = k;
    g_sort_b = d->b;
    qsort(d->by_addr, (size_t)d->n_buckets, sizeof *d->by_addr, cmp_bucket_addr);
    d->req = cx_calloc((size_t)d->n_buckets + 1, sizeof *d->req);
    d->st = cx_calloc((size_t)d->n_buckets + 1, sizeof *d->st);
    for (int k = 0; k < d->n_buckets; k++) d->req[k] = MPI_REQUEST_NULL;
    d->n_words = (n + 63) / 64;
    d->bits = cx_calloc(d->n_words + 1, sizeof *d->bits);
    d->c.n_buckets = d->n_buckets;

    // Every rank must have the same layout, or the bucket collectives would not match.
    uint64_t mine = mix_word((uint64_t)n);
    for (int k = 0; k < d->n_buckets; k++)
        mine = (mine ^ mix_word(d->b[k].lo ^ mix_word(d->b[k].hi))) * 0x100000001B3ULL;
    if (split) {
        uint64_t f[4] = {split->table_offset, (uint64_t)split->row_len,
                         (uint64_t)split->table_rows, (uint64_t)(split->max_rows > 0)};
        for (int i = 0; i < 4; i++) mine = (mine ^ mix_word(f[i] + (uint64_t)i)) * 0x100000001B3ULL;
    }
    uint64_t mm[2] = {mine, ~mine}, all[2];
    MPI_CHECK(d->comm, MPI_Allreduce(mm, all, 2, MPI_UINT64_T, MPI_MAX, d->comm));
    DP_BUG(d->comm, all[0] == mine && all[1] == ~mine,
           "dp_create: ranks disagree on the gradient layout (n = %zu, %d buckets here)", n,
           d->n_buckets);

    if (split && split->max_rows > 0) {
        DpRows *r = &d->rows;
        MPI_CHECK(d->comm, MPI_Comm_dup(d->comm, &r->comm));
        MPI_CHECK(r->comm, MPI_Comm_set_errhandler(r->comm, MPI_ERRORS_RETURN));
        r->max_rows = split->max_rows;
        MPI_CHECK(r->comm, MPI_Allreduce(MPI_IN_PLACE, &r->max_rows, 1, MPI_INT, MPI_MAX, r->comm));
        size_t all_rows = (size_t)d->size * (size_t)r->max_rows;
        // the union has at most one row per table row, however many ranks send ids
        size_t union_rows = all_rows < (size_t)split->table_rows ? all_rows
                                                                 : (size_t)split->table_rows;
        DP_BUG(d->comm, union_rows * (size_t)split->row_len <= (size_t)INT32_MAX,
               "dp_create: %zu split rows of %d floats exceed an MPI count", union_rows,
               split->row_len);
        r->ids_send = cx_calloc((size_t)r->max_rows, sizeof *r->ids_send);
        r->ids_all = cx_calloc(all_rows, sizeof *r->ids_all);
        r->packed = cx_calloc(union_rows * (size_t)split->row_len, sizeof *r->packed);
    }
    return d;
}

void dp_free(DpComm *d) {
    if (!d) return;
    DP_BUG(d->comm, !d->active, "dp_free with a step in flight (call dp_finish first)");
    MPI_CHECK(d->comm, MPI_Comm_free(&d->comm));
    if (d->rows.comm != MPI_COMM_NULL) MPI_CHECK(d->rows.comm, MPI_Comm_free(&d->rows.comm));
    free(d->rows.ids_send);
    free(d->rows.ids_all);
    free(d->rows.packed);
    free(d->by_addr);
    free(d->b);
    free(d->req);
    free(d->st);
    free(d->bits);
    free(d);
}

// ---- a step ----

void dp_begin_step(DpComm *d) {
    DP_BUG(d->comm, !d->active, "dp_begin_step: the previous step was not finished");
    memset(d->bits, 0, d->n_words * sizeof *d->bits);
    for (int k = 0; k < d->n_buckets; k++) {
        d->b[k].ready = 0;
        d->req[k] = MPI_REQUEST_NULL;
    }
    d->active = 1;
    d->next = 0;
    d->n_ready = 0;
    d->rows.phase = 0;
    d->rows.req = MPI_REQUEST_NULL;
    d->complete = d->n_buckets == 0 && d->rows.comm == MPI_COMM_NULL;
    d->t_first = d->t_complete = 0;
    d->failed = 0;
    d->err[0] = '\0';
}

// Sets readiness bits of [lo, hi); returns how many were not set before.
static size_t set_bits(uint64_t *bits, size_t lo, size_t hi) {
    size_t newly = 0;
    while (lo < hi) {
        size_t w = lo / 64, bit = lo % 64, take = 64 - bit;
        if (take > hi - lo) take = hi - lo;
        uint64_t mask = take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1) << bit;
        newly += (size_t)__builtin_popcountll(mask & ~bits[w]);
        bits[w] |= mask;
        lo += take;
    }
    return newly;
}

static void start_ready(DpComm *d) {
    while (!d->failed && d->next < d->n_buckets) {
        DpBucket *bk = &d->b[d->next];
        if (bk->ready != bk->hi - bk->lo) break;
        if (d->next == 0) d->t_first = MPI_Wtime();
        int rc = MPI_Iallreduce(MPI_IN_PLACE, d->grads + bk->lo, (int)(bk->hi - bk->lo),
                                MPI_FLOAT, MPI_SUM, d->comm, &d->req[d->next]);
        if (rc != MPI_SUCCESS) {
            char what[96];
            snprintf(what, sizeof what, "MPI_Iallreduce of bucket %d [%zu, %zu)", d->next,
                     bk->lo, bk->hi);
            d->req[d->next] = MPI_REQUEST_NULL;
            step_fail(d, rc, what);
            break;
        }
        d->next++;
    }
}

// ---- split rows ----

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

// Phase 0 -> 1: this rank's ids (padded with -1) go to every rank.
static void rows_start_ids(DpComm *d) {
    DpRows *r = &d->rows;
    const GradSplit *s = &d->split;
    int k = *s->n_rows;
    DP_BUG(d->comm, k >= 0 && k <= s->max_rows, "dp: %d split rows (at most %d)", k,
           s->max_rows);
    for (int i = 0; i < k; i++) {
        DP_BUG(d->comm, s->row_ids[i] >= 0 && s->row_ids[i] < s->table_rows,
               "dp: split row %d names table row %d of %ld", i, (int)s->row_ids[i],
               s->table_rows);
        r->ids_send[i] = s->row_ids[i];
    }
    for (int i = k; i < r->max_rows; i++) r->ids_send[i] = -1;
    int rc = MPI_Iallgather(r->ids_send, r->max_rows, MPI_INT32_T, r->ids_all, r->max_rows,
                            MPI_INT32_T, r->comm, &r->req);
    if (rc != MPI_SUCCESS) {
        r->req = MPI_REQUEST_NULL;
        step_fail(d, rc, "MPI_Iallgather of the split row ids");
    }
    r->phase = 1;
}

// Phase 1 -> 2 (the rows are final): waits for the ids (already complete unless called
// from dp_finish), packs this rank's rows into the sorted union of every rank's ids and
// starts their all-reduce.
static void rows_start_sum(DpComm *d) {
    DpRows *r = &d->rows;
    const GradSplit *s = &d->split;
    r->phase = 2;
    if (d->failed) return;
    int rc = MPI_Wait(&r->req, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        step_fail(d, rc, "MPI_Wait on the split row ids");
        return;
    }
    size_t all = (size_t)d->size * (size_t)r->max_rows, u = 0;
    qsort(r->ids_all, all, sizeof *r->ids_all, cmp_i32);
    for (size_t i = 0; i < all; i++)
        if (r->ids_all[i] >= 0 && (u == 0 || r->ids_all[u - 1] != r->ids_all[i]))
            r->ids_all[u++] = r->ids_all[i];
    r->n_union = (int)u;
    size_t E = (size_t)s->row_len;
    memset(r->packed, 0, u * E * sizeof(float));
    for (int i = 0; i < *s->n_rows; i++) {
        const int32_t *at = bsearch(&s->row_ids[i], r->ids_all, u, sizeof *r->ids_all, cmp_i32);
        DP_BUG(d->comm, at != NULL, "dp: split row id %d missing from the union",
               (int)s->row_ids[i]);
        float *dst = r->packed + (size_t)(at - r->ids_all) * E;
        const float *src = s->rows + (size_t)i * E;
        for (size_t e = 0; e < E; e++) dst[e] += src[e];
    }
    rc = MPI_Iallreduce(MPI_IN_PLACE, r->packed, (int)(u * E), MPI_FLOAT, MPI_SUM, r->comm,
                        &r->req);
    if (rc != MPI_SUCCESS) {
        r->req = MPI_REQUEST_NULL;
        step_fail(d, rc, "MPI_Iallreduce of the split rows");
    }
}

// Drives the rows' current operation; 1 when the rows are summed (or there are none).
static int rows_progress(DpComm *d) {
    DpRows *r = &d->rows;
    if (r->comm == MPI_COMM_NULL || r->phase == 3) return 1;
    if (r->phase == 0 || d->failed) return 0;
    int flag = 0;
    int rc = MPI_Test(&r->req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        step_fail(d, rc, r->phase == 1 ? "MPI_Test on the split row ids"
                                       : "MPI_Test on the split rows");
        return 0;
    }
    if (flag && r->phase == 2) r->phase = 3;
    // the ids are in and the rows final: their sum can start (the wait inside returns at once)
    else if (flag && r->phase == 1 && d->n_ready == d->n) rows_start_sum(d);
    return r->phase == 3;
}

// The first bucket whose range ends after virtual element i (by address).
static int first_bucket_after(const DpComm *d, size_t i) {
    int a = 0, z = d->n_buckets;
    while (a < z) {
        int m = a + (z - a) / 2;
        if (d->b[d->by_addr[m]].hi > i) z = m;
        else a = m + 1;
    }
    return a;
}

void dp_mark_ready(DpComm *d, size_t offset, size_t count) {
    DP_BUG(d->comm, d->active, "dp_mark_ready before dp_begin_step");
    DP_BUG(d->comm, count <= d->n && offset <= d->n - count,
           "dp_mark_ready: range [%zu, +%zu) outside the arena of %zu elements", offset,
           count, d->n);
    if (d->rows.comm != MPI_COMM_NULL && d->rows.phase == 0 && !d->failed) rows_start_ids(d);
    if (count == 0) return;
    size_t end = offset + count;
    for (int j = first_bucket_after(d, offset); j < d->n_buckets; j++) {
        DpBucket *bk = &d->b[d->by_addr[j]];
        if (bk->lo >= end) break;
        size_t lo = offset > bk->lo ? offset : bk->lo;
        size_t hi = end < bk->hi ? end : bk->hi;
        size_t newly = set_bits(d->bits, lo, hi);
        bk->ready += newly;
        d->n_ready += newly;
    }
    start_ready(d);
    // everything is final, the rows included: their sum starts once every rank's ids are in
    // (never blocks here: the bridge marks everything at once and must keep serving its
    // sockets while the trainers compute; dp_finish waits if need be)
    if (d->n_ready == d->n && d->rows.phase == 1) rows_progress(d);
}

void dp_mark_all_ready(DpComm *d) { dp_mark_ready(d, 0, d->n); }

void dp_progress(DpComm *d) {
    if (!d->active || d->complete || d->failed) return;
    int rows_done = rows_progress(d);
    if (d->failed) return;
    int flag = 1;
    if (d->next > 0) {
        int rc = MPI_Testall(d->next, d->req, &flag, d->st);
        if (rc != MPI_SUCCESS) {
            step_fail(d, first_status_error(rc, d->st, d->next),
                      "MPI_Testall on gradient buckets");
            return;
        }
    }
    if (flag && d->next == d->n_buckets && rows_done) {
        d->complete = 1;
        d->t_complete = MPI_Wtime();
    }
}

// Adds each summed row into its table row and clears the row count for the next step.
static void fold_rows(DpComm *d) {
    const GradSplit *s = &d->split;
    if (d->rows.comm == MPI_COMM_NULL) return;
    size_t E = (size_t)s->row_len;
    for (int k = 0; k < d->rows.n_union; k++) {
        float *row = d->grads + s->table_offset + (size_t)d->rows.ids_all[k] * E;
        const float *add = d->rows.packed + (size_t)k * E;
        for (size_t e = 0; e < E; e++) row[e] += add[e];
    }
    *s->n_rows = 0;
}

int dp_finish(DpComm *d, double *stats, int n_stats, char *err) {
    if (n_stats < 0 || (n_stats > 0 && !stats))
        return cx_err(err, "dp_finish: bad statistics array (%d entries)", n_stats);
    if (!d->active) dp_begin_step(d);
    double t0 = MPI_Wtime();
    dp_mark_all_ready(d);
    if (d->rows.comm != MPI_COMM_NULL && d->rows.phase == 1 && !d->failed) rows_start_sum(d);
    if (d->next > 0 && !d->complete) {
        int rc = MPI_Waitall(d->next, d->req, d->st);
        if (rc != MPI_SUCCESS)
            step_fail(d, first_status_error(rc, d->st, d->next),
                      "MPI_Waitall on gradient buckets");
    }
    if (d->rows.comm != MPI_COMM_NULL && d->rows.phase == 2 && !d->failed) {
        int rc = MPI_Wait(&d->rows.req, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) step_fail(d, rc, "MPI_Wait on the split rows");
        d->rows.phase = 3;
    }
    double t1 = MPI_Wtime();
    if (!d->complete) {
        d->complete = 1;
        d->t_complete = t1;
    }
    d->active = 0;
    if (d->failed) return cx_err(err, "%s", d->err);
    if (d->has_split) {
        fold_rows(d);
        t1 = MPI_Wtime();
    }

    double t2 = t1;
    if (n_stats > 0) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, stats, n_stats, MPI_DOUBLE, MPI_SUM, d->comm);
        if (rc != MPI_SUCCESS) {
            step_fail(d, rc, "MPI_Allreduce of step statistics");
            return cx_err(err, "%s", d->err);
        }
        t2 = MPI_Wtime();
    }
    DpCounters *c = &d->c;
    double payload = (double)d->n * sizeof(float) + (double)n_stats * sizeof(double);
    double ring = d->size > 1 ? 2.0 * (d->size - 1) / d->size : 0.0;
    double gather = 0.0;
    if (d->rows.comm != MPI_COMM_NULL) {
        payload += (double)d->rows.n_union * d->split.row_len * sizeof(float);
        gather = (double)(d->size - 1) * d->rows.max_rows * sizeof(int32_t);
    }
    c->steps++;
    c->bytes_sent = c->bytes_recv = ring * payload + gather;
    c->wait_s = t1 - t0;
    c->allreduce_s = d->next > 0 ? d->t_complete - d->t_first : 0.0;
    c->stats_s = t2 - t1;
    c->total_bytes_sent += c->bytes_sent;
    c->total_bytes_recv += c->bytes_recv;
    c->total_wait_s += c->wait_s;
    c->total_allreduce_s += c->allreduce_s;
    return 0;
}

int dp_averager_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    DpComm *d = ctx;
    if (!d) return cx_err(err, "dp_averager_sum: no DpComm");
    if (grads != d->grads || n != d->n)
        return cx_err(err,
                      "dp_averager_sum: gradient arena (%p, %zu elements) is not the one "
                      "given to dp_create (%p, %zu elements)",
                      (void *)grads, n, (void *)d->grads, d->n);
    return dp_finish(d, stats, n_stats, err);
}

static void dp_begin_hook(void *ctx) { dp_begin_step(ctx); }
void dp_hook_ready(void *ctx, size_t offset, size_t count) { dp_mark_ready(ctx, offset, count); }
void dp_hook_progress(void *ctx) { dp_progress(ctx); }

static void dp_traffic(const void *ctx, double *bytes_sent, double *bytes_recv) {
    const DpComm *d = ctx;
    *bytes_sent = d->c.bytes_sent;
    *bytes_recv = d->c.bytes_recv;
}

Averager dp_averager(DpComm *d) {
    return (Averager){.ctx = d, .sum = dp_averager_sum, .begin = dp_begin_hook,
                      .ready = dp_hook_ready, .progress = dp_hook_progress,
                      .traffic = dp_traffic, .rank = d->rank, .n_ranks = d->size};
}

int dp_rank(const DpComm *d) { return d->rank; }
int dp_size(const DpComm *d) { return d->size; }
MPI_Comm dp_comm(const DpComm *d) { return d->comm; }
int dp_n_buckets(const DpComm *d) { return d->n_buckets; }
int dp_n_started(const DpComm *d) { return d->next; }
int dp_done(const DpComm *d) { return d->complete || d->failed; }
const DpCounters *dp_counters(const DpComm *d) { return &d->c; }

void dp_bucket_range(const DpComm *d, int k, size_t *lo, size_t *hi) {
    DP_BUG(d->comm, k >= 0 && k < d->n_buckets, "dp_bucket_range: no bucket %d of %d", k,
           d->n_buckets);
    *lo = d->b[k].lo;
    *hi = d->b[k].hi;
}

// ---- replica checks ----

uint64_t dp_checksum(const float *params, size_t n) { return cx_checksum(params, n); }

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// Appends ", r" for every rank whose hash differs from ref, up to a cap.
static void list_ranks(char *out, size_t cap, const uint64_t *all, int P, uint64_t ref) {
    size_t len = strlen(out);
    int shown = 0, more = 0;
    for (int r = 0; r < P; r++) {
        if (all[r] == ref) continue;
        if (shown < 16 && len + 16 < cap) {
            len += (size_t)snprintf(out + len, cap - len, "%s%d", shown ? ", " : "", r);
            shown++;
        } else {
            more++;
        }
    }
    if (more && len + 24 < cap) snprintf(out + len, cap - len, " and %d more", more);
}

int dp_check_replicas(MPI_Comm comm, const float *params, size_t n, long step, char *err) {
    int rank = -1, P = 0, rc;
    char host[MPI_MAX_PROCESSOR_NAME], s[MPI_MAX_ERROR_STRING];
    if ((rc = MPI_Comm_rank(comm, &rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(comm, &P)) != MPI_SUCCESS) {
        get_host(host);
        mpi_msg(rc, s, sizeof s);
        return cx_err(err, "replica check at step %ld: MPI_Comm_rank/size: %s (rank %d, host %s)",
                      step, s, rank, host);
    }
    uint64_t h = dp_checksum(params, n);
    uint64_t *all = malloc((size_t)P * 2 * sizeof *all);
    if (!all) return cx_err(err, "replica check at step %ld: out of memory", step);
    rc = MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, comm);
    if (rc != MPI_SUCCESS) {
        free(all);
        get_host(host);
        mpi_msg(rc, s, sizeof s);
        return cx_err(err, "replica check at step %ld: MPI_Allgather: %s (rank %d of %d, host %s)",
                      step, s, rank, P, host);
    }
    int same = 1;
    for (int r = 1; r < P; r++) same &= all[r] == all[0];
    if (same) {
        free(all);
        return 0;
    }
    // the most common hash (sorted copy in the second half of the buffer)
    uint64_t *sorted = all + P;
    memcpy(sorted, all, (size_t)P * sizeof *all);
    qsort(sorted, (size_t)P, sizeof *sorted, cmp_u64);
    uint64_t mode = sorted[0];
    int best = 0;
    for (int i = 0, j; i < P; i = j) {
        for (j = i; j < P && sorted[j] == sorted[i]; j++) {}
        if (j - i > best) {
            best = j - i;
            mode = sorted[i];
        }
    }
    char msg[CX_ERRLEN];
    if (2 * best > P) {
        snprintf(msg, sizeof msg, "replicas diverged at step %ld: parameters of rank(s) ", step);
        list_ranks(msg, sizeof msg, all, P, mode);
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof msg - len, " differ from the other %d of %d ranks", best, P);
    } else {
        snprintf(msg, sizeof msg,
                 "replicas diverged at step %ld: no majority among %d ranks; rank(s) ", step, P);
        list_ranks(msg, sizeof msg, all, P, all[0]);
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof msg - len, " differ from rank 0");
    }
    free(all);
    return cx_err(err, "%s", msg);
}
