/* lm_train.c - the training loop of `d2nwg lm train` and the evaluation of a model file
 * (lm_train.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm_train_internal.h"
#include "progress.h"
#include "rng.h"

#define LT_EVAL_BATCH 64

lm_train_cfg lm_train_defaults(void)
{
    lm_train_cfg c = {
        .source = "words:background",
        .model = lm_config_default(),
        .batch = 32,
        .steps = 2000,
        .warmup = 100,
        .lr = 2e-3f,
        .weight_decay = 0.01f,
        .seed = 1,
        .progress = 1,
        .checkpoint_every = 120.0,
        .eval_words = 2000,
    };
    return c;
}

static void lt_close(lt_state *st)
{
    lm_runner_close(&st->run);
    paramset_free(&st->ps);
    words_source_free(&st->src);
}

static int lt_open(lt_state *st, const lm_train_cfg *cfg, const char *out, backend_t *be,
                   d2_error *err)
{
    memset(st, 0, sizeof *st);
    st->be = be;
    paramset_init(&st->ps);
    int rc = words_check_background(cfg->source, err);
    if (!rc && (cfg->batch < 1 || cfg->steps < 1))
        rc = d2_fail(err, D2_EINVAL, "batch and steps must be positive");
    if (!rc && snprintf(st->ckpt_path, sizeof st->ckpt_path, "%s.ckpt", out) >=
                   (int)sizeof st->ckpt_path)
        rc = d2_fail(err, D2_EINVAL, "output path too long");
    if (!rc)
        rc = words_source_load(&st->src, cfg->source, NULL, err);
    if (!rc)
        rc = lm_init(&st->m, &st->ps, &cfg->model, err);
    if (!rc)
        rc = paramset_alloc(&st->ps, be, rng_derive(cfg->seed, "lm-init", 0), err);
    if (!rc)
        rc = paramset_alloc_optim(&st->ps, err);
    if (!rc)
        rc = lm_runner_open(&st->run, be, &cfg->model, cfg->batch, 0, err);
    if (!rc && cfg->resume)
        rc = lt_load_ckpt(st, cfg, cfg->resume, err);
    st->opt = adamw_defaults();
    st->opt.lr = cfg->lr;
    st->opt.weight_decay = cfg->weight_decay;
    st->opt.warmup_steps = cfg->warmup;
    st->opt.total_steps = cfg->steps;
    st->opt.min_lr_ratio = 0.1f;
    st->last_ckpt = d2_now();
    if (rc)
        lt_close(st);
    return rc;
}

static double lt_mean(const double *ring, int n)
{
    int k = n < LT_LOSS_WINDOW ? n : LT_LOSS_WINDOW;
    double s = 0.0;
    for (int i = 0; i < k; i++)
        s += ring[i];
    return k ? s / k : NAN;
}

static int lt_loop(lt_state *st, const lm_train_cfg *cfg, lm_train_report *rep, d2_error *err)
{
    progress pg;
    double ring[LT_LOSS_WINDOW] = {0}, t0 = d2_now(), tokens = 0;
    char status[96] = "";
    int rc = 0, first = st->step;
    progress_begin(&pg, "lm", "steps", cfg->steps, cfg->progress);
    while (st->step < cfg->steps) {
        double bits;
        int targets;
        if ((rc = lm_train_step(&st->run, &st->m, &st->ps, &st->opt, &st->src, cfg->seed,
                                st->step, &bits, &targets, err)))
            break;
        ring[(st->step - first) % LT_LOSS_WINDOW] = bits;
        tokens += targets;
        st->step++;
        snprintf(status, sizeof status, "%.3f bits/byte", lt_mean(ring, st->step - first));
        progress_update(&pg, st->step, status);
        int stop = cfg->stop_at > 0 && st->step >= cfg->stop_at && st->step < cfg->steps;
        if (stop || d2_now() - st->last_ckpt >= cfg->checkpoint_every) {
            if ((rc = lt_save_ckpt(st, cfg, err)))
                break;
            if (stop) {
                rep->stopped = 1;
                break;
            }
        }
    }
    progress_end(&pg, st->step, status);
    rep->steps_done = st->step;
    rep->train_bits = lt_mean(ring, st->step - first);
    rep->seconds = d2_now() - t0;
    rep->tokens_per_s = rep->seconds > 0 ? tokens / rep->seconds : 0.0;
    return rc;
}

/* bits per byte on the validation split, eval_words per language */
static int lt_validate(lt_state *st, const lm_train_cfg *cfg, lm_train_report *rep,
                       d2_error *err)
{
    lm_runner r;
    lm_eval_result all = {0};
    int rc = lm_runner_open(&r, st->be, &st->m.cfg, LT_EVAL_BATCH, 0, err);
    for (int k = 0; !rc && k < st->src.nlang; k++)
        rc = lm_eval_list(&r, &st->m, &st->src.lang[k].split[WORDS_VALIDATION],
                          cfg->eval_words, &all, err);
    lm_runner_close(&r);
    rep->val_bits = lm_bits_per_byte(&all);
    rep->val_words = all.words;
    rep->val_skipped = all.skipped;
    return rc;
}

int lm_train(const lm_train_cfg *cfg, const char *out, backend_t *be, lm_train_report *rep,
             d2_error *err)
{
    memset(rep, 0, sizeof *rep);
    rep->val_bits = NAN; /* until the validation runs (not for a stopped run) */
    lt_state st;
    int rc = lt_open(&st, cfg, out, be, err);
    if (rc)
        return rc;
    rep->languages = st.src.nlang;
    rep->params = paramset_numel(&st.ps);
    snprintf(rep->ckpt, sizeof rep->ckpt, "%s", st.ckpt_path);
    rc = lt_loop(&st, cfg, rep, err);
    if (!rc && !rep->stopped) {
        rc = lt_validate(&st, cfg, rep, err);
        if (!rc)
            rc = lt_save_final(&st, cfg, out, rep, err);
        if (!rc)
            remove(st.ckpt_path);
    }
    lt_close(&st);
    return rc;
}
