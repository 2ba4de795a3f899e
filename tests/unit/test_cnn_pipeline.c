/* test_cnn_pipeline.c - the cnn:FILE feature map through the whole pipeline: a zoo built
 * in a backbone's feature space (one glyph "train" script, rendered into a temporary data
 * folder), saved and loaded (its fingerprint covers the backbone's sha256), a generator
 * trained on it (tiny configuration), a generated network written with the backbone as
 * module 0 and its architecture string; then a different backbone at the same path is
 * refused by the zoo (fingerprint) and by the generator bundle (sha256), by name. */
#include "testutil.h"
#include "tu_backbone.h"

#include <sys/stat.h>

#include "convnet.h"
#include "data.h"
#include "gen_train.h"
#include "generator.h"
#include "safetensors.h"
#include "zoo.h"

typedef struct fx {
    char dir[512], backbone[600], zoo[600], gen[600], source[128], feature[700];
} fx;

static void write_backbone(const char *path, uint64_t seed)
{
    tu_backbone b = {.size = 28, .channels = 8, .blocks = 4, .classes = 3, .seed = seed,
                     .batches = 1, .perturb = 0};
    tu_write_backbone(path, &b);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char *d = tu_tmpdir("cnn_pipeline");
    snprintf(f->dir, sizeof f->dir, "%s", d);
    free(d);
    setenv("D2NWG_DATA_DIR", f->dir, 1);
    const char *names[2];
    if (glyph_split_scripts(GLYPH_SPLIT_TRAIN, names, 2) < 1)
        return -1;
    snprintf(f->source, sizeof f->source, "glyphs:%s", names[0]);
    snprintf(f->backbone, sizeof f->backbone, "%s/bb.safetensors", f->dir);
    snprintf(f->zoo, sizeof f->zoo, "%s/zoo", f->dir);
    snprintf(f->gen, sizeof f->gen, "%s/gen.safetensors", f->dir);
    snprintf(f->feature, sizeof f->feature, "cnn:%s", f->backbone);
    write_backbone(f->backbone, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tu_rmrf(f->dir);
    free(f);
    return 0;
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
    c.vae_steps = 30;
    c.align_steps = 10;
    c.steps = 30;
    c.tasks_per_step = 8;
    c.zoo_emb_shots = 2;
    return c;
}

static void build_zoo(const fx *f, zoo *z)
{
    zoo_build_cfg c = zoo_build_defaults();
    c.source = f->source;
    c.feature = f->feature;
    c.tasks = 24;
    c.per_class = 8;
    c.threads = 1;
    d2_error err = {0};
    if (zoo_prepare(z, &c, &err))
        fail_msg("zoo_prepare: %s", err.msg);
    assert_int_equal(z->spec.has_cnn, 1);
    assert_int_equal(z->spec.feat_dim, 8);
    assert_int_equal(zoo_train_entries(z, 1, 0, &err), 0);
    assert_int_equal(zoo_save(z, f->zoo, &err), 0);
}

/* a generated network from the bundle, as the bytes a job would return */
static void generate_network(const fx *f, backend_t *be)
{
    d2_error err = {0};
    generator *g = NULL;
    if (generator_load(&g, f->gen, be, &err))
        fail_msg("generator_load: %s", err.msg);
    gen_workspace *ws = NULL;
    assert_int_equal(gen_workspace_create(&ws, g, be, 4, &err), 0);
    task t = {.way = 5, .classes = {0, 1, 2, 3, 4}};
    rng r;
    rng_init(&r, 3, 0);
    dataset sup = {0};
    data_source src;
    class_index ci;
    assert_int_equal(data_source_load(&src, f->source, &err), 0);
    assert_int_equal(class_index_build(&ci, &src.train, &err), 0);
    assert_int_equal(task_draw(&src.train, &ci, &t, 2, &r, &sup, &err), 0);
    class_index_free(&ci);
    data_source_free(&src);
    assert_int_equal(sup.dim, 784); /* raw pixels: the generator applies the backbone */
    gen_request req = {.support = &sup, .embeddings = 0, .candidates = 4, .steps = 10,
                       .sampler = GEN_SAMPLER_DDIM, .guidance = 1.0f, .seed = 1};
    gen_result res;
    if (generator_generate(g, ws, &req, &res, &err))
        fail_msg("generator_generate: %s", err.msg);
    unsigned char *bytes;
    size_t len;
    assert_int_equal(generator_checkpoint_bytes(g, &req, &res, 0, &bytes, &len, &err), 0);
    st_file sf;
    assert_int_equal(st_parse(&sf, bytes, len, &err), 0);
    assert_non_null(st_find(&sf, "0.0.0.weight"));
    assert_non_null(st_find(&sf, "0.3.1.running_mean"));
    assert_non_null(st_find(&sf, "1.weight"));
    assert_non_null(strstr(st_meta(&sf, "architecture"), "Flatten()), Linear(8, 5))"));
    st_free(&sf);
    free(bytes);
    gen_result_free(&res);
    dataset_free(&sup);
    gen_workspace_free(ws);
    generator_free(g);
}

static void test_pipeline(void **state)
{
    fx *f = *state;
    d2_error err = {0};
    zoo z, z2;
    build_zoo(f, &z);
    if (zoo_load(&z2, f->zoo, 1, &err))
        fail_msg("zoo_load: %s", err.msg);
    assert_string_equal(z2.fingerprint, z.fingerprint);
    assert_int_equal(z2.spec.has_cnn, 1);
    zoo_free(&z2);
    backend_t *be = NULL;
    assert_int_equal(backend_cpu_create(&be, 1, &err), 0);
    gen_train_cfg c = tiny_cfg();
    gen_train_report rep;
    if (generator_train(&z, &c, f->gen, be, &rep, &err))
        fail_msg("generator_train: %s", err.msg);
    generate_network(f, be);
    /* another backbone at the same path */
    write_backbone(f->backbone, 2);
    generator *g = NULL;
    assert_int_not_equal(generator_load(&g, f->gen, be, &err), 0);
    assert_non_null(strstr(err.msg, "is not the backbone it was trained with"));
    assert_int_not_equal(zoo_load(&z2, f->zoo, 0, &err), 0);
    assert_non_null(strstr(err.msg, "fingerprint"));
    write_backbone(f->backbone, 1);
    backend_destroy(be);
    zoo_free(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
