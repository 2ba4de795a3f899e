/* remote_generators.c - `d2nwg generators` (what the daemon serves) and
 * `d2nwg retrieve` (the zoo checkpoints nearest to a support set). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"
#include "remote_call.h"
#include "remote_dataset.h"
#include "remote_opts.h"
#include "remote_table.h"

static void generators_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg generators [options]\n"
                 "\n"
                 "Lists the generators the daemon serves: target network, input and feature\n"
                 "dimensions, ways, zoo and sampler defaults.\n"
                 "\n");
    remote_opts_usage(out, 1);
}

int cmd_generators(int argc, char **argv)
{
    const char *cmd = "generators";
    remote_opts o;
    remote_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            generators_usage(stdout);
            return EXIT_OK;
        }
        if ((r = remote_opts_parse(&o, cmd, argc, argv, &i))) {
            if (r < 0)
                return EXIT_USAGE;
            continue;
        }
        cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
        return EXIT_USAGE;
    }
    remote_client c;
    int code = remote_opts_client(&o, cmd, &c);
    if (code != EXIT_OK)
        return code;
    code = remote_get_show(&c, "/v1/generators", o.json, remote_table_generators);
    remote_client_free(&c);
    return code;
}

static void retrieve_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg retrieve --support FILE [-k 5] [options]\n"
                 "\n"
                 "Model retrieval: the zoo checkpoints nearest to a support set in the\n"
                 "generator's dataset-embedding space, with their accuracy on it.\n"
                 "\n"
                 "  --support FILE       support set: CSV (header; first column 'label'),\n"
                 "                       NPY features with --labels y.npy, or safetensors (x, y)\n"
                 "  --labels FILE        labels for an NPY support set\n"
                 "  --embeddings         rows are already in the generator's feature space\n"
                 "  --generator NAME     a generator the daemon serves (default: 'default')\n"
                 "  -k, --k K            how many (default 5)\n");
    remote_opts_usage(out, 1);
}

int cmd_retrieve(int argc, char **argv)
{
    const char *cmd = "retrieve", *v, *support = NULL, *labels = NULL, *generator = NULL;
    long k = 5;
    int embeddings = 0, binary = 0;
    remote_opts o;
    remote_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            retrieve_usage(stdout);
            return EXIT_OK;
        }
        if ((r = remote_opts_parse(&o, cmd, argc, argv, &i))) {
            if (r < 0)
                return EXIT_USAGE;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--support", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            support = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--labels", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            labels = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--generator", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            generator = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "-k", &v)) ||
                   (r = cli_opt(cmd, argc, argv, &i, "--k", &v))) {
            if (r < 0 || cli_int(cmd, "-k", v, 1, 1 << 20, &k))
                return EXIT_USAGE;
        } else if (cli_flag(argv, i, "--embeddings")) {
            embeddings = 1;
        } else if (cli_flag(argv, i, "--binary")) {
            binary = 1;
        } else {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!support) {
        cli_error(cmd, "--support is required (see --help)");
        return EXIT_USAGE;
    }
    if (generator && !generator[0]) {
        cli_error(cmd, "--generator: empty name");
        return EXIT_USAGE;
    }
    dataset sup = {0};
    int code = remote_dataset_load(cmd, support, labels, &sup);
    if (code != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(&o, cmd, &c)) != EXIT_OK) {
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
        remote_show(&resp, res, o.json, remote_table_retrieve);
    json_decref(res);
    json_decref(body);
    remote_response_free(&resp);
    remote_client_free(&c);
    return code;
}
