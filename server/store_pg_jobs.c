/* store_pg_jobs.c - job rows on PostgreSQL: insert, load, list, state
 * transitions, counts (the SQLite twin is store_jobs.c; same columns). */
#include "store_pg_conn.h"

#include <stdlib.h>
#include <string.h>

static const char SQL_INSERT[] =
    "INSERT INTO jobs (id, state, generator_id, generator_name, dataset_id, embeddings, "
    "candidates, steps, sampler, guidance, seed, priority, parent_checkpoint, principal, "
    "created_ms, gate, refine) VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
    "$12, $13, $14, $15, $16)";
static const char SQL_EDGE[] =
    "INSERT INTO lineage_edges (src_kind, src_id, dst_kind, dst_id, relation, created_ms) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
static const char SQL_GET[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE id = $1";
static const char SQL_SEQ[] = "SELECT seq FROM jobs WHERE id = $1";
static const char SQL_LIST[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE seq < $1 "
                               "ORDER BY seq DESC LIMIT $2";
static const char SQL_LIST_STATE[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE state = $3 AND "
                                     "seq < $1 ORDER BY seq DESC LIMIT $2";
static const char SQL_QUEUED[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE state = 'queued' "
                                 "ORDER BY priority DESC, seq ASC LIMIT $1";
/* now on the database's clock: leases compare times of one clock only */
#define NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"
/* the claim: a row another replica is claiming at this instant is skipped,
 * not waited for (it is not queued any more once that one commits) */
static const char SQL_RUNNING[] =
    "UPDATE jobs SET state = 'running', started_ms = $2, attempts = attempts + 1, "
    "progress = 0, owner = $3, lease_until = " NOW_MS " + $4 WHERE id = "
    "(SELECT id FROM jobs WHERE id = $1 AND state = 'queued' FOR UPDATE SKIP LOCKED)";
static const char SQL_RENEW[] =
    "UPDATE jobs SET lease_until = " NOW_MS " + $2 WHERE owner = $1 AND state = 'running'";
/* start-up: also what this replica's previous process ran (same HOST:DATA) */
static const char SQL_RESTART[] =
    "UPDATE jobs SET state = 'queued', progress = 0, owner = NULL, lease_until = NULL "
    "WHERE state = 'running' AND (lease_until IS NULL OR lease_until < " NOW_MS " OR "
    "split_part(owner, '/', 1) = split_part($1, '/', 1))";
static const char SQL_EXPIRED[] =
    "UPDATE jobs SET state = 'queued', progress = 0, owner = NULL, lease_until = NULL "
    "WHERE state = 'running' AND (lease_until IS NULL OR lease_until < " NOW_MS ")";
static const char SQL_CANCEL_REQ[] = "UPDATE jobs SET cancel_requested = 1 WHERE id = $1";
/* a running job ends only by the replica that holds it */
static const char SQL_FINISH[] =
    "UPDATE jobs SET state = $2, error_code = $3, error_message = $4, finished_ms = $5, "
    "run_seconds = $6, owner = NULL, lease_until = NULL "
    "WHERE id = $1 AND (state <> 'running' OR owner = $7)";
static const char SQL_SUCCEED[] =
    "UPDATE jobs SET state = 'succeeded', progress = 1, way = $2, run_seconds = $3, "
    "finished_ms = $4, error_code = NULL, error_message = NULL, gate_decision = $5, "
    "owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'running' AND owner = $6";
static const char SQL_CKPT_INSERT[] =
    "INSERT INTO checkpoints (id, job_id, rank, candidate_index, support_acc, support_loss, "
    "norm, zoo_distance, zoo_nearest, sha256, size_bytes, file_offset, created_ms, method) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
    "ON CONFLICT (id) DO UPDATE SET job_id = excluded.job_id, rank = excluded.rank, "
    "candidate_index = excluded.candidate_index, support_acc = excluded.support_acc, "
    "support_loss = excluded.support_loss, norm = excluded.norm, "
    "zoo_distance = excluded.zoo_distance, zoo_nearest = excluded.zoo_nearest, "
    "sha256 = excluded.sha256, size_bytes = excluded.size_bytes, "
    "file_offset = excluded.file_offset, created_ms = excluded.created_ms, "
    "method = excluded.method";
static const char SQL_REQUEUE[] =
    "UPDATE jobs SET state = 'queued', progress = 0, owner = NULL, lease_until = NULL "
    "WHERE id = $1 AND state = 'running' AND owner = $2";
static const char SQL_COUNTS[] = "SELECT state, COUNT(*) FROM jobs GROUP BY state";

static int edge(store *s, const char *sk, const char *sid, const char *dk, const char *did,
                const char *rel, int64_t now, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, sk);
    pgp_text(&p, sid);
    pgp_text(&p, dk);
    pgp_text(&p, did);
    pgp_text(&p, rel);
    pgp_i64(&p, now);
    return pg_cmd(s, SQL_EDGE, &p, NULL, "insert lineage edge", err);
}

int pg_job_insert(store *s, const api_job *j, const char *principal, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, j->id);
    pgp_text(&p, j->generator_id);
    pgp_text(&p, j->generator_name);
    pgp_text(&p, j->dataset_id);
    pgp_i64(&p, j->kind == API_KIND_EMBEDDINGS);
    pgp_i64(&p, j->candidates);
    pgp_i64(&p, j->steps);
    pgp_text(&p, api_sampler_name(j->sampler));
    pgp_f64(&p, j->guidance);
    pgp_i64(&p, j->seed);
    pgp_i64(&p, j->priority);
    pgp_text(&p, j->parent_checkpoint[0] ? j->parent_checkpoint : NULL);
    pgp_text(&p, principal);
    pgp_i64(&p, j->created_ms);
    pgp_i64(&p, j->gate_requested != 0);
    pgp_i64(&p, j->refine_requested != 0);
    if (store_begin(s, err) != 0)
        return D2_EIO;
    if (pg_cmd(s, SQL_INSERT, &p, NULL, "insert job", err) != 0 ||
        edge(s, "generator", j->generator_id, "job", j->id, "input", j->created_ms, err) != 0 ||
        edge(s, "dataset", j->dataset_id, "job", j->id, "input", j->created_ms, err) != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    return store_commit(s, err);
}

/* The gate decision (JSON text, NULL before the job succeeded): a text that
 * does not parse leaves the job without one. */
static void row_gate(const PGresult *r, int row, int col, api_job *j)
{
    json_t *v = pg_col_null(r, row, col) ? NULL : json_loads(PQgetvalue(r, row, col), 0, NULL);
    api_error e;
    j->has_gate = v && api_gate_from_json(v, &j->gate, &e) == 0;
    json_decref(v);
}

static void row_to_job(const PGresult *r, int i, api_job *j)
{
    api_job_init(j);
    pg_col_text(r, i, 0, j->id, sizeof j->id);
    api_job_state_parse(PQgetvalue(r, i, 1), &j->state);
    pg_col_text(r, i, 2, j->generator_id, sizeof j->generator_id);
    pg_col_text(r, i, 3, j->generator_name, sizeof j->generator_name);
    pg_col_text(r, i, 4, j->dataset_id, sizeof j->dataset_id);
    j->kind = pg_col_int(r, i, 5) ? API_KIND_EMBEDDINGS : API_KIND_SAMPLES;
    j->candidates = pg_col_int(r, i, 6);
    j->steps = pg_col_int(r, i, 7);
    api_sampler_parse(PQgetvalue(r, i, 8), &j->sampler);
    j->guidance = pg_col_f64(r, i, 9);
    j->seed = pg_col_i64(r, i, 10);
    j->priority = pg_col_int(r, i, 11);
    pg_col_text(r, i, 12, j->parent_checkpoint, sizeof j->parent_checkpoint);
    j->created_ms = pg_col_i64(r, i, 13);
    j->started_ms = pg_col_i64(r, i, 14);
    j->finished_ms = pg_col_i64(r, i, 15);
    j->attempts = pg_col_int(r, i, 16);
    j->progress = pg_col_f64(r, i, 17);
    j->cancel_requested = pg_col_int(r, i, 18);
    pg_col_text(r, i, 19, j->error_code, sizeof j->error_code);
    pg_col_text(r, i, 20, j->error_message, sizeof j->error_message);
    j->way = pg_col_int(r, i, 21);
    j->run_seconds = pg_col_null(r, i, 22) ? -1.0 : pg_col_f64(r, i, 22);
    j->gate_requested = pg_col_int(r, i, 23);
    row_gate(r, i, 24, j);
    j->refine_requested = pg_col_int(r, i, 25);
}

int pg_job_get(store *s, const char *id, api_job *j, int with_checkpoints, d2_error *err)
{
    api_job_init(j);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_GET, &p, &r, "get job", "job", id, err);
    if (rc != 0)
        return rc;
    row_to_job(r, 0, j);
    PQclear(r);
    if (with_checkpoints && j->state == API_JOB_SUCCEEDED)
        return pg_checkpoints_of_job(s, j->id, &j->checkpoints, &j->ncheckpoints, err);
    return 0;
}

int pg_job_seq(store *s, const char *id, int64_t *seq, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int rc = pg_row(s, SQL_SEQ, &p, &r, "job seq", "job", id, err);
    if (rc != 0)
        return rc;
    *seq = pg_col_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static void job_row(const PGresult *r, int row, void *element)
{
    row_to_job(r, row, element);
}

static int collect(store *s, const char *sql, const pg_params *p, api_job **out, int *n,
                   int with_ckpts, d2_error *err)
{
    *out = NULL;
    *n = 0;
    PGresult *r = pg_run(s, sql, p, PGRES_TUPLES_OK, "list jobs", err);
    void *rows;
    int count;
    if (!r || pg_collect(r, sizeof(api_job), job_row, &rows, &count, err) != 0)
        return err->code ? err->code : D2_EIO;
    api_job *list = rows;
    for (int i = 0; with_ckpts && i < count; i++)
        if (list[i].state == API_JOB_SUCCEEDED &&
            pg_checkpoints_of_job(s, list[i].id, &list[i].checkpoints, &list[i].ncheckpoints,
                                  err) != 0) {
            for (int k = 0; k < count; k++)
                api_job_free(&list[k]);
            free(list);
            return D2_EIO;
        }
    *out = list;
    *n = count;
    return 0;
}

int pg_job_list(store *s, int state, int64_t before_seq, int limit, api_job **out, int *n,
                d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_i64(&p, before_seq > 0 ? before_seq : INT64_MAX);
    pgp_i64(&p, limit);
    if (state >= 0)
        pgp_text(&p, api_job_state_name((api_job_state)state));
    return collect(s, state >= 0 ? SQL_LIST_STATE : SQL_LIST, &p, out, n, 1, err);
}

int pg_jobs_queued(store *s, int limit, api_job **out, int *n, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    if (limit >= 0)
        pgp_i64(&p, limit);
    else
        pgp_text(&p, NULL); /* LIMIT NULL: all */
    return collect(s, SQL_QUEUED, &p, out, n, 0, err);
}

static int write_id(store *s, const char *sql, const char *id, int64_t *changed,
                    const char *what, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    return pg_write(s, sql, &p, changed, what, err);
}

int pg_job_set_running(store *s, const char *id, int64_t started_ms, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_i64(&p, started_ms);
    pgp_text(&p, s->owner);
    pgp_i64(&p, s->lease_ms);
    int64_t changed = 0;
    if (pg_write(s, SQL_RUNNING, &p, &changed, "mark job running", err) != 0)
        return D2_EIO;
    return changed == 1 ? 0 : d2_fail(err, D2_EINVAL, "store: job %s is not queued", id);
}

int pg_job_set_cancel_requested(store *s, const char *id, d2_error *err)
{
    return write_id(s, SQL_CANCEL_REQ, id, NULL, "request cancel", err);
}

int pg_job_finish(store *s, const char *id, api_job_state state, const char *error_code,
                  const char *error_message, int64_t finished_ms, double run_seconds,
                  d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_text(&p, api_job_state_name(state));
    pgp_text(&p, error_code && error_code[0] ? error_code : NULL);
    pgp_text(&p, error_code && error_code[0] ? error_message : NULL);
    pgp_i64(&p, finished_ms);
    if (run_seconds >= 0)
        pgp_f64(&p, run_seconds);
    else
        pgp_text(&p, NULL);
    pgp_text(&p, s->owner);
    int64_t changed = 0;
    if (pg_write(s, SQL_FINISH, &p, &changed, "finish job", err) != 0)
        return D2_EIO;
    return changed == 1 ? 0 : d2_fail(err, D2_EINVAL, "store: job %s runs on another replica", id);
}

static int ckpt_insert(store *s, const char *job_id, const api_checkpoint *c, int64_t offset,
                       int64_t now, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, c->id);
    pgp_text(&p, job_id);
    pgp_i64(&p, c->rank);
    pgp_i64(&p, c->candidate_index);
    pgp_f64(&p, c->support_acc);
    pgp_f64(&p, c->support_loss);
    pgp_f64(&p, c->norm);
    pgp_f64(&p, c->zoo_distance);
    pgp_i64(&p, c->zoo_nearest);
    pgp_text(&p, c->sha256);
    pgp_i64(&p, c->size_bytes);
    pgp_i64(&p, offset);
    pgp_i64(&p, now);
    pgp_text(&p, api_method_name(c->method));
    return pg_cmd(s, SQL_CKPT_INSERT, &p, NULL, "insert checkpoint", err);
}

static int succeed_rows(store *s, const char *id, int way, double run_seconds, int64_t now,
                        const api_checkpoint *c, const int64_t *offsets, int n,
                        const char *parent, const char *decision, d2_error *err)
{
    for (int i = 0; i < n; i++) {
        if (ckpt_insert(s, id, &c[i], offsets ? offsets[i] : 0, now, err) != 0 ||
            edge(s, "job", id, "checkpoint", c[i].id, "produced", now, err) != 0)
            return D2_EIO;
        if (parent && parent[0] &&
            edge(s, "checkpoint", parent, "checkpoint", c[i].id, "derived", now, err) != 0)
            return D2_EIO;
    }
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_i64(&p, way);
    pgp_f64(&p, run_seconds);
    pgp_i64(&p, now);
    pgp_text(&p, decision);
    pgp_text(&p, s->owner);
    int64_t changed = 0;
    if (pg_cmd(s, SQL_SUCCEED, &p, &changed, "mark job succeeded", err) != 0)
        return D2_EIO;
    if (changed != 1) {
        s->failed = 1; /* the checkpoint rows go with it */
        return d2_fail(err, D2_EINVAL, "store: job %s: lease lost to another replica", id);
    }
    return 0;
}

int pg_job_succeed(store *s, const char *id, int way, double run_seconds, int64_t finished_ms,
                   const api_checkpoint *c, const int64_t *offsets, int n,
                   const char *parent_checkpoint, const api_gate *gate, d2_error *err)
{
    char *decision = NULL;
    if (gate) {
        json_t *v = api_gate_to_json(gate);
        decision = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        if (!decision)
            return d2_fail(err, D2_ENOMEM, "store: out of memory for the gate decision");
    }
    int rc = store_begin(s, err);
    if (rc == 0) {
        rc = succeed_rows(s, id, way, run_seconds, finished_ms, c, offsets, n, parent_checkpoint,
                          decision, err);
        if (rc != 0)
            store_rollback(s);
        else
            rc = store_commit(s, err);
    }
    free(decision);
    return rc;
}

int pg_job_requeue(store *s, const char *id, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_text(&p, s->owner);
    return pg_write(s, SQL_REQUEUE, &p, NULL, "requeue job", err);
}

/* At start-up: the jobs no live replica holds (their lease ran out) and
 * those of this replica's previous process. */
int pg_jobs_requeue_running(store *s, int *n, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, s->owner);
    int64_t changed = 0;
    int rc = pg_write(s, SQL_RESTART, &p, &changed, "requeue running jobs", err);
    *n = (int)changed;
    return rc;
}

int pg_jobs_requeue_expired(store *s, int *n, d2_error *err)
{
    int64_t changed = 0;
    int rc = pg_write(s, SQL_EXPIRED, NULL, &changed, "requeue expired jobs", err);
    *n = (int)changed;
    return rc;
}

int pg_jobs_renew(store *s, int *n, d2_error *err)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, s->owner);
    pgp_i64(&p, s->lease_ms);
    int64_t changed = 0;
    int rc = pg_write(s, SQL_RENEW, &p, &changed, "renew leases", err);
    *n = (int)changed;
    return rc;
}

int pg_job_counts(store *s, int64_t counts[API_JOB_STATE_COUNT], d2_error *err)
{
    memset(counts, 0, sizeof(int64_t) * API_JOB_STATE_COUNT);
    PGresult *r = pg_run(s, SQL_COUNTS, NULL, PGRES_TUPLES_OK, "count jobs", err);
    if (!r)
        return D2_EIO;
    for (int i = 0; i < PQntuples(r); i++) {
        api_job_state state;
        if (api_job_state_parse(PQgetvalue(r, i, 0), &state) == 0)
            counts[state] = pg_col_i64(r, i, 1);
    }
    PQclear(r);
    return 0;
}
