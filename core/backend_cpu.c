/* backend_cpu.c - the CPU backend: OpenBLAS sgemm and plain C loops.
 *
 * Elementwise loops run over chunks of CPU_VB floats with fixed-length inner loops: gcc's
 * -O2 vectoriser (the "very-cheap" cost model) only vectorises loops whose trip count is
 * a known multiple of the vector width, so every hot loop is written that way. A chunk
 * reads its operands in place (cpu_src; the last, partial chunk reads zero-padded copies),
 * computes into a local array and then stores it (cpu_store): reads never follow a write to
 * the same chunk, so in-place calls (y == x) are safe, and no operand goes through a stack
 * copy (a 32-byte load of two 16-byte stores would stall store forwarding).
 * Transcendentals use cpu_expf below (branch-free, vectorisable, ~1 ulp); sqrt uses SSE
 * where available. No op allocates memory or blocks. */
#include "backend.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "rng.h"

/* Hot loops are compiled twice, for the x86-64 baseline (SSE2) and for AVX2, and the
 * loader picks one by CPU (GCC function multi-versioning, an ifunc). Both give the same bits:
 * ISO C mode (-std=c11) does not contract a * b + c into FMA, and AVX2 has no other
 * rounding difference. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define CPU_MULTIVERSION
#endif
#define CPU_INLINE static inline __attribute__((always_inline))

#define CPU_VB 16          /* floats per chunk */
#define CPU_ALIGN 64       /* bytes; also the size of the header before each block */
#define CPU_LN_EPS 1e-5f

typedef struct cpu_impl {
    atomic_size_t used; /* bytes handed out by alloc and not yet freed */
} cpu_impl;

/* ------------------------------------------------------------------------- */
/* chunk helpers                                                             */

CPU_INLINE size_t cpu_chunk_len(size_t n, size_t i)
{
    return n - i < CPU_VB ? n - i : CPU_VB;
}

/* the chunk p[0..VB): p itself when len == VB, else pad holding p[0..len) and zeros */
CPU_INLINE const float *cpu_src(const float *p, size_t len, float *pad)
{
    if (len == CPU_VB)
        return p;
    memcpy(pad, p, len * sizeof(float));
    memset(pad + len, 0, (CPU_VB - len) * sizeof(float));
    return pad;
}

/* p[0..len) = t[0..len) */
CPU_INLINE void cpu_store(float *p, const float *t, size_t len)
{
    if (len == CPU_VB)
        memcpy(p, t, CPU_VB * sizeof(float));
    else
        memcpy(p, t, len * sizeof(float));
}

/* exp(x) for float, branch-free (Cephes expf polynomial, range reduction by ln 2).
 * |x| is clamped to 87 so 2^n stays a normal float: exp(x < -87) returns exp(-87) ~
 * 1.6e-38, exp(x > 87) returns exp(87) ~ 6.1e37. NaN propagates. The clamp works on the
 * bits: a float comparison would be a possible trap under -ftrapping-math, which stops
 * gcc from if-converting (and so vectorising) the loop. */
CPU_INLINE float cpu_expf(float x)
{
    uint32_t xb;
    memcpy(&xb, &x, sizeof xb);
    int32_t ab = (int32_t)(xb & 0x7fffffffu);
    /* all ones when 87 < |x| <= inf (NaN excluded) */
    uint32_t big = (uint32_t)(-(int32_t)(ab > 0x42AE0000)) &
                   (uint32_t)(-(int32_t)(ab <= 0x7f800000));
    xb = (xb & ~big) | (((xb & 0x80000000u) | 0x42AE0000u) & big);
    memcpy(&x, &xb, sizeof x);
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick: n sits in the low mantissa bits of t */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float fn = t - 12582912.0f;
    float r = x - fn * 0.693359375f;
    r = r + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t sb = (tb + (127u - 0x4B400000u)) << 23; /* (n + 127) << 23 = 2^n */
    float s;
    memcpy(&s, &sb, sizeof s);
    return p * s;
}

/* y[VB] = sqrt(x[VB]) (y may be x) */
CPU_INLINE void cpu_sqrt_chunk(float *y, const float *x)
{
#if defined(__SSE2__)
    for (int k = 0; k < CPU_VB; k += 4)
        _mm_storeu_ps(y + k, _mm_sqrt_ps(_mm_loadu_ps(x + k)));
#else
    for (int k = 0; k < CPU_VB; k++)
        y[k] = sqrtf(x[k]);
#endif
}

/* ------------------------------------------------------------------------- */
/* memory                                                                    */

static void *cpu_alloc(backend_t *be, size_t bytes)
{
    cpu_impl *im = be->impl;
    if (bytes > SIZE_MAX - 2 * CPU_ALIGN)
        return NULL;
    size_t padded = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    void *raw = NULL;
    if (posix_memalign(&raw, CPU_ALIGN, CPU_ALIGN + padded) != 0)
        return NULL;
    memset(raw, 0, CPU_ALIGN + padded);
    memcpy(raw, &padded, sizeof padded);
    atomic_fetch_add(&im->used, padded);
    return (char *)raw + CPU_ALIGN;
}

static void cpu_free(backend_t *be, void *p)
{
    if (!p)
        return;
    cpu_impl *im = be->impl;
    char *raw = (char *)p - CPU_ALIGN;
    size_t padded;
    memcpy(&padded, raw, sizeof padded);
    atomic_fetch_sub(&im->used, padded);
    free(raw);
}

static int cpu_to_device(backend_t *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memcpy(dst, src, bytes);
    return 0;
}

static int cpu_to_host(backend_t *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memcpy(dst, src, bytes);
    return 0;
}

static int cpu_copy(backend_t *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes && dst != src)
        memmove(dst, src, bytes);
    return 0;
}

static int cpu_sync(backend_t *be)
{
    (void)be;
    return 0;
}

static void cpu_memory(backend_t *be, size_t *used, size_t *total)
{
    cpu_impl *im = be->impl;
    if (used)
        *used = atomic_load(&im->used);
    if (total) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        *total = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
    }
}

/* ------------------------------------------------------------------------- */
/* BLAS                                                                      */

// C: [M, N] = alpha op(A): [M, K] @ op(B): [K, N] + beta C
static void cpu_gemm(backend_t *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc)
{
    (void)be;
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* no product: C = beta C (BLAS would reject lda = 0) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

// C_i: [M, N] = alpha op(A_i) @ op(B_i) + beta C_i for i in [0, batch)
static void cpu_gemm_batched(backend_t *be, int trans_a, int trans_b, int M, int N, int K,
                             float alpha, const float *A, int lda, long long stride_a,
                             const float *B, int ldb, long long stride_b, float beta, float *C,
                             int ldc, long long stride_c, int batch)
{
    for (int i = 0; i < batch; i++)
        cpu_gemm(be, trans_a, trans_b, M, N, K, alpha, A + (ptrdiff_t)i * stride_a, lda,
                 B + (ptrdiff_t)i * stride_b, ldb, beta, C + (ptrdiff_t)i * stride_c, ldc);
}

/* ------------------------------------------------------------------------- */
/* elementwise                                                               */

// x: [n] = value
static void cpu_fill(backend_t *be, float *x, float value, size_t n)
{
    (void)be;
    if (value == 0.0f && !signbit(value)) {
        memset(x, 0, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++)
        x[i] = value;
}

// x: [n] *= a
CPU_MULTIVERSION static void cpu_scale(backend_t *be, float *x, float a, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float px[CPU_VB], o[CPU_VB];
        const float *tx = cpu_src(x + i, len, px);
        for (int k = 0; k < CPU_VB; k++)
            o[k] = tx[k] * a;
        cpu_store(x + i, o, len);
    }
}

// y: [n] = a x + b y   (b == 0: y is not read)
CPU_MULTIVERSION static void cpu_axpby(backend_t *be, float *y, float a, const float *x,
                                       float b, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float px[CPU_VB], py[CPU_VB], o[CPU_VB];
        const float *tx = cpu_src(x + i, len, px);
        if (b == 0.0f) {
            for (int k = 0; k < CPU_VB; k++)
                o[k] = a * tx[k];
        } else {
            const float *ty = cpu_src(y + i, len, py);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = a * tx[k] + b * ty[k];
        }
        cpu_store(y + i, o, len);
    }
}

// y: [n] = a + b
CPU_MULTIVERSION static void cpu_add(backend_t *be, float *y, const float *a, const float *b,
                                     size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float pa[CPU_VB], pb[CPU_VB], o[CPU_VB];
        const float *ta = cpu_src(a + i, len, pa), *tb = cpu_src(b + i, len, pb);
        for (int k = 0; k < CPU_VB; k++)
            o[k] = ta[k] + tb[k];
        cpu_store(y + i, o, len);
    }
}

// y: [n] = a * b
CPU_MULTIVERSION static void cpu_mul(backend_t *be, float *y, const float *a, const float *b,
                                     size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float pa[CPU_VB], pb[CPU_VB], o[CPU_VB];
        const float *ta = cpu_src(a + i, len, pa), *tb = cpu_src(b + i, len, pb);
        for (int k = 0; k < CPU_VB; k++)
            o[k] = ta[k] * tb[k];
        cpu_store(y + i, o, len);
    }
}

// y: [rows, cols] += bias: [cols]
static void cpu_add_bias(backend_t *be, float *y, const float *bias, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        cpu_add(be, y + (size_t)r * cols, y + (size_t)r * cols, bias, (size_t)cols);
}

// db: [cols] += sum_r dy: [rows, cols]
CPU_MULTIVERSION static void cpu_sum_rows(backend_t *be, float *db, const float *dy, int rows,
                                          int cols)
{
    (void)be;
    const size_t n = (size_t)cols;
    for (size_t c = 0; c < n; c += CPU_VB) {
        size_t len = cpu_chunk_len(n, c);
        float pad[CPU_VB], acc[CPU_VB];
        const float *t = cpu_src(db + c, len, pad);
        for (int k = 0; k < CPU_VB; k++)
            acc[k] = t[k];
        for (int r = 0; r < rows; r++) {
            t = cpu_src(dy + (size_t)r * n + c, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                acc[k] += t[k];
        }
        cpu_store(db + c, acc, len);
    }
}

#define CPU_GELU_C 0.7978845608028654f /* sqrt(2 / pi) */
#define CPU_GELU_A 0.044715f

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
    case ACT_IDENTITY:
    default:
        for (int k = 0; k < CPU_VB; k++)
            o[k] = x[k];
        break;
    }
}

// y: [n] = act(x: [n]); y may alias x
CPU_MULTIVERSION static void cpu_act_forward(backend_t *be, act_kind kind, float *y,
                                             const float *x, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float px[CPU_VB], o[CPU_VB];
        cpu_act_chunk(kind, o, cpu_src(x + i, len, px));
        cpu_store(y + i, o, len);
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
    case ACT_IDENTITY:
    default:
        for (int k = 0; k < CPU_VB; k++)
            d[k] = 1.0f;
        break;
    }
}

// dx: [n] += act'(x: [n]) * dy: [n]
CPU_MULTIVERSION static void cpu_act_backward(backend_t *be, act_kind kind, float *dx,
                                              const float *dy, const float *x, size_t n)
{
    (void)be;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float px[CPU_VB], pdy[CPU_VB], pdx[CPU_VB], d[CPU_VB], o[CPU_VB];
        cpu_act_grad_chunk(kind, d, cpu_src(x + i, len, px));
        const float *tdy = cpu_src(dy + i, len, pdy), *tdx = cpu_src(dx + i, len, pdx);
        for (int k = 0; k < CPU_VB; k++)
            o[k] = tdx[k] + d[k] * tdy[k];
        cpu_store(dx + i, o, len);
    }
}

/* ------------------------------------------------------------------------- */
/* row reductions                                                            */

CPU_INLINE float cpu_hsum(const float *acc)
{
    float s = 0.0f;
    for (int k = 0; k < CPU_VB; k++)
        s += acc[k];
    return s;
}

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

/* max of s * x[0..n), n >= 1 */
CPU_INLINE float cpu_row_max_scaled(const float *x, float s, size_t n)
{
    float m = s * x[0];
    for (size_t i = 1; i < n; i++) {
        float v = s * x[i];
        m = v > m ? v : m;
    }
    return m;
}

// x, y: [rows, C]; g, b: [C] or NULL; mean, rstd: [rows]; y may alias x
CPU_MULTIVERSION static void cpu_layernorm_forward(backend_t *be, float *y, float *mean,
                                                   float *rstd, const float *x, const float *g,
                                                   const float *b, int rows, int C)
{
    (void)be;
    const size_t n = (size_t)C;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        float m = cpu_row_sum(xr, n) / (float)C;
        float var = cpu_row_sq_dev(xr, m, n) / (float)C;
        float s = 1.0f / sqrtf(var + CPU_LN_EPS);
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], pg[CPU_VB], pb[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = (tx[k] - m) * s;
            if (g) {
                const float *tg = cpu_src(g + i, len, pg);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] *= tg[k];
            }
            if (b) {
                const float *tb = cpu_src(b + i, len, pb);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] += tb[k];
            }
            cpu_store(yr + i, o, len);
        }
        mean[r] = m;
        rstd[r] = s;
    }
}

// dy, x, dx: [rows, C]; g, dg, db: [C] (g NULL: no affine); mean, rstd: [rows]
CPU_MULTIVERSION static void cpu_layernorm_backward(backend_t *be, float *dx, float *dg,
                                                    float *db, const float *dy, const float *x,
                                                    const float *g, const float *mean,
                                                    const float *rstd, int rows, int C)
{
    (void)be;
    const size_t n = (size_t)C;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n, *dyr = dy + (size_t)r * n;
        float *dxr = dx + (size_t)r * n;
        const float m = mean[r], s = rstd[r];
        /* pass 1: means of dnorm and dnorm * norm (dnorm = dy * g, norm = (x - m) s);
         * dg += dy * norm, db += dy. Padded lanes have dy = 0 and add nothing. */
        float acc1[CPU_VB] = {0}, acc2[CPU_VB] = {0};
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], pdy[CPU_VB], pg[CPU_VB], pd[CPU_VB], dn[CPU_VB], nrm[CPU_VB],
                o[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px), *tdy = cpu_src(dyr + i, len, pdy);
            for (int k = 0; k < CPU_VB; k++)
                nrm[k] = (tx[k] - m) * s;
            if (g) {
                const float *tg = cpu_src(g + i, len, pg);
                for (int k = 0; k < CPU_VB; k++)
                    dn[k] = tdy[k] * tg[k];
                if (dg) {
                    const float *t = cpu_src(dg + i, len, pd);
                    for (int k = 0; k < CPU_VB; k++)
                        o[k] = t[k] + tdy[k] * nrm[k];
                    cpu_store(dg + i, o, len);
                }
                if (db) {
                    const float *t = cpu_src(db + i, len, pd);
                    for (int k = 0; k < CPU_VB; k++)
                        o[k] = t[k] + tdy[k];
                    cpu_store(db + i, o, len);
                }
            } else {
                for (int k = 0; k < CPU_VB; k++)
                    dn[k] = tdy[k];
            }
            for (int k = 0; k < CPU_VB; k++) {
                acc1[k] += dn[k];
                acc2[k] += dn[k] * nrm[k];
            }
        }
        const float dn_mean = cpu_hsum(acc1) / (float)C;
        const float dnn_mean = cpu_hsum(acc2) / (float)C;
        /* pass 2: dx += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd */
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float px[CPU_VB], pdy[CPU_VB], pg[CPU_VB], pdx[CPU_VB], dn[CPU_VB], o[CPU_VB];
            const float *tx = cpu_src(xr + i, len, px), *tdy = cpu_src(dyr + i, len, pdy);
            const float *tdx = cpu_src(dxr + i, len, pdx);
            if (g) {
                const float *tg = cpu_src(g + i, len, pg);
                for (int k = 0; k < CPU_VB; k++)
                    dn[k] = tdy[k] * tg[k];
            } else {
                for (int k = 0; k < CPU_VB; k++)
                    dn[k] = tdy[k];
            }
            for (int k = 0; k < CPU_VB; k++) {
                float nrm = (tx[k] - m) * s;
                o[k] = tdx[k] + (dn[k] - dn_mean - nrm * dnn_mean) * s;
            }
            cpu_store(dxr + i, o, len);
        }
    }
}

// x, y: [rows, cols]; y[r,:] = softmax(scale * x[r,:]); y may alias x
CPU_MULTIVERSION static void cpu_softmax_forward(backend_t *be, float *y, const float *x,
                                                 float scale, int rows, int cols)
{
    (void)be;
    const size_t n = (size_t)cols;
    if (n == 0)
        return;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
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

// dx: [rows, cols] += scale * y * (dy - sum(dy * y))
CPU_MULTIVERSION static void cpu_softmax_backward(backend_t *be, float *dx, const float *dy,
                                                  const float *y, float scale, int rows,
                                                  int cols)
{
    (void)be;
    const size_t n = (size_t)cols;
    for (int r = 0; r < rows; r++) {
        const float *yr = y + (size_t)r * n, *dyr = dy + (size_t)r * n;
        float *dxr = dx + (size_t)r * n;
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

// in: [A, B, C, D] -> out: [A, C, B, D]
static void cpu_permute_0213(backend_t *be, float *out, const float *in, int A, int B, int C,
                             int D)
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
static void cpu_repeat_rows(backend_t *be, float *out, const float *in, int A, int N, int C)
{
    (void)be;
    const size_t block = (size_t)N * C;
    for (int a = 0; a < A; a++)
        memcpy(out + (size_t)a * block, in, block * sizeof(float));
}

// din: [N, C] += sum_a dout: [A, N, C]
static void cpu_repeat_rows_backward(backend_t *be, float *din, const float *dout, int A, int N,
                                     int C)
{
    cpu_sum_rows(be, din, dout, A, N * C);
}

/* ------------------------------------------------------------------------- */
/* adaLN modulation                                                          */

// x, y: [B, N, C]; shift, scale: [B, C] with row stride ld; y may alias x
CPU_MULTIVERSION static void cpu_modulate_forward(backend_t *be, float *y, const float *x,
                                                  const float *shift, const float *scale,
                                                  int ld, int B, int N, int C)
{
    (void)be;
    const size_t n = (size_t)C;
    for (int b = 0; b < B; b++) {
        const float *sh = shift + (size_t)b * ld, *sc = scale + (size_t)b * ld;
        for (int j = 0; j < N; j++) {
            const size_t row = ((size_t)b * N + j) * n;
            for (size_t i = 0; i < n; i += CPU_VB) {
                size_t len = cpu_chunk_len(n, i);
                float px[CPU_VB], psh[CPU_VB], psc[CPU_VB], o[CPU_VB];
                const float *tx = cpu_src(x + row + i, len, px);
                const float *tsh = cpu_src(sh + i, len, psh), *tsc = cpu_src(sc + i, len, psc);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = tx[k] * (1.0f + tsc[k]) + tsh[k];
                cpu_store(y + row + i, o, len);
            }
        }
    }
}

// dy, x, dx: [B, N, C]; scale, dshift, dscale: [B, C] with row stride ld
CPU_MULTIVERSION static void cpu_modulate_backward(backend_t *be, float *dx, float *dshift,
                                                   float *dscale, const float *dy,
                                                   const float *x, const float *scale, int ld,
                                                   int B, int N, int C)
{
    (void)be;
    const size_t n = (size_t)C;
    for (int b = 0; b < B; b++) {
        const float *sc = scale + (size_t)b * ld;
        float *dsh = dshift ? dshift + (size_t)b * ld : NULL;
        float *dsc = dscale ? dscale + (size_t)b * ld : NULL;
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float psc[CPU_VB], ash[CPU_VB] = {0}, asc[CPU_VB] = {0}, o[CPU_VB], pad[CPU_VB];
            const float *tsc = cpu_src(sc + i, len, psc);
            for (int j = 0; j < N; j++) {
                const size_t row = ((size_t)b * N + j) * n;
                float pdy[CPU_VB], px[CPU_VB];
                const float *tdy = cpu_src(dy + row + i, len, pdy);
                const float *tx = cpu_src(x + row + i, len, px);
                if (dx) {
                    const float *tdx = cpu_src(dx + row + i, len, pad);
                    for (int k = 0; k < CPU_VB; k++)
                        o[k] = tdx[k] + tdy[k] * (1.0f + tsc[k]);
                    cpu_store(dx + row + i, o, len);
                }
                for (int k = 0; k < CPU_VB; k++) {
                    ash[k] += tdy[k];
                    asc[k] += tdy[k] * tx[k];
                }
            }
            if (dsh) {
                const float *t = cpu_src(dsh + i, len, pad);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = t[k] + ash[k];
                cpu_store(dsh + i, o, len);
            }
            if (dsc) {
                const float *t = cpu_src(dsc + i, len, pad);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = t[k] + asc[k];
                cpu_store(dsc + i, o, len);
            }
        }
    }
}

// x, h, y: [B, N, C]; gate: [B, C] with row stride ld; y = x + gate * h; y may alias x
CPU_MULTIVERSION static void cpu_gated_add_forward(backend_t *be, float *y, const float *x,
                                                   const float *gate, const float *h, int ld,
                                                   int B, int N, int C)
{
    (void)be;
    const size_t n = (size_t)C;
    for (int b = 0; b < B; b++) {
        const float *gt = gate + (size_t)b * ld;
        for (int j = 0; j < N; j++) {
            const size_t row = ((size_t)b * N + j) * n;
            for (size_t i = 0; i < n; i += CPU_VB) {
                size_t len = cpu_chunk_len(n, i);
                float px[CPU_VB], ph[CPU_VB], pg[CPU_VB], o[CPU_VB];
                const float *tx = cpu_src(x + row + i, len, px);
                const float *th = cpu_src(h + row + i, len, ph), *tg = cpu_src(gt + i, len, pg);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = tx[k] + tg[k] * th[k];
                cpu_store(y + row + i, o, len);
            }
        }
    }
}

// dx += dy; dh += dy * gate; dgate[b,c] += sum_n dy * h
CPU_MULTIVERSION static void cpu_gated_add_backward(backend_t *be, float *dx, float *dgate,
                                                    float *dh, const float *dy,
                                                    const float *gate, const float *h, int ld,
                                                    int B, int N, int C)
{
    (void)be;
    const size_t n = (size_t)C;
    for (int b = 0; b < B; b++) {
        const float *gt = gate + (size_t)b * ld;
        float *dg = dgate ? dgate + (size_t)b * ld : NULL;
        for (size_t i = 0; i < n; i += CPU_VB) {
            size_t len = cpu_chunk_len(n, i);
            float pg[CPU_VB], ag[CPU_VB] = {0}, o[CPU_VB], pad[CPU_VB];
            const float *tg = cpu_src(gt + i, len, pg);
            for (int j = 0; j < N; j++) {
                const size_t row = ((size_t)b * N + j) * n;
                float pdy[CPU_VB], ph[CPU_VB];
                const float *tdy = cpu_src(dy + row + i, len, pdy);
                const float *th = cpu_src(h + row + i, len, ph);
                if (dx) {
                    const float *t = cpu_src(dx + row + i, len, pad);
                    for (int k = 0; k < CPU_VB; k++)
                        o[k] = t[k] + tdy[k];
                    cpu_store(dx + row + i, o, len);
                }
                if (dh) {
                    const float *t = cpu_src(dh + row + i, len, pad);
                    for (int k = 0; k < CPU_VB; k++)
                        o[k] = t[k] + tdy[k] * tg[k];
                    cpu_store(dh + row + i, o, len);
                }
                for (int k = 0; k < CPU_VB; k++)
                    ag[k] += tdy[k] * th[k];
            }
            if (dg) {
                const float *t = cpu_src(dg + i, len, pad);
                for (int k = 0; k < CPU_VB; k++)
                    o[k] = t[k] + ag[k];
                cpu_store(dg + i, o, len);
            }
        }
    }
}

/* ------------------------------------------------------------------------- */
/* reductions and losses                                                     */

// x: [n] -> out: [1] = sum x^2 (accumulated in double)
CPU_MULTIVERSION static void cpu_sumsq(backend_t *be, float *out, const float *x, size_t n)
{
    (void)be;
    double acc[CPU_VB] = {0};
    for (size_t i = 0; i < n; i += CPU_VB) {
        float pad[CPU_VB];
        const float *t = cpu_src(x + i, cpu_chunk_len(n, i), pad);
        for (int k = 0; k < CPU_VB; k++)
            acc[k] += (double)t[k] * (double)t[k];
    }
    double s = 0.0;
    for (int k = 0; k < CPU_VB; k++)
        s += acc[k];
    out[0] = (float)s;
}

// pred, target, dpred: [n] -> out: [1]
CPU_MULTIVERSION static void cpu_mse(backend_t *be, float *out, float *dpred, const float *pred,
                                     const float *target, size_t n, float gscale)
{
    (void)be;
    double acc[CPU_VB] = {0};
    const float g = n ? gscale * 2.0f / (float)n : 0.0f;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float pp[CPU_VB], pt[CPU_VB], e[CPU_VB];
        const float *tp = cpu_src(pred + i, len, pp), *tt = cpu_src(target + i, len, pt);
        for (int k = 0; k < CPU_VB; k++)
            e[k] = tp[k] - tt[k];
        for (int k = 0; k < CPU_VB; k++)
            acc[k] += (double)e[k] * (double)e[k];
        if (dpred) {
            for (int k = 0; k < CPU_VB; k++)
                e[k] *= g;
            cpu_store(dpred + i, e, len);
        }
    }
    double s = 0.0;
    for (int k = 0; k < CPU_VB; k++)
        s += acc[k];
    out[0] = n ? (float)(s / (double)n) : 0.0f;
}

// logits, dlogits: [rows, C]; labels: [rows] -> out: [1]
CPU_MULTIVERSION static void cpu_cross_entropy(backend_t *be, float *out, float *dlogits,
                                               const float *logits, const int32_t *labels,
                                               int rows, int C, float gscale)
{
    (void)be;
    double loss = 0.0;
    const size_t n = (size_t)C;
    const float g = rows > 0 ? gscale / (float)rows : 0.0f;
    for (int r = 0; r < rows && C > 0; r++) {
        const float *xr = logits + (size_t)r * n;
        const int32_t lab = labels[r];
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
        const int valid = lab >= 0 && lab < C; /* an invalid label contributes nothing */
        if (valid)
            loss += (double)(mx + logf(sum)) - (double)xr[lab];
        if (dlogits && !valid) {
            memset(dlogits + (size_t)r * n, 0, n * sizeof(float));
        } else if (dlogits) {
            float *dr = dlogits + (size_t)r * n;
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
    }
    out[0] = rows > 0 ? (float)(loss / rows) : 0.0f;
}

// mu, logvar, dmu, dlogvar: [n] -> out: [1]
CPU_MULTIVERSION static void cpu_kl_gauss(backend_t *be, float *out, float *dmu, float *dlogvar,
                                          const float *mu, const float *logvar, size_t n,
                                          int rows, float gscale)
{
    (void)be;
    double acc[CPU_VB] = {0};
    const float inv_rows = rows > 0 ? 1.0f / (float)rows : 0.0f;
    const float gm = gscale * inv_rows, gl = 0.5f * gscale * inv_rows;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float pm[CPU_VB], pl[CPU_VB], e[CPU_VB], o[CPU_VB], pad[CPU_VB];
        const float *tm = cpu_src(mu + i, len, pm), *tl = cpu_src(logvar + i, len, pl);
        for (int k = 0; k < CPU_VB; k++)
            e[k] = cpu_expf(tl[k]);
        /* padded lanes: mu = 0, logvar = 0 -> 0 + 1 - 1 - 0 = 0 */
        for (int k = 0; k < CPU_VB; k++)
            acc[k] += (double)(tm[k] * tm[k] + e[k] - 1.0f - tl[k]);
        if (dmu) {
            const float *t = cpu_src(dmu + i, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = t[k] + gm * tm[k];
            cpu_store(dmu + i, o, len);
        }
        if (dlogvar) {
            const float *t = cpu_src(dlogvar + i, len, pad);
            for (int k = 0; k < CPU_VB; k++)
                o[k] = t[k] + gl * (e[k] - 1.0f);
            cpu_store(dlogvar + i, o, len);
        }
    }
    double s = 0.0;
    for (int k = 0; k < CPU_VB; k++)
        s += acc[k];
    out[0] = (float)(0.5 * s * (double)inv_rows);
}

/* ------------------------------------------------------------------------- */
/* optimiser                                                                 */

// w, g, m, v: [n]
CPU_MULTIVERSION static void cpu_adamw(backend_t *be, float *w, const float *g, float *m,
                                       float *v, size_t n, float lr, float beta1, float beta2,
                                       float eps, float wd, int t, float gscale)
{
    (void)be;
    const float ib1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)t)));
    const float ib2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)t)));
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
    for (size_t i = 0; i < n; i += CPU_VB) {
        size_t len = cpu_chunk_len(n, i);
        float pw[CPU_VB], pg[CPU_VB], pm[CPU_VB], pv[CPU_VB];
        float ow[CPU_VB], om[CPU_VB], ov[CPU_VB], den[CPU_VB];
        const float *tw = cpu_src(w + i, len, pw), *tg = cpu_src(g + i, len, pg);
        const float *tm = cpu_src(m + i, len, pm), *tv = cpu_src(v + i, len, pv);
        for (int k = 0; k < CPU_VB; k++) {
            float gg = tg[k] * gscale;
            om[k] = beta1 * tm[k] + a1 * gg;
            ov[k] = beta2 * tv[k] + a2 * gg * gg;
            den[k] = ov[k] * ib2;
        }
        cpu_sqrt_chunk(den, den);
        for (int k = 0; k < CPU_VB; k++)
            ow[k] = tw[k] - lr * ((om[k] * ib1) / (den[k] + eps) + wd * tw[k]);
        cpu_store(w + i, ow, len);
        cpu_store(m + i, om, len);
        cpu_store(v + i, ov, len);
    }
}

// ema, w: [n]
static void cpu_ema(backend_t *be, float *ema, const float *w, size_t n, float decay)
{
    cpu_axpby(be, ema, 1.0f - decay, w, decay, n);
}

/* ------------------------------------------------------------------------- */
/* random numbers                                                            */

static void cpu_rand_uniform(backend_t *be, float *x, size_t n, uint64_t seed, uint64_t offset)
{
    (void)be;
    rng_fill_uniform(x, n, seed, offset);
}

static void cpu_rand_normal(backend_t *be, float *x, size_t n, uint64_t seed, uint64_t offset,
                            float mean, float std)
{
    (void)be;
    rng_fill_normal(x, n, seed, offset, mean, std);
}

static void cpu_destroy(backend_t *be)
{
    free(be->impl);
    free(be);
}

static const backend_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_to_device,
    .to_host = cpu_to_host,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .memory = cpu_memory,
    .gemm = cpu_gemm,
    .gemm_batched = cpu_gemm_batched,
    .fill = cpu_fill,
    .scale = cpu_scale,
    .axpby = cpu_axpby,
    .add = cpu_add,
    .mul = cpu_mul,
    .add_bias = cpu_add_bias,
    .sum_rows = cpu_sum_rows,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .permute_0213 = cpu_permute_0213,
    .repeat_rows = cpu_repeat_rows,
    .repeat_rows_backward = cpu_repeat_rows_backward,
    .modulate_forward = cpu_modulate_forward,
    .modulate_backward = cpu_modulate_backward,
    .gated_add_forward = cpu_gated_add_forward,
    .gated_add_backward = cpu_gated_add_backward,
    .sumsq = cpu_sumsq,
    .mse = cpu_mse,
    .cross_entropy = cpu_cross_entropy,
    .kl_gauss = cpu_kl_gauss,
    .adamw = cpu_adamw,
    .ema = cpu_ema,
    .rand_uniform = cpu_rand_uniform,
    .rand_normal = cpu_rand_normal,
    .destroy = cpu_destroy,
};

int backend_cpu_create(backend_t **out, int threads, d2_error *err)
{
    if (!out)
        return d2_fail(err, D2_EINVAL, "backend_cpu_create: out is NULL");
    *out = NULL;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    backend_t *be = calloc(1, sizeof *be);
    cpu_impl *im = calloc(1, sizeof *im);
    if (!be || !im) {
        free(be);
        free(im);
        return d2_fail(err, D2_ENOMEM, "backend_cpu_create: out of memory");
    }
    atomic_init(&im->used, 0);
    openblas_set_num_threads(threads);
    be->ops = &cpu_ops;
    be->impl = im;
    be->threads = threads;
    *out = be;
    return 0;
}
