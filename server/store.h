/* store.h - d2nwgd's store: one `store` is one connection, used by one
 * thread only (each store thread of storeq.h and each worker open their own;
 * the loop thread opens one only at start-up, before it serves).
 *
 * Two dialects behind one table of operations (store_internal.h):
 *  - SQLite (store.c, store_jobs.c, store_objects.c), the embedded default:
 *    WAL mode, busy_timeout 5 s, foreign keys on; every write runs inside
 *    BEGIN IMMEDIATE; schema from migrations/sqlite/NNNN_*.sql, tracked by
 *    PRAGMA user_version.
 *  - PostgreSQL through libpq (store_pg*.c): parameterised statements only,
 *    writes in BEGIN ... COMMIT, lock_timeout as the busy timeout; schema
 *    from migrations/postgres/NNNN_*.sql, tracked by the schema_version table
 *    (migrations of several replicas serialised by an advisory lock).
 * store_begin/store_commit nest in both. Functions return 0 or a negative
 * D2_E* code (D2_ENOTFOUND for a missing row) and fill err. */
#ifndef D2_SERVER_STORE_H
#define D2_SERVER_STORE_H

#include <stdint.h>

#include "api.h"
#include "common.h"
#include "data.h"
#include "generator.h"

typedef struct store store;

/* path: a file name, or an SQLite URI ("file:/data/d2nwgd.sqlite?vfs=NAME");
 * or for PostgreSQL a postgres:// / postgresql:// URL or a libpq
 * "key=value ..." string (store_is_postgres). sync_full: SQLite only. */
int store_open(store **out, const char *path, int sync_full, d2_error *err);
/* store_open with a password for PostgreSQL (NULL: libpq's own PGPASSWORD,
 * PGPASSFILE or ~/.pgpass); ignored by SQLite. */
int store_open_auth(store **out, const char *target, int sync_full, const char *password,
                    d2_error *err);
/* Everything a connection is opened with (store_open_conf). */
typedef struct store_conf {
    const char *target;   /* as store_open's path */
    const char *password; /* PostgreSQL; NULL: libpq's environment */
    int sync_full;        /* SQLite */
    const char *owner;    /* PostgreSQL: this replica's name in jobs.owner (NULL: "d2nwgd") */
    int lease_ms;         /* PostgreSQL: a claimed job's lease (0: STORE_LEASE_MS) */
} store_conf;
#define STORE_LEASE_MS 10000
int store_open_conf(store **out, const store_conf *conf, d2_error *err);
/* 1 when target names a PostgreSQL database rather than an SQLite file. */
int store_is_postgres(const char *target);
void store_close(store *s);
/* "sqlite" or "postgres" */
const char *store_dialect(const store *s);
/* Apply pending migrations, all in one transaction (a failure leaves the
 * schema as it was); *version gets the schema version reached. */
int store_migrate(store *s, int *version, d2_error *err);
int store_user_version(store *s, int *version, d2_error *err);

/* 1 when the last failure on this connection was a lock another connection
 * or process holds (SQLITE_BUSY / SQLITE_LOCKED after the busy timeout; for
 * PostgreSQL a lock timeout, a serialization failure or a lost connection,
 * which the next call tries to re-open): the store is unavailable for now,
 * not broken. store_busy_clear forgets it. */
int store_busy(const store *s);
void store_busy_clear(store *s);
/* How long a statement waits for a lock before it fails (default 5000 ms;
 * PostgreSQL: lock_timeout). */
void store_set_busy_timeout(store *s, int ms);
/* Take the write lock and let it go (BEGIN IMMEDIATE; ROLLBACK): 0 when a
 * write could run now (PostgreSQL: the server answers a query). */
int store_probe(store *s, d2_error *err);

int store_begin(store *s, d2_error *err);  /* BEGIN IMMEDIATE at depth 0 */
int store_commit(store *s, d2_error *err);
void store_rollback(store *s);             /* rolls the outermost transaction back */

/* ---- generators ---- */
typedef struct store_generator {
    char id[65];
    char name[API_NAME_LEN];
    char spec[256];
    char zoo_fingerprint[65];
    int zoo_size;
    char *config_json;     /* owned */
    char *provenance_json; /* owned */
} store_generator;
int store_generator_upsert(store *s, const char *name, const char *path, const gen_info *gi,
                           int64_t now_ms, d2_error *err);
int store_generator_get(store *s, const char *id, store_generator *g, d2_error *err);
void store_generator_free(store_generator *g);

/* ---- datasets (id = fingerprint) ---- */
/* Insert unless present; *created = 1 when this call stored the numbers.
 * The kind is recorded either way (the same numbers may be uploaded as
 * samples and as embeddings; store_dataset_info's kinds lists each). */
int store_dataset_put(store *s, const char *id, int kind, const dataset *d, int64_t now_ms,
                      int *created, d2_error *err);
int store_dataset_info(store *s, const char *id, api_dataset_info *info, d2_error *err);
int store_dataset_load(store *s, const char *id, dataset *d, int *kind, d2_error *err);

/* ---- jobs ---- */
/* Insert a new queued job (fields of j: id, generator_*, dataset_id, kind,
 * params, priority, parent_checkpoint, created_ms, gate_requested) with its
 * lineage edges. */
int store_job_insert(store *s, const api_job *j, const char *principal, d2_error *err);
/* Load a job; with_checkpoints: also its ranked checkpoints when succeeded. */
int store_job_get(store *s, const char *id, api_job *j, int with_checkpoints, d2_error *err);
int store_job_seq(store *s, const char *id, int64_t *seq, d2_error *err);
/* Newest first: jobs with seq < before_seq (0 = from the newest), optionally
 * only `state` (-1 = any). *out is malloc'd (api_job_free each, then free). */
int store_job_list(store *s, int state, int64_t before_seq, int limit, api_job **out, int *n,
                   d2_error *err);
/* Queued jobs in dispatch order (priority desc, submission asc). */
int store_jobs_queued(store *s, api_job **out, int *n, d2_error *err);
/* The first `limit` of them (the head a replica adopts, fleet.h). */
int store_jobs_queued_first(store *s, int limit, api_job **out, int *n, d2_error *err);
int store_job_set_running(store *s, const char *id, int64_t started_ms, d2_error *err);
int store_job_set_cancel_requested(store *s, const char *id, d2_error *err);
/* failed or cancelled, with an optional error. */
int store_job_finish(store *s, const char *id, api_job_state state, const char *error_code,
                     const char *error_message, int64_t finished_ms, double run_seconds,
                     d2_error *err);
/* Success: checkpoints (offsets[i]: where checkpoint i starts in the job's
 * pack file; each with its method), lineage edges (job -> checkpoint, parent
 * -> checkpoint), the gate's decision (may be NULL: none) and the job's new
 * state, in one transaction. */
int store_job_succeed(store *s, const char *id, int way, double run_seconds, int64_t finished_ms,
                      const api_checkpoint *c, const int64_t *offsets, int n,
                      const char *parent_checkpoint, const api_gate *gate, d2_error *err);
/* ---- several replicas on one database (PostgreSQL; SQLite: single node,
 * these are no-ops) ----
 * store_job_set_running claims a queued job for this connection's owner
 * (SELECT ... FOR UPDATE SKIP LOCKED: two replicas never wait on each other)
 * under a lease of lease_ms; it fails with D2_EINVAL when the job is not
 * queued any more (another replica took it, or it ended). The outcome
 * writes (succeed, requeue, finish of a running job) apply only while this
 * owner holds the job; store_job_succeed fails with D2_EINVAL otherwise. */
/* Extend the lease of every job this owner runs; *n = how many. */
int store_jobs_renew(store *s, int *n, d2_error *err);
/* Jobs whose lease ran out (their replica died) back to queued; *n. */
int store_jobs_requeue_expired(store *s, int *n, d2_error *err);
/* 1 when checkpoint bytes live in the store (PostgreSQL: store_pack_put,
 * store_checkpoint_bytes) rather than in DATA/checkpoints pack files. */
int store_keeps_weights(const store *s);
/* A job's pack (its checkpoints back to back, offsets as store_job_succeed's). */
int store_pack_put(store *s, const char *job_id, const void *bytes, size_t n, d2_error *err);
/* One checkpoint's bytes (malloc'd). */
int store_checkpoint_bytes(store *s, const char *id, unsigned char **bytes, size_t *n,
                           d2_error *err);

/* Back to queued (shutdown before it finished). */
int store_job_requeue(store *s, const char *id, d2_error *err);
/* Every running job back to queued (start-up after a crash; PostgreSQL: those
 * whose lease ran out and those its owner's previous process ran - same
 * HOST:DATA before the first '/' of owner -, the others run on live
 * replicas); *n = how many. */
int store_jobs_requeue_running(store *s, int *n, d2_error *err);
int store_job_counts(store *s, int64_t counts[API_JOB_STATE_COUNT], d2_error *err);

/* ---- checkpoints and lineage ---- */
int store_checkpoint_get(store *s, const char *id, api_checkpoint *c, d2_error *err);
/* Where a checkpoint's bytes start in its job's pack file. */
int store_checkpoint_offset(store *s, const char *id, int64_t *offset, d2_error *err);
int store_checkpoints_of_job(store *s, const char *job_id, api_checkpoint **out, int *n,
                             d2_error *err);
/* Checkpoints derived from `id` (edges checkpoint -> checkpoint 'derived').
 * *ids is malloc'd: n strings of API_ID_LEN bytes. */
int store_checkpoints_derived(store *s, const char *id, char (**ids)[API_ID_LEN], int *n,
                              d2_error *err);

/* ---- idempotency keys ---- */
int store_idem_get(store *s, const char *principal, const char *key, char sha[65],
                   char job_id[API_ID_LEN], d2_error *err);
int store_idem_put(store *s, const char *principal, const char *key, const char *sha,
                   const char *job_id, int64_t now_ms, d2_error *err);
int store_idem_expire(store *s, int64_t before_ms, int *n, d2_error *err);

#endif
