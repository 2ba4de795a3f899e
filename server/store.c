/* store.c - the SQLite dialect: connection, pragmas, migrations,
 * transactions and the statement cache (jobs in store_jobs.c, everything
 * else in store_objects.c; the PostgreSQL dialect is store_pg*.c). */
#include "store_internal.h"
#include "store_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"

/* A lock held by another connection (or process): the caller may try again. */
static void note_busy(store *s)
{
    int code = s && s->db ? sqlite3_errcode(s->db) & 0xff : SQLITE_OK;
    if (s)
        s->busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

void sq_set_busy_timeout(store *s, int ms)
{
    sqlite3_busy_timeout(s->db, ms);
}

int store_fail(store *s, d2_error *err, const char *what)
{
    note_busy(s);
    return d2_fail(err, D2_EIO, "store: %s: %s", what, s && s->db ? sqlite3_errmsg(s->db) : "no database");
}

static void rollback_now(store *s);

sqlite3_stmt *store_stmt(store *s, const char *sql, d2_error *err)
{
    if (s->depth == 0)
        rollback_now(s); /* never read through a transaction a failed rollback left */
    for (int i = 0; i < s->ncache; i++)
        if (s->cache[i].sql == sql) {
            sqlite3_reset(s->cache[i].st);
            sqlite3_clear_bindings(s->cache[i].st);
            return s->cache[i].st;
        }
    if (s->ncache >= STORE_MAX_STMTS) {
        d2_fail(err, D2_ERANGE, "store: statement cache full");
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        store_fail(s, err, "prepare");
        return NULL;
    }
    s->cache[s->ncache].sql = sql;
    s->cache[s->ncache].st = st;
    s->ncache++;
    return st;
}

void store_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

int store_collect_rows(store *s, sqlite3_stmt *st, size_t elem_size, store_row_fn row,
                       void **out, int *n, const char *what, d2_error *err)
{
    *out = NULL;
    *n = 0;
    char *list = NULL;
    int count = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            char *q = realloc(list, (size_t)cap * elem_size);
            if (!q) {
                store_done(st);
                free(list);
                return d2_fail(err, D2_ENOMEM, "store: out of memory");
            }
            list = q;
        }
        row(st, list + (size_t)count++ * elem_size);
    }
    store_done(st);
    if (rc != SQLITE_DONE) {
        free(list);
        return store_fail(s, err, what);
    }
    *out = list;
    *n = count;
    return 0;
}

int store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    /* SQLITE_STATIC: no copy, so no allocation that could fail. A
     * SQLITE_TRANSIENT bind that runs out of memory leaves the parameter
     * NULL, and the statement would then store NULL where the caller's value
     * belongs (found by tests/unit/test_store_faults.c). */
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

void store_col_text(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int store_step_done(store *s, sqlite3_stmt *st, d2_error *err, const char *what)
{
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? 0 : store_fail(s, err, what);
    store_done(st);
    return out;
}

/* Run sql; a failure is reported as "store: WHAT: why" (what: the SQL
 * itself for one-liners, a name for a migration's script). */
static int exec_as(store *s, const char *sql, const char *what, d2_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        note_busy(s);
        d2_fail(err, D2_EIO, "store: %s: %s", what, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return D2_EIO;
    }
    return 0;
}

static int exec(store *s, const char *sql, d2_error *err)
{
    return exec_as(s, sql, sql, err);
}

/* Roll back whatever transaction the connection has open, with the
 * statement prepared at open: a ROLLBACK that must first be compiled can
 * itself fail for want of memory, and would leave the connection inside the
 * failed transaction (every later BEGIN refused, reads seeing its writes). */
static void rollback_now(store *s)
{
    if (sqlite3_get_autocommit(s->db))
        return; /* none open (SQLite may have rolled it back itself) */
    if (s->rollback) {
        sqlite3_step(s->rollback);
        sqlite3_reset(s->rollback);
    }
    if (!sqlite3_get_autocommit(s->db))
        exec(s, "ROLLBACK", NULL);
}

int store_sqlite_open(store **out, const char *path, int sync_full, d2_error *err)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s)
        return d2_fail(err, D2_ENOMEM, "store: out of memory");
    s->ops = &store_sqlite_ops;
    /* URI filenames ("file:PATH?vfs=NAME") let the fault-injection tests
     * choose a VFS; a plain path is opened as before */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        d2_fail(err, D2_EIO, "store: open %s: %s", path,
                s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return D2_EIO;
    }
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_extended_result_codes(s->db, 1);
    if (exec(s, "PRAGMA journal_mode=WAL", err) != 0 ||
        exec(s, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err) != 0 ||
        exec(s, "PRAGMA foreign_keys=ON", err) != 0) {
        store_close(s);
        return D2_EIO;
    }
    /* journal_mode=WAL answers the mode it got: make sure it is WAL */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        /* out of memory or I/O: say so, not that WAL is impossible */
        store_fail(s, err, "PRAGMA journal_mode");
        sqlite3_finalize(st);
        store_close(s);
        return D2_EIO;
    }
    const unsigned char *mode = sqlite3_column_text(st, 0);
    if (!mode || strcmp((const char *)mode, "wal") != 0) {
        d2_fail(err, D2_EIO, "store: %s: cannot use WAL journal mode (%s)", path,
                mode ? (const char *)mode : sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        store_close(s);
        return D2_EIO;
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v3(s->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &s->rollback,
                           NULL) != SQLITE_OK) {
        store_fail(s, err, "prepare ROLLBACK");
        store_close(s);
        return D2_EIO;
    }
    *out = s;
    return 0;
}

void sq_close(store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->ncache; i++)
        sqlite3_finalize(s->cache[i].st);
    sqlite3_finalize(s->rollback);
    if (s->db)
        sqlite3_close(s->db);
    free(s);
}

/* The outermost transaction's statements (store_api.c keeps the nesting). */
static int sq_tx_begin(store *s, d2_error *err)
{
    rollback_now(s); /* left open by a rollback that failed */
    return exec(s, "BEGIN IMMEDIATE", err);
}

static int sq_tx_commit(store *s, d2_error *err)
{
    return exec(s, "COMMIT", err);
}

int sq_probe(store *s, d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    store_rollback(s);
    return 0;
}

int sq_user_version(store *s, int *version, d2_error *err)
{
    if (s->depth == 0)
        rollback_now(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return store_fail(s, err, "user_version");
    }
    *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int sq_migrate(store *s, int *version, d2_error *err)
{
    int cur;
    if (store_user_version(s, &cur, err) != 0)
        return D2_EIO;
    int max = store_migrations_max(SQLITE_MIGRATIONS);
    if (cur > max)
        return d2_fail(err, D2_EUNSUPPORTED,
                       "store: schema version %d is newer than this d2nwgd knows (%d)", cur, max);
    /* every pending migration in one transaction: a start-up that fails
     * half way (disk full, I/O error) leaves the schema as it found it */
    if (cur < max && store_begin(s, err) != 0)
        return D2_EIO;
    for (int want = cur + 1; want <= max; want++) {
        const embedded_file *f = store_migration_find(SQLITE_MIGRATIONS, want, err);
        if (!f) {
            store_rollback(s);
            return D2_EFORMAT;
        }
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", want);
        if (exec_as(s, (const char *)f->data, "apply", err) != 0 || exec(s, pragma, err) != 0) {
            d2_wrap(err, "migration %s", f->name);
            store_rollback(s);
            return D2_EIO;
        }
    }
    if (cur < max) {
        if (store_commit(s, err) != 0)
            return D2_EIO;
        cur = max;
    }
    if (version)
        *version = cur;
    return 0;
}

/* One node: no leases to renew or to expire, and checkpoint bytes live in
 * pack files (routes_checkpoints.c, worker.c). */
static int sq_jobs_renew(store *s, int *n, d2_error *err)
{
    (void)s;
    (void)err;
    *n = 0;
    return 0;
}

static int sq_pack_put(store *s, const char *job_id, const void *bytes, size_t n, d2_error *err)
{
    (void)s;
    (void)bytes;
    (void)n;
    return d2_fail(err, D2_EUNSUPPORTED, "store: SQLite keeps job %s's pack in a file", job_id);
}

static int sq_checkpoint_bytes(store *s, const char *id, unsigned char **bytes, size_t *n,
                               d2_error *err)
{
    (void)s;
    *bytes = NULL;
    *n = 0;
    return d2_fail(err, D2_EUNSUPPORTED, "store: SQLite keeps %s's bytes in a pack file", id);
}

const store_ops store_sqlite_ops = {
    .dialect = "sqlite",
    .close = sq_close,
    .migrate = sq_migrate,
    .user_version = sq_user_version,
    .set_busy_timeout = sq_set_busy_timeout,
    .probe = sq_probe,
    .tx_begin = sq_tx_begin,
    .tx_commit = sq_tx_commit,
    .tx_rollback = rollback_now,
    .generator_upsert = sq_generator_upsert,
    .generator_get = sq_generator_get,
    .dataset_put = sq_dataset_put,
    .dataset_info = sq_dataset_info,
    .dataset_load = sq_dataset_load,
    .job_insert = sq_job_insert,
    .job_get = sq_job_get,
    .job_seq = sq_job_seq,
    .job_list = sq_job_list,
    .jobs_queued = sq_jobs_queued,
    .job_set_running = sq_job_set_running,
    .job_set_cancel_requested = sq_job_set_cancel_requested,
    .job_finish = sq_job_finish,
    .job_succeed = sq_job_succeed,
    .job_requeue = sq_job_requeue,
    .jobs_requeue_running = sq_jobs_requeue_running,
    .job_counts = sq_job_counts,
    .checkpoint_get = sq_checkpoint_get,
    .checkpoint_offset = sq_checkpoint_offset,
    .checkpoints_of_job = sq_checkpoints_of_job,
    .checkpoints_derived = sq_checkpoints_derived,
    .idem_get = sq_idem_get,
    .idem_put = sq_idem_put,
    .idem_expire = sq_idem_expire,
    .jobs_renew = sq_jobs_renew,
    .jobs_requeue_expired = sq_jobs_renew, /* nothing expires on one node */
    .pack_put = sq_pack_put,
    .checkpoint_bytes = sq_checkpoint_bytes,
    .keeps_weights = 0,
};
