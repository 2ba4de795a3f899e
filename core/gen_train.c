/* gen_train.c - the training pipeline (see gen_train.h). */
#include "gen_train.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_model.h"
#include "optim.h"
#include "progress.h"
#include "safetensors.h"

#define TRAIN_ARENA_BYTES (512u << 20)

gen_train_cfg gen_train_defaults(int quick)
{
    gen_train_cfg c;
    memset(&c, 0, sizeof c);
    c.seed = 1;
    c.progress = 1;
    gen_config d = gen_config_defaults(1, 1, 1, 2, "");
    c.vae_hidden = d.vae_hidden;
    c.vae_blocks = d.vae_blocks;
    c.tok_latent = d.tok_latent;
    c.enc_d = d.enc_d;
    c.enc_heads = d.enc_heads;
    c.enc_inducing = d.enc_inducing;
    c.cond_dim = d.cond_dim;
    c.den_hidden = d.den_hidden;
    c.den_blocks = d.den_blocks;
    c.den_ratio = d.den_ratio;
    c.vae_steps = 2000;
    c.vae_batch = 128;
    c.vae_lr = 1e-3f;
    c.vae_beta = d.vae_beta;
    c.in_noise = 1e-3f;
    c.lat_noise = 0.1f;
    c.align_steps = 0;
    c.align_lr = 1e-3f;
    c.align_temp = 0.1f;
    c.steps = 6000;
    c.tasks_per_step = 32;
    c.noise_per_task = 4;
    c.lr = 1e-3f;
    c.p_uncond = 0.1f;
    c.ema_decay = 0.999f;
    c.kmin = 1;
    c.kmax = 10;
    c.zoo_emb_shots = 10;
    c.checkpoint_every = 120.0;
    if (quick) {
        c.vae_hidden = 64;
        c.vae_blocks = 1;
        c.tok_latent = 8;
        c.enc_d = 32;
        c.enc_heads = 2;
        c.enc_inducing = 4;
        c.cond_dim = 64;
        c.den_hidden = 128;
        c.den_blocks = 2;
        c.den_ratio = 2;
        c.vae_steps = 2000;
        c.vae_batch = 64;
        c.steps = 3000;
        c.tasks_per_step = 16;
        c.ema_decay = 0.995f;
    }
    return c;
}

/* ---------------------------------------------------------------- helpers */

typedef struct trainer {
    const zoo *z;
    const gen_train_cfg *cfg;
    generator g;
    backend_t *be;
    arena ar;
    int n, P, L, F, N, C;
    float *wn;   /* [n, P] normalised zoo weights (host) */
    float *Z;    /* [n, L] standardised latents (host) */
    paramset align_ps;
    linear align_proj; /* latent -> cond space */
    float *dev_scalar;
    /* progress of the stages (for checkpoints) */
    int stage;   /* 1 vae, 2 align, 3 diffusion, 4 done */
    int step;
    float vae_loss_ema, align_loss_ema, diff_loss_ema;
    double last_ckpt, started;
    char ckpt_path[1024];
} trainer;

static float read_scalar(trainer *t)
{
    float v = NAN;
    if (t->be->ops->to_host(t->be, &v, t->dev_scalar, sizeof v))
        return NAN;
    return v;
}

static int upload(trainer *t, float *dst, const float *src, size_t n, d2_error *err)
{
    if (t->be->ops->to_device(t->be, dst, src, n * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "cannot upload training data");
    return 0;
}

static int download(trainer *t, float *dst, const float *src, size_t n, d2_error *err)
{
    if (t->be->ops->to_host(t->be, dst, src, n * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "cannot read training data back");
    return 0;
}

/* K-shot support of zoo entry `e`, standardised, laid out [N][K][F] into X
 * (host). Classes with fewer than K rows are filled by repeating rows. */
static int fill_support(trainer *t, int e, int K, rng *r, float *X, d2_error *err)
{
    dataset s = {0};
    int rc = zoo_entry_support(t->z, e, K, r, &s, err);
    if (rc)
        return rc;
    const int F = t->F;
    for (int c = 0; c < t->N; c++) {
        int have = 0;
        int first = -1;
        for (int i = 0; i < s.n && have < K; i++) {
            if (s.y[i] != c)
                continue;
            if (first < 0)
                first = i;
            float *dst = X + ((size_t)c * K + have) * F;
            for (int j = 0; j < F; j++)
                dst[j] = (s.x[(size_t)i * F + j] - t->g.f_mean[j]) / t->g.f_std[j];
            have++;
        }
        if (first < 0) {
            dataset_free(&s);
            return d2_fail(err, D2_EFORMAT, "zoo entry %d: class %d has no support sample", e, c);
        }
        for (int k = have; k < K; k++)
            memcpy(X + ((size_t)c * K + k) * F, X + ((size_t)c * K + (k % have)) * F,
                   (size_t)F * sizeof(float));
    }
    dataset_free(&s);
    return 0;
}

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

static int checkpoint_save(trainer *t, d2_error *err)
{
    st_writer w;
    st_writer_init(&w);
    int rc;
    char buf[64];
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
    snprintf(buf, sizeof buf, "%.9g %.9g %.9g", (double)t->vae_loss_ema,
             (double)t->align_loss_ema, (double)t->diff_loss_ema);
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

static int checkpoint_load(trainer *t, d2_error *err)
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
    if (sscanf(losses, "%g %g %g", &t->vae_loss_ema, &t->align_loss_ema, &t->diff_loss_ema) != 3) {
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

static int maybe_checkpoint(trainer *t, d2_error *err)
{
    if (d2_now() - t->last_ckpt < t->cfg->checkpoint_every)
        return 0;
    return checkpoint_save(t, err);
}

static int should_stop(trainer *t)
{
    return t->cfg->stop_after > 0 && d2_now() - t->started >= t->cfg->stop_after;
}

/* ---------------------------------------------------------------- stage 1 */

static int stage_vae(trainer *t, gen_train_report *rep, d2_error *err)
{
    const gen_train_cfg *cfg = t->cfg;
    generator *g = &t->g;
    backend_t *be = t->be;
    const struct backend_ops *op = be->ops;
    const wtok *tk = &g->tok;
    const int B = cfg->vae_batch, P = t->P, l = g->cfg.tok_latent;
    const int R = B * tk->n_tok, tin = tk->len + tk->n_layers, zin = l + tk->n_layers;
    adamw_cfg oc = adamw_defaults();
    oc.lr = cfg->vae_lr;
    oc.weight_decay = 0.0f;
    oc.warmup_steps = cfg->vae_steps / 20;
    oc.total_steps = cfg->vae_steps;
    oc.min_lr_ratio = 0.02f;
    float *xin = malloc((size_t)B * P * sizeof(float));
    float *xt = malloc((size_t)B * P * sizeof(float));
    float *tok_in = malloc((size_t)R * tin * sizeof(float));
    float *tok_t = malloc((size_t)R * tk->len * sizeof(float));
    float *enc_out = malloc((size_t)R * 2 * l * sizeof(float));
    float *zh = malloc((size_t)R * l * sizeof(float));
    float *zrows = malloc((size_t)R * zin * sizeof(float));
    float *eps1 = malloc((size_t)R * l * sizeof(float));
    float *dzr = malloc((size_t)R * zin * sizeof(float));
    float *dout = malloc((size_t)R * 2 * l * sizeof(float));
    int rc = 0;
    if (!xin || !xt || !tok_in || !tok_t || !enc_out || !zh || !zrows || !eps1 || !dzr || !dout) {
        rc = d2_fail(err, D2_ENOMEM, "stage 1: out of memory");
        goto out;
    }
    progress pb;
    progress_begin(&pb, "stage 1 vae", "steps", cfg->vae_steps, cfg->progress);
    for (; t->step < cfg->vae_steps; t->step++) {
        if (should_stop(t)) {
            rep->stopped = 1;
            break;
        }
        rng r;
        rng_init(&r, rng_derive(cfg->seed, "vae-step", (uint64_t)t->step), 0);
        for (int b = 0; b < B; b++) {
            int e = (int)rng_below(&r, (uint32_t)t->n);
            const float *src = t->wn + (size_t)e * P;
            for (int j = 0; j < P; j++) {
                xt[(size_t)b * P + j] = src[j];
                xin[(size_t)b * P + j] = src[j] + cfg->in_noise * rng_normal(&r);
            }
        }
        wtok_split(tk, xin, B, tok_in);
        wtok_targets(tk, xt, B, tok_t);
        size_t mark = arena_mark(&t->ar);
        float *din = arena_floats(&t->ar, (size_t)R * tin);
        float *dtg = arena_floats(&t->ar, (size_t)R * tk->len);
        float *dz_dev = arena_floats(&t->ar, (size_t)R * zin);
        float *zdev = arena_floats(&t->ar, (size_t)R * zin);
        float *dxhat = arena_floats(&t->ar, (size_t)R * tk->len);
        float *dout_dev = arena_floats(&t->ar, (size_t)R * 2 * l);
        if (!din || !dtg || !dz_dev || !zdev || !dxhat || !dout_dev) {
            rc = d2_fail(err, D2_ENOMEM, "stage 1: scratch arena is full");
            goto out;
        }
        resmlp_cache ce, cd;
        if ((rc = upload(t, din, tok_in, (size_t)R * tin, err)) ||
            (rc = upload(t, dtg, tok_t, (size_t)R * tk->len, err)) ||
            (rc = resmlp_forward(be, &g->vae_enc, &g->vae_ps, &t->ar, &ce, din, R, err)) ||
            (rc = download(t, enc_out, ce.y, (size_t)R * 2 * l, err)))
            goto out;
        // reparameterise on the host (the batch is small): z = mu + sigma eps + noise
        double kl = 0;
        for (int i = 0; i < R; i++)
            for (int j = 0; j < l; j++) {
                float mu = enc_out[(size_t)i * 2 * l + j];
                float lv = enc_out[(size_t)i * 2 * l + l + j];
                if (lv < -20.0f)
                    lv = -20.0f;
                if (lv > 10.0f)
                    lv = 10.0f;
                float e1 = rng_normal(&r);
                eps1[(size_t)i * l + j] = e1;
                zh[(size_t)i * l + j] = mu + expf(0.5f * lv) * e1 + cfg->lat_noise * rng_normal(&r);
                kl += 0.5 * ((double)mu * mu + exp(lv) - 1.0 - lv);
            }
        kl /= B;
        wtok_latent_rows(tk, zh, B, l, zrows);
        if ((rc = upload(t, zdev, zrows, (size_t)R * zin, err)) ||
            (rc = resmlp_forward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, zdev, R, err)))
            goto out;
        op->mse(be, t->dev_scalar, dxhat, cd.y, dtg, (size_t)R * tk->len, 1.0f);
        float mse = read_scalar(t);
        paramset_zero_grad(&g->vae_ps);
        if ((rc = resmlp_backward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, dz_dev, dxhat, err)) ||
            (rc = download(t, dzr, dz_dev, (size_t)R * zin, err)))
            goto out;
        const float beta = cfg->vae_beta;
        for (int i = 0; i < R; i++)
            for (int j = 0; j < l; j++) {
                float mu = enc_out[(size_t)i * 2 * l + j];
                float lv = enc_out[(size_t)i * 2 * l + l + j];
                int clamped = lv < -20.0f || lv > 10.0f;
                float lvc = lv < -20.0f ? -20.0f : (lv > 10.0f ? 10.0f : lv);
                float g_z = dzr[(size_t)i * zin + j];
                dout[(size_t)i * 2 * l + j] = g_z + beta * mu / (float)B;
                float dlv = clamped ? 0.0f
                                    : g_z * eps1[(size_t)i * l + j] * 0.5f * expf(0.5f * lvc) +
                                          beta * 0.5f * (expf(lvc) - 1.0f) / (float)B;
                dout[(size_t)i * 2 * l + l + j] = dlv;
            }
        if ((rc = upload(t, dout_dev, dout, (size_t)R * 2 * l, err)) ||
            (rc = resmlp_backward(be, &g->vae_enc, &g->vae_ps, &t->ar, &ce, NULL, dout_dev, err)) ||
            (rc = optim_adamw_step(&g->vae_ps, &oc, t->step, NULL, err)))
            goto out;
        arena_reset(&t->ar, mark);
        float loss = mse + beta * (float)kl;
        if (!isfinite(loss)) {
            rc = d2_fail(err, D2_ERANGE, "stage 1 diverged at step %d (loss %g)", t->step,
                         (double)loss);
            goto out;
        }
        t->vae_loss_ema = t->step == 0 ? loss : 0.98f * t->vae_loss_ema + 0.02f * loss;
        char status[96];
        snprintf(status, sizeof status, "loss %.5f (mse %.5f)", (double)t->vae_loss_ema,
                 (double)mse);
        progress_update(&pb, t->step + 1, status);
        if ((rc = maybe_checkpoint(t, err)))
            goto out;
    }
    {
        char status[64];
        snprintf(status, sizeof status, "loss %.5f", (double)t->vae_loss_ema);
        progress_end(&pb, t->step, status);
    }
    rep->vae_loss = t->vae_loss_ema;
    rep->vae_steps_done = t->step;
out:
    free(xin);
    free(xt);
    free(tok_in);
    free(tok_t);
    free(enc_out);
    free(zh);
    free(zrows);
    free(eps1);
    free(dzr);
    free(dout);
    return rc;
}

/* Encode every zoo entry to its mean latent, standardise, and measure the
 * reconstruction error of the zoo means in normalised weight space. */
static int compute_latents(trainer *t, gen_train_report *rep, d2_error *err)
{
    generator *g = &t->g;
    backend_t *be = t->be;
    const wtok *tk = &g->tok;
    const int P = t->P, L = t->L, l = g->cfg.tok_latent, chunk = 128;
    const int tin = tk->len + tk->n_layers, zin = l + tk->n_layers;
    const size_t maxr = (size_t)chunk * tk->n_tok;
    float *tokens = malloc(maxr * tin * sizeof(float));
    float *out = malloc(maxr * 2 * l * sizeof(float));
    float *zrows = malloc(maxr * zin * sizeof(float));
    float *dec = malloc(maxr * tk->len * sizeof(float));
    float *rec = malloc((size_t)chunk * P * sizeof(float));
    float *zraw = malloc((size_t)t->n * L * sizeof(float));
    int rc = 0;
    double se = 0;
    if (!tokens || !out || !zrows || !dec || !rec || !zraw) {
        rc = d2_fail(err, D2_ENOMEM, "latents: out of memory");
        goto done;
    }
    for (int s = 0; s < t->n; s += chunk) {
        const int B = t->n - s < chunk ? t->n - s : chunk, R = B * tk->n_tok;
        size_t mark = arena_mark(&t->ar);
        float *x = arena_floats(&t->ar, (size_t)R * tin);
        float *zd = arena_floats(&t->ar, (size_t)R * zin);
        resmlp_cache ce, cd;
        if (!x || !zd) {
            rc = d2_fail(err, D2_ENOMEM, "latents: scratch arena is full");
            goto done;
        }
        wtok_split(tk, t->wn + (size_t)s * P, B, tokens);
        if ((rc = upload(t, x, tokens, (size_t)R * tin, err)) ||
            (rc = resmlp_forward(be, &g->vae_enc, &g->vae_ps, &t->ar, &ce, x, R, err)) ||
            (rc = download(t, out, ce.y, (size_t)R * 2 * l, err)))
            goto done;
        for (int i = 0; i < R; i++) // row i = (entry s + i / n_tok, token i % n_tok)
            memcpy(zraw + (size_t)s * L + (size_t)i * l, out + (size_t)i * 2 * l,
                   (size_t)l * sizeof(float));
        wtok_latent_rows(tk, zraw + (size_t)s * L, B, l, zrows);
        if ((rc = upload(t, zd, zrows, (size_t)R * zin, err)) ||
            (rc = resmlp_forward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, zd, R, err)) ||
            (rc = download(t, dec, cd.y, (size_t)R * tk->len, err)))
            goto done;
        wtok_merge(tk, dec, B, rec);
        for (size_t i = 0; i < (size_t)B * P; i++) {
            double e = (double)rec[i] - t->wn[(size_t)s * P + i];
            se += e * e;
        }
        arena_reset(&t->ar, mark);
    }
    rep->vae_recon_mse = (float)(se / ((double)t->n * P));
    for (int j = 0; j < L; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < t->n; i++)
            m += zraw[(size_t)i * L + j];
        m /= t->n;
        for (int i = 0; i < t->n; i++) {
            double d = zraw[(size_t)i * L + j] - m;
            v += d * d;
        }
        v /= t->n;
        g->z_mean[j] = (float)m;
        g->z_std[j] = (float)(sqrt(v) > 1e-4 ? sqrt(v) : 1e-4);
    }
    for (int i = 0; i < t->n; i++)
        for (int j = 0; j < L; j++)
            t->Z[(size_t)i * L + j] = (zraw[(size_t)i * L + j] - g->z_mean[j]) / g->z_std[j];
done:
    free(tokens);
    free(out);
    free(zrows);
    free(dec);
    free(rec);
    free(zraw);
    return rc;
}

/* ---------------------------------------------------------- alignment */

/* InfoNCE between normalised encoder embeddings u [B, C] and projected latents
 * v [B, C] (host), symmetric, temperature tau. Returns the loss, fills du, dv. */
static float info_nce(const float *u, const float *v, int B, int C, float tau, float *du,
                      float *dv)
{
    double *un = calloc((size_t)B * C, sizeof(double)), *vn = calloc((size_t)B * C, sizeof(double));
    double *nu = calloc((size_t)B, sizeof(double)), *nv = calloc((size_t)B, sizeof(double));
    double *S = calloc((size_t)B * B, sizeof(double)), *G = calloc((size_t)B * B, sizeof(double));
    double *dun = calloc((size_t)B * C, sizeof(double)), *dvn = calloc((size_t)B * C, sizeof(double));
    double loss = NAN;
    if (!un || !vn || !nu || !nv || !S || !G || !dun || !dvn)
        goto out;
    for (int i = 0; i < B; i++) {
        double a = 0, b = 0;
        for (int j = 0; j < C; j++) {
            a += (double)u[i * C + j] * u[i * C + j];
            b += (double)v[i * C + j] * v[i * C + j];
        }
        nu[i] = sqrt(a) + 1e-8;
        nv[i] = sqrt(b) + 1e-8;
        for (int j = 0; j < C; j++) {
            un[i * C + j] = u[i * C + j] / nu[i];
            vn[i * C + j] = v[i * C + j] / nv[i];
        }
    }
    for (int i = 0; i < B; i++)
        for (int k = 0; k < B; k++) {
            double s = 0;
            for (int j = 0; j < C; j++)
                s += un[i * C + j] * vn[k * C + j];
            S[i * B + k] = s / tau;
        }
    loss = 0;
    // rows (u -> v) and columns (v -> u)
    for (int dir = 0; dir < 2; dir++)
        for (int i = 0; i < B; i++) {
            double mx = -INFINITY, z = 0;
            for (int k = 0; k < B; k++) {
                double s = dir ? S[k * B + i] : S[i * B + k];
                if (s > mx)
                    mx = s;
            }
            for (int k = 0; k < B; k++)
                z += exp((dir ? S[k * B + i] : S[i * B + k]) - mx);
            double diag = S[i * B + i];
            loss += -(diag - mx - log(z)) / (2.0 * B);
            for (int k = 0; k < B; k++) {
                double p = exp((dir ? S[k * B + i] : S[i * B + k]) - mx) / z;
                double gval = (p - (k == i)) / (2.0 * B);
                if (dir)
                    G[k * B + i] += gval;
                else
                    G[i * B + k] += gval;
            }
        }
    // dS -> dun, dvn
    for (int i = 0; i < B; i++)
        for (int k = 0; k < B; k++) {
            double gk = G[i * B + k] / tau;
            for (int j = 0; j < C; j++) {
                dun[i * C + j] += gk * vn[k * C + j];
                dvn[k * C + j] += gk * un[i * C + j];
            }
        }
    // through the normalisation: dx = (dxn - xn (xn . dxn)) / |x|
    for (int i = 0; i < B; i++) {
        double pu = 0, pv = 0;
        for (int j = 0; j < C; j++) {
            pu += un[i * C + j] * dun[i * C + j];
            pv += vn[i * C + j] * dvn[i * C + j];
        }
        for (int j = 0; j < C; j++) {
            du[i * C + j] = (float)((dun[i * C + j] - un[i * C + j] * pu) / nu[i]);
            dv[i * C + j] = (float)((dvn[i * C + j] - vn[i * C + j] * pv) / nv[i]);
        }
    }
out:
    free(un);
    free(vn);
    free(nu);
    free(nv);
    free(S);
    free(G);
    free(dun);
    free(dvn);
    return (float)loss;
}

static int stage_align(trainer *t, gen_train_report *rep, d2_error *err)
{
    const gen_train_cfg *cfg = t->cfg;
    generator *g = &t->g;
    backend_t *be = t->be;
    const int B = cfg->tasks_per_step, N = t->N, F = t->F, L = t->L, C = t->C;
    adamw_cfg oc = adamw_defaults();
    oc.lr = cfg->align_lr;
    oc.warmup_steps = cfg->align_steps / 20;
    oc.total_steps = cfg->align_steps;
    oc.min_lr_ratio = 0.05f;
    const int Kmax = cfg->kmax;
    float *X = malloc((size_t)B * N * Kmax * F * sizeof(float));
    float *zb = malloc((size_t)B * L * sizeof(float));
    float *u = malloc((size_t)B * C * sizeof(float)), *v = malloc((size_t)B * C * sizeof(float));
    float *du = malloc((size_t)B * C * sizeof(float)), *dv = malloc((size_t)B * C * sizeof(float));
    int rc = 0;
    if (!X || !zb || !u || !v || !du || !dv) {
        rc = d2_fail(err, D2_ENOMEM, "alignment: out of memory");
        goto out;
    }
    progress pb;
    progress_begin(&pb, "align", "steps", cfg->align_steps, cfg->progress);
    for (; t->step < cfg->align_steps; t->step++) {
        if (should_stop(t)) {
            rep->stopped = 1;
            break;
        }
        rng r;
        rng_init(&r, rng_derive(cfg->seed, "align-step", (uint64_t)t->step), 0);
        const int K = cfg->kmin + (int)rng_below(&r, (uint32_t)(cfg->kmax - cfg->kmin + 1));
        for (int b = 0; b < B; b++) {
            int e = (int)rng_below(&r, (uint32_t)t->n);
            memcpy(zb + (size_t)b * L, t->Z + (size_t)e * L, (size_t)L * sizeof(float));
            if ((rc = fill_support(t, e, K, &r, X + (size_t)b * N * K * F, err)))
                goto out;
        }
        size_t mark = arena_mark(&t->ar);
        float *Xd = arena_floats(&t->ar, (size_t)B * N * K * F);
        float *zd = arena_floats(&t->ar, (size_t)B * L);
        float *vd = arena_floats(&t->ar, (size_t)B * C);
        float *dud = arena_floats(&t->ar, (size_t)B * C);
        float *dvd = arena_floats(&t->ar, (size_t)B * C);
        if (!Xd || !zd || !vd || !dud || !dvd) {
            rc = d2_fail(err, D2_ENOMEM, "alignment: scratch arena is full");
            goto out;
        }
        setenc_cache sc;
        if ((rc = upload(t, Xd, X, (size_t)B * N * K * F, err)) ||
            (rc = upload(t, zd, zb, (size_t)B * L, err)) ||
            (rc = setenc_forward(be, &g->enc, &g->net_ps, &t->ar, &sc, Xd, B, N, K, err)))
            goto out;
        linear_forward(be, &t->align_proj, &t->align_ps, vd, zd, B);
        if ((rc = download(t, u, sc.cond, (size_t)B * C, err)) ||
            (rc = download(t, v, vd, (size_t)B * C, err)))
            goto out;
        float loss = info_nce(u, v, B, C, cfg->align_temp, du, dv);
        if (!isfinite(loss)) {
            rc = d2_fail(err, D2_ERANGE, "alignment diverged at step %d", t->step);
            goto out;
        }
        paramset_zero_grad(&g->net_ps);
        paramset_zero_grad(&t->align_ps);
        if ((rc = upload(t, dud, du, (size_t)B * C, err)) ||
            (rc = upload(t, dvd, dv, (size_t)B * C, err)))
            goto out;
        linear_backward(be, &t->align_proj, &t->align_ps, NULL, dvd, zd, B);
        if ((rc = setenc_backward(be, &g->enc, &g->net_ps, &t->ar, &sc, dud, err)) ||
            (rc = optim_adamw_step(&g->net_ps, &oc, t->step, NULL, err)) ||
            (rc = optim_adamw_step(&t->align_ps, &oc, t->step, NULL, err)))
            goto out;
        arena_reset(&t->ar, mark);
        t->align_loss_ema = t->step == 0 ? loss : 0.98f * t->align_loss_ema + 0.02f * loss;
        char status[64];
        snprintf(status, sizeof status, "infonce %.4f", (double)t->align_loss_ema);
        progress_update(&pb, t->step + 1, status);
        if ((rc = maybe_checkpoint(t, err)))
            goto out;
    }
    progress_end(&pb, t->step, NULL);
    rep->align_loss = t->align_loss_ema;
    rep->align_steps_done = t->step;
out:
    free(X);
    free(zb);
    free(u);
    free(v);
    free(du);
    free(dv);
    return rc;
}

/* ---------------------------------------------------------------- stage 2 */

static int stage_diffusion(trainer *t, gen_train_report *rep, d2_error *err)
{
    const gen_train_cfg *cfg = t->cfg;
    generator *g = &t->g;
    backend_t *be = t->be;
    const struct backend_ops *op = be->ops;
    const int B = cfg->tasks_per_step, M = cfg->noise_per_task, R = B * M;
    const int N = t->N, F = t->F, L = t->L, C = t->C, TD = g->cfg.temb_dim;
    adamw_cfg oc = adamw_defaults();
    oc.lr = cfg->lr;
    oc.weight_decay = 0.01f;
    oc.warmup_steps = cfg->steps / 25;
    oc.total_steps = cfg->steps;
    oc.min_lr_ratio = 0.05f;
    const int Kmax = cfg->kmax;
    float *X = malloc((size_t)B * N * Kmax * F * sizeof(float));
    float *zt = malloc((size_t)R * L * sizeof(float));
    float *eps = malloc((size_t)R * L * sizeof(float));
    float *temb = malloc((size_t)R * TD * sizeof(float));
    int *ts = malloc((size_t)R * sizeof(int));
    int *ent = malloc((size_t)B * sizeof(int));
    unsigned char *drop = malloc((size_t)B);
    int rc = 0;
    if (!X || !zt || !eps || !temb || !ts || !ent || !drop) {
        rc = d2_fail(err, D2_ENOMEM, "stage 2: out of memory");
        goto out;
    }
    progress pb;
    progress_begin(&pb, "stage 2 diffusion", "steps", cfg->steps, cfg->progress);
    for (; t->step < cfg->steps; t->step++) {
        if (should_stop(t)) {
            rep->stopped = 1;
            break;
        }
        rng r;
        rng_init(&r, rng_derive(cfg->seed, "diffusion-step", (uint64_t)t->step), 0);
        const int K = cfg->kmin + (int)rng_below(&r, (uint32_t)(cfg->kmax - cfg->kmin + 1));
        for (int b = 0; b < B; b++) {
            ent[b] = (int)rng_below(&r, (uint32_t)t->n);
            drop[b] = rng_uniform(&r) < cfg->p_uncond;
            if ((rc = fill_support(t, ent[b], K, &r, X + (size_t)b * N * K * F, err)))
                goto out;
        }
        for (int m = 0; m < M; m++)
            for (int b = 0; b < B; b++) {
                const int row = m * B + b;
                const int tt = (int)rng_below(&r, (uint32_t)g->cfg.T);
                ts[row] = tt;
                const double ab = g->sched.alpha_bar[tt];
                const float sa = (float)sqrt(ab), sb = (float)sqrt(1.0 - ab);
                const float *z0 = t->Z + (size_t)ent[b] * L;
                for (int j = 0; j < L; j++) {
                    float e = rng_normal(&r);
                    eps[(size_t)row * L + j] = e;
                    zt[(size_t)row * L + j] = sa * z0[j] + sb * e;
                }
            }
        denoiser_timestep_features(TD, ts, R, temb);
        size_t mark = arena_mark(&t->ar);
        float *Xd = arena_floats(&t->ar, (size_t)B * N * K * F);
        float *ztd = arena_floats(&t->ar, (size_t)R * L);
        float *epsd = arena_floats(&t->ar, (size_t)R * L);
        float *tembd = arena_floats(&t->ar, (size_t)R * TD);
        float *condr = arena_floats(&t->ar, (size_t)R * C);
        float *dcondr = arena_floats(&t->ar, (size_t)R * C);
        float *dcond = arena_floats(&t->ar, (size_t)B * C);
        float *deps = arena_floats(&t->ar, (size_t)R * L);
        if (!Xd || !ztd || !epsd || !tembd || !condr || !dcondr || !dcond || !deps) {
            rc = d2_fail(err, D2_ENOMEM, "stage 2: scratch arena is full");
            goto out;
        }
        setenc_cache sc;
        denoiser_cache dc;
        if ((rc = upload(t, Xd, X, (size_t)B * N * K * F, err)) ||
            (rc = upload(t, ztd, zt, (size_t)R * L, err)) ||
            (rc = upload(t, epsd, eps, (size_t)R * L, err)) ||
            (rc = upload(t, tembd, temb, (size_t)R * TD, err)) ||
            (rc = setenc_forward(be, &g->enc, &g->net_ps, &t->ar, &sc, Xd, B, N, K, err)))
            goto out;
        const float *null_cond = g->net_ps.w + g->den.null_cond;
        for (int b = 0; b < B; b++)
            if (drop[b])
                op->copy(be, sc.cond + (size_t)b * C, null_cond, (size_t)C * sizeof(float));
        op->repeat_rows(be, condr, sc.cond, M, B, C);
        if ((rc = denoiser_forward(be, &g->den, &g->net_ps, &t->ar, &dc, ztd, tembd, condr, R, 1,
                                   err)))
            goto out;
        op->mse(be, t->dev_scalar, deps, dc.eps, epsd, (size_t)R * L, 1.0f);
        float loss = read_scalar(t);
        paramset_zero_grad(&g->net_ps);
        if ((rc = denoiser_backward(be, &g->den, &g->net_ps, &t->ar, &dc, deps, dcondr, err)))
            goto out;
        op->repeat_rows_backward(be, dcond, dcondr, M, B, C);
        for (int b = 0; b < B; b++)
            if (drop[b]) {
                op->axpby(be, g->net_ps.g + g->den.null_cond, 1.0f, dcond + (size_t)b * C, 1.0f,
                          (size_t)C);
                op->fill(be, dcond + (size_t)b * C, 0.0f, (size_t)C);
            }
        if ((rc = setenc_backward(be, &g->enc, &g->net_ps, &t->ar, &sc, dcond, err)) ||
            (rc = optim_adamw_step(&g->net_ps, &oc, t->step, NULL, err)))
            goto out;
        optim_ema_update(&g->net_ps, t->step < 100 ? 0.9f : cfg->ema_decay);
        arena_reset(&t->ar, mark);
        if (!isfinite(loss)) {
            rc = d2_fail(err, D2_ERANGE, "stage 2 diverged at step %d", t->step);
            goto out;
        }
        t->diff_loss_ema = t->step == 0 ? loss : 0.99f * t->diff_loss_ema + 0.01f * loss;
        char status[64];
        snprintf(status, sizeof status, "loss %.4f", (double)t->diff_loss_ema);
        progress_update(&pb, t->step + 1, status);
        if ((rc = maybe_checkpoint(t, err)))
            goto out;
    }
    {
        char status[64];
        snprintf(status, sizeof status, "loss %.4f", (double)t->diff_loss_ema);
        progress_end(&pb, t->step, status);
    }
    rep->diffusion_loss = t->diff_loss_ema;
    rep->steps_done = t->step;
out:
    free(X);
    free(zt);
    free(eps);
    free(temb);
    free(ts);
    free(ent);
    free(drop);
    return rc;
}

/* Zoo index: each entry's condition from a seeded support set (EMA encoder). */
static int compute_zoo_index(trainer *t, d2_error *err)
{
    generator *g = &t->g;
    const int K = t->cfg->zoo_emb_shots, N = t->N, F = t->F;
    float *X = malloc((size_t)N * K * F * sizeof(float));
    float *raw = malloc((size_t)N * K * F * sizeof(float));
    int counts[D2_MAX_WAY];
    int rc = 0;
    if (!X || !raw) {
        rc = d2_fail(err, D2_ENOMEM, "zoo index: out of memory");
        goto out;
    }
    for (int c = 0; c < N; c++)
        counts[c] = K;
    for (int e = 0; e < t->n; e++) {
        rng r;
        rng_init(&r, rng_derive(t->cfg->seed, "zoo-index", (uint64_t)e), 0);
        if ((rc = fill_support(t, e, K, &r, X, err)))
            goto out;
        // gen_encode_support standardises itself: undo the standardisation
        for (size_t i = 0; i < (size_t)N * K; i++)
            for (int j = 0; j < F; j++)
                raw[i * F + j] = X[i * F + j] * g->f_std[j] + g->f_mean[j];
        if ((rc = gen_encode_support(g, t->be, &t->ar, raw, counts, N,
                                     g->zoo_emb + (size_t)e * g->cfg.cond_dim, err)))
            goto out;
    }
out:
    free(X);
    free(raw);
    return rc;
}

static char *provenance_json(const trainer *t, const gen_train_report *rep)
{
    const gen_train_cfg *c = t->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "zoo_fingerprint", json_string(t->z->fingerprint));
    json_object_set_new(o, "zoo_source", json_string(t->z->source));
    json_object_set_new(o, "zoo_size", json_integer(t->n));
    json_object_set_new(o, "seed", json_integer((json_int_t)c->seed));
    json_t *st = json_object();
    json_object_set_new(st, "vae", json_integer(rep->vae_steps_done));
    json_object_set_new(st, "align", json_integer(rep->align_steps_done));
    json_object_set_new(st, "diffusion", json_integer(rep->steps_done));
    json_object_set_new(o, "steps", st);
    json_t *ls = json_object();
    json_object_set_new(ls, "vae", json_real(rep->vae_loss));
    json_object_set_new(ls, "vae_recon_mse", json_real(rep->vae_recon_mse));
    if (rep->align_steps_done)
        json_object_set_new(ls, "align", json_real(rep->align_loss));
    json_object_set_new(ls, "diffusion", json_real(rep->diffusion_loss));
    json_object_set_new(o, "final_losses", ls);
    json_t *h = json_object();
    json_object_set_new(h, "vae_batch", json_integer(c->vae_batch));
    json_object_set_new(h, "vae_lr", json_real(c->vae_lr));
    json_object_set_new(h, "in_noise", json_real(c->in_noise));
    json_object_set_new(h, "lat_noise", json_real(c->lat_noise));
    json_object_set_new(h, "tasks_per_step", json_integer(c->tasks_per_step));
    json_object_set_new(h, "noise_per_task", json_integer(c->noise_per_task));
    json_object_set_new(h, "lr", json_real(c->lr));
    json_object_set_new(h, "p_uncond", json_real(c->p_uncond));
    json_object_set_new(h, "ema_decay", json_real(c->ema_decay));
    json_object_set_new(h, "shots", json_pack("[ii]", c->kmin, c->kmax));
    json_object_set_new(o, "training", h);
    json_object_set_new(o, "version", json_string(D2_VERSION));
    char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}

static int trainer_setup(trainer *t, const zoo *z, const gen_train_cfg *cfg, backend_t *be,
                         d2_error *err)
{
    memset(t, 0, sizeof *t);
    t->z = z;
    t->cfg = cfg;
    t->be = be;
    if (!z->has_data)
        return d2_fail(err, D2_EINVAL, "training needs the zoo's data (load it with data)");
    if (z->n < 2)
        return d2_fail(err, D2_EINVAL, "the zoo has %d entries; training needs at least 2", z->n);
    if (cfg->kmin < 1 || cfg->kmax < cfg->kmin)
        return d2_fail(err, D2_EINVAL, "shots must satisfy 1 <= kmin <= kmax");
    t->n = z->n;
    t->P = z->P;
    t->N = z->way;
    t->F = z->fmap.out_dim;
    gen_config gc = gen_config_defaults(z->P, z->fmap.in_dim, z->fmap.out_dim, z->way,
                                        z->spec.text);
    gc.vae_hidden = cfg->vae_hidden;
    gc.vae_blocks = cfg->vae_blocks;
    gc.tok_latent = cfg->tok_latent;
    gc.vae_beta = cfg->vae_beta;
    gc.enc_d = cfg->enc_d;
    gc.enc_heads = cfg->enc_heads;
    gc.enc_inducing = cfg->enc_inducing;
    gc.cond_dim = cfg->cond_dim;
    gc.den_hidden = cfg->den_hidden;
    gc.den_blocks = cfg->den_blocks;
    gc.den_ratio = cfg->den_ratio;
    int rc;
    if ((rc = gen_model_init(&t->g, &gc, be, cfg->seed, err)))
        return rc;
    t->L = t->g.cfg.latent;
    t->C = gc.cond_dim;
    if ((rc = feature_map_copy(&t->g.fmap, &z->fmap, err)) ||
        (rc = gen_model_alloc_index(&t->g, z->n, err)) ||
        (rc = paramset_alloc_optim(&t->g.vae_ps, err)) ||
        (rc = paramset_alloc_optim(&t->g.net_ps, err)) ||
        (rc = paramset_alloc_ema(&t->g.net_ps, err)))
        return rc;
    paramset_init(&t->align_ps);
    if ((rc = linear_init(&t->align_proj, &t->align_ps, "align.proj", t->L, t->C, 1, 1.0f, err)) ||
        (rc = paramset_alloc(&t->align_ps, be, rng_derive(cfg->seed, "align-init", 0), err)) ||
        (rc = paramset_alloc_optim(&t->align_ps, err)))
        return rc;
    if ((rc = arena_init(&t->ar, be, TRAIN_ARENA_BYTES, err)))
        return rc;
    if (!(t->dev_scalar = backend_alloc_floats(be, 16)))
        return d2_fail(err, D2_ENOMEM, "out of device memory");
    const int P = t->P, F = t->F;
    generator *g = &t->g;
    // weight statistics over the zoo
    t->wn = malloc((size_t)t->n * P * sizeof(float));
    t->Z = calloc((size_t)t->n * t->L, sizeof(float));
    if (!t->wn || !t->Z)
        return d2_fail(err, D2_ENOMEM, "out of memory for the zoo weights");
    double mean_std = 0;
    for (int j = 0; j < P; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < t->n; i++)
            m += z->theta[(size_t)i * P + j];
        m /= t->n;
        for (int i = 0; i < t->n; i++) {
            double d = z->theta[(size_t)i * P + j] - m;
            v += d * d;
        }
        g->w_mean[j] = (float)m;
        g->w_std[j] = (float)sqrt(v / t->n);
        mean_std += g->w_std[j];
    }
    mean_std /= P;
    for (int j = 0; j < P; j++)
        if (g->w_std[j] < 1e-3 * mean_std || g->w_std[j] < 1e-8)
            g->w_std[j] = (float)(mean_std > 1e-8 ? 1e-3 * mean_std : 1.0);
    for (int i = 0; i < t->n; i++)
        for (int j = 0; j < P; j++)
            t->wn[(size_t)i * P + j] = (z->theta[(size_t)i * P + j] - g->w_mean[j]) / g->w_std[j];
    memcpy(g->zoo_theta, z->theta, (size_t)t->n * P * sizeof(float));
    for (int i = 0; i < t->n; i++)
        for (int c = 0; c < t->N; c++)
            g->zoo_classes[(size_t)i * t->N + c] = z->e[i].classes[c];
    // encoder input statistics over the source's training features
    const dataset *tf = &z->train_feat;
    if (tf->n > 0 && tf->dim == F) {
        for (int j = 0; j < F; j++) {
            double m = 0, v = 0;
            for (int i = 0; i < tf->n; i++)
                m += tf->x[(size_t)i * F + j];
            m /= tf->n;
            for (int i = 0; i < tf->n; i++) {
                double d = tf->x[(size_t)i * F + j] - m;
                v += d * d;
            }
            g->f_mean[j] = (float)m;
            g->f_std[j] = (float)(sqrt(v / tf->n) > 1e-6 ? sqrt(v / tf->n) : 1.0);
        }
    }
    t->stage = 1;
    t->step = 0;
    return 0;
}

static void trainer_free(trainer *t)
{
    gen_model_free(&t->g);
    paramset_free(&t->align_ps);
    arena_free(&t->ar);
    if (t->dev_scalar)
        t->be->ops->free(t->be, t->dev_scalar);
    free(t->wn);
    free(t->Z);
}

int generator_train(const zoo *z, const gen_train_cfg *cfg, const char *out_path,
                    backend_t *be, gen_train_report *rep, d2_error *err)
{
    memset(rep, 0, sizeof *rep);
    trainer *t = calloc(1, sizeof *t);
    if (!t)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    int rc = trainer_setup(t, z, cfg, be, err);
    if (rc)
        goto out;
    t->started = d2_now();
    t->last_ckpt = t->started;
    if (cfg->checkpoint_path)
        snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s", cfg->checkpoint_path);
    else
        snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s.ckpt", out_path);
    if (cfg->resume) {
        if (access(t->ckpt_path, R_OK) == 0) {
            if ((rc = checkpoint_load(t, err)))
                goto out;
            if (cfg->progress)
                fprintf(stderr, "resuming from %s (stage %d, step %d)\n", t->ckpt_path,
                        t->stage, t->step);
        } else if (cfg->progress) {
            fprintf(stderr, "no checkpoint at %s: starting from the beginning\n", t->ckpt_path);
        }
    }
    if (t->stage == 1) {
        if ((rc = stage_vae(t, rep, err)))
            goto out;
        if (rep->stopped)
            goto stopped;
        if ((rc = compute_latents(t, rep, err)))
            goto out;
        t->stage = 2;
        t->step = 0;
        if ((rc = checkpoint_save(t, err)))
            goto out;
    } else {
        rep->vae_steps_done = cfg->vae_steps;
        rep->vae_loss = t->vae_loss_ema;
    }
    if (t->stage == 2) {
        if (cfg->align_steps > 0 && (rc = stage_align(t, rep, err)))
            goto out;
        if (rep->stopped)
            goto stopped;
        t->stage = 3;
        t->step = 0;
        if ((rc = checkpoint_save(t, err)))
            goto out;
    } else {
        rep->align_steps_done = cfg->align_steps;
        rep->align_loss = t->align_loss_ema;
    }
    if ((rc = stage_diffusion(t, rep, err)))
        goto out;
    if (rep->stopped)
        goto stopped;
    {
        // the reconstruction error of the final VAE on the zoo (for provenance;
        // recomputed so a resumed run reports the same figure)
        gen_train_report tmp = *rep;
        float *Zkeep = malloc((size_t)t->n * t->L * sizeof(float));
        if (!Zkeep) {
            rc = d2_fail(err, D2_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(Zkeep, t->Z, (size_t)t->n * t->L * sizeof(float));
        rc = compute_latents(t, &tmp, err);
        memcpy(t->Z, Zkeep, (size_t)t->n * t->L * sizeof(float));
        free(Zkeep);
        if (rc)
            goto out;
        rep->vae_recon_mse = tmp.vae_recon_mse;
    }
    // swap in the EMA weights for the zoo index and the bundle
    {
        float *w = t->g.net_ps.w;
        t->g.net_ps.w = t->g.net_ps.ema;
        t->g.net_ps.ema = w;
        rc = compute_zoo_index(t, err);
        if (!rc) {
            t->g.provenance_json = provenance_json(t, rep);
            if (!t->g.provenance_json)
                rc = d2_fail(err, D2_ENOMEM, "out of memory");
        }
        if (!rc)
            rc = gen_bundle_save(&t->g, out_path, 0, err);
        t->g.net_ps.ema = t->g.net_ps.w;
        t->g.net_ps.w = w;
        if (rc)
            goto out;
    }
    rep->seconds = d2_now() - t->started;
    unlink(t->ckpt_path);
    goto out;
stopped:
    rc = checkpoint_save(t, err);
    rep->seconds = d2_now() - t->started;
out:
    trainer_free(t);
    free(t);
    return rc;
}
