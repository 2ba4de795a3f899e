/* zoo_io.c - a zoo on disk: manifest.json, weights-NNNN.safetensors shards
 * ("theta" [rows, P], "index" [rows]), feature_map.safetensors ("W" [F, D],
 * "mean" [D]); every file written atomically, every file checked on load
 * (sha256 from the manifest, shapes, coverage, finite values) and the zoo
 * fingerprint recomputed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "safetensors.h"
#include "sha256.h"
#include "zoo_internal.h"

#define ZOO_MAX_FILE ((size_t)1 << 34)

static int ensure_dir(const char *dir, d2_error *err)
{
    struct stat st;
    if (mkdir(dir, 0755) == 0)
        return 0;
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    return d2_fail(err, D2_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
}

/* Serialise w, write it atomically to dir/name, and hash the bytes. */
static int write_st(const st_writer *w, const char *dir, const char *name, char sha[65],
                    d2_error *err)
{
    unsigned char *buf;
    size_t len;
    int rc = st_writer_to_memory(w, &buf, &len, err);
    if (rc)
        return rc;
    sha256_hex(buf, len, sha);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    rc = d2_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int zoo_save(const zoo *z, const char *dir, d2_error *err)
{
    if (!z || !dir || z->n < 1 || !z->e || !z->theta || z->P < 1)
        return d2_fail(err, D2_EINVAL, "zoo_save: empty zoo");
    int rc = ensure_dir(dir, err);
    if (rc)
        return rc;
    zoo_files files = {.input_dim = z->fmap.in_dim, .has_fmap = z->fmap.W != NULL};
    files.nshards = (z->n + ZOO_SHARD_ROWS - 1) / ZOO_SHARD_ROWS;
    files.shards = calloc((size_t)files.nshards, sizeof *files.shards);
    int32_t *index = malloc(sizeof(int32_t) * ZOO_SHARD_ROWS);
    if (!files.shards || !index) {
        free(files.shards);
        free(index);
        return d2_fail(err, D2_ENOMEM, "zoo_save: out of memory");
    }
    for (int s = 0; s < files.nshards && !rc; s++) {
        int r0 = s * ZOO_SHARD_ROWS, rows = z->n - r0 < ZOO_SHARD_ROWS ? z->n - r0 : ZOO_SHARD_ROWS;
        zoo_shard_info *si = &files.shards[s];
        snprintf(si->file, sizeof si->file, "weights-%04d.safetensors", s);
        si->rows = rows;
        for (int i = 0; i < rows; i++)
            index[i] = z->part.first + r0 + i; /* task ids of the whole build */
        st_writer w;
        st_writer_init(&w);
        int64_t ts[2] = {rows, z->P}, is[1] = {rows};
        rc = st_writer_add_f32(&w, "theta", 2, ts, z->theta + (size_t)r0 * z->P, err);
        if (!rc)
            rc = st_writer_add(&w, "index", ST_I32, 1, is, index, sizeof(int32_t) * (size_t)rows,
                               err);
        if (!rc)
            rc = write_st(&w, dir, si->file, si->sha256, err);
        st_writer_free(&w);
    }
    free(index);
    if (!rc && files.has_fmap) {
        st_writer w;
        st_writer_init(&w);
        int64_t ws[2] = {z->fmap.out_dim, z->fmap.in_dim}, ms[1] = {z->fmap.in_dim};
        rc = st_writer_add_f32(&w, "W", 2, ws, z->fmap.W, err);
        if (!rc)
            rc = st_writer_add_f32(&w, "mean", 1, ms, z->fmap.mean, err);
        if (!rc)
            rc = write_st(&w, dir, ZOO_FEATURE_MAP, files.fmap_sha256, err);
        st_writer_free(&w);
    }
    char *text = NULL;
    if (!rc) {
        /* the manifest carries the fingerprint of exactly what is saved */
        zoo tmp = *z;
        zoo_fingerprint(z, tmp.fingerprint);
        rc = zoo_manifest_encode(&tmp, &files, &text, err);
    }
    if (!rc) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ZOO_MANIFEST);
        rc = d2_write_file_atomic(path, text, strlen(text), err);
    }
    free(text);
    /* shards left over from an earlier, larger zoo in the same directory */
    for (int s = files.nshards; !rc && s < 100000; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/weights-%04d.safetensors", dir, s);
        if (unlink(path) != 0)
            break;
    }
    if (!rc && !files.has_fmap) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ZOO_FEATURE_MAP);
        unlink(path);
    }
    free(files.shards);
    return rc;
}

/* Read dir/name, check its sha256 against the manifest, parse it. */
static int load_st(const char *dir, const char *name, const char *sha, st_file *f, d2_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char *buf;
    size_t len;
    int rc = d2_read_file(path, &buf, &len, ZOO_MAX_FILE, err);
    if (rc)
        return rc;
    char got[65];
    sha256_hex(buf, len, got);
    if (strcmp(got, sha)) {
        free(buf);
        return d2_fail(err, D2_EFORMAT, "%s: sha256 %.16s... does not match the manifest's "
                       "%.16s... (file changed or corrupt)", path, got, sha);
    }
    rc = st_parse(f, buf, len, err);
    free(buf);
    return rc ? d2_wrap(err, "%s", path) : 0;
}

static int load_fmap(zoo *z, const char *dir, const zoo_files *files, d2_error *err)
{
    if (z->spec.has_cnn) { /* the fingerprint (its sha256) checks it is the same file */
        int rc = feature_map_load_cnn(&z->fmap, z->spec.cnn_path, err);
        if (!rc && z->fmap.in_dim != files->input_dim)
            rc = d2_fail(err, D2_EFORMAT, "%s: cnn:%s takes %d values per row, the zoo's input "
                         "has %d", dir, z->spec.cnn_path, z->fmap.in_dim, files->input_dim);
        return rc;
    }
    if (!files->has_fmap)
        return feature_map_identity(&z->fmap, files->input_dim, err);
    st_file f;
    int rc = load_st(dir, ZOO_FEATURE_MAP, files->fmap_sha256, &f, err);
    if (rc)
        return rc;
    const st_tensor *W = st_find(&f, "W"), *mean = st_find(&f, "mean");
    int k = z->spec.pca_dim, D = files->input_dim;
    if (!W || !mean || f.count != 2 || W->dtype != ST_F32 || mean->dtype != ST_F32 ||
        W->ndim != 2 || W->shape[0] != k || W->shape[1] != D || mean->ndim != 1 ||
        mean->shape[0] != D) {
        st_free(&f);
        return d2_fail(err, D2_EFORMAT, "%s/%s: expected F32 tensors W [%d, %d] and mean [%d]",
                       dir, ZOO_FEATURE_MAP, k, D, D);
    }
    z->fmap.W = malloc(sizeof(float) * (size_t)k * D);
    z->fmap.mean = malloc(sizeof(float) * (size_t)D);
    if (!z->fmap.W || !z->fmap.mean) {
        st_free(&f);
        return d2_fail(err, D2_ENOMEM, "zoo_load: out of memory");
    }
    rc = st_to_f32(W, z->fmap.W, err);
    if (!rc)
        rc = st_to_f32(mean, z->fmap.mean, err);
    st_free(&f);
    if (rc)
        return rc;
    z->fmap.in_dim = D;
    z->fmap.out_dim = k;
    for (size_t i = 0; i < (size_t)k * D; i++)
        if (!isfinite(z->fmap.W[i]))
            return d2_fail(err, D2_EFORMAT, "%s/%s: W has a non-finite value", dir,
                           ZOO_FEATURE_MAP);
    for (int i = 0; i < D; i++)
        if (!isfinite(z->fmap.mean[i]))
            return d2_fail(err, D2_EFORMAT, "%s/%s: mean has a non-finite value", dir,
                           ZOO_FEATURE_MAP);
    return 0;
}

static int load_shards(zoo *z, const char *dir, const zoo_files *files, d2_error *err)
{
    z->theta = malloc(sizeof(float) * (size_t)z->n * z->P);
    char *seen = calloc((size_t)z->n, 1);
    int32_t *index = malloc(sizeof(int32_t) * (size_t)z->n);
    float *rowbuf = NULL;
    int rc = 0;
    if (!z->theta || !seen || !index) {
        rc = d2_fail(err, D2_ENOMEM, "zoo_load: out of memory for %d entries", z->n);
        goto done;
    }
    for (int s = 0; s < files->nshards && !rc; s++) {
        const zoo_shard_info *si = &files->shards[s];
        st_file f;
        if ((rc = load_st(dir, si->file, si->sha256, &f, err)))
            break;
        const st_tensor *th = st_find(&f, "theta"), *ix = st_find(&f, "index");
        if (!th || !ix || f.count != 2 || th->dtype != ST_F32 || th->ndim != 2 ||
            th->shape[0] != si->rows || th->shape[1] != z->P || ix->ndim != 1 ||
            ix->shape[0] != si->rows) {
            rc = d2_fail(err, D2_EFORMAT, "%s/%s: expected F32 theta [%d, %d] and index [%d]",
                         dir, si->file, si->rows, z->P, si->rows);
        } else if ((rc = st_to_i32(ix, index, err))) {
            d2_wrap(err, "%s/%s: index", dir, si->file);
        } else if (!(rowbuf = malloc(sizeof(float) * th->numel))) {
            rc = d2_fail(err, D2_ENOMEM, "zoo_load: out of memory");
        } else if (!(rc = st_to_f32(th, rowbuf, err))) {
            for (int i = 0; i < si->rows && !rc; i++) {
                int e = index[i] - z->part.first;
                if (e < 0 || e >= z->n || seen[e]) {
                    rc = d2_fail(err, D2_EFORMAT, "%s/%s: index[%d] = %d is out of range or "
                                 "repeated", dir, si->file, i, e);
                    break;
                }
                seen[e] = 1;
                const float *src = rowbuf + (size_t)i * z->P;
                for (int j = 0; j < z->P; j++)
                    if (!isfinite(src[j])) {
                        rc = d2_fail(err, D2_EFORMAT, "%s/%s: theta[%d][%d] is not finite", dir,
                                     si->file, i, j);
                        break;
                    }
                memcpy(z->theta + (size_t)e * z->P, src, sizeof(float) * (size_t)z->P);
            }
        }
        free(rowbuf);
        rowbuf = NULL;
        st_free(&f);
    }
done:
    free(seen);
    free(index);
    return rc;
}

/* Source data in feature space (in-house zoos), checked against the
 * fingerprints recorded at build time. */
static int load_source_data(zoo *z, d2_error *err)
{
    data_source src;
    int rc = data_source_load(&src, z->source, err);
    if (rc)
        return d2_wrap(err, "zoo: loading its source");
    char fp[65];
    if ((rc = feature_map_apply(&z->fmap, &src.train, &z->train_feat, err)) ||
        (rc = feature_map_apply(&z->fmap, &src.test, &z->test_feat, err))) {
        data_source_free(&src);
        return d2_wrap(err, "zoo: source '%s'", z->source);
    }
    data_source_free(&src);
    dataset_fingerprint(&z->train_feat, fp);
    if (strcmp(fp, z->train_fp))
        return d2_fail(err, D2_EINVAL, "zoo: source '%s' is not the data the zoo was built on "
                       "(train split fingerprint %.16s..., expected %.16s...)", z->source, fp,
                       z->train_fp);
    dataset_fingerprint(&z->test_feat, fp);
    if (strcmp(fp, z->test_fp))
        return d2_fail(err, D2_EINVAL, "zoo: source '%s' is not the data the zoo was built on "
                       "(test split fingerprint %.16s..., expected %.16s...)", z->source, fp,
                       z->test_fp);
    if ((rc = class_index_build(&z->train_ci, &z->train_feat, err)) ||
        (rc = class_index_build(&z->test_ci, &z->test_feat, err)))
        return rc;
    for (int i = 0; i < z->n; i++)
        for (int j = 0; j < z->e[i].way; j++)
            if (z->e[i].classes[j] >= z->train_feat.classes)
                return d2_fail(err, D2_EFORMAT, "zoo: entry %d uses class %d; source '%s' has %d",
                               i, z->e[i].classes[j], z->source, z->train_feat.classes);
    z->has_data = 1;
    return 0;
}

/* Imported zoos: every entry's own data set, checked against its data_fp. */
static int load_entry_data(zoo *z, const char *dir, d2_error *err)
{
    z->entry_feat = calloc((size_t)z->n, sizeof *z->entry_feat);
    if (!z->entry_feat)
        return d2_fail(err, D2_ENOMEM, "zoo_load: out of memory");
    for (int i = 0; i < z->n; i++) {
        char path[4096], fp[65];
        snprintf(path, sizeof path, "%s/%s", dir, z->e[i].data_path);
        dataset raw;
        int rc = data_load_safetensors(&raw, path, err);
        if (rc)
            return d2_wrap(err, "zoo entry %d", i);
        dataset_fingerprint(&raw, fp);
        if (strcmp(fp, z->e[i].data_fp)) {
            dataset_free(&raw);
            return d2_fail(err, D2_EFORMAT, "%s: data fingerprint %.16s... does not match the "
                           "manifest's %.16s... (file changed or corrupt)", path, fp,
                           z->e[i].data_fp);
        }
        rc = feature_map_apply(&z->fmap, &raw, &z->entry_feat[i], err);
        dataset_free(&raw);
        if (rc)
            return d2_wrap(err, "%s", path);
    }
    z->has_data = 1;
    return 0;
}

static int load_dir(zoo *z, const char *dir, int allow_part, int load_data, d2_error *err)
{
    memset(z, 0, sizeof *z);
    if (!dir)
        return d2_fail(err, D2_EINVAL, "zoo_load: no directory");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, ZOO_MANIFEST);
    unsigned char *text;
    size_t len;
    int rc = d2_read_file(path, &text, &len, (size_t)1 << 30, err);
    if (rc)
        return rc;
    zoo_files files;
    rc = zoo_manifest_decode(z, &files, (const char *)text, len, path, err);
    free(text);
    if (rc) {
        zoo_free(z);
        return rc;
    }
    if (z->part.count && !allow_part) {
        rc = d2_fail(err, D2_EINVAL, "%s: a shard of a zoo build (shard %d of %d, tasks %d..%d "
                     "of %d), not a whole zoo; join the shards with 'd2nwg zoo merge'", dir,
                     z->part.index, z->part.count, z->part.first, z->part.first + z->n - 1,
                     z->part.tasks);
        free(files.shards);
        zoo_free(z);
        return rc;
    }
    memcpy(z->part.fmap_sha256, files.fmap_sha256, sizeof files.fmap_sha256);
    int imported = !strcmp(z->source, "import");
    for (int i = 0; i < z->n && !rc; i++)
        if (imported != (z->e[i].data_path != NULL))
            rc = d2_fail(err, D2_EFORMAT, "%s: entries[%d].data_path: %s", path, i,
                         imported ? "required in an imported zoo" : "only imported zoos have one");
    if (!rc && imported && z->n_heldout)
        rc = d2_fail(err, D2_EFORMAT, "%s: heldout: an imported zoo has none", path);
    if (!rc)
        rc = load_fmap(z, dir, &files, err);
    if (!rc)
        rc = load_shards(z, dir, &files, err);
    free(files.shards);
    if (!rc) {
        char fp[65];
        zoo_fingerprint(z, fp);
        if (strcmp(fp, z->fingerprint))
            rc = d2_fail(err, D2_EFORMAT, "%s: zoo fingerprint %.16s... does not match the "
                         "manifest's %.16s... (content changed)", dir, fp, z->fingerprint);
    }
    if (!rc && load_data)
        rc = imported ? load_entry_data(z, dir, err) : load_source_data(z, err);
    if (rc)
        zoo_free(z);
    return rc;
}

int zoo_load(zoo *z, const char *dir, int load_data, d2_error *err)
{
    return load_dir(z, dir, 0, load_data, err);
}

int zoo_load_any(zoo *z, const char *dir, d2_error *err)
{
    return load_dir(z, dir, 1, 0, err);
}
