// shard.c: token shards in HDF5 (layout in shard.h).
//
// The writer appends documents to an extendible, chunked (SHARD_CHUNK tokens), Fletcher32
// /tokens dataset through a one-chunk buffer, keeps the document offsets in memory (8 bytes
// per document) and writes /doc_offsets at close, then renames PATH.tmp.<pid> into place.
// Files use the HDF5 1.10 format (checksummed metadata). The reader loads everything and
// checks it. The small HDF5 helpers below mirror those in ckpt.c (each file keeps its own:
// both are private to io/).
#include "io/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/common.h"

#define SHARD_FORMAT "conflux-shard"
#define SHARD_VERSION 1
#define SHARD_CHUNK ((size_t)65536)          // tokens per chunk (256 KiB)
#define OFFSETS_CHUNK ((size_t)131072)       // offsets per chunk (1 MiB)
#define TOKENIZER_LEN ((size_t)128)          // sizeof(Shard.tokenizer)
#define WHY_LEN 320
#define SUPERBLOCK_MIN 48                    // bytes in the smallest HDF5 superblock (v2)

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
// HDF5 error handling (as in ckpt.c).

static void h5_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct {
    char inner[256];
    int truncated, data_checksum, meta_checksum, bad_addr;
    unsigned long long eof, stored_eof;
} H5Walk;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    H5Walk *w = data;
    if (e->desc && e->desc[0]) {
        snprintf(w->inner, sizeof w->inner, "%s", e->desc);
        unsigned long long base;
        if (sscanf(e->desc, "truncated file: eof = %llu, sblock->base_addr = %llu, stored_eof = %llu",
                   &w->eof, &base, &w->stored_eof) == 3)
            w->truncated = 1;
        else if (strstr(e->desc, "truncated file"))
            w->truncated = 1;
        if (strstr(e->desc, "Fletcher32")) w->data_checksum = 1;
        if (strstr(e->desc, "metadata checksum")) w->meta_checksum = 1;
        if (strstr(e->desc, "exceeds EOA") || strstr(e->desc, "addr overflow")) w->bad_addr = 1;
    }
    return 0;
}

static const char *h5_why(char *why, const char *what) {
    H5Walk w;
    memset(&w, 0, sizeof w);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5_walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    const char *sep = what && what[0] ? ": " : "";
    if (!what) what = "";
    if (w.truncated && w.stored_eof)
        snprintf(why, WHY_LEN, "%s%sfile is truncated (%llu bytes, header says %llu)", what, sep,
                 w.eof, w.stored_eof);
    else if (w.truncated)
        snprintf(why, WHY_LEN, "%s%sfile is truncated", what, sep);
    else if (w.data_checksum)
        snprintf(why, WHY_LEN, "%s%schecksum mismatch (Fletcher32): data is corrupted", what, sep);
    else if (w.meta_checksum)
        snprintf(why, WHY_LEN, "%s%smetadata checksum mismatch: file is corrupted", what, sep);
    else if (w.bad_addr)
        snprintf(why, WHY_LEN, "%s%sfile is corrupted (an address points past its end)", what, sep);
    else if (w.inner[0])
        snprintf(why, WHY_LEN, "%s%s%s", what, sep, w.inner);
    else
        snprintf(why, WHY_LEN, "%s%sHDF5 error", what, sep);
    return why;
}

static void h5_close_id(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0) fn(*id);
    *id = H5I_INVALID_HID;
}

// ---------------------------------------------------------------------------------------
// Writer.

static int write_str_attr(hid_t obj, const char *name, const char *val, char *why) {
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (type < 0 || space < 0 || H5Tset_size(type, strlen(val) + 1) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLTERM) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
        goto out;
    attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, type, val) < 0) goto out;
    rc = 0;
out:
    if (rc) h5_why(why, name);
    h5_close_id(&attr, H5Aclose);
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    return rc;
}

static int write_int_attr(hid_t obj, const char *name, int64_t val, char *why) {
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (space < 0) goto out;
    attr = H5Acreate2(obj, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, H5T_NATIVE_INT64, &val) < 0) goto out;
    rc = 0;
out:
    if (rc) h5_why(why, name);
    h5_close_id(&attr, H5Aclose);
    h5_close_id(&space, H5Sclose);
    return rc;
}

static int commit_file(const char *tmp, const char *path, char *why) {
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        snprintf(why, WHY_LEN, "fsync %s: %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        snprintf(why, WHY_LEN, "rename %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(path);
    char *dir = malloc(len + 2);
    if (!dir) return 0;
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);   // best effort
        close(dfd);
    }
    free(dir);
    return 0;
}

static void writer_free(ShardWriter *w) {
    if (!w) return;
    h5_close_id(&w->tokens, H5Dclose);
    h5_close_id(&w->file, H5Fclose);
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
    hid_t fapl = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    int created_tmp = 0;
    ShardWriter *w = NULL;
    *out = NULL;
    h5_quiet();
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
    size_t tcap = strlen(path) + 32;
    w = calloc(1, sizeof *w);
    if (w) w->file = w->tokens = H5I_INVALID_HID;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(tcap)) ||
        !(w->buf = malloc(SHARD_CHUNK * sizeof(int32_t))) ||
        !(w->offsets = malloc(1024 * sizeof(int64_t)))) {
        snprintf(why, WHY_LEN, "out of memory");
        goto fail;
    }
    w->vocab_size = vocab_size;
    w->cap_offsets = 1024;
    w->offsets[0] = 0;
    w->n_offsets = 1;
    snprintf(w->tmp, tcap, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(why, WHY_LEN, "cannot create %s: %s", w->tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    created_tmp = 1;
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0) {
        h5_why(why, "file access properties");
        goto fail;
    }
    if ((w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        h5_why(why, w->tmp);
        goto fail;
    }
    if (write_str_attr(w->file, "format", SHARD_FORMAT, why) ||
        write_int_attr(w->file, "version", SHARD_VERSION, why) ||
        write_int_attr(w->file, "vocab_size", vocab_size, why) ||
        write_str_attr(w->file, "tokenizer", tokenizer_fingerprint, why))
        goto fail;
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {SHARD_CHUNK};
    if ((space = H5Screate_simple(1, dims, maxdims)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0 ||
        H5Pset_fletcher32(dcpl) < 0 ||
        (w->tokens = H5Dcreate2(w->file, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl,
                                H5P_DEFAULT)) < 0) {
        h5_why(why, "/tokens");
        goto fail;
    }
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Pclose(fapl);
    *out = w;
    return 0;
fail:
    h5_close_id(&space, H5Sclose);
    h5_close_id(&dcpl, H5Pclose);
    h5_close_id(&fapl, H5Pclose);
    if (created_tmp) {
        h5_close_id(&w->tokens, H5Dclose);
        h5_close_id(&w->file, H5Fclose);
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
        h5_why(why, "/tokens");
        goto out;
    }
    w->n_written += w->n_buf;
    w->n_buf = 0;
    rc = 0;
out:
    h5_close_id(&mspace, H5Sclose);
    h5_close_id(&fspace, H5Sclose);
    return rc;
}

int shard_writer_add(ShardWriter *w, const int32_t *tokens, size_t n, char *err) {
    char why[WHY_LEN] = "";
    if (!w) return cx_err(err, "cannot write shard: no writer");
    h5_quiet();
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
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    if (!w) return cx_err(err, "cannot write shard: no writer");
    h5_quiet();
    if (w->failed) {
        snprintf(why, WHY_LEN, "an earlier write failed");
        goto fail;
    }
    if (flush_buf(w, why)) goto fail;
    h5_close_id(&w->tokens, H5Dclose);
    hsize_t dims[1] = {w->n_offsets};
    size_t n_chunks = (w->n_offsets + OFFSETS_CHUNK - 1) / OFFSETS_CHUNK;   // equal chunks
    hsize_t chunk[1] = {(w->n_offsets + n_chunks - 1) / n_chunks};
    if ((space = H5Screate_simple(1, dims, NULL)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0 ||
        H5Pset_fletcher32(dcpl) < 0 ||
        (ds = H5Dcreate2(w->file, "doc_offsets", H5T_STD_I64LE, space, H5P_DEFAULT, dcpl,
                         H5P_DEFAULT)) < 0 ||
        H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->offsets) < 0) {
        h5_why(why, "/doc_offsets");
        goto fail;
    }
    h5_close_id(&ds, H5Dclose);
    h5_close_id(&dcpl, H5Pclose);
    h5_close_id(&space, H5Sclose);
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
        h5_why(why, "flush");
        goto fail;
    }
    herr_t cl = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (cl < 0) {
        h5_why(why, "close");
        goto fail;
    }
    if (commit_file(w->tmp, w->path, why)) goto fail;
    writer_free(w);
    return 0;
fail:
    h5_close_id(&ds, H5Dclose);
    h5_close_id(&dcpl, H5Pclose);
    h5_close_id(&space, H5Sclose);
    h5_close_id(&w->tokens, H5Dclose);
    h5_close_id(&w->file, H5Fclose);
    unlink(w->tmp);
    cx_err(err, "cannot write shard %s: %s", w->path, why);
    writer_free(w);
    return -1;
}

void shard_writer_abort(ShardWriter *w) {
    if (!w) return;
    h5_quiet();
    h5_close_id(&w->tokens, H5Dclose);
    h5_close_id(&w->file, H5Fclose);
    unlink(w->tmp);
    writer_free(w);
}

// ---------------------------------------------------------------------------------------
// Reader.

// Reads a scalar string attribute (fixed or variable length) into buf (cap bytes).
static int read_str_attr(hid_t obj, const char *name, char *buf, size_t cap, char *why) {
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t mem = H5I_INVALID_HID;
    int rc = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex <= 0) {
        if (ex < 0) h5_why(why, name);
        else snprintf(why, WHY_LEN, "missing attribute %s", name);
        return -1;
    }
    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (type = H5Aget_type(attr)) < 0 ||
        (space = H5Aget_space(attr)) < 0 || (mem = H5Tcopy(H5T_C_S1)) < 0) {
        h5_why(why, name);
        goto out;
    }
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        snprintf(why, WHY_LEN, "attribute %s is not a single string", name);
        goto out;
    }
    if (H5Tis_variable_str(type) > 0) {
        char *s = NULL;
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 || H5Aread(attr, mem, &s) < 0) {
            h5_why(why, name);
            goto out;
        }
        size_t len = s ? strnlen(s, cap) : 0;
        if (len < cap) {
            memcpy(buf, s ? s : "", len);
            buf[len] = '\0';
            rc = 0;
        } else {
            snprintf(why, WHY_LEN, "attribute %s is longer than %zu bytes", name, cap - 1);
        }
        if (s) H5free_memory(s);
    } else {
        size_t size = H5Tget_size(type);
        char *tmp = size > 0 && size <= ((size_t)1 << 16) ? calloc(size + 1, 1) : NULL;
        if (!tmp) {
            snprintf(why, WHY_LEN, "attribute %s has a bad length (%zu)", name, size);
            goto out;
        }
        if (H5Tset_size(mem, size) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 || H5Tset_strpad(mem, H5T_STR_NULLPAD) < 0 ||
            H5Aread(attr, mem, tmp) < 0) {
            h5_why(why, name);
        } else if (strlen(tmp) >= cap) {
            snprintf(why, WHY_LEN, "attribute %s is longer than %zu bytes", name, cap - 1);
        } else {
            memcpy(buf, tmp, strlen(tmp) + 1);
            rc = 0;
        }
        free(tmp);
    }
out:
    h5_close_id(&mem, H5Tclose);
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    h5_close_id(&attr, H5Aclose);
    return rc;
}

static int read_int_attr(hid_t obj, const char *name, int64_t *val, char *why) {
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int rc = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex <= 0) {
        if (ex < 0) h5_why(why, name);
        else snprintf(why, WHY_LEN, "missing attribute %s", name);
        return -1;
    }
    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (type = H5Aget_type(attr)) < 0 ||
        (space = H5Aget_space(attr)) < 0) {
        h5_why(why, name);
        goto out;
    }
    if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1) {
        snprintf(why, WHY_LEN, "attribute %s is not a single integer", name);
        goto out;
    }
    if (H5Aread(attr, H5T_NATIVE_INT64, val) < 0) {
        h5_why(why, name);
        goto out;
    }
    rc = 0;
out:
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    h5_close_id(&attr, H5Aclose);
    return rc;
}

// Whether the object at path (which exists) is a dataset: 1, 0, or -1 with why filled when
// HDF5 cannot open it (damaged object header).
static int is_dataset(hid_t loc, const char *path, char *why) {
    hid_t obj = H5Oopen(loc, path, H5P_DEFAULT);
    if (obj < 0) {
        h5_why(why, NULL);
        return -1;
    }
    int yes = H5Iget_type(obj) == H5I_DATASET;
    H5Oclose(obj);
    H5Eclear2(H5E_DEFAULT);
    return yes;
}

// Reads the 1-D signed integer dataset NAME (elem_size bytes) into a malloc'd array.
static int read_1d(hid_t file, const char *name, size_t elem_size, hid_t mem_type, void **out,
                   size_t *n_out, char *why) {
    hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int rc = -1;
    *out = NULL;
    *n_out = 0;
    htri_t ex = H5Lexists(file, name, H5P_DEFAULT);
    if (ex <= 0) {
        if (ex < 0) h5_why(why, NULL);
        else snprintf(why, WHY_LEN, "missing dataset");
        return -1;
    }
    if ((ex = is_dataset(file, name, why)) <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "not a dataset");
        return -1;
    }
    if ((ds = H5Dopen2(file, name, H5P_DEFAULT)) < 0 || (type = H5Dget_type(ds)) < 0 ||
        (space = H5Dget_space(ds)) < 0) {
        h5_why(why, NULL);
        goto out;
    }
    if (H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != elem_size ||
        H5Tget_sign(type) != H5T_SGN_2) {
        snprintf(why, WHY_LEN, "dtype is not int%zu", elem_size * 8);
        goto out;
    }
    hsize_t dims[1];
    if (H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        H5Eclear2(H5E_DEFAULT);
        snprintf(why, WHY_LEN, "not a 1-D array");
        goto out;
    }
    if (dims[0] > SIZE_MAX / elem_size) {
        snprintf(why, WHY_LEN, "%llu elements is too many", (unsigned long long)dims[0]);
        goto out;
    }
    size_t n = (size_t)dims[0];
    void *buf = malloc(n ? n * elem_size : 1);
    if (!buf) {
        snprintf(why, WHY_LEN, "out of memory for %zu elements", n);
        goto out;
    }
    if (n > 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        h5_why(why, NULL);
        free(buf);
        goto out;
    }
    *out = buf;
    *n_out = n;
    rc = 0;
out:
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    h5_close_id(&ds, H5Dclose);
    return rc;
}

int shard_read(Shard *s, const char *path, char *err) {
    char why[WHY_LEN] = "", fmt[64];
    const char *where = "";   // dataset the problem is in, if any
    hid_t file = H5I_INVALID_HID;
    int64_t v = 0;
    struct stat sb;
    memset(s, 0, sizeof *s);
    h5_quiet();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cx_err(err, "cannot open shard %s: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cx_err(err, "cannot open shard %s: not a regular file", path);
    }
    close(fd);
    if (sb.st_size == 0) return cx_err(err, "shard %s: empty file, not an HDF5 file", path);
    htri_t is = H5Fis_hdf5(path);
    H5Eclear2(H5E_DEFAULT);
    if (is <= 0)
        return cx_err(err, "shard %s: not an HDF5 file (no HDF5 signature; %lld bytes)", path,
                      (long long)sb.st_size);
    if (sb.st_size < SUPERBLOCK_MIN)
        return cx_err(err, "shard %s: file is truncated (%lld bytes, shorter than an HDF5 "
                      "superblock)", path, (long long)sb.st_size);
    if ((file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        h5_why(why, "cannot open");
        goto fail;
    }
    htri_t has_fmt = H5Aexists(file, "format");
    if (has_fmt <= 0) {
        if (has_fmt < 0) h5_why(why, "format");
        else snprintf(why, WHY_LEN, "not a conflux shard (no format attribute)");
        goto fail;
    }
    if (read_str_attr(file, "format", fmt, sizeof fmt, why)) goto fail;
    if (strcmp(fmt, SHARD_FORMAT) != 0) {
        snprintf(why, WHY_LEN, "not a conflux shard (format is \"%s\", expected \"%s\")", fmt,
                 SHARD_FORMAT);
        goto fail;
    }
    if (read_int_attr(file, "version", &v, why)) goto fail;
    if (v != SHARD_VERSION) {
        snprintf(why, WHY_LEN, "unsupported shard version %lld (this build reads version %d)",
                 (long long)v, SHARD_VERSION);
        goto fail;
    }
    if (read_int_attr(file, "vocab_size", &v, why)) goto fail;
    if (v <= 0 || v > INT32_MAX) {
        snprintf(why, WHY_LEN, "vocab_size %lld is out of range", (long long)v);
        goto fail;
    }
    s->vocab_size = (int)v;
    if (read_str_attr(file, "tokenizer", s->tokenizer, sizeof s->tokenizer, why)) goto fail;

    void *p = NULL;
    where = "/tokens";
    if (read_1d(file, "tokens", sizeof(int32_t), H5T_NATIVE_INT32, &p, &s->n_tokens, why))
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
    if (read_1d(file, "doc_offsets", sizeof(int64_t), H5T_NATIVE_INT64, &p, &n_off, why))
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
    h5_close_id(&file, H5Fclose);
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
