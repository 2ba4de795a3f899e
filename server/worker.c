/* worker.c - generation threads: take an item, run it on this worker's
 * backend and workspace, write the outcome, report to the loop. */
#include "fileio.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "safetensors.h"
#include "sha256.h"
#include "store.h"

typedef struct worker {
    struct worker_pool *pool;
    int index;
    worker_event status; /* READY or INIT_FAILED */
    uv_thread_t thread;
    int started;
    backend_t *be;
    gen_workspace *ws[CONFIG_MAX_GENERATORS];
    store *db;
} worker;

struct worker_pool {
    worker_config cfg;
    const gens *gs;
    uv_mutex_t mu;
    uv_cond_t cv;
    work_item *head, *tail;
    int stop;
    uv_mutex_t ev_mu;
    worker_event *ev_head, *ev_tail;
    uv_async_t async;
    void (*on_event)(void *ctx, const worker_event *ev);
    void *ctx;
    int n;
    worker *w;
};

void worker_checkpoint_id(const char *job_id, int rank, char out[API_ID_LEN])
{
    /* job ids are "j_" + 20 hex digits */
    snprintf(out, API_ID_LEN, "ck_%.20s_%d", job_id + 2, rank);
}

void worker_pack_path(const char *checkpoint_dir, const char *job_id, char *out, size_t cap)
{
    api_snprintf(out, cap, "%s/%s.pack", checkpoint_dir, job_id);
}

/* ---- events: worker -> loop ---- */

static void post(worker_pool *p, worker_event *ev)
{
    uv_mutex_lock(&p->ev_mu);
    ev->next = NULL;
    if (p->ev_tail)
        p->ev_tail->next = ev;
    else
        p->ev_head = ev;
    p->ev_tail = ev;
    uv_mutex_unlock(&p->ev_mu);
    uv_async_send(&p->async); /* coalesced by libuv; the callback drains the list */
}

static void post_simple(worker *w, int kind, work_item *it, const char *msg)
{
    worker_event *ev = it ? &it->done : &w->status;
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->worker = w->index;
    ev->item = it;
    if (w->be && w->be->ops->memory)
        w->be->ops->memory(w->be, &ev->mem_used, &ev->mem_total);
    if (msg)
        api_snprintf(ev->message, sizeof ev->message, "%s", msg);
    post(w->pool, ev);
}

static void on_async(uv_async_t *a)
{
    worker_pool *p = a->data;
    uv_mutex_lock(&p->ev_mu);
    worker_event *ev = p->ev_head;
    p->ev_head = p->ev_tail = NULL;
    uv_mutex_unlock(&p->ev_mu);
    while (ev) {
        worker_event *next = ev->next; /* on_event may free ev's item */
        p->on_event(p->ctx, ev);
        ev = next;
    }
}

/* ---- running items ---- */

static void on_progress(void *ctx, float fraction)
{
    work_item *it = ctx;
    if (fraction < 0.0f)
        fraction = 0.0f;
    if (fraction > 1.0f)
        fraction = 1.0f;
    atomic_store(&it->progress_ppm, (int)(fraction * 1e6f));
}

static void set_error(work_item *it, int outcome, const char *code, const char *msg)
{
    it->outcome = outcome;
    snprintf(it->error_code, sizeof it->error_code, "%s", code);
    api_snprintf(it->error_message, sizeof it->error_message, "%s", msg);
}

static void worker_log(int level, const char *msg, const work_item *it, const char *error)
{
    d2log lg;
    log_init(&lg, LOG_INFO, 2);
    log_emit(&lg, level, msg, json_pack("{s:s, s:s}", "job_id", it->job_id, "error", error));
}

/* After a store call that returned rc: 1 when a lock refused it and it should
 * run again (after a pause, done here); 0 when it is done, failed for
 * another reason, or the item must stop (shutdown). *tries counts the
 * retries (the first is logged). */
static int retry_busy(worker *w, work_item *it, int rc, const d2_error *err, int *tries)
{
    if (rc == 0 || !store_busy(w->db) || atomic_load(&it->shutdown))
        return 0;
    if (*tries == 0)
        worker_log(LOG_WARN, "store locked: the job waits for it", it, err->msg);
    int ms = 20 << (*tries < 5 ? *tries : 5);
    if (ms > WORKER_STORE_RETRY_MAX_MS)
        ms = WORKER_STORE_RETRY_MAX_MS;
    (*tries)++;
    uv_sleep((unsigned)ms);
    store_busy_clear(w->db);
    return 1;
}

/* A failed checkpoint write: the log gets the whole message (it names the
 * file); the job's error, which clients read, only the cause after the last
 * ": " (strerror's text), never a server path. */
static void save_failed(work_item *it, const d2_error *err)
{
    d2log lg;
    log_init(&lg, LOG_ERROR, 2);
    log_emit(&lg, LOG_ERROR, "saving checkpoints failed",
             json_pack("{s:s, s:s}", "job_id", it->job_id, "error", err->msg));
    const char *cause = strrchr(err->msg, ':');
    cause = !cause ? err->msg : cause[1] == ' ' && cause[2] ? cause + 2 : "see the daemon log";
    char msg[API_MESSAGE_LEN];
    api_snprintf(msg, sizeof msg, "saving the checkpoints failed: %s", cause);
    set_error(it, WORK_FAILED, "internal", msg);
}

/* All ranked candidates as safetensors files back to back in one pack,
 * DATA/checkpoints/<job_id>.pack, written with one atomic write (temporary
 * name, fsync, rename, fsync of the directory): one job's checkpoints appear
 * together or not at all, for two fsyncs instead of two per checkpoint. */
static int save_checkpoints(worker *w, work_item *it, const gen_entry *ge, const gen_request *req,
                            const gen_result *res, api_checkpoint *ck, int64_t *offsets,
                            unsigned char **kept, size_t *kept_len, d2_error *err)
{
    unsigned char *pack = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (int r = 0; r < res->count && rc == 0; r++) {
        unsigned char *bytes = NULL;
        size_t n = 0;
        if (generator_checkpoint_bytes(ge->g, req, res, r, &bytes, &n, err) != 0) {
            rc = d2_wrap(err, "checkpoint %d", r);
            break;
        }
        if (len + n > cap) {
            size_t ncap = cap ? cap : n * (size_t)res->count;
            while (ncap < len + n)
                ncap *= 2;
            unsigned char *p = realloc(pack, ncap);
            if (!p) {
                free(bytes);
                rc = d2_fail(err, D2_ENOMEM, "out of memory for %zu bytes of checkpoints", ncap);
                break;
            }
            pack = p;
            cap = ncap;
        }
        memcpy(pack + len, bytes, n);
        free(bytes);
        api_checkpoint *c = &ck[r];
        memset(c, 0, sizeof *c);
        worker_checkpoint_id(it->job_id, r, c->id);
        snprintf(c->job_id, sizeof c->job_id, "%s", it->job_id);
        const gen_candidate *cand = &res->ranked[r];
        c->rank = r;
        c->method = (int)cand->method;
        c->candidate_index = cand->index;
        c->support_acc = cand->support_acc;
        c->support_loss = cand->support_loss;
        c->norm = cand->norm;
        c->zoo_distance = cand->zoo_distance;
        c->zoo_nearest = cand->zoo_nearest;
        sha256_hex(pack + len, n, c->sha256);
        c->size_bytes = (int64_t)n;
        offsets[r] = (int64_t)len;
        len += n;
    }
    if (rc == 0 && store_keeps_weights(w->db)) {
        *kept = pack; /* stored with the rows (store_success) */
        *kept_len = len;
        return 0;
    }
    if (rc == 0) {
        char path[sizeof w->pool->cfg.checkpoint_dir + API_ID_LEN + 16];
        worker_pack_path(w->pool->cfg.checkpoint_dir, it->job_id, path, sizeof path);
        rc = d2_write_file_atomic(path, pack, len, err);
    }
    free(pack);
    return rc;
}

/* The success's rows and, when the store keeps them (pack not NULL), its
 * checkpoint bytes: one transaction. */
static int store_success(worker *w, work_item *it, const gen_result *res, const api_checkpoint *ck,
                         const int64_t *offsets, const api_gate *gate, const unsigned char *pack,
                         size_t len, d2_error *err)
{
    if (!pack)
        return store_job_succeed(w->db, it->job_id, res->way, it->run_seconds, api_now_ms(), ck,
                                 offsets, res->count, it->parent_checkpoint, gate, err);
    if (store_begin(w->db, err) != 0)
        return err->code ? err->code : D2_EIO;
    int rc = store_pack_put(w->db, it->job_id, pack, len, err);
    if (rc == 0)
        rc = store_job_succeed(w->db, it->job_id, res->way, it->run_seconds, api_now_ms(), ck,
                               offsets, res->count, it->parent_checkpoint, gate, err);
    if (rc != 0) {
        store_rollback(w->db);
        return rc;
    }
    return store_commit(w->db, err);
}

/* The rows of a written pack were not stored: the pack goes (no row names
 * it). A lock at shutdown leaves the job running in the store (re-run after
 * the restart); any other failure fails it with the cause. */
static void unstored(worker *w, work_item *it, int rc, const d2_error *err)
{
    char path[sizeof w->pool->cfg.checkpoint_dir + API_ID_LEN + 16];
    worker_pack_path(w->pool->cfg.checkpoint_dir, it->job_id, path, sizeof path);
    if (!store_keeps_weights(w->db) && unlink(path) != 0)
        worker_log(LOG_ERROR, "removing an unstored pack failed", it, path);
    if (rc == D2_EINVAL) { /* its lease went to another replica, which runs it */
        set_error(it, WORK_TAKEN, "internal", err->msg);
        return;
    }
    if (store_busy(w->db)) {
        set_error(it, WORK_STORE_FAILED, "internal", err->msg);
        return;
    }
    char msg[API_MESSAGE_LEN];
    api_snprintf(msg, sizeof msg, "storing the checkpoints failed: %s", err->msg);
    set_error(it, WORK_FAILED, "internal", msg);
}

/* A generated result: the pack of every ranked checkpoint, then the store
 * (checkpoints with their methods, the gate's decision, the job succeeded). */
static void save_result(worker *w, work_item *it, const gen_entry *ge, const gen_request *req,
                        const gen_result *res, double t0)
{
    d2_error err;
    d2_error_clear(&err);
    size_t nc = (size_t)(res->count > 0 ? res->count : 1);
    api_checkpoint *ck = calloc(nc, sizeof *ck);
    int64_t *offsets = calloc(nc, sizeof *offsets);
    unsigned char *pack = NULL;
    size_t len = 0;
    if (!ck || !offsets)
        set_error(it, WORK_FAILED, "internal", "out of memory");
    else if (save_checkpoints(w, it, ge, req, res, ck, offsets, &pack, &len, &err) != 0)
        save_failed(it, &err);
    else {
        it->outcome = WORK_SUCCEEDED;
        it->way = res->way;
        it->run_seconds = d2_now() - t0;
        api_gate gate;
        api_gate_from_result(&gate, &res->gate, it->gate);
        int rc, tries = 0;
        do {
            store_busy_clear(w->db);
            rc = store_success(w, it, res, ck, offsets, &gate, pack, len, &err);
        } while (retry_busy(w, it, rc, &err, &tries));
        if (rc != 0)
            unstored(w, it, rc, &err);
    }
    free(pack);
    free(ck);
    free(offsets);
}

/* This worker's workspace for generator gi; one that joined after start-up
 * (--generator-pending) gets its workspace on its first item. The entry was
 * installed on the loop before the item was submitted (under p->mu). */
static gen_workspace *workspace_of(worker *w, int gi, d2_error *err)
{
    if (!w->ws[gi] && gen_workspace_create(&w->ws[gi], w->pool->gs->e[gi].g, w->be,
                                           w->pool->cfg.max_candidates, err) != 0) {
        d2_wrap(err, "worker %d: generator %s", w->index, w->pool->gs->e[gi].name);
        w->ws[gi] = NULL;
    }
    return w->ws[gi];
}

/* Mark the job running in the store and report it; waits out a lock. 0 when
 * it runs; else the outcome is set (cancelled, back to queued for a
 * shutdown, or left as stored when the store refused it). */
static int mark_running(worker *w, work_item *it, d2_error *err)
{
    int rc, tries = 0;
    do {
        if (atomic_load(&it->cancel) != WORK_CANCEL_NONE) {
            it->outcome = atomic_load(&it->shutdown) ? WORK_REQUEUED : WORK_CANCELLED;
            return -1;
        }
        store_busy_clear(w->db);
        rc = store_job_set_running(w->db, it->job_id, api_now_ms(), err);
    } while (retry_busy(w, it, rc, err, &tries));
    if (rc == D2_EINVAL) { /* not queued any more: another replica has it */
        it->outcome = WORK_TAKEN;
        return -1;
    }
    if (rc != 0) {
        if (atomic_load(&it->shutdown))
            it->outcome = WORK_REQUEUED; /* it is still queued in the store */
        else
            set_error(it, WORK_STORE_FAILED, "internal", err->msg);
        return -1;
    }
    worker_event *ev = &it->started;
    memset(ev, 0, sizeof *ev);
    ev->kind = WORKER_STARTED;
    ev->worker = w->index;
    ev->item = it;
    post(w->pool, ev);
    return 0;
}

/* Read the job's data set (waits out a lock). */
static int load_dataset(worker *w, work_item *it, dataset *d, d2_error *err)
{
    int rc, kind, tries = 0;
    do {
        store_busy_clear(w->db);
        rc = store_dataset_load(w->db, it->dataset_id, d, &kind, err);
    } while (retry_busy(w, it, rc, err, &tries));
    return rc;
}

/* Store the outcome that is not a success (waits out a lock). */
static void store_outcome(worker *w, work_item *it, int was_running, d2_error *err)
{
    int rc = 0, tries = 0;
    if (it->outcome == WORK_STORE_FAILED || (it->outcome == WORK_REQUEUED && !was_running) ||
        it->outcome == WORK_SUCCEEDED || it->outcome == WORK_TAKEN)
        return;
    do {
        store_busy_clear(w->db);
        if (it->outcome == WORK_REQUEUED)
            rc = store_job_requeue(w->db, it->job_id, err);
        else if (it->outcome == WORK_CANCELLED)
            rc = store_job_finish(w->db, it->job_id, API_JOB_CANCELLED, NULL, NULL, api_now_ms(),
                                  it->run_seconds, err);
        else
            rc = store_job_finish(w->db, it->job_id, API_JOB_FAILED, it->error_code,
                                  it->error_message, api_now_ms(), it->run_seconds, err);
    } while (retry_busy(w, it, rc, err, &tries));
    if (rc != 0) /* left as the store has it: re-run after a restart */
        set_error(it, WORK_STORE_FAILED, "internal", err->msg);
}

static void run_job(worker *w, work_item *it)
{
    const gen_entry *ge = &w->pool->gs->e[it->gen_index];
    d2_error err;
    d2_error_clear(&err);
    double t0 = d2_now();
    dataset d;
    int running = mark_running(w, it, &err) == 0;
    if (!running) {
        /* outcome set: nothing ran */
    } else if (load_dataset(w, it, &d, &err) != 0) {
        set_error(it, WORK_FAILED, "internal", err.msg);
    } else {
        gen_request req;
        memset(&req, 0, sizeof req);
        req.support = &d;
        req.embeddings = it->embeddings;
        req.candidates = it->candidates;
        req.steps = it->steps;
        req.sampler = (gen_sampler)it->sampler;
        req.guidance = it->guidance;
        req.seed = it->seed;
        req.gate = it->gate;
        req.refine = it->refine;
        req.cancel = &it->cancel;
        req.progress = on_progress;
        req.progress_ctx = it;
        gen_result res;
        memset(&res, 0, sizeof res);
        double tg = d2_now();
        gen_workspace *ws = workspace_of(w, it->gen_index, &err);
        int rc = ws ? generator_generate(ge->g, ws, &req, &res, &err) : err.code ? err.code : D2_ENOMEM;
        rc = backend_explain(w->be, rc, &err); /* a device fault, not its symptom */
        it->generate_seconds = d2_now() - tg;
        double ts = d2_now();
        int none = WORK_CANCEL_NONE;
        if (rc == D2_ECANCELLED) {
            it->outcome = atomic_load(&it->shutdown) ? WORK_REQUEUED : WORK_CANCELLED;
        } else if (rc != 0) {
            set_error(it, WORK_FAILED, "generation_failed", err.msg);
        } else if (!atomic_compare_exchange_strong(&it->cancel, &none, WORK_CANCEL_FINISHING)) {
            /* a cancel (or shutdown) came in after the sampler's last check:
             * it was accepted, so it holds */
            it->outcome = atomic_load(&it->shutdown) ? WORK_REQUEUED : WORK_CANCELLED;
            gen_result_free(&res);
        } else {
            save_result(w, it, ge, &req, &res, t0);
            gen_result_free(&res);
        }
        it->save_seconds = d2_now() - ts;
        dataset_free(&d);
    }
    it->run_seconds = d2_now() - t0;
    store_outcome(w, it, running, &err);
}

static void run_retrieve(worker *w, work_item *it)
{
    const gen_entry *ge = &w->pool->gs->e[it->gen_index];
    d2_error err;
    d2_error_clear(&err);
    double t0 = d2_now();
    dataset loaded;
    memset(&loaded, 0, sizeof loaded);
    const dataset *d = &it->data;
    int kind;
    if (!it->has_data) {
        if (store_dataset_load(w->db, it->dataset_id, &loaded, &kind, &err) != 0) {
            set_error(it, WORK_FAILED, "internal", err.msg);
            return;
        }
        d = &loaded;
    }
    dataset_fingerprint(d, it->dataset_fp);
    int k = it->k < WORK_MAX_HITS ? it->k : WORK_MAX_HITS;
    gen_workspace *ws = workspace_of(w, it->gen_index, &err);
    int rc = ws ? generator_retrieve(ge->g, ws, d, it->embeddings, k, it->hits, &it->nhits, &err)
                : err.code ? err.code : D2_ENOMEM;
    if (backend_explain(w->be, rc, &err) != 0) /* a device fault, not its symptom */
        set_error(it, WORK_FAILED, "generation_failed", err.msg);
    else
        it->outcome = WORK_SUCCEEDED;
    it->run_seconds = d2_now() - t0;
    if (!it->has_data)
        dataset_free(&loaded);
}

static int worker_init(worker *w, char *msg, size_t cap)
{
    worker_pool *p = w->pool;
    d2_error err;
    d2_error_clear(&err);
    int threads = p->cfg.threads;
    if (backend_create(&w->be, p->cfg.device, threads, &err) != 0 ||
        store_open_conf(&w->db, &(store_conf){p->cfg.db_path,
                                               p->cfg.store_password[0] ? p->cfg.store_password
                                                                        : NULL,
                                               p->cfg.sync_full, p->cfg.replica, p->cfg.lease_ms},
                        &err) != 0) {
        api_snprintf(msg, cap, "worker %d: %s", w->index, err.msg);
        return -1;
    }
    store_set_busy_timeout(w->db, 1000); /* then retry_busy: a shutdown is seen between tries */
    for (int g = 0; g < p->gs->n; g++) /* loaded ones now; pending ones on first use */
        if (p->gs->e[g].g && gen_workspace_create(&w->ws[g], p->gs->e[g].g, w->be, p->cfg.max_candidates, &err) !=
            0) {
            api_snprintf(msg, cap, "worker %d: generator %s: %s", w->index, p->gs->e[g].name,
                     err.msg);
            return -1;
        }
    return 0;
}

static void worker_cleanup(worker *w)
{
    for (int g = 0; g < CONFIG_MAX_GENERATORS; g++)
        if (w->ws[g]) {
            gen_workspace_free(w->ws[g]);
            w->ws[g] = NULL;
        }
    store_close(w->db);
    w->db = NULL;
    if (w->be)
        backend_destroy(w->be);
    w->be = NULL;
}

static void worker_main(void *arg)
{
    worker *w = arg;
    worker_pool *p = w->pool;
    char msg[API_MESSAGE_LEN];
    if (worker_init(w, msg, sizeof msg) != 0) {
        post_simple(w, WORKER_INIT_FAILED, NULL, msg);
        worker_cleanup(w);
        return;
    }
    post_simple(w, WORKER_READY, NULL, NULL);
    for (;;) {
        uv_mutex_lock(&p->mu);
        while (!p->head && !p->stop)
            uv_cond_wait(&p->cv, &p->mu);
        if (!p->head) { /* stop with nothing left */
            uv_mutex_unlock(&p->mu);
            break;
        }
        work_item *it = p->head;
        p->head = it->next;
        if (!p->head)
            p->tail = NULL;
        uv_mutex_unlock(&p->mu);
        it->next = NULL;
        it->worker = w->index;
        if (it->kind == WORK_JOB)
            run_job(w, it);
        else
            run_retrieve(w, it);
        post_simple(w, WORKER_DONE, it, NULL);
    }
    worker_cleanup(w);
}

int worker_pool_start(worker_pool **out, const worker_config *cfg, const gens *gs, uv_loop_t *loop,
                      void (*on_event)(void *ctx, const worker_event *ev), void *ctx,
                      d2_error *err)
{
    *out = NULL;
    worker_pool *p = calloc(1, sizeof *p);
    if (!p)
        return d2_fail(err, D2_ENOMEM, "workers: out of memory");
    p->w = calloc((size_t)cfg->workers, sizeof *p->w);
    if (!p->w) {
        free(p);
        return d2_fail(err, D2_ENOMEM, "workers: out of memory");
    }
    p->cfg = *cfg;
    p->gs = gs;
    p->on_event = on_event;
    p->ctx = ctx;
    if (uv_mutex_init(&p->mu) != 0 || uv_mutex_init(&p->ev_mu) != 0 || uv_cond_init(&p->cv) != 0 ||
        uv_async_init(loop, &p->async, on_async) != 0) {
        free(p->w);
        free(p);
        return d2_fail(err, D2_ENOMEM, "workers: cannot create locks");
    }
    p->async.data = p;
    for (int i = 0; i < cfg->workers; i++) {
        worker *w = &p->w[i];
        w->pool = p;
        w->index = i;
        int rc = uv_thread_create(&w->thread, worker_main, w);
        if (rc != 0) {
            *out = p;
            worker_pool_stop(p);
            *out = NULL;
            return d2_fail(err, D2_EIO, "workers: cannot start thread %d: %s", i,
                           uv_strerror(rc));
        }
        w->started = 1;
        p->n = i + 1;
    }
    *out = p;
    return 0;
}

void worker_pool_submit(worker_pool *p, work_item *w)
{
    uv_mutex_lock(&p->mu);
    w->next = NULL;
    if (w->kind == WORK_RETRIEVE) { /* interactive: ahead of jobs */
        w->next = p->head;
        p->head = w;
        if (!p->tail)
            p->tail = w;
    } else {
        if (p->tail)
            p->tail->next = w;
        else
            p->head = w;
        p->tail = w;
    }
    uv_cond_signal(&p->cv);
    uv_mutex_unlock(&p->mu);
}

static void free_pool(uv_handle_t *h)
{
    worker_pool *p = h->data;
    uv_mutex_destroy(&p->mu);
    uv_mutex_destroy(&p->ev_mu);
    uv_cond_destroy(&p->cv);
    free(p->w);
    free(p);
}

void worker_pool_stop(worker_pool *p)
{
    if (!p)
        return;
    uv_mutex_lock(&p->mu);
    p->stop = 1;
    uv_cond_broadcast(&p->cv);
    uv_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->w[i].started)
            uv_thread_join(&p->w[i].thread);
    uv_close((uv_handle_t *)&p->async, free_pool);
}
