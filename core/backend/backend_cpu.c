/* backend_cpu.c - the CPU backend: memory, OpenBLAS sgemm, random fills, the op table.
 * The loops live in backend_cpu_ops.c and backend_cpu_loss.c (see backend_cpu_internal.h);
 * large ones run on the backend's thread pool (cpu_pool.c). */
#include "backend_cpu_internal.h"

#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rng.h"

#define CPU_ALIGN 64 /* bytes; also the size of the header before each block */

/* ------------------------------------------------------------------------- */
/* memory                                                                    */

/* Blocks of at least CPU_MAP_BYTES are fresh pages from mmap: zero already, and a page is
 * touched only when first used (the 512 MiB training arena no longer costs a pass over
 * every page at start). Smaller blocks come from posix_memalign and are zeroed. The header
 * holds the padded size and how the block was made. */
#define CPU_MAP_BYTES ((size_t)1 << 20)

typedef struct cpu_block_header {
    size_t padded;
    int mapped;
} cpu_block_header;

static void *cpu_alloc(backend_t *be, size_t bytes)
{
    cpu_impl *im = be->impl;
    if (bytes > SIZE_MAX - 2 * CPU_ALIGN)
        return NULL;
    cpu_block_header h = {(bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN, 0};
    void *raw = NULL;
    if (h.padded >= CPU_MAP_BYTES) {
        raw = mmap(NULL, CPU_ALIGN + h.padded, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
            return NULL;
        h.mapped = 1;
    } else {
        if (posix_memalign(&raw, CPU_ALIGN, CPU_ALIGN + h.padded) != 0)
            return NULL;
        memset(raw, 0, CPU_ALIGN + h.padded);
    }
    memcpy(raw, &h, sizeof h);
    atomic_fetch_add(&im->used, h.padded);
    return (char *)raw + CPU_ALIGN;
}

static void cpu_free(backend_t *be, void *p)
{
    if (!p)
        return;
    cpu_impl *im = be->impl;
    char *raw = (char *)p - CPU_ALIGN;
    cpu_block_header h;
    memcpy(&h, raw, sizeof h);
    atomic_fetch_sub(&im->used, h.padded);
    if (h.mapped)
        munmap(raw, CPU_ALIGN + h.padded);
    else
        free(raw);
}

static int cpu_to_device(backend_t *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memcpy(dst, src, bytes);
    return 0;
}

static int cpu_to_host(backend_t *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes)
        memcpy(dst, src, bytes);
    return 0;
}

typedef struct copy_args {
    char *dst;
    const char *src;
} copy_args;

static void k_copy(void *p, size_t lo, size_t hi, int part)
{
    const copy_args *a = p;
    (void)part;
    memcpy(a->dst + lo, a->src + lo, hi - lo);
}

static int cpu_copy(backend_t *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src)
        return 0;
    const char *d = dst, *s = src;
    if (d + bytes <= s || s + bytes <= d) { /* disjoint: in parts on the pool */
        copy_args a = {.dst = dst, .src = src};
        cpu_pool_run(cpu_pool_of(be), k_copy, &a, bytes, 16 * CPU_PAR_ITEMS, 64);
    } else {
        memmove(dst, src, bytes);
    }
    return 0;
}

static int cpu_sync(backend_t *be)
{
    (void)be;
    return 0;
}

static void cpu_memory(backend_t *be, size_t *used, size_t *total)
{
    cpu_impl *im = be->impl;
    if (used)
        *used = atomic_load(&im->used);
    if (total) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        *total = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
    }
}

/* ------------------------------------------------------------------------- */
/* fill                                                                      */

typedef struct fill_args {
    float *x;
    float value;
} fill_args;

static void k_fill(void *p, size_t lo, size_t hi, int part)
{
    const fill_args *a = p;
    (void)part;
    if (a->value == 0.0f && !signbit(a->value)) {
        memset(a->x + lo, 0, (hi - lo) * sizeof(float));
        return;
    }
    for (size_t i = lo; i < hi; i++)
        a->x[i] = a->value;
}

// x: [n] = value
static void cpu_fill(backend_t *be, float *x, float value, size_t n)
{
    fill_args a = {.x = x, .value = value};
    cpu_pool_run(cpu_pool_of(be), k_fill, &a, n, 4 * CPU_PAR_ITEMS, CPU_VB);
}

/* ------------------------------------------------------------------------- */
/* random numbers                                                            */

static void cpu_rand_normal(backend_t *be, float *x, size_t n, uint64_t seed, uint64_t offset,
                            float mean, float std)
{
    (void)be;
    rng_fill_normal(x, n, seed, offset, mean, std);
}

static void cpu_destroy(backend_t *be)
{
    cpu_impl *im = be->impl;
    cpu_pool_destroy(im->pool);
    free(im);
    free(be);
}

static const backend_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_to_device,
    .to_host = cpu_to_host,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .memory = cpu_memory,
    .gemm = cpu_gemm,
    .gemm_batched = cpu_gemm_batched,
    .fill = cpu_fill,
    .axpby = cpu_axpby,
    .add_bias = cpu_add_bias,
    .sum_rows = cpu_sum_rows,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .permute_0213 = cpu_permute_0213,
    .repeat_rows = cpu_repeat_rows,
    .repeat_rows_backward = cpu_repeat_rows_backward,
    .modulate_forward = cpu_modulate_forward,
    .modulate_backward = cpu_modulate_backward,
    .gated_add_forward = cpu_gated_add_forward,
    .gated_add_backward = cpu_gated_add_backward,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .maxpool2_forward = cpu_maxpool2_forward,
    .maxpool2_backward = cpu_maxpool2_backward,
    .batchnorm_forward = cpu_batchnorm_forward,
    .batchnorm_backward = cpu_batchnorm_backward,
    .avgpool_forward = cpu_avgpool_forward,
    .avgpool_backward = cpu_avgpool_backward,
    .sumsq = cpu_sumsq,
    .mse = cpu_mse,
    .cross_entropy = cpu_cross_entropy,
    .kl_gauss = cpu_kl_gauss,
    .adamw = cpu_adamw,
    .ema = cpu_ema,
    .rand_normal = cpu_rand_normal,
    .destroy = cpu_destroy,
};

int backend_cpu_create(backend_t **out, int threads, d2_error *err)
{
    if (!out)
        return d2_fail(err, D2_EINVAL, "backend_cpu_create: out is NULL");
    *out = NULL;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    backend_t *be = calloc(1, sizeof *be);
    cpu_impl *im = calloc(1, sizeof *im);
    if (!be || !im) {
        free(be);
        free(im);
        return d2_fail(err, D2_ENOMEM, "backend_cpu_create: out of memory");
    }
    atomic_init(&im->used, 0);
    int rc = cpu_pool_create(&im->pool, threads, err);
    if (rc) {
        free(be);
        free(im);
        return rc;
    }
    be->ops = &cpu_ops;
    be->impl = im;
    be->threads = threads;
    *out = be;
    return 0;
}
