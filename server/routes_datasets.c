/* routes_datasets.c - POST /v1/datasets (JSON or safetensors), GET /v1/datasets/{id}. */
#include <string.h>

#include "routes.h"

static int reply_dataset(server *s, http_req *r, const char *id, unsigned status)
{
    api_dataset_info info;
    d2_error err;
    d2_error_clear(&err);
    int rc = store_dataset_info(s->db, id, &info, &err);
    if (rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no dataset %s", id);
    if (rc != 0)
        return routes_store_error(s, r, &err);
    struct MHD_Response *resp = http_json_response(api_dataset_info_to_json(&info));
    if (resp && r->method == HTTP_POST) {
        char loc[128];
        snprintf(loc, sizeof loc, "/v1/datasets/%s", id);
        MHD_add_response_header(resp, "Location", loc);
    }
    return http_send(r, status, resp);
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
    char fp[65];
    dataset_fingerprint(&d, fp);
    int created = 0;
    d2_error err;
    d2_error_clear(&err);
    rc = store_dataset_put(s->db, fp, kind, &d, api_now_ms(), &created, &err);
    dataset_free(&d);
    if (rc != 0)
        return routes_store_error(s, r, &err);
    s->store_ok = 1;
    if (created)
        server_log(s, LOG_INFO, "dataset stored",
                   json_pack("{s:s, s:s}", "dataset_id", fp, "request_id", r->request_id));
    return reply_dataset(s, r, fp, created ? 201 : 200);
}

int route_dataset_get(server *s, http_req *r)
{
    if (!api_is_hex64(r->param))
        return http_errorf(r, 404, "not_found", NULL, 0,
                           "no dataset %s (ids are 64 lowercase hex digits)", r->param);
    return reply_dataset(s, r, r->param, 200);
}
