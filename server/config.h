/* config.h - d2nwgd settings: defaults, an optional config file
 * (`key = value` lines; `#` at the start of a line or after a blank starts a
 * comment; see deploy/d2nwgd.conf.example) and
 * command-line flags, which override the file. */
#ifndef D2_SERVER_CONFIG_H
#define D2_SERVER_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "api.h"
#include "common.h"

#define CONFIG_MAX_GENERATORS 16
#define CONFIG_PATH_LEN 1024

typedef struct config_generator {
    char name[API_NAME_LEN];
    char path[CONFIG_PATH_LEN];
    int pending; /* --generator-pending: served once its file appears and loads */
} config_generator;

typedef struct config {
    char listen[256];                /* HOST:PORT, [V6]:PORT, :PORT or PORT */
    char data_dir[CONFIG_PATH_LEN];  /* SQLite file + checkpoints/ */
    char store[CONFIG_PATH_LEN];     /* --store: "" = DATA/d2nwgd.sqlite; a file or a
                                        PostgreSQL URL / key=value string */
    char store_password_file[CONFIG_PATH_LEN]; /* PostgreSQL password, first line */
    char tokens_path[CONFIG_PATH_LEN]; /* "" = no authentication */
    char port_file[CONFIG_PATH_LEN];   /* "" = none; else the bound port is written here */
    char device[64];                 /* "cpu", "cuda", "cuda:N" */
    int workers;                     /* generation worker threads */
    int threads;                     /* backend threads per worker (0 = cores / workers) */
    int max_queue;                   /* queued jobs before 503 queue_full */
    size_t body_limit;               /* bytes */
    api_limits limits;
    double rate_limit;               /* requests/s per token (or client address); 0 = off */
    double rate_burst;               /* bucket size */
    int long_poll_max;               /* seconds */
    int shutdown_grace;              /* seconds running jobs may take to finish on SIGTERM */
    int max_connections;
    int max_connections_per_client;  /* open connections per client address */
    int connection_timeout;          /* idle seconds */
    int events_client_buffer;        /* bytes a GET /v1/events client may fall behind */
    int events_progress_ms;          /* how often running jobs' progress is checked */
    int log_level;                   /* LOG_* */
    int sqlite_sync_full;            /* 1: synchronous=FULL (power-loss durable commits) */
    int store_busy_ms;               /* a request's store write waits this long for a lock, then 503 */
    int store_lease_ms;              /* PostgreSQL: a running job's lease (renewed while it runs) */
    int ngenerators;
    config_generator generators[CONFIG_MAX_GENERATORS];
} config;

void config_defaults(config *c);
/* Apply one setting (file key or flag name without dashes, '-' or '_'). */
int config_set(config *c, const char *key, const char *value, d2_error *err);
int config_load_file(config *c, const char *path, d2_error *err);
/* Parse argv: --config FILE is read first wherever it appears, then the other
 * flags in order. Generators given on the command line replace the file's.
 * *help is set for --help / --version (the caller prints and exits 0). */
int config_parse_args(config *c, int argc, char **argv, int *help, d2_error *err);
/* Final checks (at least one generator, names unique, ranges). */
int config_validate(const config *c, d2_error *err);
void config_usage(FILE *out);
/* --store / --store-password-file (config_store.c): a PostgreSQL target may
 * not carry a password, the password file only goes with PostgreSQL. */
int config_check_store(const config *c, d2_error *err);
/* The store to open (--store, else DATA/d2nwgd.sqlite) and its password
 * (the password file's first line; "" without one). */
int config_store_target(const config *c, char *target, size_t tcap, char *password,
                        size_t pcap, d2_error *err);
/* Backend threads for each worker: --threads, else cores / workers (>= 1). */
int config_backend_threads(const config *c);

/* Split "HOST:PORT" (also "[::1]:PORT", ":PORT", "PORT"); host "" = any. */
int config_parse_listen(const char *s, char *host, size_t host_len, int *port, d2_error *err);

#endif
