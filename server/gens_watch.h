/* gens_watch.h - generators given with --generator-pending: a libuv timer
 * checks their files every second; a file seen unchanged (size, mtime) on two
 * checks in a row is loaded on libuv's pool (one at a time, never on the
 * loop), then handed over on the loop (gens_install) and reported to the
 * owner. A file that does not load leaves the entry FAILED with the loader's
 * message until the file changes; a failed file that disappears is waited for
 * again. Like jobs.c, it reports upwards through an owner table and does not
 * call server.c. */
#ifndef D2_SERVER_GENS_WATCH_H
#define D2_SERVER_GENS_WATCH_H

#include <stdint.h>
#include <uv.h>

#include "common.h"
#include "gens.h"

enum { GENS_WATCH_LOADING = 0, GENS_WATCH_JOINED = 1, GENS_WATCH_FAILED = 2 };

typedef struct gens_watch_owner {
    /* on the loop: entry i started loading, joined (installed), or failed
     * (message: the loader's error) */
    void (*event)(void *user, int kind, int i, const char *message);
    void *user;
} gens_watch_owner;

typedef struct gens_watch_seen {
    int64_t size, mtime_ns; /* -1: no file */
    int tried;              /* this version was loaded (and failed) already */
} gens_watch_seen;

typedef struct gens_watch {
    gens *gs;
    uv_loop_t *loop;
    gens_watch_owner owner;
    uv_timer_t timer;
    uv_work_t req;
    int busy;      /* a load is in flight */
    int closed;    /* gens_watch_close was called: a load that ends is dropped */
    int index;     /* the entry being loaded */
    generator *g;  /* its result */
    d2_error err;
    int rc;
    gens_watch_seen seen[CONFIG_MAX_GENERATORS];
} gens_watch;

/* Init the timer handle (closed by gens_watch_close). */
void gens_watch_init(gens_watch *w, uv_loop_t *loop, gens *gs, const gens_watch_owner *owner);
/* Start checking (after the workers have read the entries at their start). */
void gens_watch_start(gens_watch *w);
/* Stop checking and close the timer (once; later calls do nothing); a load
 * in flight finishes and is freed. */
void gens_watch_close(gens_watch *w, uv_close_cb cb);

#endif
