/* test_api.c - proto/api: JSON <-> structs and validation with field-level
 * errors (the wire contract of proto/openapi.yaml). */
#include <math.h>

#include "testutil.h"

#include "api.h"
#include "safetensors.h"

static api_limits lim(void)
{
    api_limits l = api_limits_default();
    l.max_samples = 8;
    l.max_classes = 4;
    return l;
}

static json_t *parse(const char *s)
{
    json_error_t je;
    json_t *v = json_loads(s, JSON_REJECT_DUPLICATES, &je);
    if (!v)
        fail_msg("test JSON does not parse: %s: %s", s, je.text);
    return v;
}

/* Parse a DatasetInput and expect an error with this status, code and field. */
static void expect_dataset_error(const char *js, int status, const char *code, const char *field)
{
    json_t *v = parse(js);
    api_limits l = lim();
    dataset d;
    int kind = -1;
    api_error e;
    api_error_clear(&e);
    int rc = api_dataset_parse(v, "dataset", &l, &d, &kind, &e);
    json_decref(v);
    if (rc == 0) {
        dataset_free(&d);
        fail_msg("accepted %s", js);
    }
    if (e.status != status || strcmp(e.code, code) != 0 || strcmp(e.field, field) != 0)
        fail_msg("%s: got %d %s field '%s' (%s), expected %d %s field '%s'", js, e.status, e.code,
                 e.field, e.message, status, code, field);
    assert_null(d.x);
}

static void test_dataset_ok(void **state)
{
    (void)state;
    json_t *v = parse("{\"samples\": [[1, 2.5], [3, -4], [0.5, 0]], \"labels\": [1, 0, 1]}");
    api_limits l = lim();
    dataset d;
    int kind = -1;
    api_error e;
    assert_int_equal(api_dataset_parse(v, "dataset", &l, &d, &kind, &e), 0);
    json_decref(v);
    assert_int_equal(kind, API_KIND_SAMPLES);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.dim, 2);
    assert_int_equal(d.classes, 2);
    assert_true(d.x[1] == 2.5f && d.x[3] == -4.0f && d.x[4] == 0.5f);
    assert_int_equal(d.y[0], 1);
    assert_int_equal(d.y[1], 0);
    api_dataset_info info;
    api_dataset_info_fill(&info, &d, kind);
    assert_int_equal(info.class_counts[0], 1);
    assert_int_equal(info.class_counts[1], 2);
    /* kinds: every kind the numbers were uploaded as, through JSON and back */
    assert_int_equal(info.kinds, 1 << API_KIND_SAMPLES);
    info.kinds |= 1 << API_KIND_EMBEDDINGS;
    snprintf(info.id, sizeof info.id, "%064d", 7);
    info.created_ms = 1000;
    json_t *ij = api_dataset_info_to_json(&info);
    assert_int_equal(json_array_size(json_object_get(ij, "kinds")), 2);
    api_dataset_info info2;
    assert_int_equal(api_dataset_info_from_json(ij, &info2, &e), 0);
    assert_int_equal(info2.kind, API_KIND_SAMPLES);
    assert_int_equal(info2.kinds, info.kinds);
    json_decref(ij);
    /* round trip through the client-side encoder */
    json_t *back = api_dataset_to_json(&d, API_KIND_EMBEDDINGS);
    assert_non_null(json_object_get(back, "embeddings"));
    dataset d2;
    assert_int_equal(api_dataset_parse(back, "", &l, &d2, &kind, &e), 0);
    assert_int_equal(kind, API_KIND_EMBEDDINGS);
    assert_int_equal(d2.n, 3);
    assert_memory_equal(d2.x, d.x, sizeof(float) * 6);
    assert_memory_equal(d2.y, d.y, sizeof(int32_t) * 3);
    json_decref(back);
    dataset_free(&d);
    dataset_free(&d2);
}

static void test_dataset_errors(void **state)
{
    (void)state;
    expect_dataset_error("[]", 400, "invalid_argument", "dataset");
    expect_dataset_error("{\"labels\": [0]}", 400, "invalid_argument", "dataset.samples");
    expect_dataset_error("{\"samples\": [[1]], \"embeddings\": [[1]], \"labels\": [0]}", 400,
                         "invalid_argument", "dataset.embeddings");
    expect_dataset_error("{\"samples\": [[1]], \"labels\": [0], \"extra\": 1}", 400,
                         "invalid_argument", "dataset.extra");
    expect_dataset_error("{\"samples\": [[1]]}", 400, "invalid_argument", "dataset.labels");
    expect_dataset_error("{\"samples\": {}, \"labels\": [0]}", 400, "invalid_argument",
                         "dataset.samples");
    expect_dataset_error("{\"samples\": [], \"labels\": []}", 422, "invalid_dataset",
                         "dataset.samples");
    /* ragged row 1 */
    expect_dataset_error("{\"samples\": [[1, 2], [3], [4, 5]], \"labels\": [0, 1, 0]}", 422,
                         "invalid_dataset", "dataset.samples[1]");
    /* a string where a number belongs */
    expect_dataset_error("{\"samples\": [[1, 2], [3, \"x\"]], \"labels\": [0, 1]}", 400,
                         "invalid_argument", "dataset.samples[1][1]");
    /* finite in JSON (double) but not in float32 */
    expect_dataset_error("{\"embeddings\": [[1, 2], [3, 1e39]], \"labels\": [0, 1]}", 422,
                         "invalid_dataset", "dataset.embeddings[1][1]");
    expect_dataset_error("{\"samples\": [[1], [2]], \"labels\": [0]}", 422, "invalid_dataset",
                         "dataset.labels");
    expect_dataset_error("{\"samples\": [[1], [2]], \"labels\": [0, 1.5]}", 400,
                         "invalid_argument", "dataset.labels[1]");
    expect_dataset_error("{\"samples\": [[1], [2]], \"labels\": [0, -1]}", 422,
                         "invalid_dataset", "dataset.labels[1]");
    /* max_classes = 4 in these limits */
    expect_dataset_error("{\"samples\": [[1], [2]], \"labels\": [0, 4]}", 422, "invalid_dataset",
                         "dataset.labels[1]");
    /* class 1 missing */
    expect_dataset_error("{\"samples\": [[1], [2]], \"labels\": [0, 2]}", 422, "invalid_dataset",
                         "dataset.labels");
    /* max_samples = 8 */
    expect_dataset_error("{\"samples\": [[1],[1],[1],[1],[1],[1],[1],[1],[1]], "
                         "\"labels\": [0,0,0,0,0,1,1,1,1]}",
                         422, "invalid_dataset", "dataset.samples");
}

static void test_parse_body(void **state)
{
    (void)state;
    json_t *v = NULL;
    api_error e;
    const char ok[] = "{\"a\": 1}";
    assert_int_equal(api_parse_body(ok, sizeof ok - 1, &v, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    json_decref(v);
    const char *bad[] = {"{\"a\": 1, \"a\": 2}", "{\"a\": 1} x", "[1, 2]", "{\"a\": ", "", "nul"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        api_error_clear(&e);
        assert_int_not_equal(api_parse_body(bad[i], strlen(bad[i]), &v, &e), 0);
        assert_null(v);
        assert_int_equal(e.status, 400);
        assert_string_equal(e.code, "invalid_json");
    }
}

static void expect_job_error(const char *js, int status, const char *code, const char *field)
{
    json_t *v = parse(js);
    api_limits l = lim();
    api_job_request r;
    api_error e;
    api_error_clear(&e);
    int rc = api_job_request_parse(v, &l, &r, &e);
    json_decref(v);
    api_job_request_free(&r);
    if (rc == 0)
        fail_msg("accepted %s", js);
    if (e.status != status || strcmp(e.code, code) != 0 || strcmp(e.field, field) != 0)
        fail_msg("%s: got %d %s field '%s' (%s), expected %d %s field '%s'", js, e.status, e.code,
                 e.field, e.message, status, code, field);
}

static const char DS[] = "\"dataset\": {\"samples\": [[1], [2]], \"labels\": [0, 1]}";

static void test_job_request(void **state)
{
    (void)state;
    api_limits l = lim();
    api_job_request r;
    api_error e;
    char js[512];
    snprintf(js, sizeof js, "{%s}", DS);
    json_t *v = parse(js);
    assert_int_equal(api_job_request_parse(v, &l, &r, &e), 0);
    json_decref(v);
    assert_string_equal(r.generator, "default");
    assert_int_equal(r.candidates, 0);
    assert_int_equal(r.steps, 0);
    assert_int_equal(r.sampler, -1);
    assert_int_equal(r.has_guidance, 0);
    assert_int_equal(r.has_seed, 0);
    assert_int_equal(r.priority, 5);
    assert_int_equal(r.gate, 1); /* the gate is on unless the request says false */
    assert_int_equal(r.refine, 1); /* so is refinement */
    assert_int_equal(r.has_dataset, 1);
    assert_int_equal(r.data.n, 2);
    json_t *dflt = api_job_request_to_json(&r);
    assert_null(json_object_get(dflt, "gate")); /* the default is not spelled out */
    assert_null(json_object_get(dflt, "refine"));
    json_decref(dflt);
    api_job_request_free(&r);

    /* gate: false survives the client-side encoder and the parser */
    snprintf(js, sizeof js, "{%s, \"gate\": false}", DS);
    v = parse(js);
    assert_int_equal(api_job_request_parse(v, &l, &r, &e), 0);
    json_decref(v);
    assert_int_equal(r.gate, 0);
    dflt = api_job_request_to_json(&r);
    assert_true(json_is_false(json_object_get(dflt, "gate")));
    api_job_request_free(&r);
    assert_int_equal(api_job_request_parse(dflt, &l, &r, &e), 0);
    assert_int_equal(r.gate, 0);
    json_decref(dflt);
    api_job_request_free(&r);
    /* refine: false, the same way */
    snprintf(js, sizeof js, "{%s, \"refine\": false}", DS);
    v = parse(js);
    assert_int_equal(api_job_request_parse(v, &l, &r, &e), 0);
    json_decref(v);
    assert_int_equal(r.refine, 0);
    assert_int_equal(r.gate, 1);
    dflt = api_job_request_to_json(&r);
    assert_true(json_is_false(json_object_get(dflt, "refine")));
    api_job_request_free(&r);
    assert_int_equal(api_job_request_parse(dflt, &l, &r, &e), 0);
    assert_int_equal(r.refine, 0);
    json_decref(dflt);
    api_job_request_free(&r);
    snprintf(js, sizeof js, "{%s, \"gate\": true}", DS);
    v = parse(js);
    assert_int_equal(api_job_request_parse(v, &l, &r, &e), 0);
    json_decref(v);
    assert_int_equal(r.gate, 1);
    api_job_request_free(&r);

    snprintf(js, sizeof js,
             "{\"generator\": \"g2\", %s, \"candidates\": 8, \"steps\": 20, \"sampler\": \"ddpm\","
             " \"guidance\": 2.5, \"seed\": 9007199254740993, \"priority\": 9,"
             " \"parent_checkpoint\": \"ck_0123456789abcdef0123_0\"}",
             DS);
    v = parse(js);
    assert_int_equal(api_job_request_parse(v, &l, &r, &e), 0);
    json_decref(v);
    assert_string_equal(r.generator, "g2");
    assert_int_equal(r.candidates, 8);
    assert_int_equal(r.steps, 20);
    assert_int_equal(r.sampler, GEN_SAMPLER_DDPM);
    assert_true(r.has_guidance && r.guidance == 2.5);
    assert_true(r.has_seed && r.seed == 9007199254740993LL);
    assert_int_equal(r.priority, 9);
    assert_string_equal(r.parent_checkpoint, "ck_0123456789abcdef0123_0");
    /* to_json and back gives the same request */
    json_t *out = api_job_request_to_json(&r);
    api_job_request r2;
    assert_int_equal(api_job_request_parse(out, &l, &r2, &e), 0);
    assert_string_equal(r2.generator, "g2");
    assert_int_equal(r2.candidates, 8);
    assert_true(r2.seed == r.seed && r2.guidance == r.guidance && r2.sampler == r.sampler);
    assert_int_equal(r2.priority, 9);
    assert_int_equal(r2.data.n, 2);
    assert_memory_equal(r2.data.x, r.data.x, 2 * sizeof(float));
    json_decref(out);
    api_job_request_free(&r2);
    api_job_request_free(&r);

    /* null means absent; dataset_id instead of dataset */
    v = parse("{\"dataset_id\": \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
              " \"seed\": null, \"guidance\": null}");
    assert_int_equal(api_job_request_parse(v, &l, &r, &e), 0);
    json_decref(v);
    assert_int_equal(r.has_dataset, 0);
    assert_int_equal(r.has_seed, 0);
    assert_string_equal(r.dataset_id,
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    assert_int_equal(r.kind, -1); /* no dataset_kind: the stored kinds decide */
    api_job_request_free(&r);

    /* dataset_kind says how to read an uploaded data set, and survives the
     * client-side encoder */
    v = parse("{\"dataset_id\": \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
              " \"dataset_kind\": \"embeddings\"}");
    assert_int_equal(api_job_request_parse(v, &l, &r, &e), 0);
    json_decref(v);
    assert_int_equal(r.kind, API_KIND_EMBEDDINGS);
    out = api_job_request_to_json(&r);
    assert_string_equal(json_string_value(json_object_get(out, "dataset_kind")), "embeddings");
    json_decref(out);
    api_job_request_free(&r);
}

static void test_job_request_errors(void **state)
{
    (void)state;
    char js[512];
#define BAD(extra, status, code, field)                                        \
    do {                                                                       \
        snprintf(js, sizeof js, "{%s%s}", DS, extra);                          \
        expect_job_error(js, status, code, field);                             \
    } while (0)
    BAD(", \"candidates\": 0", 400, "invalid_argument", "candidates");
    BAD(", \"candidates\": \"8\"", 400, "invalid_argument", "candidates");
    BAD(", \"candidates\": 8.0", 400, "invalid_argument", "candidates");
    BAD(", \"candidates\": 65", 400, "invalid_argument", "candidates");
    BAD(", \"steps\": 1001", 400, "invalid_argument", "steps");
    BAD(", \"sampler\": \"euler\"", 400, "invalid_argument", "sampler");
    BAD(", \"guidance\": -1", 400, "invalid_argument", "guidance");
    BAD(", \"guidance\": \"2\"", 400, "invalid_argument", "guidance");
    BAD(", \"seed\": -3", 400, "invalid_argument", "seed");
    BAD(", \"priority\": 10", 400, "invalid_argument", "priority");
    BAD(", \"generator\": 3", 400, "invalid_argument", "generator");
    BAD(", \"generator\": \"\"", 400, "invalid_argument", "generator");
    BAD(", \"colour\": \"red\"", 400, "invalid_argument", "colour");
    BAD(", \"parent_checkpoint\": \"ck_x\"", 400, "invalid_argument", "parent_checkpoint");
    BAD(", \"dataset_id\": \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
        400, "invalid_argument", "dataset_id");
    BAD(", \"dataset_kind\": \"samples\"", 400, "invalid_argument", "dataset_kind");
    BAD(", \"gate\": 0", 400, "invalid_argument", "gate");
    BAD(", \"refine\": \"yes\"", 400, "invalid_argument", "refine");
    BAD(", \"gate\": \"false\"", 400, "invalid_argument", "gate");
#undef BAD
    expect_job_error("{}", 400, "invalid_argument", "dataset");
    expect_job_error("{\"dataset_id\": \"ABC\"}", 400, "invalid_argument", "dataset_id");
    expect_job_error("{\"dataset_id\": \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
                     " \"dataset_kind\": \"pixels\"}", 400, "invalid_argument", "dataset_kind");
    /* field errors (400) come before data errors (422) */
    expect_job_error("{\"dataset\": {\"samples\": [[1], []], \"labels\": [0, 1]}, \"steps\": 0}",
                     400, "invalid_argument", "steps");
    expect_job_error("{\"dataset\": {\"samples\": [[1], []], \"labels\": [0, 1]}}", 422,
                     "invalid_dataset", "dataset.samples[1]");
}

static void test_job_json_roundtrip(void **state)
{
    (void)state;
    api_job j;
    api_job_init(&j);
    snprintf(j.id, sizeof j.id, "j_00112233445566778899");
    j.state = API_JOB_SUCCEEDED;
    j.progress = 1.0;
    snprintf(j.generator_name, sizeof j.generator_name, "default");
    snprintf(j.generator_id, sizeof j.generator_id, "%064d", 7);
    snprintf(j.dataset_id, sizeof j.dataset_id, "%064d", 9);
    j.kind = API_KIND_EMBEDDINGS;
    j.candidates = 4;
    j.steps = 50;
    j.sampler = GEN_SAMPLER_DDIM;
    j.guidance = 2.0;
    j.seed = 123456789012LL;
    j.priority = 7;
    j.attempts = 2;
    j.created_ms = 1700000000123LL;
    j.started_ms = 1700000000500LL;
    j.finished_ms = 1700000001500LL;
    j.run_seconds = 1.0;
    j.way = 5;
    j.ncheckpoints = 2;
    j.checkpoints = calloc(2, sizeof *j.checkpoints);
    for (int i = 0; i < 2; i++) {
        api_checkpoint *c = &j.checkpoints[i];
        snprintf(c->id, sizeof c->id, "ck_00112233445566778899_%d", i);
        snprintf(c->job_id, sizeof c->job_id, "%s", j.id);
        c->rank = i;
        c->candidate_index = 3 - i;
        c->support_acc = 1.0 - 0.25 * i;
        c->support_loss = 0.5 + i;
        c->zoo_nearest = 11 + i;
        c->size_bytes = 1000 + i;
        c->seed = j.seed;
        c->created_ms = j.finished_ms;
        snprintf(c->sha256, sizeof c->sha256, "%064d", i);
        c->method = i ? GEN_METHOD_DIFFUSION : GEN_METHOD_PROTOTYPES;
    }
    /* the gate's decision: prototypes won 3-fold cross-validation, logreg not
     * measured (null), the support set out of distribution */
    gen_gate core = {.applied = 1, .chosen = GEN_METHOD_PROTOTYPES, .folds = 3, .heldout = 15,
                     .cv_acc = {0.6f, 0.8f, NAN}, .reason = "3-fold cross-validation",
                     .ood_distance = 2.5f, .ood_percentile = 99.5f, .ood = 1};
    api_gate_from_result(&j.gate, &core, 1);
    j.has_gate = 1;
    json_t *o = api_job_to_json(&j);
    json_t *g = json_object_get(o, "gate");
    assert_string_equal(json_string_value(json_object_get(g, "chosen")), "prototypes");
    assert_true(json_is_true(json_object_get(g, "applied")));
    assert_true(json_is_null(json_object_get(json_object_get(g, "cv_accuracy"), "logreg")));
    TU_ASSERT_NEAR(json_number_value(json_object_get(json_object_get(g, "cv_accuracy"),
                                                     "prototypes")), 0.8, 1e-6);
    json_t *warn = json_array_get(json_object_get(o, "warnings"), 0);
    assert_string_equal(json_string_value(json_object_get(warn, "code")), "out_of_distribution");
    assert_true(json_is_true(json_object_get(json_object_get(o, "params"), "gate")));
    json_t *ck0 = json_array_get(json_object_get(json_object_get(o, "result"), "checkpoints"), 0);
    assert_string_equal(json_string_value(json_object_get(ck0, "method")), "prototypes");
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(o, "created_at")),
                        "2023-11-14T22:13:20.123Z");
    TU_ASSERT_NEAR(json_number_value(json_object_get(o, "queue_seconds")), 0.377, 1e-9);
    assert_true(json_is_null(json_object_get(o, "error")));
    assert_true(json_is_null(json_object_get(o, "parent_checkpoint")));
    json_t *links = json_object_get(o, "links");
    assert_string_equal(json_string_value(json_object_get(links, "cancel")),
                        "/v1/jobs/j_00112233445566778899:cancel");
    api_job k;
    api_error e;
    assert_int_equal(api_job_from_json(o, &k, &e), 0);
    assert_string_equal(k.id, j.id);
    assert_int_equal(k.state, API_JOB_SUCCEEDED);
    assert_int_equal(k.kind, API_KIND_EMBEDDINGS);
    assert_true(k.seed == j.seed && k.created_ms == j.created_ms &&
                k.finished_ms == j.finished_ms && k.started_ms == j.started_ms);
    assert_int_equal(k.priority, 7);
    assert_int_equal(k.attempts, 2);
    assert_int_equal(k.way, 5);
    assert_int_equal(k.ncheckpoints, 2);
    assert_string_equal(k.checkpoints[1].id, "ck_00112233445566778899_1");
    assert_int_equal(k.checkpoints[1].candidate_index, 2);
    TU_ASSERT_NEAR(k.checkpoints[1].support_acc, 0.75, 1e-12);
    assert_int_equal(k.checkpoints[1].zoo_nearest, 12);
    assert_true(k.checkpoints[0].size_bytes == 1000);
    assert_int_equal(k.checkpoints[0].method, GEN_METHOD_PROTOTYPES);
    assert_int_equal(k.checkpoints[1].method, GEN_METHOD_DIFFUSION);
    assert_int_equal(k.gate_requested, 1);
    assert_int_equal(k.has_gate, 1);
    assert_int_equal(k.gate.chosen, GEN_METHOD_PROTOTYPES);
    assert_true(k.gate.applied && k.gate.ood);
    assert_int_equal(k.gate.folds, 3);
    assert_int_equal(k.gate.heldout, 15);
    TU_ASSERT_NEAR(k.gate.cv_acc[GEN_METHOD_DIFFUSION], 0.6, 1e-6);
    assert_true(isnan(k.gate.cv_acc[GEN_METHOD_LOGREG]));
    TU_ASSERT_NEAR(k.gate.ood_percentile, 99.5, 1e-6);
    assert_string_equal(k.gate.reason, "3-fold cross-validation");
    api_job_free(&k);
    json_decref(o);
    /* an unknown method is refused by name */
    o = api_job_to_json(&j);
    ck0 = json_array_get(json_object_get(json_object_get(o, "result"), "checkpoints"), 1);
    json_object_set_new(ck0, "method", json_string("svm"));
    assert_int_not_equal(api_job_from_json(o, &k, &e), 0);
    assert_non_null(strstr(e.message, "svm"));
    json_decref(o);

    /* gate off: the request's flag, a decision that says so, no numbers, no warning */
    api_gate_from_result(&j.gate, &core, 0);
    j.gate_requested = 0;
    o = api_job_to_json(&j);
    g = json_object_get(o, "gate");
    assert_true(json_is_false(json_object_get(g, "applied")));
    assert_true(json_is_null(json_object_get(g, "ood_percentile")));
    assert_non_null(strstr(json_string_value(json_object_get(g, "reason")), "off"));
    assert_int_equal(json_array_size(json_object_get(o, "warnings")), 0);
    assert_true(json_is_false(json_object_get(json_object_get(o, "params"), "gate")));
    assert_int_equal(api_job_from_json(o, &k, &e), 0);
    assert_int_equal(k.gate_requested, 0);
    assert_false(k.gate.applied);
    assert_true(isnan(k.gate.ood_distance));
    api_job_free(&k);
    json_decref(o);
    j.has_gate = 0;

    /* a failed job: error object, no result */
    api_job_free(&j);
    j.state = API_JOB_FAILED;
    snprintf(j.error_code, sizeof j.error_code, "generation_failed");
    snprintf(j.error_message, sizeof j.error_message, "boom");
    o = api_job_to_json(&j);
    assert_true(json_is_null(json_object_get(o, "result")));
    assert_true(json_is_null(json_object_get(o, "gate"))); /* no decision */
    assert_int_equal(json_array_size(json_object_get(o, "warnings")), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
                        "generation_failed");
    assert_int_equal(api_job_from_json(o, &k, &e), 0);
    assert_string_equal(k.error_message, "boom");
    assert_int_equal(k.ncheckpoints, 0);
    api_job_free(&k);
    json_decref(o);
}

static void test_error_json(void **state)
{
    (void)state;
    api_error e, f;
    api_fail(&e, 422, "invalid_dataset", "dataset.labels[12]", "label %d out of range", 12);
    json_t *o = api_error_to_json(&e);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"error\":{\"code\":\"invalid_dataset\",\"field\":\"dataset.labels[12]\","
                           "\"message\":\"label 12 out of range\"}}");
    free(s);
    assert_int_equal(api_error_from_json(o, 422, &f), 0);
    assert_int_equal(f.status, 422);
    assert_string_equal(f.field, "dataset.labels[12]");
    json_decref(o);
    /* without a field there is no "field" key */
    api_fail(&e, 404, "not_found", NULL, "no job");
    o = api_error_to_json(&e);
    assert_null(json_object_get(json_object_get(o, "error"), "field"));
    json_decref(o);
    o = parse("{\"jobs\": []}");
    assert_int_equal(api_error_from_json(o, 200, &f), D2_EFORMAT);
    json_decref(o);
}

static void test_time_and_ids(void **state)
{
    (void)state;
    char t[32];
    api_format_time(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    api_format_time(1700000000123LL, t);
    assert_string_equal(t, "2023-11-14T22:13:20.123Z");
    int64_t ms = 0;
    assert_int_equal(api_parse_time(t, &ms), 0);
    assert_true(ms == 1700000000123LL);
    assert_int_equal(api_parse_time("2023-11-14T22:13:20Z", &ms), 0);
    assert_true(ms == 1700000000000LL);
    assert_int_equal(api_parse_time("2023-11-14T22:13:20.5Z", &ms), 0);
    assert_true(ms == 1700000000500LL);
    assert_int_not_equal(api_parse_time("2023-11-14 22:13:20Z", &ms), 0);
    assert_int_not_equal(api_parse_time("2023-13-14T22:13:20Z", &ms), 0);
    assert_int_not_equal(api_parse_time("2023-11-14T22:13:20+01:00", &ms), 0);
    int64_t now = api_now_ms();
    assert_true(now > 1700000000000LL);

    assert_true(api_is_job_id("j_0123456789abcdef0123"));
    assert_false(api_is_job_id("j_0123456789abcdef012"));
    assert_false(api_is_job_id("j_0123456789ABCDEF0123"));
    assert_false(api_is_job_id("x_0123456789abcdef0123"));
    assert_true(api_is_checkpoint_id("ck_0123456789abcdef0123_0"));
    assert_true(api_is_checkpoint_id("ck_0123456789abcdef0123_63"));
    assert_false(api_is_checkpoint_id("ck_0123456789abcdef0123_"));
    assert_false(api_is_checkpoint_id("ck_0123456789abcdef0123_01"));
    assert_false(api_is_checkpoint_id("ck_0123456789abcdef0123_1x"));
    assert_true(api_is_hex64("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(api_is_hex64("0123"));
}

static void test_sanitize(void **state)
{
    (void)state;
    char a[] = "plain ascii";
    api_sanitize_utf8(a);
    assert_string_equal(a, "plain ascii");
    char b[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    api_sanitize_utf8(b);
    assert_string_equal(b, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    char c[] = "bad \xff\xfe, cut \xc3, overlong \xc0\xaf, surrogate \xed\xa0\x80, tab\tnl\n";
    api_sanitize_utf8(c);
    assert_string_equal(c, "bad ??, cut ?, overlong ??, surrogate ???, tab?nl?");
    /* errors built from user input always serialise */
    api_error e;
    api_fail(&e, 404, "not_found", "x\xff", "no job %s", "j_\xc3(");
    json_t *o = api_error_to_json(&e);
    assert_non_null(o);
    json_decref(o);
}

static void test_canonical_sha(void **state)
{
    (void)state;
    json_t *a = parse("{\"seed\": 1, \"dataset\": {\"labels\": [0, 1], \"samples\": [[1], [2]]}}");
    json_t *b = parse("{ \"dataset\" : {\"samples\":[[1],[2]],\"labels\":[0,1]} , \"seed\":1 }");
    json_t *c = parse("{\"seed\": 2, \"dataset\": {\"labels\": [0, 1], \"samples\": [[1], [2]]}}");
    char ha[65], hb[65], hc[65];
    assert_int_equal(api_canonical_sha256(a, ha), 0);
    assert_int_equal(api_canonical_sha256(b, hb), 0);
    assert_int_equal(api_canonical_sha256(c, hc), 0);
    assert_string_equal(ha, hb);
    assert_string_not_equal(ha, hc);
    assert_int_equal(strlen(ha), 64);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void st_body(unsigned char **bytes, size_t *len, const float *x, int n, int dim,
                    const int32_t *y, int ny, int with_y)
{
    st_writer w;
    st_writer_init(&w);
    d2_error err;
    int64_t xs[2] = {n, dim}, ys[1] = {ny};
    assert_int_equal(st_writer_add_f32(&w, "x", 2, xs, x, &err), 0);
    if (with_y)
        assert_int_equal(st_writer_add(&w, "y", ST_I32, 1, ys, y, (size_t)ny * 4, &err), 0);
    assert_int_equal(st_writer_to_memory(&w, bytes, len, &err), 0);
    st_writer_free(&w);
}

static void test_safetensors_body(void **state)
{
    (void)state;
    api_limits l = lim();
    float x[6] = {1, 2, 3, 4, 5, 6};
    int32_t y[3] = {0, 1, 1};
    unsigned char *b;
    size_t n;
    dataset d;
    api_error e;
    st_body(&b, &n, x, 3, 2, y, 3, 1);
    assert_int_equal(api_dataset_parse_safetensors(b, n, &l, &d, &e), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.dim, 2);
    assert_int_equal(d.classes, 2);
    assert_memory_equal(d.x, x, sizeof x);
    dataset_free(&d);
    free(b);

    x[2] = NAN;
    st_body(&b, &n, x, 3, 2, y, 3, 1);
    assert_int_not_equal(api_dataset_parse_safetensors(b, n, &l, &d, &e), 0);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.field, "body.x[1][0]");
    free(b);
    x[2] = 3;

    st_body(&b, &n, x, 3, 2, y, 2, 1);
    assert_int_not_equal(api_dataset_parse_safetensors(b, n, &l, &d, &e), 0);
    assert_int_equal(e.status, 422);
    assert_string_equal(e.field, "body.y");
    free(b);

    st_body(&b, &n, x, 3, 2, y, 3, 0);
    assert_int_not_equal(api_dataset_parse_safetensors(b, n, &l, &d, &e), 0);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.field, "body.y");
    /* truncated file */
    assert_int_not_equal(api_dataset_parse_safetensors(b, n - 3, &l, &d, &e), 0);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.field, "body");
    free(b);
}

static void test_generator_json(void **state)
{
    (void)state;
    gen_info gi;
    memset(&gi, 0, sizeof gi);
    snprintf(gi.id, sizeof gi.id, "%064d", 5);
    gi.config_json = "{\"steps\": 50}";
    gi.provenance_json = "not json";
    gi.input_dim = 784;
    gi.feature_dim = 128;
    gi.max_way = 5;
    gi.min_way = 2;
    gi.default_candidates = 8;
    gi.default_steps = 50;
    gi.default_guidance = 2.0f;
    json_t *o = api_generator_to_json("default", &gi, 1700000000000LL);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "input_dim")), 784);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "config"), "steps")),
                     50);
    /* an unparsable provenance becomes an empty object, not a crash */
    assert_true(json_is_object(json_object_get(o, "provenance")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "defaults"), "sampler")), "ddim");
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset_ok),
        cmocka_unit_test(test_dataset_errors),
        cmocka_unit_test(test_parse_body),
        cmocka_unit_test(test_job_request),
        cmocka_unit_test(test_job_request_errors),
        cmocka_unit_test(test_job_json_roundtrip),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_time_and_ids),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_canonical_sha),
        cmocka_unit_test(test_safetensors_body),
        cmocka_unit_test(test_generator_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
