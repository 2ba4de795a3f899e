/* test_optim.c - learning-rate schedule, AdamW over a paramset, clipping, EMA. */
#include "testutil.h"

#include <math.h>

#include "layers.h"
#include "optim.h"

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

static void test_defaults_and_schedule(void **state)
{
    (void)state;
    adamw_cfg c = adamw_defaults();
    TU_ASSERT_NEAR(c.lr, 1e-3, 1e-9);
    TU_ASSERT_NEAR(c.beta1, 0.9, 1e-7);
    TU_ASSERT_NEAR(c.beta2, 0.999, 1e-7);
    TU_ASSERT_NEAR(c.eps, 1e-8, 1e-12);
    TU_ASSERT_NEAR(c.weight_decay, 0.01, 1e-9);
    TU_ASSERT_NEAR(c.clip_norm, 1.0, 0);
    assert_int_equal(c.warmup_steps, 0);
    /* no warm-up, no horizon: constant */
    TU_ASSERT_NEAR(lr_at(&c, 0), 1e-3, 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 100000), 1e-3, 1e-9);

    c.warmup_steps = 10;
    c.total_steps = 110;
    c.min_lr_ratio = 0.1f;
    /* linear ramp: lr * (step + 1) / warmup */
    TU_ASSERT_NEAR(lr_at(&c, 0), 1e-4, 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 4), 5e-4, 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 9), 1e-3, 1e-9);
    /* cosine: starts at lr, midpoint (lr + min) / 2, ends at min and stays there */
    TU_ASSERT_NEAR(lr_at(&c, 10), 1e-3, 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 60), 0.55e-3, 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 35), 1e-4 + 0.9e-3 * 0.5 * (1 + cos(M_PI * 0.25)), 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 110), 1e-4, 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 5000), 1e-4, 1e-9);
    for (int s = 10; s < 110; s++)
        assert_true(lr_at(&c, s + 1) <= lr_at(&c, s));
    /* warm-up then constant when there is no horizon */
    c.total_steps = 0;
    TU_ASSERT_NEAR(lr_at(&c, 3), 4e-4, 1e-9);
    TU_ASSERT_NEAR(lr_at(&c, 50), 1e-3, 1e-9);
}

/* one tensor "w" [n] */
static void make_set(backend_t *be, paramset *ps, size_t n, uint64_t seed)
{
    d2_error err;
    int64_t shape[1] = {(int64_t)n};
    paramset_init(ps);
    assert_int_equal(paramset_add(ps, "w", 1, shape, INIT_NORMAL, 1.0f, NULL, &err), 0);
    assert_int_equal(paramset_alloc(ps, be, seed, &err), 0);
    assert_int_equal(paramset_alloc_optim(ps, &err), 0);
}

/* f(w) = 0.5 sum a_i (w_i - c_i)^2 converges to c */
static void test_adamw_quadratic(void **state)
{
    backend_t *be = *state;
    const backend_ops *op = be->ops;
    const size_t n = 37;
    paramset ps;
    d2_error err;
    make_set(be, &ps, n, 3);
    float ah[37], ch[37];
    for (size_t i = 0; i < n; i++) {
        ah[i] = 0.5f + (float)i / 10.0f;
        ch[i] = (float)i / 7.0f - 2.0f;
    }
    adamw_cfg cfg = adamw_defaults();
    cfg.lr = 0.05f;
    cfg.weight_decay = 0.0f;
    cfg.clip_norm = 0.0f;
    cfg.total_steps = 1500;
    cfg.min_lr_ratio = 0.01f;
    float gn0 = 0, gn = 0;
    for (int step = 0; step < 1500; step++) {
        // g = a * (w - c), on the host (the backend has no elementwise product)
        float wh[37], gh[37];
        assert_int_equal(op->to_host(be, wh, ps.w, sizeof wh), 0);
        for (size_t i = 0; i < n; i++)
            gh[i] = ah[i] * (wh[i] - ch[i]);
        assert_int_equal(op->to_device(be, ps.g, gh, sizeof gh), 0);
        assert_int_equal(optim_adamw_step(&ps, &cfg, step, &gn, &err), 0);
        if (step == 0)
            gn0 = gn;
    }
    float *w = host_of(be, ps.w, n);
    for (size_t i = 0; i < n; i++)
        TU_ASSERT_NEAR(w[i], ch[i], 1e-2);
    assert_true(gn < 1e-2f * gn0);
    free(w);
    paramset_free(&ps);
}

/* clipping scales the gradient before the moments: m = (1 - b1) g * clip / |g| */
static void test_adamw_clipping(void **state)
{
    backend_t *be = *state;
    const backend_ops *op = be->ops;
    const size_t n = 25;
    paramset ps;
    d2_error err;
    make_set(be, &ps, n, 4);
    float gh[25];
    for (size_t i = 0; i < n; i++)
        gh[i] = 2.0f; /* |g| = 2 * 5 = 10 */
    op->to_device(be, ps.g, gh, sizeof gh);
    adamw_cfg cfg = adamw_defaults();
    cfg.clip_norm = 1.0f;
    cfg.weight_decay = 0.0f;
    cfg.eps = 1.0f; /* large eps: the step size depends on the gradient's scale */
    float *w0 = host_of(be, ps.w, n);
    float norm = 0;
    assert_int_equal(optim_adamw_step(&ps, &cfg, 0, &norm, &err), 0);
    TU_ASSERT_NEAR(norm, 10.0, 1e-4); /* reported before clipping */
    float *m = host_of(be, ps.m, n), *w1 = host_of(be, ps.w, n);
    for (size_t i = 0; i < n; i++) {
        TU_ASSERT_NEAR(m[i], 0.1 * 2.0 / 10.0, 1e-6);
        /* mhat = 0.2, vhat = 0.04: update = lr * 0.2 / (0.2 + 1) */
        TU_ASSERT_NEAR(w0[i] - w1[i], 1e-3 * 0.2 / 1.2, 1e-7);
    }
    free(m);
    free(w1);
    /* under the threshold nothing is scaled */
    paramset_free(&ps);
    make_set(be, &ps, n, 4);
    op->to_device(be, ps.g, gh, sizeof gh);
    cfg.clip_norm = 100.0f;
    assert_int_equal(optim_adamw_step(&ps, &cfg, 0, NULL, &err), 0);
    m = host_of(be, ps.m, n);
    for (size_t i = 0; i < n; i++)
        TU_ASSERT_NEAR(m[i], 0.1 * 2.0, 1e-6);
    free(m);

    /* a non-finite gradient is refused and the weights stay */
    float *wb = host_of(be, ps.w, n);
    gh[3] = NAN;
    op->to_device(be, ps.g, gh, sizeof gh);
    assert_int_equal(optim_adamw_step(&ps, &cfg, 1, &norm, &err), D2_ERANGE);
    assert_non_null(strstr(err.msg, "gradient norm"));
    float *wa = host_of(be, ps.w, n);
    assert_memory_equal(wa, wb, n * sizeof(float));
    free(wa);
    free(wb);
    free(w0);

    /* decoupled weight decay: with g = 0 the weights shrink by (1 - lr wd) */
    op->fill(be, ps.g, 0.0f, ps.total);
    op->fill(be, ps.m, 0.0f, ps.total);
    op->fill(be, ps.v, 0.0f, ps.total);
    cfg.weight_decay = 0.5f;
    cfg.lr = 0.1f;
    w0 = host_of(be, ps.w, n);
    assert_int_equal(optim_adamw_step(&ps, &cfg, 0, NULL, &err), 0);
    w1 = host_of(be, ps.w, n);
    for (size_t i = 0; i < n; i++)
        TU_ASSERT_NEAR(w1[i], w0[i] * (1 - 0.05), 1e-6);
    free(w0);
    free(w1);
    paramset_free(&ps);

    /* moments missing */
    paramset_init(&ps);
    int64_t shape[1] = {4};
    assert_int_equal(paramset_add(&ps, "w", 1, shape, INIT_ZEROS, 0, NULL, &err), 0);
    assert_int_equal(paramset_alloc(&ps, be, 1, &err), 0);
    assert_int_equal(optim_adamw_step(&ps, &cfg, 0, NULL, &err), D2_EINVAL);
    paramset_free(&ps);
}

static void test_ema(void **state)
{
    backend_t *be = *state;
    paramset ps;
    d2_error err;
    make_set(be, &ps, 40, 5);
    assert_int_equal(paramset_alloc_ema(&ps, &err), 0);
    float *e0 = host_of(be, ps.ema, 40);
    be->ops->rand_normal(be, ps.w, 40, 9, 0, 0.0f, 1.0f);
    float *w = host_of(be, ps.w, 40);
    optim_ema_update(&ps, 0.9f);
    float *e1 = host_of(be, ps.ema, 40);
    for (int i = 0; i < 40; i++)
        TU_ASSERT_NEAR(e1[i], 0.9 * e0[i] + 0.1 * w[i], 1e-6);
    /* many updates with fixed w converge to w */
    for (int k = 0; k < 300; k++)
        optim_ema_update(&ps, 0.95f);
    free(e1);
    e1 = host_of(be, ps.ema, 40);
    for (int i = 0; i < 40; i++)
        TU_ASSERT_NEAR(e1[i], w[i], 1e-5);
    free(e0);
    free(e1);
    free(w);
    paramset_free(&ps);
}

/* a 2-layer MLP (8 -> 16 SiLU -> 3) with cross-entropy on a fixed batch: one AdamW step
 * lowers the loss, and a few hundred fit the batch */
typedef struct mlp {
    linear l1, l2;
    float *x, *h, *a, *logits, *dlogits, *da, *dh, *loss;
    int32_t *labels;
    int B;
} mlp;

static float mlp_loss(backend_t *be, mlp *m, paramset *ps, int backward)
{
    const backend_ops *op = be->ops;
    linear_forward(be, &m->l1, ps, m->h, m->x, m->B);      // x: [B, 8] -> h: [B, 16]
    op->act_forward(be, ACT_SILU, m->a, m->h, (size_t)m->B * 16);
    linear_forward(be, &m->l2, ps, m->logits, m->a, m->B); // -> logits: [B, 3]
    op->cross_entropy(be, m->loss, backward ? m->dlogits : NULL, m->logits, m->labels, m->B, 3,
                      1.0f);
    if (backward) {
        op->fill(be, m->da, 0.0f, (size_t)m->B * 16);
        op->fill(be, m->dh, 0.0f, (size_t)m->B * 16);
        linear_backward(be, &m->l2, ps, m->da, m->dlogits, m->a, m->B);
        op->act_backward(be, ACT_SILU, m->dh, m->da, m->h, (size_t)m->B * 16);
        linear_backward(be, &m->l1, ps, NULL, m->dh, m->x, m->B);
    }
    float l;
    op->to_host(be, &l, m->loss, sizeof l);
    return l;
}

static void test_adamw_trains_mlp(void **state)
{
    backend_t *be = *state;
    const backend_ops *op = be->ops;
    paramset ps;
    d2_error err;
    mlp m = {.B = 32};
    paramset_init(&ps);
    assert_int_equal(linear_init(&m.l1, &ps, "0", 8, 16, 1, 1.0f, &err), 0);
    assert_int_equal(linear_init(&m.l2, &ps, "2", 16, 3, 1, 1.0f, &err), 0);
    assert_int_equal(paramset_alloc(&ps, be, 11, &err), 0);
    assert_int_equal(paramset_alloc_optim(&ps, &err), 0);
    float **bufs[] = {&m.x, &m.h, &m.a, &m.logits, &m.dlogits, &m.da, &m.dh, &m.loss};
    size_t sizes[] = {32 * 8, 32 * 16, 32 * 16, 32 * 3, 32 * 3, 32 * 16, 32 * 16, 1};
    for (size_t i = 0; i < 8; i++) {
        *bufs[i] = backend_alloc_floats(be, sizes[i]);
        assert_non_null(*bufs[i]);
    }
    op->rand_normal(be, m.x, 32 * 8, 21, 0, 0.0f, 1.0f);
    int32_t lab[32];
    for (int i = 0; i < 32; i++)
        lab[i] = i % 3;
    m.labels = op->alloc(be, sizeof lab);
    op->to_device(be, m.labels, lab, sizeof lab);

    adamw_cfg cfg = adamw_defaults();
    cfg.lr = 1e-2f;
    paramset_zero_grad(&ps);
    float l0 = mlp_loss(be, &m, &ps, 1);
    assert_int_equal(optim_adamw_step(&ps, &cfg, 0, NULL, &err), 0);
    float l1 = mlp_loss(be, &m, &ps, 0);
    print_message("  loss before %.5f, after one step %.5f\n", l0, l1);
    assert_true(l1 < l0);
    for (int step = 1; step < 300; step++) {
        paramset_zero_grad(&ps);
        mlp_loss(be, &m, &ps, 1);
        assert_int_equal(optim_adamw_step(&ps, &cfg, step, NULL, &err), 0);
    }
    float lend = mlp_loss(be, &m, &ps, 0);
    print_message("  after 300 steps %.5f\n", lend);
    assert_true(lend < 0.2f * l0);

    for (size_t i = 0; i < 8; i++)
        op->free(be, *bufs[i]);
    op->free(be, m.labels);
    paramset_free(&ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_schedule),
        cmocka_unit_test(test_adamw_quadratic),
        cmocka_unit_test(test_adamw_clipping),
        cmocka_unit_test(test_ema),
        cmocka_unit_test(test_adamw_trains_mlp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
