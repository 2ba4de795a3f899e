/* target.c - target networks on the host: forward, evaluation, PyTorch-style
 * initialisation and validation of theta. Training is in target_train.c; the
 * layer kernels shared by both are in target_kernels.c (target_internal.h). */
#include "target.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "target_internal.h"

#define FWD_CHUNK 256

int target_forward(const target_spec *s, const float *theta, const float *x, int n,
                   float *logits, d2_error *err)
{
    if (!s || !theta || !x || !logits || n < 0)
        return d2_fail(err, D2_EINVAL, "target_forward: bad arguments");
    if (n == 0)
        return 0;
    int rows = n < FWD_CHUNK ? n : FWD_CHUNK;
    tnet_ws ws;
    int rc = tnet_ws_init(&ws, s, rows, 0, err);
    if (rc)
        return rc;
    for (int r0 = 0; r0 < n; r0 += rows) {
        int b = n - r0 < rows ? n - r0 : rows;
        const float *out = tnet_forward(&ws, s, theta, x + (size_t)r0 * s->feat_dim, b);
        memcpy(logits + (size_t)r0 * s->out_dim, out, sizeof(float) * (size_t)b * s->out_dim);
    }
    tnet_ws_free(&ws);
    return 0;
}

int target_check_data(const target_spec *s, const dataset *d, const char *what, d2_error *err)
{
    if (!d || d->n <= 0 || !d->x || !d->y)
        return d2_fail(err, D2_EINVAL, "%s: empty data set", what);
    if (d->dim != s->feat_dim)
        return d2_fail(err, D2_EINVAL, "%s: data have %d features, the spec '%s' expects %d",
                       what, d->dim, s->text, s->feat_dim);
    if (d->classes < 1 || d->classes > s->out_dim)
        return d2_fail(err, D2_EINVAL, "%s: %d classes, the spec '%s' has %d outputs", what,
                       d->classes, s->text, s->out_dim);
    for (int i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= d->classes)
            return d2_fail(err, D2_EINVAL, "%s: label %d of row %d outside 0..%d", what,
                           (int)d->y[i], i, d->classes - 1);
    return 0;
}

int target_eval(const target_spec *s, const float *theta, const dataset *feat, float *acc,
                float *loss, d2_error *err)
{
    if (!s || !theta || !feat)
        return d2_fail(err, D2_EINVAL, "target_eval: bad arguments");
    int rc = target_check_data(s, feat, "target_eval", err);
    if (rc)
        return rc;
    int n = feat->n, way = feat->classes;
    int rows = n < FWD_CHUNK ? n : FWD_CHUNK;
    tnet_ws ws;
    rc = tnet_ws_init(&ws, s, rows, 0, err);
    if (rc)
        return rc;
    long correct = 0;
    double total = 0.0;
    for (int r0 = 0; r0 < n; r0 += rows) {
        int b = n - r0 < rows ? n - r0 : rows;
        const float *z = tnet_forward(&ws, s, theta, feat->x + (size_t)r0 * s->feat_dim, b);
        for (int i = 0; i < b; i++) {
            const float *zi = z + (size_t)i * s->out_dim;
            int y = feat->y[r0 + i], arg = 0;
            float mx = zi[0];
            for (int j = 1; j < way; j++)
                if (zi[j] > mx) {
                    mx = zi[j];
                    arg = j;
                }
            double se = 0.0;
            for (int j = 0; j < way; j++)
                se += exp((double)zi[j] - (double)mx);
            total += log(se) + (double)mx - (double)zi[y];
            correct += arg == y;
        }
    }
    tnet_ws_free(&ws);
    if (acc)
        *acc = (float)((double)correct / n);
    if (loss)
        *loss = (float)(total / n);
    return 0;
}

void target_init_random(const target_spec *s, uint64_t seed, float *theta)
{
    uint64_t pos = 0;
    for (int l = 0; l < s->nlayers; l++) {
        const target_layer *L = &s->layers[l];
        if (L->kind != TL_LINEAR)
            continue;
        /* PyTorch nn.Linear: kaiming_uniform_(a=sqrt(5)) and the bias both give
         * U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
        float bound = 1.0f / sqrtf((float)L->in);
        size_t nw = (size_t)L->in * L->out, nb = (size_t)L->out;
        rng_fill_uniform(theta + L->w_off, nw, seed, pos);
        pos += nw;
        rng_fill_uniform(theta + L->b_off, nb, seed, pos);
        pos += nb;
        for (size_t i = 0; i < nw; i++)
            theta[L->w_off + i] = (2.0f * theta[L->w_off + i] - 1.0f) * bound;
        for (size_t i = 0; i < nb; i++)
            theta[L->b_off + i] = (2.0f * theta[L->b_off + i] - 1.0f) * bound;
    }
}

int target_check_theta(const target_spec *s, const float *theta, d2_error *err)
{
    if (!s || !theta)
        return d2_fail(err, D2_EINVAL, "target_check_theta: bad arguments");
    for (int l = 0; l < s->nlayers; l++) {
        const target_layer *L = &s->layers[l];
        if (L->kind != TL_LINEAR)
            continue;
        size_t nw = (size_t)L->in * L->out;
        for (size_t i = 0; i < nw; i++)
            if (!isfinite(theta[L->w_off + i]))
                return d2_fail(err, D2_ERANGE, "%d.weight[%zu][%zu] is not finite (%g)",
                               L->module, i / (size_t)L->in, i % (size_t)L->in,
                               (double)theta[L->w_off + i]);
        for (int i = 0; i < L->out; i++)
            if (!isfinite(theta[L->b_off + (size_t)i]))
                return d2_fail(err, D2_ERANGE, "%d.bias[%d] is not finite (%g)", L->module, i,
                               (double)theta[L->b_off + (size_t)i]);
    }
    return 0;
}
