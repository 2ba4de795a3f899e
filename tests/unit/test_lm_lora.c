/* test_lm_lora.c - `lm lora`: an adapter trained with the base frozen on a held-out
 * language lowers bits per byte on that language's test split; the file has PEFT's keys
 * and adapter_config fields with the base's sha256; evaluating base + adapter file gives
 * the figure the trainer printed; an adapter is refused for another base. */
#include "testutil.h"

#include <math.h>

#include "lm_lora.h"
#include "lm_train.h"
#include "safetensors.h"

typedef struct fx {
    char *dir;
    char base[512], other[512], adapter[512];
    backend_t *be;
} fx;

static void train_base(fx *f, const char *out, uint64_t seed)
{
    lm_train_cfg c = lm_train_defaults();
    c.source = "words:irish,gaelic";
    c.model = (lm_config){.layers = 2, .width = 32, .heads = 2, .context = 24};
    c.steps = 100;
    c.warmup = 10;
    c.seed = seed;
    c.progress = 0;
    c.eval_words = 50;
    lm_train_report r;
    d2_error e = {0};
    if (lm_train(&c, out, f->be, &r, &e))
        fail_msg("lm_train: %s", e.msg);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    d2_error e;
    if (!f || backend_cpu_create(&f->be, 1, &e))
        return -1;
    f->dir = tu_tmpdir("lmlora");
    snprintf(f->base, sizeof f->base, "%s/base.safetensors", f->dir);
    snprintf(f->other, sizeof f->other, "%s/other.safetensors", f->dir);
    snprintf(f->adapter, sizeof f->adapter, "%s/manx.safetensors", f->dir);
    train_base(f, f->base, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    backend_destroy(f->be);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void test_adapter_lowers_bits(void **state)
{
    fx *f = *state;
    lm_lora_train_cfg c = lm_lora_train_defaults();
    c.model = f->base;
    c.source = "words:manx";
    c.steps = 100;
    c.progress = 0;
    c.eval_words = 500;
    lm_lora_report r;
    d2_error e = {0};
    if (lm_lora_train(&c, f->adapter, f->be, &r, &e))
        fail_msg("lm_lora_train: %s", e.msg);
    assert_int_equal(r.modules, 4); /* q and v of 2 blocks */
    assert_int_equal(r.params, 4 * (4 * 32 + 32 * 4));
    assert_int_equal(r.test_words, 500);
    assert_true(r.base_bits > 3.0 && r.base_bits < 8.0);
    if (!(r.lora_bits < r.base_bits - 0.05))
        fail_msg("adapter %.4f bits/byte, base %.4f", r.lora_bits, r.base_bits);
    /* base + adapter file: the same figure */
    lm_eval_result all;
    int n;
    assert_int_equal(lm_eval_file(f->base, f->adapter, "words:manx", WORDS_TEST, 500, 64, f->be,
                                  &all, NULL, NULL, &n, &e), 0);
    assert_true(fabs(lm_bits_per_byte(&all) - r.lora_bits) < 1e-9);
    /* PEFT layout */
    st_file sf;
    char sha[65];
    assert_int_equal(st_load(&sf, f->adapter, &e), 0);
    assert_int_equal(lm_file_sha256(f->base, sha, &e), 0);
    assert_string_equal(st_meta(&sf, "base_model_name_or_path"), sha);
    assert_string_equal(st_meta(&sf, "r"), "4");
    assert_string_equal(st_meta(&sf, "lora_alpha"), "8");
    assert_string_equal(st_meta(&sf, "target_modules"), "[\"q_proj\", \"v_proj\"]");
    assert_string_equal(st_meta(&sf, "peft_type"), "LORA");
    const st_tensor *a = st_find(&sf, "base_model.model.transformer.h.1.attn.v_proj.lora_A.weight");
    const st_tensor *b = st_find(&sf, "base_model.model.transformer.h.1.attn.v_proj.lora_B.weight");
    assert_true(a && b);
    assert_int_equal(a->shape[0], 4);
    assert_int_equal(a->shape[1], 32);
    assert_int_equal(b->shape[0], 32);
    assert_int_equal(b->shape[1], 4);
    assert_int_equal(sf.count, 8);
    st_free(&sf);
}

static void test_adapter_refused_for_other_base(void **state)
{
    fx *f = *state;
    train_base(f, f->other, 2);
    lm_eval_result all;
    int n;
    d2_error e = {0};
    assert_int_equal(lm_eval_file(f->other, f->adapter, "words:manx", WORDS_TEST, 10, 8, f->be,
                                  &all, NULL, NULL, &n, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "was trained on base"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adapter_lowers_bits),
        cmocka_unit_test(test_adapter_refused_for_other_base),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
