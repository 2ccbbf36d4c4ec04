// recipe.h: the model recipe table. Each model kind conflux trains says here, in one
// place, how a participant builds it from a run configuration: the configuration (schema,
// checks, the INI text every participant shares), the model, its training and validation
// tasks, the optimizer with its parameter groups, the split-gradient layout and backward
// hooks, and its checkpoint name and aliases. Trainer tools, the bridge and volunteers
// build replicas only through here, so they agree by construction and none of them
// branches on the model kind.
//
// A new model kind adds one entry: a recipe_<kind>.c beside this file that defines a
// `const Recipe recipe_<kind>`, its line in RECIPES (recipe.c), and its model files.
//
//   Replica r;
//   recipe_config_init(&r, recipe, err)                 defaults
//   ... recipe->config_load_file / config_set on r.cfg ...
//   recipe_build(&r, REPLICA_TRAINER, err)              model, data, tasks, optimizer
//   ... r.tr is a models/train.h Trainer; run the loop (io/run/run.h) ...
//   recipe_free(&r)
#ifndef CONFLUX_IO_TASKS_RECIPE_H
#define CONFLUX_IO_TASKS_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "io/run/config.h"
#include "models/tensor.h"
#include "models/train.h"

typedef enum {
    REPLICA_TRAINER,    // a trainer rank: training and validation data, init.* weights
    REPLICA_VOLUNTEER,  // a volunteer: the training data and task exactly as a trainer's
    REPLICA_BARE,       // model and optimizer only (activations for one sample)
    REPLICA_BRIDGE,     // the bridge: model and optimizer (activations for one sample) and
                        // the training data, so its task counts the loss tokens of the
                        // samples volunteers are given (TrainTask.count_tokens)
} ReplicaKind;

typedef struct Recipe Recipe;
struct AlbertEngine;

// One participant's replica of the run.
typedef struct {
    const Recipe *recipe;
    void *cfg;              // the recipe's configuration struct (recipe->cfg_size bytes)
    TrainSettings *train;   // its [train] keys
    char *run_dir;          // its run.dir
    char *data_train;       // its data.train (the training data's path)
    const char *resume_path;  // set by a trainer resuming a run: no init.* weights
    TpSettings *tp;         // its [tp] keys (io/run/config.h); NULL: the kind has no
                            // tensor-parallel model
    // Set by a trainer before build for a tensor-parallel run (tp above more than 1 x 1):
    // the model on that engine (io/tasks/mlm.h). Only a recipe with tp takes one.
    const struct AlbertEngine *albert_engine;
    Trainer tr;             // task, optimizer and global batch (avg, step and cursor: the caller's)
    void *model;            // the recipe's model (Albert *, EncDec *)
    TrainTask valid;        // the validation task (REPLICA_TRAINER with validation data)
    long n_valid;           // validation examples (0: no validation)
    uint64_t n_examples;    // training examples: volunteers check theirs against the run's
    const char *example_unit;  // "windows", "pairs"
    const char *valid_unit;    // what the validation loss is over: "masked", "target"
    const char *aux_name;      // name of the auxiliary loss ("sop"), NULL without one
    void *impl;             // the recipe's data and tasks
} Replica;

struct Recipe {
    const char *name;       // the checkpoint's /model attribute: "albert", "encdec"
    const char *what;       // for messages: "ALBERT masked-LM"
    // ---- configuration (cfg points to cfg_size bytes) ----
    size_t cfg_size;
    // The defaults into r->cfg, and r->train, r->run_dir, r->data_train pointing into it.
    void (*config_defaults)(Replica *r);
    const CfgSchema *schema;  // its keys: INI files, texts and --set (io/run/config.h's engine)
    int (*config_check)(const void *cfg, char *err);  // cross-field checks
    // Whether an INI text (a checkpoint's or the trainers' configuration) is this
    // recipe's. Exactly one recipe of the table claims any configuration text.
    int (*config_is)(const char *text);
    // Optional, for a trainer that starts a run (not a resume): settles the configuration
    // from what it starts from (e.g. the model shape of an init.* checkpoint). -1 with err
    // and *usage set when the configuration itself is wrong (exit status 2).
    int (*config_resolve)(void *cfg, int *usage, char *err);
    // ---- the replica ----
    // Builds r->model, r->tr (task, optimizer over [train] steps, global batch), and what
    // the kind needs (see ReplicaKind); fills the Replica fields above. -1 with err naming
    // the file or key; on failure free is still called.
    int (*build)(Replica *r, ReplicaKind kind, char *err);
    void (*free)(Replica *r);  // everything build made (a partly built replica too)
    // Split gradients (models/train.h) for an overlapping averaging backend.
    const GradSplit *(*enable_split)(void *model);
    // The model's backward hooks (NULL functions: none).
    void (*set_hooks)(void *model, void (*ready)(void *ctx, size_t offset, size_t count),
                      void (*progress)(void *ctx), void *ctx);
    const TensorAlias *(*aliases)(int *n);  // tied names in checkpoints
    // Tokens the last step processed over every participant (throughput figures); n_ranks
    // scales what this replica counted locally where the step's result does not say.
    double (*step_tokens)(Replica *r, const StepResult *s, int n_ranks);
    // One clause for the start line ("headline, encoder 1.2M parameters, 500 pairs").
    void (*describe)(const Replica *r, char *buf, size_t cap);
};

// The recipe named name ("albert", "encdec"), or NULL.
const Recipe *recipe_find(const char *name);
// The recipe whose configuration text this is (never NULL: the table's fallback is ALBERT,
// whose configuration has no section of its own).
const Recipe *recipe_for_config(const char *text);

// Zeroes r and gives it recipe's default configuration.
void recipe_config_init(Replica *r, const Recipe *recipe);
// Reads an INI file, an INI text (where names it in errors) or one "section.key=value"
// override into r's configuration, on top of what it holds (cfg_load_file, cfg_load_string,
// cfg_set with the recipe's schema). -1 with err naming the file and line or the argument.
int recipe_config_load_file(Replica *r, const char *path, char *err);
int recipe_config_load_string(Replica *r, const char *text, const char *where, char *err);
int recipe_config_set(Replica *r, const char *assignment, char *err);
// A checkpoint's configuration (text, from the file at path) onto r, without its paths
// (cfg_load_string_no_paths); run.dir becomes the checkpoint's directory (the run it
// continues), which a config file or --set may still change. -1 with err.
int recipe_config_load_checkpoint(Replica *r, const char *text, const char *path, char *err);
// The effective configuration as INI text (malloc'ed; the caller frees).
char *recipe_config_text(const Replica *r);
// A configuration text onto the defaults, overrides (each "section.key=value", those for
// which allow() returns 0 are refused with its message; allow may be NULL), then the checks.
// The way the bridge and volunteers read the run's configuration. -1 with err.
int recipe_config_from_text(Replica *r, const char *text, const char *where,
                            const char *const *sets, int n_sets,
                            int (*allow)(const char *set, char *err), char *err);

// Builds the replica (recipe->build); on failure frees what was built. -1 with err.
int recipe_build(Replica *r, ReplicaKind kind, char *err);
// Frees the replica and its configuration. A zeroed Replica is a no-op.
void recipe_free(Replica *r);

// Wires an averaging strategy into the replica: r->tr.avg = *a, and the model's backward
// hooks report to a->ready / a->progress (none when they are NULL, whatever was wired
// before; an albert_engine's model through the engine).
void recipe_wire_averager(Replica *r, const Averager *a);

#endif
