/* test_cpu_pool.c - the CPU backend's fork-join pool: every item runs exactly once, parts
 * are in order and aligned, jobs back to back and after the workers went to sleep. */
#include "testutil.h"

#include <stdatomic.h>
#include <time.h>

#include "cpu_pool.h"

typedef struct job {
    atomic_int *hits; /* per item */
    size_t lo[CPU_POOL_MAX_PARTS], hi[CPU_POOL_MAX_PARTS];
    atomic_int calls;
} job;

static void count_items(void *args, size_t lo, size_t hi, int part)
{
    job *j = args;
    j->lo[part] = lo;
    j->hi[part] = hi;
    for (size_t i = lo; i < hi; i++)
        atomic_fetch_add(&j->hits[i], 1);
    atomic_fetch_add(&j->calls, 1);
}

static void check_job(cpu_pool *p, size_t n, size_t min_items, size_t align)
{
    job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->hits = calloc(n ? n : 1, sizeof *j->hits);
    assert_non_null(j->hits);
    int parts = cpu_pool_run(p, count_items, j, n, min_items, align);
    if (n == 0) {
        assert_int_equal(parts, 0);
    } else {
        assert_true(parts >= 1 && parts <= CPU_POOL_MAX_PARTS);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(atomic_load(&j->hits[i]), 1);
        /* parts cover [0, n) in order; inner boundaries are multiples of align */
        size_t at = 0;
        int nonempty = 0;
        for (int k = 0; k < parts; k++) {
            if (j->hi[k] == 0 && j->lo[k] == 0 && k > 0)
                continue; /* an empty part is not run */
            assert_int_equal(j->lo[k], at);
            assert_true(j->hi[k] > j->lo[k]);
            if (j->hi[k] != n)
                assert_int_equal(j->hi[k] % align, 0);
            at = j->hi[k];
            nonempty++;
        }
        assert_int_equal(at, n);
        assert_int_equal(atomic_load(&j->calls), nonempty);
        if (min_items)
            assert_true((size_t)parts <= n / min_items || parts == 1);
    }
    free(j->hits);
    free(j);
}

static void test_single_thread(void **state)
{
    (void)state;
    cpu_pool *p;
    d2_error err;
    assert_int_equal(cpu_pool_create(&p, 1, &err), 0);
    check_job(p, 100000, 1000, 16);
    check_job(p, 0, 1000, 16);
    check_job(NULL, 5000, 10, 1); /* no pool at all: runs inline */
    cpu_pool_destroy(p);
    cpu_pool_destroy(NULL);
}

static void test_many_threads(void **state)
{
    (void)state;
    cpu_pool *p;
    d2_error err;
    assert_int_equal(cpu_pool_create(&p, 4, &err), 0);
    const size_t sizes[] = {1, 15, 1000, 16384, 100003, 1 << 20};
    const size_t mins[] = {1, 100, 4096};
    const size_t aligns[] = {1, 16, 1024};
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 3; b++)
            for (size_t c = 0; c < 3; c++)
                check_job(p, sizes[a], mins[b], aligns[c]);
    /* many small jobs back to back (the workers stay awake) */
    for (int r = 0; r < 2000; r++)
        check_job(p, 640, 10, 16);
    /* parked (as before an sgemm), then woken by the next job */
    cpu_pool_park(p);
    check_job(p, 100000, 100, 16);
    /* a job after the workers went to sleep */
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    check_job(p, 100000, 100, 16);
    cpu_pool_destroy(p);
}

typedef struct sum_job {
    const double *x;
    double part[CPU_POOL_MAX_PARTS];
} sum_job;

static void sum_part(void *args, size_t lo, size_t hi, int part)
{
    sum_job *s = args;
    double acc = 0;
    for (size_t i = lo; i < hi; i++)
        acc += s->x[i];
    s->part[part] = acc;
}

/* per-part results combined in order give the same sum on any thread count */
static void test_partials(void **state)
{
    (void)state;
    enum { N = 200000 };
    double *x = malloc(N * sizeof(double));
    assert_non_null(x);
    for (int i = 0; i < N; i++)
        x[i] = i;
    for (int threads = 1; threads <= 3; threads++) {
        cpu_pool *p;
        d2_error err;
        assert_int_equal(cpu_pool_create(&p, threads, &err), 0);
        sum_job s = {.x = x};
        int parts = cpu_pool_run(p, sum_part, &s, N, 1000, 1);
        double tot = 0;
        for (int k = 0; k < parts; k++)
            tot += s.part[k];
        assert_true(tot == (double)N * (N - 1) / 2);
        cpu_pool_destroy(p);
    }
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_partials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
