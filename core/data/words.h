/* words.h - the text source "words:SELECTION": Debian's word lists
 * (/usr/share/dict, packages wamerican ... wgalician-minimos, installed by
 * `make deps`), one word a sample, as UTF-8 bytes.
 *
 * Languages are named after their file in /usr/share/dict ("american-english",
 * "french", "bokmaal", "galician" for galician-minimos ...). Four are held out:
 * catalan, danish, manx and bulgarian - no base model, zoo or generator may
 * train on them or be tuned with them; each has relatives among the others.
 * Selections: "background" (every language that is not held out, in table
 * order), "heldout" (the four), or "LANG[,LANG...]".
 *
 * Files in ISO-8859-1 (bokmaal, nynorsk, swedish, manx as Debian ships them)
 * are converted to UTF-8; every list is then validated as UTF-8 (a bad byte is
 * refused with the file, line and offset). Lines are words: a trailing '\r' is
 * dropped, empty lines are skipped, nothing else is changed.
 *
 * Split: a word goes to train, validation or test by a hash of its bytes alone
 * (FNV-1a 64 then the splitmix64 finaliser, modulo 10: 0-7 train, 8
 * validation, 9 test), so the same word is in the same split in every
 * language (american/british/canadian English share most words, and none of
 * them leaks from one's train split into another's test split). */
#ifndef D2_WORDS_H
#define D2_WORDS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define WORDS_DICT_DIR "/usr/share/dict"
#define WORDS_MAX_LANGS 32

typedef enum words_split { WORDS_TRAIN = 0, WORDS_VALIDATION = 1, WORDS_TEST = 2 } words_split;
#define WORDS_NSPLITS 3

typedef enum words_encoding { WORDS_UTF8 = 0, WORDS_LATIN1 = 1 } words_encoding;

/* One split of one language: word i is text + start[i], len[i] bytes (no NUL). */
typedef struct words_list {
    int n;
    const unsigned char *text; /* the language's UTF-8 text (owned by the words_lang) */
    uint32_t *start, *len;
} words_list;

typedef struct words_lang {
    char name[32];
    unsigned char *text; /* the whole list in UTF-8 */
    size_t text_len;
    int total;           /* words in the file */
    words_list split[WORDS_NSPLITS];
} words_lang;

typedef struct words_source {
    char spec[256]; /* "words:..." as given */
    int nlang;
    words_lang lang[WORDS_MAX_LANGS];
} words_source;

/* The table: language i (0 <= i < words_table_size()), its file in dict_dir,
 * encoding and whether it is held out. */
int words_table_size(void);
const char *words_table_name(int i);
const char *words_table_file(int i);
words_encoding words_table_encoding(int i);
int words_table_heldout(int i);
/* Index of a language by name (case-insensitive), -1 when unknown. */
int words_table_find(const char *name);
/* The held-out names, "catalan, danish, manx, bulgarian" (static storage). */
const char *words_heldout_names(void);

/* The split of a word (0 train, 1 validation, 2 test) and the hash it comes from. */
uint64_t words_hash(const unsigned char *w, size_t len);
words_split words_split_of(const unsigned char *w, size_t len);

/* The table indices of "words:SELECTION" (or SELECTION), in the order named
 * (table order for "background" and "heldout"); idx holds WORDS_MAX_LANGS.
 * Unknown or repeated languages are refused. */
int words_select(const char *spec, int *idx, int *n, d2_error *err);
/* Load "words:SELECTION" (or SELECTION alone) from dict_dir (NULL: WORDS_DICT_DIR).
 * Unknown languages are refused naming the known ones. */
int words_source_load(words_source *s, const char *spec, const char *dict_dir, d2_error *err);
void words_source_free(words_source *s);
/* Refuse (D2_EINVAL, naming the language as held out) a spec that is
 * "heldout" or names a held-out language: for what trains a base model. */
int words_check_background(const char *spec, d2_error *err);

/* Parse one list (bytes of a file, len bytes, not NUL-terminated) into l:
 * convert from enc, validate UTF-8, split lines, assign splits. `what` names
 * the file in messages. On failure l is left empty. */
int words_lang_parse(words_lang *l, const char *name, const char *what,
                     const unsigned char *bytes, size_t len, words_encoding enc, d2_error *err);
void words_lang_free(words_lang *l);

static inline const unsigned char *words_get(const words_list *l, int i, size_t *len)
{
    *len = l->len[i];
    return l->text + l->start[i];
}

#endif
