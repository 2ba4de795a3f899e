/* test_api_pending.c - a generator that is still being built when the daemon
 * starts (--generator-pending NAME=PATH, as `make run` serves "glyphs"):
 * listed as loading, jobs and retrievals naming it answered 503 not_ready
 * (field generator), then ready and serving once its file appears; a file that
 * does not load is "failed" with the loader's message and is tried again when
 * it changes; /readyz waits for a pending default generator. */
#include "apitest.h"

typedef struct ctx {
    char *dir;
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->dir = tu_tmpdir("api-pending");
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return 0;
}

/* Put src at dst the way `d2nwg train` writes a bundle: a temporary file
 * renamed into place. */
static void install_file(const char *src, const char *dst)
{
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s.tmp' && mv '%s.tmp' '%s'", src, dst, dst, dst);
    assert_int_equal(system(cmd), 0);
}

/* GET /v1/generators/NAME (caller decrefs). */
static json_t *generator(const at_daemon *d, const char *name)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/generators/%s", name);
    at_resp r = at_get(d, path);
    if (r.status != 200)
        fail_msg("GET %s: %ld %.300s", path, r.status, r.body);
    json_t *v = at_json(&r);
    at_resp_free(&r);
    return v;
}

/* Poll until generator NAME is in `state` (fails after `timeout` seconds). */
static json_t *wait_state(const at_daemon *d, const char *name, const char *state,
                          double timeout)
{
    double t0 = at_now();
    for (;;) {
        json_t *g = generator(d, name);
        const char *s = json_string_value(json_object_get(g, "state"));
        if (s && !strcmp(s, state))
            return g;
        if (at_now() - t0 > timeout) {
            at_print_log(d);
            fail_msg("generator %s still %s after %.0f s", name, s ? s : "?", timeout);
        }
        json_decref(g);
        at_sleep(0.1);
    }
}

static json_t *job_for(const char *gen)
{
    json_t *j = at_job_json(2, 4, 7, 3);
    json_object_set_new(j, "generator", json_string(gen));
    return j;
}

/* A job naming generator NAME is refused with 503 not_ready (field generator)
 * and a message containing `says`; Retry-After is `retry`. */
static void expect_refused(const at_daemon *d, const char *name, const char *says,
                           const char *retry)
{
    json_t *j = job_for(name);
    at_resp r = at_post_json(d, "/v1/jobs", j, NULL);
    json_decref(j);
    at_expect_error(&r, 503, "not_ready", "generator");
    if (!strstr(r.body, says))
        fail_msg("the 503 does not say '%s': %.300s", says, r.body);
    char h[32];
    assert_string_equal(at_header(&r, "Retry-After", h, sizeof h), retry);
    at_resp_free(&r);
}

static void test_pending_generator_joins(void **state)
{
    ctx *c = *state;
    char late[700], arg[760];
    snprintf(late, sizeof late, "%s/late.safetensors", c->dir);
    snprintf(arg, sizeof arg, "late=%s", late);
    const char *extra[] = {"--generator", at_fixture(), "--generator-pending", arg, NULL};
    at_daemon d;
    at_start(&d, c->dir, "joins", extra);
    at_wait_ready(&d); /* the default is enough */
    at_resp r = at_get(&d, "/readyz");
    assert_int_equal(r.status, 200);
    json_t *v = at_json(&r);
    assert_int_equal(json_integer_value(json_object_get(v, "generators")), 1);
    json_decref(v);
    at_resp_free(&r);
    /* listed, loading, with what it waits for */
    r = at_get(&d, "/v1/generators");
    assert_int_equal(r.status, 200);
    v = at_json(&r);
    json_t *list = json_object_get(v, "generators");
    assert_int_equal(json_array_size(list), 2);
    json_t *g0 = json_array_get(list, 0), *g1 = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(g0, "state")), "ready");
    assert_int_equal(strlen(json_string_value(json_object_get(g0, "id"))), 64);
    assert_string_equal(json_string_value(json_object_get(g1, "name")), "late");
    assert_string_equal(json_string_value(json_object_get(g1, "state")), "loading");
    assert_non_null(strstr(json_string_value(json_object_get(g1, "message")), late));
    assert_null(json_object_get(g1, "id"));
    json_decref(v);
    at_resp_free(&r);
    /* jobs, retrievals and zoo weights that name it wait */
    expect_refused(&d, "late", "still loading", "10");
    json_t *q = json_pack("{s:s, s:o, s:i}", "generator", "late", "dataset",
                          at_dataset_json(5, 3, 128, 1, 3), "k", 2);
    r = at_post_json(&d, "/v1/retrieve", q, NULL);
    json_decref(q);
    at_expect_error(&r, 503, "not_ready", "generator");
    at_resp_free(&r);
    r = at_get(&d, "/v1/generators/late/zoo/0/weights");
    at_expect_error(&r, 503, "not_ready", NULL);
    at_resp_free(&r);
    /* the file appears: it joins and serves */
    install_file(at_fixture(), late);
    json_t *g = wait_state(&d, "late", "ready", 60);
    assert_int_equal(json_integer_value(json_object_get(g, "input_dim")), 784);
    assert_null(json_object_get(g, "message"));
    json_decref(g);
    r = at_get(&d, "/readyz");
    v = at_json(&r);
    assert_int_equal(json_integer_value(json_object_get(v, "generators")), 2);
    json_decref(v);
    at_resp_free(&r);
    json_t *j = job_for("late");
    char id[64];
    at_submit(&d, j, id);
    json_decref(j);
    json_t *done = at_wait_done(&d, id, 120);
    assert_string_equal(at_state(done), "succeeded");
    const char *gname =
        json_string_value(json_object_get(json_object_get(done, "generator"), "name"));
    assert_non_null(gname);
    assert_string_equal(gname, "late");
    json_decref(done);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

static void test_garbage_fails_then_recovers(void **state)
{
    ctx *c = *state;
    char bad[700], garbage[720], arg[760];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", c->dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.bin", c->dir);
    snprintf(arg, sizeof arg, "bad=%s", bad);
    FILE *f = fopen(garbage, "w");
    assert_non_null(f);
    fputs("this is not a safetensors file\n", f);
    fclose(f);
    const char *extra[] = {"--generator", at_fixture(), "--generator-pending", arg, NULL};
    at_daemon d;
    at_start(&d, c->dir, "garbage", extra);
    at_wait_ready(&d);
    install_file(garbage, bad);
    json_t *g = wait_state(&d, "bad", "failed", 60);
    const char *msg = json_string_value(json_object_get(g, "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    json_decref(g);
    expect_refused(&d, "bad", "failed to load", "60");
    /* the daemon still serves its other generator */
    at_resp r = at_get(&d, "/readyz");
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    /* a new file is tried again */
    install_file(at_fixture(), bad);
    g = wait_state(&d, "bad", "ready", 60);
    json_decref(g);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

static void test_pending_default_gates_readyz(void **state)
{
    ctx *c = *state;
    char def[700], arg[760];
    snprintf(def, sizeof def, "%s/def.safetensors", c->dir);
    snprintf(arg, sizeof arg, "default=%s", def);
    const char *extra[] = {"--generator-pending", arg, NULL};
    at_daemon d;
    at_start(&d, c->dir, "default", extra);
    at_sleep(1.5);
    at_resp r = at_get(&d, "/readyz");
    at_expect_error(&r, 503, "not_ready", NULL);
    assert_non_null(strstr(r.body, "still loading"));
    at_resp_free(&r);
    install_file(at_fixture(), def);
    at_wait_ready(&d);
    json_t *g = generator(&d, "default");
    assert_string_equal(json_string_value(json_object_get(g, "state")), "ready");
    json_decref(g);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

static int log_contains(const at_daemon *d, const char *needle)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "grep -qF '%s' '%s'", needle, d->log);
    return system(cmd) == 0;
}

/* A job queued for a generator that is pending after a restart stays queued
 * (not failed), can be cancelled meanwhile, and runs once the generator joins. */
static void test_queued_job_waits_for_its_generator(void **state)
{
    ctx *c = *state;
    char late[700], now[760], pend[760];
    snprintf(late, sizeof late, "%s/late.safetensors", c->dir);
    snprintf(now, sizeof now, "late=%s", late);
    snprintf(pend, sizeof pend, "late=%s", late);
    install_file(at_fixture(), late);
    const char *first[] = {"--generator", at_fixture(), "--generator", now, "--workers", "1",
                           NULL};
    at_daemon d;
    at_start(&d, c->dir, "restore", first);
    at_wait_ready(&d);
    json_t *big = at_job_json(64, 1000, 5, 5); /* keeps the one worker busy */
    char busy[64], waits[64], cancelled[64];
    at_submit(&d, big, busy);
    json_decref(big);
    json_t *j = job_for("late");
    at_submit(&d, j, waits);
    at_submit(&d, j, cancelled);
    json_decref(j);
    at_wait_running(&d, busy, 30);
    assert_int_equal(at_stop(&d, SIGKILL, 10), 128 + SIGKILL);

    /* restart with "late" pending and its file gone */
    assert_int_equal(unlink(late), 0);
    const char *second[] = {"--generator", at_fixture(), "--generator-pending", pend,
                            "--workers", "1", NULL};
    at_start(&d, c->dir, "restore", second);
    at_wait_ready(&d);
    assert_true(log_contains(&d, "\"waiting_for_generator\":2"));
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", busy);
    at_resp r = at_request(&d, "POST", path, NULL, 0, NULL);
    assert_true(r.status == 200 || r.status == 202);
    at_resp_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", cancelled);
    r = at_request(&d, "POST", path, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    json_t *w = at_job(&d, waits, 0);
    assert_string_equal(at_state(w), "queued");
    json_decref(w);
    w = at_job(&d, cancelled, 0);
    assert_string_equal(at_state(w), "cancelled");
    json_decref(w);

    /* the generator joins: its queued job runs */
    install_file(at_fixture(), late);
    json_decref(wait_state(&d, "late", "ready", 60));
    json_t *done = at_wait_done(&d, waits, 120);
    assert_string_equal(at_state(done), "succeeded");
    json_decref(done);
    w = at_job(&d, cancelled, 0);
    assert_string_equal(at_state(w), "cancelled");
    json_decref(w);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
}

static void test_flag_in_help(void **state)
{
    (void)state;
    char bin[600], cmd[800];
    tu_build_path(bin, sizeof bin, "d2nwgd");
    snprintf(cmd, sizeof cmd, "'%s' --help | grep -q -- '--generator-pending'", bin);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pending_generator_joins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_fails_then_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_default_gates_readyz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_job_waits_for_its_generator, setup,
                                        teardown),
        cmocka_unit_test(test_flag_in_help),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
