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

static json_t *parse_object(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (v && json_is_object(v))
        return v;
    json_decref(v);
    return json_object();
}

int route_checkpoint_lineage(server *s, http_req *r)
{
    api_checkpoint c;
    if (load(s, r, &c))
        return 0;
    d2_error err;
    d2_error_clear(&err);
    api_job job;
    store_generator g;
    api_dataset_info ds;
    char(*derived)[API_ID_LEN] = NULL;
    int nderived = 0;
    memset(&g, 0, sizeof g);
    if (store_job_get(s->db, c.job_id, &job, 0, &err) != 0)
        return routes_store_error(s, r, &err);
    if (store_generator_get(s->db, job.generator_id, &g, &err) != 0 ||
        store_dataset_info(s->db, job.dataset_id, &ds, &err) != 0 ||
        store_checkpoints_derived(s->db, c.id, &derived, &nderived, &err) != 0) {
        store_generator_free(&g);
        api_job_free(&job);
        return routes_store_error(s, r, &err);
    }
    json_t *dlist = json_array();
    for (int i = 0; dlist && i < nderived; i++)
        json_array_append_new(dlist, json_string(derived[i]));
    free(derived);
    char created[32], finished[32];
    api_format_time(job.created_ms, created);
    api_format_time(job.finished_ms, finished);
    json_t *out = json_pack(
        "{s:o, s:{s:s, s:s, s:s, s:s, s:i, s:o, s:o}, s:o, s:{s:s, s:s, s:s, s:o, s:i}, s:I, "
        "s:{s:s, s:i, s:f, s:i}, s:i, s:o, s:o}",
        "checkpoint", api_checkpoint_to_json(&c),
        "generator", "id", g.id, "name", g.name, "spec", g.spec, "zoo_fingerprint",
        g.zoo_fingerprint, "zoo_size", g.zoo_size, "config", parse_object(g.config_json),
        "provenance", parse_object(g.provenance_json),
        "dataset", api_dataset_info_to_json(&ds),
        "job", "id", job.id, "state", api_job_state_name(job.state), "created_at", created,
        "finished_at", job.finished_ms > 0 ? json_string(finished) : json_null(), "priority",
        job.priority,
        "seed", (json_int_t)job.seed,
        "sampler", "sampler", api_sampler_name(job.sampler), "steps", job.steps, "guidance",
        job.guidance, "candidates", job.candidates,
        "rank", c.rank,
        "parent", job.parent_checkpoint[0] ? json_string(job.parent_checkpoint) : json_null(),
        "derived", dlist);
    store_generator_free(&g);
    api_job_free(&job);
    if (!out)
        return http_errorf(r, 500, "internal", NULL, 0, "out of memory");
    return http_send_json(r, 200, out);
}
