/* lm_model.c - the language model's configuration, tensors (GPT-2 names and
 * initialisation), LoRA adapters and their merge (lm.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lm_internal.h"

lm_config lm_config_default(void)
{
    lm_config c = {.layers = 4, .width = 128, .heads = 4, .context = 32};
    return c;
}

lm_lora_cfg lm_lora_default(void)
{
    lm_lora_cfg c = {.rank = 4, .alpha = 8.0f, .mlp = 0};
    return c;
}

int lm_config_check(const lm_config *c, d2_error *err)
{
    if (c->layers < 1 || c->layers > LM_MAX_LAYERS)
        return d2_fail(err, D2_EINVAL, "layers must be in 1..%d (got %d)", LM_MAX_LAYERS,
                       c->layers);
    if (c->width < 1 || c->width > 4096)
        return d2_fail(err, D2_EINVAL, "width must be in 1..4096 (got %d)", c->width);
    if (c->heads < 1 || c->width % c->heads)
        return d2_fail(err, D2_EINVAL, "heads (%d) must divide width (%d)", c->heads,
                       c->width);
    if (c->context < 2 || c->context > LM_MAX_CONTEXT)
        return d2_fail(err, D2_EINVAL, "context must be in 2..%d (got %d)", LM_MAX_CONTEXT,
                       c->context);
    return 0;
}

static int lm_add(paramset *ps, const char *name, int64_t d0, int64_t d1, param_init init,
                  float scale, size_t *off, d2_error *err)
{
    int64_t shape[2] = {d0, d1};
    return paramset_add(ps, name, d1 ? 2 : 1, shape, init, scale, off, err);
}

/* "<prefix>.weight" [out, in] N(0, std) and "<prefix>.bias" [out] zeros */
static int lm_linear(linear *l, paramset *ps, const char *prefix, int in, int out, int bias,
                     float std, d2_error *err)
{
    char name[PARAM_NAME_LEN];
    l->in = in;
    l->out = out;
    l->has_bias = bias;
    l->b = 0;
    snprintf(name, sizeof name, "%s.weight", prefix);
    int rc = lm_add(ps, name, out, in, INIT_NORMAL, std, &l->w, err);
    if (!rc && bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        rc = lm_add(ps, name, out, 0, INIT_ZEROS, 0.0f, &l->b, err);
    }
    return rc;
}

static int lm_block_init(lm_block *k, paramset *ps, int l, const lm_config *c, d2_error *err)
{
    const int W = c->width;
    const float std = 0.02f, res = 0.02f / sqrtf(2.0f * (float)c->layers);
    char p[PARAM_NAME_LEN];
    int rc;
#define LM_NAME(fmt) snprintf(p, sizeof p, "transformer.h.%d." fmt, l)
    if ((LM_NAME("ln_1"), rc = layernorm_init(&k->ln1, ps, p, W, 1, err)) ||
        (LM_NAME("attn.q_proj"), rc = lm_linear(&k->q.base, ps, p, W, W, 1, std, err)) ||
        (LM_NAME("attn.k_proj"), rc = lm_linear(&k->k.base, ps, p, W, W, 1, std, err)) ||
        (LM_NAME("attn.v_proj"), rc = lm_linear(&k->v.base, ps, p, W, W, 1, std, err)) ||
        (LM_NAME("attn.o_proj"), rc = lm_linear(&k->o.base, ps, p, W, W, 1, res, err)) ||
        (LM_NAME("ln_2"), rc = layernorm_init(&k->ln2, ps, p, W, 1, err)) ||
        (LM_NAME("mlp.fc_in"), rc = lm_linear(&k->fc_in.base, ps, p, W, 4 * W, 1, std, err)) ||
        (LM_NAME("mlp.fc_out"), rc = lm_linear(&k->fc_out.base, ps, p, 4 * W, W, 1, res, err)))
        return rc;
#undef LM_NAME
    return 0;
}

int lm_init(lm_model *m, paramset *ps, const lm_config *cfg, d2_error *err)
{
    int rc = lm_config_check(cfg, err);
    if (rc)
        return rc;
    *m = (lm_model){.cfg = *cfg, .ps = ps};
    const int W = cfg->width;
    if ((rc = lm_add(ps, "transformer.wte.weight", LM_VOCAB_IN, W, INIT_NORMAL, 0.02f, &m->wte,
                     err)) ||
        (rc = lm_add(ps, "transformer.wpe.weight", cfg->context, W, INIT_NORMAL, 0.01f,
                     &m->wpe, err)))
        return rc;
    for (int l = 0; l < cfg->layers; l++)
        if ((rc = lm_block_init(&m->blk[l], ps, l, cfg, err)))
            return rc;
    if ((rc = layernorm_init(&m->lnf, ps, "transformer.ln_f", W, 1, err)))
        return rc;
    return lm_linear(&m->head, ps, "lm_head", W, LM_VOCAB_OUT, 0, 0.02f, err);
}

lm_proj *lm_lora_target(lm_model *m, int l, int t, int mlp, char *name, size_t cap)
{
    static const char *const mods[] = {"attn.q_proj", "attn.v_proj", "mlp.fc_in",
                                       "mlp.fc_out"};
    if (l < 0 || l >= m->cfg.layers || t < 0 || t >= (mlp ? 4 : 2))
        return NULL;
    lm_block *k = &m->blk[l];
    lm_proj *p[] = {&k->q, &k->v, &k->fc_in, &k->fc_out};
    if (name)
        snprintf(name, cap, "transformer.h.%d.%s", l, mods[t]);
    return p[t];
}

int lm_attach_lora(lm_model *m, paramset *lora, const lm_lora_cfg *lc, d2_error *err)
{
    if (lc->rank < 1 || lc->rank > 256)
        return d2_fail(err, D2_EINVAL, "LoRA rank must be in 1..256 (got %d)", lc->rank);
    if (!(lc->alpha > 0.0f) || !isfinite(lc->alpha))
        return d2_fail(err, D2_EINVAL, "LoRA alpha must be positive");
    m->lora = lora;
    char mod[PARAM_NAME_LEN], name[PARAM_NAME_LEN + 32];
    for (int l = 0; l < m->cfg.layers; l++) {
        lm_proj *p;
        for (int t = 0; (p = lm_lora_target(m, l, t, lc->mlp, mod, sizeof mod)); t++) {
            p->lora = 1;
            p->rank = lc->rank;
            p->scale = lc->alpha / (float)lc->rank;
            int rc;
            snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", mod);
            if ((rc = lm_add(lora, name, lc->rank, p->base.in, INIT_KAIMING, 1.0f, &p->A, err)))
                return rc;
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", mod);
            if ((rc = lm_add(lora, name, p->base.out, lc->rank, INIT_ZEROS, 0.0f, &p->B, err)))
                return rc;
        }
    }
    return 0;
}

int lm_merge_lora(lm_model *m, d2_error *err)
{
    backend_t *be = m->ps->be;
    for (int l = 0; l < m->cfg.layers; l++) {
        lm_proj *p;
        for (int t = 0; (p = lm_lora_target(m, l, t, 1, NULL, 0)); t++) {
            if (!p->lora)
                continue;
            // W [out, in] += scale * B [out, r] A [r, in]
            be->ops->gemm(be, 0, 0, p->base.out, p->base.in, p->rank, p->scale,
                          m->lora->w + p->B, p->rank, m->lora->w + p->A, p->base.in, 1.0f,
                          m->ps->w + p->base.w, p->base.in);
            p->lora = 0;
        }
    }
    m->lora = NULL;
    if (be->ops->sync(be))
        return d2_fail(err, D2_EDEVICE, "merging LoRA: %s", backend_error_message(be));
    return 0;
}
