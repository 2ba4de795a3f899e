/* params.h - a model's named parameters in one contiguous device buffer.
 *
 * Modules register their tensors (name, shape, initialisation) before
 * allocation and keep the returned offset; after paramset_alloc() a tensor's
 * weights are ps->w + offset and its gradient ps->g + offset. One buffer means
 * AdamW, EMA, gradient clipping and zeroing are single ops over `total`
 * floats, and saving is a loop over the entries. */
#ifndef D2_PARAMS_H
#define D2_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define PARAM_NAME_LEN 96
#define PARAM_MAX_DIMS 4

typedef enum param_init {
    INIT_ZEROS = 0,
    INIT_ONES = 1,
    INIT_NORMAL = 2,  /* N(0, scale^2) */
    INIT_XAVIER = 3,  /* U(-a, a), a = scale * sqrt(6 / (fan_in + fan_out)), shape [out, in] */
    INIT_KAIMING = 4  /* U(-a, a), a = scale * 1/sqrt(fan_in) (PyTorch nn.Linear default) */
} param_init;

typedef struct param_entry {
    char name[PARAM_NAME_LEN];
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t offset; /* in floats, 16-float aligned */
    size_t numel;
    param_init init;
    float init_scale;
} param_entry;

typedef struct paramset {
    param_entry *entries;
    int count, cap;
    size_t total;    /* floats, including alignment padding */
    backend_t *be;
    float *w;        /* [total] weights */
    float *g;        /* [total] gradients */
    float *m, *v;    /* AdamW moments, allocated by paramset_alloc_optim */
    float *ema;      /* EMA copy, allocated by paramset_alloc_ema */
    float *scratch;  /* [16] device floats for reductions (gradient norm), from paramset_alloc */
} paramset;

void paramset_init(paramset *ps);
/* Register a tensor; *offset receives its position. Fails on duplicate names. */
int paramset_add(paramset *ps, const char *name, int ndim, const int64_t *shape,
                 param_init init, float init_scale, size_t *offset, d2_error *err);
/* Allocate w and g on be and initialise w from seed (each tensor draws from the
 * sub-stream rng_derive(seed, name, 0), so adding a tensor does not change the others). */
int paramset_alloc(paramset *ps, backend_t *be, uint64_t seed, d2_error *err);
int paramset_alloc_optim(paramset *ps, d2_error *err);
int paramset_alloc_ema(paramset *ps, d2_error *err); /* ema = copy of w */
void paramset_zero_grad(paramset *ps);
const param_entry *paramset_find(const paramset *ps, const char *name);
void paramset_free(paramset *ps);
/* Number of parameters (without padding). */
size_t paramset_numel(const paramset *ps);

#endif
