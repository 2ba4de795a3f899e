/* test_setenc.c - dataset encoder: gradient checks of every kind of parameter,
 * ragged (per-class) inference equal to the batched forward, and label order
 * mattering (swapping two classes changes the condition); an any-way encoder's
 * absent token: gradients, absent slots' rows ignored, ragged = batched. */
#include "testutil.h"

#include <math.h>

#include "gradcheck.h"
#include "setenc.h"

typedef struct ctx {
    backend_t *be;
    paramset ps;
    setenc e;
    arena ar;
    setenc_cache c;
    float *X;
    int B, N, K, F, C;
    const int *ways; /* NULL: every task has N classes */
} ctx;

static int fwd(backend_t *be, void *user, float *out)
{
    ctx *t = user;
    d2_error err;
    arena_reset(&t->ar, 0);
    if (setenc_forward(be, &t->e, &t->ps, &t->ar, &t->c, t->X, t->B, t->N, t->K, t->ways,
                       &err))
        return -1;
    return be->ops->copy(be, out, t->c.cond, (size_t)t->B * t->C * sizeof(float));
}

static int bwd(backend_t *be, void *user, const float *dout)
{
    ctx *t = user;
    d2_error err;
    return setenc_backward(be, &t->e, &t->ps, &t->ar, &t->c, dout, &err);
}

static void setup_cfg(ctx *t, int B, int N, int K, int F, int d, int heads, int ind, int C,
                      int absent, int per_class)
{
    d2_error err = {0};
    memset(t, 0, sizeof *t);
    assert_int_equal(backend_cpu_create(&t->be, 1, &err), 0);
    paramset_init(&t->ps);
    setenc_cfg cfg = {.feat_dim = F, .d = d, .heads = heads, .inducing = ind, .way = N,
                      .cond_dim = C, .absent = absent, .per_class = per_class};
    assert_int_equal(setenc_init(&t->e, &t->ps, "enc", &cfg, &err), 0);
    assert_int_equal(paramset_alloc(&t->ps, t->be, 11, &err), 0);
    assert_int_equal(arena_init(&t->ar, t->be, 32 << 20, &err), 0);
    t->B = B;
    t->N = N;
    t->K = K;
    t->F = F;
    t->C = setenc_cond_len(&cfg);
    t->X = gc_dev_uniform(t->be, (size_t)B * N * K * F, -1.0f, 1.0f, 21);
}

static void setup_any(ctx *t, int B, int N, int K, int F, int d, int heads, int ind, int C,
                      int absent)
{
    setup_cfg(t, B, N, K, F, d, heads, ind, C, absent, 0);
}

static void setup_ctx(ctx *t, int B, int N, int K, int F, int d, int heads, int ind, int C)
{
    setup_any(t, B, N, K, F, d, heads, ind, C, 0);
}

static void teardown_ctx(ctx *t)
{
    t->be->ops->free(t->be, t->X);
    arena_free(&t->ar);
    paramset_free(&t->ps);
    backend_destroy(t->be);
}

static gc_target ptarget(ctx *t, const char *name)
{
    const param_entry *e = paramset_find(&t->ps, name);
    if (!e)
        fail_msg("no parameter %s", name);
    return (gc_target){e->name, t->ps.w + e->offset, t->ps.g + e->offset, e->numel};
}

/* Finite-difference check of the n named parameters (at least 8 entries each). */
static void check_named(ctx *t, const char *const *names, int n)
{
    gc_target targets[8];
    assert_true(n <= 8);
    for (int i = 0; i < n; i++)
        targets[i] = ptarget(t, names[i]);
    gc_opts o = gc_default_opts();
    o.eps = 2e-3;
    o.max_checks = 24;
    gc_report rep;
    int bad = gc_check(t->be, fwd, bwd, t, (size_t)t->B * t->C, targets, n, &o, &rep);
    if (bad)
        fail_msg("%d of %d failed; worst %s", rep.failed, rep.checked, rep.worst);
    assert_true(rep.checked >= n * 8);
}

static void test_setenc_gradients(void **state)
{
    (void)state;
    ctx t;
    setup_ctx(&t, 2, 3, 4, 6, 8, 2, 3, 5);
    // collect one tensor of each module plus every top-level one
    const char *names[] = {"enc.fin.weight", "enc.fin.bias", "enc.isab1.I", "enc.isab2.I",
                           "enc.pma.S", "enc.fmean.weight", "enc.pos", "enc.fout.weight",
                           "enc.fout.bias"};
    gc_target targets[32];
    int n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        targets[n++] = ptarget(&t, names[i]);
    // and the first weight of every attention sub-block (whatever its exact name)
    for (int i = 0; i < t.ps.count && n < 32; i++) {
        const char *nm = t.ps.entries[i].name;
        if ((strstr(nm, "isab1") || strstr(nm, "pma") || strstr(nm, "sab.")) &&
            strstr(nm, "weight") && (strstr(nm, "fc_q") || strstr(nm, "fc_o") || strstr(nm, "fc_v") || strstr(nm, "ln1")))
            targets[n++] = (gc_target){nm, t.ps.w + t.ps.entries[i].offset,
                                       t.ps.g + t.ps.entries[i].offset, t.ps.entries[i].numel};
    }
    assert_true(n >= 20);
    gc_opts o = gc_default_opts();
    o.eps = 2e-3;
    o.max_checks = 24;
    gc_report rep;
    int bad = gc_check(t.be, fwd, bwd, &t, (size_t)t.B * t.C, targets, n, &o, &rep);
    if (bad)
        fail_msg("%d of %d failed; worst %s", rep.failed, rep.checked, rep.worst);
    assert_true(rep.kinks <= rep.checked / 10);
    teardown_ctx(&t);
}

static void test_setenc_ragged_matches_batched(void **state)
{
    (void)state;
    ctx t;
    setup_ctx(&t, 1, 4, 5, 7, 16, 4, 4, 9);
    d2_error err;
    float a[9], b[9];
    float *cd = backend_alloc_floats(t.be, 9);
    assert_int_equal(fwd(t.be, &t, cd), 0);
    t.be->ops->to_host(t.be, a, cd, sizeof a);
    int counts[4] = {5, 5, 5, 5};
    arena_reset(&t.ar, 0);
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts, 4, cd, &err), 0);
    t.be->ops->to_host(t.be, b, cd, sizeof b);
    for (int i = 0; i < 9; i++)
        TU_ASSERT_NEAR(a[i], b[i], 1e-5 + 1e-5 * fabs(a[i]));
    // unequal class sizes work, and label order matters
    int counts2[4] = {2, 7, 5, 6};
    float c1[9], c2[9];
    arena_reset(&t.ar, 0);
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts2, 4, cd, &err), 0);
    t.be->ops->to_host(t.be, c1, cd, sizeof c1);
    int counts3[4] = {7, 2, 5, 6}; // different split of the same rows
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts3, 4, cd, &err), 0);
    t.be->ops->to_host(t.be, c2, cd, sizeof c2);
    double diff = 0;
    for (int i = 0; i < 9; i++)
        diff += fabs(c1[i] - c2[i]);
    assert_true(diff > 1e-3);
    // errors: wrong class count, empty class
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts2, 3, cd, &err),
                     D2_EINVAL);
    assert_non_null(strstr(err.msg, "3 classes given, built for 4"));
    int counts4[4] = {5, 0, 5, 5};
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts4, 4, cd, &err),
                     D2_EINVAL);
    assert_non_null(strstr(err.msg, "class 1 has no sample"));
    t.be->ops->free(t.be, cd);
    teardown_ctx(&t);
}

static void test_setenc_permutation_invariant_within_class(void **state)
{
    (void)state;
    // shuffling the samples inside a class does not change the condition
    ctx t;
    setup_ctx(&t, 1, 2, 4, 5, 8, 2, 3, 6);
    float before[6], after[6];
    float *cd = backend_alloc_floats(t.be, 6);
    assert_int_equal(fwd(t.be, &t, cd), 0);
    t.be->ops->to_host(t.be, before, cd, sizeof before);
    float x[2 * 4 * 5];
    t.be->ops->to_host(t.be, x, t.X, sizeof x);
    float y[2 * 4 * 5];
    const int perm[4] = {2, 0, 3, 1};
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < 4; k++)
            memcpy(y + (c * 4 + k) * 5, x + (c * 4 + perm[k]) * 5, 5 * sizeof(float));
    t.be->ops->to_device(t.be, t.X, y, sizeof y);
    assert_int_equal(fwd(t.be, &t, cd), 0);
    t.be->ops->to_host(t.be, after, cd, sizeof after);
    for (int i = 0; i < 6; i++)
        TU_ASSERT_NEAR(before[i], after[i], 1e-5 + 1e-5 * fabs(before[i]));
    t.be->ops->free(t.be, cd);
    teardown_ctx(&t);
}

static void test_setenc_absent_gradients(void **state)
{
    (void)state;
    ctx t;
    setup_any(&t, 3, 4, 3, 5, 8, 2, 3, 5, 1);
    const int ways[3] = {4, 2, 3};
    t.ways = ways;
    const char *names[] = {"enc.absent", "enc.pos", "enc.fmean.weight", "enc.fin.weight",
                           "enc.pma.S", "enc.fout.weight"};
    check_named(&t, names, 6);
    teardown_ctx(&t);
}

static void test_setenc_absent_slots(void **state)
{
    (void)state;
    ctx t;
    setup_any(&t, 1, 4, 5, 7, 16, 4, 4, 9, 1);
    const int ways[1] = {2};
    t.ways = ways;
    d2_error err;
    float a[9], b[9], c[9];
    float *cd = backend_alloc_floats(t.be, 9);
    assert_int_equal(fwd(t.be, &t, cd), 0);
    t.be->ops->to_host(t.be, a, cd, sizeof a);
    // what the absent slots' rows hold does not matter
    float x[4 * 5 * 7];
    t.be->ops->to_host(t.be, x, t.X, sizeof x);
    for (int i = 2 * 5 * 7; i < 4 * 5 * 7; i++)
        x[i] = 3.0f - x[i];
    t.be->ops->to_device(t.be, t.X, x, sizeof x);
    assert_int_equal(fwd(t.be, &t, cd), 0);
    t.be->ops->to_host(t.be, b, cd, sizeof b);
    for (int i = 0; i < 9; i++)
        TU_ASSERT_NEAR(a[i], b[i], 1e-6 + 1e-6 * fabs(a[i]));
    // one support set of 2 classes read class by class gives the same condition
    int counts[4] = {5, 5, 0, 0};
    arena_reset(&t.ar, 0);
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts, 4, cd, &err), 0);
    t.be->ops->to_host(t.be, c, cd, sizeof c);
    for (int i = 0; i < 9; i++)
        TU_ASSERT_NEAR(a[i], c[i], 1e-5 + 1e-5 * fabs(a[i]));
    // three classes differ from two; an absent class before a present one is refused
    int counts3[4] = {5, 5, 5, 0}, gap[4] = {5, 0, 5, 0};
    arena_reset(&t.ar, 0);
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts3, 4, cd, &err), 0);
    t.be->ops->to_host(t.be, b, cd, sizeof b);
    double diff = 0;
    for (int i = 0; i < 9; i++)
        diff += fabs(b[i] - a[i]);
    assert_true(diff > 1e-3);
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, gap, 4, cd, &err),
                     D2_EINVAL);
    assert_non_null(strstr(err.msg, "absent classes must be the last ones"));
    t.be->ops->free(t.be, cd);
    teardown_ctx(&t);
    // a fixed-way encoder refuses a task of fewer classes
    setup_ctx(&t, 1, 4, 5, 7, 16, 4, 4, 9);
    t.ways = ways;
    cd = backend_alloc_floats(t.be, 9);
    assert_int_equal(setenc_forward(t.be, &t.e, &t.ps, &t.ar, &t.c, t.X, 1, 4, 5, ways, &err),
                     D2_EINVAL);
    assert_non_null(strstr(err.msg, "task 0 has 2 classes; this encoder reads exactly 4"));
    t.be->ops->free(t.be, cd);
    teardown_ctx(&t);
}

/* Per-class conditions: gradients of every kind of parameter with absent
 * slots, no position embedding, one cond_dim row per class. */
static void test_setenc_per_class_gradients(void **state)
{
    (void)state;
    ctx t;
    setup_cfg(&t, 3, 4, 3, 5, 8, 2, 3, 5, 1, 1);
    assert_int_equal(t.C, 4 * 5);
    assert_null(paramset_find(&t.ps, "enc.pos"));
    assert_int_equal(paramset_find(&t.ps, "enc.fout.weight")->numel, 8 * 5);
    const int ways[3] = {4, 2, 3};
    t.ways = ways;
    const char *names[] = {"enc.absent", "enc.fmean.weight", "enc.fin.weight", "enc.pma.S",
                           "enc.isab1.I", "enc.fout.weight", "enc.fout.bias"};
    check_named(&t, names, 7);
    teardown_ctx(&t);
}

/* Swapping two classes' samples swaps their condition rows and nothing else
 * (permutation-equivariant), and ragged inference equals the batched pass. */
static void test_setenc_per_class_equivariant(void **state)
{
    (void)state;
    ctx t;
    enum { N = 4, K = 3, F = 5, C = 6 };
    setup_cfg(&t, 1, N, K, F, 8, 2, 3, C, 1, 1);
    float a[N * C], b[N * C], r[N * C];
    float *cd = backend_alloc_floats(t.be, N * C);
    assert_int_equal(fwd(t.be, &t, cd), 0);
    t.be->ops->to_host(t.be, a, cd, sizeof a);
    float x[N * K * F], y[N * K * F];
    t.be->ops->to_host(t.be, x, t.X, sizeof x);
    memcpy(y, x, sizeof x);
    memcpy(y, x + 2 * K * F, K * F * sizeof(float)); // classes 0 and 2 swap
    memcpy(y + 2 * K * F, x, K * F * sizeof(float));
    t.be->ops->to_device(t.be, t.X, y, sizeof y);
    assert_int_equal(fwd(t.be, &t, cd), 0);
    t.be->ops->to_host(t.be, b, cd, sizeof b);
    const int from[N] = {2, 1, 0, 3};
    double moved = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) {
            TU_ASSERT_NEAR(b[i * C + j], a[from[i] * C + j], 1e-5 + 1e-5 * fabs(a[from[i] * C + j]));
            moved += fabs(a[i * C + j] - a[from[i] * C + j]);
        }
    assert_true(moved > 1e-3);
    d2_error err;
    int counts[N] = {K, K, K, K};
    arena_reset(&t.ar, 0);
    assert_int_equal(setenc_encode_ragged(t.be, &t.e, &t.ps, &t.ar, t.X, counts, N, cd, &err), 0);
    t.be->ops->to_host(t.be, r, cd, sizeof r);
    for (int i = 0; i < N * C; i++)
        TU_ASSERT_NEAR(r[i], b[i], 1e-5 + 1e-5 * fabs(b[i]));
    t.be->ops->free(t.be, cd);
    teardown_ctx(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setenc_gradients),
        cmocka_unit_test(test_setenc_ragged_matches_batched),
        cmocka_unit_test(test_setenc_permutation_invariant_within_class),
        cmocka_unit_test(test_setenc_absent_gradients),
        cmocka_unit_test(test_setenc_absent_slots),
        cmocka_unit_test(test_setenc_per_class_gradients),
        cmocka_unit_test(test_setenc_per_class_equivariant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
