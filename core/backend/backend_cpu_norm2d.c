/* backend_cpu_norm2d.c - the CPU backend's batch norm over NCHW channels and global
 * average pool. A part owns whole channels (batch norm) or rows (pooling); statistics are
 * summed in double. */
#include "backend_cpu_internal.h"

#include <math.h>

#define CPU_BN_EPS 1e-5

typedef struct bn_args {
    float *y, *mean, *rstd, *rm, *rv, *dx, *dg, *db;
    const float *x, *g, *b, *dy, *cmean, *crstd;
    int B, C, HW, train;
    float momentum;
} bn_args;

// channel c's batch mean and biased variance, two passes in double
static void cpu_bn_stats(const bn_args *a, int c, double *mean, double *var)
{
    const size_t hw = (size_t)a->HW;
    double s = 0.0, q = 0.0;
    for (int b = 0; b < a->B; b++) {
        const float *x = a->x + ((size_t)b * a->C + c) * hw;
        for (size_t i = 0; i < hw; i++)
            s += x[i];
    }
    const double n = (double)a->B * hw, m = s / n;
    for (int b = 0; b < a->B; b++) {
        const float *x = a->x + ((size_t)b * a->C + c) * hw;
        for (size_t i = 0; i < hw; i++)
            q += (x[i] - m) * (x[i] - m);
    }
    *mean = m;
    *var = q / n;
}

static void k_bn_forward(void *p, size_t lo, size_t hi, int part)
{
    const bn_args *a = p;
    const size_t hw = (size_t)a->HW;
    const double n = (double)a->B * hw;
    (void)part;
    for (size_t c = lo; c < hi; c++) {
        double m, var;
        if (a->train) {
            cpu_bn_stats(a, (int)c, &m, &var);
            if (a->rm && a->rv) {
                const double k = a->momentum, unb = n > 1 ? var * n / (n - 1) : var;
                a->rm[c] = (float)((1.0 - k) * a->rm[c] + k * m);
                a->rv[c] = (float)((1.0 - k) * a->rv[c] + k * unb);
            }
        } else {
            m = a->rm[c];
            var = a->rv[c];
        }
        const float mf = (float)m, s = (float)(1.0 / sqrt(var + CPU_BN_EPS));
        const float gg = a->g ? a->g[c] : 1.0f, bb = a->b ? a->b[c] : 0.0f;
        a->mean[c] = mf;
        a->rstd[c] = s;
        for (int b = 0; b < a->B; b++) {
            const size_t off = ((size_t)b * a->C + c) * hw;
            for (size_t i = 0; i < hw; i++)
                a->y[off + i] = (a->x[off + i] - mf) * s * gg + bb;
        }
    }
}

void cpu_batchnorm_forward(backend_t *be, float *y, float *mean, float *rstd, float *run_mean,
                           float *run_var, const float *x, const float *g, const float *b,
                           int B, int C, int HW, int train, float momentum)
{
    bn_args a = {.y = y, .mean = mean, .rstd = rstd, .rm = run_mean, .rv = run_var, .x = x,
                 .g = g, .b = b, .B = B, .C = C, .HW = HW, .train = train,
                 .momentum = momentum};
    cpu_pool_run(cpu_pool_of(be), k_bn_forward, &a, (size_t)C,
                 cpu_min_rows((size_t)B * HW), 1);
}

static void k_bn_backward(void *p, size_t lo, size_t hi, int part)
{
    const bn_args *a = p;
    const size_t hw = (size_t)a->HW;
    const double n = (double)a->B * hw;
    (void)part;
    for (size_t c = lo; c < hi; c++) {
        const float m = a->cmean[c], s = a->crstd[c], gg = a->g ? a->g[c] : 1.0f;
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < a->B; b++) {
            const size_t off = ((size_t)b * a->C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                sdy += a->dy[off + i];
                sdyx += a->dy[off + i] * ((a->x[off + i] - m) * s);
            }
        }
        if (a->dg)
            a->dg[c] += (float)sdyx;
        if (a->db)
            a->db[c] += (float)sdy;
        if (!a->dx)
            continue;
        const float k1 = a->train ? (float)(sdy / n) : 0.0f;
        const float k2 = a->train ? (float)(sdyx / n) : 0.0f;
        for (int b = 0; b < a->B; b++) {
            const size_t off = ((size_t)b * a->C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                const float xh = (a->x[off + i] - m) * s;
                a->dx[off + i] += gg * s * (a->dy[off + i] - k1 - xh * k2);
            }
        }
    }
}

void cpu_batchnorm_backward(backend_t *be, float *dx, float *dg, float *db, const float *dy,
                            const float *x, const float *g, const float *mean,
                            const float *rstd, int B, int C, int HW, int train)
{
    bn_args a = {.dx = dx, .dg = dg, .db = db, .dy = dy, .x = x, .g = g, .cmean = mean,
                 .crstd = rstd, .B = B, .C = C, .HW = HW, .train = train};
    cpu_pool_run(cpu_pool_of(be), k_bn_backward, &a, (size_t)C,
                 cpu_min_rows((size_t)B * HW), 1);
}

typedef struct gap_args {
    float *out;
    const float *in;
    size_t hw;
} gap_args;

static void k_avgpool_fwd(void *p, size_t lo, size_t hi, int part)
{
    const gap_args *a = p;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        double s = 0.0;
        for (size_t i = 0; i < a->hw; i++)
            s += a->in[r * a->hw + i];
        a->out[r] = (float)(s / (double)a->hw);
    }
}

void cpu_avgpool_forward(backend_t *be, float *y, const float *x, int rows, int HW)
{
    gap_args a = {.out = y, .in = x, .hw = (size_t)HW};
    cpu_pool_run(cpu_pool_of(be), k_avgpool_fwd, &a, (size_t)rows, cpu_min_rows((size_t)HW), 1);
}

static void k_avgpool_bwd(void *p, size_t lo, size_t hi, int part)
{
    const gap_args *a = p;
    const float inv = 1.0f / (float)a->hw;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const float d = a->in[r] * inv;
        for (size_t i = 0; i < a->hw; i++)
            a->out[r * a->hw + i] += d;
    }
}

void cpu_avgpool_backward(backend_t *be, float *dx, const float *dy, int rows, int HW)
{
    gap_args a = {.out = dx, .in = dy, .hw = (size_t)HW};
    cpu_pool_run(cpu_pool_of(be), k_avgpool_bwd, &a, (size_t)rows, cpu_min_rows((size_t)HW), 1);
}
