/* test_denoiser.c - adaLN denoiser: gradient checks of the condition and of
 * every kind of parameter; grouped rows (shared condition) equal the same
 * rows given one by one; zero-initialised output at start. */
#include "testutil.h"

#include <math.h>

#include "denoiser.h"
#include "gradcheck.h"

typedef struct ctx {
    backend_t *be;
    paramset ps;
    denoiser d;
    arena ar;
    denoiser_cache c;
    float *z, *temb, *cond, *dcond;
    int S, L, C, TD;
} ctx;

static int fwd(backend_t *be, void *user, float *out)
{
    ctx *t = user;
    d2_error err;
    arena_reset(&t->ar, 0);
    if (denoiser_forward(be, &t->d, &t->ps, &t->ar, &t->c, t->z, t->temb, t->cond, t->S, 1, &err))
        return -1;
    return be->ops->copy(be, out, t->c.eps, (size_t)t->S * t->L * sizeof(float));
}

static int bwd(backend_t *be, void *user, const float *dout)
{
    ctx *t = user;
    d2_error err;
    return denoiser_backward(be, &t->d, &t->ps, &t->ar, &t->c, dout, t->dcond, &err);
}

static void setup_ctx(ctx *t, int L, int H, int blocks, int C, int S, int randomize)
{
    d2_error err = {0};
    memset(t, 0, sizeof *t);
    assert_int_equal(backend_cpu_create(&t->be, 1, &err), 0);
    paramset_init(&t->ps);
    denoiser_cfg cfg = {.latent = L, .hidden = H, .mlp_ratio = 2, .blocks = blocks,
                        .cond_dim = C, .temb_dim = 8};
    assert_int_equal(denoiser_init(&t->d, &t->ps, "den", &cfg, &err), 0);
    assert_int_equal(paramset_alloc(&t->ps, t->be, 5, &err), 0);
    if (randomize) {
        // adaLN-Zero starts with zero gates; random weights exercise every path
        float *w = malloc(t->ps.total * sizeof(float));
        rng r;
        rng_init(&r, 17, 0);
        for (size_t i = 0; i < t->ps.total; i++)
            w[i] = 0.3f * rng_normal(&r);
        t->be->ops->to_device(t->be, t->ps.w, w, t->ps.total * sizeof(float));
        free(w);
    }
    assert_int_equal(arena_init(&t->ar, t->be, 32 << 20, &err), 0);
    t->S = S;
    t->L = L;
    t->C = C;
    t->TD = 8;
    int ts[16];
    for (int i = 0; i < S; i++)
        ts[i] = 37 * i + 5;
    float temb[16 * 8];
    denoiser_timestep_features(8, ts, S, temb);
    t->temb = backend_alloc_floats(t->be, (size_t)S * 8);
    t->be->ops->to_device(t->be, t->temb, temb, sizeof(float) * S * 8);
    t->z = gc_dev_uniform(t->be, (size_t)S * L, -1.5f, 1.5f, 8);
    t->cond = gc_dev_uniform(t->be, (size_t)S * C, -1.0f, 1.0f, 9);
    t->dcond = backend_alloc_floats(t->be, (size_t)S * C);
}

static void teardown_ctx(ctx *t)
{
    t->be->ops->free(t->be, t->z);
    t->be->ops->free(t->be, t->temb);
    t->be->ops->free(t->be, t->cond);
    t->be->ops->free(t->be, t->dcond);
    arena_free(&t->ar);
    paramset_free(&t->ps);
    backend_destroy(t->be);
}

static gc_target ptarget(ctx *t, const char *name)
{
    const param_entry *e = paramset_find(&t->ps, name);
    assert_non_null(e);
    return (gc_target){e->name, t->ps.w + e->offset, t->ps.g + e->offset, e->numel};
}

static void test_denoiser_gradients(void **state)
{
    (void)state;
    ctx t;
    setup_ctx(&t, 6, 12, 2, 5, 4, 1);
    gc_target targets[] = {
        {"cond", t.cond, t.dcond, (size_t)t.S * t.C},
        ptarget(&t, "den.t1.weight"),
        ptarget(&t, "den.t2.bias"),
        ptarget(&t, "den.cproj.weight"),
        ptarget(&t, "den.fin.weight"),
        ptarget(&t, "den.blocks.0.mod.weight"),
        ptarget(&t, "den.blocks.1.mod.bias"),
        ptarget(&t, "den.blocks.0.fc1.weight"),
        ptarget(&t, "den.blocks.1.fc2.weight"),
        ptarget(&t, "den.fmod.weight"),
        ptarget(&t, "den.fout.weight"),
        ptarget(&t, "den.fout.bias"),
    };
    gc_opts o = gc_default_opts();
    o.eps = 2e-3;
    o.max_checks = 32;
    gc_report rep;
    int bad = gc_check(t.be, fwd, bwd, &t, (size_t)t.S * t.L, targets,
                       (int)(sizeof targets / sizeof targets[0]), &o, &rep);
    if (bad)
        fail_msg("%d of %d failed; worst %s", rep.failed, rep.checked, rep.worst);
    assert_true(rep.checked > 200);
    assert_true(rep.kinks <= rep.checked / 10);
    teardown_ctx(&t);
}

static void test_denoiser_grouped_equals_rows(void **state)
{
    (void)state;
    // S=2 conditions x G=3 rows each == 6 rows with the conditions repeated
    ctx t;
    setup_ctx(&t, 5, 16, 3, 4, 6, 1);
    d2_error err;
    const int L = t.L, C = t.C, TD = t.TD;
    float z[6 * 5], cond2[2 * 4], cond6[6 * 4], temb2[2 * 8], temb6[6 * 8];
    rng r;
    rng_init(&r, 3, 0);
    for (int i = 0; i < 6 * L; i++)
        z[i] = rng_normal(&r);
    for (int i = 0; i < 2 * C; i++)
        cond2[i] = rng_normal(&r);
    int ts2[2] = {100, 900}, ts6[6] = {100, 100, 100, 900, 900, 900};
    denoiser_timestep_features(TD, ts2, 2, temb2);
    denoiser_timestep_features(TD, ts6, 6, temb6);
    for (int i = 0; i < 6; i++)
        memcpy(cond6 + i * C, cond2 + (i / 3) * C, sizeof(float) * C);
    backend_t *be = t.be;
    float *dz = backend_alloc_floats(be, 6 * L), *dc2 = backend_alloc_floats(be, 2 * C),
          *dc6 = backend_alloc_floats(be, 6 * C), *dt2 = backend_alloc_floats(be, 2 * TD),
          *dt6 = backend_alloc_floats(be, 6 * TD);
    be->ops->to_device(be, dz, z, sizeof z);
    be->ops->to_device(be, dc2, cond2, sizeof cond2);
    be->ops->to_device(be, dc6, cond6, sizeof cond6);
    be->ops->to_device(be, dt2, temb2, sizeof temb2);
    be->ops->to_device(be, dt6, temb6, sizeof temb6);
    float a[6 * 5], b[6 * 5];
    denoiser_cache c;
    assert_int_equal(denoiser_forward(be, &t.d, &t.ps, &t.ar, &c, dz, dt2, dc2, 2, 3, &err), 0);
    be->ops->to_host(be, a, c.eps, sizeof a);
    arena_reset(&t.ar, 0);
    assert_int_equal(denoiser_forward(be, &t.d, &t.ps, &t.ar, &c, dz, dt6, dc6, 6, 1, &err), 0);
    be->ops->to_host(be, b, c.eps, sizeof b);
    double maxabs = 0;
    for (int i = 0; i < 6 * L; i++) {
        TU_ASSERT_NEAR(a[i], b[i], 1e-5 + 1e-5 * fabs(b[i]));
        maxabs = fmax(maxabs, fabs(b[i]));
    }
    assert_true(maxabs > 1e-3); // the comparison is not between zeros
    // backward refuses grouped rows
    assert_int_equal(denoiser_forward(be, &t.d, &t.ps, &t.ar, &c, dz, dt2, dc2, 2, 3, &err), 0);
    assert_int_equal(denoiser_backward(be, &t.d, &t.ps, &t.ar, &c, dz, NULL, &err), D2_EINVAL);
    be->ops->free(be, dz);
    be->ops->free(be, dc2);
    be->ops->free(be, dc6);
    be->ops->free(be, dt2);
    be->ops->free(be, dt6);
    teardown_ctx(&t);
}

static void test_denoiser_starts_at_zero(void **state)
{
    (void)state;
    // adaLN-Zero: the initial network predicts eps = 0 exactly
    ctx t;
    setup_ctx(&t, 6, 12, 2, 5, 4, 0);
    float out[4 * 6];
    float *d = backend_alloc_floats(t.be, 4 * 6);
    assert_int_equal(fwd(t.be, &t, d), 0);
    t.be->ops->to_host(t.be, out, d, sizeof out);
    for (int i = 0; i < 24; i++)
        assert_true(out[i] == 0.0f);
    t.be->ops->free(t.be, d);
    teardown_ctx(&t);
}

static void test_timestep_features(void **state)
{
    (void)state;
    int ts[2] = {0, 500};
    float f[2 * 8];
    denoiser_timestep_features(8, ts, 2, f);
    for (int i = 0; i < 4; i++) {
        TU_ASSERT_NEAR(f[i], 1.0, 1e-7);     // cos(0)
        TU_ASSERT_NEAR(f[4 + i], 0.0, 1e-7); // sin(0)
    }
    TU_ASSERT_NEAR(f[8], cos(500.0), 1e-6);
    TU_ASSERT_NEAR(f[12], sin(500.0), 1e-6);
    TU_ASSERT_NEAR(f[9], cos(500.0 * exp(-log(10000.0) / 4)), 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_denoiser_gradients),
        cmocka_unit_test(test_denoiser_grouped_equals_rows),
        cmocka_unit_test(test_denoiser_starts_at_zero),
        cmocka_unit_test(test_timestep_features),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
