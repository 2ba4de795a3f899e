/* api.c - errors, limits, names, times, ids and body parsing of the wire
 * contract (see api.h; data sets in api_dataset.c, jobs in api_job.c). */
#include "api.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sha256.h"

int api_fail(api_error *e, int status, const char *code, const char *field, const char *fmt, ...)
{
    if (e) {
        e->status = status;
        snprintf(e->code, sizeof e->code, "%s", code ? code : "internal");
        snprintf(e->field, sizeof e->field, "%s", field ? field : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
        api_sanitize_utf8(e->field);
        api_sanitize_utf8(e->message);
    }
    return D2_EINVAL;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    int n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000;
    else
        return 0;
    unsigned cp = c & (0x3fu >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void api_sanitize_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (p && *p) {
        int n = utf8_len(p);
        if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

void api_snprintf(char *dst, size_t cap, const char *fmt, ...)
{
    if (!dst || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

void api_error_clear(api_error *e)
{
    if (e)
        memset(e, 0, sizeof *e);
}

json_t *api_error_to_json(const api_error *e)
{
    json_t *inner = json_pack("{s:s, s:s}", "code", e->code[0] ? e->code : "internal", "message",
                              e->message);
    if (!inner)
        return NULL;
    if (e->field[0] && json_object_set_new(inner, "field", json_string(e->field)) != 0) {
        json_decref(inner);
        return NULL;
    }
    return json_pack("{s:o}", "error", inner);
}

int api_error_from_json(const json_t *root, int status, api_error *e)
{
    api_error_clear(e);
    e->status = status;
    const json_t *inner = json_object_get(root, "error");
    const json_t *code = json_object_get(inner, "code");
    const json_t *msg = json_object_get(inner, "message");
    const json_t *field = json_object_get(inner, "field");
    if (!json_is_object(inner) || !json_is_string(code) || !json_is_string(msg))
        return D2_EFORMAT;
    snprintf(e->code, sizeof e->code, "%s", json_string_value(code));
    snprintf(e->message, sizeof e->message, "%s", json_string_value(msg));
    if (json_is_string(field))
        snprintf(e->field, sizeof e->field, "%s", json_string_value(field));
    return 0;
}

api_limits api_limits_default(void)
{
    api_limits l;
    l.max_samples = 10000;
    l.max_dim = 1 << 20;
    l.max_classes = D2_MAX_WAY;
    l.max_candidates = 64;
    l.max_steps = 1000;
    l.max_k = 64;
    return l;
}

const char *api_kind_name(int kind)
{
    return kind == API_KIND_EMBEDDINGS ? "embeddings" : "samples";
}

int api_kind_parse(const char *s, int *kind)
{
    if (s && !strcmp(s, "samples")) {
        *kind = API_KIND_SAMPLES;
        return 0;
    }
    if (s && !strcmp(s, "embeddings")) {
        *kind = API_KIND_EMBEDDINGS;
        return 0;
    }
    return D2_EINVAL;
}

static const char *const JOB_STATE_NAMES[API_JOB_STATE_COUNT] = {
    "queued", "running", "succeeded", "failed", "cancelled"};

const char *api_job_state_name(api_job_state s)
{
    return (s >= 0 && s < API_JOB_STATE_COUNT) ? JOB_STATE_NAMES[s] : "unknown";
}

int api_job_state_parse(const char *s, api_job_state *out)
{
    for (int i = 0; s && i < API_JOB_STATE_COUNT; i++)
        if (!strcmp(s, JOB_STATE_NAMES[i])) {
            *out = (api_job_state)i;
            return 0;
        }
    return D2_EINVAL;
}

int api_job_state_terminal(api_job_state s)
{
    return s == API_JOB_SUCCEEDED || s == API_JOB_FAILED || s == API_JOB_CANCELLED;
}

const char *api_sampler_name(int sampler)
{
    return sampler == GEN_SAMPLER_DDPM ? "ddpm" : "ddim";
}

int api_sampler_parse(const char *s, int *sampler)
{
    if (s && !strcmp(s, "ddim")) {
        *sampler = GEN_SAMPLER_DDIM;
        return 0;
    }
    if (s && !strcmp(s, "ddpm")) {
        *sampler = GEN_SAMPLER_DDPM;
        return 0;
    }
    return D2_EINVAL;
}

void api_format_time(int64_t ms, char out[32])
{
    time_t sec = (time_t)(ms / 1000);
    int milli = (int)(ms % 1000);
    if (milli < 0) {
        milli += 1000;
        sec -= 1;
    }
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    if (tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
        tm.tm_year = 9999 - 1900;
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", milli % 1000);
}

int api_parse_time(const char *s, int64_t *ms)
{
    int Y, M, D, h, m, sec, milli = 0, used = 0;
    if (!s)
        return D2_EINVAL;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &used) != 6)
        return D2_EINVAL;
    const char *p = s + used;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3)
                milli = milli * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return D2_EINVAL;
        for (; digits < 3; digits++)
            milli *= 10;
    }
    if (strcmp(p, "Z") != 0)
        return D2_EINVAL;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return D2_EINVAL;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *ms = (int64_t)t * 1000 + milli;
    return 0;
}

int64_t api_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int api_canonical_sha256(const json_t *v, char hex[65])
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!s)
        return D2_ENOMEM;
    sha256_hex(s, strlen(s), hex);
    free(s);
    return 0;
}

int api_parse_body(const void *bytes, size_t len, json_t **out, api_error *e)
{
    *out = NULL;
    if (len == 0)
        return api_fail(e, 400, "invalid_json", NULL, "empty body: expected a JSON object");
    json_error_t je;
    json_t *root = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return api_fail(e, 400, "invalid_json", NULL, "line %d, column %d: %s", je.line,
                        je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return api_fail(e, 400, "invalid_json", NULL, "expected a JSON object");
    }
    *out = root;
    return 0;
}

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int api_is_job_id(const char *s)
{
    return s && strlen(s) == 22 && s[0] == 'j' && s[1] == '_' && all_hex(s + 2, 20);
}

int api_is_checkpoint_id(const char *s)
{
    if (!s || strncmp(s, "ck_", 3) != 0 || strlen(s) < 25 || !all_hex(s + 3, 20) || s[23] != '_')
        return 0;
    const char *r = s + 24;
    size_t n = strlen(r);
    if (n == 0 || n > 3 || (n > 1 && r[0] == '0'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)r[i]))
            return 0;
    return 1;
}

int api_is_hex64(const char *s)
{
    return s && strlen(s) == 64 && all_hex(s, 64);
}
