/* store_objects.c - generators, datasets, checkpoints, lineage queries and
 * idempotency keys. */
#include "store_internal.h"
#include "store_sqlite.h"

#include <stdlib.h>
#include <string.h>

static const char SQL_GEN_UPSERT[] =
    "INSERT INTO generators (id, name, path, spec, input_dim, feature_dim, min_way, max_way, "
    "params, zoo_size, zoo_fingerprint, config_json, provenance_json, first_seen_ms, loaded_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, path = excluded.path, "
    "loaded_ms = excluded.loaded_ms";
static const char SQL_GEN_GET[] =
    "SELECT id, name, spec, zoo_fingerprint, zoo_size, config_json, provenance_json "
    "FROM generators WHERE id = ?1";
static const char SQL_DS_PUT[] =
    "INSERT OR IGNORE INTO datasets (id, kind, n, dim, classes, class_counts, x, y, created_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
static const char SQL_DS_KIND_PUT[] =
    "INSERT OR IGNORE INTO dataset_kinds (dataset_id, kind, created_ms) VALUES (?1, ?2, ?3)";
/* kinds: bit 1 << API_KIND_* for every kind the numbers were uploaded as */
static const char SQL_DS_INFO[] =
    "SELECT kind, n, dim, classes, class_counts, created_ms, "
    "(SELECT COALESCE(SUM(CASE k.kind WHEN 'embeddings' THEN 2 ELSE 1 END), 0) "
    "FROM dataset_kinds k WHERE k.dataset_id = ?1) FROM datasets WHERE id = ?1";
static const char SQL_DS_LOAD[] = "SELECT kind, n, dim, x, y FROM datasets WHERE id = ?1";
#define CKPT_SELECT                                                                         \
    "SELECT c.id, c.job_id, c.rank, c.candidate_index, c.support_acc, c.support_loss, "     \
    "c.norm, c.zoo_distance, c.zoo_nearest, c.sha256, c.size_bytes, j.generator_id, "      \
    "j.dataset_id, j.seed, c.created_ms, c.method FROM checkpoints c "                      \
    "JOIN jobs j ON j.id = c.job_id "
static const char SQL_CKPT_GET[] = CKPT_SELECT "WHERE c.id = ?1";
static const char SQL_CKPT_OFFSET[] = "SELECT file_offset FROM checkpoints WHERE id = ?1";
static const char SQL_CKPT_OF_JOB[] = CKPT_SELECT "WHERE c.job_id = ?1 ORDER BY c.rank";
static const char SQL_DERIVED[] =
    "SELECT dst_id FROM lineage_edges WHERE src_kind = 'checkpoint' AND src_id = ?1 "
    "AND dst_kind = 'checkpoint' AND relation = 'derived' ORDER BY created_ms, dst_id";
static const char SQL_IDEM_GET[] =
    "SELECT request_sha256, job_id FROM idempotency_keys WHERE principal = ?1 AND key = ?2";
static const char SQL_IDEM_PUT[] =
    "INSERT INTO idempotency_keys (principal, key, request_sha256, job_id, created_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";
static const char SQL_IDEM_EXPIRE[] = "DELETE FROM idempotency_keys WHERE created_ms < ?1";

int sq_generator_upsert(store *s, const char *name, const char *path, const gen_info *gi,
                           int64_t now_ms, d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, SQL_GEN_UPSERT, err);
    if (!st) {
        store_rollback(s);
        return D2_EIO;
    }
    store_bind_text(st, 1, gi->id);
    store_bind_text(st, 2, name);
    store_bind_text(st, 3, path);
    store_bind_text(st, 4, gi->spec ? gi->spec->text : "");
    sqlite3_bind_int(st, 5, gi->input_dim);
    sqlite3_bind_int(st, 6, gi->feature_dim);
    sqlite3_bind_int(st, 7, gi->min_way);
    sqlite3_bind_int(st, 8, gi->max_way);
    sqlite3_bind_int(st, 9, gi->params);
    sqlite3_bind_int(st, 10, gi->zoo_size);
    store_bind_text(st, 11, gi->zoo_fingerprint);
    store_bind_text(st, 12, gi->config_json ? gi->config_json : "{}");
    store_bind_text(st, 13, gi->provenance_json ? gi->provenance_json : "{}");
    sqlite3_bind_int64(st, 14, now_ms);
    if (store_step_done(s, st, err, "register generator") != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    return store_commit(s, err);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

int sq_generator_get(store *s, const char *id, store_generator *g, d2_error *err)
{
    memset(g, 0, sizeof *g);
    sqlite3_stmt *st = store_stmt(s, SQL_GEN_GET, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        store_done(st);
        return rc == SQLITE_DONE ? d2_fail(err, D2_ENOTFOUND, "no generator %s", id)
                                 : store_fail(s, err, "get generator");
    }
    store_col_text(st, 0, g->id, sizeof g->id);
    store_col_text(st, 1, g->name, sizeof g->name);
    store_col_text(st, 2, g->spec, sizeof g->spec);
    store_col_text(st, 3, g->zoo_fingerprint, sizeof g->zoo_fingerprint);
    g->zoo_size = sqlite3_column_int(st, 4);
    g->config_json = col_dup(st, 5);
    g->provenance_json = col_dup(st, 6);
    store_done(st);
    if (!g->config_json || !g->provenance_json) {
        store_generator_free(g);
        return d2_fail(err, D2_ENOMEM, "store: out of memory");
    }
    return 0;
}

int sq_dataset_put(store *s, const char *id, int kind, const dataset *d, int64_t now_ms,
                      int *created, d2_error *err)
{
    *created = 0;
    api_dataset_info info;
    api_dataset_info_fill(&info, d, kind);
    json_t *counts = json_array();
    for (int c = 0; counts && c < d->classes && c < D2_MAX_WAY; c++)
        json_array_append_new(counts, json_integer(info.class_counts[c]));
    char *counts_s = counts ? json_dumps(counts, JSON_COMPACT) : NULL;
    json_decref(counts);
    size_t nx = (size_t)d->n * (size_t)d->dim;
    int own_x = 0, own_y = 0;
    void *x = store_to_le32(d->x, nx, &own_x);
    void *y = store_to_le32(d->y, (size_t)d->n, &own_y);
    int rc = D2_EIO;
    if (!counts_s || !x || !y) {
        rc = d2_fail(err, D2_ENOMEM, "store: out of memory");
        goto out;
    }
    if (store_begin(s, err) != 0)
        goto out;
    sqlite3_stmt *st = store_stmt(s, SQL_DS_PUT, err);
    if (!st) {
        store_rollback(s);
        goto out;
    }
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, api_kind_name(kind));
    sqlite3_bind_int(st, 3, d->n);
    sqlite3_bind_int(st, 4, d->dim);
    sqlite3_bind_int(st, 5, d->classes);
    store_bind_text(st, 6, counts_s);
    sqlite3_bind_blob64(st, 7, x, (sqlite3_uint64)(nx * 4), SQLITE_STATIC);
    sqlite3_bind_blob64(st, 8, y, (sqlite3_uint64)d->n * 4, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, now_ms);
    if (store_step_done(s, st, err, "insert dataset") != 0) {
        store_rollback(s);
        goto out;
    }
    *created = sqlite3_changes(s->db) == 1;
    /* the same numbers may come back as the other kind: record that too */
    st = store_stmt(s, SQL_DS_KIND_PUT, err);
    if (!st) {
        store_rollback(s);
        goto out;
    }
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, api_kind_name(kind));
    sqlite3_bind_int64(st, 3, now_ms);
    if (store_step_done(s, st, err, "record dataset kind") != 0) {
        store_rollback(s);
        goto out;
    }
    rc = store_commit(s, err);
out:
    free(counts_s);
    if (own_x)
        free(x);
    if (own_y)
        free(y);
    return rc;
}

int sq_dataset_info(store *s, const char *id, api_dataset_info *info, d2_error *err)
{
    memset(info, 0, sizeof *info);
    sqlite3_stmt *st = store_stmt(s, SQL_DS_INFO, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        store_done(st);
        return rc == SQLITE_DONE ? d2_fail(err, D2_ENOTFOUND, "no dataset %s", id)
                                 : store_fail(s, err, "get dataset");
    }
    snprintf(info->id, sizeof info->id, "%s", id);
    api_kind_parse((const char *)sqlite3_column_text(st, 0), &info->kind);
    info->n = sqlite3_column_int(st, 1);
    info->dim = sqlite3_column_int(st, 2);
    info->classes = sqlite3_column_int(st, 3);
    json_t *counts = json_loads((const char *)sqlite3_column_text(st, 4), 0, NULL);
    for (size_t c = 0; c < json_array_size(counts) && c < D2_MAX_WAY; c++)
        info->class_counts[c] = (int)json_integer_value(json_array_get(counts, c));
    json_decref(counts);
    info->created_ms = sqlite3_column_int64(st, 5);
    info->kinds = sqlite3_column_int(st, 6);
    if (!info->kinds) /* not possible after migration 0002; be safe */
        info->kinds = 1 << info->kind;
    store_done(st);
    return 0;
}

int sq_dataset_load(store *s, const char *id, dataset *d, int *kind, d2_error *err)
{
    memset(d, 0, sizeof *d);
    sqlite3_stmt *st = store_stmt(s, SQL_DS_LOAD, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        store_done(st);
        return rc == SQLITE_DONE ? d2_fail(err, D2_ENOTFOUND, "no dataset %s", id)
                                 : store_fail(s, err, "load dataset");
    }
    api_kind_parse((const char *)sqlite3_column_text(st, 0), kind);
    int n = sqlite3_column_int(st, 1), dim = sqlite3_column_int(st, 2);
    const void *x = sqlite3_column_blob(st, 3);
    size_t xlen = (size_t)sqlite3_column_bytes(st, 3);
    const void *y = sqlite3_column_blob(st, 4);
    size_t ylen = (size_t)sqlite3_column_bytes(st, 4);
    if (n < 1 || dim < 1 || xlen != (size_t)n * (size_t)dim * 4 || ylen != (size_t)n * 4) {
        store_done(st);
        return d2_fail(err, D2_EFORMAT, "store: dataset %s: blob sizes do not match its shape",
                       id);
    }
    if (dataset_alloc(d, n, dim, err) != 0) {
        store_done(st);
        return err->code;
    }
    store_from_le32(d->x, x, (size_t)n * (size_t)dim);
    store_from_le32(d->y, y, (size_t)n);
    store_done(st);
    rc = dataset_validate(d, err);
    if (rc != 0) {
        dataset_free(d);
        return d2_wrap(err, "store: dataset %s", id);
    }
    return 0;
}

static void row_to_ckpt(sqlite3_stmt *st, api_checkpoint *c)
{
    memset(c, 0, sizeof *c);
    store_col_text(st, 0, c->id, sizeof c->id);
    store_col_text(st, 1, c->job_id, sizeof c->job_id);
    c->rank = sqlite3_column_int(st, 2);
    c->candidate_index = sqlite3_column_int(st, 3);
    c->support_acc = sqlite3_column_double(st, 4);
    c->support_loss = sqlite3_column_double(st, 5);
    c->norm = sqlite3_column_double(st, 6);
    c->zoo_distance = sqlite3_column_double(st, 7);
    c->zoo_nearest = sqlite3_column_int(st, 8);
    store_col_text(st, 9, c->sha256, sizeof c->sha256);
    c->size_bytes = sqlite3_column_int64(st, 10);
    store_col_text(st, 11, c->generator_id, sizeof c->generator_id);
    store_col_text(st, 12, c->dataset_id, sizeof c->dataset_id);
    c->seed = sqlite3_column_int64(st, 13);
    c->created_ms = sqlite3_column_int64(st, 14);
    const char *method = (const char *)sqlite3_column_text(st, 15);
    if (!method || api_method_parse(method, &c->method) != 0)
        c->method = GEN_METHOD_DIFFUSION; /* the schema allows no other value */
}

int sq_checkpoint_get(store *s, const char *id, api_checkpoint *c, d2_error *err)
{
    sqlite3_stmt *st = store_stmt(s, SQL_CKPT_GET, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_to_ckpt(st, c);
    store_done(st);
    if (rc == SQLITE_DONE)
        return d2_fail(err, D2_ENOTFOUND, "no checkpoint %s", id);
    return rc == SQLITE_ROW ? 0 : store_fail(s, err, "get checkpoint");
}

int sq_checkpoint_offset(store *s, const char *id, int64_t *offset, d2_error *err)
{
    sqlite3_stmt *st = store_stmt(s, SQL_CKPT_OFFSET, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *offset = sqlite3_column_int64(st, 0);
    store_done(st);
    if (rc == SQLITE_DONE)
        return d2_fail(err, D2_ENOTFOUND, "no checkpoint %s", id);
    return rc == SQLITE_ROW ? 0 : store_fail(s, err, "checkpoint offset");
}

static void ckpt_row(sqlite3_stmt *st, void *element)
{
    row_to_ckpt(st, element);
}

static void id_row(sqlite3_stmt *st, void *element)
{
    store_col_text(st, 0, element, API_ID_LEN);
}

int sq_checkpoints_of_job(store *s, const char *job_id, api_checkpoint **out, int *n,
                             d2_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = store_stmt(s, SQL_CKPT_OF_JOB, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, job_id);
    void *rows;
    int rc = store_collect_rows(s, st, sizeof(api_checkpoint), ckpt_row, &rows, n,
                                "list checkpoints", err);
    *out = rows;
    return rc;
}

int sq_checkpoints_derived(store *s, const char *id, char (**ids)[API_ID_LEN], int *n,
                              d2_error *err)
{
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st = store_stmt(s, SQL_DERIVED, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    void *rows;
    int rc = store_collect_rows(s, st, API_ID_LEN, id_row, &rows, n, "derived checkpoints", err);
    *ids = rows;
    return rc;
}

int sq_idem_get(store *s, const char *principal, const char *key, char sha[65],
                   char job_id[API_ID_LEN], d2_error *err)
{
    sqlite3_stmt *st = store_stmt(s, SQL_IDEM_GET, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, principal);
    store_bind_text(st, 2, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        store_col_text(st, 0, sha, 65);
        store_col_text(st, 1, job_id, API_ID_LEN);
    }
    store_done(st);
    if (rc == SQLITE_DONE)
        return d2_fail(err, D2_ENOTFOUND, "no idempotency key");
    return rc == SQLITE_ROW ? 0 : store_fail(s, err, "get idempotency key");
}

int sq_idem_put(store *s, const char *principal, const char *key, const char *sha,
                   const char *job_id, int64_t now_ms, d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, SQL_IDEM_PUT, err);
    if (!st) {
        store_rollback(s);
        return D2_EIO;
    }
    store_bind_text(st, 1, principal);
    store_bind_text(st, 2, key);
    store_bind_text(st, 3, sha);
    store_bind_text(st, 4, job_id);
    sqlite3_bind_int64(st, 5, now_ms);
    if (store_step_done(s, st, err, "insert idempotency key") != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    return store_commit(s, err);
}

int sq_idem_expire(store *s, int64_t before_ms, int *n, d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, SQL_IDEM_EXPIRE, err);
    if (!st) {
        store_rollback(s);
        return D2_EIO;
    }
    sqlite3_bind_int64(st, 1, before_ms);
    if (store_step_done(s, st, err, "expire idempotency keys") != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    if (n)
        *n = sqlite3_changes(s->db);
    return store_commit(s, err);
}
