/* test_backbone_train.c - `d2nwg backbone train` on a small background source (one glyph
 * "train" script, rendered into a temporary data folder): a run stopped after its first
 * step and resumed from OUT.ckpt writes the same bytes as an uninterrupted run; the file
 * loads as a backbone with the source's classes; digits and held-out scripts are refused,
 * by the library and by the command line (exit 2, naming the source). */
#include "fileio.h"
#include "testutil.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include "backbone_train.h"
#include "convnet.h"
#include "data.h"

typedef struct fx {
    char dir[512], data[600];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char *d = tu_tmpdir("backbone_train");
    snprintf(f->dir, sizeof f->dir, "%s", d);
    free(d);
    setenv("D2NWG_DATA_DIR", f->dir, 1);
    const char *names[4];
    if (glyph_split_scripts(GLYPH_SPLIT_TRAIN, names, 4) < 1)
        return -1;
    snprintf(f->data, sizeof f->data, "glyphs:%s", names[0]);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tu_rmrf(f->dir);
    free(f);
    return 0;
}

static backbone_train_cfg small_cfg(const fx *f)
{
    backbone_train_cfg c = backbone_train_defaults();
    c.data = f->data;
    c.ch = 4;
    c.blocks = 2;
    c.batch = 8;
    c.steps = 6;
    c.progress = 0;
    return c;
}

static void train(const backbone_train_cfg *c, const char *out, backbone_train_report *rep)
{
    d2_error err = {0};
    backend_t *be = NULL;
    assert_int_equal(backend_cpu_create(&be, 1, &err), 0);
    int rc = backbone_train(c, out, be, rep, &err);
    if (rc)
        fail_msg("backbone_train: %s", err.msg);
    backend_destroy(be);
}

static void test_resume_is_exact(void **state)
{
    fx *f = *state;
    char a[700], b[700], ckpt[720];
    snprintf(a, sizeof a, "%s/a.safetensors", f->dir);
    snprintf(b, sizeof b, "%s/b.safetensors", f->dir);
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", b);
    backbone_train_cfg c = small_cfg(f);
    backbone_train_report ra, rb;
    train(&c, a, &ra);
    assert_int_equal(ra.stopped, 0);
    assert_int_equal(ra.steps_done, 6);
    assert_true(ra.classes >= 5);
    c.stop_after = 1e-9; /* stop (with a checkpoint) after the first step */
    train(&c, b, &rb);
    assert_int_equal(rb.stopped, 1);
    assert_int_equal(rb.steps_done, 1);
    struct stat sb;
    assert_int_equal(stat(ckpt, &sb), 0);
    assert_int_not_equal(stat(b, &sb), 0);
    c.stop_after = 0;
    c.resume = 1;
    train(&c, b, &rb);
    assert_int_equal(rb.stopped, 0);
    assert_int_equal(rb.steps_done, 6);
    assert_int_not_equal(stat(ckpt, &sb), 0); /* removed when done */
    unsigned char *ba, *bb;
    size_t la, lb;
    d2_error err = {0};
    assert_int_equal(d2_read_file(a, &ba, &la, 1 << 26, &err), 0);
    assert_int_equal(d2_read_file(b, &bb, &lb, 1 << 26, &err), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba);
    free(bb);
    /* the result loads as a backbone with the source's classes */
    backend_t *be = NULL;
    assert_int_equal(backend_cpu_create(&be, 1, &err), 0);
    convnet n;
    paramset ps, bufs;
    long long batches = 0;
    assert_int_equal(convnet_load(&n, &ps, &bufs, be, a, &batches, &err), 0);
    assert_int_equal(n.classes, ra.classes);
    assert_int_equal(n.ch, 4);
    assert_int_equal(batches, 6);
    paramset_free(&ps);
    paramset_free(&bufs);
    backend_destroy(be);
}

static void test_refused_sources(void **state)
{
    (void)state;
    d2_error err = {0};
    assert_int_equal(backbone_check_source("fashion-mnist+glyphs:train", &err), 0);
    assert_int_equal(backbone_check_source("digits", &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "digits"));
    assert_int_equal(backbone_check_source("fashion-mnist+digits-28", &err), D2_EINVAL);
    assert_int_equal(backbone_check_source("glyphs:heldout", &err), D2_EINVAL);
    const char *held[2];
    assert_true(glyph_split_scripts(GLYPH_SPLIT_HELDOUT, held, 2) >= 1);
    char spec[200];
    snprintf(spec, sizeof spec, "fashion-mnist+glyphs:Latin,%s", held[0]);
    assert_int_equal(backbone_check_source(spec, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, held[0]));
}

static void test_cli_usage(void **state)
{
    fx *f = *state;
    char bin[400], cmd[1400], out[4096];
    tu_build_path(bin, sizeof bin, "d2nwg");
    snprintf(cmd, sizeof cmd, "%s backbone train --out %s/x.safetensors --data digits-28", bin,
             f->dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 2);
    assert_non_null(strstr(out, "d2nwg backbone: train: --data: "));
    assert_non_null(strstr(out, "digits-28"));
    snprintf(cmd, sizeof cmd, "%s backbone frob", bin);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 2);
    assert_non_null(strstr(out, "unknown subcommand 'frob'"));
    snprintf(cmd, sizeof cmd, "%s backbone train --help", bin);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 0);
    assert_non_null(strstr(out, "--resume"));
    snprintf(cmd, sizeof cmd, "%s backbone train --out %s/x.safetensors --channels 0", bin,
             f->dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_refused_sources),
        cmocka_unit_test(test_cli_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
