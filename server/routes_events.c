/* routes_events.c - GET /v1/events (server-sent events; events.h). */
#include <errno.h>
#include <stdlib.h>

#include "events.h"
#include "routes.h"

/* A non-negative decimal event id; 1 on success. */
static int parse_id(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0)
        return 0;
    *out = (int64_t)x;
    return 1;
}

int route_events(server *s, http_req *r)
{
    if (s->draining || !s->events)
        return http_errorf(r, 503, "shutting_down", NULL, 5, "the daemon is shutting down");
    int64_t last = -1;
    const char *h = http_header(r, "Last-Event-ID");
    const char *q = http_query(r, "last_event_id");
    if (h && *h && !parse_id(h, &last))
        return http_errorf(r, 400, "invalid_argument", "header.Last-Event-ID", 0,
                           "expected an event id (a non-negative integer), got '%.40s'", h);
    if (last < 0 && q && !parse_id(q, &last))
        return http_errorf(r, 400, "invalid_argument", "last_event_id", 0,
                           "expected an event id (a non-negative integer), got '%.40s'", q);
    int rc = events_subscribe(s->events, r, last);
    if (rc == D2_EINVAL)
        return http_errorf(r, 503, "shutting_down", NULL, 5, "the daemon is shutting down");
    if (rc != 0)
        return http_errorf(r, 500, "internal", NULL, 0, "cannot start the event stream");
    return 0;
}
