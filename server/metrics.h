/* metrics.h - counters and histograms of d2nwgd, rendered as Prometheus text
 * (exposition format 0.0.4). Owned by the loop thread; no locks. */
#ifndef D2_SERVER_METRICS_H
#define D2_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"

#define METRICS_MAX_BUCKETS 16
#define METRICS_MAX_ROUTES 32
#define METRICS_MAX_CODES 24
#define METRICS_MAX_WORKERS 64

typedef struct histogram {
    int nb;
    double bounds[METRICS_MAX_BUCKETS]; /* upper bounds, ascending; +Inf implied */
    uint64_t counts[METRICS_MAX_BUCKETS + 1];
    double sum;
    uint64_t count;
} histogram;

void histogram_init(histogram *h, const double *bounds, int nb);
void histogram_observe(histogram *h, double v);

typedef struct metrics {
    int nroutes;                       /* route templates; index nroutes = "unmatched" */
    const char *routes[METRICS_MAX_ROUTES + 1];
    int codes[METRICS_MAX_ROUTES + 1][METRICS_MAX_CODES];
    uint64_t requests[METRICS_MAX_ROUTES + 1][METRICS_MAX_CODES];
    /* request durations by route template; long-polls (held on purpose, up to
     * a minute) have their own histogram so they do not swamp these buckets */
    histogram http_duration[METRICS_MAX_ROUTES + 1];
    histogram long_poll, queue_wait, generation;
    uint64_t jobs_submitted;
    uint64_t jobs_finished[API_JOB_STATE_COUNT];
    uint64_t rate_limited;
} metrics;

/* The process_* families every Prometheus client exports, read from /proc. */
typedef struct metrics_process {
    int ok; /* 0: /proc/self could not be read; the families are left out */
    double start_time, cpu_seconds;
    double resident_bytes, virtual_bytes;
    double open_fds, max_fds;
} metrics_process;

/* Fill p from /proc/self (Linux). Returns 0, or -1 (p->ok = 0) when unreadable. */
int metrics_process_read(metrics_process *p);

/* Gauges the caller collects at scrape time. */
typedef struct metrics_snapshot {
    int64_t jobs_by_state[API_JOB_STATE_COUNT];
    int pending, running, long_polls, generators, ready;
    int store_available;           /* storeq_available: 0 while a lock refuses store work */
    int events_clients;            /* GET /v1/events streams open */
    uint64_t events_dropped;       /* event clients dropped for falling behind */
    double uptime;
    int workers;
    const char *device;
    size_t mem_used[METRICS_MAX_WORKERS];
    size_t mem_total[METRICS_MAX_WORKERS]; /* 0 = unknown: that series is left out */
    metrics_process process;
} metrics_snapshot;

/* route_names: the route table's templates (at most METRICS_MAX_ROUTES). */
void metrics_init(metrics *m, const char *const *route_names, int nroutes);
/* route: index into route_names, or -1 for unmatched; long_poll: the request
 * was a long-poll (GET /v1/jobs/{id}?wait=N, N > 0): its duration goes to
 * http_long_poll_duration_seconds instead of http_request_duration_seconds;
 * METRICS_STREAM (an event stream, open for hours): counted, no duration. */
#define METRICS_STREAM 2
void metrics_http(metrics *m, int route, int code, double seconds, int long_poll);
/* Render to a malloc'd NUL-terminated buffer. */
int metrics_render(const metrics *m, const metrics_snapshot *s, char **out, size_t *len);

#endif
