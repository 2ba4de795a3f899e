/* denoiser.c - adaLN-Zero residual MLP denoiser (see denoiser.h). */
#include "denoiser.h"

#include <math.h>
#include <stdio.h>

static int oom(d2_error *err, const arena *ar, const char *what)
{
    return d2_fail(err, D2_ENOMEM, "denoiser %s: scratch arena of %zu bytes is full", what,
                   ar->cap);
}

int denoiser_init(denoiser *d, paramset *ps, const char *name, const denoiser_cfg *cfg,
                  d2_error *err)
{
    if (cfg->blocks < 1 || cfg->blocks > DENOISER_MAX_BLOCKS || cfg->latent <= 0 ||
        cfg->hidden <= 0 || cfg->mlp_ratio <= 0 || cfg->cond_dim <= 0 || cfg->temb_dim <= 0 ||
        cfg->temb_dim % 2)
        return d2_fail(err, D2_EINVAL, "denoiser: bad configuration");
    d->cfg = *cfg;
    const int H = cfg->hidden, L = cfg->latent;
    char n[PARAM_NAME_LEN];
    int rc;
#define LIN(field, suffix, in, out, scale)                                                  \
    do {                                                                                    \
        snprintf(n, sizeof n, "%s.%s", name, suffix);                                       \
        if ((rc = linear_init(&d->field, ps, n, in, out, 1, scale, err)))                   \
            return rc;                                                                      \
    } while (0)
    LIN(t1, "t1", cfg->temb_dim, H, 1.0f);
    LIN(t2, "t2", H, H, 1.0f);
    LIN(cproj, "cproj", cfg->cond_dim, H, 1.0f);
    LIN(fin, "fin", L, H, 1.0f);
    for (int i = 0; i < cfg->blocks; i++) {
        char s[64];
        snprintf(s, sizeof s, "blocks.%d.mod", i);
        LIN(mod[i], s, H, 3 * H, 0.0f);
        snprintf(s, sizeof s, "blocks.%d.fc1", i);
        LIN(fc1[i], s, H, cfg->mlp_ratio * H, 1.0f);
        snprintf(s, sizeof s, "blocks.%d.fc2", i);
        LIN(fc2[i], s, cfg->mlp_ratio * H, H, 1.0f);
    }
    LIN(fmod, "fmod", H, 2 * H, 0.0f);
    LIN(fout, "fout", H, L, 0.0f);
#undef LIN
    snprintf(n, sizeof n, "%s.null_cond", name);
    int64_t shape[1] = {cfg->cond_dim};
    return paramset_add(ps, n, 1, shape, INIT_NORMAL, 0.02f, &d->null_cond, err);
}

void denoiser_timestep_features(int temb_dim, const int *t, int S, float *out)
{
    const int half = temb_dim / 2;
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < half; i++) {
            double freq = exp(-log(10000.0) * (double)i / (double)half);
            double a = (double)t[s] * freq;
            out[(size_t)s * temb_dim + i] = (float)cos(a);
            out[(size_t)s * temb_dim + half + i] = (float)sin(a);
        }
    }
}

/* y[r] = x[r] * (1 + scale[r/G]) + shift[r/G] for R = S*G rows of H columns;
 * shift/scale rows have stride ld. */
static void modulate_grouped(backend_t *be, float *y, const float *x, const float *shift,
                             const float *scale, int ld, int S, int G, int H)
{
    if (G == 1) {
        be->ops->modulate_forward(be, y, x, shift, scale, ld, S, 1, H);
        return;
    }
    for (int s = 0; s < S; s++) {
        size_t o = (size_t)s * G * H;
        be->ops->modulate_forward(be, y + o, x + o, shift + (size_t)s * ld,
                                  scale + (size_t)s * ld, 0, G, 1, H);
    }
}

static void gated_add_grouped(backend_t *be, float *y, const float *x, const float *gate,
                              const float *h, int ld, int S, int G, int H)
{
    if (G == 1) {
        be->ops->gated_add_forward(be, y, x, gate, h, ld, S, 1, H);
        return;
    }
    for (int s = 0; s < S; s++) {
        size_t o = (size_t)s * G * H;
        be->ops->gated_add_forward(be, y + o, x + o, gate + (size_t)s * ld, h + o, 0, G, 1, H);
    }
}

int denoiser_forward(backend_t *be, const denoiser *d, const paramset *ps, arena *ar,
                     denoiser_cache *c, const float *z, const float *temb, const float *cond,
                     int S, int G, d2_error *err)
{
    const denoiser_cfg *cfg = &d->cfg;
    const int H = cfg->hidden, rH = cfg->mlp_ratio * cfg->hidden, L = cfg->latent;
    const int R = S * G;
    c->S = S;
    c->G = G;
    c->R = R;
    c->z = z;
    c->temb = temb;
    c->cond = cond;
    const size_t SH = (size_t)S * H, RH = (size_t)R * H;
    c->te1 = arena_floats_uninit(ar, SH);
    c->te1a = arena_floats_uninit(ar, SH);
    c->e = arena_floats_uninit(ar, SH);
    c->s = arena_floats_uninit(ar, SH);
    c->x[0] = arena_floats_uninit(ar, RH);
    if (!c->te1 || !c->te1a || !c->e || !c->s || !c->x[0])
        return oom(err, ar, "forward");
    linear_forward(be, &d->t1, ps, c->te1, temb, S);
    be->ops->act_forward(be, ACT_SILU, c->te1a, c->te1, SH);
    linear_forward(be, &d->t2, ps, c->e, c->te1a, S);
    // e += cproj(cond): write cproj into s as a temporary, then add
    linear_forward(be, &d->cproj, ps, c->s, cond, S);
    be->ops->axpby(be, c->e, 1.0f, c->s, 1.0f, SH);
    be->ops->act_forward(be, ACT_SILU, c->s, c->e, SH);
    linear_forward(be, &d->fin, ps, c->x[0], z, R);
    for (int i = 0; i < cfg->blocks; i++) {
        c->mod[i] = arena_floats_uninit(ar, (size_t)S * 3 * H);
        c->ln[i] = arena_floats_uninit(ar, RH);
        c->mean[i] = arena_floats_uninit(ar, (size_t)R);
        c->rstd[i] = arena_floats_uninit(ar, (size_t)R);
        c->m[i] = arena_floats_uninit(ar, RH);
        c->a1[i] = arena_floats_uninit(ar, (size_t)R * rH);
        c->s1[i] = arena_floats_uninit(ar, (size_t)R * rH);
        c->a2[i] = arena_floats_uninit(ar, RH);
        c->x[i + 1] = arena_floats_uninit(ar, RH);
        if (!c->mod[i] || !c->ln[i] || !c->mean[i] || !c->rstd[i] || !c->m[i] || !c->a1[i] ||
            !c->s1[i] || !c->a2[i] || !c->x[i + 1])
            return oom(err, ar, "forward");
        linear_forward(be, &d->mod[i], ps, c->mod[i], c->s, S);
        be->ops->layernorm_forward(be, c->ln[i], c->mean[i], c->rstd[i], c->x[i], NULL, NULL,
                                   R, H);
        modulate_grouped(be, c->m[i], c->ln[i], c->mod[i], c->mod[i] + H, 3 * H, S, G, H);
        linear_forward(be, &d->fc1[i], ps, c->a1[i], c->m[i], R);
        be->ops->act_forward(be, ACT_SILU, c->s1[i], c->a1[i], (size_t)R * rH);
        linear_forward(be, &d->fc2[i], ps, c->a2[i], c->s1[i], R);
        gated_add_grouped(be, c->x[i + 1], c->x[i], c->mod[i] + 2 * H, c->a2[i], 3 * H, S, G,
                          H);
    }
    c->fm = arena_floats_uninit(ar, (size_t)S * 2 * H);
    c->lnf = arena_floats_uninit(ar, RH);
    c->meanf = arena_floats_uninit(ar, (size_t)R);
    c->rstdf = arena_floats_uninit(ar, (size_t)R);
    c->mf = arena_floats_uninit(ar, RH);
    c->eps = arena_floats_uninit(ar, (size_t)R * L);
    if (!c->fm || !c->lnf || !c->meanf || !c->rstdf || !c->mf || !c->eps)
        return oom(err, ar, "forward");
    linear_forward(be, &d->fmod, ps, c->fm, c->s, S);
    be->ops->layernorm_forward(be, c->lnf, c->meanf, c->rstdf, c->x[cfg->blocks], NULL, NULL, R,
                               H);
    modulate_grouped(be, c->mf, c->lnf, c->fm, c->fm + H, 2 * H, S, G, H);
    linear_forward(be, &d->fout, ps, c->eps, c->mf, R);
    return 0;
}

int denoiser_backward(backend_t *be, const denoiser *d, paramset *ps, arena *ar,
                      const denoiser_cache *c, const float *deps, float *dcond, d2_error *err)
{
    if (c->G != 1)
        return d2_fail(err, D2_EINVAL, "denoiser backward needs one row per condition");
    const denoiser_cfg *cfg = &d->cfg;
    const int H = cfg->hidden, rH = cfg->mlp_ratio * cfg->hidden;
    const int R = c->R, S = c->S;
    const size_t RH = (size_t)R * H, SH = (size_t)S * H;
    size_t mark = arena_mark(ar);
    float *ds = arena_floats(ar, SH);
    float *dfm = arena_floats(ar, (size_t)S * 2 * H);
    float *dmod = arena_floats(ar, (size_t)S * 3 * H);
    float *dm = arena_floats_uninit(ar, RH); /* overwritten by linear_backward_set */
    float *dln = arena_floats(ar, RH);
    float *g = arena_floats(ar, RH);
    float *gin = arena_floats(ar, RH);
    float *da2 = arena_floats(ar, RH);
    float *ds1 = arena_floats_uninit(ar, (size_t)R * rH); /* likewise */
    float *da1 = arena_floats(ar, (size_t)R * rH);
    float *de = arena_floats(ar, SH);
    float *dte1a = arena_floats(ar, SH);
    float *dte1 = arena_floats(ar, SH);
    if (!ds || !dfm || !dmod || !dm || !dln || !g || !gin || !da2 || !ds1 || !da1 || !de ||
        !dte1a || !dte1)
        return oom(err, ar, "backward");
    const struct backend_ops *op = be->ops;

    // final: eps = fout(mf); mf = modulate(lnf, fm); lnf = LN(x_n)
    linear_backward_set(be, &d->fout, ps, dm, deps, c->mf, R);
    op->modulate_backward(be, dln, dfm, dfm + H, dm, c->lnf, c->fm + H, 2 * H, S, 1, H);
    op->layernorm_backward(be, g, NULL, NULL, dln, c->x[cfg->blocks], NULL, c->meanf, c->rstdf,
                           R, H);
    linear_backward(be, &d->fmod, ps, ds, dfm, c->s, S);

    for (int i = cfg->blocks - 1; i >= 0; i--) {
        // x_{i+1} = x_i + gate * a2
        op->fill(be, gin, 0.0f, RH);
        op->fill(be, da2, 0.0f, RH);
        op->fill(be, dmod, 0.0f, (size_t)S * 3 * H);
        op->gated_add_backward(be, gin, dmod + 2 * H, da2, g, c->mod[i] + 2 * H, c->a2[i],
                               3 * H, S, 1, H);
        linear_backward_set(be, &d->fc2[i], ps, ds1, da2, c->s1[i], R);
        op->fill(be, da1, 0.0f, (size_t)R * rH);
        op->act_backward(be, ACT_SILU, da1, ds1, c->a1[i], (size_t)R * rH);
        linear_backward_set(be, &d->fc1[i], ps, dm, da1, c->m[i], R);
        op->fill(be, dln, 0.0f, RH);
        op->modulate_backward(be, dln, dmod, dmod + H, dm, c->ln[i], c->mod[i] + H, 3 * H, S, 1,
                              H);
        op->layernorm_backward(be, gin, NULL, NULL, dln, c->x[i], NULL, c->mean[i], c->rstd[i],
                               R, H);
        linear_backward(be, &d->mod[i], ps, ds, dmod, c->s, S);
        float *t = g;
        g = gin;
        gin = t;
    }
    linear_backward(be, &d->fin, ps, NULL, g, c->z, R);
    // s = silu(e); e = t2(silu(t1(temb))) + cproj(cond)
    op->act_backward(be, ACT_SILU, de, ds, c->e, SH);
    linear_backward(be, &d->cproj, ps, dcond, de, c->cond, S);
    linear_backward(be, &d->t2, ps, dte1a, de, c->te1a, S);
    op->act_backward(be, ACT_SILU, dte1, dte1a, c->te1, SH);
    linear_backward(be, &d->t1, ps, NULL, dte1, c->temb, S);
    arena_reset(ar, mark);
    return 0;
}
