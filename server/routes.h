/* routes.h - the route table and request dispatch: route match (404/405),
 * authentication and scope (401/403), rate (429), body size (413), then the
 * handler. Handlers live in routes_*.c, one file per resource. */
#ifndef D2_SERVER_ROUTES_H
#define D2_SERVER_ROUTES_H

#include "http.h"
#include "server.h"
#include "storeq.h"

typedef int (*route_fn)(server *s, http_req *r);

typedef struct route {
    const char *tmpl;   /* "/v1/jobs/{id}:cancel" */
    int methods;        /* HTTP_GET | HTTP_POST (GET implies HEAD) */
    route_fn get, post;
    route_fn resume;    /* answers a resumed (suspended) request; may be NULL */
    int open;           /* no token needed even when tokens are configured */
} route;

extern const route ROUTES[];
extern const int ROUTE_COUNT;

/* Match a path: the route index (param filled) or -1. */
int routes_match(const char *path, char *param, size_t cap);
/* The same, with a second placeholder's segment in param2. */
int routes_match2(const char *path, char *param, size_t cap, char *param2, size_t cap2);
/* First call of a request (headers). Queues a response when it can answer
 * at once (GET routes, early refusals). Returns 0 or negative (close). */
int routes_on_headers(server *s, http_req *r);
/* The whole body is in r->body: run the POST handler. */
int routes_on_body(server *s, http_req *r);
/* A resumed request without a prepared answer: the route's resume handler. */
int routes_on_resume(server *s, http_req *r);
/* A request is over: metrics and the request log line. */
void routes_on_completed(server *s, const http_req *r, double seconds, int terminated);
/* The table http_start gets (user: the server). */
extern const http_callbacks ROUTES_HTTP;

/* ---- handlers (routes_*.c) ---- */
int route_healthz(server *s, http_req *r);
int route_readyz(server *s, http_req *r);
int route_metrics(server *s, http_req *r);
int route_openapi(server *s, http_req *r);
int route_generators_list(server *s, http_req *r);
int route_generator_get(server *s, http_req *r);
int route_dataset_post(server *s, http_req *r);
int route_dataset_get(server *s, http_req *r);
int route_events(server *s, http_req *r);
int route_ui_index(server *s, http_req *r);
int route_ui_file(server *s, http_req *r);
int route_session(server *s, http_req *r);
int route_jobs_post(server *s, http_req *r);
int route_jobs_list(server *s, http_req *r);
int route_job_get(server *s, http_req *r);
int route_job_get_resume(server *s, http_req *r);
int route_job_cancel(server *s, http_req *r);
int route_checkpoint_get(server *s, http_req *r);
int route_checkpoint_weights(server *s, http_req *r);
int route_checkpoint_lineage(server *s, http_req *r);
int route_retrieve_post(server *s, http_req *r);
int route_zoo_weights(server *s, http_req *r);

/* Shared by handlers: 503 not_ready / shutting_down when jobs cannot be taken
 * (returns 1 when it answered). */
int routes_refuse_unready(server *s, http_req *r);
/* Check an inline or stored data set's shape against a generator with the
 * generator's own rule (gen_info_check_support): 422 naming `xfield` (rows)
 * or `yfield` (classes). */
int routes_check_dataset_fits(const gen_entry *ge, int kind, int dim, int classes,
                              const char *xfield, const char *yfield, api_error *e);
/* The kind a job or retrieval reads a stored data set as. `requested` is the
 * request's dataset_kind (-1: not given); without one, the kinds the numbers
 * were uploaded as (info->kinds) that fit the generator's dims decide, and
 * when two fit (equal input and feature dims) the request must say which
 * (422 naming dataset_kind). Then as routes_check_dataset_fits. */
int routes_stored_dataset_kind(const gen_entry *ge, const api_dataset_info *info, int requested,
                               int *kind, api_error *e);
/* The data set of a job or retrieval request, for both routes: inline
 * (`data`, already content-checked by proto, read as `kind`): checks it
 * fits the generator, sets *kind_out and id_out (the fingerprint). Answers
 * and returns 1 on refusal. */
int routes_inline_dataset(http_req *r, const gen_entry *ge, const dataset *data, int kind,
                          int *kind_out, char id_out[65]);
/* Stored (`dataset_id`, `kind` -1 when the request gave none; info_rc and
 * info: what the store said, read by the caller's op): checks it exists
 * (422 unknown_dataset) and fits the generator; sets *kind_out. Answers
 * and returns 1 on refusal. */
int routes_stored_dataset(http_req *r, const gen_entry *ge, int info_rc,
                          const api_dataset_info *info, const char *dataset_id, int kind,
                          int *kind_out);
/* The body's media type: 0 JSON (application/json, none, or curl -d's
 * application/x-www-form-urlencoded), 1 safetensors
 * (application/octet-stream, application/vnd.safetensors; only when
 * allow_binary), -1 anything else (answer 415). */
int routes_body_type(const http_req *r, int allow_binary);
/* Parse the JSON body (400 invalid_json on failure: answered, returns NULL). */
json_t *routes_json_body(http_req *r);
/* The opening of a JSON POST that queues store work: the body (415 unless
 * JSON, 400 unless it parses) in *root and a zeroed op of `size` bytes for it
 * (500 without memory). NULL when the request was answered (*root is then
 * NULL too, *rc what answering returned); else the caller owns both. */
void *routes_json_op(http_req *r, size_t size, json_t **root, int *rc);
/* Reply with a store failure (500 internal) and log it. */
int routes_store_error(server *s, http_req *r, const d2_error *err);

/* ---- a request's store work (routes_store.c) ----
 * A handler never calls the store: it puts what it needs in an op (the
 * first member of its calloc'd context), and routes_run suspends the request
 * while `work` runs on a store thread (storeq.h). `answer` then runs on the
 * loop with the request resumed, inside its MHD callback, so it answers as a
 * handler does, or runs the same op again (routes_run) for a next step; the
 * op is cleaned up once an answer does not. A request that goes away (or a
 * shutdown) releases the op: its work finishes and it is cleaned up unanswered. */
typedef struct route_op route_op;
typedef int (*route_answer_fn)(server *s, http_req *r, route_op *op);
struct route_op {
    storeq_op sq;                   /* first: its rc, busy and err are work's outcome */
    server *s;
    http_req *req;                  /* NULL once released */
    route_answer_fn answer;
    void (*cleanup)(route_op *op);  /* frees what the context holds, and the context */
    int running;                    /* submitted, its answer not yet run */
};
/* Seconds a client is told to wait (Retry-After) when the store is locked. */
#define ROUTES_STORE_RETRY_AFTER 2
int routes_run(server *s, http_req *r, route_op *op, int lane, storeq_work_fn work,
               route_answer_fn answer, void (*cleanup)(route_op *op));
/* Answer a failed op: 503 store_unavailable with Retry-After when a lock
 * refused it, 503 shutting_down when the daemon stopped it, else 500. */
int routes_op_error(server *s, http_req *r, const route_op *op);
/* From routes_on_resume: when r holds an op whose work is done, run its
 * answer (*rc: its return) and return 1; else 0. */
int routes_take_op(server *s, http_req *r, int *rc);
/* cleanup for a context that holds nothing but itself */
void routes_op_free(route_op *op);
/* Answer with a job as stored (and its live progress): GET, replays and
 * cancels. status, Location and Retry-After as given. */
int routes_reply_job(server *s, http_req *r, const char *id, unsigned status, int location,
                     int retry_after, int replayed);

#endif
