/* sweep.h - the start-up sweep of the checkpoint folder. A worker writes a
 * job's pack file (atomically) before the rows that name it; a crash (or a
 * kill) between the two leaves a pack no stored checkpoint names, and a
 * crash inside the atomic write leaves its temporary. Both are removed here,
 * before the daemon serves; the job itself is queued again (it was running)
 * and writes its pack anew. */
#ifndef D2_SERVER_SWEEP_H
#define D2_SERVER_SWEEP_H

#include "store.h"

/* Remove DIR/<job>.pack files whose job has no stored checkpoint, and
 * DIR/<job>.pack.tmp.* temporaries; *removed counts them. */
int sweep_orphans(store *db, const char *dir, int *removed, d2_error *err);

#endif
