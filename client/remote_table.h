/* remote_table.h - the daemon's JSON answers as tables people read (the
 * remote commands' default output; --json prints the answers instead).
 * Missing or null fields print as "-". */
#ifndef D2_CLIENT_REMOTE_TABLE_H
#define D2_CLIENT_REMOTE_TABLE_H

#include <jansson.h>
#include <stdio.h>

/* GET /v1/jobs: one row per job. */
void remote_table_jobs(FILE *out, const json_t *list);
/* GET /v1/jobs/{id}: the job's fields, then its ranked checkpoints. */
void remote_table_job(FILE *out, const json_t *job);
/* GET /v1/generators */
void remote_table_generators(FILE *out, const json_t *list);
/* GET /v1/checkpoints/{id}/lineage */
void remote_table_lineage(FILE *out, const json_t *lineage);
/* POST /v1/retrieve */
void remote_table_retrieve(FILE *out, const json_t *result);

#endif
