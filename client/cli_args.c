/* cli_args.c - the command line's error messages. */
#include "cli_args.h"

#include <stdarg.h>
#include <stdio.h>

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    if (cmd && *cmd)
        fprintf(stderr, "d2nwg %s: ", cmd);
    else
        fprintf(stderr, "d2nwg: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
