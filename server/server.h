/* server.h - the daemon's state. One libuv loop thread owns all of it; the
 * worker threads touch only their work items and their own store connection,
 * the store threads (storeq.h) only their ops. */
#ifndef D2_SERVER_SERVER_H
#define D2_SERVER_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "gens.h"
#include "gens_watch.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

struct jobs;
struct events;

typedef struct server {
    uv_loop_t *loop;
    const config *cfg;
    d2log log;
    struct storeq *storeq;     /* store work, off the loop (storeq.h) */
    char db_path[CONFIG_PATH_LEN + 32];   /* --store, else DATA/d2nwgd.sqlite */
    char store_password[512];             /* --store-password-file's, or "" */
    char replica[128];                    /* HOST/PID/START_MS: jobs.owner on PostgreSQL */
    char checkpoint_dir[CONFIG_PATH_LEN + 32];
    gens gens;                 /* entries from start-up; weights as they load */
    int workers_up;            /* workers started and queued jobs restored */
    gens_watch watch;          /* loads --generator-pending ones when they appear */
    struct jobs *jobs;
    struct events *events;     /* GET /v1/events (feed.c publishes) */
    uv_timer_t progress;       /* feed.c: progress events of running jobs */
    http *http;
    metrics metrics;
    auth auth;
    int ready;                 /* workers up and the default generator loaded */
    int draining;              /* SIGTERM seen */
    int store_ok;              /* 0 after a store failure other than a lock, until a write succeeds */
    int exit_code;
    int64_t start_ms;
    double start_mono;
    uv_signal_t sig_term, sig_int;
    uv_timer_t housekeeping;   /* expires idempotency keys */
    uv_timer_t closer;         /* waits for in-flight requests after the drain */
    uv_timer_t fleet;          /* fleet.c: leases and adoption (PostgreSQL) */
    int fleet_busy;            /* its store write is in flight */
    struct store_listener *listener; /* fleet.c: other replicas' job changes */
    double close_started;
    uv_work_t load_req;        /* loads the initial generators off the loop */
    d2_error load_err;
    int load_rc;
    backend_t *load_be;        /* its results, installed on the loop */
    generator *loaded[CONFIG_MAX_GENERATORS];
} server;

/* Run the daemon until it is stopped (SIGTERM/SIGINT drain, or a fatal
 * start-up error); returns the process exit code. */
int server_run(const config *cfg);

/* Log the error, set exit code 1 and drain. */
void server_fatal(server *s, const char *what, const char *message);
/* Log one line with fields (stolen). */
void server_log(server *s, int level, const char *msg, json_t *fields);

#endif
