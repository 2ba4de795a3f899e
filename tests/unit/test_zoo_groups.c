/* test_zoo_groups.c - sources side by side ("A+B") and zoos whose tasks stay
 * within one class group (a glyph script, or one part of an "A+B" source):
 *  - "digits-28+iris" is refused naming the part whose feature count differs;
 *  - "digits-28+glyphs:Latin,Greek" puts the glyph labels after digits',
 *    keeps each row's pixels, and groups classes by part and by script;
 *  - a zoo of that source draws every task inside one group, about half from
 *    each part, holds out combinations of the first group only, and its
 *    manifest keeps the groups through a save and load; `zoo info --json`
 *    lists them with their task counts;
 *  - an any-way zoo of it: each task's way in min..max inside a group that has
 *    that many classes, smaller held-out combinations where the first group
 *    is too small, all through a save and load. */
#include "testutil.h"

#include <jansson.h>
#include <unistd.h>

#include "zoo.h"

static void test_concat_refuses_mismatched_parts(void **state)
{
    (void)state;
    data_source s;
    d2_error err;
    assert_int_equal(data_source_load(&s, "digits-28+iris", &err), D2_EINVAL);
    assert_non_null(strstr(err.msg, "iris"));
    assert_non_null(strstr(err.msg, "features per row"));
    assert_int_equal(data_source_load(&s, "digits-28+", &err), D2_EINVAL);
}

static void test_concat_labels_and_groups(void **state)
{
    (void)state;
    data_source a, b, s;
    d2_error err;
    assert_int_equal(data_source_load(&a, "digits-28", &err), 0);
    assert_int_equal(data_source_load(&b, "glyphs:Latin,Greek", &err), 0);
    assert_int_equal(data_source_load(&s, "digits-28+glyphs:Latin,Greek", &err), 0);
    assert_int_equal(s.nparts, 2);
    assert_int_equal(s.train.classes, a.train.classes + b.train.classes);
    assert_int_equal(s.train.n, a.train.n + b.train.n);
    assert_int_equal(s.test.n, a.test.n + b.test.n);
    // the glyph rows come after the digits rows, labels shifted by 10
    const int D = s.train.dim, last = s.train.n - 1;
    assert_int_equal(s.train.y[last], b.train.y[b.train.n - 1] + a.train.classes);
    assert_memory_equal(s.train.x + (size_t)last * D, b.train.x + (size_t)(b.train.n - 1) * D,
                        (size_t)D * sizeof(float));
    int part;
    assert_string_equal(data_source_class_group(&s, 3, &part), "digits-28");
    assert_int_equal(part, 0);
    assert_string_equal(data_source_class_group(&s, 10, &part), "Greek"); // table order
    assert_int_equal(part, 1);
    assert_string_equal(data_source_class_group(&s, s.train.classes - 1, &part), "Latin");
    data_source_free(&a);
    data_source_free(&b);
    data_source_free(&s);
}

static void test_grouped_zoo(void **state)
{
    (void)state;
    zoo_build_cfg c = zoo_build_defaults();
    c.source = "digits-28+glyphs:Latin,Greek";
    c.feature = "pca:16";
    c.way = 3;
    c.tasks = 60;
    c.per_class = 20;
    c.train.epochs = 2;
    zoo z;
    d2_error err;
    assert_int_equal(zoo_build(&z, &c, &err), 0);
    assert_int_equal(z.ngroups, 3);
    assert_string_equal(z.groups[0].name, "digits-28");
    assert_int_equal(z.groups[0].first, 0);
    assert_int_equal(z.groups[0].count, 10);
    int from_digits = 0;
    for (int i = 0; i < z.n; i++) {
        int g = 0;
        while (g + 1 < z.ngroups && z.e[i].classes[0] >= z.groups[g + 1].first)
            g++;
        for (int k = 0; k < z.way; k++) {
            assert_true(z.e[i].classes[k] >= z.groups[g].first);
            assert_true(z.e[i].classes[k] < z.groups[g].first + z.groups[g].count);
        }
        from_digits += g == 0;
    }
    print_message("%d of %d tasks from digits, the rest from two scripts\n", from_digits, z.n);
    assert_true(from_digits > z.n / 4 && from_digits < 3 * z.n / 4);
    for (int h = 0; h < z.n_heldout; h++)
        assert_true(z.heldout[h][z.way - 1] < 10);
    char dir[] = "/tmp/d2zoo-groups-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(zoo_save(&z, dir, &err), 0);
    zoo back;
    assert_int_equal(zoo_load(&back, dir, 0, &err), 0);
    assert_int_equal(back.ngroups, z.ngroups);
    for (int g = 0; g < z.ngroups; g++) {
        assert_string_equal(back.groups[g].name, z.groups[g].name);
        assert_int_equal(back.groups[g].count, z.groups[g].count);
        assert_int_equal(back.groups[g].part, z.groups[g].part);
    }
    assert_string_equal(back.fingerprint, z.fingerprint);
    zoo_free(&back);
    // the command line lists the groups
    char bin[512], cmd[1200], out[1 << 14];
    tu_build_path(bin, sizeof bin, "d2nwg");
    snprintf(cmd, sizeof cmd, "'%s' zoo info '%s' --json", bin, dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    assert_int_equal(pclose(p), 0);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    assert_non_null(o);
    json_t *groups = json_object_get(o, "groups");
    assert_int_equal(json_array_size(groups), 3);
    json_t *g1 = json_array_get(groups, 1);
    assert_string_equal(json_string_value(json_object_get(g1, "name")), "Greek");
    assert_int_equal(json_integer_value(json_object_get(g1, "part")), 1);
    int tasks = 0;
    for (size_t g = 0; g < 3; g++)
        tasks += (int)json_integer_value(json_object_get(json_array_get(groups, g), "tasks"));
    assert_int_equal(tasks, z.n);
    json_decref(o);
    zoo_free(&z);
    tu_rmrf(dir);
}

/* An any-way zoo of that source: each task's way in 2..14 inside one group
 * that has that many classes, combinations of 9 digits held out (the first
 * group has 10 classes, fewer than 14), all of it through a save and load. */
static void test_anyway_grouped_zoo(void **state)
{
    (void)state;
    zoo_build_cfg c = zoo_build_defaults();
    c.source = "digits-28+glyphs:Latin,Greek";
    c.feature = "pca:16";
    c.way = 14;
    c.min_way = 2;
    c.tasks = 80;
    c.per_class = 10;
    c.train.epochs = 1;
    zoo z;
    d2_error err;
    assert_int_equal(zoo_build(&z, &c, &err), 0);
    assert_int_equal(z.min_way, 2);
    assert_int_equal(zoo_heldout_way(&z), 9);
    assert_true(z.n_heldout >= 1);
    for (int h = 0; h < z.n_heldout; h++)
        assert_true(z.heldout[h][8] < 10);
    int small = 0, large = 0;
    for (int i = 0; i < z.n; i++) {
        const zoo_entry *e = &z.e[i];
        assert_true(e->way >= 2 && e->way <= 14);
        small += e->way <= 8;
        large += e->way >= 11;
        int g = 0;
        while (g + 1 < z.ngroups && e->classes[0] >= z.groups[g + 1].first)
            g++;
        assert_true(z.groups[g].count >= e->way);
        for (int k = 0; k < e->way; k++)
            assert_true(e->classes[k] >= z.groups[g].first &&
                        e->classes[k] < z.groups[g].first + z.groups[g].count);
    }
    assert_true(small > 0 && large > 0);
    char dir[] = "/tmp/d2zoo-anyway-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(zoo_save(&z, dir, &err), 0);
    zoo back;
    assert_int_equal(zoo_load(&back, dir, 0, &err), 0);
    assert_int_equal(back.min_way, 2);
    assert_int_equal(zoo_heldout_way(&back), 9);
    assert_memory_equal(back.heldout, z.heldout, sizeof *z.heldout * (size_t)z.n_heldout);
    for (int i = 0; i < z.n; i++)
        assert_int_equal(back.e[i].way, z.e[i].way);
    assert_string_equal(back.fingerprint, z.fingerprint);
    zoo_free(&back);
    zoo_free(&z);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concat_refuses_mismatched_parts),
        cmocka_unit_test(test_concat_labels_and_groups),
        cmocka_unit_test(test_grouped_zoo),
        cmocka_unit_test(test_anyway_grouped_zoo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
