/* arena.c - bump allocator over one backend allocation. */
#include "arena.h"

#include <string.h>

#define ARENA_ALIGN 64

int arena_init(arena *a, backend_t *be, size_t bytes, d2_error *err)
{
    memset(a, 0, sizeof *a);
    if (!be)
        return d2_fail(err, D2_EINVAL, "arena_init: no backend");
    bytes = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    a->base = be->ops->alloc(be, bytes ? bytes : ARENA_ALIGN);
    if (!a->base)
        return d2_fail(err, D2_ENOMEM, "arena_init: cannot allocate %zu bytes on %s", bytes,
                       be->ops->name);
    a->be = be;
    a->cap = bytes;
    return 0;
}

void arena_free(arena *a)
{
    if (a->be && a->base)
        a->be->ops->free(a->be, a->base);
    memset(a, 0, sizeof *a);
}

/* `bytes` from the arena, 64-byte aligned, zero-filled when `zero`; NULL when it does not
 * fit (peak still records the size that would have been needed) */
static void *arena_take(arena *a, size_t bytes, int zero)
{
    size_t start = (a->used + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (start < a->used || bytes > SIZE_MAX - start)
        return NULL;
    size_t end = start + bytes;
    if (end > a->peak)
        a->peak = end;
    if (!a->base || end > a->cap)
        return NULL;
    a->used = end;
    char *p = a->base + start;
    if (bytes && zero)
        a->be->ops->fill(a->be, (float *)p, 0.0f, bytes / sizeof(float));
    return p;
}

float *arena_floats(arena *a, size_t n)
{
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    return (float *)arena_take(a, n * sizeof(float), 1);
}

float *arena_floats_uninit(arena *a, size_t n)
{
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    return (float *)arena_take(a, n * sizeof(float), 0);
}

int32_t *arena_ints(arena *a, size_t n)
{
    if (n > SIZE_MAX / sizeof(int32_t))
        return NULL;
    /* the zero bit pattern is 0 for int32 as for float */
    return (int32_t *)arena_take(a, n * sizeof(int32_t), 1);
}

size_t arena_mark(const arena *a)
{
    return a->used;
}

void arena_reset(arena *a, size_t mark)
{
    if (mark <= a->used)
        a->used = mark;
}
