/* convnet.c - Conv-N forward and backward (see convnet.h). */
#include "convnet.h"

#include <stdio.h>
#include <string.h>

static int cn_oom(d2_error *err, const arena *ar, const char *what)
{
    return d2_fail(err, D2_ENOMEM, "convnet %s: scratch arena of %zu bytes is full", what,
                   ar->cap);
}

int convnet_init(convnet *n, paramset *ps, paramset *bufs, int in_ch, int H, int W, int ch,
                 int blocks, int classes, d2_error *err)
{
    if (in_ch <= 0 || ch <= 0 || classes < 0 || blocks < 1 || blocks > CONVNET_MAX_BLOCKS)
        return d2_fail(err, D2_EINVAL,
                       "convnet: bad sizes (in_ch %d, ch %d, blocks %d of 1..%d, classes %d)",
                       in_ch, ch, blocks, CONVNET_MAX_BLOCKS, classes);
    if ((H >> blocks) < 1 || (W >> blocks) < 1)
        return d2_fail(err, D2_EINVAL, "convnet: %d pooling blocks reduce a %dx%d image below 1x1",
                       blocks, H, W);
    memset(n, 0, sizeof *n);
    n->in_ch = in_ch;
    n->H = H;
    n->W = W;
    n->ch = ch;
    n->blocks = blocks;
    n->classes = classes;
    n->out_h = H >> blocks;
    n->out_w = W >> blocks;
    char name[PARAM_NAME_LEN];
    int rc;
    for (int i = 0; i < blocks; i++) {
        snprintf(name, sizeof name, "%d.0", i);
        if ((rc = conv2d_layer_init(&n->conv[i], ps, name, i ? ch : in_ch, ch, 3, 1, 1, err)))
            return rc;
        snprintf(name, sizeof name, "%d.1", i);
        if ((rc = batchnorm2d_init(&n->bn[i], ps, bufs, name, ch, err)))
            return rc;
    }
    if (!classes)
        return 0;
    snprintf(name, sizeof name, "%d", blocks + 2);
    return linear_init(&n->fc, ps, name, ch, classes, 1, 1.0f, err);
}

int convnet_forward(backend_t *be, const convnet *n, const paramset *ps, paramset *bufs,
                    arena *ar, convnet_cache *c, const float *x, int B, int train,
                    d2_error *err)
{
    int h = n->H, w = n->W, rc;
    const float *cur = x;
    c->B = B;
    c->train = train;
    c->x = x;
    for (int i = 0; i < n->blocks; i++, h /= 2, w /= 2) {
        const size_t sz = (size_t)B * n->ch * h * w;
        c->in[i] = cur;
        if ((rc = conv2d_layer_forward(be, &n->conv[i], ps, ar, cur, B, h, w, &c->conv[i],
                                       &c->col[i], err)))
            return rc;
        c->act[i] = arena_floats_uninit(ar, sz);
        c->mean[i] = arena_floats(ar, (size_t)n->ch);
        c->rstd[i] = arena_floats(ar, (size_t)n->ch);
        c->pool[i] = arena_floats_uninit(ar, (size_t)B * n->ch * (h / 2) * (w / 2));
        if (!c->act[i] || !c->mean[i] || !c->rstd[i] || !c->pool[i])
            return cn_oom(err, ar, "forward");
        batchnorm2d_forward(be, &n->bn[i], ps, bufs, c->act[i], c->mean[i], c->rstd[i],
                            c->conv[i], B, h * w, train);
        be->ops->act_forward(be, ACT_RELU, c->act[i], c->act[i], sz);
        be->ops->maxpool2_forward(be, c->pool[i], c->act[i], B * n->ch, h, w);
        cur = c->pool[i];
    }
    c->feat = arena_floats_uninit(ar, (size_t)B * n->ch);
    c->logits = n->classes ? arena_floats_uninit(ar, (size_t)B * n->classes) : NULL;
    if (!c->feat || (n->classes && !c->logits))
        return cn_oom(err, ar, "forward");
    be->ops->avgpool_forward(be, c->feat, cur, B * n->ch, h * w);
    if (n->classes)
        linear_forward(be, &n->fc, ps, c->logits, c->feat, B);
    return 0;
}

/* block i backward: dout [B, ch, h/2, w/2] -> *din [B, c_in, h, w] (NULL for block 0) */
static int convnet_block_backward(backend_t *be, const convnet *n, paramset *ps, arena *ar,
                                  const convnet_cache *c, int i, int h, int w,
                                  const float *dout, float **din, d2_error *err)
{
    const int B = c->B;
    const size_t sz = (size_t)B * n->ch * h * w;
    float *dact = arena_floats(ar, sz), *dbn = arena_floats(ar, sz), *dconv = arena_floats(ar, sz);
    *din = i ? arena_floats(ar, (size_t)B * n->conv[i].in * h * w) : NULL;
    if (!dact || !dbn || !dconv || (i && !*din))
        return cn_oom(err, ar, "backward");
    be->ops->maxpool2_backward(be, dact, dout, c->act[i], B * n->ch, h, w);
    /* ReLU's output is positive exactly where its input is: the same derivative */
    be->ops->act_backward(be, ACT_RELU, dbn, dact, c->act[i], sz);
    batchnorm2d_backward(be, &n->bn[i], ps, dconv, dbn, c->conv[i], c->mean[i], c->rstd[i], B,
                         h * w, c->train);
    return conv2d_layer_backward(be, &n->conv[i], ps, ar, *din, dconv, c->col[i], B, h, w, err);
}

int convnet_backward(backend_t *be, const convnet *n, paramset *ps, arena *ar,
                     const convnet_cache *c, const float *dfeat, const float *dlogits,
                     d2_error *err)
{
    const int B = c->B;
    size_t mark = arena_mark(ar);
    float *df = arena_floats(ar, (size_t)B * n->ch);
    float *dcur = arena_floats(ar, (size_t)B * n->ch * n->out_h * n->out_w);
    if (!df || !dcur)
        return cn_oom(err, ar, "backward");
    if (dfeat)
        be->ops->axpby(be, df, 1.0f, dfeat, 0.0f, (size_t)B * n->ch);
    if (dlogits && n->classes)
        linear_backward(be, &n->fc, ps, df, dlogits, c->feat, B);
    be->ops->avgpool_backward(be, dcur, df, B * n->ch, n->out_h * n->out_w);
    for (int i = n->blocks - 1; i >= 0; i--) {
        float *din = NULL;
        int rc = convnet_block_backward(be, n, ps, ar, c, i, n->H >> i, n->W >> i, dcur, &din,
                                        err);
        if (rc)
            return rc;
        dcur = din;
    }
    arena_reset(ar, mark);
    return 0;
}

size_t convnet_arena_bytes(const convnet *n, int B)
{
    size_t floats = 0;
    for (int i = 0; i < n->blocks; i++) {
        size_t hw = (size_t)(n->H >> i) * (size_t)(n->W >> i);
        size_t cin = (size_t)n->conv[i].in;
        size_t col = cin * 9 * B * hw, act = (size_t)n->ch * B * hw;
        floats += 2 * col + 7 * act + cin * B * hw + 4 * (size_t)n->ch;
    }
    floats += 4 * (size_t)B * n->ch + 2 * (size_t)B * n->classes;
    return floats * sizeof(float) + (size_t)(16 * n->blocks + 16) * 64 + (1u << 20);
}
