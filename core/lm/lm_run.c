/* lm_run.c - batches, training steps and evaluation over word lists (lm_run.h). */
#include "lm_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

int lm_runner_open(lm_runner *r, backend_t *be, const lm_config *c, int B, int rank,
                   d2_error *err)
{
    memset(r, 0, sizeof *r);
    r->be = be;
    const size_t nl = (size_t)B * c->context * LM_VOCAB_OUT;
    int rc = arena_init(&r->ar, be, lm_arena_bytes(c, B, rank), err);
    if (rc)
        return rc;
    rc = lm_batch_alloc(&r->b, B, c->context, c->heads, err);
    r->logits_h = malloc(nl * sizeof(float));
    r->dl_h = malloc(nl * sizeof(float));
    if (!rc && (!r->logits_h || !r->dl_h))
        rc = d2_fail(err, D2_ENOMEM, "out of memory for %zu logits", nl);
    if (rc)
        lm_runner_close(r);
    return rc;
}

void lm_runner_close(lm_runner *r)
{
    free(r->logits_h);
    free(r->dl_h);
    lm_batch_free(&r->b);
    if (r->ar.base)
        arena_free(&r->ar);
    memset(r, 0, sizeof *r);
}

int lm_draw_batch(lm_runner *r, const words_source *src, uint64_t seed, int step,
                  d2_error *err)
{
    rng g;
    rng_init(&g, rng_derive(seed, "lm-batch", (uint64_t)step), 0);
    lm_batch_clear(&r->b);
    const long tries = 64L * r->b.B * r->b.T;
    for (long t = 0; t < tries; t++) {
        const words_list *l = &src->lang[rng_below(&g, (uint32_t)src->nlang)].split[WORDS_TRAIN];
        if (l->n == 0)
            continue;
        size_t len;
        const unsigned char *w = words_get(l, (int)rng_below(&g, (uint32_t)l->n), &len);
        int ok = lm_batch_add(&r->b, w, len);
        if (ok == 0)
            return 0;
    }
    if (r->b.words == 0)
        return d2_fail(err, D2_EINVAL, "%s: no training word fits the context of %d bytes",
                       src->spec, r->b.T - 1);
    return 0;
}

int lm_train_step(lm_runner *r, lm_model *m, paramset *opt, const adamw_cfg *oc,
                  const words_source *src, uint64_t seed, int step, double *bits,
                  int *targets, d2_error *err)
{
    double nats;
    int rc = lm_draw_batch(r, src, seed, step, err);
    if (rc)
        return rc;
    paramset_zero_grad(opt);
    rc = lm_run_batch(r->be, m, &r->ar, &r->b, r->logits_h, r->dl_h, 1, &nats, targets, err);
    if (!rc)
        rc = optim_adamw_step(opt, oc, step, NULL, err);
    *bits = *targets ? nats / *targets / log(2.0) : NAN;
    return rc;
}

double lm_bits_per_byte(const lm_eval_result *e)
{
    return e->targets ? e->nats / (double)e->targets / log(2.0) : NAN;
}

static int lm_eval_flush(lm_runner *r, lm_model *m, lm_eval_result *res, d2_error *err)
{
    double nats;
    int count;
    if (r->b.words == 0)
        return 0;
    int rc = lm_run_batch(r->be, m, &r->ar, &r->b, r->logits_h, NULL, 0, &nats, &count, err);
    res->nats += nats;
    res->targets += count;
    res->words += r->b.words;
    lm_batch_clear(&r->b);
    return rc;
}

int lm_eval_list(lm_runner *r, lm_model *m, const words_list *l, long max_words,
                 lm_eval_result *res, d2_error *err)
{
    long n = l->n, stride = max_words > 0 && max_words < n ? n / max_words : 1;
    long take = max_words > 0 && max_words < n ? max_words : n;
    int rc = 0;
    lm_batch_clear(&r->b);
    for (long i = 0; i < take && !rc; i++) {
        size_t len;
        const unsigned char *w = words_get(l, (int)(i * stride), &len);
        int ok = lm_batch_add(&r->b, w, len);
        if (ok < 0) {
            res->skipped++;
        } else if (ok == 0) {
            if (!(rc = lm_eval_flush(r, m, res, err)) && lm_batch_add(&r->b, w, len) != 1)
                rc = d2_fail(err, D2_EINVAL, "lm eval: a word does not fit an empty batch");
        }
    }
    if (!rc)
        rc = lm_eval_flush(r, m, res, err);
    return rc;
}
