/* test_train_dist.c - data-parallel generator training (gen_train_dist, what
 * `d2nwg train` under mpirun uses) without MPI: two threads play the two
 * processes, their allreduce a barrier and a sum in rank order. The bundle
 * rank 0 writes must match one process's training up to float rounding
 * (every weight within 1e-5), rank 1 writes nothing, and too many processes
 * for the batch are refused. The MPI transport itself is checked by
 * tests/mpi_train.sh (make MPI=1). */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <sys/stat.h>

#include "backend.h"
#include "gen_train.h"
#include "safetensors.h"
#include "zoo.h"

#define WORLD 2

typedef struct fake_world {
    pthread_barrier_t bar;
    float *slot[WORLD];
} fake_world;

typedef struct rank_ctx {
    fake_world *w;
    int rank;
} rank_ctx;

/* Sum in rank order, the same on every rank: post, wait, add up, wait, copy. */
static int fake_allreduce(void *ctx, float *buf, size_t n, d2_error *err)
{
    rank_ctx *rc = ctx;
    float *sum = malloc(sizeof(float) * n);
    if (!sum)
        return d2_fail(err, D2_ENOMEM, "fake allreduce: out of memory");
    rc->w->slot[rc->rank] = buf;
    pthread_barrier_wait(&rc->w->bar);
    for (size_t i = 0; i < n; i++) {
        float s = 0.0f;
        for (int r = 0; r < WORLD; r++)
            s += rc->w->slot[r][i];
        sum[i] = s;
    }
    pthread_barrier_wait(&rc->w->bar);
    memcpy(buf, sum, sizeof(float) * n);
    free(sum);
    return 0;
}

typedef struct job {
    const zoo *z;
    gen_train_cfg cfg;
    gen_train_dist dist;
    rank_ctx rc;
    char out[1100];
    int result;
    d2_error err;
    gen_train_report rep;
} job;

static void *run_rank(void *arg)
{
    job *j = arg;
    backend_t *be = NULL;
    j->result = backend_create(&be, "cpu", 1, &j->err);
    if (!j->result)
        j->result = generator_train(j->z, &j->cfg, j->out, be, &j->rep, &j->err);
    backend_destroy(be);
    return NULL;
}

static gen_train_cfg tiny_cfg(void)
{
    gen_train_cfg c = gen_train_defaults(1);
    c.progress = 0;
    c.vae_hidden = 32;
    c.tok_latent = 4;
    c.enc_d = 16;
    c.enc_inducing = 2;
    c.cond_dim = 16;
    c.den_hidden = 32;
    c.den_blocks = 1;
    c.vae_steps = 40;
    c.vae_batch = 16;
    c.align_steps = 5; /* whole on each process */
    c.steps = 40;
    c.tasks_per_step = 8;
    c.zoo_emb_shots = 2;
    c.seed = 5;
    c.checkpoint_every = 1e9;
    return c;
}

/* Largest |a - b| over the F32 tensors of two bundles (the same names and
 * shapes), but the attention key biases: a key bias adds one value to every
 * logit of a query's row, which softmax ignores, so its gradient is rounding
 * noise that AdamW's normalisation turns into lr-sized steps; in either run
 * it is noise (about 1e-4 here) that changes no output. */
static double max_abs_diff(const char *pa, const char *pb, int *tensors)
{
    st_file a, b;
    d2_error e;
    assert_int_equal(st_load(&a, pa, &e), 0);
    assert_int_equal(st_load(&b, pb, &e), 0);
    assert_int_equal(a.count, b.count);
    double worst = 0.0;
    *tensors = 0;
    for (int i = 0; i < a.count; i++) {
        const st_tensor *x = &a.tensors[i], *y = st_find(&b, x->name);
        assert_non_null(y);
        assert_int_equal(x->numel, y->numel);
        size_t len = strlen(x->name);
        if (x->dtype != ST_F32 || (len >= 9 && !strcmp(x->name + len - 9, "fc_k.bias")))
            continue;
        float *u = malloc(sizeof(float) * (x->numel + 1)), *v = malloc(sizeof(float) * (x->numel + 1));
        assert_non_null(u);
        assert_non_null(v);
        assert_int_equal(st_to_f32(x, u, &e), 0);
        assert_int_equal(st_to_f32(y, v, &e), 0);
        for (size_t k = 0; k < x->numel; k++)
            if (fabs((double)u[k] - v[k]) > worst)
                worst = fabs((double)u[k] - v[k]);
        free(u);
        free(v);
        (*tensors)++;
    }
    st_free(&a);
    st_free(&b);
    return worst;
}

static void test_two_ranks_match_one_process(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("train_dist");
    zoo z;
    d2_error err = {0};
    zoo_build_cfg zc = zoo_build_defaults();
    zc.source = "iris";
    zc.feature = "identity";
    zc.way = 2;
    zc.tasks = 40;
    zc.per_class = 10;
    zc.heldout_frac = 0.3f;
    zc.threads = 1;
    assert_int_equal(zoo_build(&z, &zc, &err), 0);

    job one = {.z = &z, .cfg = tiny_cfg()};
    snprintf(one.out, sizeof one.out, "%s/one.safetensors", dir);
    run_rank(&one);
    if (one.result)
        fail_msg("one process: %s", one.err.msg);

    fake_world w;
    pthread_barrier_init(&w.bar, NULL, WORLD);
    job jobs[WORLD];
    pthread_t tid[WORLD];
    for (int r = 0; r < WORLD; r++) {
        job *j = &jobs[r];
        memset(j, 0, sizeof *j);
        j->z = &z;
        j->cfg = tiny_cfg();
        j->rc = (rank_ctx){.w = &w, .rank = r};
        j->dist = (gen_train_dist){.rank = r, .world = WORLD, .ctx = &j->rc,
                                   .allreduce_sum = fake_allreduce};
        j->cfg.dist = &j->dist;
        snprintf(j->out, sizeof j->out, "%s/rank%d.safetensors", dir, r);
        assert_int_equal(pthread_create(&tid[r], NULL, run_rank, j), 0);
    }
    for (int r = 0; r < WORLD; r++) {
        pthread_join(tid[r], NULL);
        if (jobs[r].result)
            fail_msg("rank %d: %s", r, jobs[r].err.msg);
    }
    pthread_barrier_destroy(&w.bar);
    struct stat st;
    assert_int_not_equal(stat(jobs[1].out, &st), 0); /* rank 1 writes nothing */
    int tensors = 0;
    double d = max_abs_diff(one.out, jobs[0].out, &tensors);
    assert_true(tensors > 50);
    if (!(d < 1e-5))
        fail_msg("two ranks differ from one process by %g", d);
    /* the reported losses are the whole batch's, on every rank */
    for (int r = 0; r < WORLD; r++) {
        TU_ASSERT_NEAR(jobs[r].rep.vae_loss, one.rep.vae_loss, 1e-4);
        TU_ASSERT_NEAR(jobs[r].rep.diffusion_loss, one.rep.diffusion_loss, 1e-4);
    }

    /* more processes than tasks per step: refused before any step */
    job many = {.z = &z, .cfg = tiny_cfg()};
    many.dist = (gen_train_dist){.rank = 0, .world = 64, .allreduce_sum = fake_allreduce};
    many.cfg.dist = &many.dist;
    snprintf(many.out, sizeof many.out, "%s/many.safetensors", dir);
    run_rank(&many);
    assert_int_equal(many.result, D2_EINVAL);
    assert_non_null(strstr(many.err.msg, "64 processes"));
    zoo_free(&z);
    tu_rmrf(dir);
    free(dir);
}

/* A d2nwg built without MPI, started as one of 2 processes (the variable
 * mpirun sets), refuses instead of training alone twice. */
static void test_a_build_without_mpi_refuses_to_run_as_two(void **state)
{
    (void)state;
    char bin[1024], cmd[2400];
    tu_build_path(bin, sizeof bin, "d2nwg");
    snprintf(cmd, sizeof cmd, "OMPI_COMM_WORLD_SIZE=2 %s train --zoo /nonexistent --out /dev/null "
             "2>&1 | grep -q 'built without MPI'", bin);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_match_one_process),
        cmocka_unit_test(test_a_build_without_mpi_refuses_to_run_as_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
