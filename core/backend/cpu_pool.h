/* cpu_pool.h - a small fork-join pool that runs the CPU backend's loops on its threads.
 *
 * cpu_pool_run(p, fn, args, n, ...) splits the items [0, n) into parts, and the calling
 * thread and the pool's workers claim parts until none are left; it returns when every
 * part has run. Claiming is dynamic, so a worker that wakes late simply finds the work done.
 * Workers spin briefly after a job (ops come back to back in a training step) and then
 * sleep on a condition variable, so an idle pool costs nothing. One thread at a time may
 * call cpu_pool_run on a pool (the backend's owner). */
#ifndef D2_CPU_POOL_H
#define D2_CPU_POOL_H

#include <stddef.h>

#include "common.h"

#define CPU_POOL_MAX_PARTS 64

typedef struct cpu_pool cpu_pool;

/* Runs items [lo, hi); `part` in [0, nparts) indexes per-part results (partial sums). */
typedef void (*cpu_pool_fn)(void *args, size_t lo, size_t hi, int part);

/* A pool of threads - 1 workers (none when threads <= 1). */
int cpu_pool_create(cpu_pool **out, int threads, d2_error *err);
void cpu_pool_destroy(cpu_pool *p);

/* Split [0, n) into at most CPU_POOL_MAX_PARTS parts of at least min_items items each (part
 * boundaries are multiples of align), run fn on every part and wait. Returns the number of
 * parts; parts cover [0, n) in order, so per-part results can be combined in order. With
 * one part (small n, or no workers) fn runs once on the calling thread: fn(args, 0, n, 0). */
int cpu_pool_run(cpu_pool *p, cpu_pool_fn fn, void *args, size_t n, size_t min_items,
                 size_t align);

/* Send spinning workers to sleep now, e.g. before a long call that brings its own threads
 * (OpenBLAS sgemm), so that they do not take its cores. The next cpu_pool_run wakes them. */
void cpu_pool_park(cpu_pool *p);

#endif
