/* test_api_load.c - 100 submissions at once over 100 connections (libcurl
 * multi) to a daemon with two workers: every one accepted with its own job,
 * every job finishing; ten of them share an Idempotency-Key and body and must
 * yield exactly one job. */
#include "apitest.h"

#include "api.h"

#define N_JOBS 100
#define N_SAME 10 /* of which share one key and body */

typedef struct ctx {
    char *dir;
    at_daemon d;
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    *state = c;
    c->dir = tu_tmpdir("api-load");
    const char *args[] = {"--workers", "2", NULL}; /* two generation threads at once */
    at_start(&c->d, c->dir, "load", args);
    at_wait_ready(&c->d);
    *state = c;
    return 0;
}

static int group_teardown(void **state)
{
    ctx *c = *state;
    if (!c)
        return 0;
    int code = at_stop(&c->d, SIGTERM, 60);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return code == 0 ? 0 : -1;
}

typedef struct sub {
    CURL *h;
    struct curl_slist *hdr;
    char *body;
    at_resp r;
    long status;
} sub;

static void test_concurrent_submissions(void **state)
{
    ctx *c = *state;
    static sub s[N_JOBS];
    CURLM *m = curl_multi_init();
    assert_non_null(m);
    char url[200];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/jobs", c->d.port);
    for (int i = 0; i < N_JOBS; i++) {
        int same = i < N_SAME;
        json_t *job = at_job_json(1, 5, same ? 777 : 1000 + i, same ? 1 : (unsigned)(i % 7));
        s[i].body = json_dumps(job, JSON_COMPACT);
        json_decref(job);
        s[i].hdr = curl_slist_append(NULL, "Content-Type: application/json");
        s[i].hdr = curl_slist_append(s[i].hdr, "Expect:");
        if (same)
            s[i].hdr = curl_slist_append(s[i].hdr, "Idempotency-Key: the-same-one");
        s[i].h = curl_easy_init();
        curl_easy_setopt(s[i].h, CURLOPT_URL, url);
        curl_easy_setopt(s[i].h, CURLOPT_POSTFIELDS, s[i].body);
        curl_easy_setopt(s[i].h, CURLOPT_HTTPHEADER, s[i].hdr);
        curl_easy_setopt(s[i].h, CURLOPT_WRITEFUNCTION, at_write_cb);
        curl_easy_setopt(s[i].h, CURLOPT_WRITEDATA, &s[i].r);
        curl_easy_setopt(s[i].h, CURLOPT_TIMEOUT, 120L);
        curl_easy_setopt(s[i].h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s[i].h, CURLOPT_PRIVATE, &s[i]);
        curl_multi_add_handle(m, s[i].h);
    }
    int running = 1;
    double t0 = at_now();
    while (running) {
        assert_int_equal(curl_multi_perform(m, &running), CURLM_OK);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
        assert_true(at_now() - t0 < 120.0);
    }
    double took = at_now() - t0;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)))
        if (msg->msg == CURLMSG_DONE) {
            sub *x;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &x->status);
        }
    char ids[N_JOBS][64];
    int accepted = 0, replayed = 0;
    for (int i = 0; i < N_JOBS; i++) {
        if (s[i].status != 202 && s[i].status != 200)
            fail_msg("submission %d: status %ld %.300s", i, s[i].status,
                     s[i].r.body ? s[i].r.body : "");
        if (s[i].status == 202)
            accepted++;
        else
            replayed++;
        json_t *v = at_json(&s[i].r);
        const char *id = json_string_value(json_object_get(v, "id"));
        assert_true(api_is_job_id(id));
        snprintf(ids[i], 64, "%s", id);
        json_decref(v);
        curl_multi_remove_handle(m, s[i].h);
        curl_easy_cleanup(s[i].h);
        curl_slist_free_all(s[i].hdr);
        free(s[i].body);
        at_resp_free(&s[i].r);
    }
    curl_multi_cleanup(m);
    print_message("%d submissions over %d connections in %.2f s\n", N_JOBS, N_JOBS, took);
    /* one job for the ten that share a key, one each for the rest */
    assert_int_equal(accepted, N_JOBS - N_SAME + 1);
    assert_int_equal(replayed, N_SAME - 1);
    for (int i = 1; i < N_SAME; i++)
        assert_string_equal(ids[i], ids[0]);
    for (int i = N_SAME; i < N_JOBS; i++)
        for (int k = 0; k < i; k++)
            if (k >= N_SAME || k == 0)
                assert_string_not_equal(ids[i], ids[k]);
    /* every job finishes */
    for (int i = N_SAME - 1; i < N_JOBS; i++) {
        json_t *j = at_wait_done(&c->d, ids[i], 120);
        if (strcmp(at_state(j), "succeeded") != 0)
            fail_msg("job %s ended %s", ids[i], at_state(j));
        json_decref(j);
    }
    int jobs = N_JOBS - N_SAME + 1;
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs{state=\"succeeded\"}"), jobs, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs_submitted_total"), jobs, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_job_generation_seconds_count"), jobs, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_job_queue_wait_seconds_count"), jobs, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs_pending"), 0, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs_running"), 0, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_http_requests_total{route=\"/v1/jobs\",code=\"202\"}"),
                   jobs, 0);
    assert_int_equal(at_count_jobs(&c->d, "succeeded"), jobs);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_submissions),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
