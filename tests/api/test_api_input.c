/* test_api_input.c - bad input over real HTTP: malformed JSON, duplicate
 * keys, wrong types, ragged and non-finite samples, dimensions that do not
 * fit the generator, unknown generator, too many (or too few) classes, too
 * many samples, bodies over the limit (with and without Content-Length),
 * media types, bad query parameters and headers. Every refusal names the
 * field, the daemon stays up, and nothing is stored. */
#include "apitest.h"

typedef struct ctx {
    char *dir;
    at_daemon d;
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    *state = c;
    c->dir = tu_tmpdir("api-input");
    const char *args[] = {"--body-limit", "256K", "--max-samples", "40", "--max-steps", "5000",
                          NULL};
    at_start(&c->d, c->dir, "input", args);
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

static at_resp post_raw(ctx *c, const char *path, const char *body, const char *ctype)
{
    const char *h[3] = {NULL, NULL, NULL};
    char ct[128];
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        h[0] = ct;
    }
    return at_request(&c->d, "POST", path, body, strlen(body), h);
}

static void expect_raw(ctx *c, const char *body, long status, const char *code, const char *field)
{
    at_resp r = post_raw(c, "/v1/jobs", body, "application/json");
    at_expect_error(&r, status, code, field);
    at_resp_free(&r);
}

/* Submit `job` and expect a refusal. */
static void expect_job(ctx *c, json_t *job, long status, const char *code, const char *field)
{
    at_resp r = at_post_json(&c->d, "/v1/jobs", job, NULL);
    at_expect_error(&r, status, code, field);
    at_resp_free(&r);
    json_decref(job);
}

static json_t *rows(json_t *job, const char *kind)
{
    return json_object_get(json_object_get(job, "dataset"), kind);
}

static void test_syntax(void **state)
{
    ctx *c = *state;
    expect_raw(c, "{", 400, "invalid_json", NULL);
    expect_raw(c, "", 400, "invalid_json", NULL);
    expect_raw(c, "[1, 2]", 400, "invalid_json", NULL);
    expect_raw(c, "{\"seed\": 1, \"seed\": 2}", 400, "invalid_json", NULL);
    expect_raw(c, "{\"dataset\": {\"embeddings\": [[NaN]], \"labels\": [0]}}", 400, "invalid_json",
               NULL);
    expect_raw(c, "{\"seed\": 1} trailing", 400, "invalid_json", NULL);
    /* curl -d sends x-www-form-urlencoded: read as JSON; other types are refused */
    at_resp r = post_raw(c, "/v1/jobs", "{", "application/x-www-form-urlencoded");
    at_expect_error(&r, 400, "invalid_json", NULL);
    at_resp_free(&r);
    r = post_raw(c, "/v1/jobs", "{}", "text/csv");
    at_expect_error(&r, 415, "unsupported_media_type", "header.Content-Type");
    at_resp_free(&r);
}

static void test_types_and_fields(void **state)
{
    ctx *c = *state;
    json_t *j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "candidates", json_string("8"));
    expect_job(c, j, 400, "invalid_argument", "candidates");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "steps", json_integer(0));
    expect_job(c, j, 400, "invalid_argument", "steps");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "steps", json_integer(5001)); /* over --max-steps */
    expect_job(c, j, 400, "invalid_argument", "steps");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "steps", json_integer(2000)); /* over the generator's T (1000) */
    expect_job(c, j, 400, "invalid_argument", "steps");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "guidance", json_integer(-2));
    expect_job(c, j, 400, "invalid_argument", "guidance");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "sampler", json_string("euler"));
    expect_job(c, j, 400, "invalid_argument", "sampler");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "colour", json_string("red"));
    expect_job(c, j, 400, "invalid_argument", "colour");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "dataset", json_array());
    expect_job(c, j, 400, "invalid_argument", "dataset");
    j = at_job_json(2, 5, 1, 1);
    json_array_set_new(json_object_get(json_object_get(j, "dataset"), "labels"), 4,
                       json_string("two"));
    expect_job(c, j, 400, "invalid_argument", "dataset.labels[4]");
    j = at_job_json(2, 5, 1, 1);
    json_array_set_new(json_array_get(rows(j, "embeddings"), 2), 7, json_string("x"));
    expect_job(c, j, 400, "invalid_argument", "dataset.embeddings[2][7]");
    j = at_job_json(2, 5, 1, 1);
    json_object_del(j, "dataset");
    expect_job(c, j, 400, "invalid_argument", "dataset");
}

static void test_data_content(void **state)
{
    ctx *c = *state;
    /* ragged */
    json_t *j = at_job_json(2, 5, 1, 1);
    json_array_remove(json_array_get(rows(j, "embeddings"), 3), 0);
    expect_job(c, j, 422, "invalid_dataset", "dataset.embeddings[3]");
    /* finite as JSON, not as float32 */
    j = at_job_json(2, 5, 1, 1);
    json_array_set_new(json_array_get(rows(j, "embeddings"), 2), 5, json_real(1e39));
    expect_job(c, j, 422, "invalid_dataset", "dataset.embeddings[2][5]");
    /* dims that do not fit: 64-d embeddings, 128-d samples */
    j = json_pack("{s:o}", "dataset", at_dataset_json(5, 2, 64, 1, 3));
    expect_job(c, j, 422, "invalid_dataset", "dataset.embeddings");
    j = json_pack("{s:o}", "dataset", at_dataset_json(5, 2, 128, 0, 3));
    expect_job(c, j, 422, "invalid_dataset", "dataset.samples");
    /* too many classes for the generator (5-way), and too few */
    j = json_pack("{s:o}", "dataset", at_dataset_json(6, 2, 128, 1, 3));
    expect_job(c, j, 422, "invalid_dataset", "dataset.labels");
    j = json_pack("{s:o}", "dataset", at_dataset_json(4, 2, 128, 1, 3));
    expect_job(c, j, 422, "invalid_dataset", "dataset.labels");
    /* labels past the daemon's class limit (16) */
    j = at_job_json(2, 5, 1, 1);
    json_array_set_new(json_object_get(json_object_get(j, "dataset"), "labels"), 0,
                       json_integer(40));
    expect_job(c, j, 422, "invalid_dataset", "dataset.labels[0]");
    /* a class with no rows */
    j = at_job_json(2, 5, 1, 1);
    json_t *labels = json_object_get(json_object_get(j, "dataset"), "labels");
    for (size_t i = 0; i < json_array_size(labels); i++)
        if (json_integer_value(json_array_get(labels, i)) == 2)
            json_array_set_new(labels, i, json_integer(1));
    expect_job(c, j, 422, "invalid_dataset", "dataset.labels");
    /* one label short */
    j = at_job_json(2, 5, 1, 1);
    json_array_remove(json_object_get(json_object_get(j, "dataset"), "labels"), 0);
    expect_job(c, j, 422, "invalid_dataset", "dataset.labels");
    /* too many rows (--max-samples 40) */
    j = json_pack("{s:o}", "dataset", at_dataset_json(5, 9, 128, 1, 3));
    expect_job(c, j, 422, "invalid_dataset", "dataset.embeddings");
    /* unknown generator, dataset and parent */
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "generator", json_string("nope"));
    expect_job(c, j, 422, "unknown_generator", "generator");
    j = json_pack("{s:s}", "dataset_id",
                  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    expect_job(c, j, 422, "unknown_dataset", "dataset_id");
    j = at_job_json(2, 5, 1, 1);
    json_object_set_new(j, "parent_checkpoint", json_string("ck_0123456789abcdef0123_0"));
    expect_job(c, j, 422, "unknown_checkpoint", "parent_checkpoint");
    /* a bad idempotency key */
    j = at_job_json(2, 5, 1, 1);
    const char *h[] = {"Idempotency-Key: has spaces", NULL};
    at_resp r = at_post_json(&c->d, "/v1/jobs", j, h);
    at_expect_error(&r, 400, "invalid_argument", "header.Idempotency-Key");
    at_resp_free(&r);
    json_decref(j);
}

static void test_body_limit(void **state)
{
    ctx *c = *state;
    size_t n = 300 * 1024;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    /* with Content-Length: refused before the body is read */
    at_resp r = post_raw(c, "/v1/jobs", big, "application/json");
    at_expect_error(&r, 413, "payload_too_large", NULL);
    at_resp_free(&r);
    /* chunked, without Content-Length: counted as it arrives */
    const char *h[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    r = at_request(&c->d, "POST", "/v1/jobs", big, n, h);
    at_expect_error(&r, 413, "payload_too_large", NULL);
    at_resp_free(&r);
    r = at_request(&c->d, "POST", "/v1/datasets", big, n, h);
    at_expect_error(&r, 413, "payload_too_large", NULL);
    at_resp_free(&r);
    /* just under the limit is parsed (and refused for what it says) */
    big[200 * 1024] = '\0';
    big[200 * 1024 - 1] = '}';
    r = post_raw(c, "/v1/jobs", big, "application/json");
    at_expect_error(&r, 400, "invalid_argument", "dataset");
    at_resp_free(&r);
    free(big);
}

static void test_other_routes(void **state)
{
    ctx *c = *state;
    at_resp r = at_get(&c->d, "/v1/jobs?state=bogus");
    at_expect_error(&r, 400, "invalid_argument", "query.state");
    at_resp_free(&r);
    r = at_get(&c->d, "/v1/jobs?status=bogus");
    at_expect_error(&r, 400, "invalid_argument", "query.status");
    at_resp_free(&r);
    r = at_get(&c->d, "/v1/jobs?limit=0");
    at_expect_error(&r, 400, "invalid_argument", "query.limit");
    at_resp_free(&r);
    r = at_get(&c->d, "/v1/jobs?limit=201");
    at_expect_error(&r, 400, "invalid_argument", "query.limit");
    at_resp_free(&r);
    r = at_get(&c->d, "/v1/jobs?after=j_0123456789abcdef0123");
    at_expect_error(&r, 400, "invalid_argument", "query.after");
    at_resp_free(&r);
    r = at_get(&c->d, "/v1/jobs/j_0123456789abcdef0123?wait=soon");
    at_expect_error(&r, 400, "invalid_argument", "query.wait");
    at_resp_free(&r);
    r = at_get(&c->d, "/v1/jobs/j_0123456789abcdef0123?wait=-1");
    at_expect_error(&r, 400, "invalid_argument", "query.wait");
    at_resp_free(&r);
    /* datasets: malformed safetensors, bad kind, JSON content */
    r = post_raw(c, "/v1/datasets", "definitely not safetensors", "application/octet-stream");
    at_expect_error(&r, 400, "invalid_argument", "body");
    at_resp_free(&r);
    r = post_raw(c, "/v1/datasets?kind=pixels", "x", "application/octet-stream");
    at_expect_error(&r, 400, "invalid_argument", "query.kind");
    at_resp_free(&r);
    r = post_raw(c, "/v1/datasets", "{\"samples\": [[1], [2, 3]], \"labels\": [0, 1]}",
                 "application/json");
    at_expect_error(&r, 422, "invalid_dataset", "samples[1]");
    at_resp_free(&r);
    r = post_raw(c, "/v1/datasets", "{\"samples\": [[1], [2]], \"labels\": [0, 1], \"x\": 1}",
                 NULL);
    at_expect_error(&r, 400, "invalid_argument", "x");
    at_resp_free(&r);
    r = post_raw(c, "/v1/datasets", "{}", "text/plain");
    at_expect_error(&r, 415, "unsupported_media_type", NULL);
    at_resp_free(&r);
    /* retrieval */
    json_t *q = json_pack("{s:o, s:i}", "dataset", at_dataset_json(5, 2, 128, 1, 4), "k", 0);
    r = at_post_json(&c->d, "/v1/retrieve", q, NULL);
    at_expect_error(&r, 400, "invalid_argument", "k");
    at_resp_free(&r);
    json_decref(q);
    q = json_pack("{s:o}", "dataset", at_dataset_json(5, 2, 100, 1, 4));
    r = at_post_json(&c->d, "/v1/retrieve", q, NULL);
    at_expect_error(&r, 422, "invalid_dataset", "dataset.embeddings");
    at_resp_free(&r);
    json_decref(q);
}

/* Runs last: after every refusal above, nothing is stored and the daemon is up. */
static void test_nothing_stored(void **state)
{
    ctx *c = *state;
    at_resp r = at_get(&c->d, "/healthz");
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    assert_int_equal(at_count_jobs(&c->d, NULL), 0);
    const char *states[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    for (int i = 0; i < 5; i++) {
        char series[64];
        snprintf(series, sizeof series, "d2nwgd_jobs{state=\"%s\"}", states[i]);
        TU_ASSERT_NEAR(at_metric(&c->d, series), 0.0, 0);
    }
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs_submitted_total"), 0.0, 0);
    /* the data set of a refused job was not stored either */
    json_t *ds = at_dataset_json(5, 3, 128, 1, 1);
    char *s = json_dumps(ds, JSON_COMPACT);
    at_resp up = post_raw(c, "/v1/datasets", s, "application/json");
    assert_int_equal(up.status, 201); /* 201: it is new */
    at_resp_free(&up);
    free(s);
    json_decref(ds);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_types_and_fields),
        cmocka_unit_test(test_data_content),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_other_routes),
        cmocka_unit_test(test_nothing_stored),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
