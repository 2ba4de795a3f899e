/* test_cli_json.c - `--json` of the offline commands that print an answer
 * (generate, sample, train, zoo build, zoo import): exactly one JSON object
 * on stdout, progress on stderr; zoo import of F16 and F32 copies of one
 * checkpoint; its exit code on rejected lines (--skip-bad); and the one rule
 * for a missing input file (exit 1, generate and sample alike). Runs the
 * built d2nwg on the shared quick fixture. */
#include "testutil.h"

#include <jansson.h>
#include <sys/wait.h>

#include "safetensors.h"

typedef struct fx {
    char bin[1024], gen[1024], zoo[1024], dir[512];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char build[480];
    if (!f || tu_quick_fixture(build, sizeof build, f->gen, sizeof f->gen, f->zoo, sizeof f->zoo))
        return -1;
    snprintf(f->bin, sizeof f->bin, "%s/d2nwg", build);
    char *d = tu_tmpdir("cli_json");
    snprintf(f->dir, sizeof f->dir, "%s", d);
    free(d);
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

/* Run cmd with stdout to DIR/stdout and stderr to DIR/stderr; exit status. */
static int run(const fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(const fx *f, const char *fmt, ...)
{
    char cmd[4096], full[5200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s >%s/stdout 2>%s/stderr </dev/null", cmd, f->dir, f->dir);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const fx *f, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    char *s = calloc(1, 1 << 20);
    assert_non_null(s);
    size_t n = fread(s, 1, (1 << 20) - 1, in);
    s[n] = '\0';
    fclose(in);
    return s;
}

/* stdout must be one JSON object on one line; returned (caller decrefs). */
static json_t *stdout_json(const fx *f)
{
    char *s = slurp(f, "stdout");
    size_t n = strlen(s);
    if (n == 0 || s[n - 1] != '\n' || strchr(s, '\n') != s + n - 1)
        fail_msg("stdout is not one line: '%s'", s);
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    if (!json_is_object(j))
        fail_msg("stdout is not a JSON object (%s): '%s'", je.text, s);
    free(s);
    return j;
}

static void test_sample_and_generate(void **state)
{
    fx *f = *state;
    assert_int_equal(run(f, "%s sample --shots 2 --seed 3 --out %s/s.safetensors --json", f->bin,
                         f->dir), 0);
    json_t *j = stdout_json(f);
    assert_int_equal(json_integer_value(json_object_get(j, "rows")), 10);
    assert_int_equal(json_integer_value(json_object_get(j, "dim")), 784);
    assert_string_equal(json_string_value(json_object_get(j, "format")), "safetensors");
    assert_int_equal(json_array_size(json_object_get(j, "classes")), 5);
    json_decref(j);
    char *err = slurp(f, "stderr");
    assert_non_null(strstr(err, "wrote")); /* the message stays on stderr */
    free(err);

    assert_int_equal(run(f, "%s --json generate --generator %s --support %s/s.safetensors "
                            "--out %s/g.safetensors --candidates 3 --steps 5",
                         f->bin, f->gen, f->dir, f->dir), 0);
    j = stdout_json(f);
    /* with the gate: the 3 diffusion candidates and the 2 baselines, ranked */
    json_t *c = json_object_get(j, "candidates");
    assert_int_equal(json_array_size(c), 5);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(c, 0), "rank")), 1);
    int diffusion = 0, baselines = 0;
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *e = json_array_get(c, k);
        const char *m = json_string_value(json_object_get(e, "method"));
        assert_non_null(m);
        int is_diffusion = strcmp(m, "diffusion") == 0;
        diffusion += is_diffusion;
        baselines += !is_diffusion;
        /* a baseline is no sampled candidate: its index is null */
        assert_int_equal(json_is_null(json_object_get(e, "candidate")), !is_diffusion);
    }
    assert_int_equal(diffusion, 3);
    assert_int_equal(baselines, 2);
    json_t *gate = json_object_get(j, "gate");
    assert_true(json_is_true(json_object_get(gate, "applied")));
    const char *chosen = json_string_value(json_object_get(gate, "chosen"));
    const char *first = json_string_value(json_object_get(json_array_get(c, 0), "method"));
    assert_non_null(chosen);
    assert_string_equal(chosen, first); /* rank 1 is what the gate chose */
    assert_true(json_is_array(json_object_get(j, "warnings")));
    assert_true(json_is_true(json_object_get(j, "refine"))); /* the default */
    assert_int_equal(json_integer_value(json_object_get(j, "steps")), 5);
    assert_int_equal(json_integer_value(json_object_get(j, "support_rows")), 10);
    assert_string_equal(json_string_value(json_object_get(j, "sampler")), "ddim");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "generator"))), 64);
    assert_true(json_is_null(json_object_get(j, "all")));
    json_decref(j);

    /* --no-gate: the diffusion candidates alone, best support accuracy first */
    assert_int_equal(run(f, "%s --json generate --generator %s --support %s/s.safetensors "
                            "--out %s/g.safetensors --candidates 3 --steps 5 --no-gate "
                            "--no-refine",
                         f->bin, f->gen, f->dir, f->dir), 0);
    j = stdout_json(f);
    c = json_object_get(j, "candidates");
    assert_int_equal(json_array_size(c), 3);
    double a0 = json_number_value(json_object_get(json_array_get(c, 0), "support_acc"));
    double a2 = json_number_value(json_object_get(json_array_get(c, 2), "support_acc"));
    assert_true(a0 >= a2 && a0 >= 0.0 && a0 <= 1.0);
    assert_false(json_is_true(json_object_get(json_object_get(j, "gate"), "applied")));
    assert_true(json_is_false(json_object_get(j, "refine")));
    /* unrefined, a candidate's support accuracy is its sample's */
    json_t *c0 = json_array_get(c, 0);
    assert_true(json_number_value(json_object_get(c0, "support_acc")) ==
                json_number_value(json_object_get(c0, "sample_support_acc")));
    json_decref(j);
}

static void test_a_missing_input_file_exits_1(void **state)
{
    fx *f = *state;
    assert_int_equal(run(f, "%s generate --generator %s --support %s/none.csv --out %s/x.st",
                         f->bin, f->gen, f->dir, f->dir), 1);
    char *err = slurp(f, "stderr");
    assert_non_null(strstr(err, "none.csv"));
    free(err);
    assert_int_equal(run(f, "%s generate --generator %s/none.st --support %s/s.safetensors "
                            "--out %s/x.st", f->bin, f->dir, f->dir, f->dir), 1);
    /* a usage error stays 2 */
    assert_int_equal(run(f, "%s generate --generator %s --support %s/s.safetensors", f->bin,
                         f->gen, f->dir), 2);
}

static void test_zoo_build_and_train(void **state)
{
    fx *f = *state;
    /* --feature takes cnn:FILE: a missing backbone is a failure naming the file
     * (exit 1), an unknown kind a usage error (exit 2) */
    assert_int_equal(run(f, "%s zoo build --source iris --way 2 --tasks 2 --feature "
                            "cnn:%s/none.safetensors --out %s/cz", f->bin, f->dir, f->dir), 1);
    char *err = slurp(f, "stderr");
    assert_non_null(strstr(err, "none.safetensors"));
    free(err);
    assert_int_equal(run(f, "%s zoo build --source iris --way 2 --tasks 2 --feature cnx:1 "
                            "--out %s/cz", f->bin, f->dir), 2);
    err = slurp(f, "stderr");
    assert_non_null(strstr(err, "cnn:FILE"));
    free(err);
    assert_int_equal(run(f, "%s zoo build --source iris --way 2 --tasks 6 --feature identity "
                            "--per-class 10 --heldout-frac 0.3 --seed 2 --out %s/iz --json",
                         f->bin, f->dir), 0);
    json_t *j = stdout_json(f);
    assert_int_equal(json_integer_value(json_object_get(j, "heads")), 6);
    assert_string_equal(json_string_value(json_object_get(j, "source")), "iris");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "fingerprint"))), 64);
    double mean = json_number_value(json_object_get(json_object_get(j, "accuracy"), "mean"));
    assert_true(mean > 0.5 && mean <= 1.0);
    json_decref(j);
    assert_int_equal(run(f, "%s train --zoo %s/iz --out %s/ig.safetensors --quick --vae-steps 3 "
                            "--steps 3 --align 0 --json", f->bin, f->dir, f->dir), 0);
    j = stdout_json(f);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "vae"), "steps")), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "diffusion"), "steps")), 3);
    assert_true(json_is_false(json_object_get(j, "stopped")));
    json_decref(j);
}

/* The F16 copy of a checkpoint file. */
static void f16_copy(const char *from, const char *to)
{
    st_file in;
    d2_error e = {0};
    assert_int_equal(st_load(&in, from, &e), 0);
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < in.count; i++) {
        const st_tensor *t = &in.tensors[i];
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
    st_free(&in);
}

static const char *const SPEC = "pca:128 | linear 128->5"; /* the quick generator's */

static void test_zoo_import_mixed_dtypes_and_rejections(void **state)
{
    fx *f = *state;
    char a[700], b[700], mf[700], text[2048];
    snprintf(a, sizeof a, "%s/g.safetensors", f->dir); /* test_sample_and_generate's */
    snprintf(b, sizeof b, "%s/g16.safetensors", f->dir);
    f16_copy(a, b);
    snprintf(mf, sizeof mf, "%s/m.jsonl", f->dir);
    int n = 0;
    for (int i = 0; i < 4; i++)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "{\"weights\": \"%s\", \"dataset\": \"s.safetensors\"}\n",
                      i % 2 ? "g16.safetensors" : "g.safetensors");
    tu_write_bytes(mf, text, (size_t)n);
    assert_int_equal(run(f, "%s zoo import --manifest %s --out %s/mz --spec '%s' --json", f->bin, mf,
                         f->dir, SPEC),
                     0);
    json_t *j = stdout_json(f);
    assert_int_equal(json_integer_value(json_object_get(j, "imported")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "rejected")), 0);
    json_decref(j);
    /* one bad line: exit 1 and nothing written, unless --skip-bad */
    n += snprintf(text + n, sizeof text - (size_t)n,
                  "{\"weights\": \"missing.safetensors\", \"dataset\": \"s.safetensors\"}\n");
    tu_write_bytes(mf, text, (size_t)n);
    assert_int_equal(run(f, "%s zoo import --manifest %s --out %s/mz2 --spec '%s' --json", f->bin,
                         mf, f->dir, SPEC), 1);
    j = stdout_json(f);
    assert_int_equal(json_integer_value(json_object_get(j, "rejected")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(
                         json_object_get(j, "rejects"), 0), "line")), 5);
    assert_true(json_is_null(json_object_get(j, "zoo")));
    json_decref(j);
    char *err = slurp(f, "stderr");
    assert_non_null(strstr(err, "--skip-bad"));
    free(err);
    assert_int_equal(run(f, "%s zoo import --manifest %s --out %s/mz2 --spec '%s' --skip-bad", f->bin,
                         mf, f->dir, SPEC), 0);
    char *out = slurp(f, "stdout");
    assert_non_null(strstr(out, "imported 4, rejected 1"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_and_generate),
        cmocka_unit_test(test_a_missing_input_file_exits_1),
        cmocka_unit_test(test_zoo_build_and_train),
        cmocka_unit_test(test_zoo_import_mixed_dtypes_and_rejections),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
