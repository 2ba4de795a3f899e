/* test_api_grafana.c - deploy/grafana/ against a real d2nwgd: the alert
 * rules pass `promtool check rules` and their unit tests (`promtool test
 * rules`: each alert fires when it should, and not otherwise), and every
 * metric the Grafana board and the rules name is one the daemon's /metrics
 * exports (a renamed family would leave a panel empty or an alert silent). */
#include <ctype.h>

#include "apitest.h"

#define BOARD "deploy/grafana/d2nwgd-dashboard.json"
#define RULES "deploy/grafana/d2nwgd-alerts.yaml"
#define RULE_TESTS "deploy/grafana/d2nwgd-alerts.test.yaml"

static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_promtool_rules(void **state)
{
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        fail_msg("promtool is not installed (Debian package prometheus; make deps installs it)");
    char out[8192];
    if (run("promtool check rules " RULES " 2>&1", out, sizeof out) != 0)
        fail_msg("promtool check rules %s:\n%s", RULES, out);
    assert_non_null(strstr(out, "SUCCESS: 11 rules found"));
    if (run("cd deploy/grafana && promtool test rules d2nwgd-alerts.test.yaml 2>&1", out,
            sizeof out) != 0)
        fail_msg("promtool test rules %s:\n%s", RULE_TESTS, out);
}

/* The family a series name belongs to: a histogram's _bucket/_sum/_count. */
static void check_name(const char *metrics, const char *name, const char *where)
{
    char want[160];
    snprintf(want, sizeof want, "# TYPE %s ", name);
    if (strstr(metrics, want))
        return;
    const char *sfx[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), k = strlen(sfx[i]);
        if (n > k && !strcmp(name + n - k, sfx[i])) {
            snprintf(want, sizeof want, "# TYPE %.*s histogram", (int)(n - k), name);
            if (strstr(metrics, want))
                return;
        }
    }
    fail_msg("%s names %s, which d2nwgd's /metrics does not export", where, name);
}

/* Every d2nwgd_* and process_* name in text; returns how many. */
static int check_names(const char *metrics, const char *text, const char *where)
{
    int count = 0;
    for (const char *p = text; *p; p++) {
        if (strncmp(p, "d2nwgd_", 7) && strncmp(p, "process_", 8))
            continue;
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
            continue;
        char name[128];
        size_t n = 0;
        while ((isalnum((unsigned char)p[n]) || p[n] == '_') && n < sizeof name - 1)
            n++;
        memcpy(name, p, n);
        name[n] = '\0';
        check_name(metrics, name, where);
        count++;
        p += n - 1;
    }
    return count;
}

static void test_names_exist(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("api-grafana");
    at_daemon d;
    at_start(&d, dir, "main", NULL);
    at_wait_ready(&d);
    at_resp r = at_get(&d, "/metrics");
    assert_int_equal(r.status, 200);
    json_error_t je;
    json_t *board = json_load_file(BOARD, 0, &je);
    if (!board)
        fail_msg("%s: %s (line %d)", BOARD, je.text, je.line);
    int exprs = 0, names = 0;
    size_t i, k;
    json_t *panel, *target;
    json_array_foreach(json_object_get(board, "panels"), i, panel) {
        assert_non_null(json_string_value(json_object_get(panel, "title")));
        json_array_foreach(json_object_get(panel, "targets"), k, target) {
            const char *e = json_string_value(json_object_get(target, "expr"));
            assert_non_null(e);
            names += check_names(r.body, e, BOARD);
            exprs++;
        }
    }
    if (exprs < 20 || names < exprs)
        fail_msg("%d queries naming %d metrics in %s", exprs, names, BOARD);
    FILE *f = fopen(RULES, "rb");
    assert_non_null(f);
    char rules[16384];
    size_t n = fread(rules, 1, sizeof rules - 1, f);
    rules[n] = '\0';
    fclose(f);
    assert_true(check_names(r.body, rules, RULES) >= 10);
    printf("# %d board queries and the alert rules name only exported metrics\n", exprs);
    json_decref(board);
    at_resp_free(&r);
    assert_int_equal(at_stop(&d, SIGTERM, 30), 0);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promtool_rules),
        cmocka_unit_test(test_names_exist),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
