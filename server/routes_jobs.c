/* routes_jobs.c - submit, list, get (with long-poll) and cancel jobs. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "jobs.h"
#include "routes.h"

static void random_bytes(unsigned char *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = getrandom(b + got, n - got, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            /* no entropy source: fall back to the clock (ids stay unique per process) */
            uint64_t t = (uint64_t)api_now_ms() ^ ((uint64_t)(d2_now() * 1e9) << 7);
            for (size_t i = got; i < n; i++)
                b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
            return;
        }
        got += (size_t)k;
    }
}

static void new_job_id(char out[API_ID_LEN])
{
    unsigned char b[10];
    random_bytes(b, sizeof b);
    snprintf(out, API_ID_LEN, "j_%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9]);
}

static int64_t random_seed(void)
{
    unsigned char b[8];
    random_bytes(b, sizeof b);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return (int64_t)(v & ((1ull << 53) - 1));
}

static int valid_idempotency_key(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 255)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return 0;
    return 1;
}

/* ---- POST /v1/jobs ----
 * On the loop: parse, generator, steps, an inline data set, the key's shape.
 * Read step (store thread): the stored data set, the parent checkpoint, the
 * idempotency key. On the loop: those checks, room in the queue. Write step:
 * in one transaction the key again (a replay that raced this one), the
 * inline data set, the job, the key; the job read back. On the loop: queue
 * it, answer 202. */

typedef struct submit_op {
    route_op op;
    api_job_request req;
    int has_key;
    char key[256];
    char principal[128];
    char sha[65];
    int gi;
    api_job job;
    int ds_rc, parent_rc, idem_rc;
    api_dataset_info ds;
    char old_sha[65], old_job[API_ID_LEN];
    api_job stored;
    int has_stored;
    int committed;
    int enqueued;
} submit_op;

/* A stored job goes into the queue, also when its request went away. */
static void submit_enqueue(server *s, submit_op *c)
{
    if (!c->committed || c->enqueued || !s->jobs)
        return;
    c->enqueued = 1;
    s->store_ok = 1;
    s->metrics.jobs_submitted++;
    d2_error err;
    d2_error_clear(&err);
    if (jobs_enqueue(s->jobs, &c->job, c->gi, &err) != 0) {
        /* stored but not queued in memory: it runs after the next restart */
        server_log(s, LOG_ERROR, "job stored but not queued",
                   json_pack("{s:s, s:s}", "job_id", c->job.id, "error", err.msg));
    }
}

static void submit_free(route_op *op)
{
    submit_op *c = (submit_op *)op;
    submit_enqueue(op->s, c);
    api_job_request_free(&c->req);
    api_job_free(&c->job);
    if (c->has_stored)
        api_job_free(&c->stored);
    free(c);
}

/* A lookup's outcome: found (0) and not found are answers; anything else fails the op. */
static int lookup(int rc, int *out)
{
    *out = rc;
    return rc == D2_ENOTFOUND ? 0 : rc;
}

static int submit_read(store *db, void *ctx, d2_error *err)
{
    submit_op *c = ctx;
    api_checkpoint parent;
    int rc = 0;
    c->ds_rc = c->parent_rc = c->idem_rc = D2_ENOTFOUND;
    if (!c->req.has_dataset)
        rc = lookup(store_dataset_info(db, c->req.dataset_id, &c->ds, err), &c->ds_rc);
    if (rc == 0 && c->req.parent_checkpoint[0])
        rc = lookup(store_checkpoint_get(db, c->req.parent_checkpoint, &parent, err),
                    &c->parent_rc);
    if (rc == 0 && c->has_key)
        rc = lookup(store_idem_get(db, c->principal, c->key, c->old_sha, c->old_job,
                                   err), &c->idem_rc);
    return rc;
}
/* The job the request describes, the generator's defaults filled in. */
static void fill_job(const server *s, const gen_entry *ge, const api_job_request *req,
                     api_job *job)
{
    const gen_info *info = ge->info;
    new_job_id(job->id);
    job->state = API_JOB_QUEUED;
    api_snprintf(job->generator_name, sizeof job->generator_name, "%s", ge->name);
    api_snprintf(job->generator_id, sizeof job->generator_id, "%s", info->id);
    job->candidates = req->candidates > 0 ? req->candidates : info->default_candidates;
    if (job->candidates > s->cfg->limits.max_candidates)
        job->candidates = s->cfg->limits.max_candidates;
    job->steps = req->steps > 0 ? req->steps : info->default_steps;
    job->sampler = req->sampler >= 0 ? req->sampler : (int)info->default_sampler;
    job->guidance = req->has_guidance ? req->guidance : (double)info->default_guidance;
    job->seed = req->has_seed ? req->seed : random_seed();
    job->priority = req->priority;
    job->gate_requested = req->gate;
    job->refine_requested = req->refine;
    api_snprintf(job->parent_checkpoint, sizeof job->parent_checkpoint, "%s",
                 req->parent_checkpoint);
    job->created_ms = api_now_ms();
}

/* A key found in the store: the first job again (200), or 409 for another body. */
static int answer_replay(server *s, http_req *r, submit_op *c)
{
    if (strcmp(c->old_sha, c->sha) != 0)
        return http_errorf(r, 409, "idempotency_key_reused", "header.Idempotency-Key", 0,
                           "this key was used for another request (job %s)", c->old_job);
    return routes_reply_job(s, r, c->old_job, 200, 1, 0, 1);
}

/* The same key stored meanwhile by a request to another replica (PostgreSQL:
 * its row blocked ours until it committed, then ours broke the key's
 * uniqueness): 1 with the first job in c (answered as a replay). */
static int key_taken(store *db, submit_op *c, d2_error *err)
{
    d2_error again;
    d2_error_clear(&again);
    if (!c->has_key || store_idem_get(db, c->principal, c->key, c->old_sha, c->old_job,
                                      &again) != 0)
        return 0;
    c->idem_rc = 0;
    d2_error_clear(err);
    return 1;
}

static int submit_write(store *db, void *ctx, d2_error *err)
{
    submit_op *c = ctx;
    if (store_begin(db, err) != 0)
        return D2_EIO;
    c->idem_rc = D2_ENOTFOUND;
    int rc = c->has_key ? lookup(store_idem_get(db, c->principal, c->key, c->old_sha,
                                                c->old_job, err), &c->idem_rc)
                        : 0;
    if (rc != 0 || c->idem_rc == 0) { /* failed, or another request stored the key first */
        store_rollback(db);
        return rc;
    }
    int created = 0;
    const api_job *job = &c->job;
    if ((c->req.has_dataset && store_dataset_put(db, job->dataset_id, job->kind, &c->req.data,
                                                 job->created_ms, &created, err) != 0) ||
        store_job_insert(db, job, c->principal, err) != 0 ||
        (c->has_key &&
         store_idem_put(db, c->principal, c->key, c->sha, job->id, job->created_ms, err) != 0)) {
        store_rollback(db);
        return key_taken(db, c, err) ? 0 : err->code ? err->code : D2_EIO;
    }
    if (store_commit(db, err) != 0)
        return D2_EIO;
    c->committed = 1;
    rc = store_job_get(db, job->id, &c->stored, 1, err);
    c->has_stored = rc == 0;
    return rc;
}

static int submit_written(server *s, http_req *r, route_op *op)
{
    submit_op *c = (submit_op *)op;
    if (c->idem_rc == 0)
        return answer_replay(s, r, c);
    if (!c->committed)
        return routes_op_error(s, r, op);
    submit_enqueue(s, c);
    if (!c->has_stored) /* stored, but the read back failed: read it again */
        return routes_reply_job(s, r, c->job.id, 202, 1, jobs_retry_after(s->jobs), 0);
    jobs_overlay(s->jobs, &c->stored);
    struct MHD_Response *resp = http_json_response(api_job_to_json(&c->stored));
    if (resp) {
        char buf[128];
        snprintf(buf, sizeof buf, "/v1/jobs/%s", c->job.id);
        MHD_add_response_header(resp, "Location", buf);
        snprintf(buf, sizeof buf, "%d", jobs_retry_after(s->jobs));
        MHD_add_response_header(resp, "Retry-After", buf);
    }
    return http_send(r, 202, resp);
}

/* After the read step: data set, parent, key, room; then the write step. */
static int submit_checked(server *s, http_req *r, route_op *op)
{
    submit_op *c = (submit_op *)op;
    if (op->sq.rc != 0)
        return routes_op_error(s, r, op);
    const gen_entry *ge = &s->gens.e[c->gi];
    if (!c->req.has_dataset) {
        if (routes_stored_dataset(r, ge, c->ds_rc, &c->ds, c->req.dataset_id, c->req.kind,
                                  &c->job.kind))
            return 0;
        api_snprintf(c->job.dataset_id, sizeof c->job.dataset_id, "%s", c->req.dataset_id);
    }
    if (c->req.parent_checkpoint[0] && c->parent_rc == D2_ENOTFOUND)
        return http_errorf(r, 422, "unknown_checkpoint", "parent_checkpoint", 0,
                           "no checkpoint %s", c->req.parent_checkpoint);
    if (c->idem_rc == 0)
        return answer_replay(s, r, c);
    if (jobs_pending(s->jobs) >= s->cfg->max_queue)
        return http_errorf(r, 503, "queue_full", NULL, jobs_retry_after(s->jobs),
                           "%d jobs are queued (the limit)", jobs_pending(s->jobs));
    char dataset_id[65];
    int kind = c->job.kind;
    api_snprintf(dataset_id, sizeof dataset_id, "%s", c->job.dataset_id);
    fill_job(s, ge, &c->req, &c->job);
    c->job.kind = kind;
    api_snprintf(c->job.dataset_id, sizeof c->job.dataset_id, "%s", dataset_id);
    return routes_run(s, r, op, STOREQ_WRITE, submit_write, submit_written, submit_free);
}

/* On the loop, before any store work: the generator, steps, an inline data
 * set, the key's shape and hash. Returns 1 when it answered. */
static int submit_admit(server *s, http_req *r, submit_op *c, const json_t *root)
{
    const api_job_request *req = &c->req;
    c->gi = gens_find(&s->gens, req->generator);
    if (c->gi < 0) {
        http_errorf(r, 422, "unknown_generator", "generator", 0,
                    "no generator named or with id '%s' (GET /v1/generators lists them)",
                    req->generator);
        return 1;
    }
    char why[API_MESSAGE_LEN];
    int retry = gens_unusable(&s->gens, c->gi, why, sizeof why);
    if (retry > 0) {
        http_errorf(r, 503, "not_ready", "generator", retry, "%s", why);
        return 1;
    }
    const gen_entry *ge = &s->gens.e[c->gi];
    if (req->steps > ge->info->max_steps) {
        http_errorf(r, 400, "invalid_argument", "steps", 0,
                    "%d steps; generator '%s' samples with at most %d", req->steps, ge->name,
                    ge->info->max_steps);
        return 1;
    }
    if (req->has_dataset &&
        routes_inline_dataset(r, ge, &req->data, req->kind, &c->job.kind, c->job.dataset_id))
        return 1;
    const char *key = http_header(r, "Idempotency-Key");
    if (!key)
        return 0;
    if (!valid_idempotency_key(key)) {
        http_errorf(r, 400, "invalid_argument", "header.Idempotency-Key", 0,
                    "expected 1..255 printable ASCII characters without spaces");
        return 1;
    }
    if (api_canonical_sha256(root, c->sha) != 0) {
        http_errorf(r, 500, "internal", NULL, 0, "out of memory");
        return 1;
    }
    c->has_key = 1;
    api_snprintf(c->key, sizeof c->key, "%s", key);
    return 0;
}

int route_jobs_post(server *s, http_req *r)
{
    json_t *root;
    int answered;
    submit_op *c = routes_json_op(r, sizeof *c, &root, &answered);
    if (!c)
        return answered;
    api_job_init(&c->job);
    api_snprintf(c->principal, sizeof c->principal, "%s", r->principal);
    api_error e;
    int rc = 0;
    if (api_job_request_parse(root, &s->cfg->limits, &c->req, &e) != 0)
        rc = http_send_error(r, &e, 0);
    else if (!submit_admit(s, r, c, root)) {
        json_decref(root);
        return routes_run(s, r, &c->op, STOREQ_READ, submit_read, submit_checked, submit_free);
    }
    json_decref(root);
    submit_free(&c->op);
    return rc;
}

/* ---- GET /v1/jobs ---- */

typedef struct list_op {
    route_op op;
    int state, limit;
    char after[API_ID_LEN];
    int after_rc;
    api_job *list;
    int n;
} list_op;

static void list_free(route_op *op)
{
    list_op *c = (list_op *)op;
    for (int i = 0; i < c->n; i++)
        api_job_free(&c->list[i]);
    free(c->list);
    free(c);
}

static int list_work(store *db, void *ctx, d2_error *err)
{
    list_op *c = ctx;
    int64_t before = 0;
    c->after_rc = 0;
    if (c->after[0]) {
        int rc = lookup(store_job_seq(db, c->after, &before, err), &c->after_rc);
        if (rc != 0 || c->after_rc != 0)
            return rc;
    }
    return store_job_list(db, c->state, before, c->limit + 1, &c->list, &c->n, err);
}

static int list_answer(server *s, http_req *r, route_op *op)
{
    list_op *c = (list_op *)op;
    if (op->sq.rc != 0)
        return routes_op_error(s, r, op);
    if (c->after_rc == D2_ENOTFOUND)
        return http_errorf(r, 400, "invalid_argument", "query.after", 0, "no job %s", c->after);
    int n = c->n;
    api_job_list page = {n > c->limit ? c->limit : n, c->list, ""};
    for (int i = 0; i < page.n; i++)
        jobs_overlay(s->jobs, &c->list[i]);
    if (n > c->limit)
        api_snprintf(page.next_after, sizeof page.next_after, "%s", c->list[page.n - 1].id);
    json_t *body = api_job_list_to_json(&page);
    if (!body)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return http_send_json(r, 200, body);
}

/* ?state= (or ?status=) and ?limit=; answers and returns 1 when one is bad. */
static int list_params(http_req *r, list_op *c)
{
    c->state = -1;
    const char *st = http_query(r, "state");
    const char *which = "query.state";
    if (!st) {
        st = http_query(r, "status");
        which = "query.status";
    }
    api_job_state js;
    if (st && api_job_state_parse(st, &js) != 0) {
        http_errorf(r, 400, "invalid_argument", which, 0,
                    "expected queued, running, succeeded, failed or cancelled");
        return 1;
    }
    if (st)
        c->state = (int)js;
    long limit = 50;
    const char *ls = http_query(r, "limit");
    if (ls) {
        char *end;
        errno = 0;
        limit = strtol(ls, &end, 10);
        if (errno || end == ls || *end || limit < 1 || limit > 200) {
            http_errorf(r, 400, "invalid_argument", "query.limit", 0,
                        "expected an integer in 1..200");
            return 1;
        }
    }
    c->limit = (int)limit;
    return 0;
}

int route_jobs_list(server *s, http_req *r)
{
    list_op *c = calloc(1, sizeof *c);
    if (!c)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    if (list_params(r, c)) {
        free(c);
        return 0;
    }
    const char *after = http_query(r, "after");
    if (after && !api_is_job_id(after)) {
        free(c);
        return http_errorf(r, 400, "invalid_argument", "query.after", 0, "no job %s", after);
    }
    if (after)
        api_snprintf(c->after, sizeof c->after, "%s", after);
    return routes_run(s, r, &c->op, STOREQ_READ, list_work, list_answer, list_free);
}

/* ---- GET /v1/jobs/{id} (?wait= long-poll) ---- */

typedef struct get_op {
    route_op op;
    char id[API_ID_LEN];
    double wait;
    api_job job;
    int loaded;
} get_op;

static void get_free(route_op *op)
{
    get_op *c = (get_op *)op;
    if (c->loaded)
        api_job_free(&c->job);
    free(c);
}

static int get_work(store *db, void *ctx, d2_error *err)
{
    get_op *c = ctx;
    int rc = store_job_get(db, c->id, &c->job, 1, err);
    c->loaded = rc == 0;
    return rc;
}

static int get_answer(server *s, http_req *r, route_op *op)
{
    get_op *c = (get_op *)op;
    if (op->sq.rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", c->id);
    if (op->sq.rc != 0)
        return routes_op_error(s, r, op);
    if (c->wait > 0.0 && !s->draining && !api_job_state_terminal(c->job.state) &&
        jobs_wait(s->jobs, c->id, r, c->wait))
        return 0; /* suspended: route_job_get_resume answers */
    jobs_overlay(s->jobs, &c->job);
    return http_send_json(r, 200, api_job_to_json(&c->job));
}

int route_job_get(server *s, http_req *r)
{
    if (!api_is_job_id(r->param))
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", r->param);
    double wait = 0.0;
    const char *ws = http_query(r, "wait");
    if (ws) {
        char *end;
        errno = 0;
        wait = strtod(ws, &end);
        if (errno || end == ws || *end || !(wait >= 0.0) || !isfinite(wait))
            return http_errorf(r, 400, "invalid_argument", "query.wait", 0,
                               "expected seconds >= 0");
        if (wait > s->cfg->long_poll_max)
            wait = s->cfg->long_poll_max;
    }
    get_op *c = calloc(1, sizeof *c);
    if (!c)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    api_snprintf(c->id, sizeof c->id, "%s", r->param);
    c->wait = wait;
    return routes_run(s, r, &c->op, STOREQ_READ, get_work, get_answer, get_free);
}

int route_job_get_resume(server *s, http_req *r)
{
    return routes_reply_job(s, r, r->param, 200, 0, 0, 0);
}

/* ---- POST /v1/jobs/{id}:cancel ----
 * A queued job leaves the queue at once and is cancelled in the store (back
 * in the queue if the store refuses); a running one has its flag set and
 * cancel_requested stored; one not in memory is read, and cancelled in the
 * store when it is queued there (its generator is still loading). */

enum { CANCEL_QUEUED, CANCEL_RUNNING, CANCEL_STORED };

typedef struct cancel_op {
    route_op op;
    char id[API_ID_LEN];
    int how;                 /* CANCEL_* */
    api_job_state was;       /* CANCEL_STORED: the state found */
    int written;
    int reported;            /* CANCEL_QUEUED: jobs_cancel_done was called */
} cancel_op;

/* A queued job's cancel reaches the queue even when its request went away. */
static void cancel_report(server *s, cancel_op *c)
{
    if (c->how == CANCEL_QUEUED && !c->reported && s->jobs)
        jobs_cancel_done(s->jobs, c->id, c->op.sq.rc == 0);
    c->reported = 1;
}

static void cancel_free(route_op *op)
{
    cancel_report(op->s, (cancel_op *)op);
    free(op);
}

static int cancel_work(store *db, void *ctx, d2_error *err)
{
    cancel_op *c = ctx;
    if (c->how == CANCEL_RUNNING)
        return store_job_set_cancel_requested(db, c->id, err);
    if (c->how == CANCEL_STORED) {
        api_job job;
        int rc = store_job_get(db, c->id, &job, 0, err);
        if (rc != 0)
            return rc;
        c->was = job.state;
        api_job_free(&job);
        if (job.state != API_JOB_QUEUED)
            return 0;
    }
    if (store_begin(db, err) != 0)
        return D2_EIO;
    if (store_job_set_cancel_requested(db, c->id, err) != 0 ||
        store_job_finish(db, c->id, API_JOB_CANCELLED, NULL, NULL, api_now_ms(), -1.0, err) != 0) {
        store_rollback(db);
        return D2_EIO;
    }
    if (store_commit(db, err) != 0)
        return D2_EIO;
    c->written = 1;
    return 0;
}

static int cancel_answer(server *s, http_req *r, route_op *op)
{
    cancel_op *c = (cancel_op *)op;
    int rc = op->sq.rc;
    cancel_report(s, c);
    if (c->how == CANCEL_RUNNING) { /* the flag holds whether or not the store took it */
        if (rc != 0)
            server_log(s, LOG_WARN, "cancel_requested not stored; the job is cancelled anyway",
                       json_pack("{s:s, s:s}", "job_id", c->id, "error", op->sq.err.msg));
        jobs_notify(s->jobs, c->id);
        return routes_reply_job(s, r, c->id, 202, 0, 0, 0);
    }
    if (rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", c->id);
    if (rc != 0)
        return routes_op_error(s, r, op);
    if (c->how == CANCEL_STORED && !c->written)
        return http_errorf(r, 409, "conflict", NULL, 0, "job %s already %s", c->id,
                           api_job_state_name(c->was));
    return routes_reply_job(s, r, c->id, 200, 0, 0, 0);
}

int route_job_cancel(server *s, http_req *r)
{
    if (!api_is_job_id(r->param))
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", r->param);
    int rc = jobs_cancel(s->jobs, r->param);
    if (rc == 2)
        return http_errorf(r, 409, "conflict", NULL, 0,
                           "job %s already generated its checkpoints and is saving them: too "
                           "late to cancel", r->param);
    if (rc == 3)
        return http_errorf(r, 409, "conflict", NULL, 0,
                           "a cancel of job %s is being stored", r->param);
    cancel_op *c = calloc(1, sizeof *c);
    if (!c) {
        if (rc == 0)
            jobs_cancel_done(s->jobs, r->param, 0);
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    }
    api_snprintf(c->id, sizeof c->id, "%s", r->param);
    c->how = rc == 0 ? CANCEL_QUEUED : rc == 1 ? CANCEL_RUNNING : CANCEL_STORED;
    return routes_run(s, r, &c->op, STOREQ_WRITE, cancel_work, cancel_answer, cancel_free);
}
