/* http.h - libmicrohttpd on the libuv loop.
 *
 * MHD runs in external-polling epoll mode: a uv_poll_t watches MHD's epoll
 * fd and a uv_timer_t follows MHD_get_timeout, so every MHD callback (and so
 * every route handler) runs on the loop thread and no lock guards the daemon's
 * state. We chose this over MHD's own threads because the handlers touch the
 * queue, the waiters and the metrics on every request: one thread owning them
 * needs no locks, and the only cross-thread traffic left is the workers'
 * events (one uv_async). Long-polls and retrievals suspend their connection
 * (MHD_ALLOW_SUSPEND_RESUME) and are resumed from the loop. */
#ifndef D2_SERVER_HTTP_H
#define D2_SERVER_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>

#include "api.h"

struct server;
struct waiter;
struct rtask;
typedef struct http http;

enum { HTTP_GET = 1, HTTP_POST = 2, HTTP_HEAD = 4, HTTP_OTHER = 8 };
enum {
    REQ_NEW = 0,      /* headers seen, body (if any) arriving */
    REQ_SUSPENDED,    /* waiting for a job change or a worker result */
    REQ_RESUMED,      /* resumed: the route's resume handler answers */
    REQ_RESPONDED     /* a response is queued */
};

#define HTTP_PATH_LEN 512
#define HTTP_PARAM_LEN 160

typedef struct http_req {
    http *h;
    struct MHD_Connection *conn;
    int route;                 /* index in the route table, -1 when none matched */
    int method;                /* HTTP_* */
    const char *method_name;
    char path[HTTP_PATH_LEN];
    char param[HTTP_PARAM_LEN]; /* the {id} / {ref} segment */
    char request_id[72];
    const char *principal;     /* token name, "anonymous" without tokens */
    char client[64];           /* peer address */
    unsigned char *body;
    size_t body_len, body_cap;
    int body_too_large;
    int phase;                 /* REQ_* */
    int status;                /* status queued (for logs and metrics) */
    double t0;
    struct waiter *waiter;     /* long-poll in progress */
    struct rtask *task;        /* retrieval in progress */
    json_t *async_json;        /* result prepared for the resumed request */
    int async_status;
    api_error async_err;       /* error prepared for the resumed request (status != 0) */
    struct http_req *sus_prev, *sus_next; /* suspended list */
} http_req;

int http_start(http **out, struct server *s, d2_error *err);
int http_port(const http *h);
/* Stop accepting connections (SIGTERM); open ones keep being served. */
void http_quiesce(http *h);
unsigned http_connections(http *h);
int http_suspended_count(const http *h);
/* Requests in progress (not yet completed). */
int http_active_requests(const http *h);
/* Resume every suspended request (each answers from its resume handler). */
void http_resume_all(http *h);
/* Stop the daemon (resuming anything still suspended first; idle keep-alive
 * connections are closed) and close the loop handles; `h` is freed once they
 * are closed. */
void http_stop(http *h);

void http_suspend(http_req *r);
void http_resume(http_req *r);

const char *http_header(const http_req *r, const char *name);
const char *http_query(const http_req *r, const char *name);

/* Responses. Each send queues the response (adding X-Request-Id), records the
 * status and returns 0, or a negative code when MHD refused it. */
struct MHD_Response *http_json_response(json_t *v); /* steals v; compact + newline */
int http_send(http_req *r, unsigned status, struct MHD_Response *resp); /* destroys resp */
int http_send_json(http_req *r, unsigned status, json_t *v);            /* steals v */
/* Error body from e; retry_after > 0 adds Retry-After; 401 adds WWW-Authenticate. */
int http_send_error(http_req *r, const api_error *e, int retry_after);
int http_errorf(http_req *r, int status, const char *code, const char *field, int retry_after,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
