/* svg_plot.h - a small line-chart writer (SVG), for curves such as
 * accuracy against fine-tuning steps. */
#ifndef D2_SVG_PLOT_H
#define D2_SVG_PLOT_H

#include "common.h"

#define SVG_MAX_SERIES 16

typedef struct svg_series {
    const char *label;
    int n;
    const double *x, *y;
    const double *err; /* optional error bar half-widths, or NULL */
} svg_series;

typedef struct svg_chart {
    const char *title, *xlabel, *ylabel;
    int nseries;
    svg_series series[SVG_MAX_SERIES];
} svg_chart;

/* Write the chart atomically to path. */
int svg_plot_write(const svg_chart *c, const char *path, d2_error *err);

#endif
