/* data_idx.c - IDX files (MNIST / Fashion-MNIST layout), gzip or plain,
 * read through zlib.
 *
 * IDX: magic = 0x00 0x00 <type> <ndim>, then ndim big-endian uint32 sizes,
 * then the items. Images: type 0x08 (unsigned byte), ndim >= 2, [n, h, w...];
 * labels: type 0x08, ndim 1, [n]. Pixels are scaled to [0, 1] (/255). The file
 * must hold exactly the bytes its header announces. */
#include "data.h"
#include "data_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>


typedef struct idx_file {
    gzFile g;
    const char *path;
    int ndim;
    uint32_t dims[8];
    size_t items; /* product of dims[1..] (items per record) */
    size_t offset; /* decompressed bytes consumed */
} idx_file;

/* Read exactly len bytes; names path and offset on a short read. */
static int idx_read(idx_file *f, void *dst, size_t len, const char *what, d2_error *err)
{
    unsigned char *p = dst;
    size_t got = 0;
    while (got < len) {
        size_t want = len - got > (1u << 30) ? (1u << 30) : len - got;
        int r = gzread(f->g, p + got, (unsigned)want);
        if (r < 0)
            return d2_fail(err, D2_EFORMAT, "%s: gzip error at offset %zu: %s", f->path,
                           f->offset + got, data_gz_error(f->g, f->path));
        if (r == 0) {
            int code;
            gzerror(f->g, &code);
            const char *m = data_gz_error(f->g, f->path);
            if (code != Z_OK && code != Z_STREAM_END)
                return d2_fail(err, D2_EFORMAT,
                               "%s: truncated or corrupt gzip data in the %s: expected %zu bytes "
                               "at offset %zu, got %zu: %s",
                               f->path, what, len, f->offset, got, m);
            return d2_fail(err, D2_EFORMAT,
                           "%s: truncated %s: expected %zu bytes at offset %zu, the file ends "
                           "%zu bytes later",
                           f->path, what, len, f->offset, got);
        }
        got += (size_t)r;
    }
    f->offset += len;
    return 0;
}

static int idx_open(idx_file *f, const char *path, int want_ndim_min, int want_ndim_max,
                    d2_error *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    errno = 0;
    f->g = gzopen(path, "rb");
    if (!f->g)
        return d2_fail(err, errno == ENOENT ? D2_ENOTFOUND : D2_EIO, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "out of memory");
    gzbuffer(f->g, 1 << 17);
    unsigned char magic[4];
    int rc = idx_read(f, magic, 4, "IDX magic", err);
    if (rc)
        return rc;
    if (magic[0] != 0 || magic[1] != 0)
        return d2_fail(err, D2_EFORMAT,
                       "%s: bad magic %02x %02x %02x %02x at offset 0 (an IDX file starts with "
                       "00 00 <type> <ndim>)",
                       path, magic[0], magic[1], magic[2], magic[3]);
    if (magic[2] != 0x08)
        return d2_fail(err, D2_EUNSUPPORTED,
                       "%s: IDX element type 0x%02x at offset 2 is not supported (only 0x08, "
                       "unsigned byte)",
                       path, magic[2]);
    f->ndim = magic[3];
    if (f->ndim < want_ndim_min || f->ndim > want_ndim_max)
        return d2_fail(err, D2_EFORMAT, "%s: IDX has %d dimensions at offset 3, expected %d%s%s",
                       path, f->ndim, want_ndim_min, want_ndim_max > want_ndim_min ? " to " : "",
                       want_ndim_max > want_ndim_min ? "8" : "");
    unsigned char dims[32];
    rc = idx_read(f, dims, (size_t)f->ndim * 4, "IDX dimensions", err);
    if (rc)
        return rc;
    f->items = 1;
    for (int i = 0; i < f->ndim; i++) {
        f->dims[i] = (uint32_t)dims[4 * i] << 24 | (uint32_t)dims[4 * i + 1] << 16 |
                     (uint32_t)dims[4 * i + 2] << 8 | dims[4 * i + 3];
        if (f->dims[i] == 0)
            return d2_fail(err, D2_EFORMAT, "%s: dimension %d at offset %d is 0%s", path, i,
                           4 + 4 * i, i == 0 ? " (n = 0: no samples)" : "");
        if (f->dims[i] > INT32_MAX)
            return d2_fail(err, D2_ERANGE, "%s: dimension %d = %u at offset %d is too large",
                           path, i, f->dims[i], 4 + 4 * i);
        if (i > 0 && __builtin_mul_overflow(f->items, (size_t)f->dims[i], &f->items))
            return d2_fail(err, D2_ERANGE, "%s: record size overflows", path);
    }
    return 0;
}

/* After the announced data, the file must end. */
static int idx_expect_end(idx_file *f, d2_error *err)
{
    unsigned char extra;
    int r = gzread(f->g, &extra, 1);
    int code;
    gzerror(f->g, &code);
    if (r < 0 || (code != Z_OK && code != Z_STREAM_END))
        return d2_fail(err, D2_EFORMAT, "%s: gzip error at offset %zu: %s", f->path, f->offset,
                       data_gz_error(f->g, f->path));
    if (r > 0)
        return d2_fail(err, D2_EFORMAT,
                       "%s: trailing data at offset %zu: the file is longer than its header "
                       "announces",
                       f->path, f->offset);
    return 0;
}

static int idx_close(idx_file *f, int rc, d2_error *err)
{
    if (f->g) {
        int c = gzclose_r(f->g);
        f->g = NULL;
        if (rc == 0 && c != Z_OK)
            return d2_fail(err, D2_EFORMAT, "%s: corrupt gzip data (close failed)", f->path);
    }
    return rc;
}

static int idx_load_labels(dataset *d, const char *path, int n_expected, d2_error *err)
{
    idx_file f;
    int rc = idx_open(&f, path, 1, 1, err);
    if (!rc && (int)f.dims[0] != n_expected)
        rc = d2_fail(err, D2_EFORMAT, "%s: %u labels but the images file holds %d images", path,
                     f.dims[0], n_expected);
    unsigned char *lab = NULL;
    if (!rc) {
        lab = malloc(f.dims[0]);
        if (!lab)
            rc = d2_fail(err, D2_ENOMEM, "%s: out of memory", path);
    }
    if (!rc)
        rc = idx_read(&f, lab, f.dims[0], "label data", err);
    if (!rc)
        rc = idx_expect_end(&f, err);
    if (!rc)
        for (int i = 0; i < n_expected; i++)
            d->y[i] = lab[i];
    free(lab);
    return idx_close(&f, rc, err);
}

int data_load_idx(dataset *d, const char *images_path, const char *labels_path, d2_error *err)
{
    memset(d, 0, sizeof *d);
    idx_file f;
    int rc = idx_open(&f, images_path, 2, 8, err);
    if (!rc && f.items > INT32_MAX)
        rc = d2_fail(err, D2_ERANGE, "%s: %zu features per image is too many", images_path,
                     f.items);
    if (!rc)
        rc = dataset_alloc(d, (int)f.dims[0], (int)f.items, err);
    if (!rc) {
        /* Stream the pixels in blocks, converting to float in [0, 1]. */
        size_t total = (size_t)d->n * (size_t)d->dim, done = 0;
        size_t block = 1 << 20;
        unsigned char *tmp = malloc(block);
        if (!tmp)
            rc = d2_fail(err, D2_ENOMEM, "%s: out of memory", images_path);
        while (!rc && done < total) {
            size_t k = total - done < block ? total - done : block;
            rc = idx_read(&f, tmp, k, "pixel data", err);
            for (size_t i = 0; !rc && i < k; i++)
                d->x[done + i] = (float)tmp[i] / 255.0f;
            done += k;
        }
        free(tmp);
    }
    if (!rc)
        rc = idx_expect_end(&f, err);
    rc = idx_close(&f, rc, err);
    if (!rc)
        rc = idx_load_labels(d, labels_path, d->n, err);
    if (!rc) {
        rc = dataset_validate(d, err);
        if (rc)
            d2_wrap(err, "%s", labels_path);
    }
    if (rc)
        dataset_free(d);
    return rc;
}
