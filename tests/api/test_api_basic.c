/* test_api_basic.c - a real d2nwgd over real HTTP: probes, the OpenAPI
 * document, generators, request ids, unknown routes (404), wrong methods
 * (405 + Allow), metrics, bearer tokens (401/403) and rate limits (429). */
#include "apitest.h"

typedef struct ctx {
    char *dir;
    at_daemon d;
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    *state = c;
    c->dir = tu_tmpdir("api-basic");
    at_start(&c->d, c->dir, "main", NULL);
    at_wait_ready(&c->d);
    *state = c;
    return 0;
}

static int group_teardown(void **state)
{
    ctx *c = *state;
    if (!c)
        return 0;
    int code = at_stop(&c->d, SIGTERM, 30);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return code == 0 ? 0 : -1;
}

static void test_health_and_request_id(void **state)
{
    ctx *c = *state;
    char h[128];
    at_resp r = at_get(&c->d, "/healthz");
    assert_int_equal(r.status, 200);
    json_t *v = at_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(v, "version")), D2_VERSION);
    assert_true(json_number_value(json_object_get(v, "uptime_seconds")) > 0.0);
    json_decref(v);
    assert_string_equal(at_header(&r, "Content-Type", h, sizeof h), "application/json");
    assert_true(strlen(at_header(&r, "X-Request-Id", h, sizeof h)) > 0);
    assert_true(r.len > 0 && r.body[r.len - 1] == '\n');
    at_resp_free(&r);
    /* the client's id is echoed; an invalid one is replaced */
    const char *mine[] = {"X-Request-Id: pipeline-42.a_b", NULL};
    r = at_request(&c->d, "GET", "/healthz", NULL, 0, mine);
    assert_string_equal(at_header(&r, "X-Request-Id", h, sizeof h), "pipeline-42.a_b");
    at_resp_free(&r);
    const char *bad[] = {"X-Request-Id: no spaces allowed", NULL};
    r = at_request(&c->d, "GET", "/healthz", NULL, 0, bad);
    assert_string_not_equal(at_header(&r, "X-Request-Id", h, sizeof h), "no spaces allowed");
    assert_true(strlen(h) > 0);
    at_resp_free(&r);
    /* HEAD: headers only */
    r = at_request(&c->d, "HEAD", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    at_resp_free(&r);
    /* readiness */
    r = at_get(&c->d, "/readyz");
    assert_int_equal(r.status, 200);
    v = at_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "ready");
    assert_int_equal(json_integer_value(json_object_get(v, "generators")), 1);
    json_decref(v);
    at_resp_free(&r);
}

static void test_openapi(void **state)
{
    ctx *c = *state;
    at_resp r = at_get(&c->d, "/v1/openapi.yaml");
    assert_int_equal(r.status, 200);
    char h[128];
    assert_string_equal(at_header(&r, "Content-Type", h, sizeof h), "application/yaml");
    /* exactly the document in the tree (embedded at build time) */
    FILE *f = fopen("proto/openapi.yaml", "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *want = malloc((size_t)n);
    assert_int_equal(fread(want, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    assert_int_equal(r.len, (size_t)n);
    assert_memory_equal(r.body, want, (size_t)n);
    assert_non_null(strstr(r.body, "/v1/jobs/{id}:cancel:"));
    free(want);
    at_resp_free(&r);
}

static void test_generators(void **state)
{
    ctx *c = *state;
    at_resp r = at_get(&c->d, "/v1/generators");
    assert_int_equal(r.status, 200);
    json_t *v = at_json(&r);
    json_t *list = json_object_get(v, "generators");
    assert_int_equal(json_array_size(list), 1);
    json_t *g = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(g, "name")), "default");
    const char *id = json_string_value(json_object_get(g, "id"));
    assert_int_equal(strlen(id), 64);
    assert_int_equal(json_integer_value(json_object_get(g, "input_dim")), 784);
    assert_int_equal(json_integer_value(json_object_get(g, "feature_dim")), 128);
    assert_int_equal(json_integer_value(json_object_get(g, "max_way")), 5);
    assert_true(json_integer_value(json_object_get(g, "zoo_size")) > 0);
    assert_int_equal(strlen(json_string_value(json_object_get(g, "zoo_fingerprint"))), 64);
    assert_true(json_is_object(json_object_get(g, "provenance")));
    assert_true(json_is_object(json_object_get(g, "config")));
    assert_true(json_integer_value(json_object_get(json_object_get(g, "defaults"), "steps")) > 0);
    /* by name and by id */
    char path[200];
    snprintf(path, sizeof path, "/v1/generators/%s", id);
    at_resp r2 = at_get(&c->d, path);
    assert_int_equal(r2.status, 200);
    json_t *g2 = at_json(&r2);
    assert_string_equal(json_string_value(json_object_get(g2, "name")), "default");
    json_decref(g2);
    at_resp_free(&r2);
    r2 = at_get(&c->d, "/v1/generators/default");
    assert_int_equal(r2.status, 200);
    g2 = at_json(&r2);
    assert_string_equal(json_string_value(json_object_get(g2, "id")), id);
    json_decref(g2);
    at_resp_free(&r2);
    r2 = at_get(&c->d, "/v1/generators/nope");
    at_expect_error(&r2, 404, "not_found", NULL);
    at_resp_free(&r2);
    json_decref(v);
    at_resp_free(&r);
}

static void test_unknown_routes_and_methods(void **state)
{
    ctx *c = *state;
    const char *missing[] = {"/ui/", "/v2/jobs", "/v1/jobs/", "/healthz/x", "/v1/job",
                             "/v1/jobs/j_0123456789abcdef0123/x", "/%ff%fe/x"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        at_resp r = at_get(&c->d, missing[i]);
        at_expect_error(&r, 404, "not_found", NULL);
        at_resp_free(&r);
    }
    /* a %00 in the target is refused before routing (test_api_http has more) */
    at_resp r0 = at_get(&c->d, "/%ff%fe/%00x");
    at_expect_error(&r0, 400, "invalid_argument", "path");
    at_resp_free(&r0);
    /* well-formed routes, unknown objects */
    const char *absent[] = {"/v1/jobs/j_0123456789abcdef0123", "/v1/jobs/not-a-job",
                            "/v1/checkpoints/ck_0123456789abcdef0123_0",
                            "/v1/checkpoints/ck_0123456789abcdef0123_0/weights",
                            "/v1/checkpoints/ck_0123456789abcdef0123_0/lineage",
                            "/v1/checkpoints/junk",
                            "/v1/datasets/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                            "/v1/datasets/short", "/v1/generators/%c3%28",
                            "/v1/jobs/j_%ff%ff"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        at_resp r = at_get(&c->d, absent[i]);
        at_expect_error(&r, 404, "not_found", NULL);
        at_resp_free(&r);
    }
    at_resp r = at_get(&c->d, "/v1/jobs?after=j_%ff");
    at_expect_error(&r, 400, "invalid_argument", "query.after");
    at_resp_free(&r);
    r = at_request(&c->d, "POST", "/v1/jobs/j_0123456789abcdef0123:cancel", "", 0, NULL);
    at_expect_error(&r, 404, "not_found", NULL);
    at_resp_free(&r);
    struct {
        const char *method, *path, *allow;
    } wrong[] = {
        {"DELETE", "/v1/jobs", "GET, HEAD, POST"},
        {"PUT", "/v1/jobs/j_0123456789abcdef0123", "GET, HEAD"},
        {"POST", "/healthz", "GET, HEAD"},
        {"GET", "/v1/retrieve", "POST"},
        {"GET", "/v1/jobs/j_0123456789abcdef0123:cancel", "POST"},
        {"POST", "/v1/checkpoints/ck_0123456789abcdef0123_0/weights", "GET, HEAD"},
        {"PATCH", "/v1/datasets", "POST"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        r = at_request(&c->d, wrong[i].method, wrong[i].path, NULL, 0, NULL);
        at_expect_error(&r, 405, "method_not_allowed", NULL);
        char h[64];
        if (strcmp(at_header(&r, "Allow", h, sizeof h), wrong[i].allow) != 0)
            fail_msg("%s %s: Allow '%s', expected '%s'", wrong[i].method, wrong[i].path, h,
                     wrong[i].allow);
        at_resp_free(&r);
    }
    /* the daemon is still up */
    r = at_get(&c->d, "/healthz");
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
}

static void test_metrics(void **state)
{
    ctx *c = *state;
    double before = at_metric(&c->d, "d2nwgd_http_requests_total{route=\"/healthz\",code=\"200\"}");
    for (int i = 0; i < 3; i++) {
        at_resp r = at_get(&c->d, "/healthz");
        at_resp_free(&r);
    }
    at_resp r = at_get(&c->d, "/nowhere");
    at_resp_free(&r);
    double after = at_metric(&c->d, "d2nwgd_http_requests_total{route=\"/healthz\",code=\"200\"}");
    TU_ASSERT_NEAR(after - (before < 0 ? 0 : before), 3.0, 0);
    assert_true(at_metric(&c->d, "d2nwgd_http_requests_total{route=\"unmatched\",code=\"404\"}") >=
                1.0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_ready"), 1.0, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_generators_loaded"), 1.0, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs{state=\"queued\"}"), 0.0, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs_pending"), 0.0, 0);
    assert_true(at_metric(&c->d, "d2nwgd_job_queue_wait_seconds_count") >= 0.0);
    assert_true(at_metric(&c->d, "d2nwgd_job_generation_seconds_bucket{le=\"+Inf\"}") >= 0.0);
    assert_true(at_metric(&c->d, "d2nwgd_device_memory_used_bytes{worker=\"0\",device=\"cpu\"}") >=
                0.0);
    r = at_get(&c->d, "/metrics");
    char h[128];
    assert_string_equal(at_header(&r, "Content-Type", h, sizeof h),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "# TYPE d2nwgd_http_request_duration_seconds histogram"));
    at_resp_free(&r);
}

static void write_file(const char *path, const char *text)
{
    tu_write_bytes(path, text, strlen(text));
}

static void test_tokens(void **state)
{
    ctx *c = *state;
    char tokens[700];
    snprintf(tokens, sizeof tokens, "%s/tokens", c->dir);
    write_file(tokens, "writer-secret-0001 write ci\nreader-secret-0001 read dash\n");
    at_daemon d;
    const char *args[] = {"--tokens", tokens, NULL};
    at_start(&d, c->dir, "auth", args);
    at_wait_ready(&d); /* /readyz is open */
    at_resp r = at_get(&d, "/healthz");
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    r = at_get(&d, "/v1/openapi.yaml");
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    const char *paths[] = {"/v1/generators", "/metrics", "/v1/jobs"};
    for (size_t i = 0; i < 3; i++) {
        r = at_get(&d, paths[i]);
        at_expect_error(&r, 401, "unauthenticated", NULL);
        char h[128];
        assert_non_null(strstr(at_header(&r, "WWW-Authenticate", h, sizeof h), "Bearer"));
        at_resp_free(&r);
    }
    const char *wrong[] = {"Authorization: Bearer reader-secret-0002", NULL};
    r = at_request(&d, "GET", "/v1/generators", NULL, 0, wrong);
    at_expect_error(&r, 401, "unauthenticated", NULL);
    at_resp_free(&r);
    const char *reader[] = {"Authorization: Bearer reader-secret-0001", NULL};
    r = at_request(&d, "GET", "/v1/generators", NULL, 0, reader);
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    r = at_request(&d, "GET", "/metrics", NULL, 0, reader);
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    json_t *job = at_job_json(2, 5, 1, 1);
    r = at_post_json(&d, "/v1/jobs", job, reader);
    at_expect_error(&r, 403, "permission_denied", NULL);
    at_resp_free(&r);
    r = at_post_json(&d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 401, "unauthenticated", NULL);
    at_resp_free(&r);
    const char *writer[] = {"Authorization: Bearer writer-secret-0001", NULL};
    r = at_post_json(&d, "/v1/jobs", job, writer);
    assert_int_equal(r.status, 202);
    at_resp_free(&r);
    /* nothing was stored for the refused requests */
    r = at_request(&d, "GET", "/v1/jobs", NULL, 0, writer);
    json_t *v = at_json(&r);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 1);
    json_decref(v);
    at_resp_free(&r);
    json_decref(job);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);

    /* a bad tokens file stops the start with an error */
    write_file(tokens, "tiny read\n");
    at_daemon bad;
    memset(&bad, 0, sizeof bad);
    char bin[600], logp[800];
    tu_build_path(bin, sizeof bin, "d2nwgd");
    snprintf(logp, sizeof logp, "%s/badtokens.log", c->dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' --generator '%s' --listen 127.0.0.1:0 --data '%s/badtokens' --tokens '%s' "
             "2>'%s'",
             bin, at_fixture(), c->dir, tokens, logp);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
}

static void test_rate_limit(void **state)
{
    ctx *c = *state;
    at_daemon d;
    const char *args[] = {"--rate-limit", "2", "--rate-burst", "3", NULL};
    at_start(&d, c->dir, "rate", args);
    at_wait_ready(&d);
    for (int i = 0; i < 3; i++) {
        at_resp r = at_get(&d, "/v1/generators");
        assert_int_equal(r.status, 200);
        at_resp_free(&r);
    }
    at_resp r = at_get(&d, "/v1/generators");
    at_expect_error(&r, 429, "rate_limited", NULL);
    char h[32];
    int retry = atoi(at_header(&r, "Retry-After", h, sizeof h));
    assert_int_equal(retry, 1);
    at_resp_free(&r);
    /* probes are not limited */
    for (int i = 0; i < 5; i++) {
        r = at_get(&d, "/healthz");
        assert_int_equal(r.status, 200);
        at_resp_free(&r);
    }
    at_sleep(0.6); /* one request's worth of budget back for the scrape */
    TU_ASSERT_NEAR(at_metric(&d, "d2nwgd_rate_limited_total"), 1.0, 0.0);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_request_id),
        cmocka_unit_test(test_openapi),
        cmocka_unit_test(test_generators),
        cmocka_unit_test(test_unknown_routes_and_methods),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_rate_limit),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
