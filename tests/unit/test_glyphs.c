/* test_glyphs.c - the glyphs source: deterministic drawings that differ per
 * sample, pixel range and shape, the held-out split and its disjointness,
 * the sizes the benchmark promises, the IDX cache (reused, and rebuilt when
 * bad), bad selections, and the 28x28 digits. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <strings.h>
#include <sys/stat.h>

#include "data.h"
#include "glyph_internal.h"

static const char *const heldout_expected[] = {
    "Armenian", "Cherokee", "Ethiopic",  "Georgian", "Glagolitic", "Gujarati", "Gurmukhi",
    "Kannada",  "Malayalam", "Mongolian", "Ogham",   "Oriya",      "Runic",    "Sinhala",
    "Syriac",   "Tamil",    "Telugu",    "Thaana",   "Tifinagh",   "Vai"};
#define NHELD ((int)(sizeof heldout_expected / sizeof heldout_expected[0]))

typedef struct fixture {
    char *dir; /* the program's cache folder, shared by the tests that may share it */
} fixture;

static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->dir = tu_tmpdir("glyphs");
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    tu_rmrf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void options_in(glyph_options *o, const char *dir)
{
    glyph_options_default(o);
    snprintf(o->cache_dir, sizeof o->cache_dir, "%s", dir);
}

static void load_ok(data_source *s, const char *sel, const glyph_options *o)
{
    d2_error e = {0};
    int rc = glyph_source_load(s, sel, o, &e);
    if (rc)
        fail_msg("glyphs:%s: %s", sel, e.msg);
}

/* Run a load with stderr captured into text (cap bytes); returns its code. */
static int load_capturing(data_source *s, const char *sel, const glyph_options *o, char *text,
                          size_t cap, d2_error *e)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/stderr.txt", o->cache_dir);
    assert_true(mkdir(o->cache_dir, 0755) == 0 || errno == EEXIST);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, 2) >= 0);
    int rc = glyph_source_load(s, sel, o, e);
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    close(fd);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, cap - 1, f);
    text[n] = '\0';
    fclose(f);
    return rc;
}

static void test_same_seed_same_bytes(void **state)
{
    fixture *fx = *state;
    char a_dir[512], b_dir[512];
    snprintf(a_dir, sizeof a_dir, "%.400s/seed-a", fx->dir);
    snprintf(b_dir, sizeof b_dir, "%.400s/seed-b", fx->dir);
    glyph_options a, b;
    options_in(&a, a_dir);
    options_in(&b, b_dir); /* a separate folder: drawn again, not read back */
    data_source s1, s2, s3;
    load_ok(&s1, "Latin,Runic", &a);
    load_ok(&s2, "Latin,Runic", &b);
    assert_int_equal(s1.train.n, s2.train.n);
    assert_memory_equal(s1.train.x, s2.train.x, (size_t)s1.train.n * 784 * sizeof(float));
    assert_memory_equal(s1.test.x, s2.test.x, (size_t)s1.test.n * 784 * sizeof(float));
    char f1[65], f2[65], f3[65];
    dataset_fingerprint(&s1.train, f1);
    dataset_fingerprint(&s2.train, f2);
    assert_string_equal(f1, f2);
    b.seed = a.seed + 1;
    load_ok(&s3, "Latin,Runic", &b);
    assert_int_equal(s3.train.classes, s1.train.classes); /* classes never follow the seed */
    dataset_fingerprint(&s3.train, f3);
    assert_string_not_equal(f1, f3);
    data_source_free(&s1);
    data_source_free(&s2);
    data_source_free(&s3);
}

static double row_distance(const dataset *d, int i, int j)
{
    double acc = 0;
    for (int p = 0; p < d->dim; p++)
        acc += fabs(d->x[(size_t)i * d->dim + p] - d->x[(size_t)j * d->dim + p]);
    return acc / d->dim;
}

static void test_samples_differ_shape_range(void **state)
{
    fixture *fx = *state;
    glyph_options o;
    options_in(&o, fx->dir);
    data_source s;
    load_ok(&s, "Greek,Devanagari", &o);
    assert_int_equal(s.train.dim, GLYPH_SIDE * GLYPH_SIDE);
    assert_int_equal(s.test.dim, 784);
    assert_int_equal(s.train.n, s.train.classes * 16); /* 20 samples: 16 train, 4 test */
    assert_int_equal(s.test.n, s.test.classes * 4);
    assert_int_equal(s.test.classes, s.train.classes);
    for (int i = 0; i < s.train.n; i++) {
        float lo = 1, hi = 0;
        for (int p = 0; p < 784; p++) {
            float v = s.train.x[(size_t)i * 784 + p];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        assert_true(lo >= 0.0f && hi <= 1.0f);
        if (hi < 0.99f) /* every drawing reaches white */
            fail_msg("row %d: brightest pixel %.3f", i, hi);
        /* black background: the corners are dark */
        assert_true(s.train.x[(size_t)i * 784] < 0.05f);
    }
    /* rows of class 0 are its 16 training samples, all different */
    for (int i = 0; i < 16; i++) {
        assert_int_equal(s.train.y[i], 0);
        for (int j = 0; j < i; j++)
            if (row_distance(&s.train, i, j) < 0.01)
                fail_msg("samples %d and %d of class 0 are nearly the same", i, j);
    }
    /* and a sample is closer to its own class than to the next class, on average */
    double same = 0, other = 0;
    for (int i = 1; i < 16; i++) {
        same += row_distance(&s.train, 0, i);
        other += row_distance(&s.train, 0, 16 + i);
    }
    assert_true(same < other);
    data_source_free(&s);
}

static int in_list(const char *name, const char **list, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static void test_split_lists(void **state)
{
    (void)state;
    const char *held[256], *bg[256], *tr[256], *va[256];
    int nh = glyph_split_scripts(GLYPH_SPLIT_HELDOUT, held, 256);
    int nb = glyph_split_scripts(GLYPH_SPLIT_BACKGROUND, bg, 256);
    int nt = glyph_split_scripts(GLYPH_SPLIT_TRAIN, tr, 256);
    int nv = glyph_split_scripts(GLYPH_SPLIT_VALIDATION, va, 256);
    assert_int_equal(nh, NHELD);
    for (int i = 0; i < NHELD; i++) {
        const char *name = heldout_expected[i];
        if (!glyph_script_is_known(name))
            fail_msg("held-out script %s is not in the table", name);
        assert_true(glyph_script_is_heldout(name));
        assert_true(in_list(name, held, nh));
        assert_false(in_list(name, bg, nb));
        assert_false(in_list(name, tr, nt));
        assert_false(in_list(name, va, nv));
    }
    assert_true(glyph_script_is_heldout("armenian")); /* names are case-insensitive */
    assert_false(glyph_script_is_heldout("Latin"));
    assert_false(glyph_script_is_heldout("Klingon"));
    assert_false(glyph_script_is_known("Klingon"));
    /* background = every other script; train and validation partition it */
    assert_int_equal(nb + nh, glyph_table_size());
    assert_int_equal(nt + nv, nb);
    for (int i = 0; i < nb; i++) {
        assert_false(glyph_script_is_heldout(bg[i]));
        assert_int_equal(in_list(bg[i], tr, nt) + in_list(bg[i], va, nv), 1);
    }
    /* about a quarter of the background validates */
    assert_true(nv * 5 >= nb && nv * 3 <= nb);
    assert_true(glyph_table_size() >= 40);
    assert_int_equal(glyph_split_scripts(GLYPH_SPLIT_HELDOUT, NULL, 0), NHELD);
}

/* The table: ranges ascend without overlap, every font file exists. */
static void test_table(void **state)
{
    (void)state;
    assert_int_equal(glyph_table_size(), glyph_script_count);
    for (int i = 0; i < glyph_script_count; i++) {
        const glyph_script *s = &glyph_scripts[i];
        assert_string_equal(glyph_table_name(i), s->name);
        assert_true(glyph_script_find(s->name) == s);
        assert_true(s->nfonts >= 1 && s->nfonts <= GLYPH_MAX_FONTS && s->nranges >= 1);
        for (int r = 0; r < s->nranges; r++) {
            assert_true(s->ranges[r].first <= s->ranges[r].last);
            if (r > 0 && s->ranges[r].first <= s->ranges[r - 1].last)
                fail_msg("%s: range %d starts at U+%04X, before the end of the one before it",
                         s->name, r, s->ranges[r].first);
        }
        for (int f = 0; f < s->nfonts; f++) {
            char path[1200];
            snprintf(path, sizeof path, "%s/%s", GLYPH_FONT_DIR, s->fonts[f]);
            if (access(path, R_OK) != 0)
                fail_msg("%s: font %s is missing", s->name, path);
        }
        if (i > 0 && strcasecmp(glyph_scripts[i - 1].name, s->name) == 0)
            fail_msg("script %s twice", s->name);
    }
    assert_null(glyph_table_name(glyph_script_count));
    /* both styles where both exist: Latin, Hebrew, Tamil have Sans and Serif */
    assert_int_equal(glyph_script_find("Latin")->nfonts, 2);
    assert_int_equal(glyph_script_find("hebrew")->nfonts, 2);
    assert_int_equal(glyph_script_find("Tamil")->nfonts, 2);
}

static void test_heldout_and_train_sources(void **state)
{
    fixture *fx = *state;
    glyph_options o;
    options_in(&o, fx->dir);
    data_source held, train, bg;
    load_ok(&held, "heldout", &o);
    load_ok(&train, "train", &o);
    load_ok(&bg, "background", &o);
    assert_non_null(held.class_info);
    char seen[NHELD] = {0};
    for (int c = 0; c < held.train.classes; c++) {
        const char *sc = held.class_info[c].script;
        if (!glyph_script_is_heldout(sc))
            fail_msg("glyphs:heldout class %d is of script %s", c, sc);
        for (int i = 0; i < NHELD; i++)
            seen[i] |= strcmp(sc, heldout_expected[i]) == 0;
        if (c > 0 && strcmp(sc, held.class_info[c - 1].script) == 0)
            assert_true(held.class_info[c].codepoint > held.class_info[c - 1].codepoint);
    }
    for (int i = 0; i < NHELD; i++)
        if (!seen[i])
            fail_msg("glyphs:heldout has no class of %s", heldout_expected[i]);
    for (int c = 1; c < bg.train.classes; c++) /* each script's classes ascend */
        if (bg.class_info[c].script == bg.class_info[c - 1].script &&
            bg.class_info[c].codepoint <= bg.class_info[c - 1].codepoint)
            fail_msg("%s: U+%04X after U+%04X", bg.class_info[c].script,
                     bg.class_info[c].codepoint, bg.class_info[c - 1].codepoint);
    for (int c = 0; c < train.train.classes; c++)
        if (glyph_script_is_heldout(train.class_info[c].script))
            fail_msg("glyphs:train class %d is of held-out script %s", c,
                     train.class_info[c].script);
    /* every set drawn above reads back from the cache, silently */
    const data_source *first[2] = {&bg, &held};
    const char *names[2] = {"background", "heldout"};
    for (int k = 0; k < 2; k++) {
        data_source again;
        char text[4096], f1[65], f2[65];
        d2_error e = {0};
        assert_int_equal(load_capturing(&again, names[k], &o, text, sizeof text, &e), 0);
        if (text[0])
            fail_msg("reading glyphs:%s back said: %s", names[k], text);
        dataset_fingerprint(&first[k]->train, f1);
        dataset_fingerprint(&again.train, f2);
        assert_string_equal(f1, f2);
        data_source_free(&again);
    }
    /* the sizes the benchmark promises */
    int total = held.train.classes + bg.train.classes;
    fprintf(stderr, "# glyphs: %d scripts, %d classes (background %d, train %d, held out %d)\n",
            glyph_table_size(), total, bg.train.classes, train.train.classes,
            held.train.classes);
    assert_true(total >= 1500);
    assert_true(train.train.classes < bg.train.classes);
    assert_true(held.train.n >= held.train.classes * 16);
    data_source_free(&held);
    data_source_free(&train);
    data_source_free(&bg);
}

static void read_file(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    *len = (size_t)ftell(f);
    rewind(f);
    *buf = malloc(*len ? *len : 1);
    assert_non_null(*buf);
    assert_int_equal(fread(*buf, 1, *len, f), *len);
    fclose(f);
}

static void test_cache_reused(void **state)
{
    fixture *fx = *state;
    char dir[512];
    snprintf(dir, sizeof dir, "%.400s/reuse", fx->dir);
    glyph_options o;
    options_in(&o, dir);
    char images[1024], labels[1024], sum[1024], text[4096];
    d2_error e = {0};
    assert_int_equal(glyph_cache_paths(glyph_script_find("Ogham"), &o, images, labels, sum, &e), 0);
    data_source s1, s2;
    double t0 = d2_now();
    assert_int_equal(load_capturing(&s1, "Ogham", &o, text, sizeof text, &e), 0);
    double first = d2_now() - t0;
    assert_non_null(strstr(text, "glyphs: drew 1 script"));
    struct stat a, b;
    assert_int_equal(stat(images, &a), 0);
    assert_int_equal(a.st_size, 16 + (off_t)s1.train.classes * 20 * 784);
    t0 = d2_now();
    assert_int_equal(load_capturing(&s2, "Ogham", &o, text, sizeof text, &e), 0);
    double second = d2_now() - t0;
    assert_string_equal(text, ""); /* nothing drawn, nothing to say */
    assert_int_equal(stat(images, &b), 0);
    assert_true(a.st_ino == b.st_ino && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
                a.st_mtim.tv_nsec == b.st_mtim.tv_nsec);
    char f1[65], f2[65];
    dataset_fingerprint(&s1.train, f1);
    dataset_fingerprint(&s2.train, f2);
    assert_string_equal(f1, f2);
    assert_memory_equal(s1.class_info, s2.class_info, sizeof *s1.class_info * s1.train.classes);
    fprintf(stderr, "# Ogham drawn in %.3f s, read back in %.3f s\n", first, second);
    /* the key follows the sample count and the seed */
    char other[1024], l2[1024], s2p[1024];
    o.samples = 21;
    assert_int_equal(glyph_cache_paths(glyph_script_find("Ogham"), &o, other, l2, s2p, &e), 0);
    assert_string_not_equal(images, other);
    o.samples = 20;
    o.seed++;
    assert_int_equal(glyph_cache_paths(glyph_script_find("Ogham"), &o, other, l2, s2p, &e), 0);
    assert_string_not_equal(images, other);
    assert_non_null(strstr(images, "/glyphs/r"));
    data_source_free(&s1);
    data_source_free(&s2);
}

/* Spoil one cache file, load again: a message, the same drawings, a good cache. */
static void spoil_and_reload(const glyph_options *o, const char *path, long offset, int truncate,
                             const char *want_fp)
{
    unsigned char *buf;
    size_t len;
    read_file(path, &buf, &len);
    assert_true((size_t)offset < len);
    if (truncate)
        len = (size_t)offset;
    else
        buf[offset] ^= 0x5a;
    tu_write_bytes(path, buf, len);
    free(buf);
    data_source s;
    char text[4096];
    d2_error e = {0};
    assert_int_equal(load_capturing(&s, "Ogham", o, text, sizeof text, &e), 0);
    if (!strstr(text, "the cache of Ogham cannot be trusted"))
        fail_msg("no message for a spoiled %s; stderr: %s", path, text);
    char fp[65];
    dataset_fingerprint(&s.train, fp);
    assert_string_equal(fp, want_fp);
    data_source_free(&s);
    /* rebuilt: the next load reads it silently */
    assert_int_equal(load_capturing(&s, "Ogham", o, text, sizeof text, &e), 0);
    assert_string_equal(text, "");
    data_source_free(&s);
}

static void test_bad_cache_rebuilt(void **state)
{
    fixture *fx = *state;
    char dir[512];
    snprintf(dir, sizeof dir, "%.400s/spoil", fx->dir);
    glyph_options o;
    options_in(&o, dir);
    data_source s;
    load_ok(&s, "Ogham", &o);
    char fp[65];
    dataset_fingerprint(&s.train, fp);
    data_source_free(&s);
    char images[1024], labels[1024], sum[1024];
    d2_error e = {0};
    assert_int_equal(glyph_cache_paths(glyph_script_find("Ogham"), &o, images, labels, sum, &e), 0);
    spoil_and_reload(&o, images, 16 + 784 * 3 + 400, 0, fp); /* one pixel */
    spoil_and_reload(&o, images, 5, 0, fp);                  /* the header */
    spoil_and_reload(&o, labels, 100, 1, fp);                /* truncated labels */
    spoil_and_reload(&o, sum, 3, 0, fp);                     /* the checksum itself */
    /* a missing checksum file is not trusted either */
    assert_int_equal(unlink(sum), 0);
    char text[4096];
    assert_int_equal(load_capturing(&s, "Ogham", &o, text, sizeof text, &e), 0);
    assert_non_null(strstr(text, "cannot be trusted"));
    data_source_free(&s);
}

static void expect_bad(const char *spec, const char *want)
{
    data_source s;
    d2_error e = {0};
    int rc = data_source_load(&s, spec, &e);
    if (rc != D2_EINVAL || !strstr(e.msg, want))
        fail_msg("%s: rc %d, message \"%s\" (want \"%s\")", spec, rc, e.msg, want);
    assert_null(s.class_info);
    assert_null(s.train.x);
}

static void test_bad_selections(void **state)
{
    (void)state;
    expect_bad("glyphs:", "empty selection");
    expect_bad("glyphs:Klingon", "unknown script \"Klingon\"");
    expect_bad("glyphs:Latin,latin", "script Latin named twice");
    expect_bad("glyphs:Latin,,Greek", "expected background, train");
    expect_bad("glyphs:Latin,", "expected background, train");
    expect_bad("glyph:Latin", "unknown data source");
    glyph_options o;
    glyph_options_default(&o);
    o.samples = 1;
    data_source s;
    d2_error e = {0};
    assert_int_equal(glyph_source_load(&s, "Latin", &o, &e), D2_ERANGE);
    assert_non_null(strstr(e.msg, "1 samples per class"));
}

/* --source glyphs:... goes through data_source_load, caching under
 * $D2NWG_DATA_DIR. */
static void test_named_source(void **state)
{
    fixture *fx = *state;
    char dir[512];
    snprintf(dir, sizeof dir, "%.400s/env", fx->dir);
    assert_int_equal(setenv("D2NWG_DATA_DIR", dir, 1), 0);
    data_source s;
    d2_error e = {0};
    int rc = data_source_load(&s, "glyphs:Vai,Cherokee", &e);
    unsetenv("D2NWG_DATA_DIR");
    if (rc)
        fail_msg("%s", e.msg);
    assert_string_equal(s.name, "glyphs:Vai,Cherokee");
    /* table order, whatever the order named: Cherokee's classes come first */
    assert_string_equal(s.class_info[0].script, "Cherokee");
    assert_string_equal(s.class_info[s.train.classes - 1].script, "Vai");
    assert_true(s.class_info[0].codepoint >= 0x13A0 && s.class_info[0].codepoint <= 0xABBF);
    glyph_options o;
    options_in(&o, dir);
    char images[1024], labels[1024], sum[1024];
    assert_int_equal(glyph_cache_paths(glyph_script_find("Vai"), &o, images, labels, sum, &e), 0);
    assert_int_equal(access(images, R_OK), 0);
    data_source_free(&s);
}

static void test_digits_28(void **state)
{
    (void)state;
    data_source raw, s;
    d2_error e = {0};
    if (data_source_load(&raw, "digits", &e) || data_source_load(&s, "digits-28", &e))
        fail_msg("%s", e.msg);
    assert_int_equal(s.train.dim, 784);
    assert_int_equal(s.train.n, raw.train.n);
    assert_int_equal(s.test.n, raw.test.n);
    assert_int_equal(s.train.classes, 10);
    float hi = 0, lo = 1;
    for (size_t i = 0; i < (size_t)s.train.n * 784; i++) {
        hi = s.train.x[i] > hi ? s.train.x[i] : hi;
        lo = s.train.x[i] < lo ? s.train.x[i] : lo;
    }
    assert_true(lo >= 0.0f && hi <= 1.0f && hi > 0.9f);
    /* the image is the 8x8 one enlarged: its mean is the mean of the 8x8 / 16 */
    double m8 = 0, m28 = 0;
    for (int p = 0; p < 64; p++)
        m8 += raw.train.x[p] / 16.0 / 64;
    for (int p = 0; p < 784; p++)
        m28 += s.train.x[p] / 784.0;
    TU_ASSERT_NEAR(m28, m8, 0.03);
    assert_memory_equal(s.train.y, raw.train.y, (size_t)s.train.n * sizeof(int32_t));
    data_source_free(&raw);
    data_source_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_bytes),
        cmocka_unit_test(test_samples_differ_shape_range),
        cmocka_unit_test(test_split_lists),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_heldout_and_train_sources),
        cmocka_unit_test(test_cache_reused),
        cmocka_unit_test(test_bad_cache_rebuilt),
        cmocka_unit_test(test_bad_selections),
        cmocka_unit_test(test_named_source),
        cmocka_unit_test(test_digits_28),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
