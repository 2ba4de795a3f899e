/* attention.c - Set Transformer blocks (MAB, SAB, ISAB, PMA), forward and backward.
 *
 * Heads are split with permute_0213 ([B, N, H, dh] -> [B, H, N, dh]) and the per-head
 * products run as one gemm_batched over the B*H problems. With one head the permutes are
 * identities and are skipped. */
#include "attention.h"

#include <math.h>
#include <stdio.h>

/* D2_ENOMEM with the arena's size and the size it would have needed */
static int attn_oom(const arena *ar, const char *what, d2_error *err)
{
    return d2_fail(err, D2_ENOMEM,
                   "%s: arena too small (%zu bytes; needs at least %zu at this point)", what,
                   ar->cap, ar->peak);
}

/* ptr = n floats from the arena, not zeroed (every forward buffer is overwritten whole) */
#define ATTN_TAKE(ptr, n, what)                                                            \
    do {                                                                                   \
        if (!((ptr) = arena_floats_uninit(ar, (n))))                                       \
            return attn_oom(ar, (what), err);                                              \
    } while (0)

/* for functions that must reset the arena to `mark` before returning: `take` is
 * arena_floats (zeroed, for buffers that are accumulated into) or arena_floats_uninit */
#define ATTN_TAKE_OR_RESET(take, ptr, n, what)                                             \
    do {                                                                                   \
        if (!((ptr) = take(ar, (n)))) {                                                    \
            int rc_ = attn_oom(ar, (what), err);                                           \
            arena_reset(ar, mark);                                                         \
            return rc_;                                                                    \
        }                                                                                  \
    } while (0)
#define ATTN_ZEROED(ptr, n, what) ATTN_TAKE_OR_RESET(arena_floats, ptr, n, what)
#define ATTN_SCRATCH(ptr, n, what) ATTN_TAKE_OR_RESET(arena_floats_uninit, ptr, n, what)

static int attn_name(char *buf, size_t n, const char *prefix, const char *suffix, d2_error *err)
{
    int len = snprintf(buf, n, "%s.%s", prefix, suffix);
    if (len < 0 || (size_t)len >= n)
        return d2_fail(err, D2_EINVAL, "tensor name \"%s.%s\" is too long", prefix, suffix);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* MAB                                                                       */

int mab_init(mab *m, paramset *ps, const char *name, int dx, int dy, int d, int heads, int ln,
             d2_error *err)
{
    if (dx <= 0 || dy <= 0 || d <= 0 || heads <= 0 || d % heads != 0)
        return d2_fail(err, D2_EINVAL,
                       "mab %s: bad sizes dx=%d dy=%d d=%d heads=%d (d must be a multiple of "
                       "heads)", name, dx, dy, d, heads);
    m->dx = dx;
    m->dy = dy;
    m->d = d;
    m->heads = heads;
    m->ln = ln != 0;
    char buf[PARAM_NAME_LEN];
    int rc;
    if ((rc = attn_name(buf, sizeof buf, name, "fc_q", err)) ||
        (rc = linear_init(&m->fq, ps, buf, dx, d, 1, 1.0f, err)) ||
        (rc = attn_name(buf, sizeof buf, name, "fc_k", err)) ||
        (rc = linear_init(&m->fk, ps, buf, dy, d, 1, 1.0f, err)) ||
        (rc = attn_name(buf, sizeof buf, name, "fc_v", err)) ||
        (rc = linear_init(&m->fv, ps, buf, dy, d, 1, 1.0f, err)) ||
        (rc = attn_name(buf, sizeof buf, name, "fc_o", err)) ||
        (rc = linear_init(&m->fo, ps, buf, d, d, 1, 1.0f, err)))
        return rc;
    if (m->ln) {
        if ((rc = attn_name(buf, sizeof buf, name, "ln0", err)) ||
            (rc = layernorm_init(&m->ln0, ps, buf, d, 1, err)) ||
            (rc = attn_name(buf, sizeof buf, name, "ln1", err)) ||
            (rc = layernorm_init(&m->ln1, ps, buf, d, 1, err)))
            return rc;
    }
    return 0;
}

// X: [B, Nx, dx], Y: [B, Ny, dy] -> c->out: [B, Nx, d]
int mab_forward(backend_t *be, const mab *m, const paramset *ps, arena *ar, mab_cache *c,
                const float *X, int Nx, const float *Y, int Ny, int B, d2_error *err)
{
    const backend_ops *op = be->ops;
    const int d = m->d, H = m->heads, dh = d / H, BH = B * H;
    const size_t rx = (size_t)B * Nx, ry = (size_t)B * Ny;
    const size_t nx = rx * d, ny = ry * d, na = (size_t)BH * Nx * Ny;
    const long long sq = (long long)Nx * dh, sk = (long long)Ny * dh, sa = (long long)Nx * Ny;
    const char *what = "mab forward";
    float *scores;

    c->B = B;
    c->Nx = Nx;
    c->Ny = Ny;
    c->m0 = c->r0 = c->m1 = c->r1 = NULL;
    ATTN_TAKE(c->q, nx, what);
    ATTN_TAKE(c->k, ny, what);
    ATTN_TAKE(c->v, ny, what);
    // X: [B*Nx, dx] -> q: [B*Nx, d];  Y: [B*Ny, dy] -> k, v: [B*Ny, d]
    linear_forward(be, &m->fq, ps, c->q, X, (int)rx);
    linear_forward(be, &m->fk, ps, c->k, Y, (int)ry);
    linear_forward(be, &m->fv, ps, c->v, Y, (int)ry);
    if (H > 1) {
        // [B, N, H, dh] -> [B, H, N, dh]
        ATTN_TAKE(c->qh, nx, what);
        ATTN_TAKE(c->kh, ny, what);
        ATTN_TAKE(c->vh, ny, what);
        op->permute_0213(be, c->qh, c->q, B, Nx, H, dh);
        op->permute_0213(be, c->kh, c->k, B, Ny, H, dh);
        op->permute_0213(be, c->vh, c->v, B, Ny, H, dh);
    } else {
        c->qh = c->q;
        c->kh = c->k;
        c->vh = c->v;
    }
    // scores: [BH, Nx, Ny] = qh: [BH, Nx, dh] @ kh^T: [BH, dh, Ny]
    ATTN_TAKE(scores, na, what);
    ATTN_TAKE(c->att, na, what);
    op->gemm_batched(be, 0, 1, Nx, Ny, dh, 1.0f, c->qh, dh, sq, c->kh, dh, sk, 0.0f, scores, Ny,
                     sa, BH);
    op->softmax_forward(be, c->att, scores, 1.0f / sqrtf((float)dh), BH * Nx, Ny);
    // oh: [BH, Nx, dh] = att: [BH, Nx, Ny] @ vh: [BH, Ny, dh];  o1 = q + merge(oh)
    ATTN_TAKE(c->o1, nx, what);
    if (H > 1) {
        ATTN_TAKE(c->oh, nx, what);
        op->gemm_batched(be, 0, 0, Nx, dh, Ny, 1.0f, c->att, Ny, sa, c->vh, dh, sk, 0.0f, c->oh,
                         dh, sq, BH);
        op->permute_0213(be, c->o1, c->oh, B, H, Nx, dh);
    } else {
        c->oh = c->o1;
        op->gemm_batched(be, 0, 0, Nx, dh, Ny, 1.0f, c->att, Ny, sa, c->vh, dh, sk, 0.0f, c->o1,
                         dh, sq, BH);
    }
    op->axpby(be, c->o1, 1.0f, c->q, 1.0f, nx);
    // o2 = LN0(o1)
    if (m->ln) {
        ATTN_TAKE(c->m0, rx, what);
        ATTN_TAKE(c->r0, rx, what);
        ATTN_TAKE(c->o2, nx, what);
        layernorm_fwd(be, &m->ln0, ps, c->o2, c->m0, c->r0, c->o1, (int)rx);
    } else {
        c->o2 = c->o1;
    }
    // f = o2 Wo^T + bo;  o3 = o2 + relu(f)
    ATTN_TAKE(c->f, nx, what);
    ATTN_TAKE(c->o3, nx, what);
    linear_forward(be, &m->fo, ps, c->f, c->o2, (int)rx);
    op->act_forward(be, ACT_RELU, c->o3, c->f, nx);
    op->axpby(be, c->o3, 1.0f, c->o2, 1.0f, nx);
    // out = LN1(o3)
    if (m->ln) {
        ATTN_TAKE(c->m1, rx, what);
        ATTN_TAKE(c->r1, rx, what);
        ATTN_TAKE(c->out, nx, what);
        layernorm_fwd(be, &m->ln1, ps, c->out, c->m1, c->r1, c->o3, (int)rx);
    } else {
        c->out = c->o3;
    }
    return 0;
}

// dout: [B, Nx, d] -> dX: [B, Nx, dx] +=, dY: [B, Ny, dy] += (either may be NULL), ps->g +=
int mab_backward(backend_t *be, const mab *m, paramset *ps, arena *ar, const mab_cache *c,
                 float *dX, float *dY, const float *dout, const float *X, const float *Y,
                 d2_error *err)
{
    const backend_ops *op = be->ops;
    const int B = c->B, Nx = c->Nx, Ny = c->Ny;
    const int d = m->d, H = m->heads, dh = d / H, BH = B * H;
    const size_t rx = (size_t)B * Nx, ry = (size_t)B * Ny;
    const size_t nx = rx * d, ny = ry * d, na = (size_t)BH * Nx * Ny;
    const long long sq = (long long)Nx * dh, sk = (long long)Ny * dh, sa = (long long)Nx * Ny;
    const char *what = "mab backward";
    const size_t mark = arena_mark(ar);
    const float *d_o3, *d_o1, *d_oh;
    float *t, *d_o2, *df, *dq, *dk, *dv, *d_att, *d_s, *d_vh, *d_kh;

    // out = LN1(o3)
    if (m->ln) {
        ATTN_ZEROED(t, nx, what);
        layernorm_bwd(be, &m->ln1, ps, t, dout, c->o3, c->m1, c->r1, (int)rx);
        d_o3 = t;
    } else {
        d_o3 = dout;
    }
    // o3 = o2 + relu(f), f = o2 Wo^T + bo
    ATTN_SCRATCH(d_o2, nx, what);
    ATTN_ZEROED(df, nx, what);
    op->copy(be, d_o2, d_o3, nx * sizeof(float));
    op->act_backward(be, ACT_RELU, df, d_o3, c->f, nx);
    linear_backward(be, &m->fo, ps, d_o2, df, c->o2, (int)rx);
    // o2 = LN0(o1)
    if (m->ln) {
        ATTN_ZEROED(t, nx, what);
        layernorm_bwd(be, &m->ln0, ps, t, d_o2, c->o1, c->m0, c->r0, (int)rx);
        d_o1 = t;
    } else {
        d_o1 = d_o2;
    }
    // o1 = q + merge(oh)
    ATTN_SCRATCH(dq, nx, what);
    op->copy(be, dq, d_o1, nx * sizeof(float));
    if (H > 1) {
        ATTN_SCRATCH(t, nx, what);
        op->permute_0213(be, t, d_o1, B, Nx, H, dh);
        d_oh = t;
    } else {
        d_oh = d_o1;
    }
    // oh = att @ vh:  d_att: [BH, Nx, Ny] = d_oh @ vh^T;  d_vh: [BH, Ny, dh] = att^T @ d_oh
    ATTN_SCRATCH(d_att, na, what);
    ATTN_SCRATCH(d_vh, ny, what);
    op->gemm_batched(be, 0, 1, Nx, Ny, dh, 1.0f, d_oh, dh, sq, c->vh, dh, sk, 0.0f, d_att, Ny,
                     sa, BH);
    op->gemm_batched(be, 1, 0, Ny, dh, Nx, 1.0f, c->att, Ny, sa, d_oh, dh, sq, 0.0f, d_vh, dh,
                     sk, BH);
    // att = softmax(scores / sqrt(dh))
    ATTN_ZEROED(d_s, na, what);
    op->softmax_backward(be, d_s, d_att, c->att, 1.0f / sqrtf((float)dh), BH * Nx, Ny);
    // scores = qh @ kh^T:  d_qh: [BH, Nx, dh] = d_s @ kh;  d_kh: [BH, Ny, dh] = d_s^T @ qh
    ATTN_SCRATCH(d_kh, ny, what);
    op->gemm_batched(be, 1, 0, Ny, dh, Nx, 1.0f, d_s, Ny, sa, c->qh, dh, sq, 0.0f, d_kh, dh, sk,
                     BH);
    if (H > 1) {
        float *d_qh;
        ATTN_SCRATCH(d_qh, nx, what);
        op->gemm_batched(be, 0, 0, Nx, dh, Ny, 1.0f, d_s, Ny, sa, c->kh, dh, sk, 0.0f, d_qh,
                         dh, sq, BH);
        // [B, H, N, dh] -> [B, N, H, dh]
        ATTN_SCRATCH(t, nx, what);
        op->permute_0213(be, t, d_qh, B, H, Nx, dh);
        op->axpby(be, dq, 1.0f, t, 1.0f, nx);
        ATTN_SCRATCH(dk, ny, what);
        ATTN_SCRATCH(dv, ny, what);
        op->permute_0213(be, dk, d_kh, B, H, Ny, dh);
        op->permute_0213(be, dv, d_vh, B, H, Ny, dh);
    } else {
        op->gemm_batched(be, 0, 0, Nx, dh, Ny, 1.0f, d_s, Ny, sa, c->kh, dh, sk, 1.0f, dq, dh,
                         sq, BH);
        dk = d_kh;
        dv = d_vh;
    }
    // projections
    linear_backward(be, &m->fq, ps, dX, dq, X, (int)rx);
    linear_backward(be, &m->fk, ps, dY, dk, Y, (int)ry);
    linear_backward(be, &m->fv, ps, dY, dv, Y, (int)ry);
    arena_reset(ar, mark);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* SAB                                                                       */

int sab_init(sab *s, paramset *ps, const char *name, int din, int d, int heads, int ln,
             d2_error *err)
{
    return mab_init(&s->m, ps, name, din, din, d, heads, ln, err);
}

// X: [B, N, din] -> c->out: [B, N, d]
int sab_forward(backend_t *be, const sab *s, const paramset *ps, arena *ar, sab_cache *c,
                const float *X, int N, int B, d2_error *err)
{
    int rc = mab_forward(be, &s->m, ps, ar, &c->c, X, N, X, N, B, err);
    c->out = rc ? NULL : c->c.out;
    return rc;
}

int sab_backward(backend_t *be, const sab *s, paramset *ps, arena *ar, const sab_cache *c,
                 float *dX, const float *dout, const float *X, d2_error *err)
{
    return mab_backward(be, &s->m, ps, ar, &c->c, dX, dX, dout, X, X, err);
}

/* ------------------------------------------------------------------------- */
/* ISAB                                                                      */

int isab_init(isab *s, paramset *ps, const char *name, int din, int d, int heads, int m_ind,
              int ln, d2_error *err)
{
    if (m_ind <= 0)
        return d2_fail(err, D2_EINVAL, "isab %s: %d inducing points", name, m_ind);
    s->m_ind = m_ind;
    s->d = d;
    char buf[PARAM_NAME_LEN];
    int64_t shape[2] = {m_ind, d};
    int rc;
    if ((rc = attn_name(buf, sizeof buf, name, "I", err)) ||
        (rc = paramset_add(ps, buf, 2, shape, INIT_XAVIER, 1.0f, &s->I, err)) ||
        (rc = attn_name(buf, sizeof buf, name, "mab0", err)) ||
        (rc = mab_init(&s->m0, ps, buf, d, din, d, heads, ln, err)) ||
        (rc = attn_name(buf, sizeof buf, name, "mab1", err)) ||
        (rc = mab_init(&s->m1, ps, buf, din, d, d, heads, ln, err)))
        return rc;
    return 0;
}

// X: [B, N, din] -> H = MAB0(I, X): [B, m, d] -> c->out = MAB1(X, H): [B, N, d]
int isab_forward(backend_t *be, const isab *s, const paramset *ps, arena *ar, isab_cache *c,
                 const float *X, int N, int B, d2_error *err)
{
    int rc;
    c->B = B;
    c->N = N;
    c->out = NULL;
    ATTN_TAKE(c->irep, (size_t)B * s->m_ind * s->d, "isab forward");
    be->ops->repeat_rows(be, c->irep, ps->w + s->I, B, s->m_ind, s->d);
    if ((rc = mab_forward(be, &s->m0, ps, ar, &c->c0, c->irep, s->m_ind, X, N, B, err)) ||
        (rc = mab_forward(be, &s->m1, ps, ar, &c->c1, X, N, c->c0.out, s->m_ind, B, err)))
        return rc;
    c->out = c->c1.out;
    return 0;
}

int isab_backward(backend_t *be, const isab *s, paramset *ps, arena *ar, const isab_cache *c,
                  float *dX, const float *dout, const float *X, d2_error *err)
{
    const char *what = "isab backward";
    const size_t mark = arena_mark(ar);
    const size_t nh = (size_t)c->B * s->m_ind * s->d;
    float *dH, *direp;
    int rc;
    ATTN_ZEROED(dH, nh, what);
    ATTN_ZEROED(direp, nh, what);
    if ((rc = mab_backward(be, &s->m1, ps, ar, &c->c1, dX, dH, dout, X, c->c0.out, err)) ||
        (rc = mab_backward(be, &s->m0, ps, ar, &c->c0, direp, dX, dH, c->irep, X, err))) {
        arena_reset(ar, mark);
        return rc;
    }
    be->ops->repeat_rows_backward(be, ps->g + s->I, direp, c->B, s->m_ind, s->d);
    arena_reset(ar, mark);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* PMA                                                                       */

int pma_init(pma *p, paramset *ps, const char *name, int din, int d, int heads, int k, int ln,
             d2_error *err)
{
    if (k <= 0)
        return d2_fail(err, D2_EINVAL, "pma %s: %d seeds", name, k);
    p->k = k;
    p->d = d;
    char buf[PARAM_NAME_LEN];
    int64_t shape[2] = {k, d};
    int rc;
    if ((rc = attn_name(buf, sizeof buf, name, "S", err)) ||
        (rc = paramset_add(ps, buf, 2, shape, INIT_XAVIER, 1.0f, &p->S, err)) ||
        (rc = attn_name(buf, sizeof buf, name, "mab", err)) ||
        (rc = mab_init(&p->m, ps, buf, d, din, d, heads, ln, err)))
        return rc;
    return 0;
}

// X: [B, N, din] -> c->out = MAB(S, X): [B, k, d]
int pma_forward(backend_t *be, const pma *p, const paramset *ps, arena *ar, pma_cache *c,
                const float *X, int N, int B, d2_error *err)
{
    int rc;
    c->B = B;
    c->N = N;
    c->out = NULL;
    ATTN_TAKE(c->srep, (size_t)B * p->k * p->d, "pma forward");
    be->ops->repeat_rows(be, c->srep, ps->w + p->S, B, p->k, p->d);
    if ((rc = mab_forward(be, &p->m, ps, ar, &c->c, c->srep, p->k, X, N, B, err)))
        return rc;
    c->out = c->c.out;
    return 0;
}

int pma_backward(backend_t *be, const pma *p, paramset *ps, arena *ar, const pma_cache *c,
                 float *dX, const float *dout, const float *X, d2_error *err)
{
    const size_t mark = arena_mark(ar);
    float *dsrep;
    int rc;
    ATTN_ZEROED(dsrep, (size_t)c->B * p->k * p->d, "pma backward");
    if ((rc = mab_backward(be, &p->m, ps, ar, &c->c, dsrep, dX, dout, c->srep, X, err))) {
        arena_reset(ar, mark);
        return rc;
    }
    be->ops->repeat_rows_backward(be, ps->g + p->S, dsrep, c->B, p->k, p->d);
    arena_reset(ar, mark);
    return 0;
}
