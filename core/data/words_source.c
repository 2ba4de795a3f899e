/* words_source.c - loading "words:SELECTION" (words.h): the selection, each
 * list's conversion to UTF-8, validation, lines and hash split. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "utf8.h"
#include "words.h"

#define WORDS_MAX_FILE ((size_t)256 << 20)

uint64_t words_hash(const unsigned char *w, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= w[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

words_split words_split_of(const unsigned char *w, size_t len)
{
    unsigned r = (unsigned)(words_hash(w, len) % 10u);
    return r < 8 ? WORDS_TRAIN : (r == 8 ? WORDS_VALIDATION : WORDS_TEST);
}

/* bytes in enc -> a malloc'd UTF-8 copy (NUL-terminated) */
static int words_to_utf8(const unsigned char *in, size_t len, words_encoding enc,
                         unsigned char **out, size_t *out_len, const char *what, d2_error *err)
{
    size_t n = len;
    if (enc == WORDS_LATIN1)
        for (size_t i = 0; i < len; i++)
            n += in[i] >= 0x80;
    unsigned char *t = malloc(n + 1);
    if (!t)
        return d2_fail(err, D2_ENOMEM, "%s: out of memory (%zu bytes)", what, n);
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        if (enc == WORDS_LATIN1 && in[i] >= 0x80) {
            t[j++] = (unsigned char)(0xC0 | (in[i] >> 6));
            t[j++] = (unsigned char)(0x80 | (in[i] & 0x3F));
        } else {
            t[j++] = in[i];
        }
    }
    t[j] = '\0';
    *out = t;
    *out_len = j;
    return 0;
}

/* the line (1-based) that holds offset off of text */
static long words_line_of(const unsigned char *text, size_t off)
{
    long line = 1;
    for (size_t i = 0; i < off; i++)
        line += text[i] == '\n';
    return line;
}

static int words_alloc_split(words_list *l, int n, const unsigned char *text)
{
    l->n = 0;
    l->text = text;
    l->start = malloc((size_t)(n ? n : 1) * sizeof *l->start);
    l->len = malloc((size_t)(n ? n : 1) * sizeof *l->len);
    return l->start && l->len ? 0 : -1;
}

/* count the words of each split, then fill them */
static int words_index(words_lang *l, const char *what, d2_error *err)
{
    int count[WORDS_NSPLITS] = {0};
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0, n = l->text_len;
        l->total = 0;
        while (i < n) {
            size_t e = i;
            while (e < n && l->text[e] != '\n')
                e++;
            size_t wl = e - i;
            if (wl && l->text[e - 1] == '\r')
                wl--;
            if (wl > UINT32_MAX || i > UINT32_MAX)
                return d2_fail(err, D2_ERANGE, "%s: over 4 GiB", what);
            if (wl) {
                words_split s = words_split_of(l->text + i, wl);
                words_list *dst = &l->split[s];
                if (pass == 0) {
                    count[s]++;
                } else {
                    dst->start[dst->n] = (uint32_t)i;
                    dst->len[dst->n++] = (uint32_t)wl;
                }
                l->total++;
            }
            i = e + 1;
        }
        for (int s = 0; pass == 0 && s < WORDS_NSPLITS; s++)
            if (words_alloc_split(&l->split[s], count[s], l->text))
                return d2_fail(err, D2_ENOMEM, "%s: out of memory indexing words", what);
    }
    return 0;
}

int words_lang_parse(words_lang *l, const char *name, const char *what,
                     const unsigned char *bytes, size_t len, words_encoding enc, d2_error *err)
{
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    int rc = words_to_utf8(bytes, len, enc, &l->text, &l->text_len, what, err);
    if (rc)
        return rc;
    size_t bad;
    if (!d2_utf8_valid(l->text, l->text_len, &bad)) {
        long line = words_line_of(l->text, bad);
        rc = d2_fail(err, D2_EFORMAT, "%s: line %ld: invalid UTF-8 at byte offset %zu", what,
                     line, bad);
    }
    if (!rc)
        rc = words_index(l, what, err);
    if (!rc && l->total == 0)
        rc = d2_fail(err, D2_EFORMAT, "%s: no words", what);
    if (rc)
        words_lang_free(l);
    return rc;
}

void words_lang_free(words_lang *l)
{
    for (int s = 0; s < WORDS_NSPLITS; s++) {
        free(l->split[s].start);
        free(l->split[s].len);
    }
    free(l->text);
    memset(l, 0, sizeof *l);
}

static int words_load_lang(words_lang *l, int idx, const char *dir, d2_error *err)
{
    char path[1200];
    int n = snprintf(path, sizeof path, "%s/%s", dir, words_table_file(idx));
    if (n < 0 || (size_t)n >= sizeof path)
        return d2_fail(err, D2_EINVAL, "word list folder too long: %.64s...", dir);
    unsigned char *buf;
    size_t len;
    int rc = d2_read_file(path, &buf, &len, WORDS_MAX_FILE, err);
    if (rc)
        return d2_wrap(err, "words:%s (Debian package w*, installed by `make deps`)",
                       words_table_name(idx));
    rc = words_lang_parse(l, words_table_name(idx), path, buf, len, words_table_encoding(idx),
                          err);
    free(buf);
    return rc;
}

static const char *words_selection(const char *spec)
{
    return strncmp(spec, "words:", 6) ? spec : spec + 6;
}

int words_select(const char *spec, int *idx, int *n, d2_error *err)
{
    const char *sel = words_selection(spec);
    *n = 0;
    if (!strcmp(sel, "background") || !strcmp(sel, "heldout")) {
        int want = !strcmp(sel, "heldout");
        for (int i = 0; i < words_table_size(); i++)
            if (words_table_heldout(i) == want)
                idx[(*n)++] = i;
        return 0;
    }
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", sel) >= (int)sizeof buf)
        return d2_fail(err, D2_EINVAL, "words: selection too long");
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int i = words_table_find(w);
        if (i < 0)
            return d2_fail(err, D2_EINVAL, "words: unknown language '%s' (background, heldout, "
                           "or a list of: american-english, british-english, ..., see "
                           "README 'Language models')", w);
        for (int k = 0; k < *n; k++)
            if (idx[k] == i)
                return d2_fail(err, D2_EINVAL, "words: language '%s' named twice", w);
        if (*n >= WORDS_MAX_LANGS)
            return d2_fail(err, D2_EINVAL, "words: too many languages");
        idx[(*n)++] = i;
    }
    if (*n == 0)
        return d2_fail(err, D2_EINVAL, "words: empty selection");
    return 0;
}

int words_check_background(const char *spec, d2_error *err)
{
    const char *sel = words_selection(spec);
    if (!strcmp(sel, "heldout"))
        return d2_fail(err, D2_EINVAL, "words:heldout are the languages results are measured "
                       "on (%s); a base model may not train on them", words_heldout_names());
    int idx[WORDS_MAX_LANGS], n;
    int rc = words_select(sel, idx, &n, err);
    for (int k = 0; !rc && k < n; k++)
        if (words_table_heldout(idx[k]))
            rc = d2_fail(err, D2_EINVAL, "words: language '%s' is held out (%s); a base model "
                         "may not train on it", words_table_name(idx[k]), words_heldout_names());
    return rc;
}

int words_source_load(words_source *s, const char *spec, const char *dict_dir, d2_error *err)
{
    memset(s, 0, sizeof *s);
    if (!spec || strlen(spec) >= sizeof s->spec)
        return d2_fail(err, D2_EINVAL, "words: missing or too long source spec");
    snprintf(s->spec, sizeof s->spec, "%s", spec);
    int idx[WORDS_MAX_LANGS], n;
    int rc = words_select(spec, idx, &n, err);
    for (int k = 0; !rc && k < n; k++) {
        rc = words_load_lang(&s->lang[k], idx[k], dict_dir ? dict_dir : WORDS_DICT_DIR, err);
        if (!rc)
            s->nlang = k + 1;
    }
    if (rc)
        words_source_free(s);
    return rc;
}

void words_source_free(words_source *s)
{
    for (int k = 0; k < s->nlang; k++)
        words_lang_free(&s->lang[k]);
    s->nlang = 0;
}
