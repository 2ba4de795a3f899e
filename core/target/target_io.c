/* target_io.c - a target network as safetensors tensors named like PyTorch's
 * nn.Sequential state_dict: writing the whole network (frozen feature map as
 * module 0), and reading theta / the feature map back with validation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "target.h"

static int is_float_dtype(st_dtype t)
{
    return t == ST_F32 || t == ST_F16 || t == ST_BF16 || t == ST_F64;
}

static void shape_str(char *buf, size_t n, const int64_t *shape, int ndim)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "",
                                 (long long)shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

/* "Sequential(<backbone>, <head modules>)": the torch.nn expression of a cnn network */
static int cnn_arch(const target_spec *s, const feature_map *f, char *buf, size_t len,
                    d2_error *err)
{
    char bb[2048];
    int rc = feature_map_cnn_arch(f, bb, sizeof bb, err);
    if (rc)
        return rc;
    size_t used = (size_t)snprintf(buf, len, "Sequential(%s", bb);
    static const char *const act[] = {[TL_RELU] = "ReLU()", [TL_TANH] = "Tanh()",
                                      [TL_GELU] = "GELU()", [TL_SILU] = "SiLU()"};
    for (int l = 0; l < s->nlayers && used < len; l++) {
        const target_layer *L = &s->layers[l];
        if (L->kind == TL_LINEAR)
            used += (size_t)snprintf(buf + used, len - used, ", Linear(%d, %d)", L->in, L->out);
        else
            used += (size_t)snprintf(buf + used, len - used, ", %s", act[L->kind]);
    }
    if (used < len)
        used += (size_t)snprintf(buf + used, len - used, ")");
    if (used >= len)
        return d2_fail(err, D2_ERANGE, "target: architecture string too long");
    return 0;
}

/* module 0 = the backbone (its tensors under "0."), the architecture and its sha256 */
static int write_cnn(const target_spec *s, const feature_map *f, struct st_writer *w,
                     d2_error *err)
{
    if (!f || !f->cnn || f->out_dim != s->feat_dim)
        return d2_fail(err, D2_EINVAL, "target_write_tensors: the spec '%s' needs its backbone "
                       "with %d features", s->text, s->feat_dim);
    char arch[4096];
    int rc = cnn_arch(s, f, arch, sizeof arch, err);
    if (!rc)
        rc = feature_map_cnn_write(f, "0.", w, err);
    if (!rc)
        rc = st_writer_meta(w, "architecture", arch, err);
    if (!rc)
        rc = st_writer_meta(w, "d2nwg.backbone_sha256", feature_map_cnn_sha256(f), err);
    return rc;
}

int target_write_tensors(const target_spec *s, const feature_map *f, const float *theta,
                         struct st_writer *w, d2_error *err)
{
    if (!s || !theta || !w)
        return d2_fail(err, D2_EINVAL, "target_write_tensors: bad arguments");
    int rc;
    if (s->has_cnn && (rc = write_cnn(s, f, w, err)))
        return rc;
    if (s->has_pca) {
        if (!f || !f->W || f->out_dim != s->pca_dim)
            return d2_fail(err, D2_EINVAL, "target_write_tensors: the spec '%s' needs a %d-output "
                           "feature map", s->text, s->pca_dim);
        int k = f->out_dim, D = f->in_dim;
        float *bias = malloc(sizeof(float) * (size_t)k);
        if (!bias)
            return d2_fail(err, D2_ENOMEM, "target_write_tensors: out of memory");
        // bias: [k] = -W [k, D] @ mean [D], so that W x + bias = W (x - mean)
        for (int i = 0; i < k; i++) {
            double acc = 0.0;
            for (int j = 0; j < D; j++)
                acc += (double)f->W[(size_t)i * D + j] * (f->mean ? f->mean[j] : 0.0f);
            bias[i] = (float)-acc;
        }
        int64_t ws[2] = {k, D}, bs[1] = {k};
        rc = st_writer_add_f32(w, "0.weight", 2, ws, f->W, err);
        if (!rc)
            rc = st_writer_add_f32(w, "0.bias", 1, bs, bias, err);
        free(bias);
        if (rc)
            return rc;
    }
    for (int l = 0; l < s->nlayers; l++) {
        const target_layer *L = &s->layers[l];
        if (L->kind != TL_LINEAR)
            continue;
        char name[32];
        int64_t ws[2] = {L->out, L->in}, bs[1] = {L->out};
        snprintf(name, sizeof name, "%d.weight", L->module);
        if ((rc = st_writer_add_f32(w, name, 2, ws, theta + L->w_off, err)))
            return rc;
        snprintf(name, sizeof name, "%d.bias", L->module);
        if ((rc = st_writer_add_f32(w, name, 1, bs, theta + L->b_off, err)))
            return rc;
    }
    return 0;
}

/* Find `name`, check float dtype and (when expect != NULL) the shape, convert
 * to float32 into out (numel floats) and check finiteness. */
static int read_tensor(const st_file *f, const char *name, int ndim, const int64_t *expect,
                       float *out, d2_error *err)
{
    const st_tensor *t = st_find(f, name);
    if (!t)
        return d2_fail(err, D2_ENOTFOUND, "missing tensor '%s'", name);
    if (!is_float_dtype(t->dtype))
        return d2_fail(err, D2_EFORMAT, "tensor '%s' has dtype %s, expected a float type", name,
                       st_dtype_name(t->dtype));
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = expect[i] < 0 || t->shape[i] == expect[i];
    if (!ok) {
        char got[96], want[96];
        shape_str(got, sizeof got, t->shape, t->ndim);
        shape_str(want, sizeof want, expect, ndim);
        return d2_fail(err, D2_EFORMAT, "tensor '%s' has shape %s, expected %s", name, got, want);
    }
    if (!out)
        return 0;
    int rc = st_to_f32(t, out, err);
    if (rc)
        return d2_wrap(err, "tensor '%s'", name);
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(out[i]))
            return d2_fail(err, D2_ERANGE, "tensor '%s' element %zu is not finite", name, i);
    return 0;
}

/* 1 when `name` is one of the spec's tensors (module 0 included with pca). */
static int spec_has_tensor(const target_spec *s, const char *name)
{
    char buf[32];
    if (s->has_pca && (!strcmp(name, "0.weight") || !strcmp(name, "0.bias")))
        return 1;
    if (s->has_cnn && !strncmp(name, "0.", 2))
        return 1;
    for (int l = 0; l < s->nlayers; l++) {
        if (s->layers[l].kind != TL_LINEAR)
            continue;
        snprintf(buf, sizeof buf, "%d.weight", s->layers[l].module);
        if (!strcmp(name, buf))
            return 1;
        snprintf(buf, sizeof buf, "%d.bias", s->layers[l].module);
        if (!strcmp(name, buf))
            return 1;
    }
    return 0;
}

int target_read_theta(const target_spec *s, const struct st_file *f, float *theta,
                      d2_error *err)
{
    if (!s || !f || !theta)
        return d2_fail(err, D2_EINVAL, "target_read_theta: bad arguments");
    for (int i = 0; i < f->count; i++)
        if (!spec_has_tensor(s, f->tensors[i].name))
            return d2_fail(err, D2_EFORMAT, "unexpected tensor '%s' (not in the spec '%s')",
                           f->tensors[i].name, s->text);
    int rc;
    if (s->has_pca) {
        /* the frozen map must be there and sane; its input size is free */
        int64_t ws[2] = {s->pca_dim, -1}, bs[1] = {s->pca_dim};
        const st_tensor *t = st_find(f, "0.weight");
        if ((rc = read_tensor(f, "0.weight", 2, ws, NULL, err)) ||
            (rc = read_tensor(f, "0.bias", 1, bs, NULL, err)))
            return rc;
        float *tmp = malloc(sizeof(float) * t->numel);
        if (!tmp)
            return d2_fail(err, D2_ENOMEM, "target_read_theta: out of memory");
        rc = read_tensor(f, "0.weight", 2, ws, tmp, err);
        if (!rc)
            rc = read_tensor(f, "0.bias", 1, bs, tmp, err);
        free(tmp);
        if (rc)
            return rc;
    }
    for (int l = 0; l < s->nlayers; l++) {
        const target_layer *L = &s->layers[l];
        if (L->kind != TL_LINEAR)
            continue;
        char name[32];
        int64_t ws[2] = {L->out, L->in}, bs[1] = {L->out};
        snprintf(name, sizeof name, "%d.weight", L->module);
        if ((rc = read_tensor(f, name, 2, ws, theta + L->w_off, err)))
            return rc;
        snprintf(name, sizeof name, "%d.bias", L->module);
        if ((rc = read_tensor(f, name, 1, bs, theta + L->b_off, err)))
            return rc;
    }
    return 0;
}

/* Solve G [k, k] z = b in place (G symmetric positive definite, destroyed). */
static int spd_solve(double *G, double *b, int k)
{
    for (int i = 0; i < k; i++) { /* lower Cholesky, G = L L^T */
        for (int j = 0; j <= i; j++) {
            double s = G[(size_t)i * k + j];
            for (int p = 0; p < j; p++)
                s -= G[(size_t)i * k + p] * G[(size_t)j * k + p];
            if (i == j) {
                if (!(s > 1e-12 * fabs(G[(size_t)i * k + i]) && s > 0.0))
                    return -1;
                G[(size_t)i * k + i] = sqrt(s);
            } else {
                G[(size_t)i * k + j] = s / G[(size_t)j * k + j];
            }
        }
    }
    for (int i = 0; i < k; i++) { /* L y = b */
        for (int p = 0; p < i; p++)
            b[i] -= G[(size_t)i * k + p] * b[p];
        b[i] /= G[(size_t)i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) { /* L^T z = y */
        for (int p = i + 1; p < k; p++)
            b[i] -= G[(size_t)p * k + i] * b[p];
        b[i] /= G[(size_t)i * k + i];
    }
    return 0;
}

/* the spec's backbone file, which must be the one the checkpoint was made with */
static int read_cnn(const target_spec *s, const struct st_file *f, feature_map *fm,
                    d2_error *err)
{
    int rc = feature_map_load_cnn(fm, s->cnn_path, err);
    if (rc)
        return rc;
    const char *want = st_meta(f, "d2nwg.backbone_sha256");
    if (want && strcmp(want, feature_map_cnn_sha256(fm)))
        rc = d2_fail(err, D2_EINVAL, "cnn:%s is not the backbone this checkpoint was made with "
                     "(sha256 %.12s..., the checkpoint records %.12s...)", s->cnn_path,
                     feature_map_cnn_sha256(fm), want);
    else if (fm->out_dim != s->feat_dim)
        rc = d2_fail(err, D2_EINVAL, "cnn:%s gives %d features; the spec's head takes %d",
                     s->cnn_path, fm->out_dim, s->feat_dim);
    if (rc)
        feature_map_free(fm);
    return rc;
}

int target_read_feature_map(const target_spec *s, const struct st_file *f, feature_map *fm,
                            d2_error *err)
{
    memset(fm, 0, sizeof *fm);
    if (s->has_cnn)
        return read_cnn(s, f, fm, err);
    if (!s->has_pca)
        return feature_map_identity(fm, s->feat_dim, err);
    const st_tensor *t = st_find(f, "0.weight");
    int64_t ws[2] = {s->pca_dim, -1}, bs[1] = {s->pca_dim};
    int rc = read_tensor(f, "0.weight", 2, ws, NULL, err);
    if (rc)
        return rc;
    if (t->shape[1] < 1 || t->shape[1] > (1 << 24))
        return d2_fail(err, D2_EFORMAT, "tensor '0.weight' has %lld inputs",
                       (long long)t->shape[1]);
    int k = s->pca_dim, D = (int)t->shape[1];
    float *bias = malloc(sizeof(float) * (size_t)k);
    double *G = malloc(sizeof(double) * (size_t)k * k), *z = malloc(sizeof(double) * (size_t)k);
    fm->W = malloc(sizeof(float) * (size_t)k * D);
    fm->mean = malloc(sizeof(float) * (size_t)D);
    if (!bias || !G || !z || !fm->W || !fm->mean) {
        rc = d2_fail(err, D2_ENOMEM, "feature map: out of memory");
        goto done;
    }
    if ((rc = read_tensor(f, "0.weight", 2, ws, fm->W, err)) ||
        (rc = read_tensor(f, "0.bias", 1, bs, bias, err)))
        goto done;
    /* y = W x + bias = W (x - mean) with the minimum-norm mean solving
     * W mean = -bias: mean = W^T z, (W W^T) z = -bias */
    for (int i = 0; i < k; i++) {
        z[i] = -(double)bias[i];
        for (int j = 0; j <= i; j++) {
            double acc = 0.0;
            for (int p = 0; p < D; p++)
                acc += (double)fm->W[(size_t)i * D + p] * fm->W[(size_t)j * D + p];
            G[(size_t)i * k + j] = G[(size_t)j * k + i] = acc;
        }
    }
    if (spd_solve(G, z, k)) {
        rc = d2_fail(err, D2_EFORMAT, "tensor '0.weight': the feature map's rows are linearly "
                     "dependent, so '0.bias' cannot be expressed as -W @ mean");
        goto done;
    }
    for (int p = 0; p < D; p++) {
        double acc = 0.0;
        for (int i = 0; i < k; i++)
            acc += (double)fm->W[(size_t)i * D + p] * z[i];
        fm->mean[p] = (float)acc;
    }
    fm->in_dim = D;
    fm->out_dim = k;
done:
    free(bias);
    free(G);
    free(z);
    if (rc)
        feature_map_free(fm);
    return rc;
}
