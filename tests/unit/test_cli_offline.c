/* test_cli_offline.c - the offline commands as a user runs them (the built
 * d2nwg binary on the shared quick fixture): generate (formats, --all, bad
 * support sets and their exit codes), info, sample, eval --json, and train's
 * usage errors. */
#include "fileio.h"
#include "testutil.h"

#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "data.h"
#include "generator.h"
#include "safetensors.h"

typedef struct fx {
    char bin[1024], gen[1024], zoo[1024], dir[512];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char build[480];
    if (tu_quick_fixture(build, sizeof build, f->gen, sizeof f->gen, f->zoo, sizeof f->zoo))
        return -1;
    snprintf(f->bin, sizeof f->bin, "%s/d2nwg", build);
    char *d = tu_tmpdir("cli");
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

/* Run a shell command; returns the exit status and the combined output. */
static int run(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t n, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return tu_capture(out, n, cmd);
}

static void test_generate_formats_and_all(void **state)
{
    fx *f = *state;
    char out[16384];
    // a support set as CSV and as safetensors: the same bytes out
    assert_int_equal(run(out, sizeof out, "%s sample --shots 3 --seed 4 --out %s/s.csv", f->bin,
                         f->dir), 0);
    assert_int_equal(run(out, sizeof out, "%s sample --shots 3 --seed 4 --out %s/s.safetensors",
                         f->bin, f->dir), 0);
    assert_int_equal(run(out, sizeof out,
                         "%s generate --generator %s --support %s/s.csv --out %s/a.safetensors "
                         "--candidates 3 --steps 10 --all %s/all",
                         f->bin, f->gen, f->dir, f->dir, f->dir), 0);
    assert_non_null(strstr(out, "| rank | method "));
    assert_non_null(strstr(out, "nearest zoo"));
    assert_non_null(strstr(out, "gate: "));
    // the table's first row names the method the written file's metadata says
    char first[32] = "";
    const char *row = strstr(out, "|    1 | ");
    assert_non_null(row);
    assert_int_equal(sscanf(row, "|    1 | %31s", first), 1);
    assert_int_equal(run(out, sizeof out,
                         "%s generate --generator %s --support %s/s.safetensors --out "
                         "%s/b.safetensors --candidates 3 --steps 10 --quiet",
                         f->bin, f->gen, f->dir, f->dir), 0);
    assert_string_equal(out, "");
    assert_int_equal(run(out, sizeof out, "cmp %s/a.safetensors %s/b.safetensors", f->dir, f->dir), 0);
    // --all holds every ranked entry, the best first (rank 1 is --out): the 3
    // candidates and, the gate being on, the 2 baselines, each saying its method
    assert_int_equal(run(out, sizeof out, "cmp %s/a.safetensors %s/all/rank-01.safetensors",
                         f->dir, f->dir), 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/all/rank-05.safetensors", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/all/rank-06.safetensors", f->dir);
    assert_int_not_equal(stat(path, &st), 0);
    st_file sf;
    d2_error err;
    int methods[GEN_METHODS] = {0};
    for (int k = 1; k <= 5; k++) {
        snprintf(path, sizeof path, "%s/all/rank-%02d.safetensors", f->dir, k);
        assert_int_equal(st_load(&sf, path, &err), 0);
        const char *m = st_meta(&sf, "d2nwg.method");
        assert_non_null(m);
        if (k == 1)
            assert_string_equal(m, first);
        for (int g = 0; g < GEN_METHODS; g++)
            methods[g] += !strcmp(m, gen_method_name((gen_method)g));
        st_free(&sf);
    }
    assert_int_equal(methods[GEN_METHOD_DIFFUSION], 3);
    assert_int_equal(methods[GEN_METHOD_PROTOTYPES], 1);
    assert_int_equal(methods[GEN_METHOD_LOGREG], 1);
    // --no-gate: the 3 diffusion candidates alone
    assert_int_equal(run(out, sizeof out,
                         "%s generate --generator %s --support %s/s.csv --out %s/n.safetensors "
                         "--candidates 3 --steps 10 --all %s/nogate --no-gate",
                         f->bin, f->gen, f->dir, f->dir, f->dir), 0);
    assert_non_null(strstr(out, "gate: off"));
    assert_null(strstr(out, "prototypes"));
    snprintf(path, sizeof path, "%s/nogate/rank-04.safetensors", f->dir);
    assert_int_not_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/nogate/rank-03.safetensors", f->dir);
    assert_int_equal(st_load(&sf, path, &err), 0);
    assert_string_equal(st_meta(&sf, "d2nwg.method"), "diffusion");
    st_free(&sf);
    snprintf(path, sizeof path, "%s/all/rank-02.safetensors", f->dir);
    assert_int_equal(st_load(&sf, path, &err), 0);
    assert_string_equal(st_meta(&sf, "d2nwg.rank"), "1");
    assert_string_equal(st_meta(&sf, "d2nwg.steps"), "10");
    st_free(&sf);
    // another seed: other weights
    assert_int_equal(run(out, sizeof out,
                         "%s generate --generator %s --support %s/s.csv --out %s/c.safetensors "
                         "--candidates 3 --steps 10 --seed 2 --quiet",
                         f->bin, f->gen, f->dir, f->dir), 0);
    assert_int_not_equal(run(out, sizeof out, "cmp -s %s/a.safetensors %s/c.safetensors", f->dir,
                             f->dir), 0);
}

/* A support set far from every zoo task (embeddings with 30 times the unit
 * scale): the table warns that it is out of the zoo's distribution. */
static void test_generate_warns_out_of_distribution(void **state)
{
    fx *f = *state;
    enum { N = 10, D = 128 };
    float x[N * D];
    int32_t y[N];
    rng r;
    rng_init(&r, 9, 0);
    for (int i = 0; i < N; i++) {
        y[i] = i % 5;
        for (int j = 0; j < D; j++)
            x[i * D + j] = 30.0f * rng_normal(&r);
    }
    st_writer w;
    st_writer_init(&w);
    d2_error err;
    int64_t xs[2] = {N, D}, ys[1] = {N};
    char path[1024], out[16384];
    snprintf(path, sizeof path, "%s/far.safetensors", f->dir);
    assert_int_equal(st_writer_add_f32(&w, "x", 2, xs, x, &err), 0);
    assert_int_equal(st_writer_add(&w, "y", ST_I32, 1, ys, y, sizeof y, &err), 0);
    assert_int_equal(st_writer_save(&w, path, &err), 0);
    st_writer_free(&w);
    assert_int_equal(run(out, sizeof out,
                         "%s generate --generator %s --support %s --embeddings --out "
                         "%s/far-head.safetensors --candidates 2 --steps 5",
                         f->bin, f->gen, path, f->dir), 0);
    assert_non_null(strstr(out, "warning: the support set is out of the zoo's distribution"));
    assert_non_null(strstr(out, "2-fold cross-validation"));
}

static void write_text(const char *path, const char *text)
{
    tu_write_bytes(path, text, strlen(text));
}

static void test_generate_refuses_bad_support(void **state)
{
    fx *f = *state;
    char out[16384], path[1024];
    // wrong dimension: 3 features
    snprintf(path, sizeof path, "%s/narrow.csv", f->dir);
    write_text(path, "label,a,b,c\n0,1,2,3\n1,1,2,3\n2,1,2,3\n3,1,2,3\n4,1,2,3\n");
    assert_int_equal(run(out, sizeof out, "%s generate --generator %s --support %s --out %s/x.st",
                         f->bin, f->gen, path, f->dir), 1);
    assert_non_null(strstr(out, "d2nwg generate:"));
    assert_non_null(strstr(out, "784"));
    // a ragged row: the reader names the line
    snprintf(path, sizeof path, "%s/ragged.csv", f->dir);
    write_text(path, "label,a,b\n0,1,2\n1,1\n");
    assert_int_equal(run(out, sizeof out, "%s generate --generator %s --support %s --out %s/x.st",
                         f->bin, f->gen, path, f->dir), 1);
    assert_non_null(strstr(out, "line 3"));
    // a class without a sample (labels 0,1,2,3,5): the message names class 4
    assert_int_equal(run(out, sizeof out, "%s sample --shots 1 --classes 0,1,2,3,4,5 --out %s/six.csv",
                         f->bin, f->dir), 0);
    snprintf(path, sizeof path, "%s/six.csv", f->dir);
    assert_int_equal(run(out, sizeof out,
                         "%s generate --generator %s --support %s --out %s/x.st", f->bin, f->gen,
                         path, f->dir), 1);
    assert_non_null(strstr(out, "6 classes"));
    // nothing was written for the refused requests
    snprintf(path, sizeof path, "%s/x.st", f->dir);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    // usage errors exit 2
    assert_int_equal(run(out, sizeof out, "%s generate --generator %s", f->bin, f->gen), 2);
    assert_non_null(strstr(out, "required"));
    assert_int_equal(run(out, sizeof out, "%s generate --generator %s --support a --out b "
                         "--sampler euler", f->bin, f->gen), 2);
    assert_int_equal(run(out, sizeof out, "%s generate --candidates zero", f->bin), 2);
    assert_int_equal(run(out, sizeof out, "%s train --zoo %s", f->bin, f->zoo), 2);
    assert_int_equal(run(out, sizeof out, "%s frobnicate", f->bin), 2);
    // a missing generator file exits 1 with its name
    assert_int_equal(run(out, sizeof out, "%s info %s/none.safetensors", f->bin, f->dir), 1);
    assert_non_null(strstr(out, "none.safetensors"));
}

static void test_info_and_eval_json(void **state)
{
    fx *f = *state;
    static char out[1 << 16];
    assert_int_equal(run(out, sizeof out, "%s info %s --json", f->bin, f->gen), 0);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "spec")), "pca:128 | linear 128->5");
    assert_int_equal(json_integer_value(json_object_get(o, "way")), 5);
    assert_int_equal(json_integer_value(json_object_get(o, "zoo_size")), 2000);
    assert_true(json_is_object(json_object_get(o, "provenance")));
    json_decref(o);
    assert_int_equal(run(out, sizeof out,
                         "%s eval --generator %s --zoo %s --tasks 4 --shots 2 --candidates 2 "
                         "--steps 10 --json --plot %s/ft.svg",
                         f->bin, f->gen, f->zoo, f->dir), 0);
    o = json_loads(out, 0, &je);
    if (!o)
        fail_msg("eval --json did not print JSON: %s", out);
    json_t *m = json_object_get(o, "methods");
    const char *keys[] = {"random",      "prototypes",  "logreg", "d2nwg_mean", "d2nwg_best",
                          "d2nwg_gated", "zoo_nearest", "oracle"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(json_object_get(m, keys[i]), "2");
        assert_non_null(v);
        double mean = json_real_value(json_object_get(v, "mean"));
        assert_true(mean >= 0.0 && mean <= 1.0);
    }
    // the oracle beats a random head, and the generated head too
    double oracle = json_real_value(json_object_get(json_object_get(json_object_get(m, "oracle"), "2"), "mean"));
    double best = json_real_value(json_object_get(json_object_get(json_object_get(m, "d2nwg_best"), "2"), "mean"));
    double rnd = json_real_value(json_object_get(json_object_get(json_object_get(m, "random"), "2"), "mean"));
    assert_true(oracle > rnd + 0.3);
    assert_true(best > rnd + 0.2);
    // what the gate returned, 4 tasks in all; paired differences with intervals
    json_t *chose = json_object_get(json_object_get(o, "gate_chose"), "2");
    json_int_t returned = 0;
    const char *methods[] = {"diffusion", "prototypes", "logreg"};
    for (int i = 0; i < 3; i++)
        returned += json_integer_value(json_object_get(chose, methods[i]));
    assert_int_equal(returned, 4);
    json_t *diff = json_object_get(json_object_get(o, "paired_differences"),
                                   "d2nwg_best-prototypes");
    assert_true(json_is_number(json_object_get(json_object_get(diff, "2"), "ci95")));
    // fine-tuning on the support set and on a larger set of the same classes
    json_t *ft = json_object_get(o, "finetune");
    for (int d = 0; d < 2; d++) {
        json_t *set = json_object_get(ft, d ? "larger" : "support");
        assert_int_equal(json_array_size(json_object_get(json_object_get(set, "2"), "generated")),
                         5);
        assert_int_equal(json_array_size(json_object_get(json_object_get(set, "2"), "random")), 5);
    }
    json_decref(o);
    char path[1024];
    snprintf(path, sizeof path, "%s/ft.svg", f->dir);
    unsigned char *svg;
    size_t len;
    d2_error err;
    assert_int_equal(d2_read_file(path, &svg, &len, 0, &err), 0);
    assert_non_null(strstr((char *)svg, "<svg"));
    assert_non_null(strstr((char *)svg, "generated, 2-shot"));
    free(svg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_formats_and_all),
        cmocka_unit_test(test_generate_refuses_bad_support),
        cmocka_unit_test(test_generate_warns_out_of_distribution),
        cmocka_unit_test(test_info_and_eval_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
