/* store_pg.h - the PostgreSQL dialect's operations (store_pg*.c), gathered
 * in store_pg_ops; see store.h for each, and store_pg_conn.h for the helpers. */
#ifndef D2_SERVER_STORE_PG_H
#define D2_SERVER_STORE_PG_H

#include "store_internal.h"

void pg_close(store *s);
int pg_migrate(store *s, int *version, d2_error *err);
int pg_user_version(store *s, int *version, d2_error *err);
void pg_set_busy_timeout(store *s, int ms);
int pg_probe(store *s, d2_error *err);
int pg_tx_begin(store *s, d2_error *err);
int pg_tx_commit(store *s, d2_error *err);
void pg_tx_rollback(store *s);
int pg_generator_upsert(store *s, const char *name, const char *path, const gen_info *gi, int64_t now_ms, d2_error *err);
int pg_generator_get(store *s, const char *id, store_generator *g, d2_error *err);
int pg_dataset_put(store *s, const char *id, int kind, const dataset *d, int64_t now_ms, int *created, d2_error *err);
int pg_dataset_info(store *s, const char *id, api_dataset_info *info, d2_error *err);
int pg_dataset_load(store *s, const char *id, dataset *d, int *kind, d2_error *err);
int pg_job_insert(store *s, const api_job *j, const char *principal, d2_error *err);
int pg_job_get(store *s, const char *id, api_job *j, int with_checkpoints, d2_error *err);
int pg_job_seq(store *s, const char *id, int64_t *seq, d2_error *err);
int pg_job_list(store *s, int state, int64_t before_seq, int limit, api_job **out, int *n, d2_error *err);
int pg_jobs_queued(store *s, int limit, api_job **out, int *n, d2_error *err);
int pg_job_set_running(store *s, const char *id, int64_t started_ms, d2_error *err);
int pg_job_set_cancel_requested(store *s, const char *id, d2_error *err);
int pg_job_finish(store *s, const char *id, api_job_state state, const char *error_code, const char *error_message, int64_t finished_ms, double run_seconds, d2_error *err);
int pg_job_succeed(store *s, const char *id, int way, double run_seconds, int64_t finished_ms, const api_checkpoint *c, const int64_t *offsets, int n, const char *parent_checkpoint, const api_gate *gate, d2_error *err);
int pg_job_requeue(store *s, const char *id, d2_error *err);
int pg_jobs_requeue_running(store *s, int *n, d2_error *err);
int pg_job_counts(store *s, int64_t counts[API_JOB_STATE_COUNT], d2_error *err);
int pg_checkpoint_get(store *s, const char *id, api_checkpoint *c, d2_error *err);
int pg_checkpoint_offset(store *s, const char *id, int64_t *offset, d2_error *err);
int pg_checkpoints_of_job(store *s, const char *job_id, api_checkpoint **out, int *n, d2_error *err);
int pg_checkpoints_derived(store *s, const char *id, char (**ids)[API_ID_LEN], int *n, d2_error *err);
int pg_idem_get(store *s, const char *principal, const char *key, char sha[65], char job_id[API_ID_LEN], d2_error *err);
int pg_idem_put(store *s, const char *principal, const char *key, const char *sha, const char *job_id, int64_t now_ms, d2_error *err);
int pg_idem_expire(store *s, int64_t before_ms, int *n, d2_error *err);
int pg_jobs_renew(store *s, int *n, d2_error *err);
int pg_jobs_requeue_expired(store *s, int *n, d2_error *err);
int pg_pack_put(store *s, const char *job_id, const void *bytes, size_t n, d2_error *err);
int pg_checkpoint_bytes(store *s, const char *id, unsigned char **bytes, size_t *n, d2_error *err);

#endif
