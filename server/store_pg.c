/* store_pg.c - the PostgreSQL dialect: schema migrations (tracked by the
 * schema_version table, serialised across replicas by an advisory lock) and
 * its table of operations (connection in store_pg_conn.c, jobs in
 * store_pg_jobs.c, everything else in store_pg_objects.c). */
#include "store_pg_conn.h"

#include <stdlib.h>
#include <string.h>

/* pg_advisory_xact_lock key: "d2nwg" in ASCII */
#define PG_MIGRATE_LOCK "431309613927"

static int schema_exists(store *s, int *exists, d2_error *err)
{
    PGresult *r = pg_run(s, "SELECT to_regclass('schema_version') IS NOT NULL", NULL,
                         PGRES_TUPLES_OK, "schema_version", err);
    if (!r)
        return D2_EIO;
    *exists = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

int pg_user_version(store *s, int *version, d2_error *err)
{
    int exists;
    *version = 0;
    if (schema_exists(s, &exists, err) != 0)
        return D2_EIO;
    if (!exists)
        return 0;
    PGresult *r = pg_run(s, "SELECT COALESCE(MAX(version), 0) FROM schema_version", NULL,
                         PGRES_TUPLES_OK, "schema_version", err);
    if (!r)
        return D2_EIO;
    *version = pg_col_int(r, 0, 0);
    PQclear(r);
    return 0;
}

/* One migration script (several statements, no values: PQexec) and its row. */
static int apply(store *s, const embedded_file *f, int version, d2_error *err)
{
    PGresult *r = PQexec(s->pg, (const char *)f->data);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorMessage(r);
        d2_fail(err, D2_EIO, "store: migration %s: %.*s", f->name, (int)strcspn(msg, "\n"), msg);
        PQclear(r);
        s->failed = 1;
        return D2_EIO;
    }
    PQclear(r);
    pg_params p;
    pgp_init(&p);
    pgp_i64(&p, version);
    return pg_cmd(s, "INSERT INTO schema_version (version) VALUES ($1)", &p, NULL,
                  "record schema version", err);
}

static int migrate_locked(store *s, int *cur, int max, d2_error *err)
{
    PGresult *r = pg_run(s, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", NULL,
                         PGRES_TUPLES_OK, "migration lock", err);
    if (!r)
        return D2_EIO;
    PQclear(r);
    if (pg_cmd(s, "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY)",
               NULL, NULL, "create schema_version", err) != 0 ||
        pg_user_version(s, cur, err) != 0)
        return D2_EIO;
    if (*cur > max)
        return d2_fail(err, D2_EUNSUPPORTED,
                       "store: schema version %d is newer than this d2nwgd knows (%d)", *cur, max);
    for (int want = *cur + 1; want <= max; want++) {
        const embedded_file *f = store_migration_find(PG_MIGRATIONS, want, err);
        if (!f)
            return D2_EFORMAT;
        if (apply(s, f, want, err) != 0)
            return D2_EIO;
    }
    *cur = max;
    return 0;
}

int pg_migrate(store *s, int *version, d2_error *err)
{
    int max = store_migrations_max(PG_MIGRATIONS), cur = 0;
    if (store_begin(s, err) != 0)
        return D2_EIO;
    if (migrate_locked(s, &cur, max, err) != 0) {
        store_rollback(s);
        return err->code ? err->code : D2_EIO;
    }
    if (store_commit(s, err) != 0)
        return D2_EIO;
    if (version)
        *version = cur;
    return 0;
}

const store_ops store_pg_ops = {
    .dialect = "postgres",
    .close = pg_close,
    .migrate = pg_migrate,
    .user_version = pg_user_version,
    .set_busy_timeout = pg_set_busy_timeout,
    .probe = pg_probe,
    .tx_begin = pg_tx_begin,
    .tx_commit = pg_tx_commit,
    .tx_rollback = pg_tx_rollback,
    .generator_upsert = pg_generator_upsert,
    .generator_get = pg_generator_get,
    .dataset_put = pg_dataset_put,
    .dataset_info = pg_dataset_info,
    .dataset_load = pg_dataset_load,
    .job_insert = pg_job_insert,
    .job_get = pg_job_get,
    .job_seq = pg_job_seq,
    .job_list = pg_job_list,
    .jobs_queued = pg_jobs_queued,
    .job_set_running = pg_job_set_running,
    .job_set_cancel_requested = pg_job_set_cancel_requested,
    .job_finish = pg_job_finish,
    .job_succeed = pg_job_succeed,
    .job_requeue = pg_job_requeue,
    .jobs_requeue_running = pg_jobs_requeue_running,
    .job_counts = pg_job_counts,
    .checkpoint_get = pg_checkpoint_get,
    .checkpoint_offset = pg_checkpoint_offset,
    .checkpoints_of_job = pg_checkpoints_of_job,
    .checkpoints_derived = pg_checkpoints_derived,
    .idem_get = pg_idem_get,
    .idem_put = pg_idem_put,
    .idem_expire = pg_idem_expire,
    .jobs_renew = pg_jobs_renew,
    .jobs_requeue_expired = pg_jobs_requeue_expired,
    .pack_put = pg_pack_put,
    .checkpoint_bytes = pg_checkpoint_bytes,
    .keeps_weights = 1,
};
