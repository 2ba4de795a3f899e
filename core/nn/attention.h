/* attention.h - Set Transformer blocks (Lee et al. 2019), multi-head.
 *
 * MAB(X, Y), X: [B, Nx, dx], Y: [B, Ny, dy] -> [B, Nx, d]:
 *   Q = X Wq^T + bq, K = Y Wk^T + bk, V = Y Wv^T + bv          [B, N, d]
 *   split into `heads` heads of d/heads; A = softmax(Qh Kh^T / sqrt(d/heads))
 *   O = Q + merge(A Vh);  O = LN0(O);  O = O + relu(O Wo^T + bo);  out = LN1(O)
 *   (LN0/LN1 present when ln != 0, as in the paper's code with ln=True)
 * SAB(X)   = MAB(X, X)
 * ISAB(X)  = MAB1(X, H), H = MAB0(I, X), I: [m, d] learned inducing points
 * PMA_k(X) = MAB(S, X), S: [k, d] learned seeds
 *
 * Forward functions take their cache memory from the arena (return D2_ENOMEM
 * with a message when it is too small); backward functions accumulate (+=) into
 * dX / dY (which may be the same buffer, as for SAB) and into ps->g. The caller
 * keeps X and Y alive between forward and backward. */
#ifndef D2_ATTENTION_H
#define D2_ATTENTION_H

#include "layers.h"

typedef struct mab {
    int dx, dy, d, heads, ln;
    linear fq, fk, fv, fo;
    layernorm ln0, ln1;
} mab;

typedef struct mab_cache {
    int B, Nx, Ny;
    float *q, *k, *v;      /* [B, N, d] projections */
    float *qh, *kh, *vh;   /* [B, H, N, dh] */
    float *att;            /* [B, H, Nx, Ny] softmax output */
    float *oh;             /* [B, H, Nx, dh] att @ vh */
    float *o1;             /* [B, Nx, d] Q + merge(oh) (pre-LN0) */
    float *m0, *r0;        /* [B*Nx] LN0 stats */
    float *o2;             /* [B, Nx, d] after LN0 */
    float *f;              /* [B, Nx, d] fo pre-activation */
    float *o3;             /* [B, Nx, d] o2 + relu(f) (pre-LN1) */
    float *m1, *r1;        /* [B*Nx] LN1 stats */
    float *out;            /* [B, Nx, d] the block output (owned by the arena) */
} mab_cache;

int mab_init(mab *m, paramset *ps, const char *name, int dx, int dy, int d, int heads, int ln,
             d2_error *err);
/* the output is c->out: [B, Nx, d], in arena memory */
int mab_forward(backend_t *be, const mab *m, const paramset *ps, arena *ar, mab_cache *c,
                const float *X, int Nx, const float *Y, int Ny, int B, d2_error *err);
int mab_backward(backend_t *be, const mab *m, paramset *ps, arena *ar, const mab_cache *c,
                 float *dX, float *dY, const float *dout, const float *X, const float *Y,
                 d2_error *err);

typedef struct sab {
    mab m;
} sab;
typedef struct sab_cache {
    mab_cache c;
    float *out; /* [B, N, d] */
} sab_cache;
int sab_init(sab *s, paramset *ps, const char *name, int din, int d, int heads, int ln,
             d2_error *err);
int sab_forward(backend_t *be, const sab *s, const paramset *ps, arena *ar, sab_cache *c,
                const float *X, int N, int B, d2_error *err);
int sab_backward(backend_t *be, const sab *s, paramset *ps, arena *ar, const sab_cache *c,
                 float *dX, const float *dout, const float *X, d2_error *err);

typedef struct isab {
    int m_ind, d;
    size_t I; /* "<name>.I" [m_ind, d] */
    mab m0, m1;
} isab;
typedef struct isab_cache {
    int B, N;
    float *irep; /* [B, m, d] */
    mab_cache c0, c1;
    float *out;  /* [B, N, d] */
} isab_cache;
int isab_init(isab *s, paramset *ps, const char *name, int din, int d, int heads, int m_ind,
              int ln, d2_error *err);
int isab_forward(backend_t *be, const isab *s, const paramset *ps, arena *ar, isab_cache *c,
                 const float *X, int N, int B, d2_error *err);
int isab_backward(backend_t *be, const isab *s, paramset *ps, arena *ar, const isab_cache *c,
                  float *dX, const float *dout, const float *X, d2_error *err);

typedef struct pma {
    int k, d;
    size_t S; /* "<name>.S" [k, d] */
    mab m;
} pma;
typedef struct pma_cache {
    int B, N;
    float *srep; /* [B, k, d] */
    mab_cache c;
    float *out;  /* [B, k, d] */
} pma_cache;
int pma_init(pma *p, paramset *ps, const char *name, int din, int d, int heads, int k, int ln,
             d2_error *err);
int pma_forward(backend_t *be, const pma *p, const paramset *ps, arena *ar, pma_cache *c,
                const float *X, int N, int B, d2_error *err);
int pma_backward(backend_t *be, const pma *p, paramset *ps, arena *ar, const pma_cache *c,
                 float *dX, const float *dout, const float *X, d2_error *err);

#endif
