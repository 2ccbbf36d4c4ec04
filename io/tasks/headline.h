// headline.h: the encoder-decoder's training data and configuration (conflux-headline
// train, its recipe io/tasks/recipe_encdec.c): the mBART-style denoising corruption, the
// headline and denoising training tasks that feed models/encdec.h through
// models/train.h, and the configuration.
//
// A window of unlabeled text is corrupted as mBART does (Liu et al. 2020): the order of
// its sentences is permuted, then spans whose lengths are drawn from Poisson(lambda) are
// masked until mask_ratio of the tokens are covered; every masked span becomes ONE [MASK]
// (a zero-length span inserts a [MASK]). The decoder reconstructs the original window.
// Every draw is keyed by (seed, sample index), so a sample is the same whoever computes it.
#ifndef CONFLUX_IO_TASKS_HEADLINE_H
#define CONFLUX_IO_TASKS_HEADLINE_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer/bpe.h"
#include "io/run/config.h"
#include "io/store/shard.h"
#include "io/store/pairs.h"
#include "models/encdec.h"
#include "models/optim.h"
#include "models/train.h"

#define HL_PATH_LEN 1024

// ---- denoising ------------------------------------------------------------------------------

typedef struct {
    float mask_ratio;       // share of tokens masked (mBART: 0.35)
    float poisson_lambda;   // span length ~ Poisson(lambda) (mBART: 3.5)
    int permute_sentences;  // 1: shuffle the order of sentences first
} DenoiseConfig;

// Sentence-end table of a tokenizer: out[id] = 1 when token id's text ends a sentence
// (its last non-space character is '.', '!', '?' or '…', or it holds a newline). out has
// bpe_vocab_size entries.
void headline_sentence_ends(const Bpe *bpe, uint8_t *out);

// Corrupts in[0, n) into out (room for 2 n + 1 ids): permutes sentences (split after tokens
// with sent_end[id] set; sent_end may be NULL: one sentence), then masks spans. seed and
// sample key every draw. scratch must hold 3 n + 1 int32. Returns the output length.
// *n_masked (may be NULL) receives the number of original tokens masked.
size_t headline_denoise(const DenoiseConfig *c, const uint8_t *sent_end, const int32_t *in,
                        size_t n, uint64_t seed, uint64_t sample, int32_t *out,
                        int32_t *scratch, size_t *n_masked);

// One Poisson(lambda) draw from counter-based uniforms (Knuth's product method, at most
// 64 factors), keyed by (seed, counter).
int headline_poisson(float lambda, uint64_t seed, uint64_t counter);

// ---- training tasks -------------------------------------------------------------------------
// Sample s maps to example perm_e[s mod n] (e = s / n; perm_e a seeded shuffle per epoch,
// or the identity when shuffle is 0). Each micro-batch is padded to its longest source and
// target, not to the maximum.
//   pairs:   src = [CLS] article[:Ts-2] [SEP], tgt = headline[:Tt-1] EOS.
//   denoise: windows of up to Ts-2 tokens cut from each document of a token shard (windows
//            shorter than 8 tokens dropped); src = [CLS] denoise(window)[:Ts-2] [SEP],
//            tgt = window[:Tt-1] EOS.
typedef struct {
    EncDec *model;
    int kind;              // 0 pairs, 1 denoise
    int Ts, Tt, B;
    uint64_t seed, dropout_seed;
    int shuffle;
    // pairs
    const Pairs *pairs;
    // denoise
    int32_t *tokens;       // window tokens, back to back
    int64_t *win_off;      // n + 1
    DenoiseConfig dn;
    const uint8_t *sent_end;
    size_t n;              // examples
    uint32_t *perm;
    uint64_t perm_epoch;
    int32_t *bsrc, *btgt, *work;  // (B,Ts) (B,Tt) scratch
    int *lens;             // (2B) row lengths of a micro-batch
    uint64_t src_tokens_seen;  // real source tokens of the training micro-batches (throughput)
} HeadlineTask;

// Pairs as a task (p stays alive). max_examples > 0 keeps only the first ones.
void headline_task_pairs(HeadlineTask *ht, TrainTask *task, EncDec *model, const Pairs *p,
                         int Ts, int Tt, int micro_batch, uint64_t seed, int shuffle,
                         uint64_t dropout_seed);
// Denoising over the documents of a token shard (copied). -1 with err when the shard
// has no window of 8 tokens or more, or ids beyond the model's vocabulary.
int headline_task_denoise(HeadlineTask *ht, TrainTask *task, EncDec *model, const Shard *sh,
                          const DenoiseConfig *dn, const uint8_t *sent_end, int Ts, int Tt,
                          int micro_batch, uint64_t seed, int shuffle, uint64_t dropout_seed,
                          char *err);
void headline_task_free(HeadlineTask *ht);
// The (src, tgt) of sample s as the task builds it (unpadded): lengths in *ns, *nt; src
// needs Ts ids, tgt Tt. For tests and tools.
void headline_task_example(HeadlineTask *ht, uint64_t s, int32_t *src, int *ns, int32_t *tgt,
                           int *nt);

// ---- configuration (INI + --set, as io/run/config.h) --------------------------------------------

typedef enum { HL_OBJ_HEADLINE = 0, HL_OBJ_DENOISE = 1 } HeadlineObjective;

typedef struct {
    EncDecConfig model;  // [model] the encoder (ALBERT keys), [decoder] the rest
    OptimConfig optim;   // [optim] encoder group (and shared settings: name, betas, eps, clip)
    OptimConfig optim_dec;  // [optim_decoder] lr, schedule, warmup_steps, end_lr, poly_power,
                            // weight_decay of the decoder group
    int separate_decoder;   // optim.separate_decoder: 1 = two groups, 0 = [optim] for all
    struct {
        int objective;               // HeadlineObjective
        char train[HL_PATH_LEN];     // pair shard (headline) or token shard (denoise)
        char valid[HL_PATH_LEN];     // same kind ("" = none)
        char tokenizer[HL_PATH_LEN];
        int src_len, tgt_len;        // Ts, Tt (including [CLS]/[SEP] and EOS)
        float mask_ratio, poisson_lambda;
        int permute_sentences;
        int lowercase;               // 1: articles and headlines are lowercased (as RIA is)
    } data;
    TrainSettings train;     // [train]: the run loop's keys (io/run/config.h)
    struct {
        char encoder[HL_PATH_LEN];   // conflux ALBERT checkpoint for the encoder ("" = none)
        char from[HL_PATH_LEN];      // encdec checkpoint (e.g. denoise-pretrained) ("" = none)
        int lm_head;                 // 1: with init.encoder, seed lm_head from predictions.*
    } init;
    struct {
        char dir[HL_PATH_LEN];
    } run;
    struct {
        int beam, min_len, max_len, block_trigrams;
        float alpha;
    } generate;
} HeadlineConfig;

extern const CfgSchema HEADLINE_CONFIG_SCHEMA;  // HeadlineConfig's keys (io/run/config.h's engine)
void headline_config_defaults(HeadlineConfig *c);
int headline_config_load_file(HeadlineConfig *c, const char *path, char *err);
int headline_config_load_string(HeadlineConfig *c, const char *text, const char *where,
                                char *err);
int headline_config_set(HeadlineConfig *c, const char *assignment, char *err);
int headline_config_check(const HeadlineConfig *c, char *err);
// The decoder group's optimizer settings (optim.separate_decoder=1): [optim]'s shared
// settings (kind, betas, eps, clipping) with [optim_decoder]'s learning rate, schedule,
// warm-up, end_lr, poly_power and weight decay, over train.steps.
OptimConfig headline_decoder_optim(const HeadlineConfig *c);
size_t headline_config_to_ini(const HeadlineConfig *c, char *buf, size_t cap);
const char *headline_objective_name(int objective);

#endif
