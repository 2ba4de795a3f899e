/* remote_dataset.c - support set files as request JSON or a safetensors upload. */
#include "remote_dataset.h"

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli_args.h"
#include "commands.h"
#include "remote_call.h"
#include "safetensors.h"

int remote_dataset_load(const char *cmd, const char *path, const char *labels_path, dataset *d)
{
    d2_error err;
    d2_error_clear(&err);
    if (data_load_support(d, path, labels_path, &err) != 0) {
        cli_error(cmd, "%s", err.msg);
        return EXIT_FAILED; /* a missing, unreadable or malformed input file (README: exit codes) */
    }
    return EXIT_OK;
}

json_t *remote_dataset_json(const char *cmd, const dataset *d, int embeddings)
{
    json_t *j = api_dataset_to_json(d, embeddings ? API_KIND_EMBEDDINGS : API_KIND_SAMPLES);
    if (!j)
        cli_error(cmd, "out of memory building the request for %d rows", d->n);
    return j;
}

int remote_dataset_binary(const dataset *d, int force)
{
    return force || (size_t)d->n * (size_t)d->dim > REMOTE_INLINE_MAX_VALUES;
}

/* x [n, D] float32 and y [n] int32 as a safetensors file in memory. */
static int to_safetensors(const dataset *d, unsigned char **bytes, size_t *len, d2_error *err)
{
    st_writer w;
    st_writer_init(&w);
    int64_t xs[2] = {d->n, d->dim}, ys[1] = {d->n};
    int rc = st_writer_add_f32(&w, "x", 2, xs, d->x, err);
    if (rc == 0)
        rc = st_writer_add(&w, "y", ST_I32, 1, ys, d->y, sizeof(int32_t) * (size_t)d->n, err);
    if (rc == 0)
        rc = st_writer_to_memory(&w, bytes, len, err);
    st_writer_free(&w);
    return rc;
}

int remote_dataset_upload(remote_client *c, const dataset *d, int embeddings, char id[65])
{
    d2_error err;
    d2_error_clear(&err);
    unsigned char *bytes = NULL;
    size_t len = 0;
    if (to_safetensors(d, &bytes, &len, &err) != 0) {
        cli_error(c->cmd, "%s", err.msg);
        return EXIT_FAILED;
    }
    const char *kind = embeddings ? "embeddings" : "samples";
    char path[64];
    snprintf(path, sizeof path, "/v1/datasets?kind=%s", kind);
    remote_request req = {.method = "POST",
                          .path = path,
                          .content_type = "application/octet-stream",
                          .body = bytes,
                          .body_len = len,
                          .replayable = 1,
                          .timeout = 600.0};
    remote_response resp;
    json_t *info = NULL;
    int code = remote_call_json(c, &req, &resp, &info);
    free(bytes);
    if (code == EXIT_OK) {
        api_dataset_info got;
        api_error pe;
        int kind_bit = 1 << (embeddings ? API_KIND_EMBEDDINGS : API_KIND_SAMPLES);
        /* the same numbers may be held as both kinds (`kinds`); a daemon
         * without `kinds` keeps only the first upload's kind */
        if (api_dataset_info_from_json(info, &got, &pe) != 0 || !api_is_hex64(got.id)) {
            cli_error(c->cmd, "the daemon stored the data set but answered without a valid id");
            code = EXIT_UNREACHABLE;
        } else if (!(got.kinds & kind_bit)) {
            cli_error(c->cmd,
                      "the daemon already holds these numbers as %s, not %s (data set %s); "
                      "send them inline instead (fewer rows, or without --binary)",
                      api_kind_name(got.kind), kind, got.id);
            code = EXIT_REFUSED;
        } else {
            snprintf(id, 65, "%s", got.id);
        }
    }
    json_decref(info);
    remote_response_free(&resp);
    return code;
}
