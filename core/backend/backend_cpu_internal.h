/* backend_cpu_internal.h - shared by the CPU backend's files (backend_cpu.c: memory, BLAS,
 * the op table; backend_cpu_ops.c: elementwise, normalisation, softmax, layout, adaLN;
 * backend_cpu_loss.c: reductions, losses, optimiser).
 *
 * Loops run over chunks of CPU_VB floats with fixed-length inner loops: gcc's -O2 vectoriser
 * (the "very-cheap" cost model) only vectorises loops whose trip count is a known multiple
 * of the vector width, so every hot loop is written that way. A chunk reads its operands in
 * place (cpu_src; the last, partial chunk reads zero-padded copies), computes into a local
 * array and then stores it (cpu_store): reads never follow a write to the same chunk, so
 * in-place calls (y == x) are safe, and no operand goes through a stack copy (a 32-byte load
 * of two 16-byte stores would stall store forwarding). exp and sqrt are computed inline
 * (cpu_expf, cpu_sqrt_chunk: branch-free, vectorisable, within a few ulp).
 *
 * Large ops are split over the backend's threads with cpu_pool_run; kernels take item
 * ranges. No op allocates memory. */
#ifndef D2_BACKEND_CPU_INTERNAL_H
#define D2_BACKEND_CPU_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "cpu_pool.h"

/* Hot kernels are compiled twice, for the x86-64 baseline (SSE2) and for AVX2, and the
 * loader picks one by CPU (GCC function multi-versioning, an ifunc). Both give the same
 * bits: ISO C mode (-std=c11) does not contract a * b + c into FMA, and the kernels use no
 * other instruction whose rounding differs. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_THREAD__) /* TSan cannot run ifunc resolvers: they run before it */
#define CPU_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define CPU_MULTIVERSION
#endif
#define CPU_INLINE static inline __attribute__((always_inline))

#define CPU_VB 16             /* floats per chunk */
#define CPU_PAR_ITEMS 16384   /* floats of work below which an op stays on one thread */

typedef struct cpu_impl {
    atomic_size_t used; /* bytes handed out by alloc and not yet freed */
    cpu_pool *pool;
} cpu_impl;

static inline cpu_pool *cpu_pool_of(backend_t *be)
{
    return ((cpu_impl *)be->impl)->pool;
}

/* items per part so that a part holds at least CPU_PAR_ITEMS floats, for items (rows,
 * columns...) of `cols` floats each */
static inline size_t cpu_min_rows(size_t cols)
{
    return cols >= CPU_PAR_ITEMS ? 1 : CPU_PAR_ITEMS / (cols ? cols : 1);
}

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

CPU_INLINE float cpu_hsum(const float *acc)
{
    float s = 0.0f;
    for (int k = 0; k < CPU_VB; k++)
        s += acc[k];
    return s;
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

/* y[VB] = sqrt(x[VB]) for x >= 0 (y may be x). sqrtf itself is not vectorised by gcc while
 * errno must be kept, so: the bit-level estimate of 1/sqrt(x) and three Newton steps, then
 * x * (1/sqrt(x)); within 3 ulp of sqrtf (2.4e-7 relative), sqrt(0) = 0, NaN stays NaN. */
CPU_INLINE void cpu_sqrt_chunk(float *y, const float *x)
{
    for (int k = 0; k < CPU_VB; k++) {
        uint32_t b;
        float r, h = 0.5f * x[k];
        memcpy(&b, &x[k], sizeof b);
        b = 0x5f3759dfu - (b >> 1);
        memcpy(&r, &b, sizeof r);
        r = r * (1.5f - h * r * r);
        r = r * (1.5f - h * r * r);
        r = r * (1.5f - h * r * r);
        y[k] = x[k] * r;
    }
}

/* backend_cpu_gemm.c */
void cpu_gemm(backend_t *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void cpu_gemm_batched(backend_t *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, long long stride_a, const float *B, int ldb,
                      long long stride_b, float beta, float *C, int ldc, long long stride_c,
                      int batch);

/* backend_cpu_ops.c */
void cpu_axpby(backend_t *be, float *y, float a, const float *x, float b, size_t n);
void cpu_add_bias(backend_t *be, float *y, const float *bias, int rows, int cols);
void cpu_sum_rows(backend_t *be, float *db, const float *dy, int rows, int cols);
void cpu_act_forward(backend_t *be, act_kind kind, float *y, const float *x, size_t n);
void cpu_act_backward(backend_t *be, act_kind kind, float *dx, const float *dy, const float *x,
                      size_t n);
void cpu_layernorm_forward(backend_t *be, float *y, float *mean, float *rstd, const float *x,
                           const float *g, const float *b, int rows, int C);
void cpu_layernorm_backward(backend_t *be, float *dx, float *dg, float *db, const float *dy,
                            const float *x, const float *g, const float *mean,
                            const float *rstd, int rows, int C);
void cpu_softmax_forward(backend_t *be, float *y, const float *x, float scale, int rows,
                         int cols);
void cpu_softmax_backward(backend_t *be, float *dx, const float *dy, const float *y,
                          float scale, int rows, int cols);
void cpu_permute_0213(backend_t *be, float *out, const float *in, int A, int B, int C, int D);
void cpu_repeat_rows(backend_t *be, float *out, const float *in, int A, int N, int C);
void cpu_repeat_rows_backward(backend_t *be, float *din, const float *dout, int A, int N,
                              int C);
void cpu_modulate_forward(backend_t *be, float *y, const float *x, const float *shift,
                          const float *scale, int ld, int B, int N, int C);
void cpu_modulate_backward(backend_t *be, float *dx, float *dshift, float *dscale,
                           const float *dy, const float *x, const float *scale, int ld, int B,
                           int N, int C);
void cpu_gated_add_forward(backend_t *be, float *y, const float *x, const float *gate,
                           const float *h, int ld, int B, int N, int C);
void cpu_gated_add_backward(backend_t *be, float *dx, float *dgate, float *dh, const float *dy,
                            const float *gate, const float *h, int ld, int B, int N, int C);

/* backend_cpu_conv.c */
void cpu_im2col(backend_t *be, float *col, const float *x, const conv_geom *g);
void cpu_col2im(backend_t *be, float *dx, const float *col, const conv_geom *g);
void cpu_maxpool2_forward(backend_t *be, float *y, const float *x, int planes, int H, int W);
void cpu_maxpool2_backward(backend_t *be, float *dx, const float *dy, const float *x,
                           int planes, int H, int W);

/* backend_cpu_norm2d.c */
void cpu_batchnorm_forward(backend_t *be, float *y, float *mean, float *rstd, float *run_mean,
                           float *run_var, const float *x, const float *g, const float *b,
                           int B, int C, int HW, int train, float momentum);
void cpu_batchnorm_backward(backend_t *be, float *dx, float *dg, float *db, const float *dy,
                            const float *x, const float *g, const float *mean,
                            const float *rstd, int B, int C, int HW, int train);
void cpu_avgpool_forward(backend_t *be, float *y, const float *x, int rows, int HW);
void cpu_avgpool_backward(backend_t *be, float *dx, const float *dy, int rows, int HW);

/* backend_cpu_loss.c */
void cpu_sumsq(backend_t *be, float *out, const float *x, size_t n);
void cpu_mse(backend_t *be, float *out, float *dpred, const float *pred, const float *target,
             size_t n, float gscale);
void cpu_cross_entropy(backend_t *be, float *out, float *dlogits, const float *logits,
                       const int32_t *labels, int rows, int C, float gscale);
void cpu_kl_gauss(backend_t *be, float *out, float *dmu, float *dlogvar, const float *mu,
                  const float *logvar, size_t n, int rows, float gscale);
void cpu_adamw(backend_t *be, float *w, const float *g, float *m, float *v, size_t n, float lr,
               float beta1, float beta2, float eps, float wd, int t, float gscale);
void cpu_ema(backend_t *be, float *ema, const float *w, size_t n, float decay);

#endif
