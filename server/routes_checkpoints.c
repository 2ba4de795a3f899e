/* routes_checkpoints.c - checkpoint metadata, weights files and lineage. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "routes.h"
#include "worker.h"

/* Load a checkpoint or answer 404/500 (returns 1 when it answered). */
static int load(server *s, http_req *r, api_checkpoint *c)
{
    if (!api_is_checkpoint_id(r->param)) {
        http_errorf(r, 404, "not_found", NULL, 0, "no checkpoint %s", r->param);
        return 1;
    }
    d2_error err;
    d2_error_clear(&err);
    int rc = store_checkpoint_get(s->db, r->param, c, &err);
    if (rc == D2_ENOTFOUND) {
        http_errorf(r, 404, "not_found", NULL, 0, "no checkpoint %s", r->param);
        return 1;
    }
    if (rc != 0) {
        routes_store_error(s, r, &err);
        return 1;
    }
    return 0;
}

int route_checkpoint_get(server *s, http_req *r)
{
    api_checkpoint c;
    if (load(s, r, &c))
        return 0;
    return http_send_json(r, 200, api_checkpoint_to_json(&c));
}

int route_checkpoint_weights(server *s, http_req *r)
{
    api_checkpoint c;
    if (load(s, r, &c))
        return 0;
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
    d2_error err;
    d2_error_clear(&err);
    int64_t offset = 0;
    if (store_checkpoint_offset(s->db, c.id, &offset, &err) != 0)
        return routes_store_error(s, r, &err);
    char path[sizeof s->checkpoint_dir + API_ID_LEN + 16];
    worker_pack_path(s->checkpoint_dir, c.job_id, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        server_log(s, LOG_ERROR, "checkpoint pack missing",
                   json_pack("{s:s, s:s}", "path", path, "error", strerror(e)));
        return http_errorf(r, 500, "internal", NULL, 0, "weights of %s are missing: %s", c.id,
                           strerror(e));
    }
    if ((int64_t)st.st_size < offset + c.size_bytes) {
        close(fd);
        return http_errorf(r, 500, "internal", NULL, 0,
                           "the pack of %s has %lld bytes; the store puts it at %lld+%lld", c.id,
                           (long long)st.st_size, (long long)offset, (long long)c.size_bytes);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64((uint64_t)c.size_bytes, fd, (uint64_t)offset);
    if (!resp) {
        close(fd);
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    }
    char disp[128];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s.safetensors\"", c.id);
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    MHD_add_response_header(resp, "Content-Disposition", disp);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "X-Checkpoint-Sha256", c.sha256);
    return http_send(r, 200, resp);
}

/* Fill the lineage of checkpoint c from the store (answers on failure and
 * returns 1). */
static int load_lineage(server *s, http_req *r, const api_checkpoint *c, api_lineage *l)
{
    d2_error err;
    d2_error_clear(&err);
    store_generator g;
    memset(&g, 0, sizeof g);
    l->checkpoint = *c;
    if (store_job_get(s->db, c->job_id, &l->job, 0, &err) != 0 ||
        store_generator_get(s->db, l->job.generator_id, &g, &err) != 0 ||
        store_dataset_info(s->db, l->job.dataset_id, &l->dataset, &err) != 0 ||
        store_checkpoints_derived(s->db, c->id, &l->derived, &l->nderived, &err) != 0) {
        store_generator_free(&g);
        routes_store_error(s, r, &err);
        return 1;
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

int route_checkpoint_lineage(server *s, http_req *r)
{
    api_checkpoint c;
    if (load(s, r, &c))
        return 0;
    api_lineage l;
    api_lineage_init(&l);
    if (load_lineage(s, r, &c, &l)) {
        api_lineage_free(&l);
        return 0;
    }
    json_t *out = api_lineage_to_json(&l);
    api_lineage_free(&l);
    if (!out)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return http_send_json(r, 200, out);
}
