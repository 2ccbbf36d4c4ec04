// probe.h: the linear probe of self-supervised features: multinomial logistic regression
// (softmax over classes, L2 weight decay) trained by mini-batch SGD with momentum on
// standardised features, deterministic from a seed.
#ifndef CONFLUX_PROBE_H
#define CONFLUX_PROBE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int epochs;          // passes over the training features (30)
    int batch;           // mini-batch (256)
    float lr;            // peak learning rate, cosine to 0 (0.5)
    float momentum;      // 0.9
    float weight_decay;  // 1e-4
    uint64_t seed;       // order of the samples in each epoch
} ProbeConfig;

ProbeConfig probe_default(void);

typedef struct {
    int d, classes;
    float *mean, *inv_std;  // (d): standardisation learnt on the training features
    float *W, *b;           // (classes, d), (classes)
} Probe;

// Trains on n feature rows x (n, d) with labels y (each < classes). Returns the final
// epoch's mean training loss.
double probe_train(Probe *p, const float *x, const uint8_t *y, size_t n, int d, int classes,
                   const ProbeConfig *c);
// Top-1 accuracy (0..1) on n rows
double probe_accuracy(const Probe *p, const float *x, const uint8_t *y, size_t n);
void probe_free(Probe *p);

#endif
