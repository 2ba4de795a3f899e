/* feed.c - the daemon's events: job state and progress, generators. */
#include "feed.h"

#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "jobs.h"
#include "storeq.h"

/* The job as stored, read on the store thread, published on the loop (in
 * the order the changes came: one read lane). A worker writes its own rows,
 * so the read may already see a later state than the change being told: the
 * state published is the one the queue had at the change. */
typedef struct feed_op {
    storeq_op sq;
    server *s;
    char id[API_ID_LEN];
    api_job job;
    int loaded;
    int active;          /* the queue held the job at the change */
    api_job_state state; /* its state then */
} feed_op;

/* The event of a change to `state` when the stored row has moved on. */
static void as_at_change(api_job *job, api_job_state state)
{
    if (job->state == state)
        return;
    job->state = state;
    job->finished_ms = 0;
    if (state == API_JOB_QUEUED) {
        job->started_ms = 0;
        job->progress = 0.0;
    }
}

static int feed_work(store *db, void *ctx, d2_error *err)
{
    feed_op *c = ctx;
    int rc = store_job_get(db, c->id, &c->job, 0, err);
    c->loaded = rc == 0;
    return rc;
}

static void feed_done(storeq_op *sq)
{
    feed_op *c = (feed_op *)sq;
    server *s = c->s;
    if (sq->rc != 0 && sq->rc != D2_ECANCELLED)
        server_log(s, LOG_WARN, "job event not sent: store read failed",
                   json_pack("{s:s, s:s}", "job_id", c->id, "error", sq->err.msg));
    if (c->loaded && s->events) {
        if (c->active)
            as_at_change(&c->job, c->state);
        if (s->jobs)
            jobs_overlay(s->jobs, &c->job);
        events_publish(s->events, "job", api_job_to_json(&c->job));
    }
    if (c->loaded)
        api_job_free(&c->job);
    free(c);
}

void feed_job_changed(void *user, const char *job_id)
{
    server *s = user;
    if (!s->events || !s->storeq)
        return;
    feed_op *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    api_snprintf(c->id, sizeof c->id, "%s", job_id);
    c->active = s->jobs && jobs_state_of(s->jobs, job_id, &c->state);
    storeq_submit(s->storeq, &c->sq, STOREQ_READ, feed_work, feed_done, c);
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
    uint64_t every = (uint64_t)s->cfg->events_progress_ms;
    uv_timer_start(&s->progress, on_progress, every, every);
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
