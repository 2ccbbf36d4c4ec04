// hooks_internal.h: the backward hooks and gradient ranges shared by albert.c and encdec.c
// (see albert_set_backward_hooks). Internal to models/.
#ifndef CONFLUX_HOOKS_INTERNAL_H
#define CONFLUX_HOOKS_INTERNAL_H

#include <stddef.h>

#include "models/tensor.h"
#include "models/train.h"

typedef struct {
    void (*ready)(void *ctx, size_t offset, size_t count);
    void (*progress)(void *ctx);
    void *ctx;
} BackwardHooks;

// The arena range of specs [first, last] of a table of n_specs laid out over n_params
// floats: up to the next spec's offset (padding included).
static inline GradRange hooks_spec_range(const TensorSpec *specs, int n_specs, size_t n_params,
                                         int first, int last) {
    size_t hi = last + 1 < n_specs ? specs[last + 1].offset : n_params;
    return (GradRange){specs[first].offset, hi};
}

// Reports range r final, on the final micro-batch only; an empty range is not reported.
static inline void hooks_ready(const BackwardHooks *h, int final_micro, GradRange r) {
    if (final_micro && h->ready && r.hi > r.lo) h->ready(h->ctx, r.lo, r.hi - r.lo);
}

// Calls the progress hook between operations, on the final micro-batch only.
static inline void hooks_progress(const BackwardHooks *h, int final_micro) {
    if (final_micro && h->progress) h->progress(h->ctx);
}

#endif
