/* remote_submit.c - `d2nwg submit`: upload a support set as a generation job
 * (POST /v1/jobs with a fresh Idempotency-Key, so retries are safe); with
 * --wait, long-poll it and download the best checkpoint. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"
#include "remote_call.h"
#include "remote_dataset.h"
#include "remote_job.h"
#include "remote_opts.h"
#include "remote_table.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: d2nwg submit --support FILE [options]\n"
            "\n"
            "Submits a generation job to d2nwgd and prints its id. With --wait, follows it\n"
            "to the end (progress bar on stderr) and downloads the best network to --out:\n"
            "the same bytes as `d2nwg generate` with the same generator, support set, seed\n"
            "and sampler settings.\n"
            "\n"
            "  --support FILE       support set: CSV (header; first column 'label'),\n"
            "                       NPY features with --labels y.npy, or safetensors (x, y)\n"
            "  --labels FILE        labels for an NPY support set\n"
            "  --embeddings         rows are already in the generator's feature space\n"
            "  --binary             upload the set as safetensors to /v1/datasets first and\n"
            "                       submit its id (automatic above %d values)\n"
            "  --generator NAME     a generator the daemon serves (default: 'default')\n"
            "  --candidates K       candidates to sample and rank (default: the generator's)\n"
            "  --steps N            sampler steps (default: the generator's)\n"
            "  --sampler S          ddim (deterministic) or ddpm (ancestral)\n"
            "  --guidance W         classifier-free guidance scale (default: the generator's)\n"
            "  --seed S             seed (default: the daemon draws one and records it)\n"
            "  --priority P         0..9, higher runs first (default 5)\n"
            "  --parent CHECKPOINT  record this job as derived from a checkpoint (lineage)\n"
            "  --wait               wait for the job; exit 1 if it fails or is cancelled\n"
            "  --timeout S          with --wait: give up waiting after S seconds (exit 1)\n"
            "  --out FILE           download the best checkpoint here (implies --wait);\n"
            "                       written atomically, checked against its sha256\n"
            "  --quiet              no progress bar\n",
            REMOTE_INLINE_MAX_VALUES);
    remote_opts_usage(out, 1);
}

typedef struct submit_args {
    const char *support, *labels, *generator, *sampler, *parent, *out;
    long candidates, steps, priority;
    double guidance, timeout;
    uint64_t seed;
    int has_seed, has_guidance, embeddings, binary, wait, quiet;
} submit_args;

/* Returns -1 for --help, else an exit code (EXIT_OK to go on). */
static int parse_args(submit_args *a, remote_opts *o, int argc, char **argv)
{
    const char *cmd = "submit", *v;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return -1;
        }
        if ((r = remote_opts_parse(o, cmd, argc, argv, &i))) {
            if (r < 0)
                return EXIT_USAGE;
        }
#define STR_OPT(flag, var)                                                                         \
    else if ((r = cli_opt(cmd, argc, argv, &i, flag, &v)))                                         \
    {                                                                                              \
        if (r < 0)                                                                                 \
            return EXIT_USAGE;                                                                     \
        a->var = v;                                                                                \
    }
        STR_OPT("--support", support)
        STR_OPT("--labels", labels)
        STR_OPT("--generator", generator)
        STR_OPT("--sampler", sampler)
        STR_OPT("--parent", parent)
        STR_OPT("--out", out)
#undef STR_OPT
        else if ((r = cli_opt(cmd, argc, argv, &i, "--candidates", &v)))
        {
            if (r < 0 || cli_int(cmd, "--candidates", v, 1, 1 << 20, &a->candidates))
                return EXIT_USAGE;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--steps", &v)))
        {
            if (r < 0 || cli_int(cmd, "--steps", v, 1, 1 << 20, &a->steps))
                return EXIT_USAGE;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--priority", &v)))
        {
            if (r < 0 || cli_int(cmd, "--priority", v, 0, 9, &a->priority))
                return EXIT_USAGE;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--guidance", &v)))
        {
            if (r < 0 || cli_float(cmd, "--guidance", v, 0.0, 1e6, &a->guidance))
                return EXIT_USAGE;
            a->has_guidance = 1;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--timeout", &v)))
        {
            if (r < 0 || cli_float(cmd, "--timeout", v, 0.001, 1e9, &a->timeout))
                return EXIT_USAGE;
        }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v)))
        {
            if (r < 0 || cli_u64(cmd, "--seed", v, &a->seed))
                return EXIT_USAGE;
            if (a->seed > (uint64_t)INT64_MAX) {
                cli_error(cmd, "--seed: at most %lld", (long long)INT64_MAX);
                return EXIT_USAGE;
            }
            a->has_seed = 1;
        }
        else if (cli_flag(argv, i, "--embeddings")) a->embeddings = 1;
        else if (cli_flag(argv, i, "--binary")) a->binary = 1;
        else if (cli_flag(argv, i, "--wait")) a->wait = 1;
        else if (cli_flag(argv, i, "--quiet")) a->quiet = 1;
        else
        {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!a->support) {
        cli_error(cmd, "--support is required (see --help)");
        return EXIT_USAGE;
    }
    if (a->out)
        a->wait = 1;
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
    json_t *j = api_job_request_to_json(&req);
    api_job_request_free(&req);
    return j;
}

int cmd_submit(int argc, char **argv)
{
    const char *cmd = "submit";
    submit_args a;
    memset(&a, 0, sizeof a);
    a.priority = -1;
    remote_opts o;
    remote_opts_init(&o);
    int code = parse_args(&a, &o, argc, argv);
    if (code < 0)
        return EXIT_OK;
    if (code != EXIT_OK)
        return code;
    int sampler;
    if (a.sampler && api_sampler_parse(a.sampler, &sampler) != 0) {
        cli_error(cmd, "--sampler must be ddim or ddpm, not '%s'", a.sampler);
        return EXIT_USAGE;
    }
    dataset sup = {0};
    if ((code = remote_dataset_load(cmd, a.support, a.labels, &sup)) != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(&o, cmd, &c)) != EXIT_OK) {
        dataset_free(&sup);
        return code;
    }
    json_t *body = NULL;
    char dataset_id[65];
    int binary = remote_dataset_binary(&sup, a.binary);
    if (binary)
        code = remote_dataset_upload(&c, &sup, a.embeddings, dataset_id);
    if (code == EXIT_OK) {
        body = request_json(&a, &sup, binary ? dataset_id : NULL);
        if (!body) {
            cli_error(cmd, "out of memory building the request");
            code = EXIT_FAILED;
        }
    }
    dataset_free(&sup);
    if (code != EXIT_OK) {
        remote_client_free(&c);
        return code;
    }
    char key[33];
    d2_error err;
    d2_error_clear(&err);
    json_t *job = NULL, *final = NULL;
    remote_response resp = {0}, last = {0};
    if (remote_random_hex(key, 16, &err) != 0) {
        cli_error(cmd, "cannot make an Idempotency-Key: %s", err.msg);
        code = EXIT_FAILED;
        goto out;
    }
    code = remote_post_json(&c, "/v1/jobs", body, key, 120.0, &resp, &job);
    if (code != EXIT_OK)
        goto out;
    const char *id = json_string_value(json_object_get(job, "id"));
    if (!id || !api_is_job_id(id)) {
        cli_error(cmd, "the daemon accepted the job but its answer has no valid job id");
        code = EXIT_UNREACHABLE;
        goto out;
    }
    if (!a.wait) {
        if (o.json)
            remote_print_raw(&resp);
        else
            printf("%s\n", id);
        goto out;
    }
    if (!o.json) {
        printf("%s\n", id);
        fflush(stdout);
    }
    code = remote_job_wait(&c, id, a.timeout, !a.quiet, &final, &last);
    if (code != EXIT_OK)
        goto out;
    code = remote_job_exit(cmd, final);
    remote_show(&last, final, o.json, remote_table_job);
    if (code != EXIT_OK || !a.out)
        goto out;
    const char *best = remote_job_best_checkpoint(final);
    if (!best || !api_is_checkpoint_id(best)) {
        cli_error(cmd, "job %s succeeded without a checkpoint to download", id);
        code = EXIT_UNREACHABLE;
        goto out;
    }
    char sha[65];
    size_t n = 0;
    code = remote_fetch_weights(&c, best, a.out, sha, &n);
    if (code == EXIT_OK)
        fprintf(o.json ? stderr : stdout, "wrote %s (%s, %zu bytes, sha256 %s)\n", a.out, best, n,
                sha);
out:
    json_decref(final);
    json_decref(job);
    json_decref(body);
    remote_response_free(&last);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}
