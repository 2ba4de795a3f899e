/* remote_call.h - one API call as the remote commands see it: send (with the
 * retries of remote_http.h), then map the outcome to the exit codes of
 * commands.h, printing what went wrong as "d2nwg <cmd>: ...":
 *   2xx                      -> EXIT_OK (the answer is the caller's)
 *   4xx                      -> EXIT_REFUSED, "refused: 422 invalid_dataset
 *                               (field dataset.samples): <the daemon's message>"
 *   5xx, other, unreachable  -> EXIT_UNREACHABLE */
#ifndef D2_CLIENT_REMOTE_CALL_H
#define D2_CLIENT_REMOTE_CALL_H

#include <jansson.h>
#include <stdio.h>

#include "remote_http.h"

int remote_call(remote_client *c, const remote_request *req, remote_response *resp);
/* remote_call, then parse a 2xx answer as a JSON object (*out owned by the
 * caller; NULL unless EXIT_OK). */
int remote_call_json(remote_client *c, const remote_request *req, remote_response *resp,
                     json_t **out);
/* GET path (timeout seconds, 0: none) as JSON. */
int remote_get_json(remote_client *c, const char *path, double timeout, remote_response *resp,
                    json_t **out);
/* POST a JSON value (serialised compactly; floats with 9 significant digits,
 * which round-trip float32 exactly). idempotency_key may be NULL. */
int remote_post_json(remote_client *c, const char *path, const json_t *body,
                     const char *idempotency_key, double timeout, remote_response *resp,
                     json_t **out);
/* The answer's bytes on stdout as they came (plus a newline when missing). */
void remote_print_raw(const remote_response *resp);

/* Prints an answer as the user asked: its bytes as they came (--json, raw != 0)
 * or as a table of the parsed value v. */
typedef void (*remote_table_fn)(FILE *out, const json_t *v);
void remote_show(const remote_response *resp, const json_t *v, int raw, remote_table_fn table);
/* GET path (60 s timeout) and remote_show the answer; returns remote_call's code. */
int remote_get_show(remote_client *c, const char *path, int raw, remote_table_fn table);

#endif
