/* lbfgs.c - limited-memory BFGS (see lbfgs.h). */
#include "lbfgs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct lbfgs_mem {
    size_t n;
    int m, count, head;   /* pairs stored, the newest at (head - 1) mod m */
    double *s, *y, *rho;  /* [m][n], [m][n], [m] */
    double *alpha;        /* [m] */
} lbfgs_mem;

static double dot(const double *a, const double *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d += a[i] * b[i];
    return d;
}

/* d = -H g by the two-loop recursion. */
static void direction(const lbfgs_mem *M, const double *g, double *d)
{
    const size_t n = M->n;
    for (size_t i = 0; i < n; i++)
        d[i] = -g[i];
    for (int k = 0; k < M->count; k++) {
        int j = (M->head - 1 - k + 2 * M->m) % M->m;
        M->alpha[j] = M->rho[j] * dot(M->s + (size_t)j * n, d, n);
        for (size_t i = 0; i < n; i++)
            d[i] -= M->alpha[j] * M->y[(size_t)j * n + i];
    }
    if (M->count > 0) {
        int j = (M->head - 1 + M->m) % M->m;
        const double *yj = M->y + (size_t)j * n;
        double gamma = 1.0 / (M->rho[j] * dot(yj, yj, n));
        for (size_t i = 0; i < n; i++)
            d[i] *= gamma;
    }
    for (int k = M->count - 1; k >= 0; k--) {
        int j = (M->head - 1 - k + 2 * M->m) % M->m;
        double beta = M->rho[j] * dot(M->y + (size_t)j * n, d, n);
        for (size_t i = 0; i < n; i++)
            d[i] += (M->alpha[j] - beta) * M->s[(size_t)j * n + i];
    }
}

/* Keep the pair (x1 - x0, g1 - g0) when its curvature is positive. */
static void remember(lbfgs_mem *M, const double *x0, const double *x1, const double *g0,
                     const double *g1)
{
    const size_t n = M->n;
    double *s = M->s + (size_t)M->head * n, *y = M->y + (size_t)M->head * n;
    for (size_t i = 0; i < n; i++) {
        s[i] = x1[i] - x0[i];
        y[i] = g1[i] - g0[i];
    }
    double sy = dot(s, y, n);
    if (!(sy > 1e-12 * sqrt(dot(s, s, n) * dot(y, y, n))))
        return;
    M->rho[M->head] = 1.0 / sy;
    M->head = (M->head + 1) % M->m;
    if (M->count < M->m)
        M->count++;
}

/* Backtracking from step 1 until f(x + t d) <= f + 1e-4 t g.d; x1, g1 get the
 * accepted point. Returns its value, or NAN when no step decreases f. */
static double line_search(lbfgs_fn fn, void *ctx, const double *x, double f, const double *g,
                          const double *d, size_t n, double *x1, double *g1, int *evals)
{
    const double gd = dot(g, d, n);
    double t = 1.0;
    for (int k = 0; k < 40; k++, t *= 0.5) {
        for (size_t i = 0; i < n; i++)
            x1[i] = x[i] + t * d[i];
        double f1 = fn(ctx, x1, g1);
        (*evals)++;
        if (isfinite(f1) && f1 <= f + 1e-4 * t * gd)
            return f1;
    }
    return NAN;
}

static void mem_free(lbfgs_mem *M)
{
    free(M->s);
    free(M->y);
    free(M->rho);
    free(M->alpha);
}

int lbfgs_minimize(lbfgs_fn fn, void *ctx, double *x, size_t n, const lbfgs_cfg *cfg,
                   lbfgs_report *rep, d2_error *err)
{
    lbfgs_mem M = {.n = n, .m = cfg->memory > 0 ? cfg->memory : 10};
    M.s = malloc((size_t)M.m * n * sizeof(double));
    M.y = malloc((size_t)M.m * n * sizeof(double));
    M.rho = calloc((size_t)M.m, sizeof(double));
    M.alpha = calloc((size_t)M.m, sizeof(double));
    double *g = malloc(n * sizeof(double)), *d = malloc(n * sizeof(double));
    double *x1 = malloc(n * sizeof(double)), *g1 = malloc(n * sizeof(double));
    memset(rep, 0, sizeof *rep);
    int rc = 0;
    if (!M.s || !M.y || !M.rho || !M.alpha || !g || !d || !x1 || !g1) {
        rc = d2_fail(err, D2_ENOMEM, "lbfgs: out of memory");
        goto out;
    }
    double f = fn(ctx, x, g);
    rep->evaluations = 1;
    for (rep->iterations = 0; rep->iterations < cfg->max_iter; rep->iterations++) {
        if (sqrt(dot(g, g, n)) <= cfg->gtol)
            break;
        direction(&M, g, d);
        if (dot(g, d, n) >= 0) { // not a descent direction: forget and follow -g
            M.count = 0;
            for (size_t i = 0; i < n; i++)
                d[i] = -g[i];
        }
        double f1 = line_search(fn, ctx, x, f, g, d, n, x1, g1, &rep->evaluations);
        if (isnan(f1))
            break; // no decrease at machine precision: x is as good as it gets
        remember(&M, x, x1, g, g1);
        memcpy(x, x1, n * sizeof(double));
        memcpy(g, g1, n * sizeof(double));
        f = f1;
    }
    rep->f = f;
    rep->gnorm = sqrt(dot(g, g, n));
out:
    mem_free(&M);
    free(g);
    free(d);
    free(x1);
    free(g1);
    return rc;
}
