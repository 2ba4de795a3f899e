/* test_train_query.c - stage 2's query-loss term (gen_train_query.c):
 * its gradient with respect to the denoiser's eps prediction against central
 * finite differences of its value, through the x0 formula, the weight VAE's
 * decoder and the head's cross-entropy; rows of a dropped condition get none;
 * the row weight w = min(1, sa / sb) caps the noisy rows; the VAE's own
 * gradients stay zero (it is frozen in stage 2). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gen_model.h"
#include "gen_train_internal.h"
#include "rng.h"

enum { F = 6, W = 4, B = 3, M = 2, Q = 2, R = M * B };

typedef struct fix {
    backend_t *be;
    generator g;
    arena ar;
    gtrain_queries q;
    int ts[M * B], ways[B];
    unsigned char drop[B];
    float *zt, *eps; /* host [R, L] */
    float *eps_dev, *deps_dev;
    int L;
} fix;

static void fill_normal(rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * rng_normal(r);
}

static void make_generator(fix *f, rng *r)
{
    d2_error err;
    gen_config cfg = gen_config_defaults(W * (F + 1), F, F, W, "linear 6->4");
    cfg.vae_hidden = 16;
    cfg.vae_blocks = 1;
    cfg.tok_latent = 3;
    cfg.enc_d = 8;
    cfg.enc_heads = 2;
    cfg.enc_inducing = 2;
    cfg.cond_dim = 8;
    cfg.den_hidden = 16;
    cfg.den_blocks = 1;
    cfg.min_way = 2;
    assert_int_equal(gen_model_init(&f->g, &cfg, f->be, 5, &err), 0);
    f->L = f->g.cfg.latent;
    /* statistics away from 0 / 1 so every factor of the chain shows */
    for (int i = 0; i < f->g.cfg.P; i++) {
        f->g.w_mean[i] = 0.3f * rng_normal(r);
        f->g.w_std[i] = 0.5f + rng_uniform(r);
    }
    for (int j = 0; j < f->L; j++) {
        f->g.z_mean[j] = 0.2f * rng_normal(r);
        f->g.z_std[j] = 0.5f + rng_uniform(r);
    }
}

static void make_queries(fix *f, rng *r)
{
    f->q.Q = Q;
    f->q.per_task = W * Q;
    f->q.x = malloc(sizeof(float) * B * W * Q * F);
    f->q.y = malloc(sizeof(int) * B * W * Q);
    f->q.n = calloc(B, sizeof(int));
    assert_non_null(f->q.x);
    assert_non_null(f->q.y);
    assert_non_null(f->q.n);
    const int ways[B] = {4, 3, 2};
    for (int b = 0; b < B; b++) {
        f->ways[b] = ways[b];
        f->drop[b] = b == 2; /* the last task's condition is dropped */
        for (int c = 0; c < ways[b]; c++)
            for (int k = 0; k < Q; k++) {
                const int row = b * f->q.per_task + f->q.n[b]++;
                f->q.y[row] = c;
                fill_normal(r, f->q.x + (size_t)row * F, F, 1.0f);
            }
    }
    /* rows m B + b: low noise (w = 1) for m = 0, high noise (w = sa / sb < 1) for m = 1 */
    for (int b = 0; b < B; b++) {
        f->ts[b] = 50 + 40 * b;
        f->ts[B + b] = 700 + 50 * b;
    }
}

static int setup(void **state)
{
    fix *f = calloc(1, sizeof *f);
    d2_error err;
    rng r;
    rng_init(&r, 77, 0);
    if (!f || backend_cpu_create(&f->be, 1, &err))
        return -1;
    make_generator(f, &r);
    make_queries(f, &r);
    if (arena_init(&f->ar, f->be, 16 << 20, &err))
        return -1;
    f->zt = malloc(sizeof(float) * R * f->L);
    f->eps = malloc(sizeof(float) * R * f->L);
    f->eps_dev = backend_alloc_floats(f->be, (size_t)R * f->L);
    f->deps_dev = backend_alloc_floats(f->be, (size_t)R * f->L);
    if (!f->zt || !f->eps || !f->eps_dev || !f->deps_dev)
        return -1;
    fill_normal(&r, f->zt, (size_t)R * f->L, 1.0f);
    fill_normal(&r, f->eps, (size_t)R * f->L, 1.0f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    gtrain_queries_free(&f->q);
    f->be->ops->free(f->be, f->eps_dev);
    f->be->ops->free(f->be, f->deps_dev);
    arena_free(&f->ar);
    gen_model_free(&f->g);
    backend_destroy(f->be);
    free(f->zt);
    free(f->eps);
    free(f);
    return 0;
}

/* The term's value at eps (host), and with grad != NULL its gradient. */
static double term(fix *f, const float *eps, float *grad)
{
    d2_error err;
    const gtrain_qctx cx = {.g = &f->g, .be = f->be, .ar = &f->ar, .lambda = 1.5f};
    const gtrain_qrows rows = {.b0 = 0, .bn = B, .B = B, .M = M, .ts = f->ts, .drop = f->drop,
                               .ways = f->ways, .zt = f->zt};
    const size_t n = (size_t)R * f->L;
    assert_int_equal(f->be->ops->to_device(f->be, f->eps_dev, eps, n * sizeof(float)), 0);
    f->be->ops->fill(f->be, f->deps_dev, 0.0f, n);
    double obj = NAN;
    float qloss = NAN;
    size_t mark = arena_mark(&f->ar);
    assert_int_equal(gtrain_query_term(&cx, &f->q, &rows, f->eps_dev, grad ? f->deps_dev : NULL,
                                       &qloss, &obj, &err), 0);
    arena_reset(&f->ar, mark);
    assert_true(isfinite(qloss) && qloss > 0.0f);
    if (grad)
        assert_int_equal(f->be->ops->to_host(f->be, grad, f->deps_dev, n * sizeof(float)), 0);
    return obj;
}

static void test_gradient_matches_differences(void **state)
{
    fix *f = *state;
    const size_t n = (size_t)R * f->L;
    float *grad = malloc(n * sizeof(float)), *e = malloc(n * sizeof(float));
    assert_non_null(grad);
    assert_non_null(e);
    const double base = term(f, f->eps, grad);
    assert_true(base > 0.0);
    int checked = 0;
    double worst = 0;
    for (size_t k = 0; k < n; k++) {
        const int row = (int)(k / (size_t)f->L), b = row % B;
        if (f->drop[b])
            continue;
        const float h = 1e-2f;
        memcpy(e, f->eps, n * sizeof(float));
        e[k] += h;
        const double up = term(f, e, NULL);
        e[k] -= 2 * h;
        const double down = term(f, e, NULL);
        const double fd = (up - down) / (2.0 * h);
        const double rel = fabs(fd - grad[k]) / (fabs(fd) + fabs(grad[k]) + 1e-3);
        worst = rel > worst ? rel : worst;
        checked++;
    }
    print_message("query term: %d partials, worst relative difference %.2e\n", checked, worst);
    assert_int_equal(checked, M * (B - 1) * f->L);
    assert_true(worst < 2e-2);
    free(grad);
    free(e);
}

static void test_dropped_rows_and_frozen_vae(void **state)
{
    fix *f = *state;
    const size_t n = (size_t)R * f->L;
    float *grad = malloc(n * sizeof(float));
    assert_non_null(grad);
    paramset_zero_grad(&f->g.vae_ps);
    term(f, f->eps, grad);
    double live = 0;
    for (size_t k = 0; k < n; k++) {
        const int b = (int)(k / (size_t)f->L) % B;
        if (f->drop[b])
            assert_true(grad[k] == 0.0f);
        else
            live += fabs(grad[k]);
    }
    assert_true(live > 1e-3);
    /* the VAE's gradients are left zero */
    float *vg = malloc(f->g.vae_ps.total * sizeof(float));
    assert_non_null(vg);
    assert_int_equal(f->be->ops->to_host(f->be, vg, f->g.vae_ps.g, f->g.vae_ps.total * sizeof(float)), 0);
    for (size_t i = 0; i < f->g.vae_ps.total; i++)
        assert_true(vg[i] == 0.0f);
    free(vg);
    free(grad);
}

/* Row weights: task 0's high-noise row is set up (t = 990, where
 * d x0 / d eps_hat = -sb / sa is about -150) to predict the same x0 as its
 * low-noise row, so both decode to one head with one cross-entropy. The
 * chain rule alone would make the noisy row's gradient (sb2 / sa2) / (sb1 /
 * sa1) times the other's; the weight w = sa2 / sb2 makes it sa1 / sb1 times,
 * element by element. */
static void test_noisy_rows_capped(void **state)
{
    fix *f = *state;
    const int L = f->L;
    const size_t n = (size_t)R * L;
    float *g = malloc(n * sizeof(float)), *zt = malloc(n * sizeof(float));
    float *eps = malloc(n * sizeof(float));
    assert_non_null(g);
    assert_non_null(zt);
    assert_non_null(eps);
    memcpy(zt, f->zt, n * sizeof(float));
    memcpy(eps, f->eps, n * sizeof(float));
    const int saved = f->ts[B];
    f->ts[B] = 990;
    const double a1 = f->g.sched.alpha_bar[f->ts[0]], a2 = f->g.sched.alpha_bar[990];
    const double sa1 = sqrt(a1), sb1 = sqrt(1 - a1), sa2 = sqrt(a2), sb2 = sqrt(1 - a2);
    assert_true(sb2 / sa2 > 100.0 && sa1 > sb1);
    for (int j = 0; j < L; j++) {
        const double x0 = (f->zt[j] - sb1 * f->eps[j]) / sa1;
        f->eps[(size_t)B * L + j] = f->eps[j];
        f->zt[(size_t)B * L + j] = (float)(sa2 * x0 + sb2 * f->eps[j]);
    }
    term(f, f->eps, g);
    f->ts[B] = saved;
    memcpy(f->zt, zt, n * sizeof(float));
    memcpy(f->eps, eps, n * sizeof(float));
    double worst = 0, mag = 0;
    for (int j = 0; j < L; j++) {
        const double want = g[j] * sa1 / sb1;
        worst = fmax(worst, fabs(g[(size_t)B * L + j] - want));
        mag = fmax(mag, fabs(want));
    }
    print_message("noisy row / clean row: worst difference %.2e of %.2e\n", worst, mag);
    assert_true(mag > 0.0 && worst < 0.02 * mag);
    free(g);
    free(zt);
    free(eps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_matches_differences),
        cmocka_unit_test(test_dropped_rows_and_frozen_vae),
        cmocka_unit_test(test_noisy_rows_capped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
