// augment.h: SwAV's multi-crop augmentation for single-channel images (Fashion-MNIST):
// random resized crops (torchvision's RandomResizedCrop: area share in [min_scale,
// max_scale], aspect ratio log-uniform in [3/4, 4/3], ten tries then the central crop),
// bilinear resizing (torch's interpolate, align_corners=False, no antialiasing), horizontal
// flips, and intensity jitter (brightness, then contrast around the image's mean, clamped to
// [0, 1]), then normalisation (x - mean) / std. Every draw comes from the counter-based RNG
// of models/rng.h at (seed, image index, view), so a view is the same whatever thread, rank
// or volunteer makes it, and in whatever order.
#ifndef CONFLUX_IO_IMAGES_AUGMENT_H
#define CONFLUX_IO_IMAGES_AUGMENT_H

#include <stdint.h>

typedef struct {
    int n_global, global_size;               // views 0 .. n_global-1
    float global_min_scale, global_max_scale;
    int n_small, small_size;                 // views n_global .. n_global+n_small-1
    float small_min_scale, small_max_scale;
    float flip_p;                            // horizontal flip probability
    float jitter_p;                          // probability of the intensity jitter
    float brightness, contrast;              // factors drawn in [1 - b, 1 + b], [1 - c, 1 + c]
    float mean, std;                         // normalisation of [0, 1] intensities
} CropConfig;

// SwAV's choices scaled to 28 x 28 images: 2 global views of 28 (area 0.3 to 1) and 4 small
// ones of 14 (0.1 to 0.3), flips 0.5, jitter 0.8 (0.4, 0.4), Fashion-MNIST's mean and std.
CropConfig augment_default(void);
// 0, or -1 with err naming the field (augment.*)
int augment_check(const CropConfig *c, char *err);

// One view's draw: crop box (rows top .. top+h, columns left .. left+w), flip, jitter.
typedef struct {
    int top, left, h, w;
    int flip;
    int jitter;                 // 0: none
    float brightness, contrast;
} ViewDraw;

// The draw of view v of image `index` for an H x W image.
ViewDraw augment_draw(const CropConfig *c, int H, int W, int v, uint64_t seed, uint64_t index);
// out (size x size) = the view: img (H x W bytes) cropped, resized, flipped, jittered,
// normalised. size is the view's (global_size or small_size).
void augment_apply(float *out, int size, const uint8_t *img, int H, int W, const ViewDraw *d,
                   const CropConfig *c);
// out (oh x ow) = the box of in (H x W, row stride W) resized bilinearly, as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False) on the crop
void augment_resized_crop(float *out, int oh, int ow, const float *in, int W, int top, int left,
                          int h, int w);

#endif
