/* remote_http.h - the HTTP layer of d2nwg's remote commands (libcurl): one
 * request at a time against a d2nwgd base URL, with bounded, visible retries.
 *
 * Retry policy (never silent: each retry prints one line on the client's log,
 * stderr by default, saying what failed and when the next try is):
 *   - a request is *replayable* when it is a GET, carries an Idempotency-Key
 *     (the daemon answers a repeat with the first job), or is marked so by
 *     the caller (a content-addressed upload: a repeat finds the same data);
 *   - replayable requests are retried on any transport failure (refused,
 *     reset, timed out, nothing received) and on 429 and 5xx answers;
 *   - other requests (POST without a key) are retried only when the daemon
 *     certainly did nothing: the connection was never made, or it answered
 *     429 or 503 (openapi.yaml: "A refused request stores nothing");
 *   - waits grow exponentially (0.25 s doubling to 8 s) with jitter from the
 *     client's own seeded generator; a Retry-After answer is honoured (never
 *     sooner than it asks); after retry_for seconds the last failure is
 *     returned. */
#ifndef D2_CLIENT_REMOTE_HTTP_H
#define D2_CLIENT_REMOTE_HTTP_H

#include <stddef.h>
#include <stdio.h>

#include "common.h"
#include "rng.h"

#define REMOTE_URL_LEN 1024
#define REMOTE_ERRBUF_LEN 256 /* libcurl's CURL_ERROR_SIZE */

typedef struct remote_client {
    char base[REMOTE_URL_LEN];      /* "http://127.0.0.1:8080" (no trailing '/') */
    char *auth_header;              /* "Authorization: Bearer ..." or NULL */
    const char *cmd;                /* "submit": log lines read "d2nwg submit: ..." */
    double retry_for;               /* seconds of retrying before giving up (0: no retry) */
    double connect_timeout;         /* seconds per connection attempt */
    rng jitter;                     /* seeded per client: no global state */
    FILE *log;                      /* retry lines; stderr */
    void *curl;                     /* CURL *, reused across requests (keep-alive) */
    char errbuf[REMOTE_ERRBUF_LEN]; /* libcurl's message for the last failure */
} remote_client;

typedef struct remote_request {
    const char *method;       /* "GET" or "POST" */
    const char *path;         /* "/v1/jobs?limit=5" (starts with '/') */
    const char *content_type; /* NULL: no Content-Type header */
    const void *body;         /* NULL: no body */
    size_t body_len;
    const char *idempotency_key; /* NULL: none */
    int replayable;              /* 1: safe to send again even without a key */
    double timeout;              /* seconds for one attempt, 0: no limit */
} remote_request;

typedef struct remote_response {
    long status;         /* HTTP status */
    unsigned char *body; /* owned, NUL-terminated (not counted in len) */
    size_t len;
    double retry_after;         /* Retry-After seconds, < 0 when absent */
    char checkpoint_sha256[65]; /* X-Checkpoint-Sha256, "" when absent */
    char request_id[72];        /* X-Request-Id */
    int replayed;               /* Idempotent-Replayed: true */
    int attempts;               /* tries it took (1 = no retry) */
    double elapsed;             /* seconds from the first try to this answer */
} remote_response;

/* base: "http://HOST:PORT[/prefix]" (http or https; a trailing '/' is
 * dropped). token may be NULL or "". The jitter generator is seeded from
 * /dev/urandom (time and pid when that fails). */
int remote_client_init(remote_client *c, const char *base, const char *token, double retry_for,
                       const char *cmd, d2_error *err);
void remote_client_free(remote_client *c);

/* Send the request, retrying as described above. Returns 0 when the daemon
 * answered (resp filled: any status, including a 5xx that outlasted the
 * retries) and D2_EIO when it could not be reached at all, with a message
 * such as "cannot reach http://127.0.0.1:8080: connection refused (5 tries
 * in 30.0 s)". resp is always safe to free. */
int remote_send(remote_client *c, const remote_request *req, remote_response *resp, d2_error *err);
void remote_response_free(remote_response *r);

/* Wait before retry number `attempt` (1 = the first retry): retry_after
 * seconds (< 0: none) stretched by up to 10% jitter, else 0.25 * 2^(attempt-1)
 * capped at 8 s, of which the upper half is jitter. Advances r. */
double remote_backoff_delay(int attempt, double retry_after, rng *r);

/* 1 when a request may be sent again after this outcome: transport is 0
 * when the daemon answered with `status`, 1 when the connection was never
 * established, 2 for a failure after the request may have been sent. */
int remote_should_retry(int replayable, int transport, long status);

/* Random lowercase hex (2 * nbytes characters + NUL) from /dev/urandom, for
 * Idempotency-Keys. */
int remote_random_hex(char *out, size_t nbytes, d2_error *err);

#endif
