/* zoo_build.c - build a zoo in-house: load a source, fit the feature map,
 * draw tasks (never a held-out combination), and train one target per task
 * on worker threads (one per core), with a progress bar. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "zoo_internal.h"

zoo_build_cfg zoo_build_defaults(void)
{
    zoo_build_cfg c = {.source = "fashion-mnist",
                       .feature = "pca:128",
                       .way = 5,
                       .tasks = 2000,
                       .per_class = 300,
                       .heldout_frac = 0.15f,
                       .seed = 1,
                       .threads = 0,
                       .progress = 0,
                       .train = target_train_defaults()};
    return c;
}

#define FEATURE_CNN (-2)

/* "pca:K" -> K, "identity" -> 0, "cnn:FILE" -> FEATURE_CNN; -1 when malformed. */
static int parse_feature(const char *s)
{
    if (!strcmp(s, "identity"))
        return 0;
    if (!strncmp(s, "cnn:", 4))
        return s[4] && !strchr(s, ' ') && strlen(s + 4) < 200 ? FEATURE_CNN : -1;
    if (strncmp(s, "pca:", 4) || !s[4])
        return -1;
    long k = 0;
    for (const char *p = s + 4; *p; p++) {
        if (*p < '0' || *p > '9' || k > 1000000)
            return -1;
        k = k * 10 + (*p - '0');
    }
    return k >= 1 && k <= 1000000 ? (int)k : -1;
}

static int check_cfg(const zoo_build_cfg *cfg, d2_error *err)
{
    if (!cfg->source || !*cfg->source)
        return d2_fail(err, D2_EINVAL, "zoo build: no source");
    if (strlen(cfg->source) >= sizeof(((zoo *)0)->source))
        return d2_fail(err, D2_EINVAL, "zoo build: source name too long");
    if (!cfg->feature || parse_feature(cfg->feature) == -1)
        return d2_fail(err, D2_EINVAL, "zoo build: feature '%s' (expected pca:K, cnn:FILE or "
                       "identity)",
                       cfg->feature ? cfg->feature : "");
    if (cfg->way < 2 || cfg->way > D2_MAX_WAY)
        return d2_fail(err, D2_EINVAL, "zoo build: way %d outside 2..%d", cfg->way, D2_MAX_WAY);
    if (cfg->min_way != 0 && (cfg->min_way < 2 || cfg->min_way > cfg->way))
        return d2_fail(err, D2_EINVAL, "zoo build: min-way %d outside 2..%d (the way)",
                       cfg->min_way, cfg->way);
    if (cfg->tasks < 1 || cfg->tasks > 10000000)
        return d2_fail(err, D2_EINVAL, "zoo build: %d tasks outside 1..10000000", cfg->tasks);
    if (cfg->per_class < 1)
        return d2_fail(err, D2_EINVAL, "zoo build: per-class %d must be positive",
                       cfg->per_class);
    if (!(cfg->heldout_frac >= 0.0f && cfg->heldout_frac < 1.0f))
        return d2_fail(err, D2_EINVAL, "zoo build: held-out fraction %g outside [0, 1)",
                       (double)cfg->heldout_frac);
    const target_train_cfg *t = &cfg->train;
    if (t->epochs < 1 || t->batch < 1 || !(t->lr > 0.0f) || !isfinite(t->lr) ||
        !(t->weight_decay >= 0.0f))
        return d2_fail(err, D2_EINVAL, "zoo build: training settings (epochs %d, batch %d, lr %g, "
                       "weight decay %g) out of range", t->epochs, t->batch, (double)t->lr,
                       (double)t->weight_decay);
    if (cfg->shard_count < 0 || cfg->shard_count > cfg->tasks ||
        (cfg->shard_count > 0 && (cfg->shard_index < 0 || cfg->shard_index >= cfg->shard_count)))
        return d2_fail(err, D2_EINVAL, "zoo build: shard %d/%d: need 0 <= I < N <= tasks (%d)",
                       cfg->shard_index, cfg->shard_count, cfg->tasks);
    return 0;
}

void zoo_shard_range(int tasks, int index, int count, int *first, int *rows)
{
    long long a = (long long)index * tasks / count, b = (long long)(index + 1) * tasks / count;
    *first = (int)a;
    *rows = (int)(b - a);
}

/* Entries' classes and seeds: all tasks, or the shard's range of them with
 * the seeds the whole build gives those tasks. */
static int draw_entries(zoo *z, const zoo_build_cfg *cfg, int classes, d2_error *err)
{
    z->n = cfg->tasks;
    if (cfg->shard_count > 0) {
        z->part.count = cfg->shard_count;
        z->part.index = cfg->shard_index;
        z->part.tasks = cfg->tasks;
        zoo_shard_range(cfg->tasks, cfg->shard_index, cfg->shard_count, &z->part.first, &z->n);
    }
    z->e = calloc((size_t)z->n, sizeof *z->e);
    z->theta = calloc((size_t)z->n * (size_t)z->P, sizeof(float));
    if (!z->e || !z->theta)
        return d2_fail(err, D2_ENOMEM, "zoo build: out of memory for %d entries", z->n);
    for (int i = 0; i < z->n; i++) {
        zoo_entry *e = &z->e[i];
        e->seed = rng_derive(cfg->seed, "zoo-task", (uint64_t)(z->part.first + i));
        e->way = zoo_entry_way(z, e->seed);
        int rc = zoo_draw_classes(z, classes, e->seed, e->way, e->classes, err);
        if (rc)
            return rc;
        e->train_acc = e->query_acc = e->query_loss = NAN;
    }
    return 0;
}

static int map_split(zoo *z, const dataset *raw, dataset *feat, class_index *ci, char fp[65],
                     const char *what, d2_error *err)
{
    int rc = feature_map_apply(&z->fmap, raw, feat, err);
    if (rc)
        return d2_wrap(err, "zoo: %s split", what);
    feat->classes = raw->classes;
    if ((rc = class_index_build(ci, feat, err)))
        return d2_wrap(err, "zoo: %s split", what);
    dataset_fingerprint(feat, fp);
    return 0;
}

/* the backbone of cnn:PATH as the zoo's feature map; it must take the source's rows */
static int load_cnn(zoo *z, const char *path, int D, d2_error *err)
{
    int rc = feature_map_load_cnn(&z->fmap, path, err);
    if (rc)
        return d2_wrap(err, "zoo build");
    if (z->fmap.in_dim != D)
        return d2_fail(err, D2_EINVAL, "zoo build: cnn:%s takes %d values per row; the source "
                       "has %d", path, z->fmap.in_dim, D);
    return 0;
}

int zoo_prepare(zoo *z, const zoo_build_cfg *cfg, d2_error *err)
{
    memset(z, 0, sizeof *z);
    int rc = check_cfg(cfg, err);
    if (rc)
        return rc;
    data_source src;
    if ((rc = data_source_load(&src, cfg->source, err)))
        return rc;
    int C = src.train.classes, D = src.train.dim, k = parse_feature(cfg->feature);
    if (C < cfg->way) {
        rc = d2_fail(err, D2_EINVAL, "zoo build: source '%s' has %d classes, fewer than the "
                     "way %d", cfg->source, C, cfg->way);
        goto fail;
    }
    if (src.test.dim != D || src.test.classes > C) {
        rc = d2_fail(err, D2_EFORMAT, "zoo build: source '%s' test split (%d features, %d "
                     "classes) does not match its train split (%d, %d)", cfg->source,
                     src.test.dim, src.test.classes, D, C);
        goto fail;
    }
    if (k > D) {
        rc = d2_fail(err, D2_EINVAL, "zoo build: pca:%d asks for more components than the "
                     "source's %d features", k, D);
        goto fail;
    }
    snprintf(z->source, sizeof z->source, "%s", cfg->source);
    z->way = cfg->way;
    z->min_way = cfg->min_way > 0 ? cfg->min_way : cfg->way;
    z->per_class = cfg->per_class;
    z->seed = cfg->seed;
    z->train = cfg->train;
    z->train.seed = 0; /* per entry, derived */
    char spec[300];
    if (k == FEATURE_CNN && (rc = load_cnn(z, cfg->feature + 4, D, err)))
        goto fail;
    if (k == FEATURE_CNN)
        snprintf(spec, sizeof spec, "%s | linear %d->%d", cfg->feature, z->fmap.out_dim,
                 cfg->way);
    else if (k > 0)
        snprintf(spec, sizeof spec, "pca:%d | linear %d->%d", k, k, cfg->way);
    else
        snprintf(spec, sizeof spec, "linear %d->%d", D, cfg->way);
    if ((rc = target_spec_parse(&z->spec, spec, err)))
        goto fail;
    z->P = (int)z->spec.numel;
    rc = k > 0 ? feature_map_fit_pca(&z->fmap, &src.train, k, err)
         : k == 0 ? feature_map_identity(&z->fmap, D, err) : 0;
    if (rc)
        goto fail;
    if ((rc = map_split(z, &src.train, &z->train_feat, &z->train_ci, z->train_fp, "train", err)) ||
        (rc = map_split(z, &src.test, &z->test_feat, &z->test_ci, z->test_fp, "test", err)))
        goto fail;
    z->has_data = 1;
    rc = zoo_groups_from_source(z, &src, err);
    data_source_free(&src);
    if (rc)
        goto fail_z;
    for (int c = 0; c < C; c++)
        if (c >= z->test_ci.classes || z->test_ci.count[c] == 0 || z->train_ci.count[c] == 0) {
            rc = d2_fail(err, D2_EINVAL, "zoo build: class %d of source '%s' has no %s samples",
                         c, cfg->source, c < z->train_ci.classes && z->train_ci.count[c] ? "test"
                                                                                        : "train");
            goto fail_z;
        }
    if ((rc = zoo_draw_heldout(z, z->ngroups ? z->groups[0].count : C, cfg->heldout_frac,
                               cfg->seed, err)))
        goto fail_z;
    if ((rc = draw_entries(z, cfg, C, err)))
        goto fail_z;
    return 0;
fail:
    data_source_free(&src);
fail_z:
    zoo_free(z);
    return rc;
}

/* ---- training on worker threads ---- */

typedef struct build_shared {
    zoo *z;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int next, done, running, stop;
    int rc;
    d2_error err;
} build_shared;

/* Train and evaluate entry i. */
static int train_entry(zoo *z, int i, d2_error *err)
{
    zoo_entry *e = &z->e[i];
    task t = {.way = e->way};
    memcpy(t.classes, e->classes, sizeof(int) * (size_t)e->way);
    dataset tr, q;
    rng r;
    rng_init(&r, rng_derive(e->seed, "zoo-data", 0), 0);
    int rc = task_draw(&z->train_feat, &z->train_ci, &t, z->per_class, &r, &tr, err);
    if (rc)
        return d2_wrap(err, "zoo entry %d", z->part.first + i);
    dataset_fingerprint(&tr, e->data_fp);
    target_train_cfg cfg = z->train;
    cfg.seed = rng_derive(e->seed, "zoo-train", 0);
    float *theta = z->theta + (size_t)i * z->P;
    rc = target_train(&z->spec, &tr, theta, 0, &cfg, err);
    target_zero_rows_from(&z->spec, e->way, theta); // the rows no class of the task trained
    if (!rc)
        rc = target_eval(&z->spec, theta, &tr, &e->train_acc, NULL, err);
    dataset_free(&tr);
    if (!rc && !(rc = zoo_gather_all(&z->test_feat, &z->test_ci, &t, &q, err))) {
        rc = target_eval(&z->spec, theta, &q, &e->query_acc, &e->query_loss, err);
        dataset_free(&q);
    }
    return rc ? d2_wrap(err, "zoo entry %d", z->part.first + i) : 0;
}

static void *build_worker(void *arg)
{
    build_shared *sh = arg;
    d2_error err = {0};
    for (;;) {
        pthread_mutex_lock(&sh->mu);
        int i = sh->stop || sh->next >= sh->z->n ? -1 : sh->next++;
        pthread_mutex_unlock(&sh->mu);
        if (i < 0)
            break;
        int rc = train_entry(sh->z, i, &err);
        pthread_mutex_lock(&sh->mu);
        if (rc && !sh->rc) {
            sh->rc = rc;
            sh->err = err;
            sh->stop = 1;
        }
        sh->done++;
        pthread_cond_signal(&sh->cv);
        pthread_mutex_unlock(&sh->mu);
    }
    pthread_mutex_lock(&sh->mu);
    sh->running--;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
    return NULL;
}

int zoo_train_entries(zoo *z, int threads, int show_progress, d2_error *err)
{
    if (!z || !z->has_data || z->entry_feat || !z->e || !z->theta)
        return d2_fail(err, D2_EINVAL, "zoo_train_entries: the zoo is not prepared");
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)nc : 1;
    }
    if (threads > z->n)
        threads = z->n;
    if (threads > 256)
        threads = 256;
    build_shared sh = {.z = z};
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    /* each worker calls single-threaded BLAS; restore the setting afterwards */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    pthread_t tid[256];
    int started = 0;
    for (; started < threads; started++) {
        pthread_mutex_lock(&sh.mu);
        sh.running++;
        pthread_mutex_unlock(&sh.mu);
        if (pthread_create(&tid[started], NULL, build_worker, &sh)) {
            pthread_mutex_lock(&sh.mu);
            sh.running--;
            pthread_mutex_unlock(&sh.mu);
            break;
        }
    }
    progress bar;
    progress_begin(&bar, "zoo build", "heads", z->n, show_progress);
    if (started == 0) {
        /* no thread could start: do the work on this one */
        sh.running = 1;
        build_worker(&sh);
    }
    pthread_mutex_lock(&sh.mu);
    while (sh.running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&sh.cv, &sh.mu, &ts);
        int done = sh.done;
        pthread_mutex_unlock(&sh.mu);
        progress_update(&bar, done, NULL);
        pthread_mutex_lock(&sh.mu);
    }
    pthread_mutex_unlock(&sh.mu);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    openblas_set_num_threads(blas_threads);
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv);
    progress_end(&bar, sh.done, sh.rc ? "failed" : NULL);
    if (sh.rc) {
        if (err)
            *err = sh.err;
        return sh.rc;
    }
    zoo_fingerprint(z, z->fingerprint);
    return 0;
}

int zoo_build(zoo *z, const zoo_build_cfg *cfg, d2_error *err)
{
    int rc = zoo_prepare(z, cfg, err);
    if (rc)
        return rc;
    if ((rc = zoo_train_entries(z, cfg->threads, cfg->progress, err)))
        zoo_free(z);
    return rc;
}
