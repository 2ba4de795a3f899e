/* cmd_zoo_merge.c - `d2nwg zoo merge --out DIR SHARD_DIR...`: join the
 * shards that `zoo build --shard I/N` wrote into the whole zoo (the same
 * manifest and weight files, byte for byte, as an unsharded build). */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli_args.h"
#include "cli_json.h"
#include "cli_opts.h"
#include "commands.h"
#include "zoo.h"

typedef struct merge_opts {
    const char *out;
    cli_words shards;
} merge_opts;

static const cli_option MERGE_OPTS[] = {
    {.name = "--out", .type = CLI_PATH, .off = offsetof(merge_opts, out), .metavar = "DIR",
     .help = "where to save the whole zoo (must not exist, or be empty)", .required = 1},
};

static const cli_command MERGE_CMD = {
    .name = "zoo merge",
    .synopsis = "--out DIR SHARD_DIR... [--json]",
    .about = "Joins the shards of one build (each from 'd2nwg zoo build --shard I/N', in any\n"
             "order) into the zoo the same build without --shard saves: the same manifest,\n"
             "fingerprint and weight files, byte for byte. The shards must agree on source,\n"
             "spec, feature map (sha256), seed, tasks, N, training settings, held-out\n"
             "combinations and source fingerprints, and each of 0..N-1 must be given once;\n"
             "otherwise exit 1 with a message naming the shard and the field. DIR is written\n"
             "under a temporary name and renamed, so it appears complete or not at all.\n"
             "--json prints one object: zoo, shards, heads, spec, source, fingerprint.",
    .opts = MERGE_OPTS,
    .nopts = CLI_NOPTS(MERGE_OPTS),
    .globals = CLI_G_JSON,
    .positional = "SHARD_DIR",
    .positional_off = offsetof(merge_opts, shards),
    .positional_many = 1,
    .missing_positional = "which shards? (d2nwg zoo merge --out DIR SHARD_DIR...)",
};

int cmd_zoo_merge(cli_globals *g, int argc, char **argv)
{
    merge_opts *o = calloc(1, sizeof *o); /* 8 kB of words: not on the stack */
    if (!o) {
        cli_error("zoo", "merge: out of memory");
        return EXIT_FAILED;
    }
    int code;
    if (!cli_parse(&MERGE_CMD, o, g, argc, argv, &code)) {
        free(o);
        return code;
    }
    zoo z;
    d2_error err = {0};
    int rc = zoo_merge(o->shards.v, o->shards.n, o->out, &z, &err);
    if (rc) {
        cli_error("zoo", "%s", err.msg);
    } else if (g->json) {
        json_t *j = json_pack("{s:s,s:i,s:i,s:s,s:s,s:s}", "zoo", o->out, "shards", o->shards.n,
                              "heads", z.n, "spec", z.spec.text, "source", z.source,
                              "fingerprint", z.fingerprint);
        rc = cli_print_json("zoo merge", j);
    } else {
        printf("zoo         %s\n", o->out);
        printf("heads       %d x '%s' from %s, joined from %d shards\n", z.n, z.spec.text,
               z.source, o->shards.n);
        printf("fingerprint %s\n", z.fingerprint);
    }
    zoo_free(&z); /* zeroed when the merge failed */
    free(o);
    return rc ? EXIT_FAILED : EXIT_OK;
}
