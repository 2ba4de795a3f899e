/* remote_http.c - libcurl requests to d2nwgd with bounded, visible retries
 * (policy in remote_http.h). */
#include "remote_http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "api.h"

#define BODY_MAX ((size_t)4 << 30) /* refuse answers over 4 GiB */

_Static_assert(REMOTE_ERRBUF_LEN >= CURL_ERROR_SIZE, "remote_client.errbuf is too small");

int remote_random_hex(char *out, size_t nbytes, d2_error *err)
{
    unsigned char buf[64];
    if (nbytes == 0 || nbytes > sizeof buf)
        return d2_fail(err, D2_EINVAL, "random id: %zu bytes is outside 1..%zu", nbytes,
                       sizeof buf);
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return d2_fail(err, D2_EIO, "/dev/urandom: %s", strerror(errno));
    size_t got = 0;
    while (got < nbytes) {
        ssize_t k = read(fd, buf + got, nbytes - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            close(fd);
            return d2_fail(err, D2_EIO, "/dev/urandom: %s", strerror(e));
        }
        got += (size_t)k;
    }
    close(fd);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[buf[i] >> 4];
        out[2 * i + 1] = hex[buf[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

static uint64_t jitter_seed(void)
{
    char hex[17];
    if (remote_random_hex(hex, 8, NULL) == 0)
        return strtoull(hex, NULL, 16);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 48);
}

int remote_client_init(remote_client *c, const char *base, const char *token, double retry_for,
                       const char *cmd, d2_error *err)
{
    memset(c, 0, sizeof *c);
    c->cmd = cmd;
    c->log = stderr;
    c->retry_for = retry_for > 0 ? retry_for : 0.0;
    c->connect_timeout = 10.0;
    if (!base || (strncmp(base, "http://", 7) && strncmp(base, "https://", 8)))
        return d2_fail(err, D2_EINVAL, "server '%s': expected http://HOST:PORT or https://...",
                       base ? base : "");
    size_t n = strlen(base);
    while (n > 8 && base[n - 1] == '/')
        n--;
    if (n >= sizeof c->base)
        return d2_fail(err, D2_EINVAL, "server URL longer than %zu characters", sizeof c->base - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)base[i] <= ' ' || base[i] == 0x7f)
            return d2_fail(err, D2_EINVAL, "server '%s': URL contains a space or control character",
                           base);
    memcpy(c->base, base, n);
    c->base[n] = '\0';
    if (token && token[0]) {
        for (const char *p = token; *p; p++)
            if ((unsigned char)*p <= ' ' || *p == 0x7f)
                return d2_fail(err, D2_EINVAL, "token contains a space or control character");
        size_t len = strlen("Authorization: Bearer ") + strlen(token) + 1;
        c->auth_header = malloc(len);
        if (!c->auth_header)
            return d2_fail(err, D2_ENOMEM, "out of memory");
        snprintf(c->auth_header, len, "Authorization: Bearer %s", token);
    }
    rng_init(&c->jitter, jitter_seed(), 0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(c->auth_header);
        c->auth_header = NULL;
        return d2_fail(err, D2_EIO, "libcurl failed to initialise");
    }
    c->curl = curl_easy_init();
    if (!c->curl) {
        curl_global_cleanup();
        free(c->auth_header);
        c->auth_header = NULL;
        return d2_fail(err, D2_ENOMEM, "libcurl: cannot create a handle");
    }
    return 0;
}

void remote_client_free(remote_client *c)
{
    if (c->curl) {
        curl_easy_cleanup(c->curl);
        curl_global_cleanup();
    }
    if (c->auth_header) {
        memset(c->auth_header, 0, strlen(c->auth_header));
        free(c->auth_header);
    }
    c->curl = NULL;
    c->auth_header = NULL;
}

void remote_response_free(remote_response *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

double remote_backoff_delay(int attempt, double retry_after, rng *r)
{
    double u = rng_uniform_double(r);
    if (retry_after >= 0)
        return retry_after * (1.0 + 0.1 * u);
    double d = 0.25 * ldexp(1.0, attempt > 1 ? (attempt - 1 < 10 ? attempt - 1 : 10) : 0);
    if (d > 8.0)
        d = 8.0;
    return 0.5 * d + 0.5 * d * u;
}

int remote_should_retry(int replayable, int transport, long status)
{
    if (transport == 1)
        return 1;
    if (transport == 2)
        return replayable;
    if (status == 429 || status == 503)
        return 1;
    return replayable && status >= 500 && status <= 599;
}

/* ---- one attempt ---- */

typedef struct attempt_state {
    remote_response *resp;
    int overflow;
} attempt_state;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    attempt_state *st = ud;
    remote_response *r = st->resp;
    size_t k = size * nmemb;
    if (k > BODY_MAX - r->len) {
        st->overflow = 1;
        return 0;
    }
    unsigned char *b = realloc(r->body, r->len + k + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, k);
    r->len += k;
    b[r->len] = '\0';
    r->body = b;
    return k;
}

/* Copy a header's value (trimmed) when the line is "name: value". */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    size_t vl = (size_t)(end - v);
    if (vl >= cap)
        vl = cap - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 1;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    attempt_state *st = ud;
    remote_response *r = st->resp;
    size_t k = size * nmemb;
    char v[256];
    if (k >= 5 && !strncmp(p, "HTTP/", 5)) {
        /* a new header block (after "100 Continue", say) */
        r->retry_after = -1.0;
        r->checkpoint_sha256[0] = '\0';
        r->request_id[0] = '\0';
        r->replayed = 0;
    } else if (header_value(p, k, "Retry-After", v, sizeof v)) {
        char *end;
        double s = strtod(v, &end);
        if (end != v && *end == '\0' && isfinite(s) && s >= 0)
            r->retry_after = s;
        else {
            time_t when = curl_getdate(v, NULL);
            if (when != (time_t)-1) {
                double d = difftime(when, time(NULL));
                r->retry_after = d > 0 ? d : 0.0;
            }
        }
    } else if (header_value(p, k, "X-Checkpoint-Sha256", v, sizeof v)) {
        snprintf(r->checkpoint_sha256, sizeof r->checkpoint_sha256, "%.64s", v);
    } else if (header_value(p, k, "X-Request-Id", v, sizeof v)) {
        snprintf(r->request_id, sizeof r->request_id, "%.70s", v);
    } else if (header_value(p, k, "Idempotent-Replayed", v, sizeof v)) {
        r->replayed = !strcasecmp(v, "true");
    }
    return k;
}

/* What went wrong in words: "connection refused", "timed out after 10 s"... */
static void describe_failure(CURL *h, CURLcode cc, const char *errbuf, char *out, size_t cap)
{
    long os_errno = 0;
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
    if (cc == CURLE_COULDNT_CONNECT && os_errno != 0) {
        snprintf(out, cap, "%s", strerror((int)os_errno));
        out[0] = (char)tolower((unsigned char)out[0]);
    } else if (errbuf[0]) {
        snprintf(out, cap, "%s", errbuf);
    } else {
        snprintf(out, cap, "%s", curl_easy_strerror(cc));
    }
}

/* One try. Returns 0 with *transport = 0 (answered), 1 (never connected) or
 * 2 (failed after connecting; what[] says why), or a negative D2_E* code for
 * a local failure (err filled). */
static int attempt(remote_client *c, const remote_request *req, const char *url,
                   struct curl_slist *headers, remote_response *resp, int *transport, char *what,
                   size_t what_cap, d2_error *err)
{
    *transport = 0;
    CURL *h = c->curl;
    attempt_state st = {resp, 0};
    char *errbuf = c->errbuf;
    errbuf[0] = '\0';
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
    resp->status = 0;
    resp->retry_after = -1.0;
    resp->checkpoint_sha256[0] = '\0';
    resp->request_id[0] = '\0';
    resp->replayed = 0;
    curl_easy_reset(h);
    int bad = 0;
    bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, "d2nwg/" D2_VERSION) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, &st) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, &st) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->connect_timeout * 1000.0)) !=
           CURLE_OK;
    if (req->timeout > 0)
        bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(req->timeout * 1000.0)) != CURLE_OK;
    if (!strcmp(req->method, "GET")) {
        bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    } else {
        bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "") != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                                (curl_off_t)(req->body ? req->body_len : 0)) != CURLE_OK;
    }
    if (bad)
        return d2_fail(err, D2_EIO, "libcurl refused an option for %s", url);
    CURLcode cc = curl_easy_perform(h);
    if (st.overflow)
        return d2_fail(err, D2_ERANGE, "%s %s: the answer is larger than %zu bytes", req->method,
                       url, BODY_MAX);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        if (!resp->body) {
            resp->body = calloc(1, 1);
            if (!resp->body)
                return d2_fail(err, D2_ENOMEM, "out of memory");
        }
        return 0;
    }
    if (cc == CURLE_OUT_OF_MEMORY || cc == CURLE_WRITE_ERROR)
        return d2_fail(err, D2_ENOMEM, "%s %s: out of memory reading the answer", req->method, url);
    describe_failure(h, cc, errbuf, what, what_cap);
    curl_off_t connect_us = 0;
    curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connect_us);
    int never_connected = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
                          cc == CURLE_COULDNT_RESOLVE_PROXY ||
                          (cc == CURLE_OPERATION_TIMEDOUT && connect_us == 0);
    *transport = never_connected ? 1 : 2;
    return 0;
}

/* "503 queue_full: 1 jobs are queued (the limit)" from an error answer. */
static void describe_answer(const remote_response *r, char *out, size_t cap)
{
    json_error_t je;
    json_t *root = r->len ? json_loadb((const char *)r->body, r->len, 0, &je) : NULL;
    api_error e;
    if (root && api_error_from_json(root, (int)r->status, &e) == 0)
        snprintf(out, cap, "%ld %s: %s", r->status, e.code, e.message);
    else
        snprintf(out, cap, "HTTP %ld", r->status);
    json_decref(root);
}

static void sleep_for(double s)
{
    if (s <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int remote_send(remote_client *c, const remote_request *req, remote_response *resp, d2_error *err)
{
    memset(resp, 0, sizeof *resp);
    resp->retry_after = -1.0;
    size_t url_len = strlen(c->base) + strlen(req->path) + 1;
    char *url = malloc(url_len);
    if (!url)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    snprintf(url, url_len, "%s%s", c->base, req->path);
    struct curl_slist *headers = NULL, *t;
    int bad = 0;
    char line[400];
    /* libcurl's own Expect: 100-continue would add a pause to large uploads */
    if ((t = curl_slist_append(headers, "Expect:")))
        headers = t;
    else
        bad = 1;
    if (req->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", req->content_type);
        if ((t = curl_slist_append(headers, line)))
            headers = t;
        else
            bad = 1;
    }
    if (req->idempotency_key) {
        snprintf(line, sizeof line, "Idempotency-Key: %.255s", req->idempotency_key);
        if ((t = curl_slist_append(headers, line)))
            headers = t;
        else
            bad = 1;
    }
    if (c->auth_header) {
        if ((t = curl_slist_append(headers, c->auth_header)))
            headers = t;
        else
            bad = 1;
    }
    if (bad) {
        curl_slist_free_all(headers);
        free(url);
        return d2_fail(err, D2_ENOMEM, "out of memory");
    }
    int replayable = !strcmp(req->method, "GET") || req->idempotency_key != NULL || req->replayable;
    double t0 = d2_now(), deadline = t0 + c->retry_for;
    int rc = 0;
    for (int n = 1;; n++) {
        char what[CURL_ERROR_SIZE + API_MESSAGE_LEN + 96];
        what[0] = '\0';
        int tr = 0;
        rc = attempt(c, req, url, headers, resp, &tr, what, sizeof what, err);
        resp->attempts = n;
        resp->elapsed = d2_now() - t0;
        if (rc != 0)
            break;
        int retry = remote_should_retry(replayable, tr, resp->status);
        double now = d2_now();
        if (!retry || now >= deadline) {
            if (tr == 1)
                rc = d2_fail(err, D2_EIO, "cannot reach %s: %s (%d tr%s in %.1f s)", c->base, what,
                             n, n == 1 ? "y" : "ies", now - t0);
            else if (tr == 2)
                rc = d2_fail(err, D2_EIO, "%s %s: %s (%d tr%s in %.1f s)%s", req->method, url, what,
                             n, n == 1 ? "y" : "ies", now - t0,
                             retry ? "" : "; not retried: the daemon may have acted on it");
            break;
        }
        double delay = remote_backoff_delay(n, tr == 0 ? resp->retry_after : -1.0, &c->jitter);
        if (delay > deadline - now)
            delay = deadline - now;
        if (tr == 0)
            describe_answer(resp, what, sizeof what);
        fprintf(c->log,
                "d2nwg %s: %s %s: %s; retry %d in %.1f s (giving up %g s after the first "
                "try)\n",
                c->cmd, req->method, url, what, n, delay, c->retry_for);
        fflush(c->log);
        sleep_for(delay);
    }
    curl_slist_free_all(headers);
    free(url);
    if (rc != 0)
        remote_response_free(resp);
    return rc;
}
