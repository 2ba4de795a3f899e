/* test_convnet.c - the Conv-N backbone: finite-difference gradient checks of the input and
 * of every parameter kind through the whole network (batch-norm train and eval mode), the
 * architecture string, and a save/load round trip that gives the same logits. */
#include "testutil.h"

#include <math.h>

#include "convnet.h"
#include "gradcheck.h"

typedef struct ctx {
    backend_t *be;
    paramset ps, bufs;
    convnet n;
    arena ar;
    convnet_cache c;
    float *x, *dx;
    int B, train;
} ctx;

static int fwd(backend_t *be, void *user, float *out)
{
    ctx *t = user;
    d2_error err;
    arena_reset(&t->ar, 0);
    if (convnet_forward(be, &t->n, &t->ps, &t->bufs, &t->ar, &t->c, t->x, t->B, t->train, &err))
        return -1;
    return be->ops->copy(be, out, t->c.logits, (size_t)t->B * t->n.classes * sizeof(float));
}

static int bwd(backend_t *be, void *user, const float *dout)
{
    ctx *t = user;
    d2_error err;
    return convnet_backward(be, &t->n, &t->ps, &t->ar, &t->c, NULL, dout, &err);
}

static void setup_ctx(ctx *t, int train)
{
    d2_error err = {0};
    memset(t, 0, sizeof *t);
    t->B = 4;
    t->train = train;
    assert_int_equal(backend_cpu_create(&t->be, 1, &err), 0);
    paramset_init(&t->ps);
    paramset_init(&t->bufs);
    assert_int_equal(convnet_init(&t->n, &t->ps, &t->bufs, 2, 8, 6, 4, 2, 3, &err), 0);
    assert_int_equal(paramset_alloc(&t->ps, t->be, 5, &err), 0);
    assert_int_equal(paramset_alloc(&t->bufs, t->be, 5, &err), 0);
    /* non-trivial batch-norm affine parameters and running statistics */
    float *w = malloc(t->ps.total * sizeof(float)), *b = malloc(t->bufs.total * sizeof(float));
    assert_non_null(w);
    assert_non_null(b);
    t->be->ops->to_host(t->be, w, t->ps.w, t->ps.total * sizeof(float));
    t->be->ops->to_host(t->be, b, t->bufs.w, t->bufs.total * sizeof(float));
    for (size_t i = 0; i < t->ps.total; i++)
        w[i] += 0.1f * (float)((i * 7) % 5) - 0.2f;
    for (size_t i = 0; i < t->bufs.total; i++)
        b[i] += 0.05f * (float)(i % 3);
    t->be->ops->to_device(t->be, t->ps.w, w, t->ps.total * sizeof(float));
    t->be->ops->to_device(t->be, t->bufs.w, b, t->bufs.total * sizeof(float));
    free(w);
    free(b);
    assert_int_equal(arena_init(&t->ar, t->be, convnet_arena_bytes(&t->n, t->B), &err), 0);
    t->x = gc_dev_uniform(t->be, (size_t)t->B * 2 * 8 * 6, -1.0f, 1.0f, 3);
    t->dx = backend_alloc_floats(t->be, (size_t)t->B * 2 * 8 * 6);
    assert_non_null(t->x);
    assert_non_null(t->dx);
}

static void teardown_ctx(ctx *t)
{
    t->be->ops->free(t->be, t->x);
    t->be->ops->free(t->be, t->dx);
    arena_free(&t->ar);
    paramset_free(&t->ps);
    paramset_free(&t->bufs);
    backend_destroy(t->be);
}

static void check_params(int train)
{
    ctx t;
    setup_ctx(&t, train);
    gc_target tg[16];
    int nt = 0;
    for (int i = 0; i < t.ps.count && nt < 16; i++) {
        const param_entry *e = &t.ps.entries[i];
        tg[nt++] = (gc_target){e->name, t.ps.w + e->offset, t.ps.g + e->offset, e->numel};
    }
    gc_opts o = gc_default_opts();
    o.max_checks = 24;
    o.eps = 2e-3; /* max pool and ReLU switch within 1e-2 of some inputs */
    gc_report rep;
    int bad = gc_check(t.be, fwd, bwd, &t, (size_t)t.B * 3, tg, nt, &o, &rep);
    printf("  train=%d: %d tensors, %d checked, %d failed, %d kinks, max abs err %.2e\n", train,
           nt, rep.checked, rep.failed, rep.kinks, rep.max_abs_err);
    assert_int_equal(bad, 0);
    assert_true(rep.kinks <= rep.checked / 10);
    teardown_ctx(&t);
}

static void test_grad_params_train(void **state)
{
    (void)state;
    check_params(1);
}

static void test_grad_params_eval(void **state)
{
    (void)state;
    check_params(0);
}

static void test_sizes_and_arch(void **state)
{
    (void)state;
    d2_error err = {0};
    paramset ps, bufs;
    paramset_init(&ps);
    paramset_init(&bufs);
    convnet n;
    assert_int_equal(convnet_init(&n, &ps, &bufs, 1, 28, 28, 64, 4, 10, &err), 0);
    assert_int_equal(n.out_h, 1);
    assert_non_null(paramset_find(&ps, "0.0.weight"));
    assert_non_null(paramset_find(&ps, "3.1.bias"));
    assert_non_null(paramset_find(&bufs, "2.1.running_var"));
    assert_non_null(paramset_find(&ps, "6.weight"));
    char arch[2048];
    assert_int_equal(convnet_arch_string(&n, arch, sizeof arch, &err), 0);
    assert_non_null(strstr(arch, "Sequential(Sequential(Conv2d(1, 64, 3, stride=1, padding=1, "
                                 "bias=False), BatchNorm2d(64), ReLU(), MaxPool2d(2)), "));
    assert_non_null(strstr(arch, "AdaptiveAvgPool2d(1), Flatten(), Linear(64, 10))"));
    char small[16];
    assert_int_equal(convnet_arch_string(&n, small, sizeof small, &err), D2_ERANGE);
    paramset_free(&ps);
    paramset_free(&bufs);
    paramset_init(&ps);
    paramset_init(&bufs);
    assert_int_equal(convnet_init(&n, &ps, &bufs, 1, 28, 28, 64, 5, 10, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "below 1x1"));
    paramset_free(&ps);
    paramset_free(&bufs);
}

static void test_save_load(void **state)
{
    (void)state;
    ctx t;
    setup_ctx(&t, 0);
    d2_error err = {0};
    char *dir = tu_tmpdir("convnet"), path[512];
    snprintf(path, sizeof path, "%s/b.safetensors", dir);
    const char *kv[] = {"d2nwg.test", "yes"};
    assert_int_equal(convnet_save(&t.n, &t.ps, &t.bufs, 42, path, kv, 1, &err), 0);
    size_t nl = (size_t)t.B * 3;
    float *l1 = malloc(nl * sizeof(float)), *l2 = malloc(nl * sizeof(float));
    assert_non_null(l1);
    assert_non_null(l2);
    assert_int_equal(fwd(t.be, &t, t.dx), 0);
    t.be->ops->to_host(t.be, l1, t.c.logits, nl * sizeof(float));
    convnet n2;
    paramset ps2, bufs2;
    long long batches = 0;
    assert_int_equal(convnet_load(&n2, &ps2, &bufs2, t.be, path, &batches, &err), 0);
    assert_int_equal(batches, 42);
    assert_int_equal(n2.ch, 4);
    assert_int_equal(n2.blocks, 2);
    convnet_cache c2;
    arena_reset(&t.ar, 0);
    assert_int_equal(convnet_forward(t.be, &n2, &ps2, &bufs2, &t.ar, &c2, t.x, t.B, 0, &err), 0);
    t.be->ops->to_host(t.be, l2, c2.logits, nl * sizeof(float));
    for (size_t i = 0; i < nl; i++)
        assert_true(l1[i] == l2[i]);
    paramset_free(&ps2);
    paramset_free(&bufs2);
    /* a file without the metadata is refused by name */
    assert_int_equal(convnet_load(&n2, &ps2, &bufs2, t.be, "/nonexistent.safetensors", NULL,
                                  &err) != 0, 1);
    free(l1);
    free(l2);
    tu_rmrf(dir);
    free(dir);
    teardown_ctx(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_params_train),
        cmocka_unit_test(test_grad_params_eval),
        cmocka_unit_test(test_sizes_and_arch),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
