/* test_anyway.c - one generator for support sets of 2..6 classes, on the
 * shared "anyway" fixture (tests/fixture.sh: zoo build --way 6 --min-way 2 on
 * Fashion-MNIST and `d2nwg train --quick`):
 *  - the zoo: each entry's way in 2..6 (every way drawn), rows past it zero,
 *    the manifest's min_way read back;
 *  - the bundle says min_way 2, max_way 6; 1 or 7 classes are refused by name;
 *  - on the zoo's held-out class combinations, heads of 2, 3, 4 and 6 rows:
 *    the right shapes (spec, checkpoint tensors), far above chance without
 *    refinement or the gate (what the diffusion itself learned), and the gate's
 *    folds and baselines with heads of the same shape;
 *  - retrieval and zoo export give an entry its own way.
 * All of it twice: the pooled "anyway" generator and the "perclass" one (the
 * same zoo, `train --per-class`), which adds: the bundle's config says so, its
 * encoder has no position embedding, and a candidate's head does not depend on
 * how many candidates were drawn beside it (the sampler's class-major layout). */
#include "fileio.h"
#include "testutil.h"

#include <math.h>

#include "gen_model.h"
#include "gen_zoo_export.h"
#include "safetensors.h"
#include "zoo.h"

typedef struct fixture {
    char gen_path[1024], zoo_dir[1024];
    backend_t *be;
    generator *g;
    gen_workspace *ws;
    zoo z;
} fixture;

static int setup_named(void **state, const char *name)
{
    fixture *f = calloc(1, sizeof *f);
    char build[480];
    if (tu_fixture(name, build, sizeof build, f->gen_path, sizeof f->gen_path, f->zoo_dir,
                   sizeof f->zoo_dir))
        return -1;
    d2_error err = {0};
    if (backend_cpu_create(&f->be, 0, &err) || generator_load(&f->g, f->gen_path, f->be, &err) ||
        gen_workspace_create(&f->ws, f->g, f->be, 8, &err) ||
        zoo_load(&f->z, f->zoo_dir, 1, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup_pooled(void **state)
{
    return setup_named(state, "anyway");
}

static int setup_per_class(void **state)
{
    return setup_named(state, "perclass");
}

static int teardown(void **state)
{
    fixture *f = *state;
    zoo_free(&f->z);
    gen_workspace_free(f->ws);
    generator_free(f->g);
    backend_destroy(f->be);
    free(f);
    return 0;
}

static void test_zoo_has_every_way(void **state)
{
    fixture *f = *state;
    const zoo *z = &f->z;
    assert_int_equal(z->way, 6);
    assert_int_equal(z->min_way, 2);
    int seen[7] = {0};
    const target_layer *L = &z->spec.layers[0];
    for (int i = 0; i < z->n; i++) {
        const zoo_entry *e = &z->e[i];
        assert_true(e->way >= 2 && e->way <= 6);
        seen[e->way]++;
        const float *th = z->theta + (size_t)i * z->P;
        for (int r = e->way; r < 6; r++) { // rows no class trained stay zero
            assert_true(th[L->b_off + r] == 0.0f);
            for (int k = 0; k < L->in; k++)
                assert_true(th[L->w_off + (size_t)r * L->in + k] == 0.0f);
        }
        assert_true(th[L->b_off] != 0.0f || th[L->w_off] != 0.0f);
    }
    for (int w = 2; w <= 6; w++) // uniform: about n/5 each
        assert_true(seen[w] > z->n / 10);
}

static void test_info_and_limits(void **state)
{
    fixture *f = *state;
    const gen_info *in = generator_info(f->g);
    assert_int_equal(in->min_way, 2);
    assert_int_equal(in->max_way, 6);
    d2_error err;
    gen_support_part part;
    assert_int_equal(gen_info_check_support(in, 1, in->feature_dim, 7, &part, &err), D2_ERANGE);
    assert_non_null(strstr(err.msg, "7 classes; this generator supports at most 6"));
    assert_int_equal(part, GEN_SUPPORT_LABELS);
    assert_int_equal(gen_info_check_support(in, 1, in->feature_dim, 1, &part, &err), D2_ERANGE);
    assert_non_null(strstr(err.msg, "needs at least 2"));
    for (int w = 2; w <= 6; w++)
        assert_int_equal(gen_info_check_support(in, 1, in->feature_dim, w, &part, &err), 0);
}

/* Held-out combination i's first `way` classes, shuffled. */
static task heldout_task(const fixture *f, int i, int way)
{
    task t = {.way = way};
    int all[D2_MAX_WAY];
    memcpy(all, f->z.heldout[i % f->z.n_heldout], sizeof(int) * (size_t)f->z.way);
    rng r;
    rng_init(&r, 77 + (uint64_t)i, 0);
    rng_shuffle_int(&r, all, f->z.way);
    memcpy(t.classes, all, sizeof(int) * (size_t)way);
    return t;
}

/* Mean query accuracy of the best raw diffusion candidate (no refinement, no
 * gate) over `tasks` 5-shot tasks of `way` classes; checks each head's shape. */
static double raw_accuracy(fixture *f, int way, int tasks)
{
    const int F = generator_info(f->g)->feature_dim;
    double sum = 0;
    for (int i = 0; i < tasks; i++) {
        task t = heldout_task(f, i, way);
        rng r;
        rng_init(&r, 500 + (uint64_t)i, 0);
        dataset sup = {0}, q = {0};
        d2_error err;
        assert_int_equal(zoo_task_support(&f->z, &t, 5, &r, &sup, &err), 0);
        assert_int_equal(zoo_task_query(&f->z, &t, &q, &err), 0);
        gen_request req = {.support = &sup, .embeddings = 1, .candidates = 8, .steps = 30,
                           .sampler = GEN_SAMPLER_DDIM, .guidance = 2.0f, .seed = (uint64_t)i};
        gen_result res;
        assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
        assert_int_equal(res.way, way);
        assert_int_equal(res.spec.out_dim, way);
        assert_int_equal((int)res.spec.numel, way * (F + 1));
        float acc, loss;
        assert_int_equal(target_eval(&res.spec, res.ranked[0].theta, &q, &acc, &loss, &err), 0);
        sum += acc;
        gen_result_free(&res);
        dataset_free(&sup);
        dataset_free(&q);
    }
    return sum / tasks;
}

static void test_heads_of_every_way(void **state)
{
    fixture *f = *state;
    const int ways[4] = {2, 3, 4, 6};
    for (int i = 0; i < 4; i++) {
        const int w = ways[i];
        double acc = raw_accuracy(f, w, 8);
        print_message("held-out %d-way 5-shot, raw best of 8: %.3f (chance %.3f)\n", w, acc,
                      1.0 / w);
        assert_true(acc > 1.0 / w + 0.25);
    }
}

static void test_gate_and_checkpoint_shapes(void **state)
{
    fixture *f = *state;
    const int F = generator_info(f->g)->feature_dim;
    task t = heldout_task(f, 3, 3);
    rng r;
    rng_init(&r, 9, 0);
    dataset sup = {0};
    d2_error err;
    assert_int_equal(zoo_task_support(&f->z, &t, 4, &r, &sup, &err), 0);
    gen_request req = {.support = &sup, .embeddings = 1, .candidates = 4, .steps = 20,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = 2.0f, .seed = 5, .gate = 1,
                       .refine = 1};
    gen_result res;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    assert_int_equal(res.count, 6); // 4 candidates + 2 baselines
    assert_int_equal(res.gate.applied, 1);
    assert_int_equal(res.gate.folds, 4);
    assert_int_equal(res.gate.heldout, 12);
    unsigned char *bytes = NULL;
    size_t len = 0;
    for (int k = 0; k < res.count; k++) {
        assert_int_equal(generator_checkpoint_bytes(f->g, &req, &res, k, &bytes, &len, &err), 0);
        st_file st;
        assert_int_equal(st_parse(&st, bytes, len, &err), 0);
        const st_tensor *w = st_find(&st, "1.weight"), *b = st_find(&st, "1.bias");
        assert_non_null(w);
        assert_non_null(b);
        assert_int_equal(w->shape[0], 3);
        assert_int_equal(w->shape[1], F);
        assert_int_equal(b->shape[0], 3);
        assert_non_null(strstr(st_meta(&st, "d2nwg.spec"), "linear 128->3"));
        st_free(&st);
        free(bytes);
    }
    gen_result_free(&res);
    dataset_free(&sup);
}

static void test_retrieval_and_export_keep_entry_ways(void **state)
{
    fixture *f = *state;
    task t = heldout_task(f, 0, 4);
    rng r;
    rng_init(&r, 3, 0);
    dataset sup = {0};
    d2_error err;
    assert_int_equal(zoo_task_support(&f->z, &t, 5, &r, &sup, &err), 0);
    gen_retrieval hits[5];
    int nh = 0;
    assert_int_equal(generator_retrieve(f->g, f->ws, &sup, 1, 5, hits, &nh, &err), 0);
    assert_int_equal(nh, 5);
    for (int i = 0; i < nh; i++) {
        const zoo_entry *e = &f->z.e[hits[i].zoo_index];
        assert_int_equal(hits[i].way, e->way);
        assert_memory_equal(hits[i].classes, e->classes, sizeof(int) * (size_t)e->way);
    }
    int two = -1; // an entry of 2 classes exports a head of 2 rows
    for (int i = 0; i < f->z.n && two < 0; i++)
        if (f->z.e[i].way == 2)
            two = i;
    assert_true(two >= 0);
    unsigned char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(generator_zoo_checkpoint_bytes(f->g, two, &bytes, &len, &err), 0);
    st_file st;
    assert_int_equal(st_parse(&st, bytes, len, &err), 0);
    assert_int_equal(st_find(&st, "1.weight")->shape[0], 2);
    char want[64];
    snprintf(want, sizeof want, "[%d,%d]", f->z.e[two].classes[0], f->z.e[two].classes[1]);
    assert_string_equal(st_meta(&st, "d2nwg.classes"), want);
    st_free(&st);
    free(bytes);
    dataset_free(&sup);
}

/* The per-class bundle: its config and encoder, and candidate k's head the
 * same whether 1 or 3 candidates were drawn (each from its own stretch of the
 * seed's noise, in the candidates' layout, whatever the device's). */
static void test_per_class_bundle(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->g->cfg.per_class, 1);
    assert_non_null(strstr(f->g->config_json, "\"per_class\":true"));
    assert_null(paramset_find(&f->g->net_ps, "enc.pos"));
    assert_int_equal(f->g->den.cfg.latent, f->g->cfg.tok_latent);
    task t = heldout_task(f, 1, 4);
    rng r;
    rng_init(&r, 4, 0);
    dataset sup = {0};
    d2_error err;
    assert_int_equal(zoo_task_support(&f->z, &t, 3, &r, &sup, &err), 0);
    gen_request req = {.support = &sup, .embeddings = 1, .candidates = 1, .steps = 10,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = 2.0f, .seed = 8};
    gen_result one, three;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &one, &err), 0);
    req.candidates = 3;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &three, &err), 0);
    const gen_candidate *first = NULL;
    for (int k = 0; k < three.count; k++)
        if (three.ranked[k].index == 0)
            first = &three.ranked[k];
    assert_non_null(first);
    for (size_t j = 0; j < one.spec.numel; j++)
        TU_ASSERT_NEAR(first->theta[j], one.ranked[0].theta[j], 1e-4);
    gen_result_free(&one);
    gen_result_free(&three);
    dataset_free(&sup);
}

int main(void)
{
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_zoo_has_every_way),
        cmocka_unit_test(test_info_and_limits),
        cmocka_unit_test(test_heads_of_every_way),
        cmocka_unit_test(test_gate_and_checkpoint_shapes),
        cmocka_unit_test(test_retrieval_and_export_keep_entry_ways),
    };
    const struct CMUnitTest per_class[] = {
        cmocka_unit_test(test_heads_of_every_way),
        cmocka_unit_test(test_gate_and_checkpoint_shapes),
        cmocka_unit_test(test_retrieval_and_export_keep_entry_ways),
        cmocka_unit_test(test_per_class_bundle),
    };
    int failed = cmocka_run_group_tests_name("pooled", shared, setup_pooled, teardown);
    failed += cmocka_run_group_tests_name("per_class", per_class, setup_per_class, teardown);
    return failed;
}
