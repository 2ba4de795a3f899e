/* test_api_events.c - GET /v1/events over real HTTP: a reader sees a job's
 * state and progress events while it runs, disconnects, resumes with
 * Last-Event-ID and misses no event (the ids it gets are contiguous); an id
 * the daemon no longer holds is answered with events_lost and the ring; a bad
 * id is a 400; a client that stops reading is dropped once it is
 * --events-client-buffer bytes behind while a reading one misses nothing and
 * /healthz stays quick; 200 open streams leave /healthz latency within 2x; a
 * SIGTERM with streams open ends them and the daemon exits promptly. */
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "apitest.h"

#define MAX_EVENTS 4096

typedef struct sse_ev {
    long long id; /* 0: the frame had no id line */
    char type[32];
    json_t *data;
} sse_ev;

typedef struct sse {
    const at_daemon *d;
    long long last_id;     /* sent as Last-Event-ID when >= 0 */
    const char *job;       /* stop at this job's `until` state */
    const char *until;     /* "running", or "done" (any terminal state) */
    char line[65536];
    size_t llen;
    long long cur_id;
    char cur_type[32];
    char *cur_data;
    sse_ev ev[MAX_EVENTS];
    int n, comments, stop;
    long status;
    char ctype[64];
} sse;

static int stop_at(const sse *s, const sse_ev *e)
{
    if (!s->until || strcmp(e->type, "job") != 0)
        return 0;
    const char *id = json_string_value(json_object_get(e->data, "id"));
    const char *st = at_state(e->data);
    if (s->job && (!id || strcmp(id, s->job) != 0))
        return 0;
    return !strcmp(s->until, "done") ? at_terminal(st) : !strcmp(st, s->until);
}

static void dispatch(sse *s)
{
    if (!s->cur_data && !s->cur_type[0])
        return;
    if (s->n < MAX_EVENTS) {
        sse_ev *e = &s->ev[s->n++];
        e->id = s->cur_id;
        snprintf(e->type, sizeof e->type, "%s", s->cur_type[0] ? s->cur_type : "message");
        e->data = s->cur_data ? json_loads(s->cur_data, 0, NULL) : NULL;
        if (!e->data)
            fail_msg("event %lld (%s): data is not JSON: %s", e->id, e->type,
                     s->cur_data ? s->cur_data : "(none)");
        if (stop_at(s, e))
            s->stop = 1;
    }
    free(s->cur_data);
    s->cur_data = NULL;
    s->cur_type[0] = '\0';
    s->cur_id = 0;
}

static void parse_line(sse *s, const char *l)
{
    if (!*l)
        dispatch(s);
    else if (*l == ':')
        s->comments++;
    else if (!strncmp(l, "id: ", 4))
        s->cur_id = atoll(l + 4);
    else if (!strncmp(l, "event: ", 7))
        snprintf(s->cur_type, sizeof s->cur_type, "%s", l + 7);
    else if (!strncmp(l, "data: ", 6)) {
        free(s->cur_data);
        s->cur_data = strdup(l + 6);
    }
}

static size_t sse_write(char *p, size_t size, size_t n, void *ud)
{
    sse *s = ud;
    size_t k = size * n;
    for (size_t i = 0; i < k; i++) {
        if (p[i] == '\n') {
            s->line[s->llen] = '\0';
            parse_line(s, s->line);
            s->llen = 0;
        } else if (s->llen + 1 < sizeof s->line) {
            s->line[s->llen++] = p[i];
        }
    }
    return s->stop ? 0 : k; /* 0: curl ends the transfer (the disconnect) */
}

/* Read the stream until stop_at (or `timeout`); the caller frees the events. */
static void *sse_read(void *arg)
{
    sse *s = arg;
    CURL *c = curl_easy_init();
    char url[256], hdr[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/events", s->d->port);
    struct curl_slist *hl = NULL;
    if (s->last_id >= 0) {
        snprintf(hdr, sizeof hdr, "Last-Event-ID: %lld", s->last_id);
        hl = curl_slist_append(hl, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 90L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
    char *ct = NULL;
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(s->ctype, sizeof s->ctype, "%s", ct);
    at_resp rec = {s->status, NULL, 0, NULL, 0};
    at_contract_record("GET", "/v1/events", &rec, s->ctype);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return NULL;
}

static void sse_free(sse *s)
{
    for (int i = 0; i < s->n; i++)
        json_decref(s->ev[i].data);
    free(s->cur_data);
    free(s);
}

static sse *sse_new(const at_daemon *d, long long last_id, const char *job, const char *until)
{
    sse *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->d = d;
    s->last_id = last_id;
    s->job = job;
    s->until = until;
    return s;
}

typedef struct ctx {
    char *dir;
    at_daemon d;
} ctx;

static int group_setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    c->dir = tu_tmpdir("api-events");
    const char *args[] = {"--max-candidates", "1024", "--max-connections-per-client", "400",
                          "--events-client-buffer", "16384",
                          /* jobs on one core: the event loop's latency is measured */
                          "--threads", "1", NULL};
    at_start(&c->d, c->dir, "events", args);
    at_wait_ready(&c->d);
    *state = c;
    return 0;
}

static int group_teardown(void **state)
{
    ctx *c = *state;
    if (c->d.pid > 0)
        at_stop(&c->d, SIGTERM, 30);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return 0;
}

static void wait_clients(const at_daemon *d, double n)
{
    double t0 = at_now();
    while (at_metric(d, "d2nwgd_events_clients") != n) {
        if (at_now() - t0 > 20)
            fail_msg("d2nwgd_events_clients did not reach %g", n);
        at_sleep(0.02);
    }
}

static const sse_ev *last_event(const sse *s)
{
    assert_true(s->n > 0);
    return &s->ev[s->n - 1];
}

/* Ids of a stream's events (those with ids) follow on from `prev` by one. */
static long long check_contiguous(const sse *s, long long prev)
{
    for (int i = 0; i < s->n; i++) {
        if (!s->ev[i].id)
            continue;
        if (prev && s->ev[i].id != prev + 1)
            fail_msg("event %d: id %lld after %lld (an event was missed)", i, s->ev[i].id, prev);
        prev = s->ev[i].id;
    }
    return prev;
}

static void test_resume_misses_nothing(void **state)
{
    ctx *c = *state;
    sse *a = sse_new(&c->d, -1, NULL, "running");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sse_read, a), 0);
    wait_clients(&c->d, 1);
    json_t *job = at_job_json(512, 400, 7, 7);
    /* a long job of many candidates: refining each on the support set (scalar code,
     * slow under the sanitizers) is not what this test times */
    json_object_set_new(job, "refine", json_false());
    char id[64];
    at_submit(&c->d, job, id);
    json_decref(job);
    pthread_join(th, NULL); /* it disconnected at the running event */
    assert_int_equal(a->status, 200);
    assert_string_equal(a->ctype, "text/event-stream");
    assert_true(a->n >= 2);
    assert_string_equal(a->ev[0].type, "job");
    assert_string_equal(at_state(a->ev[0].data), "queued");
    assert_string_equal(json_string_value(json_object_get(a->ev[0].data, "id")), id);
    assert_string_equal(at_state(last_event(a)->data), "running");
    long long last = check_contiguous(a, 0);

    json_t *done = at_wait_done(&c->d, id, 120); /* events go on while nobody listens */
    assert_string_equal(at_state(done), "succeeded");
    json_decref(done);
    sse *b = sse_new(&c->d, last, id, "done");
    sse_read(b);
    assert_int_equal(b->status, 200);
    assert_true(b->n >= 2);
    assert_int_equal(b->ev[0].id, last + 1);
    check_contiguous(b, last);
    double p = 0;
    int progress = 0;
    for (int i = 0; i < b->n - 1; i++) {
        assert_string_equal(b->ev[i].type, "progress");
        double q = json_number_value(json_object_get(b->ev[i].data, "progress"));
        assert_true(q >= p && q <= 1.0);
        p = q;
        progress++;
    }
    const sse_ev *end = last_event(b);
    assert_string_equal(end->type, "job");
    assert_string_equal(at_state(end->data), "succeeded");
    TU_ASSERT_NEAR(json_number_value(json_object_get(end->data, "progress")), 1.0, 1e-9);
    printf("# resumed after event %lld: %d progress events and the end, none missed\n", last,
           progress);
    sse_free(a);
    sse_free(b);
}

/* An id older than the ring (or unknown): events_lost, then the whole ring. */
static void test_lost_and_bad_ids(void **state)
{
    ctx *c = *state;
    sse *s = sse_new(&c->d, 1, NULL, "done");
    sse_read(s);
    assert_int_equal(s->status, 200);
    assert_true(s->n >= 2);
    assert_string_equal(s->ev[0].type, "events_lost");
    assert_int_equal(s->ev[0].id, 0);
    assert_int_equal(json_integer_value(json_object_get(s->ev[0].data, "last_event_id")), 1);
    long long oldest = json_integer_value(json_object_get(s->ev[0].data, "oldest_event_id"));
    assert_int_equal(s->ev[1].id, oldest);
    assert_string_equal(s->ev[1].type, "generator"); /* the first event of this daemon */
    assert_string_equal(json_string_value(json_object_get(s->ev[1].data, "state")), "loaded");
    check_contiguous(s, 0);
    sse_free(s);

    const char *bad[] = {"Last-Event-ID: abc", NULL};
    at_resp r = at_request(&c->d, "GET", "/v1/events", NULL, 0, bad);
    at_expect_error(&r, 400, "invalid_argument", "header.Last-Event-ID");
    at_resp_free(&r);
    r = at_get(&c->d, "/v1/events?last_event_id=-3");
    at_expect_error(&r, 400, "invalid_argument", "last_event_id");
    at_resp_free(&r);
}

/* A client more than --events-client-buffer (16 KiB here) behind is dropped:
 * one that asks for the whole ring (Last-Event-ID: 0) when it holds more is
 * cut off at once, counted, and its connection closed, while a reading
 * client beside it misses nothing and /healthz stays quick. (A client that
 * merely stops reading gets there too, but only after libmicrohttpd's
 * connection buffer and the kernel's socket buffers, megabytes, are full.) */
static void test_slow_client_dropped(void **state)
{
    ctx *c = *state;
    sse *reader = sse_new(&c->d, -1, NULL, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sse_read, reader), 0);
    at_sleep(0.3);
    json_t *job = at_job_json(2, 5, 11, 11);
    for (int i = 0; i < 8; i++) { /* the ring passes 16 KiB: ~1 KB a job event */
        char id[64];
        at_submit(&c->d, job, id);
        json_decref(at_wait_done(&c->d, id, 60));
    }
    json_decref(job);
    double dropped0 = at_metric(&c->d, "d2nwgd_events_dropped_total");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)c->d.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char req[] = "GET /v1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    char buf[65536];
    ssize_t n;
    size_t got = 0;
    double t0 = at_now();
    while ((n = read(fd, buf, sizeof buf)) > 0 && at_now() - t0 < 20)
        got += (size_t)n;
    double took = at_now() - t0;
    close(fd);
    printf("# a client 16 KiB behind was dropped: %zu bytes, then the connection closed "
           "after %.2f s\n", got, took);
    assert_true(n <= 0 && took < 5.0);
    assert_true(got < 16384 + 4096);
    assert_true(at_metric(&c->d, "d2nwgd_events_dropped_total") == dropped0 + 1);
    double h0 = at_now();
    at_resp r = at_get(&c->d, "/healthz");
    assert_int_equal(r.status, 200);
    at_resp_free(&r);
    assert_true(at_now() - h0 < 0.5);
    /* the reading client goes on: one more job's events reach it */
    reader->until = "done"; /* written before the event it waits for exists */
    json_t *one = at_job_json(2, 5, 12, 12);
    char id[64];
    at_submit(&c->d, one, id);
    json_decref(one);
    json_decref(at_wait_done(&c->d, id, 60));
    pthread_join(th, NULL);
    check_contiguous(reader, 0);
    assert_true(reader->n >= 3 * 9);
    sse_free(reader);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p99 of /healthz over n requests, in seconds. */
static double healthz_p99(const at_daemon *d, int n)
{
    double *t = calloc((size_t)n, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < n; i++) {
        double t0 = at_now();
        at_resp r = at_get(d, "/healthz");
        t[i] = at_now() - t0;
        assert_int_equal(r.status, 200);
        at_resp_free(&r);
    }
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double p = t[(n * 99) / 100];
    free(t);
    return p;
}

/* The lowest of `rounds` p99s: one scheduling stall on a shared 2-core
 * machine (the job's worker runs beside it) moves a single p99 by several
 * milliseconds either way, as measured with and without the clients alike. */
static double healthz_p99_best(const at_daemon *d, int n, int rounds)
{
    double best = healthz_p99(d, n);
    for (int i = 1; i < rounds; i++) {
        double p = healthz_p99(d, n);
        best = p < best ? p : best;
    }
    return best;
}

/* A stream client that reads nothing: a socket with the request sent. */
static int raw_stream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char req[] = "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    return fd;
}

static void test_many_clients_latency(void **state)
{
    ctx *c = *state;
    enum { CLIENTS = 200, SAMPLES = 300, ROUNDS = 3 };
    json_t *job = at_job_json(1024, 1000, 9, 9);
    /* a long job of many candidates: refining each on the support set (scalar code,
     * slow under the sanitizers) is not what this test times */
    json_object_set_new(job, "refine", json_false());
    char id[64], path[128];
    at_submit(&c->d, job, id);
    json_decref(job);
    at_wait_running(&c->d, id, 30);
    double base = healthz_p99_best(&c->d, SAMPLES, ROUNDS);
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        fds[i] = raw_stream(c->d.port);
    wait_clients(&c->d, CLIENTS);
    double with = healthz_p99_best(&c->d, SAMPLES, ROUNDS);
    printf("# /healthz p99 while a job runs: %.2f ms with no event client, %.2f ms with %d\n",
           base * 1e3, with * 1e3, CLIENTS);
    /* 2x, over a floor of 1 ms: sub-millisecond timings on a shared machine jitter */
    double floor = base > 0.001 ? base : 0.001;
    if (with > 2.0 * floor)
        fail_msg("p99 %.2f ms with %d clients, %.2f ms without", with * 1e3, CLIENTS, base * 1e3);
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", id);
    at_resp r = at_request(&c->d, "POST", path, NULL, 0, NULL);
    assert_true(r.status == 200 || r.status == 202);
    at_resp_free(&r);
    json_t *done = at_wait_done(&c->d, id, 60);
    json_decref(done);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    /* MHD sees a closed suspended stream at its next write (the heartbeat) */
}

/* SIGTERM with a stream open: the stream ends and d2nwgd exits at once. */
static void test_shutdown_with_open_stream(void **state)
{
    ctx *c = *state;
    sse *s = sse_new(&c->d, -1, NULL, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sse_read, s), 0);
    at_sleep(0.5); /* connected (the count still holds the closed sockets above) */
    double t0 = at_now();
    assert_int_equal(at_stop(&c->d, SIGTERM, 15), 0);
    pthread_join(th, NULL);
    double took = at_now() - t0;
    printf("# SIGTERM with open streams: exited in %.2f s\n", took);
    assert_true(took < 8.0);
    assert_int_equal(s->status, 200);
    sse_free(s);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_misses_nothing),
        cmocka_unit_test(test_lost_and_bad_ids),
        cmocka_unit_test(test_slow_client_dropped),
        cmocka_unit_test(test_many_clients_latency),
        cmocka_unit_test(test_shutdown_with_open_stream),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
