/* arena.h - scratch memory for activations, owned by one arena.
 *
 * One allocation on the backend up front; arena_floats() bumps a pointer,
 * 64-byte aligned. Forward passes allocate their caches here; a training step
 * or a sampling step takes a mark and resets to it when done, so nothing is
 * allocated per step. */
#ifndef D2_ARENA_H
#define D2_ARENA_H

#include <stddef.h>

#include "backend.h"

typedef struct arena {
    backend_t *be;
    char *base; /* device memory */
    size_t cap;
    size_t used;
    size_t peak;
} arena;

int arena_init(arena *a, backend_t *be, size_t bytes, d2_error *err);
void arena_free(arena *a);
/* n floats, zero-filled on the backend; NULL when the arena is full (the
 * caller reports it; peak tells how much would have been needed). */
float *arena_floats(arena *a, size_t n);
int32_t *arena_ints(arena *a, size_t n);
/* The same without the zero fill (contents are whatever was there): for buffers the caller
 * overwrites entirely, such as GEMM outputs with beta = 0; saves a fill pass (and, on a GPU,
 * a kernel launch) per allocation. */
float *arena_floats_uninit(arena *a, size_t n);
size_t arena_mark(const arena *a);
void arena_reset(arena *a, size_t mark);

#endif
