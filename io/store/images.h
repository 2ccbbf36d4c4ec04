// images.h: image shards, the labelled images SwAV trains on and the linear probe reads
// (conflux-images shard writes them from IDX files).
//
//   /         attrs format="conflux-images", version=1, classes (labels lie in [0, classes)),
//             source (free text, e.g. "fashion-mnist train")
//   /images   uint8 (N, H, W)  pixels, row-major, 0 = black (Fletcher32-checked chunks)
//   /labels   uint8 (N)        class ids
//
// Written atomically (PATH.tmp.<pid>, renamed into place); read whole and validated.
#ifndef CONFLUX_IO_STORE_IMAGES_H
#define CONFLUX_IO_STORE_IMAGES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *pixels;  // n * h * w
    uint8_t *labels;  // n
    size_t n;
    int h, w, classes;
    char source[64];
} Images;

// Writes n images of h x w pixels with their labels (each < classes). Returns 0, or -1 with
// err ("cannot write image shard PATH: why").
int images_write(const char *path, const uint8_t *pixels, const uint8_t *labels, size_t n, int h,
                 int w, int classes, const char *source, char *err);
// Loads and validates an image shard. -1 with err naming the file (and dataset) and the
// problem; a token or pair shard is named as such.
int images_read(Images *im, const char *path, char *err);
void images_free(Images *im);

#endif
