/* gen_model.c - the generator's configuration (defaults, JSON) and its parts
 * in memory: registering and allocating every module's parameters, the
 * statistics and zoo index buffers, and freeing them. The bundle file's save
 * and load are in gen_bundle_io.c. */
#include "gen_model.h"

#include "gate.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


gen_config gen_config_defaults(int P, int input_dim, int feat_dim, int way, const char *spec)
{
    gen_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.spec, sizeof c.spec, "%s", spec ? spec : "");
    c.P = P;
    c.input_dim = input_dim;
    c.feat_dim = feat_dim;
    c.way = way;
    c.min_way = way;
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
    c.refine_rule = GEN_REFINE_ADAPTIVE;
    c.refine_c = (float)GEN_REFINE_C;
    c.gate_one_shot = GATE_ONE_SHOT_AGREEMENT;
    c.gate_fallback = GEN_METHOD_PROTOTYPES;
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
    if (c->min_way < c->way) // any-way generators only: fixed-way configs stay as they were
        json_object_set_new(o, "min_way", json_integer(c->min_way));
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
    if (c->per_class) // only when set: pooled bundles stay as they were
        json_object_set_new(e, "per_class", json_true());
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
    if (c->refine_rule != GEN_REFINE_ADAPTIVE || c->refine_c != (float)GEN_REFINE_C) {
        // only when not the default: bundles that keep it stay as they were
        json_object_set_new(sm, "refine_rule", json_string(gen_refine_rule_name(c->refine_rule)));
        json_object_set_new(sm, "refine_c", json_real(c->refine_c));
    }
    json_object_set_new(o, "sampler", sm);
    if (c->gate_one_shot != GATE_ONE_SHOT_AGREEMENT || c->gate_fallback != GEN_METHOD_PROTOTYPES)
        json_object_set_new(o, "gate", json_pack("{s:f,s:s}", "one_shot_agreement",
                                                 (double)c->gate_one_shot, "one_shot_fallback",
                                                 gen_method_name(c->gate_fallback)));
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

/* The 1-shot gate settings, when present (else the defaults). */
static int get_gate(json_t *gt, gen_config *c, d2_error *err)
{
    c->gate_one_shot = GATE_ONE_SHOT_AGREEMENT;
    c->gate_fallback = GEN_METHOD_PROTOTYPES;
    if (!gt)
        return 0;
    json_t *a = json_object_get(gt, "one_shot_agreement");
    json_t *f = json_object_get(gt, "one_shot_fallback");
    if (!json_is_object(gt) || !json_is_number(a) || !json_is_string(f) ||
        !(json_number_value(a) >= 0.0 && json_number_value(a) <= 2.0) ||
        gen_method_parse_baseline(json_string_value(f), &c->gate_fallback))
        return d2_fail(err, D2_EFORMAT, "generator config: gate needs one_shot_agreement in "
                       "0..2 and one_shot_fallback prototypes or logreg");
    c->gate_one_shot = (float)json_number_value(a);
    return 0;
}

/* sampler.refine_rule and refine_c, when present (else the defaults). */
static int get_refine(json_t *sm, gen_config *c, d2_error *err)
{
    c->refine_rule = GEN_REFINE_ADAPTIVE;
    c->refine_c = (float)GEN_REFINE_C;
    json_t *rule = json_object_get(sm, "refine_rule"), *rc_ = json_object_get(sm, "refine_c");
    if (rule && (!json_is_string(rule) ||
                 gen_refine_rule_parse(json_string_value(rule), &c->refine_rule)))
        return d2_fail(err, D2_EFORMAT, "generator config: sampler.refine_rule must be "
                       "adaptive or fixed");
    if (rc_ && (!json_is_number(rc_) || !(json_number_value(rc_) > 0.0) ||
                json_number_value(rc_) > 1e6))
        return d2_fail(err, D2_EFORMAT, "generator config: sampler.refine_c must be in (0, 1e6]");
    if (rc_)
        c->refine_c = (float)json_number_value(rc_);
    return 0;
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
    c->min_way = c->way;
    if (json_object_get(o, "min_way") && (rc = get_int(o, "min_way", 2, c->way, &c->min_way, err)))
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
    json_t *pc = json_object_get(e, "per_class");
    if (pc && !json_is_boolean(pc)) {
        rc = d2_fail(err, D2_EFORMAT, "generator config: encoder.per_class must be a boolean");
        goto out;
    }
    c->per_class = json_is_true(pc);
    json_t *smp = json_object_get(sm, "sampler");
    if (json_is_string(smp) && !strcmp(json_string_value(smp), "ddpm"))
        c->sampler = GEN_SAMPLER_DDPM;
    else if (json_is_string(smp) && !strcmp(json_string_value(smp), "ddim"))
        c->sampler = GEN_SAMPLER_DDIM;
    else {
        rc = d2_fail(err, D2_EFORMAT, "generator config: sampler.sampler must be ddim or ddpm");
        goto out;
    }
    if ((rc = get_refine(sm, c, err)) || (rc = get_gate(json_object_get(o, "gate"), c, err)))
        goto out;
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
    if (cfg->per_class && (g->tok.n_layers != 1 || g->tok.n_tok != cfg->way))
        return d2_fail(err, D2_EINVAL, "generator: per-class conditions need a head of one "
                       "linear layer of %d rows; spec '%s' has %d tokens in %d layers",
                       cfg->way, cfg->spec, g->tok.n_tok, g->tok.n_layers);
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
                     .cond_dim = cfg->cond_dim,
                     .absent = cfg->min_way < cfg->way,
                     .per_class = cfg->per_class};
    // per class, the denoiser's rows are the head's rows: one token latent each
    denoiser_cfg dc = {.latent = cfg->per_class ? cfg->tok_latent : cfg->latent,
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
    free(g->zoo_nn);
    feature_map_dev_free(&g->fmap_dev);
    if (g->zoo_theta_dev)
        g->be->ops->free(g->be, g->zoo_theta_dev);
    g->zoo_theta_dev = NULL;
    free(g->config_json);
    free(g->provenance_json);
    free(g->path);
}

