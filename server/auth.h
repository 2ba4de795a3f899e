/* auth.h - bearer tokens with scopes (--tokens FILE) and per-principal rate
 * limiting (token buckets). Owned by the loop thread; no locks.
 *
 * Tokens file: one `TOKEN SCOPE [NAME]` per line, `#` comments; SCOPE is
 * `metrics`, `read` or `write` (each includes the ones before it); NAME (default "token<line>") is
 * the principal that logs, idempotency keys and rate buckets use - the token
 * itself is never logged. Tokens are 8..256 printable characters. */
#ifndef D2_SERVER_AUTH_H
#define D2_SERVER_AUTH_H

#include "common.h"

/* Scopes are ordered: a token passes a check for its own scope and the ones
 * below it. `metrics` only reads /metrics (a scraper's token: it cannot read
 * jobs or data sets); `read` adds every GET route; `write` adds POST. */
enum { AUTH_SCOPE_NONE = 0, AUTH_SCOPE_METRICS = 1, AUTH_SCOPE_READ = 2, AUTH_SCOPE_WRITE = 3 };

/* "metrics", "read", "write" (or "none"). */
const char *auth_scope_name(int scope);

typedef struct auth_token {
    char *token;
    int scope;
    char name[64];
} auth_token;

typedef struct auth_bucket {
    char key[64];
    double tokens, last;
    struct auth_bucket *next;
} auth_bucket;

#define AUTH_BUCKET_SLOTS 256
#define AUTH_BUCKET_MAX 4096 /* more distinct principals: the table is reset */

typedef struct auth {
    int enabled; /* a tokens file was given */
    int ntokens;
    auth_token *tokens;
    double rate, burst; /* rate 0 = unlimited */
    auth_bucket *slots[AUTH_BUCKET_SLOTS];
    int nbuckets;
} auth;

void auth_init(auth *a, double rate, double burst);
int auth_load(auth *a, const char *path, d2_error *err);
void auth_free(auth *a);

/* Check an Authorization header value (may be NULL) for a route needing
 * `need` (AUTH_SCOPE_*; NONE = open). Returns 0 (allowed; *principal set,
 * "anonymous" without tokens), 401 or 403. */
int auth_check(const auth *a, const char *authorization, int need, const char **principal);

/* Take one request from `key`'s bucket at time `now` (seconds). Returns 1 if
 * allowed, 0 if limited (*retry_after = seconds until one is available). */
int auth_rate_take(auth *a, const char *key, double now, double *retry_after);

#endif
