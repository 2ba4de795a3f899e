/* test_metrics.c - server/metrics: histogram buckets and the Prometheus text. */
#include "testutil.h"

#include <time.h>

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
    metrics_http(&m, 0, 200, 0.0001, 0);
    metrics_http(&m, 0, 200, 0.0002, 0);
    metrics_http(&m, 1, 202, 0.003, 0);
    metrics_http(&m, 1, 422, 0.001, 0);
    metrics_http(&m, -1, 404, 0.0001, 0);
    metrics_http(&m, 1, 200, 30.0, 1); /* a 30 s long-poll */
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
    s.store_available = 1;
    s.workers = 2;
    s.device = "cpu";
    s.mem_used[1] = 4096;
    s.mem_total[1] = 0; /* unknown: no total series */
    s.process = (metrics_process){1, 1700000000.5, 2.25, 4096.0 * 1024, 8192.0 * 1024, 7, 1024};
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
        "d2nwgd_http_request_duration_seconds_count{route=\"/healthz\"} 2\n",
        "d2nwgd_http_request_duration_seconds_bucket{route=\"/v1/jobs\",le=\"0.001\"} 1\n",
        "d2nwgd_http_request_duration_seconds_bucket{route=\"/v1/jobs\",le=\"+Inf\"} 2\n",
        "d2nwgd_http_request_duration_seconds_count{route=\"unmatched\"} 1\n",
        "d2nwgd_http_long_poll_duration_seconds_bucket{le=\"20\"} 0\n",
        "d2nwgd_http_long_poll_duration_seconds_bucket{le=\"30\"} 1\n",
        "d2nwgd_http_long_poll_duration_seconds_count 1\n",
        "d2nwgd_http_requests_total{route=\"/v1/jobs\",code=\"200\"} 1\n",
        "process_cpu_seconds_total 2.25\n",
        "process_start_time_seconds 1700000000.5\n",
        "process_resident_memory_bytes 4194304\n",
        "process_open_fds 7\n",
        "d2nwgd_jobs_submitted_total 5\n",
        "d2nwgd_jobs_finished_total{state=\"succeeded\"} 4\n",
        "d2nwgd_device_memory_used_bytes{worker=\"1\",device=\"cpu\"} 4096\n",
        "d2nwgd_ready 1\n",
        "d2nwgd_store_available 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("metrics lack: %s\n--- text ---\n%s", want[i], text);
    /* the 30 s long-poll is not a request duration; an unknown total is absent */
    assert_null(strstr(text, "duration_seconds_sum{route=\"/v1/jobs\"} 30"));
    assert_null(strstr(text, "d2nwgd_device_memory_total_bytes"));
    /* every non-comment line is "name{labels} value" or "name value" */
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        assert_true(!strncmp(line, "d2nwgd_", 7) || !strncmp(line, "process_", 8));
        const char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        strtod(sp + 1, &end);
        assert_true(*end == '\0');
    }
    free(text);
}

static void test_device_total_and_process(void **state)
{
    (void)state;
    static metrics m;
    const char *routes[] = {"/healthz"};
    metrics_init(&m, routes, 1);
    metrics_snapshot s;
    memset(&s, 0, sizeof s);
    s.workers = 2;
    s.device = "cuda:0";
    s.mem_total[0] = 1024; /* worker 1's total is unknown */
    char *text;
    size_t len;
    assert_int_equal(metrics_render(&m, &s, &text, &len), 0);
    assert_non_null(
        strstr(text, "d2nwgd_device_memory_total_bytes{worker=\"0\",device=\"cuda:0\"} 1024\n"));
    assert_null(strstr(text, "d2nwgd_device_memory_total_bytes{worker=\"1\""));
    assert_null(strstr(text, "process_")); /* process.ok = 0: left out */
    free(text);

    /* this process, read from /proc/self */
    metrics_process p;
    assert_int_equal(metrics_process_read(&p), 0);
    assert_int_equal(p.ok, 1);
    double now = (double)time(NULL);
    assert_true(p.start_time <= now + 1.0 && p.start_time > now - 3600.0);
    assert_true(p.resident_bytes > 1e5 && p.virtual_bytes >= p.resident_bytes);
    assert_true(p.open_fds >= 3.0 && p.max_fds >= p.open_fds);
    assert_true(p.cpu_seconds >= 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_device_total_and_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
