// mlm.h: masked-LM sequences from a token shard, and the ALBERT training task.
//
// Documents are joined into one stream with [SEP] between them and cut into windows of
// T-2 tokens; sequence = [CLS] window [SEP] (padded only where the stream ends). Global
// sample index s maps to window perm_e[s mod n_windows] with e = s / n_windows and perm_e a
// seeded shuffle (or the identity for validation). Masking is drawn on the fly from a
// counter-based RNG keyed by (seed, s, position): 15% of the real tokens are selected, of
// which 80% become [MASK], 10% a random token, 10% stay. The same (seed, s) always gives
// the same sequence, so the data cursor is just the sample index.
//
// With sentence-order prediction (sop), a window holds T-3 tokens cut at a random point
// into segments A and B; half the sequences (by the same RNG) are swapped:
// [CLS] A [SEP] B [SEP] (label 0) or [CLS] B [SEP] A [SEP] (label 1), token type 1 on the
// second segment and its [SEP]. Segments are consecutive text of the packed stream (they
// may cross a document boundary, marked by [SEP] inside the window).
#ifndef CONFLUX_MLM_H
#define CONFLUX_MLM_H

#include <stddef.h>
#include <stdint.h>

#include "io/store/shard.h"
#include "models/albert.h"
#include "models/train.h"

typedef struct {
    int32_t *stream;   // tokens with [SEP] separators
    size_t n_stream;
    size_t n_windows;
    int T;
    int vocab_size;
    uint64_t seed;
    int shuffle;
    int sop;
    float mask_prob;
    uint32_t *perm;    // n_windows (shuffle only)
    uint64_t perm_epoch;
} MlmData;

// Builds the windows of a shard (copied; the shard may be freed). -1 with err when the
// shard is too small for one window or its vocabulary exceeds vocab_size.
int mlm_data_init(MlmData *d, const Shard *shard, int T, int vocab_size, uint64_t seed,
                  int shuffle, float mask_prob, int sop, char *err);
void mlm_data_free(MlmData *d);

// Fills one sequence (T entries each) for global sample index s. With sop, types (T) and
// *sop_label receive the segment ids and the order label (-1 when the window is too short
// to split); without, they may be NULL.
void mlm_data_fill(MlmData *d, uint64_t s, int32_t *ids, int32_t *mask, int32_t *targets,
                   int32_t *types, int32_t *sop_label);

// ALBERT's masked-LM model on an engine other than models/albert.h: mpi/tp_run.h's, the
// same model tensor-parallel on a process grid, which io/ cannot build (it needs MPI). A
// trainer hands one to recipe_albert (Replica.albert_engine); the recipe builds its data
// and tasks around it as around its own model.
typedef struct AlbertEngine {
    void *ctx;
    // The masked-LM model of cfg (no SOP head) for micro-batches up to max_B x T, its
    // parameters initialised as albert_create(cfg, max_B, T, init_seed) initialises them.
    // NULL with err.
    void *(*create)(void *ctx, const AlbertConfig *cfg, int max_B, int T, uint64_t init_seed,
                    char *err);
    void (*free)(void *ctx, void *model);
    // The model's parameter and gradient arenas and their table, as a TrainTask holds them.
    void (*arena)(void *model, float **params, float **grads, size_t *n_params,
                  const TensorSpec **specs, int *n_specs);
    // As albert_step without SOP: the summed loss of the batch's selected positions, their
    // count in *n_tokens; gradients added when backward.
    double (*step)(void *model, const AlbertBatch *b, int train, int backward, uint64_t seed,
                   long *n_tokens);
    // The model's overlap hooks, as albert_set_backward_hooks (recipe_wire_averager).
    void (*set_hooks)(void *model, void (*ready)(void *ctx, size_t offset, size_t count),
                      void (*progress)(void *ctx), void *ctx);
} AlbertEngine;

// ALBERT + MlmData as a TrainTask. The batch buffers are allocated here, at setup.
typedef struct {
    Albert *model;
    const AlbertEngine *engine;  // with emodel: the model on that engine instead of model
    void *emodel;
    MlmData *data;
    uint64_t dropout_seed;
    int B, T;
    int32_t *ids, *mask, *targets;  // (B,T)
    int32_t *types, *sop_labels;    // (B,T), (B): sentence-order prediction only
} MlmTask;

void mlm_task_init(MlmTask *mt, TrainTask *task, Albert *model, MlmData *data, int micro_batch,
                   uint64_t dropout_seed);
// The same task over a model of an engine (data without SOP).
void mlm_task_init_engine(MlmTask *mt, TrainTask *task, const AlbertEngine *engine, void *emodel,
                          MlmData *data, int micro_batch, uint64_t dropout_seed);
void mlm_task_free(MlmTask *mt);

#endif
