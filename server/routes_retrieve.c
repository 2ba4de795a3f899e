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
