/* feed.c - the daemon's events: job state and progress, generators. */
#include "feed.h"

#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "jobs.h"

void feed_job_changed(void *user, const char *job_id)
{
    server *s = user;
    if (!s->events)
        return;
    api_job job;
    d2_error err;
    d2_error_clear(&err);
    if (store_job_get(s->db, job_id, &job, 0, &err) != 0) {
        server_log(s, LOG_WARN, "job event not sent: store read failed",
                   json_pack("{s:s, s:s}", "job_id", job_id, "error", err.msg));
        return;
    }
    if (s->jobs)
        jobs_overlay(s->jobs, &job);
    events_publish(s->events, "job", api_job_to_json(&job));
    api_job_free(&job);
}

static void publish_progress(void *ctx, const char *job_id, double progress)
{
    server *s = ctx;
    events_publish(s->events, "progress", api_event_progress_to_json(job_id, progress));
}

static void on_progress(uv_timer_t *t)
{
    server *s = t->data;
    if (s->jobs && s->events && jobs_running(s->jobs) > 0)
        jobs_progress_scan(s->jobs, FEED_PROGRESS_STEP, publish_progress, s);
}

void feed_generator_loaded(server *s, int index)
{
    const gen_entry *e = &s->gens.e[index];
    if (s->events)
        events_publish(s->events, "generator",
                       api_event_generator_to_json(e->name, e->info->id, "loaded"));
}

int feed_start(server *s, d2_error *err)
{
    events_options o = {EVENTS_RING, (size_t)s->cfg->events_client_buffer, EVENTS_HEARTBEAT_MS,
                        api_now_ms() * 1000};
    if (events_create(&s->events, s->loop, &o, err) != 0)
        return err->code;
    s->progress.data = s;
    uv_timer_start(&s->progress, on_progress, FEED_PROGRESS_MS, FEED_PROGRESS_MS);
    return 0;
}

void feed_close(server *s)
{
    uv_timer_stop(&s->progress);
    if (s->events)
        events_close(s->events);
}

static void timer_closed(uv_handle_t *h)
{
    (void)h;
}

void feed_destroy(server *s)
{
    events_destroy(s->events);
    s->events = NULL;
    uv_close((uv_handle_t *)&s->progress, timer_closed);
}
