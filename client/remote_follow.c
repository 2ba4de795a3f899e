/* remote_follow.c - read a server-sent event stream with libcurl and print
 * its events (remote_follow.h). */
#include "remote_follow.h"

#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"

typedef struct follow {
    FILE *out;
    int json;
    CURL *h;
    long status;          /* 0 until the first body bytes */
    char line[1 << 16];
    size_t llen;
    long long cur_id, last_id;
    char type[32];
    char *data;
    char *errbody;        /* the body of a refusal */
    size_t errlen;
} follow;

static void print_time(FILE *out)
{
    char t[32];
    api_format_time(api_now_ms(), t);
    fprintf(out, "%.8s  ", t + 11); /* HH:MM:SS */
}

static void print_job(FILE *out, const json_t *data)
{
    api_job j;
    api_error e;
    if (api_job_from_json(data, &j, &e) != 0) {
        fprintf(out, "job event the client cannot read: %s\n", e.message);
        return;
    }
    fprintf(out, "%s  %-9s %3.0f%%  %s", j.id, api_job_state_name(j.state), j.progress * 100.0,
            j.generator_name);
    if (j.cancel_requested && j.state == API_JOB_RUNNING)
        fprintf(out, "  (cancel requested)");
    if (j.has_gate && j.state == API_JOB_SUCCEEDED)
        fprintf(out, "  method %s", api_method_name(j.gate.chosen));
    if (j.error_code[0])
        fprintf(out, "  %s: %s", j.error_code, j.error_message);
    fputc('\n', out);
    api_job_free(&j);
}

static const char *text_of(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "?";
}

static void print_event(follow *f, const json_t *data)
{
    FILE *out = f->out;
    if (f->json) {
        json_t *o = json_pack("{s:I, s:s, s:O}", "id", (json_int_t)f->cur_id, "event", f->type,
                              "data", data);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s)
            fprintf(out, "%s\n", s);
        free(s);
        json_decref(o);
        fflush(out);
        return;
    }
    print_time(out);
    if (!strcmp(f->type, "job")) {
        print_job(out, data);
    } else if (!strcmp(f->type, "progress")) {
        char id[API_ID_LEN];
        double p;
        api_error e;
        if (api_event_progress_from_json(data, id, &p, &e) == 0)
            fprintf(out, "%s  %-9s %3.0f%%\n", id, "running", p * 100.0);
    } else if (!strcmp(f->type, "generator")) {
        fprintf(out, "generator %s %s (%.12s)\n", text_of(data, "name"), text_of(data, "state"),
                text_of(data, "id"));
    } else if (!strcmp(f->type, "events_lost")) {
        fprintf(out, "events before %lld are no longer held by the daemon: some were missed\n",
                (long long)json_integer_value(json_object_get(data, "oldest_event_id")));
    } else {
        fprintf(out, "%s event\n", f->type);
    }
    fflush(out);
}

/* A blank line ends an event: print it, remember its id. */
static void dispatch(follow *f)
{
    if (f->data) {
        json_t *v = json_loads(f->data, 0, NULL);
        if (v)
            print_event(f, v);
        json_decref(v);
        if (f->cur_id > 0)
            f->last_id = f->cur_id;
    }
    free(f->data);
    f->data = NULL;
    f->type[0] = '\0';
    f->cur_id = 0;
}

static void parse_line(follow *f, const char *l)
{
    if (!*l)
        dispatch(f);
    else if (!strncmp(l, "id: ", 4))
        f->cur_id = atoll(l + 4);
    else if (!strncmp(l, "event: ", 7))
        snprintf(f->type, sizeof f->type, "%s", l + 7);
    else if (!strncmp(l, "data: ", 6)) {
        free(f->data);
        f->data = strdup(l + 6);
    } /* comments (heartbeats) and retry: lines need nothing */
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    follow *f = ud;
    size_t k = size * n;
    if (!f->status)
        curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &f->status);
    if (f->status != 200) { /* a refusal: keep its JSON body for the message */
        char *b = realloc(f->errbody, f->errlen + k + 1);
        if (!b)
            return 0;
        memcpy(b + f->errlen, p, k);
        f->errlen += k;
        b[f->errlen] = '\0';
        f->errbody = b;
        return k;
    }
    for (size_t i = 0; i < k; i++) {
        if (p[i] == '\n') {
            f->line[f->llen] = '\0';
            parse_line(f, f->line);
            f->llen = 0;
        } else if (p[i] != '\r' && f->llen + 1 < sizeof f->line) {
            f->line[f->llen++] = p[i];
        }
    }
    return k;
}

/* One connection; returns curl's code (f->status says whether it answered). */
static CURLcode stream_once(remote_client *c, follow *f, double seconds)
{
    char url[REMOTE_URL_LEN + 32], last[64];
    snprintf(url, sizeof url, "%s/v1/events", c->base);
    struct curl_slist *hl = NULL;
    if (c->auth_header)
        hl = curl_slist_append(hl, c->auth_header);
    if (f->last_id > 0) {
        snprintf(last, sizeof last, "Last-Event-ID: %lld", f->last_id);
        hl = curl_slist_append(hl, last);
    }
    f->h = curl_easy_init();
    if (!f->h) {
        curl_slist_free_all(hl);
        return CURLE_OUT_OF_MEMORY;
    }
    curl_easy_setopt(f->h, CURLOPT_URL, url);
    curl_easy_setopt(f->h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(f->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(f->h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->h, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->connect_timeout * 1000.0));
    curl_easy_setopt(f->h, CURLOPT_ERRORBUFFER, c->errbuf);
    if (seconds > 0)
        curl_easy_setopt(f->h, CURLOPT_TIMEOUT_MS, (long)ceil(seconds * 1000.0));
    c->errbuf[0] = '\0';
    f->status = 0;
    f->llen = 0;
    CURLcode rc = curl_easy_perform(f->h);
    if (!f->status)
        curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &f->status);
    curl_easy_cleanup(f->h);
    f->h = NULL;
    curl_slist_free_all(hl);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A refusal (4xx, 5xx): the daemon's message and the exit status. */
static int refused(remote_client *c, follow *f)
{
    json_t *v = f->errbody ? json_loads(f->errbody, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
    cli_error(c->cmd, "GET /v1/events: %ld %s", f->status, m ? m : "(no message)");
    json_decref(v);
    return f->status >= 500 ? EXIT_UNREACHABLE : EXIT_REFUSED;
}

static void pause_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

int remote_follow(remote_client *c, double for_seconds, int json, FILE *out)
{
    follow *f = calloc(1, sizeof *f);
    if (!f)
        return EXIT_UNREACHABLE;
    f->out = out;
    f->json = json;
    double t0 = now_s(), down = -1.0;
    int code = EXIT_OK;
    for (;;) {
        double left = for_seconds > 0 ? for_seconds - (now_s() - t0) : 0;
        if (for_seconds > 0 && left <= 0)
            break;
        CURLcode rc = stream_once(c, f, left);
        if (f->status != 0 && f->status != 200) {
            code = refused(c, f);
            break;
        }
        if (rc == CURLE_OPERATION_TIMEDOUT && for_seconds > 0 && now_s() - t0 >= for_seconds)
            break;
        if (f->status == 200)
            down = -1.0; /* it was connected: the daemon ended the stream */
        else if (down < 0)
            down = now_s();
        if (down >= 0 && now_s() - down > c->retry_for) {
            cli_error(c->cmd, "cannot reach %s: %s", c->base,
                      c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
            code = EXIT_UNREACHABLE;
            break;
        }
        fprintf(c->log, "d2nwg %s: the event stream ended (%s); reconnecting%s\n", c->cmd,
                f->status == 200 ? "by the daemon" : curl_easy_strerror(rc),
                f->last_id > 0 ? " from the last event seen" : "");
        pause_s(1.0);
    }
    free(f->data);
    free(f->errbody);
    free(f);
    return code;
}
