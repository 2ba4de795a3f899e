/* target.h - target networks from a declarative spec, and feature maps.
 *
 * Spec grammar (layers separated by '|'):
 *   "pca:128 | linear 128->5"   frozen PCA map to 128 features, then a linear head
 *   "linear 64->10"             identity feature map
 *   "mlp 784-64-10 relu"        Linear(784,64), ReLU, Linear(64,10)
 *   "pca:64 | mlp 64-32-5 relu"
 *   "cnn:BACKBONE.safetensors | linear 64->5"   a backbone from `d2nwg backbone train` as the
 *                               frozen feature map (no spaces in the path)
 * Tensor names follow PyTorch nn.Sequential's state_dict, with the frozen
 * feature map (when present) as module 0: for "pca:128 | linear 128->5" the
 * file holds 0.weight [128,784], 0.bias [128], 1.weight [5,128], 1.bias [5], so
 * torch.nn.Sequential(nn.Linear(784,128), nn.Linear(128,5)) loads it.
 *
 * The trainable parameters ("theta", the vector the weight VAE sees) are the
 * generated layers' tensors flattened in spec order, weight then bias,
 * row-major. Training and evaluation run on the host in feature space. */
#ifndef D2_TARGET_H
#define D2_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common.h"
#include "data.h"

#define TARGET_MAX_LAYERS 16

typedef enum tl_kind { TL_LINEAR, TL_RELU, TL_TANH, TL_GELU, TL_SILU } tl_kind;

typedef struct target_layer {
    tl_kind kind;
    int in, out;       /* for TL_LINEAR */
    int module;        /* nn.Sequential index (names "<module>.weight") */
    size_t w_off, b_off; /* offsets into theta (TL_LINEAR) */
} target_layer;

typedef struct target_spec {
    char text[256];
    int has_pca;         /* frozen feature map present */
    int pca_dim;         /* its output size (0 without) */
    int has_cnn;         /* "cnn:FILE": a backbone file is the frozen feature map (module 0
                          * is then the backbone's nn.Sequential; has_pca stays 0) */
    char cnn_path[200];
    int nlayers;
    target_layer layers[TARGET_MAX_LAYERS];
    int feat_dim;        /* input of the generated layers */
    int out_dim;         /* classes of the full head (max way) */
    size_t numel;        /* length of theta */
} target_spec;

int target_spec_parse(target_spec *s, const char *text, d2_error *err);

/* Feature map: y = W (x - mean); identity when W == NULL and cnn == NULL; or, with cnn,
 * a convolutional backbone's features (feature_map_cnn.c: `cnn:FILE`). */
struct fm_cnn;
typedef struct feature_map {
    int in_dim, out_dim;
    float *W;    /* [out_dim, in_dim] or NULL */
    float *mean; /* [in_dim] or NULL */
    struct fm_cnn *cnn; /* the backbone, or NULL */
} feature_map;

/* The feature map of a backbone file written by `d2nwg backbone train`: rows of in_ch*H*W
 * pixels -> the ch global-average-pooled features of its last block (eval mode: running
 * batch-norm statistics; the classifier is not used). Runs on a CPU backend of its own. */
int feature_map_load_cnn(feature_map *f, const char *path, d2_error *err);
/* The backbone file's sha256 (hex) and path, or NULL for a map without a backbone. */
const char *feature_map_cnn_sha256(const feature_map *f);
const char *feature_map_cnn_path(const feature_map *f);
/* The backbone's tensors with "<prefix>" before each name (PyTorch state_dict of
 * a module nested at that prefix), and its torch.nn expression without the classifier. */
struct st_writer;
int feature_map_cnn_write(const feature_map *f, const char *prefix, struct st_writer *w,
                          d2_error *err);
int feature_map_cnn_arch(const feature_map *f, char *buf, size_t len, d2_error *err);

/* PCA by the top-k eigenvectors of the covariance (deterministic sign: the
 * largest-magnitude entry of each component is positive). */
int feature_map_fit_pca(feature_map *f, const dataset *d, int k, d2_error *err);
int feature_map_identity(feature_map *f, int dim, d2_error *err);
/* out gets n rows of out_dim features, same labels. Runs on a CPU backend made
 * for the call (OpenBLAS's current thread count): feature_map_apply_dev's math. */
int feature_map_apply(const feature_map *f, const dataset *in, dataset *out, d2_error *err);
void feature_map_free(feature_map *f);

/* A feature map resident on a backend: W [out_dim, in_dim] and the negated
 * mean [in_dim] in device memory of `be` (W NULL: identity). */
typedef struct feature_map_dev {
    backend_t *be;
    int in_dim, out_dim;
    float *W, *neg_mean;
    const struct fm_cnn *cnn; /* borrowed from the feature_map: runs on its own backend */
} feature_map_dev;
int feature_map_upload(feature_map_dev *d, const feature_map *f, backend_t *be, d2_error *err);
void feature_map_dev_free(feature_map_dev *d);
/* feature_map_apply with the ops on `be` (which shares memory with d->be): the
 * rows of `in` (host) are centred (add_bias of the negated mean) and projected
 * (gemm) on the device; out on the host. */
int feature_map_apply_dev(const feature_map_dev *d, backend_t *be, const dataset *in,
                          dataset *out, d2_error *err);
int feature_map_copy(feature_map *dst, const feature_map *src, d2_error *err);

/* Heads of fewer classes than the spec's outputs (any-way generators): a
 * spec of one linear layer F->W narrowed to F->way (the text's last "->W"
 * becomes "->way"); theta between the two: the first `way` rows of the weight
 * and the bias (narrow), or those rows with the others zero (widen). */
int target_spec_with_way(const target_spec *s, int way, target_spec *out, d2_error *err);
void target_theta_narrow(const target_spec *wide, const target_spec *narrow, const float *wtheta,
                         float *ntheta);
void target_theta_widen(const target_spec *wide, const target_spec *narrow, const float *ntheta,
                        float *wtheta);
/* Zero the last layer's outputs way.. (a head trained on `way` classes). */
void target_zero_rows_from(const target_spec *s, int way, float *theta);
/* Host forward in feature space: x [n, feat_dim] -> logits [n, out] where
 * out = way (the first `way` outputs of the last layer; way <= out_dim). */
int target_forward(const target_spec *s, const float *theta, const float *x, int n,
                   float *logits, d2_error *err);
/* Accuracy and mean cross-entropy on a feature-space data set. */
int target_eval(const target_spec *s, const float *theta, const dataset *feat, float *acc,
                float *loss, d2_error *err);

/* The learning rate decays from lr to 0 along a cosine over all steps; AdamW
 * with betas (0.9, 0.999), eps 1e-8, decay on every parameter. The loss uses
 * the first feat->classes outputs. */
typedef struct target_train_cfg {
    int epochs;      /* passes over the data */
    int batch;       /* mini-batch size */
    float lr;        /* AdamW */
    float weight_decay;
    uint64_t seed;
    int min_steps;   /* added: epochs are raised until epochs * batches >= min_steps,
                      * so small data sets still get enough updates (0: off) */
} target_train_cfg;
target_train_cfg target_train_defaults(void);

/* PyTorch-default random initialisation of theta (Kaiming-uniform weights,
 * uniform biases), from seed. */
void target_init_random(const target_spec *s, uint64_t seed, float *theta);
/* Train (or fine-tune when theta holds a start point and from_theta != 0) on
 * a feature-space data set, mini-batch AdamW on cross-entropy. Single-threaded
 * and deterministic for a seed, so callers parallelise across heads. */
int target_train(const target_spec *s, const dataset *feat, float *theta, int from_theta,
                 const target_train_cfg *cfg, d2_error *err);

/* Validate a theta (finite values). */
int target_check_theta(const target_spec *s, const float *theta, d2_error *err);

/* Add the complete network to a safetensors writer: the feature map as module
 * 0 (when the spec has one) and the generated layers with their module names. */
struct st_writer;
int target_write_tensors(const target_spec *s, const feature_map *f, const float *theta,
                         struct st_writer *w, d2_error *err);
/* Read theta back from a loaded checkpoint's tensors (validates names, shapes, finite). */
struct st_file;
int target_read_theta(const target_spec *s, const struct st_file *f, float *theta,
                      d2_error *err);
/* The frozen module 0 of a checkpoint as a feature map (identity of feat_dim
 * without pca): W = 0.weight and the minimum-norm mean with W mean = -0.bias.
 * Fails when W's rows are linearly dependent. */
int target_read_feature_map(const target_spec *s, const struct st_file *f, feature_map *fm,
                            d2_error *err);

#endif
