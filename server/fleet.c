/* fleet.c - lease renewal, expired-lease recovery and adoption of the other
 * replicas' queued jobs (fleet.h). */
#include "fleet.h"

#include <stdlib.h>

#include "jobs.h"
#include "store_listen.h"
#include "storeq.h"

typedef struct tick_op {
    storeq_op sq;
    server *s;
    int renewed, requeued;
} tick_op;

static int tick_work(store *db, void *ctx, d2_error *err)
{
    tick_op *t = ctx;
    if (store_jobs_renew(db, &t->renewed, err) != 0)
        return err->code ? err->code : D2_EIO;
    return store_jobs_requeue_expired(db, &t->requeued, err);
}

static void tick_done(storeq_op *sq)
{
    tick_op *t = (tick_op *)sq;
    server *s = t->s;
    s->fleet_busy = 0;
    if (sq->rc != 0 && sq->rc != D2_ECANCELLED)
        server_log(s, sq->busy ? LOG_DEBUG : LOG_WARN, "lease renewal failed",
                   json_pack("{s:s}", "error", sq->err.msg));
    if (sq->rc == 0 && t->requeued > 0)
        server_log(s, LOG_WARN, "jobs of a lost replica queued again",
                   json_pack("{s:i}", "count", t->requeued));
    free(t);
    if (s->draining || !s->jobs)
        return;
    d2_error err;
    d2_error_clear(&err);
    if (jobs_adopt(s->jobs, &err) != 0)
        server_log(s, LOG_WARN, "adopting queued jobs failed", json_pack("{s:s}", "error", err.msg));
}

static void on_tick(uv_timer_t *timer)
{
    server *s = timer->data;
    if (s->draining || s->fleet_busy || !s->storeq)
        return;
    tick_op *t = calloc(1, sizeof *t);
    if (!t)
        return; /* the next tick tries again */
    t->s = s;
    s->fleet_busy = 1;
    storeq_submit(s->storeq, &t->sq, STOREQ_WRITE, tick_work, tick_done, t);
}

static void on_heard(void *ctx, const char *job_id, const char *state)
{
    server *s = ctx;
    if (s->jobs && !s->draining)
        jobs_heard(s->jobs, job_id, state);
}

void fleet_start(server *s)
{
    if (!store_is_postgres(s->db_path) || uv_is_active((uv_handle_t *)&s->fleet))
        return;
    store_conf conf = {s->db_path, s->store_password[0] ? s->store_password : NULL, 0,
                       s->replica, s->cfg->store_lease_ms};
    d2_error err;
    d2_error_clear(&err);
    if (store_listen_start(&s->listener, s->loop, &conf, on_heard, s, &err) != 0)
        server_log(s, LOG_WARN, "not listening to the other replicas (their changes reach "
                                "this one at the next tick)",
                   json_pack("{s:s}", "error", err.msg));
    uint64_t ms = (uint64_t)s->cfg->store_lease_ms / 4;
    if (ms > FLEET_TICK_MAX_MS)
        ms = FLEET_TICK_MAX_MS;
    s->fleet.data = s;
    uv_timer_start(&s->fleet, on_tick, ms, ms);
}

void fleet_stop(server *s)
{
    uv_timer_stop(&s->fleet);
}

void fleet_close(server *s, uv_close_cb cb)
{
    uv_timer_stop(&s->fleet);
    store_listen_stop(s->listener);
    s->listener = NULL;
    uv_close((uv_handle_t *)&s->fleet, cb);
}
