/* progress.h - a progress bar on stderr for long work: done/total, rate,
 * ETA and a free-form status (loss...). Redrawn at most ~10 times a second;
 * when stderr is not a terminal, one line every few seconds instead. */
#ifndef D2_PROGRESS_H
#define D2_PROGRESS_H

#include <stdio.h>

typedef struct progress {
    const char *label;
    const char *unit; /* "steps", "heads" */
    long total;
    double start, last_draw;
    int enabled, tty;
    FILE *out;
} progress;

void progress_begin(progress *p, const char *label, const char *unit, long total, int enabled);
/* status may be NULL. */
void progress_update(progress *p, long done, const char *status);
void progress_end(progress *p, long done, const char *status);

#endif
