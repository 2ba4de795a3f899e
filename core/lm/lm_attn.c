/* lm_attn.c - causal multi-head self-attention with an additive mask (lm.h).
 * Heads are split with permute_0213 ([B, T, H, dh] -> [B, H, T, dh]); the per-head
 * products are one gemm_batched over the B*H problems; masked scores are -1e30, whose
 * softmax weight is exactly 0, so their gradient is 0 too. */
#include <math.h>

#include "lm_internal.h"

int lm_oom(const arena *ar, const char *what, d2_error *err)
{
    return d2_fail(err, D2_ENOMEM, "%s: arena too small (%zu bytes; needs at least %zu here)",
                   what, ar->cap, ar->peak);
}

/* [B, T, H, dh] -> [B, H, T, dh] into out, or out = in for one head */
static void lm_split(backend_t *be, float **out, float *buf, const float *in, int B, int T,
                     int H, int dh)
{
    if (H == 1) {
        *out = (float *)in;
        return;
    }
    be->ops->permute_0213(be, buf, in, B, T, H, dh);
    *out = buf;
}

int lm_attn_forward(backend_t *be, arena *ar, lm_attn_cache *c, float *y, const float *q,
                    const float *k, const float *v, const float *mask, int B, int T, int W,
                    int H, d2_error *err)
{
    const backend_ops *op = be->ops;
    const int dh = W / H, BH = B * H;
    const size_t n = (size_t)B * T * W, na = (size_t)BH * T * T;
    const long long sq = (long long)T * dh, sa = (long long)T * T;
    const size_t mark = arena_mark(ar);
    const char *what = "lm attention forward";
    float *bq = NULL, *bk = NULL, *bv = NULL, *scores, *oh;
    if (H > 1) {
        LM_SCRATCH(bq, n, what);
        LM_SCRATCH(bk, n, what);
        LM_SCRATCH(bv, n, what);
    }
    LM_SCRATCH(scores, na, what);
    LM_SCRATCH(c->att, na, what);
    lm_split(be, &c->qh, bq, q, B, T, H, dh);
    lm_split(be, &c->kh, bk, k, B, T, H, dh);
    lm_split(be, &c->vh, bv, v, B, T, H, dh);
    // scores [BH, T, T] = qh kh^T + mask;  att = softmax(scores / sqrt(dh))
    op->gemm_batched(be, 0, 1, T, T, dh, 1.0f, c->qh, dh, sq, c->kh, dh, sq, 0.0f, scores, T,
                     sa, BH);
    op->axpby(be, scores, 1.0f, mask, 1.0f, na);
    op->softmax_forward(be, c->att, scores, 1.0f / sqrtf((float)dh), BH * T, T);
    // oh [BH, T, dh] = att vh; y = merge(oh)
    if (H > 1) {
        LM_SCRATCH(oh, n, what);
        op->gemm_batched(be, 0, 0, T, dh, T, 1.0f, c->att, T, sa, c->vh, dh, sq, 0.0f, oh, dh,
                         sq, BH);
        op->permute_0213(be, y, oh, B, H, T, dh);
    } else {
        op->gemm_batched(be, 0, 0, T, dh, T, 1.0f, c->att, T, sa, c->vh, dh, sq, 0.0f, y, dh,
                         sq, BH);
    }
    return 0;
}

/* [B, H, T, dh] -> [B, T, H, dh] into out (overwritten) */
static void lm_merge(backend_t *be, float *out, const float *in, int B, int T, int H, int dh)
{
    if (H == 1)
        be->ops->copy(be, out, in, (size_t)B * T * dh * sizeof(float));
    else
        be->ops->permute_0213(be, out, in, B, H, T, dh);
}

int lm_attn_backward(backend_t *be, arena *ar, const lm_attn_cache *c, float *dq, float *dk,
                     float *dv, const float *dy, int B, int T, int W, int H, d2_error *err)
{
    const backend_ops *op = be->ops;
    const int dh = W / H, BH = B * H;
    const size_t n = (size_t)B * T * W, na = (size_t)BH * T * T;
    const long long sq = (long long)T * dh, sa = (long long)T * T;
    const size_t mark = arena_mark(ar);
    const char *what = "lm attention backward";
    float *doh, *datt, *ds, *dqh, *dkh, *dvh;
    LM_SCRATCH(doh, n, what);
    LM_SCRATCH(datt, na, what);
    LM_ZEROED(ds, na, what);
    LM_SCRATCH(dqh, n, what);
    LM_SCRATCH(dkh, n, what);
    LM_SCRATCH(dvh, n, what);
    if (H > 1)
        op->permute_0213(be, doh, dy, B, T, H, dh);
    else
        op->copy(be, doh, dy, n * sizeof(float));
    // datt = doh vh^T; dvh = att^T doh
    op->gemm_batched(be, 0, 1, T, T, dh, 1.0f, doh, dh, sq, c->vh, dh, sq, 0.0f, datt, T, sa,
                     BH);
    op->gemm_batched(be, 1, 0, T, dh, T, 1.0f, c->att, T, sa, doh, dh, sq, 0.0f, dvh, dh, sq,
                     BH);
    op->softmax_backward(be, ds, datt, c->att, 1.0f / sqrtf((float)dh), BH * T, T);
    // dqh = ds kh; dkh = ds^T qh
    op->gemm_batched(be, 0, 0, T, dh, T, 1.0f, ds, T, sa, c->kh, dh, sq, 0.0f, dqh, dh, sq, BH);
    op->gemm_batched(be, 1, 0, T, dh, T, 1.0f, ds, T, sa, c->qh, dh, sq, 0.0f, dkh, dh, sq, BH);
    lm_merge(be, dq, dqh, B, T, H, dh);
    lm_merge(be, dk, dkh, B, T, H, dh);
    lm_merge(be, dv, dvh, B, T, H, dh);
    arena_reset(ar, mark);
    return 0;
}
