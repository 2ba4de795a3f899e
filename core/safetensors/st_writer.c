/* st_writer.c - deterministic safetensors writer.
 *
 * Header layout: {"__metadata__":{...keys in insertion order...},
 * "name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]}, ...} with tensors
 * in insertion order and contiguous offsets, padded with spaces so that the
 * header length (and so the data start) is a multiple of 8. */
#include "fileio.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

struct st_wtensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    unsigned char *data;
    size_t nbytes;
};

#define NM "%.96s"

void st_writer_init(st_writer *w)
{
    memset(w, 0, sizeof *w);
}

void st_writer_free(st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->count; i++) {
        free(w->items[i].name);
        free(w->items[i].data);
    }
    free(w->items);
    for (int i = 0; i < w->nmeta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}

static int st_check_string(const char *what, const char *s, d2_error *err)
{
    size_t bad;
    if (!s)
        return d2_fail(err, D2_EINVAL, "%s is NULL", what);
    if (!d2_utf8_valid((const unsigned char *)s, strlen(s), &bad))
        return d2_fail(err, D2_EINVAL, "%s \"" NM "\" is not valid UTF-8 (byte %zu)", what, s,
                       bad);
    return 0;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                  const int64_t *shape, const void *data, size_t nbytes, d2_error *err)
{
    int rc = st_check_string("tensor name", name, err);
    if (rc)
        return rc;
    if (name[0] == '\0' || strcmp(name, "__metadata__") == 0)
        return d2_fail(err, D2_EINVAL, "invalid tensor name \"%s\"", name);
    if ((int)dtype < 0 || dtype >= ST_DTYPE_COUNT)
        return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": %d dimensions (0..%d allowed)", name,
                       ndim, ST_MAX_DIMS);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": shape[%d] = %lld is negative",
                           name, i, (long long)shape[i]);
        if ((uint64_t)shape[i] > SIZE_MAX ||
            __builtin_mul_overflow(numel, (size_t)shape[i], &numel))
            return d2_fail(err, D2_ERANGE, "tensor \"" NM "\": size of shape overflows", name);
    }
    size_t want;
    if (__builtin_mul_overflow(numel, st_dtype_size(dtype), &want))
        return d2_fail(err, D2_ERANGE, "tensor \"" NM "\": size of shape overflows", name);
    if (want != nbytes)
        return d2_fail(err, D2_EINVAL,
                       "tensor \"" NM "\": shape/size mismatch: %s shape holds %zu bytes, given "
                       "%zu",
                       name, st_dtype_name(dtype), want, nbytes);
    if (nbytes > 0 && !data)
        return d2_fail(err, D2_EINVAL, "tensor \"" NM "\": NULL data", name);
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->items[i].name, name) == 0)
            return d2_fail(err, D2_EINVAL, "duplicate tensor name \"" NM "\"", name);
    if (w->count == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        struct st_wtensor *it = realloc(w->items, (size_t)cap * sizeof *it);
        if (!it)
            return d2_fail(err, D2_ENOMEM, "out of memory adding tensor \"" NM "\"", name);
        w->items = it;
        w->cap = cap;
    }
    struct st_wtensor *t = &w->items[w->count];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(nbytes ? nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return d2_fail(err, D2_ENOMEM, "out of memory adding tensor \"" NM "\" (%zu bytes)", name,
                       nbytes);
    }
    if (nbytes)
        memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->count++;
    return 0;
}

int st_writer_add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape,
                      const float *data, d2_error *err)
{
    /* An invalid shape is reported by st_writer_add, whatever nbytes says. */
    size_t numel = 1, nbytes = 0;
    int ok = ndim >= 0 && ndim <= ST_MAX_DIMS;
    for (int i = 0; ok && i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(numel, (size_t)shape[i], &numel))
            ok = 0;
    if (ok && __builtin_mul_overflow(numel, sizeof(float), &nbytes))
        nbytes = 0;
    return st_writer_add(w, name, ST_F32, ndim, shape, data, nbytes, err);
}

int st_writer_meta(st_writer *w, const char *key, const char *value, d2_error *err)
{
    int rc = st_check_string("metadata key", key, err);
    if (!rc)
        rc = st_check_string("metadata value", value, err);
    if (rc)
        return rc;
    for (int i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta_keys[i], key) == 0)
            return d2_fail(err, D2_EINVAL, "duplicate metadata key \"" NM "\"", key);
    if (w->nmeta == w->meta_cap) {
        int cap = w->meta_cap ? 2 * w->meta_cap : 8;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof *k);
        if (!k)
            return d2_fail(err, D2_ENOMEM, "out of memory for metadata");
        w->meta_keys = k;
        char **v = realloc(w->meta_values, (size_t)cap * sizeof *v);
        if (!v)
            return d2_fail(err, D2_ENOMEM, "out of memory for metadata");
        w->meta_values = v;
        w->meta_cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return d2_fail(err, D2_ENOMEM, "out of memory for metadata");
    }
    w->meta_keys[w->nmeta] = k;
    w->meta_values[w->nmeta] = v;
    w->nmeta++;
    return 0;
}

/* A growable byte buffer for the header text. */
typedef struct st_sbuf {
    char *p;
    size_t len, cap;
    int oom;
} st_sbuf;

static void sb_put(st_sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(st_sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* A JSON string literal: quotes, backslash and control characters escaped;
 * other bytes (valid UTF-8, checked on add) copied. */
static void sb_json_string(st_sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"')
            sb_put(b, "\\\"", 2);
        else if (*p == '\\')
            sb_put(b, "\\\\", 2);
        else if (*p == '\n')
            sb_put(b, "\\n", 2);
        else if (*p == '\t')
            sb_put(b, "\\t", 2);
        else if (*p == '\r')
            sb_put(b, "\\r", 2);
        else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else
            sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
}

int st_writer_to_memory(const st_writer *w, unsigned char **out, size_t *len, d2_error *err)
{
    *out = NULL;
    *len = 0;
    st_sbuf h = {0};
    char num[64];
    sb_put(&h, "{", 1);
    int first = 1;
    if (w->nmeta > 0) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->nmeta; i++) {
            if (i)
                sb_put(&h, ",", 1);
            sb_json_string(&h, w->meta_keys[i]);
            sb_put(&h, ":", 1);
            sb_json_string(&h, w->meta_values[i]);
        }
        sb_put(&h, "}", 1);
        first = 0;
    }
    size_t off = 0;
    for (int i = 0; i < w->count; i++) {
        const struct st_wtensor *t = &w->items[i];
        if (!first)
            sb_put(&h, ",", 1);
        first = 0;
        sb_json_string(&h, t->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, st_dtype_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        sb_str(&h, num);
        off += t->nbytes;
    }
    sb_put(&h, "}", 1);
    while (!h.oom && h.len % 8 != 0)
        sb_put(&h, " ", 1);
    if (h.oom) {
        free(h.p);
        return d2_fail(err, D2_ENOMEM, "out of memory building the safetensors header");
    }
    if (h.len > ST_MAX_HEADER) {
        free(h.p);
        return d2_fail(err, D2_ERANGE, "safetensors header of %zu bytes exceeds the 100 MB limit",
                       h.len);
    }
    size_t total = 8 + h.len + off;
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(h.p);
        return d2_fail(err, D2_ENOMEM, "out of memory for a %zu-byte safetensors file", total);
    }
    uint64_t hl = h.len;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, h.p, h.len);
    free(h.p);
    size_t pos = 8 + (size_t)hl;
    for (int i = 0; i < w->count; i++) {
        if (w->items[i].nbytes)
            memcpy(buf + pos, w->items[i].data, w->items[i].nbytes);
        pos += w->items[i].nbytes;
    }
    *out = buf;
    *len = total;
    return 0;
}

int st_writer_save(const st_writer *w, const char *path, d2_error *err)
{
    unsigned char *buf;
    size_t len;
    int rc = st_writer_to_memory(w, &buf, &len, err);
    if (rc)
        return d2_wrap(err, "%s", path);
    rc = d2_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
