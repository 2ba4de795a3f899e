/* remote_opts.c - the remote commands' client from the global options. */
#include "remote_opts.h"

#include "cli_args.h"
#include "commands.h"

int remote_opts_client(const cli_globals *g, const char *cmd, remote_client *c)
{
    d2_error err;
    d2_error_clear(&err);
    if (remote_client_init(c, g->server, g->token, g->retry_for, cmd, &err) != 0) {
        cli_error(cmd, "%s", err.msg);
        return err.code == D2_EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}
