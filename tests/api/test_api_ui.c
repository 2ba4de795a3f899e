/* test_api_ui.c - the dashboard's files and GET /v1/session over real HTTP:
 * / and /ui/{file} serve exactly the files of ui/ (embedded at build time)
 * with their content types and a Content-Security-Policy that allows only
 * this daemon, need no token even with tokens on, and refuse what is not
 * there; /v1/session says whether tokens are on and what a token may do
 * (without answering 401). The page itself is tested in a browser:
 * tests/browser/dashboard.sh. */
#include "apitest.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* GET path answers 200 with the bytes of `file` and this content type. */
static void expect_file(const at_daemon *d, const char *path, const char *file, const char *type)
{
    at_resp r = at_get(d, path);
    assert_int_equal(r.status, 200);
    char h[512];
    assert_string_equal(at_header(&r, "Content-Type", h, sizeof h), type);
    assert_non_null(strstr(at_header(&r, "Content-Security-Policy", h, sizeof h),
                           "default-src 'none'; script-src 'self'"));
    assert_string_equal(at_header(&r, "X-Content-Type-Options", h, sizeof h), "nosniff");
    size_t n;
    char *want = slurp(file, &n);
    assert_int_equal(r.len, n);
    assert_memory_equal(r.body, want, n);
    free(want);
    at_resp_free(&r);
}

static void expect_session(const at_daemon *d, const char *token, int auth, const char *principal,
                           const char *scope)
{
    char hdr[128];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", token ? token : "");
    const char *h[] = {hdr, NULL};
    at_resp r = at_request(d, "GET", "/v1/session", NULL, 0, token ? h : NULL);
    assert_int_equal(r.status, 200);
    json_t *v = at_json(&r);
    assert_int_equal(json_is_true(json_object_get(v, "auth")), auth);
    const char *p = json_string_value(json_object_get(v, "principal"));
    const char *s = json_string_value(json_object_get(v, "scope"));
    if (principal)
        assert_string_equal(p, principal);
    else
        assert_true(json_is_null(json_object_get(v, "principal")));
    if (scope)
        assert_string_equal(s, scope);
    else
        assert_true(json_is_null(json_object_get(v, "scope")));
    json_decref(v);
    at_resp_free(&r);
}

static void test_files_and_session(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("api-ui");
    at_daemon d;
    at_start(&d, dir, "open", NULL);
    expect_file(&d, "/", "ui/index.html", "text/html; charset=utf-8");
    expect_file(&d, "/ui/app.js", "ui/app.js", "text/javascript; charset=utf-8");
    expect_file(&d, "/ui/api.js", "ui/api.js", "text/javascript; charset=utf-8");
    expect_file(&d, "/ui/app.css", "ui/app.css", "text/css; charset=utf-8");
    at_resp r = at_get(&d, "/");
    assert_non_null(strstr(r.body, "<script src=\"/ui/app.js\" defer></script>"));
    assert_null(strstr(r.body, "http://")); /* nothing from elsewhere */
    assert_null(strstr(r.body, "https://"));
    at_resp_free(&r);
    r = at_get(&d, "/ui/nothing.js");
    at_expect_error(&r, 404, "not_found", NULL);
    at_resp_free(&r);
    r = at_get(&d, "/ui/..%2Fproto%2Fopenapi.yaml");
    assert_int_equal(r.status, 404);
    at_resp_free(&r);
    r = at_request(&d, "POST", "/", "{}", 2, NULL);
    at_expect_error(&r, 405, "method_not_allowed", NULL);
    at_resp_free(&r);
    expect_session(&d, NULL, 0, "anonymous", "write");
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);

    /* tokens on: the page and the session need none; the API does */
    char tokens[700];
    snprintf(tokens, sizeof tokens, "%s/tokens.txt", dir);
    FILE *f = fopen(tokens, "w");
    assert_non_null(f);
    fprintf(f, "ui-test-write-token write writer\nui-test-read-token read reader\n"
               "ui-test-metrics-token metrics scraper\n");
    fclose(f);
    const char *args[] = {"--tokens", tokens, NULL};
    at_start(&d, dir, "tokens", args);
    expect_file(&d, "/", "ui/index.html", "text/html; charset=utf-8");
    expect_file(&d, "/ui/jobs.js", "ui/jobs.js", "text/javascript; charset=utf-8");
    expect_session(&d, NULL, 1, NULL, NULL);
    expect_session(&d, "not-a-token-at-all", 1, NULL, NULL);
    expect_session(&d, "ui-test-metrics-token", 1, "scraper", "metrics");
    expect_session(&d, "ui-test-read-token", 1, "reader", "read");
    expect_session(&d, "ui-test-write-token", 1, "writer", "write");
    r = at_get(&d, "/v1/events");
    at_expect_error(&r, 401, "unauthenticated", NULL);
    at_resp_free(&r);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_and_session),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
