/* worker.h - generation worker threads. Each worker owns its backend (the
 * device handle), one gen_workspace per generator and its own SQLite
 * connection; it takes work items from a mutex-guarded list the loop fills,
 * marks a job running in the store, writes the outcome (checkpoint files
 * atomically, then the store), and reports back to the loop with
 * uv_async_send (events drained on the loop thread). Not libuv's shared
 * thread pool: that one serves file work.
 *
 * A store write refused for a lock (another process holds it) is tried
 * again, with pauses up to WORKER_STORE_RETRY_MAX_MS, until the store is
 * back: a finished job is never failed for a transient lock. Only a shutdown
 * stops the retries; the job is then left as the store has it (queued, or
 * running: re-run after the restart) and a pack file whose rows were not
 * written is removed. */
#ifndef D2_SERVER_WORKER_H
#define D2_SERVER_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <uv.h>

#include "api.h"
#include "gens.h"

enum { WORK_JOB = 0, WORK_RETRIEVE = 1 };
enum {
    WORK_SUCCEEDED = 0,
    WORK_FAILED = 1,
    WORK_CANCELLED = 2,
    WORK_REQUEUED = 3,     /* stopped for shutdown; back to queued in the store */
    WORK_STORE_FAILED = 4, /* its outcome is not in the store (see run_job): the job is
                            * left as the store has it, re-run after a restart */
    WORK_TAKEN = 5         /* not this daemon's (any more): another replica on the same
                            * PostgreSQL claimed it, or took it when this one's lease ran
                            * out, or it ended; nothing stored here */
};

#define WORK_MAX_HITS 64
#define WORKER_STORE_RETRY_MAX_MS 500

/* A job's cancel flag decides a cancel racing the job's end, once: the loop
 * sets it NONE -> REQUESTED (compare-and-swap) when a client cancels; the
 * worker sets it NONE -> FINISHING once generation is done, before it writes
 * the checkpoints. Whichever swap wins holds: a job whose cancel was accepted
 * never ends succeeded, and a cancel that finds FINISHING is refused (the job
 * is ending on its own). A shutdown stores REQUESTED unconditionally. */
enum { WORK_CANCEL_NONE = 0, WORK_CANCEL_REQUESTED = 1, WORK_CANCEL_FINISHING = 2 };

/* WORKER_STARTED: a job is marked running in the store (it is on a worker). */
enum { WORKER_READY = 0, WORKER_INIT_FAILED = 1, WORKER_DONE = 2, WORKER_STARTED = 3 };

/* Worker -> loop. Events live inside their work item (DONE) or their worker
 * (READY, INIT_FAILED), so reporting never allocates and cannot fail. */
typedef struct worker_event {
    int kind;
    int worker;
    struct work_item *item;              /* WORKER_DONE, WORKER_STARTED */
    size_t mem_used, mem_total;          /* backend memory() after the event */
    char message[API_MESSAGE_LEN];       /* WORKER_INIT_FAILED */
    struct worker_event *next;
} worker_event;

/* One unit of work. The loop fills the inputs and owns the item; while a
 * worker has it, the worker reads the inputs, writes `progress_ppm` and the
 * outputs, and the loop may only set `cancel` / `shutdown`. */
typedef struct work_item {
    int kind;
    /* inputs */
    int gen_index;
    char job_id[API_ID_LEN];             /* WORK_JOB */
    char dataset_id[65];                 /* "" when `data` is given */
    dataset data;                        /* inline data set (retrieval), owned */
    int has_data;
    int embeddings;
    int candidates, steps, sampler;
    float guidance;
    uint64_t seed;
    int gate;                            /* 1: the generation gate (gen_request.gate) */
    int refine;                          /* 1: refine the samples (gen_request.refine) */
    int k;                               /* WORK_RETRIEVE */
    char parent_checkpoint[API_ID_LEN];
    /* shared */
    atomic_int cancel;                   /* WORK_CANCEL_*: see below */
    atomic_int shutdown;                 /* with cancel: requeue instead of cancelling */
    atomic_int progress_ppm;             /* 0..1000000, written by the worker */
    /* outputs */
    int worker;
    int outcome;
    char error_code[40];
    char error_message[API_MESSAGE_LEN];
    double run_seconds;
    double generate_seconds;             /* generator_generate alone */
    double save_seconds;                 /* checkpoint files and the store */
    int way;
    int nhits;
    gen_retrieval hits[WORK_MAX_HITS];
    char dataset_fp[65];
    worker_event started;                /* the WORKER_STARTED report */
    worker_event done;                   /* the WORKER_DONE report */
    struct work_item *next;              /* queue link (pool-internal) */
} work_item;


typedef struct worker_config {
    int workers;
    int threads;                         /* backend threads per worker */
    char device[64];
    char db_path[CONFIG_PATH_LEN + 32];
    char store_password[512];            /* "" = none (libpq's environment) */
    char replica[128];                   /* the owner of the jobs its workers claim */
    int lease_ms;
    char checkpoint_dir[CONFIG_PATH_LEN + 32];
    int max_candidates;
    int sync_full;
} worker_config;

typedef struct worker_pool worker_pool;

/* Start the threads. on_event runs on the loop thread for every event; a
 * DONE event's item may be freed by on_event. */
int worker_pool_start(worker_pool **out, const worker_config *cfg, const gens *gs, uv_loop_t *loop,
                      void (*on_event)(void *ctx, const worker_event *ev), void *ctx,
                      d2_error *err);
/* Hand an item to the next free worker (retrievals go ahead of jobs). */
void worker_pool_submit(worker_pool *p, work_item *w);
/* Stop after the current items, join the threads and free the pool (the
 * async handle is closed; the pool memory is released in its close callback). */
void worker_pool_stop(worker_pool *p);

/* "ck_<20 hex of the job id>_<rank>" */
void worker_checkpoint_id(const char *job_id, int rank, char out[API_ID_LEN]);
/* The file holding a job's checkpoints: CHECKPOINT_DIR/<job_id>.pack */
void worker_pack_path(const char *checkpoint_dir, const char *job_id, char *out, size_t cap);

#endif
