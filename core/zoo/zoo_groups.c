/* zoo_groups.c - the class groups of a zoo's source (scripts, parts of an
 * "A+B" source) and drawing a task's classes within one group. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zoo_internal.h"

int zoo_groups_from_source(zoo *z, const data_source *src, d2_error *err)
{
    const int C = src->train.classes;
    free(z->groups);
    z->groups = NULL;
    z->ngroups = 0;
    int runs = 0;
    const char *prev = NULL;
    for (int c = 0; c < C; c++) {
        const char *g = data_source_class_group(src, c, NULL);
        runs += !prev || strcmp(g, prev) != 0;
        prev = g;
    }
    if (runs < 2)
        return 0;
    if (!(z->groups = calloc((size_t)runs, sizeof *z->groups)))
        return d2_fail(err, D2_ENOMEM, "zoo: out of memory for class groups");
    prev = NULL;
    for (int c = 0; c < C; c++) {
        int part;
        const char *g = data_source_class_group(src, c, &part);
        if (!prev || strcmp(g, prev) != 0) {
            zoo_group *n = &z->groups[z->ngroups++];
            snprintf(n->name, sizeof n->name, "%s", g);
            n->part = part;
            n->first = c;
        }
        z->groups[z->ngroups - 1].count++;
        prev = g;
    }
    return 0;
}

/* A group of a part chosen uniformly, then uniformly among its groups that
 * can make a task; -1 when none can. */
static int pick_group(const zoo *z, int way, rng *r)
{
    int parts = 0, usable[DATA_MAX_PARTS] = {0};
    for (int g = 0; g < z->ngroups; g++)
        if (z->groups[g].count >= way && z->groups[g].part < DATA_MAX_PARTS)
            usable[z->groups[g].part]++;
    for (int p = 0; p < DATA_MAX_PARTS; p++)
        parts += usable[p] > 0;
    if (!parts)
        return -1;
    int want = (int)rng_below(r, (uint32_t)parts), part = 0;
    for (; part < DATA_MAX_PARTS; part++)
        if (usable[part] && want-- == 0)
            break;
    int pick = (int)rng_below(r, (uint32_t)usable[part]);
    for (int g = 0; g < z->ngroups; g++)
        if (z->groups[g].count >= way && z->groups[g].part == part && pick-- == 0)
            return g;
    return -1;
}

int zoo_draw_grouped(const zoo *z, uint64_t seed, int way, int *out, d2_error *err)
{
    int most = 0;
    for (int g = 0; g < z->ngroups; g++)
        most = z->groups[g].count > most ? z->groups[g].count : most;
    int *perm = malloc((size_t)(most > 0 ? most : 1) * sizeof(int));
    if (!perm)
        return d2_fail(err, D2_ENOMEM, "zoo: out of memory drawing classes");
    rng r;
    rng_init(&r, seed, 0);
    int rc = D2_ERANGE;
    for (int attempt = 0; attempt < 100000 && rc == D2_ERANGE; attempt++) {
        int g = pick_group(z, way, &r);
        if (g < 0) {
            rc = d2_fail(err, D2_EINVAL, "zoo: no class group has %d classes", way);
            break;
        }
        const zoo_group *grp = &z->groups[g];
        task t = {.way = way};
        for (int i = 0; i < grp->count; i++)
            perm[i] = grp->first + i;
        for (int i = 0; i < way; i++) {
            int j = i + (int)rng_below(&r, (uint32_t)(grp->count - i));
            int tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
            t.classes[i] = perm[i];
        }
        if (!zoo_is_heldout(z, &t)) {
            memcpy(out, t.classes, sizeof(int) * (size_t)way);
            rc = 0;
        }
    }
    free(perm);
    if (rc == D2_ERANGE)
        return d2_fail(err, D2_ERANGE,
                       "zoo: could not draw a class combination that is not held out");
    return rc;
}
