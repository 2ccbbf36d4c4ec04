// trainer.h: the trainer ranks' side of a run, for every trainer tool (conflux-train,
// conflux-headline train): options, configuration, the replica from the model's recipe
// (io/tasks/recipe.h), the averaging strategy, resume, the run directory and the run loop
// (io/run/run.h). A tool main is its help text, its recipe and its option aliases.
//
// Set-up order (every trainer rank; a conflux-bridge rank mirrors the collectives, see
// mpi/hybrid.h): hybrid_init; configuration (a resumed checkpoint's, then --config, then
// --set and aliases; a fresh run lets the recipe settle it, e.g. from init.*; checks);
// the replica with its data; with a bridge the configuration goes to it; with several
// ranks the split-gradient layout and the averager (overlap hooks wired into the model);
// the resumed state; with a bridge the state goes to it; trainer 0 writes run.json and
// opens metrics.csv; a barrier; then the loop. From the barrier on, a failure on any rank
// aborts the job (no rank is left waiting in a collective).
//
// Exit status: 0 (every step done, or stopped by a signal after a checkpoint), 1 runtime
// failure, 2 usage or configuration error. Errors read "TOOL: error: [rank R: ]what".
#ifndef CONFLUX_MPI_TRAINER_H
#define CONFLUX_MPI_TRAINER_H

#include "io/tasks/recipe.h"

// A tool option that sets one configuration key: --steps N is --set train.steps=N.
typedef struct {
    const char *option;  // long option name without dashes ("steps")
    const char *key;     // "train.steps"
} TrainerAlias;

typedef struct {
    const char *tool;               // "conflux-train"
    const char *command;            // "train" for a subcommand, NULL for a tool of its own
    const char *usage;              // the --help text
    const Recipe *recipe;           // the model kind it trains
    const TrainerAlias *aliases;    // NULL-terminated by a zero entry; may be NULL
} TrainerTool;

// Runs the tool on argv (argv[0] the tool or subcommand name). Returns the exit status
// (MPI is finalised; a failure with several ranks aborts the job instead of returning).
int trainer_tool_main(int argc, char **argv, const TrainerTool *t);

#endif
