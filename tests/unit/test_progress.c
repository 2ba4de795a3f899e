/* test_progress.c - the progress bar as a log sees it: without a terminal,
 * whole lines (one at the first step, one per 10% of the total, the final
 * one) and never a carriage return; on a terminal, redrawn in place. */
#include "testutil.h"

#include "progress.h"

/* Everything written to p's stream, as text (caller frees). */
static char *captured(FILE *f)
{
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_a_log_gets_one_line_per_tenth(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    progress p;
    progress_begin(&p, "eval", "tasks", 40, 1);
    p.out = f;
    p.tty = 0;
    for (long i = 1; i <= 40; i++)
        progress_update(&p, i, NULL);
    progress_end(&p, 40, NULL);
    char *s = captured(f);
    /* done = 1, 4, 8, ..., 40 (11 lines), then the final one */
    assert_int_equal(count_char(s, '\n'), 12);
    assert_int_equal(count_char(s, '\r'), 0);
    assert_int_equal(count_char(s, '\033'), 0);
    assert_non_null(strstr(s, " 1/40 "));
    assert_non_null(strstr(s, " 20/40 "));
    assert_null(strstr(s, " 21/40 "));
    assert_non_null(strstr(s, "took"));
    free(s);
    fclose(f);
}

static void test_small_totals_get_a_line_per_step(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    progress p;
    progress_begin(&p, "eval", "tasks", 3, 1);
    p.out = f;
    p.tty = 0;
    for (long i = 1; i <= 3; i++)
        progress_update(&p, i, "loss 0.5");
    char *s = captured(f);
    assert_int_equal(count_char(s, '\n'), 3);
    assert_non_null(strstr(s, "3/3"));
    assert_non_null(strstr(s, "loss 0.5\n"));
    free(s);
    fclose(f);
}

static void test_a_terminal_is_redrawn_in_place(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    progress p;
    progress_begin(&p, "eval", "tasks", 40, 1);
    p.out = f;
    p.tty = 1;
    progress_update(&p, 1, NULL);
    progress_end(&p, 40, NULL);
    char *s = captured(f);
    assert_int_equal(count_char(s, '\r'), 2);
    assert_int_equal(count_char(s, '\n'), 1); /* only after the final draw */
    free(s);
    fclose(f);
}

static void test_disabled_writes_nothing(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    progress p;
    progress_begin(&p, "eval", "tasks", 40, 0);
    p.out = f;
    p.tty = 0;
    progress_update(&p, 1, NULL);
    progress_end(&p, 40, NULL);
    assert_int_equal(ftell(f), 0);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_log_gets_one_line_per_tenth),
        cmocka_unit_test(test_small_totals_get_a_line_per_step),
        cmocka_unit_test(test_a_terminal_is_redrawn_in_place),
        cmocka_unit_test(test_disabled_writes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
