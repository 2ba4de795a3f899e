/* baseline.c - prototypes and logistic regression (see baseline.h). */
#include "baseline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float baseline_prototypes(const dataset *sup, const dataset *q, int way)
{
    const int F = sup->dim;
    double *mean = calloc((size_t)way * F, sizeof(double));
    int *cnt = calloc((size_t)way, sizeof(int));
    if (!mean || !cnt) {
        free(mean);
        free(cnt);
        return NAN;
    }
    for (int i = 0; i < sup->n; i++) {
        cnt[sup->y[i]]++;
        for (int j = 0; j < F; j++)
            mean[(size_t)sup->y[i] * F + j] += sup->x[(size_t)i * F + j];
    }
    for (int c = 0; c < way; c++)
        for (int j = 0; j < F; j++)
            mean[(size_t)c * F + j] /= cnt[c] ? cnt[c] : 1;
    int right = 0;
    for (int i = 0; i < q->n; i++) {
        int best = 0;
        double bd = INFINITY;
        for (int c = 0; c < way; c++) {
            double d = 0;
            for (int j = 0; j < F; j++) {
                double e = q->x[(size_t)i * F + j] - mean[(size_t)c * F + j];
                d += e * e;
            }
            if (d < bd) {
                bd = d;
                best = c;
            }
        }
        right += best == q->y[i];
    }
    free(mean);
    free(cnt);
    return q->n ? (float)right / (float)q->n : NAN;
}

/* objective and gradient of sum CE + lam/2 ||W||^2; theta = [W (way x F), b (way)] */
static double objective(const dataset *s, int way, double lam, const double *th, double *g,
                        double *p)
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
        f += 0.5 * lam * W[k] * W[k];
        g[k] += lam * W[k];
    }
    return f;
}

float baseline_logreg(const dataset *s, const dataset *q, int way, double C)
{
    const int F = s->dim;
    const size_t n = (size_t)way * F + way;
    double *th = calloc(n, sizeof(double)), *y = calloc(n, sizeof(double));
    double *g = calloc(n, sizeof(double)), *prev = calloc(n, sizeof(double));
    double *p = calloc((size_t)way, sizeof(double)), *v = calloc((size_t)F + 1, sizeof(double));
    float acc = NAN;
    if (!th || !y || !g || !prev || !p || !v)
        goto out;
    // Lipschitz bound of the gradient: 0.5 * lambda_max([x 1]^T [x 1]) + lam, by power iteration
    const double lam = 1.0 / C;
    for (int j = 0; j <= F; j++)
        v[j] = 1.0;
    double lmax = 1.0;
    for (int it = 0; it < 50; it++) {
        double *w = calloc((size_t)F + 1, sizeof(double));
        if (!w)
            goto out;
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
        nrm = sqrt(nrm);
        lmax = nrm;
        for (int j = 0; j <= F; j++)
            v[j] = nrm > 0 ? w[j] / nrm : 0;
        free(w);
    }
    const double step = 1.0 / (0.5 * lmax * 1.05 + lam);
    // Nesterov's accelerated gradient; the problem is strongly convex in W
    double tk = 1.0;
    memcpy(y, th, n * sizeof(double));
    for (int it = 0; it < 3000; it++) {
        objective(s, way, lam, y, g, p);
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
    int right = 0;
    for (int i = 0; i < q->n; i++) {
        const float *x = q->x + (size_t)i * F;
        int best = 0;
        double bz = -INFINITY;
        for (int c = 0; c < way; c++) {
            double z = th[(size_t)way * F + c];
            for (int j = 0; j < F; j++)
                z += th[(size_t)c * F + j] * x[j];
            if (z > bz) {
                bz = z;
                best = c;
            }
        }
        right += best == q->y[i];
    }
    acc = q->n ? (float)right / (float)q->n : NAN;
out:
    free(th);
    free(y);
    free(g);
    free(prev);
    free(p);
    free(v);
    return acc;
}
