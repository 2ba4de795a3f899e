/* embedded.h - files compiled into d2nwgd: the SQL migrations
 * (migrations/NNNN_*.sql, in order) and proto/openapi.yaml. The data is
 * generated at build time by server/embed.sh into $(BUILD)/gen/embedded_data.c. */
#ifndef D2_SERVER_EMBEDDED_H
#define D2_SERVER_EMBEDDED_H

#include <stddef.h>

typedef struct embedded_file {
    const char *name;          /* path relative to the repository root */
    const unsigned char *data; /* len bytes, followed by a NUL */
    size_t len;
} embedded_file;

extern const embedded_file d2_embedded_files[];
extern const int d2_embedded_count;

/* The file with exactly this name, or NULL. */
const embedded_file *embedded_find(const char *name);

#endif
