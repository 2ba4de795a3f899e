/* zoo_internal.h - helpers shared by the zoo's files (zoo.c, zoo_build.c,
 * zoo_io.c, zoo_import.c). Not part of the public interface. */
#ifndef D2_ZOO_INTERNAL_H
#define D2_ZOO_INTERNAL_H

#include "zoo.h"

#define ZOO_SHARD_ROWS 1000
#define ZOO_MAX_HELDOUT 100000
#define ZOO_MANIFEST "manifest.json"
#define ZOO_FEATURE_MAP "feature_map.safetensors"

/* Number of k-subsets of n classes, saturating at 2^62. */
uint64_t zoo_binom(int n, int k);
/* Draw max(1, round(frac * C(classes, way))) distinct unordered combinations
 * from seed, sorted (each ascending, the list lexicographically), into
 * z->heldout / z->n_heldout (z->way must be set). */
int zoo_draw_heldout(zoo *z, int classes, double frac, uint64_t seed, d2_error *err);
/* Draw entry i's ordered classes (way of `classes`) from seed's stream,
 * skipping held-out combinations. */
int zoo_draw_classes(const zoo *z, int classes, uint64_t seed, int way, int *out, d2_error *err);
/* The way of the task with this seed: z->way, or in an any-way zoo one drawn
 * uniformly in min_way..way from the seed's own stream ("zoo-way"). */
int zoo_entry_way(const zoo *z, uint64_t seed);
/* z->groups from the source's class groups (none when it has one group). */
int zoo_groups_from_source(zoo *z, const data_source *src, d2_error *err);
/* Entry classes within one group (see zoo.h), skipping held-out combinations. */
int zoo_draw_grouped(const zoo *z, uint64_t seed, int way, int *out, d2_error *err);
/* Every row of the task's classes, class by class in row order, labels =
 * positions in t (out allocated). */
int zoo_gather_all(const dataset *src, const class_index *ci, const task *t, dataset *out,
                   d2_error *err);
/* Checks a task against the zoo's source classes (needs has_data). */
int zoo_check_task(const zoo *z, const task *t, d2_error *err);
/* Free and zero the per-zoo arrays (not the struct's fixed fields). */
void zoo_clear(zoo *z);

/* The files of a saved zoo as the manifest lists them. */
typedef struct zoo_shard_info {
    char file[32];   /* weights-NNNN.safetensors */
    int rows;
    char sha256[65]; /* of the file's bytes */
} zoo_shard_info;
typedef struct zoo_files {
    int input_dim;       /* the feature map's input size */
    int has_fmap;        /* feature_map.safetensors present */
    char fmap_sha256[65];
    int nshards;
    zoo_shard_info *shards;
} zoo_files;

/* manifest.json text <-> zoo metadata (zoo_manifest.c). Encoding needs the
 * zoo's entries, held-out list, spec and feature map dims; decoding fills
 * them (theta and the feature map are left to the caller) and names the
 * field at fault: "manifest.json: entries[3].classes: ...". */
int zoo_manifest_encode(const zoo *z, const zoo_files *files, char **text, d2_error *err);
int zoo_manifest_decode(zoo *z, zoo_files *files, const char *text, size_t len,
                        const char *path, d2_error *err);

#endif
