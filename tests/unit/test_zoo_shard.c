/* test_zoo_shard.c - `zoo build --shard I/N` and `zoo merge`: the shards of a
 * build, merged in any order, give the zoo an unsharded build gives (the same
 * fingerprint and every file byte for byte, with and without a PCA feature
 * map); missing, repeated and mismatched shards are refused naming the shard
 * and the field; a shard is refused by the commands that load a zoo and
 * described by zoo info; a cnn:FILE zoo merges too. Runs the built d2nwg on iris
 * and digits (seconds). */
#include "testutil.h"
#include "tu_backbone.h"

#include <dirent.h>
#include <limits.h>
#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "backend.h"
#include "convnet.h"
#include "zoo.h"

typedef struct fx {
    char bin[PATH_MAX], dir[512];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    char rel[1024];
    tu_build_path(rel, sizeof rel, "d2nwg"); /* absolute: commands run in the temp folder */
    if (!realpath(rel, f->bin)) {
        fprintf(stderr, "%s: not built\n", rel);
        free(f);
        return -1;
    }
    char *d = tu_tmpdir("zoo_shard");
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

/* Run d2nwg with args (in f->dir); stdout and stderr to files; exit status. */
static int run(const fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(const fx *f, const char *fmt, ...)
{
    char args[2048], full[PATH_MAX + 2700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd %s && %s %s >stdout 2>stderr </dev/null", f->dir, f->bin,
             args);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp_path(const char *path, size_t *len)
{
    FILE *in = fopen(path, "rb");
    if (!in)
        fail_msg("cannot open %s", path);
    char *s = calloc(1, 1 << 22);
    assert_non_null(s);
    size_t n = fread(s, 1, (1 << 22) - 1, in);
    fclose(in);
    if (len)
        *len = n;
    return s;
}

static char *slurp(const fx *f, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    return slurp_path(path, NULL);
}

static json_t *stdout_json(const fx *f)
{
    char *s = slurp(f, "stdout");
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    if (!json_is_object(j))
        fail_msg("stdout is not a JSON object (%s): '%s'", je.text, s);
    free(s);
    return j;
}

/* stderr holds every one of the NULL-terminated words. */
static void stderr_has(const fx *f, ...)
{
    char *err = slurp(f, "stderr");
    va_list ap;
    va_start(ap, f);
    for (const char *w; (w = va_arg(ap, const char *));)
        if (!strstr(err, w))
            fail_msg("stderr lacks '%s': %s", w, err);
    va_end(ap);
    free(err);
}

/* Every file of a is in b with the same bytes, and b has no others; the count. */
static int same_files(const fx *f, const char *a, const char *b)
{
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/%s", f->dir, a);
    snprintf(pb, sizeof pb, "%s/%s", f->dir, b);
    int na = 0, nb = 0;
    DIR *d = opendir(pa);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char fa[1000], fb[1000];
        snprintf(fa, sizeof fa, "%s/%s", pa, de->d_name);
        snprintf(fb, sizeof fb, "%s/%s", pb, de->d_name);
        size_t la, lb;
        char *x = slurp_path(fa, &la), *y = slurp_path(fb, &lb);
        if (la != lb || memcmp(x, y, la))
            fail_msg("%s differs from %s (%zu and %zu bytes)", fa, fb, la, lb);
        free(x);
        free(y);
        na++;
    }
    closedir(d);
    assert_non_null(d = opendir(pb));
    for (struct dirent *de; (de = readdir(d));)
        nb += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(na, nb);
    return na;
}

static int exists(const fx *f, const char *name)
{
    char p[700];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    return stat(p, &st) == 0;
}

static const char *const IRIS = "zoo build --source iris --way 2 --tasks 12 --feature identity "
                                "--per-class 10 --heldout-frac 0.3 --seed 3 --quiet";

/* Build IRIS whole (whole/) and as 3 shards (s0, s1, s2). */
static void build_iris(const fx *f, char fp[65])
{
    assert_int_equal(run(f, "%s --out whole --json", IRIS), 0);
    json_t *j = stdout_json(f);
    snprintf(fp, 65, "%s", json_string_value(json_object_get(j, "fingerprint")));
    assert_true(json_is_null(json_object_get(j, "shard")));
    json_decref(j);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run(f, "%s --out s%d --shard %d/3 --json", IRIS, i, i), 0);
        j = stdout_json(f);
        json_t *sh = json_object_get(j, "shard");
        assert_int_equal(json_integer_value(json_object_get(sh, "index")), i);
        assert_int_equal(json_integer_value(json_object_get(sh, "of")), 3);
        assert_int_equal(json_integer_value(json_object_get(sh, "first")), 4 * i);
        assert_int_equal(json_integer_value(json_object_get(j, "heads")), 4);
        json_decref(j);
    }
}

static void test_merged_shards_equal_the_whole_build(void **state)
{
    fx *f = *state;
    char fp[65];
    build_iris(f, fp);
    assert_int_equal(strlen(fp), 64);
    /* any order */
    assert_int_equal(run(f, "zoo merge --out merged s2 s0 s1 --json"), 0);
    json_t *j = stdout_json(f);
    assert_string_equal(json_string_value(json_object_get(j, "fingerprint")), fp);
    assert_int_equal(json_integer_value(json_object_get(j, "heads")), 12);
    assert_int_equal(json_integer_value(json_object_get(j, "shards")), 3);
    json_decref(j);
    assert_int_equal(same_files(f, "whole", "merged"), 2); /* manifest + weights */
    /* the merged zoo loads as a whole zoo with the same fingerprint */
    zoo z;
    d2_error err = {0};
    char p[700];
    snprintf(p, sizeof p, "%s/merged", f->dir);
    assert_int_equal(zoo_load(&z, p, 0, &err), 0);
    assert_string_equal(z.fingerprint, fp);
    assert_int_equal(z.part.count, 0);
    zoo_free(&z);

    /* with a PCA feature map: feature_map.safetensors too */
    const char *pca = "zoo build --source digits --way 3 --tasks 7 --feature pca:8 "
                      "--per-class 20 --seed 5 --quiet";
    assert_int_equal(run(f, "%s --out pwhole", pca), 0);
    assert_int_equal(run(f, "%s --out p0 --shard 0/2", pca), 0);
    assert_int_equal(run(f, "%s --out p1 --shard 1/2", pca), 0);
    assert_int_equal(run(f, "zoo merge --out pmerged p1 p0"), 0);
    assert_int_equal(same_files(f, "pwhole", "pmerged"), 3);

    /* more tasks than one weights file holds (1000 rows): shards of 1050 rows
     * (two files each) merge into weights-0000..0002 as the whole build's */
    const char *big = "zoo build --source iris --way 2 --tasks 2100 --feature identity "
                      "--per-class 10 --epochs 2 --min-steps 0 --quiet";
    assert_int_equal(run(f, "%s --out bwhole", big), 0);
    assert_int_equal(run(f, "%s --out b0 --shard 0/2", big), 0);
    assert_int_equal(run(f, "%s --out b1 --shard 1/2", big), 0);
    assert_int_equal(run(f, "zoo merge --out bmerged b0 b1"), 0);
    assert_int_equal(same_files(f, "bwhole", "bmerged"), 4);
}

static void test_a_shard_is_not_a_zoo(void **state)
{
    fx *f = *state;
    /* s1 from the test above */
    assert_int_equal(run(f, "train --zoo s1 --out g.safetensors --quick"), 1);
    stderr_has(f, "s1", "a shard of a zoo build", "shard 1 of 3", "zoo merge", NULL);
    assert_int_equal(run(f, "zoo info s1 --json"), 0);
    json_t *j = stdout_json(f);
    json_t *sh = json_object_get(j, "shard");
    assert_int_equal(json_integer_value(json_object_get(sh, "index")), 1);
    assert_int_equal(json_integer_value(json_object_get(sh, "rows")), 4);
    assert_int_equal(json_integer_value(json_object_get(sh, "tasks")), 12);
    assert_int_equal(json_integer_value(json_object_get(j, "tasks")), 4);
    json_decref(j);
    assert_int_equal(run(f, "zoo info whole --json"), 0);
    j = stdout_json(f);
    assert_true(json_is_null(json_object_get(j, "shard")));
    json_decref(j);
    /* usage errors */
    assert_int_equal(run(f, "%s --out bad --shard 3/3", IRIS), 2);
    stderr_has(f, "--shard", NULL);
    assert_int_equal(run(f, "%s --out bad --shard 1of3", IRIS), 2);
    assert_int_equal(run(f, "zoo merge --out bad"), 2);
    assert_false(exists(f, "bad"));
}

static void test_merge_refusals(void **state)
{
    fx *f = *state;
    assert_int_equal(run(f, "zoo merge --out m1 s0 s1"), 1);
    stderr_has(f, "shard 2 of 3", "missing", NULL);
    assert_int_equal(run(f, "zoo merge --out m1 s0 s1 s1 s2"), 1);
    stderr_has(f, "s1 and s1", "shard.index", NULL);
    assert_int_equal(run(f, "%s --seed 4 --out x1 --shard 1/3", IRIS), 0);
    assert_int_equal(run(f, "zoo merge --out m1 s0 x1 s2"), 1);
    stderr_has(f, "x1 (shard 1 of 3)", "seed 4", NULL);
    assert_int_equal(run(f, "zoo build --source wine --way 2 --tasks 12 --feature identity "
                            "--per-class 10 --heldout-frac 0.3 --seed 3 --quiet --out w2 "
                            "--shard 2/3"), 0);
    assert_int_equal(run(f, "zoo merge --out m1 s0 s1 w2"), 1);
    stderr_has(f, "w2 (shard 2 of 3)", "source 'wine'", NULL);
    assert_int_equal(run(f, "%s --out y1 --shard 1/4", IRIS), 0);
    assert_int_equal(run(f, "zoo merge --out m1 s0 y1 s2"), 1);
    stderr_has(f, "y1", "shard.of 4", NULL);
    assert_int_equal(run(f, "zoo merge --out m1 s0 s1 whole"), 1);
    stderr_has(f, "whole", "not a shard", NULL);
    assert_int_equal(run(f, "zoo merge --out m1 s0 s1 nowhere"), 1);
    stderr_has(f, "nowhere/manifest.json", NULL);
    assert_false(exists(f, "m1"));
    /* --out must be new (or empty): an existing zoo is not overwritten */
    assert_int_equal(run(f, "zoo merge --out whole s0 s1 s2"), 1);
    stderr_has(f, "not empty", NULL);
    char empty[700];
    snprintf(empty, sizeof empty, "%s/empty", f->dir);
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_int_equal(run(f, "zoo merge --out empty/ s0 s1 s2"), 0);
    assert_int_equal(same_files(f, "whole", "empty"), 2);
}

/* A small Conv backbone for 8x8 images (digits) at path. */
static void write_backbone(const char *path)
{
    tu_backbone b = {.size = 8, .channels = 4, .blocks = 2, .classes = 3, .seed = 9,
                     .batches = 3, .perturb = 1};
    tu_write_backbone(path, &b);
}

/* cnn:FILE zoos (a backbone as the feature map): the shards merge into the
 * whole build's files too; the backbone is named by the spec, not copied. */
static void test_cnn_feature_map_shards(void **state)
{
    fx *f = *state;
    char bb[700];
    snprintf(bb, sizeof bb, "%s/bb.safetensors", f->dir);
    write_backbone(bb);
    char cnn[1024];
    snprintf(cnn, sizeof cnn, "zoo build --source digits --way 3 --tasks 9 --feature cnn:%s "
             "--per-class 10 --seed 2 --quiet", bb);
    assert_int_equal(run(f, "%s --out cwhole", cnn), 0);
    assert_int_equal(run(f, "%s --out c0 --shard 0/2", cnn), 0);
    assert_int_equal(run(f, "%s --out c1 --shard 1/2", cnn), 0);
    assert_int_equal(run(f, "zoo merge --out cmerged c1 c0"), 0);
    assert_int_equal(same_files(f, "cwhole", "cmerged"), 2);
}

static void test_shard_ranges_cover_every_task_once(void **state)
{
    (void)state;
    int cases[][2] = {{12, 3}, {7, 2}, {10, 10}, {1000003, 7}, {5, 1}, {10000000, 9999}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int T = cases[c][0], N = cases[c][1], next = 0;
        for (int i = 0; i < N; i++) {
            int first, rows;
            zoo_shard_range(T, i, N, &first, &rows);
            assert_int_equal(first, next);
            assert_true(rows >= T / N && rows <= T / N + 1);
            next = first + rows;
        }
        assert_int_equal(next, T);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_ranges_cover_every_task_once),
        cmocka_unit_test(test_merged_shards_equal_the_whole_build),
        cmocka_unit_test(test_a_shard_is_not_a_zoo),
        cmocka_unit_test(test_merge_refusals),
        cmocka_unit_test(test_cnn_feature_map_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
