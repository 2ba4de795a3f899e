/* conv.c - 2-D convolution on any backend, from the im2col/col2im ops, one GEMM and a
 * permute (the layout change between [OC, B, OH*OW] and NCHW). */
#include "backend.h"

int conv_geom_make(conv_geom *g, int B, int C, int H, int W, int K, int stride, int pad,
                   d2_error *err)
{
    if (B <= 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || stride <= 0 || pad < 0)
        return d2_fail(err, D2_EINVAL,
                       "conv: sizes must be positive (B %d, C %d, H %d, W %d, kernel %d, "
                       "stride %d, padding %d)", B, C, H, W, K, stride, pad);
    if (H + 2 * pad < K || W + 2 * pad < K)
        return d2_fail(err, D2_EINVAL, "conv: kernel %d is larger than the padded input %dx%d",
                       K, H + 2 * pad, W + 2 * pad);
    g->B = B;
    g->C = C;
    g->H = H;
    g->W = W;
    g->KH = K;
    g->KW = K;
    g->stride = stride;
    g->pad = pad;
    g->OH = (H + 2 * pad - K) / stride + 1;
    g->OW = (W + 2 * pad - K) / stride + 1;
    return 0;
}

// y: [B, OC, OH, OW] = w: [OC, C*KH*KW] @ im2col(x) (then [OC, B, OHW] -> [B, OC, OHW])
void conv2d_forward(backend_t *be, float *y, float *col, float *tmp, const float *x,
                    const float *w, int OC, const conv_geom *g)
{
    const int ckk = g->C * g->KH * g->KW, ohw = g->OH * g->OW, n = g->B * ohw;
    be->ops->im2col(be, col, x, g);
    be->ops->gemm(be, 0, 0, OC, n, ckk, 1.0f, w, ckk, col, n, 0.0f, tmp, n);
    be->ops->permute_0213(be, y, tmp, 1, OC, g->B, ohw);
}

// dw: [OC, CKK] += dy' @ col^T; dx += col2im(w^T @ dy'), dy' = dy as [OC, B*OHW]
void conv2d_backward(backend_t *be, float *dx, float *dw, float *tmp, float *dcol,
                     const float *dy, const float *col, const float *w, int OC,
                     const conv_geom *g)
{
    const int ckk = g->C * g->KH * g->KW, ohw = g->OH * g->OW, n = g->B * ohw;
    be->ops->permute_0213(be, tmp, dy, 1, g->B, OC, ohw);
    be->ops->gemm(be, 0, 1, OC, ckk, n, 1.0f, tmp, n, col, n, 1.0f, dw, ckk);
    if (!dx)
        return;
    be->ops->gemm(be, 1, 0, ckk, n, OC, 1.0f, w, ckk, tmp, n, 0.0f, dcol, n);
    be->ops->col2im(be, dx, dcol, g);
}
