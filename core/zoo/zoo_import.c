/* zoo_import.c - a zoo from the user's own checkpoints: a JSONL manifest, one
 * checkpoint + dataset per line, each validated against the spec; bad lines
 * are reported by number and skipped. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "safetensors.h"
#include "zoo_internal.h"

#define IMPORT_MAX_MANIFEST ((size_t)256 << 20)
#define IMPORT_MAX_DATA ((size_t)1 << 32)

typedef struct import_state {
    zoo z;
    int have_spec;
    int cap;             /* entries allocated */
    float *m0_weight;    /* first checkpoint's module 0 (pca specs) */
    float *m0_bias;
    size_t m0_numel;
    st_dtype m0_wtype, m0_btype; /* their dtypes in the first checkpoint */
    const char *base;    /* directory of the manifest */
    const char *out_dir;
    int dirs_made;
    int made[2];         /* out_dir, out_dir/data: created by this import */
    zoo_import_report *rep;
} import_state;

static int add_reject(zoo_import_report *rep, int line, const char *msg)
{
    zoo_import_reject *r = realloc(rep->rejects, sizeof *r * (size_t)(rep->rejected + 1));
    if (!r)
        return D2_ENOMEM;
    rep->rejects = r;
    r[rep->rejected].line = line;
    snprintf(r[rep->rejected].msg, sizeof r[rep->rejected].msg, "%s", msg);
    rep->rejected++;
    return 0;
}

void zoo_import_report_free(zoo_import_report *rep)
{
    if (!rep)
        return;
    free(rep->rejects);
    memset(rep, 0, sizeof *rep);
}

static void resolve(char *out, size_t n, const char *base, const char *p)
{
    if (p[0] == '/' || !base[0])
        snprintf(out, n, "%s", p);
    else
        snprintf(out, n, "%s/%s", base, p);
}

static int make_dirs(import_state *st, d2_error *err)
{
    if (st->dirs_made)
        return 0;
    char path[4096];
    const char *dirs[2] = {st->out_dir, "data"};
    for (int i = 0; i < 2; i++) {
        if (i == 0)
            snprintf(path, sizeof path, "%s", dirs[0]);
        else
            snprintf(path, sizeof path, "%s/%s", st->out_dir, dirs[1]);
        struct stat sb;
        if (mkdir(path, 0755) == 0)
            st->made[i] = 1;
        else if (!(errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
            return d2_fail(err, D2_EIO, "%s: cannot create directory: %s", path, strerror(errno));
    }
    st->dirs_made = 1;
    return 0;
}

/* x rounded to dtype t (F16, BF16: the value that dtype stores; wider: x). */
static float round_to(st_dtype t, float x)
{
    if (t == ST_F16)
        return st_f16_to_f32(st_f32_to_f16(x));
    if (t == ST_BF16)
        return st_bf16_to_f32(st_f32_to_bf16(x));
    return x;
}

/* Do a (stored as ta) and b (stored as tb) hold the same value? Both are
 * compared at the coarser of the two precisions, so an F16 copy of an F32
 * feature map matches it. */
static int same_value(float a, st_dtype ta, float b, st_dtype tb)
{
    float x = round_to(tb, a), y = round_to(ta, b);
    return fabsf(x - y) <= 1e-6f * (1.0f + fabsf(x));
}

/* The first difference between module 0 of f (w, b as floats) and the
 * zoo's; 0 when none. */
static int module0_differs(const import_state *st, const st_tensor *w, const float *wf,
                           const st_tensor *b, const float *bf, d2_error *err)
{
    for (size_t i = 0; i < w->numel; i++)
        if (!same_value(st->m0_weight[i], st->m0_wtype, wf[i], w->dtype))
            return d2_fail(err, D2_EINVAL, "tensor '0.weight' (the frozen feature map) differs "
                           "from the first imported checkpoint's at element %zu", i);
    for (int i = 0; i < st->z.spec.pca_dim; i++)
        if (!same_value(st->m0_bias[i], st->m0_btype, bf[i], b->dtype))
            return d2_fail(err, D2_EINVAL, "tensor '0.bias' (the frozen feature map) differs "
                           "from the first imported checkpoint's at element %d", i);
    return 0;
}

/* Module 0 of a pca spec must be the same in every checkpoint of the zoo
 * (after conversion: F32 and F16 copies of the same map are the same). */
static int check_module0(import_state *st, const st_file *f, d2_error *err)
{
    if (!st->z.spec.has_pca)
        return 0;
    const st_tensor *w = st_find(f, "0.weight"), *b = st_find(f, "0.bias");
    float *wf = malloc(sizeof(float) * w->numel), *bf = malloc(sizeof(float) * b->numel);
    int rc = 0;
    if (!wf || !bf) {
        rc = d2_fail(err, D2_ENOMEM, "out of memory");
    } else if ((rc = st_to_f32(w, wf, err)) || (rc = st_to_f32(b, bf, err))) {
        /* message set */
    } else if (!st->m0_weight) {
        st->m0_weight = wf;
        st->m0_bias = bf;
        st->m0_numel = w->numel;
        st->m0_wtype = w->dtype;
        st->m0_btype = b->dtype;
        return 0;
    } else if (w->numel != st->m0_numel) {
        rc = d2_fail(err, D2_EINVAL, "tensor '0.weight' has %lld inputs, the zoo's feature map "
                     "has %zu", (long long)w->shape[1], st->m0_numel / (size_t)st->z.spec.pca_dim);
    } else {
        rc = module0_differs(st, w, wf, b, bf, err);
    }
    free(wf);
    free(bf);
    return rc;
}

/* metrics: the first of `keys` present; NaN when none. */
static int metric(json_t *metrics, const char *const *keys, float lo, float hi, float *out,
                  d2_error *err)
{
    *out = NAN;
    if (!metrics)
        return 0;
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(metrics, keys[i]);
        if (!v || json_is_null(v))
            continue;
        double d = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(d >= lo && d <= hi))
            return d2_fail(err, D2_EINVAL, "metrics.%s must be a number in [%g, %g]", keys[i],
                           (double)lo, (double)hi);
        *out = (float)d;
        return 0;
    }
    return 0;
}

static int grow(import_state *st, d2_error *err)
{
    zoo *z = &st->z;
    if (z->n < st->cap)
        return 0;
    int nc = st->cap ? 2 * st->cap : 64;
    zoo_entry *e = realloc(z->e, sizeof *e * (size_t)nc);
    if (!e)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    z->e = e;
    float *t = realloc(z->theta, sizeof(float) * (size_t)nc * (size_t)z->P);
    if (!t)
        return d2_fail(err, D2_ENOMEM, "out of memory");
    z->theta = t;
    st->cap = nc;
    return 0;
}

/* One manifest line. Returns 0 when imported, > 0 when rejected (message in
 * err), < 0 on a failure that stops the import. */
/* The line's fields: "weights" and "dataset" paths, an optional "spec" (the
 * first one sets the zoo's; later ones must match) and "metrics". 1: rejected. */
static int import_fields(import_state *st, json_t *o, json_t **w, json_t **d, json_t **mt,
                         d2_error *err)
{
    zoo *z = &st->z;
    if (!json_is_object(o))
        return d2_fail(err, D2_EFORMAT, "not a JSON object"), 1;
    json_t *sp = json_object_get(o, "spec");
    *w = json_object_get(o, "weights");
    *d = json_object_get(o, "dataset");
    *mt = json_object_get(o, "metrics");
    if (!json_is_string(*w) || !json_is_string(*d))
        return d2_fail(err, D2_EFORMAT, "\"weights\" and \"dataset\" must be strings (file paths)"),
               1;
    if ((sp && !json_is_string(sp)) || (*mt && !json_is_object(*mt)))
        return d2_fail(err, D2_EFORMAT, "\"spec\" must be a string and \"metrics\" an object"), 1;
    if (!sp) {
        if (!st->have_spec)
            return d2_fail(err, D2_EINVAL, "no spec: give --spec or a \"spec\" field"), 1;
        return 0;
    }
    target_spec ls;
    if (target_spec_parse(&ls, json_string_value(sp), err))
        return 1;
    if (!st->have_spec) {
        z->spec = ls;
        z->P = (int)ls.numel;
        st->have_spec = 1;
    } else if (strcmp(ls.text, z->spec.text)) {
        return d2_fail(err, D2_EINVAL, "spec '%s' differs from the zoo's '%s'", ls.text,
                       z->spec.text), 1;
    }
    return 0;
}

/* The head's file: theta (into the zoo's next slot) and its frozen module 0. */
static int import_head(import_state *st, const st_file *f, const char *wpath, float *theta,
                       feature_map *fm, d2_error *err)
{
    zoo *z = &st->z;
    if (target_read_theta(&z->spec, f, theta, err) || check_module0(st, f, err) ||
        target_read_feature_map(&z->spec, f, fm, err)) {
        d2_wrap(err, "%s", wpath);
        return 1;
    }
    return 0;
}

/* The data set's file (bytes kept for the copy), checked against the head. */
static int import_data(import_state *st, const char *dpath, const feature_map *fm,
                       unsigned char **bytes, size_t *nbytes, dataset *raw, d2_error *err)
{
    zoo *z = &st->z;
    if (d2_read_file(dpath, bytes, nbytes, IMPORT_MAX_DATA, err) ||
        data_parse_safetensors(raw, *bytes, *nbytes, err))
        return d2_wrap(err, "%s", dpath), 1;
    if (raw->dim != fm->in_dim)
        return d2_fail(err, D2_EINVAL, "%s: %d features, the network takes %d", dpath, raw->dim,
                       fm->in_dim), 1;
    if (raw->classes < 2 || raw->classes > z->spec.out_dim || raw->classes > D2_MAX_WAY)
        return d2_fail(err, D2_EINVAL, "%s: %d classes; the spec '%s' has %d outputs (2..%d "
                       "classes allowed)", dpath, raw->classes, z->spec.text, z->spec.out_dim,
                       z->spec.out_dim < D2_MAX_WAY ? z->spec.out_dim : D2_MAX_WAY), 1;
    return 0;
}

/* Accepted: the data set copied into the zoo, entry e filled, the zoo grown by one. */
static int import_accept(import_state *st, zoo_entry *e, const dataset *raw,
                         const unsigned char *bytes, size_t nbytes, const feature_map *fm,
                         d2_error *err)
{
    zoo *z = &st->z;
    char rel[64], dst[4096];
    snprintf(rel, sizeof rel, "data/%06d.safetensors", z->n);
    snprintf(dst, sizeof dst, "%s/%s", st->out_dir, rel);
    int rc;
    if ((rc = make_dirs(st, err)) || (rc = d2_write_file_atomic(dst, bytes, nbytes, err)))
        return rc;
    if (!(e->data_path = strdup(rel)))
        return d2_fail(err, D2_ENOMEM, "out of memory");
    e->way = raw->classes;
    for (int i = 0; i < e->way; i++)
        e->classes[i] = i;
    dataset_fingerprint(raw, e->data_fp);
    if (!z->fmap.in_dim && (rc = feature_map_copy(&z->fmap, fm, err)) != 0)
        return rc;
    if (e->way > z->way)
        z->way = e->way;
    z->n++;
    return 0;
}

static int import_line(import_state *st, const char *text, size_t len, d2_error *err)
{
    static const char *const acc_keys[] = {"query_acc", "test_acc", "accuracy", "acc", NULL};
    static const char *const loss_keys[] = {"query_loss", "test_loss", "loss", NULL};
    zoo *z = &st->z;
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        d2_fail(err, D2_EFORMAT, "invalid JSON at column %d: %s", je.column, je.text);
        return 1;
    }
    int rc = 1;
    st_file f = {0};
    dataset raw = {0}, feat = {0};
    unsigned char *bytes = NULL;
    size_t nbytes = 0;
    feature_map fm = {0};
    json_t *w, *d, *mt;
    float acc = NAN, loss = NAN;
    if (import_fields(st, o, &w, &d, &mt, err) || metric(mt, acc_keys, 0.0f, 1.0f, &acc, err) ||
        metric(mt, loss_keys, 0.0f, INFINITY, &loss, err))
        goto out;
    char wpath[4096], dpath[4096];
    resolve(wpath, sizeof wpath, st->base, json_string_value(w));
    resolve(dpath, sizeof dpath, st->base, json_string_value(d));
    if (st_load(&f, wpath, err))
        goto out;
    if ((rc = grow(st, err)) < 0)
        goto out;
    rc = 1;
    float *theta = z->theta + (size_t)z->n * z->P;
    if (import_head(st, &f, wpath, theta, &fm, err) ||
        import_data(st, dpath, &fm, &bytes, &nbytes, &raw, err))
        goto out;
    zoo_entry *e = &z->e[z->n];
    memset(e, 0, sizeof *e);
    if (feature_map_apply(&fm, &raw, &feat, err) ||
        target_eval(&z->spec, theta, &feat, &e->train_acc, NULL, err)) {
        d2_wrap(err, "%s", dpath);
        goto out;
    }
    e->query_acc = acc;
    e->query_loss = loss;
    rc = import_accept(st, e, &raw, bytes, nbytes, &fm, err);
out:
    feature_map_free(&fm);
    dataset_free(&raw);
    dataset_free(&feat);
    free(bytes);
    st_free(&f);
    json_decref(o);
    return rc;
}

/* Strict mode found rejected lines: take back the data sets already copied
 * (and the folders made), so that no partial zoo is left in out_dir. */
static void undo_copies(const import_state *st)
{
    char path[4096];
    for (int i = 0; i < st->z.n; i++) {
        snprintf(path, sizeof path, "%s/data/%06d.safetensors", st->out_dir, i);
        remove(path);
    }
    snprintf(path, sizeof path, "%s/data", st->out_dir);
    if (st->made[1])
        rmdir(path); /* only the folders this import made, and only when empty */
    if (st->made[0])
        rmdir(st->out_dir);
}

int zoo_import(const char *manifest_path, const char *spec, const char *out_dir,
               zoo_import_report *rep, d2_error *err)
{
    return zoo_import_lines(manifest_path, spec, out_dir, 1, rep, err);
}

int zoo_import_lines(const char *manifest_path, const char *spec, const char *out_dir,
                     int skip_bad, zoo_import_report *rep, d2_error *err)
{
    memset(rep, 0, sizeof *rep);
    if (!manifest_path || !out_dir)
        return d2_fail(err, D2_EINVAL, "zoo import: manifest and output directory are required");
    import_state st = {.out_dir = out_dir, .rep = rep};
    if (spec) {
        if (target_spec_parse(&st.z.spec, spec, err))
            return d2_wrap(err, "zoo import: --spec");
        st.z.P = (int)st.z.spec.numel;
        st.have_spec = 1;
    }
    unsigned char *text;
    size_t len;
    int rc = d2_read_file(manifest_path, &text, &len, IMPORT_MAX_MANIFEST, err);
    if (rc)
        return rc;
    char base[4096];
    snprintf(base, sizeof base, "%s", manifest_path);
    char *slash = strrchr(base, '/');
    if (slash)
        *(slash == base ? slash + 1 : slash) = '\0';
    else
        base[0] = '\0';
    st.base = base;
    int lineno = 0;
    size_t pos = 0;
    while (pos < len && rc >= 0) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        lineno++;
        size_t a = pos, b = end;
        while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r'))
            a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
            b--;
        pos = end + 1;
        if (a == b || text[a] == '#')
            continue;
        d2_error le = {0};
        rc = import_line(&st, (const char *)text + a, b - a, &le);
        if (rc < 0) {
            if (err)
                *err = le;
            d2_wrap(err, "zoo import: %s line %d", manifest_path, lineno);
        } else if (rc > 0) {
            if (add_reject(rep, lineno, le.msg)) {
                rc = d2_fail(err, D2_ENOMEM, "out of memory");
                break;
            }
            rc = 0;
        } else {
            rep->imported++;
        }
    }
    free(text);
    free(st.m0_weight);
    free(st.m0_bias);
    zoo *z = &st.z;
    if (rc >= 0 && z->n == 0)
        rc = d2_fail(err, D2_EINVAL, "zoo import: no checkpoint imported from %s (%d line%s "
                     "rejected)", manifest_path, rep->rejected, rep->rejected == 1 ? "" : "s");
    else if (rc >= 0 && !skip_bad && rep->rejected > 0) {
        rc = d2_fail(err, D2_EINVAL, "zoo import: %d line%s of %s rejected, nothing written "
                     "(--skip-bad imports the %d good ones)", rep->rejected,
                     rep->rejected == 1 ? "" : "s", manifest_path, z->n);
        undo_copies(&st);
    }
    if (rc >= 0) {
        snprintf(z->source, sizeof z->source, "import");
        zoo_fingerprint(z, z->fingerprint);
        rc = zoo_save(z, out_dir, err);
    }
    zoo_free(z);
    return rc;
}
