/* lm_io.c - the language model's safetensors files (lm_io.h). */
#include "lm_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int lm_host_copy(backend_t *be, float **h, const float *dev, size_t n, d2_error *err)
{
    *h = malloc((n ? n : 1) * sizeof(float));
    if (!*h)
        return d2_fail(err, D2_ENOMEM, "lm file: out of memory");
    if (be->ops->to_host(be, *h, dev, n * sizeof(float))) {
        free(*h);
        *h = NULL;
        return d2_fail(err, D2_EDEVICE, "lm file: cannot read the weights from the device");
    }
    return 0;
}

int lm_write_set(st_writer *w, const paramset *ps, d2_error *err)
{
    float *h;
    int rc = lm_host_copy(ps->be, &h, ps->w, ps->total, err);
    for (int i = 0; !rc && i < ps->count; i++) {
        const param_entry *e = &ps->entries[i];
        rc = st_writer_add_f32(w, e->name, e->ndim, e->shape, h + e->offset, err);
    }
    free(h);
    return rc;
}

int lm_write_flat(st_writer *w, backend_t *be, const char *name, const float *dev, size_t n,
                  d2_error *err)
{
    float *h;
    int rc = lm_host_copy(be, &h, dev, n, err);
    const int64_t shape[1] = {(int64_t)n};
    if (!rc)
        rc = st_writer_add_f32(w, name, 1, shape, h, err);
    free(h);
    return rc;
}

int lm_write(st_writer *w, const lm_model *m, const char *const *kv, int n, d2_error *err)
{
    char cfg[160];
    snprintf(cfg, sizeof cfg, "layers=%d width=%d heads=%d context=%d", m->cfg.layers,
             m->cfg.width, m->cfg.heads, m->cfg.context);
    int rc;
    if ((rc = st_writer_meta(w, "d2nwg.kind", "lm", err)) ||
        (rc = st_writer_meta(w, "d2nwg.lm", cfg, err)) ||
        (rc = st_writer_meta(w, "d2nwg.lm.tokens",
                             "input: bytes 0-255 and BOS 256 (wte rows); a word w is BOS w, "
                             "its targets w '\\n'; pre-norm GPT-2 blocks, gelu tanh, "
                             "nn.Linear [out, in] weights, untied lm_head", err)))
        return rc;
    for (int i = 0; i < n; i++)
        if ((rc = st_writer_meta(w, kv[2 * i], kv[2 * i + 1], err)))
            return rc;
    return lm_write_set(w, m->ps, err);
}

int lm_save(const lm_model *m, const char *path, const char *const *kv, int n, d2_error *err)
{
    st_writer w;
    st_writer_init(&w);
    int rc = lm_write(&w, m, kv, n, err);
    if (!rc)
        rc = st_writer_save(&w, path, err);
    st_writer_free(&w);
    return rc;
}

int lm_read_config(const st_file *f, const char *path, lm_config *c, d2_error *err)
{
    const char *kind = st_meta(f, "d2nwg.kind"), *s = st_meta(f, "d2nwg.lm");
    if (!kind || strcmp(kind, "lm") || !s)
        return d2_fail(err, D2_EFORMAT, "%s is not a d2nwg language model (no d2nwg.lm "
                       "metadata)", path);
    char tail;
    if (sscanf(s, "layers=%d width=%d heads=%d context=%d%c", &c->layers, &c->width,
               &c->heads, &c->context, &tail) != 4)
        return d2_fail(err, D2_EFORMAT, "%s: bad d2nwg.lm metadata '%s'", path, s);
    int rc = lm_config_check(c, err);
    return rc ? d2_wrap(err, "%s", path) : 0;
}

int lm_read_flat(const st_file *f, const char *path, backend_t *be, const char *name,
                 float *dev, size_t n, d2_error *err)
{
    const st_tensor *t = st_find(f, name);
    if (!t || t->numel != n)
        return d2_fail(err, D2_EFORMAT, "%s: tensor '%s' is missing or has the wrong size",
                       path, name);
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h)
        return d2_fail(err, D2_ENOMEM, "lm file: out of memory");
    int rc = st_to_f32(t, h, err);
    if (!rc && be->ops->to_device(be, dev, h, n * sizeof(float)))
        rc = d2_fail(err, D2_EDEVICE, "lm file: cannot upload '%s'", name);
    free(h);
    return rc;
}

int lm_read_set(const st_file *f, const char *path, paramset *ps, d2_error *err)
{
    for (int i = 0; i < ps->count; i++) {
        const param_entry *e = &ps->entries[i];
        const st_tensor *t = st_find(f, e->name);
        int same = t && t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = t->shape[d] == e->shape[d];
        if (!same)
            return d2_fail(err, D2_EFORMAT, "%s: tensor '%s' is missing or has the wrong "
                           "shape", path, e->name);
        int rc = lm_read_flat(f, path, ps->be, e->name, ps->w + e->offset, e->numel, err);
        if (rc)
            return rc;
    }
    return 0;
}

int lm_load(lm_model *m, paramset *ps, backend_t *be, const char *path, d2_error *err)
{
    st_file f;
    lm_config c;
    int rc = st_load(&f, path, err);
    if (rc)
        return rc;
    if (!(rc = lm_read_config(&f, path, &c, err)) && !(rc = lm_init(m, ps, &c, err)) &&
        !(rc = paramset_alloc(ps, be, 0, err)))
        rc = lm_read_set(&f, path, ps, err);
    st_free(&f);
    return rc;
}
