// h5util.c: HDF5 helpers shared by checkpoints (ckpt.c), token shards (shard.c) and pair
// shards (headline.c); the contracts are in h5util_internal.h.
#include "io/store/h5util_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/common.h"

#define WHY_LEN H5U_WHY_LEN
#define SUPERBLOCK_MIN 48                    // bytes in the smallest HDF5 superblock (v2)
#define CHUNK_BYTES ((size_t)1 << 20)        // target chunk size for arrays
#define ATTR_STR_MAX ((size_t)1 << 16)       // longest string attribute we accept

// ---------------------------------------------------------------------------------------
// HDF5 error handling: no automatic printing; the innermost message of the error stack,
// translated for the cases a user can meet (truncation, checksum mismatch).

void h5u_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct {
    char inner[256];
    int truncated, data_checksum, meta_checksum, bad_addr;
    unsigned long long eof, stored_eof;
} H5Walk;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
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

const char *h5u_why(char *why, const char *what) {
    H5Walk w;
    memset(&w, 0, sizeof w);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &w);
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

void h5u_close_id(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0) fn(*id);
    *id = H5I_INVALID_HID;
}

void h5u_type_name(hid_t type, char *buf, size_t cap) {
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
// Files.

int h5u_check_signature(const char *path, const char *kind, char *err) {
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

hid_t h5u_tmp_create(const char *path, char **tmp, char *why) {
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    size_t tcap = strlen(path) + 32;
    char *t = malloc(tcap);
    *tmp = NULL;
    if (!t) {
        snprintf(why, WHY_LEN, "out of memory");
        return H5I_INVALID_HID;
    }
    snprintf(t, tcap, "%s.tmp.%ld", path, (long)getpid());
    // Create the file ourselves first: a clear errno message for a missing or read-only
    // directory instead of HDF5's.
    int fd = open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(why, WHY_LEN, "cannot create %s: %s", t, strerror(errno));
        free(t);
        return H5I_INVALID_HID;
    }
    close(fd);
    if ((fapl = make_fapl()) < 0) {
        h5u_why(why, "file access properties");
    } else if ((file = H5Fcreate(t, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        h5u_why(why, t);
    }
    h5u_close_id(&fapl, H5Pclose);
    if (file < 0) {
        H5Eclear2(H5E_DEFAULT);
        unlink(t);
        free(t);
        return H5I_INVALID_HID;
    }
    *tmp = t;
    return file;
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

int h5u_tmp_commit(hid_t *file, const char *tmp, const char *path, char *why) {
    if (H5Fflush(*file, H5F_SCOPE_GLOBAL) < 0) {
        h5u_why(why, "flush");
        h5u_close_id(file, H5Fclose);
        H5Eclear2(H5E_DEFAULT);
        return -1;
    }
    herr_t cl = H5Fclose(*file);
    *file = H5I_INVALID_HID;
    if (cl < 0) {
        h5u_why(why, "close");
        return -1;
    }
    return commit_file(tmp, path, why);
}

// ---------------------------------------------------------------------------------------
// Writing.

hid_t h5u_str_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, len + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

// Creates scalar attribute NAME of file type ftype on obj and writes val (in mem type mtype).
static int write_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val,
                      char *why) {
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (ftype < 0 || space < 0) goto out;
    attr = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, mtype, val) < 0) goto out;
    rc = 0;
out:
    if (rc) h5u_why(why, name);
    h5u_close_id(&attr, H5Aclose);
    h5u_close_id(&space, H5Sclose);
    return rc;
}

int h5u_write_str_attr(hid_t obj, const char *name, const char *val, char *why) {
    hid_t type = h5u_str_type(strlen(val));
    int rc = write_attr(obj, name, type, type, val, why);
    h5u_close_id(&type, H5Tclose);
    return rc;
}

int h5u_write_int_attr(hid_t obj, const char *name, hid_t file_type, int64_t val, char *why) {
    return write_attr(obj, name, file_type, H5T_NATIVE_INT64, &val, why);
}

int h5u_write_array(hid_t loc, const char *name, const char *label, hid_t file_type,
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
        hsize_t chunk[H5S_MAX_RANK];
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
    if (rc) h5u_why(why, label);
    h5u_close_id(&ds, H5Dclose);
    h5u_close_id(&space, H5Sclose);
    h5u_close_id(&dcpl, H5Pclose);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Reading.

int h5u_has_attr(hid_t obj, const char *name, char *why) {
    htri_t r = H5Aexists(obj, name);
    if (r < 0) {
        h5u_why(why, name);
        return -1;
    }
    return r > 0;
}

int h5u_need_attr(hid_t obj, const char *where, const char *name, char *why) {
    int r = h5u_has_attr(obj, name, why);
    if (r == 0) snprintf(why, WHY_LEN, "missing attribute %s%s", where, name);
    return r > 0 ? 0 : -1;
}

// One scalar value: attribute NAME of obj (is_attr) or dataset NAME under obj. In messages
// it is "<lpre><lname>" ("attribute step", "/config"); HDF5 problems are prefixed with what.
typedef struct {
    int is_attr;
    hid_t id, type;
    const char *lpre, *lname, *what;
} Single;

// Opens s (its id and type) and checks that it holds one value of class cls. 0, or -1
// with why; s->id and s->type are closed by single_close either way.
static int single_open(Single *s, hid_t obj, const char *name, H5T_class_t cls, char *why) {
    hid_t space = H5I_INVALID_HID;
    int rc = -1;
    s->id = s->is_attr ? H5Aopen(obj, name, H5P_DEFAULT) : H5Dopen2(obj, name, H5P_DEFAULT);
    s->type = H5I_INVALID_HID;
    if (s->id >= 0) {
        s->type = s->is_attr ? H5Aget_type(s->id) : H5Dget_type(s->id);
        space = s->is_attr ? H5Aget_space(s->id) : H5Dget_space(s->id);
    }
    if (s->id < 0 || s->type < 0 || space < 0) {
        h5u_why(why, s->what);
        goto out;
    }
    if (H5Tget_class(s->type) != cls || H5Sget_simple_extent_npoints(space) != 1) {
        char tn[48];
        h5u_type_name(s->type, tn, sizeof tn);
        snprintf(why, WHY_LEN, "%s%s is not a single %s (%s)", s->lpre, s->lname,
                 cls == H5T_STRING ? "string" : "integer", tn);
        goto out;
    }
    rc = 0;
out:
    h5u_close_id(&space, H5Sclose);
    return rc;
}

static void single_close(Single *s) {
    h5u_close_id(&s->type, H5Tclose);
    h5u_close_id(&s->id, s->is_attr ? H5Aclose : H5Dclose);
}

static herr_t single_read(const Single *s, hid_t mem, void *buf) {
    return s->is_attr ? H5Aread(s->id, mem, buf)
                      : H5Dread(s->id, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

// Reads the string s (opened, class checked) whatever its storage (fixed or variable
// length) into a malloc'd string shorter than max_bytes; NULL with why filled.
static char *single_read_str(const Single *s, size_t max_bytes, char *why) {
    hid_t mem = H5Tcopy(H5T_C_S1);
    char *out = NULL;
    if (H5Tis_variable_str(s->type) > 0) {
        char *v = NULL;
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Tset_cset(mem, H5Tget_cset(s->type)) < 0 ||
            single_read(s, mem, &v) < 0) {
            h5u_why(why, s->what);
            goto out;
        }
        size_t len = v ? strnlen(v, max_bytes) : 0;
        if (len == max_bytes) snprintf(why, WHY_LEN, "%s%s is too long", s->lpre, s->lname);
        else if (!(out = strndup(v ? v : "", len))) snprintf(why, WHY_LEN, "out of memory");
        if (v) H5free_memory(v);
    } else {
        size_t size = H5Tget_size(s->type);
        if (size == 0 || size > max_bytes) {
            snprintf(why, WHY_LEN, "%s%s has a bad length (%zu)", s->lpre, s->lname, size);
        } else if (!(out = calloc(size + 1, 1))) {
            snprintf(why, WHY_LEN, "out of memory");
        } else if (H5Tset_size(mem, size) < 0 || H5Tset_cset(mem, H5Tget_cset(s->type)) < 0 ||
                   H5Tset_strpad(mem, H5T_STR_NULLPAD) < 0 || single_read(s, mem, out) < 0) {
            h5u_why(why, s->what);
            free(out);
            out = NULL;
        }
    }
out:
    h5u_close_id(&mem, H5Tclose);
    return out;
}

// Opens, reads and closes the string s (attribute or dataset NAME of obj).
static char *single_str(Single *s, hid_t obj, const char *name, size_t max_bytes, char *why) {
    char *out = NULL;
    if (single_open(s, obj, name, H5T_STRING, why) == 0) out = single_read_str(s, max_bytes, why);
    single_close(s);
    return out;
}

char *h5u_read_str_attr(hid_t obj, const char *name, char *why) {
    Single s = {.is_attr = 1, .lpre = "attribute ", .lname = name, .what = name};
    return single_str(&s, obj, name, ATTR_STR_MAX, why);
}

char *h5u_read_str_dataset(hid_t loc, const char *name, const char *label, size_t max_bytes,
                           char *why) {
    Single s = {.is_attr = 0, .lpre = "", .lname = label, .what = label};
    return single_str(&s, loc, name, max_bytes, why);
}

int h5u_read_int_attr(hid_t obj, const char *name, int64_t *val, char *why) {
    Single s = {.is_attr = 1, .lpre = "attribute ", .lname = name, .what = name};
    int rc = single_open(&s, obj, name, H5T_INTEGER, why);
    if (rc == 0 && H5Aread(s.id, H5T_NATIVE_INT64, val) < 0) {
        h5u_why(why, name);
        rc = -1;
    }
    single_close(&s);
    return rc;
}

int h5u_link_exists(hid_t loc, const char *path, char *why) {
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
            h5u_why(why, NULL);
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

int h5u_is_dataset(hid_t loc, const char *path, char *why) {
    hid_t obj = H5Oopen(loc, path, H5P_DEFAULT);
    if (obj < 0) {
        h5u_why(why, NULL);
        return -1;
    }
    int yes = H5Iget_type(obj) == H5I_DATASET;
    H5Oclose(obj);
    H5Eclear2(H5E_DEFAULT);
    return yes;
}

int h5u_open_dataset(hid_t loc, const char *path, hid_t *ds, hid_t *type, hid_t *space,
                     char *why) {
    *ds = *type = *space = H5I_INVALID_HID;
    int ex = h5u_link_exists(loc, path, why);
    if (ex <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "missing dataset");
        return -1;
    }
    if ((ex = h5u_is_dataset(loc, path, why)) <= 0) {
        if (ex == 0) snprintf(why, WHY_LEN, "not a dataset");
        return -1;
    }
    if ((*ds = H5Dopen2(loc, path, H5P_DEFAULT)) < 0 || (*type = H5Dget_type(*ds)) < 0 ||
        (*space = H5Dget_space(*ds)) < 0) {
        h5u_why(why, NULL);
        h5u_close_dataset(ds, type, space);
        return -1;
    }
    return 0;
}

void h5u_close_dataset(hid_t *ds, hid_t *type, hid_t *space) {
    h5u_close_id(space, H5Sclose);
    h5u_close_id(type, H5Tclose);
    h5u_close_id(ds, H5Dclose);
}

int h5u_check_dtype(hid_t type, H5T_class_t cls, size_t elem_bytes, hid_t want, char *why) {
    int sign_ok = cls != H5T_INTEGER || H5Tget_sign(type) == H5Tget_sign(want);
    if (H5Tget_class(type) == cls && H5Tget_size(type) == elem_bytes && sign_ok) return 0;
    char tn[48], wn[48];
    h5u_type_name(type, tn, sizeof tn);
    h5u_type_name(want, wn, sizeof wn);
    snprintf(why, WHY_LEN, "dtype is %s, expected %s", tn, wn);
    return -1;
}

// ---- required attributes and 1-D integer datasets (the shard readers) ----

int h5u_read_str_attr_into(hid_t obj, const char *name, char *buf, size_t cap, char *why) {
    char *s = NULL;
    if (h5u_need_attr(obj, "", name, why) || !(s = h5u_read_str_attr(obj, name, why))) return -1;
    size_t len = strlen(s);
    int rc = -1;
    if (len >= cap) {
        snprintf(why, H5U_WHY_LEN, "attribute %s is longer than %zu bytes", name, cap - 1);
    } else {
        memcpy(buf, s, len + 1);
        rc = 0;
    }
    free(s);
    return rc;
}

int h5u_read_int_attr_req(hid_t obj, const char *name, int64_t *val, char *why) {
    if (h5u_need_attr(obj, "", name, why)) return -1;
    return h5u_read_int_attr(obj, name, val, why);
}

int h5u_read_1d(hid_t file, const char *name, size_t elem_size, hid_t mem_type, void **out,
                size_t *n_out, char *why) {
    hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int rc = -1;
    *out = NULL;
    *n_out = 0;
    if (h5u_open_dataset(file, name, &ds, &type, &space, why) ||
        h5u_check_dtype(type, H5T_INTEGER, elem_size, mem_type, why))
        goto out;
    hsize_t dims[1];
    if (H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        H5Eclear2(H5E_DEFAULT);
        snprintf(why, H5U_WHY_LEN, "not a 1-D array");
        goto out;
    }
    if (dims[0] > SIZE_MAX / elem_size) {
        snprintf(why, H5U_WHY_LEN, "%llu elements is too many", (unsigned long long)dims[0]);
        goto out;
    }
    size_t n = (size_t)dims[0];
    void *buf = malloc(n ? n * elem_size : 1);
    if (!buf) {
        snprintf(why, H5U_WHY_LEN, "out of memory for %zu elements", n);
        goto out;
    }
    if (n > 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        h5u_why(why, NULL);
        free(buf);
        goto out;
    }
    *out = buf;
    *n_out = n;
    rc = 0;
out:
    h5u_close_dataset(&ds, &type, &space);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Appendable int32 columns (token shards and pair shards).

int h5u_column_init(H5uColumn *c, size_t chunk, const char *label, char *why) {
    memset(c, 0, sizeof *c);
    c->ds = H5I_INVALID_HID;
    c->chunk = chunk;
    c->label = label;
    if (!(c->buf = malloc(chunk * sizeof(int32_t))) || !(c->off = malloc(1024 * sizeof(int64_t)))) {
        snprintf(why, H5U_WHY_LEN, "out of memory");
        return -1;
    }
    c->cap_off = 1024;
    c->off[0] = 0;
    c->n_off = 1;
    return 0;
}

int h5u_column_create(H5uColumn *c, hid_t loc, const char *name, int keep_times, char *why) {
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {c->chunk};
    int rc = 0;
    if ((space = H5Screate_simple(1, dims, maxdims)) < 0 ||
        (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0 ||
        H5Pset_fletcher32(dcpl) < 0 || (!keep_times && H5Pset_obj_track_times(dcpl, 0) < 0) ||
        (c->ds = H5Dcreate2(loc, name, H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        h5u_why(why, c->label);
        rc = -1;
    }
    h5u_close_id(&space, H5Sclose);
    h5u_close_id(&dcpl, H5Pclose);
    return rc;
}

int h5u_column_flush(H5uColumn *c, char *why) {
    if (c->n_buf == 0) return 0;
    hsize_t start[1] = {c->n_written}, count[1] = {c->n_buf}, size[1] = {c->n_written + c->n_buf};
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    int rc = -1;
    if (H5Dset_extent(c->ds, size) < 0 || (fspace = H5Dget_space(c->ds)) < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        (mspace = H5Screate_simple(1, count, NULL)) < 0 ||
        H5Dwrite(c->ds, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, c->buf) < 0) {
        h5u_why(why, c->label);
        goto out;
    }
    c->n_written += c->n_buf;
    c->n_buf = 0;
    rc = 0;
out:
    h5u_close_id(&mspace, H5Sclose);
    h5u_close_id(&fspace, H5Sclose);
    return rc;
}

int h5u_column_reserve(H5uColumn *c, char *why) {
    if (c->n_off < c->cap_off) return 0;
    size_t cap = c->cap_off * 2;
    int64_t *p = realloc(c->off, cap * sizeof *p);
    if (!p) {
        snprintf(why, H5U_WHY_LEN, "out of memory");
        return -1;
    }
    c->off = p;
    c->cap_off = cap;
    return 0;
}

int h5u_column_append(H5uColumn *c, const int32_t *t, size_t n, char *why) {
    for (size_t done = 0; done < n;) {
        size_t take = c->chunk - c->n_buf;
        if (take > n - done) take = n - done;
        memcpy(c->buf + c->n_buf, t + done, take * sizeof *t);
        c->n_buf += take;
        done += take;
        if (c->n_buf == c->chunk && h5u_column_flush(c, why)) return -1;
    }
    c->off[c->n_off++] = (int64_t)(c->n_written + c->n_buf);
    return 0;
}

void h5u_column_free(H5uColumn *c) {
    h5u_close_id(&c->ds, H5Dclose);
    free(c->buf);
    free(c->off);
    c->buf = NULL;
    c->off = NULL;
}

// ---------------------------------------------------------------------------------------
// Shard readers (token shards and pair shards).

hid_t h5u_open_format(const char *path, const char *kind, char *fmt, size_t cap, char *why) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        h5u_why(why, "cannot open");
        return H5I_INVALID_HID;
    }
    int has_fmt = h5u_has_attr(file, "format", why);
    if (has_fmt <= 0) {
        if (has_fmt == 0)
            snprintf(why, H5U_WHY_LEN, "not a conflux %s (no format attribute)", kind);
        goto fail;
    }
    if (h5u_read_str_attr_into(file, "format", fmt, cap, why)) goto fail;
    return file;
fail:
    h5u_close_id(&file, H5Fclose);
    return H5I_INVALID_HID;
}

int h5u_read_vocab_size(hid_t obj, int *vocab_size, char *why) {
    int64_t v = 0;
    if (h5u_read_int_attr_req(obj, "vocab_size", &v, why)) return -1;
    if (v <= 0 || v > INT32_MAX) {
        snprintf(why, H5U_WHY_LEN, "vocab_size %lld is out of range", (long long)v);
        return -1;
    }
    *vocab_size = (int)v;
    return 0;
}

int h5u_check_tokens(const int32_t *t, size_t n, int vocab_size, char *why) {
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= vocab_size) {
            snprintf(why, H5U_WHY_LEN, "token %zu is %d, outside [0, vocab_size %d)", i, (int)t[i],
                     vocab_size);
            return -1;
        }
    return 0;
}

int h5u_check_offsets(const int64_t *off, size_t n_off, size_t n_tokens, const char *count,
                      const char *total, char *why) {
    if (n_off == 0) {
        snprintf(why, H5U_WHY_LEN, "empty (needs %s + 1 entries)", count);
        return -1;
    }
    if (off[0] != 0) {
        snprintf(why, H5U_WHY_LEN, "starts at %lld, expected 0", (long long)off[0]);
        return -1;
    }
    for (size_t i = 1; i < n_off; i++)
        if (off[i] < off[i - 1]) {
            snprintf(why, H5U_WHY_LEN, "entry %zu (%lld) is less than entry %zu (%lld)", i,
                     (long long)off[i], i - 1, (long long)off[i - 1]);
            return -1;
        }
    if ((uint64_t)off[n_off - 1] != (uint64_t)n_tokens) {
        snprintf(why, H5U_WHY_LEN, "ends at %lld, expected %s %zu", (long long)off[n_off - 1],
                 total, n_tokens);
        return -1;
    }
    return 0;
}
