/* routes_misc.c - health, readiness, metrics, the OpenAPI document and
 * generators. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embedded.h"
#include "events.h"
#include "jobs.h"
#include "routes.h"

int route_healthz(server *s, http_req *r)
{
    return http_send_json(r, 200, api_health_to_json(D2_VERSION, d2_now() - s->start_mono));
}

int route_readyz(server *s, http_req *r)
{
    if (s->draining)
        return http_errorf(r, 503, "shutting_down", NULL, 5, "the daemon is shutting down");
    if (!s->ready) {
        char why[API_MESSAGE_LEN];
        int d = gens_default(&s->gens);
        if (d >= 0 && gens_unusable(&s->gens, d, why, sizeof why) > 0)
            return http_errorf(r, 503, "not_ready", NULL, 1, "%s", why);
        return http_errorf(r, 503, "not_ready", NULL, 1, "workers are starting");
    }
    if (access(s->cfg->data_dir, W_OK) != 0)
        return http_errorf(r, 503, "not_ready", NULL, 5, "data directory %s is not writable",
                           s->cfg->data_dir);
    double since;
    char why[D2_ERRMSG_LEN];
    if (!storeq_available(s->storeq, &since, why, sizeof why))
        return http_errorf(r, 503, "store_unavailable", NULL, ROUTES_STORE_RETRY_AFTER,
                           "the store has been locked by another connection or process for "
                           "%.0f s (%s); writes are refused, jobs wait for it",
                           d2_now() - since, why);
    if (!s->store_ok)
        return http_errorf(r, 503, "not_ready", NULL, 5,
                           "the last store write failed (see the log)");
    return http_send_json(r, 200, api_ready_to_json(gens_ready_count(&s->gens),
                                                    jobs_pending(s->jobs),
                                                    jobs_running(s->jobs)));
}

/* The job counts are read on the store thread; the rest is the loop's. */
typedef struct metrics_op {
    route_op op;
    int64_t counts[API_JOB_STATE_COUNT];
} metrics_op;

static int metrics_work(store *db, void *ctx, d2_error *err)
{
    metrics_op *c = ctx;
    return store_job_counts(db, c->counts, err);
}

static int metrics_answer(server *s, http_req *r, route_op *op);

int route_metrics(server *s, http_req *r)
{
    metrics_op *c = calloc(1, sizeof *c);
    if (!c)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return routes_run(s, r, &c->op, STOREQ_READ, metrics_work, metrics_answer, routes_op_free);
}

static int metrics_answer(server *s, http_req *r, route_op *op)
{
    if (op->sq.rc != 0)
        return routes_op_error(s, r, op);
    metrics_snapshot snap;
    memset(&snap, 0, sizeof snap);
    memcpy(snap.jobs_by_state, ((metrics_op *)op)->counts, sizeof snap.jobs_by_state);
    snap.pending = jobs_pending(s->jobs);
    snap.running = jobs_running(s->jobs);
    snap.long_polls = jobs_long_polls(s->jobs);
    snap.events_clients = s->events ? events_clients(s->events) : 0;
    snap.events_dropped = s->events ? events_dropped(s->events) : 0;
    snap.generators = gens_ready_count(&s->gens);
    snap.ready = s->ready && !s->draining;
    snap.store_available = storeq_available(s->storeq, NULL, NULL, 0);
    snap.uptime = d2_now() - s->start_mono;
    snap.workers = jobs_workers(s->jobs);
    snap.device = s->cfg->device;
    jobs_memory(s->jobs, snap.mem_used, snap.mem_total, snap.workers);
    metrics_process_read(&snap.process); /* unreadable /proc: the process_* families are left out */
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(&s->metrics, &snap, &text, &len) != 0)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return http_send(r, 200, resp);
}

int route_openapi(server *s, http_req *r)
{
    (void)s;
    const embedded_file *f = embedded_find("proto/openapi.yaml");
    if (!f)
        return http_errorf(r, 500, "internal", NULL, 0, "openapi.yaml was not embedded");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (resp)
        MHD_add_response_header(resp, "Content-Type", "application/yaml");
    return http_send(r, 200, resp);
}

static const char *state_name(int state)
{
    return state == GEN_READY ? "ready" : state == GEN_FAILED ? "failed" : "loading";
}

static api_generator_entry entry_of(const gen_entry *e)
{
    return (api_generator_entry){e->name, e->state == GEN_READY ? e->info : NULL, e->loaded_ms,
                                 state_name(e->state), e->message};
}

/* Every configured generator, loaded or not (state), in command-line order. */
int route_generators_list(server *s, http_req *r)
{
    api_generator_entry list[CONFIG_MAX_GENERATORS];
    for (int i = 0; i < s->gens.n; i++)
        list[i] = entry_of(&s->gens.e[i]);
    json_t *body = api_generator_list_to_json(list, s->gens.n);
    if (!body)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return http_send_json(r, 200, body);
}

int route_generator_get(server *s, http_req *r)
{
    int i = gens_find(&s->gens, r->param);
    if (i < 0)
        return http_errorf(r, 404, "not_found", NULL, 0, "no generator named or with id '%s'",
                           r->param);
    api_generator_entry e = entry_of(&s->gens.e[i]);
    json_t *body = api_generator_entry_to_json(&e);
    if (!body)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return http_send_json(r, 200, body);
}
