/* zoo_merge.c - join the shards of a zoo build (zoo build --shard I/N) into
 * the zoo an unsharded build gives: check that the shards come from one build
 * (every field that decides what was trained, and the feature map's bytes),
 * that each of 0..N-1 is there once, then save the whole zoo into a fresh
 * folder that is renamed into place, so OUT appears complete or not at all. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "zoo_internal.h"

/* The first header field where a differs from the reference r, described
 * into why (empty when they agree). */
static void header_diff(const zoo *a, const zoo *r, char *why, size_t n)
{
    const target_train_cfg *x = &a->train, *y = &r->train;
    why[0] = '\0';
    if (strcmp(a->source, r->source))
        snprintf(why, n, "source '%.120s' (the other has '%.120s')", a->source, r->source);
    else if (strcmp(a->spec.text, r->spec.text))
        snprintf(why, n, "spec '%.120s' (the other has '%.120s')", a->spec.text, r->spec.text);
    else if (a->seed != r->seed)
        snprintf(why, n, "seed %llu (the other has %llu)", (unsigned long long)a->seed,
                 (unsigned long long)r->seed);
    else if (a->part.tasks != r->part.tasks)
        snprintf(why, n, "tasks %d (the other has %d)", a->part.tasks, r->part.tasks);
    else if (a->part.count != r->part.count)
        snprintf(why, n, "shard.of %d (the other has %d)", a->part.count, r->part.count);
    else if (a->way != r->way || a->min_way != r->min_way || a->per_class != r->per_class)
        snprintf(why, n, "way/min_way/per_class %d/%d/%d (the other has %d/%d/%d)", a->way,
                 a->min_way, a->per_class, r->way, r->min_way, r->per_class);
    else if (x->epochs != y->epochs || x->batch != y->batch || x->lr != y->lr ||
             x->weight_decay != y->weight_decay || x->min_steps != y->min_steps)
        snprintf(why, n, "train settings (epochs %d, batch %d, lr %g, weight_decay %g, "
                 "min_steps %d; the other has %d, %d, %g, %g, %d)", x->epochs, x->batch,
                 (double)x->lr, (double)x->weight_decay, x->min_steps, y->epochs, y->batch,
                 (double)y->lr, (double)y->weight_decay, y->min_steps);
    else if (strcmp(a->train_fp, r->train_fp) || strcmp(a->test_fp, r->test_fp))
        snprintf(why, n, "source_fingerprints (train %.16s..., the other has %.16s...)",
                 a->train_fp, r->train_fp);
}

/* Feature map, held-out combinations and class groups. */
static void content_diff(const zoo *a, const zoo *r, char *why, size_t n)
{
    const feature_map *f = &a->fmap, *g = &r->fmap;
    const char *fc = feature_map_cnn_sha256(f), *gc = feature_map_cnn_sha256(g);
    why[0] = '\0';
    if ((fc || gc) && (!fc || !gc || strcmp(fc, gc)))
        snprintf(why, n, "feature map backbone sha256 %.16s... (the other has %.16s...)",
                 fc ? fc : "none", gc ? gc : "none");
    else if (strcmp(a->part.fmap_sha256, r->part.fmap_sha256) || f->in_dim != g->in_dim ||
        f->out_dim != g->out_dim || (f->W == NULL) != (g->W == NULL))
        snprintf(why, n, "feature_map.sha256 %.16s... (the other has %.16s...)",
                 *a->part.fmap_sha256 ? a->part.fmap_sha256 : "none (identity)",
                 *r->part.fmap_sha256 ? r->part.fmap_sha256 : "none (identity)");
    else if (a->n_heldout != r->n_heldout ||
             (a->n_heldout && memcmp(a->heldout, r->heldout,
                                     sizeof *a->heldout * (size_t)a->n_heldout)))
        snprintf(why, n, "heldout (%d class combinations; the other has %d, or others)",
                 a->n_heldout, r->n_heldout);
    else if (a->ngroups != r->ngroups ||
             (a->ngroups && memcmp(a->groups, r->groups, sizeof *a->groups * (size_t)a->ngroups)))
        snprintf(why, n, "groups (%d; the other has %d, or others)", a->ngroups, r->ngroups);
}

static int check_shards(zoo *parts, const char *const *dirs, int ndirs, int *slot,
                        d2_error *err)
{
    const zoo *r = &parts[0];
    for (int j = 0; j < ndirs; j++) {
        const zoo *a = &parts[j];
        if (!a->part.count)
            return d2_fail(err, D2_EINVAL, "zoo merge: %s: a whole zoo, not a shard of a build "
                           "(its manifest.json has no \"shard\")", dirs[j]);
        if (!strcmp(a->source, "import"))
            return d2_fail(err, D2_EINVAL, "zoo merge: %s: source: an imported zoo has no "
                           "shards", dirs[j]);
        char why[384];
        header_diff(a, r, why, sizeof why);
        if (!*why)
            content_diff(a, r, why, sizeof why);
        if (*why)
            return d2_fail(err, D2_EINVAL, "zoo merge: %s (shard %d of %d) does not belong with "
                           "%s (shard %d of %d): %s", dirs[j], a->part.index, a->part.count,
                           dirs[0], r->part.index, r->part.count, why);
    }
    int N = r->part.count;
    for (int i = 0; i < N; i++)
        slot[i] = -1;
    for (int j = 0; j < ndirs; j++) {
        int i = parts[j].part.index;
        if (slot[i] >= 0)
            return d2_fail(err, D2_EINVAL, "zoo merge: %s and %s are both shard %d of %d "
                           "(shard.index given twice)", dirs[slot[i]], dirs[j], i, N);
        slot[i] = j;
    }
    for (int i = 0; i < N; i++)
        if (slot[i] < 0) {
            int first, rows;
            zoo_shard_range(r->part.tasks, i, N, &first, &rows);
            return d2_fail(err, D2_EINVAL, "zoo merge: shard %d of %d (tasks %d..%d) is missing: "
                           "%d of the %d shard folders given", i, N, first, first + rows - 1,
                           ndirs, N);
        }
    return 0;
}

static void *dup_mem(const void *p, size_t n)
{
    void *q = n ? malloc(n) : NULL;
    if (q)
        memcpy(q, p, n);
    return q;
}

/* The whole zoo from the checked shards, slot[i] = the part holding shard i. */
static int assemble(zoo *m, const zoo *parts, const int *slot, d2_error *err)
{
    const zoo *r = &parts[slot[0]];
    memset(m, 0, sizeof *m);
    snprintf(m->source, sizeof m->source, "%s", r->source);
    m->spec = r->spec;
    m->way = r->way;
    m->min_way = r->min_way;
    m->heldout_way = r->heldout_way;
    m->per_class = r->per_class;
    m->seed = r->seed;
    m->train = r->train;
    memcpy(m->train_fp, r->train_fp, sizeof m->train_fp);
    memcpy(m->test_fp, r->test_fp, sizeof m->test_fp);
    m->P = r->P;
    m->n = r->part.tasks;
    m->heldout = dup_mem(r->heldout, sizeof *r->heldout * (size_t)r->n_heldout);
    m->n_heldout = m->heldout ? r->n_heldout : 0;
    m->groups = dup_mem(r->groups, sizeof *r->groups * (size_t)r->ngroups);
    m->ngroups = m->groups ? r->ngroups : 0;
    m->e = calloc((size_t)m->n, sizeof *m->e);
    m->theta = malloc(sizeof(float) * (size_t)m->n * (size_t)m->P);
    if (m->n_heldout != r->n_heldout || m->ngroups != r->ngroups || !m->e || !m->theta) {
        zoo_free(m);
        return d2_fail(err, D2_ENOMEM, "zoo merge: out of memory for %d entries",
                       r->part.tasks);
    }
    int rc = feature_map_copy(&m->fmap, &r->fmap, err);
    if (rc) {
        zoo_free(m);
        return d2_wrap(err, "zoo merge: feature map");
    }
    for (int i = 0; i < r->part.count; i++) {
        const zoo *p = &parts[slot[i]];
        memcpy(m->e + p->part.first, p->e, sizeof *p->e * (size_t)p->n);
        memcpy(m->theta + (size_t)p->part.first * m->P, p->theta,
               sizeof(float) * (size_t)p->n * (size_t)m->P);
    }
    zoo_fingerprint(m, m->fingerprint);
    return 0;
}

/* Remove a flat folder this process made (its files, then itself). */
static void remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                char path[PATH_MAX + 264];
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* out must not exist, or be an empty folder (rename replaces an empty one). */
static int check_out(const char *out, d2_error *err)
{
    struct stat st;
    if (stat(out, &st) != 0)
        return errno == ENOENT ? 0 : d2_fail(err, D2_EIO, "zoo merge: --out %s: %s", out,
                                             strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return d2_fail(err, D2_EINVAL, "zoo merge: --out %s exists and is not a folder", out);
    DIR *d = opendir(out);
    if (!d)
        return d2_fail(err, D2_EIO, "zoo merge: --out %s: %s", out, strerror(errno));
    int entries = 0;
    for (struct dirent *de; (de = readdir(d));)
        entries += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return entries ? d2_fail(err, D2_EINVAL, "zoo merge: --out %s exists and is not empty "
                             "(merge writes a new zoo folder)", out) : 0;
}

/* Save m into OUT.merge.<pid>, then rename it to OUT. */
static int save_atomic(const zoo *m, const char *out_dir, d2_error *err)
{
    char out[PATH_MAX - 32], tmp[PATH_MAX];
    size_t len = strlen(out_dir);
    while (len > 1 && out_dir[len - 1] == '/')
        len--;
    if (len == 0 || len >= sizeof out)
        return d2_fail(err, D2_EINVAL, "zoo merge: --out '%s': bad folder name", out_dir);
    memcpy(out, out_dir, len);
    out[len] = '\0';
    int rc = check_out(out, err);
    if (rc)
        return rc;
    snprintf(tmp, sizeof tmp, "%s.merge.%ld", out, (long)getpid());
    if (mkdir(tmp, 0755) != 0)
        return d2_fail(err, D2_EIO, "zoo merge: cannot create %s: %s", tmp, strerror(errno));
    rc = zoo_save(m, tmp, err);
    if (!rc && rename(tmp, out) != 0)
        rc = d2_fail(err, D2_EIO, "zoo merge: cannot rename %s to %s: %s", tmp, out,
                     strerror(errno));
    if (rc) {
        remove_flat_dir(tmp);
        return rc;
    }
    return d2_sync_dir_of(out, err);
}

int zoo_merge(const char *const *dirs, int ndirs, const char *out_dir, zoo *merged,
              d2_error *err)
{
    if (merged)
        memset(merged, 0, sizeof *merged);
    if (!dirs || ndirs < 1 || !out_dir)
        return d2_fail(err, D2_EINVAL, "zoo merge: no shard folders");
    zoo *parts = calloc((size_t)ndirs, sizeof *parts);
    if (!parts)
        return d2_fail(err, D2_ENOMEM, "zoo merge: out of memory");
    int rc = 0, loaded = 0, *slot = NULL;
    for (; loaded < ndirs && !rc; loaded++)
        if ((rc = zoo_load_any(&parts[loaded], dirs[loaded], err)))
            d2_wrap(err, "zoo merge");
    if (!rc && parts[0].part.count > 0 && !(slot = malloc(sizeof(int) * parts[0].part.count)))
        rc = d2_fail(err, D2_ENOMEM, "zoo merge: out of memory");
    if (!rc)
        rc = check_shards(parts, dirs, ndirs, slot, err);
    zoo m;
    if (!rc && !(rc = assemble(&m, parts, slot, err))) {
        rc = save_atomic(&m, out_dir, err);
        if (!rc && merged)
            *merged = m;
        else
            zoo_free(&m);
    }
    for (int j = 0; j < loaded; j++)
        zoo_free(&parts[j]);
    free(parts);
    free(slot);
    return rc;
}
