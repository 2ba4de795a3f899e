/* feature_map_cnn.c - the `cnn:FILE` feature map: a backbone from `d2nwg backbone train`
 * (core/nn/convnet.h) run in eval mode on a CPU backend of its own; features are the
 * global-average-pooled outputs of its last block. The file's sha256 identifies the map
 * (fingerprints, lineage). One map may serve several threads (a generator shared by the
 * daemon's workers): its scratch (arena, batch buffer) is used under a mutex. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet.h"
#include "fileio.h"
#include "safetensors.h"
#include "sha256.h"
#include "target.h"

#define CNN_CHUNK 256
#define CNN_MAX_FILE (1u << 30)

struct fm_cnn {
    backend_t *be;
    convnet net;
    paramset ps, bufs;
    arena ar;
    float *xd;
    pthread_mutex_t lock; /* the backend, arena and xd are one caller's at a time */
    char path[1024];
    char sha256[65];
};

static void fm_cnn_free(struct fm_cnn *c)
{
    if (!c)
        return;
    if (c->xd)
        c->be->ops->free(c->be, c->xd);
    pthread_mutex_destroy(&c->lock);
    arena_free(&c->ar);
    paramset_free(&c->ps);
    paramset_free(&c->bufs);
    backend_destroy(c->be);
    free(c);
}

static int fm_cnn_hash(struct fm_cnn *c, const char *path, d2_error *err)
{
    unsigned char *bytes = NULL;
    size_t len = 0;
    int rc = d2_read_file(path, &bytes, &len, CNN_MAX_FILE, err);
    if (rc)
        return rc;
    sha256_hex(bytes, len, c->sha256);
    free(bytes);
    return 0;
}

int feature_map_load_cnn(feature_map *f, const char *path, d2_error *err)
{
    memset(f, 0, sizeof *f);
    struct fm_cnn *c = calloc(1, sizeof *c);
    if (!c)
        return d2_fail(err, D2_ENOMEM, "cnn feature map: out of memory");
    if (snprintf(c->path, sizeof c->path, "%s", path) >= (int)sizeof c->path) {
        free(c);
        return d2_fail(err, D2_EINVAL, "cnn feature map: path too long");
    }
    if (pthread_mutex_init(&c->lock, NULL)) {
        free(c);
        return d2_fail(err, D2_ENOMEM, "cnn feature map: cannot create a mutex");
    }
    int rc = fm_cnn_hash(c, path, err);
    if (!rc)
        rc = backend_cpu_create(&c->be, 0, err);
    if (!rc)
        rc = convnet_load(&c->net, &c->ps, &c->bufs, c->be, path, NULL, err);
    if (!rc)
        rc = arena_init(&c->ar, c->be, convnet_arena_bytes(&c->net, CNN_CHUNK), err);
    size_t px = (size_t)c->net.in_ch * c->net.H * c->net.W;
    if (!rc && !(c->xd = backend_alloc_floats(c->be, CNN_CHUNK * px)))
        rc = d2_fail(err, D2_ENOMEM, "cnn feature map: out of memory");
    if (rc) {
        if (c->be && !c->ps.w) { /* convnet_load failed: it freed its paramsets */
            paramset_init(&c->ps);
            paramset_init(&c->bufs);
        }
        fm_cnn_free(c);
        return d2_wrap(err, "cnn:%s", path);
    }
    f->cnn = c;
    f->in_dim = (int)px;
    f->out_dim = c->net.ch;
    return 0;
}

void feature_map_cnn_release(feature_map *f)
{
    fm_cnn_free(f->cnn);
    f->cnn = NULL;
}

const char *feature_map_cnn_sha256(const feature_map *f)
{
    return f && f->cnn ? f->cnn->sha256 : NULL;
}

const char *feature_map_cnn_path(const feature_map *f)
{
    return f && f->cnn ? f->cnn->path : NULL;
}

/* features of rows [r0, r0 + b) of in into out */
static int fm_cnn_chunk(const struct fm_cnn *cc, const dataset *in, int r0, int b,
                        dataset *out, d2_error *err)
{
    struct fm_cnn *c = (struct fm_cnn *)cc; /* the arena and batch buffer are scratch */
    backend_t *be = c->be;
    convnet_cache k;
    if (be->ops->to_device(be, c->xd, in->x + (size_t)r0 * in->dim,
                           (size_t)b * in->dim * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "cnn feature map: cannot upload rows");
    arena_reset(&c->ar, 0);
    int rc = convnet_forward(be, &c->net, &c->ps, &c->bufs, &c->ar, &k, c->xd, b, 0, err);
    if (rc)
        return rc;
    if (be->ops->to_host(be, out->x + (size_t)r0 * c->net.ch, k.feat,
                         (size_t)b * c->net.ch * sizeof(float)))
        return d2_fail(err, D2_EDEVICE, "cnn feature map: cannot read features");
    return 0;
}

int feature_map_cnn_apply(const struct fm_cnn *c, const dataset *in, dataset *out,
                          d2_error *err)
{
    int rc = dataset_alloc(out, in->n, c->net.ch, err);
    if (rc)
        return rc;
    memcpy(out->y, in->y, sizeof(int32_t) * (size_t)in->n);
    out->classes = in->classes;
    pthread_mutex_t *lock = (pthread_mutex_t *)&c->lock;
    pthread_mutex_lock(lock);
    for (int r0 = 0; !rc && r0 < in->n; r0 += CNN_CHUNK)
        rc = fm_cnn_chunk(c, in, r0, in->n - r0 < CNN_CHUNK ? in->n - r0 : CNN_CHUNK, out, err);
    pthread_mutex_unlock(lock);
    if (rc)
        dataset_free(out);
    return rc;
}

int feature_map_cnn_write(const feature_map *f, const char *prefix, struct st_writer *w,
                          d2_error *err)
{
    if (!f->cnn)
        return d2_fail(err, D2_EINVAL, "feature map: not a cnn map");
    st_file sf;
    int rc = st_load(&sf, f->cnn->path, err);
    if (rc)
        return rc;
    for (int i = 0; !rc && i < sf.count; i++) {
        const st_tensor *t = &sf.tensors[i];
        char name[256];
        /* the classifier (module blocks + 2) is not part of the feature map */
        int cls = atoi(t->name) == f->cnn->net.blocks + 2;
        if (cls)
            continue;
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        rc = st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data,
                           t->end - t->begin, err);
    }
    st_free(&sf);
    return rc;
}

int feature_map_cnn_arch(const feature_map *f, char *buf, size_t len, d2_error *err)
{
    if (!f->cnn)
        return d2_fail(err, D2_EINVAL, "feature map: not a cnn map");
    convnet n = f->cnn->net;
    n.classes = 0;
    return convnet_arch_string(&n, buf, len, err);
}
