/* data.c - the dataset container: allocation, validation, content
 * fingerprint, and the by-extension support-set loader. */
#include "data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

int dataset_alloc(dataset *d, int n, int dim, d2_error *err)
{
    memset(d, 0, sizeof *d);
    if (n < 0 || dim <= 0)
        return d2_fail(err, D2_EINVAL, "dataset_alloc: invalid size n = %d, dim = %d", n, dim);
    size_t cells;
    if (__builtin_mul_overflow((size_t)n, (size_t)dim, &cells) || cells > SIZE_MAX / 4)
        return d2_fail(err, D2_ERANGE, "dataset_alloc: %d x %d features overflow", n, dim);
    d->x = malloc(cells ? cells * sizeof(float) : 1);
    d->y = malloc(n ? (size_t)n * sizeof(int32_t) : 1);
    if (!d->x || !d->y) {
        dataset_free(d);
        return d2_fail(err, D2_ENOMEM, "out of memory for a %d x %d dataset", n, dim);
    }
    d->n = n;
    d->dim = dim;
    return 0;
}

void dataset_free(dataset *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

int dataset_validate(dataset *d, d2_error *err)
{
    if (d->n <= 0)
        return d2_fail(err, D2_EINVAL, "no samples (n = %d)", d->n);
    if (d->dim <= 0)
        return d2_fail(err, D2_EINVAL, "no features (dim = %d)", d->dim);
    if (!d->x || !d->y)
        return d2_fail(err, D2_EINVAL, "dataset has no storage");
    for (int i = 0; i < d->n; i++) {
        const float *row = d->x + (size_t)i * (size_t)d->dim;
        for (int j = 0; j < d->dim; j++)
            if (!isfinite(row[j]))
                return d2_fail(err, D2_EINVAL, "row %d, feature %d: %s feature value", i, j,
                               isnan(row[j]) ? "NaN" : "infinite");
    }
    int32_t maxl = 0;
    for (int i = 0; i < d->n; i++) {
        if (d->y[i] < 0)
            return d2_fail(err, D2_EINVAL, "row %d: label %d is negative", i, (int)d->y[i]);
        if (d->y[i] >= d->n)
            return d2_fail(err, D2_ERANGE,
                           "row %d: label %d is out of range (%d rows can hold labels 0..%d "
                           "with every class present)",
                           i, (int)d->y[i], d->n, d->n - 1);
        if (d->y[i] > maxl)
            maxl = d->y[i];
    }
    int classes = (int)maxl + 1;
    char *seen = calloc((size_t)classes, 1);
    if (!seen)
        return d2_fail(err, D2_ENOMEM, "out of memory checking %d classes", classes);
    for (int i = 0; i < d->n; i++)
        seen[d->y[i]] = 1;
    int missing = -1, nmissing = 0;
    for (int c = 0; c < classes; c++)
        if (!seen[c] && nmissing++ == 0)
            missing = c;
    free(seen);
    if (nmissing > 0)
        return d2_fail(err, D2_EINVAL,
                       "labels must cover 0..%d: class %d has no sample (%d of %d classes "
                       "empty)",
                       classes - 1, missing, nmissing, classes);
    d->classes = classes;
    return 0;
}

static void fp_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

void dataset_fingerprint(const dataset *d, char hex[65])
{
    sha256_ctx c;
    unsigned char buf[4096];
    sha256_init(&c);
    sha256_update(&c, "d2nwg-dataset-v1", 16);
    fp_put_u32(buf, (uint32_t)d->n);
    fp_put_u32(buf + 4, (uint32_t)d->dim);
    fp_put_u32(buf + 8, (uint32_t)d->classes);
    sha256_update(&c, buf, 12);
    /* x as float32 little-endian, then y as int32 little-endian, packed in
     * blocks so the encoding does not depend on the host's byte order. */
    size_t nx = (d->n > 0 && d->dim > 0) ? (size_t)d->n * (size_t)d->dim : 0;
    size_t fill = 0;
    for (size_t i = 0; i < nx; i++) {
        uint32_t u;
        memcpy(&u, &d->x[i], 4);
        fp_put_u32(buf + fill, u);
        fill += 4;
        if (fill == sizeof buf) {
            sha256_update(&c, buf, fill);
            fill = 0;
        }
    }
    for (int i = 0; i < d->n; i++) {
        fp_put_u32(buf + fill, (uint32_t)d->y[i]);
        fill += 4;
        if (fill == sizeof buf) {
            sha256_update(&c, buf, fill);
            fill = 0;
        }
    }
    sha256_update(&c, buf, fill);
    unsigned char digest[32];
    sha256_final(&c, digest);
    sha256_to_hex(digest, hex);
}

static int data_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int data_load_support(dataset *d, const char *path, const char *labels_path, d2_error *err)
{
    memset(d, 0, sizeof *d);
    if (!path)
        return d2_fail(err, D2_EINVAL, "no data path given");
    if (data_has_suffix(path, ".csv") || data_has_suffix(path, ".csv.gz"))
        return data_load_csv(d, path, err);
    if (data_has_suffix(path, ".safetensors"))
        return data_load_safetensors(d, path, err);
    if (data_has_suffix(path, ".npy")) {
        if (!labels_path)
            return d2_fail(err, D2_EINVAL, "%s: an .npy feature file needs a labels .npy file",
                           path);
        return data_load_npy_pair(d, path, labels_path, err);
    }
    return d2_fail(err, D2_EUNSUPPORTED,
                   "%s: unknown data file type (expected .csv, .csv.gz, .npy or .safetensors)",
                   path);
}
