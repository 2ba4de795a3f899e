/* main.c - `d2nwg`: dispatch to the subcommands listed in commands.h. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common.h"

static const client_command COMMANDS[] = {
    {"zoo", cmd_zoo, "build, import or describe a model zoo"},
    {"train", cmd_train, "train a generator from a zoo"},
    {"info", cmd_info, "describe a generator bundle"},
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

static void usage(FILE *out)
{
    fprintf(out, "usage: d2nwg <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\n'd2nwg <command> --help' describes one command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("d2nwg %s\n", D2_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name))
            return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "d2nwg: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
