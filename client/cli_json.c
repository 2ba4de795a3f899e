/* cli_json.c - one JSON object per command on stdout (see cli_json.h). */
#include "cli_json.h"

#include <stdio.h>
#include <stdlib.h>

#include "cli_args.h"

int cli_print_json(const char *cmd, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9))
                : NULL;
    json_decref(o);
    if (!s) {
        cli_error(cmd, "out of memory writing the JSON answer");
        return -1;
    }
    int rc = printf("%s\n", s) < 0 || fflush(stdout) ? -1 : 0;
    free(s);
    if (rc)
        cli_error(cmd, "cannot write to stdout");
    return rc;
}
