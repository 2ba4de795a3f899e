/* test_lm.c - the byte-level language model: finite-difference gradient checks of the
 * causal attention, a block (every tensor, with LoRA adapters on), and the whole model
 * through the masked next-byte loss; the causal and packing masks (a later byte, or
 * another word packed in the same row, does not change an earlier output); the loss on
 * known logits; LoRA merged weights W + (alpha/r) B A giving the unmerged forward. */
#include "testutil.h"

#include <math.h>

#include "gradcheck.h"
#include "lm.h"

typedef struct lctx {
    backend_t *be;
    arena ar;
    size_t mark;
    paramset ps, lora;
    lm_model m;
    lm_batch b;
    lm_cache c;
    lm_block_cache bc;
    lm_attn_cache ac;
    float *x, *dx, *q, *k, *v, *dq, *dk, *dv, *mask;
    float *logits_h, *dl_h;
} lctx;

static const lm_config TINY = {.layers = 2, .width = 8, .heads = 2, .context = 6};

/* a tiny model (with adapters when rank > 0, B random so they matter) and a batch of
 * "ab", "c" in row 0 and "abcd" in row 1 */
static void lctx_open(lctx *t, int rank, int mlp)
{
    d2_error e = {0};
    memset(t, 0, sizeof *t);
    assert_int_equal(backend_cpu_create(&t->be, 1, &e), 0);
    assert_int_equal(arena_init(&t->ar, t->be, 16u << 20, &e), 0);
    paramset_init(&t->ps);
    paramset_init(&t->lora);
    assert_int_equal(lm_init(&t->m, &t->ps, &TINY, &e), 0);
    assert_int_equal(paramset_alloc(&t->ps, t->be, 7, &e), 0);
    /* every weight U(-0.5, 0.5) (GPT-2's N(0, 0.02) leaves gradients too small to tell a
     * wrong backward from rounding), LayerNorm gains around 1 */
    for (int i = 0; i < t->ps.count; i++) {
        const param_entry *pe = &t->ps.entries[i];
        float *w = t->ps.w + pe->offset;
        rng_fill_uniform(w, pe->numel, 99, (uint64_t)i * 1000);
        for (size_t j = 0; j < pe->numel; j++)
            w[j] = (pe->init == INIT_ONES ? 0.5f : -0.5f) + w[j];
    }
    if (rank > 0) {
        lm_lora_cfg lc = {.rank = rank, .alpha = 6.0f, .mlp = mlp};
        assert_int_equal(lm_attach_lora(&t->m, &t->lora, &lc, &e), 0);
        assert_int_equal(paramset_alloc(&t->lora, t->be, 8, &e), 0);
        rng_fill_normal(t->lora.w, t->lora.total, 5, 0, 0.0f, 0.3f);
    }
    assert_int_equal(lm_batch_alloc(&t->b, 2, TINY.context, TINY.heads, &e), 0);
    assert_int_equal(lm_batch_add(&t->b, (const unsigned char *)"ab", 2), 1);
    assert_int_equal(lm_batch_add(&t->b, (const unsigned char *)"c", 1), 1);
    assert_int_equal(lm_batch_add(&t->b, (const unsigned char *)"abcd", 4), 1);
    assert_int_equal(lm_batch_add(&t->b, (const unsigned char *)"abcdef", 6), -1);
    assert_int_equal(lm_batch_add(&t->b, (const unsigned char *)"abcd", 4), 0);
    assert_int_equal(t->b.words, 3);
    assert_int_equal(t->b.targets, 3 + 2 + 5);
    lm_batch_encode(&t->b);
    t->logits_h = malloc((size_t)2 * TINY.context * LM_VOCAB_OUT * sizeof(float));
    t->dl_h = malloc((size_t)2 * TINY.context * LM_VOCAB_OUT * sizeof(float));
    assert_non_null(t->logits_h);
    assert_non_null(t->dl_h);
    t->mark = arena_mark(&t->ar);
}

static void lctx_close(lctx *t)
{
    float *bufs[] = {t->x, t->dx, t->q, t->k, t->v, t->dq, t->dk, t->dv, t->mask};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            t->be->ops->free(t->be, bufs[i]);
    free(t->logits_h);
    free(t->dl_h);
    lm_batch_free(&t->b);
    paramset_free(&t->lora);
    paramset_free(&t->ps);
    arena_free(&t->ar);
    backend_destroy(t->be);
}

/* every tensor of a paramset as a gradcheck target */
static int targets_of(paramset *ps, gc_target *t, int cap)
{
    int n = 0;
    for (int i = 0; i < ps->count && n < cap; i++, n++)
        t[n] = (gc_target){ps->entries[i].name, ps->w + ps->entries[i].offset,
                           ps->g + ps->entries[i].offset, ps->entries[i].numel};
    return n;
}

static void expect_pass(int bad, const gc_report *rep, const char *what)
{
    if (bad != 0 || rep->kinks > rep->checked / 10)
        fail_msg("%s: %d of %d failed, %d kinks; worst %s", what, bad, rep->checked,
                 rep->kinks, rep->worst);
    assert_true(rep->checked > 0);
}

/* ---- attention ---- */

static int attn_fwd(backend_t *be, void *u, float *out)
{
    lctx *t = u;
    d2_error e;
    arena_reset(&t->ar, t->mark);
    return lm_attn_forward(be, &t->ar, &t->ac, out, t->q, t->k, t->v, t->mask, 2, TINY.context,
                           TINY.width, TINY.heads, &e);
}

static int attn_bwd(backend_t *be, void *u, const float *dout)
{
    lctx *t = u;
    d2_error e;
    return lm_attn_backward(be, &t->ar, &t->ac, t->dq, t->dk, t->dv, dout, 2, TINY.context,
                            TINY.width, TINY.heads, &e);
}

static void attn_buffers(lctx *t)
{
    const size_t n = (size_t)2 * TINY.context * TINY.width;
    const size_t nm = (size_t)2 * TINY.heads * TINY.context * TINY.context;
    t->q = gc_dev_uniform(t->be, n, -1, 1, 1);
    t->k = gc_dev_uniform(t->be, n, -1, 1, 2);
    t->v = gc_dev_uniform(t->be, n, -1, 1, 3);
    t->dq = backend_alloc_floats(t->be, n);
    t->dk = backend_alloc_floats(t->be, n);
    t->dv = backend_alloc_floats(t->be, n);
    t->mask = backend_alloc_floats(t->be, nm);
    assert_true(t->q && t->k && t->v && t->dq && t->dk && t->dv && t->mask);
    assert_int_equal(t->be->ops->to_device(t->be, t->mask, t->b.mask, nm * sizeof(float)), 0);
}

static void test_attention_gradcheck(void **state)
{
    (void)state;
    lctx t;
    lctx_open(&t, 0, 0);
    attn_buffers(&t);
    gc_target tg[] = {{"q", t.q, t.dq, 96}, {"k", t.k, t.dk, 96}, {"v", t.v, t.dv, 96}};
    gc_opts o = gc_default_opts();
    o.atol = 1e-3;
    o.max_checks = 0;
    gc_report rep;
    expect_pass(gc_check(t.be, attn_fwd, attn_bwd, &t, 96, tg, 3, &o, &rep), &rep, "attention");
    lctx_close(&t);
}

/* changing q, k, v at a later position (or of another word) leaves earlier outputs */
static void test_attention_causal(void **state)
{
    (void)state;
    lctx t;
    lctx_open(&t, 0, 0);
    attn_buffers(&t);
    const int W = TINY.width, T = TINY.context;
    float y0[96], y1[96], *kh = malloc(96 * sizeof(float)), *vh = malloc(96 * sizeof(float));
    float *yd = backend_alloc_floats(t.be, 96);
    assert_true(kh && vh && yd);
    assert_int_equal(attn_fwd(t.be, &t, yd), 0);
    memcpy(y0, yd, sizeof y0);
    /* row 1 holds "abcd" at positions 0..4: change its k and v at position 3 */
    memcpy(kh, t.k, 96 * sizeof(float));
    memcpy(vh, t.v, 96 * sizeof(float));
    for (int j = 0; j < W; j++) {
        t.k[(size_t)(T + 3) * W + j] += 5.0f;
        t.v[(size_t)(T + 3) * W + j] -= 5.0f;
    }
    /* and row 0's second word "c" (positions 3, 4): the first word "ab" must not see it */
    for (int j = 0; j < W; j++)
        t.v[(size_t)3 * W + j] += 7.0f;
    assert_int_equal(attn_fwd(t.be, &t, yd), 0);
    memcpy(y1, yd, sizeof y1);
    for (int i = 0; i < 2 * T; i++) {
        int must_equal = (i < 3) || (i >= T && i < T + 3) || i == 5 || i == T + 5;
        double diff = 0;
        for (int j = 0; j < W; j++)
            diff = fmax(diff, fabs((double)y0[i * W + j] - y1[i * W + j]));
        if (must_equal)
            assert_true(diff == 0.0);
        else
            assert_true(diff > 1e-3);
    }
    free(kh);
    free(vh);
    t.be->ops->free(t.be, yd);
    lctx_close(&t);
}

/* ---- block ---- */

static int block_fwd(backend_t *be, void *u, float *out)
{
    lctx *t = u;
    d2_error e;
    arena_reset(&t->ar, t->mark);
    int rc = lm_block_forward(be, &t->m, 0, &t->ar, &t->bc, t->x, t->mask, 2, TINY.context, &e);
    if (!rc)
        be->ops->copy(be, out, t->bc.out, 96 * sizeof(float));
    return rc;
}

static int block_bwd(backend_t *be, void *u, const float *dout)
{
    lctx *t = u;
    d2_error e;
    return lm_block_backward(be, &t->m, 0, &t->ar, &t->bc, t->dx, dout, t->x, 2, TINY.context,
                             &e);
}

static void test_block_gradcheck(void **state)
{
    (void)state;
    lctx t;
    lctx_open(&t, 2, 1); /* adapters on q, v, fc_in, fc_out */
    attn_buffers(&t);
    t.x = gc_dev_uniform(t.be, 96, -1, 1, 11);
    t.dx = backend_alloc_floats(t.be, 96);
    assert_true(t.x && t.dx);
    gc_target tg[96];
    int n = 0;
    tg[n++] = (gc_target){"x", t.x, t.dx, 96};
    for (int i = 0; i < t.ps.count; i++)
        if (!strncmp(t.ps.entries[i].name, "transformer.h.0.", 16))
            tg[n++] = (gc_target){t.ps.entries[i].name, t.ps.w + t.ps.entries[i].offset,
                                  t.ps.g + t.ps.entries[i].offset, t.ps.entries[i].numel};
    assert_int_equal(n, 1 + 16);
    for (int i = 0; i < t.lora.count; i++)
        if (strstr(t.lora.entries[i].name, ".h.0."))
            tg[n++] = (gc_target){t.lora.entries[i].name, t.lora.w + t.lora.entries[i].offset,
                                  t.lora.g + t.lora.entries[i].offset,
                                  t.lora.entries[i].numel};
    assert_int_equal(n, 1 + 16 + 8);
    gc_opts o = gc_default_opts();
    o.atol = 1e-3;
    o.max_checks = 24;
    gc_report rep;
    expect_pass(gc_check(t.be, block_fwd, block_bwd, &t, 96, tg, n, &o, &rep), &rep, "block");
    lctx_close(&t);
}

/* ---- the whole model through the loss (out[0] = total nats over the targets) ---- */

static int model_fwd(backend_t *be, void *u, float *out)
{
    lctx *t = u;
    d2_error e;
    int count;
    arena_reset(&t->ar, t->mark);
    int rc = lm_forward(be, &t->m, &t->ar, &t->c, &t->b, &e);
    if (!rc)
        rc = be->ops->to_host(be, t->logits_h, t->c.logits,
                              (size_t)2 * TINY.context * LM_VOCAB_OUT * sizeof(float));
    if (!rc)
        out[0] = (float)lm_loss_host(t->logits_h, t->b.labels, 2 * TINY.context, NULL, 1.0f,
                                     &count);
    return rc;
}

static int model_bwd(backend_t *be, void *u, const float *dout)
{
    lctx *t = u;
    d2_error e;
    int count;
    const int R = 2 * TINY.context;
    /* d(total)/dlogits = count * d(mean)/dlogits */
    lm_loss_host(t->logits_h, t->b.labels, R, t->dl_h, (float)t->b.targets * dout[0], &count);
    float *dl = arena_floats(&t->ar, (size_t)R * LM_VOCAB_OUT);
    if (!dl)
        return -1;
    memcpy(dl, t->dl_h, (size_t)R * LM_VOCAB_OUT * sizeof(float));
    return lm_backward(be, &t->m, &t->ar, &t->c, dl, &e);
}

static void test_model_loss_gradcheck(void **state)
{
    (void)state;
    lctx t;
    lctx_open(&t, 0, 0);
    gc_target tg[64];
    int n = targets_of(&t.ps, tg, 64);
    assert_int_equal(n, 2 + 2 * 16 + 2 + 1);
    gc_opts o = gc_default_opts();
    o.atol = 2e-3;
    o.max_checks = 12;
    gc_report rep;
    expect_pass(gc_check(t.be, model_fwd, model_bwd, &t, 1, tg, n, &o, &rep), &rep, "model");
    /* the embedding rows of bytes that never occur get no gradient, exactly */
    const float *gz = t.ps.g + t.m.wte + (size_t)'z' * TINY.width;
    for (int j = 0; j < TINY.width; j++)
        assert_true(gz[j] == 0.0f);
    lctx_close(&t);
}

/* LoRA through the whole model, base frozen: only the adapters get gradients */
static void test_lora_frozen_gradcheck(void **state)
{
    (void)state;
    lctx t;
    lctx_open(&t, 3, 0);
    t.m.frozen = 1;
    gc_target tg[64];
    int n = targets_of(&t.lora, tg, 64);
    assert_int_equal(n, 2 * 2 * 2);
    gc_opts o = gc_default_opts();
    o.atol = 2e-3;
    o.max_checks = 16;
    gc_report rep;
    t.be->ops->fill(t.be, t.ps.g, 0.0f, t.ps.total);
    expect_pass(gc_check(t.be, model_fwd, model_bwd, &t, 1, tg, n, &o, &rep), &rep, "lora");
    const param_entry *q = paramset_find(&t.ps, "transformer.h.1.attn.q_proj.weight");
    assert_non_null(q);
    for (size_t i = 0; i < q->numel; i++)
        assert_true(t.ps.g[q->offset + i] == 0.0f);
    lctx_close(&t);
}

/* a later byte does not change the logits before it; nor does another word in the row */
static void test_model_causal(void **state)
{
    (void)state;
    lctx t;
    lctx_open(&t, 0, 0);
    const int R = 2 * TINY.context, V = LM_VOCAB_OUT;
    float *l0 = malloc((size_t)R * V * sizeof(float));
    float out;
    assert_non_null(l0);
    assert_int_equal(model_fwd(t.be, &t, &out), 0);
    memcpy(l0, t.logits_h, (size_t)R * V * sizeof(float));
    t.b.ids[TINY.context + 4] = 'x'; /* "abcd" -> "abcx": input position 4 */
    t.b.ids[4] = 'q';                /* "c" -> "q" in row 0: input position 4 */
    lm_batch_encode(&t.b);
    assert_int_equal(model_fwd(t.be, &t, &out), 0);
    for (int i = 0; i < R; i++) {
        int changed = i == 4 || i == TINY.context + 4;
        int same = !memcmp(l0 + (size_t)i * V, t.logits_h + (size_t)i * V, V * sizeof(float));
        assert_int_equal(same, !changed);
    }
    free(l0);
    lctx_close(&t);
}

static void test_loss_values(void **state)
{
    (void)state;
    float logits[3 * LM_VOCAB_OUT] = {0}, dl[3 * LM_VOCAB_OUT];
    int32_t labels[3] = {'a', -1, 'b'};
    logits[2 * LM_VOCAB_OUT + 'b'] = 2.0f;
    int count;
    double nats = lm_loss_host(logits, labels, 3, dl, 1.0f, &count);
    assert_int_equal(count, 2);
    double want = log(256.0) + (log(255.0 + exp(2.0)) - 2.0);
    assert_true(fabs(nats - want) < 1e-9);
    assert_true(fabs(dl['a'] - (1.0 / 256 - 1) / 2) < 1e-7);
    assert_true(dl[LM_VOCAB_OUT + 'a'] == 0.0f); /* the masked row */
    double s = 0;
    for (int c = 0; c < LM_VOCAB_OUT; c++)
        s += dl[2 * LM_VOCAB_OUT + c];
    assert_true(fabs(s) < 1e-6);
}

/* W + (alpha/r) B A gives the forward of the adapted model */
static void test_lora_merge(void **state)
{
    (void)state;
    lctx t;
    lctx_open(&t, 4, 1);
    const int R = 2 * TINY.context, V = LM_VOCAB_OUT;
    float *l0 = malloc((size_t)R * V * sizeof(float)), out;
    assert_non_null(l0);
    assert_int_equal(model_fwd(t.be, &t, &out), 0);
    memcpy(l0, t.logits_h, (size_t)R * V * sizeof(float));
    d2_error e = {0};
    assert_int_equal(lm_merge_lora(&t.m, &e), 0);
    assert_null(t.m.lora);
    assert_int_equal(model_fwd(t.be, &t, &out), 0);
    double diff = 0, mag = 0;
    for (size_t i = 0; i < (size_t)R * V; i++) {
        diff = fmax(diff, fabs((double)l0[i] - t.logits_h[i]));
        mag = fmax(mag, fabs((double)l0[i]));
    }
    assert_true(mag > 0.1);
    assert_true(diff < 1e-5);
    free(l0);
    lctx_close(&t);
}

static void test_config_refused(void **state)
{
    (void)state;
    d2_error e = {0};
    lm_config c = lm_config_default();
    assert_int_equal(lm_config_check(&c, &e), 0);
    c.heads = 3;
    assert_int_equal(lm_config_check(&c, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "heads"));
    c = lm_config_default();
    c.layers = 0;
    assert_int_equal(lm_config_check(&c, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "layers"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_gradcheck),  cmocka_unit_test(test_attention_causal),
        cmocka_unit_test(test_block_gradcheck),      cmocka_unit_test(test_model_loss_gradcheck),
        cmocka_unit_test(test_lora_frozen_gradcheck), cmocka_unit_test(test_model_causal),
        cmocka_unit_test(test_loss_values),          cmocka_unit_test(test_lora_merge),
        cmocka_unit_test(test_config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
