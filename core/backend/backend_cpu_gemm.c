/* backend_cpu_gemm.c - the CPU backend's GEMMs (issue 19: a threading model for small
 * matrices).
 *
 * OpenBLAS at its default runs every GEMM above 2^18 M N K on its own threads, which yield
 * in a loop between calls while our pool's threads wait for the next op: on a 2-core machine
 * the two sets fight for the cores, and a 128-row GEMM gains little. So, by size:
 *  - up to CPU_BLAS_THREADED_MNK, OpenBLAS runs single-threaded; a GEMM of at least
 *    CPU_GEMM_SPLIT_FLOPS is cut into one block of rows (or columns) per thread, which the
 *    backend's pool runs side by side. A batched GEMM runs its problems on the pool, a range
 *    of problems per part, one single-threaded OpenBLAS call each (the attention's
 *    per-head products: thousands of calls per training step, no longer each resetting
 *    OpenBLAS's thread count);
 *  - from CPU_BLAS_THREADED_MNK on (the feature map over a whole data set), OpenBLAS runs
 *    one call on the backend's thread count, as before.
 * A backend made by backend_cpu_create_blas_threaded runs every GEMM the old way (one
 * OpenBLAS call on its threads): feature_map_apply uses one, so the features behind the
 * data fingerprints of existing zoos keep their bits.
 * Results: a problem of a batched GEMM, and a GEMM below CPU_GEMM_SPLIT_FLOPS, are one
 * OpenBLAS call whatever the thread count, so their bits do not depend on it (the
 * generation pin's small model has only such GEMMs). A split GEMM's do: OpenBLAS sums the
 * K products of an element in an order that depends on the block's shape (as it did before
 * with its own threads). Same thread count, same bytes.
 * OpenBLAS's thread setting is process-wide; it is read before each call and set only
 * when it differs. */
#include "backend_cpu_internal.h"

#include <cblas.h>

#define CPU_GEMM_SPLIT_FLOPS 4e5 /* 2 M N K below which a GEMM stays in one call */
#define CPU_BLAS_THREADED_MNK ((double)(1 << 25)) /* M N K from which OpenBLAS threads run */

typedef struct gemm_args {
    int ta, tb, M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    long long sa, sb, sc;
    int by_rows; /* split: 1 over rows of C, 0 over its columns */
    int blk;     /* rows (columns) per block; a multiple of 16 */
} gemm_args;

static void blas(const gemm_args *a, int M, int N, const float *A, const float *B, float *C)
{
    cblas_sgemm(CblasRowMajor, a->ta ? CblasTrans : CblasNoTrans,
                a->tb ? CblasTrans : CblasNoTrans, M, N, a->K, a->alpha, A, a->lda, B, a->ldb,
                a->beta, C, a->ldc);
}

/* blocks [lo, hi): block b is rows (by_rows) or columns [b blk, min((b + 1) blk, M or N)) */
static void k_gemm_blocks(void *p, size_t lo, size_t hi, int part)
{
    const gemm_args *a = p;
    const size_t n = (size_t)(a->by_rows ? a->M : a->N);
    (void)part;
    for (size_t b = lo; b < hi; b++) {
        const size_t r0 = b * (size_t)a->blk;
        const int len = (int)((n - r0) < (size_t)a->blk ? n - r0 : (size_t)a->blk);
        if (a->by_rows) /* rows r0.. of op(A): A + r0 rows (columns when transposed) */
            blas(a, len, a->N, a->A + (a->ta ? r0 : r0 * (size_t)a->lda), a->B,
                 a->C + r0 * (size_t)a->ldc);
        else /* columns r0.. of op(B): B + r0 columns (rows when transposed) */
            blas(a, a->M, len, a->A, a->B + (a->tb ? r0 * (size_t)a->ldb : r0), a->C + r0);
    }
}

/* C = alpha op(A) op(B) + beta C, K >= 1, OpenBLAS single-threaded: one call, or one block
 * per thread when it is worth it, cut along the longer side of C (so that the operand each
 * block packs again is the smaller one) */
static void gemm_blocks(backend_t *be, gemm_args *a)
{
    const double flops = 2.0 * a->M * a->N * a->K;
    a->by_rows = a->M >= a->N;
    const size_t n = (size_t)(a->by_rows ? a->M : a->N);
    size_t nblk = (size_t)be->threads;
    if (nblk > n / 16)
        nblk = n / 16;
    if (nblk <= 1 || flops < CPU_GEMM_SPLIT_FLOPS) {
        blas(a, a->M, a->N, a->A, a->B, a->C);
        return;
    }
    a->blk = (int)(((n + nblk - 1) / nblk + 15) / 16 * 16);
    nblk = (n + (size_t)a->blk - 1) / (size_t)a->blk;
    cpu_pool_run(cpu_pool_of(be), k_gemm_blocks, a, nblk, 1, 1);
}

/* problems [lo, hi) of a batch */
static void k_gemm_batch(void *p, size_t lo, size_t hi, int part)
{
    const gemm_args *a = p;
    (void)part;
    for (size_t i = lo; i < hi; i++)
        blas(a, a->M, a->N, a->A + (ptrdiff_t)i * a->sa, a->B + (ptrdiff_t)i * a->sb,
             a->C + (ptrdiff_t)i * a->sc);
}

/* C = beta C when there is no product (BLAS would reject lda = 0) */
static void scale_only(int M, int N, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
}

/* OpenBLAS's thread count is process-wide; reading it is a load, setting it is not free */
static void blas_threads(int n)
{
    if (openblas_get_num_threads() != n)
        openblas_set_num_threads(n);
}

// C: [M, N] = alpha op(A): [M, K] @ op(B): [K, N] + beta C
void cpu_gemm(backend_t *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        scale_only(M, N, beta, C, ldc);
        return;
    }
    gemm_args a = {.ta = trans_a, .tb = trans_b, .M = M, .N = N, .K = K, .alpha = alpha,
                   .beta = beta, .A = A, .B = B, .C = C, .lda = lda, .ldb = ldb, .ldc = ldc};
    if ((double)M * N * K >= CPU_BLAS_THREADED_MNK ||
        ((cpu_impl *)be->impl)->blas_threaded) {
        /* large (the feature map over a data set): OpenBLAS's threads, as before */
        if (be->threads > 1)
            cpu_pool_park(cpu_pool_of(be));
        blas_threads(be->threads);
        blas(&a, M, N, A, B, C);
        return;
    }
    blas_threads(1);
    gemm_blocks(be, &a);
}

// C_i: [M, N] = alpha op(A_i) @ op(B_i) + beta C_i for i in [0, batch)
void cpu_gemm_batched(backend_t *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, long long stride_a, const float *B, int ldb,
                      long long stride_b, float beta, float *C, int ldc, long long stride_c,
                      int batch)
{
    if (M <= 0 || N <= 0 || batch <= 0)
        return;
    if (K <= 0) {
        for (int i = 0; i < batch; i++)
            scale_only(M, N, beta, C + (ptrdiff_t)i * stride_c, ldc);
        return;
    }
    gemm_args a = {.ta = trans_a, .tb = trans_b, .M = M, .N = N, .K = K, .alpha = alpha,
                   .beta = beta, .A = A, .B = B, .C = C, .lda = lda, .ldb = ldb, .ldc = ldc,
                   .sa = stride_a, .sb = stride_b, .sc = stride_c};
    if (batch == 1 || ((cpu_impl *)be->impl)->blas_threaded) {
        for (int i = 0; i < batch; i++)
            cpu_gemm(be, trans_a, trans_b, M, N, K, alpha, A + (ptrdiff_t)i * stride_a, lda,
                     B + (ptrdiff_t)i * stride_b, ldb, beta, C + (ptrdiff_t)i * stride_c, ldc);
        return;
    }
    blas_threads(1);
    const double per = 2.0 * M * N * K + 1000.0; /* a call's own cost ~ 1000 flops */
    size_t min_items = (size_t)(CPU_GEMM_SPLIT_FLOPS / 2 / per) + 1;
    cpu_pool_run(cpu_pool_of(be), k_gemm_batch, &a, (size_t)batch, min_items, 1);
}
