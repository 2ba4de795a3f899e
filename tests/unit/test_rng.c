/* test_rng.c - Philox-4x32-10 known answers, the stream layout, seeking and statistics. */
#include "testutil.h"

#include <math.h>

#include "rng.h"

/* Random123 tests/kat_vectors, the three "philox4x32 10" lines: ctr[4] key[2] -> out[4] */
static void test_philox_kat(void **state)
{
    (void)state;
    static const uint32_t kat[3][10] = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5,
         0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        philox4x32_10(kat[t], kat[t] + 4, out);
        for (int i = 0; i < 4; i++)
            assert_int_equal(out[i], kat[t][6 + i]);
    }
}

/* word i of seed's stream is word i%4 of philox({i/4 lo, i/4 hi, 0, 0}, {seed lo, seed hi}) */
static void test_stream_layout(void **state)
{
    (void)state;
    const uint64_t seed = 0x0123456789abcdefull;
    const uint64_t positions[] = {0, 1, 2, 3, 4, 7, 1001, (5ull << 34) + 6};
    for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++) {
        uint64_t pos = positions[p], j = pos / 4;
        uint32_t ctr[4] = {(uint32_t)j, (uint32_t)(j >> 32), 0, 0};
        uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
        uint32_t w[4];
        philox4x32_10(ctr, key, w);
        rng r;
        rng_init(&r, seed, pos);
        assert_int_equal(rng_u32(&r), w[pos % 4]);
        assert_true(r.pos == pos + 1);
        /* the uniform at the same position is ((w >> 8) + 0.5) * 2^-24 */
        rng_init(&r, seed, pos);
        double expect = ((double)(w[pos % 4] >> 8) + 0.5) * 0x1p-24;
        TU_ASSERT_NEAR(rng_uniform(&r), expect, 0x1p-25);
        /* and the normal: Box-Muller on words (0,1) or (2,3) of the block */
        unsigned pair = (unsigned)(pos % 4) & 2u;
        double ua = ((double)(w[pair] >> 8) + 0.5) * 0x1p-24;
        double ub = ((double)(w[pair + 1] >> 8) + 0.5) * 0x1p-24;
        double rad = sqrt(-2.0 * log(ua));
        double z = (pos % 2 == 0) ? rad * cos(2.0 * M_PI * ub) : rad * sin(2.0 * M_PI * ub);
        rng_init(&r, seed, pos);
        TU_ASSERT_NEAR(rng_normal(&r), z, 1e-4 * (1.0 + fabs(z)));
    }
}

/* position i reached directly equals the i-th number of a sequential stream, for raw words,
 * uniforms, normals and the fill functions at any offset */
static void test_seekable(void **state)
{
    (void)state;
    enum { N = 1003 };
    const uint64_t seed = 42;
    uint32_t seq[N];
    float useq[N], nseq[N];
    rng r;
    rng_init(&r, seed, 0);
    for (int i = 0; i < N; i++)
        seq[i] = rng_u32(&r);
    rng_init(&r, seed, 0);
    for (int i = 0; i < N; i++)
        useq[i] = rng_uniform(&r);
    rng_init(&r, seed, 0);
    for (int i = 0; i < N; i++)
        nseq[i] = rng_normal(&r);
    for (int i = 0; i < N; i += 37) {
        rng_init(&r, seed, (uint64_t)i);
        assert_int_equal(rng_u32(&r), seq[i]);
        rng_init(&r, seed, (uint64_t)i);
        assert_true(rng_normal(&r) == nseq[i]);
    }
    const uint64_t offsets[] = {0, 1, 2, 3, 5, 130};
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
        uint64_t off = offsets[o];
        size_t n = N - off - 1;
        float u[N], z[N];
        rng_fill_uniform(u, n, seed, off);
        rng_fill_normal(z, n, seed, off, 0.0f, 1.0f);
        for (size_t i = 0; i < n; i++) {
            assert_true(u[i] == useq[off + i]);
            assert_true(z[i] == nseq[off + i]);
        }
        /* mean and std are applied after the draw */
        rng_fill_normal(z, n, seed, off, 3.0f, 0.5f);
        for (size_t i = 0; i < n; i++)
            TU_ASSERT_NEAR(z[i], 3.0 + 0.5 * nseq[off + i], 1e-5);
    }
    /* different seeds give different streams */
    rng_init(&r, seed + 1, 0);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += rng_u32(&r) == seq[i];
    assert_true(same < 2);
}

static void test_uniform_stats(void **state)
{
    (void)state;
    enum { N = 100000 };
    float *u = malloc(N * sizeof(float));
    assert_non_null(u);
    rng_fill_uniform(u, N, 7, 0);
    double s = 0, s2 = 0;
    int below_tenth = 0;
    for (int i = 0; i < N; i++) {
        assert_true(u[i] > 0.0f && u[i] < 1.0f);
        s += u[i];
        s2 += (double)u[i] * u[i];
        below_tenth += u[i] < 0.1f;
    }
    double mean = s / N, var = s2 / N - mean * mean;
    /* std of the mean = 0.289 / sqrt(N) = 9.1e-4: 5 sigma */
    TU_ASSERT_NEAR(mean, 0.5, 4.6e-3);
    TU_ASSERT_NEAR(var, 1.0 / 12.0, 2e-3);
    TU_ASSERT_NEAR(below_tenth / (double)N, 0.1, 5 * 9.5e-4);
    free(u);

    rng r;
    rng_init(&r, 9, 0);
    double sd = 0;
    for (int i = 0; i < 20000; i++) {
        double v = rng_uniform_double(&r);
        assert_true(v > 0.0 && v < 1.0);
        sd += v;
    }
    assert_true(r.pos == 40000); /* two positions per double */
    TU_ASSERT_NEAR(sd / 20000, 0.5, 0.011);
}

static void test_normal_stats(void **state)
{
    (void)state;
    enum { N = 100000 };
    float *z = malloc(N * sizeof(float));
    assert_non_null(z);
    rng_fill_normal(z, N, 11, 3, 0.0f, 1.0f);
    double s = 0, s2 = 0, s4 = 0;
    int within1 = 0;
    for (int i = 0; i < N; i++) {
        assert_true(isfinite(z[i]));
        s += z[i];
        s2 += (double)z[i] * z[i];
        s4 += (double)z[i] * z[i] * z[i] * z[i];
        within1 += fabsf(z[i]) < 1.0f;
    }
    double mean = s / N, var = s2 / N - mean * mean;
    TU_ASSERT_NEAR(mean, 0.0, 5 * 0.00316);
    TU_ASSERT_NEAR(var, 1.0, 5 * 0.00447);
    TU_ASSERT_NEAR(s4 / N, 3.0, 0.1); /* kurtosis of a normal */
    TU_ASSERT_NEAR(within1 / (double)N, 0.682689, 5 * 0.00147);
    /* the transform to mean 2, std 3 */
    rng_fill_normal(z, N, 12, 0, 2.0f, 3.0f);
    s = s2 = 0;
    for (int i = 0; i < N; i++) {
        s += z[i];
        s2 += (double)z[i] * z[i];
    }
    mean = s / N;
    TU_ASSERT_NEAR(mean, 2.0, 5 * 3 * 0.00316);
    TU_ASSERT_NEAR(sqrt(s2 / N - mean * mean), 3.0, 0.05);
    free(z);
}

/* rng_below rejects the low 2^32 mod n words: with n = 3 * 2^30 plain modulo would put
 * 1/2 of the mass below 2^30; the unbiased answer is 1/3 */
static void test_below_unbiased(void **state)
{
    (void)state;
    rng r;
    rng_init(&r, 5, 0);
    const uint32_t n = 0xC0000000u;
    int low = 0;
    enum { N = 30000 };
    for (int i = 0; i < N; i++) {
        uint32_t v = rng_below(&r, n);
        assert_true(v < n);
        low += v < 0x40000000u;
    }
    TU_ASSERT_NEAR(low / (double)N, 1.0 / 3.0, 5 * 0.0027);

    /* small n: every value about equally often */
    int counts[6] = {0};
    for (int i = 0; i < 60000; i++) {
        uint32_t v = rng_below(&r, 6);
        assert_true(v < 6);
        counts[v]++;
    }
    for (int k = 0; k < 6; k++)
        TU_ASSERT_NEAR(counts[k], 10000, 5 * 91.3);
    assert_int_equal(rng_below(&r, 1), 0);
}

static void test_shuffle(void **state)
{
    (void)state;
    rng r;
    rng_init(&r, 3, 0);
    /* each of the 24 orders of 4 elements about equally often */
    int counts[256] = {0};
    enum { N = 24000 };
    for (int t = 0; t < N; t++) {
        int idx[4] = {0, 1, 2, 3};
        rng_shuffle_int(&r, idx, 4);
        int seen = 0;
        for (int i = 0; i < 4; i++)
            seen |= 1 << idx[i];
        assert_int_equal(seen, 15);
        counts[idx[0] * 64 + idx[1] * 16 + idx[2] * 4 + idx[3]]++;
    }
    int distinct = 0;
    for (int c = 0; c < 256; c++) {
        if (!counts[c])
            continue;
        distinct++;
        TU_ASSERT_NEAR(counts[c], 1000, 5 * 31.0);
    }
    assert_int_equal(distinct, 24);
    /* deterministic for a seed position, different for another seed */
    int a[50], b[50], c[50];
    for (int i = 0; i < 50; i++)
        a[i] = b[i] = c[i] = i;
    rng_init(&r, 77, 0);
    rng_shuffle_int(&r, a, 50);
    rng_init(&r, 77, 0);
    rng_shuffle_int(&r, b, 50);
    rng_init(&r, 78, 0);
    rng_shuffle_int(&r, c, 50);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

static void test_derive(void **state)
{
    (void)state;
    uint64_t base = rng_derive(1, "a", 0);
    assert_true(base == rng_derive(1, "a", 0));
    assert_true(base != rng_derive(1, "b", 0));
    assert_true(base != rng_derive(1, "a", 1));
    assert_true(base != rng_derive(2, "a", 0));
    assert_true(rng_derive(1, "x", 0) != rng_derive(0, "x", 1));
    assert_true(rng_derive(1, "", 0) == rng_derive(1, NULL, 0));
    /* 4096 derived seeds: no collisions */
    enum { M = 4096 };
    uint64_t *d = malloc(M * sizeof *d);
    assert_non_null(d);
    for (int i = 0; i < M; i++)
        d[i] = rng_derive(99, "layer.weight", (uint64_t)i);
    for (int i = 0; i < M; i++)
        for (int j = i + 1; j < M; j++)
            assert_true(d[i] != d[j]);
    /* streams of neighbouring indices are uncorrelated */
    enum { N = 20000 };
    float *u = malloc(N * sizeof(float)), *v = malloc(N * sizeof(float));
    assert_non_null(u);
    assert_non_null(v);
    rng_fill_uniform(u, N, d[0], 0);
    rng_fill_uniform(v, N, d[1], 0);
    double su = 0, sv = 0, suv = 0, suu = 0, svv = 0;
    for (int i = 0; i < N; i++) {
        su += u[i];
        sv += v[i];
        suv += (double)u[i] * v[i];
        suu += (double)u[i] * u[i];
        svv += (double)v[i] * v[i];
    }
    double cov = suv / N - su / N * sv / N;
    double corr = cov / sqrt((suu / N - su / N * su / N) * (svv / N - sv / N * sv / N));
    TU_ASSERT_NEAR(corr, 0.0, 5.0 / sqrt((double)N));
    free(d);
    free(u);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_kat),     cmocka_unit_test(test_stream_layout),
        cmocka_unit_test(test_seekable),       cmocka_unit_test(test_uniform_stats),
        cmocka_unit_test(test_normal_stats),   cmocka_unit_test(test_below_unbiased),
        cmocka_unit_test(test_shuffle),        cmocka_unit_test(test_derive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
