// conflux-images: image shards for SwAV and the linear probe: `shard` converts IDX files
// (MNIST's format; Debian's dataset-fashion-mnist ships Fashion-MNIST in it) into an image
// shard (io/store/images.h), `info` describes a shard.
//
// Exit status: 0 success, 1 runtime failure (files, data), 2 usage error.
// Errors read "conflux-images: error: what (where)".
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/images/idx.h"
#include "io/store/images.h"
#include "models/common.h"

#define TOOL "conflux-images"

static const char usage_text[] =
    "usage: " TOOL " shard --images IMAGES.idx[.gz] --labels LABELS.idx[.gz] --out FILE.h5\n"
    "                      [--classes N] [--source TEXT]\n"
    "       " TOOL " info FILE.h5\n"
    "\n"
    "shard: reads an IDX file of N images (unsigned bytes, N x H x W) and one of N labels\n"
    "(unsigned bytes, each < --classes, default 10), gzip-compressed or plain, and writes them\n"
    "as an image shard: /images uint8 (N,H,W), /labels uint8 (N), attributes classes and\n"
    "source (default: the images file's name). The write is atomic.\n"
    "info: prints the shard's count, size, classes, source and images per class.\n"
    "\n"
    "  --images FILE    IDX images (magic 0x00000803)\n"
    "  --labels FILE    IDX labels (magic 0x00000801), as many as images\n"
    "  --out FILE       the image shard to write\n"
    "  --classes N      number of classes (1 to 256; default 10)\n"
    "  --source TEXT    a label for the data (< 64 bytes)\n"
    "  --help           this text\n"
    "\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
    "\n"
    "example (make fashion-mnist does this for both splits):\n"
    "  D=/usr/share/datasets/fashion-mnist\n"
    "  " TOOL " shard --images $D/train-images-idx3-ubyte.gz \\\n"
    "      --labels $D/train-labels-idx1-ubyte.gz --out train.h5 --source 'fashion-mnist train'\n"
    "  " TOOL " info train.h5\n"
    "  # train.h5: 60000 images of 28x28, 10 classes, source \"fashion-mnist train\"\n";

#define die_usage(...) cx_tool_fail(TOOL, 2, __VA_ARGS__)
#define die(...) cx_tool_fail(TOOL, 1, __VA_ARGS__)

static int cmd_shard(int argc, char **argv) {
    const char *images = NULL, *labels = NULL, *out = NULL, *source = NULL;
    int classes = 10;
    static const struct option opts[] = {{"images", required_argument, 0, 'i'},
                                         {"labels", required_argument, 0, 'l'},
                                         {"out", required_argument, 0, 'o'},
                                         {"classes", required_argument, 0, 'c'},
                                         {"source", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;  // our own message names the option
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i': images = optarg; break;
        case 'l': labels = optarg; break;
        case 'o': out = optarg; break;
        case 's': source = optarg; break;
        case 'c': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 256)
                die_usage("--classes must be an integer in [1, 256] (got '%s')", optarg);
            classes = (int)v;
            break;
        }
        case 'h': fputs(usage_text, stdout); return 0;
        default: die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (!images || !labels || !out) die_usage("shard needs --images, --labels and --out");
    if (!source) {
        const char *slash = strrchr(images, '/');
        source = slash ? slash + 1 : images;
    }
    if (strlen(source) >= 64) die_usage("--source must be shorter than 64 bytes");
    char err[CX_ERRLEN];
    IdxArray im, lb;
    if (idx_read(&im, images, err)) die("%s", err);
    if (idx_read(&lb, labels, err)) die("%s", err);
    if (im.ndim != 3) die("the images file has %d dimensions, expected 3 (N, H, W) (%s)", im.ndim, images);
    if (lb.ndim != 1) die("the labels file has %d dimensions, expected 1 (%s)", lb.ndim, labels);
    if (lb.dims[0] != im.dims[0])
        die("%u labels for %u images (%s, %s)", lb.dims[0], im.dims[0], labels, images);
    if (images_write(out, im.data, lb.data, im.dims[0], (int)im.dims[1], (int)im.dims[2], classes,
                     source, err))
        die("%s", err);
    printf("%s: %u images of %ux%u, %d classes, source \"%s\"\n", out, im.dims[0], im.dims[1],
           im.dims[2], classes, source);
    idx_free(&im);
    idx_free(&lb);
    return 0;
}

static int cmd_info(int argc, char **argv) {
    if (argc != 2) die_usage("info takes one image shard");
    if (!strcmp(argv[1], "--help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    char err[CX_ERRLEN];
    Images im;
    if (images_read(&im, argv[1], err)) die("%s", err);
    printf("%s: %zu images of %dx%d, %d classes, source \"%s\"\nper class:", argv[1], im.n, im.h,
           im.w, im.classes, im.source);
    size_t count[256] = {0};
    for (size_t i = 0; i < im.n; i++) count[im.labels[i]]++;
    for (int k = 0; k < im.classes; k++) printf(" %zu", count[k]);
    printf("\n");
    images_free(&im);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) die_usage("missing command: shard or info");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "shard")) return cmd_shard(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 1, argv + 1);
    die_usage("unknown command '%s': shard or info", argv[1]);
}
