// mpi_tp_check: checks of the tensor-parallel layer (mpi/tp.h) on a P x Q grid of the ranks
// it is started with, against double-precision references computed from the definitions
// on every rank (the whole tensors, from the same counter-based random numbers):
//  - dealing a tensor out and collecting it back (tp_scatter / tp_gather, vectors too) is
//    the identity, and every local element is the global one tp_row_global/tp_col_global
//    name, for block sizes that do and do not divide the shape (uneven last blocks, ranks
//    with nothing);
//  - the linear layer (PSGEMM) forward with bias, and its backward (dinp, dW, dbias after
//    tp_sum_grid_row), with the accumulation into nonzero gradients, within 1e-5 of the
//    tensors' scale;
//  - LayerNorm over features dealt over the grid column, forward and backward;
//  - grids that do not fit the ranks are refused with the numbers in the message;
//  - tp_layout splits the world into replicas of consecutive ranks, with the data-parallel
//    communicator at each grid position.
// Ranks agree on pass/fail by all-reducing their error counts. Rank 0 prints one line per
// check and "N passed, N failed"; every rank prints "rank R of P ran" at the end.
//
// usage: mpirun -np P*Q*D mpi_tp_check P Q   (D data-parallel replicas of the P x Q grid)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/rng.h"
#include "mpi/dp.h"
#include "mpi/tp.h"

static MPI_Comm g_world;
static int g_rank, g_size, g_pass, g_fail;

static int verdict(const char *name, long local_errors, double worst) {
    long in = local_errors, out;
    double w = worst, wmax;
    MPI_CHECK(g_world, MPI_Allreduce(&in, &out, 1, MPI_LONG, MPI_SUM, g_world));
    MPI_CHECK(g_world, MPI_Allreduce(&w, &wmax, 1, MPI_DOUBLE, MPI_MAX, g_world));
    if (out == 0) g_pass++;
    else g_fail++;
    if (g_rank == 0) printf("%s %s (largest relative error %.2e)\n", out == 0 ? "ok:  " : "FAIL:", name, wmax);
    return out == 0;
}

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = cx_rng_normal(seed, i);
}

// Largest |a - ref| over the scale of ref (its largest |value|, at least 1e-3).
static double rel_err(const float *a, const double *ref, size_t n) {
    double scale = 1e-3, e = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs(a[i] - ref[i]));
    return e / scale;
}

typedef struct {
    int N, C, OC, rb, cb;
} Shape;

// Layout: deal out and collect back; the local elements are where the index maps say.
static void check_layout(const TpGrid *g, const Shape *s) {
    long bad = 0;
    size_t n = (size_t)s->N * s->C;
    float *G = cx_calloc(n, sizeof(float)), *back = cx_calloc(n, sizeof(float));
    fill(G, n, 11);
    TpMat A;
    tp_mat_init(&A, g, s->N, s->C, s->rb, s->cb, NULL);
    float *loc = cx_calloc(tp_local_count(g, s->N, s->C, s->rb, s->cb) + 1, sizeof(float));
    tp_mat_init(&A, g, s->N, s->C, s->rb, s->cb, loc);
    tp_scatter(&A, g, g->myrow == 0 && g->mycol == 0 ? G : NULL, 0);
    for (int i = 0; i < A.lrows; i++)
        for (int j = 0; j < A.lcols; j++)
            bad += A.a[(size_t)i * A.lcols + j] !=
                   G[(size_t)tp_row_global(&A, g, i) * s->C + tp_col_global(&A, g, j)];
    tp_gather(&A, g, back, 0);
    if (g->myrow == 0 && g->mycol == 0) bad += memcmp(back, G, n * sizeof(float)) != 0;
    // every element is held by exactly one rank
    long held = (long)A.lrows * A.lcols, total;
    MPI_CHECK(g->comm, MPI_Allreduce(&held, &total, 1, MPI_LONG, MPI_SUM, g->comm));
    bad += total != (long)n;
    // vectors over the columns
    float *v = cx_calloc((size_t)s->C, sizeof(float)), *vb = cx_calloc((size_t)s->C, sizeof(float));
    float *vl = cx_calloc((size_t)tp_vec_local(&A) + 1, sizeof(float));
    fill(v, (size_t)s->C, 12);
    tp_vec_scatter(vl, &A, g, g->myrow == 0 && g->mycol == 0 ? v : NULL, 0);
    for (int j = 0; j < tp_vec_local(&A); j++) bad += vl[j] != v[tp_col_global(&A, g, j)];
    tp_vec_gather(vl, &A, g, vb, 0);
    if (g->myrow == 0 && g->mycol == 0) bad += memcmp(vb, v, (size_t)s->C * sizeof(float)) != 0;
    char name[160];
    snprintf(name, sizeof name, "layout (%d,%d) in blocks of (%d,%d) on %dx%d: deal, collect, index maps",
             s->N, s->C, s->rb, s->cb, g->P, g->Q);
    verdict(name, bad, 0);
    free(G), free(back), free(loc), free(v), free(vb), free(vl);
}

// A distributed copy of a global tensor (dealt from rank 0; every rank has the global).
typedef struct {
    TpMat m;
    float *loc;
} Dist;

static void dist(Dist *d, const TpGrid *g, const float *G, int rows, int cols, int rb, int cb) {
    d->loc = cx_calloc(tp_local_count(g, rows, cols, rb, cb) + 1, sizeof(float));
    tp_mat_init(&d->m, g, rows, cols, rb, cb, d->loc);
    tp_scatter(&d->m, g, G, 0);
}

static double collect_err(const TpGrid *g, const Dist *d, const double *ref) {
    size_t n = (size_t)d->m.rows * d->m.cols;
    float *back = cx_calloc(n, sizeof(float));
    tp_gather(&d->m, g, back, 0);
    double e = g->myrow == 0 && g->mycol == 0 ? rel_err(back, ref, n) : 0;
    free(back);
    return e;
}

static double vec_err(const TpGrid *g, const float *loc, const TpMat *like, const double *ref) {
    float *back = cx_calloc((size_t)like->cols, sizeof(float));
    tp_vec_gather(loc, like, g, back, 0);
    double e = g->myrow == 0 && g->mycol == 0 ? rel_err(back, ref, (size_t)like->cols) : 0;
    free(back);
    return e;
}

static void check_linear(const TpGrid *g, const Shape *s) {
    const int N = s->N, C = s->C, OC = s->OC;
    float *X = cx_calloc((size_t)N * C, 4), *W = cx_calloc((size_t)OC * C, 4), *b = cx_calloc((size_t)OC, 4);
    float *dY = cx_calloc((size_t)N * OC, 4), *dX0 = cx_calloc((size_t)N * C, 4), *dW0 = cx_calloc((size_t)OC * C, 4);
    float *db0 = cx_calloc((size_t)OC, 4);
    fill(X, (size_t)N * C, 1), fill(W, (size_t)OC * C, 2), fill(b, (size_t)OC, 3), fill(dY, (size_t)N * OC, 4);
    fill(dX0, (size_t)N * C, 5), fill(dW0, (size_t)OC * C, 6), fill(db0, (size_t)OC, 7);  // accumulate into these
    // references in double, from the definitions
    double *Y = cx_calloc((size_t)N * OC, 8), *dX = cx_calloc((size_t)N * C, 8), *dW = cx_calloc((size_t)OC * C, 8);
    double *db = cx_calloc((size_t)OC, 8);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double a = b[o];
            for (int c = 0; c < C; c++) a += (double)X[(size_t)n * C + c] * W[(size_t)o * C + c];
            Y[(size_t)n * OC + o] = a;
        }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double a = dX0[(size_t)n * C + c];
            for (int o = 0; o < OC; o++) a += (double)dY[(size_t)n * OC + o] * W[(size_t)o * C + c];
            dX[(size_t)n * C + c] = a;
        }
    for (int o = 0; o < OC; o++) {
        double a = db0[o];
        for (int n = 0; n < N; n++) a += dY[(size_t)n * OC + o];
        db[o] = a;
        for (int c = 0; c < C; c++) {
            double w = dW0[(size_t)o * C + c];
            for (int n = 0; n < N; n++) w += (double)dY[(size_t)n * OC + o] * X[(size_t)n * C + c];
            dW[(size_t)o * C + c] = w;
        }
    }
    // the same on the grid: activations in row blocks rb and feature blocks cb; the weight
    // (OC, C) in blocks (cb, cb)
    Dist x, w, y, dy, dx, dw;
    dist(&x, g, X, N, C, s->rb, s->cb);
    dist(&w, g, W, OC, C, s->cb, s->cb);
    float *Y0 = cx_calloc((size_t)N * OC, 4);
    fill(Y0, (size_t)N * OC, 8);
    dist(&y, g, Y0, N, OC, s->rb, s->cb);  // overwritten by the forward
    dist(&dy, g, dY, N, OC, s->rb, s->cb);
    dist(&dx, g, dX0, N, C, s->rb, s->cb);
    dist(&dw, g, dW0, OC, C, s->cb, s->cb);
    float *bl = cx_calloc((size_t)tp_vec_local(&y.m) + 1, 4), *dbl = cx_calloc((size_t)tp_vec_local(&y.m) + 1, 4);
    tp_vec_scatter(bl, &y.m, g, b, 0);
    // the initial bias gradient sits on grid column 0 only: the grid row's sum adds it once
    tp_vec_scatter(dbl, &y.m, g, db0, 0);
    if (g->mycol != 0) memset(dbl, 0, (size_t)tp_vec_local(&y.m) * sizeof(float));
    tp_linear_forward(&y.m, &x.m, &w.m, bl, g);
    tp_linear_backward(&dx.m, &dw.m, dbl, &dy.m, &x.m, &w.m, g);
    char err[CX_ERRLEN];
    long bad = tp_sum_grid_row(g, dbl, (size_t)tp_vec_local(&y.m), err) != 0;
    double e[4] = {collect_err(g, &y, Y), collect_err(g, &dx, dX), collect_err(g, &dw, dW),
                   vec_err(g, dbl, &y.m, db)};
    static const char *what[4] = {"forward out", "backward dinp (+=)", "backward dW (+=)", "backward dbias (+=, summed over the grid row)"};
    for (int k = 0; k < 4; k++) {
        char name[200];
        snprintf(name, sizeof name, "linear (%d,%d) -> %d, blocks (%d,%d), %dx%d: %s", N, C, OC, s->rb, s->cb,
                 g->P, g->Q, what[k]);
        verdict(name, bad + (e[k] > 1e-5), e[k]);
    }
    free(Y0), free(x.loc), free(w.loc), free(y.loc), free(dy.loc), free(dx.loc), free(dw.loc), free(bl), free(dbl);
    free(X), free(W), free(b), free(dY), free(dX0), free(dW0), free(db0), free(Y), free(dX), free(dW), free(db);
}

static void check_layernorm(TpGrid *g, const Shape *s) {
    const int N = s->N, C = s->C;
    const float eps = 1e-5f;
    float *X = cx_calloc((size_t)N * C, 4), *dY = cx_calloc((size_t)N * C, 4), *w = cx_calloc((size_t)C, 4);
    float *b = cx_calloc((size_t)C, 4);
    fill(X, (size_t)N * C, 21), fill(dY, (size_t)N * C, 22), fill(w, (size_t)C, 23), fill(b, (size_t)C, 24);
    for (size_t i = 0; i < (size_t)N * C; i++) X[i] = 3.0f + 2.0f * X[i];  // a mean and a spread to remove
    double *Y = cx_calloc((size_t)N * C, 8), *dX = cx_calloc((size_t)N * C, 8), *dw = cx_calloc((size_t)C, 8);
    double *db = cx_calloc((size_t)C, 8);
    for (int n = 0; n < N; n++) {
        const float *x = X + (size_t)n * C, *d = dY + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        double rs = 1.0 / sqrt(v + eps), s1 = 0, s2 = 0;
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - m) * rs;
            Y[(size_t)n * C + c] = xh * w[c] + b[c];
            s1 += w[c] * d[c];
            s2 += w[c] * d[c] * xh;
            dw[c] += d[c] * xh;
            db[c] += d[c];
        }
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - m) * rs;
            dX[(size_t)n * C + c] = (w[c] * d[c] - s1 / C - xh * s2 / C) * rs;
        }
    }
    tp_grid_reserve(g, N);
    Dist x, y, dy, dx;
    float *zero = cx_calloc((size_t)N * C, 4);
    dist(&x, g, X, N, C, s->rb, s->cb);
    dist(&y, g, zero, N, C, s->rb, s->cb);
    dist(&dy, g, dY, N, C, s->rb, s->cb);
    dist(&dx, g, zero, N, C, s->rb, s->cb);
    int nl = tp_vec_local(&x.m) + 1;
    float *wl = cx_calloc((size_t)nl, 4), *bl = cx_calloc((size_t)nl, 4), *dwl = cx_calloc((size_t)nl, 4);
    float *dbl = cx_calloc((size_t)nl, 4), *mean = cx_calloc((size_t)x.m.lrows + 1, 4);
    float *rstd = cx_calloc((size_t)x.m.lrows + 1, 4);
    tp_vec_scatter(wl, &x.m, g, w, 0);
    tp_vec_scatter(bl, &x.m, g, b, 0);
    tp_layernorm_forward(&y.m, mean, rstd, &x.m, wl, bl, eps, g);
    tp_layernorm_backward(&dx.m, dwl, dbl, &dy.m, &x.m, mean, rstd, wl, g);
    char err[CX_ERRLEN];
    long bad = tp_sum_grid_row(g, dwl, (size_t)tp_vec_local(&x.m), err) != 0;
    bad += tp_sum_grid_row(g, dbl, (size_t)tp_vec_local(&x.m), err) != 0;
    double e[4] = {collect_err(g, &y, Y), collect_err(g, &dx, dX), vec_err(g, dwl, &x.m, dw),
                   vec_err(g, dbl, &x.m, db)};
    static const char *what[4] = {"forward", "backward dinp", "backward dw", "backward db"};
    for (int k = 0; k < 4; k++) {
        char name[200];
        snprintf(name, sizeof name, "layernorm (%d,%d), blocks (%d,%d), %dx%d: %s", N, C, s->rb, s->cb, g->P,
                 g->Q, what[k]);
        verdict(name, bad + (e[k] > 1e-5), e[k]);
    }
    free(x.loc), free(y.loc), free(dy.loc), free(dx.loc), free(wl), free(bl), free(dwl), free(dbl);
    free(mean), free(rstd), free(zero);
    free(X), free(dY), free(w), free(b), free(Y), free(dX), free(dw), free(db);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    g_world = MPI_COMM_WORLD;  // a test program's choice; the library takes it as a parameter
    MPI_CHECK(g_world, MPI_Comm_rank(g_world, &g_rank));
    MPI_CHECK(g_world, MPI_Comm_size(g_world, &g_size));
    if (argc != 3) {
        if (g_rank == 0) fprintf(stderr, "usage: mpirun -np P*Q*D mpi_tp_check P Q\n");
        MPI_Finalize();
        return 2;
    }
    int P = atoi(argv[1]), Q = atoi(argv[2]);
    char err[CX_ERRLEN];
    // grids that do not fit are refused, naming the numbers
    {
        long bad = 0;
        bad += !(tp_grid_check(g_size, 3, g_size, err) == -1 && strstr(err, "does not divide"));
        bad += !(tp_grid_check(g_size, 0, 1, err) == -1 && strstr(err, "must be >= 1 (got 0 x 1)"));
        TpGrid bg;
        bad += !(tp_grid_create(&bg, g_world, g_size + 1, 1, err) == -1 && strstr(err, "the grid's communicator has"));
        MPI_Comm gc, dc;
        bad += !(tp_layout(g_world, g_size + 1, 1, &gc, &dc, err) == -1 && strstr(err, "does not divide the job's"));
        if (g_rank == 0) printf("  (%s)\n", err);
        verdict("grids that do not fit the ranks are refused with the numbers", bad, 0);
    }
    MPI_Comm grid_comm, dp_comm;
    if (tp_layout(g_world, P, Q, &grid_comm, &dp_comm, err) != 0) {
        if (g_rank == 0) fprintf(stderr, "mpi_tp_check: %s\n", err);
        MPI_Finalize();
        return 2;
    }
    {
        int gs, gr, ds, dr;
        MPI_Comm_size(grid_comm, &gs), MPI_Comm_rank(grid_comm, &gr);
        MPI_Comm_size(dp_comm, &ds), MPI_Comm_rank(dp_comm, &dr);
        long bad = gs != P * Q || gr != g_rank % (P * Q) || ds != g_size / (P * Q) || dr != g_rank / (P * Q);
        verdict("tp_layout: replicas of consecutive ranks, data-parallel ranks at each grid position", bad, 0);
    }
    TpGrid g;
    if (tp_grid_create(&g, grid_comm, P, Q, err) != 0) {
        fprintf(stderr, "mpi_tp_check: %s\n", err);
        MPI_Abort(g_world, 2);
    }
    static const Shape shapes[] = {
        {16, 32, 24, 8, 8},    // blocks divide the shape
        {13, 20, 28, 4, 6},    // uneven last blocks
        {6, 12, 10, 5, 16},    // one feature block: the second grid row holds no feature
        {64, 96, 384, 16, 32}, // an FFN-like shape: (sequences of 16 tokens, heads of 32)
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_layout(&g, &shapes[i]);
        check_linear(&g, &shapes[i]);
        check_layernorm(&g, &shapes[i]);
    }
    tp_grid_free(&g);
    MPI_Comm_free(&grid_comm);
    MPI_Comm_free(&dp_comm);
    if (g_rank == 0) printf("%d passed, %d failed\n", g_pass, g_fail);
    fflush(stdout);
    MPI_Barrier(g_world);
    printf("rank %d of %d ran\n", g_rank, g_size);
    MPI_Finalize();
    return g_fail ? 1 : 0;
}
