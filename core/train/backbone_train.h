/* backbone_train.h - `d2nwg backbone train`: a Conv-N backbone (convnet.h) trained with
 * cross-entropy over the classes of background data only (default: the Fashion-MNIST train
 * split and the glyph "train" scripts, leaving the validation scripts for tuning; held-out
 * glyph scripts and digits are refused), with random shifts as augmentation, AdamW with warm-up and cosine
 * decay, progress, checkpoints (OUT.ckpt: weights, buffers, AdamW moments, the step) and
 * resume. Batch b of step s is drawn from the stream rng_derive(seed, "backbone-batch", s),
 * so a resumed run draws what the uninterrupted one would have. The result is OUT, the
 * network with its classifier (see convnet.h for names and metadata). */
#ifndef D2_BACKBONE_TRAIN_H
#define D2_BACKBONE_TRAIN_H

#include <stdint.h>

#include "backend.h"

typedef struct backbone_train_cfg {
    const char *data; /* data source spec (data.h) */
    int ch, blocks;   /* channels per block, blocks */
    int batch, steps;
    float lr, weight_decay;
    int shift;        /* augmentation: random shifts of up to +-shift pixels */
    uint64_t seed;
    int progress, resume;
    double checkpoint_every; /* seconds */
    double stop_after;       /* seconds; 0: never (stops with a checkpoint) */
} backbone_train_cfg;

backbone_train_cfg backbone_train_defaults(void);

typedef struct backbone_train_report {
    int steps_done, stopped, classes, train_rows, test_rows;
    float loss;      /* mean of the last 50 steps' losses */
    float test_acc;  /* on the source's test split, running statistics */
    double seconds, images_per_s;
} backbone_train_report;

/* Refuses (D2_EINVAL, naming the part) a data spec with digits or held-out glyph scripts:
 * the data the results are measured on. */
int backbone_check_source(const char *spec, d2_error *err);

int backbone_train(const backbone_train_cfg *cfg, const char *out, backend_t *be,
                   backbone_train_report *rep, d2_error *err);

#endif
