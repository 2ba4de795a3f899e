/* backend.c - choose a backend from a device string; shared helpers. */
#include "backend.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* "cuda" -> 0, "cuda:N" -> N; -1 when the suffix is not a small non-negative integer */
static int backend_parse_cuda_index(const char *device)
{
    if (device[4] == '\0')
        return 0;
    if (device[4] != ':' || device[5] < '0' || device[5] > '9')
        return -1;
    errno = 0;
    char *end = NULL;
    long v = strtol(device + 5, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > INT_MAX)
        return -1;
    return (int)v;
}

int backend_create(backend_t **out, const char *device, int threads, d2_error *err)
{
    if (!out)
        return d2_fail(err, D2_EINVAL, "backend_create: out is NULL");
    *out = NULL;
    if (!device || strcmp(device, "cpu") == 0)
        return backend_cpu_create(out, threads, err);
    if (strncmp(device, "cuda", 4) == 0) {
        int index = backend_parse_cuda_index(device);
        if (index < 0)
            return d2_fail(err, D2_EINVAL,
                           "device \"%s\": expected \"cpu\", \"cuda\" or \"cuda:N\"", device);
#ifdef D2_WITH_CUDA
        return backend_cuda_create(out, index, err);
#else
        return d2_fail(err, D2_EUNSUPPORTED,
                       "device \"%s\": this build has no CUDA backend; rebuild with make CUDA=1",
                       device);
#endif
    }
    return d2_fail(err, D2_EINVAL, "device \"%s\": expected \"cpu\", \"cuda\" or \"cuda:N\"",
                   device);
}

void backend_destroy(backend_t *be)
{
    if (!be)
        return;
    if (be->ops && be->ops->destroy)
        be->ops->destroy(be);
    else
        free(be);
}

const char *backend_error_message(backend_t *be)
{
    if (!be || !be->ops || !be->ops->error_message)
        return "";
    const char *msg = be->ops->error_message(be);
    return msg ? msg : "";
}

int backend_explain(backend_t *be, int rc, d2_error *err)
{
    const char *msg = backend_error_message(be);
    if (rc == 0 || rc == D2_ECANCELLED || !err || !msg[0] || strstr(err->msg, msg))
        return rc;
    size_t len = strnlen(err->msg, sizeof err->msg - 1);
    snprintf(err->msg + len, sizeof err->msg - len, "%s(device: %s)", len ? " " : "", msg);
    err->code = D2_EDEVICE;
    return D2_EDEVICE;
}

float *backend_alloc_floats(backend_t *be, size_t n)
{
    if (!be || n > SIZE_MAX / sizeof(float))
        return NULL;
    return (float *)be->ops->alloc(be, n * sizeof(float));
}
