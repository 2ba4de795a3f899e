/* fleet.h - several replicas on one PostgreSQL database (--store): every
 * quarter lease (at most every FLEET_TICK_MAX_MS) a write on a store thread
 * renews the leases of the jobs this replica runs and puts back to queued
 * the jobs whose lease ran out (their replica died), then the queued jobs
 * that other replicas accepted are queued here too (jobs_restore with
 * JOBS_ADOPT); whichever replica's worker claims one first runs it
 * (store_job_set_running). A listener (store_listen.h) hears the other
 * replicas' job changes as they commit: long-polls and the event feed wake,
 * and a job queued elsewhere is adopted at once. On SQLite (one node) it
 * does nothing. Loop thread only. */
#ifndef D2_SERVER_FLEET_H
#define D2_SERVER_FLEET_H

#include "server.h"

#define FLEET_TICK_MAX_MS 500

/* Start ticking once the workers are up and the queued jobs restored. */
void fleet_start(server *s);
/* Stop ticking (drain). */
void fleet_stop(server *s);
/* Stop listening and close the timer (teardown). */
void fleet_close(server *s, uv_close_cb cb);

#endif
