/* main.c - d2nwgd: parse flags and the config file, then run the daemon
 * (server/server.c). Exit status 0 after a clean drain, 1 on a start-up or
 * fatal error, 2 on a usage error. */
#include <signal.h>
#include <stdio.h>

#include "config.h"
#include "server.h"

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    static config cfg;
    config_defaults(&cfg);
    d2_error err;
    d2_error_clear(&err);
    int help = 0;
    if (config_parse_args(&cfg, argc, argv, &help, &err) != 0) {
        fprintf(stderr, "d2nwgd: %s\n", err.msg);
        config_usage(stderr);
        return 2;
    }
    if (help == 1) {
        config_usage(stdout);
        return 0;
    }
    if (help == 2) {
        printf("d2nwgd %s\n", D2_VERSION);
        return 0;
    }
    if (config_validate(&cfg, &err) != 0) {
        fprintf(stderr, "d2nwgd: %s\n", err.msg);
        return 2;
    }
    return server_run(&cfg);
}
