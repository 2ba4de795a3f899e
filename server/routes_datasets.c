/* routes_datasets.c - POST /v1/datasets (JSON or safetensors), GET /v1/datasets/{id}. */
#include <string.h>

#include "routes.h"

/* POST stores the numbers (write lane) and reads the row back; GET reads it. */
typedef struct ds_op {
    route_op op;
    char id[65];
    int kind, created, post;
    dataset d;
    int has_data;
    api_dataset_info info;
} ds_op;

static void ds_free(route_op *op)
{
    ds_op *c = (ds_op *)op;
    if (c->has_data)
        dataset_free(&c->d);
    free(c);
}

static int ds_work(store *db, void *ctx, d2_error *err)
{
    ds_op *c = ctx;
    if (c->post &&
        store_dataset_put(db, c->id, c->kind, &c->d, api_now_ms(), &c->created, err) != 0)
        return err->code == D2_ENOTFOUND ? D2_EIO : err->code ? err->code : D2_EIO;
    int rc = store_dataset_info(db, c->id, &c->info, err);
    return c->post && rc == D2_ENOTFOUND ? D2_EIO : rc;
}

static int ds_answer(server *s, http_req *r, route_op *op)
{
    ds_op *c = (ds_op *)op;
    if (op->sq.rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no dataset %s", c->id);
    if (op->sq.rc != 0)
        return routes_op_error(s, r, op);
    if (c->post)
        s->store_ok = 1;
    if (c->created)
        server_log(s, LOG_INFO, "dataset stored",
                   json_pack("{s:s, s:s}", "dataset_id", c->id, "request_id", r->request_id));
    struct MHD_Response *resp = http_json_response(api_dataset_info_to_json(&c->info));
    if (resp && c->post) {
        char loc[128];
        snprintf(loc, sizeof loc, "/v1/datasets/%s", c->id);
        MHD_add_response_header(resp, "Location", loc);
    }
    return http_send(r, c->post && c->created ? 201 : 200, resp);
}

static int ds_start(server *s, http_req *r, ds_op *c)
{
    return routes_run(s, r, &c->op, c->post ? STOREQ_WRITE : STOREQ_READ, ds_work, ds_answer,
                      ds_free);
}

int route_dataset_post(server *s, http_req *r)
{
    int type = routes_body_type(r, 1);
    if (type < 0)
        return http_errorf(r, 415, "unsupported_media_type", "header.Content-Type", 0,
                           "send application/json or application/octet-stream (safetensors)");
    dataset d;
    int kind = API_KIND_SAMPLES;
    api_error e;
    int rc;
    if (type == 1) {
        const char *k = http_query(r, "kind");
        if (k && api_kind_parse(k, &kind) != 0)
            return http_errorf(r, 400, "invalid_argument", "query.kind", 0,
                               "expected samples or embeddings");
        rc = api_dataset_parse_safetensors(r->body, r->body_len, &s->cfg->limits, &d, &e);
    } else {
        if (http_query(r, "kind"))
            return http_errorf(r, 400, "invalid_argument", "query.kind", 0,
                               "only for safetensors bodies; JSON says samples or embeddings");
        json_t *root = routes_json_body(r);
        if (!root)
            return 0;
        rc = api_dataset_parse(root, "", &s->cfg->limits, &d, &kind, &e);
        json_decref(root);
    }
    if (rc != 0)
        return http_send_error(r, &e, 0);
    ds_op *c = calloc(1, sizeof *c);
    if (!c) {
        dataset_free(&d);
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    }
    c->d = d; /* moved */
    c->has_data = 1;
    c->kind = kind;
    c->post = 1;
    dataset_fingerprint(&c->d, c->id);
    return ds_start(s, r, c);
}

int route_dataset_get(server *s, http_req *r)
{
    if (!api_is_hex64(r->param))
        return http_errorf(r, 404, "not_found", NULL, 0,
                           "no dataset %s (ids are 64 lowercase hex digits)", r->param);
    ds_op *c = calloc(1, sizeof *c);
    if (!c)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    api_snprintf(c->id, sizeof c->id, "%s", r->param);
    return ds_start(s, r, c);
}
