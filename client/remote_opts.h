/* remote_opts.h - what the remote commands share: the client the global
 * options (--server, --token, --retry-for; cli_opts.h) configure, and the
 * exit-status paragraph of their --help. */
#ifndef D2_CLIENT_REMOTE_OPTS_H
#define D2_CLIENT_REMOTE_OPTS_H

#include "cli_opts.h"
#include "remote_http.h"

#define REMOTE_EXIT_STATUS                                                                     \
    "exit status: 0 success; 1 the job failed or was cancelled; 2 usage error;\n"              \
    "3 daemon unreachable or 5xx; 4 request refused (4xx, the daemon's message shown)"

/* Configure a client from the global options; prints the problem and
 * returns EXIT_USAGE (a bad URL) or EXIT_UNREACHABLE on failure, EXIT_OK
 * otherwise. */
int remote_opts_client(const cli_globals *g, const char *cmd, remote_client *c);

#endif
