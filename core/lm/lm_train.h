/* lm_train.h - `d2nwg lm train`: the base language model trained on words of the
 * background languages (held-out ones are refused by name), AdamW with warm-up and cosine
 * decay, progress, checkpoints and resume; and `d2nwg lm eval`.
 *
 * Batch of step s: lm_draw_batch(seed, s) (lm_run.h), so a resumed run draws what the
 * uninterrupted one would have; the checkpoint (OUT.ckpt unless named) holds the weights,
 * AdamW's moments and the step, so `--resume CKPT` ends in the same bytes as a run that
 * was never stopped (same threads: OpenBLAS sums in an order that depends on them). The
 * final file (lm_io.h) records source, steps, seed and the validation bits per byte. */
#ifndef D2_LM_TRAIN_H
#define D2_LM_TRAIN_H

#include <stdint.h>

#include "backend.h"
#include "lm.h"
#include "lm_run.h"

typedef struct lm_train_cfg {
    const char *source;      /* "words:background" or another background selection */
    lm_config model;
    int batch;               /* rows of `context` positions, words packed */
    int steps, warmup;
    float lr, weight_decay;
    uint64_t seed;
    int progress;
    const char *resume;      /* a checkpoint to continue from, or NULL */
    double checkpoint_every; /* seconds */
    int stop_at;             /* > 0: stop with a checkpoint after this step */
    long eval_words;         /* validation words per language for the final figure (0: all) */
} lm_train_cfg;

lm_train_cfg lm_train_defaults(void);

typedef struct lm_train_report {
    int steps_done, stopped, languages;
    size_t params;
    double train_bits;   /* bits per byte, mean of the last 50 steps */
    double val_bits;     /* on the validation split (eval_words per language) */
    long val_words, val_skipped;
    double seconds, tokens_per_s; /* tokens: bytes predicted (word bytes and '\n') */
    char ckpt[1100];
} lm_train_report;

int lm_train(const lm_train_cfg *cfg, const char *out, backend_t *be, lm_train_report *rep,
             d2_error *err);

/* Bits per byte of a model file (with an adapter file of `d2nwg lm lora` when adapter is
 * not NULL) on one split of a words source, per language and in all (per[] holds
 * WORDS_MAX_LANGS; may be NULL). */
int lm_eval_file(const char *model, const char *adapter, const char *source, int split, long max_words, int batch,
                 backend_t *be, lm_eval_result *all, lm_eval_result *per, char names[][32],
                 int *nlang, d2_error *err);

#endif
