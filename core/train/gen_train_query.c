/* gen_train_query.c - stage 2's query-loss term (gen_train_cfg.query_loss).
 *
 * The eps-MSE of stage 2 teaches the denoiser the zoo's heads, not what a
 * head is for. This term scores what the denoiser would return: its x0
 * prediction x0 = (z_t - sqrt(1 - ab) eps_hat) / sqrt(ab) is decoded through
 * the frozen weight VAE into a head, and the head's cross-entropy on query
 * samples of the same task (rows of its classes other than the support set)
 * is added to the loss, its gradient carried back through the decoder and the
 * x0 formula into eps_hat:
 *
 *   loss = mse(eps_hat, eps) + lambda / R * sum_r w_r CE_r,  w_r = min(1, sa / sb)
 *
 * (sa = sqrt(ab), sb = sqrt(1 - ab)). d x0 / d eps_hat = -sb / sa grows
 * without bound at high noise; w_r caps the product at 1, so noisy rows still
 * teach the encoder what heads suit the support set (at t near T, x0 depends
 * on the condition alone) without exploding. Rows whose condition was dropped
 * for guidance carry no task and get w_r = 0. Heads of one linear layer only
 * (the generator's any-way heads): logits = x W^T + b over the task's classes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen_train_internal.h"

int gtrain_query_check(const trainer *t, d2_error *err)
{
    const target_spec *s = &t->g.spec;
    int linear = 0;
    for (int i = 0; i < s->nlayers; i++)
        linear += s->layers[i].kind == TL_LINEAR;
    if (linear != 1 || s->nlayers != 1)
        return d2_fail(err, D2_EINVAL,
                       "query_loss: needs a head of one linear layer; the target is '%s'", s->text);
    if (t->cfg->query_shots < 1)
        return d2_fail(err, D2_EINVAL, "query_shots: %d; at least 1", t->cfg->query_shots);
    return 0;
}

void gtrain_queries_free(gtrain_queries *q)
{
    free(q->x);
    free(q->y);
    free(q->n);
    memset(q, 0, sizeof *q);
}

int gtrain_queries_alloc(gtrain_queries *q, const trainer *t, int B, d2_error *err)
{
    memset(q, 0, sizeof *q);
    q->Q = t->cfg->query_shots;
    q->per_task = t->N * q->Q;
    q->x = malloc((size_t)B * q->per_task * t->F * sizeof(float));
    q->y = malloc((size_t)B * q->per_task * sizeof(int));
    q->n = calloc((size_t)B, sizeof(int));
    if (!q->x || !q->y || !q->n) {
        gtrain_queries_free(q);
        return d2_fail(err, D2_ENOMEM, "stage 2: out of memory for query samples");
    }
    return 0;
}

/* Class c's rows of s (drawn K + Q per class, contiguous by class): the first
 * min(K, have - 1) (at least 1) standardised into the support slots, repeated
 * up to K as gtrain_fill_support does; the rest raw into the task's queries. */
static void split_class(trainer *t, const dataset *s, int first, int have, int c, int K,
                        float *X, gtrain_queries *q, int b)
{
    const int F = t->F;
    const int ns = have > 1 ? (have - 1 < K ? have - 1 : K) : 1;
    for (int k = 0; k < K; k++) {
        const float *src = s->x + (size_t)(first + k % ns) * F;
        float *dst = X + ((size_t)c * K + k) * F;
        for (int j = 0; j < F; j++)
            dst[j] = (src[j] - t->g.f_mean[j]) / t->g.f_std[j];
    }
    for (int i = ns; i < have && i - ns < q->Q; i++) {
        const int row = b * q->per_task + q->n[b]++;
        memcpy(q->x + (size_t)row * F, s->x + (size_t)(first + i) * F, (size_t)F * sizeof(float));
        q->y[row] = c;
    }
}

int gtrain_fill_task(trainer *t, int e, int K, rng *r, float *X, gtrain_queries *q, int b,
                     d2_error *err)
{
    dataset s = {0};
    int rc = zoo_entry_support(t->z, e, K + q->Q, r, &s, err);
    if (rc)
        return rc;
    const int F = t->F, way = gtrain_entry_way(t, e);
    memset(X + (size_t)way * K * F, 0, (size_t)(t->N - way) * K * F * sizeof(float));
    q->n[b] = 0;
    int i = 0;
    for (int c = 0; c < way; c++) {
        const int first = i;
        while (i < s.n && s.y[i] == c)
            i++;
        if (i == first) {
            dataset_free(&s);
            return d2_fail(err, D2_EFORMAT, "zoo entry %d: class %d has no support sample", e, c);
        }
        split_class(t, &s, first, i - first, c, K, X, q, b);
    }
    dataset_free(&s);
    return 0;
}

/* Mean cross-entropy of the linear head theta [P] (unnormalised) on the n
 * queries x [n, F] (labels y < way) over its first `way` outputs; adds
 * scale * d CE / d theta to dtheta. */
static double head_ce(const target_layer *ly, const float *theta, const float *x, const int *y,
                      int n, int way, float scale, float *dtheta)
{
    const int F = ly->in;
    const float *W = theta + ly->w_off, *bias = theta + ly->b_off;
    float *dW = dtheta + ly->w_off, *db = dtheta + ly->b_off;
    double loss = 0;
    float logit[D2_MAX_WAY];
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * F;
        float mx = -INFINITY;
        for (int c = 0; c < way; c++) {
            float s = bias[c];
            for (int j = 0; j < F; j++)
                s += W[(size_t)c * F + j] * xi[j];
            logit[c] = s;
            mx = s > mx ? s : mx;
        }
        double z = 0;
        for (int c = 0; c < way; c++)
            z += exp((double)(logit[c] - mx));
        loss += log(z) + mx - logit[y[i]];
        for (int c = 0; c < way; c++) {
            const float g = scale * (float)(exp((double)(logit[c] - mx)) / z - (c == y[i])) / n;
            db[c] += g;
            for (int j = 0; j < F; j++)
                dW[(size_t)c * F + j] += g * xi[j];
        }
    }
    return n ? loss / n : 0;
}

static int to_dev(const gtrain_qctx *cx, float *dst, const float *src, size_t n, d2_error *err)
{
    if (cx->be->ops->to_device(cx->be, dst, src, n * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "query term: cannot upload");
    return 0;
}

static int to_host(const gtrain_qctx *cx, float *dst, const float *src, size_t n, d2_error *err)
{
    if (cx->be->ops->to_host(cx->be, dst, src, n * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "query term: cannot read back");
    return 0;
}

/* Host scratch of one step's term, R rows. */
typedef struct qscratch {
    float *eh, *zh, *zr, *tok, *theta, *dtheta, *dz, *w, *ratio;
} qscratch;

static void qscratch_free(qscratch *s)
{
    free(s->eh);
    free(s->zh);
    free(s->zr);
    free(s->tok);
    free(s->theta);
    free(s->dtheta);
    free(s->dz);
    free(s->w);
    free(s->ratio);
}

static int qscratch_alloc(qscratch *s, const generator *g, int R, d2_error *err)
{
    const wtok *tk = &g->tok;
    const size_t rows = (size_t)R * tk->n_tok, in = (size_t)g->cfg.tok_latent + tk->n_layers;
    const size_t L = (size_t)g->cfg.latent, P = (size_t)g->cfg.P;
    memset(s, 0, sizeof *s);
    s->eh = malloc((size_t)R * L * sizeof(float));
    s->zh = malloc((size_t)R * L * sizeof(float));
    s->zr = malloc(rows * in * sizeof(float));
    s->tok = malloc(rows * (size_t)tk->len * sizeof(float));
    s->theta = malloc((size_t)R * P * sizeof(float));
    s->dtheta = calloc((size_t)R * P, sizeof(float));
    s->dz = malloc((size_t)R * L * sizeof(float));
    s->w = malloc((size_t)R * sizeof(float));
    s->ratio = malloc((size_t)R * sizeof(float));
    if (!s->eh || !s->zh || !s->zr || !s->tok || !s->theta || !s->dtheta || !s->dz || !s->w ||
        !s->ratio) {
        qscratch_free(s);
        return d2_fail(err, D2_ENOMEM, "stage 2: out of memory for the query term");
    }
    return 0;
}

/* x0 of each row from z_t and eps_hat, unstandardised into s->zh; the row's
 * weight w_r and d x0 / d eps_hat = -sb / sa into s->w, s->ratio. */
static void x0_latents(const generator *g, const gtrain_qrows *q, qscratch *s)
{
    const int L = g->cfg.latent, R = q->M * q->bn;
    for (int r = 0; r < R; r++) {
        const int m = r / q->bn, b = r % q->bn;
        const double ab = g->sched.alpha_bar[q->ts[m * q->B + q->b0 + b]];
        const float sa = (float)sqrt(ab), sb = (float)sqrt(1.0 - ab);
        s->w[r] = q->drop[q->b0 + b] ? 0.0f : (sa < sb ? sa / sb : 1.0f);
        s->ratio[r] = -sb / sa;
        for (int j = 0; j < L; j++) {
            const size_t k = (size_t)r * L + j;
            const float x0 = (q->zt[k] - sb * s->eh[k]) / sa;
            s->zh[k] = x0 * g->z_std[j] + g->z_mean[j];
        }
    }
}

/* The heads of s->zh through the VAE decoder (its cache in c, inputs in *zd),
 * unnormalised into s->theta. */
static int decode_heads(const gtrain_qctx *cx, int R, qscratch *s, resmlp_cache *c, d2_error *err)
{
    const generator *g = cx->g;
    const wtok *tk = &g->tok;
    const int rows = R * tk->n_tok, in = g->cfg.tok_latent + tk->n_layers, P = g->cfg.P;
    wtok_latent_rows(tk, s->zh, R, g->cfg.tok_latent, s->zr);
    float *zd = arena_floats(cx->ar, (size_t)rows * in);
    if (!zd)
        return d2_fail(err, D2_ENOMEM, "stage 2: scratch arena is full (query term)");
    int rc;
    if ((rc = to_dev(cx, zd, s->zr, (size_t)rows * in, err)) ||
        (rc = resmlp_forward(cx->be, &g->vae_dec, &g->vae_ps, cx->ar, c, zd, rows, err)) ||
        (rc = to_host(cx, s->tok, c->y, (size_t)rows * tk->len, err)))
        return rc;
    wtok_merge(tk, s->tok, R, s->theta);
    for (int r = 0; r < R; r++)
        for (int j = 0; j < P; j++)
            s->theta[(size_t)r * P + j] = s->theta[(size_t)r * P + j] * g->w_std[j] + g->w_mean[j];
    return 0;
}

/* Back through the decoder: s->dtheta (unnormalised heads) -> s->dz
 * (standardised latents, times d x0 / d eps_hat and the row weight). */
static int decode_backward(const gtrain_qctx *cx, int R, qscratch *s, const resmlp_cache *c,
                           d2_error *err)
{
    generator *g = cx->g;
    const wtok *tk = &g->tok;
    const int rows = R * tk->n_tok, l = g->cfg.tok_latent, in = l + tk->n_layers, P = g->cfg.P;
    const int L = g->cfg.latent;
    for (int r = 0; r < R; r++)
        for (int j = 0; j < P; j++)
            s->dtheta[(size_t)r * P + j] *= g->w_std[j];
    wtok_targets(tk, s->dtheta, R, s->tok);
    float *dy = arena_floats(cx->ar, (size_t)rows * tk->len);
    float *dx = arena_floats(cx->ar, (size_t)rows * in);
    if (!dy || !dx)
        return d2_fail(err, D2_ENOMEM, "stage 2: scratch arena is full (query term)");
    cx->be->ops->fill(cx->be, dx, 0.0f, (size_t)rows * in);
    int rc;
    if ((rc = to_dev(cx, dy, s->tok, (size_t)rows * tk->len, err)) ||
        (rc = resmlp_backward(cx->be, &g->vae_dec, &g->vae_ps, cx->ar, c, dx, dy, err)) ||
        (rc = to_host(cx, s->zr, dx, (size_t)rows * in, err)))
        return rc;
    paramset_zero_grad(&g->vae_ps); /* the VAE stays frozen */
    for (int r = 0; r < R; r++)
        for (int tkn = 0; tkn < tk->n_tok; tkn++)
            for (int k = 0; k < l; k++) {
                const int j = tkn * l + k;
                s->dz[(size_t)r * L + j] = s->zr[((size_t)r * tk->n_tok + tkn) * in + k] *
                                              g->z_std[j] * s->ratio[r];
            }
    return 0;
}

/* The rows' weighted cross-entropy, its gradient into s->dtheta; *qloss the
 * plain mean over the rows that count. */
static double rows_ce(const gtrain_qctx *cx, const gtrain_queries *q, const gtrain_qrows *rows,
                      qscratch *s, float *qloss)
{
    const int R = rows->M * rows->bn, P = cx->g->cfg.P, F = cx->g->spec.feat_dim;
    double sum = 0, obj = 0;
    int used = 0;
    for (int r = 0; r < R; r++) {
        const int b = rows->b0 + r % rows->bn;
        if (s->w[r] == 0.0f || q->n[b] == 0)
            continue;
        const size_t off = (size_t)b * q->per_task;
        const double ce = head_ce(&cx->g->spec.layers[0], s->theta + (size_t)r * P,
                                  q->x + off * F, q->y + off, q->n[b], rows->ways[b],
                                  cx->lambda * s->w[r] / R, s->dtheta + (size_t)r * P);
        sum += ce;
        obj += cx->lambda * s->w[r] / R * ce;
        used++;
    }
    *qloss = used ? (float)(sum / used) : 0.0f;
    return obj;
}

int gtrain_query_term(const gtrain_qctx *cx, const gtrain_queries *q, const gtrain_qrows *rows,
                      const float *eps_hat, float *deps, float *qloss, double *objective,
                      d2_error *err)
{
    const int R = rows->M * rows->bn, L = cx->g->cfg.latent;
    qscratch s;
    resmlp_cache c;
    int rc = qscratch_alloc(&s, cx->g, R, err);
    if (rc)
        return rc;
    if ((rc = to_host(cx, s.eh, eps_hat, (size_t)R * L, err)))
        goto out;
    x0_latents(cx->g, rows, &s);
    if ((rc = decode_heads(cx, R, &s, &c, err)))
        goto out;
    const double obj = rows_ce(cx, q, rows, &s, qloss);
    if (objective)
        *objective = obj;
    if (!deps || (rc = decode_backward(cx, R, &s, &c, err)))
        goto out;
    for (size_t k = 0; k < (size_t)R * L; k++)
        s.dz[k] *= s.w[k / (size_t)L] > 0.0f ? 1.0f : 0.0f; /* dropped rows: no term */
    float *dd = arena_floats(cx->ar, (size_t)R * L);
    if (!dd) {
        rc = d2_fail(err, D2_ENOMEM, "stage 2: scratch arena is full (query term)");
        goto out;
    }
    if (!(rc = to_dev(cx, dd, s.dz, (size_t)R * L, err)))
        cx->be->ops->axpby(cx->be, deps, 1.0f, dd, 1.0f, (size_t)R * L);
out:
    qscratch_free(&s);
    return rc;
}

int gtrain_query_grad(trainer *t, const gtrain_queries *q, const gtrain_qrows *rows,
                      const float *eps_hat, float *deps, float *qloss, d2_error *err)
{
    const gtrain_qctx cx = {.g = &t->g, .be = t->be, .ar = &t->ar, .lambda = t->cfg->query_loss};
    return gtrain_query_term(&cx, q, rows, eps_hat, deps, qloss, NULL, err);
}
