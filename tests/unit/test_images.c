// test_images.c: the IDX reader (io/images/idx.h), image shards (io/store/images.h) and
// the multi-crop augmentation (io/images/augment.h): round trips through hand-made IDX files
// (gzip and plain) and HDF5, the exact error of every damaged or wrong input, Debian's
// Fashion-MNIST read whole (skipped, visibly, where dataset-fashion-mnist is not installed);
// the resize against torch's interpolate, the crops' statistics, flips, jitter, determinism.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "io/images/augment.h"
#include "io/images/idx.h"
#include "io/store/images.h"
#include "models/common.h"
#include "tests/ref/vision_golden.h"
#include "tests/unit/testutil.h"

static char g_dir[256];

// writes an IDX file: magic 00 00 type ndim, the sizes big-endian, then n data bytes (and
// extra trailing bytes); gzip-compressed when gz
static void write_idx(const char *path, int gz, int type, int ndim, const uint32_t *dims,
                      const uint8_t *data, size_t n, size_t extra) {
    uint8_t hdr[4 + 16] = {0, 0, (uint8_t)type, (uint8_t)ndim};
    for (int d = 0; d < ndim; d++)
        for (int b = 0; b < 4; b++) hdr[4 + 4 * d + b] = (uint8_t)(dims[d] >> (24 - 8 * b));
    uint8_t *all = calloc(4 + 4 * (size_t)ndim + n + extra, 1);
    memcpy(all, hdr, 4 + 4 * (size_t)ndim);
    if (n) memcpy(all + 4 + 4 * ndim, data, n);
    const size_t len = 4 + 4 * (size_t)ndim + n + extra;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT(gzwrite(f, all, (unsigned)len) == (int)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT(fwrite(all, 1, len, f) == len);
        fclose(f);
    }
    free(all);
}

static int setup(void) { return tu_make_tmpdir(g_dir, sizeof g_dir, "conflux-images"); }
static int cleanup(void) { return tu_rm_tree(g_dir); }

// 3 images of 4 x 5 and their labels, as IDX (gzip and plain) -> image shard -> back
static void test_round_trip(void) {
    uint8_t px[3 * 4 * 5], lb[3] = {2, 0, 9};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37 + 11);
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = tu_path(g_dir, gz ? "img.gz" : "img.idx");
        const char *lp = tu_path(g_dir, gz ? "lab.gz" : "lab.idx");
        write_idx(ip, gz, 0x08, 3, (uint32_t[]){3, 4, 5}, px, sizeof px, 0);
        write_idx(lp, gz, 0x08, 1, (uint32_t[]){3}, lb, 3, 0);
        IdxArray a, b;
        char err[CX_ERRLEN];
        CU_ASSERT_FATAL(idx_read(&a, ip, err) == 0);
        CU_ASSERT_FATAL(idx_read(&b, lp, err) == 0);
        CU_ASSERT(a.ndim == 3 && a.dims[0] == 3 && a.dims[1] == 4 && a.dims[2] == 5 && a.n == 60);
        CU_ASSERT(!memcmp(a.data, px, sizeof px));
        CU_ASSERT(b.ndim == 1 && b.n == 3 && !memcmp(b.data, lb, 3));
        const char *sp = tu_path(g_dir, "s.h5");
        CU_ASSERT_FATAL(images_write(sp, a.data, b.data, 3, 4, 5, 10, "unit test", err) == 0);
        Images im;
        CU_ASSERT_FATAL(images_read(&im, sp, err) == 0);
        CU_ASSERT(im.n == 3 && im.h == 4 && im.w == 5 && im.classes == 10);
        CU_ASSERT_STRING_EQUAL(im.source, "unit test");
        CU_ASSERT(!memcmp(im.pixels, px, sizeof px) && !memcmp(im.labels, lb, 3));
        images_free(&im);
        idx_free(&a);
        idx_free(&b);
    }
}

static void expect_idx_error(const char *name, const char *want_tail) {
    IdxArray a;
    char err[CX_ERRLEN], want[CX_ERRLEN];
    const char *p = tu_path(g_dir, name);
    CU_ASSERT_EQUAL(idx_read(&a, p, err), -1);
    snprintf(want, sizeof want, "IDX file %s: %s", p, want_tail);
    if (strcmp(err, want)) printf("\n  got:  %s\n  want: %s\n", err, want);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT(a.data == NULL);
}

static void test_idx_errors(void) {
    uint8_t px[24] = {0};
    write_idx(tu_path(g_dir, "magic"), 0, 0x08, 1, (uint32_t[]){24}, px, 24, 0);
    FILE *f = fopen(tu_path(g_dir, "magic"), "r+b");
    fputc(0x1f, f);  // first byte
    fclose(f);
    expect_idx_error("magic", "not an IDX file (magic 1f 00 08 01, expected 00 00 08 NN)");
    write_idx(tu_path(g_dir, "float"), 0, 0x0D, 1, (uint32_t[]){6}, px, 24, 0);
    expect_idx_error("float", "element type 0x0d is not unsigned bytes (0x08)");
    write_idx(tu_path(g_dir, "dims4"), 1, 0x08, 4, (uint32_t[]){1, 2, 3, 4}, px, 24, 0);
    expect_idx_error("dims4", "4 dimensions (1 to 3 supported)");
    write_idx(tu_path(g_dir, "zero"), 1, 0x08, 2, (uint32_t[]){3, 0}, px, 0, 0);
    expect_idx_error("zero", "dimension 1 has size 0 (the array must hold 1 to 4294967296 elements)");
    write_idx(tu_path(g_dir, "short"), 1, 0x08, 3, (uint32_t[]){2, 3, 4}, px, 20, 0);
    expect_idx_error("short", "truncated at byte 36 of 40 (the header promises 24 elements)");
    write_idx(tu_path(g_dir, "long"), 0, 0x08, 1, (uint32_t[]){5}, px, 5, 3);
    expect_idx_error("long", "bytes after the 5 elements the header promises");
    f = fopen(tu_path(g_dir, "hdr"), "wb");
    fwrite("\0\0\x08\x03\0\0", 1, 6, f);  // three dimensions promised, 2 bytes of them
    fclose(f);
    expect_idx_error("hdr", "truncated at byte 6 (the dimension sizes)");
    f = fopen(tu_path(g_dir, "empty"), "wb");
    fclose(f);
    expect_idx_error("empty", "truncated at byte 0 (the 4-byte magic)");
    // a gzip stream cut in the middle: its data ends early
    uint8_t big[4000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7919 >> 3);
    write_idx(tu_path(g_dir, "cut.gz"), 1, 0x08, 1, (uint32_t[]){4000}, big, 4000, 0);
    f = fopen(tu_path(g_dir, "cut.gz"), "r+b");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    CU_ASSERT(truncate(tu_path(g_dir, "cut.gz"), len / 2) == 0);
    IdxArray a;
    char err[CX_ERRLEN];
    CU_ASSERT_EQUAL(idx_read(&a, tu_path(g_dir, "cut.gz"), err), -1);
    CU_ASSERT(strstr(err, "cut.gz: truncated at byte ") != NULL ||
              strstr(err, "cut.gz: damaged compressed data") != NULL);
    CU_ASSERT_EQUAL(idx_read(&a, tu_path(g_dir, "missing"), err), -1);
    char want[CX_ERRLEN];
    snprintf(want, sizeof want, "IDX file %s: cannot open: No such file or directory",
             tu_path(g_dir, "missing"));
    CU_ASSERT_STRING_EQUAL(err, want);
}

static void test_shard_errors(void) {
    char err[CX_ERRLEN], want[CX_ERRLEN];
    uint8_t px[8] = {0}, lb[2] = {1, 10};
    const char *p = tu_path(g_dir, "bad.h5");
    CU_ASSERT_EQUAL(images_write(p, px, lb, 2, 2, 2, 10, "x", err), -1);
    snprintf(want, sizeof want, "cannot write image shard %s: image 1 has label 10, outside [0, 10)", p);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT(access(p, F_OK) != 0);  // nothing written
    Images im;
    const char *txt = tu_path(g_dir, "text.h5");
    FILE *f = fopen(txt, "w");
    fputs("not hdf5 at all, just text that is long enough\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(images_read(&im, txt, err), -1);
    CU_ASSERT(strstr(err, "image shard ") == err && strstr(err, "not an HDF5 file") != NULL);
    // a checksum-protected shard with a byte of its pixels flipped
    uint8_t big[64 * 64];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 13 + 1);
    uint8_t l1[1] = {3};
    const char *q = tu_path(g_dir, "flip.h5");
    CU_ASSERT_FATAL(images_write(q, big, l1, 1, 64, 64, 10, "flip", err) == 0);
    f = fopen(q, "r+b");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    uint8_t *all = malloc((size_t)len);
    fseek(f, 0, SEEK_SET);
    CU_ASSERT(fread(all, 1, (size_t)len, f) == (size_t)len);
    long at = -1;
    for (long i = 0; i + 64 <= len && at < 0; i++)
        if (!memcmp(all + i, big + 1000, 64)) at = i;  // the pixel bytes in the file
    CU_ASSERT_FATAL(at >= 0);
    fseek(f, at + 5, SEEK_SET);
    fputc(all[at + 5] ^ 0x40, f);
    fclose(f);
    free(all);
    CU_ASSERT_EQUAL(images_read(&im, q, err), -1);
    snprintf(want, sizeof want, "image shard %s: dataset /images: cannot read (damaged data or "
             "checksum mismatch)", q);
    CU_ASSERT_STRING_EQUAL(err, want);
}

// Debian's Fashion-MNIST: 60,000 + 10,000 images of 28x28, 6,000 / 1,000 per class; the
// first training image is an ankle boot (class 9), the first test image too
static void test_fashion_mnist(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char ip[512], lp[512], err[CX_ERRLEN];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", dir);
    if (access(ip, R_OK) != 0) {
        TU_SKIP("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    static const char *const split[2] = {"train", "t10k"};
    const uint32_t count[2] = {60000, 10000};
    for (int s = 0; s < 2; s++) {
        IdxArray a, b;
        snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split[s]);
        snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split[s]);
        CU_ASSERT_FATAL(idx_read(&a, ip, err) == 0);
        CU_ASSERT_FATAL(idx_read(&b, lp, err) == 0);
        CU_ASSERT(a.ndim == 3 && a.dims[0] == count[s] && a.dims[1] == 28 && a.dims[2] == 28);
        CU_ASSERT(b.ndim == 1 && b.dims[0] == count[s]);
        size_t per[10] = {0}, bad = 0;
        for (size_t i = 0; i < b.n; i++) {
            if (b.data[i] < 10) per[b.data[i]]++;
            else bad++;
        }
        CU_ASSERT_EQUAL(bad, 0);
        for (int k = 0; k < 10; k++) CU_ASSERT_EQUAL(per[k], count[s] / 10);
        CU_ASSERT_EQUAL(b.data[0], 9);
        idx_free(&a);
        idx_free(&b);
    }
}

// the resize of a crop box against torch.nn.functional.interpolate (bilinear)
static void test_resize_torch(void) {
    float img[28 * 28];
    for (int i = 0; i < 28 * 28; i++) img[i] = (float)golden_aug_img[i];
    size_t at = 0;
    double worst = 0.0;
    for (int b = 0; b < GOLDEN_AUG_N_BOXES; b++) {
        const double *bx = golden_aug_boxes + 5 * b;
        const int top = (int)bx[0], left = (int)bx[1], h = (int)bx[2], w = (int)bx[3], o = (int)bx[4];
        float out[28 * 28];
        augment_resized_crop(out, o, o, img, 28, top, left, h, w);
        for (int i = 0; i < o * o; i++) worst = fmax(worst, fabs(out[i] - golden_aug_out[at + i]));
        at += (size_t)o * o;
    }
    if (worst > 1e-6) printf("\n  resize: worst |diff| from torch %.3g", worst);
    CU_ASSERT(worst <= 1e-6);
}

static int count_box(const ViewDraw *d, int H, int W) {
    return d->top >= 0 && d->left >= 0 && d->h >= 1 && d->w >= 1 && d->top + d->h <= H &&
           d->left + d->w <= W;
}

// crops stay inside the image with their area share in the view's range, flips and jitter
// come at their rates, factors stay in range; a draw depends on (seed, index, view) only
static void test_draw_statistics(void) {
    CropConfig c = augment_default();
    char err[CX_ERRLEN];
    CU_ASSERT_EQUAL(augment_check(&c, err), 0);
    const int V = c.n_global + c.n_small, N = 3000;
    int inside = 1, in_range = 1, flips = 0, jit = 0, factors = 1, aspect_out = 0;
    for (int i = 0; i < N; i++)
        for (int v = 0; v < V; v++) {
            ViewDraw d = augment_draw(&c, 28, 28, v, 7, (uint64_t)i);
            inside &= count_box(&d, 28, 28);
            const double share = (double)d.h * d.w / (28.0 * 28.0);
            const float lo = v < c.n_global ? c.global_min_scale : c.small_min_scale;
            const float hi = v < c.n_global ? c.global_max_scale : c.small_max_scale;
            // rounding the sides to whole pixels moves the share by at most about 2/sqrt(area)
            const double slack = 2.2 / sqrt(share * 784.0) * share + 1.0 / 784.0;
            in_range &= share >= lo - slack && share <= hi + slack;
            // aspect w/h in [3/4, 4/3], up to rounding each side to a whole pixel
            const double r = (double)d.w / d.h, rs = r * (0.5 / d.w + 0.5 / d.h) * 1.01;
            aspect_out += r < 0.75 - rs || r > 4.0 / 3.0 + rs;
            flips += d.flip;
            jit += d.jitter;
            factors &= fabsf(d.brightness - 1.0f) <= c.brightness && fabsf(d.contrast - 1.0f) <= c.contrast;
        }
    CU_ASSERT(inside);
    CU_ASSERT(in_range);
    CU_ASSERT(factors);
    CU_ASSERT_EQUAL(aspect_out, 0);
    const double n = (double)N * V;  // binomial: 6 standard deviations
    CU_ASSERT(fabs(flips - n * c.flip_p) < 6.0 * sqrt(n * c.flip_p * (1 - c.flip_p)));
    CU_ASSERT(fabs(jit - n * c.jitter_p) < 6.0 * sqrt(n * c.jitter_p * (1 - c.jitter_p)));
    ViewDraw a = augment_draw(&c, 28, 28, 3, 7, 123), b = augment_draw(&c, 28, 28, 3, 7, 123);
    CU_ASSERT(!memcmp(&a, &b, sizeof a));
    int differ = 0;
    for (int v = 0; v < V; v++) {
        ViewDraw x = augment_draw(&c, 28, 28, v, 7, 124), y = augment_draw(&c, 28, 28, v, 8, 124);
        differ += memcmp(&x, &y, sizeof x) != 0;
    }
    CU_ASSERT(differ >= V - 1);  // another seed, other views
    c.small_min_scale = 0.5f;    // above the maximum
    CU_ASSERT_EQUAL(augment_check(&c, err), -1);
    CU_ASSERT_STRING_EQUAL(err, "augment.small scales must satisfy 0 < min <= max <= 1");
}

// the whole image at its own size is the image; a flip mirrors it; jitter keeps [0, 1] and
// moves the mean by the brightness factor (contrast keeps it)
static void test_apply(void) {
    CropConfig c = augment_default();
    c.mean = 0.0f;
    c.std = 1.0f;
    uint8_t img[28 * 28];
    for (int i = 0; i < 28 * 28; i++) img[i] = (uint8_t)((i * 53) % 200 + 20);
    ViewDraw d = {.top = 0, .left = 0, .h = 28, .w = 28};
    float out[28 * 28], fl[28 * 28], jt[28 * 28];
    augment_apply(out, 28, img, 28, 28, &d, &c);
    int same = 1;
    for (int i = 0; i < 28 * 28; i++) same &= out[i] == img[i] / 255.0f;
    CU_ASSERT(same);
    d.flip = 1;
    augment_apply(fl, 28, img, 28, 28, &d, &c);
    int mirrored = 1;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) mirrored &= fl[y * 28 + x] == out[y * 28 + 27 - x];
    CU_ASSERT(mirrored);
    d.flip = 0;
    d.jitter = 1;
    d.brightness = 1.1f;
    d.contrast = 1.0f;
    augment_apply(jt, 28, img, 28, 28, &d, &c);
    double m0 = 0.0, m1 = 0.0;
    int bounded = 1;
    for (int i = 0; i < 28 * 28; i++) {
        m0 += out[i];
        m1 += jt[i];
        bounded &= jt[i] >= 0.0f && jt[i] <= 1.0f;
    }
    CU_ASSERT(bounded);
    CU_ASSERT(fabs(m1 / m0 - 1.1) < 1e-5);  // no value reaches the clamp (max 219/255 * 1.1)
    // normalisation
    c.mean = 0.25f;
    c.std = 0.5f;
    d.jitter = 0;
    augment_apply(jt, 28, img, 28, 28, &d, &c);
    CU_ASSERT(fabsf(jt[5] - (img[5] / 255.0f - 0.25f) / 0.5f) < 1e-6f);
}

int main(void) {
    const TuTest tests[] = {{"IDX (gzip and plain) -> image shard -> back", test_round_trip},
                            {"damaged IDX files: the exact error", test_idx_errors},
                            {"image shard errors: labels, not HDF5, a flipped pixel", test_shard_errors},
                            {"Debian's Fashion-MNIST read whole", test_fashion_mnist},
                            {"augmentation: resize against torch's interpolate", test_resize_torch},
                            {"augmentation: crop statistics, rates, determinism", test_draw_statistics},
                            {"augmentation: identity, flip, jitter, normalisation", test_apply}};
    const TuSuite suites[] = {{.name = "images", .init = setup, .clean = cleanup, .tests = tests,
                               .n_tests = TU_NELEM(tests)}};
    return tu_run(suites, 1, NULL, CU_BRM_VERBOSE);
}
