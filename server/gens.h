/* gens.h - the generators this daemon serves: loaded once (weights resident
 * on one backend) and read-only afterwards, so the loop thread may read
 * their info and validate requests while workers generate. */
#ifndef D2_SERVER_GENS_H
#define D2_SERVER_GENS_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "generator.h"

typedef struct gen_entry {
    char name[API_NAME_LEN];
    char path[CONFIG_PATH_LEN];
    generator *g;
    const gen_info *info;
    int64_t loaded_ms;
} gen_entry;

typedef struct gens {
    int n;
    gen_entry e[CONFIG_MAX_GENERATORS];
    backend_t *be; /* the backend their weights live on */
} gens;

/* Load every generator of cfg (blocking: run it off the loop thread). On
 * failure everything loaded so far is freed. */
int gens_load(gens *gs, const config *cfg, d2_error *err);
void gens_free(gens *gs);
/* Index of the generator with this name or id, or -1. */
int gens_find(const gens *gs, const char *name_or_id);
/* Index by id only, or -1. */
int gens_find_id(const gens *gs, const char *id);

#endif
