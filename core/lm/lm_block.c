/* lm_block.c - the projections (with optional LoRA) and one pre-norm transformer block,
 * forward and backward (lm.h). */
#include "lm_internal.h"

int lm_proj_forward(backend_t *be, const lm_model *m, const lm_proj *p, arena *ar,
                    lm_proj_cache *c, float *y, const float *x, int R, d2_error *err)
{
    const size_t mark = arena_mark(ar);
    const char *what = "lm projection forward";
    linear_forward(be, &p->base, m->ps, y, x, R);
    c->u = NULL;
    if (!p->lora)
        return 0;
    const float *A = m->lora->w + p->A, *Bm = m->lora->w + p->B;
    const int in = p->base.in, out = p->base.out, r = p->rank;
    LM_SCRATCH(c->u, (size_t)R * r, what);
    // u [R, r] = x A^T;  y += scale * u B^T
    be->ops->gemm(be, 0, 1, R, r, in, 1.0f, x, in, A, in, 0.0f, c->u, r);
    be->ops->gemm(be, 0, 1, R, out, r, p->scale, c->u, r, Bm, r, 1.0f, y, out);
    return 0;
}

int lm_proj_backward(backend_t *be, lm_model *m, const lm_proj *p, arena *ar,
                     const lm_proj_cache *c, float *dx, const float *dy, const float *x, int R,
                     d2_error *err)
{
    const backend_ops *op = be->ops;
    const int in = p->base.in, out = p->base.out, r = p->rank;
    if (!m->frozen) {
        linear_backward(be, &p->base, m->ps, dx, dy, x, R);
    } else if (dx) {
        op->gemm(be, 0, 0, R, in, out, 1.0f, dy, out, m->ps->w + p->base.w, in, 1.0f, dx, in);
    }
    if (!p->lora)
        return 0;
    const size_t mark = arena_mark(ar);
    const char *what = "lm projection backward";
    const float *A = m->lora->w + p->A, *Bm = m->lora->w + p->B;
    float *gA = m->lora->g + p->A, *gB = m->lora->g + p->B, *du;
    LM_SCRATCH(du, (size_t)R * r, what);
    // dB += scale dy^T u;  du = scale dy B;  dA += du^T x;  dx += du A
    op->gemm(be, 1, 0, out, r, R, p->scale, dy, out, c->u, r, 1.0f, gB, r);
    op->gemm(be, 0, 0, R, r, out, p->scale, dy, out, Bm, r, 0.0f, du, r);
    op->gemm(be, 1, 0, r, in, R, 1.0f, du, r, x, in, 1.0f, gA, in);
    if (dx)
        op->gemm(be, 0, 0, R, in, r, 1.0f, du, r, A, in, 1.0f, dx, in);
    arena_reset(ar, mark);
    return 0;
}

/* a = ln_1 x; q, k, v; y = attn; x1 = x + o_proj y */
static int lm_block_attn_fwd(backend_t *be, const lm_model *m, const lm_block *k,
                             arena *ar, lm_block_cache *c, const float *x, const float *mask,
                             int B, int T, d2_error *err)
{
    const int W = m->cfg.width, R = B * T;
    const size_t n = (size_t)R * W, mark = arena_mark(ar);
    const char *what = "lm block forward";
    int rc;
    LM_SCRATCH(c->a, n, what);
    LM_SCRATCH(c->m1, (size_t)R, what);
    LM_SCRATCH(c->r1, (size_t)R, what);
    LM_SCRATCH(c->q, n, what);
    LM_SCRATCH(c->k, n, what);
    LM_SCRATCH(c->v, n, what);
    LM_SCRATCH(c->y, n, what);
    LM_SCRATCH(c->x1, n, what);
    layernorm_fwd(be, &k->ln1, m->ps, c->a, c->m1, c->r1, x, R);
    if ((rc = lm_proj_forward(be, m, &k->q, ar, &c->pq, c->q, c->a, R, err)) ||
        (rc = lm_proj_forward(be, m, &k->k, ar, &c->pk, c->k, c->a, R, err)) ||
        (rc = lm_proj_forward(be, m, &k->v, ar, &c->pv, c->v, c->a, R, err)) ||
        (rc = lm_attn_forward(be, ar, &c->at, c->y, c->q, c->k, c->v, mask, B, T, W,
                              m->cfg.heads, err)) ||
        (rc = lm_proj_forward(be, m, &k->o, ar, &c->po, c->x1, c->y, R, err)))
        return rc;
    be->ops->axpby(be, c->x1, 1.0f, x, 1.0f, n);
    return 0;
}

int lm_block_forward(backend_t *be, const lm_model *m, int l, arena *ar, lm_block_cache *c,
                     const float *x, const float *mask, int B, int T, d2_error *err)
{
    const lm_block *k = &m->blk[l];
    const int W = m->cfg.width, R = B * T;
    const size_t n = (size_t)R * W, mark = arena_mark(ar);
    const char *what = "lm block forward";
    int rc = lm_block_attn_fwd(be, m, k, ar, c, x, mask, B, T, err);
    if (rc)
        return rc;
    LM_SCRATCH(c->mm, n, what);
    LM_SCRATCH(c->m2, (size_t)R, what);
    LM_SCRATCH(c->r2, (size_t)R, what);
    LM_SCRATCH(c->h, 4 * n, what);
    LM_SCRATCH(c->g, 4 * n, what);
    LM_SCRATCH(c->out, n, what);
    // out = x1 + fc_out(gelu(fc_in(ln_2 x1)))
    layernorm_fwd(be, &k->ln2, m->ps, c->mm, c->m2, c->r2, c->x1, R);
    if ((rc = lm_proj_forward(be, m, &k->fc_in, ar, &c->pi, c->h, c->mm, R, err)))
        return rc;
    be->ops->act_forward(be, ACT_GELU, c->g, c->h, 4 * n);
    if ((rc = lm_proj_forward(be, m, &k->fc_out, ar, &c->pf, c->out, c->g, R, err)))
        return rc;
    be->ops->axpby(be, c->out, 1.0f, c->x1, 1.0f, n);
    return 0;
}

/* dx1 (overwritten) = d(out)/d(x1) . dout through the MLP branch and the residual */
static int lm_block_mlp_bwd(backend_t *be, lm_model *m, const lm_block *k, arena *ar,
                            const lm_block_cache *c, float *dx1, const float *dout, int R,
                            d2_error *err)
{
    const size_t n = (size_t)R * m->cfg.width, mark = arena_mark(ar);
    const char *what = "lm block backward";
    float *dg, *dh, *dmm;
    int rc;
    LM_ZEROED(dg, 4 * n, what);
    LM_ZEROED(dh, 4 * n, what);
    LM_ZEROED(dmm, n, what);
    be->ops->copy(be, dx1, dout, n * sizeof(float));
    if ((rc = lm_proj_backward(be, m, &k->fc_out, ar, &c->pf, dg, dout, c->g, R, err)))
        goto out;
    be->ops->act_backward(be, ACT_GELU, dh, dg, c->h, 4 * n);
    if ((rc = lm_proj_backward(be, m, &k->fc_in, ar, &c->pi, dmm, dh, c->mm, R, err)))
        goto out;
    layernorm_bwd(be, &k->ln2, m->ps, dx1, dmm, c->x1, c->m2, c->r2, R);
out:
    arena_reset(ar, mark);
    return rc;
}

int lm_block_backward(backend_t *be, lm_model *m, int l, arena *ar, const lm_block_cache *c,
                      float *dx, const float *dout, const float *x, int B, int T, d2_error *err)
{
    const lm_block *k = &m->blk[l];
    const int W = m->cfg.width, R = B * T;
    const size_t n = (size_t)R * W, mark = arena_mark(ar);
    const char *what = "lm block backward";
    float *dx1, *dy, *dq, *dk, *dv, *da;
    int rc;
    LM_SCRATCH(dx1, n, what);
    LM_ZEROED(dy, n, what);
    LM_SCRATCH(dq, n, what);
    LM_SCRATCH(dk, n, what);
    LM_SCRATCH(dv, n, what);
    LM_ZEROED(da, n, what);
    if ((rc = lm_block_mlp_bwd(be, m, k, ar, c, dx1, dout, R, err)) ||
        (rc = lm_proj_backward(be, m, &k->o, ar, &c->po, dy, dx1, c->y, R, err)) ||
        (rc = lm_attn_backward(be, ar, &c->at, dq, dk, dv, dy, B, T, W, m->cfg.heads, err)) ||
        (rc = lm_proj_backward(be, m, &k->q, ar, &c->pq, da, dq, c->a, R, err)) ||
        (rc = lm_proj_backward(be, m, &k->k, ar, &c->pk, da, dk, c->a, R, err)) ||
        (rc = lm_proj_backward(be, m, &k->v, ar, &c->pv, da, dv, c->a, R, err)))
        goto out;
    layernorm_bwd(be, &k->ln1, m->ps, dx, da, x, c->m1, c->r1, R);
    be->ops->axpby(be, dx, 1.0f, dx1, 1.0f, n);
out:
    arena_reset(ar, mark);
    return rc;
}
