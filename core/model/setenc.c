/* setenc.c - Set Transformer dataset encoder (see setenc.h). */
#include "setenc.h"

#include <stdio.h>

static int oom(d2_error *err, const arena *ar, const char *what)
{
    return d2_fail(err, D2_ENOMEM, "dataset encoder %s: scratch arena of %zu bytes is full",
                   what, ar->cap);
}

int setenc_init(setenc *e, paramset *ps, const char *name, const setenc_cfg *cfg, d2_error *err)
{
    if (cfg->feat_dim <= 0 || cfg->d <= 0 || cfg->heads <= 0 || cfg->d % cfg->heads ||
        cfg->inducing <= 0 || cfg->way <= 0 || cfg->cond_dim <= 0)
        return d2_fail(err, D2_EINVAL, "dataset encoder: bad configuration");
    e->cfg = *cfg;
    char n[PARAM_NAME_LEN];
    int rc;
    snprintf(n, sizeof n, "%s.fin", name);
    if ((rc = linear_init(&e->fin, ps, n, cfg->feat_dim, cfg->d, 1, 1.0f, err)))
        return rc;
    snprintf(n, sizeof n, "%s.isab1", name);
    if ((rc = isab_init(&e->i1, ps, n, cfg->d, cfg->d, cfg->heads, cfg->inducing, 1, err)))
        return rc;
    snprintf(n, sizeof n, "%s.isab2", name);
    if ((rc = isab_init(&e->i2, ps, n, cfg->d, cfg->d, cfg->heads, cfg->inducing, 1, err)))
        return rc;
    snprintf(n, sizeof n, "%s.pma", name);
    if ((rc = pma_init(&e->p, ps, n, cfg->d, cfg->d, cfg->heads, 1, 1, err)))
        return rc;
    snprintf(n, sizeof n, "%s.fmean", name);
    if ((rc = linear_init(&e->fmean, ps, n, cfg->feat_dim, cfg->d, 1, 1.0f, err)))
        return rc;
    e->pos = 0;
    snprintf(n, sizeof n, "%s.pos", name);
    int64_t shape[2] = {cfg->way, cfg->d};
    if (!cfg->per_class && (rc = paramset_add(ps, n, 2, shape, INIT_NORMAL, 0.5f, &e->pos, err)))
        return rc;
    if (cfg->absent) {
        snprintf(n, sizeof n, "%s.absent", name);
        int64_t ashape[1] = {cfg->d};
        if ((rc = paramset_add(ps, n, 1, ashape, INIT_NORMAL, 0.5f, &e->absent, err)))
            return rc;
    }
    snprintf(n, sizeof n, "%s.sab", name);
    if ((rc = sab_init(&e->s, ps, n, cfg->d, cfg->d, cfg->heads, 1, err)))
        return rc;
    snprintf(n, sizeof n, "%s.fout", name);
    const int fout_in = cfg->per_class ? cfg->d : cfg->way * cfg->d;
    return linear_init(&e->fout, ps, n, fout_in, cfg->cond_dim, 1, 1.0f, err);
}

/* The tokens of absent classes (c >= ways[b]) become the absent token. */
static void put_absent(backend_t *be, const setenc *e, const paramset *ps, float *tok,
                       const int *ways, int B, int N)
{
    const int d = e->cfg.d;
    for (int b = 0; ways && b < B; b++)
        for (int c = ways[b]; c < N; c++)
            be->ops->copy(be, tok + ((size_t)b * N + c) * d, ps->w + e->absent,
                          (size_t)d * sizeof(float));
}

/* Backward of put_absent: those rows' gradient goes to the absent token and
 * nowhere else. */
static void absent_backward(backend_t *be, const setenc *e, paramset *ps, float *dtok,
                            const int *ways, int B, int N)
{
    const int d = e->cfg.d;
    for (int b = 0; ways && b < B; b++)
        for (int c = ways[b]; c < N; c++) {
            float *row = dtok + ((size_t)b * N + c) * d;
            be->ops->axpby(be, ps->g + e->absent, 1.0f, row, 1.0f, (size_t)d);
            be->ops->fill(be, row, 0.0f, (size_t)d);
        }
}

static int check_ways(const setenc *e, const int *ways, int B, int N, d2_error *err)
{
    const setenc_cfg *cfg = &e->cfg;
    if (N != cfg->way)
        return d2_fail(err, D2_EINVAL, "dataset encoder: %d classes given, built for %d", N,
                       cfg->way);
    for (int b = 0; ways && b < B; b++)
        if (ways[b] < 1 || ways[b] > N || (ways[b] < N && !cfg->absent))
            return d2_fail(err, D2_EINVAL, "dataset encoder: task %d has %d classes; this "
                           "encoder reads exactly %d", b, ways[b], N);
    return 0;
}

int setenc_forward(backend_t *be, const setenc *e, const paramset *ps, arena *ar,
                   setenc_cache *c, const float *X, int B, int N, int K, const int *ways,
                   d2_error *err)
{
    const setenc_cfg *cfg = &e->cfg;
    const int d = cfg->d, F = cfg->feat_dim, BN = B * N;
    int rc = check_ways(e, ways, B, N, err);
    if (rc)
        return rc;
    c->B = B;
    c->N = N;
    c->K = K;
    c->X = X;
    c->ways = ways;
    if (!(c->h0 = arena_floats_uninit(ar, (size_t)BN * K * d)))
        return oom(err, ar, "forward");
    linear_forward(be, &e->fin, ps, c->h0, X, BN * K);
    if ((rc = isab_forward(be, &e->i1, ps, ar, &c->c1, c->h0, K, BN, err)))
        return rc;
    if ((rc = isab_forward(be, &e->i2, ps, ar, &c->c2, c->c1.out, K, BN, err)))
        return rc;
    if ((rc = pma_forward(be, &e->p, ps, ar, &c->cp, c->c2.out, K, BN, err)))
        return rc;
    // class means: xm[s] = (1/K) * ones[1,K] @ X_s[K,F]
    c->ones = arena_floats_uninit(ar, (size_t)K);
    c->xm = arena_floats_uninit(ar, (size_t)BN * F);
    c->tok = arena_floats_uninit(ar, (size_t)BN * d);
    float *posrep = arena_floats_uninit(ar, (size_t)BN * d);
    if (!c->ones || !c->xm || !c->tok || !posrep)
        return oom(err, ar, "forward");
    be->ops->fill(be, c->ones, 1.0f / (float)K, (size_t)K);
    be->ops->gemm_batched(be, 0, 0, 1, F, K, 1.0f, c->ones, K, 0, X, F, (long long)K * F, 0.0f,
                          c->xm, F, F, BN);
    linear_forward(be, &e->fmean, ps, c->tok, c->xm, BN);
    be->ops->axpby(be, c->tok, 1.0f, c->cp.out, 1.0f, (size_t)BN * d);
    put_absent(be, e, ps, c->tok, ways, B, N);
    if (!cfg->per_class) {
        be->ops->repeat_rows(be, posrep, ps->w + e->pos, B, N, d);
        be->ops->axpby(be, c->tok, 1.0f, posrep, 1.0f, (size_t)BN * d);
    }
    if ((rc = sab_forward(be, &e->s, ps, ar, &c->cs, c->tok, N, B, err)))
        return rc;
    if (!(c->cond = arena_floats_uninit(ar, (size_t)B * setenc_cond_len(cfg))))
        return oom(err, ar, "forward");
    // per class: fout on each of the B*N class rows; pooled: on B flattened rows
    linear_forward(be, &e->fout, ps, c->cond, c->cs.out, cfg->per_class ? BN : B);
    return 0;
}

int setenc_backward(backend_t *be, const setenc *e, paramset *ps, arena *ar,
                    const setenc_cache *c, const float *dcond, d2_error *err)
{
    const setenc_cfg *cfg = &e->cfg;
    const int d = cfg->d, B = c->B, N = c->N, K = c->K, BN = B * N;
    size_t mark = arena_mark(ar);
    float *dflat = arena_floats_uninit(ar, (size_t)BN * d); /* linear_backward_set writes it */
    float *dtok = arena_floats(ar, (size_t)BN * d);
    float *dh2 = arena_floats(ar, (size_t)BN * K * d);
    float *dh1 = arena_floats(ar, (size_t)BN * K * d);
    float *dh0 = arena_floats(ar, (size_t)BN * K * d);
    if (!dflat || !dtok || !dh2 || !dh1 || !dh0)
        return d2_fail(err, D2_ENOMEM, "dataset encoder backward: scratch arena is full");
    int rc;
    linear_backward_set(be, &e->fout, ps, dflat, dcond, c->cs.out, cfg->per_class ? BN : B);
    if ((rc = sab_backward(be, &e->s, ps, ar, &c->cs, dtok, dflat, c->tok, err)))
        return rc;
    if (!cfg->per_class)
        be->ops->repeat_rows_backward(be, ps->g + e->pos, dtok, B, N, d);
    absent_backward(be, e, ps, dtok, c->ways, B, N);
    linear_backward(be, &e->fmean, ps, NULL, dtok, c->xm, BN);
    if ((rc = pma_backward(be, &e->p, ps, ar, &c->cp, dh2, dtok, c->c2.out, err)))
        return rc;
    if ((rc = isab_backward(be, &e->i2, ps, ar, &c->c2, dh1, dh2, c->c1.out, err)))
        return rc;
    if ((rc = isab_backward(be, &e->i1, ps, ar, &c->c1, dh0, dh1, c->h0, err)))
        return rc;
    linear_backward(be, &e->fin, ps, NULL, dh0, c->X, BN * K);
    arena_reset(ar, mark);
    return 0;
}

int setenc_encode_ragged(backend_t *be, const setenc *e, const paramset *ps, arena *ar,
                         const float *X, const int *counts, int N, float *cond, d2_error *err)
{
    const setenc_cfg *cfg = &e->cfg;
    const int d = cfg->d, F = cfg->feat_dim;
    if (N != cfg->way)
        return d2_fail(err, D2_EINVAL, "dataset encoder: %d classes given, built for %d", N,
                       cfg->way);
    for (int c = 0; c < N; c++)
        if (counts[c] < 0 || (counts[c] == 0 && (!cfg->absent || c == 0 ||
                                                 (c + 1 < N && counts[c + 1] > 0))))
            return d2_fail(err, D2_EINVAL, "dataset encoder: class %d has no sample%s", c,
                           cfg->absent ? " (absent classes must be the last ones)" : "");
    size_t mark = arena_mark(ar);
    float *tok = arena_floats_uninit(ar, (size_t)N * d);
    float *xm = arena_floats_uninit(ar, (size_t)F);
    if (!tok || !xm)
        return oom(err, ar, "forward");
    int rc;
    size_t row = 0;
    for (int c = 0; c < N; c++) {
        const int K = counts[c];
        float *t = tok + (size_t)c * d;
        if (K == 0) { // absent (checked above)
            be->ops->copy(be, t, ps->w + e->absent, (size_t)d * sizeof(float));
            if (!cfg->per_class)
                be->ops->axpby(be, t, 1.0f, ps->w + e->pos + (size_t)c * d, 1.0f, (size_t)d);
            continue;
        }
        size_t inner = arena_mark(ar);
        const float *Xc = X + row * F;
        float *h0 = arena_floats_uninit(ar, (size_t)K * d);
        float *ones = arena_floats_uninit(ar, (size_t)K);
        if (!h0 || !ones)
            return oom(err, ar, "forward");
        isab_cache c1, c2;
        pma_cache cp;
        linear_forward(be, &e->fin, ps, h0, Xc, K);
        if ((rc = isab_forward(be, &e->i1, ps, ar, &c1, h0, K, 1, err)) ||
            (rc = isab_forward(be, &e->i2, ps, ar, &c2, c1.out, K, 1, err)) ||
            (rc = pma_forward(be, &e->p, ps, ar, &cp, c2.out, K, 1, err)))
            return rc;
        be->ops->fill(be, ones, 1.0f / (float)K, (size_t)K);
        be->ops->gemm(be, 0, 0, 1, F, K, 1.0f, ones, K, Xc, F, 0.0f, xm, F);
        linear_forward(be, &e->fmean, ps, t, xm, 1);
        be->ops->axpby(be, t, 1.0f, cp.out, 1.0f, (size_t)d);
        if (!cfg->per_class)
            be->ops->axpby(be, t, 1.0f, ps->w + e->pos + (size_t)c * d, 1.0f, (size_t)d);
        arena_reset(ar, inner);
        row += (size_t)K;
    }
    sab_cache cs;
    if ((rc = sab_forward(be, &e->s, ps, ar, &cs, tok, N, 1, err)))
        return rc;
    linear_forward(be, &e->fout, ps, cond, cs.out, cfg->per_class ? N : 1);
    arena_reset(ar, mark);
    return 0;
}
