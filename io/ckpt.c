// ckpt.c: HDF5 checkpoints (layout in ckpt.h and DESIGN.md).
//
// Files are written with the default (sec2) driver and the HDF5 1.10 file format, so every
// piece of metadata (superblock, object headers holding attributes and compact data, chunk
// indexes) carries a checksum, and every array is chunked with the Fletcher32 filter. A
// flipped bit is therefore reported by HDF5 on open or read, and a truncated file fails the
// superblock's end-of-file check. HDF5's own error-stack printing is turned off; its errors
// are turned into one-line messages naming the file and the dataset.
#include "io/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/common.h"

#define CKPT_FORMAT "conflux-checkpoint"
#define CKPT_VERSION 1
#define CHUNK_BYTES ((size_t)1 << 20)        // target chunk size for arrays
#define COMPACT_MAX_BYTES 32768              // strings up to this go in the object header
#define ATTR_STR_MAX ((size_t)1 << 16)       // longest string attribute we accept
#define CONFIG_MAX ((size_t)64 << 20)        // longest /config we accept
#define WHY_LEN 320
#define SUPERBLOCK_MIN 48                    // bytes in the smallest HDF5 superblock (v2)

struct Ckpt {
    hid_t file;
    char *path;
    char *model;
    long step;
    long samples_seen;
    char *config;
};

// ---------------------------------------------------------------------------------------
// HDF5 error handling: no automatic printing; the innermost message of the error stack,
// translated for the cases a user can meet (truncation, checksum mismatch).

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
        snprintf(w->inner, sizeof w->inner, "%s", e->desc);   // downward: last is innermost
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

// Describes the current HDF5 error stack in why (WHY_LEN bytes) and clears it.
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

// Puts "what: " in front of why.
static void h5_prefix(char *why, const char *what) {
    char tmp[WHY_LEN];
    snprintf(tmp, sizeof tmp, "%s: %s", what, why);
    memcpy(why, tmp, WHY_LEN);
}

static void h5_close_id(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0) fn(*id);
    *id = H5I_INVALID_HID;
}

// Human name of a dataset/attribute type, for messages.
static void type_name(hid_t type, char *buf, size_t cap) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT)
        snprintf(buf, cap, "float%zu", size * 8);
    else if (cls == H5T_INTEGER)
        snprintf(buf, cap, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", size * 8);
    else if (cls == H5T_STRING)
        snprintf(buf, cap, "string");
    else
        snprintf(buf, cap, "HDF5 type class %d", (int)cls);
    H5Eclear2(H5E_DEFAULT);
}

// ---------------------------------------------------------------------------------------
// Writing helpers. Each returns 0, or -1 with why (WHY_LEN bytes) filled.

static hid_t str_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, len + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

static int write_str_attr(hid_t obj, const char *name, const char *val, char *why) {
    hid_t type = str_type(strlen(val)), space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (type < 0 || space < 0) goto out;
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

static int write_int_attr(hid_t obj, const char *name, hid_t file_type, int64_t val, char *why) {
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (space < 0) goto out;
    attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, H5T_NATIVE_INT64, &val) < 0) goto out;
    rc = 0;
out:
    if (rc) h5_why(why, name);
    h5_close_id(&attr, H5Aclose);
    h5_close_id(&space, H5Sclose);
    return rc;
}

// A scalar fixed-length UTF-8 string dataset (compact when small, so the object header's
// checksum covers it).
static int write_str_dataset(hid_t loc, const char *name, const char *text, char *why) {
    size_t len = strlen(text);
    hid_t type = str_type(len), space = H5Screate(H5S_SCALAR), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t ds = H5I_INVALID_HID;
    int rc = -1;
    if (type < 0 || space < 0 || dcpl < 0) goto out;
    if (len + 1 <= COMPACT_MAX_BYTES && H5Pset_layout(dcpl, H5D_COMPACT) < 0) goto out;
    ds = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) < 0) goto out;
    rc = 0;
out:
    if (rc) h5_why(why, name);
    h5_close_id(&ds, H5Dclose);
    h5_close_id(&dcpl, H5Pclose);
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    return rc;
}

// Creates dataset NAME under LOC with the given shape and writes buf. Non-empty arrays are
// chunked (about CHUNK_BYTES per chunk, trailing dimensions kept whole first) with
// Fletcher32; a scalar (ndim 0) is compact (covered by the object header checksum).
static int write_array(hid_t loc, const char *name, const char *label, hid_t file_type,
                       hid_t mem_type, size_t elem_bytes, int ndim, const hsize_t *dims,
                       const void *buf, char *why) {
    hid_t space = H5I_INVALID_HID, dcpl = H5Pcreate(H5P_DATASET_CREATE), ds = H5I_INVALID_HID;
    int rc = -1;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)dims[d];
    if (dcpl < 0) goto out;
    space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    if (space < 0) goto out;
    if (ndim == 0) {
        if (H5Pset_layout(dcpl, H5D_COMPACT) < 0) goto out;
    } else if (n > 0) {
        hsize_t chunk[CX_MAX_DIMS];
        size_t budget = CHUNK_BYTES / elem_bytes;
        for (int d = ndim - 1; d >= 0; d--) {
            hsize_t c = dims[d] < budget ? dims[d] : budget;
            if (c < 1) c = 1;
            // equal chunks: HDF5 stores an edge chunk whole, so 300 rows in 262-row chunks
            // would waste 224 rows; 2 chunks of 150 waste none
            hsize_t n_chunks = (dims[d] + c - 1) / c;
            c = (dims[d] + n_chunks - 1) / n_chunks;
            chunk[d] = c;
            budget /= (size_t)c;
            if (budget < 1) budget = 1;
        }
        if (H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) goto out;
    }
    ds = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0) goto out;
    if (n > 0 && H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) goto out;
    rc = 0;
out:
    if (rc) h5_why(why, label);
    h5_close_id(&ds, H5Dclose);
    h5_close_id(&space, H5Sclose);
    h5_close_id(&dcpl, H5Pclose);
    return rc;
}

static int write_floats(hid_t loc, const char *name, const char *label, const TensorSpec *s,
                        const float *arena, char *why) {
    hsize_t dims[CX_MAX_DIMS];
    for (int d = 0; d < s->ndim; d++) dims[d] = (hsize_t)s->shape[d];
    return write_array(loc, name, label, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float), s->ndim, dims,
                       arena + s->offset, why);
}

// A dataset or link name: non-empty, no '/', not "." (HDF5 would read those as paths).
static int valid_name(const char *s, size_t max) {
    if (!s || !s[0]) return 0;
    size_t len = strnlen(s, max);
    if (len == max) return 0;
    return strchr(s, '/') == NULL && strcmp(s, ".") != 0;
}

static int spec_index(const TensorSpec *specs, int n_specs, const char *name) {
    for (int i = 0; i < n_specs; i++)
        if (strncmp(specs[i].name, name, CX_NAME_LEN) == 0) return i;
    return -1;
}

// Splits "group/key" (an optional leading '/' is ignored) into group and key.
static int split_extra(const char *path, char *group, char *key, size_t cap) {
    if (!path) return -1;
    if (path[0] == '/') path++;
    const char *slash = strchr(path, '/');
    if (!slash || slash == path || !slash[1] || strchr(slash + 1, '/')) return -1;
    size_t glen = (size_t)(slash - path), klen = strlen(slash + 1);
    if (glen >= cap || klen >= cap) return -1;
    memcpy(group, path, glen);
    group[glen] = '\0';
    memcpy(key, slash + 1, klen + 1);
    if (!valid_name(group, cap) || !valid_name(key, cap)) return -1;
    return 0;
}

static int validate_state(const CkptState *st, char *why) {
    if (!st) return snprintf(why, WHY_LEN, "no state given"), -1;
    if (st->n_specs < 0 || (st->n_specs > 0 && (!st->specs || !st->params)))
        return snprintf(why, WHY_LEN, "no parameter table or arena"), -1;
    for (int i = 0; i < st->n_specs; i++) {
        const TensorSpec *s = &st->specs[i];
        if (!valid_name(s->name, CX_NAME_LEN))
            return snprintf(why, WHY_LEN, "parameter %d has an invalid name", i), -1;
        if (s->ndim < 0 || s->ndim > CX_MAX_DIMS)
            return snprintf(why, WHY_LEN, "parameter %s: ndim %d", s->name, s->ndim), -1;
        size_t n = 1;
        for (int d = 0; d < s->ndim; d++) {
            if (s->shape[d] < 0)
                return snprintf(why, WHY_LEN, "parameter %s: negative dimension", s->name), -1;
            n *= (size_t)s->shape[d];
        }
        if (n != s->n)
            return snprintf(why, WHY_LEN, "parameter %s: shape holds %zu elements, spec says %zu",
                            s->name, n, s->n), -1;
    }
    if (st->n_aliases < 0 || (st->n_aliases > 0 && !st->aliases))
        return snprintf(why, WHY_LEN, "no alias table"), -1;
    for (int i = 0; i < st->n_aliases; i++) {
        const TensorAlias *a = &st->aliases[i];
        if (!valid_name(a->name, CX_NAME_LEN))
            return snprintf(why, WHY_LEN, "alias %d has an invalid name", i), -1;
        if (!a->target || spec_index(st->specs, st->n_specs, a->target) < 0)
            return snprintf(why, WHY_LEN, "alias %s: target %s is not a parameter", a->name,
                            a->target ? a->target : "(null)"), -1;
    }
    if (st->optim_name) {
        if (st->n_slots < 0 || st->n_slots > CKPT_MAX_SLOTS)
            return snprintf(why, WHY_LEN, "%d optimizer slots (at most %d)", st->n_slots,
                            CKPT_MAX_SLOTS), -1;
        for (int k = 0; k < st->n_slots; k++) {
            if (!valid_name(st->slot_names[k], CX_NAME_LEN))
                return snprintf(why, WHY_LEN, "optimizer slot %d has an invalid name", k), -1;
            if (st->n_specs > 0 && !st->slots[k])
                return snprintf(why, WHY_LEN, "optimizer slot %s has no arena",
                                st->slot_names[k]), -1;
        }
    }
    if (st->n_extra < 0 || st->n_extra > CKPT_MAX_EXTRA)
        return snprintf(why, WHY_LEN, "%d extra arrays (at most %d)", st->n_extra,
                        CKPT_MAX_EXTRA), -1;
    for (int i = 0; i < st->n_extra; i++) {
        char g[CX_NAME_LEN], k[CX_NAME_LEN];
        const CkptExtra *e = &st->extra[i];
        if (split_extra(e->path, g, k, sizeof g) < 0)
            return snprintf(why, WHY_LEN, "extra array %d: path \"%s\" is not group/key", i,
                            e->path ? e->path : "(null)"), -1;
        if (!strcmp(g, "params") || !strcmp(g, "optim") || !strcmp(g, "config"))
            return snprintf(why, WHY_LEN, "extra array %s: group %s is reserved", e->path, g), -1;
        if (e->n > 0 && !e->data)
            return snprintf(why, WHY_LEN, "extra array %s has no data", e->path), -1;
    }
    return 0;
}

static void iso_now(char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "1970-01-01T00:00:00Z");
}

// fsync of the written file, rename over path, fsync of the directory.
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
    if (!dir) return 0;   // the file is in place; only the directory sync is skipped
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);   // best effort: some file systems refuse fsync on directories
        close(dfd);
    }
    free(dir);
    return 0;
}

static hid_t make_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

static int write_contents(hid_t file, const CkptState *st, char *why) {
    char created[32], what[CX_NAME_LEN * 2 + 32];
    hid_t g = H5I_INVALID_HID, sub = H5I_INVALID_HID;
    int rc = -1;
    iso_now(created, sizeof created);
    if (write_str_attr(file, "format", CKPT_FORMAT, why) ||
        write_int_attr(file, "version", H5T_STD_I32LE, CKPT_VERSION, why) ||
        write_str_attr(file, "model", st->model ? st->model : "", why) ||
        write_int_attr(file, "step", H5T_STD_I64LE, st->step, why) ||
        write_int_attr(file, "samples_seen", H5T_STD_I64LE, st->samples_seen, why) ||
        write_str_attr(file, "created", created, why) ||
        write_str_attr(file, "writer", st->writer ? st->writer : "conflux " CONFLUX_VERSION, why) ||
        write_str_dataset(file, "config", st->config_text ? st->config_text : "", why))
        goto out;

    if ((g = H5Gcreate2(file, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        h5_why(why, "/params");
        goto out;
    }
    for (int i = 0; i < st->n_specs; i++) {
        snprintf(what, sizeof what, "/params/%s", st->specs[i].name);
        if (write_floats(g, st->specs[i].name, what, &st->specs[i], st->params, why)) goto out;
    }
    for (int i = 0; i < st->n_aliases; i++) {
        if (H5Lcreate_hard(g, st->aliases[i].target, g, st->aliases[i].name, H5P_DEFAULT,
                           H5P_DEFAULT) < 0) {
            snprintf(what, sizeof what, "/params/%s", st->aliases[i].name);
            h5_why(why, what);
            goto out;
        }
    }
    h5_close_id(&g, H5Gclose);

    if (st->optim_name) {
        if ((g = H5Gcreate2(file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            h5_why(why, "/optim");
            goto out;
        }
        if (write_str_attr(g, "name", st->optim_name, why) ||
            write_int_attr(g, "step", H5T_STD_I64LE, st->optim_step, why))
            goto out;
        for (int i = 0; i < st->n_specs; i++) {
            const TensorSpec *s = &st->specs[i];
            snprintf(what, sizeof what, "/optim/%s", s->name);
            if ((sub = H5Gcreate2(g, s->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
                h5_why(why, what);
                goto out;
            }
            for (int k = 0; k < st->n_slots; k++) {
                char label[sizeof what + CX_NAME_LEN];
                snprintf(label, sizeof label, "%s/%s", what, st->slot_names[k]);
                if (write_floats(sub, st->slot_names[k], label, s, st->slots[k], why)) goto out;
            }
            h5_close_id(&sub, H5Gclose);
        }
        h5_close_id(&g, H5Gclose);
    }

    for (int i = 0; i < st->n_extra; i++) {
        const CkptExtra *e = &st->extra[i];
        char gname[CX_NAME_LEN], key[CX_NAME_LEN];
        split_extra(e->path, gname, key, sizeof gname);   // validated before
        htri_t exists = H5Lexists(file, gname, H5P_DEFAULT);   // a file we are writing
        g = exists > 0 ? H5Gopen2(file, gname, H5P_DEFAULT)
                       : H5Gcreate2(file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        snprintf(what, sizeof what, "/%s/%s", gname, key);
        if (g < 0) {
            h5_why(why, what);
            goto out;
        }
        hsize_t dims[1] = {(hsize_t)e->n};
        if (write_array(g, key, what, H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(int64_t), 1, dims,
                        e->data, why))
            goto out;
        h5_close_id(&g, H5Gclose);
    }
    rc = 0;
out:
    h5_close_id(&sub, H5Gclose);
    h5_close_id(&g, H5Gclose);
    return rc;
}

int ckpt_save(const char *path, const CkptState *st, char *err) {
    char why[WHY_LEN] = "";
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    char *tmp = NULL;
    int created_tmp = 0;
    h5_quiet();
    if (!path || !path[0]) return cx_err(err, "cannot write checkpoint: empty path");
    if (validate_state(st, why)) goto fail;
    size_t tcap = strlen(path) + 32;
    if (!(tmp = malloc(tcap))) {
        snprintf(why, WHY_LEN, "out of memory");
        goto fail;
    }
    snprintf(tmp, tcap, "%s.tmp.%ld", path, (long)getpid());
    // Create the file ourselves first: a clear errno message for a missing or read-only
    // directory instead of HDF5's.
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(why, WHY_LEN, "cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    created_tmp = 1;
    if ((fapl = make_fapl()) < 0) {
        h5_why(why, "file access properties");
        goto fail;
    }
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) {
        h5_why(why, tmp);
        goto fail;
    }
    if (write_contents(file, st, why)) goto fail;
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        h5_why(why, "flush");
        goto fail;
    }
    herr_t cl = H5Fclose(file);
    file = H5I_INVALID_HID;
    if (cl < 0) {
        h5_why(why, "close");
        goto fail;
    }
    if (commit_file(tmp, path, why)) goto fail;
    H5Pclose(fapl);
    free(tmp);
    return 0;
fail:
    h5_close_id(&file, H5Fclose);
    h5_close_id(&fapl, H5Pclose);
    H5Eclear2(H5E_DEFAULT);
    if (created_tmp) unlink(tmp);
    free(tmp);
    return cx_err(err, "cannot write checkpoint %s: %s", path, why);
}

// ---------------------------------------------------------------------------------------
// Reading helpers.

// Reads a scalar string attribute (fixed or variable length) into a malloc'd string.
// Returns NULL with why filled.
static char *read_str_attr(hid_t obj, const char *name, char *why) {
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT), type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    hid_t space = H5I_INVALID_HID;
    char *out = NULL;
    if (attr < 0) {
        h5_why(why, name);
        goto out;
    }
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    if (type < 0 || space < 0) {
        h5_why(why, name);
        goto out;
    }
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        char tn[48];
        type_name(type, tn, sizeof tn);
        snprintf(why, WHY_LEN, "attribute %s is not a single string (%s)", name, tn);
        goto out;
    }
    htri_t vlen = H5Tis_variable_str(type);
    mem = H5Tcopy(H5T_C_S1);
    if (vlen > 0) {
        char *s = NULL;
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 || H5Aread(attr, mem, &s) < 0) {
            h5_why(why, name);
            goto out;
        }
        if (!s) {
            out = strdup("");
        } else {
            size_t len = strnlen(s, ATTR_STR_MAX);
            if (len < ATTR_STR_MAX) out = strndup(s, len);
            else snprintf(why, WHY_LEN, "attribute %s is too long", name);
            H5free_memory(s);
        }
    } else {
        size_t size = H5Tget_size(type);
        if (size == 0 || size > ATTR_STR_MAX) {
            snprintf(why, WHY_LEN, "attribute %s has a bad length (%zu)", name, size);
            goto out;
        }
        char *buf = calloc(size + 1, 1);
        if (!buf) {
            snprintf(why, WHY_LEN, "out of memory");
            goto out;
        }
        if (H5Tset_size(mem, size) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 || H5Tset_strpad(mem, H5T_STR_NULLPAD) < 0 ||
            H5Aread(attr, mem, buf) < 0) {
            h5_why(why, name);
            free(buf);
            goto out;
        }
        out = buf;
    }
    if (!out && !why[0]) snprintf(why, WHY_LEN, "out of memory");
out:
    h5_close_id(&mem, H5Tclose);
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    h5_close_id(&attr, H5Aclose);
    return out;
}

static int read_int_attr(hid_t obj, const char *name, int64_t *val, char *why) {
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT), type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int rc = -1;
    if (attr < 0) {
        h5_why(why, name);
        goto out;
    }
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    if (type < 0 || space < 0) {
        h5_why(why, name);
        goto out;
    }
    if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1) {
        char tn[48];
        type_name(type, tn, sizeof tn);
        snprintf(why, WHY_LEN, "attribute %s is not a single integer (%s)", name, tn);
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

// 1 if obj has attribute name, 0 if not, -1 (why filled) if HDF5 cannot tell (damage).
static int has_attr(hid_t obj, const char *name, char *why) {
    htri_t r = H5Aexists(obj, name);
    if (r < 0) {
        h5_why(why, name);
        return -1;
    }
    return r > 0;
}

// 0 if the attribute exists; -1 with why ("missing attribute ..." or the HDF5 problem).
static int need_attr(hid_t obj, const char *where, const char *name, char *why) {
    int r = has_attr(obj, name, why);
    if (r == 0) snprintf(why, WHY_LEN, "missing attribute %s%s", where, name);
    return r > 0 ? 0 : -1;
}

// Whether an absolute or relative link path exists, every component checked: 1, 0, or -1
// with why filled when HDF5 fails (a damaged group).
static int link_exists(hid_t loc, const char *path, char *why) {
    size_t len = strlen(path);
    char *p = malloc(len + 1);
    if (!p) {
        snprintf(why, WHY_LEN, "out of memory");
        return -1;
    }
    memcpy(p, path, len + 1);
    int rc = 1;
    for (char *s = p + (p[0] == '/'); rc == 1 && *s;) {
        char *slash = strchr(s, '/');
        if (slash) *slash = '\0';
        htri_t r = H5Lexists(loc, p, H5P_DEFAULT);
        if (r < 0) {
            h5_why(why, NULL);
            rc = -1;
        } else if (r == 0) {
            rc = 0;
        }
        if (!slash) break;
        *slash = '/';
        s = slash + 1;
    }
    free(p);
    return rc;
}

static int check_signature(const char *path, const char *kind, char *err) {
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cx_err(err, "cannot open %s %s: %s", kind, path, strerror(errno));
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cx_err(err, "cannot open %s %s: not a regular file", kind, path);
    }
    close(fd);
    if (sb.st_size == 0) return cx_err(err, "%s %s: empty file, not an HDF5 file", kind, path);
    htri_t is = H5Fis_hdf5(path);
    H5Eclear2(H5E_DEFAULT);
    if (is <= 0)
        return cx_err(err, "%s %s: not an HDF5 file (no HDF5 signature; %lld bytes)", kind, path,
                      (long long)sb.st_size);
    if (sb.st_size < SUPERBLOCK_MIN)
        return cx_err(err, "%s %s: file is truncated (%lld bytes, shorter than an HDF5 superblock)",
                      kind, path, (long long)sb.st_size);
    return 0;
}

// Reads the scalar string dataset /config (fixed or variable length) into *out.
static int read_config(hid_t file, char **out, char *why) {
    hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t mem = H5I_INVALID_HID;
    int rc = -1;
    int ex = link_exists(file, "config", why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "missing dataset /config");
        else h5_prefix(why, "/config");
        return -1;
    }
    if ((ds = H5Dopen2(file, "config", H5P_DEFAULT)) < 0 || (type = H5Dget_type(ds)) < 0 ||
        (space = H5Dget_space(ds)) < 0 || (mem = H5Tcopy(H5T_C_S1)) < 0) {
        h5_why(why, "/config");
        goto out;
    }
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        snprintf(why, WHY_LEN, "/config is not a single string");
        goto out;
    }
    if (H5Tis_variable_str(type) > 0) {
        char *s = NULL;
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 ||
            H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s) < 0) {
            h5_why(why, "/config");
            goto out;
        }
        size_t len = s ? strnlen(s, CONFIG_MAX) : 0;
        if (len == CONFIG_MAX) snprintf(why, WHY_LEN, "/config is too long");
        else if (!(*out = strndup(s ? s : "", len))) snprintf(why, WHY_LEN, "out of memory");
        else rc = 0;
        if (s) H5free_memory(s);
    } else {
        size_t size = H5Tget_size(type);
        if (size == 0 || size > CONFIG_MAX) {
            snprintf(why, WHY_LEN, "/config has a bad length (%zu)", size);
        } else if (!(*out = calloc(size + 1, 1))) {
            snprintf(why, WHY_LEN, "out of memory");
        } else if (H5Tset_size(mem, size) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 || H5Tset_strpad(mem, H5T_STR_NULLPAD) < 0 ||
                   H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
            h5_why(why, "/config");
        } else {
            rc = 0;
        }
    }
out:
    h5_close_id(&mem, H5Tclose);
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    h5_close_id(&ds, H5Dclose);
    return rc;
}

int ckpt_open(Ckpt **out, const char *path, char *err) {
    char why[WHY_LEN] = "";
    Ckpt *ck = NULL;
    char *fmt = NULL;
    int64_t v = 0;
    *out = NULL;
    h5_quiet();
    if (check_signature(path, "checkpoint", err)) return -1;
    ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->path = strdup(path))) {
        free(ck);
        return cx_err(err, "checkpoint %s: out of memory", path);
    }
    ck->file = H5I_INVALID_HID;
    // Default access properties (weak close degree), so that another open of the same file
    // in this process does not conflict.
    ck->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ck->file < 0) {
        h5_why(why, "cannot open");
        goto fail;
    }
    int ex = has_attr(ck->file, "format", why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "not a conflux checkpoint (no format attribute)");
        goto fail;
    }
    if (!(fmt = read_str_attr(ck->file, "format", why))) goto fail;
    if (strcmp(fmt, CKPT_FORMAT) != 0) {
        snprintf(why, WHY_LEN, "not a conflux checkpoint (format is \"%.64s\", expected \"%s\")",
                 fmt, CKPT_FORMAT);
        goto fail;
    }
    if (need_attr(ck->file, "/", "version", why) || read_int_attr(ck->file, "version", &v, why))
        goto fail;
    if (v != CKPT_VERSION) {
        snprintf(why, WHY_LEN, "unsupported checkpoint version %lld (this build reads version %d)",
                 (long long)v, CKPT_VERSION);
        goto fail;
    }
    // The rest of the header: required by the layout; files written by other tools (golden
    // values) carry them too.
    if (need_attr(ck->file, "/", "model", why) || need_attr(ck->file, "/", "step", why) ||
        need_attr(ck->file, "/", "samples_seen", why))
        goto fail;
    if (!(ck->model = read_str_attr(ck->file, "model", why))) goto fail;
    if (read_int_attr(ck->file, "step", &v, why)) goto fail;
    ck->step = (long)v;
    if (read_int_attr(ck->file, "samples_seen", &v, why)) goto fail;
    ck->samples_seen = (long)v;

    if (read_config(ck->file, &ck->config, why)) goto fail;

    free(fmt);
    *out = ck;
    return 0;
fail:
    free(fmt);
    ckpt_close(ck);
    H5Eclear2(H5E_DEFAULT);
    return cx_err(err, "checkpoint %s: %s", path, why);
}

void ckpt_close(Ckpt *ck) {
    if (!ck) return;
    if (ck->file >= 0) H5Fclose(ck->file);
    H5Eclear2(H5E_DEFAULT);
    free(ck->path);
    free(ck->model);
    free(ck->config);
    free(ck);
}

const char *ckpt_model(const Ckpt *ck) { return ck->model; }
long ckpt_step(const Ckpt *ck) { return ck->step; }
long ckpt_samples_seen(const Ckpt *ck) { return ck->samples_seen; }
const char *ckpt_config_text(const Ckpt *ck) { return ck->config; }

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

// "(d0,d1,...)" into buf (cap >= 8 bytes) from hd (file dims) or ld (spec dims); a shape
// too long to fit ends in "...)".
static void format_shape(char *buf, size_t cap, int nd, const hsize_t *hd, const long *ld) {
    size_t len = 1;
    buf[0] = '(';
    buf[1] = '\0';
    for (int d = 0; d < nd; d++) {
        long long v = hd ? (long long)hd[d] : (long long)ld[d];
        int w = snprintf(buf + len, cap - len, "%s%lld", d ? "," : "", v);
        if (w < 0 || (size_t)w >= cap - len - 1) {
            memcpy(buf + cap - 5, "...)", 5);
            return;
        }
        len += (size_t)w;
    }
    buf[len] = ')';
    buf[len + 1] = '\0';
}

// Reads dataset dpath into buf. Type must be class cls with elem_size bytes (signed for
// integers). Shape: when ndim >= 0 it must be exactly shape[0..ndim) (ndim 0: scalar);
// otherwise only the element count n is checked.
static int read_dataset(Ckpt *ck, const char *dpath, H5T_class_t cls, size_t elem_size,
                        hid_t mem_type, int ndim, const long *shape, size_t n, void *buf,
                        char *err) {
    char why[WHY_LEN] = "";
    hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int rc = -1;
    h5_quiet();
    int ex = link_exists(ck->file, dpath, why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "missing dataset");
        goto out;
    }
    if ((ex = is_dataset(ck->file, dpath, why)) <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "not a dataset");
        goto out;
    }
    if ((ds = H5Dopen2(ck->file, dpath, H5P_DEFAULT)) < 0 || (type = H5Dget_type(ds)) < 0 ||
        (space = H5Dget_space(ds)) < 0) {
        h5_why(why, NULL);
        goto out;
    }
    int sign_ok = cls != H5T_INTEGER || H5Tget_sign(type) == H5T_SGN_2;
    if (H5Tget_class(type) != cls || H5Tget_size(type) != elem_size || !sign_ok) {
        char tn[48], want[48];
        type_name(type, tn, sizeof tn);
        type_name(mem_type, want, sizeof want);
        snprintf(why, WHY_LEN, "dtype is %s, expected %s", tn, want);
        goto out;
    }
    int fnd = H5Sget_simple_extent_ndims(space);
    hsize_t fdims[H5S_MAX_RANK];
    if (fnd < 0 || H5Sget_simple_extent_dims(space, fdims, NULL) < 0) {
        h5_why(why, NULL);
        goto out;
    }
    char fshape[96], wshape[96];
    format_shape(fshape, sizeof fshape, fnd, fdims, NULL);
    if (ndim >= 0) {
        int same = fnd == ndim;
        for (int d = 0; d < ndim; d++)
            if (same && (shape[d] < 0 || fdims[d] != (hsize_t)shape[d])) same = 0;
        format_shape(wshape, sizeof wshape, ndim, NULL, shape);
        if (!same) {
            snprintf(why, WHY_LEN, "shape is %s, expected %s", fshape, wshape);
            goto out;
        }
    }
    hssize_t np = H5Sget_simple_extent_npoints(space);
    if (np < 0 || (size_t)np != n) {
        snprintf(why, WHY_LEN, "holds %lld elements %s, expected %zu", (long long)np, fshape, n);
        goto out;
    }
    if (n > 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        h5_why(why, NULL);
        goto out;
    }
    rc = 0;
out:
    h5_close_id(&space, H5Sclose);
    h5_close_id(&type, H5Tclose);
    h5_close_id(&ds, H5Dclose);
    H5Eclear2(H5E_DEFAULT);
    if (rc) cx_err(err, "checkpoint %s: dataset %s: %s", ck->path, dpath, why);
    return rc;
}

static int read_spec_arrays(Ckpt *ck, const char *prefix, const char *suffix,
                            const TensorSpec *specs, int n_specs, float *arena, char *err) {
    char dpath[2 * CX_NAME_LEN + 64];
    for (int i = 0; i < n_specs; i++) {
        const TensorSpec *s = &specs[i];
        if (!valid_name(s->name, CX_NAME_LEN) || s->ndim < 0 || s->ndim > CX_MAX_DIMS)
            return cx_err(err, "checkpoint %s: parameter %d has a bad spec", ck->path, i);
        snprintf(dpath, sizeof dpath, "%s%s%s", prefix, s->name, suffix);
        if (read_dataset(ck, dpath, H5T_FLOAT, sizeof(float), H5T_NATIVE_FLOAT, s->ndim, s->shape,
                         s->n, arena + s->offset, err))
            return -1;
    }
    return 0;
}

int ckpt_read_params(Ckpt *ck, const TensorSpec *specs, int n_specs, float *params, char *err) {
    return read_spec_arrays(ck, "/params/", "", specs, n_specs, params, err);
}

int ckpt_read_optim_info(Ckpt *ck, char *name, size_t cap, long *step, char *err) {
    char why[WHY_LEN] = "";
    hid_t g = H5I_INVALID_HID;
    char *s = NULL;
    int64_t v = 0;
    int rc = -1;
    h5_quiet();
    int ex = link_exists(ck->file, "optim", why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "no /optim group");
        else h5_prefix(why, "/optim");
        goto out;
    }
    if ((g = H5Gopen2(ck->file, "optim", H5P_DEFAULT)) < 0) {
        h5_why(why, "/optim");
        goto out;
    }
    if (need_attr(g, "/optim/", "name", why) || need_attr(g, "/optim/", "step", why)) goto out;
    if (!(s = read_str_attr(g, "name", why)) || read_int_attr(g, "step", &v, why)) goto out;
    if (strlen(s) >= cap) {
        snprintf(why, WHY_LEN, "/optim name \"%.64s\" is too long", s);
        goto out;
    }
    memcpy(name, s, strlen(s) + 1);
    *step = (long)v;
    rc = 0;
out:
    free(s);
    h5_close_id(&g, H5Gclose);
    H5Eclear2(H5E_DEFAULT);
    if (rc) cx_err(err, "checkpoint %s: %s", ck->path, why);
    return rc;
}

int ckpt_read_slot(Ckpt *ck, const char *slot, const TensorSpec *specs, int n_specs,
                   float *arena, char *err) {
    if (!valid_name(slot, CX_NAME_LEN))
        return cx_err(err, "checkpoint %s: invalid optimizer slot name", ck->path);
    char suffix[CX_NAME_LEN + 2];
    snprintf(suffix, sizeof suffix, "/%s", slot);
    return read_spec_arrays(ck, "/optim/", suffix, specs, n_specs, arena, err);
}

// Absolute dataset path from a user path; NULL (with err) if unusable.
static char *abs_path(Ckpt *ck, const char *path, char *err) {
    if (!path || !path[0] || !strcmp(path, "/")) {
        cx_err(err, "checkpoint %s: empty dataset path", ck->path);
        return NULL;
    }
    size_t len = strlen(path);
    char *p = malloc(len + 2);
    if (!p) {
        cx_err(err, "checkpoint %s: out of memory", ck->path);
        return NULL;
    }
    snprintf(p, len + 2, "%s%s", path[0] == '/' ? "" : "/", path);
    return p;
}

int ckpt_read_extra(Ckpt *ck, const char *path, int64_t *data, size_t n, char *err) {
    char *p = abs_path(ck, path, err);
    if (!p) return -1;
    int rc = read_dataset(ck, p, H5T_INTEGER, sizeof(int64_t), H5T_NATIVE_INT64, -1, NULL, n,
                          data, err);
    free(p);
    return rc;
}

int ckpt_read_float(Ckpt *ck, const char *path, float *data, size_t n, char *err) {
    char *p = abs_path(ck, path, err);
    if (!p) return -1;
    int rc = read_dataset(ck, p, H5T_FLOAT, sizeof(float), H5T_NATIVE_FLOAT, -1, NULL, n, data, err);
    free(p);
    return rc;
}

int ckpt_read_int32(Ckpt *ck, const char *path, int32_t *data, size_t n, char *err) {
    char *p = abs_path(ck, path, err);
    if (!p) return -1;
    int rc = read_dataset(ck, p, H5T_INTEGER, sizeof(int32_t), H5T_NATIVE_INT32, -1, NULL, n,
                          data, err);
    free(p);
    return rc;
}
