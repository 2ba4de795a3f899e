/* backend_cpu_ops.c - the CPU backend's elementwise, activation, normalisation, softmax,
 * layout and adaLN ops (conventions in backend_cpu_internal.h). Each op is a kernel over a
 * range of items (elements, rows or column chunks) that cpu_pool_run splits over threads. */
#include "backend_cpu_internal.h"

#include <math.h>

#define CPU_LN_EPS 1e-5f

/* ------------------------------------------------------------------------- */
/* elementwise                                                               */

typedef struct ew_args {
    float *y;
    const float *a, *b;
    float s, t;
    act_kind kind;
} ew_args;

// y = s a + t y   (t == 0: y is not read)
CPU_MULTIVERSION static void k_axpby(void *p, size_t lo, size_t hi, int part)
{
    const ew_args *g = p;
    const float s = g->s, t = g->t;
    (void)part;
    for (size_t i = lo; i < hi; i += CPU_VB) {
        size_t len = cpu_chunk_len(hi, i);
        float px[CPU_VB], py[CPU_VB], o[CPU_VB];
        const float *tx = cpu_src(g->a + i, len, px);
        if (t == 0.0f) {
            for (int k = 0; k < CPU_VB; k++)
                o[k] = s * tx[k];
        } else {
            const float *ty = cpu_src(g->y + i, len, py);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = s * tx[k] + t * ty[k];
        }
        cpu_store(g->y + i, o, len);
    }
}

// y: [n] = a x + b y   (b == 0: y is not read)
void cpu_axpby(backend_t *be, float *y, float a, const float *x, float b, size_t n)
{
    ew_args g = {.y = y, .a = x, .s = a, .t = b};
    cpu_pool_run(cpu_pool_of(be), k_axpby, &g, n, CPU_PAR_ITEMS, CPU_VB);
}

typedef struct rows_args {
    float *y;
    const float *a;
    size_t cols;
} rows_args;

// rows [lo, hi) of y: [rows, cols] += bias: [cols]
CPU_MULTIVERSION static void k_add_bias(void *p, size_t lo, size_t hi, int part)
{
    const rows_args *g = p;
    const size_t n = g->cols;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        float *yr = g->y + r * n;
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float py[CPU_VB], pb[CPU_VB], o[CPU_VB];
            const float *ty = cpu_src(yr + i, len, py), *tb = cpu_src(g->a + i, len, pb);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = ty[k] + tb[k];
            cpu_store(yr + i, o, len);
        }
    }
}

// y: [rows, cols] += bias: [cols]
void cpu_add_bias(backend_t *be, float *y, const float *bias, int rows, int cols)
{
    rows_args g = {.y = y, .a = bias, .cols = (size_t)cols};
    cpu_pool_run(cpu_pool_of(be), k_add_bias, &g, (size_t)rows, cpu_min_rows((size_t)cols), 1);
}

typedef struct sum_rows_args {
    float *db;
    const float *dy;
    size_t rows, cols;
} sum_rows_args;

// columns [lo, hi) of db: [cols] += sum_r dy: [rows, cols]
CPU_MULTIVERSION static void k_sum_rows(void *p, size_t lo, size_t hi, int part)
{
    const sum_rows_args *g = p;
    const size_t n = g->cols;
    (void)part;
    for (size_t c = lo; c < hi; c += CPU_VB) {
        size_t len = cpu_chunk_len(hi, c);
        float pad[CPU_VB], acc[CPU_VB];
        const float *t = cpu_src(g->db + c, len, pad);
        for (int k = 0; k < CPU_VB; k++)
            acc[k] = t[k];
        for (size_t r = 0; r < g->rows; r++) {
            t = cpu_src(g->dy + r * n + c, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                acc[k] += t[k];
        }
        cpu_store(g->db + c, acc, len);
    }
}

// db: [cols] += sum_r dy: [rows, cols]
void cpu_sum_rows(backend_t *be, float *db, const float *dy, int rows, int cols)
{
    sum_rows_args g = {.db = db, .dy = dy, .rows = (size_t)rows, .cols = (size_t)cols};
    size_t min_cols = cpu_min_rows((size_t)rows); /* a column holds `rows` floats */
    cpu_pool_run(cpu_pool_of(be), k_sum_rows, &g, (size_t)cols,
                 (min_cols + CPU_VB - 1) / CPU_VB * CPU_VB, CPU_VB);
}

/* ------------------------------------------------------------------------- */
/* activations                                                               */

#define CPU_GELU_C 0.7978845608028654f /* sqrt(2 / pi) */
#define CPU_GELU_A 0.044715f
#define CPU_SQRT1_2 0.70710678118654752f      /* 1 / sqrt(2) */
#define CPU_INV_SQRT_2PI 0.39894228040143268f /* 1 / sqrt(2 pi) */

/* o[VB] = act(x[VB]) */
CPU_INLINE void cpu_act_chunk(act_kind kind, float *o, const float *x)
{
    switch (kind) {
    case ACT_RELU:
        for (int k = 0; k < CPU_VB; k++)
            o[k] = x[k] > 0.0f ? x[k] : 0.0f;
        break;
    case ACT_SILU:
        for (int k = 0; k < CPU_VB; k++)
            o[k] = x[k] / (1.0f + cpu_expf(-x[k]));
        break;
    case ACT_GELU:
        for (int k = 0; k < CPU_VB; k++) {
            float v = x[k];
            float u = CPU_GELU_C * (v + CPU_GELU_A * v * v * v);
            float th = 1.0f - 2.0f / (1.0f + cpu_expf(2.0f * u));
            o[k] = 0.5f * v * (1.0f + th);
        }
        break;
    case ACT_TANH:
        for (int k = 0; k < CPU_VB; k++)
            o[k] = 1.0f - 2.0f / (1.0f + cpu_expf(2.0f * x[k]));
        break;
    case ACT_GELU_ERF:
        for (int k = 0; k < CPU_VB; k++)
            o[k] = 0.5f * x[k] * (1.0f + erff(x[k] * CPU_SQRT1_2));
        break;
    case ACT_IDENTITY:
    default:
        memcpy(o, x, CPU_VB * sizeof(float));
        break;
    }
}

/* d[VB] = act'(x[VB]) */
CPU_INLINE void cpu_act_grad_chunk(act_kind kind, float *d, const float *x)
{
    switch (kind) {
    case ACT_RELU:
        for (int k = 0; k < CPU_VB; k++)
            d[k] = x[k] > 0.0f ? 1.0f : 0.0f;
        break;
    case ACT_SILU:
        for (int k = 0; k < CPU_VB; k++) {
            float s = 1.0f / (1.0f + cpu_expf(-x[k]));
            d[k] = s * (1.0f + x[k] * (1.0f - s));
        }
        break;
    case ACT_GELU:
        for (int k = 0; k < CPU_VB; k++) {
            float v = x[k];
            float u = CPU_GELU_C * (v + CPU_GELU_A * v * v * v);
            float th = 1.0f - 2.0f / (1.0f + cpu_expf(2.0f * u));
            float du = CPU_GELU_C * (1.0f + 3.0f * CPU_GELU_A * v * v);
            d[k] = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * du;
        }
        break;
    case ACT_TANH:
        for (int k = 0; k < CPU_VB; k++) {
            float th = 1.0f - 2.0f / (1.0f + cpu_expf(2.0f * x[k]));
            d[k] = 1.0f - th * th;
        }
        break;
    case ACT_GELU_ERF: /* Phi(x) + x phi(x) */
        for (int k = 0; k < CPU_VB; k++)
            d[k] = 0.5f * (1.0f + erff(x[k] * CPU_SQRT1_2)) +
                   x[k] * CPU_INV_SQRT_2PI * expf(-0.5f * x[k] * x[k]);
        break;
    case ACT_IDENTITY:
    default:
        for (int k = 0; k < CPU_VB; k++)
            d[k] = 1.0f;
        break;
    }
}

// y = act(a) over [lo, hi)
CPU_MULTIVERSION static void k_act_forward(void *p, size_t lo, size_t hi, int part)
{
    const ew_args *g = p;
    (void)part;
    for (size_t i = lo; i < hi; i += CPU_VB) {
        size_t len = cpu_chunk_len(hi, i);
        float px[CPU_VB], o[CPU_VB];
        cpu_act_chunk(g->kind, o, cpu_src(g->a + i, len, px));
        cpu_store(g->y + i, o, len);
    }
}

// y: [n] = act(x: [n]); y may alias x
void cpu_act_forward(backend_t *be, act_kind kind, float *y, const float *x, size_t n)
{
    ew_args g = {.y = y, .a = x, .kind = kind};
    cpu_pool_run(cpu_pool_of(be), k_act_forward, &g, n, CPU_PAR_ITEMS, CPU_VB);
}

// dx (= y) += act'(x (= b)) * dy (= a) over [lo, hi)
CPU_MULTIVERSION static void k_act_backward(void *p, size_t lo, size_t hi, int part)
{
    const ew_args *g = p;
    (void)part;
    for (size_t i = lo; i < hi; i += CPU_VB) {
        size_t len = cpu_chunk_len(hi, i);
        float px[CPU_VB], pdy[CPU_VB], pdx[CPU_VB], d[CPU_VB], o[CPU_VB];
        cpu_act_grad_chunk(g->kind, d, cpu_src(g->b + i, len, px));
        const float *tdy = cpu_src(g->a + i, len, pdy), *tdx = cpu_src(g->y + i, len, pdx);
        for (int k = 0; k < CPU_VB; k++)
            o[k] = tdx[k] + d[k] * tdy[k];
        cpu_store(g->y + i, o, len);
    }
}

// dx: [n] += act'(x: [n]) * dy: [n]
void cpu_act_backward(backend_t *be, act_kind kind, float *dx, const float *dy, const float *x,
                      size_t n)
{
    ew_args g = {.y = dx, .a = dy, .b = x, .kind = kind};
    cpu_pool_run(cpu_pool_of(be), k_act_backward, &g, n, CPU_PAR_ITEMS, CPU_VB);
}

/* ------------------------------------------------------------------------- */
/* row reductions                                                            */

/* sum of x[0..n) */
CPU_INLINE float cpu_row_sum(const float *x, size_t n)
{
    float acc[CPU_VB] = {0}, pad[CPU_VB];
    for (size_t i = 0; i < n; i += CPU_VB) {
        const float *t = cpu_src(x + i, cpu_chunk_len(n, i), pad);
        for (int k = 0; k < CPU_VB; k++)
            acc[k] += t[k];
    }
    return cpu_hsum(acc);
}

/* sum of (x - m)^2 over x[0..n) */
CPU_INLINE float cpu_row_sq_dev(const float *x, float m, size_t n)
{
    float acc[CPU_VB] = {0}, pad[CPU_VB];
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        const float *t = cpu_src(x + i, len, pad);
        if (len < CPU_VB)
            for (size_t k = len; k < CPU_VB; k++)
                pad[k] = m; /* padding contributes 0 */
        for (int k = 0; k < CPU_VB; k++) {
            float d = t[k] - m;
            acc[k] += d * d;
        }
    }
    return cpu_hsum(acc);
}

/* sum of a * b over [0..n) */
CPU_INLINE float cpu_row_dot(const float *a, const float *b, size_t n)
{
    float acc[CPU_VB] = {0}, pa[CPU_VB], pb[CPU_VB];
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        const float *ta = cpu_src(a + i, len, pa), *tb = cpu_src(b + i, len, pb);
        for (int k = 0; k < CPU_VB; k++)
            acc[k] += ta[k] * tb[k];
    }
    return cpu_hsum(acc);
}

/* ------------------------------------------------------------------------- */
/* layernorm                                                                 */

typedef struct ln_args {
    float *y, *mean, *rstd, *dx, *dg, *db;
    const float *x, *g, *b, *dy;
    const float *cmean, *crstd;
    size_t rows, C;
} ln_args;

// rows [lo, hi): y = (x - mean) * rstd * g + b; mean, rstd saved
CPU_MULTIVERSION static void k_ln_forward(void *p, size_t lo, size_t hi, int part)
{
    const ln_args *a = p;
    const size_t n = a->C;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const float *xr = a->x + r * n;
        float *yr = a->y + r * n;
        const float m = cpu_row_sum(xr, n) / (float)n;
        const float var = cpu_row_sq_dev(xr, m, n) / (float)n;
        const float s = 1.0f / sqrtf(var + CPU_LN_EPS);
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], pg[CPU_VB], pb[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = (tx[k] - m) * s;
            if (a->g) {
                const float *tg = cpu_src(a->g + i, len, pg);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] *= tg[k];
            }
            if (a->b) {
                const float *tb = cpu_src(a->b + i, len, pb);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] += tb[k];
            }
            cpu_store(yr + i, o, len);
        }
        a->mean[r] = m;
        a->rstd[r] = s;
    }
}

// x, y: [rows, C]; g, b: [C] or NULL; mean, rstd: [rows]; y may alias x
void cpu_layernorm_forward(backend_t *be, float *y, float *mean, float *rstd, const float *x,
                           const float *g, const float *b, int rows, int C)
{
    ln_args a = {.y = y, .mean = mean, .rstd = rstd, .x = x, .g = g, .b = b, .C = (size_t)C};
    cpu_pool_run(cpu_pool_of(be), k_ln_forward, &a, (size_t)rows, cpu_min_rows((size_t)C), 1);
}

// rows [lo, hi): dx += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd,
// dnorm = dy * g, norm = (x - mean) * rstd
CPU_MULTIVERSION static void k_ln_backward_dx(void *p, size_t lo, size_t hi, int part)
{
    const ln_args *a = p;
    const size_t n = a->C;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const float *xr = a->x + r * n, *dyr = a->dy + r * n;
        float *dxr = a->dx + r * n;
        const float m = a->cmean[r], s = a->crstd[r];
        /* padded lanes have dy = 0 and add nothing */
        float acc1[CPU_VB] = {0}, acc2[CPU_VB] = {0};
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], pdy[CPU_VB], pg[CPU_VB], dn[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px), *tdy = cpu_src(dyr + i, len, pdy);
            if (a->g) {
                const float *tg = cpu_src(a->g + i, len, pg);
                for (int k = 0; k < CPU_VB; k++)
                    dn[k] = tdy[k] * tg[k];
            } else {
                memcpy(dn, tdy, sizeof dn);
            }
            for (int k = 0; k < CPU_VB; k++) {
                acc1[k] += dn[k];
                acc2[k] += dn[k] * ((tx[k] - m) * s);
            }
        }
        const float dn_mean = cpu_hsum(acc1) / (float)n;
        const float dnn_mean = cpu_hsum(acc2) / (float)n;
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], pdy[CPU_VB], pg[CPU_VB], pdx[CPU_VB], dn[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px), *tdy = cpu_src(dyr + i, len, pdy);
            const float *tdx = cpu_src(dxr + i, len, pdx);
            if (a->g) {
                const float *tg = cpu_src(a->g + i, len, pg);
                for (int k = 0; k < CPU_VB; k++)
                    dn[k] = tdy[k] * tg[k];
            } else {
                memcpy(dn, tdy, sizeof dn);
            }
            for (int k = 0; k < CPU_VB; k++) {
                float nrm = (tx[k] - m) * s;
                o[k] = tdx[k] + (dn[k] - dn_mean - nrm * dnn_mean) * s;
            }
            cpu_store(dxr + i, o, len);
        }
    }
}

// columns [lo, hi): dg += sum_r dy * norm, db += sum_r dy
CPU_MULTIVERSION static void k_ln_backward_dgdb(void *p, size_t lo, size_t hi, int part)
{
    const ln_args *a = p;
    const size_t n = a->C;
    (void)part;
    for (size_t c = lo; c < hi; c += CPU_VB) {
        size_t len = cpu_chunk_len(hi, c);
        float ag[CPU_VB] = {0}, ab[CPU_VB] = {0}, o[CPU_VB], pad[CPU_VB];
        for (size_t r = 0; r < a->rows; r++) {
            float px[CPU_VB], pdy[CPU_VB];
            const float *tx = cpu_src(a->x + r * n + c, len, px);
            const float *tdy = cpu_src(a->dy + r * n + c, len, pdy);
            const float m = a->cmean[r], s = a->crstd[r];
            for (int k = 0; k < CPU_VB; k++) {
                ag[k] += tdy[k] * ((tx[k] - m) * s);
                ab[k] += tdy[k];
            }
        }
        if (a->dg) {
            const float *t = cpu_src(a->dg + c, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = t[k] + ag[k];
            cpu_store(a->dg + c, o, len);
        }
        if (a->db) {
            const float *t = cpu_src(a->db + c, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = t[k] + ab[k];
            cpu_store(a->db + c, o, len);
        }
    }
}

// dy, x, dx: [rows, C]; g, dg, db: [C] (g NULL: no affine); mean, rstd: [rows]
void cpu_layernorm_backward(backend_t *be, float *dx, float *dg, float *db, const float *dy,
                            const float *x, const float *g, const float *mean,
                            const float *rstd, int rows, int C)
{
    ln_args a = {.dx = dx, .dg = dg, .db = db, .dy = dy, .x = x, .g = g, .cmean = mean,
                 .crstd = rstd, .rows = (size_t)rows, .C = (size_t)C};
    cpu_pool_run(cpu_pool_of(be), k_ln_backward_dx, &a, (size_t)rows, cpu_min_rows((size_t)C),
                 1);
    if (g && (dg || db)) {
        size_t min_cols = cpu_min_rows((size_t)rows); /* a column holds `rows` floats */
        cpu_pool_run(cpu_pool_of(be), k_ln_backward_dgdb, &a, (size_t)C,
                     (min_cols + CPU_VB - 1) / CPU_VB * CPU_VB, CPU_VB);
    }
}

/* ------------------------------------------------------------------------- */
/* softmax                                                                   */

typedef struct sm_args {
    float *y, *dx;
    const float *x, *dy, *cy;
    float scale;
    size_t cols;
} sm_args;

// rows [lo, hi): y = softmax(scale * x)
CPU_MULTIVERSION static void k_softmax_forward(void *p, size_t lo, size_t hi, int part)
{
    const sm_args *a = p;
    const size_t n = a->cols;
    const float scale = a->scale;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const float *xr = a->x + r * n;
        float *yr = a->y + r * n;
        const float mx = cpu_row_max_scaled(xr, scale, n);
        float acc[CPU_VB] = {0};
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = cpu_expf(scale * tx[k] - mx);
            if (len < CPU_VB)
                memset(o + len, 0, (CPU_VB - len) * sizeof(float));
            for (int k = 0; k < CPU_VB; k++)
                acc[k] += o[k];
            cpu_store(yr + i, o, len);
        }
        const float inv = 1.0f / cpu_hsum(acc);
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float py[CPU_VB], o[CPU_VB];
            const float *ty = cpu_src(yr + i, len, py);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = ty[k] * inv;
            cpu_store(yr + i, o, len);
        }
    }
}

// x, y: [rows, cols]; y[r,:] = softmax(scale * x[r,:]); y may alias x
void cpu_softmax_forward(backend_t *be, float *y, const float *x, float scale, int rows,
                         int cols)
{
    if (cols <= 0)
        return;
    sm_args a = {.y = y, .x = x, .scale = scale, .cols = (size_t)cols};
    cpu_pool_run(cpu_pool_of(be), k_softmax_forward, &a, (size_t)rows,
                 cpu_min_rows((size_t)cols), 1);
}

// rows [lo, hi): dx += scale * y * (dy - sum(dy * y))
CPU_MULTIVERSION static void k_softmax_backward(void *p, size_t lo, size_t hi, int part)
{
    const sm_args *a = p;
    const size_t n = a->cols;
    const float scale = a->scale;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const float *yr = a->cy + r * n, *dyr = a->dy + r * n;
        float *dxr = a->dx + r * n;
        const float dot = cpu_row_dot(dyr, yr, n);
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float py[CPU_VB], pdy[CPU_VB], pdx[CPU_VB], o[CPU_VB];
            const float *ty = cpu_src(yr + i, len, py), *tdy = cpu_src(dyr + i, len, pdy);
            const float *tdx = cpu_src(dxr + i, len, pdx);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = tdx[k] + scale * ty[k] * (tdy[k] - dot);
            cpu_store(dxr + i, o, len);
        }
    }
}

// dx: [rows, cols] += scale * y * (dy - sum(dy * y))
void cpu_softmax_backward(backend_t *be, float *dx, const float *dy, const float *y,
                          float scale, int rows, int cols)
{
    sm_args a = {.dx = dx, .dy = dy, .cy = y, .scale = scale, .cols = (size_t)cols};
    cpu_pool_run(cpu_pool_of(be), k_softmax_backward, &a, (size_t)rows,
                 cpu_min_rows((size_t)cols), 1);
}

/* ------------------------------------------------------------------------- */
/* layout                                                                    */

// in: [A, B, C, D] -> out: [A, C, B, D]
void cpu_permute_0213(backend_t *be, float *out, const float *in, int A, int B, int C, int D)
{
    (void)be;
    const size_t row = (size_t)D * sizeof(float);
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                memcpy(out + (((size_t)a * C + c) * B + b) * D,
                       in + (((size_t)a * B + b) * C + c) * D, row);
}

// in: [N, C] -> out: [A, N, C]
typedef struct repeat_args {
    float *out;
    const float *in;
    size_t block;
} repeat_args;

// copies [lo, hi) of out: [A, block] from in: [block]
static void k_repeat_rows(void *p, size_t lo, size_t hi, int part)
{
    const repeat_args *a = p;
    (void)part;
    for (size_t r = lo; r < hi; r++)
        memcpy(a->out + r * a->block, a->in, a->block * sizeof(float));
}

void cpu_repeat_rows(backend_t *be, float *out, const float *in, int A, int N, int C)
{
    repeat_args a = {.out = out, .in = in, .block = (size_t)N * C};
    cpu_pool_run(cpu_pool_of(be), k_repeat_rows, &a, (size_t)A, 4 * cpu_min_rows(a.block), 1);
}

// din: [N, C] += sum_a dout: [A, N, C]
void cpu_repeat_rows_backward(backend_t *be, float *din, const float *dout, int A, int N, int C)
{
    cpu_sum_rows(be, din, dout, A, N * C);
}

/* ------------------------------------------------------------------------- */
/* adaLN modulation                                                          */

typedef struct mod_args {
    float *y, *dx, *d1, *d2;          /* outputs: y or dx; dshift/dgate, dscale/dh */
    const float *x, *h, *p1, *p2, *dy; /* p1 = shift or gate, p2 = scale */
    size_t ld, N, C, nchunks;
} mod_args;

// rows [lo, hi) of [B*N, C]: y = x * (1 + scale[b]) + shift[b]
CPU_MULTIVERSION static void k_modulate_forward(void *p, size_t lo, size_t hi, int part)
{
    const mod_args *a = p;
    const size_t n = a->C;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const size_t b = r / a->N;
        const float *sh = a->p1 + b * a->ld, *sc = a->p2 + b * a->ld;
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], psh[CPU_VB], psc[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(a->x + r * n + i, len, px);
            const float *tsh = cpu_src(sh + i, len, psh), *tsc = cpu_src(sc + i, len, psc);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = tx[k] * (1.0f + tsc[k]) + tsh[k];
            cpu_store(a->y + r * n + i, o, len);
        }
    }
}

// x, y: [B, N, C]; shift, scale: [B, C] with row stride ld; y may alias x
void cpu_modulate_forward(backend_t *be, float *y, const float *x, const float *shift,
                          const float *scale, int ld, int B, int N, int C)
{
    mod_args a = {.y = y, .x = x, .p1 = shift, .p2 = scale, .ld = (size_t)ld, .N = (size_t)N,
                  .C = (size_t)C};
    cpu_pool_run(cpu_pool_of(be), k_modulate_forward, &a, (size_t)B * N,
                 cpu_min_rows((size_t)C), 1);
}

// items [lo, hi) = (b, column chunk) pairs: dx += dy (1 + scale); dshift += sum_n dy;
// dscale += sum_n dy x
CPU_MULTIVERSION static void k_modulate_backward(void *p, size_t lo, size_t hi, int part)
{
    const mod_args *a = p;
    const size_t n = a->C;
    (void)part;
    for (size_t item = lo; item < hi; item++) {
        const size_t b = item / a->nchunks, i = item % a->nchunks * CPU_VB;
        const size_t len = cpu_chunk_len(n, i);
        float psc[CPU_VB], ash[CPU_VB] = {0}, asc[CPU_VB] = {0}, o[CPU_VB], pad[CPU_VB];
        const float *tsc = cpu_src(a->p2 + b * a->ld + i, len, psc);
        for (size_t j = 0; j < a->N; j++) {
            const size_t off = (b * a->N + j) * n + i;
            float pdy[CPU_VB], px[CPU_VB];
            const float *tdy = cpu_src(a->dy + off, len, pdy);
            const float *tx = cpu_src(a->x + off, len, px);
            if (a->dx) {
                const float *tdx = cpu_src(a->dx + off, len, pad);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = tdx[k] + tdy[k] * (1.0f + tsc[k]);
                cpu_store(a->dx + off, o, len);
            }
            for (int k = 0; k < CPU_VB; k++) {
                ash[k] += tdy[k];
                asc[k] += tdy[k] * tx[k];
            }
        }
        if (a->d1) {
            float *t = a->d1 + b * a->ld + i;
            const float *s = cpu_src(t, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = s[k] + ash[k];
            cpu_store(t, o, len);
        }
        if (a->d2) {
            float *t = a->d2 + b * a->ld + i;
            const float *s = cpu_src(t, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = s[k] + asc[k];
            cpu_store(t, o, len);
        }
    }
}

// dy, x, dx: [B, N, C]; scale, dshift, dscale: [B, C] with row stride ld
void cpu_modulate_backward(backend_t *be, float *dx, float *dshift, float *dscale,
                           const float *dy, const float *x, const float *scale, int ld, int B,
                           int N, int C)
{
    const size_t nchunks = ((size_t)C + CPU_VB - 1) / CPU_VB;
    mod_args a = {.dx = dx, .d1 = dshift, .d2 = dscale, .dy = dy, .x = x, .p2 = scale,
                  .ld = (size_t)ld, .N = (size_t)N, .C = (size_t)C, .nchunks = nchunks};
    size_t per_item = (size_t)N * CPU_VB;
    cpu_pool_run(cpu_pool_of(be), k_modulate_backward, &a, (size_t)B * nchunks,
                 cpu_min_rows(per_item), 1);
}

// rows [lo, hi) of [B*N, C]: y = x + gate[b] * h
CPU_MULTIVERSION static void k_gated_add_forward(void *p, size_t lo, size_t hi, int part)
{
    const mod_args *a = p;
    const size_t n = a->C;
    (void)part;
    for (size_t r = lo; r < hi; r++) {
        const float *gt = a->p1 + r / a->N * a->ld;
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], ph[CPU_VB], pg[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(a->x + r * n + i, len, px);
            const float *th = cpu_src(a->h + r * n + i, len, ph), *tg = cpu_src(gt + i, len, pg);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = tx[k] + tg[k] * th[k];
            cpu_store(a->y + r * n + i, o, len);
        }
    }
}

// x, h, y: [B, N, C]; gate: [B, C] with row stride ld; y = x + gate * h; y may alias x
void cpu_gated_add_forward(backend_t *be, float *y, const float *x, const float *gate,
                           const float *h, int ld, int B, int N, int C)
{
    mod_args a = {.y = y, .x = x, .h = h, .p1 = gate, .ld = (size_t)ld, .N = (size_t)N,
                  .C = (size_t)C};
    cpu_pool_run(cpu_pool_of(be), k_gated_add_forward, &a, (size_t)B * N,
                 cpu_min_rows((size_t)C), 1);
}

// items [lo, hi) = (b, column chunk) pairs: dx += dy; dh += dy gate; dgate += sum_n dy h
CPU_MULTIVERSION static void k_gated_add_backward(void *p, size_t lo, size_t hi, int part)
{
    const mod_args *a = p;
    const size_t n = a->C;
    (void)part;
    for (size_t item = lo; item < hi; item++) {
        const size_t b = item / a->nchunks, i = item % a->nchunks * CPU_VB;
        const size_t len = cpu_chunk_len(n, i);
        float pg[CPU_VB], ag[CPU_VB] = {0}, o[CPU_VB], pad[CPU_VB];
        const float *tg = cpu_src(a->p1 + b * a->ld + i, len, pg);
        for (size_t j = 0; j < a->N; j++) {
            const size_t off = (b * a->N + j) * n + i;
            float pdy[CPU_VB], ph[CPU_VB];
            const float *tdy = cpu_src(a->dy + off, len, pdy);
            const float *th = cpu_src(a->h + off, len, ph);
            if (a->dx) {
                const float *t = cpu_src(a->dx + off, len, pad);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = t[k] + tdy[k];
                cpu_store(a->dx + off, o, len);
            }
            if (a->d2) {
                const float *t = cpu_src(a->d2 + off, len, pad);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = t[k] + tdy[k] * tg[k];
                cpu_store(a->d2 + off, o, len);
            }
            for (int k = 0; k < CPU_VB; k++)
                ag[k] += tdy[k] * th[k];
        }
        if (a->d1) {
            float *t = a->d1 + b * a->ld + i;
            const float *s = cpu_src(t, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = s[k] + ag[k];
            cpu_store(t, o, len);
        }
    }
}

// dx += dy; dh += dy * gate; dgate[b,c] += sum_n dy * h
void cpu_gated_add_backward(backend_t *be, float *dx, float *dgate, float *dh, const float *dy,
                            const float *gate, const float *h, int ld, int B, int N, int C)
{
    const size_t nchunks = ((size_t)C + CPU_VB - 1) / CPU_VB;
    mod_args a = {.dx = dx, .d1 = dgate, .d2 = dh, .dy = dy, .p1 = gate, .h = h,
                  .ld = (size_t)ld, .N = (size_t)N, .C = (size_t)C, .nchunks = nchunks};
    size_t per_item = (size_t)N * CPU_VB;
    cpu_pool_run(cpu_pool_of(be), k_gated_add_backward, &a, (size_t)B * nchunks,
                 cpu_min_rows(per_item), 1);
}
