/* backend_cpu_conv.c - the CPU backend's convolution layout ops (im2col, col2im), 2x2 max
 * pool, batch norm and global average pool (NCHW). Each kernel runs over a range of rows,
 * planes or channels that cpu_pool_run splits over threads; no two parts write the same
 * output. Batch-norm statistics are summed in double. */
#include "backend_cpu_internal.h"

#include <math.h>


typedef struct conv_args {
    float *out;
    const float *in;
    const conv_geom *g;
} conv_args;

// rows [lo, hi) of col: [C*KH*KW, B*OH*OW], row = (c*KH + i)*KW + j
static void k_im2col(void *p, size_t lo, size_t hi, int part)
{
    const conv_args *a = p;
    const conv_geom *g = a->g;
    const size_t ohw = (size_t)g->OH * g->OW;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const int j = (int)(r % g->KW), i = (int)(r / g->KW % g->KH), c = (int)(r / g->KW / g->KH);
        float *row = a->out + r * g->B * ohw;
        for (int b = 0; b < g->B; b++) {
            const float *plane = a->in + ((size_t)b * g->C + c) * g->H * g->W;
            for (int oh = 0; oh < g->OH; oh++) {
                const int ih = oh * g->stride - g->pad + i;
                float *o = row + (size_t)b * ohw + (size_t)oh * g->OW;
                if (ih < 0 || ih >= g->H) {
                    memset(o, 0, (size_t)g->OW * sizeof(float));
                    continue;
                }
                const float *src = plane + (size_t)ih * g->W;
                for (int ow = 0; ow < g->OW; ow++) {
                    const int iw = ow * g->stride - g->pad + j;
                    o[ow] = iw >= 0 && iw < g->W ? src[iw] : 0.0f;
                }
            }
        }
    }
}

void cpu_im2col(backend_t *be, float *col, const float *x, const conv_geom *g)
{
    conv_args a = {.out = col, .in = x, .g = g};
    size_t rows = (size_t)g->C * g->KH * g->KW, cols = (size_t)g->B * g->OH * g->OW;
    cpu_pool_run(cpu_pool_of(be), k_im2col, &a, rows, cpu_min_rows(cols), 1);
}

// planes [lo, hi) of dx: [B*C, H, W] += the col entries read from them
static void k_col2im(void *p, size_t lo, size_t hi, int part)
{
    const conv_args *a = p;
    const conv_geom *g = a->g;
    const size_t ohw = (size_t)g->OH * g->OW, n = (size_t)g->B * ohw;
    (void)part;
    for (size_t pl = lo; pl < hi; pl++) {
        const int b = (int)(pl / g->C), c = (int)(pl % g->C);
        float *plane = a->out + pl * g->H * g->W;
        for (int i = 0; i < g->KH; i++)
            for (int j = 0; j < g->KW; j++) {
                const float *row = a->in + ((size_t)(c * g->KH + i) * g->KW + j) * n + b * ohw;
                for (int oh = 0; oh < g->OH; oh++) {
                    const int ih = oh * g->stride - g->pad + i;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    float *dst = plane + (size_t)ih * g->W;
                    const float *src = row + (size_t)oh * g->OW;
                    for (int ow = 0; ow < g->OW; ow++) {
                        const int iw = ow * g->stride - g->pad + j;
                        if (iw >= 0 && iw < g->W)
                            dst[iw] += src[ow];
                    }
                }
            }
    }
}

void cpu_col2im(backend_t *be, float *dx, const float *col, const conv_geom *g)
{
    conv_args a = {.out = dx, .in = col, .g = g};
    size_t planes = (size_t)g->B * g->C;
    size_t per = (size_t)g->KH * g->KW * g->OH * g->OW;
    cpu_pool_run(cpu_pool_of(be), k_col2im, &a, planes, cpu_min_rows(per), 1);
}

typedef struct pool_args {
    float *y, *dx;
    const float *x, *dy;
    int H, W;
} pool_args;

// the offset in a plane of window (oh, ow)'s first maximum, rows then columns
static inline size_t cpu_pool_argmax(const float *plane, int W, int oh, int ow)
{
    size_t best = (size_t)(2 * oh) * W + 2 * ow;
    const size_t cand[3] = {best + 1, best + W, best + W + 1};
    for (int k = 0; k < 3; k++)
        if (plane[cand[k]] > plane[best] || isnan(plane[cand[k]]))
            best = cand[k];
    return best;
}

static void k_maxpool_fwd(void *p, size_t lo, size_t hi, int part)
{
    const pool_args *a = p;
    const int OH = a->H / 2, OW = a->W / 2;
    (void)part;
    for (size_t pl = lo; pl < hi; pl++) {
        const float *x = a->x + pl * a->H * a->W;
        float *y = a->y + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                y[oh * OW + ow] = x[cpu_pool_argmax(x, a->W, oh, ow)];
    }
}

void cpu_maxpool2_forward(backend_t *be, float *y, const float *x, int planes, int H, int W)
{
    pool_args a = {.y = y, .x = x, .H = H, .W = W};
    cpu_pool_run(cpu_pool_of(be), k_maxpool_fwd, &a, (size_t)planes,
                 cpu_min_rows((size_t)H * W), 1);
}

static void k_maxpool_bwd(void *p, size_t lo, size_t hi, int part)
{
    const pool_args *a = p;
    const int OH = a->H / 2, OW = a->W / 2;
    (void)part;
    for (size_t pl = lo; pl < hi; pl++) {
        const float *x = a->x + pl * a->H * a->W, *dy = a->dy + pl * OH * OW;
        float *dx = a->dx + pl * a->H * a->W;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                dx[cpu_pool_argmax(x, a->W, oh, ow)] += dy[oh * OW + ow];
    }
}

void cpu_maxpool2_backward(backend_t *be, float *dx, const float *dy, const float *x,
                           int planes, int H, int W)
{
    pool_args a = {.dx = dx, .dy = dy, .x = x, .H = H, .W = W};
    cpu_pool_run(cpu_pool_of(be), k_maxpool_bwd, &a, (size_t)planes,
                 cpu_min_rows((size_t)H * W), 1);
}
