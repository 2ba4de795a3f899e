/* remote_jobs.c - `d2nwg jobs`, `status`, `wait` and `cancel`: list jobs, show
 * one, follow one to its end, cancel one. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"
#include "remote_call.h"
#include "remote_job.h"
#include "remote_opts.h"
#include "remote_table.h"

/* Parse "[shared options] ID" for status/cancel; extra options are handled
 * by `extra` (returns 1 consumed, 0 not, -1 error). Returns -1 for --help,
 * else an exit code. */
static int parse_id_args(const char *cmd, void (*usage)(FILE *), remote_opts *o, int argc,
                         char **argv, const char **id,
                         int (*extra)(void *ctx, int argc, char **argv, int *i), void *ctx)
{
    *id = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return -1;
        }
        if ((r = remote_opts_parse(o, cmd, argc, argv, &i))) {
            if (r < 0)
                return EXIT_USAGE;
            continue;
        }
        if (extra && (r = extra(ctx, argc, argv, &i))) {
            if (r < 0)
                return EXIT_USAGE;
            continue;
        }
        if (argv[i][0] == '-') {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
        if (*id) {
            cli_error(cmd, "one job id, please ('%s' and '%s')", *id, argv[i]);
            return EXIT_USAGE;
        }
        *id = argv[i];
    }
    if (!*id) {
        cli_error(cmd, "which job? (d2nwg %s JOB_ID; 'd2nwg jobs' lists them)", cmd);
        return EXIT_USAGE;
    }
    if (!api_is_job_id(*id)) {
        cli_error(cmd, "'%s' is not a job id (j_ followed by 20 hex digits)", *id);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* ---- jobs ---- */

static void jobs_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg jobs [--state S] [--limit N] [--after JOB_ID] [options]\n"
                 "\n"
                 "Lists the daemon's jobs, newest first, one page at a time.\n"
                 "\n"
                 "  --state S            queued, running, succeeded, failed or cancelled\n"
                 "  --limit N            jobs per page, 1..200 (default 50)\n"
                 "  --after JOB_ID       the page after this job (the previous page's last line\n"
                 "                       says which)\n");
    remote_opts_usage(out, 1);
}

int cmd_jobs(int argc, char **argv)
{
    const char *cmd = "jobs", *v, *state = NULL, *after = NULL;
    long limit = 0;
    remote_opts o;
    remote_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            jobs_usage(stdout);
            return EXIT_OK;
        }
        if ((r = remote_opts_parse(&o, cmd, argc, argv, &i))) {
            if (r < 0)
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--state", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            state = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--after", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            after = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--limit", &v))) {
            if (r < 0 || cli_int(cmd, "--limit", v, 1, 200, &limit))
                return EXIT_USAGE;
        } else {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    api_job_state st;
    if (state && api_job_state_parse(state, &st) != 0) {
        cli_error(cmd, "--state: '%s' is not queued, running, succeeded, failed or cancelled",
                  state);
        return EXIT_USAGE;
    }
    if (after && !api_is_job_id(after)) {
        cli_error(cmd, "--after: '%s' is not a job id (j_ followed by 20 hex digits)", after);
        return EXIT_USAGE;
    }
    char path[256];
    int n = snprintf(path, sizeof path, "/v1/jobs");
    char sep = '?';
    if (state) {
        n += snprintf(path + n, sizeof path - (size_t)n, "%cstate=%s", sep, state);
        sep = '&';
    }
    if (limit > 0) {
        n += snprintf(path + n, sizeof path - (size_t)n, "%climit=%ld", sep, limit);
        sep = '&';
    }
    if (after)
        snprintf(path + n, sizeof path - (size_t)n, "%cafter=%s", sep, after);
    remote_client c;
    int code = remote_opts_client(&o, cmd, &c);
    if (code != EXIT_OK)
        return code;
    code = remote_get_show(&c, path, o.json, remote_table_jobs);
    remote_client_free(&c);
    return code;
}

/* ---- status ---- */

static void status_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg status JOB_ID [options]\n"
                 "\n"
                 "Shows a job: state, progress, parameters, times and, once it succeeded, its\n"
                 "ranked checkpoints. Exit status 1 when the job failed or was cancelled.\n"
                 "\n");
    remote_opts_usage(out, 1);
}

int cmd_status(int argc, char **argv)
{
    const char *cmd = "status", *id;
    remote_opts o;
    remote_opts_init(&o);
    int code = parse_id_args(cmd, status_usage, &o, argc, argv, &id, NULL, NULL);
    if (code < 0)
        return EXIT_OK;
    if (code != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(&o, cmd, &c)) != EXIT_OK)
        return code;
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    remote_response resp;
    json_t *job = NULL;
    code = remote_get_json(&c, path, 60.0, &resp, &job);
    if (code == EXIT_OK) {
        remote_show(&resp, job, o.json, remote_table_job);
        const char *st = json_string_value(json_object_get(job, "state"));
        if (st && (!strcmp(st, "failed") || !strcmp(st, "cancelled")))
            code = remote_job_exit(cmd, job);
    }
    json_decref(job);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}

/* ---- wait ---- */

static void wait_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg wait JOB_ID [--timeout S] [options]\n"
                 "\n"
                 "Follows a job to its end (long-poll; progress bar on stderr), then shows it.\n"
                 "Exit status 0 when it succeeded; 1 when it failed, was cancelled, or is not\n"
                 "finished after --timeout seconds.\n"
                 "\n"
                 "  --timeout S          stop waiting after S seconds (default: no limit)\n"
                 "  --quiet              no progress bar\n");
    remote_opts_usage(out, 1);
}

typedef struct wait_args {
    double timeout;
    int quiet;
} wait_args;

static int wait_extra(void *ctx, int argc, char **argv, int *i)
{
    wait_args *w = ctx;
    const char *v;
    int r;
    if ((r = cli_opt("wait", argc, argv, i, "--timeout", &v)))
        return r < 0 || cli_float("wait", "--timeout", v, 0.001, 1e9, &w->timeout) ? -1 : 1;
    if (cli_flag(argv, *i, "--quiet")) {
        w->quiet = 1;
        return 1;
    }
    return 0;
}

int cmd_wait(int argc, char **argv)
{
    const char *cmd = "wait", *id;
    wait_args w = {0, 0};
    remote_opts o;
    remote_opts_init(&o);
    int code = parse_id_args(cmd, wait_usage, &o, argc, argv, &id, wait_extra, &w);
    if (code < 0)
        return EXIT_OK;
    if (code != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(&o, cmd, &c)) != EXIT_OK)
        return code;
    json_t *job = NULL;
    remote_response last;
    code = remote_job_wait(&c, id, w.timeout, !w.quiet, &job, &last);
    if (code == EXIT_OK) {
        remote_show(&last, job, o.json, remote_table_job);
        code = remote_job_exit(cmd, job);
    }
    json_decref(job);
    remote_response_free(&last);
    remote_client_free(&c);
    return code;
}

/* ---- cancel ---- */

static void cancel_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg cancel JOB_ID [options]\n"
                 "\n"
                 "Cancels a job: a queued one at once, a running one at the sampler's next step\n"
                 "('d2nwg wait JOB_ID' shows when it stopped). A job that already finished is\n"
                 "refused (exit 4).\n"
                 "\n");
    remote_opts_usage(out, 1);
}

int cmd_cancel(int argc, char **argv)
{
    const char *cmd = "cancel", *id;
    remote_opts o;
    remote_opts_init(&o);
    int code = parse_id_args(cmd, cancel_usage, &o, argc, argv, &id, NULL, NULL);
    if (code < 0)
        return EXIT_OK;
    if (code != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(&o, cmd, &c)) != EXIT_OK)
        return code;
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", id);
    remote_request req = {.method = "POST", .path = path, .timeout = 60.0};
    remote_response resp;
    json_t *job = NULL;
    code = remote_call_json(&c, &req, &resp, &job);
    if (code == EXIT_OK) {
        if (o.json)
            remote_print_raw(&resp);
        else if (resp.status == 202)
            printf("%s: cancel requested; it stops at the sampler's next step\n", id);
        else
            printf("%s: %s\n", id,
                   json_string_value(json_object_get(job, "state"))
                       ? json_string_value(json_object_get(job, "state"))
                       : "cancelled");
    }
    json_decref(job);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}
