// config.c: table-driven INI configuration on inih (see config.h). inih is a small,
// well-kept parser (Debian libinih) that reports line numbers; values are checked here.
#include "io/run/config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "models/common.h"

_Static_assert(sizeof(OptimKind) == sizeof(int) && sizeof(SchedKind) == sizeof(int),
               "CFG_ENUM fields are int-sized");

const char *const CFG_OPTIM_NAMES[] = {"adamw", "lamb", "lars", NULL};
const char *const CFG_SCHED_NAMES[] = {"linear", "poly|polynomial", "constant", "invsqrt|noam",
                                       "cosine", NULL};
const char *const CFG_AVG_MODE_NAMES[] = {"sync", "diloco", NULL};
// indexed by CODEC_* id (models/codec.h); id 0 is no codec
const char *const CFG_CODEC_NAMES[] = {"none", "fp32", "fp16", "int8", NULL};

#define F(sec, key, type, field) {sec, key, type, offsetof(RunConfig, field), 0, NULL, NULL}
#define S(sec, key, field) {sec, key, CFG_STR, offsetof(RunConfig, field), CFG_PATH_LEN, NULL, NULL}
#define E(sec, key, field, names, what) {sec, key, CFG_ENUM, offsetof(RunConfig, field), 0, names, what}
static const CfgKey KEYS[] = {
    F("model", "vocab_size", CFG_INT, model.vocab_size),
    F("model", "embedding_size", CFG_INT, model.embedding_size),
    F("model", "hidden_size", CFG_INT, model.hidden_size),
    F("model", "num_heads", CFG_INT, model.num_heads),
    F("model", "intermediate_size", CFG_INT, model.intermediate_size),
    F("model", "num_layers", CFG_INT, model.num_layers),
    F("model", "max_position", CFG_INT, model.max_position),
    F("model", "dropout", CFG_FLOAT, model.dropout),
    F("model", "layer_norm_eps", CFG_FLOAT, model.ln_eps),
    F("model", "init_std", CFG_FLOAT, model.init_std),
    F("model", "sop", CFG_INT, model.sop),
    CFG_OPTIM_KEYS(RunConfig, "optim", optim),
    S("data", "train", data.train),
    S("data", "valid", data.valid),
    S("data", "tokenizer", data.tokenizer),
    F("data", "seq_len", CFG_INT, data.seq_len),
    F("data", "mask_prob", CFG_FLOAT, data.mask_prob),
    CFG_TRAIN_KEYS(RunConfig, train),
    F("tp", "rows", CFG_INT, tp.rows),
    F("tp", "cols", CFG_INT, tp.cols),
    S("run", "dir", run.dir),
};
#undef F
#undef S
#undef E
const CfgSchema CONFIG_SCHEMA = {KEYS, sizeof KEYS / sizeof KEYS[0]};

void config_defaults(RunConfig *c) {
    memset(c, 0, sizeof *c);
    c->model = (AlbertConfig){.vocab_size = 8192, .embedding_size = 128, .hidden_size = 256,
                              .num_heads = 4, .intermediate_size = 1024, .num_layers = 4,
                              .max_position = 512, .dropout = 0.0f, .ln_eps = 1e-12f,
                              .init_std = 0.02f};
    c->optim = (OptimConfig){.kind = OPTIM_ADAMW, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f,
                             .eps = 1e-6f, .weight_decay = 0.01f, .clip_norm = 1.0f,
                             .schedule = SCHED_LINEAR, .warmup_steps = 50, .total_steps = 2000,
                             .end_lr = 0.0f, .poly_power = 1.0f, .trust_coef = 0.001f};
    snprintf(c->data.train, CFG_PATH_LEN, "build/data/shards/train.h5");
    snprintf(c->data.valid, CFG_PATH_LEN, "build/data/shards/valid.h5");
    snprintf(c->data.tokenizer, CFG_PATH_LEN, "build/data/tokenizer");
    c->data.seq_len = 64;
    c->data.mask_prob = 0.15f;
    c->tp = (TpSettings){.rows = 1, .cols = 1};
    c->train.global_batch = 32;
    c->train.micro_batch = 16;
    c->train.steps = 2000;
    c->train.seed = 1234;
    c->train.eval_every = 100;
    c->train.eval_samples = 256;
    c->train.checkpoint_every = 0;
    c->train.threads = 0;
    c->train.log_every = 10;
    c->train.replica_check_every = 50;
    diloco_config_defaults(&c->train.avg);
    snprintf(c->run.dir, CFG_PATH_LEN, "runs/default");
}

// ---- the engine ----

// Index of val among an enum's names (aliases after '|'), or -1.
static int enum_index(const char *const *names, const char *val) {
    for (int i = 0; names[i]; i++) {
        const char *n = names[i];
        while (*n) {
            const char *bar = strchr(n, '|');
            size_t len = bar ? (size_t)(bar - n) : strlen(n);
            if (strlen(val) == len && !strncasecmp(val, n, len)) return i;
            n += len + (bar != NULL);
        }
    }
    return -1;
}

static int parse_value(void *base, const CfgKey *k, const char *val, char *why, size_t cap) {
    char *p = (char *)base + k->offset;
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case CFG_INT: {
        long v = strtol(val, &end, 10);
        if (end == val || *end || errno || v < -2147483647L || v > 2147483647L) {
            snprintf(why, cap, "'%s' is not an integer", val);
            return -1;
        }
        *(int *)p = (int)v;
        return 0;
    }
    case CFG_LONG: {
        long v = strtol(val, &end, 10);
        if (end == val || *end || errno) {
            snprintf(why, cap, "'%s' is not an integer", val);
            return -1;
        }
        *(long *)p = v;
        return 0;
    }
    case CFG_FLOAT: {
        float v = strtof(val, &end);
        if (end == val || *end || errno || !isfinite(v)) {
            snprintf(why, cap, "'%s' is not a finite number", val);
            return -1;
        }
        *(float *)p = v;
        return 0;
    }
    case CFG_STR:
        if (strlen(val) >= k->size) {
            snprintf(why, cap, "value longer than %zu bytes", k->size - 1);
            return -1;
        }
        snprintf(p, k->size, "%s", val);
        return 0;
    case CFG_ENUM: {
        int i = enum_index(k->names, val);
        if (i < 0) {
            char list[160] = "";
            for (int j = 0; k->names[j]; j++) {
                size_t len = strcspn(k->names[j], "|");
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%.*s", j ? ", " : "",
                         (int)len, k->names[j]);
            }
            snprintf(why, cap, "'%s' is not %s (%s)", val, k->what, list);
            return -1;
        }
        *(int *)p = i;
        return 0;
    }
    }
    return -1;
}

static const CfgKey *find_key(const CfgSchema *s, const char *section, const char *key) {
    for (size_t i = 0; i < s->n_keys; i++)
        if (!strcmp(s->keys[i].section, section) && !strcmp(s->keys[i].key, key)) return &s->keys[i];
    return NULL;
}

// Debian's inih is built without INI_HANDLER_LINENO, so the reader counts lines: the
// handler runs right after the line holding its key has been read.
typedef struct {
    const CfgSchema *s;
    void *base;
    const char *where;
    char *err;
    int failed;
    int line;
    FILE *file;          // reading a file, or
    const char *text;    // reading a string
    int skip_paths;      // a checkpoint's text: its path keys (CFG_STR) are ignored
} IniCtx;

static char *ini_read_line(char *buf, int cap, void *stream) {
    IniCtx *ic = stream;
    if (ic->file) {
        if (!fgets(buf, cap, ic->file)) return NULL;
    } else {
        if (!*ic->text || cap < 2) return NULL;
        int n = 0;
        while (n < cap - 1 && ic->text[n] && ic->text[n] != '\n') n++;
        if (ic->text[n] == '\n' && n < cap - 1) n++;
        memcpy(buf, ic->text, (size_t)n);
        buf[n] = 0;
        ic->text += n;
    }
    ic->line++;
    // a line longer than the reader's buffer would be split and its tail parsed as a line of
    // its own ("dir = /ddd...dir = /tmp/x" setting a key): refuse it (a line that fits
    // exactly, its newline left over, is fine)
    size_t len = strlen(buf);
    if (len == (size_t)cap - 1 && buf[len - 1] != '\n') {
        int next;
        if (ic->file) {
            next = fgetc(ic->file);
            if (next != EOF && next != '\n') ungetc(next, ic->file);
        } else {
            next = *ic->text ? (unsigned char)*ic->text : EOF;
            if (next == '\n') ic->text++;
        }
        if (next != EOF && next != '\n') {
            cx_err(ic->err, "%s:%d: line longer than %d bytes", ic->where, ic->line, cap - 2);
            ic->failed = 1;
            return NULL;
        }
    }
    const char *p = buf;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '[' && !strchr(p, ']')) {
        cx_err(ic->err, "%s:%d: syntax error: unterminated [section", ic->where, ic->line);
        ic->failed = 1;
        return NULL;
    }
    return buf;
}

static int on_ini_value(void *user, const char *section, const char *name, const char *value) {
    IniCtx *ic = user;
    int lineno = ic->line;
    if (ic->failed) return 0;
    if (!section[0]) {
        cx_err(ic->err, "%s:%d: key '%s' outside any [section]", ic->where, lineno, name);
        ic->failed = 1;
        return 0;
    }
    const CfgKey *k = find_key(ic->s, section, name);
    if (!k) {
        cx_err(ic->err, "%s:%d: unknown key '%s' in section [%s]", ic->where, lineno, name,
               section);
        ic->failed = 1;
        return 0;
    }
    if (ic->skip_paths && k->type == CFG_STR) return 1;
    char why[256];
    if (parse_value(ic->base, k, value, why, sizeof why) != 0) {
        cx_err(ic->err, "%s:%d: %s.%s: %s", ic->where, lineno, section, name, why);
        ic->failed = 1;
        return 0;
    }
    return 1;
}

static int finish_parse(IniCtx *ic, int rc) {
    if (ic->failed) return -1;
    if (rc == -1) return cx_err(ic->err, "cannot open config file %s", ic->where);
    if (rc == -2) return cx_err(ic->err, "%s: out of memory while parsing", ic->where);
    if (rc > 0) return cx_err(ic->err, "%s:%d: syntax error (expected [section] or key = value)",
                              ic->where, rc);
    return 0;
}

int cfg_load_file(const CfgSchema *s, void *base, const char *path, char *err) {
    IniCtx ic = {.s = s, .base = base, .where = path, .err = err};
    ic.file = fopen(path, "r");
    if (!ic.file) return cx_err(err, "cannot open config file %s: %s", path, strerror(errno));
    int rc = ini_parse_stream(ini_read_line, &ic, on_ini_value, &ic);
    fclose(ic.file);
    return finish_parse(&ic, rc);
}

int cfg_load_string(const CfgSchema *s, void *base, const char *text, const char *where, char *err) {
    IniCtx ic = {.s = s, .base = base, .where = where, .err = err, .text = text};
    return finish_parse(&ic, ini_parse_stream(ini_read_line, &ic, on_ini_value, &ic));
}

int cfg_load_string_no_paths(const CfgSchema *s, void *base, const char *text, const char *where,
                             char *err) {
    IniCtx ic = {.s = s, .base = base, .where = where, .err = err, .text = text, .skip_paths = 1};
    return finish_parse(&ic, ini_parse_stream(ini_read_line, &ic, on_ini_value, &ic));
}

int cfg_set(const CfgSchema *s, void *base, const char *assignment, char *err) {
    // the key is what follows the last '.' before '=' (a section name may hold dots:
    // conflux-sim's [profile.1])
    const char *eq = strchr(assignment, '='), *dot = NULL;
    for (const char *p = assignment; eq && p < eq; p++)
        if (*p == '.') dot = p;
    if (!eq || !dot)
        return cx_err(err, "--set %s: expected section.key=value", assignment);
    char section[64], key[64];
    size_t ls = (size_t)(dot - assignment), lk = (size_t)(eq - dot - 1);
    if (ls == 0 || ls >= sizeof section || lk == 0 || lk >= sizeof key)
        return cx_err(err, "--set %s: expected section.key=value", assignment);
    memcpy(section, assignment, ls);
    section[ls] = 0;
    memcpy(key, dot + 1, lk);
    key[lk] = 0;
    const CfgKey *k = find_key(s, section, key);
    if (!k) return cx_err(err, "--set %s: unknown key %s.%s", assignment, section, key);
    char why[256];
    if (parse_value(base, k, eq + 1, why, sizeof why) != 0)
        return cx_err(err, "--set %s: %s", assignment, why);
    return 0;
}

size_t cfg_to_ini(const CfgSchema *s, const void *base, char *buf, size_t cap) {
    size_t len = 0;
    const char *cur = "";
    for (size_t i = 0; i < s->n_keys; i++) {
        const CfgKey *k = &s->keys[i];
        const char *p = (const char *)base + k->offset;
        char val[4096];
        switch (k->type) {
        case CFG_INT: snprintf(val, sizeof val, "%d", *(const int *)p); break;
        case CFG_LONG: snprintf(val, sizeof val, "%ld", *(const long *)p); break;
        case CFG_FLOAT: snprintf(val, sizeof val, "%.9g", (double)*(const float *)p); break;
        case CFG_STR: snprintf(val, sizeof val, "%s", p); break;
        case CFG_ENUM: {
            int v = *(const int *)p, n = 0;
            while (k->names[n]) n++;
            const char *name = v >= 0 && v < n ? k->names[v] : "?";
            snprintf(val, sizeof val, "%.*s", (int)strcspn(name, "|"), name);
            break;
        }
        }
        int n;
        if (strcmp(cur, k->section) != 0) {
            n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%s[%s]\n",
                         len ? "\n" : "", k->section);
            len += (size_t)n;
            cur = k->section;
        }
        n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%s = %s\n", k->key, val);
        len += (size_t)n;
    }
    return len;
}

int cfg_text_has_section(const char *text, const char *section) {
    size_t n = strlen(section);
    for (const char *p = text; p && *p;) {
        while (*p == ' ' || *p == '\t') p++;
        if (p[0] == '[' && !strncmp(p + 1, section, n) && p[n + 1] == ']') return 1;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

// ---- RunConfig ----

int config_load_file(RunConfig *c, const char *path, char *err) {
    return cfg_load_file(&CONFIG_SCHEMA, c, path, err);
}

int config_load_string(RunConfig *c, const char *text, const char *where, char *err) {
    return cfg_load_string(&CONFIG_SCHEMA, c, text, where, err);
}

int config_set(RunConfig *c, const char *assignment, char *err) {
    return cfg_set(&CONFIG_SCHEMA, c, assignment, err);
}

size_t config_to_ini(const RunConfig *c, char *buf, size_t cap) {
    return cfg_to_ini(&CONFIG_SCHEMA, c, buf, cap);
}

int train_settings_check(const TrainSettings *t, char *err) {
    if (t->micro_batch < 1 || t->micro_batch > 65536)
        return cx_err(err, "train.micro_batch must be in [1, 65536] (got %d)", t->micro_batch);
    if (t->global_batch < 1) return cx_err(err, "train.global_batch must be >= 1");
    if (t->steps < 1) return cx_err(err, "train.steps must be >= 1");
    if (t->eval_every < 0 || t->eval_samples < 0 || t->checkpoint_every < 0)
        return cx_err(err, "train.eval_every, train.eval_samples and train.checkpoint_every must be >= 0");
    if (t->threads < 0) return cx_err(err, "train.threads must be >= 0");
    if (t->replica_check_every < 0) return cx_err(err, "train.replica_check_every must be >= 0");
    if (t->log_every < 1) return cx_err(err, "train.log_every must be >= 1");
    if (diloco_config_check(&t->avg, err) != 0) return -1;
    if (t->avg.mode == AVG_DILOCO) {
        const long H = t->avg.inner_steps;
        if (t->steps % H || t->checkpoint_every % H)
            return cx_err(err, "train.steps (%ld) and train.checkpoint_every (%ld) must be "
                          "multiples of averaging.inner_steps (%ld) in diloco mode: "
                          "checkpoints happen between outer rounds", t->steps,
                          t->checkpoint_every, H);
    }
    return 0;
}

int tp_settings_on(const TpSettings *tp) { return tp && tp->rows * tp->cols > 1; }

int tp_settings_check(const TpSettings *tp, const AlbertConfig *model, const TrainSettings *t,
                      char *err) {
    if (tp->rows < 1 || tp->cols < 1 || tp->rows > 4096 || tp->cols > 4096)
        return cx_err(err, "tp.rows and tp.cols must be in [1, 4096] (got %d x %d)", tp->rows, tp->cols);
    if (!tp_settings_on(tp)) return 0;
    if (tp->rows > model->num_heads)
        return cx_err(err, "tp.rows (%d) must be <= model.num_heads (%d): each grid row holds "
                      "whole attention heads", tp->rows, model->num_heads);
    if (model->sop)
        return cx_err(err, "model.sop = 1 cannot run tensor-parallel (tp.rows x tp.cols = %d x %d): "
                      "the sentence-order head is not distributed; set model.sop = 0 or tp to 1 x 1",
                      tp->rows, tp->cols);
    if (t->avg.mode == AVG_DILOCO)
        return cx_err(err, "averaging.mode = diloco cannot run tensor-parallel (tp.rows x tp.cols = "
                      "%d x %d): use averaging.mode = sync, or tp 1 x 1", tp->rows, tp->cols);
    return 0;
}

int config_check(const RunConfig *c, char *err) {
    if (albert_config_check(&c->model, err) != 0) return -1;
    OptimConfig o = c->optim;
    o.total_steps = c->train.steps;
    if (optim_config_check(&o, err) != 0) return -1;
    if (c->data.seq_len < 3 || c->data.seq_len > c->model.max_position)
        return cx_err(err, "data.seq_len (%d) must be in [3, model.max_position=%d]",
                      c->data.seq_len, c->model.max_position);
    if (!(c->data.mask_prob > 0.0f && c->data.mask_prob < 1.0f))
        return cx_err(err, "data.mask_prob must be in (0, 1)");
    if (train_settings_check(&c->train, err) != 0) return -1;
    if (tp_settings_check(&c->tp, &c->model, &c->train, err) != 0) return -1;
    if (!c->data.train[0]) return cx_err(err, "data.train must name a token shard");
    if (!c->run.dir[0]) return cx_err(err, "run.dir must name a directory");
    return 0;
}
