/* diffusion.c - linear-beta schedule and DDIM/DDPM step coefficients. */
#include "diffusion.h"

#include <math.h>

int diffusion_schedule_init(diffusion_schedule *s, int T, float beta_start, float beta_end,
                            d2_error *err)
{
    if (T < 2 || T > DIFFUSION_MAX_T)
        return d2_fail(err, D2_ERANGE, "diffusion: T = %d outside 2..%d", T, DIFFUSION_MAX_T);
    if (!(beta_start > 0.0f) || !(beta_end >= beta_start) || !(beta_end < 1.0f))
        return d2_fail(err, D2_ERANGE, "diffusion: betas must satisfy 0 < %g <= %g < 1",
                       (double)beta_start, (double)beta_end);
    s->T = T;
    s->beta_start = beta_start;
    s->beta_end = beta_end;
    double ab = 1.0;
    for (int t = 0; t < T; t++) {
        double beta = (double)beta_start +
                      ((double)beta_end - (double)beta_start) * (double)t / (double)(T - 1);
        ab *= 1.0 - beta;
        s->alpha_bar[t] = ab;
    }
    return 0;
}

int diffusion_timesteps(const diffusion_schedule *s, int steps, int *tau, d2_error *err)
{
    if (steps < 1 || steps > s->T)
        return d2_fail(err, D2_ERANGE, "steps = %d outside 1..%d", steps, s->T);
    // evenly spaced, descending, ending at 0: tau[i] = round((S-1-i) * (T-1) / (S-1))
    for (int i = 0; i < steps; i++) {
        if (steps == 1) {
            tau[i] = s->T - 1;
        } else {
            double v = (double)(steps - 1 - i) * (double)(s->T - 1) / (double)(steps - 1);
            tau[i] = (int)floor(v + 0.5);
        }
    }
    return 0;
}

ddim_coef diffusion_ddim_coef(const diffusion_schedule *s, int t, int t_prev, float eta)
{
    double ab_t = s->alpha_bar[t];
    double ab_p = t_prev >= 0 ? s->alpha_bar[t_prev] : 1.0;
    double sigma = 0.0;
    if (eta > 0.0f && t_prev >= 0)
        sigma = eta * sqrt((1.0 - ab_p) / (1.0 - ab_t)) * sqrt(1.0 - ab_t / ab_p);
    double dir = 1.0 - ab_p - sigma * sigma;
    if (dir < 0.0)
        dir = 0.0;
    ddim_coef c;
    // z' = sqrt(ab_p) (z - sqrt(1-ab_t) eps) / sqrt(ab_t) + sqrt(dir) eps + sigma noise
    c.a = (float)(sqrt(ab_p) / sqrt(ab_t));
    c.b = (float)(sqrt(dir) - sqrt(ab_p) * sqrt(1.0 - ab_t) / sqrt(ab_t));
    c.sigma = (float)sigma;
    return c;
}
