// idx.h: the IDX files of MNIST and Fashion-MNIST (as Debian's dataset-fashion-mnist ships
// them, gzip-compressed; plain files read too): a big-endian header, magic 0x000008NN
// (unsigned bytes, NN dimensions), NN 32-bit big-endian sizes, then the bytes.
#ifndef CONFLUX_IO_IMAGES_IDX_H
#define CONFLUX_IO_IMAGES_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_MAX_DIMS 3
// an IDX file larger than this (elements) is refused as damaged: Fashion-MNIST's training
// images are 47 M
#define IDX_MAX_ELEMS ((size_t)1 << 32)

typedef struct {
    int ndim;
    uint32_t dims[IDX_MAX_DIMS];
    uint8_t *data;  // dims[0] * ... bytes, malloc'd
    size_t n;       // elements
} IdxArray;

// Reads an unsigned-byte IDX file of 1 to IDX_MAX_DIMS dimensions. Returns 0, or -1 with err
// naming the file and the problem (cannot open, not gzip or IDX (the magic), a type other
// than unsigned bytes, a bad dimension count or size, truncated at byte N, bytes after the
// data).
int idx_read(IdxArray *a, const char *path, char *err);
void idx_free(IdxArray *a);

#endif
