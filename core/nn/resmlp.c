/* resmlp.c - residual MLP forward and backward (see resmlp.h). */
#include "resmlp.h"

#include <stdio.h>

static int oom(d2_error *err, const arena *ar, const char *what)
{
    return d2_fail(err, D2_ENOMEM, "resmlp %s: scratch arena of %zu bytes is full", what,
                   ar->cap);
}

int resmlp_init(resmlp *m, paramset *ps, const char *name, int in, int hidden, int out,
                int blocks, float out_scale, d2_error *err)
{
    if (blocks < 0 || blocks > RESMLP_MAX_BLOCKS || in <= 0 || hidden <= 0 || out <= 0)
        return d2_fail(err, D2_EINVAL, "resmlp %s: bad sizes in=%d hidden=%d out=%d blocks=%d",
                       name, in, hidden, out, blocks);
    m->in = in;
    m->hidden = hidden;
    m->out = out;
    m->blocks = blocks;
    char n[PARAM_NAME_LEN];
    int rc;
    snprintf(n, sizeof n, "%s.in", name);
    if ((rc = linear_init(&m->fin, ps, n, in, hidden, 1, 1.0f, err)))
        return rc;
    for (int i = 0; i < blocks; i++) {
        snprintf(n, sizeof n, "%s.blocks.%d.ln", name, i);
        if ((rc = layernorm_init(&m->ln[i], ps, n, hidden, 1, err)))
            return rc;
        snprintf(n, sizeof n, "%s.blocks.%d.fc1", name, i);
        if ((rc = linear_init(&m->fc1[i], ps, n, hidden, hidden, 1, 1.0f, err)))
            return rc;
        snprintf(n, sizeof n, "%s.blocks.%d.fc2", name, i);
        if ((rc = linear_init(&m->fc2[i], ps, n, hidden, hidden, 1, 0.5f, err)))
            return rc;
    }
    snprintf(n, sizeof n, "%s.ln_out", name);
    if ((rc = layernorm_init(&m->lnf, ps, n, hidden, 1, err)))
        return rc;
    snprintf(n, sizeof n, "%s.out", name);
    return linear_init(&m->fout, ps, n, hidden, out, 1, out_scale, err);
}

int resmlp_forward(backend_t *be, const resmlp *m, const paramset *ps, arena *ar,
                   resmlp_cache *c, const float *x, int B, d2_error *err)
{
    const int H = m->hidden;
    const size_t BH = (size_t)B * H;
    c->B = B;
    c->x = x;
    if (!(c->h[0] = arena_floats_uninit(ar, BH)))
        return oom(err, ar, "forward");
    linear_forward(be, &m->fin, ps, c->h[0], x, B);
    for (int i = 0; i < m->blocks; i++) {
        c->ln[i] = arena_floats_uninit(ar, BH);
        c->mean[i] = arena_floats_uninit(ar, (size_t)B);
        c->rstd[i] = arena_floats_uninit(ar, (size_t)B);
        c->a1[i] = arena_floats_uninit(ar, BH);
        c->s1[i] = arena_floats_uninit(ar, BH);
        c->h[i + 1] = arena_floats_uninit(ar, BH);
        if (!c->ln[i] || !c->mean[i] || !c->rstd[i] || !c->a1[i] || !c->s1[i] || !c->h[i + 1])
            return oom(err, ar, "forward");
        layernorm_fwd(be, &m->ln[i], ps, c->ln[i], c->mean[i], c->rstd[i], c->h[i], B);
        linear_forward(be, &m->fc1[i], ps, c->a1[i], c->ln[i], B);
        be->ops->act_forward(be, ACT_SILU, c->s1[i], c->a1[i], BH);
        // h[i+1] = h[i] + fc2(s1)
        linear_forward(be, &m->fc2[i], ps, c->h[i + 1], c->s1[i], B);
        be->ops->axpby(be, c->h[i + 1], 1.0f, c->h[i], 1.0f, BH);
    }
    c->lnf = arena_floats_uninit(ar, BH);
    c->meanf = arena_floats_uninit(ar, (size_t)B);
    c->rstdf = arena_floats_uninit(ar, (size_t)B);
    c->y = arena_floats_uninit(ar, (size_t)B * m->out);
    if (!c->lnf || !c->meanf || !c->rstdf || !c->y)
        return oom(err, ar, "forward");
    layernorm_fwd(be, &m->lnf, ps, c->lnf, c->meanf, c->rstdf, c->h[m->blocks], B);
    linear_forward(be, &m->fout, ps, c->y, c->lnf, B);
    return 0;
}

int resmlp_backward(backend_t *be, const resmlp *m, paramset *ps, arena *ar,
                    const resmlp_cache *c, float *dx, const float *dy, d2_error *err)
{
    const int B = c->B, H = m->hidden;
    const size_t BH = (size_t)B * H;
    size_t mark = arena_mark(ar);
    float *dlnf = arena_floats_uninit(ar, BH); // overwritten by linear_backward_set
    float *g = arena_floats(ar, BH);           // dL/dh at the current depth (accumulated)
    float *dtmp = arena_floats_uninit(ar, BH);
    float *dact = arena_floats_uninit(ar, BH);
    if (!dlnf || !g || !dtmp || !dact)
        return oom(err, ar, "backward");
    linear_backward_set(be, &m->fout, ps, dlnf, dy, c->lnf, B);
    layernorm_bwd(be, &m->lnf, ps, g, dlnf, c->h[m->blocks], c->meanf, c->rstdf, B);
    for (int i = m->blocks - 1; i >= 0; i--) {
        // branch: g -> fc2 -> silu -> fc1 -> ln ; the residual keeps g as is
        linear_backward_set(be, &m->fc2[i], ps, dtmp, g, c->s1[i], B);
        be->ops->fill(be, dact, 0.0f, BH); /* act_backward accumulates */
        be->ops->act_backward(be, ACT_SILU, dact, dtmp, c->a1[i], BH);
        linear_backward_set(be, &m->fc1[i], ps, dtmp, dact, c->ln[i], B);
        layernorm_bwd(be, &m->ln[i], ps, g, dtmp, c->h[i], c->mean[i], c->rstd[i], B);
    }
    linear_backward(be, &m->fin, ps, dx, g, c->x, B);
    arena_reset(ar, mark);
    return 0;
}
