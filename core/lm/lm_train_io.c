/* lm_train_io.c - the trainer's checkpoint (the model file's tensors and metadata, plus
 * AdamW's moments "optim.m" / "optim.v" and d2nwg.step) and its final file (lm_train.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm_train_internal.h"

/* the metadata a checkpoint must agree on to be resumed */
static void lt_meta(const lm_train_cfg *cfg, char seed[32], char batch[32])
{
    snprintf(seed, 32, "%llu", (unsigned long long)cfg->seed);
    snprintf(batch, 32, "%d", cfg->batch);
}

int lt_save_ckpt(lt_state *st, const lm_train_cfg *cfg, d2_error *err)
{
    char step[32], seed[32], batch[32], steps[32];
    snprintf(step, sizeof step, "%d", st->step);
    snprintf(steps, sizeof steps, "%d", cfg->steps);
    lt_meta(cfg, seed, batch);
    const char *kv[] = {"d2nwg.step",  step,  "d2nwg.source", cfg->source, "d2nwg.seed",
                        seed,          "d2nwg.batch", batch, "d2nwg.steps", steps};
    st_writer w;
    st_writer_init(&w);
    int rc = lm_write(&w, &st->m, kv, 5, err);
    if (!rc)
        rc = lm_write_flat(&w, st->be, "optim.m", st->ps.m, st->ps.total, err);
    if (!rc)
        rc = lm_write_flat(&w, st->be, "optim.v", st->ps.v, st->ps.total, err);
    if (!rc)
        rc = st_writer_save(&w, st->ckpt_path, err);
    st_writer_free(&w);
    st->last_ckpt = d2_now();
    return rc;
}

static int lt_expect(const st_file *f, const char *path, const char *key, const char *want,
                     const char *option, d2_error *err)
{
    const char *have = st_meta(f, key);
    if (!have)
        return d2_fail(err, D2_EFORMAT, "%s is not an lm checkpoint (no %s)", path, key);
    if (strcmp(have, want))
        return d2_fail(err, D2_EINVAL, "%s was trained with %s %s, not %s; give the same %s",
                       path, option, have, want, option);
    return 0;
}

int lt_load_ckpt(lt_state *st, const lm_train_cfg *cfg, const char *path, d2_error *err)
{
    st_file f;
    int rc = st_load(&f, path, err);
    if (rc)
        return rc;
    char seed[32], batch[32], model[160];
    lm_config c;
    lt_meta(cfg, seed, batch);
    const char *step = st_meta(&f, "d2nwg.step");
    int s = step ? atoi(step) : -1;
    if (!(rc = lm_read_config(&f, path, &c, err)) &&
        !(rc = lt_expect(&f, path, "d2nwg.source", cfg->source, "--source", err)) &&
        !(rc = lt_expect(&f, path, "d2nwg.seed", seed, "--seed", err)) &&
        !(rc = lt_expect(&f, path, "d2nwg.batch", batch, "--batch", err))) {
        snprintf(model, sizeof model, "layers=%d width=%d heads=%d context=%d", c.layers,
                 c.width, c.heads, c.context);
        if (c.layers != st->m.cfg.layers || c.width != st->m.cfg.width ||
            c.heads != st->m.cfg.heads || c.context != st->m.cfg.context)
            rc = d2_fail(err, D2_EINVAL, "%s holds a model of %s; give the same --layers, "
                         "--width, --heads and --context", path, model);
    }
    if (!rc && (s < 0 || s > cfg->steps))
        rc = d2_fail(err, D2_EINVAL, "%s is at step %d, outside 0..--steps %d", path, s,
                     cfg->steps);
    if (!rc && !(rc = lm_read_set(&f, path, &st->ps, err)) &&
        !(rc = lm_read_flat(&f, path, st->be, "optim.m", st->ps.m, st->ps.total, err)))
        rc = lm_read_flat(&f, path, st->be, "optim.v", st->ps.v, st->ps.total, err);
    if (!rc)
        st->step = s;
    st_free(&f);
    return rc;
}

int lt_save_final(lt_state *st, const lm_train_cfg *cfg, const char *out,
                  const lm_train_report *rep, d2_error *err)
{
    char steps[32], seed[32], batch[32], val[64], lr[32];
    snprintf(steps, sizeof steps, "%d", st->step);
    snprintf(val, sizeof val, "%.6f", rep->val_bits);
    snprintf(lr, sizeof lr, "%g", (double)cfg->lr);
    lt_meta(cfg, seed, batch);
    const char *kv[] = {"d2nwg.source", cfg->source, "d2nwg.steps", steps, "d2nwg.seed", seed,
                        "d2nwg.batch", batch, "d2nwg.lr", lr, "d2nwg.validation_bits_per_byte",
                        val};
    return lm_save(&st->m, out, kv, 6, err);
}
