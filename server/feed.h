/* feed.h - what GET /v1/events says about the daemon: a `job` event at every
 * state change (the job as GET /v1/jobs/{id} shows it), `progress` events of
 * running jobs (each 1% moved, checked each --events-progress-ms) and a `generator`
 * event for each generator loaded. The route itself is route_events. */
#ifndef D2_SERVER_FEED_H
#define D2_SERVER_FEED_H

#include "server.h"

#define FEED_PROGRESS_STEP 0.01

/* Create the hub and start the progress timer (before the HTTP layer). */
int feed_start(server *s, d2_error *err);
/* jobs_owner.job_changed */
void feed_job_changed(void *user, const char *job_id);
/* A `generator` event for s->gens.e[index], once it is loaded (at start or
 * when it joins later). */
void feed_generator_loaded(server *s, int index);
/* The daemon is stopping: end every stream and the timer. */
void feed_close(server *s);
/* Free the hub and close the timer (after http_stop). */
void feed_destroy(server *s);

#endif
