// encdec.h: encoder-decoder transformer for headline generation (BertSumAbs style).
//
// Encoder: the conflux ALBERT encoder (models/albert.h, encoder only: factorised
// embeddings + one shared post-LN layer applied L times), with exactly ALBERT's parameter
// tensors and names, so it is initialised from an ALBERT checkpoint by reading the
// encoder specs [0, AP_N_ENCODER) (ckpt_read_params with those specs).
//
// Decoder (everything under decoder.* and lm_head.*; linear weights (out,in)):
//   x0 = project_in(dropout(LN_emb(word_embeddings[y] + embed_positions[t])))   E -> H
//     word_embeddings is the ENCODER's (V,E) table (tied); embed_positions (P_dec,E) and
//     layernorm_embedding (E) are the decoder's own; project_in (H,E) is the decoder's own
//     E -> H mapping (ALBERT's factorised-embedding pattern, not shared with the encoder).
//   dec_layers post-LN layers (BERT/ALBERT/BART order), each with its own weights:
//     a1  = LN_self(x + dropout(out_proj(causal_self_attention(x))))
//     a2  = LN_cross(a1 + dropout(out_proj(cross_attention(a1, encoder_out, source mask))))
//     out = LN_final(a2 + dropout(fc2(gelu_tanh(fc1(a2)))))
//     attention-probability dropout inside both attentions (rate dec_dropout).
//   lm_head (ALBERT's MLM-head pattern, so predictions.* of a pretrained ALBERT can seed it):
//     logits = LN_head(gelu_tanh(dense(h))) @ word_embeddings^T + lm_head.bias
//     (dense (E,H); the output projection is tied to the word embeddings).
// Names (Hugging Face / BART style), in arena order after the 23 ALBERT encoder tensors:
//   decoder.embed_positions.weight (P_dec,E)  decoder.layernorm_embedding.{weight,bias} (E)
//   decoder.project_in.weight (H,E) .bias (H)
//   decoder.layers.<l>.self_attn.{q,k,v,out}_proj.{weight (H,H), bias (H)}
//   decoder.layers.<l>.self_attn_layer_norm.{weight,bias} (H)
//   decoder.layers.<l>.encoder_attn.{q,k,v,out}_proj.{weight (H,H), bias (H)}
//   decoder.layers.<l>.encoder_attn_layer_norm.{weight,bias} (H)
//   decoder.layers.<l>.fc1.weight (I_dec,H) .bias (I_dec)  fc2.weight (H,I_dec) .bias (H)
//   decoder.layers.<l>.final_layer_norm.{weight,bias} (H)
//   lm_head.dense.weight (E,H) .bias (E)  lm_head.LayerNorm.{weight,bias} (E)  lm_head.bias (V)
//
// Copy mechanism (copy = 1; pointer-generator, See et al. 2017, on a transformer): the
// output distribution at target position t mixes the vocabulary softmax Pv with a copy
// distribution over the source tokens, by a learned gate:
//   a_t[s]  = the last decoder layer's cross-attention probabilities (before dropout),
//             averaged over its heads (source padding gets 0)
//   g_t     = sigmoid(pointer.gate.weight . [h_t; c_t; x_t] + pointer.gate.bias)
//             h_t the last layer's output (H), c_t its cross-attention context before
//             out_proj (the heads' concatenated outputs, H), x_t the decoder input
//             embedding after layernorm_embedding (E)
//   P_t[v]  = g_t Pv_t[v] + (1 - g_t) sum_{s: src[s] = v} a_t[s]
// and the loss uses P_t in place of Pv: (1-eps)(-log P[y]) + (eps/V) sum_v -log P[v].
// Tensors after the head: pointer.gate.weight (1, 2H+E), pointer.gate.bias (1).
// Decoding returns log P_t as the step's logits (beam.h's log-softmax leaves them as they are).
//
// Loss (teacher forcing): a target row y_1 .. y_n EOS PAD ... (right-padded) is decoded
// from the input BOS y_1 .. y_n (target shifted right, BOS = [CLS]); every non-PAD target
// position contributes PyTorch's CrossEntropyLoss(label_smoothing=eps) term
// (1-eps)(-log p[y]) + (eps/V) sum_v -log p[v]; encdec_step returns the SUM and the token
// count, and the trainer divides by the global token count (as for ALBERT's MLM).
// Token ids: [PAD]=0 [UNK]=1 [CLS]=2 (BOS) [SEP]=3 (EOS) [MASK]=4.
//
// Memory: one parameter arena and one gradient arena for the whole model (the encoder's
// tensors are their prefix), activations sized at creation for the largest micro-batch;
// forward/backward and decoding never allocate. Dropout draws are keyed by (seed, sample
// index, position), so results do not depend on how a batch is split into micro-batches.
#ifndef CONFLUX_ENCDEC_H
#define CONFLUX_ENCDEC_H

#include <stddef.h>
#include <stdint.h>

#include "models/albert.h"
#include "models/beam.h"
#include "models/tensor.h"
#include "models/train.h"

enum { ED_PAD = 0, ED_UNK = 1, ED_BOS = 2, ED_EOS = 3, ED_MASK = 4 };

typedef struct {
    AlbertConfig enc;       // encoder; V, E, H, ln_eps and init_std also serve the decoder
    int dec_layers;         // decoder layers (each with its own weights)
    int dec_heads;          // decoder attention heads (H % dec_heads == 0)
    int dec_intermediate;   // decoder FFN width I_dec
    int dec_max_position;   // P_dec: decoder positions (BOS + target) <= P_dec
    float dec_dropout;      // decoder hidden and attention-probability dropout
    float label_smoothing;  // eps in [0, 1)
    int copy;               // 1: pointer-generator output (see "Copy mechanism" above)
} EncDecConfig;

// Validates; -1 with err naming the offending key.
int encdec_config_check(const EncDecConfig *c, char *err);

// One micro-batch. src_mask NULL means src != PAD. Targets are right-padded with PAD and
// end with EOS (a row may also be all PAD: it contributes nothing). sample_index0: global
// index of the first pair (dropout keys).
typedef struct {
    int B, Ts, Tt;
    const int32_t *src;       // (B,Ts)
    const int32_t *src_mask;  // (B,Ts) 1 = real token, 0 = padding, or NULL
    const int32_t *tgt;       // (B,Tt)
    uint64_t sample_index0;
    int final_micro;          // last micro-batch of an optimizer step: backward hooks fire
} EncDecBatch;

typedef struct EncDec EncDec;

// Creates the model with arenas for micro-batches up to max_B x (max_Ts, max_Tt);
// max_Ts <= enc.max_position, max_Tt <= dec_max_position. Encoder tensors are initialised
// as albert_create does from seed; decoder tensors normal(0, init_std) matrices and
// positions, zero biases, unit LayerNorm weights. CHECKs (setup).
EncDec *encdec_create(const EncDecConfig *cfg, int max_B, int max_Ts, int max_Tt, uint64_t seed);
void encdec_free(EncDec *m);

const EncDecConfig *encdec_config(const EncDec *m);
// Parameter table: the encoder's AP_N_ENCODER ALBERT tensors first (same names, shapes
// and offsets as albert_specs of an encoder-only ALBERT), then the decoder's.
const TensorSpec *encdec_specs(const EncDec *m);
int encdec_n_specs(const EncDec *m);
// Tied names as checkpoint aliases (decoder.embed_tokens.weight, lm_head.decoder.weight
// -> albert.embeddings.word_embeddings.weight).
const TensorAlias *encdec_aliases(int *n);
size_t encdec_n_params(const EncDec *m);
float *encdec_params(EncDec *m);
float *encdec_grads(EncDec *m);
// The encoder (shares the arenas; valid while m lives).
Albert *encdec_encoder(EncDec *m);

// Forward (and with backward != 0, backward ADDING d(loss_sum)/d(param) into the gradient
// arena) of the label-smoothed loss on one micro-batch. train: dropout with seed. Returns
// the summed loss; *n_tokens receives the number of non-PAD target tokens.
double encdec_step(EncDec *m, const EncDecBatch *b, int train, int backward, uint64_t seed,
                   long *n_tokens);

// Backward hooks for overlapping gradient communication with the backward pass (as
// albert_set_backward_hooks). During the backward of a batch with final_micro set,
// ready(ctx, offset, count) reports arena ranges final for the step, in descending address
// order (the default bucket order of mpi/dp.h): the head after its backward, each decoder
// layer after its backward, the decoder's embeddings, then the encoder's ranges (shared
// layer, then its embeddings with the tied word embeddings, which the decoder's input and
// output also use, last). progress(ctx) is called between the backward's operations. NULL
// functions disable them. Also sets the encoder's hooks.
void encdec_set_backward_hooks(EncDec *m, void (*ready)(void *ctx, size_t offset, size_t count),
                               void (*progress)(void *ctx), void *ctx);

// Split gradients (models/train.h) for an overlapping backend, as albert_enable_grad_split:
// in the final micro-batch the input-embedding rows of the encoder (B*Ts, then) and of the
// decoder (B*Tt) go to a row buffer instead of the tied word embeddings, and the encoder's
// shared layer is reported tensor by tensor as its last application's backward finishes
// each. The hooks then report, in order: the head, the word embeddings (their output
// projection), the encoder's unused position rows, each decoder layer, the decoder's
// embeddings, the encoder's shared layer tensor by tensor, the encoder's embedding tail.
// Only with the backend's sum (which adds the rows in) are the gradients complete.
// Allocates on the first call; later calls return the same description (owned by m).
const GradSplit *encdec_enable_grad_split(EncDec *m);

// Teacher-forced logits (B,Tt,V) at every target position (no dropout); with copy, the
// log-probabilities log P of the mixed distribution.
void encdec_logits(EncDec *m, const EncDecBatch *b, float *logits);

// ---- incremental decoding with key/value caches --------------------------------------
// The source is encoded once; every decoder layer's cross-attention keys/values are
// computed once per source; self-attention keys/values are cached per hypothesis and
// position. Uses the model's encoder activations: do not interleave with encdec_step.
typedef struct EncDecGen EncDecGen;

// State for up to max_beam hypotheses of up to max_len generated tokens
// (max_len <= dec_max_position) over sources of up to the model's max_Ts tokens.
EncDecGen *encdec_gen_create(EncDec *m, int max_beam, int max_len);
void encdec_gen_free(EncDecGen *g);
// Encodes one source (Ts tokens, mask NULL = src != PAD) and resets the hypotheses.
void encdec_gen_start(EncDecGen *g, const int32_t *src, const int32_t *src_mask, int Ts);
// A BeamStepFn (ctx = the EncDecGen): see beam.h. Logits equal encdec_logits' at the same
// positions for the same prefixes (up to float rounding).
void encdec_gen_step(void *g, int K, const int32_t *parents, const int32_t *tokens, int t,
                     float *logits);
// Decodes one source: greedy search when c->beam_size == 1, beam search otherwise (c's
// bos/eos are the caller's; ED_BOS/ED_EOS normally). Returns beam_search's result, or -1
// with err when c is invalid for g.
int encdec_generate(EncDecGen *g, const BeamConfig *c, const int32_t *src,
                    const int32_t *src_mask, int Ts, int32_t *out, int *out_len, double *score,
                    char *err);
// Draws sp->n samples of one source (beam_sample; out (sp->n, c->max_len), lens, scores as
// there). Returns the number of complete samples, or -1 with err when c or sp is invalid
// for g.
int encdec_sample(EncDecGen *g, const BeamConfig *c, const BeamSampling *sp, const int32_t *src,
                  const int32_t *src_mask, int Ts, int32_t *out, int *lens, double *scores,
                  char *err);

// ---- ensembles -------------------------------------------------------------------------
// Several models decoded as one (as fairseq's EnsembleModel): the next-token distribution is
// the arithmetic mean of the models' distributions, P[v] = (1/n) sum_i P_i[v], each P_i the
// softmax of model i's step logits (its copy mixture with decoder.copy = 1); the step returns
// log P. The models share one vocabulary (same size, same token ids); each encodes its own
// source tokens (its own src_len). With one model the search equals encdec_generate's.
typedef struct EncDecEnsemble EncDecEnsemble;

// An ensemble of n >= 1 generators (caller-owned, kept alive; each created for at least
// max_beam hypotheses of max_len tokens). CHECKs that the vocabularies agree (setup).
EncDecEnsemble *encdec_ensemble_create(EncDecGen *const *gens, int n, int max_beam, int max_len);
void encdec_ensemble_free(EncDecEnsemble *e);
// A BeamStepFn (ctx = the EncDecEnsemble): every model's encdec_gen_step, then the mean.
void encdec_ensemble_step(void *e, int K, const int32_t *parents, const int32_t *tokens, int t,
                          float *logits);
// Decodes one source given to model i as srcs[i] (Ts[i] tokens; mask: src != PAD), as
// encdec_generate does.
int encdec_ensemble_generate(EncDecEnsemble *e, const BeamConfig *c, const int32_t *const *srcs,
                             const int *Ts, int32_t *out, int *out_len, double *score, char *err);
// Draws samples of one source, as encdec_sample does.
int encdec_ensemble_sample(EncDecEnsemble *e, const BeamConfig *c, const BeamSampling *sp,
                           const int32_t *const *srcs, const int *Ts, int32_t *out, int *lens,
                           double *scores, char *err);

// ---- the training task ----------------------------------------------------------------
// Already-tokenized pairs as a TrainTask: sample s is pair s mod n_pairs of src (n_pairs,
// Ts) and tgt (n_pairs, Tt) (caller-owned, kept alive). Batch buffers are allocated here.
typedef struct {
    EncDec *model;
    const int32_t *src, *tgt;
    size_t n_pairs;
    int Ts, Tt, B;
    uint64_t dropout_seed;
    int32_t *bsrc, *btgt;  // (B,Ts), (B,Tt)
} EncDecTask;

void encdec_task_init(EncDecTask *et, TrainTask *task, EncDec *model, const int32_t *src,
                      const int32_t *tgt, size_t n_pairs, int Ts, int Tt, int micro_batch,
                      uint64_t dropout_seed);
void encdec_task_free(EncDecTask *et);

#endif
