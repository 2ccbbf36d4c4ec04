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
#include "models/diloco.h"
#include "models/optim.h"

#define CFG_PATH_LEN 1024

// [train]: the run loop's settings, the same keys in every model's configuration
// (CFG_TRAIN_KEYS), checked by train_settings_check.
typedef struct {
    long global_batch;             // sequences per optimizer step (all participants)
    int micro_batch;               // sequences per forward/backward
    long steps;                    // total optimizer steps
    long seed;
    long eval_every;               // steps between validation passes (0 = never)
    long eval_samples;             // validation sequences per pass
    long checkpoint_every;         // steps between checkpoints (0 = only at the end)
    int threads;                   // OpenBLAS threads (0 = leave OpenBLAS's default)
    int log_every;                 // steps between progress lines
    long replica_check_every;      // steps between replica checksum comparisons (0: only
                                   // on checkpoint steps, the last step and a stop)
    DilocoConfig avg;              // [averaging]: sync (every step) or diloco (outer rounds)
} TrainSettings;

// Range checks of the [train] and [averaging] keys; -1 with err naming the key ("train.steps
// must be >= 1"). In diloco mode train.steps and train.checkpoint_every must be multiples
// of averaging.inner_steps (checkpoints fall between outer rounds); replica checks happen
// on the round boundaries that are multiples of train.replica_check_every.
int train_settings_check(const TrainSettings *t, char *err);

// [tp]: tensor parallelism (mpi/tp.h): every data-parallel replica of the model is a grid
// of rows x cols ranks (1 x 1: none). The launch's layout, not the model's: a resumed run
// takes it from its command line and configuration file, never from the checkpoint.
typedef struct {
    int rows, cols;
} TpSettings;

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
    TrainSettings train;
    TpSettings tp;
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
// Whether tp (may be NULL: a model kind without [tp]) asks for a grid of more than one rank.
int tp_settings_on(const TpSettings *tp);
// The [tp] keys against the model and the run: rows, cols >= 1; a grid of more than one
// rank needs tp.rows <= model.num_heads, no SOP head and averaging.mode = sync. -1 with
// err naming the keys. (Whether the grid fits the job's ranks is the trainer's check.)
int tp_settings_check(const TpSettings *tp, const AlbertConfig *model, const TrainSettings *t,
                      char *err);
// Cross-field validation (model dims, optimizer, batch sizes). -1 with err naming the key.
int config_check(const RunConfig *c, char *err);
// Writes the full configuration as INI text into buf (cap bytes). Returns the length
// needed (like snprintf).
size_t config_to_ini(const RunConfig *c, char *buf, size_t cap);

// ---- the table-driven INI engine behind every conflux configuration ----
// A schema lists the keys of one configuration struct: section, key, type and the field's
// offset. Parsing checks every value (an unknown key, a bad number or an unknown name is
// an error naming FILE:LINE or the --set argument); writing emits every key, in table
// order, grouped by section.
typedef enum { CFG_INT, CFG_LONG, CFG_FLOAT, CFG_STR, CFG_ENUM } CfgType;

typedef struct {
    const char *section, *key;
    CfgType type;
    size_t offset;
    size_t size;                // CFG_STR: bytes of the char array (value < size)
    const char *const *names;   // CFG_ENUM: names of values 0, 1, ..., NULL-terminated; a name
                                // may list aliases after '|' ("poly|polynomial"), the first
                                // is written
    const char *what;           // CFG_ENUM: "an optimizer", for "'x' is not an optimizer (...)"
} CfgKey;

typedef struct {
    const CfgKey *keys;
    size_t n_keys;
} CfgSchema;

// The same contracts as config_load_file, config_load_string, config_set and config_to_ini,
// for any struct described by a schema (base points to it). CFG_ENUM fields are int-sized.
int cfg_load_file(const CfgSchema *s, void *base, const char *path, char *err);
int cfg_load_string(const CfgSchema *s, void *base, const char *text, const char *where, char *err);
int cfg_set(const CfgSchema *s, void *base, const char *assignment, char *err);
// cfg_load_string for a text from a file a user is handed (a checkpoint's /config): its
// path keys (every CFG_STR key: run.dir, data.*, init.*) are ignored, so a resumed run
// never writes or reads where the file says; the paths are this machine's (defaults,
// config file, --set).
int cfg_load_string_no_paths(const CfgSchema *s, void *base, const char *text, const char *where,
                             char *err);
size_t cfg_to_ini(const CfgSchema *s, const void *base, char *buf, size_t cap);

// Whether INI text has a [section] header line (leading blanks allowed). The recipe table
// (io/tasks/recipe.h) tells configurations apart by their sections.
int cfg_text_has_section(const char *text, const char *section);

// The schema of RunConfig (conflux-train's configuration).
extern const CfgSchema CONFIG_SCHEMA;

// Value names shared by the schemas.
extern const char *const CFG_OPTIM_NAMES[];  // adamw, lamb (OptimKind)
extern const char *const CFG_SCHED_NAMES[];  // linear, poly, constant, invsqrt (SchedKind)
extern const char *const CFG_AVG_MODE_NAMES[];  // sync, diloco (AvgMode)
extern const char *const CFG_CODEC_NAMES[];     // "", fp32, fp16, int8 (CODEC_* ids)

// The [sec] keys of an OptimConfig member `field` of struct `type`, for a CfgKey table:
// The [train] keys of a TrainSettings member `field` of struct `type`, for a CfgKey table,
// in their written order.
#define CFG_TRAIN_KEYS(type, field)                                                            \
    {"train", "global_batch", CFG_LONG, offsetof(type, field.global_batch), 0, NULL, NULL},     \
    {"train", "micro_batch", CFG_INT, offsetof(type, field.micro_batch), 0, NULL, NULL},        \
    {"train", "steps", CFG_LONG, offsetof(type, field.steps), 0, NULL, NULL},                   \
    {"train", "seed", CFG_LONG, offsetof(type, field.seed), 0, NULL, NULL},                     \
    {"train", "eval_every", CFG_LONG, offsetof(type, field.eval_every), 0, NULL, NULL},         \
    {"train", "eval_samples", CFG_LONG, offsetof(type, field.eval_samples), 0, NULL, NULL},     \
    {"train", "checkpoint_every", CFG_LONG, offsetof(type, field.checkpoint_every), 0, NULL,    \
     NULL},                                                                                    \
    {"train", "threads", CFG_INT, offsetof(type, field.threads), 0, NULL, NULL},                \
    {"train", "log_every", CFG_INT, offsetof(type, field.log_every), 0, NULL, NULL},            \
    {"train", "replica_check_every", CFG_LONG, offsetof(type, field.replica_check_every), 0,    \
     NULL, NULL},                                                                              \
    {"averaging", "mode", CFG_ENUM, offsetof(type, field.avg.mode), 0, CFG_AVG_MODE_NAMES,     \
     "an averaging mode"},                                                                     \
    {"averaging", "inner_steps", CFG_LONG, offsetof(type, field.avg.inner_steps), 0, NULL, NULL}, \
    {"averaging", "outer_lr", CFG_FLOAT, offsetof(type, field.avg.outer_lr), 0, NULL, NULL},   \
    {"averaging", "outer_momentum", CFG_FLOAT, offsetof(type, field.avg.outer_momentum), 0,    \
     NULL, NULL},                                                                              \
    {"averaging", "nesterov", CFG_INT, offsetof(type, field.avg.nesterov), 0, NULL, NULL},     \
    {"averaging", "overlap", CFG_INT, offsetof(type, field.avg.overlap), 0, NULL, NULL},       \
    {"averaging", "workers", CFG_INT, offsetof(type, field.avg.workers), 0, NULL, NULL},       \
    {"averaging", "down_codec", CFG_ENUM, offsetof(type, field.avg.down_codec), 0,             \
     CFG_CODEC_NAMES, "a codec"}

// The [sec] keys of an OptimConfig member `field` of struct `type`, for a CfgKey table:
// name, lr, beta1, beta2, eps, weight_decay, clip_norm, schedule, warmup_steps, end_lr,
// poly_power, trust_coef, in that (written) order (total_steps is not a key). conflux-train's [optim]
// and conflux-headline's [optim] are this one list.
#define CFG_OPTIM_KEYS(type, sec, field)                                                      \
    {sec, "name", CFG_ENUM, offsetof(type, field.kind), 0, CFG_OPTIM_NAMES, "an optimizer"},  \
    {sec, "lr", CFG_FLOAT, offsetof(type, field.lr), 0, NULL, NULL},                           \
    {sec, "beta1", CFG_FLOAT, offsetof(type, field.beta1), 0, NULL, NULL},                     \
    {sec, "beta2", CFG_FLOAT, offsetof(type, field.beta2), 0, NULL, NULL},                     \
    {sec, "eps", CFG_FLOAT, offsetof(type, field.eps), 0, NULL, NULL},                         \
    {sec, "weight_decay", CFG_FLOAT, offsetof(type, field.weight_decay), 0, NULL, NULL},       \
    {sec, "clip_norm", CFG_FLOAT, offsetof(type, field.clip_norm), 0, NULL, NULL},             \
    {sec, "schedule", CFG_ENUM, offsetof(type, field.schedule), 0, CFG_SCHED_NAMES,            \
     "a schedule"},                                                                            \
    {sec, "warmup_steps", CFG_LONG, offsetof(type, field.warmup_steps), 0, NULL, NULL},        \
    {sec, "end_lr", CFG_FLOAT, offsetof(type, field.end_lr), 0, NULL, NULL},                   \
    {sec, "poly_power", CFG_FLOAT, offsetof(type, field.poly_power), 0, NULL, NULL},           \
    {sec, "trust_coef", CFG_FLOAT, offsetof(type, field.trust_coef), 0, NULL, NULL}

#endif
