/* cli_json.h - `--json` output of the offline commands: one JSON object on
 * stdout (a line), while progress and messages stay on stderr. */
#ifndef D2_CLIENT_CLI_JSON_H
#define D2_CLIENT_CLI_JSON_H

#include <jansson.h>

/* Print o (the reference is taken, NULL counts as out of memory) as one
 * compact line on stdout, keys in insertion order. 0, or -1 on failure (a
 * message on stderr names cmd). */
int cli_print_json(const char *cmd, json_t *o);

#endif
