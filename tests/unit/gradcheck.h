/* gradcheck.h - finite-difference gradient checker for any backend.
 *
 * The checked function is out = f(x_1, ..., x_k) with out: [n_out] in device memory. The
 * scalar loss is L = sum_i out[i] * r[i] with fixed random weights r (computed in double on
 * the host), so dL/dout = r. The caller supplies:
 *   fwd(be, user, out)   compute out from the current contents of the targets' buffers
 *   bwd(be, user, dout)  accumulate (+=) dL/dx into every target's gradient buffer, given
 *                        dout = r on the device; called right after a fwd
 * For each target the checker zeroes its gradient buffer, runs fwd + bwd once for the
 * analytic gradient, then perturbs elements of x one at a time on a host copy (uploaded with
 * to_device) and takes central differences (L(x+eps) - L(x-eps)) / 2eps.
 *
 * An element passes when |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
 * Where f is not differentiable within eps of x (a ReLU input that the perturbation pushes
 * across 0) the difference quotient is wrong, not the gradient; so an element that fails is
 * retried with steps eps/10 and eps/100 (atol widened 2x and 5x for float rounding), and one
 * that passes there is counted in `kinks`, not in `failed`. A wrong backward fails at every
 * step; callers bound the number of kinks (say, 10% of the checks).
 *
 * Usage:
 *   gc_target t[] = {{"x", x_dev, dx_dev, n}, {"W", ps.w + off, ps.g + off, nw}};
 *   gc_opts o = gc_default_opts();
 *   gc_report rep;
 *   int bad = gc_check(be, my_fwd, my_bwd, &ctx, n_out, t, 2, &o, &rep);
 *   assert_int_equal(bad, 0);
 */
#ifndef D2_GRADCHECK_H
#define D2_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "rng.h"

typedef int (*gc_fwd_fn)(backend_t *be, void *user, float *out);
typedef int (*gc_bwd_fn)(backend_t *be, void *user, const float *dout);

typedef struct gc_target {
    const char *name;
    float *x; /* device buffer that is perturbed */
    float *g; /* device gradient buffer of the same length (zeroed by the checker) */
    size_t n;
} gc_target;

typedef struct gc_opts {
    double eps;       /* perturbation */
    double atol, rtol;
    int max_checks;   /* elements checked per target (chosen at random); <= 0: all */
    uint64_t seed;    /* for r and the choice of elements */
    int verbose;      /* 1: print every failure; 0: the first 8; -1: none */
} gc_opts;

typedef struct gc_report {
    int checked, failed, kinks;
    double max_abs_err, max_rel_err;
    char worst[256]; /* description of the worst element */
} gc_report;

static inline gc_opts gc_default_opts(void)
{
    gc_opts o;
    o.eps = 1e-2;
    o.atol = 2e-3;
    o.rtol = 2e-2;
    o.max_checks = 48;
    o.seed = 1234;
    o.verbose = 0;
    return o;
}

/* A device buffer of n floats uniform in [lo, hi) from `seed` (drawn on the host, uploaded
 * with to_device); NULL on failure. Free with be->ops->free. */
static inline float *gc_dev_uniform(backend_t *be, size_t n, float lo, float hi, uint64_t seed)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    float *d = backend_alloc_floats(be, n ? n : 1);
    if (!h || !d) {
        free(h);
        if (d)
            be->ops->free(be, d);
        return NULL;
    }
    rng_fill_uniform(h, n, seed, 0);
    for (size_t i = 0; i < n; i++)
        h[i] = lo + (hi - lo) * h[i];
    if (be->ops->to_device(be, d, h, n * sizeof(float)) != 0) {
        be->ops->free(be, d);
        d = NULL;
    }
    free(h);
    return d;
}

/* L = sum out[i] * r[i] after running fwd; NAN on failure */
static inline double gc_loss(backend_t *be, gc_fwd_fn fwd, void *user, float *out_dev,
                             float *out_host, const double *r, size_t n_out)
{
    if (fwd(be, user, out_dev) != 0)
        return NAN;
    if (be->ops->to_host(be, out_host, out_dev, n_out * sizeof(float)) != 0)
        return NAN;
    double L = 0.0;
    for (size_t i = 0; i < n_out; i++)
        L += (double)out_host[i] * r[i];
    return L;
}

/* Returns the number of elements that failed (0 = pass); -1 when the harness itself failed
 * (allocation, a callback returned an error). */
static inline int gc_check(backend_t *be, gc_fwd_fn fwd, gc_bwd_fn bwd, void *user,
                           size_t n_out, gc_target *t, int nt, const gc_opts *o,
                           gc_report *rep)
{
    const backend_ops *op = be->ops;
    memset(rep, 0, sizeof *rep);
    int status = 0;
    float *out_dev = backend_alloc_floats(be, n_out);
    float *dout_dev = backend_alloc_floats(be, n_out);
    float *out_host = malloc(n_out * sizeof(float));
    float *r_f = malloc(n_out * sizeof(float));
    double *r = malloc(n_out * sizeof(double));
    if (!out_dev || !dout_dev || !out_host || !r_f || !r) {
        status = -1;
        goto done;
    }
    {
        rng gr;
        rng_init(&gr, rng_derive(o->seed, "gradcheck-r", 0), 0);
        for (size_t i = 0; i < n_out; i++) {
            r_f[i] = 2.0f * rng_uniform(&gr) - 1.0f;
            r[i] = r_f[i];
        }
    }
    if (op->to_device(be, dout_dev, r_f, n_out * sizeof(float)) != 0) {
        status = -1;
        goto done;
    }
    /* analytic gradients of every target in one backward */
    for (int k = 0; k < nt; k++)
        op->fill(be, t[k].g, 0.0f, t[k].n);
    if (fwd(be, user, out_dev) != 0 || bwd(be, user, dout_dev) != 0) {
        status = -1;
        goto done;
    }
    for (int k = 0; k < nt && status == 0; k++) {
        size_t n = t[k].n;
        float *xh = malloc(n * sizeof(float));
        float *gh = malloc(n * sizeof(float));
        if (!xh || !gh || op->to_host(be, xh, t[k].x, n * sizeof(float)) != 0 ||
            op->to_host(be, gh, t[k].g, n * sizeof(float)) != 0) {
            free(xh);
            free(gh);
            status = -1;
            break;
        }
        size_t checks = (o->max_checks <= 0 || (size_t)o->max_checks >= n) ? n
                                                                           : (size_t)o->max_checks;
        rng pick;
        rng_init(&pick, rng_derive(o->seed, t[k].name ? t[k].name : "", 1), 0);
        for (size_t c = 0; c < checks; c++) {
            size_t i = checks == n ? c : (size_t)rng_below(&pick, (uint32_t)n);
            float x0 = xh[i];
            double ana = gh[i];
            double num = 0.0, aerr = 0.0, tol = 0.0;
            int bad = 1, retried = 0;
            /* central difference at eps, then (on failure) at eps/10 and eps/100 */
            for (int attempt = 0; attempt < 3 && bad; attempt++) {
                static const double shrink[3] = {1.0, 0.1, 0.01}, widen[3] = {1.0, 2.0, 5.0};
                double e = o->eps * shrink[attempt];
                float xp = (float)(x0 + e), xm = (float)(x0 - e);
                op->to_device(be, t[k].x + i, &xp, sizeof xp);
                double Lp = gc_loss(be, fwd, user, out_dev, out_host, r, n_out);
                op->to_device(be, t[k].x + i, &xm, sizeof xm);
                double Lm = gc_loss(be, fwd, user, out_dev, out_host, r, n_out);
                op->to_device(be, t[k].x + i, &x0, sizeof x0);
                if (isnan(Lp) || isnan(Lm)) {
                    status = -1;
                    break;
                }
                /* divide by the step actually taken in float */
                num = (Lp - Lm) / ((double)xp - (double)xm);
                aerr = fabs(ana - num);
                tol = o->atol * widen[attempt] + o->rtol * fmax(fabs(ana), fabs(num));
                bad = !(aerr <= tol); /* NaN or inf on either side fails */
                retried = attempt > 0;
            }
            if (status)
                break;
            rep->checked++;
            if (!bad && retried) {
                rep->kinks++;
                continue;
            }
            double rerr = aerr / fmax(fmax(fabs(ana), fabs(num)), 1e-12);
            if (aerr > rep->max_abs_err) {
                rep->max_abs_err = aerr;
                snprintf(rep->worst, sizeof rep->worst,
                         "%s[%zu]: analytic %.6g, numeric %.6g", t[k].name ? t[k].name : "?", i,
                         ana, num);
            }
            if (!bad && rerr > rep->max_rel_err && aerr > o->atol)
                rep->max_rel_err = rerr;
            if (bad) {
                if (o->verbose > 0 || (o->verbose == 0 && rep->failed < 8))
                    fprintf(stderr, "gradcheck: %s[%zu]: analytic %.7g, numeric %.7g "
                                    "(abs err %.3g)\n",
                            t[k].name ? t[k].name : "?", i, ana, num, aerr);
                rep->failed++;
            }
        }
        free(xh);
        free(gh);
    }
done:
    if (out_dev)
        op->free(be, out_dev);
    if (dout_dev)
        op->free(be, dout_dev);
    free(out_host);
    free(r_f);
    free(r);
    return status ? status : rep->failed;
}

#endif
