/* remote_generators.c - `d2nwg generators` (what the daemon serves) and
 * `d2nwg retrieve` (the zoo checkpoints nearest to a support set). */
#include <stddef.h>
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

static const cli_command GENERATORS_CMD = {
    .name = "generators",
    .synopsis = "[options]",
    .about = "Lists the generators the daemon serves: target network, input and feature\n"
             "dimensions, ways, zoo and sampler defaults.",
    .globals = CLI_G_REMOTE | CLI_G_JSON,
    .footer = REMOTE_EXIT_STATUS,
};

int cmd_generators(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "generators";
    int code, none;
    if (!cli_parse(&GENERATORS_CMD, &none, g, argc, argv, &code))
        return code;
    remote_client c;
    if ((code = remote_opts_client(g, cmd, &c)) != EXIT_OK)
        return code;
    code = remote_get_show(&c, "/v1/generators", g->json, remote_table_generators);
    remote_client_free(&c);
    return code;
}

typedef struct retrieve_opts {
    const char *support, *labels, *generator, *out;
    int k, embeddings, binary;
} retrieve_opts;

static const cli_option RETRIEVE_OPTS[] = {
    {.name = "--support", .type = CLI_PATH, .off = offsetof(retrieve_opts, support),
     .metavar = "FILE", .required = 1,
     .help = "support set: CSV (header; first column 'label'),\n"
             "NPY features with --labels y.npy, or safetensors (x, y)"},
    {.name = "--labels", .type = CLI_PATH, .off = offsetof(retrieve_opts, labels),
     .metavar = "FILE", .help = "labels for an NPY support set"},
    {.name = "--embeddings", .type = CLI_FLAG, .off = offsetof(retrieve_opts, embeddings),
     .help = "rows are already in the generator's feature space"},
    {.name = "--binary", .type = CLI_FLAG, .off = offsetof(retrieve_opts, binary),
     .help = "upload the set as safetensors to /v1/datasets first\n"
             "(automatic for large sets)"},
    {.name = "--generator", .type = CLI_STRING, .off = offsetof(retrieve_opts, generator),
     .metavar = "NAME", .help = "a generator the daemon serves", .unset = "'default'"},
    {.name = "--k", .alias = "-k", .type = CLI_INT, .off = offsetof(retrieve_opts, k),
     .metavar = "K", .help = "how many", .def = "5", .lo = 1, .hi = 1 << 20},
    {.name = "--out", .type = CLI_PATH, .off = offsetof(retrieve_opts, out), .metavar = "FILE",
     .help = "also download the nearest hit's weights here (safetensors,\n"
             "the same layout as a generated checkpoint)"},
};

static const cli_command RETRIEVE_CMD = {
    .name = "retrieve",
    .synopsis = "--support FILE [-k 5] [options]",
    .about = "Model retrieval: the zoo checkpoints nearest to a support set in the\n"
             "generator's dataset-embedding space, with their accuracy on it; each\n"
             "hit's weights are at its weights_url (--out FILE fetches the nearest).",
    .opts = RETRIEVE_OPTS,
    .nopts = CLI_NOPTS(RETRIEVE_OPTS),
    .globals = CLI_G_REMOTE | CLI_G_JSON,
    .footer = REMOTE_EXIT_STATUS,
};

/* --out: the nearest hit's weights_url to `path`. */
static int fetch_nearest(remote_client *c, const json_t *res, const char *path, int json)
{
    const json_t *hit = json_array_get(json_object_get(res, "hits"), 0);
    const char *url = json_string_value(json_object_get(hit, "weights_url"));
    if (!url || strncmp(url, "/v1/", 4) != 0) {
        cli_error(c->cmd, "the daemon's answer has no weights_url for the nearest hit; "
                          "%s not written", path);
        return EXIT_UNREACHABLE;
    }
    char what[64];
    snprintf(what, sizeof what, "zoo entry %lld",
             (long long)json_integer_value(json_object_get(hit, "zoo_index")));
    char sha[65];
    size_t n = 0;
    int code = remote_fetch_safetensors(c, url, what, path, sha, &n);
    if (code == EXIT_OK)
        fprintf(json ? stderr : stdout, "wrote %s (%s, %zu bytes, sha256 %s)\n", path, what, n,
                sha);
    return code;
}

int cmd_retrieve(cli_globals *g, int argc, char **argv)
{
    const char *cmd = "retrieve";
    retrieve_opts o;
    int code;
    if (!cli_parse(&RETRIEVE_CMD, &o, g, argc, argv, &code))
        return code;
    const char *support = o.support, *labels = o.labels, *generator = o.generator;
    long k = o.k;
    int embeddings = o.embeddings, binary = o.binary;
    if (generator && !generator[0]) {
        cli_error(cmd, "--generator: empty name");
        return EXIT_USAGE;
    }
    dataset sup = {0};
    if ((code = remote_dataset_load(cmd, support, labels, &sup)) != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(g, cmd, &c)) != EXIT_OK) {
        dataset_free(&sup);
        return code;
    }
    api_retrieve_request req;
    api_retrieve_request_init(&req);
    api_snprintf(req.generator, sizeof req.generator, "%s", generator ? generator : "default");
    req.k = (int)k;
    req.kind = embeddings ? API_KIND_EMBEDDINGS : API_KIND_SAMPLES;
    if (remote_dataset_binary(&sup, binary)) {
        /* uploaded: dataset_kind says which kind its rows are (the same
         * numbers may also be stored as the other kind) */
        code = remote_dataset_upload(&c, &sup, embeddings, req.dataset_id);
        dataset_free(&sup);
    } else {
        req.data = sup; /* moved */
        req.has_dataset = 1;
    }
    json_t *body = code == EXIT_OK ? api_retrieve_request_to_json(&req) : NULL;
    api_retrieve_request_free(&req);
    if (code == EXIT_OK && !body) {
        cli_error(cmd, "out of memory building the request");
        code = EXIT_FAILED;
    }
    if (code != EXIT_OK) {
        remote_client_free(&c);
        return code;
    }
    remote_response resp;
    json_t *res = NULL;
    code = remote_post_json(&c, "/v1/retrieve", body, NULL, 300.0, &resp, &res);
    if (code == EXIT_OK)
        remote_show(&resp, res, g->json, remote_table_retrieve);
    if (code == EXIT_OK && o.out)
        code = fetch_nearest(&c, res, o.out, g->json);
    json_decref(res);
    json_decref(body);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}
