/* test_http.c - server/http alone: its own libuv loop on a thread, a fake
 * callback table (no routes, jobs or daemon), a loopback port, and real
 * requests through libcurl. Checks status and body, X-Request-Id, a request
 * suspended and resumed (by the owner's on_resume, with a prepared answer, and
 * by http_resume_all through the holder's release), and body-size refusals. */
#include "testutil.h"

#include <curl/curl.h>
#include <strings.h>
#include <stdatomic.h>
#include <uv.h>

#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY_LIMIT 1024

typedef struct fake {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    uv_timer_t later; /* resumes the held request */
    http *h;
    http_req *held;
    int later_kind;   /* what `later` does: 0 resume, 1 prepared answer, 2 resume all */
    atomic_int completed;   /* on_completed calls */
    atomic_int last_status; /* status of the last completed request */
    atomic_int released;    /* release(answer = 1) calls */
    atomic_int resumed;     /* on_resume calls */
    atomic_int oversized;   /* on_body calls with a body past the limit */
    atomic_int headers_seen; /* on_headers calls */
} fake;

/* ---- the fake owner ---- */

static void on_later(uv_timer_t *t)
{
    fake *f = t->data;
    http_req *r = f->held;
    if (f->later_kind == 2) {
        http_resume_all(f->h);
        return;
    }
    f->held = NULL;
    if (f->later_kind == 1)
        http_resume_json(r, 201, json_pack("{s:b}", "prepared", 1));
    else
        http_resume(r);
}

static void release_held(void *ctx, http_req *r, int answer)
{
    fake *f = ctx;
    f->held = NULL;
    if (!answer)
        return;
    atomic_fetch_add(&f->released, 1);
    api_error e;
    api_fail(&e, 409, "conflict", "wait", "released by its holder");
    http_resume_error(r, &e, 0);
}

static void hold(fake *f, http_req *r, int kind, http_release_fn release)
{
    f->held = r;
    f->later_kind = kind;
    http_suspend(r, release, f);
    uv_timer_start(&f->later, on_later, 30, 0);
}

static int fake_headers(void *user, http_req *r)
{
    fake *f = user;
    atomic_fetch_add(&f->headers_seen, 1);
    if (r->method == HTTP_POST)
        http_expect_body(r);
    return 0;
}

static int fake_body(void *user, http_req *r)
{
    fake *f = user;
    if (r->body_too_large)
        atomic_fetch_add(&f->oversized, 1);
    if (http_refuse_oversized(r))
        return 0;
    if (!strcmp(r->path, "/hello"))
        return http_send_json(r, 200, json_pack("{s:s}", "hello", "world"));
    if (!strcmp(r->path, "/echo"))
        return http_send_json(r, 200, json_pack("{s:s, s:i}", "body",
                                                r->body ? (const char *)r->body : "", "len",
                                                (int)r->body_len));
    if (!strcmp(r->path, "/wait")) {
        hold(f, r, 0, release_held);
        return 0;
    }
    if (!strcmp(r->path, "/prepared")) {
        hold(f, r, 1, release_held);
        return 0;
    }
    if (!strcmp(r->path, "/stop-held")) {
        hold(f, r, 2, release_held);
        return 0;
    }
    if (!strcmp(r->path, "/stop-bare")) {
        hold(f, r, 2, NULL);
        return 0;
    }
    return http_errorf(r, 404, "not_found", NULL, 0, "no route for %s", r->path);
}

static int fake_resume(void *user, http_req *r)
{
    fake *f = user;
    atomic_fetch_add(&f->resumed, 1);
    return http_send_json(r, 200, json_pack("{s:b}", "resumed", 1));
}

static void fake_completed(void *user, const http_req *r, double seconds, int terminated)
{
    fake *f = user;
    (void)seconds;
    (void)terminated;
    atomic_store(&f->last_status, r->status);
    atomic_fetch_add(&f->completed, 1);
}

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_stop(uv_async_t *a)
{
    fake *f = a->data;
    http_stop(f->h);
    uv_close((uv_handle_t *)&f->stop, handle_closed);
    uv_close((uv_handle_t *)&f->later, handle_closed);
}

static void loop_thread(void *arg)
{
    fake *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int setup(void **state)
{
    fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_async_init(&f->loop, &f->stop, on_stop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->later), 0);
    f->stop.data = f->later.data = f;
    static const http_callbacks cb = {fake_headers, fake_body, fake_resume, fake_completed,
                                      NULL};
    http_options o = {.host = "127.0.0.1", .port = 0, .body_limit = BODY_LIMIT,
                      .max_connections = 64, .max_connections_per_client = 0,
                      .connection_timeout = 10};
    d2_error err;
    d2_error_clear(&err);
    if (http_start(&f->h, &f->loop, &o, &cb, f, &err) != 0)
        fail_msg("http_start: %s", err.msg);
    assert_true(http_port(f->h) > 0);
    assert_int_equal(uv_thread_create(&f->thread, loop_thread, f), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fake *f = *state;
    uv_async_send(&f->stop);
    uv_thread_join(&f->thread);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* ---- a client ---- */

typedef struct reply {
    long status;
    char body[4096];
    size_t len;
    char request_id[80];
} reply;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t k = size * n;
    size_t room = sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, p, k < room ? k : room);
    r->len += k < room ? k : room;
    r->body[r->len] = '\0';
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    reply *r = ud;
    size_t k = size * n;
    if (k > 14 && !strncasecmp(p, "X-Request-Id: ", 14)) {
        size_t v = k - 14;
        while (v > 0 && (p[14 + v - 1] == '\r' || p[14 + v - 1] == '\n'))
            v--;
        snprintf(r->request_id, sizeof r->request_id, "%.*s", (int)v, p + 14);
    }
    return k;
}

/* body: NULL for GET; chunked sends it without Content-Length. */
static void request(const fake *f, const char *path, const char *body, int chunked, reply *out)
{
    memset(out, 0, sizeof *out);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", http_port(f->h), path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *hd = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (chunked)
            hd = curl_slist_append(hd, "Transfer-Encoding: chunked");
        else
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        hd = curl_slist_append(hd, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s: %s", path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
}

static json_t *body_json(const reply *r)
{
    json_t *v = json_loads(r->body, 0, NULL);
    if (!v)
        fail_msg("not JSON: %s", r->body);
    return v;
}

static const char *error_code(json_t *v)
{
    return json_string_value(json_object_get(json_object_get(v, "error"), "code"));
}

/* completion is reported after the response is sent: wait for it */
static void wait_completed(const fake *f, int n)
{
    for (int i = 0; i < 2000 && atomic_load(&f->completed) < n; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&f->completed), n);
}

/* ---- tests ---- */

static void test_get_and_post(void **state)
{
    fake *f = *state;
    reply r;
    request(f, "/hello", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"hello\":\"world\"}\n");
    assert_true(strlen(r.request_id) > 8); /* generated: prefix-counter */
    assert_non_null(strchr(r.request_id, '-'));
    request(f, "/echo", "{\"a\":[1,2,3]}", 0, &r);
    assert_int_equal(r.status, 200);
    json_t *v = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "body")), "{\"a\":[1,2,3]}");
    assert_int_equal(json_integer_value(json_object_get(v, "len")), 13);
    json_decref(v);
    request(f, "/nowhere", NULL, 0, &r);
    assert_int_equal(r.status, 404);
    v = body_json(&r);
    assert_string_equal(error_code(v), "not_found");
    json_decref(v);
    wait_completed(f, 3);
    assert_int_equal(atomic_load(&f->last_status), 404);
    assert_int_equal(http_active_requests(f->h), 0);
}

static void test_suspend_resume(void **state)
{
    fake *f = *state;
    reply r;
    request(f, "/wait", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"resumed\":true}\n");
    assert_int_equal(atomic_load(&f->resumed), 1);
    request(f, "/prepared", NULL, 0, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "{\"prepared\":true}\n");
    assert_int_equal(atomic_load(&f->resumed), 1); /* the prepared answer, not on_resume */
    wait_completed(f, 2);
    assert_int_equal(http_suspended_count(f->h), 0);
}

static void test_resume_all(void **state)
{
    fake *f = *state;
    reply r;
    /* the holder is released and answers */
    request(f, "/stop-held", NULL, 0, &r);
    assert_int_equal(r.status, 409);
    json_t *v = body_json(&r);
    assert_string_equal(error_code(v), "conflict");
    json_decref(v);
    assert_int_equal(atomic_load(&f->released), 1);
    /* no holder: the HTTP layer answers 503 */
    request(f, "/stop-bare", NULL, 0, &r);
    assert_int_equal(r.status, 503);
    v = body_json(&r);
    assert_string_equal(error_code(v), "shutting_down");
    json_decref(v);
    assert_int_equal(atomic_load(&f->released), 1);
    wait_completed(f, 2);
}

static void test_body_limit(void **state)
{
    fake *f = *state;
    char *big = malloc(BODY_LIMIT + 200);
    assert_non_null(big);
    memset(big, 'x', BODY_LIMIT + 199);
    big[BODY_LIMIT + 199] = '\0';
    reply r;
    /* announced by Content-Length: refused at the headers */
    request(f, "/echo", big, 0, &r);
    assert_int_equal(r.status, 413);
    json_t *v = body_json(&r);
    assert_string_equal(error_code(v), "payload_too_large");
    json_decref(v);
    assert_int_equal(atomic_load(&f->oversized), 0); /* on_body never saw it */
    /* chunked, no Content-Length: counted while it arrives, refused at the end */
    request(f, "/echo", big, 1, &r);
    assert_int_equal(r.status, 413);
    v = body_json(&r);
    assert_string_equal(error_code(v), "payload_too_large");
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(v, "error"),
                                                             "message")),
                           "1223 bytes"));
    json_decref(v);
    assert_int_equal(atomic_load(&f->oversized), 1);
    /* exactly the limit is fine */
    big[BODY_LIMIT] = '\0';
    request(f, "/echo", big, 1, &r);
    assert_int_equal(r.status, 200);
    v = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(v, "len")), BODY_LIMIT);
    json_decref(v);
    free(big);
}

/* Send a raw request on a fresh connection; the answer's status and body
 * (until the daemon closes, at most 5 s). */
static int raw_request(const fake *f, const char *req, size_t len, char *body, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)http_port(f->h));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    static char buf[1 << 16];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        status = 0;
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, cap, "%s", b ? b + 4 : "");
    return status;
}

static void expect_refused(const fake *f, const char *req, size_t len, int status,
                           const char *code, const char *field)
{
    char body[4096];
    assert_int_equal(raw_request(f, req, len, body, sizeof body), status);
    json_t *v = json_loads(body, 0, NULL);
    if (!v)
        fail_msg("not JSON: %s", body);
    assert_string_equal(error_code(v), code);
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "error"), "field")),
                        field);
    json_decref(v);
}

static void test_refused_before_the_owner(void **state)
{
    fake *f = *state;
    static const char *targets[] = {"/hello%00x", "/hello%0A", "/hel%7flo", "/hello?x=%1b"};
    char req[512];
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", targets[i]);
        expect_refused(f, req, (size_t)n, 400, "invalid_argument", "path");
    }
    static const char two[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                              "Content-Length: 3\r\n\r\n{}";
    expect_refused(f, two, strlen(two), 400, "invalid_argument", "header.Content-Length");
    static const char te[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    expect_refused(f, te, strlen(te), 400, "invalid_argument", "header.Transfer-Encoding");
    size_t n = HTTP_URI_MAX + 100;
    char *big = malloc(n + 64);
    assert_non_null(big);
    int k = snprintf(big, 64, "GET /hello?q=");
    memset(big + k, 'q', n);
    k += (int)n;
    k += snprintf(big + k, 40, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_refused(f, big, (size_t)k, 414, "uri_too_long", "path");
    free(big);
    /* the owner never saw any of them; an escape of a printable character is fine */
    assert_int_equal(atomic_load(&f->headers_seen), 0);
    reply r;
    request(f, "/hell%6f", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    /* a request MHD refuses itself after the URI callback is still completed */
    static const char ver[] = "GET /hello HTTP/3.0\r\nHost: x\r\n\r\n";
    char body[4096];
    assert_int_equal(raw_request(f, ver, strlen(ver), body, sizeof body), 505);
    for (int i = 0; i < 2000 && http_active_requests(f->h) > 0; i++)
        usleep(1000);
    assert_int_equal(http_active_requests(f->h), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_before_the_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suspend_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
