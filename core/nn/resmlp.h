/* resmlp.h - residual MLP: the body of the weight VAE's encoder and decoder.
 *
 *   h = x Win^T + bin                                  x: [B, in] -> h: [B, H]
 *   blocks i = 1..n:  h = h + W2 silu(W1 LN_i(h) + b1) + b2     (H -> H -> H)
 *   y = LN_f(h) Wout^T + bout                          -> y: [B, out]
 *
 * Every intermediate lives in the arena until the caller resets it, so the
 * backward pass can use them. */
#ifndef D2_RESMLP_H
#define D2_RESMLP_H

#include "layers.h"

#define RESMLP_MAX_BLOCKS 8

typedef struct resmlp {
    int in, hidden, out, blocks;
    linear fin, fout;
    layernorm ln[RESMLP_MAX_BLOCKS];
    linear fc1[RESMLP_MAX_BLOCKS], fc2[RESMLP_MAX_BLOCKS];
    layernorm lnf;
} resmlp;

typedef struct resmlp_cache {
    int B;
    const float *x;                     /* [B, in] (caller's) */
    float *h[RESMLP_MAX_BLOCKS + 1];    /* [B, H] input of block i; h[n] = last */
    float *ln[RESMLP_MAX_BLOCKS];       /* [B, H] */
    float *mean[RESMLP_MAX_BLOCKS], *rstd[RESMLP_MAX_BLOCKS]; /* [B] */
    float *a1[RESMLP_MAX_BLOCKS];       /* [B, H] fc1 output (pre-activation) */
    float *s1[RESMLP_MAX_BLOCKS];       /* [B, H] silu(a1) */
    float *lnf, *meanf, *rstdf;
    float *y;                           /* [B, out] */
} resmlp_cache;

/* out_scale scales the initial output weights (small values start the residual
 * stream near its input). */
int resmlp_init(resmlp *m, paramset *ps, const char *name, int in, int hidden, int out,
                int blocks, float out_scale, d2_error *err);
int resmlp_forward(backend_t *be, const resmlp *m, const paramset *ps, arena *ar,
                   resmlp_cache *c, const float *x, int B, d2_error *err);
/* dy: [B, out]; dx: [B, in] += (NULL: not needed); parameter gradients += */
int resmlp_backward(backend_t *be, const resmlp *m, paramset *ps, arena *ar,
                    const resmlp_cache *c, float *dx, const float *dy, d2_error *err);

#endif
