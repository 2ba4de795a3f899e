/* test_api_metrics.c - /metrics of a real d2nwgd: `promtool check metrics`
 * (Prometheus's own linter) accepts it, durations are by route template with
 * long-polls in their own histogram, the process_* families read this
 * daemon's /proc, and the `metrics` token scope reads /metrics only. */
#include "apitest.h"

/* The sample value of one series line ("name{labels}" exactly) in text, or -1. */
static double series_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1.0;
}

/* Run `promtool check metrics` on text; returns its exit status, its output in out. */
static int promtool_check(const char *dir, const char *text, char *out, size_t cap)
{
    char file[700], cmd[1600];
    snprintf(file, sizeof file, "%s/metrics.txt", dir);
    tu_write_bytes(file, text, strlen(text));
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' 2>&1", file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_promtool_and_families(void **state)
{
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        fail_msg("promtool is not installed (Debian package prometheus; make deps installs it)");
    char *dir = tu_tmpdir("api-metrics");
    at_daemon d;
    at_start(&d, dir, "main", NULL);
    at_wait_ready(&d);
    /* traffic on a few routes: 200, 404, 405 and a long-poll on a job */
    at_resp r = at_get(&d, "/v1/generators");
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    r = at_get(&d, "/nowhere");
    assert_int_equal(r.status, 404);
    at_resp_free(&r);
    r = at_request(&d, "POST", "/healthz", "{}", 2, NULL);
    assert_int_equal(r.status, 405);
    at_resp_free(&r);
    json_t *job = at_job_json(2, 5, 7, 3);
    char id[64];
    at_submit(&d, job, id);
    json_decref(job);
    json_t *done = at_wait_done(&d, id, 120); /* GET ?wait=10: long-polls */
    json_decref(done);

    r = at_get(&d, "/metrics");
    assert_int_equal(r.status, 200);
    char out[4096];
    int rc = promtool_check(dir, r.body, out, sizeof out);
    if (rc != 0 || out[0])
        fail_msg("promtool check metrics: exit %d:\n%s", rc, out);
    /* by route template; the long-polls of GET /v1/jobs/{id} are not request durations */
    assert_true(series_value(r.body, "d2nwgd_http_request_duration_seconds_count"
                                     "{route=\"/v1/generators\"}") == 1.0);
    assert_true(series_value(r.body, "d2nwgd_http_request_duration_seconds_count"
                                     "{route=\"unmatched\"}") == 1.0);
    assert_true(series_value(r.body, "d2nwgd_http_request_duration_seconds_count"
                                     "{route=\"/v1/jobs/{id}\"}") < 0.0);
    double polls = series_value(r.body, "d2nwgd_http_long_poll_duration_seconds_count");
    double poll_200 =
        series_value(r.body, "d2nwgd_http_requests_total{route=\"/v1/jobs/{id}\",code=\"200\"}");
    assert_true(polls >= 1.0 && polls == poll_200);
    /* process_* of this daemon */
    time_t now = time(NULL);
    double start = series_value(r.body, "process_start_time_seconds");
    assert_true(start > (double)now - 600.0 && start <= (double)now + 1.0);
    assert_true(series_value(r.body, "process_resident_memory_bytes") > 1e6);
    assert_true(series_value(r.body, "process_open_fds") >= 5.0);
    assert_true(series_value(r.body, "process_cpu_seconds_total") > 0.0);
    /* the CPU backend knows its total (physical memory) */
    assert_true(series_value(r.body, "d2nwgd_device_memory_total_bytes"
                                     "{worker=\"0\",device=\"cpu\"}") > 1e6);
    at_resp_free(&r);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
    tu_rmrf(dir);
    free(dir);
}

static void test_metrics_scope(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("api-metrics-scope");
    char tokens[700];
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    const char *text = "scrape-secret-0001 metrics prometheus\nreader-secret-0001 read dash\n";
    tu_write_bytes(tokens, text, strlen(text));
    const char *args[] = {"--tokens", tokens, NULL};
    at_daemon d;
    at_start(&d, dir, "main", args);
    at_wait_ready(&d);
    const char *scraper[] = {"Authorization: Bearer scrape-secret-0001", NULL};
    const char *reader[] = {"Authorization: Bearer reader-secret-0001", NULL};
    at_resp r = at_get(&d, "/metrics");
    at_expect_error(&r, 401, "unauthenticated", NULL);
    at_resp_free(&r);
    r = at_request(&d, "GET", "/metrics", NULL, 0, scraper);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "d2nwgd_ready 1\n"));
    at_resp_free(&r);
    r = at_request(&d, "GET", "/metrics", NULL, 0, reader);
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    /* the scraper's token reads nothing else */
    const char *paths[] = {"/v1/jobs", "/v1/generators"};
    for (int i = 0; i < 2; i++) {
        r = at_request(&d, "GET", paths[i], NULL, 0, scraper);
        at_expect_error(&r, 403, "permission_denied", NULL);
        assert_non_null(strstr(r.body, "lacks the read scope"));
        at_resp_free(&r);
    }
    r = at_request(&d, "POST", "/v1/jobs", "{}", 2, scraper);
    at_expect_error(&r, 403, "permission_denied", NULL);
    at_resp_free(&r);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promtool_and_families),
        cmocka_unit_test(test_metrics_scope),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
