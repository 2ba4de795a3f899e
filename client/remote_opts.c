/* remote_opts.c - the remote commands' shared options. */
#include "remote_opts.h"

#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"

void remote_opts_init(remote_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *s = getenv("D2NWG_SERVER");
    o->server = s && *s ? s : REMOTE_DEFAULT_SERVER;
    const char *t = getenv("D2NWG_TOKEN");
    o->token = t && *t ? t : NULL;
    o->retry_for = REMOTE_DEFAULT_RETRY_FOR;
}

int remote_opts_parse(remote_opts *o, const char *cmd, int argc, char **argv, int *i)
{
    const char *v;
    int r;
    if ((r = cli_opt(cmd, argc, argv, i, "--server", &v))) {
        if (r < 0)
            return -1;
        o->server = v;
        return 1;
    }
    if ((r = cli_opt(cmd, argc, argv, i, "--token", &v))) {
        if (r < 0)
            return -1;
        o->token = v;
        return 1;
    }
    if ((r = cli_opt(cmd, argc, argv, i, "--retry-for", &v))) {
        if (r < 0)
            return -1;
        /* "30" or "30s" */
        char buf[64];
        snprintf(buf, sizeof buf, "%s", v);
        size_t n = strlen(buf);
        if (n > 1 && buf[n - 1] == 's')
            buf[n - 1] = '\0';
        return cli_float(cmd, "--retry-for", buf, 0.0, 86400.0, &o->retry_for) ? -1 : 1;
    }
    if (cli_flag(argv, *i, "--json")) {
        o->json = 1;
        return 1;
    }
    return 0;
}

void remote_opts_usage(FILE *out, int with_json)
{
    if (with_json)
        fprintf(out, "  --json               print the daemon's JSON answer as it came\n");
    fprintf(out,
            "  --server URL         the daemon (default $D2NWG_SERVER, else %s)\n"
            "  --token TOKEN        bearer token (default $D2NWG_TOKEN)\n"
            "  --retry-for S        keep retrying an unreachable or busy (5xx) daemon for S\n"
            "                       seconds, with backoff, one line per retry (default %.0f)\n"
            "\n"
            "exit status: 0 success; 1 the job failed or was cancelled; 2 usage error;\n"
            "3 daemon unreachable or 5xx; 4 request refused (4xx, the daemon's message shown)\n",
            REMOTE_DEFAULT_SERVER, REMOTE_DEFAULT_RETRY_FOR);
}

int remote_opts_client(const remote_opts *o, const char *cmd, remote_client *c)
{
    d2_error err;
    d2_error_clear(&err);
    if (remote_client_init(c, o->server, o->token, o->retry_for, cmd, &err) != 0) {
        cli_error(cmd, "%s", err.msg);
        return err.code == D2_EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}
