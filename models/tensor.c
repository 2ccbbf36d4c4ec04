// tensor.c: arena layout helpers (see tensor.h).
#include "models/tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "models/common.h"
#include "models/rng.h"

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t tensor_layout(TensorSpec *specs, int n, size_t off) {
    for (int i = 0; i < n; i++) {
        specs[i].offset = off;
        off += align16(specs[i].n);
    }
    return off;
}

void tensor_spec_set(TensorSpec *s, int no_decay, int ndim, long d0, long d1, const char *fmt,
                     ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = ndim > 1 ? d1 : 0;
    s->n = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    s->no_decay = no_decay;
}

void tensor_views(const TensorSpec *specs, int n, float *arena, float **views) {
    for (int i = 0; i < n; i++) views[i] = arena + specs[i].offset;
}

void tensor_init_hf(const TensorSpec *specs, float *params, int first, int last, uint64_t seed,
                    float std) {
    for (int i = first; i < last; i++) {
        const TensorSpec *s = &specs[i];
        float *w = params + s->offset;
        int is_ln_w = strstr(s->name, "layer_norm.weight") || strstr(s->name, "LayerNorm.weight") ||
                      strstr(s->name, "layernorm_embedding.weight");
        if (s->ndim == 2) {
            uint64_t ts = cx_rng_derive(seed, (uint64_t)i);
            for (size_t j = 0; j < s->n; j++) w[j] = std * cx_rng_normal(ts, j);
        } else if (is_ln_w) {
            for (size_t j = 0; j < s->n; j++) w[j] = 1.0f;
        }
    }
}

float *tensor_carve(TensorCarver *cv, size_t n) {
    float *p = NULL;
    if (cv->base) {
        CHECK(cv->used + align16(n) <= cv->cap, "activation arena overflow");
        p = cv->base + cv->used;
    }
    cv->used += align16(n);
    return p;
}

void tensor_carve_each(TensorCarver *cv, size_t n, ...) {
    va_list ap;
    va_start(ap, n);
    for (float **dst; (dst = va_arg(ap, float **)) != NULL;) *dst = tensor_carve(cv, n);
    va_end(ap);
}

float *tensor_carver_alloc(TensorCarver *cv) {
    cv->cap = cv->used;
    cv->used = 0;
    cv->base = cx_calloc(cv->cap, sizeof(float));
    return cv->base;
}
