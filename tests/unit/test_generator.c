/* test_generator.c - the generator end to end on the shared quick fixture
 * (tests/fixture.sh: a 2000-task Fashion-MNIST zoo and `d2nwg train --quick`):
 *  - generated heads on held-out class combinations beat a random head by a
 *    wide margin and the 5-shot prototype baseline (a failing generator fails);
 *  - generation is deterministic for a seed and differs across seeds;
 *  - the checkpoint is the complete network, with PyTorch names and lineage;
 *  - bad support sets are refused with messages naming the problem;
 *  - one training step of each stage lowers its loss on a fixed batch;
 *  - training is bit-identical for a seed, also when stopped and resumed;
 *  - a copy with other sampler and refinement defaults has the same weights. */
#include "fileio.h"
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "baseline.h"
#include "gen_model.h"
#include "gen_train.h"
#include "optim.h"
#include "safetensors.h"
#include "zoo.h"

typedef struct fixture {
    char gen_path[1024];
    char zoo_dir[1024];
    backend_t *be;
    generator *g;
    gen_workspace *ws;
    zoo z;
    data_source raw; /* Fashion-MNIST pixels, for support sets in the input space */
    class_index raw_ci;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char build[480];
    if (tu_quick_fixture(build, sizeof build, f->gen_path, sizeof f->gen_path, f->zoo_dir,
                         sizeof f->zoo_dir))
        return -1;
    d2_error err = {0};
    if (backend_cpu_create(&f->be, 0, &err) || generator_load(&f->g, f->gen_path, f->be, &err) ||
        gen_workspace_create(&f->ws, f->g, f->be, 8, &err) || zoo_load(&f->z, f->zoo_dir, 1, &err) ||
        data_source_load(&f->raw, "fashion-mnist", &err) ||
        class_index_build(&f->raw_ci, &f->raw.train, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    zoo_free(&f->z);
    class_index_free(&f->raw_ci);
    data_source_free(&f->raw);
    gen_workspace_free(f->ws);
    generator_free(f->g);
    backend_destroy(f->be);
    free(f);
    return 0;
}

static void test_generated_heads_beat_baselines(void **state)
{
    fixture *f = *state;
    const gen_info *in = generator_info(f->g);
    assert_int_equal(in->max_way, 5);
    assert_true(f->z.n_heldout > 0);
    const int tasks = 20;
    double gen = 0, proto = 0, rnd = 0, gen1 = 0;
    float *theta = malloc((size_t)in->params * sizeof(float));
    for (int i = 0; i < tasks; i++) {
        task t = {.way = 5};
        memcpy(t.classes, f->z.heldout[i % f->z.n_heldout], 5 * sizeof(int));
        rng r;
        rng_init(&r, 1000 + i, 0);
        rng_shuffle_int(&r, t.classes, 5);
        dataset sup = {0}, sup1 = {0}, q = {0};
        d2_error err;
        assert_int_equal(zoo_task_support(&f->z, &t, 5, &r, &sup, &err), 0);
        assert_int_equal(zoo_task_support(&f->z, &t, 1, &r, &sup1, &err), 0);
        assert_int_equal(zoo_task_query(&f->z, &t, &q, &err), 0);
        gen_request req = {.support = &sup, .embeddings = 1, .candidates = 8, .steps = 50,
                           .sampler = GEN_SAMPLER_DDIM, .guidance = in->default_guidance,
                           .seed = (uint64_t)i};
        gen_result res;
        assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
        float acc, loss;
        assert_int_equal(target_eval(in->spec, res.ranked[0].theta, &q, &acc, &loss, &err), 0);
        gen += acc;
        gen_result_free(&res);
        req.support = &sup1;
        assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
        assert_int_equal(target_eval(in->spec, res.ranked[0].theta, &q, &acc, &loss, &err), 0);
        gen1 += acc;
        gen_result_free(&res);
        proto += baseline_prototypes(&sup, &q, 5);
        target_init_random(in->spec, (uint64_t)i, theta);
        assert_int_equal(target_eval(in->spec, theta, &q, &acc, &loss, &err), 0);
        rnd += acc;
        dataset_free(&sup);
        dataset_free(&sup1);
        dataset_free(&q);
    }
    gen /= tasks;
    gen1 /= tasks;
    proto /= tasks;
    rnd /= tasks;
    print_message("held-out 5-way: random %.3f, prototypes 5-shot %.3f, generated 5-shot %.3f, "
                  "1-shot %.3f\n",
                  rnd, proto, gen, gen1);
    assert_true(gen > rnd + 0.4);
    assert_true(gen1 > rnd + 0.3);
    assert_true(gen > proto + 0.03);
    free(theta);
}

static dataset support_from_zoo(fixture *f, int shots, uint64_t seed, int raw)
{
    task t = {.way = 5, .classes = {3, 1, 4, 0, 9}};
    rng r;
    rng_init(&r, seed, 0);
    dataset s = {0};
    d2_error err;
    if (!raw) {
        assert_int_equal(zoo_task_support(&f->z, &t, shots, &r, &s, &err), 0);
        return s;
    }
    assert_int_equal(task_draw(&f->raw.train, &f->raw_ci, &t, shots, &r, &s, &err), 0);
    return s;
}

static void test_generation_deterministic(void **state)
{
    fixture *f = *state;
    dataset s = support_from_zoo(f, 5, 7, 1);
    gen_request req = {.support = &s, .embeddings = 0, .candidates = 4, .steps = 20,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = 2.0f, .seed = 42};
    d2_error err;
    gen_result a, b, c;
    unsigned char *ba, *bb, *bc;
    size_t la, lb, lc;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &a, &err), 0);
    assert_int_equal(generator_generate(f->g, f->ws, &req, &b, &err), 0);
    assert_int_equal(generator_checkpoint_bytes(f->g, &req, &a, 0, &ba, &la, &err), 0);
    assert_int_equal(generator_checkpoint_bytes(f->g, &req, &b, 0, &bb, &lb, &err), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    req.seed = 43;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &c, &err), 0);
    assert_int_equal(generator_checkpoint_bytes(f->g, &req, &c, 0, &bc, &lc, &err), 0);
    assert_true(la != lc || memcmp(ba, bc, la) != 0);
    // the memorisation check names the nearest zoo entry, by brute force too
    int P = generator_info(f->g)->params;
    float *zt = malloc((size_t)P * sizeof(float));
    for (int k = 0; k < a.count; k++) {
        double best = INFINITY;
        int bi = -1;
        for (int i = 0; i < generator_info(f->g)->zoo_size; i++) {
            assert_int_equal(generator_zoo_theta(f->g, i, zt, &err), 0);
            double d = 0;
            for (int j = 0; j < P; j++)
                d += ((double)a.ranked[k].theta[j] - zt[j]) * ((double)a.ranked[k].theta[j] - zt[j]);
            if (d < best) {
                best = d;
                bi = i;
            }
        }
        assert_int_equal(a.ranked[k].zoo_nearest, bi);
        TU_ASSERT_NEAR(a.ranked[k].zoo_distance, sqrt(best), 1e-4 * sqrt(best));
    }
    free(zt);
    // the candidates themselves differ across seeds
    double d = 0;
    for (int j = 0; j < P; j++)
        d += fabs(a.ranked[0].theta[j] - c.ranked[0].theta[j]);
    assert_true(d > 1e-3);
    // the DDPM sampler is seeded too
    req.sampler = GEN_SAMPLER_DDPM;
    gen_result e1, e2;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &e1, &err), 0);
    assert_int_equal(generator_generate(f->g, f->ws, &req, &e2, &err), 0);
    for (int k = 0; k < e1.count; k++)
        assert_memory_equal(e1.ranked[k].theta, e2.ranked[k].theta, (size_t)P * sizeof(float));
    gen_result_free(&e1);
    gen_result_free(&e2);
    free(ba);
    free(bb);
    free(bc);
    gen_result_free(&a);
    gen_result_free(&b);
    gen_result_free(&c);
    dataset_free(&s);
}

static void test_checkpoint_is_the_whole_network(void **state)
{
    fixture *f = *state;
    dataset s = support_from_zoo(f, 5, 9, 1);
    gen_request req = {.support = &s, .candidates = 2, .steps = 10, .guidance = 2.0f, .seed = 5};
    d2_error err;
    gen_result res;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    assert_true(res.ranked[0].support_acc >= res.ranked[1].support_acc);
    unsigned char *b;
    size_t len;
    assert_int_equal(generator_checkpoint_bytes(f->g, &req, &res, 0, &b, &len, &err), 0);
    st_file st;
    assert_int_equal(st_parse(&st, b, len, &err), 0);
    const st_tensor *w0 = st_find(&st, "0.weight"), *b0 = st_find(&st, "0.bias"),
                    *w1 = st_find(&st, "1.weight"), *b1 = st_find(&st, "1.bias");
    assert_non_null(w0);
    assert_non_null(b0);
    assert_non_null(w1);
    assert_non_null(b1);
    assert_int_equal(st.count, 4);
    assert_int_equal(w0->shape[0], 128);
    assert_int_equal(w0->shape[1], 784);
    assert_int_equal(w1->shape[0], 5);
    assert_int_equal(w1->shape[1], 128);
    assert_string_equal(st_meta(&st, "d2nwg.generator"), generator_info(f->g)->id);
    assert_string_equal(st_meta(&st, "d2nwg.dataset"), res.dataset_fingerprint);
    assert_string_equal(st_meta(&st, "d2nwg.seed"), "5");
    assert_string_equal(st_meta(&st, "d2nwg.sampler"), "ddim");
    assert_string_equal(st_meta(&st, "format"), "pt");
    // run the file's network on raw pixels: Linear(784,128) then Linear(128,5)
    float W0[128 * 784], B0[128], W1[5 * 128], B1[5];
    assert_int_equal(st_to_f32(w0, W0, &err), 0);
    assert_int_equal(st_to_f32(b0, B0, &err), 0);
    assert_int_equal(st_to_f32(w1, W1, &err), 0);
    assert_int_equal(st_to_f32(b1, B1, &err), 0);
    int right = 0;
    for (int i = 0; i < s.n; i++) {
        double h[128], best = -INFINITY;
        int arg = -1;
        for (int k = 0; k < 128; k++) {
            double a = B0[k];
            for (int j = 0; j < 784; j++)
                a += (double)W0[k * 784 + j] * s.x[(size_t)i * 784 + j];
            h[k] = a;
        }
        for (int c = 0; c < 5; c++) {
            double a = B1[c];
            for (int k = 0; k < 128; k++)
                a += (double)W1[c * 128 + k] * h[k];
            if (a > best) {
                best = a;
                arg = c;
            }
        }
        right += arg == s.y[i];
    }
    TU_ASSERT_NEAR((double)right / s.n, res.ranked[0].support_acc, 1e-6);
    st_free(&st);
    free(b);
    gen_result_free(&res);
    dataset_free(&s);
}

static void test_bad_support_sets(void **state)
{
    fixture *f = *state;
    d2_error err;
    dataset s = support_from_zoo(f, 3, 11, 1);
    // wrong dimension (embeddings expected: 128, samples given: 784)
    assert_int_not_equal(generator_check_support(f->g, &s, 1, &err), 0);
    assert_non_null(strstr(err.msg, "784"));
    assert_non_null(strstr(err.msg, "128"));
    // NaN
    s.x[5 * 784 + 3] = NAN;
    assert_int_not_equal(generator_check_support(f->g, &s, 0, &err), 0);
    assert_non_null(strstr(err.msg, "row 5, column 3"));
    s.x[5 * 784 + 3] = 0.5f;
    // a class with no sample: relabel every 2 as 4
    for (int i = 0; i < s.n; i++)
        if (s.y[i] == 2)
            s.y[i] = 4;
    assert_int_not_equal(generator_check_support(f->g, &s, 0, &err), 0);
    assert_non_null(strstr(err.msg, "class 2 has no sample"));
    // more classes than the generator makes
    s.y[0] = 7;
    assert_int_not_equal(generator_check_support(f->g, &s, 0, &err), 0);
    assert_non_null(strstr(err.msg, "8 classes"));
    // fewer
    for (int i = 0; i < s.n; i++)
        s.y[i] = i % 3;
    assert_int_not_equal(generator_check_support(f->g, &s, 0, &err), 0);
    assert_non_null(strstr(err.msg, "3 classes"));
    s.y[0] = -1;
    assert_int_not_equal(generator_check_support(f->g, &s, 0, &err), 0);
    assert_non_null(strstr(err.msg, "negative"));
    dataset_free(&s);
}

static void test_large_support_set(void **state)
{
    // 3000 rows per class need more scratch memory than the workspace holds:
    // the encoder gets a temporary arena instead of failing the request
    fixture *f = *state;
    dataset s = support_from_zoo(f, 3000, 13, 1);
    assert_int_equal(s.n, 15000);
    gen_request req = {.support = &s, .candidates = 2, .steps = 5, .guidance = 2.0f, .seed = 1};
    d2_error err;
    gen_result res;
    size_t cap = f->ws->ar.cap;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &res, &err), 0);
    assert_int_equal(f->ws->ar.cap, cap); // the workspace itself did not grow
    assert_true(res.ranked[0].support_acc > 0.5f);
    gen_result_free(&res);
    dataset_free(&s);
}

/* One optimiser step on a fixed batch lowers each stage's loss. */
static void test_one_step_lowers_loss(void **state)
{
    fixture *f = *state;
    d2_error err;
    generator g;
    memset(&g, 0, sizeof g);
    gen_config cfg = gen_config_defaults(f->z.P, 784, 128, 5, f->z.spec.text);
    cfg.vae_hidden = 64;
    cfg.tok_latent = 8;
    cfg.enc_d = 16;
    cfg.enc_heads = 2;
    cfg.enc_inducing = 4;
    cfg.cond_dim = 16;
    cfg.den_hidden = 32;
    cfg.den_blocks = 2;
    assert_int_equal(gen_model_init(&g, &cfg, f->be, 3, &err), 0);
    assert_int_equal(paramset_alloc_optim(&g.vae_ps, &err), 0);
    assert_int_equal(paramset_alloc_optim(&g.net_ps, &err), 0);
    arena ar;
    assert_int_equal(arena_init(&ar, f->be, 64 << 20, &err), 0);
    backend_t *be = f->be;
    const wtok *tk = &g.tok;
    assert_int_equal(tk->n_tok, 5);
    assert_int_equal(tk->len, 129);
    const int B = 16, l = g.cfg.tok_latent, R = B * tk->n_tok;
    const int tin = tk->len + tk->n_layers, zin = l + tk->n_layers;
    float *loss = backend_alloc_floats(be, 1);
    // stage 1: the autoencoder on a fixed batch of zoo heads (as tokens)
    float *x = malloc((size_t)B * cfg.P * sizeof(float));
    float *tok = malloc((size_t)R * tin * sizeof(float)), *tgt = malloc((size_t)R * tk->len * sizeof(float));
    float *enc = malloc((size_t)R * 2 * l * sizeof(float)), *zr = malloc((size_t)R * zin * sizeof(float));
    float *zl = malloc((size_t)R * l * sizeof(float)), *dzh = malloc((size_t)R * zin * sizeof(float));
    float *douth = calloc((size_t)R * 2 * l, sizeof(float));
    for (int i = 0; i < B * cfg.P; i++)
        x[i] = f->z.theta[i] * 3.0f;
    wtok_split(tk, x, B, tok);
    wtok_targets(tk, x, B, tgt);
    float *xd = backend_alloc_floats(be, (size_t)R * tin), *td = backend_alloc_floats(be, (size_t)R * tk->len);
    float *dy = backend_alloc_floats(be, (size_t)R * tk->len);
    float *z = backend_alloc_floats(be, (size_t)R * zin), *dz = backend_alloc_floats(be, (size_t)R * zin);
    float *dout = backend_alloc_floats(be, (size_t)R * 2 * l);
    be->ops->to_device(be, xd, tok, (size_t)R * tin * sizeof(float));
    be->ops->to_device(be, td, tgt, (size_t)R * tk->len * sizeof(float));
    adamw_cfg oc = adamw_defaults();
    oc.lr = 3e-3f;
    float before = 0, after = 0;
    for (int step = 0; step < 2; step++) {
        arena_reset(&ar, 0);
        resmlp_cache ce, cd;
        assert_int_equal(resmlp_forward(be, &g.vae_enc, &g.vae_ps, &ar, &ce, xd, R, &err), 0);
        be->ops->to_host(be, enc, ce.y, (size_t)R * 2 * l * sizeof(float));
        for (int i = 0; i < R; i++) // the posterior means
            memcpy(zl + (size_t)i * l, enc + (size_t)i * 2 * l, (size_t)l * sizeof(float));
        wtok_latent_rows(tk, zl, B, l, zr);
        be->ops->to_device(be, z, zr, (size_t)R * zin * sizeof(float));
        assert_int_equal(resmlp_forward(be, &g.vae_dec, &g.vae_ps, &ar, &cd, z, R, &err), 0);
        be->ops->mse(be, loss, dy, cd.y, td, (size_t)R * tk->len, 1.0f);
        float lv;
        be->ops->to_host(be, &lv, loss, sizeof lv);
        if (step == 0)
            before = lv;
        else
            after = lv;
        paramset_zero_grad(&g.vae_ps);
        be->ops->fill(be, dz, 0.0f, (size_t)R * zin);
        assert_int_equal(resmlp_backward(be, &g.vae_dec, &g.vae_ps, &ar, &cd, dz, dy, &err), 0);
        be->ops->to_host(be, dzh, dz, (size_t)R * zin * sizeof(float));
        for (int i = 0; i < R; i++)
            memcpy(douth + (size_t)i * 2 * l, dzh + (size_t)i * zin, (size_t)l * sizeof(float));
        be->ops->to_device(be, dout, douth, (size_t)R * 2 * l * sizeof(float));
        assert_int_equal(resmlp_backward(be, &g.vae_enc, &g.vae_ps, &ar, &ce, NULL, dout, &err), 0);
        assert_int_equal(optim_adamw_step(&g.vae_ps, &oc, step, NULL, &err), 0);
    }
    print_message("stage 1 loss %.5f -> %.5f\n", before, after);
    assert_true(after < before);
    // stage 2: encoder + denoiser on a fixed batch of support sets and noised latents
    const int Bt = 4, N = 5, K = 3, F = 128, TD = cfg.temb_dim, C = cfg.cond_dim;
    float *X = malloc((size_t)Bt * N * K * F * sizeof(float));
    rng r;
    rng_init(&r, 5, 0);
    for (int i = 0; i < Bt * N * K * F; i++)
        X[i] = rng_normal(&r);
    const int L = g.cfg.latent;
    float zt[4 * 80], eps[4 * 80], temb[4 * 64];
    assert_true(L <= 80);
    int ts[4] = {10, 300, 600, 900};
    for (int i = 0; i < Bt * L; i++) {
        eps[i] = rng_normal(&r);
        zt[i] = 0.5f * rng_normal(&r) + 0.5f * eps[i];
    }
    denoiser_timestep_features(TD, ts, Bt, temb);
    float *Xd = backend_alloc_floats(be, (size_t)Bt * N * K * F),
          *ztd = backend_alloc_floats(be, (size_t)Bt * L), *epsd = backend_alloc_floats(be, (size_t)Bt * L),
          *tembd = backend_alloc_floats(be, (size_t)Bt * TD), *deps = backend_alloc_floats(be, (size_t)Bt * L),
          *dcond = backend_alloc_floats(be, (size_t)Bt * C);
    be->ops->to_device(be, Xd, X, (size_t)Bt * N * K * F * sizeof(float));
    be->ops->to_device(be, ztd, zt, (size_t)Bt * L * sizeof(float));
    be->ops->to_device(be, epsd, eps, (size_t)Bt * L * sizeof(float));
    be->ops->to_device(be, tembd, temb, (size_t)Bt * TD * sizeof(float));
    for (int step = 0; step < 2; step++) {
        arena_reset(&ar, 0);
        setenc_cache sc;
        denoiser_cache dc;
        assert_int_equal(setenc_forward(be, &g.enc, &g.net_ps, &ar, &sc, Xd, Bt, N, K, NULL, &err), 0);
        assert_int_equal(denoiser_forward(be, &g.den, &g.net_ps, &ar, &dc, ztd, tembd, sc.cond, Bt, 1, &err), 0);
        be->ops->mse(be, loss, deps, dc.eps, epsd, (size_t)Bt * L, 1.0f);
        float lv;
        be->ops->to_host(be, &lv, loss, sizeof lv);
        if (step == 0)
            before = lv;
        else
            after = lv;
        paramset_zero_grad(&g.net_ps);
        be->ops->fill(be, dcond, 0.0f, (size_t)Bt * C);
        assert_int_equal(denoiser_backward(be, &g.den, &g.net_ps, &ar, &dc, deps, dcond, &err), 0);
        assert_int_equal(setenc_backward(be, &g.enc, &g.net_ps, &ar, &sc, dcond, &err), 0);
        assert_int_equal(optim_adamw_step(&g.net_ps, &oc, step, NULL, &err), 0);
    }
    print_message("stage 2 loss %.5f -> %.5f\n", before, after);
    assert_true(after < before);
    void *bufs[] = {loss, xd, td, dy, z, dz, dout, Xd, ztd, epsd, tembd, deps, dcond};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be->ops->free(be, bufs[i]);
    free(x);
    free(tok);
    free(tgt);
    free(enc);
    free(zr);
    free(zl);
    free(dzh);
    free(douth);
    free(X);
    arena_free(&ar);
    gen_model_free(&g);
}

static gen_train_cfg tiny_cfg(void)
{
    gen_train_cfg c = gen_train_defaults(1);
    c.progress = 0;
    c.vae_hidden = 32;
    c.tok_latent = 4;
    c.enc_d = 16;
    c.enc_inducing = 2;
    c.cond_dim = 16;
    c.den_hidden = 32;
    c.den_blocks = 1;
    c.vae_steps = 150;
    c.align_steps = 40;
    c.steps = 150;
    c.tasks_per_step = 8;
    c.zoo_emb_shots = 2;
    c.seed = 77;
    return c;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    unsigned char *b = NULL;
    d2_error err;
    assert_int_equal(d2_read_file(path, &b, len, 0, &err), 0);
    return b;
}

static void test_training_deterministic_and_resumable(void **state)
{
    fixture *f = *state;
    char *dir = tu_tmpdir("train");
    char a[1100], b[1100];
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    d2_error err;
    gen_train_report rep;
    gen_train_cfg c = tiny_cfg();
    assert_int_equal(generator_train(&f->z, &c, a, f->be, &rep, &err), 0);
    assert_int_equal(rep.stopped, 0);
    assert_int_equal(rep.steps_done, c.steps);
    // interrupted twice (in stage 1, then in stage 2), resumed twice: the same bytes
    c.stop_after_steps = 100;
    assert_int_equal(generator_train(&f->z, &c, b, f->be, &rep, &err), 0);
    assert_int_equal(rep.stopped, 1);
    char ckpt[1200];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", b);
    struct stat st;
    assert_int_equal(stat(ckpt, &st), 0);
    c.resume = 1;
    c.stop_after_steps = 120; // 50 VAE + 40 alignment + 30 diffusion steps
    assert_int_equal(generator_train(&f->z, &c, b, f->be, &rep, &err), 0);
    assert_int_equal(rep.stopped, 1);
    c.stop_after_steps = 0;
    assert_int_equal(generator_train(&f->z, &c, b, f->be, &rep, &err), 0);
    assert_int_equal(rep.stopped, 0);
    assert_int_not_equal(stat(ckpt, &st), 0); // removed once the bundle is written
    // a time limit stops a run too, whenever it falls
    c = tiny_cfg();
    c.stop_after = 1e-3;
    assert_int_equal(generator_train(&f->z, &c, b, f->be, &rep, &err), 0);
    assert_int_equal(rep.stopped, 1);
    size_t la, lb;
    unsigned char *ba = read_all(a, &la), *bb = read_all(b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(bb);
    // another seed: other bytes
    c = tiny_cfg();
    c.seed = 78;
    assert_int_equal(generator_train(&f->z, &c, b, f->be, &rep, &err), 0);
    bb = read_all(b, &lb);
    assert_true(la != lb || memcmp(ba, bb, la) != 0);
    // a checkpoint of another seed is refused on resume
    c.stop_after_steps = 10;
    assert_int_equal(generator_train(&f->z, &c, b, f->be, &rep, &err), 0);
    c = tiny_cfg();
    c.resume = 1;
    assert_int_equal(generator_train(&f->z, &c, b, f->be, &rep, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "seed 78"));
    free(ba);
    free(bb);
    tu_rmrf(dir);
    free(dir);
}

/* generator_save_with_defaults: the same weights with other defaults, the
 * provenance naming the source, values out of range refused. */
static void test_defaults_copy(void **state)
{
    fixture *f = *state;
    const gen_info *in = generator_info(f->g);
    assert_int_equal(in->default_refine_rule, GEN_REFINE_ADAPTIVE);
    TU_ASSERT_NEAR(in->default_refine_c, 1.0, 0);
    char *dir = tu_tmpdir("defaults");
    char path[1200];
    snprintf(path, sizeof path, "%s/fixed.safetensors", dir);
    gen_defaults d = {4, 20, 1.5f, GEN_SAMPLER_DDIM, GEN_REFINE_FIXED, 0.5f, 2.0f,
                      GEN_METHOD_LOGREG};
    d2_error err;
    assert_int_equal(generator_save_with_defaults(f->g, &d, path, &err), 0);
    generator *h = NULL;
    gen_workspace *ws = NULL;
    assert_int_equal(generator_load(&h, path, f->be, &err), 0);
    assert_int_equal(gen_workspace_create(&ws, h, f->be, 8, &err), 0);
    const gen_info *hi = generator_info(h);
    assert_int_equal(hi->default_candidates, 4);
    assert_int_equal(hi->default_steps, 20);
    TU_ASSERT_NEAR(hi->default_guidance, 1.5, 0);
    assert_int_equal(hi->default_refine_rule, GEN_REFINE_FIXED);
    TU_ASSERT_NEAR(generator_refine_c(h, 1.0f, 5), 0.5, 1e-7); // fixed: whatever the fit
    TU_ASSERT_NEAR(generator_refine_c(f->g, 1.0f, 5), 0.0, 0);  // adaptive: a perfect fit keeps
    assert_non_null(strstr(hi->provenance_json, in->id));      // where it came from
    TU_ASSERT_NEAR(hi->default_gate_one_shot, 2.0, 0);
    assert_int_equal(hi->default_gate_fallback, GEN_METHOD_LOGREG);
    // the same weights: unrefined generations agree bit for bit
    dataset s = support_from_zoo(f, 3, 5, 0);
    gen_request req = {.support = &s, .embeddings = 1, .candidates = 3, .steps = 10,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = 2.0f, .seed = 9};
    gen_result a, b;
    assert_int_equal(generator_generate(f->g, f->ws, &req, &a, &err), 0);
    assert_int_equal(generator_generate(h, ws, &req, &b, &err), 0);
    for (int k = 0; k < 3; k++)
        assert_memory_equal(a.ranked[k].theta, b.ranked[k].theta, a.spec.numel * sizeof(float));
    gen_result_free(&a);
    gen_result_free(&b);
    // at 1 shot the copy's gate never keeps the diffusion head and returns logreg
    dataset one = support_from_zoo(f, 1, 6, 0);
    req.support = &one;
    req.gate = 1;
    assert_int_equal(generator_generate(h, ws, &req, &b, &err), 0);
    assert_int_equal(b.gate.chosen, GEN_METHOD_LOGREG);
    assert_int_equal(b.ranked[0].method, GEN_METHOD_LOGREG);
    assert_non_null(strstr(b.gate.reason, "returns logreg at 1 shot"));
    gen_result_free(&b);
    dataset_free(&one);
    d.gate_one_shot = 2.5f;
    assert_int_equal(generator_save_with_defaults(f->g, &d, path, &err), D2_ERANGE);
    d.gate_one_shot = 0.7f;
    d.steps = 5000;
    assert_int_equal(generator_save_with_defaults(f->g, &d, path, &err), D2_ERANGE);
    assert_non_null(strstr(err.msg, "steps 5000 outside 1..1000"));
    dataset_free(&s);
    gen_workspace_free(ws);
    generator_free(h);
    tu_rmrf(dir);
    free(dir);
}

/* Per-class conditions: the config flag survives JSON (and a non-boolean is
 * refused by name), and a head of more than one linear layer is refused (its
 * rows are not one per class). */
static void test_per_class_config(void **state)
{
    (void)state;
    d2_error err;
    const char *deep = "linear 8->6 | relu | linear 6->3";
    gen_config c = gen_config_defaults(8 * 6 + 6 + 6 * 3 + 3, 8, 8, 3, deep);
    c.per_class = 1;
    c.latent = 9 * c.tok_latent;
    char *json = gen_config_to_json(&c);
    assert_non_null(strstr(json, "\"per_class\":true"));
    gen_config back;
    assert_int_equal(gen_config_from_json(&back, json, &err), 0);
    assert_int_equal(back.per_class, 1);
    char *bad = strdup(json), *at = strstr(bad, "true");
    memcpy(at, "   1", 4);
    assert_int_equal(gen_config_from_json(&back, bad, &err), D2_EFORMAT);
    assert_non_null(strstr(err.msg, "encoder.per_class must be a boolean"));
    free(bad);
    free(json);
    backend_t *be;
    assert_int_equal(backend_cpu_create(&be, 1, &err), 0);
    generator g;
    memset(&g, 0, sizeof g);
    c.latent = 0;
    assert_int_equal(gen_model_init(&g, &c, be, 1, &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "per-class conditions need a head of one linear layer of 3 "
                                    "rows; spec 'linear 8->6 | relu | linear 6->3' has 9 tokens "
                                    "in 2 layers"));
    gen_model_free(&g);
    backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_heads_beat_baselines),
        cmocka_unit_test(test_generation_deterministic),
        cmocka_unit_test(test_checkpoint_is_the_whole_network),
        cmocka_unit_test(test_bad_support_sets),
        cmocka_unit_test(test_large_support_set),
        cmocka_unit_test(test_one_step_lowers_loss),
        cmocka_unit_test(test_training_deterministic_and_resumable),
        cmocka_unit_test(test_defaults_copy),
        cmocka_unit_test(test_per_class_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
