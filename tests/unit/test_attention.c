/* test_attention.c - Set Transformer blocks: finite-difference gradient checks of MAB, SAB,
 * ISAB and PMA (inputs and every parameter tensor) with 1, 2 and 4 heads, LayerNorm on and
 * off, at random shapes; and MAB's output against a naive double-precision reference. */
#include "testutil.h"

#include <math.h>

#include "attention.h"
#include "gradcheck.h"

typedef enum akind { A_MAB, A_SAB, A_ISAB, A_PMA } akind;

typedef struct actx {
    backend_t *be;
    rng r;
    arena ar;
    paramset ps;
    akind kind;
    mab m;
    sab s;
    isab is;
    pma p;
    mab_cache mc;
    sab_cache sc;
    isab_cache ic;
    pma_cache pc;
    int B, Nx, Ny;
    float *X, *Y, *dX, *dY;
    size_t n_out;
} actx;

static int setup(void **state)
{
    actx *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    d2_error err;
    if (backend_cpu_create(&c->be, 1, &err) != 0 ||
        arena_init(&c->ar, c->be, 8u << 20, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    rng_init(&c->r, 31337, 0);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    actx *c = *state;
    arena_free(&c->ar);
    backend_destroy(c->be);
    free(c);
    return 0;
}

static int rnd_int(actx *c, int lo, int hi)
{
    return lo + (int)rng_below(&c->r, (uint32_t)(hi - lo + 1));
}

/* overwrite every parameter with random values (zero biases and unit gains would hide
 * mistakes that only show with general values) */
static void randomize_params(actx *c)
{
    for (int i = 0; i < c->ps.count; i++) {
        const param_entry *e = &c->ps.entries[i];
        float mean = e->init == INIT_ONES ? 1.0f : 0.0f;
        float std = e->init == INIT_ONES || e->init == INIT_ZEROS ? 0.3f : 0.5f;
        c->be->ops->rand_normal(c->be, c->ps.w + e->offset, e->numel, rng_u32(&c->r), 0, mean,
                                std);
    }
}

static int afwd(backend_t *be, void *user, float *out)
{
    actx *c = user;
    d2_error err;
    const float *res = NULL;
    int rc = 0;
    /* poison what earlier passes used: a buffer that must start at zero but is taken
     * without the fill would show up as NaN */
    be->ops->fill(be, (float *)c->ar.base, NAN, c->ar.peak / sizeof(float));
    arena_reset(&c->ar, 0);
    switch (c->kind) {
    case A_MAB:
        rc = mab_forward(be, &c->m, &c->ps, &c->ar, &c->mc, c->X, c->Nx, c->Y, c->Ny, c->B,
                         &err);
        res = c->mc.out;
        break;
    case A_SAB:
        rc = sab_forward(be, &c->s, &c->ps, &c->ar, &c->sc, c->X, c->Nx, c->B, &err);
        res = c->sc.out;
        break;
    case A_ISAB:
        rc = isab_forward(be, &c->is, &c->ps, &c->ar, &c->ic, c->X, c->Nx, c->B, &err);
        res = c->ic.out;
        break;
    case A_PMA:
        rc = pma_forward(be, &c->p, &c->ps, &c->ar, &c->pc, c->X, c->Nx, c->B, &err);
        res = c->pc.out;
        break;
    }
    if (rc) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return rc;
    }
    return be->ops->copy(be, out, res, c->n_out * sizeof(float));
}

static int abwd(backend_t *be, void *user, const float *dout)
{
    actx *c = user;
    d2_error err;
    int rc = 0;
    size_t used = arena_mark(&c->ar);
    switch (c->kind) {
    case A_MAB:
        rc = mab_backward(be, &c->m, &c->ps, &c->ar, &c->mc, c->dX, c->dY, dout, c->X, c->Y,
                          &err);
        break;
    case A_SAB:
        rc = sab_backward(be, &c->s, &c->ps, &c->ar, &c->sc, c->dX, dout, c->X, &err);
        break;
    case A_ISAB:
        rc = isab_backward(be, &c->is, &c->ps, &c->ar, &c->ic, c->dX, dout, c->X, &err);
        break;
    case A_PMA:
        rc = pma_backward(be, &c->p, &c->ps, &c->ar, &c->pc, c->dX, dout, c->X, &err);
        break;
    }
    if (rc) {
        fprintf(stderr, "backward: %s\n", err.msg);
        return rc;
    }
    /* backward gives its temporaries back */
    return arena_mark(&c->ar) == used ? 0 : -1;
}

/* smallest |f| over the ReLU inputs of a MAB's cache */
static float min_abs_relu_input(actx *c, const mab *m, const mab_cache *mc)
{
    size_t n = (size_t)mc->B * mc->Nx * m->d;
    float *f = malloc(n * sizeof(float)), lo = INFINITY;
    assert_non_null(f);
    c->be->ops->to_host(c->be, f, mc->f, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        lo = fminf(lo, fabsf(f[i]));
    free(f);
    return lo;
}

/* smallest |f| over every ReLU of the block after a forward pass */
static float block_min_relu_input(actx *c)
{
    float *out = backend_alloc_floats(c->be, c->n_out);
    assert_non_null(out);
    assert_int_equal(afwd(c->be, c, out), 0);
    c->be->ops->free(c->be, out);
    switch (c->kind) {
    case A_MAB: return min_abs_relu_input(c, &c->m, &c->mc);
    case A_SAB: return min_abs_relu_input(c, &c->s.m, &c->sc.c);
    case A_ISAB:
        return fminf(min_abs_relu_input(c, &c->is.m0, &c->ic.c0),
                     min_abs_relu_input(c, &c->is.m1, &c->ic.c1));
    case A_PMA: return min_abs_relu_input(c, &c->p.m, &c->pc.c);
    }
    return 0.0f;
}

/* allocate inputs, run the check over X (and Y) and every parameter tensor */
static void check_block(actx *c, int dxw, int dyw, const char *what)
{
    d2_error err;
    assert_int_equal(paramset_alloc(&c->ps, c->be, rng_u32(&c->r), &err), 0);
    randomize_params(c);
    size_t nx = (size_t)c->B * c->Nx * dxw, ny = (size_t)c->B * c->Ny * dyw;
    c->dX = backend_alloc_floats(c->be, nx);
    c->X = c->Y = c->dY = NULL;
    if (c->kind == A_MAB) {
        c->dY = backend_alloc_floats(c->be, ny);
        assert_non_null(c->dY);
    }
    assert_non_null(c->dX);
    /* Random inputs, redrawn while a ReLU input sits within 2e-3 of its kink: there the
     * difference quotient (not the gradient) is wrong at every step the checker tries. */
    int draws = 0;
    do {
        float *bufs[] = {c->X, c->Y};
        for (size_t i = 0; i < 2; i++)
            if (bufs[i])
                c->be->ops->free(c->be, bufs[i]);
        c->X = gc_dev_uniform(c->be, nx, -1, 1, rng_u32(&c->r));
        assert_non_null(c->X);
        if (c->kind == A_MAB) {
            c->Y = gc_dev_uniform(c->be, ny, -1, 1, rng_u32(&c->r));
            assert_non_null(c->Y);
        }
        assert_true(++draws < 200);
    } while (block_min_relu_input(c) < 2e-3f);

    int nt = 0;
    gc_target *t = calloc((size_t)c->ps.count + 2, sizeof *t);
    assert_non_null(t);
    t[nt++] = (gc_target){"X", c->X, c->dX, nx};
    if (c->Y)
        t[nt++] = (gc_target){"Y", c->Y, c->dY, ny};
    for (int i = 0; i < c->ps.count; i++) {
        const param_entry *e = &c->ps.entries[i];
        t[nt++] = (gc_target){e->name, c->ps.w + e->offset, c->ps.g + e->offset, e->numel};
    }
    /* one forward + backward first, so that the checker's own passes find the arena
     * poisoned (afwd) everywhere backward takes memory too */
    {
        float *out = backend_alloc_floats(c->be, c->n_out);
        float *dout = gc_dev_uniform(c->be, c->n_out, -1, 1, 5);
        assert_non_null(out);
        assert_non_null(dout);
        assert_int_equal(afwd(c->be, c, out), 0);
        assert_int_equal(abwd(c->be, c, dout), 0);
        c->be->ops->free(c->be, out);
        c->be->ops->free(c->be, dout);
    }
    gc_opts o = gc_default_opts();
    o.seed = rng_u32(&c->r);
    o.max_checks = 24;
    o.eps = 3e-3;
    o.rtol = 1e-2;
    gc_report rep;
    int bad = gc_check(c->be, afwd, abwd, c, c->n_out, t, nt, &o, &rep);
    print_message("  %-34s %4d checked, %3d kinks, max abs err %.2e  worst %s\n", what,
                  rep.checked, rep.kinks, rep.max_abs_err, rep.worst);
    assert_int_equal(bad, 0);
    int expect = 0;
    for (int i = 0; i < nt; i++)
        expect += t[i].n < (size_t)o.max_checks ? (int)t[i].n : o.max_checks;
    assert_int_equal(rep.checked, expect);
    assert_true(rep.kinks * 10 <= rep.checked);

    free(t);
    float *bufs[] = {c->X, c->Y, c->dX, c->dY};
    for (size_t i = 0; i < 4; i++)
        if (bufs[i])
            c->be->ops->free(c->be, bufs[i]);
    paramset_free(&c->ps);
}

static void test_mab_grad(void **state)
{
    actx *c = *state;
    const int heads[] = {1, 2, 4};
    for (int h = 0; h < 3; h++) {
        for (int ln = 0; ln < 2; ln++) {
            d2_error err;
            c->kind = A_MAB;
            c->B = rnd_int(c, 1, 3);
            c->Nx = rnd_int(c, 1, 4);
            c->Ny = rnd_int(c, 2, 5);
            int dx = rnd_int(c, 2, 6), dy = rnd_int(c, 2, 7);
            int d = heads[h] * rnd_int(c, heads[h] == 1 ? 3 : 2, heads[h] == 1 ? 6 : 3);
            paramset_init(&c->ps);
            assert_int_equal(mab_init(&c->m, &c->ps, "mab", dx, dy, d, heads[h], ln, &err), 0);
            c->n_out = (size_t)c->B * c->Nx * d;
            char what[96];
            snprintf(what, sizeof what, "MAB B%d Nx%d Ny%d dx%d dy%d d%d h%d ln%d", c->B, c->Nx,
                     c->Ny, dx, dy, d, heads[h], ln);
            check_block(c, dx, dy, what);
        }
    }
}

static void test_sab_grad(void **state)
{
    actx *c = *state;
    const int heads[] = {1, 2, 4};
    for (int h = 0; h < 3; h++) {
        d2_error err;
        int ln = h != 1;
        c->kind = A_SAB;
        c->B = rnd_int(c, 1, 3);
        c->Nx = c->Ny = rnd_int(c, 2, 5);
        int din = rnd_int(c, 2, 6), d = heads[h] * rnd_int(c, heads[h] == 1 ? 3 : 2, 3);
        paramset_init(&c->ps);
        assert_int_equal(sab_init(&c->s, &c->ps, "sab", din, d, heads[h], ln, &err), 0);
        c->n_out = (size_t)c->B * c->Nx * d;
        char what[96];
        snprintf(what, sizeof what, "SAB B%d N%d din%d d%d h%d ln%d", c->B, c->Nx, din, d,
                 heads[h], ln);
        check_block(c, din, 0, what);
    }
}

static void test_isab_grad(void **state)
{
    actx *c = *state;
    const int heads[] = {1, 2, 4};
    for (int h = 0; h < 3; h++) {
        d2_error err;
        int ln = h != 0;
        c->kind = A_ISAB;
        c->B = rnd_int(c, 1, 2);
        c->Nx = c->Ny = rnd_int(c, 2, 5);
        int din = rnd_int(c, 2, 5), d = heads[h] * (heads[h] == 1 ? 4 : 2), m = rnd_int(c, 1, 3);
        paramset_init(&c->ps);
        assert_int_equal(isab_init(&c->is, &c->ps, "isab", din, d, heads[h], m, ln, &err), 0);
        assert_non_null(paramset_find(&c->ps, "isab.I"));
        assert_non_null(paramset_find(&c->ps, "isab.mab0.fc_q.weight"));
        assert_non_null(paramset_find(&c->ps, "isab.mab1.fc_o.bias"));
        c->n_out = (size_t)c->B * c->Nx * d;
        char what[96];
        snprintf(what, sizeof what, "ISAB B%d N%d din%d d%d m%d h%d ln%d", c->B, c->Nx, din, d,
                 m, heads[h], ln);
        check_block(c, din, 0, what);
    }
}

static void test_pma_grad(void **state)
{
    actx *c = *state;
    const int heads[] = {1, 2, 4};
    for (int h = 0; h < 3; h++) {
        d2_error err;
        int ln = h != 2;
        c->kind = A_PMA;
        c->B = rnd_int(c, 1, 3);
        c->Nx = c->Ny = rnd_int(c, 1, 6);
        int din = rnd_int(c, 2, 6), d = heads[h] * (heads[h] == 1 ? 4 : 2), k = rnd_int(c, 1, 3);
        paramset_init(&c->ps);
        assert_int_equal(pma_init(&c->p, &c->ps, "pma", din, d, heads[h], k, ln, &err), 0);
        assert_non_null(paramset_find(&c->ps, "pma.S"));
        c->n_out = (size_t)c->B * k * d;
        char what[96];
        snprintf(what, sizeof what, "PMA B%d N%d din%d d%d k%d h%d ln%d", c->B, c->Nx, din, d, k,
                 heads[h], ln);
        check_block(c, din, 0, what);
    }
}

/* ---- naive reference ---- */

static double *host_param(actx *c, const char *name, size_t *n)
{
    const param_entry *e = paramset_find(&c->ps, name);
    assert_non_null(e);
    float *f = malloc(e->numel * sizeof(float));
    double *d = malloc(e->numel * sizeof(double));
    assert_non_null(f);
    assert_non_null(d);
    c->be->ops->to_host(c->be, f, c->ps.w + e->offset, e->numel * sizeof(float));
    for (size_t i = 0; i < e->numel; i++)
        d[i] = f[i];
    free(f);
    if (n)
        *n = e->numel;
    return d;
}

/* y[n, o] = x[n, i] W[o, i]^T + b[o] */
static void ref_linear(const double *x, const double *W, const double *b, double *y, int n,
                       int in, int out)
{
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++)
                s += x[(size_t)r * in + i] * W[(size_t)o * in + i];
            y[(size_t)r * out + o] = s;
        }
}

static void ref_layernorm(double *x, const double *g, const double *b, int n, int C)
{
    for (int r = 0; r < n; r++) {
        double *xr = x + (size_t)r * C, m = 0, v = 0;
        for (int i = 0; i < C; i++)
            m += xr[i];
        m /= C;
        for (int i = 0; i < C; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= C;
        for (int i = 0; i < C; i++)
            xr[i] = (xr[i] - m) / sqrt(v + 1e-5) * g[i] + b[i];
    }
}

static void test_mab_reference(void **state)
{
    actx *c = *state;
    d2_error err;
    const int B = 2, Nx = 3, Ny = 5, dx = 4, dy = 6, d = 8, H = 2, dh = d / H;
    paramset_init(&c->ps);
    assert_int_equal(mab_init(&c->m, &c->ps, "m", dx, dy, d, H, 1, &err), 0);
    assert_int_equal(paramset_alloc(&c->ps, c->be, 5, &err), 0);
    randomize_params(c);
    float *X = gc_dev_uniform(c->be, (size_t)B * Nx * dx, -1, 1, 1);
    float *Y = gc_dev_uniform(c->be, (size_t)B * Ny * dy, -1, 1, 2);
    assert_non_null(X);
    assert_non_null(Y);
    arena_reset(&c->ar, 0);
    assert_int_equal(mab_forward(c->be, &c->m, &c->ps, &c->ar, &c->mc, X, Nx, Y, Ny, B, &err),
                     0);
    float *got = malloc((size_t)B * Nx * d * sizeof(float));
    c->be->ops->to_host(c->be, got, c->mc.out, (size_t)B * Nx * d * sizeof(float));

    /* host copies in double */
    float *xf = malloc((size_t)B * Nx * dx * sizeof(float));
    float *yf = malloc((size_t)B * Ny * dy * sizeof(float));
    c->be->ops->to_host(c->be, xf, X, (size_t)B * Nx * dx * sizeof(float));
    c->be->ops->to_host(c->be, yf, Y, (size_t)B * Ny * dy * sizeof(float));
    double *x = malloc((size_t)B * Nx * dx * sizeof(double));
    double *y = malloc((size_t)B * Ny * dy * sizeof(double));
    for (int i = 0; i < B * Nx * dx; i++)
        x[i] = xf[i];
    for (int i = 0; i < B * Ny * dy; i++)
        y[i] = yf[i];
    double *Wq = host_param(c, "m.fc_q.weight", NULL), *bq = host_param(c, "m.fc_q.bias", NULL);
    double *Wk = host_param(c, "m.fc_k.weight", NULL), *bk = host_param(c, "m.fc_k.bias", NULL);
    double *Wv = host_param(c, "m.fc_v.weight", NULL), *bv = host_param(c, "m.fc_v.bias", NULL);
    double *Wo = host_param(c, "m.fc_o.weight", NULL), *bo = host_param(c, "m.fc_o.bias", NULL);
    double *g0 = host_param(c, "m.ln0.weight", NULL), *b0 = host_param(c, "m.ln0.bias", NULL);
    double *g1 = host_param(c, "m.ln1.weight", NULL), *b1 = host_param(c, "m.ln1.bias", NULL);
    double Q[2 * 3 * 8], K[2 * 5 * 8], V[2 * 5 * 8], O[2 * 3 * 8], F[2 * 3 * 8];
    ref_linear(x, Wq, bq, Q, B * Nx, dx, d);
    ref_linear(y, Wk, bk, K, B * Ny, dy, d);
    ref_linear(y, Wv, bv, V, B * Ny, dy, d);
    /* per batch and head: A = softmax(Q_h K_h^T / sqrt(dh)), O = Q + A V_h */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Nx; i++) {
                double s[5], mx = -INFINITY, z = 0;
                for (int j = 0; j < Ny; j++) {
                    double dot = 0;
                    for (int e = 0; e < dh; e++)
                        dot += Q[(b * Nx + i) * d + h * dh + e] * K[(b * Ny + j) * d + h * dh + e];
                    s[j] = dot / sqrt((double)dh);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < Ny; j++)
                    z += (s[j] = exp(s[j] - mx));
                for (int e = 0; e < dh; e++) {
                    double acc = 0;
                    for (int j = 0; j < Ny; j++)
                        acc += s[j] / z * V[(b * Ny + j) * d + h * dh + e];
                    O[(b * Nx + i) * d + h * dh + e] = Q[(b * Nx + i) * d + h * dh + e] + acc;
                }
            }
    ref_layernorm(O, g0, b0, B * Nx, d);
    ref_linear(O, Wo, bo, F, B * Nx, d, d);
    for (int i = 0; i < B * Nx * d; i++)
        O[i] += F[i] > 0 ? F[i] : 0;
    ref_layernorm(O, g1, b1, B * Nx, d);
    for (int i = 0; i < B * Nx * d; i++)
        TU_ASSERT_NEAR(got[i], O[i], 1e-4 * (1 + fabs(O[i])));

    double *ps_[] = {Wq, bq, Wk, bk, Wv, bv, Wo, bo, g0, b0, g1, b1, x, y};
    for (size_t i = 0; i < sizeof ps_ / sizeof ps_[0]; i++)
        free(ps_[i]);
    free(xf);
    free(yf);
    free(got);
    c->be->ops->free(c->be, X);
    c->be->ops->free(c->be, Y);
    paramset_free(&c->ps);
}

/* an arena that is too small: D2_ENOMEM with a message, never a crash */
static void test_arena_too_small(void **state)
{
    actx *c = *state;
    d2_error err;
    arena small;
    assert_int_equal(arena_init(&small, c->be, 4096, &err), 0);
    paramset_init(&c->ps);
    assert_int_equal(isab_init(&c->is, &c->ps, "isab", 8, 16, 4, 4, 1, &err), 0);
    assert_int_equal(paramset_alloc(&c->ps, c->be, 1, &err), 0);
    float *X = gc_dev_uniform(c->be, 4 * 20 * 8, -1, 1, 3);
    assert_non_null(X);
    int rc = isab_forward(c->be, &c->is, &c->ps, &small, &c->ic, X, 20, 4, &err);
    assert_int_equal(rc, D2_ENOMEM);
    assert_non_null(strstr(err.msg, "arena too small"));
    assert_true(small.peak > small.cap);
    /* a big enough arena works, and backward into it leaves it where forward left it */
    arena big;
    assert_int_equal(arena_init(&big, c->be, small.peak * 4 + (1u << 20), &err), 0);
    assert_int_equal(isab_forward(c->be, &c->is, &c->ps, &big, &c->ic, X, 20, 4, &err), 0);
    float *dX = backend_alloc_floats(c->be, 4 * 20 * 8);
    float *dout = gc_dev_uniform(c->be, 4 * 20 * 16, -1, 1, 4);
    size_t used = arena_mark(&big);
    assert_int_equal(isab_backward(c->be, &c->is, &c->ps, &big, &c->ic, dX, dout, X, &err), 0);
    assert_int_equal(arena_mark(&big), used);
    arena_free(&small);
    arena_free(&big);
    c->be->ops->free(c->be, X);
    c->be->ops->free(c->be, dX);
    c->be->ops->free(c->be, dout);
    paramset_free(&c->ps);
    /* sizes that cannot work are refused at init */
    paramset_init(&c->ps);
    assert_int_equal(mab_init(&c->m, &c->ps, "bad", 4, 4, 6, 4, 0, &err), D2_EINVAL);
    paramset_free(&c->ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mab_reference), cmocka_unit_test(test_mab_grad),
        cmocka_unit_test(test_sab_grad),      cmocka_unit_test(test_isab_grad),
        cmocka_unit_test(test_pma_grad),      cmocka_unit_test(test_arena_too_small),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
