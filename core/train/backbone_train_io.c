/* backbone_train_io.c - the backbone trainer's checkpoint (OUT.ckpt: the network's tensors
 * as in the final file, AdamW's moments "optim.m"/"optim.v", the step and the data spec in
 * the metadata) and its final file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone_train_internal.h"
#include "safetensors.h"

static int bt_add_dev(st_writer *w, backend_t *be, const char *name, const float *dev, size_t n,
                      d2_error *err)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h)
        return d2_fail(err, D2_ENOMEM, "backbone checkpoint: out of memory");
    int rc = be->ops->to_host(be, h, dev, n * sizeof(float))
                 ? d2_fail(err, D2_EDEVICE, "backbone checkpoint: cannot read '%s'", name)
                 : 0;
    const int64_t shape[1] = {(int64_t)n};
    if (!rc)
        rc = st_writer_add_f32(w, name, 1, shape, h, err);
    free(h);
    return rc;
}

int bt_save_ckpt(bt_state *st, const backbone_train_cfg *cfg, d2_error *err)
{
    char step[32], seed[32];
    snprintf(step, sizeof step, "%d", st->step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->seed);
    const char *kv[] = {"d2nwg.step", step, "d2nwg.data", cfg->data, "d2nwg.seed", seed};
    st_writer w;
    st_writer_init(&w);
    int rc = convnet_write(&st->net, &st->ps, &st->bufs, st->step, &w, kv, 3, err);
    if (!rc)
        rc = bt_add_dev(&w, st->be, "optim.m", st->ps.m, st->ps.total, err);
    if (!rc)
        rc = bt_add_dev(&w, st->be, "optim.v", st->ps.v, st->ps.total, err);
    if (!rc)
        rc = st_writer_save(&w, st->ckpt_path, err);
    st_writer_free(&w);
    st->last_ckpt = d2_now();
    return rc;
}

/* a tensor of exactly n floats into dev */
static int bt_read_dev(const st_file *f, const char *path, backend_t *be, const char *name,
                       float *dev, size_t n, d2_error *err)
{
    const st_tensor *t = st_find(f, name);
    if (!t || t->numel != n)
        return d2_fail(err, D2_EFORMAT, "%s: tensor '%s' is missing or has the wrong size for "
                       "this configuration", path, name);
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h)
        return d2_fail(err, D2_ENOMEM, "backbone checkpoint: out of memory");
    int rc = st_to_f32(t, h, err);
    if (!rc && be->ops->to_device(be, dev, h, n * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "backbone checkpoint: cannot upload '%s'", name);
    free(h);
    return rc;
}

static int bt_read_set(const st_file *f, const char *path, paramset *ps, d2_error *err)
{
    int rc = 0;
    for (int i = 0; !rc && i < ps->count; i++) {
        const param_entry *e = &ps->entries[i];
        rc = bt_read_dev(f, path, ps->be, e->name, ps->w + e->offset, e->numel, err);
    }
    return rc;
}

int bt_load_ckpt(bt_state *st, const backbone_train_cfg *cfg, d2_error *err)
{
    st_file f;
    int rc = st_load(&f, st->ckpt_path, err);
    if (rc)
        return rc;
    const char *data = st_meta(&f, "d2nwg.data"), *step = st_meta(&f, "d2nwg.step");
    int s = step ? atoi(step) : -1;
    if (!data || s < 0)
        rc = d2_fail(err, D2_EFORMAT, "%s is not a backbone checkpoint", st->ckpt_path);
    else if (strcmp(data, cfg->data))
        rc = d2_fail(err, D2_EINVAL, "%s trained on '%s', not '%s'; remove it or give the same "
                     "--data", st->ckpt_path, data, cfg->data);
    else if (s > cfg->steps)
        rc = d2_fail(err, D2_EINVAL, "%s is at step %d, past --steps %d", st->ckpt_path, s,
                     cfg->steps);
    if (!rc && !(rc = bt_read_set(&f, st->ckpt_path, &st->ps, err)) &&
        !(rc = bt_read_set(&f, st->ckpt_path, &st->bufs, err)) &&
        !(rc = bt_read_dev(&f, st->ckpt_path, st->be, "optim.m", st->ps.m, st->ps.total, err)))
        rc = bt_read_dev(&f, st->ckpt_path, st->be, "optim.v", st->ps.v, st->ps.total, err);
    if (!rc)
        st->step = s;
    st_free(&f);
    return rc;
}

int bt_save_final(bt_state *st, const backbone_train_cfg *cfg, const char *out,
                  const backbone_train_report *rep, d2_error *err)
{
    char steps[32], seed[32], acc[32], classes[32];
    snprintf(steps, sizeof steps, "%d", st->step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->seed);
    snprintf(acc, sizeof acc, "%.4f", (double)rep->test_acc);
    snprintf(classes, sizeof classes, "%d", st->net.classes);
    const char *kv[] = {"d2nwg.data", cfg->data, "d2nwg.steps", steps, "d2nwg.seed", seed,
                        "d2nwg.test_acc", acc, "d2nwg.input", "1x28x28 in [0, 1], NCHW"};
    if (st->side != 28)
        kv[9] = "1xSxS in [0, 1], NCHW (S from d2nwg.convnet)";
    return convnet_save(&st->net, &st->ps, &st->bufs, st->step, out, kv, 5, err);
}
