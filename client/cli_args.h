/* cli_args.h - small helpers for the subcommands' option parsing:
 * "--name VALUE" and "--name=VALUE", numbers with range checks, and error
 * messages of the form "d2nwg <cmd>: ...". */
#ifndef D2_CLI_ARGS_H
#define D2_CLI_ARGS_H

#include <stdint.h>

/* 1 when argv[*i] is option `name` with a value (stored in *val, *i advanced
 * past it); 0 when argv[*i] is another option; -1 when the value is missing
 * (message printed). */
int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **val);
/* 1 when argv[i] is exactly the flag `name`. */
int cli_flag(char **argv, int i, const char *name);

/* Parse numbers; print "d2nwg cmd: --name: ..." and return -1 on error. */
int cli_int(const char *cmd, const char *name, const char *s, long lo, long hi, long *out);
int cli_u64(const char *cmd, const char *name, const char *s, uint64_t *out);
int cli_float(const char *cmd, const char *name, const char *s, double lo, double hi,
              double *out);

/* Print "d2nwg cmd: message" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
