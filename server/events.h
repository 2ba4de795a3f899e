/* events.h - GET /v1/events: server-sent events to any number of clients.
 * Each published event gets the next id (ids increase, also across restarts:
 * the first is the start time in milliseconds times 1000) and is kept in a
 * ring of the most recent ones, so a client that reconnects with
 * Last-Event-ID gets what it missed; when the id it asks for has left the
 * ring (or is unknown) it is told so with an `events_lost` event first. Every
 * client has a bounded buffer (http_stream): one that falls behind is
 * dropped, the loop never waits. A comment line every 15 s keeps idle
 * connections (and proxies) alive. Loop thread only. */
#ifndef D2_SERVER_EVENTS_H
#define D2_SERVER_EVENTS_H

#include <stdint.h>
#include <uv.h>

#include "http.h"

typedef struct events events;

typedef struct events_options {
    int ring;                 /* events kept for resuming */
    size_t client_buffer;     /* bytes a client may fall behind before it is dropped */
    unsigned heartbeat_ms;    /* comment line interval */
    int64_t first_id;         /* id of the first event */
} events_options;

#define EVENTS_RING 1024
#define EVENTS_HEARTBEAT_MS 15000u

int events_create(events **out, uv_loop_t *loop, const events_options *opt, d2_error *err);
/* Send an event (`data` stolen; compact JSON on one line) to every client and
 * keep it in the ring. Returns its id, or 0 when it could not be built. */
int64_t events_publish(events *ev, const char *type, json_t *data);
/* Answer r with the stream. last_id < 0: only new events; else the ring's
 * events after last_id (with `events_lost` first when some are gone).
 * Returns 0, or negative when no stream could be started (the caller answers). */
int events_subscribe(events *ev, http_req *r, int64_t last_id);
int events_clients(const events *ev);
int64_t events_last_id(const events *ev);
/* Clients dropped for falling behind, since start. */
uint64_t events_dropped(const events *ev);
/* End every stream (the daemon is stopping); later subscribers get none. */
void events_close(events *ev);
/* Free (after the HTTP layer stopped: no stream is open). */
void events_destroy(events *ev);

#endif
