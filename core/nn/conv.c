/* conv.c - convolution and batch-norm modules (see conv.h). */
#include "conv.h"

#include <math.h>
#include <stdio.h>

int conv2d_layer_init(conv2d_layer *l, paramset *ps, const char *name, int in, int out, int k,
                      int stride, int pad, d2_error *err)
{
    if (in <= 0 || out <= 0 || k <= 0 || stride <= 0 || pad < 0)
        return d2_fail(err, D2_EINVAL, "conv %s: bad sizes in=%d out=%d k=%d stride=%d pad=%d",
                       name, in, out, k, stride, pad);
    l->in = in;
    l->out = out;
    l->k = k;
    l->stride = stride;
    l->pad = pad;
    char n[PARAM_NAME_LEN];
    snprintf(n, sizeof n, "%s.weight", name);
    const int64_t shape[4] = {out, in, k, k};
    /* INIT_KAIMING takes fan_in from the last dimension (k); PyTorch's is in*k*k */
    float scale = (float)(sqrt((double)k) / sqrt((double)in * k * k));
    return paramset_add(ps, n, 4, shape, INIT_KAIMING, scale, &l->w, err);
}

static int conv_oom(d2_error *err, const arena *ar, const char *what)
{
    return d2_fail(err, D2_ENOMEM, "conv %s: scratch arena of %zu bytes is full", what, ar->cap);
}

int conv2d_layer_forward(backend_t *be, const conv2d_layer *l, const paramset *ps, arena *ar,
                         const float *x, int B, int H, int W, float **y, float **col,
                         d2_error *err)
{
    conv_geom g;
    int rc = conv_geom_make(&g, B, l->in, H, W, l->k, l->stride, l->pad, err);
    if (rc)
        return rc;
    size_t n = (size_t)B * g.OH * g.OW, ckk = (size_t)l->in * l->k * l->k;
    *col = arena_floats_uninit(ar, ckk * n);
    *y = arena_floats_uninit(ar, (size_t)l->out * n);
    size_t mark = arena_mark(ar);
    float *tmp = arena_floats_uninit(ar, (size_t)l->out * n);
    if (!*col || !*y || !tmp)
        return conv_oom(err, ar, "forward");
    conv2d_forward(be, *y, *col, tmp, x, ps->w + l->w, l->out, &g);
    arena_reset(ar, mark);
    return 0;
}

int conv2d_layer_backward(backend_t *be, const conv2d_layer *l, paramset *ps, arena *ar,
                          float *dx, const float *dy, const float *col, int B, int H, int W,
                          d2_error *err)
{
    conv_geom g;
    int rc = conv_geom_make(&g, B, l->in, H, W, l->k, l->stride, l->pad, err);
    if (rc)
        return rc;
    size_t n = (size_t)B * g.OH * g.OW, ckk = (size_t)l->in * l->k * l->k;
    size_t mark = arena_mark(ar);
    float *tmp = arena_floats_uninit(ar, (size_t)l->out * n);
    float *dcol = dx ? arena_floats_uninit(ar, ckk * n) : NULL;
    if (!tmp || (dx && !dcol))
        return conv_oom(err, ar, "backward");
    conv2d_backward(be, dx, ps->g + l->w, tmp, dcol, dy, col, ps->w + l->w, l->out, &g);
    arena_reset(ar, mark);
    return 0;
}

int batchnorm2d_init(batchnorm2d *n, paramset *ps, paramset *bufs, const char *name, int C,
                     d2_error *err)
{
    if (C <= 0)
        return d2_fail(err, D2_EINVAL, "batchnorm %s: %d channels", name, C);
    n->C = C;
    char s[PARAM_NAME_LEN];
    const int64_t shape[1] = {C};
    int rc;
    snprintf(s, sizeof s, "%s.weight", name);
    if ((rc = paramset_add(ps, s, 1, shape, INIT_ONES, 1.0f, &n->g, err)))
        return rc;
    snprintf(s, sizeof s, "%s.bias", name);
    if ((rc = paramset_add(ps, s, 1, shape, INIT_ZEROS, 1.0f, &n->b, err)))
        return rc;
    snprintf(s, sizeof s, "%s.running_mean", name);
    if ((rc = paramset_add(bufs, s, 1, shape, INIT_ZEROS, 1.0f, &n->rm, err)))
        return rc;
    snprintf(s, sizeof s, "%s.running_var", name);
    return paramset_add(bufs, s, 1, shape, INIT_ONES, 1.0f, &n->rv, err);
}

void batchnorm2d_forward(backend_t *be, const batchnorm2d *n, const paramset *ps,
                         paramset *bufs, float *y, float *mean, float *rstd, const float *x,
                         int B, int HW, int train)
{
    be->ops->batchnorm_forward(be, y, mean, rstd, bufs->w + n->rm, bufs->w + n->rv, x,
                               ps->w + n->g, ps->w + n->b, B, n->C, HW, train, 0.1f);
}

void batchnorm2d_backward(backend_t *be, const batchnorm2d *n, paramset *ps, float *dx,
                          const float *dy, const float *x, const float *mean, const float *rstd,
                          int B, int HW, int train)
{
    be->ops->batchnorm_backward(be, dx, ps->g + n->g, ps->g + n->b, dy, x, ps->w + n->g, mean,
                                rstd, B, n->C, HW, train);
}
