/* denoiser.h - the latent diffusion denoiser: residual MLP blocks on the
 * latent with adaLN-Zero modulation from the timestep embedding plus the
 * dataset condition (DiT-style, for vectors), predicting the noise eps.
 *
 *   e  = t2 silu(t1 temb(t))  +  cproj(cond)            [S, Hc]
 *   s  = silu(e)
 *   x  = fin(z_t)                                       [R, H]
 *   block i: (shift, scale, gate) = mod_i(s)            [S, 3H]
 *            x = x + gate * fc2 silu(fc1 (LN(x) * (1 + scale) + shift))
 *   (shift, scale) = fmod(s);  eps = fout(LN(x) * (1 + scale) + shift)   [R, L]
 *
 * Rows are grouped: R = S * G and data row r uses condition row r / G, so a
 * sampling pass computes the modulation once per (timestep, condition) and
 * shares it across its G candidates. Training uses G = 1. mod_i, fmod and fout
 * start at zero (adaLN-Zero), so the network starts as the identity path. */
#ifndef D2_DENOISER_H
#define D2_DENOISER_H

#include "layers.h"

#define DENOISER_MAX_BLOCKS 12

typedef struct denoiser_cfg {
    int latent;     /* L */
    int hidden;     /* H (also the embedding width Hc) */
    int mlp_ratio;  /* fc1: H -> ratio*H */
    int blocks;
    int cond_dim;   /* dataset condition width */
    int temb_dim;   /* sinusoidal timestep features */
} denoiser_cfg;

typedef struct denoiser {
    denoiser_cfg cfg;
    linear t1, t2, cproj, fin, fmod, fout;
    linear mod[DENOISER_MAX_BLOCKS], fc1[DENOISER_MAX_BLOCKS], fc2[DENOISER_MAX_BLOCKS];
    size_t null_cond; /* "<name>.null_cond" [cond_dim]: the dropped condition (guidance) */
} denoiser;

typedef struct denoiser_cache {
    int S, G, R;
    const float *z, *temb, *cond;
    float *te1, *te1a, *e, *s;              /* [S, H] */
    float *x[DENOISER_MAX_BLOCKS + 1];      /* [R, H] block inputs; x[n] last */
    float *mod[DENOISER_MAX_BLOCKS];        /* [S, 3H] */
    float *ln[DENOISER_MAX_BLOCKS], *mean[DENOISER_MAX_BLOCKS], *rstd[DENOISER_MAX_BLOCKS];
    float *m[DENOISER_MAX_BLOCKS];          /* [R, H] modulated */
    float *a1[DENOISER_MAX_BLOCKS], *s1[DENOISER_MAX_BLOCKS]; /* [R, rH] */
    float *a2[DENOISER_MAX_BLOCKS];         /* [R, H] */
    float *fm, *lnf, *meanf, *rstdf, *mf;
    float *eps;                             /* [R, L] output */
} denoiser_cache;

int denoiser_init(denoiser *d, paramset *ps, const char *name, const denoiser_cfg *cfg,
                  d2_error *err);
/* Sinusoidal features of timesteps t[S] (host) -> out[S, temb_dim] (host). */
void denoiser_timestep_features(int temb_dim, const int *t, int S, float *out);
/* z: [S*G, L], temb: [S, temb_dim], cond: [S, cond_dim] (device) -> c->eps */
int denoiser_forward(backend_t *be, const denoiser *d, const paramset *ps, arena *ar,
                     denoiser_cache *c, const float *z, const float *temb, const float *cond,
                     int S, int G, d2_error *err);
/* G must be 1. deps: [S, L]; dcond: [S, cond_dim] += (may be NULL) */
int denoiser_backward(backend_t *be, const denoiser *d, paramset *ps, arena *ar,
                      const denoiser_cache *c, const float *deps, float *dcond,
                      d2_error *err);

#endif
