/* api_dataset.c - data sets on the wire: DatasetInput JSON and safetensors
 * bodies -> dataset, with checks that name the offending element. */
#include "api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* printf into a field buffer (truncating long paths is fine). */
static void fieldf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fieldf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

/* "prefix.name" or "name" when prefix is empty. */
static void field_join(char *out, size_t n, const char *prefix, const char *name)
{
    if (prefix && prefix[0])
        fieldf(out, n, "%s.%s", prefix, name);
    else
        fieldf(out, n, "%s", name);
}

int api_dataset_check(dataset *d, const char *xfield, const char *yfield, const api_limits *lim,
                      api_error *e)
{
    char f[API_FIELD_LEN];
    if (d->n < 1)
        return api_fail(e, 422, "invalid_dataset", xfield, "no rows");
    if (d->n > lim->max_samples)
        return api_fail(e, 422, "invalid_dataset", xfield, "%d rows exceed the limit of %d", d->n,
                        lim->max_samples);
    if (d->dim < 1 || d->dim > lim->max_dim)
        return api_fail(e, 422, "invalid_dataset", xfield,
                        "rows have %d values; allowed 1..%d", d->dim, lim->max_dim);
    const size_t total = (size_t)d->n * (size_t)d->dim;
    for (size_t k = 0; k < total; k++)
        if (!isfinite(d->x[k])) {
            fieldf(f, sizeof f, "%s[%zu][%zu]", xfield, k / (size_t)d->dim,
                     k % (size_t)d->dim);
            return api_fail(e, 422, "invalid_dataset", f, "value is not finite in float32");
        }
    int counts[D2_MAX_WAY];
    memset(counts, 0, sizeof counts);
    int classes = 0;
    int max_classes = lim->max_classes < D2_MAX_WAY ? lim->max_classes : D2_MAX_WAY;
    for (int i = 0; i < d->n; i++) {
        int32_t y = d->y[i];
        if (y < 0 || y >= max_classes) {
            fieldf(f, sizeof f, "%s[%d]", yfield, i);
            return api_fail(e, 422, "invalid_dataset", f,
                            "label %d out of range 0..%d (at most %d classes)", (int)y,
                            max_classes - 1, max_classes);
        }
        counts[y]++;
        if (y + 1 > classes)
            classes = y + 1;
    }
    for (int c = 0; c < classes; c++)
        if (counts[c] == 0)
            return api_fail(e, 422, "invalid_dataset", yfield,
                            "class %d has no rows; labels must be 0..C-1 with every class "
                            "present (C = %d)",
                            c, classes);
    d->classes = classes;
    return 0;
}

/* x: the rows array (already known to be a non-empty array). */
static int parse_rows(const json_t *xs, const char *xfield, const json_t *labels,
                      const char *yfield, const api_limits *lim, dataset *d, api_error *e)
{
    char f[API_FIELD_LEN];
    int n = (int)json_array_size(xs);
    const json_t *row0 = json_array_get(xs, 0);
    fieldf(f, sizeof f, "%s[0]", xfield);
    if (!json_is_array(row0))
        return api_fail(e, 400, "invalid_argument", f, "expected an array of numbers");
    size_t dim = json_array_size(row0);
    if (dim == 0)
        return api_fail(e, 422, "invalid_dataset", f, "empty row");
    if (dim > (size_t)lim->max_dim)
        return api_fail(e, 422, "invalid_dataset", f, "row has %zu values; at most %d allowed",
                        dim, lim->max_dim);
    if (json_array_size(labels) != (size_t)n)
        return api_fail(e, 422, "invalid_dataset", yfield,
                        "has %zu entries, expected %d (one per row)", json_array_size(labels), n);
    d2_error err;
    if (dataset_alloc(d, n, (int)dim, &err) != 0)
        return api_fail(e, 500, "internal", xfield, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        const json_t *row = json_array_get(xs, (size_t)i);
        if (!json_is_array(row)) {
            fieldf(f, sizeof f, "%s[%d]", xfield, i);
            return api_fail(e, 400, "invalid_argument", f, "expected an array of numbers");
        }
        if (json_array_size(row) != dim) {
            fieldf(f, sizeof f, "%s[%d]", xfield, i);
            return api_fail(e, 422, "invalid_dataset", f,
                            "row has %zu values, expected %zu (as row 0)", json_array_size(row),
                            dim);
        }
        float *dst = d->x + (size_t)i * dim;
        for (size_t j = 0; j < dim; j++) {
            const json_t *v = json_array_get(row, j);
            if (!json_is_number(v)) {
                fieldf(f, sizeof f, "%s[%d][%zu]", xfield, i, j);
                return api_fail(e, 400, "invalid_argument", f, "expected a number");
            }
            double dv = json_number_value(v);
            float fv = (float)dv;
            if (!isfinite(fv)) {
                fieldf(f, sizeof f, "%s[%d][%zu]", xfield, i, j);
                return api_fail(e, 422, "invalid_dataset", f,
                                "value %g is not finite in float32", dv);
            }
            dst[j] = fv;
        }
    }
    for (int i = 0; i < n; i++) {
        const json_t *v = json_array_get(labels, (size_t)i);
        if (!json_is_integer(v)) {
            fieldf(f, sizeof f, "%s[%d]", yfield, i);
            return api_fail(e, 400, "invalid_argument", f, "expected an integer");
        }
        json_int_t y = json_integer_value(v);
        if (y < 0 || y >= lim->max_classes || y >= D2_MAX_WAY) {
            fieldf(f, sizeof f, "%s[%d]", yfield, i);
            int mc = lim->max_classes < D2_MAX_WAY ? lim->max_classes : D2_MAX_WAY;
            return api_fail(e, 422, "invalid_dataset", f,
                            "label %lld out of range 0..%d (at most %d classes)", (long long)y,
                            mc - 1, mc);
        }
        d->y[i] = (int32_t)y;
    }
    return api_dataset_check(d, xfield, yfield, lim, e);
}

int api_dataset_parse(const json_t *obj, const char *field, const api_limits *lim, dataset *d,
                      int *kind, api_error *e)
{
    char xf[API_FIELD_LEN], yf[API_FIELD_LEN], f[API_FIELD_LEN];
    memset(d, 0, sizeof *d);
    if (!json_is_object(obj))
        return api_fail(e, 400, "invalid_argument", field && field[0] ? field : NULL,
                        "expected an object with samples or embeddings, and labels");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        if (strcmp(key, "samples") && strcmp(key, "embeddings") && strcmp(key, "labels")) {
            field_join(f, sizeof f, field, key);
            return api_fail(e, 400, "invalid_argument", f,
                            "unknown field (expected samples or embeddings, and labels)");
        }
    }
    const json_t *samples = json_object_get(obj, "samples");
    const json_t *emb = json_object_get(obj, "embeddings");
    const json_t *labels = json_object_get(obj, "labels");
    if (samples && emb) {
        field_join(f, sizeof f, field, "embeddings");
        return api_fail(e, 400, "invalid_argument", f,
                        "give either samples or embeddings, not both");
    }
    if (!samples && !emb) {
        field_join(f, sizeof f, field, "samples");
        return api_fail(e, 400, "invalid_argument", f,
                        "missing: samples (input space) or embeddings (feature space) is required");
    }
    *kind = samples ? API_KIND_SAMPLES : API_KIND_EMBEDDINGS;
    const json_t *xs = samples ? samples : emb;
    field_join(xf, sizeof xf, field, samples ? "samples" : "embeddings");
    field_join(yf, sizeof yf, field, "labels");
    if (!json_is_array(xs))
        return api_fail(e, 400, "invalid_argument", xf, "expected an array of rows");
    if (!labels)
        return api_fail(e, 400, "invalid_argument", yf, "missing: one integer label per row");
    if (!json_is_array(labels))
        return api_fail(e, 400, "invalid_argument", yf, "expected an array of integers");
    size_t n = json_array_size(xs);
    if (n == 0)
        return api_fail(e, 422, "invalid_dataset", xf, "no rows");
    if (n > (size_t)lim->max_samples)
        return api_fail(e, 422, "invalid_dataset", xf, "%zu rows exceed the limit of %d", n,
                        lim->max_samples);
    int rc = parse_rows(xs, xf, labels, yf, lim, d, e);
    if (rc != 0)
        dataset_free(d);
    return rc;
}

static int is_float_dtype(st_dtype t)
{
    return t == ST_F32 || t == ST_F64 || t == ST_F16 || t == ST_BF16;
}

static int is_int_dtype(st_dtype t)
{
    return t == ST_U8 || t == ST_I8 || t == ST_I16 || t == ST_U16 || t == ST_I32 ||
           t == ST_U32 || t == ST_I64 || t == ST_U64;
}

static int parse_st(const st_file *f, const api_limits *lim, dataset *d, api_error *e)
{
    const st_tensor *x = st_find(f, "x");
    const st_tensor *y = st_find(f, "y");
    if (!x)
        return api_fail(e, 400, "invalid_argument", "body.x", "missing tensor x [n, D]");
    if (!y)
        return api_fail(e, 400, "invalid_argument", "body.y", "missing tensor y [n]");
    if (x->ndim != 2 || !is_float_dtype(x->dtype))
        return api_fail(e, 400, "invalid_argument", "body.x",
                        "expected a 2-d float tensor [n, D] (F32, F64, F16 or BF16), got %s with "
                        "%d dims",
                        st_dtype_name(x->dtype), x->ndim);
    if (y->ndim != 1 || !is_int_dtype(y->dtype))
        return api_fail(e, 400, "invalid_argument", "body.y",
                        "expected a 1-d integer tensor [n], got %s with %d dims",
                        st_dtype_name(y->dtype), y->ndim);
    int64_t n = x->shape[0], dim = x->shape[1];
    if (n < 1 || dim < 1)
        return api_fail(e, 422, "invalid_dataset", "body.x", "empty tensor [%lld, %lld]",
                        (long long)n, (long long)dim);
    if (y->shape[0] != n)
        return api_fail(e, 422, "invalid_dataset", "body.y",
                        "has %lld entries, expected %lld (one per row of x)",
                        (long long)y->shape[0], (long long)n);
    if (n > lim->max_samples)
        return api_fail(e, 422, "invalid_dataset", "body.x", "%lld rows exceed the limit of %d",
                        (long long)n, lim->max_samples);
    if (dim > lim->max_dim)
        return api_fail(e, 422, "invalid_dataset", "body.x", "rows have %lld values; at most %d",
                        (long long)dim, lim->max_dim);
    d2_error err;
    if (dataset_alloc(d, (int)n, (int)dim, &err) != 0)
        return api_fail(e, 500, "internal", "body.x", "%s", err.msg);
    if (st_to_f32(x, d->x, &err) != 0)
        return api_fail(e, 422, "invalid_dataset", "body.x", "%s", err.msg);
    if (st_to_i32(y, d->y, &err) != 0)
        return api_fail(e, 422, "invalid_dataset", "body.y", "%s", err.msg);
    return api_dataset_check(d, "body.x", "body.y", lim, e);
}

int api_dataset_parse_safetensors(const void *bytes, size_t len, const api_limits *lim,
                                  dataset *d, api_error *e)
{
    memset(d, 0, sizeof *d);
    st_file f;
    d2_error err;
    d2_error_clear(&err);
    if (st_parse(&f, bytes, len, &err) != 0)
        return api_fail(e, 400, "invalid_argument", "body", "not a valid safetensors file: %s",
                        err.msg);
    int rc = parse_st(&f, lim, d, e);
    st_free(&f);
    if (rc != 0)
        dataset_free(d);
    return rc;
}

json_t *api_dataset_to_json(const dataset *d, int kind)
{
    json_t *rows = json_array();
    json_t *labels = json_array();
    json_t *obj = json_object();
    if (!rows || !labels || !obj)
        goto fail;
    for (int i = 0; i < d->n; i++) {
        json_t *row = json_array();
        if (!row || json_array_append_new(rows, row) != 0)
            goto fail;
        for (int j = 0; j < d->dim; j++)
            if (json_array_append_new(row, json_real(d->x[(size_t)i * d->dim + j])) != 0)
                goto fail;
        if (json_array_append_new(labels, json_integer(d->y[i])) != 0)
            goto fail;
    }
    if (json_object_set_new(obj, api_kind_name(kind), rows) != 0) {
        rows = NULL;
        goto fail;
    }
    rows = NULL;
    if (json_object_set_new(obj, "labels", labels) != 0) {
        labels = NULL;
        goto fail;
    }
    return obj;
fail:
    json_decref(rows);
    json_decref(labels);
    json_decref(obj);
    return NULL;
}

void api_dataset_info_fill(api_dataset_info *info, const dataset *d, int kind)
{
    info->kind = kind;
    info->kinds = 1 << kind;
    info->n = d->n;
    info->dim = d->dim;
    info->classes = d->classes;
    memset(info->class_counts, 0, sizeof info->class_counts);
    for (int i = 0; i < d->n; i++)
        if (d->y[i] >= 0 && d->y[i] < D2_MAX_WAY)
            info->class_counts[d->y[i]]++;
}

json_t *api_dataset_info_to_json(const api_dataset_info *info)
{
    char t[32];
    api_format_time(info->created_ms, t);
    json_t *counts = json_array();
    if (!counts)
        return NULL;
    for (int c = 0; c < info->classes && c < D2_MAX_WAY; c++)
        if (json_array_append_new(counts, json_integer(info->class_counts[c])) != 0) {
            json_decref(counts);
            return NULL;
        }
    json_t *kinds = json_array();
    for (int k = API_KIND_SAMPLES; kinds && k <= API_KIND_EMBEDDINGS; k++)
        if ((info->kinds & (1 << k)) &&
            json_array_append_new(kinds, json_string(api_kind_name(k))) != 0) {
            json_decref(kinds);
            kinds = NULL;
        }
    if (!kinds) {
        json_decref(counts);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s, s:o, s:i, s:i, s:i, s:o, s:s}", "id", info->id,
                     "fingerprint", info->id, "kind", api_kind_name(info->kind), "kinds", kinds,
                     "n", info->n, "dim", info->dim, "classes", info->classes, "class_counts",
                     counts, "created_at", t);
}

int api_dataset_info_from_json(const json_t *root, api_dataset_info *info, api_error *e)
{
    memset(info, 0, sizeof *info);
    const char *id = NULL, *kind = NULL, *created = NULL;
    json_t *counts = NULL;
    json_error_t je;
    if (json_unpack_ex((json_t *)root, &je, 0, "{s:s, s:s, s:i, s:i, s:i, s:o, s:s}", "id", &id,
                       "kind", &kind, "n", &info->n, "dim", &info->dim, "classes", &info->classes,
                       "class_counts", &counts, "created_at", &created) != 0)
        return api_fail(e, 0, "invalid_json", NULL, "dataset: %s", je.text);
    snprintf(info->id, sizeof info->id, "%s", id);
    if (api_kind_parse(kind, &info->kind) != 0 || api_parse_time(created, &info->created_ms) != 0 ||
        !json_is_array(counts))
        return api_fail(e, 0, "invalid_json", NULL, "dataset: bad kind, created_at or counts");
    for (size_t c = 0; c < json_array_size(counts) && c < D2_MAX_WAY; c++)
        info->class_counts[c] = (int)json_integer_value(json_array_get(counts, c));
    /* kinds: absent from older daemons (then only the first kind is known) */
    info->kinds = 1 << info->kind;
    const json_t *kinds = json_object_get(root, "kinds");
    for (size_t i = 0; i < json_array_size(kinds); i++) {
        int k;
        if (api_kind_parse(json_string_value(json_array_get(kinds, i)), &k) != 0)
            return api_fail(e, 0, "invalid_json", NULL, "dataset: bad kinds[%zu]", i);
        info->kinds |= 1 << k;
    }
    return 0;
}
