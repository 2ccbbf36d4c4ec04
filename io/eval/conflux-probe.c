// conflux-probe: the linear probe of a SwAV checkpoint (conflux-swav): frozen features of
// whole images (pooled ResNet features, batch-norm statistics re-estimated on the training
// images), multinomial logistic regression on the training split (models/probe.h), top-1 on
// the test split. --random probes the model at its random initialisation (the floor).
//
// Exit status: 0 success, 1 runtime failure (files, data), 2 usage error.
// Errors read "conflux-probe: error: what (where)".
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/store/ckpt.h"
#include "io/store/images.h"
#include "io/tasks/recipe.h"
#include "io/tasks/swav.h"
#include "models/common.h"
#include "models/par.h"
#include "models/probe.h"
#include "models/resnet.h"

#define TOOL "conflux-probe"

static const char usage_text[] =
    "usage: " TOOL " (--checkpoint CKPT.h5 | --random | --supervised STEPS) --train TRAIN.h5\n"
    "                     --test TEST.h5 [--set section.key=value]... [--epochs N] [--limit N]\n"
    "                     [--bn-batches N] [--threads N]\n"
    "\n"
    "Linear probe of a SwAV checkpoint: the pooled features of every whole image (normalised\n"
    "as the run's views), with the batch-norm statistics re-estimated as the average over\n"
    "--bn-batches batches of 256 training images (precise BN: a checkpoint holds no running\n"
    "statistics); multinomial logistic regression on the training features (standardised,\n"
    "SGD with momentum, cosine rate, --epochs passes); top-1 accuracy on the test split.\n"
    "\n"
    "  --checkpoint F   a conflux-swav checkpoint (its configuration builds the model)\n"
    "  --random         the model at its random initialisation instead (the floor); --set\n"
    "                   keys shape it (model.*, train.seed)\n"
    "  --supervised N   the same network trained with the labels first (the ceiling): N steps\n"
    "                   of 256 augmented training images (one global view each), cross-entropy\n"
    "                   through a linear classifier, AdamW with a cosine rate; then the probe\n"
    "  --train F        image shard the regression learns from (e.g. build/data/fashion/train.h5)\n"
    "  --test F         image shard it is scored on (build/data/fashion/test.h5)\n"
    "  --set S.K=V      a configuration override (repeatable)\n"
    "  --epochs N       regression passes (default 30)\n"
    "  --limit N        use the first N training images only (default all)\n"
    "  --bn-batches N   batches of 256 images for the statistics (default 20)\n"
    "  --threads N      pool threads (default: the cores)\n"
    "  --help           this text\n"
    "\n"
    "The last line reads\n"
    "  probe: top1=T train_top1=R features=D train_images=N test_images=M seconds=S\n"
    "\n"
    "examples:\n"
    "  " TOOL " --checkpoint runs/swav/latest.h5 --train build/data/fashion/train.h5 \\\n"
    "      --test build/data/fashion/test.h5\n"
    "  " TOOL " --random --train build/data/fashion/train.h5 --test build/data/fashion/test.h5\n";

#define die_usage(...) cx_tool_fail(TOOL, 2, __VA_ARGS__)
#define die(...) cx_tool_fail(TOOL, 1, __VA_ARGS__)

static long int_arg(const char *opt, const char *v, long lo, long hi) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < lo || x > hi)
        die_usage("%s must be an integer in [%ld, %ld] (got '%s')", opt, lo, hi, v);
    return x;
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *train = NULL, *test = NULL;
    const char *sets[64];
    int n_sets = 0, random_init = 0, threads = 0, bn_batches = 20;
    long supervised = 0;
    long limit = 0;
    ProbeConfig pc = probe_default();
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, 'c'}, {"random", no_argument, 0, 'r'},
        {"train", required_argument, 0, 't'},      {"test", required_argument, 0, 'T'},
        {"set", required_argument, 0, 's'},        {"epochs", required_argument, 0, 'e'},
        {"limit", required_argument, 0, 'l'},      {"bn-batches", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
        {"supervised", required_argument, 0, 'S'},
        {0, 0, 0, 0}};
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': ckpt = optarg; break;
        case 'r': random_init = 1; break;
        case 'S': supervised = int_arg("--supervised", optarg, 1, 1000000); break;
        case 't': train = optarg; break;
        case 'T': test = optarg; break;
        case 's':
            if (n_sets == 64) die_usage("at most 64 --set");
            sets[n_sets++] = optarg;
            break;
        case 'e': pc.epochs = (int)int_arg("--epochs", optarg, 1, 10000); break;
        case 'l': limit = int_arg("--limit", optarg, 1, 1L << 40); break;
        case 'b': bn_batches = (int)int_arg("--bn-batches", optarg, 1, 100000); break;
        case 'j': threads = (int)int_arg("--threads", optarg, 1, 64); break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if ((ckpt != NULL) + random_init + (supervised > 0) != 1)
        die_usage("give one of --checkpoint, --random and --supervised");
    if (!train || !test) die_usage("--train and --test are required");
    char err[CX_ERRLEN];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    par_set_threads(threads);
    Replica r;
    recipe_config_init(&r, recipe_find("swav"));
    Ckpt *ck = NULL;
    if (ckpt) {
        if (ckpt_open(&ck, ckpt, err) != 0) die("%s", err);
        if (strcmp(ckpt_model(ck), "swav") != 0)
            die("%s holds a '%s' model, not SwAV's (conflux-swav writes those)", ckpt, ckpt_model(ck));
        if (recipe_config_load_checkpoint(&r, ckpt_config_text(ck), ckpt, err) != 0) die("%s", err);
    }
    for (int i = 0; i < n_sets; i++)
        if (recipe_config_set(&r, sets[i], err) != 0) die_usage("%s", err);
    if (r.recipe->config_check(r.cfg, err) != 0) die_usage("%s", err);
    if (recipe_build(&r, REPLICA_BARE, err) != 0) die("%s", err);
    if (ck) {
        if (ckpt_read_params(ck, r.tr.task.specs, r.tr.task.n_specs, r.tr.task.params, err) != 0)
            die("%s", err);
        ckpt_close(ck);
    }
    Images tr, te;
    if (images_read(&tr, train, err) != 0) die("%s", err);
    if (images_read(&te, test, err) != 0) die("%s", err);
    if (tr.classes != te.classes) die("%s has %d classes, %s %d", train, tr.classes, test, te.classes);
    if (supervised > 0 && swav_supervised(&r, &tr, supervised, 256, 99, err) != 0) die("%s", err);
    const size_t ntr = limit > 0 && (size_t)limit < tr.n ? (size_t)limit : tr.n;
    const int D = resnet_config(r.model)->widths[resnet_config(r.model)->n_stages - 1];
    float *ftr = cx_calloc(ntr * D, sizeof(float)), *fte = cx_calloc(te.n * D, sizeof(float));
    if (swav_features(&r, &tr, ntr, ftr, &tr, bn_batches, 256, err) != 0 ||
        swav_features(&r, &te, te.n, fte, &tr, bn_batches, 256, err) != 0)
        die("%s", err);
    fprintf(stderr, TOOL ": features of %zu training and %zu test images (%d each); training "
            "the regression (%d epochs)\n", ntr, te.n, D, pc.epochs);
    Probe p;
    probe_train(&p, ftr, tr.labels, ntr, D, tr.classes, &pc);
    const double acc_tr = probe_accuracy(&p, ftr, tr.labels, ntr);
    const double acc = probe_accuracy(&p, fte, te.labels, te.n);
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("probe: top1=%.4f train_top1=%.4f features=%d train_images=%zu test_images=%zu seconds=%.1f\n",
           acc, acc_tr, D, ntr, te.n, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    probe_free(&p);
    free(ftr);
    free(fte);
    images_free(&tr);
    images_free(&te);
    recipe_free(&r);
    return 0;
}
