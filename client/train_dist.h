/* train_dist.h - `d2nwg train` across processes: started by mpirun, a d2nwg
 * built with MPI=1 (OpenMPI's mpicc) joins MPI_COMM_WORLD and trains data
 * parallel (gen_train_dist: one seed schedule, each process a slice of every
 * batch, gradients summed by MPI_Allreduce). Alone, or built without MPI, it
 * is one process; a build without MPI started by mpirun with more than one
 * process refuses, so N copies never train N separate generators. */
#ifndef D2_CLIENT_TRAIN_DIST_H
#define D2_CLIENT_TRAIN_DIST_H

#include "gen_train.h"

/* d->world = 1, rank 0 alone; under mpirun the world's size and this rank. */
int train_dist_begin(gen_train_dist *d, d2_error *err);
/* After a failure with several processes: stop them all (they would wait on
 * this one's gradients for ever). */
void train_dist_abort(const gen_train_dist *d, int code);
void train_dist_end(const gen_train_dist *d);

#endif
