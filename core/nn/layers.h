/* layers.h - linear and layernorm modules over the backend ops, llm.c style:
 * each module registers its parameters in a paramset, forward caches what the
 * backward needs (the caller keeps the inputs), backward accumulates (+=) into
 * the input gradient and into ps->g. */
#ifndef D2_LAYERS_H
#define D2_LAYERS_H

#include "arena.h"
#include "backend.h"
#include "params.h"

typedef struct linear {
    int in, out;
    int has_bias;
    size_t w; /* [out, in] (PyTorch nn.Linear layout) */
    size_t b; /* [out] */
} linear;

/* Registers "<name>.weight" [out, in] (Kaiming-uniform, PyTorch default scaled
 * by init_scale) and "<name>.bias" [out] (zeros) when bias != 0. */
int linear_init(linear *l, paramset *ps, const char *name, int in, int out, int bias,
                float init_scale, d2_error *err);
/* x: [B, in] -> y: [B, out], y = x @ W^T + b (overwrites y) */
void linear_forward(backend_t *be, const linear *l, const paramset *ps, float *y, const float *x,
                    int B);
/* dy: [B, out], x: [B, in]; dx: [B, in] += dy @ W (skipped when dx is NULL);
 * dW += dy^T @ x; db += sum_rows(dy) */
void linear_backward(backend_t *be, const linear *l, paramset *ps, float *dx, const float *dy,
                     const float *x, int B);
/* The same with dx overwritten (dx = dy @ W, a GEMM with beta = 0): for a dx that nothing
 * else accumulates into, so it needs no zero fill first; dx must not be NULL. The bytes are
 * those of linear_backward into a zeroed dx. */
void linear_backward_set(backend_t *be, const linear *l, paramset *ps, float *dx,
                         const float *dy, const float *x, int B);

typedef struct layernorm {
    int C;
    int affine;
    size_t g, b; /* [C] each when affine */
} layernorm;

/* Registers "<name>.weight" (ones) and "<name>.bias" (zeros) when affine. */
int layernorm_init(layernorm *ln, paramset *ps, const char *name, int C, int affine,
                   d2_error *err);
/* x: [rows, C] -> y: [rows, C]; mean, rstd: [rows] saved for backward */
void layernorm_fwd(backend_t *be, const layernorm *ln, const paramset *ps, float *y, float *mean,
                   float *rstd, const float *x, int rows);
/* dx += ..., dg += ..., db += ... */
void layernorm_bwd(backend_t *be, const layernorm *ln, paramset *ps, float *dx, const float *dy,
                   const float *x, const float *mean, const float *rstd, int rows);

#endif
