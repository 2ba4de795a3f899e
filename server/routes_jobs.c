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

/* Reply with a job as stored (plus live progress). */
static int reply_job(server *s, http_req *r, const char *id, unsigned status, int location,
                     int retry_after, int replayed)
{
    api_job job;
    d2_error err;
    d2_error_clear(&err);
    int rc = store_job_get(s->db, id, &job, 1, &err);
    if (rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", id);
    if (rc != 0)
        return routes_store_error(s, r, &err);
    jobs_overlay(s->jobs, &job);
    struct MHD_Response *resp = http_json_response(api_job_to_json(&job));
    api_job_free(&job);
    if (resp) {
        char buf[128];
        if (location) {
            snprintf(buf, sizeof buf, "/v1/jobs/%s", id);
            MHD_add_response_header(resp, "Location", buf);
        }
        if (retry_after > 0) {
            snprintf(buf, sizeof buf, "%d", retry_after);
            MHD_add_response_header(resp, "Retry-After", buf);
        }
        if (replayed)
            MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    }
    return http_send(r, status, resp);
}

/* The parent checkpoint, when given, must exist (answers and returns 1). */
static int check_parent(server *s, http_req *r, const char *parent)
{
    if (!parent[0])
        return 0;
    api_checkpoint c;
    d2_error err;
    d2_error_clear(&err);
    int rc = store_checkpoint_get(s->db, parent, &c, &err);
    if (rc == D2_ENOTFOUND) {
        http_errorf(r, 422, "unknown_checkpoint", "parent_checkpoint", 0, "no checkpoint %s",
                    parent);
        return 1;
    }
    if (rc != 0) {
        routes_store_error(s, r, &err);
        return 1;
    }
    return 0;
}

/* Idempotency-Key (may be NULL): check its shape, hash the body into sha, and
 * answer a replay (200, the first job) or a reuse for another body (409).
 * Returns 1 when it answered. */
static int check_idempotency(server *s, http_req *r, const char *key, const json_t *root,
                             char sha[65])
{
    if (!key)
        return 0;
    if (!valid_idempotency_key(key)) {
        http_errorf(r, 400, "invalid_argument", "header.Idempotency-Key", 0,
                    "expected 1..255 printable ASCII characters without spaces");
        return 1;
    }
    if (api_canonical_sha256(root, sha) != 0) {
        http_errorf(r, 500, "internal", NULL, 0, "out of memory");
        return 1;
    }
    char old_sha[65], old_job[API_ID_LEN];
    d2_error err;
    d2_error_clear(&err);
    int rc = store_idem_get(s->db, r->principal, key, old_sha, old_job, &err);
    if (rc == D2_ENOTFOUND)
        return 0;
    if (rc != 0)
        routes_store_error(s, r, &err);
    else if (strcmp(old_sha, sha) != 0)
        http_errorf(r, 409, "idempotency_key_reused", "header.Idempotency-Key", 0,
                    "this key was used for another request (job %s)", old_job);
    else
        reply_job(s, r, old_job, 200, 1, 0, 1);
    return 1;
}

/* Everything a request must pass before it is stored: generator, steps, data
 * set (into job), parent, idempotency key, room in the queue. Returns the
 * generator's index, or -1 when it answered. */
static int admit(server *s, http_req *r, const api_job_request *req, const json_t *root,
                 const char *key, char sha[65], api_job *job)
{
    int gi = gens_find(&s->gens, req->generator);
    if (gi < 0) {
        http_errorf(r, 422, "unknown_generator", "generator", 0,
                    "no generator named or with id '%s' (GET /v1/generators lists them)",
                    req->generator);
        return -1;
    }
    char why[API_MESSAGE_LEN];
    int retry = gens_unusable(&s->gens, gi, why, sizeof why);
    if (retry > 0) {
        http_errorf(r, 503, "not_ready", "generator", retry, "%s", why);
        return -1;
    }
    const gen_entry *ge = &s->gens.e[gi];
    if (req->steps > ge->info->max_steps) {
        http_errorf(r, 400, "invalid_argument", "steps", 0,
                    "%d steps; generator '%s' samples with at most %d", req->steps, ge->name,
                    ge->info->max_steps);
        return -1;
    }
    if (routes_request_dataset(s, r, ge, req->has_dataset ? &req->data : NULL, req->dataset_id,
                               req->kind, &job->kind, job->dataset_id) ||
        check_parent(s, r, req->parent_checkpoint) ||
        check_idempotency(s, r, key, root, sha))
        return -1;
    if (jobs_pending(s->jobs) >= s->cfg->max_queue) {
        http_errorf(r, 503, "queue_full", NULL, jobs_retry_after(s->jobs),
                    "%d jobs are queued (the limit)", jobs_pending(s->jobs));
        return -1;
    }
    return gi;
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

/* Store the job with its inline data set and idempotency key in one
 * transaction, queue it, answer 202 (or 500). */
static int accept_job(server *s, http_req *r, const api_job_request *req, const api_job *job,
                      int gi, const char *key, const char *sha)
{
    d2_error err;
    d2_error_clear(&err);
    if (store_begin(s->db, &err) != 0)
        return routes_store_error(s, r, &err);
    int created = 0;
    if ((req->has_dataset && store_dataset_put(s->db, job->dataset_id, job->kind, &req->data,
                                               job->created_ms, &created, &err) != 0) ||
        store_job_insert(s->db, job, r->principal, &err) != 0 ||
        (key &&
         store_idem_put(s->db, r->principal, key, sha, job->id, job->created_ms, &err) != 0)) {
        store_rollback(s->db);
        return routes_store_error(s, r, &err);
    }
    if (store_commit(s->db, &err) != 0)
        return routes_store_error(s, r, &err);
    s->store_ok = 1;
    s->metrics.jobs_submitted++;
    if (jobs_enqueue(s->jobs, job, gi, &err) != 0) {
        /* stored but not queued in memory: it runs after the next restart */
        server_log(s, LOG_ERROR, "job stored but not queued",
                   json_pack("{s:s, s:s}", "job_id", job->id, "error", err.msg));
    }
    return reply_job(s, r, job->id, 202, 1, jobs_retry_after(s->jobs), 0);
}

int route_jobs_post(server *s, http_req *r)
{
    if (routes_body_type(r, 0) < 0)
        return http_errorf(r, 415, "unsupported_media_type", "header.Content-Type", 0,
                           "send application/json");
    json_t *root = routes_json_body(r);
    if (!root)
        return 0;
    api_job_request req;
    api_error e;
    int rc = 0;
    if (api_job_request_parse(root, &s->cfg->limits, &req, &e) != 0) {
        rc = http_send_error(r, &e, 0);
    } else {
        const char *key = http_header(r, "Idempotency-Key");
        char sha[65] = "";
        api_job job;
        api_job_init(&job);
        int gi = admit(s, r, &req, root, key, sha, &job);
        if (gi >= 0) {
            fill_job(s, &s->gens.e[gi], &req, &job);
            rc = accept_job(s, r, &req, &job, gi, key, sha);
        }
    }
    json_decref(root);
    api_job_request_free(&req);
    return rc;
}

int route_jobs_list(server *s, http_req *r)
{
    int state = -1;
    const char *st = http_query(r, "state");
    const char *which = "query.state";
    if (!st) {
        st = http_query(r, "status");
        which = "query.status";
    }
    if (st) {
        api_job_state js;
        if (api_job_state_parse(st, &js) != 0)
            return http_errorf(r, 400, "invalid_argument", which, 0,
                               "expected queued, running, succeeded, failed or cancelled");
        state = (int)js;
    }
    long limit = 50;
    const char *ls = http_query(r, "limit");
    if (ls) {
        char *end;
        errno = 0;
        limit = strtol(ls, &end, 10);
        if (errno || end == ls || *end || limit < 1 || limit > 200)
            return http_errorf(r, 400, "invalid_argument", "query.limit", 0,
                               "expected an integer in 1..200");
    }
    int64_t before = 0;
    d2_error err;
    d2_error_clear(&err);
    const char *after = http_query(r, "after");
    if (after) {
        int rc = api_is_job_id(after) ? store_job_seq(s->db, after, &before, &err) : D2_ENOTFOUND;
        if (rc == D2_ENOTFOUND)
            return http_errorf(r, 400, "invalid_argument", "query.after", 0, "no job %s", after);
        if (rc != 0)
            return routes_store_error(s, r, &err);
    }
    api_job *list = NULL;
    int n = 0;
    if (store_job_list(s->db, state, before, (int)limit + 1, &list, &n, &err) != 0)
        return routes_store_error(s, r, &err);
    api_job_list page = {n > limit ? (int)limit : n, list, ""};
    for (int i = 0; i < page.n; i++)
        jobs_overlay(s->jobs, &list[i]);
    if (n > limit)
        api_snprintf(page.next_after, sizeof page.next_after, "%s", list[page.n - 1].id);
    json_t *body = api_job_list_to_json(&page);
    page.n = n; /* free every row fetched, the extra one too */
    api_job_list_free(&page);
    if (!body)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return http_send_json(r, 200, body);
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
    if (wait > 0.0 && !s->draining) {
        api_job job;
        d2_error err;
        d2_error_clear(&err);
        int rc = store_job_get(s->db, r->param, &job, 0, &err);
        if (rc == D2_ENOTFOUND)
            return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", r->param);
        if (rc != 0)
            return routes_store_error(s, r, &err);
        int terminal = api_job_state_terminal(job.state);
        api_job_free(&job);
        if (!terminal && jobs_wait(s->jobs, r->param, r, wait))
            return 0; /* suspended: route_job_get_resume answers */
    }
    return reply_job(s, r, r->param, 200, 0, 0, 0);
}

int route_job_get_resume(server *s, http_req *r)
{
    return reply_job(s, r, r->param, 200, 0, 0, 0);
}

int route_job_cancel(server *s, http_req *r)
{
    if (!api_is_job_id(r->param))
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", r->param);
    d2_error err;
    d2_error_clear(&err);
    int rc = jobs_cancel(s->jobs, r->param, &err);
    if (rc == 0)
        return reply_job(s, r, r->param, 200, 0, 0, 0);
    if (rc == 1)
        return reply_job(s, r, r->param, 202, 0, 0, 0);
    if (rc == 2)
        return http_errorf(r, 409, "conflict", NULL, 0,
                           "job %s already generated its checkpoints and is saving them: too "
                           "late to cancel", r->param);
    if (rc != D2_ENOTFOUND)
        return routes_store_error(s, r, &err);
    api_job job;
    rc = store_job_get(s->db, r->param, &job, 0, &err);
    if (rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no job %s", r->param);
    if (rc != 0)
        return routes_store_error(s, r, &err);
    api_job_state state = job.state;
    api_job_free(&job);
    if (state == API_JOB_QUEUED) { /* restored later: its generator is still loading */
        if (store_job_finish(s->db, r->param, API_JOB_CANCELLED, NULL, NULL, api_now_ms(), -1.0,
                             &err) != 0)
            return routes_store_error(s, r, &err);
        return reply_job(s, r, r->param, 200, 0, 0, 0);
    }
    return http_errorf(r, 409, "conflict", NULL, 0, "job %s already %s", r->param,
                       api_job_state_name(state));
}
