/* generator.c - generation: support set -> condition -> K latents by DDIM or
 * DDPM with classifier-free guidance -> decoded heads -> scored on the support
 * set and ranked (the paper's model retrieval); checkpoint bytes; retrieval of
 * the nearest zoo heads. */
#include "gate.h"
#include "gen_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"
#include "safetensors.h"

#define GEN_ARENA_BASE (16u << 20)

int gen_workspace_create(gen_workspace **out, const generator *g, backend_t *be,
                         int max_candidates, d2_error *err)
{
    *out = NULL;
    if (max_candidates < 1)
        return d2_fail(err, D2_EINVAL, "workspace: max_candidates must be >= 1");
    gen_workspace *ws = calloc(1, sizeof *ws);
    if (!ws)
        return d2_fail(err, D2_ENOMEM, "workspace: out of memory");
    const gen_config *c = &g->cfg;
    // sampling: 2K rows through the denoiser, decoding K rows through the VAE
    size_t rows = 2 * (size_t)max_candidates;
    size_t per_row = (size_t)c->den_hidden * (8 + 6 * c->den_ratio) * c->den_blocks +
                     (size_t)g->tok.n_tok * ((size_t)c->vae_hidden * 8 * (c->vae_blocks + 1) +
                                             4 * (size_t)g->tok.len) +
                     8 * (size_t)c->latent;
    size_t bytes = GEN_ARENA_BASE + rows * per_row * sizeof(float) * 2;
    int rc = arena_init(&ws->ar, be, bytes, err);
    if (rc) {
        free(ws);
        return rc;
    }
    ws->be = be;
    ws->max_candidates = max_candidates;
    *out = ws;
    return 0;
}

void gen_workspace_free(gen_workspace *ws)
{
    if (!ws)
        return;
    arena_free(&ws->ar);
    free(ws);
}

int gen_info_check_support(const gen_info *gi, int embeddings, int dim, int classes,
                           gen_support_part *part, d2_error *err)
{
    const int want = embeddings ? gi->feature_dim : gi->input_dim;
    const int other = embeddings ? gi->input_dim : gi->feature_dim;
    gen_support_part p = GEN_SUPPORT_LABELS;
    int rc = 0;
    if (dim != want) {
        p = GEN_SUPPORT_ROWS;
        rc = d2_fail(err, D2_EINVAL, "rows have %d values; this generator takes %d-value %s (and "
                     "%d-value %s)", dim, want, embeddings ? "embeddings" : "samples", other,
                     embeddings ? "samples" : "embeddings");
    } else if (classes > gi->max_way) {
        rc = d2_fail(err, D2_ERANGE, "%d classes; this generator supports at most %d", classes,
                     gi->max_way);
    } else if (classes < gi->min_way) {
        rc = d2_fail(err, D2_ERANGE, "%d classes; this generator needs at least %d (labels "
                     "0..%d, each with a row)", classes, gi->min_way, gi->min_way - 1);
    }
    if (part)
        *part = p;
    return rc;
}

int generator_check_support(const generator *g, const dataset *s, int embeddings, d2_error *err)
{
    if (!s || s->n <= 0)
        return d2_fail(err, D2_EINVAL, "the support set is empty");
    int maxl = -1;
    for (int i = 0; i < s->n; i++) {
        if (s->y[i] < 0)
            return d2_fail(err, D2_EINVAL, "label %d of row %d is negative", s->y[i], i);
        if (s->y[i] > maxl)
            maxl = s->y[i];
    }
    const int N = maxl + 1;
    int rc = gen_info_check_support(&g->info, embeddings, s->dim, N, NULL, err);
    if (rc)
        return rc;
    int counts[D2_MAX_WAY] = {0};
    for (int i = 0; i < s->n; i++)
        counts[s->y[i]]++;
    for (int k = 0; k < N; k++)
        if (!counts[k])
            return d2_fail(err, D2_EINVAL, "class %d has no sample (labels must be 0..%d)", k,
                           N - 1);
    for (size_t i = 0; i < (size_t)s->n * s->dim; i++)
        if (!isfinite(s->x[i]))
            return d2_fail(err, D2_EINVAL, "row %zu, column %zu is not a finite number",
                           i / (size_t)s->dim, i % (size_t)s->dim);
    return 0;
}

void gen_class_cond_mean(const gen_config *c, const float *class_cond, float *emb)
{
    const int C = c->cond_dim, N = c->way;
    for (int j = 0; j < C; j++) {
        double acc = 0;
        for (int i = 0; i < N; i++)
            acc += class_cond[(size_t)i * C + j];
        emb[j] = (float)(acc / N);
    }
}

/* One attempt at encoding host rows (standardised) with the scratch arena `ar`. */
static int encode_once(const generator *g, backend_t *be, arena *ar, const float *host,
                       size_t n, const int *counts, int N, float *cond, d2_error *err)
{
    const int F = g->cfg.feat_dim, E = setenc_cond_len(&g->enc.cfg);
    size_t mark = arena_mark(ar);
    float *X = arena_floats_uninit(ar, n * F);
    float *cd = arena_floats_uninit(ar, (size_t)E);
    int rc;
    if (!X || !cd) {
        rc = d2_fail(err, D2_ENOMEM, "support set of %zu rows does not fit the scratch memory", n);
        goto out;
    }
    if (be->ops->to_device(be, X, host, n * F * sizeof(float))) {
        rc = d2_fail(err, D2_EDEVICE, "cannot upload the support set");
        goto out;
    }
    if ((rc = setenc_encode_ragged(be, &g->enc, &g->net_ps, ar, X, counts, N, cd, err)))
        goto out;
    // per class: [embedding | class conditions], the embedding their mean
    float *host_cond = g->cfg.per_class ? cond + g->cfg.cond_dim : cond;
    if (be->ops->to_host(be, host_cond, cd, (size_t)E * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "cannot read the condition back");
    else if (g->cfg.per_class)
        gen_class_cond_mean(&g->cfg, host_cond, cond);
out:
    arena_reset(ar, mark);
    return rc;
}

/* The encoder's scratch memory grows with the largest class; the workspace is
 * sized for typical support sets, so a larger one gets a temporary arena of the
 * size the failed attempt asked for (doubling while attempts still fall short). */
#define GEN_ENCODE_MAX_BYTES ((size_t)8 << 30)

int gen_encode_standardized(const generator *g, backend_t *be, arena *ar, const float *x,
                            const int *counts, int N, float *cond, d2_error *err)
{
    size_t n = 0;
    for (int c = 0; c < N; c++)
        n += (size_t)counts[c];
    size_t peak0 = ar->peak;
    ar->peak = arena_mark(ar);
    int rc = encode_once(g, be, ar, x, n, counts, N, cond, err);
    size_t want = ar->peak > ar->cap ? ar->peak - arena_mark(ar) : 0;
    ar->peak = peak0 > ar->peak ? peak0 : ar->peak;
    while (rc == D2_ENOMEM && want > 0) {
        size_t bytes = want + want / 2 + ((size_t)1 << 20);
        if (bytes > GEN_ENCODE_MAX_BYTES) {
            rc = d2_fail(err, D2_ERANGE,
                         "the support set needs %zu MiB of scratch memory to encode; the limit "
                         "is %zu MiB (send fewer samples per class)",
                         bytes >> 20, GEN_ENCODE_MAX_BYTES >> 20);
            break;
        }
        arena big;
        if ((rc = arena_init(&big, be, bytes, err)))
            break;
        rc = encode_once(g, be, &big, x, n, counts, N, cond, err);
        want = rc == D2_ENOMEM && big.peak > big.cap ? 2 * big.peak : 0;
        arena_free(&big);
    }
    return rc;
}

int gen_encode_support(const generator *g, backend_t *be, arena *ar, const float *feat,
                       const int *counts, int N, float *cond, d2_error *err)
{
    const int F = g->cfg.feat_dim;
    size_t n = 0;
    for (int c = 0; c < N; c++)
        n += (size_t)counts[c];
    float *host = malloc(n * F * sizeof(float) + 1);
    if (!host)
        return d2_fail(err, D2_ENOMEM, "out of memory for the support set");
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < F; j++)
            host[i * F + j] = (feat[i * F + j] - g->f_mean[j]) / g->f_std[j];
    int rc = gen_encode_standardized(g, be, ar, host, counts, N, cond, err);
    free(host);
    return rc;
}

int gen_decode_latents(const generator *g, backend_t *be, arena *ar, const float *z, int n,
                       float *theta, d2_error *err)
{
    const wtok *tk = &g->tok;
    const int L = g->cfg.latent, l = g->cfg.tok_latent, P = g->cfg.P;
    const int rows = n * tk->n_tok, in = l + tk->n_layers;
    float *zh = malloc((size_t)n * L * sizeof(float));
    float *zr = malloc((size_t)rows * in * sizeof(float));
    float *out = malloc((size_t)rows * tk->len * sizeof(float));
    int rc = 0;
    size_t mark = arena_mark(ar);
    if (!zh || !zr || !out) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < L; j++)
            zh[(size_t)i * L + j] = z[(size_t)i * L + j] * g->z_std[j] + g->z_mean[j];
    wtok_latent_rows(tk, zh, n, l, zr);
    float *zd = arena_floats_uninit(ar, (size_t)rows * in);
    resmlp_cache c;
    if (!zd) {
        rc = d2_fail(err, D2_ENOMEM, "decoding %d latents does not fit the scratch memory", n);
        goto out;
    }
    if (be->ops->to_device(be, zd, zr, (size_t)rows * in * sizeof(float))) {
        rc = d2_fail(err, D2_EDEVICE, "cannot upload latents");
        goto out;
    }
    if ((rc = resmlp_forward(be, &g->vae_dec, &g->vae_ps, ar, &c, zd, rows, err)))
        goto out;
    if (be->ops->to_host(be, out, c.y, (size_t)rows * tk->len * sizeof(float))) {
        rc = d2_fail(err, D2_EDEVICE, "cannot read decoded weights");
        goto out;
    }
    wtok_merge(tk, out, n, theta);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < P; j++)
            theta[(size_t)i * P + j] = theta[(size_t)i * P + j] * g->w_std[j] + g->w_mean[j];
out:
    arena_reset(ar, mark);
    free(zh);
    free(zr);
    free(out);
    return rc;
}

/* Support set in feature space (the feature map on be), rows sorted by label;
 * counts per class. */
static int support_features(const generator *g, backend_t *be, const dataset *s, int embeddings,
                            dataset *sorted, int *counts, d2_error *err)
{
    dataset feat = {0};
    int rc;
    if (embeddings) {
        if ((rc = dataset_alloc(&feat, s->n, s->dim, err)))
            return rc;
        memcpy(feat.x, s->x, (size_t)s->n * s->dim * sizeof(float));
        memcpy(feat.y, s->y, (size_t)s->n * sizeof(int32_t));
        feat.classes = s->classes;
    } else if ((rc = feature_map_apply_dev(&g->fmap_dev, be, s, &feat, err))) {
        return rc;
    }
    const int F = feat.dim, N = g->cfg.way;
    if ((rc = dataset_alloc(sorted, feat.n, F, err))) {
        dataset_free(&feat);
        return rc;
    }
    memset(counts, 0, (size_t)N * sizeof(int));
    size_t row = 0;
    for (int c = 0; c < N; c++)
        for (int i = 0; i < feat.n; i++)
            if (feat.y[i] == c) {
                memcpy(sorted->x + row * F, feat.x + (size_t)i * F, (size_t)F * sizeof(float));
                sorted->y[row++] = c;
                counts[c]++;
            }
    int present = 0;
    while (present < N && counts[present] > 0)
        present++;
    sorted->classes = present; // labels 0..present-1 (generator_check_support)
    dataset_free(&feat);
    return 0;
}

static int cmp_candidates(const void *pa, const void *pb)
{
    const gen_candidate *a = pa, *b = pb;
    if (a->support_acc != b->support_acc)
        return a->support_acc > b->support_acc ? -1 : 1;
    if (a->support_loss != b->support_loss)
        return a->support_loss < b->support_loss ? -1 : 1;
    return a->index - b->index;
}

/* The denoiser's view of a sampling pass. Pooled: S condition rows (the task's,
 * the null one or both), K candidate rows of L each. Per class (gen_config
 * per_class): S*N condition rows (class i's, or the null one), each with its K
 * candidates' rows of the token latent l, so the device latent is [N, K, l]
 * (class-major) while candidates leave as [K, N*l]. */
typedef struct sample_shape {
    int S, conds, G, rowlen; /* conditions per guidance branch = conds / S */
} sample_shape;

/* Condition rows on the device: [cond] or [null] or [cond, null], per class
 * the N class conditions (or N copies of the null one) for each branch. */
static int upload_conditions(const generator *g, backend_t *be, const sample_shape *sh,
                             float w, const float *cond, float *condS, d2_error *err)
{
    const struct backend_ops *op = be->ops;
    const int C = g->cfg.cond_dim, per = sh->conds / sh->S;
    const float *null_cond = g->net_ps.w + g->den.null_cond;
    const float *mine = g->cfg.per_class ? cond + C : cond; // the denoiser's conditions
    for (int s = 0; s < sh->S; s++) {
        float *dst = condS + (size_t)s * per * C;
        if (s == 0 && w != 0.0f) {
            if (op->to_device(be, dst, mine, (size_t)per * C * sizeof(float)))
                return d2_fail(err, D2_EDEVICE, "cannot upload the condition");
            continue;
        }
        for (int i = 0; i < per; i++)
            op->copy(be, dst + (size_t)i * C, null_cond, (size_t)C * sizeof(float));
    }
    return 0;
}

/* Between the candidates' layout [K, N, l] and the per-class device layout
 * [N, K, l] (to_class != 0: into the device layout), through the host. */
static int class_major(backend_t *be, float *z, int K, int N, int l, int to_class,
                       d2_error *err)
{
    const size_t n = (size_t)K * N * l;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    int rc = 0;
    if (!a || !b)
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
    else if (be->ops->to_host(be, a, z, n * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "cannot read latents back");
    for (int k = 0; k < K && !rc; k++)
        for (int i = 0; i < N; i++) {
            const size_t kn = ((size_t)k * N + i) * l, nk = ((size_t)i * K + k) * l;
            memcpy(b + (to_class ? nk : kn), a + (to_class ? kn : nk), (size_t)l * sizeof(float));
        }
    if (!rc && be->ops->to_device(be, z, b, n * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "cannot upload latents");
    free(a);
    free(b);
    return rc;
}

/* One denoising pass at timestep t: eps for the latents z (guided when S = 2). */
static int denoise_once(const generator *g, backend_t *be, arena *ar, const sample_shape *sh,
                        int t, float w, const float *z, float *zin, const float *condS,
                        float *temb, float *tembd, float **eps_out, d2_error *err)
{
    const struct backend_ops *op = be->ops;
    const gen_config *c = &g->cfg;
    const size_t KL = (size_t)sh->conds / sh->S * sh->G * sh->rowlen; // one branch's floats
    int ts[2 * D2_MAX_WAY];
    for (int i = 0; i < sh->conds; i++)
        ts[i] = t;
    denoiser_timestep_features(c->temb_dim, ts, sh->conds, temb);
    if (op->to_device(be, tembd, temb, (size_t)sh->conds * c->temb_dim * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "cannot upload timestep features");
    for (int s = 0; s < sh->S; s++)
        op->copy(be, zin + (size_t)s * KL, z, KL * sizeof(float));
    denoiser_cache dc;
    int rc = denoiser_forward(be, &g->den, &g->net_ps, ar, &dc, zin, tembd, condS, sh->conds,
                              sh->G, err);
    if (rc)
        return rc;
    if (sh->S == 2) // eps = w * eps_cond + (1 - w) * eps_null
        op->axpby(be, dc.eps, 1.0f - w, dc.eps + KL, w, KL);
    *eps_out = dc.eps;
    return 0;
}

/* Sample K standardised latents z [K, L] (host) for condition cond
 * [gen_cond_len] (host). */
static int sample_latents(const generator *g, gen_workspace *ws, const gen_request *req,
                          const float *cond, float *z_out, d2_error *err)
{
    backend_t *be = ws->be;
    const struct backend_ops *op = be->ops;
    const gen_config *c = &g->cfg;
    const int K = req->candidates, L = c->latent, C = c->cond_dim, steps = req->steps;
    const float w = req->guidance;
    const int S = (w == 1.0f || w == 0.0f) ? 1 : 2, N = c->per_class ? c->way : 1;
    const sample_shape sh = {.S = S, .conds = S * N, .G = K, .rowlen = L / N};
    const float eta = req->sampler == GEN_SAMPLER_DDPM ? 1.0f : 0.0f;
    int *tau = malloc((size_t)steps * sizeof(int));
    float *temb = malloc((size_t)sh.conds * c->temb_dim * sizeof(float));
    int rc = 0;
    arena *ar = &ws->ar;
    size_t mark = arena_mark(ar);
    if (!tau || !temb) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = diffusion_timesteps(&g->sched, steps, tau, err)))
        goto out;
    float *condS = arena_floats_uninit(ar, (size_t)sh.conds * C);
    float *z = arena_floats_uninit(ar, (size_t)K * L);
    float *zin = arena_floats_uninit(ar, (size_t)S * K * L);
    float *tembd = arena_floats_uninit(ar, (size_t)sh.conds * c->temb_dim);
    float *noise = eta > 0 ? arena_floats_uninit(ar, (size_t)K * L) : NULL;
    if (!condS || !z || !zin || !tembd || (eta > 0 && !noise)) {
        rc = d2_fail(err, D2_ENOMEM, "%d candidates do not fit the scratch memory", K);
        goto out;
    }
    if ((rc = upload_conditions(g, be, &sh, w, cond, condS, err)))
        goto out;
    // candidate k starts from positions [k*L, (k+1)*L) of the seed's stream
    op->rand_normal(be, z, (size_t)K * L, req->seed, 0, 0.0f, 1.0f);
    if (N > 1 && (rc = class_major(be, z, K, N, sh.rowlen, 1, err)))
        goto out;
    for (int i = 0; i < steps; i++) {
        if (req->cancel && atomic_load(req->cancel)) {
            rc = d2_fail(err, D2_ECANCELLED, "cancelled at step %d of %d", i, steps);
            goto out;
        }
        const int t = tau[i], tp = i + 1 < steps ? tau[i + 1] : -1;
        size_t inner = arena_mark(ar);
        float *eps = NULL;
        if ((rc = denoise_once(g, be, ar, &sh, t, w, z, zin, condS, temb, tembd, &eps, err)))
            goto out;
        ddim_coef k = diffusion_ddim_coef(&g->sched, t, tp, eta);
        op->axpby(be, z, k.b, eps, k.a, (size_t)K * L);
        arena_reset(ar, inner);
        if (k.sigma > 0.0f) {
            op->rand_normal(be, noise, (size_t)K * L, rng_derive(req->seed, "ddpm", (uint64_t)i),
                            0, 0.0f, 1.0f);
            op->axpby(be, z, k.sigma, noise, 1.0f, (size_t)K * L);
        }
        if (req->progress)
            req->progress(req->progress_ctx, 0.9f * (float)(i + 1) / (float)steps);
    }
    if (N > 1 && (rc = class_major(be, z, K, N, sh.rowlen, 0, err)))
        goto out;
    if (op->to_host(be, z_out, z, (size_t)K * L * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "cannot read latents back");
out:
    arena_reset(ar, mark);
    free(tau);
    free(temb);
    return rc;
}

/* Score the K decoded heads (theta host [K, P]) on the support set and find
 * each one's nearest zoo entry, on the workspace's backend. */
static int score_candidates(const generator *g, backend_t *be, const target_spec *hs,
                            const dataset *feat, const float *theta, int K, gen_candidate *cand,
                            d2_error *err)
{
    const int P = (int)hs->numel;
    gen_scorer sc;
    int rc = gen_scorer_init(&sc, be, hs, feat, err);
    if (rc)
        return rc;
    for (int k = 0; k < K && !rc; k++) {
        gen_candidate *c = &cand[k];
        rc = gen_scorer_run(&sc, c->theta, &c->support_acc, &c->support_loss, err);
        if (!c->sample)
            c->sample_acc = c->support_acc;
        double nn = 0;
        for (int j = 0; j < P; j++)
            nn += (double)c->theta[j] * c->theta[j];
        c->norm = (float)sqrt(nn);
    }
    int idx[64];
    float dist[64];
    for (int k0 = 0; k0 < K && !rc; k0 += 64) { // in chunks of 64 candidates
        int kk = K - k0 < 64 ? K - k0 : 64;
        rc = gen_nearest_zoo(g, be, hs, theta + (size_t)k0 * P, kk, idx, dist, err);
        for (int k = 0; k < kk && !rc; k++) {
            cand[k0 + k].zoo_nearest = idx[k];
            cand[k0 + k].zoo_distance = dist[k];
        }
    }
    gen_scorer_free(&sc);
    return rc;
}

double gen_refine_strength(float sample_acc, int way)
{
    const double chance = 1.0 / (way > 1 ? way : 2);
    double share = (1.0 - sample_acc) / (1.0 - chance); // 0: fits its support set, 1: chance
    share = share < 0.0 ? 0.0 : share > 1.0 ? 1.0 : share;
    const double C = GEN_REFINE_C * share;
    return C < 1e-3 ? 0.0 : C;
}

const char *gen_refine_rule_name(gen_refine_rule r)
{
    return r == GEN_REFINE_FIXED ? "fixed" : "adaptive";
}

int gen_refine_rule_parse(const char *s, gen_refine_rule *out)
{
    if (!strcmp(s, "adaptive"))
        *out = GEN_REFINE_ADAPTIVE;
    else if (!strcmp(s, "fixed"))
        *out = GEN_REFINE_FIXED;
    else
        return -1;
    return 0;
}

double generator_refine_c(const generator *g, float sample_acc, int way)
{
    if (g->cfg.refine_rule == GEN_REFINE_FIXED)
        return g->cfg.refine_c;
    return gen_refine_strength(sample_acc, way) * (g->cfg.refine_c / GEN_REFINE_C);
}

int generator_can_refine(const generator *g)
{
    return g->spec.nlayers == 1 && g->spec.layers[0].kind == TL_LINEAR;
}

/* Refinement (generator.h): each candidate's sample is scored, kept, and
 * replaced by the head logistic regression finds with the sample as its
 * prior's centre; theta [K, P] (P of the heads' spec hs) follows. */
static int refine_candidates(const generator *g, const target_spec *hs, const dataset *feat,
                             int K, gen_candidate *cand, float *theta, d2_error *err)
{
    const target_layer *L = &hs->layers[0];
    const int N = L->out;
    const size_t bytes = hs->numel * sizeof(float);
    for (int k = 0; k < K; k++) {
        gen_candidate *c = &cand[k];
        float loss;
        int rc;
        if (!(c->sample = malloc(bytes)))
            return d2_fail(err, D2_ENOMEM, "out of memory");
        memcpy(c->sample, c->theta, bytes);
        if ((rc = target_eval(hs, c->sample, feat, &c->sample_acc, &loss, err)))
            return rc;
        const double C = generator_refine_c(g, c->sample_acc, N);
        if (C > 0.0 && (rc = baseline_logreg_head_prior(feat, N, C,
                                                        c->sample + L->w_off, c->sample + L->b_off,
                                                        c->theta + L->w_off, c->theta + L->b_off,
                                                        err)))
            return rc;
        memcpy(theta + (size_t)k * hs->numel, c->theta, bytes);
    }
    return 0;
}

static int check_request(const generator *g, const gen_workspace *ws, const gen_request *req,
                         d2_error *err)
{
    int rc;
    if ((rc = generator_check_support(g, req->support, req->embeddings, err)))
        return rc;
    if (req->candidates < 1 || req->candidates > ws->max_candidates)
        return d2_fail(err, D2_ERANGE, "candidates = %d outside 1..%d", req->candidates,
                       ws->max_candidates);
    if (req->steps < 1 || req->steps > g->cfg.T)
        return d2_fail(err, D2_ERANGE, "steps = %d outside 1..%d", req->steps, g->cfg.T);
    if (!isfinite(req->guidance) || req->guidance < 0.0f || req->guidance > 20.0f)
        return d2_fail(err, D2_ERANGE, "guidance = %g outside 0..20", (double)req->guidance);
    if (req->sampler != GEN_SAMPLER_DDIM && req->sampler != GEN_SAMPLER_DDPM)
        return d2_fail(err, D2_EINVAL, "unknown sampler");
    return 0;
}

/* Decode K latents z [K, L] into the K candidates' heads of spec hs: theta
 * [K, hs->numel] (host), each candidate's own copy in cand[k].theta. An
 * any-way generator decodes all its rows and keeps the first hs's. */
static int decode_candidates(const generator *g, gen_workspace *ws, const target_spec *hs,
                             const float *z, int K, float *theta, gen_candidate *cand,
                             d2_error *err)
{
    const size_t P = hs->numel, PW = (size_t)g->cfg.P;
    float *wide = P == PW ? theta : malloc((size_t)K * PW * sizeof(float));
    if (!wide)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    int rc = gen_decode_latents(g, ws->be, &ws->ar, z, K, wide, err);
    for (int k = 0; k < K && !rc; k++) {
        if (wide != theta)
            target_theta_narrow(&g->spec, hs, wide + k * PW, theta + k * P);
        cand[k].index = k;
        if (!(cand[k].theta = malloc(P * sizeof(float))))
            rc = d2_fail(err, D2_ENOMEM, "out of memory");
        else
            memcpy(cand[k].theta, theta + k * P, P * sizeof(float));
    }
    if (wide != theta)
        free(wide);
    return rc;
}

static void candidates_free(gen_candidate *cand, int K)
{
    for (int k = 0; cand && k < K; k++) {
        free(cand[k].theta);
        free(cand[k].sample);
    }
    free(cand);
}

/* Rank the K candidates into out, then the gate (or not). */
static int finish_result(const generator *g, gen_workspace *ws, const gen_request *req,
                         const dataset *feat, const int *counts, const float *cond,
                         gen_candidate *cand, gen_result *out, d2_error *err)
{
    const int K = req->candidates;
    qsort(cand, (size_t)K, sizeof *cand, cmp_candidates);
    out->count = K;
    out->ranked = cand;
    if (!req->gate) {
        gen_gate_off(g, cond, &out->gate);
        return 0;
    }
    int rc = gen_gate_run(g, ws, req, feat, counts, cond, out, err);
    if (rc)
        gen_result_free(out);
    return rc;
}

int generator_generate(const generator *g, gen_workspace *ws, const gen_request *req,
                       gen_result *out, d2_error *err)
{
    memset(out, 0, sizeof *out);
    double t0 = d2_now();
    int rc = check_request(g, ws, req, err);
    if (rc)
        return rc;
    const int K = req->candidates, L = g->cfg.latent, W = g->cfg.way;
    dataset feat = {0};
    int counts[D2_MAX_WAY];
    float *cond = malloc((size_t)gen_cond_len(&g->cfg) * sizeof(float));
    float *z = malloc((size_t)K * L * sizeof(float));
    float *theta = NULL;
    gen_candidate *cand = calloc((size_t)K, sizeof *cand);
    if (!cond || !z || !cand) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
        goto fail;
    }
    gen_request first = *req; // with the gate, the sampling below is part 0 of 1 + folds
    gen_progress_span span = {req->progress, req->progress_ctx, 0.0f, 1.0f};
    if ((rc = support_features(g, ws->be, req->support, req->embeddings, &feat, counts, err)) ||
        (rc = gen_head_spec(g, feat.classes, &out->spec, err)))
        goto fail;
    out->way = feat.classes;
    if (!(theta = malloc((size_t)K * out->spec.numel * sizeof(float)))) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
        goto fail;
    }
    if (req->progress && req->gate) {
        span.hi = 1.0f / (float)(1 + gen_gate_folds(g, counts, out->way));
        first.progress = gen_progress_span_fn;
        first.progress_ctx = &span;
    }
    if ((rc = gen_encode_support(g, ws->be, &ws->ar, feat.x, counts, W, cond, err)) ||
        (rc = sample_latents(g, ws, &first, cond, z, err)) ||
        (rc = decode_candidates(g, ws, &out->spec, z, K, theta, cand, err)))
        goto fail;
    if (req->refine && generator_can_refine(g) &&
        (rc = refine_candidates(g, &out->spec, &feat, K, cand, theta, err)))
        goto fail;
    if ((rc = score_candidates(g, ws->be, &out->spec, &feat, theta, K, cand, err)))
        goto fail;
    rc = finish_result(g, ws, req, &feat, counts, cond, cand, out, err);
    cand = NULL; // out owns them now (or freed them)
    if (rc)
        goto fail;
    dataset_fingerprint(req->support, out->dataset_fingerprint);
    out->seconds = d2_now() - t0;
    if (req->progress)
        req->progress(req->progress_ctx, 1.0f);
    dataset_free(&feat);
    free(cond);
    free(z);
    free(theta);
    return 0;
fail:
    rc = backend_explain(ws->be, rc, err); /* a device fault, not its symptom */
    candidates_free(cand, K);
    dataset_free(&feat);
    free(cond);
    free(z);
    free(theta);
    if (!out->ranked)
        memset(out, 0, sizeof *out);
    return rc;
}

void gen_result_free(gen_result *r)
{
    if (!r)
        return;
    for (int k = 0; k < r->count; k++) {
        free(r->ranked[k].theta);
        free(r->ranked[k].sample);
    }
    free(r->ranked);
    memset(r, 0, sizeof *r);
}

static int meta_int(st_writer *w, const char *key, long long v, d2_error *err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return st_writer_meta(w, key, buf, err);
}

static int meta_float(st_writer *w, const char *key, double v, d2_error *err)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%.9g", v);
    return st_writer_meta(w, key, buf, err);
}

static json_t *json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* "d2nwg.gate": the gate's decision as one JSON object (see gate.h). */
static int gate_meta(st_writer *w, const gen_gate *gt, d2_error *err)
{
    json_t *o = json_pack(
        "{s:b,s:s,s:i,s:i,s:{s:o,s:o,s:o},s:s,s:o,s:o,s:b}", "applied", gt->applied, "chosen",
        gen_method_name(gt->chosen), "folds", gt->folds, "heldout", gt->heldout, "cv_accuracy",
        "diffusion", json_num(gt->cv_acc[GEN_METHOD_DIFFUSION]), "prototypes",
        json_num(gt->cv_acc[GEN_METHOD_PROTOTYPES]), "logreg",
        json_num(gt->cv_acc[GEN_METHOD_LOGREG]), "reason", gt->reason, "ood_distance",
        json_num(gt->ood_distance), "ood_percentile", json_num(gt->ood_percentile), "ood",
        gt->ood);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))
                   : NULL;
    json_decref(o);
    if (!text)
        return d2_fail(err, D2_ENOMEM, "checkpoint: out of memory for the gate's metadata");
    int rc = st_writer_meta(w, "d2nwg.gate", text, err);
    free(text);
    return rc;
}

int generator_checkpoint_bytes(const generator *g, const gen_request *req,
                               const gen_result *res, int rank, unsigned char **bytes,
                               size_t *len, d2_error *err)
{
    if (rank < 0 || rank >= res->count)
        return d2_fail(err, D2_ERANGE, "rank %d outside 0..%d", rank, res->count - 1);
    const gen_candidate *c = &res->ranked[rank];
    st_writer w;
    st_writer_init(&w);
    int rc;
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)req->seed);
    if ((rc = target_write_tensors(&res->spec, &g->fmap, c->theta, &w, err)) ||
        (rc = st_writer_meta(&w, "format", "pt", err)) ||
        (rc = st_writer_meta(&w, "d2nwg.spec", res->spec.text, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.generator", g->info.id, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.zoo_fingerprint", g->info.zoo_fingerprint, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.dataset", res->dataset_fingerprint, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.input", req->embeddings ? "embeddings" : "samples",
                             err)) ||
        (rc = st_writer_meta(&w, "d2nwg.seed", seed, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.sampler",
                             req->sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", err)) ||
        (rc = meta_int(&w, "d2nwg.steps", req->steps, err)) ||
        (rc = meta_float(&w, "d2nwg.guidance", req->guidance, err)) ||
        (rc = meta_int(&w, "d2nwg.candidates", req->candidates, err)) ||
        (rc = meta_int(&w, "d2nwg.rank", rank, err)) ||
        (rc = meta_int(&w, "d2nwg.candidate_index", c->index, err)) ||
        (rc = meta_float(&w, "d2nwg.support_accuracy", c->support_acc, err)) ||
        (rc = meta_float(&w, "d2nwg.support_loss", c->support_loss, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.method", gen_method_name(c->method), err)) ||
        (rc = st_writer_meta(&w, "d2nwg.refine", c->sample ? "logreg_prior" : "none", err)) ||
        (rc = gate_meta(&w, &res->gate, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.version", D2_VERSION, err)))
        goto out;
    rc = st_writer_to_memory(&w, bytes, len, err);
out:
    st_writer_free(&w);
    return rc;
}

/* The k zoo entries nearest to cond by dataset embedding (partial selection
 * sort, k is small), each scored on the support set on the backend. */
static int retrieve_nearest(const generator *g, backend_t *be, const float *cond,
                            const dataset *feat, int k, gen_retrieval *hits, d2_error *err)
{
    const int C = g->cfg.cond_dim, N = g->cfg.way;
    float *dist = malloc((size_t)g->zoo_n * sizeof(float));
    int *order = malloc((size_t)g->zoo_n * sizeof(int));
    gen_scorer sc;
    int rc = 0;
    if (!dist || !order) {
        free(dist);
        free(order);
        return d2_fail(err, D2_ENOMEM, "out of memory");
    }
    if ((rc = gen_scorer_init(&sc, be, &g->spec, feat, err))) {
        free(dist);
        free(order);
        return rc;
    }
    for (int i = 0; i < g->zoo_n; i++) {
        double d = 0;
        const float *e = g->zoo_emb + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            double x = (double)cond[j] - e[j];
            d += x * x;
        }
        dist[i] = (float)sqrt(d);
        order[i] = i;
    }
    for (int a = 0; a < k && !rc; a++) {
        int best = a;
        for (int b = a + 1; b < g->zoo_n; b++)
            if (dist[order[b]] < dist[order[best]] ||
                (dist[order[b]] == dist[order[best]] && order[b] < order[best]))
                best = b;
        int t = order[a];
        order[a] = order[best];
        order[best] = t;
        gen_retrieval *h = &hits[a];
        memset(h, 0, sizeof *h);
        h->zoo_index = order[a];
        h->distance = dist[order[a]];
        h->way = gen_zoo_entry_way(g, order[a]);
        for (int c = 0; c < h->way; c++)
            h->classes[c] = g->zoo_classes[(size_t)order[a] * N + c];
        float loss;
        rc = gen_scorer_run(&sc, g->zoo_theta + (size_t)order[a] * g->cfg.P, &h->support_acc,
                            &loss, err);
    }
    gen_scorer_free(&sc);
    free(dist);
    free(order);
    return rc;
}

int generator_retrieve(const generator *g, gen_workspace *ws, const dataset *support,
                       int embeddings, int k, gen_retrieval *hits, int *nhits, d2_error *err)
{
    *nhits = 0;
    int rc;
    if ((rc = generator_check_support(g, support, embeddings, err)))
        return rc;
    if (g->zoo_n <= 0)
        return d2_fail(err, D2_ENOTFOUND, "this generator bundle has no zoo index");
    if (k < 1)
        return d2_fail(err, D2_ERANGE, "k must be >= 1");
    if (k > g->zoo_n)
        k = g->zoo_n;
    const int N = g->cfg.way;
    dataset feat = {0};
    int counts[D2_MAX_WAY];
    float *cond = malloc((size_t)gen_cond_len(&g->cfg) * sizeof(float));
    if (!cond)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    if (!(rc = support_features(g, ws->be, support, embeddings, &feat, counts, err)) &&
        !(rc = gen_encode_support(g, ws->be, &ws->ar, feat.x, counts, N, cond, err)) &&
        !(rc = retrieve_nearest(g, ws->be, cond, &feat, k, hits, err)))
        *nhits = k;
    dataset_free(&feat);
    free(cond);
    return rc;
}

int generator_vae_roundtrip(const generator *g, gen_workspace *ws, const float *theta, int n,
                            float *out, d2_error *err)
{
    backend_t *be = ws->be;
    const wtok *tk = &g->tok;
    const int P = g->cfg.P, L = g->cfg.latent, l = g->cfg.tok_latent;
    const int in = tk->len + tk->n_layers;
    arena *ar = &ws->ar;
    int rc = 0;
    float *xn = malloc((size_t)P * sizeof(float));
    float *tokens = malloc((size_t)tk->n_tok * in * sizeof(float));
    float *enc = malloc((size_t)tk->n_tok * 2 * l * sizeof(float));
    float *z = malloc((size_t)L * sizeof(float));
    if (!xn || !tokens || !enc || !z) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n && !rc; i++) {
        for (int j = 0; j < P; j++)
            xn[j] = (theta[(size_t)i * P + j] - g->w_mean[j]) / g->w_std[j];
        wtok_split(tk, xn, 1, tokens);
        size_t mark = arena_mark(ar);
        float *xd = arena_floats(ar, (size_t)tk->n_tok * in);
        resmlp_cache c;
        if (!xd)
            rc = d2_fail(err, D2_ENOMEM, "scratch memory is full");
        else if (be->ops->to_device(be, xd, tokens, (size_t)tk->n_tok * in * sizeof(float)))
            rc = d2_fail(err, D2_EDEVICE, "cannot upload weights");
        else if (!(rc = resmlp_forward(be, &g->vae_enc, &g->vae_ps, ar, &c, xd, tk->n_tok, err)) &&
                 be->ops->to_host(be, enc, c.y, (size_t)tk->n_tok * 2 * l * sizeof(float)))
            rc = d2_fail(err, D2_EDEVICE, "cannot read latents");
        arena_reset(ar, mark);
        if (rc)
            break;
        // the mean of each token's posterior, standardised like the diffusion's latents
        for (int t = 0; t < tk->n_tok; t++)
            for (int j = 0; j < l; j++) {
                int k = t * l + j;
                z[k] = (enc[(size_t)t * 2 * l + j] - g->z_mean[k]) / g->z_std[k];
            }
        rc = gen_decode_latents(g, be, ar, z, 1, out + (size_t)i * P, err);
    }
out:
    free(xn);
    free(tokens);
    free(enc);
    free(z);
    return rc;
}

const feature_map *generator_feature_map(const generator *g)
{
    return &g->fmap;
}

int generator_zoo_theta(const generator *g, int index, float *theta, d2_error *err)
{
    if (index < 0 || index >= g->zoo_n)
        return d2_fail(err, D2_ERANGE, "zoo index %d outside 0..%d", index, g->zoo_n - 1);
    memcpy(theta, g->zoo_theta + (size_t)index * g->cfg.P, (size_t)g->cfg.P * sizeof(float));
    return 0;
}
