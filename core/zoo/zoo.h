/* zoo.h - a model zoo: many trained target networks, each paired with the
 * task (data) it was trained on, plus the shared feature map.
 *
 * On disk (DIR):
 *   manifest.json      source, spec, way, seed, per_class, fingerprint, entries
 *                      (classes in order, seed, dataset fingerprint, train and
 *                      query accuracy), held-out class combinations
 *   weights-NNNN.safetensors   shards: "theta" [rows, P] and "index" [rows] (I32)
 *   feature_map.safetensors    "W" [F, D] and "mean" [D] (absent for identity)
 *   data/...           per-entry data sets of imported zoos (x, y safetensors)
 * The zoo fingerprint is sha256 over the manifest's canonical content and the
 * weights, so a generator records exactly what it learned from. */
#ifndef D2_ZOO_H
#define D2_ZOO_H

#include "data.h"
#include "target.h"

typedef struct zoo_entry {
    int way;
    int classes[D2_MAX_WAY]; /* source classes in label order (in-house zoos) */
    uint64_t seed;
    char data_fp[65];        /* fingerprint of the entry's training data */
    float train_acc, query_acc, query_loss;
    char *data_path;         /* imported zoos: the entry's own data set (x, y); else NULL */
} zoo_entry;

/* A group of the source's classes that tasks are drawn within: a glyph
 * script, or a whole source (data_source_class_group); classes first ..
 * first + count - 1, of part `part` of an "A+B" source. */
typedef struct zoo_group {
    char name[64];
    int part;
    int first, count;
} zoo_group;

/* A shard of a zoo build (zoo build --shard I/N): shard `index` of `count`
 * holds tasks first .. first + n - 1 of the build's `tasks` (zoo_shard_range).
 * count = 0: a whole zoo. */
typedef struct zoo_part {
    int count, index;
    int first, tasks;
    char fmap_sha256[65]; /* loaded zoos: the manifest's feature map sha256 ("": identity) */
} zoo_part;

typedef struct zoo {
    char source[256];  /* data source spec ("fashion-mnist", ...) or "import" */
    /* in-house zoos whose source has several groups: each task draws a part
     * uniformly, a group of it uniformly (among those with >= way classes),
     * then its classes within the group; held-out combinations are drawn
     * among the first group's classes. ngroups = 0: classes from all. */
    int ngroups;
    zoo_group *groups;
    target_spec spec;
    feature_map fmap;
    int way;           /* classes of the spec's head (the most a task has) */
    int min_way;       /* fewest classes a task has: tasks draw their way uniformly in
                        * min_way..way (any-way zoos; min_way = way: every task has way;
                        * an entry's head keeps rows way_i.. at zero) */
    int per_class;     /* training samples per class */
    uint64_t seed;
    int n;             /* entries */
    zoo_entry *e;
    int P;             /* theta length */
    float *theta;      /* [n, P] */
    int n_heldout;
    int (*heldout)[D2_MAX_WAY]; /* [n_heldout][zoo_heldout_way], ascending class ids */
    int heldout_way;   /* classes of a held-out combination; 0: way (an any-way zoo whose
                        * first group has fewer classes than way holds out smaller ones) */
    char fingerprint[65];
    /* the source data in feature space, loaded by zoo_load(..., load_data=1) */
    int has_data;
    dataset train_feat, test_feat;
    class_index train_ci, test_ci;
    /* added by the zoo implementation: */
    target_train_cfg train;     /* how the entries were trained (in-house zoos) */
    char train_fp[65], test_fp[65]; /* fingerprints of the source splits in feature
                                     * space (in-house zoos; checked by load_data) */
    dataset *entry_feat;        /* imported zoos, load_data: [n] entry data sets in
                                 * feature space; NULL otherwise */
    zoo_part part;              /* a shard: n entries, e[i] is task part.first + i */
} zoo;

typedef struct zoo_build_cfg {
    const char *source;   /* "fashion-mnist", "digits", ... */
    const char *feature;  /* "pca:128" or "identity" */
    int way;
    int min_way;          /* 0 or way: every task has way classes; else 2..way */
    int tasks;
    int per_class;        /* default 300 */
    float heldout_frac;   /* default 0.15 */
    uint64_t seed;
    int threads;          /* <= 0: all cores */
    int progress;         /* bar on stderr */
    target_train_cfg train;
    /* shard_count > 0: build shard shard_index of shard_count only (the tasks
     * of zoo_shard_range, with the draws and seeds of the whole build) */
    int shard_index, shard_count;
} zoo_build_cfg;
zoo_build_cfg zoo_build_defaults(void);

int zoo_build(zoo *z, const zoo_build_cfg *cfg, d2_error *err);
/* Classes of each of the zoo's held-out combinations. */
static inline int zoo_heldout_way(const zoo *z)
{
    return z->heldout_way > 0 ? z->heldout_way : z->way;
}
/* zoo_build in two stages (the benchmark times the second alone):
 * zoo_prepare loads the source, fits the feature map, maps both splits
 * (has_data = 1), draws the held-out combinations and every entry's classes
 * and seed; zoo_train_entries trains and evaluates every entry with `threads`
 * workers (<= 0: one per core) and sets the fingerprint. The result does not
 * depend on the thread count. Entry i's seed is rng_derive(seed, "zoo-task", i);
 * its classes come from that seed's stream, its training rows from
 * rng_derive(entry seed, "zoo-data", 0), its training from
 * rng_derive(entry seed, "zoo-train", 0). data_fp is the fingerprint of the
 * entry's training set in feature space. */
int zoo_prepare(zoo *z, const zoo_build_cfg *cfg, d2_error *err);
int zoo_train_entries(zoo *z, int threads, int progress, d2_error *err);
/* sha256 over the canonical content (header fields, held-out combinations,
 * entries, feature map, theta). */
void zoo_fingerprint(const zoo *z, char hex[65]);

/* Import user checkpoints listed in a JSONL manifest, one object per line:
 *   {"weights": "a.safetensors", "dataset": "a_data.safetensors",
 *    "spec": "...", "metrics": {"query_acc": 0.9, ...}}
 * (paths relative to the manifest; blank lines and lines starting with '#'
 * are skipped). spec (may be NULL) overrides the zoo's spec, which otherwise
 * is the first valid line's. Each checkpoint is checked against the spec
 * (tensor names, shapes, finite values, the same frozen module 0 as the first
 * one) and its dataset (x [n, D], y [n], classes <= the spec's outputs); a bad
 * line is recorded in rep with its line number and the reason, and the others
 * go on. The zoo is saved to out_dir with each dataset copied to
 * out_dir/data/NNNNNN.safetensors. Fails only when no line was imported (or
 * on I/O errors writing out_dir). */
typedef struct zoo_import_reject {
    int line;                /* 1-based line of the manifest */
    char msg[D2_ERRMSG_LEN];
} zoo_import_reject;
typedef struct zoo_import_report {
    int imported, rejected;
    zoo_import_reject *rejects; /* [rejected] */
} zoo_import_report;
int zoo_import(const char *manifest_path, const char *spec, const char *out_dir,
               zoo_import_report *rep, d2_error *err);
/* zoo_import with a choice: skip_bad = 1 is zoo_import; skip_bad = 0 imports
 * all or nothing: with any line rejected (each still reported in rep) it
 * writes nothing to out_dir and fails with D2_EINVAL. A checkpoint's module 0
 * is compared with the first one's at the coarser of their two dtypes, so F16
 * and F32 copies of one feature map go into one zoo. */
int zoo_import_lines(const char *manifest_path, const char *spec, const char *out_dir,
                     int skip_bad, zoo_import_report *rep, d2_error *err);
void zoo_import_report_free(zoo_import_report *rep);
int zoo_save(const zoo *z, const char *dir, d2_error *err);
/* A whole zoo; a shard (zoo build --shard) is refused with a message that
 * says so and points to zoo merge. */
int zoo_load(zoo *z, const char *dir, int load_data, d2_error *err);
/* A whole zoo or a shard (z->part.count > 0), without the source data. */
int zoo_load_any(zoo *z, const char *dir, d2_error *err);
void zoo_free(zoo *z);

/* The tasks of shard `index` of `count` over `tasks`: first .. first + rows - 1,
 * contiguous, in order, every task in exactly one shard. */
void zoo_shard_range(int tasks, int index, int count, int *first, int *rows);
/* Join the shards in dirs[0..ndirs-1] (any order) into the zoo an unsharded
 * build gives, byte for byte, saved to out_dir, which must not exist or be an
 * empty directory; the folder appears under its name complete or not at all.
 * Fails naming the shard folder and the field when the shards disagree
 * (source, spec, feature map, seed, tasks, shard count, training settings,
 * held-out combinations, source fingerprints), when one is missing, given
 * twice or holds other tasks than its range. merged (may be NULL) gets the
 * zoo (caller frees). */
int zoo_merge(const char *const *dirs, int ndirs, const char *out_dir, zoo *merged,
              d2_error *err);

/* 1 when the unordered class set of t is a held-out combination. */
int zoo_is_heldout(const zoo *z, const task *t);

/* Data of a task in feature space (needs has_data): K-shot support from the
 * train split, or every query sample of the task's classes from the test split.
 * For imported zoos entry data come from the entry's own data set. */
int zoo_entry_support(const zoo *z, int entry, int shots, rng *r, dataset *out, d2_error *err);
int zoo_task_support(const zoo *z, const task *t, int shots, rng *r, dataset *out,
                     d2_error *err);
int zoo_task_query(const zoo *z, const task *t, dataset *out, d2_error *err);
int zoo_task_train(const zoo *z, const task *t, int per_class, rng *r, dataset *out,
                   d2_error *err);

#endif
