/* conv.h - convolution-network modules over the backend ops (NCHW, PyTorch layouts and
 * names), in the style of layers.h: init registers parameters in a paramset (and batch
 * norm's running statistics in a second paramset of buffers, which no optimiser touches),
 * forward keeps what backward needs in the caller's arena, backward accumulates (+=). */
#ifndef D2_CONV_H
#define D2_CONV_H

#include "arena.h"
#include "backend.h"
#include "params.h"

/* nn.Conv2d(in, out, k, stride, padding, bias=False): "<name>.weight" [out, in, k, k],
 * PyTorch's default initialisation U(-1/sqrt(in*k*k), +) */
typedef struct conv2d_layer {
    int in, out, k, stride, pad;
    size_t w;
} conv2d_layer;

int conv2d_layer_init(conv2d_layer *l, paramset *ps, const char *name, int in, int out, int k,
                      int stride, int pad, d2_error *err);
/* x: [B, in, H, W] -> y: [B, out, OH, OW] (arena); *col keeps im2col(x) for backward */
int conv2d_layer_forward(backend_t *be, const conv2d_layer *l, const paramset *ps, arena *ar,
                         const float *x, int B, int H, int W, float **y, float **col,
                         d2_error *err);
/* dw += ..., dx += ... (dx NULL: not needed); scratch from the arena, released after */
int conv2d_layer_backward(backend_t *be, const conv2d_layer *l, paramset *ps, arena *ar,
                          float *dx, const float *dy, const float *col, int B, int H, int W,
                          d2_error *err);

/* nn.BatchNorm2d(C): "<name>.weight" (ones), "<name>.bias" (zeros) in ps;
 * "<name>.running_mean" (zeros), "<name>.running_var" (ones) in bufs. momentum 0.1. */
typedef struct batchnorm2d {
    int C;
    size_t g, b, rm, rv;
} batchnorm2d;

int batchnorm2d_init(batchnorm2d *n, paramset *ps, paramset *bufs, const char *name, int C,
                     d2_error *err);
/* x, y: [B, C, HW]; mean, rstd: [C] saved for backward; train: batch statistics and a
 * running-statistics update, else the running statistics */
void batchnorm2d_forward(backend_t *be, const batchnorm2d *n, const paramset *ps,
                         paramset *bufs, float *y, float *mean, float *rstd, const float *x,
                         int B, int HW, int train);
void batchnorm2d_backward(backend_t *be, const batchnorm2d *n, paramset *ps, float *dx,
                          const float *dy, const float *x, const float *mean, const float *rstd,
                          int B, int HW, int train);

#endif
