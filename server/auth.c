/* auth.c - bearer tokens and token buckets. */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *auth_scope_name(int scope)
{
    switch (scope) {
    case AUTH_SCOPE_METRICS:
        return "metrics";
    case AUTH_SCOPE_READ:
        return "read";
    case AUTH_SCOPE_WRITE:
        return "write";
    default:
        return "none";
    }
}

void auth_init(auth *a, double rate, double burst)
{
    memset(a, 0, sizeof *a);
    a->rate = rate;
    a->burst = burst > 0 ? burst : (2.0 * rate > 1.0 ? 2.0 * rate : 1.0);
}

static void buckets_clear(auth *a)
{
    for (int i = 0; i < AUTH_BUCKET_SLOTS; i++) {
        auth_bucket *b = a->slots[i];
        while (b) {
            auth_bucket *n = b->next;
            free(b);
            b = n;
        }
        a->slots[i] = NULL;
    }
    a->nbuckets = 0;
}

void auth_free(auth *a)
{
    for (int i = 0; i < a->ntokens; i++)
        free(a->tokens[i].token);
    free(a->tokens);
    a->tokens = NULL;
    a->ntokens = 0;
    buckets_clear(a);
}

static int add_token(auth *a, const char *tok, int scope, const char *name, d2_error *err)
{
    auth_token *t = realloc(a->tokens, (size_t)(a->ntokens + 1) * sizeof *t);
    if (!t)
        return d2_fail(err, D2_ENOMEM, "tokens: out of memory");
    a->tokens = t;
    t = &a->tokens[a->ntokens];
    t->token = strdup(tok);
    if (!t->token)
        return d2_fail(err, D2_ENOMEM, "tokens: out of memory");
    t->scope = scope;
    size_t nl = strlen(name);
    if (nl >= sizeof t->name)
        nl = sizeof t->name - 1;
    memcpy(t->name, name, nl);
    t->name[nl] = '\0';
    a->ntokens++;
    return 0;
}

int auth_load(auth *a, const char *path, d2_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return d2_fail(err, D2_EIO, "%s: cannot open: %s", path, strerror(errno));
    char line[1024];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char tok[300], scope[32], name[128], extra[8];
        int n = sscanf(line, "%299s %31s %127s %7s", tok, scope, name, extra);
        if (n <= 0)
            continue;
        if (n < 2 || n > 3) {
            rc = d2_fail(err, D2_EFORMAT, "%s:%d: expected 'TOKEN metrics|read|write [NAME]'",
                         path, lineno);
            break;
        }
        size_t tl = strlen(tok);
        if (tl < 8 || tl > 256) {
            rc = d2_fail(err, D2_EFORMAT, "%s:%d: token must have 8..256 characters", path,
                         lineno);
            break;
        }
        int sc;
        if (!strcmp(scope, "metrics"))
            sc = AUTH_SCOPE_METRICS;
        else if (!strcmp(scope, "read"))
            sc = AUTH_SCOPE_READ;
        else if (!strcmp(scope, "write"))
            sc = AUTH_SCOPE_WRITE;
        else {
            rc = d2_fail(err, D2_EFORMAT, "%s:%d: scope '%s': expected metrics, read or write",
                         path, lineno, scope);
            break;
        }
        char defname[32];
        snprintf(defname, sizeof defname, "token%d", lineno);
        const char *nm = n == 3 ? name : defname;
        if (strlen(nm) >= 64) {
            rc = d2_fail(err, D2_EFORMAT, "%s:%d: name longer than 63 characters", path, lineno);
            break;
        }
        for (int i = 0; i < a->ntokens; i++)
            if (!strcmp(a->tokens[i].token, tok)) {
                rc = d2_fail(err, D2_EFORMAT, "%s:%d: token repeated (first on an earlier line)",
                             path, lineno);
                break;
            }
        if (rc == 0)
            rc = add_token(a, tok, sc, nm, err);
    }
    if (rc == 0 && ferror(f))
        rc = d2_fail(err, D2_EIO, "%s: read error", path);
    fclose(f);
    if (rc == 0 && a->ntokens == 0)
        rc = d2_fail(err, D2_EFORMAT, "%s: no tokens", path);
    if (rc == 0)
        a->enabled = 1;
    return rc;
}

/* Constant-time comparison of equal-length prefixes; lengths compared last. */
static int token_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)(a[i < alen ? i : 0] ^ b[i]);
    return diff == 0;
}

int auth_check(const auth *a, const char *authorization, int need, const char **principal)
{
    *principal = "anonymous";
    if (!a->enabled || need == AUTH_SCOPE_NONE)
        return 0;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return 401;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len > 0 && tok[len - 1] == ' ')
        len--;
    if (len == 0)
        return 401;
    for (int i = 0; i < a->ntokens; i++)
        if (token_equal(tok, len, a->tokens[i].token)) {
            *principal = a->tokens[i].name;
            return a->tokens[i].scope >= need ? 0 : 403;
        }
    return 401;
}

static unsigned hash_key(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int auth_rate_take(auth *a, const char *key, double now, double *retry_after)
{
    *retry_after = 0.0;
    if (a->rate <= 0.0)
        return 1;
    unsigned slot = hash_key(key) % AUTH_BUCKET_SLOTS;
    auth_bucket *b = a->slots[slot];
    while (b && strcmp(b->key, key) != 0)
        b = b->next;
    if (!b) {
        if (a->nbuckets >= AUTH_BUCKET_MAX)
            buckets_clear(a);
        b = calloc(1, sizeof *b);
        if (!b)
            return 1; /* out of memory: do not refuse service over bookkeeping */
        snprintf(b->key, sizeof b->key, "%s", key);
        b->tokens = a->burst;
        b->last = now;
        b->next = a->slots[slot];
        a->slots[slot] = b;
        a->nbuckets++;
    }
    double t = b->tokens + (now - b->last) * a->rate;
    b->tokens = t > a->burst ? a->burst : t;
    b->last = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 1;
    }
    *retry_after = (1.0 - b->tokens) / a->rate;
    return 0;
}
