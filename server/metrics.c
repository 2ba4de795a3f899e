/* metrics.c - Prometheus text exposition. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "strbuf.h"

void histogram_init(histogram *h, const double *bounds, int nb)
{
    memset(h, 0, sizeof *h);
    h->nb = nb < METRICS_MAX_BUCKETS ? nb : METRICS_MAX_BUCKETS;
    memcpy(h->bounds, bounds, (size_t)h->nb * sizeof *bounds);
}

void histogram_observe(histogram *h, double v)
{
    int i = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void metrics_init(metrics *m, const char *const *route_names, int nroutes)
{
    static const double http_b[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                    0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};
    static const double queue_b[] = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25, 0.5,
                                     1.0,   2.5,  5.0,   10.0, 30.0, 60.0, 300.0};
    static const double gen_b[] = {0.01, 0.025, 0.05, 0.1,  0.25, 0.5,   1.0,
                                   2.5,  5.0,   10.0, 30.0, 60.0, 120.0, 300.0};
    /* a long-poll waits up to --long-poll-max (default 60 s, any value allowed) */
    static const double poll_b[] = {0.01, 0.1,  0.5,  1.0,  2.5,   5.0,  10.0,
                                    20.0, 30.0, 45.0, 60.0, 120.0, 300.0};
    memset(m, 0, sizeof *m);
    m->nroutes = nroutes < METRICS_MAX_ROUTES ? nroutes : METRICS_MAX_ROUTES;
    for (int i = 0; i < m->nroutes; i++)
        m->routes[i] = route_names[i];
    m->routes[m->nroutes] = "unmatched";
    for (int i = 0; i <= m->nroutes; i++)
        histogram_init(&m->http_duration[i], http_b, (int)(sizeof http_b / sizeof http_b[0]));
    histogram_init(&m->long_poll, poll_b, (int)(sizeof poll_b / sizeof poll_b[0]));
    histogram_init(&m->queue_wait, queue_b, (int)(sizeof queue_b / sizeof queue_b[0]));
    histogram_init(&m->generation, gen_b, (int)(sizeof gen_b / sizeof gen_b[0]));
}

void metrics_http(metrics *m, int route, int code, double seconds, int long_poll)
{
    int r = (route >= 0 && route < m->nroutes) ? route : m->nroutes;
    if (long_poll != METRICS_STREAM)
        histogram_observe(long_poll ? &m->long_poll : &m->http_duration[r], seconds);
    for (int i = 0; i < METRICS_MAX_CODES; i++) {
        if (m->codes[r][i] == code) {
            m->requests[r][i]++;
            return;
        }
        if (m->codes[r][i] == 0) {
            m->codes[r][i] = code;
            m->requests[r][i] = 1;
            return;
        }
    }
    /* more distinct codes than slots on one route: count under the last slot's code */
    m->requests[r][METRICS_MAX_CODES - 1]++;
}

/* The series of one histogram; labels: "" or `name="value",` (with the comma). */
static void hist_series(strbuf *b, const char *name, const char *labels, const histogram *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < h->nb; i++) {
        cum += h->counts[i];
        strbuf_printf(b, "d2nwgd_%s_bucket{%sle=\"%g\"} %llu\n", name, labels, h->bounds[i],
                      (unsigned long long)cum);
    }
    cum += h->counts[h->nb];
    strbuf_printf(b, "d2nwgd_%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
                  (unsigned long long)cum);
    size_t ll = strlen(labels);
    int keep = ll > 0 ? (int)ll - 1 : 0; /* the labels without their trailing comma */
    const char *open = ll ? "{" : "", *close = ll ? "}" : "";
    strbuf_printf(b, "d2nwgd_%s_sum%s%.*s%s %.9g\nd2nwgd_%s_count%s%.*s%s %llu\n", name, open,
                  keep, labels, close, h->sum, name, open, keep, labels, close,
                  (unsigned long long)h->count);
}

static void render_hist(strbuf *b, const char *name, const char *help, const histogram *h)
{
    strbuf_printf(b, "# HELP d2nwgd_%s %s\n# TYPE d2nwgd_%s histogram\n", name, help, name);
    hist_series(b, name, "", h);
}

/* Request durations, one histogram per route template that has seen requests. */
static void render_http_durations(strbuf *b, const metrics *m)
{
    const char *name = "http_request_duration_seconds";
    strbuf_printf(b, "# HELP d2nwgd_%s Seconds from request to response, by route template "
                  "(long-polls excluded).\n# TYPE d2nwgd_%s histogram\n", name, name);
    for (int r = 0; r <= m->nroutes; r++) {
        if (m->http_duration[r].count == 0)
            continue;
        char labels[160];
        snprintf(labels, sizeof labels, "route=\"%s\",", m->routes[r]);
        hist_series(b, name, labels, &m->http_duration[r]);
    }
}

static void render_process(strbuf *b, const metrics_process *p)
{
    if (!p->ok)
        return;
    strbuf_printf(b,
                  "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                  "seconds.\n# TYPE process_cpu_seconds_total counter\n"
                  "process_cpu_seconds_total %.15g\n"
                  "# HELP process_start_time_seconds Start time of the process since unix epoch "
                  "in seconds.\n# TYPE process_start_time_seconds gauge\n"
                  "process_start_time_seconds %.15g\n"
                  "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                  "# TYPE process_resident_memory_bytes gauge\n"
                  "process_resident_memory_bytes %.15g\n"
                  "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                  "# TYPE process_virtual_memory_bytes gauge\n"
                  "process_virtual_memory_bytes %.15g\n"
                  "# HELP process_open_fds Number of open file descriptors.\n"
                  "# TYPE process_open_fds gauge\nprocess_open_fds %.15g\n"
                  "# HELP process_max_fds Maximum number of open file descriptors.\n"
                  "# TYPE process_max_fds gauge\nprocess_max_fds %.15g\n",
                  p->cpu_seconds, p->start_time, p->resident_bytes, p->virtual_bytes,
                  p->open_fds, p->max_fds);
}

/* Device memory per worker; a total of 0 (the backend cannot say) is left out. */
static void render_device_memory(strbuf *b, const metrics_snapshot *s)
{
    int n = s->workers < METRICS_MAX_WORKERS ? s->workers : METRICS_MAX_WORKERS;
    strbuf_printf(b, "# HELP d2nwgd_device_memory_used_bytes Backend memory in use per worker.\n"
                  "# TYPE d2nwgd_device_memory_used_bytes gauge\n");
    for (int w = 0; w < n; w++)
        strbuf_printf(b, "d2nwgd_device_memory_used_bytes{worker=\"%d\",device=\"%s\"} %zu\n", w,
                      s->device, s->mem_used[w]);
    int known = 0;
    for (int w = 0; w < n; w++)
        known += s->mem_total[w] > 0;
    if (!known)
        return;
    strbuf_printf(b, "# HELP d2nwgd_device_memory_total_bytes Backend memory available per "
                  "worker (absent when the backend cannot say).\n"
                  "# TYPE d2nwgd_device_memory_total_bytes gauge\n");
    for (int w = 0; w < n; w++)
        if (s->mem_total[w] > 0)
            strbuf_printf(b, "d2nwgd_device_memory_total_bytes{worker=\"%d\",device=\"%s\"} %zu\n",
                          w, s->device, s->mem_total[w]);
}

static void gauge(strbuf *b, const char *name, const char *help, double v)
{
    strbuf_printf(b, "# HELP d2nwgd_%s %s\n# TYPE d2nwgd_%s gauge\nd2nwgd_%s %.9g\n", name, help,
              name, name, v);
}

int metrics_render(const metrics *m, const metrics_snapshot *s, char **out, size_t *len)
{
    strbuf b = {0};
    strbuf_printf(&b, "# HELP d2nwgd_build_info Build version.\n# TYPE d2nwgd_build_info gauge\n"
                  "d2nwgd_build_info{version=\"%s\"} 1\n",
              D2_VERSION);
    gauge(&b, "uptime_seconds", "Seconds since start.", s->uptime);
    gauge(&b, "ready", "1 when generators are loaded and jobs are accepted.", s->ready);
    gauge(&b, "generators_loaded", "Generators resident.", s->generators);
    gauge(&b, "store_available",
          "0 while another process holds a lock on the store (writes answer 503), else 1.",
          s->store_available);
    strbuf_printf(&b, "# HELP d2nwgd_jobs Jobs in the store by state.\n# TYPE d2nwgd_jobs gauge\n");
    for (int i = 0; i < API_JOB_STATE_COUNT; i++)
        strbuf_printf(&b, "d2nwgd_jobs{state=\"%s\"} %lld\n", api_job_state_name((api_job_state)i),
                  (long long)s->jobs_by_state[i]);
    gauge(&b, "jobs_pending", "Jobs waiting for a worker.", s->pending);
    gauge(&b, "jobs_running", "Jobs on a worker.", s->running);
    strbuf_printf(&b, "# HELP d2nwgd_jobs_submitted_total Jobs accepted since start.\n"
                  "# TYPE d2nwgd_jobs_submitted_total counter\n"
                  "d2nwgd_jobs_submitted_total %llu\n",
              (unsigned long long)m->jobs_submitted);
    strbuf_printf(&b, "# HELP d2nwgd_jobs_finished_total Jobs that ended since start, by state.\n"
                  "# TYPE d2nwgd_jobs_finished_total counter\n");
    for (int i = API_JOB_SUCCEEDED; i < API_JOB_STATE_COUNT; i++)
        strbuf_printf(&b, "d2nwgd_jobs_finished_total{state=\"%s\"} %llu\n",
                  api_job_state_name((api_job_state)i), (unsigned long long)m->jobs_finished[i]);
    render_hist(&b, "job_queue_wait_seconds", "Seconds from submission to start on a worker.",
                &m->queue_wait);
    render_hist(&b, "job_generation_seconds", "Seconds a worker spent on a job.",
                &m->generation);
    strbuf_printf(&b, "# HELP d2nwgd_http_requests_total HTTP requests by route template and "
                  "status.\n# TYPE d2nwgd_http_requests_total counter\n");
    for (int r = 0; r <= m->nroutes; r++)
        for (int i = 0; i < METRICS_MAX_CODES && m->codes[r][i]; i++)
            strbuf_printf(&b, "d2nwgd_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                      m->routes[r], m->codes[r][i], (unsigned long long)m->requests[r][i]);
    render_http_durations(&b, m);
    render_hist(&b, "http_long_poll_duration_seconds",
                "Seconds a long-poll (GET /v1/jobs/{id}?wait=N) was held.", &m->long_poll);
    gauge(&b, "http_long_polls", "Suspended long-poll requests.", s->long_polls);
    gauge(&b, "events_clients", "Clients connected to GET /v1/events.", s->events_clients);
    strbuf_printf(&b, "# HELP d2nwgd_events_dropped_total Event clients dropped for falling "
                  "behind.\n# TYPE d2nwgd_events_dropped_total counter\n"
                  "d2nwgd_events_dropped_total %llu\n",
                  (unsigned long long)s->events_dropped);
    strbuf_printf(&b, "# HELP d2nwgd_rate_limited_total Requests refused with 429.\n"
                  "# TYPE d2nwgd_rate_limited_total counter\nd2nwgd_rate_limited_total %llu\n",
              (unsigned long long)m->rate_limited);
    render_device_memory(&b, s);
    render_process(&b, &s->process);
    if (b.oom || !b.p) {
        strbuf_free(&b);
        return D2_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
