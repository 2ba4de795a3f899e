/* remote_job.h - what several remote commands do with a job: long-poll it to
 * the end with a progress bar, turn its final state into an exit code, and
 * download a checkpoint's weights (checked, written atomically). */
#ifndef D2_CLIENT_REMOTE_JOB_H
#define D2_CLIENT_REMOTE_JOB_H

#include <jansson.h>

#include "api.h"
#include "remote_http.h"

/* Long-poll GET /v1/jobs/{id}?wait=N until the job is succeeded, failed or
 * cancelled, or `timeout` seconds pass (<= 0: no limit). With `bar`, a
 * progress bar on stderr (sampler steps done; one line every few seconds
 * when stderr is not a terminal). On EXIT_OK *job is the final job (owned)
 * and *last its raw answer (free with remote_response_free); on timeout
 * prints "job ... is still <state> after S s" and returns EXIT_FAILED;
 * otherwise the call's exit code. */
int remote_job_wait(remote_client *c, const char *id, double timeout, int bar, json_t **job,
                    remote_response *last);

/* EXIT_OK for a succeeded job; EXIT_FAILED (with the job's error printed) for
 * failed or cancelled; EXIT_FAILED for an unfinished one. */
int remote_job_exit(const char *cmd, const json_t *job);

/* GET /v1/checkpoints/{id}/weights, check the bytes against the daemon's
 * X-Checkpoint-Sha256 and the safetensors format, and write them atomically
 * to path. sha256 (may be NULL) receives the hex digest. Returns an exit code. */
int remote_fetch_weights(remote_client *c, const char *checkpoint_id, const char *path,
                         char sha256[65], size_t *bytes);
/* The same for any daemon path serving a checkpoint file (a retrieval hit's
 * weights_url); checkpoint_id names it in messages. */
int remote_fetch_safetensors(remote_client *c, const char *url, const char *checkpoint_id,
                             const char *path, char sha256[65], size_t *bytes);

/* The best checkpoint (rank 0) of a succeeded job, read through
 * api_job_from_json: its id into id and its method (GEN_METHOD_*) into
 * *method (may be NULL). Returns 0, or -1 when the answer has none. */
int remote_job_best_checkpoint(const json_t *job, char id[API_ID_LEN], int *method);

#endif
