/* backend_cpu_loss.c - the CPU backend's reductions, losses and optimiser ops (conventions in
 * backend_cpu_internal.h). Reductions keep one partial sum per part and add the parts in
 * order, so a result does not depend on which thread ran which part. */
#include "backend_cpu_internal.h"

#include <math.h>

typedef struct red_args {
    float *d1, *d2;            /* gradient outputs */
    const float *a, *b;        /* inputs */
    const int32_t *labels;
    float g1, g2;              /* gradient scales */
    size_t cols;
    double part[CPU_POOL_MAX_PARTS];
} red_args;

static double red_total(const red_args *a, int nparts)
{
    double s = 0.0;
    for (int p = 0; p < nparts; p++)
        s += a->part[p];
    return s;
}

// [lo, hi) of x (= a): part sum of x^2, float partial sums over blocks of 1024
CPU_MULTIVERSION static void k_sumsq(void *p, size_t lo, size_t hi, int part)
{
    red_args *a = p;
    double s = 0.0;
    for (size_t i0 = lo; i0 < hi; i0 += 1024) {
        const size_t i1 = hi - i0 < 1024 ? hi : i0 + 1024;
        float acc[CPU_VB] = {0}, pad[CPU_VB];
        for (size_t i = i0; i < i1; i += CPU_VB) {
            const float *t = cpu_src(a->a + i, cpu_chunk_len(i1, i), pad);
            for (int k = 0; k < CPU_VB; k++)
                acc[k] += t[k] * t[k];
        }
        s += (double)cpu_hsum(acc);
    }
    a->part[part] = s;
}

// x: [n] -> out: [1] = sum x^2
void cpu_sumsq(backend_t *be, float *out, const float *x, size_t n)
{
    red_args a = {.a = x};
    int parts = cpu_pool_run(cpu_pool_of(be), k_sumsq, &a, n, 4 * CPU_PAR_ITEMS, 1024);
    out[0] = (float)red_total(&a, parts);
}

// [lo, hi): part sum of (pred - target)^2; dpred (= d1) = g1 (pred - target)
CPU_MULTIVERSION static void k_mse(void *p, size_t lo, size_t hi, int part)
{
    red_args *a = p;
    double acc[CPU_VB] = {0};
    for (size_t i = lo; i < hi; i += CPU_VB) {
        size_t len = cpu_chunk_len(hi, i);
        float pp[CPU_VB], pt[CPU_VB], e[CPU_VB];
        const float *tp = cpu_src(a->a + i, len, pp), *tt = cpu_src(a->b + i, len, pt);
        for (int k = 0; k < CPU_VB; k++)
            e[k] = tp[k] - tt[k];
        for (int k = 0; k < CPU_VB; k++)
            acc[k] += (double)e[k] * (double)e[k];
        if (a->d1) {
            for (int k = 0; k < CPU_VB; k++)
                e[k] *= a->g1;
            cpu_store(a->d1 + i, e, len);
        }
    }
    double s = 0.0;
    for (int k = 0; k < CPU_VB; k++)
        s += acc[k];
    a->part[part] = s;
}

// pred, target, dpred: [n] -> out: [1] = mean((pred - target)^2); dpred = gscale 2 (p - t) / n
void cpu_mse(backend_t *be, float *out, float *dpred, const float *pred, const float *target,
             size_t n, float gscale)
{
    red_args a = {.d1 = dpred, .a = pred, .b = target,
                  .g1 = n ? gscale * 2.0f / (float)n : 0.0f};
    int parts = cpu_pool_run(cpu_pool_of(be), k_mse, &a, n, CPU_PAR_ITEMS, CPU_VB);
    out[0] = n ? (float)(red_total(&a, parts) / (double)n) : 0.0f;
}

// rows [lo, hi) of logits (= a): part sum of -log softmax[label] (log-sum-exp in double);
// dlogits (= d1) = g1 (softmax - onehot) (in float)
CPU_MULTIVERSION static void k_cross_entropy(void *p, size_t lo, size_t hi, int part)
{
    red_args *a = p;
    const size_t n = a->cols;
    const float g = a->g1;
    double loss = 0.0;
    for (size_t r = lo; r < hi; r++) {
        const float *xr = a->a + r * n;
        const int32_t lab = a->labels[r];
        const float mx = cpu_row_max_scaled(xr, 1.0f, n);
        float acc[CPU_VB] = {0};
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], e[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px);
            for (int k = 0; k < CPU_VB; k++)
                e[k] = cpu_expf(tx[k] - mx);
            if (len < CPU_VB)
                memset(e + len, 0, (CPU_VB - len) * sizeof(float));
            for (int k = 0; k < CPU_VB; k++)
                acc[k] += e[k];
        }
        const float sum = cpu_hsum(acc);
        const int valid = lab >= 0 && (size_t)lab < n; /* an invalid label adds nothing */
        if (valid) { /* the loss in double, in row order: target_eval's value exactly */
            double se = 0.0;
            for (size_t i = 0; i < n; i++)
                se += exp((double)xr[i] - (double)mx);
            loss += log(se) + (double)mx - (double)xr[lab];
        }
        if (!a->d1)
            continue;
        float *dr = a->d1 + r * n;
        if (!valid) {
            memset(dr, 0, n * sizeof(float));
            continue;
        }
        const float inv = 1.0f / sum;
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = g * cpu_expf(tx[k] - mx) * inv;
            cpu_store(dr + i, o, len);
        }
        dr[lab] -= g;
    }
    a->part[part] = loss;
}

// logits, dlogits: [rows, C]; labels: [rows] -> out: [1]
void cpu_cross_entropy(backend_t *be, float *out, float *dlogits, const float *logits,
                       const int32_t *labels, int rows, int C, float gscale)
{
    if (rows <= 0 || C <= 0) {
        out[0] = 0.0f;
        return;
    }
    red_args a = {.d1 = dlogits, .a = logits, .labels = labels, .g1 = gscale / (float)rows,
                  .cols = (size_t)C};
    int parts = cpu_pool_run(cpu_pool_of(be), k_cross_entropy, &a, (size_t)rows,
                             cpu_min_rows((size_t)C), 1);
    out[0] = (float)(red_total(&a, parts) / rows);
}

// [lo, hi): part sum of mu^2 + exp(logvar) - 1 - logvar; dmu (d1) += g1 mu;
// dlogvar (d2) += g2 (exp(logvar) - 1)
CPU_MULTIVERSION static void k_kl_gauss(void *p, size_t lo, size_t hi, int part)
{
    red_args *a = p;
    double acc[CPU_VB] = {0};
    for (size_t i = lo; i < hi; i += CPU_VB) {
        size_t len = cpu_chunk_len(hi, i);
        float pm[CPU_VB], pl[CPU_VB], e[CPU_VB], o[CPU_VB], pad[CPU_VB];
        const float *tm = cpu_src(a->a + i, len, pm), *tl = cpu_src(a->b + i, len, pl);
        for (int k = 0; k < CPU_VB; k++)
            e[k] = cpu_expf(tl[k]);
        /* padded lanes: mu = 0, logvar = 0 -> 0 + 1 - 1 - 0 = 0 */
        for (int k = 0; k < CPU_VB; k++)
            acc[k] += (double)(tm[k] * tm[k] + e[k] - 1.0f - tl[k]);
        if (a->d1) {
            const float *t = cpu_src(a->d1 + i, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = t[k] + a->g1 * tm[k];
            cpu_store(a->d1 + i, o, len);
        }
        if (a->d2) {
            const float *t = cpu_src(a->d2 + i, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = t[k] + a->g2 * (e[k] - 1.0f);
            cpu_store(a->d2 + i, o, len);
        }
    }
    double s = 0.0;
    for (int k = 0; k < CPU_VB; k++)
        s += acc[k];
    a->part[part] = s;
}

// mu, logvar, dmu, dlogvar: [n] -> out: [1] = 0.5 sum(...) / rows
void cpu_kl_gauss(backend_t *be, float *out, float *dmu, float *dlogvar, const float *mu,
                  const float *logvar, size_t n, int rows, float gscale)
{
    const float inv_rows = rows > 0 ? 1.0f / (float)rows : 0.0f;
    red_args a = {.d1 = dmu, .d2 = dlogvar, .a = mu, .b = logvar, .g1 = gscale * inv_rows,
                  .g2 = 0.5f * gscale * inv_rows};
    int parts = cpu_pool_run(cpu_pool_of(be), k_kl_gauss, &a, n, CPU_PAR_ITEMS, CPU_VB);
    out[0] = (float)(0.5 * red_total(&a, parts) * (double)inv_rows);
}

typedef struct adamw_args {
    float *w, *m, *v;
    const float *g;
    float lr, beta1, beta2, eps, wd, gscale, ib1, ib2;
} adamw_args;

// [lo, hi) of w, g, m, v
CPU_MULTIVERSION static void k_adamw(void *p, size_t lo, size_t hi, int part)
{
    const adamw_args *a = p;
    const float b1 = a->beta1, b2 = a->beta2, a1 = 1.0f - b1, a2 = 1.0f - b2;
    const float gs = a->gscale, ib1 = a->ib1, ib2 = a->ib2, lr = a->lr, eps = a->eps;
    const float wd = a->wd;
    (void)part;
    for (size_t i = lo; i < hi; i += CPU_VB) {
        size_t len = cpu_chunk_len(hi, i);
        float pw[CPU_VB], pg[CPU_VB], pm[CPU_VB], pv[CPU_VB];
        float ow[CPU_VB], om[CPU_VB], ov[CPU_VB], den[CPU_VB];
        const float *tw = cpu_src(a->w + i, len, pw), *tg = cpu_src(a->g + i, len, pg);
        const float *tm = cpu_src(a->m + i, len, pm), *tv = cpu_src(a->v + i, len, pv);
        for (int k = 0; k < CPU_VB; k++) {
            float gg = tg[k] * gs;
            om[k] = b1 * tm[k] + a1 * gg;
            ov[k] = b2 * tv[k] + a2 * gg * gg;
            den[k] = ov[k] * ib2;
        }
        cpu_sqrt_chunk(den, den);
        for (int k = 0; k < CPU_VB; k++)
            ow[k] = tw[k] - lr * ((om[k] * ib1) / (den[k] + eps) + wd * tw[k]);
        cpu_store(a->w + i, ow, len);
        cpu_store(a->m + i, om, len);
        cpu_store(a->v + i, ov, len);
    }
}

// w, g, m, v: [n]; bias-corrected AdamW with decoupled weight decay, g scaled by gscale
void cpu_adamw(backend_t *be, float *w, const float *g, float *m, float *v, size_t n, float lr,
               float beta1, float beta2, float eps, float wd, int t, float gscale)
{
    adamw_args a = {.w = w, .m = m, .v = v, .g = g, .lr = lr, .beta1 = beta1, .beta2 = beta2,
                    .eps = eps, .wd = wd, .gscale = gscale,
                    .ib1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)t))),
                    .ib2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)t)))};
    cpu_pool_run(cpu_pool_of(be), k_adamw, &a, n, CPU_PAR_ITEMS, CPU_VB);
}

// ema, w: [n]; ema = decay ema + (1 - decay) w
void cpu_ema(backend_t *be, float *ema, const float *w, size_t n, float decay)
{
    cpu_axpby(be, ema, 1.0f - decay, w, decay, n);
}
