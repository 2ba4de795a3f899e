/* test_cli_opts.c - the command line's option table parser (client/cli_opts.h):
 * every value type with its range, defaults (table, environment, kept,
 * unset), "--name value" and "--name=value", the usage errors and their
 * messages, positional words, the generated --help, the global options
 * before and after the command; and `d2nwg <command> --help` of every
 * command, which must exit 0 and list the command's options. */
#include "testutil.h"

#include <fcntl.h>
#include <math.h>
#include <sys/wait.h>

#include "cli_opts.h"
#include "commands.h"

typedef struct demo {
    const char *name, *file, *word;
    int count, level, verbose, kept;
    uint64_t seed, big;
    double rate, wait;
    cli_int_list shots;
} demo;

static const char *const LEVELS[] = {"low", "mid", "high", NULL};

static const cli_option DEMO_OPTS[] = {
    {.name = "--name", .type = CLI_STRING, .off = offsetof(demo, name), .help = "a name",
     .def = "anon", .env = "D2NWG_TEST_NAME"},
    {.name = "--file", .type = CLI_PATH, .off = offsetof(demo, file), .metavar = "FILE",
     .help = "a file", .required = 1},
    {.name = "--count", .alias = "-c", .type = CLI_INT, .off = offsetof(demo, count),
     .metavar = "N", .help = "how many", .def = "7", .lo = -3, .hi = 40},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(demo, seed), .help = "seed", .def = "1"},
    {.name = "--big", .type = CLI_U64, .off = offsetof(demo, big), .help = "bounded",
     .unset = "the daemon's", .hi = 1000},
    {.name = "--rate", .type = CLI_FLOAT, .off = offsetof(demo, rate), .metavar = "X",
     .help = "a rate", .unset = "the bundle's", .flo = 0.5, .fhi = 2.0},
    {.name = "--wait", .type = CLI_SECONDS, .off = offsetof(demo, wait), .help = "seconds",
     .def = "30", .flo = 0.0, .fhi = 100.0},
    {.name = "--verbose", .type = CLI_FLAG, .off = offsetof(demo, verbose), .help = "talk"},
    {.name = "--level", .type = CLI_CHOICE, .off = offsetof(demo, level), .help = "level",
     .def = "mid", .choices = LEVELS},
    {.name = "--shots", .type = CLI_INT_LIST, .off = offsetof(demo, shots), .help = "shots",
     .def = "1,5", .lo = 1, .hi = 100, .max_items = 3},
    {.name = "--kept", .type = CLI_INT, .off = offsetof(demo, kept), .help = "from the struct",
     .keep = 1, .lo = 0, .hi = 1000},
};

static const cli_command DEMO_CMD = {
    .name = "demo",
    .synopsis = "WORD --file FILE [options]",
    .about = "A command for the tests.",
    .opts = DEMO_OPTS,
    .nopts = CLI_NOPTS(DEMO_OPTS),
    .globals = CLI_G_SERVER | CLI_G_JSON,
    .positional = "WORD",
    .positional_off = offsetof(demo, word),
    .footer = "the footer",
};

/* ---- running the parser with stdout and stderr captured ---- */

typedef struct parsed {
    int go, code;
    char out[8192], err[2048];
} parsed;

static void read_back(FILE *f, char *buf, size_t cap)
{
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
}

/* Parse a NULL-terminated argument list (argv[0] "demo" added). */
static parsed parse_words(demo *d, cli_globals *g, const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"demo";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    parsed p;
    memset(&p, 0, sizeof p);
    FILE *out = tmpfile(), *err = tmpfile();
    assert_non_null(out);
    assert_non_null(err);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    p.go = cli_parse(&DEMO_CMD, d, g, argc, argv, &p.code);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    read_back(out, p.out, sizeof p.out);
    read_back(err, p.err, sizeof p.err);
    fclose(out);
    fclose(err);
    return p;
}

static void expect_has(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("\"%s\" not in:\n%s", needle, text);
}

/* A usage error: no run, exit 2, a message holding each needle. */
static void expect_usage_error(const parsed *p, const char *n1, const char *n2)
{
    if (p->go || p->code != EXIT_USAGE)
        fail_msg("expected a usage error (go %d, code %d):\n%s", p->go, p->code, p->err);
    expect_has(p->err, "d2nwg demo: ");
    expect_has(p->err, n1);
    if (n2)
        expect_has(p->err, n2);
}

static void fresh(demo *d, cli_globals *g)
{
    memset(d, 0, sizeof *d);
    d->kept = 321;
    unsetenv("D2NWG_TOKEN");
    cli_globals_init(g);
}

/* ---- tests ---- */

static void test_defaults(void **state)
{
    (void)state;
    demo d;
    cli_globals g;
    unsetenv("D2NWG_TEST_NAME");
    fresh(&d, &g);
    parsed p = parse_words(&d, &g, "w", "--file", "f.csv", NULL);
    assert_int_equal(p.go, 1);
    assert_int_equal(p.code, EXIT_OK);
    assert_string_equal(p.err, "");
    assert_string_equal(d.name, "anon");
    assert_string_equal(d.file, "f.csv");
    assert_string_equal(d.word, "w");
    assert_int_equal(d.count, 7);
    assert_int_equal(d.seed, 1);
    assert_true(d.big == CLI_UNSET_U64);
    assert_true(isnan(d.rate));
    TU_ASSERT_NEAR(d.wait, 30.0, 0.0);
    assert_int_equal(d.verbose, 0);
    assert_int_equal(d.level, 1);
    assert_int_equal(d.shots.n, 2);
    assert_int_equal(d.shots.v[0], 1);
    assert_int_equal(d.shots.v[1], 5);
    assert_int_equal(d.kept, 321); /* keep: the struct's own value */
    /* the environment overrides the table's default, the command line both */
    setenv("D2NWG_TEST_NAME", "from-env", 1);
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", "--file", "f", NULL);
    assert_string_equal(d.name, "from-env");
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", "--file", "f", "--name", "cli", NULL);
    assert_string_equal(d.name, "cli");
    unsetenv("D2NWG_TEST_NAME");
}

static void test_every_type_both_spellings(void **state)
{
    (void)state;
    demo d;
    cli_globals g;
    fresh(&d, &g);
    parsed p = parse_words(&d, &g, "--name=Ada", "--file", "x.st", "-c", "-3", "--seed",
                           "18446744073709551615", "--big=1000", "--rate", "2", "--wait=12.5s",
                           "--verbose", "--level=high", "--shots", "1,100,3", "--kept", "0",
                           "word", NULL);
    if (!p.go)
        fail_msg("%s", p.err);
    assert_string_equal(d.name, "Ada");
    assert_string_equal(d.file, "x.st");
    assert_string_equal(d.word, "word");
    assert_int_equal(d.count, -3);
    assert_true(d.seed == UINT64_MAX);
    assert_int_equal(d.big, 1000);
    TU_ASSERT_NEAR(d.rate, 2.0, 0.0);
    TU_ASSERT_NEAR(d.wait, 12.5, 0.0);
    assert_int_equal(d.verbose, 1);
    assert_int_equal(d.level, 2);
    assert_int_equal(d.shots.n, 3);
    assert_int_equal(d.shots.v[1], 100);
    assert_int_equal(d.shots.v[2], 3);
    assert_int_equal(d.kept, 0);
    /* the other spelling of each: --count=40 (the top of its range), --rate 0.5 */
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", "--file=y", "--count=40", "--rate", "0.5", "--level", "low",
                    NULL);
    assert_int_equal(p.go, 1);
    assert_string_equal(d.file, "y");
    assert_int_equal(d.count, 40);
    TU_ASSERT_NEAR(d.rate, 0.5, 0.0);
    assert_int_equal(d.level, 0);
}

static void test_value_errors(void **state)
{
    (void)state;
    demo d;
    cli_globals g;
    struct {
        const char *opt, *val, *n1, *n2;
    } cases[] = {
        {"--count", "41", "--count: 41 is outside -3..40", NULL},
        {"--count", "-4", "--count: -4 is outside -3..40", NULL},
        {"--count", "seven", "--count: 'seven' is not an integer", NULL},
        {"--count", "7x", "'7x' is not an integer", NULL},
        {"--count", "99999999999999999999", "is not an integer", NULL},
        {"--seed", "-1", "--seed: '-1' must be a non-negative integer", NULL},
        {"--seed", "1.5", "--seed: '1.5' is not a non-negative integer", NULL},
        {"--big", "1001", "--big: 1001 is outside 0..1000", NULL},
        {"--rate", "2.01", "--rate: 2.01 is outside 0.5..2", NULL},
        {"--rate", "fast", "--rate: 'fast' is not a number", NULL},
        {"--rate", "nan", "--rate: 'nan' is not a number", NULL},
        {"--rate", "1e999", "is not a number", NULL},
        {"--wait", "5m", "--wait: '5m' is not a number", NULL},
        {"--wait", "1.000000000000000000000000000000000000000000000000000000000000000000001",
         "is not a number", NULL},
        {"--level", "max", "--level must be low, mid or high, not 'max'", NULL},
        {"--shots", "1,,2", "--shots:", "at most 3 integers"},
        {"--shots", "1,2,3,4", "--shots:", "at most 3 integers"},
        {"--shots", "0,2", "--shots: 0 is outside 1..100", NULL},
        {"--shots", "", "--shots: an empty list", NULL},
        {"--file", "", "--file: an empty path", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fresh(&d, &g);
        parsed p = parse_words(&d, &g, "w", "--file", "f", cases[i].opt, cases[i].val, NULL);
        expect_usage_error(&p, cases[i].n1, cases[i].n2);
        /* and as --name=value */
        char eq[128];
        snprintf(eq, sizeof eq, "%s=%s", cases[i].opt, cases[i].val);
        fresh(&d, &g);
        p = parse_words(&d, &g, "w", "--file", "f", eq, NULL);
        expect_usage_error(&p, cases[i].n1, cases[i].n2);
    }
}

static void test_usage_errors(void **state)
{
    (void)state;
    demo d;
    cli_globals g;
    fresh(&d, &g);
    parsed p = parse_words(&d, &g, "w", "--file", "f", "--colour", "red", NULL);
    expect_usage_error(&p, "unknown option '--colour'", "see 'd2nwg demo --help'");
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", "--file", "f", "--colour=red", NULL);
    expect_usage_error(&p, "unknown option '--colour'", NULL);
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", "--file", "f", "--count", NULL);
    expect_usage_error(&p, "--count needs a value (N)", NULL);
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", "--file", "f", "--verbose=yes", NULL);
    expect_usage_error(&p, "--verbose takes no value", NULL);
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", NULL);
    expect_usage_error(&p, "--file is required", NULL);
    fresh(&d, &g);
    p = parse_words(&d, &g, "--file", "f", NULL);
    expect_usage_error(&p, "WORD is required", NULL);
    fresh(&d, &g);
    p = parse_words(&d, &g, "a", "b", "--file", "f", NULL);
    expect_usage_error(&p, "one WORD, please ('a' and 'b')", NULL);
    /* a global option the command does not take, after the command */
    fresh(&d, &g);
    p = parse_words(&d, &g, "w", "--file", "f", "--token", "t", NULL);
    expect_usage_error(&p, "--token does not apply to this command", NULL);
    assert_null(g.token);
}

static void test_generated_help(void **state)
{
    (void)state;
    demo d;
    cli_globals g;
    fresh(&d, &g);
    parsed p = parse_words(&d, &g, "--count", "zzz", "--help", NULL);
    /* --help wins over everything else and runs nothing */
    assert_int_equal(p.go, 0);
    assert_int_equal(p.code, EXIT_OK);
    assert_string_equal(p.err, "");
    expect_has(p.out, "usage: d2nwg demo WORD --file FILE [options]");
    expect_has(p.out, "A command for the tests.");
    for (int i = 0; i < DEMO_CMD.nopts; i++)
        expect_has(p.out, DEMO_OPTS[i].name);
    expect_has(p.out, "-c, --count N");
    expect_has(p.out, "(integer -3..40; default 7)");
    expect_has(p.out, "(text; default $D2NWG_TEST_NAME or anon)");
    expect_has(p.out, "(path; required)");
    expect_has(p.out, "(integer >= 0; default 1)");
    expect_has(p.out, "(integer 0..1000; default: the daemon's)");
    expect_has(p.out, "(number 0.5..2; default: the bundle's)");
    expect_has(p.out, "(seconds 0..100; default 30)");
    expect_has(p.out, "(one of low, mid, high; default mid)");
    expect_has(p.out, "(comma list of up to 3 integers 1..100; default 1,5)");
    expect_has(p.out, "(integer 0..1000; default 321)"); /* keep: the struct's value */
    /* the global options the command takes, and only those */
    expect_has(p.out, "--server URL");
    expect_has(p.out, "--json");
    assert_null(strstr(p.out, "--token"));
    assert_null(strstr(p.out, "--quiet"));
    expect_has(p.out, "-h, --help");
    expect_has(p.out, "the footer");
    /* every line fits 80 columns */
    for (const char *l = p.out; *l;) {
        size_t n = strcspn(l, "\n");
        if (n > 80)
            fail_msg("help line of %zu characters: %.*s", n, (int)n, l);
        l += n + (l[n] ? 1 : 0);
    }
    /* -h too */
    fresh(&d, &g);
    p = parse_words(&d, &g, "-h", NULL);
    assert_int_equal(p.code, EXIT_OK);
    expect_has(p.out, "usage: d2nwg demo");
}

static void test_globals_before_and_after(void **state)
{
    (void)state;
    unsetenv("D2NWG_SERVER");
    unsetenv("D2NWG_TOKEN");
    cli_globals g;
    cli_globals_init(&g);
    assert_string_equal(g.server, CLI_DEFAULT_SERVER);
    assert_null(g.token);
    TU_ASSERT_NEAR(g.retry_for, 30.0, 0.0);
    assert_int_equal(g.given, 0);
    char *argv[] = {"d2nwg", "--server", "http://h:1", "--token=T", "--json", "--retry-for",
                    "5s", "demo", "--json", NULL};
    int next = 0, code = -1;
    assert_int_equal(cli_parse_globals(&g, 9, argv, &next, &code), 1);
    assert_int_equal(next, 7);
    assert_string_equal(argv[next], "demo");
    assert_string_equal(g.server, "http://h:1");
    assert_string_equal(g.token, "T");
    assert_int_equal(g.json, 1);
    TU_ASSERT_NEAR(g.retry_for, 5.0, 0.0);
    assert_int_equal(g.given, CLI_G_SERVER | CLI_G_TOKEN | CLI_G_JSON | CLI_G_RETRY_FOR);
    /* the command does not take --token or --retry-for: refused */
    demo d;
    memset(&d, 0, sizeof d);
    parsed p = parse_words(&d, &g, "w", "--file", "f", NULL);
    expect_usage_error(&p, "--token does not apply to this command", NULL);
    /* only what it takes, before and after the command */
    cli_globals_init(&g);
    char *argv2[] = {"d2nwg", "--json", "demo", NULL};
    assert_int_equal(cli_parse_globals(&g, 3, argv2, &next, &code), 1);
    assert_int_equal(next, 2);
    p = parse_words(&d, &g, "w", "--file", "f", "--server=http://after:2", NULL);
    assert_int_equal(p.go, 1);
    assert_int_equal(g.json, 1);
    assert_string_equal(g.server, "http://after:2");
    /* the environment gives --server and --token their defaults */
    setenv("D2NWG_SERVER", "http://env:3", 1);
    setenv("D2NWG_TOKEN", "tok", 1);
    cli_globals_init(&g);
    assert_string_equal(g.server, "http://env:3");
    assert_string_equal(g.token, "tok");
    unsetenv("D2NWG_SERVER");
    unsetenv("D2NWG_TOKEN");
    /* a bad global value before the command is a usage error; an unknown
     * word stops the globals (main reports it) */
    char *argv3[] = {"d2nwg", "--retry-for", "soon", "jobs", NULL};
    assert_int_equal(cli_parse_globals(&g, 4, argv3, &next, &code), 0);
    assert_int_equal(code, EXIT_USAGE);
    char *argv4[] = {"d2nwg", "--quiet", "--frob", "jobs", NULL};
    cli_globals_init(&g);
    assert_int_equal(cli_parse_globals(&g, 4, argv4, &next, &code), 1);
    assert_int_equal(next, 2);
    assert_int_equal(g.quiet, 1);
}

/* ---- the real commands ---- */

static int run_cmd(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_cmd(char *out, size_t n, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return tu_capture(out, n, cmd);
}

/* Each command's --help exits 0 and lists every option it had before the
 * table (the README's and the tests' names). */
static void test_every_command_help(void **state)
{
    (void)state;
    static const struct {
        const char *cmd, *opts;
    } cmds[] = {
        {"zoo build", "--out --source --way --tasks --feature --per-class --heldout-frac --seed "
                      "--threads --epochs --batch --lr --weight-decay --min-steps --quiet"},
        {"zoo import", "--manifest --out --spec"},
        {"zoo info", "DIR --json"},
        {"train", "--zoo --out --seed --resume --checkpoint-every --quick --align --vae-steps "
                  "--steps --device --threads --stop-after --quiet"},
        {"info", "GEN --json"},
        {"generate", "--generator --support --labels --embeddings --candidates --steps "
                     "--sampler --guidance --seed --out --all --no-gate --device --quiet"},
        {"eval", "--generator --zoo --tasks --shots --candidates --steps --guidance --seed "
                 "--source --no-finetune --plot --json --device"},
        {"sample", "--source --classes --shots --split --seed --format --out"},
        {"submit", "--support --labels --embeddings --binary --generator --candidates --steps "
                   "--sampler --guidance --seed --priority --no-gate --parent --wait --timeout "
                   "--out "
                   "--quiet --json --server --token --retry-for"},
        {"jobs", "--state --limit --after --json --server --token --retry-for"},
        {"status", "JOB_ID --json --server --token --retry-for"},
        {"wait", "JOB_ID --timeout --quiet --json --server --token --retry-for"},
        {"cancel", "JOB_ID --json --server --token --retry-for"},
        {"fetch", "CHECKPOINT_ID --out --server --token --retry-for"},
        {"lineage", "CHECKPOINT_ID --json --server --token --retry-for"},
        {"generators", "--json --server --token --retry-for"},
        {"retrieve", "--support --labels --embeddings --binary --generator -k, --k --json "
                     "--server --token --retry-for"},
    };
    char bin[512];
    tu_build_path(bin, sizeof bin, "d2nwg");
    static char out[1 << 15];
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int st = run_cmd(out, sizeof out, "%s %s --help", bin, cmds[i].cmd);
        if (st != 0)
            fail_msg("d2nwg %s --help: exit %d\n%s", cmds[i].cmd, st, out);
        char want[64];
        snprintf(want, sizeof want, "usage: d2nwg %s ", cmds[i].cmd);
        expect_has(out, want);
        char words[512];
        snprintf(words, sizeof words, "%s", cmds[i].opts);
        for (char *save = NULL, *w = strtok_r(words, " ", &save); w;
             w = strtok_r(NULL, " ", &save)) {
            char line[64], alias[64];
            /* an option starts its help line: "  --name", or "-k, --name" */
            snprintf(line, sizeof line, w[0] == '-' ? "  %s" : "%s", w);
            snprintf(alias, sizeof alias, ", %s", w);
            if (!strstr(out, line) && !(w[0] == '-' && strstr(out, alias)))
                fail_msg("d2nwg %s --help does not list %s:\n%s", cmds[i].cmd, w, out);
        }
    }
    /* d2nwg --help lists the commands and the global options */
    assert_int_equal(run_cmd(out, sizeof out, "%s --help", bin), 0);
    expect_has(out, "usage: d2nwg [global options] <command>");
    expect_has(out, "  --server URL");
    expect_has(out, "  retrieve");
}

/* Global options before the command reach it, and the ones it does not take
 * are refused (exit 2) with a message naming them. */
static void test_globals_with_the_binary(void **state)
{
    (void)state;
    char bin[512];
    tu_build_path(bin, sizeof bin, "d2nwg");
    static char out[1 << 14];
    /* a bad URL before the command is the command's usage error */
    assert_int_equal(run_cmd(out, sizeof out, "%s --server ftp://x:1 jobs", bin), 2);
    expect_has(out, "d2nwg jobs: ");
    expect_has(out, "ftp://x:1");
    /* --json before fetch, which does not take it */
    assert_int_equal(run_cmd(out, sizeof out, "%s --json fetch ck_00000000000000000000_0 --out x",
                             bin), 2);
    expect_has(out, "d2nwg fetch: --json does not apply to this command");
    /* --token before an offline command */
    assert_int_equal(run_cmd(out, sizeof out, "%s --token T sample --out x.csv", bin), 2);
    expect_has(out, "--token does not apply");
    /* an unreachable server named before the command: exit 3, no retry */
    assert_int_equal(run_cmd(out, sizeof out,
                             "%s --server http://127.0.0.1:1 --retry-for=0 --json status "
                             "j_0123456789abcdef0123",
                             bin), 3);
    expect_has(out, "d2nwg status: cannot reach http://127.0.0.1:1");
    /* unknown global option, and a value error before the command */
    assert_int_equal(run_cmd(out, sizeof out, "%s --frob jobs", bin), 2);
    expect_has(out, "d2nwg: unknown global option '--frob'");
    assert_int_equal(run_cmd(out, sizeof out, "%s --retry-for soon jobs", bin), 2);
    expect_has(out, "d2nwg: --retry-for: 'soon' is not a number");
    assert_int_equal(run_cmd(out, sizeof out, "%s --server", bin), 2);
    expect_has(out, "--server needs a value");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_type_both_spellings),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_generated_help),
        cmocka_unit_test(test_globals_before_and_after),
        cmocka_unit_test(test_every_command_help),
        cmocka_unit_test(test_globals_with_the_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
