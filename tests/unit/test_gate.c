/* test_gate.c - the gate against worse-than-baseline weights (core/model/gate.h)
 * and the baseline heads it compares with (core/target/baseline.h), on the
 * shared quick fixture (a Fashion-MNIST generator):
 *  - the prototype head predicts exactly the nearest class mean; a class with
 *    no sample is never predicted; the logistic-regression head separates
 *    separable data;
 *  - in distribution (held-out Fashion-MNIST class combinations, 5 shots) the
 *    gate keeps the diffusion candidate on most tasks and what it returns is
 *    no worse than the better baseline;
 *  - on digits, a data set the zoo never saw, what it returns is within 0.02
 *    of the better baseline, where the raw diffusion candidate is far below;
 *  - 1 shot: no cross-validation, the rule of gate.h, said in the reason; its
 *    threshold is the best of a grid on background validation tasks;
 *  - every entry carries its method, the winner first, in the checkpoint's
 *    metadata too, with the gate's decision as JSON. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>

#include "baseline.h"
#include "gate.h"
#include "gen_model.h"
#include "safetensors.h"
#include "zoo.h"

typedef struct fixture {
    backend_t *be;
    generator *g;
    gen_workspace *ws;
    zoo z;
    data_source digits;
    class_index digits_train, digits_test;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char build[480], gen[1024], zdir[1024];
    if (tu_quick_fixture(build, sizeof build, gen, sizeof gen, zdir, sizeof zdir))
        return -1;
    d2_error err = {0};
    if (backend_cpu_create(&f->be, 0, &err) || generator_load(&f->g, gen, f->be, &err) ||
        gen_workspace_create(&f->ws, f->g, f->be, 8, &err) || zoo_load(&f->z, zdir, 1, &err) ||
        data_source_load(&f->digits, "digits-28", &err) ||
        class_index_build(&f->digits_train, &f->digits.train, &err) ||
        class_index_build(&f->digits_test, &f->digits.test, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zoo_free(&f->z);
    class_index_free(&f->digits_train);
    class_index_free(&f->digits_test);
    data_source_free(&f->digits);
    gen_workspace_free(f->ws);
    generator_free(f->g);
    backend_destroy(f->be);
    free(f);
    return 0;
}

static dataset random_set(int n, int F, int way, uint64_t seed)
{
    dataset d = {0};
    d2_error err;
    assert_int_equal(dataset_alloc(&d, n, F, &err), 0);
    rng r;
    rng_init(&r, seed, 0);
    for (int i = 0; i < n; i++) {
        d.y[i] = i % way;
        for (int j = 0; j < F; j++)
            d.x[(size_t)i * F + j] = rng_normal(&r) + (j == d.y[i] ? 3.0f : 0.0f);
    }
    d.classes = way;
    return d;
}

static void test_prototype_head_is_nearest_mean(void **state)
{
    (void)state;
    const int F = 6, way = 4;
    dataset s = random_set(20, F, way, 1), q = random_set(200, F, way, 2);
    float W[5 * 6], b[5];
    d2_error err;
    assert_int_equal(baseline_prototype_head(&s, way, W, b, &err), 0);
    for (int i = 0; i < q.n; i++) {
        int near = 0, arg = 0;
        double bd = INFINITY, bz = -INFINITY;
        for (int c = 0; c < way; c++) {
            double d = 0, z = b[c];
            for (int j = 0; j < F; j++) {
                double e = q.x[(size_t)i * F + j] - W[c * F + j];
                d += e * e;
                z += (double)W[c * F + j] * q.x[(size_t)i * F + j];
            }
            if (d < bd) {
                bd = d;
                near = c;
            }
            if (z > bz) {
                bz = z;
                arg = c;
            }
        }
        assert_int_equal(arg, near);
    }
    // a class with no sample is never predicted
    assert_int_equal(baseline_prototype_head(&s, way + 1, W, b, &err), 0);
    assert_true(b[way] < -1e29f);
    // labels outside 0..way-1 are refused, by name
    assert_int_equal(baseline_prototype_head(&s, 2, W, b, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "label"));
    dataset_free(&s);
    dataset_free(&q);
}

static void test_logreg_head_separates(void **state)
{
    (void)state;
    const int F = 6, way = 4;
    dataset s = random_set(40, F, way, 3), q = random_set(400, F, way, 4);
    float W[4 * 6], b[4];
    d2_error err;
    assert_int_equal(baseline_logreg_head(&s, way, 1.0, W, b, &err), 0);
    float acc = baseline_head_accuracy(W, b, way, &q);
    print_message("logreg head on 4 Gaussian classes 3 sd apart: %.3f\n", (double)acc);
    assert_true(acc > 0.85f);
    assert_true(fabsf(baseline_logreg(&s, &q, way, 1.0) - acc) < 1e-6f);
    dataset_free(&s);
    dataset_free(&q);
}

/* Logistic regression with its prior centred on W0: zero centre = the
 * baseline; at the answer the gradient of sum CE + |W - W0|^2 / (2C) is 0;
 * a strong prior (small C) keeps W0. */
static void test_logreg_prior_is_map(void **state)
{
    (void)state;
    const int F = 6, way = 4;
    dataset s = random_set(24, F, way, 5);
    float W0[4 * 6], b0[4] = {0.5f, -0.5f, 0.25f, 0.0f}, W[4 * 6], b[4], Wz[4 * 6], bz[4];
    float zero[4 * 6 + 4] = {0};
    rng r;
    rng_init(&r, 6, 0);
    for (int k = 0; k < way * F; k++)
        W0[k] = rng_normal(&r);
    d2_error err;
    assert_int_equal(baseline_logreg_head(&s, way, 1.0, Wz, bz, &err), 0);
    assert_int_equal(baseline_logreg_head_prior(&s, way, 1.0, zero, zero + way * F, W, b, &err),
                     0);
    for (int k = 0; k < way * F; k++)
        assert_float_equal(W[k], Wz[k], 1e-5);
    const double C = 0.5;
    assert_int_equal(baseline_logreg_head_prior(&s, way, C, W0, b0, W, b, &err), 0);
    double g[4 * 6 + 4] = {0};
    for (int i = 0; i < s.n; i++) {
        const float *x = s.x + (size_t)i * F;
        double z[4], mx = -INFINITY, sum = 0;
        for (int c = 0; c < way; c++) {
            z[c] = b[c];
            for (int j = 0; j < F; j++)
                z[c] += (double)W[c * F + j] * x[j];
            mx = fmax(mx, z[c]);
        }
        for (int c = 0; c < way; c++)
            sum += (z[c] = exp(z[c] - mx));
        for (int c = 0; c < way; c++) {
            double d = z[c] / sum - (c == s.y[i]);
            for (int j = 0; j < F; j++)
                g[c * F + j] += d * x[j];
            g[way * F + c] += d;
        }
    }
    double gn = 0, moved = 0;
    for (int k = 0; k < way * F; k++) {
        g[k] += (W[k] - W0[k]) / C;
        moved += fabs(W[k] - W0[k]);
    }
    for (int k = 0; k < way * F + way; k++)
        gn += g[k] * g[k];
    print_message("prior-centred logreg: |gradient| %.2e, mean |W - W0| %.3f\n", sqrt(gn),
                  moved / (way * F));
    assert_true(sqrt(gn) < 1e-4);
    assert_true(moved / (way * F) > 0.05); // the data moved it
    assert_int_equal(baseline_logreg_head_prior(&s, way, 1e-6, W0, b0, W, b, &err), 0);
    for (int k = 0; k < way * F; k++)
        assert_float_equal(W[k], W0[k], 1e-3);
    dataset_free(&s);
}

/* Refinement keeps each sample (the same bytes an unrefined request returns
 * for that candidate) and its support accuracy, and fits the support set at
 * least as well as the sample; the checkpoint says which it is. */
static void test_refine_keeps_samples(void **state)
{
    fixture *f = *state;
    const gen_info *in = generator_info(f->g);
    dataset sup = {0}, q = {0};
    task t = {.way = 5};
    for (int c = 0; c < 5; c++)
        t.classes[c] = 2 * c;
    rng r;
    rng_init(&r, 11, 0);
    d2_error err;
    assert_int_equal(task_draw(&f->digits.train, &f->digits_train, &t, 3, &r, &sup, &err), 0);
    gen_request req = {.support = &sup, .candidates = 4, .steps = 20,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = in->default_guidance,
                       .seed = 3};
    gen_result raw, fit;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &raw, &err), 0);
    req.refine = 1;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &fit, &err), 0);
    assert_int_equal(fit.count, raw.count);
    const size_t P = (size_t)in->params;
    for (int k = 0; k < fit.count; k++) {
        const gen_candidate *a = &fit.ranked[k], *o = NULL;
        for (int m = 0; m < raw.count; m++)
            if (raw.ranked[m].index == a->index)
                o = &raw.ranked[m];
        assert_non_null(o);
        assert_null(o->sample);
        assert_non_null(a->sample);
        assert_memory_equal(a->sample, o->theta, P * sizeof(float));
        assert_float_equal(a->sample_acc, o->support_acc, 1e-6);
        assert_true(a->support_loss <= o->support_loss + 1e-5f);
        assert_memory_not_equal(a->theta, a->sample, P * sizeof(float));
    }
    const char *want[2] = {"none", "logreg_prior"};
    const gen_result *res[2] = {&raw, &fit};
    for (int v = 0; v < 2; v++) {
        unsigned char *bytes;
        size_t len;
        req.refine = v;
        assert_int_equal(generator_checkpoint_bytes(f->g, &req, res[v], 0, &bytes, &len, &err),
                         0);
        st_file st;
        assert_int_equal(st_parse(&st, bytes, len, &err), 0);
        assert_string_equal(st_meta(&st, "d2nwg.refine"), want[v]);
        st_free(&st);
        free(bytes);
    }
    gen_result_free(&raw);
    gen_result_free(&fit);
    dataset_free(&sup);
    dataset_free(&q);
}

typedef struct gate_run {
    float returned, diffusion, proto, logreg;
    gen_method chosen;
    float ood_percentile;
} gate_run;

/* Generate with the gate on for support set sup and score it on q. */
static gate_run run_gate(fixture *f, const dataset *sup, const dataset *q, int embeddings,
                         uint64_t seed)
{
    const gen_info *in = generator_info(f->g);
    gen_request req = {.support = sup, .embeddings = embeddings, .candidates = 8, .steps = 50,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = in->default_guidance,
                       .seed = seed, .gate = 1};
    gen_result res;
    d2_error err;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    assert_true(res.gate.applied);
    assert_int_equal(res.count, 8 + 2);
    assert_int_equal(res.ranked[0].method, res.gate.chosen);
    int seen[GEN_METHODS] = {0};
    for (int k = 0; k < res.count; k++)
        seen[res.ranked[k].method]++;
    assert_int_equal(seen[GEN_METHOD_DIFFUSION], 8);
    assert_int_equal(seen[GEN_METHOD_PROTOTYPES], 1);
    assert_int_equal(seen[GEN_METHOD_LOGREG], 1);
    dataset feat = {0};
    if (embeddings)
        feat = *q;
    else
        assert_int_equal(feature_map_apply(generator_feature_map(f->g), q, &feat, &err), 0);
    gate_run out = {.chosen = res.gate.chosen, .ood_percentile = res.gate.ood_percentile};
    float loss;
    for (int k = 0; k < res.count; k++) {
        float acc;
        assert_int_equal(target_eval(in->spec, res.ranked[k].theta, &feat, &acc, &loss, &err),
                         0);
        if (k == 0)
            out.returned = acc;
        if (res.ranked[k].method == GEN_METHOD_PROTOTYPES)
            out.proto = acc;
        else if (res.ranked[k].method == GEN_METHOD_LOGREG)
            out.logreg = acc;
        else if (res.ranked[k].index >= 0 && out.diffusion == 0.0f)
            out.diffusion = acc; // the best diffusion candidate by support score
    }
    if (!embeddings)
        dataset_free(&feat);
    gen_result_free(&res);
    return out;
}

static void test_gate_in_distribution(void **state)
{
    fixture *f = *state;
    const int tasks = 8;
    for (int shots = 1; shots <= 5; shots += 4) {
        double ret = 0, proto = 0, logreg = 0, diff = 0;
        int kept = 0;
        for (int i = 0; i < tasks; i++) {
            task t = {.way = 5};
            memcpy(t.classes, f->z.heldout[i % f->z.n_heldout], 5 * sizeof(int));
            rng r;
            rng_init(&r, 500 + i, 0);
            dataset sup = {0}, q = {0};
            d2_error err;
            assert_int_equal(zoo_task_support(&f->z, &t, shots, &r, &sup, &err), 0);
            assert_int_equal(zoo_task_query(&f->z, &t, &q, &err), 0);
            gate_run g = run_gate(f, &sup, &q, 1, (uint64_t)i);
            ret += g.returned / tasks;
            diff += g.diffusion / tasks;
            proto += g.proto / tasks;
            logreg += g.logreg / tasks;
            kept += g.chosen == GEN_METHOD_DIFFUSION;
            dataset_free(&sup);
            dataset_free(&q);
        }
        print_message("held-out Fashion-MNIST 5-way %d-shot, %d tasks: returned %.3f, diffusion "
                      "%.3f, prototypes %.3f, logreg %.3f, diffusion kept on %d\n",
                      shots, tasks, ret, diff, proto, logreg, kept);
        assert_true(kept >= tasks / 2);
        assert_true(ret >= (proto > logreg ? proto : logreg));
    }
}

/* Mean query accuracies over `tasks` digits tasks at `shots` shots. */
static gate_run digits_tasks(fixture *f, int tasks, int shots)
{
    gate_run m = {0};
    for (int i = 0; i < tasks; i++) {
        task t = {.way = 5};
        rng r;
        rng_init(&r, 900 + i, 0);
        int all[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
        rng_shuffle_int(&r, all, 10);
        memcpy(t.classes, all, 5 * sizeof(int));
        dataset sup = {0}, q = {0};
        d2_error err;
        assert_int_equal(task_draw(&f->digits.train, &f->digits_train, &t, shots, &r, &sup, &err),
                         0);
        assert_int_equal(task_draw(&f->digits.test, &f->digits_test, &t, 15, &r, &q, &err), 0);
        gate_run g = run_gate(f, &sup, &q, 0, (uint64_t)i);
        m.returned += g.returned / tasks;
        m.diffusion += g.diffusion / tasks;
        m.proto += g.proto / tasks;
        m.logreg += g.logreg / tasks;
        m.ood_percentile += g.ood_percentile / tasks;
        dataset_free(&sup);
        dataset_free(&q);
    }
    print_message("digits 5-way %d-shot, %d tasks: returned %.3f, diffusion %.3f, prototypes "
                  "%.3f, logreg %.3f, mean zoo-distance percentile %.1f\n",
                  shots, tasks, (double)m.returned, (double)m.diffusion, (double)m.proto,
                  (double)m.logreg, (double)m.ood_percentile);
    return m;
}

static void test_gate_unseen_digits(void **state)
{
    fixture *f = *state;
    for (int shots = 1; shots <= 5; shots += 4) {
        gate_run m = digits_tasks(f, 10, shots);
        float better = m.proto > m.logreg ? m.proto : m.logreg;
        assert_true(m.returned >= better - 0.02f);
        assert_true(m.returned > m.diffusion + 0.1f);
    }
}

/* One 1-shot task without the gate: the candidates' agreement with their
 * support set, and the query accuracy of the best candidate and of prototypes. */
static void one_shot_point(fixture *f, const dataset *sup, const dataset *q, uint64_t seed,
                           float *agree, float *diff, float *proto)
{
    const gen_info *in = generator_info(f->g);
    gen_request req = {.support = sup, .embeddings = 1, .candidates = 8, .steps = 50,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = in->default_guidance,
                       .seed = seed};
    gen_result res;
    d2_error err;
    float loss;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    *agree = gen_gate_agreement(&res);
    assert_int_equal(target_eval(in->spec, res.ranked[0].theta, q, diff, &loss, &err), 0);
    *proto = baseline_prototypes(sup, q, 5);
    gen_result_free(&res);
}

/* The 1-shot threshold (gate.h) is chosen on background data only: 5-way
 * 1-shot tasks of the zoo's own training combinations (in distribution) and of
 * glyphs:validation scripts (never seen by this Fashion-MNIST generator). */
static void test_one_shot_threshold_is_calibrated(void **state)
{
    fixture *f = *state;
    enum { TASKS = 24, POINTS = 2 * TASKS, GRID = 8 };
    float agree[POINTS], diff[POINTS], proto[POINTS];
    data_source gv;
    class_index gci, gqi;
    d2_error err;
    assert_int_equal(data_source_load(&gv, "glyphs:validation", &err), 0);
    assert_int_equal(class_index_build(&gci, &gv.train, &err), 0);
    assert_int_equal(class_index_build(&gqi, &gv.test, &err), 0);
    int n = 0;
    for (int i = 0; n < POINTS; i++) {
        task t = {.way = 5};
        rng r;
        rng_init(&r, 4000 + i, 0);
        dataset sup = {0}, q = {0}, fs = {0}, fq = {0};
        if (n < TASKS) { // five neighbouring letters: mostly of one script
            int c0 = (int)rng_below(&r, (uint32_t)(gv.train.classes - 5));
            for (int k = 0; k < 5; k++)
                t.classes[k] = c0 + k;
            assert_int_equal(task_draw(&gv.train, &gci, &t, 1, &r, &sup, &err), 0);
            assert_int_equal(task_draw(&gv.test, &gqi, &t, 0, &r, &q, &err), 0);
            const feature_map *fm = generator_feature_map(f->g);
            assert_int_equal(feature_map_apply(fm, &sup, &fs, &err), 0);
            assert_int_equal(feature_map_apply(fm, &q, &fq, &err), 0);
            fs.classes = fq.classes = 5;
        } else {
            int all[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
            rng_shuffle_int(&r, all, 10);
            memcpy(t.classes, all, 5 * sizeof(int));
            if (zoo_is_heldout(&f->z, &t))
                continue;
            assert_int_equal(zoo_task_support(&f->z, &t, 1, &r, &fs, &err), 0);
            assert_int_equal(zoo_task_query(&f->z, &t, &fq, &err), 0);
        }
        one_shot_point(f, &fs, &fq, (uint64_t)i, &agree[n], &diff[n], &proto[n]);
        n++;
        dataset_free(&sup);
        dataset_free(&q);
        dataset_free(&fs);
        dataset_free(&fq);
    }
    float best = 0, at_default = 0;
    for (int g = 0; g < GRID; g++) {
        float tau = 0.3f + 0.1f * (float)g, acc = 0;
        for (int i = 0; i < POINTS; i++)
            acc += (agree[i] >= tau - 1e-6f ? diff[i] : proto[i]) / POINTS;
        print_message("1-shot rule, threshold %.1f: mean query accuracy %.3f over %d background "
                      "tasks\n", (double)tau, (double)acc, POINTS);
        best = acc > best ? acc : best;
        if (fabsf(tau - GATE_ONE_SHOT_AGREEMENT) < 1e-4f)
            at_default = acc;
    }
    assert_true(at_default >= best - 0.01f);
    class_index_free(&gci);
    class_index_free(&gqi);
    data_source_free(&gv);
}

static void test_gate_one_shot_and_metadata(void **state)
{
    fixture *f = *state;
    const gen_info *in = generator_info(f->g);
    task t = {.way = 5, .classes = {3, 1, 4, 0, 9}};
    rng r;
    rng_init(&r, 77, 0);
    dataset sup = {0};
    d2_error err;
    assert_int_equal(zoo_task_support(&f->z, &t, 1, &r, &sup, &err), 0);
    gen_request req = {.support = &sup, .embeddings = 1, .candidates = 4, .steps = 20,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = in->default_guidance,
                       .seed = 3, .gate = 1};
    gen_result res;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    assert_int_equal(res.gate.folds, 0);
    assert_non_null(strstr(res.gate.reason, "1 shot"));
    assert_true(isnan(res.gate.cv_acc[GEN_METHOD_DIFFUSION]));
    assert_true(res.gate.ood_percentile >= 0.0f && res.gate.ood_percentile <= 100.0f);
    for (int k = 0; k < res.count; k++) {
        unsigned char *bytes;
        size_t len;
        assert_int_equal(generator_checkpoint_bytes(f->g, &req, &res, k, &bytes, &len, &err), 0);
        st_file st;
        assert_int_equal(st_parse(&st, bytes, len, &err), 0);
        assert_string_equal(st_meta(&st, "d2nwg.method"), gen_method_name(res.ranked[k].method));
        json_error_t je;
        json_t *gj = json_loads(st_meta(&st, "d2nwg.gate"), 0, &je);
        assert_non_null(gj);
        assert_string_equal(json_string_value(json_object_get(gj, "chosen")),
                            gen_method_name(res.gate.chosen));
        assert_true(json_is_null(json_object_get(json_object_get(gj, "cv_accuracy"), "logreg")));
        json_decref(gj);
        st_free(&st);
        free(bytes);
    }
    gen_result_free(&res);
    // gate off: the diffusion candidates alone, as before
    req.gate = 0;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    assert_int_equal(res.count, 4);
    assert_false(res.gate.applied);
    assert_non_null(strstr(res.gate.reason, "turned the gate off"));
    assert_true(isnan(res.gate.cv_acc[GEN_METHOD_PROTOTYPES]));
    assert_true(res.gate.ood_percentile >= 0.0f && res.gate.ood_percentile <= 100.0f);
    gen_result_free(&res);
    dataset_free(&sup);
}

typedef struct progress_log {
    int n;
    float v[4096];
} progress_log;

static void log_progress(void *ctx, float fraction)
{
    progress_log *l = ctx;
    if (l->n < 4096)
        l->v[l->n++] = fraction;
}

/* A gated 3-shot job reports progress over its 1 + 3 generations: never
 * backwards, a quarter of the way when the first one is sampled, 1 at the end. */
static void test_gate_progress(void **state)
{
    fixture *f = *state;
    const gen_info *in = generator_info(f->g);
    task t = {.way = 5, .classes = {3, 1, 4, 0, 9}};
    rng r;
    rng_init(&r, 78, 0);
    dataset sup = {0};
    d2_error err;
    assert_int_equal(zoo_task_support(&f->z, &t, 3, &r, &sup, &err), 0);
    progress_log *l = calloc(1, sizeof *l);
    gen_request req = {.support = &sup, .embeddings = 1, .candidates = 2, .steps = 10,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = in->default_guidance,
                       .seed = 3, .gate = 1, .progress = log_progress, .progress_ctx = l};
    gen_result res;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    assert_int_equal(res.gate.folds, 3);
    assert_true(l->n > 10);
    int quarter = 0;
    for (int i = 1; i < l->n; i++) {
        assert_true(l->v[i] >= l->v[i - 1]);
        quarter |= fabsf(l->v[i] - 0.25f * 0.9f) < 1e-4f; // the sampler's 90% of part 0
    }
    assert_true(quarter);
    assert_true(fabsf(l->v[l->n - 1] - 1.0f) < 1e-6f);
    gen_result_free(&res);
    free(l);
    dataset_free(&sup);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prototype_head_is_nearest_mean),
        cmocka_unit_test(test_logreg_head_separates),
        cmocka_unit_test(test_logreg_prior_is_map),
        cmocka_unit_test(test_refine_keeps_samples),
        cmocka_unit_test(test_gate_in_distribution),
        cmocka_unit_test(test_one_shot_threshold_is_calibrated),
        cmocka_unit_test(test_gate_unseen_digits),
        cmocka_unit_test(test_gate_one_shot_and_metadata),
        cmocka_unit_test(test_gate_progress),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
