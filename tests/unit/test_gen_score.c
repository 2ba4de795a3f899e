/* test_gen_score.c - the backend's scoring of heads and the feature map on a
 * backend agree with the host definitions:
 *  - gen_scorer (target network forward on the backend, cross_entropy op,
 *    accuracy) gives target_eval's accuracy and loss: to the bit for linear and
 *    ReLU heads, within float rounding for tanh, GELU and SiLU; over more rows
 *    than one chunk, and with fewer classes than the head has outputs;
 *  - feature_map_apply_dev equals W (x - mean) computed in double, and a map
 *    that was never uploaded is refused. */
#include "testutil.h"

#include <math.h>

#include "gen_model.h"
#include "rng.h"

static void rand_data(dataset *d, int n, int dim, int classes, uint64_t seed)
{
    d2_error err = {0};
    assert_int_equal(dataset_alloc(d, n, dim, &err), 0);
    rng_fill_normal(d->x, (size_t)n * dim, seed, 0, 0.0f, 1.5f);
    for (int i = 0; i < n; i++)
        d->y[i] = i % classes;
    d->classes = classes;
}

static void check_spec(backend_t *be, const char *text, int classes, int exact)
{
    d2_error err = {0};
    target_spec s;
    assert_int_equal(target_spec_parse(&s, text, &err), 0);
    float *theta = malloc(s.numel * sizeof(float));
    target_init_random(&s, 9, theta);
    for (size_t i = 0; i < s.numel; i++) /* larger weights, so the activations matter */
        theta[i] *= 3.0f;
    dataset d = {0};
    rand_data(&d, 300, s.feat_dim, classes, 17);
    float acc0, loss0, acc, loss;
    assert_int_equal(target_eval(&s, theta, &d, &acc0, &loss0, &err), 0);
    gen_scorer sc;
    if (gen_scorer_init(&sc, be, &s, &d, &err))
        fail_msg("%s: %s", text, err.msg);
    assert_int_equal(gen_scorer_run(&sc, theta, &acc, &loss, &err), 0);
    printf("  %-22s %d classes: acc %.4f / %.4f, loss %.9g / %.9g (backend / host)\n", text,
           classes, (double)acc, (double)acc0, (double)loss, (double)loss0);
    if (exact) {
        assert_true(acc == acc0);
        assert_true(loss == loss0);
    } else {
        TU_ASSERT_NEAR(acc, acc0, 1.0 / d.n + 1e-9);
        TU_ASSERT_NEAR(loss, loss0, 1e-5 * fabs(loss0));
    }
    assert_true(loss0 > 0.05f && acc0 > 0.0f); /* a head that does something */
    gen_scorer_free(&sc);
    dataset_free(&d);
    free(theta);
}

static void test_scorer_matches_target_eval(void **state)
{
    backend_t *be = *state;
    check_spec(be, "linear 6->3", 3, 1);
    check_spec(be, "mlp 6-5-3 relu", 3, 1);
    check_spec(be, "mlp 6-5-4 relu", 2, 1); /* fewer classes than outputs */
    check_spec(be, "mlp 6-5-3 tanh", 3, 0);
    check_spec(be, "mlp 6-5-3 gelu", 3, 0);
    check_spec(be, "mlp 6-5-3 silu", 3, 0);
}

static void test_scorer_refuses_mismatch(void **state)
{
    backend_t *be = *state;
    d2_error err = {0};
    target_spec s;
    assert_int_equal(target_spec_parse(&s, "linear 6->3", &err), 0);
    dataset d = {0};
    rand_data(&d, 10, 5, 3, 1);
    gen_scorer sc;
    assert_int_equal(gen_scorer_init(&sc, be, &s, &d, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "spec"));
    dataset_free(&d);
}

static void test_feature_map_on_backend(void **state)
{
    backend_t *be = *state;
    d2_error err = {0};
    const int D = 9, F = 4, n = 1500; /* more rows than one chunk */
    feature_map f = {.in_dim = D, .out_dim = F};
    f.W = malloc(sizeof(float) * F * D);
    f.mean = malloc(sizeof(float) * D);
    rng_fill_normal(f.W, (size_t)F * D, 3, 0, 0.0f, 1.0f);
    rng_fill_normal(f.mean, (size_t)D, 4, 0, 0.5f, 1.0f);
    dataset in = {0}, out = {0}, out2 = {0};
    rand_data(&in, n, D, 3, 5);
    feature_map_dev fd;
    assert_int_equal(feature_map_upload(&fd, &f, be, &err), 0);
    assert_int_equal(feature_map_apply_dev(&fd, be, &in, &out, &err), 0);
    assert_int_equal(out.n, n);
    assert_int_equal(out.dim, F);
    double maxd = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(out.y[i], in.y[i]);
        for (int k = 0; k < F; k++) {
            double ref = 0;
            for (int j = 0; j < D; j++)
                ref += (double)f.W[k * D + j] * ((double)in.x[(size_t)i * D + j] - f.mean[j]);
            double e = fabs(ref - out.x[(size_t)i * F + k]);
            maxd = e > maxd ? e : maxd;
        }
    }
    assert_true(maxd < 1e-4);
    /* feature_map_apply (a CPU backend made for the call) gives the same bytes */
    assert_int_equal(feature_map_apply(&f, &in, &out2, &err), 0);
    assert_memory_equal(out.x, out2.x, sizeof(float) * (size_t)n * F);
    feature_map_dev_free(&fd);
    feature_map_dev none = {0};
    dataset_free(&out);
    assert_int_equal(feature_map_apply_dev(&none, be, &in, &out, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "not uploaded"));
    dataset_free(&in);
    dataset_free(&out2);
    feature_map_free(&f);
}

static int setup(void **state)
{
    backend_t *be = NULL;
    d2_error err = {0};
    if (backend_cpu_create(&be, 2, &err))
        return -1;
    *state = be;
    return 0;
}

static int teardown(void **state)
{
    backend_destroy(*state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scorer_matches_target_eval),
        cmocka_unit_test(test_scorer_refuses_mismatch),
        cmocka_unit_test(test_feature_map_on_backend),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
