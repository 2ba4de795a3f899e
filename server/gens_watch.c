/* gens_watch.c - load --generator-pending generators when their files appear. */
#include "gens_watch.h"

#include <string.h>
#include <sys/stat.h>

#include "api.h"

#define WATCH_INTERVAL_MS 1000

void gens_watch_init(gens_watch *w, uv_loop_t *loop, gens *gs, const gens_watch_owner *owner)
{
    memset(w, 0, sizeof *w);
    w->gs = gs;
    w->loop = loop;
    w->owner = *owner;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->req.data = w;
    for (int i = 0; i < CONFIG_MAX_GENERATORS; i++)
        w->seen[i] = (gens_watch_seen){-1, -1, 0};
}

static void load_work(uv_work_t *req)
{
    gens_watch *w = req->data;
    d2_error_clear(&w->err);
    w->g = NULL;
    /* the path and gs->be are fixed since start-up; the loop writes no field
     * this reads while the load runs */
    w->rc = generator_load(&w->g, w->gs->e[w->index].path, w->gs->be, &w->err);
}

static void load_done(uv_work_t *req, int status)
{
    gens_watch *w = req->data;
    int i = w->index;
    w->busy = 0;
    if (status == 0 && w->rc == 0 && !w->closed) {
        gens_install(w->gs, i, w->g);
        w->g = NULL;
        w->owner.event(w->owner.user, GENS_WATCH_JOINED, i, NULL);
        return;
    }
    generator_free(w->g);
    w->g = NULL;
    if (w->closed)
        return;
    const char *why = status != 0 ? uv_strerror(status) : w->err.msg;
    gens_set_state(w->gs, i, GEN_FAILED, why);
    w->owner.event(w->owner.user, GENS_WATCH_FAILED, i, why);
}

/* 1 when entry i's file is unchanged since the last check and not tried. */
static int check_file(gens_watch *w, int i)
{
    gen_entry *e = &w->gs->e[i];
    gens_watch_seen *seen = &w->seen[i];
    struct stat st;
    if (stat(e->path, &st) != 0) {
        if (seen->size >= 0 || e->state == GEN_FAILED) {
            char msg[API_MESSAGE_LEN];
            api_snprintf(msg, sizeof msg, "waiting for the file %s", e->path);
            gens_set_state(w->gs, i, GEN_LOADING, msg);
        }
        *seen = (gens_watch_seen){-1, -1, 0};
        return 0;
    }
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    if ((int64_t)st.st_size != seen->size || mtime != seen->mtime_ns) {
        *seen = (gens_watch_seen){(int64_t)st.st_size, mtime, 0};
        return 0; /* changed since the last check: maybe still being written */
    }
    return !seen->tried;
}

static void on_timer(uv_timer_t *t)
{
    gens_watch *w = t->data;
    if (w->busy || w->closed)
        return;
    for (int i = 0; i < w->gs->n; i++) {
        gen_entry *e = &w->gs->e[i];
        if (!e->pending || e->state == GEN_READY || !check_file(w, i))
            continue;
        w->seen[i].tried = 1;
        w->index = i;
        int rc = uv_queue_work(w->loop, &w->req, load_work, load_done);
        if (rc != 0) {
            gens_set_state(w->gs, i, GEN_FAILED, uv_strerror(rc));
            w->owner.event(w->owner.user, GENS_WATCH_FAILED, i, uv_strerror(rc));
            continue;
        }
        w->busy = 1;
        char msg[API_MESSAGE_LEN];
        api_snprintf(msg, sizeof msg, "loading %s", e->path);
        gens_set_state(w->gs, i, GEN_LOADING, msg);
        w->owner.event(w->owner.user, GENS_WATCH_LOADING, i, NULL);
        return;
    }
}

void gens_watch_start(gens_watch *w)
{
    for (int i = 0; i < w->gs->n; i++)
        if (w->gs->e[i].pending) {
            uv_timer_start(&w->timer, on_timer, 0, WATCH_INTERVAL_MS);
            return;
        }
}

void gens_watch_close(gens_watch *w, uv_close_cb cb)
{
    if (w->closed)
        return;
    w->closed = 1;
    uv_close((uv_handle_t *)&w->timer, cb);
}
