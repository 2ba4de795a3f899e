/* data_internal.h - helpers shared by the data readers (data_*.c); not part
 * of the public API in data.h. */
#ifndef D2_DATA_INTERNAL_H
#define D2_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "data.h"

/* Largest text/array file the readers load into memory (2 GiB). */
#define DATA_MAX_FILE ((size_t)1 << 31)

/* Read a whole file through zlib (gzip-compressed or plain, detected by
 * content) into a NUL-terminated buffer; *len excludes the NUL. Fails when the
 * decompressed size exceeds max_len or the gzip stream is corrupt/truncated. */
int data_read_all(const char *path, unsigned char **out, size_t *len, size_t max_len,
                  d2_error *err);

/* zlib's message for the last error on g, without the "path: " prefix zlib
 * adds (callers name the file themselves); errno's text for Z_ERRNO. */
struct gzFile_s;
const char *data_gz_error(struct gzFile_s *g, const char *path);

/* Text layouts the CSV parser understands. */
typedef enum data_csv_layout {
    DATA_CSV_LABEL_FIRST, /* header line "label,f1,f2,...", then label,features */
    DATA_CSV_SKLEARN,     /* header "n_samples,n_features,class names...", label last */
    DATA_CSV_LABEL_LAST   /* no header; features..., label */
} data_csv_layout;

/* Parse CSV text (NUL-terminated, len bytes) into d. Messages name path, line
 * and column. The result is validated (dataset_validate). */
int data_csv_parse(dataset *d, const char *path, const char *text, size_t len,
                   data_csv_layout layout, d2_error *err);

/* Split `all` per class: of each class's m rows, round(frac * m) go to train
 * (at least 1) and the rest to test (at least 1), chosen by a seeded shuffle
 * per class; both keep the original row order. Fails when a class has fewer
 * than 2 rows. */
int data_split_per_class(const dataset *all, uint64_t seed, double frac, dataset *train,
                         dataset *test, d2_error *err);

#endif
