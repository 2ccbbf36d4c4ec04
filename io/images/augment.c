// augment.c: multi-crop augmentation (see augment.h).
#include "io/images/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/rng.h"

#define DRAWS_PER_VIEW 64  // counters of one view: its draws never reach the next view's

CropConfig augment_default(void) {
    return (CropConfig){.n_global = 2, .global_size = 28, .global_min_scale = 0.3f,
                        .global_max_scale = 1.0f, .n_small = 4, .small_size = 14,
                        .small_min_scale = 0.1f, .small_max_scale = 0.3f, .flip_p = 0.5f,
                        .jitter_p = 0.8f, .brightness = 0.4f, .contrast = 0.4f,
                        .mean = 0.2860f, .std = 0.3530f};
}

int augment_check(const CropConfig *c, char *err) {
    if (c->n_global < 1 || c->n_global > 8) return cx_err(err, "augment.n_global must be in [1, 8] (got %d)", c->n_global);
    if (c->n_small < 0 || c->n_small > 16) return cx_err(err, "augment.n_small must be in [0, 16] (got %d)", c->n_small);
    if (c->global_size < 1 || c->global_size > 1024 || c->small_size < 1 || c->small_size > 1024)
        return cx_err(err, "augment.global_size and augment.small_size must be in [1, 1024]");
    if (!(c->global_min_scale > 0.0f && c->global_min_scale <= c->global_max_scale && c->global_max_scale <= 1.0f))
        return cx_err(err, "augment.global scales must satisfy 0 < min <= max <= 1");
    if (!(c->small_min_scale > 0.0f && c->small_min_scale <= c->small_max_scale && c->small_max_scale <= 1.0f))
        return cx_err(err, "augment.small scales must satisfy 0 < min <= max <= 1");
    if (!(c->flip_p >= 0.0f && c->flip_p <= 1.0f) || !(c->jitter_p >= 0.0f && c->jitter_p <= 1.0f))
        return cx_err(err, "augment.flip_p and augment.jitter_p must be in [0, 1]");
    if (!(c->brightness >= 0.0f && c->brightness < 1.0f) || !(c->contrast >= 0.0f && c->contrast < 1.0f))
        return cx_err(err, "augment.brightness and augment.contrast must be in [0, 1)");
    if (!(c->std > 0.0f)) return cx_err(err, "augment.std must be > 0");
    return 0;
}

ViewDraw augment_draw(const CropConfig *c, int H, int W, int v, uint64_t seed, uint64_t index) {
    const int global = v < c->n_global;
    const float lo = global ? c->global_min_scale : c->small_min_scale;
    const float hi = global ? c->global_max_scale : c->small_max_scale;
    const uint64_t base = (index * (uint64_t)(c->n_global + c->n_small) + (uint64_t)v) * DRAWS_PER_VIEW;
    uint64_t k = base;
#define U() cx_rng_uniform(seed, k++)
    ViewDraw d = {0};
    const double area = (double)H * W, lr0 = log(3.0 / 4.0), lr1 = log(4.0 / 3.0);
    int found = 0;
    for (int t = 0; t < 10 && !found; t++) {
        const double target = area * (lo + (hi - lo) * (double)U());
        const double ratio = exp(lr0 + (lr1 - lr0) * (double)U());
        const int w = (int)lround(sqrt(target * ratio)), h = (int)lround(sqrt(target / ratio));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            d.h = h;
            d.w = w;
            d.top = (int)(U() * (float)(H - h + 1));
            d.left = (int)(U() * (float)(W - w + 1));
            if (d.top > H - h) d.top = H - h;  // U() < 1, but float rounding
            if (d.left > W - w) d.left = W - w;
            found = 1;
        }
    }
    if (!found) {  // the central crop, at the aspect ratio nearest the range
        const double in_ratio = (double)W / H;
        d.w = W;
        d.h = H;
        if (in_ratio < 3.0 / 4.0) d.h = (int)lround(W / (3.0 / 4.0));
        else if (in_ratio > 4.0 / 3.0) d.w = (int)lround(H * (4.0 / 3.0));
        d.top = (H - d.h) / 2;
        d.left = (W - d.w) / 2;
    }
    k = base + 48;  // flip and jitter draws after the crop's (at most 40)
    d.flip = U() < c->flip_p;
    d.jitter = U() < c->jitter_p;
    d.brightness = 1.0f + c->brightness * (2.0f * U() - 1.0f);
    d.contrast = 1.0f + c->contrast * (2.0f * U() - 1.0f);
#undef U
    return d;
}

// torch's source coordinate for output index i (align_corners=False): (i + 0.5) * in / out
// - 0.5, clamped below at 0; the two neighbours and the weight of the second
static void src_index(int i, int n_in, int n_out, int *i0, int *i1, float *t) {
    float s = ((float)i + 0.5f) * ((float)n_in / (float)n_out) - 0.5f;
    if (s < 0.0f) s = 0.0f;
    int a = (int)s;
    if (a > n_in - 1) a = n_in - 1;
    *i0 = a;
    *i1 = a + 1 < n_in ? a + 1 : n_in - 1;
    *t = s - (float)a;
}

void augment_resized_crop(float *out, int oh, int ow, const float *in, int W, int top, int left,
                          int h, int w) {
    for (int y = 0; y < oh; y++) {
        int y0, y1;
        float ty;
        src_index(y, h, oh, &y0, &y1, &ty);
        const float *r0 = in + (size_t)(top + y0) * W + left, *r1 = in + (size_t)(top + y1) * W + left;
        for (int x = 0; x < ow; x++) {
            int x0, x1;
            float tx;
            src_index(x, w, ow, &x0, &x1, &tx);
            const float a = r0[x0] + (r0[x1] - r0[x0]) * tx;
            const float b = r1[x0] + (r1[x1] - r1[x0]) * tx;
            out[(size_t)y * ow + x] = a + (b - a) * ty;
        }
    }
}

void augment_apply(float *out, int size, const uint8_t *img, int H, int W, const ViewDraw *d,
                   const CropConfig *c) {
    // the crop box in [0, 1] intensities
    float *box = cx_calloc((size_t)d->h * d->w, sizeof(float));
    for (int y = 0; y < d->h; y++)
        for (int x = 0; x < d->w; x++)
            box[(size_t)y * d->w + x] = img[(size_t)(d->top + y) * W + d->left + x] / 255.0f;
    (void)H;
    augment_resized_crop(out, size, size, box, d->w, 0, 0, d->h, d->w);
    free(box);
    const size_t n = (size_t)size * size;
    if (d->flip)
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size / 2; x++) {
                float *row = out + (size_t)y * size, t = row[x];
                row[x] = row[size - 1 - x];
                row[size - 1 - x] = t;
            }
    if (d->jitter) {
        double m = 0.0;
        for (size_t i = 0; i < n; i++) {
            float x = out[i] * d->brightness;
            out[i] = x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
            m += out[i];
        }
        const float mean = (float)(m / (double)n);
        for (size_t i = 0; i < n; i++) {
            float x = (out[i] - mean) * d->contrast + mean;
            out[i] = x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
        }
    }
    for (size_t i = 0; i < n; i++) out[i] = (out[i] - c->mean) / c->std;
}
