// shard.h: token shards in HDF5.
//
//   /            attrs format="conflux-shard", version=1, vocab_size, tokenizer (fingerprint)
//   /tokens      int32 (n_tokens), chunked, Fletcher32; every id in [0, vocab_size)
//   /doc_offsets int64 (n_docs + 1), starts at 0, non-decreasing, ends at n_tokens
//
// Written by appending documents (streaming: memory stays bounded by the chunk buffer),
// renamed into place atomically on close. Read whole into memory (validated).
#ifndef CONFLUX_SHARD_H
#define CONFLUX_SHARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct ShardWriter ShardWriter;

int shard_writer_open(ShardWriter **out, const char *path, int vocab_size,
                      const char *tokenizer_fingerprint, char *err);
int shard_writer_add(ShardWriter *w, const int32_t *tokens, size_t n, char *err);
// Finishes the file (atomic rename). Frees w whatever the result.
int shard_writer_close(ShardWriter *w, char *err);
// Discards an unfinished shard (removes the temporary file). Frees w.
void shard_writer_abort(ShardWriter *w);

typedef struct {
    int32_t *tokens;
    size_t n_tokens;
    int64_t *doc_offsets;  // n_docs + 1 entries
    size_t n_docs;
    int vocab_size;
    char tokenizer[128];
} Shard;

// Loads and validates a shard (format, version, checksums, ids in range, offsets).
// -1 with err naming the file and what is wrong.
int shard_read(Shard *s, const char *path, char *err);
void shard_free(Shard *s);

#endif
