/* test_api_http_retrieve.c - retrieval hands back weights: every hit of
 * POST /v1/retrieve has a weights_url and its lineage (generator id, zoo
 * fingerprint, zoo index, classes); the URL serves the zoo entry as the same
 * complete safetensors file a generated checkpoint is (feature map as module
 * 0, then the head; the head is the bundle's zoo.theta row), with metadata
 * saying where it came from, an ETag, and 404 for entries that do not exist.
 * `d2nwg retrieve --out FILE` writes the nearest hit's file. */
#include "apitest.h"

#include "safetensors.h"
#include "fileio.h"
#include "sha256.h"

typedef struct ctx {
    char *dir;
    at_daemon d;
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    *state = c;
    c->dir = tu_tmpdir("api-retrieve");
    at_start(&c->d, c->dir, "retrieve", NULL);
    at_wait_ready(&c->d);
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

static json_t *retrieve(ctx *c, int k)
{
    json_t *q = json_pack("{s:s, s:o, s:i}", "generator", "default", "dataset",
                          at_dataset_json(5, 3, 128, 1, 3), "k", k);
    at_resp r = at_post_json(&c->d, "/v1/retrieve", q, NULL);
    json_decref(q);
    if (r.status != 200)
        fail_msg("retrieve: %ld %.300s", r.status, r.body);
    json_t *v = at_json(&r);
    at_resp_free(&r);
    return v;
}

/* GET path as a parsed safetensors file (status 200 and the sha256 header
 * checked). */
static void get_file(ctx *c, const char *path, st_file *f, char etag[80])
{
    at_resp r = at_get(&c->d, path);
    if (r.status != 200)
        fail_msg("GET %s: %ld %.300s", path, r.status, r.body);
    char sha[65], hdr[80];
    sha256_hex(r.body, r.len, sha);
    assert_string_equal(at_header(&r, "X-Checkpoint-Sha256", hdr, sizeof hdr), sha);
    at_header(&r, "ETag", etag, 80);
    d2_error err;
    d2_error_clear(&err);
    if (st_parse(f, r.body, r.len, &err) != 0)
        fail_msg("GET %s: not safetensors: %s", path, err.msg);
    at_resp_free(&r);
}

static void same_tensor(const st_file *a, const st_file *b, const char *name)
{
    const st_tensor *x = st_find(a, name), *y = st_find(b, name);
    if (!x || !y)
        fail_msg("tensor %s missing (%p, %p)", name, (const void *)x, (const void *)y);
    assert_int_equal(x->ndim, y->ndim);
    for (int i = 0; i < x->ndim; i++)
        assert_int_equal(x->shape[i], y->shape[i]);
    assert_int_equal(x->dtype, y->dtype);
}

static void test_hits_have_weights(void **state)
{
    ctx *c = *state;
    json_t *gen = NULL;
    at_resp g = at_get(&c->d, "/v1/generators/default");
    assert_int_equal(g.status, 200);
    gen = at_json(&g);
    at_resp_free(&g);
    const char *gid = json_string_value(json_object_get(gen, "id"));
    assert_non_null(gid);
    json_t *res = retrieve(c, 3);
    json_t *hits = json_object_get(res, "hits");
    assert_int_equal(json_array_size(hits), 3);
    /* a generated checkpoint, for the layout */
    json_t *job = at_job_json(1, 5, 5, 3);
    char id[64];
    at_submit(&c->d, job, id);
    json_decref(job);
    json_t *done = at_wait_done(&c->d, id, 120);
    assert_string_equal(at_state(done), "succeeded");
    const char *ck = json_string_value(
        json_object_get(json_array_get(json_object_get(json_object_get(done, "result"), "checkpoints"),
                                       0),
                        "id"));
    assert_non_null(ck);
    char path[256], etag[80];
    snprintf(path, sizeof path, "/v1/checkpoints/%s/weights", ck);
    st_file generated;
    get_file(c, path, &generated, etag);
    st_file bundle;
    d2_error err;
    d2_error_clear(&err);
    assert_int_equal(st_load(&bundle, at_fixture(), &err), 0);
    const st_tensor *zoo = st_find(&bundle, "zoo.theta");
    assert_non_null(zoo);
    for (size_t i = 0; i < json_array_size(hits); i++) {
        json_t *h = json_array_get(hits, i);
        int index = (int)json_integer_value(json_object_get(h, "zoo_index"));
        char want[256];
        snprintf(want, sizeof want, "/v1/generators/%s/zoo/%d/weights", gid, index);
        assert_string_equal(json_string_value(json_object_get(h, "weights_url")), want);
        assert_string_equal(json_string_value(json_object_get(h, "generator_id")), gid);
        assert_string_equal(json_string_value(json_object_get(h, "zoo_fingerprint")),
                            json_string_value(json_object_get(gen, "zoo_fingerprint")));
        st_file f;
        get_file(c, want, &f, etag);
        /* the same layout as a generated checkpoint, all of it */
        assert_int_equal(f.count, generated.count);
        for (int t = 0; t < generated.count; t++)
            same_tensor(&f, &generated, generated.tensors[t].name);
        /* the feature map is the generator's, byte for byte */
        const st_tensor *fm = st_find(&f, "0.weight"), *fm2 = st_find(&generated, "0.weight");
        assert_memory_equal(fm->data, fm2->data, fm->end - fm->begin);
        /* the head is the zoo entry: weight rows then bias, as in zoo.theta */
        const st_tensor *hw = st_find(&f, "1.weight"), *hb = st_find(&f, "1.bias");
        assert_non_null(hw);
        assert_non_null(hb);
        size_t P = (size_t)zoo->shape[1];
        assert_int_equal(hw->numel + hb->numel, P);
        const float *row = (const float *)zoo->data + (size_t)index * P;
        assert_memory_equal(hw->data, row, hw->numel * sizeof(float));
        assert_memory_equal(hb->data, row + hw->numel, hb->numel * sizeof(float));
        /* metadata: where it came from */
        assert_string_equal(st_meta(&f, "d2nwg.source"), "zoo");
        assert_string_equal(st_meta(&f, "d2nwg.generator"), gid);
        assert_int_equal(atoi(st_meta(&f, "d2nwg.zoo_index")), index);
        char *classes = json_dumps(json_object_get(h, "classes"), JSON_COMPACT);
        assert_string_equal(st_meta(&f, "d2nwg.classes"), classes);
        free(classes);
        st_free(&f);
        /* the ETag answers a conditional GET */
        char inm[120];
        snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
        const char *hdrs[] = {inm, NULL};
        at_resp r = at_request(&c->d, "GET", want, NULL, 0, hdrs);
        assert_int_equal(r.status, 304);
        at_resp_free(&r);
    }
    st_free(&bundle);
    st_free(&generated);
    json_decref(done);
    json_decref(res);
    json_decref(gen);
}

static void test_missing_entries(void **state)
{
    ctx *c = *state;
    at_resp g = at_get(&c->d, "/v1/generators/default");
    json_t *gen = at_json(&g);
    at_resp_free(&g);
    long zoo = (long)json_integer_value(json_object_get(gen, "zoo_size"));
    assert_true(zoo > 0);
    json_decref(gen);
    char path[128];
    snprintf(path, sizeof path, "/v1/generators/default/zoo/%ld/weights", zoo);
    const char *bad[] = {path, "/v1/generators/default/zoo/-1/weights",
                         "/v1/generators/default/zoo/1x/weights",
                         "/v1/generators/default/zoo/99999999999/weights",
                         "/v1/generators/nope/zoo/0/weights"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        at_resp r = at_get(&c->d, bad[i]);
        at_expect_error(&r, 404, "not_found", NULL);
        at_resp_free(&r);
    }
    /* the generator by name works too, and the last entry exists */
    snprintf(path, sizeof path, "/v1/generators/default/zoo/%ld/weights", zoo - 1);
    at_resp r = at_get(&c->d, path);
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
}

static void test_cli_out(void **state)
{
    ctx *c = *state;
    /* the support set as CSV: header, label first */
    char csv[600], out[600], server[64], cmd[2400];
    snprintf(csv, sizeof csv, "%s/support.csv", c->dir);
    snprintf(out, sizeof out, "%s/nearest.safetensors", c->dir);
    snprintf(server, sizeof server, "http://127.0.0.1:%d", c->d.port);
    json_t *ds = at_dataset_json(5, 3, 128, 1, 3);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fprintf(f, "label");
    for (int j = 0; j < 128; j++)
        fprintf(f, ",f%d", j);
    fprintf(f, "\n");
    json_t *rows = json_object_get(ds, "embeddings");
    for (size_t i = 0; i < json_array_size(rows); i++) {
        fprintf(f, "%lld", (long long)json_integer_value(
                               json_array_get(json_object_get(ds, "labels"), i)));
        json_t *row = json_array_get(rows, i);
        for (size_t j = 0; j < json_array_size(row); j++)
            fprintf(f, ",%.9g", json_number_value(json_array_get(row, j)));
        fprintf(f, "\n");
    }
    fclose(f);
    json_decref(ds);
    char bin[600];
    tu_build_path(bin, sizeof bin, "d2nwg");
    snprintf(cmd, sizeof cmd, "'%s' retrieve --server %s --support '%s' --embeddings -k 2 "
             "--out '%s' > '%s/cli.out' 2>&1", bin, server, csv, out, c->dir);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s/cli.out' >&2", c->dir);
        rc = system(cmd);
        fail_msg("d2nwg retrieve --out failed");
    }
    /* the file is the nearest hit's */
    json_t *res = retrieve(c, 1);
    const char *url =
        json_string_value(json_object_get(json_array_get(json_object_get(res, "hits"), 0),
                                          "weights_url"));
    at_resp r = at_get(&c->d, url);
    assert_int_equal(r.status, 200);
    size_t n = 0;
    unsigned char *written = NULL;
    d2_error err;
    d2_error_clear(&err);
    assert_int_equal(d2_read_file(out, &written, &n, 1 << 28, &err), 0);
    assert_int_equal(n, r.len);
    assert_memory_equal(written, r.body, n);
    free(written);
    at_resp_free(&r);
    json_decref(res);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hits_have_weights),
        cmocka_unit_test(test_missing_entries),
        cmocka_unit_test(test_cli_out),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
