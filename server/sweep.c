/* sweep.c - remove checkpoint packs that no stored checkpoint names. */
#include "sweep.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "j_<20 hex>.pack" -> 1 (pack), "j_<20 hex>.pack.tmp.*" -> 2 (temporary),
 * else 0; id gets the job id. */
static int pack_kind(const char *name, char id[API_ID_LEN])
{
    const char *dot = strstr(name, ".pack");
    if (!dot || (size_t)(dot - name) >= API_ID_LEN)
        return 0;
    memcpy(id, name, (size_t)(dot - name));
    id[dot - name] = '\0';
    if (!api_is_job_id(id))
        return 0;
    if (!strcmp(dot, ".pack"))
        return 1;
    return !strncmp(dot, ".pack.tmp.", 10) ? 2 : 0;
}

/* 1 when the store names no checkpoint of job id (its pack is an orphan). */
static int orphan(store *db, const char *id, int *is, d2_error *err)
{
    api_checkpoint *list = NULL;
    int n = 0;
    if (store_checkpoints_of_job(db, id, &list, &n, err) != 0)
        return D2_EIO;
    free(list);
    *is = n == 0;
    return 0;
}

int sweep_orphans(store *db, const char *dir, int *removed, d2_error *err)
{
    *removed = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : d2_fail(err, D2_EIO, "sweep %s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char id[API_ID_LEN];
        int kind = pack_kind(e->d_name, id), is = 1;
        if (kind == 0 || (kind == 1 && (rc = orphan(db, id, &is, err)) != 0) || !is)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0)
            (*removed)++;
        else if (errno != ENOENT)
            rc = d2_fail(err, D2_EIO, "sweep: remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}
