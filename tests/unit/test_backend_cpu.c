/* test_backend_cpu.c - every op of the CPU backend against a naive double-precision
 * reference, at random shapes (odd sizes, so the chunked loops' tails are exercised). */
#include "testutil.h"

#include <math.h>

#include "backend.h"
#include "rng.h"

/* ---- helpers ---- */

typedef struct tctx {
    backend_t *be;
    rng r;
} tctx;

static int setup(void **state)
{
    tctx *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    d2_error err;
    if (backend_cpu_create(&t->be, 1, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        free(t);
        return -1;
    }
    rng_init(&t->r, 2024, 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tctx *t = *state;
    size_t used = 1;
    t->be->ops->memory(t->be, &used, NULL);
    backend_destroy(t->be);
    free(t);
    return used == 0 ? 0 : -1; /* every test freed what it allocated */
}

static int rnd_int(tctx *t, int lo, int hi)
{
    return lo + (int)rng_below(&t->r, (uint32_t)(hi - lo + 1));
}

/* device buffer of n uniforms in [lo, hi); the host copy goes to *host when not NULL */
static float *dev_rand(tctx *t, size_t n, float lo, float hi, float **host)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(h);
    for (size_t i = 0; i < n; i++)
        h[i] = lo + (hi - lo) * rng_uniform(&t->r);
    float *d = backend_alloc_floats(t->be, n ? n : 1);
    assert_non_null(d);
    assert_int_equal(t->be->ops->to_device(t->be, d, h, n * sizeof(float)), 0);
    if (host)
        *host = h;
    else
        free(h);
    return d;
}

static float *host_copy(tctx *t, const float *d, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(h);
    assert_int_equal(t->be->ops->to_host(t->be, h, d, n * sizeof(float)), 0);
    return h;
}

static void dfree(tctx *t, void *p)
{
    t->be->ops->free(t->be, p);
}

static float read_scalar(tctx *t, const float *d)
{
    float v;
    assert_int_equal(t->be->ops->to_host(t->be, &v, d, sizeof v), 0);
    return v;
}

/* |got - ref| <= atol + rtol |ref| elementwise */
static void check_close(const char *what, const float *got, const double *ref, size_t n,
                        double atol, double rtol)
{
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= atol + rtol * fabs(ref[i])))
            fail_msg("%s[%zu] = %.9g, expected %.9g", what, i, (double)got[i], ref[i]);
    }
}

/* ---- memory ---- */

static void test_memory(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    size_t used0, used1, total;
    op->memory(t->be, &used0, &total);
    assert_true(total > 0);
    float *a = backend_alloc_floats(t->be, 1000);
    assert_non_null(a);
    assert_true(((uintptr_t)a & 63) == 0);
    for (int i = 0; i < 1000; i++)
        assert_true(a[i] == 0.0f);
    op->memory(t->be, &used1, NULL);
    assert_true(used1 >= used0 + 4000);
    float h[5] = {1, 2, 3, 4, 5}, back[5];
    assert_int_equal(op->to_device(t->be, a, h, sizeof h), 0);
    assert_int_equal(op->copy(t->be, a + 10, a, sizeof h), 0);
    assert_int_equal(op->sync(t->be), 0);
    assert_int_equal(op->to_host(t->be, back, a + 10, sizeof back), 0);
    assert_memory_equal(h, back, sizeof h);
    op->free(t->be, a);
    op->free(t->be, NULL);
    op->memory(t->be, &used1, NULL);
    assert_int_equal(used1, used0);
}

static void test_create(void **state)
{
    (void)state;
    backend_t *be = NULL;
    d2_error err;
    assert_int_equal(backend_create(&be, "cpu", 1, &err), 0);
    assert_string_equal(be->ops->name, "cpu");
    assert_int_equal(be->threads, 1);
    backend_destroy(be);
    assert_int_equal(backend_create(&be, "tpu", 1, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "tpu"));
    assert_int_equal(backend_create(&be, "cuda:x", 1, &err), D2_EINVAL);
#ifndef D2_WITH_CUDA
    assert_int_equal(backend_create(&be, "cuda:0", 1, &err), D2_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "make CUDA=1"));
#endif
    assert_null(be);
    backend_destroy(NULL);
}

/* ---- BLAS ---- */

/* stored A is [M, K] or (trans) [K, M], with row stride lda >= its column count */
static void gemm_ref(int ta, int tb, int M, int N, int K, double alpha, const float *A, int lda,
                     const float *B, int ldb, double beta, const float *C0, int ldc, double *C)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
            }
            C[(size_t)i * ldc + j] = alpha * s + beta * C0[(size_t)i * ldc + j];
        }
}

static void test_gemm(void **state)
{
    tctx *t = *state;
    for (int rep = 0; rep < 8; rep++) {
        int ta = rep & 1, tb = (rep >> 1) & 1;
        int M = rnd_int(t, 1, 37), N = rnd_int(t, 1, 41), K = rnd_int(t, 1, 29);
        int lda = (ta ? M : K) + rnd_int(t, 0, 5), ldb = (tb ? K : N) + rnd_int(t, 0, 5);
        int ldc = N + rnd_int(t, 0, 5);
        size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
        size_t nc = (size_t)M * ldc;
        float *hA, *hB, *hC;
        float *A = dev_rand(t, na, -1, 1, &hA), *B = dev_rand(t, nb, -1, 1, &hB);
        float *C = dev_rand(t, nc, -1, 1, &hC);
        double *ref = malloc(nc * sizeof(double));
        for (size_t i = 0; i < nc; i++)
            ref[i] = hC[i]; /* padding columns must stay untouched */
        float alpha = rep < 4 ? 1.0f : 0.75f, beta = rep < 4 ? 0.0f : -0.5f;
        gemm_ref(ta, tb, M, N, K, alpha, hA, lda, hB, ldb, beta, hC, ldc, ref);
        t->be->ops->gemm(t->be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        float *got = host_copy(t, C, nc);
        check_close("gemm", got, ref, nc, 1e-5, 1e-5);
        free(got);
        free(ref);
        free(hA);
        free(hB);
        free(hC);
        dfree(t, A);
        dfree(t, B);
        dfree(t, C);
    }
    /* K = 0: C = beta C */
    float *hC;
    float *C = dev_rand(t, 12, -1, 1, &hC);
    t->be->ops->gemm(t->be, 0, 0, 3, 4, 0, 1.0f, NULL, 1, NULL, 4, 2.0f, C, 4);
    float *got = host_copy(t, C, 12);
    for (int i = 0; i < 12; i++)
        TU_ASSERT_NEAR(got[i], 2.0 * hC[i], 1e-6);
    free(got);
    free(hC);
    dfree(t, C);
}

static void test_gemm_batched(void **state)
{
    tctx *t = *state;
    for (int rep = 0; rep < 4; rep++) {
        int ta = rep & 1, tb = rep >> 1;
        int M = rnd_int(t, 1, 13), N = rnd_int(t, 1, 11), K = rnd_int(t, 1, 9);
        int batch = rnd_int(t, 1, 5);
        int lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
        long long sa = (long long)(ta ? K : M) * lda + 3, sb = (long long)(tb ? N : K) * ldb + 1;
        long long sc = (long long)M * ldc + 2;
        size_t na = (size_t)sa * batch, nb = (size_t)sb * batch, nc = (size_t)sc * batch;
        float *hA, *hB, *hC;
        float *A = dev_rand(t, na, -1, 1, &hA), *B = dev_rand(t, nb, -1, 1, &hB);
        float *C = dev_rand(t, nc, -1, 1, &hC);
        double *ref = malloc(nc * sizeof(double));
        for (size_t i = 0; i < nc; i++)
            ref[i] = hC[i];
        for (int b = 0; b < batch; b++)
            gemm_ref(ta, tb, M, N, K, 1.5, hA + b * sa, lda, hB + b * sb, ldb, 0.5,
                     hC + b * sc, ldc, ref + b * sc);
        t->be->ops->gemm_batched(t->be, ta, tb, M, N, K, 1.5f, A, lda, sa, B, ldb, sb, 0.5f, C,
                                 ldc, sc, batch);
        float *got = host_copy(t, C, nc);
        check_close("gemm_batched", got, ref, nc, 1e-5, 1e-5);
        free(got);
        free(ref);
        free(hA);
        free(hB);
        free(hC);
        dfree(t, A);
        dfree(t, B);
        dfree(t, C);
    }
}

/* GEMMs large enough for OpenBLAS's threads, wide and tall, every transposition, on 3
 * threads: against the reference, with the padding columns of C untouched; and a batched
 * GEMM of many small problems (run over the pool, backend_cpu_gemm.c) gives the same bytes
 * on 3 threads as on 1 (each problem is one call either way) */
static void gemm_split_cases(tctx *t, backend_t *b3)
{
    const int shapes[2][3] = {{203, 150, 70}, {40, 301, 50}};
    for (int rep = 0; rep < 8; rep++) {
        int ta = rep & 1, tb = (rep >> 1) & 1;
        int M = shapes[rep >> 2][0], N = shapes[rep >> 2][1], K = shapes[rep >> 2][2];
        int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
        size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
        size_t nc = (size_t)M * ldc;
        float *hA, *hB, *hC;
        float *A = dev_rand(t, na, -1, 1, &hA), *B = dev_rand(t, nb, -1, 1, &hB);
        float *C = dev_rand(t, nc, -1, 1, &hC);
        double *ref = malloc(nc * sizeof(double));
        assert_non_null(ref);
        for (size_t i = 0; i < nc; i++)
            ref[i] = hC[i];
        gemm_ref(ta, tb, M, N, K, 0.75, hA, lda, hB, ldb, rep & 4 ? -0.5 : 0.0, hC, ldc, ref);
        b3->ops->gemm(b3, ta, tb, M, N, K, 0.75f, A, lda, B, ldb, rep & 4 ? -0.5f : 0.0f, C,
                      ldc);
        float *got = host_copy(t, C, nc);
        check_close("gemm split", got, ref, nc, 1e-4, 1e-5);
        free(got);
        free(ref);
        free(hA);
        free(hB);
        free(hC);
        dfree(t, A);
        dfree(t, B);
        dfree(t, C);
    }
}

static void test_gemm_split(void **state)
{
    tctx *t = *state;
    backend_t *b3 = NULL;
    d2_error err;
    assert_int_equal(backend_cpu_create(&b3, 3, &err), 0);
    gemm_split_cases(t, b3);
    const int M = 8, N = 10, K = 16, batch = 333;
    float *A = dev_rand(t, (size_t)batch * M * K, -1, 1, NULL);
    float *B = dev_rand(t, (size_t)batch * N * K, -1, 1, NULL);
    float *C1 = dev_rand(t, (size_t)batch * M * N, -1, 1, NULL);
    float *C3 = backend_alloc_floats(t->be, (size_t)batch * M * N);
    assert_non_null(C3);
    t->be->ops->copy(t->be, C3, C1, (size_t)batch * M * N * sizeof(float));
    t->be->ops->gemm_batched(t->be, 0, 1, M, N, K, 1.0f, A, K, M * K, B, K, N * K, 1.0f, C1, N,
                             M * N, batch);
    b3->ops->gemm_batched(b3, 0, 1, M, N, K, 1.0f, A, K, M * K, B, K, N * K, 1.0f, C3, N,
                          M * N, batch);
    assert_memory_equal(C1, C3, (size_t)batch * M * N * sizeof(float));
    dfree(t, A);
    dfree(t, B);
    dfree(t, C1);
    dfree(t, C3);
    backend_destroy(b3);
}

/* ---- elementwise ---- */

static void test_elementwise(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    const size_t sizes[] = {1, 15, 16, 17, 100, 1031};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *ha, *hb, *hy;
        float *a = dev_rand(t, n, -2, 2, &ha), *b = dev_rand(t, n, -2, 2, &hb);
        float *y = dev_rand(t, n, -2, 2, &hy);
        double *ref = malloc(n * sizeof(double));
        float *got;

        op->fill(t->be, y, 1.5f, n);
        got = host_copy(t, y, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = 1.5;
        check_close("fill", got, ref, n, 0, 0);
        free(got);
        op->fill(t->be, y, 0.0f, n);
        got = host_copy(t, y, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = 0;
        check_close("fill0", got, ref, n, 0, 0);
        free(got);

        /* y = 0.5 a + -2 y, with y = 0 from above */
        op->axpby(t->be, y, 0.5f, a, -2.0f, n);
        got = host_copy(t, y, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = 0.5 * ha[i];
        check_close("axpby", got, ref, n, 1e-5, 1e-5);
        free(got);
        /* b = 1 (accumulate) and b = 0 (overwrite, y not read) */
        op->axpby(t->be, y, 1.0f, b, 1.0f, n);
        got = host_copy(t, y, n);
        for (size_t i = 0; i < n; i++)
            ref[i] += hb[i];
        check_close("axpby b=1", got, ref, n, 1e-5, 1e-5);
        free(got);
        op->fill(t->be, y, NAN, n);
        op->axpby(t->be, y, 2.0f, b, 0.0f, n);
        got = host_copy(t, y, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = 2.0 * hb[i];
        check_close("axpby b=0", got, ref, n, 1e-6, 1e-6);
        free(got);

        /* in place (x aliasing y): a = 3 a + 3 a */
        op->axpby(t->be, a, 3.0f, a, 3.0f, n);
        got = host_copy(t, a, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = 6.0 * ha[i];
        check_close("axpby in place", got, ref, n, 1e-5, 1e-5);
        free(got);

        /* ema = 0.9 ema + 0.1 w */
        op->to_device(t->be, y, hy, n * sizeof(float));
        op->ema(t->be, y, b, n, 0.9f);
        got = host_copy(t, y, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = 0.9 * hy[i] + 0.1 * hb[i];
        check_close("ema", got, ref, n, 1e-6, 1e-5);
        free(got);

        free(ref);
        free(ha);
        free(hb);
        free(hy);
        dfree(t, a);
        dfree(t, b);
        dfree(t, y);
    }
}

static void test_bias_sum_rows(void **state)
{
    tctx *t = *state;
    int rows = rnd_int(t, 1, 30), cols = rnd_int(t, 1, 70);
    size_t n = (size_t)rows * cols;
    float *hy, *hb, *hd;
    float *y = dev_rand(t, n, -1, 1, &hy), *b = dev_rand(t, (size_t)cols, -1, 1, &hb);
    float *db = dev_rand(t, (size_t)cols, -1, 1, &hd);
    double *ref = malloc(n * sizeof(double));
    t->be->ops->add_bias(t->be, y, b, rows, cols);
    for (size_t i = 0; i < n; i++)
        ref[i] = (double)hy[i] + hb[i % cols];
    float *got = host_copy(t, y, n);
    check_close("add_bias", got, ref, n, 1e-6, 1e-6);
    free(got);
    t->be->ops->sum_rows(t->be, db, y, rows, cols);
    for (int c = 0; c < cols; c++) {
        ref[c] = hd[c];
        for (int r = 0; r < rows; r++)
            ref[c] += (double)hy[(size_t)r * cols + c] + hb[c];
    }
    got = host_copy(t, db, (size_t)cols);
    check_close("sum_rows", got, ref, (size_t)cols, 1e-5, 1e-5);
    free(got);
    free(ref);
    free(hy);
    free(hb);
    free(hd);
    dfree(t, y);
    dfree(t, b);
    dfree(t, db);
}

static double act_ref(act_kind k, double x)
{
    switch (k) {
    case ACT_RELU: return x > 0 ? x : 0;
    case ACT_SILU: return x / (1 + exp(-x));
    case ACT_GELU: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case ACT_TANH: return tanh(x);
    case ACT_GELU_ERF: return 0.5 * x * (1 + erf(x / sqrt(2)));
    default: return x;
    }
}

static double act_grad_ref(act_kind k, double x)
{
    switch (k) {
    case ACT_RELU: return x > 0 ? 1 : 0;
    case ACT_SILU: {
        double s = 1 / (1 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    case ACT_GELU: {
        double c = sqrt(2 / M_PI), u = c * (x + 0.044715 * x * x * x), th = tanh(u);
        return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x);
    }
    case ACT_TANH: return 1 - tanh(x) * tanh(x);
    case ACT_GELU_ERF: return 0.5 * (1 + erf(x / sqrt(2))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    default: return 1;
    }
}

static void test_activations(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    const size_t n = 1000 + 7;
    for (int k = ACT_IDENTITY; k <= ACT_GELU_ERF; k++) {
        float *hx, *hdy, *hdx;
        float *x = dev_rand(t, n, -8, 8, &hx), *dy = dev_rand(t, n, -1, 1, &hdy);
        float *dx = dev_rand(t, n, -1, 1, &hdx);
        /* a few extreme values: no NaN, correct saturation */
        const float extremes[] = {-1000.0f, -90.0f, -30.0f, 0.0f, 30.0f, 90.0f, 1000.0f};
        for (size_t e = 0; e < sizeof extremes / sizeof extremes[0]; e++)
            hx[e * 101] = extremes[e];
        op->to_device(t->be, x, hx, n * sizeof(float));
        float *y = backend_alloc_floats(t->be, n);
        double *ref = malloc(n * sizeof(double));
        op->act_forward(t->be, (act_kind)k, y, x, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = act_ref((act_kind)k, hx[i]);
        float *got = host_copy(t, y, n);
        check_close("act_forward", got, ref, n, 2e-6, 2e-6);
        free(got);
        op->act_backward(t->be, (act_kind)k, dx, dy, x, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = hdx[i] + act_grad_ref((act_kind)k, hx[i]) * hdy[i];
        got = host_copy(t, dx, n);
        check_close("act_backward", got, ref, n, 2e-6, 2e-5);
        free(got);
        /* in place */
        op->act_forward(t->be, (act_kind)k, x, x, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = act_ref((act_kind)k, hx[i]);
        got = host_copy(t, x, n);
        check_close("act_forward in place", got, ref, n, 2e-6, 2e-6);
        free(got);
        free(ref);
        free(hx);
        free(hdy);
        free(hdx);
        dfree(t, x);
        dfree(t, dy);
        dfree(t, dx);
        dfree(t, y);
    }
}

/* ---- normalisation, softmax ---- */

static void test_layernorm(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    for (int affine = 0; affine < 2; affine++) {
        int rows = rnd_int(t, 1, 9), C = rnd_int(t, 2, 77);
        size_t n = (size_t)rows * C;
        float *hx, *hg, *hb, *hdy, *hdx, *hdg, *hdb;
        float *x = dev_rand(t, n, -3, 5, &hx), *g = dev_rand(t, (size_t)C, 0.5f, 1.5f, &hg);
        float *b = dev_rand(t, (size_t)C, -1, 1, &hb), *dy = dev_rand(t, n, -1, 1, &hdy);
        float *dx = dev_rand(t, n, -1, 1, &hdx), *dg = dev_rand(t, (size_t)C, -1, 1, &hdg);
        float *db = dev_rand(t, (size_t)C, -1, 1, &hdb);
        float *y = backend_alloc_floats(t->be, n), *mean = backend_alloc_floats(t->be, rows);
        float *rstd = backend_alloc_floats(t->be, rows);
        op->layernorm_forward(t->be, y, mean, rstd, x, affine ? g : NULL, affine ? b : NULL,
                              rows, C);
        double *ry = malloc(n * sizeof(double)), *rdx = malloc(n * sizeof(double));
        double *rm = malloc(rows * sizeof(double)), *rs = malloc(rows * sizeof(double));
        double *rdg = malloc(C * sizeof(double)), *rdb = malloc(C * sizeof(double));
        for (int c = 0; c < C; c++) {
            rdg[c] = hdg[c];
            rdb[c] = hdb[c];
        }
        for (int r = 0; r < rows; r++) {
            const float *xr = hx + (size_t)r * C;
            double m = 0, v = 0;
            for (int c = 0; c < C; c++)
                m += xr[c];
            m /= C;
            for (int c = 0; c < C; c++)
                v += (xr[c] - m) * (xr[c] - m);
            v /= C;
            double s = 1 / sqrt(v + 1e-5);
            rm[r] = m;
            rs[r] = s;
            double a = 0, bsum = 0;
            for (int c = 0; c < C; c++) {
                double nrm = (xr[c] - m) * s, gc = affine ? hg[c] : 1.0;
                ry[(size_t)r * C + c] = nrm * gc + (affine ? hb[c] : 0.0);
                double dn = hdy[(size_t)r * C + c] * gc;
                a += dn;
                bsum += dn * nrm;
                rdg[c] += hdy[(size_t)r * C + c] * nrm;
                rdb[c] += hdy[(size_t)r * C + c];
            }
            a /= C;
            bsum /= C;
            for (int c = 0; c < C; c++) {
                double nrm = (xr[c] - m) * s, gc = affine ? hg[c] : 1.0;
                double dn = hdy[(size_t)r * C + c] * gc;
                rdx[(size_t)r * C + c] = hdx[(size_t)r * C + c] + (dn - a - nrm * bsum) * s;
            }
        }
        float *got = host_copy(t, y, n);
        check_close("layernorm y", got, ry, n, 1e-5, 1e-5);
        free(got);
        got = host_copy(t, mean, rows);
        check_close("layernorm mean", got, rm, rows, 1e-5, 1e-5);
        free(got);
        got = host_copy(t, rstd, rows);
        check_close("layernorm rstd", got, rs, rows, 1e-5, 1e-4);
        free(got);
        op->layernorm_backward(t->be, dx, affine ? dg : NULL, affine ? db : NULL, dy, x,
                               affine ? g : NULL, mean, rstd, rows, C);
        got = host_copy(t, dx, n);
        check_close("layernorm dx", got, rdx, n, 1e-4, 1e-4);
        free(got);
        if (affine) {
            got = host_copy(t, dg, C);
            check_close("layernorm dg", got, rdg, C, 1e-4, 1e-4);
            free(got);
            got = host_copy(t, db, C);
            check_close("layernorm db", got, rdb, C, 1e-4, 1e-4);
            free(got);
        }
        free(ry);
        free(rdx);
        free(rm);
        free(rs);
        free(rdg);
        free(rdb);
        free(hx);
        free(hg);
        free(hb);
        free(hdy);
        free(hdx);
        free(hdg);
        free(hdb);
        float *bufs[] = {x, g, b, dy, dx, dg, db, y, mean, rstd};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            dfree(t, bufs[i]);
    }
}

static void test_softmax(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    const float scales[] = {1.0f, 0.35f, 4.0f};
    for (int s = 0; s < 3; s++) {
        int rows = rnd_int(t, 1, 12), cols = rnd_int(t, 1, 45);
        size_t n = (size_t)rows * cols;
        float *hx, *hdy, *hdx;
        float *x = dev_rand(t, n, -6, 6, &hx), *dy = dev_rand(t, n, -1, 1, &hdy);
        float *dx = dev_rand(t, n, -1, 1, &hdx);
        if (s == 2) { /* large logits: stable */
            hx[0] = 80.0f;
            op->to_device(t->be, x, hx, n * sizeof(float));
        }
        float *y = backend_alloc_floats(t->be, n);
        double sc = scales[s];
        op->softmax_forward(t->be, y, x, scales[s], rows, cols);
        double *ry = malloc(n * sizeof(double)), *rdx = malloc(n * sizeof(double));
        for (int r = 0; r < rows; r++) {
            const float *xr = hx + (size_t)r * cols;
            double m = -INFINITY, z = 0;
            for (int c = 0; c < cols; c++)
                m = fmax(m, sc * xr[c]);
            for (int c = 0; c < cols; c++)
                z += exp(sc * xr[c] - m);
            for (int c = 0; c < cols; c++)
                ry[(size_t)r * cols + c] = exp(sc * xr[c] - m) / z;
            double dot = 0;
            for (int c = 0; c < cols; c++)
                dot += hdy[(size_t)r * cols + c] * ry[(size_t)r * cols + c];
            for (int c = 0; c < cols; c++) {
                size_t i = (size_t)r * cols + c;
                rdx[i] = hdx[i] + sc * ry[i] * (hdy[i] - dot);
            }
        }
        float *got = host_copy(t, y, n);
        check_close("softmax y", got, ry, n, 1e-6, 1e-5);
        free(got);
        op->softmax_backward(t->be, dx, dy, y, scales[s], rows, cols);
        got = host_copy(t, dx, n);
        check_close("softmax dx", got, rdx, n, 1e-5, 1e-5);
        free(got);
        free(ry);
        free(rdx);
        free(hx);
        free(hdy);
        free(hdx);
        dfree(t, x);
        dfree(t, dy);
        dfree(t, dx);
        dfree(t, y);
    }
}

/* ---- layout ---- */

static void test_permute_repeat(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    int A = rnd_int(t, 1, 3), B = rnd_int(t, 1, 5), C = rnd_int(t, 1, 4), D = rnd_int(t, 1, 9);
    size_t n = (size_t)A * B * C * D;
    float *hin;
    float *in = dev_rand(t, n, -1, 1, &hin);
    float *out = backend_alloc_floats(t->be, n), *back = backend_alloc_floats(t->be, n);
    op->permute_0213(t->be, out, in, A, B, C, D);
    float *got = host_copy(t, out, n);
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                for (int d = 0; d < D; d++)
                    assert_true(got[(((size_t)a * C + c) * B + b) * D + d] ==
                                hin[(((size_t)a * B + b) * C + c) * D + d]);
    free(got);
    /* applying it with B and C swapped undoes it */
    op->permute_0213(t->be, back, out, A, C, B, D);
    got = host_copy(t, back, n);
    assert_memory_equal(got, hin, n * sizeof(float));
    free(got);

    int R = rnd_int(t, 1, 4), N = rnd_int(t, 1, 6), K = rnd_int(t, 1, 19);
    size_t nin = (size_t)N * K;
    float *hs, *hd;
    float *seeds = dev_rand(t, nin, -1, 1, &hs);
    float *rep = backend_alloc_floats(t->be, (size_t)R * nin);
    op->repeat_rows(t->be, rep, seeds, R, N, K);
    got = host_copy(t, rep, (size_t)R * nin);
    for (int a = 0; a < R; a++)
        assert_memory_equal(got + (size_t)a * nin, hs, nin * sizeof(float));
    free(got);
    float *hdo;
    float *dout = dev_rand(t, (size_t)R * nin, -1, 1, &hdo);
    float *din = dev_rand(t, nin, -1, 1, &hd);
    op->repeat_rows_backward(t->be, din, dout, R, N, K);
    double *ref = malloc(nin * sizeof(double));
    for (size_t i = 0; i < nin; i++) {
        ref[i] = hd[i];
        for (int a = 0; a < R; a++)
            ref[i] += hdo[(size_t)a * nin + i];
    }
    got = host_copy(t, din, nin);
    check_close("repeat_rows_backward", got, ref, nin, 1e-6, 1e-6);
    free(got);
    free(ref);
    free(hin);
    free(hs);
    free(hd);
    free(hdo);
    float *bufs[] = {in, out, back, seeds, rep, dout, din};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dfree(t, bufs[i]);
}

/* ---- adaLN ---- */

static void test_modulate_gated(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    int B = rnd_int(t, 1, 4), N = rnd_int(t, 1, 5), C = rnd_int(t, 1, 37);
    int ld = 3 * C; /* shift, scale, gate are column slices of one [B, 3C] projection */
    size_t n = (size_t)B * N * C, np = (size_t)B * ld;
    float *hx, *hp, *hh, *hdy, *hdx, *hdp, *hdh;
    float *x = dev_rand(t, n, -2, 2, &hx), *p = dev_rand(t, np, -1, 1, &hp);
    float *h = dev_rand(t, n, -2, 2, &hh), *dy = dev_rand(t, n, -1, 1, &hdy);
    float *dx = dev_rand(t, n, -1, 1, &hdx), *dp = dev_rand(t, np, -1, 1, &hdp);
    float *dh = dev_rand(t, n, -1, 1, &hdh);
    float *y = backend_alloc_floats(t->be, n);
    double *ref = malloc((n > np ? n : np) * sizeof(double));
    const float *shift = p, *scale = p + C, *gate = p + 2 * C;

    op->modulate_forward(t->be, y, x, shift, scale, ld, B, N, C);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < N; j++)
            for (int c = 0; c < C; c++) {
                size_t i = ((size_t)b * N + j) * C + c;
                ref[i] = hx[i] * (1.0 + hp[b * ld + C + c]) + hp[b * ld + c];
            }
    float *got = host_copy(t, y, n);
    check_close("modulate y", got, ref, n, 1e-6, 1e-6);
    free(got);

    /* backward: dx += dy (1 + scale); dshift += sum_n dy; dscale += sum_n dy x */
    op->modulate_backward(t->be, dx, dp, dp + C, dy, x, scale, ld, B, N, C);
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % C), b = (int)(i / ((size_t)N * C));
        ref[i] = hdx[i] + hdy[i] * (1.0 + hp[b * ld + C + c]);
    }
    got = host_copy(t, dx, n);
    check_close("modulate dx", got, ref, n, 1e-5, 1e-5);
    free(got);
    for (size_t i = 0; i < np; i++)
        ref[i] = hdp[i];
    for (int b = 0; b < B; b++)
        for (int j = 0; j < N; j++)
            for (int c = 0; c < C; c++) {
                size_t i = ((size_t)b * N + j) * C + c;
                ref[b * ld + c] += hdy[i];
                ref[b * ld + C + c] += (double)hdy[i] * hx[i];
            }
    got = host_copy(t, dp, np);
    check_close("modulate dshift/dscale", got, ref, np, 1e-5, 1e-5);
    free(got);

    /* gated add: y = x + gate * h */
    op->gated_add_forward(t->be, y, x, gate, h, ld, B, N, C);
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % C), b = (int)(i / ((size_t)N * C));
        ref[i] = hx[i] + (double)hp[b * ld + 2 * C + c] * hh[i];
    }
    got = host_copy(t, y, n);
    check_close("gated_add y", got, ref, n, 1e-6, 1e-6);
    free(got);
    float *hdx2 = host_copy(t, dx, n), *hdp2 = host_copy(t, dp, np);
    op->gated_add_backward(t->be, dx, dp + 2 * C, dh, dy, gate, h, ld, B, N, C);
    for (size_t i = 0; i < n; i++)
        ref[i] = (double)hdx2[i] + hdy[i];
    got = host_copy(t, dx, n);
    check_close("gated_add dx", got, ref, n, 1e-5, 1e-5);
    free(got);
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % C), b = (int)(i / ((size_t)N * C));
        ref[i] = hdh[i] + (double)hdy[i] * hp[b * ld + 2 * C + c];
    }
    got = host_copy(t, dh, n);
    check_close("gated_add dh", got, ref, n, 1e-5, 1e-5);
    free(got);
    for (size_t i = 0; i < np; i++)
        ref[i] = hdp2[i];
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % C), b = (int)(i / ((size_t)N * C));
        ref[b * ld + 2 * C + c] += (double)hdy[i] * hh[i];
    }
    got = host_copy(t, dp, np);
    check_close("gated_add dgate", got, ref, np, 1e-5, 1e-5);
    free(got);

    free(ref);
    free(hdx2);
    free(hdp2);
    free(hx);
    free(hp);
    free(hh);
    free(hdy);
    free(hdx);
    free(hdp);
    free(hdh);
    float *bufs[] = {x, p, h, dy, dx, dp, dh, y};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dfree(t, bufs[i]);
}

/* ---- reductions and losses ---- */

static void test_losses(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    float *out = backend_alloc_floats(t->be, 1);
    size_t n = 1000 + 3;
    float *hp, *ht, *hd;
    float *p = dev_rand(t, n, -2, 2, &hp), *tg = dev_rand(t, n, -2, 2, &ht);
    float *d = dev_rand(t, n, -1, 1, &hd);
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)hp[i] * hp[i];
    op->sumsq(t->be, out, p, n);
    TU_ASSERT_NEAR(read_scalar(t, out), s, 1e-5 * s);

    /* mse and its gradient (overwrites dpred) */
    double mse = 0;
    double *ref = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double e = (double)hp[i] - ht[i];
        mse += e * e;
        ref[i] = 0.5 * 2.0 * e / (double)n;
    }
    mse /= (double)n;
    op->mse(t->be, out, d, p, tg, n, 0.5f);
    TU_ASSERT_NEAR(read_scalar(t, out), mse, 1e-5 * mse);
    float *got = host_copy(t, d, n);
    check_close("mse dpred", got, ref, n, 1e-8, 1e-5);
    free(got);
    op->fill(t->be, out, -1.0f, 1);
    op->mse(t->be, out, NULL, p, tg, n, 1.0f);
    TU_ASSERT_NEAR(read_scalar(t, out), mse, 1e-5 * mse);

    /* cross-entropy over rows */
    int rows = 13, C = 7;
    float *hl;
    float *logits = dev_rand(t, (size_t)rows * C, -4, 4, &hl);
    int32_t labels_h[13];
    for (int r = 0; r < rows; r++)
        labels_h[r] = (int32_t)rng_below(&t->r, (uint32_t)C);
    int32_t *labels = t->be->ops->alloc(t->be, sizeof labels_h);
    assert_non_null(labels);
    op->to_device(t->be, labels, labels_h, sizeof labels_h);
    float *dl = backend_alloc_floats(t->be, (size_t)rows * C);
    double ce = 0;
    double *rdl = malloc((size_t)rows * C * sizeof(double));
    for (int r = 0; r < rows; r++) {
        const float *lr = hl + (size_t)r * C;
        double m = -INFINITY, z = 0;
        for (int c = 0; c < C; c++)
            m = fmax(m, lr[c]);
        for (int c = 0; c < C; c++)
            z += exp(lr[c] - m);
        ce += m + log(z) - lr[labels_h[r]];
        for (int c = 0; c < C; c++)
            rdl[r * C + c] = 2.0 * (exp(lr[c] - m) / z - (c == labels_h[r])) / rows;
    }
    ce /= rows;
    op->cross_entropy(t->be, out, dl, logits, labels, rows, C, 2.0f);
    TU_ASSERT_NEAR(read_scalar(t, out), ce, 1e-5 * ce);
    got = host_copy(t, dl, (size_t)rows * C);
    check_close("cross_entropy dlogits", got, rdl, (size_t)rows * C, 1e-6, 1e-5);
    free(got);
    op->cross_entropy(t->be, out, NULL, logits, labels, rows, C, 1.0f);
    TU_ASSERT_NEAR(read_scalar(t, out), ce, 1e-5 * ce);

    /* KL(N(mu, exp(logvar)) || N(0, 1)) / rows, gradients accumulate */
    size_t nk = 103;
    int krows = 5;
    float *hmu, *hlv, *hdm, *hdl;
    float *mu = dev_rand(t, nk, -2, 2, &hmu), *lv = dev_rand(t, nk, -3, 2, &hlv);
    float *dmu = dev_rand(t, nk, -1, 1, &hdm), *dlv = dev_rand(t, nk, -1, 1, &hdl);
    double kl = 0;
    double *rdm = malloc(nk * sizeof(double)), *rdlv = malloc(nk * sizeof(double));
    for (size_t i = 0; i < nk; i++) {
        kl += (double)hmu[i] * hmu[i] + exp(hlv[i]) - 1 - hlv[i];
        rdm[i] = hdm[i] + 3.0 * hmu[i] / krows;
        rdlv[i] = hdl[i] + 3.0 * 0.5 * (exp(hlv[i]) - 1) / krows;
    }
    kl = 0.5 * kl / krows;
    op->kl_gauss(t->be, out, dmu, dlv, mu, lv, nk, krows, 3.0f);
    TU_ASSERT_NEAR(read_scalar(t, out), kl, 1e-5 * kl);
    got = host_copy(t, dmu, nk);
    check_close("kl dmu", got, rdm, nk, 1e-6, 1e-5);
    free(got);
    got = host_copy(t, dlv, nk);
    check_close("kl dlogvar", got, rdlv, nk, 1e-6, 1e-5);
    free(got);

    free(ref);
    free(rdl);
    free(rdm);
    free(rdlv);
    free(hp);
    free(ht);
    free(hd);
    free(hl);
    free(hmu);
    free(hlv);
    free(hdm);
    free(hdl);
    dfree(t, labels);
    float *bufs[] = {out, p, tg, d, logits, dl, mu, lv, dmu, dlv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dfree(t, bufs[i]);
}

/* ---- optimiser ---- */

static void test_adamw(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    size_t n = 77;
    float *hw, *hg;
    float *w = dev_rand(t, n, -1, 1, &hw), *g = dev_rand(t, n, -1, 1, &hg);
    float *m = backend_alloc_floats(t->be, n), *v = backend_alloc_floats(t->be, n);
    double *rw = malloc(n * sizeof(double)), *rm = calloc(n, sizeof(double));
    double *rv = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++)
        rw[i] = hw[i];
    const double lr = 0.01, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1, gs = 0.5;
    for (int step = 1; step <= 3; step++) {
        op->adamw(t->be, w, g, m, v, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd,
                  step, (float)gs);
        for (size_t i = 0; i < n; i++) {
            double gg = hg[i] * gs;
            rm[i] = b1 * rm[i] + (1 - b1) * gg;
            rv[i] = b2 * rv[i] + (1 - b2) * gg * gg;
            double mh = rm[i] / (1 - pow(b1, step)), vh = rv[i] / (1 - pow(b2, step));
            rw[i] -= lr * (mh / (sqrt(vh) + eps) + wd * rw[i]);
        }
    }
    float *got = host_copy(t, w, n);
    check_close("adamw w", got, rw, n, 1e-6, 1e-5);
    free(got);
    got = host_copy(t, m, n);
    check_close("adamw m", got, rm, n, 1e-7, 1e-5);
    free(got);
    got = host_copy(t, v, n);
    check_close("adamw v", got, rv, n, 1e-8, 1e-5);
    free(got);
    /* first step moves every weight by about lr (sign of the gradient) plus decay */
    free(rw);
    free(rm);
    free(rv);
    free(hw);
    free(hg);
    float *bufs[] = {w, g, m, v};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dfree(t, bufs[i]);
}

/* ---- random numbers ---- */

static void test_rand(void **state)
{
    tctx *t = *state;
    size_t n = 501;
    float *x = backend_alloc_floats(t->be, n);
    float *ref = malloc(n * sizeof(float));
    float *got;
    t->be->ops->rand_normal(t->be, x, n, 99, 5, 1.0f, 2.0f);
    rng_fill_normal(ref, n, 99, 5, 1.0f, 2.0f);
    got = host_copy(t, x, n);
    assert_memory_equal(got, ref, n * sizeof(float));
    free(got);
    free(ref);
    dfree(t, x);
}

/* ---- empty shapes: nothing is touched, scalars are 0, nothing crashes ---- */

static void test_empty(void **state)
{
    tctx *t = *state;
    const backend_ops *op = t->be->ops;
    float *hb;
    float *b = dev_rand(t, 32, -1, 1, &hb), *out = backend_alloc_floats(t->be, 1);
    op->fill(t->be, out, 7.0f, 1);
    op->sumsq(t->be, out, b, 0);
    assert_true(read_scalar(t, out) == 0.0f);
    op->fill(t->be, out, 7.0f, 1);
    op->mse(t->be, out, NULL, b, b, 0, 1.0f);
    assert_true(read_scalar(t, out) == 0.0f);
    op->fill(t->be, out, 7.0f, 1);
    op->kl_gauss(t->be, out, NULL, NULL, b, b, 0, 0, 1.0f);
    assert_true(read_scalar(t, out) == 0.0f);
    op->fill(t->be, out, 7.0f, 1);
    op->cross_entropy(t->be, out, NULL, b, NULL, 0, 3, 1.0f);
    assert_true(read_scalar(t, out) == 0.0f);
    op->sum_rows(t->be, b, b + 16, 0, 16);
    op->layernorm_forward(t->be, b, b, b, b, NULL, NULL, 0, 16);
    op->layernorm_backward(t->be, b, b, b, b, b, b, b, b, 0, 16);
    op->softmax_forward(t->be, b, b, 1.0f, 0, 16);
    op->softmax_backward(t->be, b, b, b, 1.0f, 0, 16);
    op->modulate_forward(t->be, b, b, b, b, 16, 2, 0, 8);
    op->modulate_backward(t->be, b, b, b + 8, b, b, b, 16, 2, 0, 8);
    op->gated_add_backward(t->be, b, b, b, b, b, b, 16, 2, 0, 8);
    op->gemm(t->be, 0, 0, 0, 4, 4, 1.0f, b, 4, b, 4, 0.0f, b, 4);
    op->axpby(t->be, b, 1.0f, b, 1.0f, 0);
    op->act_forward(t->be, ACT_SILU, b, b, 0);
    op->adamw(t->be, b, b, b, b, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, 1.0f);
    float *got = host_copy(t, b, 32);
    assert_memory_equal(got, hb, 32 * sizeof(float)); /* untouched */
    free(got);
    free(hb);
    dfree(t, b);
    dfree(t, out);
}

/* ---- threads: the same results on 1 and on 3 threads ---- */

typedef struct pair {
    backend_t *b1, *b3;
} pair;

/* the same n random values on both backends */
static void pair_rand(tctx *t, pair *p, size_t n, float lo, float hi, float **d1, float **d3)
{
    float *h = malloc(n * sizeof(float));
    assert_non_null(h);
    for (size_t i = 0; i < n; i++)
        h[i] = lo + (hi - lo) * rng_uniform(&t->r);
    *d1 = backend_alloc_floats(p->b1, n);
    *d3 = backend_alloc_floats(p->b3, n);
    assert_non_null(*d1);
    assert_non_null(*d3);
    p->b1->ops->to_device(p->b1, *d1, h, n * sizeof(float));
    p->b3->ops->to_device(p->b3, *d3, h, n * sizeof(float));
    free(h);
}

static void pair_same(pair *p, const char *what, const float *d1, const float *d3, size_t n)
{
    float *h1 = malloc(n * sizeof(float)), *h3 = malloc(n * sizeof(float));
    assert_non_null(h1);
    assert_non_null(h3);
    p->b1->ops->to_host(p->b1, h1, d1, n * sizeof(float));
    p->b3->ops->to_host(p->b3, h3, d3, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        if (memcmp(&h1[i], &h3[i], sizeof(float)) != 0)
            fail_msg("%s[%zu]: %.9g on 1 thread, %.9g on 3", what, i, (double)h1[i],
                     (double)h3[i]);
    free(h1);
    free(h3);
}

static void test_threads_agree(void **state)
{
    tctx *t = *state;
    pair p;
    d2_error err;
    assert_int_equal(backend_cpu_create(&p.b1, 1, &err), 0);
    assert_int_equal(backend_cpu_create(&p.b3, 3, &err), 0);
    const backend_ops *o1 = p.b1->ops, *o3 = p.b3->ops;
    backend_t *b1 = p.b1, *b3 = p.b3;
    float *x1, *x3, *y1, *y3, *z1, *z3, *w1, *w3;

    /* elementwise and activations, n not a multiple of anything */
    const size_t n = 100003;
    pair_rand(t, &p, n, -4, 4, &x1, &x3);
    pair_rand(t, &p, n, -4, 4, &y1, &y3);
    pair_rand(t, &p, n, -1, 1, &z1, &z3);
    o1->axpby(b1, y1, 0.3f, x1, -0.7f, n);
    o3->axpby(b3, y3, 0.3f, x3, -0.7f, n);
    pair_same(&p, "axpby", y1, y3, n);
    for (int k = ACT_IDENTITY; k <= ACT_GELU_ERF; k++) {
        o1->act_forward(b1, (act_kind)k, y1, x1, n);
        o3->act_forward(b3, (act_kind)k, y3, x3, n);
        pair_same(&p, "act_forward", y1, y3, n);
        o1->act_backward(b1, (act_kind)k, z1, y1, x1, n);
        o3->act_backward(b3, (act_kind)k, z3, y3, x3, n);
        pair_same(&p, "act_backward", z1, z3, n);
    }

    /* rows: bias, sum_rows, layernorm, softmax (rows x cols = 250 x 333) */
    const int rows = 250, cols = 333;
    float *g1, *g3, *m1, *m3, *r1, *r3, *dg1, *dg3, *db1, *db3;
    pair_rand(t, &p, (size_t)cols, 0.5f, 1.5f, &g1, &g3);
    pair_rand(t, &p, (size_t)cols, -1, 1, &dg1, &dg3);
    pair_rand(t, &p, (size_t)cols, -1, 1, &db1, &db3);
    pair_rand(t, &p, (size_t)rows, 0, 1, &m1, &m3);
    pair_rand(t, &p, (size_t)rows, 0, 1, &r1, &r3);
    o1->add_bias(b1, x1, g1, rows, cols);
    o3->add_bias(b3, x3, g3, rows, cols);
    pair_same(&p, "add_bias", x1, x3, (size_t)rows * cols);
    o1->sum_rows(b1, db1, x1, rows, cols);
    o3->sum_rows(b3, db3, x3, rows, cols);
    pair_same(&p, "sum_rows", db1, db3, (size_t)cols);
    o1->layernorm_forward(b1, y1, m1, r1, x1, g1, db1, rows, cols);
    o3->layernorm_forward(b3, y3, m3, r3, x3, g3, db3, rows, cols);
    pair_same(&p, "layernorm y", y1, y3, (size_t)rows * cols);
    pair_same(&p, "layernorm rstd", r1, r3, (size_t)rows);
    o1->layernorm_backward(b1, z1, dg1, db1, y1, x1, g1, m1, r1, rows, cols);
    o3->layernorm_backward(b3, z3, dg3, db3, y3, x3, g3, m3, r3, rows, cols);
    pair_same(&p, "layernorm dx", z1, z3, (size_t)rows * cols);
    pair_same(&p, "layernorm dg", dg1, dg3, (size_t)cols);
    pair_same(&p, "layernorm db", db1, db3, (size_t)cols);
    o1->softmax_forward(b1, y1, x1, 0.7f, rows, cols);
    o3->softmax_forward(b3, y3, x3, 0.7f, rows, cols);
    pair_same(&p, "softmax y", y1, y3, (size_t)rows * cols);
    o1->softmax_backward(b1, z1, x1, y1, 0.7f, rows, cols);
    o3->softmax_backward(b3, z3, x3, y3, 0.7f, rows, cols);
    pair_same(&p, "softmax dx", z1, z3, (size_t)rows * cols);

    /* adaLN: B = 5, N = 200, C = 99, ld = 3C */
    const int B = 5, N = 200, C = 99, ld = 3 * C;
    float *q1, *q3, *dq1, *dq3;
    pair_rand(t, &p, (size_t)B * ld, -1, 1, &q1, &q3);
    pair_rand(t, &p, (size_t)B * ld, -1, 1, &dq1, &dq3);
    o1->modulate_forward(b1, y1, x1, q1, q1 + C, ld, B, N, C);
    o3->modulate_forward(b3, y3, x3, q3, q3 + C, ld, B, N, C);
    pair_same(&p, "modulate y", y1, y3, (size_t)B * N * C);
    o1->modulate_backward(b1, z1, dq1, dq1 + C, y1, x1, q1 + C, ld, B, N, C);
    o3->modulate_backward(b3, z3, dq3, dq3 + C, y3, x3, q3 + C, ld, B, N, C);
    pair_same(&p, "modulate dx", z1, z3, (size_t)B * N * C);
    pair_same(&p, "modulate dshift/dscale", dq1, dq3, (size_t)B * ld);
    o1->gated_add_forward(b1, y1, x1, q1 + 2 * C, z1, ld, B, N, C);
    o3->gated_add_forward(b3, y3, x3, q3 + 2 * C, z3, ld, B, N, C);
    pair_same(&p, "gated_add y", y1, y3, (size_t)B * N * C);
    o1->gated_add_backward(b1, z1, dq1 + 2 * C, x1, y1, q1 + 2 * C, x1, ld, B, N, C);
    o3->gated_add_backward(b3, z3, dq3 + 2 * C, x3, y3, q3 + 2 * C, x3, ld, B, N, C);
    pair_same(&p, "gated_add dx", z1, z3, (size_t)B * N * C);
    pair_same(&p, "gated_add dgate", dq1, dq3, (size_t)B * ld);

    /* reductions and losses: the same up to the order the parts are added in */
    float *s1 = backend_alloc_floats(b1, 1), *s3 = backend_alloc_floats(b3, 1), v1, v3;
    float *big1, *big3;
    const size_t nbig = 300007; /* several parts of 64k */
    pair_rand(t, &p, nbig, -1, 1, &big1, &big3);
    o1->sumsq(b1, s1, big1, nbig);
    o3->sumsq(b3, s3, big3, nbig);
    o1->to_host(b1, &v1, s1, sizeof v1);
    o3->to_host(b3, &v3, s3, sizeof v3);
    TU_ASSERT_NEAR(v3, v1, 1e-6 * v1);
    TU_ASSERT_NEAR(v1, nbig / 3.0, 0.01 * nbig / 3.0);
    float *cp1 = backend_alloc_floats(b1, nbig), *cp3 = backend_alloc_floats(b3, nbig);
    o1->copy(b1, cp1, big1, nbig * sizeof(float)); /* 1.2 MB: in parts on 3 threads */
    o3->copy(b3, cp3, big3, nbig * sizeof(float));
    pair_same(&p, "copy 1.2 MB", cp1, cp3, nbig);
    pair_same(&p, "copy 1.2 MB vs source", big1, cp3, nbig);
    o1->free(b1, cp1);
    o3->free(b3, cp3);
    o1->free(b1, big1);
    o3->free(b3, big3);
    o1->mse(b1, s1, z1, x1, y1, n, 1.0f);
    o3->mse(b3, s3, z3, x3, y3, n, 1.0f);
    o1->to_host(b1, &v1, s1, sizeof v1);
    o3->to_host(b3, &v3, s3, sizeof v3);
    TU_ASSERT_NEAR(v3, v1, 1e-6 * v1);
    pair_same(&p, "mse dpred", z1, z3, n);
    o1->kl_gauss(b1, s1, z1, y1, x1, z1, n, 7, 1.0f);
    o3->kl_gauss(b3, s3, z3, y3, x3, z3, n, 7, 1.0f);
    o1->to_host(b1, &v1, s1, sizeof v1);
    o3->to_host(b3, &v3, s3, sizeof v3);
    TU_ASSERT_NEAR(v3, v1, 1e-6 * v1);
    pair_same(&p, "kl dlogvar", y1, y3, n);
    const int ce_rows = 9000, ce_c = 11;
    int32_t *lab_h = malloc(ce_rows * sizeof(int32_t));
    assert_non_null(lab_h);
    for (int i = 0; i < ce_rows; i++)
        lab_h[i] = (int32_t)rng_below(&t->r, ce_c);
    int32_t *l1 = o1->alloc(b1, ce_rows * sizeof(int32_t));
    int32_t *l3 = o3->alloc(b3, ce_rows * sizeof(int32_t));
    o1->to_device(b1, l1, lab_h, ce_rows * sizeof(int32_t));
    o3->to_device(b3, l3, lab_h, ce_rows * sizeof(int32_t));
    o1->cross_entropy(b1, s1, z1, x1, l1, ce_rows, ce_c, 1.0f);
    o3->cross_entropy(b3, s3, z3, x3, l3, ce_rows, ce_c, 1.0f);
    o1->to_host(b1, &v1, s1, sizeof v1);
    o3->to_host(b3, &v3, s3, sizeof v3);
    TU_ASSERT_NEAR(v3, v1, 1e-6 * v1);
    pair_same(&p, "cross_entropy dlogits", z1, z3, (size_t)ce_rows * ce_c);

    /* copy (disjoint and overlapping) and repeat_rows: 300 x 333 */
    o1->copy(b1, z1, x1, n * sizeof(float));
    o3->copy(b3, z3, x3, n * sizeof(float));
    pair_same(&p, "copy", z1, z3, n);
    o1->copy(b1, z1 + 7, z1, (n - 7) * sizeof(float));
    o3->copy(b3, z3 + 7, z3, (n - 7) * sizeof(float));
    pair_same(&p, "copy overlapping", z1, z3, n);
    o1->repeat_rows(b1, z1, g1, 300, 1, cols);
    o3->repeat_rows(b3, z3, g3, 300, 1, cols);
    pair_same(&p, "repeat_rows", z1, z3, (size_t)300 * cols);

    /* AdamW */
    pair_rand(t, &p, n, 0, 0.01f, &w1, &w3);
    o1->fill(b1, z1, 0.01f, n);
    o3->fill(b3, z3, 0.01f, n);
    o1->adamw(b1, x1, y1, z1, w1, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 5, 0.5f);
    o3->adamw(b3, x3, y3, z3, w3, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 5, 0.5f);
    pair_same(&p, "adamw w", x1, x3, n);
    pair_same(&p, "adamw v", w1, w3, n);

    free(lab_h);
    o1->free(b1, l1);
    o3->free(b3, l3);
    float *f1[] = {x1, y1, z1, w1, g1, m1, r1, dg1, db1, q1, dq1, s1};
    float *f3[] = {x3, y3, z3, w3, g3, m3, r3, dg3, db3, q3, dq3, s3};
    for (size_t i = 0; i < sizeof f1 / sizeof f1[0]; i++) {
        o1->free(b1, f1[i]);
        o3->free(b3, f3[i]);
    }
    backend_destroy(b1);
    backend_destroy(b3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),         cmocka_unit_test(test_create),
        cmocka_unit_test(test_gemm),           cmocka_unit_test(test_gemm_batched),
        cmocka_unit_test(test_gemm_split),
        cmocka_unit_test(test_elementwise),    cmocka_unit_test(test_bias_sum_rows),
        cmocka_unit_test(test_activations),    cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_softmax),        cmocka_unit_test(test_permute_repeat),
        cmocka_unit_test(test_modulate_gated), cmocka_unit_test(test_losses),
        cmocka_unit_test(test_adamw),          cmocka_unit_test(test_rand),
        cmocka_unit_test(test_empty),          cmocka_unit_test(test_threads_agree),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
