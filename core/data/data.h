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

#define D2_MAX_WAY 20

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

/* What a class label stands for, where the source knows it (glyphs). */
typedef struct data_class_info {
    const char *script; /* a name of the glyph script table (static storage) */
    uint32_t codepoint; /* the character */
} data_class_info;

/* Named sources with train/test splits: "fashion-mnist", "digits", "digits-28"
 * (digits resized to 28x28 in [0, 1], like Fashion-MNIST), "iris", "wine",
 * "csv:PATH" (label first column, header), "idx:PREFIX"
 * (PREFIX-train-images-idx3-ubyte[.gz] ... as Fashion-MNIST names them), and
 * "glyphs:SELECTION" (below). Sources without a split are split per class,
 * deterministically (80% train). */
#define DATA_MAX_PARTS 8
typedef struct data_source {
    char name[256];
    dataset train, test;
    data_class_info *class_info; /* [train.classes] for glyph sources, else NULL */
    /* "A+B+...": the parts side by side, part i's classes are
     * part_first[i] .. part_first[i + 1] - 1; nparts = 0 for a single source */
    int nparts;
    char part_name[DATA_MAX_PARTS][64];
    int part_first[DATA_MAX_PARTS + 1];
} data_source;
int data_source_load(data_source *s, const char *spec, d2_error *err);
void data_source_free(data_source *s);

/* "A+B+...": up to DATA_MAX_PARTS named sources with the same feature count,
 * each one's labels after the previous ones' (data_source_load calls it for
 * a spec with a '+'). */
int data_source_concat(data_source *s, const char *spec, d2_error *err);
/* The group a class belongs to, for drawing tasks within one group: its
 * glyph script when the source knows it, else the name of its part (or of
 * the source). Index of the part in *part (0 for a single source). */
const char *data_source_class_group(const data_source *s, int c, int *part);

/* Bilinear resize of one square image (side s -> side t). */
void data_resize_square(const float *in, int s, float *out, int t);

/* Glyphs: an Omniglot-like source of many scripts. Each class is one letter
 * of a Unicode script drawn with FreeType from fonts-noto-core, 28x28 in
 * [0, 1], white on black, centred by its bounding box; each sample is jittered
 * from the seed (font, size, rotation, shear, shift, stroke weight, warp,
 * blur). Selections: "background" (every script that is not held out),
 * "train" (background minus validation), "validation" (every fourth
 * background script in table order, from the second), "heldout" (20 scripts
 * that no zoo, feature map or generator may ever train on or be tuned with),
 * or "SCRIPT[,SCRIPT...]". Rendered once and cached as IDX under
 * cache_dir/glyphs/. Labels run over the selected scripts in table order,
 * then by code point; each class is split 80/20 into train/test. */
#define GLYPH_SIDE 28
#define GLYPH_DEFAULT_SAMPLES 20
#define GLYPH_DEFAULT_SEED 20261203u

typedef enum glyph_split {
    GLYPH_SPLIT_BACKGROUND,
    GLYPH_SPLIT_TRAIN,
    GLYPH_SPLIT_VALIDATION,
    GLYPH_SPLIT_HELDOUT
} glyph_split;

typedef struct glyph_options {
    uint64_t seed;
    int samples;           /* per class, >= 2 */
    char cache_dir[1024];  /* the data folder; the cache lives in cache_dir/glyphs */
    char font_dir[1024];
} glyph_options;

/* seed GLYPH_DEFAULT_SEED, GLYPH_DEFAULT_SAMPLES, cache_dir from data_dir_default(). */
void glyph_options_default(glyph_options *o);
/* The folder for derived data: $D2NWG_DATA_DIR, else "var/data". */
void data_dir_default(char *out, size_t cap);

/* The table: script i's name (0 <= i < glyph_table_size()), in table order. */
int glyph_table_size(void);
const char *glyph_table_name(int i);
/* The scripts of a split, in table order; returns how many (names may be
 * NULL to count). */
int glyph_split_scripts(glyph_split split, const char **names, int cap);
/* 1 when name (case-insensitive) is a held-out script. */
int glyph_script_is_heldout(const char *name);
/* 1 when name (case-insensitive) is a script of the table. */
int glyph_script_is_known(const char *name);
/* Load "background", "train", "validation", "heldout" or "A,B,...". */
int glyph_source_load(data_source *s, const char *selection, const glyph_options *o,
                      d2_error *err);

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
