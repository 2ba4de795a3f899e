/* test_zoo.c - zoo build on real Fashion-MNIST (20 small tasks, pca:16):
 * thread count independence, held-out combinations, save/load round trip and
 * fingerprint, corrupt files named, task data access; combination helpers;
 * import with a manifest mixing good and bad lines; a CSV source; and the
 * `d2nwg zoo` command line (info --json keys, usage errors, import report). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "safetensors.h"
#include "zoo.h"
#include "zoo_internal.h"

typedef struct fixture {
    zoo z;       /* built with 1 thread */
    char *dir;   /* temporary directory */
    char zdir[512];
} fixture;

static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    zoo_build_cfg c = zoo_build_defaults();
    c.feature = "pca:16";
    c.tasks = 20;
    c.per_class = 50;
    c.seed = 5;
    d2_error e = {0};
    double t0 = d2_now();
    if (zoo_prepare(&fx->z, &c, &e) || zoo_train_entries(&fx->z, 1, 0, &e)) {
        fprintf(stderr, "zoo build: %s\n", e.msg);
        free(fx);
        return -1;
    }
    fprintf(stderr, "# 20-task fashion-mnist zoo built in %.2f s\n", d2_now() - t0);
    fx->dir = tu_tmpdir("zoo");
    snprintf(fx->zdir, sizeof fx->zdir, "%s/zoo", fx->dir);
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    zoo_free(&fx->z);
    tu_rmrf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void test_build_basics(void **state)
{
    fixture *fx = *state;
    zoo *z = &fx->z;
    assert_int_equal(z->n, 20);
    assert_int_equal(z->way, 5);
    assert_int_equal(z->P, 85);
    assert_string_equal(z->spec.text, "pca:16 | linear 16->5");
    assert_string_equal(z->source, "fashion-mnist");
    assert_int_equal(z->fmap.in_dim, 784);
    assert_int_equal(z->fmap.out_dim, 16);
    assert_int_equal(z->train_feat.n, 60000);
    assert_int_equal(z->test_feat.n, 10000);
    assert_int_equal(z->train_feat.dim, 16);
    double mean = 0;
    for (int i = 0; i < z->n; i++) {
        const zoo_entry *e = &z->e[i];
        assert_int_equal(e->way, 5);
        for (int a = 0; a < 5; a++) {
            assert_true(e->classes[a] >= 0 && e->classes[a] < 10);
            for (int b = 0; b < a; b++)
                assert_int_not_equal(e->classes[a], e->classes[b]);
        }
        assert_true(e->query_acc > 0.3f && e->query_acc <= 1.0f);
        assert_true(e->train_acc > 0.3f && e->train_acc <= 1.0f);
        assert_true(e->query_loss > 0.0f && isfinite(e->query_loss));
        assert_int_equal(strlen(e->data_fp), 64);
        mean += e->query_acc / z->n;
    }
    fprintf(stderr, "# mean query accuracy (pca:16, 50/class) %.4f\n", mean);
    assert_true(mean > 0.65);
    /* recorded accuracy is reproducible from theta and the task's query set */
    dataset q;
    d2_error err = {0};
    task t = {.way = 5};
    memcpy(t.classes, z->e[3].classes, sizeof(int) * 5);
    assert_int_equal(zoo_task_query(z, &t, &q, &err), 0);
    assert_int_equal(q.n, 5000); /* 1000 test samples per Fashion-MNIST class */
    float acc, loss;
    assert_int_equal(target_eval(&z->spec, z->theta + 3 * z->P, &q, &acc, &loss, &err), 0);
    assert_true(acc == z->e[3].query_acc);
    TU_ASSERT_NEAR(loss, z->e[3].query_loss, 1e-6);
    dataset_free(&q);
}

static void test_threads_do_not_change_the_zoo(void **state)
{
    fixture *fx = *state;
    zoo *z = &fx->z;
    size_t bytes = sizeof(float) * (size_t)z->n * z->P;
    float *theta1 = malloc(bytes);
    memcpy(theta1, z->theta, bytes);
    char fp1[65];
    memcpy(fp1, z->fingerprint, sizeof fp1);
    d2_error e = {0};
    memset(z->theta, 0, bytes);
    assert_int_equal(zoo_train_entries(z, 2, 0, &e), 0);
    assert_memory_equal(theta1, z->theta, bytes);
    assert_string_equal(fp1, z->fingerprint);
    free(theta1);
}

static void test_heldout(void **state)
{
    fixture *fx = *state;
    zoo *z = &fx->z;
    assert_int_equal(z->n_heldout, 38); /* round(0.15 * C(10, 5) = 252) */
    for (int i = 0; i < z->n_heldout; i++) {
        for (int j = 1; j < 5; j++)
            assert_true(z->heldout[i][j] > z->heldout[i][j - 1]);
        if (i > 0)
            assert_true(memcmp(z->heldout[i - 1], z->heldout[i], sizeof(int) * 5) != 0);
        task t = {.way = 5};
        memcpy(t.classes, z->heldout[i], sizeof(int) * 5);
        assert_true(zoo_is_heldout(z, &t));
        /* order does not matter */
        int tmp = t.classes[0];
        t.classes[0] = t.classes[4];
        t.classes[4] = tmp;
        assert_true(zoo_is_heldout(z, &t));
    }
    for (int i = 0; i < z->n; i++) {
        task t = {.way = 5};
        memcpy(t.classes, z->e[i].classes, sizeof(int) * 5);
        assert_false(zoo_is_heldout(z, &t));
    }
    /* a larger draw: 500 tasks never touch a held-out combination */
    for (int i = 0; i < 500; i++) {
        task t = {.way = 5};
        d2_error e = {0};
        assert_int_equal(zoo_draw_classes(z, 10, rng_derive(123, "t", (uint64_t)i), z->way, t.classes, &e),
                         0);
        assert_false(zoo_is_heldout(z, &t));
    }
    /* helpers */
    assert_int_equal(zoo_binom(10, 5), 252);
    assert_int_equal(zoo_binom(52, 5), 2598960);
    assert_int_equal(zoo_binom(3, 4), 0);
    assert_int_equal(zoo_binom(200, 100), (uint64_t)1 << 62); /* saturates */
    /* large class counts use rejection sampling: distinct, ascending */
    zoo big = {.way = 4};
    d2_error e = {0};
    assert_int_equal(zoo_draw_heldout(&big, 100, 0.0005, 9, &e), 0);
    assert_int_equal(big.n_heldout, (int)floor(0.0005 * 3921225.0 + 0.5));
    for (int i = 0; i < big.n_heldout; i++) {
        for (int j = 1; j < 4; j++)
            assert_true(big.heldout[i][j] > big.heldout[i][j - 1]);
        assert_true(big.heldout[i][3] < 100);
        if (i > 0) { /* strictly increasing in lexicographic order */
            int j = 0;
            while (j < 4 && big.heldout[i - 1][j] == big.heldout[i][j])
                j++;
            assert_true(j < 4 && big.heldout[i - 1][j] < big.heldout[i][j]);
        }
    }
    free(big.heldout);
    /* all combinations held out is refused */
    zoo tiny = {.way = 3};
    assert_int_equal(zoo_draw_heldout(&tiny, 3, 0.15, 1, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "leaves none"));
    assert_int_equal(zoo_draw_heldout(&tiny, 2, 0.15, 1, &e), D2_EINVAL);
}

static void test_task_data(void **state)
{
    fixture *fx = *state;
    zoo *z = &fx->z;
    d2_error e = {0};
    rng r;
    rng_init(&r, 3, 0);
    dataset s;
    assert_int_equal(zoo_entry_support(z, 7, 5, &r, &s, &e), 0);
    assert_int_equal(s.n, 25);
    assert_int_equal(s.dim, 16);
    assert_int_equal(s.classes, 5);
    int count[5] = {0};
    for (int i = 0; i < s.n; i++)
        count[s.y[i]]++;
    for (int c = 0; c < 5; c++)
        assert_int_equal(count[c], 5);
    dataset_free(&s);
    task t = {.way = 3, .classes = {9, 0, 4}};
    assert_int_equal(zoo_task_train(z, &t, 40, &r, &s, &e), 0);
    assert_int_equal(s.n, 120);
    dataset_free(&s);
    assert_int_equal(zoo_task_support(z, &t, 0, &r, &s, &e), D2_EINVAL);
    task bad = {.way = 2, .classes = {1, 1}};
    assert_int_equal(zoo_task_query(z, &bad, &s, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "twice"));
    bad.classes[1] = 10;
    assert_int_equal(zoo_task_query(z, &bad, &s, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "outside"));
    assert_int_equal(zoo_entry_support(z, 20, 5, &r, &s, &e), D2_EINVAL);
}

static void corrupt_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    if (off < 0) {
        assert_int_equal(fseek(f, off, SEEK_END), 0);
    } else {
        assert_int_equal(fseek(f, off, SEEK_SET), 0);
    }
    int c = fgetc(f);
    assert_int_equal(fseek(f, -1, SEEK_CUR), 0);
    fputc(c ^ 0x5a, f);
    assert_int_equal(fclose(f), 0);
}

static void copy_zoo(const char *from, const char *to)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    assert_int_equal(system(cmd), 0);
}

static void expect_load_error(const char *dir, const char *frag1, const char *frag2)
{
    zoo z;
    d2_error e = {0};
    assert_int_not_equal(zoo_load(&z, dir, 0, &e), 0);
    if (!strstr(e.msg, frag1) || (frag2 && !strstr(e.msg, frag2)))
        fail_msg("load error '%s' lacks '%s' / '%s'", e.msg, frag1, frag2 ? frag2 : "");
}

static void test_save_load(void **state)
{
    fixture *fx = *state;
    zoo *z = &fx->z;
    d2_error e = {0};
    assert_int_equal(zoo_save(z, fx->zdir, &e), 0);
    zoo l;
    assert_int_equal(zoo_load(&l, fx->zdir, 0, &e), 0);
    assert_string_equal(l.fingerprint, z->fingerprint);
    assert_int_equal(l.n, z->n);
    assert_int_equal(l.P, z->P);
    assert_int_equal(l.has_data, 0);
    assert_memory_equal(l.theta, z->theta, sizeof(float) * (size_t)z->n * z->P);
    assert_memory_equal(l.fmap.W, z->fmap.W, sizeof(float) * 16 * 784);
    assert_int_equal(l.n_heldout, z->n_heldout);
    assert_memory_equal(l.heldout, z->heldout, sizeof(int) * D2_MAX_WAY * z->n_heldout);
    for (int i = 0; i < z->n; i++) {
        assert_memory_equal(l.e[i].classes, z->e[i].classes, sizeof(int) * 5);
        assert_true(l.e[i].seed == z->e[i].seed);
        assert_true(l.e[i].query_acc == z->e[i].query_acc);
        assert_true(l.e[i].query_loss == z->e[i].query_loss);
        assert_string_equal(l.e[i].data_fp, z->e[i].data_fp);
    }
    assert_true(l.train.lr == z->train.lr);
    /* save again from the loaded copy: same fingerprint, same bytes */
    char again[600];
    snprintf(again, sizeof again, "%s/again", fx->dir);
    assert_int_equal(zoo_save(&l, again, &e), 0);
    zoo_free(&l);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cmp -s '%s/manifest.json' '%s/manifest.json' && "
                              "cmp -s '%s/weights-0000.safetensors' '%s/weights-0000.safetensors'",
             fx->zdir, again, fx->zdir, again);
    assert_int_equal(system(cmd), 0);
    /* with the data: the source is reloaded and checked */
    assert_int_equal(zoo_load(&l, fx->zdir, 1, &e), 0);
    assert_true(l.has_data);
    assert_int_equal(l.train_feat.n, 60000);
    assert_memory_equal(l.train_feat.x, z->train_feat.x, sizeof(float) * 1000 * 16);
    zoo_free(&l);

    /* corrupt or missing files are named */
    char bad[600], path[700];
    snprintf(bad, sizeof bad, "%s/bad", fx->dir);
    copy_zoo(fx->zdir, bad);
    snprintf(path, sizeof path, "%s/weights-0000.safetensors", bad);
    corrupt_byte(path, -3);
    expect_load_error(bad, "weights-0000.safetensors", "sha256");
    copy_zoo(fx->zdir, bad);
    snprintf(path, sizeof path, "%s/feature_map.safetensors", bad);
    unlink(path);
    expect_load_error(bad, "feature_map.safetensors", NULL);
    copy_zoo(fx->zdir, bad);
    snprintf(path, sizeof path, "%s/manifest.json", bad);
    unlink(path);
    expect_load_error(bad, "manifest.json", NULL);
    tu_write_bytes(path, "{\"format\": \"d2nwg-zoo\",\n \"version\": }", 37);
    expect_load_error(bad, "manifest.json: line 2", NULL);
    /* an edited accuracy breaks the fingerprint */
    copy_zoo(fx->zdir, bad);
    snprintf(cmd, sizeof cmd, "sed -i '0,/\"query_acc\":0\\./s//\"query_acc\":0.1/' '%s/manifest.json'",
             bad);
    assert_int_equal(system(cmd), 0);
    expect_load_error(bad, "fingerprint", "does not match");
    /* a field of the wrong type is named */
    copy_zoo(fx->zdir, bad);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"way\": 5/\"way\": \"5\"/' '%s/manifest.json'", bad);
    assert_int_equal(system(cmd), 0);
    expect_load_error(bad, "way", "integer");
    copy_zoo(fx->zdir, bad);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"classes\":\\[\\([0-9]\\),/\"classes\":[\\1,\\1,/' "
                              "'%s/manifest.json'", bad);
    assert_int_equal(system(cmd), 0);
    expect_load_error(bad, "entries[0].classes", NULL);
}

/* ---- import ---- */

static void write_checkpoint(const char *path, const target_spec *s, const feature_map *f,
                             const float *theta)
{
    st_writer w;
    d2_error e = {0};
    st_writer_init(&w);
    assert_int_equal(target_write_tensors(s, f, theta, &w, &e), 0);
    assert_int_equal(st_writer_save(&w, path, &e), 0);
    st_writer_free(&w);
}

static void write_dataset(const char *path, int n, int D, int classes, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)n * D);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    rng_fill_normal(x, (size_t)n * D, seed, 0, 0.0f, 0.3f);
    for (int i = 0; i < n; i++) {
        y[i] = i % classes;
        x[(size_t)i * D + (y[i] % D)] += 2.0f;
    }
    st_writer w;
    d2_error e = {0};
    st_writer_init(&w);
    int64_t xs[2] = {n, D}, ys[1] = {n};
    assert_int_equal(st_writer_add_f32(&w, "x", 2, xs, x, &e), 0);
    assert_int_equal(st_writer_add(&w, "y", ST_I32, 1, ys, y, sizeof(int32_t) * (size_t)n, &e), 0);
    assert_int_equal(st_writer_save(&w, path, &e), 0);
    st_writer_free(&w);
    free(x);
    free(y);
}

/* a 3-way head on 4 features trained on the dataset in `path` */
static void trained_head(const target_spec *s, const char *data_path, float *theta)
{
    dataset d;
    d2_error e = {0};
    assert_int_equal(data_load_safetensors(&d, data_path, &e), 0);
    target_train_cfg c = target_train_defaults();
    assert_int_equal(target_train(s, &d, theta, 0, &c, &e), 0);
    dataset_free(&d);
}

static void test_import(void **state)
{
    fixture *fx = *state;
    d2_error e = {0};
    char src[600], out[600], p[800], mf[800];
    snprintf(src, sizeof src, "%s/ckpts", fx->dir);
    snprintf(out, sizeof out, "%s/imported", fx->dir);
    assert_int_equal(mkdir(src, 0755), 0);
    target_spec s;
    assert_int_equal(target_spec_parse(&s, "linear 4->3", &e), 0);
    float theta[15];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/d%d.safetensors", src, i);
        write_dataset(p, 60, 4, i == 2 ? 2 : 3, 50 + i);
        trained_head(&s, p, theta);
        snprintf(p, sizeof p, "%s/w%d.safetensors", src, i);
        write_checkpoint(p, &s, NULL, theta);
    }
    /* wrong shape, non-finite weights, too many classes */
    target_spec s5;
    assert_int_equal(target_spec_parse(&s5, "linear 5->3", &e), 0);
    float t5[18] = {0};
    snprintf(p, sizeof p, "%s/wshape.safetensors", src);
    write_checkpoint(p, &s5, NULL, t5);
    theta[4] = NAN;
    snprintf(p, sizeof p, "%s/wnan.safetensors", src);
    write_checkpoint(p, &s, NULL, theta);
    snprintf(p, sizeof p, "%s/d4class.safetensors", src);
    write_dataset(p, 40, 4, 4, 9);
    const char *lines =
        "{\"weights\": \"w0.safetensors\", \"dataset\": \"d0.safetensors\", \"spec\": \"linear 4->3\","
        " \"metrics\": {\"query_acc\": 0.91, \"query_loss\": 0.3}}\n"
        "{\"weights\": \"w1.safetensors\", \"dataset\": \"d1.safetensors\"}\n"
        "{\"weights\": \"w1.safetensors\", \"dataset\": \n"                            /* 3 */
        "{\"weights\": \"missing.safetensors\", \"dataset\": \"d1.safetensors\"}\n"    /* 4 */
        "\n"
        "# a comment\n"
        "{\"weights\": \"wshape.safetensors\", \"dataset\": \"d1.safetensors\"}\n"     /* 7 */
        "{\"weights\": \"wnan.safetensors\", \"dataset\": \"d1.safetensors\"}\n"       /* 8 */
        "{\"weights\": \"w1.safetensors\", \"dataset\": \"d1.safetensors\", \"spec\": \"linear 4->4\"}\n"
        "{\"weights\": \"w1.safetensors\", \"dataset\": \"d4class.safetensors\"}\n"    /* 10 */
        "{\"weights\": \"w1.safetensors\", \"dataset\": \"d1.safetensors\", \"metrics\": {\"acc\": 7}}\n"
        "[1, 2]\n"                                                                     /* 12 */
        "{\"weights\": \"w2.safetensors\", \"dataset\": \"d2.safetensors\", \"metrics\": {\"accuracy\": 0.8}}\n";
    snprintf(mf, sizeof mf, "%s/manifest.jsonl", src);
    tu_write_bytes(mf, lines, strlen(lines));
    zoo_import_report rep;
    assert_int_equal(zoo_import(mf, NULL, out, &rep, &e), 0);
    assert_int_equal(rep.imported, 3);
    assert_int_equal(rep.rejected, 8);
    const int want_lines[] = {3, 4, 7, 8, 9, 10, 11, 12};
    const char *want_msg[] = {"invalid JSON", "missing.safetensors", "'0.weight' has shape [3, 5]",
                              "not finite", "differs from the zoo's", "4 classes",
                              "metrics.acc", "not a JSON object"};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(rep.rejects[i].line, want_lines[i]);
        if (!strstr(rep.rejects[i].msg, want_msg[i]))
            fail_msg("line %d: '%s' lacks '%s'", want_lines[i], rep.rejects[i].msg, want_msg[i]);
    }
    zoo_import_report_free(&rep);
    zoo z;
    assert_int_equal(zoo_load(&z, out, 1, &e), 0);
    assert_string_equal(z.source, "import");
    assert_int_equal(z.n, 3);
    assert_int_equal(z.way, 3);
    assert_int_equal(z.e[2].way, 2);
    assert_true(z.e[0].query_acc == 0.91f);
    assert_true(z.e[0].query_loss == 0.3f);
    assert_true(isnan(z.e[1].query_acc));
    assert_true(z.e[2].query_acc == 0.8f);
    assert_true(z.e[0].train_acc > 0.9f);
    assert_string_equal(z.e[1].data_path, "data/000001.safetensors");
    assert_int_equal(z.n_heldout, 0);
    assert_non_null(z.entry_feat);
    rng r;
    rng_init(&r, 1, 0);
    dataset sup;
    assert_int_equal(zoo_entry_support(&z, 2, 4, &r, &sup, &e), 0);
    assert_int_equal(sup.n, 8);
    assert_int_equal(sup.classes, 2);
    dataset_free(&sup);
    task t = {.way = 2, .classes = {0, 1}};
    assert_int_equal(zoo_task_query(&z, &t, &sup, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "imported"));
    zoo_free(&z);
    /* the copied data set is checked against its fingerprint */
    snprintf(p, sizeof p, "%s/data/000000.safetensors", out);
    corrupt_byte(p, -300);
    assert_int_not_equal(zoo_load(&z, out, 1, &e), 0);
    assert_non_null(strstr(e.msg, "000000.safetensors"));
    assert_int_equal(zoo_load(&z, out, 0, &e), 0); /* metadata alone still loads */
    zoo_free(&z);

    /* a pca spec: every checkpoint must carry the same frozen module 0 */
    target_spec sp;
    assert_int_equal(target_spec_parse(&sp, "pca:2 | linear 2->3", &e), 0);
    feature_map f = {.in_dim = 4, .out_dim = 2};
    float W[8] = {0.6f, 0.8f, 0, 0, 0, 0, 1, 0}, mean[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    f.W = W;
    f.mean = mean;
    float tp[9];
    target_init_random(&sp, 4, tp);
    snprintf(p, sizeof p, "%s/p0.safetensors", src);
    write_checkpoint(p, &sp, &f, tp);
    W[0] = 0.8f;
    W[1] = 0.6f;
    snprintf(p, sizeof p, "%s/p1.safetensors", src);
    write_checkpoint(p, &sp, &f, tp);
    const char *pl = "{\"weights\": \"p0.safetensors\", \"dataset\": \"d0.safetensors\"}\n"
                     "{\"weights\": \"p1.safetensors\", \"dataset\": \"d0.safetensors\"}\n"
                     "{\"weights\": \"p0.safetensors\", \"dataset\": \"d1.safetensors\"}\n";
    snprintf(mf, sizeof mf, "%s/pca.jsonl", src);
    tu_write_bytes(mf, pl, strlen(pl));
    snprintf(out, sizeof out, "%s/imported-pca", fx->dir);
    assert_int_equal(zoo_import(mf, "pca:2 | linear 2->3", out, &rep, &e), 0);
    assert_int_equal(rep.imported, 2);
    assert_int_equal(rep.rejected, 1);
    assert_int_equal(rep.rejects[0].line, 2);
    assert_non_null(strstr(rep.rejects[0].msg, "frozen feature map"));
    zoo_import_report_free(&rep);
    assert_int_equal(zoo_load(&z, out, 1, &e), 0);
    assert_int_equal(z.fmap.in_dim, 4);
    assert_int_equal(z.fmap.out_dim, 2);
    /* the recovered map is the original one: W (x - mean) */
    assert_int_equal(z.entry_feat[0].dim, 2);
    dataset raw;
    snprintf(p, sizeof p, "%s/d0.safetensors", src);
    assert_int_equal(data_load_safetensors(&raw, p, &e), 0);
    W[0] = 0.6f;
    W[1] = 0.8f;
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 2; k++) {
            double acc = 0;
            for (int j = 0; j < 4; j++)
                acc += (double)W[k * 4 + j] * (raw.x[i * 4 + j] - mean[j]);
            TU_ASSERT_NEAR(z.entry_feat[0].x[i * 2 + k], acc, 1e-5);
        }
    dataset_free(&raw);
    zoo_free(&z);

    /* nothing importable: an error, with every line reported */
    pl = "{\"weights\": \"nope.safetensors\", \"dataset\": \"d0.safetensors\"}\n"
         "not json\n";
    tu_write_bytes(mf, pl, strlen(pl));
    snprintf(out, sizeof out, "%s/imported-none", fx->dir);
    assert_int_equal(zoo_import(mf, "linear 4->3", out, &rep, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "no checkpoint imported"));
    assert_int_equal(rep.imported, 0);
    assert_int_equal(rep.rejected, 2);
    zoo_import_report_free(&rep);
}

/* A CSV source and the class-count checks. */
static void test_csv_source(void **state)
{
    fixture *fx = *state;
    char path[700], spec[720];
    snprintf(path, sizeof path, "%s/four.csv", fx->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "label,a,b,c\n");
    rng r;
    rng_init(&r, 8, 0);
    for (int i = 0; i < 200; i++) {
        int c = i % 4;
        fprintf(f, "%d,%.4f,%.4f,%.4f\n", c, 2.0 * (c & 1) + 0.3 * rng_normal(&r),
                2.0 * (c >> 1) + 0.3 * rng_normal(&r), 0.3 * rng_normal(&r));
    }
    assert_int_equal(fclose(f), 0);
    snprintf(spec, sizeof spec, "csv:%s", path);
    zoo_build_cfg c = zoo_build_defaults();
    c.source = spec;
    c.feature = "identity";
    c.way = 3;
    c.tasks = 6;
    zoo z;
    d2_error e = {0};
    assert_int_equal(zoo_build(&z, &c, &e), 0);
    assert_string_equal(z.spec.text, "linear 3->3");
    assert_int_equal(z.n_heldout, 1); /* round(0.15 * 4) = 1 */
    assert_null(z.fmap.W);
    for (int i = 0; i < z.n; i++)
        assert_true(z.e[i].query_acc > 0.9f);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/csvzoo", fx->dir);
    assert_int_equal(zoo_save(&z, dir, &e), 0);
    zoo l;
    assert_int_equal(zoo_load(&l, dir, 1, &e), 0);
    assert_string_equal(l.fingerprint, z.fingerprint);
    zoo_free(&l);
    zoo_free(&z);
    c.way = 5;
    assert_int_equal(zoo_build(&z, &c, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "has 4 classes, fewer than the way 5"));
    c.way = 3;
    c.feature = "pca:9";
    assert_int_equal(zoo_build(&z, &c, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "more components"));
    c.feature = "pca:x";
    assert_int_equal(zoo_build(&z, &c, &e), D2_EINVAL);
    c.feature = "identity";
    c.source = "no-such-source";
    assert_int_not_equal(zoo_build(&z, &c, &e), 0);
    assert_non_null(strstr(e.msg, "unknown data source"));
}

/* ---- the command line ---- */

static int run_cmd(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
    fixture *fx = *state;
    char bin[512];
    tu_build_path(bin, sizeof bin, "d2nwg");
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "# %s not built; skipping the command-line checks\n", bin);
        skip();
    }
    char cmd[2048], *out = malloc(1 << 20);
    snprintf(cmd, sizeof cmd, "'%s' zoo info '%s' --json", bin, fx->zdir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 0);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "tasks")), 20);
    assert_string_equal(json_string_value(json_object_get(o, "spec")), "pca:16 | linear 16->5");
    assert_string_equal(json_string_value(json_object_get(o, "source")), "fashion-mnist");
    assert_int_equal(json_integer_value(json_object_get(o, "way")), 5);
    assert_string_equal(json_string_value(json_object_get(o, "fingerprint")), fx->z.fingerprint);
    json_t *acc = json_object_get(o, "accuracy");
    const char *keys[] = {"mean", "min", "p25", "median", "p75", "max"};
    double prev = -1;
    for (int i = 1; i < 6; i++) {
        json_t *v = json_object_get(acc, keys[i]);
        assert_true(json_is_number(v));
        assert_true(json_number_value(v) >= prev);
        prev = json_number_value(v);
    }
    double mean = 0;
    for (int i = 0; i < 20; i++)
        mean += fx->z.e[i].query_acc / 20.0;
    TU_ASSERT_NEAR(json_number_value(json_object_get(acc, "mean")), mean, 1e-5);
    json_t *ho = json_object_get(o, "heldout");
    assert_int_equal(json_array_size(ho), 38);
    assert_int_equal(json_array_size(json_array_get(ho, 0)), 5);
    json_decref(o);
    /* text form, usage errors (2), runtime errors (1) */
    snprintf(cmd, sizeof cmd, "'%s' zoo info '%s'", bin, fx->zdir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 0);
    assert_non_null(strstr(out, "query acc"));
    assert_non_null(strstr(out, "held out    38"));
    snprintf(cmd, sizeof cmd, "'%s' zoo build --way 5 --frobnicate 2>&1", bin);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 2);
    assert_non_null(strstr(out, "d2nwg zoo: build: unknown option '--frobnicate'"));
    snprintf(cmd, sizeof cmd, "'%s' zoo build --way 5 2>&1", bin);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 2);
    snprintf(cmd, sizeof cmd, "'%s' zoo info '%s/nowhere' 2>&1", bin, fx->dir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 1);
    assert_non_null(strstr(out, "d2nwg zoo: "));
    snprintf(cmd, sizeof cmd, "'%s' zoo build --source iris --way 5 --out '%s/x' 2>&1", bin,
             fx->dir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 1);
    assert_non_null(strstr(out, "fewer than the way 5"));
    for (int i = 0; i < 4; i++) {
        const char *sub[] = {"", "build", "import", "info"};
        snprintf(cmd, sizeof cmd, "'%s' zoo %s --help", bin, sub[i]);
        assert_int_equal(run_cmd(cmd, out, 1 << 20), 0);
        assert_non_null(strstr(out, "usage: d2nwg zoo"));
    }
    /* import reports bad lines by number; any bad line exits 1 with nothing written,
     * unless --skip-bad (then 0 when one is good) */
    snprintf(cmd, sizeof cmd, "'%s' zoo import --manifest '%s/ckpts/manifest.jsonl' --out "
                              "'%s/cli-import' 2>&1", bin, fx->dir, fx->dir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 1);
    assert_non_null(strstr(out, "manifest.jsonl line 3: invalid JSON"));
    assert_non_null(strstr(out, "--skip-bad imports the 3 good ones"));
    assert_non_null(strstr(out, "imported 0, rejected 8"));
    snprintf(cmd, sizeof cmd, "'%s' zoo import --manifest '%s/ckpts/manifest.jsonl' --out "
                              "'%s/cli-import' --skip-bad 2>&1", bin, fx->dir, fx->dir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 0);
    assert_non_null(strstr(out, "imported 3, rejected 8"));
    snprintf(cmd, sizeof cmd, "'%s' zoo import --manifest '%s/ckpts/pca.jsonl' --out "
                              "'%s/cli-none' --spec 'linear 4->3' 2>&1", bin, fx->dir, fx->dir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 1);
    assert_non_null(strstr(out, "imported 0, rejected 2"));
    /* a tiny build through the CLI */
    snprintf(cmd, sizeof cmd, "'%s' zoo build --source digits --way 4 --tasks 8 --feature pca:8 "
                              "--per-class 40 --quiet --out '%s/cli-build' && '%s' zoo info "
                              "'%s/cli-build' --json", bin, fx->dir, bin, fx->dir);
    assert_int_equal(run_cmd(cmd, out, 1 << 20), 0);
    const char *js = strstr(out, "{\"tasks\"");
    assert_non_null(js);
    o = json_loads(js, 0, &je);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "tasks")), 8);
    assert_string_equal(json_string_value(json_object_get(o, "source")), "digits");
    assert_int_equal(json_array_size(json_object_get(o, "heldout")), 32); /* 0.15 * 210 */
    json_decref(o);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_basics),
        cmocka_unit_test(test_threads_do_not_change_the_zoo),
        cmocka_unit_test(test_heldout),
        cmocka_unit_test(test_task_data),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_import),
        cmocka_unit_test(test_csv_source),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
