/* optim.c - AdamW with global-norm clipping, EMA, and the warm-up + cosine schedule. */
#include "optim.h"

#include <math.h>

adamw_cfg adamw_defaults(void)
{
    adamw_cfg c = {
        .lr = 1e-3f,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
        .weight_decay = 0.01f,
        .clip_norm = 1.0f,
        .warmup_steps = 0,
        .total_steps = 0,
        .min_lr_ratio = 0.0f,
    };
    return c;
}

/* warm-up: lr * (step + 1) / warmup for step < warmup (so the first step is not 0);
 * then cosine from lr down to lr * min_lr_ratio at step total_steps, constant after. */
float lr_at(const adamw_cfg *cfg, int step)
{
    double lr = cfg->lr;
    if (step < 0)
        step = 0;
    if (cfg->warmup_steps > 0 && step < cfg->warmup_steps)
        return (float)(lr * (double)(step + 1) / (double)cfg->warmup_steps);
    int decay_steps = cfg->total_steps - (cfg->warmup_steps > 0 ? cfg->warmup_steps : 0);
    if (cfg->total_steps <= 0 || decay_steps <= 0)
        return (float)lr;
    double progress = (double)(step - (cfg->warmup_steps > 0 ? cfg->warmup_steps : 0)) /
                      (double)decay_steps;
    if (progress > 1.0)
        progress = 1.0;
    double lo = lr * cfg->min_lr_ratio;
    return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(M_PI * progress)));
}

int optim_adamw_step(paramset *ps, const adamw_cfg *cfg, int step, float *grad_norm,
                     d2_error *err)
{
    if (!ps->w || !ps->g || !ps->m || !ps->v)
        return d2_fail(err, D2_EINVAL,
                       "optim_adamw_step: moments missing (call paramset_alloc_optim)");
    if (step < 0)
        return d2_fail(err, D2_EINVAL, "optim_adamw_step: negative step %d", step);
    backend_t *be = ps->be;
    float gscale = 1.0f;
    if (cfg->clip_norm > 0.0f || grad_norm) {
        float sq = 0.0f;
        be->ops->sumsq(be, ps->scratch, ps->g, ps->total);
        int rc = be->ops->to_host(be, &sq, ps->scratch, sizeof sq);
        if (rc)
            return d2_fail(err, rc, "optim_adamw_step: reading the gradient norm failed");
        float norm = sqrtf(sq);
        if (grad_norm)
            *grad_norm = norm;
        if (!isfinite(norm))
            return d2_fail(err, D2_ERANGE,
                           "optim_adamw_step: gradient norm is %g at step %d (update skipped)",
                           (double)norm, step);
        /* as torch.nn.utils.clip_grad_norm_: scale by clip / (norm + 1e-6) when below 1 */
        if (cfg->clip_norm > 0.0f && norm > cfg->clip_norm)
            gscale = cfg->clip_norm / (norm + 1e-6f);
    }
    be->ops->adamw(be, ps->w, ps->g, ps->m, ps->v, ps->total, lr_at(cfg, step), cfg->beta1,
                   cfg->beta2, cfg->eps, cfg->weight_decay, step + 1, gscale);
    return 0;
}

void optim_ema_update(paramset *ps, float decay)
{
    if (ps->ema && ps->w)
        ps->be->ops->ema(ps->be, ps->ema, ps->w, ps->total, decay);
}
