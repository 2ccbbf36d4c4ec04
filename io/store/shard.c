// shard.c: token shards in HDF5 (layout in shard.h).
//
// The writer appends documents to an extendible, chunked (SHARD_CHUNK tokens), Fletcher32
// /tokens dataset through a one-chunk buffer, keeps the document offsets in memory (8 bytes
// per document) and writes /doc_offsets at close, then renames PATH.tmp.<pid> into place.
// Files use the HDF5 1.10 format (checksummed metadata). The reader loads everything and
// checks it. The HDF5 helpers (error messages, attributes, atomic commit, the appendable
// column) are shared with ckpt.c and headline.c in io/h5util.c.
#include "io/store/shard.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/store/h5util_internal.h"
#include "models/common.h"

#define SHARD_FORMAT "conflux-shard"
#define SHARD_VERSION 1
#define SHARD_CHUNK ((size_t)65536)          // tokens per chunk (256 KiB)
#define TOKENIZER_LEN ((size_t)128)          // sizeof(Shard.tokenizer)
#define WHY_LEN H5U_WHY_LEN

struct ShardWriter {
    hid_t file;
    char *path, *tmp;
    int vocab_size;
    H5uColumn tokens;         // /tokens; its offsets (0, end of doc 0, ...) are /doc_offsets
    int failed;               // an HDF5 write failed: the shard can only be aborted
};

// ---------------------------------------------------------------------------------------
// Writer.

static void writer_free(ShardWriter *w) {
    if (!w) return;
    h5u_column_free(&w->tokens);
    h5u_close_id(&w->file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    free(w->path);
    free(w->tmp);
    free(w);
}

int shard_writer_open(ShardWriter **out, const char *path, int vocab_size,
                      const char *tokenizer_fingerprint, char *err) {
    char why[WHY_LEN] = "";
    ShardWriter *w = NULL;
    *out = NULL;
    h5u_quiet();
    if (!path || !path[0]) return cx_err(err, "cannot write shard: empty path");
    if (vocab_size <= 0) {
        snprintf(why, WHY_LEN, "vocab_size %d must be positive", vocab_size);
        goto fail;
    }
    if (!tokenizer_fingerprint || strlen(tokenizer_fingerprint) >= TOKENIZER_LEN) {
        snprintf(why, WHY_LEN, "tokenizer fingerprint missing or longer than %zu bytes",
                 TOKENIZER_LEN - 1);
        goto fail;
    }
    w = calloc(1, sizeof *w);
    if (w) w->file = w->tokens.ds = H5I_INVALID_HID;
    if (!w || !(w->path = strdup(path)) ||
        h5u_column_init(&w->tokens, SHARD_CHUNK, "/tokens", why)) {
        snprintf(why, WHY_LEN, "out of memory");
        goto fail;
    }
    w->vocab_size = vocab_size;
    if ((w->file = h5u_tmp_create(path, &w->tmp, why)) < 0) goto fail;
    if (h5u_write_str_attr(w->file, "format", SHARD_FORMAT, why) ||
        h5u_write_int_attr(w->file, "version", H5T_STD_I32LE, SHARD_VERSION, why) ||
        h5u_write_int_attr(w->file, "vocab_size", H5T_STD_I32LE, vocab_size, why) ||
        h5u_write_str_attr(w->file, "tokenizer", tokenizer_fingerprint, why) ||
        h5u_column_create(&w->tokens, w->file, "tokens", 1, why))
        goto fail;
    *out = w;
    return 0;
fail:
    if (w && w->tmp) {
        h5u_close_id(&w->tokens.ds, H5Dclose);
        h5u_close_id(&w->file, H5Fclose);
        unlink(w->tmp);
    }
    writer_free(w);
    H5Eclear2(H5E_DEFAULT);
    return cx_err(err, "cannot write shard %s: %s", path, why);
}

int shard_writer_add(ShardWriter *w, const int32_t *tokens, size_t n, char *err) {
    char why[WHY_LEN] = "";
    if (!w) return cx_err(err, "cannot write shard: no writer");
    h5u_quiet();
    if (w->failed) return cx_err(err, "cannot write shard %s: an earlier write failed", w->path);
    if (n > 0 && !tokens) return cx_err(err, "cannot write shard %s: no tokens given", w->path);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= w->vocab_size)
            return cx_err(err, "cannot write shard %s: document %zu: token %zu is %d, outside "
                          "[0, %d)", w->path, w->tokens.n_off - 1, i, (int)tokens[i],
                          w->vocab_size);
    if (h5u_column_reserve(&w->tokens, why))
        return cx_err(err, "cannot write shard %s: %s", w->path, why);
    if (h5u_column_append(&w->tokens, tokens, n, why)) {
        w->failed = 1;
        return cx_err(err, "cannot write shard %s: %s", w->path, why);
    }
    return 0;
}

int shard_writer_close(ShardWriter *w, char *err) {
    char why[WHY_LEN] = "";
    if (!w) return cx_err(err, "cannot write shard: no writer");
    h5u_quiet();
    if (w->failed) {
        snprintf(why, WHY_LEN, "an earlier write failed");
        goto fail;
    }
    if (h5u_column_flush(&w->tokens, why)) goto fail;
    h5u_close_id(&w->tokens.ds, H5Dclose);
    hsize_t dims[1] = {w->tokens.n_off};
    if (h5u_write_array(w->file, "doc_offsets", "/doc_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                        sizeof(int64_t), 1, dims, w->tokens.off, why) ||
        h5u_tmp_commit(&w->file, w->tmp, w->path, why))
        goto fail;
    writer_free(w);
    return 0;
fail:
    h5u_close_id(&w->tokens.ds, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    unlink(w->tmp);
    cx_err(err, "cannot write shard %s: %s", w->path, why);
    writer_free(w);
    return -1;
}

void shard_writer_abort(ShardWriter *w) {
    if (!w) return;
    h5u_quiet();
    h5u_close_id(&w->tokens.ds, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    unlink(w->tmp);
    writer_free(w);
}

// ---------------------------------------------------------------------------------------
// Reader.




int shard_read(Shard *s, const char *path, char *err) {
    char why[WHY_LEN] = "", fmt[64];
    const char *where = "";   // dataset the problem is in, if any
    hid_t file = H5I_INVALID_HID;
    int64_t v = 0;
    memset(s, 0, sizeof *s);
    h5u_quiet();
    if (h5u_check_signature(path, "shard", err)) return -1;
    if ((file = h5u_open_format(path, "shard", fmt, sizeof fmt, why)) < 0) goto fail;
    if (strcmp(fmt, SHARD_FORMAT) != 0) {
        snprintf(why, WHY_LEN, "not a conflux shard (format is \"%s\", expected \"%s\")", fmt,
                 SHARD_FORMAT);
        goto fail;
    }
    if (h5u_read_int_attr_req(file, "version", &v, why)) goto fail;
    if (v != SHARD_VERSION) {
        snprintf(why, WHY_LEN, "unsupported shard version %lld (this build reads version %d)",
                 (long long)v, SHARD_VERSION);
        goto fail;
    }
    if (h5u_read_vocab_size(file, &s->vocab_size, why)) goto fail;
    if (h5u_read_str_attr_into(file, "tokenizer", s->tokenizer, sizeof s->tokenizer, why)) goto fail;

    void *p = NULL;
    where = "/tokens";
    if (h5u_read_1d(file, "tokens", sizeof(int32_t), H5T_NATIVE_INT32, &p, &s->n_tokens, why))
        goto fail;
    s->tokens = p;
    if (h5u_check_tokens(s->tokens, s->n_tokens, s->vocab_size, why)) goto fail;
    where = "/doc_offsets";
    size_t n_off = 0;
    if (h5u_read_1d(file, "doc_offsets", sizeof(int64_t), H5T_NATIVE_INT64, &p, &n_off, why))
        goto fail;
    s->doc_offsets = p;
    if (h5u_check_offsets(s->doc_offsets, n_off, s->n_tokens, "n_docs", "n_tokens", why))
        goto fail;
    s->n_docs = n_off - 1;
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    return 0;
fail:
    h5u_close_id(&file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    shard_free(s);
    if (where[0]) return cx_err(err, "shard %s: dataset %s: %s", path, where, why);
    return cx_err(err, "shard %s: %s", path, why);
}

void shard_free(Shard *s) {
    if (!s) return;
    free(s->tokens);
    free(s->doc_offsets);
    memset(s, 0, sizeof *s);
}
