/* test_generate_pin.c - generation is byte-identical across refactors.
 *
 * A small generator is built from code (gen_model_init from a seed, every
 * weight then redrawn from a seeded normal so no gate starts at zero, a PCA
 * feature map fitted on fixed synthetic data, a zoo index of seeded heads),
 * saved with gen_bundle_save and loaded back with generator_load. It then
 * generates for a fixed support set and seed (DDIM with guidance, and DDPM),
 * and the sha256 of every ranked checkpoint's safetensors bytes (what `d2nwg
 * generate` writes) plus the candidates' norms and nearest-zoo distances is
 * compared with a pinned value.
 *
 * The floating-point results depend on OpenBLAS's kernel for this processor
 * and on the thread count, so a pin is keyed by openblas_get_corename() and
 * the backend's threads; on another core the test is skipped and says why. */
#include "fileio.h"
#include "testutil.h"


#include "gen_model.h"
#include "rng.h"
#include "safetensors.h"
#include "sha256.h"

/* from OpenBLAS (its cblas.h pulls in complex.h, whose I clashes with attention.h) */
char *openblas_get_corename(void);

#define PIN_IN 32     /* raw sample dimension */
#define PIN_FEAT 12   /* PCA features */
#define PIN_WAY 3
#define PIN_ZOO 6
#define PIN_SPEC "pca:12 | mlp 12-8-3 relu"

typedef struct pin {
    const char *core;
    int threads;
    const char *sha256;
} pin;

/* sha256 of the generation record (see pin_record) per OpenBLAS core and thread count.
 * Re-pinned on purpose when the checkpoints gained the d2nwg.method and
 * d2nwg.gate metadata (with the gate off, as here: its reason and the
 * out-of-distribution measure); the hash before it, d05ebaf8...ec1e1, is
 * reproduced exactly by the same code without those two keys. Re-pinned again
 * when they gained d2nwg.refine ("none" here: this MLP head is not refined);
 * without that key the code reproduces the previous hash, b0c321ff...87da6. */
static const pin PINS[] = {
    {"Haswell", 1, "adfb6c7277a3da3a6f7b2907d0ba1de2c4fa99eae440fa68d8a1b73c31373093"},
    {"Haswell", 2, "adfb6c7277a3da3a6f7b2907d0ba1de2c4fa99eae440fa68d8a1b73c31373093"},
};

/* Synthetic raw samples: class c is a seeded centre plus noise. */
static void synth_data(dataset *d, int n, uint64_t seed)
{
    d2_error err = {0};
    assert_int_equal(dataset_alloc(d, n, PIN_IN, &err), 0);
    float centres[PIN_WAY * PIN_IN];
    rng_fill_normal(centres, PIN_WAY * PIN_IN, 11, 0, 0.0f, 1.0f);
    rng r;
    rng_init(&r, seed, 0);
    for (int i = 0; i < n; i++) {
        int c = i % PIN_WAY;
        d->y[i] = c;
        for (int j = 0; j < PIN_IN; j++)
            d->x[(size_t)i * PIN_IN + j] = centres[c * PIN_IN + j] + 0.5f * rng_normal(&r);
    }
    d->classes = PIN_WAY;
}

/* Redraw every weight of a paramset from N(0, std) (seeded), on the device. */
static void redraw(paramset *ps, uint64_t seed, float std)
{
    float *host = malloc(ps->total * sizeof(float) + 1);
    assert_non_null(host);
    rng_fill_normal(host, ps->total, seed, 0, 0.0f, std);
    assert_int_equal(ps->be->ops->to_device(ps->be, ps->w, host, ps->total * sizeof(float)), 0);
    free(host);
}

/* The generator, built from code and saved to path. */
static void build_bundle(backend_t *be, const char *path)
{
    d2_error err = {0};
    target_spec spec;
    assert_int_equal(target_spec_parse(&spec, PIN_SPEC, &err), 0);
    gen_config cfg = gen_config_defaults((int)spec.numel, PIN_IN, PIN_FEAT, PIN_WAY, PIN_SPEC);
    cfg.vae_hidden = 32;
    cfg.vae_blocks = 1;
    cfg.tok_latent = 4;
    cfg.enc_d = 16;
    cfg.enc_heads = 2;
    cfg.enc_inducing = 4;
    cfg.cond_dim = 24;
    cfg.den_hidden = 32;
    cfg.den_blocks = 2;
    cfg.temb_dim = 16;
    cfg.T = 100;
    generator g;
    memset(&g, 0, sizeof g);
    assert_int_equal(gen_model_init(&g, &cfg, be, 5, &err), 0);
    redraw(&g.vae_ps, 21, 0.2f);
    redraw(&g.net_ps, 22, 0.2f);
    dataset fit = {0};
    synth_data(&fit, 120, 31);
    assert_int_equal(feature_map_fit_pca(&g.fmap, &fit, PIN_FEAT, &err), 0);
    dataset_free(&fit);
    const int P = cfg.P, L = g.cfg.latent, F = PIN_FEAT;
    rng_fill_normal(g.w_mean, (size_t)P, 41, 0, 0.0f, 0.1f);
    rng_fill_uniform(g.w_std, (size_t)P, 42, 0);
    rng_fill_normal(g.z_mean, (size_t)L, 43, 0, 0.0f, 0.1f);
    rng_fill_uniform(g.z_std, (size_t)L, 44, 0);
    rng_fill_normal(g.f_mean, (size_t)F, 45, 0, 0.0f, 0.1f);
    rng_fill_uniform(g.f_std, (size_t)F, 46, 0);
    for (int i = 0; i < F; i++)
        g.f_std[i] += 0.5f;
    assert_int_equal(gen_model_alloc_index(&g, PIN_ZOO, &err), 0);
    rng_fill_normal(g.zoo_theta, (size_t)PIN_ZOO * P, 47, 0, 0.0f, 0.3f);
    rng_fill_normal(g.zoo_emb, (size_t)PIN_ZOO * cfg.cond_dim, 48, 0, 0.0f, 1.0f);
    for (int i = 0; i < PIN_ZOO * PIN_WAY; i++)
        g.zoo_classes[i] = i % 10;
    g.provenance_json = strdup("{\"zoo_fingerprint\":\"pin\"}");
    assert_int_equal(gen_bundle_save(&g, path, 0, &err), 0);
    gen_model_free(&g);
}

/* Add the generation's record to the hash: every ranked checkpoint's bytes,
 * then each candidate's scores, norm and nearest zoo entry as text. */
static void pin_record(const generator *g, gen_workspace *ws, gen_sampler sampler,
                       const dataset *support, sha256_ctx *rec)
{
    d2_error err = {0};
    gen_request req = {.support = support, .candidates = 4, .steps = 8, .sampler = sampler,
                       .guidance = 2.0f, .seed = 1234};
    gen_result res;
    if (generator_generate(g, ws, &req, &res, &err))
        fail_msg("generate: %s", err.msg);
    for (int k = 0; k < res.count; k++) {
        unsigned char *bytes = NULL;
        size_t len = 0;
        assert_int_equal(generator_checkpoint_bytes(g, &req, &res, k, &bytes, &len, &err), 0);
        sha256_update(rec, bytes, len);
        free(bytes);
        const gen_candidate *c = &res.ranked[k];
        char line[256];
        snprintf(line, sizeof line, "%d %.9g %.9g %.9g %.9g %d\n", c->index,
                 (double)c->support_acc, (double)c->support_loss, (double)c->norm,
                 (double)c->zoo_distance, c->zoo_nearest);
        sha256_update(rec, line, strlen(line));
        printf("  %s candidate %s", sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim", line);
    }
    gen_result_free(&res);
}

static void check_pin(int threads)
{
    const char *core = openblas_get_corename();
    const pin *want = NULL;
    for (size_t i = 0; i < sizeof PINS / sizeof PINS[0]; i++)
        if (core && strcmp(PINS[i].core, core) == 0 && PINS[i].threads == threads)
            want = &PINS[i];
    char *dir = tu_tmpdir("pin");
    char path[512];
    snprintf(path, sizeof path, "%s/gen.safetensors", dir);
    d2_error err = {0};
    backend_t *be = NULL;
    assert_int_equal(backend_cpu_create(&be, threads, &err), 0);
    build_bundle(be, path);
    generator *g = NULL;
    gen_workspace *ws = NULL;
    if (generator_load(&g, path, be, &err) || gen_workspace_create(&ws, g, be, 4, &err))
        fail_msg("load: %s", err.msg);
    dataset support = {0};
    synth_data(&support, 5 * PIN_WAY, 77);
    sha256_ctx rec;
    sha256_init(&rec);
    pin_record(g, ws, GEN_SAMPLER_DDIM, &support, &rec);
    pin_record(g, ws, GEN_SAMPLER_DDPM, &support, &rec);
    unsigned char digest[32];
    char hex[65];
    sha256_final(&rec, digest);
    sha256_to_hex(digest, hex);
    printf("generate pin: OpenBLAS core %s, %d thread(s): sha256 %s\n", core ? core : "?",
           threads, hex);
    dataset_free(&support);
    gen_workspace_free(ws);
    generator_free(g);
    backend_destroy(be);
    tu_rmrf(dir);
    free(dir);
    if (!want) {
        printf("SKIP generate pin: no pinned hash for OpenBLAS core %s with %d thread(s); "
               "floating-point results depend on the BLAS kernel, so this machine cannot be "
               "compared (add its line to PINS in tests/unit/test_generate_pin.c)\n",
               core ? core : "?", threads);
        skip();
    }
    assert_string_equal(hex, want->sha256);
}

static void test_generate_pin_1_thread(void **state)
{
    (void)state;
    check_pin(1);
}

static void test_generate_pin_2_threads(void **state)
{
    (void)state;
    check_pin(2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_pin_1_thread),
        cmocka_unit_test(test_generate_pin_2_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
