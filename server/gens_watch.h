/* gens_watch.h - generators given with --generator-pending: a libuv timer
 * checks their files every second; a file seen unchanged (size, mtime) on two
 * checks in a row is loaded on libuv's pool (one at a time, never on the
 * loop), then handed over on the loop (gens_install + server_generator_ready).
 * A file that does not load leaves the entry FAILED with the loader's message
 * until the file changes; a failed file that disappears is waited for again. */
#ifndef D2_SERVER_GENS_WATCH_H
#define D2_SERVER_GENS_WATCH_H

#include <stdint.h>
#include <uv.h>

#include "common.h"
#include "config.h"
#include "generator.h"

struct server;

typedef struct gens_watch_seen {
    int64_t size, mtime_ns; /* -1: no file */
    int tried;              /* this version was loaded (and failed) already */
} gens_watch_seen;

typedef struct gens_watch {
    struct server *s;
    uv_timer_t timer;
    uv_work_t req;
    int busy;      /* a load is in flight */
    int index;     /* its entry */
    generator *g;  /* its result */
    d2_error err;
    int rc;
    int started;
    gens_watch_seen seen[CONFIG_MAX_GENERATORS];
} gens_watch;

/* Init the timer handle (closed by gens_watch_close). */
void gens_watch_init(gens_watch *w, uv_loop_t *loop, struct server *s);
/* Start checking (after the initial generators are installed). */
void gens_watch_start(gens_watch *w);
/* Stop checking and close the timer; a load in flight finishes and is freed. */
void gens_watch_close(gens_watch *w, uv_close_cb cb);

#endif
