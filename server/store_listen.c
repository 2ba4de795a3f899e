/* store_listen.c - LISTEN d2nwg_jobs on a thread of its own (store_listen.h). */
#include "store_listen.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_conn.h"

typedef struct heard {
    char job_id[API_ID_LEN];
    char state[16];
    struct heard *next;
} heard;

struct store_listener {
    uv_async_t async;
    uv_thread_t thread;
    uv_mutex_t mu;
    heard *head, *tail; /* under mu */
    atomic_int stop;
    PGconn *conn;
    char conninfo[1100];
    char password[512];
    char self[128];
    store_listen_fn fn;
    void *ctx;
};

static void on_async(uv_async_t *a)
{
    store_listener *l = a->data;
    uv_mutex_lock(&l->mu);
    heard *list = l->head;
    l->head = l->tail = NULL;
    uv_mutex_unlock(&l->mu);
    while (list) {
        heard *h = list;
        list = h->next;
        l->fn(l->ctx, h->job_id, h->state);
        free(h);
    }
}

/* "JOB_ID STATE REPLICA": queued for the loop unless this replica made it. */
static int take(store_listener *l, const char *payload)
{
    char id[API_ID_LEN] = "", state[16] = "", origin[128] = "";
    if (sscanf(payload, "%79s %15s %127s", id, state, origin) < 2 || !strcmp(origin, l->self))
        return 0;
    heard *h = calloc(1, sizeof *h);
    if (!h)
        return 0; /* the fleet tick catches up */
    snprintf(h->job_id, sizeof h->job_id, "%s", id);
    snprintf(h->state, sizeof h->state, "%s", state);
    uv_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = h;
    else
        l->head = h;
    l->tail = h;
    uv_mutex_unlock(&l->mu);
    return 1;
}

/* Connected and listening; 0 when not (tried again a second later). */
static int listening(store_listener *l)
{
    if (l->conn && PQstatus(l->conn) == CONNECTION_OK)
        return 1;
    PQfinish(l->conn);
    l->conn = pg_connect(l->conninfo, l->password[0] ? l->password : NULL);
    PGresult *r = l->conn && PQstatus(l->conn) == CONNECTION_OK
                      ? PQexec(l->conn, "LISTEN d2nwg_jobs")
                      : NULL;
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

static void listen_main(void *arg)
{
    store_listener *l = arg;
    while (!atomic_load(&l->stop)) {
        if (!listening(l)) {
            for (int i = 0; i < 4 && !atomic_load(&l->stop); i++)
                uv_sleep(250);
            continue;
        }
        struct pollfd p = {.fd = PQsocket(l->conn), .events = POLLIN};
        if (poll(&p, 1, 250) <= 0)
            continue;
        if (!PQconsumeInput(l->conn))
            continue; /* lost: listening() opens it again */
        int any = 0;
        PGnotify *n;
        while ((n = PQnotifies(l->conn)) != NULL) {
            any |= take(l, n->extra);
            PQfreemem(n);
        }
        if (any)
            uv_async_send(&l->async);
    }
}

static void closed(uv_handle_t *h);

int store_listen_start(store_listener **out, uv_loop_t *loop, const store_conf *conf,
                       store_listen_fn fn, void *ctx, d2_error *err)
{
    *out = NULL;
    if (!store_is_postgres(conf->target))
        return 0;
    store_listener *l = calloc(1, sizeof *l);
    if (!l || uv_mutex_init(&l->mu) != 0) {
        free(l);
        return d2_fail(err, D2_ENOMEM, "store listener: out of memory");
    }
    snprintf(l->conninfo, sizeof l->conninfo, "%s", conf->target);
    snprintf(l->password, sizeof l->password, "%s", conf->password ? conf->password : "");
    snprintf(l->self, sizeof l->self, "%s", conf->owner ? conf->owner : "d2nwgd");
    l->fn = fn;
    l->ctx = ctx;
    atomic_init(&l->stop, 0);
    uv_async_init(loop, &l->async, on_async); /* cannot fail on a live loop */
    l->async.data = l;
    int rc = uv_thread_create(&l->thread, listen_main, l);
    if (rc != 0) {
        uv_close((uv_handle_t *)&l->async, closed);
        return d2_fail(err, D2_EIO, "store listener thread: %s", uv_strerror(rc));
    }
    *out = l;
    return 0;
}

static void closed(uv_handle_t *h)
{
    store_listener *l = h->data;
    while (l->head) {
        heard *x = l->head;
        l->head = x->next;
        free(x);
    }
    uv_mutex_destroy(&l->mu);
    free(l);
}

void store_listen_stop(store_listener *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, 1);
    uv_thread_join(&l->thread);
    PQfinish(l->conn);
    l->conn = NULL;
    uv_close((uv_handle_t *)&l->async, closed);
}
