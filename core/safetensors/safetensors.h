/* safetensors.h - strict reader and writer of the safetensors format.
 *
 * File: 8-byte little-endian header length N; N bytes of UTF-8 JSON (padded
 * with spaces to a multiple of 8 when written); then the data. The header maps
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} relative
 * to the data start, plus an optional "__metadata__" object of string values.
 * The reader refuses: a header longer than the file or over 100 MB, invalid
 * JSON or UTF-8, duplicate names, unknown dtypes, shapes whose size does not
 * match the offsets, offsets that overlap, leave gaps, or do not cover the data
 * exactly, and non-string metadata - each with a message naming the problem. */
#ifndef D2_SAFETENSORS_H
#define D2_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u * 1000u * 1000u)

typedef enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32,
    ST_F64, ST_I64, ST_U64, ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype t); /* "F32" ... */
size_t st_dtype_size(st_dtype t);
int st_dtype_parse(const char *s, st_dtype *out);

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    size_t begin, end;  /* byte offsets within the data section */
    const void *data;   /* points into the file's buffer */
} st_tensor;

typedef struct st_file {
    st_tensor *tensors; /* in data-offset order */
    int count;
    char **meta_keys, **meta_values;
    int nmeta;
    unsigned char *buf; /* owned copy of the whole file */
    size_t len;
} st_file;

/* Parse a file from disk / from memory (the bytes are copied). */
int st_load(st_file *f, const char *path, d2_error *err);
int st_parse(st_file *f, const void *bytes, size_t len, d2_error *err);
void st_free(st_file *f);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key); /* NULL when absent */

/* Convert a tensor of any float or integer dtype to float32 / int32 (n = numel).
 * Integer to int32 fails on overflow; float to float32 rounds. */
int st_to_f32(const st_tensor *t, float *out, d2_error *err);
int st_to_i32(const st_tensor *t, int32_t *out, d2_error *err);

/* Half-precision helpers (round to nearest even). */
uint16_t st_f32_to_f16(float x);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float x);
float st_bf16_to_f32(uint16_t h);

/* Writer: tensors are written in the order they are added; the output is a
 * deterministic function of the calls (same inputs -> same bytes). */
typedef struct st_writer {
    struct st_wtensor *items;
    int count, cap;
    char **meta_keys, **meta_values;
    int nmeta, meta_cap;
} st_writer;

void st_writer_init(st_writer *w);
/* data (nbytes = numel * dtype size) is copied. */
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                  const int64_t *shape, const void *data, size_t nbytes, d2_error *err);
int st_writer_add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape,
                      const float *data, d2_error *err);
int st_writer_meta(st_writer *w, const char *key, const char *value, d2_error *err);
/* Serialise to a malloc'd buffer (caller frees). */
int st_writer_to_memory(const st_writer *w, unsigned char **out, size_t *len, d2_error *err);
/* Write atomically: PATH.tmp.<pid>, fsync, rename over PATH, fsync the directory. */
int st_writer_save(const st_writer *w, const char *path, d2_error *err);
void st_writer_free(st_writer *w);

#endif
