/* optim.h - AdamW over a paramset, gradient clipping, EMA, and the learning
 * rate schedule (linear warm-up, then cosine decay to min_lr_ratio * lr). */
#ifndef D2_OPTIM_H
#define D2_OPTIM_H

#include "params.h"

typedef struct adamw_cfg {
    float lr;
    float beta1, beta2, eps;
    float weight_decay;
    float clip_norm;     /* <= 0: no clipping */
    int warmup_steps;
    int total_steps;     /* cosine horizon; <= 0: constant after warm-up */
    float min_lr_ratio;  /* final lr = lr * min_lr_ratio */
} adamw_cfg;

/* Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01, clip 1.0, no warm-up. */
adamw_cfg adamw_defaults(void);

/* Learning rate at step (0-based). */
float lr_at(const adamw_cfg *cfg, int step);

/* One AdamW update of ps->w from ps->g (step is 0-based; bias correction uses
 * step+1). Clips the global gradient norm to cfg->clip_norm first. *grad_norm
 * (may be NULL) receives the norm before clipping. Needs paramset_alloc_optim. */
int optim_adamw_step(paramset *ps, const adamw_cfg *cfg, int step, float *grad_norm,
                     d2_error *err);

/* ps->ema = decay * ps->ema + (1 - decay) * ps->w. Needs paramset_alloc_ema. */
void optim_ema_update(paramset *ps, float decay);

#endif
