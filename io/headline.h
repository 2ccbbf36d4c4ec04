// headline.h: data for headline generation (conflux-headline): the pair shard format,
// (article, headline) pairs from news files and from Debian's Russian texts, the
// first-sentence baseline, the mBART-style denoising corruption, the training tasks that
// feed models/encdec.h through models/train.h, and the tool's configuration.
//
// ---- pair shards (HDF5) --------------------------------------------------------------------
//   /             attrs format="conflux-pairs", version=1, vocab_size, tokenizer (fingerprint),
//                 source (free text, e.g. "ria"), lowercase (0/1: text was lowercased)
//   /src_tokens   int32 (n_src_tokens)  article tokens, pair after pair (no [CLS]/[SEP])
//   /src_offsets  int64 (n_pairs + 1)   starts at 0, non-decreasing, ends at n_src_tokens
//   /tgt_tokens   int32 (n_tgt_tokens)  headline tokens (no BOS/EOS)
//   /tgt_offsets  int64 (n_pairs + 1)
// Token arrays are chunked with Fletcher32 checksums; ids lie in [0, vocab_size). Written
// by appending pairs (memory bounded by two chunk buffers plus 16 bytes of offsets per
// pair) to PATH.tmp.<pid>, renamed into place on close; read whole and validated.
//
// ---- first-sentence baseline ----------------------------------------------------------------
// As published (Gusev's summarus evaluate.py, "lead1" / "lead1skip1"): the body's paragraphs
// are joined with spaces, cut into sentences, and the first sentence is the headline; for
// RIA the first sentence is the dateline ("москва, 1 дек — риа новости.") and is skipped
// when the body has more than one sentence. The sentence splitter approximates NLTK's Punkt
// (which evaluate.py used) on this text: a sentence ends after a run of '.', '!', '?' or '…'
// (with any closing quotes or brackets after it) that is followed by whitespace or the end,
// except after a one-letter word ("а. с. пушкин", "1799 г. в"), which Punkt would usually
// keep too; "3.5" and "т.е." never split (no whitespace after the period).
//
// ---- denoising (mBART) -----------------------------------------------------------------------
// A window of unlabeled text is corrupted as mBART does (Liu et al. 2020): the order of
// its sentences is permuted, then spans whose lengths are drawn from Poisson(lambda) are
// masked until mask_ratio of the tokens are covered; every masked span becomes ONE [MASK]
// (a zero-length span inserts a [MASK]). The decoder reconstructs the original window.
// Every draw is keyed by (seed, sample index), so a sample is the same whoever computes it.
#ifndef CONFLUX_HEADLINE_H
#define CONFLUX_HEADLINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/bpe.h"
#include "io/config.h"
#include "io/news.h"
#include "io/shard.h"
#include "models/encdec.h"
#include "models/optim.h"
#include "models/train.h"

#define HL_PATH_LEN 1024

// ---- pair shards -----------------------------------------------------------------------------

typedef struct PairWriter PairWriter;

// Starts PATH.tmp.<pid>. source: a short label (< 64 bytes). Returns 0, or -1 with err
// ("cannot write pair shard PATH: why").
int pairs_writer_open(PairWriter **out, const char *path, int vocab_size,
                      const char *tokenizer_fingerprint, const char *source, int lowercase,
                      char *err);
// Appends one pair (either side may be empty only if the caller wants it; ids must lie in
// [0, vocab_size)). -1 with err; after an HDF5 failure the writer can only be aborted.
int pairs_writer_add(PairWriter *w, const int32_t *src, size_t n_src, const int32_t *tgt,
                     size_t n_tgt, char *err);
// Pairs added so far.
size_t pairs_writer_count(const PairWriter *w);
// Finishes (atomic rename). Frees w whatever the result.
int pairs_writer_close(PairWriter *w, char *err);
// Discards the temporary file. Frees w.
void pairs_writer_abort(PairWriter *w);

typedef struct {
    int32_t *src, *tgt;
    int64_t *src_off, *tgt_off;  // n_pairs + 1 each
    size_t n_pairs, n_src_tokens, n_tgt_tokens;
    int vocab_size, lowercase;
    char tokenizer[128];
    char source[64];
} Pairs;

// Loads and validates a pair shard. -1 with err naming the file (and dataset) and the
// problem; a token shard (conflux-shard) is named as such.
int pairs_read(Pairs *p, const char *path, char *err);
void pairs_free(Pairs *p);

// ---- text helpers ----------------------------------------------------------------------------

// Lowercases n bytes of UTF-8 text in place (rouge_fold_case: ASCII, Latin-1/Extended-A,
// Greek, Cyrillic; invalid bytes and other scripts unchanged). Returns the new length, <= n
// (only U+0130 'İ' -> 'i' shrinks; Cyrillic keeps its byte length).
size_t headline_lowercase(char *s, size_t n);

// Writes the first sentence of text (paragraphs separated by '\n') into out (room for
// n + 1 bytes; NUL-terminated), skipping the first sentence when skip_first is set and
// there is more than one (the RIA dateline). Returns its length.
size_t headline_first_sentence(const char *text, size_t n, int skip_first, char *out);

// ---- (title, body) pairs from Debian's Russian texts ------------------------------------------

typedef enum { HP_DEBTRANS = 0, HP_MAN, HP_HTML, HP_COUNT } HeadlinePairFormat;

// "debtrans", "man", "html"; parse returns 0 or -1.
const char *headline_pair_format_name(HeadlinePairFormat f);
int headline_pair_format_parse(const char *name, HeadlinePairFormat *out);

// Receives one pair (NUL-terminated, normalised UTF-8 on one line each; valid during the
// call). Returns 0, or non-zero to stop.
typedef int (*HeadlinePairFn)(void *ctx, const char *title, const char *body);

typedef struct {
    uint64_t files, docs, pairs, no_title, no_body, not_cyrillic;
} HeadlinePairStats;

// Extracts (title, body) pairs from the bytes of one file:
//   debtrans  each Description-ru: the short description is the title, the long one the body;
//   man       roff page: the text after " - " on the NAME (ИМЯ/НАЗВАНИЕ) line is the title,
//             the DESCRIPTION (ОПИСАНИЕ) section the body;
//   html      <title> is the title (a leading section number "5.4." is dropped), the
//             page's paragraphs except the one equal to the title the body.
// Titles must have 2 to 30 words, bodies at least min_body_chars characters, and both must
// be mostly Cyrillic (share of letters >= 0.5; body paragraphs below 0.3 are dropped).
// Returns the number of pairs emitted, or -1 with err (a corrupt input or emit stopped).
long headline_pairs_extract(HeadlinePairFormat fmt, const char *data, size_t n_bytes,
                            size_t min_body_chars, HeadlinePairStats *st, HeadlinePairFn emit,
                            void *ctx, char *err);

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

// ---- configuration (INI + --set, as io/config.h) --------------------------------------------

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
    TrainSettings train;     // [train]: the run loop's keys (io/config.h)
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

extern const CfgSchema HEADLINE_CONFIG_SCHEMA;  // HeadlineConfig's keys (io/config.h's engine)
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
