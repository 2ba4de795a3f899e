/* setenc.h - the dataset encoder: a Set Transformer per class, then across
 * the classes in label order.
 *
 *   X: [B*N sets, K samples, F] (B tasks, N classes each, K shots per class)
 *   h   = fin(X)                                  [B*N, K, d]
 *   h   = ISAB2(ISAB1(h))                         per class, over its K samples
 *   tok = PMA_1(h) + fmean(mean_k X)              [B*N, d] one token per class
 *   tok = tok + pos[label]                        keeps which row is which label
 *   tok = SAB(tok)                                [B, N, d] across the classes
 *   cond = fout(flatten(tok))                     [B, cond_dim]
 *
 * Any-way encoders (cfg.absent): a task of n < N classes fills slots n..N-1
 * with a learned token "<name>.absent" [d] in place of PMA + fmean (then
 * + pos as every slot), so one encoder reads 2..N classes and the generated
 * head's rows n.. are what the generator learned for absent classes.
 *
 * Per-class encoders (cfg.per_class) stop before the flatten: no position
 * embedding (so the encoder is permutation-equivariant across classes) and
 * fout applied to each class token, cond = [B, N, cond_dim], one condition per
 * class for a denoiser that generates each row of the head from its own
 * class's token (the context of the other classes enters through SAB).
 *
 * The paper pools the classes into one vector; keeping the class tokens in
 * label order (position embedding + flatten) keeps row i of the generated head
 * tied to label i (DESIGN section 3). The class-mean path gives the encoder
 * the prototype directly; the attention path learns what else matters. */
#ifndef D2_SETENC_H
#define D2_SETENC_H

#include "attention.h"

typedef struct setenc_cfg {
    int feat_dim;  /* F */
    int d;         /* token width */
    int heads;
    int inducing;  /* ISAB inducing points */
    int way;       /* N (classes per task; with absent, the most) */
    int cond_dim;
    int absent;    /* 1: tasks may have fewer classes (the "absent" token) */
    int per_class; /* 1: one condition per class, [N, cond_dim] per task */
} setenc_cfg;

typedef struct setenc {
    setenc_cfg cfg;
    linear fin, fmean, fout;
    isab i1, i2;
    pma p;
    sab s;
    size_t pos; /* "<name>.pos" [way, d] (pooled encoders only) */
    size_t absent; /* "<name>.absent" [d] (cfg.absent only) */
} setenc;

typedef struct setenc_cache {
    int B, N, K;
    const float *X;
    const int *ways;  /* [B] classes present per task (host, the caller's); NULL: N */
    float *h0;        /* [B*N*K, d] */
    isab_cache c1, c2;
    pma_cache cp;
    float *ones;      /* [K] of 1/K */
    float *xm;        /* [B*N, F] class means */
    float *tok;       /* [B*N, d] */
    sab_cache cs;
    float *cond;      /* [B, setenc_cond_len] */
} setenc_cache;

/* Floats of one task's condition: cond_dim, or way * cond_dim per class. */
static inline int setenc_cond_len(const setenc_cfg *cfg)
{
    return cfg->per_class ? cfg->way * cfg->cond_dim : cfg->cond_dim;
}

int setenc_init(setenc *e, paramset *ps, const char *name, const setenc_cfg *cfg, d2_error *err);
/* X: [B*N*K, F] device -> c->cond [B, setenc_cond_len]. ways (host, may be NULL:
 * every task has N classes): task b has classes 0..ways[b]-1, the rows of
 * the others are read but stand for nothing (an any-way encoder's absent
 * token replaces them). The array must live until setenc_backward. */
int setenc_forward(backend_t *be, const setenc *e, const paramset *ps, arena *ar,
                   setenc_cache *c, const float *X, int B, int N, int K, const int *ways,
                   d2_error *err);
/* dcond: [B, setenc_cond_len]; parameter gradients += */
int setenc_backward(backend_t *be, const setenc *e, paramset *ps, arena *ar,
                    const setenc_cache *c, const float *dcond, d2_error *err);



/* Inference on one support set whose classes may have different sizes:
 * X: [n, F] device rows sorted by class, counts[N] (host) rows per class
 * (an any-way encoder takes counts[c] = 0 for the absent classes c >= n);
 * writes cond [setenc_cond_len] (device). Uses the arena for temporaries. */
int setenc_encode_ragged(backend_t *be, const setenc *e, const paramset *ps, arena *ar,
                         const float *X, const int *counts, int N, float *cond, d2_error *err);
#endif
