/* store_api.c - the public store_* functions: store_open picks the dialect
 * from its argument, every other call goes through the store's ops table
 * (store_internal.h); plus what no dialect owns (busy flag, freeing a
 * generator row, migration lookup, little-endian blobs). */
#include "store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"

/* "postgres://", "postgresql://" or a libpq "key=value ..." string: the
 * PostgreSQL dialect; anything else is an SQLite file name or URI. */
int store_is_postgres(const char *target)
{
    if (!strncmp(target, "postgres://", 11) || !strncmp(target, "postgresql://", 13))
        return 1;
    if (!strncmp(target, "file:", 5))
        return 0;
    const char *p = target;
    while (*p == ' ')
        p++;
    const char *k = p;
    while ((*p >= 'a' && *p <= 'z') || *p == '_')
        p++;
    while (*p == ' ')
        p++;
    return p > k && *p == '=';
}

int store_open_conf(store **out, const store_conf *c, d2_error *err)
{
    if (store_is_postgres(c->target))
        return store_pg_open(out, c, err);
    return store_sqlite_open(out, c->target, c->sync_full, err);
}

int store_open_auth(store **out, const char *target, int sync_full, const char *password,
                    d2_error *err)
{
    store_conf c = {target, password, sync_full, NULL, 0};
    return store_open_conf(out, &c, err);
}

int store_open(store **out, const char *path, int sync_full, d2_error *err)
{
    return store_open_auth(out, path, sync_full, NULL, err);
}

int store_keeps_weights(const store *s)
{
    return s->ops->keeps_weights;
}

void store_close(store *s)
{
    if (s)
        s->ops->close(s);
}

const char *store_dialect(const store *s)
{
    return s->ops->dialect;
}

int store_busy(const store *s)
{
    return s->busy;
}

void store_busy_clear(store *s)
{
    s->busy = 0;
}

void store_generator_free(store_generator *g)
{
    free(g->config_json);
    free(g->provenance_json);
    g->config_json = g->provenance_json = NULL;
}

int store_migration_version(const char *name, const char *prefix)
{
    size_t lp = strlen(prefix);
    if (strncmp(name, prefix, lp) != 0)
        return -1;
    const char *p = name + lp;
    int v = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 6) {
        v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    size_t n = strlen(name);
    if (digits == 0 || *p != '_' || n < 4 || strcmp(name + n - 4, ".sql") != 0)
        return -1;
    return v;
}

int store_migrations_max(const char *prefix)
{
    int max = 0;
    for (int i = 0; i < d2_embedded_count; i++) {
        int v = store_migration_version(d2_embedded_files[i].name, prefix);
        if (v > max)
            max = v;
    }
    return max;
}

const embedded_file *store_migration_find(const char *prefix, int want, d2_error *err)
{
    const embedded_file *f = NULL;
    int dup = 0;
    for (int i = 0; i < d2_embedded_count; i++)
        if (store_migration_version(d2_embedded_files[i].name, prefix) == want) {
            dup |= f != NULL;
            f = &d2_embedded_files[i];
        }
    if (!f || dup) {
        d2_fail(err, D2_EFORMAT, dup ? "store: two migrations numbered %d"
                                     : "store: migration %04d is missing", want);
        return NULL;
    }
    return f;
}

/* Little-endian blobs, as the schema says (x86 and ARM hosts already are). */
static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

void *store_to_le32(const void *src, size_t n, int *owned)
{
    *owned = 0;
    if (host_is_le())
        return (void *)src;
    unsigned char *b = malloc(n * 4);
    if (!b)
        return NULL;
    const unsigned char *p = src;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            b[i * 4 + (size_t)k] = p[i * 4 + 3 - (size_t)k];
    *owned = 1;
    return b;
}

void store_from_le32(void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n * 4);
    if (host_is_le())
        return;
    unsigned char *b = dst;
    for (size_t i = 0; i < n; i++) {
        unsigned char t0 = b[i * 4], t1 = b[i * 4 + 1];
        b[i * 4] = b[i * 4 + 3];
        b[i * 4 + 1] = b[i * 4 + 2];
        b[i * 4 + 2] = t1;
        b[i * 4 + 3] = t0;
    }
}

/* ---- dispatch ---- */

int store_migrate(store *s, int *version, d2_error *err)
{
    return s->ops->migrate(s, version, err);
}

int store_user_version(store *s, int *version, d2_error *err)
{
    return s->ops->user_version(s, version, err);
}

void store_set_busy_timeout(store *s, int ms)
{
    s->ops->set_busy_timeout(s, ms);
}

int store_probe(store *s, d2_error *err)
{
    return s->ops->probe(s, err);
}

int store_begin(store *s, d2_error *err)
{
    if (s->depth == 0) {
        if (s->ops->tx_begin(s, err) != 0)
            return D2_EIO;
        s->failed = 0;
    }
    s->depth++;
    return 0;
}

int store_commit(store *s, d2_error *err)
{
    if (s->depth <= 0)
        return d2_fail(err, D2_EINVAL, "store: commit without begin");
    if (--s->depth > 0)
        return 0;
    if (s->failed) {
        s->ops->tx_rollback(s);
        return d2_fail(err, D2_EIO, "store: transaction rolled back after an earlier failure");
    }
    if (s->ops->tx_commit(s, err) != 0) {
        s->ops->tx_rollback(s);
        return D2_EIO;
    }
    return 0;
}

/* A nested rollback marks the transaction failed; the outermost one ends it. */
void store_rollback(store *s)
{
    if (s->depth <= 0)
        return;
    if (--s->depth > 0) {
        s->failed = 1;
        return;
    }
    s->ops->tx_rollback(s);
}

int store_generator_upsert(store *s, const char *name, const char *path, const gen_info *gi, int64_t now_ms, d2_error *err)
{
    return s->ops->generator_upsert(s, name, path, gi, now_ms, err);
}

int store_generator_get(store *s, const char *id, store_generator *g, d2_error *err)
{
    return s->ops->generator_get(s, id, g, err);
}

int store_dataset_put(store *s, const char *id, int kind, const dataset *d, int64_t now_ms, int *created, d2_error *err)
{
    return s->ops->dataset_put(s, id, kind, d, now_ms, created, err);
}

int store_dataset_info(store *s, const char *id, api_dataset_info *info, d2_error *err)
{
    return s->ops->dataset_info(s, id, info, err);
}

int store_dataset_load(store *s, const char *id, dataset *d, int *kind, d2_error *err)
{
    return s->ops->dataset_load(s, id, d, kind, err);
}

int store_job_insert(store *s, const api_job *j, const char *principal, d2_error *err)
{
    return s->ops->job_insert(s, j, principal, err);
}

int store_job_get(store *s, const char *id, api_job *j, int with_checkpoints, d2_error *err)
{
    return s->ops->job_get(s, id, j, with_checkpoints, err);
}

int store_job_seq(store *s, const char *id, int64_t *seq, d2_error *err)
{
    return s->ops->job_seq(s, id, seq, err);
}

int store_job_list(store *s, int state, int64_t before_seq, int limit, api_job **out, int *n, d2_error *err)
{
    return s->ops->job_list(s, state, before_seq, limit, out, n, err);
}

int store_jobs_queued(store *s, api_job **out, int *n, d2_error *err)
{
    return s->ops->jobs_queued(s, -1, out, n, err);
}

int store_jobs_queued_first(store *s, int limit, api_job **out, int *n, d2_error *err)
{
    return s->ops->jobs_queued(s, limit, out, n, err);
}

int store_job_set_running(store *s, const char *id, int64_t started_ms, d2_error *err)
{
    return s->ops->job_set_running(s, id, started_ms, err);
}

int store_job_set_cancel_requested(store *s, const char *id, d2_error *err)
{
    return s->ops->job_set_cancel_requested(s, id, err);
}

int store_job_finish(store *s, const char *id, api_job_state state, const char *error_code, const char *error_message, int64_t finished_ms, double run_seconds, d2_error *err)
{
    return s->ops->job_finish(s, id, state, error_code, error_message, finished_ms, run_seconds, err);
}

int store_job_succeed(store *s, const char *id, int way, double run_seconds, int64_t finished_ms, const api_checkpoint *c, const int64_t *offsets, int n, const char *parent_checkpoint, const api_gate *gate, d2_error *err)
{
    return s->ops->job_succeed(s, id, way, run_seconds, finished_ms, c, offsets, n, parent_checkpoint, gate, err);
}

int store_job_requeue(store *s, const char *id, d2_error *err)
{
    return s->ops->job_requeue(s, id, err);
}

int store_jobs_requeue_running(store *s, int *n, d2_error *err)
{
    return s->ops->jobs_requeue_running(s, n, err);
}

int store_job_counts(store *s, int64_t counts[API_JOB_STATE_COUNT], d2_error *err)
{
    return s->ops->job_counts(s, counts, err);
}

int store_checkpoint_get(store *s, const char *id, api_checkpoint *c, d2_error *err)
{
    return s->ops->checkpoint_get(s, id, c, err);
}

int store_checkpoint_offset(store *s, const char *id, int64_t *offset, d2_error *err)
{
    return s->ops->checkpoint_offset(s, id, offset, err);
}

int store_checkpoints_of_job(store *s, const char *job_id, api_checkpoint **out, int *n, d2_error *err)
{
    return s->ops->checkpoints_of_job(s, job_id, out, n, err);
}

int store_checkpoints_derived(store *s, const char *id, char (**ids)[API_ID_LEN], int *n, d2_error *err)
{
    return s->ops->checkpoints_derived(s, id, ids, n, err);
}

int store_idem_get(store *s, const char *principal, const char *key, char sha[65], char job_id[API_ID_LEN], d2_error *err)
{
    return s->ops->idem_get(s, principal, key, sha, job_id, err);
}

int store_idem_put(store *s, const char *principal, const char *key, const char *sha, const char *job_id, int64_t now_ms, d2_error *err)
{
    return s->ops->idem_put(s, principal, key, sha, job_id, now_ms, err);
}

int store_idem_expire(store *s, int64_t before_ms, int *n, d2_error *err)
{
    return s->ops->idem_expire(s, before_ms, n, err);
}

int store_jobs_renew(store *s, int *n, d2_error *err)
{
    return s->ops->jobs_renew(s, n, err);
}

int store_jobs_requeue_expired(store *s, int *n, d2_error *err)
{
    return s->ops->jobs_requeue_expired(s, n, err);
}

int store_pack_put(store *s, const char *job_id, const void *bytes, size_t n, d2_error *err)
{
    return s->ops->pack_put(s, job_id, bytes, n, err);
}

int store_checkpoint_bytes(store *s, const char *id, unsigned char **bytes, size_t *n,
                           d2_error *err)
{
    return s->ops->checkpoint_bytes(s, id, bytes, n, err);
}
