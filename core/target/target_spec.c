/* target_spec.c - parse a declarative target spec ("pca:128 | linear 128->5",
 * "mlp 784-64-10 relu") into layers with nn.Sequential module indices and
 * theta offsets. */
#include "target.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_MAX_DIM (1 << 20)
#define SPEC_MAX_NUMEL ((size_t)1 << 28)
#define SPEC_MAX_TOKENS 8

typedef struct spec_ctx {
    target_spec *s;
    const char *text;
    int module;       /* next nn.Sequential index */
    int prev_out;     /* output width so far (0: nothing yet) */
    size_t numel;
    char canon[256];  /* canonical text being assembled */
    d2_error *err;
} spec_ctx;

static const char *act_name(tl_kind k)
{
    switch (k) {
    case TL_RELU: return "relu";
    case TL_TANH: return "tanh";
    case TL_GELU: return "gelu";
    case TL_SILU: return "silu";
    default: return "linear";
    }
}

static int act_parse(const char *w, tl_kind *out)
{
    static const struct {
        const char *name;
        tl_kind kind;
    } acts[] = {{"relu", TL_RELU}, {"tanh", TL_TANH}, {"gelu", TL_GELU}, {"silu", TL_SILU}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!strcmp(w, acts[i].name)) {
            *out = acts[i].kind;
            return 1;
        }
    return 0;
}

/* Strict decimal integer in 1..SPEC_MAX_DIM covering all of [p, p+len). */
static int parse_dim(const char *p, size_t len, int *out)
{
    if (len == 0 || len > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > SPEC_MAX_DIM)
        return -1;
    *out = (int)v;
    return 0;
}

static int spec_bad(spec_ctx *c, int li, const char *layer, const char *fmt, const char *detail)
{
    char why[256];
    snprintf(why, sizeof why, fmt, detail);
    return d2_fail(c->err, D2_EINVAL, "target spec '%s': layer %d ('%s'): %s", c->text, li + 1,
                   layer, why);
}

static int canon_append(spec_ctx *c, const char *piece)
{
    size_t used = strlen(c->canon);
    int n = snprintf(c->canon + used, sizeof c->canon - used, "%s%s", used ? " | " : "", piece);
    if (n < 0 || (size_t)n >= sizeof c->canon - used)
        return d2_fail(c->err, D2_ERANGE, "target spec '%s': longer than %zu characters",
                       c->text, sizeof c->canon - 1);
    return 0;
}

static int add_layer(spec_ctx *c, int li, const char *layer, tl_kind kind, int in, int out)
{
    target_spec *s = c->s;
    if (s->nlayers >= TARGET_MAX_LAYERS)
        return spec_bad(c, li, layer, "more than %s layers", "16");
    target_layer *L = &s->layers[s->nlayers];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->module = c->module++;
    if (kind == TL_LINEAR) {
        char msg[160];
        if (c->prev_out && in != c->prev_out) {
            snprintf(msg, sizeof msg, "input %d does not match the previous output %d", in,
                     c->prev_out);
            return spec_bad(c, li, layer, "%s", msg);
        }
        if (!c->prev_out)
            s->feat_dim = in;
        L->in = in;
        L->out = out;
        L->w_off = c->numel;
        c->numel += (size_t)in * (size_t)out;
        L->b_off = c->numel;
        c->numel += (size_t)out;
        if (c->numel > SPEC_MAX_NUMEL)
            return spec_bad(c, li, layer, "%s", "more than 2^28 parameters");
        c->prev_out = out;
    } else {
        if (!c->prev_out)
            return spec_bad(c, li, layer, "%s",
                            "an activation needs a linear layer before it");
        L->in = L->out = c->prev_out;
    }
    s->nlayers++;
    return 0;
}

/* "linear A->B" with the arrow possibly spaced: words after "linear" joined. */
static int parse_linear(spec_ctx *c, int li, const char *layer, char **w, int nw)
{
    char joined[128] = "";
    for (int i = 1; i < nw; i++) {
        if (strlen(joined) + strlen(w[i]) + 1 > sizeof joined)
            return spec_bad(c, li, layer, "%s", "expected 'linear IN->OUT'");
        strcat(joined, w[i]);
    }
    const char *arrow = strstr(joined, "->");
    int in, out;
    if (!arrow || parse_dim(joined, (size_t)(arrow - joined), &in) ||
        parse_dim(arrow + 2, strlen(arrow + 2), &out))
        return spec_bad(c, li, layer, "%s",
                        "expected 'linear IN->OUT' with sizes between 1 and 1048576");
    char canon[64];
    snprintf(canon, sizeof canon, "linear %d->%d", in, out);
    int rc = add_layer(c, li, layer, TL_LINEAR, in, out);
    return rc ? rc : canon_append(c, canon);
}

/* "mlp A-B-C[-...] [activation]": Linear(A,B), act, Linear(B,C), ... */
static int parse_mlp(spec_ctx *c, int li, const char *layer, char **w, int nw)
{
    if (nw < 2 || nw > 3)
        return spec_bad(c, li, layer, "%s", "expected 'mlp A-B[-C...] [relu|tanh|gelu|silu]'");
    tl_kind act = TL_RELU;
    if (nw == 3 && !act_parse(w[2], &act))
        return spec_bad(c, li, layer, "unknown activation '%s' (relu, tanh, gelu, silu)", w[2]);
    int dims[TARGET_MAX_LAYERS + 2], nd = 0;
    const char *p = w[1];
    for (;;) {
        const char *dash = strchr(p, '-');
        size_t len = dash ? (size_t)(dash - p) : strlen(p);
        if (nd >= TARGET_MAX_LAYERS + 1)
            return spec_bad(c, li, layer, "more than %s layers", "16");
        if (parse_dim(p, len, &dims[nd]))
            return spec_bad(c, li, layer, "%s",
                            "expected sizes 'A-B[-C...]' between 1 and 1048576");
        nd++;
        if (!dash)
            break;
        p = dash + 1;
    }
    if (nd < 2)
        return spec_bad(c, li, layer, "%s", "an mlp needs at least two sizes (A-B)");
    for (int i = 0; i + 1 < nd; i++) {
        if (i > 0) {
            int rc = add_layer(c, li, layer, act, 0, 0);
            if (rc)
                return rc;
        }
        int rc = add_layer(c, li, layer, TL_LINEAR, dims[i], dims[i + 1]);
        if (rc)
            return rc;
    }
    char canon[160];
    size_t used = (size_t)snprintf(canon, sizeof canon, "mlp %d", dims[0]);
    for (int i = 1; i < nd && used < sizeof canon; i++)
        used += (size_t)snprintf(canon + used, sizeof canon - used, "-%d", dims[i]);
    if (used < sizeof canon)
        snprintf(canon + used, sizeof canon - used, " %s", act_name(act));
    return canon_append(c, canon);
}

static int parse_layer(spec_ctx *c, int li, char *layer)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", layer);
    char *w[SPEC_MAX_TOKENS];
    int nw = 0;
    for (char *tok = strtok(layer, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        if (nw == SPEC_MAX_TOKENS)
            return spec_bad(c, li, copy, "%s", "too many words");
        w[nw++] = tok;
    }
    if (nw == 0)
        return d2_fail(c->err, D2_EINVAL, "target spec '%s': layer %d is empty", c->text,
                       li + 1);
    tl_kind act;
    if (!strncmp(w[0], "pca:", 4)) {
        int k;
        if (li != 0)
            return spec_bad(c, li, copy, "%s", "the pca feature map must be the first layer");
        if (nw != 1 || parse_dim(w[0] + 4, strlen(w[0] + 4), &k))
            return spec_bad(c, li, copy, "%s", "expected 'pca:K' with K between 1 and 1048576");
        c->s->has_pca = 1;
        c->s->pca_dim = k;
        c->module = 1;
        c->prev_out = k;
        c->s->feat_dim = k;
        char canon[32];
        snprintf(canon, sizeof canon, "pca:%d", k);
        return canon_append(c, canon);
    }
    if (!strncmp(w[0], "cnn:", 4)) {
        if (li != 0)
            return spec_bad(c, li, copy, "%s", "the cnn feature map must be the first layer");
        if (nw != 1 || !w[0][4] || strlen(w[0] + 4) >= sizeof c->s->cnn_path)
            return spec_bad(c, li, copy, "%s", "expected 'cnn:FILE' (a path without spaces, "
                                               "under 200 characters)");
        c->s->has_cnn = 1;
        snprintf(c->s->cnn_path, sizeof c->s->cnn_path, "%s", w[0] + 4);
        c->module = 1;
        return canon_append(c, w[0]);
    }
    if (!strcmp(w[0], "linear"))
        return parse_linear(c, li, copy, w, nw);
    if (!strcmp(w[0], "mlp"))
        return parse_mlp(c, li, copy, w, nw);
    if (act_parse(w[0], &act)) {
        if (nw != 1)
            return spec_bad(c, li, copy, "%s", "an activation takes no arguments");
        int rc = add_layer(c, li, copy, act, 0, 0);
        return rc ? rc : canon_append(c, act_name(act));
    }
    return spec_bad(c, li, copy, "unknown layer '%s' (expected pca:K, cnn:FILE, linear IN->OUT, "
                                 "mlp A-B-..., relu, tanh, gelu or silu)", w[0]);
}

int target_spec_parse(target_spec *s, const char *text, d2_error *err)
{
    if (!s || !text)
        return d2_fail(err, D2_EINVAL, "target spec: missing text");
    memset(s, 0, sizeof *s);
    size_t len = strlen(text);
    if (len >= sizeof s->text)
        return d2_fail(err, D2_ERANGE, "target spec: longer than %zu characters",
                       sizeof s->text - 1);
    spec_ctx c = {.s = s, .text = text, .err = err};
    char buf[256];
    memcpy(buf, text, len + 1);
    int li = 0;
    char *p = buf;
    for (;;) {
        char *bar = strchr(p, '|');
        if (bar)
            *bar = '\0';
        int rc = parse_layer(&c, li, p);
        if (rc) {
            memset(s, 0, sizeof *s);
            return rc;
        }
        li++;
        if (!bar)
            break;
        p = bar + 1;
    }
    if (s->nlayers == 0 || c.prev_out == 0) {
        memset(s, 0, sizeof *s);
        return d2_fail(err, D2_EINVAL, "target spec '%s': no linear layer", text);
    }
    if (s->layers[s->nlayers - 1].kind != TL_LINEAR) {
        memset(s, 0, sizeof *s);
        return d2_fail(err, D2_EINVAL,
                       "target spec '%s': the last layer must be linear (it gives the logits)",
                       text);
    }
    s->out_dim = s->layers[s->nlayers - 1].out;
    if (s->out_dim < 2) {
        memset(s, 0, sizeof *s);
        return d2_fail(err, D2_EINVAL, "target spec '%s': the last layer needs at least 2 "
                                       "outputs (one per class)", text);
    }
    s->numel = c.numel;
    memcpy(s->text, c.canon, sizeof s->text);
    return 0;
}
