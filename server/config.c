/* config.c - defaults, config file and flags for d2nwgd. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void config_defaults(config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:8080");
    snprintf(c->data_dir, sizeof c->data_dir, "var/d2nwgd");
    snprintf(c->device, sizeof c->device, "cpu");
    c->workers = 1;
    c->threads = 0;
    c->max_queue = 1024;
    c->body_limit = (size_t)64 << 20;
    c->limits = api_limits_default();
    c->rate_limit = 0.0;
    c->rate_burst = 0.0;
    c->long_poll_max = 60;
    c->shutdown_grace = 0;
    c->max_connections = 1024;
    c->max_connections_per_client = 128;
    c->connection_timeout = 60;
    c->events_client_buffer = 1 << 20;
    c->events_progress_ms = 500;
    c->log_level = LOG_INFO;
    c->sqlite_sync_full = 0;
    c->store_busy_ms = 1000;
    c->store_lease_ms = 10000;
}

static int parse_long(const char *key, const char *v, long lo, long hi, long *out, d2_error *err)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return d2_fail(err, D2_EINVAL, "%s: expected an integer in %ld..%ld, got '%s'", key, lo,
                       hi, v);
    *out = x;
    return 0;
}

static int parse_double(const char *key, const char *v, double lo, double hi, double *out,
                        d2_error *err)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return d2_fail(err, D2_EINVAL, "%s: expected a number in %g..%g, got '%s'", key, lo, hi,
                       v);
    *out = x;
    return 0;
}

/* "64M", "1G", "65536" -> bytes */
static int parse_size(const char *key, const char *v, size_t *out, d2_error *err)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30, end++;
    if (*end == 'i' || *end == 'B')
        end++;
    if (errno || end == v || *end || x == 0 || x > (1ull << 40) / mul)
        return d2_fail(err, D2_EINVAL, "%s: expected a size such as 65536, 64M or 1G, got '%s'",
                       key, v);
    *out = (size_t)(x * mul);
    return 0;
}

static int copy_value(const char *key, const char *v, char *dst, size_t cap, d2_error *err)
{
    if (strlen(v) >= cap)
        return d2_fail(err, D2_EINVAL, "%s: value longer than %zu characters", key, cap - 1);
    snprintf(dst, cap, "%s", v);
    return 0;
}

/* NAME=PATH or PATH (first unnamed is "default", later ones the file's stem).
 * pending: the file need not exist yet (--generator-pending). */
static int add_generator(config *c, const char *v, int pending, d2_error *err)
{
    if (c->ngenerators >= CONFIG_MAX_GENERATORS)
        return d2_fail(err, D2_ERANGE, "generator: at most %d generators", CONFIG_MAX_GENERATORS);
    config_generator *g = &c->generators[c->ngenerators];
    const char *eq = strchr(v, '=');
    const char *path = v;
    if (eq && eq != v) {
        size_t n = (size_t)(eq - v);
        if (n >= sizeof g->name)
            return d2_fail(err, D2_EINVAL, "generator: name too long in '%s'", v);
        memcpy(g->name, v, n);
        g->name[n] = '\0';
        path = eq + 1;
    } else {
        int have_default = 0;
        for (int i = 0; i < c->ngenerators; i++)
            if (!strcmp(c->generators[i].name, "default"))
                have_default = 1;
        if (!have_default) {
            snprintf(g->name, sizeof g->name, "default");
        } else {
            const char *base = strrchr(v, '/');
            base = base ? base + 1 : v;
            size_t n = strcspn(base, ".");
            if (n == 0 || n >= sizeof g->name)
                return d2_fail(err, D2_EINVAL, "generator: cannot name '%s'; use NAME=PATH", v);
            memcpy(g->name, base, n);
            g->name[n] = '\0';
        }
    }
    for (const char *p = g->name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return d2_fail(err, D2_EINVAL,
                           "generator: name '%s' may use only letters, digits, '-', '_' and '.'",
                           g->name);
    if (!path[0])
        return d2_fail(err, D2_EINVAL, "generator: empty path in '%s'", v);
    if (copy_value("generator", path, g->path, sizeof g->path, err) != 0)
        return err->code;
    g->pending = pending;
    c->ngenerators++;
    return 0;
}

/* normalise "max-queue" / "max_queue" */
static void norm_key(const char *key, char *out, size_t cap)
{
    size_t i = 0;
    for (; key[i] && i + 1 < cap; i++)
        out[i] = key[i] == '-' ? '_' : key[i];
    out[i] = '\0';
}

int config_set(config *c, const char *key_in, const char *v, d2_error *err)
{
    char key[64];
    norm_key(key_in, key, sizeof key);
    long l;
    double d;
    if (!strcmp(key, "listen"))
        return copy_value(key, v, c->listen, sizeof c->listen, err);
    if (!strcmp(key, "data"))
        return copy_value(key, v, c->data_dir, sizeof c->data_dir, err);
    if (!strcmp(key, "store"))
        return copy_value(key, v, c->store, sizeof c->store, err);
    if (!strcmp(key, "store_password_file"))
        return copy_value(key, v, c->store_password_file, sizeof c->store_password_file, err);
    if (!strcmp(key, "tokens"))
        return copy_value(key, v, c->tokens_path, sizeof c->tokens_path, err);
    if (!strcmp(key, "port_file"))
        return copy_value(key, v, c->port_file, sizeof c->port_file, err);
    if (!strcmp(key, "device"))
        return copy_value(key, v, c->device, sizeof c->device, err);
    if (!strcmp(key, "generator") || !strcmp(key, "generator_pending"))
        return add_generator(c, v, !strcmp(key, "generator_pending"), err);
    if (!strcmp(key, "body_limit"))
        return parse_size(key, v, &c->body_limit, err);
    if (!strcmp(key, "log_level")) {
        if (log_level_parse(v, &c->log_level) != 0)
            return d2_fail(err, D2_EINVAL, "log_level: expected debug, info, warn or error");
        return 0;
    }
    if (!strcmp(key, "sqlite_synchronous")) {
        if (!strcmp(v, "normal"))
            c->sqlite_sync_full = 0;
        else if (!strcmp(v, "full"))
            c->sqlite_sync_full = 1;
        else
            return d2_fail(err, D2_EINVAL, "sqlite_synchronous: expected normal or full");
        return 0;
    }
    if (!strcmp(key, "rate_limit")) {
        if (parse_double(key, v, 0.0, 1e9, &d, err) != 0)
            return err->code;
        c->rate_limit = d;
        return 0;
    }
    if (!strcmp(key, "rate_burst")) {
        if (parse_double(key, v, 1.0, 1e9, &d, err) != 0)
            return err->code;
        c->rate_burst = d;
        return 0;
    }
    static const struct {
        const char *name;
        long lo, hi;
        size_t off;
    } ints[] = {
        {"workers", 1, 64, offsetof(config, workers)},
        {"threads", 0, 1024, offsetof(config, threads)},
        {"max_queue", 1, 10000000, offsetof(config, max_queue)},
        {"store_busy_ms", 0, 600000, offsetof(config, store_busy_ms)},
        {"store_lease_ms", 1000, 3600000, offsetof(config, store_lease_ms)},
        {"long_poll_max", 1, 3600, offsetof(config, long_poll_max)},
        {"shutdown_grace", 0, 3600, offsetof(config, shutdown_grace)},
        {"max_connections", 8, 1000000, offsetof(config, max_connections)},
        {"max_connections_per_client", 1, 1000000,
         offsetof(config, max_connections_per_client)},
        {"connection_timeout", 1, 86400, offsetof(config, connection_timeout)},
        {"events_client_buffer", 4096, 1 << 30, offsetof(config, events_client_buffer)},
        {"events_progress_ms", 10, 60000, offsetof(config, events_progress_ms)},
        {"max_samples", 1, 10000000, offsetof(config, limits) + offsetof(api_limits, max_samples)},
        {"max_dim", 1, 1 << 24, offsetof(config, limits) + offsetof(api_limits, max_dim)},
        {"max_candidates", 1, 1024,
         offsetof(config, limits) + offsetof(api_limits, max_candidates)},
        {"max_steps", 1, 100000, offsetof(config, limits) + offsetof(api_limits, max_steps)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!strcmp(key, ints[i].name)) {
            if (parse_long(key, v, ints[i].lo, ints[i].hi, &l, err) != 0)
                return err->code;
            *(int *)((char *)c + ints[i].off) = (int)l;
            return 0;
        }
    return d2_fail(err, D2_EINVAL, "unknown setting '%s'", key_in);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* generator or generator-pending / generator_pending: one list */
static int is_generator_key(const char *key)
{
    char k[64];
    norm_key(key, k, sizeof k);
    return !strcmp(k, "generator") || !strcmp(k, "generator_pending");
}

int config_load_file(config *c, const char *path, d2_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return d2_fail(err, D2_EIO, "%s: cannot open: %s", path, strerror(errno));
    char line[2048];
    int lineno = 0, rc = 0, had_generators = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = d2_fail(err, D2_EFORMAT, "%s:%d: line too long", path, lineno);
            break;
        }
        /* '#' at the start or after a blank starts a comment */
        for (char *p = line; *p; p++)
            if (*p == '#' && (p == line || *(p - 1) == ' ' || *(p - 1) == '\t')) {
                *p = '\0';
                break;
            }
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = d2_fail(err, D2_EFORMAT, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (is_generator_key(key) && !had_generators) {
            c->ngenerators = 0; /* the file's list replaces earlier defaults */
            had_generators = 1;
        }
        if (config_set(c, key, val, err) != 0) {
            rc = d2_wrap(err, "%s:%d", path, lineno);
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = d2_fail(err, D2_EIO, "%s: read error", path);
    fclose(f);
    return rc;
}

int config_parse_args(config *c, int argc, char **argv, int *help, d2_error *err)
{
    *help = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
            !strcmp(argv[i], "--version")) {
            *help = !strcmp(argv[i], "--version") ? 2 : 1;
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc)
                return d2_fail(err, D2_EINVAL, "--config needs a value");
            if (config_load_file(c, argv[i + 1], err) != 0)
                return err->code;
        } else if (!strncmp(argv[i], "--config=", 9)) {
            if (config_load_file(c, argv[i] + 9, err) != 0)
                return err->code;
        }
    }
    int cli_generators = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2])
            return d2_fail(err, D2_EINVAL, "unexpected argument '%s'", a);
        char key[64];
        const char *val;
        const char *eq = strchr(a, '=');
        if (eq) {
            size_t n = (size_t)(eq - a - 2);
            if (n >= sizeof key)
                return d2_fail(err, D2_EINVAL, "unknown flag '%s'", a);
            memcpy(key, a + 2, n);
            key[n] = '\0';
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a + 2);
            if (i + 1 >= argc)
                return d2_fail(err, D2_EINVAL, "--%s needs a value", key);
            val = argv[++i];
        }
        if (!strcmp(key, "config"))
            continue;
        if (is_generator_key(key) && !cli_generators) {
            c->ngenerators = 0;
            cli_generators = 1;
        }
        if (config_set(c, key, val, err) != 0)
            return err->code;
    }
    return 0;
}

int config_validate(const config *c, d2_error *err)
{
    if (c->ngenerators == 0)
        return d2_fail(err, D2_EINVAL, "no generator: give --generator GEN.safetensors");
    for (int i = 0; i < c->ngenerators; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(c->generators[i].name, c->generators[j].name))
                return d2_fail(err, D2_EINVAL, "generator name '%s' given twice",
                               c->generators[i].name);
    char host[256];
    int port;
    if (config_parse_listen(c->listen, host, sizeof host, &port, err) != 0)
        return err->code;
    if (!c->data_dir[0])
        return d2_fail(err, D2_EINVAL, "data: empty directory");
    if (config_check_store(c, err) != 0)
        return err->code;
    if (c->limits.max_classes > D2_MAX_WAY)
        return d2_fail(err, D2_ERANGE, "max classes above %d", D2_MAX_WAY);
    return 0;
}

int config_parse_listen(const char *s, char *host, size_t host_len, int *port, d2_error *err)
{
    const char *port_s;
    host[0] = '\0';
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return d2_fail(err, D2_EINVAL, "listen: expected [ADDR]:PORT, got '%s'", s);
        size_t n = (size_t)(close - s - 1);
        if (n >= host_len)
            return d2_fail(err, D2_EINVAL, "listen: address too long");
        memcpy(host, s + 1, n);
        host[n] = '\0';
        port_s = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon) {
            size_t n = (size_t)(colon - s);
            if (n >= host_len)
                return d2_fail(err, D2_EINVAL, "listen: address too long");
            memcpy(host, s, n);
            host[n] = '\0';
            port_s = colon + 1;
        } else {
            port_s = s;
        }
    }
    long p;
    if (parse_long("listen port", port_s, 0, 65535, &p, err) != 0)
        return err->code;
    *port = (int)p;
    return 0;
}

void config_usage(FILE *out)
{
    fprintf(out,
            "usage: d2nwgd --generator GEN.safetensors [--generator NAME=GEN2 ...] [options]\n"
            "\n"
            "Serves D2NWG weight generation over HTTP (API: GET /v1/openapi.yaml).\n"
            "\n"
            "options (each also a `key = value` line of --config FILE, dashes or underscores):\n"
            "  --generator [NAME=]PATH  a generator bundle; the first unnamed one is 'default'\n"
            "  --generator-pending [NAME=]PATH\n"
            "                           a generator still being built: listed as 'loading' in\n"
            "                           GET /v1/generators (jobs naming it get 503 not_ready)\n"
            "                           until PATH appears and loads; the file is checked every\n"
            "                           second and loaded once unchanged for a second; one that\n"
            "                           does not load is 'failed', tried again when it changes.\n"
            "                           /readyz waits only for 'default' (else the first one)\n"
            "  --listen ADDR:PORT       default 127.0.0.1:8080 (port 0: any free port)\n"
            "  --data DIR               store and checkpoints (default var/d2nwgd)\n"
            "  --store TARGET           the store: an SQLite file (default DATA/d2nwgd.sqlite)\n"
            "                           or PostgreSQL, as postgres://USER@HOST:PORT/DB[?...]\n"
            "                           or 'host=H dbname=D user=U ...' (libpq).\n"
            "                           Never with a password in it: see the next flag\n"
            "  --store-password-file FILE\n"
            "                           PostgreSQL password: the file's first line (else\n"
            "                           libpq's PGPASSWORD, PGPASSFILE or ~/.pgpass)\n"
            "  --config FILE            settings file (flags override it)\n"
            "  --tokens FILE            bearer tokens: lines 'TOKEN metrics|read|write [NAME]'\n"
            "  --workers N              generation threads (default 1)\n"
            "  --threads N              backend threads per worker (default cores/workers)\n"
            "  --device DEV             cpu, cuda or cuda:N (default cpu)\n"
            "  --max-queue N            queued jobs before 503 (default 1024)\n"
            "  --body-limit SIZE        request body limit (default 64M)\n"
            "  --max-samples N          rows per data set (default 10000)\n"
            "  --max-candidates N       candidates per job (default 64)\n"
            "  --max-steps N            sampler steps per job (default 1000)\n"
            "  --rate-limit R           requests/s per token or client, 0 = off (default 0)\n"
            "  --rate-burst B           burst size (default max(1, 2R))\n"
            "  --long-poll-max S        longest ?wait= (default 60)\n"
            "  --shutdown-grace S       on SIGTERM, let running jobs finish for up to S\n"
            "                           seconds before re-queueing them (default 0)\n"
            "  --max-connections N      open connections in all (default 1024)\n"
            "  --max-connections-per-client N\n"
            "                           open connections per client address (default 128)\n"
            "  --connection-timeout S   close a connection idle this long; long-polls are\n"
            "                           not idle (default 60)\n"
            "  --events-client-buffer N bytes a GET /v1/events client may fall behind\n"
            "                           before it is dropped (default 1048576)\n"
            "  --events-progress-ms MS  check running jobs' progress this often; each 1%%\n"
            "                           moved is a `progress` event (default 500)\n"
            "  --port-file FILE         write the bound port here once listening\n"
            "  --log-level LEVEL        debug, info, warn, error (default info)\n"
            "  --sqlite-synchronous M   normal (default) or full\n"
            "  --store-busy-ms MS       how long a request's store write waits for a lock held\n"
            "                           elsewhere before it is answered 503 store_unavailable\n"
            "                           (default 1000)\n"
            "  --store-lease-ms MS      PostgreSQL: a replica holds a running job this long\n"
            "                           past its last renewal (every MS/4); a replica that\n"
            "                           dies loses its jobs to the others after it\n"
            "                           (default 10000)\n"
            "  --help, --version\n");
}

int config_backend_threads(const config *c)
{
    if (c->threads > 0)
        return c->threads;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(ncpu > 0 ? ncpu : 1) / (c->workers > 0 ? c->workers : 1);
    return t < 1 ? 1 : t;
}
