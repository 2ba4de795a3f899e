/* test_store.c - server/store: migrations, WAL, datasets, jobs and their
 * state transitions, pagination, checkpoints, lineage, idempotency keys;
 * the dialect-neutral tests run on SQLite and again (pg_*) on a fresh
 * PostgreSQL database each (tu_pg.h), plus PostgreSQL's own: lock timeout
 * and a lost connection count as unavailable. */
#include <math.h>
#include <sqlite3.h>

#include "testutil.h"
#include "tu_pg.h"

#include "api.h"
#include "embedded.h"
#include "store.h"

#define GEN_HEX "1111111111111111111111111111111111111111111111111111111111111111"
#define DS_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DS_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

typedef struct fixture {
    char *dir;
    char path[1024]; /* SQLite file, or PostgreSQL connection string */
    store *s;
} fixture;

/* the schema version each dialect's migrations reach */
static int latest_version(const store *s)
{
    return strcmp(store_dialect(s), "postgres") ? 4 : 3;
}

/* PostgreSQL's leases last 1 ms here: a "crash" (requeue_running) finds the
 * job's lease run out, as a restart after a real one would. */
static int open_fixture(fixture *f)
{
    d2_error err;
    int version = -1;
    store_conf conf = {f->path, NULL, 0, NULL, 1};
    assert_int_equal(store_open_conf(&f->s, &conf, &err), 0);
    assert_int_equal(store_migrate(f->s, &version, &err), 0);
    assert_int_equal(version, latest_version(f->s));
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir("store");
    snprintf(f->path, sizeof f->path, "%s/test.sqlite", f->dir);
    *state = f;
    return open_fixture(f);
}

static int setup_pg(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir("store-pg");
    tu_pg_newdb(f->path, sizeof f->path, "store");
    *state = f;
    return open_fixture(f);
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void make_dataset(dataset *d, int n, int dim, float base)
{
    d2_error err;
    assert_int_equal(dataset_alloc(d, n, dim, &err), 0);
    for (int i = 0; i < n * dim; i++)
        d->x[i] = base + 0.25f * (float)i;
    for (int i = 0; i < n; i++)
        d->y[i] = i % 2;
    d->classes = 2;
}

static void add_generator(store *s, const char *id)
{
    gen_info gi;
    memset(&gi, 0, sizeof gi);
    snprintf(gi.id, sizeof gi.id, "%s", id);
    gi.config_json = "{\"way\": 2}";
    gi.provenance_json = "{\"zoo\": \"abc\"}";
    gi.input_dim = 3;
    gi.feature_dim = 3;
    gi.max_way = 2;
    gi.min_way = 2;
    gi.zoo_size = 17;
    snprintf(gi.zoo_fingerprint, sizeof gi.zoo_fingerprint, "%064d", 42);
    d2_error err;
    assert_int_equal(store_generator_upsert(s, "default", "/tmp/g.safetensors", &gi, 1000, &err), 0);
}

static void make_job(api_job *j, const char *id, const char *gen, const char *ds, int64_t t)
{
    api_job_init(j);
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->generator_name, sizeof j->generator_name, "default");
    snprintf(j->generator_id, sizeof j->generator_id, "%s", gen);
    snprintf(j->dataset_id, sizeof j->dataset_id, "%s", ds);
    j->candidates = 4;
    j->steps = 10;
    j->guidance = 1.5;
    j->seed = 77;
    j->priority = 5;
    j->created_ms = t;
}

static const char GEN[] = "1111111111111111111111111111111111111111111111111111111111111111";

static void put_dataset(store *s, char fp[65], float base)
{
    dataset d;
    make_dataset(&d, 4, 3, base);
    dataset_fingerprint(&d, fp);
    int created = -1;
    d2_error err;
    assert_int_equal(store_dataset_put(s, fp, API_KIND_SAMPLES, &d, 5000, &created, &err), 0);
    assert_int_equal(created, 1);
    dataset_free(&d);
}

static void test_migrate_wal(void **state)
{
    fixture *f = *state;
    d2_error err;
    int v = -1;
    /* applying again is a no-op */
    assert_int_equal(store_migrate(f->s, &v, &err), 0);
    assert_int_equal(v, latest_version(f->s));
    assert_int_equal(store_user_version(f->s, &v, &err), 0);
    assert_int_equal(v, 4);
    /* a second connection sees WAL mode and the schema */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM sqlite_master WHERE type='table' "
                                        "AND name IN ('generators','datasets','jobs','checkpoints',"
                                        "'lineage_edges','idempotency_keys')",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 6);
    sqlite3_finalize(st);
    /* a schema newer than this build is refused */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_migrate(f->s, &v, &err), D2_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "99"));
}

static void test_datasets(void **state)
{
    fixture *f = *state;
    d2_error err;
    dataset d;
    make_dataset(&d, 6, 3, -1.0f);
    char fp[65];
    dataset_fingerprint(&d, fp);
    int created = -1;
    assert_int_equal(store_dataset_put(f->s, fp, API_KIND_EMBEDDINGS, &d, 1234, &created, &err), 0);
    assert_int_equal(created, 1);
    assert_int_equal(store_dataset_put(f->s, fp, API_KIND_SAMPLES, &d, 9999, &created, &err), 0);
    assert_int_equal(created, 0); /* content-addressed: the first upload stays */
    api_dataset_info info;
    assert_int_equal(store_dataset_info(f->s, fp, &info, &err), 0);
    assert_int_equal(info.kind, API_KIND_EMBEDDINGS);
    /* ... and the second kind is recorded beside it */
    assert_int_equal(info.kinds, (1 << API_KIND_SAMPLES) | (1 << API_KIND_EMBEDDINGS));
    assert_int_equal(info.n, 6);
    assert_int_equal(info.dim, 3);
    assert_int_equal(info.classes, 2);
    assert_int_equal(info.class_counts[0], 3);
    assert_int_equal(info.class_counts[1], 3);
    assert_true(info.created_ms == 1234);
    dataset back;
    int kind = -1;
    assert_int_equal(store_dataset_load(f->s, fp, &back, &kind, &err), 0);
    assert_int_equal(kind, API_KIND_EMBEDDINGS);
    assert_int_equal(back.n, 6);
    assert_memory_equal(back.x, d.x, 18 * sizeof(float));
    assert_memory_equal(back.y, d.y, 6 * sizeof(int32_t));
    char fp2[65];
    dataset_fingerprint(&back, fp2);
    assert_string_equal(fp, fp2);
    dataset_free(&back);
    dataset_free(&d);
    assert_int_equal(store_dataset_info(f->s, GEN, &info, &err), D2_ENOTFOUND);
    assert_int_equal(store_dataset_load(f->s, GEN, &back, &kind, &err), D2_ENOTFOUND);
}

static void test_jobs_lifecycle(void **state)
{
    fixture *f = *state;
    d2_error err;
    add_generator(f->s, GEN);
    char fp[65];
    put_dataset(f->s, fp, 0.0f);
    api_job j;
    make_job(&j, "j_00000000000000000001", GEN, fp, 10000);
    j.refine_requested = 0; /* asked for the samples as they are */
    assert_int_equal(store_job_insert(f->s, &j, "alice", &err), 0);
    /* unknown generator: the foreign key refuses it */
    api_job bad;
    make_job(&bad, "j_00000000000000000009", fp, fp, 10000);
    assert_int_not_equal(store_job_insert(f->s, &bad, "alice", &err), 0);
    api_job got;
    assert_int_equal(store_job_get(f->s, j.id, &got, 1, &err), 0);
    assert_int_equal(got.state, API_JOB_QUEUED);
    assert_int_equal(got.candidates, 4);
    assert_true(got.seed == 77 && got.created_ms == 10000 && got.started_ms == 0);
    assert_true(got.run_seconds < 0);
    assert_int_equal(got.attempts, 0);
    assert_int_equal(store_job_set_running(f->s, j.id, 10500, &err), 0);
    /* only a queued job can start */
    assert_int_not_equal(store_job_set_running(f->s, j.id, 10600, &err), 0);
    assert_int_equal(store_job_get(f->s, j.id, &got, 1, &err), 0);
    assert_int_equal(got.state, API_JOB_RUNNING);
    assert_int_equal(got.attempts, 1);
    assert_true(got.started_ms == 10500);
    /* a crash: running -> queued on restart, attempts kept */
    usleep(3000); /* PostgreSQL: past the fixture's 1 ms lease */
    int n = 0;
    assert_int_equal(store_jobs_requeue_running(f->s, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_job_get(f->s, j.id, &got, 1, &err), 0);
    assert_int_equal(got.state, API_JOB_QUEUED);
    assert_int_equal(store_job_set_running(f->s, j.id, 11000, &err), 0);
    assert_int_equal(store_job_get(f->s, j.id, &got, 1, &err), 0);
    assert_int_equal(got.attempts, 2);
    api_checkpoint ck[2];
    memset(ck, 0, sizeof ck);
    for (int i = 0; i < 2; i++) {
        snprintf(ck[i].id, sizeof ck[i].id, "ck_00000000000000000001_%d", i);
        ck[i].rank = i;
        ck[i].candidate_index = 1 - i;
        ck[i].support_acc = 1.0 - 0.5 * i;
        ck[i].size_bytes = 100 + i;
        snprintf(ck[i].sha256, sizeof ck[i].sha256, "%064d", i + 1);
        ck[i].method = i ? GEN_METHOD_DIFFUSION : GEN_METHOD_LOGREG;
    }
    int64_t offsets[2] = {0, 100};
    api_gate gate;
    api_gate_init(&gate);
    gate.applied = 1;
    gate.chosen = GEN_METHOD_LOGREG;
    gate.folds = 3;
    gate.heldout = 15;
    gate.cv_acc[GEN_METHOD_LOGREG] = 0.8;
    gate.ood = 1;
    snprintf(gate.reason, sizeof gate.reason, "3-fold cross-validation");
    assert_int_equal(store_job_succeed(f->s, j.id, 2, 0.25, 12000, ck, offsets, 2, NULL, &gate,
                                       &err), 0);
    assert_int_equal(store_job_get(f->s, j.id, &got, 1, &err), 0);
    /* the gate's request, decision and every checkpoint's method come back */
    assert_int_equal(got.gate_requested, 1);
    assert_int_equal(got.refine_requested, 0);
    assert_int_equal(got.has_gate, 1);
    assert_int_equal(got.gate.chosen, GEN_METHOD_LOGREG);
    assert_true(got.gate.applied && got.gate.ood && got.gate.folds == 3);
    TU_ASSERT_NEAR(got.gate.cv_acc[GEN_METHOD_LOGREG], 0.8, 1e-12);
    assert_true(isnan(got.gate.cv_acc[GEN_METHOD_DIFFUSION]));
    assert_string_equal(got.gate.reason, "3-fold cross-validation");
    assert_int_equal(got.checkpoints[0].method, GEN_METHOD_LOGREG);
    assert_int_equal(got.checkpoints[1].method, GEN_METHOD_DIFFUSION);
    assert_int_equal(got.state, API_JOB_SUCCEEDED);
    TU_ASSERT_NEAR(got.progress, 1.0, 0);
    TU_ASSERT_NEAR(got.run_seconds, 0.25, 1e-12);
    assert_int_equal(got.way, 2);
    assert_int_equal(got.ncheckpoints, 2);
    assert_string_equal(got.checkpoints[1].id, "ck_00000000000000000001_1");
    assert_string_equal(got.checkpoints[1].generator_id, GEN);
    assert_string_equal(got.checkpoints[1].dataset_id, fp);
    assert_true(got.checkpoints[1].seed == 77 && got.checkpoints[1].size_bytes == 101);
    api_job_free(&got);
    api_checkpoint c;
    assert_int_equal(store_checkpoint_get(f->s, "ck_00000000000000000001_0", &c, &err), 0);
    assert_int_equal(c.candidate_index, 1);
    assert_string_equal(c.job_id, j.id);
    assert_int_equal(store_checkpoint_get(f->s, "ck_00000000000000000001_7", &c, &err),
                     D2_ENOTFOUND);
    int64_t off = -1;
    assert_int_equal(store_checkpoint_offset(f->s, "ck_00000000000000000001_1", &off, &err), 0);
    assert_true(off == 100);
    assert_int_equal(store_checkpoint_offset(f->s, "ck_00000000000000000001_9", &off, &err),
                     D2_ENOTFOUND);

    /* a second job derived from checkpoint 0 */
    api_job j2;
    make_job(&j2, "j_00000000000000000002", GEN, fp, 13000);
    snprintf(j2.parent_checkpoint, sizeof j2.parent_checkpoint, "ck_00000000000000000001_0");
    assert_int_equal(store_job_insert(f->s, &j2, "alice", &err), 0);
    assert_int_equal(store_job_set_running(f->s, j2.id, 13001, &err), 0);
    api_checkpoint ck2;
    memset(&ck2, 0, sizeof ck2);
    snprintf(ck2.id, sizeof ck2.id, "ck_00000000000000000002_0");
    assert_int_equal(store_job_succeed(f->s, j2.id, 2, 0.1, 13500, &ck2, NULL, 1,
                                       j2.parent_checkpoint, NULL, &err), 0);
    assert_int_equal(store_job_get(f->s, j2.id, &got, 0, &err), 0);
    assert_int_equal(got.has_gate, 0); /* no decision stored: none reported */
    api_job_free(&got);
    char(*ids)[API_ID_LEN] = NULL;
    int nids = -1;
    assert_int_equal(store_checkpoints_derived(f->s, "ck_00000000000000000001_0", &ids, &nids, &err),
                     0);
    assert_int_equal(nids, 1);
    assert_string_equal(ids[0], "ck_00000000000000000002_0");
    free(ids);
    assert_int_equal(store_checkpoints_derived(f->s, "ck_00000000000000000001_1", &ids, &nids, &err),
                     0);
    assert_int_equal(nids, 0);
    free(ids);

    /* failed and cancelled */
    api_job j3;
    make_job(&j3, "j_00000000000000000003", GEN, fp, 14000);
    assert_int_equal(store_job_insert(f->s, &j3, "bob", &err), 0);
    assert_int_equal(store_job_finish(f->s, j3.id, API_JOB_FAILED, "generation_failed", "boom",
                                      14500, 0.5, &err), 0);
    assert_int_equal(store_job_get(f->s, j3.id, &got, 1, &err), 0);
    assert_int_equal(got.state, API_JOB_FAILED);
    assert_string_equal(got.error_code, "generation_failed");
    assert_string_equal(got.error_message, "boom");
    assert_int_equal(got.ncheckpoints, 0);
    int64_t counts[API_JOB_STATE_COUNT];
    assert_int_equal(store_job_counts(f->s, counts, &err), 0);
    assert_true(counts[API_JOB_SUCCEEDED] == 2 && counts[API_JOB_FAILED] == 1 &&
                counts[API_JOB_QUEUED] == 0 && counts[API_JOB_RUNNING] == 0);
    assert_int_equal(store_job_get(f->s, "j_99999999999999999999", &got, 1, &err), D2_ENOTFOUND);

    store_generator g;
    assert_int_equal(store_generator_get(f->s, GEN, &g, &err), 0);
    assert_string_equal(g.name, "default");
    assert_int_equal(g.zoo_size, 17);
    assert_string_equal(g.provenance_json, "{\"zoo\": \"abc\"}");
    store_generator_free(&g);
}

static void test_list_pagination(void **state)
{
    fixture *f = *state;
    d2_error err;
    add_generator(f->s, GEN);
    char fp[65];
    put_dataset(f->s, fp, 1.0f);
    char id[32];
    for (int i = 0; i < 7; i++) {
        api_job j;
        snprintf(id, sizeof id, "j_%020d", i);
        make_job(&j, id, GEN, fp, 1000 + i);
        j.priority = i % 3;
        assert_int_equal(store_job_insert(f->s, &j, "anonymous", &err), 0);
        if (i % 2)
            assert_int_equal(store_job_finish(f->s, id, API_JOB_CANCELLED, NULL, NULL, 2000, -1,
                                              &err), 0);
    }
    api_job *list;
    int n;
    /* newest first, pages of 3 */
    assert_int_equal(store_job_list(f->s, -1, 0, 3, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, "j_00000000000000000006");
    assert_string_equal(list[2].id, "j_00000000000000000004");
    int64_t seq;
    assert_int_equal(store_job_seq(f->s, list[2].id, &seq, &err), 0);
    for (int i = 0; i < n; i++)
        api_job_free(&list[i]);
    free(list);
    assert_int_equal(store_job_list(f->s, -1, seq, 3, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, "j_00000000000000000003");
    free(list);
    /* by state */
    assert_int_equal(store_job_list(f->s, API_JOB_CANCELLED, 0, 10, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++)
        assert_int_equal(list[i].state, API_JOB_CANCELLED);
    free(list);
    /* queued in dispatch order: priority desc, then submission order */
    assert_int_equal(store_jobs_queued(f->s, &list, &n, &err), 0);
    assert_int_equal(n, 4); /* 0, 2, 4, 6 */
    assert_string_equal(list[0].id, "j_00000000000000000002"); /* priority 2 */
    assert_string_equal(list[1].id, "j_00000000000000000004"); /* priority 1 */
    assert_string_equal(list[2].id, "j_00000000000000000000"); /* priority 0, older */
    assert_string_equal(list[3].id, "j_00000000000000000006");
    free(list);
}

static void test_idempotency_and_tx(void **state)
{
    fixture *f = *state;
    d2_error err;
    add_generator(f->s, GEN);
    char fp[65];
    put_dataset(f->s, fp, 2.0f);
    api_job j;
    make_job(&j, "j_aaaaaaaaaaaaaaaaaaaa", GEN, fp, 1000);
    assert_int_equal(store_job_insert(f->s, &j, "p", &err), 0);
    char sha[65], job[API_ID_LEN];
    assert_int_equal(store_idem_get(f->s, "p", "k1", sha, job, &err), D2_ENOTFOUND);
    assert_int_equal(store_idem_put(f->s, "p", "k1", GEN, j.id, 1000, &err), 0);
    assert_int_equal(store_idem_get(f->s, "p", "k1", sha, job, &err), 0);
    assert_string_equal(sha, GEN);
    assert_string_equal(job, j.id);
    /* keys are per principal */
    assert_int_equal(store_idem_get(f->s, "q", "k1", sha, job, &err), D2_ENOTFOUND);
    assert_int_not_equal(store_idem_put(f->s, "p", "k1", GEN, j.id, 1001, &err), 0);
    int n = -1;
    assert_int_equal(store_idem_expire(f->s, 999, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_idem_expire(f->s, 1001, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_idem_get(f->s, "p", "k1", sha, job, &err), D2_ENOTFOUND);

    /* a nested failure rolls the whole transaction back */
    assert_int_equal(store_begin(f->s, &err), 0);
    assert_int_equal(store_idem_put(f->s, "p", "k2", GEN, j.id, 2000, &err), 0);
    api_job dup;
    make_job(&dup, j.id, GEN, fp, 2000); /* same id: UNIQUE fails */
    assert_int_not_equal(store_job_insert(f->s, &dup, "p", &err), 0);
    store_rollback(f->s);
    assert_int_equal(store_idem_get(f->s, "p", "k2", sha, job, &err), D2_ENOTFOUND);
    assert_int_equal(store_begin(f->s, &err), 0);
    assert_int_equal(store_idem_put(f->s, "p", "k3", GEN, j.id, 2000, &err), 0);
    assert_int_equal(store_commit(f->s, &err), 0);
    assert_int_equal(store_idem_get(f->s, "p", "k3", sha, job, &err), 0);
}

static void test_two_connections(void **state)
{
    fixture *f = *state;
    d2_error err;
    store *other;
    assert_int_equal(store_open(&other, f->path, 0, &err), 0);
    add_generator(f->s, GEN);
    char fp[65];
    put_dataset(f->s, fp, 3.0f);
    api_job j;
    make_job(&j, "j_bbbbbbbbbbbbbbbbbbbb", GEN, fp, 1000);
    assert_int_equal(store_job_insert(f->s, &j, "p", &err), 0);
    /* the other connection (a worker) sees the commit and writes the outcome */
    dataset d;
    int kind;
    assert_int_equal(store_dataset_load(other, fp, &d, &kind, &err), 0);
    dataset_free(&d);
    assert_int_equal(store_job_set_running(f->s, j.id, 1100, &err), 0);
    assert_int_equal(store_job_requeue(other, j.id, &err), 0);
    api_job got;
    assert_int_equal(store_job_get(f->s, j.id, &got, 0, &err), 0);
    assert_int_equal(got.state, API_JOB_QUEUED);
    store_close(other);
}

/* A version-1 store (before dataset_kinds) gains the kinds its data sets were
 * uploaded as: the datasets row's, and those its inline jobs were sent as. */
static void test_migrate_kinds_backfill(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("store-v1");
    char path[512];
    snprintf(path, sizeof path, "%s/v1.sqlite", dir);
    const embedded_file *v1 = embedded_find("migrations/sqlite/0001_init.sql");
    assert_non_null(v1);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, (const char *)v1->data, NULL, NULL, NULL), SQLITE_OK);
    const char *rows =
        "PRAGMA user_version = 1;"
        "INSERT INTO generators VALUES ('" GEN_HEX "', 'g', '/g', 's', 3, 3, 2, 2, 1, 1, 'z', "
        "'{}', '{}', 1, 1);"
        "INSERT INTO datasets VALUES ('" DS_A "', 'samples', 1, 1, 1, '[1]', zeroblob(4), "
        "zeroblob(4), 10);"
        "INSERT INTO datasets VALUES ('" DS_B "', 'embeddings', 1, 1, 1, '[1]', zeroblob(4), "
        "zeroblob(4), 20);"
        /* the numbers of A also came inline as embeddings (kept as samples) */
        "INSERT INTO jobs (id, state, generator_id, generator_name, dataset_id, embeddings, "
        "candidates, steps, sampler, guidance, seed, priority, principal, created_ms) VALUES "
        "('j_1', 'queued', '" GEN_HEX "', 'g', '" DS_A "', 1, 1, 1, 'ddim', 1, 1, 5, 'p', 30),"
        "('j_2', 'queued', '" GEN_HEX "', 'g', '" DS_A "', 1, 1, 1, 'ddim', 1, 1, 5, 'p', 40);";
    assert_int_equal(sqlite3_exec(db, rows, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    d2_error err;
    store *s;
    int v = -1;
    assert_int_equal(store_open(&s, path, 0, &err), 0);
    assert_int_equal(store_migrate(s, &v, &err), 0);
    assert_int_equal(v, 4);
    api_dataset_info info;
    assert_int_equal(store_dataset_info(s, DS_A, &info, &err), 0);
    assert_int_equal(info.kind, API_KIND_SAMPLES);
    assert_int_equal(info.kinds, (1 << API_KIND_SAMPLES) | (1 << API_KIND_EMBEDDINGS));
    assert_int_equal(store_dataset_info(s, DS_B, &info, &err), 0);
    assert_int_equal(info.kind, API_KIND_EMBEDDINGS);
    assert_int_equal(info.kinds, 1 << API_KIND_EMBEDDINGS);
    /* jobs stored before the gate existed ran without it */
    api_job old;
    assert_int_equal(store_job_get(s, "j_1", &old, 0, &err), 0);
    assert_int_equal(old.gate_requested, 0);
    assert_int_equal(old.has_gate, 0);
    assert_int_equal(old.refine_requested, 0); /* nor refinement */
    api_job_free(&old);
    store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT created_ms FROM dataset_kinds WHERE dataset_id = '"
                                        DS_A "' AND kind = 'embeddings'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 30); /* the first job that sent it so */
    sqlite3_finalize(st);
    sqlite3_close(db);
    tu_rmrf(dir);
    free(dir);
}

/* ---- PostgreSQL only ---- */

/* A libpq connection of the test's own to the fixture's database. */
static PGconn *pg_side(const fixture *f)
{
    PGconn *c = PQconnectdb(f->path);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s", PQerrorMessage(c));
    return c;
}

static void pg_exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* Migrations are recorded in schema_version; applying again is a no-op; a
 * newer schema than this build knows is refused. */
static void test_pg_migrate(void **state)
{
    fixture *f = *state;
    d2_error err;
    int v = -1;
    assert_string_equal(store_dialect(f->s), "postgres");
    assert_int_equal(store_migrate(f->s, &v, &err), 0);
    assert_int_equal(v, 3);
    assert_int_equal(store_user_version(f->s, &v, &err), 0);
    assert_int_equal(v, 3);
    PGconn *c = pg_side(f);
    PGresult *r = PQexec(c, "SELECT count(*) FROM schema_version");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "3");
    PQclear(r);
    pg_exec_ok(c, "INSERT INTO schema_version VALUES (99)");
    PQfinish(c);
    assert_int_equal(store_migrate(f->s, &v, &err), D2_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "99"));
}

/* A row lock held elsewhere past the lock timeout: the write fails and the
 * store says it is unavailable (503), not broken; once the lock is gone the
 * same call succeeds. */
static void test_pg_lock_timeout(void **state)
{
    fixture *f = *state;
    d2_error err;
    add_generator(f->s, GEN);
    char fp[65];
    put_dataset(f->s, fp, 4.0f);
    api_job j;
    make_job(&j, "j_cccccccccccccccccccc", GEN, fp, 1000);
    assert_int_equal(store_job_insert(f->s, &j, "p", &err), 0);
    PGconn *c = pg_side(f);
    pg_exec_ok(c, "BEGIN");
    pg_exec_ok(c, "SELECT * FROM jobs FOR UPDATE");
    store_set_busy_timeout(f->s, 100);
    assert_int_not_equal(store_job_set_cancel_requested(f->s, j.id, &err), 0);
    assert_int_equal(store_busy(f->s), 1);
    assert_non_null(strstr(err.msg, "lock timeout"));
    /* a claim does not wait: a row locked elsewhere is being claimed there */
    assert_int_equal(store_job_set_running(f->s, j.id, 1100, &err), D2_EINVAL);
    pg_exec_ok(c, "ROLLBACK");
    store_busy_clear(f->s);
    assert_int_equal(store_job_set_cancel_requested(f->s, j.id, &err), 0);
    assert_int_equal(store_job_set_running(f->s, j.id, 1100, &err), 0);
    assert_int_equal(store_busy(f->s), 0);
    PQfinish(c);
}

/* The server ends the store's connection: the next call fails as
 * unavailable, the one after re-opens the connection and works. */
static void test_pg_connection_lost(void **state)
{
    fixture *f = *state;
    d2_error err;
    int64_t counts[API_JOB_STATE_COUNT];
    assert_int_equal(store_job_counts(f->s, counts, &err), 0);
    PGconn *c = pg_side(f);
    pg_exec_ok(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()");
    PQfinish(c);
    int rc = store_job_counts(f->s, counts, &err);
    if (rc != 0)
        assert_int_equal(store_busy(f->s), 1);
    assert_int_equal(store_job_counts(f->s, counts, &err), 0);
    assert_int_equal(store_probe(f->s, &err), 0);
}

/* The URL form opens the same database; a URL naming no server fails with
 * libpq's reason. */
static void test_pg_url(void **state)
{
    fixture *f = *state;
    assert_true(store_is_postgres("postgres://u@h/db"));
    assert_true(store_is_postgres("postgresql:///db?host=/tmp"));
    assert_true(store_is_postgres("host=/tmp dbname=x"));
    assert_false(store_is_postgres("/var/lib/d2nwgd/d2nwgd.sqlite"));
    assert_false(store_is_postgres("file:/x.sqlite?vfs=unix"));
    char host[512] = "", db[256] = "";
    const char *h = strstr(f->path, "host="), *d = strstr(f->path, "dbname=");
    assert_non_null(h);
    assert_non_null(d);
    sscanf(h + 5, "%511s", host);
    sscanf(d + 7, "%255s", db);
    char url[1024];
    snprintf(url, sizeof url, "postgresql://postgres@/%s?host=%s", db, host);
    store *s = NULL;
    d2_error err;
    int v = -1;
    assert_int_equal(store_open(&s, url, 0, &err), 0);
    assert_int_equal(store_user_version(s, &v, &err), 0);
    assert_int_equal(v, 3);
    store_close(s);
    assert_int_not_equal(store_open(&s, "postgresql://postgres@/x?host=/nonexistent", 0, &err), 0);
    assert_null(s);
    assert_non_null(strstr(err.msg, "PostgreSQL"));
}

/* Two replicas on one database: a claim is one replica's; a running job's
 * lease keeps it while renewed; once it runs out another replica requeues
 * and claims it, and the first one's outcome is refused; the pack's bytes
 * come back from the store, slice by slice. */
static void test_pg_fleet(void **state)
{
    fixture *f = *state;
    d2_error err;
    add_generator(f->s, GEN);
    char fp[65];
    put_dataset(f->s, fp, 5.0f);
    api_job j;
    make_job(&j, "j_dddddddddddddddddddd", GEN, fp, 1000);
    assert_int_equal(store_job_insert(f->s, &j, "p", &err), 0);
    store *a, *b;
    store_conf ca = {f->path, NULL, 0, "replica-a", 60000};
    store_conf cb = {f->path, NULL, 0, "replica-b", 60000};
    assert_int_equal(store_open_conf(&a, &ca, &err), 0);
    assert_int_equal(store_open_conf(&b, &cb, &err), 0);
    assert_true(store_keeps_weights(a));
    assert_int_equal(store_job_set_running(a, j.id, 1100, &err), 0);
    assert_int_equal(store_job_set_running(b, j.id, 1100, &err), D2_EINVAL); /* a holds it */
    int n = -1;
    assert_int_equal(store_jobs_renew(a, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_jobs_requeue_expired(b, &n, &err), 0);
    assert_int_equal(n, 0); /* a's lease runs */
    /* a dies: its lease runs out */
    PGconn *c = pg_side(f);
    pg_exec_ok(c, "UPDATE jobs SET lease_until = 0");
    PQfinish(c);
    assert_int_equal(store_jobs_requeue_expired(b, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_job_set_running(b, j.id, 1200, &err), 0);
    api_checkpoint ck[2];
    memset(ck, 0, sizeof ck);
    const char pack[] = "0123456789abcdefXYZ";
    int64_t offsets[2] = {0, 10};
    for (int i = 0; i < 2; i++) {
        snprintf(ck[i].id, sizeof ck[i].id, "ck_dddddddddddddddddddd_%d", i);
        ck[i].rank = i;
        ck[i].size_bytes = i ? 9 : 10;
    }
    /* a comes back and would store its outcome: refused, nothing written */
    assert_int_equal(store_begin(a, &err), 0);
    assert_int_equal(store_pack_put(a, j.id, "stale", 5, &err), 0);
    assert_int_equal(store_job_succeed(a, j.id, 2, 0.1, 1300, ck, offsets, 2, NULL, NULL, &err),
                     D2_EINVAL);
    store_rollback(a);
    assert_int_equal(store_begin(b, &err), 0);
    assert_int_equal(store_pack_put(b, j.id, pack, sizeof pack - 1, &err), 0);
    assert_int_equal(store_job_succeed(b, j.id, 2, 0.1, 1300, ck, offsets, 2, NULL, NULL, &err),
                     0);
    assert_int_equal(store_commit(b, &err), 0);
    unsigned char *bytes;
    size_t len;
    if (store_checkpoint_bytes(a, ck[1].id, &bytes, &len, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(len, 9);
    assert_memory_equal(bytes, "abcdefXYZ", 9);
    free(bytes);
    api_job got;
    assert_int_equal(store_job_get(a, j.id, &got, 1, &err), 0);
    assert_int_equal(got.state, API_JOB_SUCCEEDED);
    assert_int_equal(got.attempts, 2);
    assert_int_equal(got.ncheckpoints, 2);
    api_job_free(&got);
    store_close(a);
    store_close(b);
}

#define PG_TEST(fn) {"pg_" #fn, fn, setup_pg, teardown, NULL}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datasets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_and_tx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_connections, setup, teardown),
        cmocka_unit_test(test_migrate_kinds_backfill),
        PG_TEST(test_datasets),
        PG_TEST(test_jobs_lifecycle),
        PG_TEST(test_list_pagination),
        PG_TEST(test_idempotency_and_tx),
        PG_TEST(test_two_connections),
        PG_TEST(test_pg_migrate),
        PG_TEST(test_pg_lock_timeout),
        PG_TEST(test_pg_connection_lost),
        PG_TEST(test_pg_url),
        PG_TEST(test_pg_fleet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
