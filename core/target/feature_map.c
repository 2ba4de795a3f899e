/* feature_map.c - feature maps y = W (x - mean): identity, copy, free, and
 * applying one on a backend (resident on it, or through a CPU backend made for
 * the call). The PCA fit is in feature_map_pca.c. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

/* feature_map_cnn.c */
void feature_map_cnn_release(feature_map *f);
int feature_map_cnn_apply(const struct fm_cnn *c, const dataset *in, dataset *out,
                          d2_error *err);

#define APPLY_CHUNK 1024

int feature_map_identity(feature_map *f, int dim, d2_error *err)
{
    memset(f, 0, sizeof *f);
    if (dim < 1)
        return d2_fail(err, D2_EINVAL, "feature map: dimension %d must be positive", dim);
    f->in_dim = f->out_dim = dim;
    return 0;
}

void feature_map_free(feature_map *f)
{
    if (!f)
        return;
    free(f->W);
    free(f->mean);
    feature_map_cnn_release(f);
    memset(f, 0, sizeof *f);
}

int feature_map_copy(feature_map *dst, const feature_map *src, d2_error *err)
{
    memset(dst, 0, sizeof *dst);
    if (src->cnn) { /* load the backbone again; it must still be the same file */
        int rc = feature_map_load_cnn(dst, feature_map_cnn_path(src), err);
        if (!rc && strcmp(feature_map_cnn_sha256(dst), feature_map_cnn_sha256(src))) {
            feature_map_free(dst);
            return d2_fail(err, D2_EINVAL, "cnn:%s changed on disk (sha256 %.12s..., was "
                           "%.12s...)", feature_map_cnn_path(src), feature_map_cnn_sha256(dst),
                           feature_map_cnn_sha256(src));
        }
        return rc;
    }
    dst->in_dim = src->in_dim;
    dst->out_dim = src->out_dim;
    if (!src->W)
        return 0;
    size_t nw = (size_t)src->out_dim * src->in_dim;
    dst->W = malloc(sizeof(float) * nw);
    dst->mean = malloc(sizeof(float) * (size_t)src->in_dim);
    if (!dst->W || !dst->mean) {
        feature_map_free(dst);
        return d2_fail(err, D2_ENOMEM, "feature map: out of memory");
    }
    memcpy(dst->W, src->W, sizeof(float) * nw);
    if (src->mean)
        memcpy(dst->mean, src->mean, sizeof(float) * (size_t)src->in_dim);
    else
        memset(dst->mean, 0, sizeof(float) * (size_t)src->in_dim);
    return 0;
}

int feature_map_upload(feature_map_dev *d, const feature_map *f, backend_t *be, d2_error *err)
{
    memset(d, 0, sizeof *d);
    d->be = be;
    d->in_dim = f->in_dim;
    d->out_dim = f->out_dim;
    d->cnn = f->cnn;
    if (!f->W)
        return 0;
    const size_t nw = (size_t)f->out_dim * f->in_dim, D = (size_t)f->in_dim;
    float *neg = malloc(sizeof(float) * D);
    d->W = backend_alloc_floats(be, nw);
    d->neg_mean = backend_alloc_floats(be, D);
    int rc = 0;
    if (!neg || !d->W || !d->neg_mean) {
        rc = d2_fail(err, D2_ENOMEM, "feature map: out of memory on the device");
        goto out;
    }
    for (size_t j = 0; j < D; j++)
        neg[j] = f->mean ? -f->mean[j] : 0.0f;
    if (be->ops->to_device(be, d->W, f->W, sizeof(float) * nw) ||
        be->ops->to_device(be, d->neg_mean, neg, sizeof(float) * D))
        rc = d2_fail(err, D2_EDEVICE, "feature map: cannot upload it to the device");
out:
    free(neg);
    if (rc)
        feature_map_dev_free(d);
    return rc;
}

void feature_map_dev_free(feature_map_dev *d)
{
    if (!d)
        return;
    if (d->be) {
        if (d->W)
            d->be->ops->free(d->be, d->W);
        if (d->neg_mean)
            d->be->ops->free(d->be, d->neg_mean);
    }
    memset(d, 0, sizeof *d);
}

/* rows [r0, r0 + b) of in -> out, through device buffers x [b, D] and y [b, F] */
static int apply_chunk(const feature_map_dev *d, backend_t *be, const dataset *in, int r0, int b,
                       float *x, float *y, dataset *out)
{
    const int D = d->in_dim, F = d->out_dim;
    if (be->ops->to_device(be, x, in->x + (size_t)r0 * D, sizeof(float) * (size_t)b * D))
        return D2_EDEVICE;
    // centre: x [b, D] += -mean; then y [b, F] = x @ W^T, W: [F, D]
    be->ops->add_bias(be, x, d->neg_mean, b, D);
    be->ops->gemm(be, 0, 1, b, F, D, 1.0f, x, D, d->W, D, 0.0f, y, F);
    if (be->ops->to_host(be, out->x + (size_t)r0 * F, y, sizeof(float) * (size_t)b * F))
        return D2_EDEVICE;
    return 0;
}

int feature_map_apply_dev(const feature_map_dev *d, backend_t *be, const dataset *in,
                          dataset *out, d2_error *err)
{
    memset(out, 0, sizeof *out);
    if (!d || !d->be)
        return d2_fail(err, D2_EINVAL, "feature map: not uploaded to a device");
    if (!in || in->n <= 0 || !in->x)
        return d2_fail(err, D2_EINVAL, "feature map: empty input data set");
    if (in->dim != d->in_dim)
        return d2_fail(err, D2_EINVAL, "feature map: input has %d features, the map expects %d",
                       in->dim, d->in_dim);
    if (d->cnn)
        return feature_map_cnn_apply(d->cnn, in, out, err);
    int rc = dataset_alloc(out, in->n, d->out_dim, err);
    if (rc)
        return rc;
    memcpy(out->y, in->y, sizeof(int32_t) * (size_t)in->n);
    out->classes = in->classes;
    const int D = d->in_dim, F = d->out_dim;
    if (!d->W) {
        memcpy(out->x, in->x, sizeof(float) * (size_t)in->n * D);
        return 0;
    }
    int rows = in->n < APPLY_CHUNK ? in->n : APPLY_CHUNK;
    float *x = backend_alloc_floats(be, (size_t)rows * D);
    float *y = backend_alloc_floats(be, (size_t)rows * F);
    if (!x || !y)
        rc = d2_fail(err, D2_ENOMEM, "feature map: out of device memory for %d rows", rows);
    for (int r0 = 0; !rc && r0 < in->n; r0 += rows) {
        int b = in->n - r0 < rows ? in->n - r0 : rows;
        if (apply_chunk(d, be, in, r0, b, x, y, out))
            rc = d2_fail(err, D2_EDEVICE, "feature map: the device failed on rows %d..%d", r0,
                         r0 + b - 1);
    }
    if (x)
        be->ops->free(be, x);
    if (y)
        be->ops->free(be, y);
    if (rc)
        dataset_free(out);
    return rc;
}

int feature_map_apply(const feature_map *f, const dataset *in, dataset *out, d2_error *err)
{
    memset(out, 0, sizeof *out);
    if (!f)
        return d2_fail(err, D2_EINVAL, "feature map: none given");
    backend_t *be = NULL;
    /* all cores, whatever OpenBLAS's process-wide setting is now: the features (and so the
     * data fingerprints zoos record) must not depend on which backend ran last */
    int rc = backend_cpu_create(&be, 0, err);
    if (rc)
        return rc;
    feature_map_dev d;
    if (!(rc = feature_map_upload(&d, f, be, err))) {
        rc = feature_map_apply_dev(&d, be, in, out, err);
        feature_map_dev_free(&d);
    }
    backend_destroy(be);
    return rc;
}
