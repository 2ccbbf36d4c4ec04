// tensor.c: arena layout helpers (see tensor.h).
#include "models/tensor.h"

#include "models/common.h"

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t tensor_layout(TensorSpec *specs, int n, size_t off) {
    for (int i = 0; i < n; i++) {
        specs[i].offset = off;
        off += align16(specs[i].n);
    }
    return off;
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
