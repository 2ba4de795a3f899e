/* http.h - libmicrohttpd on a libuv loop, and nothing else: it knows no
 * routes, jobs or daemon state. Its owner hands it a table of callbacks
 * (http_callbacks, with a user pointer) and answers requests through the
 * http_send* calls.
 *
 * MHD runs in external-polling epoll mode: a uv_poll_t watches MHD's epoll
 * fd and a uv_timer_t follows MHD_get_timeout, so every MHD callback (and so
 * every callback of the owner) runs on the loop thread and no lock guards the
 * owner's state. We chose this over MHD's own threads because the daemon's
 * handlers touch the queue, the waiters and the metrics on every request: one
 * thread owning them needs no locks. A request that must wait (a long-poll, a
 * retrieval on a worker) is suspended (MHD_ALLOW_SUSPEND_RESUME) and resumed
 * from the loop. */
#ifndef D2_SERVER_HTTP_H
#define D2_SERVER_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>
#include <uv.h>

#include "api.h"

typedef struct http http;
typedef struct http_req http_req;
typedef struct http_stream http_stream;

enum { HTTP_GET = 1, HTTP_POST = 2, HTTP_HEAD = 4, HTTP_OTHER = 8 };
enum {
    REQ_NEW = 0,      /* headers seen, body (if any) arriving */
    REQ_SUSPENDED,    /* waiting (http_suspend) */
    REQ_RESUMED,      /* resumed: its prepared answer, or on_resume, answers */
    REQ_RESPONDED     /* a response is queued */
};

#define HTTP_PATH_LEN 512
/* Longest request target (path and query) answered; longer ones get 414. */
#define HTTP_URI_MAX 8192
/* MHD's buffer for a request's head. A request line or headers that do not
 * fit get MHD's own (HTML) 414 / 431 page: at this size that is a target of
 * about 300 KB (measured), so targets we refuse ourselves (HTTP_URI_MAX)
 * get the JSON envelope long before. The pool is mmap'd: pages a connection
 * does not touch cost no memory. */
#define HTTP_CONNECTION_MEMORY (512 * 1024)
#define HTTP_PARAM_LEN 160

/* Called by the HTTP layer on the loop thread; `user` is the pointer given to
 * http_start. The int callbacks return 0, or negative to close the connection. */
typedef struct http_callbacks {
    /* The headers are in. May answer at once (a refusal); a request it does
     * not answer gets on_body once its body has arrived. */
    int (*on_headers)(void *user, http_req *r);
    /* The whole body is in r->body (NUL-terminated; r->body_too_large when it
     * passed the limit): answer, or suspend. */
    int (*on_body)(void *user, http_req *r);
    /* A resumed request without a prepared answer (http_resume): answer it. */
    int (*on_resume)(void *user, http_req *r);
    /* The request is over (answered, or the connection went away); for logs
     * and metrics. `terminated` is 0 for a normal end. May be NULL. */
    void (*on_completed)(void *user, const http_req *r, double seconds, int terminated);
    /* A log line of the HTTP layer (level: LOG_* of log.h; fields stolen, may be
     * NULL). May be NULL. */
    void (*log)(void *user, int level, const char *msg, json_t *fields);
} http_callbacks;

typedef struct http_options {
    const char *host;           /* "" = every address */
    int port;                   /* 0 = any free port (http_port says which) */
    size_t body_limit;          /* bytes of a request body kept */
    unsigned max_connections;
    unsigned max_connections_per_client; /* per client address; 0 = no cap */
    unsigned connection_timeout; /* seconds of idleness before MHD closes */
} http_options;

/* Who holds a suspended request. release(ctx, r, answer) must forget r (it
 * may no longer resume it); with `answer` set it then resumes r
 * (http_resume or http_resume_*), because the HTTP layer is stopping. It is
 * called at most once, and never after the holder resumed r itself. */
typedef void (*http_release_fn)(void *ctx, http_req *r, int answer);

struct http_req {
    http *h;
    struct MHD_Connection *conn;
    int route;                 /* the owner's: its matched route, -1 when none */
    int method;                /* HTTP_* */
    const char *method_name;
    char path[HTTP_PATH_LEN];
    char param[HTTP_PARAM_LEN]; /* the owner's: the {id} / {ref} segment */
    char param2[32];           /* the owner's: a second segment ({index}) */
    char request_id[72];
    const char *principal;     /* the owner's: token name, "anonymous" by default */
    char client[64];           /* peer address */
    unsigned char *body;
    size_t body_len, body_cap;
    int body_too_large;
    int phase;                 /* REQ_* */
    int started;               /* on_access has filled the fields above */
    const char *uri_problem;   /* the raw request target is refused: why (static) */
    int uri_status;            /* 400 or 414 for uri_problem */
    int close_after;           /* answered before its body: "Connection: close" */
    int status;                /* status queued (for logs and metrics) */
    double t0;
    /* while suspended: its holder */
    http_release_fn release;
    void *release_ctx;
    /* prepared answer of a resumed request (http_resume_json / _error) */
    json_t *answer_json;
    unsigned answer_status;    /* 0: none prepared */
    api_error answer_err;      /* used when answer_err.status != 0 */
    int answer_retry_after;
    /* the owner's: work it still holds for this request (a store op's
     * outcome, waiting for on_resume); freed with op_free if the request
     * ends first (the client went away) */
    void *op;
    void (*op_free)(void *op);
    struct http_req *sus_prev, *sus_next; /* suspended list */
};

int http_start(http **out, uv_loop_t *loop, const http_options *opt, const http_callbacks *cb,
               void *user, d2_error *err);
int http_port(const http *h);
/* Stop accepting connections (SIGTERM); open ones keep being served. */
void http_quiesce(http *h);
unsigned http_connections(http *h);
int http_suspended_count(const http *h);
/* Requests in progress (not yet completed). */
int http_active_requests(const http *h);
/* End every wait and every stream: each suspended request's holder is released with `answer`
 * set (see http_release_fn); one that is still suspended afterwards is
 * answered 503 shutting_down. */
void http_resume_all(http *h);
/* Stop the daemon (resuming anything still suspended first; idle keep-alive
 * connections are closed) and close the loop handles; `h` is freed once they
 * are closed. */
void http_stop(http *h);

/* Suspend r until its holder resumes it; `release` may be NULL. */
void http_suspend(http_req *r, http_release_fn release, void *ctx);
/* Resume r: the owner's on_resume answers it. */
void http_resume(http_req *r);
/* Resume r with its answer prepared: a JSON body (stolen) or an error. */
void http_resume_json(http_req *r, unsigned status, json_t *body);
void http_resume_error(http_req *r, const api_error *e, int retry_after);

/* Body checks the owner runs in the order it wants. Each answers (400 bad
 * Content-Length, 413 over the limit, 500 out of memory) and returns 1 when it
 * refused the request, else 0. http_expect_body (at on_headers) also reserves
 * memory for a declared body. */
int http_expect_body(http_req *r);
int http_refuse_oversized(http_req *r);

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

/* ---- streaming responses (http_stream.c) ----
 * A 200 whose body is written while the connection stays open (server-sent
 * events). Bytes written are buffered (at most max_buffer bytes not yet
 * taken by the client) and sent as the client reads them; while nothing is
 * buffered the connection is suspended, so an idle stream costs no polling.
 * A client that falls max_buffer bytes behind is dropped: the connection is
 * closed and the loop never waits for it. */

/* The stream is gone (client left, dropped, or ended and sent): forget it. */
typedef void (*http_stream_closed_fn)(void *ctx, http_stream *st);

/* Answer r with a stream; *out is valid until on_closed. Returns 0, or a
 * negative code (nothing was sent; the caller answers). */
int http_stream_start(http_req *r, const char *content_type, size_t max_buffer,
                      http_stream_closed_fn on_closed, void *ctx, http_stream **out);
/* Queue n bytes. Returns 0, or D2_ERANGE when they would pass max_buffer
 * (the stream is then dropped), or D2_EINVAL after end. */
int http_stream_write(http_stream *st, const char *data, size_t n);
/* Send what is buffered, then end the response. */
void http_stream_end(http_stream *st);
/* Bytes buffered and not yet taken by the client. */
size_t http_stream_pending(const http_stream *st);

#endif
