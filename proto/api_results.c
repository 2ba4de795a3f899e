/* api_results.c - the daemon's composite answers (JobList, RetrieveResult,
 * Lineage) and the RetrieveRequest body the client sends: built here for the
 * server and parsed here for the client, so neither side spells a key. */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy_str(char *dst, size_t cap, const json_t *v)
{
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static double num(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

static int int_of(const json_t *o, const char *key)
{
    return (int)json_integer_value(json_object_get(o, key));
}

/* ---- RetrieveRequest (client) ---- */

json_t *api_retrieve_request_to_json(const api_retrieve_request *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "generator", json_string(r->generator));
    if (r->has_dataset) {
        json_t *ds = api_dataset_to_json(&r->data, r->kind);
        bad |= ds ? json_object_set_new(o, "dataset", ds) : -1;
    } else {
        bad |= json_object_set_new(o, "dataset_id", json_string(r->dataset_id));
        if (r->kind >= 0)
            bad |= json_object_set_new(o, "dataset_kind", json_string(api_kind_name(r->kind)));
    }
    bad |= json_object_set_new(o, "k", json_integer(r->k));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- RetrieveResult ---- */

json_t *api_retrieve_result_to_json(const api_retrieve_result *r)
{
    json_t *hits = json_array();
    for (int i = 0; hits && i < r->nhits; i++) {
        const gen_retrieval *h = &r->hits[i];
        json_t *classes = json_array();
        for (int c = 0; classes && c < h->way && c < D2_MAX_WAY; c++)
            if (json_array_append_new(classes, json_integer(h->classes[c])) != 0) {
                json_decref(classes);
                classes = NULL;
            }
        char url[API_NAME_LEN + 112];
        snprintf(url, sizeof url, "/v1/generators/%s/zoo/%d/weights", r->generator_id,
                 h->zoo_index);
        json_t *o = classes ? json_pack("{s:i, s:f, s:f, s:o, s:s, s:s, s:s}", "zoo_index",
                                        h->zoo_index, "distance", (double)h->distance,
                                        "support_accuracy", (double)h->support_acc, "classes",
                                        classes, "weights_url", url, "generator_id",
                                        r->generator_id, "zoo_fingerprint", r->zoo_fingerprint)
                            : NULL;
        if (!o || json_array_append_new(hits, o) != 0) {
            json_decref(hits);
            hits = NULL;
        }
    }
    if (!hits)
        return NULL;
    return json_pack("{s:{s:s, s:s}, s:s, s:o}", "generator", "name", r->generator_name, "id",
                     r->generator_id, "dataset_fingerprint", r->dataset_fingerprint, "hits",
                     hits);
}

int api_retrieve_result_from_json(const json_t *root, api_retrieve_result *r, api_error *e)
{
    memset(r, 0, sizeof *r);
    const json_t *hits = json_object_get(root, "hits");
    if (!json_is_object(root) || !json_is_array(hits))
        return api_fail(e, 0, "invalid_json", NULL, "retrieval: expected an object with hits");
    const json_t *g = json_object_get(root, "generator");
    copy_str(r->generator_name, sizeof r->generator_name, json_object_get(g, "name"));
    copy_str(r->generator_id, sizeof r->generator_id, json_object_get(g, "id"));
    copy_str(r->dataset_fingerprint, sizeof r->dataset_fingerprint,
             json_object_get(root, "dataset_fingerprint"));
    if (json_array_size(hits) > 0)
        copy_str(r->zoo_fingerprint, sizeof r->zoo_fingerprint,
                 json_object_get(json_array_get(hits, 0), "zoo_fingerprint"));
    size_t n = json_array_size(hits);
    if (n > API_MAX_HITS)
        return api_fail(e, 0, "invalid_json", NULL, "retrieval: %zu hits, at most %d", n,
                        API_MAX_HITS);
    for (size_t i = 0; i < n; i++) {
        const json_t *h = json_array_get(hits, i);
        const json_t *classes = json_object_get(h, "classes");
        if (!json_is_object(h) || !json_is_array(classes))
            return api_fail(e, 0, "invalid_json", NULL, "retrieval: bad hits[%zu]", i);
        gen_retrieval *out = &r->hits[i];
        out->zoo_index = int_of(h, "zoo_index");
        out->distance = (float)num(json_object_get(h, "distance"));
        out->support_acc = (float)num(json_object_get(h, "support_accuracy"));
        size_t way = json_array_size(classes);
        out->way = way < D2_MAX_WAY ? (int)way : D2_MAX_WAY;
        for (int c = 0; c < out->way; c++)
            out->classes[c] = (int)json_integer_value(json_array_get(classes, (size_t)c));
    }
    r->nhits = (int)n;
    return 0;
}

/* ---- JobList ---- */

json_t *api_job_list_to_json(const api_job_list *l)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < l->n; i++) {
        json_t *o = api_job_to_json(&l->jobs[i]);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (!arr)
        return NULL;
    return json_pack("{s:o, s:o}", "jobs", arr, "next_after",
                     l->next_after[0] ? json_string(l->next_after) : json_null());
}

void api_job_list_free(api_job_list *l)
{
    for (int i = 0; i < l->n; i++)
        api_job_free(&l->jobs[i]);
    free(l->jobs);
    l->jobs = NULL;
    l->n = 0;
}

int api_job_list_from_json(const json_t *root, api_job_list *l, api_error *e)
{
    memset(l, 0, sizeof *l);
    const json_t *jobs = json_object_get(root, "jobs");
    if (!json_is_object(root) || !json_is_array(jobs))
        return api_fail(e, 0, "invalid_json", NULL, "job list: expected an object with jobs");
    copy_str(l->next_after, sizeof l->next_after, json_object_get(root, "next_after"));
    size_t n = json_array_size(jobs);
    if (n == 0)
        return 0;
    if (!(l->jobs = calloc(n, sizeof *l->jobs)))
        return api_fail(e, 0, "internal", NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (api_job_from_json(json_array_get(jobs, i), &l->jobs[i], e) != 0) {
            api_job_list_free(l);
            return D2_EINVAL;
        }
        l->n = (int)i + 1;
    }
    return 0;
}

/* ---- Lineage ---- */

static json_t *object_of(const char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (v && json_is_object(v))
        return v;
    json_decref(v);
    return json_object();
}

void api_lineage_init(api_lineage *l)
{
    memset(l, 0, sizeof *l);
    api_job_init(&l->job);
}

void api_lineage_free(api_lineage *l)
{
    free(l->config_json);
    free(l->provenance_json);
    free(l->derived);
    api_job_free(&l->job);
    api_lineage_init(l);
}

static json_t *derived_json(const api_lineage *l)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < l->nderived; i++)
        if (json_array_append_new(arr, json_string(l->derived[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    return arr;
}

json_t *api_lineage_to_json(const api_lineage *l)
{
    const api_job *j = &l->job;
    char created[32], finished[32];
    api_format_time(j->created_ms, created);
    api_format_time(j->finished_ms, finished);
    return json_pack(
        "{s:o, s:{s:s, s:s, s:s, s:s, s:i, s:o, s:o}, s:o, s:{s:s, s:s, s:s, s:o, s:i}, s:I, "
        "s:{s:s, s:i, s:f, s:i}, s:i, s:o, s:o, s:s, s:o}",
        "checkpoint", api_checkpoint_to_json(&l->checkpoint),
        "generator", "id", l->generator_id, "name", l->generator_name, "spec", l->spec,
        "zoo_fingerprint", l->zoo_fingerprint, "zoo_size", l->zoo_size, "config",
        object_of(l->config_json), "provenance", object_of(l->provenance_json),
        "dataset", api_dataset_info_to_json(&l->dataset),
        "job", "id", j->id, "state", api_job_state_name(j->state), "created_at", created,
        "finished_at", j->finished_ms > 0 ? json_string(finished) : json_null(), "priority",
        j->priority,
        "seed", (json_int_t)j->seed,
        "sampler", "sampler", api_sampler_name(j->sampler), "steps", j->steps, "guidance",
        j->guidance, "candidates", j->candidates,
        "rank", l->checkpoint.rank,
        "parent", j->parent_checkpoint[0] ? json_string(j->parent_checkpoint) : json_null(),
        "derived", derived_json(l),
        "method", api_method_name(l->checkpoint.method),
        "gate", j->has_gate ? api_gate_to_json(&j->gate) : json_null());
}

static int lineage_generator(const json_t *g, api_lineage *l, api_error *e)
{
    if (!json_is_object(g))
        return api_fail(e, 0, "invalid_json", NULL, "lineage: generator is not an object");
    copy_str(l->generator_id, sizeof l->generator_id, json_object_get(g, "id"));
    copy_str(l->generator_name, sizeof l->generator_name, json_object_get(g, "name"));
    copy_str(l->spec, sizeof l->spec, json_object_get(g, "spec"));
    copy_str(l->zoo_fingerprint, sizeof l->zoo_fingerprint, json_object_get(g, "zoo_fingerprint"));
    l->zoo_size = int_of(g, "zoo_size");
    l->config_json = json_dumps(json_object_get(g, "config"), JSON_COMPACT | JSON_ENCODE_ANY);
    l->provenance_json =
        json_dumps(json_object_get(g, "provenance"), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!l->config_json || !l->provenance_json)
        return api_fail(e, 0, "invalid_json", NULL, "lineage: generator config or provenance");
    return 0;
}

static void lineage_job(const json_t *root, api_lineage *l)
{
    api_job *j = &l->job;
    const json_t *jo = json_object_get(root, "job");
    copy_str(j->id, sizeof j->id, json_object_get(jo, "id"));
    const char *st = json_string_value(json_object_get(jo, "state"));
    if (st)
        api_job_state_parse(st, &j->state);
    const char *t = json_string_value(json_object_get(jo, "created_at"));
    if (t)
        api_parse_time(t, &j->created_ms);
    t = json_string_value(json_object_get(jo, "finished_at"));
    if (t)
        api_parse_time(t, &j->finished_ms);
    j->priority = int_of(jo, "priority");
    j->seed = json_integer_value(json_object_get(root, "seed"));
    const json_t *s = json_object_get(root, "sampler");
    const char *sampler = json_string_value(json_object_get(s, "sampler"));
    if (sampler)
        api_sampler_parse(sampler, &j->sampler);
    j->steps = int_of(s, "steps");
    j->guidance = num(json_object_get(s, "guidance"));
    j->candidates = int_of(s, "candidates");
    copy_str(j->parent_checkpoint, sizeof j->parent_checkpoint, json_object_get(root, "parent"));
    copy_str(j->generator_id, sizeof j->generator_id,
             json_object_get(json_object_get(root, "generator"), "id"));
}

/* The job's gate decision (null: none recorded). */
static int lineage_gate(const json_t *root, api_lineage *l, api_error *e)
{
    const json_t *g = json_object_get(root, "gate");
    if (!json_is_object(g))
        return 0;
    if (api_gate_from_json(g, &l->job.gate, e) != 0)
        return D2_EINVAL;
    l->job.has_gate = 1;
    return 0;
}

int api_lineage_from_json(const json_t *root, api_lineage *l, api_error *e)
{
    api_lineage_init(l);
    if (!json_is_object(root))
        return api_fail(e, 0, "invalid_json", NULL, "lineage: expected an object");
    int rc = api_checkpoint_from_json(json_object_get(root, "checkpoint"), &l->checkpoint, e);
    if (rc == 0)
        rc = lineage_generator(json_object_get(root, "generator"), l, e);
    if (rc == 0)
        rc = api_dataset_info_from_json(json_object_get(root, "dataset"), &l->dataset, e);
    if (rc == 0)
        rc = lineage_gate(root, l, e);
    if (rc != 0) {
        api_lineage_free(l);
        return D2_EINVAL;
    }
    lineage_job(root, l);
    const json_t *der = json_object_get(root, "derived");
    size_t n = json_array_size(der);
    if (n > 0 && !(l->derived = calloc(n, sizeof *l->derived))) {
        api_lineage_free(l);
        return api_fail(e, 0, "internal", NULL, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        copy_str(l->derived[i], sizeof l->derived[i], json_array_get(der, i));
    l->nderived = (int)n;
    return 0;
}

/* ---- generators, health, readiness (server) ---- */

json_t *api_generator_entry_to_json(const api_generator_entry *e)
{
    if (e->info && (!e->state || !strcmp(e->state, "ready")))
        return api_generator_to_json(e->name, e->info, e->loaded_ms);
    return json_pack("{s:s, s:s, s:s}", "name", e->name, "state",
                     e->state ? e->state : "loading", "message", e->message ? e->message : "");
}

json_t *api_generator_list_to_json(const api_generator_entry *list, int n)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        json_t *g = api_generator_entry_to_json(&list[i]);
        if (!g || json_array_append_new(arr, g) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr ? json_pack("{s:o}", "generators", arr) : NULL;
}

json_t *api_health_to_json(const char *version, double uptime_seconds)
{
    return json_pack("{s:s, s:s, s:f}", "status", "ok", "version", version, "uptime_seconds",
                     uptime_seconds);
}

json_t *api_ready_to_json(int generators, int pending, int running)
{
    return json_pack("{s:s, s:i, s:i, s:i}", "status", "ready", "generators", generators,
                     "pending", pending, "running", running);
}

/* ---- Generator (client) ---- */

int api_generator_from_json(const json_t *o, api_generator *g, api_error *e)
{
    memset(g, 0, sizeof *g);
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "name")))
        return api_fail(e, 0, "invalid_json", NULL, "generator: expected an object with a name");
    copy_str(g->name, sizeof g->name, json_object_get(o, "name"));
    copy_str(g->id, sizeof g->id, json_object_get(o, "id"));
    copy_str(g->spec, sizeof g->spec, json_object_get(o, "spec"));
    g->input_dim = int_of(o, "input_dim");
    g->feature_dim = int_of(o, "feature_dim");
    g->min_way = int_of(o, "min_way");
    g->max_way = int_of(o, "max_way");
    g->params = int_of(o, "params");
    g->zoo_size = int_of(o, "zoo_size");
    copy_str(g->zoo_fingerprint, sizeof g->zoo_fingerprint, json_object_get(o, "zoo_fingerprint"));
    const json_t *d = json_object_get(o, "defaults");
    g->default_candidates = int_of(d, "candidates");
    g->default_steps = int_of(d, "steps");
    g->default_guidance = num(json_object_get(d, "guidance"));
    const char *sampler = json_string_value(json_object_get(d, "sampler"));
    if (sampler)
        api_sampler_parse(sampler, &g->default_sampler);
    const char *t = json_string_value(json_object_get(o, "loaded_at"));
    if (t)
        api_parse_time(t, &g->loaded_ms);
    const json_t *state = json_object_get(o, "state");
    if (json_is_string(state))
        copy_str(g->state, sizeof g->state, state);
    else
        api_snprintf(g->state, sizeof g->state, "ready");
    copy_str(g->message, sizeof g->message, json_object_get(o, "message"));
    return 0;
}

int api_generator_list_from_json(const json_t *root, api_generator **list, int *n, api_error *e)
{
    *list = NULL;
    *n = 0;
    const json_t *arr = json_object_get(root, "generators");
    if (!json_is_array(arr))
        return api_fail(e, 0, "invalid_json", NULL, "expected an object with generators");
    size_t count = json_array_size(arr);
    api_generator *l = calloc(count ? count : 1, sizeof *l);
    if (!l)
        return api_fail(e, 0, "internal", NULL, "out of memory");
    for (size_t i = 0; i < count; i++)
        if (api_generator_from_json(json_array_get(arr, i), &l[i], e) != 0) {
            free(l);
            return D2_EINVAL;
        }
    *list = l;
    *n = (int)count;
    return 0;
}
