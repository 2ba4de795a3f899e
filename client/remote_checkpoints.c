/* remote_checkpoints.c - `d2nwg fetch` (a checkpoint's weights to a file) and
 * `d2nwg lineage` (where a checkpoint came from). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"
#include "remote_call.h"
#include "remote_job.h"
#include "remote_opts.h"
#include "remote_table.h"

/* "[options] CHECKPOINT_ID [--out FILE]": -1 for --help, else an exit code. */
static int parse_ck_args(const char *cmd, void (*usage)(FILE *), remote_opts *o, int allow_json,
                         int argc, char **argv, const char **id, const char **out)
{
    *id = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        const char *v;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return -1;
        }
        if (!allow_json && cli_flag(argv, i, "--json")) {
            cli_error(cmd, "--json: the answer is a safetensors file, not JSON");
            return EXIT_USAGE;
        }
        if ((r = remote_opts_parse(o, cmd, argc, argv, &i))) {
            if (r < 0)
                return EXIT_USAGE;
            continue;
        }
        if (out && (r = cli_opt(cmd, argc, argv, &i, "--out", &v))) {
            if (r < 0)
                return EXIT_USAGE;
            *out = v;
            continue;
        }
        if (argv[i][0] == '-') {
            cli_error(cmd, "unknown option '%s' (see --help)", argv[i]);
            return EXIT_USAGE;
        }
        if (*id) {
            cli_error(cmd, "one checkpoint id, please ('%s' and '%s')", *id, argv[i]);
            return EXIT_USAGE;
        }
        *id = argv[i];
    }
    if (!*id) {
        cli_error(cmd, "which checkpoint? ('d2nwg status JOB_ID' lists a job's checkpoints)");
        return EXIT_USAGE;
    }
    if (!api_is_checkpoint_id(*id)) {
        cli_error(cmd, "'%s' is not a checkpoint id (ck_ + 20 hex digits + _rank)", *id);
        return EXIT_USAGE;
    }
    if (out && !*out) {
        cli_error(cmd, "--out FILE is required");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static void fetch_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg fetch CHECKPOINT_ID --out FILE [options]\n"
                 "\n"
                 "Downloads a checkpoint's weights (safetensors, PyTorch nn.Sequential names),\n"
                 "checks them against the sha256 the daemon sends, and writes FILE atomically.\n"
                 "\n"
                 "  --out FILE           where to write the weights\n");
    remote_opts_usage(out, 0);
}

int cmd_fetch(int argc, char **argv)
{
    const char *cmd = "fetch", *id, *path = NULL;
    remote_opts o;
    remote_opts_init(&o);
    int code = parse_ck_args(cmd, fetch_usage, &o, 0, argc, argv, &id, &path);
    if (code < 0)
        return EXIT_OK;
    if (code != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(&o, cmd, &c)) != EXIT_OK)
        return code;
    char sha[65];
    size_t n = 0;
    code = remote_fetch_weights(&c, id, path, sha, &n);
    if (code == EXIT_OK)
        printf("wrote %s (%zu bytes, sha256 %s)\n", path, n, sha);
    remote_client_free(&c);
    return code;
}

static void lineage_usage(FILE *out)
{
    fprintf(out, "usage: d2nwg lineage CHECKPOINT_ID [options]\n"
                 "\n"
                 "Shows where a checkpoint came from (generator, zoo, data set, job, sampler\n"
                 "settings, seed, parent) and the checkpoints derived from it.\n"
                 "\n");
    remote_opts_usage(out, 1);
}

int cmd_lineage(int argc, char **argv)
{
    const char *cmd = "lineage", *id;
    remote_opts o;
    remote_opts_init(&o);
    int code = parse_ck_args(cmd, lineage_usage, &o, 1, argc, argv, &id, NULL);
    if (code < 0)
        return EXIT_OK;
    if (code != EXIT_OK)
        return code;
    remote_client c;
    if ((code = remote_opts_client(&o, cmd, &c)) != EXIT_OK)
        return code;
    char path[160];
    snprintf(path, sizeof path, "/v1/checkpoints/%s/lineage", id);
    code = remote_get_show(&c, path, o.json, remote_table_lineage);
    remote_client_free(&c);
    return code;
}
