/* data.h - labelled data sets (float32 features, int32 labels 0..C-1), the
 * readers that fill them, and the task sampler.
 *
 * Every reader refuses bad input with a message that names the file, the
 * line/offset and the problem, and never reads out of bounds. */
#ifndef D2_DATA_H
#define D2_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "rng.h"

#define D2_MAX_WAY 16

typedef struct dataset {
    int n, dim, classes; /* classes = max label + 1 */
    float *x;            /* [n, dim] */
    int32_t *y;          /* [n] */
} dataset;

int dataset_alloc(dataset *d, int n, int dim, d2_error *err);
void dataset_free(dataset *d);
/* n > 0, dim > 0, finite features, labels in 0..C-1 with every class present
 * (sets d->classes). */
int dataset_validate(dataset *d, d2_error *err);
/* sha256 over a canonical little-endian encoding: "d2nwg-dataset-v1", n, dim,
 * classes (uint32 each), then x (float32), then y (int32). */
void dataset_fingerprint(const dataset *d, char hex[65]);

/* Readers. */
int data_load_idx(dataset *d, const char *images_path, const char *labels_path, d2_error *err);
/* CSV with a header line whose first column is `label`, then features. */
int data_load_csv(dataset *d, const char *path, d2_error *err);
int data_load_npy_pair(dataset *d, const char *x_path, const char *y_path, d2_error *err);
/* safetensors with `x` [n, D] and `y` [n] */
int data_load_safetensors(dataset *d, const char *path, d2_error *err);
int data_parse_safetensors(dataset *d, const void *bytes, size_t len, d2_error *err);
/* By extension: .csv, .csv.gz, .npy (labels_path required), .safetensors. */
int data_load_support(dataset *d, const char *path, const char *labels_path, d2_error *err);

/* Named sources with train/test splits: "fashion-mnist", "digits", "iris",
 * "wine", "csv:PATH" (label first column, header), "idx:PREFIX"
 * (PREFIX-train-images-idx3-ubyte[.gz] ... as Fashion-MNIST names them). Sources
 * without a split are split per class, deterministically (80% train). */
typedef struct data_source {
    char name[256];
    dataset train, test;
} data_source;
int data_source_load(data_source *s, const char *spec, d2_error *err);
void data_source_free(data_source *s);

/* Row indices of each class, for sampling. */
typedef struct class_index {
    int classes;
    int *count;  /* [classes] */
    int **rows;  /* [classes][count[c]] */
} class_index;
int class_index_build(class_index *ci, const dataset *d, d2_error *err);
void class_index_free(class_index *ci);

/* An N-way task: an ordered list of distinct classes; label i = classes[i]. */
typedef struct task {
    int way;
    int classes[D2_MAX_WAY];
} task;

/* Draw up to per_class rows of each task class (all of them when per_class <= 0),
 * without replacement, in a seeded order; out->y are task labels 0..way-1. */
int task_draw(const dataset *src, const class_index *ci, const task *t, int per_class, rng *r,
              dataset *out, d2_error *err);

#endif
