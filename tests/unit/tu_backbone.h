/* tu_backbone.h - small Conv backbones written for the tests that need a
 * cnn:FILE feature map without training one. */
#ifndef D2_TU_BACKBONE_H
#define D2_TU_BACKBONE_H

#include "backend.h"
#include "convnet.h"
#include "testutil.h"

typedef struct tu_backbone {
    int size;          /* square input images of size x size pixels */
    int channels, blocks, classes;
    uint64_t seed;     /* initialisation */
    long long batches; /* batch-norm batches seen, as recorded in the file */
    int perturb;       /* 1: running statistics moved off their initial values */
} tu_backbone;

static inline void tu_write_backbone(const char *path, const tu_backbone *b)
{
    d2_error err = {0};
    backend_t *be = NULL;
    assert_int_equal(backend_cpu_create(&be, 1, &err), 0);
    convnet n;
    paramset ps, bufs;
    paramset_init(&ps);
    paramset_init(&bufs);
    assert_int_equal(convnet_init(&n, &ps, &bufs, 1, b->size, b->size, b->channels, b->blocks,
                                  b->classes, &err),
                     0);
    assert_int_equal(paramset_alloc(&ps, be, b->seed, &err), 0);
    assert_int_equal(paramset_alloc(&bufs, be, b->seed, &err), 0);
    for (size_t i = 0; b->perturb && i < bufs.total; i++)
        bufs.w[i] += 0.1f * (float)(i % 5);
    assert_int_equal(convnet_save(&n, &ps, &bufs, b->batches, path, NULL, 0, &err), 0);
    paramset_free(&ps);
    paramset_free(&bufs);
    backend_destroy(be);
}

#endif
