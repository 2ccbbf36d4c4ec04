// tp.c: tensor parallelism on a 2D process grid (see tp.h).
#include "mpi/tp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "mpi/dp.h"

// BLACS and PBLAS have no C header in Debian's ScaLAPACK: their C entry points, as the
// library exports them (psgemm_ is PBLAS's C implementation: no hidden string lengths).
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
void psgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const float *alpha, const float *a, const int *ia, const int *ja, const int *desca,
             const float *b, const int *ib, const int *jb, const int *descb, const float *beta,
             float *c, const int *ic, const int *jc, const int *descc);

// PBLAS asks PILAENV for the panel width of its distributed GEMM (the k-chunk of each
// local rank-k update and broadcast). ScaLAPACK's own returns 32, which makes every local
// product a rank-32 update at about half of sgemm's rate on these cores; conflux's
// definition replaces it (the way ScaLAPACK documents tuning it, and CP2K does): wider
// panels make the local products sgemm-sized. CONFLUX_PBLAS_NB overrides it (benchmarks).
int pilaenv_(const int *ictxt, const char *prec);
int pilaenv_(const int *ictxt, const char *prec) {
    (void)ictxt, (void)prec;
    static int nb;
    if (!nb) {
        const char *e = getenv("CONFLUX_PBLAS_NB");
        nb = e && atoi(e) > 0 ? atoi(e) : TP_PBLAS_NB;
    }
    return nb;
}

int tp_pblas_nb(void) { return pilaenv_(NULL, "S"); }

int tp_grid_check(int n_ranks, int P, int Q, char *err) {
    if (P < 1 || Q < 1)
        return cx_err(err, "tp.rows and tp.cols must be >= 1 (got %d x %d)", P, Q);
    if (n_ranks % (P * Q) != 0)
        return cx_err(err, "a tp.rows x tp.cols = %d x %d grid (%d ranks) does not divide the job's %d ranks",
                      P, Q, P * Q, n_ranks);
    return 0;
}

int tp_layout(MPI_Comm world, int P, int Q, MPI_Comm *grid_comm, MPI_Comm *dp_comm, char *err) {
    int rank, size;
    MPI_CHECK(world, MPI_Comm_rank(world, &rank));
    MPI_CHECK(world, MPI_Comm_size(world, &size));
    if (tp_grid_check(size, P, Q, err) != 0) return -1;
    MPI_CHECK(world, MPI_Comm_split(world, rank / (P * Q), rank, grid_comm));
    MPI_CHECK(world, MPI_Comm_split(world, rank % (P * Q), rank, dp_comm));
    return 0;
}

int tp_grid_create(TpGrid *g, MPI_Comm comm, int P, int Q, char *err) {
    memset(g, 0, sizeof *g);
    int size, rank;
    MPI_CHECK(comm, MPI_Comm_size(comm, &size));
    MPI_CHECK(comm, MPI_Comm_rank(comm, &rank));
    if (P < 1 || Q < 1 || P * Q != size)
        return cx_err(err, "a tp.rows x tp.cols = %d x %d grid needs %d ranks, the grid's communicator has %d",
                      P, Q, P * Q, size);
    MPI_CHECK(comm, MPI_Comm_dup(comm, &g->comm));
    MPI_CHECK(comm, MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN));
    g->P = P;
    g->Q = Q;
    g->myrow = rank / Q;
    g->mycol = rank % Q;
    MPI_CHECK(g->comm, MPI_Comm_split(g->comm, g->myrow, g->mycol, &g->row_comm));
    MPI_CHECK(g->comm, MPI_Comm_split(g->comm, g->mycol, g->myrow, &g->col_comm));
    MPI_CHECK(g->comm, MPI_Comm_set_errhandler(g->row_comm, MPI_ERRORS_RETURN));
    MPI_CHECK(g->comm, MPI_Comm_set_errhandler(g->col_comm, MPI_ERRORS_RETURN));
    g->ctxt = Csys2blacs_handle(g->comm);
    Cblacs_gridinit(&g->ctxt, "Row", P, Q);
    int p, q, r, c;
    Cblacs_gridinfo(g->ctxt, &p, &q, &r, &c);
    CHECK(p == P && q == Q && r == g->myrow && c == g->mycol,
          "BLACS grid %dx%d at (%d,%d), expected %dx%d at (%d,%d)", p, q, r, c, P, Q, g->myrow, g->mycol);
    return 0;
}

int tp_grid_agree(const TpGrid *g, int rc, char *err) {
    MPI_CHECK(g->comm, MPI_Bcast(&rc, 1, MPI_INT, 0, g->comm));
    if (rc != 0) MPI_CHECK(g->comm, MPI_Bcast(err, CX_ERRLEN, MPI_CHAR, 0, g->comm));
    return rc;
}

void tp_grid_free(TpGrid *g) {
    if (!g->comm) return;
    Cblacs_gridexit(g->ctxt);
    MPI_Comm_free(&g->row_comm);
    MPI_Comm_free(&g->col_comm);
    MPI_Comm_free(&g->comm);
    free(g->scratch);
    memset(g, 0, sizeof *g);
}

void tp_grid_reserve(TpGrid *g, int max_rows) {
    size_t n = 2 * (size_t)(max_rows > 0 ? max_rows : 1);
    if (n <= g->n_scratch) return;
    free(g->scratch);
    g->scratch = cx_calloc(n, sizeof(double));
    g->n_scratch = n;
}

int tp_sum_grid_row(const TpGrid *g, float *x, size_t n, char *err) {
    if (g->Q == 1 || n == 0) return 0;
    CHECK(n <= (size_t)INT32_MAX, "tp_sum_grid_row: %zu floats", n);
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, g->row_comm);
    if (rc != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, msg, &len);
        return cx_err(err, "sum over the tensor-parallel grid row: %s", msg);
    }
    return 0;
}

// ---- block-cyclic layout ----

int tp_numroc(int n, int nb, int c, int np) {
    int nblocks = n / nb, k = nblocks / np * nb, extra = nblocks % np;
    if (c < extra) k += nb;
    else if (c == extra) k += n % nb;
    return k;
}

// Global index of local index i (block nb over np processes, coordinate c).
static int local_to_global(int i, int nb, int c, int np) {
    return (i / nb) * nb * np + c * nb + i % nb;
}

size_t tp_local_count(const TpGrid *g, int rows, int cols, int rb, int cb) {
    return (size_t)tp_numroc(rows, rb, g->mycol, g->Q) * (size_t)tp_numroc(cols, cb, g->myrow, g->P);
}

void tp_mat_init(TpMat *A, const TpGrid *g, int rows, int cols, int rb, int cb, float *a) {
    CHECK(rows >= 1 && cols >= 1 && rb >= 1 && cb >= 1, "tp_mat_init: (%d,%d) blocks (%d,%d)",
          rows, cols, rb, cb);
    static float none;  // PBLAS is handed a valid pointer even for an empty local part
    A->rows = rows;
    A->cols = cols;
    A->rb = rb;
    A->cb = cb;
    A->lrows = tp_numroc(rows, rb, g->mycol, g->Q);
    A->lcols = tp_numroc(cols, cb, g->myrow, g->P);
    // the column-major (cols x rows) transpose: its rows (our columns) over the grid rows
    int d[9] = {1, g->ctxt, cols, rows, cb, rb, 0, 0, A->lcols > 1 ? A->lcols : 1};
    memcpy(A->desc, d, sizeof d);
    A->a = a && A->lrows > 0 && A->lcols > 0 ? a : &none;
}

int tp_row_global(const TpMat *A, const TpGrid *g, int i) { return local_to_global(i, A->rb, g->mycol, g->Q); }
int tp_col_global(const TpMat *A, const TpGrid *g, int j) { return local_to_global(j, A->cb, g->myrow, g->P); }

// Copies between a global row-major array and the local part of the rank at (pr, pc),
// packed (lrows, lcols) row-major. to_local: global -> packed, else packed -> global.
static void pack_part(const TpMat *A, int pr, int pc, int P, int Q, float *global, float *packed,
                      int to_local) {
    int lr = tp_numroc(A->rows, A->rb, pc, Q), lc = tp_numroc(A->cols, A->cb, pr, P);
    for (int i = 0; i < lr; i++) {
        size_t gi = (size_t)local_to_global(i, A->rb, pc, Q) * (size_t)A->cols;
        for (int j = 0; j < lc; j++) {
            size_t gidx = gi + (size_t)local_to_global(j, A->cb, pr, P);
            if (to_local) packed[(size_t)i * lc + j] = global[gidx];
            else global[gidx] = packed[(size_t)i * lc + j];
        }
    }
}

// Counts and displacements of every rank's local part (on root).
static void part_counts(const TpMat *A, const TpGrid *g, int *counts, int *displs) {
    size_t off = 0;
    for (int k = 0; k < g->P * g->Q; k++) {
        int pr = k / g->Q, pc = k % g->Q;
        size_t n = (size_t)tp_numroc(A->rows, A->rb, pc, g->Q) * (size_t)tp_numroc(A->cols, A->cb, pr, g->P);
        CHECK(off + n <= (size_t)INT32_MAX, "tensor of %d x %d too large to deal out", A->rows, A->cols);
        counts[k] = (int)n;
        displs[k] = (int)off;
        off += n;
    }
}

// On root: every rank's part counts and offsets, and a buffer for the whole tensor;
// elsewhere all NULL. Returns whether this rank is root.
static int root_parts(const TpMat *A, const TpGrid *g, int root, int **counts, int **displs, float **buf) {
    int n = g->P * g->Q;
    *counts = *displs = NULL;
    *buf = NULL;
    if (g->myrow * g->Q + g->mycol != root) return 0;
    *counts = cx_calloc((size_t)n, sizeof(int));
    *displs = cx_calloc((size_t)n, sizeof(int));
    part_counts(A, g, *counts, *displs);
    *buf = cx_calloc((size_t)A->rows * (size_t)A->cols, sizeof(float));
    return 1;
}

void tp_scatter(TpMat *A, const TpGrid *g, const float *global, int root) {
    int *counts, *displs;
    float *buf;
    if (root_parts(A, g, root, &counts, &displs, &buf))
        for (int k = 0; k < g->P * g->Q; k++)
            pack_part(A, k / g->Q, k % g->Q, g->P, g->Q, (float *)global, buf + displs[k], 1);
    MPI_CHECK(g->comm, MPI_Scatterv(buf, counts, displs, MPI_FLOAT, A->a, A->lrows * A->lcols, MPI_FLOAT, root,
                                    g->comm));
    free(buf);
    free(counts);
    free(displs);
}

void tp_gather(const TpMat *A, const TpGrid *g, float *global, int root) {
    int *counts, *displs;
    float *buf;
    int is_root = root_parts(A, g, root, &counts, &displs, &buf);
    MPI_CHECK(g->comm, MPI_Gatherv(A->a, A->lrows * A->lcols, MPI_FLOAT, buf, counts, displs, MPI_FLOAT, root,
                                   g->comm));
    if (is_root)
        for (int k = 0; k < g->P * g->Q; k++) pack_part(A, k / g->Q, k % g->Q, g->P, g->Q, global, buf + displs[k], 0);
    free(buf);
    free(counts);
    free(displs);
}

int tp_vec_local(const TpMat *A) { return A->lcols; }

// A vector over A's columns as a one-row tensor with A's column blocks.
static TpMat vec_view(const TpMat *A, const TpGrid *g, float *local) {
    TpMat v;
    TpGrid g1 = *g;
    g1.mycol = 0;  // every grid column holds the same (one row: row block 0 is column 0's)
    tp_mat_init(&v, &g1, 1, A->cols, 1, A->cb, local);
    return v;
}

void tp_vec_scatter(float *local, const TpMat *A, const TpGrid *g, const float *global, int root) {
    int me = g->myrow * g->Q + g->mycol, n = g->P * g->Q;
    int *counts = NULL, *displs = NULL;
    float *buf = NULL;
    TpMat v = vec_view(A, g, local);
    if (me == root) {
        counts = cx_calloc((size_t)n, sizeof(int));
        displs = cx_calloc((size_t)n, sizeof(int));
        size_t off = 0;
        for (int k = 0; k < n; k++) {
            counts[k] = tp_numroc(A->cols, A->cb, k / g->Q, g->P);
            displs[k] = (int)off;
            off += (size_t)counts[k];
        }
        buf = cx_calloc(off ? off : 1, sizeof(float));
        for (int k = 0; k < n; k++) pack_part(&v, k / g->Q, 0, g->P, 1, (float *)global, buf + displs[k], 1);
    }
    MPI_CHECK(g->comm, MPI_Scatterv(buf, counts, displs, MPI_FLOAT, v.a, v.lcols, MPI_FLOAT, root, g->comm));
    free(buf);
    free(counts);
    free(displs);
}

void tp_vec_gather(const float *local, const TpMat *A, const TpGrid *g, float *global, int root) {
    int me = g->myrow * g->Q + g->mycol, n = g->P * g->Q;
    int *counts = NULL, *displs = NULL;
    float *buf = NULL;
    TpMat v = vec_view(A, g, (float *)local);
    if (me == root) {
        counts = cx_calloc((size_t)n, sizeof(int));
        displs = cx_calloc((size_t)n, sizeof(int));
        size_t off = 0;
        for (int k = 0; k < n; k++) {
            counts[k] = k % g->Q == 0 ? tp_numroc(A->cols, A->cb, k / g->Q, g->P) : 0;
            displs[k] = (int)off;
            off += (size_t)counts[k];
        }
        buf = cx_calloc(off ? off : 1, sizeof(float));
    }
    MPI_CHECK(g->comm, MPI_Gatherv(v.a, g->mycol == 0 ? v.lcols : 0, MPI_FLOAT, buf, counts, displs,
                                   MPI_FLOAT, root, g->comm));
    if (me == root)
        for (int k = 0; k < n; k += g->Q) pack_part(&v, k / g->Q, 0, g->P, 1, global, buf + displs[k], 0);
    free(buf);
    free(counts);
    free(displs);
}

// ---- layers ----

static const int I1 = 1;
static const float F0 = 0.0f, F1 = 1.0f;

void tp_linear_forward(TpMat *out, const TpMat *inp, const TpMat *W, const float *bias,
                       const TpGrid *g) {
    // column-major: out^T (OC x N) = (W^T)^T (OC x C) . inp^T (C x N)
    const int N = inp->rows, C = inp->cols, OC = W->rows;
    CHECK(W->cols == C && out->rows == N && out->cols == OC, "tp_linear_forward: (%d,%d) x (%d,%d)^T -> (%d,%d)",
          N, C, W->rows, W->cols, out->rows, out->cols);
    psgemm_("T", "N", &OC, &N, &C, &F1, W->a, &I1, &I1, W->desc, inp->a, &I1, &I1, inp->desc, &F0,
            out->a, &I1, &I1, out->desc);
    if (bias)
        for (int i = 0; i < out->lrows; i++) {
            float *o = out->a + (size_t)i * out->lcols;
            for (int j = 0; j < out->lcols; j++) o[j] += bias[j];
        }
    (void)g;
}

void tp_linear_backward(TpMat *dinp, TpMat *dW, float *dbias, const TpMat *dout,
                        const TpMat *inp, const TpMat *W, const TpGrid *g) {
    const int N = inp->rows, C = inp->cols, OC = W->rows;
    CHECK(W->cols == C && dout->rows == N && dout->cols == OC && dW->rows == OC && dW->cols == C,
          "tp_linear_backward: shapes");
    if (dinp)  // dinp^T (C x N) += W^T (C x OC) . dout^T (OC x N)
        psgemm_("N", "N", &C, &N, &OC, &F1, W->a, &I1, &I1, W->desc, dout->a, &I1, &I1, dout->desc,
                &F1, dinp->a, &I1, &I1, dinp->desc);
    // dW^T (C x OC) += inp^T (C x N) . dout (N x OC)
    psgemm_("N", "T", &C, &OC, &N, &F1, inp->a, &I1, &I1, inp->desc, dout->a, &I1, &I1, dout->desc,
            &F1, dW->a, &I1, &I1, dW->desc);
    if (dbias)
        for (int i = 0; i < dout->lrows; i++) {
            const float *d = dout->a + (size_t)i * dout->lcols;
            for (int j = 0; j < dout->lcols; j++) dbias[j] += d[j];
        }
    (void)g;
}

// Sums 2 doubles per local row over the grid column (a reduction over the features).
static void sum_rows(const TpGrid *g, double *s, int lrows) {
    if (g->P > 1 && lrows > 0)
        MPI_CHECK(g->comm, MPI_Allreduce(MPI_IN_PLACE, s, 2 * lrows, MPI_DOUBLE, MPI_SUM, g->col_comm));
}

void tp_layernorm_forward(TpMat *out, float *mean, float *rstd, const TpMat *inp, const float *w,
                          const float *b, float eps, const TpGrid *g) {
    const int R = inp->lrows, Cl = inp->lcols;
    CHECK(2 * (size_t)R <= g->n_scratch, "tp_layernorm_forward: %d rows, scratch for %zu (tp_grid_reserve)",
          R, g->n_scratch / 2);
    double *s = g->scratch;
    for (int i = 0; i < R; i++) {
        const float *x = inp->a + (size_t)i * Cl;
        double s1 = 0, s2 = 0;
        for (int j = 0; j < Cl; j++) {
            s1 += x[j];
            s2 += (double)x[j] * x[j];
        }
        s[2 * i] = s1;
        s[2 * i + 1] = s2;
    }
    sum_rows(g, s, R);
    const double C = inp->cols;
    for (int i = 0; i < R; i++) {
        double m = s[2 * i] / C, var = s[2 * i + 1] / C - m * m;
        if (var < 0) var = 0;
        float mf = (float)m, rs = (float)(1.0 / sqrt(var + eps));
        mean[i] = mf;
        rstd[i] = rs;
        const float *x = inp->a + (size_t)i * Cl;
        float *o = out->a + (size_t)i * Cl;
        for (int j = 0; j < Cl; j++) o[j] = (x[j] - mf) * rs * w[j] + b[j];
    }
}

void tp_layernorm_backward(TpMat *dinp, float *dw, float *db, const TpMat *dout, const TpMat *inp,
                           const float *mean, const float *rstd, const float *w, const TpGrid *g) {
    const int R = inp->lrows, Cl = inp->lcols;
    CHECK(2 * (size_t)R <= g->n_scratch, "tp_layernorm_backward: %d rows, scratch for %zu (tp_grid_reserve)",
          R, g->n_scratch / 2);
    double *s = g->scratch;
    for (int i = 0; i < R; i++) {
        const float *x = inp->a + (size_t)i * Cl, *d = dout->a + (size_t)i * Cl;
        double s1 = 0, s2 = 0;
        for (int j = 0; j < Cl; j++) {
            float xh = (x[j] - mean[i]) * rstd[i], dn = w[j] * d[j];
            s1 += dn;
            s2 += (double)dn * xh;
            dw[j] += xh * d[j];
            db[j] += d[j];
        }
        s[2 * i] = s1;
        s[2 * i + 1] = s2;
    }
    sum_rows(g, s, R);
    const double C = inp->cols;
    for (int i = 0; i < R; i++) {
        const float *x = inp->a + (size_t)i * Cl, *d = dout->a + (size_t)i * Cl;
        float *dx = dinp->a + (size_t)i * Cl;
        float m1 = (float)(s[2 * i] / C), m2 = (float)(s[2 * i + 1] / C);
        for (int j = 0; j < Cl; j++) {
            float xh = (x[j] - mean[i]) * rstd[i], dn = w[j] * d[j];
            dx[j] += (dn - m1 - xh * m2) * rstd[i];
        }
    }
}
