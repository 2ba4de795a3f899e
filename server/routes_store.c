/* routes_store.c - a request's store work on a store thread (routes.h:
 * routes_run), and the job reply every job route shares. */
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "routes.h"

/* http_release_fn: the request is gone or the daemon stops; the work runs on */
static void op_release(void *ctx, http_req *r, int answer)
{
    route_op *op = ctx;
    op->req = NULL;
    if (answer) {
        api_error e;
        api_fail(&e, 503, "shutting_down", NULL, "the daemon is shutting down");
        http_resume_error(r, &e, 5);
    }
}

static void op_free_hook(void *p)
{
    route_op *op = p;
    op->cleanup(op);
}

/* storeq done, on the loop: resume the request; routes_take_op answers */
static void op_done(storeq_op *sq)
{
    route_op *op = (route_op *)sq;
    http_req *r = op->req;
    if (!r) {
        op->cleanup(op);
        return;
    }
    op->req = NULL;
    r->op = op;
    r->op_free = op_free_hook;
    http_resume(r);
}

int routes_run(server *s, http_req *r, route_op *op, int lane, storeq_work_fn work,
               route_answer_fn answer, void (*cleanup)(route_op *op))
{
    op->s = s;
    op->req = r;
    op->answer = answer;
    op->cleanup = cleanup;
    op->running = 1;
    http_suspend(r, op_release, op);
    storeq_submit(s->storeq, &op->sq, lane, work, op_done, op);
    return 0;
}

/* From routes_on_resume: the op whose work is done answers (1), or there is
 * none (0). */
int routes_take_op(server *s, http_req *r, int *rc)
{
    route_op *op = r->op;
    if (!op)
        return 0;
    r->op = NULL;
    r->op_free = NULL;
    op->running = 0;
    *rc = op->answer(s, r, op);
    if (!op->running) /* not submitted again for a next step */
        op->cleanup(op);
    return 1;
}

int routes_op_error(server *s, http_req *r, const route_op *op)
{
    if (op->sq.busy) {
        return http_errorf(r, 503, "store_unavailable", NULL, ROUTES_STORE_RETRY_AFTER,
                           "the store is locked by another connection or process (%s); "
                           "nothing was changed, try again", op->sq.err.msg);
    }
    if (op->sq.rc == D2_ECANCELLED)
        return http_errorf(r, 503, "shutting_down", NULL, 5, "the daemon is shutting down");
    return routes_store_error(s, r, &op->sq.err);
}

void routes_op_free(route_op *op)
{
    free(op);
}

/* ---- the job reply ---- */

typedef struct job_reply {
    route_op op;
    char id[API_ID_LEN];
    unsigned status;
    int location, retry_after, replayed;
    api_job job;
    int loaded;
} job_reply;

static int job_reply_work(store *db, void *ctx, d2_error *err)
{
    job_reply *c = ctx;
    int rc = store_job_get(db, c->id, &c->job, 1, err);
    c->loaded = rc == 0;
    return rc;
}

static int job_reply_answer(server *s, http_req *r, route_op *op)
{
    job_reply *c = (job_reply *)op;
    if (op->sq.rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", c->id);
    if (op->sq.rc != 0)
        return routes_op_error(s, r, op);
    jobs_overlay(s->jobs, &c->job);
    struct MHD_Response *resp = http_json_response(api_job_to_json(&c->job));
    if (resp) {
        char buf[128];
        if (c->location) {
            snprintf(buf, sizeof buf, "/v1/jobs/%s", c->id);
            MHD_add_response_header(resp, "Location", buf);
        }
        if (c->retry_after > 0) {
            snprintf(buf, sizeof buf, "%d", c->retry_after);
            MHD_add_response_header(resp, "Retry-After", buf);
        }
        if (c->replayed)
            MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    }
    return http_send(r, c->status, resp);
}

static void job_reply_free(route_op *op)
{
    job_reply *c = (job_reply *)op;
    if (c->loaded)
        api_job_free(&c->job);
    free(c);
}

int routes_reply_job(server *s, http_req *r, const char *id, unsigned status, int location,
                     int retry_after, int replayed)
{
    job_reply *c = calloc(1, sizeof *c);
    if (!c)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    api_snprintf(c->id, sizeof c->id, "%s", id);
    c->status = status;
    c->location = location;
    c->retry_after = retry_after;
    c->replayed = replayed;
    return routes_run(s, r, &c->op, STOREQ_READ, job_reply_work, job_reply_answer,
                      job_reply_free);
}
