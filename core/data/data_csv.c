/* data_csv.c - CSV readers: the user layout (header "label,f1,...", label
 * first) and the two scikit-learn layouts (digits: no header, label last;
 * iris/wine: header "n_samples,n_features,class names...", label last).
 *
 * Cells are separated by commas; RFC 4180 quoting ("a ""b"", c") is
 * understood within a line (quoted line breaks are not). Spaces around cells,
 * CRLF line ends and blank lines are tolerated. Every refusal names the file,
 * the line and (for cells) the column. */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

#define CSV_CELL_MAX 128 /* longest numeric cell */

typedef struct csv_cursor {
    const char *p, *end; /* current position and end of the line */
} csv_cursor;

enum { CSV_CELL_OK = 0, CSV_CELL_LONG = 1, CSV_CELL_BADQUOTE = 2, CSV_CELL_UNTERMINATED = 3 };

static int csv_is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Read the next cell into out[cap] (truncated copy when longer: *status
 * CSV_CELL_LONG). Returns 1 when a comma follows (more cells), 0 at the end of
 * the line. */
static int csv_next_cell(csv_cursor *c, char *out, size_t cap, size_t *out_len, int *status)
{
    size_t n = 0;
    *status = CSV_CELL_OK;
    while (c->p < c->end && csv_is_space(*c->p))
        c->p++;
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p >= c->end) {
                *status = CSV_CELL_UNTERMINATED;
                break;
            }
            char ch = *c->p++;
            if (ch == '"') {
                if (c->p < c->end && *c->p == '"') {
                    c->p++;
                } else {
                    break;
                }
            }
            if (n + 1 < cap)
                out[n] = ch;
            else
                *status = CSV_CELL_LONG;
            n++;
        }
        while (c->p < c->end && csv_is_space(*c->p))
            c->p++;
        if (*status == CSV_CELL_OK && c->p < c->end && *c->p != ',')
            *status = CSV_CELL_BADQUOTE;
        while (c->p < c->end && *c->p != ',')
            c->p++;
    } else {
        const char *s = c->p;
        while (c->p < c->end && *c->p != ',')
            c->p++;
        const char *e = c->p;
        while (e > s && csv_is_space(e[-1]))
            e--;
        n = (size_t)(e - s);
        if (n + 1 > cap)
            *status = CSV_CELL_LONG;
        size_t k = n + 1 > cap ? cap - 1 : n;
        memcpy(out, s, k);
    }
    size_t k = n + 1 > cap ? cap - 1 : n;
    out[k] = '\0';
    if (out_len)
        *out_len = n;
    if (c->p < c->end && *c->p == ',') {
        c->p++;
        return 1;
    }
    return 0;
}

/* Parser state for one file. */
typedef struct csv_state {
    const char *path;
    data_csv_layout layout;
    int dim;         /* features per row (-1 until known) */
    int label_col;   /* 0-based column of the label */
    long sk_samples; /* scikit-learn header: announced rows and classes */
    int sk_classes;
    float *x;
    int32_t *y;
    size_t rows, cap;
    float *row;      /* [dim] */
} csv_state;

static int csv_cell_error(const csv_state *s, long line, int col, int status, const char *cell,
                          d2_error *err)
{
    if (status == CSV_CELL_LONG)
        return d2_fail(err, D2_EFORMAT, "%s: line %ld, column %d: cell too long for a number",
                       s->path, line, col);
    if (status == CSV_CELL_UNTERMINATED)
        return d2_fail(err, D2_EFORMAT,
                       "%s: line %ld, column %d: unterminated quote (line breaks inside quotes "
                       "are not supported)",
                       s->path, line, col);
    return d2_fail(err, D2_EFORMAT,
                   "%s: line %ld, column %d: text after the closing quote of \"%.40s\"", s->path,
                   line, col, cell);
}

/* A finite number; error text names the problem. */
static int csv_parse_number(const csv_state *s, long line, int col, const char *cell,
                            double *v, d2_error *err)
{
    if (cell[0] == '\0')
        return d2_fail(err, D2_EFORMAT, "%s: line %ld, column %d: empty cell", s->path, line,
                       col);
    char *endp;
    errno = 0;
    double x = strtod(cell, &endp);
    if (endp == cell || *endp != '\0')
        return d2_fail(err, D2_EFORMAT, "%s: line %ld, column %d: non-numeric cell \"%.40s\"",
                       s->path, line, col, cell);
    if (isnan(x))
        return d2_fail(err, D2_EINVAL, "%s: line %ld, column %d: NaN value", s->path, line, col);
    if (isinf(x) || (errno == ERANGE && fabs(x) > 1.0))
        return d2_fail(err, D2_EINVAL, "%s: line %ld, column %d: infinite value \"%.40s\"",
                       s->path, line, col, cell);
    *v = x;
    return 0;
}

static int csv_store_row(csv_state *s, int32_t label, d2_error *err)
{
    if (s->rows == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        if (cap > (size_t)INT32_MAX)
            cap = (size_t)INT32_MAX;
        if (s->rows == cap)
            return d2_fail(err, D2_ERANGE, "%s: more than %d rows", s->path, INT32_MAX);
        size_t bytes;
        if (__builtin_mul_overflow(cap, (size_t)s->dim * sizeof(float), &bytes))
            return d2_fail(err, D2_ERANGE, "%s: too much data at row %zu", s->path, s->rows);
        float *x = realloc(s->x, bytes);
        if (!x)
            return d2_fail(err, D2_ENOMEM, "%s: out of memory at row %zu", s->path, s->rows);
        s->x = x;
        int32_t *y = realloc(s->y, cap * sizeof(int32_t));
        if (!y)
            return d2_fail(err, D2_ENOMEM, "%s: out of memory at row %zu", s->path, s->rows);
        s->y = y;
        s->cap = cap;
    }
    memcpy(s->x + s->rows * (size_t)s->dim, s->row, (size_t)s->dim * sizeof(float));
    s->y[s->rows] = label;
    s->rows++;
    return 0;
}

/* Count the cells of a line (for ragged-row messages). */
static int csv_count_cells(const char *p, const char *end)
{
    csv_cursor c = {p, end};
    char tmp[2];
    size_t len;
    int status, n = 1;
    while (csv_next_cell(&c, tmp, sizeof tmp, &len, &status))
        n++;
    return n;
}

static int csv_parse_row(csv_state *s, long line, const char *p, const char *end, d2_error *err)
{
    int ncols = s->dim + 1;
    csv_cursor c = {p, end};
    char cell[CSV_CELL_MAX];
    int32_t label = 0;
    int col = 0;
    for (;;) {
        if (col >= ncols)
            return d2_fail(err, D2_EFORMAT, "%s: line %ld: ragged row: %d cells, expected %d",
                           s->path, line, csv_count_cells(p, end), ncols);
        size_t len;
        int status;
        int more = csv_next_cell(&c, cell, sizeof cell, &len, &status);
        if (status)
            return csv_cell_error(s, line, col + 1, status, cell, err);
        double v = 0.0;
        int rc = csv_parse_number(s, line, col + 1, cell, &v, err);
        if (rc)
            return rc;
        if (col == s->label_col) {
            if (v != floor(v))
                return d2_fail(err, D2_EINVAL,
                               "%s: line %ld, column %d: label \"%s\" is not an integer",
                               s->path, line, col + 1, cell);
            if (v < 0)
                return d2_fail(err, D2_EINVAL, "%s: line %ld, column %d: label %s is negative",
                               s->path, line, col + 1, cell);
            if (v > INT32_MAX || (s->layout == DATA_CSV_SKLEARN && v >= s->sk_classes))
                return d2_fail(err, D2_ERANGE,
                               "%s: line %ld, column %d: label %s is out of range%s", s->path,
                               line, col + 1, cell,
                               s->layout == DATA_CSV_SKLEARN ? " (the header names fewer classes)"
                                                             : "");
            label = (int32_t)v;
        } else {
            if (fabs(v) > 3.4028234663852886e38)
                return d2_fail(err, D2_ERANGE,
                               "%s: line %ld, column %d: value %s is outside the float32 range",
                               s->path, line, col + 1, cell);
            int j = col < s->label_col ? col : col - 1;
            s->row[j] = (float)v;
        }
        col++;
        if (!more)
            break;
    }
    if (col != ncols)
        return d2_fail(err, D2_EFORMAT, "%s: line %ld: ragged row: %d cells, expected %d",
                       s->path, line, col, ncols);
    return csv_store_row(s, label, err);
}

static int csv_set_dim(csv_state *s, int dim, long line, d2_error *err)
{
    if (dim < 1)
        return d2_fail(err, D2_EFORMAT, "%s: line %ld: no feature columns", s->path, line);
    s->dim = dim;
    s->row = malloc((size_t)dim * sizeof(float));
    if (!s->row)
        return d2_fail(err, D2_ENOMEM, "%s: out of memory", s->path);
    return 0;
}

static int csv_parse_header(csv_state *s, long line, const char *p, const char *end,
                            d2_error *err)
{
    csv_cursor c = {p, end};
    char cell[CSV_CELL_MAX];
    size_t len;
    int status;
    if (s->layout == DATA_CSV_LABEL_FIRST) {
        int more = csv_next_cell(&c, cell, sizeof cell, &len, &status);
        if (status == CSV_CELL_UNTERMINATED || status == CSV_CELL_BADQUOTE)
            return csv_cell_error(s, line, 1, status, cell, err);
        if (strcmp(cell, "label") != 0)
            return d2_fail(err, D2_EFORMAT,
                           "%s: line %ld: the header's first column must be \"label\", found "
                           "\"%.40s\"",
                           s->path, line, cell);
        if (!more)
            return d2_fail(err, D2_EFORMAT, "%s: line %ld: the header has no feature columns",
                           s->path, line);
        int cols = 1;
        while (more) {
            more = csv_next_cell(&c, cell, sizeof cell, &len, &status);
            if (status == CSV_CELL_UNTERMINATED || status == CSV_CELL_BADQUOTE)
                return csv_cell_error(s, line, cols + 1, status, cell, err);
            cols++;
        }
        s->label_col = 0;
        return csv_set_dim(s, cols - 1, line, err);
    }
    /* scikit-learn: n_samples,n_features,class names... */
    long vals[2];
    for (int i = 0; i < 2; i++) {
        int more = csv_next_cell(&c, cell, sizeof cell, &len, &status);
        char *e;
        errno = 0;
        vals[i] = strtol(cell, &e, 10);
        if (status || cell[0] == '\0' || *e != '\0' || errno || vals[i] <= 0 ||
            vals[i] > INT32_MAX || !more)
            return d2_fail(err, D2_EFORMAT,
                           "%s: line %ld, column %d: expected the scikit-learn header "
                           "n_samples,n_features,class names...; found \"%.40s\"",
                           s->path, line, i + 1, cell);
    }
    int classes = 0, more = 1;
    while (more) {
        more = csv_next_cell(&c, cell, sizeof cell, &len, &status);
        if (status == CSV_CELL_UNTERMINATED || status == CSV_CELL_BADQUOTE)
            return csv_cell_error(s, line, 3 + classes, status, cell, err);
        classes++;
    }
    s->sk_samples = vals[0];
    s->sk_classes = classes;
    s->label_col = (int)vals[1];
    return csv_set_dim(s, (int)vals[1], line, err);
}

int data_csv_parse(dataset *d, const char *path, const char *text, size_t len,
                   data_csv_layout layout, d2_error *err)
{
    memset(d, 0, sizeof *d);
    csv_state s = {.path = path, .layout = layout, .dim = -1};
    const char *p = text, *end = text + len;
    long line = 0;
    int rc = 0;
    int need_header = layout != DATA_CSV_LABEL_LAST;
    /* Skip a UTF-8 byte order mark. */
    if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
        p += 3;
    while (!rc && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        line++;
        if (le > p && le[-1] == '\r')
            le--;
        const char *q = p;
        while (q < le && csv_is_space(*q))
            q++;
        if (q == le) { /* blank line */
            p = next;
            continue;
        }
        if (need_header) {
            rc = csv_parse_header(&s, line, p, le, err);
            need_header = 0;
        } else {
            if (s.dim < 0) { /* no header: the first row fixes the width */
                rc = csv_set_dim(&s, csv_count_cells(p, le) - 1, line, err);
                s.label_col = s.dim;
            }
            if (!rc)
                rc = csv_parse_row(&s, line, p, le, err);
        }
        p = next;
    }
    if (!rc && s.rows == 0)
        rc = d2_fail(err, D2_EINVAL, "%s: no data rows (n = 0)%s", path,
                     line == 0 ? ": the file is empty" : "");
    if (!rc && layout == DATA_CSV_SKLEARN && (long)s.rows != s.sk_samples)
        rc = d2_fail(err, D2_EFORMAT, "%s: the header announces %ld samples, found %zu rows", path,
                     s.sk_samples, s.rows);
    if (!rc) {
        d->n = (int)s.rows;
        d->dim = s.dim;
        d->x = s.x;
        d->y = s.y;
        s.x = NULL;
        s.y = NULL;
        rc = dataset_validate(d, err);
        if (rc) {
            d2_wrap(err, "%s", path);
            dataset_free(d);
        }
    }
    free(s.x);
    free(s.y);
    free(s.row);
    return rc;
}

int data_load_csv(dataset *d, const char *path, d2_error *err)
{
    memset(d, 0, sizeof *d);
    unsigned char *buf;
    size_t len;
    int rc = data_read_all(path, &buf, &len, DATA_MAX_FILE, err);
    if (rc)
        return rc;
    rc = data_csv_parse(d, path, (const char *)buf, len, DATA_CSV_LABEL_FIRST, err);
    free(buf);
    return rc;
}
