/* progress.c - progress bar on stderr. */
#include "progress.h"

#include <string.h>
#include <unistd.h>

#include "common.h"

void progress_begin(progress *p, const char *label, const char *unit, long total, int enabled)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->total = total > 0 ? total : 1;
    p->start = d2_now();
    p->last_draw = 0.0;
    p->enabled = enabled;
    p->out = stderr;
    p->tty = isatty(fileno(stderr));
    p->next_line = 1;
}

/* Not a terminal: a line at the first step and each 10% of the total after it. */
static int log_line_due(progress *p, long done)
{
    if (done < p->next_line)
        return 0;
    long step = p->total / 10 > 0 ? p->total / 10 : 1;
    p->next_line = (done / step + 1) * step;
    return 1;
}

static void format_eta(char *buf, size_t n, double seconds)
{
    if (seconds < 0 || seconds > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else
        snprintf(buf, n, "%02ld:%02ld", s / 60, s % 60);
}

static void draw(progress *p, long done, const char *status, int final)
{
    double now = d2_now();
    double elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : -1.0;
    char eta_s[32];
    format_eta(eta_s, sizeof eta_s, final ? elapsed : eta);
    double frac = (double)done / (double)p->total;
    if (frac > 1.0)
        frac = 1.0;
    char bar[32];
    int width = 24, filled = (int)(frac * width + 0.5);
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(p->out, "%s%-14s [%s] %ld/%ld %6.1f %s/s %s %s%s%s", p->tty ? "\r" : "",
            p->label, bar, done, p->total, rate, p->unit, final ? "took" : "eta", eta_s,
            status ? "  " : "", status ? status : "");
    if (p->tty)
        fprintf(p->out, "\033[K");
    if (!p->tty || final)
        fputc('\n', p->out);
    fflush(p->out);
    p->last_draw = now;
}

void progress_update(progress *p, long done, const char *status)
{
    if (!p->enabled)
        return;
    if (!p->tty) {
        if (log_line_due(p, done))
            draw(p, done, status, 0);
        return;
    }
    if (d2_now() - p->last_draw < 0.1)
        return;
    draw(p, done, status, 0);
}

void progress_end(progress *p, long done, const char *status)
{
    if (!p->enabled)
        return;
    draw(p, done, status, 1);
}
