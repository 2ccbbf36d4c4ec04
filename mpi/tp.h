// tp.h: tensor parallelism on a 2D process grid, with ScaLAPACK's BLACS and PBLAS.
//
// A grid of P x Q ranks holds every large matrix of a model block-cyclically, so each rank
// keeps about 1/(P*Q) of it, and multiplies them with PSGEMM (PBLAS's SUMMA-style
// distributed GEMM). Data-parallel replicas of such a grid form a hybrid layout
// (tp_layout): D = world / (P*Q) grids of consecutive ranks, and the ranks at the same grid
// position across replicas form the data-parallel communicator, so a gradient block is
// all-reduced only with the blocks that hold the same elements.
//
// Layout of a tensor (TpMat). conflux's tensors are row-major (rows, cols): activations
// (tokens, features), linear weights (out, in). ScaLAPACK is column-major, so a TpMat is
// described to it as the column-major transpose (cols x rows), and distributed so that a
// rank's local part is again a row-major matrix:
//   - the tensor's ROWS are dealt over the grid's COLUMNS in blocks of rb rows
//     (a rank in grid column c holds row blocks c, c+Q, c+2Q, ...);
//   - the tensor's COLUMNS are dealt over the grid's ROWS in blocks of cb columns
//     (a rank in grid row r holds column blocks r, r+P, ...);
//   - the local part is a dense row-major (lrows, lcols) array: local row i is the i-th of
//     the rank's rows in global order, and it holds the rank's columns in global order.
// For activations (N tokens, H features) with rb = T (one sequence per block) and cb =
// head_dim, a rank holds whole (sequence, head) tiles: attention needs no communication;
// a row-wise reduction over features (LayerNorm) is a sum over the grid column's P ranks
// (col_comm), a sum over tokens (bias gradients) one over the grid row's Q ranks (row_comm).
// Vectors over features (biases, LayerNorm weights) are held like one row of such a
// tensor: the rank's columns, replicated across the grid row.
//
// Only this directory includes <mpi.h>. Setup errors that come from a configuration (a
// grid that does not fit the ranks or the model) are returned with a message; MPI failures
// during setup abort (MPI_CHECK).
#ifndef CONFLUX_MPI_TP_H
#define CONFLUX_MPI_TP_H

#include <mpi.h>
#include <stddef.h>

// PSGEMM's panel width (pilaenv_, tp.c; CONFLUX_PBLAS_NB overrides it).
#define TP_PBLAS_NB 256
int tp_pblas_nb(void);

typedef struct {
    int P, Q;            // grid rows, grid columns
    int myrow, mycol;    // this rank's position; its rank in comm is myrow * Q + mycol
    int ctxt;            // BLACS context
    MPI_Comm comm;       // the grid's P*Q ranks (a duplicate; owned)
    MPI_Comm row_comm;   // the Q ranks of this grid row, by column (owned)
    MPI_Comm col_comm;   // the P ranks of this grid column, by row (owned)
    double *scratch;     // per-row sums of the row-wise ops (tp_grid_reserve)
    size_t n_scratch;
} TpGrid;

// Whether a P x Q grid fits n_ranks ranks: P, Q >= 1 and n_ranks a multiple of P*Q.
// 0, or -1 with err naming the numbers ("tp.rows x tp.cols = 3 does not divide 4 ranks").
int tp_grid_check(int n_ranks, int P, int Q, char *err);

// Splits world into D = size / (P*Q) replicas of a P x Q grid: *grid_comm holds this
// rank's grid (ranks [d*P*Q, (d+1)*P*Q) of world, in order), *dp_comm the D ranks at this
// rank's grid position (its replica index d is its rank there). Collective on world. The
// caller frees both. -1 with err when the grid does not fit (tp_grid_check).
int tp_layout(MPI_Comm world, int P, int Q, MPI_Comm *grid_comm, MPI_Comm *dp_comm, char *err);

// Makes the P x Q grid over comm's ranks (size P*Q, row-major: rank r is at (r / Q, r % Q)).
// Collective on comm. -1 with err when comm's size is not P*Q.
int tp_grid_create(TpGrid *g, MPI_Comm comm, int P, int Q, char *err);
void tp_grid_free(TpGrid *g);
// Sizes the grid's scratch for row-wise ops on up to max_rows local rows (at model
// creation: the ops themselves never allocate).
void tp_grid_reserve(TpGrid *g, int max_rows);
// The grid's rank 0's outcome on every rank: rc (0, or -1 with err of CX_ERRLEN bytes)
// as rank 0 passed it, err copied along. For work only rank 0 does (reading or writing a
// file, an exchange with the bridge). Collective on g->comm.
int tp_grid_agree(const TpGrid *g, int rc, char *err);
// Sums n floats over the grid row (row_comm), in place: the partial gradients of vectors
// held replicated across the grid row (biases, LayerNorm weights), once per step.
int tp_sum_grid_row(const TpGrid *g, float *x, size_t n, char *err);

// A block-cyclic row-major tensor (see the layout above). The local array is not owned.
typedef struct {
    int rows, cols;      // global shape
    int rb, cb;          // block sizes: rows dealt over grid columns, columns over grid rows
    int lrows, lcols;    // local shape
    int desc[9];         // ScaLAPACK descriptor of the column-major (cols x rows) transpose
    float *a;            // (lrows, lcols) row-major
} TpMat;

// Elements of n dealt in blocks of nb over np processes that coordinate c holds (ScaLAPACK's
// numroc).
int tp_numroc(int n, int nb, int c, int np);
// Local element count of a (rows, cols) tensor with blocks (rb, cb) on this rank.
size_t tp_local_count(const TpGrid *g, int rows, int cols, int rb, int cb);
// Describes a tensor over local storage a (tp_local_count floats; may be NULL to size only).
void tp_mat_init(TpMat *A, const TpGrid *g, int rows, int cols, int rb, int cb, float *a);
// Global index of local row i / local column j.
int tp_row_global(const TpMat *A, const TpGrid *g, int i);
int tp_col_global(const TpMat *A, const TpGrid *g, int j);

// Rank root of g->comm deals a row-major (rows, cols) global array out to every rank's local
// part (global is read on root only), or collects every local part into it (written on
// root only). Collective on g->comm; for checkpoints and tests (the whole tensor passes
// through root).
void tp_scatter(TpMat *A, const TpGrid *g, const float *global, int root);
void tp_gather(const TpMat *A, const TpGrid *g, float *global, int root);
// The same for a vector over a tensor's columns (n = A's cols, blocks of cb): local has
// tp_vec_local(A) entries (the rank's columns); scatter fills them on every rank of the
// grid row, gather takes them from grid column 0.
int tp_vec_local(const TpMat *A);
void tp_vec_scatter(float *local, const TpMat *A, const TpGrid *g, const float *global, int root);
void tp_vec_gather(const float *local, const TpMat *A, const TpGrid *g, float *global, int root);

// ---- layers (forward, backward; backward ADDS into gradients, as models/nn.h) ----
// Linear: out = inp W^T + bias. inp (N, C), W (OC, C), out (N, OC); bias (OC) the rank's
// columns of out (NULL: none). PSGEMM on the grid; out is overwritten.
void tp_linear_forward(TpMat *out, const TpMat *inp, const TpMat *W, const float *bias,
                       const TpGrid *g);
// dinp += dout W (dinp NULL: not needed), dW += dout^T inp, dbias += column sums of dout
// over the rank's rows (NULL: none): a partial sum, completed over the grid row by
// tp_sum_grid_row once per step.
void tp_linear_backward(TpMat *dinp, TpMat *dW, float *dbias, const TpMat *dout,
                        const TpMat *inp, const TpMat *W, const TpGrid *g);

// LayerNorm over the features of each row of inp (N, C), whose columns are dealt over the
// grid column's ranks: out = (x - mean) * rstd * w + b, mean and rstd (the rank's rows,
// lrows each) saved for backward. w, b: the rank's columns. One sum over col_comm (the
// row sums of x and x^2, in double).
void tp_layernorm_forward(TpMat *out, float *mean, float *rstd, const TpMat *inp, const float *w,
                          const float *b, float eps, const TpGrid *g);
// dinp += d/dinp (one sum over col_comm), dw += sum over the rank's rows of dout * xhat,
// db += sum over the rank's rows of dout (partial sums, as tp_linear_backward's dbias).
void tp_layernorm_backward(TpMat *dinp, float *dw, float *db, const TpMat *dout, const TpMat *inp,
                           const float *mean, const float *rstd, const float *w, const TpGrid *g);

#endif
