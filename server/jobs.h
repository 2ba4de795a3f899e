/* jobs.h - the loop side of generation: the pending queue (priority 9..0,
 * FIFO within a priority), dispatch to idle workers, cancellation, long-poll
 * waiters, retrievals, and the SIGTERM drain. Runs on the loop thread only.
 *
 * The store is the truth: a job is written (queued) before it is queued
 * here; the worker that takes it marks it running in the store (then
 * reports WORKER_STARTED) and writes its outcome before reporting it. In
 * memory are only the active (queued or running) jobs, their waiters and
 * their live progress. No function here calls the store on the loop: store
 * work goes through storeq.h. */
#ifndef D2_SERVER_JOBS_H
#define D2_SERVER_JOBS_H

#include "http.h"
#include "server.h"
#include "worker.h"

typedef struct jobs jobs;
typedef struct job_rec job_rec;

/* A retrieval waiting for (or on) a worker; owns its inline data set. */
typedef struct rtask {
    work_item w;
    http_req *req; /* NULL once the request went away (answered at shutdown) */
    struct rtask *next;
} rtask;

/* What jobs reports to its owner (on the loop thread). */
typedef struct jobs_owner {
    void (*workers_ready)(void *user);  /* every worker is up */
    void (*fatal)(void *user, const char *what, const char *message);
    void (*drained)(void *user);        /* the drain finished: no job runs */
    /* a job's state changed (the store holds the new state); may be NULL */
    void (*job_changed)(void *user, const char *job_id);
    /* jobs_restore(only) finished: rc 0, or the store's failure (message) */
    void (*restored)(void *user, int only, int rc, const char *message);
    void *user;
} jobs_owner;

int jobs_create(jobs **out, server *s, const jobs_owner *owner, d2_error *err);
/* Start the worker threads (generators loaded). */
int jobs_start_workers(jobs *j, d2_error *err);
/* Queue the store's queued jobs (after a restart); jobs of generators that
 * are not loaded fail with generator_unavailable. only < 0: every queued job,
 * leaving in the store those that name a generator still loading; only = i:
 * the queued jobs of generator i, which has just loaded (those that name it
 * but another file's id fail). The read runs on a store thread (tried again
 * while the store is locked); the owner's `restored` says when it is done. */
int jobs_restore(jobs *j, int only, d2_error *err);
/* only = JOBS_ADOPT (fleet.c): the queued jobs other replicas accepted are
 * queued here too, quietly: none is failed (another replica may have its
 * generator), and the owner's `restored` is not called. */
#define JOBS_ADOPT (-2)
/* jobs_restore(JOBS_ADOPT) unless one is in flight. */
int jobs_adopt(jobs *j, d2_error *err);
/* Another replica changed job id to state (store_listen.h): its long-polls
 * here wake, a copy queued here that another replica took leaves the queue,
 * the feed hears of it, and a newly queued job is adopted. */
void jobs_heard(jobs *j, const char *id, const char *state);
/* Queue a job the store has just accepted (state queued). */
int jobs_enqueue(jobs *j, const api_job *job, int gen_index, d2_error *err);

int jobs_pending(const jobs *j);
int jobs_running(const jobs *j);
int jobs_long_polls(const jobs *j);
void jobs_memory(const jobs *j, size_t *used, size_t *total, int max);
int jobs_workers(const jobs *j);
/* Seconds a new job would likely wait before it is done (for Retry-After). */
int jobs_retry_after(const jobs *j);

/* Call fn for each running job whose progress moved by at least `step`
 * (0..1) since the last call that reported it, or reached 1. */
void jobs_progress_scan(jobs *j, double step,
                        void (*fn)(void *ctx, const char *job_id, double progress), void *ctx);

/* Add live progress to a job loaded from the store. */
void jobs_overlay(const jobs *j, api_job *job);
/* The state of a job the queue holds (queued, running, or finishing at this
 * very change) as the queue has it now: 1 and *state, or 0 when it holds none. */
int jobs_state_of(const jobs *j, const char *id, api_job_state *state);

/* Cancel: 0 = it was queued: it is off the queue now, and the caller stores
 * the cancel, then calls jobs_cancel_done; 1 = requested (it is running; it
 * will end cancelled, or queued again by a shutdown, never succeeded; the
 * caller stores cancel_requested); 2 = too late (generation is done, the
 * checkpoints are being written; see WORK_CANCEL_* in worker.h); 3 = a cancel
 * of it is being stored; D2_ENOTFOUND = not active (finished or unknown). */
int jobs_cancel(jobs *j, const char *id);
/* The store took a queued job's cancel (stored = 1: it ends cancelled) or
 * refused it (0: back at the head of its queue). */
void jobs_cancel_done(jobs *j, const char *id, int stored);
/* Tell the owner the job changed (job_changed). */
void jobs_notify(jobs *j, const char *id);

/* Long-poll: suspend r until the job's state changes or `seconds` pass (then
 * the route's resume handler answers). Returns 1 when suspended, 0 when the
 * job is not active (answer now). */
int jobs_wait(jobs *j, const char *id, http_req *r, double seconds);

/* Run a retrieval (takes ownership of t); r is suspended until it is done and
 * resumed with its answer prepared (the result, 500, or 503 at shutdown).
 * Returns 0, or D2_ERANGE when too many retrievals are waiting. */
int jobs_retrieve(jobs *j, rtask *t, http_req *r);

/* Drain (SIGTERM): answer long-polls and waiting retrievals, let running
 * jobs finish for up to `grace` seconds, then stop them at a step boundary
 * (they go back to queued). The owner's `drained` is called when no job runs. */
void jobs_drain(jobs *j, int grace);
/* A second signal: stop running jobs now. */
void jobs_drain_now(jobs *j);
/* Free everything (workers stopped, handles closed). */
void jobs_destroy(jobs *j);

#endif
