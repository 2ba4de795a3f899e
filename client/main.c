/* main.c - `d2nwg`: global options, then dispatch to the subcommands listed
 * in commands.h. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common.h"

static const client_command COMMANDS[] = {
    {"zoo", cmd_zoo, "build, import, describe or merge a model zoo"},
    {"train", cmd_train, "train a generator from a zoo"},
    {"backbone", cmd_backbone, "train a convolutional backbone (feature map cnn:FILE)"},
    {"lm", cmd_lm, "train, evaluate or adapt (LoRA) the byte-level language model (word lists)"},
    {"info", cmd_info, "describe a generator bundle"},
    {"defaults", cmd_defaults, "copy a generator bundle with other sampler defaults"},
    {"generate", cmd_generate, "generate weights for a support set (offline)"},
    {"eval", cmd_eval, "evaluate a generator against baselines"},
    {"sample", cmd_sample, "write a support set drawn from a data source"},
    {"submit", cmd_submit, "submit a support set to d2nwgd as a generation job"},
    {"jobs", cmd_jobs, "list the daemon's jobs"},
    {"status", cmd_status, "show one job"},
    {"wait", cmd_wait, "wait for a job to finish"},
    {"cancel", cmd_cancel, "cancel a job"},
    {"fetch", cmd_fetch, "download a checkpoint's weights"},
    {"lineage", cmd_lineage, "show where a checkpoint came from"},
    {"generators", cmd_generators, "list the daemon's generators"},
    {"retrieve", cmd_retrieve, "nearest zoo checkpoints for a support set"},
};

static void usage(const cli_globals *g, FILE *out)
{
    fprintf(out, "usage: d2nwg [global options] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\nglobal options (before or after the command; a command refuses those it\n"
                 "does not take):\n");
    cli_globals_help(~0u, g, out);
    fprintf(out, "\n'd2nwg <command> --help' describes one command.\n"
                 "exit status: 0 done; 1 failed (a job failed or was cancelled, or an input\n"
                 "file is missing, unreadable or malformed); 2 usage error; 3 daemon unreachable\n"
                 "or 5xx; 4 request refused (4xx)\n");
}

int main(int argc, char **argv)
{
    cli_globals g;
    cli_globals_init(&g);
    int next = 1, code = EXIT_USAGE;
    if (!cli_parse_globals(&g, argc, argv, &next, &code))
        return code;
    if (next >= argc) {
        usage(&g, stderr);
        return EXIT_USAGE;
    }
    const char *word = argv[next];
    if (!strcmp(word, "--help") || !strcmp(word, "-h") || !strcmp(word, "help")) {
        usage(&g, stdout);
        return EXIT_OK;
    }
    if (!strcmp(word, "--version")) {
        printf("d2nwg %s\n", D2_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(word, COMMANDS[i].name))
            return COMMANDS[i].run(&g, argc - next, argv + next);
    if (word[0] == '-')
        fprintf(stderr, "d2nwg: unknown global option '%s'\n", word);
    else
        fprintf(stderr, "d2nwg: unknown command '%s'\n", word);
    usage(&g, stderr);
    return EXIT_USAGE;
}
