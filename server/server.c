/* server.c - start-up, signals, generator loading, drain and teardown. */
#include "fileio.h"
#include "server.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "feed.h"
#include "fleet.h"
#include "jobs.h"
#include "routes.h"
#include "safetensors.h"
#include "storeq.h"
#include "sweep.h"

#define IDEMPOTENCY_TTL_MS (24LL * 3600 * 1000)

void server_log(server *s, int level, const char *msg, json_t *fields)
{
    log_emit(&s->log, level, msg, fields);
}

static int mkdir_p(const char *path, d2_error *err)
{
    char buf[CONFIG_PATH_LEN + 32];
    api_snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return d2_fail(err, D2_EIO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return d2_fail(err, D2_EIO, "mkdir %s: %s", buf, strerror(errno));
    return 0;
}

/* ---- generator loading (libuv's pool: file work, off the loop) ---- */

static void load_work(uv_work_t *req)
{
    server *s = req->data;
    d2_error_clear(&s->load_err);
    s->load_rc = gens_load_initial(&s->gens, s->cfg, &s->load_be, s->loaded, &s->load_err);
}

/* Store rows and log lines for generators just installed, written on the
 * store thread (tried again while the store is locked); then `then`. */
typedef struct register_op {
    storeq_op sq;
    server *s;
    int n, index[CONFIG_MAX_GENERATORS];
    void (*then)(server *s, int index);
    int then_index;
} register_op;

static int register_work(store *db, void *ctx, d2_error *err)
{
    register_op *c = ctx;
    for (int k = 0; k < c->n; k++) {
        const gen_entry *e = &c->s->gens.e[c->index[k]];
        if (store_generator_upsert(db, e->name, e->path, e->info, e->loaded_ms, err) != 0)
            return err->code ? err->code : D2_EIO;
    }
    return 0;
}

static void log_generator(server *s, int i)
{
    const gen_entry *e = &s->gens.e[i];
    server_log(s, LOG_INFO, "generator loaded",
               json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i}", "name", e->name, "id",
                         e->info->id, "path", e->path, "spec",
                         e->info->spec ? e->info->spec->text : "", "input_dim",
                         e->info->input_dim, "feature_dim", e->info->feature_dim, "max_way",
                         e->info->max_way));
    feed_generator_loaded(s, i); /* the event for dashboards, at start-up or joining later */
}

static void register_done(storeq_op *sq)
{
    register_op *c = (register_op *)sq;
    server *s = c->s;
    if (sq->busy && !s->draining) {
        server_log(s, LOG_WARN, "registering generators: the store is locked; trying again",
                   json_pack("{s:s}", "error", sq->err.msg));
        storeq_submit_after(s->storeq, sq, 1000);
        return;
    }
    if (sq->rc != 0 && sq->rc != D2_ECANCELLED)
        server_fatal(s, "registering generators failed", sq->err.msg);
    else if (sq->rc == 0 && !s->draining) {
        for (int k = 0; k < c->n; k++)
            log_generator(s, c->index[k]);
        c->then(s, c->then_index);
    }
    free(c);
}

static void register_generators(server *s, const int *index, int n,
                                void (*then)(server *s, int index), int then_index)
{
    register_op *c = calloc(1, sizeof *c);
    if (!c) {
        server_fatal(s, "registering generators failed", "out of memory");
        return;
    }
    c->s = s;
    c->n = n;
    memcpy(c->index, index, (size_t)n * sizeof *index);
    c->then = then;
    c->then_index = then_index;
    storeq_submit(s->storeq, &c->sq, STOREQ_WRITE, register_work, register_done, c);
}

/* Ready once the workers are up and the default generator is loaded. */
static void update_ready(server *s)
{
    int d = gens_default(&s->gens);
    if (s->ready || !s->workers_up || s->draining || d < 0 || s->gens.e[d].state != GEN_READY)
        return;
    s->ready = 1;
    server_log(s, LOG_INFO, "ready",
               json_pack("{s:i, s:i, s:i, s:s, s:i}", "generators", gens_ready_count(&s->gens),
                         "generators_loading", s->gens.n - gens_ready_count(&s->gens),
                         "workers", s->cfg->workers, "device", s->cfg->device, "pending",
                         jobs_pending(s->jobs)));
}

static void start_workers(server *s, int unused)
{
    (void)unused;
    d2_error err;
    d2_error_clear(&err);
    if (jobs_start_workers(s->jobs, &err) != 0)
        server_fatal(s, "starting workers failed", err.msg);
}

static void load_done(uv_work_t *req, int status)
{
    server *s = req->data;
    if (status != 0 || s->load_rc != 0) {
        server_fatal(s, "loading generators failed",
                     status != 0 ? "cancelled" : s->load_err.msg);
        return;
    }
    s->gens.be = s->load_be;
    s->load_be = NULL;
    for (int i = 0; i < s->gens.n; i++)
        if (s->loaded[i])
            gens_install(&s->gens, i, s->loaded[i]);
    memset(s->loaded, 0, sizeof s->loaded);
    if (s->draining)
        return;
    int index[CONFIG_MAX_GENERATORS], n = 0;
    for (int i = 0; i < s->gens.n; i++)
        if (s->gens.e[i].state == GEN_READY)
            index[n++] = i;
    register_generators(s, index, n, start_workers, -1);
}

static void on_workers_ready(void *user)
{
    server *s = user;
    if (s->draining)
        return;
    d2_error err;
    d2_error_clear(&err);
    if (jobs_restore(s->jobs, -1, &err) != 0)
        server_fatal(s, "restoring queued jobs failed", err.msg);
}

/* jobs_restore finished: at start-up the daemon may now be ready; a joined
 * generator's jobs are queued. */
static void on_restored(void *user, int only, int rc, const char *message)
{
    server *s = user;
    if (rc != 0) {
        server_fatal(s, "restoring queued jobs failed", message);
        return;
    }
    if (s->draining)
        return;
    if (only == -1) {
        s->workers_up = 1;
        gens_watch_start(&s->watch); /* after the workers read the entries at start */
        fleet_start(s);
    }
    update_ready(s);
}

/* A joined generator is in the store: restore its queued jobs. */
static void joined(server *s, int i)
{
    d2_error err;
    d2_error_clear(&err);
    if (!s->workers_up)
        update_ready(s);
    else if (jobs_restore(s->jobs, i, &err) != 0)
        server_fatal(s, "restoring queued jobs failed", err.msg);
}

/* A --generator-pending generator started loading, joined or failed. A
 * joined one is registered in the store, the queued jobs that name it are
 * restored, and the daemon may become ready (a pending default). */
static void on_watch_event(void *user, int kind, int i, const char *message)
{
    server *s = user;
    const gen_entry *e = &s->gens.e[i];
    if (kind == GENS_WATCH_LOADING) {
        server_log(s, LOG_INFO, "generator file appeared; loading",
                   json_pack("{s:s, s:s}", "name", e->name, "path", e->path));
        return;
    }
    if (kind == GENS_WATCH_FAILED) {
        server_log(s, LOG_WARN, "generator failed to load; tried again when its file changes",
                   json_pack("{s:s, s:s, s:s}", "name", e->name, "path", e->path, "error",
                             message ? message : ""));
        return;
    }
    if (!s->draining)
        register_generators(s, &i, 1, joined, i);
}

/* ---- drain and teardown ---- */

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_all(server *s)
{
    http_stop(s->http);
    s->http = NULL;
    storeq_stop(s->storeq); /* its last completions may still touch the jobs */
    s->storeq = NULL;
    feed_destroy(s); /* after http_stop: no stream is open */
    jobs_destroy(s->jobs);
    s->jobs = NULL;
    uv_close((uv_handle_t *)&s->sig_term, handle_closed);
    uv_close((uv_handle_t *)&s->sig_int, handle_closed);
    uv_close((uv_handle_t *)&s->housekeeping, handle_closed);
    uv_close((uv_handle_t *)&s->closer, handle_closed);
    fleet_close(s, handle_closed);
    gens_watch_close(&s->watch, handle_closed);
}

static void on_closer(uv_timer_t *t)
{
    server *s = t->data;
    int active = s->http ? http_active_requests(s->http) : 0;
    if (active > 0 && d2_now() - s->close_started < 5.0)
        return; /* requests still being answered */
    uv_timer_stop(t);
    server_log(s, LOG_INFO, "stopped",
               json_pack("{s:i, s:i}", "exit_code", s->exit_code, "unfinished_requests", active));
    close_all(s);
}

static void on_drained(void *user)
{
    server *s = user;
    if (s->close_started > 0)
        return;
    s->ready = 0;
    feed_close(s); /* event streams end: the drain is over */
    if (s->http)
        http_resume_all(s->http);
    s->close_started = d2_now();
    uv_timer_start(&s->closer, on_closer, 0, 20);
}

static void start_drain(server *s, const char *why)
{
    if (s->draining) {
        server_log(s, LOG_INFO, "second stop request: stopping running jobs now", NULL);
        if (s->jobs)
            jobs_drain_now(s->jobs);
        return;
    }
    s->draining = 1;
    fleet_stop(s);
    gens_watch_close(&s->watch, handle_closed); /* no new generator while draining */
    server_log(s, LOG_INFO, "draining",
               json_pack("{s:s, s:i, s:i, s:i}", "reason", why, "running",
                         s->jobs ? jobs_running(s->jobs) : 0, "pending",
                         s->jobs ? jobs_pending(s->jobs) : 0, "grace_seconds",
                         s->cfg->shutdown_grace));
    if (s->http)
        http_quiesce(s->http);
    if (s->jobs)
        jobs_drain(s->jobs, s->exit_code ? 0 : s->cfg->shutdown_grace);
    else
        on_drained(s);
}

void server_fatal(server *s, const char *what, const char *message)
{
    server_log(s, LOG_ERROR, what, json_pack("{s:s}", "error", message ? message : ""));
    s->exit_code = 1;
    start_drain(s, what);
}

static void on_fatal(void *user, const char *what, const char *message)
{
    server_fatal(user, what, message);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    start_drain(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

typedef struct expire_op {
    storeq_op sq;
    server *s;
    int n;
} expire_op;

static int expire_work(store *db, void *ctx, d2_error *err)
{
    expire_op *c = ctx;
    return store_idem_expire(db, api_now_ms() - IDEMPOTENCY_TTL_MS, &c->n, err);
}

static void expire_done(storeq_op *sq)
{
    expire_op *c = (expire_op *)sq;
    if (sq->rc != 0 && sq->rc != D2_ECANCELLED) /* a lock: the next hour tries again */
        server_log(c->s, LOG_WARN, "expiring idempotency keys failed",
                   json_pack("{s:s}", "error", sq->err.msg));
    else if (c->n > 0)
        server_log(c->s, LOG_INFO, "idempotency keys expired", json_pack("{s:i}", "count", c->n));
    free(c);
}

static void on_housekeeping(uv_timer_t *t)
{
    server *s = t->data;
    expire_op *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    storeq_submit(s->storeq, &c->sq, STOREQ_WRITE, expire_work, expire_done, c);
}

/* ---- start ---- */

/* Before the loop serves: migrate, requeue what a crash left running, sweep
 * pack files no stored checkpoint names (a crash between a pack and its
 * rows), on a connection of this thread closed afterwards; then the store
 * threads, which do all store work from here on. */
static int open_store(server *s, d2_error *err)
{
    const config *cfg = s->cfg;
    store *db = NULL;
    int version = 0, requeued = 0, swept = 0;
    store_conf conf = {s->db_path, s->store_password[0] ? s->store_password : NULL,
                       cfg->sqlite_sync_full, s->replica, cfg->store_lease_ms};
    int rc = store_open_conf(&db, &conf, err);
    if (rc == 0)
        rc = store_migrate(db, &version, err);
    if (rc == 0)
        rc = store_jobs_requeue_running(db, &requeued, err);
    if (rc == 0)
        rc = sweep_orphans(db, s->checkpoint_dir, &swept, err);
    store_close(db);
    if (rc == 0)
        rc = storeq_start(&s->storeq, s->loop, &conf, cfg->store_busy_ms, err);
    if (rc != 0)
        return rc;
    s->store_ok = 1;
    server_log(s, LOG_INFO, "store open",
               json_pack("{s:s, s:i, s:i, s:i, s:i}", "path", s->db_path, "schema_version",
                         version, "requeued_running_jobs", requeued, "orphan_files_removed",
                         swept, "busy_timeout_ms", cfg->store_busy_ms));
    return 0;
}

/* HOST:DATA/PID/START_MS: this process among the replicas of one database.
 * HOST:DATA (DATA: a hash of the --data folder) stays the same across
 * restarts, so a restarted replica takes back at once the jobs its previous
 * process was running (store_jobs_requeue_running). */
static void replica_name(const char *data_dir, char *out, size_t cap)
{
    char host[64] = "d2nwgd";
    if (gethostname(host, sizeof host) != 0)
        api_snprintf(host, sizeof host, "d2nwgd");
    host[sizeof host - 1] = '\0';
    char abs[PATH_MAX];
    const char *p = realpath(data_dir, abs) ? abs : data_dir;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    api_snprintf(out, cap, "%s:%016llx/%ld/%lld", host, (unsigned long long)h, (long)getpid(),
                 (long long)api_now_ms());
}

static int start(server *s, d2_error *err)
{
    const config *cfg = s->cfg;
    if (config_store_target(cfg, s->db_path, sizeof s->db_path, s->store_password,
                            sizeof s->store_password, err) != 0)
        return err->code;
    api_snprintf(s->checkpoint_dir, sizeof s->checkpoint_dir, "%s/checkpoints", cfg->data_dir);
    if (mkdir_p(cfg->data_dir, err) != 0 || mkdir_p(s->checkpoint_dir, err) != 0)
        return err->code;
    replica_name(cfg->data_dir, s->replica, sizeof s->replica);
    if (open_store(s, err) != 0)
        return err->code ? err->code : D2_EIO;
    auth_init(&s->auth, cfg->rate_limit, cfg->rate_burst);
    if (cfg->tokens_path[0]) {
        if (auth_load(&s->auth, cfg->tokens_path, err) != 0)
            return err->code;
        server_log(s, LOG_INFO, "tokens loaded", json_pack("{s:i}", "count", s->auth.ntokens));
    }
    const char *names[METRICS_MAX_ROUTES];
    int nroutes = ROUTE_COUNT < METRICS_MAX_ROUTES ? ROUTE_COUNT : METRICS_MAX_ROUTES;
    for (int i = 0; i < nroutes; i++)
        names[i] = ROUTES[i].tmpl;
    metrics_init(&s->metrics, names, nroutes);
    if (feed_start(s, err) != 0)
        return err->code;
    jobs_owner owner = {on_workers_ready, on_fatal, on_drained, feed_job_changed, on_restored,
                        s};
    if (jobs_create(&s->jobs, s, &owner, err) != 0)
        return err->code;
    char host[256];
    http_options ho;
    memset(&ho, 0, sizeof ho);
    if (config_parse_listen(cfg->listen, host, sizeof host, &ho.port, err) != 0)
        return err->code;
    ho.host = host;
    ho.body_limit = cfg->body_limit;
    ho.max_connections = (unsigned)cfg->max_connections;
    ho.max_connections_per_client = (unsigned)cfg->max_connections_per_client;
    ho.connection_timeout = (unsigned)cfg->connection_timeout;
    if (http_start(&s->http, s->loop, &ho, &ROUTES_HTTP, s, err) != 0)
        return err->code;
    int port = http_port(s->http);
    server_log(s, LOG_INFO, "listening",
               json_pack("{s:s, s:i, s:s}", "listen", cfg->listen, "port", port, "version",
                         D2_VERSION));
    if (cfg->port_file[0]) {
        char buf[16];
        int n = snprintf(buf, sizeof buf, "%d\n", port);
        if (d2_write_file_atomic(cfg->port_file, buf, (size_t)n, err) != 0)
            return err->code;
    }
    uv_signal_init(s->loop, &s->sig_term);
    uv_signal_init(s->loop, &s->sig_int);
    s->sig_term.data = s->sig_int.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    s->housekeeping.data = s;
    uv_timer_start(&s->housekeeping, on_housekeeping, 0, 3600 * 1000);
    s->load_req.data = s;
    int rc = uv_queue_work(s->loop, &s->load_req, load_work, load_done);
    if (rc != 0)
        return d2_fail(err, D2_EIO, "cannot start loading generators: %s", uv_strerror(rc));
    return 0;
}

int server_run(const config *cfg)
{
    server *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "d2nwgd: out of memory\n");
        return 1;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        free(s);
        fprintf(stderr, "d2nwgd: cannot create the event loop\n");
        return 1;
    }
    s->loop = &loop;
    s->cfg = cfg;
    log_init(&s->log, cfg->log_level, 2);
    s->start_ms = api_now_ms();
    s->start_mono = d2_now();
    uv_timer_init(&loop, &s->housekeeping);
    uv_timer_init(&loop, &s->closer);
    uv_timer_init(&loop, &s->fleet);
    uv_timer_init(&loop, &s->progress);
    s->closer.data = s;
    gens_watch_owner wo = {on_watch_event, s};
    gens_watch_init(&s->watch, &loop, &s->gens, &wo);
    gens_init(&s->gens, cfg);
    d2_error err;
    d2_error_clear(&err);
    if (start(s, &err) != 0) {
        server_log(s, LOG_ERROR, "start-up failed", json_pack("{s:s}", "error", err.msg));
        s->exit_code = 1;
        /* close whatever started, then let the loop finish closing it */
        if (s->http) {
            http_stop(s->http);
            s->http = NULL;
        }
        feed_destroy(s);
        storeq_stop(s->storeq);
        s->storeq = NULL;
        if (s->jobs) {
            jobs_destroy(s->jobs);
            s->jobs = NULL;
        }
        if (s->sig_term.loop) {
            uv_close((uv_handle_t *)&s->sig_term, handle_closed);
            uv_close((uv_handle_t *)&s->sig_int, handle_closed);
        }
        uv_close((uv_handle_t *)&s->housekeeping, handle_closed);
        uv_close((uv_handle_t *)&s->closer, handle_closed);
        fleet_close(s, handle_closed);
        gens_watch_close(&s->watch, handle_closed);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    gens_free(&s->gens);
    auth_free(&s->auth);
    int rc = uv_loop_close(&loop);
    if (rc != 0)
        server_log(s, LOG_WARN, "event loop closed with handles open",
                   json_pack("{s:s}", "error", uv_strerror(rc)));
    int code = s->exit_code;
    free(s);
    return code;
}
