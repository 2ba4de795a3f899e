/* fileio.c - whole-file reads with a size limit, and atomic writes
 * (temporary name in the same directory, fsync, rename, fsync the directory),
 * so a crash never leaves a half-written file under the final name. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fileio_write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync the directory holding path, so the rename itself is durable. */
int d2_sync_dir_of(const char *path, d2_error *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return d2_fail(err, D2_EINVAL, "%s: path too long", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return d2_fail(err, D2_EIO, "%s: cannot open directory %s: %s", path, dir,
                       strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems cannot fsync a directory; that is not an error. */
    if (rc != 0 && e != EINVAL && e != EROFS)
        return d2_fail(err, D2_EIO, "%s: fsync of directory %s failed: %s", path, dir,
                       strerror(e));
    return 0;
}

int d2_write_file_atomic(const char *path, const void *data, size_t len, d2_error *err)
{
    if (!path || !*path)
        return d2_fail(err, D2_EINVAL, "empty output path");
    if (!data && len > 0)
        return d2_fail(err, D2_EINVAL, "%s: NULL data", path);
    char tmp[PATH_MAX];
    /* pid and thread id: two writers of one path never share a temporary. */
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(),
                     (long)syscall(SYS_gettid));
    if (n < 0 || (size_t)n >= sizeof tmp)
        return d2_fail(err, D2_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return d2_fail(err, errno == ENOENT ? D2_ENOTFOUND : D2_EIO, "%s: cannot create %s: %s",
                       path, tmp, strerror(errno));
    if (fileio_write_all(fd, data, len) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return d2_fail(err, D2_EIO, "%s: write failed: %s", tmp, strerror(e));
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return d2_fail(err, D2_EIO, "%s: fsync failed: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return d2_fail(err, D2_EIO, "%s: close failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return d2_fail(err, D2_EIO, "%s: rename from %s failed: %s", path, tmp, strerror(e));
    }
    return d2_sync_dir_of(path, err);
}

int d2_read_file(const char *path, unsigned char **out, size_t *len, size_t max_len,
                 d2_error *err)
{
    *out = NULL;
    *len = 0;
    if (max_len == 0 || max_len > SIZE_MAX - 1)
        max_len = SIZE_MAX - 1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return d2_fail(err, errno == ENOENT ? D2_ENOTFOUND : D2_EIO, "%s: cannot open: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return d2_fail(err, D2_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return d2_fail(err, D2_EIO, "%s: is a directory", path);
    }
    size_t cap = 64 * 1024;
    if (S_ISREG(sb.st_mode)) {
        if ((uint64_t)sb.st_size > (uint64_t)max_len) {
            close(fd);
            return d2_fail(err, D2_ERANGE, "%s: file is %llu bytes, over the limit of %zu bytes",
                           path, (unsigned long long)sb.st_size, max_len);
        }
        cap = (size_t)sb.st_size + 1; /* +1: a read of 0 confirms the end */
    }
    unsigned char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return d2_fail(err, D2_ENOMEM, "%s: out of memory for %zu bytes", path, cap);
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > max_len) {
                free(buf);
                close(fd);
                return d2_fail(err, D2_ERANGE, "%s: file is over the limit of %zu bytes", path,
                               max_len);
            }
            size_t ncap = cap > (SIZE_MAX - 1) / 2 ? SIZE_MAX - 1 : cap * 2;
            if (ncap > max_len + 1)
                ncap = max_len + 1;
            unsigned char *p = realloc(buf, ncap);
            if (!p) {
                free(buf);
                close(fd);
                return d2_fail(err, D2_ENOMEM, "%s: out of memory for %zu bytes", path, ncap);
            }
            buf = p;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return d2_fail(err, D2_EIO, "%s: read failed at offset %zu: %s", path, n,
                           strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max_len) {
        free(buf);
        return d2_fail(err, D2_ERANGE, "%s: file is over the limit of %zu bytes", path, max_len);
    }
    /* NUL-terminate for text readers (the terminator is not counted in len). */
    if (n == cap) {
        unsigned char *p = realloc(buf, n + 1);
        if (!p) {
            free(buf);
            return d2_fail(err, D2_ENOMEM, "%s: out of memory", path);
        }
        buf = p;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}
