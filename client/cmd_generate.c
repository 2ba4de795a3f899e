/* cmd_generate.c - `d2nwg generate`: weights for a support set, offline. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "backend.h"
#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "data.h"
#include "api.h"
#include "generator.h"
#include "safetensors.h"

static const char *const SAMPLERS[] = {"ddim", "ddpm", NULL}; /* gen_sampler order */

typedef struct generate_opts {
    const char *generator, *support, *labels, *out, *all, *device;
    int embeddings, candidates, steps, sampler, no_gate, no_refine;
    double guidance;
    uint64_t seed;
} generate_opts;

static const cli_option GENERATE_OPTS[] = {
    {.name = "--generator", .type = CLI_PATH, .off = offsetof(generate_opts, generator),
     .metavar = "FILE", .help = "generator bundle ('d2nwg train')", .required = 1},
    {.name = "--support", .type = CLI_PATH, .off = offsetof(generate_opts, support),
     .metavar = "FILE", .required = 1,
     .help = "support set: CSV (header; first column 'label'),\n"
             "NPY features with --labels y.npy, or safetensors (x, y)"},
    {.name = "--labels", .type = CLI_PATH, .off = offsetof(generate_opts, labels),
     .metavar = "FILE", .help = "labels for an NPY support set"},
    {.name = "--embeddings", .type = CLI_FLAG, .off = offsetof(generate_opts, embeddings),
     .help = "rows are already in the generator's feature space"},
    {.name = "--candidates", .type = CLI_INT, .off = offsetof(generate_opts, candidates),
     .metavar = "K", .help = "candidates to sample", .unset = "the bundle's", .lo = 1,
     .hi = 1024},
    {.name = "--steps", .type = CLI_INT, .off = offsetof(generate_opts, steps), .metavar = "N",
     .help = "sampler steps", .unset = "the bundle's", .lo = 1, .hi = 4000},
    {.name = "--sampler", .type = CLI_CHOICE, .off = offsetof(generate_opts, sampler),
     .metavar = "S", .help = "ddim (deterministic) or ddpm (ancestral)",
     .unset = "the bundle's", .choices = SAMPLERS},
    {.name = "--guidance", .type = CLI_FLOAT, .off = offsetof(generate_opts, guidance),
     .metavar = "W", .help = "classifier-free guidance scale", .unset = "the bundle's",
     .flo = 0.0, .fhi = 20.0},
    {.name = "--seed", .type = CLI_U64, .off = offsetof(generate_opts, seed), .metavar = "S",
     .help = "seed; same seed -> same bytes", .def = "1"},
    {.name = "--out", .type = CLI_PATH, .off = offsetof(generate_opts, out), .metavar = "FILE",
     .help = "the best network, as safetensors (PyTorch\nstate_dict names)", .required = 1},
    {.name = "--all", .type = CLI_PATH, .off = offsetof(generate_opts, all), .metavar = "DIR",
     .help = "also write every ranked entry (the baselines\ntoo): DIR/rank-01.safetensors..."},
    {.name = "--no-gate", .type = CLI_FLAG, .off = offsetof(generate_opts, no_gate),
     .help = "the diffusion candidates alone: do not compare\nthem with the two baselines"},
    {.name = "--no-refine", .type = CLI_FLAG, .off = offsetof(generate_opts, no_refine),
     .help = "the decoded samples as they are: do not fit them\nto the support set (a linear head's samples are\nthe prior of logistic regression by default)"},
    {.name = "--device", .type = CLI_STRING, .off = offsetof(generate_opts, device),
     .metavar = "DEV", .help = "cpu or cuda:N", .def = "cpu"},
};

static const cli_command GENERATE_CMD = {
    .name = "generate",
    .synopsis = "--generator GEN --support FILE --out MODEL.safetensors [options]",
    .about = "Generates a network for the support set without training: samples K candidate\n"
             "weight sets, makes each the prior's centre of logistic regression on the\n"
             "support set (linear heads; --no-refine keeps the samples as they are) and\n"
             "scores each on the support set. The gate (on unless --no-gate)\n"
             "then cross-validates them on the support set against two baselines (nearest\n"
             "class mean 'prototypes', logistic regression 'logreg') and ranks the best\n"
             "first; the table's method column says what each entry is. Writes the first.",
    .opts = GENERATE_OPTS,
    .nopts = CLI_NOPTS(GENERATE_OPTS),
    .globals = CLI_G_QUIET | CLI_G_JSON,
};

/* Candidate k as safetensors at path. */
static int write_candidate(const generator *g, const gen_request *req, const gen_result *res,
                           int k, const char *path, d2_error *err)
{
    unsigned char *bytes = NULL;
    size_t len = 0;
    int rc = generator_checkpoint_bytes(g, req, res, k, &bytes, &len, err);
    if (!rc)
        rc = d2_write_file_atomic(path, bytes, len, err);
    free(bytes);
    return rc;
}

/* --all: every candidate, ranked, as DIR/rank-NN.safetensors. */
static int write_all(const generator *g, const gen_request *req, const gen_result *res,
                     const char *dir, d2_error *err)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        return d2_fail(err, D2_EIO, "cannot create %s: %s", dir, strerror(errno));
    for (int k = 0; k < res->count; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/rank-%02d.safetensors", dir, k + 1);
        int rc = write_candidate(g, req, res, k, path, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* The gate's decision under the table, and the out-of-distribution warning. */
static void print_gate(const gen_gate *gate, int requested)
{
    if (!requested) {
        printf("gate: off (--no-gate): the diffusion candidates alone\n");
        return;
    }
    printf("gate: %s: %s\n", gate->applied ? gen_method_name(gate->chosen) : "not applied",
           gate->reason);
    if (gate->ood)
        printf("warning: the support set is out of the zoo's distribution (nearest zoo task at "
               "distance %.4g, above %.1f%% of the zoo's own nearest-neighbour distances); the "
               "generated weights may be poor\n",
               (double)gate->ood_distance, (double)gate->ood_percentile);
}

static void print_table(const gen_info *in, const gen_request *req, const gen_result *res,
                        const generate_opts *o)
{
    printf("generator %.12s  dataset %.12s  %d-way, %d support rows  seed %llu  %s %d steps, "
           "guidance %.2f  (%.0f ms)\n",
           in->id, res->dataset_fingerprint, res->way, req->support->n,
           (unsigned long long)o->seed, SAMPLERS[req->sampler == GEN_SAMPLER_DDPM], req->steps,
           (double)req->guidance, res->seconds * 1000.0);
    printf("| rank | method     | candidate | support acc | support loss | norm   | "
           "nearest zoo (dist) |\n");
    printf("|-----:|:-----------|----------:|------------:|-------------:|-------:|"
           "-------------------:|\n");
    for (int k = 0; k < res->count; k++) {
        const gen_candidate *c = &res->ranked[k];
        char index[16] = "-"; /* a baseline is no sampled candidate */
        if (c->index >= 0)
            snprintf(index, sizeof index, "%d", c->index);
        printf("| %4d | %-10s | %9s | %11.4f | %12.4f | %6.3f | %7d (%8.3f) |\n", k + 1,
               gen_method_name(c->method), index, (double)c->support_acc,
               (double)c->support_loss, (double)c->norm, c->zoo_nearest,
               (double)c->zoo_distance);
    }
    print_gate(&res->gate, req->gate);
    if (res->count > 0 && res->ranked[0].sample)
        printf("refine: each diffusion sample was the prior's centre of logistic regression "
               "on the support set (--no-refine: the samples alone)\n");
    printf("wrote %s%s%s\n", o->out, o->all ? " and " : "", o->all ? o->all : "");
}

/* One ranking entry as --json writes it: a baseline has no candidate index (null). */
static json_t *candidate_json(const gen_candidate *c, int rank)
{
    return json_pack("{s:i,s:s,s:o,s:f,s:f,s:f,s:f,s:i,s:f}", "rank", rank, "method",
                     gen_method_name(c->method), "candidate",
                     c->index >= 0 ? json_integer(c->index) : json_null(), "support_acc",
                     (double)c->support_acc, "sample_support_acc", (double)c->sample_acc,
                     "support_loss", (double)c->support_loss, "norm",
                     (double)c->norm, "zoo_nearest", c->zoo_nearest, "zoo_distance",
                     (double)c->zoo_distance);
}

/* --json: the table's content as one JSON object on stdout; the gate and its
 * warnings in the shapes the API's Job uses (proto/api_gate.c). */
static int print_generate_json(const gen_info *in, const gen_request *req, const gen_result *res,
                               const generate_opts *o)
{
    json_t *ranked = json_array();
    for (int k = 0; ranked && k < res->count; k++)
        json_array_append_new(ranked, candidate_json(&res->ranked[k], k + 1));
    api_gate gate;
    api_gate_from_result(&gate, &res->gate, req->gate);
    int refined = 0; /* whether the diffusion entries were refined */
    for (int k = 0; k < res->count; k++)
        refined |= res->ranked[k].sample != NULL;
    json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:I,s:s,s:i,s:f,s:b,s:f,s:s,s:o,s:o,s:o,s:o}",
                          "generator", in->id, "dataset", res->dataset_fingerprint, "way",
                          res->way, "support_rows", req->support->n, "seed",
                          (json_int_t)o->seed, "sampler",
                          SAMPLERS[req->sampler == GEN_SAMPLER_DDPM], "steps", req->steps,
                          "guidance", (double)req->guidance, "refine", refined, "seconds",
                          res->seconds, "out",
                          o->out, "all", o->all ? json_string(o->all) : json_null(),
                          "candidates", ranked ? ranked : json_null(), "gate",
                          api_gate_to_json(&gate), "warnings", api_gate_warnings_to_json(&gate));
    return cli_print_json("generate", j) ? D2_ENOMEM : 0;
}

/* The request: the options, else the bundle's defaults. */
static gen_request make_request(const gen_info *in, const generate_opts *o, const dataset *sup)
{
    gen_request req = {
        .support = sup,
        .embeddings = o->embeddings,
        .candidates = o->candidates != CLI_UNSET_INT ? o->candidates : in->default_candidates,
        .steps = o->steps != CLI_UNSET_INT ? o->steps : in->default_steps,
        .sampler = o->sampler >= 0 ? (gen_sampler)o->sampler : in->default_sampler,
        .guidance = !isnan(o->guidance) ? (float)o->guidance : in->default_guidance,
        .seed = o->seed,
        .gate = !o->no_gate,
        .refine = !o->no_refine,
    };
    return req;
}

/* Generate with a loaded generator, write --out (and --all), print. */
static int generate_and_write(const generator *g, backend_t *be, const generate_opts *o,
                              const cli_globals *gl, const dataset *sup, d2_error *err)
{
    const gen_info *in = generator_info(g);
    gen_request req = make_request(in, o, sup);
    gen_workspace *ws = NULL;
    gen_result res = {0};
    int rc = generator_check_support(g, sup, o->embeddings, err);
    if (rc) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return d2_fail(err, rc, "%s: %s", o->support, msg);
    }
    if (!(rc = gen_workspace_create(&ws, g, be, req.candidates, err)) &&
        !(rc = generator_generate(g, ws, &req, &res, err)) &&
        !(rc = write_candidate(g, &req, &res, 0, o->out, err)) && o->all)
        rc = write_all(g, &req, &res, o->all, err);
    if (!rc && gl->json)
        rc = print_generate_json(in, &req, &res, o);
    else if (!rc && !gl->quiet)
        print_table(in, &req, &res, o);
    gen_result_free(&res);
    gen_workspace_free(ws);
    return rc;
}

int cmd_generate(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "generate";
    generate_opts o;
    int code;
    if (!cli_parse(&GENERATE_CMD, &o, g, argc, argv, &code))
        return code;
    d2_error err = {0};
    dataset sup = {0};
    if (data_load_support(&sup, o.support, o.labels, &err)) {
        cli_error(cmd, "%s", err.msg);
        return EXIT_FAILED;
    }
    backend_t *be = NULL;
    generator *gen = NULL;
    code = EXIT_OK;
    if (backend_create(&be, o.device, 0, &err) || generator_load(&gen, o.generator, be, &err) ||
        generate_and_write(gen, be, &o, g, &sup, &err)) {
        if (err.msg[0])
            cli_error(cmd, "%s", err.msg);
        code = EXIT_FAILED;
    }
    generator_free(gen);
    backend_destroy(be);
    dataset_free(&sup);
    return code;
}
