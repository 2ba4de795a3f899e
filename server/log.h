/* log.h - structured logs: one JSON object per line on a file descriptor
 * (stderr for d2nwgd): {"time", "level", "msg", ...fields}. Safe to call
 * from any thread: each line is a single write(2). */
#ifndef D2_SERVER_LOG_H
#define D2_SERVER_LOG_H

#include <jansson.h>

enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

typedef struct d2log {
    int level; /* lines below this level are dropped */
    int fd;
} d2log;

void log_init(d2log *lg, int level, int fd);
int log_level_parse(const char *s, int *level);
const char *log_level_name(int level);
int log_enabled(const d2log *lg, int level);
/* Emit {"time","level","msg"} followed by the members of `fields` (stolen;
 * may be NULL). */
void log_emit(const d2log *lg, int level, const char *msg, json_t *fields);

#endif
