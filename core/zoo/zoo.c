/* zoo.c - a zoo's lifetime and the data of its tasks: support, query and
 * training sets in feature space. */
#include "zoo.h"

#include <stdlib.h>
#include <string.h>

#include "zoo_internal.h"

void zoo_clear(zoo *z)
{
    if (z->e)
        for (int i = 0; i < z->n; i++)
            free(z->e[i].data_path);
    free(z->e);
    free(z->theta);
    free(z->heldout);
    free(z->groups);
    z->groups = NULL;
    z->ngroups = 0;
    feature_map_free(&z->fmap);
    dataset_free(&z->train_feat);
    dataset_free(&z->test_feat);
    class_index_free(&z->train_ci);
    class_index_free(&z->test_ci);
    if (z->entry_feat)
        for (int i = 0; i < z->n; i++)
            dataset_free(&z->entry_feat[i]);
    free(z->entry_feat);
    z->e = NULL;
    z->theta = NULL;
    z->heldout = NULL;
    z->entry_feat = NULL;
    z->n = z->n_heldout = 0;
    z->has_data = 0;
}

void zoo_free(zoo *z)
{
    if (!z)
        return;
    zoo_clear(z);
    memset(z, 0, sizeof *z);
}

int zoo_check_task(const zoo *z, const task *t, d2_error *err)
{
    if (!z || !t)
        return d2_fail(err, D2_EINVAL, "zoo: no task");
    if (!z->has_data || z->entry_feat)
        return d2_fail(err, D2_EINVAL, "zoo: %s",
                       z->entry_feat ? "an imported zoo has no source data; use the entries' data"
                                     : "the source data are not loaded (zoo_load with load_data)");
    int C = z->train_feat.classes;
    if (t->way < 1 || t->way > D2_MAX_WAY)
        return d2_fail(err, D2_EINVAL, "task: way %d outside 1..%d", t->way, D2_MAX_WAY);
    for (int i = 0; i < t->way; i++) {
        if (t->classes[i] < 0 || t->classes[i] >= C)
            return d2_fail(err, D2_EINVAL, "task: class %d outside the source's 0..%d",
                           t->classes[i], C - 1);
        for (int j = 0; j < i; j++)
            if (t->classes[j] == t->classes[i])
                return d2_fail(err, D2_EINVAL, "task: class %d appears twice", t->classes[i]);
    }
    return 0;
}

int zoo_gather_all(const dataset *src, const class_index *ci, const task *t, dataset *out,
                   d2_error *err)
{
    int n = 0;
    for (int i = 0; i < t->way; i++) {
        if (t->classes[i] >= ci->classes || ci->count[t->classes[i]] == 0)
            return d2_fail(err, D2_EINVAL, "task: class %d has no samples in this split",
                           t->classes[i]);
        n += ci->count[t->classes[i]];
    }
    int rc = dataset_alloc(out, n, src->dim, err);
    if (rc)
        return rc;
    size_t D = (size_t)src->dim;
    int k = 0;
    for (int i = 0; i < t->way; i++) {
        int c = t->classes[i];
        for (int j = 0; j < ci->count[c]; j++, k++) {
            memcpy(out->x + (size_t)k * D, src->x + (size_t)ci->rows[c][j] * D, sizeof(float) * D);
            out->y[k] = i;
        }
    }
    out->classes = t->way;
    return 0;
}

int zoo_task_support(const zoo *z, const task *t, int shots, rng *r, dataset *out,
                     d2_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = zoo_check_task(z, t, err);
    if (rc)
        return rc;
    if (shots < 1)
        return d2_fail(err, D2_EINVAL, "zoo: %d shots; a support set needs at least 1", shots);
    return task_draw(&z->train_feat, &z->train_ci, t, shots, r, out, err);
}

int zoo_task_train(const zoo *z, const task *t, int per_class, rng *r, dataset *out,
                   d2_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = zoo_check_task(z, t, err);
    return rc ? rc : task_draw(&z->train_feat, &z->train_ci, t, per_class, r, out, err);
}

int zoo_task_query(const zoo *z, const task *t, dataset *out, d2_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = zoo_check_task(z, t, err);
    return rc ? rc : zoo_gather_all(&z->test_feat, &z->test_ci, t, out, err);
}

int zoo_entry_support(const zoo *z, int entry, int shots, rng *r, dataset *out, d2_error *err)
{
    memset(out, 0, sizeof *out);
    if (!z || entry < 0 || entry >= z->n)
        return d2_fail(err, D2_EINVAL, "zoo: entry %d outside 0..%d", entry, z ? z->n - 1 : -1);
    if (shots < 1)
        return d2_fail(err, D2_EINVAL, "zoo: %d shots; a support set needs at least 1", shots);
    const zoo_entry *e = &z->e[entry];
    task t = {.way = e->way};
    memcpy(t.classes, e->classes, sizeof(int) * (size_t)e->way);
    if (!z->entry_feat)
        return zoo_task_support(z, &t, shots, r, out, err);
    /* imported: the entry's own data set, labels 0..way-1 */
    const dataset *d = &z->entry_feat[entry];
    class_index ci;
    int rc = class_index_build(&ci, d, err);
    if (rc)
        return d2_wrap(err, "zoo entry %d", entry);
    for (int i = 0; i < t.way; i++)
        t.classes[i] = i;
    rc = task_draw(d, &ci, &t, shots, r, out, err);
    class_index_free(&ci);
    return rc;
}
