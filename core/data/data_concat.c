/* data_concat.c - sources side by side ("A+B"), and the group of a class. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

/* dst = dst rows, then src rows with labels + offset. */
static int append_rows(dataset *dst, const dataset *src, int offset, d2_error *err)
{
    if (dst->n && dst->dim != src->dim)
        return d2_fail(err, D2_EINVAL, "%d features per row where the earlier parts have %d",
                       src->dim, dst->dim);
    dataset out;
    int rc = dataset_alloc(&out, dst->n + src->n, src->dim, err);
    if (rc)
        return rc;
    size_t a = (size_t)dst->n * src->dim, b = (size_t)src->n * src->dim;
    if (dst->n)
        memcpy(out.x, dst->x, a * sizeof(float));
    memcpy(out.x + a, src->x, b * sizeof(float));
    if (dst->n)
        memcpy(out.y, dst->y, (size_t)dst->n * sizeof(int32_t));
    for (int i = 0; i < src->n; i++)
        out.y[dst->n + i] = src->y[i] + offset;
    out.classes = offset + src->classes;
    dataset_free(dst);
    *dst = out;
    return 0;
}

/* Add part p (loaded in `part`) to s. */
static int add_part(data_source *s, data_source *part, int p, d2_error *err)
{
    const int first = s->part_first[p], C = part->train.classes;
    int rc;
    if ((rc = append_rows(&s->train, &part->train, first, err)) ||
        (rc = append_rows(&s->test, &part->test, first, err)))
        return rc;
    s->test.classes = s->train.classes = first + C;
    s->part_first[p + 1] = first + C;
    if (part->class_info || s->class_info) {
        data_class_info *ci = realloc(s->class_info, (size_t)(first + C) * sizeof *ci);
        if (!ci)
            return d2_fail(err, D2_ENOMEM, "out of memory");
        if (!s->class_info) // the earlier parts knew nothing of their classes
            memset(ci, 0, (size_t)first * sizeof *ci);
        s->class_info = ci;
        for (int c = 0; c < C; c++)
            ci[first + c] = part->class_info ? part->class_info[c] : (data_class_info){0};
    }
    return 0;
}

int data_source_concat(data_source *s, const char *spec, d2_error *err)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", spec);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "+", &save); tok && rc == 0;
         tok = strtok_r(NULL, "+", &save)) {
        if (s->nparts == DATA_MAX_PARTS) {
            rc = d2_fail(err, D2_ERANGE, "data source %.100s: more than %d parts", spec,
                         DATA_MAX_PARTS);
            break;
        }
        if (strchr(tok, '+') || !*tok) {
            rc = d2_fail(err, D2_EINVAL, "data source %.100s: an empty part", spec);
            break;
        }
        data_source part;
        if ((rc = data_source_load(&part, tok, err)))
            break;
        int p = s->nparts++;
        snprintf(s->part_name[p], sizeof s->part_name[p], "%s", tok);
        if ((rc = add_part(s, &part, p, err)))
            d2_wrap(err, "data source %.100s, part %s", spec, tok);
        data_source_free(&part);
    }
    if (rc == 0 && s->nparts < 2)
        rc = d2_fail(err, D2_EINVAL, "data source %.100s: '+' needs two parts", spec);
    if (rc) {
        data_source_free(s);
        snprintf(s->name, sizeof s->name, "%s", spec);
    }
    return rc;
}

const char *data_source_class_group(const data_source *s, int c, int *part)
{
    int p = 0;
    while (p + 1 < s->nparts && c >= s->part_first[p + 1])
        p++;
    if (part)
        *part = p;
    if (s->class_info && c >= 0 && c < s->train.classes && s->class_info[c].script)
        return s->class_info[c].script;
    return s->nparts ? s->part_name[p] : s->name;
}
