/* test_conv.c - the convolution ops of the CPU backend (im2col/col2im + GEMM, 2x2 max pool,
 * batch norm in train and eval mode with running statistics, global average pool): forward
 * against naive double-precision references written from PyTorch's definitions, and every
 * backward by finite differences (gradcheck.h). */
#include "testutil.h"

#include <math.h>

#include "gradcheck.h"

typedef enum { OP_CONV, OP_MAXPOOL, OP_BN_TRAIN, OP_BN_EVAL, OP_AVGPOOL } op_kind;

typedef struct ctx {
    backend_t *be;
    op_kind kind;
    conv_geom g;
    int OC;
    float *x, *dx, *w, *dw, *y, *col, *tmp, *dcol;
    float *bg, *bb, *dbg, *dbb, *mean, *rstd, *rm, *rv;
    size_t nx, ny;
} ctx;

static float *h_get(backend_t *be, const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    assert_non_null(h);
    assert_int_equal(be->ops->to_host(be, h, d, n * sizeof(float)), 0);
    return h;
}

static void ctx_init(ctx *t, op_kind kind, int B, int C, int H, int W, int K, int stride,
                     int pad, int OC)
{
    d2_error err = {0};
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->OC = OC;
    assert_int_equal(backend_cpu_create(&t->be, 2, &err), 0);
    assert_int_equal(conv_geom_make(&t->g, B, C, H, W, K, stride, pad, &err), 0);
    backend_t *be = t->be;
    t->nx = (size_t)B * C * H * W;
    size_t ckk = (size_t)C * K * K, n = (size_t)B * t->g.OH * t->g.OW;
    t->x = gc_dev_uniform(be, t->nx, -1.0f, 1.0f, 11);
    t->dx = backend_alloc_floats(be, t->nx);
    t->w = gc_dev_uniform(be, (size_t)OC * ckk, -0.5f, 0.5f, 12);
    t->dw = backend_alloc_floats(be, (size_t)OC * ckk);
    t->col = backend_alloc_floats(be, ckk * n);
    t->dcol = backend_alloc_floats(be, ckk * n);
    t->tmp = backend_alloc_floats(be, (size_t)OC * n);
    t->bg = gc_dev_uniform(be, (size_t)C, 0.5f, 1.5f, 13);
    t->bb = gc_dev_uniform(be, (size_t)C, -0.5f, 0.5f, 14);
    t->dbg = backend_alloc_floats(be, (size_t)C);
    t->dbb = backend_alloc_floats(be, (size_t)C);
    t->mean = backend_alloc_floats(be, (size_t)C);
    t->rstd = backend_alloc_floats(be, (size_t)C);
    t->rm = gc_dev_uniform(be, (size_t)C, -0.3f, 0.3f, 15);
    t->rv = gc_dev_uniform(be, (size_t)C, 0.5f, 2.0f, 16);
    t->y = backend_alloc_floats(be, t->nx > (size_t)OC * n ? t->nx : (size_t)OC * n);
    assert_true(t->x && t->dx && t->w && t->dw && t->col && t->dcol && t->tmp && t->bg &&
                t->bb && t->dbg && t->dbb && t->mean && t->rstd && t->rm && t->rv && t->y);
    if (kind == OP_CONV)
        t->ny = (size_t)OC * n;
    else if (kind == OP_MAXPOOL)
        t->ny = (size_t)B * C * (H / 2) * (W / 2);
    else if (kind == OP_AVGPOOL)
        t->ny = (size_t)B * C;
    else
        t->ny = t->nx;
}

static void ctx_free(ctx *t)
{
    float *all[] = {t->x, t->dx, t->w, t->dw, t->y, t->col, t->tmp, t->dcol, t->bg,
                    t->bb, t->dbg, t->dbb, t->mean, t->rstd, t->rm, t->rv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        t->be->ops->free(t->be, all[i]);
    backend_destroy(t->be);
}

static int fwd(backend_t *be, void *user, float *out)
{
    ctx *t = user;
    const conv_geom *g = &t->g;
    const backend_ops *o = be->ops;
    switch (t->kind) {
    case OP_CONV:
        conv2d_forward(be, t->y, t->col, t->tmp, t->x, t->w, t->OC, g);
        break;
    case OP_MAXPOOL:
        o->maxpool2_forward(be, t->y, t->x, g->B * g->C, g->H, g->W);
        break;
    case OP_BN_TRAIN: /* no running update: the checker calls forward many times */
    case OP_BN_EVAL:
        o->batchnorm_forward(be, t->y, t->mean, t->rstd, t->kind == OP_BN_EVAL ? t->rm : NULL,
                             t->kind == OP_BN_EVAL ? t->rv : NULL, t->x, t->bg, t->bb, g->B,
                             g->C, g->H * g->W, t->kind == OP_BN_TRAIN, 0.1f);
        break;
    case OP_AVGPOOL:
        o->avgpool_forward(be, t->y, t->x, g->B * g->C, g->H * g->W);
        break;
    }
    return o->copy(be, out, t->y, t->ny * sizeof(float));
}

static int bwd(backend_t *be, void *user, const float *dout)
{
    ctx *t = user;
    const conv_geom *g = &t->g;
    const backend_ops *o = be->ops;
    switch (t->kind) {
    case OP_CONV:
        conv2d_backward(be, t->dx, t->dw, t->tmp, t->dcol, dout, t->col, t->w, t->OC, g);
        break;
    case OP_MAXPOOL:
        o->maxpool2_backward(be, t->dx, dout, t->x, g->B * g->C, g->H, g->W);
        break;
    case OP_BN_TRAIN:
    case OP_BN_EVAL:
        o->batchnorm_backward(be, t->dx, t->dbg, t->dbb, dout, t->x, t->bg, t->mean, t->rstd,
                              g->B, g->C, g->H * g->W, t->kind == OP_BN_TRAIN);
        break;
    case OP_AVGPOOL:
        o->avgpool_backward(be, t->dx, dout, g->B * g->C, g->H * g->W);
        break;
    }
    return 0;
}

static void check_grads(ctx *t, int with_params)
{
    gc_target tg[3] = {{"x", t->x, t->dx, t->nx}};
    int nt = 1;
    if (t->kind == OP_CONV && with_params)
        tg[nt++] = (gc_target){"w", t->w, t->dw, (size_t)t->OC * t->g.C * t->g.KH * t->g.KW};
    if ((t->kind == OP_BN_TRAIN || t->kind == OP_BN_EVAL) && with_params) {
        tg[nt++] = (gc_target){"gamma", t->bg, t->dbg, (size_t)t->g.C};
        tg[nt++] = (gc_target){"beta", t->bb, t->dbb, (size_t)t->g.C};
    }
    gc_opts o = gc_default_opts();
    o.max_checks = 64;
    gc_report rep;
    int bad = gc_check(t->be, fwd, bwd, t, t->ny, tg, nt, &o, &rep);
    printf("  gradcheck kind %d: %d checked, %d failed, %d kinks, max abs err %.2e\n",
           (int)t->kind, rep.checked, rep.failed, rep.kinks, rep.max_abs_err);
    assert_int_equal(bad, 0);
    assert_true(rep.kinks <= rep.checked / 10);
}

/* y[b, oc, oh, ow] = sum_{c,i,j} w[oc, c, i, j] x[b, c, oh*s - p + i, ow*s - p + j] */
static void test_conv_reference(void **state)
{
    (void)state;
    const int cases[][8] = {/* B, C, H, W, K, stride, pad, OC */
                            {2, 3, 7, 6, 3, 1, 1, 4}, {3, 2, 9, 9, 3, 2, 1, 5},
                            {1, 4, 5, 5, 1, 1, 0, 3}, {2, 1, 8, 7, 5, 2, 2, 2},
                            {2, 2, 4, 4, 3, 1, 0, 3}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *c = cases[k];
        ctx t;
        ctx_init(&t, OP_CONV, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
        assert_int_equal(fwd(t.be, &t, t.y), 0);
        const conv_geom *g = &t.g;
        float *x = h_get(t.be, t.x, t.nx), *y = h_get(t.be, t.y, t.ny);
        float *w = h_get(t.be, t.w, (size_t)t.OC * g->C * g->KH * g->KW);
        double worst = 0.0;
        for (int b = 0; b < g->B; b++)
            for (int oc = 0; oc < t.OC; oc++)
                for (int oh = 0; oh < g->OH; oh++)
                    for (int ow = 0; ow < g->OW; ow++) {
                        double s = 0.0;
                        for (int ci = 0; ci < g->C; ci++)
                            for (int i = 0; i < g->KH; i++)
                                for (int j = 0; j < g->KW; j++) {
                                    int ih = oh * g->stride - g->pad + i;
                                    int iw = ow * g->stride - g->pad + j;
                                    if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                        continue;
                                    s += (double)w[((oc * g->C + ci) * g->KH + i) * g->KW + j] *
                                         x[((b * g->C + ci) * g->H + ih) * g->W + iw];
                                }
                        size_t yi = ((size_t)(b * t.OC + oc) * g->OH + oh) * g->OW + ow;
                        worst = fmax(worst, fabs(s - y[yi]));
                    }
        assert_true(worst < 1e-5);
        free(x);
        free(y);
        free(w);
        ctx_free(&t);
    }
}

static void test_conv_geom_errors(void **state)
{
    (void)state;
    conv_geom g;
    d2_error err = {0};
    assert_int_equal(conv_geom_make(&g, 1, 1, 2, 2, 5, 1, 1, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "larger than the padded input"));
    assert_int_equal(conv_geom_make(&g, 1, 1, 4, 4, 3, 0, 1, &err), D2_EINVAL);
    assert_int_equal(conv_geom_make(&g, 2, 3, 28, 28, 3, 1, 1, &err), 0);
    assert_int_equal(g.OH, 28);
    assert_int_equal(conv_geom_make(&g, 2, 3, 28, 27, 3, 2, 1, &err), 0);
    assert_int_equal(g.OH, 14);
    assert_int_equal(g.OW, 14);
}

static void test_maxpool_reference(void **state)
{
    (void)state;
    ctx t;
    ctx_init(&t, OP_MAXPOOL, 2, 3, 7, 5, 1, 1, 0, 1); /* odd sizes: the last row/col dropped */
    assert_int_equal(fwd(t.be, &t, t.y), 0);
    float *x = h_get(t.be, t.x, t.nx), *y = h_get(t.be, t.y, t.ny);
    const int H = 7, W = 5, OH = 3, OW = 2;
    for (int pl = 0; pl < 6; pl++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *p = x + pl * H * W;
                float m = fmaxf(fmaxf(p[2 * oh * W + 2 * ow], p[2 * oh * W + 2 * ow + 1]),
                                fmaxf(p[(2 * oh + 1) * W + 2 * ow], p[(2 * oh + 1) * W + 2 * ow + 1]));
                assert_true(y[(pl * OH + oh) * OW + ow] == m);
            }
    /* backward routes dy to the maximum only: the sum of dx equals the sum of dy */
    float *ones = malloc(t.ny * sizeof(float));
    assert_non_null(ones);
    for (size_t i = 0; i < t.ny; i++)
        ones[i] = 1.0f;
    float *dy = backend_alloc_floats(t.be, t.ny);
    assert_int_equal(t.be->ops->to_device(t.be, dy, ones, t.ny * sizeof(float)), 0);
    assert_int_equal(bwd(t.be, &t, dy), 0);
    float *dx = h_get(t.be, t.dx, t.nx);
    double s = 0.0;
    for (size_t i = 0; i < t.nx; i++) {
        s += dx[i];
        assert_true(dx[i] == 0.0f || dx[i] == 1.0f);
    }
    assert_true(s == (double)t.ny);
    t.be->ops->free(t.be, dy);
    free(ones);
    free(x);
    free(y);
    free(dx);
    ctx_free(&t);
}

static void test_batchnorm_reference(void **state)
{
    (void)state;
    ctx t;
    const int B = 3, C = 4, HW = 5 * 3;
    ctx_init(&t, OP_BN_TRAIN, B, C, 5, 3, 1, 1, 0, 1);
    float *x = h_get(t.be, t.x, t.nx), *rm0 = h_get(t.be, t.rm, C), *rv0 = h_get(t.be, t.rv, C);
    float *gm = h_get(t.be, t.bg, C), *bt = h_get(t.be, t.bb, C);
    t.be->ops->batchnorm_forward(t.be, t.y, t.mean, t.rstd, t.rm, t.rv, t.x, t.bg, t.bb, B, C,
                                 HW, 1, 0.1f);
    float *y = h_get(t.be, t.y, t.nx), *rm = h_get(t.be, t.rm, C), *rv = h_get(t.be, t.rv, C);
    for (int c = 0; c < C; c++) {
        double s = 0.0, q = 0.0, n = (double)B * HW;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++)
                s += x[(b * C + c) * HW + i];
        double m = s / n;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++)
                q += pow(x[(b * C + c) * HW + i] - m, 2);
        double var = q / n;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                size_t k = (size_t)(b * C + c) * HW + i;
                double ref = (x[k] - m) / sqrt(var + 1e-5) * gm[c] + bt[c];
                assert_true(fabs(ref - y[k]) < 1e-5);
            }
        assert_true(fabs(rm[c] - (0.9 * rm0[c] + 0.1 * m)) < 1e-6);
        assert_true(fabs(rv[c] - (0.9 * rv0[c] + 0.1 * var * n / (n - 1))) < 1e-6);
    }
    /* eval mode normalises with the running statistics */
    t.be->ops->batchnorm_forward(t.be, t.y, t.mean, t.rstd, t.rm, t.rv, t.x, t.bg, t.bb, B, C,
                                 HW, 0, 0.1f);
    float *ye = h_get(t.be, t.y, t.nx);
    for (size_t k = 0; k < t.nx; k++) {
        int c = (int)(k / HW % C);
        double ref = (x[k] - rm[c]) / sqrt(rv[c] + 1e-5) * gm[c] + bt[c];
        assert_true(fabs(ref - ye[k]) < 1e-5);
    }
    float *bufs[] = {x, rm0, rv0, gm, bt, y, rm, rv, ye};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    ctx_free(&t);
}

static void test_avgpool_reference(void **state)
{
    (void)state;
    ctx t;
    ctx_init(&t, OP_AVGPOOL, 2, 3, 3, 4, 1, 1, 0, 1);
    assert_int_equal(fwd(t.be, &t, t.y), 0);
    float *x = h_get(t.be, t.x, t.nx), *y = h_get(t.be, t.y, t.ny);
    for (int r = 0; r < 6; r++) {
        double s = 0.0;
        for (int i = 0; i < 12; i++)
            s += x[r * 12 + i];
        assert_true(fabs(s / 12.0 - y[r]) < 1e-6);
    }
    free(x);
    free(y);
    ctx_free(&t);
}

static void test_conv_grad(void **state)
{
    (void)state;
    const int cases[][8] = {{2, 3, 6, 5, 3, 1, 1, 4}, {2, 2, 7, 7, 3, 2, 1, 3},
                            {1, 2, 5, 6, 5, 2, 2, 2}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *c = cases[k];
        ctx t;
        ctx_init(&t, OP_CONV, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
        check_grads(&t, 1);
        ctx_free(&t);
    }
}

static void test_pool_grad(void **state)
{
    (void)state;
    ctx t;
    ctx_init(&t, OP_MAXPOOL, 2, 3, 6, 7, 1, 1, 0, 1);
    check_grads(&t, 0);
    ctx_free(&t);
    ctx_init(&t, OP_AVGPOOL, 2, 3, 3, 3, 1, 1, 0, 1);
    check_grads(&t, 0);
    ctx_free(&t);
}

static void test_batchnorm_grad(void **state)
{
    (void)state;
    ctx t;
    ctx_init(&t, OP_BN_TRAIN, 4, 3, 3, 2, 1, 1, 0, 1);
    check_grads(&t, 1);
    ctx_free(&t);
    ctx_init(&t, OP_BN_EVAL, 4, 3, 3, 2, 1, 1, 0, 1);
    check_grads(&t, 1);
    ctx_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_reference),   cmocka_unit_test(test_conv_geom_errors),
        cmocka_unit_test(test_maxpool_reference), cmocka_unit_test(test_batchnorm_reference),
        cmocka_unit_test(test_avgpool_reference), cmocka_unit_test(test_conv_grad),
        cmocka_unit_test(test_pool_grad),         cmocka_unit_test(test_batchnorm_grad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
