/* lm_internal.h - helpers shared by the lm sources (not part of lm.h). */
#ifndef D2_LM_INTERNAL_H
#define D2_LM_INTERNAL_H

#include "lm.h"

/* D2_ENOMEM naming what ran out of arena and the size it would have needed */
int lm_oom(const arena *ar, const char *what, d2_error *err);

/* ptr = n floats of arena (zeroed or not); on failure reset to `mark` and return */
#define LM_TAKE(take, ptr, n, what)                                                        \
    do {                                                                                   \
        if (!((ptr) = take(ar, (n)))) {                                                    \
            int rc_ = lm_oom(ar, (what), err);                                             \
            arena_reset(ar, mark);                                                         \
            return rc_;                                                                    \
        }                                                                                  \
    } while (0)
#define LM_ZEROED(ptr, n, what) LM_TAKE(arena_floats, ptr, n, what)
#define LM_SCRATCH(ptr, n, what) LM_TAKE(arena_floats_uninit, ptr, n, what)

#endif
