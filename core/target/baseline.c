/* baseline.c - prototypes and logistic regression as linear heads (see baseline.h). */
#include "baseline.h"

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

/* The largest eigenvalue of [x 1]^T [x 1] by power iteration: with lam it
 * bounds the gradient's Lipschitz constant. v, w: [F + 1] scratch. */
static double gram_lmax(const dataset *s, double *v, double *w)
{
    const int F = s->dim;
    for (int j = 0; j <= F; j++)
        v[j] = 1.0;
    double lmax = 1.0;
    for (int it = 0; it < 50; it++) {
        memset(w, 0, ((size_t)F + 1) * sizeof(double));
        for (int i = 0; i < s->n; i++) {
            const float *x = s->x + (size_t)i * F;
            double d = v[F];
            for (int j = 0; j < F; j++)
                d += x[j] * v[j];
            for (int j = 0; j < F; j++)
                w[j] += d * x[j];
            w[F] += d;
        }
        double nrm = 0;
        for (int j = 0; j <= F; j++)
            nrm += w[j] * w[j];
        lmax = sqrt(nrm);
        for (int j = 0; j <= F; j++)
            v[j] = lmax > 0 ? w[j] / lmax : 0;
    }
    return lmax;
}

int baseline_logreg_head(const dataset *s, int way, double C, float *W, float *b,
                         d2_error *err)
{
    return baseline_logreg_head_prior(s, way, C, NULL, NULL, W, b, err);
}

int baseline_logreg_head_prior(const dataset *s, int way, double C, const float *W0,
                               const float *b0, float *W, float *b, d2_error *err)
{
    int rc;
    if ((rc = check_labels(s, way, err)))
        return rc;
    const int F = s->dim;
    const size_t n = (size_t)way * F + way;
    double *th = calloc(n, sizeof(double)), *y = calloc(n, sizeof(double));
    double *g = calloc(n, sizeof(double)), *prev = calloc(n, sizeof(double));
    double *p = calloc((size_t)way, sizeof(double)), *centre = NULL;
    double *v = calloc((size_t)F + 1, sizeof(double)), *w = calloc((size_t)F + 1, sizeof(double));
    if (W0)
        centre = malloc(n * sizeof(double));
    if (!th || !y || !g || !prev || !p || !v || !w || (W0 && !centre)) {
        rc = d2_fail(err, D2_ENOMEM, "baseline: out of memory");
        goto out;
    }
    for (size_t k = 0; centre && k < n; k++) // the descent starts at the prior's centre
        centre[k] = th[k] = y[k] = k < (size_t)way * F ? W0[k] : b0[k - (size_t)way * F];
    const double lam = 1.0 / C;
    const double step = 1.0 / (0.5 * gram_lmax(s, v, w) * 1.05 + lam);
    // Nesterov's accelerated gradient; the problem is strongly convex in W
    double tk = 1.0;
    for (int it = 0; it < 3000; it++) {
        objective(s, way, lam, centre, y, g, p);
        double gn = 0;
        for (size_t k = 0; k < n; k++)
            gn += g[k] * g[k];
        memcpy(prev, th, n * sizeof(double));
        for (size_t k = 0; k < n; k++)
            th[k] = y[k] - step * g[k];
        double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * tk * tk));
        for (size_t k = 0; k < n; k++)
            y[k] = th[k] + (tk - 1.0) / tn * (th[k] - prev[k]);
        tk = tn;
        if (sqrt(gn) < 1e-6 * s->n)
            break;
    }
    for (size_t k = 0; k < (size_t)way * F; k++)
        W[k] = (float)th[k];
    for (int c = 0; c < way; c++)
        b[c] = (float)th[(size_t)way * F + c];
out:
    free(centre);
    free(th);
    free(y);
    free(g);
    free(prev);
    free(p);
    free(v);
    free(w);
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
