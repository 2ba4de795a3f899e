/* backbone_train.c - training loop of `d2nwg backbone train` (see backbone_train.h). */
#include "backbone_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone_train_internal.h"
#include "progress.h"

backbone_train_cfg backbone_train_defaults(void)
{
    backbone_train_cfg c = {
        .data = "fashion-mnist+glyphs:train",
        .ch = 64,
        .blocks = 4,
        .batch = 64,
        .steps = 3000,
        .lr = 2e-3f,
        .weight_decay = 5e-4f,
        .shift = 2,
        .seed = 1,
        .progress = 1,
        .checkpoint_every = 120.0,
    };
    return c;
}

/* one glyph selection: "heldout" or a list naming a held-out script is refused */
static int bt_check_glyphs(const char *sel, d2_error *err)
{
    if (!strcmp(sel, "heldout"))
        return d2_fail(err, D2_EINVAL, "backbone data: glyphs:heldout are the scripts results "
                       "are measured on; a backbone may not train on them");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sel);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
        if (glyph_script_is_heldout(w))
            return d2_fail(err, D2_EINVAL, "backbone data: script '%s' is held out; a backbone "
                           "may not train on it", w);
    return 0;
}

int backbone_check_source(const char *spec, d2_error *err)
{
    if (!spec || !*spec)
        return d2_fail(err, D2_EINVAL, "backbone data: empty source");
    if (!strncmp(spec, "csv:", 4) || !strncmp(spec, "idx:", 4))
        return 0;
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", spec) >= (int)sizeof buf)
        return d2_fail(err, D2_EINVAL, "backbone data: source spec too long");
    for (char *save = NULL, *p = strtok_r(buf, "+", &save); p; p = strtok_r(NULL, "+", &save)) {
        if (!strncmp(p, "digits", 6))
            return d2_fail(err, D2_EINVAL, "backbone data: '%s' is out-of-distribution test data "
                           "(digits); a backbone may not train on it", p);
        int rc = !strncmp(p, "glyphs:", 7) ? bt_check_glyphs(p + 7, err) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* the mean of the last losses (a ring of BT_LOSS_WINDOW) */
static float bt_mean_loss(const float *ring, int n)
{
    int k = n < BT_LOSS_WINDOW ? n : BT_LOSS_WINDOW;
    double s = 0.0;
    for (int i = 0; i < k; i++)
        s += ring[i];
    return k ? (float)(s / k) : NAN;
}

static int bt_loop(bt_state *st, const backbone_train_cfg *cfg, backbone_train_report *rep,
                   d2_error *err)
{
    progress pg;
    float ring[BT_LOSS_WINDOW] = {0};
    char status[96];
    double t0 = d2_now();
    int rc = 0, done = st->step;
    progress_begin(&pg, "backbone", "steps", cfg->steps, cfg->progress);
    while (st->step < cfg->steps) {
        float loss;
        if ((rc = bt_step(st, cfg, &loss, err)))
            break;
        ring[(st->step - done) % BT_LOSS_WINDOW] = loss;
        st->step++;
        snprintf(status, sizeof status, "loss %.4f", (double)bt_mean_loss(ring, st->step - done));
        progress_update(&pg, st->step, status);
        int stop = cfg->stop_after > 0 && d2_now() - t0 >= cfg->stop_after;
        if ((stop && st->step < cfg->steps) || d2_now() - st->last_ckpt >= cfg->checkpoint_every) {
            if ((rc = bt_save_ckpt(st, cfg, err)))
                break;
            if (stop) {
                rep->stopped = 1;
                break;
            }
        }
    }
    progress_end(&pg, st->step, status);
    rep->steps_done = st->step;
    rep->loss = bt_mean_loss(ring, st->step - done);
    rep->seconds = d2_now() - t0;
    rep->images_per_s = rep->seconds > 0 ? (double)(st->step - done) * cfg->batch / rep->seconds
                                         : 0.0;
    return rc;
}

int backbone_train(const backbone_train_cfg *cfg, const char *out, backend_t *be,
                   backbone_train_report *rep, d2_error *err)
{
    memset(rep, 0, sizeof *rep);
    bt_state st;
    int rc = bt_open(&st, cfg, out, be, err);
    if (rc)
        return rc;
    rep->classes = st.src.train.classes;
    rep->train_rows = st.src.train.n;
    rep->test_rows = st.src.test.n;
    rc = bt_loop(&st, cfg, rep, err);
    if (!rc && !rep->stopped) {
        rc = bt_eval(&st, &st.src.test, &rep->test_acc, err);
        if (!rc)
            rc = bt_save_final(&st, cfg, out, rep, err);
        if (!rc)
            remove(st.ckpt_path);
    }
    bt_close(&st);
    return rc;
}
