/* test_api_fleet.c - three d2nwgd replicas on one PostgreSQL database
 * (the test cluster of tests/run_tests.sh, $D2NWG_TEST_PG):
 *   - jobs submitted round-robin to the three are all run, each by one
 *     replica (claimed with FOR UPDATE SKIP LOCKED under a lease);
 *   - one replica is killed with SIGKILL while it runs a job: its lease runs
 *     out, another replica runs the job again from the start;
 *   - every accepted job ends succeeded exactly once (one checkpoint row per
 *     rank, no job left queued or running), and each checkpoint's bytes,
 *     fetched from a replica that did not run it, equal those of the same
 *     request on a single SQLite daemon (the seed is recorded);
 *   - an Idempotency-Key replayed at another replica returns the first job,
 *     and one sent to two replicas at the same instant makes one job;
 *   - a long-poll at one replica wakes when another changes the job (LISTEN/
 *     NOTIFY), well before its wait (capped at 5 s for remote jobs) ends.
 * Fails (never skips) without a PostgreSQL cluster. */
#include <pthread.h>

#include "apitest.h"

#define REPLICAS 3
#define NJOBS 9
#define CANDIDATES 3
#define STEPS 150
#define LEASE "2000"

typedef struct ctx {
    char *dir;
    char dsn[1024];
    at_daemon r[REPLICAS];
    at_daemon single; /* SQLite, the reference */
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->dir = tu_tmpdir("api-fleet");
    tu_pg_newdb(c->dsn, sizeof c->dsn, "fleet");
    *state = c;
    return 0;
}

static void kill_daemon(at_daemon *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

static int teardown(void **state)
{
    ctx *c = *state;
    for (int i = 0; i < REPLICAS; i++)
        kill_daemon(&c->r[i]);
    kill_daemon(&c->single);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c);
    return 0;
}

static void start_replicas(ctx *c)
{
    const char *args[] = {"--store", c->dsn, "--store-lease-ms", LEASE, "--workers", "1",
                          "--threads", "1", NULL};
    for (int i = 0; i < REPLICAS; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        at_start(&c->r[i], c->dir, name, args);
    }
    for (int i = 0; i < REPLICAS; i++)
        at_wait_ready(&c->r[i]);
}

/* One row of SQL on the fleet's database (text, "" for none). */
static void db_value(const ctx *c, const char *sql, const char *param, char *out, size_t cap)
{
    PGconn *pc = PQconnectdb(c->dsn);
    if (PQstatus(pc) != CONNECTION_OK)
        fail_msg("%s", PQerrorMessage(pc));
    const char *v[1] = {param};
    PGresult *r = PQexecParams(pc, sql, param ? 1 : 0, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(pc));
    snprintf(out, cap, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(pc);
}

/* The job replica d runs now ("" when none): jobs.owner is HOST/PID/START. */
static void running_on(const ctx *c, const at_daemon *d, char *job, size_t cap)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "%%/%ld/%%", (long)d->pid);
    db_value(c, "SELECT id FROM jobs WHERE state = 'running' AND owner LIKE $1", pattern, job,
             cap);
}

static at_resp weights(const at_daemon *d, const char *ckpt)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/checkpoints/%s/weights", ckpt);
    at_resp r = at_get(d, path);
    if (r.status != 200)
        fail_msg("GET %s: %ld %.300s", path, r.status, r.body);
    return r;
}

/* Job i's checkpoints (from replica `from`) equal the reference's, byte for
 * byte and rank by rank. */
static void same_bytes(ctx *c, const at_daemon *from, const char *id, const char *ref_id)
{
    json_t *a = at_job(from, id, 0), *b = at_job(&c->single, ref_id, 0);
    json_t *ca = json_object_get(json_object_get(a, "result"), "checkpoints");
    json_t *cb = json_object_get(json_object_get(b, "result"), "checkpoints");
    assert_true(json_array_size(ca) >= CANDIDATES);
    assert_int_equal(json_array_size(ca), json_array_size(cb));
    for (size_t k = 0; k < json_array_size(ca); k++) {
        const char *ka = json_string_value(json_object_get(json_array_get(ca, k), "id"));
        const char *kb = json_string_value(json_object_get(json_array_get(cb, k), "id"));
        at_resp wa = weights(from, ka), wb = weights(&c->single, kb);
        assert_true(wa.len > 0);
        assert_int_equal(wa.len, wb.len);
        assert_memory_equal(wa.body, wb.body, wa.len);
        at_resp_free(&wa);
        at_resp_free(&wb);
    }
    json_decref(a);
    json_decref(b);
}

/* Kill a replica that runs a job; returns that job's id in killed_job. */
static int kill_one_mid_job(ctx *c, char *killed_job, size_t cap)
{
    double t0 = at_now();
    while (at_now() - t0 < 120.0) {
        for (int i = 1; i < REPLICAS; i++) {
            running_on(c, &c->r[i], killed_job, cap);
            if (killed_job[0]) {
                kill_daemon(&c->r[i]);
                return i;
            }
        }
        at_sleep(0.02);
    }
    fail_msg("no replica but the first ran a job within 120 s");
    return -1;
}

static void submit_all(ctx *c, char ids[NJOBS][64])
{
    for (int i = 0; i < NJOBS; i++) {
        json_t *job = at_job_json(CANDIDATES, STEPS, 1000 + i, 50 + (unsigned)i);
        at_submit(&c->r[i % REPLICAS], job, ids[i]);
        json_decref(job);
    }
}

static void test_fleet_kill(void **state)
{
    ctx *c = *state;
    start_replicas(c);
    char ids[NJOBS][64];
    submit_all(c, ids);
    char killed_job[64] = "";
    int killed = kill_one_mid_job(c, killed_job, sizeof killed_job);
    at_daemon *live = &c->r[0];
    int nck = 0;
    for (int i = 0; i < NJOBS; i++) {
        json_t *j = at_wait_done(live, ids[i], 180.0);
        if (strcmp(at_state(j), "succeeded") != 0)
            fail_msg("job %s ended %s: %s", ids[i], at_state(j),
                     json_dumps(json_object_get(j, "error"), JSON_COMPACT));
        size_t n = json_array_size(json_object_get(json_object_get(j, "result"), "checkpoints"));
        assert_true(n >= CANDIDATES); /* the candidates and the gate's baselines */
        nck += (int)n;
        if (!strcmp(ids[i], killed_job)) /* ran twice: on the killed one, then again */
            assert_true(json_integer_value(json_object_get(j, "attempts")) >= 2);
        json_decref(j);
    }
    char v[64];
    db_value(c, "SELECT count(*) FROM jobs WHERE state <> 'succeeded'", NULL, v, sizeof v);
    assert_string_equal(v, "0");
    db_value(c, "SELECT count(*) FROM checkpoints", NULL, v, sizeof v);
    assert_int_equal(atoi(v), nck); /* one row per rank: none stored twice */
    /* the reference: the same requests on one SQLite daemon */
    const char *single_args[] = {"--store", "", "--workers", "1", "--threads", "1", NULL};
    char single_db[700];
    snprintf(single_db, sizeof single_db, "%s/single.sqlite", c->dir);
    single_args[1] = single_db;
    at_start(&c->single, c->dir, "single", single_args);
    at_wait_ready(&c->single);
    for (int i = 0; i < NJOBS; i++) {
        json_t *job = at_job_json(CANDIDATES, STEPS, 1000 + i, 50 + (unsigned)i);
        char ref[64];
        at_submit(&c->single, job, ref);
        json_decref(job);
        json_decref(at_wait_done(&c->single, ref, 180.0));
        /* from the replica after the submitting one: not (always) the runner */
        const at_daemon *from = &c->r[(i + 1) % REPLICAS];
        if (from->pid <= 0 || from == &c->r[killed])
            from = live;
        same_bytes(c, from, ids[i], ref);
    }
}

typedef struct racer {
    const at_daemon *d;
    const json_t *job;
    const char *key; /* the Idempotency-Key header */
    long status;
    char id[64];
} racer;

static void *race(void *arg)
{
    racer *x = arg;
    const char *key[] = {x->key, NULL};
    at_resp r = at_post_json(x->d, "/v1/jobs", x->job, key);
    x->status = r.status;
    json_t *v = at_json(&r);
    snprintf(x->id, sizeof x->id, "%s", json_string_value(json_object_get(v, "id")));
    json_decref(v);
    at_resp_free(&r);
    return NULL;
}

/* One key at two replicas at once: one job, the other request its replay. */
static void same_key_at_once(ctx *c, int try)
{
    json_t *job = at_job_json(1, 5, 79, 79);
    char key[64];
    snprintf(key, sizeof key, "Idempotency-Key: fleet-race-%d", try);
    racer x[2] = {{&c->r[1], job, key, 0, ""}, {&c->r[2], job, key, 0, ""}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race, &x[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    json_decref(job);
    if (!((x[0].status == 202 && x[1].status == 200) ||
          (x[0].status == 200 && x[1].status == 202)))
        fail_msg("try %d: the same key at two replicas answered %ld and %ld", try, x[0].status,
                 x[1].status);
    assert_string_equal(x[0].id, x[1].id);
}

/* A key first used at one replica, replayed at another: the first job. */
static void test_fleet_idempotency(void **state)
{
    ctx *c = *state;
    start_replicas(c);
    json_t *job = at_job_json(1, 5, 77, 77);
    const char *key[] = {"Idempotency-Key: fleet-order-1", NULL};
    at_resp r = at_post_json(&c->r[0], "/v1/jobs", job, key);
    assert_int_equal(r.status, 202);
    json_t *v = at_json(&r);
    char first[64];
    snprintf(first, sizeof first, "%s", json_string_value(json_object_get(v, "id")));
    json_decref(v);
    at_resp_free(&r);
    for (int i = 1; i < REPLICAS; i++) {
        r = at_post_json(&c->r[i], "/v1/jobs", job, key);
        assert_int_equal(r.status, 200);
        char h[16];
        assert_string_equal(at_header(&r, "Idempotent-Replayed", h, sizeof h), "true");
        v = at_json(&r);
        assert_string_equal(json_string_value(json_object_get(v, "id")), first);
        json_decref(v);
        at_resp_free(&r);
    }
    json_decref(job);
    json_t *done = at_wait_done(&c->r[2], first, 120.0);
    assert_string_equal(at_state(done), "succeeded");
    json_decref(done);
    for (int i = 0; i < 5; i++) /* a few tries: the two must meet in the store */
        same_key_at_once(c, i);
    /* submitted at r0: r1's long-polls wake at each change made elsewhere */
    char id[64];
    job = at_job_json(2, 150, 78, 78);
    at_submit(&c->r[0], job, id);
    json_decref(job);
    double t0 = at_now();
    int polls = 0;
    for (;;) {
        double tp = at_now();
        json_t *j = at_job(&c->r[1], id, 30);
        polls++;
        int end = at_terminal(at_state(j));
        if (!end)
            assert_true(at_now() - tp < 4.5); /* woken by a change, not the wait's end */
        json_decref(j);
        if (end)
            break;
        assert_true(at_now() - t0 < 60.0);
    }
    assert_true(polls <= 6);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fleet_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_idempotency, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
