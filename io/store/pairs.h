// pairs.h: pair shards, the (article, headline) pairs conflux-headline prepare writes and
// train reads.
//
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
#ifndef CONFLUX_IO_STORE_PAIRS_H
#define CONFLUX_IO_STORE_PAIRS_H

#include <stddef.h>
#include <stdint.h>

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

#endif
