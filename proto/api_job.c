/* api_job.c - jobs, checkpoints, retrieval requests and generators on the wire. */
#include "api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- request field helpers: JSON null counts as absent ---- */

static const json_t *opt(const json_t *root, const char *key)
{
    const json_t *v = json_object_get(root, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

static int check_keys(const json_t *root, const char *const *allowed, api_error *e)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            if (!strcmp(key, allowed[i]))
                ok = 1;
        if (!ok)
            return api_fail(e, 400, "invalid_argument", key, "unknown field");
    }
    return 0;
}

static int get_int(const json_t *root, const char *key, long long lo, long long hi,
                   long long *out, api_error *e)
{
    const json_t *v = opt(root, key);
    if (!v)
        return 1; /* absent */
    if (!json_is_integer(v))
        return api_fail(e, 400, "invalid_argument", key, "expected an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return api_fail(e, 400, "invalid_argument", key, "%lld out of range %lld..%lld", x, lo,
                        hi);
    *out = x;
    return 0;
}

static int get_string(const json_t *root, const char *key, char *out, size_t cap, api_error *e)
{
    const json_t *v = opt(root, key);
    if (!v)
        return 1;
    if (!json_is_string(v))
        return api_fail(e, 400, "invalid_argument", key, "expected a string");
    const char *s = json_string_value(v);
    if (!s[0] || strlen(s) >= cap)
        return api_fail(e, 400, "invalid_argument", key, "expected 1..%zu characters", cap - 1);
    snprintf(out, cap, "%s", s);
    return 0;
}

/* dataset xor dataset_id (with an optional dataset_kind: -1 in *kind when
 * absent), shared by jobs and retrieval. */
static int get_dataset(const json_t *root, const api_limits *lim, int *has_dataset, dataset *d,
                       int *kind, char *dataset_id, api_error *e)
{
    const json_t *ds = opt(root, "dataset");
    const json_t *id = opt(root, "dataset_id");
    const json_t *k = opt(root, "dataset_kind");
    if (ds && id)
        return api_fail(e, 400, "invalid_argument", "dataset_id",
                        "give either dataset or dataset_id, not both");
    if (!ds && !id)
        return api_fail(e, 400, "invalid_argument", "dataset",
                        "missing: dataset (inline) or dataset_id (uploaded) is required");
    if (id) {
        int rc = get_string(root, "dataset_id", dataset_id, API_ID_LEN, e);
        if (rc < 0)
            return rc;
        if (!api_is_hex64(dataset_id))
            return api_fail(e, 400, "invalid_argument", "dataset_id",
                            "expected a dataset id (64 lowercase hex digits)");
        *kind = -1;
        if (k && (!json_is_string(k) || api_kind_parse(json_string_value(k), kind) != 0))
            return api_fail(e, 400, "invalid_argument", "dataset_kind",
                            "expected \"samples\" or \"embeddings\"");
        *has_dataset = 0;
        return 0;
    }
    if (k)
        return api_fail(e, 400, "invalid_argument", "dataset_kind",
                        "only with dataset_id (an inline dataset says samples or embeddings)");
    int rc = api_dataset_parse(ds, "dataset", lim, d, kind, e);
    if (rc == 0)
        *has_dataset = 1;
    return rc;
}

void api_job_request_init(api_job_request *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->generator, sizeof r->generator, "default");
    r->kind = -1;
    r->sampler = -1;
    r->priority = 5;
    r->gate = 1;
    r->refine = 1;
}

void api_job_request_free(api_job_request *r)
{
    if (r->has_dataset)
        dataset_free(&r->data);
    r->has_dataset = 0;
}

int api_job_request_parse(const json_t *root, const api_limits *lim, api_job_request *r,
                          api_error *e)
{
    static const char *const allowed[] = {"generator", "dataset", "dataset_id", "dataset_kind",
                                          "candidates", "steps", "sampler", "guidance", "seed",
                                          "priority", "parent_checkpoint", "gate", "refine",
                                          NULL};
    api_job_request_init(r);
    if (!json_is_object(root))
        return api_fail(e, 400, "invalid_json", NULL, "expected a JSON object");
    int rc = check_keys(root, allowed, e);
    if (rc < 0)
        return rc;
    if ((rc = get_string(root, "generator", r->generator, sizeof r->generator, e)) < 0)
        return rc;
    long long v;
    if ((rc = get_int(root, "candidates", 1, lim->max_candidates, &v, e)) < 0)
        return rc;
    if (rc == 0)
        r->candidates = (int)v;
    if ((rc = get_int(root, "steps", 1, lim->max_steps, &v, e)) < 0)
        return rc;
    if (rc == 0)
        r->steps = (int)v;
    if ((rc = get_int(root, "priority", 0, 9, &v, e)) < 0)
        return rc;
    if (rc == 0)
        r->priority = (int)v;
    if ((rc = get_int(root, "seed", 0, INT64_MAX, &v, e)) < 0)
        return rc;
    if (rc == 0) {
        r->has_seed = 1;
        r->seed = v;
    }
    const json_t *s = opt(root, "sampler");
    if (s) {
        if (!json_is_string(s) || api_sampler_parse(json_string_value(s), &r->sampler) != 0)
            return api_fail(e, 400, "invalid_argument", "sampler", "expected \"ddim\" or \"ddpm\"");
    }
    const json_t *g = opt(root, "guidance");
    if (g) {
        if (!json_is_number(g))
            return api_fail(e, 400, "invalid_argument", "guidance", "expected a number");
        double x = json_number_value(g);
        if (!(x >= 0.0 && x <= 20.0))
            return api_fail(e, 400, "invalid_argument", "guidance", "%g out of range 0..20", x);
        r->has_guidance = 1;
        r->guidance = x;
    }
    const json_t *gate = opt(root, "gate");
    if (gate && !json_is_boolean(gate))
        return api_fail(e, 400, "invalid_argument", "gate", "expected true or false");
    if (gate)
        r->gate = json_is_true(gate);
    const json_t *refine = opt(root, "refine");
    if (refine && !json_is_boolean(refine))
        return api_fail(e, 400, "invalid_argument", "refine", "expected true or false");
    if (refine)
        r->refine = json_is_true(refine);
    if ((rc = get_string(root, "parent_checkpoint", r->parent_checkpoint,
                         sizeof r->parent_checkpoint, e)) < 0)
        return rc;
    if (rc == 0 && !api_is_checkpoint_id(r->parent_checkpoint))
        return api_fail(e, 400, "invalid_argument", "parent_checkpoint",
                        "expected a checkpoint id (ck_<20 hex>_<rank>)");
    return get_dataset(root, lim, &r->has_dataset, &r->data, &r->kind, r->dataset_id, e);
}

json_t *api_job_request_to_json(const api_job_request *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "generator", json_string(r->generator));
    if (r->has_dataset) {
        json_t *ds = api_dataset_to_json(&r->data, r->kind);
        bad |= ds ? json_object_set_new(o, "dataset", ds) : -1;
    } else {
        bad |= json_object_set_new(o, "dataset_id", json_string(r->dataset_id));
        if (r->kind >= 0)
            bad |= json_object_set_new(o, "dataset_kind", json_string(api_kind_name(r->kind)));
    }
    if (r->candidates > 0)
        bad |= json_object_set_new(o, "candidates", json_integer(r->candidates));
    if (r->steps > 0)
        bad |= json_object_set_new(o, "steps", json_integer(r->steps));
    if (r->sampler >= 0)
        bad |= json_object_set_new(o, "sampler", json_string(api_sampler_name(r->sampler)));
    if (r->has_guidance)
        bad |= json_object_set_new(o, "guidance", json_real(r->guidance));
    if (r->has_seed)
        bad |= json_object_set_new(o, "seed", json_integer(r->seed));
    if (r->priority != 5)
        bad |= json_object_set_new(o, "priority", json_integer(r->priority));
    if (r->parent_checkpoint[0])
        bad |= json_object_set_new(o, "parent_checkpoint", json_string(r->parent_checkpoint));
    if (!r->gate)
        bad |= json_object_set_new(o, "gate", json_false());
    if (!r->refine)
        bad |= json_object_set_new(o, "refine", json_false());
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void api_retrieve_request_init(api_retrieve_request *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->generator, sizeof r->generator, "default");
    r->kind = -1;
    r->k = 5;
}

void api_retrieve_request_free(api_retrieve_request *r)
{
    if (r->has_dataset)
        dataset_free(&r->data);
    r->has_dataset = 0;
}

int api_retrieve_request_parse(const json_t *root, const api_limits *lim, api_retrieve_request *r,
                               api_error *e)
{
    static const char *const allowed[] = {"generator", "dataset", "dataset_id", "dataset_kind",
                                          "k", NULL};
    api_retrieve_request_init(r);
    if (!json_is_object(root))
        return api_fail(e, 400, "invalid_json", NULL, "expected a JSON object");
    int rc = check_keys(root, allowed, e);
    if (rc < 0)
        return rc;
    if ((rc = get_string(root, "generator", r->generator, sizeof r->generator, e)) < 0)
        return rc;
    long long v;
    if ((rc = get_int(root, "k", 1, lim->max_k, &v, e)) < 0)
        return rc;
    if (rc == 0)
        r->k = (int)v;
    return get_dataset(root, lim, &r->has_dataset, &r->data, &r->kind, r->dataset_id, e);
}

/* ---- responses ---- */

static json_t *time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char t[32];
    api_format_time(ms, t);
    return json_string(t);
}

static int set(json_t *o, const char *k, json_t *v)
{
    return json_object_set_new(o, k, v) != 0 ? -1 : 0;
}

json_t *api_checkpoint_to_json(const api_checkpoint *c)
{
    char weights[160], lineage[160];
    snprintf(weights, sizeof weights, "/v1/checkpoints/%s/weights", c->id);
    snprintf(lineage, sizeof lineage, "/v1/checkpoints/%s/lineage", c->id);
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= set(o, "id", json_string(c->id));
    bad |= set(o, "job_id", json_string(c->job_id));
    bad |= set(o, "rank", json_integer(c->rank));
    bad |= set(o, "candidate_index", json_integer(c->candidate_index));
    bad |= set(o, "method", json_string(api_method_name(c->method)));
    bad |= set(o, "support_accuracy", json_real(c->support_acc));
    bad |= set(o, "support_loss", json_real(c->support_loss));
    bad |= set(o, "norm", json_real(c->norm));
    bad |= set(o, "zoo_distance", json_real(c->zoo_distance));
    bad |= set(o, "zoo_nearest", json_integer(c->zoo_nearest));
    bad |= set(o, "sha256", json_string(c->sha256));
    bad |= set(o, "size_bytes", json_integer(c->size_bytes));
    bad |= set(o, "generator_id", json_string(c->generator_id));
    bad |= set(o, "dataset_id", json_string(c->dataset_id));
    bad |= set(o, "seed", json_integer(c->seed));
    bad |= set(o, "created_at", time_or_null(c->created_ms));
    bad |= set(o, "weights_url", json_string(weights));
    bad |= set(o, "lineage_url", json_string(lineage));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void copy_str(char *dst, size_t cap, const json_t *v)
{
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static double num(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

static int64_t time_of(const json_t *v)
{
    int64_t ms = 0;
    if (json_is_string(v) && api_parse_time(json_string_value(v), &ms) == 0)
        return ms;
    return 0;
}

int api_checkpoint_from_json(const json_t *o, api_checkpoint *c, api_error *e)
{
    memset(c, 0, sizeof *c);
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "id")))
        return api_fail(e, 0, "invalid_json", NULL, "checkpoint: expected an object with an id");
    copy_str(c->id, sizeof c->id, json_object_get(o, "id"));
    copy_str(c->job_id, sizeof c->job_id, json_object_get(o, "job_id"));
    c->rank = (int)json_integer_value(json_object_get(o, "rank"));
    c->candidate_index = (int)json_integer_value(json_object_get(o, "candidate_index"));
    const char *method = json_string_value(json_object_get(o, "method"));
    if (method && api_method_parse(method, &c->method) != 0)
        return api_fail(e, 0, "invalid_json", NULL, "checkpoint %s: unknown method '%s'", c->id,
                        method);
    c->support_acc = num(json_object_get(o, "support_accuracy"));
    c->support_loss = num(json_object_get(o, "support_loss"));
    c->norm = num(json_object_get(o, "norm"));
    c->zoo_distance = num(json_object_get(o, "zoo_distance"));
    c->zoo_nearest = (int)json_integer_value(json_object_get(o, "zoo_nearest"));
    copy_str(c->sha256, sizeof c->sha256, json_object_get(o, "sha256"));
    c->size_bytes = json_integer_value(json_object_get(o, "size_bytes"));
    copy_str(c->generator_id, sizeof c->generator_id, json_object_get(o, "generator_id"));
    copy_str(c->dataset_id, sizeof c->dataset_id, json_object_get(o, "dataset_id"));
    c->seed = json_integer_value(json_object_get(o, "seed"));
    c->created_ms = time_of(json_object_get(o, "created_at"));
    return 0;
}

void api_job_init(api_job *j)
{
    memset(j, 0, sizeof *j);
    j->run_seconds = -1.0;
    j->gate_requested = 1;
    j->refine_requested = 1;
    api_gate_init(&j->gate);
}

void api_job_free(api_job *j)
{
    free(j->checkpoints);
    j->checkpoints = NULL;
    j->ncheckpoints = 0;
}

json_t *api_job_to_json(const api_job *j)
{
    char self[128];
    snprintf(self, sizeof self, "/v1/jobs/%s", j->id);
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    bad |= set(o, "id", json_string(j->id));
    bad |= set(o, "state", json_string(api_job_state_name(j->state)));
    bad |= set(o, "progress", json_real(j->progress));
    bad |= set(o, "generator",
               json_pack("{s:s, s:s}", "name", j->generator_name, "id", j->generator_id));
    bad |= set(o, "dataset_id", json_string(j->dataset_id));
    bad |= set(o, "dataset_kind", json_string(api_kind_name(j->kind)));
    bad |= set(o, "params",
               json_pack("{s:i, s:i, s:s, s:f, s:I, s:b, s:b}", "candidates", j->candidates,
                         "steps", j->steps, "sampler", api_sampler_name(j->sampler), "guidance",
                         j->guidance, "seed", (json_int_t)j->seed, "gate", j->gate_requested,
                         "refine", j->refine_requested));
    bad |= set(o, "priority", json_integer(j->priority));
    bad |= set(o, "parent_checkpoint",
               j->parent_checkpoint[0] ? json_string(j->parent_checkpoint) : json_null());
    bad |= set(o, "cancel_requested", json_boolean(j->cancel_requested));
    bad |= set(o, "attempts", json_integer(j->attempts));
    bad |= set(o, "created_at", time_or_null(j->created_ms));
    bad |= set(o, "started_at", time_or_null(j->started_ms));
    bad |= set(o, "finished_at", time_or_null(j->finished_ms));
    bad |= set(o, "queue_seconds",
               j->started_ms > 0 ? json_real((double)(j->started_ms - j->created_ms) / 1000.0)
                                 : json_null());
    bad |= set(o, "run_seconds", j->run_seconds >= 0 ? json_real(j->run_seconds) : json_null());
    bad |= set(o, "error",
               j->error_code[0] ? json_pack("{s:s, s:s}", "code", j->error_code, "message",
                                            j->error_message)
                                : json_null());
    if (j->state == API_JOB_SUCCEEDED) {
        json_t *list = json_array();
        bad |= list ? 0 : -1;
        for (int i = 0; list && i < j->ncheckpoints; i++) {
            json_t *c = api_checkpoint_to_json(&j->checkpoints[i]);
            bad |= c ? json_array_append_new(list, c) : -1;
        }
        bad |= set(o, "result", json_pack("{s:i, s:o}", "way", j->way, "checkpoints", list));
    } else {
        bad |= set(o, "result", json_null());
    }
    bad |= set(o, "gate", j->has_gate ? api_gate_to_json(&j->gate) : json_null());
    bad |= set(o, "warnings", api_gate_warnings_to_json(j->has_gate ? &j->gate : NULL));
    bad |= set(o, "links", json_pack("{s:s, s:s+}", "self", self, "cancel", self, ":cancel"));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int api_job_from_json(const json_t *root, api_job *j, api_error *e)
{
    api_job_init(j);
    const json_t *id = json_object_get(root, "id");
    const json_t *state = json_object_get(root, "state");
    if (!json_is_object(root) || !json_is_string(id) || !json_is_string(state) ||
        api_job_state_parse(json_string_value(state), &j->state) != 0)
        return api_fail(e, 0, "invalid_json", NULL, "job: expected an object with id and state");
    copy_str(j->id, sizeof j->id, id);
    j->progress = num(json_object_get(root, "progress"));
    const json_t *gen = json_object_get(root, "generator");
    copy_str(j->generator_name, sizeof j->generator_name, json_object_get(gen, "name"));
    copy_str(j->generator_id, sizeof j->generator_id, json_object_get(gen, "id"));
    copy_str(j->dataset_id, sizeof j->dataset_id, json_object_get(root, "dataset_id"));
    const json_t *kind = json_object_get(root, "dataset_kind");
    if (json_is_string(kind))
        api_kind_parse(json_string_value(kind), &j->kind);
    const json_t *p = json_object_get(root, "params");
    j->candidates = (int)json_integer_value(json_object_get(p, "candidates"));
    j->steps = (int)json_integer_value(json_object_get(p, "steps"));
    const json_t *sampler = json_object_get(p, "sampler");
    if (json_is_string(sampler))
        api_sampler_parse(json_string_value(sampler), &j->sampler);
    j->guidance = num(json_object_get(p, "guidance"));
    j->seed = json_integer_value(json_object_get(p, "seed"));
    j->gate_requested = !json_is_false(json_object_get(p, "gate"));
    j->refine_requested = json_is_true(json_object_get(p, "refine"));
    j->priority = (int)json_integer_value(json_object_get(root, "priority"));
    copy_str(j->parent_checkpoint, sizeof j->parent_checkpoint,
             json_object_get(root, "parent_checkpoint"));
    j->cancel_requested = json_is_true(json_object_get(root, "cancel_requested"));
    j->attempts = (int)json_integer_value(json_object_get(root, "attempts"));
    j->created_ms = time_of(json_object_get(root, "created_at"));
    j->started_ms = time_of(json_object_get(root, "started_at"));
    j->finished_ms = time_of(json_object_get(root, "finished_at"));
    const json_t *run = json_object_get(root, "run_seconds");
    j->run_seconds = json_is_number(run) ? json_number_value(run) : -1.0;
    const json_t *err = json_object_get(root, "error");
    if (json_is_object(err)) {
        copy_str(j->error_code, sizeof j->error_code, json_object_get(err, "code"));
        copy_str(j->error_message, sizeof j->error_message, json_object_get(err, "message"));
    }
    const json_t *gate = json_object_get(root, "gate");
    if (json_is_object(gate)) {
        if (api_gate_from_json(gate, &j->gate, e) != 0)
            return D2_EINVAL;
        j->has_gate = 1;
    }
    const json_t *res = json_object_get(root, "result");
    if (json_is_object(res)) {
        j->way = (int)json_integer_value(json_object_get(res, "way"));
        const json_t *list = json_object_get(res, "checkpoints");
        size_t n = json_array_size(list);
        if (n > 0) {
            j->checkpoints = calloc(n, sizeof *j->checkpoints);
            if (!j->checkpoints)
                return api_fail(e, 0, "internal", NULL, "out of memory");
            j->ncheckpoints = (int)n;
            for (size_t i = 0; i < n; i++)
                if (api_checkpoint_from_json(json_array_get(list, i), &j->checkpoints[i], e) != 0) {
                    api_job_free(j);
                    return D2_EINVAL;
                }
        }
    }
    return 0;
}

static json_t *parse_or_empty(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (v && json_is_object(v))
        return v;
    json_decref(v);
    return json_object();
}

json_t *api_generator_to_json(const char *name, const gen_info *gi, int64_t loaded_ms)
{
    char t[32];
    api_format_time(loaded_ms, t);
    json_t *defaults = json_pack("{s:i, s:i, s:f, s:s}", "candidates", gi->default_candidates,
                                 "steps", gi->default_steps, "guidance",
                                 (double)gi->default_guidance, "sampler",
                                 api_sampler_name(gi->default_sampler));
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:o, s:o, s:o, "
                     "s:s}",
                     "name", name, "state", "ready", "id", gi->id, "spec", gi->spec ? gi->spec->text : "",
                     "input_dim", gi->input_dim, "feature_dim", gi->feature_dim, "min_way",
                     gi->min_way, "max_way", gi->max_way, "params", gi->params, "zoo_size",
                     gi->zoo_size, "zoo_fingerprint", gi->zoo_fingerprint, "defaults", defaults,
                     "config", parse_or_empty(gi->config_json), "provenance",
                     parse_or_empty(gi->provenance_json), "loaded_at", t);
}
