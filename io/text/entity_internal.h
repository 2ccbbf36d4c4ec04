// entity_internal.h: the table behind entity_lookup (io/text/entity.h), for tests.
#ifndef CONFLUX_IO_ENTITY_INTERNAL_H
#define CONFLUX_IO_ENTITY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct EntityDef {
    const char *name;  // without '&' and ';'
    uint32_t cp;
    unsigned char sets;  // ENTITY_CORPUS | ENTITY_NEWS
} EntityDef;

// The named entities, sorted by name in strcmp order (entity_lookup searches it by
// bisection); entity_n_defs entries.
extern const EntityDef entity_defs[];
extern const size_t entity_n_defs;

#endif
