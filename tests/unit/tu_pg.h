/* tu_pg.h - tests on PostgreSQL: a fresh database on the throw-away cluster
 * that tests/run_tests.sh starts (tests/pg_cluster.sh) and names in
 * $D2NWG_TEST_PG ("host=DIR port=P user=postgres"). Without it, or when the
 * database cannot be created, the test fails: it never skips silently. */
#ifndef D2_TU_PG_H
#define D2_TU_PG_H

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* The cluster's connection string (fails the test when there is none). */
static inline const char *tu_pg_base(void)
{
    const char *base = getenv("D2NWG_TEST_PG");
    if (!base || !*base)
        fail_msg("D2NWG_TEST_PG is not set: run through tests/run_tests.sh (make test), or "
                 "export D2NWG_TEST_PG=\"$(tests/pg_cluster.sh start DIR)\"");
    return base;
}

/* Run one statement on the cluster's maintenance database. */
static inline void tu_pg_admin(const char *sql)
{
    char dsn[1024];
    snprintf(dsn, sizeof dsn, "%s dbname=postgres", tu_pg_base());
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("PostgreSQL at '%s': %s", dsn, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* Create an empty database d2t_<tag>_<pid>_<ns> and write its connection
 * string ("BASE dbname=NAME") to out. */
static inline void tu_pg_newdb(char *out, size_t cap, const char *tag)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char name[128], sql[256];
    snprintf(name, sizeof name, "d2t_%s_%ld_%ld%09ld", tag, (long)getpid(), (long)ts.tv_sec,
             (long)ts.tv_nsec);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name); /* name: [a-z0-9_] made here */
    tu_pg_admin(sql);
    snprintf(out, cap, "%s dbname=%s", tu_pg_base(), name);
}

/* The database for key (the same key, the same database: a daemon started
 * again on the same --data finds its store), created when absent; its
 * connection string goes to out. */
static inline void tu_pg_db_for(char *out, size_t cap, const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    char name[64], dsn[1024];
    snprintf(name, sizeof name, "d2t_%016llx", (unsigned long long)h);
    snprintf(dsn, sizeof dsn, "%s dbname=postgres", tu_pg_base());
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("PostgreSQL at '%s': %s", dsn, PQerrorMessage(c));
    const char *v[1] = {name};
    PGresult *r = PQexecParams(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, v,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("pg_database: %s", PQerrorMessage(c));
    int exists = PQntuples(r) > 0;
    PQclear(r);
    PQfinish(c);
    if (!exists) {
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name); /* name: [0-9a-z_] made here */
        tu_pg_admin(sql);
    }
    snprintf(out, cap, "%s dbname=%s", tu_pg_base(), name);
}

#endif
