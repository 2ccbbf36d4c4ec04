// conflux-headline: Russian news headline generation with the encoder-decoder of
// models/encdec.h. Subcommands:
//   pairs     (title, body) pairs from Debian's Russian texts (TSV), for training here
//   prepare   tokenize (article, headline) pairs (RIA/Lenta/ODS files or TSV) into a pair shard
//   train     fine-tune (headline) or denoise-pretrain (mBART) through models/train.h's loop;
//             alone or under mpirun (the MPI averaging backend of mpi/dp.h), optionally
//             with a conflux-bridge rank that lets volunteers join (mpi/hybrid.h)
//   generate  headlines for text on stdin or in files (greedy or beam search)
//   evaluate  ROUGE (standard and paper mode) against the titles of news files, next to the
//             first-sentence baseline
// This file holds `train` (the encoder-decoder recipe, io/tasks/recipe_encdec.c, through the
// trainer ranks' set-up and run loop of mpi/trainer.h, shared with conflux-train) and the
// dispatch; the other subcommands never initialise MPI and live in io/headline/ (one file
// each, cli.h).
//
// Exit status: 0 success, 1 runtime failure, 2 usage error. Errors read
// "conflux-headline: error: what (where)".
#include <stdio.h>
#include <string.h>

#include "io/headline/cli.h"
#include "mpi/trainer.h"

#define TOOL "conflux-headline"

// ---------------------------------------------------------------------------------------
// train

static const char train_usage[] =
    "usage: " TOOL " train [--config FILE.ini] [--set section.key=value]... [options]\n"
    "\n"
    "Trains the encoder-decoder (models/encdec.h) through the shared training loop\n"
    "(models/train.h): alone, or under mpirun / srun --mpi=pmix, where ranks split each\n"
    "global batch and average gradients with MPI (mpi/dp.h). Rank 0 writes RUN_DIR/run.json,\n"
    "RUN_DIR/metrics.csv, RUN_DIR/checkpoint-STEP.h5 and RUN_DIR/latest.h5, and RUN_DIR/finished\n"
    "when every step is done; SIGTERM, SIGINT or SIGUSR1 checkpoints at the next step and\n"
    "exits 0.\n"
    "\n"
    "Volunteers: start one conflux-bridge rank next to the trainer ranks (MPMD), as for\n"
    "conflux-train; volunteers (conflux-volunteer --join) build the same model, data order\n"
    "and optimizer (both parameter groups) from the run's configuration and need the\n"
    "training shard (and, for denoise, the tokenizer) at the configured paths or --set ones:\n"
    "  mpirun -np 2 " TOOL " train --config hl.ini : -np 1 conflux-bridge --tokens tokens.txt\n"
    "\n"
    "Objectives (data.objective):\n"
    "  headline  fine-tuning on a pair shard (`prepare`): the BertSumAbs recipe, separate\n"
    "            learning rates and warm-ups for encoder ([optim]) and decoder\n"
    "            ([optim_decoder]; the tied word embeddings belong to the encoder), label\n"
    "            smoothing (decoder.label_smoothing)\n"
    "  denoise   mBART pretraining of the whole model on a token shard (`conflux-tokenizer\n"
    "            shard`): sentences permuted, Poisson(data.poisson_lambda) spans covering\n"
    "            data.mask_ratio of the tokens replaced by one [MASK] each; the decoder\n"
    "            restores the text\n"
    "\n"
    "  --config FILE        INI configuration ([model] [decoder] [optim] [optim_decoder] [data]\n"
    "                       [train] [averaging] [init] [run] [generate])\n"
    "  --set S.K=V          override one key (repeatable)\n"
    "  --objective O        headline or denoise (= --set data.objective=O)\n"
    "  --train SHARD        training data (= --set data.train=SHARD)\n"
    "  --valid SHARD        validation data (= --set data.valid=SHARD; '' for none)\n"
    "  --init-encoder CKPT  encoder (and lm_head from predictions.*) from a conflux-train ALBERT\n"
    "                       checkpoint; the [model] shape is taken from it (= init.encoder)\n"
    "  --init CKPT          all weights from an encdec checkpoint, e.g. a denoise run; the shape\n"
    "                       is taken from it (= init.from)\n"
    "  --steps N            optimizer steps (= --set train.steps=N)\n"
    "  --run-dir DIR        run directory (= --set run.dir=DIR)\n"
    "  --resume CKPT        continue a run (its configuration is the base)\n"
    "  --print-config       print the effective configuration and exit\n"
    "  -q, --quiet          no progress lines\n"
    "  -h, --help           this text\n"
    "\n"
    "examples:\n"
    "  " TOOL " train --init-encoder build/runs/demo/latest.h5 --run-dir runs/hl\n"
    "  " TOOL " train --objective denoise --train build/data/shards/train.h5 \\\n"
    "      --valid build/data/shards/valid.h5 --set data.src_len=128 --set data.tgt_len=128 \\\n"
    "      --set optim.separate_decoder=0 --run-dir runs/mbart\n"
    "  " TOOL " train --init runs/mbart/latest.h5 --run-dir runs/hl-mbart\n"
    "  mpirun -np 2 " TOOL " train --set train.threads=1 --run-dir runs/hl2\n";

static int cmd_train(int argc, char **argv) {
    static const TrainerAlias aliases[] = {
        {"objective", "data.objective"}, {"train", "data.train"},   {"valid", "data.valid"},
        {"init-encoder", "init.encoder"}, {"init", "init.from"},    {"steps", "train.steps"},
        {"run-dir", "run.dir"},           {0, 0}};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(train_usage, stdout);
            return 0;
        }
    TrainerTool t = {.tool = TOOL, .command = "train", .usage = train_usage,
                     .recipe = recipe_find("encdec"), .aliases = aliases};
    return trainer_tool_main(argc, argv, &t);
}

// ---------------------------------------------------------------------------------------

static void main_usage(FILE *f) {
    fprintf(f,
            "usage: " TOOL " COMMAND [options]   (" TOOL " COMMAND --help for each)\n"
            "\n"
            "Russian news headline generation: an ALBERT encoder (conflux-train) plus a\n"
            "transformer decoder (BertSumAbs), or an mBART-style denoising-pretrained\n"
            "encoder-decoder, scored with ROUGE as published (Gusev 2020).\n"
            "\n"
            "commands:\n"
            "  pairs      (title, body) pairs from Debian's Russian texts -> TSV\n"
            "  prepare    tokenize (article, headline) pairs (RIA/Lenta/ODS dumps or TSV) -> pair shard\n"
            "  train      fine-tune (headline) or pretrain (denoise); alone or under mpirun\n"
            "  generate   headlines for articles on stdin or in files (greedy or beam search)\n"
            "  evaluate   ROUGE against reference titles, next to the first-sentence baseline\n"
            "\n"
            "Exit status: 0 success, 1 runtime failure, 2 usage error.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        main_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        main_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "pairs")) return headline_cmd_pairs(argc - 1, argv + 1);
    if (!strcmp(cmd, "prepare")) return headline_cmd_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return headline_cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "evaluate")) return headline_cmd_evaluate(argc - 1, argv + 1);
    fprintf(stderr, TOOL ": error: unknown command '%s' (pairs, prepare, train, generate, evaluate; see --help)\n", cmd);
    return 2;
}
