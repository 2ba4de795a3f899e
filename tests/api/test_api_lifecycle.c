/* test_api_lifecycle.c - the daemon's life over real HTTP and real signals:
 * kill -9 mid-job and restart (jobs re-queued and finished with the same
 * weights as `d2nwg generate`), SIGTERM drain (long-polls answered, running
 * job stopped at a step boundary and re-queued, exit 0), SIGTERM with a
 * grace period (the running job finishes), queue full (503 + Retry-After),
 * and start-up failures. */
#include <pthread.h>

#include "apitest.h"

#include "api.h"
#include "safetensors.h"
#include "sha256.h"

typedef struct ctx {
    char *dir;
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    *state = c;
    c->dir = tu_tmpdir("api-life");
    at_fixture();
    *state = c;
    return 0;
}

static int group_teardown(void **state)
{
    ctx *c = *state;
    if (!c)
        return 0;
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return 0;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int log_contains(const at_daemon *d, const char *needle)
{
    size_t n;
    unsigned char *b = read_file(d->log, &n);
    b[n] = '\0';
    int found = strstr((char *)b, needle) != NULL;
    free(b);
    return found;
}

static void test_kill9_restart(void **state)
{
    ctx *c = *state;
    at_daemon d;
    at_start(&d, c->dir, "crash", NULL);
    at_wait_ready(&d);
    json_t *job = at_job_json(64, 1000, 5, 5);
    char running[64], queued[64];
    at_submit(&d, job, running);
    json_t *small = at_job_json(2, 5, 6, 6);
    at_submit(&d, small, queued);
    json_decref(small);
    at_wait_running(&d, running, 30);
    int code = at_stop(&d, SIGKILL, 10);
    assert_int_equal(code, 128 + SIGKILL);

    /* restart on the same data: both jobs are finished from the store */
    at_start(&d, c->dir, "crash", NULL);
    at_wait_ready(&d);
    json_t *j = at_wait_done(&d, running, 120);
    assert_string_equal(at_state(j), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 2);
    json_t *ck = json_array_get(json_object_get(json_object_get(j, "result"), "checkpoints"), 0);
    const char *ckid = json_string_value(json_object_get(ck, "id"));
    char path[200];
    snprintf(path, sizeof path, "/v1/checkpoints/%s/weights", ckid);
    at_resp w = at_get(&d, path);
    assert_int_equal(w.status, 200);
    json_t *q = at_wait_done(&d, queued, 60);
    assert_string_equal(at_state(q), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(q, "attempts")), 1);
    json_decref(q);
    /* SQLite: queued again at start-up; PostgreSQL: once the dead process's
     * lease ran out (another replica could be running it meanwhile) */
    assert_true(log_contains(&d, "\"requeued_running_jobs\":1") ||
                log_contains(&d, "jobs of a lost replica queued again"));

    /* the re-run gives what an uninterrupted run gives */
    api_limits l = api_limits_default();
    api_error e;
    dataset ds;
    int kind;
    assert_int_equal(api_dataset_parse(json_object_get(job, "dataset"), "dataset", &l, &ds, &kind,
                                       &e), 0);
    char support[700], best[700], cmd[4096], bin[600];
    snprintf(support, sizeof support, "%s/crash-support.safetensors", c->dir);
    snprintf(best, sizeof best, "%s/crash-best.safetensors", c->dir);
    st_writer sw;
    st_writer_init(&sw);
    d2_error err;
    int64_t xs[2] = {ds.n, ds.dim}, ys[1] = {ds.n};
    assert_int_equal(st_writer_add_f32(&sw, "x", 2, xs, ds.x, &err), 0);
    assert_int_equal(st_writer_add(&sw, "y", ST_I32, 1, ys, ds.y, (size_t)ds.n * 4, &err), 0);
    assert_int_equal(st_writer_save(&sw, support, &err), 0);
    st_writer_free(&sw);
    dataset_free(&ds);
    tu_build_path(bin, sizeof bin, "d2nwg");
    snprintf(cmd, sizeof cmd,
             "'%s' generate --generator '%s' --support '%s' --embeddings --candidates 64 "
             "--steps 1000 --seed 5 --out '%s' --quiet",
             bin, at_fixture(), support, best);
    assert_int_equal(system(cmd), 0);
    size_t n;
    unsigned char *want = read_file(best, &n);
    assert_true(n == w.len && memcmp(want, w.body, n) == 0);
    free(want);
    at_resp_free(&w);
    json_decref(j);
    json_decref(job);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

typedef struct poll_arg {
    const at_daemon *d;
    char id[64];
    double elapsed;
    long status;
    char state[32];
} poll_arg;

static void *long_poll(void *p)
{
    poll_arg *a = p;
    double t0 = at_now();
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=60", a->id);
    at_resp r = at_get(a->d, path);
    a->elapsed = at_now() - t0;
    a->status = r.status;
    if (r.status == 200) {
        json_error_t je;
        json_t *v = json_loadb(r.body, r.len, 0, &je);
        snprintf(a->state, sizeof a->state, "%s", v ? at_state(v) : "");
        json_decref(v);
    }
    at_resp_free(&r);
    return NULL;
}

static void test_sigterm_drain(void **state)
{
    ctx *c = *state;
    at_daemon d;
    const char *args[] = {"--max-candidates", "1024", NULL};
    at_start(&d, c->dir, "drain", args);
    at_wait_ready(&d);
    json_t *job = at_job_json(1024, 1000, 9, 9);
    char slow[64];
    at_submit(&d, job, slow);
    json_decref(job);
    poll_arg pa;
    memset(&pa, 0, sizeof pa);
    pa.d = &d;
    job = at_job_json(2, 5, 10, 10);
    at_submit(&d, job, pa.id);
    json_decref(job);
    at_wait_running(&d, slow, 30);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, long_poll, &pa), 0);
    at_sleep(0.3); /* the long-poll is held */
    TU_ASSERT_NEAR(at_metric(&d, "d2nwgd_http_long_polls"), 1.0, 0);
    double t0 = at_now();
    int code = at_stop(&d, SIGTERM, 60);
    double took = at_now() - t0;
    assert_int_equal(code, 0);
    pthread_join(th, NULL);
    /* the held request was answered, with the job as it was */
    assert_int_equal(pa.status, 200);
    assert_string_equal(pa.state, "queued");
    assert_true(pa.elapsed < 10.0);
    assert_true(took < 30.0);
    assert_true(log_contains(&d, "job requeued for shutdown"));
    assert_true(log_contains(&d, "\"msg\":\"stopped\",\"exit_code\":0"));

    /* after a restart the stopped job runs again */
    at_start(&d, c->dir, "drain", args);
    at_wait_ready(&d);
    at_wait_running(&d, slow, 30);
    json_t *j = at_job(&d, slow, 0);
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 2);
    json_decref(j);
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", slow);
    at_resp r = at_request(&d, "POST", path, NULL, 0, NULL);
    assert_int_equal(r.status, 202);
    at_resp_free(&r);
    j = at_wait_done(&d, pa.id, 60);
    assert_string_equal(at_state(j), "succeeded");
    json_decref(j);
    j = at_wait_done(&d, slow, 60);
    assert_string_equal(at_state(j), "cancelled");
    json_decref(j);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

static void test_sigterm_grace(void **state)
{
    ctx *c = *state;
    at_daemon d;
    const char *args[] = {"--shutdown-grace", "60", NULL};
    at_start(&d, c->dir, "grace", args);
    at_wait_ready(&d);
    json_t *job = at_job_json(64, 1000, 13, 13);
    json_object_set_new(job, "refine", json_false()); /* the sampling is what runs long */
    char id[64];
    at_submit(&d, job, id);
    json_decref(job);
    at_wait_running(&d, id, 30);
    assert_int_equal(at_stop(&d, SIGTERM, 90), 0);
    /* it was allowed to finish */
    at_start(&d, c->dir, "grace", args);
    at_wait_ready(&d);
    json_t *j = at_job(&d, id, 0);
    assert_string_equal(at_state(j), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 1);
    json_decref(j);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

static void test_queue_full(void **state)
{
    ctx *c = *state;
    at_daemon d;
    const char *args[] = {"--max-queue", "2", "--max-candidates", "1024", NULL};
    at_start(&d, c->dir, "full", args);
    at_wait_ready(&d);
    json_t *slow = at_job_json(1024, 1000, 1, 1);
    char ids[3][64];
    at_submit(&d, slow, ids[0]);
    json_decref(slow);
    at_wait_running(&d, ids[0], 30);
    json_t *job = at_job_json(2, 5, 2, 2);
    at_submit(&d, job, ids[1]);
    at_submit(&d, job, ids[2]);
    at_resp r = at_post_json(&d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 503, "queue_full", NULL);
    char h[32];
    assert_true(atoi(at_header(&r, "Retry-After", h, sizeof h)) >= 1);
    at_resp_free(&r);
    assert_int_equal(at_count_jobs(&d, NULL), 3);
    TU_ASSERT_NEAR(at_metric(&d, "d2nwgd_jobs_pending"), 2.0, 0);
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", ids[0]);
    r = at_request(&d, "POST", path, NULL, 0, NULL);
    at_resp_free(&r);
    for (int i = 1; i < 3; i++) {
        json_t *j = at_wait_done(&d, ids[i], 60);
        assert_string_equal(at_state(j), "succeeded");
        json_decref(j);
    }
    /* room again */
    r = at_post_json(&d, "/v1/jobs", job, NULL);
    assert_int_equal(r.status, 202);
    at_resp_free(&r);
    json_decref(job);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

static int run_daemon(const char *args, const char *log)
{
    char bin[600], cmd[4096];
    tu_build_path(bin, sizeof bin, "d2nwgd");
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>&1", bin, args, log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_startup_failures(void **state)
{
    ctx *c = *state;
    char args[3000], logp[700];
    snprintf(logp, sizeof logp, "%s/fail.log", c->dir);
    /* a generator that is not a bundle */
    char bogus[700];
    snprintf(bogus, sizeof bogus, "%s/bogus.safetensors", c->dir);
    tu_write_bytes(bogus, "not a generator", 15);
    snprintf(args, sizeof args, "--generator '%s' --listen 127.0.0.1:0 --data '%s/fail1'", bogus,
             c->dir);
    assert_int_equal(run_daemon(args, logp), 1);
    size_t n;
    unsigned char *b = read_file(logp, &n);
    b[n] = '\0';
    assert_non_null(strstr((char *)b, "loading generators failed"));
    free(b);
    /* usage errors */
    assert_int_equal(run_daemon("--workers 0", logp), 2);
    assert_int_equal(run_daemon("--listen 127.0.0.1:0", logp), 2); /* no generator */
    assert_int_equal(run_daemon("--help", logp), 0);
    /* the port is taken */
    at_daemon d;
    at_start(&d, c->dir, "taken", NULL);
    snprintf(args, sizeof args, "--generator '%s' --listen 127.0.0.1:%d --data '%s/fail2'",
             at_fixture(), d.port, c->dir);
    assert_int_equal(run_daemon(args, logp), 1);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_restart),
        cmocka_unit_test(test_sigterm_drain),
        cmocka_unit_test(test_sigterm_grace),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_startup_failures),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
