// opcheck.h: helpers of the op test suites (test_ops, test_vision): per-test allocations
// with overrun guards, random data, comparisons with the worst error reported, bitwise
// equality, and central finite differences. Tolerances are the suite's own.
#ifndef CONFLUX_OPCHECK_H
#define CONFLUX_OPCHECK_H

#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/rng.h"

// Finite differences (double ref): eps = 1e-6 gives truncation error ~eps^2 * f''' ~ 1e-12
// and cancellation error ~ 1e-16 * |loss| / eps ~ 1e-10 for our O(1..10) losses, so the
// analytic gradient must match to 1e-6 relative with a 1e-8 absolute floor (for entries
// that are 0, e.g. padding keys). Worst seen: 0.14 of the tolerance.
#define FD_EPS 1e-6
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8

#define TEST_SEED 0x7E57C0FFEEull

// ---------------------------------------------------------------------------------------
// helpers: per-test allocations (freed by the suite's teardown), random data, comparisons.
// Every buffer is followed by a guard of GUARD_BYTES bytes of a known pattern; the teardown
// fails the test whose op wrote past the end of one (a loop bound off by a vector width
// writes there without changing any value the test compares).

#define MAX_ALLOCS 512
#define GUARD_BYTES 256
#define GUARD_BYTE 0xA5
static void *g_allocs[MAX_ALLOCS];
static size_t g_alloc_bytes[MAX_ALLOCS];
static int g_nallocs;
static uint64_t g_draw;  // counter for test-data draws
static int g_verbose;

static inline void *talloc(size_t n, size_t size) {
    CHECK(g_nallocs < MAX_ALLOCS, "test allocated too many buffers");
    size_t bytes = n * size;
    unsigned char *p = cx_calloc(bytes + GUARD_BYTES, 1);
    memset(p + bytes, GUARD_BYTE, GUARD_BYTES);
    g_alloc_bytes[g_nallocs] = bytes;
    g_allocs[g_nallocs++] = p;
    return p;
}

static inline void tfree_all(void) {
    for (int i = 0; i < g_nallocs; i++) {
        const unsigned char *g = (const unsigned char *)g_allocs[i] + g_alloc_bytes[i];
        int k = 0;
        while (k < GUARD_BYTES && g[k] == GUARD_BYTE) k++;
        if (k < GUARD_BYTES)
            fprintf(stderr, "buffer %d of this test (%zu bytes) was written %d bytes past its end\n",
                    i, g_alloc_bytes[i], k);
        CU_ASSERT(k == GUARD_BYTES);
        free(g_allocs[i]);
    }
    g_nallocs = 0;
}

static inline double *dbuf(size_t n) { return talloc(n, sizeof(double)); }
static inline float *fbuf(size_t n) { return talloc(n, sizeof(float)); }
static inline int32_t *ibuf(size_t n) { return talloc(n, sizeof(int32_t)); }

// n normal values, scale * N(0,1) + shift, rounded to float (so float and double see the same)
static inline double *drandn(size_t n, double scale, double shift) {
    double *x = dbuf(n);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(float)(shift + scale * cx_rng_normal(TEST_SEED, g_draw++));
    return x;
}

static inline float *to_f(const double *x, size_t n) {
    float *y = fbuf(n);
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static inline double *to_d(const float *x, size_t n) {
    double *y = dbuf(n);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static inline double *dcopy(const double *x, size_t n) {
    double *y = dbuf(n);
    memcpy(y, x, n * sizeof(double));
    return y;
}

static inline int32_t urand_int(int lo, int hi) {  // uniform in [lo, hi)
    return lo + (int32_t)(cx_rng_uniform(TEST_SEED, g_draw++) * (float)(hi - lo)) % (hi - lo);
}

static inline void report(const char *what, int ok, int line, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, detail);
    if (g_verbose) printf("\n    %s %s", ok ? "ok  " : "FAIL", msg);  // CUnit lists failures
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, msg, __FILE__, "",
                            CU_FALSE);
}

static inline void close_impl(const char *what, const double *got, const double *want, size_t n,
                       double atol, double rtol, int line) {
    size_t worst = 0;
    double worst_ratio = 0.0, worst_err = 0.0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - want[i]);
        double tol = atol + rtol * fabs(want[i]);
        double ratio = err / (tol > 0.0 ? tol : 1e-300);
        if (err == 0.0) ratio = 0.0;
        if (!(err <= tol)) ok = 0;  // also catches NaN
        if (!(ratio <= worst_ratio)) {
            worst_ratio = ratio;
            worst_err = err;
            worst = i;
        }
    }
    char detail[256];
    snprintf(detail, sizeof detail, "n=%zu worst [%zu] got %.9g want %.9g err %.3g (%.3g of tol)",
             n, worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0, worst_err, worst_ratio);
    report(what, ok, line, detail);
}

static inline void closef_impl(const char *what, const float *got, const double *want, size_t n,
                        double atol, double rtol, int line) {
    close_impl(what, to_d(got, n), want, n, atol, rtol, line);
}

#define EXPECT_CLOSE(what, got, want, n, atol, rtol) \
    close_impl(what, got, want, n, atol, rtol, __LINE__)
#define EXPECT_CLOSE_F(what, got, want, n, atol, rtol) \
    closef_impl(what, got, want, n, atol, rtol, __LINE__)

static inline void expect_same_f(const char *what, const float *a, const float *b, size_t n, int line) {
    size_t i = 0;
    while (i < n && memcmp(a + i, b + i, sizeof(float)) == 0) i++;
    char detail[160];
    if (i == n)
        snprintf(detail, sizeof detail, "n=%zu bitwise equal", n);
    else
        snprintf(detail, sizeof detail, "n=%zu first difference at [%zu]: %.9g vs %.9g", n, i,
                 a[i], b[i]);
    report(what, i == n, line, detail);
}
#define EXPECT_SAME_F(what, a, b, n) expect_same_f(what, a, b, n, __LINE__)

static inline double dot(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// ---------------------------------------------------------------------------------------
// finite differences: grad of f w.r.t. every element of x (which f reads through ctx)

typedef double (*LossFn)(void *ctx);

static inline void fd_impl(const char *what, LossFn f, void *ctx, double *x, const double *grad,
                    size_t n, int line) {
    double *num = dbuf(n);
    for (size_t i = 0; i < n; i++) {
        double save = x[i];
        x[i] = save + FD_EPS;
        double lp = f(ctx);
        x[i] = save - FD_EPS;
        double lm = f(ctx);
        x[i] = save;
        num[i] = (lp - lm) / (2.0 * FD_EPS);
    }
    char name[160];
    snprintf(name, sizeof name, "finite differences: %s", what);
    close_impl(name, grad, num, n, FD_ATOL, FD_RTOL, line);
}
#define EXPECT_FD(what, f, ctx, x, grad, n) fd_impl(what, f, ctx, x, grad, n, __LINE__)

#endif
