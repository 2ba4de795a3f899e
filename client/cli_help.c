/* cli_help.c - a command's --help, generated from its option table: each
 * option with its type, range and the default it really has. */
#include <math.h>
#include <string.h>

#include "cli_opts.h"

#define NAME_COL 24 /* "  --name METAVAR" padded to this, then the help */
#define WIDTH 79

static const char *metavar_of(const cli_option *o)
{
    if (o->metavar)
        return o->metavar;
    switch (o->type) {
    case CLI_STRING:
        return "TEXT";
    case CLI_PATH:
        return "PATH";
    case CLI_INT:
    case CLI_U64:
        return "N";
    case CLI_FLOAT:
        return "X";
    case CLI_SECONDS:
        return "S";
    case CLI_CHOICE:
        return "NAME";
    case CLI_INT_LIST:
        return "LIST";
    case CLI_FLAG:
        break;
    }
    return "";
}

/* "integer 1..100000", "one of ddim, ddpm", ... ("" for a flag) */
static void type_text(const cli_option *o, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    switch (o->type) {
    case CLI_STRING:
        snprintf(buf, cap, "text");
        break;
    case CLI_PATH:
        snprintf(buf, cap, "path");
        break;
    case CLI_INT:
        snprintf(buf, cap, "integer %lld..%lld", o->lo, o->hi);
        break;
    case CLI_U64:
        if (o->hi > 0)
            snprintf(buf, cap, "integer 0..%lld", o->hi);
        else
            snprintf(buf, cap, "integer >= 0");
        break;
    case CLI_FLOAT:
        snprintf(buf, cap, "number %g..%g", o->flo, o->fhi);
        break;
    case CLI_SECONDS:
        snprintf(buf, cap, "seconds %g..%g", o->flo, o->fhi);
        break;
    case CLI_CHOICE:
        used = (size_t)snprintf(buf, cap, "one of");
        for (int i = 0; o->choices[i] && used < cap; i++)
            used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : " ",
                                     o->choices[i]);
        break;
    case CLI_INT_LIST:
        snprintf(buf, cap, "comma list of up to %d integers %lld..%lld",
                 o->max_items > 0 ? o->max_items : CLI_LIST_MAX, o->lo, o->hi);
        break;
    case CLI_FLAG:
        break;
    }
}

/* The value o holds in base; 0 when it is the unset value. */
static int value_text(const cli_option *o, const void *base, char *buf, size_t cap)
{
    const void *src = (const char *)base + o->off;
    switch (o->type) {
    case CLI_STRING:
    case CLI_PATH: {
        const char *s = *(const char *const *)src;
        return s ? snprintf(buf, cap, "%s", s) >= 0 : 0;
    }
    case CLI_INT:
        return *(const int *)src != CLI_UNSET_INT && snprintf(buf, cap, "%d", *(const int *)src);
    case CLI_U64:
        return *(const uint64_t *)src != CLI_UNSET_U64 &&
               snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)src);
    case CLI_FLOAT:
    case CLI_SECONDS:
        return !isnan(*(const double *)src) && snprintf(buf, cap, "%g", *(const double *)src);
    case CLI_CHOICE: {
        int k = *(const int *)src;
        return k >= 0 && snprintf(buf, cap, "%s", o->choices[k]);
    }
    case CLI_INT_LIST: {
        const cli_int_list *l = src;
        size_t used = 0;
        buf[0] = '\0';
        for (int i = 0; i < l->n && used < cap; i++)
            used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? "," : "", l->v[i]);
        return l->n > 0;
    }
    case CLI_FLAG:
        break;
    }
    return 0;
}

/* "(integer 1..100000; default 100)", "(path; required)", "" */
static void meta_text(const cli_option *o, const void *base, char *buf, size_t cap)
{
    char type[160], val[256], def[400] = "";
    type_text(o, type, sizeof type);
    if (o->required)
        snprintf(def, sizeof def, "required");
    else if (o->env)
        snprintf(def, sizeof def, "default $%s%s%s", o->env, o->def ? " or " : "",
                 o->def ? o->def : "");
    else if (o->type != CLI_FLAG && value_text(o, base, val, sizeof val))
        snprintf(def, sizeof def, "default %s", val);
    else if (o->unset)
        snprintf(def, sizeof def, "default: %s", o->unset);
    if (type[0] && def[0])
        snprintf(buf, cap, "(%s; %s)", type, def);
    else if (type[0] || def[0])
        snprintf(buf, cap, "(%s%s)", type, def);
    else
        buf[0] = '\0';
}

/* The type-and-default note: after the last help line when it fits, else
 * on lines of its own (split after "; " when one line is too long). */
static void print_meta(const char *meta, int line_len, FILE *out)
{
    size_t n = strlen(meta);
    if (!n) {
        fputc('\n', out);
        return;
    }
    if (line_len + 1 + (int)n <= WIDTH) {
        fprintf(out, "%s%s\n", line_len > NAME_COL ? " " : "", meta);
        return;
    }
    const char *split = strstr(meta, "; ");
    if (line_len > NAME_COL)
        fprintf(out, "\n%*s", NAME_COL, "");
    if (NAME_COL + (int)n > WIDTH && split)
        fprintf(out, "%.*s\n%*s%s\n", (int)(split - meta + 1), meta, NAME_COL + 1, "",
                split + 2);
    else
        fprintf(out, "%s\n", meta);
}

static void print_option(const cli_option *o, const void *base, FILE *out)
{
    char head[128], meta[600];
    const char *mv = metavar_of(o);
    snprintf(head, sizeof head, "%s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "",
             o->name, mv[0] ? " " : "", mv);
    int col = fprintf(out, "  %s", head);
    const char *help = o->help ? o->help : "";
    int line_len;
    for (;;) {
        if (col + 2 > NAME_COL) {
            fputc('\n', out);
            col = 0;
        }
        col += fprintf(out, "%*s", NAME_COL - col, "");
        size_t n = strcspn(help, "\n");
        line_len = col + fprintf(out, "%.*s", (int)n, help);
        if (!help[n])
            break;
        fputc('\n', out);
        col = 0;
        help += n + 1;
    }
    meta_text(o, base, meta, sizeof meta);
    print_meta(meta, line_len, out);
}

void cli_globals_help(unsigned mask, const cli_globals *g, FILE *out)
{
    for (int i = 0; i < CLI_NGLOBALS; i++)
        if (mask & CLI_GLOBAL_MASKS[i])
            print_option(&CLI_GLOBAL_OPTS[i], g, out);
}

void cli_help(const cli_command *c, const void *opts, const cli_globals *g, FILE *out)
{
    fprintf(out, "usage: d2nwg %s %s\n", c->name, c->synopsis ? c->synopsis : "[options]");
    if (c->about)
        fprintf(out, "\n%s\n", c->about);
    if (c->nopts > 0) {
        fprintf(out, "\noptions:\n");
        for (int i = 0; i < c->nopts; i++)
            print_option(&c->opts[i], opts, out);
    }
    if (c->globals) {
        fprintf(out, "\nglobal options (also before the command: d2nwg [global options] %s):\n",
                c->name);
        cli_globals_help(c->globals, g, out);
    }
    static const cli_option HELP = {.name = "--help", .alias = "-h", .type = CLI_FLAG,
                                    .help = "this text"};
    print_option(&HELP, opts, out);
    if (c->footer)
        fprintf(out, "\n%s\n", c->footer);
}
