/* svg_plot.c - line charts as SVG. */
#include "fileio.h"
#include "svg_plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "strbuf.h"

static void sb_text(strbuf *b, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '<')
            strbuf_printf(b, "&lt;");
        else if (*s == '>')
            strbuf_printf(b, "&gt;");
        else if (*s == '&')
            strbuf_printf(b, "&amp;");
        else
            strbuf_printf(b, "%c", *s);
    }
}

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

int svg_plot_write(const svg_chart *c, const char *path, d2_error *err)
{
    const double W = 720, H = 440, ml = 70, mr = 200, mt = 40, mb = 60;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < c->nseries; s++)
        for (int i = 0; i < c->series[s].n; i++) {
            double e = c->series[s].err ? c->series[s].err[i] : 0;
            x0 = fmin(x0, c->series[s].x[i]);
            x1 = fmax(x1, c->series[s].x[i]);
            y0 = fmin(y0, c->series[s].y[i] - e);
            y1 = fmax(y1, c->series[s].y[i] + e);
        }
    if (!isfinite(x0))
        return d2_fail(err, D2_EINVAL, "plot: no data");
    if (x1 <= x0)
        x1 = x0 + 1;
    y0 = floor(y0 * 10) / 10;
    y1 = ceil(y1 * 10) / 10;
    if (y1 <= y0)
        y1 = y0 + 0.1;
    const double pw = W - ml - mr, ph = H - mt - mb;
#define PX(v) (ml + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (mt + ph - ((v) - y0) / (y1 - y0) * ph)
    strbuf b = {0};
    strbuf_printf(&b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
              "font-family=\"sans-serif\" font-size=\"12\">\n"
              "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
              W, H);
    strbuf_printf(&b, "<text x=\"%.1f\" y=\"22\" font-size=\"15\">", ml);
    sb_text(&b, c->title);
    strbuf_printf(&b, "</text>\n");
    // axes and grid
    for (int k = 0; k <= 5; k++) {
        double yv = y0 + (y1 - y0) * k / 5.0, py = PY(yv);
        strbuf_printf(&b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n",
                  ml, py, ml + pw, py, ml - 6, py + 4, yv);
        double xv = x0 + (x1 - x0) * k / 5.0, px = PX(xv);
        strbuf_printf(&b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                  px, mt, px, mt + ph, px, mt + ph + 18, xv);
    }
    strbuf_printf(&b,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
              "stroke=\"#333\"/>\n",
              ml, mt, pw, ph);
    strbuf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", ml + pw / 2, H - 15);
    sb_text(&b, c->xlabel);
    strbuf_printf(&b, "</text>\n<text transform=\"translate(18,%.1f) rotate(-90)\" "
                  "text-anchor=\"middle\">",
              mt + ph / 2);
    sb_text(&b, c->ylabel);
    strbuf_printf(&b, "</text>\n");
    for (int s = 0; s < c->nseries; s++) {
        const svg_series *se = &c->series[s];
        const char *col = COLORS[s % 8];
        const char *dash = s >= 8 ? " stroke-dasharray=\"5,3\"" : "";
        strbuf_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col,
                  dash);
        for (int i = 0; i < se->n; i++)
            strbuf_printf(&b, "%.1f,%.1f ", PX(se->x[i]), PY(se->y[i]));
        strbuf_printf(&b, "\"/>\n");
        for (int i = 0; i < se->n; i++) {
            strbuf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(se->x[i]),
                      PY(se->y[i]), col);
            if (se->err)
                strbuf_printf(&b,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
                          PX(se->x[i]), PY(se->y[i] - se->err[i]), PX(se->x[i]),
                          PY(se->y[i] + se->err[i]), col);
        }
        double ly = mt + 14 + 18 * s;
        strbuf_printf(&b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                  "stroke-width=\"2\"%s/>\n<text x=\"%.1f\" y=\"%.1f\">",
                  ml + pw + 12, ly, ml + pw + 36, ly, col, dash, ml + pw + 42, ly + 4);
        sb_text(&b, se->label);
        strbuf_printf(&b, "</text>\n");
    }
    strbuf_printf(&b, "</svg>\n");
#undef PX
#undef PY
    if (b.oom) {
        free(b.p);
        return d2_fail(err, D2_ENOMEM, "plot: out of memory");
    }
    int rc = d2_write_file_atomic(path, b.p, b.len, err);
    free(b.p);
    return rc;
}
