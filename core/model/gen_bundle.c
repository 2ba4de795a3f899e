/* gen_bundle.c - the generator's configuration, parameters and the bundle
 * file: ONE safetensors holding every tensor (VAE, dataset encoder, denoiser
 * EMA weights, feature map, statistics, zoo index) and __metadata__ with the
 * JSON config and provenance (DESIGN section 2). */
#include "gen_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "sha256.h"

gen_config gen_config_defaults(int P, int input_dim, int feat_dim, int way, const char *spec)
{
    gen_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.spec, sizeof c.spec, "%s", spec ? spec : "");
    c.P = P;
    c.input_dim = input_dim;
    c.feat_dim = feat_dim;
    c.way = way;
    c.vae_hidden = 128;
    c.vae_blocks = 2;
    c.tok_latent = 8;
    c.latent = 0; /* tokens * tok_latent, set by gen_model_init */
    c.vae_beta = 1e-6f;
    c.enc_d = 64;
    c.enc_heads = 4;
    c.enc_inducing = 8;
    c.cond_dim = 128;
    c.den_hidden = 256;
    c.den_blocks = 4;
    c.den_ratio = 2;
    c.temb_dim = 64;
    c.T = 1000;
    c.beta_start = 1e-4f;
    c.beta_end = 2e-2f;
    c.candidates = 8;
    c.steps = 50;
    c.guidance = 2.0f;
    c.sampler = GEN_SAMPLER_DDIM;
    return c;
}

char *gen_config_to_json(const gen_config *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "spec", json_string(c->spec));
    json_object_set_new(o, "params", json_integer(c->P));
    json_object_set_new(o, "input_dim", json_integer(c->input_dim));
    json_object_set_new(o, "feature_dim", json_integer(c->feat_dim));
    json_object_set_new(o, "way", json_integer(c->way));
    json_t *v = json_object();
    json_object_set_new(v, "hidden", json_integer(c->vae_hidden));
    json_object_set_new(v, "blocks", json_integer(c->vae_blocks));
    json_object_set_new(v, "token_latent", json_integer(c->tok_latent));
    json_object_set_new(v, "latent", json_integer(c->latent));
    json_object_set_new(v, "beta", json_real(c->vae_beta));
    json_object_set_new(o, "vae", v);
    json_t *e = json_object();
    json_object_set_new(e, "d", json_integer(c->enc_d));
    json_object_set_new(e, "heads", json_integer(c->enc_heads));
    json_object_set_new(e, "inducing", json_integer(c->enc_inducing));
    json_object_set_new(e, "cond_dim", json_integer(c->cond_dim));
    json_object_set_new(o, "encoder", e);
    json_t *d = json_object();
    json_object_set_new(d, "hidden", json_integer(c->den_hidden));
    json_object_set_new(d, "blocks", json_integer(c->den_blocks));
    json_object_set_new(d, "mlp_ratio", json_integer(c->den_ratio));
    json_object_set_new(d, "temb_dim", json_integer(c->temb_dim));
    json_object_set_new(o, "denoiser", d);
    json_t *s = json_object();
    json_object_set_new(s, "T", json_integer(c->T));
    json_object_set_new(s, "beta_start", json_real(c->beta_start));
    json_object_set_new(s, "beta_end", json_real(c->beta_end));
    json_object_set_new(s, "schedule", json_string("linear"));
    json_object_set_new(s, "prediction", json_string("eps"));
    json_object_set_new(o, "diffusion", s);
    json_t *sm = json_object();
    json_object_set_new(sm, "candidates", json_integer(c->candidates));
    json_object_set_new(sm, "steps", json_integer(c->steps));
    json_object_set_new(sm, "guidance", json_real(c->guidance));
    json_object_set_new(sm, "sampler",
                        json_string(c->sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim"));
    json_object_set_new(o, "sampler", sm);
    char *out = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    return out;
}

static int get_int(json_t *o, const char *key, int lo, int hi, int *out, d2_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return d2_fail(err, D2_EFORMAT, "generator config: '%s' missing or not an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return d2_fail(err, D2_EFORMAT, "generator config: '%s' = %lld outside %d..%d", key,
                       (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

static int get_real(json_t *o, const char *key, float *out, d2_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return d2_fail(err, D2_EFORMAT, "generator config: '%s' missing or not a number", key);
    double x = json_number_value(v);
    if (!isfinite(x))
        return d2_fail(err, D2_EFORMAT, "generator config: '%s' is not finite", key);
    *out = (float)x;
    return 0;
}

static json_t *get_obj(json_t *o, const char *key, d2_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_object(v))
        d2_fail(err, D2_EFORMAT, "generator config: '%s' missing or not an object", key);
    return json_is_object(v) ? v : NULL;
}

int gen_config_from_json(gen_config *c, const char *text, d2_error *err)
{
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return d2_fail(err, D2_EFORMAT, "generator config is not a JSON object: %s", je.text);
    }
    memset(c, 0, sizeof *c);
    int rc = D2_EFORMAT;
    json_t *spec = json_object_get(o, "spec");
    json_t *v, *e, *d, *s, *sm;
    if (!json_is_string(spec)) {
        d2_fail(err, D2_EFORMAT, "generator config: 'spec' missing");
        goto out;
    }
    snprintf(c->spec, sizeof c->spec, "%s", json_string_value(spec));
    if ((rc = get_int(o, "params", 1, 1 << 26, &c->P, err)) ||
        (rc = get_int(o, "input_dim", 1, 1 << 24, &c->input_dim, err)) ||
        (rc = get_int(o, "feature_dim", 1, 1 << 24, &c->feat_dim, err)) ||
        (rc = get_int(o, "way", 2, D2_MAX_WAY, &c->way, err)))
        goto out;
    rc = D2_EFORMAT;
    if (!(v = get_obj(o, "vae", err)) || !(e = get_obj(o, "encoder", err)) ||
        !(d = get_obj(o, "denoiser", err)) || !(s = get_obj(o, "diffusion", err)) ||
        !(sm = get_obj(o, "sampler", err)))
        goto out;
    if ((rc = get_int(v, "hidden", 1, 1 << 16, &c->vae_hidden, err)) ||
        (rc = get_int(v, "blocks", 0, RESMLP_MAX_BLOCKS, &c->vae_blocks, err)) ||
        (rc = get_int(v, "token_latent", 1, 1 << 12, &c->tok_latent, err)) ||
        (rc = get_int(v, "latent", 1, 1 << 16, &c->latent, err)) ||
        (rc = get_real(v, "beta", &c->vae_beta, err)) ||
        (rc = get_int(e, "d", 1, 1 << 14, &c->enc_d, err)) ||
        (rc = get_int(e, "heads", 1, 64, &c->enc_heads, err)) ||
        (rc = get_int(e, "inducing", 1, 1024, &c->enc_inducing, err)) ||
        (rc = get_int(e, "cond_dim", 1, 1 << 14, &c->cond_dim, err)) ||
        (rc = get_int(d, "hidden", 1, 1 << 14, &c->den_hidden, err)) ||
        (rc = get_int(d, "blocks", 1, DENOISER_MAX_BLOCKS, &c->den_blocks, err)) ||
        (rc = get_int(d, "mlp_ratio", 1, 16, &c->den_ratio, err)) ||
        (rc = get_int(d, "temb_dim", 2, 4096, &c->temb_dim, err)) ||
        (rc = get_int(s, "T", 2, DIFFUSION_MAX_T, &c->T, err)) ||
        (rc = get_real(s, "beta_start", &c->beta_start, err)) ||
        (rc = get_real(s, "beta_end", &c->beta_end, err)) ||
        (rc = get_int(sm, "candidates", 1, 4096, &c->candidates, err)) ||
        (rc = get_int(sm, "steps", 1, DIFFUSION_MAX_T, &c->steps, err)) ||
        (rc = get_real(sm, "guidance", &c->guidance, err)))
        goto out;
    json_t *smp = json_object_get(sm, "sampler");
    if (json_is_string(smp) && !strcmp(json_string_value(smp), "ddpm"))
        c->sampler = GEN_SAMPLER_DDPM;
    else if (json_is_string(smp) && !strcmp(json_string_value(smp), "ddim"))
        c->sampler = GEN_SAMPLER_DDIM;
    else {
        rc = d2_fail(err, D2_EFORMAT, "generator config: sampler.sampler must be ddim or ddpm");
        goto out;
    }
    if (c->enc_d % c->enc_heads) {
        rc = d2_fail(err, D2_EFORMAT, "generator config: encoder.d %% heads != 0");
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int gen_model_init(generator *g, const gen_config *cfg, backend_t *be, uint64_t seed,
                   d2_error *err)
{
    int rc;
    g->cfg = *cfg;
    g->be = be;
    if ((rc = target_spec_parse(&g->spec, cfg->spec, err)))
        return d2_wrap(err, "generator spec");
    if (g->spec.numel != (size_t)cfg->P)
        return d2_fail(err, D2_EFORMAT, "generator: spec '%s' has %zu parameters, config says %d",
                       cfg->spec, g->spec.numel, cfg->P);
    if ((rc = diffusion_schedule_init(&g->sched, cfg->T, cfg->beta_start, cfg->beta_end, err)))
        return rc;
    if ((rc = wtok_init(&g->tok, &g->spec, err)))
        return rc;
    const int latent = g->tok.n_tok * cfg->tok_latent;
    if (cfg->latent && cfg->latent != latent)
        return d2_fail(err, D2_EFORMAT, "generator config: latent %d != %d tokens x %d",
                       cfg->latent, g->tok.n_tok, cfg->tok_latent);
    g->cfg.latent = latent;
    cfg = &g->cfg;
    paramset_init(&g->vae_ps);
    paramset_init(&g->net_ps);
    const int tin = g->tok.len + g->tok.n_layers;
    if ((rc = resmlp_init(&g->vae_enc, &g->vae_ps, "vae.enc", tin, cfg->vae_hidden,
                          2 * cfg->tok_latent, cfg->vae_blocks, 0.1f, err)) ||
        (rc = resmlp_init(&g->vae_dec, &g->vae_ps, "vae.dec", cfg->tok_latent + g->tok.n_layers,
                          cfg->vae_hidden, g->tok.len, cfg->vae_blocks, 0.1f, err)))
        return rc;
    setenc_cfg ec = {.feat_dim = cfg->feat_dim,
                     .d = cfg->enc_d,
                     .heads = cfg->enc_heads,
                     .inducing = cfg->enc_inducing,
                     .way = cfg->way,
                     .cond_dim = cfg->cond_dim};
    denoiser_cfg dc = {.latent = cfg->latent,
                       .hidden = cfg->den_hidden,
                       .mlp_ratio = cfg->den_ratio,
                       .blocks = cfg->den_blocks,
                       .cond_dim = cfg->cond_dim,
                       .temb_dim = cfg->temb_dim};
    if ((rc = setenc_init(&g->enc, &g->net_ps, "enc", &ec, err)) ||
        (rc = denoiser_init(&g->den, &g->net_ps, "den", &dc, err)))
        return rc;
    if ((rc = paramset_alloc(&g->vae_ps, be, rng_derive(seed, "vae-init", 0), err)) ||
        (rc = paramset_alloc(&g->net_ps, be, rng_derive(seed, "net-init", 0), err)))
        return rc;
    const int P = cfg->P, L = cfg->latent, F = cfg->feat_dim;
    g->w_mean = calloc((size_t)P, sizeof(float));
    g->w_std = calloc((size_t)P, sizeof(float));
    g->z_mean = calloc((size_t)L, sizeof(float));
    g->z_std = calloc((size_t)L, sizeof(float));
    g->f_mean = calloc((size_t)F, sizeof(float));
    g->f_std = calloc((size_t)F, sizeof(float));
    if (!g->w_mean || !g->w_std || !g->z_mean || !g->z_std || !g->f_mean || !g->f_std)
        return d2_fail(err, D2_ENOMEM, "generator: out of memory");
    for (int i = 0; i < P; i++)
        g->w_std[i] = 1.0f;
    for (int i = 0; i < L; i++)
        g->z_std[i] = 1.0f;
    for (int i = 0; i < F; i++)
        g->f_std[i] = 1.0f;
    return 0;
}

int gen_model_alloc_index(generator *g, int zoo_n, d2_error *err)
{
    free(g->zoo_theta);
    free(g->zoo_emb);
    free(g->zoo_classes);
    free(g->zoo_sqnorm);
    g->zoo_n = zoo_n;
    g->zoo_sqnorm = calloc((size_t)zoo_n + 1, sizeof(float));
    g->zoo_theta = calloc((size_t)zoo_n * g->cfg.P + 1, sizeof(float));
    g->zoo_emb = calloc((size_t)zoo_n * g->cfg.cond_dim + 1, sizeof(float));
    g->zoo_classes = calloc((size_t)zoo_n * g->cfg.way + 1, sizeof(int32_t));
    if (!g->zoo_theta || !g->zoo_emb || !g->zoo_classes || !g->zoo_sqnorm)
        return d2_fail(err, D2_ENOMEM, "generator: out of memory for the zoo index");
    return 0;
}

void gen_model_free(generator *g)
{
    paramset_free(&g->vae_ps);
    paramset_free(&g->net_ps);
    wtok_free(&g->tok);
    feature_map_free(&g->fmap);
    free(g->w_mean);
    free(g->w_std);
    free(g->z_mean);
    free(g->z_std);
    free(g->f_mean);
    free(g->f_std);
    free(g->zoo_theta);
    free(g->zoo_emb);
    free(g->zoo_classes);
    free(g->zoo_sqnorm);
    free(g->config_json);
    free(g->provenance_json);
    free(g->path);
}

/* Add every tensor of a paramset (weights from `src`, a device buffer of
 * ps->total floats) to the writer. */
static int write_paramset(st_writer *w, const paramset *ps, const float *src, d2_error *err)
{
    float *host = malloc(ps->total * sizeof(float) + 1);
    if (!host)
        return d2_fail(err, D2_ENOMEM, "bundle: out of memory");
    int rc = ps->be->ops->to_host(ps->be, host, src, ps->total * sizeof(float));
    if (rc) {
        free(host);
        return d2_fail(err, rc, "bundle: cannot read parameters from the device");
    }
    for (int i = 0; i < ps->count && !rc; i++) {
        const param_entry *e = &ps->entries[i];
        rc = st_writer_add_f32(w, e->name, e->ndim, e->shape, host + e->offset, err);
    }
    free(host);
    return rc;
}

int gen_bundle_save(const generator *g, const char *path, int use_ema, d2_error *err)
{
    st_writer w;
    st_writer_init(&w);
    int rc;
    const gen_config *c = &g->cfg;
    int64_t sP[1] = {c->P}, sL[1] = {c->latent}, sF[1] = {c->feat_dim};
    char *cfg_json = gen_config_to_json(c);
    if (!cfg_json) {
        st_writer_free(&w);
        return d2_fail(err, D2_ENOMEM, "bundle: out of memory");
    }
    if ((rc = st_writer_meta(&w, "format", "d2nwg-generator-v1", err)) ||
        (rc = st_writer_meta(&w, "config", cfg_json, err)) ||
        (rc = st_writer_meta(&w, "provenance", g->provenance_json ? g->provenance_json : "{}",
                             err)))
        goto out;
    if ((rc = write_paramset(&w, &g->vae_ps, g->vae_ps.w, err)) ||
        (rc = write_paramset(&w, &g->net_ps,
                             use_ema && g->net_ps.ema ? g->net_ps.ema : g->net_ps.w, err)))
        goto out;
    if ((rc = st_writer_add_f32(&w, "stats.w_mean", 1, sP, g->w_mean, err)) ||
        (rc = st_writer_add_f32(&w, "stats.w_std", 1, sP, g->w_std, err)) ||
        (rc = st_writer_add_f32(&w, "stats.z_mean", 1, sL, g->z_mean, err)) ||
        (rc = st_writer_add_f32(&w, "stats.z_std", 1, sL, g->z_std, err)) ||
        (rc = st_writer_add_f32(&w, "stats.f_mean", 1, sF, g->f_mean, err)) ||
        (rc = st_writer_add_f32(&w, "stats.f_std", 1, sF, g->f_std, err)))
        goto out;
    if (g->fmap.W) {
        int64_t sW[2] = {g->fmap.out_dim, g->fmap.in_dim}, sM[1] = {g->fmap.in_dim};
        if ((rc = st_writer_add_f32(&w, "fmap.W", 2, sW, g->fmap.W, err)) ||
            (rc = st_writer_add_f32(&w, "fmap.mean", 1, sM, g->fmap.mean, err)))
            goto out;
    }
    if (g->zoo_n > 0) {
        int64_t sT[2] = {g->zoo_n, c->P}, sE[2] = {g->zoo_n, c->cond_dim},
                sC[2] = {g->zoo_n, c->way};
        if ((rc = st_writer_add_f32(&w, "zoo.theta", 2, sT, g->zoo_theta, err)) ||
            (rc = st_writer_add_f32(&w, "zoo.emb", 2, sE, g->zoo_emb, err)) ||
            (rc = st_writer_add(&w, "zoo.classes", ST_I32, 2, sC, g->zoo_classes,
                                (size_t)g->zoo_n * c->way * sizeof(int32_t), err)))
            goto out;
    }
    rc = st_writer_save(&w, path, err);
out:
    free(cfg_json);
    st_writer_free(&w);
    return rc;
}

/* Copy a named F32 tensor of exactly n floats into dst (host). */
static int read_f32(const st_file *f, const char *name, size_t n, float *dst, d2_error *err)
{
    const st_tensor *t = st_find(f, name);
    if (!t)
        return d2_fail(err, D2_EFORMAT, "generator bundle: tensor '%s' is missing", name);
    if (t->numel != n)
        return d2_fail(err, D2_EFORMAT, "generator bundle: tensor '%s' has %zu values, expected %zu",
                       name, t->numel, n);
    int rc = st_to_f32(t, dst, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return d2_fail(err, D2_EFORMAT, "generator bundle: tensor '%s' has a non-finite value at %zu",
                           name, i);
    return 0;
}

static int load_paramset(paramset *ps, const st_file *f, d2_error *err)
{
    float *host = calloc(ps->total + 1, sizeof(float));
    if (!host)
        return d2_fail(err, D2_ENOMEM, "generator bundle: out of memory");
    int rc = 0;
    for (int i = 0; i < ps->count && !rc; i++) {
        const param_entry *e = &ps->entries[i];
        const st_tensor *t = st_find(f, e->name);
        if (t && t->ndim != e->ndim) {
            rc = d2_fail(err, D2_EFORMAT, "generator bundle: tensor '%s' has %d dims, expected %d",
                         e->name, t->ndim, e->ndim);
            break;
        }
        for (int k = 0; t && k < e->ndim; k++)
            if (t->shape[k] != e->shape[k])
                rc = d2_fail(err, D2_EFORMAT, "generator bundle: tensor '%s' dim %d is %lld, expected %lld",
                             e->name, k, (long long)t->shape[k], (long long)e->shape[k]);
        if (!rc)
            rc = read_f32(f, e->name, e->numel, host + e->offset, err);
    }
    if (!rc && ps->be->ops->to_device(ps->be, ps->w, host, ps->total * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "generator bundle: cannot upload parameters");
    free(host);
    return rc;
}

int generator_load(generator **out, const char *path, backend_t *be, d2_error *err)
{
    *out = NULL;
    st_file f;
    int rc = st_load(&f, path, err);
    if (rc)
        return d2_wrap(err, "generator %s", path);
    generator *g = calloc(1, sizeof *g);
    if (!g) {
        st_free(&f);
        return d2_fail(err, D2_ENOMEM, "generator: out of memory");
    }
    const char *fmt = st_meta(&f, "format");
    const char *cfg_text = st_meta(&f, "config");
    const char *prov = st_meta(&f, "provenance");
    gen_config cfg;
    if (!fmt || strcmp(fmt, "d2nwg-generator-v1")) {
        rc = d2_fail(err, D2_EFORMAT, "%s is not a d2nwg generator bundle (metadata 'format' is %s)",
                     path, fmt ? fmt : "missing");
        goto fail;
    }
    if (!cfg_text) {
        rc = d2_fail(err, D2_EFORMAT, "%s: metadata 'config' is missing", path);
        goto fail;
    }
    if ((rc = gen_config_from_json(&cfg, cfg_text, err)))
        goto fail;
    if ((rc = gen_model_init(g, &cfg, be, 0, err)))
        goto fail;
    if ((rc = load_paramset(&g->vae_ps, &f, err)) || (rc = load_paramset(&g->net_ps, &f, err)))
        goto fail;
    if ((rc = read_f32(&f, "stats.w_mean", (size_t)cfg.P, g->w_mean, err)) ||
        (rc = read_f32(&f, "stats.w_std", (size_t)cfg.P, g->w_std, err)) ||
        (rc = read_f32(&f, "stats.z_mean", (size_t)cfg.latent, g->z_mean, err)) ||
        (rc = read_f32(&f, "stats.z_std", (size_t)cfg.latent, g->z_std, err)) ||
        (rc = read_f32(&f, "stats.f_mean", (size_t)cfg.feat_dim, g->f_mean, err)) ||
        (rc = read_f32(&f, "stats.f_std", (size_t)cfg.feat_dim, g->f_std, err)))
        goto fail;
    const st_tensor *W = st_find(&f, "fmap.W");
    if (W) {
        if (W->ndim != 2 || W->shape[0] != cfg.feat_dim || W->shape[1] != cfg.input_dim) {
            rc = d2_fail(err, D2_EFORMAT, "%s: fmap.W must be [%d, %d]", path, cfg.feat_dim,
                         cfg.input_dim);
            goto fail;
        }
        g->fmap.in_dim = cfg.input_dim;
        g->fmap.out_dim = cfg.feat_dim;
        g->fmap.W = malloc((size_t)cfg.feat_dim * cfg.input_dim * sizeof(float));
        g->fmap.mean = malloc((size_t)cfg.input_dim * sizeof(float));
        if (!g->fmap.W || !g->fmap.mean) {
            rc = d2_fail(err, D2_ENOMEM, "generator: out of memory");
            goto fail;
        }
        if ((rc = read_f32(&f, "fmap.W", (size_t)cfg.feat_dim * cfg.input_dim, g->fmap.W, err)) ||
            (rc = read_f32(&f, "fmap.mean", (size_t)cfg.input_dim, g->fmap.mean, err)))
            goto fail;
    } else {
        if (cfg.input_dim != cfg.feat_dim) {
            rc = d2_fail(err, D2_EFORMAT, "%s: fmap.W is missing but input_dim != feature_dim", path);
            goto fail;
        }
        g->fmap.in_dim = g->fmap.out_dim = cfg.feat_dim;
    }
    const st_tensor *zt = st_find(&f, "zoo.theta");
    if (zt) {
        if (zt->ndim != 2 || zt->shape[1] != cfg.P) {
            rc = d2_fail(err, D2_EFORMAT, "%s: zoo.theta must be [n, %d]", path, cfg.P);
            goto fail;
        }
        int n = (int)zt->shape[0];
        if ((rc = gen_model_alloc_index(g, n, err)) ||
            (rc = read_f32(&f, "zoo.theta", (size_t)n * cfg.P, g->zoo_theta, err)) ||
            (rc = read_f32(&f, "zoo.emb", (size_t)n * cfg.cond_dim, g->zoo_emb, err)))
            goto fail;
        const st_tensor *zc = st_find(&f, "zoo.classes");
        if (!zc || zc->numel != (size_t)n * cfg.way) {
            rc = d2_fail(err, D2_EFORMAT, "%s: zoo.classes missing or not [%d, %d]", path, n, cfg.way);
            goto fail;
        }
        if ((rc = st_to_i32(zc, g->zoo_classes, err)))
            goto fail;
        for (int i = 0; i < n; i++) {
            double q = 0;
            for (int j = 0; j < cfg.P; j++)
                q += (double)g->zoo_theta[(size_t)i * cfg.P + j] * g->zoo_theta[(size_t)i * cfg.P + j];
            g->zoo_sqnorm[i] = (float)q;
        }
    }
    g->config_json = strdup(cfg_text);
    g->provenance_json = strdup(prov ? prov : "{}");
    g->path = strdup(path);
    if (!g->config_json || !g->provenance_json || !g->path) {
        rc = d2_fail(err, D2_ENOMEM, "generator: out of memory");
        goto fail;
    }
    gen_info *in = &g->info;
    sha256_hex(f.buf, f.len, in->id);
    in->path = g->path;
    in->config_json = g->config_json;
    in->provenance_json = g->provenance_json;
    in->spec = &g->spec;
    in->input_dim = cfg.input_dim;
    in->feature_dim = cfg.feat_dim;
    in->max_way = cfg.way;
    in->min_way = cfg.way;
    in->params = cfg.P;
    in->zoo_size = g->zoo_n;
    in->max_steps = cfg.T;
    in->default_candidates = cfg.candidates;
    in->default_steps = cfg.steps;
    in->default_guidance = cfg.guidance;
    in->default_sampler = cfg.sampler;
    {
        json_error_t je;
        json_t *pj = json_loads(g->provenance_json, 0, &je);
        json_t *zf = pj ? json_object_get(pj, "zoo_fingerprint") : NULL;
        snprintf(in->zoo_fingerprint, sizeof in->zoo_fingerprint, "%s",
                 json_is_string(zf) ? json_string_value(zf) : "");
        json_decref(pj);
    }
    st_free(&f);
    // uploads may be asynchronous: finish them before other backends read the weights
    if (be->ops->sync(be)) {
        gen_model_free(g);
        free(g);
        return d2_fail(err, D2_EDEVICE, "generator %s: the upload to the device failed", path);
    }
    *out = g;
    return 0;
fail:
    st_free(&f);
    gen_model_free(g);
    free(g);
    return rc;
}

void generator_free(generator *g)
{
    if (!g)
        return;
    gen_model_free(g);
    free(g);
}

const gen_info *generator_info(const generator *g)
{
    return &g->info;
}
