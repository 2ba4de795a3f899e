/* test_lbfgs.c - the L-BFGS minimiser against known minima: an ill-conditioned
 * quadratic (exact solution of A x = b), the Rosenbrock valley (1, 1), a
 * function already at its minimum (no step), and the same iterates twice. */
#include "testutil.h"

#include <math.h>

#include "lbfgs.h"

typedef struct quad {
    int n;
    const double *diag, *b; /* f = 1/2 x'Dx - b'x, D diagonal plus a coupling */
} quad;

static double quad_fn(void *ctx, const double *x, double *g)
{
    const quad *q = ctx;
    double f = 0;
    for (int i = 0; i < q->n; i++) {
        double coupled = q->diag[i] * x[i] + (i + 1 < q->n ? 0.5 * x[i + 1] : 0.0) +
                         (i > 0 ? 0.5 * x[i - 1] : 0.0);
        g[i] = coupled - q->b[i];
        f += 0.5 * x[i] * coupled - q->b[i] * x[i];
    }
    return f;
}

static void test_quadratic(void **state)
{
    (void)state;
    enum { N = 30 };
    double diag[N], b[N], x[N] = {0}, g[N];
    for (int i = 0; i < N; i++) {
        diag[i] = 2.0 + 100.0 * i / (N - 1); // positive definite, condition number ~50
        b[i] = sin(i + 1.0);
    }
    quad q = {N, diag, b};
    lbfgs_cfg c = {.memory = 8, .max_iter = 500, .gtol = 1e-8};
    lbfgs_report rep;
    d2_error err;
    assert_int_equal(lbfgs_minimize(quad_fn, &q, x, N, &c, &rep, &err), 0);
    quad_fn(&q, x, g); // the gradient A x - b vanishes: x solves A x = b
    for (int i = 0; i < N; i++)
        TU_ASSERT_NEAR(g[i], 0.0, 1e-8);
    assert_true(rep.gnorm <= 1e-8);
    assert_true(rep.iterations < 100); // far fewer than gradient descent's thousands
}

static double rosen_fn(void *ctx, const double *x, double *g)
{
    (void)ctx;
    double a = 1.0 - x[0], b = x[1] - x[0] * x[0];
    g[0] = -2.0 * a - 400.0 * x[0] * b;
    g[1] = 200.0 * b;
    return a * a + 100.0 * b * b;
}

static void test_rosenbrock(void **state)
{
    (void)state;
    double x[2] = {-1.2, 1.0};
    lbfgs_cfg c = {.memory = 5, .max_iter = 1000, .gtol = 1e-9};
    lbfgs_report rep;
    d2_error err;
    assert_int_equal(lbfgs_minimize(rosen_fn, NULL, x, 2, &c, &rep, &err), 0);
    TU_ASSERT_NEAR(x[0], 1.0, 1e-6);
    TU_ASSERT_NEAR(x[1], 1.0, 1e-6);
    TU_ASSERT_NEAR(rep.f, 0.0, 1e-12);
    double y[2] = {-1.2, 1.0};
    lbfgs_report rep2;
    assert_int_equal(lbfgs_minimize(rosen_fn, NULL, y, 2, &c, &rep2, &err), 0);
    assert_memory_equal(x, y, sizeof x); // deterministic
    assert_int_equal(rep.evaluations, rep2.evaluations);
}

static void test_already_at_minimum(void **state)
{
    (void)state;
    double x[2] = {1.0, 1.0};
    lbfgs_cfg c = {.memory = 5, .max_iter = 100, .gtol = 1e-9};
    lbfgs_report rep;
    d2_error err;
    assert_int_equal(lbfgs_minimize(rosen_fn, NULL, x, 2, &c, &rep, &err), 0);
    assert_int_equal(rep.iterations, 0);
    assert_int_equal(rep.evaluations, 1);
    assert_true(x[0] == 1.0 && x[1] == 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quadratic),
        cmocka_unit_test(test_rosenbrock),
        cmocka_unit_test(test_already_at_minimum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
