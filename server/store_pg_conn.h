/* store_pg_conn.h - the PostgreSQL dialect's connection helpers, shared by
 * store_pg*.c only: parameter lists, running a parameterised statement with
 * its result status checked, reading columns, and what counts as
 * "unavailable" (store_busy). */
#ifndef D2_SERVER_STORE_PG_CONN_H
#define D2_SERVER_STORE_PG_CONN_H

/* libpq's header: found through pkg-config's -I (the Makefile), else where
 * Debian puts it (tests/layers.sh preprocesses headers without that -I) */
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif

#include "store_internal.h"
#include "store_pg_ops.h"

#define PG_MAX_PARAMS 20

/* The embedded migrations of this dialect. */
#define PG_MIGRATIONS "migrations/postgres/"

/* Parameters $1.. of one statement: text (numbers printed into num[]) or
 * binary (bytea). Values are not copied: they must outlive the call. */
typedef struct pg_params {
    int n;
    const char *val[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][40];
} pg_params;

/* A libpq connection to conninfo (URL or key=value), password may be NULL. */
PGconn *pg_connect(const char *conninfo, const char *password);

void pgp_init(pg_params *p);
void pgp_text(pg_params *p, const char *v); /* NULL: SQL NULL */
void pgp_i64(pg_params *p, int64_t v);
void pgp_f64(pg_params *p, double v);
void pgp_bytes(pg_params *p, const void *b, size_t n);

/* Run sql with p (may be NULL) and check its status is expect
 * (PGRES_COMMAND_OK or PGRES_TUPLES_OK): the result, or NULL with err
 * filled ("store: WHAT: why"), s->busy set when the failure means
 * unavailable, and the open transaction marked failed. Re-opens a lost
 * connection first when no transaction is open. */
PGresult *pg_run(store *s, const char *sql, const pg_params *p, ExecStatusType expect,
                 const char *what, d2_error *err);
/* A statement without rows; *changed (may be NULL): the rows it touched. */
int pg_cmd(store *s, const char *sql, const pg_params *p, int64_t *changed, const char *what,
           d2_error *err);
/* pg_cmd inside its own transaction (nested in the caller's, if any). */
int pg_write(store *s, const char *sql, const pg_params *p, int64_t *changed, const char *what,
             d2_error *err);
/* One row or none: 0 with *res (PQclear it) for a row, D2_ENOTFOUND (err:
 * "no NOUN ID") for none. */
int pg_row(store *s, const char *sql, const pg_params *p, PGresult **res, const char *what,
           const char *noun, const char *id, d2_error *err);

/* Columns of a text-format result: NULL reads as "", 0 or 0.0. */
void pg_col_text(const PGresult *r, int row, int col, char *dst, size_t cap);
char *pg_col_dup(const PGresult *r, int row, int col);
int64_t pg_col_i64(const PGresult *r, int row, int col);
int pg_col_int(const PGresult *r, int row, int col);
double pg_col_f64(const PGresult *r, int row, int col);
int pg_col_null(const PGresult *r, int row, int col);

/* Rows of r into a malloc'd array of elem_size elements read by row(); NULL
 * and 0 when there are none. Clears r. */
typedef void (*pg_row_fn)(const PGresult *r, int row, void *element);
int pg_collect(PGresult *r, size_t elem_size, pg_row_fn row, void **out, int *n, d2_error *err);

#endif
