// ckpt.h: HDF5 checkpoints in the layout of docs/design.md.
//
//   /            attrs format="conflux-checkpoint", version=1, model, step, samples_seen,
//                created (ISO 8601 UTC), writer (program + version)
//   /config      the run configuration as text (string dataset)
//   /params/<name>        float32, true shape (TensorSpec), chunked with Fletcher32 checksums
//   /params/<alias>       hard link to the tensor it ties (predictions.decoder.weight ...)
//   /optim/<name>/<slot>  optimizer state, same shapes; /optim attrs name, step
//   /<group>/<key>        int64 arrays (e.g. /rng/state, /data/cursor) to resume bit for bit
//
// Writes are atomic: PATH.tmp.<pid> is written, flushed, fsync'd, renamed over PATH and the
// directory fsync'd. A damaged (checksum), truncated or foreign file is reported, never loaded.
#ifndef CONFLUX_CKPT_H
#define CONFLUX_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "models/tensor.h"
#include "models/diloco.h"
#include "models/train.h"

#define CKPT_MAX_SLOTS 8
#define CKPT_MAX_EXTRA 16

typedef struct {
    const char *path;     // "rng/state", "data/cursor", ... (group/key, one level)
    const int64_t *data;
    size_t n;
} CkptExtra;

typedef struct {
    const char *model;          // e.g. "albert"
    long step;
    long samples_seen;
    const char *config_text;    // stored in /config
    const char *writer;         // e.g. "conflux-train 0.1.0"
    const TensorSpec *specs;
    int n_specs;
    const TensorAlias *aliases;
    int n_aliases;
    const float *params;        // arena in specs' layout
    const char *optim_name;     // NULL: no /optim group
    long optim_step;
    int n_slots;
    const char *slot_names[CKPT_MAX_SLOTS];   // "exp_avg", "exp_avg_sq"
    const float *slots[CKPT_MAX_SLOTS];       // arenas in specs' layout
    int n_extra;
    CkptExtra extra[CKPT_MAX_EXTRA];
} CkptState;

// Atomic write. Returns 0, or -1 with err ("cannot write checkpoint PATH: why").
int ckpt_save(const char *path, const CkptState *st, char *err);

// A run directory's checkpoint: writes RUN_DIR/checkpoint-STEP.h5 (STEP = st->step, six
// digits) with ckpt_save, then points RUN_DIR/latest.h5 at it (a relative symlink replaced
// atomically). Returns 0, or -1 with err.
int ckpt_save_in_run(const char *run_dir, const CkptState *st, char *err);

// A trainer's checkpoint in a run directory (ckpt_save_in_run): the parameters of
// tr->task (its specs, with the model's aliases), the optimizer's moments (exp_avg,
// exp_avg_sq) and step, the data cursor and the seed. model names the architecture
// ("albert", "encdec"); writer is "PROGRAM VERSION". outer (NULL in sync mode) adds DiLoCo's
// outer state, taken between rounds: the optimizer slots outer_params (theta),
// outer_momentum and outer_start (where the next round starts), and /outer/state = {the last
// round completed, rounds applied, inner steps of a round, data base}. Returns 0, or -1 with
// err.
int ckpt_save_trainer(const char *run_dir, const char *model, const char *writer,
                      const char *config_text, const Trainer *tr, const TensorAlias *aliases,
                      int n_aliases, long seed, const Diloco *outer, char *err);

typedef struct Ckpt Ckpt;

// Opens and validates the header (format, version). -1 with err naming PATH and the
// problem (not HDF5, truncated, not a conflux checkpoint, unsupported version).
int ckpt_open(Ckpt **out, const char *path, char *err);
void ckpt_close(Ckpt *ck);

const char *ckpt_model(const Ckpt *ck);
long ckpt_step(const Ckpt *ck);
long ckpt_samples_seen(const Ckpt *ck);
// The /config text (owned by ck, NUL-terminated).
const char *ckpt_config_text(const Ckpt *ck);

// Reads every spec's /params/<name> into the arena. Each must exist with exactly the
// spec's shape; checksums are verified. -1 with err naming the file and dataset.
int ckpt_read_params(Ckpt *ck, const TensorSpec *specs, int n_specs, float *params, char *err);
// /optim attrs name (copied into name, cap bytes) and step; -1 if there is no /optim.
int ckpt_read_optim_info(Ckpt *ck, char *name, size_t cap, long *step, char *err);
// Reads /optim/<spec name>/<slot> for every spec into an arena.
int ckpt_read_slot(Ckpt *ck, const char *slot, const TensorSpec *specs, int n_specs,
                   float *arena, char *err);
// Reads an int64 array /<path>; it must hold exactly n elements.
int ckpt_read_extra(Ckpt *ck, const char *path, int64_t *data, size_t n, char *err);
// Reads any float32 dataset at an absolute path (e.g. "/golden/loss") holding exactly n
// elements (for tests and tools that store extra arrays).
int ckpt_read_float(Ckpt *ck, const char *path, float *data, size_t n, char *err);
int ckpt_read_int32(Ckpt *ck, const char *path, int32_t *data, size_t n, char *err);

// The inverse, for resuming: checks that ck holds a `model` checkpoint written with tr's
// optimizer, then loads tr->task's parameters, the moments, the optimizer step and the
// data cursor. Returns 0, or -1 with err naming what does not match or is damaged.
int ckpt_load_trainer(Ckpt *ck, const char *model, Trainer *tr, char *err);
// DiLoCo's outer state (see ckpt_save_trainer) into d (set up for tr's arena) and meta[4].
// Returns 1 when loaded, 0 when the checkpoint has none (a sync-mode checkpoint: DiLoCo
// starts from its parameters), -1 with err when it is damaged or incomplete.
int ckpt_load_outer(Ckpt *ck, const Trainer *tr, Diloco *d, int64_t meta[4], char *err);

#endif
