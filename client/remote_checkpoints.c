/* remote_checkpoints.c - `d2nwg fetch` (a checkpoint's weights to a file) and
 * `d2nwg lineage` (where a checkpoint came from). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"
#include "remote_call.h"
#include "remote_job.h"
#include "remote_opts.h"
#include "remote_table.h"

typedef struct ck_opts {
    const char *id, *out;
} ck_opts;

#define CK_MISSING "which checkpoint? ('d2nwg status JOB_ID' lists a job's checkpoints)"

/* Parse and check the id, then make the client: 1 go on, 0 return *code. */
static int ck_start(const cli_command *cmd, ck_opts *o, cli_globals *g, int argc, char **argv,
                    remote_client *c, int *code)
{
    if (!cli_parse(cmd, o, g, argc, argv, code))
        return 0;
    if (!api_is_checkpoint_id(o->id)) {
        cli_error(cmd->name, "'%s' is not a checkpoint id (ck_ + 20 hex digits + _rank)", o->id);
        *code = EXIT_USAGE;
        return 0;
    }
    return (*code = remote_opts_client(g, cmd->name, c)) == EXIT_OK;
}

static const cli_option FETCH_OPTS[] = {
    {.name = "--out", .type = CLI_PATH, .off = offsetof(ck_opts, out), .metavar = "FILE",
     .help = "where to write the weights", .required = 1},
};

static const cli_command FETCH_CMD = {
    .name = "fetch",
    .synopsis = "CHECKPOINT_ID --out FILE [options]",
    .about = "Downloads a checkpoint's weights (safetensors, PyTorch nn.Sequential names),\n"
             "checks them against the sha256 the daemon sends, and writes FILE atomically.",
    .opts = FETCH_OPTS,
    .nopts = CLI_NOPTS(FETCH_OPTS),
    .globals = CLI_G_REMOTE, /* the answer is a safetensors file, not JSON */
    .positional = "CHECKPOINT_ID",
    .positional_off = offsetof(ck_opts, id),
    .missing_positional = CK_MISSING,
    .footer = REMOTE_EXIT_STATUS,
};

int cmd_fetch(cli_globals *g, int argc, char **argv)
{
    ck_opts o = {0};
    remote_client c;
    int code;
    if (!ck_start(&FETCH_CMD, &o, g, argc, argv, &c, &code))
        return code;
    const char *id = o.id, *path = o.out;
    char sha[65];
    size_t n = 0;
    code = remote_fetch_weights(&c, id, path, sha, &n);
    if (code == EXIT_OK)
        printf("wrote %s (%zu bytes, sha256 %s)\n", path, n, sha);
    remote_client_free(&c);
    return code;
}

static const cli_command LINEAGE_CMD = {
    .name = "lineage",
    .synopsis = "CHECKPOINT_ID [options]",
    .about = "Shows where a checkpoint came from (generator, zoo, data set, job, sampler\n"
             "settings, seed, parent) and the checkpoints derived from it.",
    .globals = CLI_G_REMOTE | CLI_G_JSON,
    .positional = "CHECKPOINT_ID",
    .positional_off = offsetof(ck_opts, id),
    .missing_positional = CK_MISSING,
    .footer = REMOTE_EXIT_STATUS,
};

int cmd_lineage(cli_globals *g, int argc, char **argv)
{
    ck_opts o = {0};
    remote_client c;
    int code;
    if (!ck_start(&LINEAGE_CMD, &o, g, argc, argv, &c, &code))
        return code;
    const char *id = o.id;
    char path[160];
    snprintf(path, sizeof path, "/v1/checkpoints/%s/lineage", id);
    code = remote_get_show(&c, path, g->json, remote_table_lineage);
    remote_client_free(&c);
    return code;
}
