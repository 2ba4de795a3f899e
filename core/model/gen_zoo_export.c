/* gen_zoo_export.c - a zoo entry as a complete safetensors checkpoint. */
#include "gen_zoo_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_model.h"
#include "safetensors.h"

int generator_zoo_size(const generator *g)
{
    return g->zoo_n;
}

/* "[3,7,1]": the entry's classes (way values); malloc'd, NULL without memory. */
static char *classes_json(const generator *g, int index, int way)
{
    size_t cap = (size_t)way * 12 + 4;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
    n += (size_t)snprintf(out, cap, "[");
    for (int c = 0; c < way; c++)
        n += (size_t)snprintf(out + n, cap - n, "%s%d", c ? "," : "",
                              (int)g->zoo_classes[(size_t)index * g->cfg.way + c]);
    snprintf(out + n, cap - n, "]");
    return out;
}

int generator_zoo_checkpoint_bytes(const generator *g, int index, unsigned char **bytes,
                                   size_t *len, d2_error *err)
{
    *bytes = NULL;
    *len = 0;
    if (index < 0 || index >= g->zoo_n)
        return d2_fail(err, D2_ERANGE, "zoo index %d outside 0..%d", index, g->zoo_n - 1);
    const float *wide = g->zoo_theta + (size_t)index * g->cfg.P;
    const int way = gen_zoo_entry_way(g, index);
    target_spec hs;
    int rc = gen_head_spec(g, way, &hs, err);
    if (rc)
        return rc;
    char idx[24];
    snprintf(idx, sizeof idx, "%d", index);
    char *classes = classes_json(g, index, way);
    float *theta = malloc(hs.numel * sizeof(float));
    if (!classes || !theta) {
        free(classes);
        free(theta);
        return d2_fail(err, D2_ENOMEM, "out of memory");
    }
    if (way == g->cfg.way)
        memcpy(theta, wide, hs.numel * sizeof(float));
    else
        target_theta_narrow(&g->spec, &hs, wide, theta);
    st_writer w;
    st_writer_init(&w);
    if ((rc = target_write_tensors(&hs, &g->fmap, theta, &w, err)) ||
        (rc = st_writer_meta(&w, "format", "pt", err)) ||
        (rc = st_writer_meta(&w, "d2nwg.source", "zoo", err)) ||
        (rc = st_writer_meta(&w, "d2nwg.spec", hs.text, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.generator", g->info.id, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.zoo_fingerprint", g->info.zoo_fingerprint, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.zoo_index", idx, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.classes", classes, err)) ||
        (rc = st_writer_meta(&w, "d2nwg.version", D2_VERSION, err)))
        goto out;
    rc = st_writer_to_memory(&w, bytes, len, err);
out:
    st_writer_free(&w);
    free(classes);
    free(theta);
    return rc;
}
