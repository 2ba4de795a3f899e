/* jobs.c - queue, dispatch, cancel, long-poll waiters, retrievals, drain. */
#include "jobs.h"
#include "storeq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRIORITIES 10
#define JOB_BUCKETS 4096
/* A store write refused for a lock is tried again after this long. */
#define JOBS_STORE_RETRY_MS 1000
/* Longest long-poll of a job another replica holds (see jobs_wait). */
#define JOBS_REMOTE_WAIT_MAX_S 5.0
/* An adoption reads this many queued jobs per worker from the shared queue. */
#define JOBS_ADOPT_HEAD 8

struct job_rec {
    work_item w; /* first: a worker event's item is the record */
    api_job_state state;
    int priority;
    int sent_ppm; /* progress last reported by jobs_progress_scan */
    int cancelling; /* queued, taken off the queue: its cancel is being stored */
    int remote;     /* only long-polls of a job another replica holds (PostgreSQL):
                     * not queued or run here; freed when they are answered */
    int64_t created_ms;
    struct waiter *waiters;
    job_rec *qprev, *qnext; /* pending list of its priority */
    job_rec *hnext;         /* table chain */
};

typedef struct waiter {
    uv_timer_t timer;
    jobs *owner;
    job_rec *job;
    http_req *req;
    struct waiter *prev, *next;
} waiter;

struct jobs {
    server *s;
    jobs_owner owner;
    worker_pool *pool;
    int nworkers, started, idle;
    job_rec *qhead[PRIORITIES], *qtail[PRIORITIES];
    int npending, nrunning;
    job_rec *table[JOB_BUCKETS];
    rtask *rhead, *rtail;
    int nretrieve_waiting, nretrieve_running;
    int nwaiters;
    int draining, drained;
    uv_timer_t grace;
    int grace_active;
    size_t mem_used[METRICS_MAX_WORKERS], mem_total[METRICS_MAX_WORKERS];
    double avg_run; /* moving average of job seconds, for Retry-After */
    int fleet;      /* PostgreSQL: replicas share the queue (jobs_heard) */
    int adopting;   /* a JOBS_ADOPT read is in flight */
};

/* ---- table of active jobs ---- */

static unsigned bucket_of(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % JOB_BUCKETS;
}

/* The record of job id, remote ones included (find_local: not those). */
static job_rec *find_any(const jobs *j, const char *id)
{
    for (job_rec *r = j->table[bucket_of(id)]; r; r = r->hnext)
        if (!strcmp(r->w.job_id, id))
            return r;
    return NULL;
}

static job_rec *find(const jobs *j, const char *id)
{
    job_rec *r = find_any(j, id);
    return r && !r->remote ? r : NULL;
}

static void table_remove(jobs *j, job_rec *r)
{
    job_rec **p = &j->table[bucket_of(r->w.job_id)];
    while (*p && *p != r)
        p = &(*p)->hnext;
    if (*p)
        *p = r->hnext;
}

static void pending_push(jobs *j, job_rec *r)
{
    int p = r->priority;
    r->qnext = NULL;
    r->qprev = j->qtail[p];
    if (j->qtail[p])
        j->qtail[p]->qnext = r;
    else
        j->qhead[p] = r;
    j->qtail[p] = r;
    j->npending++;
}

/* Back at the head of its priority (a cancel the store refused). */
static void pending_push_front(jobs *j, job_rec *r)
{
    int p = r->priority;
    r->qprev = NULL;
    r->qnext = j->qhead[p];
    if (j->qhead[p])
        j->qhead[p]->qprev = r;
    else
        j->qtail[p] = r;
    j->qhead[p] = r;
    j->npending++;
}

static void pending_remove(jobs *j, job_rec *r)
{
    int p = r->priority;
    if (r->qprev)
        r->qprev->qnext = r->qnext;
    else
        j->qhead[p] = r->qnext;
    if (r->qnext)
        r->qnext->qprev = r->qprev;
    else
        j->qtail[p] = r->qprev;
    r->qprev = r->qnext = NULL;
    j->npending--;
}

static job_rec *pending_pop(jobs *j)
{
    for (int p = PRIORITIES - 1; p >= 0; p--)
        if (j->qhead[p]) {
            job_rec *r = j->qhead[p];
            pending_remove(j, r);
            return r;
        }
    return NULL;
}

/* ---- waiters ---- */

static void waiter_closed(uv_handle_t *h)
{
    free(h->data);
}

static void table_remove(jobs *j, job_rec *r);

/* Unlink and close the waiter; resume its request when `resume`. The
 * record of a remote job goes with its last waiter. */
static void waiter_finish(waiter *w, int resume)
{
    jobs *j = w->owner;
    job_rec *rec = w->job;
    if (w->prev)
        w->prev->next = w->next;
    else if (w->job)
        w->job->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    j->nwaiters--;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
    if (resume)
        http_resume(w->req);
    else
        w->req->release = NULL; /* nothing holds the request any more */
    if (rec && rec->remote && !rec->waiters) {
        table_remove(j, rec);
        free(rec);
    }
}

/* http_release_fn of a long-poll */
static void waiter_release(void *ctx, http_req *r, int answer)
{
    (void)r;
    waiter_finish(ctx, answer);
}

static void on_wait_timeout(uv_timer_t *t)
{
    waiter_finish(t->data, 1);
}

/* Resume every long-poll of r (a remote r is freed with the last one). */
static void wake_waiters(job_rec *r)
{
    int n = 0;
    for (waiter *w = r->waiters; w; w = w->next)
        n++;
    while (n-- > 0)
        waiter_finish(r->waiters, 1);
}

/* A record that holds only long-polls of a job another replica runs or
 * queued (PostgreSQL): woken by what jobs_heard hears. */
static job_rec *remote_rec(jobs *j, const char *id)
{
    job_rec *r = find_any(j, id);
    if (r || !j->fleet)
        return r;
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->remote = 1;
    r->state = API_JOB_RUNNING;
    api_snprintf(r->w.job_id, sizeof r->w.job_id, "%s", id);
    unsigned b = bucket_of(id);
    r->hnext = j->table[b];
    j->table[b] = r;
    return r;
}

int jobs_wait(jobs *j, const char *id, http_req *r, double seconds)
{
    job_rec *rec = j->draining || seconds <= 0 ? NULL : remote_rec(j, id);
    if (!rec)
        return 0;
    /* a change made elsewhere between the read and now is not heard again:
     * a remote wait is kept short */
    if (rec->remote && seconds > JOBS_REMOTE_WAIT_MAX_S)
        seconds = JOBS_REMOTE_WAIT_MAX_S;
    waiter *w = calloc(1, sizeof *w);
    if (!w || uv_timer_init(j->s->loop, &w->timer) != 0) {
        free(w);
        return 0; /* answer now rather than fail the request */
    }
    w->timer.data = w;
    w->owner = j;
    w->job = rec;
    w->req = r;
    w->next = rec->waiters;
    if (rec->waiters)
        rec->waiters->prev = w;
    rec->waiters = w;
    j->nwaiters++;
    uv_timer_start(&w->timer, on_wait_timeout, (uint64_t)llround(seconds * 1000.0), 0);
    http_suspend(r, waiter_release, w);
    return 1;
}

static void shutting_down(api_error *e)
{
    api_fail(e, 503, "shutting_down", NULL, "the daemon is shutting down");
}

/* http_release_fn of a retrieval: the task runs on, unanswered */
static void rtask_release(void *ctx, http_req *r, int answer)
{
    rtask *t = ctx;
    t->req = NULL;
    if (answer) {
        api_error e;
        shutting_down(&e);
        http_resume_error(r, &e, 5);
    }
}

/* ---- records ---- */

static void rec_free(jobs *j, job_rec *r)
{
    wake_waiters(r);
    table_remove(j, r);
    free(r);
}

static void log_job(jobs *j, int level, const char *msg, const job_rec *r, json_t *extra)
{
    json_t *f = json_pack("{s:s, s:s}", "job_id", r->w.job_id, "state",
                          api_job_state_name(r->state));
    if (f && extra)
        json_object_update(f, extra);
    json_decref(extra);
    server_log(j->s, level, msg, f);
}

static void changed(jobs *j, const char *id)
{
    if (j->owner.job_changed)
        j->owner.job_changed(j->owner.user, id);
}

/* ---- dispatch ---- */

static void dispatch(jobs *j)
{
    while (j->idle > 0 && !j->draining && j->pool) {
        rtask *t = j->rhead;
        if (t) {
            j->rhead = t->next;
            if (!j->rhead)
                j->rtail = NULL;
            j->nretrieve_waiting--;
            j->nretrieve_running++;
            j->idle--;
            worker_pool_submit(j->pool, &t->w);
            continue;
        }
        job_rec *r = pending_pop(j);
        if (!r)
            break;
        /* the worker marks it running in the store (WORKER_STARTED) */
        r->state = API_JOB_RUNNING;
        j->nrunning++;
        j->idle--;
        worker_pool_submit(j->pool, &r->w);
    }
}

static void finish_drain(jobs *j)
{
    if (j->drained)
        return;
    j->drained = 1;
    if (j->grace_active) {
        uv_timer_stop(&j->grace);
        j->grace_active = 0;
    }
    worker_pool_stop(j->pool);
    j->pool = NULL;
    j->owner.drained(j->owner.user);
}

static void maybe_drained(jobs *j)
{
    if (j->draining && j->nrunning == 0 && j->nretrieve_running == 0)
        finish_drain(j);
}

/* ---- worker events ---- */

static json_t *retrieval_json(server *s, const rtask *t)
{
    const gen_entry *ge = &s->gens.e[t->w.gen_index];
    api_retrieve_result res;
    memset(&res, 0, sizeof res);
    api_snprintf(res.generator_name, sizeof res.generator_name, "%s", ge->name);
    api_snprintf(res.generator_id, sizeof res.generator_id, "%s", ge->info->id);
    api_snprintf(res.dataset_fingerprint, sizeof res.dataset_fingerprint, "%s", t->w.dataset_fp);
    api_snprintf(res.zoo_fingerprint, sizeof res.zoo_fingerprint, "%s",
                 ge->info->zoo_fingerprint);
    res.nhits = t->w.nhits < API_MAX_HITS ? t->w.nhits : API_MAX_HITS;
    memcpy(res.hits, t->w.hits, (size_t)res.nhits * sizeof res.hits[0]);
    return api_retrieve_result_to_json(&res);
}

static void rtask_free(rtask *t)
{
    if (t->w.has_data)
        dataset_free(&t->w.data);
    free(t);
}

static void retrieve_done(jobs *j, rtask *t)
{
    j->nretrieve_running--;
    http_req *r = t->req;
    t->req = NULL;
    if (r && t->w.outcome == WORK_SUCCEEDED) {
        http_resume_json(r, 200, retrieval_json(j->s, t));
    } else if (r) {
        api_error e;
        api_fail(&e, 500, "internal", NULL, "retrieval failed: %s", t->w.error_message);
        http_resume_error(r, &e, 0);
    }
    rtask_free(t);
}

/* Another replica claimed it (or holds it since this one's lease ran out):
 * not ours; the store has its state, which the feed reads. */
static void job_taken(jobs *j, job_rec *r)
{
    j->nrunning--;
    server_log(j->s, LOG_DEBUG, "job taken by another replica",
               json_pack("{s:s, s:s}", "job_id", r->w.job_id, "reason", r->w.error_message));
    changed(j, r->w.job_id);
    rec_free(j, r);
}

static void job_done(jobs *j, job_rec *r)
{
    server *s = j->s;
    work_item *w = &r->w;
    if (w->outcome == WORK_TAKEN) {
        job_taken(j, r);
        return;
    }
    j->nrunning--;
    switch (w->outcome) {
    case WORK_SUCCEEDED: r->state = API_JOB_SUCCEEDED; break;
    case WORK_CANCELLED: r->state = API_JOB_CANCELLED; break;
    case WORK_REQUEUED: r->state = API_JOB_QUEUED; break;
    case WORK_STORE_FAILED:
        /* the worker gave up writing its outcome (shutdown while the store
         * was locked): it is 'running' in the store, re-run after a restart;
         * its pack file is gone */
        r->state = API_JOB_QUEUED;
        break;
    default: r->state = API_JOB_FAILED; break;
    }
    if (r->state != API_JOB_QUEUED) {
        histogram_observe(&s->metrics.generation, w->run_seconds);
        s->metrics.jobs_finished[r->state]++;
        j->avg_run = 0.9 * j->avg_run + 0.1 * w->run_seconds;
    }
    json_t *extra = json_pack("{s:f, s:f, s:f, s:i}", "seconds", w->run_seconds,
                              "generate_seconds", w->generate_seconds, "save_seconds",
                              w->save_seconds, "worker", w->worker);
    if (extra && w->error_code[0])
        json_object_set_new(extra, "error", json_string(w->error_message));
    log_job(j, r->state == API_JOB_FAILED || w->outcome == WORK_STORE_FAILED ? LOG_WARN : LOG_INFO,
            w->outcome == WORK_STORE_FAILED ? "job outcome not stored; it runs again after a restart"
            : r->state == API_JOB_QUEUED    ? "job requeued for shutdown"
                                            : "job finished",
            r, extra);
    changed(j, w->job_id);
    rec_free(j, r);
}

static void on_event(void *ctx, const worker_event *ev)
{
    jobs *j = ctx;
    if (ev->worker >= 0 && ev->worker < METRICS_MAX_WORKERS) {
        j->mem_used[ev->worker] = ev->mem_used;
        j->mem_total[ev->worker] = ev->mem_total;
    }
    switch (ev->kind) {
    case WORKER_READY:
        j->started++;
        j->idle++;
        if (j->started == j->nworkers)
            j->owner.workers_ready(j->owner.user);
        break;
    case WORKER_INIT_FAILED:
        j->owner.fatal(j->owner.user, "worker start failed", ev->message);
        return;
    case WORKER_STARTED: {
        job_rec *r = (job_rec *)ev->item;
        histogram_observe(&j->s->metrics.queue_wait,
                          (double)(api_now_ms() - r->created_ms) / 1000.0);
        wake_waiters(r);
        changed(j, r->w.job_id);
        return;
    }
    case WORKER_DONE:
        j->idle++;
        if (ev->item->kind == WORK_JOB)
            job_done(j, (job_rec *)ev->item);
        else
            retrieve_done(j, (rtask *)ev->item);
        break;
    default: break;
    }
    if (j->draining)
        maybe_drained(j);
    else
        dispatch(j);
}

/* ---- public ---- */

int jobs_create(jobs **out, server *s, const jobs_owner *owner, d2_error *err)
{
    jobs *j = calloc(1, sizeof *j);
    if (!j)
        return d2_fail(err, D2_ENOMEM, "jobs: out of memory");
    j->s = s;
    j->owner = *owner;
    j->nworkers = s->cfg->workers;
    j->avg_run = 1.0;
    j->fleet = store_is_postgres(s->db_path);
    if (uv_timer_init(s->loop, &j->grace) != 0) {
        free(j);
        return d2_fail(err, D2_EIO, "jobs: timer");
    }
    j->grace.data = j;
    *out = j;
    return 0;
}

int jobs_start_workers(jobs *j, d2_error *err)
{
    server *s = j->s;
    worker_config wc;
    memset(&wc, 0, sizeof wc);
    wc.workers = s->cfg->workers;
    wc.threads = config_backend_threads(s->cfg);
    api_snprintf(wc.device, sizeof wc.device, "%s", s->cfg->device);
    api_snprintf(wc.db_path, sizeof wc.db_path, "%s", s->db_path);
    api_snprintf(wc.store_password, sizeof wc.store_password, "%s", s->store_password);
    api_snprintf(wc.replica, sizeof wc.replica, "%s", s->replica);
    wc.lease_ms = s->cfg->store_lease_ms;
    api_snprintf(wc.checkpoint_dir, sizeof wc.checkpoint_dir, "%s", s->checkpoint_dir);
    wc.max_candidates = s->cfg->limits.max_candidates;
    wc.sync_full = s->cfg->sqlite_sync_full;
    return worker_pool_start(&j->pool, &wc, &s->gens, s->loop, on_event, j, err);
}

int jobs_enqueue(jobs *j, const api_job *job, int gen_index, d2_error *err)
{
    if (find(j, job->id))
        return 0; /* queued already (a restore and its submission both saw it) */
    job_rec *remote = find_any(j, job->id);
    if (remote)
        wake_waiters(remote); /* and freed: it is queued here now */
    job_rec *r = calloc(1, sizeof *r);
    if (!r)
        return d2_fail(err, D2_ENOMEM, "jobs: out of memory");
    work_item *w = &r->w;
    w->kind = WORK_JOB;
    w->gen_index = gen_index;
    api_snprintf(w->job_id, sizeof w->job_id, "%s", job->id);
    api_snprintf(w->dataset_id, sizeof w->dataset_id, "%s", job->dataset_id);
    w->embeddings = job->kind == API_KIND_EMBEDDINGS;
    w->candidates = job->candidates;
    w->steps = job->steps;
    w->sampler = job->sampler;
    w->guidance = (float)job->guidance;
    w->seed = (uint64_t)job->seed;
    w->gate = job->gate_requested;
    w->refine = job->refine_requested;
    api_snprintf(w->parent_checkpoint, sizeof w->parent_checkpoint, "%s", job->parent_checkpoint);
    atomic_init(&w->progress_ppm, 0);
    atomic_init(&w->cancel, 0);
    atomic_init(&w->shutdown, 0);
    r->state = API_JOB_QUEUED;
    r->priority = job->priority >= 0 && job->priority < PRIORITIES ? job->priority : 5;
    r->created_ms = job->created_ms;
    unsigned b = bucket_of(w->job_id);
    r->hnext = j->table[b];
    j->table[b] = r;
    pending_push(j, r);
    changed(j, w->job_id);
    dispatch(j);
    return 0;
}

/* Fail a queued job whose generator is not loaded (a write on the store
 * thread; a lock defers it). */
typedef struct unloaded_op {
    storeq_op sq;
    jobs *j;
    char id[API_ID_LEN];
    char msg[API_MESSAGE_LEN];
} unloaded_op;

static int unloaded_work(store *db, void *ctx, d2_error *err)
{
    unloaded_op *c = ctx;
    return store_job_finish(db, c->id, API_JOB_FAILED, "generator_unavailable", c->msg,
                            api_now_ms(), -1.0, err);
}

static void unloaded_done(storeq_op *sq)
{
    unloaded_op *c = (unloaded_op *)sq;
    if (sq->busy) {
        storeq_submit_after(c->j->s->storeq, sq, JOBS_STORE_RETRY_MS);
        return;
    }
    if (sq->rc != 0)
        server_log(c->j->s, LOG_WARN, "failing a job whose generator is not loaded: store error",
                   json_pack("{s:s, s:s}", "job_id", c->id, "error", sq->err.msg));
    else
        changed(c->j, c->id);
    free(c);
}

static void fail_unloaded(jobs *j, const api_job *job)
{
    server *s = j->s;
    server_log(s, LOG_WARN, "queued job failed: generator not loaded",
               json_pack("{s:s, s:s}", "job_id", job->id, "generator_id", job->generator_id));
    unloaded_op *c = calloc(1, sizeof *c);
    if (!c)
        return; /* it stays queued in the store: tried again at the next start */
    c->j = j;
    api_snprintf(c->id, sizeof c->id, "%s", job->id);
    api_snprintf(c->msg, sizeof c->msg, "generator %s (%s) is not loaded in this daemon",
                 job->generator_name, job->generator_id);
    storeq_submit(s->storeq, &c->sq, STOREQ_WRITE, unloaded_work, unloaded_done, c);
}

/* 0: skip the job (another generator's, or still loading), 1: queue it on
 * *g, 2: fail it. */
static int restore_action(const jobs *j, const api_job *job, int only, int *g)
{
    const gens *gs = &j->s->gens;
    int by_name = -1;
    for (int i = 0; i < gs->n; i++)
        if (!strcmp(gs->e[i].name, job->generator_name))
            by_name = i;
    /* the generator it named, when that one has the same file; else any with it */
    int same = by_name >= 0 && gs->e[by_name].state == GEN_READY &&
               !strcmp(gs->e[by_name].info->id, job->generator_id);
    *g = same ? by_name : gens_find_id(gs, job->generator_id);
    if (only == JOBS_ADOPT) {
        if (find(j, job->id) || (by_name >= 0 && gs->e[by_name].state != GEN_READY))
            return 0;
        return *g >= 0 ? 1 : 0;
    }
    if (only >= 0) {
        if (find(j, job->id))
            return 0; /* queued already */
        if (by_name == only)
            return same ? 1 : 2;
        return *g == only ? 1 : 0;
    }
    if (by_name >= 0 && gs->e[by_name].state != GEN_READY)
        return 0; /* it named a generator still loading: wait for it */
    return *g >= 0 ? 1 : 2;
}

typedef struct restore_op {
    storeq_op sq;
    jobs *j;
    int only;
    api_job *list;
    int n;
} restore_op;

static int restore_work(store *db, void *ctx, d2_error *err)
{
    restore_op *c = ctx;
    if (c->only == JOBS_ADOPT) /* the head of the shared queue is enough to dispatch */
        return store_jobs_queued_first(db, JOBS_ADOPT_HEAD * c->j->nworkers, &c->list, &c->n,
                                       err);
    return store_jobs_queued(db, &c->list, &c->n, err);
}

static void restore_jobs(jobs *j, const api_job *list, int n, int only)
{
    int restored = 0, waiting = 0;
    for (int i = 0; i < n; i++) {
        int g;
        int act = restore_action(j, &list[i], only, &g);
        d2_error err;
        d2_error_clear(&err);
        if (act == 1 && jobs_enqueue(j, &list[i], g, &err) != 0)
            server_log(j->s, LOG_ERROR, "queued job not restored",
                       json_pack("{s:s, s:s}", "job_id", list[i].id, "error", err.msg));
        restored += act == 1;
        if (act == 2)
            fail_unloaded(j, &list[i]);
        waiting += act == 0 && only == -1;
    }
    if (only == JOBS_ADOPT)
        return; /* every tick: quiet */
    if (restored > 0 || waiting > 0)
        server_log(j->s, LOG_INFO, "queued jobs restored",
                   json_pack("{s:i, s:i}", "count", restored, "waiting_for_generator", waiting));
}

static void restore_done(storeq_op *sq)
{
    restore_op *c = (restore_op *)sq;
    jobs *j = c->j;
    if (sq->busy && c->only != JOBS_ADOPT) { /* adoption: the next tick */
        storeq_submit_after(j->s->storeq, sq, JOBS_STORE_RETRY_MS);
        return;
    }
    if (sq->rc == 0)
        restore_jobs(j, c->list, c->n, c->only);
    for (int i = 0; i < c->n; i++)
        api_job_free(&c->list[i]);
    free(c->list);
    if (c->only == JOBS_ADOPT)
        j->adopting = 0;
    if (sq->rc != D2_ECANCELLED && c->only != JOBS_ADOPT && j->owner.restored)
        j->owner.restored(j->owner.user, c->only, sq->rc, sq->err.msg);
    free(c);
}

int jobs_restore(jobs *j, int only, d2_error *err)
{
    restore_op *c = calloc(1, sizeof *c);
    if (!c)
        return d2_fail(err, D2_ENOMEM, "jobs: out of memory");
    c->j = j;
    c->only = only;
    storeq_submit(j->s->storeq, &c->sq, STOREQ_READ, restore_work, restore_done, c);
    return 0;
}

int jobs_adopt(jobs *j, d2_error *err)
{
    if (j->adopting || j->draining)
        return 0;
    int rc = jobs_restore(j, JOBS_ADOPT, err);
    j->adopting = rc == 0;
    return rc;
}

void jobs_heard(jobs *j, const char *id, const char *state)
{
    api_job_state st;
    if (j->draining || api_job_state_parse(state, &st) != 0)
        return;
    job_rec *r = find_any(j, id);
    if (r && r->remote) {
        wake_waiters(r); /* and freed */
    } else if (r && r->state == API_JOB_QUEUED && st != API_JOB_QUEUED && !r->cancelling) {
        /* queued here too, but another replica has it now */
        pending_remove(j, r);
        rec_free(j, r);
    }
    changed(j, id); /* the feed reads the stored state */
    d2_error err;
    d2_error_clear(&err);
    if (st == API_JOB_QUEUED && jobs_adopt(j, &err) != 0)
        server_log(j->s, LOG_WARN, "adopting queued jobs failed",
                   json_pack("{s:s}", "error", err.msg));
}

int jobs_pending(const jobs *j) { return j->npending; }
int jobs_running(const jobs *j) { return j->nrunning; }
int jobs_long_polls(const jobs *j) { return j->nwaiters; }
int jobs_workers(const jobs *j) { return j->nworkers; }

void jobs_memory(const jobs *j, size_t *used, size_t *total, int max)
{
    for (int i = 0; i < max && i < METRICS_MAX_WORKERS; i++) {
        used[i] = j->mem_used[i];
        total[i] = j->mem_total[i];
    }
}

int jobs_retry_after(const jobs *j)
{
    double waves = (double)j->npending / (double)(j->nworkers > 0 ? j->nworkers : 1) + 1.0;
    double t = ceil(j->avg_run * waves);
    if (t < 1.0)
        t = 1.0;
    if (t > 3600.0)
        t = 3600.0;
    return (int)t;
}

void jobs_overlay(const jobs *j, api_job *job)
{
    const job_rec *r = find(j, job->id);
    if (r && r->state == API_JOB_RUNNING && job->state == API_JOB_RUNNING)
        job->progress = (double)atomic_load(&((job_rec *)r)->w.progress_ppm) / 1e6;
}

int jobs_state_of(const jobs *j, const char *id, api_job_state *state)
{
    const job_rec *r = find(j, id);
    if (r)
        *state = r->state;
    return r != NULL;
}

void jobs_progress_scan(jobs *j, double step,
                        void (*fn)(void *ctx, const char *job_id, double progress), void *ctx)
{
    int need = (int)(step * 1e6), left = j->nrunning;
    for (int b = 0; b < JOB_BUCKETS && left > 0; b++)
        for (job_rec *r = j->table[b]; r; r = r->hnext) {
            if (r->state != API_JOB_RUNNING || r->remote)
                continue;
            left--;
            int ppm = (int)atomic_load(&r->w.progress_ppm);
            if (ppm - r->sent_ppm >= need || (ppm == 1000000 && r->sent_ppm != ppm)) {
                r->sent_ppm = ppm;
                fn(ctx, r->w.job_id, (double)ppm / 1e6);
            }
        }
}

int jobs_cancel(jobs *j, const char *id)
{
    job_rec *r = find(j, id);
    if (!r)
        return D2_ENOTFOUND;
    if (r->cancelling)
        return 3;
    if (r->state == API_JOB_QUEUED) {
        pending_remove(j, r);
        r->cancelling = 1;
        return 0;
    }
    int none = WORK_CANCEL_NONE;
    if (!atomic_compare_exchange_strong(&r->w.cancel, &none, WORK_CANCEL_REQUESTED) &&
        none == WORK_CANCEL_FINISHING)
        return 2; /* generated already: it is writing its checkpoints */
    return 1;
}

void jobs_cancel_done(jobs *j, const char *id, int stored)
{
    job_rec *r = find(j, id);
    if (!r || !r->cancelling)
        return;
    r->cancelling = 0;
    if (!stored) { /* the store kept it queued: so does the queue */
        pending_push_front(j, r);
        if (!j->draining)
            dispatch(j);
        return;
    }
    r->state = API_JOB_CANCELLED;
    j->s->metrics.jobs_finished[API_JOB_CANCELLED]++;
    log_job(j, LOG_INFO, "job cancelled while queued", r, NULL);
    changed(j, id);
    rec_free(j, r);
}

void jobs_notify(jobs *j, const char *id)
{
    changed(j, id);
}

int jobs_retrieve(jobs *j, rtask *t, http_req *r)
{
    if (j->nretrieve_waiting >= j->s->cfg->max_queue)
        return D2_ERANGE;
    t->w.kind = WORK_RETRIEVE;
    t->req = r;
    t->next = NULL;
    if (j->rtail)
        j->rtail->next = t;
    else
        j->rhead = t;
    j->rtail = t;
    j->nretrieve_waiting++;
    http_suspend(r, rtask_release, t);
    dispatch(j);
    return 0;
}

static void on_grace(uv_timer_t *t)
{
    jobs *j = t->data;
    j->grace_active = 0;
    server_log(j->s, LOG_INFO, "shutdown grace over: stopping running jobs",
               json_pack("{s:i}", "running", j->nrunning));
    jobs_drain_now(j);
}

void jobs_drain(jobs *j, int grace)
{
    if (j->draining) {
        jobs_drain_now(j);
        return;
    }
    j->draining = 1;
    for (int b = 0; b < JOB_BUCKETS; b++)
        for (job_rec *r = j->table[b], *next; r; r = next) {
            next = r->hnext; /* a remote r goes with its waiters */
            wake_waiters(r);
        }
    while (j->rhead) {
        rtask *t = j->rhead;
        j->rhead = t->next;
        j->nretrieve_waiting--;
        if (t->req)
            rtask_release(t, t->req, 1);
        rtask_free(t);
    }
    j->rtail = NULL;
    if (j->nrunning == 0 && j->nretrieve_running == 0) {
        finish_drain(j);
        return;
    }
    if (grace > 0 && j->nrunning > 0) {
        j->grace_active = 1;
        uv_timer_start(&j->grace, on_grace, (uint64_t)grace * 1000, 0);
    } else {
        jobs_drain_now(j);
    }
}

void jobs_drain_now(jobs *j)
{
    if (j->grace_active) {
        uv_timer_stop(&j->grace);
        j->grace_active = 0;
    }
    for (int b = 0; b < JOB_BUCKETS; b++)
        for (job_rec *r = j->table[b]; r; r = r->hnext)
            if (r->state == API_JOB_RUNNING) {
                atomic_store(&r->w.shutdown, 1); /* before cancel: the worker reads it after */
                atomic_store(&r->w.cancel, 1);
            }
}

static void grace_closed(uv_handle_t *h)
{
    free(h->data);
}

void jobs_destroy(jobs *j)
{
    if (!j)
        return;
    worker_pool_stop(j->pool);
    j->pool = NULL;
    for (int b = 0; b < JOB_BUCKETS; b++) {
        job_rec *r = j->table[b];
        while (r) {
            job_rec *n = r->hnext;
            r->remote = 0; /* freed here, not by its last waiter */
            while (r->waiters)
                waiter_finish(r->waiters, 0);
            free(r);
            r = n;
        }
        j->table[b] = NULL;
    }
    while (j->rhead) {
        rtask *t = j->rhead;
        j->rhead = t->next;
        if (t->req)
            t->req->release = NULL; /* nothing holds the request any more */
        rtask_free(t);
    }
    uv_close((uv_handle_t *)&j->grace, grace_closed);
}
