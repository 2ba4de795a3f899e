/* store_sqlite.h - the SQLite dialect's operations (store.c, store_jobs.c,
 * store_objects.c), gathered in store_sqlite_ops; see store.h for each. */
#ifndef D2_SERVER_STORE_SQLITE_H
#define D2_SERVER_STORE_SQLITE_H

#include "store_internal.h"

/* the embedded migrations of this dialect */
#define SQLITE_MIGRATIONS "migrations/sqlite/"

void sq_close(store *s);
int sq_migrate(store *s, int *version, d2_error *err);
int sq_user_version(store *s, int *version, d2_error *err);
void sq_set_busy_timeout(store *s, int ms);
int sq_probe(store *s, d2_error *err);
int sq_generator_upsert(store *s, const char *name, const char *path, const gen_info *gi, int64_t now_ms, d2_error *err);
int sq_generator_get(store *s, const char *id, store_generator *g, d2_error *err);
int sq_dataset_put(store *s, const char *id, int kind, const dataset *d, int64_t now_ms, int *created, d2_error *err);
int sq_dataset_info(store *s, const char *id, api_dataset_info *info, d2_error *err);
int sq_dataset_load(store *s, const char *id, dataset *d, int *kind, d2_error *err);
int sq_job_insert(store *s, const api_job *j, const char *principal, d2_error *err);
int sq_job_get(store *s, const char *id, api_job *j, int with_checkpoints, d2_error *err);
int sq_job_seq(store *s, const char *id, int64_t *seq, d2_error *err);
int sq_job_list(store *s, int state, int64_t before_seq, int limit, api_job **out, int *n, d2_error *err);
int sq_jobs_queued(store *s, int limit, api_job **out, int *n, d2_error *err);
int sq_job_set_running(store *s, const char *id, int64_t started_ms, d2_error *err);
int sq_job_set_cancel_requested(store *s, const char *id, d2_error *err);
int sq_job_finish(store *s, const char *id, api_job_state state, const char *error_code, const char *error_message, int64_t finished_ms, double run_seconds, d2_error *err);
int sq_job_succeed(store *s, const char *id, int way, double run_seconds, int64_t finished_ms, const api_checkpoint *c, const int64_t *offsets, int n, const char *parent_checkpoint, const api_gate *gate, d2_error *err);
int sq_job_requeue(store *s, const char *id, d2_error *err);
int sq_jobs_requeue_running(store *s, int *n, d2_error *err);
int sq_job_counts(store *s, int64_t counts[API_JOB_STATE_COUNT], d2_error *err);
int sq_checkpoint_get(store *s, const char *id, api_checkpoint *c, d2_error *err);
int sq_checkpoint_offset(store *s, const char *id, int64_t *offset, d2_error *err);
int sq_checkpoints_of_job(store *s, const char *job_id, api_checkpoint **out, int *n, d2_error *err);
int sq_checkpoints_derived(store *s, const char *id, char (**ids)[API_ID_LEN], int *n, d2_error *err);
int sq_idem_get(store *s, const char *principal, const char *key, char sha[65], char job_id[API_ID_LEN], d2_error *err);
int sq_idem_put(store *s, const char *principal, const char *key, const char *sha, const char *job_id, int64_t now_ms, d2_error *err);
int sq_idem_expire(store *s, int64_t before_ms, int *n, d2_error *err);

#endif
