/* baseline.c - prototypes and logistic regression as linear heads (see baseline.h). */
#include "baseline.h"

#include "lbfgs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check_labels(const dataset *s, int way, d2_error *err)
{
    if (way < 1 || s->dim < 1)
        return d2_fail(err, D2_EINVAL, "baseline: way %d, dimension %d", way, s->dim);
    for (int i = 0; i < s->n; i++)
        if (s->y[i] < 0 || s->y[i] >= way)
            return d2_fail(err, D2_EINVAL, "baseline: label %d of sample %d outside 0..%d",
                           s->y[i], i, way - 1);
    return 0;
}

int baseline_prototype_head(const dataset *s, int way, float *W, float *b, d2_error *err)
{
    int rc;
    if ((rc = check_labels(s, way, err)))
        return rc;
    const int F = s->dim;
    double *mean = calloc((size_t)way * F, sizeof(double));
    int *cnt = calloc((size_t)way, sizeof(int));
    if (!mean || !cnt) {
        free(mean);
        free(cnt);
        return d2_fail(err, D2_ENOMEM, "baseline: out of memory");
    }
    for (int i = 0; i < s->n; i++) {
        cnt[s->y[i]]++;
        for (int j = 0; j < F; j++)
            mean[(size_t)s->y[i] * F + j] += s->x[(size_t)i * F + j];
    }
    for (int c = 0; c < way; c++) {
        double sq = 0;
        for (int j = 0; j < F; j++) {
            double m = cnt[c] ? mean[(size_t)c * F + j] / cnt[c] : 0.0;
            W[(size_t)c * F + j] = (float)m;
            sq += m * m;
        }
        b[c] = cnt[c] ? (float)(-0.5 * sq) : -1e30f;
    }
    free(mean);
    free(cnt);
    return 0;
}

float baseline_head_accuracy(const float *W, const float *b, int way, const dataset *q)
{
    const int F = q->dim;
    int right = 0;
    for (int i = 0; i < q->n; i++) {
        const float *x = q->x + (size_t)i * F;
        int best = 0;
        double bz = -INFINITY;
        for (int c = 0; c < way; c++) {
            double z = b[c];
            for (int j = 0; j < F; j++)
                z += (double)W[(size_t)c * F + j] * x[j];
            if (z > bz) {
                bz = z;
                best = c;
            }
        }
        right += best == q->y[i];
    }
    return q->n ? (float)right / (float)q->n : NAN;
}

/* objective and gradient of sum CE + lam/2 ||W - centre||^2 (centre NULL: zero);
 * theta = [W (way x F), b (way)] */
static double objective(const dataset *s, int way, double lam, const double *centre,
                        const double *th, double *g, double *p)
{
    const int F = s->dim;
    const double *W = th, *b = th + (size_t)way * F;
    memset(g, 0, ((size_t)way * F + way) * sizeof(double));
    double f = 0;
    for (int i = 0; i < s->n; i++) {
        const float *x = s->x + (size_t)i * F;
        double mx = -INFINITY;
        for (int c = 0; c < way; c++) {
            double z = b[c];
            for (int j = 0; j < F; j++)
                z += W[(size_t)c * F + j] * x[j];
            p[c] = z;
            mx = z > mx ? z : mx;
        }
        double sum = 0;
        for (int c = 0; c < way; c++) {
            p[c] = exp(p[c] - mx);
            sum += p[c];
        }
        f += -log(p[s->y[i]] / sum);
        for (int c = 0; c < way; c++) {
            double d = p[c] / sum - (c == s->y[i]);
            for (int j = 0; j < F; j++)
                g[(size_t)c * F + j] += d * x[j];
            g[(size_t)way * F + c] += d;
        }
    }
    for (size_t k = 0; k < (size_t)way * F; k++) {
        const double d = W[k] - (centre ? centre[k] : 0.0);
        f += 0.5 * lam * d * d;
        g[k] += lam * d;
    }
    return f;
}

int baseline_logreg_head(const dataset *s, int way, double C, float *W, float *b,
                         d2_error *err)
{
    return baseline_logreg_head_prior(s, way, C, NULL, NULL, W, b, err);
}

typedef struct logreg_ctx {
    const dataset *s;
    int way;
    double lam;
    const double *centre;
    double *p; /* [way] scratch */
} logreg_ctx;

static double logreg_fn(void *ctx, const double *th, double *g)
{
    const logreg_ctx *c = ctx;
    return objective(c->s, c->way, c->lam, c->centre, th, g, c->p);
}

int baseline_logreg_head_prior(const dataset *s, int way, double C, const float *W0,
                               const float *b0, float *W, float *b, d2_error *err)
{
    int rc;
    if ((rc = check_labels(s, way, err)))
        return rc;
    const int F = s->dim;
    const size_t n = (size_t)way * F + way;
    double *th = calloc(n, sizeof(double)), *p = calloc((size_t)way, sizeof(double));
    double *centre = W0 ? malloc(n * sizeof(double)) : NULL;
    if (!th || !p || (W0 && !centre)) {
        rc = d2_fail(err, D2_ENOMEM, "baseline: out of memory");
        goto out;
    }
    for (size_t k = 0; centre && k < n; k++) // the descent starts at the prior's centre
        centre[k] = th[k] = k < (size_t)way * F ? W0[k] : b0[k - (size_t)way * F];
    // strictly convex in W, convex in b: L-BFGS to a gradient of 1e-6 per sample
    logreg_ctx ctx = {.s = s, .way = way, .lam = 1.0 / C, .centre = centre, .p = p};
    lbfgs_cfg lc = {.memory = 10, .max_iter = 1000, .gtol = 1e-6 * s->n};
    lbfgs_report rep;
    if ((rc = lbfgs_minimize(logreg_fn, &ctx, th, n, &lc, &rep, err)))
        goto out;
    for (size_t k = 0; k < (size_t)way * F; k++)
        W[k] = (float)th[k];
    for (int c = 0; c < way; c++)
        b[c] = (float)th[(size_t)way * F + c];
out:
    free(centre);
    free(th);
    free(p);
    return rc;
}

typedef int (*head_fit)(const dataset *, int, double, float *, float *, d2_error *);

static int fit_prototypes(const dataset *s, int way, double C, float *W, float *b,
                          d2_error *err)
{
    (void)C;
    return baseline_prototype_head(s, way, W, b, err);
}

static float fit_and_score(head_fit fit, const dataset *s, const dataset *q, int way, double C)
{
    float *W = malloc(((size_t)way * s->dim + way) * sizeof(float));
    float acc = NAN;
    d2_error err;
    if (W && fit(s, way, C, W, W + (size_t)way * s->dim, &err) == 0)
        acc = baseline_head_accuracy(W, W + (size_t)way * s->dim, way, q);
    free(W);
    return acc;
}

float baseline_prototypes(const dataset *s, const dataset *q, int way)
{
    return fit_and_score(fit_prototypes, s, q, way, 1.0);
}

float baseline_logreg(const dataset *s, const dataset *q, int way, double C)
{
    return fit_and_score(baseline_logreg_head, s, q, way, C);
}
