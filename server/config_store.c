/* config_store.c - the store settings: --store (an SQLite file or a
 * PostgreSQL connection string, which may never carry a password) and
 * --store-password-file. */
#include "config.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "store.h"

/* 1 when the libpq connection string s sets a password (URL user:pass@ or
 * password=...); -1 with err filled when libpq cannot parse it. */
static int conninfo_has_password(const char *s, d2_error *err)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &msg);
    if (!opts) {
        d2_fail(err, D2_EINVAL, "store: not a PostgreSQL connection string: %.*s",
                msg ? (int)strcspn(msg, "\n") : 13, msg ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    int has = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (!strcmp(o->keyword, "password") && o->val && o->val[0])
            has = 1;
    PQconninfoFree(opts);
    return has;
}

int config_check_store(const config *c, d2_error *err)
{
    int pg = c->store[0] && store_is_postgres(c->store);
    if (c->store_password_file[0] && !pg)
        return d2_fail(err, D2_EINVAL,
                       "store_password_file: only for a PostgreSQL --store (postgres://...)");
    if (!pg)
        return 0;
    int has = conninfo_has_password(c->store, err);
    if (has < 0)
        return err->code;
    if (has)
        return d2_fail(err, D2_EINVAL,
                       "store: the connection string contains a password; give it with "
                       "--store-password-file FILE (or PGPASSWORD / PGPASSFILE), never in "
                       "--store");
    return 0;
}

/* The first line of path, without its line end. */
static int read_password(const char *path, char *out, size_t cap, d2_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return d2_fail(err, D2_EIO, "store_password_file: %s: %s", path, strerror(errno));
    out[0] = '\0';
    int ok = fgets(out, (int)cap, f) != NULL || !ferror(f);
    fclose(f);
    if (!ok)
        return d2_fail(err, D2_EIO, "store_password_file: %s: read error", path);
    out[strcspn(out, "\r\n")] = '\0';
    if (!out[0])
        return d2_fail(err, D2_EINVAL, "store_password_file: %s: empty", path);
    return 0;
}

int config_store_target(const config *c, char *target, size_t tcap, char *password,
                        size_t pcap, d2_error *err)
{
    int n = c->store[0] ? snprintf(target, tcap, "%s", c->store)
                        : snprintf(target, tcap, "%s/d2nwgd.sqlite", c->data_dir);
    if (n < 0 || (size_t)n >= tcap)
        return d2_fail(err, D2_EINVAL, "store: name too long");
    password[0] = '\0';
    if (c->store_password_file[0])
        return read_password(c->store_password_file, password, pcap, err);
    return 0;
}
