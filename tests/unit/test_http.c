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
    (void)user;
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

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suspend_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
