/* gen_score.c - heads scored on a support set on the backend, and the nearest
 * zoo entry of each generated head.
 *
 * The scorer runs the target network of the spec on the device: a linear layer
 * is its bias broadcast to every row (repeat_rows) plus one GEMM (beta 1),
 * an activation is act_forward, in chunks of SCORE_CHUNK rows; the support
 * cross-entropy is the backend's cross_entropy op. Only the argmax of each
 * row's `way` logits (the accuracy) is read on the host. On the CPU backend
 * this is target_eval's arithmetic, value for value. */
#include "gen_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SCORE_CHUNK 256

static act_kind score_act(tl_kind k)
{
    switch (k) {
    case TL_RELU:
        return ACT_RELU;
    case TL_TANH:
        return ACT_TANH;
    case TL_GELU:
        return ACT_GELU_ERF;
    case TL_SILU:
        return ACT_SILU;
    case TL_LINEAR:
        break;
    }
    return ACT_IDENTITY;
}

static void score_free_dev(backend_t *be, void *p)
{
    if (p)
        be->ops->free(be, p);
}

void gen_scorer_free(gen_scorer *sc)
{
    if (!sc || !sc->be)
        return;
    score_free_dev(sc->be, sc->x);
    score_free_dev(sc->be, sc->labels);
    score_free_dev(sc->be, sc->logits);
    score_free_dev(sc->be, sc->loss);
    score_free_dev(sc->be, sc->act);
    score_free_dev(sc->be, sc->theta);
    free(sc->host_logits);
    memset(sc, 0, sizeof *sc);
}

int gen_scorer_init(gen_scorer *sc, backend_t *be, const target_spec *s, const dataset *feat,
                    d2_error *err)
{
    memset(sc, 0, sizeof *sc);
    if (!feat || feat->n <= 0 || feat->dim != s->feat_dim || feat->classes < 1 ||
        feat->classes > s->out_dim)
        return d2_fail(err, D2_EINVAL, "scoring: the support set does not fit the spec '%s'",
                       s->text);
    sc->be = be;
    sc->spec = s;
    sc->feat = feat;
    sc->n = feat->n;
    sc->way = feat->classes;
    sc->rows = sc->n < SCORE_CHUNK ? sc->n : SCORE_CHUNK;
    size_t widths = 0;
    for (int l = 0; l < s->nlayers; l++)
        widths += (size_t)s->layers[l].out;
    const size_t n = (size_t)sc->n, F = (size_t)s->feat_dim;
    sc->x = backend_alloc_floats(be, n * F);
    sc->labels = be->ops->alloc(be, n * sizeof(int32_t));
    sc->logits = backend_alloc_floats(be, n * (size_t)sc->way);
    sc->loss = backend_alloc_floats(be, 1);
    sc->act = backend_alloc_floats(be, (size_t)sc->rows * widths);
    sc->theta = backend_alloc_floats(be, s->numel);
    sc->host_logits = malloc(n * (size_t)sc->way * sizeof(float));
    if (!sc->x || !sc->labels || !sc->logits || !sc->loss || !sc->act || !sc->theta ||
        !sc->host_logits) {
        gen_scorer_free(sc);
        return d2_fail(err, D2_ENOMEM, "scoring: out of memory for %d support rows", (int)n);
    }
    if (be->ops->to_device(be, sc->x, feat->x, n * F * sizeof(float)) ||
        be->ops->to_device(be, sc->labels, feat->y, n * sizeof(int32_t))) {
        gen_scorer_free(sc);
        return d2_fail(err, D2_EDEVICE, "scoring: cannot upload the support set");
    }
    return 0;
}

/* logits of rows [r0, r0 + b) for the head theta (device) -> sc->logits rows */
static void score_chunk(gen_scorer *sc, const float *theta, int r0, int b)
{
    backend_t *be = sc->be;
    const target_spec *s = sc->spec;
    const float *in = sc->x + (size_t)r0 * s->feat_dim;
    float *out = sc->act;
    for (int l = 0; l < s->nlayers; l++) {
        const target_layer *L = &s->layers[l];
        if (L->kind == TL_LINEAR) { // out [b, L->out] = bias + in [b, L->in] @ W^T
            be->ops->repeat_rows(be, out, theta + L->b_off, b, 1, L->out);
            be->ops->gemm(be, 0, 1, b, L->out, L->in, 1.0f, in, L->in, theta + L->w_off, L->in,
                          1.0f, out, L->out);
        } else {
            be->ops->act_forward(be, score_act(L->kind), out, in, (size_t)b * L->out);
        }
        in = out;
        out += (size_t)sc->rows * L->out;
    }
    // the first `way` outputs of each row
    const int O = s->out_dim, W = sc->way;
    if (O == W)
        be->ops->copy(be, sc->logits + (size_t)r0 * W, in, (size_t)b * W * sizeof(float));
    else
        for (int i = 0; i < b; i++)
            be->ops->copy(be, sc->logits + (size_t)(r0 + i) * W, in + (size_t)i * O,
                          (size_t)W * sizeof(float));
}

int gen_scorer_run(gen_scorer *sc, const float *theta, float *acc, float *loss, d2_error *err)
{
    backend_t *be = sc->be;
    if (be->ops->to_device(be, sc->theta, theta, sc->spec->numel * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "scoring: cannot upload the head");
    for (int r0 = 0; r0 < sc->n; r0 += sc->rows)
        score_chunk(sc, sc->theta, r0, sc->n - r0 < sc->rows ? sc->n - r0 : sc->rows);
    be->ops->cross_entropy(be, sc->loss, NULL, sc->logits, sc->labels, sc->n, sc->way, 1.0f);
    const int W = sc->way;
    float l = NAN;
    if (be->ops->to_host(be, &l, sc->loss, sizeof l) ||
        be->ops->to_host(be, sc->host_logits, sc->logits, (size_t)sc->n * W * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "scoring: the device failed");
    long correct = 0;
    for (int i = 0; i < sc->n; i++) {
        const float *zi = sc->host_logits + (size_t)i * W;
        int arg = 0;
        float mx = zi[0];
        for (int j = 1; j < W; j++)
            if (zi[j] > mx) {
                mx = zi[j];
                arg = j;
            }
        correct += arg == sc->feat->y[i];
    }
    *acc = (float)((double)correct / sc->n);
    *loss = l;
    return 0;
}

/* The nearest of n zoo entries (resident on the device) for K heads theta
 * [K, P] (host): |t - z|^2 = |t|^2 + |z|^2 - 2 t.z, the dot products as one
 * GEMM on the device; the winner's exact distance is recomputed on the host in
 * double (P values). */
int gen_zoo_entry_way(const generator *g, int index)
{
    int w = 0;
    while (w < g->cfg.way && g->zoo_classes[(size_t)index * g->cfg.way + w] >= 0)
        w++;
    return w;
}

int gen_head_spec(const generator *g, int way, target_spec *hs, d2_error *err)
{
    if (way == g->cfg.way) {
        *hs = g->spec;
        return 0;
    }
    return target_spec_with_way(&g->spec, way, hs, err);
}

static int nearest_wide(const generator *g, backend_t *be, const float *theta, int K, int *index,
                        float *dist, d2_error *err);

int gen_nearest_zoo(const generator *g, backend_t *be, const target_spec *hs, const float *theta,
                    int K, int *index, float *dist, d2_error *err)
{
    if (hs->numel == (size_t)g->cfg.P)
        return nearest_wide(g, be, theta, K, index, dist, err);
    float *wide = malloc((size_t)K * g->cfg.P * sizeof(float));
    if (!wide)
        return d2_fail(err, D2_ENOMEM, "out of memory for the zoo distances");
    for (int k = 0; k < K; k++)
        target_theta_widen(&g->spec, hs, theta + (size_t)k * hs->numel,
                           wide + (size_t)k * g->cfg.P);
    int rc = nearest_wide(g, be, wide, K, index, dist, err);
    free(wide);
    return rc;
}

static int nearest_wide(const generator *g, backend_t *be, const float *theta, int K, int *index,
                        float *dist, d2_error *err)
{
    const int P = g->cfg.P, n = g->zoo_n;
    for (int k = 0; k < K; k++) {
        index[k] = -1;
        dist[k] = NAN;
    }
    if (n <= 0)
        return 0;
    if (!g->zoo_theta_dev)
        return d2_fail(err, D2_EINVAL, "the zoo index is not on the device (load the generator)");
    float *dots = malloc((size_t)K * n * sizeof(float));
    float *dots_dev = backend_alloc_floats(be, (size_t)K * n);
    float *theta_dev = backend_alloc_floats(be, (size_t)K * P);
    int rc = 0;
    if (!dots || !dots_dev || !theta_dev) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory for the zoo distances");
        goto out;
    }
    if (be->ops->to_device(be, theta_dev, theta, (size_t)K * P * sizeof(float))) {
        rc = d2_fail(err, D2_EDEVICE, "zoo distances: cannot upload the heads");
        goto out;
    }
    be->ops->gemm(be, 0, 1, K, n, P, 1.0f, theta_dev, P, g->zoo_theta_dev, P, 0.0f, dots_dev, n);
    if (be->ops->to_host(be, dots, dots_dev, (size_t)K * n * sizeof(float))) {
        rc = d2_fail(err, D2_EDEVICE, "zoo distances: the device failed");
        goto out;
    }
    for (int k = 0; k < K; k++) {
        double best = INFINITY;
        int bi = 0;
        for (int i = 0; i < n; i++) {
            double d = (double)g->zoo_sqnorm[i] - 2.0 * dots[(size_t)k * n + i];
            if (d < best) {
                best = d;
                bi = i;
            }
        }
        const float *t = theta + (size_t)k * P, *z = g->zoo_theta + (size_t)bi * P;
        double e2 = 0;
        for (int j = 0; j < P; j++) {
            double e = (double)t[j] - z[j];
            e2 += e * e;
        }
        index[k] = bi;
        dist[k] = (float)sqrt(e2);
    }
out:
    if (dots_dev)
        be->ops->free(be, dots_dev);
    if (theta_dev)
        be->ops->free(be, theta_dev);
    free(dots);
    return rc;
}
