/* test_api_http.c - requests an attacker or a careless client sends, over raw
 * sockets (libcurl would not send them): two Content-Length headers,
 * Transfer-Encoding with Content-Length, a %00 or another control character
 * in the path, an over-long target. Each gets a 400/414 in the JSON envelope
 * and the connection is closed. Then connection slots: idle sockets from one
 * client address (127.0.0.1) up to the per-client cap do not stop /healthz
 * from another (127.0.0.2), an idle socket is closed after
 * --connection-timeout, and a long-poll (a suspended request) outlives it.
 * Cancels racing the end of short jobs get answers that match how the jobs
 * end, and a job that cannot write its checkpoints names no server path. */
#include "apitest.h"

#include "fileio.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define PER_CLIENT 8
#define IDLE_SOCKETS 40

typedef struct ctx {
    char *dir;
    at_daemon d;
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    *state = c;
    c->dir = tu_tmpdir("api-http");
    char cap[16];
    snprintf(cap, sizeof cap, "%d", PER_CLIENT);
    const char *args[] = {"--max-connections-per-client", cap, "--connection-timeout", "1",
                          NULL};
    at_start(&c->d, c->dir, "http", args);
    at_wait_ready(&c->d);
    return 0;
}

static int group_teardown(void **state)
{
    ctx *c = *state;
    if (!c)
        return 0;
    int code = at_stop(&c->d, SIGTERM, 30);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return code == 0 ? 0 : -1;
}

/* A TCP connection to the daemon from source address `from` (NULL: any). */
static int connect_from(const ctx *c, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    if (from) {
        assert_int_equal(inet_pton(AF_INET, from, &a.sin_addr), 1);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    }
    a.sin_port = htons((uint16_t)c->d.port);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Everything the daemon sends until it closes or `timeout` passes; *closed
 * says whether it closed. Returns a malloc'd NUL-terminated string. */
static char *read_all(int fd, double timeout, int *closed)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    *closed = 0;
    double t0 = at_now();
    while (at_now() - t0 < timeout) {
        struct pollfd p = {fd, POLLIN, 0};
        int ms = (int)((timeout - (at_now() - t0)) * 1000.0) + 1;
        if (poll(&p, 1, ms) <= 0)
            continue;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            *closed = 1;
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Send `req` on a fresh connection and expect `status` with the error
 * envelope (`code`, `field`) and the connection closed. */
static void expect_raw(const ctx *c, const char *req, size_t len, int status, const char *code,
                       const char *field)
{
    int fd = connect_from(c, NULL);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the daemon may answer and close before reading it all */
        off += (size_t)n;
    }
    int closed;
    char *resp = read_all(fd, 10.0, &closed);
    close(fd);
    int got = 0;
    if (sscanf(resp, "HTTP/1.1 %d", &got) != 1 || got != status)
        fail_msg("expected %d, got: %.300s", status, resp);
    if (!strstr(resp, "Content-Type: application/json"))
        fail_msg("not JSON: %.300s", resp);
    char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    at_resp r = {.status = got, .body = body + 4, .len = strlen(body + 4)};
    at_expect_error(&r, status, code, field);
    if (!closed)
        fail_msg("the connection stayed open after: %.200s", resp);
    free(resp);
}

static void test_framing(void **state)
{
    ctx *c = *state;
    static const char two_lengths[] =
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}";
    expect_raw(c, two_lengths, strlen(two_lengths), 400, "invalid_argument",
               "header.Content-Length");
    static const char same_lengths[] =
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}";
    expect_raw(c, same_lengths, strlen(same_lengths), 400, "invalid_argument",
               "header.Content-Length");
    static const char te_and_cl[] =
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    expect_raw(c, te_and_cl, strlen(te_and_cl), 400, "invalid_argument",
               "header.Transfer-Encoding");
    /* nothing was submitted by any of them */
    assert_int_equal(at_count_jobs(&c->d, NULL), 0);
}

static void test_control_characters(void **state)
{
    ctx *c = *state;
    /* a real job: %00 after its id must not reach it */
    json_t *job = at_job_json(1, 5, 7, 1);
    char id[64];
    at_submit(&c->d, job, id);
    json_decref(job);
    json_t *done = at_wait_done(&c->d, id, 120);
    json_decref(done);
    const char *suffixes[] = {"%00anything", "%00", "%0a", "%1F", "%7f", "?wait=1%00"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char req[256];
        int n = snprintf(req, sizeof req, "GET /v1/jobs/%s%s HTTP/1.1\r\nHost: x\r\n\r\n", id,
                         suffixes[i]);
        expect_raw(c, req, (size_t)n, 400, "invalid_argument", "path");
    }
    /* the plain path still answers */
    json_t *j = at_job(&c->d, id, 0);
    assert_string_equal(at_state(j), "succeeded");
    json_decref(j);
}

static void test_long_target(void **state)
{
    ctx *c = *state;
    /* a 100 kB target: 414 in the envelope, not libmicrohttpd's HTML page */
    size_t n = 100000;
    char *req = malloc(n + 64);
    assert_non_null(req);
    int k = snprintf(req, 64, "GET /v1/jobs/");
    memset(req + k, 'a', n);
    k += (int)n;
    k += snprintf(req + k, 40, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_raw(c, req, (size_t)k, 414, "uri_too_long", "path");
    /* a long query alone */
    k = snprintf(req, 64, "GET /healthz?x=");
    memset(req + k, 'b', 9000);
    k += 9000;
    k += snprintf(req + k, 40, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_raw(c, req, (size_t)k, 414, "uri_too_long", "path");
    free(req);
}

static long healthz_from(const ctx *c, const char *from, double timeout)
{
    int fd = connect_from(c, from);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    int closed;
    char *resp = read_all(fd, timeout, &closed);
    close(fd);
    int status = 0;
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
        status = 0;
    free(resp);
    return status;
}

static void test_idle_sockets(void **state)
{
    ctx *c = *state;
    int fds[IDLE_SOCKETS];
    for (int i = 0; i < IDLE_SOCKETS; i++)
        fds[i] = connect_from(c, "127.0.0.1"); /* the kernel accepts; the daemon may refuse */
    at_sleep(0.3);
    /* another client address is served at once */
    double t0 = at_now();
    assert_int_equal(healthz_from(c, "127.0.0.2", 5.0), 200);
    assert_true(at_now() - t0 < 2.0);
    /* the daemon kept at most PER_CLIENT of them: the rest were closed */
    int closed_count = 0;
    for (int i = 0; i < IDLE_SOCKETS; i++) {
        struct pollfd p = {fds[i], POLLIN, 0};
        char b;
        if (poll(&p, 1, 0) == 1 && recv(fds[i], &b, 1, MSG_DONTWAIT) <= 0)
            closed_count++;
    }
    if (closed_count < IDLE_SOCKETS - PER_CLIENT)
        fail_msg("only %d of %d idle sockets were refused (cap %d)", closed_count, IDLE_SOCKETS,
                 PER_CLIENT);
    /* the kept ones are closed once idle for --connection-timeout (1 s) */
    at_sleep(2.5);
    for (int i = 0; i < IDLE_SOCKETS; i++) {
        int closed;
        char *rest = read_all(fds[i], 0.05, &closed);
        if (!closed)
            fail_msg("idle socket %d still open after the connection timeout", i);
        free(rest);
        close(fds[i]);
    }
    /* and the first client is served again */
    assert_int_equal(healthz_from(c, "127.0.0.1", 5.0), 200);
}

static void cancel_job(const ctx *c, const char *id, long *status)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", id);
    at_resp r = at_request(&c->d, "POST", path, NULL, 0, NULL);
    *status = r.status;
    at_resp_free(&r);
}

static void test_long_poll_outlives_idle_timeout(void **state)
{
    ctx *c = *state;
    /* a long-poll is a suspended request, not an idle connection: a wait of
     * 2.5 s on a job queued behind two long ones (one worker) outlives the
     * 1 s idle timeout and is answered (200, not finished); then all three
     * are cancelled */
    char ids[3][64];
    for (int i = 0; i < 3; i++) {
        json_t *job = at_job_json(i < 2 ? 64 : 1, 1000, 11 + i, 2);
        at_submit(&c->d, job, ids[i]);
        json_decref(job);
    }
    double t0 = at_now();
    json_t *j = at_job(&c->d, ids[2], 2.5); /* fails unless 200 */
    double took = at_now() - t0;
    if (at_terminal(at_state(j)))
        fail_msg("the job ended (%s) within %.1f s: too quick to hold a long-poll past the "
                 "idle timeout", at_state(j), took);
    assert_true(took > 2.0);
    json_decref(j);
    for (int i = 2; i >= 0; i--) {
        long st;
        cancel_job(c, ids[i], &st);
        json_t *end = at_wait_done(&c->d, ids[i], 120);
        if (i == 2 || st != 409)
            assert_string_equal(at_state(end), "cancelled");
        json_decref(end);
    }
}

/* A cancel racing the job's end: the answer never lies. 202 (requested)
 * and 200 (cancelled while queued) end `cancelled`; 409 means the job ended,
 * or is ending, on its own. Cancels land at staggered moments of short jobs,
 * so some hit the end of generation. */
static void test_cancel_race(void **state)
{
    ctx *c = *state;
    enum { TRIES = 40 };
    int tally[3] = {0, 0, 0}; /* 200, 202, 409 */
    for (int i = 0; i < TRIES; i++) {
        json_t *job = at_job_json(1, 20, 5000 + i, (unsigned)(i % 5));
        char id[64], path[128];
        at_submit(&c->d, job, id);
        json_decref(job);
        at_sleep(0.004 * (double)(i % 20));
        snprintf(path, sizeof path, "/v1/jobs/%s:cancel", id);
        at_resp r = at_request(&c->d, "POST", path, NULL, 0, NULL);
        long st = r.status;
        at_resp_free(&r);
        json_t *done = at_wait_done(&c->d, id, 120);
        const char *end = at_state(done);
        if ((st == 200 || st == 202) && strcmp(end, "cancelled") != 0)
            fail_msg("try %d: cancel answered %ld but the job ended %s", i, st, end);
        if (st == 409 && !strcmp(end, "cancelled"))
            fail_msg("try %d: cancel answered 409 but the job ended cancelled", i);
        if (st != 200 && st != 202 && st != 409)
            fail_msg("try %d: cancel answered %ld", i, st);
        tally[st == 200 ? 0 : st == 202 ? 1 : 2]++;
        json_decref(done);
    }
    printf("cancel race: %d x 200, %d x 202, %d x 409 over %d tries\n", tally[0], tally[1],
           tally[2], TRIES);
}

/* A job whose checkpoints cannot be written (the checkpoint folder replaced
 * by a file: ENOTDIR, as ENOSPC would be) fails with the cause only; the
 * path, which names the server's data folder, goes to the log. */
static void test_save_error_hides_paths(void **state)
{
    ctx *c = *state;
    char ckdir[700], cmd[1600];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", c->d.data);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && touch '%s'", ckdir, ckdir);
    assert_int_equal(system(cmd), 0);
    json_t *job = at_job_json(1, 5, 99, 4);
    char id[64];
    at_submit(&c->d, job, id);
    json_decref(job);
    json_t *end = at_wait_done(&c->d, id, 120);
    snprintf(cmd, sizeof cmd, "rm -f '%s' && mkdir '%s'", ckdir, ckdir);
    assert_int_equal(system(cmd), 0);
    const char *dialect = getenv("D2NWG_TEST_STORE");
    if (dialect && !strcmp(dialect, "postgres")) {
        /* PostgreSQL keeps the bytes in the database: no file to fail */
        assert_string_equal(at_state(end), "succeeded");
        json_decref(end);
        return;
    }
    assert_string_equal(at_state(end), "failed");
    const char *msg =
        json_string_value(json_object_get(json_object_get(end, "error"), "message"));
    assert_non_null(msg);
    if (strstr(msg, c->d.data) || strstr(msg, "/checkpoints") || strstr(msg, ".tmp"))
        fail_msg("the job's error names a server path: %s", msg);
    assert_string_equal(msg, "saving the checkpoints failed: Not a directory");
    json_decref(end);
    /* the log has the whole story */
    unsigned char *log = NULL;
    size_t n = 0;
    d2_error err;
    d2_error_clear(&err);
    assert_int_equal(d2_read_file(c->d.log, &log, &n, 1 << 26, &err), 0);
    if (!strstr((const char *)log, "saving checkpoints failed") ||
        !strstr((const char *)log, "/checkpoints/"))
        fail_msg("the log does not name the failed file");
    free(log);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_long_target),
        cmocka_unit_test(test_idle_sockets),
        cmocka_unit_test(test_long_poll_outlives_idle_timeout),
        cmocka_unit_test(test_cancel_race),
        cmocka_unit_test(test_save_error_hides_paths),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
