/* remote_job.c - wait for a job, judge its end, download its weights. */
#include "fileio.h"
#include "remote_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"
#include "remote_call.h"
#include "safetensors.h"
#include "sha256.h"

/* Seconds one long-poll may be held: 1 s on a terminal so the bar moves
 * (the daemon ends a wait on state changes only), else 30 s. */
static double poll_wait(double remaining, int tty)
{
    double w = tty ? 1.0 : 30.0;
    if (remaining > 0 && remaining < w)
        w = remaining;
    return w < 0.01 ? 0.01 : w;
}

/* The job's progress on stderr: redrawn in place on a terminal, else one line
 * per state change and at most one every 5 s. */
typedef struct job_bar {
    int enabled, tty;
    double t0, last;
    char state[16];
} job_bar;

static void bar_draw(job_bar *b, const char *id, double frac, const char *state, int final)
{
    if (!b->enabled)
        return;
    double now = d2_now();
    int changed = strcmp(state, b->state) != 0;
    if (!final && !b->tty && !changed && now - b->last < 5.0)
        return;
    snprintf(b->state, sizeof b->state, "%s", state);
    b->last = now;
    if (frac < 0)
        frac = 0;
    if (frac > 1)
        frac = 1;
    char bar[25];
    int filled = (int)(frac * 24 + 0.5);
    for (int i = 0; i < 24; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[24] = '\0';
    fprintf(stderr, "%s%s [%s] %3.0f%%  %-9s %6.1f s%s", b->tty ? "\r" : "", id, bar, 100.0 * frac,
            state, now - b->t0, b->tty ? "\033[K" : "");
    if (!b->tty || final)
        fputc('\n', stderr);
    fflush(stderr);
}

int remote_job_wait(remote_client *c, const char *id, double timeout, int bar, json_t **job,
                    remote_response *last)
{
    *job = NULL;
    memset(last, 0, sizeof *last);
    job_bar b = {bar, isatty(fileno(stderr)), d2_now(), 0.0, ""};
    double t0 = b.t0, frac = 0.0;
    for (;;) {
        double remaining = timeout > 0 ? timeout - (d2_now() - t0) : 0.0;
        double w = poll_wait(remaining, b.tty);
        char path[160];
        snprintf(path, sizeof path, "/v1/jobs/%s?wait=%.3g", id, w);
        json_t *j = NULL;
        remote_response_free(last);
        int code = remote_get_json(c, path, w + 30.0, last, &j);
        if (code != EXIT_OK) {
            if (b.state[0])
                bar_draw(&b, id, frac, "unknown", 1);
            remote_response_free(last);
            return code;
        }
        api_job parsed;
        api_error pe;
        if (api_job_from_json(j, &parsed, &pe) != 0) {
            cli_error(c->cmd, "the daemon's answer for job %s has no valid state", id);
            json_decref(j);
            remote_response_free(last);
            return EXIT_UNREACHABLE;
        }
        api_job_state st = parsed.state;
        const char *sname = api_job_state_name(st);
        frac = parsed.progress;
        api_job_free(&parsed);
        if (api_job_state_terminal(st)) {
            bar_draw(&b, id, frac, sname, 1);
            *job = j;
            return EXIT_OK;
        }
        bar_draw(&b, id, frac, sname, 0);
        if (timeout > 0 && d2_now() - t0 >= timeout) {
            bar_draw(&b, id, frac, sname, 1);
            cli_error(c->cmd, "job %s is still %s after %g s (--timeout)", id, sname, timeout);
            json_decref(j);
            remote_response_free(last);
            return EXIT_FAILED;
        }
        json_decref(j);
    }
}

int remote_job_exit(const char *cmd, const json_t *job)
{
    api_job j;
    api_error pe;
    if (api_job_from_json(job, &j, &pe) != 0) {
        cli_error(cmd, "the daemon's job answer has no id or state");
        return EXIT_FAILED;
    }
    int code = EXIT_OK;
    if (j.state != API_JOB_SUCCEEDED) {
        if (j.error_code[0])
            cli_error(cmd, "job %s %s: %s: %s", j.id, api_job_state_name(j.state), j.error_code,
                      j.error_message);
        else
            cli_error(cmd, "job %s %s", j.id, api_job_state_name(j.state));
        code = EXIT_FAILED;
    }
    api_job_free(&j);
    return code;
}

int remote_job_best_checkpoint(const json_t *job, char id[API_ID_LEN], int *method)
{
    api_job j;
    api_error pe;
    id[0] = '\0';
    if (api_job_from_json(job, &j, &pe) != 0)
        return -1;
    int rc = -1;
    if (j.state == API_JOB_SUCCEEDED && j.ncheckpoints > 0 &&
        api_is_checkpoint_id(j.checkpoints[0].id)) {
        snprintf(id, API_ID_LEN, "%s", j.checkpoints[0].id);
        if (method)
            *method = j.checkpoints[0].method;
        rc = 0;
    }
    api_job_free(&j);
    return rc;
}

int remote_fetch_weights(remote_client *c, const char *checkpoint_id, const char *path,
                         char sha256[65], size_t *bytes)
{
    char url[160];
    snprintf(url, sizeof url, "/v1/checkpoints/%s/weights", checkpoint_id);
    return remote_fetch_safetensors(c, url, checkpoint_id, path, sha256, bytes);
}

int remote_fetch_safetensors(remote_client *c, const char *url, const char *checkpoint_id,
                             const char *path, char sha256[65], size_t *bytes)
{
    remote_request req = {.method = "GET", .path = url, .timeout = 600.0};
    remote_response resp;
    int code = remote_call(c, &req, &resp);
    if (code != EXIT_OK) {
        remote_response_free(&resp);
        return code;
    }
    char hex[65];
    sha256_hex(resp.body, resp.len, hex);
    if (resp.checkpoint_sha256[0] && strcmp(hex, resp.checkpoint_sha256) != 0) {
        cli_error(c->cmd,
                  "the weights of %s arrived damaged: sha256 %s, the daemon says %s; "
                  "%s not written",
                  checkpoint_id, hex, resp.checkpoint_sha256, path);
        remote_response_free(&resp);
        return EXIT_UNREACHABLE;
    }
    d2_error err;
    d2_error_clear(&err);
    st_file f;
    if (st_parse(&f, resp.body, resp.len, &err) != 0) {
        cli_error(c->cmd, "the weights of %s are not a valid safetensors file (%s); %s not written",
                  checkpoint_id, err.msg, path);
        remote_response_free(&resp);
        return EXIT_UNREACHABLE;
    }
    st_free(&f);
    if (d2_write_file_atomic(path, resp.body, resp.len, &err) != 0) {
        cli_error(c->cmd, "%s", err.msg);
        remote_response_free(&resp);
        return EXIT_FAILED;
    }
    if (sha256)
        snprintf(sha256, 65, "%s", hex);
    if (bytes)
        *bytes = resp.len;
    remote_response_free(&resp);
    return EXIT_OK;
}
