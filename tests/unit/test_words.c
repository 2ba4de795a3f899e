/* test_words.c - the words:LANG text source: the language table and its held-out
 * languages (refused by name where a base model trains), real counts, splits and
 * first words of Debian's lists (checked against an independent Python reading of the
 * same hash), ISO-8859-1 lists converted to UTF-8, and bad UTF-8 refused. The lists
 * come from `make deps` (wmanx, wgaelic, wamerican ...). */
#include "testutil.h"

#include "data.h"
#include "words.h"

static void load_ok(words_source *s, const char *spec)
{
    d2_error e = {0};
    if (words_source_load(s, spec, NULL, &e))
        fail_msg("%s: %s", spec, e.msg);
}

static void expect_word(const words_list *l, int i, const char *want)
{
    size_t len;
    const unsigned char *w = words_get(l, i, &len);
    if (len != strlen(want) || memcmp(w, want, len))
        fail_msg("word %d is '%.*s', expected '%s'", i, (int)len, (const char *)w, want);
}

static void test_table_heldout(void **state)
{
    (void)state;
    assert_int_equal(words_table_size(), 26);
    int idx[WORDS_MAX_LANGS], n;
    d2_error e = {0};
    assert_int_equal(words_select("words:heldout", idx, &n, &e), 0);
    assert_int_equal(n, 4);
    const char *want[] = {"catalan", "danish", "bulgarian", "manx"}; /* table order */
    for (int k = 0; k < 4; k++)
        assert_string_equal(words_table_name(idx[k]), want[k]);
    assert_int_equal(words_select("words:background", idx, &n, &e), 0);
    assert_int_equal(n, 22);
    for (int k = 0; k < n; k++)
        assert_false(words_table_heldout(idx[k]));
    assert_string_equal(words_table_name(idx[0]), "american-english");
    assert_string_equal(words_table_file(words_table_find("Galician")), "galician-minimos");
}

static void test_heldout_refused_by_name(void **state)
{
    (void)state;
    d2_error e = {0};
    assert_int_equal(words_check_background("words:background", &e), 0);
    assert_int_equal(words_check_background("words:french,polish", &e), 0);
    const char *bad[] = {"words:catalan", "words:french,Danish", "words:manx",
                         "words:bulgarian,ukrainian"};
    const char *name[] = {"'catalan'", "'danish'", "'manx'", "'bulgarian'"};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(words_check_background(bad[k], &e), D2_EINVAL);
        assert_non_null(strstr(e.msg, name[k]));
        assert_non_null(strstr(e.msg, "held out"));
    }
    assert_int_equal(words_check_background("words:heldout", &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "catalan, danish, manx, bulgarian"));
    int idx[WORDS_MAX_LANGS], n;
    assert_int_equal(words_select("words:klingon", idx, &n, &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "'klingon'"));
    assert_int_equal(words_select("words:french,french", idx, &n, &e), D2_EINVAL);
    assert_int_equal(words_select("words:", idx, &n, &e), D2_EINVAL);
}

/* manx ships in ISO-8859-1: converted, then split by the hash */
static void test_manx_counts(void **state)
{
    (void)state;
    words_source s;
    load_ok(&s, "words:manx");
    assert_int_equal(s.nlang, 1);
    const words_lang *l = &s.lang[0];
    assert_string_equal(l->name, "manx");
    assert_int_equal(l->total, 32358);
    assert_int_equal(l->text_len, 310980); /* 310979 bytes + 1 for the one 0xF4 -> C3 B4 */
    assert_int_equal(l->split[WORDS_TRAIN].n, 25876);
    assert_int_equal(l->split[WORDS_VALIDATION].n, 3261);
    assert_int_equal(l->split[WORDS_TEST].n, 3221);
    expect_word(&l->split[WORDS_TRAIN], 0, "Aaloo");
    expect_word(&l->split[WORDS_VALIDATION], 0, "AS");
    expect_word(&l->split[WORDS_TEST], 0, "Ahab");
    expect_word(&l->split[WORDS_TEST], 3220, "yurnah");
    assert_non_null(strstr((const char *)l->text, "Dh\xc3\xb4ne"));
    words_source_free(&s);
}

static void test_two_languages(void **state)
{
    (void)state;
    words_source s;
    load_ok(&s, "gaelic,american-english");
    assert_int_equal(s.nlang, 2);
    assert_string_equal(s.lang[1].name, "american-english");
    assert_int_equal(s.lang[0].total, 15670);
    assert_int_equal(s.lang[0].split[WORDS_TRAIN].n, 12544);
    assert_int_equal(s.lang[0].split[WORDS_VALIDATION].n, 1575);
    assert_int_equal(s.lang[0].split[WORDS_TEST].n, 1551);
    expect_word(&s.lang[0].split[WORDS_TEST], 0, "Bun-an-t-sl\xc3\xa9ibh");
    expect_word(&s.lang[0].split[WORDS_TEST], 1550, "\xc3\xb9rlann");
    assert_int_equal(s.lang[1].total, 104334);
    assert_int_equal(s.lang[1].split[WORDS_TRAIN].n, 83359);
    assert_int_equal(s.lang[1].split[WORDS_VALIDATION].n, 10391);
    assert_int_equal(s.lang[1].split[WORDS_TEST].n, 10584);
    expect_word(&s.lang[1].split[WORDS_TRAIN], 83358, "zygotes");
    /* the split is the word's alone: "zygote" is validation whatever list holds it */
    assert_int_equal(words_split_of((const unsigned char *)"zygote", 6), WORDS_VALIDATION);
    words_source_free(&s);
}

static void test_bad_utf8_refused(void **state)
{
    (void)state;
    words_lang l;
    d2_error e = {0};
    const unsigned char bad[] = "abc\nd\xff" "e\nf\n";
    assert_int_equal(words_lang_parse(&l, "x", "bad.txt", bad, sizeof bad - 1, WORDS_UTF8, &e),
                     D2_EFORMAT);
    assert_non_null(strstr(e.msg, "bad.txt: line 2: invalid UTF-8 at byte offset 5"));
    assert_null(l.text);
    const unsigned char overlong[] = "ok\n\xc0\xaf\n";
    assert_int_equal(words_lang_parse(&l, "x", "o.txt", overlong, sizeof overlong - 1,
                                      WORDS_UTF8, &e), D2_EFORMAT);
    assert_non_null(strstr(e.msg, "line 2"));
    /* the same bytes read as ISO-8859-1 are two letters */
    assert_int_equal(words_lang_parse(&l, "x", "o.txt", overlong, sizeof overlong - 1,
                                      WORDS_LATIN1, &e), 0);
    assert_int_equal(l.total, 2);
    words_lang_free(&l);
    const unsigned char crlf[] = "a\r\n\r\n\nbb\r\n";
    assert_int_equal(words_lang_parse(&l, "x", "c.txt", crlf, sizeof crlf - 1, WORDS_UTF8, &e),
                     0);
    assert_int_equal(l.total, 2);
    words_lang_free(&l);
    assert_int_equal(words_lang_parse(&l, "x", "e.txt", crlf + 3, 3, WORDS_UTF8, &e),
                     D2_EFORMAT);
    assert_non_null(strstr(e.msg, "no words"));
}

/* the labelled-data loader names a words source as text, not as unknown */
static void test_not_a_labelled_source(void **state)
{
    (void)state;
    data_source ds;
    d2_error e = {0};
    memset(&ds, 0, sizeof ds);
    assert_int_equal(data_source_load(&ds, "words:french", &e), D2_EINVAL);
    assert_non_null(strstr(e.msg, "is a text source"));
}

static void test_missing_dir(void **state)
{
    (void)state;
    words_source s;
    d2_error e = {0};
    assert_true(words_source_load(&s, "words:irish", "/nonexistent-dict", &e) < 0);
    assert_non_null(strstr(e.msg, "words:irish"));
    assert_int_equal(s.nlang, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_heldout),        cmocka_unit_test(test_heldout_refused_by_name),
        cmocka_unit_test(test_manx_counts),          cmocka_unit_test(test_two_languages),
        cmocka_unit_test(test_bad_utf8_refused),     cmocka_unit_test(test_missing_dir),
        cmocka_unit_test(test_not_a_labelled_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
