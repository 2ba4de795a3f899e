/* test_auth.c - server/auth: tokens file, 401/403 decisions, token buckets. */
#include "testutil.h"

#include "auth.h"

static void write_tokens(const char *path, const char *text)
{
    tu_write_bytes(path, text, strlen(text));
}

static void test_tokens(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("auth");
    char path[512];
    snprintf(path, sizeof path, "%s/tokens", dir);
    write_tokens(path, "# pipelines\n"
                       "rw-token-1234567 write ci\n"
                       "ro-token-1234567 read   # dashboards\n"
                       "\n"
                       "mx-token-1234567 metrics prometheus\n");
    auth a;
    auth_init(&a, 0, 0);
    d2_error err;
    assert_int_equal(auth_load(&a, path, &err), 0);
    assert_int_equal(a.ntokens, 3);
    const char *who = NULL;
    assert_int_equal(auth_check(&a, "Bearer rw-token-1234567", AUTH_SCOPE_WRITE, &who), 0);
    assert_string_equal(who, "ci");
    assert_int_equal(auth_check(&a, "bearer  rw-token-1234567 ", AUTH_SCOPE_READ, &who), 0);
    assert_int_equal(auth_check(&a, "Bearer ro-token-1234567", AUTH_SCOPE_READ, &who), 0);
    assert_string_equal(who, "token3");
    assert_int_equal(auth_check(&a, "Bearer ro-token-1234567", AUTH_SCOPE_WRITE, &who), 403);
    assert_int_equal(auth_check(&a, NULL, AUTH_SCOPE_READ, &who), 401);
    assert_int_equal(auth_check(&a, "Bearer ", AUTH_SCOPE_READ, &who), 401);
    assert_int_equal(auth_check(&a, "Basic cm8tdG9rZW4=", AUTH_SCOPE_READ, &who), 401);
    assert_int_equal(auth_check(&a, "Bearer ro-token-123456", AUTH_SCOPE_READ, &who), 401);
    assert_int_equal(auth_check(&a, "Bearer ro-token-12345678", AUTH_SCOPE_READ, &who), 401);
    /* a metrics token scrapes /metrics and nothing else; read and write tokens also scrape */
    assert_int_equal(auth_check(&a, "Bearer mx-token-1234567", AUTH_SCOPE_METRICS, &who), 0);
    assert_string_equal(who, "prometheus");
    assert_int_equal(auth_check(&a, "Bearer mx-token-1234567", AUTH_SCOPE_READ, &who), 403);
    assert_int_equal(auth_check(&a, "Bearer mx-token-1234567", AUTH_SCOPE_WRITE, &who), 403);
    assert_int_equal(auth_check(&a, "Bearer ro-token-1234567", AUTH_SCOPE_METRICS, &who), 0);
    assert_int_equal(auth_check(&a, "Bearer rw-token-1234567", AUTH_SCOPE_METRICS, &who), 0);
    assert_string_equal(auth_scope_name(AUTH_SCOPE_METRICS), "metrics");
    /* open routes need nothing */
    assert_int_equal(auth_check(&a, NULL, AUTH_SCOPE_NONE, &who), 0);
    assert_string_equal(who, "anonymous");
    auth_free(&a);

    /* without tokens everything is allowed */
    auth_init(&a, 0, 0);
    assert_int_equal(auth_check(&a, NULL, AUTH_SCOPE_WRITE, &who), 0);
    auth_free(&a);

    const char *bad[] = {"short write\n", "long-enough-token admin\n", "only-a-token-here\n",
                         "tok-1234567890 read a b\n", "dup-token-123 read\ndup-token-123 write\n",
                         "# nothing\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_tokens(path, bad[i]);
        auth_init(&a, 0, 0);
        d2_error_clear(&err);
        if (auth_load(&a, path, &err) == 0)
            fail_msg("accepted tokens file: %s", bad[i]);
        assert_non_null(strstr(err.msg, path));
        auth_free(&a);
    }
    tu_rmrf(dir);
    free(dir);
}

static void test_rate(void **state)
{
    (void)state;
    auth a;
    auth_init(&a, 2.0, 3.0); /* 2/s, burst 3 */
    double retry;
    double t = 100.0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(auth_rate_take(&a, "ci", t, &retry), 1);
    assert_int_equal(auth_rate_take(&a, "ci", t, &retry), 0);
    TU_ASSERT_NEAR(retry, 0.5, 1e-9);
    /* another principal has its own bucket */
    assert_int_equal(auth_rate_take(&a, "dash", t, &retry), 1);
    /* half a second later one token is back */
    assert_int_equal(auth_rate_take(&a, "ci", t + 0.5, &retry), 1);
    assert_int_equal(auth_rate_take(&a, "ci", t + 0.5, &retry), 0);
    /* long idle refills to the burst, not beyond */
    for (int i = 0; i < 3; i++)
        assert_int_equal(auth_rate_take(&a, "ci", t + 100.0, &retry), 1);
    assert_int_equal(auth_rate_take(&a, "ci", t + 100.0, &retry), 0);
    /* many principals: the table resets instead of growing without bound */
    char key[32];
    for (int i = 0; i < AUTH_BUCKET_MAX + 10; i++) {
        snprintf(key, sizeof key, "client-%d", i);
        assert_int_equal(auth_rate_take(&a, key, t, &retry), 1);
    }
    assert_true(a.nbuckets <= AUTH_BUCKET_MAX);
    auth_free(&a);
    /* rate 0: unlimited */
    auth_init(&a, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(auth_rate_take(&a, "x", t, &retry), 1);
    auth_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
