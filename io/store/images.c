// images.c: image shards (see images.h), on the HDF5 helpers of io/store/h5util_internal.h.
#include "io/store/images.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/store/h5util_internal.h"
#include "models/common.h"

#define IMAGES_FORMAT "conflux-images"
#define IMAGES_VERSION 1
#define IMAGES_MAX_SIDE 4096
#define WHY_LEN H5U_WHY_LEN

int images_write(const char *path, const uint8_t *pixels, const uint8_t *labels, size_t n, int h,
                 int w, int classes, const char *source, char *err) {
    char why[WHY_LEN] = "";
    char *tmp = NULL;
    h5u_quiet();
    if (!path || !path[0]) return cx_err(err, "cannot write image shard: empty path");
    if (n == 0 || h < 1 || w < 1 || h > IMAGES_MAX_SIDE || w > IMAGES_MAX_SIDE || classes < 1 ||
        classes > 256 || !source || strlen(source) >= 64)
        return cx_err(err, "cannot write image shard %s: bad count, size, classes or source", path);
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= classes)
            return cx_err(err, "cannot write image shard %s: image %zu has label %d, outside "
                          "[0, %d)", path, i, labels[i], classes);
    hid_t file = h5u_tmp_create(path, &tmp, why);
    if (file < 0) return cx_err(err, "cannot write image shard %s: %s", path, why);
    hsize_t dims[3] = {n, (hsize_t)h, (hsize_t)w};
    if (h5u_write_str_attr(file, "format", IMAGES_FORMAT, why) ||
        h5u_write_int_attr(file, "version", H5T_STD_I32LE, IMAGES_VERSION, why) ||
        h5u_write_int_attr(file, "classes", H5T_STD_I32LE, classes, why) ||
        h5u_write_str_attr(file, "source", source, why) ||
        h5u_write_array(file, "images", "/images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, 3, dims,
                        pixels, why) ||
        h5u_write_array(file, "labels", "/labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, 1, dims,
                        labels, why) ||
        h5u_tmp_commit(&file, tmp, path, why)) {
        h5u_close_id(&file, H5Fclose);
        unlink(tmp);
        free(tmp);
        H5Eclear2(H5E_DEFAULT);
        return cx_err(err, "cannot write image shard %s: %s", path, why);
    }
    free(tmp);
    return 0;
}

// reads dataset name (uint8, ndim dims; want[d] > 0 must match) into a new buffer
static int read_u8(hid_t file, const char *name, int ndim, hsize_t *dims, const hsize_t *want,
                   uint8_t **out, char *why) {
    hid_t ds, type, space;
    *out = NULL;
    if (h5u_open_dataset(file, name, &ds, &type, &space, why)) return -1;
    int rc = -1;
    if (h5u_check_dtype(type, H5T_INTEGER, 1, H5T_NATIVE_UINT8, why)) goto out;
    if (H5Sget_simple_extent_ndims(space) != ndim) {
        snprintf(why, WHY_LEN, "has %d dimensions, expected %d", H5Sget_simple_extent_ndims(space), ndim);
        goto out;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    size_t total = 1;
    for (int d = 0; d < ndim; d++) {
        if (want[d] && dims[d] != want[d]) {
            snprintf(why, WHY_LEN, "dimension %d is %llu, expected %llu", d,
                     (unsigned long long)dims[d], (unsigned long long)want[d]);
            goto out;
        }
        if (dims[d] == 0 || (d > 0 && dims[d] > IMAGES_MAX_SIDE) || dims[d] > ((size_t)1 << 40) / total) {
            snprintf(why, WHY_LEN, "dimension %d is %llu, out of range", d, (unsigned long long)dims[d]);
            goto out;
        }
        total *= dims[d];
    }
    if (!(*out = malloc(total))) {
        snprintf(why, WHY_LEN, "out of memory for %zu bytes", total);
        goto out;
    }
    if (H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
        snprintf(why, WHY_LEN, "cannot read (damaged data or checksum mismatch)");
        free(*out);
        *out = NULL;
        goto out;
    }
    rc = 0;
out:
    h5u_close_dataset(&ds, &type, &space);
    return rc;
}

int images_read(Images *im, const char *path, char *err) {
    char why[WHY_LEN] = "", fmt[64];
    const char *where = "";
    int64_t v = 0;
    memset(im, 0, sizeof *im);
    h5u_quiet();
    if (h5u_check_signature(path, "image shard", err)) return -1;
    hid_t file = h5u_open_format(path, "image shard", fmt, sizeof fmt, why);
    if (file < 0) goto fail;
    if (strcmp(fmt, IMAGES_FORMAT) != 0) {
        snprintf(why, WHY_LEN, "not a conflux image shard (format is \"%s\", expected \"%s\")",
                 fmt, IMAGES_FORMAT);
        goto fail;
    }
    if (h5u_read_int_attr_req(file, "version", &v, why)) goto fail;
    if (v != IMAGES_VERSION) {
        snprintf(why, WHY_LEN, "unsupported image shard version %lld (this build reads %d)",
                 (long long)v, IMAGES_VERSION);
        goto fail;
    }
    if (h5u_read_int_attr_req(file, "classes", &v, why)) goto fail;
    if (v < 1 || v > 256) {
        snprintf(why, WHY_LEN, "classes %lld is out of range [1, 256]", (long long)v);
        goto fail;
    }
    im->classes = (int)v;
    if (h5u_read_str_attr_into(file, "source", im->source, sizeof im->source, why)) goto fail;
    hsize_t dims[3] = {0}, want[3] = {0}, ldims[1];
    where = "/images";
    if (read_u8(file, "images", 3, dims, want, &im->pixels, why)) goto fail;
    im->n = dims[0];
    im->h = (int)dims[1];
    im->w = (int)dims[2];
    where = "/labels";
    if (read_u8(file, "labels", 1, ldims, dims, &im->labels, why)) goto fail;
    for (size_t i = 0; i < im->n; i++)
        if (im->labels[i] >= im->classes) {
            snprintf(why, WHY_LEN, "label %zu is %d, outside [0, classes %d)", i, im->labels[i],
                     im->classes);
            goto fail;
        }
    H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    return 0;
fail:
    h5u_close_id(&file, H5Fclose);
    H5Eclear2(H5E_DEFAULT);
    images_free(im);
    if (where[0]) return cx_err(err, "image shard %s: dataset %s: %s", path, where, why);
    return cx_err(err, "image shard %s: %s", path, why);
}

void images_free(Images *im) {
    if (!im) return;
    free(im->pixels);
    free(im->labels);
    memset(im, 0, sizeof *im);
}
