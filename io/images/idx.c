// idx.c: IDX reader (see idx.h), through zlib's gz* functions, which read gzip and plain files.
#include "io/images/idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "models/common.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// reads exactly n bytes; 0, or -1 with *got the count read (a short file) or -2 (zlib error)
static int read_all(gzFile f, void *buf, size_t n, size_t *got) {
    size_t done = 0;
    while (done < n) {
        unsigned want = n - done > (1u << 30) ? 1u << 30 : (unsigned)(n - done);
        int r = gzread(f, (uint8_t *)buf + done, want);
        if (r < 0) return -2;
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return done == n ? 0 : -1;
}

int idx_read(IdxArray *a, const char *path, char *err) {
    memset(a, 0, sizeof *a);
    gzFile f = gzopen(path, "rb");
    if (!f) return cx_err(err, "IDX file %s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    uint8_t hdr[4 + 4 * IDX_MAX_DIMS];
    size_t got = 0;
    int zerr = 0;
    const char *msg;
    if (read_all(f, hdr, 4, &got) != 0) {
        cx_err(err, "IDX file %s: truncated at byte %zu (the 4-byte magic)", path, got);
        goto fail;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        cx_err(err, "IDX file %s: not an IDX file (magic %02x %02x %02x %02x, expected 00 00 08 NN)",
               path, hdr[0], hdr[1], hdr[2], hdr[3]);
        goto fail;
    }
    if (hdr[2] != 0x08) {
        cx_err(err, "IDX file %s: element type 0x%02x is not unsigned bytes (0x08)", path, hdr[2]);
        goto fail;
    }
    a->ndim = hdr[3];
    if (a->ndim < 1 || a->ndim > IDX_MAX_DIMS) {
        cx_err(err, "IDX file %s: %d dimensions (1 to %d supported)", path, a->ndim, IDX_MAX_DIMS);
        goto fail;
    }
    if (read_all(f, hdr + 4, 4 * (size_t)a->ndim, &got) != 0) {
        cx_err(err, "IDX file %s: truncated at byte %zu (the dimension sizes)", path, 4 + got);
        goto fail;
    }
    a->n = 1;
    for (int d = 0; d < a->ndim; d++) {
        a->dims[d] = be32(hdr + 4 + 4 * d);
        if (a->dims[d] == 0 || a->n > IDX_MAX_ELEMS / a->dims[d]) {
            cx_err(err, "IDX file %s: dimension %d has size %u (the array must hold 1 to %zu "
                   "elements)", path, d, a->dims[d], IDX_MAX_ELEMS);
            goto fail;
        }
        a->n *= a->dims[d];
    }
    if (!(a->data = malloc(a->n))) {
        cx_err(err, "IDX file %s: out of memory for %zu bytes", path, a->n);
        goto fail;
    }
    const size_t off = 4 + 4 * (size_t)a->ndim;
    int r = read_all(f, a->data, a->n, &got);
    if (r == -2) goto zfail;
    if (r != 0) {
        cx_err(err, "IDX file %s: truncated at byte %zu of %zu (the header promises %zu elements)",
               path, off + got, off + a->n, a->n);
        goto fail;
    }
    uint8_t extra;
    r = read_all(f, &extra, 1, &got);
    if (r == -2) goto zfail;
    if (got != 0) {
        cx_err(err, "IDX file %s: bytes after the %zu elements the header promises", path, a->n);
        goto fail;
    }
    gzclose(f);
    return 0;
zfail:
    msg = gzerror(f, &zerr);
    cx_err(err, "IDX file %s: damaged compressed data (%s)", path, msg ? msg : "zlib error");
fail:
    gzclose(f);
    idx_free(a);
    return -1;
}

void idx_free(IdxArray *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
