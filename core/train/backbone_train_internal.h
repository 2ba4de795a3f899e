/* backbone_train_internal.h - state shared by backbone_train.c (the loop),
 * backbone_train_step.c (data, step, evaluation) and backbone_train_io.c (files). */
#ifndef D2_BACKBONE_TRAIN_INTERNAL_H
#define D2_BACKBONE_TRAIN_INTERNAL_H

#include "arena.h"
#include "backbone_train.h"
#include "convnet.h"
#include "data.h"
#include "optim.h"

#define BT_LOSS_WINDOW 50
#define BT_EVAL_BATCH 256

typedef struct bt_state {
    backend_t *be;
    data_source src;
    int side; /* images are side x side, one channel */
    convnet net;
    paramset ps, bufs;
    arena ar;
    adamw_cfg opt;
    int step;
    double last_ckpt;
    char ckpt_path[1100];
    float *xh;        /* host batch [max(batch, BT_EVAL_BATCH), side*side] */
    int32_t *yh;      /* host labels */
    float *lh;        /* host logits [max(batch, BT_EVAL_BATCH), classes] */
    float *xd;        /* device batch */
    int32_t *yd;      /* device labels */
    float *dlogits, *loss;
} bt_state;

/* backbone_train_step.c */
int bt_open(bt_state *st, const backbone_train_cfg *cfg, const char *out, backend_t *be,
            d2_error *err);
void bt_close(bt_state *st);
int bt_step(bt_state *st, const backbone_train_cfg *cfg, float *loss, d2_error *err);
int bt_eval(bt_state *st, const dataset *d, float *acc, d2_error *err);

/* backbone_train_io.c */
int bt_save_ckpt(bt_state *st, const backbone_train_cfg *cfg, d2_error *err);
int bt_load_ckpt(bt_state *st, const backbone_train_cfg *cfg, d2_error *err);
int bt_save_final(bt_state *st, const backbone_train_cfg *cfg, const char *out,
                  const backbone_train_report *rep, d2_error *err);

#endif
