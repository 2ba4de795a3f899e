/* routes_checkpoints.c - checkpoint metadata, weights files and lineage. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "routes.h"
#include "worker.h"

/* One read per route: the checkpoint, and what the route needs with it. */
enum { CK_META, CK_WEIGHTS, CK_LINEAGE };

typedef struct ck_op {
    route_op op;
    int what;                /* CK_* */
    char id[API_ID_LEN];
    api_checkpoint c;
    int64_t offset;          /* CK_WEIGHTS */
    unsigned char *bytes;    /* CK_WEIGHTS from a store that keeps them (PostgreSQL) */
    size_t nbytes;
    api_lineage l;           /* CK_LINEAGE */
} ck_op;

static void ck_free(route_op *op)
{
    ck_op *c = (ck_op *)op;
    api_lineage_free(&c->l);
    free(c->bytes);
    free(c);
}

/* The lineage of checkpoint c from the store. */
static int load_lineage(store *db, const api_checkpoint *c, api_lineage *l, d2_error *err)
{
    store_generator g;
    memset(&g, 0, sizeof g);
    l->checkpoint = *c;
    if (store_job_get(db, c->job_id, &l->job, 0, err) != 0 ||
        store_generator_get(db, l->job.generator_id, &g, err) != 0 ||
        store_dataset_info(db, l->job.dataset_id, &l->dataset, err) != 0 ||
        store_checkpoints_derived(db, c->id, &l->derived, &l->nderived, err) != 0) {
        store_generator_free(&g);
        return err->code == D2_ENOTFOUND ? D2_EIO : err->code ? err->code : D2_EIO;
    }
    api_snprintf(l->generator_id, sizeof l->generator_id, "%s", g.id);
    api_snprintf(l->generator_name, sizeof l->generator_name, "%s", g.name);
    api_snprintf(l->spec, sizeof l->spec, "%s", g.spec);
    api_snprintf(l->zoo_fingerprint, sizeof l->zoo_fingerprint, "%s", g.zoo_fingerprint);
    l->zoo_size = g.zoo_size;
    l->config_json = g.config_json; /* moved */
    l->provenance_json = g.provenance_json;
    g.config_json = g.provenance_json = NULL;
    store_generator_free(&g);
    return 0;
}

static int ck_work(store *db, void *ctx, d2_error *err)
{
    ck_op *c = ctx;
    int rc = store_checkpoint_get(db, c->id, &c->c, err);
    if (rc != 0)
        return rc;
    if (c->what == CK_WEIGHTS && store_keeps_weights(db)) {
        rc = store_checkpoint_bytes(db, c->id, &c->bytes, &c->nbytes, err);
        return rc == D2_ENOTFOUND ? D2_EIO : rc;
    }
    if (c->what == CK_WEIGHTS) {
        rc = store_checkpoint_offset(db, c->id, &c->offset, err);
        return rc == D2_ENOTFOUND ? D2_EIO : rc;
    }
    return c->what == CK_LINEAGE ? load_lineage(db, &c->c, &c->l, err) : 0;
}

static int weights_answer(server *s, http_req *r, const api_checkpoint *ck, int64_t offset,
                          ck_op *c);

static int ck_answer(server *s, http_req *r, route_op *op)
{
    ck_op *c = (ck_op *)op;
    if (op->sq.rc == D2_ENOTFOUND)
        return http_errorf(r, 404, "not_found", NULL, 0, "no checkpoint %s", c->id);
    if (op->sq.rc != 0)
        return routes_op_error(s, r, op);
    if (c->what == CK_WEIGHTS)
        return weights_answer(s, r, &c->c, c->offset, c);
    json_t *out = c->what == CK_META ? api_checkpoint_to_json(&c->c) : api_lineage_to_json(&c->l);
    if (!out)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return http_send_json(r, 200, out);
}

static int ck_start(server *s, http_req *r, int what)
{
    if (!api_is_checkpoint_id(r->param))
        return http_errorf(r, 404, "not_found", NULL, 0, "no checkpoint %s", r->param);
    ck_op *c = calloc(1, sizeof *c);
    if (!c)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    api_lineage_init(&c->l);
    c->what = what;
    api_snprintf(c->id, sizeof c->id, "%s", r->param);
    return routes_run(s, r, &c->op, STOREQ_READ, ck_work, ck_answer, ck_free);
}

int route_checkpoint_get(server *s, http_req *r)
{
    return ck_start(s, r, CK_META);
}

int route_checkpoint_weights(server *s, http_req *r)
{
    return ck_start(s, r, CK_WEIGHTS);
}

int route_checkpoint_lineage(server *s, http_req *r)
{
    return ck_start(s, r, CK_LINEAGE);
}

/* The response of the weights: a slice of the job's pack file, or the bytes
 * the store keeps (op->bytes, moved into the response); NULL with the
 * request answered on a failure. */
static struct MHD_Response *weights_body(server *s, http_req *r, const api_checkpoint *ck,
                                         int64_t offset, ck_op *op, int *answered);

static int weights_answer(server *s, http_req *r, const api_checkpoint *ck, int64_t offset,
                          ck_op *op)
{
    api_checkpoint c = *ck;
    char etag[72];
    snprintf(etag, sizeof etag, "\"%s\"", c.sha256);
    const char *inm = http_header(r, "If-None-Match");
    if (inm && !strcmp(inm, etag)) {
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (resp)
            MHD_add_response_header(resp, "ETag", etag);
        return http_send(r, 304, resp);
    }
    int answered = 0;
    struct MHD_Response *resp = weights_body(s, r, &c, offset, op, &answered);
    if (!resp)
        return answered;
    char disp[128];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s.safetensors\"", c.id);
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    MHD_add_response_header(resp, "Content-Disposition", disp);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "X-Checkpoint-Sha256", c.sha256);
    return http_send(r, 200, resp);
}


static struct MHD_Response *weights_body(server *s, http_req *r, const api_checkpoint *ck,
                                         int64_t offset, ck_op *op, int *answered)
{
    struct MHD_Response *resp;
    if (op->bytes) {
        resp = MHD_create_response_from_buffer(op->nbytes, op->bytes, MHD_RESPMEM_MUST_FREE);
        if (resp)
            op->bytes = NULL; /* the response frees it */
        else
            *answered = http_errorf(r, 500, "internal", NULL, 0, "out of memory");
        return resp;
    }
    char path[sizeof s->checkpoint_dir + API_ID_LEN + 16];
    worker_pack_path(s->checkpoint_dir, ck->job_id, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        server_log(s, LOG_ERROR, "checkpoint pack missing",
                   json_pack("{s:s, s:s}", "path", path, "error", strerror(e)));
        *answered = http_errorf(r, 500, "internal", NULL, 0, "weights of %s are missing: %s",
                                ck->id, strerror(e));
        return NULL;
    }
    if ((int64_t)st.st_size < offset + ck->size_bytes) {
        close(fd);
        *answered = http_errorf(r, 500, "internal", NULL, 0,
                                "the pack of %s has %lld bytes; the store puts it at %lld+%lld",
                                ck->id, (long long)st.st_size, (long long)offset,
                                (long long)ck->size_bytes);
        return NULL;
    }
    resp = MHD_create_response_from_fd_at_offset64((uint64_t)ck->size_bytes, fd, (uint64_t)offset);
    if (!resp) {
        close(fd);
        *answered = http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    }
    return resp;
}
