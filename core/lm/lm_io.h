/* lm_io.h - the language model's safetensors files.
 *
 * A model file holds every tensor of lm.h under its name (F32) and, in
 * __metadata__: "d2nwg.kind" = "lm", "d2nwg.lm" = "layers=L width=W heads=H context=T"
 * (the configuration, read back by lm_load), "d2nwg.lm.tokens" (the byte tokenisation,
 * in words) and whatever key/value pairs the caller adds (source, steps, seed ...).
 * A checkpoint is a model file with AdamW's moments ("optim.m", "optim.v", flat).
 * Writes are atomic (st_writer_save: temporary name, fsync, rename). */
#ifndef D2_LM_IO_H
#define D2_LM_IO_H

#include "lm.h"
#include "safetensors.h"

/* every tensor of ps (from the device) into w */
int lm_write_set(st_writer *w, const paramset *ps, d2_error *err);
/* the model's tensors and metadata, plus kv[0..2n) extra pairs */
int lm_write(st_writer *w, const lm_model *m, const char *const *kv, int n, d2_error *err);
int lm_save(const lm_model *m, const char *path, const char *const *kv, int n, d2_error *err);
/* the configuration from a file's metadata */
int lm_read_config(const st_file *f, const char *path, lm_config *c, d2_error *err);
/* copy the tensors of ps (by name; shapes must match) from f onto the device */
int lm_read_set(const st_file *f, const char *path, paramset *ps, d2_error *err);
/* a flat tensor of exactly n floats into dev */
int lm_read_flat(const st_file *f, const char *path, backend_t *be, const char *name,
                 float *dev, size_t n, d2_error *err);
/* flat n floats from dev as "name" [n] */
int lm_write_flat(st_writer *w, backend_t *be, const char *name, const float *dev, size_t n,
                  d2_error *err);
/* open a model file: lm_init on ps (fresh), paramset_alloc on be, weights read */
int lm_load(lm_model *m, paramset *ps, backend_t *be, const char *path, d2_error *err);

#endif
