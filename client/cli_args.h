/* cli_args.h - the command line's error messages: "d2nwg <cmd>: ..." on
 * stderr. Options are parsed by cli_opts.h. */
#ifndef D2_CLI_ARGS_H
#define D2_CLI_ARGS_H

/* Print "d2nwg cmd: message" to stderr ("d2nwg: message" when cmd is ""). */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
