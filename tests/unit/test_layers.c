/* test_layers.c - finite-difference gradient checks (input and parameter gradients) of the
 * layers and losses, at random shapes and random inputs. */
#include "testutil.h"

#include <math.h>

#include "gradcheck.h"
#include "layers.h"

typedef enum lkind {
    L_LINEAR,
    L_LAYERNORM,
    L_ACT,
    L_SOFTMAX,
    L_MODULATE,
    L_GATED_ADD,
    L_PERMUTE,
    L_REPEAT,
    L_MSE,
    L_CROSS_ENTROPY,
    L_KL
} lkind;

typedef struct lctx {
    backend_t *be;
    rng r;
    lkind kind;
    int B, N, C, D, ld;  /* shapes, meaning per kind */
    act_kind act;
    float scale;         /* softmax scale */
    int wrong;           /* self-test: make the backward wrong on purpose */
    paramset ps;
    linear lin;
    layernorm ln;
    float *x, *dx, *p, *dp, *h, *dh, *tgt; /* inputs and gradients */
    float *mean, *rstd, *tmp, *tmp2, *last_out;
    int32_t *labels;
} lctx;

static int setup(void **state)
{
    lctx *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    d2_error err;
    if (backend_cpu_create(&c->be, 1, &err) != 0) {
        free(c);
        return -1;
    }
    rng_init(&c->r, 77, 0);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    lctx *c = *state;
    backend_destroy(c->be);
    free(c);
    return 0;
}

static int rnd_int(lctx *c, int lo, int hi)
{
    return lo + (int)rng_below(&c->r, (uint32_t)(hi - lo + 1));
}

static float *rand_buf(lctx *c, size_t n, float lo, float hi)
{
    float *d = gc_dev_uniform(c->be, n, lo, hi, rng_u32(&c->r));
    assert_non_null(d);
    return d;
}

static float *zero_buf(lctx *c, size_t n)
{
    float *d = backend_alloc_floats(c->be, n ? n : 1);
    assert_non_null(d);
    return d;
}

/* free every buffer of the context and reset it for the next case */
static void release(lctx *c)
{
    float **bufs[] = {&c->x, &c->dx, &c->p, &c->dp, &c->h, &c->dh, &c->tgt,
                      &c->mean, &c->rstd, &c->tmp, &c->tmp2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (*bufs[i])
            c->be->ops->free(c->be, *bufs[i]);
        *bufs[i] = NULL;
    }
    if (c->labels)
        c->be->ops->free(c->be, c->labels);
    c->labels = NULL;
    paramset_free(&c->ps);
    c->wrong = 0;
}

static float read_dout0(lctx *c, const float *dout)
{
    float r0;
    assert_int_equal(c->be->ops->to_host(c->be, &r0, dout, sizeof r0), 0);
    return r0;
}

static size_t n_x(const lctx *c)
{
    return (size_t)c->B * c->N * c->C;
}

static int lfwd(backend_t *be, void *user, float *out)
{
    lctx *c = user;
    const backend_ops *op = be->ops;
    c->last_out = out;
    switch (c->kind) {
    case L_LINEAR: // x: [B, in] -> out: [B, out]
        linear_forward(be, &c->lin, &c->ps, out, c->x, c->B);
        break;
    case L_LAYERNORM: // x: [B, C] -> out: [B, C]
        layernorm_fwd(be, &c->ln, &c->ps, out, c->mean, c->rstd, c->x, c->B);
        break;
    case L_ACT:
        op->act_forward(be, c->act, out, c->x, n_x(c));
        break;
    case L_SOFTMAX: // x: [B, C] -> out: [B, C]
        op->softmax_forward(be, out, c->x, c->scale, c->B, c->C);
        break;
    case L_MODULATE: // x: [B, N, C], p: [B, ld] (shift | scale) -> out: [B, N, C]
        op->modulate_forward(be, out, c->x, c->p, c->p + c->C, c->ld, c->B, c->N, c->C);
        break;
    case L_GATED_ADD: // x, h: [B, N, C], gate = p: [B, ld] -> out: [B, N, C]
        op->gated_add_forward(be, out, c->x, c->p + 1, c->h, c->ld, c->B, c->N, c->C);
        break;
    case L_PERMUTE: // x: [B, N, C, D] -> out: [B, C, N, D]
        op->permute_0213(be, out, c->x, c->B, c->N, c->C, c->D);
        break;
    case L_REPEAT: // x: [N, C] -> out: [B, N, C]
        op->repeat_rows(be, out, c->x, c->B, c->N, c->C);
        break;
    case L_MSE:
        op->mse(be, out, NULL, c->x, c->tgt, n_x(c), 1.0f);
        break;
    case L_CROSS_ENTROPY: // x: [B, C] logits -> out: [1]
        op->cross_entropy(be, out, NULL, c->x, c->labels, c->B, c->C, 1.0f);
        break;
    case L_KL: // mu = x, logvar = h: [B, C] -> out: [1]
        op->kl_gauss(be, out, NULL, NULL, c->x, c->h, n_x(c), c->B, 1.0f);
        break;
    }
    return 0;
}

static int lbwd(backend_t *be, void *user, const float *dout)
{
    lctx *c = user;
    const backend_ops *op = be->ops;
    switch (c->kind) {
    case L_LINEAR:
        linear_backward(be, &c->lin, &c->ps, c->dx, dout, c->x, c->B);
        break;
    case L_LAYERNORM:
        layernorm_bwd(be, &c->ln, &c->ps, c->dx, dout, c->x, c->mean, c->rstd, c->B);
        break;
    case L_ACT:
        op->act_backward(be, c->act, c->dx, dout, c->x, n_x(c));
        break;
    case L_SOFTMAX:
        op->softmax_backward(be, c->dx, dout, c->last_out, c->scale, c->B, c->C);
        break;
    case L_MODULATE:
        op->modulate_backward(be, c->dx, c->dp, c->dp + c->C, dout, c->x, c->p + c->C, c->ld,
                              c->B, c->N, c->C);
        break;
    case L_GATED_ADD:
        op->gated_add_backward(be, c->dx, c->dp + 1, c->dh, dout, c->p + 1, c->h, c->ld, c->B,
                               c->N, c->C);
        break;
    case L_PERMUTE: // dx += permute back of dout: [B, C, N, D] -> [B, N, C, D]
        op->permute_0213(be, c->tmp, dout, c->B, c->C, c->N, c->D);
        op->axpby(be, c->dx, 1.0f, c->tmp, 1.0f, n_x(c) * c->D);
        break;
    case L_REPEAT:
        op->repeat_rows_backward(be, c->dx, dout, c->B, c->N, c->C);
        break;
    case L_MSE: // dpred is overwritten by the op: take it in tmp, then accumulate
        op->mse(be, c->tmp2, c->tmp, c->x, c->tgt, n_x(c), read_dout0(c, dout));
        op->axpby(be, c->dx, 1.0f, c->tmp, 1.0f, n_x(c));
        break;
    case L_CROSS_ENTROPY:
        op->cross_entropy(be, c->tmp2, c->tmp, c->x, c->labels, c->B, c->C,
                          read_dout0(c, dout));
        op->axpby(be, c->dx, 1.0f, c->tmp, 1.0f, n_x(c));
        break;
    case L_KL:
        op->kl_gauss(be, c->tmp2, c->dx, c->dh, c->x, c->h, n_x(c), c->B, read_dout0(c, dout));
        break;
    }
    if (c->wrong) /* self-test: a backward that is 5% off */
        op->axpby(be, c->dx, 0.0f, c->dx, 1.05f, n_x(c) * (c->kind == L_PERMUTE ? (size_t)c->D : 1));
    return 0;
}

static gc_report run_check(lctx *c, size_t n_out, gc_target *t, int nt, const char *what)
{
    gc_opts o = gc_default_opts();
    o.seed = rng_u32(&c->r);
    o.atol = 5e-4;
    o.rtol = 5e-3;
    o.verbose = c->wrong ? -1 : 0;
    gc_report rep;
    int bad = gc_check(c->be, lfwd, lbwd, c, n_out, t, nt, &o, &rep);
    if (!c->wrong) {
        print_message("  %-28s %4d checked, %2d kinks, max abs err %.2e  worst %s\n", what,
                      rep.checked, rep.kinks, rep.max_abs_err, rep.worst);
        assert_int_equal(bad, 0);
        assert_true(rep.checked > 0);
        assert_true(rep.kinks * 10 <= rep.checked);
    } else {
        assert_true(bad > 0); /* the checker must notice a wrong gradient */
    }
    return rep;
}

static void test_linear(void **state)
{
    lctx *c = *state;
    for (int bias = 0; bias < 2; bias++) {
        d2_error err;
        c->kind = L_LINEAR;
        c->B = rnd_int(c, 1, 7);
        int in = rnd_int(c, 1, 19), out = rnd_int(c, 1, 13);
        c->N = 1;
        c->C = in;
        paramset_init(&c->ps);
        assert_int_equal(linear_init(&c->lin, &c->ps, "fc", in, out, bias, 1.0f, &err), 0);
        assert_int_equal(paramset_alloc(&c->ps, c->be, rng_u32(&c->r), &err), 0);
        c->x = rand_buf(c, (size_t)c->B * in, -1, 1);
        c->dx = zero_buf(c, (size_t)c->B * in);
        /* non-zero bias, so the check sees it used */
        if (bias)
            c->be->ops->rand_normal(c->be, c->ps.w + c->lin.b, (size_t)out, 5, 0, 0.0f, 0.5f);
        gc_target t[3] = {
            {"x", c->x, c->dx, (size_t)c->B * in},
            {"fc.weight", c->ps.w + c->lin.w, c->ps.g + c->lin.w, (size_t)out * in},
            {"fc.bias", c->ps.w + c->lin.b, c->ps.g + c->lin.b, (size_t)out},
        };
        run_check(c, (size_t)c->B * out, t, bias ? 3 : 2, bias ? "linear" : "linear (no bias)");
        release(c);
    }
}

/* linear_backward_set overwrites dx (a GEMM with beta = 0): into a dx full of NaN it gives
 * the bytes linear_backward gives into a zeroed dx, and the same parameter gradients */
static void test_linear_backward_set(void **state)
{
    lctx *c = *state;
    d2_error err;
    const int B = 37, in = 70, out = 45; /* large enough for the split GEMM on 2+ threads */
    paramset_init(&c->ps);
    assert_int_equal(linear_init(&c->lin, &c->ps, "fc", in, out, 1, 1.0f, &err), 0);
    assert_int_equal(paramset_alloc(&c->ps, c->be, 3, &err), 0);
    float *x = rand_buf(c, (size_t)B * in, -1, 1), *dy = rand_buf(c, (size_t)B * out, -1, 1);
    float *dx0 = zero_buf(c, (size_t)B * in), *dx1 = zero_buf(c, (size_t)B * in);
    float *g0 = malloc(c->ps.total * sizeof(float)), *g1 = malloc(c->ps.total * sizeof(float));
    float *h0 = malloc((size_t)B * in * sizeof(float)), *h1 = malloc((size_t)B * in * sizeof(float));
    assert_true(g0 && g1 && h0 && h1);
    c->be->ops->fill(c->be, dx1, NAN, (size_t)B * in);
    paramset_zero_grad(&c->ps);
    linear_backward(c->be, &c->lin, &c->ps, dx0, dy, x, B);
    assert_int_equal(c->be->ops->to_host(c->be, g0, c->ps.g, c->ps.total * sizeof(float)), 0);
    paramset_zero_grad(&c->ps);
    linear_backward_set(c->be, &c->lin, &c->ps, dx1, dy, x, B);
    assert_int_equal(c->be->ops->to_host(c->be, g1, c->ps.g, c->ps.total * sizeof(float)), 0);
    assert_int_equal(c->be->ops->to_host(c->be, h0, dx0, (size_t)B * in * sizeof(float)), 0);
    assert_int_equal(c->be->ops->to_host(c->be, h1, dx1, (size_t)B * in * sizeof(float)), 0);
    assert_memory_equal(h0, h1, (size_t)B * in * sizeof(float));
    assert_memory_equal(g0, g1, c->ps.total * sizeof(float));
    for (int i = 0; i < B * in; i++)
        assert_true(isfinite(h1[i]));
    free(g0);
    free(g1);
    free(h0);
    free(h1);
    c->be->ops->free(c->be, x);
    c->be->ops->free(c->be, dy);
    c->be->ops->free(c->be, dx0);
    c->be->ops->free(c->be, dx1);
    paramset_free(&c->ps);
}

static void test_layernorm(void **state)
{
    lctx *c = *state;
    for (int affine = 0; affine < 2; affine++) {
        d2_error err;
        c->kind = L_LAYERNORM;
        c->B = rnd_int(c, 1, 6);
        c->N = 1;
        c->C = rnd_int(c, 2, 24);
        paramset_init(&c->ps);
        assert_int_equal(layernorm_init(&c->ln, &c->ps, "ln", c->C, affine, &err), 0);
        assert_int_equal(paramset_alloc(&c->ps, c->be, 1, &err), 0);
        if (affine) { /* random affine parameters instead of ones/zeros */
            c->be->ops->rand_normal(c->be, c->ps.w + c->ln.g, (size_t)c->C, 6, 0, 1.0f, 0.5f);
            c->be->ops->rand_normal(c->be, c->ps.w + c->ln.b, (size_t)c->C, 7, 0, 0.0f, 1.0f);
        }
        size_t n = n_x(c);
        c->x = rand_buf(c, n, -2, 3);
        c->dx = zero_buf(c, n);
        c->mean = zero_buf(c, (size_t)c->B);
        c->rstd = zero_buf(c, (size_t)c->B);
        gc_target t[3] = {
            {"x", c->x, c->dx, n},
            {"ln.weight", c->ps.w + c->ln.g, c->ps.g + c->ln.g, (size_t)c->C},
            {"ln.bias", c->ps.w + c->ln.b, c->ps.g + c->ln.b, (size_t)c->C},
        };
        run_check(c, n, t, affine ? 3 : 1, affine ? "layernorm (affine)" : "layernorm");
        release(c);
    }
}

static void test_activations(void **state)
{
    lctx *c = *state;
    static const char *names[] = {"identity", "relu", "silu", "gelu", "tanh", "gelu_erf"};
    for (int k = ACT_IDENTITY; k <= ACT_GELU_ERF; k++) {
        c->kind = L_ACT;
        c->act = (act_kind)k;
        c->B = rnd_int(c, 1, 5);
        c->N = 1;
        c->C = rnd_int(c, 3, 30);
        size_t n = n_x(c);
        c->x = rand_buf(c, n, -3, 3);
        c->dx = zero_buf(c, n);
        gc_target t[1] = {{"x", c->x, c->dx, n}};
        run_check(c, n, t, 1, names[k]);
        release(c);
    }
}

static void test_softmax(void **state)
{
    lctx *c = *state;
    const float scales[] = {1.0f, 0.5f, 2.5f};
    for (int s = 0; s < 3; s++) {
        c->kind = L_SOFTMAX;
        c->scale = scales[s];
        c->B = rnd_int(c, 1, 5);
        c->N = 1;
        c->C = rnd_int(c, 2, 17);
        size_t n = n_x(c);
        c->x = rand_buf(c, n, -2, 2);
        c->dx = zero_buf(c, n);
        gc_target t[1] = {{"x", c->x, c->dx, n}};
        run_check(c, n, t, 1, "softmax");
        release(c);
    }
}

static void test_modulate(void **state)
{
    lctx *c = *state;
    c->kind = L_MODULATE;
    c->B = rnd_int(c, 1, 4);
    c->N = rnd_int(c, 1, 4);
    c->C = rnd_int(c, 1, 11);
    c->ld = 2 * c->C + 3;
    size_t n = n_x(c), np = (size_t)c->B * c->ld;
    c->x = rand_buf(c, n, -2, 2);
    c->dx = zero_buf(c, n);
    c->p = rand_buf(c, np, -1, 1);
    c->dp = zero_buf(c, np);
    gc_target t[2] = {{"x", c->x, c->dx, n}, {"shift|scale", c->p, c->dp, np}};
    run_check(c, n, t, 2, "modulate");
    release(c);
}

static void test_gated_add(void **state)
{
    lctx *c = *state;
    c->kind = L_GATED_ADD;
    c->B = rnd_int(c, 1, 4);
    c->N = rnd_int(c, 1, 4);
    c->C = rnd_int(c, 1, 11);
    c->ld = c->C + 2;
    size_t n = n_x(c), np = (size_t)c->B * c->ld;
    c->x = rand_buf(c, n, -2, 2);
    c->dx = zero_buf(c, n);
    c->h = rand_buf(c, n, -2, 2);
    c->dh = zero_buf(c, n);
    c->p = rand_buf(c, np, -1, 1);
    c->dp = zero_buf(c, np);
    gc_target t[3] = {{"x", c->x, c->dx, n}, {"gate", c->p, c->dp, np}, {"h", c->h, c->dh, n}};
    run_check(c, n, t, 3, "gated_add");
    release(c);
}

static void test_permute_repeat(void **state)
{
    lctx *c = *state;
    c->kind = L_PERMUTE;
    c->B = rnd_int(c, 1, 3);
    c->N = rnd_int(c, 1, 4);
    c->C = rnd_int(c, 1, 4);
    c->D = rnd_int(c, 1, 5);
    size_t n = n_x(c) * c->D;
    c->x = rand_buf(c, n, -1, 1);
    c->dx = zero_buf(c, n);
    c->tmp = zero_buf(c, n);
    gc_target t[1] = {{"x", c->x, c->dx, n}};
    run_check(c, n, t, 1, "permute_0213");
    release(c);

    c->kind = L_REPEAT;
    c->B = rnd_int(c, 1, 4);
    c->N = rnd_int(c, 1, 4);
    c->C = rnd_int(c, 1, 9);
    size_t nin = (size_t)c->N * c->C;
    c->x = rand_buf(c, nin, -1, 1);
    c->dx = zero_buf(c, nin);
    gc_target t2[1] = {{"x", c->x, c->dx, nin}};
    {
        /* n_x() is B*N*C = the output size here; the input is N*C */
        gc_opts o = gc_default_opts();
        gc_report rep;
        int bad = gc_check(c->be, lfwd, lbwd, c, (size_t)c->B * nin, t2, 1, &o, &rep);
        print_message("  %-28s %4d checked, %2d kinks, max abs err %.2e\n", "repeat_rows",
                      rep.checked, rep.kinks, rep.max_abs_err);
        assert_int_equal(bad, 0);
        assert_true(rep.checked > 0);
    }
    release(c);
}

static void test_losses(void **state)
{
    lctx *c = *state;
    /* mse */
    c->kind = L_MSE;
    c->B = rnd_int(c, 1, 5);
    c->N = 1;
    c->C = rnd_int(c, 1, 20);
    size_t n = n_x(c);
    c->x = rand_buf(c, n, -1, 1);
    c->tgt = rand_buf(c, n, -1, 1);
    c->dx = zero_buf(c, n);
    c->tmp = zero_buf(c, n);
    c->tmp2 = zero_buf(c, 1);
    gc_target t[2] = {{"pred", c->x, c->dx, n}, {"", NULL, NULL, 0}};
    run_check(c, 1, t, 1, "mse");
    release(c);

    /* cross-entropy */
    c->kind = L_CROSS_ENTROPY;
    c->B = rnd_int(c, 1, 8);
    c->C = rnd_int(c, 2, 10);
    n = n_x(c);
    c->x = rand_buf(c, n, -3, 3);
    c->dx = zero_buf(c, n);
    c->tmp = zero_buf(c, n);
    c->tmp2 = zero_buf(c, 1);
    c->labels = c->be->ops->alloc(c->be, (size_t)c->B * sizeof(int32_t));
    assert_non_null(c->labels);
    int32_t lab[8];
    for (int r = 0; r < c->B; r++)
        lab[r] = (int32_t)rng_below(&c->r, (uint32_t)c->C);
    c->be->ops->to_device(c->be, c->labels, lab, (size_t)c->B * sizeof(int32_t));
    t[0] = (gc_target){"logits", c->x, c->dx, n};
    run_check(c, 1, t, 1, "cross_entropy");
    release(c);

    /* Gaussian KL */
    c->kind = L_KL;
    c->B = rnd_int(c, 1, 6);
    c->C = rnd_int(c, 1, 12);
    n = n_x(c);
    c->x = rand_buf(c, n, -1.5f, 1.5f);
    c->h = rand_buf(c, n, -2, 1);
    c->dx = zero_buf(c, n);
    c->dh = zero_buf(c, n);
    c->tmp2 = zero_buf(c, 1);
    t[0] = (gc_target){"mu", c->x, c->dx, n};
    t[1] = (gc_target){"logvar", c->h, c->dh, n};
    run_check(c, 1, t, 2, "kl_gauss");
    release(c);
}

/* the checker itself: a backward 5% off must be reported */
static void test_gradcheck_detects_errors(void **state)
{
    lctx *c = *state;
    c->kind = L_ACT;
    c->act = ACT_SILU;
    c->B = 3;
    c->N = 1;
    c->C = 8;
    size_t n = n_x(c);
    c->x = rand_buf(c, n, -3, 3);
    c->dx = zero_buf(c, n);
    c->wrong = 1;
    gc_target t[1] = {{"x", c->x, c->dx, n}};
    gc_report rep = run_check(c, n, t, 1, "silu (wrong on purpose)");
    assert_true(rep.failed >= (int)n / 2);
    release(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_backward_set),         cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_activations),    cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_modulate),       cmocka_unit_test(test_gated_add),
        cmocka_unit_test(test_permute_repeat), cmocka_unit_test(test_losses),
        cmocka_unit_test(test_gradcheck_detects_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
