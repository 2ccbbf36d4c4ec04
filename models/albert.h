// albert.h: ALBERT masked-LM (Hugging Face AlbertForMaskedLM layout).
//
// Factorized embedding (V,E) + positions + token type 0, LayerNorm, dropout, then E -> H;
// one shared transformer layer (post-LayerNorm, GELU-tanh FFN) applied L times; MLM head
// dense H -> E, GELU, LayerNorm, decoder tied to the word embeddings plus a bias.
// Parameter names and shapes follow Hugging Face, so a checkpoint is a state_dict.
//
// Memory: one arena each for parameters, gradients and activations (sized at creation
// for the largest micro-batch B x T); forward/backward never allocate.
#ifndef CONFLUX_ALBERT_H
#define CONFLUX_ALBERT_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"
#include "models/train.h"

typedef struct {
    int vocab_size;         // V
    int embedding_size;     // E
    int hidden_size;        // H
    int num_heads;          // NH (H % NH == 0)
    int intermediate_size;  // I
    int num_layers;         // L (applications of the shared layer)
    int max_position;       // P (T <= P)
    float dropout;          // hidden and attention-probability dropout
    float ln_eps;           // LayerNorm epsilon (HF: 1e-12)
    float init_std;         // N(0, init_std) initialisation (HF: 0.02)
    int sop;                // 1: sentence-order prediction head (pooler + 2-way classifier)
} AlbertConfig;

// Validates a configuration; -1 with err naming the offending key.
int albert_config_check(const AlbertConfig *c, char *err);

enum {
    AP_WORD, AP_POS, AP_TYPE, AP_EMB_LN_W, AP_EMB_LN_B, AP_MAP_W, AP_MAP_B,
    AP_Q_W, AP_Q_B, AP_K_W, AP_K_B, AP_V_W, AP_V_B, AP_O_W, AP_O_B,
    AP_ATT_LN_W, AP_ATT_LN_B, AP_FFN_W, AP_FFN_B, AP_FFNO_W, AP_FFNO_B,
    AP_FULL_LN_W, AP_FULL_LN_B,
    AP_PRED_BIAS, AP_PRED_DENSE_W, AP_PRED_DENSE_B, AP_PRED_LN_W, AP_PRED_LN_B,
    AP_N_MLM,                              // tensors of the MLM-only model
    AP_POOL_W = AP_N_MLM, AP_POOL_B,       // albert.pooler (sop only)
    AP_SOP_W, AP_SOP_B,                    // sop_classifier.classifier (sop only)
    AP_COUNT
};

// One micro-batch. Every array is (B,T) row-major. Positions with attention_mask 0 are
// padding. targets[i] >= 0 selects position i for the MLM loss (the original token id),
// -1 ignores it. sample_index0 is the global index of the first sequence: dropout draws
// are keyed by (seed, sample index, position), so results do not depend on how a global
// batch is split into micro-batches or ranks.
// Sentence-order prediction (models with sop = 1): token_type_ids (B,T) mark segment B
// with 1 (NULL = all 0); sop_labels (B) are 0 for segments in order, 1 for swapped (NULL =
// no SOP loss). The SOP cross-entropy (pooled [CLS] state) enters the gradient with weight
// sop_scale, so that after the trainer divides by the global MLM token count it weighs
// like a per-sequence mean (the MLM task passes the expected masked tokens per sequence).
typedef struct {
    int B, T;
    const int32_t *input_ids;
    const int32_t *attention_mask;
    const int32_t *targets;
    uint64_t sample_index0;
    const int32_t *token_type_ids;
    const int32_t *sop_labels;
    float sop_scale;
    int final_micro;        // last micro-batch of an optimizer step: backward hooks fire
} AlbertBatch;

typedef struct Albert Albert;

// Dropout sites: the RNG stream of each dropout is cx_rng_derive(seed, site): the embedding
// dropout, and per application l of the shared layer the attention probabilities
// (ATT + l) and the attention output (OUT + l). Another implementation of the model (the
// tensor-parallel one, mpi/tp_albert.h) draws the same masks from them.
enum { ALBERT_SITE_EMB = 1, ALBERT_SITE_ATT = 100, ALBERT_SITE_OUT = 1000 };

// Creates the model with arenas for micro-batches up to max_B x max_T. Parameters are
// initialised from seed (normal(0, init_std) matrices, zero biases, unit LayerNorm).
Albert *albert_create(const AlbertConfig *cfg, int max_B, int max_T, uint64_t seed);
void albert_free(Albert *m);

const AlbertConfig *albert_config(const Albert *m);
// Parameter table (HF names, shapes, offsets into the flat arenas), AP_COUNT entries.
const TensorSpec *albert_specs(const Albert *m);
int albert_n_specs(const Albert *m);
// Tied names as checkpoint aliases (predictions.decoder.weight, predictions.decoder.bias).
const TensorAlias *albert_aliases(int *n);
size_t albert_n_params(const Albert *m);
// The parameter table of a model of cfg without building one (AP_COUNT entries of room;
// *n_specs receives how many: AP_N_ENCODER for encoder_only, else AP_N_MLM or AP_COUNT).
// Returns the arena size in floats.
size_t albert_spec_table(const AlbertConfig *cfg, int encoder_only, TensorSpec *specs, int *n_specs);
float *albert_params(Albert *m);   // flat parameter arena (n_params floats)
float *albert_grads(Albert *m);    // flat gradient arena (same layout)

// Forward (and, when backward is non-zero, backward adding into the gradient arena) of
// the MLM loss on one micro-batch. train: applies dropout with seed. Returns the SUM of
// per-token cross-entropy over selected positions; *n_selected receives their count.
// With SOP labels, *sop_sum (may be NULL) receives the summed SOP cross-entropy.
// Gradients are d(loss_sum + sop_scale * sop_sum)/d(param): the trainer divides by the
// global token count.
double albert_step(Albert *m, const AlbertBatch *b, int train, int backward, uint64_t seed,
                   long *n_selected, double *sop_sum);

// Backward hooks for overlapping gradient communication with the backward pass. During
// the backward of a batch with final_micro set, ready(ctx, offset, count) is called as
// soon as a range of the gradient arena is final for the step (tensor plus alignment
// padding): the MLM/SOP heads after the head backward, the shared layer after its last
// application, the embeddings at the end (with albert_enable_grad_split, the finer order
// described there); progress(ctx) is called between the backward's operations (MPI only
// advances non-blocking operations when driven). NULL functions disable the hooks.
void albert_set_backward_hooks(Albert *m, void (*ready)(void *ctx, size_t offset, size_t count),
                               void (*progress)(void *ctx), void *ctx);

// Split gradients (models/train.h) for an overlapping backend, which must then be given the
// returned description and the hooks: in the final micro-batch, the last application
// (layer 0) of the shared layer adds into a stage buffer and the word-embedding rows of
// the input go to a row buffer, one row per token; the hooks then report, in order, the
// heads, the word embeddings (their MLM-decoder part), the shared layer's arena part
// (applications L-1..1) right before layer 0's backward, layer 0's tensors one by one
// as its backward finishes each, and positions/types/LayerNorm/mapping last. Only with
// the backend's sum (which adds stage and rows in) are the gradients complete. Allocates
// the buffers on the first call (later calls return the same description, owned by m).
// Not for encoder-only models.
const GradSplit *albert_enable_grad_split(Albert *m);

// The split for an encoder-only model inside a larger model with split gradients
// (models/encdec.c): in albert_encode_backward of a final micro-batch, the hooks report
// the shared layer tensor by tensor as layer 0's backward finishes each, then the
// embedding tail (the position rows in use; types, LayerNorm and mapping), and the
// input-embedding rows (B*T rows of embedding_size floats, in token order) go to rows
// instead of the word-embedding table (the owner sets their ids and adds them in). Returns
// the ranges it reports, in order (*n of them; owned by m). *unused_pos receives the
// position rows from max_T on, which never get a gradient and which it never reports (the
// owner reports them early; lo == hi when there are none). Once, on a fresh model.
const GradRange *albert_encoder_split(Albert *m, float *rows, int *n, GradRange *unused_pos);

// Inference: fills probs (B*T rows, V columns; only rows with targets >= 0 are written,
// in order of appearance) with the MLM softmax at the selected positions. Returns the
// number of rows written. No dropout.
int albert_predict(Albert *m, const AlbertBatch *b, float *probs);

// ---- the encoder alone (the encoder of a sequence-to-sequence model, models/encdec.h) ----
// The encoder tensors (embeddings, mapping, shared layer) are specs [0, AP_N_ENCODER), a
// prefix of the parameter arena: the MLM and SOP heads come after them.
enum { AP_N_ENCODER = AP_PRED_BIAS };

// Like albert_create, but without the MLM/SOP heads (albert_n_specs() == AP_N_ENCODER,
// albert_n_params() is the encoder prefix) and without their activations. Encoder
// tensors are initialised exactly as albert_create initialises them. albert_step and
// albert_predict refuse such a model; use albert_encode / albert_encode_backward.
Albert *albert_create_encoder(const AlbertConfig *cfg, int max_B, int max_T, uint64_t seed);

// Moves the parameters and gradients into caller-owned arenas of the same layout
// (albert_n_params() floats each, e.g. the prefix of a larger model's arenas): copies the
// current values there, frees the model's own arenas and re-points every view. The caller
// keeps ownership (albert_free does not free them) and keeps them alive while m lives.
void albert_use_arenas(Albert *m, float *params, float *grads);

// Encoder forward of one micro-batch (targets, SOP fields and hooks unused; token types
// used when given). Returns the last layer's hidden states (B,T,H), valid until the next
// forward on m. Dropout (train) is keyed by (seed, sample index) as in albert_step.
const float *albert_encode(Albert *m, const AlbertBatch *b, int train, uint64_t seed);
// Backward of the albert_encode just done with the same (b, train, seed): dout (B,T,H) is
// d(loss)/d(hidden states); gradients of every encoder tensor are ADDED into the arena.
// Backward hooks fire as in albert_step when b->final_micro is set.
void albert_encode_backward(Albert *m, const AlbertBatch *b, int train, uint64_t seed,
                            const float *dout);

#endif
