/* test_lm_train.c - `lm train` / `lm eval` in core: a short run on two small background
 * lists written with GPT-2-style names and its configuration in __metadata__; a run
 * stopped with a checkpoint and resumed ends in the same bytes as one never stopped;
 * held-out languages refused by name; a mismatched resume refused; evaluation of the file
 * gives the validation figure it recorded. */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "lm_io.h"
#include "lm_train.h"
#include "safetensors.h"

static lm_train_cfg tiny_cfg(void)
{
    lm_train_cfg c = lm_train_defaults();
    c.source = "words:irish,gaelic";
    c.model = (lm_config){.layers = 2, .width = 16, .heads = 2, .context = 16};
    c.batch = 4;
    c.steps = 8;
    c.warmup = 2;
    c.lr = 5e-3f;
    c.seed = 3;
    c.progress = 0;
    c.eval_words = 100;
    return c;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void train_ok(const lm_train_cfg *c, const char *out, lm_train_report *rep)
{
    backend_t *be;
    d2_error e = {0};
    assert_int_equal(backend_cpu_create(&be, 1, &e), 0);
    int rc = lm_train(c, out, be, rep, &e);
    backend_destroy(be);
    if (rc)
        fail_msg("lm_train: %s", e.msg);
}

static void test_resume_same_bytes(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("lmtrain"), a[512], b[512], ck[600];
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    snprintf(ck, sizeof ck, "%s.ckpt", b);
    lm_train_cfg c = tiny_cfg();
    lm_train_report ra, rb;
    train_ok(&c, a, &ra);
    assert_int_equal(ra.steps_done, 8);
    assert_false(ra.stopped);
    assert_int_equal(ra.languages, 2);
    assert_true(ra.val_bits > 1.0 && ra.val_bits < 8.0);
    c.stop_at = 3;
    train_ok(&c, b, &rb);
    assert_true(rb.stopped);
    assert_int_equal(rb.steps_done, 3);
    struct stat sb;
    assert_int_equal(stat(ck, &sb), 0);
    c.stop_at = 0;
    c.resume = ck;
    train_ok(&c, b, &rb);
    assert_int_equal(rb.steps_done, 8);
    assert_true(stat(ck, &sb) != 0); /* removed when done */
    size_t la, lb;
    unsigned char *ba = slurp(a, &la), *bb = slurp(b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba);
    free(bb);
    tu_rmrf(dir);
    free(dir);
}

static void test_file_layout_and_eval(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("lmfile"), a[512];
    snprintf(a, sizeof a, "%s/m.safetensors", dir);
    lm_train_cfg c = tiny_cfg();
    lm_train_report r;
    train_ok(&c, a, &r);
    st_file f;
    d2_error e = {0};
    assert_int_equal(st_load(&f, a, &e), 0);
    assert_string_equal(st_meta(&f, "d2nwg.kind"), "lm");
    assert_string_equal(st_meta(&f, "d2nwg.lm"), "layers=2 width=16 heads=2 context=16");
    assert_string_equal(st_meta(&f, "d2nwg.source"), "words:irish,gaelic");
    const st_tensor *q = st_find(&f, "transformer.h.1.attn.q_proj.weight");
    assert_non_null(q);
    assert_int_equal(q->shape[0], 16);
    assert_non_null(st_find(&f, "transformer.wte.weight"));
    assert_int_equal(st_find(&f, "transformer.wte.weight")->shape[0], 257);
    assert_non_null(st_find(&f, "lm_head.weight"));
    assert_null(st_find(&f, "optim.m"));
    double recorded = atof(st_meta(&f, "d2nwg.validation_bits_per_byte"));
    st_free(&f);
    /* lm eval on the validation split with the trainer's sampling gives the same figure */
    backend_t *be;
    assert_int_equal(backend_cpu_create(&be, 1, &e), 0);
    lm_eval_result all, per[WORDS_MAX_LANGS];
    char names[WORDS_MAX_LANGS][32];
    int n;
    assert_int_equal(lm_eval_file(a, NULL, "words:irish,gaelic", WORDS_VALIDATION, 100, 64, be, &all,
                                  per, names, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[1], "gaelic");
    assert_int_equal(all.words + all.skipped, 200);
    assert_true(all.skipped > 0 && all.skipped < 20); /* words of 16 bytes or more */
    assert_true(fabs(lm_bits_per_byte(&all) - recorded) < 1e-5);
    assert_true(fabs(lm_bits_per_byte(&all) - r.val_bits) < 1e-9);
    backend_destroy(be);
    tu_rmrf(dir);
    free(dir);
}

static void test_refusals(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("lmref"), a[512];
    snprintf(a, sizeof a, "%s/m.safetensors", dir);
    backend_t *be;
    d2_error e = {0};
    assert_int_equal(backend_cpu_create(&be, 1, &e), 0);
    lm_train_cfg c = tiny_cfg();
    lm_train_report r;
    c.source = "words:irish,manx";
    assert_int_equal(lm_train(&c, a, be, &r, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "'manx' is held out"));
    c = tiny_cfg();
    c.stop_at = 2;
    assert_int_equal(lm_train(&c, a, be, &r, &e), 0);
    char ck[600];
    snprintf(ck, sizeof ck, "%s.ckpt", a);
    c.stop_at = 0;
    c.resume = ck;
    c.seed = 4;
    assert_int_equal(lm_train(&c, a, be, &r, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "--seed"));
    c.seed = 3;
    c.model.width = 32;
    assert_int_equal(lm_train(&c, a, be, &r, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "--width"));
    backend_destroy(be);
    tu_rmrf(dir);
    free(dir);
}

/* the command line: usage errors exit 2 naming the problem; a short run prints its figures */
static void test_cli(void **state)
{
    (void)state;
    char bin[512], cmd[2048], out[8192];
    tu_build_path(bin, sizeof bin, "d2nwg");
    char *dir = tu_tmpdir("lmcli");
    snprintf(cmd, sizeof cmd, "%s lm train --out %s/m.safetensors --source words:danish", bin,
             dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 2);
    assert_non_null(strstr(out, "'danish' is held out"));
    snprintf(cmd, sizeof cmd, "%s lm train --out %s/m.safetensors --width 30 --heads 4", bin,
             dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 2);
    assert_non_null(strstr(out, "heads (4) must divide width (30)"));
    snprintf(cmd, sizeof cmd, "%s lm eval --model %s/m.safetensors --source words:klingon", bin,
             dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 2);
    assert_non_null(strstr(out, "'klingon'"));
    snprintf(cmd, sizeof cmd, "%s --quiet lm train --out %s/m.safetensors --source words:irish "
             "--steps 5 --layers 1 --width 16 --heads 2 --context 16 --eval-words 20 "
             "--threads 1", bin, dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 0);
    assert_non_null(strstr(out, "1 languages, 5 steps"));
    snprintf(cmd, sizeof cmd, "%s --json lm eval --model %s/m.safetensors --source words:manx "
             "--max-words 30 --threads 1", bin, dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 0);
    assert_non_null(strstr(out, "\"language\":\"manx\""));
    snprintf(cmd, sizeof cmd, "%s lm eval --model %s/missing.safetensors --source words:manx",
             bin, dir);
    assert_int_equal(tu_capture(out, sizeof out, cmd), 1);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_same_bytes),
        cmocka_unit_test(test_file_layout_and_eval),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
