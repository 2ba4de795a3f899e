/* cpu_pool.c - fork-join pool with dynamic part claiming (see cpu_pool.h).
 *
 * The job state is one 64-bit atomic word: generation (32 bits) | next part (16) |
 * number of parts (16). A part is claimed by a compare-and-swap on that word, so a worker
 * can only claim parts of the job it saw published, and job fields (fn, args, bounds) are
 * read only after a successful claim, when the caller is still waiting for that part. */
#include "cpu_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define POOL_SPIN_SECONDS 100e-6 /* a worker spins this long for the next job, then sleeps */

struct cpu_pool {
    int nworkers;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_int sleepers;
    atomic_int stop;
    atomic_int park;        /* set by cpu_pool_park: spinning workers go to sleep now */
    _Atomic uint64_t state; /* gen << 32 | next << 16 | nparts */
    atomic_int done;        /* parts finished in the current job */
    /* the current job, written before its state is published */
    cpu_pool_fn fn;
    void *args;
    size_t n, align;
};

static inline void pool_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline uint32_t state_gen(uint64_t s)
{
    return (uint32_t)(s >> 32);
}

/* item bounds of part p of nparts */
static void pool_bounds(const cpu_pool *p, int part, int nparts, size_t *lo, size_t *hi)
{
    size_t a = p->align ? p->align : 1;
    *lo = part == 0 ? 0 : p->n / (size_t)nparts * (size_t)part / a * a;
    *hi = part == nparts - 1 ? p->n : p->n / (size_t)nparts * (size_t)(part + 1) / a * a;
}

/* claim and run parts of job `gen` until none are left */
static void pool_work(cpu_pool *p, uint32_t gen)
{
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        if (state_gen(s) != gen)
            return;
        int next = (int)((s >> 16) & 0xffff), nparts = (int)(s & 0xffff);
        if (next >= nparts)
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + (1u << 16),
                                                   memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* s was reloaded */
        size_t lo, hi;
        pool_bounds(p, next, nparts, &lo, &hi);
        if (hi > lo)
            p->fn(p->args, lo, hi, next);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
}

static void *pool_worker(void *arg)
{
    cpu_pool *p = arg;
    uint32_t seen = state_gen(atomic_load(&p->state));
    while (!atomic_load(&p->stop)) {
        /* spin for a new generation, then sleep */
        double t0 = d2_now();
        unsigned spins = 0;
        uint32_t gen;
        while ((gen = state_gen(atomic_load_explicit(&p->state, memory_order_acquire))) ==
                   seen &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            pool_pause();
            if (((++spins & 63) == 0 && d2_now() - t0 > POOL_SPIN_SECONDS) ||
                atomic_load_explicit(&p->park, memory_order_relaxed)) {
                pthread_mutex_lock(&p->mu);
                atomic_fetch_add(&p->sleepers, 1); /* seq_cst: pairs with cpu_pool_run */
                while (state_gen(atomic_load(&p->state)) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&p->wake, &p->mu);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->mu);
                t0 = d2_now();
            }
        }
        if (atomic_load(&p->stop))
            break;
        seen = gen;
        pool_work(p, gen);
    }
    return NULL;
}

int cpu_pool_create(cpu_pool **out, int threads, d2_error *err)
{
    *out = NULL;
    cpu_pool *p = calloc(1, sizeof *p);
    if (!p)
        return d2_fail(err, D2_ENOMEM, "cpu pool: out of memory");
    p->nworkers = threads > 1 ? threads - 1 : 0;
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->park, 0);
    atomic_init(&p->state, 0);
    atomic_init(&p->done, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return d2_fail(err, D2_ENOMEM, "cpu pool: cannot create a mutex");
    }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return d2_fail(err, D2_ENOMEM, "cpu pool: cannot create a condition variable");
    }
    if (p->nworkers) {
        p->threads = calloc((size_t)p->nworkers, sizeof *p->threads);
        if (!p->threads) {
            cpu_pool_destroy(p);
            return d2_fail(err, D2_ENOMEM, "cpu pool: out of memory");
        }
        for (int i = 0; i < p->nworkers; i++) {
            if (pthread_create(&p->threads[i], NULL, pool_worker, p) != 0) {
                p->nworkers = i; /* join the ones that started */
                cpu_pool_destroy(p);
                return d2_fail(err, D2_ENOMEM, "cpu pool: cannot start worker thread %d", i);
            }
        }
    }
    *out = p;
    return 0;
}

void cpu_pool_destroy(cpu_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int cpu_pool_run(cpu_pool *p, cpu_pool_fn fn, void *args, size_t n, size_t min_items,
                 size_t align)
{
    if (n == 0)
        return 0;
    size_t parts = min_items ? n / min_items : n;
    int threads = p ? p->nworkers + 1 : 1;
    /* a few parts per thread, so that a late worker costs little */
    if (parts > (size_t)threads * 4)
        parts = (size_t)threads * 4;
    if (parts > CPU_POOL_MAX_PARTS)
        parts = CPU_POOL_MAX_PARTS;
    if (align > 1 && parts > n / align)
        parts = n / align; /* every part at least `align` items: none is empty */
    if (parts <= 1 || threads == 1) {
        fn(args, 0, n, 0);
        return 1;
    }
    p->fn = fn;
    p->args = args;
    p->n = n;
    p->align = align;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->park, 0, memory_order_relaxed);
    uint32_t gen = state_gen(atomic_load_explicit(&p->state, memory_order_relaxed)) + 1;
    /* publish (seq_cst, so that the sleepers check below cannot miss a worker going to
     * sleep: it increments sleepers before it re-reads the state) */
    atomic_store(&p->state, (uint64_t)gen << 32 | (uint64_t)parts);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    pool_work(p, gen);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < (int)parts)
        pool_pause();
    return (int)parts;
}

void cpu_pool_park(cpu_pool *p)
{
    if (p && p->nworkers)
        atomic_store_explicit(&p->park, 1, memory_order_relaxed);
}
