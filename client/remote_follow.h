/* remote_follow.h - `d2nwg jobs --follow`: GET /v1/events, each event
 * printed as it comes (one line; with --json the event as one JSON object a
 * line: {"id", "event", "data"}). When the stream ends or breaks (the daemon
 * restarted, or dropped a slow reader) it reconnects with Last-Event-ID, so
 * no event is missed while the daemon still holds it, and gives up after
 * the client's retry_for seconds without a connection. */
#ifndef D2_CLIENT_REMOTE_FOLLOW_H
#define D2_CLIENT_REMOTE_FOLLOW_H

#include <stdio.h>

#include "remote_http.h"

/* for_seconds > 0: stop after that long (EXIT_OK). Returns an EXIT_*. */
int remote_follow(remote_client *c, double for_seconds, int json, FILE *out);

#endif
