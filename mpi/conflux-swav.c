// conflux-swav: SwAV self-supervised pretraining of a small ResNet on image shards (make
// fashion-mnist). The run loop (io/run/run.h) through the SwAV recipe (io/tasks/recipe_swav.c);
// like conflux-train it runs alone, under mpirun or srun --mpi=pmix (MPI averaging), or next
// to a conflux-bridge rank (volunteers). The set-up and loop are mpi/trainer.h's.
#include "mpi/trainer.h"

#define TOOL "conflux-swav"

static const char usage[] =
    "usage: " TOOL " [--config FILE.ini] [--set section.key=value]... [--resume CHECKPOINT]\n"
    "\n"
    "Pretrains SwAV (Caron et al. 2020) on HDF5 image shards: a ResNet (model.stages,\n"
    "model.widthN, model.blocksN) with SwAV's projection head and prototypes, multi-crop views ([augment]),\n"
    "Sinkhorn codes and the swapped-prediction loss ([swav]), LARS with a cosine schedule.\n"
    "Batch norm and Sinkhorn work per micro-batch, so a step's gradient does not depend on\n"
    "how many ranks or volunteers share it.\n"
    "\n"
    "  --config FILE     INI configuration ([model] [optim] [data] [augment] [swav] [train]\n"
    "                    [averaging] [run])\n"
    "  --set S.K=V       override one key (repeatable), e.g. --set train.steps=200\n"
    "  --resume CKPT     continue from a checkpoint (its configuration is the base)\n"
    "  --print-config    print the effective configuration and exit\n"
    "  -q, --quiet       no progress lines\n"
    "  -h, --help        this text\n"
    "\n"
    "Writes RUN_DIR/run.json, RUN_DIR/metrics.csv and RUN_DIR/checkpoint-STEP.h5 (parameters\n"
    "under torchvision's names; the BatchNorm running statistics are each replica's own and\n"
    "are not stored: evaluation re-estimates them), RUN_DIR/latest.h5 and RUN_DIR/finished.\n"
    "\n"
    "examples:\n"
    "  make fashion-mnist\n"
    "  " TOOL " --set train.steps=20 --set train.global_batch=64 --set run.dir=runs/swav-try\n"
    "  mpirun -np 2 " TOOL " --set train.steps=2000 --set run.dir=runs/swav2\n"
    "  " TOOL " --set model.stages=2 --set model.width1=16 --set model.width2=32 --print-config\n";

int main(int argc, char **argv) {
    TrainerTool t = {.tool = TOOL, .usage = usage, .recipe = recipe_find("swav")};
    return trainer_tool_main(argc, argv, &t);
}
