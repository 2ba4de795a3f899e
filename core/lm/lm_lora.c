/* lm_lora.c - training one LoRA adapter with the base frozen (lm_lora.h). */
#include "lm_lora.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lm_io.h"
#include "progress.h"
#include "rng.h"

#define LL_WINDOW 50
#define LL_EVAL_BATCH 64

lm_lora_train_cfg lm_lora_train_defaults(void)
{
    lm_lora_train_cfg c = {
        .lora = lm_lora_default(),
        .batch = 16,
        .steps = 300,
        .warmup = 20,
        .lr = 3e-3f,
        .weight_decay = 0.0f,
        .seed = 1,
        .progress = 1,
        .eval_words = 2000,
    };
    return c;
}

typedef struct ll_state {
    words_source src;
    paramset ps, lora;
    lm_model m;
    lm_runner run;
} ll_state;

static void ll_close(ll_state *st)
{
    lm_runner_close(&st->run);
    paramset_free(&st->lora);
    paramset_free(&st->ps);
    words_source_free(&st->src);
}

static int ll_open(ll_state *st, const lm_lora_train_cfg *cfg, backend_t *be, d2_error *err)
{
    memset(st, 0, sizeof *st);
    paramset_init(&st->ps);
    paramset_init(&st->lora);
    int rc = lm_load(&st->m, &st->ps, be, cfg->model, err);
    if (!rc)
        rc = words_source_load(&st->src, cfg->source, NULL, err);
    if (!rc)
        rc = lm_attach_lora(&st->m, &st->lora, &cfg->lora, err);
    if (!rc)
        rc = paramset_alloc(&st->lora, be, rng_derive(cfg->seed, "lm-lora-init", 0), err);
    if (!rc)
        rc = paramset_alloc_optim(&st->lora, err);
    if (!rc)
        rc = lm_runner_open(&st->run, be, &st->m.cfg, cfg->batch, cfg->lora.rank, err);
    st->m.frozen = 1;
    if (rc)
        ll_close(st);
    return rc;
}

/* bits per byte on the test split of every language of the source */
static int ll_test(ll_state *st, const lm_lora_train_cfg *cfg, backend_t *be, double *bits,
                   long *words, d2_error *err)
{
    lm_runner r;
    lm_eval_result all = {0};
    int rc = lm_runner_open(&r, be, &st->m.cfg, LL_EVAL_BATCH, cfg->lora.rank, err);
    for (int k = 0; !rc && k < st->src.nlang; k++)
        rc = lm_eval_list(&r, &st->m, &st->src.lang[k].split[WORDS_TEST], cfg->eval_words,
                          &all, err);
    lm_runner_close(&r);
    *bits = lm_bits_per_byte(&all);
    *words = all.words;
    return rc;
}

static int ll_loop(ll_state *st, const lm_lora_train_cfg *cfg, lm_lora_report *rep,
                   d2_error *err)
{
    adamw_cfg oc = adamw_defaults();
    oc.lr = cfg->lr;
    oc.weight_decay = cfg->weight_decay;
    oc.warmup_steps = cfg->warmup;
    oc.total_steps = cfg->steps;
    oc.min_lr_ratio = 0.1f;
    progress pg;
    double ring[LL_WINDOW] = {0}, tokens = 0, t0 = d2_now();
    char status[64] = "";
    int rc = 0, s;
    progress_begin(&pg, "lora", "steps", cfg->steps, cfg->progress);
    for (s = 0; s < cfg->steps && !rc; s++) {
        double bits;
        int targets;
        rc = lm_train_step(&st->run, &st->m, &st->lora, &oc, &st->src, cfg->seed, s, &bits,
                           &targets, err);
        ring[s % LL_WINDOW] = bits;
        tokens += targets;
        snprintf(status, sizeof status, "%.3f bits/byte", bits);
        progress_update(&pg, s + 1, status);
    }
    progress_end(&pg, s, status);
    int k = s < LL_WINDOW ? s : LL_WINDOW;
    rep->train_bits = 0;
    for (int i = 0; i < k; i++)
        rep->train_bits += ring[i] / k;
    rep->steps = s;
    rep->seconds = d2_now() - t0;
    rep->tokens_per_s = rep->seconds > 0 ? tokens / rep->seconds : 0;
    return rc;
}

static int ll_save(ll_state *st, const lm_lora_train_cfg *cfg, const char *out,
                   const lm_lora_report *rep, d2_error *err)
{
    char steps[32], seed[32], base[32], lora[32];
    snprintf(steps, sizeof steps, "%d", rep->steps);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->seed);
    snprintf(base, sizeof base, "%.6f", rep->base_bits);
    snprintf(lora, sizeof lora, "%.6f", rep->lora_bits);
    const char *kv[] = {"d2nwg.source", cfg->source, "d2nwg.steps", steps, "d2nwg.seed", seed,
                        "d2nwg.base_test_bits_per_byte", base,
                        "d2nwg.test_bits_per_byte", lora};
    return lm_lora_save(&st->m, &cfg->lora, rep->base_sha256, out, kv, 5, err);
}

int lm_lora_train(const lm_lora_train_cfg *cfg, const char *out, backend_t *be,
                  lm_lora_report *rep, d2_error *err)
{
    memset(rep, 0, sizeof *rep);
    ll_state st;
    int rc = lm_file_sha256(cfg->model, rep->base_sha256, err);
    if (rc)
        return rc;
    if ((rc = ll_open(&st, cfg, be, err)))
        return rc;
    rep->params = paramset_numel(&st.lora);
    rep->modules = st.lora.count / 2;
    if (!(rc = ll_test(&st, cfg, be, &rep->base_bits, &rep->test_words, err)) &&
        !(rc = ll_loop(&st, cfg, rep, err)) &&
        !(rc = ll_test(&st, cfg, be, &rep->lora_bits, &rep->test_words, err)))
        rc = ll_save(&st, cfg, out, rep, err);
    ll_close(&st);
    return rc;
}
