/* convnet.h - Conv-N: the convolutional backbone behind the `cnn:FILE` feature map, and its
 * file format.
 *
 * Network (blocks = 4: "Conv-4"), for images [B, in_ch, H, W]:
 *   block i:  Conv2d(c_in, ch, 3, padding=1, bias=False), BatchNorm2d(ch), ReLU(), MaxPool2d(2)
 *   then      AdaptiveAvgPool2d(1), Flatten()            -> features [B, ch]
 *   then      Linear(ch, classes)  (only when classes > 0: the training classifier)
 *
 * Parameter names are those of the matching torch.nn.Sequential's state_dict:
 *   "<i>.0.weight" [ch, c_in, 3, 3]; "<i>.1.weight", ".bias", ".running_mean",
 *   ".running_var" [ch], ".num_batches_tracked" (I64 scalar); "<blocks+2>.weight"
 *   [classes, ch], "<blocks+2>.bias" [classes].
 *
 * The file's __metadata__ carries "architecture": the torch.nn expression of the network,
 * in the grammar
 *     module := Name "(" [arg {", " arg}] ")"        arg := int | key "=" (int | False)
 *                                                   | module
 * where every Name is a torch.nn class and its args are that class's constructor arguments,
 * so the string maps one-to-one onto torch.nn modules (Python evaluates it in the torch.nn
 * namespace), and "d2nwg.convnet": "in_ch=1 h=28 w=28 ch=64 blocks=4 classes=N", the
 * sizes d2nwg reads back. */
#ifndef D2_CONVNET_H
#define D2_CONVNET_H

#include "conv.h"
#include "layers.h"

#define CONVNET_MAX_BLOCKS 6

typedef struct convnet {
    int in_ch, H, W, ch, blocks, classes;
    int out_h, out_w; /* spatial size after the last pool (>= 1) */
    conv2d_layer conv[CONVNET_MAX_BLOCKS];
    batchnorm2d bn[CONVNET_MAX_BLOCKS];
    linear fc; /* when classes > 0 */
} convnet;

typedef struct convnet_cache {
    int B, train;
    const float *x;                         /* [B, in_ch, H, W] (caller's) */
    const float *in[CONVNET_MAX_BLOCKS];    /* block inputs */
    float *col[CONVNET_MAX_BLOCKS];         /* im2col of the block input */
    float *conv[CONVNET_MAX_BLOCKS];        /* conv output (batch norm input) */
    float *act[CONVNET_MAX_BLOCKS];         /* ReLU(BN(conv)) (max pool input) */
    float *mean[CONVNET_MAX_BLOCKS], *rstd[CONVNET_MAX_BLOCKS];
    float *pool[CONVNET_MAX_BLOCKS];        /* block outputs */
    float *feat;                            /* [B, ch] */
    float *logits;                          /* [B, classes] when classes > 0 */
} convnet_cache;

/* Register the parameters (ps) and batch-norm buffers (bufs); D2_EINVAL with a message for
 * sizes that pool an image below 1x1. */
int convnet_init(convnet *n, paramset *ps, paramset *bufs, int in_ch, int H, int W, int ch,
                 int blocks, int classes, d2_error *err);
/* x: [B, in_ch*H*W] -> c->feat (and c->logits); activations in the arena. train: batch
 * statistics (and running-statistics updates), else the running statistics. */
int convnet_forward(backend_t *be, const convnet *n, const paramset *ps, paramset *bufs,
                    arena *ar, convnet_cache *c, const float *x, int B, int train,
                    d2_error *err);
/* Gradients (+=) of every parameter from dfeat: [B, ch] (may be NULL) and dlogits:
 * [B, classes] (may be NULL); needs the forward's cache. */
int convnet_backward(backend_t *be, const convnet *n, paramset *ps, arena *ar,
                     const convnet_cache *c, const float *dfeat, const float *dlogits,
                     d2_error *err);
/* Arena bytes a forward + backward of batch B needs. */
size_t convnet_arena_bytes(const convnet *n, int B);

/* The "architecture" string (see above) into buf; D2_ERANGE when it does not fit. */
int convnet_arch_string(const convnet *n, char *buf, size_t len, d2_error *err);

/* Save the network (weights from ps, buffers from bufs; batches = num_batches_tracked) as
 * safetensors with the metadata above plus extra key/value pairs (may be NULL). */
int convnet_save(const convnet *n, const paramset *ps, const paramset *bufs, long long batches,
                 const char *path, const char *const *extra_kv, int n_extra, d2_error *err);

/* The same tensors and metadata added to a writer (a checkpoint adds its own after). */
struct st_writer;
int convnet_write(const convnet *n, const paramset *ps, const paramset *bufs, long long batches,
                  struct st_writer *w, const char *const *extra_kv, int n_extra, d2_error *err);

/* Load a saved network onto be: sizes from "d2nwg.convnet", every tensor by name and shape
 * (a missing or misshapen one is an error naming it). ps and bufs are allocated here
 * (seed only matters for tensors the file lacks: none). *batches may be NULL. */
struct st_file;
int convnet_load(convnet *n, paramset *ps, paramset *bufs, backend_t *be, const char *path,
                 long long *batches, d2_error *err);

#endif
