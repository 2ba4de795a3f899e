/* storeq.h - store work off the loop thread. The loop never calls the store
 * while it serves: it hands an op to a store thread, and the op's `done`
 * runs back on the loop (uv_async) with the outcome.
 *
 * Two lanes, each one thread with its own connection, each running its ops
 * in submission order: reads (WAL readers are not blocked by a writer, so a
 * locked store still answers them) and writes (they wait at most busy_ms for
 * a lock, then fail with `busy` set: the caller answers 503, or submits the
 * op again later with storeq_submit_after; while the store is known to be
 * locked a write tries once without waiting, so refusals come at once).
 *
 * The queue also keeps the store's availability: an op refused for a lock
 * marks it unavailable (storeq_available says since when and why) until a
 * write succeeds. A probe write (BEGIN IMMEDIATE; ROLLBACK) runs every
 * STOREQ_PROBE_MS in which no write went through, so a lock is seen (and its
 * end) even when no request writes. */
#ifndef D2_SERVER_STOREQ_H
#define D2_SERVER_STOREQ_H

#include <uv.h>

#include "store.h"

enum { STOREQ_READ = 0, STOREQ_WRITE = 1, STOREQ_LANES = 2 };

#define STOREQ_PROBE_MS 1000

/* On the lane's thread: the store work. Returns 0 or a D2_E* code (err filled). */
typedef int (*storeq_work_fn)(store *db, void *ctx, d2_error *err);
/* On the loop thread: op->rc, op->busy and op->err hold the outcome. */
struct storeq_op;
typedef void (*storeq_done_fn)(struct storeq_op *op);

/* One op; the caller owns its memory (usually the first member of a larger
 * context) until `done` runs. */
typedef struct storeq_op {
    storeq_work_fn work;
    storeq_done_fn done;
    void *ctx;                 /* work's second argument */
    int lane;
    int rc;                    /* work's return */
    int busy;                  /* rc != 0 because of a lock (store_busy) */
    d2_error err;
    uint64_t due_ms;           /* storeq_submit_after */
    struct storeq_op *next;
} storeq_op;

typedef struct storeq storeq;

/* Open one connection per lane with conf (store_open_conf: an SQLite file or
 * a PostgreSQL connection string) at start-up, on the calling thread, with
 * busy_ms as each one's lock wait, and start the threads. */
int storeq_start(storeq **out, uv_loop_t *loop, const store_conf *conf, int busy_ms,
                 d2_error *err);
/* Queue op on its lane (op->lane = lane). Never fails. */
void storeq_submit(storeq *q, storeq_op *op, int lane, storeq_work_fn work, storeq_done_fn done,
                   void *ctx);
/* The same after delay_ms (a write the store refused for a lock, tried
 * again); at stop it runs at once. */
void storeq_submit_after(storeq *q, storeq_op *op, unsigned delay_ms);
/* 1 while writes go through; 0 after a write was refused for a lock (since:
 * seconds of d2_now(); why: the store's message) until one succeeds. */
int storeq_available(const storeq *q, double *since, char *why, size_t cap);
/* Ops submitted whose done has not run yet. */
int storeq_pending(const storeq *q);
/* Run every queued and delayed op to its end (their done callbacks run here,
 * on the calling loop thread), stop the threads, close the connections; the
 * handles are closed on the loop and q is freed in their close callbacks. */
void storeq_stop(storeq *q);

#endif
