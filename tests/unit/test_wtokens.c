/* test_wtokens.c - neuron tokens: layout, one-hot, and lossless round trips. */
#include "testutil.h"

#include "wtokens.h"

static void test_linear_head_tokens(void **state)
{
    (void)state;
    target_spec s;
    d2_error err;
    assert_int_equal(target_spec_parse(&s, "pca:16 | linear 16->5", &err), 0);
    wtok w;
    assert_int_equal(wtok_init(&w, &s, &err), 0);
    assert_int_equal(w.n_tok, 5);
    assert_int_equal(w.len, 17);
    assert_int_equal(w.n_layers, 1);
    float theta[85], tok[5 * 18], back[85], tgt[5 * 17];
    for (int i = 0; i < 85; i++)
        theta[i] = (float)i;
    wtok_split(&w, theta, 1, tok);
    // token 2 = row 2 of W (theta[32..47]) then bias 2 (theta[80 + 2]) then one-hot 1
    for (int k = 0; k < 16; k++)
        assert_true(tok[2 * 18 + k] == (float)(32 + k));
    assert_true(tok[2 * 18 + 16] == 82.0f);
    assert_true(tok[2 * 18 + 17] == 1.0f);
    wtok_targets(&w, theta, 1, tgt);
    for (int t = 0; t < 5; t++)
        assert_memory_equal(tgt + t * 17, tok + t * 18, 17 * sizeof(float));
    wtok_merge(&w, tgt, 1, back);
    assert_memory_equal(back, theta, sizeof theta);
    wtok_free(&w);
}

static void test_mlp_tokens_padded(void **state)
{
    (void)state;
    target_spec s;
    d2_error err;
    assert_int_equal(target_spec_parse(&s, "mlp 8-4-3 relu", &err), 0);
    wtok w;
    assert_int_equal(wtok_init(&w, &s, &err), 0);
    assert_int_equal(w.n_tok, 7); // 4 hidden neurons + 3 outputs
    assert_int_equal(w.len, 9);   // longest: 8 inputs + bias
    assert_int_equal(w.n_layers, 2);
    const int P = (int)s.numel, B = 2;
    float theta[2 * 51], tok[2 * 7 * 11], tgt[2 * 7 * 9], back[2 * 51];
    assert_int_equal(P, 51);
    for (int i = 0; i < B * P; i++)
        theta[i] = 1.0f + (float)i;
    wtok_split(&w, theta, B, tok);
    // second layer tokens (4 inputs + bias) are zero-padded and flagged layer 1
    for (int b = 0; b < B; b++)
        for (int t = 0; t < 7; t++) {
            const float *r = tok + ((size_t)b * 7 + t) * 11;
            int layer = t < 4 ? 0 : 1;
            assert_true(r[9 + layer] == 1.0f);
            assert_true(r[9 + 1 - layer] == 0.0f);
            if (layer == 1)
                for (int k = 5; k < 9; k++)
                    assert_true(r[k] == 0.0f);
        }
    wtok_targets(&w, theta, B, tgt);
    wtok_merge(&w, tgt, B, back);
    assert_memory_equal(back, theta, sizeof theta);
    float z[2 * 7 * 3], rows[2 * 7 * 5];
    for (int i = 0; i < 42; i++)
        z[i] = (float)i;
    wtok_latent_rows(&w, z, B, 3, rows);
    assert_true(rows[6 * 5 + 0] == 18.0f); // token 6 of head 0 holds z[18..20]
    assert_true(rows[6 * 5 + 4] == 1.0f);  // layer 1
    assert_true(rows[7 * 5 + 0] == 21.0f); // head 1, token 0
    assert_true(rows[7 * 5 + 3] == 1.0f);  // layer 0
    wtok_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_head_tokens),
        cmocka_unit_test(test_mlp_tokens_padded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
