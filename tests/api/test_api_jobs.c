/* test_api_jobs.c - the success paths over real HTTP: submit (202 + Location
 * + Retry-After), long-poll to the result, checkpoints and their weights
 * (byte for byte what `d2nwg generate` writes), lineage and derived
 * checkpoints, data sets (JSON and safetensors, content-addressed), jobs on
 * an uploaded data set and on raw samples, listing with pagination,
 * idempotency keys, cancel (queued, running, finished), long-poll wake-up and
 * time-out, retrieval, and one data set's numbers stored as both kinds. */
#include <pthread.h>

#include "apitest.h"

#include "api.h"
#include "safetensors.h"
#include "sha256.h"

typedef struct ctx {
    char *dir;
    at_daemon d;
    char job[64];       /* the first succeeded job */
    json_t *job_json;   /* its request */
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    *state = c;
    c->dir = tu_tmpdir("api-jobs");
    const char *args[] = {"--max-candidates", "1024", NULL};
    at_start(&c->d, c->dir, "jobs", args);
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
    json_decref(c->job_json);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return code == 0 ? 0 : -1;
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

/* The request's data set as the daemon parses it (JSON double -> float32). */
static void request_dataset(const json_t *job, dataset *d, int *kind)
{
    api_limits l = api_limits_default();
    api_error e;
    if (api_dataset_parse(json_object_get(job, "dataset"), "dataset", &l, d, kind, &e) != 0)
        fail_msg("test data set does not parse: %s", e.message);
}

static void write_support(const dataset *d, const char *path)
{
    st_writer w;
    st_writer_init(&w);
    d2_error err;
    int64_t xs[2] = {d->n, d->dim}, ys[1] = {d->n};
    assert_int_equal(st_writer_add_f32(&w, "x", 2, xs, d->x, &err), 0);
    assert_int_equal(st_writer_add(&w, "y", ST_I32, 1, ys, d->y, (size_t)d->n * 4, &err), 0);
    assert_int_equal(st_writer_save(&w, path, &err), 0);
    st_writer_free(&w);
}

static void test_submit_and_weights(void **state)
{
    ctx *c = *state;
    c->job_json = at_job_json(3, 10, 11, 7);
    at_resp r = at_post_json(&c->d, "/v1/jobs", c->job_json, NULL);
    assert_int_equal(r.status, 202);
    json_t *j = at_json(&r);
    const char *id = json_string_value(json_object_get(j, "id"));
    assert_true(api_is_job_id(id));
    snprintf(c->job, sizeof c->job, "%s", id);
    char h[128], want[128];
    snprintf(want, sizeof want, "/v1/jobs/%s", id);
    assert_string_equal(at_header(&r, "Location", h, sizeof h), want);
    assert_true(atoi(at_header(&r, "Retry-After", h, sizeof h)) >= 1);
    const char *st = at_state(j);
    assert_true(!strcmp(st, "queued") || !strcmp(st, "running") || !strcmp(st, "succeeded"));
    json_t *p = json_object_get(j, "params");
    assert_int_equal(json_integer_value(json_object_get(p, "candidates")), 3);
    assert_int_equal(json_integer_value(json_object_get(p, "steps")), 10);
    assert_int_equal(json_integer_value(json_object_get(p, "seed")), 11);
    assert_string_equal(json_string_value(json_object_get(p, "sampler")), "ddim");
    assert_string_equal(json_string_value(json_object_get(j, "dataset_kind")), "embeddings");
    assert_int_equal(json_integer_value(json_object_get(j, "priority")), 5);
    assert_non_null(json_string_value(json_object_get(j, "created_at")));
    json_decref(j);
    at_resp_free(&r);

    j = at_wait_done(&c->d, c->job, 60);
    assert_string_equal(at_state(j), "succeeded");
    TU_ASSERT_NEAR(json_number_value(json_object_get(j, "progress")), 1.0, 0);
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 1);
    assert_true(json_number_value(json_object_get(j, "run_seconds")) > 0);
    assert_true(json_number_value(json_object_get(j, "queue_seconds")) >= 0);
    assert_true(json_is_string(json_object_get(j, "finished_at")));
    json_t *res = json_object_get(j, "result");
    assert_int_equal(json_integer_value(json_object_get(res, "way")), 5);
    json_t *cks = json_object_get(res, "checkpoints");
    /* the gate is on by default: the 3 candidates and the 2 baselines, the
     * gate's choice first, every entry saying its method */
    assert_true(json_is_true(json_object_get(json_object_get(j, "params"), "gate")));
    assert_true(json_is_true(json_object_get(json_object_get(j, "params"), "refine")));
    json_t *gate = json_object_get(j, "gate");
    assert_true(json_is_true(json_object_get(gate, "applied")));
    assert_int_equal(json_array_size(cks), 5);
    const char *chosen = json_string_value(json_object_get(gate, "chosen"));
    assert_non_null(chosen);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cks, 0), "method")),
                        chosen);
    /* 3 shots: 3-fold cross-validation, every method measured on 15 held-out rows */
    assert_int_equal(json_integer_value(json_object_get(gate, "folds")), 3);
    assert_int_equal(json_integer_value(json_object_get(gate, "heldout")), 15);
    json_t *cv = json_object_get(gate, "cv_accuracy");
    for (int m = 0; m < GEN_METHODS; m++) {
        double acc = json_number_value(json_object_get(cv, gen_method_name((gen_method)m)));
        assert_true(json_is_number(json_object_get(cv, gen_method_name((gen_method)m))));
        assert_true(acc >= 0.0 && acc <= 1.0);
    }
    assert_non_null(strstr(json_string_value(json_object_get(gate, "reason")), "3-fold"));
    double pct = json_number_value(json_object_get(gate, "ood_percentile"));
    assert_true(pct >= 0.0 && pct <= 100.0);
    assert_int_equal(json_array_size(json_object_get(j, "warnings")),
                     json_is_true(json_object_get(gate, "ood")) ? 1 : 0);
    int methods[GEN_METHODS] = {0};
    for (size_t i = 0; i < 5; i++) {
        int m;
        json_t *ck = json_array_get(cks, i);
        assert_int_equal(api_method_parse(json_string_value(json_object_get(ck, "method")), &m),
                         0);
        methods[m]++;
        assert_true((m == GEN_METHOD_DIFFUSION) ==
                    (json_integer_value(json_object_get(ck, "candidate_index")) >= 0));
    }
    assert_int_equal(methods[GEN_METHOD_DIFFUSION], 3);
    assert_int_equal(methods[GEN_METHOD_PROTOTYPES], 1);
    assert_int_equal(methods[GEN_METHOD_LOGREG], 1);

    /* what `d2nwg generate` writes for the same inputs, ranked */
    dataset d;
    int kind;
    request_dataset(c->job_json, &d, &kind);
    char support[700], best[700], all[700], cmd[4096], bin[600];
    snprintf(support, sizeof support, "%s/support.safetensors", c->dir);
    snprintf(best, sizeof best, "%s/best.safetensors", c->dir);
    snprintf(all, sizeof all, "%s/all", c->dir);
    write_support(&d, support);
    tu_build_path(bin, sizeof bin, "d2nwg");
    snprintf(cmd, sizeof cmd,
             "'%s' generate --generator '%s' --support '%s' --embeddings --candidates 3 "
             "--steps 10 --seed 11 --out '%s' --all '%s' --quiet",
             bin, at_fixture(), support, best, all);
    assert_int_equal(system(cmd), 0);

    double prev_acc = 2.0;
    for (size_t i = 0; i < 5; i++) {
        json_t *ck = json_array_get(cks, i);
        const char *ckid = json_string_value(json_object_get(ck, "id"));
        const char *method = json_string_value(json_object_get(ck, "method"));
        assert_true(api_is_checkpoint_id(ckid));
        assert_int_equal(json_integer_value(json_object_get(ck, "rank")), (json_int_t)i);
        double acc = json_number_value(json_object_get(ck, "support_accuracy"));
        assert_true(acc >= 0.0 && acc <= 1.0);
        if (!strcmp(method, "diffusion")) { /* the candidates in support order */
            assert_true(acc <= prev_acc);
            prev_acc = acc;
        }
        assert_string_equal(json_string_value(json_object_get(ck, "job_id")), c->job);
        assert_int_equal(json_integer_value(json_object_get(ck, "seed")), 11);
        /* GET /v1/checkpoints/{id} agrees */
        char path[256];
        snprintf(path, sizeof path, "/v1/checkpoints/%s", ckid);
        at_resp cr = at_get(&c->d, path);
        assert_int_equal(cr.status, 200);
        json_t *cj = at_json(&cr);
        assert_true(json_equal(cj, ck));
        json_decref(cj);
        at_resp_free(&cr);
        /* the weights */
        snprintf(path, sizeof path, "/v1/checkpoints/%s/weights", ckid);
        at_resp w = at_get(&c->d, path);
        assert_int_equal(w.status, 200);
        char hex[65];
        sha256_hex(w.body, w.len, hex);
        assert_string_equal(hex, json_string_value(json_object_get(ck, "sha256")));
        assert_string_equal(at_header(&w, "X-Checkpoint-Sha256", h, sizeof h), hex);
        snprintf(want, sizeof want, "\"%s\"", hex);
        assert_string_equal(at_header(&w, "ETag", h, sizeof h), want);
        assert_int_equal(w.len, (size_t)json_integer_value(json_object_get(ck, "size_bytes")));
        assert_string_equal(at_header(&w, "Content-Type", h, sizeof h), "application/octet-stream");
        char file[800];
        snprintf(file, sizeof file, "%s/rank-%02zu.safetensors", all, i + 1);
        size_t n;
        unsigned char *cli = read_file(file, &n);
        if (n != w.len || memcmp(cli, w.body, n) != 0)
            fail_msg("checkpoint %s differs from d2nwg generate's %s", ckid, file);
        free(cli);
        if (i == 0) {
            cli = read_file(best, &n);
            assert_true(n == w.len && memcmp(cli, w.body, n) == 0);
            free(cli);
        }
        /* a loadable safetensors file whose metadata repeats the lineage */
        st_file sf;
        d2_error err;
        assert_int_equal(st_parse(&sf, w.body, w.len, &err), 0);
        assert_string_equal(st_meta(&sf, "d2nwg.seed"), "11");
        assert_string_equal(st_meta(&sf, "d2nwg.method"), method);
        assert_non_null(st_find(&sf, "1.weight"));
        st_free(&sf);
        /* conditional GET */
        char inm[100];
        snprintf(inm, sizeof inm, "If-None-Match: \"%s\"", hex);
        const char *hh[] = {inm, NULL};
        at_resp nm = at_request(&c->d, "GET", path, NULL, 0, hh);
        assert_int_equal(nm.status, 304);
        assert_int_equal(nm.len, 0);
        at_resp_free(&nm);
        at_resp_free(&w);
    }
    dataset_free(&d);
    json_decref(j);
}

static void test_lineage(void **state)
{
    ctx *c = *state;
    char ck0[80], path[256];
    snprintf(ck0, sizeof ck0, "ck_%s_0", c->job + 2);
    snprintf(path, sizeof path, "/v1/checkpoints/%s/lineage", ck0);
    at_resp r = at_get(&c->d, path);
    assert_int_equal(r.status, 200);
    json_t *l = at_json(&r);
    at_resp_free(&r);
    json_t *g = json_object_get(l, "generator");
    assert_string_equal(json_string_value(json_object_get(g, "name")), "default");
    assert_int_equal(strlen(json_string_value(json_object_get(g, "zoo_fingerprint"))), 64);
    assert_true(json_object_size(json_object_get(g, "provenance")) > 0);
    assert_true(json_object_size(json_object_get(g, "config")) > 0);
    json_t *ds = json_object_get(l, "dataset");
    assert_int_equal(json_integer_value(json_object_get(ds, "n")), 15);
    assert_int_equal(json_integer_value(json_object_get(ds, "dim")), 128);
    assert_int_equal(json_integer_value(json_object_get(ds, "classes")), 5);
    assert_string_equal(json_string_value(json_object_get(ds, "kind")), "embeddings");
    assert_string_equal(json_string_value(json_object_get(json_object_get(l, "job"), "id")),
                        c->job);
    assert_int_equal(json_integer_value(json_object_get(l, "seed")), 11);
    json_t *s = json_object_get(l, "sampler");
    assert_int_equal(json_integer_value(json_object_get(s, "steps")), 10);
    assert_int_equal(json_integer_value(json_object_get(s, "candidates")), 3);
    assert_int_equal(json_integer_value(json_object_get(l, "rank")), 0);
    assert_true(json_is_null(json_object_get(l, "parent")));
    assert_int_equal(json_array_size(json_object_get(l, "derived")), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(l, "checkpoint"), "id")), ck0);
    /* the method of the checkpoint and the job's gate decision, as the job says */
    json_t *job0 = at_job(&c->d, c->job, 0);
    json_t *best = json_array_get(json_object_get(json_object_get(job0, "result"), "checkpoints"), 0);
    assert_string_equal(json_string_value(json_object_get(l, "method")),
                        json_string_value(json_object_get(best, "method")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(l, "checkpoint"), "method")),
        json_string_value(json_object_get(best, "method")));
    assert_true(json_equal(json_object_get(l, "gate"), json_object_get(job0, "gate")));
    json_decref(job0);
    json_decref(l);
    /* a baseline's lineage says so: the last entry is one */
    char ck4[80];
    snprintf(ck4, sizeof ck4, "ck_%s_4", c->job + 2);
    snprintf(path, sizeof path, "/v1/checkpoints/%s/lineage", ck4);
    r = at_get(&c->d, path);
    assert_int_equal(r.status, 200);
    l = at_json(&r);
    at_resp_free(&r);
    const char *m4 = json_string_value(json_object_get(l, "method"));
    assert_true(!strcmp(m4, "prototypes") || !strcmp(m4, "logreg"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(l, "checkpoint"),
                                                        "candidate_index")), -1);
    json_decref(l);
    snprintf(path, sizeof path, "/v1/checkpoints/%s/lineage", ck0);

    /* a job derived from ck0 */
    json_t *job = at_job_json(2, 5, 12, 8);
    json_object_set_new(job, "parent_checkpoint", json_string(ck0));
    char id[64];
    at_submit(&c->d, job, id);
    json_decref(job);
    json_t *j = at_wait_done(&c->d, id, 60);
    assert_string_equal(at_state(j), "succeeded");
    assert_string_equal(json_string_value(json_object_get(j, "parent_checkpoint")), ck0);
    json_decref(j);
    r = at_get(&c->d, path);
    l = at_json(&r);
    at_resp_free(&r);
    json_t *derived = json_object_get(l, "derived");
    assert_int_equal(json_array_size(derived), 2 + 2); /* 2 candidates and the 2 baselines */
    char child[80];
    snprintf(child, sizeof child, "ck_%s_0", id + 2);
    assert_string_equal(json_string_value(json_array_get(derived, 0)), child);
    json_decref(l);
    snprintf(path, sizeof path, "/v1/checkpoints/%s/lineage", child);
    r = at_get(&c->d, path);
    l = at_json(&r);
    at_resp_free(&r);
    assert_string_equal(json_string_value(json_object_get(l, "parent")), ck0);
    json_decref(l);
}

/* gate: false gives the K diffusion candidates alone, and a decision that
 * says the gate was off; a gate that is not a boolean is refused by name. */
static void test_gate_off(void **state)
{
    ctx *c = *state;
    json_t *job = at_job_json(3, 10, 11, 7);
    json_object_set_new(job, "gate", json_false());
    char id[64];
    at_submit(&c->d, job, id);
    json_t *j = at_wait_done(&c->d, id, 60);
    assert_string_equal(at_state(j), "succeeded");
    assert_true(json_is_false(json_object_get(json_object_get(j, "params"), "gate")));
    json_t *gate = json_object_get(j, "gate");
    assert_true(json_is_false(json_object_get(gate, "applied")));
    assert_string_equal(json_string_value(json_object_get(gate, "chosen")), "diffusion");
    assert_true(json_is_null(json_object_get(json_object_get(gate, "cv_accuracy"), "logreg")));
    assert_int_equal(json_array_size(json_object_get(j, "warnings")), 0);
    json_t *cks = json_object_get(json_object_get(j, "result"), "checkpoints");
    assert_int_equal(json_array_size(cks), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(cks, i), "method")), "diffusion");
    /* the same candidates as the gated job of the same inputs, ranked alike */
    json_t *gated = at_job(&c->d, c->job, 0);
    json_t *gcks = json_object_get(json_object_get(gated, "result"), "checkpoints");
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(gcks) && k < 3; i++) {
        json_t *g = json_array_get(gcks, i);
        if (strcmp(json_string_value(json_object_get(g, "method")), "diffusion"))
            continue;
        assert_int_equal(json_integer_value(json_object_get(g, "candidate_index")),
                         json_integer_value(json_object_get(json_array_get(cks, k++),
                                                            "candidate_index")));
    }
    assert_int_equal(k, 3);
    json_decref(gated);
    json_decref(j);
    json_object_set_new(job, "gate", json_string("no"));
    at_resp r = at_post_json(&c->d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 400, "invalid_argument", "gate");
    at_resp_free(&r);
    json_decref(job);
}

/* refine: false is recorded in the job's params; a refine that is not a
 * boolean is refused by name. */
static void test_refine_off(void **state)
{
    ctx *c = *state;
    json_t *job = at_job_json(3, 10, 12, 7);
    json_object_set_new(job, "refine", json_false());
    char id[64];
    at_submit(&c->d, job, id);
    json_t *j = at_wait_done(&c->d, id, 60);
    assert_string_equal(at_state(j), "succeeded");
    assert_true(json_is_false(json_object_get(json_object_get(j, "params"), "refine")));
    assert_true(json_is_true(json_object_get(json_object_get(j, "params"), "gate")));
    json_decref(j);
    json_object_set_new(job, "refine", json_integer(1));
    at_resp r = at_post_json(&c->d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 400, "invalid_argument", "refine");
    at_resp_free(&r);
    json_decref(job);
}

/* A support set far from every zoo task (embeddings 30 times their usual
 * scale): the gate says it is out of distribution and the job warns. */
static void test_out_of_distribution_warning(void **state)
{
    ctx *c = *state;
    json_t *ds = at_dataset_json(5, 2, 128, 1, 77);
    size_t i, k;
    json_t *row, *v;
    json_array_foreach(json_object_get(ds, "embeddings"), i, row)
        json_array_foreach(row, k, v) json_real_set(v, 30.0 * json_real_value(v));
    json_t *job = json_pack("{s:o, s:i, s:i, s:i}", "dataset", ds, "candidates", 2, "steps", 5,
                            "seed", 5);
    char id[64];
    at_submit(&c->d, job, id);
    json_decref(job);
    json_t *j = at_wait_done(&c->d, id, 60);
    assert_string_equal(at_state(j), "succeeded");
    json_t *gate = json_object_get(j, "gate");
    if (!json_is_true(json_object_get(gate, "ood")))
        fail_msg("a support set at 30 times the zoo's scale is not out of distribution: "
                 "percentile %g", json_number_value(json_object_get(gate, "ood_percentile")));
    assert_true(json_number_value(json_object_get(gate, "ood_percentile")) > 99.0);
    json_t *w = json_object_get(j, "warnings");
    assert_int_equal(json_array_size(w), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(w, 0), "code")),
                        "out_of_distribution");
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(w, 0), "message")),
                           "out of the zoo's distribution"));
    json_decref(j);
}

static void test_datasets(void **state)
{
    ctx *c = *state;
    json_t *ds = at_dataset_json(5, 4, 128, 1, 21);
    at_resp r = at_post_json(&c->d, "/v1/datasets", ds, NULL);
    assert_int_equal(r.status, 201);
    json_t *info = at_json(&r);
    const char *id = json_string_value(json_object_get(info, "id"));
    char h[200], want[200], dsid[80];
    snprintf(dsid, sizeof dsid, "%s", id);
    snprintf(want, sizeof want, "/v1/datasets/%s", id);
    assert_string_equal(at_header(&r, "Location", h, sizeof h), want);
    assert_string_equal(json_string_value(json_object_get(info, "fingerprint")), id);
    assert_int_equal(json_integer_value(json_object_get(info, "n")), 20);
    assert_int_equal(json_integer_value(json_object_get(info, "classes")), 5);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(info, "class_counts"), 3)),
                     4);
    /* the id is dataset_fingerprint of the data */
    json_t *wrap = json_pack("{s:O}", "dataset", ds);
    dataset d;
    int kind;
    request_dataset(wrap, &d, &kind);
    json_decref(wrap);
    char fp[65];
    dataset_fingerprint(&d, fp);
    assert_string_equal(fp, dsid);
    json_decref(info);
    at_resp_free(&r);
    /* the same data again: same id, 200 */
    r = at_post_json(&c->d, "/v1/datasets", ds, NULL);
    assert_int_equal(r.status, 200);
    info = at_json(&r);
    assert_string_equal(json_string_value(json_object_get(info, "id")), dsid);
    json_decref(info);
    at_resp_free(&r);
    /* and as safetensors */
    char path[700];
    snprintf(path, sizeof path, "%s/ds.safetensors", c->dir);
    write_support(&d, path);
    size_t n;
    unsigned char *bytes = read_file(path, &n);
    const char *hh[] = {"Content-Type: application/octet-stream", NULL};
    r = at_request(&c->d, "POST", "/v1/datasets?kind=embeddings", bytes, n, hh);
    assert_int_equal(r.status, 200);
    info = at_json(&r);
    assert_string_equal(json_string_value(json_object_get(info, "id")), dsid);
    json_decref(info);
    at_resp_free(&r);
    free(bytes);
    dataset_free(&d);
    json_decref(ds);
    /* GET */
    snprintf(path, sizeof path, "/v1/datasets/%s", dsid);
    r = at_get(&c->d, path);
    assert_int_equal(r.status, 200);
    info = at_json(&r);
    assert_string_equal(json_string_value(json_object_get(info, "kind")), "embeddings");
    assert_int_equal(json_integer_value(json_object_get(info, "dim")), 128);
    assert_non_null(json_string_value(json_object_get(info, "created_at")));
    json_decref(info);
    at_resp_free(&r);
    /* a job on the uploaded data set */
    json_t *job = json_pack("{s:s, s:i, s:i, s:i}", "dataset_id", dsid, "candidates", 2, "steps",
                            5, "seed", 3);
    char jid[64];
    at_submit(&c->d, job, jid);
    json_decref(job);
    json_t *j = at_wait_done(&c->d, jid, 60);
    assert_string_equal(at_state(j), "succeeded");
    assert_string_equal(json_string_value(json_object_get(j, "dataset_id")), dsid);
    assert_string_equal(json_string_value(json_object_get(j, "dataset_kind")), "embeddings");
    json_decref(j);
    /* raw samples (784-d) go through the generator's feature map */
    job = json_pack("{s:o, s:i, s:i}", "dataset", at_dataset_json(5, 2, 784, 0, 22), "candidates",
                    2, "steps", 5);
    at_submit(&c->d, job, jid);
    json_decref(job);
    j = at_wait_done(&c->d, jid, 60);
    assert_string_equal(at_state(j), "succeeded");
    assert_string_equal(json_string_value(json_object_get(j, "dataset_kind")), "samples");
    /* no seed given: one was drawn and recorded */
    assert_true(json_is_integer(json_object_get(json_object_get(j, "params"), "seed")));
    json_decref(j);
}

static void test_list(void **state)
{
    ctx *c = *state;
    int total = at_count_jobs(&c->d, NULL);
    assert_true(total >= 4);
    assert_int_equal(at_count_jobs(&c->d, "succeeded"), total);
    assert_int_equal(at_count_jobs(&c->d, "queued"), 0);
    /* pages of 1, newest first, no repeats */
    char after[64] = "", seen[16][64];
    int n = 0;
    char prev_created[40] = "9999";
    for (;;) {
        char path[200];
        snprintf(path, sizeof path, "/v1/jobs?limit=1%s%s", after[0] ? "&after=" : "", after);
        at_resp r = at_get(&c->d, path);
        assert_int_equal(r.status, 200);
        json_t *v = at_json(&r);
        at_resp_free(&r);
        json_t *jobs = json_object_get(v, "jobs");
        assert_int_equal(json_array_size(jobs), 1);
        json_t *j = json_array_get(jobs, 0);
        const char *id = json_string_value(json_object_get(j, "id"));
        const char *created = json_string_value(json_object_get(j, "created_at"));
        assert_true(strcmp(created, prev_created) <= 0);
        snprintf(prev_created, sizeof prev_created, "%s", created);
        for (int k = 0; k < n; k++)
            assert_string_not_equal(seen[k], id);
        assert_true(n < 16);
        snprintf(seen[n++], 64, "%s", id);
        json_t *next = json_object_get(v, "next_after");
        if (json_is_null(next)) {
            json_decref(v);
            break;
        }
        assert_string_equal(json_string_value(next), id);
        snprintf(after, sizeof after, "%s", id);
        json_decref(v);
    }
    assert_int_equal(n, total);
    /* the first job submitted is the last listed */
    assert_string_equal(seen[n - 1], c->job);
    /* `status` is an alias of `state` */
    at_resp r = at_get(&c->d, "/v1/jobs?status=succeeded&limit=200");
    json_t *v = at_json(&r);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), (size_t)total);
    json_decref(v);
    at_resp_free(&r);
}

static void test_idempotency(void **state)
{
    ctx *c = *state;
    int before = at_count_jobs(&c->d, NULL);
    json_t *job = at_job_json(2, 5, 31, 31);
    const char *k1[] = {"Idempotency-Key: order-7781", NULL};
    at_resp r = at_post_json(&c->d, "/v1/jobs", job, k1);
    assert_int_equal(r.status, 202);
    json_t *v = at_json(&r);
    char first[64];
    snprintf(first, sizeof first, "%s", json_string_value(json_object_get(v, "id")));
    json_decref(v);
    at_resp_free(&r);
    /* the same body again: the same job, 200, marked as a replay */
    r = at_post_json(&c->d, "/v1/jobs", job, k1);
    assert_int_equal(r.status, 200);
    char h[64];
    assert_string_equal(at_header(&r, "Idempotent-Replayed", h, sizeof h), "true");
    v = at_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "id")), first);
    json_decref(v);
    at_resp_free(&r);
    /* the same content with other key order and spacing is the same body */
    char *s = json_dumps(job, JSON_SORT_KEYS | JSON_INDENT(3));
    const char *hh[] = {"Content-Type: application/json", "Idempotency-Key: order-7781", NULL};
    r = at_request(&c->d, "POST", "/v1/jobs", s, strlen(s), hh);
    free(s);
    assert_int_equal(r.status, 200);
    v = at_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "id")), first);
    json_decref(v);
    at_resp_free(&r);
    /* another body with the same key: 409 */
    json_object_set_new(job, "seed", json_integer(32));
    r = at_post_json(&c->d, "/v1/jobs", job, k1);
    at_expect_error(&r, 409, "idempotency_key_reused", "header.Idempotency-Key");
    assert_non_null(strstr(r.body, first));
    at_resp_free(&r);
    /* another key: a new job */
    const char *k2[] = {"Idempotency-Key: order-7782", NULL};
    r = at_post_json(&c->d, "/v1/jobs", job, k2);
    assert_int_equal(r.status, 202);
    v = at_json(&r);
    char second[64];
    snprintf(second, sizeof second, "%s", json_string_value(json_object_get(v, "id")));
    assert_string_not_equal(second, first);
    json_decref(v);
    at_resp_free(&r);
    json_decref(job);
    assert_int_equal(at_count_jobs(&c->d, NULL), before + 2);
    json_t *j = at_wait_done(&c->d, first, 60);
    json_decref(j);
    j = at_wait_done(&c->d, second, 60);
    json_decref(j);
}

typedef struct poll_arg {
    const at_daemon *d;
    const char *id;
    double wait, elapsed;
    char state[32];
} poll_arg;

static void *long_poll(void *p)
{
    poll_arg *a = p;
    double t0 = at_now();
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=%g", a->id, a->wait);
    at_resp r = at_get(a->d, path);
    a->elapsed = at_now() - t0;
    if (r.status == 200) {
        json_error_t je;
        json_t *v = json_loadb(r.body, r.len, 0, &je);
        snprintf(a->state, sizeof a->state, "%s", v ? at_state(v) : "");
        json_decref(v);
    }
    at_resp_free(&r);
    return NULL;
}

static void test_cancel_and_long_poll(void **state)
{
    ctx *c = *state;
    /* a long job holds the only worker; the next one waits in the queue */
    json_t *job = at_job_json(1024, 1000, 41, 41);
    char slow[64], queued[64], third[64];
    at_submit(&c->d, job, slow);
    json_decref(job);
    job = at_job_json(2, 5, 42, 42);
    at_submit(&c->d, job, queued);
    at_submit(&c->d, job, third);
    json_decref(job);
    at_wait_running(&c->d, slow, 30);
    json_t *j = at_job(&c->d, queued, 0);
    assert_string_equal(at_state(j), "queued");
    json_decref(j);

    /* a long-poll on a job that does not change answers after its wait */
    poll_arg quiet = {&c->d, third, 0.4, 0, ""};
    long_poll(&quiet);
    assert_string_equal(quiet.state, "queued");
    assert_true(quiet.elapsed >= 0.35 && quiet.elapsed < 5.0);

    /* cancel the queued job: at once */
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", queued);
    at_resp r = at_request(&c->d, "POST", path, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    j = at_json(&r);
    assert_string_equal(at_state(j), "cancelled");
    assert_true(json_is_true(json_object_get(j, "cancel_requested")));
    assert_true(json_is_null(json_object_get(j, "started_at")));
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 0);
    json_decref(j);
    at_resp_free(&r);

    /* a long-poll on the third job wakes up when the slow one is cancelled
     * and the third starts (or finishes) */
    poll_arg wake = {&c->d, third, 30, 0, ""};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, long_poll, &wake), 0);
    at_sleep(0.3);
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", slow);
    r = at_request(&c->d, "POST", path, "{}", 2, NULL);
    assert_int_equal(r.status, 202);
    j = at_json(&r);
    assert_true(json_is_true(json_object_get(j, "cancel_requested")));
    json_decref(j);
    at_resp_free(&r);
    j = at_wait_done(&c->d, slow, 30);
    assert_string_equal(at_state(j), "cancelled");
    assert_true(json_is_null(json_object_get(j, "result")));
    double progress = json_number_value(json_object_get(j, "progress"));
    assert_true(progress < 1.0);
    json_decref(j);
    pthread_join(th, NULL);
    assert_true(!strcmp(wake.state, "running") || !strcmp(wake.state, "succeeded"));
    assert_true(wake.elapsed < 10.0);
    j = at_wait_done(&c->d, third, 60);
    assert_string_equal(at_state(j), "succeeded");
    json_decref(j);

    /* finished jobs cannot be cancelled; unknown ones are not found */
    r = at_request(&c->d, "POST", path, NULL, 0, NULL);
    at_expect_error(&r, 409, "conflict", NULL);
    at_resp_free(&r);
    r = at_request(&c->d, "POST", "/v1/jobs/j_00000000000000000000:cancel", NULL, 0, NULL);
    at_expect_error(&r, 404, "not_found", NULL);
    at_resp_free(&r);
    /* a finished job's long-poll answers at once */
    poll_arg done = {&c->d, third, 20, 0, ""};
    long_poll(&done);
    assert_string_equal(done.state, "succeeded");
    assert_true(done.elapsed < 2.0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_jobs{state=\"cancelled\"}"), 2.0, 0);
    TU_ASSERT_NEAR(at_metric(&c->d, "d2nwgd_http_long_polls"), 0.0, 0);
}

static void test_retrieve(void **state)
{
    ctx *c = *state;
    json_t *q = json_pack("{s:O, s:i}", "dataset", json_object_get(c->job_json, "dataset"), "k", 4);
    at_resp r = at_post_json(&c->d, "/v1/retrieve", q, NULL);
    assert_int_equal(r.status, 200);
    json_t *v = at_json(&r);
    at_resp_free(&r);
    json_t *hits = json_object_get(v, "hits");
    assert_int_equal(json_array_size(hits), 4);
    double prev = -1.0;
    for (size_t i = 0; i < 4; i++) {
        json_t *hit = json_array_get(hits, i);
        double dist = json_number_value(json_object_get(hit, "distance"));
        assert_true(dist >= prev);
        prev = dist;
        assert_true(json_integer_value(json_object_get(hit, "zoo_index")) >= 0);
        assert_int_equal(json_array_size(json_object_get(hit, "classes")), 5);
        double acc = json_number_value(json_object_get(hit, "support_accuracy"));
        assert_true(acc >= 0.0 && acc <= 1.0);
    }
    json_t *j = at_job(&c->d, c->job, 0);
    const char *dsid = json_string_value(json_object_get(j, "dataset_id"));
    assert_string_equal(json_string_value(json_object_get(v, "dataset_fingerprint")), dsid);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(v, "generator"), "name")), "default");
    /* by dataset id: the same answer */
    json_t *q2 = json_pack("{s:s, s:i}", "dataset_id", dsid, "k", 4);
    r = at_post_json(&c->d, "/v1/retrieve", q2, NULL);
    assert_int_equal(r.status, 200);
    json_t *v2 = at_json(&r);
    at_resp_free(&r);
    assert_true(json_equal(json_object_get(v, "hits"), json_object_get(v2, "hits")));
    json_decref(v2);
    json_decref(q2);
    json_decref(j);
    json_decref(v);
    json_decref(q);
}

/* POST a data set (JSON); expects `status`; returns its info (caller decrefs). */
static json_t *post_dataset(ctx *c, const json_t *ds, long status)
{
    at_resp r = at_post_json(&c->d, "/v1/datasets", ds, NULL);
    if (r.status != status)
        fail_msg("POST /v1/datasets: %ld, expected %ld: %.400s", r.status, status, r.body);
    json_t *info = at_json(&r);
    at_resp_free(&r);
    return info;
}

static int has_kind(const json_t *info, const char *kind)
{
    const json_t *kinds = json_object_get(info, "kinds");
    for (size_t i = 0; i < json_array_size(kinds); i++)
        if (!strcmp(json_string_value(json_array_get(kinds, i)), kind))
            return 1;
    return 0;
}

/* The same numbers as samples and as embeddings share one content-addressed
 * id: the store records both kinds, and a job names the kind it reads them as
 * (or the recorded kind that fits the generator is used). */
static void test_dataset_kinds(void **state)
{
    ctx *c = *state;
    /* 128-value rows: this generator's embeddings (its samples have 784) */
    json_t *emb = at_dataset_json(5, 2, 128, 1, 41);
    json_t *smp = json_pack("{s:O, s:O}", "samples", json_object_get(emb, "embeddings"),
                            "labels", json_object_get(emb, "labels"));
    json_t *info = post_dataset(c, smp, 201);
    char dsid[65];
    snprintf(dsid, sizeof dsid, "%s", json_string_value(json_object_get(info, "id")));
    assert_string_equal(json_string_value(json_object_get(info, "kind")), "samples");
    assert_int_equal(json_array_size(json_object_get(info, "kinds")), 1);
    json_decref(info);
    /* read as samples they do not fit this generator */
    json_t *job = json_pack("{s:s, s:i, s:i, s:i}", "dataset_id", dsid, "candidates", 2, "steps",
                            5, "seed", 8);
    at_resp r = at_post_json(&c->d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 422, "invalid_dataset", "dataset_id");
    at_resp_free(&r);
    /* the same numbers as embeddings: same id, not refused, recorded */
    info = post_dataset(c, emb, 200);
    assert_string_equal(json_string_value(json_object_get(info, "id")), dsid);
    assert_string_equal(json_string_value(json_object_get(info, "kind")), "samples"); /* first */
    assert_true(has_kind(info, "samples") && has_kind(info, "embeddings"));
    json_decref(info);
    char path[128];
    snprintf(path, sizeof path, "/v1/datasets/%s", dsid);
    r = at_get(&c->d, path);
    assert_int_equal(r.status, 200);
    info = at_json(&r);
    at_resp_free(&r);
    assert_true(has_kind(info, "samples") && has_kind(info, "embeddings"));
    json_decref(info);
    /* now the job by id reads them as embeddings (the recorded kind that fits);
     * before, it inherited the first upload's kind and was refused */
    char jid[64];
    at_submit(&c->d, job, jid);
    json_t *j = at_wait_done(&c->d, jid, 60);
    assert_string_equal(at_state(j), "succeeded");
    assert_string_equal(json_string_value(json_object_get(j, "dataset_kind")), "embeddings");
    json_decref(j);
    /* a kind the request names is what the job uses: samples do not fit */
    json_object_set_new(job, "dataset_kind", json_string("samples"));
    r = at_post_json(&c->d, "/v1/jobs", job, NULL);
    at_expect_error(&r, 422, "invalid_dataset", "dataset_id");
    assert_non_null(strstr(r.body, "samples"));
    at_resp_free(&r);
    /* ... and it may not accompany an inline data set */
    json_t *bad = json_pack("{s:O, s:s}", "dataset", emb, "dataset_kind", "embeddings");
    r = at_post_json(&c->d, "/v1/jobs", bad, NULL);
    at_expect_error(&r, 400, "invalid_argument", "dataset_kind");
    at_resp_free(&r);
    json_decref(bad);
    /* retrieval by id with the kind named */
    json_t *q = json_pack("{s:s, s:s, s:i}", "dataset_id", dsid, "dataset_kind", "embeddings",
                          "k", 2);
    r = at_post_json(&c->d, "/v1/retrieve", q, NULL);
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    json_decref(q);
    json_decref(job);
    json_decref(smp);
    json_decref(emb);

    /* an inline job records the kind it was sent as, beside numbers first
     * uploaded as the other kind */
    emb = at_dataset_json(5, 2, 128, 1, 42);
    smp = json_pack("{s:O, s:O}", "samples", json_object_get(emb, "embeddings"), "labels",
                    json_object_get(emb, "labels"));
    info = post_dataset(c, smp, 201);
    snprintf(dsid, sizeof dsid, "%s", json_string_value(json_object_get(info, "id")));
    json_decref(info);
    job = json_pack("{s:O, s:i, s:i, s:i}", "dataset", emb, "candidates", 2, "steps", 5, "seed",
                    9);
    at_submit(&c->d, job, jid);
    j = at_wait_done(&c->d, jid, 60);
    assert_string_equal(at_state(j), "succeeded");
    assert_string_equal(json_string_value(json_object_get(j, "dataset_id")), dsid);
    assert_string_equal(json_string_value(json_object_get(j, "dataset_kind")), "embeddings");
    json_decref(j);
    snprintf(path, sizeof path, "/v1/datasets/%s", dsid);
    r = at_get(&c->d, path);
    info = at_json(&r);
    at_resp_free(&r);
    assert_true(has_kind(info, "samples") && has_kind(info, "embeddings"));
    json_decref(info);
    json_decref(job);
    json_decref(smp);
    json_decref(emb);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_and_weights),
        cmocka_unit_test(test_lineage),
        cmocka_unit_test(test_gate_off),
        cmocka_unit_test(test_refine_off),
        cmocka_unit_test(test_out_of_distribution_warning),
        cmocka_unit_test(test_datasets),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_cancel_and_long_poll),
        cmocka_unit_test(test_retrieve),
        cmocka_unit_test(test_dataset_kinds),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
