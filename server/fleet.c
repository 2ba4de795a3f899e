/* fleet.c - lease renewal, expired-lease recovery and adoption of the other
 * replicas' queued jobs (fleet.h). */
#include "fleet.h"

#include <stdlib.h>

#include "jobs.h"
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
    if (jobs_restore(s->jobs, JOBS_ADOPT, &err) != 0)
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

void fleet_start(server *s)
{
    if (!store_is_postgres(s->db_path) || uv_is_active((uv_handle_t *)&s->fleet))
        return;
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
