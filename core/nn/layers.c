/* layers.c - linear and layernorm modules over the backend ops. */
#include "layers.h"

#include <stdio.h>

/* "<prefix>.<suffix>" into buf; D2_EINVAL when it does not fit */
static int layers_name(char *buf, size_t n, const char *prefix, const char *suffix,
                       d2_error *err)
{
    int len = snprintf(buf, n, "%s.%s", prefix, suffix);
    if (len < 0 || (size_t)len >= n)
        return d2_fail(err, D2_EINVAL, "tensor name \"%s.%s\" is too long", prefix, suffix);
    return 0;
}

int linear_init(linear *l, paramset *ps, const char *name, int in, int out, int bias,
                float init_scale, d2_error *err)
{
    if (in <= 0 || out <= 0)
        return d2_fail(err, D2_EINVAL, "linear %s: bad size %d -> %d", name, in, out);
    char buf[PARAM_NAME_LEN];
    int rc;
    l->in = in;
    l->out = out;
    l->has_bias = bias != 0;
    l->w = l->b = 0;
    int64_t wshape[2] = {out, in}, bshape[1] = {out};
    if ((rc = layers_name(buf, sizeof buf, name, "weight", err)) ||
        (rc = paramset_add(ps, buf, 2, wshape, INIT_KAIMING, init_scale, &l->w, err)))
        return rc;
    if (l->has_bias &&
        ((rc = layers_name(buf, sizeof buf, name, "bias", err)) ||
         (rc = paramset_add(ps, buf, 1, bshape, INIT_ZEROS, 0.0f, &l->b, err))))
        return rc;
    return 0;
}

// x: [B, in] -> y: [B, out] = x @ W^T + b
void linear_forward(backend_t *be, const linear *l, const paramset *ps, float *y, const float *x,
                    int B)
{
    const float *W = ps->w + l->w;
    /* with a bias: y = b in every row, then the GEMM accumulates (one pass fewer over y) */
    if (l->has_bias)
        be->ops->repeat_rows(be, y, ps->w + l->b, B, 1, l->out);
    be->ops->gemm(be, 0, 1, B, l->out, l->in, 1.0f, x, l->in, W, l->in,
                  l->has_bias ? 1.0f : 0.0f, y, l->out);
}

// dy: [B, out], x: [B, in]; dx: [B, in] = dx_beta dx + dy @ W; dW: [out, in] += dy^T @ x;
// db += sum_rows(dy)
static void linear_bwd(backend_t *be, const linear *l, paramset *ps, float *dx, float dx_beta,
                       const float *dy, const float *x, int B)
{
    const float *W = ps->w + l->w;
    /* the bias first: on the CPU it runs on worker threads that the GEMMs would put to sleep */
    if (l->has_bias)
        be->ops->sum_rows(be, ps->g + l->b, dy, B, l->out);
    if (dx)
        be->ops->gemm(be, 0, 0, B, l->in, l->out, 1.0f, dy, l->out, W, l->in, dx_beta, dx,
                      l->in);
    be->ops->gemm(be, 1, 0, l->out, l->in, B, 1.0f, dy, l->out, x, l->in, 1.0f, ps->g + l->w,
                  l->in);
}

void linear_backward(backend_t *be, const linear *l, paramset *ps, float *dx, const float *dy,
                     const float *x, int B)
{
    linear_bwd(be, l, ps, dx, 1.0f, dy, x, B);
}

void linear_backward_set(backend_t *be, const linear *l, paramset *ps, float *dx,
                         const float *dy, const float *x, int B)
{
    linear_bwd(be, l, ps, dx, 0.0f, dy, x, B);
}

int layernorm_init(layernorm *ln, paramset *ps, const char *name, int C, int affine,
                   d2_error *err)
{
    if (C <= 0)
        return d2_fail(err, D2_EINVAL, "layernorm %s: bad width %d", name, C);
    ln->C = C;
    ln->affine = affine != 0;
    ln->g = ln->b = 0;
    if (!ln->affine)
        return 0;
    char buf[PARAM_NAME_LEN];
    int64_t shape[1] = {C};
    int rc;
    if ((rc = layers_name(buf, sizeof buf, name, "weight", err)) ||
        (rc = paramset_add(ps, buf, 1, shape, INIT_ONES, 1.0f, &ln->g, err)) ||
        (rc = layers_name(buf, sizeof buf, name, "bias", err)) ||
        (rc = paramset_add(ps, buf, 1, shape, INIT_ZEROS, 0.0f, &ln->b, err)))
        return rc;
    return 0;
}

// x: [rows, C] -> y: [rows, C]; mean, rstd: [rows]
void layernorm_fwd(backend_t *be, const layernorm *ln, const paramset *ps, float *y, float *mean,
                   float *rstd, const float *x, int rows)
{
    const float *g = ln->affine ? ps->w + ln->g : NULL;
    const float *b = ln->affine ? ps->w + ln->b : NULL;
    be->ops->layernorm_forward(be, y, mean, rstd, x, g, b, rows, ln->C);
}

// dy, x: [rows, C]; dx: [rows, C] +=; dg, db: [C] +=
void layernorm_bwd(backend_t *be, const layernorm *ln, paramset *ps, float *dx, const float *dy,
                   const float *x, const float *mean, const float *rstd, int rows)
{
    const float *g = ln->affine ? ps->w + ln->g : NULL;
    float *dg = ln->affine ? ps->g + ln->g : NULL;
    float *db = ln->affine ? ps->g + ln->b : NULL;
    be->ops->layernorm_backward(be, dx, dg, db, dy, x, g, mean, rstd, rows, ln->C);
}
