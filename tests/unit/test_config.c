/* test_config.c - server/config: defaults, config file, flags overriding it,
 * generator naming, listen addresses, and the errors for bad values. */
#include "testutil.h"

#include "config.h"
#include "log.h"

static void test_defaults(void **state)
{
    (void)state;
    config c;
    config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_int_equal(c.workers, 1);
    assert_int_equal(c.max_queue, 1024);
    assert_int_equal(c.store_busy_ms, 1000);
    assert_true(c.body_limit == (size_t)64 << 20);
    assert_int_equal(c.limits.max_samples, 10000);
    assert_int_equal(c.long_poll_max, 60);
    assert_int_equal(c.events_progress_ms, 500);
    d2_error err;
    /* no generator: refused */
    assert_int_not_equal(config_validate(&c, &err), 0);
    assert_non_null(strstr(err.msg, "generator"));
}

static void test_args(void **state)
{
    (void)state;
    config c;
    config_defaults(&c);
    char *argv[] = {"d2nwgd", "--generator", "a.safetensors", "--generator", "fast=b.safetensors",
                    "--generator", "/x/y/other.v2.safetensors", "--listen=0.0.0.0:9000",
                    "--workers", "3", "--max-queue", "17", "--body-limit", "2M",
                    "--max_samples", "50", "--rate-limit", "2.5", "--log-level", "warn",
                    "--store-busy-ms", "250", "--events-progress-ms", "40", NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    int help = -1;
    d2_error err;
    assert_int_equal(config_parse_args(&c, argc, argv, &help, &err), 0);
    assert_int_equal(help, 0);
    assert_int_equal(c.ngenerators, 3);
    assert_string_equal(c.generators[0].name, "default");
    assert_string_equal(c.generators[0].path, "a.safetensors");
    assert_string_equal(c.generators[1].name, "fast");
    assert_string_equal(c.generators[1].path, "b.safetensors");
    assert_string_equal(c.generators[2].name, "other");
    for (int i = 0; i < 3; i++)
        assert_int_equal(c.generators[i].pending, 0);
    assert_string_equal(c.listen, "0.0.0.0:9000");
    assert_int_equal(c.workers, 3);
    assert_int_equal(c.max_queue, 17);
    assert_int_equal(c.store_busy_ms, 250);
    assert_int_equal(c.events_progress_ms, 40);
    assert_true(c.body_limit == 2u << 20);
    assert_int_equal(c.limits.max_samples, 50);
    TU_ASSERT_NEAR(c.rate_limit, 2.5, 0);
    assert_int_equal(c.log_level, LOG_WARN);
    assert_int_equal(config_validate(&c, &err), 0);
}

static void expect_bad(const char *flag, const char *value, const char *needle)
{
    config c;
    config_defaults(&c);
    char f[64];
    snprintf(f, sizeof f, "%s", flag);
    char v[64];
    snprintf(v, sizeof v, "%s", value);
    char *argv[] = {"d2nwgd", f, v, NULL};
    int help;
    d2_error err;
    d2_error_clear(&err);
    if (config_parse_args(&c, 3, argv, &help, &err) == 0)
        fail_msg("%s %s accepted", flag, value);
    if (!strstr(err.msg, needle))
        fail_msg("%s %s: message '%s' lacks '%s'", flag, value, err.msg, needle);
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_bad("--workers", "0", "workers");
    expect_bad("--workers", "two", "workers");
    expect_bad("--max-queue", "-1", "max_queue");
    expect_bad("--store-busy-ms", "-5", "store_busy_ms");
    expect_bad("--events-progress-ms", "5", "events_progress_ms");
    expect_bad("--body-limit", "lots", "body_limit");
    expect_bad("--log-level", "loud", "log_level");
    expect_bad("--colour", "red", "colour");
    expect_bad("--generator", "bad name=x.safetensors", "name");
    expect_bad("--generator", "x=", "empty path");
    config c;
    config_defaults(&c);
    char *argv[] = {"d2nwgd", "positional", NULL};
    int help;
    d2_error err;
    assert_int_not_equal(config_parse_args(&c, 2, argv, &help, &err), 0);
    char *argv2[] = {"d2nwgd", "--workers", NULL};
    assert_int_not_equal(config_parse_args(&c, 2, argv2, &help, &err), 0);
    assert_non_null(strstr(err.msg, "needs a value"));
    char *argv3[] = {"d2nwgd", "--generator", "a", "--generator", "default=b", NULL};
    config_defaults(&c);
    assert_int_equal(config_parse_args(&c, 5, argv3, &help, &err), 0);
    assert_int_not_equal(config_validate(&c, &err), 0);
    assert_non_null(strstr(err.msg, "twice"));
    char *argv4[] = {"d2nwgd", "--help", NULL};
    assert_int_equal(config_parse_args(&c, 2, argv4, &help, &err), 0);
    assert_int_equal(help, 1);
}

static void test_file_and_override(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("config");
    char path[512];
    snprintf(path, sizeof path, "%s/d2nwgd.conf", dir);
    const char text[] = "# comment\n"
                        "listen = 127.0.0.1:7000\n"
                        "  workers=2  # two threads\n"
                        "\n"
                        "generator = file.safetensors\n"
                        "generator = g2=two.safetensors\n"
                        "max-queue = 99\n";
    tu_write_bytes(path, text, sizeof text - 1);
    config c;
    config_defaults(&c);
    char *argv[] = {"d2nwgd", "--workers", "4", "--config", path, NULL};
    int help;
    d2_error err;
    assert_int_equal(config_parse_args(&c, 5, argv, &help, &err), 0);
    assert_string_equal(c.listen, "127.0.0.1:7000");
    assert_int_equal(c.workers, 4); /* the flag wins, wherever --config is */
    assert_int_equal(c.max_queue, 99);
    assert_int_equal(c.ngenerators, 2);
    assert_string_equal(c.generators[0].name, "default");
    assert_string_equal(c.generators[1].name, "g2");
    /* generators on the command line replace the file's */
    config_defaults(&c);
    char *argv2[] = {"d2nwgd", "--config", path, "--generator", "cli.safetensors", NULL};
    assert_int_equal(config_parse_args(&c, 5, argv2, &help, &err), 0);
    assert_int_equal(c.ngenerators, 1);
    assert_string_equal(c.generators[0].path, "cli.safetensors");
    /* --generator-pending joins the same list (file or flags; one replaces the
     * file's list), named the same way, marked pending */
    const char pend[] = "generator = file.safetensors\n"
                        "generator_pending = late=late.safetensors\n";
    tu_write_bytes(path, pend, sizeof pend - 1);
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, path, &err), 0);
    assert_int_equal(c.ngenerators, 2);
    assert_int_equal(c.generators[0].pending, 0);
    assert_string_equal(c.generators[1].name, "late");
    assert_int_equal(c.generators[1].pending, 1);
    config_defaults(&c);
    char *argv4[] = {"d2nwgd", "--config", path, "--generator-pending", "later.safetensors",
                     "--generator", "g=now.safetensors", NULL};
    assert_int_equal(config_parse_args(&c, 7, argv4, &help, &err), 0);
    assert_int_equal(c.ngenerators, 2);
    assert_string_equal(c.generators[0].name, "default");
    assert_string_equal(c.generators[0].path, "later.safetensors");
    assert_int_equal(c.generators[0].pending, 1);
    assert_string_equal(c.generators[1].name, "g");
    assert_int_equal(c.generators[1].pending, 0);
    assert_int_equal(config_validate(&c, &err), 0);
    /* a bad line is reported with its number */
    const char bad[] = "listen = x:1\nworkers = lots\n";
    tu_write_bytes(path, bad, sizeof bad - 1);
    config_defaults(&c);
    assert_int_not_equal(config_load_file(&c, path, &err), 0);
    assert_non_null(strstr(err.msg, ":2"));
    const char bad2[] = "just words\n";
    tu_write_bytes(path, bad2, sizeof bad2 - 1);
    assert_int_not_equal(config_load_file(&c, path, &err), 0);
    assert_non_null(strstr(err.msg, "key = value"));
    snprintf(path, sizeof path, "%s/missing.conf", dir);
    assert_int_equal(config_load_file(&c, path, &err), D2_EIO);
    tu_rmrf(dir);
    free(dir);
}

/* The example shipped in deploy/ parses and says what it documents. */
static void test_example_file(void **state)
{
    (void)state;
    config c;
    config_defaults(&c);
    d2_error err;
    if (config_load_file(&c, "deploy/d2nwgd.conf.example", &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c.ngenerators, 1);
    assert_string_equal(c.generators[0].name, "default");
    assert_string_equal(c.generators[0].path, "/var/lib/d2nwgd/generators/default.safetensors");
    assert_string_equal(c.data_dir, "/var/lib/d2nwgd");
    assert_int_equal(c.max_queue, 1024);
    assert_true(c.body_limit == (size_t)64 << 20);
    assert_int_equal(c.shutdown_grace, 20);
    assert_int_equal(c.events_progress_ms, 500);
    assert_int_equal(config_validate(&c, &err), 0);
}

/* --store: SQLite by default under --data; a PostgreSQL URL or DSN that
 * carries a password is refused naming the flag to use; the password file's
 * first line is the password, and only goes with PostgreSQL. */
static void test_store(void **state)
{
    (void)state;
    config c;
    config_defaults(&c);
    d2_error err;
    char target[CONFIG_PATH_LEN + 32], pw[256];
    assert_int_equal(config_set(&c, "generator", "/g.safetensors", &err), 0);
    assert_int_equal(config_set(&c, "data", "/srv/d", &err), 0);
    assert_int_equal(config_validate(&c, &err), 0);
    assert_int_equal(config_store_target(&c, target, sizeof target, pw, sizeof pw, &err), 0);
    assert_string_equal(target, "/srv/d/d2nwgd.sqlite");
    assert_string_equal(pw, "");
    const char *refused[] = {"postgres://app:s3cret@db:5432/d2nwg",
                             "host=db dbname=d2nwg password=s3cret"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(config_set(&c, "store", refused[i], &err), 0);
        assert_int_not_equal(config_validate(&c, &err), 0);
        assert_non_null(strstr(err.msg, "--store-password-file"));
        assert_null(strstr(err.msg, "s3cret"));
    }
    assert_int_equal(config_set(&c, "store", "postgresql://app@db/d2nwg?sslmode=disable", &err), 0);
    assert_int_equal(config_validate(&c, &err), 0);
    char *dir = tu_tmpdir("config-store");
    char file[512];
    snprintf(file, sizeof file, "%s/pw", dir);
    tu_write_bytes(file, "s3cret\n", 7);
    assert_int_equal(config_set(&c, "store-password-file", file, &err), 0);
    assert_int_equal(config_validate(&c, &err), 0);
    assert_int_equal(config_store_target(&c, target, sizeof target, pw, sizeof pw, &err), 0);
    assert_string_equal(target, "postgresql://app@db/d2nwg?sslmode=disable");
    assert_string_equal(pw, "s3cret");
    /* a password file with an SQLite store is a mistake worth saying */
    assert_int_equal(config_set(&c, "store", "/srv/d/other.sqlite", &err), 0);
    assert_int_not_equal(config_validate(&c, &err), 0);
    assert_non_null(strstr(err.msg, "store_password_file"));
    tu_rmrf(dir);
    free(dir);
}

static void test_listen(void **state)
{
    (void)state;
    char host[256];
    int port;
    d2_error err;
    assert_int_equal(config_parse_listen("127.0.0.1:8080", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(config_parse_listen("[::1]:0", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(config_parse_listen(":9", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "");
    assert_int_equal(port, 9);
    assert_int_equal(config_parse_listen("8081", host, sizeof host, &port, &err), 0);
    assert_int_equal(port, 8081);
    assert_int_not_equal(config_parse_listen("host:99999", host, sizeof host, &port, &err), 0);
    assert_int_not_equal(config_parse_listen("[::1", host, sizeof host, &port, &err), 0);
    assert_int_not_equal(config_parse_listen("host:http", host, sizeof host, &port, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_file_and_override),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
