/* store_pg_objects.c - generators, datasets, checkpoints, lineage queries and
 * idempotency keys on PostgreSQL (the SQLite twin is store_objects.c). */
#include "store_pg_conn.h"

#include <stdlib.h>
#include <string.h>

static const char SQL_GEN_UPSERT[] =
    "INSERT INTO generators (id, name, path, spec, input_dim, feature_dim, min_way, max_way, "
    "params, zoo_size, zoo_fingerprint, config_json, provenance_json, first_seen_ms, loaded_ms) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, path = excluded.path, "
    "loaded_ms = excluded.loaded_ms";
static const char SQL_GEN_GET[] =
    "SELECT id, name, spec, zoo_fingerprint, zoo_size, config_json, provenance_json "
    "FROM generators WHERE id = $1";
static const char SQL_DS_PUT[] =
    "INSERT INTO datasets (id, kind, n, dim, classes, class_counts, x, y, created_ms) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING";
static const char SQL_DS_KIND_PUT[] =
    "INSERT INTO dataset_kinds (dataset_id, kind, created_ms) VALUES ($1, $2, $3) "
    "ON CONFLICT DO NOTHING";
static const char SQL_DS_INFO[] =
    "SELECT kind, n, dim, classes, class_counts, created_ms, "
    "(SELECT COALESCE(SUM(CASE k.kind WHEN 'embeddings' THEN 2 ELSE 1 END), 0) "
    "FROM dataset_kinds k WHERE k.dataset_id = $1) FROM datasets WHERE id = $1";
static const char SQL_DS_LOAD[] = "SELECT kind, n, dim, x, y FROM datasets WHERE id = $1";
#define CKPT_SELECT                                                                         \
    "SELECT c.id, c.job_id, c.rank, c.candidate_index, c.support_acc, c.support_loss, "     \
    "c.norm, c.zoo_distance, c.zoo_nearest, c.sha256, c.size_bytes, j.generator_id, "      \
    "j.dataset_id, j.seed, c.created_ms, c.method FROM checkpoints c "                      \
    "JOIN jobs j ON j.id = c.job_id "
static const char SQL_CKPT_GET[] = CKPT_SELECT "WHERE c.id = $1";
static const char SQL_CKPT_OFFSET[] = "SELECT file_offset FROM checkpoints WHERE id = $1";
static const char SQL_CKPT_OF_JOB[] = CKPT_SELECT "WHERE c.job_id = $1 ORDER BY c.rank";
static const char SQL_DERIVED[] =
    "SELECT dst_id FROM lineage_edges WHERE src_kind = 'checkpoint' AND src_id = $1 "
    "AND dst_kind = 'checkpoint' AND relation = 'derived' ORDER BY created_ms, dst_id";
static const char SQL_IDEM_GET[] =
    "SELECT request_sha256, job_id FROM idempotency_keys WHERE principal = $1 AND key = $2";
static const char SQL_IDEM_PUT[] =
    "INSERT INTO idempotency_keys (principal, key, request_sha256, job_id, created_ms) "
    "VALUES ($1, $2, $3, $4, $5)";
static const char SQL_IDEM_EXPIRE[] = "DELETE FROM idempotency_keys WHERE created_ms < $1";

int pg_generator_upsert(store *s, const char *name, const char *path, const gen_info *gi,
                        int64_t now_ms, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, gi->id);
    pgp_text(&p, name);
    pgp_text(&p, path);
    pgp_text(&p, gi->spec ? gi->spec->text : "");
    pgp_i64(&p, gi->input_dim);
    pgp_i64(&p, gi->feature_dim);
    pgp_i64(&p, gi->min_way);
    pgp_i64(&p, gi->max_way);
    pgp_i64(&p, gi->params);
    pgp_i64(&p, gi->zoo_size);
    pgp_text(&p, gi->zoo_fingerprint);
    pgp_text(&p, gi->config_json ? gi->config_json : "{}");
    pgp_text(&p, gi->provenance_json ? gi->provenance_json : "{}");
    pgp_i64(&p, now_ms);
    return pg_write(s, SQL_GEN_UPSERT, &p, NULL, "register generator", err);
}

int pg_generator_get(store *s, const char *id, store_generator *g, d2_error *err)
{
    memset(g, 0, sizeof *g);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_GEN_GET, &p, &r, "get generator", "generator", id, err);
    if (rc != 0)
        return rc;
    pg_col_text(r, 0, 0, g->id, sizeof g->id);
    pg_col_text(r, 0, 1, g->name, sizeof g->name);
    pg_col_text(r, 0, 2, g->spec, sizeof g->spec);
    pg_col_text(r, 0, 3, g->zoo_fingerprint, sizeof g->zoo_fingerprint);
    g->zoo_size = pg_col_int(r, 0, 4);
    g->config_json = pg_col_dup(r, 0, 5);
    g->provenance_json = pg_col_dup(r, 0, 6);
    PQclear(r);
    if (!g->config_json || !g->provenance_json) {
        store_generator_free(g);
        return d2_fail(err, D2_ENOMEM, "store: out of memory");
    }
    return 0;
}

static char *class_counts_json(const api_dataset_info *info, int classes)
{
    json_t *counts = json_array();
    for (int c = 0; counts && c < classes && c < D2_MAX_WAY; c++)
        json_array_append_new(counts, json_integer(info->class_counts[c]));
    char *text = counts ? json_dumps(counts, JSON_COMPACT) : NULL;
    json_decref(counts);
    return text;
}

static int dataset_rows(store *s, const char *id, int kind, const dataset *d, const char *counts,
                        const void *x, const void *y, int64_t now, int *created, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_text(&p, api_kind_name(kind));
    pgp_i64(&p, d->n);
    pgp_i64(&p, d->dim);
    pgp_i64(&p, d->classes);
    pgp_text(&p, counts);
    pgp_bytes(&p, x, (size_t)d->n * (size_t)d->dim * 4);
    pgp_bytes(&p, y, (size_t)d->n * 4);
    pgp_i64(&p, now);
    int64_t changed = 0;
    if (pg_cmd(s, SQL_DS_PUT, &p, &changed, "insert dataset", err) != 0)
        return D2_EIO;
    *created = changed == 1;
    /* the same numbers may come back as the other kind: record that too */
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_text(&p, api_kind_name(kind));
    pgp_i64(&p, now);
    return pg_cmd(s, SQL_DS_KIND_PUT, &p, NULL, "record dataset kind", err);
}

int pg_dataset_put(store *s, const char *id, int kind, const dataset *d, int64_t now_ms,
                   int *created, d2_error *err)
{
    *created = 0;
    api_dataset_info info;
    api_dataset_info_fill(&info, d, kind);
    char *counts = class_counts_json(&info, d->classes);
    int own_x = 0, own_y = 0;
    void *x = store_to_le32(d->x, (size_t)d->n * (size_t)d->dim, &own_x);
    void *y = store_to_le32(d->y, (size_t)d->n, &own_y);
    int rc = D2_EIO;
    if (!counts || !x || !y)
        rc = d2_fail(err, D2_ENOMEM, "store: out of memory");
    else if (store_begin(s, err) == 0) {
        rc = dataset_rows(s, id, kind, d, counts, x, y, now_ms, created, err);
        if (rc != 0)
            store_rollback(s);
        else
            rc = store_commit(s, err);
    }
    free(counts);
    if (own_x)
        free(x);
    if (own_y)
        free(y);
    return rc;
}

int pg_dataset_info(store *s, const char *id, api_dataset_info *info, d2_error *err)
{
    memset(info, 0, sizeof *info);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_DS_INFO, &p, &r, "get dataset", "dataset", id, err);
    if (rc != 0)
        return rc;
    snprintf(info->id, sizeof info->id, "%s", id);
    api_kind_parse(PQgetvalue(r, 0, 0), &info->kind);
    info->n = pg_col_int(r, 0, 1);
    info->dim = pg_col_int(r, 0, 2);
    info->classes = pg_col_int(r, 0, 3);
    json_t *counts = json_loads(PQgetvalue(r, 0, 4), 0, NULL);
    for (size_t c = 0; c < json_array_size(counts) && c < D2_MAX_WAY; c++)
        info->class_counts[c] = (int)json_integer_value(json_array_get(counts, c));
    json_decref(counts);
    info->created_ms = pg_col_i64(r, 0, 5);
    info->kinds = pg_col_int(r, 0, 6);
    if (!info->kinds)
        info->kinds = 1 << info->kind;
    PQclear(r);
    return 0;
}

/* x and y of a dataset row (bytea, hex text) into d, shape-checked. */
static int load_blobs(const PGresult *r, const char *id, dataset *d, d2_error *err)
{
    int n = pg_col_int(r, 0, 1), dim = pg_col_int(r, 0, 2);
    size_t xlen = 0, ylen = 0;
    unsigned char *x = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 3), &xlen);
    unsigned char *y = x ? PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 4), &ylen)
                         : NULL;
    int rc = 0;
    if (!x || !y)
        rc = d2_fail(err, D2_ENOMEM, "store: out of memory");
    else if (n < 1 || dim < 1 || xlen != (size_t)n * (size_t)dim * 4 || ylen != (size_t)n * 4)
        rc = d2_fail(err, D2_EFORMAT, "store: dataset %s: blob sizes do not match its shape", id);
    else if (dataset_alloc(d, n, dim, err) != 0)
        rc = err->code;
    if (rc == 0) {
        store_from_le32(d->x, x, (size_t)n * (size_t)dim);
        store_from_le32(d->y, y, (size_t)n);
    }
    PQfreemem(x);
    PQfreemem(y);
    return rc;
}

int pg_dataset_load(store *s, const char *id, dataset *d, int *kind, d2_error *err)
{
    memset(d, 0, sizeof *d);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_DS_LOAD, &p, &r, "load dataset", "dataset", id, err);
    if (rc != 0)
        return rc;
    api_kind_parse(PQgetvalue(r, 0, 0), kind);
    rc = load_blobs(r, id, d, err);
    PQclear(r);
    if (rc != 0)
        return rc;
    rc = dataset_validate(d, err);
    if (rc != 0) {
        dataset_free(d);
        return d2_wrap(err, "store: dataset %s", id);
    }
    return 0;
}

static void row_to_ckpt(const PGresult *r, int i, api_checkpoint *c)
{
    memset(c, 0, sizeof *c);
    pg_col_text(r, i, 0, c->id, sizeof c->id);
    pg_col_text(r, i, 1, c->job_id, sizeof c->job_id);
    c->rank = pg_col_int(r, i, 2);
    c->candidate_index = pg_col_int(r, i, 3);
    c->support_acc = pg_col_f64(r, i, 4);
    c->support_loss = pg_col_f64(r, i, 5);
    c->norm = pg_col_f64(r, i, 6);
    c->zoo_distance = pg_col_f64(r, i, 7);
    c->zoo_nearest = pg_col_int(r, i, 8);
    pg_col_text(r, i, 9, c->sha256, sizeof c->sha256);
    c->size_bytes = pg_col_i64(r, i, 10);
    pg_col_text(r, i, 11, c->generator_id, sizeof c->generator_id);
    pg_col_text(r, i, 12, c->dataset_id, sizeof c->dataset_id);
    c->seed = pg_col_i64(r, i, 13);
    c->created_ms = pg_col_i64(r, i, 14);
    if (api_method_parse(PQgetvalue(r, i, 15), &c->method) != 0)
        c->method = GEN_METHOD_DIFFUSION; /* the schema allows no other value */
}

int pg_checkpoint_get(store *s, const char *id, api_checkpoint *c, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_CKPT_GET, &p, &r, "get checkpoint", "checkpoint", id, err);
    if (rc != 0)
        return rc;
    row_to_ckpt(r, 0, c);
    PQclear(r);
    return 0;
}

int pg_checkpoint_offset(store *s, const char *id, int64_t *offset, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_CKPT_OFFSET, &p, &r, "checkpoint offset", "checkpoint", id, err);
    if (rc != 0)
        return rc;
    *offset = pg_col_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static void ckpt_row(const PGresult *r, int row, void *element)
{
    row_to_ckpt(r, row, element);
}

static void id_row(const PGresult *r, int row, void *element)
{
    pg_col_text(r, row, 0, element, API_ID_LEN);
}

int pg_checkpoints_of_job(store *s, const char *job_id, api_checkpoint **out, int *n,
                          d2_error *err)
{
    *out = NULL;
    *n = 0;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, job_id);
    PGresult *r = pg_run(s, SQL_CKPT_OF_JOB, &p, PGRES_TUPLES_OK, "list checkpoints", err);
    void *rows = NULL;
    if (!r || pg_collect(r, sizeof(api_checkpoint), ckpt_row, &rows, n, err) != 0)
        return err->code ? err->code : D2_EIO;
    *out = rows;
    return 0;
}

int pg_checkpoints_derived(store *s, const char *id, char (**ids)[API_ID_LEN], int *n,
                           d2_error *err)
{
    *ids = NULL;
    *n = 0;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r = pg_run(s, SQL_DERIVED, &p, PGRES_TUPLES_OK, "derived checkpoints", err);
    void *rows = NULL;
    if (!r || pg_collect(r, API_ID_LEN, id_row, &rows, n, err) != 0)
        return err->code ? err->code : D2_EIO;
    *ids = rows;
    return 0;
}

int pg_idem_get(store *s, const char *principal, const char *key, char sha[65],
                char job_id[API_ID_LEN], d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, principal);
    pgp_text(&p, key);
    PGresult *r;
    int rc = pg_row(s, SQL_IDEM_GET, &p, &r, "get idempotency key", "idempotency key", "", err);
    if (rc != 0)
        return rc;
    pg_col_text(r, 0, 0, sha, 65);
    pg_col_text(r, 0, 1, job_id, API_ID_LEN);
    PQclear(r);
    return 0;
}

int pg_idem_put(store *s, const char *principal, const char *key, const char *sha,
                const char *job_id, int64_t now_ms, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, principal);
    pgp_text(&p, key);
    pgp_text(&p, sha);
    pgp_text(&p, job_id);
    pgp_i64(&p, now_ms);
    return pg_write(s, SQL_IDEM_PUT, &p, NULL, "insert idempotency key", err);
}

int pg_idem_expire(store *s, int64_t before_ms, int *n, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_i64(&p, before_ms);
    int64_t changed = 0;
    int rc = pg_write(s, SQL_IDEM_EXPIRE, &p, &changed, "expire idempotency keys", err);
    if (n)
        *n = (int)changed;
    return rc;
}

/* ---- checkpoint bytes (replicas share nothing but the database) ---- */

static const char SQL_PACK_PUT[] =
    "INSERT INTO checkpoint_packs (job_id, bytes) VALUES ($1, $2) "
    "ON CONFLICT (job_id) DO UPDATE SET bytes = excluded.bytes";
static const char SQL_CKPT_BYTES[] =
    "SELECT substring(p.bytes FROM (c.file_offset + 1)::int FOR c.size_bytes::int) "
    "FROM checkpoints c "
    "JOIN checkpoint_packs p ON p.job_id = c.job_id WHERE c.id = $1";

int pg_pack_put(store *s, const char *job_id, const void *bytes, size_t n, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, job_id);
    pgp_bytes(&p, bytes, n);
    return pg_write(s, SQL_PACK_PUT, &p, NULL, "store checkpoint pack", err);
}

int pg_checkpoint_bytes(store *s, const char *id, unsigned char **bytes, size_t *n,
                        d2_error *err)
{
    *bytes = NULL;
    *n = 0;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_CKPT_BYTES, &p, &r, "checkpoint bytes", "checkpoint", id, err);
    if (rc != 0)
        return rc;
    size_t len = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &len);
    PQclear(r);
    unsigned char *copy = raw ? malloc(len ? len : 1) : NULL;
    if (copy)
        memcpy(copy, raw, len);
    PQfreemem(raw);
    if (!copy)
        return d2_fail(err, D2_ENOMEM, "store: out of memory for %s", id);
    *bytes = copy;
    *n = len;
    return 0;
}
