/* test_routes.c - server/routes: the route table, path matching and the kind
 * a stored data set is read as. */
#include "testutil.h"

#include "routes.h"

static int match(const char *path, char *param)
{
    return routes_match(path, param, HTTP_PARAM_LEN);
}

static void expect(const char *path, const char *tmpl, const char *param)
{
    char p[HTTP_PARAM_LEN];
    int i = match(path, p);
    if (i < 0)
        fail_msg("%s matched nothing, expected %s", path, tmpl);
    if (strcmp(ROUTES[i].tmpl, tmpl) != 0 || strcmp(p, param) != 0)
        fail_msg("%s matched %s (param '%s'), expected %s ('%s')", path, ROUTES[i].tmpl, p, tmpl,
                 param);
}

static void test_match(void **state)
{
    (void)state;
    expect("/healthz", "/healthz", "");
    expect("/v1/openapi.yaml", "/v1/openapi.yaml", "");
    expect("/", "/", "");
    expect("/ui/app.js", "/ui/{ref}", "app.js");
    expect("/v1/events", "/v1/events", "");
    expect("/v1/jobs", "/v1/jobs", "");
    expect("/v1/jobs/j_0123456789abcdef0123", "/v1/jobs/{id}", "j_0123456789abcdef0123");
    expect("/v1/jobs/j_0123456789abcdef0123:cancel", "/v1/jobs/{id}:cancel",
           "j_0123456789abcdef0123");
    expect("/v1/checkpoints/ck_1_0", "/v1/checkpoints/{id}", "ck_1_0");
    expect("/v1/checkpoints/ck_1_0/weights", "/v1/checkpoints/{id}/weights", "ck_1_0");
    expect("/v1/checkpoints/ck_1_0/lineage", "/v1/checkpoints/{id}/lineage", "ck_1_0");
    expect("/v1/generators/default", "/v1/generators/{ref}", "default");
    expect("/v1/datasets/abc", "/v1/datasets/{id}", "abc");
    char p[HTTP_PARAM_LEN], p2[32];
    /* two placeholders: the second goes to param2 */
    int z = routes_match2("/v1/generators/default/zoo/17/weights", p, sizeof p, p2, sizeof p2);
    assert_true(z >= 0);
    assert_string_equal(ROUTES[z].tmpl, "/v1/generators/{ref}/zoo/{index}/weights");
    assert_string_equal(p, "default");
    assert_string_equal(p2, "17");
    assert_int_equal(routes_match2("/v1/generators/default/zoo/17", p, sizeof p, p2, sizeof p2),
                     -1);
    assert_int_equal(routes_match2("/v1/generators/default/zoo//weights", p, sizeof p, p2,
                                   sizeof p2),
                     -1);
    const char *none[] = {"/ui/", "/ui/a/b", "/v1", "/v1/jobs/", "/v1/jobs/x/y", "/v1/jobs/:cancel",
                          "/v1/jobs/x:stop", "/healthz/", "/v2/jobs", "/v1/checkpoints/x/bytes",
                          "/v1/jobs/a:b:cancel", ""};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        if (match(none[i], p) >= 0)
            fail_msg("%s should match nothing", none[i]);
    /* a parameter longer than the buffer does not match */
    char longpath[400];
    snprintf(longpath, sizeof longpath, "/v1/jobs/%0300d", 1);
    assert_int_equal(match(longpath, p), -1);
}

static void test_table(void **state)
{
    (void)state;
    /* every route has a handler for each method it allows; the probes and the
     * spec are the only open routes */
    int open = 0;
    for (int i = 0; i < ROUTE_COUNT; i++) {
        const route *r = &ROUTES[i];
        assert_true(r->methods != 0);
        if (r->methods & HTTP_GET)
            assert_non_null(r->get);
        if (r->methods & HTTP_POST)
            assert_non_null(r->post);
        if (r->open) {
            open++;
            /* the dashboard's own files and /v1/session, which answers
             * without a token what a token may do */
            assert_true(!strcmp(r->tmpl, "/healthz") || !strcmp(r->tmpl, "/readyz") ||
                        !strcmp(r->tmpl, "/v1/openapi.yaml") || !strcmp(r->tmpl, "/") ||
                        !strcmp(r->tmpl, "/ui/{ref}") || !strcmp(r->tmpl, "/v1/session"));
        }
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ROUTES[j].tmpl, r->tmpl);
    }
    assert_int_equal(open, 6);
    assert_int_equal(ROUTE_COUNT, 20);
}

/* A generator with input_dim/feature_dim and 2..5 classes. */
static void fake_gen(gen_entry *ge, gen_info *gi, int input_dim, int feature_dim)
{
    memset(ge, 0, sizeof *ge);
    memset(gi, 0, sizeof *gi);
    snprintf(ge->name, sizeof ge->name, "g");
    gi->input_dim = input_dim;
    gi->feature_dim = feature_dim;
    gi->min_way = 2;
    gi->max_way = 5;
    ge->info = gi;
}

static void test_stored_dataset_kind(void **state)
{
    (void)state;
    enum { S = 1 << API_KIND_SAMPLES, E = 1 << API_KIND_EMBEDDINGS };
    gen_entry ge;
    gen_info gi;
    api_dataset_info info;
    memset(&info, 0, sizeof info);
    snprintf(info.id, sizeof info.id, "%064d", 5);
    info.dim = 16;
    info.classes = 3;
    api_error e;
    int kind = -7;

    /* equal dims, uploaded as samples only: samples */
    fake_gen(&ge, &gi, 16, 16);
    info.kind = API_KIND_SAMPLES;
    info.kinds = S;
    assert_int_equal(routes_stored_dataset_kind(&ge, &info, -1, &kind, &e), 0);
    assert_int_equal(kind, API_KIND_SAMPLES);
    /* the same numbers uploaded later as embeddings: the first kind no longer
     * decides; the request must say which ... */
    info.kinds = S | E;
    kind = -7;
    assert_int_not_equal(routes_stored_dataset_kind(&ge, &info, -1, &kind, &e), 0);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.code, "invalid_dataset");
    assert_string_equal(e.field, "dataset_kind");
    assert_non_null(strstr(e.message, "dataset_kind"));
    /* ... and what it says is used */
    assert_int_equal(routes_stored_dataset_kind(&ge, &info, API_KIND_EMBEDDINGS, &kind, &e), 0);
    assert_int_equal(kind, API_KIND_EMBEDDINGS);
    assert_int_equal(routes_stored_dataset_kind(&ge, &info, API_KIND_SAMPLES, &kind, &e), 0);
    assert_int_equal(kind, API_KIND_SAMPLES);

    /* different dims: of the recorded kinds, the one that fits */
    fake_gen(&ge, &gi, 32, 16);
    assert_int_equal(routes_stored_dataset_kind(&ge, &info, -1, &kind, &e), 0);
    assert_int_equal(kind, API_KIND_EMBEDDINGS);
    info.kinds = S; /* only ever samples: 16 values are not 32-value samples */
    assert_int_not_equal(routes_stored_dataset_kind(&ge, &info, -1, &kind, &e), 0);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.code, "invalid_dataset");
    assert_string_equal(e.field, "dataset_id");
    /* an explicit kind is checked against the generator's dims */
    assert_int_equal(routes_stored_dataset_kind(&ge, &info, API_KIND_EMBEDDINGS, &kind, &e), 0);
    assert_int_equal(kind, API_KIND_EMBEDDINGS);
    assert_int_not_equal(routes_stored_dataset_kind(&ge, &info, API_KIND_SAMPLES, &kind, &e), 0);
    assert_string_equal(e.field, "dataset_id");
    /* classes are checked whichever kind wins */
    info.classes = 6;
    assert_int_not_equal(routes_stored_dataset_kind(&ge, &info, API_KIND_EMBEDDINGS, &kind, &e),
                         0);
    assert_non_null(strstr(e.message, "at most 5"));
}

/* Inline data sets go through the generator's own rule; the refusal names
 * the rows or the labels field and the generator. */
static void test_dataset_fits(void **state)
{
    (void)state;
    gen_entry ge;
    gen_info gi;
    fake_gen(&ge, &gi, 784, 128);
    api_error e;
    assert_int_equal(routes_check_dataset_fits(&ge, API_KIND_SAMPLES, 784, 3, "x", "y", &e), 0);
    assert_int_equal(routes_check_dataset_fits(&ge, API_KIND_EMBEDDINGS, 128, 5, "x", "y", &e),
                     0);
    assert_int_not_equal(
        routes_check_dataset_fits(&ge, API_KIND_EMBEDDINGS, 784, 3, "dataset.embeddings",
                                  "dataset.labels", &e),
        0);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.code, "invalid_dataset");
    assert_string_equal(e.field, "dataset.embeddings");
    assert_non_null(strstr(e.message, "generator 'g'"));
    assert_non_null(strstr(e.message, "128-value embeddings"));
    assert_int_not_equal(
        routes_check_dataset_fits(&ge, API_KIND_SAMPLES, 784, 1, "dataset.samples",
                                  "dataset.labels", &e),
        0);
    assert_string_equal(e.field, "dataset.labels");
    assert_non_null(strstr(e.message, "at least 2"));
    assert_int_not_equal(
        routes_check_dataset_fits(&ge, API_KIND_SAMPLES, 784, 6, "dataset.samples",
                                  "dataset.labels", &e),
        0);
    assert_string_equal(e.field, "dataset.labels");
    assert_non_null(strstr(e.message, "at most 5"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_stored_dataset_kind),
        cmocka_unit_test(test_dataset_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
