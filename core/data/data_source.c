/* data_source.c - named data sources with train/test splits:
 *   fashion-mnist   IDX files of Debian's dataset-fashion-mnist (60k/10k)
 *   digits          scikit-learn digits.csv.gz (no header, label last; 1797 x 64)
 *   digits-28       the same, pixels scaled to [0, 1] (/16) and resized to 28x28
 *                   (bilinear), the input size of Fashion-MNIST models
 *   iris, wine      scikit-learn CSVs (header n_samples,n_features,classes...)
 *   csv:PATH        the user layout (header, label first)
 *   idx:PREFIX      PREFIX-train-images-idx3-ubyte[.gz], ...; a directory
 *                   PREFIX holds the names without the prefix
 *   glyphs:SEL      letters of many scripts drawn from fonts (glyph_source.c)
 *   (words:SEL is a text source, words.h, refused here by name)
 * Sources without a split are split per class, 80% train, deterministically.
 * Feature values are the files' own, except IDX pixels (scaled to [0, 1]). */
#include "data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_internal.h"

#define DATA_FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define DATA_SKLEARN_DIR "/usr/lib/python3/dist-packages/sklearn/datasets/data"
#define DATA_SPLIT_SEED 20250101u
#define DATA_SPLIT_TRAIN 0.8

int data_split_per_class(const dataset *all, uint64_t seed, double frac, dataset *train,
                         dataset *test, d2_error *err)
{
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    class_index ci;
    int rc = class_index_build(&ci, all, err);
    if (rc)
        return rc;
    char *is_train = calloc((size_t)all->n, 1);
    if (!is_train) {
        class_index_free(&ci);
        return d2_fail(err, D2_ENOMEM, "out of memory splitting %d rows", all->n);
    }
    int ntrain = 0;
    for (int c = 0; c < ci.classes && !rc; c++) {
        int m = ci.count[c];
        if (m < 2) {
            rc = d2_fail(err, D2_EINVAL,
                         "class %d has %d sample%s; a train/test split needs at least 2", c, m,
                         m == 1 ? "" : "s");
            break;
        }
        int k = (int)(frac * m + 0.5);
        if (k < 1)
            k = 1;
        if (k > m - 1)
            k = m - 1;
        int *rows = malloc((size_t)m * sizeof *rows);
        if (!rows) {
            rc = d2_fail(err, D2_ENOMEM, "out of memory splitting class %d", c);
            break;
        }
        memcpy(rows, ci.rows[c], (size_t)m * sizeof *rows);
        rng r;
        rng_init(&r, rng_derive(seed, "data-split", (uint64_t)c), 0);
        rng_shuffle_int(&r, rows, m);
        for (int i = 0; i < k; i++)
            is_train[rows[i]] = 1;
        ntrain += k;
        free(rows);
    }
    class_index_free(&ci);
    if (!rc)
        rc = dataset_alloc(train, ntrain, all->dim, err);
    if (!rc)
        rc = dataset_alloc(test, all->n - ntrain, all->dim, err);
    if (!rc) {
        int a = 0, b = 0;
        size_t row_bytes = (size_t)all->dim * sizeof(float);
        for (int i = 0; i < all->n; i++) {
            dataset *dst = is_train[i] ? train : test;
            int j = is_train[i] ? a++ : b++;
            memcpy(dst->x + (size_t)j * (size_t)all->dim, all->x + (size_t)i * (size_t)all->dim,
                   row_bytes);
            dst->y[j] = all->y[i];
        }
        rc = dataset_validate(train, err);
        if (!rc)
            rc = dataset_validate(test, err);
    }
    free(is_train);
    if (rc) {
        dataset_free(train);
        dataset_free(test);
    }
    return rc;
}

static int source_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* PREFIX-part or PREFIX/part, with ".gz" preferred when present. */
static int source_idx_path(char *out, size_t cap, const char *prefix, const char *part,
                           d2_error *err)
{
    struct stat sb;
    int is_dir = stat(prefix, &sb) == 0 && S_ISDIR(sb.st_mode);
    int n = snprintf(out, cap, "%s%s%s.gz", prefix, is_dir ? "/" : "-", part);
    if (n < 0 || (size_t)n >= cap)
        return d2_fail(err, D2_EINVAL, "idx prefix too long: %.64s...", prefix);
    if (!source_exists(out))
        out[n - 3] = '\0'; /* the plain file; a missing one is reported by the reader */
    return 0;
}

static int source_load_idx(data_source *s, const char *prefix, d2_error *err)
{
    char ti[4096], tl[4096], vi[4096], vl[4096];
    int rc = source_idx_path(ti, sizeof ti, prefix, "train-images-idx3-ubyte", err);
    if (!rc)
        rc = source_idx_path(tl, sizeof tl, prefix, "train-labels-idx1-ubyte", err);
    if (!rc)
        rc = source_idx_path(vi, sizeof vi, prefix, "t10k-images-idx3-ubyte", err);
    if (!rc)
        rc = source_idx_path(vl, sizeof vl, prefix, "t10k-labels-idx1-ubyte", err);
    if (!rc)
        rc = data_load_idx(&s->train, ti, tl, err);
    if (!rc)
        rc = data_load_idx(&s->test, vi, vl, err);
    if (!rc && s->train.dim != s->test.dim)
        rc = d2_fail(err, D2_EFORMAT, "%s: train images have %d features, test images %d", prefix,
                     s->train.dim, s->test.dim);
    if (!rc && s->train.classes != s->test.classes)
        rc = d2_fail(err, D2_EFORMAT, "%s: train labels have %d classes, test labels %d", prefix,
                     s->train.classes, s->test.classes);
    return rc;
}

static int source_load_split(data_source *s, const char *path, data_csv_layout layout,
                             d2_error *err)
{
    unsigned char *buf;
    size_t len;
    int rc = data_read_all(path, &buf, &len, DATA_MAX_FILE, err);
    if (rc)
        return rc;
    dataset all;
    rc = data_csv_parse(&all, path, (const char *)buf, len, layout, err);
    free(buf);
    if (rc)
        return rc;
    rc = data_split_per_class(&all, DATA_SPLIT_SEED, DATA_SPLIT_TRAIN, &s->train, &s->test, err);
    if (rc)
        d2_wrap(err, "%s", path);
    dataset_free(&all);
    return rc;
}

void data_resize_square(const float *in, int s, float *out, int t)
{
    for (int i = 0; i < t; i++)
        for (int j = 0; j < t; j++) {
            double y = (i + 0.5) * s / t - 0.5, x = (j + 0.5) * s / t - 0.5;
            int y0 = (int)floor(y), x0 = (int)floor(x);
            double fy = y - y0, fx = x - x0, acc = 0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    int yy = y0 + dy, xx = x0 + dx;
                    yy = yy < 0 ? 0 : (yy >= s ? s - 1 : yy);
                    xx = xx < 0 ? 0 : (xx >= s ? s - 1 : xx);
                    acc += (dy ? fy : 1 - fy) * (dx ? fx : 1 - fx) * in[yy * s + xx];
                }
            out[i * t + j] = (float)acc;
        }
}

/* Scale d's square images by `scale` and resize them to side t, in place. */
static int source_resize(dataset *d, float scale, int t, d2_error *err)
{
    int s = (int)lround(sqrt((double)d->dim));
    if (s * s != d->dim)
        return d2_fail(err, D2_EINVAL, "%d features per row are not a square image", d->dim);
    dataset out;
    float *row = malloc((size_t)d->dim * sizeof *row);
    int rc = row ? dataset_alloc(&out, d->n, t * t, err) : d2_fail(err, D2_ENOMEM, "out of memory");
    if (rc) {
        free(row);
        return rc;
    }
    for (int i = 0; i < d->n; i++) {
        for (int j = 0; j < d->dim; j++)
            row[j] = d->x[(size_t)i * (size_t)d->dim + (size_t)j] * scale;
        data_resize_square(row, s, out.x + (size_t)i * (size_t)(t * t), t);
    }
    free(row);
    memcpy(out.y, d->y, (size_t)d->n * sizeof *out.y);
    out.classes = d->classes;
    dataset_free(d);
    *d = out;
    return 0;
}

/* scikit-learn's digits (pixels 0..16) as 28x28 images in [0, 1]. */
static int source_load_digits28(data_source *s, d2_error *err)
{
    int rc = source_load_split(s, DATA_SKLEARN_DIR "/digits.csv.gz", DATA_CSV_LABEL_LAST, err);
    if (!rc)
        rc = source_resize(&s->train, 1.0f / 16.0f, 28, err);
    if (!rc)
        rc = source_resize(&s->test, 1.0f / 16.0f, 28, err);
    return rc;
}

int data_source_load(data_source *s, const char *spec, d2_error *err)
{
    memset(s, 0, sizeof *s);
    if (!spec || !*spec)
        return d2_fail(err, D2_EINVAL, "empty data source name");
    snprintf(s->name, sizeof s->name, "%s", spec);
    int rc;
    if (strchr(spec, '+') && strncmp(spec, "csv:", 4) && strncmp(spec, "idx:", 4)) {
        return data_source_concat(s, spec, err);
    } else if (strcmp(spec, "fashion-mnist") == 0) {
        rc = source_load_idx(s, DATA_FASHION_DIR, err);
    } else if (strcmp(spec, "digits") == 0) {
        rc = source_load_split(s, DATA_SKLEARN_DIR "/digits.csv.gz", DATA_CSV_LABEL_LAST, err);
    } else if (strcmp(spec, "digits-28") == 0) {
        rc = source_load_digits28(s, err);
    } else if (strncmp(spec, "glyphs:", 7) == 0) {
        glyph_options o;
        glyph_options_default(&o);
        rc = glyph_source_load(s, spec + 7, &o, err);
        snprintf(s->name, sizeof s->name, "%s", spec);
    } else if (strcmp(spec, "iris") == 0) {
        rc = source_load_split(s, DATA_SKLEARN_DIR "/iris.csv", DATA_CSV_SKLEARN, err);
    } else if (strcmp(spec, "wine") == 0) {
        rc = source_load_split(s, DATA_SKLEARN_DIR "/wine_data.csv", DATA_CSV_SKLEARN, err);
    } else if (strncmp(spec, "csv:", 4) == 0 && spec[4]) {
        rc = source_load_split(s, spec + 4, DATA_CSV_LABEL_FIRST, err);
    } else if (strncmp(spec, "idx:", 4) == 0 && spec[4]) {
        rc = source_load_idx(s, spec + 4, err);
    } else if (strncmp(spec, "words:", 6) == 0) {
        return d2_fail(err, D2_EINVAL, "\"%.100s\" is a text source (words.h): the language "
                       "model's (`d2nwg lm`), not a labelled data set", spec);
    } else {
        return d2_fail(err, D2_EINVAL,
                       "unknown data source \"%.100s\" (expected fashion-mnist, digits, "
                       "digits-28, iris, wine, csv:PATH, idx:PREFIX or glyphs:SELECTION)",
                       spec);
    }
    if (rc) {
        d2_wrap(err, "data source %.100s", spec);
        data_source_free(s);
    }
    return rc;
}

void data_source_free(data_source *s)
{
    if (!s)
        return;
    dataset_free(&s->train);
    dataset_free(&s->test);
    free(s->class_info);
    s->class_info = NULL;
}
