/* test_backbone_torch.c - the PyTorch round trip of a backbone file: a Conv-4 written by
 * convnet_save (random weights, non-trivial batch-norm running statistics) is read with
 * torch only (struct + json for the header, torch.frombuffer for the tensors), rebuilt from
 * its "architecture" metadata in the torch.nn namespace (the README's block, run as
 * written), loaded with
 * load_state_dict(strict=True) and run in eval mode on a test batch: its logits must equal
 * d2nwg's within 1e-4. Skipped, by name, where /usr/bin/python3 cannot import torch. */
#include "fileio.h"
#include "testutil.h"
#include "tu_readme.h"

#include <math.h>
#include <sys/wait.h>

#include "convnet.h"
#include "rng.h"
#include "safetensors.h"
#include "target.h"

#define PY "/usr/bin/python3"
#define BT_B 6
#define BT_CLASSES 5

static void write_script(const char *dir)
{
    char path[600];
    static const char *const need[] = {"meta[\"architecture\"]", "torch.frombuffer", NULL};
    char *block = tu_readme_python_block(need, NULL, "that reads meta[\"architecture\"]");
    snprintf(path, sizeof path, "%s/classify.py", dir);
    tu_write_bytes(path, block, strlen(block));
    free(block);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* a Conv-4 (8 channels) with random weights and running statistics, saved to path; its
 * eval-mode logits for x [BT_B, 784] into want */
static void make_backbone(const char *path, const float *xh, float *want)
{
    d2_error err = {0};
    backend_t *be = NULL;
    assert_int_equal(backend_cpu_create(&be, 1, &err), 0);
    convnet n;
    paramset ps, bufs;
    paramset_init(&ps);
    paramset_init(&bufs);
    assert_int_equal(convnet_init(&n, &ps, &bufs, 1, 28, 28, 8, 4, BT_CLASSES, &err), 0);
    assert_int_equal(paramset_alloc(&ps, be, 3, &err), 0);
    assert_int_equal(paramset_alloc(&bufs, be, 3, &err), 0);
    rng r;
    rng_init(&r, 77, 0);
    for (int i = 0; i < bufs.count; i++) { /* means near 0, variances in [0.5, 1.5] */
        const param_entry *e = &bufs.entries[i];
        int var = strstr(e->name, "running_var") != NULL;
        for (size_t k = 0; k < e->numel; k++)
            bufs.w[e->offset + k] = var ? 0.5f + rng_uniform(&r) : 0.3f * rng_normal(&r);
    }
    for (int i = 0; i < ps.count; i++)
        if (strstr(ps.entries[i].name, ".1."))
            for (size_t k = 0; k < ps.entries[i].numel; k++)
                ps.w[ps.entries[i].offset + k] += 0.2f * rng_normal(&r);
    const param_entry *fc = paramset_find(&ps, "6.weight"); /* logits of order 1 */
    assert_non_null(fc);
    for (size_t k = 0; k < fc->numel; k++)
        ps.w[fc->offset + k] *= 30.0f;
    assert_int_equal(convnet_save(&n, &ps, &bufs, 7, path, NULL, 0, &err), 0);
    arena ar;
    assert_int_equal(arena_init(&ar, be, convnet_arena_bytes(&n, BT_B), &err), 0);
    float *xd = backend_alloc_floats(be, (size_t)BT_B * 784);
    assert_non_null(xd);
    be->ops->to_device(be, xd, xh, (size_t)BT_B * 784 * sizeof(float));
    convnet_cache c;
    assert_int_equal(convnet_forward(be, &n, &ps, &bufs, &ar, &c, xd, BT_B, 0, &err), 0);
    be->ops->to_host(be, want, c.logits, (size_t)BT_B * BT_CLASSES * sizeof(float));
    be->ops->free(be, xd);
    arena_free(&ar);
    paramset_free(&ps);
    paramset_free(&bufs);
    backend_destroy(be);
}

/* the largest |torch - d2nwg| / (1 + |d2nwg|) of dir/logits.txt against want[n] */
static double compare(const char *dir, const float *want, int n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/logits.txt", dir);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    double worst = 0.0, got;
    for (int i = 0; i < n; i++) {
        assert_int_equal(fscanf(in, "%lf", &got), 1);
        double d = fabs(got - want[i]) / (1.0 + fabs(want[i]));
        worst = d > worst || isnan(d) ? d : worst; /* a NaN fails the caller's bound */
    }
    assert_int_equal(fscanf(in, "%lf", &got), EOF);
    fclose(in);
    return worst;
}

static int have_torch(const char *test)
{
    if (sh(PY " -c 'import torch' 2>/dev/null") == 0)
        return 1;
    print_message("skipped %s: " PY " cannot import torch (Debian: apt-get install "
                  "python3-torch)\n", test);
    return 0;
}

static void test_torch_backbone_logits_match_d2nwg(void **state)
{
    (void)state;
    if (!have_torch("test_torch_backbone_logits_match_d2nwg"))
        skip();
    char *dir = tu_tmpdir("backbone_torch"), path[600];
    float xh[BT_B * 784], want[BT_B * BT_CLASSES];
    rng r;
    rng_init(&r, 5, 0);
    for (int i = 0; i < BT_B * 784; i++)
        xh[i] = rng_uniform(&r);
    snprintf(path, sizeof path, "%s/x.f32", dir);
    tu_write_bytes(path, xh, sizeof xh);
    write_script(dir);
    snprintf(path, sizeof path, "%s/backbone.safetensors", dir);
    make_backbone(path, xh, want);
    assert_int_equal(sh("cd %s && " PY " classify.py backbone.safetensors x.f32 logits.txt "
                        "> py.out 2>&1 || (cat py.out; exit 1)", dir), 0);
    double worst = compare(dir, want, BT_B * BT_CLASSES);
    print_message("PyTorch vs d2nwg backbone logits, %d x %d: largest difference %.3g "
                  "(row 0: %.5g %.5g %.5g %.5g %.5g)\n", BT_B, BT_CLASSES, worst, want[0],
                  want[1], want[2], want[3], want[4]);
    assert_true(worst <= 1e-4);
    tu_rmrf(dir);
    free(dir);
}

/* a whole network "cnn:FILE | mlp 8-6-5 relu" as target_write_tensors writes it */
static void test_torch_network_logits_match_d2nwg(void **state)
{
    (void)state;
    if (!have_torch("test_torch_network_logits_match_d2nwg"))
        skip();
    char *dir = tu_tmpdir("network_torch"), path[600], text[700];
    float xh[BT_B * 784], scratch[BT_B * BT_CLASSES], want[BT_B * 5];
    rng r;
    rng_init(&r, 6, 0);
    for (int i = 0; i < BT_B * 784; i++)
        xh[i] = rng_uniform(&r);
    snprintf(path, sizeof path, "%s/x.f32", dir);
    tu_write_bytes(path, xh, sizeof xh);
    write_script(dir);
    snprintf(path, sizeof path, "%s/backbone.safetensors", dir);
    make_backbone(path, xh, scratch);
    d2_error err = {0};
    target_spec s;
    snprintf(text, sizeof text, "cnn:%s | mlp 8-6-5 relu", path);
    assert_int_equal(target_spec_parse(&s, text, &err), 0);
    feature_map fm;
    assert_int_equal(feature_map_load_cnn(&fm, path, &err), 0);
    float theta[256];
    assert_true(s.numel <= 256);
    target_init_random(&s, 8, theta);
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(target_write_tensors(&s, &fm, theta, &w, &err), 0);
    snprintf(path, sizeof path, "%s/net.safetensors", dir);
    assert_int_equal(st_writer_save(&w, path, &err), 0);
    st_writer_free(&w);
    dataset d = {.n = BT_B, .dim = 784, .classes = 5, .x = xh}, feat;
    int32_t y[BT_B] = {0};
    d.y = y;
    assert_int_equal(feature_map_apply(&fm, &d, &feat, &err), 0);
    assert_int_equal(target_forward(&s, theta, feat.x, BT_B, want, &err), 0);
    dataset_free(&feat);
    feature_map_free(&fm);
    assert_int_equal(sh("cd %s && " PY " classify.py net.safetensors x.f32 logits.txt "
                        "> py.out 2>&1 || (cat py.out; exit 1)", dir), 0);
    double worst = compare(dir, want, BT_B * 5);
    print_message("PyTorch vs d2nwg whole-network logits, %d x 5: largest difference %.3g\n",
                  BT_B, worst);
    assert_true(worst <= 1e-4);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_backbone_logits_match_d2nwg),
        cmocka_unit_test(test_torch_network_logits_match_d2nwg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
