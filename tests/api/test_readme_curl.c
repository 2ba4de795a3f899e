/* test_readme_curl.c - the README's "Use it from curl" section, run for real.
 *
 * Takes every fenced block between `<!-- curl:begin -->` and
 * `<!-- curl:end -->` in README.md, in order, and runs them as one shell
 * script (```sh blocks as they are, ```python blocks through python3) in an
 * empty directory against a real d2nwgd, with the README's address
 * http://127.0.0.1:8080 replaced by the daemon's. curl is wrapped with
 * --fail-with-body so an HTTP error fails the script. Then checks what the
 * blocks printed and wrote: the downloaded weights are the bytes `d2nwg
 * generate` writes, their sha256 matches the daemon's header, the NumPy
 * snippet reads the tensors PyTorch's nn.Sequential expects and reproduces
 * the job's support accuracy. A block in another language, or an indented
 * code block, fails the test: everything shown must be run.
 *
 * PyTorch blocks run only where `import torch, safetensors` works (not on
 * the build machines); /usr/bin comes first on PATH so python3 is the
 * system one, which has NumPy. */
#include <limits.h>

#include "apitest.h"

#define MAX_BLOCKS 32

typedef struct block {
    char lang[16];
    int line; /* README line of the opening fence */
    char *body;
} block;

typedef struct readme {
    block b[MAX_BLOCKS];
    int n;
} readme;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = '\0';
    fclose(f);
    if (len)
        *len = got;
    return b;
}

/* Append text to a growing string. */
static void append(char **s, size_t *len, const char *text)
{
    size_t k = strlen(text);
    char *t = realloc(*s, *len + k + 1);
    assert_non_null(t);
    memcpy(t + *len, text, k + 1);
    *s = t;
    *len += k;
}

/* Every fenced block of the curl section. */
static void readme_parse(readme *r, const char *text)
{
    memset(r, 0, sizeof *r);
    const char *begin = strstr(text, "<!-- curl:begin -->");
    const char *end = strstr(text, "<!-- curl:end -->");
    if (!begin || !end || end < begin)
        fail_msg("README.md lacks the <!-- curl:begin --> ... <!-- curl:end --> markers");
    int line = 1;
    for (const char *p = text; p < begin; p++)
        line += *p == '\n';
    block *cur = NULL;
    size_t cur_len = 0;
    for (const char *p = begin; p < end; line++) {
        const char *eol = strchr(p, '\n');
        if (!eol || eol > end)
            eol = end;
        size_t n = (size_t)(eol - p);
        char l[1024];
        if (n >= sizeof l)
            fail_msg("README.md line %d is longer than %zu characters", line, sizeof l - 1);
        memcpy(l, p, n);
        l[n] = '\0';
        p = eol < end ? eol + 1 : end;
        if (!cur && !strncmp(l, "```", 3)) {
            if (r->n == MAX_BLOCKS)
                fail_msg("more than %d blocks in the curl section", MAX_BLOCKS);
            cur = &r->b[r->n++];
            snprintf(cur->lang, sizeof cur->lang, "%.15s", l + 3);
            cur->line = line;
            cur->body = calloc(1, 1);
            assert_non_null(cur->body);
            cur_len = 0;
            if (strcmp(cur->lang, "sh") && strcmp(cur->lang, "python"))
                fail_msg("README.md line %d: a ```%s block; the curl section may hold only "
                         "```sh and ```python blocks, which this test runs",
                         line, cur->lang);
            continue;
        }
        if (cur && !strcmp(l, "```")) {
            cur = NULL;
            continue;
        }
        if (cur) {
            append(&cur->body, &cur_len, l);
            append(&cur->body, &cur_len, "\n");
        } else if (!strncmp(l, "    ", 4) || l[0] == '\t') {
            fail_msg("README.md line %d: an indented code block in the curl section would not be "
                     "run by this test; use a ```sh block:\n%s",
                     line, l);
        }
    }
    if (cur)
        fail_msg("README.md line %d: the ```%s block is not closed", cur->line, cur->lang);
}

static void readme_free(readme *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->b[i].body);
    r->n = 0;
}

/* s with every `from` replaced by `to` (caller frees); *count += replacements. */
static char *replace_all(const char *s, const char *from, const char *to, int *count)
{
    char *out = calloc(1, 1);
    size_t len = 0, fl = strlen(from);
    assert_non_null(out);
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (!q) {
            append(&out, &len, p);
            return out;
        }
        char *chunk = strndup(p, (size_t)(q - p));
        assert_non_null(chunk);
        append(&out, &len, chunk);
        free(chunk);
        append(&out, &len, to);
        (*count)++;
        p = q + fl;
    }
}

/* The script: prelude, then each block behind a marker line on stderr. */
static char *build_script(const readme *r, const char *work, const char *url)
{
    char *s = calloc(1, 1);
    size_t len = 0;
    char buf[1600];
    assert_non_null(s);
    append(&s, &len, "set -eu\n");
    /* an HTTP error fails the command, and with it the script */
    append(&s, &len,
           "curl() { case \" $* \" in *\" --fail \"*) command curl \"$@\" ;;"
           " *) command curl --fail-with-body \"$@\" ;; esac; }\n");
    snprintf(buf, sizeof buf, "cd '%s'\n", work);
    append(&s, &len, buf);
    int replaced = 0;
    for (int i = 0; i < r->n; i++) {
        const block *b = &r->b[i];
        char *body = replace_all(b->body, "http://127.0.0.1:8080", url, &replaced);
        if (strstr(body, "127.0.0.1:8080"))
            fail_msg("README.md block at line %d names 127.0.0.1:8080 in a form this test cannot "
                     "point at its daemon (use http://127.0.0.1:8080 or $D2NWG)",
                     b->line);
        snprintf(buf, sizeof buf, "echo '>>> README.md block at line %d (%s)' >&2\n", b->line,
                 b->lang);
        append(&s, &len, buf);
        if (!strcmp(b->lang, "sh")) {
            append(&s, &len, body);
        } else {
            char py[1024];
            snprintf(py, sizeof py, "%s/block-%d.py", work, b->line);
            tu_write_bytes(py, body, strlen(body));
            if (strstr(body, "import torch"))
                snprintf(buf, sizeof buf,
                         "if python3 -c 'import torch, safetensors' 2>/dev/null; then "
                         "python3 '%s'; else echo '>>> skipped: PyTorch is not installed'; fi\n",
                         py);
            else
                snprintf(buf, sizeof buf, "python3 '%s'\n", py);
            append(&s, &len, buf);
        }
        free(body);
    }
    if (replaced == 0)
        fail_msg("no block of the curl section names http://127.0.0.1:8080; the test could not "
                 "point it at its daemon");
    return s;
}

static void expect_has(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("the README blocks' output lacks \"%s\"; output:\n%s", needle, text);
}

/* The 64-hex word that starts the line after `prefix` (case-insensitive). */
static int hex_after(const char *text, const char *prefix, char out[65])
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncasecmp(p, prefix, pl))
            continue;
        const char *h = p + pl;
        if (strspn(h, "0123456789abcdef") >= 64) {
            memcpy(out, h, 64);
            out[64] = '\0';
            return 1;
        }
    }
    return 0;
}

/* The sha256sum line: "<hex>  head.safetensors". */
static int sha256sum_of(const char *text, const char *file, char out[65])
{
    char tail[256];
    snprintf(tail, sizeof tail, "  %s", file);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strspn(p, "0123456789abcdef") == 64 && !strncmp(p + 64, tail, strlen(tail))) {
            memcpy(out, p, 64);
            out[64] = '\0';
            return 1;
        }
    }
    return 0;
}

/* Owned by the test and released by its teardown, also when it fails. */
typedef struct run_state {
    char *dir;
    at_daemon d;
    readme r;
    char *out;
} run_state;

static int run_setup(void **state)
{
    run_state *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    st->dir = tu_tmpdir("readme-curl");
    *state = st;
    return 0;
}

static int run_teardown(void **state)
{
    run_state *st = *state;
    if (st->d.pid > 0)
        at_stop(&st->d, SIGKILL, 30.0);
    readme_free(&st->r);
    free(st->out);
    tu_rmrf(st->dir);
    free(st->dir);
    free(st);
    return 0;
}

static void test_readme_curl_section(void **state)
{
    run_state *st = *state;
    readme *rp = &st->r;
    char *text = slurp("README.md", NULL);
    readme_parse(rp, text);
    free(text);
    if (rp->n < 5)
        fail_msg("the curl section has %d blocks; expected the whole workflow", rp->n);
    const readme r = *rp;

    const char *dir = st->dir;
    char work[600];
    snprintf(work, sizeof work, "%s/work", dir);
    assert_int_equal(mkdir(work, 0755), 0);
    at_daemon *dp = &st->d;
    at_start(dp, dir, "daemon", NULL);
    at_wait_ready(dp);
    const at_daemon d = *dp;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
    char *script = build_script(&r, work, url);
    char script_path[700], out_path[700];
    snprintf(script_path, sizeof script_path, "%s/readme.sh", dir);
    snprintf(out_path, sizeof out_path, "%s/readme.out", dir);
    tu_write_bytes(script_path, script, strlen(script));
    free(script);

    /* d2nwg from this build first, then the system python3 (with NumPy) */
    char build[PATH_MAX], bin[700];
    tu_build_path(bin, sizeof bin, "d2nwg");
    if (!realpath(bin, build))
        fail_msg("%s: %s", bin, strerror(errno));
    *strrchr(build, '/') = '\0';
    const char *path = getenv("PATH");
    size_t cl = strlen(build) + strlen(path ? path : "") + 3 * sizeof script_path + 128;
    char *cmd = malloc(cl);
    assert_non_null(cmd);
    snprintf(cmd, cl, "PATH='%s':/usr/bin:/bin:\"$PATH\" timeout 300 sh '%s' >'%s' 2>&1", build,
             script_path, out_path);
    double t0 = at_now();
    int rc = system(cmd);
    double took = at_now() - t0;
    free(cmd);
    char *out = st->out = slurp(out_path, NULL);
    if (rc != 0) {
        size_t n = strlen(out);
        at_print_log(&d);
        fail_msg("the README's curl blocks failed (status %d after %.1f s); the last output:\n%s",
                 rc, took, n > 6000 ? out + n - 6000 : out);
    }
    print_message("README curl section: %d blocks ran in %.1f s\n", r.n, took);

    /* what the blocks printed */
    expect_has(out, "\"status\":\"ready\"");
    expect_has(out, "\"name\":\"default\"");
    expect_has(out, "\"state\":\"succeeded\"");
    expect_has(out, "0.weight (128, 784) float32");
    expect_has(out, "0.bias (128,) float32");
    expect_has(out, "1.weight (5, 128) float32");
    expect_has(out, "1.bias (5,) float32");
    expect_has(out, "seed 42");
    /* the job's gate decision and every ranked entry's method, the baselines too */
    expect_has(out, "gate: ");
    expect_has(out, "cross-validation on the support set");
    expect_has(out, " prototypes support accuracy ");
    expect_has(out, " logreg support accuracy ");
    expect_has(out, " method ");
    expect_has(out, "{\"jobs\":[");
    expect_has(out, "d2nwgd_jobs{state=\"succeeded\"}");
    expect_has(out, "d2nwgd_jobs_pending ");
    expect_has(out, "same bytes");
    if (!strstr(out, ">>> skipped: PyTorch is not installed") && !strstr(out, "tensor(["))
        fail_msg("the PyTorch block neither ran nor was skipped:\n%s", out);

    /* the daemon's sha256 header matches the downloaded file */
    char sum[65], header[65];
    if (!sha256sum_of(out, "head.safetensors", sum) ||
        !hex_after(out, "X-Checkpoint-Sha256: ", header))
        fail_msg("no sha256sum line or X-Checkpoint-Sha256 header in:\n%s", out);
    assert_string_equal(sum, header);

    /* NumPy reproduces the job's support accuracy (same data, same network) */
    at_resp lr = at_get(&d, "/v1/jobs?state=succeeded&limit=50");
    assert_int_equal(lr.status, 200);
    json_t *list = at_json(&lr);
    at_resp_free(&lr);
    double job_acc = -1.0;
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(list, "jobs"), i, j)
    {
        json_t *p = json_object_get(j, "params");
        if (json_integer_value(json_object_get(p, "seed")) == 42 &&
            json_integer_value(json_object_get(p, "candidates")) == 8) {
            json_t *ck =
                json_array_get(json_object_get(json_object_get(j, "result"), "checkpoints"), 0);
            job_acc = json_number_value(json_object_get(ck, "support_accuracy"));
        }
    }
    json_decref(list);
    if (job_acc < 0)
        fail_msg("no succeeded seed-42 job on the daemon after the README blocks");
    /* the NumPy snippet's line is the one not followed by a weights URL */
    double np_acc = -1.0;
    for (const char *p = out; (p = strstr(p, "support accuracy ")); p++) {
        const char *eol = strchr(p, '\n');
        const char *url_on_line = strstr(p, "/v1/checkpoints/");
        if (url_on_line && (!eol || url_on_line < eol))
            continue;
        np_acc = strtod(p + strlen("support accuracy "), NULL);
    }
    if (np_acc < 0)
        fail_msg("the NumPy block printed no support accuracy:\n%s", out);
    /* float32 rounding may flip at most one near-tie among the 25 rows */
    TU_ASSERT_NEAR(np_acc, job_acc, 1.0 / 25.0 + 1e-3);

    /* the downloaded file is what `d2nwg generate` writes for the same inputs */
    char support[700], head[700], offline[700];
    snprintf(support, sizeof support, "%s/support.csv", work);
    snprintf(head, sizeof head, "%s/head.safetensors", work);
    snprintf(offline, sizeof offline, "%s/offline.safetensors", dir);
    const char *fixture = at_fixture();
    size_t gl = strlen(bin) + strlen(fixture) + strlen(support) + strlen(offline) + 128;
    char *gen = malloc(gl);
    assert_non_null(gen);
    snprintf(gen, gl,
             "'%s' generate --generator '%s' --support '%s' --candidates 8 --seed 42 "
             "--out '%s' --quiet",
             bin, fixture, support, offline);
    assert_int_equal(system(gen), 0);
    free(gen);
    size_t hl = 0, ol = 0;
    char *hb = slurp(head, &hl), *ob = slurp(offline, &ol);
    if (hl != ol || memcmp(hb, ob, hl) != 0)
        fail_msg("head.safetensors (%zu bytes) differs from d2nwg generate's (%zu bytes)", hl, ol);
    free(hb);
    free(ob);

    /* the README's claim about Idempotency-Key: a repeat returns the first job */
    char req_path[700];
    snprintf(req_path, sizeof req_path, "%s/request.json", work);
    size_t rl = 0;
    char *body = slurp(req_path, &rl);
    const char *hdrs[] = {"Content-Type: application/json", "Idempotency-Key: readme-seed-7", NULL};
    at_resp again = at_request(&d, "POST", "/v1/jobs", body, rl, hdrs);
    free(body);
    char replayed[32];
    if (again.status != 200 ||
        strcmp(at_header(&again, "Idempotent-Replayed", replayed, sizeof replayed), "true") != 0)
        fail_msg("repeating request.json with its key: %ld, Idempotent-Replayed '%s': %s",
                 again.status, replayed, again.body);
    at_resp_free(&again);

    assert_int_equal(at_stop(dp, SIGTERM, 30.0), 0);
}

/* The parser itself: blocks found with their languages, bad sections refused. */
static void test_readme_parse(void **state)
{
    (void)state;
    readme r;
    readme_parse(&r, "# x\n<!-- curl:begin -->\ntext\n```sh\necho a\n```\nmore\n```python\n"
                     "print(1)\n```\n<!-- curl:end -->\n```sh\nnot ours\n```\n");
    assert_int_equal(r.n, 2);
    assert_string_equal(r.b[0].lang, "sh");
    assert_string_equal(r.b[0].body, "echo a\n");
    assert_int_equal(r.b[0].line, 4);
    assert_string_equal(r.b[1].lang, "python");
    assert_string_equal(r.b[1].body, "print(1)\n");
    readme_free(&r);
    int count = 0;
    char *s = replace_all("curl http://127.0.0.1:8080/a http://127.0.0.1:8080",
                          "http://127.0.0.1:8080", "http://127.0.0.1:9", &count);
    assert_string_equal(s, "curl http://127.0.0.1:9/a http://127.0.0.1:9");
    assert_int_equal(count, 2);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_parse),
        cmocka_unit_test_setup_teardown(test_readme_curl_section, run_setup, run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
