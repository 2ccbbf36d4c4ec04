// shard.c: token shards in HDF5 (layout in shard.h).
//
// The writer appends documents to an extendible, chunked (SHARD_CHUNK tokens), Fletcher32
// /tokens dataset through a one-chunk buffer, keeps the document offsets in memory (8 bytes
// per document) and writes /doc_offsets at close, then renames PATH.tmp.<pid> into place.
// Files use the HDF5 1.10 format (checksummed metadata). The reader loads everything and
// checks it. The HDF5 helpers (error messages, attributes, atomic commit) are shared with
// ckpt.c in io/h5util.c.
#include "io/shard.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5util_internal.h"
#include "models/common.h"

#define SHARD_FORMAT "conflux-shard"
#define SHARD_VERSION 1
#define SHARD_CHUNK ((size_t)65536)          // tokens per chunk (256 KiB)
#define TOKENIZER_LEN ((size_t)128)          // sizeof(Shard.tokenizer)
#define WHY_LEN H5U_WHY_LEN

struct ShardWriter {
    hid_t file, tokens;
    char *path, *tmp;
    int vocab_size;
    int32_t *buf;             // SHARD_CHUNK tokens not yet written
    size_t n_buf;
    uint64_t n_written;       // tokens already in the file
    int64_t *offsets;         // n_offsets entries: 0, end of doc 0, end of doc 1, ...
    size_t n_offsets, cap_offsets;
    int failed;               // an HDF5 write failed: the shard can only be aborted
};

// ---------------------------------------------------------------------------------------
// Writer.

static void writer_free(ShardWriter *w) {
    if (!w) return;
    h5u_close_id(&w->tokens, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    free(w->path);
    free(w->tmp);
    free(w->buf);
    free(w->offsets);
    free(w);
}

int shard_writer_open(ShardWriter **out, const char *path, int vocab_size,
                      const char *tokenizer_fingerprint, char *err) {
    char why[WHY_LEN] = "";
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
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
    if (w) w->file = w->tokens = H5I_INVALID_HID;
    if (!w || !(w->path = strdup(path)) || !(w->buf = malloc(SHARD_CHUNK * sizeof(int32_t))) ||
        !(w->offsets = malloc(1024 * sizeof(int64_t)))) {
        snprintf(why, WHY_LEN, "out of memory");
        goto fail;
    }
    w->vocab_size = vocab_size;
    w->cap_offsets = 1024;
    w->offsets[0] = 0;
    w->n_offsets = 1;
    if ((w->file = h5u_tmp_create(path, &w->tmp, why)) < 0) goto fail;
    if (h5u_write_str_attr(w->file, "format", SHARD_FORMAT, why) ||
        h5u_write_int_attr(w->file, "version", H5T_STD_I32LE, SHARD_VERSION, why) ||
        h5u_write_int_attr(w->file, "vocab_size", H5T_STD_I32LE, vocab_size, why) ||
        h5u_write_str_attr(w->file, "tokenizer", tokenizer_fingerprint, why))
        goto fail;
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {SHARD_CHUNK};
    if ((space = H5Screate_simple(1, dims, maxdims)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0 ||
        H5Pset_fletcher32(dcpl) < 0 ||
        (w->tokens = H5Dcreate2(w->file, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl,
                                H5P_DEFAULT)) < 0) {
        h5u_why(why, "/tokens");
        goto fail;
    }
    H5Sclose(space);
    H5Pclose(dcpl);
    *out = w;
    return 0;
fail:
    h5u_close_id(&space, H5Sclose);
    h5u_close_id(&dcpl, H5Pclose);
    if (w && w->tmp) {
        h5u_close_id(&w->tokens, H5Dclose);
        h5u_close_id(&w->file, H5Fclose);
        unlink(w->tmp);
    }
    writer_free(w);
    H5Eclear2(H5E_DEFAULT);
    return cx_err(err, "cannot write shard %s: %s", path, why);
}

// Appends the buffered tokens to /tokens.
static int flush_buf(ShardWriter *w, char *why) {
    if (w->n_buf == 0) return 0;
    hsize_t start[1] = {w->n_written}, count[1] = {w->n_buf}, size[1] = {w->n_written + w->n_buf};
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    int rc = -1;
    if (H5Dset_extent(w->tokens, size) < 0 || (fspace = H5Dget_space(w->tokens)) < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        (mspace = H5Screate_simple(1, count, NULL)) < 0 ||
        H5Dwrite(w->tokens, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, w->buf) < 0) {
        h5u_why(why, "/tokens");
        goto out;
    }
    w->n_written += w->n_buf;
    w->n_buf = 0;
    rc = 0;
out:
    h5u_close_id(&mspace, H5Sclose);
    h5u_close_id(&fspace, H5Sclose);
    return rc;
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
                          "[0, %d)", w->path, w->n_offsets - 1, i, (int)tokens[i], w->vocab_size);
    if (w->n_offsets == w->cap_offsets) {
        size_t cap = w->cap_offsets * 2;
        int64_t *p = realloc(w->offsets, cap * sizeof *p);
        if (!p) return cx_err(err, "cannot write shard %s: out of memory", w->path);
        w->offsets = p;
        w->cap_offsets = cap;
    }
    for (size_t done = 0; done < n;) {
        size_t take = SHARD_CHUNK - w->n_buf;
        if (take > n - done) take = n - done;
        memcpy(w->buf + w->n_buf, tokens + done, take * sizeof *tokens);
        w->n_buf += take;
        done += take;
        if (w->n_buf == SHARD_CHUNK && flush_buf(w, why)) {
            w->failed = 1;
            return cx_err(err, "cannot write shard %s: %s", w->path, why);
        }
    }
    w->offsets[w->n_offsets++] = (int64_t)(w->n_written + w->n_buf);
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
    if (flush_buf(w, why)) goto fail;
    h5u_close_id(&w->tokens, H5Dclose);
    hsize_t dims[1] = {w->n_offsets};
    if (h5u_write_array(w->file, "doc_offsets", "/doc_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                        sizeof(int64_t), 1, dims, w->offsets, why) ||
        h5u_tmp_commit(&w->file, w->tmp, w->path, why))
        goto fail;
    writer_free(w);
    return 0;
fail:
    h5u_close_id(&w->tokens, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    unlink(w->tmp);
    cx_err(err, "cannot write shard %s: %s", w->path, why);
    writer_free(w);
    return -1;
}

void shard_writer_abort(ShardWriter *w) {
    if (!w) return;
    h5u_quiet();
    h5u_close_id(&w->tokens, H5Dclose);
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
    if ((file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        h5u_why(why, "cannot open");
        goto fail;
    }
    int has_fmt = h5u_has_attr(file, "format", why);
    if (has_fmt <= 0) {
        if (has_fmt == 0) snprintf(why, WHY_LEN, "not a conflux shard (no format attribute)");
        goto fail;
    }
    if (h5u_read_str_attr_into(file, "format", fmt, sizeof fmt, why)) goto fail;
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
    if (h5u_read_int_attr_req(file, "vocab_size", &v, why)) goto fail;
    if (v <= 0 || v > INT32_MAX) {
        snprintf(why, WHY_LEN, "vocab_size %lld is out of range", (long long)v);
        goto fail;
    }
    s->vocab_size = (int)v;
    if (h5u_read_str_attr_into(file, "tokenizer", s->tokenizer, sizeof s->tokenizer, why)) goto fail;

    void *p = NULL;
    where = "/tokens";
    if (h5u_read_1d(file, "tokens", sizeof(int32_t), H5T_NATIVE_INT32, &p, &s->n_tokens, why))
        goto fail;
    s->tokens = p;
    for (size_t i = 0; i < s->n_tokens; i++) {
        if (s->tokens[i] < 0 || s->tokens[i] >= s->vocab_size) {
            snprintf(why, WHY_LEN, "token %zu is %d, outside [0, vocab_size %d)", i,
                     (int)s->tokens[i], s->vocab_size);
            goto fail;
        }
    }
    where = "/doc_offsets";
    size_t n_off = 0;
    if (h5u_read_1d(file, "doc_offsets", sizeof(int64_t), H5T_NATIVE_INT64, &p, &n_off, why))
        goto fail;
    s->doc_offsets = p;
    if (n_off == 0) {
        snprintf(why, WHY_LEN, "empty (needs n_docs + 1 entries)");
        goto fail;
    }
    if (s->doc_offsets[0] != 0) {
        snprintf(why, WHY_LEN, "starts at %lld, expected 0", (long long)s->doc_offsets[0]);
        goto fail;
    }
    for (size_t i = 1; i < n_off; i++) {
        if (s->doc_offsets[i] < s->doc_offsets[i - 1]) {
            snprintf(why, WHY_LEN, "entry %zu (%lld) is less than entry %zu (%lld)", i,
                     (long long)s->doc_offsets[i], i - 1, (long long)s->doc_offsets[i - 1]);
            goto fail;
        }
    }
    if ((uint64_t)s->doc_offsets[n_off - 1] != (uint64_t)s->n_tokens) {
        snprintf(why, WHY_LEN, "ends at %lld, expected n_tokens %zu",
                 (long long)s->doc_offsets[n_off - 1], s->n_tokens);
        goto fail;
    }
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
