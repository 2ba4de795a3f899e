/* commands.h - the subcommands of the `d2nwg` command line.
 *
 * Each command takes the global options (given before the command; see
 * cli_opts.h) and (argc, argv) with argv[0] = the subcommand name, parses its
 * options with cli_parse, and returns the process exit code:
 *   0 success; 1 failure (the job failed or was cancelled; an input file
 *   missing, unreadable or malformed); 2 usage error (the command line itself);
 *   3 server unreachable or 5xx; 4 request refused (4xx). Commands print
 *   errors to stderr as "d2nwg <cmd>: message". */
#ifndef D2_CLIENT_COMMANDS_H
#define D2_CLIENT_COMMANDS_H

#include "cli_opts.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
    EXIT_REFUSED = 4
};

typedef struct client_command {
    const char *name;
    int (*run)(cli_globals *g, int argc, char **argv);
    const char *summary;
} client_command;

/* offline commands (core) */
/* zoo build | import | info | merge */
int cmd_zoo(cli_globals *g, int argc, char **argv);
/* zoo merge: join the shards of a build (cmd_zoo_merge.c; called by cmd_zoo) */
int cmd_zoo_merge(cli_globals *g, int argc, char **argv);
/* train a generator from a zoo */
int cmd_train(cli_globals *g, int argc, char **argv);
/* backbone train: a convolutional backbone for the cnn:FILE feature map */
int cmd_backbone(cli_globals *g, int argc, char **argv);
/* lm train | eval | lora: the byte-level language model on word lists */
int cmd_lm(cli_globals *g, int argc, char **argv);
/* lm lora: one LoRA adapter with the base frozen (cmd_lm_lora.c; called by cmd_lm) */
int cmd_lm_lora(cli_globals *g, int argc, char **argv);
/* describe a generator bundle */
int cmd_info(cli_globals *g, int argc, char **argv);
int cmd_defaults(cli_globals *g, int argc, char **argv);
/* weights for a support set, offline */
int cmd_generate(cli_globals *g, int argc, char **argv);
/* the results table */
int cmd_eval(cli_globals *g, int argc, char **argv);
/* write a support set to try things on */
int cmd_sample(cli_globals *g, int argc, char **argv);

/* remote commands (libcurl; the global --server, --token, --retry-for) */
/* upload a support set as a job; --wait, --out */
int cmd_submit(cli_globals *g, int argc, char **argv);
/* list jobs */
int cmd_jobs(cli_globals *g, int argc, char **argv);
/* show one job */
int cmd_status(cli_globals *g, int argc, char **argv);
/* follow a job to its end */
int cmd_wait(cli_globals *g, int argc, char **argv);
/* cancel a job */
int cmd_cancel(cli_globals *g, int argc, char **argv);
/* download a checkpoint's weights */
int cmd_fetch(cli_globals *g, int argc, char **argv);
/* where a checkpoint came from */
int cmd_lineage(cli_globals *g, int argc, char **argv);
/* generators the daemon serves */
int cmd_generators(cli_globals *g, int argc, char **argv);
/* nearest zoo checkpoints for a support set */
int cmd_retrieve(cli_globals *g, int argc, char **argv);

#endif
