// recipe.c: the recipe table and what every recipe shares (see recipe.h).
#include "io/tasks/recipe.h"

#include "io/tasks/mlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"

extern const Recipe recipe_albert, recipe_encdec, recipe_swav;

// Searched in order by recipe_for_config: ALBERT's configuration has no section of its
// own, so it comes last and takes what no other recipe claims.
static const Recipe *const RECIPES[] = {&recipe_encdec, &recipe_swav, &recipe_albert};
enum { N_RECIPES = sizeof RECIPES / sizeof RECIPES[0] };

const Recipe *recipe_find(const char *name) {
    for (int i = 0; i < N_RECIPES; i++)
        if (!strcmp(RECIPES[i]->name, name)) return RECIPES[i];
    return NULL;
}

const Recipe *recipe_for_config(const char *text) {
    for (int i = 0; i < N_RECIPES; i++)
        if (RECIPES[i]->config_is(text)) return RECIPES[i];
    return &recipe_albert;
}

void recipe_config_init(Replica *r, const Recipe *recipe) {
    memset(r, 0, sizeof *r);
    r->recipe = recipe;
    r->cfg = cx_calloc(1, recipe->cfg_size);
    recipe->config_defaults(r);
}

int recipe_config_load_file(Replica *r, const char *path, char *err) {
    return cfg_load_file(r->recipe->schema, r->cfg, path, err);
}

int recipe_config_load_string(Replica *r, const char *text, const char *where, char *err) {
    return cfg_load_string(r->recipe->schema, r->cfg, text, where, err);
}

int recipe_config_load_checkpoint(Replica *r, const char *text, const char *path, char *err) {
    if (cfg_load_string_no_paths(r->recipe->schema, r->cfg, text, path, err) != 0) return -1;
    const char *slash = strrchr(path, '/');
    char set[CFG_PATH_LEN + 16];
    int n = slash ? snprintf(set, sizeof set, "run.dir=%.*s", (int)(slash - path), path)
                  : snprintf(set, sizeof set, "run.dir=.");
    if (slash == path) snprintf(set, sizeof set, "run.dir=/");
    if (n < 0 || (size_t)n >= sizeof set) return cx_err(err, "%s: the checkpoint's directory is too long a path", path);
    return cfg_set(r->recipe->schema, r->cfg, set, err);
}

int recipe_config_set(Replica *r, const char *assignment, char *err) {
    return cfg_set(r->recipe->schema, r->cfg, assignment, err);
}

char *recipe_config_text(const Replica *r) {
    size_t len = cfg_to_ini(r->recipe->schema, r->cfg, NULL, 0);
    char *text = cx_calloc(len + 1, 1);
    cfg_to_ini(r->recipe->schema, r->cfg, text, len + 1);
    return text;
}

int recipe_config_from_text(Replica *r, const char *text, const char *where,
                            const char *const *sets, int n_sets,
                            int (*allow)(const char *set, char *err), char *err) {
    if (recipe_config_load_string(r, text, where, err) != 0) return -1;
    for (int i = 0; i < n_sets; i++) {
        if (allow && allow(sets[i], err) != 0) return -1;
        if (recipe_config_set(r, sets[i], err) != 0) return -1;
    }
    return r->recipe->config_check(r->cfg, err);
}

int recipe_build(Replica *r, ReplicaKind kind, char *err) {
    if (r->recipe->build(r, kind, err) != 0) {
        r->recipe->free(r);
        return -1;
    }
    return 0;
}

void recipe_free(Replica *r) {
    if (!r->recipe) return;
    r->recipe->free(r);
    free(r->cfg);
    memset(r, 0, sizeof *r);
}

void recipe_wire_averager(Replica *r, const Averager *a) {
    r->tr.avg = *a;
    if (r->albert_engine) r->albert_engine->set_hooks(r->model, a->ready, a->progress, a->ctx);
    else r->recipe->set_hooks(r->model, a->ready, a->progress, a->ctx);
}
