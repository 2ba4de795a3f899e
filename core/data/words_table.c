/* words_table.c - the languages of the words source: Debian's word lists, the
 * file each package installs in /usr/share/dict (checked with dpkg -L), its
 * encoding, and the four held-out languages (words.h). */
#include <strings.h>

#include "words.h"

typedef struct words_entry {
    const char *name, *file;
    words_encoding enc;
    int heldout;
} words_entry;

static const words_entry WORDS_TABLE[] = {
    {"american-english", "american-english", WORDS_UTF8, 0},     /* wamerican */
    {"british-english", "british-english", WORDS_UTF8, 0},       /* wbritish */
    {"canadian-english", "canadian-english", WORDS_UTF8, 0},     /* wcanadian */
    {"french", "french", WORDS_UTF8, 0},                         /* wfrench */
    {"italian", "italian", WORDS_UTF8, 0},                       /* witalian */
    {"spanish", "spanish", WORDS_UTF8, 0},                       /* wspanish */
    {"portuguese", "portuguese", WORDS_UTF8, 0},                 /* wportuguese */
    {"brazilian", "brazilian", WORDS_UTF8, 0},                   /* wbrazilian */
    {"galician", "galician-minimos", WORDS_UTF8, 0},             /* wgalician-minimos */
    {"catalan", "catalan", WORDS_UTF8, 1},                       /* wcatalan */
    {"ngerman", "ngerman", WORDS_UTF8, 0},                       /* wngerman */
    {"ogerman", "ogerman", WORDS_UTF8, 0},                       /* wogerman */
    {"swiss", "swiss", WORDS_UTF8, 0},                           /* wswiss */
    {"dutch", "dutch", WORDS_UTF8, 0},                           /* wdutch */
    {"swedish", "swedish", WORDS_LATIN1, 0},                     /* wswedish */
    {"bokmaal", "bokmaal", WORDS_LATIN1, 0},                     /* wnorwegian */
    {"nynorsk", "nynorsk", WORDS_LATIN1, 0},                     /* wnorwegian */
    {"faroese", "faroese", WORDS_UTF8, 0},                       /* wfaroese */
    {"danish", "danish", WORDS_UTF8, 1},                         /* wdanish */
    {"polish", "polish", WORDS_UTF8, 0},                         /* wpolish */
    {"ukrainian", "ukrainian", WORDS_UTF8, 0},                   /* wukrainian */
    {"bulgarian", "bulgarian", WORDS_UTF8, 1},                   /* wbulgarian */
    {"esperanto", "esperanto", WORDS_UTF8, 0},                   /* wesperanto */
    {"irish", "irish", WORDS_UTF8, 0},                           /* wirish */
    {"gaelic", "gaelic", WORDS_UTF8, 0},                         /* wgaelic */
    {"manx", "manx", WORDS_LATIN1, 1},                           /* wmanx */
};
#define WORDS_TABLE_N ((int)(sizeof WORDS_TABLE / sizeof WORDS_TABLE[0]))
_Static_assert(WORDS_TABLE_N <= WORDS_MAX_LANGS, "WORDS_MAX_LANGS too small");

int words_table_size(void)
{
    return WORDS_TABLE_N;
}

const char *words_table_name(int i)
{
    return WORDS_TABLE[i].name;
}

const char *words_table_file(int i)
{
    return WORDS_TABLE[i].file;
}

words_encoding words_table_encoding(int i)
{
    return WORDS_TABLE[i].enc;
}

int words_table_heldout(int i)
{
    return WORDS_TABLE[i].heldout;
}

int words_table_find(const char *name)
{
    for (int i = 0; i < WORDS_TABLE_N; i++)
        if (!strcasecmp(name, WORDS_TABLE[i].name))
            return i;
    return -1;
}

const char *words_heldout_names(void)
{
    return "catalan, danish, manx, bulgarian";
}
