/* storeq.c - the store threads (a read lane and a write lane) and their
 * completions on the loop. */
#include "storeq.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct lane {
    struct storeq *q;
    int index;
    store *db;
    uv_thread_t thread;
    int started;
    uv_mutex_t mu;
    uv_cond_t cv;
    storeq_op *head, *tail;
    int stop;
} lane;

struct storeq {
    lane lanes[STOREQ_LANES];
    uv_mutex_t done_mu;
    uv_cond_t done_cv;
    storeq_op *done_head, *done_tail;
    uv_async_t async;
    uv_timer_t delay;          /* runs the delayed ops when due */
    uv_timer_t probe;          /* every STOREQ_PROBE_MS */
    uint64_t last_ok_ms;       /* uv_now of the last write that went through */
    storeq_op *delayed;        /* storeq_submit_after, unordered */
    storeq_op probe_op;
    int probe_inflight;
    int pending;               /* loop thread only */
    int stopping;
    int handles_open;
    int unavailable;
    atomic_int fast_fail;      /* = unavailable, for the write lane: see lane_run */
    int busy_ms;
    double since;
    char why[D2_ERRMSG_LEN];
};

/* ---- lanes (store threads) ---- */

static void post_done(storeq *q, storeq_op *op)
{
    uv_mutex_lock(&q->done_mu);
    op->next = NULL;
    if (q->done_tail)
        q->done_tail->next = op;
    else
        q->done_head = op;
    q->done_tail = op;
    uv_cond_signal(&q->done_cv);
    uv_mutex_unlock(&q->done_mu);
    uv_async_send(&q->async);
}

/* Run one op. While the store is known to be locked, a write other than the
 * probe tries once and does not wait for the lock (busy timeout 0): a
 * request is answered 503 at once instead of after busy_ms for each write
 * queued before it; the probe waits busy_ms and notices the lock's end. */
static void lane_run(lane *l, storeq_op *op)
{
    storeq *q = l->q;
    if (l->index == STOREQ_WRITE)
        store_set_busy_timeout(l->db, atomic_load(&q->fast_fail) && op != &q->probe_op
                                          ? 0 : q->busy_ms);
    d2_error_clear(&op->err);
    store_busy_clear(l->db);
    op->rc = op->work(l->db, op->ctx, &op->err);
    op->busy = op->rc != 0 && store_busy(l->db);
}

static void lane_main(void *arg)
{
    lane *l = arg;
    for (;;) {
        uv_mutex_lock(&l->mu);
        while (!l->head && !l->stop)
            uv_cond_wait(&l->cv, &l->mu);
        storeq_op *op = l->head;
        if (!op) {
            uv_mutex_unlock(&l->mu);
            return;
        }
        l->head = op->next;
        if (!l->head)
            l->tail = NULL;
        uv_mutex_unlock(&l->mu);
        lane_run(l, op);
        post_done(l->q, op);
    }
}

static void lane_push(lane *l, storeq_op *op)
{
    uv_mutex_lock(&l->mu);
    op->next = NULL;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    uv_cond_signal(&l->cv);
    uv_mutex_unlock(&l->mu);
}

/* ---- availability ---- */

static void note_outcome(storeq *q, const storeq_op *op)
{
    if (op->busy && !q->unavailable) {
        q->unavailable = 1;
        atomic_store(&q->fast_fail, 1);
        q->since = d2_now();
        api_snprintf(q->why, sizeof q->why, "%s", op->err.msg);
    } else if (!op->busy && op->rc == 0 && op->lane == STOREQ_WRITE) {
        q->unavailable = 0;
        atomic_store(&q->fast_fail, 0);
        q->last_ok_ms = uv_now(q->probe.loop);
    }
}

static int probe_work(store *db, void *ctx, d2_error *err)
{
    (void)ctx;
    return store_probe(db, err);
}

static void probe_done(storeq_op *op)
{
    storeq *q = op->ctx;
    q->probe_inflight = 0;
}

/* A probe when no write went through for a while: a lock is seen even
 * when no request writes, and so is its end. */
static void on_probe(uv_timer_t *t)
{
    storeq *q = t->data;
    if (q->probe_inflight || q->stopping ||
        (!q->unavailable && uv_now(t->loop) - q->last_ok_ms < STOREQ_PROBE_MS))
        return;
    q->probe_inflight = 1;
    storeq_submit(q, &q->probe_op, STOREQ_WRITE, probe_work, probe_done, q);
}

int storeq_available(const storeq *q, double *since, char *why, size_t cap)
{
    if (since)
        *since = q->since;
    if (why && cap)
        api_snprintf(why, cap, "%s", q->unavailable ? q->why : "");
    return !q->unavailable;
}

int storeq_pending(const storeq *q)
{
    return q->pending;
}

/* ---- completions on the loop ---- */

static void complete(storeq *q, storeq_op *op)
{
    note_outcome(q, op);
    q->pending--;
    op->done(op); /* may free op */
}

static int drain_done(storeq *q)
{
    uv_mutex_lock(&q->done_mu);
    storeq_op *op = q->done_head;
    q->done_head = q->done_tail = NULL;
    uv_mutex_unlock(&q->done_mu);
    int n = 0;
    while (op) {
        storeq_op *next = op->next;
        complete(q, op);
        op = next;
        n++;
    }
    return n;
}

static void on_async(uv_async_t *a)
{
    drain_done(a->data);
}

void storeq_submit(storeq *q, storeq_op *op, int lane, storeq_work_fn work, storeq_done_fn done,
                   void *ctx)
{
    op->work = work;
    op->done = done;
    op->ctx = ctx;
    op->lane = lane == STOREQ_WRITE ? STOREQ_WRITE : STOREQ_READ;
    op->rc = 0;
    op->busy = 0;
    q->pending++;
    lane_push(&q->lanes[op->lane], op);
}

/* ---- delayed ops ---- */

static void on_delay(uv_timer_t *t);

static void arm_delay(storeq *q)
{
    uint64_t now = uv_now(q->delay.loop), next = 0;
    for (storeq_op *op = q->delayed; op; op = op->next)
        if (next == 0 || op->due_ms < next)
            next = op->due_ms;
    if (next)
        uv_timer_start(&q->delay, on_delay, next > now ? next - now : 0, 0);
}

static void on_delay(uv_timer_t *t)
{
    storeq *q = t->data;
    uint64_t now = uv_now(t->loop);
    storeq_op **p = &q->delayed;
    while (*p) {
        storeq_op *op = *p;
        if (op->due_ms <= now) {
            *p = op->next;
            q->pending--; /* counted again by storeq_submit */
            storeq_submit(q, op, op->lane, op->work, op->done, op->ctx);
        } else {
            p = &op->next;
        }
    }
    arm_delay(q);
}

void storeq_submit_after(storeq *q, storeq_op *op, unsigned delay_ms)
{
    q->pending++;
    if (q->stopping) { /* no retries while stopping: it ends here */
        op->rc = D2_ECANCELLED;
        op->busy = 0;
        d2_fail(&op->err, D2_ECANCELLED, "store: the daemon is stopping");
        complete(q, op);
        return;
    }
    uv_update_time(q->delay.loop); /* the loop's cached time may be old */
    op->due_ms = uv_now(q->delay.loop) + delay_ms;
    op->next = q->delayed;
    q->delayed = op;
    arm_delay(q);
}

/* ---- start / stop ---- */

static void lane_close(lane *l)
{
    if (l->started) {
        uv_mutex_lock(&l->mu);
        l->stop = 1;
        uv_cond_signal(&l->cv);
        uv_mutex_unlock(&l->mu);
        uv_thread_join(&l->thread);
        l->started = 0;
    }
    store_close(l->db);
    l->db = NULL;
}

static void free_locks(storeq *q)
{
    for (int i = 0; i < STOREQ_LANES; i++) {
        uv_mutex_destroy(&q->lanes[i].mu);
        uv_cond_destroy(&q->lanes[i].cv);
    }
    uv_mutex_destroy(&q->done_mu);
    uv_cond_destroy(&q->done_cv);
}

static void handle_closed(uv_handle_t *h)
{
    storeq *q = h->data;
    if (--q->handles_open == 0) {
        free_locks(q);
        free(q);
    }
}

static int init_locks(storeq *q)
{
    int rc = uv_mutex_init(&q->done_mu);
    if (rc == 0)
        rc = uv_cond_init(&q->done_cv);
    for (int i = 0; i < STOREQ_LANES && rc == 0; i++) {
        rc = uv_mutex_init(&q->lanes[i].mu);
        if (rc == 0)
            rc = uv_cond_init(&q->lanes[i].cv);
    }
    return rc;
}

static int open_lanes(storeq *q, const store_conf *conf, int busy_ms, d2_error *err)
{
    for (int i = 0; i < STOREQ_LANES; i++) {
        lane *l = &q->lanes[i];
        l->q = q;
        l->index = i;
        if (store_open_conf(&l->db, conf, err) != 0)
            return D2_EIO;
        store_set_busy_timeout(l->db, busy_ms);
        int rc = uv_thread_create(&l->thread, lane_main, l);
        if (rc != 0)
            return d2_fail(err, D2_EIO, "store thread: %s", uv_strerror(rc));
        l->started = 1;
    }
    return 0;
}

int storeq_start(storeq **out, uv_loop_t *loop, const store_conf *conf, int busy_ms,
                 d2_error *err)
{
    *out = NULL;
    storeq *q = calloc(1, sizeof *q);
    if (!q)
        return d2_fail(err, D2_ENOMEM, "store threads: out of memory");
    if (init_locks(q) != 0) {
        free(q);
        return d2_fail(err, D2_ENOMEM, "store threads: cannot create locks");
    }
    uv_async_init(loop, &q->async, on_async); /* cannot fail on a live loop */
    uv_timer_init(loop, &q->delay);
    uv_timer_init(loop, &q->probe);
    q->async.data = q->delay.data = q->probe.data = q;
    q->handles_open = 3;
    q->busy_ms = busy_ms;
    atomic_init(&q->fast_fail, 0);
    if (open_lanes(q, conf, busy_ms, err) != 0) {
        storeq_stop(q);
        return err->code ? err->code : D2_EIO;
    }
    q->last_ok_ms = uv_now(loop);
    uv_timer_start(&q->probe, on_probe, STOREQ_PROBE_MS, STOREQ_PROBE_MS);
    *out = q;
    return 0;
}

/* Wait for the lanes' completions and run them until nothing is pending. */
static void finish_pending(storeq *q)
{
    while (q->pending > 0) {
        uv_mutex_lock(&q->done_mu);
        if (!q->done_head)
            uv_cond_timedwait(&q->done_cv, &q->done_mu, 50 * 1000000ull);
        uv_mutex_unlock(&q->done_mu);
        drain_done(q);
    }
}

void storeq_stop(storeq *q)
{
    if (!q)
        return;
    q->stopping = 1;
    uv_timer_stop(&q->probe);
    uv_timer_stop(&q->delay);
    while (q->delayed) { /* end each one now (storeq_submit_after while stopping) */
        storeq_op *op = q->delayed;
        q->delayed = op->next;
        q->pending--;
        storeq_submit_after(q, op, 0);
    }
    finish_pending(q);
    for (int i = 0; i < STOREQ_LANES; i++)
        lane_close(&q->lanes[i]);
    uv_close((uv_handle_t *)&q->async, handle_closed);
    uv_close((uv_handle_t *)&q->delay, handle_closed);
    uv_close((uv_handle_t *)&q->probe, handle_closed);
}
