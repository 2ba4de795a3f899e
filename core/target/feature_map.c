/* feature_map.c - feature maps y = W (x - mean): identity, apply, copy, free.
 * The PCA fit is in feature_map_pca.c. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

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
    memset(f, 0, sizeof *f);
}

int feature_map_copy(feature_map *dst, const feature_map *src, d2_error *err)
{
    memset(dst, 0, sizeof *dst);
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

int feature_map_apply(const feature_map *f, const dataset *in, dataset *out, d2_error *err)
{
    memset(out, 0, sizeof *out);
    if (!f || !in || in->n <= 0 || !in->x)
        return d2_fail(err, D2_EINVAL, "feature map: empty input data set");
    if (in->dim != f->in_dim)
        return d2_fail(err, D2_EINVAL, "feature map: input has %d features, the map expects %d",
                       in->dim, f->in_dim);
    int rc = dataset_alloc(out, in->n, f->out_dim, err);
    if (rc)
        return rc;
    memcpy(out->y, in->y, sizeof(int32_t) * (size_t)in->n);
    out->classes = in->classes;
    int D = f->in_dim, F = f->out_dim;
    if (!f->W) {
        memcpy(out->x, in->x, sizeof(float) * (size_t)in->n * D);
        return 0;
    }
    int rows = in->n < APPLY_CHUNK ? in->n : APPLY_CHUNK;
    float *c = malloc(sizeof(float) * (size_t)rows * D);
    if (!c) {
        dataset_free(out);
        return d2_fail(err, D2_ENOMEM, "feature map: out of memory");
    }
    for (int r0 = 0; r0 < in->n; r0 += rows) {
        int b = in->n - r0 < rows ? in->n - r0 : rows;
        // centre: c [b, D] = x - mean
        for (int i = 0; i < b; i++) {
            const float *xi = in->x + (size_t)(r0 + i) * D;
            float *ci = c + (size_t)i * D;
            for (int j = 0; j < D; j++)
                ci[j] = xi[j] - (f->mean ? f->mean[j] : 0.0f);
        }
        // y: [b, F] = c [b, D] @ W^T, W: [F, D]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, F, D, 1.0f, c, D, f->W, D, 0.0f,
                    out->x + (size_t)r0 * F, F);
    }
    free(c);
    return 0;
}
