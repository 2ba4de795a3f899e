/* test_data.c - data readers on real data (Fashion-MNIST, scikit-learn's
 * digits/iris/wine), malformed files for every reader, fingerprints, the
 * per-class split and the task sampler. */
#include "fileio.h"
#include "testutil.h"

#include <math.h>
#include <zlib.h>

#include "data.h"
#include "data_internal.h"
#include "safetensors.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

typedef struct fixture {
    data_source fm; /* Fashion-MNIST, loaded once for the program */
    char *dir;      /* temporary directory for generated files */
} fixture;

static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    d2_error e = {0};
    double t0 = d2_now();
    if (data_source_load(&fx->fm, "fashion-mnist", &e) != 0) {
        fprintf(stderr, "fashion-mnist: %s\n", e.msg);
        free(fx);
        return -1;
    }
    fprintf(stderr, "# fashion-mnist loaded in %.2f s\n", d2_now() - t0);
    fx->dir = tu_tmpdir("data");
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    data_source_free(&fx->fm);
    tu_rmrf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void assert_msg_has(const d2_error *e, const char *needle)
{
    if (!strstr(e->msg, needle))
        fail_msg("error message \"%s\" does not mention \"%s\"", e->msg, needle);
}

static void path_in(const fixture *fx, char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", fx->dir, name);
}

static void write_text(const char *path, const char *text)
{
    tu_write_bytes(path, text, strlen(text));
}

static void write_gz(const char *path, const void *data, size_t len)
{
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    if (len)
        assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
}

/* ---- real data ------------------------------------------------------- */

static void test_fashion_mnist(void **state)
{
    fixture *fx = *state;
    const dataset *tr = &fx->fm.train, *te = &fx->fm.test;
    assert_string_equal(fx->fm.name, "fashion-mnist");
    assert_int_equal(tr->n, 60000);
    assert_int_equal(te->n, 10000);
    assert_int_equal(tr->dim, 784);
    assert_int_equal(te->dim, 784);
    assert_int_equal(tr->classes, 10);
    assert_int_equal(te->classes, 10);
    int htr[10] = {0}, hte[10] = {0};
    for (int i = 0; i < tr->n; i++)
        htr[tr->y[i]]++;
    for (int i = 0; i < te->n; i++)
        hte[te->y[i]]++;
    for (int c = 0; c < 10; c++) {
        assert_int_equal(htr[c], 6000);
        assert_int_equal(hte[c], 1000);
    }
    /* First labels (ankle boot, t-shirt, t-shirt, dress, t-shirt). */
    assert_int_equal(tr->y[0], 9);
    assert_int_equal(tr->y[1], 0);
    assert_int_equal(tr->y[3], 3);
    assert_int_equal(te->y[1], 2);
    float lo = 1e9f, hi = -1e9f;
    double sum = 0, sum0 = 0;
    for (size_t i = 0; i < (size_t)tr->n * 784; i++) {
        float v = tr->x[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
    }
    for (int j = 0; j < 784; j++)
        sum0 += tr->x[j];
    assert_true(lo == 0.0f);
    assert_true(hi == 1.0f);
    /* Sums computed independently with numpy (x / 255 in float32). */
    TU_ASSERT_NEAR(sum0, 299.0078472062014, 1e-6);
    TU_ASSERT_NEAR(sum, 13455349.927203527, 1e-3);
    /* Every pixel is k/255 exactly as float32 division gives it. */
    for (int j = 0; j < 784; j++) {
        float k = roundf(tr->x[j] * 255.0f);
        assert_true(tr->x[j] == k / 255.0f);
    }
    /* The fingerprint follows data.h's encoding (value computed with Python's
     * hashlib over the same bytes). */
    char hex[65];
    dataset_fingerprint(te, hex);
    assert_string_equal(hex, "1efc11bb83cca078fa63c8c0aa13985fa696b406cec59235c563bab6ec918d5d");
}

/* Every row of `all` is, in order, the next row of train or of test. */
static void assert_ordered_partition(const dataset *all, const dataset *tr, const dataset *te)
{
    assert_int_equal(tr->n + te->n, all->n);
    int a = 0, b = 0;
    size_t rb = (size_t)all->dim * sizeof(float);
    for (int i = 0; i < all->n; i++) {
        const float *row = all->x + (size_t)i * (size_t)all->dim;
        if (a < tr->n && tr->y[a] == all->y[i] &&
            memcmp(tr->x + (size_t)a * (size_t)all->dim, row, rb) == 0)
            a++;
        else if (b < te->n && te->y[b] == all->y[i] &&
                 memcmp(te->x + (size_t)b * (size_t)all->dim, row, rb) == 0)
            b++;
        else
            fail_msg("row %d of the full set is in neither split (in order)", i);
    }
    assert_int_equal(a, tr->n);
    assert_int_equal(b, te->n);
}

static void check_source(const char *name, const char *path, data_csv_layout layout, int n,
                         int dim, int classes)
{
    d2_error e = {0};
    unsigned char *buf;
    size_t len;
    assert_int_equal(data_read_all(path, &buf, &len, DATA_MAX_FILE, &e), 0);
    dataset all;
    int rc = data_csv_parse(&all, path, (const char *)buf, len, layout, &e);
    free(buf);
    if (rc)
        fail_msg("%s: %s", name, e.msg);
    assert_int_equal(all.n, n);
    assert_int_equal(all.dim, dim);
    assert_int_equal(all.classes, classes);

    data_source s;
    if (data_source_load(&s, name, &e) != 0)
        fail_msg("%s: %s", name, e.msg);
    assert_int_equal(s.train.dim, dim);
    assert_int_equal(s.test.classes, classes);
    assert_int_equal(s.train.classes, classes);
    /* Per class: round(0.8 m) rows to train, the rest to test. */
    int *count = calloc((size_t)classes, sizeof *count);
    int *ctr = calloc((size_t)classes, sizeof *ctr);
    assert_non_null(count);
    assert_non_null(ctr);
    for (int i = 0; i < all.n; i++)
        count[all.y[i]]++;
    for (int i = 0; i < s.train.n; i++)
        ctr[s.train.y[i]]++;
    int want_train = 0;
    for (int c = 0; c < classes; c++) {
        assert_int_equal(ctr[c], (int)(0.8 * count[c] + 0.5));
        want_train += ctr[c];
    }
    assert_int_equal(s.train.n, want_train);
    assert_ordered_partition(&all, &s.train, &s.test);
    /* Deterministic: a second load gives the same split. */
    data_source s2;
    assert_int_equal(data_source_load(&s2, name, &e), 0);
    char h1[65], h2[65];
    dataset_fingerprint(&s.train, h1);
    dataset_fingerprint(&s2.train, h2);
    assert_string_equal(h1, h2);
    dataset_fingerprint(&s.test, h1);
    dataset_fingerprint(&s2.test, h2);
    assert_string_equal(h1, h2);
    data_source_free(&s2);
    data_source_free(&s);
    free(count);
    free(ctr);
    dataset_free(&all);
}

#define SK "/usr/lib/python3/dist-packages/sklearn/datasets/data/"

static void test_sklearn_sources(void **state)
{
    (void)state;
    check_source("digits", SK "digits.csv.gz", DATA_CSV_LABEL_LAST, 1797, 64, 10);
    check_source("iris", SK "iris.csv", DATA_CSV_SKLEARN, 150, 4, 3);
    check_source("wine", SK "wine_data.csv", DATA_CSV_SKLEARN, 178, 13, 3);

    /* Exact values of known rows, and split sizes. */
    d2_error e = {0};
    data_source s;
    assert_int_equal(data_source_load(&s, "iris", &e), 0);
    assert_int_equal(s.train.n, 120);
    assert_int_equal(s.test.n, 30);
    data_source_free(&s);
    assert_int_equal(data_source_load(&s, "wine", &e), 0);
    assert_int_equal(s.train.n, 47 + 57 + 38);
    assert_int_equal(s.test.n, 178 - 142);
    data_source_free(&s);

    unsigned char *buf;
    size_t len;
    dataset d;
    assert_int_equal(data_read_all(SK "iris.csv", &buf, &len, DATA_MAX_FILE, &e), 0);
    assert_int_equal(data_csv_parse(&d, "iris", (const char *)buf, len, DATA_CSV_SKLEARN, &e), 0);
    free(buf);
    assert_true(d.x[0] == 5.1f && d.x[1] == 3.5f && d.x[2] == 1.4f && d.x[3] == 0.2f);
    assert_int_equal(d.y[0], 0);
    assert_true(d.x[149 * 4 + 0] == 5.9f && d.x[149 * 4 + 3] == 1.8f);
    assert_int_equal(d.y[149], 2);
    dataset_free(&d);
    assert_int_equal(data_read_all(SK "digits.csv.gz", &buf, &len, DATA_MAX_FILE, &e), 0);
    assert_int_equal(
        data_csv_parse(&d, "digits", (const char *)buf, len, DATA_CSV_LABEL_LAST, &e), 0);
    free(buf);
    assert_true(d.x[2] == 5.0f && d.x[3] == 13.0f);
    assert_int_equal(d.y[0], 0);
    assert_int_equal(d.y[1], 1);
    float hi = 0;
    for (size_t i = 0; i < (size_t)d.n * 64; i++)
        hi = d.x[i] > hi ? d.x[i] : hi;
    assert_true(hi == 16.0f);
    dataset_free(&d);

    assert_int_equal(data_source_load(&s, "mnist-fashion", &e), D2_EINVAL);
    assert_msg_has(&e, "unknown data source \"mnist-fashion\"");
}

/* A user CSV source and an idx:PREFIX source built from generated files. */
static void test_user_sources(void **state)
{
    fixture *fx = *state;
    d2_error e = {0};
    char p[512], spec[600];
    path_in(fx, p, sizeof p, "user.csv");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "label,a,b\n");
    for (int i = 0; i < 30; i++)
        fprintf(f, "%d,%d,%g\n", i % 3, i, 0.5 * i);
    fclose(f);
    snprintf(spec, sizeof spec, "csv:%s", p);
    data_source s;
    assert_int_equal(data_source_load(&s, spec, &e), 0);
    assert_int_equal(s.train.n, 24);
    assert_int_equal(s.test.n, 6);
    assert_int_equal(s.train.dim, 2);
    data_source_free(&s);

    /* idx:PREFIX with PREFIX-train-images-idx3-ubyte (plain) etc. */
    unsigned char img[16 + 6 * 4], lab[8 + 6];
    const unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 6, 0, 0, 0, 2, 0, 0, 0, 2};
    const unsigned char lh[8] = {0, 0, 8, 1, 0, 0, 0, 6};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < 24; i++)
        img[16 + i] = (unsigned char)(i * 10);
    for (int i = 0; i < 6; i++)
        lab[8 + i] = (unsigned char)(i % 2);
    const char *parts[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int k = 0; k < 4; k++) {
        char name[128];
        snprintf(name, sizeof name, "mini-%s", parts[k]);
        path_in(fx, p, sizeof p, name);
        if (k % 2 == 0)
            tu_write_bytes(p, img, sizeof img);
        else
            tu_write_bytes(p, lab, sizeof lab);
    }
    path_in(fx, p, sizeof p, "mini");
    snprintf(spec, sizeof spec, "idx:%s", p);
    assert_int_equal(data_source_load(&s, spec, &e), 0);
    assert_int_equal(s.train.n, 6);
    assert_int_equal(s.train.dim, 4);
    assert_int_equal(s.test.classes, 2);
    assert_true(s.train.x[5] == 50.0f / 255.0f);
    data_source_free(&s);
    path_in(fx, p, sizeof p, "nothere");
    snprintf(spec, sizeof spec, "idx:%s", p);
    assert_int_equal(data_source_load(&s, spec, &e), D2_ENOTFOUND);
    assert_msg_has(&e, "nothere-train-images-idx3-ubyte: cannot open");
}

/* ---- IDX --------------------------------------------------------------- */

/* Valid 3-image IDX pair (2x2 pixels, labels 0,1,2) into img/lab buffers. */
static size_t make_idx_images(unsigned char *b, uint32_t n)
{
    const unsigned char h[16] = {0, 0, 8, 3, 0, 0, 0, (unsigned char)n, 0, 0, 0, 2, 0, 0, 0, 2};
    memcpy(b, h, 16);
    for (uint32_t i = 0; i < 4 * n; i++)
        b[16 + i] = (unsigned char)(i * 17);
    return 16 + 4 * n;
}

static size_t make_idx_labels(unsigned char *b, uint32_t n)
{
    const unsigned char h[8] = {0, 0, 8, 1, 0, 0, 0, (unsigned char)n};
    memcpy(b, h, 8);
    for (uint32_t i = 0; i < n; i++)
        b[8 + i] = (unsigned char)(i % 3);
    return 8 + n;
}

static void expect_idx_error(const char *ip, const char *lp, int code, const char *needle)
{
    dataset d;
    d2_error e = {0};
    int rc = data_load_idx(&d, ip, lp, &e);
    if (rc == 0)
        fail_msg("IDX pair %s + %s accepted", ip, lp);
    assert_int_equal(rc, code);
    assert_msg_has(&e, needle);
    assert_null(d.x);
}

static void test_idx_malformed(void **state)
{
    fixture *fx = *state;
    char ip[512], lp[512], bp[512];
    unsigned char img[64], lab[32];
    size_t il = make_idx_images(img, 3), ll = make_idx_labels(lab, 3);
    path_in(fx, ip, sizeof ip, "ok-images.gz");
    path_in(fx, lp, sizeof lp, "ok-labels");
    write_gz(ip, img, il);
    tu_write_bytes(lp, lab, ll);
    dataset d;
    d2_error e = {0};
    assert_int_equal(data_load_idx(&d, ip, lp, &e), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.dim, 4);
    assert_int_equal(d.classes, 3);
    assert_true(d.x[1] == 17.0f / 255.0f);
    assert_true(d.x[11] == 187.0f / 255.0f);
    dataset_free(&d);

    path_in(fx, bp, sizeof bp, "bad");
    /* Wrong magic. */
    unsigned char b[64];
    memcpy(b, img, il);
    b[0] = 0x12;
    tu_write_bytes(bp, b, il);
    expect_idx_error(bp, lp, D2_EFORMAT, "bad magic 12 00 08 03 at offset 0");
    /* Element type other than unsigned byte. */
    memcpy(b, img, il);
    b[2] = 0x0B;
    tu_write_bytes(bp, b, il);
    expect_idx_error(bp, lp, D2_EUNSUPPORTED, "element type 0x0b");
    /* Images with one dimension; labels with three. */
    memcpy(b, img, il);
    b[3] = 1;
    tu_write_bytes(bp, b, il);
    expect_idx_error(bp, lp, D2_EFORMAT, "IDX has 1 dimensions at offset 3");
    expect_idx_error(ip, ip, D2_EFORMAT, "IDX has 3 dimensions at offset 3, expected 1");
    /* n = 0. */
    memcpy(b, img, 16);
    b[7] = 0;
    tu_write_bytes(bp, b, 16);
    expect_idx_error(bp, lp, D2_EFORMAT, "n = 0");
    /* Truncated pixel data, plain and gzipped. */
    tu_write_bytes(bp, img, il - 5);
    expect_idx_error(bp, lp, D2_EFORMAT, "truncated pixel data: expected 12 bytes at offset 16");
    write_gz(bp, img, il - 5);
    expect_idx_error(bp, lp, D2_EFORMAT, "expected 12 bytes at offset 16, the file ends 7 bytes later");
    /* Truncated header. */
    tu_write_bytes(bp, img, 10);
    expect_idx_error(bp, lp, D2_EFORMAT, "truncated IDX dimensions");
    /* Trailing bytes. */
    memcpy(b, img, il);
    b[il] = 7;
    tu_write_bytes(bp, b, il + 1);
    expect_idx_error(bp, lp, D2_EFORMAT, "trailing data at offset 28");
    /* Garbage after a gzip magic, and a gzip file cut short. */
    unsigned char junk[40] = {0x1f, 0x8b, 0x08, 0x00};
    for (int i = 4; i < 40; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    tu_write_bytes(bp, junk, sizeof junk);
    expect_idx_error(bp, lp, D2_EFORMAT, "bad: gzip error at offset 0: invalid");
    unsigned char *gz;
    size_t gzl;
    assert_int_equal(d2_read_file(ip, &gz, &gzl, 0, &e), 0);
    tu_write_bytes(bp, gz, gzl - 10);
    expect_idx_error(bp, lp, D2_EFORMAT,
                     "bad: truncated or corrupt gzip data in the pixel data: expected 12 bytes "
                     "at offset 16, got 11: unexpected end of file");
    free(gz);
    /* Labels: count mismatch, a class without samples, missing file. */
    unsigned char l2[32];
    size_t l2l = make_idx_labels(l2, 2);
    tu_write_bytes(bp, l2, l2l);
    expect_idx_error(ip, bp, D2_EFORMAT, "2 labels but the images file holds 3 images");
    memcpy(l2, lab, ll);
    l2[8 + 1] = 2; /* labels 0, 2, 2 */
    tu_write_bytes(bp, l2, ll);
    expect_idx_error(ip, bp, D2_EINVAL, "class 1 has no sample");
    l2[8 + 1] = 200; /* 0, 200, 2 */
    tu_write_bytes(bp, l2, ll);
    expect_idx_error(ip, bp, D2_ERANGE, "label 200 is out of range");
    path_in(fx, bp, sizeof bp, "missing");
    expect_idx_error(bp, lp, D2_ENOTFOUND, "missing: cannot open");
    /* Empty file. */
    path_in(fx, bp, sizeof bp, "empty");
    tu_write_bytes(bp, "", 0);
    expect_idx_error(bp, lp, D2_EFORMAT, "empty: truncated IDX magic: expected 4 bytes at offset 0");
}

/* ---- CSV --------------------------------------------------------------- */

static void expect_csv_error(const fixture *fx, const char *text, int code, const char *needle)
{
    char p[512];
    path_in(fx, p, sizeof p, "t.csv");
    write_text(p, text);
    dataset d;
    d2_error e = {0};
    int rc = data_load_csv(&d, p, &e);
    if (rc == 0)
        fail_msg("CSV accepted: %s", text);
    assert_int_equal(rc, code);
    assert_msg_has(&e, needle);
    assert_msg_has(&e, "t.csv");
    assert_null(d.x);
}

static void test_csv(void **state)
{
    fixture *fx = *state;
    char p[512];
    d2_error e = {0};
    dataset d;
    /* Quoting, spaces, CRLF, blank lines, a BOM, no final newline. */
    path_in(fx, p, sizeof p, "ok.csv");
    write_text(p, "\xef\xbb\xbf\"label\", \"feat, one\",\"f\"\"2\"\r\n"
                  "1, 0.5 ,-2\r\n"
                  "\r\n"
                  "0,\"3e2\",  7  \r\n"
                  "2,1,1");
    assert_int_equal(data_load_csv(&d, p, &e), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.dim, 2);
    assert_int_equal(d.classes, 3);
    assert_true(d.x[0] == 0.5f && d.x[1] == -2.0f && d.x[2] == 300.0f && d.x[3] == 7.0f);
    assert_int_equal(d.y[0], 1);
    assert_int_equal(d.y[2], 2);
    dataset_free(&d);
    /* Gzipped CSV through data_load_support. */
    path_in(fx, p, sizeof p, "ok.csv.gz");
    const char *t = "label,a\n0,1.5\n1,2.5\n";
    write_gz(p, t, strlen(t));
    assert_int_equal(data_load_support(&d, p, NULL, &e), 0);
    assert_int_equal(d.n, 2);
    assert_true(d.x[1] == 2.5f);
    dataset_free(&d);

    expect_csv_error(fx, "label,a,b\n0,1,2\n1,3\n", D2_EFORMAT,
                     "line 3: ragged row: 2 cells, expected 3");
    expect_csv_error(fx, "label,a,b\n0,1,2\n1,3,4,5,6\n", D2_EFORMAT,
                     "line 3: ragged row: 5 cells, expected 3");
    expect_csv_error(fx, "label,a,b\n0,1,2\n\n1,3,abc\n", D2_EFORMAT,
                     "line 4, column 3: non-numeric cell \"abc\"");
    expect_csv_error(fx, "label,a,b\n0,1,2x\n", D2_EFORMAT,
                     "line 2, column 3: non-numeric cell \"2x\"");
    expect_csv_error(fx, "label,a,b\n0,,2\n", D2_EFORMAT, "line 2, column 2: empty cell");
    expect_csv_error(fx, "label,a,b\n0,1,2\n1,nan,2\n", D2_EINVAL, "line 3, column 2: NaN");
    expect_csv_error(fx, "label,a,b\n0,1,-inf\n", D2_EINVAL, "line 2, column 3: infinite");
    expect_csv_error(fx, "label,a,b\n0,1,1e999\n", D2_EINVAL, "line 2, column 3: infinite");
    expect_csv_error(fx, "label,a\n0,1e300\n", D2_ERANGE, "outside the float32 range");
    expect_csv_error(fx, "label,a\n-1,1\n0,2\n", D2_EINVAL, "line 2, column 1: label -1 is negative");
    expect_csv_error(fx, "label,a\n0,1\n1.5,2\n", D2_EINVAL, "label \"1.5\" is not an integer");
    expect_csv_error(fx, "label,a\n0,1\n1e12,2\n", D2_ERANGE, "line 3, column 1: label 1e12 is out of range");
    expect_csv_error(fx, "label,a\n0,1\n7,2\n", D2_ERANGE, "label 7 is out of range");
    expect_csv_error(fx, "label,a\n0,1\n2,2\n0,3\n", D2_EINVAL, "class 1 has no sample");
    expect_csv_error(fx, "", D2_EINVAL, "no data rows (n = 0): the file is empty");
    expect_csv_error(fx, "label,a,b\n", D2_EINVAL, "no data rows (n = 0)");
    expect_csv_error(fx, "y,a,b\n0,1,2\n", D2_EFORMAT, "first column must be \"label\", found \"y\"");
    expect_csv_error(fx, "label\n0\n", D2_EFORMAT, "no feature columns");
    expect_csv_error(fx, "label,a\n0,\"1\n", D2_EFORMAT, "line 2, column 2: unterminated quote");
    expect_csv_error(fx, "label,a\n0,\"1\"x\n", D2_EFORMAT, "line 2, column 2: text after");
    path_in(fx, p, sizeof p, "none.csv");
    assert_int_equal(data_load_csv(&d, p, &e), D2_ENOTFOUND);
    assert_msg_has(&e, "none.csv: cannot open");
    /* Gzip garbage. */
    path_in(fx, p, sizeof p, "bad.csv.gz");
    const unsigned char junk[12] = {0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    tu_write_bytes(p, junk, sizeof junk);
    assert_int_equal(data_load_support(&d, p, NULL, &e), D2_EFORMAT);
    assert_msg_has(&e, "bad.csv.gz");
    assert_msg_has(&e, "gzip");

    /* scikit-learn layout errors. */
    const char *sk[][2] = {
        {"3,2,a,b\n1,2,0\n1,2,1\n", "announces 3 samples, found 2 rows"},
        {"2,2,a,b\n1,2,0\n1,2,2\n", "line 3, column 3: label 2 is out of range (the header"},
        {"x,2,a\n1,2,0\n", "line 1, column 1: expected the scikit-learn header"},
        {"2,2,a,b\n1,2,0\n1,2\n", "line 3: ragged row: 2 cells, expected 3"},
    };
    for (size_t i = 0; i < sizeof sk / sizeof sk[0]; i++) {
        int rc = data_csv_parse(&d, "sk.csv", sk[i][0], strlen(sk[i][0]), DATA_CSV_SKLEARN, &e);
        assert_int_not_equal(rc, 0);
        assert_msg_has(&e, sk[i][1]);
    }
    const char *noh = "1,2,0\n3,4,1\n5,6\n";
    assert_int_not_equal(data_csv_parse(&d, "d.csv", noh, strlen(noh), DATA_CSV_LABEL_LAST, &e),
                         0);
    assert_msg_has(&e, "d.csv: line 3: ragged row: 2 cells, expected 3");
}

/* ---- NPY --------------------------------------------------------------- */

/* An .npy file: version major, header dict text (padded to 64 with a final
 * newline like numpy does), then data. */
static void write_npy(const char *path, int major, const char *dict, const void *data,
                      size_t nbytes)
{
    size_t pre = major == 1 ? 10 : 12;
    size_t dl = strlen(dict);
    size_t hl = (pre + dl + 1 + 63) / 64 * 64 - pre;
    size_t total = pre + hl + nbytes;
    unsigned char *b = malloc(total);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    if (major == 1) {
        b[8] = (unsigned char)hl;
        b[9] = (unsigned char)(hl >> 8);
    } else {
        for (int i = 0; i < 4; i++)
            b[8 + i] = (unsigned char)(hl >> (8 * i));
    }
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', hl - dl);
    b[pre + hl - 1] = '\n';
    if (nbytes)
        memcpy(b + pre + hl, data, nbytes);
    tu_write_bytes(path, b, total);
    free(b);
}

static void expect_npy_error(const char *xp, const char *yp, int code, const char *needle)
{
    dataset d;
    d2_error e = {0};
    int rc = data_load_npy_pair(&d, xp, yp, &e);
    if (rc == 0)
        fail_msg("npy pair accepted (%s)", needle);
    assert_int_equal(rc, code);
    assert_msg_has(&e, needle);
    assert_null(d.x);
}

static void test_npy(void **state)
{
    fixture *fx = *state;
    char xp[512], yp[512], bp[512];
    path_in(fx, xp, sizeof xp, "x.npy");
    path_in(fx, yp, sizeof yp, "y.npy");
    path_in(fx, bp, sizeof bp, "bad.npy");
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t y[3] = {1, 0, 1};
    write_npy(xp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", x, sizeof x);
    write_npy(yp, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", y, sizeof y);
    dataset d;
    d2_error e = {0};
    assert_int_equal(data_load_support(&d, xp, yp, &e), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.dim, 2);
    assert_int_equal(d.classes, 2);
    assert_true(d.x[5] == 6.0f);
    assert_int_equal(d.y[0], 1);
    dataset_free(&d);
    /* v2 and v3 headers, f8 features with three dims, u1 / i4 labels [n, 1]. */
    double x8[8] = {0.5, 1, 2, 3, 4, 5, 6, -7.25};
    uint8_t y1[2] = {0, 1};
    int32_t y4[2] = {1, 0};
    char x2p[512], y2p[512];
    path_in(fx, x2p, sizeof x2p, "x2.npy");
    path_in(fx, y2p, sizeof y2p, "y2.npy");
    write_npy(x2p, 2, "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2, 2, 2)}", x8,
              sizeof x8);
    write_npy(y2p, 3, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", y1, sizeof y1);
    assert_int_equal(data_load_npy_pair(&d, x2p, y2p, &e), 0);
    assert_int_equal(d.dim, 4);
    assert_true(d.x[0] == 0.5f && d.x[7] == -7.25f);
    dataset_free(&d);
    write_npy(y2p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }", y4,
              sizeof y4);
    assert_int_equal(data_load_npy_pair(&d, x2p, y2p, &e), 0);
    assert_int_equal(d.y[0], 1);
    dataset_free(&d);

    /* Bad magic, truncated prefix, unknown version. */
    tu_write_bytes(bp, "PK\x03\x04 not numpy at all", 22);
    expect_npy_error(bp, yp, D2_EFORMAT, "bad.npy: bad magic at offset 0");
    tu_write_bytes(bp, "\x93NUMPY\x01", 7);
    expect_npy_error(bp, yp, D2_EFORMAT, "bad magic");
    tu_write_bytes(bp, "\x93NUMPY\x07\x00\x10\x00{}", 12);
    expect_npy_error(bp, yp, D2_EUNSUPPORTED, "version 7.0");
    /* Header length beyond the file. */
    tu_write_bytes(bp, "\x93NUMPY\x01\x00\xff\x00{}", 12);
    expect_npy_error(bp, yp, D2_EFORMAT, "truncated header: 255 header bytes");
    /* Malformed header dicts. */
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), ", x, sizeof x);
    expect_npy_error(bp, yp, D2_EFORMAT, "malformed header dict at offset 10");
    write_npy(bp, 1, "{'descr': '<f4', 'shape': (3, 2), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EFORMAT, "lacks the key 'fortran_order'");
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'x': 1}", x,
              sizeof x);
    expect_npy_error(bp, yp, D2_EFORMAT, "unexpected or repeated key 'x'");
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, -2), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EFORMAT, "malformed header dict");
    /* dtypes. */
    write_npy(bp, 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3, 1), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EUNSUPPORTED, "unsupported dtype '<c8'");
    write_npy(bp, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 2), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EUNSUPPORTED, "big-endian dtype '>f4'");
    write_npy(bp, 1, "{'descr': '|O', 'fortran_order': False, 'shape': (3, 2), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EUNSUPPORTED, "unsupported dtype '|O'");
    write_npy(bp, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", x, 12);
    expect_npy_error(bp, yp, D2_EUNSUPPORTED, "structured dtypes");
    /* Fortran order. */
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EUNSUPPORTED, "fortran_order is True");
    /* Truncated and over-long data. */
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", x, 20);
    expect_npy_error(bp, yp, D2_EFORMAT, "truncated data at offset 128: shape needs 24 bytes");
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EFORMAT, "8 trailing bytes at offset 144");
    /* Shapes: 1-D features, n mismatch, n = 0, 2-D labels. */
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EFORMAT, "features have shape (6); expected [n, D]");
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", x, sizeof x);
    expect_npy_error(bp, yp, D2_EFORMAT, "has 2 rows but");
    expect_npy_error(bp, yp, D2_EFORMAT, "has 3 labels");
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", x, 0);
    write_npy(y2p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }", y, 0);
    expect_npy_error(bp, y2p, D2_EINVAL, "no samples (n = 0)");
    write_npy(y2p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 3), }", y, sizeof y);
    expect_npy_error(xp, y2p, D2_EFORMAT, "labels have shape (1, 3); expected [n]");
    /* Label and feature values. */
    int64_t yneg[3] = {0, -1, 1};
    write_npy(y2p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", yneg,
              sizeof yneg);
    expect_npy_error(xp, y2p, D2_EINVAL, "row 1: label -1 is negative");
    float yf[3] = {0, 1.5f, 1};
    write_npy(y2p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", yf,
              sizeof yf);
    expect_npy_error(xp, y2p, D2_ERANGE, "element 1 = 1.5 is not an int32 integer");
    float xn[6] = {1, 2, 3, NAN, 5, 6};
    write_npy(bp, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", xn,
              sizeof xn);
    expect_npy_error(bp, yp, D2_EINVAL, "row 1, feature 1: NaN feature value");
}

static void expect_npy_support_null_labels(void **state)
{
    fixture *fx = *state;
    char xp[512];
    path_in(fx, xp, sizeof xp, "x.npy");
    dataset d;
    d2_error e = {0};
    assert_int_equal(data_load_support(&d, xp, NULL, &e), D2_EINVAL);
    assert_msg_has(&e, "needs a labels .npy file");
    assert_int_equal(data_load_support(&d, "data.parquet", NULL, &e), D2_EUNSUPPORTED);
    assert_msg_has(&e, "unknown data file type");
}

/* ---- safetensors ------------------------------------------------------ */

static void write_st(const char *path, const char *xname, st_dtype xt, int xndim,
                     const int64_t *xs, const void *xd, size_t xb, const char *yname, st_dtype yt,
                     int64_t yn, const void *yd, size_t yb)
{
    st_writer w;
    st_writer_init(&w);
    d2_error e = {0};
    if (xname)
        assert_int_equal(st_writer_add(&w, xname, xt, xndim, xs, xd, xb, &e), 0);
    if (yname)
        assert_int_equal(st_writer_add(&w, yname, yt, 1, &yn, yd, yb, &e), 0);
    assert_int_equal(st_writer_save(&w, path, &e), 0);
    st_writer_free(&w);
}

static void expect_st_error(const char *path, int code, const char *needle)
{
    dataset d;
    d2_error e = {0};
    int rc = data_load_support(&d, path, NULL, &e);
    if (rc == 0)
        fail_msg("safetensors data accepted (%s)", needle);
    assert_int_equal(rc, code);
    assert_msg_has(&e, needle);
    assert_msg_has(&e, path);
    assert_null(d.x);
}

static void test_safetensors_data(void **state)
{
    fixture *fx = *state;
    char p[512];
    path_in(fx, p, sizeof p, "d.safetensors");
    uint16_t xh[6];
    const float xv[6] = {0.5f, -1, 2, 0.25f, 8, 3};
    for (int i = 0; i < 6; i++)
        xh[i] = st_f32_to_f16(xv[i]);
    int64_t xs[2] = {3, 2};
    int64_t y[3] = {2, 0, 1};
    write_st(p, "x", ST_F16, 2, xs, xh, sizeof xh, "y", ST_I64, 3, y, sizeof y);
    dataset d;
    d2_error e = {0};
    assert_int_equal(data_load_support(&d, p, NULL, &e), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.dim, 2);
    assert_int_equal(d.classes, 3);
    assert_memory_equal(d.x, xv, sizeof xv);
    assert_int_equal(d.y[0], 2);
    dataset_free(&d);
    /* From memory. */
    unsigned char *b;
    size_t len;
    assert_int_equal(d2_read_file(p, &b, &len, 0, &e), 0);
    assert_int_equal(data_parse_safetensors(&d, b, len, &e), 0);
    assert_int_equal(d.n, 3);
    dataset_free(&d);
    assert_int_equal(data_parse_safetensors(&d, b, len - 1, &e), D2_EFORMAT);
    assert_msg_has(&e, "beyond the data section");
    free(b);

    write_st(p, "features", ST_F16, 2, xs, xh, sizeof xh, "y", ST_I64, 3, y, sizeof y);
    expect_st_error(p, D2_ENOTFOUND, "missing tensor \"x\"");
    write_st(p, "x", ST_F16, 2, xs, xh, sizeof xh, "labels", ST_I64, 3, y, sizeof y);
    expect_st_error(p, D2_ENOTFOUND, "missing tensor \"y\"");
    write_st(p, "x", ST_F16, 2, xs, xh, sizeof xh, "y", ST_I64, 2, y, 16);
    expect_st_error(p, D2_EFORMAT, "x has 3 rows but y has 2 labels");
    int64_t flat = 6;
    write_st(p, "x", ST_F16, 1, &flat, xh, sizeof xh, "y", ST_I64, 3, y, sizeof y);
    expect_st_error(p, D2_EFORMAT, "tensor \"x\" has 1 dimension; expected x [n, D]");
    int64_t yneg[3] = {0, 1, -4};
    write_st(p, "x", ST_F16, 2, xs, xh, sizeof xh, "y", ST_I64, 3, yneg, sizeof yneg);
    expect_st_error(p, D2_EINVAL, "row 2: label -4 is negative");
    int64_t ybig[3] = {0, 1, 5000000000ll};
    write_st(p, "x", ST_F16, 2, xs, xh, sizeof xh, "y", ST_I64, 3, ybig, sizeof ybig);
    expect_st_error(p, D2_ERANGE, "does not fit in int32");
    float xinf[6] = {1, 2, 3, 4, INFINITY, 6};
    write_st(p, "x", ST_F32, 2, xs, xinf, sizeof xinf, "y", ST_I64, 3, y, sizeof y);
    expect_st_error(p, D2_EINVAL, "row 2, feature 0: infinite feature value");
    int64_t zs[2] = {0, 2};
    write_st(p, "x", ST_F32, 2, zs, NULL, 0, "y", ST_I64, 0, NULL, 0);
    expect_st_error(p, D2_EINVAL, "no samples (n = 0)");
    tu_write_bytes(p, "\x10\0\0\0\0\0\0\0{\"x\":", 13);
    expect_st_error(p, D2_EFORMAT, "truncated header");
}

/* ---- dataset container ------------------------------------------------- */

static void test_validate_and_fingerprint(void **state)
{
    (void)state;
    dataset a, b;
    d2_error e = {0};
    const float xs[6] = {0.5f, -1.0f, 2.0f, 1.5f, 0.0f, -0.25f};
    assert_int_equal(dataset_alloc(&a, 2, 3, &e), 0);
    memcpy(a.x, xs, sizeof xs);
    a.y[0] = 1;
    a.y[1] = 0;
    assert_int_equal(dataset_validate(&a, &e), 0);
    assert_int_equal(a.classes, 2);
    char h1[65], h2[65];
    dataset_fingerprint(&a, h1);
    /* Computed with Python's hashlib over b"d2nwg-dataset-v1" + <III + <f4 + <i4. */
    assert_string_equal(h1, "7b1282a7779ccc38183aadf2294ae817c12a2fd418bae3904b21756c915bc97b");
    assert_int_equal(dataset_alloc(&b, 2, 3, &e), 0);
    memcpy(b.x, xs, sizeof xs);
    b.y[0] = 1;
    b.y[1] = 0;
    assert_int_equal(dataset_validate(&b, &e), 0);
    dataset_fingerprint(&b, h2);
    assert_string_equal(h1, h2);
    b.y[0] = 0;
    b.y[1] = 1;
    dataset_fingerprint(&b, h2);
    assert_string_not_equal(h1, h2);
    b.y[0] = 1;
    b.y[1] = 0;
    b.x[4] = -0.0f; /* a different bit pattern is different content */
    dataset_fingerprint(&b, h2);
    assert_string_not_equal(h1, h2);
    dataset_free(&b);

    /* validate's refusals. */
    a.x[4] = NAN;
    assert_int_equal(dataset_validate(&a, &e), D2_EINVAL);
    assert_msg_has(&e, "row 1, feature 1: NaN feature value");
    a.x[4] = 0;
    a.y[0] = -2;
    assert_int_equal(dataset_validate(&a, &e), D2_EINVAL);
    assert_msg_has(&e, "row 0: label -2 is negative");
    a.y[0] = 2;
    assert_int_equal(dataset_validate(&a, &e), D2_ERANGE);
    assert_msg_has(&e, "row 0: label 2 is out of range");
    a.y[0] = 1;
    a.y[1] = 1;
    assert_int_equal(dataset_validate(&a, &e), D2_EINVAL);
    assert_msg_has(&e, "class 0 has no sample");
    dataset_free(&a);
    assert_int_equal(dataset_alloc(&a, 0, 3, &e), 0);
    assert_int_equal(dataset_validate(&a, &e), D2_EINVAL);
    assert_msg_has(&e, "no samples (n = 0)");
    dataset_free(&a);
    assert_int_equal(dataset_alloc(&a, 2, 0, &e), D2_EINVAL);
    assert_int_equal(dataset_alloc(&a, -1, 3, &e), D2_EINVAL);
    assert_msg_has(&e, "invalid size n = -1");
}

/* ---- tasks ------------------------------------------------------------- */

/* 5 classes x 10 rows; x[i] = {i, label}. Row i has label i % 5. */
static void make_grid(dataset *d)
{
    d2_error e = {0};
    assert_int_equal(dataset_alloc(d, 50, 2, &e), 0);
    for (int i = 0; i < 50; i++) {
        d->x[2 * i] = (float)i;
        d->x[2 * i + 1] = (float)(i % 5);
        d->y[i] = i % 5;
    }
    assert_int_equal(dataset_validate(d, &e), 0);
}

static void test_class_index(void **state)
{
    (void)state;
    dataset d;
    make_grid(&d);
    class_index ci;
    d2_error e = {0};
    assert_int_equal(class_index_build(&ci, &d, &e), 0);
    assert_int_equal(ci.classes, 5);
    for (int c = 0; c < 5; c++) {
        assert_int_equal(ci.count[c], 10);
        for (int k = 0; k < 10; k++)
            assert_int_equal(ci.rows[c][k], c + 5 * k);
    }
    class_index_free(&ci);
    d.y[3] = 9;
    assert_int_equal(class_index_build(&ci, &d, &e), D2_ERANGE);
    assert_msg_has(&e, "row 3: label 9 is outside 0..4");
    dataset_free(&d);
}

static void test_task_draw(void **state)
{
    (void)state;
    dataset d, out, out2;
    make_grid(&d);
    class_index ci;
    d2_error e = {0};
    assert_int_equal(class_index_build(&ci, &d, &e), 0);
    task t = {.way = 3, .classes = {3, 1, 4}};
    rng r;
    rng_init(&r, 42, 0);
    assert_int_equal(task_draw(&d, &ci, &t, 4, &r, &out, &e), 0);
    assert_int_equal(out.n, 12);
    assert_int_equal(out.dim, 2);
    assert_int_equal(out.classes, 3);
    for (int i = 0; i < 12; i++) {
        int lab = i / 4;
        assert_int_equal(out.y[i], lab);
        /* The row comes from the task's class at that position... */
        assert_true(out.x[2 * i + 1] == (float)t.classes[lab]);
        assert_int_equal((int)out.x[2 * i] % 5, t.classes[lab]);
        /* ...and is not drawn twice. */
        for (int j = 0; j < i; j++)
            assert_true(out.x[2 * j] != out.x[2 * i]);
    }
    /* Same seed, same draw; another seed, another draw. */
    rng_init(&r, 42, 0);
    assert_int_equal(task_draw(&d, &ci, &t, 4, &r, &out2, &e), 0);
    assert_memory_equal(out.x, out2.x, 24 * sizeof(float));
    dataset_free(&out2);
    rng_init(&r, 43, 0);
    assert_int_equal(task_draw(&d, &ci, &t, 4, &r, &out2, &e), 0);
    assert_memory_not_equal(out.x, out2.x, 24 * sizeof(float));
    dataset_free(&out2);
    dataset_free(&out);
    /* per_class <= 0: all rows; per_class > count: all of them. */
    assert_int_equal(task_draw(&d, &ci, &t, 0, &r, &out, &e), 0);
    assert_int_equal(out.n, 30);
    float seen[50] = {0};
    for (int i = 0; i < 30; i++)
        seen[(int)out.x[2 * i]] += 1;
    for (int i = 0; i < 50; i++)
        assert_true(seen[i] == ((i % 5 == 3 || i % 5 == 1 || i % 5 == 4) ? 1.0f : 0.0f));
    dataset_free(&out);
    assert_int_equal(task_draw(&d, &ci, &t, 99, &r, &out, &e), 0);
    assert_int_equal(out.n, 30);
    dataset_free(&out);
    /* Every row of a class is about equally likely (2000 one-shot draws of
     * one class: 200 per row expected). */
    task one = {.way = 1, .classes = {2}};
    int hits[10] = {0};
    rng_init(&r, 7, 0);
    for (int k = 0; k < 2000; k++) {
        assert_int_equal(task_draw(&d, &ci, &one, 1, &r, &out, &e), 0);
        hits[(int)out.x[0] / 5]++;
        dataset_free(&out);
    }
    for (int k = 0; k < 10; k++)
        assert_true(hits[k] > 140 && hits[k] < 260);
    /* Refusals. */
    task dup = {.way = 2, .classes = {1, 1}};
    assert_int_equal(task_draw(&d, &ci, &dup, 2, &r, &out, &e), D2_EINVAL);
    assert_msg_has(&e, "class 1 appears twice");
    task range = {.way = 2, .classes = {1, 5}};
    assert_int_equal(task_draw(&d, &ci, &range, 2, &r, &out, &e), D2_EINVAL);
    assert_msg_has(&e, "class 5 (position 1) is outside 0..4");
    task big = {.way = D2_MAX_WAY + 1};
    assert_int_equal(task_draw(&d, &ci, &big, 2, &r, &out, &e), D2_EINVAL);
    class_index_free(&ci);
    /* A class with no rows. */
    d.classes = 6;
    assert_int_equal(class_index_build(&ci, &d, &e), 0);
    task empty = {.way = 2, .classes = {0, 5}};
    assert_int_equal(task_draw(&d, &ci, &empty, 2, &r, &out, &e), D2_EINVAL);
    assert_msg_has(&e, "class 5 has no rows");
    assert_null(out.x);
    class_index_free(&ci);
    dataset_free(&d);
}

/* Real data: a 5-way task from Fashion-MNIST's train split. */
static void test_task_fashion(void **state)
{
    fixture *fx = *state;
    class_index ci;
    d2_error e = {0};
    assert_int_equal(class_index_build(&ci, &fx->fm.train, &e), 0);
    for (int c = 0; c < 10; c++)
        assert_int_equal(ci.count[c], 6000);
    task t = {.way = 5, .classes = {9, 0, 7, 2, 5}};
    rng r;
    rng_init(&r, 1, 0);
    dataset out;
    assert_int_equal(task_draw(&fx->fm.train, &ci, &t, 5, &r, &out, &e), 0);
    assert_int_equal(out.n, 25);
    assert_int_equal(out.dim, 784);
    assert_int_equal(dataset_validate(&out, &e), 0);
    assert_int_equal(out.classes, 5);
    /* Each drawn row is a real row of the source with the task's class. */
    for (int i = 0; i < out.n; i++) {
        int found = 0;
        int c = t.classes[out.y[i]];
        for (int k = 0; k < ci.count[c] && !found; k++)
            found = memcmp(out.x + (size_t)i * 784, fx->fm.train.x + (size_t)ci.rows[c][k] * 784,
                           784 * sizeof(float)) == 0;
        assert_true(found);
    }
    dataset_free(&out);
    class_index_free(&ci);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_sklearn_sources),
        cmocka_unit_test(test_user_sources),
        cmocka_unit_test(test_idx_malformed),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_npy),
        cmocka_unit_test(expect_npy_support_null_labels),
        cmocka_unit_test(test_safetensors_data),
        cmocka_unit_test(test_validate_and_fingerprint),
        cmocka_unit_test(test_class_index),
        cmocka_unit_test(test_task_draw),
        cmocka_unit_test(test_task_fashion),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
