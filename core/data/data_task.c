/* data_task.c - per-class row index and the N-way task sampler. */
#include "data.h"

#include <stdlib.h>
#include <string.h>

void class_index_free(class_index *ci)
{
    if (!ci)
        return;
    if (ci->rows)
        for (int c = 0; c < ci->classes; c++)
            free(ci->rows[c]);
    free(ci->rows);
    free(ci->count);
    memset(ci, 0, sizeof *ci);
}

int class_index_build(class_index *ci, const dataset *d, d2_error *err)
{
    memset(ci, 0, sizeof *ci);
    if (d->classes <= 0)
        return d2_fail(err, D2_EINVAL,
                       "class_index_build: the dataset has %d classes (validate it first)",
                       d->classes);
    ci->classes = d->classes;
    ci->count = calloc((size_t)d->classes, sizeof *ci->count);
    ci->rows = calloc((size_t)d->classes, sizeof *ci->rows);
    if (!ci->count || !ci->rows) {
        class_index_free(ci);
        return d2_fail(err, D2_ENOMEM, "out of memory indexing %d classes", d->classes);
    }
    for (int i = 0; i < d->n; i++) {
        if (d->y[i] < 0 || d->y[i] >= d->classes) {
            int rc = d2_fail(err, D2_ERANGE, "class_index_build: row %d: label %d is outside 0..%d",
                             i, (int)d->y[i], d->classes - 1);
            class_index_free(ci);
            return rc;
        }
        ci->count[d->y[i]]++;
    }
    for (int c = 0; c < d->classes; c++) {
        if (ci->count[c] == 0)
            continue;
        ci->rows[c] = malloc((size_t)ci->count[c] * sizeof **ci->rows);
        if (!ci->rows[c]) {
            class_index_free(ci);
            return d2_fail(err, D2_ENOMEM, "out of memory indexing class %d", c);
        }
        ci->count[c] = 0;
    }
    for (int i = 0; i < d->n; i++) {
        int c = d->y[i];
        ci->rows[c][ci->count[c]++] = i;
    }
    return 0;
}

int task_draw(const dataset *src, const class_index *ci, const task *t, int per_class, rng *r,
              dataset *out, d2_error *err)
{
    memset(out, 0, sizeof *out);
    if (t->way < 1 || t->way > D2_MAX_WAY)
        return d2_fail(err, D2_EINVAL, "task: way = %d (1..%d allowed)", t->way, D2_MAX_WAY);
    int take[D2_MAX_WAY];
    int total = 0;
    for (int i = 0; i < t->way; i++) {
        int c = t->classes[i];
        if (c < 0 || c >= ci->classes)
            return d2_fail(err, D2_EINVAL, "task: class %d (position %d) is outside 0..%d", c, i,
                           ci->classes - 1);
        for (int j = 0; j < i; j++)
            if (t->classes[j] == c)
                return d2_fail(err, D2_EINVAL, "task: class %d appears twice (positions %d and %d)",
                               c, j, i);
        int m = ci->count[c];
        if (m == 0)
            return d2_fail(err, D2_EINVAL, "task: class %d has no rows to draw from", c);
        take[i] = (per_class <= 0 || per_class > m) ? m : per_class;
        total += take[i];
    }
    int rc = dataset_alloc(out, total, src->dim, err);
    if (rc)
        return rc;
    int maxm = 0;
    for (int i = 0; i < t->way; i++)
        if (ci->count[t->classes[i]] > maxm)
            maxm = ci->count[t->classes[i]];
    int *pool = malloc((size_t)maxm * sizeof *pool);
    if (!pool) {
        dataset_free(out);
        return d2_fail(err, D2_ENOMEM, "task: out of memory");
    }
    size_t row_bytes = (size_t)src->dim * sizeof(float);
    int k = 0;
    for (int i = 0; i < t->way; i++) {
        int c = t->classes[i], m = ci->count[c];
        memcpy(pool, ci->rows[c], (size_t)m * sizeof *pool);
        /* Partial Fisher-Yates: the first take[i] entries are a uniform draw
         * without replacement, in a seeded order. */
        for (int j = 0; j < take[i]; j++) {
            int pick = j + (int)rng_below(r, (uint32_t)(m - j));
            int tmp = pool[j];
            pool[j] = pool[pick];
            pool[pick] = tmp;
            memcpy(out->x + (size_t)k * (size_t)src->dim,
                   src->x + (size_t)pool[j] * (size_t)src->dim, row_bytes);
            out->y[k] = i;
            k++;
        }
    }
    free(pool);
    out->classes = t->way;
    return 0;
}
