/* gens.h - the generators this daemon serves. Every configured generator has
 * an entry from start-up on (name, path, state); its weights are loaded off
 * the loop thread and handed over on it (gen_entry.g set once, then
 * read-only), so the loop may read entries and validate requests while
 * workers generate. A generator given with --generator-pending is loaded when
 * its file appears (server/gens_watch.c) and the daemon serves the others
 * meanwhile. */
#ifndef D2_SERVER_GENS_H
#define D2_SERVER_GENS_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "generator.h"

enum { GEN_LOADING = 0, GEN_READY = 1, GEN_FAILED = 2 };

typedef struct gen_entry {
    char name[API_NAME_LEN];
    char path[CONFIG_PATH_LEN];
    int pending;                   /* --generator-pending: loaded when its file appears */
    int state;                     /* GEN_* */
    char message[API_MESSAGE_LEN]; /* LOADING: what it waits for; FAILED: why */
    generator *g;                  /* set once READY */
    const gen_info *info;          /* set once READY */
    int64_t loaded_ms;
} gen_entry;

typedef struct gens {
    int n;       /* configured generators, fixed after gens_init */
    gen_entry e[CONFIG_MAX_GENERATORS];
    backend_t *be; /* the backend their weights live on */
} gens;

/* Entries for every generator of cfg, all LOADING (loop thread, at start). */
void gens_init(gens *gs, const config *cfg);
/* Off the loop: create the backend and load every generator given without
 * --generator-pending into loaded[] (NULL for pending ones). On failure
 * nothing is left allocated. */
int gens_load_initial(const gens *gs, const config *cfg, backend_t **be,
                      generator *loaded[CONFIG_MAX_GENERATORS], d2_error *err);
/* On the loop: entry i is READY with g (owned by gs from now on). */
void gens_install(gens *gs, int i, generator *g);
/* On the loop: entry i is FAILED (or LOADING again) with this message. */
void gens_set_state(gens *gs, int i, int state, const char *message);
void gens_free(gens *gs);
/* Index of the generator with this name (any state) or id (ready), or -1. */
int gens_find(const gens *gs, const char *name_or_id);
/* Index by id only (ready generators), or -1. */
int gens_find_id(const gens *gs, const char *id);
/* The generator /readyz waits for: the one named "default", else the first. */
int gens_default(const gens *gs);
int gens_ready_count(const gens *gs);
/* 0 when entry i can serve; else writes why not ("generator 'x' is still
 * loading: ...") and returns the seconds a client should wait to retry. */
int gens_unusable(const gens *gs, int i, char *msg, size_t cap);

#endif
