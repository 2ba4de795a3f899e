/* test_resmlp.c - residual MLP: gradient checks of the input and every kind
 * of parameter, and the forward against a naive double-precision reference. */
#include "testutil.h"

#include <math.h>

#include "gradcheck.h"
#include "resmlp.h"

typedef struct ctx {
    backend_t *be;
    paramset ps;
    resmlp m;
    arena ar;
    resmlp_cache c;
    float *x, *dx;
    int B;
} ctx;

static int fwd(backend_t *be, void *user, float *out)
{
    ctx *t = user;
    d2_error err;
    arena_reset(&t->ar, 0);
    if (resmlp_forward(be, &t->m, &t->ps, &t->ar, &t->c, t->x, t->B, &err))
        return -1;
    return be->ops->copy(be, out, t->c.y, (size_t)t->B * t->m.out * sizeof(float));
}

static int bwd(backend_t *be, void *user, const float *dout)
{
    ctx *t = user;
    d2_error err;
    return resmlp_backward(be, &t->m, &t->ps, &t->ar, &t->c, t->dx, dout, &err);
}

static void setup_ctx(ctx *t, int in, int hidden, int out, int blocks, int B)
{
    d2_error err = {0};
    memset(t, 0, sizeof *t);
    assert_int_equal(backend_cpu_create(&t->be, 1, &err), 0);
    paramset_init(&t->ps);
    assert_int_equal(resmlp_init(&t->m, &t->ps, "m", in, hidden, out, blocks, 1.0f, &err), 0);
    assert_int_equal(paramset_alloc(&t->ps, t->be, 7, &err), 0);
    // random LayerNorm affine parameters too, so their gradients are exercised
    float *w = malloc(t->ps.total * sizeof(float));
    t->be->ops->to_host(t->be, w, t->ps.w, t->ps.total * sizeof(float));
    rng r;
    rng_init(&r, 99, 0);
    for (int i = 0; i < t->ps.count; i++)
        if (strstr(t->ps.entries[i].name, "ln"))
            for (size_t k = 0; k < t->ps.entries[i].numel; k++)
                w[t->ps.entries[i].offset + k] += 0.3f * rng_normal(&r);
    t->be->ops->to_device(t->be, t->ps.w, w, t->ps.total * sizeof(float));
    free(w);
    assert_int_equal(arena_init(&t->ar, t->be, 16 << 20, &err), 0);
    t->B = B;
    t->x = gc_dev_uniform(t->be, (size_t)B * in, -1.0f, 1.0f, 3);
    t->dx = backend_alloc_floats(t->be, (size_t)B * in);
    assert_non_null(t->x);
    assert_non_null(t->dx);
}

static void teardown_ctx(ctx *t)
{
    t->be->ops->free(t->be, t->x);
    t->be->ops->free(t->be, t->dx);
    arena_free(&t->ar);
    paramset_free(&t->ps);
    backend_destroy(t->be);
}

static gc_target param_target(ctx *t, const char *name)
{
    const param_entry *e = paramset_find(&t->ps, name);
    assert_non_null(e);
    gc_target g = {e->name, t->ps.w + e->offset, t->ps.g + e->offset, e->numel};
    return g;
}

static void test_resmlp_gradients(void **state)
{
    (void)state;
    const int shapes[3][5] = {{7, 16, 5, 2, 3}, {12, 8, 9, 1, 4}, {5, 24, 3, 3, 2}};
    for (int s = 0; s < 3; s++) {
        ctx t;
        setup_ctx(&t, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4]);
        gc_target targets[8];
        int n = 0;
        targets[n++] = (gc_target){"x", t.x, t.dx, (size_t)t.B * shapes[s][0]};
        targets[n++] = param_target(&t, "m.in.weight");
        targets[n++] = param_target(&t, "m.in.bias");
        targets[n++] = param_target(&t, "m.blocks.0.ln.weight");
        targets[n++] = param_target(&t, "m.blocks.0.fc1.weight");
        targets[n++] = param_target(&t, "m.blocks.0.fc2.bias");
        targets[n++] = param_target(&t, "m.ln_out.bias");
        targets[n++] = param_target(&t, "m.out.weight");
        gc_opts o = gc_default_opts();
        o.eps = 3e-3;
        gc_report rep;
        int bad = gc_check(t.be, fwd, bwd, &t, (size_t)t.B * shapes[s][2], targets, n, &o, &rep);
        if (bad)
            fail_msg("shape %d: %d of %d failed; worst %s", s, rep.failed, rep.checked, rep.worst);
        assert_true(rep.checked > 100);
        assert_true(rep.kinks <= rep.checked / 10);
        teardown_ctx(&t);
    }
}

/* naive reference: double precision on the host from the same parameters */
static void ref_layernorm(double *y, const double *x, const float *g, const float *b, int C)
{
    double m = 0, v = 0;
    for (int i = 0; i < C; i++)
        m += x[i];
    m /= C;
    for (int i = 0; i < C; i++)
        v += (x[i] - m) * (x[i] - m);
    v /= C;
    for (int i = 0; i < C; i++)
        y[i] = (x[i] - m) / sqrt(v + 1e-5) * g[i] + b[i];
}

static void ref_linear(double *y, const double *x, const float *W, const float *b, int in, int out)
{
    for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int i = 0; i < in; i++)
            s += W[o * in + i] * x[i];
        y[o] = s;
    }
}

static void test_resmlp_forward_reference(void **state)
{
    (void)state;
    const int in = 6, H = 10, out = 4, blocks = 2, B = 3;
    ctx t;
    setup_ctx(&t, in, H, out, blocks, B);
    float *w = malloc(t.ps.total * sizeof(float)), *x = malloc((size_t)B * in * sizeof(float));
    float *y = malloc((size_t)B * out * sizeof(float));
    t.be->ops->to_host(t.be, w, t.ps.w, t.ps.total * sizeof(float));
    t.be->ops->to_host(t.be, x, t.x, (size_t)B * in * sizeof(float));
    d2_error err;
    assert_int_equal(resmlp_forward(t.be, &t.m, &t.ps, &t.ar, &t.c, t.x, B, &err), 0);
    t.be->ops->to_host(t.be, y, t.c.y, (size_t)B * out * sizeof(float));
#define P(name) (w + paramset_find(&t.ps, name)->offset)
    for (int b = 0; b < B; b++) {
        double xin[16], h[16], ln[16], a[16], o[16];
        for (int i = 0; i < in; i++)
            xin[i] = x[b * in + i];
        ref_linear(h, xin, P("m.in.weight"), P("m.in.bias"), in, H);
        for (int k = 0; k < blocks; k++) {
            char n1[64], n2[64], n3[64], n4[64], n5[64], n6[64];
            snprintf(n1, sizeof n1, "m.blocks.%d.ln.weight", k);
            snprintf(n2, sizeof n2, "m.blocks.%d.ln.bias", k);
            snprintf(n3, sizeof n3, "m.blocks.%d.fc1.weight", k);
            snprintf(n4, sizeof n4, "m.blocks.%d.fc1.bias", k);
            snprintf(n5, sizeof n5, "m.blocks.%d.fc2.weight", k);
            snprintf(n6, sizeof n6, "m.blocks.%d.fc2.bias", k);
            ref_layernorm(ln, h, P(n1), P(n2), H);
            ref_linear(a, ln, P(n3), P(n4), H, H);
            for (int i = 0; i < H; i++)
                a[i] = a[i] / (1.0 + exp(-a[i]));
            ref_linear(o, a, P(n5), P(n6), H, H);
            for (int i = 0; i < H; i++)
                h[i] += o[i];
        }
        ref_layernorm(ln, h, P("m.ln_out.weight"), P("m.ln_out.bias"), H);
        ref_linear(o, ln, P("m.out.weight"), P("m.out.bias"), H, out);
        for (int i = 0; i < out; i++)
            TU_ASSERT_NEAR(y[b * out + i], o[i], 1e-4 + 1e-4 * fabs(o[i]));
    }
#undef P
    free(w);
    free(x);
    free(y);
    teardown_ctx(&t);
}

static void test_resmlp_bad_sizes(void **state)
{
    (void)state;
    paramset ps;
    paramset_init(&ps);
    resmlp m;
    d2_error err = {0};
    assert_int_equal(resmlp_init(&m, &ps, "m", 0, 8, 8, 1, 1.0f, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "bad sizes"));
    assert_int_equal(resmlp_init(&m, &ps, "m", 4, 8, 8, RESMLP_MAX_BLOCKS + 1, 1.0f, &err),
                     D2_EINVAL);
    paramset_free(&ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resmlp_gradients),
        cmocka_unit_test(test_resmlp_forward_reference),
        cmocka_unit_test(test_resmlp_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
