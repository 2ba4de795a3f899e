/* metrics_process.c - the standard process_* metrics (the names every
 * Prometheus client library exports) read from /proc/self at scrape time. */
#include "metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Seconds since the epoch at which the machine booted (/proc/stat btime). */
static int boot_time(double *out)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[256];
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long bt;
        if (sscanf(line, "btime %llu", &bt) == 1) {
            *out = (double)bt;
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* utime, stime, starttime (clock ticks), vsize (bytes), rss (pages) from
 * /proc/self/stat; the fields after the command name, which is in parentheses
 * and may itself hold spaces or parentheses. */
static int self_stat(unsigned long long v[5])
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* tokens after ')': field 3 (state) is token 0; utime is field 14 */
    static const int want[5] = {14, 15, 22, 23, 24};
    int field = 2, got = 0;
    char *save = NULL;
    for (char *t = strtok_r(p + 1, " ", &save); t && got < 5; t = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == want[got])
            v[got++] = strtoull(t, NULL, 10);
    }
    return got == 5 ? 0 : -1;
}

/* Open descriptors: the entries of /proc/self/fd, less the one reading it. */
static int open_fds(double *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    *out = n > 0 ? (double)(n - 1) : 0.0;
    return 0;
}

int metrics_process_read(metrics_process *p)
{
    memset(p, 0, sizeof *p);
    unsigned long long v[5];
    double btime;
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    if (tck <= 0 || page <= 0 || self_stat(v) != 0 || boot_time(&btime) != 0 ||
        open_fds(&p->open_fds) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    p->cpu_seconds = (double)(v[0] + v[1]) / (double)tck;
    p->start_time = btime + (double)v[2] / (double)tck;
    p->virtual_bytes = (double)v[3];
    p->resident_bytes = (double)v[4] * (double)page;
    p->max_fds = rl.rlim_cur == RLIM_INFINITY ? 1e18 : (double)rl.rlim_cur;
    p->ok = 1;
    return 0;
}
