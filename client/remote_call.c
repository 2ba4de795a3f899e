/* remote_call.c - an API call mapped to the command line's exit codes. */
#include "remote_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"

/* " (5 tries in 30.0 s)" when the answer took retries. */
static void retries_note(const remote_response *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (r->attempts > 1)
        snprintf(out, cap, " (gave up after %d tries in %.1f s)", r->attempts, r->elapsed);
}

int remote_call(remote_client *c, const remote_request *req, remote_response *resp)
{
    d2_error err;
    d2_error_clear(&err);
    if (remote_send(c, req, resp, &err) != 0) {
        cli_error(c->cmd, "%s", err.msg);
        return err.code == D2_EIO ? EXIT_UNREACHABLE : EXIT_FAILED;
    }
    if (resp->status >= 200 && resp->status <= 299)
        return EXIT_OK;
    api_error e;
    json_error_t je;
    json_t *root = resp->len ? json_loadb((const char *)resp->body, resp->len, 0, &je) : NULL;
    int parsed = root && api_error_from_json(root, (int)resp->status, &e) == 0;
    json_decref(root);
    char note[96];
    retries_note(resp, note, sizeof note);
    int refused = resp->status >= 400 && resp->status <= 499;
    const char *what = refused ? "refused" : "daemon error";
    if (parsed && e.field[0])
        cli_error(c->cmd, "%s: %ld %s (field %s): %s%s", what, resp->status, e.code, e.field,
                  e.message, note);
    else if (parsed)
        cli_error(c->cmd, "%s: %ld %s: %s%s", what, resp->status, e.code, e.message, note);
    else
        cli_error(c->cmd, "%s: HTTP %ld from %s %s%s%s", what, resp->status, req->method, c->base,
                  req->path, note);
    return refused ? EXIT_REFUSED : EXIT_UNREACHABLE;
}

int remote_call_json(remote_client *c, const remote_request *req, remote_response *resp,
                     json_t **out)
{
    *out = NULL;
    int code = remote_call(c, req, resp);
    if (code != EXIT_OK)
        return code;
    json_error_t je;
    json_t *root = json_loadb((const char *)resp->body, resp->len, 0, &je);
    if (!json_is_object(root)) {
        cli_error(c->cmd, "the answer to %s %s%s is not a JSON object%s%s", req->method, c->base,
                  req->path, root ? "" : ": ", root ? "" : je.text);
        json_decref(root);
        return EXIT_UNREACHABLE;
    }
    *out = root;
    return EXIT_OK;
}

int remote_get_json(remote_client *c, const char *path, double timeout, remote_response *resp,
                    json_t **out)
{
    remote_request req = {.method = "GET", .path = path, .timeout = timeout};
    return remote_call_json(c, &req, resp, out);
}

int remote_post_json(remote_client *c, const char *path, const json_t *body,
                     const char *idempotency_key, double timeout, remote_response *resp,
                     json_t **out)
{
    *out = NULL;
    memset(resp, 0, sizeof *resp);
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (!text) {
        cli_error(c->cmd, "out of memory building the request");
        return EXIT_FAILED;
    }
    remote_request req = {.method = "POST",
                          .path = path,
                          .content_type = "application/json",
                          .body = text,
                          .body_len = strlen(text),
                          .idempotency_key = idempotency_key,
                          .timeout = timeout};
    int code = remote_call_json(c, &req, resp, out);
    free(text);
    return code;
}

void remote_print_raw(const remote_response *resp)
{
    if (resp->len)
        fwrite(resp->body, 1, resp->len, stdout);
    if (!resp->len || resp->body[resp->len - 1] != '\n')
        fputc('\n', stdout);
    fflush(stdout);
}

void remote_show(const remote_response *resp, const json_t *v, int raw, remote_table_fn table)
{
    if (raw)
        remote_print_raw(resp);
    else
        table(stdout, v);
}

int remote_get_show(remote_client *c, const char *path, int raw, remote_table_fn table)
{
    remote_response resp;
    json_t *v = NULL;
    int code = remote_get_json(c, path, 60.0, &resp, &v);
    if (code == EXIT_OK)
        remote_show(&resp, v, raw, table);
    json_decref(v);
    remote_response_free(&resp);
    return code;
}
