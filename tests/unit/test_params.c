/* test_params.c - parameter registration, alignment, seeded initialisation. */
#include "testutil.h"

#include <math.h>

#include "params.h"

static int setup(void **state)
{
    backend_t *be;
    d2_error err;
    if (backend_cpu_create(&be, 1, &err) != 0)
        return -1;
    *state = be;
    return 0;
}

static int teardown(void **state)
{
    backend_destroy(*state);
    return 0;
}

static float *host_of(backend_t *be, const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    assert_non_null(h);
    assert_int_equal(be->ops->to_host(be, h, d, n * sizeof(float)), 0);
    return h;
}

static void test_register(void **state)
{
    backend_t *be = *state;
    paramset ps;
    d2_error err;
    paramset_init(&ps);
    int64_t s1[2] = {5, 3}, s2[1] = {7}, s3[3] = {2, 3, 4};
    size_t o1, o2, o3;
    assert_int_equal(paramset_add(&ps, "a.weight", 2, s1, INIT_KAIMING, 1.0f, &o1, &err), 0);
    assert_int_equal(paramset_add(&ps, "a.bias", 1, s2, INIT_ZEROS, 0.0f, &o2, &err), 0);
    assert_int_equal(paramset_add(&ps, "b", 3, s3, INIT_NORMAL, 0.5f, &o3, &err), 0);
    assert_int_equal(ps.count, 3);
    assert_int_equal(o1 % 16, 0);
    assert_int_equal(o2 % 16, 0);
    assert_int_equal(o3 % 16, 0);
    assert_true(o2 >= o1 + 15 && o3 >= o2 + 7);
    assert_true(ps.total >= o3 + 24);
    assert_int_equal(paramset_numel(&ps), 15 + 7 + 24);
    const param_entry *e = paramset_find(&ps, "b");
    assert_non_null(e);
    assert_int_equal(e->ndim, 3);
    assert_int_equal(e->shape[2], 4);
    assert_int_equal(e->numel, 24);
    assert_int_equal(e->offset, o3);
    assert_null(paramset_find(&ps, "c"));

    /* refused: duplicate name, too long a name, bad shapes, unknown init */
    assert_int_equal(paramset_add(&ps, "a.bias", 1, s2, INIT_ZEROS, 0.0f, &o2, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate"));
    assert_non_null(strstr(err.msg, "a.bias"));
    char longname[PARAM_NAME_LEN + 8];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(paramset_add(&ps, longname, 1, s2, INIT_ZEROS, 0.0f, &o2, &err),
                     D2_EINVAL);
    int64_t bad[2] = {3, 0};
    assert_true(paramset_add(&ps, "z", 2, bad, INIT_ZEROS, 0.0f, &o2, &err) < 0);
    assert_true(paramset_add(&ps, "z", 0, s2, INIT_ZEROS, 0.0f, &o2, &err) < 0);
    assert_true(paramset_add(&ps, "z", 5, s2, INIT_ZEROS, 0.0f, &o2, &err) < 0);
    assert_true(paramset_add(&ps, "z", 1, s2, (param_init)9, 0.0f, &o2, &err) < 0);
    assert_int_equal(ps.count, 3);

    /* allocation: aligned device pointers, zero gradients; no more adds */
    assert_int_equal(paramset_alloc(&ps, be, 1, &err), 0);
    assert_true(((uintptr_t)(ps.w + o3) & 63) == 0);
    assert_true(((uintptr_t)(ps.g + o1) & 63) == 0);
    assert_int_equal(paramset_add(&ps, "late", 1, s2, INIT_ZEROS, 0.0f, &o2, &err), D2_EINVAL);
    float *g = host_of(be, ps.g, ps.total);
    for (size_t i = 0; i < ps.total; i++)
        assert_true(g[i] == 0.0f);
    free(g);

    /* optimiser moments start at zero, EMA starts as the weights */
    assert_int_equal(paramset_alloc_optim(&ps, &err), 0);
    assert_int_equal(paramset_alloc_ema(&ps, &err), 0);
    float *w = host_of(be, ps.w, ps.total), *m = host_of(be, ps.m, ps.total);
    float *ema = host_of(be, ps.ema, ps.total);
    assert_memory_equal(w, ema, ps.total * sizeof(float));
    for (size_t i = 0; i < ps.total; i++)
        assert_true(m[i] == 0.0f);
    free(w);
    free(m);
    free(ema);
    be->ops->fill(be, ps.g, 3.0f, ps.total);
    paramset_zero_grad(&ps);
    g = host_of(be, ps.g, ps.total);
    for (size_t i = 0; i < ps.total; i++)
        assert_true(g[i] == 0.0f);
    free(g);
    paramset_free(&ps);
    assert_int_equal(ps.count, 0);
    assert_null(ps.w);
    size_t used;
    be->ops->memory(be, &used, NULL);
    assert_int_equal(used, 0);

    /* moments before weights: refused */
    paramset_init(&ps);
    assert_int_equal(paramset_alloc_optim(&ps, &err), D2_EINVAL);
    assert_int_equal(paramset_alloc_ema(&ps, &err), D2_EINVAL);
}

/* build {names[0..n)} with fixed shapes and return the host copy of w */
static float *build(backend_t *be, paramset *ps, const char **names, int n, uint64_t seed)
{
    d2_error err;
    paramset_init(ps);
    for (int i = 0; i < n; i++) {
        int64_t shape[2] = {9, 4 + (int64_t)(strlen(names[i]) % 3)};
        assert_int_equal(paramset_add(ps, names[i], 2, shape, INIT_KAIMING, 1.0f, NULL, &err),
                         0);
    }
    assert_int_equal(paramset_alloc(ps, be, seed, &err), 0);
    return host_of(be, ps->w, ps->total);
}

static void test_deterministic(void **state)
{
    backend_t *be = *state;
    const char *names[] = {"enc.0.weight", "enc.1.weight", "dec.0.weight"};
    const char *more[] = {"extra.weight", "enc.0.weight", "enc.1.weight", "dec.0.weight"};
    paramset a, b, c, d;
    float *wa = build(be, &a, names, 3, 42), *wb = build(be, &b, names, 3, 42);
    float *wc = build(be, &c, names, 3, 43), *wd = build(be, &d, more, 4, 42);
    assert_int_equal(a.total, b.total);
    assert_memory_equal(wa, wb, a.total * sizeof(float)); /* same seed, same bytes */
    assert_memory_not_equal(wa, wc, a.total * sizeof(float));
    /* a tensor registered in front does not change the others' values */
    for (int i = 0; i < 3; i++) {
        const param_entry *ea = paramset_find(&a, names[i]);
        const param_entry *ed = paramset_find(&d, names[i]);
        assert_int_not_equal(ea->offset, ed->offset);
        assert_memory_equal(wa + ea->offset, wd + ed->offset, ea->numel * sizeof(float));
    }
    /* and the tensors of one set differ from each other */
    assert_memory_not_equal(wa + a.entries[0].offset, wa + a.entries[1].offset,
                            9 * 4 * sizeof(float)); /* both at least 9 x 4 */
    free(wa);
    free(wb);
    free(wc);
    free(wd);
    paramset_free(&a);
    paramset_free(&b);
    paramset_free(&c);
    paramset_free(&d);
}

static void test_init_distributions(void **state)
{
    backend_t *be = *state;
    paramset ps;
    d2_error err;
    paramset_init(&ps);
    int64_t kshape[2] = {200, 50}, xshape[2] = {120, 80}, nshape[1] = {20000}, v[1] = {33};
    size_t ok, ox, on, oz, o1;
    assert_int_equal(paramset_add(&ps, "k", 2, kshape, INIT_KAIMING, 0.5f, &ok, &err), 0);
    assert_int_equal(paramset_add(&ps, "x", 2, xshape, INIT_XAVIER, 1.0f, &ox, &err), 0);
    assert_int_equal(paramset_add(&ps, "n", 1, nshape, INIT_NORMAL, 0.02f, &on, &err), 0);
    assert_int_equal(paramset_add(&ps, "z", 1, v, INIT_ZEROS, 1.0f, &oz, &err), 0);
    assert_int_equal(paramset_add(&ps, "o", 1, v, INIT_ONES, 1.0f, &o1, &err), 0);
    assert_int_equal(paramset_alloc(&ps, be, 7, &err), 0);
    float *w = host_of(be, ps.w, ps.total);

    /* Kaiming (nn.Linear default): U(-a, a), a = scale / sqrt(fan_in = 50) */
    double a = 0.5 / sqrt(50.0), mx = 0, s = 0, s2 = 0;
    for (size_t i = 0; i < 200 * 50; i++) {
        double x = w[ok + i];
        assert_true(fabs(x) <= a);
        mx = fmax(mx, fabs(x));
        s += x;
        s2 += x * x;
    }
    assert_true(mx > 0.99 * a);
    TU_ASSERT_NEAR(s / 10000, 0.0, 5 * a / sqrt(3.0) / 100);
    TU_ASSERT_NEAR(s2 / 10000, a * a / 3, 0.05 * a * a / 3);

    /* Xavier: U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
    a = sqrt(6.0 / (80 + 120));
    mx = 0;
    for (size_t i = 0; i < 120 * 80; i++) {
        assert_true(fabs(w[ox + i]) <= a);
        mx = fmax(mx, fabs(w[ox + i]));
    }
    assert_true(mx > 0.99 * a);

    /* normal: N(0, scale^2) */
    s = s2 = 0;
    for (size_t i = 0; i < 20000; i++) {
        s += w[on + i];
        s2 += (double)w[on + i] * w[on + i];
    }
    TU_ASSERT_NEAR(s / 20000, 0.0, 5 * 0.02 / sqrt(20000.0));
    TU_ASSERT_NEAR(sqrt(s2 / 20000), 0.02, 0.001);

    for (int i = 0; i < 33; i++) {
        assert_true(w[oz + i] == 0.0f);
        assert_true(w[o1 + i] == 1.0f);
    }
    free(w);
    paramset_free(&ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_init_distributions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
