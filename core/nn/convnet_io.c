/* convnet_io.c - Conv-N's architecture string and its safetensors file (see convnet.h). */
#include "convnet.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

typedef struct sbuf {
    char *p;
    size_t len, used;
    int overflow;
} sbuf;

static void sb_add(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s->p + s->used, s->len - s->used, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= s->len - s->used) {
        s->overflow = 1;
        return;
    }
    s->used += (size_t)k;
}

int convnet_arch_string(const convnet *n, char *buf, size_t len, d2_error *err)
{
    if (!len)
        return d2_fail(err, D2_ERANGE, "convnet: no room for the architecture string");
    sbuf s = {buf, len, 0, 0};
    buf[0] = '\0';
    sb_add(&s, "Sequential(");
    for (int i = 0; i < n->blocks; i++)
        sb_add(&s,
               "Sequential(Conv2d(%d, %d, 3, stride=1, padding=1, bias=False), "
               "BatchNorm2d(%d), ReLU(), MaxPool2d(2)), ",
               n->conv[i].in, n->ch, n->ch);
    sb_add(&s, "AdaptiveAvgPool2d(1), Flatten()");
    if (n->classes)
        sb_add(&s, ", Linear(%d, %d)", n->ch, n->classes);
    sb_add(&s, ")");
    if (s.overflow)
        return d2_fail(err, D2_ERANGE, "convnet: architecture string longer than %zu bytes", len);
    return 0;
}

/* every tensor of ps (F32, from the device) into w */
static int cn_add_set(st_writer *w, const paramset *ps, d2_error *err)
{
    float *h = malloc((ps->total ? ps->total : 1) * sizeof(float));
    if (!h)
        return d2_fail(err, D2_ENOMEM, "convnet save: out of memory");
    int rc = ps->be->ops->to_host(ps->be, h, ps->w, ps->total * sizeof(float));
    if (rc)
        rc = d2_fail(err, D2_EDEVICE, "convnet save: cannot read the weights from the device");
    for (int i = 0; !rc && i < ps->count; i++) {
        const param_entry *e = &ps->entries[i];
        rc = st_writer_add_f32(w, e->name, e->ndim, e->shape, h + e->offset, err);
    }
    free(h);
    return rc;
}

static int cn_add_meta(const convnet *n, st_writer *w, const char *const *extra, int n_extra,
                       d2_error *err)
{
    char arch[2048], sizes[160];
    int rc = convnet_arch_string(n, arch, sizeof arch, err);
    if (rc)
        return rc;
    snprintf(sizes, sizeof sizes, "in_ch=%d h=%d w=%d ch=%d blocks=%d classes=%d", n->in_ch,
             n->H, n->W, n->ch, n->blocks, n->classes);
    if ((rc = st_writer_meta(w, "architecture", arch, err)) ||
        (rc = st_writer_meta(w, "d2nwg.convnet", sizes, err)))
        return rc;
    for (int i = 0; i + 1 < 2 * n_extra; i += 2)
        if ((rc = st_writer_meta(w, extra[i], extra[i + 1], err)))
            return rc;
    return 0;
}

int convnet_write(const convnet *n, const paramset *ps, const paramset *bufs, long long batches,
                  struct st_writer *w, const char *const *extra_kv, int n_extra, d2_error *err)
{
    int rc = cn_add_set(w, ps, err);
    if (!rc)
        rc = cn_add_set(w, bufs, err);
    for (int i = 0; !rc && i < n->blocks; i++) {
        char name[PARAM_NAME_LEN];
        int64_t v = batches;
        snprintf(name, sizeof name, "%d.1.num_batches_tracked", i);
        rc = st_writer_add(w, name, ST_I64, 0, NULL, &v, sizeof v, err);
    }
    if (!rc)
        rc = cn_add_meta(n, w, extra_kv, n_extra, err);
    return rc;
}

int convnet_save(const convnet *n, const paramset *ps, const paramset *bufs, long long batches,
                 const char *path, const char *const *extra_kv, int n_extra, d2_error *err)
{
    st_writer w;
    st_writer_init(&w);
    int rc = convnet_write(n, ps, bufs, batches, &w, extra_kv, n_extra, err);
    if (!rc)
        rc = st_writer_save(&w, path, err);
    st_writer_free(&w);
    return rc;
}

/* the tensors of ps from f (names and shapes checked) onto the device */
static int cn_read_set(paramset *ps, const st_file *f, const char *path, d2_error *err)
{
    float *h = malloc((ps->total ? ps->total : 1) * sizeof(float));
    if (!h)
        return d2_fail(err, D2_ENOMEM, "convnet load: out of memory");
    memset(h, 0, (ps->total ? ps->total : 1) * sizeof(float));
    int rc = 0;
    for (int i = 0; !rc && i < ps->count; i++) {
        const param_entry *e = &ps->entries[i];
        const st_tensor *t = st_find(f, e->name);
        int same = t && t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = t->shape[d] == e->shape[d];
        if (!t)
            rc = d2_fail(err, D2_EFORMAT, "%s: tensor '%s' is missing", path, e->name);
        else if (!same)
            rc = d2_fail(err, D2_EFORMAT, "%s: tensor '%s' has the wrong shape for the network "
                         "in its d2nwg.convnet metadata", path, e->name);
        else
            rc = st_to_f32(t, h + e->offset, err);
    }
    if (!rc && ps->be->ops->to_device(ps->be, ps->w, h, ps->total * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "convnet load: cannot upload the weights");
    free(h);
    return rc;
}

static int cn_parse_sizes(const st_file *f, const char *path, int v[6], d2_error *err)
{
    const char *s = st_meta(f, "d2nwg.convnet");
    int used = 0;
    if (!s)
        return d2_fail(err, D2_EFORMAT, "%s: no 'd2nwg.convnet' metadata (not a d2nwg backbone "
                       "file; make one with `d2nwg backbone train`)", path);
    if (sscanf(s, "in_ch=%d h=%d w=%d ch=%d blocks=%d classes=%d%n", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &used) != 6 || s[used] != '\0')
        return d2_fail(err, D2_EFORMAT, "%s: d2nwg.convnet '%s' is malformed (expected "
                       "'in_ch=C h=H w=W ch=K blocks=N classes=M')", path, s);
    return 0;
}

int convnet_load(convnet *n, paramset *ps, paramset *bufs, backend_t *be, const char *path,
                 long long *batches, d2_error *err)
{
    st_file f;
    int v[6];
    int rc = st_load(&f, path, err);
    if (rc)
        return rc;
    paramset_init(ps);
    paramset_init(bufs);
    if (!(rc = cn_parse_sizes(&f, path, v, err)) &&
        !(rc = convnet_init(n, ps, bufs, v[0], v[1], v[2], v[3], v[4], v[5], err)) &&
        !(rc = paramset_alloc(ps, be, 0, err)) && !(rc = paramset_alloc(bufs, be, 0, err)) &&
        !(rc = cn_read_set(ps, &f, path, err)))
        rc = cn_read_set(bufs, &f, path, err);
    if (!rc && batches) {
        const st_tensor *t = st_find(&f, "0.1.num_batches_tracked");
        int32_t b = 0;
        if (t && t->numel == 1 && st_to_i32(t, &b, err) == 0)
            *batches = b;
        else
            *batches = 0;
    }
    st_free(&f);
    if (rc) {
        paramset_free(ps);
        paramset_free(bufs);
    }
    return rc;
}
