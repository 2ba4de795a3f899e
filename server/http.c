/* http.c - libmicrohttpd in external-polling epoll mode, driven by libuv. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http_internal.h"
#include "log.h"


/* ---- running MHD from the loop ---- */

static void on_timer(uv_timer_t *t);

static void schedule(http *h)
{
    if (!h->d)
        return;
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void http_log(http *h, int level, const char *msg, json_t *fields)
{
    if (h->cb.log)
        h->cb.log(h->user, level, msg, fields);
    else
        json_decref(fields);
}

static void run_mhd(http *h)
{
    if (!h->d)
        return;
    h->kicked = 0;
    if (MHD_run(h->d) != MHD_YES)
        http_log(h, LOG_WARN, "MHD_run failed", NULL);
    /* a connection resumed during MHD_run (an event written from a handler)
     * needs another run now: MHD's own timeout does not count it */
    if (h->kicked && h->d)
        uv_timer_start(&h->timer, on_timer, 0, 0);
    else
        schedule(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

void http_kick(http *h)
{
    h->kicked = 1;
    if (h->d)
        uv_timer_start(&h->timer, on_timer, 0, 0);
}

/* ---- requests ---- */

static int valid_request_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static int method_of(const char *m)
{
    if (!strcmp(m, "GET"))
        return HTTP_GET;
    if (!strcmp(m, "POST"))
        return HTTP_POST;
    if (!strcmp(m, "HEAD"))
        return HTTP_HEAD;
    return HTTP_OTHER;
}

static void client_address(http_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(r->client, sizeof r->client, "unknown");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, r->client,
                  sizeof r->client);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  r->client, sizeof r->client);
}

static int append_body(http_req *r, const char *data, size_t n, size_t limit)
{
    if (r->body_too_large || r->body_len + n > limit) {
        r->body_too_large = 1;
        r->body_len += n; /* counted, not kept */
        return 0;
    }
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        while (cap < r->body_len + n)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        unsigned char *b = realloc(r->body, cap + 1);
        if (!b)
            return -1;
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* MHD's URI callback: the request target as received, before MHD decodes
 * %XX (a %00 would cut the decoded path short: /v1/jobs/ID%00x read as
 * /v1/jobs/ID). The request starts here; on_access fills the rest. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    http *h = cls;
    http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    h->active++;
    r->h = h;
    r->conn = c;
    r->t0 = d2_now();
    r->route = -1;
    api_snprintf(r->path, sizeof r->path, "%s", uri); /* for the log, until on_access */
    for (char *p = r->path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    api_sanitize_utf8(r->path);
    size_t n = strlen(uri), path_len = strcspn(uri, "?");
    if (n > HTTP_URI_MAX || path_len >= HTTP_PATH_LEN) {
        r->uri_status = 414;
        r->uri_problem = path_len >= HTTP_PATH_LEN ? "the path is too long" : "the URI is too long";
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)uri[i];
        if (ch == '%' && hex_value(uri[i + 1]) >= 0 && hex_value(uri[i + 2]) >= 0)
            ch = hex_value(uri[i + 1]) * 16 + hex_value(uri[i + 2]);
        if (ch < 0x20 || ch == 0x7f) {
            r->uri_status = 400;
            r->uri_problem = "the request target has a control character (such as %00)";
            return r;
        }
    }
    return r;
}

static void start_request(http *h, http_req *r, const char *url, const char *method)
{
    r->started = 1;
    r->method_name = method;
    r->method = method_of(method);
    r->principal = "anonymous";
    api_snprintf(r->path, sizeof r->path, "%s", url);
    api_sanitize_utf8(r->path); /* it goes into logs and error messages */
    const char *rid = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && valid_request_id(rid))
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
        snprintf(r->request_id, sizeof r->request_id, "%s-%llu", h->id_prefix, ++h->next_id);
    client_address(r);
}

typedef struct framing {
    int content_length, transfer_encoding;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)value;
    framing *f = cls;
    if (!strcasecmp(key, "Content-Length"))
        f->content_length++;
    else if (!strcasecmp(key, "Transfer-Encoding"))
        f->transfer_encoding++;
    return MHD_YES;
}

/* Refusals before the owner sees the request: a request target with a control
 * character or too long (the URI callback's verdict), and a body whose length
 * two headers could disagree about (two Content-Length headers, or one with
 * Transfer-Encoding): a proxy in front may frame it the other way (request
 * smuggling). Answers and returns 1 when it refused the request. */
static int refuse_request(http_req *r)
{
    if (r->uri_problem) {
        r->close_after = 1;
        if (r->uri_status == 414)
            http_errorf(r, 414, "uri_too_long", "path", 0, "%s (at most %d bytes of path, %d "
                        "of path and query)", r->uri_problem, HTTP_PATH_LEN - 1, HTTP_URI_MAX);
        else
            http_errorf(r, 400, "invalid_argument", "path", 0, "%s", r->uri_problem);
        return 1;
    }
    framing f = {0, 0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.content_length > 1 || (f.content_length && f.transfer_encoding)) {
        r->close_after = 1;
        http_errorf(r, 400, "invalid_argument",
                    f.content_length > 1 ? "header.Content-Length" : "header.Transfer-Encoding",
                    0, "%s", f.content_length > 1
                                 ? "more than one Content-Length header"
                                 : "Transfer-Encoding and Content-Length together");
        return 1;
    }
    return 0;
}

/* A resumed request: its prepared answer, else the owner's on_resume. */
static int answer_resumed(http *h, http_req *r)
{
    if (r->answer_err.status)
        return http_send_error(r, &r->answer_err, r->answer_retry_after);
    if (r->answer_status) {
        json_t *v = r->answer_json;
        r->answer_json = NULL;
        return http_send_json(r, r->answer_status, v);
    }
    return h->cb.on_resume(h->user, r);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    http *h = cls;
    (void)c;
    http_req *r = *con_cls;
    if (!r)
        return MHD_NO; /* the URI callback ran out of memory */
    if (!r->started) {
        start_request(h, r, url, method);
        if (refuse_request(r))
            return MHD_YES;
        return h->cb.on_headers(h->user, r) < 0 ? MHD_NO : MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->phase == REQ_RESPONDED)
            return MHD_YES; /* answered early (413...): discard */
        if (append_body(r, upload_data, n, h->body_limit) != 0)
            return MHD_NO;
        /* a client streaming far past the limit without Content-Length is cut off */
        if (r->body_too_large && r->body_len > 4 * h->body_limit)
            return MHD_NO;
        return MHD_YES;
    }
    if (r->phase == REQ_RESPONDED || r->phase == REQ_SUSPENDED)
        return MHD_YES;
    int rc;
    if (r->phase == REQ_RESUMED) {
        rc = answer_resumed(h, r);
    } else {
        if (r->body && !r->body_too_large)
            r->body[r->body_len] = '\0';
        rc = h->cb.on_body(h->user, r);
    }
    return rc < 0 ? MHD_NO : MHD_YES;
}

static void unlink_suspended(http *h, http_req *r)
{
    if (r->sus_prev)
        r->sus_prev->sus_next = r->sus_next;
    else
        h->suspended = r->sus_next;
    if (r->sus_next)
        r->sus_next->sus_prev = r->sus_prev;
    r->sus_prev = r->sus_next = NULL;
    h->nsuspended--;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    http *h = cls;
    http_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    h->active--;
    if (h->cb.on_completed)
        h->cb.on_completed(h->user, r, d2_now() - r->t0,
                           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 0 : (int)toe);
    if (r->phase == REQ_SUSPENDED) { /* MHD completes only resumed requests; kept for safety */
        http_release_fn release = r->release;
        r->release = NULL;
        if (release)
            release(r->release_ctx, r, 0);
        unlink_suspended(h, r);
    }
    if (r->op_free)
        r->op_free(r->op);
    free(r->body);
    json_decref(r->answer_json);
    free(r);
}

void http_suspend(http_req *r, http_release_fn release, void *ctx)
{
    http *h = r->h;
    r->phase = REQ_SUSPENDED;
    r->release = release;
    r->release_ctx = ctx;
    r->sus_prev = NULL;
    r->sus_next = h->suspended;
    if (h->suspended)
        h->suspended->sus_prev = r;
    h->suspended = r;
    h->nsuspended++;
    MHD_suspend_connection(r->conn);
}

void http_resume(http_req *r)
{
    http *h = r->h;
    if (r->phase != REQ_SUSPENDED)
        return;
    unlink_suspended(h, r);
    r->release = NULL;
    r->release_ctx = NULL;
    r->phase = REQ_RESUMED;
    MHD_resume_connection(r->conn);
    http_kick(h);
}

void http_resume_json(http_req *r, unsigned status, json_t *body)
{
    if (r->phase != REQ_SUSPENDED) {
        json_decref(body);
        return;
    }
    if (body) {
        json_decref(r->answer_json);
        r->answer_json = body;
        r->answer_status = status;
    } else {
        api_fail(&r->answer_err, 500, "internal", NULL, "out of memory");
    }
    http_resume(r);
}

void http_resume_error(http_req *r, const api_error *e, int retry_after)
{
    if (r->phase != REQ_SUSPENDED)
        return;
    r->answer_err = *e;
    r->answer_retry_after = retry_after;
    http_resume(r);
}

int http_suspended_count(const http *h)
{
    return h->nsuspended;
}

int http_active_requests(const http *h)
{
    return h->active;
}

void http_resume_all(http *h)
{
    http_stream_end_all(h);
    while (h->suspended) {
        http_req *r = h->suspended;
        http_release_fn release = r->release;
        r->release = NULL;
        if (release)
            release(r->release_ctx, r, 1);
        if (r->phase == REQ_SUSPENDED) {
            api_error e;
            api_fail(&e, 503, "shutting_down", NULL, "the daemon is shutting down");
            http_resume_error(r, &e, 5);
        }
    }
}

int http_expect_body(http_req *r)
{
    const char *cl = http_header(r, "Content-Length");
    if (!cl)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    if (errno || end == cl || *end) {
        http_errorf(r, 400, "invalid_argument", "header.Content-Length", 0, "not a number");
        return 1;
    }
    if (n > r->h->body_limit) {
        http_errorf(r, 413, "payload_too_large", NULL, 0,
                    "body of %llu bytes exceeds the limit of %zu bytes", n, r->h->body_limit);
        return 1;
    }
    if (n > 0 && !r->body) {
        /* reserve up to 1 MiB now; the rest grows as bytes arrive, so a client
         * that announces a large body and stalls costs little */
        size_t reserve = n < (1u << 20) ? (size_t)n : (size_t)1 << 20;
        r->body = malloc(reserve + 1);
        if (!r->body) {
            http_errorf(r, 500, "internal", NULL, 0, "out of memory");
            return 1;
        }
        r->body_cap = reserve;
    }
    return 0;
}

int http_refuse_oversized(http_req *r)
{
    if (!r->body_too_large)
        return 0;
    http_errorf(r, 413, "payload_too_large", NULL, 0,
                "body of %zu bytes exceeds the limit of %zu bytes", r->body_len,
                r->h->body_limit);
    return 1;
}

const char *http_header(const http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- responses ---- */

struct MHD_Response *http_json_response(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *b = realloc(s, n + 2);
    if (!b) {
        free(s);
        return NULL;
    }
    b[n] = '\n';
    b[n + 1] = '\0';
    struct MHD_Response *resp = MHD_create_response_from_buffer(n + 1, b, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(b);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return resp;
}

int http_send(http_req *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp) {
        /* out of memory building the body: a bodiless 500 */
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = 500;
        if (!resp)
            return D2_ENOMEM;
    }
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (r->close_after)
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES)
        return D2_EIO;
    r->status = (int)status;
    r->phase = REQ_RESPONDED;
    return 0;
}

int http_send_json(http_req *r, unsigned status, json_t *v)
{
    return http_send(r, status, http_json_response(v));
}

int http_send_error(http_req *r, const api_error *e, int retry_after)
{
    struct MHD_Response *resp = http_json_response(api_error_to_json(e));
    if (resp) {
        char ra[32];
        if (retry_after > 0) {
            snprintf(ra, sizeof ra, "%d", retry_after);
            MHD_add_response_header(resp, "Retry-After", ra);
        }
        if (e->status == 401)
            MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"d2nwgd\"");
    }
    return http_send(r, (unsigned)(e->status ? e->status : 500), resp);
}

int http_errorf(http_req *r, int status, const char *code, const char *field, int retry_after,
                const char *fmt, ...)
{
    api_error e;
    memset(&e, 0, sizeof e);
    e.status = status;
    api_snprintf(e.code, sizeof e.code, "%s", code);
    api_snprintf(e.field, sizeof e.field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    api_sanitize_utf8(e.field);
    api_sanitize_utf8(e.message);
    return http_send_error(r, &e, retry_after);
}

/* ---- start / stop ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    http *h = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    http_log(h, LOG_WARN, "libmicrohttpd", json_pack("{s:s}", "detail", msg));
}

static int open_listener(const char *host, int port, int *fd_out, int *family, d2_error *err)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int rc = getaddrinfo(host[0] ? host : NULL, ports, &hints, &res);
    if (rc != 0)
        return d2_fail(err, D2_EINVAL, "listen %s:%d: %s", host, port, gai_strerror(rc));
    int fd = -1;
    char why[256] = "no address";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            snprintf(why, sizeof why, "socket: %s", strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
            *family = ai->ai_family;
            break;
        }
        snprintf(why, sizeof why, "%s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return d2_fail(err, D2_EIO, "listen %s:%d: %s", host[0] ? host : "*", port, why);
    *fd_out = fd;
    return 0;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void handle_closed(uv_handle_t *hd)
{
    http *h = hd->data;
    if (--h->handles_open == 0)
        free(h);
}

static void random_prefix(char out[12])
{
    unsigned char rnd[4] = {0, 0, 0, 0};
    int rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
        if (read(rfd, rnd, sizeof rnd) != (ssize_t)sizeof rnd)
            memset(rnd, 0, sizeof rnd);
        close(rfd);
    }
    snprintf(out, 12, "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
}

int http_start(http **out, uv_loop_t *loop, const http_options *opt, const http_callbacks *cb,
               void *user, d2_error *err)
{
    *out = NULL;
    if (!cb->on_headers || !cb->on_body || !cb->on_resume)
        return d2_fail(err, D2_EINVAL, "http: on_headers, on_body and on_resume are required");
    int family = AF_INET, fd = -1;
    const char *host = opt->host ? opt->host : "";
    if (open_listener(host, opt->port, &fd, &family, err) != 0)
        return err->code;
    http *h = calloc(1, sizeof *h);
    if (!h) {
        close(fd);
        return d2_fail(err, D2_ENOMEM, "http: out of memory");
    }
    h->cb = *cb;
    h->user = user;
    h->loop = loop;
    h->body_limit = opt->body_limit;
    h->listen_fd = fd;
    h->port = bound_port(fd);
    random_prefix(h->id_prefix);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_CONNECTION_LIMIT, opt->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        opt->max_connections_per_client, MHD_OPTION_CONNECTION_TIMEOUT, opt->connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY, MHD_OPTION_END);
    if (!h->d) {
        close(fd);
        free(h);
        return d2_fail(err, D2_EIO, "http: libmicrohttpd did not start");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    uv_timer_init(loop, &h->timer); /* cannot fail */
    h->timer.data = h;
    if (!di || uv_poll_init(loop, &h->poll, di->epoll_fd) != 0) {
        MHD_stop_daemon(h->d); /* closes fd */
        h->d = NULL;
        h->handles_open = 1;
        uv_close((uv_handle_t *)&h->timer, handle_closed); /* frees h */
        return d2_fail(err, D2_EIO, "http: cannot watch libmicrohttpd's epoll fd");
    }
    h->poll.data = h;
    h->handles_open = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    schedule(h);
    *out = h;
    return 0;
}

int http_port(const http *h)
{
    return h->port;
}

void http_quiesce(http *h)
{
    if (!h->d || h->quiesced)
        return;
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    h->quiesced = 1;
    h->listen_fd = -1;
}

unsigned http_connections(http *h)
{
    if (!h->d)
        return 0;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return di ? di->num_connections : 0;
}

void http_stop(http *h)
{
    if (!h)
        return;
    if (h->d) {
        http_resume_all(h);
        MHD_run(h->d);
        uv_poll_stop(&h->poll);
        uv_timer_stop(&h->timer);
        MHD_stop_daemon(h->d); /* closes the listen socket unless quiesced */
        h->d = NULL;
        h->listen_fd = -1;
    }
    uv_close((uv_handle_t *)&h->poll, handle_closed);
    uv_close((uv_handle_t *)&h->timer, handle_closed);
}
