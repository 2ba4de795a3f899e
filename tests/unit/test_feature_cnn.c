/* test_feature_cnn.c - the cnn:FILE feature map: features equal the backbone's own forward
 * (eval mode) across chunk boundaries, the file's sha256 identifies it, target specs with
 * "cnn:FILE", a written network holds the backbone under module 0 (without its classifier)
 * and the torch.nn architecture string, and reading it back refuses a changed backbone. */
#include "testutil.h"
#include "tu_backbone.h"

#include <math.h>

#include "convnet.h"
#include "fileio.h"
#include "rng.h"
#include "safetensors.h"
#include "sha256.h"
#include "target.h"

#define FC_ROWS 300 /* more than one chunk of 256 */

typedef struct fx {
    char dir[512], path[600];
    dataset d;
} fx;

static void write_backbone(const char *path, long long batches)
{
    tu_backbone b = {.size = 28, .channels = 8, .blocks = 4, .classes = 4, .seed = 9,
                     .batches = batches, .perturb = 1};
    tu_write_backbone(path, &b);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char *d = tu_tmpdir("feature_cnn");
    snprintf(f->dir, sizeof f->dir, "%s", d);
    free(d);
    snprintf(f->path, sizeof f->path, "%s/bb.safetensors", f->dir);
    write_backbone(f->path, 3);
    d2_error err = {0};
    if (dataset_alloc(&f->d, FC_ROWS, 784, &err))
        return -1;
    rng r;
    rng_init(&r, 4, 0);
    for (size_t i = 0; i < (size_t)FC_ROWS * 784; i++)
        f->d.x[i] = rng_uniform(&r);
    for (int i = 0; i < FC_ROWS; i++)
        f->d.y[i] = i % 5;
    f->d.classes = 5;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    dataset_free(&f->d);
    tu_rmrf(f->dir);
    free(f);
    return 0;
}

static void test_apply_matches_backbone(void **state)
{
    fx *f = *state;
    d2_error err = {0};
    feature_map fm;
    assert_int_equal(feature_map_load_cnn(&fm, f->path, &err), 0);
    assert_int_equal(fm.in_dim, 784);
    assert_int_equal(fm.out_dim, 8);
    unsigned char *bytes;
    size_t len;
    char hex[65];
    assert_int_equal(d2_read_file(f->path, &bytes, &len, 1 << 26, &err), 0);
    sha256_hex(bytes, len, hex);
    free(bytes);
    assert_string_equal(feature_map_cnn_sha256(&fm), hex);
    dataset out;
    assert_int_equal(feature_map_apply(&fm, &f->d, &out, &err), 0);
    assert_int_equal(out.n, FC_ROWS);
    assert_int_equal(out.dim, 8);
    assert_int_equal(out.y[7], 2);
    /* the reference: the backbone's own forward, one row at a time */
    backend_t *be = NULL;
    assert_int_equal(backend_cpu_create(&be, 1, &err), 0);
    convnet n;
    paramset ps, bufs;
    assert_int_equal(convnet_load(&n, &ps, &bufs, be, f->path, NULL, &err), 0);
    arena ar;
    assert_int_equal(arena_init(&ar, be, convnet_arena_bytes(&n, 1), &err), 0);
    float *x = backend_alloc_floats(be, 784), feat[8];
    const int rows[] = {0, 255, 256, FC_ROWS - 1};
    for (int k = 0; k < 4; k++) {
        convnet_cache c;
        be->ops->to_device(be, x, f->d.x + (size_t)rows[k] * 784, 784 * sizeof(float));
        arena_reset(&ar, 0);
        assert_int_equal(convnet_forward(be, &n, &ps, &bufs, &ar, &c, x, 1, 0, &err), 0);
        be->ops->to_host(be, feat, c.feat, sizeof feat);
        for (int j = 0; j < 8; j++)
            assert_true(fabsf(feat[j] - out.x[(size_t)rows[k] * 8 + j]) <= 1e-5f);
    }
    be->ops->free(be, x);
    arena_free(&ar);
    paramset_free(&ps);
    paramset_free(&bufs);
    backend_destroy(be);
    feature_map copy;
    assert_int_equal(feature_map_copy(&copy, &fm, &err), 0);
    assert_string_equal(feature_map_cnn_sha256(&copy), hex);
    feature_map_free(&copy);
    dataset_free(&out);
    feature_map_free(&fm);
}

static void test_spec(void **state)
{
    fx *f = *state;
    d2_error err = {0};
    char text[700];
    target_spec s;
    snprintf(text, sizeof text, "cnn:%s | linear 8->5", f->path);
    assert_int_equal(target_spec_parse(&s, text, &err), 0);
    assert_int_equal(s.has_cnn, 1);
    assert_int_equal(s.has_pca, 0);
    assert_string_equal(s.cnn_path, f->path);
    assert_int_equal(s.feat_dim, 8);
    assert_int_equal((int)s.numel, 45);
    assert_int_equal(s.layers[0].module, 1);
    assert_int_not_equal(target_spec_parse(&s, "linear 8->5 | cnn:x.safetensors", &err), 0);
    assert_non_null(strstr(err.msg, "must be the first layer"));
    assert_int_not_equal(target_spec_parse(&s, "cnn: | linear 8->5", &err), 0);
}

static void test_written_network(void **state)
{
    fx *f = *state;
    d2_error err = {0};
    char text[700];
    target_spec s;
    snprintf(text, sizeof text, "cnn:%s | mlp 8-6-5 relu", f->path);
    assert_int_equal(target_spec_parse(&s, text, &err), 0);
    feature_map fm;
    assert_int_equal(feature_map_load_cnn(&fm, f->path, &err), 0);
    float *theta = malloc(s.numel * sizeof(float));
    assert_non_null(theta);
    target_init_random(&s, 3, theta);
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(target_write_tensors(&s, &fm, theta, &w, &err), 0);
    unsigned char *bytes;
    size_t len;
    assert_int_equal(st_writer_to_memory(&w, &bytes, &len, &err), 0);
    st_writer_free(&w);
    st_file sf;
    assert_int_equal(st_parse(&sf, bytes, len, &err), 0);
    free(bytes);
    assert_non_null(st_find(&sf, "0.0.0.weight"));
    assert_non_null(st_find(&sf, "0.3.1.running_var"));
    assert_non_null(st_find(&sf, "0.3.1.num_batches_tracked"));
    assert_null(st_find(&sf, "0.6.weight")); /* the backbone's classifier stays out */
    assert_non_null(st_find(&sf, "1.weight"));
    assert_non_null(st_find(&sf, "3.bias"));
    const char *arch = st_meta(&sf, "architecture");
    assert_non_null(arch);
    assert_non_null(strstr(arch, "Sequential(Sequential(Sequential(Conv2d(1, 8, 3, stride=1, "));
    assert_non_null(strstr(arch, "AdaptiveAvgPool2d(1), Flatten()), Linear(8, 6), ReLU(), "
                                 "Linear(6, 5))"));
    assert_string_equal(st_meta(&sf, "d2nwg.backbone_sha256"), feature_map_cnn_sha256(&fm));
    float *back = malloc(s.numel * sizeof(float));
    assert_non_null(back);
    assert_int_equal(target_read_theta(&s, &sf, back, &err), 0);
    assert_memory_equal(back, theta, s.numel * sizeof(float));
    feature_map fm2;
    assert_int_equal(target_read_feature_map(&s, &sf, &fm2, &err), 0);
    assert_string_equal(feature_map_cnn_sha256(&fm2), feature_map_cnn_sha256(&fm));
    feature_map_free(&fm2);
    /* another backbone at the same path is refused by name */
    write_backbone(f->path, 4);
    assert_int_equal(target_read_feature_map(&s, &sf, &fm2, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "is not the backbone this checkpoint was made with"));
    write_backbone(f->path, 3);
    st_free(&sf);
    free(theta);
    free(back);
    feature_map_free(&fm);
}

static void test_bad_file(void **state)
{
    fx *f = *state;
    d2_error err = {0};
    feature_map fm;
    char p[700];
    snprintf(p, sizeof p, "%s/missing.safetensors", f->dir);
    assert_int_not_equal(feature_map_load_cnn(&fm, p, &err), 0);
    assert_non_null(strstr(err.msg, "missing.safetensors"));
    /* a safetensors file without the backbone metadata */
    st_writer w;
    st_writer_init(&w);
    const int64_t shape[1] = {2};
    const float v[2] = {1, 2};
    assert_int_equal(st_writer_add_f32(&w, "x", 1, shape, v, &err), 0);
    snprintf(p, sizeof p, "%s/other.safetensors", f->dir);
    assert_int_equal(st_writer_save(&w, p, &err), 0);
    st_writer_free(&w);
    assert_int_not_equal(feature_map_load_cnn(&fm, p, &err), 0);
    assert_non_null(strstr(err.msg, "d2nwg backbone train"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_matches_backbone),
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_written_network),
        cmocka_unit_test(test_bad_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
