/* gen_bundle_io.c - the generator bundle file, saved and loaded: ONE
 * safetensors holding every tensor (VAE, dataset encoder, denoiser EMA
 * weights, feature map, statistics, zoo index) and __metadata__ with the JSON
 * config and provenance (DESIGN section 2). A loaded generator also keeps its
 * feature map and zoo index resident on its backend. */
#include "gate.h"
#include "gen_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "sha256.h"

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
    if (g->fmap.cnn && /* the backbone stays in its file: the bundle records which one */
        (rc = st_writer_meta(&w, "backbone_sha256", feature_map_cnn_sha256(&g->fmap), err)))
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

/* The bundle's format and config metadata -> cfg. */
static int load_config(const st_file *f, const char *path, gen_config *cfg, d2_error *err)
{
    const char *fmt = st_meta(f, "format");
    const char *cfg_text = st_meta(f, "config");
    if (!fmt || strcmp(fmt, "d2nwg-generator-v1"))
        return d2_fail(err, D2_EFORMAT,
                       "%s is not a d2nwg generator bundle (metadata 'format' is %s)", path,
                       fmt ? fmt : "missing");
    if (!cfg_text)
        return d2_fail(err, D2_EFORMAT, "%s: metadata 'config' is missing", path);
    return gen_config_from_json(cfg, cfg_text, err);
}

static int load_stats(generator *g, const st_file *f, d2_error *err)
{
    const gen_config *c = &g->cfg;
    int rc;
    if ((rc = read_f32(f, "stats.w_mean", (size_t)c->P, g->w_mean, err)) ||
        (rc = read_f32(f, "stats.w_std", (size_t)c->P, g->w_std, err)) ||
        (rc = read_f32(f, "stats.z_mean", (size_t)c->latent, g->z_mean, err)) ||
        (rc = read_f32(f, "stats.z_std", (size_t)c->latent, g->z_std, err)) ||
        (rc = read_f32(f, "stats.f_mean", (size_t)c->feat_dim, g->f_mean, err)) ||
        (rc = read_f32(f, "stats.f_std", (size_t)c->feat_dim, g->f_std, err)))
        return rc;
    return 0;
}

/* the spec's cnn:FILE, which must be the backbone the bundle was trained with */
static int load_cnn_map(generator *g, const st_file *f, const char *path, d2_error *err)
{
    const gen_config *c = &g->cfg;
    const char *want = st_meta(f, "backbone_sha256");
    int rc = feature_map_load_cnn(&g->fmap, g->spec.cnn_path, err);
    if (rc)
        return d2_wrap(err, "%s", path);
    if (!want || strcmp(want, feature_map_cnn_sha256(&g->fmap)))
        return d2_fail(err, D2_EFORMAT, "%s: cnn:%s (sha256 %.12s...) is not the backbone it "
                       "was trained with (%.12s...)", path, g->spec.cnn_path,
                       feature_map_cnn_sha256(&g->fmap), want ? want : "none recorded");
    if (g->fmap.in_dim != c->input_dim || g->fmap.out_dim != c->feat_dim)
        return d2_fail(err, D2_EFORMAT, "%s: cnn:%s maps %d -> %d values; the bundle expects "
                       "%d -> %d", path, g->spec.cnn_path, g->fmap.in_dim, g->fmap.out_dim,
                       c->input_dim, c->feat_dim);
    return 0;
}

/* fmap.W and fmap.mean, the spec's backbone, or the identity when input_dim == feature_dim. */
static int load_feature_map(generator *g, const st_file *f, const char *path, d2_error *err)
{
    const gen_config *c = &g->cfg;
    if (g->spec.has_cnn)
        return load_cnn_map(g, f, path, err);
    const st_tensor *W = st_find(f, "fmap.W");
    if (!W) {
        if (c->input_dim != c->feat_dim)
            return d2_fail(err, D2_EFORMAT, "%s: fmap.W is missing but input_dim != feature_dim",
                           path);
        g->fmap.in_dim = g->fmap.out_dim = c->feat_dim;
        return 0;
    }
    if (W->ndim != 2 || W->shape[0] != c->feat_dim || W->shape[1] != c->input_dim)
        return d2_fail(err, D2_EFORMAT, "%s: fmap.W must be [%d, %d]", path, c->feat_dim,
                       c->input_dim);
    g->fmap.in_dim = c->input_dim;
    g->fmap.out_dim = c->feat_dim;
    g->fmap.W = malloc((size_t)c->feat_dim * c->input_dim * sizeof(float));
    g->fmap.mean = malloc((size_t)c->input_dim * sizeof(float));
    if (!g->fmap.W || !g->fmap.mean)
        return d2_fail(err, D2_ENOMEM, "generator: out of memory");
    int rc;
    if ((rc = read_f32(f, "fmap.W", (size_t)c->feat_dim * c->input_dim, g->fmap.W, err)) ||
        (rc = read_f32(f, "fmap.mean", (size_t)c->input_dim, g->fmap.mean, err)))
        return rc;
    return 0;
}

/* zoo.theta, zoo.emb, zoo.classes (all optional together) and |theta|^2. */
static int load_zoo_index(generator *g, const st_file *f, const char *path, d2_error *err)
{
    const gen_config *c = &g->cfg;
    const st_tensor *zt = st_find(f, "zoo.theta");
    if (!zt)
        return 0;
    if (zt->ndim != 2 || zt->shape[1] != c->P)
        return d2_fail(err, D2_EFORMAT, "%s: zoo.theta must be [n, %d]", path, c->P);
    int n = (int)zt->shape[0], rc;
    if ((rc = gen_model_alloc_index(g, n, err)) ||
        (rc = read_f32(f, "zoo.theta", (size_t)n * c->P, g->zoo_theta, err)) ||
        (rc = read_f32(f, "zoo.emb", (size_t)n * c->cond_dim, g->zoo_emb, err)))
        return rc;
    const st_tensor *zc = st_find(f, "zoo.classes");
    if (!zc || zc->numel != (size_t)n * c->way)
        return d2_fail(err, D2_EFORMAT, "%s: zoo.classes missing or not [%d, %d]", path, n,
                       c->way);
    if ((rc = st_to_i32(zc, g->zoo_classes, err)))
        return rc;
    for (int i = 0; i < n; i++) {
        const float *t = g->zoo_theta + (size_t)i * c->P;
        double q = 0;
        for (int j = 0; j < c->P; j++)
            q += (double)t[j] * t[j];
        g->zoo_sqnorm[i] = (float)q;
    }
    return gen_gate_reference(g, err);
}

/* gen_info from the loaded generator and the file's bytes (its id). */
static void fill_info(generator *g, const st_file *f)
{
    const gen_config *c = &g->cfg;
    gen_info *in = &g->info;
    sha256_hex(f->buf, f->len, in->id);
    in->path = g->path;
    in->config_json = g->config_json;
    in->provenance_json = g->provenance_json;
    in->spec = &g->spec;
    in->input_dim = c->input_dim;
    in->feature_dim = c->feat_dim;
    in->max_way = c->way;
    in->min_way = c->min_way;
    in->params = c->P;
    in->zoo_size = g->zoo_n;
    in->default_candidates = c->candidates;
    in->default_steps = c->steps;
    in->max_steps = c->T;
    in->default_guidance = c->guidance;
    in->default_sampler = c->sampler;
    in->default_refine_rule = c->refine_rule;
    in->default_refine_c = c->refine_c;
    in->default_gate_one_shot = c->gate_one_shot;
    in->default_gate_fallback = c->gate_fallback;
    json_error_t je;
    json_t *pj = json_loads(g->provenance_json, 0, &je);
    json_t *zf = pj ? json_object_get(pj, "zoo_fingerprint") : NULL;
    snprintf(in->zoo_fingerprint, sizeof in->zoo_fingerprint, "%s",
             json_is_string(zf) ? json_string_value(zf) : "");
    json_decref(pj);
}

/* The feature map and the zoo's heads resident on the generator's backend
 * (the feature map and the nearest-zoo search of a job run there), then a sync:
 * uploads may be asynchronous, and other backends read the weights after this. */
static int upload_resident(generator *g, const char *path, d2_error *err)
{
    backend_t *be = g->be;
    int rc = feature_map_upload(&g->fmap_dev, &g->fmap, be, err);
    if (rc)
        return rc;
    if (g->zoo_n > 0) {
        size_t nz = (size_t)g->zoo_n * g->cfg.P;
        g->zoo_theta_dev = backend_alloc_floats(be, nz);
        if (!g->zoo_theta_dev)
            return d2_fail(err, D2_ENOMEM, "generator %s: no device memory for the zoo", path);
        if (be->ops->to_device(be, g->zoo_theta_dev, g->zoo_theta, nz * sizeof(float)))
            return d2_fail(err, D2_EDEVICE, "generator %s: cannot upload the zoo", path);
    }
    if (be->ops->sync(be))
        return d2_fail(err, D2_EDEVICE, "generator %s: the upload to the device failed", path);
    return 0;
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
    gen_config cfg;
    const char *prov = st_meta(&f, "provenance");
    if ((rc = load_config(&f, path, &cfg, err)) || (rc = gen_model_init(g, &cfg, be, 0, err)) ||
        (rc = load_paramset(&g->vae_ps, &f, err)) || (rc = load_paramset(&g->net_ps, &f, err)) ||
        (rc = load_stats(g, &f, err)) || (rc = load_feature_map(g, &f, path, err)) ||
        (rc = load_zoo_index(g, &f, path, err)))
        goto fail;
    g->config_json = strdup(st_meta(&f, "config"));
    g->provenance_json = strdup(prov ? prov : "{}");
    g->path = strdup(path);
    if (!g->config_json || !g->provenance_json || !g->path) {
        rc = d2_fail(err, D2_ENOMEM, "generator: out of memory");
        goto fail;
    }
    fill_info(g, &f);
    st_free(&f);
    if ((rc = upload_resident(g, path, err))) {
        gen_model_free(g);
        free(g);
        return rc;
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
