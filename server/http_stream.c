/* http_stream.c - streaming responses: MHD pulls the body through a content
 * reader; with nothing buffered the reader suspends the connection (returning
 * 0 without a suspension would make MHD call it again at once), and a write
 * resumes it. */
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"

struct http_stream {
    http *h;
    struct MHD_Connection *conn;
    char *buf;
    size_t off, len, cap, max;
    int suspended; /* the reader suspended the connection */
    int ended;     /* end once the buffer is sent */
    int dropped;   /* fell behind: close now */
    http_stream_closed_fn on_closed;
    void *ctx;
    http_stream *prev, *next;
};

/* New bytes (or an end): resume a suspended stream, and run MHD soon either
 * way (a resume MHD has not processed yet needs a run too). */
static void wake(http_stream *st)
{
    if (st->suspended) {
        st->suspended = 0;
        MHD_resume_connection(st->conn);
    }
    http_kick(st->h);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    http_stream *st = cls;
    if (st->dropped)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (st->len > st->off) {
        size_t n = st->len - st->off < max ? st->len - st->off : max;
        memcpy(out, st->buf + st->off, n);
        st->off += n;
        if (st->off == st->len)
            st->off = st->len = 0;
        return (ssize_t)n;
    }
    if (st->ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    st->suspended = 1;
    MHD_suspend_connection(st->conn);
    return 0;
}

/* MHD destroyed the response: the connection is done with it. */
static void stream_free(void *cls)
{
    http_stream *st = cls;
    http *h = st->h;
    if (st->prev)
        st->prev->next = st->next;
    else if (h->streams == st)
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (st->on_closed)
        st->on_closed(st->ctx, st);
    free(st->buf);
    free(st);
}

int http_stream_start(http_req *r, const char *content_type, size_t max_buffer,
                      http_stream_closed_fn on_closed, void *ctx, http_stream **out)
{
    http_stream *st = calloc(1, sizeof *st);
    if (!st)
        return D2_ENOMEM;
    st->h = r->h;
    st->conn = r->conn;
    st->max = max_buffer;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        free(st);
        return D2_ENOMEM;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* nginx: do not buffer */
    /* linked before the send: a refused response is freed (and unlinked) in it */
    st->next = r->h->streams;
    if (st->next)
        st->next->prev = st;
    r->h->streams = st;
    int rc = http_send(r, 200, resp); /* on success MHD holds the response */
    if (rc != 0)
        return rc; /* st was freed with the response */
    st->on_closed = on_closed;
    st->ctx = ctx;
    *out = st;
    return 0;
}

int http_stream_write(http_stream *st, const char *data, size_t n)
{
    if (st->ended || st->dropped)
        return D2_EINVAL;
    if (st->len - st->off + n > st->max) {
        st->dropped = 1;
        wake(st);
        return D2_ERANGE;
    }
    if (st->off > 0 && st->len + n > st->cap) {
        memmove(st->buf, st->buf + st->off, st->len - st->off);
        st->len -= st->off;
        st->off = 0;
    }
    if (st->len + n > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->len + n)
            cap *= 2;
        char *b = realloc(st->buf, cap);
        if (!b) {
            st->dropped = 1;
            wake(st);
            return D2_ENOMEM;
        }
        st->buf = b;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, data, n);
    st->len += n;
    wake(st);
    return 0;
}

void http_stream_end(http_stream *st)
{
    st->ended = 1;
    wake(st);
}

size_t http_stream_pending(const http_stream *st)
{
    return st->len - st->off;
}

void http_stream_end_all(http *h)
{
    for (http_stream *st = h->streams; st; st = st->next)
        http_stream_end(st);
}
