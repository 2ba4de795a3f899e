/* zoo_manifest.c - manifest.json of a saved zoo: encoding the zoo's metadata
 * with jansson, and decoding it back with a check of every field. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zoo_internal.h"

#define ZOO_FORMAT "d2nwg-zoo"
#define ZOO_VERSION 1

/* ---- encoding ---- */

/* The shortest decimal that reads back as the same float, as a JSON real. */
static json_t *float_json(float v)
{
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if ((float)strtod(buf, NULL) == v)
            break;
    }
    return json_real(strtod(buf, NULL));
}

static json_t *acc_json(float v) { return isfinite(v) ? float_json(v) : json_null(); }

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9) | JSON_ENCODE_ANY)

static int sb_add(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (*len + n + 1 > nc)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return 0;
}

static int sb_json(char **buf, size_t *len, size_t *cap, const json_t *v)
{
    char *t = json_dumps(v, DUMP_FLAGS);
    if (!t)
        return -1;
    int rc = sb_add(buf, len, cap, t);
    free(t);
    return rc;
}

/* One top-level key per line; arrays one element per line; each value compact. */
static char *dump_manifest(json_t *root)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int bad = sb_add(&buf, &len, &cap, "{\n");
    const char *key;
    json_t *val;
    size_t left = json_object_size(root);
    json_object_foreach(root, key, val) {
        json_t *k = json_string(key);
        bad |= !k || sb_add(&buf, &len, &cap, "  ") || sb_json(&buf, &len, &cap, k) ||
               sb_add(&buf, &len, &cap, ": ");
        json_decref(k);
        if (json_is_array(val) && json_array_size(val) > 0) {
            bad |= sb_add(&buf, &len, &cap, "[\n");
            size_t n = json_array_size(val);
            for (size_t i = 0; i < n && !bad; i++)
                bad |= sb_add(&buf, &len, &cap, "    ") ||
                       sb_json(&buf, &len, &cap, json_array_get(val, i)) ||
                       sb_add(&buf, &len, &cap, i + 1 < n ? ",\n" : "\n");
            bad |= sb_add(&buf, &len, &cap, "  ]");
        } else {
            bad |= sb_json(&buf, &len, &cap, val);
        }
        bad |= sb_add(&buf, &len, &cap, --left ? ",\n" : "\n");
    }
    bad |= sb_add(&buf, &len, &cap, "}\n");
    if (bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

static json_t *int_array(const int *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *seed_json(uint64_t s)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)s);
    return json_string(buf);
}

static json_t *groups_json(const zoo *z)
{
    json_t *a = json_array();
    for (int g = 0; g < z->ngroups; g++) {
        const zoo_group *grp = &z->groups[g];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(grp->name));
        json_object_set_new(o, "part", json_integer(grp->part));
        json_object_set_new(o, "first", json_integer(grp->first));
        json_object_set_new(o, "count", json_integer(grp->count));
        json_array_append_new(a, o);
    }
    return a;
}

int zoo_manifest_encode(const zoo *z, const zoo_files *files, char **text, d2_error *err)
{
    *text = NULL;
    json_t *root = json_object();
    if (!root)
        return d2_fail(err, D2_ENOMEM, "manifest: out of memory");
    char feature[256];
    if (z->spec.has_cnn)
        snprintf(feature, sizeof feature, "cnn:%s", z->spec.cnn_path);
    else if (z->spec.has_pca)
        snprintf(feature, sizeof feature, "pca:%d", z->spec.pca_dim);
    else
        snprintf(feature, sizeof feature, "identity");
    json_object_set_new(root, "format", json_string(ZOO_FORMAT));
    json_object_set_new(root, "version", json_integer(ZOO_VERSION));
    json_object_set_new(root, "source", json_string(z->source));
    json_object_set_new(root, "spec", json_string(z->spec.text));
    json_object_set_new(root, "feature", json_string(feature));
    json_object_set_new(root, "input_dim", json_integer(files->input_dim));
    json_object_set_new(root, "way", json_integer(z->way));
    if (z->min_way > 0 && z->min_way < z->way) // any-way zoos only: fixed-way manifests stay
        json_object_set_new(root, "min_way", json_integer(z->min_way));
    if (zoo_heldout_way(z) != z->way)
        json_object_set_new(root, "heldout_way", json_integer(z->heldout_way));
    json_object_set_new(root, "per_class", json_integer(z->per_class));
    json_object_set_new(root, "seed", seed_json(z->seed));
    json_t *tr = json_object();
    json_object_set_new(tr, "epochs", json_integer(z->train.epochs));
    json_object_set_new(tr, "batch", json_integer(z->train.batch));
    json_object_set_new(tr, "lr", float_json(z->train.lr));
    json_object_set_new(tr, "weight_decay", float_json(z->train.weight_decay));
    json_object_set_new(tr, "min_steps", json_integer(z->train.min_steps));
    json_object_set_new(root, "train", tr);
    json_t *sfp = json_object();
    json_object_set_new(sfp, "train", json_string(z->train_fp));
    json_object_set_new(sfp, "test", json_string(z->test_fp));
    json_object_set_new(root, "source_fingerprints", sfp);
    json_object_set_new(root, "tasks", json_integer(z->part.count ? z->part.tasks : z->n));
    if (z->part.count)
        json_object_set_new(root, "shard",
                            json_pack("{s:i,s:i,s:i,s:i}", "index", z->part.index, "of",
                                      z->part.count, "first", z->part.first, "rows", z->n));
    json_object_set_new(root, "params", json_integer(z->P));
    if (files->has_fmap) {
        json_t *fm = json_object();
        json_object_set_new(fm, "file", json_string(ZOO_FEATURE_MAP));
        json_object_set_new(fm, "sha256", json_string(files->fmap_sha256));
        json_object_set_new(root, "feature_map", fm);
    } else {
        json_object_set_new(root, "feature_map", json_null());
    }
    json_t *sh = json_array();
    for (int i = 0; i < files->nshards; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(files->shards[i].file));
        json_object_set_new(o, "rows", json_integer(files->shards[i].rows));
        json_object_set_new(o, "sha256", json_string(files->shards[i].sha256));
        json_array_append_new(sh, o);
    }
    json_object_set_new(root, "shards", sh);
    json_t *ho = json_array();
    for (int i = 0; i < z->n_heldout; i++)
        json_array_append_new(ho, int_array(z->heldout[i], zoo_heldout_way(z)));
    json_object_set_new(root, "heldout", ho);
    if (z->ngroups)
        json_object_set_new(root, "groups", groups_json(z));
    json_t *es = json_array();
    for (int i = 0; i < z->n; i++) {
        const zoo_entry *e = &z->e[i];
        json_t *o = json_object();
        json_object_set_new(o, "classes", int_array(e->classes, e->way));
        json_object_set_new(o, "seed", seed_json(e->seed));
        json_object_set_new(o, "data_fp", json_string(e->data_fp));
        json_object_set_new(o, "train_acc", acc_json(e->train_acc));
        json_object_set_new(o, "query_acc", acc_json(e->query_acc));
        json_object_set_new(o, "query_loss", acc_json(e->query_loss));
        if (e->data_path)
            json_object_set_new(o, "data_path", json_string(e->data_path));
        json_array_append_new(es, o);
    }
    json_object_set_new(root, "entries", es);
    json_object_set_new(root, "fingerprint", json_string(z->fingerprint));
    *text = dump_manifest(root);
    json_decref(root);
    if (!*text)
        return d2_fail(err, D2_ENOMEM, "manifest: out of memory encoding JSON");
    return 0;
}

/* ---- decoding ---- */

typedef struct mctx {
    const char *path;
    d2_error *err;
} mctx;

static int bad(mctx *m, const char *field, const char *why)
{
    return d2_fail(m->err, D2_EFORMAT, "%s: %s: %s", m->path, field, why);
}

static int get_int(mctx *m, json_t *o, const char *key, const char *field, long long lo,
                   long long hi, int *out)
{
    json_t *v = json_object_get(o, key);
    char why[96];
    snprintf(why, sizeof why, "must be an integer in %lld..%lld", lo, hi);
    if (!v || !json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bad(m, field, why);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_str(mctx *m, json_t *o, const char *key, const char *field, const char **out)
{
    json_t *v = json_object_get(o, key);
    if (!v || !json_is_string(v))
        return bad(m, field, "must be a string");
    *out = json_string_value(v);
    return 0;
}

static int get_seed(mctx *m, json_t *o, const char *key, const char *field, uint64_t *out)
{
    const char *s = NULL;
    int rc = get_str(m, o, key, field, &s);
    if (rc)
        return rc;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return bad(m, field, "must be a decimal string of an unsigned 64-bit seed");
    *out = (uint64_t)v;
    return 0;
}

/* number or null (null -> NaN) */
static int get_acc(mctx *m, json_t *o, const char *key, const char *field, float *out)
{
    json_t *v = json_object_get(o, key);
    if (v && json_is_null(v)) {
        *out = NAN;
        return 0;
    }
    if (!v || !json_is_number(v) || !isfinite(json_number_value(v)))
        return bad(m, field, "must be a number or null");
    *out = (float)json_number_value(v);
    return 0;
}

static int is_hex64(const char *s, int allow_empty)
{
    if (allow_empty && !*s)
        return 1;
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int get_hex(mctx *m, json_t *o, const char *key, const char *field, int allow_empty,
                   char out[65])
{
    const char *s = NULL;
    int rc = get_str(m, o, key, field, &s);
    if (rc)
        return rc;
    if (!is_hex64(s, allow_empty))
        return bad(m, field, "must be 64 lowercase hex digits");
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

/* int array of exactly n distinct values in 0..max-1 into out */
static int get_classes(mctx *m, json_t *a, const char *field, int n, int max, int *out)
{
    if (!json_is_array(a) || (int)json_array_size(a) != n) {
        char why[64];
        snprintf(why, sizeof why, "must be an array of %d class ids", n);
        return bad(m, field, why);
    }
    for (int i = 0; i < n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= max)
            return bad(m, field, "class ids must be integers in range");
        out[i] = (int)json_integer_value(v);
        for (int j = 0; j < i; j++)
            if (out[j] == out[i])
                return bad(m, field, "class ids must be distinct");
    }
    return 0;
}

/* A relative path inside the zoo directory: no "..", not absolute, no "//". */
static int safe_relpath(const char *p)
{
    if (!*p || p[0] == '/' || strstr(p, "//") || strlen(p) > 200)
        return 0;
    for (const char *s = p; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '\\')
            return 0;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if ((len == 2 && !strncmp(s, "..", 2)) || (len == 1 && s[0] == '.'))
            return 0;
        s += len + (e ? 1 : 0);
    }
    return 1;
}

/* "shard" (zoo build --shard): which shard of the build, and its task range,
 * which must be zoo_shard_range's; then z->n is the shard's rows. */
static int decode_part(mctx *m, zoo *z, json_t *root)
{
    json_t *p = json_object_get(root, "shard");
    if (!p)
        return 0;
    if (!json_is_object(p))
        return bad(m, "shard", "must be an object {index, of, first, rows}");
    zoo_part *pt = &z->part;
    int rows, rc;
    pt->tasks = z->n;
    if ((rc = get_int(m, p, "of", "shard.of", 1, pt->tasks, &pt->count)) ||
        (rc = get_int(m, p, "index", "shard.index", 0, pt->count - 1, &pt->index)) ||
        (rc = get_int(m, p, "first", "shard.first", 0, pt->tasks - 1, &pt->first)) ||
        (rc = get_int(m, p, "rows", "shard.rows", 1, pt->tasks, &rows)))
        return rc;
    int want_first, want_rows;
    zoo_shard_range(pt->tasks, pt->index, pt->count, &want_first, &want_rows);
    if (pt->first != want_first || rows != want_rows) {
        char why[128];
        snprintf(why, sizeof why, "tasks %d..%d are not shard %d of %d's range %d..%d",
                 pt->first, pt->first + rows - 1, pt->index, pt->count, want_first,
                 want_first + want_rows - 1);
        return bad(m, "shard", why);
    }
    z->n = rows;
    return 0;
}

static int decode_header(mctx *m, zoo *z, zoo_files *files, json_t *root)
{
    const char *s = NULL;
    int v, rc;
    if ((rc = get_str(m, root, "format", "format", &s)))
        return rc;
    if (strcmp(s, ZOO_FORMAT))
        return bad(m, "format", "is not \"" ZOO_FORMAT "\"");
    if ((rc = get_int(m, root, "version", "version", 1, 1000, &v)))
        return rc;
    if (v != ZOO_VERSION)
        return bad(m, "version", "unsupported zoo format version");
    if ((rc = get_str(m, root, "source", "source", &s)))
        return rc;
    if (!*s || strlen(s) >= sizeof z->source)
        return bad(m, "source", "must be a non-empty string under 256 bytes");
    snprintf(z->source, sizeof z->source, "%s", s);
    if ((rc = get_str(m, root, "spec", "spec", &s)))
        return rc;
    d2_error e2;
    if (target_spec_parse(&z->spec, s, &e2))
        return bad(m, "spec", e2.msg);
    if ((rc = get_int(m, root, "input_dim", "input_dim", 1, 1 << 24, &files->input_dim)) ||
        (rc = get_int(m, root, "way", "way", 1, D2_MAX_WAY, &z->way)) ||
        (rc = get_int(m, root, "per_class", "per_class", 0, 1 << 30, &z->per_class)) ||
        (rc = get_seed(m, root, "seed", "seed", &z->seed)) ||
        (rc = get_int(m, root, "tasks", "tasks", 1, 10000000, &z->n)) ||
        (rc = get_int(m, root, "params", "params", 1, 1 << 30, &z->P)) ||
        (rc = decode_part(m, z, root)))
        return rc;
    if ((size_t)z->P != z->spec.numel)
        return bad(m, "params", "does not match the spec's parameter count");
    if (z->way > z->spec.out_dim)
        return bad(m, "way", "exceeds the spec's outputs");
    z->min_way = z->way;
    if (json_object_get(root, "min_way") &&
        (rc = get_int(m, root, "min_way", "min_way", 2, z->way, &z->min_way)))
        return rc;
    if (json_object_get(root, "heldout_way") &&
        (rc = get_int(m, root, "heldout_way", "heldout_way", 1, z->way, &z->heldout_way)))
        return rc;
    if (!z->spec.has_pca && !z->spec.has_cnn && files->input_dim != z->spec.feat_dim)
        return bad(m, "input_dim", "does not match the spec's input size");
    json_t *tr = json_object_get(root, "train");
    if (!json_is_object(tr))
        return bad(m, "train", "must be an object");
    json_t *lr = json_object_get(tr, "lr"), *wd = json_object_get(tr, "weight_decay");
    if ((rc = get_int(m, tr, "epochs", "train.epochs", 0, 1000000, &z->train.epochs)) ||
        (rc = get_int(m, tr, "batch", "train.batch", 0, 1 << 30, &z->train.batch)) ||
        (rc = get_int(m, tr, "min_steps", "train.min_steps", 0, 100000000, &z->train.min_steps)))
        return rc;
    if (!json_is_number(lr) || !json_is_number(wd))
        return bad(m, "train", "lr and weight_decay must be numbers");
    z->train.lr = (float)json_number_value(lr);
    z->train.weight_decay = (float)json_number_value(wd);
    json_t *sfp = json_object_get(root, "source_fingerprints");
    if (!json_is_object(sfp))
        return bad(m, "source_fingerprints", "must be an object");
    if ((rc = get_hex(m, sfp, "train", "source_fingerprints.train", 1, z->train_fp)) ||
        (rc = get_hex(m, sfp, "test", "source_fingerprints.test", 1, z->test_fp)) ||
        (rc = get_hex(m, root, "fingerprint", "fingerprint", 0, z->fingerprint)))
        return rc;
    json_t *fm = json_object_get(root, "feature_map");
    if (!fm)
        return bad(m, "feature_map", "is missing");
    files->has_fmap = !json_is_null(fm);
    if (files->has_fmap != z->spec.has_pca)
        return bad(m, "feature_map", z->spec.has_pca ? "is required by the spec's pca layer"
                                                     : "must be null without a pca layer");
    if (files->has_fmap) {
        if (!json_is_object(fm) || (rc = get_str(m, fm, "file", "feature_map.file", &s)))
            return rc ? rc : bad(m, "feature_map", "must be an object or null");
        if (strcmp(s, ZOO_FEATURE_MAP))
            return bad(m, "feature_map.file", "must be \"" ZOO_FEATURE_MAP "\"");
        if ((rc = get_hex(m, fm, "sha256", "feature_map.sha256", 0, files->fmap_sha256)))
            return rc;
    }
    return 0;
}

static int decode_shards(mctx *m, const zoo *z, zoo_files *files, json_t *root)
{
    json_t *sh = json_object_get(root, "shards");
    if (!json_is_array(sh) || json_array_size(sh) == 0 || json_array_size(sh) > 100000)
        return bad(m, "shards", "must be a non-empty array");
    files->nshards = (int)json_array_size(sh);
    files->shards = calloc((size_t)files->nshards, sizeof *files->shards);
    if (!files->shards)
        return d2_fail(m->err, D2_ENOMEM, "%s: out of memory", m->path);
    long total = 0;
    for (int i = 0; i < files->nshards; i++) {
        json_t *o = json_array_get(sh, (size_t)i);
        char field[64];
        snprintf(field, sizeof field, "shards[%d]", i);
        if (!json_is_object(o))
            return bad(m, field, "must be an object");
        const char *f = NULL;
        int rc;
        char fld[80];
        snprintf(fld, sizeof fld, "%s.file", field);
        if ((rc = get_str(m, o, "file", fld, &f)))
            return rc;
        char want[32];
        snprintf(want, sizeof want, "weights-%04d.safetensors", i);
        if (strcmp(f, want))
            return bad(m, fld, "must name weights-NNNN.safetensors in order");
        snprintf(files->shards[i].file, sizeof files->shards[i].file, "%s", f);
        snprintf(fld, sizeof fld, "%s.rows", field);
        if ((rc = get_int(m, o, "rows", fld, 1, z->n, &files->shards[i].rows)))
            return rc;
        snprintf(fld, sizeof fld, "%s.sha256", field);
        if ((rc = get_hex(m, o, "sha256", fld, 0, files->shards[i].sha256)))
            return rc;
        total += files->shards[i].rows;
    }
    if (total != z->n)
        return bad(m, "shards", "rows do not add up to the task count");
    return 0;
}

/* "groups" (optional): [{"name", "part", "first", "count"}], contiguous. */
static int decode_groups(mctx *m, zoo *z, json_t *root)
{
    json_t *gs = json_object_get(root, "groups");
    if (!gs)
        return 0;
    if (!json_is_array(gs) || json_array_size(gs) > (1u << 20))
        return bad(m, "groups", "must be an array of class groups");
    int n = (int)json_array_size(gs), next = 0;
    if (n && !(z->groups = calloc((size_t)n, sizeof *z->groups)))
        return d2_fail(m->err, D2_ENOMEM, "%s: out of memory", m->path);
    for (int g = 0; g < n; g++) {
        json_t *o = json_array_get(gs, (size_t)g);
        zoo_group *grp = &z->groups[g];
        char field[48];
        const char *name;
        snprintf(field, sizeof field, "groups[%d]", g);
        int rc;
        if (!json_is_object(o))
            return bad(m, field, "must be an object");
        if ((rc = get_str(m, o, "name", field, &name)) ||
            (rc = get_int(m, o, "part", field, 0, DATA_MAX_PARTS - 1, &grp->part)) ||
            (rc = get_int(m, o, "first", field, 0, 1 << 24, &grp->first)) ||
            (rc = get_int(m, o, "count", field, 1, 1 << 24, &grp->count)))
            return rc;
        if (grp->first != next)
            return bad(m, field, "groups must cover the classes in order");
        next = grp->first + grp->count;
        snprintf(grp->name, sizeof grp->name, "%s", name);
        z->ngroups++;
    }
    return 0;
}

static int decode_entries(mctx *m, zoo *z, json_t *root)
{
    int grc = decode_groups(m, z, root);
    if (grc)
        return grc;
    json_t *ho = json_object_get(root, "heldout");
    if (!json_is_array(ho) || json_array_size(ho) > ZOO_MAX_HELDOUT)
        return bad(m, "heldout", "must be an array of class combinations");
    z->n_heldout = (int)json_array_size(ho);
    if (z->n_heldout) {
        z->heldout = calloc((size_t)z->n_heldout, sizeof *z->heldout);
        if (!z->heldout)
            return d2_fail(m->err, D2_ENOMEM, "%s: out of memory", m->path);
    }
    for (int i = 0; i < z->n_heldout; i++) {
        char field[48];
        snprintf(field, sizeof field, "heldout[%d]", i);
        int rc = get_classes(m, json_array_get(ho, (size_t)i), field, zoo_heldout_way(z),
                             1 << 24, z->heldout[i]);
        if (rc)
            return rc;
        for (int j = 1; j < zoo_heldout_way(z); j++)
            if (z->heldout[i][j] <= z->heldout[i][j - 1])
                return bad(m, field, "class ids must be ascending");
    }
    json_t *es = json_object_get(root, "entries");
    if (!json_is_array(es) || (int)json_array_size(es) != z->n)
        return bad(m, "entries", z->part.count ? "must be an array with one object per task of "
                                                 "the shard" : "must be an array with one object "
                                                 "per task");
    z->e = calloc((size_t)z->n, sizeof *z->e);
    if (!z->e)
        return d2_fail(m->err, D2_ENOMEM, "%s: out of memory", m->path);
    for (int i = 0; i < z->n; i++) {
        json_t *o = json_array_get(es, (size_t)i);
        zoo_entry *e = &z->e[i];
        char field[48], fld[80];
        snprintf(field, sizeof field, "entries[%d]", i);
        if (!json_is_object(o))
            return bad(m, field, "must be an object");
        json_t *cl = json_object_get(o, "classes");
        snprintf(fld, sizeof fld, "%s.classes", field);
        e->way = json_is_array(cl) ? (int)json_array_size(cl) : 0;
        if (e->way < 1 || e->way > z->spec.out_dim)
            return bad(m, fld, "must list between 1 and the spec's outputs classes");
        int rc = get_classes(m, cl, fld, e->way, 1 << 24, e->classes);
        if (rc)
            return rc;
        snprintf(fld, sizeof fld, "%s.seed", field);
        if ((rc = get_seed(m, o, "seed", fld, &e->seed)))
            return rc;
        snprintf(fld, sizeof fld, "%s.data_fp", field);
        if ((rc = get_hex(m, o, "data_fp", fld, 0, e->data_fp)))
            return rc;
        snprintf(fld, sizeof fld, "%s.train_acc", field);
        if ((rc = get_acc(m, o, "train_acc", fld, &e->train_acc)))
            return rc;
        snprintf(fld, sizeof fld, "%s.query_acc", field);
        if ((rc = get_acc(m, o, "query_acc", fld, &e->query_acc)))
            return rc;
        snprintf(fld, sizeof fld, "%s.query_loss", field);
        if ((rc = get_acc(m, o, "query_loss", fld, &e->query_loss)))
            return rc;
        json_t *dp = json_object_get(o, "data_path");
        if (dp) {
            snprintf(fld, sizeof fld, "%s.data_path", field);
            if (!json_is_string(dp) || !safe_relpath(json_string_value(dp)))
                return bad(m, fld, "must be a relative path inside the zoo directory");
            if (!(e->data_path = strdup(json_string_value(dp))))
                return d2_fail(m->err, D2_ENOMEM, "%s: out of memory", m->path);
        }
    }
    return 0;
}

int zoo_manifest_decode(zoo *z, zoo_files *files, const char *text, size_t len,
                        const char *path, d2_error *err)
{
    memset(files, 0, sizeof *files);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return d2_fail(err, D2_EFORMAT, "%s: line %d, column %d: %s", path, je.line, je.column,
                       je.text);
    mctx m = {.path = path, .err = err};
    int rc = json_is_object(root) ? 0 : bad(&m, "top level", "must be a JSON object");
    if (!rc)
        rc = decode_header(&m, z, files, root);
    if (!rc)
        rc = decode_shards(&m, z, files, root);
    if (!rc)
        rc = decode_entries(&m, z, root);
    json_decref(root);
    if (rc) {
        free(files->shards);
        files->shards = NULL;
    }
    return rc;
}
