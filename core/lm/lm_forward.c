/* lm_forward.c - the whole model over a packed batch, forward and backward, and one
 * batch's loss (lm.h). Embeddings are one-hot products (tokens [R, 257] x wte, positions
 * [R, T] x wpe), so every op is a backend op and the model runs on any backend. */
#include "lm_internal.h"

/* upload n floats of host memory into fresh arena memory */
static int lm_upload(backend_t *be, arena *ar, float **dst, const float *src, size_t n,
                     d2_error *err)
{
    const size_t mark = arena_mark(ar);
    const char *what = "lm batch upload";
    LM_SCRATCH(*dst, n, what);
    if (be->ops->to_device(be, *dst, src, n * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "lm: uploading a batch failed");
    return 0;
}

int lm_forward(backend_t *be, const lm_model *m, arena *ar, lm_cache *c, const lm_batch *b,
               d2_error *err)
{
    const backend_ops *op = be->ops;
    const int B = b->B, T = b->T, W = m->cfg.width, R = B * T;
    const size_t n = (size_t)R * W, mark = arena_mark(ar);
    const char *what = "lm forward";
    int rc;
    if (T != m->cfg.context || b->heads != m->cfg.heads)
        return d2_fail(err, D2_EINVAL, "lm: a batch of context %d, %d heads for a model of %d, "
                       "%d", T, b->heads, m->cfg.context, m->cfg.heads);
    c->B = B;
    c->T = T;
    if ((rc = lm_upload(be, ar, &c->tok1h, b->tok1h, (size_t)R * LM_VOCAB_IN, err)) ||
        (rc = lm_upload(be, ar, &c->pos1h, b->pos1h, (size_t)R * T, err)) ||
        (rc = lm_upload(be, ar, &c->mask, b->mask, (size_t)B * b->heads * T * T, err)))
        return rc;
    LM_SCRATCH(c->x0, n, what);
    op->gemm(be, 0, 0, R, W, LM_VOCAB_IN, 1.0f, c->tok1h, LM_VOCAB_IN, m->ps->w + m->wte, W,
             0.0f, c->x0, W);
    op->gemm(be, 0, 0, R, W, T, 1.0f, c->pos1h, T, m->ps->w + m->wpe, W, 1.0f, c->x0, W);
    const float *x = c->x0;
    for (int l = 0; l < m->cfg.layers; l++) {
        if ((rc = lm_block_forward(be, m, l, ar, &c->blk[l], x, c->mask, B, T, err)))
            return rc;
        x = c->blk[l].out;
    }
    LM_SCRATCH(c->xf, n, what);
    LM_SCRATCH(c->mf, (size_t)R, what);
    LM_SCRATCH(c->rf, (size_t)R, what);
    LM_SCRATCH(c->logits, (size_t)R * LM_VOCAB_OUT, what);
    layernorm_fwd(be, &m->lnf, m->ps, c->xf, c->mf, c->rf, x, R);
    linear_forward(be, &m->head, m->ps, c->logits, c->xf, R);
    return 0;
}

int lm_backward(backend_t *be, lm_model *m, arena *ar, const lm_cache *c, const float *dlogits,
                d2_error *err)
{
    const backend_ops *op = be->ops;
    const int B = c->B, T = c->T, W = m->cfg.width, R = B * T, L = m->cfg.layers;
    const size_t n = (size_t)R * W, mark = arena_mark(ar);
    const char *what = "lm backward";
    float *dxf, *dx, *dprev;
    int rc = 0;
    LM_ZEROED(dxf, n, what);
    LM_ZEROED(dx, n, what);
    LM_SCRATCH(dprev, n, what);
    if (!m->frozen)
        op->gemm(be, 1, 0, LM_VOCAB_OUT, W, R, 1.0f, dlogits, LM_VOCAB_OUT, c->xf, W, 1.0f,
                 m->ps->g + m->head.w, W);
    op->gemm(be, 0, 0, R, W, LM_VOCAB_OUT, 1.0f, dlogits, LM_VOCAB_OUT, m->ps->w + m->head.w, W,
             0.0f, dxf, W);
    layernorm_bwd(be, &m->lnf, m->ps, dx, dxf, c->blk[L - 1].out, c->mf, c->rf, R);
    for (int l = L - 1; l >= 0 && !rc; l--) {
        const float *x = l ? c->blk[l - 1].out : c->x0;
        op->fill(be, dprev, 0.0f, n);
        rc = lm_block_backward(be, m, l, ar, &c->blk[l], dprev, dx, x, B, T, err);
        float *t = dx;
        dx = dprev;
        dprev = t;
    }
    if (!rc && !m->frozen) {
        op->gemm(be, 1, 0, LM_VOCAB_IN, W, R, 1.0f, c->tok1h, LM_VOCAB_IN, dx, W, 1.0f,
                 m->ps->g + m->wte, W);
        op->gemm(be, 1, 0, T, W, R, 1.0f, c->pos1h, T, dx, W, 1.0f, m->ps->g + m->wpe, W);
    }
    arena_reset(ar, mark);
    return rc;
}

size_t lm_arena_bytes(const lm_config *c, int B, int rank)
{
    const size_t R = (size_t)B * c->context, n = R * (size_t)c->width;
    const size_t att = (size_t)B * c->heads * c->context * c->context;
    size_t per_block = 20 * n + 2 * att + 4 * R + 8 * R * (size_t)(rank > 0 ? rank : 0);
    size_t fwd = R * (LM_VOCAB_IN + c->context) + att + n + (size_t)c->layers * per_block +
                 n + 2 * R + R * LM_VOCAB_OUT;
    size_t bwd = 4 * n + 12 * n + 3 * att + R * LM_VOCAB_OUT;
    return (fwd + bwd) * sizeof(float) + ((size_t)8 << 20);
}

int lm_run_batch(backend_t *be, lm_model *m, arena *ar, lm_batch *b, float *logits_h,
                 float *dl_h, int train, double *nats, int *count, d2_error *err)
{
    const size_t mark = arena_mark(ar), nl = (size_t)b->B * b->T * LM_VOCAB_OUT;
    const char *what = "lm batch";
    lm_cache c;
    float *dl = NULL;
    lm_batch_encode(b);
    int rc = lm_forward(be, m, ar, &c, b, err);
    if (!rc && be->ops->to_host(be, logits_h, c.logits, nl * sizeof(float)))
        rc = backend_explain(be, d2_fail(err, D2_EDEVICE, "lm: reading logits failed"), err);
    if (!rc)
        *nats = lm_loss_host(logits_h, b->labels, b->B * b->T, train ? dl_h : NULL, 1.0f,
                             count);
    if (!rc && train) {
        LM_SCRATCH(dl, nl, what);
        if (be->ops->to_device(be, dl, dl_h, nl * sizeof(float)))
            rc = backend_explain(be, d2_fail(err, D2_EDEVICE, "lm: uploading dlogits failed"),
                                 err);
        if (!rc)
            rc = lm_backward(be, m, ar, &c, dl, err);
    }
    arena_reset(ar, mark);
    return rc;
}
