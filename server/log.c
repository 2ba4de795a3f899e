/* log.c - JSON lines on a file descriptor. */
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void log_init(d2log *lg, int level, int fd)
{
    lg->level = level;
    lg->fd = fd;
}

int log_level_parse(const char *s, int *level)
{
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, LEVEL_NAMES[i])) {
            *level = i;
            return 0;
        }
    return -1;
}

const char *log_level_name(int level)
{
    return (level >= 0 && level < 4) ? LEVEL_NAMES[level] : "info";
}

int log_enabled(const d2log *lg, int level)
{
    return lg && level >= lg->level;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a logging failure */
        }
        p += w;
        n -= (size_t)w;
    }
}

void log_emit(const d2log *lg, int level, const char *msg, json_t *fields)
{
    if (!log_enabled(lg, level)) {
        json_decref(fields);
        return;
    }
    char t[32];
    api_format_time(api_now_ms(), t);
    json_t *o = json_pack("{s:s, s:s, s:s}", "time", t, "level", log_level_name(level), "msg",
                          msg ? msg : "");
    if (o && fields)
        json_object_update(o, fields);
    json_decref(fields);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line) {
        static const char oom[] = "{\"level\":\"error\",\"msg\":\"log: out of memory\"}\n";
        write_all(lg->fd, oom, sizeof oom - 1);
        return;
    }
    size_t n = strlen(line);
    char *buf = realloc(line, n + 2);
    if (!buf) {
        write_all(lg->fd, line, n);
        write_all(lg->fd, "\n", 1);
        free(line);
        return;
    }
    buf[n] = '\n';
    write_all(lg->fd, buf, n + 1);
    free(buf);
}
