/* test_backend_ops.c - every op of backend_ops on the CPU backend and on CUDA, in the
 * spirit of ggml's test-backend-ops: fresh random inputs (the same on both backends),
 * outputs compared by normalised squared error
 *     nmse = sum (cuda - cpu)^2 / sum cpu^2
 * which must stay well under 1e-5 for the float32 ops; the random ops must agree exactly
 * (uniforms up to 1 ulp, normals within 1e-5); reductions must be bitwise repeatable. Then
 * the modules built on the ops (linear, layernorm, MAB, ISAB, PMA) run on both backends
 * and are compared, and their gradients are checked by finite differences on CUDA.
 *
 * Where the build has no CUDA backend (no D2_WITH_CUDA) or no GPU is visible, the program
 * prints "no GPU: skipping N CUDA comparisons", reports every CUDA test as skipped by name
 * (cmocka skip(): "[  SKIPPED ] test_gemm", in TAP "not ok N # SKIP test_gemm", which
 * tests/run_tests.sh counts as skipped, not failed), and runs one test that checks the
 * CUDA device is refused with a clear message. Every nmse is printed, so the output of a
 * GPU run doubles as the comparison report. */
#include "testutil.h"

#include <math.h>

#include "arena.h"
#include "attention.h"
#include "backend.h"
#include "gradcheck.h"
#include "layers.h"
#include "params.h"
#include "rng.h"

#define BO_TOL 1e-6 /* nmse bound of an op (float32 rounding gives ~1e-13) */
#define BO_MODULE_TOL 1e-5

typedef struct bo_ctx {
    backend_t *cpu, *gpu;
    rng r; /* inputs */
} bo_ctx;

/* one tensor on both backends with its host copy */
typedef struct bo_buf {
    size_t n;
    float *h;      /* host */
    float *c, *g;  /* CPU and CUDA device memory */
} bo_buf;

static backend_t *bo_gpu_create(int device, d2_error *err)
{
#ifdef D2_WITH_CUDA
    backend_t *be = NULL;
    if (backend_cuda_create(&be, device, err) != 0)
        return NULL;
    return be;
#else
    (void)device;
    d2_fail(err, D2_EUNSUPPORTED, "no CUDA in this build");
    return NULL;
#endif
}

static int bo_gpu_count(void)
{
#ifdef D2_WITH_CUDA
    return backend_cuda_device_count();
#else
    return 0;
#endif
}

static void bo_upload(bo_ctx *x, bo_buf *b)
{
    assert_int_equal(x->cpu->ops->to_device(x->cpu, b->c, b->h, b->n * sizeof(float)), 0);
    assert_int_equal(x->gpu->ops->to_device(x->gpu, b->g, b->h, b->n * sizeof(float)), 0);
}

/* n floats, N(0, std^2) (std 0: zeros), the same on both backends */
static bo_buf bo_new(bo_ctx *x, size_t n, float std)
{
    bo_buf b;
    b.n = n;
    b.h = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(b.h);
    for (size_t i = 0; i < n; i++)
        b.h[i] = std == 0.0f ? 0.0f : std * rng_normal(&x->r);
    b.c = backend_alloc_floats(x->cpu, n ? n : 1);
    b.g = backend_alloc_floats(x->gpu, n ? n : 1);
    assert_non_null(b.c);
    assert_non_null(b.g);
    bo_upload(x, &b);
    return b;
}

static void bo_del(bo_ctx *x, bo_buf *b)
{
    x->cpu->ops->free(x->cpu, b->c);
    x->gpu->ops->free(x->gpu, b->g);
    free(b->h);
    memset(b, 0, sizeof *b);
}

static double bo_nmse_host(const float *a, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? num / den : num;
}

/* download both copies of b (after the op ran on both) and compare */
static double bo_nmse(bo_ctx *x, const bo_buf *b)
{
    size_t n = b->n ? b->n : 1;
    float *hc = malloc(n * sizeof(float)), *hg = malloc(n * sizeof(float));
    assert_non_null(hc);
    assert_non_null(hg);
    assert_int_equal(x->cpu->ops->to_host(x->cpu, hc, b->c, b->n * sizeof(float)), 0);
    int rc = x->gpu->ops->to_host(x->gpu, hg, b->g, b->n * sizeof(float));
    if (rc != 0)
        fail_msg("cuda to_host: %s", x->gpu->ops->error_message
                                         ? x->gpu->ops->error_message(x->gpu) : "?");
    double e = bo_nmse_host(hg, hc, b->n);
    free(hc);
    free(hg);
    return e;
}

static void bo_expect(bo_ctx *x, const char *what, const bo_buf *b, double tol)
{
    double e = bo_nmse(x, b);
    printf("  %-44s n=%-8zu nmse %.3g\n", what, b->n, e);
    if (!(e <= tol))
        fail_msg("%s: nmse %.3g > %.3g (cuda vs cpu)", what, e, tol);
}

/* run the same op on both backends: OP(be, args with C(buf) / G(buf) selecting the copy) */
#define RUN(x, opname, ...)                                                                \
    do {                                                                                   \
        backend_t *be = (x)->cpu;                                                          \
        int side = 0;                                                                      \
        be->ops->opname(be, __VA_ARGS__);                                                  \
        be = (x)->gpu;                                                                     \
        side = 1;                                                                          \
        be->ops->opname(be, __VA_ARGS__);                                                  \
        (void)side;                                                                        \
    } while (0)
/* inside RUN: the buffer's copy for the backend being run */
#define D(b) (side ? (b).g : (b).c)

/* ------------------------------------------------------------------------- */
/* fixture                                                                   */

static int bo_setup(void **state)
{
    bo_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    d2_error err = {0};
    if (backend_cpu_create(&x->cpu, 2, &err) != 0) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        free(x);
        return -1;
    }
    x->gpu = bo_gpu_create(0, &err);
    if (!x->gpu) {
        fprintf(stderr, "cuda backend: %s\n", err.msg);
        backend_destroy(x->cpu);
        free(x);
        return -1;
    }
    rng_init(&x->r, 20250801, 0);
    *state = x;
    return 0;
}

static int bo_teardown(void **state)
{
    bo_ctx *x = *state;
    if (x) {
        int rc = x->gpu->ops->sync(x->gpu);
        if (rc != 0)
            fprintf(stderr, "cuda backend error: %s\n", x->gpu->ops->error_message(x->gpu));
        backend_destroy(x->gpu);
        backend_destroy(x->cpu);
        free(x);
        return rc == 0 ? 0 : -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* memory and transfers                                                      */

static void test_memory(void **state)
{
    bo_ctx *x = *state;
    backend_t *g = x->gpu;
    size_t used0 = 0, total = 0, used1 = 0, used2 = 0;
    g->ops->memory(g, &used0, &total);
    assert_true(total > 0);
    const size_t n = 300001;
    float *a = backend_alloc_floats(g, n), *b = backend_alloc_floats(g, n);
    assert_non_null(a);
    assert_non_null(b);
    g->ops->memory(g, &used1, NULL);
    assert_true(used1 >= used0 + 2 * n * sizeof(float));
    float *h = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
    assert_non_null(h);
    assert_non_null(back);
    /* alloc is zero-filled */
    for (size_t i = 0; i < n; i++)
        back[i] = 1.0f;
    assert_int_equal(g->ops->to_host(g, back, a, n * sizeof(float)), 0);
    for (size_t i = 0; i < n; i++)
        assert_true(back[i] == 0.0f);
    /* round trip and device copy are exact, including a sub-range */
    for (size_t i = 0; i < n; i++)
        h[i] = rng_normal(&x->r);
    assert_int_equal(g->ops->to_device(g, a, h, n * sizeof(float)), 0);
    assert_int_equal(g->ops->copy(g, b, a, n * sizeof(float)), 0);
    assert_int_equal(g->ops->copy(g, b + 7, a + 100, 50 * sizeof(float)), 0);
    assert_int_equal(g->ops->to_host(g, back, b, n * sizeof(float)), 0);
    for (size_t i = 0; i < n; i++) {
        float want = (i >= 7 && i < 57) ? h[i - 7 + 100] : h[i];
        assert_memory_equal(&back[i], &want, sizeof(float));
    }
    assert_int_equal(g->ops->to_host(g, back, b, 0), 0);
    assert_int_equal(g->ops->sync(g), 0);
    /* a zero-byte allocation is a distinct valid pointer */
    void *z = g->ops->alloc(g, 0);
    assert_non_null(z);
    g->ops->free(g, z);
    g->ops->free(g, a);
    g->ops->free(g, b);
    g->ops->free(g, NULL);
    g->ops->memory(g, &used2, NULL);
    assert_int_equal(used2, used0);
    assert_string_equal(g->ops->name, "cuda");
    assert_string_equal(g->ops->error_message(g), "");
    free(h);
    free(back);
}

/* ------------------------------------------------------------------------- */
/* BLAS                                                                      */

static void test_gemm(void **state)
{
    bo_ctx *x = *state;
    const int shapes[][3] = {{1, 1, 1}, {37, 53, 29}, {128, 645, 96}, {256, 64, 645}, {5, 3, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int ta = 0; ta < 2; ta++) {
            for (int tb = 0; tb < 2; tb++) {
                int ar = ta ? K : M, ac = ta ? M : K; /* stored A: [ar, ac] */
                int br = tb ? N : K, bc = tb ? K : N;
                int lda = ac + 3, ldb = bc + 1, ldc = N + 2;
                bo_buf A = bo_new(x, (size_t)(ar ? ar : 1) * lda, 1.0f);
                bo_buf B = bo_new(x, (size_t)(br ? br : 1) * ldb, 1.0f);
                bo_buf C = bo_new(x, (size_t)M * ldc, 1.0f);
                float beta = (s % 2) ? 0.0f : 0.3f;
                RUN(x, gemm, ta, tb, M, N, K, 0.7f, D(A), lda, D(B), ldb, beta, D(C), ldc);
                char what[96];
                snprintf(what, sizeof what, "gemm M=%d N=%d K=%d ta=%d tb=%d b=%.1f", M, N, K,
                         ta, tb, beta);
                bo_expect(x, what, &C, BO_TOL);
                bo_del(x, &A);
                bo_del(x, &B);
                bo_del(x, &C);
            }
        }
    }
}

static void test_gemm_batched(void **state)
{
    bo_ctx *x = *state;
    const int M = 17, N = 9, K = 33, batch = 6;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
            int lda = ac + 1, ldb = bc, ldc = N + 3;
            long long sa = (long long)ar * lda + 5, sb = (long long)br * ldb, sc = (long long)M * ldc + 2;
            bo_buf A = bo_new(x, (size_t)(sa * batch), 1.0f);
            bo_buf B = bo_new(x, (size_t)(sb * batch), 1.0f);
            bo_buf C = bo_new(x, (size_t)(sc * batch), 1.0f);
            RUN(x, gemm_batched, ta, tb, M, N, K, 1.3f, D(A), lda, sa, D(B), ldb, sb, 0.5f, D(C),
                ldc, sc, batch);
            char what[96];
            snprintf(what, sizeof what, "gemm_batched %dx[%d,%d,%d] ta=%d tb=%d", batch, M, N, K,
                     ta, tb);
            bo_expect(x, what, &C, BO_TOL);
            bo_del(x, &A);
            bo_del(x, &B);
            bo_del(x, &C);
        }
    }
    /* the attention shapes: scores = q k^T over B*H heads */
    {
        const int BH = 8, Nx = 16, Ny = 50, dh = 32;
        bo_buf q = bo_new(x, (size_t)BH * Nx * dh, 1.0f), k = bo_new(x, (size_t)BH * Ny * dh, 1.0f);
        bo_buf s = bo_new(x, (size_t)BH * Nx * Ny, 0.0f);
        RUN(x, gemm_batched, 0, 1, Nx, Ny, dh, 1.0f, D(q), dh, (long long)Nx * dh, D(k), dh,
            (long long)Ny * dh, 0.0f, D(s), Ny, (long long)Nx * Ny, BH);
        bo_expect(x, "gemm_batched attention scores", &s, BO_TOL);
        bo_del(x, &q);
        bo_del(x, &k);
        bo_del(x, &s);
    }
}

/* ------------------------------------------------------------------------- */
/* elementwise and broadcast                                                 */

static void test_elementwise(void **state)
{
    bo_ctx *x = *state;
    const size_t sizes[] = {1, 17, 100003};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        bo_buf y = bo_new(x, n, 1.0f), a = bo_new(x, n, 1.0f), b = bo_new(x, n, 1.0f);
        RUN(x, fill, D(y), -2.5f, n);
        bo_expect(x, "fill", &y, 0.0);
        bo_upload(x, &y);
        RUN(x, axpby, D(y), 0.8f, D(a), -1.7f, n);
        bo_expect(x, "axpby", &y, BO_TOL);
        RUN(x, axpby, D(y), 0.8f, D(a), 0.0f, n);
        bo_expect(x, "axpby b=0", &y, BO_TOL);
        RUN(x, axpby, D(a), 1.0f, D(a), 0.5f, n); /* x aliasing y */
        bo_expect(x, "axpby in place", &a, BO_TOL);
        bo_del(x, &y);
        bo_del(x, &a);
        bo_del(x, &b);
    }
    const int rc[][2] = {{1, 1}, {37, 129}, {1000, 77}, {3, 4096}};
    for (size_t s = 0; s < 4; s++) {
        int rows = rc[s][0], cols = rc[s][1];
        bo_buf y = bo_new(x, (size_t)rows * cols, 1.0f), bias = bo_new(x, (size_t)cols, 1.0f);
        bo_buf db = bo_new(x, (size_t)cols, 1.0f);
        RUN(x, add_bias, D(y), D(bias), rows, cols);
        bo_expect(x, "add_bias", &y, BO_TOL);
        RUN(x, sum_rows, D(db), D(y), rows, cols);
        char what[64];
        snprintf(what, sizeof what, "sum_rows [%d, %d] (+=)", rows, cols);
        bo_expect(x, what, &db, BO_TOL);
        bo_del(x, &y);
        bo_del(x, &bias);
        bo_del(x, &db);
    }
}

static void test_activations(void **state)
{
    bo_ctx *x = *state;
    static const char *names[] = {"identity", "relu", "silu", "gelu", "tanh", "gelu_erf"};
    const size_t n = 20011;
    for (int k = 0; k <= ACT_GELU_ERF; k++) {
        bo_buf in = bo_new(x, n, 3.0f), y = bo_new(x, n, 1.0f), dy = bo_new(x, n, 1.0f);
        bo_buf dx = bo_new(x, n, 1.0f);
        char what[64];
        RUN(x, act_forward, (act_kind)k, D(y), D(in), n);
        snprintf(what, sizeof what, "act_forward %s", names[k]);
        bo_expect(x, what, &y, BO_TOL);
        RUN(x, act_backward, (act_kind)k, D(dx), D(dy), D(in), n);
        snprintf(what, sizeof what, "act_backward %s (+=)", names[k]);
        bo_expect(x, what, &dx, BO_TOL);
        RUN(x, act_forward, (act_kind)k, D(in), D(in), n);
        snprintf(what, sizeof what, "act_forward %s in place", names[k]);
        bo_expect(x, what, &in, BO_TOL);
        bo_del(x, &in);
        bo_del(x, &y);
        bo_del(x, &dy);
        bo_del(x, &dx);
    }
}

/* ------------------------------------------------------------------------- */
/* layernorm and softmax                                                     */

static void test_layernorm(void **state)
{
    bo_ctx *x = *state;
    const int shapes[][2] = {{1, 1}, {37, 7}, {64, 32}, {33, 100}, {8, 768}, {300, 645}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], C = shapes[s][1];
        for (int affine = 0; affine < 2; affine++) {
            size_t n = (size_t)rows * C;
            bo_buf in = bo_new(x, n, 2.0f), y = bo_new(x, n, 0.0f);
            bo_buf mean = bo_new(x, (size_t)rows, 0.0f), rstd = bo_new(x, (size_t)rows, 0.0f);
            bo_buf g = bo_new(x, (size_t)C, 1.0f), b = bo_new(x, (size_t)C, 1.0f);
            bo_buf dy = bo_new(x, n, 1.0f), dx = bo_new(x, n, 1.0f);
            bo_buf dg = bo_new(x, (size_t)C, 1.0f), db = bo_new(x, (size_t)C, 1.0f);
            /* a row mean far from 0 tests the two-pass variance */
            for (size_t i = 0; i < (size_t)C && rows > 1; i++)
                in.h[(size_t)C + i] += 100.0f;
            bo_upload(x, &in);
            char what[96];
            RUN(x, layernorm_forward, D(y), D(mean), D(rstd), D(in), affine ? D(g) : NULL,
                affine ? D(b) : NULL, rows, C);
            snprintf(what, sizeof what, "layernorm_forward [%d, %d] affine=%d", rows, C, affine);
            bo_expect(x, what, &y, BO_TOL);
            bo_expect(x, "  mean", &mean, BO_TOL);
            bo_expect(x, "  rstd", &rstd, BO_TOL);
            RUN(x, layernorm_backward, D(dx), affine ? D(dg) : NULL, affine ? D(db) : NULL,
                D(dy), D(in), affine ? D(g) : NULL, D(mean), D(rstd), rows, C);
            snprintf(what, sizeof what, "layernorm_backward [%d, %d] affine=%d dx", rows, C,
                     affine);
            bo_expect(x, what, &dx, BO_TOL);
            bo_expect(x, "  dg (+=)", &dg, BO_TOL);
            bo_expect(x, "  db (+=)", &db, BO_TOL);
            bo_buf *all[] = {&in, &y, &mean, &rstd, &g, &b, &dy, &dx, &dg, &db};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                bo_del(x, all[i]);
        }
    }
}

static void test_softmax(void **state)
{
    bo_ctx *x = *state;
    const int shapes[][2] = {{37, 1}, {64, 16}, {10, 100}, {3, 1000}, {512, 50}};
    const float scales[] = {0.125f, 1.0f, -0.5f};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t k = 0; k < 3; k++) {
            int rows = shapes[s][0], cols = shapes[s][1];
            size_t n = (size_t)rows * cols;
            bo_buf in = bo_new(x, n, 4.0f), y = bo_new(x, n, 0.0f);
            bo_buf dy = bo_new(x, n, 1.0f), dx = bo_new(x, n, 1.0f);
            char what[96];
            RUN(x, softmax_forward, D(y), D(in), scales[k], rows, cols);
            snprintf(what, sizeof what, "softmax_forward [%d, %d] scale=%g", rows, cols,
                     (double)scales[k]);
            bo_expect(x, what, &y, BO_TOL);
            RUN(x, softmax_backward, D(dx), D(dy), D(y), scales[k], rows, cols);
            snprintf(what, sizeof what, "softmax_backward [%d, %d] (+=)", rows, cols);
            bo_expect(x, what, &dx, BO_TOL);
            RUN(x, softmax_forward, D(in), D(in), scales[k], rows, cols);
            bo_expect(x, "softmax_forward in place", &in, BO_TOL);
            bo_del(x, &in);
            bo_del(x, &y);
            bo_del(x, &dy);
            bo_del(x, &dx);
        }
    }
}

/* ------------------------------------------------------------------------- */
/* reshapes, modulation                                                      */

static void test_reshapes(void **state)
{
    bo_ctx *x = *state;
    {
        const int A = 3, B = 5, C = 4, D_ = 7;
        size_t n = (size_t)A * B * C * D_;
        bo_buf in = bo_new(x, n, 1.0f), out = bo_new(x, n, 0.0f);
        RUN(x, permute_0213, D(out), D(in), A, B, C, D_);
        bo_expect(x, "permute_0213 [3,5,4,7]", &out, 0.0);
        bo_del(x, &in);
        bo_del(x, &out);
    }
    {
        const int A = 6, N = 5, C = 33;
        bo_buf in = bo_new(x, (size_t)N * C, 1.0f), out = bo_new(x, (size_t)A * N * C, 0.0f);
        RUN(x, repeat_rows, D(out), D(in), A, N, C);
        bo_expect(x, "repeat_rows [5,33] x6", &out, 0.0);
        bo_del(x, &in);
        bo_del(x, &out);
    }
    const int shapes[][3] = {{70, 3, 11}, {1, 2, 2}, {300, 16, 64}};
    for (size_t s = 0; s < 3; s++) {
        int A = shapes[s][0], N = shapes[s][1], C = shapes[s][2];
        bo_buf dout = bo_new(x, (size_t)A * N * C, 1.0f), din = bo_new(x, (size_t)N * C, 1.0f);
        RUN(x, repeat_rows_backward, D(din), D(dout), A, N, C);
        char what[64];
        snprintf(what, sizeof what, "repeat_rows_backward A=%d [%d,%d] (+=)", A, N, C);
        bo_expect(x, what, &din, BO_TOL);
        bo_del(x, &dout);
        bo_del(x, &din);
    }
}

static void test_conv_ops(void **state)
{
    bo_ctx *x = *state;
    const int cases[][8] = {/* B, C, H, W, K, stride, pad, OC */
                            {4, 1, 28, 28, 3, 1, 1, 64}, {8, 64, 14, 14, 3, 1, 1, 64},
                            {3, 5, 9, 7, 3, 2, 1, 6}, {2, 3, 8, 8, 5, 2, 2, 4}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *c = cases[k];
        conv_geom g;
        d2_error err = {0};
        assert_int_equal(conv_geom_make(&g, c[0], c[1], c[2], c[3], c[4], c[5], c[6], &err), 0);
        const int OC = c[7];
        size_t nx = (size_t)g.B * g.C * g.H * g.W, ckk = (size_t)g.C * g.KH * g.KW;
        size_t n = (size_t)g.B * g.OH * g.OW;
        bo_buf in = bo_new(x, nx, 1.0f), col = bo_new(x, ckk * n, 0.0f);
        bo_buf dx = bo_new(x, nx, 1.0f), w = bo_new(x, (size_t)OC * ckk, 0.3f);
        bo_buf dw = bo_new(x, (size_t)OC * ckk, 1.0f), y = bo_new(x, (size_t)OC * n, 0.0f);
        bo_buf tmp = bo_new(x, (size_t)OC * n, 0.0f), dcol = bo_new(x, ckk * n, 0.0f);
        bo_buf dy = bo_new(x, (size_t)OC * n, 1.0f);
        char what[96];
        RUN(x, im2col, D(col), D(in), &g);
        snprintf(what, sizeof what, "im2col [%d,%d,%d,%d] k%d s%d p%d", g.B, g.C, g.H, g.W,
                 g.KH, g.stride, g.pad);
        bo_expect(x, what, &col, 0.0);
        RUN(x, col2im, D(dx), D(col), &g);
        bo_expect(x, "  col2im (+=)", &dx, BO_TOL);
        for (int side = 0; side < 2; side++) {
            backend_t *be = side ? x->gpu : x->cpu;
            conv2d_forward(be, D(y), D(col), D(tmp), D(in), D(w), OC, &g);
            conv2d_backward(be, D(dx), D(dw), D(tmp), D(dcol), D(dy), D(col), D(w), OC, &g);
        }
        snprintf(what, sizeof what, "  conv2d_forward OC=%d", OC);
        bo_expect(x, what, &y, BO_TOL);
        bo_expect(x, "  conv2d_backward dx (+=)", &dx, BO_TOL);
        bo_expect(x, "  conv2d_backward dw (+=)", &dw, BO_TOL);
        bo_buf *all[] = {&in, &col, &dx, &w, &dw, &y, &tmp, &dcol, &dy};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            bo_del(x, all[i]);
    }
}

static void test_pool_ops(void **state)
{
    bo_ctx *x = *state;
    const int shapes[][3] = {{256, 28, 28}, {64 * 8, 7, 7}, {5, 3, 2}, {33, 9, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int P = shapes[s][0], H = shapes[s][1], W = shapes[s][2];
        size_t nx = (size_t)P * H * W, ny = (size_t)P * (H / 2) * (W / 2);
        bo_buf in = bo_new(x, nx, 1.0f), y = bo_new(x, ny, 0.0f), dy = bo_new(x, ny, 1.0f);
        bo_buf dx = bo_new(x, nx, 1.0f), g = bo_new(x, (size_t)P, 0.0f);
        bo_buf dg = bo_new(x, (size_t)P, 1.0f), dx2 = bo_new(x, nx, 1.0f);
        char what[96];
        RUN(x, maxpool2_forward, D(y), D(in), P, H, W);
        snprintf(what, sizeof what, "maxpool2_forward [%d,%d,%d]", P, H, W);
        bo_expect(x, what, &y, 0.0);
        RUN(x, maxpool2_backward, D(dx), D(dy), D(in), P, H, W);
        bo_expect(x, "  maxpool2_backward (+=)", &dx, 0.0);
        RUN(x, avgpool_forward, D(g), D(in), P, H * W);
        snprintf(what, sizeof what, "avgpool_forward [%d,%d]", P, H * W);
        bo_expect(x, what, &g, BO_TOL);
        RUN(x, avgpool_backward, D(dx2), D(dg), P, H * W);
        bo_expect(x, "  avgpool_backward (+=)", &dx2, BO_TOL);
        bo_buf *all[] = {&in, &y, &dy, &dx, &g, &dg, &dx2};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            bo_del(x, all[i]);
    }
}

static void test_batchnorm(void **state)
{
    bo_ctx *x = *state;
    const int shapes[][3] = {{64, 64, 196}, {5, 3, 7}, {1, 8, 1}, {64, 64, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int B = shapes[s][0], C = shapes[s][1], HW = shapes[s][2];
        for (int train = 1; train >= 0; train--) {
            size_t n = (size_t)B * C * HW;
            bo_buf in = bo_new(x, n, 2.0f), y = bo_new(x, n, 0.0f), dy = bo_new(x, n, 1.0f);
            bo_buf dx = bo_new(x, n, 1.0f), g = bo_new(x, (size_t)C, 1.0f);
            bo_buf b = bo_new(x, (size_t)C, 1.0f), dg = bo_new(x, (size_t)C, 1.0f);
            bo_buf db = bo_new(x, (size_t)C, 1.0f), mean = bo_new(x, (size_t)C, 0.0f);
            bo_buf rstd = bo_new(x, (size_t)C, 0.0f), rm = bo_new(x, (size_t)C, 0.5f);
            bo_buf rv = bo_new(x, (size_t)C, 0.0f);
            for (size_t i = 0; i < rv.n; i++)
                rv.h[i] = 1.0f + 0.5f * (float)(i % 3);
            bo_upload(x, &rv);
            char what[96];
            RUN(x, batchnorm_forward, D(y), D(mean), D(rstd), D(rm), D(rv), D(in), D(g), D(b),
                B, C, HW, train, 0.1f);
            snprintf(what, sizeof what, "batchnorm_forward [%d,%d,%d] train=%d", B, C, HW,
                     train);
            bo_expect(x, what, &y, BO_TOL);
            bo_expect(x, "  mean", &mean, BO_TOL);
            bo_expect(x, "  rstd", &rstd, BO_TOL);
            bo_expect(x, "  running mean", &rm, BO_TOL);
            bo_expect(x, "  running var", &rv, BO_TOL);
            RUN(x, batchnorm_backward, D(dx), D(dg), D(db), D(dy), D(in), D(g), D(mean),
                D(rstd), B, C, HW, train);
            bo_expect(x, "  batchnorm_backward dx (+=)", &dx, BO_TOL);
            bo_expect(x, "  dgamma (+=)", &dg, BO_TOL);
            bo_expect(x, "  dbeta (+=)", &db, BO_TOL);
            bo_buf *all[] = {&in, &y, &dy, &dx, &g, &b, &dg, &db, &mean, &rstd, &rm, &rv};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                bo_del(x, all[i]);
        }
    }
}

static void test_modulate(void **state)
{
    bo_ctx *x = *state;
    const int shapes[][3] = {{4, 37, 40}, {1, 1, 1}, {16, 8, 256}, {2, 600, 33}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int B = shapes[s][0], N = shapes[s][1], C = shapes[s][2], ld = 3 * C;
        size_t n = (size_t)B * N * C;
        /* shift, scale, gate are the column slices [0, C), [C, 2C), [2C, 3C) of mod: [B, 3C] */
        bo_buf mod = bo_new(x, (size_t)B * ld, 0.5f), dmod = bo_new(x, (size_t)B * ld, 1.0f);
        bo_buf in = bo_new(x, n, 1.0f), h = bo_new(x, n, 1.0f), y = bo_new(x, n, 0.0f);
        bo_buf dy = bo_new(x, n, 1.0f), dx = bo_new(x, n, 1.0f), dh = bo_new(x, n, 1.0f);
        char what[96];
        RUN(x, modulate_forward, D(y), D(in), D(mod), D(mod) + C, ld, B, N, C);
        snprintf(what, sizeof what, "modulate_forward [%d,%d,%d] ld=%d", B, N, C, ld);
        bo_expect(x, what, &y, BO_TOL);
        RUN(x, modulate_backward, D(dx), D(dmod), D(dmod) + C, D(dy), D(in), D(mod) + C, ld, B,
            N, C);
        bo_expect(x, "modulate_backward dx (+=)", &dx, BO_TOL);
        bo_expect(x, "modulate_backward dshift, dscale (+=)", &dmod, BO_TOL);
        RUN(x, gated_add_forward, D(y), D(in), D(mod) + 2 * C, D(h), ld, B, N, C);
        bo_expect(x, "gated_add_forward", &y, BO_TOL);
        RUN(x, gated_add_backward, D(dx), D(dmod) + 2 * C, D(dh), D(dy), D(mod) + 2 * C, D(h), ld,
            B, N, C);
        bo_expect(x, "gated_add_backward dx (+=)", &dx, BO_TOL);
        bo_expect(x, "gated_add_backward dh (+=)", &dh, BO_TOL);
        bo_expect(x, "gated_add_backward dgate (+=)", &dmod, BO_TOL);
        /* NULL outputs are skipped */
        RUN(x, gated_add_backward, NULL, D(dmod) + 2 * C, NULL, D(dy), D(mod) + 2 * C, D(h), ld,
            B, N, C);
        bo_expect(x, "gated_add_backward dgate only", &dmod, BO_TOL);
        RUN(x, gated_add_forward, D(in), D(in), D(mod) + 2 * C, D(h), ld, B, N, C);
        bo_expect(x, "gated_add_forward in place", &in, BO_TOL);
        bo_buf *all[] = {&mod, &dmod, &in, &h, &y, &dy, &dx, &dh};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            bo_del(x, all[i]);
    }
}

/* ------------------------------------------------------------------------- */
/* reductions and losses                                                     */

static void test_losses(void **state)
{
    bo_ctx *x = *state;
    const size_t sizes[] = {1, 1000, 1000003};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        bo_buf a = bo_new(x, n, 1.0f), t = bo_new(x, n, 1.0f), out = bo_new(x, 1, 0.0f);
        bo_buf d = bo_new(x, n, 1.0f);
        char what[64];
        RUN(x, sumsq, D(out), D(a), n);
        snprintf(what, sizeof what, "sumsq n=%zu", n);
        bo_expect(x, what, &out, BO_TOL);
        RUN(x, mse, D(out), D(d), D(a), D(t), n, 0.5f);
        snprintf(what, sizeof what, "mse n=%zu", n);
        bo_expect(x, what, &out, BO_TOL);
        bo_expect(x, "  dpred", &d, BO_TOL);
        RUN(x, mse, D(out), NULL, D(t), D(a), n, 1.0f);
        bo_expect(x, "  mse forward only", &out, BO_TOL);
        bo_del(x, &a);
        bo_del(x, &t);
        bo_del(x, &out);
        bo_del(x, &d);
    }
    const int ce[][2] = {{300, 10}, {5, 1000}, {4097, 5}, {1, 1}};
    for (size_t s = 0; s < 4; s++) {
        int rows = ce[s][0], C = ce[s][1];
        bo_buf logits = bo_new(x, (size_t)rows * C, 3.0f), dl = bo_new(x, (size_t)rows * C, 1.0f);
        bo_buf out = bo_new(x, 1, 0.0f);
        int32_t *lab = malloc((size_t)rows * sizeof(int32_t));
        assert_non_null(lab);
        for (int r = 0; r < rows; r++)
            lab[r] = (int32_t)rng_below(&x->r, (uint32_t)C);
        if (rows > 2)
            lab[1] = -1; /* an invalid label: no loss, zero gradient row, on both backends */
        int32_t *lc = x->cpu->ops->alloc(x->cpu, (size_t)rows * sizeof(int32_t));
        int32_t *lg = x->gpu->ops->alloc(x->gpu, (size_t)rows * sizeof(int32_t));
        assert_non_null(lc);
        assert_non_null(lg);
        assert_int_equal(x->cpu->ops->to_device(x->cpu, lc, lab, (size_t)rows * 4), 0);
        assert_int_equal(x->gpu->ops->to_device(x->gpu, lg, lab, (size_t)rows * 4), 0);
        char what[64];
        RUN(x, cross_entropy, D(out), D(dl), D(logits), side ? lg : lc, rows, C, 0.5f);
        snprintf(what, sizeof what, "cross_entropy [%d, %d]", rows, C);
        bo_expect(x, what, &out, BO_TOL);
        bo_expect(x, "  dlogits", &dl, BO_TOL);
        RUN(x, cross_entropy, D(out), NULL, D(logits), side ? lg : lc, rows, C, 1.0f);
        bo_expect(x, "  forward only", &out, BO_TOL);
        x->cpu->ops->free(x->cpu, lc);
        x->gpu->ops->free(x->gpu, lg);
        free(lab);
        bo_del(x, &logits);
        bo_del(x, &dl);
        bo_del(x, &out);
    }
    const size_t kn[] = {1, 600, 262147};
    for (size_t s = 0; s < 3; s++) {
        size_t n = kn[s];
        int rows = n > 12 ? 12 : 1;
        bo_buf mu = bo_new(x, n, 1.0f), lv = bo_new(x, n, 1.0f), out = bo_new(x, 1, 0.0f);
        bo_buf dmu = bo_new(x, n, 1.0f), dlv = bo_new(x, n, 1.0f);
        char what[64];
        RUN(x, kl_gauss, D(out), D(dmu), D(dlv), D(mu), D(lv), n, rows, 0.25f);
        snprintf(what, sizeof what, "kl_gauss n=%zu rows=%d", n, rows);
        bo_expect(x, what, &out, BO_TOL);
        bo_expect(x, "  dmu (+=)", &dmu, BO_TOL);
        bo_expect(x, "  dlogvar (+=)", &dlv, BO_TOL);
        bo_buf *all[] = {&mu, &lv, &out, &dmu, &dlv};
        for (size_t i = 0; i < 5; i++)
            bo_del(x, all[i]);
    }
}

/* the same inputs give the same bits, call after call */
static void test_determinism(void **state)
{
    bo_ctx *x = *state;
    backend_t *g = x->gpu;
    const int rows = 4096, C = 96;
    const size_t n = (size_t)rows * C;
    bo_buf a = bo_new(x, n, 1.0f), dy = bo_new(x, n, 1.0f), out = bo_new(x, 4, 0.0f);
    bo_buf mean = bo_new(x, (size_t)rows, 0.0f), rstd = bo_new(x, (size_t)rows, 0.0f);
    bo_buf y = bo_new(x, n, 0.0f), dg = bo_new(x, (size_t)C, 0.0f), gam = bo_new(x, (size_t)C, 1.0f);
    float first[3 + 96], again[3 + 96];
    for (int rep = 0; rep < 3; rep++) {
        float *res = rep == 0 ? first : again;
        g->ops->sumsq(g, out.g, a.g, n);
        g->ops->mse(g, out.g + 1, NULL, a.g, dy.g, n, 1.0f);
        g->ops->kl_gauss(g, out.g + 2, NULL, NULL, a.g, dy.g, n, rows, 1.0f);
        g->ops->layernorm_forward(g, y.g, mean.g, rstd.g, a.g, gam.g, NULL, rows, C);
        g->ops->fill(g, dg.g, 0.0f, (size_t)C);
        g->ops->layernorm_backward(g, y.g, dg.g, NULL, dy.g, a.g, gam.g, mean.g, rstd.g, rows, C);
        assert_int_equal(g->ops->to_host(g, res, out.g, 3 * sizeof(float)), 0);
        assert_int_equal(g->ops->to_host(g, res + 3, dg.g, (size_t)C * sizeof(float)), 0);
        if (rep > 0)
            assert_memory_equal(first, again, sizeof first);
    }
    printf("  reductions repeat bit for bit (sumsq %.9g, mse %.9g, kl %.9g)\n",
           (double)first[0], (double)first[1], (double)first[2]);
    bo_buf *all[] = {&a, &dy, &out, &mean, &rstd, &y, &dg, &gam};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        bo_del(x, all[i]);
}

/* ------------------------------------------------------------------------- */
/* optimiser                                                                 */

static void test_optim(void **state)
{
    bo_ctx *x = *state;
    const size_t n = 10001;
    bo_buf w = bo_new(x, n, 1.0f), gr = bo_new(x, n, 1.0f), m = bo_new(x, n, 0.0f);
    bo_buf v = bo_new(x, n, 0.0f), ema = bo_new(x, n, 1.0f);
    for (int t = 1; t <= 7; t++) {
        RUN(x, adamw, D(w), D(gr), D(m), D(v), n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, t, 0.5f);
        RUN(x, ema, D(ema), D(w), n, 0.99f);
    }
    bo_expect(x, "adamw x7: w", &w, BO_TOL);
    bo_expect(x, "  m", &m, BO_TOL);
    bo_expect(x, "  v", &v, BO_TOL);
    bo_expect(x, "ema x7", &ema, BO_TOL);
    RUN(x, ema, D(ema), D(w), n, 0.0f);
    bo_expect(x, "ema decay=0", &ema, 0.0);
    bo_buf *all[] = {&w, &gr, &m, &v, &ema};
    for (size_t i = 0; i < 5; i++)
        bo_del(x, all[i]);
}

/* ------------------------------------------------------------------------- */
/* random numbers                                                            */

static void test_rand(void **state)
{
    bo_ctx *x = *state;
    backend_t *g = x->gpu;
    const uint64_t seeds[] = {0, 12345, 0xdeadbeefcafef00dULL};
    const uint64_t offsets[] = {0, 3, (1ULL << 34) + 1};
    const size_t sizes[] = {1, 7, 100001};
    size_t maxn = 100001;
    float *want = malloc(maxn * sizeof(float)), *got = malloc(maxn * sizeof(float));
    float *dev = backend_alloc_floats(g, maxn + 2);
    assert_non_null(want);
    assert_non_null(got);
    assert_non_null(dev);
    size_t compared = 0;
    double max_normal = 0.0;
    for (size_t si = 0; si < 3; si++) {
        for (size_t oi = 0; oi < 3; oi++) {
            for (size_t ni = 0; ni < 3; ni++) {
                uint64_t seed = seeds[si], off = offsets[oi];
                size_t n = sizes[ni];
                /* guard values around the range: the op writes exactly n floats */
                float guard = -7.0f;
                g->ops->fill(g, dev, guard, maxn + 2);
                g->ops->rand_normal(g, dev + 1, n, seed, off, 0.5f, 2.0f);
                rng_fill_normal(want, n, seed, off, 0.5f, 2.0f);
                assert_int_equal(g->ops->to_host(g, got, dev + 1, n * sizeof(float)), 0);
                float edge[2];
                assert_int_equal(g->ops->to_host(g, &edge[0], dev, sizeof(float)), 0);
                assert_int_equal(g->ops->to_host(g, &edge[1], dev + 1 + n, sizeof(float)), 0);
                assert_true(edge[0] == guard && edge[1] == guard);
                for (size_t i = 0; i < n; i++) {
                    double d = fabs((double)got[i] - (double)want[i]);
                    double tol = 1e-5 * fmax(1.0, fabs((double)want[i]));
                    if (d > max_normal)
                        max_normal = d;
                    if (!(d <= tol))
                        fail_msg("rand_normal seed %llu offset %llu: [%zu] = %.9g, cpu %.9g",
                                 (unsigned long long)seed, (unsigned long long)off, i,
                                 (double)got[i], (double)want[i]);
                }
                compared += n;
            }
        }
    }
    printf("  rand_normal: %zu positions match the CPU stream "
           "(max normal diff %.3g)\n", compared, max_normal);
    g->ops->free(g, dev);
    free(want);
    free(got);
}

/* ------------------------------------------------------------------------- */
/* errors: a failing void op is recorded and reported by sync                */

static void test_errors(void **state)
{
    bo_ctx *x = *state;
    (void)x;
    d2_error err = {0};
    backend_t *g = bo_gpu_create(0, &err);
    assert_non_null(g);
    float *a = backend_alloc_floats(g, 64);
    assert_non_null(a);
    /* lda smaller than the row length: cuBLAS rejects the call */
    g->ops->gemm(g, 0, 0, 4, 4, 8, 1.0f, a, 2, a, 4, 0.0f, a, 4);
    assert_int_equal(g->ops->sync(g), D2_EDEVICE);
    const char *msg = g->ops->error_message(g);
    printf("  recorded: %s\n", msg);
    assert_non_null(strstr(msg, "cublasSgemm"));
    assert_null(strstr(msg, "sticky"));
    /* the same message through the helper callers use to explain their own error */
    d2_error why = {0};
    d2_fail(&why, D2_ERANGE, "loss is NaN");
    assert_int_equal(backend_explain(g, D2_ERANGE, &why), D2_EDEVICE);
    assert_non_null(strstr(why.msg, "loss is NaN (device: cuda:0: cublasSgemm"));
    /* not sticky: reported once, then cleared, and the backend works again */
    float h[4] = {1, 2, 3, 4}, back[4] = {0};
    assert_int_equal(g->ops->to_device(g, a, h, sizeof h), 0);
    assert_int_equal(g->ops->to_host(g, back, a, sizeof back), 0);
    assert_memory_equal(back, h, sizeof h);
    assert_string_equal(g->ops->error_message(g), "");
    /* out of device memory is a NULL from alloc, not a recorded error */
    assert_null(g->ops->alloc(g, (size_t)1 << 50));
    assert_int_equal(g->ops->sync(g), 0);
    g->ops->free(g, a);
    backend_destroy(g);

    backend_t *none = NULL;
    memset(&err, 0, sizeof err);
    assert_int_equal(backend_create(&none, "cuda:999", 1, &err), D2_EINVAL);
    assert_null(none);
    printf("  cuda:999 -> %s\n", err.msg);
    assert_non_null(strstr(err.msg, "no such device"));
}

/* TF32 only behind D2NWG_TF32=1, and its error is measured, not assumed */
static void test_tf32(void **state)
{
    bo_ctx *x = *state;
    const int M = 256, N = 256, K = 1024;
    bo_buf A = bo_new(x, (size_t)M * K, 1.0f), B = bo_new(x, (size_t)K * N, 1.0f);
    bo_buf C = bo_new(x, (size_t)M * N, 0.0f);
    RUN(x, gemm, 0, 0, M, N, K, 1.0f, D(A), K, D(B), N, 0.0f, D(C), N);
    double fp32 = bo_nmse(x, &C);
    const char *old = getenv("D2NWG_TF32");
    char *saved = old ? strdup(old) : NULL;
    setenv("D2NWG_TF32", "1", 1);
    d2_error err = {0};
    backend_t *t = bo_gpu_create(0, &err);
    if (saved) {
        setenv("D2NWG_TF32", saved, 1);
        free(saved);
    } else {
        unsetenv("D2NWG_TF32");
    }
    assert_non_null(t);
    float *a = backend_alloc_floats(t, (size_t)M * K), *b = backend_alloc_floats(t, (size_t)K * N);
    float *c = backend_alloc_floats(t, (size_t)M * N);
    assert_true(a && b && c);
    assert_int_equal(t->ops->to_device(t, a, A.h, (size_t)M * K * sizeof(float)), 0);
    assert_int_equal(t->ops->to_device(t, b, B.h, (size_t)K * N * sizeof(float)), 0);
    t->ops->gemm(t, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    float *hc = malloc((size_t)M * N * sizeof(float)), *ref = malloc((size_t)M * N * sizeof(float));
    assert_true(hc && ref);
    assert_int_equal(t->ops->to_host(t, hc, c, (size_t)M * N * sizeof(float)), 0);
    assert_int_equal(x->cpu->ops->to_host(x->cpu, ref, C.c, (size_t)M * N * sizeof(float)), 0);
    double tf32 = bo_nmse_host(hc, ref, (size_t)M * N);
    printf("  gemm [%d,%d,%d] nmse vs cpu: FP32 (default) %.3g, TF32 (D2NWG_TF32=1) %.3g\n", M,
           N, K, fp32, tf32);
    assert_true(fp32 <= BO_TOL);
    assert_true(tf32 <= 1e-4); /* 10-bit mantissa products: ~1e-7 expected */
    t->ops->free(t, a);
    t->ops->free(t, b);
    t->ops->free(t, c);
    backend_destroy(t);
    free(hc);
    free(ref);
    bo_del(x, &A);
    bo_del(x, &B);
    bo_del(x, &C);
}

/* ------------------------------------------------------------------------- */
/* modules: CUDA vs CPU, then finite-difference gradient checks on CUDA      */

typedef enum { MOD_LINEAR, MOD_LAYERNORM, MOD_MAB, MOD_ISAB, MOD_PMA } mod_kind;

typedef struct mod_net {
    mod_kind kind;
    backend_t *be;
    paramset ps;
    arena ar;
    size_t mark;
    linear lin;
    layernorm ln;
    mab m;
    isab is;
    pma p;
    mab_cache mc;
    isab_cache ic;
    pma_cache pc;
    int B, N, Ny, din, dy;
    float *X, *Y, *dX, *dY; /* inputs and their gradients */
    float *mean, *rstd;     /* layernorm */
    size_t nx, ny, nout;
} mod_net;

static const char *mod_name(mod_kind k)
{
    static const char *n[] = {"linear", "layernorm", "MAB", "ISAB", "PMA"};
    return n[k];
}

static void mod_build(mod_net *m, mod_kind kind, backend_t *be, const float *params_h,
                      const float *X_h, const float *Y_h)
{
    d2_error err = {0};
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->be = be;
    paramset_init(&m->ps);
    m->B = 2;
    m->N = 5;
    m->Ny = 4;
    m->din = 6;
    m->dy = 3;
    const int d = 8, heads = 2;
    int rc = 0;
    switch (kind) {
    case MOD_LINEAR:
        rc = linear_init(&m->lin, &m->ps, "lin", m->din, 7, 1, 1.0f, &err);
        m->nout = (size_t)m->B * m->N * 7;
        break;
    case MOD_LAYERNORM:
        rc = layernorm_init(&m->ln, &m->ps, "ln", m->din, 1, &err);
        m->nout = (size_t)m->B * m->N * m->din;
        break;
    case MOD_MAB:
        rc = mab_init(&m->m, &m->ps, "mab", m->din, m->dy, d, heads, 1, &err);
        m->nout = (size_t)m->B * m->N * d;
        break;
    case MOD_ISAB:
        rc = isab_init(&m->is, &m->ps, "isab", m->din, d, heads, 3, 1, &err);
        m->nout = (size_t)m->B * m->N * d;
        break;
    case MOD_PMA:
        rc = pma_init(&m->p, &m->ps, "pma", m->din, d, heads, 2, 1, &err);
        m->nout = (size_t)m->B * 2 * d;
        break;
    }
    if (rc)
        fail_msg("%s init: %s", mod_name(kind), err.msg);
    if (paramset_alloc(&m->ps, be, 7, &err))
        fail_msg("%s paramset_alloc on %s: %s", mod_name(kind), be->ops->name, err.msg);
    if (params_h)
        assert_int_equal(be->ops->to_device(be, m->ps.w, params_h, m->ps.total * sizeof(float)), 0);
    if (arena_init(&m->ar, be, 4u << 20, &err))
        fail_msg("arena: %s", err.msg);
    m->nx = (size_t)m->B * m->N * m->din;
    m->ny = (size_t)m->B * m->Ny * m->dy;
    m->X = backend_alloc_floats(be, m->nx);
    m->dX = backend_alloc_floats(be, m->nx);
    m->Y = backend_alloc_floats(be, m->ny);
    m->dY = backend_alloc_floats(be, m->ny);
    m->mean = backend_alloc_floats(be, (size_t)m->B * m->N);
    m->rstd = backend_alloc_floats(be, (size_t)m->B * m->N);
    assert_true(m->X && m->dX && m->Y && m->dY && m->mean && m->rstd);
    assert_int_equal(be->ops->to_device(be, m->X, X_h, m->nx * sizeof(float)), 0);
    assert_int_equal(be->ops->to_device(be, m->Y, Y_h, m->ny * sizeof(float)), 0);
    m->mark = arena_mark(&m->ar);
}

static void mod_free(mod_net *m)
{
    backend_t *be = m->be;
    float *bufs[] = {m->X, m->dX, m->Y, m->dY, m->mean, m->rstd};
    for (size_t i = 0; i < 6; i++)
        be->ops->free(be, bufs[i]);
    arena_free(&m->ar);
    paramset_free(&m->ps);
}

/* gradcheck callbacks: out = module(X[, Y]) */
static int mod_fwd(backend_t *be, void *user, float *out)
{
    mod_net *m = user;
    d2_error err = {0};
    int rows = m->B * m->N, rc = 0;
    const float *res = NULL;
    arena_reset(&m->ar, m->mark);
    switch (m->kind) {
    case MOD_LINEAR:
        linear_forward(be, &m->lin, &m->ps, out, m->X, rows);
        return 0;
    case MOD_LAYERNORM:
        layernorm_fwd(be, &m->ln, &m->ps, out, m->mean, m->rstd, m->X, rows);
        return 0;
    case MOD_MAB:
        rc = mab_forward(be, &m->m, &m->ps, &m->ar, &m->mc, m->X, m->N, m->Y, m->Ny, m->B, &err);
        res = m->mc.out;
        break;
    case MOD_ISAB:
        rc = isab_forward(be, &m->is, &m->ps, &m->ar, &m->ic, m->X, m->N, m->B, &err);
        res = m->ic.out;
        break;
    case MOD_PMA:
        rc = pma_forward(be, &m->p, &m->ps, &m->ar, &m->pc, m->X, m->N, m->B, &err);
        res = m->pc.out;
        break;
    }
    if (rc) {
        fprintf(stderr, "%s forward: %s\n", mod_name(m->kind), err.msg);
        return rc;
    }
    return be->ops->copy(be, out, res, m->nout * sizeof(float));
}

static int mod_bwd(backend_t *be, void *user, const float *dout)
{
    mod_net *m = user;
    d2_error err = {0};
    int rows = m->B * m->N, rc = 0;
    switch (m->kind) {
    case MOD_LINEAR:
        linear_backward(be, &m->lin, &m->ps, m->dX, dout, m->X, rows);
        return 0;
    case MOD_LAYERNORM:
        layernorm_bwd(be, &m->ln, &m->ps, m->dX, dout, m->X, m->mean, m->rstd, rows);
        return 0;
    case MOD_MAB:
        rc = mab_backward(be, &m->m, &m->ps, &m->ar, &m->mc, m->dX, m->dY, dout, m->X, m->Y, &err);
        break;
    case MOD_ISAB:
        rc = isab_backward(be, &m->is, &m->ps, &m->ar, &m->ic, m->dX, dout, m->X, &err);
        break;
    case MOD_PMA:
        rc = pma_backward(be, &m->p, &m->ps, &m->ar, &m->pc, m->dX, dout, m->X, &err);
        break;
    }
    if (rc)
        fprintf(stderr, "%s backward: %s\n", mod_name(m->kind), err.msg);
    return rc;
}

static double mod_nmse_dev(mod_net *g, const float *gd, mod_net *c, const float *cd, size_t n)
{
    float *hg = malloc(n * sizeof(float)), *hc = malloc(n * sizeof(float));
    assert_true(hg && hc);
    assert_int_equal(g->be->ops->to_host(g->be, hg, gd, n * sizeof(float)), 0);
    assert_int_equal(c->be->ops->to_host(c->be, hc, cd, n * sizeof(float)), 0);
    double e = bo_nmse_host(hg, hc, n);
    free(hg);
    free(hc);
    return e;
}

static void mod_check(bo_ctx *x, mod_kind kind)
{
    /* the same random parameters and inputs on both backends */
    mod_net probe;
    float X_h[64], Y_h[64];
    for (int i = 0; i < 64; i++) {
        X_h[i] = rng_normal(&x->r);
        Y_h[i] = rng_normal(&x->r);
    }
    mod_build(&probe, kind, x->cpu, NULL, X_h, Y_h);
    size_t total = probe.ps.total;
    mod_free(&probe);
    float *P = malloc(total * sizeof(float));
    assert_non_null(P);
    for (size_t i = 0; i < total; i++)
        P[i] = 0.5f * rng_normal(&x->r);
    mod_net c, g;
    mod_build(&c, kind, x->cpu, P, X_h, Y_h);
    mod_build(&g, kind, x->gpu, P, X_h, Y_h);
    assert_true(c.nx <= 64 && c.ny <= 64);

    /* forward + backward on both with the same upstream gradient */
    float *outc = backend_alloc_floats(x->cpu, c.nout), *outg = backend_alloc_floats(x->gpu, g.nout);
    float *dc = backend_alloc_floats(x->cpu, c.nout), *dg = backend_alloc_floats(x->gpu, g.nout);
    assert_true(outc && outg && dc && dg);
    float *dh = malloc(c.nout * sizeof(float));
    assert_non_null(dh);
    for (size_t i = 0; i < c.nout; i++)
        dh[i] = rng_normal(&x->r);
    assert_int_equal(x->cpu->ops->to_device(x->cpu, dc, dh, c.nout * sizeof(float)), 0);
    assert_int_equal(x->gpu->ops->to_device(x->gpu, dg, dh, g.nout * sizeof(float)), 0);
    assert_int_equal(mod_fwd(x->cpu, &c, outc), 0);
    assert_int_equal(mod_bwd(x->cpu, &c, dc), 0);
    assert_int_equal(mod_fwd(x->gpu, &g, outg), 0);
    assert_int_equal(mod_bwd(x->gpu, &g, dg), 0);
    double e_out = mod_nmse_dev(&g, outg, &c, outc, c.nout);
    double e_dx = mod_nmse_dev(&g, g.dX, &c, c.dX, c.nx);
    double e_dp = mod_nmse_dev(&g, g.ps.g, &c, c.ps.g, c.ps.total);
    printf("  %-9s cuda vs cpu: out nmse %.3g, dX nmse %.3g, dparams nmse %.3g\n",
           mod_name(kind), e_out, e_dx, e_dp);
    assert_true(e_out <= BO_MODULE_TOL);
    assert_true(e_dx <= BO_MODULE_TOL);
    assert_true(e_dp <= BO_MODULE_TOL);
    if (kind == MOD_MAB) {
        double e_dy = mod_nmse_dev(&g, g.dY, &c, c.dY, c.ny);
        printf("  %-9s cuda vs cpu: dY nmse %.3g\n", mod_name(kind), e_dy);
        assert_true(e_dy <= BO_MODULE_TOL);
    }

    /* finite differences on the CUDA backend */
    gc_target t[3];
    int nt = 0;
    t[nt++] = (gc_target){"X", g.X, g.dX, g.nx};
    if (kind == MOD_MAB)
        t[nt++] = (gc_target){"Y", g.Y, g.dY, g.ny};
    t[nt++] = (gc_target){"params", g.ps.w, g.ps.g, g.ps.total};
    gc_opts o = gc_default_opts();
    gc_report rep;
    int bad = gc_check(x->gpu, mod_fwd, mod_bwd, &g, g.nout, t, nt, &o, &rep);
    printf("  %-9s gradcheck on cuda: %d checked, %d failed, %d kinks, max abs err %.3g "
           "(%s)\n", mod_name(kind), rep.checked, rep.failed, rep.kinks, rep.max_abs_err,
           rep.worst);
    assert_int_equal(bad, 0);
    assert_true(rep.checked >= 48);
    /* a point may pass on the looser retry (a kink) only rarely, as in test_layers.c */
    assert_true(rep.kinks * 10 <= rep.checked);

    x->cpu->ops->free(x->cpu, outc);
    x->cpu->ops->free(x->cpu, dc);
    x->gpu->ops->free(x->gpu, outg);
    x->gpu->ops->free(x->gpu, dg);
    mod_free(&c);
    mod_free(&g);
    free(P);
    free(dh);
}

static void test_linear(void **state)
{
    mod_check(*state, MOD_LINEAR);
}
static void test_layernorm_module(void **state)
{
    mod_check(*state, MOD_LAYERNORM);
}
static void test_mab(void **state)
{
    mod_check(*state, MOD_MAB);
}
static void test_isab(void **state)
{
    mod_check(*state, MOD_ISAB);
}
static void test_pma(void **state)
{
    mod_check(*state, MOD_PMA);
}

/* ------------------------------------------------------------------------- */
/* without a GPU                                                             */

/* stands in for every CUDA test, under its name */
static void test_skipped_no_gpu(void **state)
{
    (void)state;
    skip();
}

/* the CUDA device is refused with a message that says why */
static void test_no_gpu(void **state)
{
    (void)state;
    backend_t *be = NULL;
    d2_error err = {0};
    int rc = backend_create(&be, "cuda:0", 1, &err);
    assert_null(be);
#ifdef D2_WITH_CUDA
    assert_int_equal(backend_cuda_device_count(), 0);
    assert_true(rc == D2_EDEVICE || rc == D2_EINVAL);
    assert_non_null(strstr(err.msg, "cuda:0"));
#else
    assert_int_equal(rc, D2_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "CUDA"));
#endif
    printf("  cuda:0 refused: %s\n", err.msg);
    /* the CPU backend, the reference of every comparison, is there */
    assert_int_equal(backend_create(&be, "cpu", 1, &err), 0);
    assert_string_equal(be->ops->name, "cpu");
    /* the CPU backend records no device errors: a caller's error stays as it was */
    d2_error why = {0};
    d2_fail(&why, D2_ERANGE, "loss is NaN");
    assert_string_equal(backend_error_message(be), "");
    assert_int_equal(backend_explain(be, D2_ERANGE, &why), D2_ERANGE);
    assert_string_equal(why.msg, "loss is NaN");
    backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemm_batched),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_reshapes),
        cmocka_unit_test(test_modulate),
        cmocka_unit_test(test_conv_ops),
        cmocka_unit_test(test_pool_ops),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_optim),
        cmocka_unit_test(test_rand),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_tf32),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_layernorm_module),
        cmocka_unit_test(test_mab),
        cmocka_unit_test(test_isab),
        cmocka_unit_test(test_pma),
    };
    const size_t n_gpu = sizeof gpu_tests / sizeof gpu_tests[0];
    if (bo_gpu_count() <= 0) {
#ifdef D2_WITH_CUDA
        const char *why = "no CUDA device visible";
#else
        const char *why = "this build has no CUDA backend (make CUDA=1)";
#endif
        printf("no GPU: skipping %zu CUDA comparisons (%s)\n", n_gpu, why);
        fflush(stdout);
        struct CMUnitTest cpu_tests[sizeof gpu_tests / sizeof gpu_tests[0] + 1];
        for (size_t i = 0; i < n_gpu; i++) {
            cpu_tests[i] = gpu_tests[i];
            cpu_tests[i].test_func = test_skipped_no_gpu;
        }
        cpu_tests[n_gpu] = (struct CMUnitTest)cmocka_unit_test(test_no_gpu);
        return cmocka_run_group_tests(cpu_tests, NULL, NULL);
    }
    return cmocka_run_group_tests(gpu_tests, bo_setup, bo_teardown);
}
