/* test_storeq.c - server/storeq (store work off the loop) and server/sweep:
 * ops run in submission order on their lane and complete on the loop
 * thread; a write refused for a lock held by another connection completes
 * with `busy` and marks the store unavailable while reads still run, and the
 * probe sees the lock's end; refusals then come at once; delayed ops wait; stopping runs what is queued;
 * the start-up sweep removes orphan packs and temporaries only. */
#include <sqlite3.h>
#include <uv.h>

#include "testutil.h"

#include "store.h"
#include "storeq.h"
#include "sweep.h"

typedef struct fixture {
    char *dir;
    char path[512];
    uv_loop_t loop;
    storeq *q;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir("storeq");
    snprintf(f->path, sizeof f->path, "%s/test.sqlite", f->dir);
    d2_error err;
    store *s = NULL;
    assert_int_equal(store_open(&s, f->path, 0, &err), 0);
    assert_int_equal(store_migrate(s, NULL, &err), 0);
    store_close(s);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(storeq_start(&f->q, &f->loop, &(store_conf){.target = f->path}, 50, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->q)
        storeq_stop(f->q);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

typedef struct rec_op {
    storeq_op sq;
    int *order;      /* shared log of completions */
    int *n;
    int id;
    int write;       /* work: a probe write, else a read */
    uv_thread_t work_thread, done_thread;
    double done_at;
} rec_op;

static int rec_work(store *db, void *ctx, d2_error *err)
{
    rec_op *o = ctx;
    o->work_thread = uv_thread_self();
    if (o->write)
        return store_probe(db, err);
    int v;
    return store_user_version(db, &v, err);
}

static void rec_done(storeq_op *sq)
{
    rec_op *o = (rec_op *)sq;
    o->done_thread = uv_thread_self();
    o->done_at = d2_now();
    o->order[(*o->n)++] = o->id;
}

/* Run the loop until `n` ops completed (or 10 s). */
static void run_until(fixture *f, const int *count, int n)
{
    double t0 = d2_now();
    while (*count < n && d2_now() - t0 < 10.0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(*count, n);
}

static void test_order_and_loop_thread(void **state)
{
    fixture *f = *state;
    int order[16], n = 0;
    rec_op ops[8];
    memset(ops, 0, sizeof ops);
    uv_thread_t self = uv_thread_self();
    for (int i = 0; i < 8; i++) {
        ops[i] = (rec_op){.order = order, .n = &n, .id = i, .write = i % 2};
        storeq_submit(f->q, &ops[i].sq, i % 2 ? STOREQ_WRITE : STOREQ_READ, rec_work, rec_done,
                      &ops[i]);
    }
    assert_int_equal(storeq_pending(f->q), 8);
    run_until(f, &n, 8);
    assert_int_equal(storeq_pending(f->q), 0);
    int last[2] = {-1, -1};
    for (int i = 0; i < 8; i++) {
        int id = order[i];
        assert_int_equal(ops[id].sq.rc, 0);
        assert_true(id > last[id % 2]); /* in submission order within a lane */
        last[id % 2] = id;
        assert_true(uv_thread_equal(&ops[id].done_thread, &self));
        assert_false(uv_thread_equal(&ops[id].work_thread, &self));
    }
    /* the two lanes are two threads */
    assert_false(uv_thread_equal(&ops[0].work_thread, &ops[1].work_thread));
    assert_true(storeq_available(f->q, NULL, NULL, 0));
}

static void test_locked_store(void **state)
{
    fixture *f = *state;
    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    int order[4], n = 0;
    rec_op w = {.order = order, .n = &n, .id = 0, .write = 1};
    rec_op r = {.order = order, .n = &n, .id = 1, .write = 0};
    double t0 = d2_now();
    storeq_submit(f->q, &w.sq, STOREQ_WRITE, rec_work, rec_done, &w);
    storeq_submit(f->q, &r.sq, STOREQ_READ, rec_work, rec_done, &r);
    run_until(f, &n, 2);
    /* the read (WAL) is not held up by the lock; the write gave up after ~50 ms */
    assert_int_equal(r.sq.rc, 0);
    assert_int_not_equal(w.sq.rc, 0);
    assert_int_equal(w.sq.busy, 1);
    assert_true(w.done_at - t0 >= 0.04);
    assert_true(w.done_at - t0 < 2.0);
    double since = 0;
    char why[256];
    assert_false(storeq_available(f->q, &since, why, sizeof why));
    assert_true(since >= t0);
    assert_non_null(strstr(why, "locked"));
    /* the lock goes: the probe (every STOREQ_PROBE_MS) sees it */
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    double t1 = d2_now();
    while (!storeq_available(f->q, NULL, NULL, 0) && d2_now() - t1 < 5.0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(storeq_available(f->q, NULL, NULL, 0));
    assert_true(d2_now() - t1 < 3.0 * STOREQ_PROBE_MS / 1000.0);
}

/* Once a lock is known, writes do not each wait out the busy timeout: five
 * queued behind one another are all refused in about one timeout (a probe
 * may be ahead of them), not five. */
static void test_refusals_do_not_queue_up(void **state)
{
    fixture *f = *state;
    storeq *q = NULL;
    d2_error err;
    assert_int_equal(storeq_start(&q, &f->loop, &(store_conf){.target = f->path}, 1000, &err), 0);
    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    int order[8], n = 0;
    rec_op first = {.order = order, .n = &n, .id = 0, .write = 1};
    storeq_submit(q, &first.sq, STOREQ_WRITE, rec_work, rec_done, &first);
    run_until(f, &n, 1);
    assert_int_equal(first.sq.busy, 1);
    rec_op ops[5];
    double t0 = d2_now();
    for (int i = 0; i < 5; i++) {
        ops[i] = (rec_op){.order = order, .n = &n, .id = i + 1, .write = 1};
        storeq_submit(q, &ops[i].sq, STOREQ_WRITE, rec_work, rec_done, &ops[i]);
    }
    run_until(f, &n, 6);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ops[i].sq.busy, 1);
    assert_true(ops[4].done_at - t0 < 2.5);
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    rec_op after = {.order = order, .n = &n, .id = 6, .write = 1};
    storeq_submit(q, &after.sq, STOREQ_WRITE, rec_work, rec_done, &after);
    run_until(f, &n, 7);
    assert_int_equal(after.sq.rc, 0); /* the lock gone, a write goes through at once */
    assert_true(storeq_available(q, NULL, NULL, 0));
    storeq_stop(q);
}

static void test_delay_and_stop(void **state)
{
    fixture *f = *state;
    int order[4], n = 0;
    rec_op a = {.order = order, .n = &n, .id = 0, .write = 1};
    rec_op b = {.order = order, .n = &n, .id = 1, .write = 0};
    rec_op c = {.order = order, .n = &n, .id = 2, .write = 1};
    a.sq.lane = STOREQ_WRITE;
    a.sq.work = rec_work;
    a.sq.done = rec_done;
    a.sq.ctx = &a;
    double t0 = d2_now();
    storeq_submit_after(f->q, &a.sq, 200);
    storeq_submit(f->q, &b.sq, STOREQ_READ, rec_work, rec_done, &b);
    run_until(f, &n, 2);
    assert_int_equal(order[0], 1); /* the delayed one after the other */
    assert_int_equal(order[1], 0);
    assert_int_equal(a.sq.rc, 0);
    assert_true(a.done_at - t0 >= 0.19);
    /* stopping: the queued op runs and completes before storeq_stop returns;
     * a delayed one ends cancelled */
    rec_op d = c;
    d.id = 3;
    d.sq.lane = STOREQ_WRITE;
    d.sq.work = rec_work;
    d.sq.done = rec_done;
    d.sq.ctx = &d;
    storeq_submit(f->q, &c.sq, STOREQ_WRITE, rec_work, rec_done, &c);
    storeq_submit_after(f->q, &d.sq, 60000);
    storeq_stop(f->q);
    f->q = NULL;
    assert_int_equal(n, 4);
    assert_int_equal(c.sq.rc, 0);
    assert_int_equal(d.sq.rc, D2_ECANCELLED);
}

static void touch(const char *dir, const char *name)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("x", fp);
    fclose(fp);
}

static int exists(const char *dir, const char *name)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void test_sweep(void **state)
{
    fixture *f = *state;
    char ck[600];
    snprintf(ck, sizeof ck, "%s/checkpoints", f->dir);
    assert_int_equal(mkdir(ck, 0755), 0);
    touch(ck, "j_0123456789abcdef0123.pack");             /* no rows: orphan */
    touch(ck, "j_0123456789abcdef0124.pack.tmp.77.78");   /* a write cut short */
    touch(ck, "notes.txt");                               /* not ours: kept */
    touch(ck, "x_0123456789abcdef0123.pack");             /* not a job id: kept */
    store *s = NULL;
    d2_error err;
    assert_int_equal(store_open(&s, f->path, 0, &err), 0);
    int removed = -1;
    assert_int_equal(sweep_orphans(s, ck, &removed, &err), 0);
    assert_int_equal(removed, 2);
    assert_false(exists(ck, "j_0123456789abcdef0123.pack"));
    assert_false(exists(ck, "j_0123456789abcdef0124.pack.tmp.77.78"));
    assert_true(exists(ck, "notes.txt"));
    assert_true(exists(ck, "x_0123456789abcdef0123.pack"));
    /* a missing folder is nothing to sweep */
    char none[700];
    snprintf(none, sizeof none, "%s/none", f->dir);
    assert_int_equal(sweep_orphans(s, none, &removed, &err), 0);
    assert_int_equal(removed, 0);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_loop_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_do_not_queue_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_and_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
