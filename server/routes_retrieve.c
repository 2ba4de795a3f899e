/* routes_retrieve.c - POST /v1/retrieve: nearest zoo checkpoints for a data
 * set; GET .../zoo/{index}/weights: one of them as a checkpoint file. */
#include <stdlib.h>
#include <string.h>

#include "gen_zoo_export.h"
#include "jobs.h"
#include "routes.h"
#include "sha256.h"

/* Hand the retrieval to a worker (takes the inline data set from req). */
static int retrieve_queue(server *s, http_req *r, int gi, int kind, api_retrieve_request *req)
{
    rtask *t = calloc(1, sizeof *t);
    if (!t)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    t->w.gen_index = gi;
    t->w.embeddings = kind == API_KIND_EMBEDDINGS;
    t->w.k = req->k;
    if (req->has_dataset) {
        t->w.data = req->data; /* moved */
        t->w.has_data = 1;
        req->has_dataset = 0;
    } else {
        api_snprintf(t->w.dataset_id, sizeof t->w.dataset_id, "%s", req->dataset_id);
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

/* A stored data set is read on the store thread first. */
typedef struct retrieve_op {
    route_op op;
    int gi;
    api_retrieve_request req;
    api_dataset_info info;
} retrieve_op;

static void retrieve_free(route_op *op)
{
    retrieve_op *c = (retrieve_op *)op;
    api_retrieve_request_free(&c->req);
    free(c);
}

static int retrieve_work(store *db, void *ctx, d2_error *err)
{
    retrieve_op *c = ctx;
    return store_dataset_info(db, c->req.dataset_id, &c->info, err);
}

static int retrieve_checked(server *s, http_req *r, route_op *op)
{
    retrieve_op *c = (retrieve_op *)op;
    if (op->sq.rc != 0 && op->sq.rc != D2_ENOTFOUND)
        return routes_op_error(s, r, op);
    int kind;
    if (routes_stored_dataset(r, &s->gens.e[c->gi], op->sq.rc, &c->info, c->req.dataset_id,
                              c->req.kind, &kind))
        return 0;
    return retrieve_queue(s, r, c->gi, kind, &c->req);
}

int route_retrieve_post(server *s, http_req *r)
{
    json_t *root;
    int answered;
    retrieve_op *c = routes_json_op(r, sizeof *c, &root, &answered);
    if (!c)
        return answered;
    api_error e;
    int rc = api_retrieve_request_parse(root, &s->cfg->limits, &c->req, &e);
    json_decref(root);
    if (rc != 0) {
        retrieve_free(&c->op);
        return http_send_error(r, &e, 0);
    }
    c->gi = gens_find(&s->gens, c->req.generator);
    char why[API_MESSAGE_LEN];
    int retry = c->gi < 0 ? 0 : gens_unusable(&s->gens, c->gi, why, sizeof why);
    int kind;
    char id[65];
    if (c->gi < 0)
        rc = http_errorf(r, 422, "unknown_generator", "generator", 0,
                         "no generator named or with id '%s'", c->req.generator);
    else if (retry > 0)
        rc = http_errorf(r, 503, "not_ready", "generator", retry, "%s", why);
    else if (!c->req.has_dataset)
        return routes_run(s, r, &c->op, STOREQ_READ, retrieve_work, retrieve_checked,
                          retrieve_free);
    else if (!routes_inline_dataset(r, &s->gens.e[c->gi], &c->req.data, c->req.kind, &kind, id))
        rc = retrieve_queue(s, r, c->gi, kind, &c->req);
    retrieve_free(&c->op);
    return rc;
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
