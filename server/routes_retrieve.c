/* routes_retrieve.c - POST /v1/retrieve: nearest zoo checkpoints for a data
 * set; GET .../zoo/{index}/weights: one of them as a checkpoint file. */
#include <stdlib.h>
#include <string.h>

#include "gen_zoo_export.h"
#include "jobs.h"
#include "routes.h"
#include "sha256.h"

int route_retrieve_post(server *s, http_req *r)
{
    if (routes_body_type(r, 0) < 0)
        return http_errorf(r, 415, "unsupported_media_type", "header.Content-Type", 0,
                           "send application/json");
    json_t *root = routes_json_body(r);
    if (!root)
        return 0;
    api_retrieve_request req;
    api_error e;
    int rc = api_retrieve_request_parse(root, &s->cfg->limits, &req, &e);
    json_decref(root);
    if (rc != 0) {
        api_retrieve_request_free(&req);
        return http_send_error(r, &e, 0);
    }
    int gi = gens_find(&s->gens, req.generator);
    if (gi < 0) {
        api_retrieve_request_free(&req);
        return http_errorf(r, 422, "unknown_generator", "generator", 0,
                           "no generator named or with id '%s'", req.generator);
    }
    char why[API_MESSAGE_LEN];
    int retry = gens_unusable(&s->gens, gi, why, sizeof why);
    if (retry > 0) {
        api_retrieve_request_free(&req);
        return http_errorf(r, 503, "not_ready", "generator", retry, "%s", why);
    }
    const gen_entry *ge = &s->gens.e[gi];
    int kind;
    char id[65];
    if (routes_request_dataset(s, r, ge, req.has_dataset ? &req.data : NULL, req.dataset_id,
                               req.kind, &kind, id)) {
        api_retrieve_request_free(&req);
        return 0;
    }
    rtask *t = calloc(1, sizeof *t);
    if (!t) {
        api_retrieve_request_free(&req);
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    }
    t->w.gen_index = gi;
    t->w.embeddings = kind == API_KIND_EMBEDDINGS;
    t->w.k = req.k;
    if (req.has_dataset) {
        t->w.data = req.data; /* moved */
        t->w.has_data = 1;
        req.has_dataset = 0;
    } else {
        api_snprintf(t->w.dataset_id, sizeof t->w.dataset_id, "%s", req.dataset_id);
    }
    atomic_init(&t->w.progress_ppm, 0);
    atomic_init(&t->w.cancel, 0);
    atomic_init(&t->w.shutdown, 0);
    if (jobs_retrieve(s->jobs, t, r) != 0) {
        if (t->w.has_data)
            dataset_free(&t->w.data);
        free(t);
        return http_errorf(r, 503, "queue_full", NULL, 1, "too many retrievals waiting");
    }
    return 0; /* suspended until a worker answers (jobs.c prepares the answer) */
}

/* The zoo index of a weights URL: digits only, inside the zoo; else -1. */
static int zoo_index_of(const char *s, int zoo_n)
{
    if (!s[0] || strlen(s) > 9 || strspn(s, "0123456789") != strlen(s))
        return -1;
    long i = strtol(s, NULL, 10);
    return i < zoo_n ? (int)i : -1;
}

/* GET /v1/generators/{ref}/zoo/{index}/weights: a retrieval hit's weights,
 * the same complete safetensors file a generated checkpoint is. */
int route_zoo_weights(server *s, http_req *r)
{
    int gi = gens_find(&s->gens, r->param);
    if (gi < 0)
        return http_errorf(r, 404, "not_found", NULL, 0, "no generator named or with id '%s'",
                           r->param);
    char why[API_MESSAGE_LEN];
    int retry = gens_unusable(&s->gens, gi, why, sizeof why);
    if (retry > 0)
        return http_errorf(r, 503, "not_ready", NULL, retry, "%s", why);
    const gen_entry *ge = &s->gens.e[gi];
    int n = generator_zoo_size(ge->g);
    int index = zoo_index_of(r->param2, n);
    if (index < 0)
        return http_errorf(r, 404, "not_found", NULL, 0,
                           "generator '%s' has no zoo entry %s (its zoo has %d, from 0)",
                           ge->name, r->param2, n);
    unsigned char *bytes = NULL;
    size_t len = 0;
    d2_error err;
    d2_error_clear(&err);
    if (generator_zoo_checkpoint_bytes(ge->g, index, &bytes, &len, &err) != 0)
        return http_errorf(r, 500, "internal", NULL, 0, "zoo entry %d: %s", index, err.msg);
    char sha[65], etag[72];
    sha256_hex(bytes, len, sha);
    snprintf(etag, sizeof etag, "\"%s\"", sha);
    const char *inm = http_header(r, "If-None-Match");
    struct MHD_Response *resp;
    unsigned status = 200;
    if (inm && !strcmp(inm, etag)) {
        free(bytes);
        status = 304;
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(len, bytes, MHD_RESPMEM_MUST_FREE);
        if (!resp)
            free(bytes);
    }
    if (!resp)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    char disp[160];
    snprintf(disp, sizeof disp, "attachment; filename=\"%.12s_zoo_%d.safetensors\"",
             ge->info->id, index);
    if (status == 200) {
        MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
        MHD_add_response_header(resp, "Content-Disposition", disp);
        MHD_add_response_header(resp, "X-Checkpoint-Sha256", sha);
    }
    MHD_add_response_header(resp, "ETag", etag);
    return http_send(r, status, resp);
}
