/* gen_train_ckpt.c - training checkpoints: every parameter buffer, AdamW
 * moment, EMA copy, latent and loss average, so --resume continues to the
 * same bytes as an unbroken run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_train_internal.h"
#include "safetensors.h"

/* -------------------------------------------------------- checkpointing */

static int ckpt_add_buf(st_writer *w, backend_t *be, const char *name, const float *dev,
                        size_t n, d2_error *err)
{
    float *h = malloc(n * sizeof(float) + 1);
    if (!h)
        return d2_fail(err, D2_ENOMEM, "checkpoint: out of memory");
    int rc = be->ops->to_host(be, h, dev, n * sizeof(float));
    if (rc)
        rc = d2_fail(err, D2_EDEVICE, "checkpoint: cannot read '%s' from the device", name);
    else {
        int64_t shape[1] = {(int64_t)n};
        rc = st_writer_add_f32(w, name, 1, shape, h, err);
    }
    free(h);
    return rc;
}

static int ckpt_add_ps(st_writer *w, const paramset *ps, const char *prefix, d2_error *err)
{
    char n[128];
    int rc;
    snprintf(n, sizeof n, "%s.w", prefix);
    if ((rc = ckpt_add_buf(w, ps->be, n, ps->w, ps->total, err)))
        return rc;
    if (ps->m) {
        snprintf(n, sizeof n, "%s.m", prefix);
        if ((rc = ckpt_add_buf(w, ps->be, n, ps->m, ps->total, err)))
            return rc;
        snprintf(n, sizeof n, "%s.v", prefix);
        if ((rc = ckpt_add_buf(w, ps->be, n, ps->v, ps->total, err)))
            return rc;
    }
    if (ps->ema) {
        snprintf(n, sizeof n, "%s.ema", prefix);
        if ((rc = ckpt_add_buf(w, ps->be, n, ps->ema, ps->total, err)))
            return rc;
    }
    return 0;
}

int gtrain_checkpoint_save(trainer *t, d2_error *err)
{
    if (!gtrain_writes(t)) /* rank 0 writes for all: their states are equal */
        return 0;
    st_writer w;
    st_writer_init(&w);
    int rc;
    char buf[128];
    snprintf(buf, sizeof buf, "%d", t->stage);
    if ((rc = st_writer_meta(&w, "stage", buf, err)))
        goto out;
    snprintf(buf, sizeof buf, "%d", t->step);
    if ((rc = st_writer_meta(&w, "step", buf, err)))
        goto out;
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)t->cfg->seed);
    if ((rc = st_writer_meta(&w, "seed", buf, err)) ||
        (rc = st_writer_meta(&w, "zoo_fingerprint", t->z->fingerprint, err)))
        goto out;
    snprintf(buf, sizeof buf, "%.9g %.9g %.9g %.9g", (double)t->vae_loss_ema,
             (double)t->align_loss_ema, (double)t->diff_loss_ema, (double)t->vae_recon_mse);
    if ((rc = st_writer_meta(&w, "losses", buf, err)))
        goto out;
    if ((rc = ckpt_add_ps(&w, &t->g.vae_ps, "vae", err)) ||
        (rc = ckpt_add_ps(&w, &t->g.net_ps, "net", err)) ||
        (rc = ckpt_add_ps(&w, &t->align_ps, "align", err)))
        goto out;
    if (t->stage >= 2) {
        int64_t sZ[2] = {t->n, t->L}, sL[1] = {t->L};
        if ((rc = st_writer_add_f32(&w, "Z", 2, sZ, t->Z, err)) ||
            (rc = st_writer_add_f32(&w, "z_mean", 1, sL, t->g.z_mean, err)) ||
            (rc = st_writer_add_f32(&w, "z_std", 1, sL, t->g.z_std, err)))
            goto out;
    }
    rc = st_writer_save(&w, t->ckpt_path, err);
out:
    st_writer_free(&w);
    t->last_ckpt = d2_now();
    return rc;
}

static int ckpt_read_buf(const st_file *f, backend_t *be, const char *name, float *dev,
                         size_t n, d2_error *err)
{
    const st_tensor *ten = st_find(f, name);
    if (!ten || ten->numel != n)
        return d2_fail(err, D2_EFORMAT, "checkpoint: '%s' is missing or has the wrong size", name);
    float *h = malloc(n * sizeof(float) + 1);
    if (!h)
        return d2_fail(err, D2_ENOMEM, "checkpoint: out of memory");
    int rc = st_to_f32(ten, h, err);
    if (!rc && be->ops->to_device(be, dev, h, n * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "checkpoint: cannot upload '%s'", name);
    free(h);
    return rc;
}

static int ckpt_read_ps(const st_file *f, paramset *ps, const char *prefix, d2_error *err)
{
    char n[128];
    int rc;
    snprintf(n, sizeof n, "%s.w", prefix);
    if ((rc = ckpt_read_buf(f, ps->be, n, ps->w, ps->total, err)))
        return rc;
    if (ps->m) {
        snprintf(n, sizeof n, "%s.m", prefix);
        if ((rc = ckpt_read_buf(f, ps->be, n, ps->m, ps->total, err)))
            return rc;
        snprintf(n, sizeof n, "%s.v", prefix);
        if ((rc = ckpt_read_buf(f, ps->be, n, ps->v, ps->total, err)))
            return rc;
    }
    if (ps->ema) {
        snprintf(n, sizeof n, "%s.ema", prefix);
        if ((rc = ckpt_read_buf(f, ps->be, n, ps->ema, ps->total, err)))
            return rc;
    }
    return 0;
}

int gtrain_checkpoint_load(trainer *t, d2_error *err)
{
    st_file f;
    int rc = st_load(&f, t->ckpt_path, err);
    if (rc)
        return d2_wrap(err, "resume");
    const char *stage = st_meta(&f, "stage"), *step = st_meta(&f, "step");
    const char *seed = st_meta(&f, "seed"), *zfp = st_meta(&f, "zoo_fingerprint");
    const char *losses = st_meta(&f, "losses");
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)t->cfg->seed);
    if (!stage || !step || !seed || !zfp || !losses) {
        rc = d2_fail(err, D2_EFORMAT, "%s is not a d2nwg training checkpoint", t->ckpt_path);
        goto out;
    }
    if (strcmp(seed, want) || strcmp(zfp, t->z->fingerprint)) {
        rc = d2_fail(err, D2_EINVAL,
                     "%s was written for seed %s and zoo %.12s; this run has seed %s and zoo %.12s",
                     t->ckpt_path, seed, zfp, want, t->z->fingerprint);
        goto out;
    }
    t->stage = atoi(stage);
    t->step = atoi(step);
    if (sscanf(losses, "%g %g %g %g", &t->vae_loss_ema, &t->align_loss_ema, &t->diff_loss_ema,
               &t->vae_recon_mse) != 4) {
        rc = d2_fail(err, D2_EFORMAT, "%s: bad 'losses' metadata", t->ckpt_path);
        goto out;
    }
    if ((rc = ckpt_read_ps(&f, &t->g.vae_ps, "vae", err)) ||
        (rc = ckpt_read_ps(&f, &t->g.net_ps, "net", err)) ||
        (rc = ckpt_read_ps(&f, &t->align_ps, "align", err)))
        goto out;
    if (t->stage >= 2) {
        const st_tensor *Zt = st_find(&f, "Z"), *zm = st_find(&f, "z_mean"),
                        *zs = st_find(&f, "z_std");
        if (!Zt || !zm || !zs || Zt->numel != (size_t)t->n * t->L ||
            zm->numel != (size_t)t->L || zs->numel != (size_t)t->L) {
            rc = d2_fail(err, D2_EFORMAT, "%s: latents missing or of the wrong size", t->ckpt_path);
            goto out;
        }
        if ((rc = st_to_f32(Zt, t->Z, err)) || (rc = st_to_f32(zm, t->g.z_mean, err)) ||
            (rc = st_to_f32(zs, t->g.z_std, err)))
            goto out;
    }
out:
    st_free(&f);
    return rc;
}

int gtrain_maybe_checkpoint(trainer *t, d2_error *err)
{
    if (d2_now() - t->last_ckpt < t->cfg->checkpoint_every)
        return 0;
    return gtrain_checkpoint_save(t, err);
}

