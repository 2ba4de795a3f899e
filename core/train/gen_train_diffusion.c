/* gen_train_diffusion.c - the optional contrastive alignment of dataset
 * embeddings with weight latents, and stage 2: dataset encoder + denoiser. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_train_internal.h"
#include "optim.h"
#include "progress.h"

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

int gtrain_stage_align(trainer *t, gen_train_report *rep, d2_error *err)
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
    int *ways = malloc((size_t)B * sizeof(int));
    int rc = 0;
    if (!X || !zb || !u || !v || !du || !dv || !ways) {
        rc = d2_fail(err, D2_ENOMEM, "alignment: out of memory");
        goto out;
    }
    progress pb;
    progress_begin(&pb, "align", "steps", cfg->align_steps, cfg->progress);
    for (; t->step < cfg->align_steps; t->step++) {
        if (gtrain_should_stop(t)) {
            rep->stopped = 1;
            break;
        }
        rng r;
        rng_init(&r, rng_derive(cfg->seed, "align-step", (uint64_t)t->step), 0);
        const int K = cfg->kmin + (int)rng_below(&r, (uint32_t)(cfg->kmax - cfg->kmin + 1));
        for (int b = 0; b < B; b++) {
            int e = (int)rng_below(&r, (uint32_t)t->n);
            memcpy(zb + (size_t)b * L, t->Z + (size_t)e * L, (size_t)L * sizeof(float));
            ways[b] = gtrain_entry_way(t, e);
            if ((rc = gtrain_fill_support(t, e, K, &r, X + (size_t)b * N * K * F, err)))
                goto out;
        }
        size_t mark = arena_mark(&t->ar);
        float *Xd = arena_floats_uninit(&t->ar, (size_t)B * N * K * F);
        float *zd = arena_floats(&t->ar, (size_t)B * L);
        float *vd = arena_floats(&t->ar, (size_t)B * C);
        float *dud = arena_floats(&t->ar, (size_t)B * C);
        float *dvd = arena_floats(&t->ar, (size_t)B * C);
        if (!Xd || !zd || !vd || !dud || !dvd) {
            rc = d2_fail(err, D2_ENOMEM, "alignment: scratch arena is full");
            goto out;
        }
        setenc_cache sc;
        if ((rc = gtrain_upload(t, Xd, X, (size_t)B * N * K * F, err)) ||
            (rc = gtrain_upload(t, zd, zb, (size_t)B * L, err)) ||
            (rc = setenc_forward(be, &g->enc, &g->net_ps, &t->ar, &sc, Xd, B, N, K, ways, err)))
            goto out;
        linear_forward(be, &t->align_proj, &t->align_ps, vd, zd, B);
        if ((rc = gtrain_download(t, u, sc.cond, (size_t)B * C, err)) ||
            (rc = gtrain_download(t, v, vd, (size_t)B * C, err)))
            goto out;
        float loss = info_nce(u, v, B, C, cfg->align_temp, du, dv);
        if (!isfinite(loss)) {
            rc = d2_fail(err, D2_ERANGE, "alignment diverged at step %d", t->step);
            goto out;
        }
        paramset_zero_grad(&g->net_ps);
        paramset_zero_grad(&t->align_ps);
        if ((rc = gtrain_upload(t, dud, du, (size_t)B * C, err)) ||
            (rc = gtrain_upload(t, dvd, dv, (size_t)B * C, err)))
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
        if ((rc = gtrain_maybe_checkpoint(t, err)))
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
    free(ways);
    return rc;
}

/* ---------------------------------------------------------------- stage 2 */

/* Host buffers of one stage-2 step: B tasks, M noised latents each (R = B M rows). */
typedef struct diff_bufs {
    float *X;            /* [B, N, K, F] support sets */
    float *zt, *eps;     /* [R, L] noised latents and their noise */
    float *temb;         /* [R, temb_dim] timestep features */
    int *ts;             /* [R] timesteps */
    int *ent;            /* [B] zoo entries */
    int *ways;           /* [B] their classes (gtrain_entry_way) */
    unsigned char *drop; /* [B] condition dropped (classifier-free guidance) */
    /* this process's tasks b0 .. b0 + bn - 1 of the batch (gtrain_slice), and
     * with several processes their rows of zt, eps, temb gathered (m bn + b) */
    int b0, bn;
    float *zl, *el, *tl;
    float *tx; /* per class: each row's timestep features once per class [R N, temb_dim] */
    gtrain_queries q; /* query samples of each task (cfg->query_loss > 0) */
} diff_bufs;

static void diff_bufs_free(diff_bufs *d)
{
    free(d->X);
    free(d->zt);
    free(d->eps);
    free(d->temb);
    free(d->ts);
    free(d->ent);
    free(d->ways);
    free(d->drop);
    free(d->zl);
    free(d->el);
    free(d->tl);
    free(d->tx);
    gtrain_queries_free(&d->q);
    memset(d, 0, sizeof *d);
}

static int diff_bufs_alloc(diff_bufs *d, const trainer *t, d2_error *err)
{
    const gen_train_cfg *cfg = t->cfg;
    const int B = cfg->tasks_per_step, R = B * cfg->noise_per_task;
    memset(d, 0, sizeof *d);
    d->X = malloc((size_t)B * t->N * cfg->kmax * t->F * sizeof(float));
    d->zt = malloc((size_t)R * t->L * sizeof(float));
    d->eps = malloc((size_t)R * t->L * sizeof(float));
    d->temb = malloc((size_t)R * t->g.cfg.temb_dim * sizeof(float));
    d->ts = malloc((size_t)R * sizeof(int));
    d->ent = malloc((size_t)B * sizeof(int));
    d->ways = malloc((size_t)B * sizeof(int));
    d->drop = malloc((size_t)B);
    if (t->g.cfg.per_class)
        d->tx = malloc((size_t)R * t->N * t->g.cfg.temb_dim * sizeof(float));
    gtrain_slice(t, B, &d->b0, &d->bn);
    if (d->bn < B) {
        d->zl = malloc((size_t)R * t->L * sizeof(float));
        d->el = malloc((size_t)R * t->L * sizeof(float));
        d->tl = malloc((size_t)R * t->g.cfg.temb_dim * sizeof(float));
    }
    if (!d->X || !d->zt || !d->eps || !d->temb || !d->ts || !d->ent || !d->ways || !d->drop ||
        (d->bn < B && (!d->zl || !d->el || !d->tl)) || (t->g.cfg.per_class && !d->tx)) {
        diff_bufs_free(d);
        return d2_fail(err, D2_ENOMEM, "stage 2: out of memory");
    }
    int rc = cfg->query_loss > 0.0f ? gtrain_queries_alloc(&d->q, t, B, err) : 0;
    if (rc)
        diff_bufs_free(d);
    return rc;
}

/* The step's batch from r: B zoo entries with K-shot support sets and the
 * condition drop-out, then M timesteps and noised latents per entry. */
static int diff_draw_batch(trainer *t, rng *r, int K, diff_bufs *d, d2_error *err)
{
    const gen_train_cfg *cfg = t->cfg;
    const int B = cfg->tasks_per_step, M = cfg->noise_per_task, N = t->N, F = t->F, L = t->L;
    int rc;
    for (int b = 0; b < B; b++) {
        d->ent[b] = (int)rng_below(r, (uint32_t)t->n);
        d->drop[b] = rng_uniform(r) < cfg->p_uncond;
        d->ways[b] = gtrain_entry_way(t, d->ent[b]);
        float *X = d->X + (size_t)b * N * K * F;
        rc = d->q.x ? gtrain_fill_task(t, d->ent[b], K, r, X, &d->q, b, err)
                    : gtrain_fill_support(t, d->ent[b], K, r, X, err);
        if (rc)
            return rc;
    }
    for (int m = 0; m < M; m++)
        for (int b = 0; b < B; b++) {
            const int row = m * B + b;
            const int tt = (int)rng_below(r, (uint32_t)t->g.cfg.T);
            d->ts[row] = tt;
            const double ab = t->g.sched.alpha_bar[tt];
            const float sa = (float)sqrt(ab), sb = (float)sqrt(1.0 - ab);
            const float *z0 = t->Z + (size_t)d->ent[b] * L;
            for (int j = 0; j < L; j++) {
                float e = rng_normal(r);
                d->eps[(size_t)row * L + j] = e;
                d->zt[(size_t)row * L + j] = sa * z0[j] + sb * e;
            }
        }
    denoiser_timestep_features(t->g.cfg.temb_dim, d->ts, B * M, d->temb);
    if (d->zl) /* several processes: this one's rows, m bn + b */
        for (int m = 0; m < M; m++)
            for (int b = 0; b < d->bn; b++) {
                size_t from = (size_t)m * B + d->b0 + b, to = (size_t)m * d->bn + b;
                const size_t TD = (size_t)t->g.cfg.temb_dim;
                memcpy(d->zl + to * L, d->zt + from * L, sizeof(float) * (size_t)L);
                memcpy(d->el + to * L, d->eps + from * L, sizeof(float) * (size_t)L);
                memcpy(d->tl + to * TD, d->temb + from * TD, sizeof(float) * TD);
            }
    return 0;
}

/* Rows of the denoiser per noised latent: 1, or per class one per head row. */
static int den_rows(const trainer *t)
{
    return t->g.cfg.per_class ? t->N : 1;
}

/* Dropped conditions -> the learned null condition, forward and backward (per
 * class, every class's): the null condition's gradient collects the dropped
 * rows' (whose own is zeroed). */
static void diff_drop_cond(trainer *t, const diff_bufs *d, float *cond, float *dcond, int back)
{
    backend_t *be = t->be;
    generator *g = &t->g;
    const int C = t->C, Q = den_rows(t);
    for (int b = 0; b < d->bn; b++) { /* this process's tasks */
        if (!d->drop[d->b0 + b])
            continue;
        for (int i = 0; i < Q; i++) {
            const size_t at = ((size_t)b * Q + i) * C;
            if (!back) {
                be->ops->copy(be, cond + at, g->net_ps.w + g->den.null_cond,
                              (size_t)C * sizeof(float));
                continue;
            }
            be->ops->axpby(be, g->net_ps.g + g->den.null_cond, 1.0f, dcond + at, 1.0f,
                           (size_t)C);
            be->ops->fill(be, dcond + at, 0.0f, (size_t)C);
        }
    }
}

/* The timestep features on the device, one row per denoiser row: per class
 * each latent's row repeated for its N head rows. */
static int diff_upload_temb(trainer *t, const diff_bufs *d, const float *temb, int R,
                            float *tembd, d2_error *err)
{
    const int Q = den_rows(t), TD = t->g.cfg.temb_dim;
    if (Q == 1)
        return gtrain_upload(t, tembd, temb, (size_t)R * TD, err);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < Q; i++)
            memcpy(d->tx + ((size_t)r * Q + i) * TD, temb + (size_t)r * TD,
                   (size_t)TD * sizeof(float));
    return gtrain_upload(t, tembd, d->tx, (size_t)R * Q * TD, err);
}

/* One step on the device, on this process's tasks: encoder, denoiser, eps
 * MSE, backward, gradient all-reduce, AdamW, EMA. Device buffers come from
 * t->ar; the caller resets it. *loss is the whole batch's. */
static int diff_step(trainer *t, const diff_bufs *d, int K, const adamw_cfg *oc, float *loss,
                     float *qloss, d2_error *err)
{
    generator *g = &t->g;
    backend_t *be = t->be;
    const int M = t->cfg->noise_per_task, B = d->bn, R = B * M; /* this process's share */
    const int N = t->N, F = t->F, L = t->L, TD = g->cfg.temb_dim, Q = den_rows(t);
    const int C = Q * t->C; /* condition floats per noised latent */
    const float *zt = d->zl ? d->zl : d->zt, *eps = d->el ? d->el : d->eps;
    const float *temb = d->tl ? d->tl : d->temb;
    float *Xd = arena_floats_uninit(&t->ar, (size_t)B * N * K * F);
    float *ztd = arena_floats_uninit(&t->ar, (size_t)R * L);
    float *epsd = arena_floats_uninit(&t->ar, (size_t)R * L);
    float *tembd = arena_floats_uninit(&t->ar, (size_t)R * Q * TD);
    float *condr = arena_floats_uninit(&t->ar, (size_t)R * C);
    float *dcondr = arena_floats(&t->ar, (size_t)R * C);
    float *dcond = arena_floats(&t->ar, (size_t)B * C);
    float *deps = arena_floats_uninit(&t->ar, (size_t)R * L);
    if (!Xd || !ztd || !epsd || !tembd || !condr || !dcondr || !dcond || !deps)
        return d2_fail(err, D2_ENOMEM, "stage 2: scratch arena is full");
    setenc_cache sc;
    denoiser_cache dc;
    int rc;
    if ((rc = gtrain_upload(t, Xd, d->X + (size_t)d->b0 * N * K * F, (size_t)B * N * K * F,
                            err)) ||
        (rc = gtrain_upload(t, ztd, zt, (size_t)R * L, err)) ||
        (rc = gtrain_upload(t, epsd, eps, (size_t)R * L, err)) ||
        (rc = diff_upload_temb(t, d, temb, R, tembd, err)) ||
        (rc = setenc_forward(be, &g->enc, &g->net_ps, &t->ar, &sc, Xd, B, N, K,
                             d->ways + d->b0, err)))
        return rc;
    diff_drop_cond(t, d, sc.cond, NULL, 0);
    be->ops->repeat_rows(be, condr, sc.cond, M, B, C);
    // per class the [R, L] latents are [R N, l] rows, row (r, i) conditioned on class i
    if ((rc = denoiser_forward(be, &g->den, &g->net_ps, &t->ar, &dc, ztd, tembd, condr, R * Q,
                               1, err)))
        return rc;
    be->ops->mse(be, t->dev_scalar, deps, dc.eps, epsd, (size_t)R * L, 1.0f);
    *loss = gtrain_read_scalar(t);
    if (d->q.x) {
        const gtrain_qrows rows = {.b0 = d->b0, .bn = B, .B = t->cfg->tasks_per_step, .M = M,
                                   .ts = d->ts, .drop = d->drop, .ways = d->ways, .zt = zt};
        if ((rc = gtrain_query_grad(t, &d->q, &rows, dc.eps, deps, qloss, err)))
            return rc;
    }
    paramset_zero_grad(&g->net_ps);
    if ((rc = denoiser_backward(be, &g->den, &g->net_ps, &t->ar, &dc, deps, dcondr, err)))
        return rc;
    be->ops->repeat_rows_backward(be, dcond, dcondr, M, B, C);
    diff_drop_cond(t, d, NULL, dcond, 1);
    if ((rc = setenc_backward(be, &g->enc, &g->net_ps, &t->ar, &sc, dcond, err)) ||
        (rc = gtrain_reduce_grads(t, &g->net_ps, B, t->cfg->tasks_per_step, loss, 1, err)) ||
        (rc = optim_adamw_step(&g->net_ps, oc, t->step, NULL, err)))
        return rc;
    optim_ema_update(&g->net_ps, t->step < 100 ? 0.9f : t->cfg->ema_decay);
    return 0;
}

int gtrain_stage_diffusion(trainer *t, gen_train_report *rep, d2_error *err)
{
    const gen_train_cfg *cfg = t->cfg;
    adamw_cfg oc = adamw_defaults();
    oc.lr = cfg->lr;
    oc.weight_decay = 0.01f;
    oc.warmup_steps = cfg->steps / 25;
    oc.total_steps = cfg->steps;
    oc.min_lr_ratio = 0.05f;
    diff_bufs d;
    int rc = diff_bufs_alloc(&d, t, err);
    if (rc)
        return rc;
    progress pb;
    float qema = -1.0f;
    progress_begin(&pb, "stage 2 diffusion", "steps", cfg->steps, cfg->progress);
    for (; t->step < cfg->steps; t->step++) {
        if (gtrain_should_stop(t)) {
            rep->stopped = 1;
            break;
        }
        rng r;
        rng_init(&r, rng_derive(cfg->seed, "diffusion-step", (uint64_t)t->step), 0);
        const int K = cfg->kmin + (int)rng_below(&r, (uint32_t)(cfg->kmax - cfg->kmin + 1));
        float loss = NAN, qloss = 0.0f;
        if ((rc = diff_draw_batch(t, &r, K, &d, err)))
            goto out;
        size_t mark = arena_mark(&t->ar);
        rc = diff_step(t, &d, K, &oc, &loss, &qloss, err);
        arena_reset(&t->ar, mark);
        if (rc)
            goto out;
        if (!isfinite(loss)) {
            rc = d2_fail(err, D2_ERANGE, "stage 2 diverged at step %d", t->step);
            goto out;
        }
        t->diff_loss_ema = t->step == 0 ? loss : 0.99f * t->diff_loss_ema + 0.01f * loss;
        qema = qema < 0 ? qloss : 0.99f * qema + 0.01f * qloss;
        char status[64];
        if (d.q.x) /* the query cross-entropy since this run started */
            snprintf(status, sizeof status, "loss %.4f query ce %.3f", (double)t->diff_loss_ema,
                     (double)qema);
        else
            snprintf(status, sizeof status, "loss %.4f", (double)t->diff_loss_ema);
        progress_update(&pb, t->step + 1, status);
        if ((rc = gtrain_maybe_checkpoint(t, err)))
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
    diff_bufs_free(&d);
    return rc;
}

