/* http_internal.h - the HTTP layer's state, shared by http.c and
 * http_stream.c only (the owner sees http.h). */
#ifndef D2_SERVER_HTTP_INTERNAL_H
#define D2_SERVER_HTTP_INTERNAL_H

#include "http.h"

struct http {
    http_callbacks cb;
    void *user;
    size_t body_limit;
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    int listen_fd;
    int port;
    int quiesced;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;
    int kicked; /* http_kick since the last MHD_run began */
    http_req *suspended;
    int nsuspended;
    int active; /* requests between first call and completion */
    unsigned long long next_id;
    char id_prefix[12];
    http_stream *streams; /* open streaming responses (http_stream.c) */
};

/* Run MHD on the next loop iteration (after a resume from outside MHD_run). */
void http_kick(http *h);
/* End every open stream (shutdown): each sends what it holds, then ends. */
void http_stream_end_all(http *h);

#endif
