/* test_zoo_import.c - zoo import across dtypes and the all-or-nothing mode:
 * F16 and F32 copies of the same checkpoint (the frozen module 0 included)
 * import into one zoo; a feature map that differs by more than F16 rounding is
 * still rejected; with skip_bad = 0 one rejected line leaves nothing behind. */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "safetensors.h"
#include "zoo.h"
#include "zoo_internal.h"

static void write_f32(const char *path, const target_spec *s, const feature_map *f,
                      const float *theta)
{
    st_writer w;
    d2_error e = {0};
    st_writer_init(&w);
    assert_int_equal(target_write_tensors(s, f, theta, &w, &e), 0);
    assert_int_equal(st_writer_save(&w, path, &e), 0);
    st_writer_free(&w);
}

/* The F16 copy of a checkpoint: every tensor converted, names and shapes kept. */
static void write_f16_copy(const char *from, const char *to)
{
    st_file f;
    d2_error e = {0};
    assert_int_equal(st_load(&f, from, &e), 0);
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < f.count; i++) {
        const st_tensor *t = &f.tensors[i];
        float *v = malloc(sizeof(float) * t->numel);
        uint16_t *h = malloc(sizeof(uint16_t) * t->numel);
        assert_non_null(v);
        assert_non_null(h);
        assert_int_equal(st_to_f32(t, v, &e), 0);
        for (size_t k = 0; k < t->numel; k++)
            h[k] = st_f32_to_f16(v[k]);
        assert_int_equal(st_writer_add(&w, t->name, ST_F16, t->ndim, t->shape, h,
                                       sizeof(uint16_t) * t->numel, &e), 0);
        free(v);
        free(h);
    }
    assert_int_equal(st_writer_save(&w, to, &e), 0);
    st_writer_free(&w);
    st_free(&f);
}

static void write_dataset(const char *path, int n, int D, int classes)
{
    float *x = malloc(sizeof(float) * (size_t)n * D);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    assert_non_null(x);
    assert_non_null(y);
    rng_fill_normal(x, (size_t)n * D, 7, 0, 0.0f, 0.3f);
    for (int i = 0; i < n; i++) {
        y[i] = i % classes;
        x[(size_t)i * D + (y[i] % D)] += 2.0f;
    }
    st_writer w;
    d2_error e = {0};
    st_writer_init(&w);
    int64_t xs[2] = {n, D}, ys[1] = {n};
    assert_int_equal(st_writer_add_f32(&w, "x", 2, xs, x, &e), 0);
    assert_int_equal(st_writer_add(&w, "y", ST_I32, 1, ys, y, sizeof(int32_t) * (size_t)n, &e),
                     0);
    assert_int_equal(st_writer_save(&w, path, &e), 0);
    st_writer_free(&w);
    free(x);
    free(y);
}

static const char *const SPEC = "pca:2 | linear 2->3";

typedef struct fixture {
    char *dir;
    char manifest[600];
} fixture;

/* Four checkpoints of "pca:2 | linear 2->3" in dir: a.f32 and a.f16 (the same
 * values; W holds thirds, which F16 rounds), and b.f32/b.f16 whose feature map
 * differs from a's by 1e-2 (far above F16 rounding). */
static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->dir = tu_tmpdir("zoo_import");
    d2_error e = {0};
    target_spec sp;
    assert_int_equal(target_spec_parse(&sp, "pca:2 | linear 2->3", &e), 0);
    float W[8] = {1.0f / 3, 2.0f / 3, 0.1f, 0, 0, 0.7f, 1.0f / 7, 0.3f};
    float mean[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    feature_map f = {.in_dim = 4, .out_dim = 2, .W = W, .mean = mean};
    float theta[9];
    target_init_random(&sp, 4, theta);
    char p[800], q[800];
    const char *names[2] = {"a", "b"};
    for (int m = 0; m < 2; m++) {
        if (m == 1)
            W[0] += 1e-2f;
        snprintf(p, sizeof p, "%s/%s.f32.safetensors", fx->dir, names[m]);
        write_f32(p, &sp, &f, theta);
        snprintf(q, sizeof q, "%s/%s.f16.safetensors", fx->dir, names[m]);
        write_f16_copy(p, q);
    }
    snprintf(p, sizeof p, "%s/d.safetensors", fx->dir);
    write_dataset(p, 30, 4, 3);
    snprintf(fx->manifest, sizeof fx->manifest, "%s/manifest.jsonl", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    tu_rmrf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void write_manifest(const fixture *fx, const char *const *weights, int n)
{
    char text[2048] = "";
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "{\"weights\": \"%s.safetensors\", \"dataset\": \"d.safetensors\"}\n",
                                weights[i]);
    tu_write_bytes(fx->manifest, text, len);
}

static void test_f16_and_f32_of_one_map_import_together(void **state)
{
    fixture *fx = *state;
    const char *w[4] = {"a.f32", "a.f16", "a.f16", "a.f32"};
    write_manifest(fx, w, 4);
    char out[700];
    snprintf(out, sizeof out, "%s/mixed", fx->dir);
    zoo_import_report rep;
    d2_error e = {0};
    int rc = zoo_import_lines(fx->manifest, SPEC, out, 0, &rep, &e);
    for (int i = 0; i < rep.rejected; i++)
        print_message("rejected line %d: %s\n", rep.rejects[i].line, rep.rejects[i].msg);
    assert_int_equal(rc, 0);
    assert_int_equal(rep.imported, 4);
    assert_int_equal(rep.rejected, 0);
    zoo_import_report_free(&rep);
    zoo z;
    assert_int_equal(zoo_load(&z, out, 1, &e), 0);
    assert_int_equal(z.n, 4);
    /* the F16 head holds the F16 rounding of the F32 one, no more */
    for (int k = 0; k < z.P; k++) {
        float a = z.theta[k], b = z.theta[(size_t)z.P + k];
        assert_true(b == st_f16_to_f32(st_f32_to_f16(a)));
    }
    zoo_free(&z);
}

static void test_a_different_map_is_rejected_in_either_dtype(void **state)
{
    fixture *fx = *state;
    const char *w[3] = {"a.f16", "b.f32", "b.f16"};
    write_manifest(fx, w, 3);
    char out[700];
    snprintf(out, sizeof out, "%s/differs", fx->dir);
    zoo_import_report rep;
    d2_error e = {0};
    assert_int_equal(zoo_import_lines(fx->manifest, SPEC, out, 1, &rep, &e), 0);
    assert_int_equal(rep.imported, 1);
    assert_int_equal(rep.rejected, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rep.rejects[i].line, i + 2);
        assert_non_null(strstr(rep.rejects[i].msg, "'0.weight' (the frozen feature map) differs"));
        assert_non_null(strstr(rep.rejects[i].msg, "element 0"));
    }
    zoo_import_report_free(&rep);
}

static void test_strict_import_writes_nothing_on_a_rejection(void **state)
{
    fixture *fx = *state;
    const char *w[3] = {"a.f32", "a.f16", "b.f32"};
    write_manifest(fx, w, 3);
    char out[700], data0[800];
    snprintf(out, sizeof out, "%s/strict", fx->dir);
    zoo_import_report rep;
    d2_error e = {0};
    assert_int_equal(zoo_import_lines(fx->manifest, SPEC, out, 0, &rep, &e), D2_EINVAL);
    assert_int_equal(rep.imported, 2);
    assert_int_equal(rep.rejected, 1);
    assert_int_equal(rep.rejects[0].line, 3);
    assert_non_null(strstr(e.msg, "1 line of"));
    assert_non_null(strstr(e.msg, "--skip-bad"));
    zoo_import_report_free(&rep);
    struct stat sb;
    snprintf(data0, sizeof data0, "%s/data/000000.safetensors", out);
    assert_int_not_equal(stat(data0, &sb), 0);
    assert_int_not_equal(stat(out, &sb), 0); /* the folder it made is gone too */
    /* the same manifest with skip_bad: the two good lines make a zoo */
    assert_int_equal(zoo_import_lines(fx->manifest, SPEC, out, 1, &rep, &e), 0);
    assert_int_equal(rep.imported, 2);
    zoo_import_report_free(&rep);
    zoo z;
    assert_int_equal(zoo_load(&z, out, 1, &e), 0);
    assert_int_equal(z.n, 2);
    zoo_free(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_and_f32_of_one_map_import_together),
        cmocka_unit_test(test_a_different_map_is_rejected_in_either_dtype),
        cmocka_unit_test(test_strict_import_writes_nothing_on_a_rejection),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
