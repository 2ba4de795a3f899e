/* store_pg_conn.c - the PostgreSQL connection: open, re-open after a loss,
 * parameterised statements with their status checked, transactions, the
 * lock timeout and what counts as unavailable. */
#include "store_pg_conn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pgp_init(pg_params *p)
{
    memset(p, 0, sizeof *p);
}

static int pgp_slot(pg_params *p)
{
    /* more parameters than PG_MAX_PARAMS is a bug in this file: abort loudly */
    if (p->n >= PG_MAX_PARAMS)
        abort();
    return p->n++;
}

void pgp_text(pg_params *p, const char *v)
{
    int i = pgp_slot(p);
    p->val[i] = v;
}

void pgp_i64(pg_params *p, int64_t v)
{
    int i = pgp_slot(p);
    snprintf(p->num[i], sizeof p->num[i], "%" PRId64, v);
    p->val[i] = p->num[i];
}

void pgp_f64(pg_params *p, double v)
{
    int i = pgp_slot(p);
    snprintf(p->num[i], sizeof p->num[i], "%.17g", v);
    p->val[i] = p->num[i];
}

void pgp_bytes(pg_params *p, const void *b, size_t n)
{
    int i = pgp_slot(p);
    p->val[i] = b;
    p->len[i] = (int)n;
    p->fmt[i] = 1;
}

/* Lock and statement timeouts, serialization failures, deadlocks, a
 * server shutting down or a lost connection: try again later. */
static int sqlstate_unavailable(const char *st)
{
    static const char *const codes[] = {"55P03", "57014", "40001", "40P01",
                                        "57P01", "57P02", "57P03", "53300"};
    if (!st)
        return 0;
    if (!strncmp(st, "08", 2))
        return 1;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (!strcmp(st, codes[i]))
            return 1;
    return 0;
}

/* The session settings: lock_timeout, and d2nwg.replica (the jobs_notify
 * trigger names the replica that made a change with it). */
static int apply_lock_timeout(store *s, d2_error *err)
{
    char ms[32];
    snprintf(ms, sizeof ms, "%d", s->lock_timeout_ms);
    const char *v[2] = {ms, s->owner};
    PGresult *r = PQexecParams(s->pg,
                               "SELECT set_config('lock_timeout', $1, false), "
                               "set_config('d2nwg.replica', $2, false)",
                               2, NULL, v, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        d2_fail(err, D2_EIO, "store: set lock_timeout: %s", PQerrorMessage(s->pg));
    PQclear(r);
    return ok ? 0 : D2_EIO;
}

/* A connection found lost outside a transaction is re-opened (PQreset). */
static int ensure_connected(store *s, d2_error *err)
{
    if (PQstatus(s->pg) == CONNECTION_OK)
        return 0;
    if (s->depth == 0) {
        PQreset(s->pg);
        if (PQstatus(s->pg) == CONNECTION_OK && apply_lock_timeout(s, err) == 0)
            return 0;
    }
    s->busy = 1;
    if (s->depth > 0)
        s->failed = 1;
    return d2_fail(err, D2_EIO, "store: connection lost: %s", PQerrorMessage(s->pg));
}

PGresult *pg_run(store *s, const char *sql, const pg_params *p, ExecStatusType expect,
                 const char *what, d2_error *err)
{
    if (ensure_connected(s, err) != 0)
        return NULL;
    int n = p ? p->n : 0;
    PGresult *r = PQexecParams(s->pg, sql, n, NULL, p ? p->val : NULL, p ? p->len : NULL,
                               p ? p->fmt : NULL, 0);
    if (r && PQresultStatus(r) == expect)
        return r;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    s->busy = sqlstate_unavailable(state) || PQstatus(s->pg) != CONNECTION_OK;
    if (s->depth > 0)
        s->failed = 1; /* PostgreSQL refuses everything else in this transaction */
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(s->pg);
    d2_fail(err, D2_EIO, "store: %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    PQclear(r);
    return NULL;
}

int pg_cmd(store *s, const char *sql, const pg_params *p, int64_t *changed, const char *what,
           d2_error *err)
{
    PGresult *r = pg_run(s, sql, p, PGRES_COMMAND_OK, what, err);
    if (!r)
        return D2_EIO;
    if (changed)
        *changed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

int pg_write(store *s, const char *sql, const pg_params *p, int64_t *changed, const char *what,
             d2_error *err)
{
    if (store_begin(s, err) != 0)
        return D2_EIO;
    if (pg_cmd(s, sql, p, changed, what, err) != 0) {
        store_rollback(s);
        return D2_EIO;
    }
    return store_commit(s, err);
}

int pg_row(store *s, const char *sql, const pg_params *p, PGresult **res, const char *what,
           const char *noun, const char *id, d2_error *err)
{
    *res = NULL;
    PGresult *r = pg_run(s, sql, p, PGRES_TUPLES_OK, what, err);
    if (!r)
        return D2_EIO;
    if (PQntuples(r) < 1) {
        PQclear(r);
        return d2_fail(err, D2_ENOTFOUND, "no %s %s", noun, id ? id : "");
    }
    *res = r;
    return 0;
}

void pg_col_text(const PGresult *r, int row, int col, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

char *pg_col_dup(const PGresult *r, int row, int col)
{
    return strdup(PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

int64_t pg_col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int pg_col_int(const PGresult *r, int row, int col)
{
    return (int)pg_col_i64(r, row, col);
}

double pg_col_f64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0.0 : strtod(PQgetvalue(r, row, col), NULL);
}

int pg_col_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

int pg_collect(PGresult *r, size_t elem_size, pg_row_fn row, void **out, int *n, d2_error *err)
{
    *out = NULL;
    *n = 0;
    int rows = PQntuples(r);
    if (rows == 0) {
        PQclear(r);
        return 0;
    }
    char *list = calloc((size_t)rows, elem_size);
    if (!list) {
        PQclear(r);
        return d2_fail(err, D2_ENOMEM, "store: out of memory");
    }
    for (int i = 0; i < rows; i++)
        row(r, i, list + (size_t)i * elem_size);
    PQclear(r);
    *out = list;
    *n = rows;
    return 0;
}

/* ---- transactions ---- */

/* The outermost transaction's statements (store_api.c keeps the nesting). */
int pg_tx_begin(store *s, d2_error *err)
{
    return pg_cmd(s, "BEGIN", NULL, NULL, "BEGIN", err);
}

void pg_tx_rollback(store *s)
{
    if (PQtransactionStatus(s->pg) == PQTRANS_IDLE)
        return;
    PGresult *r = PQexec(s->pg, "ROLLBACK");
    PQclear(r); /* a lost connection has nothing left to roll back */
}

int pg_tx_commit(store *s, d2_error *err)
{
    return pg_cmd(s, "COMMIT", NULL, NULL, "COMMIT", err);
}

int pg_probe(store *s, d2_error *err)
{
    PGresult *r = pg_run(s, "SELECT 1", NULL, PGRES_TUPLES_OK, "probe", err);
    PQclear(r);
    return r ? 0 : D2_EIO;
}

void pg_set_busy_timeout(store *s, int ms)
{
    s->lock_timeout_ms = ms;
    d2_error e = {0};
    if (apply_lock_timeout(s, &e) != 0)
        s->busy = 1; /* the next statement re-opens the connection and applies it */
}

/* ---- open / close ---- */

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation already exists, skipping" and the like */
}

PGconn *pg_connect(const char *conninfo, const char *password)
{
    /* later keywords override the expanded dbname's: the URL may set its own
     * connect_timeout; a password given here wins */
    const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                          password ? "password" : NULL, NULL};
    const char *vals[] = {"10", "d2nwgd", conninfo, password, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

int store_pg_open(store **out, const store_conf *conf, d2_error *err)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s)
        return d2_fail(err, D2_ENOMEM, "store: out of memory");
    s->ops = &store_pg_ops;
    s->lock_timeout_ms = 5000;
    snprintf(s->owner, sizeof s->owner, "%s", conf->owner ? conf->owner : "d2nwgd");
    s->lease_ms = conf->lease_ms > 0 ? conf->lease_ms : STORE_LEASE_MS;
    s->pg = pg_connect(conf->target, conf->password);
    if (!s->pg || PQstatus(s->pg) != CONNECTION_OK) {
        const char *msg = s->pg ? PQerrorMessage(s->pg) : "out of memory";
        d2_fail(err, D2_EIO, "store: connect to PostgreSQL: %.*s", (int)strcspn(msg, "\n"), msg);
        pg_close(s);
        return D2_EIO;
    }
    PQsetNoticeProcessor(s->pg, quiet_notices, NULL);
    if (apply_lock_timeout(s, err) != 0) {
        pg_close(s);
        return D2_EIO;
    }
    *out = s;
    return 0;
}

void pg_close(store *s)
{
    if (!s)
        return;
    PQfinish(s->pg);
    free(s);
}
