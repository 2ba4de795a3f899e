/* progress.h - a progress bar on stderr for long work: done/total, rate,
 * ETA and a free-form status (loss...). Redrawn in place at most ~10 times a
 * second; when stderr is not a terminal (a log), one whole line per 10% of the
 * total instead, and the final line. */
#ifndef D2_PROGRESS_H
#define D2_PROGRESS_H

#include <stdio.h>

typedef struct progress {
    const char *label;
    const char *unit; /* "steps", "heads" */
    long total;
    double start, last_draw;
    long next_line; /* not a terminal: the next `done` that gets a line */
    int enabled, tty;
    FILE *out;
} progress;

void progress_begin(progress *p, const char *label, const char *unit, long total, int enabled);
/* status may be NULL. */
void progress_update(progress *p, long done, const char *status);
void progress_end(progress *p, long done, const char *status);

#endif
