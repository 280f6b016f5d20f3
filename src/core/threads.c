/* Threads: lamina's own loops and oneDNN's matrix products share OpenMP's pool. Kernels
 * split their work into pieces whose bounds depend on the shapes alone (never on the thread
 * count) and add partial sums in piece order, so that results are the same bits with any
 * number of threads. */
#include "core/threads.h"
#include <omp.h>

int lm__num_threads(void) { return omp_get_max_threads(); }

void lm_set_num_threads(int n) { omp_set_num_threads(n > 0 ? n : omp_get_num_procs()); }

int lm_get_num_threads(void) { return lm__num_threads(); }
