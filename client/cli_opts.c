/* cli_opts.c - the option table parser: defaults, "--name value" and
 * "--name=value", typed values with ranges, the global options. */
#include "cli_opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"

const cli_option CLI_GLOBAL_OPTS[CLI_NGLOBALS] = {
    {.name = "--server", .type = CLI_STRING, .off = offsetof(cli_globals, server),
     .metavar = "URL", .help = "the daemon", .def = CLI_DEFAULT_SERVER, .env = "D2NWG_SERVER"},
    {.name = "--token", .type = CLI_STRING, .off = offsetof(cli_globals, token),
     .metavar = "TOKEN", .help = "bearer token", .unset = "none", .env = "D2NWG_TOKEN"},
    {.name = "--retry-for", .type = CLI_SECONDS, .off = offsetof(cli_globals, retry_for),
     .metavar = "S",
     .help = "keep retrying an unreachable or busy (5xx) daemon for S\n"
             "seconds, with backoff, one line per retry",
     .def = CLI_DEFAULT_RETRY_FOR, .flo = 0.0, .fhi = 86400.0},
    {.name = "--json", .type = CLI_FLAG, .off = offsetof(cli_globals, json),
     .help = "print JSON instead of text (remote commands:\nthe daemon's answer as it came)"},
    {.name = "--quiet", .type = CLI_FLAG, .off = offsetof(cli_globals, quiet),
     .help = "no progress bar (generate: no table)"},
};
const unsigned CLI_GLOBAL_MASKS[CLI_NGLOBALS] = {CLI_G_SERVER, CLI_G_TOKEN, CLI_G_RETRY_FOR,
                                                CLI_G_JSON, CLI_G_QUIET};

/* ---- values ---- */

static int parse_ll(const char *cmd, const cli_option *o, const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || end == s || *end) {
        cli_error(cmd, "%s: '%s' is not an integer", o->name, s);
        return -1;
    }
    if (v < o->lo || v > o->hi) {
        cli_error(cmd, "%s: %lld is outside %lld..%lld", o->name, v, o->lo, o->hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *cmd, const cli_option *o, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-') {
        cli_error(cmd, "%s: '%s' must be a non-negative integer", o->name, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE || end == s || *end) {
        cli_error(cmd, "%s: '%s' is not a non-negative integer", o->name, s);
        return -1;
    }
    if (o->hi > 0 && v > (unsigned long long)o->hi) {
        cli_error(cmd, "%s: %llu is outside 0..%lld", o->name, v, o->hi);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static int parse_float(const char *cmd, const cli_option *o, const char *s, double *out)
{
    char buf[64];
    size_t n = strlen(s);
    snprintf(buf, sizeof buf, "%s", s);
    if (o->type == CLI_SECONDS && n > 1 && n < sizeof buf && buf[n - 1] == 's')
        buf[n - 1] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (n >= sizeof buf || errno == ERANGE || end == buf || *end || !isfinite(v)) {
        cli_error(cmd, "%s: '%s' is not a number", o->name, s);
        return -1;
    }
    if (v < o->flo || v > o->fhi) {
        cli_error(cmd, "%s: %g is outside %g..%g", o->name, v, o->flo, o->fhi);
        return -1;
    }
    *out = v;
    return 0;
}

/* "a, b or c" */
static void choice_list(const char *const *choices, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; choices[i] && used < cap; i++) {
        const char *sep = i == 0 ? "" : choices[i + 1] ? ", " : " or ";
        int n = snprintf(buf + used, cap - used, "%s%s", sep, choices[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static int parse_choice(const char *cmd, const cli_option *o, const char *s, int *out)
{
    for (int i = 0; o->choices[i]; i++)
        if (!strcmp(s, o->choices[i])) {
            *out = i;
            return 0;
        }
    char names[256];
    choice_list(o->choices, names, sizeof names);
    cli_error(cmd, "%s must be %s, not '%s'", o->name, names, s);
    return -1;
}

static int parse_list(const char *cmd, const cli_option *o, const char *s, cli_int_list *out)
{
    cli_int_list l = {0};
    int max = o->max_items > 0 && o->max_items < CLI_LIST_MAX ? o->max_items : CLI_LIST_MAX;
    for (const char *p = s; *p;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno == ERANGE || end == p || (*end && *end != ',') || l.n >= max) {
            cli_error(cmd, "%s: '%s' is not a comma list of at most %d integers (such as 1,5)",
                      o->name, s, max);
            return -1;
        }
        if (v < o->lo || v > o->hi) {
            cli_error(cmd, "%s: %lld is outside %lld..%lld", o->name, v, o->lo, o->hi);
            return -1;
        }
        l.v[l.n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (l.n == 0) {
        cli_error(cmd, "%s: an empty list", o->name);
        return -1;
    }
    *out = l;
    return 0;
}

/* Store text as o's value in base; 0, or -1 with the message printed. */
static int set_value(const char *cmd, const cli_option *o, void *base, const char *text)
{
    void *dst = (char *)base + o->off;
    long long ll;
    switch (o->type) {
    case CLI_PATH:
        if (!*text) {
            cli_error(cmd, "%s: an empty path", o->name);
            return -1;
        }
        /* fall through */
    case CLI_STRING:
        *(const char **)dst = text;
        return 0;
    case CLI_INT:
        if (parse_ll(cmd, o, text, &ll))
            return -1;
        *(int *)dst = (int)ll;
        return 0;
    case CLI_U64:
        return parse_u64(cmd, o, text, dst);
    case CLI_FLOAT:
    case CLI_SECONDS:
        return parse_float(cmd, o, text, dst);
    case CLI_FLAG:
        *(int *)dst = 1;
        return 0;
    case CLI_CHOICE:
        return parse_choice(cmd, o, text, dst);
    case CLI_INT_LIST:
        return parse_list(cmd, o, text, dst);
    }
    return -1;
}

static void set_unset(const cli_option *o, void *base)
{
    void *dst = (char *)base + o->off;
    switch (o->type) {
    case CLI_PATH:
    case CLI_STRING:
        *(const char **)dst = NULL;
        break;
    case CLI_INT:
        *(int *)dst = CLI_UNSET_INT;
        break;
    case CLI_U64:
        *(uint64_t *)dst = CLI_UNSET_U64;
        break;
    case CLI_FLOAT:
    case CLI_SECONDS:
        *(double *)dst = NAN;
        break;
    case CLI_FLAG:
        *(int *)dst = 0;
        break;
    case CLI_CHOICE:
        *(int *)dst = CLI_UNSET_CHOICE;
        break;
    case CLI_INT_LIST:
        memset(dst, 0, sizeof(cli_int_list));
        break;
    }
}

/* The defaults: $env when set, else def, else unset (keep: leave as is). */
static int apply_defaults(const char *cmd, const cli_option *opts, int n, void *base)
{
    for (int i = 0; i < n; i++) {
        const cli_option *o = &opts[i];
        const char *env = o->env ? getenv(o->env) : NULL;
        if (env && *env) {
            if (set_value(cmd, o, base, env)) {
                cli_error(cmd, "(the value came from $%s)", o->env);
                return -1;
            }
        } else if (o->keep) {
            continue;
        } else if (o->def) {
            if (set_value(cmd, o, base, o->def)) {
                cli_error(cmd, "internal error: %s has a bad default", o->name);
                return -1;
            }
        } else {
            set_unset(o, base);
        }
    }
    return 0;
}

/* ---- parsing ---- */

typedef struct parse_state {
    const cli_command *c;
    void *opts;
    cli_globals *g;
    unsigned char given[64]; /* the command's options given */
    char cmdname[64];        /* in messages: "eval", "zoo: build" */
} parse_state;

/* The option argv word `word` names (the part before '=' when there is
 * one); *is_global says which table. */
static const cli_option *lookup(const parse_state *ps, const char *word, size_t len,
                                int *is_global, int *index)
{
    for (int i = 0; i < ps->c->nopts; i++) {
        const cli_option *o = &ps->c->opts[i];
        if ((strlen(o->name) == len && !strncmp(o->name, word, len)) ||
            (o->alias && strlen(o->alias) == len && !strncmp(o->alias, word, len))) {
            *is_global = 0;
            *index = i;
            return o;
        }
    }
    for (int i = 0; i < CLI_NGLOBALS; i++) {
        const cli_option *o = &CLI_GLOBAL_OPTS[i];
        if ((ps->c->globals & CLI_GLOBAL_MASKS[i]) && strlen(o->name) == len &&
            !strncmp(o->name, word, len)) {
            *is_global = 1;
            *index = i;
            return o;
        }
    }
    return NULL;
}

/* argv[*i] is an option: find it, take its value, store it. */
static int parse_option(parse_state *ps, int argc, char **argv, int *i)
{
    const char *word = argv[*i];
    const char *eq = strncmp(word, "--", 2) ? NULL : strchr(word, '=');
    size_t len = eq ? (size_t)(eq - word) : strlen(word);
    int is_global = 0, index = 0;
    const cli_option *o = lookup(ps, word, len, &is_global, &index);
    if (!o) {
        int known = 0;
        for (int k = 0; k < CLI_NGLOBALS; k++)
            known |= strlen(CLI_GLOBAL_OPTS[k].name) == len &&
                     !strncmp(CLI_GLOBAL_OPTS[k].name, word, len);
        if (known)
            cli_error(ps->cmdname, "%.*s does not apply to this command (see 'd2nwg %s --help')",
                      (int)len, word, ps->c->name);
        else
            cli_error(ps->cmdname, "unknown option '%.*s' (see 'd2nwg %s --help')", (int)len,
                      word, ps->c->name);
        return -1;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (o->type == CLI_FLAG && value) {
        cli_error(ps->cmdname, "%s takes no value (got '%s')", o->name, value);
        return -1;
    }
    if (o->type != CLI_FLAG && !value) {
        if (*i + 1 >= argc) {
            cli_error(ps->cmdname, "%s needs a value (%s)", o->name,
                      o->metavar ? o->metavar : "see --help");
            return -1;
        }
        value = argv[++*i];
    }
    void *base = is_global ? (void *)ps->g : ps->opts;
    if (set_value(ps->cmdname, o, base, value ? value : ""))
        return -1;
    if (!is_global && index < 64)
        ps->given[index] = 1;
    return 0;
}

static int parse_positional(parse_state *ps, const char *word)
{
    const cli_command *c = ps->c;
    if (!c->positional) {
        cli_error(ps->cmdname, "unexpected argument '%s' (see 'd2nwg %s --help')", word, c->name);
        return -1;
    }
    if (c->positional_many) {
        cli_words *w = (cli_words *)((char *)ps->opts + c->positional_off);
        if (w->n >= CLI_WORDS_MAX) {
            cli_error(ps->cmdname, "at most %d %s, please", CLI_WORDS_MAX, c->positional);
            return -1;
        }
        w->v[w->n++] = word;
        return 0;
    }
    const char **dst = (const char **)((char *)ps->opts + c->positional_off);
    if (*dst) {
        cli_error(ps->cmdname, "one %s, please ('%s' and '%s')", c->positional, *dst, word);
        return -1;
    }
    *dst = word;
    return 0;
}

static int check_complete(const parse_state *ps)
{
    const cli_command *c = ps->c;
    for (int i = 0; i < c->nopts && i < 64; i++)
        if (c->opts[i].required && !ps->given[i]) {
            cli_error(ps->cmdname, "%s is required (see 'd2nwg %s --help')", c->opts[i].name,
                      c->name);
            return -1;
        }
    int missing = c->positional_many
                      ? ((const cli_words *)((const char *)ps->opts + c->positional_off))->n == 0
                      : c->positional && !*(const char **)((char *)ps->opts + c->positional_off);
    if (missing) {
        if (c->missing_positional)
            cli_error(ps->cmdname, "%s", c->missing_positional);
        else
            cli_error(ps->cmdname, "%s is required (see 'd2nwg %s --help')", c->positional,
                      c->name);
        return -1;
    }
    return 0;
}

/* A global option given before the command that the command does not take. */
static int check_globals_apply(const parse_state *ps)
{
    for (int i = 0; i < CLI_NGLOBALS; i++)
        if ((ps->g->given & CLI_GLOBAL_MASKS[i]) && !(ps->c->globals & CLI_GLOBAL_MASKS[i])) {
            cli_error(ps->cmdname, "%s does not apply to this command (see 'd2nwg %s --help')",
                      CLI_GLOBAL_OPTS[i].name, ps->c->name);
            return -1;
        }
    return 0;
}

int cli_parse(const cli_command *c, void *opts, cli_globals *g, int argc, char **argv,
              int *code)
{
    parse_state ps = {.c = c, .opts = opts, .g = g};
    /* a subcommand's messages read "d2nwg zoo: build: ...", as its other
     * messages do */
    size_t sp = strcspn(c->name, " ");
    snprintf(ps.cmdname, sizeof ps.cmdname, "%.*s%s%s", (int)sp, c->name,
             c->name[sp] ? ": " : "", c->name[sp] ? c->name + sp + 1 : "");
    *code = EXIT_USAGE;
    if (c->positional_many)
        ((cli_words *)((char *)opts + c->positional_off))->n = 0;
    else if (c->positional)
        *(const char **)((char *)opts + c->positional_off) = NULL;
    if (apply_defaults(ps.cmdname, c->opts, c->nopts, opts))
        return 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cli_help(c, opts, g, stdout);
            *code = EXIT_OK;
            return 0;
        }
    if (check_globals_apply(&ps))
        return 0;
    for (int i = 1; i < argc; i++) {
        int rc = argv[i][0] == '-' && argv[i][1] ? parse_option(&ps, argc, argv, &i)
                                                 : parse_positional(&ps, argv[i]);
        if (rc)
            return 0;
    }
    if (check_complete(&ps))
        return 0;
    *code = EXIT_OK;
    return 1;
}

/* ---- global options before the command ---- */

void cli_globals_init(cli_globals *g)
{
    memset(g, 0, sizeof *g);
    /* constant defaults and $D2NWG_SERVER / $D2NWG_TOKEN, which are text:
     * nothing here can fail */
    (void)apply_defaults("", CLI_GLOBAL_OPTS, CLI_NGLOBALS, g);
}

int cli_parse_globals(cli_globals *g, int argc, char **argv, int *next, int *code)
{
    static const cli_command ALL = {.name = "", .globals = ~0u};
    parse_state ps = {.c = &ALL, .opts = g, .g = g, .cmdname = ""}; /* "d2nwg: ..." */
    *code = EXIT_USAGE;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *eq = strchr(argv[i], '=');
        size_t len = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        int is_global = 0, index = 0;
        if (!lookup(&ps, argv[i], len, &is_global, &index))
            break; /* --help, --version or a mistake: main decides */
        if (parse_option(&ps, argc, argv, &i))
            return 0;
        g->given |= CLI_GLOBAL_MASKS[index];
    }
    *next = i;
    *code = EXIT_OK;
    return 1;
}
