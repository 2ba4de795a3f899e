/* cli_opts.h - one table-driven option parser for every `d2nwg` command.
 *
 * A command describes its options as a table of cli_option (name, type,
 * range, default, help text, and where the value goes: an offset into the
 * command's options struct). cli_parse fills the struct from the defaults and
 * then from argv ("--name value" and "--name=value"), and prints the
 * command's --help from the same table, so help and behaviour cannot
 * disagree. Usage errors (unknown option, missing value, not a number, out
 * of range, a required option missing) print "d2nwg <cmd>: ..." naming the
 * option and what was wrong ("d2nwg zoo: build: ..." for a subcommand), and
 * give EXIT_USAGE (2).
 *
 * The global options (--server, --token, --retry-for, --json, --quiet) live
 * in a cli_globals the command line's main() fills from the words before the
 * command; each command says which of them it takes (cli_command.globals) and
 * accepts those after its name as well. */
#ifndef D2_CLI_OPTS_H
#define D2_CLI_OPTS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cli_type {
    CLI_STRING,   /* any text (const char *) */
    CLI_PATH,     /* a file or folder, not empty (const char *) */
    CLI_INT,      /* integer in lo..hi (int) */
    CLI_U64,      /* integer in 0..hi, hi 0: any 64-bit value (uint64_t) */
    CLI_FLOAT,    /* finite number in flo..fhi (double) */
    CLI_SECONDS,  /* CLI_FLOAT with an optional 's' suffix ("30s") (double) */
    CLI_FLAG,     /* no value; given -> 1 (int) */
    CLI_CHOICE,   /* one of choices; the index is stored (int) */
    CLI_INT_LIST  /* comma list of at most max_items integers in lo..hi (cli_int_list) */
} cli_type;

/* The words of a command that takes several positionals (cli_command.positional_many). */
#define CLI_WORDS_MAX 1024
typedef struct cli_words {
    int n;
    const char *v[CLI_WORDS_MAX];
} cli_words;

#define CLI_LIST_MAX 16
typedef struct cli_int_list {
    int n;
    int v[CLI_LIST_MAX];
} cli_int_list;

/* The value an option without a default holds when not given: NULL for text,
 * CLI_UNSET_INT, CLI_UNSET_U64, NAN for numbers, CLI_UNSET_CHOICE, n = 0. */
#define CLI_UNSET_INT INT_MIN
#define CLI_UNSET_U64 UINT64_MAX
#define CLI_UNSET_CHOICE (-1)

typedef struct cli_option {
    const char *name;    /* "--tasks" */
    const char *alias;   /* another spelling ("-k") or NULL */
    cli_type type;
    size_t off;          /* where the value goes: offset in the options struct */
    const char *metavar; /* "N", "FILE" (NULL: from the type) */
    const char *help;    /* lines separated by '\n' */
    const char *def;     /* the default, as typed on the command line; NULL: unset */
    const char *unset;   /* what no value means, shown as the default ("the bundle's") */
    const char *env;     /* an environment variable that overrides def when set */
    int keep;            /* the default is the value the struct already holds */
    int required;        /* the command cannot run without it */
    long long lo, hi;    /* CLI_INT, CLI_INT_LIST: range of each value; CLI_U64: hi */
    double flo, fhi;     /* CLI_FLOAT, CLI_SECONDS: range */
    const char *const *choices; /* CLI_CHOICE: NULL-terminated */
    int max_items;       /* CLI_INT_LIST: at most this many values (<= CLI_LIST_MAX) */
} cli_option;

/* The global options; G_* say which a command takes. */
typedef struct cli_globals {
    const char *server; /* --server URL, else $D2NWG_SERVER, else CLI_DEFAULT_SERVER */
    const char *token;  /* --token, else $D2NWG_TOKEN, else NULL */
    double retry_for;   /* --retry-for SECONDS */
    int json;           /* --json: machine-readable output */
    int quiet;          /* --quiet: no progress or table */
    unsigned given;     /* the G_* given before the command */
} cli_globals;

enum {
    CLI_G_SERVER = 1u << 0,
    CLI_G_TOKEN = 1u << 1,
    CLI_G_RETRY_FOR = 1u << 2,
    CLI_G_JSON = 1u << 3,
    CLI_G_QUIET = 1u << 4,
    CLI_G_REMOTE = CLI_G_SERVER | CLI_G_TOKEN | CLI_G_RETRY_FOR
};

#define CLI_DEFAULT_SERVER "http://127.0.0.1:8080"
#define CLI_DEFAULT_RETRY_FOR "30"

/* The global options' table (offsets into cli_globals) and their G_* bits. */
#define CLI_NGLOBALS 5
extern const cli_option CLI_GLOBAL_OPTS[CLI_NGLOBALS];
extern const unsigned CLI_GLOBAL_MASKS[CLI_NGLOBALS];

typedef struct cli_command {
    const char *name;       /* "eval", "zoo build" */
    const char *synopsis;   /* after "usage: d2nwg <name> " */
    const char *about;      /* a paragraph (may be NULL) */
    const cli_option *opts;
    int nopts;
    unsigned globals;       /* CLI_G_* this command takes */
    const char *positional; /* "JOB_ID": one word that is not an option, or NULL */
    size_t positional_off;  /* where it goes (const char *; cli_words with positional_many) */
    int positional_many;    /* 1 .. CLI_WORDS_MAX such words instead of one */
    const char *missing_positional; /* the message when it is missing */
    const char *footer;     /* printed after the options (may be NULL) */
} cli_command;

#define CLI_NOPTS(table) ((int)(sizeof(table) / sizeof((table)[0])))

/* Defaults of the global options (environment included). */
void cli_globals_init(cli_globals *g);
/* Parse the global options in argv[1..] up to the first word that is not
 * one (the command); *next is its index. 1: go on; 0: stop with *code
 * (a usage error). */
int cli_parse_globals(cli_globals *g, int argc, char **argv, int *next, int *code);

/* Fill opts (the command's struct) with the defaults, then from argv[1..]
 * (argv[0] is the command's name); global options the command takes go to
 * g. 1: run the command; 0: return *code (EXIT_OK after --help, EXIT_USAGE
 * after a message). */
int cli_parse(const cli_command *c, void *opts, cli_globals *g, int argc, char **argv,
              int *code);

/* The command's --help, generated from its table and the values opts and g
 * hold after the defaults: usage line, about, each option with its type,
 * range and default, the global options it takes, the footer. */
void cli_help(const cli_command *c, const void *opts, const cli_globals *g, FILE *out);
/* The global options' lines (those in mask), for `d2nwg --help`. */
void cli_globals_help(unsigned mask, const cli_globals *g, FILE *out);

#endif
