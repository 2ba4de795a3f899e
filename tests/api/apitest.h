/* apitest.h - helpers for the API tests: start a real d2nwgd on a free
 * loopback port (--listen 127.0.0.1:0 --port-file), talk real HTTP with
 * libcurl, build request bodies, stop the daemon with a signal.
 *
 * The daemon is $D2NWG_BUILD/d2nwgd (default build/d2nwgd); the generator is
 * the shared quick fixture (`sh tests/api/fixture.sh BUILD`). Each test
 * program gives every daemon a fresh --data directory under $TMPDIR. */
#ifndef D2_APITEST_H
#define D2_APITEST_H

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "tu_pg.h"

#include "common.h"

typedef struct at_daemon {
    pid_t pid;
    int port;
    char dir[512];      /* the test's scratch directory */
    char data[600];     /* --data */
    char log[600];      /* the daemon's stderr */
    char portfile[600];
    char store[1200];   /* --store with D2NWG_TEST_STORE=postgres, else "" */
} at_daemon;

typedef struct at_resp {
    long status;
    char *body;
    size_t len;
    char *headers;
    size_t hlen;
} at_resp;

static inline double at_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void at_sleep(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Path of the quick generator bundle (built once per build directory). */
static inline const char *at_fixture(void)
{
    static char path[1024];
    if (path[0])
        return path;
    const char *b = getenv("D2NWG_BUILD");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sh tests/api/fixture.sh '%s'", b && *b ? b : "build");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(path, sizeof path, p))
        path[0] = '\0';
    int rc = pclose(p);
    if (rc != 0 || !path[0])
        fail_msg("tests/api/fixture.sh failed (%d)", rc);
    path[strcspn(path, "\n")] = '\0';
    return path;
}

static inline void at_print_log(const at_daemon *d)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s' >&2", d->log);
    int rc = system(cmd);
    (void)rc;
}

/* Start d2nwgd with --data DIR/<name>, --listen 127.0.0.1:0 and the extra
 * arguments (NULL-terminated; the default generator unless one is given).
 * With D2NWG_TEST_STORE=postgres (tests/run_tests.sh runs part of the suite
 * so) the store is a PostgreSQL database of the test cluster, one per --data
 * directory, unless the arguments give a --store. Waits until it has written
 * its port. */
static inline void at_start(at_daemon *d, const char *dir, const char *name,
                            const char *const *extra)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    snprintf(d->data, sizeof d->data, "%s/%s", dir, name);
    snprintf(d->log, sizeof d->log, "%s/%s.log", dir, name);
    snprintf(d->portfile, sizeof d->portfile, "%s/%s.port", dir, name);
    unlink(d->portfile);
    char bin[600];
    tu_build_path(bin, sizeof bin, "d2nwgd");
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    int has_gen = 0;
    for (int i = 0; extra && extra[i]; i++)
        if (!strncmp(extra[i], "--generator", 11)) /* also --generator-pending */
            has_gen = 1;
    if (!has_gen) {
        argv[n++] = "--generator";
        argv[n++] = at_fixture();
    }
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = d->portfile;
    argv[n++] = "--data";
    argv[n++] = d->data;
    const char *dialect = getenv("D2NWG_TEST_STORE");
    int has_store = 0;
    for (int i = 0; extra && extra[i]; i++)
        has_store |= !strcmp(extra[i], "--store") || !strncmp(extra[i], "--store=", 8);
    if (dialect && *dialect && strcmp(dialect, "sqlite") != 0 && strcmp(dialect, "postgres") != 0)
        fail_msg("D2NWG_TEST_STORE: expected sqlite or postgres, got '%s'", dialect);
    if (dialect && !strcmp(dialect, "postgres") && !has_store) {
        tu_pg_db_for(d->store, sizeof d->store, d->data);
        argv[n++] = "--store";
        argv[n++] = d->store;
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *lf = fopen(d->log, "a");
        if (lf) {
            dup2(fileno(lf), 2);
            fclose(lf);
        }
        execv(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    double t0 = at_now();
    while (at_now() - t0 < 60.0) {
        FILE *f = fopen(d->portfile, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port) == 1;
            fclose(f);
            if (ok && port > 0) {
                d->port = port;
                return;
            }
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            at_print_log(d);
            d->pid = 0;
            fail_msg("d2nwgd exited before listening (status %d)", status);
        }
        at_sleep(0.01);
    }
    at_print_log(d);
    fail_msg("d2nwgd did not write its port within 60 s");
}

static size_t at_write_cb(char *p, size_t size, size_t n, void *ud)
{
    at_resp *r = ud;
    size_t k = size * n;
    char *b = realloc(r->body, r->len + k + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, k);
    r->len += k;
    b[r->len] = '\0';
    r->body = b;
    return k;
}

static size_t at_header_cb(char *p, size_t size, size_t n, void *ud)
{
    at_resp *r = ud;
    size_t k = size * n;
    char *b = realloc(r->headers, r->hlen + k + 1);
    if (!b)
        return 0;
    memcpy(b + r->hlen, p, k);
    r->hlen += k;
    b[r->hlen] = '\0';
    r->headers = b;
    return k;
}

static inline void at_resp_free(at_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

/* With $D2NWG_CONTRACT_LOG set (tests/run_tests.sh sets it), every answered
 * request is appended to that file as one JSON line {method, path, status,
 * content_type, body} (body: the text of a JSON response, else null) for
 * tests/contract/check_responses.py to check against proto/openapi.yaml. */
static inline void at_contract_record(const char *method, const char *path, const at_resp *r,
                                      const char *content_type)
{
    const char *log = getenv("D2NWG_CONTRACT_LOG");
    if (!log || !*log || r->status == 0)
        return;
    int is_json = content_type && !strncasecmp(content_type, "application/json", 16);
    json_t *body = is_json ? json_stringn(r->body, r->len) : json_null();
    json_t *rec = json_pack("{s:s, s:s, s:i, s:s, s:o}", "method", method, "path", path,
                            "status", (int)r->status, "content_type",
                            content_type ? content_type : "", "body", body ? body : json_null());
    char *line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!line)
        fail_msg("contract log: cannot encode the %s %s response", method, path);
    size_t n = strlen(line);
    line[n] = '\n'; /* one write of the whole line: concurrent appends do not interleave */
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    ssize_t w = fd >= 0 ? write(fd, line, n + 1) : -1;
    if (fd >= 0)
        close(fd);
    free(line);
    if (w != (ssize_t)(n + 1))
        fail_msg("contract log %s: cannot append: %s", log, strerror(errno));
}

/* One request; headers is a NULL-terminated list of "Name: value" (may be
 * NULL); body NULL = none. A connection failure gives status 0. */
static inline at_resp at_request(const at_daemon *d, const char *method, const char *path,
                                 const void *body, size_t len, const char *const *headers)
{
    at_resp r;
    memset(&r, 0, sizeof r);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[1200];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", d->port, path);
    struct curl_slist *hl = NULL;
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, at_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, at_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hl);
    if (!r.body) {
        r.body = calloc(1, 1);
        assert_non_null(r.body);
    }
    char *ct = NULL;
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK)
        ct = NULL;
    at_contract_record(method, path, &r, ct);
    curl_easy_cleanup(c);
    return r;
}

static inline at_resp at_get(const at_daemon *d, const char *path)
{
    return at_request(d, "GET", path, NULL, 0, NULL);
}

static inline at_resp at_post_json(const at_daemon *d, const char *path, const json_t *v,
                                   const char *const *headers)
{
    char *s = json_dumps(v, JSON_COMPACT);
    assert_non_null(s);
    const char *h[8] = {"Content-Type: application/json", NULL};
    int n = 1;
    for (int i = 0; headers && headers[i] && n < 7; i++)
        h[n++] = headers[i];
    h[n] = NULL;
    at_resp r = at_request(d, "POST", path, s, strlen(s), h);
    free(s);
    return r;
}

/* The value of a response header (first match, case-insensitive) or "". */
static inline const char *at_header(const at_resp *r, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    if (!r->headers)
        return out;
    size_t nl = strlen(name);
    const char *p = r->headers;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = ll - (size_t)(v - p);
            if (vl >= cap)
                vl = cap - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        if (!eol)
            break;
        p = eol + 2;
    }
    return out;
}

static inline json_t *at_json(const at_resp *r)
{
    json_error_t je;
    json_t *v = json_loadb(r->body, r->len, 0, &je);
    if (!v)
        fail_msg("response (status %ld) is not JSON: %s\n%.400s", r->status, je.text, r->body);
    return v;
}

/* Expect an error response: status, code and (when not NULL) field. */
static inline void at_expect_error(const at_resp *r, long status, const char *code,
                                   const char *field)
{
    if (r->status != status)
        fail_msg("status %ld, expected %ld: %.400s", r->status, status, r->body);
    json_t *v = at_json(r);
    json_t *e = json_object_get(v, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *f = json_string_value(json_object_get(e, "field"));
    const char *m = json_string_value(json_object_get(e, "message"));
    if (!c || strcmp(c, code) != 0)
        fail_msg("code %s, expected %s: %.400s", c ? c : "(none)", code, r->body);
    if (!m || !m[0])
        fail_msg("error without a message: %.400s", r->body);
    if (field && (!f || strcmp(f, field) != 0))
        fail_msg("field %s, expected %s: %.400s", f ? f : "(none)", field, r->body);
    json_decref(v);
}

/* Wait until GET path answers `status` (e.g. /readyz 200); fails at once if
 * the daemon exits meanwhile. */
static inline void at_wait_status(at_daemon *d, const char *path, long status, double timeout)
{
    double t0 = at_now();
    long last = 0;
    while (at_now() - t0 < timeout) {
        at_resp r = at_get(d, path);
        last = r.status;
        at_resp_free(&r);
        if (last == status)
            return;
        int ws;
        if (d->pid > 0 && waitpid(d->pid, &ws, WNOHANG) == d->pid) {
            d->pid = 0;
            at_print_log(d);
            fail_msg("d2nwgd exited (status %d) while waiting for %s", ws, path);
        }
        at_sleep(0.02);
    }
    at_print_log(d);
    fail_msg("%s answered %ld, not %ld, within %.0f s", path, last, status, timeout);
}

/* Wait until /readyz answers 200 (generators can take a while to load).
 * Fails at once when the daemon exits (a generator that fails to load is
 * fatal: d2nwgd logs why and exits 1) or when /readyz says it can never
 * become ready: 503 shutting_down (draining), or any answer but 200/503. */
static inline void at_wait_ready(at_daemon *d)
{
    const double timeout = 90.0;
    double t0 = at_now();
    for (;;) {
        at_resp r = at_get(d, "/readyz");
        if (r.status == 200) {
            at_resp_free(&r);
            return;
        }
        int hopeless = r.status != 0 && r.status != 503;
        if (r.status == 503) {
            json_t *v = json_loadb(r.body, r.len, 0, NULL);
            const char *code =
                json_string_value(json_object_get(json_object_get(v, "error"), "code"));
            hopeless = !code || strcmp(code, "not_ready") != 0;
            json_decref(v);
        }
        if (hopeless) {
            at_print_log(d);
            fail_msg("/readyz answered %ld: d2nwgd will not become ready: %.400s", r.status,
                     r.body);
        }
        at_resp_free(&r);
        int ws;
        if (d->pid > 0 && waitpid(d->pid, &ws, WNOHANG) == d->pid) {
            d->pid = 0;
            at_print_log(d);
            fail_msg("d2nwgd exited (status %d) before it was ready", ws);
        }
        if (at_now() - t0 > timeout) {
            at_print_log(d);
            fail_msg("/readyz not 200 within %.0f s", timeout);
        }
        at_sleep(0.02);
    }
}

/* Send sig and wait for the exit; returns the exit status (or 128+signal). */
static inline int at_stop(at_daemon *d, int sig, double timeout)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    double t0 = at_now();
    int status = 0;
    for (;;) {
        pid_t w = waitpid(d->pid, &status, WNOHANG);
        if (w == d->pid)
            break;
        if (at_now() - t0 > timeout) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
            at_print_log(d);
            d->pid = 0;
            fail_msg("d2nwgd did not exit within %.0f s of signal %d", timeout, sig);
        }
        at_sleep(0.01);
    }
    d->pid = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* ---- request bodies ---- */

/* A deterministic support set: `way` classes x `shots` rows of `dim` values
 * (a class-dependent offset plus noise), in label order. */
static inline json_t *at_dataset_json(int way, int shots, int dim, int embeddings, unsigned seed)
{
    json_t *rows = json_array(), *labels = json_array();
    unsigned s = seed * 2654435761u + 1u;
    for (int c = 0; c < way; c++)
        for (int k = 0; k < shots; k++) {
            json_t *row = json_array();
            for (int j = 0; j < dim; j++) {
                s = s * 1664525u + 1013904223u;
                double u = (double)(s >> 8) / 16777216.0;
                double v = embeddings ? (u - 0.5) * 2.0 + ((j % way) == c ? 1.5 : 0.0)
                                      : u * 0.5 + ((j % way) == c ? 0.5 : 0.0);
                json_array_append_new(row, json_real(v));
            }
            json_array_append_new(rows, row);
            json_array_append_new(labels, json_integer(c));
        }
    return json_pack("{s:o, s:o}", embeddings ? "embeddings" : "samples", rows, "labels", labels);
}

/* A job request for the quick generator (5-way, 128-d embeddings). */
static inline json_t *at_job_json(int candidates, int steps, long long seed, unsigned data_seed)
{
    json_t *j = json_pack("{s:s, s:o, s:i, s:i, s:I}", "generator", "default", "dataset",
                          at_dataset_json(5, 3, 128, 1, data_seed), "candidates", candidates,
                          "steps", steps, "seed", (json_int_t)seed);
    assert_non_null(j);
    return j;
}

/* Submit a job (expects 202) and return its id (static buffer per call site). */
static inline void at_submit(const at_daemon *d, const json_t *job, char id[64])
{
    at_resp r = at_post_json(d, "/v1/jobs", job, NULL);
    if (r.status != 202)
        fail_msg("submit: %ld %.400s", r.status, r.body);
    json_t *v = at_json(&r);
    snprintf(id, 64, "%s", json_string_value(json_object_get(v, "id")));
    json_decref(v);
    at_resp_free(&r);
}

/* GET /v1/jobs/{id}; returns the job JSON (caller decrefs). */
static inline json_t *at_job(const at_daemon *d, const char *id, double wait)
{
    char path[256];
    if (wait > 0)
        snprintf(path, sizeof path, "/v1/jobs/%.200s?wait=%g", id, wait);
    else
        snprintf(path, sizeof path, "/v1/jobs/%.200s", id);
    at_resp r = at_get(d, path);
    if (r.status != 200)
        fail_msg("GET %s: %ld %.400s", path, r.status, r.body);
    json_t *v = at_json(&r);
    at_resp_free(&r);
    return v;
}

static inline const char *at_state(const json_t *job)
{
    const char *s = json_string_value(json_object_get(job, "state"));
    return s ? s : "";
}

static inline int at_terminal(const char *s)
{
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

/* Long-poll until the job reaches a terminal state (or `timeout`). */
static inline json_t *at_wait_done(const at_daemon *d, const char *id, double timeout)
{
    double t0 = at_now();
    for (;;) {
        json_t *j = at_job(d, id, 10);
        if (at_terminal(at_state(j)))
            return j;
        if (at_now() - t0 > timeout) {
            at_print_log(d);
            fail_msg("job %s still %s after %.0f s", id, at_state(j), timeout);
        }
        json_decref(j);
    }
}

/* Poll until the job is running with some progress. */
static inline void at_wait_running(const at_daemon *d, const char *id, double timeout)
{
    double t0 = at_now();
    for (;;) {
        json_t *j = at_job(d, id, 0);
        int running = !strcmp(at_state(j), "running") &&
                      json_number_value(json_object_get(j, "progress")) > 0.0;
        const char *st = at_state(j);
        if (at_terminal(st))
            fail_msg("job %s finished (%s) before it could be caught running", id, st);
        json_decref(j);
        if (running)
            return;
        if (at_now() - t0 > timeout)
            fail_msg("job %s not running after %.0f s", id, timeout);
        at_sleep(0.005);
    }
}

/* Count of jobs the daemon lists in `state` (NULL: all), following pages. */
static inline int at_count_jobs(const at_daemon *d, const char *state)
{
    int count = 0;
    char after[64] = "";
    for (;;) {
        char path[256];
        snprintf(path, sizeof path, "/v1/jobs?limit=200%s%s%s%s", state ? "&state=" : "",
                 state ? state : "", after[0] ? "&after=" : "", after);
        at_resp r = at_get(d, path);
        assert_int_equal(r.status, 200);
        json_t *v = at_json(&r);
        count += (int)json_array_size(json_object_get(v, "jobs"));
        json_t *next = json_object_get(v, "next_after");
        int more = json_is_string(next);
        if (more)
            snprintf(after, sizeof after, "%s", json_string_value(next));
        json_decref(v);
        at_resp_free(&r);
        if (!more)
            return count;
    }
}

/* The value of one metric line ("name{labels}" exactly), or -1. */
static inline double at_metric(const at_daemon *d, const char *series)
{
    at_resp r = at_get(d, "/metrics");
    assert_int_equal(r.status, 200);
    double v = -1.0;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p;) {
        if (!strncmp(p, series, n) && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    at_resp_free(&r);
    return v;
}

#endif
