/* data_npy.c - NumPy .npy arrays (format versions 1, 2 and 3), little-endian
 * numeric dtypes, C order.
 *
 * Layout: "\x93NUMPY", major, minor, header length (uint16 LE for v1, uint32
 * LE for v2/v3), then a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (100, 784), }
 * and the raw data, which must fill the rest of the file exactly. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "safetensors.h"

#define NPY_MAX_DIMS 8

typedef struct npy_array {
    st_dtype dtype;
    char descr[64];
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t numel;
    const unsigned char *data;
} npy_array;

/* A cursor over the header text. */
typedef struct npy_lex {
    const char *p, *end;
} npy_lex;

static void npy_skip_ws(npy_lex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r'))
        l->p++;
}

static int npy_eat(npy_lex *l, char c)
{
    npy_skip_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...", no escapes needed by numpy's keys/descr). */
static int npy_string(npy_lex *l, char *out, size_t cap)
{
    npy_skip_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"'))
        return -1;
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || n + 1 >= cap)
            return -1;
        out[n++] = *l->p++;
    }
    if (l->p >= l->end)
        return -1;
    l->p++;
    out[n] = '\0';
    return 0;
}

static int npy_word(npy_lex *l, const char *w)
{
    npy_skip_ws(l);
    size_t n = strlen(w);
    if ((size_t)(l->end - l->p) >= n && memcmp(l->p, w, n) == 0) {
        l->p += n;
        return 1;
    }
    return 0;
}

static int npy_int(npy_lex *l, int64_t *v)
{
    npy_skip_ws(l);
    int64_t x = 0;
    int digits = 0;
    while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
        if (x > (INT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (*l->p++ - '0');
        digits++;
    }
    if (!digits)
        return -1;
    if (l->p < l->end && *l->p == 'L') /* Python 2 long */
        l->p++;
    *v = x;
    return 0;
}

static int npy_parse_descr(npy_array *a, const char *path, const char *descr, d2_error *err)
{
    snprintf(a->descr, sizeof a->descr, "%s", descr);
    size_t n = strlen(descr);
    if (n != 3)
        goto unsupported;
    char order = descr[0], kind = descr[1], size = descr[2];
    static const struct {
        char kind, size;
        st_dtype t;
    } map[] = {{'f', '2', ST_F16}, {'f', '4', ST_F32}, {'f', '8', ST_F64}, {'i', '1', ST_I8},
               {'i', '2', ST_I16}, {'i', '4', ST_I32}, {'i', '8', ST_I64}, {'u', '1', ST_U8},
               {'u', '2', ST_U16}, {'u', '4', ST_U32}, {'u', '8', ST_U64}, {'b', '1', ST_BOOL}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (map[i].kind != kind || map[i].size != size)
            continue;
        if (order == '>' && size != '1')
            return d2_fail(err, D2_EUNSUPPORTED,
                           "%s: big-endian dtype '%s' is not supported (save as '<%c%c')", path,
                           descr, kind, size);
        if (order != '<' && order != '|' && order != '=' && order != '>')
            goto unsupported;
        a->dtype = map[i].t;
        return 0;
    }
unsupported:
    return d2_fail(err, D2_EUNSUPPORTED,
                   "%s: unsupported dtype '%.15s' (expected a little-endian number such as "
                   "'<f4', '<f8', '<i4', '<i8', '|u1')",
                   path, descr);
}

/* Parse the header dict at text[0..len). */
static int npy_parse_header(npy_array *a, const char *path, const char *text, size_t len,
                            size_t hdr_off, d2_error *err)
{
    npy_lex l = {text, text + len};
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    char key[32], descr[64];
    if (!npy_eat(&l, '{'))
        goto bad;
    for (;;) {
        if (npy_eat(&l, '}'))
            break;
        if (npy_string(&l, key, sizeof key) != 0 || !npy_eat(&l, ':'))
            goto bad;
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (npy_string(&l, descr, sizeof descr) != 0) {
                npy_skip_ws(&l);
                if (l.p < l.end && *l.p == '[')
                    return d2_fail(err, D2_EUNSUPPORTED,
                                   "%s: structured dtypes are not supported (header at offset "
                                   "%zu)",
                                   path, hdr_off);
                goto bad;
            }
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (npy_word(&l, "True"))
                fortran = 1;
            else if (!npy_word(&l, "False"))
                goto bad;
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (!npy_eat(&l, '('))
                goto bad;
            a->ndim = 0;
            while (!npy_eat(&l, ')')) {
                if (a->ndim == NPY_MAX_DIMS)
                    return d2_fail(err, D2_EUNSUPPORTED, "%s: more than %d dimensions", path,
                                   NPY_MAX_DIMS);
                if (npy_int(&l, &a->shape[a->ndim]) != 0)
                    goto bad;
                a->ndim++;
                if (!npy_eat(&l, ',')) {
                    if (!npy_eat(&l, ')'))
                        goto bad;
                    break;
                }
            }
            have_shape = 1;
        } else {
            return d2_fail(err, D2_EFORMAT,
                           "%s: header at offset %zu has an unexpected or repeated key '%s'",
                           path, hdr_off, key);
        }
        if (!npy_eat(&l, ',')) {
            if (!npy_eat(&l, '}'))
                goto bad;
            break;
        }
    }
    npy_skip_ws(&l);
    if (l.p != l.end)
        goto bad;
    if (!have_descr || !have_fortran || !have_shape)
        return d2_fail(err, D2_EFORMAT, "%s: header at offset %zu lacks the key '%s'", path,
                       hdr_off, !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    if (fortran)
        return d2_fail(err, D2_EUNSUPPORTED,
                       "%s: fortran_order is True; only C-order arrays are supported (save with "
                       "np.ascontiguousarray)",
                       path);
    return npy_parse_descr(a, path, descr, err);
bad:
    return d2_fail(err, D2_EFORMAT,
                   "%s: malformed header dict at offset %zu (near byte %zu): expected "
                   "{'descr': ..., 'fortran_order': ..., 'shape': (...)}",
                   path, hdr_off, hdr_off + (size_t)(l.p - text));
}

/* Parse a whole .npy file held in buf[0..len). */
static int npy_parse(npy_array *a, const char *path, const unsigned char *buf, size_t len,
                     d2_error *err)
{
    memset(a, 0, sizeof *a);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return d2_fail(err, D2_EFORMAT, "%s: bad magic at offset 0 (not a .npy file: expected "
                       "\\x93NUMPY)", path);
    int major = buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return d2_fail(err, D2_EFORMAT, "%s: truncated header at offset %zu", path, len);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
               (size_t)buf[11] << 24;
        hoff = 12;
    } else {
        return d2_fail(err, D2_EUNSUPPORTED,
                       "%s: .npy format version %d.%d at offset 6 is not supported (1, 2, 3)",
                       path, major, buf[7]);
    }
    if (hlen > len - hoff)
        return d2_fail(err, D2_EFORMAT,
                       "%s: truncated header: %zu header bytes announced at offset 8, the file "
                       "has %zu",
                       path, hlen, len - hoff);
    int rc = npy_parse_header(a, path, (const char *)buf + hoff, hlen, hoff, err);
    if (rc)
        return rc;
    size_t numel = 1;
    for (int i = 0; i < a->ndim; i++)
        if (__builtin_mul_overflow(numel, (size_t)a->shape[i], &numel))
            return d2_fail(err, D2_ERANGE, "%s: shape overflows", path);
    size_t nbytes;
    if (__builtin_mul_overflow(numel, st_dtype_size(a->dtype), &nbytes))
        return d2_fail(err, D2_ERANGE, "%s: shape overflows", path);
    size_t off = hoff + hlen;
    if (len - off < nbytes)
        return d2_fail(err, D2_EFORMAT,
                       "%s: truncated data at offset %zu: shape needs %zu bytes of '%s', the "
                       "file has %zu",
                       path, off, nbytes, a->descr, len - off);
    if (len - off > nbytes)
        return d2_fail(err, D2_EFORMAT,
                       "%s: %zu trailing bytes at offset %zu after the data the shape announces",
                       path, len - off - nbytes, off + nbytes);
    a->numel = numel;
    a->data = buf + off;
    return 0;
}

static void npy_shape_str(const npy_array *a, char *out, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(out + n, cap - n, "(");
    for (int i = 0; i < a->ndim && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    if (n < cap)
        snprintf(out + n, cap - n, ")");
}

int data_load_npy_pair(dataset *d, const char *x_path, const char *y_path, d2_error *err)
{
    memset(d, 0, sizeof *d);
    if (!x_path || !y_path)
        return d2_fail(err, D2_EINVAL, "npy: both a features and a labels file are needed");
    unsigned char *xb = NULL, *yb = NULL;
    size_t xl, yl;
    npy_array xa, ya;
    char shp[128];
    int rc = data_read_all(x_path, &xb, &xl, DATA_MAX_FILE, err);
    if (!rc)
        rc = npy_parse(&xa, x_path, xb, xl, err);
    if (!rc && xa.ndim < 2) {
        npy_shape_str(&xa, shp, sizeof shp);
        rc = d2_fail(err, D2_EFORMAT, "%s: features have shape %s; expected [n, D]", x_path, shp);
    }
    if (!rc)
        rc = data_read_all(y_path, &yb, &yl, DATA_MAX_FILE, err);
    if (!rc)
        rc = npy_parse(&ya, y_path, yb, yl, err);
    if (!rc && !(ya.ndim == 1 || (ya.ndim == 2 && ya.shape[1] == 1))) {
        npy_shape_str(&ya, shp, sizeof shp);
        rc = d2_fail(err, D2_EFORMAT, "%s: labels have shape %s; expected [n]", y_path, shp);
    }
    if (!rc && ya.shape[0] != xa.shape[0])
        rc = d2_fail(err, D2_EFORMAT, "%s has %lld rows but %s has %lld labels", x_path,
                     (long long)xa.shape[0], y_path, (long long)ya.shape[0]);
    if (!rc && xa.shape[0] == 0)
        rc = d2_fail(err, D2_EINVAL, "%s: no samples (n = 0)", x_path);
    if (!rc && (xa.numel / (size_t)xa.shape[0] > INT32_MAX || xa.shape[0] > INT32_MAX))
        rc = d2_fail(err, D2_ERANGE, "%s: too large", x_path);
    if (!rc && xa.numel == 0)
        rc = d2_fail(err, D2_EINVAL, "%s: no features (D = 0)", x_path);
    if (!rc)
        rc = dataset_alloc(d, (int)xa.shape[0], (int)(xa.numel / (size_t)xa.shape[0]), err);
    if (!rc) {
        st_tensor t = {.name = "x", .dtype = xa.dtype, .numel = xa.numel, .data = xa.data};
        rc = st_to_f32(&t, d->x, err);
        if (rc)
            d2_wrap(err, "%s", x_path);
    }
    if (!rc) {
        st_tensor t = {.name = "y", .dtype = ya.dtype, .numel = ya.numel, .data = ya.data};
        rc = st_to_i32(&t, d->y, err);
        if (rc)
            d2_wrap(err, "%s", y_path);
    }
    if (!rc) {
        rc = dataset_validate(d, err);
        if (rc)
            d2_wrap(err, "%s + %s", x_path, y_path);
    }
    if (rc)
        dataset_free(d);
    free(xb);
    free(yb);
    return rc;
}
