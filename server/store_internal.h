/* store_internal.h - shared by store*.c only: the connection struct and the
 * prepared-statement cache. */
#ifndef D2_SERVER_STORE_INTERNAL_H
#define D2_SERVER_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

#define STORE_MAX_STMTS 64

struct store {
    sqlite3 *db;
    int depth;        /* store_begin nesting */
    int failed;       /* a nested part failed: the outermost commit rolls back */
    int busy;         /* the last failure was SQLITE_BUSY / SQLITE_LOCKED (see store_busy) */
    sqlite3_stmt *rollback; /* "ROLLBACK", prepared at open (see store.c) */
    struct {
        const char *sql; /* identity: a static string of one of the store files */
        sqlite3_stmt *st;
    } cache[STORE_MAX_STMTS];
    int ncache;
};

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

#endif
