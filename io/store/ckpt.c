// ckpt.c: HDF5 checkpoints (layout in ckpt.h and docs/design.md).
//
// Files are written with the default (sec2) driver and the HDF5 1.10 file format, so every
// piece of metadata (superblock, object headers holding attributes and compact data, chunk
// indexes) carries a checksum, and every array is chunked with the Fletcher32 filter. A
// flipped bit is therefore reported by HDF5 on open or read, and a truncated file fails the
// superblock's end-of-file check. HDF5's own error-stack printing is turned off; its errors
// are turned into one-line messages naming the file and the dataset.
#include "io/store/ckpt.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/store/h5util_internal.h"
#include "models/common.h"

#define CKPT_FORMAT "conflux-checkpoint"
#define CKPT_VERSION 1
#define COMPACT_MAX_BYTES 32768              // strings up to this go in the object header
#define CONFIG_MAX ((size_t)64 << 20)        // longest /config we accept
#define WHY_LEN H5U_WHY_LEN

struct Ckpt {
    hid_t file;
    char *path;
    char *model;
    long step;
    long samples_seen;
    char *config;
};

// ---------------------------------------------------------------------------------------
// Messages (HDF5 errors are turned into them by h5u_why, io/store/h5util.c).

// Puts "what: " in front of why.
static void h5_prefix(char *why, const char *what) {
    char tmp[WHY_LEN];
    snprintf(tmp, sizeof tmp, "%s: %s", what, why);
    memcpy(why, tmp, WHY_LEN);
}

// ---------------------------------------------------------------------------------------
// Writing helpers. Each returns 0, or -1 with why (WHY_LEN bytes) filled.

// A scalar fixed-length UTF-8 string dataset (compact when small, so the object header's
// checksum covers it).
static int write_str_dataset(hid_t loc, const char *name, const char *text, char *why) {
    size_t len = strlen(text);
    hid_t type = h5u_str_type(len), space = H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), ds = H5I_INVALID_HID;
    int rc = -1;
    if (type < 0 || space < 0 || dcpl < 0) goto out;
    if (len + 1 <= COMPACT_MAX_BYTES && H5Pset_layout(dcpl, H5D_COMPACT) < 0) goto out;
    ds = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) < 0) goto out;
    rc = 0;
out:
    if (rc) h5u_why(why, name);
    h5u_close_id(&ds, H5Dclose);
    h5u_close_id(&dcpl, H5Pclose);
    h5u_close_id(&space, H5Sclose);
    h5u_close_id(&type, H5Tclose);
    return rc;
}

static int write_floats(hid_t loc, const char *name, const char *label, const TensorSpec *s,
                        const float *arena, char *why) {
    hsize_t dims[CX_MAX_DIMS];
    for (int d = 0; d < s->ndim; d++) dims[d] = (hsize_t)s->shape[d];
    return h5u_write_array(loc, name, label, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float),
                           s->ndim, dims, arena + s->offset, why);
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

static int write_contents(hid_t file, const CkptState *st, char *why) {
    char created[32], what[CX_NAME_LEN * 2 + 32];
    hid_t g = H5I_INVALID_HID, sub = H5I_INVALID_HID;
    int rc = -1;
    iso_now(created, sizeof created);
    if (h5u_write_str_attr(file, "format", CKPT_FORMAT, why) ||
        h5u_write_int_attr(file, "version", H5T_STD_I32LE, CKPT_VERSION, why) ||
        h5u_write_str_attr(file, "model", st->model ? st->model : "", why) ||
        h5u_write_int_attr(file, "step", H5T_STD_I64LE, st->step, why) ||
        h5u_write_int_attr(file, "samples_seen", H5T_STD_I64LE, st->samples_seen, why) ||
        h5u_write_str_attr(file, "created", created, why) ||
        h5u_write_str_attr(file, "writer", st->writer ? st->writer : "conflux " CONFLUX_VERSION,
                           why) ||
        write_str_dataset(file, "config", st->config_text ? st->config_text : "", why))
        goto out;

    if ((g = H5Gcreate2(file, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        h5u_why(why, "/params");
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
            h5u_why(why, what);
            goto out;
        }
    }
    h5u_close_id(&g, H5Gclose);

    if (st->optim_name) {
        if ((g = H5Gcreate2(file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            h5u_why(why, "/optim");
            goto out;
        }
        if (h5u_write_str_attr(g, "name", st->optim_name, why) ||
            h5u_write_int_attr(g, "step", H5T_STD_I64LE, st->optim_step, why))
            goto out;
        for (int i = 0; i < st->n_specs; i++) {
            const TensorSpec *s = &st->specs[i];
            snprintf(what, sizeof what, "/optim/%s", s->name);
            if ((sub = H5Gcreate2(g, s->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
                h5u_why(why, what);
                goto out;
            }
            for (int k = 0; k < st->n_slots; k++) {
                char label[sizeof what + CX_NAME_LEN];
                snprintf(label, sizeof label, "%s/%s", what, st->slot_names[k]);
                if (write_floats(sub, st->slot_names[k], label, s, st->slots[k], why)) goto out;
            }
            h5u_close_id(&sub, H5Gclose);
        }
        h5u_close_id(&g, H5Gclose);
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
            h5u_why(why, what);
            goto out;
        }
        hsize_t dims[1] = {(hsize_t)e->n};
        if (h5u_write_array(g, key, what, H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(int64_t), 1,
                            dims, e->data, why))
            goto out;
        h5u_close_id(&g, H5Gclose);
    }
    rc = 0;
out:
    h5u_close_id(&sub, H5Gclose);
    h5u_close_id(&g, H5Gclose);
    return rc;
}

int ckpt_save(const char *path, const CkptState *st, char *err) {
    char why[WHY_LEN] = "";
    hid_t file = H5I_INVALID_HID;
    char *tmp = NULL;
    h5u_quiet();
    if (!path || !path[0]) return cx_err(err, "cannot write checkpoint: empty path");
    if (validate_state(st, why)) goto fail;
    if ((file = h5u_tmp_create(path, &tmp, why)) < 0) goto fail;
    if (write_contents(file, st, why) || h5u_tmp_commit(&file, tmp, path, why)) goto fail;
    free(tmp);
    return 0;
fail:
    h5u_close_id(&file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    if (tmp) unlink(tmp);
    free(tmp);
    return cx_err(err, "cannot write checkpoint %s: %s", path, why);
}

// ---------------------------------------------------------------------------------------
// Reading.

// Reads the scalar string dataset /config (fixed or variable length) into *out.
static int read_config(hid_t file, char **out, char *why) {
    int ex = h5u_link_exists(file, "config", why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "missing dataset /config");
        else h5_prefix(why, "/config");
        return -1;
    }
    *out = h5u_read_str_dataset(file, "config", "/config", CONFIG_MAX, why);
    return *out ? 0 : -1;
}

int ckpt_open(Ckpt **out, const char *path, char *err) {
    char why[WHY_LEN] = "";
    Ckpt *ck = NULL;
    char *fmt = NULL;
    int64_t v = 0;
    *out = NULL;
    h5u_quiet();
    if (h5u_check_signature(path, "checkpoint", err)) return -1;
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
        h5u_why(why, "cannot open");
        goto fail;
    }
    int ex = h5u_has_attr(ck->file, "format", why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "not a conflux checkpoint (no format attribute)");
        goto fail;
    }
    if (!(fmt = h5u_read_str_attr(ck->file, "format", why))) goto fail;
    if (strcmp(fmt, CKPT_FORMAT) != 0) {
        snprintf(why, WHY_LEN, "not a conflux checkpoint (format is \"%.64s\", expected \"%s\")",
                 fmt, CKPT_FORMAT);
        goto fail;
    }
    if (h5u_need_attr(ck->file, "/", "version", why) ||
        h5u_read_int_attr(ck->file, "version", &v, why))
        goto fail;
    if (v != CKPT_VERSION) {
        snprintf(why, WHY_LEN, "unsupported checkpoint version %lld (this build reads version %d)",
                 (long long)v, CKPT_VERSION);
        goto fail;
    }
    // The rest of the header: required by the layout; files written by other tools (golden
    // values) carry them too.
    if (h5u_need_attr(ck->file, "/", "model", why) || h5u_need_attr(ck->file, "/", "step", why) ||
        h5u_need_attr(ck->file, "/", "samples_seen", why))
        goto fail;
    if (!(ck->model = h5u_read_str_attr(ck->file, "model", why))) goto fail;
    if (h5u_read_int_attr(ck->file, "step", &v, why)) goto fail;
    ck->step = (long)v;
    if (h5u_read_int_attr(ck->file, "samples_seen", &v, why)) goto fail;
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
    h5u_quiet();
    if (h5u_open_dataset(ck->file, dpath, &ds, &type, &space, why) ||
        h5u_check_dtype(type, cls, elem_size, mem_type, why))
        goto out;
    int fnd = H5Sget_simple_extent_ndims(space);
    hsize_t fdims[H5S_MAX_RANK];
    if (fnd < 0 || H5Sget_simple_extent_dims(space, fdims, NULL) < 0) {
        h5u_why(why, NULL);
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
        h5u_why(why, NULL);
        goto out;
    }
    rc = 0;
out:
    h5u_close_dataset(&ds, &type, &space);
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
    h5u_quiet();
    int ex = h5u_link_exists(ck->file, "optim", why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "no /optim group");
        else h5_prefix(why, "/optim");
        goto out;
    }
    if ((g = H5Gopen2(ck->file, "optim", H5P_DEFAULT)) < 0) {
        h5u_why(why, "/optim");
        goto out;
    }
    if (h5u_need_attr(g, "/optim/", "name", why) || h5u_need_attr(g, "/optim/", "step", why))
        goto out;
    if (!(s = h5u_read_str_attr(g, "name", why)) || h5u_read_int_attr(g, "step", &v, why)) goto out;
    if (strlen(s) >= cap) {
        snprintf(why, WHY_LEN, "/optim name \"%.64s\" is too long", s);
        goto out;
    }
    memcpy(name, s, strlen(s) + 1);
    *step = (long)v;
    rc = 0;
out:
    free(s);
    h5u_close_id(&g, H5Gclose);
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

// Reads the dataset at a user path (absolute or relative to /) holding exactly n elements.
static int read_path(Ckpt *ck, const char *path, H5T_class_t cls, size_t elem_size,
                     hid_t mem_type, size_t n, void *data, char *err) {
    char *p = abs_path(ck, path, err);
    if (!p) return -1;
    int rc = read_dataset(ck, p, cls, elem_size, mem_type, -1, NULL, n, data, err);
    free(p);
    return rc;
}

int ckpt_read_extra(Ckpt *ck, const char *path, int64_t *data, size_t n, char *err) {
    return read_path(ck, path, H5T_INTEGER, sizeof(int64_t), H5T_NATIVE_INT64, n, data, err);
}

int ckpt_read_float(Ckpt *ck, const char *path, float *data, size_t n, char *err) {
    return read_path(ck, path, H5T_FLOAT, sizeof(float), H5T_NATIVE_FLOAT, n, data, err);
}

int ckpt_read_int32(Ckpt *ck, const char *path, int32_t *data, size_t n, char *err) {
    return read_path(ck, path, H5T_INTEGER, sizeof(int32_t), H5T_NATIVE_INT32, n, data, err);
}

int ckpt_save_in_run(const char *run_dir, const CkptState *st, char *err) {
    size_t cap = strlen(run_dir) + 64;
    char *path = malloc(cap), *tmp_link = malloc(cap), *link = malloc(cap);
    int rc = -1;
    if (!path || !tmp_link || !link) {
        cx_err(err, "out of memory");
        goto done;
    }
    snprintf(path, cap, "%s/checkpoint-%06ld.h5", run_dir, st->step);
    if (ckpt_save(path, st, err) != 0) goto done;
    snprintf(link, cap, "%s/latest.h5", run_dir);
    snprintf(tmp_link, cap, "%s/.latest.h5.tmp.%d", run_dir, (int)getpid());
    unlink(tmp_link);
    const char *base = strrchr(path, '/') + 1;
    if (symlink(base, tmp_link) != 0 || rename(tmp_link, link) != 0) {
        cx_err(err, "cannot update %s: %s", link, strerror(errno));
        unlink(tmp_link);
        goto done;
    }
    rc = 0;
done:
    free(path);
    free(tmp_link);
    free(link);
    return rc;
}

int ckpt_save_trainer(const char *run_dir, const char *model, const char *writer,
                      const char *config_text, const Trainer *tr, const TensorAlias *aliases,
                      int n_aliases, long seed, const Diloco *outer, char *err) {
    int64_t cursor[1] = {(int64_t)tr->samples_seen}, rng[1] = {(int64_t)seed};
    int64_t ostate[4] = {0};
    CkptState st = {
        .model = model,
        .step = tr->optim.step,
        .samples_seen = (long)tr->samples_seen,
        .config_text = config_text,
        .writer = writer,
        .specs = tr->task.specs,
        .n_specs = tr->task.n_specs,
        .aliases = aliases,
        .n_aliases = n_aliases,
        .params = tr->task.params,
        .optim_name = optim_kind_name(tr->optim.cfg.kind),
        .optim_step = tr->optim.step,
        .n_slots = 2,
        .slot_names = {"exp_avg", "exp_avg_sq"},
        .slots = {tr->optim.m, tr->optim.v},
        .n_extra = 2,
        .extra = {{"data/cursor", cursor, 1}, {"rng/seed", rng, 1}},
    };
    if (outer) {
        st.slot_names[2] = "outer_params";
        st.slot_names[3] = "outer_momentum";
        st.slot_names[4] = "outer_start";
        st.slots[2] = outer->theta;
        st.slots[3] = outer->buf;
        st.slots[4] = outer->start;
        st.n_slots = 5;
        ostate[0] = outer->completed;
        ostate[1] = outer->applied;
        ostate[2] = outer->steps;
        ostate[3] = (int64_t)outer->base;
        st.extra[st.n_extra++] = (CkptExtra){"outer/state", ostate, 4};
    }
    return ckpt_save_in_run(run_dir, &st, err);
}

int ckpt_load_trainer(Ckpt *ck, const char *model, Trainer *tr, char *err) {
    const TensorSpec *specs = tr->task.specs;
    int n = tr->task.n_specs;
    if (strcmp(ckpt_model(ck), model) != 0)
        return cx_err(err, "checkpoint holds a '%s' model, not %s", ckpt_model(ck), model);
    if (ckpt_read_params(ck, specs, n, tr->task.params, err) != 0) return -1;
    char oname[64];
    long ostep = 0;
    if (ckpt_read_optim_info(ck, oname, sizeof oname, &ostep, err) != 0) return -1;
    if (strcmp(oname, optim_kind_name(tr->optim.cfg.kind)) != 0)
        return cx_err(err, "checkpoint optimizer is %s but the configuration says %s", oname,
                      optim_kind_name(tr->optim.cfg.kind));
    if (ckpt_read_slot(ck, "exp_avg", specs, n, tr->optim.m, err) != 0) return -1;
    if (ckpt_read_slot(ck, "exp_avg_sq", specs, n, tr->optim.v, err) != 0) return -1;
    int64_t cursor = 0;
    if (ckpt_read_extra(ck, "data/cursor", &cursor, 1, err) != 0) return -1;
    if (cursor < 0) return cx_err(err, "checkpoint data/cursor is negative");
    tr->optim.step = ostep;
    tr->samples_seen = (uint64_t)cursor;
    return 0;
}

int ckpt_load_outer(Ckpt *ck, const Trainer *tr, Diloco *d, int64_t meta[4], char *err) {
    char e2[CX_ERRLEN];
    if (ckpt_read_extra(ck, "outer/state", meta, 4, e2) != 0) return 0;  // a sync checkpoint
    const TensorSpec *specs = tr->task.specs;
    int n = tr->task.n_specs;
    if (ckpt_read_slot(ck, "outer_params", specs, n, d->theta, err) != 0 ||
        ckpt_read_slot(ck, "outer_momentum", specs, n, d->buf, err) != 0 ||
        ckpt_read_slot(ck, "outer_start", specs, n, d->start, err) != 0)
        return -1;
    if (meta[0] < 0 || meta[1] < 0 || meta[1] > meta[0] || meta[2] < 0 || meta[3] < 0)
        return cx_err(err, "checkpoint /outer/state holds round %lld, %lld applied, %lld inner "
                      "steps, base %lld: not a consistent outer state", (long long)meta[0],
                      (long long)meta[1], (long long)meta[2], (long long)meta[3]);
    return 1;
}
