/* fileio.h - whole-file reads with a size limit, and atomic writes: a
 * temporary name in the same directory, fsync, rename, fsync the directory,
 * so a crash never leaves a half-written file under the final name. */
#ifndef D2_FILEIO_H
#define D2_FILEIO_H

#include <stddef.h>

#include "common.h"

/* Write PATH atomically (PATH.tmp.<pid>.<tid>, fsync, rename, fsync the directory). */
int d2_write_file_atomic(const char *path, const void *data, size_t len, d2_error *err);
/* fsync the directory that holds path (after a rename into it, so the rename
 * is durable); a file system that cannot fsync a directory is no error. */
int d2_sync_dir_of(const char *path, d2_error *err);
/* Read a whole file (caller frees *out). Fails with D2_ERANGE when the file
 * is longer than max_len bytes (max_len 0: no limit). The buffer is
 * NUL-terminated (the NUL is not counted in *len), so text can be parsed in place. */
int d2_read_file(const char *path, unsigned char **out, size_t *len, size_t max_len,
                 d2_error *err);

#endif
