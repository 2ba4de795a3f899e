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

int gtrain_stage_vae(trainer *t, gen_train_report *rep, d2_error *err)
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
        if (gtrain_should_stop(t)) {
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
        if ((rc = gtrain_upload(t, din, tok_in, (size_t)R * tin, err)) ||
            (rc = gtrain_upload(t, dtg, tok_t, (size_t)R * tk->len, err)) ||
            (rc = resmlp_forward(be, &g->vae_enc, &g->vae_ps, &t->ar, &ce, din, R, err)) ||
            (rc = gtrain_download(t, enc_out, ce.y, (size_t)R * 2 * l, err)))
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
        if ((rc = gtrain_upload(t, zdev, zrows, (size_t)R * zin, err)) ||
            (rc = resmlp_forward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, zdev, R, err)))
            goto out;
        op->mse(be, t->dev_scalar, dxhat, cd.y, dtg, (size_t)R * tk->len, 1.0f);
        float mse = gtrain_read_scalar(t);
        paramset_zero_grad(&g->vae_ps);
        if ((rc = resmlp_backward(be, &g->vae_dec, &g->vae_ps, &t->ar, &cd, dz_dev, dxhat, err)) ||
            (rc = gtrain_download(t, dzr, dz_dev, (size_t)R * zin, err)))
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
        if ((rc = gtrain_upload(t, dout_dev, dout, (size_t)R * 2 * l, err)) ||
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

