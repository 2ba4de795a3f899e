/* gen_train.c - the training pipeline (see gen_train.h). */
#include "gen_train.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_model.h"
#include "gen_train_internal.h"
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
    c.query_loss = 0.0f;
    c.query_shots = 5;
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

float gtrain_read_scalar(trainer *t)
{
    float v = NAN;
    if (t->be->ops->to_host(t->be, &v, t->dev_scalar, sizeof v))
        return NAN;
    return v;
}

int gtrain_upload(trainer *t, float *dst, const float *src, size_t n, d2_error *err)
{
    if (t->be->ops->to_device(t->be, dst, src, n * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "cannot upload training data");
    return 0;
}

int gtrain_download(trainer *t, float *dst, const float *src, size_t n, d2_error *err)
{
    if (t->be->ops->to_host(t->be, dst, src, n * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "cannot read training data back");
    return 0;
}

int gtrain_entry_way(const trainer *t, int e)
{
    const int w = t->z->e[e].way;
    return w >= 1 && w < t->N ? w : t->N;
}

/* K-shot support of zoo entry `e`, standardised, laid out [N][K][F] into X
 * (host). Classes with fewer than K rows are filled by repeating rows; the
 * slots of classes an any-way zoo's entry lacks are zero. */
int gtrain_fill_support(trainer *t, int e, int K, rng *r, float *X, d2_error *err)
{
    dataset s = {0};
    int rc = zoo_entry_support(t->z, e, K, r, &s, err);
    if (rc)
        return rc;
    const int F = t->F, way = gtrain_entry_way(t, e);
    memset(X + (size_t)way * K * F, 0, (size_t)(t->N - way) * K * F * sizeof(float));
    for (int c = 0; c < way; c++) {
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

static int world_of(const trainer *t)
{
    const gen_train_dist *d = t->cfg->dist;
    return d && d->world > 1 ? d->world : 1;
}

void gtrain_slice(const trainer *t, int B, int *b0, int *bn)
{
    int W = world_of(t), r = W > 1 ? t->cfg->dist->rank : 0;
    *b0 = (int)((long long)r * B / W);
    *bn = (int)((long long)(r + 1) * B / W) - *b0;
}

int gtrain_writes(const trainer *t) { return world_of(t) == 1 || t->cfg->dist->rank == 0; }

int gtrain_reduce_grads(trainer *t, paramset *ps, int bn, int B, float *stats, int nstats,
                        d2_error *err)
{
    if (world_of(t) == 1)
        return 0;
    const gen_train_dist *d = t->cfg->dist;
    const size_t n = ps->total + (size_t)nstats;
    if (n > t->reduce_cap) { /* kept across steps: no fresh pages every step */
        float *nb = realloc(t->reduce_buf, sizeof(float) * n);
        if (!nb)
            return d2_fail(err, D2_ENOMEM, "out of memory for the gradient all-reduce");
        t->reduce_buf = nb;
        t->reduce_cap = n;
    }
    float *h = t->reduce_buf;
    int rc = gtrain_download(t, h, ps->g, ps->total, err);
    if (nstats > 0) /* the step's losses ride along */
        memcpy(h + ps->total, stats, sizeof(float) * (size_t)nstats);
    const float share = (float)bn / (float)B;
    for (size_t i = 0; !rc && i < n; i++)
        h[i] *= share;
    if (!rc && d->allreduce_sum(d->ctx, h, n, err))
        rc = d2_wrap(err, "gradient all-reduce (process %d of %d)", d->rank, d->world);
    if (!rc)
        rc = gtrain_upload(t, ps->g, h, ps->total, err);
    if (!rc && nstats > 0)
        memcpy(stats, h + ps->total, sizeof(float) * (size_t)nstats);
    return rc;
}

int gtrain_should_stop(trainer *t)
{
    if (t->cfg->stop_after_steps > 0 && t->steps_this_run >= t->cfg->stop_after_steps)
        return 1;
    if (t->cfg->stop_after > 0) {
        float stop = d2_now() - t->started >= t->cfg->stop_after ? 1.0f : 0.0f;
        d2_error e;
        const gen_train_dist *d = t->cfg->dist;
        /* with several processes the clocks vote: all stop at the same step */
        if (world_of(t) > 1 && d->allreduce_sum(d->ctx, &stop, 1, &e))
            stop = 1.0f;
        if (stop > 0.0f)
            return 1;
    }
    t->steps_this_run++;
    return 0;
}

/* Zoo index: each entry's condition from a seeded support set (EMA encoder). */
static int compute_zoo_index(trainer *t, d2_error *err)
{
    generator *g = &t->g;
    const int K = t->cfg->zoo_emb_shots, N = t->N, F = t->F, C = g->cfg.cond_dim;
    float *X = malloc((size_t)N * K * F * sizeof(float));
    float *cond = malloc((size_t)gen_cond_len(&g->cfg) * sizeof(float));
    int counts[D2_MAX_WAY];
    int rc = 0;
    if (!X || !cond) {
        rc = d2_fail(err, D2_ENOMEM, "zoo index: out of memory");
        goto out;
    }
    for (int e = 0; e < t->n; e++) {
        for (int c = 0; c < N; c++)
            counts[c] = c < gtrain_entry_way(t, e) ? K : 0;
        rng r;
        rng_init(&r, rng_derive(t->cfg->seed, "zoo-index", (uint64_t)e), 0);
        if ((rc = gtrain_fill_support(t, e, K, &r, X, err)))
            goto out;
        if ((rc = gen_encode_standardized(g, t->be, &t->ar, X, counts, N, cond, err)))
            goto out;
        memcpy(g->zoo_emb + (size_t)e * C, cond, (size_t)C * sizeof(float)); // the embedding
    }
out:
    free(X);
    free(cond);
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
    if (c->query_loss > 0) /* only then: bundles trained without it keep their bytes */
        json_object_set_new(h, "query_loss",
                            json_pack("{s:f,s:i}", "weight", (double)c->query_loss, "shots",
                                      c->query_shots));
    json_object_set_new(o, "training", h);
    json_object_set_new(o, "version", json_string(D2_VERSION));
    char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}

/* The generator's config from the zoo and the training settings. */
static gen_config trainer_gen_config(const zoo *z, const gen_train_cfg *cfg)
{
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
    gc.per_class = cfg->per_class;
    gc.den_hidden = cfg->den_hidden;
    gc.den_blocks = cfg->den_blocks;
    gc.den_ratio = cfg->den_ratio;
    for (int i = 0; i < z->n; i++) // an any-way zoo (or imported heads of fewer classes)
        if (z->e[i].way >= 2 && z->e[i].way < gc.min_way)
            gc.min_way = z->e[i].way;
    return gc;
}

/* Weight statistics over the zoo (w_mean, w_std; a near-constant weight gets a
 * floor), the normalised weights t->wn, and the zoo index's heads and classes. */
static int trainer_weight_stats(trainer *t, d2_error *err)
{
    const zoo *z = t->z;
    generator *g = &t->g;
    const int P = t->P;
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
            g->zoo_classes[(size_t)i * t->N + c] = c < gtrain_entry_way(t, i) ? z->e[i].classes[c]
                                                                              : -1;
    return 0;
}

/* Encoder input statistics (f_mean, f_std) over the source's training features. */
static void trainer_feature_stats(trainer *t)
{
    const dataset *tf = &t->z->train_feat;
    generator *g = &t->g;
    const int F = t->F;
    if (tf->n <= 0 || tf->dim != F)
        return;
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
    if (world_of(t) > 1 && (cfg->dist->rank < 0 || cfg->dist->rank >= cfg->dist->world ||
                            !cfg->dist->allreduce_sum || cfg->vae_batch < cfg->dist->world ||
                            cfg->tasks_per_step < cfg->dist->world))
        return d2_fail(err, D2_EINVAL, "%d processes: each needs a share of every batch (vae "
                       "batch %d, tasks per step %d)", cfg->dist->world, cfg->vae_batch,
                       cfg->tasks_per_step);
    t->n = z->n;
    t->P = z->P;
    t->N = z->way;
    t->F = z->fmap.out_dim;
    gen_config gc = trainer_gen_config(z, cfg);
    int rc;
    if ((rc = gen_model_init(&t->g, &gc, be, cfg->seed, err)))
        return rc;
    t->L = t->g.cfg.latent;
    t->C = gc.cond_dim;
    if (gc.per_class && cfg->align_steps > 0)
        return d2_fail(err, D2_EINVAL, "align_steps: the alignment stage reads one pooled "
                       "condition per task; a per-class encoder has one per class");
    if (!(cfg->query_loss >= 0.0f) || !isfinite(cfg->query_loss))
        return d2_fail(err, D2_EINVAL, "query_loss: %g; a weight >= 0", (double)cfg->query_loss);
    if (cfg->query_loss > 0.0f && (rc = gtrain_query_check(t, err)))
        return rc;
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
    if ((rc = trainer_weight_stats(t, err)))
        return rc;
    trainer_feature_stats(t);
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
    free(t->reduce_buf);
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
            if ((rc = gtrain_checkpoint_load(t, err)))
                goto out;
            if (cfg->progress)
                fprintf(stderr, "resuming from %s (stage %d, step %d)\n", t->ckpt_path,
                        t->stage, t->step);
        } else if (cfg->progress) {
            fprintf(stderr, "no checkpoint at %s: starting from the beginning\n", t->ckpt_path);
        }
    }
    if (t->stage == 1) {
        if ((rc = gtrain_stage_vae(t, rep, err)))
            goto out;
        if (rep->stopped)
            goto stopped;
        if ((rc = gtrain_compute_latents(t, rep, err)))
            goto out;
        t->stage = 2;
        t->step = 0;
        if ((rc = gtrain_checkpoint_save(t, err)))
            goto out;
    } else {
        rep->vae_steps_done = cfg->vae_steps;
        rep->vae_loss = t->vae_loss_ema;
    }
    if (t->stage == 2) {
        if (cfg->align_steps > 0 && (rc = gtrain_stage_align(t, rep, err)))
            goto out;
        if (rep->stopped)
            goto stopped;
        t->stage = 3;
        t->step = 0;
        if ((rc = gtrain_checkpoint_save(t, err)))
            goto out;
    } else {
        rep->align_steps_done = cfg->align_steps;
        rep->align_loss = t->align_loss_ema;
    }
    if ((rc = gtrain_stage_diffusion(t, rep, err)))
        goto out;
    if (rep->stopped)
        goto stopped;
    rep->vae_recon_mse = t->vae_recon_mse; // kept in checkpoints: resumed runs report it too
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
        if (!rc && gtrain_writes(t))
            rc = gen_bundle_save(&t->g, out_path, 0, err);
        t->g.net_ps.ema = t->g.net_ps.w;
        t->g.net_ps.w = w;
        if (rc)
            goto out;
    }
    rep->seconds = d2_now() - t->started;
    if (gtrain_writes(t))
        unlink(t->ckpt_path);
    goto out;
stopped:
    rc = gtrain_checkpoint_save(t, err);
    rep->seconds = d2_now() - t->started;
out:
    rc = backend_explain(be, rc, err); /* a device fault, not its symptom */
    trainer_free(t);
    free(t);
    return rc;
}
