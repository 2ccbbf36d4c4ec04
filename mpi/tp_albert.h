// tp_albert.h: the ALBERT encoder, tensor-parallel on a 2D process grid (mpi/tp.h).
//
// The same model as models/albert.h (the same parameters under the same names, the same
// dropout draws, the same numbers up to float rounding), with its large matrices dealt
// block-cyclically over the grid: the word embeddings (V,E; a grid row sums the rows its
// tokens need), the embedding projection (H,E) and the shared layer's
// query, key, value, output (H,H), ffn (I,H) and ffn_output (H,I) weights, in blocks of
// head_dim x head_dim, each multiplied with PSGEMM. Activations (B*T tokens, features) are
// dealt in row blocks of one sequence (T tokens) over the grid's columns and feature
// blocks of one head (head_dim) over its rows, so a rank holds whole (sequence, head)
// tiles and attention runs on them without communication; LayerNorm sums over the grid
// column (the feature block is a whole number of heads, tp_albert_create). Vectors over features (biases, LayerNorm weights) are held by every rank of a
// grid row (its columns); the position and token-type tables by every rank.
//
// Per-step gradient sums beyond PSGEMM's: tp_albert_reduce_grads (the vectors over the
// grid row, the tables over the grid), before the data-parallel sum and the optimizer.
//
// Parameters live in one local arena per rank, tensor by tensor in albert's spec order
// (each tensor's local part); the specs of tp_albert_local_specs describe it (local
// shapes, the global names), so an optimizer and a data-parallel all-reduce over ranks
// at the same grid position work on it as on any arena.
#ifndef CONFLUX_MPI_TP_ALBERT_H
#define CONFLUX_MPI_TP_ALBERT_H

#include "models/albert.h"
#include "mpi/tp.h"

typedef struct TpAlbert TpAlbert;

// How a tensor is held on the grid.
enum {
    TP_DEALT = 0,   // a matrix dealt block-cyclically (1/(P*Q) of it per rank)
    TP_ROWVEC = 1,  // a vector over features: the rank's columns, the same on its grid row
    TP_WHOLE = 2,   // the whole tensor on every rank
};

// Whether the model fits the grid: -1 with err naming the keys when it does not (a grid
// row without a head: tp.rows > model.num_heads).
int tp_albert_check(const AlbertConfig *cfg, const TpGrid *g, char *err);

// The encoder of cfg (no MLM/SOP head) on grid g (kept by pointer; its scratch reserved
// here), with activations for micro-batches up to max_B x max_T. Features are dealt in
// blocks of block_heads heads (block_heads x head_dim columns, also the weights' column
// block; their rows go in blocks of that / Q); 0 picks num_heads / P when P divides num_heads (one contiguous
// group of heads per grid row, as Megatron-LM splits them: the largest blocks, so PSGEMM
// multiplies the largest panels), else 1. Parameters start at 0: tp_albert_load them.
// CHECKs tp_albert_check (callers check first).
TpAlbert *tp_albert_create(const AlbertConfig *cfg, TpGrid *g, int max_B, int max_T, int block_heads);
// The whole masked-LM model of cfg (model.sop = 0): the encoder and the MLM head, whose
// dense layer (E,H) is dealt and whose decoder is the dealt word table (tied, as albert.h).
TpAlbert *tp_albert_create_mlm(const AlbertConfig *cfg, TpGrid *g, int max_B, int max_T, int block_heads);
void tp_albert_free(TpAlbert *m);
// AP_N_ENCODER, or AP_N_MLM with the head.
int tp_albert_n_specs(const TpAlbert *m);

// The local arenas (tp_albert_n_local floats each) and their table (tp_albert_n_specs:
// global names, local shapes and offsets), and how each tensor is held (TP_*).
size_t tp_albert_n_local(const TpAlbert *m);
float *tp_albert_params(TpAlbert *m);
float *tp_albert_grads(TpAlbert *m);
const TensorSpec *tp_albert_local_specs(const TpAlbert *m);
int tp_albert_holding(const TpAlbert *m, int tensor);
// The whole model's arena (albert's layout: albert_n_params of the same configuration) and
// its table, as tp_albert_collect writes it and tp_albert_deal reads it.
size_t tp_albert_n_full(const TpAlbert *m);
const TensorSpec *tp_albert_full_specs(const TpAlbert *m);
// The feature block (columns) of activations and weights.
int tp_albert_block(const TpAlbert *m);

// Deals a whole encoder parameter arena (albert's layout, albert_n_params of an encoder;
// read on the grid's rank 0 only) out to every rank's local arena. Collective on the grid.
void tp_albert_load(TpAlbert *m, const float *full);
// The same for any arena of the model's layout (an optimizer moment): full (rank 0's) into
// the local arena local. Collective on the grid.
void tp_albert_deal(const TpAlbert *m, const float *full, float *local);
// Collects the local arena src (the parameters, the gradients after
// tp_albert_reduce_grads, or an optimizer moment) into albert's layout on the grid's rank
// 0 (full written there only). Collective on the grid.
void tp_albert_collect(const TpAlbert *m, const float *src, float *full);

// As albert_encode: the last layer's hidden states (B*T, H), dealt as described above
// (valid until the next forward). Collective on the grid.
const TpMat *tp_albert_encode(TpAlbert *m, const AlbertBatch *b, int train, uint64_t seed);
// As albert_encode_backward: dout dealt like the forward's output; gradients ADDED into
// the local gradient arena (partial sums for TP_ROWVEC and TP_WHOLE tensors until
// tp_albert_reduce_grads). Collective on the grid.
void tp_albert_encode_backward(TpAlbert *m, const AlbertBatch *b, int train, uint64_t seed,
                               const TpMat *dout);
// As albert_step (without SOP): forward and, when backward, backward of the MLM loss on
// one micro-batch. Returns the summed cross-entropy over the selected positions (every
// rank the same), *n_selected their count. Collective on the grid.
double tp_albert_step(TpAlbert *m, const AlbertBatch *b, int train, int backward, uint64_t seed,
                      long *n_selected);
// Overlap hooks, as albert_set_backward_hooks: during the backward of a batch with
// final_micro set, ready(ctx, offset, count) reports each dealt matrix's local gradient
// once it is final (the MLM head's dense layer, the shared layer's six matrices after the
// last layer, the embedding projection, the word table), progress(ctx) is called after
// each layer. The vectors and replicated tables are final only after
// tp_albert_reduce_grads, which follows the backward. NULL functions: no hooks.
void tp_albert_set_backward_hooks(TpAlbert *m, void (*ready)(void *ctx, size_t offset, size_t count),
                                  void (*progress)(void *ctx), void *ctx);
// The local arena's ranges in the order those hooks finalise them, the rest last (a
// models/train.h GradSplit without row buffers, for dp_create_split).
const GradSplit *tp_albert_split(const TpAlbert *m);
// Completes a step's gradients: sums the TP_ROWVEC tensors over the grid row and the
// TP_WHOLE ones over the grid. 0, or -1 with err.
int tp_albert_reduce_grads(TpAlbert *m, char *err);

// The trainer's state in the one-rank layout: the parameters and the optimizer's two
// moments of tr (over this model's local arena) collected into full[0..2], malloc'ed on the
// grid's rank 0 (the caller frees them), NULL elsewhere. Collective on the grid.
void tp_albert_collect_state(const TpAlbert *m, const Trainer *tr, float *full[3]);
// Checkpoints in the one-rank layout (docs/checkpoints.md): the grid's rank 0 collects the
// parameters and the optimizer's moments of tr (a trainer over this model's local arena)
// and writes RUN_DIR/checkpoint-STEP.h5 with ckpt_save_trainer (the model "albert", HF
// names, so a checkpoint of any grid loads on one rank and on any other grid); loading,
// rank 0 reads PATH with ckpt_load_trainer and deals the parameters and moments out, with
// the optimizer step and data cursor. Every rank returns rank 0's status and message: 0,
// or -1 with err. Collective on the grid.
int tp_albert_save_trainer(const TpAlbert *m, const Trainer *tr, const char *run_dir, const char *writer,
                           const char *config_text, long seed, char *err);
int tp_albert_load_trainer(TpAlbert *m, Trainer *tr, const char *path, char *err);

// Optim.reduce_norms (models/optim.h) for this model's local arena (ctx: the TpAlbert):
// sums each tensor's squared norms over the grid, counting a grid row's vectors and the
// whole tables once. Collective on the grid.
void tp_albert_reduce_norms(void *ctx, double *sq, int n_specs, int k);

// A matrix laid out like the forward's output for a batch of B x T (local storage a,
// lrows x lcols of it): for dout and for tests.
void tp_albert_out_layout(const TpAlbert *m, int B, int T, TpMat *out, float *a);

#endif
