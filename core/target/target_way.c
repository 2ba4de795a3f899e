/* target_way.c - heads of fewer classes than a spec's outputs (any-way
 * generators, target.h): the narrowed spec, and theta moved between the two. */
#include "target.h"

#include <stdio.h>
#include <string.h>

static int rows_layer(const target_spec *s, d2_error *err)
{
    if (s->nlayers != 1 || s->layers[0].kind != TL_LINEAR)
        return d2_fail(err, D2_EINVAL, "target spec '%s': only a single linear layer has heads "
                       "of fewer classes", s->text);
    return 0;
}

int target_spec_with_way(const target_spec *s, int way, target_spec *out, d2_error *err)
{
    int rc = rows_layer(s, err);
    if (rc)
        return rc;
    if (way < 2 || way > s->out_dim)
        return d2_fail(err, D2_ERANGE, "%d classes outside 2..%d of '%s'", way, s->out_dim,
                       s->text);
    const char *arrow = strstr(s->text, "->");
    for (const char *p = arrow; p && (p = strstr(p + 2, "->"));)
        arrow = p;
    if (!arrow)
        return d2_fail(err, D2_EFORMAT, "target spec '%s': no '->' before the outputs", s->text);
    char text[sizeof s->text];
    int n = snprintf(text, sizeof text, "%.*s->%d", (int)(arrow - s->text), s->text, way);
    if (n < 0 || (size_t)n >= sizeof text)
        return d2_fail(err, D2_ERANGE, "target spec '%s': too long with %d classes", s->text,
                       way);
    return target_spec_parse(out, text, err);
}

void target_theta_narrow(const target_spec *wide, const target_spec *narrow, const float *wtheta,
                         float *ntheta)
{
    const target_layer *W = &wide->layers[0], *N = &narrow->layers[0];
    memcpy(ntheta + N->w_off, wtheta + W->w_off, (size_t)N->out * N->in * sizeof(float));
    memcpy(ntheta + N->b_off, wtheta + W->b_off, (size_t)N->out * sizeof(float));
}

void target_theta_widen(const target_spec *wide, const target_spec *narrow, const float *ntheta,
                        float *wtheta)
{
    memset(wtheta, 0, wide->numel * sizeof(float));
    const target_layer *W = &wide->layers[0], *N = &narrow->layers[0];
    memcpy(wtheta + W->w_off, ntheta + N->w_off, (size_t)N->out * N->in * sizeof(float));
    memcpy(wtheta + W->b_off, ntheta + N->b_off, (size_t)N->out * sizeof(float));
}

void target_zero_rows_from(const target_spec *s, int way, float *theta)
{
    const target_layer *L = &s->layers[s->nlayers - 1];
    if (way >= L->out)
        return;
    memset(theta + L->w_off + (size_t)way * L->in, 0,
           (size_t)(L->out - way) * L->in * sizeof(float));
    memset(theta + L->b_off + way, 0, (size_t)(L->out - way) * sizeof(float));
}
