/* remote_jobs.c - `d2nwg jobs`, `status`, `wait` and `cancel`: list jobs, show
 * one, follow one to its end, cancel one. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "cli_opts.h"
#include "commands.h"
#include "remote_call.h"
#include "remote_follow.h"
#include "remote_job.h"
#include "remote_opts.h"
#include "remote_table.h"

/* The job id of status, wait and cancel: EXIT_OK, or EXIT_USAGE with a
 * message. */
static int check_job_id(const char *cmd, const char *id)
{
    if (!api_is_job_id(id)) {
        cli_error(cmd, "'%s' is not a job id (j_ followed by 20 hex digits)", id);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* ---- jobs ---- */

static const char *const JOB_STATES[] = {"queued", "running", "succeeded", "failed",
                                         "cancelled", NULL};

typedef struct jobs_opts {
    int state, limit;
    const char *after;
    int follow;
    double for_seconds;
} jobs_opts;

static const cli_option JOBS_OPTS[] = {
    {.name = "--state", .type = CLI_CHOICE, .off = offsetof(jobs_opts, state), .metavar = "S",
     .help = "only jobs in this state", .unset = "any", .choices = JOB_STATES},
    {.name = "--limit", .type = CLI_INT, .off = offsetof(jobs_opts, limit), .metavar = "N",
     .help = "jobs per page", .unset = "the daemon's, 50", .lo = 1, .hi = 200},
    {.name = "--after", .type = CLI_STRING, .off = offsetof(jobs_opts, after),
     .metavar = "JOB_ID",
     .help = "the page after this job (the previous page's\nlast line says which)"},
    {.name = "--follow", .type = CLI_FLAG, .off = offsetof(jobs_opts, follow),
     .help = "print job state and progress changes as they\nhappen (GET /v1/events), "
             "until interrupted;\nreconnects by itself, missing no event"},
    {.name = "--for", .type = CLI_SECONDS, .off = offsetof(jobs_opts, for_seconds),
     .metavar = "SECONDS", .help = "with --follow: stop after this long (exit 0)",
     .unset = "until interrupted", .flo = 0.001, .fhi = 1e9},
};

static const cli_command JOBS_CMD = {
    .name = "jobs",
    .synopsis = "[--state S] [--limit N] [--after JOB_ID] | --follow [--for SECONDS]\n"
                "       [options]",
    .about = "Lists the daemon's jobs, newest first, one page at a time; with --follow,\n"
             "prints their changes as they happen instead (one line an event; --json:\n"
             "one JSON object a line, {\"id\", \"event\", \"data\"}).",
    .opts = JOBS_OPTS,
    .nopts = CLI_NOPTS(JOBS_OPTS),
    .globals = CLI_G_REMOTE | CLI_G_JSON,
    .footer = REMOTE_EXIT_STATUS,
};

static int follow_jobs(cli_globals *g, const jobs_opts *o)
{
    const char *cmd = "jobs";
    if (!o->follow) {
        cli_error(cmd, "--for: only with --follow");
        return EXIT_USAGE;
    }
    if (o->state >= 0 || o->limit > 0 || o->after) {
        cli_error(cmd, "--follow prints changes as they happen; --state, --limit and --after "
                       "list pages of jobs (use one or the other)");
        return EXIT_USAGE;
    }
    remote_client c;
    int code = remote_opts_client(g, cmd, &c);
    if (code != EXIT_OK)
        return code;
    code = remote_follow(&c, isnan(o->for_seconds) ? 0 : o->for_seconds, g->json, stdout);
    remote_client_free(&c);
    return code;
}

int cmd_jobs(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "jobs";
    jobs_opts o;
    int code;
    if (!cli_parse(&JOBS_CMD, &o, g, argc, argv, &code))
        return code;
    if (o.follow || !isnan(o.for_seconds))
        return follow_jobs(g, &o);
    const char *state = o.state >= 0 ? JOB_STATES[o.state] : NULL, *after = o.after;
    long limit = o.limit > 0 ? o.limit : 0;
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
    if ((code = remote_opts_client(g, cmd, &c)) != EXIT_OK)
        return code;
    code = remote_get_show(&c, path, g->json, remote_table_jobs);
    remote_client_free(&c);
    return code;
}

/* ---- status ---- */

/* The one word status, wait and cancel take. */
typedef struct job_id_opts {
    const char *id;
    double timeout; /* wait */
} job_id_opts;

static const cli_command STATUS_CMD = {
    .name = "status",
    .synopsis = "JOB_ID [options]",
    .about = "Shows a job: state, progress, parameters, times and, once it succeeded, its\n"
             "ranked checkpoints. Exit status 1 when the job failed or was cancelled.",
    .globals = CLI_G_REMOTE | CLI_G_JSON,
    .positional = "JOB_ID",
    .positional_off = offsetof(job_id_opts, id),
    .missing_positional = "which job? (d2nwg status JOB_ID; 'd2nwg jobs' lists them)",
    .footer = REMOTE_EXIT_STATUS,
};

/* Parse and check the id, then make the client: 1 go on, 0 return *code. */
static int job_id_start(const cli_command *cmd, job_id_opts *o, cli_globals *g, int argc,
                        char **argv, remote_client *c, int *code)
{
    if (!cli_parse(cmd, o, g, argc, argv, code))
        return 0;
    if ((*code = check_job_id(cmd->name, o->id)) != EXIT_OK)
        return 0;
    return (*code = remote_opts_client(g, cmd->name, c)) == EXIT_OK;
}

int cmd_status(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "status";
    job_id_opts o = {0};
    remote_client c;
    int code;
    if (!job_id_start(&STATUS_CMD, &o, g, argc, argv, &c, &code))
        return code;
    const char *id = o.id;
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    remote_response resp;
    json_t *job = NULL;
    code = remote_get_json(&c, path, 60.0, &resp, &job);
    if (code == EXIT_OK) {
        remote_show(&resp, job, g->json, remote_table_job);
        api_job parsed;
        api_error pe;
        if (api_job_from_json(job, &parsed, &pe) != 0) {
            cli_error(cmd, "the daemon's answer for job %s has no valid state", id);
            code = EXIT_UNREACHABLE;
        } else if (parsed.state == API_JOB_FAILED || parsed.state == API_JOB_CANCELLED) {
            code = remote_job_exit(cmd, job);
        }
        api_job_free(&parsed);
    }
    json_decref(job);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}

/* ---- wait ---- */

static const cli_option WAIT_OPTS[] = {
    {.name = "--timeout", .type = CLI_SECONDS, .off = offsetof(job_id_opts, timeout),
     .help = "stop waiting after S seconds", .unset = "no limit", .flo = 0.001, .fhi = 1e9},
};

static const cli_command WAIT_CMD = {
    .name = "wait",
    .synopsis = "JOB_ID [--timeout S] [options]",
    .about = "Follows a job to its end (long-poll; progress bar on stderr), then shows it.\n"
             "Exit status 0 when it succeeded; 1 when it failed, was cancelled, or is not\n"
             "finished after --timeout seconds.",
    .opts = WAIT_OPTS,
    .nopts = CLI_NOPTS(WAIT_OPTS),
    .globals = CLI_G_REMOTE | CLI_G_JSON | CLI_G_QUIET,
    .positional = "JOB_ID",
    .positional_off = offsetof(job_id_opts, id),
    .missing_positional = "which job? (d2nwg wait JOB_ID; 'd2nwg jobs' lists them)",
    .footer = REMOTE_EXIT_STATUS,
};

int cmd_wait(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "wait";
    job_id_opts o = {0};
    remote_client c;
    int code;
    if (!job_id_start(&WAIT_CMD, &o, g, argc, argv, &c, &code))
        return code;
    double timeout = isnan(o.timeout) ? 0.0 : o.timeout;
    json_t *job = NULL;
    remote_response last;
    code = remote_job_wait(&c, o.id, timeout, !g->quiet, &job, &last);
    if (code == EXIT_OK) {
        remote_show(&last, job, g->json, remote_table_job);
        code = remote_job_exit(cmd, job);
    }
    json_decref(job);
    remote_response_free(&last);
    remote_client_free(&c);
    return code;
}

/* ---- cancel ---- */

static const cli_command CANCEL_CMD = {
    .name = "cancel",
    .synopsis = "JOB_ID [options]",
    .about = "Cancels a job: a queued one at once, a running one at the sampler's next step\n"
             "('d2nwg wait JOB_ID' shows when it stopped). A job that already finished is\n"
             "refused (exit 4).",
    .globals = CLI_G_REMOTE | CLI_G_JSON,
    .positional = "JOB_ID",
    .positional_off = offsetof(job_id_opts, id),
    .missing_positional = "which job? (d2nwg cancel JOB_ID; 'd2nwg jobs' lists them)",
    .footer = REMOTE_EXIT_STATUS,
};

int cmd_cancel(cli_globals *g, int argc, char **argv)
{
    job_id_opts o = {0};
    remote_client c;
    int code;
    if (!job_id_start(&CANCEL_CMD, &o, g, argc, argv, &c, &code))
        return code;
    const char *id = o.id;
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s:cancel", id);
    remote_request req = {.method = "POST", .path = path, .timeout = 60.0};
    remote_response resp;
    json_t *job = NULL;
    code = remote_call_json(&c, &req, &resp, &job);
    api_job parsed;
    api_error pe;
    api_job_init(&parsed);
    if (code == EXIT_OK && !g->json && resp.status != 202 &&
        api_job_from_json(job, &parsed, &pe) != 0) {
        cli_error(CANCEL_CMD.name, "the daemon's answer for job %s has no valid state", id);
        code = EXIT_UNREACHABLE;
    }
    if (code == EXIT_OK) {
        if (g->json)
            remote_print_raw(&resp);
        else if (resp.status == 202)
            printf("%s: cancel requested; it stops at the sampler's next step\n", id);
        else
            printf("%s: %s\n", id, api_job_state_name(parsed.state));
    }
    api_job_free(&parsed);
    json_decref(job);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}
