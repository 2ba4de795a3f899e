/* test_api_anyway.c - the daemon serving an any-way generator (the "anyway"
 * fixture: heads of 2..6 classes) beside the 5-way default:
 *  - GET /v1/generators says min_way 2 and max_way 6 for it, 5..5 for the default;
 *  - 2-, 3- and 6-class jobs succeed with result.way and every checkpoint's
 *    head in that shape (1.weight [way, 128], d2nwg.spec "... linear 128->way");
 *  - 7 classes, and 1, are 422 invalid_dataset naming dataset.labels and the limit;
 *  - a data set of 21 classes is refused at upload naming the row and the limit
 *    (20), and one of 20 is taken. */
#include "apitest.h"

#include "safetensors.h"

typedef struct ctx {
    char *dir;
    at_daemon d;
} ctx;

static const char *anyway_fixture(void)
{
    static char gen[1024];
    char build[480], zoo[1024];
    if (!gen[0] && tu_fixture("anyway", build, sizeof build, gen, sizeof gen, zoo, sizeof zoo))
        fail_msg("the anyway fixture could not be built");
    return gen;
}

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    c->dir = tu_tmpdir("api-anyway");
    static char anyway[1100];
    snprintf(anyway, sizeof anyway, "anyway=%s", anyway_fixture());
    const char *args[] = {"--generator", at_fixture(), "--generator", anyway, NULL};
    at_start(&c->d, c->dir, "anyway", args);
    at_wait_ready(&c->d);
    *state = c;
    return 0;
}

static int group_teardown(void **state)
{
    ctx *c = *state;
    int code = at_stop(&c->d, SIGTERM, 30);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return code == 0 ? 0 : -1;
}

static void test_generators_say_their_ways(void **state)
{
    ctx *c = *state;
    at_resp r = at_get(&c->d, "/v1/generators");
    assert_int_equal(r.status, 200);
    json_t *v = at_json(&r);
    json_t *list = json_object_get(v, "generators");
    int found = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *g = json_array_get(list, i);
        const char *name = json_string_value(json_object_get(g, "name"));
        json_int_t lo = json_integer_value(json_object_get(g, "min_way"));
        json_int_t hi = json_integer_value(json_object_get(g, "max_way"));
        if (!strcmp(name, "anyway")) {
            assert_int_equal(lo, 2);
            assert_int_equal(hi, 6);
            found++;
        } else if (!strcmp(name, "default")) {
            assert_int_equal(lo, 5);
            assert_int_equal(hi, 5);
            found++;
        }
    }
    assert_int_equal(found, 2);
    json_decref(v);
    at_resp_free(&r);
}

static json_t *anyway_job(int way, unsigned seed)
{
    return json_pack("{s:s, s:o, s:i, s:i, s:I}", "generator", "anyway", "dataset",
                     at_dataset_json(way, 3, 128, 1, seed), "candidates", 3, "steps", 10,
                     "seed", (json_int_t)seed);
}

static void expect_head(ctx *c, const json_t *ck, int way)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/checkpoints/%s/weights",
             json_string_value(json_object_get(ck, "id")));
    at_resp w = at_get(&c->d, path);
    assert_int_equal(w.status, 200);
    st_file sf;
    d2_error err;
    assert_int_equal(st_parse(&sf, w.body, w.len, &err), 0);
    const st_tensor *t = st_find(&sf, "1.weight"), *b = st_find(&sf, "1.bias");
    assert_non_null(t);
    assert_non_null(b);
    assert_int_equal(t->shape[0], way);
    assert_int_equal(t->shape[1], 128);
    assert_int_equal(b->shape[0], way);
    char want[32];
    snprintf(want, sizeof want, "linear 128->%d", way);
    assert_non_null(strstr(st_meta(&sf, "d2nwg.spec"), want));
    st_free(&sf);
    at_resp_free(&w);
}

static void test_jobs_of_each_way(void **state)
{
    ctx *c = *state;
    const int ways[3] = {2, 3, 6};
    for (int i = 0; i < 3; i++) {
        json_t *job = anyway_job(ways[i], 40 + (unsigned)i);
        char id[64];
        at_submit(&c->d, job, id);
        json_decref(job);
        json_t *j = at_wait_done(&c->d, id, 60);
        assert_string_equal(at_state(j), "succeeded");
        json_t *res = json_object_get(j, "result");
        assert_int_equal(json_integer_value(json_object_get(res, "way")), ways[i]);
        json_t *cks = json_object_get(res, "checkpoints");
        assert_int_equal(json_array_size(cks), 5); // 3 candidates + 2 baselines (the gate)
        for (size_t k = 0; k < json_array_size(cks); k++)
            expect_head(c, json_array_get(cks, k), ways[i]);
        json_decref(j);
    }
}

static void test_ways_outside_are_refused(void **state)
{
    ctx *c = *state;
    json_t *job = anyway_job(7, 1);
    at_resp r = at_post_json(&c->d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 422, "invalid_dataset", "dataset.labels");
    assert_non_null(strstr(r.body, "7 classes; this generator supports at most 6"));
    at_resp_free(&r);
    json_decref(job);
    job = anyway_job(1, 1);
    r = at_post_json(&c->d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 422, "invalid_dataset", "dataset.labels");
    assert_non_null(strstr(r.body, "needs at least 2"));
    at_resp_free(&r);
    json_decref(job);
    // a data set of more classes than any generator takes
    json_t *ds = at_dataset_json(21, 1, 8, 1, 3);
    r = at_post_json(&c->d, "/v1/datasets", ds, NULL);
    at_expect_error(&r, 422, "invalid_dataset", "labels[20]"); // the first row of class 20
    assert_non_null(strstr(r.body, "at most 20 classes"));
    at_resp_free(&r);
    json_decref(ds);
    ds = at_dataset_json(20, 1, 8, 1, 3); // 20 is the limit
    r = at_post_json(&c->d, "/v1/datasets", ds, NULL);
    assert_int_equal(r.status, 201);
    at_resp_free(&r);
    json_decref(ds);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generators_say_their_ways),
        cmocka_unit_test(test_jobs_of_each_way),
        cmocka_unit_test(test_ways_outside_are_refused),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
