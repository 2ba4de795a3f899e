/* diffusion.h - noise schedule and samplers for eps-prediction diffusion.
 *
 * Forward process: z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps, t = 0..T-1,
 * ab_t = prod_{s<=t} (1 - beta_s), beta linear from beta_start to beta_end
 * (the paper's latent diffusion code: T = 1000, 1e-4 .. 2e-2).
 *
 * Sampling (DDIM, Song et al. 2021) over a strided subsequence of timesteps
 * tau_1 > ... > tau_S; with eta = 0 it is deterministic; eta = 1 gives the
 * ancestral DDPM sampler on the same subsequence:
 *   z0_hat = (z - sqrt(1 - ab_t) eps) / sqrt(ab_t)
 *   sigma  = eta * sqrt((1 - ab_p) / (1 - ab_t)) * sqrt(1 - ab_t / ab_p)
 *   z'     = sqrt(ab_p) z0_hat + sqrt(1 - ab_p - sigma^2) eps + sigma noise
 * which is z' = a z + b eps + sigma noise with the coefficients below. */
#ifndef D2_DIFFUSION_H
#define D2_DIFFUSION_H

#include "common.h"

#define DIFFUSION_MAX_T 4000

typedef struct diffusion_schedule {
    int T;
    float beta_start, beta_end;
    double alpha_bar[DIFFUSION_MAX_T];
} diffusion_schedule;

int diffusion_schedule_init(diffusion_schedule *s, int T, float beta_start, float beta_end,
                            d2_error *err);

/* Timesteps of an S-step sampler, descending: tau[i] = floor((S-1-i) * T / S) + offset
 * such that tau[0] is near T-1 and tau[S-1] = 0. */
int diffusion_timesteps(const diffusion_schedule *s, int steps, int *tau, d2_error *err);

typedef struct ddim_coef {
    float a;      /* coefficient of z */
    float b;      /* coefficient of eps */
    float sigma;  /* noise scale */
} ddim_coef;

/* Step from timestep t to t_prev (t_prev < 0: to the clean sample). */
ddim_coef diffusion_ddim_coef(const diffusion_schedule *s, int t, int t_prev, float eta);

#endif
