/* lm_train_internal.h - state shared by lm_train.c (the loop) and lm_train_io.c (files). */
#ifndef D2_LM_TRAIN_INTERNAL_H
#define D2_LM_TRAIN_INTERNAL_H

#include "lm_io.h"
#include "lm_run.h"
#include "lm_train.h"

#define LT_LOSS_WINDOW 50

typedef struct lt_state {
    backend_t *be;
    words_source src;
    paramset ps;
    lm_model m;
    lm_runner run;
    adamw_cfg opt;
    int step;
    double last_ckpt;
    char ckpt_path[1100];
} lt_state;

/* lm_train_io.c */
int lt_save_ckpt(lt_state *st, const lm_train_cfg *cfg, d2_error *err);
int lt_load_ckpt(lt_state *st, const lm_train_cfg *cfg, const char *path, d2_error *err);
int lt_save_final(lt_state *st, const lm_train_cfg *cfg, const char *out,
                  const lm_train_report *rep, d2_error *err);

#endif
