/* test_lm_torch.c - the PyTorch round trip of a language model and an adapter: a small
 * model with random weights (every tensor perturbed) and a LoRA adapter on q, v and the
 * MLP are written with lm_save / lm_lora_save; the README's score_words.py block, run as
 * written with torch only, merges the adapter and scores words (ASCII, Latin-1 letters,
 * Cyrillic; up to the context's limit): every word's nats must equal d2nwg's within 1e-5
 * relative (tight enough to tell tanh from exact GELU, 7e-5 apart here), with the adapter
 * and without. Skipped, by name, where /usr/bin/python3 cannot import torch. */
#include "testutil.h"
#include "tu_readme.h"

#include <math.h>

#include "lm_io.h"
#include "lm_lora.h"
#include "rng.h"

#define PY "/usr/bin/python3"

static const char *const WORDS[] = {"a", "cat", "bl\xc3\xa5" "b\xc3\xa6r", "\xd0\xba\xd0\xbe\xd1\x82",
                                    "Zyzzyva's", "abcdefghijklmn"}; /* the last: 14 + 1 = T */
#define NW ((int)(sizeof WORDS / sizeof WORDS[0]))

typedef struct tmodel {
    backend_t *be;
    paramset ps, lora;
    lm_model m;
    lm_runner run;
} tmodel;

static void tmodel_open(tmodel *t)
{
    d2_error e = {0};
    lm_config c = {.layers = 2, .width = 16, .heads = 4, .context = 15};
    lm_lora_cfg lc = {.rank = 3, .alpha = 5.0f, .mlp = 1};
    assert_int_equal(backend_cpu_create(&t->be, 1, &e), 0);
    paramset_init(&t->ps);
    paramset_init(&t->lora);
    assert_int_equal(lm_init(&t->m, &t->ps, &c, &e), 0);
    assert_int_equal(paramset_alloc(&t->ps, t->be, 21, &e), 0);
    for (int i = 0; i < t->ps.count; i++) {
        const param_entry *pe = &t->ps.entries[i];
        for (size_t j = 0; j < pe->numel; j++)
            t->ps.w[pe->offset + j] += 0.8f * rng_normal(&(rng){.seed = 5, .pos = pe->offset + j});
    }
    assert_int_equal(lm_attach_lora(&t->m, &t->lora, &lc, &e), 0);
    assert_int_equal(paramset_alloc(&t->lora, t->be, 22, &e), 0);
    rng_fill_normal(t->lora.w, t->lora.total, 6, 0, 0.0f, 0.2f);
    assert_int_equal(lm_runner_open(&t->run, t->be, &c, 2, lc.rank, &e), 0);
}

static void tmodel_close(tmodel *t)
{
    lm_runner_close(&t->run);
    paramset_free(&t->lora);
    paramset_free(&t->ps);
    backend_destroy(t->be);
}

/* d2nwg's nats of each word alone */
static void d2_nats(tmodel *t, double *out)
{
    d2_error e = {0};
    for (int i = 0; i < NW; i++) {
        int count;
        lm_batch_clear(&t->run.b);
        assert_int_equal(lm_batch_add(&t->run.b, (const unsigned char *)WORDS[i],
                                      strlen(WORDS[i])), 1);
        assert_int_equal(lm_run_batch(t->be, &t->m, &t->run.ar, &t->run.b, t->run.logits_h, NULL,
                                      0, &out[i], &count, &e), 0);
        assert_int_equal(count, (int)strlen(WORDS[i]) + 1);
    }
}

/* run the README block; its per-word nats into out */
static void torch_nats(const char *dir, const char *adapter, double *out)
{
    char cmd[2048], text[8192];
    snprintf(cmd, sizeof cmd, PY " %s/score.py %s/base.safetensors %s %s/words.txt", dir, dir,
             adapter, dir);
    int rc = tu_capture(text, sizeof text, cmd);
    if (rc != 0)
        fail_msg("score.py failed (%d): %s", rc, text);
    char *p = text;
    for (int i = 0; i < NW; i++) {
        char *end;
        out[i] = strtod(p, &end);
        assert_true(end != p);
        p = end;
    }
    assert_non_null(strstr(p, "bits_per_byte"));
}

static void expect_close(const double *a, const double *b)
{
    for (int i = 0; i < NW; i++)
        if (!(fabs(a[i] - b[i]) <= 1e-5 * fabs(a[i])))
            fail_msg("word %d: d2nwg %.9g nats, torch %.9g", i, a[i], b[i]);
}

static void test_torch_scores(void **state)
{
    (void)state;
    if (system(PY " -c 'import torch' >/dev/null 2>&1") != 0) {
        print_message("test_torch_scores: SKIPPED (" PY " cannot import torch; "
                      "apt-get install python3-torch)\n");
        skip();
    }
    char *dir = tu_tmpdir("lmtorch"), path[600], sha[65], arg[700];
    static const char *const need[] = {"score_words.py", "lora_A", NULL};
    char *block = tu_readme_python_block(need, NULL, "score_words.py");
    snprintf(path, sizeof path, "%s/score.py", dir);
    tu_write_bytes(path, block, strlen(block));
    free(block);
    char words[512] = "";
    for (int i = 0; i < NW; i++)
        snprintf(words + strlen(words), sizeof words - strlen(words), "%s\n", WORDS[i]);
    snprintf(path, sizeof path, "%s/words.txt", dir);
    tu_write_bytes(path, words, strlen(words));
    tmodel t;
    tmodel_open(&t);
    d2_error e = {0};
    snprintf(path, sizeof path, "%s/base.safetensors", dir);
    assert_int_equal(lm_save(&t.m, path, NULL, 0, &e), 0);
    assert_int_equal(lm_file_sha256(path, sha, &e), 0);
    snprintf(arg, sizeof arg, "%s/adapter.safetensors", dir);
    lm_lora_cfg lc = {.rank = 3, .alpha = 5.0f, .mlp = 1};
    assert_int_equal(lm_lora_save(&t.m, &lc, sha, arg, NULL, 0, &e), 0);
    double want[NW], got[NW];
    d2_nats(&t, want);
    torch_nats(dir, arg, got);
    expect_close(want, got);
    t.m.lora = NULL; /* the base alone */
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 4; k++)
            lm_lora_target(&t.m, l, k, 1, NULL, 0)->lora = 0;
    d2_nats(&t, want);
    torch_nats(dir, "-", got);
    expect_close(want, got);
    tmodel_close(&t);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_torch_scores)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
