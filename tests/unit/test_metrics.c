/* test_metrics.c - server/metrics: histogram buckets and the Prometheus text. */
#include "testutil.h"

#include "metrics.h"

static void test_histogram(void **state)
{
    (void)state;
    histogram h;
    const double b[] = {0.1, 1.0, 10.0};
    histogram_init(&h, b, 3);
    histogram_observe(&h, 0.05);
    histogram_observe(&h, 0.1); /* le is inclusive */
    histogram_observe(&h, 0.5);
    histogram_observe(&h, 100.0);
    assert_true(h.counts[0] == 2 && h.counts[1] == 1 && h.counts[2] == 0 && h.counts[3] == 1);
    assert_true(h.count == 4);
    TU_ASSERT_NEAR(h.sum, 100.65, 1e-9);
}

static void test_render(void **state)
{
    (void)state;
    static metrics m;
    const char *routes[] = {"/healthz", "/v1/jobs"};
    metrics_init(&m, routes, 2);
    metrics_http(&m, 0, 200, 0.0001);
    metrics_http(&m, 0, 200, 0.0002);
    metrics_http(&m, 1, 202, 0.003);
    metrics_http(&m, 1, 422, 0.001);
    metrics_http(&m, -1, 404, 0.0001);
    histogram_observe(&m.queue_wait, 0.02);
    histogram_observe(&m.generation, 0.3);
    m.jobs_submitted = 5;
    m.jobs_finished[API_JOB_SUCCEEDED] = 4;
    metrics_snapshot s;
    memset(&s, 0, sizeof s);
    s.jobs_by_state[API_JOB_SUCCEEDED] = 4;
    s.jobs_by_state[API_JOB_QUEUED] = 1;
    s.pending = 1;
    s.ready = 1;
    s.workers = 2;
    s.device = "cpu";
    s.mem_used[1] = 4096;
    char *text;
    size_t len;
    assert_int_equal(metrics_render(&m, &s, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    const char *want[] = {
        "d2nwgd_http_requests_total{route=\"/healthz\",code=\"200\"} 2\n",
        "d2nwgd_http_requests_total{route=\"/v1/jobs\",code=\"202\"} 1\n",
        "d2nwgd_http_requests_total{route=\"/v1/jobs\",code=\"422\"} 1\n",
        "d2nwgd_http_requests_total{route=\"unmatched\",code=\"404\"} 1\n",
        "d2nwgd_jobs{state=\"succeeded\"} 4\n",
        "d2nwgd_jobs{state=\"queued\"} 1\n",
        "d2nwgd_jobs{state=\"failed\"} 0\n",
        "d2nwgd_jobs_pending 1\n",
        "# TYPE d2nwgd_job_queue_wait_seconds histogram\n",
        "d2nwgd_job_queue_wait_seconds_bucket{le=\"0.025\"} 1\n",
        "d2nwgd_job_queue_wait_seconds_bucket{le=\"0.01\"} 0\n",
        "d2nwgd_job_queue_wait_seconds_count 1\n",
        "d2nwgd_job_generation_seconds_bucket{le=\"+Inf\"} 1\n",
        "d2nwgd_http_request_duration_seconds_count 5\n",
        "d2nwgd_jobs_submitted_total 5\n",
        "d2nwgd_jobs_finished_total{state=\"succeeded\"} 4\n",
        "d2nwgd_device_memory_used_bytes{worker=\"1\",device=\"cpu\"} 4096\n",
        "d2nwgd_ready 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("metrics lack: %s\n--- text ---\n%s", want[i], text);
    /* every non-comment line is "name{labels} value" or "name value" */
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        assert_int_equal(strncmp(line, "d2nwgd_", 7), 0);
        const char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        strtod(sp + 1, &end);
        assert_true(*end == '\0');
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
