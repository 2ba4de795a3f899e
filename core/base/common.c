/* common.c - error codes, messages and the monotonic clock. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *d2_strerror(int code)
{
    switch (code) {
    case D2_OK: return "ok";
    case D2_EINVAL: return "invalid argument";
    case D2_ENOMEM: return "out of memory";
    case D2_EIO: return "i/o error";
    case D2_EFORMAT: return "malformed data";
    case D2_ERANGE: return "out of range";
    case D2_ECANCELLED: return "cancelled";
    case D2_EDEVICE: return "device error";
    case D2_ENOTFOUND: return "not found";
    case D2_EUNSUPPORTED: return "unsupported";
    default: return "unknown error";
    }
}

int d2_fail(d2_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int d2_wrap(d2_error *err, const char *fmt, ...)
{
    if (!err)
        return D2_EINVAL;
    char prefix[D2_ERRMSG_LEN];
    char old[D2_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    size_t np = strlen(prefix), no = strlen(old), cap = sizeof err->msg - 1;
    size_t at = 0;
    memcpy(err->msg, prefix, np < cap ? np : cap);
    at = np < cap ? np : cap;
    if (at + 2 <= cap) {
        memcpy(err->msg + at, ": ", 2);
        at += 2;
    }
    size_t take = no < cap - at ? no : cap - at;
    memcpy(err->msg + at, old, take);
    err->msg[at + take] = '\0';
    return err->code;
}

void d2_error_clear(d2_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

double d2_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
