// tensor.h: named views into flat arenas. A model describes its parameters as a table of
// TensorSpec; the parameter, gradient and optimizer-moment arenas all share that layout,
// so one flat buffer is what gets all-reduced, checkpointed and sent over the bridge.
#ifndef CONFLUX_TENSOR_H
#define CONFLUX_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define CX_MAX_DIMS 4
#define CX_NAME_LEN 128

typedef struct {
    char name[CX_NAME_LEN];  // Hugging Face name, e.g. "albert.embeddings.word_embeddings.weight"
    int ndim;
    long shape[CX_MAX_DIMS];
    size_t offset;           // element offset into the arena
    size_t n;                // element count
    int no_decay;            // 1 for biases and LayerNorm weights (excluded from weight decay)
} TensorSpec;

// An alias: a second name under which a checkpoint exposes an existing tensor (tied
// weights, e.g. predictions.decoder.weight -> albert.embeddings.word_embeddings.weight).
typedef struct {
    const char *name;
    const char *target;
} TensorAlias;

// Lays specs[0, n) out one after another from element offset off, each starting on a
// 64-byte (16-float) boundary. Returns the offset after the last one.
size_t tensor_layout(TensorSpec *specs, int n, size_t off);

// Fills a spec: name from printf-style fmt, ndim 1 (d0) or 2 (d0, d1), element count, and
// whether weight decay skips it. The offset is left to tensor_layout.
void tensor_spec_set(TensorSpec *s, int no_decay, int ndim, long d0, long d1, const char *fmt,
                     ...) __attribute__((format(printf, 6, 7)));

// Points views[i] at arena + specs[i].offset for i in [0, n).
void tensor_views(const TensorSpec *specs, int n, float *arena, float **views);

// Hugging Face initialisation of specs[first, last) in params: matrices and embeddings (ndim
// 2) normal(0, std), element j of tensor i drawing from (cx_rng_derive(seed, i), j);
// LayerNorm weights 1; biases and everything else untouched (zero in a fresh arena).
void tensor_init_hf(const TensorSpec *specs, float *params, int first, int last, uint64_t seed,
                    float std);

// Carves consecutive 64-byte-aligned float blocks out of one arena. With base NULL it only
// sizes (tensor_carve returns NULL and counts); with a base it hands out blocks and stops
// the program (CHECK) when cap floats would be exceeded, which is a sizing bug.
typedef struct {
    float *base;
    size_t used, cap;  // floats
} TensorCarver;
float *tensor_carve(TensorCarver *cv, size_t n);

// tensor_carve of n floats for each of the NULL-terminated float ** that follow, in order.
void tensor_carve_each(TensorCarver *cv, size_t n, ...) __attribute__((sentinel));

// Ends a sizing pass (base NULL): allocates the cv->used floats it counted (zeroed) and
// rewinds cv for the carving pass. Returns the arena; the caller frees it.
float *tensor_carver_alloc(TensorCarver *cv);

#endif
