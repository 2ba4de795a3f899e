/* zoo_combos.c - class combinations: the held-out set of unordered
 * combinations a zoo never trains on, and the ordered class lists of its
 * tasks. Combinations are ranked in lexicographic order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "zoo_internal.h"

#define BINOM_SAT ((uint64_t)1 << 62)
#define ENUM_LIMIT 2000000u

uint64_t zoo_binom(int n, int k)
{
    if (k < 0 || n < 0 || k > n)
        return 0;
    if (k > n - k)
        k = n - k;
    uint64_t r = 1;
    for (int i = 1; i <= k; i++) {
        /* r * (n - k + i) / i stays exact: r is C(n-k+i-1, i-1) */
        uint64_t num = (uint64_t)(n - k + i);
        if (r > BINOM_SAT / num)
            return BINOM_SAT;
        r = r * num / (uint64_t)i;
    }
    return r;
}

/* Lexicographic rank r (0-based) of the ascending k-subsets of 0..n-1 -> c[k]. */
static void combo_unrank(uint64_t r, int n, int k, int *c)
{
    int x = 0;
    for (int i = 0; i < k; i++) {
        for (;; x++) {
            uint64_t cnt = zoo_binom(n - x - 1, k - i - 1);
            if (r < cnt)
                break;
            r -= cnt;
        }
        c[i] = x++;
    }
}

static uint64_t combo_rank(const int *c, int n, int k)
{
    uint64_t r = 0;
    int x = 0;
    for (int i = 0; i < k; i++) {
        for (; x < c[i]; x++)
            r += zoo_binom(n - x - 1, k - i - 1);
        x = c[i] + 1;
    }
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_ints(int *v, int n)
{
    for (int i = 1; i < n; i++) {
        int x = v[i], j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

int zoo_draw_heldout(zoo *z, int classes, double frac, uint64_t seed, d2_error *err)
{
    if (z->min_way > 0 && z->min_way < z->way && classes < z->way && classes >= z->min_way)
        z->heldout_way = classes - 1 >= z->min_way ? classes - 1 : classes;
    int way = zoo_heldout_way(z);
    uint64_t total = zoo_binom(classes, way);
    if (total == 0)
        return d2_fail(err, D2_EINVAL, "zoo: %d classes cannot make a %d-way task", classes, way);
    if (!(frac >= 0.0 && frac < 1.0))
        return d2_fail(err, D2_EINVAL, "zoo: held-out fraction %g outside [0, 1)", frac);
    double want = floor(frac * (double)total + 0.5);
    uint64_t nh = want < 1.0 ? 1 : (uint64_t)want;
    if (nh >= total)
        return d2_fail(err, D2_EINVAL,
                       "zoo: %d classes give %llu combination(s) of %d; holding out %llu leaves "
                       "none for the zoo (use a smaller way or more classes)",
                       classes, (unsigned long long)total, way, (unsigned long long)nh);
    if (nh > ZOO_MAX_HELDOUT)
        return d2_fail(err, D2_ERANGE,
                       "zoo: holding out %llu of %llu class combinations is more than %d "
                       "(lower the held-out fraction)",
                       (unsigned long long)nh, (unsigned long long)total, ZOO_MAX_HELDOUT);
    uint64_t *ranks = malloc(sizeof(uint64_t) * (size_t)nh);
    z->heldout = calloc((size_t)nh, sizeof *z->heldout);
    if (!ranks || !z->heldout) {
        free(ranks);
        free(z->heldout);
        z->heldout = NULL;
        return d2_fail(err, D2_ENOMEM, "zoo: out of memory for held-out combinations");
    }
    rng r;
    rng_init(&r, rng_derive(seed, "zoo-heldout", 0), 0);
    if (total <= ENUM_LIMIT) {
        /* partial Fisher-Yates over all ranks */
        uint32_t *all = malloc(sizeof(uint32_t) * (size_t)total);
        if (!all) {
            free(ranks);
            free(z->heldout);
            z->heldout = NULL;
            return d2_fail(err, D2_ENOMEM, "zoo: out of memory for class combinations");
        }
        for (uint32_t i = 0; i < total; i++)
            all[i] = i;
        for (uint64_t i = 0; i < nh; i++) {
            uint64_t j = i + rng_below(&r, (uint32_t)(total - i));
            uint32_t t = all[i];
            all[i] = all[j];
            all[j] = t;
            ranks[i] = all[i];
        }
        free(all);
    } else {
        /* rejection: random combinations until nh distinct ones */
        size_t hsize = 1;
        while (hsize < 2 * (size_t)nh)
            hsize <<= 1;
        int *perm = malloc(sizeof(int) * (size_t)classes);
        uint64_t *hash = malloc(sizeof(uint64_t) * hsize);
        if (!perm || !hash) {
            free(perm);
            free(hash);
            free(ranks);
            free(z->heldout);
            z->heldout = NULL;
            return d2_fail(err, D2_ENOMEM, "zoo: out of memory for class combinations");
        }
        for (size_t i = 0; i < hsize; i++)
            hash[i] = UINT64_MAX;
        uint64_t got = 0;
        while (got < nh) {
            int c[D2_MAX_WAY];
            for (int i = 0; i < classes; i++)
                perm[i] = i;
            for (int i = 0; i < way; i++) {
                int j = i + (int)rng_below(&r, (uint32_t)(classes - i));
                int t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
                c[i] = perm[i];
            }
            sort_ints(c, way);
            uint64_t rk = combo_rank(c, classes, way);
            /* open addressing on the rank (ranks < 2^62; UINT64_MAX = empty) */
            size_t h = (size_t)((rk * 0x9E3779B97F4A7C15ull) >> 20) & (hsize - 1);
            while (hash[h] != UINT64_MAX && hash[h] != rk)
                h = (h + 1) & (hsize - 1);
            if (hash[h] == UINT64_MAX) {
                hash[h] = rk;
                ranks[got++] = rk;
            }
        }
        free(perm);
        free(hash);
    }
    qsort(ranks, (size_t)nh, sizeof(uint64_t), cmp_u64);
    for (uint64_t i = 0; i < nh; i++)
        combo_unrank(ranks[i], classes, way, z->heldout[i]);
    z->n_heldout = (int)nh;
    free(ranks);
    return 0;
}

static int combo_cmp(const int *a, const int *b, int way)
{
    for (int i = 0; i < way; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

int zoo_is_heldout(const zoo *z, const task *t)
{
    if (!z || !t || t->way != zoo_heldout_way(z) || z->n_heldout <= 0 || !z->heldout)
        return 0;
    int c[D2_MAX_WAY];
    memcpy(c, t->classes, sizeof(int) * (size_t)t->way);
    sort_ints(c, t->way);
    int lo = 0, hi = z->n_heldout - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int s = combo_cmp(z->heldout[mid], c, t->way);
        if (s == 0)
            return 1;
        if (s < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

int zoo_entry_way(const zoo *z, uint64_t seed)
{
    if (z->min_way <= 0 || z->min_way >= z->way)
        return z->way;
    rng r;
    rng_init(&r, rng_derive(seed, "zoo-way", 0), 0);
    return z->min_way + (int)rng_below(&r, (uint32_t)(z->way - z->min_way + 1));
}

int zoo_draw_classes(const zoo *z, int classes, uint64_t seed, int way, int *out, d2_error *err)
{
    if (z->ngroups > 0)
        return zoo_draw_grouped(z, seed, way, out, err);
    int *perm = malloc(sizeof(int) * (size_t)classes);
    if (!perm)
        return d2_fail(err, D2_ENOMEM, "zoo: out of memory drawing classes");
    rng r;
    rng_init(&r, seed, 0);
    for (int attempt = 0; attempt < 1000000; attempt++) {
        for (int i = 0; i < classes; i++)
            perm[i] = i;
        task t = {.way = way};
        for (int i = 0; i < way; i++) {
            int j = i + (int)rng_below(&r, (uint32_t)(classes - i));
            int tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
            t.classes[i] = perm[i];
        }
        if (!zoo_is_heldout(z, &t)) {
            memcpy(out, t.classes, sizeof(int) * (size_t)way);
            free(perm);
            return 0;
        }
    }
    free(perm);
    return d2_fail(err, D2_ERANGE, "zoo: could not draw a class combination that is not held out");
}
