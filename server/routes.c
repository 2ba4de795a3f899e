/* routes.c - the route table, matching, and the checks every request goes
 * through before its handler (openapi.yaml: "The order of checks"). */
#include "routes.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jobs.h"

const route ROUTES[] = {
    {"/", HTTP_GET, route_ui_index, NULL, NULL, 1},
    {"/ui/{ref}", HTTP_GET, route_ui_file, NULL, NULL, 1},
    {"/healthz", HTTP_GET, route_healthz, NULL, NULL, 1},
    {"/readyz", HTTP_GET, route_readyz, NULL, NULL, 1},
    {"/metrics", HTTP_GET, route_metrics, NULL, NULL, 0},
    {"/v1/openapi.yaml", HTTP_GET, route_openapi, NULL, NULL, 1},
    {"/v1/session", HTTP_GET, route_session, NULL, NULL, 1},
    {"/v1/generators", HTTP_GET, route_generators_list, NULL, NULL, 0},
    {"/v1/generators/{ref}", HTTP_GET, route_generator_get, NULL, NULL, 0},
    {"/v1/generators/{ref}/zoo/{index}/weights", HTTP_GET, route_zoo_weights, NULL, NULL, 0},
    {"/v1/datasets", HTTP_POST, NULL, route_dataset_post, NULL, 0},
    {"/v1/datasets/{id}", HTTP_GET, route_dataset_get, NULL, NULL, 0},
    {"/v1/events", HTTP_GET, route_events, NULL, NULL, 0},
    {"/v1/jobs", HTTP_GET | HTTP_POST, route_jobs_list, route_jobs_post, NULL, 0},
    {"/v1/jobs/{id}", HTTP_GET, route_job_get, NULL, route_job_get_resume, 0},
    {"/v1/jobs/{id}:cancel", HTTP_POST, NULL, route_job_cancel, NULL, 0},
    {"/v1/checkpoints/{id}", HTTP_GET, route_checkpoint_get, NULL, NULL, 0},
    {"/v1/checkpoints/{id}/weights", HTTP_GET, route_checkpoint_weights, NULL, NULL, 0},
    {"/v1/checkpoints/{id}/lineage", HTTP_GET, route_checkpoint_lineage, NULL, NULL, 0},
    {"/v1/retrieve", HTTP_POST, NULL, route_retrieve_post, NULL, 0},
};
const int ROUTE_COUNT = (int)(sizeof ROUTES / sizeof ROUTES[0]);

/* Literal characters match themselves; "{name}" matches a non-empty segment
 * without ':' up to the literal that follows it in the template (":cancel").
 * The first placeholder goes to param, a second to param2. */
static int match_one(const char *t, const char *p, char *param, size_t cap, char *param2,
                     size_t cap2)
{
    int nparams = 0;
    while (*t) {
        if (*t == '{') {
            const char *close = strchr(t, '}');
            const char *suffix = close + 1;
            size_t suffix_len = strcspn(suffix, "/");
            size_t seg = strcspn(p, "/");
            if (seg <= suffix_len || strncmp(p + seg - suffix_len, suffix, suffix_len) != 0)
                return 0;
            size_t vlen = seg - suffix_len;
            char *dst = nparams == 0 ? param : param2;
            size_t dcap = nparams == 0 ? cap : cap2;
            if (memchr(p, ':', vlen) || vlen >= dcap || nparams > 1)
                return 0;
            memcpy(dst, p, vlen);
            dst[vlen] = '\0';
            nparams++;
            p += seg;
            t = suffix + suffix_len;
        } else {
            if (*t != *p)
                return 0;
            t++;
            p++;
        }
    }
    return *p == '\0';
}

int routes_match2(const char *path, char *param, size_t cap, char *param2, size_t cap2)
{
    for (int i = 0; i < ROUTE_COUNT; i++) {
        param[0] = param2[0] = '\0';
        if (match_one(ROUTES[i].tmpl, path, param, cap, param2, cap2))
            return i;
    }
    param[0] = param2[0] = '\0';
    return -1;
}

int routes_match(const char *path, char *param, size_t cap)
{
    char unused[32];
    return routes_match2(path, param, cap, unused, sizeof unused);
}

static const char *allow_of(int methods)
{
    if ((methods & HTTP_GET) && (methods & HTTP_POST))
        return "GET, HEAD, POST";
    if (methods & HTTP_GET)
        return "GET, HEAD";
    return "POST";
}

/* Routes that run generators need them loaded. */
static int needs_ready(const route *rt)
{
    return rt->post == route_jobs_post || rt->post == route_retrieve_post ||
           rt->post == route_job_cancel;
}

int routes_refuse_unready(server *s, http_req *r)
{
    if (s->draining) {
        http_errorf(r, 503, "shutting_down", NULL, 5, "the daemon is shutting down");
        return 1;
    }
    if (!s->ready) {
        http_errorf(r, 503, "not_ready", NULL, 1, "generators are still loading");
        return 1;
    }
    return 0;
}

/* Route (404/405), authentication (401/403) and rate (429): answers and
 * returns 1 when the request is refused. */
static int check_request(server *s, http_req *r)
{
    int idx = routes_match2(r->path, r->param, sizeof r->param, r->param2, sizeof r->param2);
    if (idx < 0) {
        http_errorf(r, 404, "not_found", NULL, 0, "no route for %s (see /v1/openapi.yaml)",
                    r->path);
        return 1;
    }
    r->route = idx;
    const route *rt = &ROUTES[idx];
    int m = r->method == HTTP_HEAD ? HTTP_GET : r->method;
    if (!(rt->methods & m)) {
        api_error e;
        api_fail(&e, 405, "method_not_allowed", NULL, "%s is not allowed on %s; allowed: %s",
                 r->method_name, rt->tmpl, allow_of(rt->methods));
        struct MHD_Response *resp = http_json_response(api_error_to_json(&e));
        if (resp)
            MHD_add_response_header(resp, "Allow", allow_of(rt->methods));
        http_send(r, 405, resp);
        return 1;
    }
    int need = rt->open                    ? AUTH_SCOPE_NONE
               : m == HTTP_POST             ? AUTH_SCOPE_WRITE
               : rt->get == route_metrics   ? AUTH_SCOPE_METRICS
                                            : AUTH_SCOPE_READ;
    int a = auth_check(&s->auth, http_header(r, "Authorization"), need, &r->principal);
    if (a == 401) {
        http_errorf(r, 401, "unauthenticated", NULL, 0,
                    "a valid 'Authorization: Bearer TOKEN' header is required");
        return 1;
    }
    if (a == 403) {
        http_errorf(r, 403, "permission_denied", NULL, 0,
                    "token '%s' lacks the %s scope that %s %s needs", r->principal,
                    auth_scope_name(need), r->method_name, rt->tmpl);
        return 1;
    }
    if (!rt->open && s->auth.rate > 0) {
        double retry;
        const char *key = s->auth.enabled ? r->principal : r->client;
        if (!auth_rate_take(&s->auth, key, d2_now(), &retry)) {
            s->metrics.rate_limited++;
            http_errorf(r, 429, "rate_limited", NULL, (int)ceil(retry),
                        "more than %g requests/s for '%s'", s->auth.rate, key);
            return 1;
        }
    }
    return 0;
}

/* GET and HEAD are answered on MHD's final call for the request: a response
 * queued while MHD still expects a body makes it close the connection, and
 * keep-alive matters to pollers and dashboards. Everything else is checked as
 * soon as the headers are in, so a refused upload is not read. */
int routes_on_headers(server *s, http_req *r)
{
    if (r->method == HTTP_GET || r->method == HTTP_HEAD)
        return 0;
    if (check_request(s, r))
        return 0;
    const route *rt = &ROUTES[r->route];
    if (s->draining)
        return http_errorf(r, 503, "shutting_down", NULL, 5, "the daemon is shutting down");
    if (needs_ready(rt) && !s->ready)
        return http_errorf(r, 503, "not_ready", NULL, 1, "generators are still loading");
    http_expect_body(r); /* 400 / 413 for a bad or too large Content-Length */
    return 0; /* wait for the body */
}

int routes_on_body(server *s, http_req *r)
{
    if (r->method == HTTP_GET || r->method == HTTP_HEAD) {
        if (check_request(s, r))
            return 0;
        return ROUTES[r->route].get(s, r);
    }
    if (r->route < 0)
        return http_errorf(r, 404, "not_found", NULL, 0, "no route for %s", r->path);
    const route *rt = &ROUTES[r->route];
    if (http_refuse_oversized(r))
        return 0;
    if (r->method == HTTP_POST && rt->post)
        return rt->post(s, r);
    return rt->get(s, r);
}

int routes_on_resume(server *s, http_req *r)
{
    int rc;
    if (routes_take_op(s, r, &rc))
        return rc;
    const route *rt = r->route >= 0 ? &ROUTES[r->route] : NULL;
    if (!rt || !rt->resume)
        return http_errorf(r, 500, "internal", NULL, 0, "resumed request without a handler");
    return rt->resume(s, r);
}

/* A long-poll: GET /v1/jobs/{id} (the route that resumes) with wait > 0. */
static int is_long_poll(const http_req *r)
{
    if (r->route < 0 || !ROUTES[r->route].resume || r->method != HTTP_GET)
        return 0;
    const char *w = http_query(r, "wait");
    return w && strtod(w, NULL) > 0.0;
}

void routes_on_completed(server *s, const http_req *r, double seconds, int terminated)
{
    if (r->status > 0)
        metrics_http(&s->metrics, r->route, r->status, seconds,
                     r->route >= 0 && ROUTES[r->route].get == route_events ? METRICS_STREAM
                                                                           : is_long_poll(r));
    if (!log_enabled(&s->log, LOG_INFO))
        return;
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:i, s:f, s:s, s:s}", "request_id",
                          r->request_id, "method", r->method_name ? r->method_name : "",
                          "route", r->route >= 0 ? ROUTES[r->route].tmpl : "unmatched", "path",
                          r->path, "status", r->status, "duration_ms", seconds * 1000.0,
                          "client", r->client, "principal", r->principal);
    if (f && terminated)
        json_object_set_new(f, "terminated", json_integer(terminated));
    server_log(s, r->status >= 500 ? LOG_WARN : LOG_INFO, "request", f);
}

static int cb_headers(void *user, http_req *r) { return routes_on_headers(user, r); }
static int cb_body(void *user, http_req *r) { return routes_on_body(user, r); }
static int cb_resume(void *user, http_req *r) { return routes_on_resume(user, r); }
static void cb_completed(void *user, const http_req *r, double seconds, int terminated)
{
    routes_on_completed(user, r, seconds, terminated);
}
static void cb_log(void *user, int level, const char *msg, json_t *fields)
{
    server_log(user, level, msg, fields);
}

const http_callbacks ROUTES_HTTP = {cb_headers, cb_body, cb_resume, cb_completed, cb_log};

int routes_check_dataset_fits(const gen_entry *ge, int kind, int dim, int classes,
                              const char *xfield, const char *yfield, api_error *e)
{
    gen_support_part part;
    d2_error err;
    d2_error_clear(&err);
    if (gen_info_check_support(ge->info, kind == API_KIND_EMBEDDINGS, dim, classes, &part,
                               &err) == 0)
        return 0;
    return api_fail(e, 422, "invalid_dataset", part == GEN_SUPPORT_ROWS ? xfield : yfield,
                    "generator '%s': %s", ge->name, err.msg);
}

int routes_inline_dataset(http_req *r, const gen_entry *ge, const dataset *data, int kind,
                          int *kind_out, char id_out[65])
{
    api_error e;
    const char *xf = kind == API_KIND_EMBEDDINGS ? "dataset.embeddings" : "dataset.samples";
    if (routes_check_dataset_fits(ge, kind, data->dim, data->classes, xf, "dataset.labels",
                                  &e) != 0) {
        http_send_error(r, &e, 0);
        return 1;
    }
    *kind_out = kind;
    dataset_fingerprint(data, id_out);
    return 0;
}

int routes_stored_dataset(http_req *r, const gen_entry *ge, int info_rc,
                          const api_dataset_info *info, const char *dataset_id, int kind,
                          int *kind_out)
{
    api_error e;
    if (info_rc == D2_ENOTFOUND) {
        http_errorf(r, 422, "unknown_dataset", "dataset_id", 0,
                    "no dataset %s; upload it with POST /v1/datasets", dataset_id);
        return 1;
    }
    if (routes_stored_dataset_kind(ge, info, kind, kind_out, &e) != 0) {
        http_send_error(r, &e, 0);
        return 1;
    }
    return 0;
}

int routes_stored_dataset_kind(const gen_entry *ge, const api_dataset_info *info, int requested,
                               int *kind, api_error *e)
{
    int k = requested;
    if (k < 0) {
        int kinds = info->kinds ? info->kinds : 1 << info->kind;
        int fit = 0;
        for (int c = API_KIND_SAMPLES; c <= API_KIND_EMBEDDINGS; c++) {
            int want = c == API_KIND_EMBEDDINGS ? ge->info->feature_dim : ge->info->input_dim;
            if ((kinds & (1 << c)) && info->dim == want)
                fit |= 1 << c;
        }
        if (fit == ((1 << API_KIND_SAMPLES) | (1 << API_KIND_EMBEDDINGS)))
            return api_fail(e, 422, "invalid_dataset", "dataset_kind",
                            "dataset %s was uploaded both as samples and as embeddings, and "
                            "generator '%s' takes %d-value rows as either; say which with "
                            "dataset_kind", info->id, ge->name, info->dim);
        k = fit == (1 << API_KIND_EMBEDDINGS) ? API_KIND_EMBEDDINGS
            : fit == (1 << API_KIND_SAMPLES)  ? API_KIND_SAMPLES
                                              : info->kind; /* none fits: say why below */
    }
    *kind = k;
    return routes_check_dataset_fits(ge, k, info->dim, info->classes, "dataset_id", "dataset_id",
                                     e);
}

int routes_store_error(server *s, http_req *r, const d2_error *err)
{
    s->store_ok = 0;
    server_log(s, LOG_ERROR, "store error",
               json_pack("{s:s, s:s}", "request_id", r->request_id, "error", err->msg));
    return http_errorf(r, 500, "internal", NULL, 0, "%s", err->msg);
}

int routes_body_type(const http_req *r, int allow_binary)
{
    const char *ct = http_header(r, "Content-Type");
    if (!ct || !ct[0])
        return 0;
    size_t n = strcspn(ct, "; ");
    if (n == 16 && !strncasecmp(ct, "application/json", 16))
        return 0;
    /* what `curl -d @file.json` sends unless told otherwise: read it as JSON */
    if (n == 33 && !strncasecmp(ct, "application/x-www-form-urlencoded", 33))
        return 0;
    if (allow_binary && ((n == 24 && !strncasecmp(ct, "application/octet-stream", 24)) ||
                         (n == 27 && !strncasecmp(ct, "application/vnd.safetensors", 27))))
        return 1;
    return -1;
}

void *routes_json_op(http_req *r, size_t size, json_t **root, int *rc)
{
    *root = NULL;
    *rc = 0;
    if (routes_body_type(r, 0) < 0) {
        *rc = http_errorf(r, 415, "unsupported_media_type", "header.Content-Type", 0,
                          "send application/json");
        return NULL;
    }
    if (!(*root = routes_json_body(r)))
        return NULL;
    void *op = calloc(1, size);
    if (!op) {
        json_decref(*root);
        *root = NULL;
        *rc = http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    }
    return op;
}

json_t *routes_json_body(http_req *r)
{
    json_t *root = NULL;
    api_error e;
    if (api_parse_body(r->body, r->body_len, &root, &e) != 0) {
        http_send_error(r, &e, 0);
        return NULL;
    }
    return root;
}
