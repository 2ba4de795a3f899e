/* api.h - the wire contract in C (proto/openapi.yaml is the source of truth):
 * JSON <-> C structs with jansson, and request validation that names the
 * offending field ("dataset.samples[3][17]"). Shared by d2nwgd (server/) and
 * the remote commands of d2nwg (client/).
 *
 * Status rules (openapi.yaml, "Status codes"): 400 invalid_json for bodies
 * that are not a JSON object (or have duplicate keys); 400 invalid_argument
 * for wrong types, missing or unknown fields and out-of-range parameters;
 * 422 invalid_dataset for well-formed data that cannot be used (ragged rows,
 * values not finite in float32, label count/range, classes without rows, too
 * many rows or classes). */
#ifndef D2_PROTO_API_H
#define D2_PROTO_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "data.h"
#include "generator.h"

#define API_FIELD_LEN 160
#define API_MESSAGE_LEN 400
#define API_NAME_LEN 128
#define API_ID_LEN 80

/* ---- errors ---- */

typedef struct api_error {
    int status;                    /* HTTP status (400, 422, ...) */
    char code[40];                 /* "invalid_argument", ... (openapi Error.code) */
    char field[API_FIELD_LEN];     /* "" when no single field is to blame */
    char message[API_MESSAGE_LEN];
} api_error;

/* Fill *e and return D2_EINVAL (so `return api_fail(...)` reads naturally).
 * field may be NULL. */
int api_fail(api_error *e, int status, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void api_error_clear(api_error *e);
/* {"error": {"code", "message"[, "field"]}} */
json_t *api_error_to_json(const api_error *e);
/* Parse an error body (client side); status is the HTTP status it came with.
 * Returns D2_EFORMAT when root is not an error object. */
int api_error_from_json(const json_t *root, int status, api_error *e);

/* ---- limits ---- */

typedef struct api_limits {
    int max_samples;    /* rows per data set (default 10000) */
    int max_dim;        /* values per row (default 1 << 20) */
    int max_classes;    /* classes per data set (default and most D2_MAX_WAY) */
    int max_candidates; /* K per job (default 64) */
    int max_steps;      /* sampler steps (default 1000) */
    int max_k;          /* retrieval hits (default 64) */
} api_limits;
api_limits api_limits_default(void);

/* ---- data sets ---- */

enum { API_KIND_SAMPLES = 0, API_KIND_EMBEDDINGS = 1 };
const char *api_kind_name(int kind); /* "samples" / "embeddings" */
int api_kind_parse(const char *s, int *kind);

/* Parse a DatasetInput object ({"samples"|"embeddings": [[...]], "labels": [...]})
 * into d (allocated here; left empty on failure). `field` is the path of the
 * object in the request ("dataset", or "" for a top-level body). Runs the
 * content checks of api_dataset_check too. */
int api_dataset_parse(const json_t *obj, const char *field, const api_limits *lim, dataset *d,
                      int *kind, api_error *e);
/* Content checks on a filled data set: finite float32 values (field
 * "<xfield>[i][j]"), labels in 0..max_classes-1 ("<yfield>[i]"), every class
 * 0..C-1 present ("<yfield>"), n <= max_samples ("<xfield>"), dim <= max_dim.
 * Sets d->classes. All failures are 422 invalid_dataset. */
int api_dataset_check(dataset *d, const char *xfield, const char *yfield, const api_limits *lim,
                      api_error *e);
/* A safetensors body with x [n, D] (float dtypes) and y [n] (integer dtypes):
 * malformed files are 400 invalid_argument (field "body"), content as above
 * with fields "body.x[i][j]" / "body.y[i]". */
int api_dataset_parse_safetensors(const void *bytes, size_t len, const api_limits *lim,
                                  dataset *d, api_error *e);
/* DatasetInput JSON for a data set (client side). NULL on allocation failure. */
json_t *api_dataset_to_json(const dataset *d, int kind);

/* GET /v1/datasets/{id} */
typedef struct api_dataset_info {
    char id[65];
    int kind;  /* as first uploaded */
    int kinds; /* every kind it was uploaded as: bits 1 << API_KIND_* */
    int n, dim, classes;
    int class_counts[D2_MAX_WAY];
    int64_t created_ms;
} api_dataset_info;
/* Fill n, dim, classes and class_counts from a validated data set. */
void api_dataset_info_fill(api_dataset_info *info, const dataset *d, int kind);
json_t *api_dataset_info_to_json(const api_dataset_info *info);
int api_dataset_info_from_json(const json_t *root, api_dataset_info *info, api_error *e);

/* ---- jobs ---- */

typedef enum api_job_state {
    API_JOB_QUEUED = 0,
    API_JOB_RUNNING,
    API_JOB_SUCCEEDED,
    API_JOB_FAILED,
    API_JOB_CANCELLED,
    API_JOB_STATE_COUNT
} api_job_state;
const char *api_job_state_name(api_job_state s);
int api_job_state_parse(const char *s, api_job_state *out);
int api_job_state_terminal(api_job_state s);

const char *api_sampler_name(int sampler); /* GEN_SAMPLER_* -> "ddim" / "ddpm" */
int api_sampler_parse(const char *s, int *sampler);

/* POST /v1/jobs body. */
typedef struct api_job_request {
    char generator[API_NAME_LEN]; /* name or id; default "default" */
    int has_dataset;              /* 1: inline `dataset` parsed into data/kind */
    dataset data;
    int kind;                     /* API_KIND_*: the inline dataset's, or dataset_kind
                                     with dataset_id (-1: not given) */
    char dataset_id[API_ID_LEN];  /* when !has_dataset */
    int candidates;               /* 0: the generator's default */
    int steps;                    /* 0: the generator's default */
    int sampler;                  /* -1: the generator's default, else GEN_SAMPLER_* */
    int has_guidance;
    double guidance;
    int has_seed;
    int64_t seed;
    int priority;                 /* 0..9, default 5 */
    char parent_checkpoint[API_ID_LEN]; /* "" none */
    int gate;                     /* 1 (default): compare with the baselines (api_gate) */
    int refine;                   /* 1 (default): refine the samples (gen_request.refine) */
} api_job_request;
void api_job_request_init(api_job_request *r);
int api_job_request_parse(const json_t *root, const api_limits *lim, api_job_request *r,
                          api_error *e);
/* Request JSON (client side); fields left at their defaults are omitted. */
json_t *api_job_request_to_json(const api_job_request *r);
void api_job_request_free(api_job_request *r);

/* POST /v1/retrieve body. */
typedef struct api_retrieve_request {
    char generator[API_NAME_LEN];
    int has_dataset;
    dataset data;
    int kind; /* as in api_job_request */
    char dataset_id[API_ID_LEN];
    int k; /* default 5 */
} api_retrieve_request;
void api_retrieve_request_init(api_retrieve_request *r);
int api_retrieve_request_parse(const json_t *root, const api_limits *lim, api_retrieve_request *r,
                               api_error *e);
void api_retrieve_request_free(api_retrieve_request *r);

/* RetrieveRequest JSON (client side): the inline dataset, or dataset_id
 * (with dataset_kind when kind >= 0); k always. NULL on allocation failure. */
json_t *api_retrieve_request_to_json(const api_retrieve_request *r);

/* POST /v1/retrieve answer (RetrieveResult). */
#define API_MAX_HITS 64
typedef struct api_retrieve_result {
    char generator_name[API_NAME_LEN];
    char generator_id[65];
    char dataset_fingerprint[65];
    char zoo_fingerprint[65];         /* the generator's zoo (each hit's lineage) */
    int nhits;
    gen_retrieval hits[API_MAX_HITS]; /* classes[0..way-1]: the zoo task's classes */
} api_retrieve_result;
/* Each hit also gets weights_url (/v1/generators/{id}/zoo/{index}/weights:
 * the entry as a complete safetensors checkpoint), generator_id and
 * zoo_fingerprint. */
json_t *api_retrieve_result_to_json(const api_retrieve_result *r);
int api_retrieve_result_from_json(const json_t *root, api_retrieve_result *r, api_error *e);

/* ---- the generation gate (core/model/gate.h) ---- */

/* GEN_METHOD_* <-> "diffusion" / "prototypes" / "logreg". */
const char *api_method_name(int method);
int api_method_parse(const char *s, int *method);

/* A job's gate decision (Job.gate, Lineage.gate). */
typedef struct api_gate {
    int applied;                /* 0: off or not applicable (reason says which) */
    int chosen;                 /* GEN_METHOD_* of rank 0 */
    int folds, heldout;
    double cv_acc[GEN_METHODS]; /* by GEN_METHOD_*; NAN = not measured (null) */
    char reason[192];
    double ood_distance;        /* NAN = null (no zoo reference, or the gate was off) */
    double ood_percentile;      /* NAN = null */
    int ood;                    /* out of the zoo's distribution: a warning */
} api_gate;
void api_gate_init(api_gate *g); /* not applied, every number null */
/* From generator_generate's decision; requested = the request's gate flag
 * (off: every number null and the reason says the request turned it off). */
void api_gate_from_result(api_gate *a, const gen_gate *g, int requested);
json_t *api_gate_to_json(const api_gate *g);
int api_gate_from_json(const json_t *o, api_gate *g, api_error *e);
/* Job.warnings: [{"code": "out_of_distribution", "message": ...}] when g->ood,
 * else []; g may be NULL (no decision yet). */
json_t *api_gate_warnings_to_json(const api_gate *g);

typedef struct api_checkpoint {
    char id[API_ID_LEN];
    char job_id[API_ID_LEN];
    int rank, candidate_index;
    int method;                 /* GEN_METHOD_*: what produced these weights */
    double support_acc, support_loss, norm, zoo_distance;
    int zoo_nearest;
    char sha256[65];
    int64_t size_bytes;
    char generator_id[65];
    char dataset_id[65];
    int64_t seed;
    int64_t created_ms;
} api_checkpoint;
json_t *api_checkpoint_to_json(const api_checkpoint *c);
int api_checkpoint_from_json(const json_t *o, api_checkpoint *c, api_error *e);

typedef struct api_job {
    char id[API_ID_LEN];
    api_job_state state;
    double progress;
    char generator_name[API_NAME_LEN];
    char generator_id[65];
    char dataset_id[65];
    int kind;
    int candidates, steps, sampler;
    double guidance;
    int64_t seed;
    int priority;
    char parent_checkpoint[API_ID_LEN]; /* "" = null */
    int gate_requested;                 /* params.gate */
    int refine_requested;               /* params.refine */
    int has_gate;                       /* 1: `gate` holds the decision (succeeded jobs) */
    api_gate gate;
    int cancel_requested, attempts;
    int64_t created_ms, started_ms, finished_ms; /* 0 = null */
    double run_seconds;                          /* < 0 = null */
    char error_code[40];                         /* "" = no error */
    char error_message[API_MESSAGE_LEN];
    int way;
    int ncheckpoints;
    api_checkpoint *checkpoints; /* ranked, owned (succeeded jobs) */
} api_job;
void api_job_init(api_job *j);
json_t *api_job_to_json(const api_job *j);
int api_job_from_json(const json_t *root, api_job *j, api_error *e);
void api_job_free(api_job *j);

/* GET /v1/jobs answer (JobList). */
typedef struct api_job_list {
    int n;
    api_job *jobs;               /* owned after api_job_list_from_json */
    char next_after[API_ID_LEN]; /* "" on the last page (null) */
} api_job_list;
json_t *api_job_list_to_json(const api_job_list *l);
int api_job_list_from_json(const json_t *root, api_job_list *l, api_error *e);
void api_job_list_free(api_job_list *l);

/* GET /v1/checkpoints/{id}/lineage answer (Lineage). The job part holds the
 * job's id, state, times, priority, seed, sampler settings, parent
 * checkpoint and gate decision ("gate", with "method" = checkpoint.method);
 * "rank" is checkpoint.rank. */
typedef struct api_lineage {
    api_checkpoint checkpoint;
    char generator_id[65];
    char generator_name[API_NAME_LEN];
    char spec[256];
    char zoo_fingerprint[65];
    int zoo_size;
    char *config_json;     /* owned: the bundle's config object as text */
    char *provenance_json; /* owned */
    api_dataset_info dataset;
    api_job job;
    int nderived;
    char (*derived)[API_ID_LEN]; /* owned */
} api_lineage;
void api_lineage_init(api_lineage *l);
json_t *api_lineage_to_json(const api_lineage *l);
int api_lineage_from_json(const json_t *root, api_lineage *l, api_error *e);
void api_lineage_free(api_lineage *l);

/* ---- generators ---- */
json_t *api_generator_to_json(const char *name, const gen_info *gi, int64_t loaded_ms);
/* GET /v1/generators answer: {"generators": [Generator...]}. An entry whose
 * state is not "ready" ("loading", "failed") has no info: it is written as
 * {name, state, message}. */
typedef struct api_generator_entry {
    const char *name;
    const gen_info *info;
    int64_t loaded_ms;
    const char *state;   /* "ready", "loading" or "failed" */
    const char *message; /* loading: what it waits for; failed: why */
} api_generator_entry;
json_t *api_generator_entry_to_json(const api_generator_entry *e);
json_t *api_generator_list_to_json(const api_generator_entry *list, int n);
/* GET /healthz (Health) and GET /readyz (Ready) answers. */
json_t *api_health_to_json(const char *version, double uptime_seconds);
json_t *api_ready_to_json(int generators, int pending, int running);
/* A Generator as the client reads it (config and provenance left out). */
typedef struct api_generator {
    char name[API_NAME_LEN];
    char id[65];
    char spec[256];
    int input_dim, feature_dim, min_way, max_way, params, zoo_size;
    char zoo_fingerprint[65];
    int default_candidates, default_steps, default_sampler;
    double default_guidance;
    int64_t loaded_ms; /* 0 = absent */
    char state[16];    /* "ready", "loading", "failed" ("ready" when absent) */
    char message[API_MESSAGE_LEN];
} api_generator;
int api_generator_from_json(const json_t *o, api_generator *g, api_error *e);
/* GET /v1/generators answer: *list owned by the caller (free()). */
int api_generator_list_from_json(const json_t *root, api_generator **list, int *n, api_error *e);

/* ---- GET /v1/events (server-sent events; api_events.c) ----
 * event `job`: the job as GET /v1/jobs/{id} shows it (api_job_to_json) at a
 * state change; `progress`: {"id", "progress"} of a running job;
 * `generator`: {"name", "id", "state": "loaded"}; `events_lost`:
 * {"last_event_id", "oldest_event_id"} when a resumed client asked for
 * events the daemon no longer holds. */
json_t *api_event_progress_to_json(const char *job_id, double progress);
int api_event_progress_from_json(const json_t *o, char job_id[API_ID_LEN], double *progress,
                                 api_error *e);
json_t *api_event_generator_to_json(const char *name, const char *id, const char *state);
json_t *api_events_lost_to_json(int64_t last_id, int64_t oldest_id);

/* GET /v1/session: whether tokens are on, and what the request's token (if
 * any) may do. principal and scope NULL: no valid token. */
json_t *api_session_to_json(int auth, const char *principal, const char *scope);

/* ---- helpers ---- */

/* Replace every byte that is not part of valid UTF-8, and every control
 * character, with '?', in place (so user input can go into JSON). */
void api_sanitize_utf8(char *s);

/* snprintf that may truncate silently (messages, paths built for display). */
void api_snprintf(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* RFC 3339 UTC with milliseconds ("2025-01-31T12:00:00.000Z"). */
void api_format_time(int64_t ms, char out[32]);
int api_parse_time(const char *s, int64_t *ms);
int64_t api_now_ms(void); /* wall clock, ms since the epoch */

/* sha256 of the canonical form of a JSON value (keys sorted, compact). */
int api_canonical_sha256(const json_t *v, char hex[65]);

/* Parse a body: json_loadb with JSON_REJECT_DUPLICATES, must be an object.
 * 400 invalid_json otherwise (message with line/column). */
int api_parse_body(const void *bytes, size_t len, json_t **out, api_error *e);

/* Shape checks for ids (no I/O). */
int api_is_job_id(const char *s);        /* j_ + 20 hex */
int api_is_checkpoint_id(const char *s); /* ck_ + 20 hex + _ + rank */
int api_is_hex64(const char *s);         /* dataset and generator ids */

#endif
