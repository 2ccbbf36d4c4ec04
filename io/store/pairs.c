// pairs.c: pair shards (see pairs.h). Shard code: like io/store/shard.c it uses the HDF5 helpers
// of io/h5util_internal.h.
#include "io/store/pairs.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/store/h5util_internal.h"
#include "models/common.h"

#define PAIRS_FORMAT "conflux-pairs"
#define PAIRS_VERSION 1
#define PAIRS_CHUNK ((size_t)65536)  // tokens per chunk (256 KiB)
#define WHY_LEN H5U_WHY_LEN


// ---------------------------------------------------------------------------------------
// Pair shard writer: two appendable int32 datasets with one-chunk buffers (H5uColumn of
// io/store/h5util_internal.h, as the token shard's /tokens).

struct PairWriter {
    hid_t file;
    char *path, *tmp;
    int vocab_size;
    H5uColumn col[2];  // src, tgt
    int failed;
};

static void writer_free(PairWriter *w) {
    if (!w) return;
    for (int i = 0; i < 2; i++) h5u_column_free(&w->col[i]);
    h5u_close_id(&w->file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    free(w->path);
    free(w->tmp);
    free(w);
}

int pairs_writer_open(PairWriter **out, const char *path, int vocab_size,
                      const char *tokenizer_fingerprint, const char *source, int lowercase,
                      char *err) {
    char why[WHY_LEN] = "";
    PairWriter *w = NULL;
    *out = NULL;
    h5u_quiet();
    if (!path || !path[0]) return cx_err(err, "cannot write pair shard: empty path");
    if (vocab_size <= 0 || !tokenizer_fingerprint || strlen(tokenizer_fingerprint) >= 128 ||
        !source || strlen(source) >= 64)
        return cx_err(err, "cannot write pair shard %s: bad vocab_size, fingerprint or source",
                      path);
    w = calloc(1, sizeof *w);
    if (!w) return cx_err(err, "cannot write pair shard %s: out of memory", path);
    w->file = H5I_INVALID_HID;
    w->col[0].ds = w->col[1].ds = H5I_INVALID_HID;
    w->vocab_size = vocab_size;
    if (!(w->path = strdup(path)) ||
        h5u_column_init(&w->col[0], PAIRS_CHUNK, "/src_tokens", why) ||
        h5u_column_init(&w->col[1], PAIRS_CHUNK, "/tgt_tokens", why))
        goto oom;
    if ((w->file = h5u_tmp_create(path, &w->tmp, why)) < 0) goto fail;
    if (h5u_write_str_attr(w->file, "format", PAIRS_FORMAT, why) ||
        h5u_write_int_attr(w->file, "version", H5T_STD_I32LE, PAIRS_VERSION, why) ||
        h5u_write_int_attr(w->file, "vocab_size", H5T_STD_I32LE, vocab_size, why) ||
        h5u_write_str_attr(w->file, "tokenizer", tokenizer_fingerprint, why) ||
        h5u_write_str_attr(w->file, "source", source, why) ||
        h5u_write_int_attr(w->file, "lowercase", H5T_STD_I32LE, lowercase ? 1 : 0, why) ||
        h5u_column_create(&w->col[0], w->file, "src_tokens", 0, why) ||
        h5u_column_create(&w->col[1], w->file, "tgt_tokens", 0, why))
        goto fail;
    *out = w;
    return 0;
oom:
    snprintf(why, WHY_LEN, "out of memory");
fail:
    if (w->tmp) {
        for (int i = 0; i < 2; i++) h5u_close_id(&w->col[i].ds, H5Dclose);
        h5u_close_id(&w->file, H5Fclose);
        unlink(w->tmp);
    }
    writer_free(w);
    return cx_err(err, "cannot write pair shard %s: %s", path, why);
}

int pairs_writer_add(PairWriter *w, const int32_t *src, size_t n_src, const int32_t *tgt,
                     size_t n_tgt, char *err) {
    char why[WHY_LEN] = "";
    if (!w) return cx_err(err, "cannot write pair shard: no writer");
    h5u_quiet();
    if (w->failed) return cx_err(err, "cannot write pair shard %s: an earlier write failed", w->path);
    const int32_t *t[2] = {src, tgt};
    size_t n[2] = {n_src, n_tgt};
    for (int c = 0; c < 2; c++) {
        if (n[c] > 0 && !t[c])
            return cx_err(err, "cannot write pair shard %s: pair %zu: no tokens given", w->path,
                          w->col[0].n_off - 1);
        for (size_t i = 0; i < n[c]; i++)
            if (t[c][i] < 0 || t[c][i] >= w->vocab_size)
                return cx_err(err, "cannot write pair shard %s: pair %zu: %s token %zu is %d, "
                              "outside [0, %d)", w->path, w->col[0].n_off - 1,
                              c ? "headline" : "article", i, (int)t[c][i], w->vocab_size);
    }
    for (int c = 0; c < 2; c++) {
        if (h5u_column_reserve(&w->col[c], why) ||
            h5u_column_append(&w->col[c], t[c], n[c], why)) {
            w->failed = 1;
            return cx_err(err, "cannot write pair shard %s: %s", w->path, why);
        }
    }
    return 0;
}

size_t pairs_writer_count(const PairWriter *w) { return w ? w->col[0].n_off - 1 : 0; }

int pairs_writer_close(PairWriter *w, char *err) {
    char why[WHY_LEN] = "";
    if (!w) return cx_err(err, "cannot write pair shard: no writer");
    h5u_quiet();
    if (w->failed) {
        snprintf(why, WHY_LEN, "an earlier write failed");
        goto fail;
    }
    static const char *const names[2] = {"src_offsets", "tgt_offsets"};
    static const char *const labels[2] = {"/src_offsets", "/tgt_offsets"};
    for (int c = 0; c < 2; c++) {
        if (h5u_column_flush(&w->col[c], why)) goto fail;
        h5u_close_id(&w->col[c].ds, H5Dclose);
        hsize_t dims[1] = {w->col[c].n_off};
        if (h5u_write_array(w->file, names[c], labels[c], H5T_STD_I64LE, H5T_NATIVE_INT64,
                            sizeof(int64_t), 1, dims, w->col[c].off, why))
            goto fail;
    }
    if (h5u_tmp_commit(&w->file, w->tmp, w->path, why)) goto fail;
    writer_free(w);
    return 0;
fail:
    for (int c = 0; c < 2; c++) h5u_close_id(&w->col[c].ds, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    unlink(w->tmp);
    cx_err(err, "cannot write pair shard %s: %s", w->path, why);
    writer_free(w);
    return -1;
}

void pairs_writer_abort(PairWriter *w) {
    if (!w) return;
    h5u_quiet();
    for (int c = 0; c < 2; c++) h5u_close_id(&w->col[c].ds, H5Dclose);
    h5u_close_id(&w->file, H5Fclose);
    if (w->tmp) unlink(w->tmp);
    writer_free(w);
}

// ---------------------------------------------------------------------------------------
// Pair shard reader.




int pairs_read(Pairs *p, const char *path, char *err) {
    char why[WHY_LEN] = "", fmt[64];
    const char *where = "";
    hid_t file = H5I_INVALID_HID;
    int64_t v = 0;
    memset(p, 0, sizeof *p);
    h5u_quiet();
    if (h5u_check_signature(path, "pair shard", err)) return -1;
    if ((file = h5u_open_format(path, "pair shard", fmt, sizeof fmt, why)) < 0) goto fail;
    if (strcmp(fmt, PAIRS_FORMAT) != 0) {
        snprintf(why, WHY_LEN, "not a conflux pair shard (format is \"%s\", expected \"%s\"%s)",
                 fmt, PAIRS_FORMAT,
                 strcmp(fmt, "conflux-shard") == 0
                     ? "; a token shard serves --objective denoise, pairs come from "
                       "conflux-headline prepare"
                     : "");
        goto fail;
    }
    if (h5u_read_int_attr_req(file, "version", &v, why)) goto fail;
    if (v != PAIRS_VERSION) {
        snprintf(why, WHY_LEN, "unsupported pair shard version %lld (this build reads %d)",
                 (long long)v, PAIRS_VERSION);
        goto fail;
    }
    if (h5u_read_vocab_size(file, &p->vocab_size, why)) goto fail;
    if (h5u_read_int_attr_req(file, "lowercase", &v, why)) goto fail;
    p->lowercase = v != 0;
    if (h5u_read_str_attr_into(file, "tokenizer", p->tokenizer, sizeof p->tokenizer, why) ||
        h5u_read_str_attr_into(file, "source", p->source, sizeof p->source, why))
        goto fail;
    static const char *const tok_names[2] = {"src_tokens", "tgt_tokens"};
    static const char *const off_names[2] = {"src_offsets", "tgt_offsets"};
    size_t n_off[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        void *buf = NULL;
        size_t n = 0;
        where = c ? "/tgt_tokens" : "/src_tokens";
        if (h5u_read_1d(file, tok_names[c], sizeof(int32_t), H5T_NATIVE_INT32, &buf, &n, why)) goto fail;
        int32_t *t = buf;
        if (c) p->tgt = t, p->n_tgt_tokens = n;
        else p->src = t, p->n_src_tokens = n;
        if (h5u_check_tokens(t, n, p->vocab_size, why)) goto fail;
        where = c ? "/tgt_offsets" : "/src_offsets";
        if (h5u_read_1d(file, off_names[c], sizeof(int64_t), H5T_NATIVE_INT64, &buf, &n_off[c], why))
            goto fail;
        if (c) p->tgt_off = buf;
        else p->src_off = buf;
        if (h5u_check_offsets(buf, n_off[c], n, "n_pairs", "the token count", why)) goto fail;
    }
    where = "";
    if (n_off[0] != n_off[1]) {
        snprintf(why, WHY_LEN, "/src_offsets has %zu entries but /tgt_offsets %zu", n_off[0],
                 n_off[1]);
        goto fail;
    }
    p->n_pairs = n_off[0] - 1;
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    return 0;
fail:
    h5u_close_id(&file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    pairs_free(p);
    if (where[0]) return cx_err(err, "pair shard %s: dataset %s: %s", path, where, why);
    return cx_err(err, "pair shard %s: %s", path, why);
}

void pairs_free(Pairs *p) {
    if (!p) return;
    free(p->src);
    free(p->tgt);
    free(p->src_off);
    free(p->tgt_off);
    memset(p, 0, sizeof *p);
}

