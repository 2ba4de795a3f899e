/* gen_train_vae.c - stage 1: the weight VAE over neuron tokens, and the
 * zoo's latents it produces for the diffusion. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_train_internal.h"
#include "optim.h"
#include "progress.h"

/* ---------------------------------------------------------------- stage 1 */

/* Host buffers of one stage-1 step (R = batch * tokens rows). */
typedef struct vae_bufs {
    float *xin, *xt;   /* [B, P] noisy input and target (normalised weights) */
    float *tok_in;     /* [R, len + layers] encoder rows */
    float *tok_t;      /* [R, len] decoder targets */
    float *enc_out;    /* [R, 2 l] encoder output: mu, logvar per row */
    float *mulv;       /* [2, R, l] mu, then the clamped logvar (the KL's input) */
    float *zh;         /* [R, l] sampled latents */
    float *zrows;      /* [R, l + layers] decoder rows */
    float *eps1;       /* [R, l] the reparameterisation noise */
    float *dzr;        /* [R, l + layers] gradient at the decoder input */
    float *dout;       /* [R, 2 l] reparameterisation gradient at the encoder output */
} vae_bufs;

static void vae_bufs_free(vae_bufs *b)
{
    float **all[] = {&b->xin, &b->xt, &b->tok_in, &b->tok_t, &b->enc_out, &b->mulv,
                     &b->zh, &b->zrows, &b->eps1, &b->dzr, &b->dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
}

static int vae_bufs_alloc(vae_bufs *b, int B, int P, int R, int tin, int len, int l, int zin,
                          d2_error *err)
{
    memset(b, 0, sizeof *b);
    b->xin = malloc((size_t)B * P * sizeof(float));
    b->xt = malloc((size_t)B * P * sizeof(float));
    b->tok_in = malloc((size_t)R * tin * sizeof(float));
    b->tok_t = malloc((size_t)R * len * sizeof(float));
    b->enc_out = malloc((size_t)R * 2 * l * sizeof(float));
    b->mulv = malloc((size_t)R * 2 * l * sizeof(float));
    b->zh = malloc((size_t)R * l * sizeof(float));
    b->zrows = malloc((size_t)R * zin * sizeof(float));
    b->eps1 = malloc((size_t)R * l * sizeof(float));
    b->dzr = malloc((size_t)R * zin * sizeof(float));
    b->dout = malloc((size_t)R * 2 * l * sizeof(float));
    if (!b->xin || !b->xt || !b->tok_in || !b->tok_t || !b->enc_out || !b->mulv || !b->zh ||
        !b->zrows || !b->eps1 || !b->dzr || !b->dout) {
        vae_bufs_free(b);
        return d2_fail(err, D2_ENOMEM, "stage 1: out of memory");
    }
    return 0;
}

/* B random zoo entries: xt the normalised weights, xin with input noise. */
static void vae_draw_batch(trainer *t, rng *r, int B, vae_bufs *b)
{
    const int P = t->P;
    for (int i = 0; i < B; i++) {
        int e = (int)rng_below(r, (uint32_t)t->n);
        const float *src = t->wn + (size_t)e * P;
        for (int j = 0; j < P; j++) {
            b->xt[(size_t)i * P + j] = src[j];
            b->xin[(size_t)i * P + j] = src[j] + t->cfg->in_noise * rng_normal(r);
        }
    }
}

static float clamp_logvar(float lv)
{
    return lv < -20.0f ? -20.0f : (lv > 10.0f ? 10.0f : lv);
}

/* Reparameterise on the host (the batch is small; the stream of r stays that of
 * the host): z = mu + sigma eps + latent noise, logvar clamped to [-20, 10].
 * The draws are made for all R rows of the batch, in order, and used for this
 * process's rows r0 .. r0 + Rl - 1 (enc_out holds those), so the stream does
 * not depend on the number of processes. */
static void vae_reparameterise(trainer *t, rng *r, int R, int r0, int Rl, int l, vae_bufs *b)
{
    for (int a = 0; a < R; a++)
        for (int j = 0; j < l; j++) {
            float e1 = rng_normal(r), e2 = rng_normal(r);
            int i = a - r0;
            if (i < 0 || i >= Rl)
                continue;
            float mu = b->enc_out[(size_t)i * 2 * l + j];
            float lv = clamp_logvar(b->enc_out[(size_t)i * 2 * l + l + j]);
            b->eps1[(size_t)i * l + j] = e1;
            b->zh[(size_t)i * l + j] = mu + expf(0.5f * lv) * e1 + t->cfg->lat_noise * e2;
            b->mulv[(size_t)i * l + j] = mu;
            b->mulv[(size_t)Rl * l + (size_t)i * l + j] = lv;
        }
}

/* The reparameterisation's gradient at the encoder output from the decoder's
 * input gradient: dmu = dz, dlogvar = dz eps sigma / 2 (0 where logvar was clamped). */
static void vae_reparam_grad(int R, int l, int zin, vae_bufs *b)
{
    for (int i = 0; i < R; i++)
        for (int j = 0; j < l; j++) {
            float lv = b->enc_out[(size_t)i * 2 * l + l + j];
            float g_z = b->dzr[(size_t)i * zin + j];
            b->dout[(size_t)i * 2 * l + j] = g_z;
            b->dout[(size_t)i * 2 * l + l + j] =
                lv < -20.0f || lv > 10.0f
                    ? 0.0f
                    : g_z * b->eps1[(size_t)i * l + j] * 0.5f * expf(0.5f * lv);
        }
}

/* The KL term on the device: kl_gauss over mu and the clamped logvar (mulv,
 * [2, R, l]), its gradient scaled by beta added to the encoder's output
 * gradient dout_dev ([R, 2 l]). Returns KL / batch in *kl. */
static void vae_add_kl(trainer *t, const float *mulv, float *dout_dev, float *dkl, float *dtmp,
                       int R, int l, int B, float *kl)
{
    backend_t *be = t->be;
    const size_t n = (size_t)R * l;
    be->ops->fill(be, dkl, 0.0f, 2 * n);
    be->ops->kl_gauss(be, t->dev_scalar, dkl, dkl + n, mulv, mulv + n, n, B, t->cfg->vae_beta);
    *kl = gtrain_read_scalar(t);
    // [2, R, l] -> [R, 2, l], the encoder output's layout
    be->ops->permute_0213(be, dtmp, dkl, 1, 2, R, l);
    be->ops->axpby(be, dout_dev, 1.0f, dtmp, 1.0f, 2 * n);
}

/* One step: forward, losses, backward, AdamW. *loss = mse + beta KL. Its device
 * buffers come from t->ar; the caller resets the arena. */
static int vae_step(trainer *t, rng *r, vae_bufs *b, float *loss, float *mse, d2_error *err)
{
    generator *g = &t->g;
    backend_t *be = t->be;
    const wtok *tk = &g->tok;
    const int B = t->cfg->vae_batch, l = g->cfg.tok_latent;
    const int tin = tk->len + tk->n_layers, zin = l + tk->n_layers;
    int b0, bn; /* this process's share of the batch: its R rows */
    gtrain_slice(t, B, &b0, &bn);
    const int R = bn * tk->n_tok;
    vae_draw_batch(t, r, B, b);
    wtok_split(tk, b->xin + (size_t)b0 * t->P, bn, b->tok_in);
    wtok_targets(tk, b->xt + (size_t)b0 * t->P, bn, b->tok_t);
    float *din = arena_floats_uninit(&t->ar, (size_t)R * tin);
    float *dtg = arena_floats_uninit(&t->ar, (size_t)R * tk->len);
    float *dz_dev = arena_floats(&t->ar, (size_t)R * zin);
    float *zdev = arena_floats_uninit(&t->ar, (size_t)R * zin);
    float *dxhat = arena_floats_uninit(&t->ar, (size_t)R * tk->len);
    float *dout_dev = arena_floats_uninit(&t->ar, (size_t)R * 2 * l);
    float *mulv = arena_floats_uninit(&t->ar, (size_t)R * 2 * l);
    float *dkl = arena_floats_uninit(&t->ar, (size_t)R * 2 * l);
    float *dtmp = arena_floats_uninit(&t->ar, (size_t)R * 2 * l);
    if (!din || !dtg || !dz_dev || !zdev || !dxhat || !dout_dev || !mulv || !dkl || !dtmp)
        return d2_fail(err, D2_ENOMEM, "stage 1: scratch arena is full");
    resmlp_cache ce, cd;
    int rc;
    if ((rc = gtrain_upload(t, din, b->tok_in, (size_t)R * tin, err)) ||
        (rc = gtrain_upload(t, dtg, b->tok_t, (size_t)R * tk->len, err)) ||
        (rc = resmlp_forward(be, &g->vae_enc, &g->vae_ps, &t->ar, &ce, din, R, err)) ||
        (rc = gtrain_download(t, b->enc_out, ce.y, (size_t)R * 2 * l, err)))
        return rc;
    vae_reparameterise(t, r, B * tk->n_tok, b0 * tk->n_tok, R, l, b);
    wtok_latent_rows(tk, b->zh, bn, l, b->zrows);
    if ((rc = gtrain_upload(t, zdev, b->zrows, (size_t)R * zin, err)) ||
        (rc = gtrain_upload(t, mulv, b->mulv, (size_t)R * 2 * l, err)) ||
        (rc = resmlp_forward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, zdev, R, err)))
        return rc;
    be->ops->mse(be, t->dev_scalar, dxhat, cd.y, dtg, (size_t)R * tk->len, 1.0f);
    *mse = gtrain_read_scalar(t);
    paramset_zero_grad(&g->vae_ps);
    if ((rc = resmlp_backward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, dz_dev, dxhat, err)) ||
        (rc = gtrain_download(t, b->dzr, dz_dev, (size_t)R * zin, err)))
        return rc;
    vae_reparam_grad(R, l, zin, b);
    float kl;
    if ((rc = gtrain_upload(t, dout_dev, b->dout, (size_t)R * 2 * l, err)))
        return rc;
    vae_add_kl(t, mulv, dout_dev, dkl, dtmp, R, l, bn, &kl);
    adamw_cfg oc = adamw_defaults();
    oc.lr = t->cfg->vae_lr;
    oc.weight_decay = 0.0f;
    oc.warmup_steps = t->cfg->vae_steps / 20;
    oc.total_steps = t->cfg->vae_steps;
    oc.min_lr_ratio = 0.02f;
    float stats[2] = {*mse, kl};
    if ((rc = resmlp_backward(be, &g->vae_enc, &g->vae_ps, &t->ar, &ce, NULL, dout_dev, err)) ||
        (rc = gtrain_reduce_grads(t, &g->vae_ps, bn, B, stats, 2, err)) ||
        (rc = optim_adamw_step(&g->vae_ps, &oc, t->step, NULL, err)))
        return rc;
    *mse = stats[0];
    *loss = stats[0] + t->cfg->vae_beta * stats[1];
    return 0;
}

int gtrain_stage_vae(trainer *t, gen_train_report *rep, d2_error *err)
{
    const gen_train_cfg *cfg = t->cfg;
    const wtok *tk = &t->g.tok;
    const int B = cfg->vae_batch, l = t->g.cfg.tok_latent, R = B * tk->n_tok;
    vae_bufs b;
    int rc = vae_bufs_alloc(&b, B, t->P, R, tk->len + tk->n_layers, tk->len, l,
                            l + tk->n_layers, err);
    if (rc)
        return rc;
    progress pb;
    progress_begin(&pb, "stage 1 vae", "steps", cfg->vae_steps, cfg->progress);
    for (; t->step < cfg->vae_steps; t->step++) {
        if (gtrain_should_stop(t)) {
            rep->stopped = 1;
            break;
        }
        rng r;
        rng_init(&r, rng_derive(cfg->seed, "vae-step", (uint64_t)t->step), 0);
        float loss = NAN, mse = NAN;
        size_t mark = arena_mark(&t->ar);
        rc = vae_step(t, &r, &b, &loss, &mse, err);
        arena_reset(&t->ar, mark);
        if (rc)
            goto out;
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
        if ((rc = gtrain_maybe_checkpoint(t, err)))
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
    vae_bufs_free(&b);
    return rc;
}

/* Encode every zoo entry to its mean latent, standardise, and measure the
 * reconstruction error of the zoo means in normalised weight space. */
int gtrain_compute_latents(trainer *t, gen_train_report *rep, d2_error *err)
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
        if ((rc = gtrain_upload(t, x, tokens, (size_t)R * tin, err)) ||
            (rc = resmlp_forward(be, &g->vae_enc, &g->vae_ps, &t->ar, &ce, x, R, err)) ||
            (rc = gtrain_download(t, out, ce.y, (size_t)R * 2 * l, err)))
            goto done;
        for (int i = 0; i < R; i++) // row i = (entry s + i / n_tok, token i % n_tok)
            memcpy(zraw + (size_t)s * L + (size_t)i * l, out + (size_t)i * 2 * l,
                   (size_t)l * sizeof(float));
        wtok_latent_rows(tk, zraw + (size_t)s * L, B, l, zrows);
        if ((rc = gtrain_upload(t, zd, zrows, (size_t)R * zin, err)) ||
            (rc = resmlp_forward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, zd, R, err)) ||
            (rc = gtrain_download(t, dec, cd.y, (size_t)R * tk->len, err)))
            goto done;
        wtok_merge(tk, dec, B, rec);
        for (size_t i = 0; i < (size_t)B * P; i++) {
            double e = (double)rec[i] - t->wn[(size_t)s * P + i];
            se += e * e;
        }
        arena_reset(&t->ar, mark);
    }
    t->vae_recon_mse = (float)(se / ((double)t->n * P));
    rep->vae_recon_mse = t->vae_recon_mse;
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

