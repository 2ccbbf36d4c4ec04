// bench_swav.c: SwAV training throughput of conflux (make bench-swav): the default model of
// conflux-swav (ResNet 32/64/128, head 256 -> 64, 100 prototypes), a global batch of 256
// images in micro-batches of 64, each image 2 global views of 28 x 28 and 4 small ones of
// 14 x 14 (random normal pixels: the augmentation is not timed, as on the PyTorch side),
// forward, Sinkhorn, loss, backward, then the LARS step; images per second over --steps
// steps after --warmup.
// usage: bench_swav [--warmup K] [--steps S] [--threads N]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/nn.h"
#include "models/optim.h"
#include "models/par.h"
#include "models/resnet.h"
#include "models/rng.h"
#include "models/swav.h"
#include "models/train.h"

int main(int argc, char **argv) {
    int warmup = 2, steps = 5, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            printf("usage: bench_swav [--warmup K] [--steps S] [--threads N]\n");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    par_set_threads(threads);
    const int G = 256, MB = 64, NG = 2, NS = 4, GS = 28, SS = 14;
    ResNetConfig rc = resnet_default();
    ResNet *g = resnet_create(&rc, NG * MB, GS, GS, 7), *s = resnet_share(g, NS * MB, SS, SS);
    const size_t ng = (size_t)NG * MB * GS * GS, ns = (size_t)NS * MB * SS * SS;
    float *vg = cx_calloc(ng, sizeof(float)), *vs = cx_calloc(ns, sizeof(float));
    for (size_t i = 0; i < ng; i++) vg[i] = cx_rng_normal(11, i);
    for (size_t i = 0; i < ns; i++) vs[i] = cx_rng_normal(12, i);
    SwavParams sp = {.n_global = NG, .n_small = NS, .sinkhorn_iters = 3, .sinkhorn_eps = 0.05f,
                     .temperature = 0.1f};
    SwavStep st;
    swav_step_init(&st, &sp, MB, rc.n_prototypes);
    OptimConfig oc = {.kind = OPTIM_LARS, .lr = 0.6f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                      .weight_decay = 1e-6f, .schedule = SCHED_CONSTANT, .total_steps = 1000,
                      .trust_coef = 0.001f};
    Optim o;
    optim_init(&o, &oc, resnet_specs(g), resnet_n_specs(g), resnet_n_params(g));
    double t0 = 0.0, loss = 0.0;
    for (int k = 0; k < warmup + steps; k++) {
        if (k == warmup) t0 = cx_now();
        memset(resnet_grads(g), 0, resnet_n_params(g) * sizeof(float));
        for (int m = 0; m < G / MB; m++)
            loss = swav_step_run(&st, g, vg, GS, GS, s, vs, SS, SS, MB, RESNET_TRAIN, 1, 1.0f);
        optim_step(&o, resnet_params(g), resnet_grads(g));
    }
    const double dt = cx_now() - t0;
    printf("conflux_img_s=%.1f step_ms=%.1f loss=%.4f isa=%s threads=%d params=%zu\n",
           (double)G * steps / dt, 1e3 * dt / steps, loss, nn_isa(), threads, resnet_n_params(g));
    optim_free(&o);
    swav_step_free(&st);
    free(vg);
    free(vs);
    resnet_free(s);
    resnet_free(g);
    return 0;
}
