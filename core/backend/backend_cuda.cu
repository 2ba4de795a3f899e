/* backend_cuda.cu - the CUDA backend behind backend.h: cuBLAS for the GEMMs,
 * small kernels for everything else (DESIGN section 1). Built by `make CUDA=1`.
 *
 * One backend = one GPU, one cudaStream_t and one cublasHandle_t bound to that
 * stream; every op is enqueued on the stream and nothing waits for the device
 * except sync() and to_host(). Ops that return void record the first CUDA or
 * cuBLAS error in the backend's state; the next int op (sync, to_host,
 * to_device, copy) returns D2_EDEVICE, and error_message() gives the message.
 *
 * Two kinds of error (cu_error_is_sticky):
 *  - non-sticky: cuBLAS rejecting its arguments, no device memory for the
 *    reduction scratch, a bad launch configuration, a failed transfer call.
 *    The CUDA context is intact: once an int op has reported the error it is
 *    cleared, so the backend works again (a daemon worker survives one job that
 *    ran out of memory). error_message() keeps the message until the next int
 *    op that succeeds.
 *  - sticky: an illegal or misaligned address, a kernel trap or assert, a
 *    launch failure or timeout, an illegal instruction (the errors
 *    driver_types.h documents as "the process must be terminated"). The
 *    context is corrupted and every later CUDA call in the process fails, so
 *    the backend refuses all further work: ops do nothing, alloc returns NULL
 *    and every int op returns D2_EDEVICE with that message, for good.
 *
 * Numerics follow backend_cpu.c: FP32 everywhere (compiled without
 * --use_fast_math, with the accurate logf/expf/tanhf/sinf/cosf), GELU as the
 * tanh approximation, LayerNorm eps 1e-5. cuBLAS runs in its default FP32 math
 * mode; the environment variable D2NWG_TF32=1 at backend creation switches
 * GEMMs to TF32 tensor cores (10-bit mantissa products: normalised GEMM error
 * grows from ~1e-14 to ~1e-7; test_backend_ops measures and prints it).
 *
 * Reductions are deterministic: fixed block and grid shapes derived only from
 * the problem size, fixed tree order, no floating-point atomics, so the same
 * inputs always give the same bits. The random ops reproduce rng.h's Philox
 * stream bit for bit in the integer part.
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
}

/* ------------------------------------------------------------------------ */
/* backend state                                                            */
/* ------------------------------------------------------------------------ */

/* open-addressing map device pointer -> allocation size (for memory()) */
typedef struct cu_slot {
    void *p;
    size_t bytes;
} cu_slot;

typedef struct cu_state {
    backend_ops ops; /* this backend's table (be->ops points here) */
    int device;
    int tf32;
    cudaStream_t stream;
    cublasHandle_t blas;
    pthread_mutex_t mu;  /* guards the size map, used and scratch (and the launches that
                          * use scratch) */
    pthread_mutex_t emu; /* guards err_code and err_msg (taken inside mu, never around it) */
    cu_slot *slots;
    size_t nslots, nlive;
    size_t used;          /* bytes allocated through alloc() plus scratch */
    float *scratch;       /* partial sums of the reductions */
    size_t scratch_cap;   /* floats */
    int err_code;         /* pending error: recorded, not yet reported (0: none) */
    int err_sticky;       /* the context is corrupted: refuse all work (never cleared) */
    char err_msg[D2_ERRMSG_LEN]; /* pending, sticky or last reported error ("" : none) */
} cu_state;

static cu_state *cu_st(backend_t *be)
{
    return (cu_state *)be->impl;
}

/* the errors after which "any further CUDA work will return the same error" and "the
 * process must be terminated" (driver_types.h): the context is corrupted */
static int cu_error_is_sticky(cudaError_t e)
{
    switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorMpsClientTerminated:
    case cudaErrorECCUncorrectable:
        return 1;
    default:
        return 0;
    }
}

/* The first pending error is kept; a sticky one replaces a pending non-sticky one (it is
 * the one that matters), and nothing replaces a sticky one. */
static void cu_vrecord(cu_state *st, int sticky, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&st->emu);
    if (!st->err_sticky && (st->err_code == 0 || sticky)) {
        int n = snprintf(st->err_msg, sizeof st->err_msg, "cuda:%d: ", st->device);
        vsnprintf(st->err_msg + n, sizeof st->err_msg - (size_t)n, fmt, ap);
        if (sticky) {
            size_t len = strlen(st->err_msg);
            snprintf(st->err_msg + len, sizeof st->err_msg - len,
                     " [sticky: the CUDA context is unusable; restart the process]");
        }
        st->err_code = D2_EDEVICE;
        st->err_sticky = sticky;
    }
    pthread_mutex_unlock(&st->emu);
}

static void cu_recordf(cu_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cu_recordf(cu_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cu_vrecord(st, 0, fmt, ap);
    va_end(ap);
}

static void cu_record_sticky(cu_state *st, int sticky, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cu_record_sticky(cu_state *st, int sticky, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cu_vrecord(st, sticky, fmt, ap);
    va_end(ap);
}

static void cu_record(cu_state *st, cudaError_t e, const char *what)
{
    int sticky = cu_error_is_sticky(e);
    if (!sticky)
        (void)cudaGetLastError(); /* or the next launch check would see it again */
    cu_record_sticky(st, sticky, "%s: %s (%s)", what, cudaGetErrorString(e),
                     cudaGetErrorName(e));
}

/* check the launch that was just enqueued */
static void cu_check_launch(cu_state *st, const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        cu_record(st, e, what);
}

/* Report the pending error to an int op's caller: a non-sticky one is cleared (its
 * message stays for error_message()); a success clears the message of an earlier one. */
static int cu_recorded(cu_state *st)
{
    pthread_mutex_lock(&st->emu);
    int code = st->err_code;
    if (code == 0)
        st->err_msg[0] = '\0';
    else if (!st->err_sticky)
        st->err_code = 0;
    pthread_mutex_unlock(&st->emu);
    return code;
}

static int cu_is_sticky(cu_state *st)
{
    pthread_mutex_lock(&st->emu);
    int sticky = st->err_sticky;
    pthread_mutex_unlock(&st->emu);
    return sticky;
}

/* make this backend's GPU current for the calling thread (the backend may be
 * created on one thread and used from another); D2_EDEVICE, doing nothing, once
 * a sticky error has corrupted the context */
static int cu_enter(cu_state *st)
{
    if (cu_is_sticky(st))
        return D2_EDEVICE;
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == st->device)
        return 0;
    cudaError_t e = cudaSetDevice(st->device);
    if (e != cudaSuccess) {
        cu_record(st, e, "cudaSetDevice");
        return D2_EDEVICE;
    }
    return 0;
}

static size_t cu_hash(const void *p, size_t mask)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & mask;
}

/* caller holds mu */
static int cu_map_put(cu_state *st, void *p, size_t bytes)
{
    if ((st->nlive + 1) * 2 > st->nslots) {
        size_t ncap = st->nslots ? st->nslots * 2 : 64;
        cu_slot *ns = (cu_slot *)calloc(ncap, sizeof *ns);
        if (!ns)
            return D2_ENOMEM;
        for (size_t i = 0; i < st->nslots; i++) {
            if (!st->slots[i].p)
                continue;
            size_t h = cu_hash(st->slots[i].p, ncap - 1);
            while (ns[h].p)
                h = (h + 1) & (ncap - 1);
            ns[h] = st->slots[i];
        }
        free(st->slots);
        st->slots = ns;
        st->nslots = ncap;
    }
    size_t mask = st->nslots - 1, h = cu_hash(p, mask);
    while (st->slots[h].p)
        h = (h + 1) & mask;
    st->slots[h].p = p;
    st->slots[h].bytes = bytes;
    st->nlive++;
    return 0;
}

/* caller holds mu; returns the size, or 0 when p was not allocated here */
static size_t cu_map_take(cu_state *st, void *p)
{
    if (!st->nslots)
        return 0;
    size_t mask = st->nslots - 1, h = cu_hash(p, mask);
    while (st->slots[h].p && st->slots[h].p != p)
        h = (h + 1) & mask;
    if (!st->slots[h].p)
        return 0;
    size_t bytes = st->slots[h].bytes;
    /* backward-shift deletion keeps every probe chain intact */
    size_t hole = h, j = h;
    for (;;) {
        j = (j + 1) & mask;
        if (!st->slots[j].p)
            break;
        size_t home = cu_hash(st->slots[j].p, mask);
        int movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            st->slots[hole] = st->slots[j];
            hole = j;
        }
    }
    st->slots[hole].p = NULL;
    st->slots[hole].bytes = 0;
    st->nlive--;
    return bytes;
}

/* caller holds mu: make the scratch buffer hold at least n floats */
static int cu_scratch_reserve(cu_state *st, size_t n)
{
    if (n <= st->scratch_cap)
        return 0;
    size_t ncap = st->scratch_cap ? st->scratch_cap : 4096;
    while (ncap < n)
        ncap *= 2;
    float *p = NULL;
    cudaError_t e = cudaMalloc((void **)&p, ncap * sizeof(float));
    if (e != cudaSuccess) {
        if (cu_error_is_sticky(e))
            cu_record(st, e, "cudaMalloc (scratch)");
        else
            (void)cudaGetLastError();
        return D2_ENOMEM;
    }
    if (st->scratch) {
        /* cudaFree waits for the kernels still reading the old buffer */
        cudaFree(st->scratch);
        st->used -= st->scratch_cap * sizeof(float);
    }
    st->scratch = p;
    st->scratch_cap = ncap;
    st->used += ncap * sizeof(float);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* device helpers                                                           */
/* ------------------------------------------------------------------------ */

#define CU_BLOCK 256

static __device__ __forceinline__ size_t d_gid(void)
{
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
static __device__ __forceinline__ size_t d_gstride(void)
{
    return (size_t)gridDim.x * blockDim.x;
}

/* butterfly sums: every lane ends with the same bits (a + b == b + a) */
static __device__ __forceinline__ float d_warp_sum(float v)
{
    for (int m = 16; m > 0; m >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}
static __device__ __forceinline__ float d_warp_max(float v)
{
    for (int m = 16; m > 0; m >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

/* blocks for an n-element grid-stride loop */
static unsigned cu_grid(size_t n)
{
    size_t g = n / CU_BLOCK + (n % CU_BLOCK != 0);
    if (g > (1u << 20))
        g = 1u << 20;
    return g ? (unsigned)g : 1u;
}

/* blocks of 8 warps for a warp-per-row kernel */
static unsigned cu_grid_rows(int rows)
{
    return (unsigned)(((size_t)rows + 7) / 8);
}

/* ------------------------------------------------------------------------ */
/* memory and transfers                                                     */
/* ------------------------------------------------------------------------ */

static void *cu_alloc(backend_t *be, size_t bytes)
{
    cu_state *st = cu_st(be);
    if (cu_enter(st))
        return NULL;
    size_t req = bytes ? bytes : 4; /* distinct non-NULL pointer for 0 bytes */
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, req);
    if (e != cudaSuccess) {
        if (cu_error_is_sticky(e)) /* a fault of earlier work surfaced here */
            cu_record(st, e, "cudaMalloc");
        else
            (void)cudaGetLastError(); /* out of memory is reported by NULL, not recorded */
        return NULL;
    }
    e = cudaMemsetAsync(p, 0, req, st->stream);
    if (e != cudaSuccess) {
        cu_record(st, e, "cudaMemsetAsync (alloc)");
        cudaFree(p);
        return NULL;
    }
    pthread_mutex_lock(&st->mu);
    int rc = cu_map_put(st, p, req);
    if (rc == 0)
        st->used += req;
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_free(backend_t *be, void *p)
{
    if (!p)
        return;
    cu_state *st = cu_st(be);
    if (cu_enter(st))
        return;
    pthread_mutex_lock(&st->mu);
    size_t bytes = cu_map_take(st, p);
    st->used -= bytes;
    pthread_mutex_unlock(&st->mu);
    if (!bytes) {
        cu_recordf(st, "free: %p was not allocated by this backend", p);
        return;
    }
    /* cudaFree synchronises with the device, so kernels still using p finish */
    cudaError_t e = cudaFree(p);
    if (e != cudaSuccess)
        cu_record(st, e, "cudaFree");
}

static int cu_to_device(backend_t *be, void *dst, const void *host_src, size_t bytes)
{
    cu_state *st = cu_st(be);
    if (bytes == 0)
        return cu_recorded(st);
    if (cu_enter(st))
        return cu_recorded(st);
    /* from pageable memory the call returns once the source has been staged,
     * so the caller may reuse host_src immediately */
    cudaError_t e = cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, st->stream);
    if (e != cudaSuccess)
        cu_record(st, e, "cudaMemcpyAsync host->device");
    return cu_recorded(st);
}

static int cu_sync(backend_t *be)
{
    cu_state *st = cu_st(be);
    if (cu_enter(st))
        return cu_recorded(st);
    cudaError_t e = cudaStreamSynchronize(st->stream);
    if (e != cudaSuccess)
        cu_record(st, e, "cudaStreamSynchronize");
    return cu_recorded(st);
}

static int cu_to_host(backend_t *be, void *host_dst, const void *src, size_t bytes)
{
    cu_state *st = cu_st(be);
    if (bytes == 0)
        return cu_sync(be);
    if (cu_enter(st))
        return cu_recorded(st);
    cudaError_t e = cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, st->stream);
    if (e != cudaSuccess)
        cu_record(st, e, "cudaMemcpyAsync device->host");
    return cu_sync(be);
}

static int cu_copy(backend_t *be, void *dst, const void *src, size_t bytes)
{
    cu_state *st = cu_st(be);
    if (bytes == 0 || dst == src)
        return cu_recorded(st);
    if (cu_enter(st))
        return cu_recorded(st);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st->stream);
    if (e != cudaSuccess)
        cu_record(st, e, "cudaMemcpyAsync device->device");
    return cu_recorded(st);
}

static void cu_memory(backend_t *be, size_t *used, size_t *total)
{
    cu_state *st = cu_st(be);
    pthread_mutex_lock(&st->mu);
    size_t u = st->used;
    pthread_mutex_unlock(&st->mu);
    size_t fr = 0, tot = 0;
    if (cu_enter(st) == 0 && cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        (void)cudaGetLastError();
        tot = 0;
    }
    if (used)
        *used = u;
    if (total)
        *total = tot;
}

/* ------------------------------------------------------------------------ */
/* BLAS                                                                     */
/* ------------------------------------------------------------------------ */

// C: [M, N] (row stride ldc) *= beta  (the K == 0 case of gemm)
static __global__ void k_scale2d(float *C, float beta, int M, int N, int ldc)
{
    size_t total = (size_t)M * N;
    for (size_t i = d_gid(); i < total; i += d_gstride()) {
        size_t r = i / (size_t)N, c = i % (size_t)N;
        float *p = C + r * (size_t)ldc + c;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
 * operands and M/N; the row strides become the leading dimensions. */
static void cu_gemm(backend_t *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C,
                    int ldc)
{
    cu_state *st = cu_st(be);
    if (M <= 0 || N <= 0 || cu_enter(st))
        return;
    if (K <= 0) {
        k_scale2d<<<cu_grid((size_t)M * N), CU_BLOCK, 0, st->stream>>>(C, beta, M, N, ldc);
        cu_check_launch(st, "gemm (K = 0)");
        return;
    }
    cublasStatus_t s = cublasSgemm(st->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb,
                                   A, lda, &beta, C, ldc);
    if (s != CUBLAS_STATUS_SUCCESS)
        cu_recordf(st, "cublasSgemm(M=%d N=%d K=%d ta=%d tb=%d lda=%d ldb=%d ldc=%d): %s", M,
                   N, K, trans_a, trans_b, lda, ldb, ldc, cublasGetStatusString(s));
}

static void cu_gemm_batched(backend_t *be, int trans_a, int trans_b, int M, int N, int K,
                            float alpha, const float *A, int lda, long long stride_a,
                            const float *B, int ldb, long long stride_b, float beta, float *C,
                            int ldc, long long stride_c, int batch)
{
    cu_state *st = cu_st(be);
    if (M <= 0 || N <= 0 || batch <= 0 || cu_enter(st))
        return;
    if (K <= 0) {
        for (int i = 0; i < batch; i++) {
            k_scale2d<<<cu_grid((size_t)M * N), CU_BLOCK, 0, st->stream>>>(
                C + (size_t)i * (size_t)stride_c, beta, M, N, ldc);
            cu_check_launch(st, "gemm_batched (K = 0)");
        }
        return;
    }
    cublasStatus_t s = cublasSgemmStridedBatched(
        st->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
        K, &alpha, B, ldb, stride_b, A, lda, stride_a, &beta, C, ldc, stride_c, batch);
    if (s != CUBLAS_STATUS_SUCCESS)
        cu_recordf(st, "cublasSgemmStridedBatched(M=%d N=%d K=%d batch=%d): %s", M, N, K, batch,
                   cublasGetStatusString(s));
}

/* ------------------------------------------------------------------------ */
/* elementwise and broadcast                                                */
/* ------------------------------------------------------------------------ */

// x: [n] = value
static __global__ void k_fill(float *x, float value, size_t n)
{
    for (size_t i = d_gid(); i < n; i += d_gstride())
        x[i] = value;
}

// y: [n] = a * x + b * y (b == 0: y is not read, as on the CPU)
static __global__ void k_axpby(float *y, float a, const float *x, float b, size_t n)
{
    if (b == 0.0f) {
        for (size_t i = d_gid(); i < n; i += d_gstride())
            y[i] = a * x[i];
    } else {
        for (size_t i = d_gid(); i < n; i += d_gstride())
            y[i] = a * x[i] + b * y[i];
    }
}

// y: [rows, cols] += bias: [cols]
static __global__ void k_add_bias(float *y, const float *bias, size_t total, int cols)
{
    for (size_t i = d_gid(); i < total; i += d_gstride())
        y[i] += bias[i % (size_t)cols];
}

#define CU_ELEMWISE(st, what, n, kern, ...)                                                    \
    do {                                                                                       \
        if ((n) == 0 || cu_enter(st))                                                          \
            return;                                                                            \
        kern<<<cu_grid(n), CU_BLOCK, 0, (st)->stream>>>(__VA_ARGS__);                          \
        cu_check_launch(st, what);                                                             \
    } while (0)

static void cu_fill(backend_t *be, float *x, float value, size_t n)
{
    CU_ELEMWISE(cu_st(be), "fill", n, k_fill, x, value, n);
}
static void cu_axpby(backend_t *be, float *y, float a, const float *x, float b, size_t n)
{
    CU_ELEMWISE(cu_st(be), "axpby", n, k_axpby, y, a, x, b, n);
}
static void cu_add_bias(backend_t *be, float *y, const float *bias, int rows, int cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    size_t total = (size_t)rows * (size_t)cols;
    CU_ELEMWISE(cu_st(be), "add_bias", total, k_add_bias, y, bias, total, cols);
}

/* ---- deterministic column sums: out[b, c] += sum_r f(b, r, c) ----
 * Stage 1: grid (ceil(C/32), P, min(Bn, 65535)) of 32x8 blocks; block (x, p)
 * sums rows [p*chunk, (p+1)*chunk) of 32 columns, 8 row-strided partials per
 * column added in a fixed order -> part[b, p, q, c]. Stage 2: one thread per
 * (b, c) adds its P partials in order and applies the output functor. */
template <int NQ, class F>
static __global__ void k_colsum_partial(F f, int Bn, int R, int C, int P, int chunk, float *part)
{
    __shared__ float sm[NQ][8][32];
    int tx = threadIdx.x, ty = threadIdx.y;
    /* 64-bit index arithmetic: C and R may come close to INT_MAX */
    long long cl = (long long)blockIdx.x * 32 + tx;
    int in = cl < C, c = in ? (int)cl : 0;
    int p = blockIdx.y;
    long long r0 = (long long)p * chunk, r1 = r0 + chunk < R ? r0 + chunk : R;
    for (long long bl = blockIdx.z; bl < Bn; bl += gridDim.z) {
        int b = (int)bl;
        float acc[NQ];
        for (int q = 0; q < NQ; q++)
            acc[q] = 0.0f;
        if (in)
            for (long long r = r0 + ty; r < r1; r += 8)
                f(b, (int)r, c, acc);
        for (int q = 0; q < NQ; q++)
            sm[q][ty][tx] = acc[q];
        __syncthreads();
        if (ty == 0 && in) {
            for (int q = 0; q < NQ; q++) {
                float s = sm[q][0][tx];
                for (int k = 1; k < 8; k++)
                    s += sm[q][k][tx];
                part[(((size_t)b * P + p) * NQ + q) * C + c] = s;
            }
        }
        __syncthreads();
    }
}

template <int NQ, class O>
static __global__ void k_colsum_final(O o, const float *part, int Bn, int P, int C)
{
    size_t total = (size_t)Bn * C;
    for (size_t i = d_gid(); i < total; i += d_gstride()) {
        int b = (int)(i / (size_t)C), c = (int)(i % (size_t)C);
        float s[NQ];
        for (int q = 0; q < NQ; q++) {
            float a = 0.0f;
            for (int p = 0; p < P; p++)
                a += part[(((size_t)b * P + p) * NQ + q) * C + c];
            s[q] = a;
        }
        o(b, c, s);
    }
}

template <int NQ, class F, class O>
static void cu_colsum(cu_state *st, F f, O o, int Bn, int R, int C, const char *what)
{
    if (Bn <= 0 || C <= 0 || R <= 0 || cu_enter(st))
        return;
    long long R64 = R;
    int P = (int)((R64 + 63) / 64);
    if (P > 64)
        P = 64;
    int chunk = (int)((R64 + P - 1) / P);
    P = (int)((R64 + chunk - 1) / chunk);
    size_t need = (size_t)Bn * (size_t)P * NQ * (size_t)C;
    pthread_mutex_lock(&st->mu);
    if (cu_scratch_reserve(st, need) != 0) {
        pthread_mutex_unlock(&st->mu);
        cu_recordf(st, "%s: no device memory for %zu floats of partial sums", what, need);
        return;
    }
    dim3 grid((unsigned)(((size_t)C + 31) / 32), (unsigned)P,
              (unsigned)(Bn < 65535 ? Bn : 65535));
    dim3 block(32, 8);
    k_colsum_partial<NQ, F><<<grid, block, 0, st->stream>>>(f, Bn, R, C, P, chunk, st->scratch);
    cu_check_launch(st, what);
    k_colsum_final<NQ, O>
        <<<cu_grid((size_t)Bn * C), CU_BLOCK, 0, st->stream>>>(o, st->scratch, Bn, P, C);
    cu_check_launch(st, what);
    pthread_mutex_unlock(&st->mu);
}

/* output functors: d[b * ld + c] += s[q] (skipped when d is NULL) */
struct cu_out1 {
    float *d;
    int ld;
    __device__ void operator()(int b, int c, const float *s) const
    {
        d[(size_t)b * ld + c] += s[0];
    }
};
struct cu_out2 {
    float *d0, *d1;
    int ld;
    __device__ void operator()(int b, int c, const float *s) const
    {
        if (d0)
            d0[(size_t)b * ld + c] += s[0];
        if (d1)
            d1[(size_t)b * ld + c] += s[1];
    }
};

/* value functors */
struct cu_f_rows { /* dy: [rows, C] (b = 0) */
    const float *dy;
    int C;
    __device__ void operator()(int, int r, int c, float *acc) const
    {
        acc[0] += dy[(size_t)r * C + c];
    }
};

static void cu_sum_rows(backend_t *be, float *db, const float *dy, int rows, int cols)
{
    cu_f_rows f = {dy, cols};
    cu_out1 o = {db, 0};
    cu_colsum<1>(cu_st(be), f, o, 1, rows, cols, "sum_rows");
}

/* ---- activations ---- */
#define CU_GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define CU_GELU_C 0.044715f

static __device__ __forceinline__ float d_act(int kind, float x)
{
    switch (kind) {
    case ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case ACT_SILU:
        return x / (1.0f + expf(-x));
    case ACT_GELU: {
        float u = CU_GELU_K * (x + CU_GELU_C * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case ACT_TANH:
        return tanhf(x);
    case ACT_GELU_ERF:
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default:
        return x;
    }
}

static __device__ __forceinline__ float d_act_grad(int kind, float x)
{
    switch (kind) {
    case ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case ACT_SILU: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case ACT_GELU: {
        float x2 = x * x;
        float t = tanhf(CU_GELU_K * (x + CU_GELU_C * x2 * x));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * CU_GELU_K * (1.0f + 3.0f * CU_GELU_C * x2);
    }
    case ACT_TANH: {
        float t = tanhf(x);
        return 1.0f - t * t;
    }
    case ACT_GELU_ERF: /* Phi(x) + x phi(x) */
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
               x * 0.39894228040143268f * expf(-0.5f * x * x);
    default:
        return 1.0f;
    }
}

// x, y: [n] (y may alias x)
static __global__ void k_act_fwd(int kind, float *y, const float *x, size_t n)
{
    for (size_t i = d_gid(); i < n; i += d_gstride())
        y[i] = d_act(kind, x[i]);
}

// dx: [n] += act'(x) * dy
static __global__ void k_act_bwd(int kind, float *dx, const float *dy, const float *x, size_t n)
{
    for (size_t i = d_gid(); i < n; i += d_gstride())
        dx[i] += d_act_grad(kind, x[i]) * dy[i];
}

static void cu_act_forward(backend_t *be, act_kind kind, float *y, const float *x, size_t n)
{
    CU_ELEMWISE(cu_st(be), "act_forward", n, k_act_fwd, (int)kind, y, x, n);
}
static void cu_act_backward(backend_t *be, act_kind kind, float *dx, const float *dy,
                            const float *x, size_t n)
{
    CU_ELEMWISE(cu_st(be), "act_backward", n, k_act_bwd, (int)kind, dx, dy, x, n);
}

/* ------------------------------------------------------------------------ */
/* layernorm (one warp per row, 8 rows per block)                           */
/* ------------------------------------------------------------------------ */

#define CU_LN_EPS 1e-5f

// x, y: [rows, C]; g, b: [C] or NULL; mean, rstd: [rows] (y may alias x)
static __global__ void k_ln_fwd(float *y, float *mean, float *rstd, const float *x,
                                const float *g, const float *b, int rows, int C)
{
    long long rl = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (rl >= rows)
        return;
    int row = (int)rl;
    const float *xr = x + (size_t)row * C;
    float *yr = y + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += xr[c];
    float m = d_warp_sum(s) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = xr[c] - m;
        v += d * d;
    }
    v = d_warp_sum(v) / (float)C;
    float rs = 1.0f / sqrtf(v + CU_LN_EPS);
    for (int c = lane; c < C; c += 32) {
        float nv = (xr[c] - m) * rs;
        if (g)
            nv *= g[c];
        if (b)
            nv += b[c];
        yr[c] = nv;
    }
    if (lane == 0) {
        if (mean)
            mean[row] = m;
        if (rstd)
            rstd[row] = rs;
    }
}

// dx: [rows, C] += (dn - mean(dn) - n * mean(dn * n)) * rstd, n = (x - mean) * rstd, dn = dy * g
static __global__ void k_ln_bwd_dx(float *dx, const float *dy, const float *x, const float *g,
                                   const float *mean, const float *rstd, int rows, int C)
{
    long long rl = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (rl >= rows)
        return;
    int row = (int)rl;
    size_t off = (size_t)row * C;
    float m = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float nv = (x[off + c] - m) * rs;
        float dn = g ? dy[off + c] * g[c] : dy[off + c];
        s1 += dn;
        s2 += dn * nv;
    }
    s1 = d_warp_sum(s1) / (float)C;
    s2 = d_warp_sum(s2) / (float)C;
    for (int c = lane; c < C; c += 32) {
        float nv = (x[off + c] - m) * rs;
        float dn = g ? dy[off + c] * g[c] : dy[off + c];
        dx[off + c] += (dn - s1 - nv * s2) * rs;
    }
}

struct cu_f_ln { /* dg += dy * n, db += dy over rows */
    const float *dy, *x, *mean, *rstd;
    int C;
    __device__ void operator()(int, int r, int c, float *acc) const
    {
        size_t i = (size_t)r * C + c;
        acc[0] += dy[i] * ((x[i] - mean[r]) * rstd[r]);
        acc[1] += dy[i];
    }
};

static void cu_layernorm_forward(backend_t *be, float *y, float *mean, float *rstd,
                                 const float *x, const float *g, const float *b, int rows, int C)
{
    cu_state *st = cu_st(be);
    if (rows <= 0 || C <= 0 || cu_enter(st))
        return;
    k_ln_fwd<<<cu_grid_rows(rows), CU_BLOCK, 0, st->stream>>>(y, mean, rstd, x, g, b, rows, C);
    cu_check_launch(st, "layernorm_forward");
}

static void cu_layernorm_backward(backend_t *be, float *dx, float *dg, float *db,
                                  const float *dy, const float *x, const float *g,
                                  const float *mean, const float *rstd, int rows, int C)
{
    cu_state *st = cu_st(be);
    if (rows <= 0 || C <= 0 || cu_enter(st))
        return;
    if (dx) {
        k_ln_bwd_dx<<<cu_grid_rows(rows), CU_BLOCK, 0, st->stream>>>(dx, dy, x, g, mean, rstd,
                                                                     rows, C);
        cu_check_launch(st, "layernorm_backward (dx)");
    }
    if (g && (dg || db)) {
        cu_f_ln f = {dy, x, mean, rstd, C};
        cu_out2 o = {dg, db, 0};
        cu_colsum<2>(st, f, o, 1, rows, C, "layernorm_backward (dg, db)");
    }
}

/* ------------------------------------------------------------------------ */
/* softmax and attention reshapes                                           */
/* ------------------------------------------------------------------------ */

// x, y: [rows, cols]: y = softmax(scale * x) per row (y may alias x)
static __global__ void k_softmax_fwd(float *y, const float *x, float scale, int rows, int cols)
{
    long long rl = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (rl >= rows)
        return;
    int row = (int)rl;
    const float *xr = x + (size_t)row * cols;
    float *yr = y + (size_t)row * cols;
    float mx = -INFINITY;
    for (int c = lane; c < cols; c += 32)
        mx = fmaxf(mx, scale * xr[c]);
    mx = d_warp_max(mx);
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32)
        s += expf(scale * xr[c] - mx);
    s = d_warp_sum(s);
    float inv = 1.0f / s;
    for (int c = lane; c < cols; c += 32)
        yr[c] = expf(scale * xr[c] - mx) * inv;
}

// dx: [rows, cols] += scale * y * (dy - sum(dy * y))
static __global__ void k_softmax_bwd(float *dx, const float *dy, const float *y, float scale,
                                     int rows, int cols)
{
    long long rl = (long long)blockIdx.x * 8 + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (rl >= rows)
        return;
    int row = (int)rl;
    size_t off = (size_t)row * cols;
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32)
        s += dy[off + c] * y[off + c];
    s = d_warp_sum(s);
    for (int c = lane; c < cols; c += 32)
        dx[off + c] += scale * y[off + c] * (dy[off + c] - s);
}

// in: [A, B, C, D] -> out: [A, C, B, D]
static __global__ void k_permute_0213(float *out, const float *in, int B, int C, int D,
                                      size_t total)
{
    for (size_t i = d_gid(); i < total; i += d_gstride()) {
        size_t d = i % (size_t)D, t = i / (size_t)D;
        size_t c = t % (size_t)C;
        t /= (size_t)C;
        size_t b = t % (size_t)B, a = t / (size_t)B;
        out[((a * C + c) * B + b) * D + d] = in[i];
    }
}

// in: [N, C] -> out: [A, N, C]
static __global__ void k_repeat_rows(float *out, const float *in, size_t nc, size_t total)
{
    for (size_t i = d_gid(); i < total; i += d_gstride())
        out[i] = in[i % nc];
}

struct cu_f_rep { /* din[j] += sum_a dout[a, j], j over N*C (row stride NC) */
    const float *dout;
    size_t NC;
    __device__ void operator()(int, int a, int j, float *acc) const
    {
        acc[0] += dout[(size_t)a * NC + j];
    }
};

static void cu_softmax_forward(backend_t *be, float *y, const float *x, float scale, int rows,
                               int cols)
{
    cu_state *st = cu_st(be);
    if (rows <= 0 || cols <= 0 || cu_enter(st))
        return;
    k_softmax_fwd<<<cu_grid_rows(rows), CU_BLOCK, 0, st->stream>>>(y, x, scale, rows, cols);
    cu_check_launch(st, "softmax_forward");
}

static void cu_softmax_backward(backend_t *be, float *dx, const float *dy, const float *y,
                                float scale, int rows, int cols)
{
    cu_state *st = cu_st(be);
    if (rows <= 0 || cols <= 0 || cu_enter(st))
        return;
    k_softmax_bwd<<<cu_grid_rows(rows), CU_BLOCK, 0, st->stream>>>(dx, dy, y, scale, rows, cols);
    cu_check_launch(st, "softmax_backward");
}

static void cu_permute_0213(backend_t *be, float *out, const float *in, int A, int B, int C, int D)
{
    if (A <= 0 || B <= 0 || C <= 0 || D <= 0)
        return;
    size_t total = (size_t)A * B * C * D;
    CU_ELEMWISE(cu_st(be), "permute_0213", total, k_permute_0213, out, in, B, C, D, total);
}

static void cu_repeat_rows(backend_t *be, float *out, const float *in, int A, int N, int C)
{
    if (A <= 0 || N <= 0 || C <= 0)
        return;
    size_t nc = (size_t)N * C, total = (size_t)A * nc;
    CU_ELEMWISE(cu_st(be), "repeat_rows", total, k_repeat_rows, out, in, nc, total);
}

static void cu_repeat_rows_backward(backend_t *be, float *din, const float *dout, int A, int N,
                                    int C)
{
    if (N <= 0 || C <= 0)
        return;
    /* N * C may pass INT_MAX: column sums over slices of at most 2^24 columns */
    const size_t nc = (size_t)N * (size_t)C, slice = (size_t)1 << 24;
    for (size_t j0 = 0; j0 < nc; j0 += slice) {
        int w = (int)(nc - j0 < slice ? nc - j0 : slice);
        cu_f_rep f = {dout + j0, nc};
        cu_out1 o = {din + j0, 0};
        cu_colsum<1>(cu_st(be), f, o, 1, A, w, "repeat_rows_backward");
    }
}

/* ------------------------------------------------------------------------ */
/* adaLN modulation and gated residuals                                     */
/* ------------------------------------------------------------------------ */

// x, y: [B, N, C]; shift, scale: [B, C] with row stride ld: y = x * (1 + scale) + shift
static __global__ void k_modulate_fwd(float *y, const float *x, const float *shift,
                                      const float *scale, int ld, int N, int C, size_t total)
{
    for (size_t i = d_gid(); i < total; i += d_gstride()) {
        size_t c = i % (size_t)C, b = i / ((size_t)N * C);
        size_t k = b * (size_t)ld + c;
        y[i] = x[i] * (1.0f + scale[k]) + shift[k];
    }
}

// dx: [B, N, C] += dy * (1 + scale[b, c])
static __global__ void k_modulate_bwd_dx(float *dx, const float *dy, const float *scale, int ld,
                                         int N, int C, size_t total)
{
    for (size_t i = d_gid(); i < total; i += d_gstride()) {
        size_t c = i % (size_t)C, b = i / ((size_t)N * C);
        dx[i] += dy[i] * (1.0f + scale[b * (size_t)ld + c]);
    }
}

struct cu_f_mod { /* dshift[b,c] += sum_n dy, dscale[b,c] += sum_n dy * x */
    const float *dy, *x;
    int N, C;
    __device__ void operator()(int b, int n, int c, float *acc) const
    {
        size_t i = ((size_t)b * N + n) * C + c;
        acc[0] += dy[i];
        acc[1] += dy[i] * x[i];
    }
};

// x, h, y: [B, N, C]; gate: [B, C] with row stride ld: y = x + gate * h (y may alias x)
static __global__ void k_gated_fwd(float *y, const float *x, const float *gate, const float *h,
                                   int ld, int N, int C, size_t total)
{
    for (size_t i = d_gid(); i < total; i += d_gstride()) {
        size_t c = i % (size_t)C, b = i / ((size_t)N * C);
        y[i] = x[i] + gate[b * (size_t)ld + c] * h[i];
    }
}

// dx: [B, N, C] += dy (dx may be NULL); dh += dy * gate[b, c] (dh may be NULL)
static __global__ void k_gated_bwd(float *dx, float *dh, const float *dy, const float *gate,
                                   int ld, int N, int C, size_t total)
{
    for (size_t i = d_gid(); i < total; i += d_gstride()) {
        size_t c = i % (size_t)C, b = i / ((size_t)N * C);
        if (dx)
            dx[i] += dy[i];
        if (dh)
            dh[i] += dy[i] * gate[b * (size_t)ld + c];
    }
}

struct cu_f_gate { /* dgate[b,c] += sum_n dy * h */
    const float *dy, *h;
    int N, C;
    __device__ void operator()(int b, int n, int c, float *acc) const
    {
        size_t i = ((size_t)b * N + n) * C + c;
        acc[0] += dy[i] * h[i];
    }
};

static void cu_modulate_forward(backend_t *be, float *y, const float *x, const float *shift,
                                const float *scale, int ld, int B, int N, int C)
{
    if (B <= 0 || N <= 0 || C <= 0)
        return;
    size_t total = (size_t)B * N * C;
    CU_ELEMWISE(cu_st(be), "modulate_forward", total, k_modulate_fwd, y, x, shift, scale, ld, N,
                C, total);
}

static void cu_modulate_backward(backend_t *be, float *dx, float *dshift, float *dscale,
                                 const float *dy, const float *x, const float *scale, int ld,
                                 int B, int N, int C)
{
    cu_state *st = cu_st(be);
    if (B <= 0 || N <= 0 || C <= 0 || cu_enter(st))
        return;
    size_t total = (size_t)B * N * C;
    if (dx) {
        k_modulate_bwd_dx<<<cu_grid(total), CU_BLOCK, 0, st->stream>>>(dx, dy, scale, ld, N, C,
                                                                        total);
        cu_check_launch(st, "modulate_backward (dx)");
    }
    if (dshift || dscale) {
        cu_f_mod f = {dy, x, N, C};
        cu_out2 o = {dshift, dscale, ld};
        cu_colsum<2>(st, f, o, B, N, C, "modulate_backward (dshift, dscale)");
    }
}

static void cu_gated_add_forward(backend_t *be, float *y, const float *x, const float *gate,
                                 const float *h, int ld, int B, int N, int C)
{
    if (B <= 0 || N <= 0 || C <= 0)
        return;
    size_t total = (size_t)B * N * C;
    CU_ELEMWISE(cu_st(be), "gated_add_forward", total, k_gated_fwd, y, x, gate, h, ld, N, C,
                total);
}

static void cu_gated_add_backward(backend_t *be, float *dx, float *dgate, float *dh,
                                  const float *dy, const float *gate, const float *h, int ld,
                                  int B, int N, int C)
{
    cu_state *st = cu_st(be);
    if (B <= 0 || N <= 0 || C <= 0 || cu_enter(st))
        return;
    size_t total = (size_t)B * N * C;
    if (dx || dh) {
        k_gated_bwd<<<cu_grid(total), CU_BLOCK, 0, st->stream>>>(dx, dh, dy, gate, ld, N, C,
                                                                  total);
        cu_check_launch(st, "gated_add_backward (dx, dh)");
    }
    if (dgate) {
        cu_f_gate f = {dy, h, N, C};
        cu_out1 o = {dgate, ld};
        cu_colsum<1>(st, f, o, B, N, C, "gated_add_backward (dgate)");
    }
}

/* ------------------------------------------------------------------------ */
/* reductions and losses                                                    */
/* ------------------------------------------------------------------------ */

#define CU_RED_MAX_BLOCKS 1024

/* blocks for a scalar reduction over n terms: a function of n only */
static int cu_red_blocks(size_t n)
{
    size_t g = n / (4 * CU_BLOCK) + (n % (4 * CU_BLOCK) != 0);
    if (g > CU_RED_MAX_BLOCKS)
        g = CU_RED_MAX_BLOCKS;
    return g ? (int)g : 1;
}

/* fixed-order tree over the 256 values of a block; result in sm[0] */
static __device__ __forceinline__ void d_block_tree(float *sm)
{
    for (int w = CU_BLOCK / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w)
            sm[threadIdx.x] += sm[threadIdx.x + w];
        __syncthreads();
    }
}

// part: [gridDim.x] = per-block sums of f(i), i in [0, n)
template <class F>
static __global__ void k_reduce_partial(F f, size_t n, float *part)
{
    __shared__ float sm[CU_BLOCK];
    float s = 0.0f;
    for (size_t i = (size_t)blockIdx.x * CU_BLOCK + threadIdx.x; i < n;
         i += (size_t)gridDim.x * CU_BLOCK)
        s += f(i);
    sm[threadIdx.x] = s;
    __syncthreads();
    d_block_tree(sm);
    if (threadIdx.x == 0)
        part[blockIdx.x] = sm[0];
}

// out[0] = (sum of part[G]) * mul / div (one block)
static __global__ void k_reduce_final(float *out, const float *part, int G, float mul, float div)
{
    __shared__ float sm[CU_BLOCK];
    float s = 0.0f;
    for (int i = threadIdx.x; i < G; i += CU_BLOCK)
        s += part[i];
    sm[threadIdx.x] = s;
    __syncthreads();
    d_block_tree(sm);
    if (threadIdx.x == 0)
        out[0] = sm[0] * mul / div;
}

template <class F>
static void cu_reduce(cu_state *st, F f, size_t n, float *out, float mul, float div,
                      const char *what)
{
    if (cu_enter(st))
        return;
    int G = cu_red_blocks(n);
    pthread_mutex_lock(&st->mu);
    if (cu_scratch_reserve(st, CU_RED_MAX_BLOCKS) != 0) {
        pthread_mutex_unlock(&st->mu);
        cu_recordf(st, "%s: no device memory for partial sums", what);
        return;
    }
    k_reduce_partial<F><<<G, CU_BLOCK, 0, st->stream>>>(f, n, st->scratch);
    cu_check_launch(st, what);
    k_reduce_final<<<1, CU_BLOCK, 0, st->stream>>>(out, st->scratch, G, mul, div);
    cu_check_launch(st, what);
    pthread_mutex_unlock(&st->mu);
}

struct cu_f_sumsq {
    const float *x;
    __device__ float operator()(size_t i) const
    {
        return x[i] * x[i];
    }
};

struct cu_f_mse { /* (p - t)^2; dpred = k * (p - t) with k = gscale * 2 / n */
    const float *pred, *target;
    float *dpred;
    float k;
    __device__ float operator()(size_t i) const
    {
        float d = pred[i] - target[i];
        if (dpred)
            dpred[i] = k * d;
        return d * d;
    }
};

struct cu_f_kl { /* mu^2 + exp(lv) - 1 - lv; dmu += k mu; dlogvar += k 0.5 (exp(lv) - 1) */
    const float *mu, *lv;
    float *dmu, *dlv;
    float k;
    __device__ float operator()(size_t i) const
    {
        float m = mu[i], l = lv[i], e = expf(l);
        if (dmu)
            dmu[i] += k * m;
        if (dlv)
            dlv[i] += k * 0.5f * (e - 1.0f);
        return m * m + e - 1.0f - l;
    }
};

static void cu_sumsq(backend_t *be, float *out, const float *x, size_t n)
{
    cu_f_sumsq f = {x};
    cu_reduce(cu_st(be), f, n, out, 1.0f, 1.0f, "sumsq");
}

static void cu_mse(backend_t *be, float *out, float *dpred, const float *pred,
                   const float *target, size_t n, float gscale)
{
    float fn = n ? (float)n : 1.0f;
    cu_f_mse f = {pred, target, dpred, gscale * 2.0f / fn};
    cu_reduce(cu_st(be), f, n, out, 1.0f, fn, "mse");
}

static void cu_kl_gauss(backend_t *be, float *out, float *dmu, float *dlogvar, const float *mu,
                        const float *logvar, size_t n, int rows, float gscale)
{
    /* rows <= 0: a zero loss and zero gradients, as the CPU's factor 1/rows -> 0 */
    float fr = rows > 0 ? (float)rows : 1.0f, on = rows > 0 ? 1.0f : 0.0f;
    cu_f_kl f = {mu, logvar, dmu, dlogvar, on * gscale / fr};
    cu_reduce(cu_st(be), f, n, out, on * 0.5f, fr, "kl_gauss");
}

// logits, dlogits: [rows, C]; labels: [rows] -> part[gridDim.x] (sums of row losses);
// one warp per row, rows strided over all warps of the grid
static __global__ void k_xent_partial(float *part, float *dlogits, const float *logits,
                                      const int32_t *labels, int rows, int C, float k)
{
    __shared__ float sm[CU_BLOCK / 32];
    int lane = threadIdx.x & 31, wid = threadIdx.x / 32;
    int nw = gridDim.x * (CU_BLOCK / 32);
    float acc = 0.0f;
    for (int r = blockIdx.x * (CU_BLOCK / 32) + wid; r < rows; r += nw) {
        const float *xr = logits + (size_t)r * C;
        float mx = -INFINITY;
        for (int c = lane; c < C; c += 32)
            mx = fmaxf(mx, xr[c]);
        mx = d_warp_max(mx);
        float s = 0.0f;
        for (int c = lane; c < C; c += 32)
            s += expf(xr[c] - mx);
        s = d_warp_sum(s);
        int lab = labels[r];
        int ok = lab >= 0 && lab < C;
        if (lane == 0 && ok)
            acc += logf(s) + mx - xr[lab];
        if (dlogits) { /* a row with an invalid label gets a zero gradient */
            float inv = 1.0f / s;
            float *dr = dlogits + (size_t)r * C;
            for (int c = lane; c < C; c += 32) {
                float p = k * expf(xr[c] - mx) * inv;
                dr[c] = !ok ? 0.0f : (c == lab ? p - k : p);
            }
        }
    }
    if (lane == 0)
        sm[wid] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = sm[0];
        for (int w = 1; w < CU_BLOCK / 32; w++)
            s += sm[w];
        part[blockIdx.x] = s;
    }
}

static void cu_cross_entropy(backend_t *be, float *out, float *dlogits, const float *logits,
                             const int32_t *labels, int rows, int C, float gscale)
{
    cu_state *st = cu_st(be);
    if (cu_enter(st))
        return;
    if (rows <= 0 || C <= 0) {
        k_fill<<<1, 1, 0, st->stream>>>(out, 0.0f, 1);
        cu_check_launch(st, "cross_entropy");
        return;
    }
    int G = (rows + 4 * (CU_BLOCK / 32) - 1) / (4 * (CU_BLOCK / 32));
    if (G > CU_RED_MAX_BLOCKS)
        G = CU_RED_MAX_BLOCKS;
    pthread_mutex_lock(&st->mu);
    if (cu_scratch_reserve(st, CU_RED_MAX_BLOCKS) != 0) {
        pthread_mutex_unlock(&st->mu);
        cu_recordf(st, "cross_entropy: no device memory for partial sums");
        return;
    }
    k_xent_partial<<<G, CU_BLOCK, 0, st->stream>>>(st->scratch, dlogits, logits, labels, rows, C,
                                                   gscale / (float)rows);
    cu_check_launch(st, "cross_entropy");
    k_reduce_final<<<1, CU_BLOCK, 0, st->stream>>>(out, st->scratch, G, 1.0f, (float)rows);
    cu_check_launch(st, "cross_entropy");
    pthread_mutex_unlock(&st->mu);
}

/* ------------------------------------------------------------------------ */
/* optimiser                                                                */
/* ------------------------------------------------------------------------ */

// w, g, m, v: [n]; ib1, ib2 = 1 / bias corrections
static __global__ void k_adamw(float *w, const float *g, float *m, float *v, size_t n, float lr,
                               float b1, float b2, float eps, float wd, float ib1, float ib2,
                               float gscale)
{
    float a1 = 1.0f - b1, a2 = 1.0f - b2;
    for (size_t i = d_gid(); i < n; i += d_gstride()) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + a1 * gi;
        float vi = b2 * v[i] + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float wi = w[i];
        w[i] = wi - lr * ((mi * ib1) / (sqrtf(vi * ib2) + eps) + wd * wi);
    }
}

static void cu_adamw(backend_t *be, float *w, const float *g, float *m, float *v, size_t n,
                     float lr, float beta1, float beta2, float eps, float wd, int t, float gscale)
{
    /* bias corrections in double, as the CPU backend */
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    CU_ELEMWISE(cu_st(be), "adamw", n, k_adamw, w, g, m, v, n, lr, beta1, beta2, eps, wd,
                1.0f / bc1, 1.0f / bc2, gscale);
}

static void cu_ema(backend_t *be, float *ema, const float *w, size_t n, float decay)
{
    /* ema = (1 - decay) w + decay ema (decay == 0: ema = w, not read) */
    CU_ELEMWISE(cu_st(be), "ema", n, k_axpby, ema, 1.0f - decay, w, decay, n);
}

/* ------------------------------------------------------------------------ */
/* random numbers: Philox-4x32-10 with rng.h's stream layout                */
/* ------------------------------------------------------------------------ */

/* host + device so the integer path can be checked against rng.c on a machine
 * without a GPU */
static __host__ __device__ __forceinline__ uint32_t hd_mulhi(uint32_t a, uint32_t b)
{
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return (uint32_t)(((uint64_t)a * b) >> 32);
#endif
}

static __host__ __device__ __forceinline__ void hd_philox(uint32_t c0, uint32_t c1, uint32_t c2,
                                                          uint32_t c3, uint32_t k0, uint32_t k1,
                                                          uint32_t out[4])
{
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint32_t hi0 = hd_mulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        uint32_t hi1 = hd_mulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* u = ((w >> 8) + 0.5) * 2^-24 in float, capped at the largest float below 1
 * (as rng.c: only w >> 8 = 2^24 - 1 would round to 1.0f) */
static __host__ __device__ __forceinline__ float hd_u01(uint32_t w)
{
    float u = ((float)(w >> 8) + 0.5f) * 0x1p-24f;
    return u < 0x1.fffffep-1f ? u : 0x1.fffffep-1f;
}

/* the four numbers of Philox block j of the stream keyed (k0, k1): uniforms, or
 * Box-Muller normals (words 0,1 -> z0, z1; words 2,3 -> z2, z3) * std + mean */
static __host__ __device__ __forceinline__ void hd_rand_block(uint64_t j, uint32_t k0,
                                                              uint32_t k1, int normal,
                                                              float mean, float std, float v[4])
{
    uint32_t w[4];
    hd_philox((uint32_t)j, (uint32_t)(j >> 32), 0u, 0u, k0, k1, w);
    if (normal) {
        for (int p = 0; p < 2; p++) {
            float ua = hd_u01(w[2 * p]), ub = hd_u01(w[2 * p + 1]);
            float r = sqrtf(-2.0f * logf(ua));
            float th = 6.28318530717958647692f * ub;
            v[2 * p] = r * cosf(th) * std + mean;
            v[2 * p + 1] = r * sinf(th) * std + mean;
        }
    } else {
        for (int q = 0; q < 4; q++)
            v[q] = hd_u01(w[q]);
    }
}

// x: [n]; element i is stream position offset + i; one thread per Philox block
// (positions relative to block offset / 4, so nothing overflows near 2^64)
static __global__ void k_rand(float *x, size_t n, uint32_t k0, uint32_t k1, uint64_t offset,
                              uint64_t nblocks, int normal, float mean, float std)
{
    uint64_t first = offset / 4, lead = offset % 4;
    for (uint64_t jb = d_gid(); jb < nblocks; jb += d_gstride()) {
        uint64_t j = first + jb;
        float v[4];
        hd_rand_block(j, k0, k1, normal, mean, std, v);
        for (int q = 0; q < 4; q++) {
            uint64_t k = 4 * jb + (uint64_t)q; /* position - 4 * first */
            if (k >= lead && k - lead < n)
                x[k - lead] = v[q];
        }
    }
}

static void cu_rand(backend_t *be, float *x, size_t n, uint64_t seed, uint64_t offset,
                    int normal, float mean, float std, const char *what)
{
    cu_state *st = cu_st(be);
    if (n == 0 || cu_enter(st))
        return;
    uint64_t nblocks = (offset % 4 + (uint64_t)n - 1) / 4 + 1; /* no offset + n overflow */
    k_rand<<<cu_grid((size_t)nblocks), CU_BLOCK, 0, st->stream>>>(
        x, n, (uint32_t)seed, (uint32_t)(seed >> 32), offset, nblocks, normal, mean, std);
    cu_check_launch(st, what);
}

static void cu_rand_normal(backend_t *be, float *x, size_t n, uint64_t seed, uint64_t offset,
                           float mean, float std)
{
    cu_rand(be, x, n, seed, offset, 1, mean, std, "rand_normal");
}

/* ------------------------------------------------------------------------ */
/* creation                                                                 */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* convolution layout, pooling, batch norm (NCHW)                           */
/* ------------------------------------------------------------------------ */

#define CU_BN_EPS 1e-5

// col: [C*KH*KW, B*OH*OW] from x: [B, C, H, W], one thread per col entry
static __global__ void k_im2col(float *col, const float *x, conv_geom g, size_t total)
{
    const size_t n = (size_t)g.B * g.OH * g.OW;
    for (size_t t = d_gid(); t < total; t += d_gstride()) {
        size_t r = t / n, q = t % n;
        int j = (int)(r % g.KW), i = (int)(r / g.KW % g.KH), c = (int)(r / g.KW / g.KH);
        int ow = (int)(q % g.OW), oh = (int)(q / g.OW % g.OH), b = (int)(q / g.OW / g.OH);
        int ih = oh * g.stride - g.pad + i, iw = ow * g.stride - g.pad + j;
        col[t] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W
                     ? x[(((size_t)b * g.C + c) * g.H + ih) * g.W + iw]
                     : 0.0f;
    }
}

// dx: [B, C, H, W] += col entries, one thread per dx element (a gather: no atomics)
static __global__ void k_col2im(float *dx, const float *col, conv_geom g, size_t total)
{
    const size_t n = (size_t)g.B * g.OH * g.OW;
    for (size_t t = d_gid(); t < total; t += d_gstride()) {
        int w = (int)(t % g.W), h = (int)(t / g.W % g.H);
        int c = (int)(t / g.W / g.H % g.C), b = (int)(t / g.W / g.H / g.C);
        float s = 0.0f;
        for (int i = 0; i < g.KH; i++) {
            int oh_s = h + g.pad - i;
            if (oh_s < 0 || oh_s % g.stride)
                continue;
            int oh = oh_s / g.stride;
            if (oh >= g.OH)
                continue;
            for (int j = 0; j < g.KW; j++) {
                int ow_s = w + g.pad - j;
                if (ow_s < 0 || ow_s % g.stride)
                    continue;
                int ow = ow_s / g.stride;
                if (ow >= g.OW)
                    continue;
                size_t r = ((size_t)c * g.KH + i) * g.KW + j;
                s += col[r * n + ((size_t)b * g.OH + oh) * g.OW + ow];
            }
        }
        dx[t] += s;
    }
}

static void cu_im2col(backend_t *be, float *col, const float *x, const conv_geom *g)
{
    size_t total = (size_t)g->C * g->KH * g->KW * g->B * g->OH * g->OW;
    CU_ELEMWISE(cu_st(be), "im2col", total, k_im2col, col, x, *g, total);
}
static void cu_col2im(backend_t *be, float *dx, const float *col, const conv_geom *g)
{
    size_t total = (size_t)g->B * g->C * g->H * g->W;
    CU_ELEMWISE(cu_st(be), "col2im", total, k_col2im, dx, col, *g, total);
}

// offset in a plane of window (oh, ow)'s first maximum (rows, then columns)
static __device__ __forceinline__ size_t d_pool_argmax(const float *p, int W, int oh, int ow)
{
    size_t best = (size_t)(2 * oh) * W + 2 * ow;
    size_t cand[3] = {best + 1, best + W, best + W + 1};
    for (int k = 0; k < 3; k++)
        if (p[cand[k]] > p[best] || isnan(p[cand[k]]))
            best = cand[k];
    return best;
}

static __global__ void k_maxpool_fwd(float *y, const float *x, int H, int W, size_t total)
{
    const int OH = H / 2, OW = W / 2;
    for (size_t t = d_gid(); t < total; t += d_gstride()) {
        size_t pl = t / ((size_t)OH * OW);
        int ow = (int)(t % OW), oh = (int)(t / OW % OH);
        const float *p = x + pl * H * W;
        y[t] = p[d_pool_argmax(p, W, oh, ow)];
    }
}

// one thread per input plane element: windows do not overlap, so each dx gets at most one dy
static __global__ void k_maxpool_bwd(float *dx, const float *dy, const float *x, int H, int W,
                                     size_t total)
{
    const int OH = H / 2, OW = W / 2;
    for (size_t t = d_gid(); t < total; t += d_gstride()) {
        size_t pl = t / ((size_t)OH * OW);
        int ow = (int)(t % OW), oh = (int)(t / OW % OH);
        const float *p = x + pl * H * W;
        dx[pl * H * W + d_pool_argmax(p, W, oh, ow)] += dy[t];
    }
}

static void cu_maxpool2_forward(backend_t *be, float *y, const float *x, int planes, int H, int W)
{
    size_t total = (size_t)planes * (H / 2) * (W / 2);
    CU_ELEMWISE(cu_st(be), "maxpool2_forward", total, k_maxpool_fwd, y, x, H, W, total);
}
static void cu_maxpool2_backward(backend_t *be, float *dx, const float *dy, const float *x,
                                 int planes, int H, int W)
{
    size_t total = (size_t)planes * (H / 2) * (W / 2);
    CU_ELEMWISE(cu_st(be), "maxpool2_backward", total, k_maxpool_bwd, dx, dy, x, H, W, total);
}

// block sum of two doubles over CU_BLOCK threads (result in sm[0], sm2[0])
static __device__ void d_block_sum2(double *sm, double *sm2)
{
    __syncthreads();
    for (int s = CU_BLOCK / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            sm[threadIdx.x] += sm[threadIdx.x + s];
            sm2[threadIdx.x] += sm2[threadIdx.x + s];
        }
        __syncthreads();
    }
}

// one block per channel; x, y: [B, C, HW]
static __global__ void k_bn_fwd(float *y, float *mean, float *rstd, float *rm, float *rv,
                                const float *x, const float *g, const float *b, int B, int C,
                                int HW, int train, float momentum)
{
    __shared__ double sm[CU_BLOCK], sm2[CU_BLOCK];
    const int c = blockIdx.x;
    const size_t n = (size_t)B * HW;
    double m, var;
    if (train) {
        double s = 0.0;
        for (size_t k = threadIdx.x; k < n; k += CU_BLOCK)
            s += x[((k / HW) * C + c) * HW + k % HW];
        sm[threadIdx.x] = s;
        sm2[threadIdx.x] = 0.0;
        d_block_sum2(sm, sm2);
        m = sm[0] / (double)n;
        __syncthreads();
        double q = 0.0;
        for (size_t k = threadIdx.x; k < n; k += CU_BLOCK) {
            double d = x[((k / HW) * C + c) * HW + k % HW] - m;
            q += d * d;
        }
        sm[threadIdx.x] = q;
        d_block_sum2(sm, sm2);
        var = sm[0] / (double)n;
    } else {
        m = rm[c];
        var = rv[c];
    }
    const float mf = (float)m, s = (float)(1.0 / sqrt(var + CU_BN_EPS));
    const float gg = g ? g[c] : 1.0f, bb = b ? b[c] : 0.0f;
    for (size_t k = threadIdx.x; k < n; k += CU_BLOCK) {
        size_t i = ((k / HW) * C + c) * HW + k % HW;
        y[i] = (x[i] - mf) * s * gg + bb;
    }
    if (threadIdx.x == 0) {
        mean[c] = mf;
        rstd[c] = s;
        if (train && rm && rv) {
            double unb = n > 1 ? var * (double)n / (double)(n - 1) : var;
            rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * m);
            rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * unb);
        }
    }
}

static __global__ void k_bn_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                                const float *g, const float *mean, const float *rstd, int B,
                                int C, int HW, int train)
{
    __shared__ double sm[CU_BLOCK], sm2[CU_BLOCK];
    const int c = blockIdx.x;
    const size_t n = (size_t)B * HW;
    const float m = mean[c], s = rstd[c], gg = g ? g[c] : 1.0f;
    double a = 0.0, q = 0.0;
    for (size_t k = threadIdx.x; k < n; k += CU_BLOCK) {
        size_t i = ((k / HW) * C + c) * HW + k % HW;
        a += dy[i];
        q += dy[i] * ((x[i] - m) * s);
    }
    sm[threadIdx.x] = a;
    sm2[threadIdx.x] = q;
    d_block_sum2(sm, sm2);
    const double sdy = sm[0], sdyx = sm2[0];
    if (threadIdx.x == 0) {
        if (dg)
            dg[c] += (float)sdyx;
        if (db)
            db[c] += (float)sdy;
    }
    if (!dx)
        return;
    const float k1 = train ? (float)(sdy / (double)n) : 0.0f;
    const float k2 = train ? (float)(sdyx / (double)n) : 0.0f;
    for (size_t k = threadIdx.x; k < n; k += CU_BLOCK) {
        size_t i = ((k / HW) * C + c) * HW + k % HW;
        float xh = (x[i] - m) * s;
        dx[i] += gg * s * (dy[i] - k1 - xh * k2);
    }
}

static void cu_batchnorm_forward(backend_t *be, float *y, float *mean, float *rstd,
                                 float *run_mean, float *run_var, const float *x, const float *g,
                                 const float *b, int B, int C, int HW, int train, float momentum)
{
    cu_state *st = cu_st(be);
    if (B <= 0 || C <= 0 || HW <= 0 || cu_enter(st))
        return;
    k_bn_fwd<<<(unsigned)C, CU_BLOCK, 0, st->stream>>>(y, mean, rstd, run_mean, run_var, x, g, b,
                                                        B, C, HW, train, momentum);
    cu_check_launch(st, "batchnorm_forward");
}

static void cu_batchnorm_backward(backend_t *be, float *dx, float *dg, float *db,
                                  const float *dy, const float *x, const float *g,
                                  const float *mean, const float *rstd, int B, int C, int HW,
                                  int train)
{
    cu_state *st = cu_st(be);
    if (B <= 0 || C <= 0 || HW <= 0 || cu_enter(st))
        return;
    k_bn_bwd<<<(unsigned)C, CU_BLOCK, 0, st->stream>>>(dx, dg, db, dy, x, g, mean, rstd, B, C,
                                                        HW, train);
    cu_check_launch(st, "batchnorm_backward");
}

// one thread per row (HW is small after the pools)
static __global__ void k_avgpool_fwd(float *y, const float *x, int rows, int HW)
{
    for (size_t r = d_gid(); r < (size_t)rows; r += d_gstride()) {
        double s = 0.0;
        for (int i = 0; i < HW; i++)
            s += x[r * HW + i];
        y[r] = (float)(s / (double)HW);
    }
}

static __global__ void k_avgpool_bwd(float *dx, const float *dy, int HW, size_t total)
{
    const float inv = 1.0f / (float)HW;
    for (size_t t = d_gid(); t < total; t += d_gstride())
        dx[t] += dy[t / HW] * inv;
}

static void cu_avgpool_forward(backend_t *be, float *y, const float *x, int rows, int HW)
{
    if (HW <= 0)
        return;
    CU_ELEMWISE(cu_st(be), "avgpool_forward", (size_t)(rows > 0 ? rows : 0), k_avgpool_fwd, y, x,
                rows, HW);
}
static void cu_avgpool_backward(backend_t *be, float *dx, const float *dy, int rows, int HW)
{
    size_t total = rows > 0 && HW > 0 ? (size_t)rows * HW : 0;
    CU_ELEMWISE(cu_st(be), "avgpool_backward", total, k_avgpool_bwd, dx, dy, HW, total);
}

static void cu_state_release(cu_state *st)
{
    if (st->scratch)
        cudaFree(st->scratch);
    /* allocations the caller did not free go with the backend */
    for (size_t i = 0; i < st->nslots; i++)
        if (st->slots[i].p)
            cudaFree(st->slots[i].p);
    if (st->blas)
        cublasDestroy(st->blas);
    if (st->stream)
        cudaStreamDestroy(st->stream);
    (void)cudaGetLastError();
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->emu);
    free(st->slots);
    free(st);
}

static void cu_destroy(backend_t *be)
{
    if (!be)
        return;
    cu_state *st = cu_st(be);
    if (st) {
        if (cu_enter(st) == 0)
            (void)cudaStreamSynchronize(st->stream);
        cu_state_release(st);
    }
    free(be);
}

static const char *cu_error_message(backend_t *be)
{
    /* the pending or sticky error, or the one the last int op reported until an int op
     * succeeds; "" otherwise. Read it on the thread that uses the backend. */
    return cu_st(be)->err_msg;
}

static void cu_fill_ops(backend_ops *o)
{
    memset(o, 0, sizeof *o);
    o->name = "cuda";
    o->alloc = cu_alloc;
    o->free = cu_free;
    o->to_device = cu_to_device;
    o->to_host = cu_to_host;
    o->copy = cu_copy;
    o->sync = cu_sync;
    o->memory = cu_memory;
    o->gemm = cu_gemm;
    o->gemm_batched = cu_gemm_batched;
    o->fill = cu_fill;
    o->axpby = cu_axpby;
    o->add_bias = cu_add_bias;
    o->sum_rows = cu_sum_rows;
    o->act_forward = cu_act_forward;
    o->act_backward = cu_act_backward;
    o->layernorm_forward = cu_layernorm_forward;
    o->layernorm_backward = cu_layernorm_backward;
    o->softmax_forward = cu_softmax_forward;
    o->softmax_backward = cu_softmax_backward;
    o->permute_0213 = cu_permute_0213;
    o->repeat_rows = cu_repeat_rows;
    o->repeat_rows_backward = cu_repeat_rows_backward;
    o->modulate_forward = cu_modulate_forward;
    o->modulate_backward = cu_modulate_backward;
    o->gated_add_forward = cu_gated_add_forward;
    o->gated_add_backward = cu_gated_add_backward;
    o->im2col = cu_im2col;
    o->col2im = cu_col2im;
    o->maxpool2_forward = cu_maxpool2_forward;
    o->maxpool2_backward = cu_maxpool2_backward;
    o->batchnorm_forward = cu_batchnorm_forward;
    o->batchnorm_backward = cu_batchnorm_backward;
    o->avgpool_forward = cu_avgpool_forward;
    o->avgpool_backward = cu_avgpool_backward;
    o->sumsq = cu_sumsq;
    o->mse = cu_mse;
    o->cross_entropy = cu_cross_entropy;
    o->kl_gauss = cu_kl_gauss;
    o->adamw = cu_adamw;
    o->ema = cu_ema;
    o->rand_normal = cu_rand_normal;
    o->destroy = cu_destroy;
    o->error_message = cu_error_message;
}

extern "C" int backend_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

#define CU_CREATE_CHECK(expr, what)                                                            \
    do {                                                                                       \
        cudaError_t e_ = (expr);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            (void)cudaGetLastError();                                                          \
            rc = d2_fail(err, D2_EDEVICE, "cuda:%d: %s: %s (%s)", device, what,                \
                         cudaGetErrorString(e_), cudaGetErrorName(e_));                        \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)

extern "C" int backend_cuda_create(backend_t **out, int device, d2_error *err)
{
    *out = NULL;
    int rc = 0, count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return d2_fail(err, D2_EDEVICE, "cuda:%d: no usable CUDA driver or device: %s (%s)",
                       device, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (device < 0 || device >= count)
        return d2_fail(err, D2_EINVAL, "cuda:%d: no such device (%d CUDA device%s visible)",
                       device, count, count == 1 ? "" : "s");

    backend_t *be = (backend_t *)calloc(1, sizeof *be);
    cu_state *st = (cu_state *)calloc(1, sizeof *st);
    if (!be || !st) {
        free(be);
        free(st);
        return d2_fail(err, D2_ENOMEM, "cuda:%d: out of host memory", device);
    }
    if (pthread_mutex_init(&st->mu, NULL) != 0) {
        free(be);
        free(st);
        return d2_fail(err, D2_ENOMEM, "cuda:%d: cannot create a mutex", device);
    }
    if (pthread_mutex_init(&st->emu, NULL) != 0) {
        pthread_mutex_destroy(&st->mu);
        free(be);
        free(st);
        return d2_fail(err, D2_ENOMEM, "cuda:%d: cannot create a mutex", device);
    }
    st->device = device;
    cu_fill_ops(&st->ops);
    {
        CU_CREATE_CHECK(cudaSetDevice(device), "cudaSetDevice");
        CU_CREATE_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking),
                        "cudaStreamCreate");
        cublasStatus_t s = cublasCreate(&st->blas);
        if (s != CUBLAS_STATUS_SUCCESS) {
            st->blas = NULL;
            rc = d2_fail(err, D2_EDEVICE, "cuda:%d: cublasCreate: %s", device,
                         cublasGetStatusString(s));
            goto fail;
        }
        s = cublasSetStream(st->blas, st->stream);
        if (s == CUBLAS_STATUS_SUCCESS) {
            const char *tf = getenv("D2NWG_TF32");
            st->tf32 = tf && strcmp(tf, "1") == 0;
            s = cublasSetMathMode(st->blas,
                                  st->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
        }
        if (s != CUBLAS_STATUS_SUCCESS) {
            rc = d2_fail(err, D2_EDEVICE, "cuda:%d: cuBLAS setup: %s", device,
                         cublasGetStatusString(s));
            goto fail;
        }
        pthread_mutex_lock(&st->mu);
        rc = cu_scratch_reserve(st, 64 * 1024);
        pthread_mutex_unlock(&st->mu);
        if (rc) {
            rc = d2_fail(err, D2_ENOMEM, "cuda:%d: cannot allocate the reduction scratch buffer",
                    device);
            goto fail;
        }
        /* one real launch: catches a GPU this binary has no kernel image for */
        k_fill<<<1, CU_BLOCK, 0, st->stream>>>(st->scratch, 0.0f, CU_BLOCK);
        CU_CREATE_CHECK(cudaGetLastError(),
                        "test kernel launch (the build targets sm_80 and sm_90)");
        CU_CREATE_CHECK(cudaStreamSynchronize(st->stream), "test kernel");
    }
    be->ops = &st->ops;
    be->impl = st;
    be->threads = 1;
    *out = be;
    return 0;
fail:
    cu_state_release(st);
    free(be);
    return rc ? rc : D2_EDEVICE;
}
