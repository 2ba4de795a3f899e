/* remote_submit.c - `d2nwg submit`: upload a support set as a generation job
 * (POST /v1/jobs with a fresh Idempotency-Key, so retries are safe); with
 * --wait, long-poll it and download the best checkpoint. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "cli_opts.h"
#include "commands.h"
#include "remote_call.h"
#include "remote_dataset.h"
#include "remote_job.h"
#include "remote_opts.h"
#include "remote_table.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char *const SAMPLERS[] = {"ddim", "ddpm", NULL};

/* What the command line says (cli_parse fills it). */
typedef struct submit_opts {
    const char *support, *labels, *generator, *parent, *out;
    int candidates, steps, priority, sampler, embeddings, binary, wait, no_gate, no_refine;
    double guidance, timeout;
    uint64_t seed;
} submit_opts;

static const cli_option SUBMIT_OPTS[] = {
    {.name = "--support", .type = CLI_PATH, .off = offsetof(submit_opts, support),
     .metavar = "FILE", .required = 1,
     .help = "support set: CSV (header; first column 'label'),\n"
             "NPY features with --labels y.npy, or safetensors (x, y)"},
    {.name = "--labels", .type = CLI_PATH, .off = offsetof(submit_opts, labels),
     .metavar = "FILE", .help = "labels for an NPY support set"},
    {.name = "--embeddings", .type = CLI_FLAG, .off = offsetof(submit_opts, embeddings),
     .help = "rows are already in the generator's feature space"},
    {.name = "--binary", .type = CLI_FLAG, .off = offsetof(submit_opts, binary),
     .help = "upload the set as safetensors to /v1/datasets first and\n"
             "submit its id (automatic above " STR(REMOTE_INLINE_MAX_VALUES) " values)"},
    {.name = "--generator", .type = CLI_STRING, .off = offsetof(submit_opts, generator),
     .metavar = "NAME", .help = "a generator the daemon serves", .unset = "'default'"},
    {.name = "--candidates", .type = CLI_INT, .off = offsetof(submit_opts, candidates),
     .metavar = "K", .help = "candidates to sample and rank", .unset = "the generator's",
     .lo = 1, .hi = 1 << 20},
    {.name = "--steps", .type = CLI_INT, .off = offsetof(submit_opts, steps), .metavar = "N",
     .help = "sampler steps", .unset = "the generator's", .lo = 1, .hi = 1 << 20},
    {.name = "--sampler", .type = CLI_CHOICE, .off = offsetof(submit_opts, sampler),
     .metavar = "S", .help = "ddim (deterministic) or ddpm (ancestral)",
     .unset = "the generator's", .choices = SAMPLERS},
    {.name = "--guidance", .type = CLI_FLOAT, .off = offsetof(submit_opts, guidance),
     .metavar = "W", .help = "classifier-free guidance scale", .unset = "the generator's",
     .flo = 0.0, .fhi = 1e6},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(submit_opts, seed), .metavar = "S",
     .help = "seed", .unset = "the daemon draws one and records it", .hi = INT64_MAX},
    {.name = "--priority", .type = CLI_INT, .off = offsetof(submit_opts, priority),
     .metavar = "P", .help = "higher runs first", .def = "5", .lo = 0, .hi = 9},
    {.name = "--no-gate", .type = CLI_FLAG, .off = offsetof(submit_opts, no_gate),
     .help = "return the diffusion candidates alone: do not compare\n"
             "them with the two baselines (prototypes, logreg)"},
    {.name = "--no-refine", .type = CLI_FLAG, .off = offsetof(submit_opts, no_refine),
     .help = "the decoded samples as they are: do not make each\nthe prior's centre of logistic regression on the\nsupport set"},
    {.name = "--parent", .type = CLI_STRING, .off = offsetof(submit_opts, parent),
     .metavar = "CHECKPOINT", .help = "record this job as derived from a checkpoint\n(lineage)"},
    {.name = "--wait", .type = CLI_FLAG, .off = offsetof(submit_opts, wait),
     .help = "wait for the job; exit 1 if it fails or is cancelled"},
    {.name = "--timeout", .type = CLI_SECONDS, .off = offsetof(submit_opts, timeout),
     .help = "with --wait: give up waiting after S seconds (exit 1)", .unset = "no limit",
     .flo = 0.001, .fhi = 1e9},
    {.name = "--out", .type = CLI_PATH, .off = offsetof(submit_opts, out), .metavar = "FILE",
     .help = "download the best checkpoint here (implies --wait);\n"
             "written atomically, checked against its sha256"},
};

static const cli_command SUBMIT_CMD = {
    .name = "submit",
    .synopsis = "--support FILE [options]",
    .about = "Submits a generation job to d2nwgd and prints its id. With --wait, follows it\n"
             "to the end (progress bar on stderr), shows the ranking (each entry's method)\n"
             "and the gate's decision, and downloads the best network to --out: the same\n"
             "bytes as `d2nwg generate` with the same generator, support set, seed, sampler\n"
             "settings and gate (on unless --no-gate).",
    .opts = SUBMIT_OPTS,
    .nopts = CLI_NOPTS(SUBMIT_OPTS),
    .globals = CLI_G_REMOTE | CLI_G_JSON | CLI_G_QUIET,
    .footer = REMOTE_EXIT_STATUS,
};

/* What request_json and the rest of the command use. */
typedef struct submit_args {
    const char *support, *labels, *generator, *sampler, *parent, *out;
    long candidates, steps, priority;
    double guidance, timeout;
    uint64_t seed;
    int has_seed, has_guidance, embeddings, binary, wait, quiet, gate, refine;
} submit_args;

/* The options as submit_args (0 for the generator's defaults), checked
 * together. Returns EXIT_OK to go on. */
static int to_args(const submit_opts *o, const cli_globals *g, submit_args *a)
{
    const char *cmd = "submit";
    memset(a, 0, sizeof *a);
    a->support = o->support;
    a->labels = o->labels;
    a->generator = o->generator;
    a->sampler = o->sampler >= 0 ? SAMPLERS[o->sampler] : NULL;
    a->parent = o->parent;
    a->out = o->out;
    a->candidates = o->candidates != CLI_UNSET_INT ? o->candidates : 0;
    a->steps = o->steps != CLI_UNSET_INT ? o->steps : 0;
    a->priority = o->priority;
    a->has_guidance = !isnan(o->guidance);
    a->guidance = a->has_guidance ? o->guidance : 0.0;
    a->timeout = isnan(o->timeout) ? 0.0 : o->timeout;
    a->has_seed = o->seed != CLI_UNSET_U64;
    a->seed = a->has_seed ? o->seed : 0;
    a->embeddings = o->embeddings;
    a->binary = o->binary;
    a->gate = !o->no_gate;
    a->refine = !o->no_refine;
    a->wait = o->wait || o->out;
    a->quiet = g->quiet;
    if (a->timeout > 0 && !a->wait) {
        cli_error(cmd, "--timeout goes with --wait");
        return EXIT_USAGE;
    }
    if (a->generator && (!a->generator[0] || strlen(a->generator) >= API_NAME_LEN)) {
        cli_error(cmd, "--generator: expected 1..%d characters", API_NAME_LEN - 1);
        return EXIT_USAGE;
    }
    if (a->parent && !api_is_checkpoint_id(a->parent)) {
        cli_error(cmd, "--parent: '%s' is not a checkpoint id (ck_ + 20 hex digits + _rank)",
                  a->parent);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* The request: the support set inline (taken, freed with the request), or
 * the id of an uploaded one when dataset_id is not NULL. */
static json_t *request_json(const submit_args *a, dataset *sup, const char *dataset_id)
{
    api_job_request req;
    api_job_request_init(&req);
    if (a->generator)
        snprintf(req.generator, sizeof req.generator, "%s", a->generator);
    if (dataset_id) {
        snprintf(req.dataset_id, sizeof req.dataset_id, "%s", dataset_id);
    } else {
        req.has_dataset = 1;
        req.data = *sup;
        memset(sup, 0, sizeof *sup);
    }
    req.kind = a->embeddings ? API_KIND_EMBEDDINGS : API_KIND_SAMPLES;
    req.candidates = (int)a->candidates;
    req.steps = (int)a->steps;
    if (a->sampler)
        api_sampler_parse(a->sampler, &req.sampler);
    req.has_guidance = a->has_guidance;
    req.guidance = a->guidance;
    req.has_seed = a->has_seed;
    req.seed = (int64_t)a->seed;
    req.priority = a->priority >= 0 ? (int)a->priority : 5;
    if (a->parent)
        snprintf(req.parent_checkpoint, sizeof req.parent_checkpoint, "%s", a->parent);
    req.gate = a->gate;
    req.refine = a->refine;
    json_t *j = api_job_request_to_json(&req);
    api_job_request_free(&req);
    return j;
}

/* The support set as the request body: inline, or uploaded first (large or
 * --binary). Returns an exit code; *body is the caller's. */
static int build_body(remote_client *c, const submit_args *a, json_t **body)
{
    dataset sup = {0};
    int code = remote_dataset_load("submit", a->support, a->labels, &sup);
    if (code != EXIT_OK)
        return code;
    char dataset_id[65];
    int binary = remote_dataset_binary(&sup, a->binary);
    if (binary)
        code = remote_dataset_upload(c, &sup, a->embeddings, dataset_id);
    if (code == EXIT_OK) {
        *body = request_json(a, &sup, binary ? dataset_id : NULL);
        if (!*body) {
            cli_error("submit", "out of memory building the request");
            code = EXIT_FAILED;
        }
    }
    dataset_free(&sup);
    return code;
}

/* POST /v1/jobs with a fresh Idempotency-Key; *job and *resp are the
 * caller's; id gets the job's id (read through api_job_from_json). */
static int post_job(remote_client *c, const json_t *body, remote_response *resp, json_t **job,
                    char id[API_ID_LEN])
{
    char key[33];
    d2_error err;
    d2_error_clear(&err);
    if (remote_random_hex(key, 16, &err) != 0) {
        cli_error("submit", "cannot make an Idempotency-Key: %s", err.msg);
        return EXIT_FAILED;
    }
    int code = remote_post_json(c, "/v1/jobs", body, key, 120.0, resp, job);
    if (code != EXIT_OK)
        return code;
    api_job accepted;
    api_error pe;
    int ok = api_job_from_json(*job, &accepted, &pe) == 0 && api_is_job_id(accepted.id);
    if (ok)
        snprintf(id, API_ID_LEN, "%s", accepted.id);
    api_job_free(&accepted);
    if (!ok) {
        cli_error("submit", "the daemon accepted the job but its answer has no valid job id");
        return EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

/* --wait: follow the job to its end, show it, and download the best
 * checkpoint to --out. */
static int follow_job(remote_client *c, const submit_args *a, const cli_globals *g,
                      const char *id)
{
    json_t *final = NULL;
    remote_response last = {0};
    int code = remote_job_wait(c, id, a->timeout, !a->quiet, &final, &last);
    if (code == EXIT_OK) {
        code = remote_job_exit("submit", final);
        remote_show(&last, final, g->json, remote_table_job);
    }
    char best[API_ID_LEN];
    int method = GEN_METHOD_DIFFUSION;
    if (code == EXIT_OK && a->out && remote_job_best_checkpoint(final, best, &method) != 0) {
        cli_error("submit", "job %s succeeded without a checkpoint to download", id);
        code = EXIT_UNREACHABLE;
    } else if (code == EXIT_OK && a->out) {
        char sha[65];
        size_t n = 0;
        code = remote_fetch_weights(c, best, a->out, sha, &n);
        if (code == EXIT_OK)
            fprintf(g->json ? stderr : stdout, "wrote %s (%s, method %s, %zu bytes, sha256 %s)\n",
                    a->out, best, api_method_name(method), n, sha);
    }
    json_decref(final);
    remote_response_free(&last);
    return code;
}

int cmd_submit(cli_globals *g, int argc, char **argv)
{
    submit_opts o;
    submit_args a;
    int code;
    if (!cli_parse(&SUBMIT_CMD, &o, g, argc, argv, &code))
        return code;
    if ((code = to_args(&o, g, &a)) != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(g, "submit", &c)) != EXIT_OK)
        return code;
    json_t *body = NULL, *job = NULL;
    remote_response resp = {0};
    char id[API_ID_LEN] = "";
    code = build_body(&c, &a, &body);
    if (code == EXIT_OK)
        code = post_job(&c, body, &resp, &job, id);
    if (code == EXIT_OK && !a.wait && g->json)
        remote_print_raw(&resp);
    else if (code == EXIT_OK && !g->json)
        printf("%s\n", id); /* first, so a script has it even if the wait fails */
    fflush(stdout);
    if (code == EXIT_OK && a.wait)
        code = follow_job(&c, &a, g, id);
    json_decref(job);
    json_decref(body);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}
