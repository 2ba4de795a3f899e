/* routes_retrieve.c - POST /v1/retrieve: nearest zoo checkpoints for a data set. */
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "routes.h"

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
    const gen_entry *ge = &s->gens.e[gi];
    int kind = req.kind;
    d2_error err;
    d2_error_clear(&err);
    if (req.has_dataset) {
        const char *xf = kind == API_KIND_EMBEDDINGS ? "dataset.embeddings" : "dataset.samples";
        if (routes_check_dataset_fits(ge, kind, req.data.dim, req.data.classes, xf,
                                      "dataset.labels", &e) != 0) {
            api_retrieve_request_free(&req);
            return http_send_error(r, &e, 0);
        }
        if (generator_check_support(ge->g, &req.data, kind == API_KIND_EMBEDDINGS, &err) != 0) {
            api_retrieve_request_free(&req);
            return http_errorf(r, 422, "invalid_dataset", "dataset", 0, "%s", err.msg);
        }
    } else {
        api_dataset_info info;
        int drc = store_dataset_info(s->db, req.dataset_id, &info, &err);
        if (drc == D2_ENOTFOUND)
            return http_errorf(r, 422, "unknown_dataset", "dataset_id", 0, "no dataset %s",
                               req.dataset_id);
        if (drc != 0)
            return routes_store_error(s, r, &err);
        if (routes_stored_dataset_kind(ge, &info, req.kind, &kind, &e) != 0)
            return http_send_error(r, &e, 0);
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
