/* test_store_faults.c - server/store under injected faults, as SQLite tests
 * itself (DESIGN section 6). Every store function that writes (and the
 * transaction POST /v1/jobs builds from them) runs
 *   - over the shim VFS of sqlfault.h, chosen with a URI filename, whose
 *     xWrite / xSync / xTruncate and journal/WAL opens fail with
 *     SQLITE_IOERR_* (once; or from then on, kept over store_close), or whose
 *     xWrite fails with SQLITE_FULL, after N successful calls;
 *   - with sqlfault.h's allocator, which fails the Nth allocation (once, or
 *     every one from it on);
 * N swept from 0 upward until the call runs untouched (for calls with many
 * allocations, the first and last few N and a spread between: see
 * next_fault). Every failed call must return an error that names the fault.
 * The database, read by another connection through the real VFS, must pass
 * integrity_check and foreign_key_check, keep the store's invariants (a job
 * never without its data set or its input edges, a checkpoint never without
 * its 'produced' edge, a state never without its timestamps...) and hold
 * exactly the state before the call or exactly the state a fault-free call
 * leaves (a dump of every row of every table compared); and the same
 * connection must then succeed on a retry. With the fault kept over
 * store_close (a disk that stays broken until the process ends) the reopened
 * file must still hold one of the two states, and the store must open and
 * migrate it. D2_FAULTS_VERBOSE=1 prints the runs per call. */
#include <limits.h>
#include <sqlite3.h>

#include "testutil.h"
#include "sqlfault.h"

#include "api.h"
#include "store.h"

/* ------------------------------------------------------------------ */
/* fixture: a base database every write is tried against               */

typedef struct fixture {
    char *dir;
    char base[512];       /* the migrated base state */
    char fresh[512];      /* opened (WAL) but not migrated */
    char work[512];       /* the copy a call runs on */
    char work_uri[600];   /* file:work?vfs=d2fault */
    sqlite3_vfs vfs;
    fault_state fs;
    oom_state oom;
    int oom_on; /* the failing allocator is installed */
} fixture;

#define GEN_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define GEN_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define J_QUEUED "j_00000000000000000001"
#define J_RUN1 "j_00000000000000000002"
#define J_RUN2 "j_00000000000000000003"
#define J_DONE "j_00000000000000000004"
#define J_CHILD "j_00000000000000000005"
#define J_NEW "j_00000000000000000006"
#define J_SUBMIT "j_00000000000000000007"
#define CK_PARENT "ck_00000000000000000004_0"

static void make_dataset(dataset *d, int n, int dim, float base, char fp[65])
{
    d2_error err;
    assert_int_equal(dataset_alloc(d, n, dim, &err), 0);
    for (int i = 0; i < n * dim; i++)
        d->x[i] = base + 0.125f * (float)i;
    for (int i = 0; i < n; i++)
        d->y[i] = i % 2;
    d->classes = 2;
    dataset_fingerprint(d, fp);
}

static void make_gen(gen_info *gi, const char *id)
{
    memset(gi, 0, sizeof *gi);
    snprintf(gi->id, sizeof gi->id, "%s", id);
    gi->config_json = "{\"way\": 2}";
    gi->provenance_json = "{\"zoo\": \"z\"}";
    gi->input_dim = 3;
    gi->feature_dim = 3;
    gi->min_way = 2;
    gi->max_way = 2;
    gi->params = 8;
    gi->zoo_size = 5;
    snprintf(gi->zoo_fingerprint, sizeof gi->zoo_fingerprint, "%064d", 7);
}

static void make_job(api_job *j, const char *id, const char *ds, int64_t t)
{
    api_job_init(j);
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->generator_name, sizeof j->generator_name, "default");
    snprintf(j->generator_id, sizeof j->generator_id, "%s", GEN_A);
    snprintf(j->dataset_id, sizeof j->dataset_id, "%s", ds);
    j->candidates = 3;
    j->steps = 4;
    j->guidance = 2.0;
    j->seed = 11;
    j->priority = 5;
    j->created_ms = t;
}

static void make_checkpoints(api_checkpoint *c, int64_t *off, const char *job, int n)
{
    for (int i = 0; i < n; i++) {
        memset(&c[i], 0, sizeof c[i]);
        snprintf(c[i].id, sizeof c[i].id, "ck_%.20s_%d", job + 2, i);
        c[i].rank = i;
        c[i].candidate_index = n - 1 - i;
        c[i].support_acc = 1.0 - 0.25 * i;
        c[i].support_loss = 0.1 * (i + 1);
        c[i].norm = 3.5;
        c[i].zoo_distance = 0.75;
        c[i].zoo_nearest = i;
        snprintf(c[i].sha256, sizeof c[i].sha256, "%064d", i);
        c[i].size_bytes = 100 + i;
        off[i] = (100 + i) * i;
    }
}

/* dataset D1 (the one jobs use), its fingerprint */
static void d1(dataset *d, char fp[65])
{
    make_dataset(d, 4, 3, 1.0f, fp);
}

static void build_base(store *s)
{
    d2_error err;
    gen_info gi;
    make_gen(&gi, GEN_A);
    assert_int_equal(store_generator_upsert(s, "default", "/g/a.safetensors", &gi, 1000, &err), 0);
    dataset d;
    char fp[65];
    d1(&d, fp);
    int created;
    assert_int_equal(store_dataset_put(s, fp, API_KIND_SAMPLES, &d, 1100, &created, &err), 0);
    dataset_free(&d);
    const char *ids[] = {J_QUEUED, J_RUN1, J_RUN2, J_DONE, J_CHILD};
    for (int i = 0; i < 5; i++) {
        api_job j;
        make_job(&j, ids[i], fp, 2000 + i);
        assert_int_equal(store_job_insert(s, &j, "alice", &err), 0);
    }
    assert_int_equal(store_job_set_running(s, J_RUN1, 3000, &err), 0);
    assert_int_equal(store_job_set_running(s, J_RUN2, 3001, &err), 0);
    assert_int_equal(store_job_set_running(s, J_DONE, 3002, &err), 0);
    assert_int_equal(store_job_set_running(s, J_CHILD, 3003, &err), 0);
    api_checkpoint c[2];
    int64_t off[2];
    make_checkpoints(c, off, J_DONE, 2);
    assert_int_equal(store_job_succeed(s, J_DONE, 2, 1.5, 4000, c, off, 2, NULL, NULL, &err), 0);
    assert_int_equal(store_idem_put(s, "alice", "old-1", "s1", J_DONE, 100, &err), 0);
    assert_int_equal(store_idem_put(s, "alice", "old-2", "s2", J_RUN1, 200, &err), 0);
    assert_int_equal(store_idem_put(s, "bob", "fresh", "s3", J_QUEUED, 5000, &err), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_tmpdir("store-faults");
    snprintf(f->base, sizeof f->base, "%s/base.sqlite", f->dir);
    snprintf(f->fresh, sizeof f->fresh, "%s/fresh.sqlite", f->dir);
    snprintf(f->work, sizeof f->work, "%s/work.sqlite", f->dir);
    snprintf(f->work_uri, sizeof f->work_uri, "file:%s?vfs=d2fault", f->work);
    fault_vfs_init(&f->vfs, &f->fs);
    assert_int_equal(sqlite3_vfs_register(&f->vfs, 0), SQLITE_OK);
    d2_error err;
    store *s;
    int v;
    assert_int_equal(store_open(&s, f->base, 0, &err), 0);
    assert_int_equal(store_migrate(s, &v, &err), 0);
    build_base(s);
    store_close(s);
    assert_int_equal(store_open(&s, f->fresh, 0, &err), 0);
    store_close(s);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    /* a failed test may have left faults on */
    f->fs.armed = 0;
    f->oom.armed = 0;
    if (f->oom_on)
        oom_remove(&f->oom, &f->vfs);
    f->oom_on = 0;
    sqlite3_vfs_unregister(&f->vfs);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the calls under test                                                */

typedef struct op {
    const char *name;
    int fresh; /* starts from an unmigrated database */
    int opens; /* the call opens the store itself (*s is NULL before) */
    /* the call; on a failed open *s stays NULL */
    int (*run)(const fixture *f, store **s, d2_error *err);
} op;

static int op_open(const fixture *f, store **s, d2_error *err)
{
    int v;
    if (!*s && store_open(s, f->work_uri, 1, err) != 0) /* a retry may find it open */
        return err->code;
    return store_migrate(*s, &v, err);
}

static int op_migrate(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    int v;
    return store_migrate(*s, &v, err);
}

static int op_gen_new(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    gen_info gi;
    make_gen(&gi, GEN_B);
    return store_generator_upsert(*s, "second", "/g/b.safetensors", &gi, 6000, err);
}

static int op_gen_reload(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    gen_info gi;
    make_gen(&gi, GEN_A);
    return store_generator_upsert(*s, "renamed", "/g/moved.safetensors", &gi, 6000, err);
}

static int op_dataset_new(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    dataset d;
    char fp[65];
    make_dataset(&d, 6, 3, -2.0f, fp);
    int created = -1;
    int rc = store_dataset_put(*s, fp, API_KIND_EMBEDDINGS, &d, 6000, &created, err);
    dataset_free(&d);
    if (rc == 0 && created != 1)
        return d2_fail(err, D2_EINVAL, "test: the new data set was not created");
    return rc;
}

static int op_dataset_other_kind(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    dataset d;
    char fp[65];
    d1(&d, fp);
    int created = -1;
    int rc = store_dataset_put(*s, fp, API_KIND_EMBEDDINGS, &d, 6000, &created, err);
    dataset_free(&d);
    if (rc == 0 && created != 0)
        return d2_fail(err, D2_EINVAL, "test: the numbers were stored twice");
    return rc;
}

static int op_job_insert(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    dataset d;
    char fp[65];
    d1(&d, fp);
    dataset_free(&d);
    api_job j;
    make_job(&j, J_NEW, fp, 6000);
    snprintf(j.parent_checkpoint, sizeof j.parent_checkpoint, "%s", CK_PARENT);
    j.kind = API_KIND_EMBEDDINGS;
    return store_job_insert(*s, &j, "carol", err);
}

/* What POST /v1/jobs does (server/routes_jobs.c): a new data set, the job and
 * its idempotency key in one transaction. */
static int op_submit(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    dataset d;
    char fp[65];
    make_dataset(&d, 4, 3, 9.0f, fp);
    api_job j;
    make_job(&j, J_SUBMIT, fp, 6000);
    int created = 0;
    int rc = store_begin(*s, err);
    if (rc == 0) {
        if (store_dataset_put(*s, fp, API_KIND_SAMPLES, &d, 6000, &created, err) != 0 ||
            store_job_insert(*s, &j, "carol", err) != 0 ||
            store_idem_put(*s, "carol", "key-1", "sha", J_SUBMIT, 6000, err) != 0) {
            store_rollback(*s);
            rc = err->code;
        } else {
            rc = store_commit(*s, err);
        }
    }
    dataset_free(&d);
    return rc;
}

static int op_set_running(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    return store_job_set_running(*s, J_QUEUED, 6000, err);
}

static int op_cancel_requested(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    return store_job_set_cancel_requested(*s, J_QUEUED, err);
}

static int op_finish(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    return store_job_finish(*s, J_RUN1, API_JOB_FAILED, "generation_failed",
                            "the sampler diverged", 6000, 2.25, err);
}

static int op_succeed(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    api_checkpoint c[3];
    int64_t off[3];
    make_checkpoints(c, off, J_CHILD, 3);
    return store_job_succeed(*s, J_CHILD, 2, 3.5, 6000, c, off, 3, CK_PARENT, NULL, err);
}

static int op_requeue(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    return store_job_requeue(*s, J_RUN1, err);
}

static int op_requeue_running(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    int n = -1;
    int rc = store_jobs_requeue_running(*s, &n, err);
    if (rc == 0 && n != 3)
        return d2_fail(err, D2_EINVAL, "test: requeued %d jobs, expected 3", n);
    return rc;
}

static int op_idem_put(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    return store_idem_put(*s, "carol", "key-2", "sha2", J_QUEUED, 6000, err);
}

static int op_idem_expire(const fixture *f, store **s, d2_error *err)
{
    (void)f;
    int n = -1;
    int rc = store_idem_expire(*s, 1000, &n, err);
    if (rc == 0 && n != 2)
        return d2_fail(err, D2_EINVAL, "test: expired %d keys, expected 2", n);
    return rc;
}

static const op OPS[] = {
    {"open+migrate", 1, 1, op_open},
    {"migrate", 1, 0, op_migrate},
    {"generator_upsert (new)", 0, 0, op_gen_new},
    {"generator_upsert (reload)", 0, 0, op_gen_reload},
    {"dataset_put (new)", 0, 0, op_dataset_new},
    {"dataset_put (other kind)", 0, 0, op_dataset_other_kind},
    {"job_insert", 0, 0, op_job_insert},
    {"submit (dataset+job+key)", 0, 0, op_submit},
    {"job_set_running", 0, 0, op_set_running},
    {"job_set_cancel_requested", 0, 0, op_cancel_requested},
    {"job_finish", 0, 0, op_finish},
    {"job_succeed", 0, 0, op_succeed},
    {"job_requeue", 0, 0, op_requeue},
    {"jobs_requeue_running", 0, 0, op_requeue_running},
    {"idem_put", 0, 0, op_idem_put},
    {"idem_expire", 0, 0, op_idem_expire},
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

/* ------------------------------------------------------------------ */
/* reading a database back with the real VFS                           */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One table's rows as text, sorted (tables without rowid have no order). */
static void dump_table(sqlite3 *db, const char *table, buf *out)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", table);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    char **rows = NULL;
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        buf row = {0};
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            char v[64];
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_INTEGER:
                snprintf(v, sizeof v, "%lld|", (long long)sqlite3_column_int64(st, c));
                buf_str(&row, v);
                break;
            case SQLITE_FLOAT:
                snprintf(v, sizeof v, "%.17g|", sqlite3_column_double(st, c));
                buf_str(&row, v);
                break;
            case SQLITE_NULL:
                buf_str(&row, "NULL|");
                break;
            case SQLITE_BLOB: {
                const unsigned char *p = sqlite3_column_blob(st, c);
                int len = sqlite3_column_bytes(st, c);
                buf_str(&row, "x'");
                for (int i = 0; i < len; i++) {
                    snprintf(v, sizeof v, "%02x", p[i]);
                    buf_str(&row, v);
                }
                buf_str(&row, "'|");
                break;
            }
            default:
                buf_str(&row, "'");
                buf_str(&row, (const char *)sqlite3_column_text(st, c));
                buf_str(&row, "'|");
            }
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            rows = realloc(rows, (size_t)cap * sizeof *rows);
            assert_non_null(rows);
        }
        rows[n++] = row.p ? row.p : strdup("");
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    if (n > 1)
        qsort(rows, (size_t)n, sizeof *rows, cmp_str);
    buf_str(out, "[");
    buf_str(out, table);
    buf_str(out, "]\n");
    for (int i = 0; i < n; i++) {
        buf_str(out, rows[i]);
        buf_str(out, "\n");
        free(rows[i]);
    }
    free(rows);
}

static int count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* What must hold in every state the store leaves (named for the message). */
static const struct {
    const char *what;
    const char *sql;
} INVARIANTS[] = {
    {"a job without its generator and data set input edges",
     "SELECT count(*) FROM jobs j WHERE NOT EXISTS (SELECT 1 FROM lineage_edges e WHERE "
     "e.src_kind = 'generator' AND e.src_id = j.generator_id AND e.dst_kind = 'job' AND "
     "e.dst_id = j.id AND e.relation = 'input') OR NOT EXISTS (SELECT 1 FROM lineage_edges e "
     "WHERE e.src_kind = 'dataset' AND e.src_id = j.dataset_id AND e.dst_kind = 'job' AND "
     "e.dst_id = j.id AND e.relation = 'input')"},
    {"a lineage edge into a job that does not exist",
     "SELECT count(*) FROM lineage_edges e WHERE e.dst_kind = 'job' AND NOT EXISTS "
     "(SELECT 1 FROM jobs j WHERE j.id = e.dst_id)"},
    {"a checkpoint without its 'produced' edge",
     "SELECT count(*) FROM checkpoints c WHERE NOT EXISTS (SELECT 1 FROM lineage_edges e WHERE "
     "e.src_kind = 'job' AND e.src_id = c.job_id AND e.dst_kind = 'checkpoint' AND "
     "e.dst_id = c.id AND e.relation = 'produced')"},
    {"a lineage edge into a checkpoint that does not exist",
     "SELECT count(*) FROM lineage_edges e WHERE e.dst_kind = 'checkpoint' AND NOT EXISTS "
     "(SELECT 1 FROM checkpoints c WHERE c.id = e.dst_id)"},
    {"a checkpoint of a job that has not succeeded",
     "SELECT count(*) FROM checkpoints c JOIN jobs j ON j.id = c.job_id "
     "WHERE j.state <> 'succeeded'"},
    {"a succeeded job without its outcome",
     "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND (finished_ms IS NULL OR "
     "progress <> 1 OR way IS NULL OR run_seconds IS NULL OR NOT EXISTS "
     "(SELECT 1 FROM checkpoints c WHERE c.job_id = jobs.id))"},
    {"a running job without its start",
     "SELECT count(*) FROM jobs WHERE state = 'running' AND (started_ms IS NULL OR attempts < 1)"},
    {"a failed or cancelled job without its end",
     "SELECT count(*) FROM jobs WHERE state IN ('failed', 'cancelled') AND finished_ms IS NULL"},
    {"a data set without the record of its kind",
     "SELECT count(*) FROM datasets d WHERE NOT EXISTS (SELECT 1 FROM dataset_kinds k WHERE "
     "k.dataset_id = d.id AND k.kind = d.kind)"},
};

/* Open path with the real VFS (no fsync: it only reads, and recovers a WAL). */
static sqlite3 *check_open(const char *path, const char *when)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        fail_msg("%s: reopen %s: %s", when, path, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

/* Check what db holds now (full: integrity_check, foreign_key_check and the
 * invariants too) and return its contents as text (malloc'd). */
static char *check_state(sqlite3 *db, const char *when, int full)
{
    sqlite3_stmt *st;
    buf out = {0};
    int version = count(db, "PRAGMA user_version");
    char line[64];
    snprintf(line, sizeof line, "user_version %d\n", version);
    buf_str(&out, line);
    if (!full)
        goto dump;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
        fail_msg("%s: integrity_check: %s", when, sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        fail_msg("%s: foreign_key_check: a row of %s refers to a missing %s", when,
                 sqlite3_column_text(st, 0), sqlite3_column_text(st, 2));
    sqlite3_finalize(st);
    if (version >= 2)
        for (size_t i = 0; i < sizeof INVARIANTS / sizeof INVARIANTS[0]; i++) {
            int n = count(db, INVARIANTS[i].sql);
            if (n != 0)
                fail_msg("%s: %d x %s", when, n, INVARIANTS[i].what);
        }
dump:
    dump_table(db, "sqlite_master", &out);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "ORDER BY name",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        dump_table(db, (const char *)sqlite3_column_text(st, 0), &out);
    sqlite3_finalize(st);
    return out.p;
}

static char *check_db(const char *path, const char *when)
{
    sqlite3 *db = check_open(path, when);
    char *out = check_state(db, when, 1);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return out;
}

/* The first line where two dumps differ (for failure messages). */
static const char *first_diff(const char *a, const char *b, char *out, size_t cap)
{
    const char *la = a, *lb = b;
    while (*a && *a == *b) {
        if (*a == '\n') {
            la = a + 1;
            lb = b + 1;
        }
        a++;
        b++;
    }
    size_t na = strcspn(la, "\n"), nb = strcspn(lb, "\n");
    snprintf(out, cap, "got '%.*s', expected '%.*s'", (int)(na < 200 ? na : 200), la,
             (int)(nb < 200 ? nb : 200), lb);
    return out;
}

/* ------------------------------------------------------------------ */
/* the sweep                                                           */

static void remove_db(const char *path)
{
    char side[600];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static void copy_file(const char *from, const char *to)
{
    remove_db(to);
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char b[65536];
    size_t n;
    while ((n = fread(b, 1, sizeof b, in)) > 0)
        assert_int_equal(fwrite(b, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Copy the op's starting state to work and open it (unless the op opens). */
static store *start(fixture *f, const op *o)
{
    if (o->opens) { /* from no file at all */
        remove_db(f->work);
        return NULL;
    }
    copy_file(o->fresh ? f->fresh : f->base, f->work);
    store *s = NULL;
    d2_error err;
    if (store_open(&s, f->work_uri, 1, &err) != 0)
        fail_msg("open %s: %s", f->work_uri, err.msg);
    return s;
}

typedef enum { INJECT_IO, INJECT_OOM } inject_kind;

typedef struct sweep {
    inject_kind kind;
    int mode;          /* FAULT_IOERR / FAULT_FULL (I/O) */
    int persistent;
    int through_close; /* keep the fault over store_close; no retry */
    const char *expect[3]; /* one of these in the message of a failed call */
} sweep;

static void arm(fixture *f, const sweep *w, long after)
{
    if (w->kind == INJECT_IO) {
        f->fs.mode = w->mode;
        f->fs.persistent = w->persistent;
        f->fs.after = after;
        f->fs.calls = f->fs.injected = 0;
        f->fs.armed = 1;
    } else {
        f->oom.persistent = w->persistent;
        f->oom.after = after;
        f->oom.calls = f->oom.injected = 0;
        f->oom.armed = 1;
    }
}

/* Disarm; returns the faults injected. */
static long disarm(fixture *f, const sweep *w)
{
    if (w->kind == INJECT_IO) {
        f->fs.armed = 0;
        return f->fs.injected;
    }
    f->oom.armed = 0;
    return f->oom.injected;
}

static void expect_message(const sweep *w, const op *o, long n, const d2_error *err, int rc)
{
    if (rc >= 0 || err->code != rc)
        fail_msg("%s, fault at %ld: returned %d with error code %d", o->name, n, rc, err->code);
    if (!strstr(err->msg, "store"))
        fail_msg("%s, fault at %ld: message does not say the store failed: '%s'", o->name, n,
                 err->msg);
    for (int i = 0; i < 3 && w->expect[i]; i++)
        if (strstr(err->msg, w->expect[i]))
            return;
    fail_msg("%s, fault at %ld: message does not name the fault: '%s'", o->name, n, err->msg);
}

/* Sweep one op; returns the number of calls that failed. */
/* Which fault positions are tried: every one from 0 up to the call's
 * total of counted events, except that a call with more than
 * 2 * SWEEP_DENSE + SWEEP_SPREAD of them (an out-of-memory sweep through the
 * compilation of a migration script has thousands) gets its first and last
 * SWEEP_DENSE and SWEEP_SPREAD evenly spaced in between; then upward until
 * the call runs untouched. */
enum { SWEEP_DENSE = 16, SWEEP_SPREAD = 16 };

static long next_fault(long n, long total)
{
    if (total <= 2 * SWEEP_DENSE + SWEEP_SPREAD || n < SWEEP_DENSE - 1 ||
        n >= total - SWEEP_DENSE)
        return n + 1;
    long step = (total - 2 * SWEEP_DENSE) / (SWEEP_SPREAD + 1);
    return n + step < total - SWEEP_DENSE ? n + step : total - SWEEP_DENSE;
}

static long sweep_op(fixture *f, const sweep *w, const op *o, long *iterations)
{
    /* before and after, without faults (counting the events a fault could
     * hit on the way) */
    store *s = start(f, o);
    if (s)
        store_close(s);
    char *before = check_db(f->work, "before");
    s = start(f, o);
    d2_error err;
    d2_error_clear(&err);
    arm(f, w, LONG_MAX);
    if (o->run(f, &s, &err) != 0)
        fail_msg("%s without faults: %s", o->name, err.msg);
    long total = w->kind == INJECT_IO ? f->fs.calls : f->oom.calls;
    disarm(f, w);
    store_close(s);
    char *after = check_db(f->work, "after");
    if (!strcmp(before, after))
        fail_msg("%s changes nothing: the test would prove nothing", o->name);

    long failed = 0, n, runs = 0;
    char when[800], diff[600];
    for (n = 0;; n = next_fault(n, total)) {
        if (n > total + 1000)
            fail_msg("%s: still failing after %ld faults", o->name, n);
        runs++;
        s = start(f, o);
        d2_error_clear(&err);
        arm(f, w, n);
        int rc = o->run(f, &s, &err);
        long injected = w->through_close ? 0 : disarm(f, w);
        if (rc != 0) {
            expect_message(w, o, n, &err, rc);
            failed++;
        }
        snprintf(when, sizeof when, "%s, fault at %ld (call returned %d: %s)", o->name, n, rc,
                 rc ? err.msg : "ok");
        if (w->through_close) {
            store_close(s);
            injected = disarm(f, w);
            char *got = check_db(f->work, when);
            if (strcmp(got, after) != 0 && (rc == 0 || strcmp(got, before) != 0))
                fail_msg("%s: the database holds %s (%s)", when,
                         rc == 0 ? "not all the call's writes"
                                 : "neither the state before nor the state after the call",
                         first_diff(got, rc ? before : after, diff, sizeof diff));
            free(got);
            /* the daemon can start on it */
            store *again;
            int v;
            if (store_open(&again, f->work, 0, &err) != 0 || store_migrate(again, &v, &err) != 0)
                fail_msg("%s: reopening with the store: %s", when, err.msg);
            store_close(again);
        } else {
            /* what another connection sees while this one stays open */
            sqlite3 *db = check_open(f->work, when);
            char *got = check_state(db, when, 1);
            if (strcmp(got, rc ? before : after) != 0)
                fail_msg("%s: the database does not hold the state %s the call (%s)", when,
                         rc ? "before" : "after",
                         first_diff(got, rc ? before : after, diff, sizeof diff));
            free(got);
            /* the same connection recovers: the call succeeds on a retry */
            if (rc != 0) {
                d2_error_clear(&err);
                if (o->run(f, &s, &err) != 0)
                    fail_msg("%s: retry without faults failed: %s", when, err.msg);
            }
            store_close(s);
            if (rc != 0) {
                got = check_state(db, when, 0);
                if (strcmp(got, after) != 0)
                    fail_msg("%s: after the retry the database does not hold the call's "
                             "writes (%s)", when, first_diff(got, after, diff, sizeof diff));
                free(got);
            }
            assert_int_equal(sqlite3_close(db), SQLITE_OK);
        }
        if (rc == 0 && injected == 0)
            break;
    }
    *iterations += runs;
    free(before);
    free(after);
    return failed;
}

static void run_sweep(fixture *f, const sweep *w, const char *title)
{
    long iterations = 0, failed = 0;
    double start_time = d2_now();
    for (int i = 0; i < NOPS; i++) {
        long it = 0;
        double t0 = d2_now();
        long k = sweep_op(f, w, &OPS[i], &it);
        double dt = d2_now() - t0;
        if (k == 0)
            fail_msg("%s: %s never failed: no fault reached it", title, OPS[i].name);
        failed += k;
        iterations += it;
        if (getenv("D2_FAULTS_VERBOSE"))
            printf("#   %-28s %6ld runs, %6ld failed, %.3f s\n", OPS[i].name, it, k, dt);
    }
    printf("# %s: %d calls, %ld runs, %ld failed cleanly (%.1f s)\n", title, NOPS, iterations,
           failed, d2_now() - start_time);
}

/* ------------------------------------------------------------------ */

static void test_io_error(void **state)
{
    const sweep w = {INJECT_IO, FAULT_IOERR, 0, 0, {"disk I/O error", "unable to open", NULL}};
    run_sweep(*state, &w, "I/O error once");
}

static void test_io_error_through_close(void **state)
{
    const sweep w = {INJECT_IO, FAULT_IOERR, 1, 1, {"disk I/O error", "unable to open", NULL}};
    run_sweep(*state, &w, "I/O error until the store is closed");
}

static void test_disk_full(void **state)
{
    const sweep w = {INJECT_IO, FAULT_FULL, 1, 0, {"database or disk is full", NULL, NULL}};
    run_sweep(*state, &w, "disk full");
}

static void test_oom(void **state)
{
    fixture *f = *state;
    const sweep w = {INJECT_OOM, 0, 0, 0, {"out of memory", NULL, NULL}};
    oom_install(&f->oom, &f->vfs);
    f->oom_on = 1;
    run_sweep(f, &w, "out of memory once");
}

static void test_oom_persistent(void **state)
{
    fixture *f = *state;
    const sweep w = {INJECT_OOM, 0, 1, 0, {"out of memory", NULL, NULL}};
    oom_install(&f->oom, &f->vfs);
    f->oom_on = 1;
    run_sweep(f, &w, "out of memory from then on");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_error_through_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_persistent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
