/* remote_opts.h - the options every remote command shares (--server,
 * --token, --retry-for, --json) with their environment defaults
 * (D2NWG_SERVER, D2NWG_TOKEN), and the client they configure. */
#ifndef D2_CLIENT_REMOTE_OPTS_H
#define D2_CLIENT_REMOTE_OPTS_H

#include <stdio.h>

#include "remote_http.h"

#define REMOTE_DEFAULT_SERVER "http://127.0.0.1:8080"
#define REMOTE_DEFAULT_RETRY_FOR 30.0

typedef struct remote_opts {
    const char *server; /* --server, else $D2NWG_SERVER, else REMOTE_DEFAULT_SERVER */
    const char *token;  /* --token, else $D2NWG_TOKEN, else NULL */
    double retry_for;   /* --retry-for SECONDS (default 30) */
    int json;           /* --json: print the daemon's answer as it came */
} remote_opts;

/* Defaults from the environment. */
void remote_opts_init(remote_opts *o);
/* Try argv[*i] as a shared option: 1 consumed (with its value), 0 not one of
 * them, -1 usage error (printed as "d2nwg <cmd>: ..."). */
int remote_opts_parse(remote_opts *o, const char *cmd, int argc, char **argv, int *i);
/* The shared options' help lines. */
void remote_opts_usage(FILE *out, int with_json);
/* Configure a client; prints the problem and returns EXIT_USAGE on failure,
 * EXIT_OK otherwise. */
int remote_opts_client(const remote_opts *o, const char *cmd, remote_client *c);

#endif
