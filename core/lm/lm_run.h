/* lm_run.h - running the language model over word lists: the buffers one batch needs
 * (arena, packed batch, host logits), a training step on a seeded draw of words, and
 * bits per byte over a split. */
#ifndef D2_LM_RUN_H
#define D2_LM_RUN_H

#include "lm.h"
#include "optim.h"
#include "words.h"

typedef struct lm_runner {
    backend_t *be;
    arena ar;
    lm_batch b;
    float *logits_h, *dl_h; /* [B*T, 256] host */
} lm_runner;

int lm_runner_open(lm_runner *r, backend_t *be, const lm_config *c, int B, int rank,
                   d2_error *err);
void lm_runner_close(lm_runner *r);

/* Fill r->b with the words of training step `step`: from the stream
 * rng_derive(seed, "lm-batch", step), each word a uniform language of src, then a uniform
 * word of its train split; words longer than the context are drawn again; until the next
 * word does not fit. */
int lm_draw_batch(lm_runner *r, const words_source *src, uint64_t seed, int step,
                  d2_error *err);

/* One AdamW step on `opt` (the base's or the adapters' paramset) from the batch of `step`;
 * *bits = bits per byte of that batch before the update, *targets = bytes predicted. */
int lm_train_step(lm_runner *r, lm_model *m, paramset *opt, const adamw_cfg *oc,
                  const words_source *src, uint64_t seed, int step, double *bits,
                  int *targets, d2_error *err);

typedef struct lm_eval_result {
    long words, skipped, targets; /* skipped: longer than context - 1 bytes */
    double nats;
} lm_eval_result;

/* bits per byte: nats / ln 2 / targets (NAN when no targets) */
double lm_bits_per_byte(const lm_eval_result *e);

/* Every word of l (or max_words of them, every (n / max_words)-th, when max_words > 0 and
 * smaller than n), accumulated into *res (not cleared). */
int lm_eval_list(lm_runner *r, lm_model *m, const words_list *l, long max_words,
                 lm_eval_result *res, d2_error *err);

#endif
