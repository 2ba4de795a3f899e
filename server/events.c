/* events.c - the server-sent events hub: a ring of recent frames and the
 * list of connected clients (each an http_stream). */
#include "events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct frame {
    int64_t id;
    char *text; /* "id: N\nevent: T\ndata: JSON\n\n" */
    size_t len;
} frame;

typedef struct client {
    events *ev; /* NULL once the hub is gone */
    http_stream *st;
    struct client *prev, *next;
} client;

struct events {
    events_options opt;
    frame *ring;     /* opt.ring slots; the newest at (head - 1) */
    int head, count;
    int64_t next_id;
    client *clients;
    int nclients;
    uint64_t dropped;
    int closed;
    uv_timer_t heartbeat;
};

static void unlink_client(client *c)
{
    events *ev = c->ev;
    if (c->prev)
        c->prev->next = c->next;
    else
        ev->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ev->nclients--;
    c->ev = NULL;
}

/* http_stream_closed_fn */
static void client_closed(void *ctx, http_stream *st)
{
    (void)st;
    client *c = ctx;
    if (c->ev)
        unlink_client(c);
    free(c);
}

/* Write to one client; one that fell behind is dropped (its stream closes). */
static void send_to(events *ev, client *c, const char *text, size_t len)
{
    int rc = http_stream_write(c->st, text, len);
    if (rc == D2_ERANGE || rc == D2_ENOMEM)
        ev->dropped++;
}

static void on_heartbeat(uv_timer_t *t)
{
    events *ev = t->data;
    static const char beat[] = ": heartbeat\n\n";
    for (client *c = ev->clients; c; c = c->next)
        send_to(ev, c, beat, sizeof beat - 1);
}

int events_create(events **out, uv_loop_t *loop, const events_options *opt, d2_error *err)
{
    events *ev = calloc(1, sizeof *ev);
    if (!ev)
        return d2_fail(err, D2_ENOMEM, "events: out of memory");
    ev->opt = *opt;
    if (ev->opt.ring < 1)
        ev->opt.ring = 1;
    ev->ring = calloc((size_t)ev->opt.ring, sizeof *ev->ring);
    if (!ev->ring) {
        free(ev);
        return d2_fail(err, D2_ENOMEM, "events: out of memory");
    }
    ev->next_id = opt->first_id > 0 ? opt->first_id : 1;
    uv_timer_init(loop, &ev->heartbeat); /* cannot fail */
    ev->heartbeat.data = ev;
    uv_timer_start(&ev->heartbeat, on_heartbeat, opt->heartbeat_ms, opt->heartbeat_ms);
    *out = ev;
    return 0;
}

static const frame *ring_at(const events *ev, int i) /* i = 0: the oldest */
{
    int start = (ev->head - ev->count + ev->opt.ring) % ev->opt.ring;
    return &ev->ring[(start + i) % ev->opt.ring];
}

static char *format_frame(int64_t id, const char *type, json_t *data, size_t *len)
{
    char *js = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!js)
        return NULL;
    size_t cap = strlen(js) + strlen(type) + 64;
    char *text = malloc(cap);
    if (text) {
        int n = snprintf(text, cap, "id: %" PRId64 "\nevent: %s\ndata: %s\n\n", id, type, js);
        *len = (size_t)n;
    }
    free(js);
    return text;
}

int64_t events_publish(events *ev, const char *type, json_t *data)
{
    size_t len = 0;
    int64_t id = ev->next_id;
    char *text = format_frame(id, type, data, &len);
    if (!text)
        return 0;
    ev->next_id++;
    frame *f = &ev->ring[ev->head];
    free(f->text); /* the oldest leaves when the ring is full */
    *f = (frame){id, text, len};
    ev->head = (ev->head + 1) % ev->opt.ring;
    if (ev->count < ev->opt.ring)
        ev->count++;
    for (client *c = ev->clients, *n; c; c = n) {
        n = c->next; /* a dropped client stays linked until its stream closes */
        send_to(ev, c, text, len);
    }
    return id;
}

/* The events after last_id, told first when some of them are gone. */
static void replay(events *ev, client *c, int64_t last_id)
{
    int64_t oldest = ev->count ? ring_at(ev, 0)->id : ev->next_id;
    int lost = last_id < oldest - 1 || last_id >= ev->next_id;
    if (lost) {
        size_t len = 0;
        char *text = format_frame(0, "events_lost", api_events_lost_to_json(last_id, oldest), &len);
        if (text) {
            /* no id line: the client's last id stays what it was */
            const char *body = strchr(text, '\n') + 1;
            send_to(ev, c, body, len - (size_t)(body - text));
        }
        free(text);
    }
    for (int i = 0; i < ev->count; i++) {
        const frame *f = ring_at(ev, i);
        if (lost || f->id > last_id)
            send_to(ev, c, f->text, f->len);
    }
}

int events_subscribe(events *ev, http_req *r, int64_t last_id)
{
    if (ev->closed)
        return D2_EINVAL;
    client *c = calloc(1, sizeof *c);
    if (!c)
        return D2_ENOMEM;
    int rc = http_stream_start(r, "text/event-stream", ev->opt.client_buffer, client_closed, c,
                               &c->st);
    if (rc != 0) {
        free(c);
        return rc;
    }
    c->ev = ev;
    c->next = ev->clients;
    if (c->next)
        c->next->prev = c;
    ev->clients = c;
    ev->nclients++;
    static const char hello[] = "retry: 2000\n\n";
    send_to(ev, c, hello, sizeof hello - 1);
    if (last_id >= 0)
        replay(ev, c, last_id);
    return 0;
}

int events_clients(const events *ev) { return ev->nclients; }
int64_t events_last_id(const events *ev) { return ev->next_id - 1; }
uint64_t events_dropped(const events *ev) { return ev->dropped; }

void events_close(events *ev)
{
    ev->closed = 1;
    uv_timer_stop(&ev->heartbeat);
    for (client *c = ev->clients; c; c = c->next)
        http_stream_end(c->st);
}

static void heartbeat_closed(uv_handle_t *h)
{
    events *ev = h->data;
    for (int i = 0; i < ev->opt.ring; i++)
        free(ev->ring[i].text);
    free(ev->ring);
    free(ev);
}

void events_destroy(events *ev)
{
    if (!ev)
        return;
    while (ev->clients)
        unlink_client(ev->clients); /* the streams outlive the hub: they forget it */
    uv_close((uv_handle_t *)&ev->heartbeat, heartbeat_closed);
}
