/* train_dist.c - the processes of `d2nwg train` (train_dist.h): MPI when the
 * build has it (make MPI=1), else one process, and a refusal when mpirun
 * started several copies of a build without MPI. */
#include "train_dist.h"

#include <stdlib.h>
#include <string.h>

#ifdef D2_WITH_MPI
#include <limits.h>
#include <mpi.h>
#endif

/* The number of processes mpirun (OpenMPI, or a PMI launcher) says it
 * started; 0 when not started by one. */
static int launched_size(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return atoi(v);
    }
    return 0;
}

#ifdef D2_WITH_MPI
static int mpi_allreduce_sum(void *ctx, float *buf, size_t n, d2_error *err)
{
    (void)ctx;
    while (n > 0) {
        int chunk = n > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)n;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf, chunk, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, msg, &len);
            return d2_fail(err, D2_EIO, "MPI_Allreduce: %.*s", len, msg);
        }
        buf += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

int train_dist_begin(gen_train_dist *d, d2_error *err)
{
    memset(d, 0, sizeof *d);
    d->world = 1;
    if (launched_size() < 1)
        return 0; /* not under mpirun: no MPI_Init, one process */
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return d2_fail(err, D2_EIO, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    d->allreduce_sum = mpi_allreduce_sum;
    d->ctx = d; /* set: MPI was initialised, train_dist_end finalizes it */
    return 0;
}

void train_dist_abort(const gen_train_dist *d, int code)
{
    if (d->ctx && d->world > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
}

void train_dist_end(const gen_train_dist *d)
{
    if (d->ctx)
        MPI_Finalize();
}
#else
int train_dist_begin(gen_train_dist *d, d2_error *err)
{
    memset(d, 0, sizeof *d);
    d->world = 1;
    int n = launched_size();
    if (n > 1)
        return d2_fail(err, D2_EINVAL, "started as one of %d processes (mpirun), but this d2nwg "
                       "was built without MPI: build it with 'make MPI=1' (Debian openmpi-bin, "
                       "libopenmpi-dev)", n);
    return 0;
}

void train_dist_abort(const gen_train_dist *d, int code)
{
    (void)d;
    (void)code;
}

void train_dist_end(const gen_train_dist *d) { (void)d; }
#endif
