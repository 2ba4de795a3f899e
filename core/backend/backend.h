/* backend.h - the compute interface (DESIGN section 1), in the style of
 * ggml's backend table: a small struct of function pointers. Every float*
 * passed to an op is *device* memory of that backend (host memory for the CPU
 * backend). Layers in core/ are written only against these ops, so the same
 * model code runs on CPU (OpenBLAS) and CUDA (cuBLAS + kernels).
 *
 * Conventions:
 *  - row-major storage everywhere; shapes are given in the comment of each op.
 *  - "+=" in a comment means the op accumulates into its output (backward
 *    passes accumulate gradients, as in llm.c); "=" means it overwrites.
 *  - ops never fail for valid arguments; memory and transfer ops return 0 or a
 *    negative D2_E* code.
 *  - scalar results (losses, sums) are written to a device float and read with
 *    to_host, so no op forces a host round-trip.
 */
#ifndef D2_BACKEND_H
#define D2_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct backend backend_t;

typedef enum act_kind {
    ACT_IDENTITY = 0,
    ACT_RELU = 1,
    ACT_SILU = 2,
    ACT_GELU = 3, /* tanh approximation, as PyTorch's approximate='tanh' */
    ACT_TANH = 4,
    ACT_GELU_ERF = 5 /* exact, x Phi(x), as PyTorch's default nn.GELU (target networks) */
} act_kind;

/* the shape of a 2-D convolution (NCHW): input [B, C, H, W], kernel [KH, KW], stride,
 * zero padding pad, output [B, OC, OH, OW] with OH = (H + 2 pad - KH) / stride + 1 */
typedef struct conv_geom {
    int B, C, H, W, KH, KW, stride, pad, OH, OW;
} conv_geom;

typedef struct backend_ops {
    const char *name; /* "cpu", "cuda" */

    /* ---- memory ---- */
    void *(*alloc)(backend_t *be, size_t bytes); /* zero-filled; NULL on failure */
    void (*free)(backend_t *be, void *p);
    int (*to_device)(backend_t *be, void *dst, const void *host_src, size_t bytes);
    int (*to_host)(backend_t *be, void *host_dst, const void *src, size_t bytes);
    int (*copy)(backend_t *be, void *dst, const void *src, size_t bytes); /* device -> device */
    int (*sync)(backend_t *be);
    /* bytes of device memory in use by this backend / total (0 when unknown) */
    void (*memory)(backend_t *be, size_t *used, size_t *total);

    /* ---- BLAS ---- */
    /* C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
     * op(X) = X or X^T; lda/ldb/ldc are row strides of the stored matrices. */
    void (*gemm)(backend_t *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
    /* the same for `batch` independent problems; matrix i starts at
     * A + i*stride_a, B + i*stride_b, C + i*stride_c (strides in floats) */
    void (*gemm_batched)(backend_t *be, int trans_a, int trans_b, int M, int N, int K,
                         float alpha, const float *A, int lda, long long stride_a,
                         const float *B, int ldb, long long stride_b, float beta, float *C,
                         int ldc, long long stride_c, int batch);

    /* ---- elementwise and broadcast ---- */
    void (*fill)(backend_t *be, float *x, float value, size_t n);         /* x[n] = value */
    /* y[n] = a * x[n] + b * y[n] */
    void (*axpby)(backend_t *be, float *y, float a, const float *x, float b, size_t n);
    /* y[r,c] += bias[c] for y: [rows, cols], bias: [cols] */
    void (*add_bias)(backend_t *be, float *y, const float *bias, int rows, int cols);
    /* db[c] += sum_r dy[r,c] for dy: [rows, cols] */
    void (*sum_rows)(backend_t *be, float *db, const float *dy, int rows, int cols);
    /* y[n] = act(x[n]) (y may alias x) */
    void (*act_forward)(backend_t *be, act_kind kind, float *y, const float *x, size_t n);
    /* dx[n] += act'(x[n]) * dy[n] (x is the pre-activation input) */
    void (*act_backward)(backend_t *be, act_kind kind, float *dx, const float *dy,
                         const float *x, size_t n);

    /* ---- normalisation ---- */
    /* y[r,:] = (x[r,:] - mean) * rstd * g + b over C columns; x,y: [rows, C]; g,b: [C] or
     * NULL (no affine); mean, rstd: [rows] are saved for backward. eps = 1e-5. */
    void (*layernorm_forward)(backend_t *be, float *y, float *mean, float *rstd, const float *x,
                              const float *g, const float *b, int rows, int C);
    /* dx += ..., dg += ..., db += ... (dg/db ignored when g is NULL) */
    void (*layernorm_backward)(backend_t *be, float *dx, float *dg, float *db, const float *dy,
                               const float *x, const float *g, const float *mean,
                               const float *rstd, int rows, int C);

    /* ---- softmax (attention) ---- */
    /* y[r,:] = softmax(scale * x[r,:]); x,y: [rows, cols] */
    void (*softmax_forward)(backend_t *be, float *y, const float *x, float scale, int rows,
                            int cols);
    /* dx[r,:] += scale * y * (dy - sum(dy*y)) */
    void (*softmax_backward)(backend_t *be, float *dx, const float *dy, const float *y,
                             float scale, int rows, int cols);
    /* out[a,c,b,d] = in[a,b,c,d] for in: [A,B,C,D] (head split/merge); out may not alias */
    void (*permute_0213)(backend_t *be, float *out, const float *in, int A, int B, int C, int D);
    /* out[a,n,:] = in[n,:] for in: [N, C] -> out: [A, N, C] (broadcast learned seeds) */
    void (*repeat_rows)(backend_t *be, float *out, const float *in, int A, int N, int C);
    /* din[n,:] += sum_a dout[a,n,:] */
    void (*repeat_rows_backward)(backend_t *be, float *din, const float *dout, int A, int N,
                                 int C);

    /* ---- adaLN modulation (denoiser) ---- */
    /* y[b,n,c] = x[b,n,c] * (1 + scale[b,c]) + shift[b,c]; x,y: [B,N,C]; shift,scale: [B,C].
     * shift and scale are read with row stride `ld` (so they may be column slices of one
     * [B, k*C] projection). */
    void (*modulate_forward)(backend_t *be, float *y, const float *x, const float *shift,
                             const float *scale, int ld, int B, int N, int C);
    /* dx += dy*(1+scale); dshift[b,c] += sum_n dy; dscale[b,c] += sum_n dy*x
     * (dshift/dscale use row stride ld) */
    void (*modulate_backward)(backend_t *be, float *dx, float *dshift, float *dscale,
                              const float *dy, const float *x, const float *scale, int ld,
                              int B, int N, int C);
    /* y[b,n,c] = x[b,n,c] + gate[b,c] * h[b,n,c]  (gate row stride ld) */
    void (*gated_add_forward)(backend_t *be, float *y, const float *x, const float *gate,
                              const float *h, int ld, int B, int N, int C);
    /* dx += dy; dh += dy*gate; dgate[b,c] += sum_n dy*h */
    void (*gated_add_backward)(backend_t *be, float *dx, float *dgate, float *dh,
                               const float *dy, const float *gate, const float *h, int ld,
                               int B, int N, int C);

    /* ---- convolution and pooling (NCHW, as PyTorch) ---- */
    /* col[(c*KH + i)*KW + j, (b*OH + oh)*OW + ow] = x[b, c, oh*stride - pad + i,
     * ow*stride - pad + j] (0 outside the image); x: [B, C, H, W],
     * col: [C*KH*KW, B*OH*OW]. With it a convolution is one GEMM (see conv2d_forward). */
    void (*im2col)(backend_t *be, float *col, const float *x, const conv_geom *g);
    /* the adjoint: dx[b, c, h, w] += every col entry that im2col read from it */
    void (*col2im)(backend_t *be, float *dx, const float *col, const conv_geom *g);
    /* 2x2 max pool, stride 2 (odd sizes floor, as nn.MaxPool2d(2)): x: [planes, H, W],
     * y: [planes, H/2, W/2] */
    void (*maxpool2_forward)(backend_t *be, float *y, const float *x, int planes, int H, int W);
    /* dx += dy routed to each window's first maximum (x is the forward input) */
    void (*maxpool2_backward)(backend_t *be, float *dx, const float *dy, const float *x,
                              int planes, int H, int W);
    /* batch norm over x: [B, C, HW] per channel, eps = 1e-5 (nn.BatchNorm2d).
     * train: mean and biased variance of the batch; mean, rstd: [C] saved for backward;
     * run_mean/run_var (may be NULL) updated as PyTorch does: r = (1 - momentum) r +
     * momentum * stat, the variance unbiased (N/(N-1), N = B*HW).
     * eval: mean = run_mean, rstd = 1/sqrt(run_var + eps) (written to mean, rstd).
     * y = (x - mean) * rstd * g + b; y may alias x only in eval mode. */
    void (*batchnorm_forward)(backend_t *be, float *y, float *mean, float *rstd,
                              float *run_mean, float *run_var, const float *x, const float *g,
                              const float *b, int B, int C, int HW, int train, float momentum);
    /* dx += ..., dg += sum dy*xhat, db += sum dy; train: through the batch statistics,
     * eval: statistics held constant (dx = dy * g * rstd) */
    void (*batchnorm_backward)(backend_t *be, float *dx, float *dg, float *db, const float *dy,
                               const float *x, const float *g, const float *mean,
                               const float *rstd, int B, int C, int HW, int train);
    /* global average pool: y[r] = mean_i x[r, i]; x: [rows, HW] (rows = B*C) */
    void (*avgpool_forward)(backend_t *be, float *y, const float *x, int rows, int HW);
    /* dx[r, i] += dy[r] / HW */
    void (*avgpool_backward)(backend_t *be, float *dx, const float *dy, int rows, int HW);

    /* ---- reductions and losses (scalars written to device memory) ---- */
    /* out[0] = sum_i x[i] * x[i] */
    void (*sumsq)(backend_t *be, float *out, const float *x, size_t n);
    /* out[0] = mean((pred - target)^2); dpred = gscale * 2 (pred - target) / n
     * (dpred may be NULL: forward only) */
    void (*mse)(backend_t *be, float *out, float *dpred, const float *pred, const float *target,
                size_t n, float gscale);
    /* softmax cross-entropy over rows: logits [rows, C], labels int32 [rows] in 0..C-1.
     * out[0] = mean_r -log softmax(logits[r])[labels[r]];
     * dlogits = gscale * (softmax - onehot) / rows (may be NULL). The CPU backend sums each
     * row's log-sum-exp in double, so its loss is the host target_eval's to the bit. */
    void (*cross_entropy)(backend_t *be, float *out, float *dlogits, const float *logits,
                          const int32_t *labels, int rows, int C, float gscale);
    /* KL( N(mu, exp(logvar)) || N(0,1) ) summed over the n entries and divided by `rows`:
     * out[0] = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar) / rows;
     * dmu = gscale * mu / rows; dlogvar = gscale * 0.5 (exp(logvar) - 1) / rows (accumulate) */
    void (*kl_gauss)(backend_t *be, float *out, float *dmu, float *dlogvar, const float *mu,
                     const float *logvar, size_t n, int rows, float gscale);

    /* ---- optimiser ---- */
    /* AdamW (decoupled weight decay, bias-corrected, step t >= 1), for n params:
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * w -= lr * (mhat / (sqrt(vhat) + eps) + wd * w); g is scaled by gscale first
     * (use it for gradient clipping). */
    void (*adamw)(backend_t *be, float *w, const float *g, float *m, float *v, size_t n, float lr,
                  float beta1, float beta2, float eps, float wd, int t, float gscale);
    /* ema = decay * ema + (1 - decay) * w */
    void (*ema)(backend_t *be, float *ema, const float *w, size_t n, float decay);

    /* ---- random numbers (Philox-4x32-10, see rng.h for the stream layout) ---- */
    /* x[i] = standard normal * std + mean for i in [0, n), element i taken from
     * position (offset + i) of the stream for (seed). */
    void (*rand_normal)(backend_t *be, float *x, size_t n, uint64_t seed, uint64_t offset,
                        float mean, float std);

    /* ---- lifetime ---- */
    /* release everything the backend owns (impl, handles) and `be` itself; called by
     * backend_destroy. Memory from alloc must have been freed before. */
    void (*destroy)(backend_t *be);

    /* ---- diagnostics (may be NULL: the backend never records errors) ---- */
    /* Ops that return void cannot report a device failure themselves: the backend
     * records the first one, sync()/to_host() then return D2_EDEVICE, and this gives
     * its message ("" when nothing failed). */
    const char *(*error_message)(backend_t *be);
} backend_ops;

struct backend {
    const backend_ops *ops;
    void *impl; /* backend-private state (cuBLAS handle, stream, ...) */
    int threads;
};

/* Create the CPU backend (OpenBLAS). threads <= 0: use all cores. */
int backend_cpu_create(backend_t **out, int threads, d2_error *err);

/* Create a backend from a device string: "cpu", "cuda", "cuda:N". When the
 * binary was built without CUDA or no GPU is found, "cuda" fails with a message. */
int backend_create(backend_t **out, const char *device, int threads, d2_error *err);
void backend_destroy(backend_t *be);

/* The backend's message for its device failure ("" when none, or when the backend records
 * none, as the CPU backend). */
const char *backend_error_message(backend_t *be);
/* For callers that report errors: when rc is a failure (not a cancel) and the backend has a
 * device failure message, append it to err->msg (unless err already holds it) so a device
 * fault is not reported as its symptom (a NaN loss, an unreadable result). Returns rc, or
 * D2_EDEVICE when the device message was appended. */
int backend_explain(backend_t *be, int rc, d2_error *err);

#ifdef D2_WITH_CUDA
/* core/backend_cuda.cu: the CUDA backend on GPU `device` (cuBLAS + kernels), with its own
 * stream and cuBLAS handle. GEMMs run in FP32; D2NWG_TF32=1 in the environment when the
 * backend is created switches them to TF32 tensor cores (faster, ~1e-7 normalised error
 * instead of ~1e-13; test_backend_ops prints both). */
int backend_cuda_create(backend_t **out, int device, d2_error *err);
/* Number of CUDA devices visible (0 when none or no driver). */
int backend_cuda_device_count(void);
#endif

/* conv_geom with OH, OW filled in; D2_EINVAL (message) for a kernel larger than the padded
 * input, or non-positive sizes. */
int conv_geom_make(conv_geom *g, int B, int C, int H, int W, int K, int stride, int pad,
                   d2_error *err);
/* Convolution on any backend from im2col/col2im, gemm and permute_0213 (no bias):
 * x: [B, C, H, W], w: [OC, C, KH, KW] (PyTorch's layout), y: [B, OC, OH, OW] (=);
 * col: [C*KH*KW, B*OH*OW] and tmp: [OC, B*OH*OW] are scratch (col keeps im2col(x) for
 * backward). */
void conv2d_forward(backend_t *be, float *y, float *col, float *tmp, const float *x,
                    const float *w, int OC, const conv_geom *g);
/* dw += dy (x) col, dx += conv^T(dy) (dx may be NULL: no input gradient); col is the
 * forward's, tmp [OC, B*OH*OW] and dcol [C*KH*KW, B*OH*OW] scratch */
void conv2d_backward(backend_t *be, float *dx, float *dw, float *tmp, float *dcol,
                     const float *dy, const float *col, const float *w, int OC,
                     const conv_geom *g);

/* Convenience: allocate n floats on the backend (zeroed). */
float *backend_alloc_floats(backend_t *be, size_t n);

#endif
