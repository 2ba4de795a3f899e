/* sqlfault.h - fault injection for SQLite, for the tests (as SQLite's own
 * test suite does it):
 *   - fault_vfs_init: a shim VFS (register it, then open a database through
 *     it with a URI filename "file:PATH?vfs=d2fault") that wraps the default
 *     VFS and, while armed, fails xWrite / xSync / xTruncate and the opening
 *     of a journal or WAL with SQLITE_IOERR_* (FAULT_IOERR), or xWrite with
 *     SQLITE_FULL (FAULT_FULL), after `after` successful counted calls: once,
 *     or every call from then on (persistent). xSync is counted but not
 *     passed on: the tests are about error paths, not power loss.
 *   - oom_install / oom_remove: SQLite's allocator wrapped by one that,
 *     while armed, fails allocation number `after` (or every one from it on).
 * Both count the events they could fail while armed (calls), so a caller
 * can first count a fault-free run and then sweep `after` over it. */
#ifndef D2_SQLFAULT_H
#define D2_SQLFAULT_H

#include <sqlite3.h>
#include <string.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* the fault VFS                                                       */

enum { FAULT_IOERR = 0, FAULT_FULL = 1 };

typedef struct fault_state {
    sqlite3_vfs *root; /* the VFS it wraps */
    int armed;
    int mode;          /* FAULT_IOERR: write, sync, truncate, open journal/WAL;
                          FAULT_FULL: write only, as SQLITE_FULL */
    int persistent;    /* 1: every counted call from the first failure on fails */
    long after;        /* counted calls that succeed before the first failure */
    long calls;        /* counted calls since armed */
    long injected;     /* failures injected since armed */
} fault_state;

typedef struct fault_file {
    sqlite3_file base;
    fault_state *fs;
    sqlite3_file *real; /* the wrapped VFS's file, right after this struct */
} fault_file;

static inline int fault_hit(fault_state *fs)
{
    if (!fs->armed)
        return 0;
    long i = fs->calls++;
    int hit = fs->persistent ? i >= fs->after : i == fs->after;
    fs->injected += hit;
    return hit;
}

static inline sqlite3_file *real_of(sqlite3_file *f)
{
    return ((fault_file *)f)->real;
}

static inline int ff_close(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xClose(r);
}

static inline int ff_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xRead(r, buf, n, off);
}

static inline int ff_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    fault_file *ff = (fault_file *)f;
    if (fault_hit(ff->fs))
        return ff->fs->mode == FAULT_FULL ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    return ff->real->pMethods->xWrite(ff->real, buf, n, off);
}

static inline int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    fault_file *ff = (fault_file *)f;
    if (ff->fs->mode == FAULT_IOERR && fault_hit(ff->fs))
        return SQLITE_IOERR_TRUNCATE;
    return ff->real->pMethods->xTruncate(ff->real, size);
}

/* Counted, but not passed on: these tests are about error paths, not power
 * loss, and thousands of fsyncs would make them slow. */
static inline int ff_sync(sqlite3_file *f, int flags)
{
    fault_file *ff = (fault_file *)f;
    (void)flags;
    if (ff->fs->mode == FAULT_IOERR && fault_hit(ff->fs))
        return SQLITE_IOERR_FSYNC;
    return SQLITE_OK;
}

static inline int ff_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFileSize(r, size);
}

static inline int ff_lock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xLock(r, lock);
}

static inline int ff_unlock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xUnlock(r, lock);
}

static inline int ff_check_reserved(sqlite3_file *f, int *out)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xCheckReservedLock(r, out);
}

static inline int ff_file_control(sqlite3_file *f, int op, void *arg)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFileControl(r, op, arg);
}

static inline int ff_sector_size(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xSectorSize(r);
}

static inline int ff_device_characteristics(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xDeviceCharacteristics(r);
}

static inline int ff_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xShmMap(r, region, size, extend, pp);
}

static inline int ff_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xShmLock(r, offset, n, flags);
}

static inline void ff_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    r->pMethods->xShmBarrier(r);
}

static inline int ff_shm_unmap(sqlite3_file *f, int del)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xShmUnmap(r, del);
}

static inline int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFetch(r, off, n, pp);
}

static inline int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods FAULT_IO = {
    3,
    ff_close,
    ff_read,
    ff_write,
    ff_truncate,
    ff_sync,
    ff_file_size,
    ff_lock,
    ff_unlock,
    ff_check_reserved,
    ff_file_control,
    ff_sector_size,
    ff_device_characteristics,
    ff_shm_map,
    ff_shm_lock,
    ff_shm_barrier,
    ff_shm_unmap,
    ff_fetch,
    ff_unfetch,
};

static inline fault_state *fs_of(sqlite3_vfs *v)
{
    return v->pAppData;
}

static inline int fv_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags,
                          int *out_flags)
{
    fault_state *fs = fs_of(v);
    fault_file *ff = (fault_file *)f;
    ff->base.pMethods = NULL;
    ff->fs = fs;
    ff->real = (sqlite3_file *)(ff + 1);
    memset(ff->real, 0, (size_t)fs->root->szOsFile);
    const int side = SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUBJOURNAL |
                     SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL;
    if ((flags & side) && fs->mode == FAULT_IOERR && fault_hit(fs))
        return SQLITE_CANTOPEN;
    int rc = fs->root->xOpen(fs->root, name, ff->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (ff->real->pMethods)
            ff->real->pMethods->xClose(ff->real);
        return rc;
    }
    ff->base.pMethods = &FAULT_IO;
    return SQLITE_OK;
}

static inline int fv_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xDelete(r, name, sync_dir);
}

static inline int fv_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xAccess(r, name, flags, out);
}

static inline int fv_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xFullPathname(r, name, n, out);
}

static inline void *fv_dlopen(sqlite3_vfs *v, const char *name)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xDlOpen(r, name);
}

static inline void fv_dlerror(sqlite3_vfs *v, int n, char *msg)
{
    sqlite3_vfs *r = fs_of(v)->root;
    r->xDlError(r, n, msg);
}

static inline void (*fv_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xDlSym(r, h, sym);
}

static inline void fv_dlclose(sqlite3_vfs *v, void *h)
{
    sqlite3_vfs *r = fs_of(v)->root;
    r->xDlClose(r, h);
}

static inline int fv_randomness(sqlite3_vfs *v, int n, char *out)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xRandomness(r, n, out);
}

static inline int fv_sleep(sqlite3_vfs *v, int us)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xSleep(r, us);
}

static inline int fv_current_time(sqlite3_vfs *v, double *t)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xCurrentTime(r, t);
}

static inline int fv_last_error(sqlite3_vfs *v, int n, char *msg)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xGetLastError(r, n, msg);
}

static inline int fv_current_time64(sqlite3_vfs *v, sqlite3_int64 *t)
{
    sqlite3_vfs *r = fs_of(v)->root;
    return r->xCurrentTimeInt64(r, t);
}

static inline void fault_vfs_init(sqlite3_vfs *v, fault_state *fs)
{
    memset(fs, 0, sizeof *fs);
    fs->root = sqlite3_vfs_find(NULL);
    assert_non_null(fs->root);
    memset(v, 0, sizeof *v);
    v->iVersion = 2;
    v->szOsFile = (int)sizeof(fault_file) + fs->root->szOsFile;
    v->mxPathname = fs->root->mxPathname;
    v->zName = "d2fault";
    v->pAppData = fs;
    v->xOpen = fv_open;
    v->xDelete = fv_delete;
    v->xAccess = fv_access;
    v->xFullPathname = fv_full_pathname;
    v->xDlOpen = fv_dlopen;
    v->xDlError = fv_dlerror;
    v->xDlSym = fv_dlsym;
    v->xDlClose = fv_dlclose;
    v->xRandomness = fv_randomness;
    v->xSleep = fv_sleep;
    v->xCurrentTime = fv_current_time;
    v->xGetLastError = fv_last_error;
    v->xCurrentTimeInt64 = fv_current_time64;
}

/* ------------------------------------------------------------------ */
/* the failing allocator                                               */

typedef struct oom_state {
    sqlite3_mem_methods real; /* SQLite's allocator, which this one wraps */
    sqlite3_mem_methods mine;
    int armed, persistent;
    long after, calls, injected;
} oom_state;

/* The one file-scope variable of this program: SQLite's xMalloc/xRealloc
 * take no context pointer. Set only between oom_install and oom_remove. */
static oom_state *oom_current;

static inline int oom_hit(void)
{
    oom_state *o = oom_current;
    if (!o || !o->armed)
        return 0;
    long i = o->calls++;
    int hit = o->persistent ? i >= o->after : i == o->after;
    o->injected += hit;
    return hit;
}

static inline void *oom_malloc(int n)
{
    return oom_hit() ? NULL : oom_current->real.xMalloc(n);
}

static inline void oom_free(void *p)
{
    oom_current->real.xFree(p);
}

static inline void *oom_realloc(void *p, int n)
{
    return oom_hit() ? NULL : oom_current->real.xRealloc(p, n);
}

static inline int oom_size(void *p)
{
    return oom_current->real.xSize(p);
}

static inline int oom_roundup(int n)
{
    return oom_current->real.xRoundup(n);
}

static inline int oom_init(void *app)
{
    oom_state *o = app;
    return o->real.xInit(o->real.pAppData);
}

static inline void oom_shutdown(void *app)
{
    oom_state *o = app;
    o->real.xShutdown(o->real.pAppData);
}

/* Swap SQLite's allocator for the failing one: only between
 * sqlite3_shutdown and sqlite3_initialize, with no connection open. */
static inline void oom_install(oom_state *o, sqlite3_vfs *vfs)
{
    memset(o, 0, sizeof *o);
    assert_int_equal(sqlite3_shutdown(), SQLITE_OK);
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &o->real), SQLITE_OK);
    assert_non_null(o->real.xMalloc);
    o->mine = (sqlite3_mem_methods){oom_malloc, oom_free,   oom_realloc, oom_size,
                                    oom_roundup, oom_init, oom_shutdown, o};
    oom_current = o;
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &o->mine), SQLITE_OK);
    assert_int_equal(sqlite3_initialize(), SQLITE_OK);
    assert_int_equal(sqlite3_vfs_register(vfs, 0), SQLITE_OK);
}

static inline void oom_remove(oom_state *o, sqlite3_vfs *vfs)
{
    assert_int_equal(sqlite3_shutdown(), SQLITE_OK);
    assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &o->real), SQLITE_OK);
    oom_current = NULL;
    assert_int_equal(sqlite3_initialize(), SQLITE_OK);
    assert_int_equal(sqlite3_vfs_register(vfs, 0), SQLITE_OK);
}

#endif
