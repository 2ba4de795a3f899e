/* safetensors.c - strict safetensors reader: dtype table, header validation,
 * lookup. The writer is in st_writer.c, conversions in st_convert.c, file I/O
 * in fileio.c. */
#include "fileio.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "utf8.h"

static const struct {
    const char *name;
    size_t size;
} st_dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype t)
{
    if ((int)t < 0 || t >= ST_DTYPE_COUNT)
        return "?";
    return st_dtypes[t].name;
}

size_t st_dtype_size(st_dtype t)
{
    if ((int)t < 0 || t >= ST_DTYPE_COUNT)
        return 0;
    return st_dtypes[t].size;
}

int st_dtype_parse(const char *s, st_dtype *out)
{
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    }
    return D2_EINVAL;
}

void st_free(st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->count; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

/* Bound on names echoed in messages, so a message always keeps its tail. */
#define NM "%.96s"

static int st_parse_meta(st_file *f, json_t *meta, d2_error *err)
{
    if (!json_is_object(meta))
        return d2_fail(err, D2_EFORMAT, "__metadata__ is not an object");
    size_t n = json_object_size(meta);
    if (n == 0)
        return 0;
    f->meta_keys = calloc(n, sizeof *f->meta_keys);
    f->meta_values = calloc(n, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values)
        return d2_fail(err, D2_ENOMEM, "out of memory for %zu metadata entries", n);
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return d2_fail(err, D2_EFORMAT, "__metadata__ value of key \"" NM "\" is not a string",
                           key);
        f->meta_keys[f->nmeta] = strdup(key);
        f->meta_values[f->nmeta] = strdup(json_string_value(v));
        f->nmeta++;
        if (!f->meta_keys[f->nmeta - 1] || !f->meta_values[f->nmeta - 1])
            return d2_fail(err, D2_ENOMEM, "out of memory for metadata");
    }
    return 0;
}

/* Read a JSON integer >= 0 into *out. */
static int st_json_uint(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v))
        return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return -2;
    *out = (uint64_t)x;
    return 0;
}

static int st_parse_tensor(st_tensor *t, const char *name, json_t *obj, size_t data_len,
                           d2_error *err)
{
    if (!json_is_object(obj))
        return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": entry is not an object", name);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": unknown field \"%.64s\"", name,
                           key);
    }
    json_t *jd = json_object_get(obj, "dtype");
    json_t *js = json_object_get(obj, "shape");
    json_t *jo = json_object_get(obj, "data_offsets");
    if (!jd || !js || !jo)
        return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": missing field \"%s\"", name,
                       !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd))
        return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": dtype is not a string", name);
    if (st_dtype_parse(json_string_value(jd), &t->dtype) != 0)
        return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": unknown dtype \"%.32s\"", name,
                       json_string_value(jd));
    if (!json_is_array(js))
        return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": shape is not an array", name);
    size_t ndim = json_array_size(js);
    if (ndim > ST_MAX_DIMS)
        return d2_fail(err, D2_EUNSUPPORTED,
                       "tensor \"" NM "\": shape has %zu dimensions (at most %d supported)", name,
                       ndim, ST_MAX_DIMS);
    t->ndim = (int)ndim;
    size_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t dim = 0;
        int rc = st_json_uint(json_array_get(js, i), &dim);
        if (rc == -1)
            return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": shape[%zu] is not an integer",
                           name, i);
        if (rc == -2)
            return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": shape[%zu] is negative", name, i);
        t->shape[i] = (int64_t)dim;
        if (dim > SIZE_MAX || __builtin_mul_overflow(numel, (size_t)dim, &numel))
            overflow = 1;
    }
    size_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, st_dtype_size(t->dtype), &nbytes))
        return d2_fail(err, D2_EFORMAT, "tensor \"" NM "\": size of shape overflows", name);
    t->numel = numel;
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return d2_fail(err, D2_EFORMAT,
                       "tensor \"" NM "\": data_offsets is not an array of two integers", name);
    uint64_t b = 0, e = 0;
    int rb = st_json_uint(json_array_get(jo, 0), &b);
    int re = st_json_uint(json_array_get(jo, 1), &e);
    if (rb || re)
        return d2_fail(err, D2_EFORMAT,
                       "tensor \"" NM "\": data_offsets must be non-negative integers", name);
    if (b > e)
        return d2_fail(err, D2_EFORMAT,
                       "tensor \"" NM "\": data_offsets begin %llu > end %llu", name,
                       (unsigned long long)b, (unsigned long long)e);
    if (e > data_len)
        return d2_fail(err, D2_EFORMAT,
                       "tensor \"" NM "\": data_offsets end %llu is beyond the data section "
                       "(%zu bytes)",
                       name, (unsigned long long)e, data_len);
    if (e - b != nbytes)
        return d2_fail(err, D2_EFORMAT,
                       "tensor \"" NM "\": shape/size mismatch: %s shape holds %zu bytes but "
                       "data_offsets span %llu",
                       name, st_dtype_name(t->dtype), nbytes, (unsigned long long)(e - b));
    t->begin = (size_t)b;
    t->end = (size_t)e;
    return 0;
}

static int st_cmp_offsets(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The 8-byte length field against the limit and the buffer; sets *hlen. */
static int st_check_length(const unsigned char *buf, size_t len, uint64_t *hlen, d2_error *err)
{
    if (len < 8)
        return d2_fail(err, D2_EFORMAT,
                       "truncated file: %zu bytes, shorter than the 8-byte header length", len);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | buf[i];
    if (h > ST_MAX_HEADER)
        return d2_fail(err, D2_EFORMAT, "header length %llu exceeds the 100 MB limit",
                       (unsigned long long)h);
    if (h > len - 8)
        return d2_fail(err, D2_EFORMAT,
                       "truncated header: header length %llu is longer than the file "
                       "(%zu bytes after the length field)",
                       (unsigned long long)h, len - 8);
    *hlen = h;
    return 0;
}

/* Validate buf[0..len) and fill f; f->buf is set to buf (owned) only on success. */
/* Every tensor entry of the header object (all keys but __metadata__) into f->tensors. */
static int st_parse_tensors(st_file *f, json_t *root, size_t n, size_t data_len, d2_error *err)
{
    if (n > 0) {
        f->tensors = calloc(n, sizeof *f->tensors);
        if (!f->tensors)
            return d2_fail(err, D2_ENOMEM, "out of memory for %zu tensors", n);
    }
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (strcmp(name, "__metadata__") == 0)
            continue;
        st_tensor *t = &f->tensors[f->count];
        if (name[0] == '\0')
            return d2_fail(err, D2_EFORMAT, "empty tensor name");
        t->name = strdup(name);
        if (!t->name)
            return d2_fail(err, D2_ENOMEM, "out of memory for tensor names");
        f->count++;
        int rc = st_parse_tensor(t, name, v, data_len, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* The tensors sorted by offset must tile the data section exactly (no overlap,
 * no gap, nothing trailing); each gets its data pointer into data. */
static int st_check_tiling(st_file *f, const unsigned char *data, size_t data_len, d2_error *err)
{
    if (f->count > 1)
        qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, st_cmp_offsets);
    size_t pos = 0;
    for (int i = 0; i < f->count; i++) {
        st_tensor *t = &f->tensors[i];
        if (t->begin < pos)
            return d2_fail(err, D2_EFORMAT,
                           "overlapping offsets: tensor \"" NM "\" begins at %zu, before the "
                           "previous tensor \"" NM "\" ends at %zu",
                           t->name, t->begin, f->tensors[i - 1].name, pos);
        if (t->begin > pos)
            return d2_fail(err, D2_EFORMAT,
                           "gap in offsets: %zu unused bytes before tensor \"" NM "\" (at %zu)",
                           t->begin - pos, t->name, pos);
        pos = t->end;
        t->data = data + t->begin;
    }
    if (pos != data_len)
        return d2_fail(err, D2_EFORMAT,
                       "data not fully covered: tensors end at %zu but the data section has %zu "
                       "bytes (%zu trailing)",
                       pos, data_len, data_len - pos);
    return 0;
}

/* The header as JSON (duplicate names refused). NULL with err set on failure. */
static json_t *st_header_json(const unsigned char *hdr, size_t hlen, d2_error *err)
{
    size_t bad = 0;
    if (!d2_utf8_valid(hdr, hlen, &bad)) {
        d2_fail(err, D2_EFORMAT, "header is not valid UTF-8 (byte %zu of the header)", bad);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            d2_fail(err, D2_EFORMAT, "duplicate name in header (line %d, column %d): %s",
                    jerr.line, jerr.column, jerr.text);
        else
            d2_fail(err, D2_EFORMAT, "header is not valid JSON (line %d, column %d): %s",
                    jerr.line, jerr.column, jerr.text);
    }
    return root;
}

static int st_parse_owned(st_file *f, unsigned char *buf, size_t len, d2_error *err)
{
    memset(f, 0, sizeof *f);
    uint64_t hlen = 0;
    int rc = st_check_length(buf, len, &hlen, err);
    if (rc)
        return rc;
    json_t *root = st_header_json(buf + 8, (size_t)hlen, err);
    if (!root)
        return D2_EFORMAT;
    const size_t data_off = 8 + (size_t)hlen, data_len = len - data_off;
    size_t n = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (!json_is_object(root))
        rc = d2_fail(err, D2_EFORMAT, "header is not a JSON object");
    else if (meta) {
        n--;
        rc = st_parse_meta(f, meta, err);
    }
    if (!rc)
        rc = st_parse_tensors(f, root, n, data_len, err);
    if (!rc)
        rc = st_check_tiling(f, buf + data_off, data_len, err);
    json_decref(root);
    if (rc) {
        f->buf = NULL; /* the caller still owns buf */
        st_free(f);
        return rc;
    }
    f->buf = buf;
    f->len = len;
    return 0;
}

int st_parse(st_file *f, const void *bytes, size_t len, d2_error *err)
{
    memset(f, 0, sizeof *f);
    if (!bytes && len > 0)
        return d2_fail(err, D2_EINVAL, "safetensors: NULL buffer");
    uint64_t hlen;
    if (st_check_length(bytes, len, &hlen, err) != 0) /* before copying anything */
        return d2_wrap(err, "safetensors");
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        return d2_fail(err, D2_ENOMEM, "safetensors: out of memory copying %zu bytes", len);
    if (len)
        memcpy(copy, bytes, len);
    int rc = st_parse_owned(f, copy, len, err);
    if (rc) {
        free(copy);
        return d2_wrap(err, "safetensors");
    }
    return 0;
}

int st_load(st_file *f, const char *path, d2_error *err)
{
    memset(f, 0, sizeof *f);
    /* Check the header length against the limit and the file size before
     * reading the whole file into memory. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return d2_fail(err, errno == ENOENT ? D2_ENOTFOUND : D2_EIO, "%s: cannot open: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return d2_fail(err, D2_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISREG(sb.st_mode)) {
        unsigned char head[8];
        uint64_t hlen;
        /* Only the 8 bytes are read; the check uses the file's size. */
        if (pread(fd, head, sizeof head, 0) == 8 &&
            st_check_length(head, (size_t)sb.st_size, &hlen, err) != 0) {
            close(fd);
            return d2_wrap(err, "%s", path);
        }
    }
    close(fd);
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = d2_read_file(path, &buf, &len, 0, err);
    if (rc)
        return rc;
    rc = st_parse_owned(f, buf, len, err);
    if (rc) {
        free(buf);
        return d2_wrap(err, "%s", path);
    }
    return 0;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}
