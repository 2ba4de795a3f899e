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
    memset(m, 0, sizeof *m);
    m->nroutes = nroutes < METRICS_MAX_ROUTES ? nroutes : METRICS_MAX_ROUTES;
    for (int i = 0; i < m->nroutes; i++)
        m->routes[i] = route_names[i];
    m->routes[m->nroutes] = "unmatched";
    histogram_init(&m->http_duration, http_b, (int)(sizeof http_b / sizeof http_b[0]));
    histogram_init(&m->queue_wait, queue_b, (int)(sizeof queue_b / sizeof queue_b[0]));
    histogram_init(&m->generation, gen_b, (int)(sizeof gen_b / sizeof gen_b[0]));
}

void metrics_http(metrics *m, int route, int code, double seconds)
{
    int r = (route >= 0 && route < m->nroutes) ? route : m->nroutes;
    histogram_observe(&m->http_duration, seconds);
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

static void render_hist(strbuf *b, const char *name, const char *help, const histogram *h)
{
    strbuf_printf(b, "# HELP d2nwgd_%s %s\n# TYPE d2nwgd_%s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->nb; i++) {
        cum += h->counts[i];
        strbuf_printf(b, "d2nwgd_%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                  (unsigned long long)cum);
    }
    cum += h->counts[h->nb];
    strbuf_printf(b, "d2nwgd_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    strbuf_printf(b, "d2nwgd_%s_sum %.9g\nd2nwgd_%s_count %llu\n", name, h->sum, name,
              (unsigned long long)h->count);
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
    render_hist(&b, "http_request_duration_seconds", "Seconds from request to response.",
                &m->http_duration);
    gauge(&b, "http_long_polls", "Suspended long-poll requests.", s->long_polls);
    strbuf_printf(&b, "# HELP d2nwgd_rate_limited_total Requests refused with 429.\n"
                  "# TYPE d2nwgd_rate_limited_total counter\nd2nwgd_rate_limited_total %llu\n",
              (unsigned long long)m->rate_limited);
    strbuf_printf(&b, "# HELP d2nwgd_device_memory_used_bytes Backend memory in use per worker.\n"
                  "# TYPE d2nwgd_device_memory_used_bytes gauge\n");
    for (int w = 0; w < s->workers && w < METRICS_MAX_WORKERS; w++)
        strbuf_printf(&b, "d2nwgd_device_memory_used_bytes{worker=\"%d\",device=\"%s\"} %zu\n", w,
                  s->device, s->mem_used[w]);
    strbuf_printf(&b, "# HELP d2nwgd_device_memory_total_bytes Backend memory available per worker "
                  "(0 = unknown).\n# TYPE d2nwgd_device_memory_total_bytes gauge\n");
    for (int w = 0; w < s->workers && w < METRICS_MAX_WORKERS; w++)
        strbuf_printf(&b, "d2nwgd_device_memory_total_bytes{worker=\"%d\",device=\"%s\"} %zu\n", w,
                  s->device, s->mem_total[w]);
    if (b.oom || !b.p) {
        strbuf_free(&b);
        return D2_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
