/* remote_dataset.h - a support set file (the formats of `d2nwg generate`:
 * CSV with a `label` first column, NPY features + labels, safetensors x/y)
 * on its way to the daemon: inline as the API's DatasetInput JSON
 * ({"samples"|"embeddings": [[...]], "labels"}), or, for large sets, uploaded
 * once as safetensors to POST /v1/datasets and named by its id. */
#ifndef D2_CLIENT_REMOTE_DATASET_H
#define D2_CLIENT_REMOTE_DATASET_H

#include <jansson.h>

#include "data.h"
#include "remote_http.h"

/* Above this many values a support set goes as safetensors, not JSON (about
 * 6 MB of JSON text; the daemon's default body limit is 64 MiB). */
#define REMOTE_INLINE_MAX_VALUES 500000

/* Load path (labels_path for NPY) with data_load_support into *d. Prints
 * "d2nwg <cmd>: <file problem>" and returns EXIT_FAILED on failure (README: exit codes). */
int remote_dataset_load(const char *cmd, const char *path, const char *labels_path, dataset *d);
/* DatasetInput JSON (NULL, with a message, when out of memory). */
json_t *remote_dataset_json(const char *cmd, const dataset *d, int embeddings);
/* 1 when the set should be uploaded as safetensors (forced, or large). */
int remote_dataset_binary(const dataset *d, int force);
/* POST /v1/datasets?kind=... with the set as safetensors (x F32 [n, D], y I32
 * [n]); the data set id (its fingerprint) goes to id. Content-addressed, so
 * safe to retry. Returns an exit code. */
int remote_dataset_upload(remote_client *c, const dataset *d, int embeddings, char id[65]);

#endif
