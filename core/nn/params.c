/* params.c - named parameters in one contiguous device buffer, seeded initialisation. */
#include "params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define PARAM_ALIGN 16     /* floats */
#define PARAM_SCRATCH 16   /* floats */

void paramset_init(paramset *ps)
{
    memset(ps, 0, sizeof *ps);
}

const param_entry *paramset_find(const paramset *ps, const char *name)
{
    for (int i = 0; i < ps->count; i++)
        if (strcmp(ps->entries[i].name, name) == 0)
            return &ps->entries[i];
    return NULL;
}

int paramset_add(paramset *ps, const char *name, int ndim, const int64_t *shape,
                 param_init init, float init_scale, size_t *offset, d2_error *err)
{
    if (!name || !*name)
        return d2_fail(err, D2_EINVAL, "paramset_add: empty tensor name");
    if (strlen(name) >= PARAM_NAME_LEN)
        return d2_fail(err, D2_EINVAL, "paramset_add: tensor name \"%s\" is longer than %d bytes",
                       name, PARAM_NAME_LEN - 1);
    if (ps->w)
        return d2_fail(err, D2_EINVAL,
                       "paramset_add: \"%s\" added after paramset_alloc (register every "
                       "tensor first)", name);
    if (ndim < 1 || ndim > PARAM_MAX_DIMS || !shape)
        return d2_fail(err, D2_EINVAL, "paramset_add: \"%s\": ndim %d outside 1..%d", name, ndim,
                       PARAM_MAX_DIMS);
    if (init < INIT_ZEROS || init > INIT_KAIMING)
        return d2_fail(err, D2_EINVAL, "paramset_add: \"%s\": unknown init kind %d", name,
                       (int)init);
    if (paramset_find(ps, name))
        return d2_fail(err, D2_EINVAL, "paramset_add: duplicate tensor name \"%s\"", name);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || (uint64_t)shape[i] > (uint64_t)(SIZE_MAX / 4 / numel))
            return d2_fail(err, D2_ERANGE, "paramset_add: \"%s\": bad dimension %d = %lld", name,
                           i, (long long)shape[i]);
        numel *= (size_t)shape[i];
    }
    size_t start = (ps->total + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
    if (start + numel < start || start + numel > SIZE_MAX / 4 - PARAM_ALIGN)
        return d2_fail(err, D2_ERANGE, "paramset_add: \"%s\": parameter set too large", name);
    if (ps->count == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 32;
        param_entry *e = realloc(ps->entries, (size_t)cap * sizeof *e);
        if (!e)
            return d2_fail(err, D2_ENOMEM, "paramset_add: out of memory");
        ps->entries = e;
        ps->cap = cap;
    }
    param_entry *e = &ps->entries[ps->count++];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, strlen(name) + 1);
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->offset = start;
    e->numel = numel;
    e->init = init;
    e->init_scale = init_scale;
    ps->total = (start + numel + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
    if (offset)
        *offset = start;
    return 0;
}

/* x[numel] <- the initial values of e, drawn from the sub-stream rng_derive(seed, name, 0) */
static void paramset_init_entry(const param_entry *e, float *x, uint64_t seed)
{
    uint64_t s = rng_derive(seed, e->name, 0);
    size_t fan_in = (size_t)e->shape[e->ndim - 1];
    size_t fan_out = e->numel / fan_in;
    switch (e->init) {
    case INIT_ZEROS:
        memset(x, 0, e->numel * sizeof(float));
        break;
    case INIT_ONES:
        for (size_t i = 0; i < e->numel; i++)
            x[i] = 1.0f;
        break;
    case INIT_NORMAL:
        rng_fill_normal(x, e->numel, s, 0, 0.0f, e->init_scale);
        break;
    case INIT_XAVIER:
    case INIT_KAIMING: {
        double a = e->init == INIT_XAVIER ? sqrt(6.0 / (double)(fan_in + fan_out))
                                          : 1.0 / sqrt((double)fan_in);
        float bound = (float)(a * (double)e->init_scale);
        rng_fill_uniform(x, e->numel, s, 0);
        for (size_t i = 0; i < e->numel; i++)
            x[i] = bound * (2.0f * x[i] - 1.0f);
        break;
    }
    }
}

static void paramset_free_buffers(paramset *ps)
{
    if (!ps->be)
        return;
    float **bufs[] = {&ps->w, &ps->g, &ps->m, &ps->v, &ps->ema, &ps->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (*bufs[i])
            ps->be->ops->free(ps->be, *bufs[i]);
        *bufs[i] = NULL;
    }
}

int paramset_alloc(paramset *ps, backend_t *be, uint64_t seed, d2_error *err)
{
    if (!be)
        return d2_fail(err, D2_EINVAL, "paramset_alloc: no backend");
    if (ps->w)
        return d2_fail(err, D2_EINVAL, "paramset_alloc: already allocated");
    size_t total = ps->total ? ps->total : PARAM_ALIGN;
    ps->be = be;
    ps->w = backend_alloc_floats(be, total);
    ps->g = backend_alloc_floats(be, total);
    ps->scratch = backend_alloc_floats(be, PARAM_SCRATCH);
    float *host = calloc(total, sizeof(float));
    if (!ps->w || !ps->g || !ps->scratch || !host) {
        free(host);
        paramset_free_buffers(ps);
        return d2_fail(err, D2_ENOMEM,
                       "paramset_alloc: cannot allocate %zu parameters (%zu MiB) on %s", total,
                       total * sizeof(float) * 3 >> 20, be->ops->name);
    }
    for (int i = 0; i < ps->count; i++)
        paramset_init_entry(&ps->entries[i], host + ps->entries[i].offset, seed);
    int rc = be->ops->to_device(be, ps->w, host, total * sizeof(float));
    free(host);
    if (rc) {
        paramset_free_buffers(ps);
        return d2_fail(err, rc, "paramset_alloc: upload of %zu parameters failed", total);
    }
    return 0;
}

int paramset_alloc_optim(paramset *ps, d2_error *err)
{
    if (!ps->w)
        return d2_fail(err, D2_EINVAL, "paramset_alloc_optim: call paramset_alloc first");
    size_t total = ps->total ? ps->total : PARAM_ALIGN;
    if (!ps->m)
        ps->m = backend_alloc_floats(ps->be, total);
    if (!ps->v)
        ps->v = backend_alloc_floats(ps->be, total);
    if (!ps->m || !ps->v)
        return d2_fail(err, D2_ENOMEM, "paramset_alloc_optim: cannot allocate 2 x %zu floats",
                       total);
    return 0;
}

int paramset_alloc_ema(paramset *ps, d2_error *err)
{
    if (!ps->w)
        return d2_fail(err, D2_EINVAL, "paramset_alloc_ema: call paramset_alloc first");
    size_t total = ps->total ? ps->total : PARAM_ALIGN;
    if (!ps->ema)
        ps->ema = backend_alloc_floats(ps->be, total);
    if (!ps->ema)
        return d2_fail(err, D2_ENOMEM, "paramset_alloc_ema: cannot allocate %zu floats", total);
    int rc = ps->be->ops->copy(ps->be, ps->ema, ps->w, total * sizeof(float));
    if (rc)
        return d2_fail(err, rc, "paramset_alloc_ema: copy of the weights failed");
    return 0;
}

void paramset_zero_grad(paramset *ps)
{
    if (ps->g)
        ps->be->ops->fill(ps->be, ps->g, 0.0f, ps->total);
}

void paramset_free(paramset *ps)
{
    paramset_free_buffers(ps);
    free(ps->entries);
    paramset_init(ps);
}

size_t paramset_numel(const paramset *ps)
{
    size_t n = 0;
    for (int i = 0; i < ps->count; i++)
        n += ps->entries[i].numel;
    return n;
}
