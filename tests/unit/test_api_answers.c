/* test_api_answers.c - proto/api_results: the bodies the daemon builds and the
 * client parses (JobList, RetrieveResult, Lineage, Generator) and the
 * RetrieveRequest the client builds and the daemon parses, each round-tripped
 * through JSON text and checked against the keys openapi.yaml requires. */
#include "testutil.h"

#include "api.h"

/* Serialise and parse again, as the wire does. */
static json_t *over_the_wire(json_t *v)
{
    assert_non_null(v);
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    assert_non_null(text);
    json_error_t je;
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!back)
        fail_msg("does not parse back: %s", je.text);
    return back;
}

static void expect_keys(const json_t *o, const char *const *keys)
{
    for (int i = 0; keys[i]; i++)
        if (!json_object_get(o, keys[i]))
            fail_msg("missing required key '%s'", keys[i]);
}

static void test_retrieve_request(void **state)
{
    (void)state;
    api_limits lim = api_limits_default();
    api_retrieve_request req;
    api_retrieve_request_init(&req);
    snprintf(req.generator, sizeof req.generator, "quick");
    req.k = 7;
    req.kind = API_KIND_EMBEDDINGS;
    d2_error err;
    assert_int_equal(dataset_alloc(&req.data, 4, 3, &err), 0);
    req.has_dataset = 1;
    for (int i = 0; i < 12; i++)
        req.data.x[i] = 0.25f * (float)i - 1.0f;
    for (int i = 0; i < 4; i++)
        req.data.y[i] = i % 2;
    json_t *v = over_the_wire(api_retrieve_request_to_json(&req));
    assert_non_null(json_object_get(json_object_get(v, "dataset"), "embeddings"));
    assert_null(json_object_get(v, "dataset_id"));
    api_retrieve_request back;
    api_error e;
    if (api_retrieve_request_parse(v, &lim, &back, &e) != 0)
        fail_msg("parse: %s (%s)", e.message, e.field);
    assert_string_equal(back.generator, "quick");
    assert_int_equal(back.k, 7);
    assert_int_equal(back.kind, API_KIND_EMBEDDINGS);
    assert_int_equal(back.has_dataset, 1);
    assert_int_equal(back.data.n, 4);
    assert_int_equal(back.data.dim, 3);
    assert_int_equal(back.data.classes, 2);
    for (int i = 0; i < 12; i++)
        assert_true(back.data.x[i] == req.data.x[i]);
    for (int i = 0; i < 4; i++)
        assert_int_equal(back.data.y[i], i % 2);
    api_retrieve_request_free(&back);
    json_decref(v);
    api_retrieve_request_free(&req);

    /* by id, with and without a kind */
    api_retrieve_request_init(&req);
    snprintf(req.dataset_id, sizeof req.dataset_id, "%064d", 3);
    req.kind = API_KIND_SAMPLES;
    v = over_the_wire(api_retrieve_request_to_json(&req));
    assert_string_equal(json_string_value(json_object_get(v, "dataset_kind")), "samples");
    assert_int_equal(api_retrieve_request_parse(v, &lim, &back, &e), 0);
    assert_string_equal(back.dataset_id, req.dataset_id);
    assert_int_equal(back.kind, API_KIND_SAMPLES);
    assert_int_equal(back.has_dataset, 0);
    assert_int_equal(back.k, 5);
    assert_string_equal(back.generator, "default");
    api_retrieve_request_free(&back);
    json_decref(v);
    req.kind = -1;
    v = over_the_wire(api_retrieve_request_to_json(&req));
    assert_null(json_object_get(v, "dataset_kind"));
    assert_int_equal(api_retrieve_request_parse(v, &lim, &back, &e), 0);
    assert_int_equal(back.kind, -1);
    api_retrieve_request_free(&back);
    json_decref(v);
}

static void test_retrieve_result(void **state)
{
    (void)state;
    api_retrieve_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.generator_name, sizeof r.generator_name, "default");
    snprintf(r.generator_id, sizeof r.generator_id, "%064d", 1);
    snprintf(r.dataset_fingerprint, sizeof r.dataset_fingerprint, "%064d", 2);
    r.nhits = 2;
    r.hits[0] = (gen_retrieval){.zoo_index = 17, .distance = 0.5f, .support_acc = 0.75f,
                                .classes = {3, 1, 4}, .way = 3};
    r.hits[1] = (gen_retrieval){.zoo_index = 2, .distance = 1.25f, .support_acc = 0.25f,
                                .classes = {9, 8}, .way = 2};
    json_t *v = over_the_wire(api_retrieve_result_to_json(&r));
    static const char *const keys[] = {"generator", "dataset_fingerprint", "hits", NULL};
    static const char *const hit_keys[] = {"zoo_index", "distance", "support_accuracy",
                                           "classes", NULL};
    expect_keys(v, keys);
    expect_keys(json_array_get(json_object_get(v, "hits"), 0), hit_keys);
    api_retrieve_result back;
    api_error e;
    assert_int_equal(api_retrieve_result_from_json(v, &back, &e), 0);
    assert_string_equal(back.generator_name, "default");
    assert_string_equal(back.generator_id, r.generator_id);
    assert_string_equal(back.dataset_fingerprint, r.dataset_fingerprint);
    assert_int_equal(back.nhits, 2);
    assert_int_equal(back.hits[0].zoo_index, 17);
    TU_ASSERT_NEAR(back.hits[1].distance, 1.25, 1e-6);
    TU_ASSERT_NEAR(back.hits[0].support_acc, 0.75, 1e-6);
    assert_int_equal(back.hits[0].way, 3);
    assert_int_equal(back.hits[0].classes[2], 4);
    assert_int_equal(back.hits[1].way, 2);
    assert_int_equal(back.hits[1].classes[0], 9);
    json_decref(v);
    /* not a retrieval */
    v = json_pack("{s:i}", "hits", 3);
    assert_int_not_equal(api_retrieve_result_from_json(v, &back, &e), 0);
    assert_string_equal(e.code, "invalid_json");
    json_decref(v);
}

static void fill_job(api_job *j, int i, int succeeded)
{
    api_job_init(j);
    snprintf(j->id, sizeof j->id, "j_%020d", i);
    j->state = succeeded ? API_JOB_SUCCEEDED : API_JOB_QUEUED;
    snprintf(j->generator_name, sizeof j->generator_name, "default");
    j->candidates = 4 + i;
    j->steps = 20;
    j->seed = 1000 + i;
    j->created_ms = 1700000000000LL + i;
    if (succeeded) {
        j->way = 5;
        j->ncheckpoints = 2;
        j->checkpoints = calloc(2, sizeof *j->checkpoints);
        assert_non_null(j->checkpoints);
        for (int k = 0; k < 2; k++) {
            snprintf(j->checkpoints[k].id, sizeof j->checkpoints[k].id, "ck_%020d_%d", i, k);
            j->checkpoints[k].rank = k;
            j->checkpoints[k].support_acc = 0.9 - 0.1 * k;
        }
    }
}

static void test_job_list(void **state)
{
    (void)state;
    api_job jobs[2];
    fill_job(&jobs[0], 1, 1);
    fill_job(&jobs[1], 2, 0);
    api_job_list l = {2, jobs, ""};
    snprintf(l.next_after, sizeof l.next_after, "%s", jobs[1].id);
    json_t *v = over_the_wire(api_job_list_to_json(&l));
    static const char *const keys[] = {"jobs", "next_after", NULL};
    expect_keys(v, keys);
    api_job_list back;
    api_error e;
    assert_int_equal(api_job_list_from_json(v, &back, &e), 0);
    assert_int_equal(back.n, 2);
    assert_string_equal(back.next_after, jobs[1].id);
    assert_string_equal(back.jobs[0].id, jobs[0].id);
    assert_int_equal(back.jobs[0].state, API_JOB_SUCCEEDED);
    assert_int_equal(back.jobs[0].ncheckpoints, 2);
    assert_string_equal(back.jobs[0].checkpoints[1].id, jobs[0].checkpoints[1].id);
    TU_ASSERT_NEAR(back.jobs[0].checkpoints[0].support_acc, 0.9, 1e-9);
    assert_int_equal(back.jobs[1].state, API_JOB_QUEUED);
    assert_int_equal(back.jobs[1].candidates, 6);
    assert_int_equal(back.jobs[1].seed, 1002);
    assert_int_equal(back.jobs[1].created_ms, jobs[1].created_ms);
    api_job_list_free(&back);
    json_decref(v);
    /* the last page: next_after is null, and reads back as "" */
    l.next_after[0] = '\0';
    l.n = 0;
    v = over_the_wire(api_job_list_to_json(&l));
    assert_true(json_is_null(json_object_get(v, "next_after")));
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 0);
    assert_int_equal(api_job_list_from_json(v, &back, &e), 0);
    assert_int_equal(back.n, 0);
    assert_string_equal(back.next_after, "");
    json_decref(v);
    /* a job without an id spoils the list */
    v = json_pack("{s:[{s:s}], s:n}", "jobs", "state", "queued", "next_after");
    assert_int_not_equal(api_job_list_from_json(v, &back, &e), 0);
    assert_null(back.jobs);
    json_decref(v);
    api_job_free(&jobs[0]);
    api_job_free(&jobs[1]);
}

static void fill_lineage(api_lineage *l)
{
    api_lineage_init(l);
    snprintf(l->checkpoint.id, sizeof l->checkpoint.id, "ck_%020d_1", 4);
    snprintf(l->checkpoint.job_id, sizeof l->checkpoint.job_id, "j_%020d", 4);
    l->checkpoint.rank = 1;
    l->checkpoint.support_acc = 0.8;
    l->checkpoint.size_bytes = 12345;
    l->checkpoint.method = GEN_METHOD_LOGREG;
    snprintf(l->generator_id, sizeof l->generator_id, "%064d", 6);
    snprintf(l->generator_name, sizeof l->generator_name, "quick");
    snprintf(l->spec, sizeof l->spec, "pca:128 | linear 128->5");
    snprintf(l->zoo_fingerprint, sizeof l->zoo_fingerprint, "%064d", 8);
    l->zoo_size = 40;
    l->config_json = strdup("{\"diffusion\":{\"T\":400}}");
    l->provenance_json = strdup("{\"seed\":3}");
    snprintf(l->dataset.id, sizeof l->dataset.id, "%064d", 9);
    l->dataset.kind = API_KIND_SAMPLES;
    l->dataset.kinds = 1;
    l->dataset.n = 6;
    l->dataset.dim = 784;
    l->dataset.classes = 3;
    l->dataset.class_counts[0] = l->dataset.class_counts[1] = l->dataset.class_counts[2] = 2;
    l->dataset.created_ms = 1700000000000LL;
    snprintf(l->job.id, sizeof l->job.id, "%s", l->checkpoint.job_id);
    l->job.state = API_JOB_SUCCEEDED;
    l->job.created_ms = 1700000001000LL;
    l->job.finished_ms = 1700000002500LL;
    l->job.priority = 7;
    l->job.seed = 11;
    l->job.sampler = GEN_SAMPLER_DDPM;
    l->job.steps = 30;
    l->job.guidance = 2.5;
    l->job.candidates = 8;
    snprintf(l->job.parent_checkpoint, sizeof l->job.parent_checkpoint, "ck_%020d_0", 1);
    l->nderived = 2;
    l->derived = calloc(2, sizeof *l->derived);
    assert_non_null(l->derived);
    snprintf(l->derived[0], sizeof l->derived[0], "ck_%020d_0", 5);
    snprintf(l->derived[1], sizeof l->derived[1], "ck_%020d_3", 6);
}

static void test_lineage(void **state)
{
    (void)state;
    api_lineage l;
    fill_lineage(&l);
    assert_non_null(l.config_json);
    gen_gate core = {.applied = 1, .chosen = GEN_METHOD_LOGREG, .folds = 2, .heldout = 10,
                     .cv_acc = {0.5f, 0.6f, 0.7f}, .reason = "2-fold cross-validation",
                     .ood_distance = 1.25f, .ood_percentile = 40.0f, .ood = 0};
    api_gate_from_result(&l.job.gate, &core, 1);
    l.job.has_gate = 1;
    json_t *v = over_the_wire(api_lineage_to_json(&l));
    static const char *const gatekeys[] = {"applied", "chosen", "folds", "heldout",
                                           "cv_accuracy", "reason", "ood_distance",
                                           "ood_percentile", "ood", NULL};
    expect_keys(json_object_get(v, "gate"), gatekeys);
    assert_string_equal(json_string_value(json_object_get(v, "method")), "logreg");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(v, "checkpoint"), "method")),
        "logreg");
    static const char *const keys[] = {"checkpoint", "generator", "dataset", "job", "seed",
                                       "sampler", "rank", "parent", "derived", "method",
                                       "gate", NULL};
    static const char *const gkeys[] = {"id", "name", "spec", "zoo_fingerprint", "zoo_size",
                                        "config", "provenance", NULL};
    static const char *const jkeys[] = {"id", "state", "created_at", "finished_at", "priority",
                                        NULL};
    expect_keys(v, keys);
    expect_keys(json_object_get(v, "generator"), gkeys);
    expect_keys(json_object_get(v, "job"), jkeys);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(json_object_get(v, "generator"),
                                                         "config"),
                                         "diffusion"),
                         "T")),
                     400);
    api_lineage back;
    api_error e;
    if (api_lineage_from_json(v, &back, &e) != 0)
        fail_msg("lineage: %s", e.message);
    assert_string_equal(back.checkpoint.id, l.checkpoint.id);
    assert_int_equal(back.checkpoint.rank, 1);
    assert_int_equal(back.checkpoint.size_bytes, 12345);
    assert_string_equal(back.generator_name, "quick");
    assert_string_equal(back.spec, l.spec);
    assert_string_equal(back.zoo_fingerprint, l.zoo_fingerprint);
    assert_int_equal(back.zoo_size, 40);
    assert_string_equal(back.config_json, "{\"diffusion\":{\"T\":400}}");
    assert_string_equal(back.provenance_json, "{\"seed\":3}");
    assert_string_equal(back.dataset.id, l.dataset.id);
    assert_int_equal(back.dataset.dim, 784);
    assert_int_equal(back.dataset.class_counts[2], 2);
    assert_string_equal(back.job.id, l.job.id);
    assert_int_equal(back.job.state, API_JOB_SUCCEEDED);
    assert_int_equal(back.job.created_ms, l.job.created_ms);
    assert_int_equal(back.job.finished_ms, l.job.finished_ms);
    assert_int_equal(back.job.priority, 7);
    assert_int_equal(back.job.seed, 11);
    assert_int_equal(back.job.sampler, GEN_SAMPLER_DDPM);
    assert_int_equal(back.job.steps, 30);
    TU_ASSERT_NEAR(back.job.guidance, 2.5, 1e-9);
    assert_int_equal(back.job.candidates, 8);
    assert_string_equal(back.job.parent_checkpoint, l.job.parent_checkpoint);
    assert_int_equal(back.nderived, 2);
    assert_string_equal(back.derived[1], l.derived[1]);
    assert_int_equal(back.checkpoint.method, GEN_METHOD_LOGREG);
    assert_int_equal(back.job.has_gate, 1);
    assert_int_equal(back.job.gate.chosen, GEN_METHOD_LOGREG);
    assert_int_equal(back.job.gate.heldout, 10);
    TU_ASSERT_NEAR(back.job.gate.cv_acc[GEN_METHOD_LOGREG], 0.7, 1e-6);
    TU_ASSERT_NEAR(back.job.gate.ood_distance, 1.25, 1e-6);
    assert_string_equal(back.job.gate.reason, "2-fold cross-validation");
    api_lineage_free(&back);
    json_decref(v);
    /* no parent, nothing derived, not finished: nulls and an empty list */
    l.job.parent_checkpoint[0] = '\0';
    l.job.finished_ms = 0;
    l.nderived = 0;
    l.job.has_gate = 0; /* a job from before the gate: gate null */
    v = over_the_wire(api_lineage_to_json(&l));
    assert_true(json_is_null(json_object_get(v, "gate")));
    assert_int_equal(api_lineage_from_json(v, &back, &e), 0);
    assert_int_equal(back.job.has_gate, 0);
    api_lineage_free(&back);
    assert_true(json_is_null(json_object_get(v, "parent")));
    assert_true(json_is_null(json_object_get(json_object_get(v, "job"), "finished_at")));
    assert_int_equal(json_array_size(json_object_get(v, "derived")), 0);
    json_decref(v);
    api_lineage_free(&l);
    /* a lineage without a checkpoint is refused */
    v = json_pack("{s:{}}", "generator");
    assert_int_not_equal(api_lineage_from_json(v, &back, &e), 0);
    assert_string_equal(e.code, "invalid_json");
    json_decref(v);
}

static void test_generator(void **state)
{
    (void)state;
    gen_info gi;
    memset(&gi, 0, sizeof gi);
    snprintf(gi.id, sizeof gi.id, "%064d", 5);
    gi.input_dim = 784;
    gi.feature_dim = 128;
    gi.max_way = 5;
    gi.min_way = 5;
    gi.params = 645;
    gi.zoo_size = 40;
    gi.default_candidates = 8;
    gi.default_steps = 50;
    gi.default_guidance = 2.0f;
    gi.default_sampler = GEN_SAMPLER_DDPM;
    api_generator_entry entries[3] = {
        {"default", &gi, 1700000000000LL, "ready", ""},
        {"glyphs", NULL, 0, "loading", "waiting for the file var/glyphs.safetensors"},
        {"bad", NULL, 0, "failed", "bad.safetensors: not a safetensors file"}};
    json_t *v = over_the_wire(api_generator_list_to_json(entries, 3));
    /* a generator that is not ready is only name, state and message */
    static const char *const pkeys[] = {"name", "state", "message", NULL};
    const json_t *loading = json_array_get(json_object_get(v, "generators"), 1);
    expect_keys(loading, pkeys);
    assert_int_equal(json_object_size(loading), 3);
    api_generator *list;
    int n;
    api_error e;
    assert_int_equal(api_generator_list_from_json(v, &list, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[1].name, "glyphs");
    assert_string_equal(list[1].state, "loading");
    assert_string_equal(list[1].message, "waiting for the file var/glyphs.safetensors");
    assert_string_equal(list[2].state, "failed");
    assert_string_equal(list[2].message, "bad.safetensors: not a safetensors file");
    assert_string_equal(list[0].state, "ready");
    assert_string_equal(list[0].name, "default");
    assert_string_equal(list[0].id, gi.id);
    assert_int_equal(list[0].input_dim, 784);
    assert_int_equal(list[0].feature_dim, 128);
    assert_int_equal(list[0].min_way, 5);
    assert_int_equal(list[0].params, 645);
    assert_int_equal(list[0].zoo_size, 40);
    assert_int_equal(list[0].default_candidates, 8);
    assert_int_equal(list[0].default_steps, 50);
    assert_int_equal(list[0].default_sampler, GEN_SAMPLER_DDPM);
    TU_ASSERT_NEAR(list[0].default_guidance, 2.0, 1e-9);
    assert_int_equal(list[0].loaded_ms, 1700000000000LL);
    free(list);
    json_decref(v);
    v = json_pack("{s:[{s:i}]}", "generators", "name", 3);
    assert_int_not_equal(api_generator_list_from_json(v, &list, &n, &e), 0);
    assert_null(list);
    json_decref(v);
}

static void test_health_and_ready(void **state)
{
    (void)state;
    json_t *v = over_the_wire(api_health_to_json("1.2.3", 12.5));
    static const char *const hkeys[] = {"status", "version", "uptime_seconds", NULL};
    expect_keys(v, hkeys);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(v, "version")), "1.2.3");
    TU_ASSERT_NEAR(json_number_value(json_object_get(v, "uptime_seconds")), 12.5, 1e-9);
    json_decref(v);
    v = over_the_wire(api_ready_to_json(2, 3, 1));
    static const char *const rkeys[] = {"status", "generators", "pending", "running", NULL};
    expect_keys(v, rkeys);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "ready");
    assert_int_equal(json_integer_value(json_object_get(v, "generators")), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "pending")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "running")), 1);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retrieve_request), cmocka_unit_test(test_retrieve_result),
        cmocka_unit_test(test_job_list),         cmocka_unit_test(test_lineage),
        cmocka_unit_test(test_generator),        cmocka_unit_test(test_health_and_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
