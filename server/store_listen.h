/* store_listen.h - hearing the other replicas (PostgreSQL): one connection
 * per replica LISTENs on d2nwg_jobs (migration 0003's trigger announces
 * every new job and every state change) on its own thread, polling its
 * socket; each announcement made by another replica is handed to the loop
 * thread (uv_async) as fn(ctx, job_id, state). A lost connection is opened
 * again every second. No libpq call runs on the loop. */
#ifndef D2_SERVER_STORE_LISTEN_H
#define D2_SERVER_STORE_LISTEN_H

#include <uv.h>

#include "store.h"

typedef struct store_listener store_listener;
typedef void (*store_listen_fn)(void *ctx, const char *job_id, const char *state);

/* *out NULL and 0 for SQLite (one node: nothing to hear). conf->owner names
 * this replica (its own announcements are skipped). */
int store_listen_start(store_listener **out, uv_loop_t *loop, const store_conf *conf,
                       store_listen_fn fn, void *ctx, d2_error *err);
/* Join the thread, close the connection; the handle is freed once closed. */
void store_listen_stop(store_listener *l);

#endif
