/* backbone_train_step.c - the backbone trainer's data, state, one step and evaluation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backbone_train_internal.h"
#include "rng.h"

static int bt_alloc_buffers(bt_state *st, const backbone_train_cfg *cfg, d2_error *err)
{
    int rows = cfg->batch > BT_EVAL_BATCH ? cfg->batch : BT_EVAL_BATCH;
    size_t px = (size_t)st->side * st->side;
    backend_t *be = st->be;
    st->xh = malloc((size_t)rows * px * sizeof(float));
    st->yh = malloc((size_t)rows * sizeof(int32_t));
    st->lh = malloc((size_t)rows * st->net.classes * sizeof(float));
    st->xd = backend_alloc_floats(be, (size_t)rows * px);
    st->yd = be->ops->alloc(be, (size_t)rows * sizeof(int32_t));
    st->dlogits = backend_alloc_floats(be, (size_t)rows * st->net.classes);
    st->loss = backend_alloc_floats(be, 1);
    if (!st->xh || !st->yh || !st->lh || !st->xd || !st->yd || !st->dlogits || !st->loss)
        return d2_fail(err, D2_ENOMEM, "backbone: out of memory for batch buffers");
    return arena_init(&st->ar, be, convnet_arena_bytes(&st->net, rows), err);
}

static int bt_open_data(bt_state *st, const backbone_train_cfg *cfg, d2_error *err)
{
    int rc = backbone_check_source(cfg->data, err);
    if (rc || (rc = data_source_load(&st->src, cfg->data, err)))
        return rc;
    int dim = st->src.train.dim, side = (int)lround(sqrt((double)dim));
    if (side * side != dim)
        return d2_fail(err, D2_EINVAL, "backbone data '%s': %d features are not a square image",
                       cfg->data, dim);
    if (st->src.train.classes < 2 || st->src.test.n < 1)
        return d2_fail(err, D2_EINVAL, "backbone data '%s': needs 2+ classes and a test split",
                       cfg->data);
    st->side = side;
    return 0;
}

/* the folder of out must exist: fail before training, not after */
static int bt_check_out(const char *out, d2_error *err)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    struct stat sb;
    if (dir[0] && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return d2_fail(err, D2_EIO, "--out %s: folder '%s' does not exist", out, dir);
    return 0;
}

int bt_open(bt_state *st, const backbone_train_cfg *cfg, const char *out, backend_t *be,
            d2_error *err)
{
    memset(st, 0, sizeof *st);
    st->be = be;
    paramset_init(&st->ps);
    paramset_init(&st->bufs);
    snprintf(st->ckpt_path, sizeof st->ckpt_path, "%s.ckpt", out);
    st->opt = adamw_defaults();
    st->opt.lr = cfg->lr;
    st->opt.weight_decay = cfg->weight_decay;
    st->opt.clip_norm = 5.0f;
    st->opt.warmup_steps = cfg->steps / 20 < 200 ? cfg->steps / 20 : 200;
    st->opt.total_steps = cfg->steps;
    int rc = bt_check_out(out, err);
    if (!rc)
        rc = bt_open_data(st, cfg, err);
    if (!rc)
        rc = convnet_init(&st->net, &st->ps, &st->bufs, 1, st->side, st->side, cfg->ch,
                          cfg->blocks, st->src.train.classes, err);
    if (!rc && !(rc = paramset_alloc(&st->ps, be, cfg->seed, err)) &&
        !(rc = paramset_alloc(&st->bufs, be, cfg->seed, err)) &&
        !(rc = paramset_alloc_optim(&st->ps, err)))
        rc = bt_alloc_buffers(st, cfg, err);
    FILE *f = cfg->resume && !rc ? fopen(st->ckpt_path, "rb") : NULL;
    if (f) {
        fclose(f);
        rc = bt_load_ckpt(st, cfg, err);
    }
    st->last_ckpt = d2_now();
    if (rc)
        bt_close(st);
    return rc;
}

void bt_close(bt_state *st)
{
    backend_t *be = st->be;
    float *dev[] = {st->xd, st->dlogits, st->loss};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i])
            be->ops->free(be, dev[i]);
    if (st->yd)
        be->ops->free(be, st->yd);
    free(st->xh);
    free(st->yh);
    free(st->lh);
    arena_free(&st->ar);
    paramset_free(&st->ps);
    paramset_free(&st->bufs);
    data_source_free(&st->src);
    memset(st, 0, sizeof *st);
}

/* image `row` of d shifted by (dx, dy) pixels, zeros where nothing moves in */
static void bt_shifted(const dataset *d, int row, int side, int dx, int dy, float *out)
{
    const float *img = d->x + (size_t)row * d->dim;
    for (int r = 0; r < side; r++)
        for (int c = 0; c < side; c++) {
            int sr = r - dy, sc = c - dx;
            out[r * side + c] = sr >= 0 && sr < side && sc >= 0 && sc < side
                                    ? img[sr * side + sc]
                                    : 0.0f;
        }
}

static int bt_fill_batch(bt_state *st, const backbone_train_cfg *cfg)
{
    const dataset *d = &st->src.train;
    const int px = st->side * st->side, s = cfg->shift;
    rng r;
    rng_init(&r, rng_derive(cfg->seed, "backbone-batch", (uint64_t)st->step), 0);
    for (int b = 0; b < cfg->batch; b++) {
        int row = (int)rng_below(&r, (uint32_t)d->n);
        int dx = (int)rng_below(&r, (uint32_t)(2 * s + 1)) - s;
        int dy = (int)rng_below(&r, (uint32_t)(2 * s + 1)) - s;
        bt_shifted(d, row, st->side, dx, dy, st->xh + (size_t)b * px);
        st->yh[b] = d->y[row];
    }
    backend_t *be = st->be;
    if (be->ops->to_device(be, st->xd, st->xh, (size_t)cfg->batch * px * sizeof(float)) ||
        be->ops->to_device(be, st->yd, st->yh, (size_t)cfg->batch * sizeof(int32_t)))
        return D2_EDEVICE;
    return 0;
}

int bt_step(bt_state *st, const backbone_train_cfg *cfg, float *loss, d2_error *err)
{
    backend_t *be = st->be;
    const int B = cfg->batch, C = st->net.classes;
    convnet_cache c;
    if (bt_fill_batch(st, cfg))
        return d2_fail(err, D2_EDEVICE, "backbone: cannot upload a batch");
    arena_reset(&st->ar, 0);
    paramset_zero_grad(&st->ps);
    int rc = convnet_forward(be, &st->net, &st->ps, &st->bufs, &st->ar, &c, st->xd, B, 1, err);
    if (rc)
        return rc;
    be->ops->fill(be, st->dlogits, 0.0f, (size_t)B * C);
    be->ops->cross_entropy(be, st->loss, st->dlogits, c.logits, st->yd, B, C, 1.0f);
    if ((rc = convnet_backward(be, &st->net, &st->ps, &st->ar, &c, NULL, st->dlogits, err)) ||
        (rc = optim_adamw_step(&st->ps, &st->opt, st->step, NULL, err)))
        return rc;
    if (be->ops->to_host(be, loss, st->loss, sizeof(float)))
        return backend_explain(be, D2_EDEVICE, err);
    if (!isfinite(*loss))
        return d2_fail(err, D2_ERANGE, "backbone: loss is not finite at step %d", st->step);
    return 0;
}

/* argmax agreement of rows [r0, r0 + b) */
static int bt_eval_chunk(bt_state *st, const dataset *d, int r0, int b, int *right,
                         d2_error *err)
{
    backend_t *be = st->be;
    const int px = st->side * st->side, C = st->net.classes;
    convnet_cache c;
    if (be->ops->to_device(be, st->xd, d->x + (size_t)r0 * px, (size_t)b * px * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "backbone: cannot upload a batch");
    arena_reset(&st->ar, 0);
    int rc = convnet_forward(be, &st->net, &st->ps, &st->bufs, &st->ar, &c, st->xd, b, 0, err);
    if (rc)
        return rc;
    if (be->ops->to_host(be, st->lh, c.logits, (size_t)b * C * sizeof(float)))
        return backend_explain(be, D2_EDEVICE, err);
    for (int i = 0; i < b; i++) {
        const float *l = st->lh + (size_t)i * C;
        int best = 0;
        for (int k = 1; k < C; k++)
            best = l[k] > l[best] ? k : best;
        *right += best == d->y[r0 + i];
    }
    return 0;
}

int bt_eval(bt_state *st, const dataset *d, float *acc, d2_error *err)
{
    int right = 0, rc = 0;
    for (int r0 = 0; !rc && r0 < d->n; r0 += BT_EVAL_BATCH) {
        int b = d->n - r0 < BT_EVAL_BATCH ? d->n - r0 : BT_EVAL_BATCH;
        rc = bt_eval_chunk(st, d, r0, b, &right, err);
    }
    *acc = d->n ? (float)right / (float)d->n : 0.0f;
    return rc;
}
