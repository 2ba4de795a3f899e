/* common.h - error codes and error messages shared by every module.
 *
 * Convention (DESIGN section 5): functions return 0 on success or a negative
 * D2_E* code, and fill a d2_error with a human-readable message that names
 * the problem (file, field, offset...). No exit() outside main. */
#ifndef D2_COMMON_H
#define D2_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    D2_OK = 0,
    D2_EINVAL = -1,     /* bad argument or bad input data */
    D2_ENOMEM = -2,     /* allocation failed */
    D2_EIO = -3,        /* read/write/open failed */
    D2_EFORMAT = -4,    /* malformed file or payload */
    D2_ERANGE = -5,     /* value or size out of the allowed range */
    D2_ECANCELLED = -6, /* stopped by a cancel flag */
    D2_EDEVICE = -7,    /* backend / device failure */
    D2_ENOTFOUND = -8,  /* missing file, tensor, key */
    D2_EUNSUPPORTED = -9
};

#define D2_ERRMSG_LEN 512

typedef struct d2_error {
    int code;
    char msg[D2_ERRMSG_LEN];
} d2_error;

/* Short name of an error code ("invalid argument", ...). Never NULL. */
const char *d2_strerror(int code);

/* Fill *err (may be NULL) with code and a printf-style message; returns code
 * so callers can write `return d2_fail(err, D2_EINVAL, "...", ...);`. */
int d2_fail(d2_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "ctx: old message". Returns err->code. */
int d2_wrap(d2_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void d2_error_clear(d2_error *err);

/* Monotonic clock in seconds. */
double d2_now(void);

/* Library version string, e.g. "0.1.0". */
#define D2_VERSION "0.1.0"

#endif
