/* store_internal.h - shared by store*.c only: the connection struct, the
 * table of one dialect's operations (store_api.c dispatches every public
 * store_* call through it) and the SQLite statement cache. */
#ifndef D2_SERVER_STORE_INTERNAL_H
#define D2_SERVER_STORE_INTERNAL_H

#include <sqlite3.h>

#include "embedded.h"
#include "store.h"

#define STORE_MAX_STMTS 64

struct pg_conn; /* libpq's PGconn (store_pg*.c include libpq-fe.h) */

/* One dialect: the store.h functions, same arguments and meaning. */
typedef struct store_ops {
    const char *dialect; /* "sqlite", "postgres" */
    void (*close)(store *s);
    int (*migrate)(store *s, int *version, d2_error *err);
    int (*user_version)(store *s, int *version, d2_error *err);
    void (*set_busy_timeout)(store *s, int ms);
    int (*probe)(store *s, d2_error *err);
    /* the outermost transaction's statements; the nesting (depth, failed) is
     * store_begin / store_commit / store_rollback's, in store_api.c */
    int (*tx_begin)(store *s, d2_error *err);
    int (*tx_commit)(store *s, d2_error *err);
    void (*tx_rollback)(store *s);
    int (*generator_upsert)(store *s, const char *name, const char *path, const gen_info *gi,
                            int64_t now_ms, d2_error *err);
    int (*generator_get)(store *s, const char *id, store_generator *g, d2_error *err);
    int (*dataset_put)(store *s, const char *id, int kind, const dataset *d, int64_t now_ms,
                       int *created, d2_error *err);
    int (*dataset_info)(store *s, const char *id, api_dataset_info *info, d2_error *err);
    int (*dataset_load)(store *s, const char *id, dataset *d, int *kind, d2_error *err);
    int (*job_insert)(store *s, const api_job *j, const char *principal, d2_error *err);
    int (*job_get)(store *s, const char *id, api_job *j, int with_checkpoints, d2_error *err);
    int (*job_seq)(store *s, const char *id, int64_t *seq, d2_error *err);
    int (*job_list)(store *s, int state, int64_t before_seq, int limit, api_job **out, int *n,
                    d2_error *err);
    int (*jobs_queued)(store *s, int limit, api_job **out, int *n, d2_error *err);
    int (*job_set_running)(store *s, const char *id, int64_t started_ms, d2_error *err);
    int (*job_set_cancel_requested)(store *s, const char *id, d2_error *err);
    int (*job_finish)(store *s, const char *id, api_job_state state, const char *error_code,
                      const char *error_message, int64_t finished_ms, double run_seconds,
                      d2_error *err);
    int (*job_succeed)(store *s, const char *id, int way, double run_seconds, int64_t finished_ms,
                       const api_checkpoint *c, const int64_t *offsets, int n,
                       const char *parent_checkpoint, const api_gate *gate, d2_error *err);
    int (*job_requeue)(store *s, const char *id, d2_error *err);
    int (*jobs_requeue_running)(store *s, int *n, d2_error *err);
    int (*job_counts)(store *s, int64_t counts[API_JOB_STATE_COUNT], d2_error *err);
    int (*checkpoint_get)(store *s, const char *id, api_checkpoint *c, d2_error *err);
    int (*checkpoint_offset)(store *s, const char *id, int64_t *offset, d2_error *err);
    int (*checkpoints_of_job)(store *s, const char *job_id, api_checkpoint **out, int *n,
                              d2_error *err);
    int (*checkpoints_derived)(store *s, const char *id, char (**ids)[API_ID_LEN], int *n,
                               d2_error *err);
    int (*idem_get)(store *s, const char *principal, const char *key, char sha[65],
                    char job_id[API_ID_LEN], d2_error *err);
    int (*idem_put)(store *s, const char *principal, const char *key, const char *sha,
                    const char *job_id, int64_t now_ms, d2_error *err);
    int (*idem_expire)(store *s, int64_t before_ms, int *n, d2_error *err);
    int (*jobs_renew)(store *s, int *n, d2_error *err);
    int (*jobs_requeue_expired)(store *s, int *n, d2_error *err);
    int (*pack_put)(store *s, const char *job_id, const void *bytes, size_t n, d2_error *err);
    int (*checkpoint_bytes)(store *s, const char *id, unsigned char **bytes, size_t *n,
                            d2_error *err);
    int keeps_weights;
} store_ops;

struct store {
    const store_ops *ops;
    int depth;        /* store_begin nesting */
    int failed;       /* a nested part failed: the outermost commit rolls back */
    int busy;         /* the last failure means "unavailable for now" (see store_busy) */
    char owner[128];  /* jobs.owner of the jobs this connection claims (PostgreSQL) */
    int lease_ms;
    /* SQLite (store.c, store_jobs.c, store_objects.c); db NULL for PostgreSQL */
    sqlite3 *db;
    sqlite3_stmt *rollback; /* "ROLLBACK", prepared at open (see store.c) */
    struct {
        const char *sql; /* identity: a static string of one of the store files */
        sqlite3_stmt *st;
    } cache[STORE_MAX_STMTS];
    int ncache;
    /* PostgreSQL (store_pg*.c); NULL for SQLite */
    struct pg_conn *pg;
    int lock_timeout_ms;
};

/* The dialects (store_sqlite_ops in store.c, store_pg_ops in store_pg.c). */
extern const store_ops store_sqlite_ops;
extern const store_ops store_pg_ops;
int store_sqlite_open(store **out, const char *path, int sync_full, d2_error *err);
/* also sets owner, lease_ms and the session's d2nwg.replica (migration 0003) */
int store_pg_open(store **out, const store_conf *conf, d2_error *err);

/* ---- SQLite helpers (store.c) ---- */

/* The cached statement for sql (prepared on first use), reset and unbound. */
sqlite3_stmt *store_stmt(store *s, const char *sql, d2_error *err);
/* Reset after use (releases the read snapshot). */
void store_done(sqlite3_stmt *st);
/* Fill err from the connection's last error; returns D2_EIO. */
int store_fail(store *s, d2_error *err, const char *what);
/* Bind helpers: text may be NULL (binds NULL). The text is not copied: it
 * must stay valid until the statement is reset (store_done). */
int store_bind_text(sqlite3_stmt *st, int i, const char *v);
/* Copy a text column into dst (empty for NULL). */
void store_col_text(sqlite3_stmt *st, int i, char *dst, size_t cap);
/* Step st to its end, reading each row with row(st, element) into a growing
 * array of elem_size elements (*out malloc'd, *n rows; NULL and 0 when there
 * are none). Resets st. what names the query in errors. */
typedef void (*store_row_fn)(sqlite3_stmt *st, void *element);
int store_collect_rows(store *s, sqlite3_stmt *st, size_t elem_size, store_row_fn row,
                       void **out, int *n, const char *what, d2_error *err);
/* Run a write statement to completion (SQLITE_DONE). */
int store_step_done(store *s, sqlite3_stmt *st, d2_error *err, const char *what);

/* ---- migrations (store_api.c): embedded PREFIX/NNNN_name.sql ---- */

/* "PREFIX0007_x.sql" -> 7; -1 when name is not a migration under prefix. */
int store_migration_version(const char *name, const char *prefix);
/* The highest number under prefix (0: none). */
int store_migrations_max(const char *prefix);
/* The migration numbered want under prefix (NULL, err filled, when it is
 * missing or numbered twice). */
const embedded_file *store_migration_find(const char *prefix, int want, d2_error *err);

/* Little-endian float32 / int32 blobs (datasets): to_le32 returns src itself
 * on little-endian hosts (*owned 0), else a malloc'd swapped copy. */
void *store_to_le32(const void *src, size_t n, int *owned);
void store_from_le32(void *dst, const void *src, size_t n);

/* The jobs columns both dialects select, in the order their row readers
 * (store_jobs.c, store_pg_jobs.c) take them. */
#define STORE_JOB_COLS                                                                       \
    "id, state, generator_id, generator_name, dataset_id, embeddings, candidates, steps, "  \
    "sampler, guidance, seed, priority, parent_checkpoint, created_ms, started_ms, "        \
    "finished_ms, attempts, progress, cancel_requested, error_code, error_message, way, "   \
    "run_seconds, gate, gate_decision, refine"

#endif
