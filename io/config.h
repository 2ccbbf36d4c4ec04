// config.h: the run configuration (INI file + `--set section.key=value` overrides).
//
// Every key has a default; an unknown section or key, or a value that does not parse,
// is an error naming the file and line (or the --set argument). config_to_ini writes
// the complete effective configuration, which is stored in checkpoints and run.json and
// parses back to the same values.
#ifndef CONFLUX_CONFIG_H
#define CONFLUX_CONFIG_H

#include <stddef.h>

#include "models/albert.h"
#include "models/optim.h"

#define CFG_PATH_LEN 1024

typedef struct {
    AlbertConfig model;
    OptimConfig optim;
    struct {
        char train[CFG_PATH_LEN];      // token shard for training
        char valid[CFG_PATH_LEN];      // token shard for validation ("" = none)
        char tokenizer[CFG_PATH_LEN];  // directory with vocab.json + merges.txt
        int seq_len;                   // T
        float mask_prob;
    } data;
    struct {
        long global_batch;             // sequences per optimizer step (all participants)
        int micro_batch;               // sequences per forward/backward
        long steps;                    // total optimizer steps
        long seed;
        long eval_every;               // steps between validation passes (0 = never)
        long eval_samples;             // validation sequences per pass
        long checkpoint_every;         // steps between checkpoints (0 = only at the end)
        int threads;                   // OpenBLAS threads (0 = leave OpenBLAS's default)
        int log_every;                 // steps between progress lines
        long replica_check_every;      // steps between replica checksum comparisons (0 = end only)
    } train;
    struct {
        char dir[CFG_PATH_LEN];        // run directory
    } run;
} RunConfig;

void config_defaults(RunConfig *c);
// Parses an INI file into c (on top of what is there). -1 with err "FILE:LINE: ...".
int config_load_file(RunConfig *c, const char *path, char *err);
// Parses INI text (e.g. the /config of a checkpoint); where names the source in errors.
int config_load_string(RunConfig *c, const char *text, const char *where, char *err);
// Applies one "section.key=value" override. -1 with err naming the argument.
int config_set(RunConfig *c, const char *assignment, char *err);
// Cross-field validation (model dims, optimizer, batch sizes). -1 with err naming the key.
int config_check(const RunConfig *c, char *err);
// Writes the full configuration as INI text into buf (cap bytes). Returns the length
// needed (like snprintf).
size_t config_to_ini(const RunConfig *c, char *buf, size_t cap);

#endif
