/* data_st.c - labelled sets stored as safetensors: `x` [n, D] (any numeric
 * dtype, float ones in practice; more than two dimensions are flattened to
 * D = product of the rest) and `y` [n] (any integer dtype, or integral
 * floats). Other tensors and metadata are ignored. */
#include "data.h"

#include <string.h>

#include "safetensors.h"

static int data_from_st(dataset *d, const st_file *f, d2_error *err)
{
    const st_tensor *x = st_find(f, "x");
    const st_tensor *y = st_find(f, "y");
    if (!x || !y)
        return d2_fail(err, D2_ENOTFOUND, "missing tensor \"%s\" (expected x [n, D] and y [n])",
                       !x ? "x" : "y");
    if (x->ndim < 2)
        return d2_fail(err, D2_EFORMAT, "tensor \"x\" has %d dimension%s; expected x [n, D]",
                       x->ndim, x->ndim == 1 ? "" : "s");
    if (!(y->ndim == 1 || (y->ndim == 2 && y->shape[1] == 1)))
        return d2_fail(err, D2_EFORMAT, "tensor \"y\" has %d dimensions; expected y [n]",
                       y->ndim);
    if (x->dtype == ST_BOOL)
        return d2_fail(err, D2_EUNSUPPORTED, "tensor \"x\" has dtype BOOL; expected numbers");
    if (x->shape[0] != y->shape[0])
        return d2_fail(err, D2_EFORMAT, "x has %lld rows but y has %lld labels",
                       (long long)x->shape[0], (long long)y->shape[0]);
    if (x->shape[0] == 0)
        return d2_fail(err, D2_EINVAL, "no samples (n = 0)");
    size_t dim = x->numel / (size_t)x->shape[0];
    if (dim == 0)
        return d2_fail(err, D2_EINVAL, "no features (x has D = 0)");
    if (x->shape[0] > INT32_MAX || dim > INT32_MAX)
        return d2_fail(err, D2_ERANGE, "x [%lld, %zu] is too large", (long long)x->shape[0],
                       dim);
    int rc = dataset_alloc(d, (int)x->shape[0], (int)dim, err);
    if (!rc)
        rc = st_to_f32(x, d->x, err);
    if (!rc)
        rc = st_to_i32(y, d->y, err);
    if (!rc)
        rc = dataset_validate(d, err);
    if (rc)
        dataset_free(d);
    return rc;
}

int data_parse_safetensors(dataset *d, const void *bytes, size_t len, d2_error *err)
{
    memset(d, 0, sizeof *d);
    st_file f;
    int rc = st_parse(&f, bytes, len, err);
    if (rc)
        return rc;
    rc = data_from_st(d, &f, err);
    st_free(&f);
    if (rc)
        d2_wrap(err, "safetensors data set");
    return rc;
}

int data_load_safetensors(dataset *d, const char *path, d2_error *err)
{
    memset(d, 0, sizeof *d);
    st_file f;
    int rc = st_load(&f, path, err);
    if (rc)
        return rc;
    rc = data_from_st(d, &f, err);
    st_free(&f);
    if (rc)
        d2_wrap(err, "%s", path);
    return rc;
}
