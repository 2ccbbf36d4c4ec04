// conflux-train: ALBERT masked-LM pretraining. The run loop (io/run/run.h) fed by token
// shards through the ALBERT recipe (io/tasks/recipe_albert.c); the averaging is MPI
// (mpi/dp.h) when the job has several ranks, and volunteers join when a conflux-bridge
// rank is in the job (mpi/hybrid.h). Runs alone, under mpirun, or under srun --mpi=pmix.
// Rank 0 writes the run directory, metrics and checkpoints; every rank holds an identical
// replica. The set-up and the loop are mpi/trainer.h's, shared with conflux-headline train.
#include "mpi/trainer.h"

#define TOOL "conflux-train"

static const char usage[] =
    "usage: " TOOL " [--config FILE.ini] [--set section.key=value]... [--resume CHECKPOINT]\n"
    "\n"
    "Pretrains an ALBERT masked-LM on HDF5 token shards.\n"
    "\n"
    "  --config FILE     INI configuration ([model] [optim] [data] [train]\n"
    "                    [averaging] [tp] [run])\n"
    "  --set S.K=V       override one key (repeatable), e.g. --set train.steps=200\n"
    "  --resume CKPT     continue from a checkpoint (its configuration is the base;\n"
    "                    --config/--set apply on top; model shapes must match)\n"
    "  --print-config    print the effective configuration and exit\n"
    "  -q, --quiet       no progress lines\n"
    "  -h, --help        this text\n"
    "\n"
    "Writes RUN_DIR/run.json, RUN_DIR/metrics.csv and RUN_DIR/checkpoint-STEP.h5\n"
    "(RUN_DIR/latest.h5 links to the newest), and RUN_DIR/finished once every step is\n"
    "done. SIGTERM, SIGINT or SIGUSR1 (on any rank) checkpoints at the next step\n"
    "boundary and exits 0 without RUN_DIR/finished.\n"
    "\n"
    "Runs alone, under mpirun -np N, or under srun --mpi=pmix: ranks split each global\n"
    "batch, average gradients with MPI and apply the same step; rank 0 writes.\n"
    "DiLoCo (--set averaging.mode=diloco --set averaging.inner_steps=H): workers take H\n"
    "steps on their own samples, then average their parameter changes in an outer\n"
    "Nesterov step; the ranks of one job are one worker (averaging.workers=N splits them).\n"
    "Tensor parallelism (--set tp.rows=P --set tp.cols=Q): every data-parallel replica is a\n"
    "P x Q ScaLAPACK grid holding its large matrices dealt (mpirun -np 8 with 2 x 2: 2\n"
    "replicas); checkpoints keep the one-rank layout, the grid is the launch's.\n"
    "\n"
    "examples:\n"
    "  " TOOL " --set train.steps=300 --set run.dir=runs/demo\n"
    "  mpirun -np 2 " TOOL " --set train.global_batch=64 --set run.dir=runs/dp2\n"
    "  mpirun -np 2 " TOOL " --set averaging.mode=diloco --set averaging.inner_steps=50 \\\n"
    "      --set averaging.workers=2 --set train.steps=1000 --set run.dir=runs/diloco2\n"
    "  mpirun -np 8 " TOOL " --set tp.rows=2 --set tp.cols=2 --set model.hidden_size=1024 \\\n"
    "      --set model.num_heads=16 --set model.intermediate_size=4096 --set run.dir=runs/tp\n";

int main(int argc, char **argv) {
    TrainerTool t = {.tool = TOOL, .usage = usage, .recipe = recipe_find("albert")};
    return trainer_tool_main(argc, argv, &t);
}
