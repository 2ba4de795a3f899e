/* test_cli_remote.c - the remote commands of `d2nwg` (submit, jobs, status,
 * wait, cancel, fetch, lineage, generators, retrieve) run as real processes
 * against real d2nwgd daemons on free loopback ports: tables, --json, exit
 * codes (0 / 1 failed or cancelled / 2 usage / 3 unreachable / 4 refused),
 * retries with backoff on a down server and on 503 queue_full, bearer
 * tokens, global options before the command (--server URL --json status
 * JOB), and `submit --wait --out` byte-identical to `d2nwg generate`. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/socket.h>

#include "fileio.h"
#include "apitest.h"
#include "remote_http.h"
#include "rng.h"
#include "safetensors.h"

typedef struct suite {
    char *dir;
    at_daemon d;
    at_daemon extra; /* a test's own daemon; stopped by the teardown if a test fails */
    pid_t fake;      /* a scripted HTTP server (test_retry_scripted_server) */
    char server[64];
    char csv[600], bad_csv[600], xnpy[600], ynpy[600], st[600];
    int runs;             /* output file counter */
    char job[64], ck[80]; /* a succeeded job (seed 11, 4 candidates) and its best */
    char job_out[600];    /* that job's downloaded weights */
} suite;

typedef struct cli_out {
    int status;
    char *out, *err;
    double seconds;
} cli_out;

typedef struct cli_proc {
    pid_t pid;
    char out[640], err[640];
    double t0;
} cli_proc;

/* ---- running d2nwg ---- */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = '\0';
    fclose(f);
    return b;
}

/* Start `d2nwg args...` (NULL-terminated) with stdout/stderr in files. */
static cli_proc cli_spawn(suite *s, const char *const *args)
{
    cli_proc p;
    memset(&p, 0, sizeof p);
    int k = s->runs++;
    snprintf(p.out, sizeof p.out, "%s/run-%03d.out", s->dir, k);
    snprintf(p.err, sizeof p.err, "%s/run-%03d.err", s->dir, k);
    char bin[600];
    tu_build_path(bin, sizeof bin, "d2nwg");
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    p.t0 = at_now();
    p.pid = fork();
    assert_true(p.pid >= 0);
    if (p.pid == 0) {
        int fo = open(p.out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(p.err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0)
            _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        close(fo);
        close(fe);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return p;
}

static cli_out cli_finish(cli_proc *p)
{
    cli_out r;
    memset(&r, 0, sizeof r);
    int st = 0;
    assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
    r.seconds = at_now() - p->t0;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = read_text(p->out);
    r.err = read_text(p->err);
    return r;
}

static cli_out cli_v(suite *s, const char *first, va_list ap)
{
    const char *args[64];
    int n = 0;
    for (const char *a = first; a && n < 63; a = va_arg(ap, const char *))
        args[n++] = a;
    args[n] = NULL;
    cli_proc p = cli_spawn(s, args);
    return cli_finish(&p);
}

/* Run `d2nwg first ...` (NULL-terminated) to the end and require an exit status (printing both
 * streams when it differs). */
static cli_out cli_expect(suite *s, int status, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    cli_out r = cli_v(s, first, ap);
    va_end(ap);
    if (r.status != status)
        fail_msg("d2nwg %s ...: exit %d, expected %d\n--- stdout\n%s\n--- stderr\n%s", first,
                 r.status, status, r.out, r.err);
    return r;
}

static void cli_free(cli_out *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static void expect_has(const char *text, const char *what, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("%s lacks \"%s\":\n%s", what, needle, text);
}

static json_t *parse_json(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!json_is_object(v))
        fail_msg("not a JSON object (%s):\n%s", je.text, text);
    return v;
}

static int files_equal(const char *a, const char *b)
{
    unsigned char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    d2_error err;
    if (d2_read_file(a, &x, &nx, 0, &err) != 0)
        fail_msg("%s", err.msg);
    if (d2_read_file(b, &y, &ny, 0, &err) != 0)
        fail_msg("%s", err.msg);
    int eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

/* The first line of stdout (a job id). */
static void first_line(const char *text, char *out, size_t cap)
{
    size_t n = strcspn(text, "\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, text, n);
    out[n] = '\0';
}

static int is_job_id(const char *s)
{
    if (strlen(s) != 22 || strncmp(s, "j_", 2))
        return 0;
    for (int i = 2; i < 22; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

/* ---- support-set files ---- */

/* way classes x shots rows of dim values in [0, 1], class-dependent. */
static void make_rows(int way, int shots, int dim, unsigned seed, float *x, int32_t *y)
{
    unsigned st = seed * 2654435761u + 7u;
    for (int c = 0; c < way; c++)
        for (int k = 0; k < shots; k++) {
            int i = c * shots + k;
            y[i] = c;
            for (int j = 0; j < dim; j++) {
                st = st * 1664525u + 1013904223u;
                float u = (float)(st >> 8) / 16777216.0f;
                x[(size_t)i * dim + j] = 0.6f * u + ((j / 7) % way == c ? 0.4f : 0.0f);
            }
        }
}

static void write_csv(const char *path, int way, int shots, int dim, unsigned seed)
{
    int n = way * shots;
    float *x = malloc(sizeof(float) * (size_t)n * dim);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    assert_non_null(x);
    assert_non_null(y);
    make_rows(way, shots, dim, seed, x, y);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "label");
    for (int j = 0; j < dim; j++)
        fprintf(f, ",p%d", j);
    fputc('\n', f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%d", y[i]);
        for (int j = 0; j < dim; j++)
            fprintf(f, ",%.6g", (double)x[(size_t)i * dim + j]);
        fputc('\n', f);
    }
    assert_int_equal(fclose(f), 0);
    free(x);
    free(y);
}

/* NPY v1.0: magic, version, uint16 header length, dict padded to 64 bytes. */
static void write_npy(const char *path, const char *descr, const char *shape, const void *data,
                      size_t nbytes)
{
    char dict[256];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, shape);
    int total = 10 + dl + 1;
    int pad = (64 - total % 64) % 64;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    int hlen = dl + pad + 1;
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(head, 1, 10, f), 10);
    assert_int_equal(fwrite(dict, 1, (size_t)dl, f), (size_t)dl);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    assert_int_equal(fwrite(data, 1, nbytes, f), nbytes);
    assert_int_equal(fclose(f), 0);
}

static void write_support_files(suite *s)
{
    snprintf(s->csv, sizeof s->csv, "%s/support.csv", s->dir);
    snprintf(s->bad_csv, sizeof s->bad_csv, "%s/wrong-dim.csv", s->dir);
    snprintf(s->xnpy, sizeof s->xnpy, "%s/x.npy", s->dir);
    snprintf(s->ynpy, sizeof s->ynpy, "%s/y.npy", s->dir);
    snprintf(s->st, sizeof s->st, "%s/support.safetensors", s->dir);
    write_csv(s->csv, 5, 3, 784, 1);
    write_csv(s->bad_csv, 5, 1, 10, 2);
    /* 128-d embeddings (the generator's feature space), 5 x 2 rows */
    enum { N = 10, D = 128 };
    float x[N * D];
    int32_t y32[N];
    int64_t y64[N];
    make_rows(5, 2, D, 3, x, y32);
    for (int i = 0; i < N * D; i++)
        x[i] = 4.0f * (x[i] - 0.5f);
    for (int i = 0; i < N; i++)
        y64[i] = y32[i];
    write_npy(s->xnpy, "<f4", "(10, 128)", x, sizeof x);
    write_npy(s->ynpy, "<i8", "(10,)", y64, sizeof y64);
    /* safetensors x [15, 784], y [15] for retrieve */
    float *xs = malloc(sizeof(float) * 15 * 784);
    int32_t ys[15];
    assert_non_null(xs);
    make_rows(5, 3, 784, 4, xs, ys);
    st_writer w;
    st_writer_init(&w);
    d2_error err;
    int64_t xshape[2] = {15, 784}, yshape[1] = {15};
    assert_int_equal(st_writer_add_f32(&w, "x", 2, xshape, xs, &err), 0);
    assert_int_equal(st_writer_add(&w, "y", ST_I32, 1, yshape, ys, sizeof ys, &err), 0);
    assert_int_equal(st_writer_save(&w, s->st, &err), 0);
    st_writer_free(&w);
    free(xs);
}

/* A port nothing listens on: bind to 0, note it, close. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- a scripted HTTP server: one canned answer per connection ---- */

/* Read one request (headers, then Content-Length bytes of body); the header
 * block goes to log. */
static void fake_read_request(int c, FILE *log)
{
    char buf[1 << 16];
    size_t len = 0;
    char *end = NULL;
    while (!end && len + 1 < sizeof buf) {
        ssize_t k = read(c, buf + len, sizeof buf - 1 - len);
        if (k <= 0)
            return;
        len += (size_t)k;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return;
    size_t head = (size_t)(end - buf) + 4;
    fwrite(buf, 1, head, log);
    fputs("----\n", log);
    fflush(log);
    long body = 0;
    for (char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
        if (!strncasecmp(p, "Content-Length:", 15))
            body = strtol(p + 15, NULL, 10);
    long have = (long)(len - head);
    while (have < body) {
        ssize_t k = read(c, buf, sizeof buf);
        if (k <= 0)
            return;
        have += k;
    }
}

/* Serve replies[i] to connection i ("" closes without answering); requests
 * are logged to log_path. Returns the port. */
static int fake_start(suite *s, const char *const *replies, const char *log_path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    fflush(NULL);
    s->fake = fork();
    assert_true(s->fake >= 0);
    if (s->fake == 0) {
        FILE *log = fopen(log_path, "w");
        if (!log)
            _exit(1);
        for (int i = 0; replies[i]; i++) {
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                _exit(1);
            fake_read_request(c, log);
            size_t n = strlen(replies[i]);
            if (n && write(c, replies[i], n) != (ssize_t)n)
                _exit(1);
            close(c);
        }
        fclose(log);
        _exit(0);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void fake_stop(suite *s)
{
    if (s->fake > 0) {
        kill(s->fake, SIGKILL);
        waitpid(s->fake, NULL, 0);
    }
    s->fake = 0;
}

/* "HTTP/1.1 <status>" with a JSON body and extra header lines. */
static char *fake_reply(const char *status, const char *headers, const char *body)
{
    size_t n = strlen(status) + strlen(headers) + strlen(body) + 200;
    char *r = malloc(n);
    assert_non_null(r);
    snprintf(r, n,
             "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n%s\r\n%s",
             status, strlen(body), headers, body);
    return r;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    suite *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->dir = tu_tmpdir("cli-remote");
    unsetenv("D2NWG_SERVER");
    unsetenv("D2NWG_TOKEN");
    write_support_files(s);
    /* progress checked each 20 ms, not 500: a job of a second on a fast
     * machine still shows progress lines to test_jobs_follow */
    const char *extra[] = {"--events-progress-ms", "20", NULL};
    at_start(&s->d, s->dir, "main", extra);
    at_wait_ready(&s->d);
    snprintf(s->server, sizeof s->server, "http://127.0.0.1:%d", s->d.port);
    *state = s;
    return 0;
}

static int group_teardown(void **state)
{
    suite *s = *state;
    if (!s)
        return 0;
    if (s->extra.pid > 0)
        at_stop(&s->extra, SIGKILL, 30.0);
    if (s->fake > 0) {
        kill(s->fake, SIGKILL);
        waitpid(s->fake, NULL, 0);
    }
    unsetenv("D2NWG_SERVER");
    unsetenv("D2NWG_TOKEN");
    int rc = at_stop(&s->d, SIGTERM, 30.0);
    if (rc != 0)
        at_print_log(&s->d);
    tu_rmrf(s->dir);
    free(s->dir);
    free(s);
    return rc == 0 ? 0 : -1;
}

/* The job every later test inspects: CSV support set, seed 11, 4 candidates,
 * 10 DDIM steps, downloaded with --wait --out. */
static void ensure_job(suite *s)
{
    if (s->job[0])
        return;
    snprintf(s->job_out, sizeof s->job_out, "%s/remote-11.safetensors", s->dir);
    cli_out r = cli_expect(s, 0, "submit", "--server", s->server, "--support", s->csv, "--seed",
                           "11", "--candidates", "4", "--steps", "10", "--sampler", "ddim", "--out",
                           s->job_out, NULL);
    first_line(r.out, s->job, sizeof s->job);
    if (!is_job_id(s->job))
        fail_msg("submit's first line is not a job id:\n%s", r.out);
    snprintf(s->ck, sizeof s->ck, "ck_%s_0", s->job + 2);
    expect_has(r.out, "submit output", s->ck);
    expect_has(r.out, "submit output", "wrote ");
    expect_has(r.err, "submit progress", "succeeded");
    /* the ranking's method column, the gate's reason, and the method of the
     * downloaded checkpoint (as its metadata says) */
    expect_has(r.out, "submit output", "| method ");
    expect_has(r.out, "submit output", "gate         ");
    expect_has(r.out, "submit output", "3-fold cross-validation"); /* 3 shots */
    st_file f;
    d2_error err;
    assert_int_equal(st_load(&f, s->job_out, &err), 0);
    char want[96];
    snprintf(want, sizeof want, "%s, method %s,", s->ck, st_meta(&f, "d2nwg.method"));
    expect_has(r.out, "submit output", want);
    snprintf(want, sizeof want, "gate         %s: ", st_meta(&f, "d2nwg.method"));
    expect_has(r.out, "submit output", want);
    st_free(&f);
    cli_free(&r);
}

/* ---- tests ---- */

static void test_help_and_usage(void **state)
{
    suite *s = *state;
    static const char *const cmds[] = {"submit", "jobs",    "status",     "wait",    "cancel",
                                       "fetch",  "lineage", "generators", "retrieve"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        cli_out r = cli_expect(s, 0, cmds[i], "--help", NULL);
        char want[64];
        snprintf(want, sizeof want, "usage: d2nwg %s", cmds[i]);
        expect_has(r.out, cmds[i], want);
        expect_has(r.out, cmds[i], "--server URL");
        expect_has(r.out, cmds[i], "exit status");
        cli_free(&r);
    }
    cli_out r = cli_expect(s, 0, "--help", NULL);
    expect_has(r.out, "d2nwg --help", "submit");
    expect_has(r.out, "d2nwg --help", "retrieve");
    cli_free(&r);

    r = cli_expect(s, 2, "submit", "--server", s->server, NULL);
    expect_has(r.err, "submit without --support", "--support is required");
    cli_free(&r);
    /* a missing input file is an I/O error (1), as in generate (README: exit codes) */
    r = cli_expect(s, 1, "submit", "--server", s->server, "--support", "/nonexistent/s.csv", NULL);
    expect_has(r.err, "missing support file", "/nonexistent/s.csv");
    cli_free(&r);
    r = cli_expect(s, 2, "submit", "--support", s->csv, "--sampler", "euler", NULL);
    expect_has(r.err, "bad sampler", "ddim or ddpm");
    cli_free(&r);
    r = cli_expect(s, 2, "submit", "--support", s->csv, "--seed", "-1", NULL);
    cli_free(&r);
    r = cli_expect(s, 2, "status", NULL);
    expect_has(r.err, "status without id", "which job");
    cli_free(&r);
    r = cli_expect(s, 2, "status", "j_xyz", NULL);
    expect_has(r.err, "status bad id", "is not a job id");
    cli_free(&r);
    r = cli_expect(s, 2, "jobs", "--state", "done", NULL);
    expect_has(r.err, "jobs bad state", "--state");
    cli_free(&r);
    r = cli_expect(s, 2, "jobs", "--limit", "0", NULL);
    cli_free(&r);
    r = cli_expect(s, 2, "jobs", "--frobnicate", NULL);
    expect_has(r.err, "unknown option", "unknown option '--frobnicate'");
    cli_free(&r);
    r = cli_expect(s, 2, "fetch", "ck_00000000000000000000_0", NULL);
    expect_has(r.err, "fetch without --out", "--out");
    cli_free(&r);
    r = cli_expect(s, 2, "fetch", "ck_00000000000000000000_0", "--out", "x", "--json", NULL);
    cli_free(&r);
    r = cli_expect(s, 2, "jobs", "--server", "ftp://127.0.0.1:1", NULL);
    expect_has(r.err, "bad server URL", "http://");
    cli_free(&r);
    r = cli_expect(s, 2, "jobs", "--retry-for", "soon", NULL);
    cli_free(&r);
}

static void test_backoff_policy(void **state)
{
    (void)state;
    rng a, b, c;
    rng_init(&a, 42, 0);
    rng_init(&b, 42, 0);
    rng_init(&c, 43, 0);
    int same_as_other_seed = 1;
    for (int n = 1; n <= 12; n++) {
        double base = 0.25 * (double)(1 << (n - 1 < 10 ? n - 1 : 10));
        if (base > 8.0)
            base = 8.0;
        double d = remote_backoff_delay(n, -1.0, &a);
        if (!(d >= 0.5 * base && d <= base))
            fail_msg("retry %d: delay %g outside [%g, %g]", n, d, 0.5 * base, base);
        /* the same seed gives the same delays, another seed others */
        TU_ASSERT_NEAR(remote_backoff_delay(n, -1.0, &b), d, 0.0);
        if (remote_backoff_delay(n, -1.0, &c) != d)
            same_as_other_seed = 0;
    }
    assert_false(same_as_other_seed);
    for (int n = 1; n <= 5; n++) {
        double d = remote_backoff_delay(n, 3.0, &a);
        if (!(d >= 3.0 && d <= 3.3))
            fail_msg("Retry-After 3: delay %g outside [3, 3.3]", d);
    }
    /* replayable (GET, or POST with an Idempotency-Key) */
    assert_true(remote_should_retry(1, 1, 0));
    assert_true(remote_should_retry(1, 2, 0));
    assert_true(remote_should_retry(1, 0, 500));
    assert_true(remote_should_retry(1, 0, 502));
    assert_true(remote_should_retry(1, 0, 503));
    assert_true(remote_should_retry(1, 0, 429));
    assert_false(remote_should_retry(1, 0, 200));
    assert_false(remote_should_retry(1, 0, 404));
    assert_false(remote_should_retry(1, 0, 422));
    /* POST without a key: only when the daemon certainly did nothing */
    assert_true(remote_should_retry(0, 1, 0));
    assert_false(remote_should_retry(0, 2, 0));
    assert_false(remote_should_retry(0, 0, 500));
    assert_true(remote_should_retry(0, 0, 503));
    assert_true(remote_should_retry(0, 0, 429));
    assert_false(remote_should_retry(0, 0, 409));
    char k1[33], k2[33];
    d2_error err;
    assert_int_equal(remote_random_hex(k1, 16, &err), 0);
    assert_int_equal(remote_random_hex(k2, 16, &err), 0);
    assert_int_equal(strlen(k1), 32);
    assert_int_equal(strspn(k1, "0123456789abcdef"), 32);
    assert_string_not_equal(k1, k2);
}

static void test_server_down(void **state)
{
    suite *s = *state;
    char url[64], want[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    snprintf(want, sizeof want, "cannot reach %s: connection refused", url);
    cli_out r = cli_expect(s, 3, "jobs", "--server", url, "--retry-for", "1", NULL);
    expect_has(r.err, "jobs on a closed port", want);
    expect_has(r.err, "jobs on a closed port", "retry 1 in");
    if (r.seconds < 0.9 || r.seconds > 10.0)
        fail_msg("gave up after %.2f s with --retry-for 1", r.seconds);
    cli_free(&r);
    /* no retry window: one try, no retry lines */
    r = cli_expect(s, 3, "status", "j_0123456789abcdef0123", "--server", url, "--retry-for", "0",
                   NULL);
    expect_has(r.err, "status on a closed port", want);
    assert_null(strstr(r.err, "retry"));
    cli_free(&r);
    /* POST with its Idempotency-Key: retried too; the env var picks the server */
    setenv("D2NWG_SERVER", url, 1);
    r = cli_expect(s, 3, "submit", "--support", s->csv, "--retry-for", "0.5", NULL);
    unsetenv("D2NWG_SERVER");
    expect_has(r.err, "submit on a closed port", want);
    expect_has(r.err, "submit on a closed port", "POST");
    cli_free(&r);
}

static void test_generators(void **state)
{
    suite *s = *state;
    cli_out r = cli_expect(s, 0, "generators", "--server", s->server, NULL);
    expect_has(r.out, "generators table", "| default ");
    expect_has(r.out, "generators table", "pca:128 \\| linear 128->5");
    expect_has(r.out, "generators table", "1 generator");
    cli_free(&r);
    r = cli_expect(s, 0, "generators", "--server", s->server, "--json", NULL);
    json_t *v = parse_json(r.out);
    json_t *g = json_array_get(json_object_get(v, "generators"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "name")), "default");
    assert_int_equal(json_integer_value(json_object_get(g, "input_dim")), 784);
    assert_int_equal(json_integer_value(json_object_get(g, "feature_dim")), 128);
    json_decref(v);
    cli_free(&r);
    /* $D2NWG_SERVER instead of --server */
    setenv("D2NWG_SERVER", s->server, 1);
    r = cli_expect(s, 0, "generators", NULL);
    unsetenv("D2NWG_SERVER");
    expect_has(r.out, "generators via D2NWG_SERVER", "| default ");
    cli_free(&r);
}

static void test_submit_wait_identical_to_generate(void **state)
{
    suite *s = *state;
    ensure_job(s);
    char offline[640];
    snprintf(offline, sizeof offline, "%s/offline-11.safetensors", s->dir);
    cli_out r = cli_expect(s, 0, "generate", "--generator", at_fixture(), "--support", s->csv,
                           "--seed", "11", "--candidates", "4", "--steps", "10", "--sampler",
                           "ddim", "--out", offline, "--quiet", NULL);
    cli_free(&r);
    if (!files_equal(offline, s->job_out))
        fail_msg("submit --wait --out and generate wrote different bytes");

    /* the same through a safetensors upload to /v1/datasets (--binary) */
    char binary[640];
    snprintf(binary, sizeof binary, "%s/remote-11-binary.safetensors", s->dir);
    const char *uploads = "d2nwgd_http_requests_total{route=\"/v1/datasets\",code=\"200\"}";
    double before = at_metric(&s->d, uploads);
    r = cli_expect(s, 0, "submit", "--server", s->server, "--support", s->csv, "--binary", "--seed",
                   "11", "--candidates", "4", "--steps", "10", "--out", binary, NULL);
    cli_free(&r);
    if (!files_equal(offline, binary))
        fail_msg("submit --binary and generate wrote different bytes");
    /* the data were stored by the first job: the upload found them (200) */
    TU_ASSERT_NEAR(at_metric(&s->d, uploads), (before < 0 ? 0 : before) + 1, 0.0);

    /* NPY embeddings, DDPM, guidance 1.5, --json: the final job JSON on stdout */
    char remote[640];
    snprintf(remote, sizeof remote, "%s/remote-npy.safetensors", s->dir);
    snprintf(offline, sizeof offline, "%s/offline-npy.safetensors", s->dir);
    r = cli_expect(s, 0, "submit", "--server", s->server, "--support", s->xnpy, "--labels", s->ynpy,
                   "--embeddings", "--sampler", "ddpm", "--guidance", "1.5", "--seed", "5",
                   "--candidates", "3", "--steps", "8", "--out", remote, "--json", NULL);
    json_t *v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(v, "dataset_kind")), "embeddings");
    json_t *p = json_object_get(v, "params");
    assert_string_equal(json_string_value(json_object_get(p, "sampler")), "ddpm");
    assert_int_equal(json_integer_value(json_object_get(p, "seed")), 5);
    assert_int_equal(json_integer_value(json_object_get(p, "candidates")), 3);
    TU_ASSERT_NEAR(json_number_value(json_object_get(p, "guidance")), 1.5, 0.0);
    json_decref(v);
    expect_has(r.err, "submit --json", "wrote ");
    cli_free(&r);
    r = cli_expect(s, 0, "generate", "--generator", at_fixture(), "--support", s->xnpy, "--labels",
                   s->ynpy, "--embeddings", "--sampler", "ddpm", "--guidance", "1.5", "--seed", "5",
                   "--candidates", "3", "--steps", "8", "--out", offline, "--quiet", NULL);
    cli_free(&r);
    if (!files_equal(offline, remote))
        fail_msg("submit (NPY embeddings, ddpm) and generate wrote different bytes");

    /* --no-gate on both sides: the diffusion candidates alone, the same bytes */
    snprintf(remote, sizeof remote, "%s/remote-nogate.safetensors", s->dir);
    snprintf(offline, sizeof offline, "%s/offline-nogate.safetensors", s->dir);
    r = cli_expect(s, 0, "submit", "--server", s->server, "--support", s->csv, "--seed", "11",
                   "--candidates", "2", "--steps", "6", "--no-gate", "--out", remote, "--json",
                   NULL);
    v = parse_json(r.out);
    assert_true(json_is_false(json_object_get(json_object_get(v, "params"), "gate")));
    assert_true(json_is_false(json_object_get(json_object_get(v, "gate"), "applied")));
    assert_int_equal(json_array_size(json_object_get(json_object_get(v, "result"), "checkpoints")),
                     2);
    json_decref(v);
    cli_free(&r);
    r = cli_expect(s, 0, "generate", "--generator", at_fixture(), "--support", s->csv, "--seed",
                   "11", "--candidates", "2", "--steps", "6", "--no-gate", "--out", offline,
                   "--quiet", NULL);
    cli_free(&r);
    if (!files_equal(offline, remote))
        fail_msg("submit --no-gate and generate --no-gate wrote different bytes");

    /* without --wait: the id only, and the job exists */
    r = cli_expect(s, 0, "submit", "--server", s->server, "--support", s->csv, "--seed", "12",
                   "--candidates", "2", "--steps", "4", NULL);
    char id[64];
    first_line(r.out, id, sizeof id);
    assert_true(is_job_id(id));
    assert_int_equal(strlen(r.out), strlen(id) + 1);
    cli_free(&r);
    json_t *j = at_wait_done(&s->d, id, 60.0);
    assert_string_equal(at_state(j), "succeeded");
    json_decref(j);
}

static void test_status_jobs_wait(void **state)
{
    suite *s = *state;
    ensure_job(s);
    cli_out r = cli_expect(s, 0, "status", s->job, "--server", s->server, NULL);
    expect_has(r.out, "status table", "succeeded");
    expect_has(r.out, "status table", s->ck);
    expect_has(r.out, "status table", "seed 11");
    expect_has(r.out, "status table", "6 checkpoints"); /* 4 candidates, 2 baselines */
    expect_has(r.out, "status table", "| prototypes |");
    expect_has(r.out, "status table", "| logreg     |");
    expect_has(r.out, "status table", "3-fold cross-validation on the support set");
    cli_free(&r);
    r = cli_expect(s, 0, "status", s->job, "--server", s->server, "--json", NULL);
    json_t *v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(v, "id")), s->job);
    json_t *cks = json_object_get(json_object_get(v, "result"), "checkpoints");
    assert_int_equal(json_array_size(cks), 6);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cks, 0), "id")), s->ck);
    /* --json passes the gate and the methods through */
    json_t *gate = json_object_get(v, "gate");
    assert_true(json_is_true(json_object_get(gate, "applied")));
    assert_string_equal(json_string_value(json_object_get(gate, "chosen")),
                        json_string_value(json_object_get(json_array_get(cks, 0), "method")));
    assert_int_equal(json_integer_value(json_object_get(gate, "folds")), 3);
    assert_true(json_is_array(json_object_get(v, "warnings")));
    json_decref(v);
    cli_free(&r);

    /* a finished job: wait answers at once */
    r = cli_expect(s, 0, "wait", s->job, "--server", s->server, NULL);
    expect_has(r.out, "wait table", s->ck);
    if (r.seconds > 5.0)
        fail_msg("wait on a finished job took %.1f s", r.seconds);
    cli_free(&r);
    r = cli_expect(s, 0, "wait", s->job, "--server", s->server, "--json", "--quiet", NULL);
    v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "succeeded");
    assert_string_equal(r.err, "");
    json_decref(v);
    cli_free(&r);

    /* pages: newest first, --after continues */
    r = cli_expect(s, 0, "jobs", "--server", s->server, "--limit", "1", "--json", NULL);
    v = parse_json(r.out);
    json_t *jobs = json_object_get(v, "jobs");
    assert_int_equal(json_array_size(jobs), 1);
    const char *next = json_string_value(json_object_get(v, "next_after"));
    assert_non_null(next);
    char newest[64];
    snprintf(newest, sizeof newest, "%s",
             json_string_value(json_object_get(json_array_get(jobs, 0), "id")));
    assert_string_equal(next, newest);
    json_decref(v);
    cli_free(&r);
    r = cli_expect(s, 0, "jobs", "--server", s->server, "--limit", "1", NULL);
    expect_has(r.out, "jobs table", newest);
    expect_has(r.out, "jobs table", "more with --after");
    cli_free(&r);
    r = cli_expect(s, 0, "jobs", "--server", s->server, "--after", newest, "--json", NULL);
    assert_null(strstr(r.out, newest));
    v = parse_json(r.out);
    assert_true(json_array_size(json_object_get(v, "jobs")) >= 1);
    json_decref(v);
    cli_free(&r);
    r = cli_expect(s, 0, "jobs", "--server", s->server, "--state", "succeeded", NULL);
    expect_has(r.out, "succeeded jobs", s->job);
    cli_free(&r);
    r = cli_expect(s, 0, "jobs", "--server", s->server, "--state", "failed", "--json", NULL);
    v = parse_json(r.out);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 0);
    json_decref(v);
    cli_free(&r);
}

/* jobs --follow: a job submitted while it follows shows up queued, running
 * with progress, and succeeded, live; --json gives one event a line; --for
 * without --follow, and --follow with the page options, are usage errors. */
static void test_jobs_follow(void **state)
{
    suite *s = *state;
    const char *args[] = {"jobs", "--server", s->server, "--follow", "--for", "20", NULL};
    cli_proc p = cli_spawn(s, args);
    /* submit once the stream is open: a fixed pause lost the 'queued' event
     * on a loaded machine, where the command took longer to connect */
    for (double t0 = at_now(); at_metric(&s->d, "d2nwgd_events_clients") < 1; at_sleep(0.02))
        if (at_now() - t0 > 20)
            fail_msg("jobs --follow did not connect to /v1/events in 20 s");
    cli_out sub = cli_expect(s, 0, "submit", "--server", s->server, "--support", s->csv, "--seed",
                             "12", "--candidates", "8", "--steps", "400", "--quiet", NULL);
    char job[64];
    first_line(sub.out, job, sizeof job);
    assert_true(is_job_id(job));
    cli_free(&sub);
    cli_out waited = cli_expect(s, 0, "wait", job, "--server", s->server, "--quiet", NULL);
    cli_free(&waited);
    char want[128];
    snprintf(want, sizeof want, "%s  succeeded", job);
    for (double t0 = at_now(); at_now() - t0 < 15.0; at_sleep(0.05)) {
        char *so_far = read_text(p.out); /* it prints each event as it comes */
        int seen = strstr(so_far, want) != NULL;
        free(so_far);
        if (seen)
            break;
    }
    kill(p.pid, SIGINT); /* what Ctrl-C does */
    cli_out r = cli_finish(&p);
    /* the running state's line shows the progress when it was published
     * (0%, or a little more where the job got going first) */
    const char *states[] = {"queued      0%", "running ", "succeeded 100%"};
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "%s  %s", job, states[i]);
        expect_has(r.out, "jobs --follow", want);
    }
    int running = 0; /* the state change, then progress lines */
    snprintf(want, sizeof want, "%s  running ", job);
    for (const char *q = strstr(r.out, want); q; q = strstr(q + 1, want))
        running++;
    if (running < 2)
        fail_msg("jobs --follow printed no progress:\n%s", r.out);
    expect_has(r.out, "jobs --follow", "method ");
    cli_free(&r);

    r = cli_expect(s, 0, "jobs", "--server", s->server, "--follow", "--for", "1", "--json", NULL);
    assert_string_equal(r.out, ""); /* nothing happened in that second */
    cli_free(&r);
    r = cli_expect(s, 2, "jobs", "--server", s->server, "--for", "1", NULL);
    expect_has(r.err, "--for alone", "only with --follow");
    cli_free(&r);
    r = cli_expect(s, 2, "jobs", "--server", s->server, "--follow", "--limit", "3", NULL);
    expect_has(r.err, "--follow --limit", "use one or the other");
    cli_free(&r);
}

/* Global options before the command, as git and kubectl users write them:
 * the same answers as after it; --name=value too; a global option the
 * command does not take is refused. */
static void test_global_options_first(void **state)
{
    suite *s = *state;
    ensure_job(s);
    cli_out r = cli_expect(s, 0, "--server", s->server, "--json", "status", s->job, NULL);
    json_t *v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(v, "id")), s->job);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "succeeded");
    json_decref(v);
    cli_free(&r);
    char server_eq[96];
    snprintf(server_eq, sizeof server_eq, "--server=%s", s->server);
    r = cli_expect(s, 0, server_eq, "jobs", "--limit=1", "--state=succeeded", NULL);
    expect_has(r.out, "jobs table, --server first", "| job ");
    expect_has(r.out, "jobs table, --server first", "1 job");
    cli_free(&r);
    /* before and after mixed: --json first, the server after the command */
    r = cli_expect(s, 0, "--json", "lineage", s->ck, "--server", s->server, NULL);
    v = parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(v, "seed")), 11);
    json_decref(v);
    cli_free(&r);
    /* --quiet --json first: wait prints the job and no progress */
    r = cli_expect(s, 0, "--quiet", "--json", "--server", s->server, "wait", s->job, NULL);
    v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "succeeded");
    assert_string_equal(r.err, "");
    json_decref(v);
    cli_free(&r);
    /* fetch takes no --json; an offline command no --server */
    char out[640];
    snprintf(out, sizeof out, "%s/never-json.safetensors", s->dir);
    r = cli_expect(s, 2, "--json", "fetch", s->ck, "--out", out, "--server", s->server, NULL);
    expect_has(r.err, "--json before fetch", "--json does not apply to this command");
    assert_int_equal(access(out, F_OK), -1);
    cli_free(&r);
    r = cli_expect(s, 2, "--server", s->server, "sample", "--out", out, NULL);
    expect_has(r.err, "--server before sample", "d2nwg sample: --server does not apply");
    cli_free(&r);
}

static void test_lineage_and_fetch(void **state)
{
    suite *s = *state;
    ensure_job(s);
    cli_out r = cli_expect(s, 0, "lineage", s->ck, "--server", s->server, NULL);
    expect_has(r.out, "lineage", s->job);
    expect_has(r.out, "lineage", "seed 11");
    expect_has(r.out, "lineage", "pca:128 | linear 128->5");
    expect_has(r.out, "lineage", "15 rows x 784, 5 classes [3 3 3 3 3]");
    expect_has(r.out, "lineage", "(rank 0, candidate ");
    expect_has(r.out, "lineage", ", method ");
    expect_has(r.out, "lineage", "3-fold cross-validation on the support set");
    cli_free(&r);

    char f0[640], f1[640];
    snprintf(f0, sizeof f0, "%s/fetch-0.safetensors", s->dir);
    snprintf(f1, sizeof f1, "%s/fetch-1.safetensors", s->dir);
    r = cli_expect(s, 0, "fetch", s->ck, "--out", f0, "--server", s->server, NULL);
    expect_has(r.out, "fetch", "sha256 ");
    cli_free(&r);
    assert_true(files_equal(f0, s->job_out));
    char ck1[80];
    snprintf(ck1, sizeof ck1, "ck_%s_1", s->job + 2);
    r = cli_expect(s, 0, "fetch", ck1, "--out", f1, "--server", s->server, NULL);
    cli_free(&r);
    assert_false(files_equal(f0, f1));
    st_file f;
    d2_error err;
    assert_int_equal(st_load(&f, f1, &err), 0);
    const st_tensor *w = st_find(&f, "1.weight");
    assert_non_null(w);
    assert_int_equal(w->shape[0], 5);
    assert_int_equal(w->shape[1], 128);
    assert_string_equal(st_meta(&f, "d2nwg.rank"), "1");
    st_free(&f);

    /* a job derived from the checkpoint shows up in its lineage */
    r = cli_expect(s, 0, "submit", "--server", s->server, "--support", s->csv, "--seed", "13",
                   "--candidates", "2", "--steps", "4", "--parent", s->ck, "--wait", "--quiet",
                   NULL);
    char child[64], child_ck[80];
    first_line(r.out, child, sizeof child);
    assert_true(is_job_id(child));
    snprintf(child_ck, sizeof child_ck, "ck_%s_0", child + 2);
    cli_free(&r);
    r = cli_expect(s, 0, "lineage", s->ck, "--server", s->server, "--json", NULL);
    json_t *v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "checkpoint"), "id")),
                        s->ck);
    assert_int_equal(json_integer_value(json_object_get(v, "seed")), 11);
    int found = 0;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(v, "derived"), i, d) found |=
        !strcmp(json_string_value(d), child_ck);
    if (!found)
        fail_msg("lineage of %s does not list %s as derived:\n%s", s->ck, child_ck, r.out);
    json_decref(v);
    cli_free(&r);
    r = cli_expect(s, 0, "lineage", child_ck, "--server", s->server, NULL);
    char want[128];
    snprintf(want, sizeof want, "parent       %s", s->ck);
    expect_has(r.out, "child lineage", want);
    cli_free(&r);
}

static void test_refused(void **state)
{
    suite *s = *state;
    ensure_job(s);
    cli_out r = cli_expect(s, 4, "submit", "--server", s->server, "--support", s->bad_csv, NULL);
    expect_has(r.err, "wrong dimension", "refused: 422 invalid_dataset (field dataset.samples)");
    expect_has(r.err, "wrong dimension", "784");
    assert_string_equal(r.out, "");
    cli_free(&r);
    r = cli_expect(s, 4, "submit", "--server", s->server, "--support", s->csv, "--generator",
                   "nope", NULL);
    expect_has(r.err, "unknown generator", "422 unknown_generator (field generator)");
    cli_free(&r);
    r = cli_expect(s, 4, "submit", "--server", s->server, "--support", s->csv, "--candidates",
                   "100000", NULL);
    expect_has(r.err, "too many candidates", "400 invalid_argument (field candidates)");
    cli_free(&r);
    r = cli_expect(s, 4, "retrieve", "--server", s->server, "--support", s->bad_csv, NULL);
    expect_has(r.err, "retrieve wrong dimension", "422 invalid_dataset");
    cli_free(&r);
    char out[640];
    snprintf(out, sizeof out, "%s/never.safetensors", s->dir);
    r = cli_expect(s, 4, "fetch", "ck_00000000000000000000_0", "--out", out, "--server", s->server,
                   NULL);
    expect_has(r.err, "unknown checkpoint", "404 not_found");
    assert_int_equal(access(out, F_OK), -1);
    cli_free(&r);
    r = cli_expect(s, 4, "status", "j_00000000000000000000", "--server", s->server, NULL);
    expect_has(r.err, "unknown job", "404 not_found");
    cli_free(&r);
    r = cli_expect(s, 4, "cancel", s->job, "--server", s->server, NULL);
    expect_has(r.err, "cancel a finished job", "409 conflict");
    expect_has(r.err, "cancel a finished job", "already succeeded");
    cli_free(&r);
    /* refusals are not retried */
    r = cli_expect(s, 4, "lineage", "ck_00000000000000000000_0", "--server", s->server, NULL);
    assert_null(strstr(r.err, "retry"));
    cli_free(&r);
}

static void test_retrieve(void **state)
{
    suite *s = *state;
    cli_out r =
        cli_expect(s, 0, "retrieve", "--server", s->server, "--support", s->st, "-k", "3", NULL);
    expect_has(r.out, "retrieve table", "|   1 |");
    expect_has(r.out, "retrieve table", "|   3 |");
    assert_null(strstr(r.out, "|   4 |"));
    cli_free(&r);
    r = cli_expect(s, 0, "retrieve", "--server", s->server, "--support", s->st, "--k", "4",
                   "--json", NULL);
    json_t *v = parse_json(r.out);
    json_t *hits = json_object_get(v, "hits");
    assert_int_equal(json_array_size(hits), 4);
    double prev = -1.0;
    size_t i;
    json_t *h;
    json_array_foreach(hits, i, h)
    {
        double dist = json_number_value(json_object_get(h, "distance"));
        assert_true(dist >= prev);
        prev = dist;
        assert_int_equal(json_array_size(json_object_get(h, "classes")), 5);
    }
    json_decref(v);
    cli_free(&r);
}

/* Retries against a scripted server: Retry-After honoured on 503, a reply
 * that never comes retried for a GET and for a POST with its
 * Idempotency-Key (the same key each time), not for a POST without one, and
 * a 5xx that outlasts --retry-for ends with exit 3. */
static void test_retry_scripted_server(void **state)
{
    suite *s = *state;
    char log_path[640], url[64];
    snprintf(log_path, sizeof log_path, "%s/fake.log", s->dir);
    char *busy = fake_reply("503 Service Unavailable", "Retry-After: 1\r\n",
                            "{\"error\":{\"code\":\"not_ready\",\"message\":\"loading\"}}\n");
    char *gens = fake_reply("200 OK", "",
                            "{\"generators\":[{\"name\":\"scripted\",\"id\":\"abc\","
                            "\"spec\":\"linear 4->2\",\"input_dim\":4,\"feature_dim\":4,"
                            "\"min_way\":2,\"max_way\":2,\"params\":10,\"zoo_size\":3,"
                            "\"defaults\":{\"candidates\":2,\"steps\":5,\"guidance\":1.0,"
                            "\"sampler\":\"ddim\"}}]}\n");
    char *job = fake_reply("202 Accepted", "Location: /v1/jobs/j_0123456789abcdef0123\r\n",
                           "{\"id\":\"j_0123456789abcdef0123\",\"state\":\"queued\"}\n");
    char *boom = fake_reply("500 Internal Server Error", "",
                            "{\"error\":{\"code\":\"internal\",\"message\":\"boom\"}}\n");

    /* GET: 503 (Retry-After 1), no answer, then 200 */
    const char *r1[] = {busy, "", gens, NULL};
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fake_start(s, r1, log_path));
    cli_out r = cli_expect(s, 0, "generators", "--server", url, "--retry-for", "20", NULL);
    fake_stop(s);
    expect_has(r.out, "generators after retries", "| scripted ");
    expect_has(r.err, "503 retry line", "503 not_ready: loading; retry 1 in 1.");
    expect_has(r.err, "no-answer retry line", "retry 2 in");
    if (r.seconds < 1.0)
        fail_msg("Retry-After: 1 not honoured: done in %.2f s\n%s", r.seconds, r.err);
    cli_free(&r);

    /* POST with an Idempotency-Key: no answer, then 202; the same key twice */
    const char *r2[] = {"", job, NULL};
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fake_start(s, r2, log_path));
    r = cli_expect(s, 0, "submit", "--server", url, "--support", s->csv, NULL);
    fake_stop(s);
    assert_string_equal(r.out, "j_0123456789abcdef0123\n");
    expect_has(r.err, "submit retry line", "retry 1 in");
    cli_free(&r);
    char *log = read_text(log_path);
    char *k1 = strstr(log, "Idempotency-Key: ");
    char *k2 = k1 ? strstr(k1 + 1, "Idempotency-Key: ") : NULL;
    if (!k1 || !k2 || strncmp(k1, k2, 17 + 32) != 0 || strspn(k1 + 17, "0123456789abcdef") != 32)
        fail_msg("the retried POST did not repeat one 32-hex-digit Idempotency-Key:\n%s", log);
    free(log);

    /* POST without a key (retrieve): a lost answer is not retried */
    const char *r3[] = {"", gens, NULL};
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fake_start(s, r3, log_path));
    r = cli_expect(s, 3, "retrieve", "--server", url, "--support", s->st, NULL);
    fake_stop(s);
    expect_has(r.err, "retrieve without retry", "not retried");
    assert_null(strstr(r.err, "retry 1 in"));
    cli_free(&r);

    /* a 5xx that lasts: exit 3 with the daemon's message */
    const char *r4[] = {boom, boom, boom, boom, boom, boom, boom, boom, boom, boom, NULL};
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fake_start(s, r4, log_path));
    r = cli_expect(s, 3, "jobs", "--server", url, "--retry-for", "0.5", NULL);
    fake_stop(s);
    expect_has(r.err, "lasting 500", "daemon error: 500 internal: boom (gave up after");
    expect_has(r.err, "lasting 500", "retry 1 in");
    cli_free(&r);
    free(busy);
    free(gens);
    free(job);
    free(boom);
}

/* A daemon with room for one queued job and slow jobs allowed: cancel a
 * queued and a running job, retry on 503 queue_full, wait --timeout. */
static void test_cancel_queue_full_retry(void **state)
{
    suite *s = *state;
    at_daemon *b = &s->extra;
    const char *extra[] = {"--max-queue", "1", "--max-candidates", "1024", "--workers", "1", NULL};
    at_start(b, s->dir, "busy", extra);
    at_wait_ready(b);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", b->port);

    char slow[64], queued[64];
    cli_out r = cli_expect(s, 0, "submit", "--server", url, "--support", s->csv, "--candidates",
                           "1024", "--steps", "1000", "--seed", "1", NULL);
    first_line(r.out, slow, sizeof slow);
    cli_free(&r);
    at_wait_running(b, slow, 60.0);
    r = cli_expect(s, 0, "submit", "--server", url, "--support", s->csv, "--candidates", "1024",
                   "--steps", "1000", "--seed", "2", NULL);
    first_line(r.out, queued, sizeof queued);
    cli_free(&r);

    /* the queue is full: this submit retries on 503 until there is room */
    char third_out[640];
    snprintf(third_out, sizeof third_out, "%s/third.safetensors", s->dir);
    const char *args[] = {"submit",  "--server",    url,  "--support", s->csv, "--candidates",
                          "2",       "--steps",     "4",  "--seed",    "3",    "--out",
                          third_out, "--retry-for", "60", NULL};
    cli_proc third = cli_spawn(s, args);
    double t0 = at_now();
    for (;;) {
        char *err = read_text(third.err);
        int retried = strstr(err, "503 queue_full") && strstr(err, "retry 1 in");
        free(err);
        if (retried)
            break;
        if (at_now() - t0 > 30.0) {
            cli_out t = cli_finish(&third);
            fail_msg("no retry line on 503 within 30 s:\n%s\n%s", t.out, t.err);
        }
        at_sleep(0.05);
    }

    r = cli_expect(s, 0, "cancel", queued, "--server", url, NULL);
    expect_has(r.out, "cancel queued", "cancelled");
    cli_free(&r);
    r = cli_expect(s, 0, "cancel", slow, "--server", url, NULL);
    expect_has(r.out, "cancel running", "cancel requested");
    cli_free(&r);
    r = cli_expect(s, 1, "wait", slow, "--server", url, "--timeout", "60", NULL);
    expect_has(r.err, "wait on a cancelled job", "cancelled");
    cli_free(&r);
    r = cli_expect(s, 1, "status", slow, "--server", url, NULL);
    expect_has(r.out, "status of a cancelled job", "cancelled");
    cli_free(&r);
    r = cli_expect(s, 1, "status", queued, "--server", url, "--json", NULL);
    json_t *v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "cancelled");
    json_decref(v);
    cli_free(&r);

    cli_out t = cli_finish(&third);
    if (t.status != 0)
        fail_msg("the retried submit: exit %d\n%s\n%s", t.status, t.out, t.err);
    char third_id[64];
    first_line(t.out, third_id, sizeof third_id);
    assert_true(is_job_id(third_id));
    expect_has(t.out, "the retried submit", "wrote ");
    assert_int_equal(access(third_out, F_OK), 0);
    cli_free(&t);

    r = cli_expect(s, 0, "jobs", "--server", url, "--state", "cancelled", "--json", NULL);
    expect_has(r.out, "cancelled jobs", slow);
    expect_has(r.out, "cancelled jobs", queued);
    cli_free(&r);

    /* wait --timeout on a job that is not done */
    char long_job[64];
    r = cli_expect(s, 0, "submit", "--server", url, "--support", s->csv, "--candidates", "1024",
                   "--steps", "1000", "--seed", "4", NULL);
    first_line(r.out, long_job, sizeof long_job);
    cli_free(&r);
    r = cli_expect(s, 1, "wait", long_job, "--server", url, "--timeout", "0.5", NULL);
    expect_has(r.err, "wait --timeout", "after 0.5 s (--timeout)");
    expect_has(r.err, "wait --timeout", long_job);
    if (r.seconds > 10.0)
        fail_msg("wait --timeout 0.5 took %.1f s", r.seconds);
    cli_free(&r);
    r = cli_expect(s, 0, "cancel", long_job, "--server", url, NULL);
    cli_free(&r);
    json_t *j = at_wait_done(b, long_job, 60.0);
    assert_string_equal(at_state(j), "cancelled");
    json_decref(j);
    assert_int_equal(at_stop(b, SIGTERM, 30.0), 0);
}

static void test_tokens(void **state)
{
    suite *s = *state;
    char tokens[640];
    snprintf(tokens, sizeof tokens, "%s/tokens.txt", s->dir);
    const char *text = "writer-token-0001 write ci\nreader-token-0001 read dashboard\n";
    tu_write_bytes(tokens, text, strlen(text));
    at_daemon *t = &s->extra;
    const char *extra[] = {"--tokens", tokens, NULL};
    at_start(t, s->dir, "tokens", extra);
    at_wait_ready(t);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", t->port);
    cli_out r = cli_expect(s, 4, "generators", "--server", url, NULL);
    expect_has(r.err, "no token", "401 unauthenticated");
    cli_free(&r);
    r = cli_expect(s, 0, "generators", "--server", url, "--token", "reader-token-0001", NULL);
    cli_free(&r);
    setenv("D2NWG_TOKEN", "reader-token-0001", 1);
    r = cli_expect(s, 0, "jobs", "--server", url, NULL);
    cli_free(&r);
    r = cli_expect(s, 4, "submit", "--server", url, "--support", s->csv, NULL);
    expect_has(r.err, "read token on submit", "403 permission_denied");
    cli_free(&r);
    unsetenv("D2NWG_TOKEN");
    r = cli_expect(s, 0, "submit", "--server", url, "--token", "writer-token-0001", "--support",
                   s->csv, "--candidates", "2", "--steps", "4", "--wait", "--quiet", NULL);
    char job[64];
    first_line(r.out, job, sizeof job);
    assert_true(is_job_id(job));
    cli_free(&r);
    /* the token and --json before the command */
    r = cli_expect(s, 0, "--server", url, "--token", "reader-token-0001", "--json", "status", job,
                   NULL);
    json_t *v = parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(v, "id")), job);
    json_decref(v);
    cli_free(&r);
    r = cli_expect(s, 4, "--server", url, "status", job, NULL);
    expect_has(r.err, "no token, --server first", "401 unauthenticated");
    cli_free(&r);
    assert_int_equal(at_stop(t, SIGTERM, 30.0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_backoff_policy),
        cmocka_unit_test(test_server_down),
        cmocka_unit_test(test_retry_scripted_server),
        cmocka_unit_test(test_generators),
        cmocka_unit_test(test_submit_wait_identical_to_generate),
        cmocka_unit_test(test_status_jobs_wait),
        cmocka_unit_test(test_jobs_follow),
        cmocka_unit_test(test_global_options_first),
        cmocka_unit_test(test_lineage_and_fetch),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_retrieve),
        cmocka_unit_test(test_cancel_queue_full_retry),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
