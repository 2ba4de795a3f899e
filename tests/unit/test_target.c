/* test_target.c - target specs (good and bad), tensor names, forward against a
 * naive reference, backward against finite differences, training (separable
 * data, XOR, real Fashion-MNIST features), determinism, fine-tuning, and the
 * PCA feature map (hand-checked 2-D case, orthonormality, eigen residuals). */
#include "testutil.h"

#include <math.h>

#include "data.h"
#include "rng.h"
#include "safetensors.h"
#include "target.h"
#include "target_internal.h"

/* ---- specs ---- */

static void test_spec_good(void **state)
{
    (void)state;
    target_spec s;
    d2_error e = {0};
    assert_int_equal(target_spec_parse(&s, "pca:128 | linear 128->5", &e), 0);
    assert_true(s.has_pca);
    assert_int_equal(s.pca_dim, 128);
    assert_int_equal(s.nlayers, 1);
    assert_int_equal(s.layers[0].kind, TL_LINEAR);
    assert_int_equal(s.layers[0].module, 1);
    assert_int_equal(s.feat_dim, 128);
    assert_int_equal(s.out_dim, 5);
    assert_int_equal(s.numel, 645);
    assert_int_equal(s.layers[0].w_off, 0);
    assert_int_equal(s.layers[0].b_off, 640);
    assert_string_equal(s.text, "pca:128 | linear 128->5");

    assert_int_equal(target_spec_parse(&s, "mlp 784-64-10 relu", &e), 0);
    assert_false(s.has_pca);
    assert_int_equal(s.nlayers, 3);
    assert_int_equal(s.layers[0].kind, TL_LINEAR);
    assert_int_equal(s.layers[0].module, 0);
    assert_int_equal(s.layers[1].kind, TL_RELU);
    assert_int_equal(s.layers[1].module, 1);
    assert_int_equal(s.layers[2].kind, TL_LINEAR);
    assert_int_equal(s.layers[2].module, 2);
    assert_int_equal(s.layers[2].w_off, 784 * 64 + 64);
    assert_int_equal(s.layers[2].b_off, 784 * 64 + 64 + 64 * 10);
    assert_int_equal(s.numel, 784 * 64 + 64 + 64 * 10 + 10);
    assert_int_equal(s.feat_dim, 784);
    assert_int_equal(s.out_dim, 10);

    /* spacing is free; the canonical text is normalised */
    assert_int_equal(target_spec_parse(&s, "  linear   64 -> 10 ", &e), 0);
    assert_string_equal(s.text, "linear 64->10");
    assert_int_equal(s.numel, 650);

    assert_int_equal(target_spec_parse(&s, "pca:64|mlp 64-32-5 tanh", &e), 0);
    assert_string_equal(s.text, "pca:64 | mlp 64-32-5 tanh");
    assert_int_equal(s.layers[0].module, 1);
    assert_int_equal(s.layers[1].kind, TL_TANH);
    assert_int_equal(s.layers[1].module, 2);
    assert_int_equal(s.layers[2].module, 3);

    assert_int_equal(target_spec_parse(&s, "linear 8->6 | gelu | linear 6->4 | silu | linear 4->3",
                                       &e), 0);
    assert_int_equal(s.nlayers, 5);
    assert_int_equal(s.layers[1].kind, TL_GELU);
    assert_int_equal(s.layers[3].kind, TL_SILU);
    assert_int_equal(s.layers[4].module, 4);
    assert_int_equal(s.numel, 8 * 6 + 6 + 6 * 4 + 4 + 4 * 3 + 3);
}

static void expect_bad(const char *text, const char *fragment)
{
    target_spec s;
    d2_error e = {0};
    int rc = target_spec_parse(&s, text, &e);
    if (rc == 0)
        fail_msg("spec '%s' was accepted", text);
    if (!strstr(e.msg, fragment))
        fail_msg("spec '%s': message '%s' lacks '%s'", text, e.msg, fragment);
}

static void test_spec_bad(void **state)
{
    (void)state;
    expect_bad("", "layer 1 is empty");
    expect_bad("linear 128->", "expected 'linear IN->OUT'");
    expect_bad("linear 0->5", "expected 'linear IN->OUT'");
    expect_bad("linear 12x->5", "expected 'linear IN->OUT'");
    expect_bad("pca:128 | linear 64->5", "input 64 does not match the previous output 128");
    expect_bad("linear 5->5 | pca:3", "must be the first layer");
    expect_bad("pca:0 | linear 1->2", "expected 'pca:K'");
    expect_bad("conv 3x3", "unknown layer 'conv'");
    expect_bad("mlp 784-64-10 swish", "unknown activation 'swish'");
    expect_bad("mlp 784", "at least two sizes");
    expect_bad("relu | linear 4->2", "needs a linear layer before it");
    expect_bad("linear 4->8 | relu", "the last layer must be linear");
    expect_bad("linear 4->1", "at least 2 outputs");
    expect_bad("linear 4->3 || linear 3->2", "layer 2 is empty");
    expect_bad("relu x", "takes no arguments");
    expect_bad("pca:8", "no linear layer");
    expect_bad("mlp 2-2-2-2-2-2-2-2-2-2", "more than 16 layers");
    char big[400];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_bad(big, "longer than");
}

/* ---- helpers ---- */

static void fill_theta(const target_spec *s, uint64_t seed, float *theta)
{
    target_init_random(s, seed, theta);
}

/* naive double forward: x [n, feat_dim] -> z [n, out_dim] */
static void naive_forward(const target_spec *s, const float *theta, const float *x, int n,
                          double *z)
{
    for (int i = 0; i < n; i++) {
        double a[64], b[64];
        int w = s->feat_dim;
        for (int j = 0; j < w; j++)
            a[j] = x[(size_t)i * w + j];
        for (int l = 0; l < s->nlayers; l++) {
            const target_layer *L = &s->layers[l];
            if (L->kind == TL_LINEAR) {
                for (int o = 0; o < L->out; o++) {
                    double acc = theta[L->b_off + o];
                    for (int k = 0; k < L->in; k++)
                        acc += (double)theta[L->w_off + (size_t)o * L->in + k] * a[k];
                    b[o] = acc;
                }
                w = L->out;
            } else {
                for (int k = 0; k < w; k++) {
                    double v = a[k];
                    switch (L->kind) {
                    case TL_RELU: b[k] = v > 0 ? v : 0; break;
                    case TL_TANH: b[k] = tanh(v); break;
                    case TL_GELU: b[k] = 0.5 * v * (1.0 + erf(v / sqrt(2.0))); break;
                    case TL_SILU: b[k] = v / (1.0 + exp(-v)); break;
                    default: b[k] = v;
                    }
                }
            }
            memcpy(a, b, sizeof(double) * (size_t)w);
        }
        for (int o = 0; o < s->out_dim; o++)
            z[(size_t)i * s->out_dim + o] = a[o];
    }
}

static void test_forward_reference(void **state)
{
    (void)state;
    const char *specs[] = {"linear 6->3", "mlp 6-5-4-3 relu", "mlp 6-5-3 tanh",
                           "mlp 6-8-3 gelu", "mlp 6-7-5-3 silu"};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        target_spec s;
        d2_error e = {0};
        assert_int_equal(target_spec_parse(&s, specs[si], &e), 0);
        float *theta = malloc(sizeof(float) * s.numel);
        fill_theta(&s, 11 + si, theta);
        int n = 300; /* more than one forward chunk */
        float *x = malloc(sizeof(float) * (size_t)n * 6), *z = malloc(sizeof(float) * n * 3);
        double *ref = malloc(sizeof(double) * n * 3);
        rng_fill_normal(x, (size_t)n * 6, 5, 0, 0.0f, 1.5f);
        assert_int_equal(target_forward(&s, theta, x, n, z, &e), 0);
        naive_forward(&s, theta, x, n, ref);
        for (int i = 0; i < n * 3; i++)
            TU_ASSERT_NEAR(z[i], ref[i], 1e-4 * (1.0 + fabs(ref[i])));
        free(theta);
        free(x);
        free(z);
        free(ref);
    }
}

/* make a labelled set of `classes` Gaussian blobs in dim D */
static void blobs(dataset *d, int n, int D, int classes, float spread, uint64_t seed)
{
    d2_error e = {0};
    assert_int_equal(dataset_alloc(d, n, D, &e), 0);
    float *centres = malloc(sizeof(float) * (size_t)classes * D);
    rng_fill_normal(centres, (size_t)classes * D, seed, 0, 0.0f, 3.0f);
    rng_fill_normal(d->x, (size_t)n * D, seed + 1, 0, 0.0f, spread);
    for (int i = 0; i < n; i++) {
        d->y[i] = i % classes;
        for (int j = 0; j < D; j++)
            d->x[(size_t)i * D + j] += centres[(size_t)d->y[i] * D + j];
    }
    d->classes = classes;
    free(centres);
}

static void test_backward_gradcheck(void **state)
{
    (void)state;
    const char *specs[] = {"linear 5->4", "mlp 5-6-4 tanh", "mlp 5-6-3-4 gelu",
                           "mlp 5-7-4 silu"};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        target_spec s;
        d2_error e = {0};
        assert_int_equal(target_spec_parse(&s, specs[si], &e), 0);
        dataset d;
        blobs(&d, 12, 5, 3, 1.0f, 40 + si); /* 3 classes on 4 outputs: output 3 unused */
        float *theta = malloc(sizeof(float) * s.numel), *g = malloc(sizeof(float) * s.numel);
        fill_theta(&s, 3 + si, theta);
        tnet_ws ws;
        assert_int_equal(tnet_ws_init(&ws, &s, d.n, 1, &e), 0);
        float *z = (float *)tnet_forward(&ws, &s, theta, d.x, d.n);
        /* dlogits of the mean cross-entropy over the first 3 outputs */
        for (int i = 0; i < d.n; i++) {
            float *zi = z + (size_t)i * s.out_dim, mx = zi[0], se = 0;
            for (int j = 1; j < 3; j++)
                mx = fmaxf(mx, zi[j]);
            for (int j = 0; j < 3; j++)
                se += expf(zi[j] - mx);
            for (int j = 0; j < 3; j++)
                zi[j] = expf(zi[j] - mx) / se / d.n;
            zi[d.y[i]] -= 1.0f / d.n;
            zi[3] = 0.0f;
        }
        tnet_backward(&ws, &s, theta, d.x, z, d.n, g);
        for (size_t p = 0; p < s.numel; p++) {
            float keep = theta[p], lp, lm, h = 1e-2f;
            theta[p] = keep + h;
            assert_int_equal(target_eval(&s, theta, &d, NULL, &lp, &e), 0);
            theta[p] = keep - h;
            assert_int_equal(target_eval(&s, theta, &d, NULL, &lm, &e), 0);
            theta[p] = keep;
            double fd = ((double)lp - lm) / (2.0 * h);
            if (fabs(fd - g[p]) > 2e-3 + 2e-2 * fabs(fd))
                fail_msg("%s: grad[%zu] = %g, finite difference %g", specs[si], p, (double)g[p],
                         fd);
        }
        tnet_ws_free(&ws);
        dataset_free(&d);
        free(theta);
        free(g);
    }
}

static void test_train_separable(void **state)
{
    (void)state;
    target_spec s;
    d2_error e = {0};
    assert_int_equal(target_spec_parse(&s, "linear 4->3", &e), 0);
    dataset d;
    blobs(&d, 300, 4, 3, 0.5f, 7);
    float theta[15], acc0, acc, loss0, loss;
    target_init_random(&s, 1, theta);
    assert_int_equal(target_eval(&s, theta, &d, &acc0, &loss0, &e), 0);
    target_train_cfg cfg = target_train_defaults();
    cfg.seed = 3;
    assert_int_equal(target_train(&s, &d, theta, 0, &cfg, &e), 0);
    assert_int_equal(target_eval(&s, theta, &d, &acc, &loss, &e), 0);
    assert_true(acc >= 0.99f);
    assert_true(loss < 0.1f);
    assert_true(loss < loss0);

    /* XOR needs the hidden layer */
    target_spec m;
    assert_int_equal(target_spec_parse(&m, "mlp 2-16-2 relu", &e), 0);
    dataset x;
    assert_int_equal(dataset_alloc(&x, 400, 2, &e), 0);
    rng r;
    rng_init(&r, 9, 0);
    for (int i = 0; i < 400; i++) {
        int a = i & 1, b = (i >> 1) & 1;
        x.x[2 * i] = (a ? 1.0f : -1.0f) + 0.15f * rng_normal(&r);
        x.x[2 * i + 1] = (b ? 1.0f : -1.0f) + 0.15f * rng_normal(&r);
        x.y[i] = a ^ b;
    }
    x.classes = 2;
    float *tm = malloc(sizeof(float) * m.numel);
    cfg.epochs = 60;
    cfg.batch = 32;
    assert_int_equal(target_train(&m, &x, tm, 0, &cfg, &e), 0);
    assert_int_equal(target_eval(&m, tm, &x, &acc, NULL, &e), 0);
    assert_true(acc >= 0.97f);
    free(tm);
    dataset_free(&x);
    dataset_free(&d);
}

static void test_train_determinism_and_finetune(void **state)
{
    (void)state;
    target_spec s;
    d2_error e = {0};
    assert_int_equal(target_spec_parse(&s, "mlp 6-8-4 relu", &e), 0);
    dataset d;
    blobs(&d, 200, 6, 4, 1.5f, 21);
    float *a = malloc(sizeof(float) * s.numel), *b = malloc(sizeof(float) * s.numel);
    target_train_cfg cfg = target_train_defaults();
    cfg.seed = 77;
    assert_int_equal(target_train(&s, &d, a, 0, &cfg, &e), 0);
    assert_int_equal(target_train(&s, &d, b, 0, &cfg, &e), 0);
    assert_memory_equal(a, b, sizeof(float) * s.numel);
    cfg.seed = 78;
    assert_int_equal(target_train(&s, &d, b, 0, &cfg, &e), 0);
    assert_true(memcmp(a, b, sizeof(float) * s.numel) != 0);

    /* fine-tuning starts from theta: a tiny learning rate barely moves it */
    memcpy(b, a, sizeof(float) * s.numel);
    cfg.lr = 1e-7f;
    assert_int_equal(target_train(&s, &d, b, 1, &cfg, &e), 0);
    double maxd = 0;
    for (size_t i = 0; i < s.numel; i++)
        maxd = fmax(maxd, fabs((double)a[i] - b[i]));
    assert_true(maxd < 1e-4);
    assert_true(maxd > 0.0);
    /* a non-finite start point is refused */
    b[3] = NAN;
    assert_int_not_equal(target_train(&s, &d, b, 1, &cfg, &e), 0);
    assert_non_null(strstr(e.msg, "start point"));
    assert_non_null(strstr(e.msg, "0.weight[0][3]"));
    /* data that do not fit the spec */
    dataset wrong;
    blobs(&wrong, 10, 5, 2, 1.0f, 3);
    assert_int_equal(target_train(&s, &wrong, a, 0, &cfg, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "5 features"));
    dataset_free(&wrong);
    blobs(&wrong, 10, 6, 5, 1.0f, 3);
    assert_int_equal(target_eval(&s, a, &wrong, NULL, NULL, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "5 classes"));
    dataset_free(&wrong);
    dataset_free(&d);
    free(a);
    free(b);
}

/* ---- tensors ---- */

static void test_tensor_names_and_io(void **state)
{
    (void)state;
    d2_error e = {0};
    target_spec s;
    assert_int_equal(target_spec_parse(&s, "pca:3 | mlp 3-4-2 relu", &e), 0);
    feature_map f = {.in_dim = 5, .out_dim = 3};
    f.W = malloc(sizeof(float) * 15);
    f.mean = malloc(sizeof(float) * 5);
    /* orthonormal rows: e0, e2, (e1 + e3)/sqrt2 */
    memset(f.W, 0, sizeof(float) * 15);
    f.W[0] = 1.0f;
    f.W[5 + 2] = 1.0f;
    f.W[10 + 1] = f.W[10 + 3] = 0.70710678f;
    for (int j = 0; j < 5; j++)
        f.mean[j] = 0.5f * (float)j - 1.0f;
    float *theta = malloc(sizeof(float) * s.numel);
    target_init_random(&s, 5, theta);
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(target_write_tensors(&s, &f, theta, &w, &e), 0);
    unsigned char *buf;
    size_t len;
    assert_int_equal(st_writer_to_memory(&w, &buf, &len, &e), 0);
    st_writer_free(&w);
    st_file sf;
    assert_int_equal(st_parse(&sf, buf, len, &e), 0);
    const char *names[] = {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"};
    const int64_t shapes[][2] = {{3, 5}, {3, 0}, {4, 3}, {4, 0}, {2, 4}, {2, 0}};
    assert_int_equal(sf.count, 6);
    for (int i = 0; i < 6; i++) {
        const st_tensor *t = st_find(&sf, names[i]);
        assert_non_null(t);
        assert_int_equal(t->dtype, ST_F32);
        assert_int_equal(t->ndim, shapes[i][1] ? 2 : 1);
        assert_int_equal(t->shape[0], shapes[i][0]);
        if (shapes[i][1])
            assert_int_equal(t->shape[1], shapes[i][1]);
    }
    /* 0.bias = -W @ mean */
    float b0[3];
    assert_int_equal(st_to_f32(st_find(&sf, "0.bias"), b0, &e), 0);
    TU_ASSERT_NEAR(b0[0], -f.mean[0], 1e-6);
    TU_ASSERT_NEAR(b0[1], -f.mean[2], 1e-6);
    TU_ASSERT_NEAR(b0[2], -0.70710678 * (f.mean[1] + f.mean[3]), 1e-6);
    /* read back */
    float *back = malloc(sizeof(float) * s.numel);
    assert_int_equal(target_read_theta(&s, &sf, back, &e), 0);
    assert_memory_equal(back, theta, sizeof(float) * s.numel);
    feature_map g;
    assert_int_equal(target_read_feature_map(&s, &sf, &g, &e), 0);
    assert_int_equal(g.in_dim, 5);
    assert_int_equal(g.out_dim, 3);
    /* same map: W (x - mean') == W (x - mean) */
    for (int i = 0; i < 3; i++) {
        double d1 = 0, d2 = 0;
        for (int j = 0; j < 5; j++) {
            d1 += (double)f.W[i * 5 + j] * f.mean[j];
            d2 += (double)g.W[i * 5 + j] * g.mean[j];
        }
        TU_ASSERT_NEAR(d1, d2, 1e-5);
    }
    feature_map_free(&g);
    /* a spec that does not match the file */
    target_spec o;
    assert_int_equal(target_spec_parse(&o, "pca:3 | mlp 3-5-2 relu", &e), 0);
    assert_int_not_equal(target_read_theta(&o, &sf, back, &e), 0);
    assert_non_null(strstr(e.msg, "'1.weight' has shape [4, 3], expected [5, 3]"));
    assert_int_equal(target_spec_parse(&o, "pca:3 | linear 3->2", &e), 0);
    assert_int_not_equal(target_read_theta(&o, &sf, back, &e), 0);
    assert_non_null(strstr(e.msg, "unexpected tensor"));
    st_free(&sf);
    free(buf);

    /* missing tensor, non-finite value */
    st_writer_init(&w);
    int64_t s1[2] = {4, 3}, s2[1] = {4};
    assert_int_equal(st_writer_add_f32(&w, "1.weight", 2, s1, theta, &e), 0);
    float nb[4] = {0, 1, INFINITY, 0};
    assert_int_equal(st_writer_add_f32(&w, "1.bias", 1, s2, nb, &e), 0);
    assert_int_equal(st_writer_to_memory(&w, &buf, &len, &e), 0);
    st_writer_free(&w);
    assert_int_equal(st_parse(&sf, buf, len, &e), 0);
    assert_int_not_equal(target_read_theta(&s, &sf, back, &e), 0);
    assert_non_null(strstr(e.msg, "missing tensor '0.weight'"));
    target_spec lin;
    assert_int_equal(target_spec_parse(&lin, "mlp 9-4-2 relu", &e), 0);
    assert_int_not_equal(target_read_theta(&lin, &sf, back, &e), 0);
    assert_non_null(strstr(e.msg, "'1.weight'")); /* module 1 of mlp is ReLU: unexpected */
    assert_int_equal(target_spec_parse(&lin, "linear 9->4 | relu | linear 4->3 | relu | linear 3->4",
                                       &e), 0);
    st_free(&sf);
    free(buf);
    st_writer_init(&w);
    int64_t a1[2] = {4, 9}, a2[1] = {4}, c1[2] = {3, 4}, c2[1] = {3}, d1[2] = {4, 3};
    float *z = calloc(64, sizeof(float));
    assert_int_equal(st_writer_add_f32(&w, "0.weight", 2, a1, z, &e), 0);
    assert_int_equal(st_writer_add_f32(&w, "0.bias", 1, a2, z, &e), 0);
    assert_int_equal(st_writer_add_f32(&w, "2.weight", 2, c1, z, &e), 0);
    assert_int_equal(st_writer_add_f32(&w, "2.bias", 1, c2, z, &e), 0);
    assert_int_equal(st_writer_add_f32(&w, "4.weight", 2, d1, z, &e), 0);
    assert_int_equal(st_writer_add_f32(&w, "4.bias", 1, s2, nb, &e), 0);
    assert_int_equal(st_writer_to_memory(&w, &buf, &len, &e), 0);
    st_writer_free(&w);
    assert_int_equal(st_parse(&sf, buf, len, &e), 0);
    float *t2 = malloc(sizeof(float) * lin.numel);
    assert_int_not_equal(target_read_theta(&lin, &sf, t2, &e), 0);
    assert_non_null(strstr(e.msg, "'4.bias' element 2 is not finite"));
    free(t2);
    free(z);
    st_free(&sf);
    free(buf);
    free(back);
    free(theta);
    feature_map_free(&f);
}

/* ---- PCA ---- */

static void test_pca_2d(void **state)
{
    (void)state;
    /* points mean + t a + s b with a = (cos 30, sin 30), b = a rotated by 90
     * degrees, t = -2..2 (variance 2.5 * 4), s = +-0.1 */
    d2_error e = {0};
    dataset d;
    assert_int_equal(dataset_alloc(&d, 10, 2, &e), 0);
    double a0 = cos(M_PI / 6), a1 = sin(M_PI / 6);
    int k = 0;
    for (int t = -2; t <= 2; t++)
        for (int sg = -1; sg <= 1; sg += 2, k++) {
            double tt = 2.0 * t, ss = 0.1 * sg;
            d.x[2 * k] = (float)(3.0 + tt * a0 - ss * a1);
            d.x[2 * k + 1] = (float)(-1.0 + tt * a1 + ss * a0);
            d.y[k] = 0;
        }
    d.classes = 1;
    feature_map f;
    assert_int_equal(feature_map_fit_pca(&f, &d, 2, &e), 0);
    assert_int_equal(f.in_dim, 2);
    assert_int_equal(f.out_dim, 2);
    TU_ASSERT_NEAR(f.mean[0], 3.0, 1e-6);
    TU_ASSERT_NEAR(f.mean[1], -1.0, 1e-6);
    /* first component = a (largest entry positive), second = +-b with its
     * largest-magnitude entry positive: b = (-0.5, 0.866) */
    TU_ASSERT_NEAR(f.W[0], a0, 1e-5);
    TU_ASSERT_NEAR(f.W[1], a1, 1e-5);
    TU_ASSERT_NEAR(f.W[2], -a1, 1e-5);
    TU_ASSERT_NEAR(f.W[3], a0, 1e-5);
    /* variances of the mapped data: 4 * 20 / 9 and 0.01 * 10 / 9 */
    dataset y;
    assert_int_equal(feature_map_apply(&f, &d, &y, &e), 0);
    double v0 = 0, v1 = 0;
    for (int i = 0; i < 10; i++) {
        v0 += (double)y.x[2 * i] * y.x[2 * i];
        v1 += (double)y.x[2 * i + 1] * y.x[2 * i + 1];
    }
    TU_ASSERT_NEAR(v0 / 9, 80.0 / 9, 1e-4);
    TU_ASSERT_NEAR(v1 / 9, 0.1 / 9, 1e-5);
    dataset_free(&y);
    feature_map_free(&f);
    /* bad requests */
    assert_int_equal(feature_map_fit_pca(&f, &d, 3, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "3 components requested from 2 features"));
    d.n = 1;
    assert_int_equal(feature_map_fit_pca(&f, &d, 1, &e), D2_EINVAL);
    dataset_free(&d);
}

/* Data with a decaying spectrum in D dims; checks orthonormality, the
 * eigen-equation C w = lambda w against a double covariance, descending
 * variances, and the sign rule. Exercises the subspace path (D > 64). */
static void check_pca(int n, int D, int k)
{
    d2_error e = {0};
    dataset d;
    assert_int_equal(dataset_alloc(&d, n, D, &e), 0);
    float *z = malloc(sizeof(float) * (size_t)n * D), *R = malloc(sizeof(float) * (size_t)D * D);
    rng_fill_normal(z, (size_t)n * D, 99, 0, 0.0f, 1.0f);
    rng_fill_normal(R, (size_t)D * D, 100, 0, 0.0f, 1.0f);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) {
            double acc = 0.0;
            for (int p = 0; p < D; p++)
                acc += z[(size_t)i * D + p] * (4.0 / (1.0 + p)) * R[(size_t)p * D + j] / sqrt(D);
            d.x[(size_t)i * D + j] = (float)acc + 0.25f * (float)j;
            d.y[i] = 0;
        }
    d.classes = 1;
    feature_map f;
    double t0 = d2_now();
    assert_int_equal(feature_map_fit_pca(&f, &d, k, &e), 0);
    fprintf(stderr, "# pca n=%d D=%d k=%d: %.3f s\n", n, D, k, d2_now() - t0);
    double *mean = calloc((size_t)D, sizeof(double)), *C = calloc((size_t)D * D, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            mean[j] += d.x[(size_t)i * D + j] / (double)n;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
                C[(size_t)a * D + b] += (d.x[(size_t)i * D + a] - mean[a]) *
                                        (d.x[(size_t)i * D + b] - mean[b]) / (n - 1);
    double prev = INFINITY, top = 0;
    for (int r = 0; r < k; r++) {
        const float *w = f.W + (size_t)r * D;
        for (int s = 0; s <= r; s++) {
            double dot = 0;
            for (int j = 0; j < D; j++)
                dot += (double)w[j] * f.W[(size_t)s * D + j];
            TU_ASSERT_NEAR(dot, r == s ? 1.0 : 0.0, 1e-5);
        }
        double lam = 0, res = 0, big = 0;
        for (int a = 0; a < D; a++) {
            double cw = 0;
            for (int b = 0; b < D; b++)
                cw += C[(size_t)a * D + b] * w[b];
            lam += w[a] * cw;
            if (fabs(w[a]) > fabs(big))
                big = w[a];
        }
        if (r == 0)
            top = lam;
        for (int a = 0; a < D; a++) {
            double cw = 0;
            for (int b = 0; b < D; b++)
                cw += C[(size_t)a * D + b] * w[b];
            res += (cw - lam * w[a]) * (cw - lam * w[a]);
        }
        assert_true(big > 0);
        assert_true(lam <= prev * (1 + 1e-6));
        if (sqrt(res) > 1e-4 * top)
            fail_msg("component %d: residual %g (lambda %g, top %g)", r, sqrt(res), lam, top);
        prev = lam;
    }
    free(mean);
    free(C);
    free(z);
    free(R);
    feature_map_free(&f);
    dataset_free(&d);
}

static void test_pca_orthonormal(void **state)
{
    (void)state;
    check_pca(600, 20, 5);   /* Jacobi on the whole covariance */
    check_pca(800, 120, 12); /* subspace iteration */
}

static void test_feature_map_basics(void **state)
{
    (void)state;
    d2_error e = {0};
    feature_map f, g;
    assert_int_equal(feature_map_identity(&f, 3, &e), 0);
    dataset d, y;
    blobs(&d, 5, 3, 2, 1.0f, 1);
    assert_int_equal(feature_map_apply(&f, &d, &y, &e), 0);
    assert_memory_equal(y.x, d.x, sizeof(float) * 15);
    assert_memory_equal(y.y, d.y, sizeof(int32_t) * 5);
    assert_int_equal(y.classes, 2);
    dataset_free(&y);
    assert_int_equal(feature_map_copy(&g, &f, &e), 0);
    assert_null(g.W);
    feature_map_free(&g);
    /* wrong input size */
    assert_int_equal(feature_map_identity(&f, 4, &e), 0);
    assert_int_equal(feature_map_apply(&f, &d, &y, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "expects 4"));
    assert_int_equal(feature_map_identity(&f, 0, &e), D2_EINVAL);
    /* PCA map equals W (x - mean) computed by hand, and survives a copy */
    assert_int_equal(feature_map_fit_pca(&f, &d, 2, &e), 0);
    assert_int_equal(feature_map_copy(&g, &f, &e), 0);
    assert_int_equal(feature_map_apply(&g, &d, &y, &e), 0);
    for (int i = 0; i < 5; i++)
        for (int r = 0; r < 2; r++) {
            double acc = 0;
            for (int j = 0; j < 3; j++)
                acc += (double)f.W[r * 3 + j] * (d.x[i * 3 + j] - f.mean[j]);
            TU_ASSERT_NEAR(y.x[i * 2 + r], acc, 1e-5);
        }
    dataset_free(&y);
    feature_map_free(&f);
    feature_map_free(&g);
    dataset_free(&d);
}

/* Real data: PCA-32 of Fashion-MNIST, one 5-way task with 100 samples per
 * class, evaluated on every test sample of those classes. */
static void test_train_fashion(void **state)
{
    (void)state;
    d2_error e = {0};
    data_source src;
    if (data_source_load(&src, "fashion-mnist", &e))
        fail_msg("fashion-mnist: %s", e.msg);
    feature_map f;
    double t0 = d2_now();
    assert_int_equal(feature_map_fit_pca(&f, &src.train, 32, &e), 0);
    fprintf(stderr, "# pca-32 of fashion-mnist: %.2f s\n", d2_now() - t0);
    dataset tr, te;
    assert_int_equal(feature_map_apply(&f, &src.train, &tr, &e), 0);
    assert_int_equal(feature_map_apply(&f, &src.test, &te, &e), 0);
    class_index ci, cq;
    assert_int_equal(class_index_build(&ci, &tr, &e), 0);
    assert_int_equal(class_index_build(&cq, &te, &e), 0);
    task t = {.way = 5, .classes = {3, 8, 1, 9, 6}};
    rng r;
    rng_init(&r, 4, 0);
    dataset a, q;
    assert_int_equal(task_draw(&tr, &ci, &t, 100, &r, &a, &e), 0);
    assert_int_equal(task_draw(&te, &cq, &t, 0, &r, &q, &e), 0);
    assert_int_equal(q.n, 5000);
    target_spec s;
    assert_int_equal(target_spec_parse(&s, "pca:32 | linear 32->5", &e), 0);
    float theta[165], acc, tacc;
    target_train_cfg cfg = target_train_defaults();
    cfg.seed = 1;
    t0 = d2_now();
    assert_int_equal(target_train(&s, &a, theta, 0, &cfg, &e), 0);
    double dt = d2_now() - t0;
    assert_int_equal(target_eval(&s, theta, &q, &acc, NULL, &e), 0);
    assert_int_equal(target_eval(&s, theta, &a, &tacc, NULL, &e), 0);
    fprintf(stderr, "# fashion 5-way, 100/class: query acc %.4f, train acc %.4f, %.1f ms\n", acc,
            tacc, 1e3 * dt);
    assert_true(acc > 0.80f);
    assert_true(tacc > 0.85f);
    dataset_free(&a);
    dataset_free(&q);
    dataset_free(&tr);
    dataset_free(&te);
    class_index_free(&ci);
    class_index_free(&cq);
    feature_map_free(&f);
    data_source_free(&src);
}

/* Heads of fewer classes (any-way generators): the narrowed spec, theta's
 * rows moved both ways, zeroing the untrained rows, and what is refused. */
static void test_spec_with_way(void **state)
{
    (void)state;
    d2_error err;
    target_spec w, n;
    assert_int_equal(target_spec_parse(&w, "pca:4 | linear 4->6", &err), 0);
    assert_int_equal(target_spec_with_way(&w, 3, &n, &err), 0);
    assert_string_equal(n.text, "pca:4 | linear 4->3");
    assert_int_equal(n.out_dim, 3);
    assert_int_equal((int)n.numel, 15);
    assert_int_equal((int)n.layers[0].b_off, 12);
    float wide[30], narrow[15], back[30];
    for (int i = 0; i < 30; i++)
        wide[i] = (float)(i + 1);
    target_theta_narrow(&w, &n, wide, narrow);
    for (int i = 0; i < 12; i++) // rows 0..2 of the weight [6, 4]
        assert_true(narrow[i] == wide[i]);
    for (int i = 0; i < 3; i++) // the first 3 biases
        assert_true(narrow[12 + i] == wide[24 + i]);
    target_theta_widen(&w, &n, narrow, back);
    for (int i = 0; i < 30; i++) {
        int kept = i < 12 || (i >= 24 && i < 27);
        assert_true(back[i] == (kept ? wide[i] : 0.0f));
    }
    memcpy(back, wide, sizeof back);
    target_zero_rows_from(&w, 3, back);
    for (int i = 0; i < 30; i++) {
        int kept = i < 12 || (i >= 24 && i < 27);
        assert_true(back[i] == (kept ? wide[i] : 0.0f));
    }
    assert_int_equal(target_spec_with_way(&w, 6, &n, &err), 0);
    assert_int_equal((int)n.numel, 30);
    assert_int_equal(target_spec_with_way(&w, 7, &n, &err), D2_ERANGE);
    assert_non_null(strstr(err.msg, "7 classes outside 2..6"));
    assert_int_equal(target_spec_with_way(&w, 1, &n, &err), D2_ERANGE);
    target_spec m;
    assert_int_equal(target_spec_parse(&m, "mlp 8-4-6 relu", &err), 0);
    assert_int_equal(target_spec_with_way(&m, 3, &n, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "only a single linear layer"));
    assert_int_equal(target_spec_parse(&m, "linear 10->20", &err), 0);
    assert_int_equal(target_spec_with_way(&m, 5, &n, &err), 0);
    assert_string_equal(n.text, "linear 10->5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_good),
        cmocka_unit_test(test_spec_bad),
        cmocka_unit_test(test_spec_with_way),
        cmocka_unit_test(test_forward_reference),
        cmocka_unit_test(test_backward_gradcheck),
        cmocka_unit_test(test_train_separable),
        cmocka_unit_test(test_train_determinism_and_finetune),
        cmocka_unit_test(test_tensor_names_and_io),
        cmocka_unit_test(test_pca_2d),
        cmocka_unit_test(test_pca_orthonormal),
        cmocka_unit_test(test_feature_map_basics),
        cmocka_unit_test(test_train_fashion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
