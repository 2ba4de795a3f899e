/* store_jobs.c - job rows: insert, load, list, state transitions, counts. */
#include "store_internal.h"
#include "store_sqlite.h"

#include <stdlib.h>
#include <string.h>

static const char SQL_INSERT[] =
    "INSERT INTO jobs (id, state, generator_id, generator_name, dataset_id, embeddings, "
    "candidates, steps, sampler, guidance, seed, priority, parent_checkpoint, principal, "
    "created_ms, gate, refine) VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
    "?12, ?13, ?14, ?15, ?16)";
static const char SQL_EDGE[] =
    "INSERT OR IGNORE INTO lineage_edges (src_kind, src_id, dst_kind, dst_id, relation, "
    "created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char SQL_GET[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE id = ?1";
static const char SQL_SEQ[] = "SELECT seq FROM jobs WHERE id = ?1";
static const char SQL_LIST[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE seq < ?1 "
                               "ORDER BY seq DESC LIMIT ?2";
static const char SQL_LIST_STATE[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE state = ?3 AND seq < ?1 "
                                     "ORDER BY seq DESC LIMIT ?2";
static const char SQL_QUEUED[] = "SELECT " STORE_JOB_COLS " FROM jobs WHERE state = 'queued' "
                                 "ORDER BY priority DESC, seq ASC LIMIT ?1";
static const char SQL_RUNNING[] =
    "UPDATE jobs SET state = 'running', started_ms = ?2, attempts = attempts + 1, "
    "progress = 0 WHERE id = ?1 AND state = 'queued'";
static const char SQL_CANCEL_REQ[] =
    "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1";
static const char SQL_FINISH[] =
    "UPDATE jobs SET state = ?2, error_code = ?3, error_message = ?4, finished_ms = ?5, "
    "run_seconds = ?6 WHERE id = ?1";
static const char SQL_SUCCEED[] =
    "UPDATE jobs SET state = 'succeeded', progress = 1, way = ?2, run_seconds = ?3, "
    "finished_ms = ?4, error_code = NULL, error_message = NULL, gate_decision = ?5 WHERE id = ?1";
static const char SQL_CKPT_INSERT[] =
    "INSERT OR REPLACE INTO checkpoints (id, job_id, rank, candidate_index, support_acc, "
    "support_loss, norm, zoo_distance, zoo_nearest, sha256, size_bytes, file_offset, "
    "created_ms, method) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
static const char SQL_REQUEUE[] =
    "UPDATE jobs SET state = 'queued', progress = 0 WHERE id = ?1 AND state = 'running'";
static const char SQL_REQUEUE_ALL[] =
    "UPDATE jobs SET state = 'queued', progress = 0 WHERE state = 'running'";
static const char SQL_COUNTS[] = "SELECT state, COUNT(*) FROM jobs GROUP BY state";

static int edge(store *s, const char *sk, const char *sid, const char *dk, const char *did,
                const char *rel, int64_t now, d2_error *err)
{
    sqlite3_stmt *st = store_stmt(s, SQL_EDGE, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, sk);
    store_bind_text(st, 2, sid);
    store_bind_text(st, 3, dk);
    store_bind_text(st, 4, did);
    store_bind_text(st, 5, rel);
    sqlite3_bind_int64(st, 6, now);
    return store_step_done(s, st, err, "insert lineage edge");
}

int sq_job_insert(store *s, const api_job *j, const char *principal, d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, SQL_INSERT, err);
    if (!st)
        goto fail;
    store_bind_text(st, 1, j->id);
    store_bind_text(st, 2, j->generator_id);
    store_bind_text(st, 3, j->generator_name);
    store_bind_text(st, 4, j->dataset_id);
    sqlite3_bind_int(st, 5, j->kind == API_KIND_EMBEDDINGS);
    sqlite3_bind_int(st, 6, j->candidates);
    sqlite3_bind_int(st, 7, j->steps);
    store_bind_text(st, 8, api_sampler_name(j->sampler));
    sqlite3_bind_double(st, 9, j->guidance);
    sqlite3_bind_int64(st, 10, j->seed);
    sqlite3_bind_int(st, 11, j->priority);
    store_bind_text(st, 12, j->parent_checkpoint[0] ? j->parent_checkpoint : NULL);
    store_bind_text(st, 13, principal);
    sqlite3_bind_int64(st, 14, j->created_ms);
    sqlite3_bind_int(st, 15, j->gate_requested != 0);
    sqlite3_bind_int(st, 16, j->refine_requested != 0);
    if (store_step_done(s, st, err, "insert job") != 0)
        goto fail;
    if (edge(s, "generator", j->generator_id, "job", j->id, "input", j->created_ms, err) != 0 ||
        edge(s, "dataset", j->dataset_id, "job", j->id, "input", j->created_ms, err) != 0)
        goto fail;
    return store_commit(s, err);
fail:
    store_rollback(s);
    return D2_EIO;
}

/* The gate decision in column i (JSON text, NULL before the job succeeded):
 * a text that does not parse leaves the job without one. */
static void row_gate(sqlite3_stmt *st, int i, api_job *j)
{
    const char *text = (const char *)sqlite3_column_text(st, i);
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    api_error e;
    j->has_gate = v && api_gate_from_json(v, &j->gate, &e) == 0;
    json_decref(v);
}

static void row_to_job(sqlite3_stmt *st, api_job *j)
{
    api_job_init(j);
    store_col_text(st, 0, j->id, sizeof j->id);
    char state[32];
    store_col_text(st, 1, state, sizeof state);
    api_job_state_parse(state, &j->state);
    store_col_text(st, 2, j->generator_id, sizeof j->generator_id);
    store_col_text(st, 3, j->generator_name, sizeof j->generator_name);
    store_col_text(st, 4, j->dataset_id, sizeof j->dataset_id);
    j->kind = sqlite3_column_int(st, 5) ? API_KIND_EMBEDDINGS : API_KIND_SAMPLES;
    j->candidates = sqlite3_column_int(st, 6);
    j->steps = sqlite3_column_int(st, 7);
    char sampler[16];
    store_col_text(st, 8, sampler, sizeof sampler);
    api_sampler_parse(sampler, &j->sampler);
    j->guidance = sqlite3_column_double(st, 9);
    j->seed = sqlite3_column_int64(st, 10);
    j->priority = sqlite3_column_int(st, 11);
    store_col_text(st, 12, j->parent_checkpoint, sizeof j->parent_checkpoint);
    j->created_ms = sqlite3_column_int64(st, 13);
    j->started_ms = sqlite3_column_int64(st, 14);
    j->finished_ms = sqlite3_column_int64(st, 15);
    j->attempts = sqlite3_column_int(st, 16);
    j->progress = sqlite3_column_double(st, 17);
    j->cancel_requested = sqlite3_column_int(st, 18);
    store_col_text(st, 19, j->error_code, sizeof j->error_code);
    store_col_text(st, 20, j->error_message, sizeof j->error_message);
    j->way = sqlite3_column_int(st, 21);
    j->run_seconds =
        sqlite3_column_type(st, 22) == SQLITE_NULL ? -1.0 : sqlite3_column_double(st, 22);
    j->gate_requested = sqlite3_column_int(st, 23);
    row_gate(st, 24, j);
    j->refine_requested = sqlite3_column_int(st, 25);
}

int sq_job_get(store *s, const char *id, api_job *j, int with_checkpoints, d2_error *err)
{
    api_job_init(j);
    sqlite3_stmt *st = store_stmt(s, SQL_GET, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        store_done(st);
        return d2_fail(err, D2_ENOTFOUND, "no job %s", id);
    }
    if (rc != SQLITE_ROW) {
        store_done(st);
        return store_fail(s, err, "get job");
    }
    row_to_job(st, j);
    store_done(st);
    if (with_checkpoints && j->state == API_JOB_SUCCEEDED)
        return store_checkpoints_of_job(s, j->id, &j->checkpoints, &j->ncheckpoints, err);
    return 0;
}

int sq_job_seq(store *s, const char *id, int64_t *seq, d2_error *err)
{
    sqlite3_stmt *st = store_stmt(s, SQL_SEQ, err);
    if (!st)
        return D2_EIO;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(st, 0);
    store_done(st);
    if (rc == SQLITE_DONE)
        return d2_fail(err, D2_ENOTFOUND, "no job %s", id);
    return rc == SQLITE_ROW ? 0 : store_fail(s, err, "job seq");
}

static void job_row(sqlite3_stmt *st, void *element)
{
    row_to_job(st, element);
}

static int collect(store *s, sqlite3_stmt *st, api_job **out, int *n, int with_ckpts,
                   d2_error *err)
{
    void *rows;
    int count;
    int rc = store_collect_rows(s, st, sizeof(api_job), job_row, &rows, &count, "list jobs", err);
    if (rc)
        return rc;
    api_job *list = rows;
    for (int i = 0; with_ckpts && i < count; i++)
        if (list[i].state == API_JOB_SUCCEEDED &&
            store_checkpoints_of_job(s, list[i].id, &list[i].checkpoints,
                                     &list[i].ncheckpoints, err) != 0) {
            for (int k = 0; k < count; k++)
                api_job_free(&list[k]);
            free(list);
            return D2_EIO;
        }
    *out = list;
    *n = count;
    return 0;
}

int sq_job_list(store *s, int state, int64_t before_seq, int limit, api_job **out, int *n,
                   d2_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = store_stmt(s, state >= 0 ? SQL_LIST_STATE : SQL_LIST, err);
    if (!st)
        return D2_EIO;
    sqlite3_bind_int64(st, 1, before_seq > 0 ? before_seq : INT64_MAX);
    sqlite3_bind_int(st, 2, limit);
    if (state >= 0)
        store_bind_text(st, 3, api_job_state_name((api_job_state)state));
    return collect(s, st, out, n, 1, err);
}

int sq_jobs_queued(store *s, int limit, api_job **out, int *n, d2_error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = store_stmt(s, SQL_QUEUED, err);
    if (!st)
        return D2_EIO;
    sqlite3_bind_int(st, 1, limit); /* negative: no limit */
    return collect(s, st, out, n, 0, err);
}

static int write1(store *s, const char *sql, const char *id, d2_error *err, const char *what)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, sql, err);
    if (!st || (store_bind_text(st, 1, id), store_step_done(s, st, err, what)) != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    return store_commit(s, err);
}

int sq_job_set_running(store *s, const char *id, int64_t started_ms, d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, SQL_RUNNING, err);
    if (!st)
        goto fail;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, started_ms);
    if (store_step_done(s, st, err, "mark job running") != 0)
        goto fail;
    if (sqlite3_changes(s->db) != 1) {
        d2_fail(err, D2_EINVAL, "store: job %s is not queued", id);
        goto fail;
    }
    return store_commit(s, err);
fail:
    store_rollback(s);
    return err && err->code ? err->code : D2_EIO;
}

int sq_job_set_cancel_requested(store *s, const char *id, d2_error *err)
{
    return write1(s, SQL_CANCEL_REQ, id, err, "request cancel");
}

int sq_job_finish(store *s, const char *id, api_job_state state, const char *error_code,
                     const char *error_message, int64_t finished_ms, double run_seconds,
                     d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, SQL_FINISH, err);
    if (!st) {
        store_rollback(s);
        return D2_EIO;
    }
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, api_job_state_name(state));
    store_bind_text(st, 3, error_code && error_code[0] ? error_code : NULL);
    store_bind_text(st, 4, error_code && error_code[0] ? error_message : NULL);
    sqlite3_bind_int64(st, 5, finished_ms);
    if (run_seconds >= 0)
        sqlite3_bind_double(st, 6, run_seconds);
    else
        sqlite3_bind_null(st, 6);
    if (store_step_done(s, st, err, "finish job") != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    return store_commit(s, err);
}

/* The gate decision as stored: the Job's `gate` object as compact JSON (NULL:
 * none, or out of memory, reported in err). */
static char *gate_text(const api_gate *gate, d2_error *err)
{
    json_t *v = api_gate_to_json(gate);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        d2_fail(err, D2_ENOMEM, "store: out of memory for the gate decision");
    return text;
}

int sq_job_succeed(store *s, const char *id, int way, double run_seconds, int64_t finished_ms,
                      const api_checkpoint *c, const int64_t *offsets, int n,
                      const char *parent_checkpoint, const api_gate *gate, d2_error *err)
{
    char *decision = gate ? gate_text(gate, err) : NULL;
    if ((gate && !decision) || store_begin(s, err) != 0) {
        free(decision);
        return gate && !decision ? D2_ENOMEM : D2_EIO;
    }
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *st = store_stmt(s, SQL_CKPT_INSERT, err);
        if (!st)
            goto fail;
        store_bind_text(st, 1, c[i].id);
        store_bind_text(st, 2, id);
        sqlite3_bind_int(st, 3, c[i].rank);
        sqlite3_bind_int(st, 4, c[i].candidate_index);
        sqlite3_bind_double(st, 5, c[i].support_acc);
        sqlite3_bind_double(st, 6, c[i].support_loss);
        sqlite3_bind_double(st, 7, c[i].norm);
        sqlite3_bind_double(st, 8, c[i].zoo_distance);
        sqlite3_bind_int(st, 9, c[i].zoo_nearest);
        store_bind_text(st, 10, c[i].sha256);
        sqlite3_bind_int64(st, 11, c[i].size_bytes);
        sqlite3_bind_int64(st, 12, offsets ? offsets[i] : 0);
        sqlite3_bind_int64(st, 13, finished_ms);
        store_bind_text(st, 14, api_method_name(c[i].method));
        if (store_step_done(s, st, err, "insert checkpoint") != 0)
            goto fail;
        if (edge(s, "job", id, "checkpoint", c[i].id, "produced", finished_ms, err) != 0)
            goto fail;
        if (parent_checkpoint && parent_checkpoint[0] &&
            edge(s, "checkpoint", parent_checkpoint, "checkpoint", c[i].id, "derived",
                 finished_ms, err) != 0)
            goto fail;
    }
    sqlite3_stmt *st = store_stmt(s, SQL_SUCCEED, err);
    if (!st)
        goto fail;
    store_bind_text(st, 1, id);
    sqlite3_bind_int(st, 2, way);
    sqlite3_bind_double(st, 3, run_seconds);
    sqlite3_bind_int64(st, 4, finished_ms);
    store_bind_text(st, 5, decision);
    if (store_step_done(s, st, err, "mark job succeeded") != 0)
        goto fail;
    free(decision);
    return store_commit(s, err);
fail:
    free(decision);
    store_rollback(s);
    return D2_EIO;
}

int sq_job_requeue(store *s, const char *id, d2_error *err)
{
    return write1(s, SQL_REQUEUE, id, err, "requeue job");
}

int sq_jobs_requeue_running(store *s, int *n, d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    sqlite3_stmt *st = store_stmt(s, SQL_REQUEUE_ALL, err);
    if (!st || store_step_done(s, st, err, "requeue running jobs") != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    *n = sqlite3_changes(s->db);
    return store_commit(s, err);
}

int sq_job_counts(store *s, int64_t counts[API_JOB_STATE_COUNT], d2_error *err)
{
    memset(counts, 0, sizeof(int64_t) * API_JOB_STATE_COUNT);
    sqlite3_stmt *st = store_stmt(s, SQL_COUNTS, err);
    if (!st)
        return D2_EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        api_job_state state;
        if (api_job_state_parse((const char *)sqlite3_column_text(st, 0), &state) == 0)
            counts[state] = sqlite3_column_int64(st, 1);
    }
    store_done(st);
    return rc == SQLITE_DONE ? 0 : store_fail(s, err, "count jobs");
}
